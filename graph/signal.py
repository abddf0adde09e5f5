"""Theano's `T.signal.pool`: pool_2d (max, sum, average) over the last two axes, and friends."""

from __future__ import annotations

import warnings

import numpy as np

from .ops.pool import (
    MODES,
    AveragePool2dGrad,
    MaxPool2dGrad,
    MaxPool2dGradGrad,
    Pool2d,
    pool_output_length,
)
from .var import Constant, Var, as_tensor_variable

__all__ = [
    "pool_2d", "max_pool_2d_same_size", "max_pool_2d", "Pool2d", "MaxPool2dGrad",
    "AveragePool2dGrad", "MaxPool2dGradGrad", "pool_output_length",
]

Pool = Pool2d
MaxPoolGrad = MaxPool2dGrad
AveragePoolGrad = AveragePool2dGrad

_warned: set = set()


def _warn_once(old: str, new: str, stacklevel: int) -> None:
    if old in _warned:
        return
    _warned.add(old)
    warnings.warn(
        f"pool_2d: the {old!r} argument is deprecated and will be removed; use {new!r} instead",
        DeprecationWarning,
        stacklevel=stacklevel + 1,
    )


def _pair(value, what: str, minimum: int) -> tuple:
    if isinstance(value, Var):
        if not isinstance(value.op, Constant):
            raise TypeError(f"pool_2d: {what} must be known when the graph is built, got {value}")
        value = value.op.data.tolist()
    if isinstance(value, (int, np.integer)):
        value = (value, value)
    try:
        pair = tuple(value)
    except TypeError:
        raise TypeError(f"pool_2d: {what} must be a pair of ints, got {value!r}") from None
    if len(pair) != 2 or not all(isinstance(v, (int, np.integer)) and v >= minimum for v in pair):
        raise ValueError(f"pool_2d: {what} must be a pair of ints >= {minimum}, got {value!r}")
    return tuple(int(v) for v in pair)


def _renamed(new_value, old_value, new: str, old: str):
    if old_value is None:
        return new_value
    if new_value is not None:
        raise ValueError(f"pool_2d: give {new!r} or its deprecated alias {old!r}, not both")
    _warn_once(old, new, 4)  # the user's line, above pool_2d and this helper
    return old_value


def pool_2d(
    input,  # noqa: A002  (Theano's name)
    ws=None,
    ignore_border=None,
    stride=None,
    pad=(0, 0),
    mode: str = "max",
    ds=None,
    st=None,
    padding=None,
) -> Var:
    """Pool the last two axes of `input` with windows `ws` (stride defaults to ws); mode is max,
    sum, average_inc_pad (padding counts in the mean) or average_exc_pad."""
    ws = _renamed(ws, ds, "ws", "ds")
    stride = _renamed(stride, st, "stride", "st")
    if padding is not None:
        if pad not in ((0, 0), None):
            raise ValueError("pool_2d: give 'pad' or its deprecated alias 'padding', not both")
        _warn_once("padding", "pad", 3)
        pad = padding
    if ws is None:
        raise ValueError("pool_2d: the window size ws is required, e.g. ws=(2, 2)")
    x = as_tensor_variable(input)
    if x.ndim < 2:
        raise TypeError(
            f"pool_2d: needs an input with at least 2 dimensions, got {x.describe()} of type "
            f"{x.type}"
        )
    if ignore_border is None:
        # Theano 1.0 warns and uses False; the same, so old programs keep their output shapes
        warnings.warn(
            "pool_2d: ignore_border was not given; it defaults to False as in Theano, pass "
            "ignore_border=True (the usual choice) or False explicitly to silence this warning",
            UserWarning,
            stacklevel=2,
        )
        ignore_border = False
    if mode == "max_deterministic":
        mode = "max"
    if mode not in MODES:
        raise ValueError(f"pool_2d: mode must be one of {', '.join(MODES)}, got {mode!r}")
    ws = _pair(ws, "ws", 1)
    stride = ws if stride is None else _pair(stride, "stride", 1)
    pad = _pair((0, 0) if pad is None else pad, "pad", 0)
    return Var(Pool2d(ws, bool(ignore_border), stride, pad, mode), (x,))


def max_pool_2d(  # noqa: A002  (Theano's argument names)
    input, ds, ignore_border=None, st=None, padding=(0, 0), mode: str = "max"
) -> Var:
    """Theano 0.8's name for pool_2d (window `ds`, stride `st`)."""
    return pool_2d(input, ws=ds, ignore_border=ignore_border, stride=st, pad=padding, mode=mode)


def max_pool_2d_same_size(input, patch_size) -> Var:  # noqa: A002
    """The input with each entry that is not the maximum of its (disjoint) patch set to 0."""
    x = as_tensor_variable(input)
    patch = _pair(patch_size, "patch_size", 1)
    pooled = pool_2d(x, ws=patch, ignore_border=True)
    return Var(MaxPool2dGrad(patch, True, patch, (0, 0), "max"), (x, pooled, pooled))
