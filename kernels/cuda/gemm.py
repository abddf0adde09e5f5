"""Tiled GEMM: out = alpha * (a @ b) + beta * z for Dot, 2-d MatMul and Gemm, operands strided."""

from __future__ import annotations

from typing import Sequence

import numpy as np

from ...graph.ops import blas
from ...graph.ops import linalg as L
from ...graph.var import Var
from .elementwise import contiguous_strides
from .kernel import Kernel, kernel_name
from .scalar import ctype
from .templates import finish

TILE = 16


def gemm_supported(var: Var) -> bool:
    """Dot of 1-d/2-d operands, 2-d MatMul, and Gemm, in float or integer dtypes."""
    op = var.op
    dtypes = [x.dtype for x in var.inputs] + [var.dtype]
    if any(d in ("float16", "bool") or d.startswith("complex") for d in dtypes):
        return False
    if isinstance(op, L.MatMul):
        return var.inputs[0].ndim == 2 and var.inputs[1].ndim == 2
    return isinstance(op, (L.Dot, blas.Gemm))


def gemm_kernel(var: Var) -> GemmLowering:
    """One TILE x TILE block of threads per output tile; K is walked in shared-memory tiles."""
    op = var.op
    epilogue = isinstance(op, blas.Gemm)
    a_var, b_var = (var.inputs[2], var.inputs[3]) if epilogue else var.inputs
    c = ctype(var.dtype)
    params = [
        f"const {ctype(a_var.dtype)}* __restrict__ a",
        f"const {ctype(b_var.dtype)}* __restrict__ b",
        f"{c}* __restrict__ out",
    ]
    params += [f"const long long {n}" for n in ("M", "N", "K", "sa0", "sa1", "sb0", "sb1")]
    if epilogue:
        z, alpha, beta = var.inputs[0], var.inputs[1], var.inputs[4]
        params += [
            f"const {ctype(z.dtype)}* __restrict__ z",
            "const long long sz0",
            "const long long sz1",
            f"const {ctype(alpha.dtype)}* __restrict__ alpha",
            f"const {ctype(beta.dtype)}* __restrict__ beta",
        ]
    zero = f"({c})0"
    load_a = f"row < M && ka < K ? ({c})a[row * sa0 + ka * sa1] : {zero}"
    load_b = f"kb < K && col < N ? ({c})b[kb * sb0 + col * sb1] : {zero}"
    body = [
        f"__shared__ {c} tile_a[{TILE}][{TILE} + 1];  // +1: no bank conflicts on column reads",
        f"__shared__ {c} tile_b[{TILE}][{TILE} + 1];",
        f"const long long row = (long long)blockIdx.y * {TILE} + threadIdx.y;",
        f"const long long col = (long long)blockIdx.x * {TILE} + threadIdx.x;",
        f"{c} acc = {zero};",
        f"for (long long k0 = 0; k0 < K; k0 += {TILE}) {{",
        "  const long long ka = k0 + threadIdx.x, kb = k0 + threadIdx.y;",
        f"  tile_a[threadIdx.y][threadIdx.x] = {load_a};",
        f"  tile_b[threadIdx.y][threadIdx.x] = {load_b};",
        "  __syncthreads();",
        f"  for (int k = 0; k < {TILE}; k++)",
        "    acc += tile_a[threadIdx.y][k] * tile_b[k][threadIdx.x];",
        "  __syncthreads();",
        "}",
    ]
    if epilogue:
        result = f"({c})alpha[0] * acc + ({c})beta[0] * ({c})z[row * sz0 + col * sz1]"
    else:
        result = "acc"
    body.append(f"if (row < M && col < N) out[row * N + col] = {result};")
    what = f"{op} of {', '.join(str(x.type) for x in var.inputs)}"
    source = finish(what, [], TILE * TILE, params, body)
    name = kernel_name(source)
    return GemmLowering(Kernel(name, source.replace("KERNEL", name), "gemm", what), var)


def _matrix(shape: tuple, as_row: bool) -> tuple[int, int, int, int]:
    """(rows, cols, row stride, col stride) of a contiguous 1-d or 2-d operand."""
    if len(shape) == 2:
        return shape[0], shape[1], shape[1], 1
    return (1, shape[0], 0, 1) if as_row else (shape[0], 1, 1, 0)


class GemmLowering:
    """Launches the GEMM: vectors become 1-row or 1-column matrices; z broadcasts by strides."""

    def __init__(self, kernel: Kernel, var: Var) -> None:
        self.kernel, self.var = kernel, var

    def launch(self, device, module, inputs: Sequence):
        """Allocate the product and run the kernel on a grid of output tiles."""
        epilogue = isinstance(self.var.op, blas.Gemm)
        a, b = (inputs[2], inputs[3]) if epilogue else inputs
        m, k, sa0, sa1 = _matrix(a.shape, as_row=True)
        k2, n, sb0, sb1 = _matrix(b.shape, as_row=False)
        if k != k2:
            raise ValueError(f"inner dimensions differ: {a.shape} . {b.shape} ({k} != {k2})")
        shape = tuple(a.shape[:-1]) + tuple(b.shape[1:])
        out = device.empty(shape, self.var.dtype)
        args = [a, b, out] + [np.int64(v) for v in (m, n, k, sa0, sa1, sb0, sb1)]
        if epilogue:
            z, alpha, beta = inputs[0], inputs[1], inputs[4]
            fits = len(z.shape) == len(shape) and all(zd in (1, d) for zd, d in zip(z.shape, shape))
            if not fits:
                raise ValueError(f"z of shape {z.shape} does not broadcast to the product {shape}")
            own = contiguous_strides(z.shape)
            strides = [0 if size == 1 else s for size, s in zip(z.shape, own)]
            # The kernel indexes z as (row, col); a 1-d product is one column (N == 1).
            sz0, sz1 = strides if len(strides) == 2 else (strides[0], 0)
            args += [z, np.int64(sz0), np.int64(sz1), alpha, beta]
        if m and n:
            grid = ((n + TILE - 1) // TILE, (m + TILE - 1) // TILE)
            device.launch(module, self.kernel.name, grid, (TILE, TILE), args)
        return out
