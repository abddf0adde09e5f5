"""Helpers the rule lists share: constant values, type-preserving replacements."""

from __future__ import annotations

import numpy as np

from ...graph import tensor as T
from ...graph.ops.shape import DimShuffle
from ...graph.var import Constant, Var


def constant_value(var: Var) -> np.ndarray | None:
    """The value of a constant, looking through broadcasting dimshuffles; None when not constant."""
    while isinstance(var.op, DimShuffle):
        var = var.inputs[0]
    return var.op.data if isinstance(var.op, Constant) else None


def scalar_value(var: Var) -> float | None:
    """The single value of a one-element constant, else None."""
    value = constant_value(var)
    if value is None or value.size != 1:
        return None
    return value.reshape(()).item()


def is_scalar_like(var: Var) -> bool:
    """True when every static dimension is 1 (a 0-d value broadcast), so it cannot enlarge a result."""
    return all(d == 1 for d in var.type.shape)


def like(node: Var, x: Var) -> Var | None:
    """`x` as a replacement for `node`: cast to node's dtype; None when the shapes could differ."""
    if x.ndim != node.ndim:
        if x.ndim < node.ndim:
            x = T.shape_padleft(x, node.ndim - x.ndim)
        else:
            return None
    for dx, dn in zip(x.type.shape, node.type.shape):
        if dx == 1 and dn != 1:
            return None  # x would broadcast: node is bigger than x
    if x.dtype != node.dtype:
        x = T.cast(x, node.dtype)
    return x


def constant(value, dtype: str) -> Var:
    return Var(Constant(np.asarray(value, dtype=dtype)), ())
