"""Reductions over any axes and softmax: a block per output, warp shuffles, shared memory."""

from __future__ import annotations

from typing import Sequence

import numpy as np

from ...graph.ops import blas
from ...graph.ops import nnet as N
from ...graph.ops import reduce as R
from ...graph.var import Var
from .elementwise import contiguous_strides
from .kernel import Kernel, kernel_name
from .scalar import HELPERS, ctype, literal
from .templates import finish

MAX_BLOCK = 256
FULL = "0xffffffffu"
REDUCTIONS = (R.Sum, R.Prod, R.Max, R.Min, R.All, R.Argmax, blas.MaxAndArgmax)


def _lowest(dtype: str) -> str:
    if dtype in ("float32", "float64"):
        return literal(-np.inf, dtype)
    return literal(np.iinfo(dtype).min, dtype)


def _highest(dtype: str) -> str:
    if dtype in ("float32", "float64"):
        return literal(np.inf, dtype)
    return literal(np.iinfo(dtype).max, dtype)


# op -> (how a value joins the accumulator, as C with {0} = accumulator and {1} = value;
#        the identity in the accumulator's dtype; helpers it needs)
_COMBINE = {
    R.Sum: ("{0} = {0} + {1};", lambda d: literal(0, d), ()),
    R.Prod: ("{0} = {0} * {1};", lambda d: literal(1, d), ()),
    R.Max: ("{0} = th_max({0}, {1});", _lowest, ("th_max",)),
    R.Min: ("{0} = th_min({0}, {1});", _highest, ("th_min",)),
    "all": ("{0} = {0} & {1};", lambda d: "1", ()),
    "any": ("{0} = {0} | {1};", lambda d: "0", ()),
}


def accumulator(dtype: str) -> str:
    """The dtype partial results travel in: warp shuffles move 32 or 64 bits."""
    small = ("bool", "int8", "int16", "uint8", "uint16")
    return "int32" if dtype in small else dtype


def reducible(var: Var) -> bool:
    """True for the reductions this module lowers, on inputs with C types."""
    if not isinstance(var.op, REDUCTIONS):
        return False
    dtype = var.inputs[0].dtype
    return dtype != "float16" and not dtype.startswith("complex")


def _argmax_helper(name: str, symbol: str) -> str:
    """Is (a, index i) a better candidate than (b, j)? NaN first, then value, then lower index."""
    return "\n".join([
        f"template <class T> __device__ __forceinline__ bool {name}(T a, long long i, T b,",
        "                                                      long long j) {",
        "  if (i < 0) return false;",
        "  if (j < 0) return true;",
        "  const bool a_nan = a != a, b_nan = b != b;",
        "  if (a_nan || b_nan) return a_nan && (!b_nan || i < j);",
        f"  return a {symbol} b || (a == b && i < j);",
        "}",
    ])


