"""Numba lowerings of graph/ops/pool.py: max / sum / average pooling and their gradients.

The padded frame (the op's `_frame`: a numpy fill and copy) is built in Python; the window loops
run in numba: one pass over the output for pooling, one scatter over the windows for gradients.
MaxPool2dGradGrad stays a numpy step (only second derivatives through max pooling use it).
"""

from __future__ import annotations

import numba
import numpy as np

from ...graph.ops import pool as P

njit = numba.njit(cache=True, error_model="numpy", nogil=True)


@njit
def pool_max(frame, out, wr, wc, sr, sc):
    """The maximum of each window of each frame (NaN wins, as in numpy)."""
    for n in range(out.shape[0]):
        for i in range(out.shape[1]):
            for j in range(out.shape[2]):
                best = frame[n, i * sr, j * sc]
                for a in range(wr):
                    for b in range(wc):
                        v = frame[n, i * sr + a, j * sc + b]
                        if v > best or v != v:
                            best = v
                out[n, i, j] = best


@njit
def pool_sum(frame, out, wr, wc, sr, sc):
    """The sum of each window of each frame."""
    for n in range(out.shape[0]):
        for i in range(out.shape[1]):
            for j in range(out.shape[2]):
                total = 0.0
                for a in range(wr):
                    for b in range(wc):
                        total += frame[n, i * sr + a, j * sc + b]
                out[n, i, j] = total


@njit
def max_pool_grad(frame, maxout, g, gx, wr, wc, sr, sc):
    """gx[window entries equal to the window's max] += the window's gradient."""
    for n in range(g.shape[0]):
        for i in range(g.shape[1]):
            for j in range(g.shape[2]):
                m = maxout[n, i, j]
                gz = g[n, i, j]
                for a in range(wr):
                    for b in range(wc):
                        if frame[n, i * sr + a, j * sc + b] == m:
                            gx[n, i * sr + a, j * sc + b] += gz


@njit
def spread_grad(gz, gx, wr, wc, sr, sc):
    """gx[every entry of window (i, j)] += gz[i, j]."""
    for n in range(gz.shape[0]):
        for i in range(gz.shape[1]):
            for j in range(gz.shape[2]):
                v = gz[n, i, j]
                for a in range(wr):
                    for b in range(wc):
                        gx[n, i * sr + a, j * sc + b] += v


def _pool(op, var):
    (wr, wc), (sr, sc) = op.ws, op.stride

    def run(x):
        out_shape = x.shape[:-2] + op._out(*x.shape[-2:])
        if op.mode == "max":
            frame, out = op._frame(x, P._lowest(x.dtype))
            result = np.empty((frame.shape[0],) + out, x.dtype)
            pool_max(frame, result, wr, wc, sr, sc)
            return result.reshape(out_shape)
        frame, out = op._frame(x, 0)
        total = np.empty((frame.shape[0],) + out, np.float64 if x.dtype.kind != "f" else x.dtype)
        pool_sum(frame, total, wr, wc, sr, sc)
        if op.mode != "sum":
            total = total / op._counts(*x.shape[-2:], out)
        return total.astype(x.dtype, copy=False).reshape(out_shape)

    return run


def _max_pool_grad(op, var):
    (wr, wc), (sr, sc) = op.ws, op.stride

    def run(x, maxout, g):
        frame, out = op._frame(x, P._lowest(x.dtype))
        if g.shape != x.shape[:-2] + out or maxout.shape != g.shape:
            raise ValueError(
                f"MaxPool2dGrad: gradient {g.shape} and max {maxout.shape} do not match the "
                f"pooled shape {x.shape[:-2] + out}"
            )
        gx = np.zeros(frame.shape, dtype=np.result_type(x.dtype, g.dtype))
        m = np.ascontiguousarray(maxout).reshape((-1,) + out)
        max_pool_grad(frame, m, np.ascontiguousarray(g).reshape((-1,) + out), gx, wr, wc, sr, sc)
        return op._crop(gx, x.shape).astype(x.dtype, copy=False)

    return run


def _average_pool_grad(op, var):
    (wr, wc), (sr, sc) = op.ws, op.stride

    def run(x, g):
        rows, cols = x.shape[-2:]
        out = op._out(rows, cols)
        if g.shape != x.shape[:-2] + out:
            raise ValueError(
                f"AveragePool2dGrad: gradient {g.shape} does not match the pooled shape "
                f"{x.shape[:-2] + out}"
            )
        gz = g.reshape((-1,) + out).astype(np.result_type(x.dtype, g.dtype), copy=False)
        if op.mode != "sum":
            gz = gz / op._counts(rows, cols, out)
        frame, _ = op._frame(np.zeros(x.shape, dtype=gz.dtype), 0)
        spread_grad(np.ascontiguousarray(gz), frame, wr, wc, sr, sc)
        return op._crop(frame, x.shape).astype(x.dtype, copy=False)

    return run


LOWERINGS = {
    P.Pool2d: _pool,
    P.MaxPool2dGrad: _max_pool_grad,
    P.AveragePool2dGrad: _average_pool_grad,
}
NUMPY_STEPS = {
    P.MaxPool2dGradGrad: "second derivatives through max pooling only; no numba kernel yet",
}
