"""A roofline MODEL of the CUDA kernels of a compiled function: bytes, flops, predicted H100 time.

Nothing here runs on a GPU. For each kernel step of a function compiled in mode 'cuda-emulator'
(`f._plan.steps`: (var, lowering, reason, argument slots, output slot)), the step's input and output
values of one call are computed by replaying the plan's steps with each node's reference perform;
bytes moved = inputs read + outputs written, flops from a per-op estimate (below), and the predicted
time max(bytes / bandwidth, flops / peak) on an H100 SXM (3.35 TB/s HBM3, 67 TFLOP/s FP32).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

H100_BYTES_PER_S = 3.35e12
H100_FLOPS_PER_S = 67e12
MODEL_TITLE = "Roofline MODEL for an H100 (3.35 TB/s, 67 TFLOP/s FP32) - predicted, not measured"


def nbytes(value) -> int:
    """Bytes of an array value (tuples of outputs summed; Python scalars as 8 bytes)."""
    if isinstance(value, (tuple, list)):
        return sum(nbytes(v) for v in value)
    if value is None:
        return 0
    return int(np.asarray(value).nbytes)


def _size(value) -> int:
    if isinstance(value, (tuple, list)):
        return max((_size(v) for v in value), default=0)
    return int(np.size(value))


def predict_seconds(moved: float, flops: float) -> float:
    """The roofline: the slower of moving the bytes at full bandwidth and the flops at peak."""
    return max(moved / H100_BYTES_PER_S, flops / H100_FLOPS_PER_S)


def flop_estimate(var, inputs: Sequence, output) -> tuple[float, str]:
    """(flops, the rule used) for one node from its actual input and output values.

    elementwise: scalar ops in the Composite x elements; GEMM / dot: 2mnk; reductions: elements
    read; softmax: 5 x elements; conv and its gradients: their GEMM's 2mnk; pooling: elements read.
    """
    from theanine.graph.ops import blas, composite, elemwise, fused_reduce, linalg, nnet, reduce

    op = var.op
    name = type(op).__name__
    if isinstance(op, composite.Composite):
        ops = len(op.nodes)
        return float(ops * _size(output)), f"elementwise: {ops} scalar ops x elements"
    if isinstance(op, fused_reduce.FusedReduce):
        ops = len(op.body.nodes) + 1
        read = max((_size(x) for x in inputs), default=0)
        return float(ops * read), f"fused reduction: ({ops - 1} ops + 1) x elements read"
    if isinstance(op, elemwise.Elemwise):
        return float(_size(output)), "elementwise: 1 op x elements"
    if isinstance(op, blas.Gemm):
        _, _, x, y, _ = inputs
        m, k = np.shape(x)
        n = np.shape(y)[1] if np.ndim(y) == 2 else 1
        return 2.0 * m * n * k, "GEMM: 2mnk"
    if isinstance(op, (linalg.Dot, linalg.MatMul)):
        k = np.shape(inputs[0])[-1] if np.ndim(inputs[0]) else 1
        return 2.0 * _size(output) * k, "GEMM: 2mnk"
    if isinstance(op, (nnet.Softmax, nnet.LogSoftmax)):
        return 5.0 * _size(output), "softmax: 5 x elements"
    reductions = (
        reduce.Sum,
        reduce.Prod,
        reduce.Max,
        reduce.Min,
        reduce.Argmax,
        reduce.All,
        blas.MaxAndArgmax,
    )
    if isinstance(op, reductions):
        return float(_size(inputs[0])), "reduction: elements read"
    if name == "Conv2d":
        return 2.0 * _size(output) * _size(inputs[1]) / np.shape(inputs[1])[0], "conv: GEMM 2mnk"
    if name == "Conv2dGradInputs":
        w, gy = inputs[0], inputs[1]
        return 2.0 * _size(gy) * _size(w) / np.shape(w)[0], "conv grad: GEMM 2mnk"
    if name == "Conv2dGradWeights":
        gy = inputs[1]
        return 2.0 * _size(gy) * _size(output) / np.shape(output)[0], "conv grad: GEMM 2mnk"
    if "Pool" in name:
        return float(max(_size(x) for x in inputs)), "pooling: elements read"
    return 0.0, "no flop model: bytes only"


def step_inputs(var, lowering) -> tuple:
    """The Vars a step reads: its lowering's `inputs` (a GEMM with a fused epilogue reads the
    product's inputs and the epilogue's others), else the node's inputs."""
    return tuple(getattr(lowering, "inputs", None) or var.inputs)