def reduction_kernel(var: Var) -> ReductionLowering:
    """One block per output element: threads stride over the reduced elements, then combine."""
    op = var.op
    x = var.inputs[0]
    axes = tuple(op.axis)
    kept = [a for a in range(x.ndim) if a not in axes]
    argmax = isinstance(op, (R.Argmax, blas.MaxAndArgmax))
    helpers: list[str] = []
    if argmax:
        out_dtypes = [x.dtype, "int64"] if isinstance(op, blas.MaxAndArgmax) else ["int64"]
        acc_dtype = accumulator(x.dtype)
        minimum = getattr(op, "minimum", False)
        better = "th_better_min" if minimum else "th_better"
        helpers.append(_argmax_helper(better, "<" if minimum else ">"))
        combine = "if (" + better + "({2}, {3}, {0}, {1})) {{ {0} = {2}; {1} = {3}; }}"
        identity = _lowest(acc_dtype)
        names, types = ["acc", "index"], [ctype(acc_dtype), "long long"]
    else:
        out_dtypes = [var.dtype]
        key = ("any" if op.any else "all") if isinstance(op, R.All) else type(op)
        combine, make_identity, needed = _COMBINE[key]
        acc_dtype = accumulator(var.dtype)
        helpers += [HELPERS[h] for h in needed]
        identity = make_identity(acc_dtype)
        names, types = ["acc"], [ctype(acc_dtype)]
    acc = ctype(acc_dtype)
    params = [f"const {ctype(x.dtype)}* __restrict__ x0"]
    params += [f"{ctype(d)}* __restrict__ out{k}" for k, d in enumerate(out_dtypes)]
    params += ["const long long n_out", "const long long n_reduce"]
    params += [f"const long long {p}{a}" for a in kept for p in ("d", "s")]
    params += [f"const long long {p}{a}" for a in axes for p in ("r", "t")]
    others = [f"other_{n}" for n in names]
    warp = ["for (int delta = 16; delta > 0; delta >>= 1) {"]
    warp += [f"  const {t} other_{n} = __shfl_down_sync({FULL}, {n}, delta);"
             for n, t in zip(names, types)]
    warp += [f"  {combine.format(*names, *others)}", "}"]
    body = [f"__shared__ {acc} partial[32];"]
    if argmax:
        body.append("__shared__ long long partial_index[32];")
    body += ["for (long long o = blockIdx.x; o < n_out; o += gridDim.x) {",
             "  long long rest = o, base = 0;"]
    body += [f"  base += (rest % d{a}) * s{a}; rest /= d{a};" for a in reversed(kept)]
    body.append(f"  {acc} acc = {identity};")
    if argmax:
        body.append("  long long index = -1;")
    body += ["  for (long long j = threadIdx.x; j < n_reduce; j += blockDim.x) {",
             "    long long left = j, offset = base;"]
    body += [f"    offset += (left % r{a}) * t{a}; left /= r{a};" for a in reversed(axes)]
    value = "(x0[offset] != 0)" if isinstance(op, R.All) else f"({acc})x0[offset]"
    body.append(f"    const {acc} value = {value};")
    body.append(f"    {combine.format(*names, 'value', 'j')}")
    body.append("  }")
    body += [f"  {line}" for line in warp]
    body += ["  if (threadIdx.x % 32 == 0) {", "    partial[threadIdx.x / 32] = acc;"]
    if argmax:
        body.append("    partial_index[threadIdx.x / 32] = index;")
    body += ["  }", "  __syncthreads();", "  if (threadIdx.x < 32) {",
             f"    acc = threadIdx.x < blockDim.x / 32 ? partial[threadIdx.x] : {identity};"]
    if argmax:
        body.append("    index = threadIdx.x < blockDim.x / 32 ? partial_index[threadIdx.x] : -1;")
    body += [f"    {line}" for line in warp]
    body.append("    if (threadIdx.x == 0) {")
    if isinstance(op, blas.MaxAndArgmax):
        body += [f"      out0[o] = ({ctype(out_dtypes[0])})acc;", "      out1[o] = index;"]
    elif argmax:
        body.append("      out0[o] = index;")
    else:
        body.append(f"      out0[o] = ({ctype(out_dtypes[0])})acc;")
    body += ["    }", "  }", "  __syncthreads();  // partial is reused by this block's next output",
             "}"]
    what = f"{op} of {x.type}"
    source = finish(what, helpers, MAX_BLOCK, params, body)
    name = kernel_name(source)
    kernel = Kernel(name, source.replace("KERNEL", name), "reduction", what)
    return ReductionLowering(kernel, var, out_dtypes, kept, axes)


def _block_size(n: int) -> int:
    """The smallest power of two >= n, between one warp and MAX_BLOCK."""
    return min(MAX_BLOCK, max(32, 1 << max(n - 1, 0).bit_length()))


class ReductionLowering:
    """Launches a reduction: sizes and strides of the kept axes and of the reduced axes."""

    def __init__(self, kernel: Kernel, var: Var, out_dtypes: list, kept: list, axes: tuple) -> None:
        self.kernel, self.var, self.out_dtypes = kernel, var, out_dtypes
        self.kept, self.axes = kept, axes

    def launch(self, device, module, inputs: Sequence):
        """Allocate the outputs and run one block per output element (grid-strided)."""
        (x,) = inputs
        strides = contiguous_strides(x.shape)
        if self.var.op.keepdims:
            shape = tuple(1 if a in self.axes else n for a, n in enumerate(x.shape))
        else:
            shape = tuple(x.shape[a] for a in self.kept)
        outputs = [device.empty(shape, d) for d in self.out_dtypes]
        n_out = int(np.prod([x.shape[a] for a in self.kept], dtype=np.int64))
        n_reduce = int(np.prod([x.shape[a] for a in self.axes], dtype=np.int64))
        if n_out:
            args = [x] + outputs + [np.int64(n_out), np.int64(n_reduce)]
            args += [np.int64(v) for a in self.kept for v in (x.shape[a], strides[a])]
            args += [np.int64(v) for a in self.axes for v in (x.shape[a], strides[a])]
            grid = min(n_out, device.max_grid * 4)
            device.launch(module, self.kernel.name, grid, _block_size(n_reduce), args)
        return tuple(outputs) if len(outputs) > 1 else outputs[0]


