"""Shape ops: dimshuffle, reshape, joins, allocation, ranges (the rest of Theano's shape family)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..type import TensorType
from ..var import Op, Var, as_tensor_variable


@dataclass(frozen=True)
class DimShuffle(Op):
    """Permute axes and insert broadcastable ones: new_order holds input axes and 'x'.

    Axes left out of new_order must have static size 1 (they are dropped).
    """

    new_order: tuple

    def infer_type(self, x: TensorType) -> TensorType:
        kept = [d for d in self.new_order if d != "x"]
        if any(not isinstance(d, int) or d < 0 or d >= x.ndim for d in kept) or len(set(kept)) != len(kept):
            raise ValueError(f"dimshuffle{self.new_order}: invalid for a {x.ndim}-d input {x}")
        for axis in range(x.ndim):
            if axis not in kept and x.shape[axis] != 1:
                raise ValueError(
                    f"dimshuffle{self.new_order} drops axis {axis} of an input with shape {x.shape}; "
                    "only axes of static size 1 can be dropped"
                )
        return TensorType(x.dtype, tuple(1 if d == "x" else x.shape[d] for d in self.new_order))

    @property
    def dropped(self) -> tuple:
        return ()

    def perform(self, x):
        kept = [d for d in self.new_order if d != "x"]
        dropped = tuple(a for a in range(x.ndim) if a not in kept)
        y = x.reshape([s for a, s in enumerate(x.shape) if a not in dropped]) if dropped else x
        order = sorted(kept)
        y = np.transpose(y, [order.index(d) for d in kept])
        return y.reshape([1 if d == "x" else x.shape[d] for d in self.new_order])

    def pullback(self, inputs, output, g):
        (x,) = inputs
        kept = [d for d in self.new_order if d != "x"]
        # Sum away the inserted axes, then undo the permutation and restore dropped axes.
        inserted = tuple(i for i, d in enumerate(self.new_order) if d == "x")
        if inserted:
            g = sum_(g, axis=inserted, keepdims=False)
        inverse = [kept.index(a) if a in kept else "x" for a in range(x.ndim)]
        return (dimshuffle(g, inverse),)


def dimshuffle(x, *pattern) -> Var:
    """Theano's `x.dimshuffle(1, 'x', 0)`; a pattern may also be passed as one list or tuple."""
    x = as_tensor_variable(x)
    if len(pattern) == 1 and isinstance(pattern[0], (list, tuple)):
        pattern = tuple(pattern[0])
    pattern = tuple(int(d) if d != "x" else "x" for d in pattern)
    if pattern == tuple(range(x.ndim)):
        return x
    return Var(DimShuffle(pattern), (x,))


def shape_padleft(x, n_ones: int = 1) -> Var:
    """Add `n_ones` broadcastable axes on the left."""
    x = as_tensor_variable(x)
    return dimshuffle(x, ("x",) * n_ones + tuple(range(x.ndim)))


def shape_padright(x, n_ones: int = 1) -> Var:
    """Add `n_ones` broadcastable axes on the right."""
    x = as_tensor_variable(x)
    return dimshuffle(x, tuple(range(x.ndim)) + ("x",) * n_ones)


def shape_padaxis(x, axis: int) -> Var:
    """Insert one broadcastable axis at `axis`."""
    x = as_tensor_variable(x)
    if axis < 0:
        axis += x.ndim + 1
    order = list(range(x.ndim))
    order.insert(axis, "x")
    return dimshuffle(x, order)


def transpose(x, axes=None) -> Var:
    """Reverse (or permute by `axes`) the axes."""
    x = as_tensor_variable(x)
    axes = tuple(reversed(range(x.ndim))) if axes is None else tuple(axes)
    return dimshuffle(x, axes)


from .reduce import sum_  # noqa: E402  (reduce imports this module's helpers lazily)


def zeros_like(x, dtype=None) -> Var:
    """Zeros with the shape (and dtype, unless given) of `x`."""
    from ..type import as_dtype
    from ..var import constant
    from .elemwise import second

    x = as_tensor_variable(x)
    return second(x, constant(np.zeros((), dtype=as_dtype(dtype) if dtype is not None else x.dtype)))


def ones_like(x, dtype=None) -> Var:
    """Ones with the shape (and dtype, unless given) of `x`."""
    from ..type import as_dtype
    from ..var import constant
    from .elemwise import second

    x = as_tensor_variable(x)
    return second(x, constant(np.ones((), dtype=as_dtype(dtype) if dtype is not None else x.dtype)))
