"""Grid-stride elementwise kernels: a Composite, a single Elemwise or a DimShuffle, broadcasting by strides."""

from __future__ import annotations

from typing import Sequence

import numpy as np

from ...graph.ops.composite import Composite
from ...graph.ops.elemwise import Elemwise
from ...graph.ops.shape import DimShuffle
from ...graph.var import Constant, Var, toposort
from .kernel import Kernel, kernel_name
from .scalar import HELPERS, ctype, literal, render, renders
from .templates import finish

BLOCK = 256


def scalar_body(placeholders: Sequence[Var], outputs: Sequence[Var]) -> tuple[list[str], list[str], set]:
    """Statements computing `outputs` from loaded arguments a0.., and the output expressions."""
    names = {id(p): f"a{k}" for k, p in enumerate(placeholders)}
    lines: list[str] = []
    helpers: set = set()
    for node in toposort(list(outputs)):
        if id(node) in names:
            continue
        if isinstance(node.op, Constant):
            names[id(node)] = literal(node.op.data, node.dtype)
            continue
        if not node.inputs:
            raise ValueError(f"elementwise body reads {node.describe()}, which is not an input")
        expression = render(node, [names[id(x)] for x in node.inputs], helpers)
        name = f"t{len(lines)}"
        lines.append(f"const {ctype(node.dtype)} {name} = {expression};")
        names[id(node)] = name
    return lines, [names[id(out)] for out in outputs], helpers


def composite_supported(op: Composite) -> bool:
    """True when every node of the fused body has a CUDA rendering."""
    return all(renders(node) for node in op.nodes)


def elementwise_kernel(var: Var) -> "ElementwiseLowering":
    """The kernel of an Elemwise/Composite node (outputs out0..) or of a DimShuffle (a strided copy)."""
    op = var.op
    if isinstance(op, Composite):
        placeholders, outputs = op.placeholders, op.outputs
    elif isinstance(op, DimShuffle):
        from ...graph.ops.composite import placeholder

        placeholders = (placeholder(0, var.inputs[0].dtype),)
        outputs = placeholders
    else:
        from ...graph.ops.composite import placeholder

        placeholders = tuple(placeholder(k, x.dtype) for k, x in enumerate(var.inputs))
        outputs = (Var(op, placeholders),)
    in_dtypes = [x.dtype for x in var.inputs]
    out_dtypes = [o.dtype for o in outputs] if isinstance(op, Composite) else [var.dtype]
    if isinstance(op, DimShuffle):
        ndim = len(op.new_order)
    else:
        ndim = var.inputs[0].ndim if var.inputs else 0
    lines, results, helpers = scalar_body(placeholders, outputs)
    params = [f"const {ctype(d)}* __restrict__ x{k}" for k, d in enumerate(in_dtypes)]
    params += [f"{ctype(d)}* __restrict__ out{k}" for k, d in enumerate(out_dtypes)]
    params += ["const long long n"] + [f"const long long d{a}" for a in range(ndim)]
    params += [f"const long long s{k}_{a}" for k in range(len(in_dtypes)) for a in range(ndim)]
    body = ["for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < n;",
            "     i += (long long)gridDim.x * blockDim.x) {"]
    if ndim:
        body.append("  long long rest = i;")
        for a in reversed(range(ndim)):
            tail = "" if a == 0 else f" % d{a}"
            body.append(f"  const long long c{a} = rest{tail};" + ("" if a == 0 else f" rest /= d{a};"))
    for k, d in enumerate(in_dtypes):
        offset = " + ".join(f"c{a} * s{k}_{a}" for a in range(ndim)) or "0"
        body.append(f"  const {ctype(d)} a{k} = x{k}[{offset}];")
    body += [f"  {line}" for line in lines]
    body += [f"  out{k}[i] = {result};" for k, result in enumerate(results)]
    body.append("}")
    description = str(op)
    source = finish(
        comment=description,
        helpers=[HELPERS[h] for h in sorted(helpers)],
        bounds=BLOCK,
        params=params,
        body=body,
    )
    kernel = Kernel(kernel_name(source), source.replace("KERNEL", kernel_name(source)), "elementwise",
                    description)
    return ElementwiseLowering(kernel, var, len(out_dtypes), out_dtypes, ndim)


class ElementwiseLowering:
    """Launches an elementwise kernel: output shape, input strides (0 on broadcast axes), grid size."""

    def __init__(self, kernel: Kernel, var: Var, n_out: int, out_dtypes: list, ndim: int) -> None:
        self.kernel, self.var, self.n_out, self.out_dtypes, self.ndim = kernel, var, n_out, out_dtypes, ndim

    def shapes(self, inputs: Sequence) -> tuple[tuple, list[list[int]]]:
        """The output shape and each input's element strides over the output's axes."""
        op = self.var.op
        if isinstance(op, DimShuffle):
            (x,) = inputs
            contiguous = _strides(x.shape)
            strides, shape = [], []
            for entry in op.new_order:
                if entry == "x":
                    strides.append(0)
                    shape.append(1)
                else:
                    strides.append(contiguous[entry] if x.shape[entry] != 1 else 0)
                    shape.append(x.shape[entry])
            return tuple(shape), [strides]
        shape = tuple(np.broadcast_shapes(*[x.shape for x in inputs])) if inputs else ()
        strides = []
        for x in inputs:
            own = _strides(x.shape)
            strides.append([0 if x.shape[a] == 1 else own[a] for a in range(len(shape))])
        return shape, strides

    def launch(self, device, module, inputs: Sequence):
        shape, strides = self.shapes(inputs)
        outputs = [device.empty(shape, d) for d in self.out_dtypes]
        n = int(np.prod(shape, dtype=np.int64))
        if n:
            grid = min((n + BLOCK - 1) // BLOCK, device.max_grid)
            args = list(inputs) + outputs + [np.int64(n)] + [np.int64(d) for d in shape]
            args += [np.int64(s) for row in strides for s in row]
            device.launch(module, self.kernel.name, grid, BLOCK, args)
        multi = isinstance(self.var.op, Composite) and len(self.var.op.outputs) > 1
        return tuple(outputs) if multi else outputs[0]


def _strides(shape: tuple) -> list[int]:
    strides, step = [], 1
    for size in reversed(shape):
        strides.append(step)
        step *= size
    return strides[::-1]


def supported(var: Var) -> bool:
    """May this elementwise node be fused into a CUDA Composite (its op and dtypes render)?"""
    if isinstance(var.op, Composite):
        return composite_supported(var.op)
    return isinstance(var.op, Elemwise) and renders(var)
