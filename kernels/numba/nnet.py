"""Numba lowerings of graph/ops/nnet.py's non-elementwise ops: softmax, log-softmax, class picking.

The softmax axis is moved last (a view; one copy when that is not contiguous) and each row is done
in one kernel: max, exp and sum, scale. float32 rows use special.exp_f32 (the fused loops'
vectorizable exp, <= 2 ulps), so every loop of the row vectorizes: libm's exp is a call per
element. Class labels
are bounds-checked inside the kernel, which reports the first bad label so Python can raise
numpy's IndexError instead of reading out of bounds.
"""

from __future__ import annotations

import math

import numba
import numpy as np

from ...graph.ops import nnet as N
from .special import exp_f32

njit = numba.njit(cache=True, error_model="numpy", nogil=True)
inline = numba.njit(cache=True, error_model="numpy", inline="always")


exp32 = exp_f32  # the fused loops' float32 exp (it vectorizes: 2^n from exponent bits)


@njit
def _has_nan(row):
    bad = False
    for j in range(row.shape[0]):
        bad |= row[j] != row[j]
    return bad


@njit
def _row_max(row):
    """The row's maximum (NaN if it holds one), in four independent lanes: no serial chain."""
    if _has_nan(row):
        return np.float32(np.nan)
    a0 = a1 = a2 = a3 = row[0]
    m = row.shape[0]
    j = 0
    while j + 4 <= m:
        v = row[j]
        a0 = v if v > a0 else a0
        v = row[j + 1]
        a1 = v if v > a1 else a1
        v = row[j + 2]
        a2 = v if v > a2 else a2
        v = row[j + 3]
        a3 = v if v > a3 else a3
        j += 4
    for k in range(j, m):
        v = row[k]
        a0 = v if v > a0 else a0
    a0 = a1 if a1 > a0 else a0
    a2 = a3 if a3 > a2 else a2
    return a2 if a2 > a0 else a0


@njit
def _exp_shifted(row, top, exps, out, log):
    """exps = exp(row - top), and out = row - top when `log`."""
    for j in range(row.shape[0]):
        z = row[j] - top
        exps[j] = exp32(z)
        if log:
            out[j] = z


@numba.njit(cache=True, error_model="numpy", nogil=True, fastmath={"reassoc"})
def _total(values):
    """The float64 sum of a float32 row, reassociated into vector lanes (no exp in here: the
    flag would also let the compiler undo exp32's rounding trick)."""
    total = 0.0
    for j in range(values.shape[0]):
        total += np.float64(values[j])
    return total


@njit
def softmax_rows_f32(x, out, log):
    """float32 softmax (log-softmax when `log`) of each row, every loop vectorized."""
    scratch = np.empty(x.shape[1], np.float32)
    for i in range(x.shape[0]):
        row, dest = x[i], out[i]
        _exp_shifted(row, _row_max(row), scratch, dest, log)
        total = _total(scratch)
        if log:
            shift = math.log(total)
            for j in range(dest.shape[0]):
                dest[j] = dest[j] - shift
        else:
            scale = 1.0 / total
            for j in range(dest.shape[0]):
                dest[j] = scratch[j] * scale


@njit
def softmax_rows(x, out, log):
    """Softmax (log-softmax when `log`) of each row, shifted by the row maximum."""
    for i in range(x.shape[0]):
        top = x[i, 0]
        for j in range(1, x.shape[1]):
            v = x[i, j]
            if v > top or v != v:
                top = v
        total = 0.0
        for j in range(x.shape[1]):
            z = x[i, j] - top
            e = math.exp(z)
            total += e
            out[i, j] = z if log else e
        if log:
            shift = math.log(total)
            for j in range(x.shape[1]):
                out[i, j] = out[i, j] - shift
        else:
            scale = 1.0 / total
            for j in range(x.shape[1]):
                out[i, j] = out[i, j] * scale


@njit
def select_rows(x, labels, out):
    """out[i] = x[i, labels[i]]; returns the index of the first bad label, or -1."""
    k = x.shape[1]
    for i in range(x.shape[0]):
        c = labels[i]
        if c < 0 or c >= k:
            return i
        out[i] = x[i, c]
    return -1


@njit
def scatter_rows(g, labels, out):
    """out = zeros; out[i, labels[i]] = g[i]; returns the first bad label's index, or -1."""
    k = out.shape[1]
    for i in range(out.shape[0]):
        for j in range(k):
            out[i, j] = 0
        c = labels[i]
        if c < 0 or c >= k:
            return i
        out[i, c] = g[i]
    return -1


def _softmax(log: bool):
    def lowering(op, var):
        dtype = np.dtype(var.dtype)

        def run(x):
            moved = np.moveaxis(np.asarray(x, dtype), op.axis, -1)
            matrix = np.ascontiguousarray(moved).reshape(-1, moved.shape[-1] if moved.ndim else 1)
            out = np.empty(matrix.shape, dtype)
            if out.size:
                (softmax_rows_f32 if dtype == np.float32 else softmax_rows)(matrix, out, log)
            return np.moveaxis(out.reshape(moved.shape), -1, op.axis)

        return run

    return lowering


def _bad_label(labels: np.ndarray, row: int, k: int) -> IndexError:
    return IndexError(f"class label {labels[row]} is out of range for {k} classes")


def _select(op, var):
    def run(x, y):
        if x.shape[:-1] != y.shape:
            raise ValueError(
                f"SelectClass: the distribution has shape {x.shape} but the labels have shape "
                f"{y.shape}"
            )
        k = x.shape[-1]
        matrix = np.ascontiguousarray(x).reshape(-1, k)
        labels = np.ascontiguousarray(y).reshape(-1)
        out = np.empty(labels.shape[0], x.dtype)
        bad = select_rows(matrix, labels, out)
        if bad >= 0:
            raise _bad_label(labels, bad, k)
        return out.reshape(y.shape)

    return run


def _select_grad(op, var):
    def run(g, x, y):
        if x.shape[:-1] != y.shape or g.shape != y.shape:
            raise ValueError(
                f"SelectClassGrad: shapes {g.shape}, {x.shape} and labels {y.shape} do not agree"
            )
        k = x.shape[-1]
        out = np.empty((y.size, k), x.dtype)
        labels = np.ascontiguousarray(y).reshape(-1)
        bad = scatter_rows(np.ascontiguousarray(g, x.dtype).reshape(-1), labels, out)
        if bad >= 0:
            raise _bad_label(labels, bad, k)
        return out.reshape(x.shape)

    return run


LOWERINGS = {
    N.Softmax: _softmax(False),
    N.LogSoftmax: _softmax(True),
    N.SelectClass: _select,
    N.SelectClassGrad: _select_grad,
}
NUMPY_STEPS: dict = {}
