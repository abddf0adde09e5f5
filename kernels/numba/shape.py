"""Numba lowerings of graph/ops/shape.py, shape_alloc.py and composite.Proj.

Three kinds. Views: ops that only change metadata (dimshuffle, reshape, shape, basic indexing) run
their numpy perform, which returns a view without touching the data. Kernels: SumToShape reuses the
reduction kernels. Numpy steps, each with its reason: pure data movement (copy, tile, sort ...)
where numpy's loops already run at memory speed, and data-dependent output shapes (nonzero).
The random draws are lowered in random.py.
"""

from __future__ import annotations

import numpy as np

from ...graph.ops import shape as S
from ...graph.ops import shape_alloc as A
from ...graph.ops.composite import Proj
from .reduce import as_matrix, sum_cols, sum_rows


def view(op, var):
    """A metadata-only op: its perform returns a view (or a tiny vector) without a data loop."""
    return op.perform


def _proj(op, var):
    index = op.index

    def run(values):
        return values[index]

    return run


def _sum_to_shape(op, var):
    dtype = np.dtype(var.dtype)
    zero = np.float64(0) if dtype.kind == "f" else dtype.type(0)

    def run(g, x):
        lead = g.ndim - x.ndim
        if any(dx != 1 and dx != dg for dg, dx in zip(g.shape[lead:], x.shape)):
            raise ValueError(
                f"sum_to_shape: a gradient of shape {g.shape} cannot be summed to {x.shape}"
            )
        pairs = enumerate(zip(g.shape[lead:], x.shape))
        axes = tuple(range(lead)) + tuple(lead + a for a, (dg, dx) in pairs if dx == 1 and dg != 1)
        if not axes:
            return g.astype(dtype, copy=False)
        kept = [a for a in range(g.ndim) if a not in axes]
        out = np.empty(int(np.prod([g.shape[a] for a in kept])), dtype)
        matrix, by_rows = as_matrix(g, axes, any_order=True)
        (sum_rows if by_rows else sum_cols)(matrix, out, zero)
        return out.reshape([1 if a in axes else g.shape[a] for a in range(lead, g.ndim)])

    return run


_MOVES = "data movement only: numpy's copy loops already run at memory speed"
LOWERINGS = {
    S.DimShuffle: view,
    S.Reshape: view,
    S.Shape: view,
    S.SpecifyShape: view,
    S.MakeVector: view,
    Proj: _proj,
    A.SumToShape: _sum_to_shape,
}
NUMPY_STEPS = {
    S.Copy: _MOVES,
    S.Join: _MOVES,
    A.Alloc: _MOVES + " (a broadcast fill)",
    A.Eye: _MOVES + " (a fill)",
    A.ARange: _MOVES + " (a fill)",
    A.Tile: _MOVES,
    A.Repeat: _MOVES,
    A.Roll: _MOVES,
    A.Diagonal: _MOVES + " (a strided copy)",
    A.DiagonalGrad: _MOVES + " (a strided fill)",
    A.AllocDiag: _MOVES + " (a strided fill)",
    A.Sort: "numpy's vectorized sort is faster than a numba one",
    A.ArgSort: "numpy's vectorized sort is faster than a numba one",
    A.TakeAlongAxis: _MOVES + " (a gather)",
    A.PutAlongAxis: "a scatter-add with repeated indices (np.add.at); no numba kernel yet",
    A.Nonzero: "data-dependent output shape",
}
