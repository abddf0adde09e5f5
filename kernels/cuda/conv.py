"""CUDA lowering of conv2d and its two gradients: im2col / col2im kernels around a batched GEMM."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ...graph.ops.conv import Conv2d, Conv2dGradInputs, Conv2dGradWeights, conv_output_length
from ...graph.var import Var
from .kernel import Kernel, kernel_name
from .scalar import CTYPE, ctype
from .templates import finish

BLOCK = 256  # threads per block of the im2col and col2im kernels
TILE = 16  # the GEMM's output tile is TILE x TILE, one thread per entry
_CONV_OPS = (Conv2d, Conv2dGradInputs, Conv2dGradWeights)
# The geometry every im2col / col2im kernel takes at launch, so one source serves every geometry.
_GEOMETRY = ("C", "H", "W", "KR", "KC", "HO", "WO", "pr", "pc", "sr", "sc", "dr", "dc", "flip")


def lowering(var: Var):
    """The lowering of a Conv2d, Conv2dGradInputs or Conv2dGradWeights node, else None."""
    if not isinstance(var.op, _CONV_OPS):
        return None
    dtypes = [x.dtype for x in var.inputs[:2]] + [var.dtype]
    if any(d not in CTYPE or d == "bool" for d in dtypes):
        return None  # complex, float16 or bool: the numpy perform on the host
    return ConvLowering(var)


# --- generated kernels -----------------------------------------------------------------------------


def _named(source: str, kind: str, what: str) -> Kernel:
    name = kernel_name(source)
    return Kernel(name, source.replace("KERNEL", name), kind, what)


def _grid_stride(n: str) -> list[str]:
    return [
        f"for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < {n};",
        "     i += (long long)gridDim.x * blockDim.x) {",
    ]


def im2col_kernel(x_dtype: str, dtype: str) -> Kernel:
    """cols[b, c, i, j, p] = the zero-padded input under filter tap (i, j) at output pixel p.

    With filter_flip the tap (i, j) reads the input where the flipped filter's (i, j) lands, so the
    GEMM with the stored filters is a convolution and the weight gradient comes out unflipped.
    """
    tx, t = ctype(x_dtype), ctype(dtype)
    params = [f"const {tx}* __restrict__ x", f"{t}* __restrict__ cols", "const long long n"]
    params += [f"const long long {p}" for p in _GEOMETRY]
    body = _grid_stride("n") + [
        "  const long long P = HO * WO, p = i % P;",
        "  long long rest = i / P;",
        "  const long long j = rest % KC; rest /= KC;",
        "  const long long ti = rest % KR; rest /= KR;",
        "  const long long c = rest % C, b = rest / C;",
        "  const long long row = (p / WO) * sr + (flip ? KR - 1 - ti : ti) * dr - pr;",
        "  const long long col = (p % WO) * sc + (flip ? KC - 1 - j : j) * dc - pc;",
        "  const bool inside = row >= 0 && row < H && col >= 0 && col < W;",
        f"  cols[i] = inside ? ({t})x[((b * C + c) * H + row) * W + col] : ({t})0;",
        "}",
    ]
    what = f"im2col for Conv2d / Conv2dGradWeights: {x_dtype} input -> {dtype} columns"
    return _named(finish(what, [], BLOCK, params, body), "other", what)


def col2im_kernel(dtype: str, out_dtype: str) -> Kernel:
    """dx[b, c, y, x] = the sum of the column entries im2col would have read from (y, x).

    A gather (each input element sums the windows that cover it): deterministic, no atomics.
    """
    t, to = ctype(dtype), ctype(out_dtype)
    params = [f"const {t}* __restrict__ cols", f"{to}* __restrict__ dx", "const long long n"]
    params += [f"const long long {p}" for p in _GEOMETRY]
    body = _grid_stride("n") + [
        "  const long long x = i % W;",
        "  long long rest = i / W;",
        "  const long long y = rest % H; rest /= H;",
        "  const long long c = rest % C, b = rest / C;",
        "  const long long P = HO * WO;",
        f"  {t} acc = ({t})0;",
        "  for (long long ti = 0; ti < KR; ti++) {",
        "    const long long r = y + pr - (flip ? KR - 1 - ti : ti) * dr;",
        "    if (r < 0 || r % sr != 0 || r / sr >= HO) continue;  // no window has this tap here",
        "    for (long long j = 0; j < KC; j++) {",
        "      const long long s = x + pc - (flip ? KC - 1 - j : j) * dc;",
        "      if (s < 0 || s % sc != 0 || s / sc >= WO) continue;",
        "      acc += cols[(((b * C + c) * KR + ti) * KC + j) * P + (r / sr) * WO + s / sc];",
        "    }",
        "  }",
        f"  dx[i] = ({to})acc;",
        "}",
    ]
    what = f"col2im (gather) for Conv2dGradInputs: {dtype} columns -> {out_dtype} input gradient"
    return _named(finish(what, [], BLOCK, params, body), "other", what)


_GEMM_STRIDES = (
    "sa_z1",
    "sa_z2",
    "sa_r",
    "sa_m",
    "sa_k",
    "sb_z1",
    "sb_z2",
    "sb_r",
    "sb_k",
    "sb_n",
    "so_z1",
    "so_z2",
    "so_m",
    "so_n",
)


def batched_gemm_kernel(a_dtype: str, b_dtype: str, dtype: str) -> Kernel:
    """out[z1, z2] = sum over r < R of A[z1, z2, r] @ B[z1, z2, r], every operand strided.

    z = z1 * Z2 + z2 walks (batch, group); r sums a product over the batch (weight gradient).
    Loops over z and row tiles keep any size within the grid limits.
    """
    ta, tb, t = ctype(a_dtype), ctype(b_dtype), ctype(dtype)
    params = [
        f"const {ta}* __restrict__ a",
        f"const {tb}* __restrict__ b",
        f"{t}* __restrict__ out",
    ]
    params += [f"const long long {p}" for p in ("M", "N", "K", "R", "Z", "Z2") + _GEMM_STRIDES]
    zero = f"({t})0"
    body = [
        f"__shared__ {t} tile_a[{TILE}][{TILE} + 1];  // +1: no bank conflicts on column reads",
        f"__shared__ {t} tile_b[{TILE}][{TILE} + 1];",
        f"const long long col = (long long)blockIdx.x * {TILE} + threadIdx.x;",
        "for (long long z = blockIdx.z; z < Z; z += gridDim.z) {",
        "  const long long z1 = z / Z2, z2 = z % Z2;",
        (
            f"  for (long long m0 = (long long)blockIdx.y * {TILE}; m0 < M;"
            f" m0 += (long long)gridDim.y * {TILE}) {{"
        ),
        "    const long long row = m0 + threadIdx.y;",
        f"    {t} acc = {zero};",
        "    for (long long r = 0; r < R; r++) {",
        f"      const {ta}* ar = a + z1 * sa_z1 + z2 * sa_z2 + r * sa_r;",
        f"      const {tb}* br = b + z1 * sb_z1 + z2 * sb_z2 + r * sb_r;",
        f"      for (long long k0 = 0; k0 < K; k0 += {TILE}) {{",
        "        const long long ka = k0 + threadIdx.x, kb = k0 + threadIdx.y;",
        "        tile_a[threadIdx.y][threadIdx.x] =",
        f"            row < M && ka < K ? ({t})ar[row * sa_m + ka * sa_k] : {zero};",
        "        tile_b[threadIdx.y][threadIdx.x] =",
        f"            kb < K && col < N ? ({t})br[kb * sb_k + col * sb_n] : {zero};",
        "        __syncthreads();",
        f"        for (int k = 0; k < {TILE}; k++)",
        "          acc += tile_a[threadIdx.y][k] * tile_b[k][threadIdx.x];",
        "        __syncthreads();",
        "      }",
        "    }",
        "    if (row < M && col < N) out[z1 * so_z1 + z2 * so_z2 + row * so_m + col * so_n] = acc;",
        "  }",
        "}",
    ]
    what = f"batched GEMM for conv2d: {a_dtype} x {b_dtype} -> {dtype}"
    return _named(finish(what, [], TILE * TILE, params, body), "gemm", what)


# --- geometry ---------------------------------------------------------------------------------------


def _pads(border_mode, kernel: Sequence[int], dilation: Sequence[int]) -> tuple:
    """Zero padding on each side (rows, cols): Theano's 'full' and 'half', or explicit."""
    if border_mode == "full":
        return tuple((k - 1) * d for k, d in zip(kernel, dilation))
    if border_mode == "half":
        return tuple(((k - 1) * d + 1) // 2 for k, d in zip(kernel, dilation))
    return tuple(int(p) for p in border_mode)


class _Geometry:
    """Sizes of one convolution: batch, channels, image, kernel, output, padding, groups."""

    def __init__(self, op, what: str, x_shape: tuple, f: int, kernel: tuple) -> None:
        self.B, self.C, self.H, self.W = (int(n) for n in x_shape)
        self.F, (self.KR, self.KC), self.G = int(f), kernel, op.num_groups
        if self.C % self.G or self.F % self.G:
            raise ValueError(
                f"{what}: {self.C} input channels and {self.F} filters must both split into "
                f"num_groups={self.G} groups"
            )
        self.pads = _pads(op.border_mode, kernel, op.filter_dilation)
        sizes = zip((self.H, self.W), kernel, op.subsample, self.pads, op.filter_dilation)
        self.HO, self.WO = (conv_output_length(n, k, s, p, d) for n, k, s, p, d in sizes)
        if min(kernel) < 1 or self.HO <= 0 or self.WO <= 0:
            raise ValueError(
                f"{what}: the filters of size {kernel} (dilation {op.filter_dilation}) do not fit "
                f"in the input of shape {tuple(x_shape)} padded by {self.pads}"
            )
        self.P, self.KK = self.HO * self.WO, self.KR * self.KC
        self.Cg, self.Fg = self.C // self.G, self.F // self.G
        flip = 1 if op.filter_flip else 0
        values = (
            self.C,
            self.H,
            self.W,
            self.KR,
            self.KC,
            self.HO,
            self.WO,
            *self.pads,
            *op.subsample,
            *op.filter_dilation,
            flip,
        )
        self.args = [np.int64(v) for v in values]

    @property
    def out_shape(self) -> tuple:
        return (self.B, self.F, self.HO, self.WO)

    @property
    def cols_shape(self) -> tuple:
        return (self.B, self.C * self.KK, self.P)


def _pair_of(value, what: str, name: str) -> tuple:
    sizes = np.asarray(value).reshape(-1)
    if sizes.size != 2:
        raise ValueError(f"{what}: the {name} shape input must hold 2 sizes, got {sizes.tolist()}")
    return int(sizes[0]), int(sizes[1])


def _expect(given: tuple, expected: tuple, what: str, name: str) -> None:
    if tuple(given) != tuple(expected):
        raise ValueError(f"{what}: {name} has shape {tuple(given)}, expected {tuple(expected)}")


# --- the lowering -------------------------------------------------------------------------------------


class ConvLowering:
    """im2col + GEMM (Conv2d), GEMM + col2im (Conv2dGradInputs), im2col + GEMM over the batch
    (Conv2dGradWeights); the shape input of a gradient arrives on the host."""

    def __init__(self, var: Var) -> None:
        self.var, op = var, var.op
        first, second = (x.dtype for x in var.inputs[:2])
        dtype = var.dtype
        if isinstance(op, Conv2d):  # x, w
            self.kernels = [im2col_kernel(first, dtype), batched_gemm_kernel(second, dtype, dtype)]
            self.host_inputs: tuple = ()
        elif isinstance(op, Conv2dGradWeights):  # x, gy, filter shape
            self.kernels = [im2col_kernel(first, dtype), batched_gemm_kernel(second, dtype, dtype)]
            self.host_inputs = (2,)
        else:  # w, gy, image shape
            self.kernels = [batched_gemm_kernel(first, second, dtype), col2im_kernel(dtype, dtype)]
            self.host_inputs = (2,)

    def launch(self, device, module, inputs: Sequence):
        """Check the shapes, allocate the columns and the result, run the kernels."""
        op = self.var.op
        if isinstance(op, Conv2d):
            return self._forward(device, module, *inputs)
        if isinstance(op, Conv2dGradWeights):
            return self._grad_weights(device, module, *inputs)
        return self._grad_inputs(device, module, *inputs)

    def _forward(self, device, module, x, w):
        what = "conv2d"
        if w.shape[1] * self.var.op.num_groups != x.shape[1]:
            raise ValueError(
                f"{what}: the input has {x.shape[1]} channels but the filters expect "
                f"{w.shape[1]} * num_groups={self.var.op.num_groups}; input shape {x.shape}, "
                f"filter shape {w.shape}"
            )
        geo = _Geometry(self.var.op, what, x.shape, w.shape[0], tuple(w.shape[2:]))
        out = device.empty(geo.out_shape, self.var.dtype)
        if 0 in geo.out_shape:
            return out
        cols = self._im2col(device, module, x, geo)
        k = geo.Cg * geo.KK
        strides = (
            0,
            geo.Fg * k,
            0,
            k,
            1,  # A = w: (group, filter, tap)
            geo.C * geo.KK * geo.P,
            geo.Cg * geo.KK * geo.P,
            0,
            geo.P,
            1,  # B = cols
            geo.F * geo.P,
            geo.Fg * geo.P,
            geo.P,
            1,
        )  # out: NCHW
        self._gemm(device, module, w, cols, out, (geo.Fg, geo.P, k, 1, geo.B, geo.G), strides)
        return out

    def _grad_weights(self, device, module, x, gy, shape):
        what = "Conv2dGradWeights"
        kernel = _pair_of(shape, what, "filter")
        geo = _Geometry(self.var.op, what, x.shape, gy.shape[1], kernel)
        _expect(gy.shape, geo.out_shape, what, "the output gradient")
        dw = device.empty((geo.F, geo.Cg) + kernel, self.var.dtype)
        if dw.size == 0:
            return dw
        k = geo.Cg * geo.KK
        if geo.B == 0:  # nothing to sum over: the GEMM below still writes zeros (R = 0)
            cols = device.empty((0,), self.var.dtype)
        else:
            cols = self._im2col(device, module, x, geo)
        strides = (
            0,
            geo.Fg * geo.P,
            geo.F * geo.P,
            geo.P,
            1,  # A = gy: (group, batch, f, p)
            0,
            geo.Cg * geo.KK * geo.P,
            geo.C * geo.KK * geo.P,
            1,
            geo.P,  # B = cols^T
            0,
            geo.Fg * k,
            k,
            1,
        )  # out: (F, Cg * KR * KC)
        self._gemm(device, module, gy, cols, dw, (geo.Fg, k, geo.P, geo.B, 1, geo.G), strides)
        return dw

    def _grad_inputs(self, device, module, w, gy, shape):
        what = "Conv2dGradInputs"
        rows, width = _pair_of(shape, what, "input")
        x_shape = (gy.shape[0], w.shape[1] * self.var.op.num_groups, rows, width)
        geo = _Geometry(self.var.op, what, x_shape, w.shape[0], tuple(w.shape[2:]))
        _expect(gy.shape, geo.out_shape, what, "the output gradient")
        dx = device.empty(x_shape, self.var.dtype)
        if dx.size == 0:
            return dx
        k = geo.Cg * geo.KK
        dcols = device.empty(geo.cols_shape, self.var.dtype)
        strides = (
            0,
            geo.Fg * k,
            0,
            1,
            k,  # A = w^T: (group, tap, filter)
            geo.F * geo.P,
            geo.Fg * geo.P,
            0,
            geo.P,
            1,  # B = gy: (batch, group, f, p)
            geo.C * geo.KK * geo.P,
            k * geo.P,
            geo.P,
            1,
        )  # out: the columns
        self._gemm(
            device,
            module,
            w,
            gy,
            dcols,
            (k, geo.P, geo.Fg, 1, geo.B, geo.G),
            strides,
            kernel=self.kernels[0],
        )
        n = dx.size
        args = [dcols, dx, np.int64(n)] + geo.args
        device.launch(module, self.kernels[1].name, _blocks(n, device), BLOCK, args)
        return dx

    def _im2col(self, device, module, x, geo: _Geometry):
        cols = device.empty(geo.cols_shape, self.var.dtype)
        n = cols.size
        args = [x, cols, np.int64(n)] + geo.args
        device.launch(module, self.kernels[0].name, _blocks(n, device), BLOCK, args)
        return cols

    def _gemm(self, device, module, a, b, out, sizes: tuple, strides: tuple, kernel=None) -> None:
        """Launch the batched GEMM over sizes (M, N, K, R, Z1, Z2) with the operands' strides."""
        m, n, k, r, z1, z2 = sizes
        z = z1 * z2
        if not (m and n and z):
            return
        kernel = kernel or self.kernels[1]
        rows = min((m + TILE - 1) // TILE, device.max_grid)  # the kernel loops over the rest
        grid = ((n + TILE - 1) // TILE, rows, min(z, device.max_grid))
        args = [a, b, out] + [np.int64(v) for v in (m, n, k, r, z, z2) + tuple(strides)]
        device.launch(module, kernel.name, grid, (TILE, TILE), args)


def _blocks(n: int, device) -> int:
    return max(1, min((n + BLOCK - 1) // BLOCK, device.max_grid))
