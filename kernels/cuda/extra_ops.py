"""CUDA kernels of cumsum/cumprod, sum_to_shape, the diagonal ops, and sort/argsort.

cumsum/cumprod: sequential scans per line (numpy's order, bit for bit), lines cut into chunks
scanned from their carries when there are too few lines to fill a GPU. sum_to_shape, diagonal,
its gradient and diag: grid-stride gathers. sort/argsort: a stable merge sort (tiles in shared
memory, then rank-merge passes in global memory), equal to numpy's stable order, NaNs last.
Nonzero stays on the host: its output size depends on the data.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ...graph.ops.reduce import CumProd, CumSum
from ...graph.ops.shape_alloc import (
    AllocDiag,
    ArgSort,
    Diagonal,
    DiagonalGrad,
    Sort,
    SumToShape,
)
from ...graph.var import Var
from .elementwise import BLOCK
from .kernel import Kernel, kernel_name
from .scalar import CTYPE, ctype
from .templates import finish

_DTYPES = "a kernel runs for real dtypes; this node's dtypes (float16, complex) have none"
# The reasons for the nodes this module declines (their dtypes have no CUDA C type).
HOST_REASONS = {cls: _DTYPES for cls in (CumSum, CumProd, SumToShape, AllocDiag, Diagonal,
                                         DiagonalGrad, Sort, ArgSort)}

_GRID_STRIDE = [
    "for (long long e = blockIdx.x * (long long)blockDim.x + threadIdx.x; e < total;",
    "     e += (long long)gridDim.x * blockDim.x) {",
]
_UNSIGNED = {"int8": "unsigned char", "int16": "unsigned short", "int32": "unsigned int",
             "int64": "unsigned long long"}


def _kernel(
    comment: str, params: Sequence[str], body: Sequence[str], what: str, helpers=()
) -> Kernel:
    """A named Kernel of kind 'other' computing `what` (the node), from its comment, parameters
    and body. The comment names only what the body depends on (op, dtypes, rank), so nodes that
    differ in their axis or static shape share one compiled kernel."""
    source = finish(comment, list(helpers), BLOCK, params, body)
    name = kernel_name(source)
    return Kernel(name, source.replace("KERNEL", name), "other", what)


def _grid(device, n: int) -> int:
    return max(1, min((n + BLOCK - 1) // BLOCK, device.max_grid))


def _size(shape: Sequence[int]) -> int:
    return int(np.prod(shape, dtype=np.int64))


def _contiguous(shape: Sequence[int]) -> list[int]:
    """Element strides of a C-contiguous array of `shape`."""
    strides, step = [], 1
    for d in reversed(shape):
        strides.append(step)
        step *= int(d)
    return strides[::-1]


def _split(shape: Sequence[int], axis: int) -> tuple[int, int, int]:
    """(lines before the axis, its length, elements after it) of a C-contiguous array."""
    return _size(shape[:axis]), int(shape[axis]), _size(shape[axis + 1 :])


class _Lowering:
    """Kernels and a launch function (device, module, inputs) -> DeviceArray."""

    def __init__(self, kernels: list[Kernel], launch) -> None:
        self.kernels, self._launch = kernels, launch

    def launch(self, device, module, inputs: Sequence):
        """Allocate the output and launch the kernels."""
        return self._launch(device, module, inputs)


# --- cumsum / cumprod: sequential scans of chunks of lines ---------------------------------------

# Lines are cut into chunks only when there are too few lines to fill a GPU: then each chunk's
# total is found first, the totals are scanned per line, and each chunk is scanned from its carry.
_PARALLEL = 8192  # threads worth having busy (an H100: 132 SMs x 64)
_MIN_CHUNK = 64


def _chunks(lines: int, n: int) -> tuple[int, int]:
    """(chunks per line, chunk length): one chunk (numpy's order, bit for bit) unless lines are
    few and long."""
    chunks = 1
    if lines < _PARALLEL and n >= 2 * _MIN_CHUNK:
        chunks = min(-(-_PARALLEL // lines), n // _MIN_CHUNK)
    chunk = -(-n // chunks)
    return -(-n // chunk), chunk


def _cumulative(var: Var) -> _Lowering:
    op, x = var.op, var.inputs[0]
    product = isinstance(op, CumProd)
    reverse = bool(getattr(op, "reverse", False))
    cin, cout = ctype(x.dtype), ctype(var.dtype)
    # integers wrap as numpy's do: unsigned arithmetic (signed overflow is undefined in C)
    cacc = _UNSIGNED.get(var.dtype, cout)
    sign = "*" if product else "+"
    name = "cumprod" if product else "cumsum"
    what = f"{var.op} of {x.type}"
    kind = f"{name}{' (reversed)' if reverse else ''} along one axis of {x.dtype} -> {var.dtype}"

    def at(k: str) -> str:
        return f"base + {'(n - 1 - ' + k + ')' if reverse else k} * inner"

    shape = ["const long long total", "const long long lines", "const long long n",
             "const long long inner", "const long long chunk"]
    head = [
        "// thread e scans chunk e / lines of line e % lines (neighbouring threads take",
        "// neighbouring lines: reads coalesce when the axis is not the last one)",
        *_GRID_STRIDE,
        "  const long long line = e % lines, c = e / lines;",
        "  const long long base = (line / inner) * n * inner + line % inner;",
        "  const long long k0 = c * chunk, k1 = k0 + chunk < n ? k0 + chunk : n;",
    ]
    scan = _kernel(
        f"{kind}: scan each chunk from its carry",
        [f"const {cin}* __restrict__ x0", f"{cout}* __restrict__ out0",
         f"const {cout}* __restrict__ carry"] + shape,
        [*head,
         f"  {cacc} acc = ({cacc})({cout})x0[{at('k0')}];",
         f"  if (c > 0) acc = ({cacc})carry[(c - 1) * lines + line] {sign} acc;",
         f"  out0[{at('k0')}] = ({cout})acc;",
         "  for (long long k = k0 + 1; k < k1; ++k) {",
         f"    const long long at = {at('k')};",
         f"    acc = acc {sign} ({cacc})({cout})x0[at];",
         f"    out0[at] = ({cout})acc;",
         "  }",
         "}"],
        what,
    )
    totals = _kernel(
        f"{kind}: the total of each chunk",
        [f"const {cin}* __restrict__ x0", f"{cout}* __restrict__ totals"] + shape,
        [*head,
         f"  {cacc} acc = ({cacc})({cout})x0[{at('k0')}];",
         "  for (long long k = k0 + 1; k < k1; ++k)",
         f"    acc = acc {sign} ({cacc})({cout})x0[{at('k')}];",
         f"  totals[c * lines + line] = ({cout})acc;",
         "}"],
        what,
    )
    carries = _kernel(
        f"{name} of {var.dtype} chunk totals: inclusive scan per line, in place",
        [f"{cout}* totals", "const long long total", "const long long chunks"],
        [*_GRID_STRIDE,
         f"  {cacc} acc = ({cacc})totals[e];",
         "  for (long long c = 1; c < chunks; ++c) {",
         f"    acc = acc {sign} ({cacc})totals[c * total + e];",
         f"    totals[c * total + e] = ({cout})acc;",
         "  }",
         "}"],
        what,
    )

    def launch(device, module, inputs):
        (x_,) = inputs
        out = device.empty(x_.shape, var.dtype)
        before, n, inner = _split(x_.shape, op.axis)
        lines = before * inner
        if not lines * n:
            return out
        chunks, chunk = _chunks(lines, n)
        shape_ = [np.int64(lines * chunks), np.int64(lines), np.int64(n), np.int64(inner),
                  np.int64(chunk)]
        grid = _grid(device, lines * chunks)
        carry = device.empty((chunks, lines) if chunks > 1 else (1,), var.dtype)
        if chunks > 1:
            device.launch(module, totals.name, grid, BLOCK, [x_, carry] + shape_)
            args = [carry, np.int64(lines), np.int64(chunks - 1)]
            device.launch(module, carries.name, _grid(device, lines), BLOCK, args)
        device.launch(module, scan.name, grid, BLOCK, [x_, out, carry] + shape_)
        return out

    return _Lowering([scan, totals, carries], launch)


# --- sum_to_shape: one thread per output element sums its group ----------------------------------


def _sum_to_shape(var: Var) -> _Lowering:
    g, x = var.inputs
    ndim = g.ndim
    c = ctype(var.dtype)
    cacc = "double" if var.dtype in ("float32", "float64") else "long long"
    what = f"sum_to_shape of {g.type} to the shape of {x.type}"
    comment = f"sum_to_shape of {var.dtype}: {ndim} axes of g, summed down to the output"
    params = [f"const {c}* __restrict__ x0", f"{c}* __restrict__ out0", "const long long total",
              "const long long groups"]
    params += [f"const long long {p}{a}" for a in range(ndim) for p in ("k", "r", "s")]
    body = [
        "// per axis a of g: k (kept size, 1 when summed), r (summed size, else 1), s (stride)",
        *_GRID_STRIDE,
        "  long long rest = e, base = 0;",
        *[f"  base += (rest % k{a}) * s{a}; rest /= k{a};" for a in reversed(range(ndim))],
        f"  {cacc} acc = 0;",
        "  for (long long j = 0; j < groups; ++j) {",
        "    long long left = j, at = base;",
        *[f"    at += (left % r{a}) * s{a}; left /= r{a};" for a in reversed(range(ndim))],
        f"    acc += ({cacc})x0[at];",
        "  }",
        f"  out0[e] = ({c})acc;",
        "}",
    ]
    kernel = _kernel(comment, params, body, what)

    def launch(device, module, inputs):
        g_, x_ = inputs
        lead = len(g_.shape) - len(x_.shape)
        kept, summed = [], []
        for a, dg in enumerate(g_.shape):
            dx = x_.shape[a - lead] if a >= lead else 1
            if a >= lead and dx != dg and dx != 1:
                raise ValueError(
                    f"sum_to_shape: cannot sum a cotangent of shape {g_.shape} to shape "
                    f"{x_.shape} (axis {a}: {dg} vs {dx})"
                )
            keep = a >= lead and dx == dg
            kept.append(dg if keep else 1)
            summed.append(1 if keep else dg)
        out = device.empty(x_.shape, var.dtype)
        total = _size(x_.shape)
        if total:
            args = [g_, out, np.int64(total), np.int64(_size(summed))]
            for k, r, s in zip(kept, summed, _contiguous(g_.shape)):
                args += [np.int64(k), np.int64(r), np.int64(s)]
            device.launch(module, kernel.name, _grid(device, total), BLOCK, args)
        return out

    return _Lowering([kernel], launch)


# --- diagonals -----------------------------------------------------------------------------------


def _diagonal_length(n: int, m: int, offset: int) -> int:
    return max(0, min(n + min(offset, 0), m - max(offset, 0)))


def _alloc_diag(var: Var) -> _Lowering:
    c = ctype(var.dtype)
    what = f"{var.op} of {var.inputs[0].type}"
    params = [f"const {c}* __restrict__ x0", f"{c}* __restrict__ out0", "const long long total",
              "const long long m", "const long long offset"]
    body = [
        "// out0 is m x m: zero but for x0 on the diagonal col - row == offset",
        *_GRID_STRIDE,
        "  const long long row = e / m, col = e % m;",
        f"  out0[e] = col - row == offset ? x0[row < col ? row : col] : ({c})0;",
        "}",
    ]
    kernel = _kernel(f"AllocDiag of {var.dtype}", params, body, what)
    offset = var.op.offset

    def launch(device, module, inputs):
        (v,) = inputs
        m = v.shape[0] + abs(offset)
        out = device.empty((m, m), var.dtype)
        if m:
            args = [v, out, np.int64(m * m), np.int64(m), np.int64(offset)]
            device.launch(module, kernel.name, _grid(device, m * m), BLOCK, args)
        return out

    return _Lowering([kernel], launch)


def _diagonal(var: Var) -> _Lowering:
    """A strided gather: the diagonal axis steps along both axes at once."""
    op, x = var.op, var.inputs[0]
    c, ndim = ctype(var.dtype), var.ndim
    what = f"{op} of {x.type}"
    params = [f"const {c}* __restrict__ x0", f"{c}* __restrict__ out0", "const long long total",
              "const long long start"]
    params += [f"const long long {p}{a}" for a in range(ndim) for p in ("d", "s")]
    body = [
        "// output axis a has size d<a> and steps s<a> elements of x0 (the last: the diagonal)",
        *_GRID_STRIDE,
        "  long long rest = e, at = start;",
        *[f"  at += (rest % d{a}) * s{a}; rest /= d{a};" for a in reversed(range(ndim))],
        "  out0[e] = x0[at];",
        "}",
    ]
    kernel = _kernel(f"Diagonal of {var.dtype}: a gather of {ndim} strided axes", params, body,
                     what)

    def launch(device, module, inputs):
        (x_,) = inputs
        strides = _contiguous(x_.shape)
        a1, a2, offset = op.axis1, op.axis2, op.offset
        length = _diagonal_length(x_.shape[a1], x_.shape[a2], offset)
        rest = [(d, s) for a, (d, s) in enumerate(zip(x_.shape, strides)) if a not in (a1, a2)]
        dims = rest + [(length, strides[a1] + strides[a2])]
        out = device.empty(tuple(d for d, _ in dims), var.dtype)
        total = _size(out.shape)
        if total:
            start = max(-offset, 0) * strides[a1] + max(offset, 0) * strides[a2]
            args = [x_, out, np.int64(total), np.int64(start)]
            args += [np.int64(v) for d, s in dims for v in (d, s)]
            device.launch(module, kernel.name, _grid(device, total), BLOCK, args)
        return out

    return _Lowering([kernel], launch)


def _diagonal_grad(var: Var) -> _Lowering:
    """Every output element: zero, or the element of g on its diagonal."""
    op, (g, x) = var.op, var.inputs
    c, ndim = ctype(var.dtype), x.ndim
    a1, a2 = op.axis1, op.axis2
    what = f"{op} of {g.type} into the shape of {x.type}"
    params = [f"const {c}* __restrict__ x0", f"{c}* __restrict__ out0", "const long long total",
              "const long long lo1", "const long long lo2", "const long long length"]
    params += [f"const long long {p}{a}" for a in range(ndim) for p in ("d", "s")]
    body = [
        "// d<a>: the output's sizes; s<a>: g's stride of axis a (the diagonal's on axis1, 0 on",
        f"// axis2); the diagonal is where c{a1} - lo1 == c{a2} - lo2",
        *_GRID_STRIDE,
        "  long long rest = e;",
        *[f"  const long long c{a} = rest % d{a}; rest /= d{a};" for a in reversed(range(ndim))],
        f"  const long long k = c{a1} - lo1;",
        f"  const bool on = k == c{a2} - lo2 && k >= 0 && k < length;",
        "  const long long at = " + " + ".join(
            f"c{a} * s{a}" if a != a1 else f"k * s{a}" for a in range(ndim)) + ";",
        f"  out0[e] = on ? x0[at] : ({c})0;",
        "}",
    ]
    comment = f"DiagonalGrad of {var.dtype}: {ndim} axes, the diagonal on axes {a1} and {a2}"
    kernel = _kernel(comment, params, body, what)

    def launch(device, module, inputs):
        g_, x_ = inputs
        length = _diagonal_length(x_.shape[a1], x_.shape[a2], op.offset)
        rest = [d for a, d in enumerate(x_.shape) if a not in (a1, a2)]
        expected = tuple(rest) + (length,)
        if tuple(g_.shape) != expected:
            raise ValueError(
                f"diagonal gradient: the cotangent has shape {g_.shape}, expected {expected} "
                f"(the diagonal of an input of shape {x_.shape})"
            )
        g_strides = _contiguous(expected)
        strides, k = [], 0
        for a in range(len(x_.shape)):
            if a == a1:
                strides.append(g_strides[-1])
            elif a == a2:
                strides.append(0)
            else:
                strides.append(g_strides[k])
                k += 1
        out = device.empty(x_.shape, var.dtype)
        total = _size(x_.shape)
        if total:
            args = [g_, out, np.int64(total), np.int64(max(-op.offset, 0)),
                    np.int64(max(op.offset, 0)), np.int64(length)]
            args += [np.int64(v) for d, s in zip(x_.shape, strides) for v in (d, s)]
            device.launch(module, kernel.name, _grid(device, total), BLOCK, args)
        return out

    return _Lowering([kernel], launch)


# --- sort / argsort: a stable merge sort, every element of every line in parallel ----------------

TILE = 256  # elements a block sorts in shared memory (one per thread)
_LESS = """// numpy's order: NaN after every number (NaNs keep their order: the sort is stable)
template <class T> __device__ __forceinline__ bool th_sort_less(T a, T b) {
  return (b != b) ? (a == a) : (a < b);
}"""


def _sort(var: Var) -> _Lowering:
    """log2(n) merge passes over line-major buffers, each element placed by its rank.

    Pass w merges neighbouring sorted runs of w elements: an element's place in the merged run is
    its place in its own run plus the number of elements of the other run that go before it
    (found by binary search; the left run wins ties, so equal keys keep their order). The result
    is numpy's stable sort exactly, whatever `kind` asks for: numpy leaves the order of ties to
    'quicksort' unspecified (it differs between CPUs), and the stable order is one it allows.
    """
    op, x = var.op, var.inputs[0]
    indices = isinstance(op, ArgSort)
    what = f"{op} of {x.type}"
    c = ctype(x.dtype)
    name = "argsort" if indices else "sort"
    key_params = [f"const {c}* __restrict__ keys", f"{c}* __restrict__ keys_out"]
    idx_params = ["const long long* __restrict__ idx", "long long* __restrict__ idx_out"]
    # 1. gather each line into a row and sort its tiles of TILE in shared memory: the first
    # log2(TILE) merge passes without a trip to global memory. A block takes one tile of a long
    # line, or as many whole short lines as fit in TILE.
    idx_shared = [f"  __shared__ long long si[2][{TILE}];"] if indices else []
    gather = _kernel(
        f"{name} of {x.dtype}: gather lines along one axis, sort tiles of {TILE} per block",
        [f"const {c}* __restrict__ x0", f"{c}* __restrict__ keys_out"]
        + (["long long* __restrict__ idx_out"] if indices else [])
        + ["const long long total", "const long long n", "const long long inner",
           "const long long tiles"],
        [f"__shared__ {c} sk[2][{TILE}];",
         *[line.strip() for line in idx_shared],
         f"const long long per_line = (n + {TILE - 1}) / {TILE}, group = {TILE} / n;",
         "const int t = threadIdx.x;",
         "for (long long tile = blockIdx.x; tile < tiles; tile += gridDim.x) {",
         f"  const long long start = n >= {TILE}",
         f"      ? (tile / per_line) * n + (tile % per_line) * {TILE} : tile * group * n;",
         f"  long long count = n >= {TILE} ? n - (tile % per_line) * {TILE} : group * n;",
         f"  count = count < {TILE} ? count : {TILE};",
         "  count = count < total - start ? count : total - start;",
         "  const long long e = start + t, p = e % n;",
         "  if (t < count) {",
         "    const long long line = e / n;",
         "    sk[0][t] = x0[((line / inner) * n + p) * inner + line % inner];",
         *(["    si[0][t] = p;"] if indices else []),
         "  }",
         "  __syncthreads();",
         "  int cur = 0;",
         f"  for (long long width = 1; width < n && width < {TILE}; width *= 2) {{",
         "    if (t < count) {",
         "      const long long run = p / width, other = (run ^ 1) * width;",
         f"      const {c} key = sk[cur][t];",
         "      long long to = p;",
         "      if (other < n) {",
         "        long long lo = other, hi = other + width < n ? other + width : n;",
         "        const bool left = (run & 1) == 0;",
         "        while (lo < hi) {",
         "          const long long mid = lo + (hi - lo) / 2;",
         "          const bool before = left ? th_sort_less(sk[cur][t - p + mid], key)",
         "                                   : !th_sort_less(key, sk[cur][t - p + mid]);",
         "          if (before) lo = mid + 1; else hi = mid;",
         "        }",
         "        to = (run & ~1LL) * width + (p - run * width) + (lo - other);",
         "      }",
         "      sk[1 - cur][t - p + to] = key;",
         *(["      si[1 - cur][t - p + to] = si[cur][t];"] if indices else []),
         "    }",
         "    cur = 1 - cur;",
         "    __syncthreads();",
         "  }",
         "  if (t < count) {",
         "    keys_out[e] = sk[cur][t];",
         *(["    idx_out[e] = si[cur][t];"] if indices else []),
         "  }",
         "  __syncthreads();  // the next tile reuses the shared arrays",
         "}"],
        what,
        [_LESS],
    )
    # 2. one merge pass of runs of `width`
    merge = _kernel(
        f"{name} of {x.dtype} rows: merge sorted runs of `width` (stable)",
        key_params + (idx_params if indices else [])
        + ["const long long total", "const long long n", "const long long width"],
        [*_GRID_STRIDE,
         "  const long long base = e - e % n, p = e % n, run = p / width;",
         "  const long long other = (run ^ 1) * width;",
         f"  const {c} key = keys[e];",
         "  long long to = p;",
         "  if (other < n) {",
         "    long long lo = other, hi = other + width < n ? other + width : n;",
         "    const bool left = (run & 1) == 0;",
         "    while (lo < hi) {  // count the other run's elements that go before this one",
         "      const long long mid = lo + (hi - lo) / 2;",
         "      const bool before = left ? th_sort_less(keys[base + mid], key)",
         "                               : !th_sort_less(key, keys[base + mid]);",
         "      if (before) lo = mid + 1; else hi = mid;",
         "    }",
         "    to = (run & ~1LL) * width + (p - run * width) + (lo - other);",
         "  }",
         "  keys_out[base + to] = key;",
         *(["  idx_out[base + to] = idx[e];"] if indices else []),
         "}"],
        what,
        [_LESS],
    )
    # 3. scatter the rows back along the axis (the values for sort, the positions for argsort)
    cout = ctype(var.dtype)
    scatter = _kernel(
        f"sort, argsort: {var.dtype} rows back into lines along one axis",
        [f"const {cout}* __restrict__ rows", f"{cout}* __restrict__ out0",
         "const long long total", "const long long n", "const long long inner"],
        [*_GRID_STRIDE,
         "  const long long line = e / n, p = e % n;",
         "  out0[((line / inner) * n + p) * inner + line % inner] = rows[e];",
         "}"],
        what,
    )

    def launch(device, module, inputs):
        (x_,) = inputs
        out = device.empty(x_.shape, var.dtype)
        lines, n, inner = _split(x_.shape, op.axis)
        total = lines * n * inner
        if not total:
            return out
        grid = _grid(device, total)
        size = (total,)
        keys = [device.empty(size, x_.dtype), device.empty(size, x_.dtype)]
        idx = [device.empty(size, "int64"), device.empty(size, "int64")] if indices else None
        shape = [np.int64(total), np.int64(n), np.int64(inner)]
        if n >= TILE:
            tiles = lines * inner * (-(-n // TILE))
        else:
            tiles = -(-(lines * inner) // (TILE // n))
        first = [x_, keys[0]] + ([idx[0]] if indices else []) + shape + [np.int64(tiles)]
        device.launch(module, gather.name, min(tiles, device.max_grid), TILE, first)
        width, k = TILE, 0
        while width < n:
            args = [keys[k], keys[1 - k]] + ([idx[k], idx[1 - k]] if indices else [])
            args += [np.int64(total), np.int64(n), np.int64(width)]
            device.launch(module, merge.name, grid, BLOCK, args)
            width, k = width * 2, 1 - k
        rows = idx[k] if indices else keys[k]
        device.launch(module, scatter.name, grid, BLOCK, [rows, out] + shape)
        return out

    return _Lowering([gather, merge, scatter], launch)


_BUILDERS = {CumSum: _cumulative, CumProd: _cumulative, SumToShape: _sum_to_shape,
             AllocDiag: _alloc_diag, Diagonal: _diagonal, DiagonalGrad: _diagonal_grad,
             Sort: _sort, ArgSort: _sort}


def lowering(var: Var):
    """The lowering of `var` when this module generates its kernel, else None."""
    build = _BUILDERS.get(type(var.op))
    if build is None:
        return None
    dtypes = [x.dtype for x in var.inputs] + [var.dtype]
    if not all(d in CTYPE for d in dtypes):
        return None
    return build(var)
