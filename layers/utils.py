"""Small helpers shared by the layers (Lasagne's `lasagne.utils`): floatX, create_param, one_hot."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import numpy as np

from ..graph import tensor as T
from ..graph.config import config
from ..graph.shared import SharedVariable, shared
from ..graph.var import Var, as_tensor_variable, toposort


def floatX(arr) -> np.ndarray:
    """`arr` as a numpy array of dtype `config.floatX`."""
    return np.asarray(arr, dtype=config.floatX)


def shared_empty(dim: int = 2, dtype: str | None = None) -> SharedVariable:
    """A shared variable holding an empty array with `dim` dimensions."""
    return shared(np.zeros((0,) * dim, dtype=dtype or config.floatX))


def as_theano_expression(value) -> Var:
    """`value` as a symbolic expression (a numpy array or number becomes a constant)."""
    if isinstance(value, Var):
        return value
    try:
        return as_tensor_variable(value)
    except Exception as error:
        message = f"expected a symbolic expression or a numeric value, got {value!r:.80}"
        raise TypeError(message) from error


def unique(items: Iterable) -> list:
    """The items in order, each kept at its first occurrence."""
    seen, result = set(), []
    for item in items:
        if item not in seen:
            seen.add(item)
            result.append(item)
    return result


def collect_shared_vars(expressions) -> list[SharedVariable]:
    """The shared variables that `expressions` (one or a list) depend on, in order, once each."""
    if isinstance(expressions, Var):
        expressions = [expressions]
    found = []
    for expression in expressions:
        if isinstance(expression, SharedVariable):
            found.append(expression)
        else:
            found.extend(v for v in toposort([expression]) if isinstance(v, SharedVariable))
    return unique(found)


def as_tuple(x, n: int, t=None) -> tuple:
    """`x` repeated `n` times, or `x` itself when it already is an iterable of length `n`."""
    try:
        values = tuple(x)
    except TypeError:
        values = (x,) * n
    if len(values) != n:
        raise ValueError(f"expected a single value or an iterable of length {n}, got {x!r}")
    if t is not None and not all(isinstance(v, t) for v in values):
        raise TypeError(f"expected a single value or an iterable of {t}, got {x!r}")
    return values


def one_hot(x: Var, m: int | Var | None = None) -> Var:
    """One-hot encoding of the integer vector `x` into `m` columns (max(x) + 1 when not given)."""
    x = as_theano_expression(x)
    if m is None:
        m = T.cast(T.max(x) + 1, "int64")
    return T.cast(T.eq(x.dimshuffle(0, "x"), T.arange(m).dimshuffle("x", 0)), config.floatX)


def _shape_text(shape: tuple) -> str:
    return "(" + ", ".join(str(s) for s in shape) + ("," if len(shape) == 1 else "") + ")"


def create_param(spec: Any, shape: tuple, name: str | None = None) -> Var:
    """A parameter of `shape` from `spec`: a shared variable or expression (kept, ndim checked), a
    numpy array (shape checked, wrapped in a shared variable) or a callable (an initializer) called
    with the shape."""
    shape = tuple(shape)
    label = f"parameter {name!r}" if name else "parameter"
    if not all(isinstance(s, (int, np.integer)) and s > 0 for s in shape):
        raise ValueError(f"cannot create {label}: its shape {shape} must hold positive ints only")
    if isinstance(spec, Var):
        if spec.ndim != len(shape):
            raise ValueError(
                f"{label} expects a {len(shape)}-d variable of shape {_shape_text(shape)}, "
                f"got {spec.ndim}-d {spec}"
            )
        if isinstance(spec, SharedVariable):
            given = spec.get_value(borrow=True).shape
            if given != shape:
                raise ValueError(
                    f"{label} expects shape {_shape_text(shape)}, the shared variable {spec} "
                    f"has shape {_shape_text(given)}"
                )
        if name is not None and spec.name is None:
            spec.name = name
        return spec
    if isinstance(spec, Callable) and not isinstance(spec, np.ndarray):
        value = spec(shape)
        if isinstance(value, Var):
            return create_param(value, shape, name)
        source = f"the initializer {spec!r:.60}"
    else:
        value, source = spec, "the given array"
    if isinstance(value, (int, float, np.number)):
        value = np.asarray(value)
    if not isinstance(value, np.ndarray):
        raise TypeError(
            f"{label}: expected a numpy array, a shared variable, an expression or a callable, "
            f"got {type(spec).__name__}"
        )
    if value.shape != shape:
        raise ValueError(
            f"{label} expects shape {_shape_text(shape)}, {source} gives shape "
            f"{_shape_text(value.shape)}"
        )
    return shared(value, name=name)
