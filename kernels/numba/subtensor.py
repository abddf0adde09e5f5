"""Numba lowerings of graph/ops/subtensor.py: basic indexing as views, the rest as numpy steps.

Basic indexing (integers, slices, newaxis) returns a view of its input, so a minibatch slice of a
shared data set is never copied. Advanced indexing and IncSubtensor are numpy steps for now: numpy
checks every index against the bounds (IndexError), which a numba gather would have to redo.
"""

from __future__ import annotations

from ...graph.ops import subtensor as ST

LOWERINGS: dict = {}
NUMPY_STEPS = {
    ST.Subtensor: (
        "basic indexing is a view (no data loop); advanced indexing a bounds-checked numpy gather"
    ),
    ST.IncSubtensor: (
        "a bounds-checked numpy scatter (np.add.at for repeated advanced indices); no kernel yet"
    ),
}
