"""Reductions over any axes and row softmax / log-softmax: one block per output, warp shuffles + shared memory."""

from __future__ import annotations

from typing import Sequence

import numpy as np

from ...graph.ops import blas
from ...graph.ops import nnet as N
from ...graph.ops import reduce as R
from ...graph.var import Var
from .kernel import Kernel, kernel_name
from .scalar import HELPERS, ctype, literal
from .templates import finish

MAX_BLOCK = 256

# op class -> (combine(a, b) as C, identity(dtype) as C, helpers)
_COMBINE = {
    R.Sum: ("({a} + {b})", lambda d: literal(0, d), ()),
    R.Prod: ("({a} * {b})", lambda d: literal(1, d), ()),
    R.Max: ("th_max({a}, {b})", lambda d: _lowest(d), ("th_max",)),
    R.Min: ("th_min({a}, {b})", lambda d: _highest(d), ("th_min",)),
    R.All: ("({a} & {b})", lambda d: "1", ()),
}
_COMBINE_ANY = ("({a} | {b})", lambda d: "0", ())


def _lowest(dtype: str) -> str:
    if dtype in ("float32", "float64"):
        return literal(-np.inf, dtype)
    return literal(np.iinfo(dtype).min, dtype) if dtype != "bool" else "0"


def _highest(dtype: str) -> str:
    if dtype in ("float32", "float64"):
        return literal(np.inf, dtype)
    return literal(np.iinfo(dtype).max, dtype) if dtype != "bool" else "1"


def accumulator(dtype: str) -> str:
    """The dtype partial results travel in: warp shuffles need 32 or 64 bits."""
    return {"bool": "int32", "int8": "int32", "int16": "int32", "uint8": "int32",
            "uint16": "int32"}.get(dtype, dtype)


def reducible(var: Var) -> bool:
    """True for the reductions this module lowers (the dtypes must have C types)."""
    op = var.op
    if not isinstance(op, (R.Sum, R.Prod, R.Max, R.Min, R.All, R.Argmax, blas.MaxAndArgmax)):
        return False
    x = var.inputs[0]
    return x.dtype in ("float32", "float64") or (x.dtype != "float16" and not x.dtype.startswith("complex"))


