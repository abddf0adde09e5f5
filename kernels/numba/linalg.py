"""Numba lowerings of graph/ops/linalg.py and graph/ops/blas.py: products through BLAS.

Float matrix products call GEMM of the library chosen by config.blas__library (cblas.py: MKL or
scipy's OpenBLAS); complex products call `np.dot` inside numba (scipy's BLAS); integer and bool
products, which BLAS lacks, run a plain triple loop. Batched products loop over the batch in numba.
Shapes are checked in Python first, with numpy's messages.
"""

from __future__ import annotations

import numba
import numpy as np

from ...graph.ops import blas as B
from ...graph.ops import linalg as L
from ...graph.type import upcast
from . import cblas

njit = numba.njit(cache=True, error_model="numpy", nogil=True)


@njit
def blas_dot(a, b):
    """np.dot of float or complex operands (BLAS GEMM / GEMV)."""
    return np.dot(a, b)


@njit
def loop_matmul(a, b, out):
    """out = a @ b for 2-d arrays of any numeric dtype (no BLAS)."""
    for i in range(a.shape[0]):
        for j in range(b.shape[1]):
            out[i, j] = 0
        for k in range(a.shape[1]):
            aik = a[i, k]
            for j in range(b.shape[1]):
                out[i, j] += aik * b[k, j]


@njit
def blas_batched(a, b, out):
    """out[i] = a[i] @ b[i] through BLAS (complex: numba's np.dot)."""
    for i in range(a.shape[0]):
        out[i] = np.dot(a[i], b[i])


@njit
def gemm_batched(a, b, out):
    """out[i] = a[i] @ b[i] for float32 or float64 stacks, by the chosen BLAS's GEMM."""
    for i in range(a.shape[0]):
        cblas.matmul_into(a[i], b[i], out[i])


@njit
def loop_batched(a, b, out):
    """out[i] = a[i] @ b[i] without BLAS (integer and bool dtypes)."""
    for i in range(a.shape[0]):
        loop_matmul(a[i], b[i], out[i])


@njit
def gemm_update(z, alpha, product, beta, out):
    """out = alpha * product + beta * z, z broadcast to the product's shape (2-d)."""
    for i in range(out.shape[0]):
        for j in range(out.shape[1]):
            out[i, j] = alpha * product[i, j] + beta * z[i, j]


@njit
def ger_update(a, alpha, x, y, out):
    """out = a + alpha * outer(x, y)."""
    for i in range(out.shape[0]):
        ax = alpha * x[i]
        for j in range(out.shape[1]):
            out[i, j] = a[i, j] + ax * y[j]


def _blas(dtype: np.dtype) -> bool:
    return dtype.kind in "fc" and dtype.itemsize >= 4 and dtype != np.float16


