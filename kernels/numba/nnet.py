"""Numba lowerings of graph/ops/nnet.py's non-elementwise ops: softmax, log-softmax, class picking.

The softmax axis is moved last (a view; one copy when that is not contiguous) and each row is done
in one kernel: max, exp and sum, scale. Class labels are bounds-checked inside the kernel, which
reports the first bad label so Python can raise numpy's IndexError instead of reading out of bounds.
"""

from __future__ import annotations

import math

import numba
import numpy as np

from ...graph.ops import nnet as N

njit = numba.njit(cache=True, error_model="numpy", nogil=True)


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
                softmax_rows(matrix, out, log)
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