# --- softmax --------------------------------------------------------------------------------------


def _block_reduce(name: str, combine: str, identity: str) -> list[str]:
    """Reduce `name` over the block into every thread (`partial` is 32 slots of shared scratch)."""
    shuffled = f"__shfl_down_sync({FULL}, {name}, delta)"
    warp = ["for (int delta = 16; delta > 0; delta >>= 1)",
            f"  {name} = {combine.format(a=name, b=shuffled)};"]
    return warp + [
        f"if (threadIdx.x % 32 == 0) partial[threadIdx.x / 32] = {name};",
        "__syncthreads();",
        "if (threadIdx.x < 32) {",
        f"  {name} = threadIdx.x < blockDim.x / 32 ? partial[threadIdx.x] : {identity};",
        *[f"  {line}" for line in warp],
        f"  if (threadIdx.x == 0) partial[0] = {name};",
        "}",
        "__syncthreads();",
        f"{name} = partial[0];",
        "__syncthreads();  // partial is reused next",
    ]


def softmax_kernel(var: Var) -> SoftmaxLowering:
    """Softmax or log-softmax along an axis: rows of `n` elements `inner` apart, a block per row."""
    op = var.op
    x = var.inputs[0]
    t, c = var.dtype, ctype(var.dtype)
    params = [f"const {ctype(x.dtype)}* __restrict__ x0", f"{c}* __restrict__ out0",
              "const long long rows", "const long long n", "const long long inner"]
    loop = "for (long long j = threadIdx.x; j < n; j += blockDim.x)"
    element = f"({c})x0[base + j * inner]"
    row = ["const long long base = (r / inner) * n * inner + r % inner;",
           f"{c} m = {literal(-np.inf, t)};",
           f"{loop} m = th_max(m, {element});"]
    row += _block_reduce("m", "th_max({a}, {b})", literal(-np.inf, t))
    row += [f"{c} s = {literal(0, t)};", f"{loop} s += exp({element} - m);"]
    row += _block_reduce("s", "({a} + {b})", literal(0, t))
    if isinstance(op, N.LogSoftmax):
        row.append(f"const {c} log_s = log(s);")
        result = f"{element} - m - log_s"
    else:
        result = f"exp({element} - m) / s"
    row.append(f"{loop} out0[base + j * inner] = {result};")
    body = [f"__shared__ {c} partial[32];",
            "for (long long r = blockIdx.x; r < rows; r += gridDim.x) {"]
    body += [f"  {line}" for line in row] + ["}"]
    what = f"{op} of {x.type}"
    source = finish(what, [HELPERS["th_max"]], MAX_BLOCK, params, body)
    name = kernel_name(source)
    return SoftmaxLowering(Kernel(name, source.replace("KERNEL", name), "softmax", what), var)


class SoftmaxLowering:
    """Launches softmax: a row per position off the axis, the block sized to the row length."""

    def __init__(self, kernel: Kernel, var: Var) -> None:
        self.kernel, self.var = kernel, var

    def launch(self, device, module, inputs: Sequence):
        """Allocate the output and run one block per row (grid-strided)."""
        (x,) = inputs
        axis = self.var.op.axis % len(x.shape)
        out = device.empty(x.shape, self.var.dtype)
        n = x.shape[axis]
        inner = int(np.prod(x.shape[axis + 1 :], dtype=np.int64))
        rows = int(np.prod(x.shape, dtype=np.int64)) // n if n else 0
        if rows:
            args = [x, out, np.int64(rows), np.int64(n), np.int64(inner)]
            grid = min(rows, device.max_grid * 4)
            device.launch(module, self.kernel.name, grid, _block_size(n), args)
        return out