def reduction_kernel(var: Var) -> "ReductionLowering":
    """One block per output element: threads stride over the reduced elements, then combine."""
    op = var.op
    x = var.inputs[0]
    ndim, axes = x.ndim, tuple(op.axis)
    kept = [a for a in range(ndim) if a not in axes]
    argmax = isinstance(op, (R.Argmax, blas.MaxAndArgmax))
    if argmax:
        acc_dtype = accumulator(x.dtype)
        out_dtypes = [x.dtype, "int64"] if isinstance(op, blas.MaxAndArgmax) else ["int64"]
    else:
        out_dtypes = [var.dtype]
        acc_dtype = accumulator(var.dtype if not isinstance(op, R.All) else "bool")
    acc = ctype(acc_dtype)
    params = [f"const {ctype(x.dtype)}* __restrict__ x0"]
    params += [f"{ctype(d)}* __restrict__ out{k}" for k, d in enumerate(out_dtypes)]
    params += ["const long long n_out", "const long long n_reduce"]
    params += [f"const long long d{a}, const long long s{a}" for a in kept]
    params += [f"const long long r{a}, const long long t{a}" for a in axes]
    params = [p for group in params for p in group.split(", ")]
    helpers: list[str] = []
    body = [f"__shared__ {acc} partial[32];"]
    if argmax:
        body.append("__shared__ long long partial_index[32];")
        better = "th_better" if not getattr(op, "minimum", False) else "th_better_min"
        helpers.append(_argmax_helper(better, ">" if better == "th_better" else "<"))
        combine = f"if ({better}({{2}}, {{3}}, {{0}}, {{1}})) {{{{ {{0}} = {{2}}; {{1}} = {{3}}; }}}}"
        identity = _lowest(acc_dtype)
    else:
        form, make_identity, needed = _COMBINE_ANY if isinstance(op, R.All) and op.any else _COMBINE[type(op)]
        helpers += [HELPERS[h] for h in needed]
        combine = "{0} = " + form.format(a="{0}", b="{1}") + ";"
        identity = make_identity(acc_dtype)
    body.append("for (long long o = blockIdx.x; o < n_out; o += gridDim.x) {")
    body.append("  long long rest = o, base = 0;")
    for a in reversed(kept):
        body.append(f"  base += (rest % d{a}) * s{a}; rest /= d{a};")
    body.append(f"  {acc} acc = {identity};")
    if argmax:
        body.append("  long long index = -1;")
    body.append("  for (long long j = threadIdx.x; j < n_reduce; j += blockDim.x) {")
    body.append("    long long left = j, offset = base;")
    for a in reversed(axes):
        body.append(f"    offset += (left % r{a}) * t{a}; left /= r{a};")
    value = f"({acc})x0[offset]" if not isinstance(op, R.All) else "(x0[offset] != 0)"
    body.append(f"    const {acc} value = {value};")
    if argmax:
        body.append(f"    {combine.format('acc', 'index', 'value', 'j')}")
    else:
        body.append(f"    {combine.format('acc', 'value')}")
    body.append("  }")
    names, types = (["acc", "index"], [acc, "long long"]) if argmax else (["acc"], [acc])
    warp_combine = combine.format(*names, *[f"other_{n}" for n in names])
    reduce_lines = ["for (int delta = 16; delta > 0; delta >>= 1) {"]
    for name, ty in zip(names, types):
        reduce_lines.append(f"  const {ty} other_{name} = __shfl_down_sync(0xffffffffu, {name}, delta);")
    reduce_lines += [f"  {warp_combine}", "}"]
    body += [f"  {line}" for line in reduce_lines]
    body.append("  if (threadIdx.x % 32 == 0) {")
    body.append("    partial[threadIdx.x / 32] = acc;")
    if argmax:
        body.append("    partial_index[threadIdx.x / 32] = index;")
    body.append("  }")
    body.append("  __syncthreads();")
    body.append("  if (threadIdx.x < 32) {")
    body.append(f"    acc = threadIdx.x < blockDim.x / 32 ? partial[threadIdx.x] : {identity};")
    if argmax:
        body.append("    index = threadIdx.x < blockDim.x / 32 ? partial_index[threadIdx.x] : -1;")
    body += [f"    {line}" for line in reduce_lines]
    body.append("    if (threadIdx.x == 0) {")
    if isinstance(op, blas.MaxAndArgmax):
        body.append(f"      out0[o] = ({ctype(out_dtypes[0])})acc;")
        body.append("      out1[o] = index;")
    elif argmax:
        body.append("      out0[o] = index;")
    else:
        body.append(f"      out0[o] = ({ctype(out_dtypes[0])})acc;")
    body.append("    }")
    body.append("  }")
    body.append("  __syncthreads();  // partial is reused by this block's next output")
    body.append("}")
    source = finish(str(op) + f" of {x.type}", helpers, MAX_BLOCK, params, body)
    name = kernel_name(source)
    return ReductionLowering(Kernel(name, source.replace("KERNEL", name), "reduction", f"{op} of {x.type}"),
                             var, out_dtypes, kept, axes)


def _argmax_helper(name: str, symbol: str) -> str:
    """Is (value a, index i) a better candidate than (b, j)? NaN first, then value, then lower index."""
    return (
        f"template <class T> __device__ __forceinline__ bool {name}(T a, long long i, T b, long long j) {{\n"
        "  if (i < 0) return false;\n"
        "  if (j < 0) return true;\n"
        "  const bool a_nan = a != a, b_nan = b != b;\n"
        "  if (a_nan || b_nan) return a_nan && (!b_nan || i < j);\n"
        f"  return a {symbol} b || (a == b && i < j);\n"
        "}"
    )


class ReductionLowering:
    """Launches a reduction: output shape from the kept axes, sizes and strides of both axis groups."""

    def __init__(self, kernel, var, out_dtypes, kept, axes) -> None:
        self.kernel, self.var, self.out_dtypes, self.kept, self.axes = kernel, var, out_dtypes, kept, axes

    def launch(self, device, module, inputs: Sequence):
        (x,) = inputs
        strides = _strides(x.shape)
        keep = self.var.op.keepdims
        shape = tuple(1 if a in self.axes else n for a, n in enumerate(x.shape)) if keep else tuple(
            x.shape[a] for a in self.kept)
        outputs = [device.empty(shape, d) for d in self.out_dtypes]
        n_out = int(np.prod([x.shape[a] for a in self.kept], dtype=np.int64))
        n_reduce = int(np.prod([x.shape[a] for a in self.axes], dtype=np.int64))
        if n_out:
            block = min(MAX_BLOCK, max(32, 1 << max(n_reduce - 1, 0).bit_length()))
            args = [x] + outputs + [np.int64(n_out), np.int64(n_reduce)]
            args += [np.int64(v) for a in self.kept for v in (x.shape[a], strides[a])]
            args += [np.int64(v) for a in self.axes for v in (x.shape[a], strides[a])]
            device.launch(module, self.kernel.name, min(n_out, device.max_grid * 4), block, args)
        return tuple(outputs) if len(outputs) > 1 else outputs[0]


