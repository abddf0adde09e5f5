"""The CUDA kernel of FusedReduce: a block per output element evaluates the body while reducing.

As kernels/cuda/reduction.py, with the loaded element replaced by the fused scalar body over several
broadcast inputs (stride 0 on broadcast axes): threads stride over the reduced elements, combine in
registers, then across the warp (shuffles) and the block (shared memory). Partial results travel in
the output's dtype (float32 sums stay float32, as the plain reduction kernel's do).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from ...graph.ops.fused_reduce import FusedReduce
from ...graph.ops.reduce import Max, Min, Prod, Sum
from ...graph.var import Var
from .elementwise import contiguous_strides, scalar_body, supported
from .kernel import Kernel, kernel_name
from .reduction import _COMBINE, FULL, MAX_BLOCK, _block_size, accumulator
from .scalar import CTYPE, HELPERS, ctype
from .templates import finish

KINDS = (Sum, Prod, Max, Min)


def supported_reduction(var: Var) -> bool:
    """Can this FusedReduce run as one kernel (its kind, its dtypes and its scalar ops render)?"""
    op = var.op
    if not isinstance(op, FusedReduce) or not isinstance(op.reduce, KINDS):
        return False
    dtypes = [var.dtype, op.body.outputs[0].dtype] + [x.dtype for x in var.inputs]
    if any(d not in CTYPE or d == "float16" or d.startswith("complex") for d in dtypes):
        return False
    if isinstance(op.reduce, (Max, Min)) and op.body.outputs[0].dtype == "bool":
        return False
    return supported(Var(op.body, var.inputs))


def fused_reduce_kernel(var: Var) -> FusedReduceLowering:
    """One block per output element; inputs x0.. are read through per-axis strides s<k>_<axis>."""
    op: FusedReduce = var.op
    ndim = var.inputs[0].ndim if var.inputs else 0
    axes = tuple(op.axis)
    kept = [a for a in range(ndim) if a not in axes]
    combine, make_identity, needed = _COMBINE[type(op.reduce)]
    acc_dtype = accumulator(var.dtype)
    acc, identity = ctype(acc_dtype), make_identity(acc_dtype)
    lines, (result,), helpers = scalar_body(op.body.placeholders, op.body.outputs)
    n_in = len(var.inputs)
    params = [f"const {ctype(x.dtype)}* __restrict__ x{k}" for k, x in enumerate(var.inputs)]
    params += [f"{ctype(var.dtype)}* __restrict__ out0", "const long long n_out",
               "const long long n_reduce"]  # fmt: skip
    params += [f"const long long d{a}" for a in range(ndim)]
    params += [f"const long long s{k}_{a}" for k in range(n_in) for a in range(ndim)]
    warp = ["for (int delta = 16; delta > 0; delta >>= 1) {",
            f"  const {acc} other = __shfl_down_sync({FULL}, acc, delta);",
            f"  {combine.format('acc', 'other')}", "}"]  # fmt: skip
    body = [f"__shared__ {acc} partial[32];",
            "for (long long o = blockIdx.x; o < n_out; o += gridDim.x) {", "  long long rest = o;"]
    body += [f"  long long base{k} = 0;" for k in range(n_in)]
    for a in reversed(kept):
        body.append(f"  {{ const long long c = rest % d{a}; rest /= d{a};")
        body += [f"    base{k} += c * s{k}_{a};" for k in range(n_in)]
        body.append("  }")
    body += [f"  {acc} acc = {identity};",
             "  for (long long j = threadIdx.x; j < n_reduce; j += blockDim.x) {",
             "    long long left = j;"]  # fmt: skip
    body += [f"    long long at{k} = base{k};" for k in range(n_in)]
    for a in reversed(axes):
        body.append(f"    {{ const long long c = left % d{a}; left /= d{a};")
        body += [f"      at{k} += c * s{k}_{a};" for k in range(n_in)]
        body.append("    }")
    body += [f"    const {ctype(x.dtype)} a{k} = x{k}[at{k}];" for k, x in enumerate(var.inputs)]
    body += [f"    {line}" for line in lines]
    body.append(f"    const {acc} value = ({acc}){result};")
    body += [f"    {combine.format('acc', 'value')}", "  }"]
    body += [f"  {line}" for line in warp]
    body += ["  if (threadIdx.x % 32 == 0) partial[threadIdx.x / 32] = acc;", "  __syncthreads();",
             "  if (threadIdx.x < 32) {",
             f"    acc = threadIdx.x < blockDim.x / 32 ? partial[threadIdx.x] : {identity};"]
    body += [f"    {line}" for line in warp]
    body += [f"    if (threadIdx.x == 0) out0[o] = ({ctype(var.dtype)})acc;", "  }",
             "  __syncthreads();  // partial is reused by this block's next output", "}"]
    what = str(op)
    helper_text = [HELPERS[h] for h in sorted(set(helpers) | set(needed))]
    source = finish(what, helper_text, MAX_BLOCK, params, body)
    name = kernel_name(source)
    kernel = Kernel(name, source.replace("KERNEL", name), "reduction", what)
    return FusedReduceLowering(kernel, var, kept, axes)


class FusedReduceLowering:
    """Launches a fused reduction: the broadcast shape, each input's strides over it, the grid."""

    def __init__(self, kernel: Kernel, var: Var, kept: list, axes: tuple) -> None:
        self.kernel, self.var, self.kept, self.axes = kernel, var, kept, axes

    def launch(self, device, module, inputs: Sequence):
        """Check the broadcast (only axes typed size 1 broadcast), allocate, run."""
        op: FusedReduce = self.var.op
        shape = _broadcast(op, [x.shape for x in inputs])
        strides = []
        for x in inputs:
            own = contiguous_strides(x.shape)
            strides.append([0 if x.shape[a] == 1 else own[a] for a in range(len(shape))])
        n_out = int(np.prod([shape[a] for a in self.kept], dtype=np.int64))
        n_reduce = int(np.prod([shape[a] for a in self.axes], dtype=np.int64))
        if n_reduce == 0 and isinstance(op.reduce, (Max, Min)):
            name = "maximum" if isinstance(op.reduce, Max) else "minimum"
            raise ValueError(f"zero-size array to reduction operation {name} which has no identity")
        if op.keepdims:
            out_shape = tuple(1 if a in self.axes else n for a, n in enumerate(shape))
        else:
            out_shape = tuple(shape[a] for a in self.kept)
        out = device.empty(out_shape, self.var.dtype)
        if n_out:
            args = list(inputs) + [out, np.int64(n_out), np.int64(n_reduce)]
            args += [np.int64(d) for d in shape] + [np.int64(s) for row in strides for s in row]
            grid = min(n_out, device.max_grid * 4)
            device.launch(module, self.kernel.name, grid, _block_size(n_reduce), args)
        return out


def _broadcast(op: FusedReduce, shapes: list) -> tuple:
    """The broadcast shape; ValueError when an axis not typed broadcastable would broadcast."""
    result = []
    for axis in range(len(shapes[0]) if shapes else 0):
        size = None
        for k, (shape, kinds) in enumerate(zip(shapes, op.broadcastable)):
            if kinds[axis]:
                continue
            if size is None:
                size = (shape[axis], k)
            elif shape[axis] != size[0]:
                raise ValueError(
                    f"input {size[1]} has size {size[0]} but input {k} has size {shape[axis]} on "
                    f"axis {axis}; only axes typed broadcastable (static size 1) broadcast"
                )
        result.append(1 if size is None else size[0])
    return tuple(result)