def fused_product(lowering):
    """The matrix-product Var a GEMM-with-epilogue step computes inside its kernel, or None."""
    return getattr(getattr(lowering, "dot", None), "var", None)


def replay(f, input_values: Sequence) -> dict:
    """{id(var): value} for every Var a step of f's CUDA plan reads or writes, for one call, from
    the reference interpreter (nodes' perform; no kernel runs, no state changes)."""
    from theanine.graph.evaluate import evaluate

    needed: dict[int, object] = {}
    for var, lowering, *_ in f._plan.steps:
        product = fused_product(lowering)
        for v in (var, *step_inputs(var, lowering), *((product,) if product is not None else ())):
            needed[id(v)] = v
    order = list(needed.values())
    values = evaluate(order, dict(zip(f._in_vars, input_values)))
    return {id(v): x for v, x in zip(order, values)}


def kernels_of(lowering) -> list:
    """The kernels a CUDA step launches: its lowering's `kernels`, or its one `kernel` (a view
    or a host step: none), as CudaPlan.kernels() collects them."""
    if lowering is None:
        return []
    kernels = getattr(lowering, "kernels", None)
    if kernels is not None:
        return list(kernels)
    kernel = getattr(lowering, "kernel", None)
    return [] if kernel is None else [kernel]


def model(f, input_values: Sequence) -> dict:
    """The roofline rows of a function compiled in mode 'cuda-emulator', and its host steps."""
    plan = f._plan
    values = replay(f, input_values)
    kernels, host = [], []
    for var, lowering, reason, _, _ in plan.steps:
        names = [k.name for k in kernels_of(lowering)]
        if lowering is None:
            host.append({"node": var.describe(), "op": type(var.op).__name__, "reason": reason})
            continue
        if not names:  # a view: relabels device memory, moves nothing
            continue
        inputs = [values[id(x)] for x in step_inputs(var, lowering)]
        out = values[id(var)]
        moved = sum(nbytes(x) for x in inputs) + nbytes(out)
        product = fused_product(lowering)
        if product is None:
            flops, rule = flop_estimate(var, inputs, out)
        else:  # one kernel: the product, then the elementwise epilogue on it
            gemm, _ = flop_estimate(
                product, [values[id(x)] for x in product.inputs], values[id(product)]
            )
            epilogue, rule = flop_estimate(var, [values[id(x)] for x in var.inputs], out)
            flops, rule = gemm + epilogue, f"GEMM 2mnk + epilogue ({rule})"
        shape = [list(np.shape(v)) for v in out] if isinstance(out, tuple) else list(np.shape(out))
        kernels.append(
            {
                "node": var.describe(),
                "op": type(var.op).__name__,
                "kernels": names,
                "shape": shape,
                "bytes": moved,
                "flops": flops,
                "rule": rule,
                "predicted_s": predict_seconds(moved, flops),
                "bound": "memory"
                if moved / H100_BYTES_PER_S >= flops / H100_FLOPS_PER_S
                else "compute",
            }
        )
    if sum(len(row["kernels"]) for row in kernels) != len(plan.kernels()):
        raise RuntimeError("roofline: the steps' kernels do not add up to CudaPlan.kernels()")
    total = sum(row["predicted_s"] for row in kernels)
    return {"kernels": kernels, "host": host, "predicted_total_s": total}


def markdown(workload: str, result: dict) -> str:
    """The model as a markdown table, titled as a model."""
    lines = [
        f"### {workload}: {MODEL_TITLE}",
        "",
        (
            "| # | node | op | output shape | kernels | bytes moved | flops | flop rule | bound "
            "| predicted (us) |"
        ),
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for k, row in enumerate(result["kernels"]):
        lines.append(
            f"| {k} | {row['node'][:60]} | {row['op']} | {row['shape']} | {len(row['kernels'])} | "
            f"{row['bytes']:,} | {row['flops']:,.0f} | {row['rule']} | {row['bound']} | "
            f"{row['predicted_s'] * 1e6:.2f} |"
        )
    launches = sum(len(row["kernels"]) for row in result["kernels"])
    lines.append(
        f"\nPredicted total of the kernels (model; {launches} launches, their overheads "
        f"excluded): {result['predicted_total_s'] * 1e6:.1f} us\n"
    )
    if result["host"]:
        lines += [
            "Host steps (numpy perform on the host, not in the model):",
            "",
            "| node | op | reason |",
            "|---|---|---|",
        ]
        lines += [f"| {r['node'][:60]} | {r['op']} | {r['reason']} |" for r in result["host"]]
    else:
        lines.append("Host steps: none.")
    return "\n".join(lines) + "\n"
