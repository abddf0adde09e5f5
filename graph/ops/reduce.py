"""Reductions over axes: sum, prod, mean, var, std, max, min, argmax, argmin, all, any."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..type import TensorType
from ..var import Op, Var, as_tensor_variable


def normalize_axis(axis, ndim: int, what: str = "reduction") -> tuple:
    """None -> every axis; ints (negative allowed) -> a sorted tuple; out of range raises."""
    if axis is None:
        return tuple(range(ndim))
    if isinstance(axis, Var):
        from ..var import Constant

        if isinstance(axis.op, Constant):
            axis = axis.op.data.tolist()
        else:
            raise TypeError(f"{what}: axis must be a Python int or tuple, not a symbolic variable")
    axes = (axis,) if isinstance(axis, (int, np.integer)) else tuple(axis)
    out = []
    for a in axes:
        if not isinstance(a, (int, np.integer)):
            raise TypeError(f"{what}: axis must be ints, got {axis!r}")
        a = int(a)
        if not -ndim <= a < ndim:
            raise ValueError(f"{what}: axis {a} is out of range for a {ndim}-d input")
        out.append(a % ndim)
    if len(set(out)) != len(out):
        raise ValueError(f"{what}: repeated axis in {axis!r}")
    return tuple(sorted(out))


def reduced_shape(shape: tuple, axis: tuple, keepdims: bool) -> tuple:
    if keepdims:
        return tuple(1 if a in axis else d for a, d in enumerate(shape))
    return tuple(d for a, d in enumerate(shape) if a not in axis)


@dataclass(frozen=True)
class Sum(Op):
    """Sum over `axis` (a sorted tuple), keeping reduced axes as size 1 when `keepdims`."""

    axis: tuple
    keepdims: bool = False
    dtype: str | None = None

    def infer_type(self, x: TensorType) -> TensorType:
        if any(a >= x.ndim for a in self.axis):
            raise ValueError(f"sum: axis {self.axis} out of range for {x}")
        return TensorType(self.out_dtype(x.dtype), reduced_shape(x.shape, self.axis, self.keepdims))

    def out_dtype(self, dtype: str) -> str:
        return self.dtype or np.sum(np.zeros(1, dtype=dtype)).dtype.name

    def perform(self, x):
        return np.asarray(np.sum(x, axis=self.axis, keepdims=self.keepdims, dtype=self.dtype or None)).astype(
            self.out_dtype(x.dtype.name), copy=False
        )

    def pullback(self, inputs, output, g):
        (x,) = inputs
        from .shape import dimshuffle

        if not self.keepdims:
            order, k = [], 0
            for a in range(x.ndim):
                if a in self.axis:
                    order.append("x")
                else:
                    order.append(k)
                    k += 1
            g = dimshuffle(g, order)
        from .. import tensor as T

        return (T.broadcast_to_like(g, x),)


def sum_(x, axis=None, dtype=None, keepdims: bool = False, acc_dtype=None) -> Var:
    """Sum of the elements over the given axes."""
    x = as_tensor_variable(x)
    axis = normalize_axis(axis, x.ndim, "sum")
    if not axis and not keepdims and dtype is None:
        return x
    return Var(Sum(axis, bool(keepdims), None if dtype is None else np.dtype(dtype).name), (x,))
