"""CUDA lowering of pool_2d and its gradients: one thread per output (pool) or per input (grads)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ...graph.ops.pool import (
    AveragePool2dGrad,
    MaxPool2dGrad,
    MaxPool2dGradGrad,
    Pool2d,
    pool_output_length,
)
from ...graph.var import Var
from .kernel import Kernel, kernel_name
from .scalar import CTYPE, ctype, literal
from .templates import finish

BLOCK = 256
_POOL_OPS = (Pool2d, MaxPool2dGrad, MaxPool2dGradGrad, AveragePool2dGrad)
# The geometry every pooling kernel takes at launch, so one source serves every geometry.
_GEOMETRY = ("H", "W", "HO", "WO", "wr", "wc", "sr", "sc", "pr", "pc")


def lowering(var: Var):
    """The lowering of a Pool2d, MaxPool2dGrad, MaxPool2dGradGrad or AveragePool2dGrad, else None."""
    if not isinstance(var.op, _POOL_OPS):
        return None
    dtypes = [x.dtype for x in var.inputs] + [var.dtype]
    if any(d not in CTYPE or d == "bool" for d in dtypes):
        return None  # complex, float16 or bool: the numpy perform on the host
    return PoolLowering(var)


# --- generated kernels -----------------------------------------------------------------------------


def _named(source: str, what: str) -> Kernel:
    name = kernel_name(source)
    return Kernel(name, source.replace("KERNEL", name), "other", what)


def _accumulator(dtype: str) -> str:
    """Sums of integers in 64 bits (as numpy's sum), floats in their own type."""
    if dtype.startswith("uint"):
        return "unsigned long long"
    return ctype(dtype) if dtype.startswith("float") else "long long"


def _lowest(dtype: str) -> str:
    if dtype.startswith("float"):
        return f"(({ctype(dtype)})-INFINITY)"
    lowest = int(np.iinfo(dtype).min)  # (min + 1) - 1: the literal -2**63 does not fit in C
    return f"(({ctype(dtype)})({lowest + 1}LL) - 1)" if lowest else literal(0, dtype)


_PARAMS = [f"const long long {p}" for p in _GEOMETRY]

_OUTPUT_INDEX = [  # i -> (plane, oh, ow) and the window's first row and column in input coordinates
    "  const long long ow = i % WO, oh = (i / WO) % HO, plane = i / (WO * HO);",
    "  const long long r0 = oh * sr - pr, c0 = ow * sc - pc;",
    "  const long long r_lo = r0 > 0 ? r0 : 0, r_hi = r0 + wr < H ? r0 + wr : H;",
    "  const long long c_lo = c0 > 0 ? c0 : 0, c_hi = c0 + wc < W ? c0 + wc : W;",
    "  const long long base = plane * H * W;",
]

_INPUT_INDEX = [  # i -> (plane, y, x); then every window holding (y, x), taps in the reference order
    "  const long long x = i % W, y = (i / W) % H, plane = i / (W * H);",
    "  for (long long ti = 0; ti < wr; ti++) {",
    "    const long long r = y + pr - ti;  // (y, x) is tap (ti, tj) of window (r / sr, s / sc)",
    "    if (r < 0 || r % sr != 0 || r / sr >= HO) continue;",
    "    for (long long tj = 0; tj < wc; tj++) {",
    "      const long long s = x + pc - tj;",
    "      if (s < 0 || s % sc != 0 || s / sc >= WO) continue;",
    "      const long long o = (plane * HO + r / sr) * WO + s / sc;",
]


def _count(mode: str) -> str:
    """The number of entries a window at (r0, c0) averages over (padding counts in inc_pad)."""
    if mode == "average_inc_pad":  # the window clipped to the padded input
        rows = "((r0 + wr < H + pr ? r0 + wr : H + pr) - (r0 > -pr ? r0 : -pr))"
        cols = "((c0 + wc < W + pc ? c0 + wc : W + pc) - (c0 > -pc ? c0 : -pc))"
        return f"(double)({rows} * {cols})"
    return "(double)((r_hi - r_lo) * (c_hi - c_lo))"


def pool_kernel(mode: str, dtype: str) -> Kernel:
    """Pool2d: each thread reduces one window (max propagates NaN, as numpy)."""
    t = ctype(dtype)
    params = [f"const {t}* __restrict__ x", f"{t}* __restrict__ out", "const long long n"]
    loop = [
        "  for (long long r = r_lo; r < r_hi; r++)",
        "    for (long long c = c_lo; c < c_hi; c++) {",
        "      const {t} v = x[base + r * W + c];".replace("{t}", t),
    ]
    if mode == "max":
        body = (
            [f"  {t} m = {_lowest(dtype)};  // the padding never wins"]
            + loop
            + [
                "      if (v != v || v > m) m = v;  // v != v: NaN, which then stays",
                "    }",
                "  out[i] = m;",
            ]
        )
    else:
        acc = _accumulator(dtype)
        body = [f"  {acc} acc = ({acc})0;"] + loop + ["      acc += v;", "    }"]
        if mode == "sum":
            body.append(f"  out[i] = ({t})acc;")
        else:
            body.append(f"  out[i] = ({t})((double)acc / {_count(mode)});")
    body = _grid_stride() + _OUTPUT_INDEX + body + ["}"]
    what = f"Pool2d mode={mode} of {dtype}"
    return _named(finish(what, [], BLOCK, params + _PARAMS, body), what)


def max_grad_kernel(x_dtype: str, m_dtype: str, g_dtype: str) -> Kernel:
    """MaxPool2dGrad as a gather: each input sums the gradients of the windows whose maximum it
    equals (every tied maximum gets the whole gradient, as in Theano)."""
    tx, tm, tg = ctype(x_dtype), ctype(m_dtype), ctype(g_dtype)
    acc = ctype(np.result_type(x_dtype, g_dtype).name)
    params = [
        f"const {tx}* __restrict__ x",
        f"const {tm}* __restrict__ maxout",
        f"const {tg}* __restrict__ g",
        f"{tx}* __restrict__ gx",
        "const long long n",
    ]
    body = (
        _grid_stride()
        + [
            f"  const {tx} v = x[i];",
            f"  {acc} acc = ({acc})0;",
        ]
        + _INPUT_INDEX
        + [
            f"      if (v == maxout[o]) acc += ({acc})g[o];",
            "    }",
            "  }",
            f"  gx[i] = ({tx})acc;",
            "}",
        ]
    )
    what = f"MaxPool2dGrad (gather) of x {x_dtype}, maxout {m_dtype}, gradient {g_dtype}"
    return _named(finish(what, [], BLOCK, params + _PARAMS, body), what)


def max_grad_grad_kernel(x_dtype: str, m_dtype: str, gg_dtype: str) -> Kernel:
    """MaxPool2dGradGrad: per window, the sum of gg at the entries equal to the window's max."""
    tx, tm, tg = ctype(x_dtype), ctype(m_dtype), ctype(gg_dtype)
    params = [
        f"const {tx}* __restrict__ x",
        f"const {tm}* __restrict__ maxout",
        f"const {tg}* __restrict__ gg",
        f"{tg}* __restrict__ out",
        "const long long n",
    ]
    body = (
        _grid_stride()
        + _OUTPUT_INDEX
        + [
            f"  const {tm} m = maxout[i];",
            f"  {tg} acc = ({tg})0;",
            "  for (long long r = r_lo; r < r_hi; r++)",
            "    for (long long c = c_lo; c < c_hi; c++)",
            "      if (x[base + r * W + c] == m) acc += gg[base + r * W + c];",
            "  out[i] = acc;",
            "}",
        ]
    )
    what = f"MaxPool2dGradGrad of x {x_dtype}, maxout {m_dtype}, gg {gg_dtype}"
    return _named(finish(what, [], BLOCK, params + _PARAMS, body), what)


def average_grad_kernel(mode: str, x_dtype: str, g_dtype: str) -> Kernel:
    """AveragePool2dGrad (sum and average modes) as a gather: each input sums its windows'
    gradients, divided by the windows' counts (in double, as the reference)."""
    tx, tg = ctype(x_dtype), ctype(g_dtype)
    wide = ctype(np.result_type(x_dtype, g_dtype).name)
    acc = wide if mode == "sum" else "double"
    params = [f"const {tg}* __restrict__ g", f"{tx}* __restrict__ gx", "const long long n"]
    if mode == "sum":
        add = [f"      acc += ({wide})g[o];"]
    else:  # the window's count, from its first row and column (r0, c0) in input coordinates
        add = [
            "      const long long r0 = (r / sr) * sr - pr, c0 = (s / sc) * sc - pc;",
            "      const long long r_lo = r0 > 0 ? r0 : 0, r_hi = r0 + wr < H ? r0 + wr : H;",
            "      const long long c_lo = c0 > 0 ? c0 : 0, c_hi = c0 + wc < W ? c0 + wc : W;",
            f"      acc += (double)({wide})g[o] / {_count(mode)};",
        ]
    body = (
        _grid_stride()
        + [f"  {acc} acc = ({acc})0;"]
        + _INPUT_INDEX
        + add
        + [
            "    }",
            "  }",
            f"  gx[i] = ({tx})acc;",
            "}",
        ]
    )
    what = f"AveragePool2dGrad mode={mode} (gather) of x {x_dtype}, gradient {g_dtype}"
    return _named(finish(what, [], BLOCK, params + _PARAMS, body), what)


def _grid_stride() -> list[str]:
    return [
        "for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < n;",
        "     i += (long long)gridDim.x * blockDim.x) {",
    ]


# --- the lowering -------------------------------------------------------------------------------------


class PoolLowering:
    """Launches one pooling kernel over the last two axes; the leading axes are planes."""

    def __init__(self, var: Var) -> None:
        self.var, op = var, var.op
        dtypes = [x.dtype for x in var.inputs]
        if isinstance(op, Pool2d):
            kernel = pool_kernel(op.mode, dtypes[0])
        elif isinstance(op, MaxPool2dGrad):
            kernel = max_grad_kernel(*dtypes)
        elif isinstance(op, MaxPool2dGradGrad):
            kernel = max_grad_grad_kernel(*dtypes)
        else:
            kernel = average_grad_kernel(op.mode, *dtypes)
        self.kernel = kernel

    def launch(self, device, module, inputs: Sequence):
        """Check the shapes, allocate the result, launch one thread per result element."""
        op, x = self.var.op, inputs[0]
        name = type(op).__name__
        rows, cols = x.shape[-2:]
        out = tuple(
            pool_output_length(n, w, s, p, op.ignore_border)
            for n, w, s, p in zip((rows, cols), op.ws, op.stride, op.pad)
        )
        pooled = tuple(x.shape[:-2]) + out
        if isinstance(op, Pool2d):
            arrays, result = [x], device.empty(pooled, self.var.dtype)
        elif isinstance(op, MaxPool2dGradGrad):
            _expect(inputs[1].shape, pooled, name, "maxout", x.shape)
            _expect(inputs[2].shape, x.shape, name, "gg", x.shape)
            arrays, result = list(inputs), device.empty(pooled, self.var.dtype)
        else:
            for given, label in zip(inputs[1:], ("maxout", "the gradient")[-len(inputs) + 1 :]):
                _expect(given.shape, pooled, name, label, x.shape)
            arrays = list(inputs) if isinstance(op, MaxPool2dGrad) else [inputs[1]]
            result = device.empty(x.shape, self.var.dtype)
        n = result.size
        if n:
            geometry = (rows, cols) + out + op.ws + op.stride + op.pad
            args = arrays + [result, np.int64(n)] + [np.int64(v) for v in geometry]
            grid = max(1, min((n + BLOCK - 1) // BLOCK, device.max_grid))
            device.launch(module, self.kernel.name, grid, BLOCK, args)
        return result


def _expect(given: tuple, expected: tuple, name: str, label: str, x_shape: tuple) -> None:
    if tuple(given) != tuple(expected):
        raise ValueError(
            f"{name}: {label} has shape {tuple(given)}, expected {tuple(expected)} for an input "
            f"of shape {tuple(x_shape)}"
        )