def _strides(shape: tuple) -> list[int]:
    strides, step = [], 1
    for size in reversed(shape):
        strides.append(step)
        step *= size
    return strides[::-1]


# --- softmax --------------------------------------------------------------------------------------


def _block_reduce(name: str, combine: str, identity: str) -> list[str]:
    """Reduce `name` over the block into every thread (partial is shared scratch of 32 slots)."""
    warp = ["for (int delta = 16; delta > 0; delta >>= 1)",
            f"  {name} = {combine.format(a=name, b=f'__shfl_down_sync(0xffffffffu, {name}, delta)')};"]
    return warp + [
        f"if (threadIdx.x % 32 == 0) partial[threadIdx.x / 32] = {name};",
        "__syncthreads();",
        "if (threadIdx.x < 32) {",
        f"  {name} = threadIdx.x < blockDim.x / 32 ? partial[threadIdx.x] : {identity};",
    ] + [f"  {line}" for line in warp] + [
        "  if (threadIdx.x == 0) partial[0] = " + name + ";",
        "}",
        "__syncthreads();",
        f"{name} = partial[0];",
        "__syncthreads();  // partial is reused next",
    ]


def softmax_kernel(var: Var) -> "SoftmaxLowering":
    """Softmax or log-softmax along one axis: rows of `n` elements, `inner` apart, one block per row."""
    op = var.op
    x = var.inputs[0]
    log = isinstance(op, N.LogSoftmax)
    t, c = var.dtype, ctype(var.dtype)
    params = [f"const {ctype(x.dtype)}* __restrict__ x0", f"{c}* __restrict__ out0",
              "const long long rows", "const long long n", "const long long inner"]
    row = ["const long long base = (r / inner) * n * inner + r % inner;"]
    row.append(f"{c} m = {literal(-np.inf, t)};")
    row.append(f"for (long long j = threadIdx.x; j < n; j += blockDim.x) m = th_max(m, ({c})x0[base + j * inner]);")
    row += _block_reduce("m", "th_max({a}, {b})", literal(-np.inf, t))
    row.append(f"{c} s = {literal(0, t)};")
    row.append(f"for (long long j = threadIdx.x; j < n; j += blockDim.x) s += exp(({c})x0[base + j * inner] - m);")
    row += _block_reduce("s", "({a} + {b})", literal(0, t))
    if log:
        row.append("const " + c + " log_s = log(s);")
        result = f"({c})x0[base + j * inner] - m - log_s"
    else:
        result = f"exp(({c})x0[base + j * inner] - m) / s"
    row.append(f"for (long long j = threadIdx.x; j < n; j += blockDim.x) out0[base + j * inner] = {result};")
    body = [f"__shared__ {c} partial[32];", "for (long long r = blockIdx.x; r < rows; r += gridDim.x) {"]
    body += [f"  {line}" for line in row] + ["}"]
    source = finish(f"{op} of {x.type}", [HELPERS["th_max"]], MAX_BLOCK, params, body)
    name = kernel_name(source)
    return SoftmaxLowering(Kernel(name, source.replace("KERNEL", name), "softmax", f"{op} of {x.type}"), var)


class SoftmaxLowering:
    """Launches softmax: rows = every position but the axis, block sized to the row length."""

    def __init__(self, kernel, var) -> None:
        self.kernel, self.var = kernel, var

    def launch(self, device, module, inputs: Sequence):
        (x,) = inputs
        axis = self.var.op.axis % len(x.shape)
        out = device.empty(x.shape, self.var.dtype)
        n = x.shape[axis]
        inner = int(np.prod(x.shape[axis + 1 :], dtype=np.int64))
        rows = int(np.prod(x.shape, dtype=np.int64)) // n if n else 0
        if rows:
            block = min(MAX_BLOCK, max(32, 1 << max(n - 1, 0).bit_length()))
            args = [x, out, np.int64(rows), np.int64(n), np.int64(inner)]
            device.launch(module, self.kernel.name, min(rows, device.max_grid * 4), block, args)
        return out