def real_gemm(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """a @ b (2-d, float32 or float64) as a C-ordered array, by the chosen BLAS's GEMM called
    from Python (cblas.py): the same library as the compiled kernels' products, without compiling
    a numba function (about 1 s of a cold first call) and without copying transposed operands."""
    out = np.empty((a.shape[0], b.shape[1]), a.dtype)
    cblas.py_product(1.0, a, b, 0.0, out)
    return out


def matrix_product(a: np.ndarray, b: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """a @ b for 1-d or 2-d operands, in `dtype` (inputs converted first)."""
    a = np.asarray(a, dtype)
    b = np.asarray(b, dtype)
    if dtype in (np.float32, np.float64):
        a2 = a.reshape(1, -1) if a.ndim == 1 else a
        b2 = b.reshape(-1, 1) if b.ndim == 1 else b
        return real_gemm(a2, b2).reshape(a.shape[:-1] + b.shape[1:])
    if _blas(dtype):
        return blas_dot(np.ascontiguousarray(a), np.ascontiguousarray(b))
    a2 = a.reshape(1, -1) if a.ndim == 1 else a
    b2 = b.reshape(-1, 1) if b.ndim == 1 else b
    out = np.empty((a2.shape[0], b2.shape[1]), dtype)
    loop_matmul(a2, b2, out)
    return out.reshape(a.shape[:-1] + b.shape[1:])


def blas_tensordot(a: np.ndarray, b: np.ndarray, axes: tuple) -> np.ndarray:
    """np.tensordot(a, b, axes) with its one matrix product through this backend's BLAS (scipy's,
    as every product here): numpy's own BLAS is a second library with a thread pool of its own,
    and the two pools alternating on 2 cores stalled a CNN step's GEMMs for a scheduler tick."""
    dtype = np.result_type(a, b)
    if not _blas(dtype):
        return np.tensordot(a, b, axes)
    axes_a, axes_b = (list(axes[0]), list(axes[1]))
    axes_a = [x % a.ndim for x in axes_a]
    axes_b = [x % b.ndim for x in axes_b]
    free_a = [x for x in range(a.ndim) if x not in axes_a]
    free_b = [x for x in range(b.ndim) if x not in axes_b]
    k = 1
    for x in axes_a:
        k *= a.shape[x]
    shape = tuple(a.shape[x] for x in free_a) + tuple(b.shape[x] for x in free_b)
    m, n = int(np.prod(shape[: len(free_a)], dtype=np.int64)), 1
    for x in free_b:
        n *= b.shape[x]
    # reshape copies only where the axes do not merge: x.T @ dy over (steps, batch) leading axes
    # reads x in place as a Fortran-ordered operand (BLAS transposes it) instead of copying it
    a2 = np.transpose(np.asarray(a, dtype), free_a + axes_a).reshape(m, k)
    b2 = np.transpose(np.asarray(b, dtype), axes_b + free_b).reshape(k, n)
    if dtype in (np.float32, np.float64):
        return real_gemm(a2, b2).reshape(shape)
    return blas_dot(np.ascontiguousarray(a2), np.ascontiguousarray(b2)).reshape(shape)


def batched_product(a: np.ndarray, b: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """a[i] @ b[i] for 3-d stacks of equal batch size."""
    a = np.ascontiguousarray(a, dtype)
    b = np.ascontiguousarray(b, dtype)
    out = np.empty((a.shape[0], a.shape[1], b.shape[2]), dtype)
    if dtype in (np.float32, np.float64):
        gemm_batched(a, b, out)
    else:
        (blas_batched if _blas(dtype) else loop_batched)(a, b, out)
    return out


def _dot(op, var):
    dtype = np.dtype(var.dtype)

    def run(a, b):
        if a.shape[-1] != b.shape[0]:
            raise ValueError(
                f"dot: inner dimensions differ: {a.shape} . {b.shape} "
                f"({a.shape[-1]} != {b.shape[0]})"
            )
        if a.ndim == 1 and b.ndim == 1:
            return np.asarray(matrix_product(a.reshape(1, -1), b.reshape(-1, 1), dtype)[0, 0])
        return matrix_product(a, b, dtype)

    return run


def _matmul(op, var):
    dtype = np.dtype(var.dtype)

    def run(a, b):
        if a.shape[-1] != b.shape[-2]:
            raise ValueError(
                f"matmul: inner dimensions differ: {a.shape} @ {b.shape} "
                f"({a.shape[-1]} != {b.shape[-2]})"
            )
        batch = np.broadcast_shapes(a.shape[:-2], b.shape[:-2])
        x = np.broadcast_to(a, batch + a.shape[-2:]).reshape((-1,) + a.shape[-2:])
        y = np.broadcast_to(b, batch + b.shape[-2:]).reshape((-1,) + b.shape[-2:])
        return batched_product(x, y, dtype).reshape(batch + (a.shape[-2], b.shape[-1]))

    return run


def _fewer_reversed(a: np.ndarray, b: np.ndarray, axes_a: tuple, axes_b: tuple) -> tuple:
    """a and b, each reversed along a pair of summed axes where that leaves fewer elements in
    reversed order: the sum is the same, and an operand read backwards must be copied before
    BLAS reads it (the gradient of a weight in a backward loop pairs the forward inputs with
    per-step values stacked in reverse: one copy of the smaller side, or none)."""
    for ia, ib in zip(axes_a, axes_b):
        if a.shape[ia] < 2 or (a.strides[ia] >= 0 and b.strides[ib] >= 0):
            continue
        before = (a.strides[ia] < 0) * a.size + (b.strides[ib] < 0) * b.size
        after = (a.strides[ia] > 0) * a.size + (b.strides[ib] > 0) * b.size
        if after < before:
            a = a[(slice(None),) * ia + (slice(None, None, -1),)]
            b = b[(slice(None),) * ib + (slice(None, None, -1),)]
    return a, b


def _tensordot(op, var):
    dtype = np.dtype(var.dtype)
    what = "batched_tensordot" if op.batch else "tensordot"

    def run(a, b):
        if a.shape[: op.batch] != b.shape[: op.batch]:
            raise ValueError(f"{what}: batch sizes differ: {a.shape} and {b.shape}")
        summed_a = tuple(a.shape[i] for i in op.axes_a)
        summed_b = tuple(b.shape[i] for i in op.axes_b)
        if summed_a != summed_b:
            raise ValueError(
                f"{what}: summed dimensions differ: {summed_a} of {a.shape} "
                f"vs {summed_b} of {b.shape}"
            )
        a, b = _fewer_reversed(a, b, op.axes_a, op.axes_b)
        lead = tuple(range(op.batch))
        free_a, free_b = op.free_axes(a.ndim, op.axes_a), op.free_axes(b.ndim, op.axes_b)
        batch_shape = a.shape[: op.batch]
        shape_a = tuple(a.shape[i] for i in free_a)
        shape_b = tuple(b.shape[i] for i in free_b)
        k = int(np.prod(summed_a))
        m, n = int(np.prod(shape_a)), int(np.prod(shape_b))
        x = np.transpose(a, lead + free_a + op.axes_a).reshape(-1, m, k)
        y = np.transpose(b, lead + op.axes_b + free_b).reshape(-1, k, n)
        if not op.batch and dtype in (np.float32, np.float64):
            # one product: BLAS transposes C- or F-ordered operands itself (a sum over leading
            # axes, x^T g, reads x as it lies), where batched_product would copy them
            x, y = x[0].astype(dtype, copy=False), y[0].astype(dtype, copy=False)
            return real_gemm(x, y).reshape(shape_a + shape_b)
        return batched_product(x, y, dtype).reshape(batch_shape + shape_a + shape_b)

    return run


class GemmRunner:
    """beta * z + alpha * dot(x, y); `into` writes the result over a buffer (z itself, for an
    in-place update of a shared variable: each element of z is read before it is written)."""

    single = True

    def __init__(self, var) -> None:
        self.dtype = np.dtype(var.dtype)

    def _product(self, z, x, y) -> np.ndarray:
        if x.shape[-1] != y.shape[0]:
            raise ValueError(f"gemm: inner dimensions differ: {x.shape} . {y.shape}")
        product = matrix_product(x, y, self.dtype)
        if z.ndim != product.ndim or any(d not in (1, p) for d, p in zip(z.shape, product.shape)):
            raise ValueError(
                f"gemm: z of shape {z.shape} does not broadcast to the product's {product.shape}"
            )
        return product

    def __call__(self, z, alpha, x, y, beta):
        return self._write(np.empty(x.shape[:1] + y.shape[1:], self.dtype), z, alpha, x, y, beta)

    def _write(self, out, z, alpha, x, y, beta):
        if self._blas_in_place(out, z, alpha, x, y, beta):
            return out
        product = self._product(z, x, y)  # computed before out is touched: out may be z
        product2 = product.reshape(product.shape[0], -1)
        z2 = np.broadcast_to(np.asarray(z, self.dtype), product.shape).reshape(product2.shape)
        dtype = self.dtype.type
        gemm_update(z2, dtype(alpha), product2, dtype(beta), out.reshape(product2.shape))
        return out

    def _blas_in_place(self, out, z, alpha, x, y, beta) -> bool:
        """out = alpha * x @ y + beta * z by one sgemm/dgemm call writing into `out` (z copied
        into it first, unless it is z: the in-place update of a weight matrix), when the operands
        allow; False (nothing written) otherwise."""
        if self.dtype not in (np.float32, np.float64) or x.ndim != 2 or y.ndim != 2:
            return False
        m, k, n = x.shape[0], x.shape[1], y.shape[1]
        if y.shape[0] != k or out.shape != (m, n) or not out.flags.c_contiguous or 0 in (m, k, n):
            return False
        if np.may_share_memory(out, x) or np.may_share_memory(out, y):
            return False  # out is a dead input's buffer: the product must be read first
        if z.ndim != 2 or any(d not in (1, p) for d, p in zip(z.shape, (m, n))):
            return False  # the general path raises the error
        if out is not z:
            np.copyto(out, z, casting="unsafe")
        cblas.py_product(float(alpha), np.asarray(x, self.dtype), np.asarray(y, self.dtype),
                         float(beta), out)
        return True

    def fits(self, buffer, args) -> bool:
        """Would `into(buffer, *args)` write over the buffer?"""
        z, _, x, y, _ = args
        flags = buffer.flags
        shape = x.shape[:1] + y.shape[1:]
        return (
            buffer.shape == shape
            and z.shape == shape
            and buffer.dtype == self.dtype
            and flags.c_contiguous
            and flags.writeable
            and (z is buffer or not np.may_share_memory(z, buffer))
        )

    def into(self, buffer, z, alpha, x, y, beta):
        """The result written over `buffer` when it fits (see `fits`), else a new array."""
        if not self.fits(buffer, (z, alpha, x, y, beta)):
            return self(z, alpha, x, y, beta)
        return self._write(buffer, z, alpha, x, y, beta)


def _gemm(op, var):
    return GemmRunner(var)


def _ger(op, var):
    dtype = np.dtype(var.dtype)

    def run(a, alpha, x, y):
        shape = (x.shape[0], y.shape[0])
        if any(d not in (1, s) for d, s in zip(a.shape, shape)):
            raise ValueError(
                f"ger: a of shape {a.shape} does not match outer({x.shape}, {y.shape})"
            )
        out = np.empty(shape, dtype)
        a2 = np.broadcast_to(np.asarray(a, dtype), shape)
        ger_update(a2, dtype.type(alpha), np.asarray(x, dtype), np.asarray(y, dtype), out)
        return out

    return run


LOWERINGS = {L.Dot: _dot, L.MatMul: _matmul, L.TensorDot: _tensordot, B.Gemm: _gemm, B.Ger: _ger}
NUMPY_STEPS: dict = {}
_ = upcast
