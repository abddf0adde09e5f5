"""The reference interpreter: run each node's numpy `perform` (mode `py`, `var.eval()`)."""

from __future__ import annotations

import functools
from typing import Sequence

import numpy as np

from .ops.elemwise import Elemwise, check_runtime_broadcast
from .shared import filter_value
from .type import TensorType, TupleType
from .var import Constant, Input, Shared, Var, format_trace, toposort


class EvaluationError(RuntimeError):
    """An op failed at run time; the message names the op and the user's line that built it."""


def leaf_value(var: Var, values: dict) -> np.ndarray:
    """The value of a leaf: a given input, a constant or a shared variable's current value."""
    op = var.op
    if var in values:
        return values[var]
    if isinstance(op, Constant):
        data = op.data
        return data if data.dtype.name == var.type.dtype else data.astype(var.type.dtype)
    if isinstance(op, Shared):
        return var.container.value
    if isinstance(op, Input):
        raise EvaluationError(
            f"no value was given for the input {var.describe()} of type {var.type}, created at\n  {var.where()}"
        )
    raise EvaluationError(f"cannot evaluate leaf {var}")


def run_node(var: Var, args: Sequence[np.ndarray]) -> np.ndarray:
    """Run one node's perform and check the result against its inferred type."""
    try:
        if isinstance(var.op, Elemwise):
            check_runtime_broadcast(var, args)
        out = var.op.perform(*args)
    except Exception as error:
        raise node_error(var, error, args) from error
    return check_output(var, out)


@functools.lru_cache(maxsize=None)
def _numpy_dtype(name: str) -> np.dtype:
    """The numpy dtype of a TensorType's dtype name (always a valid one: as_dtype checked it)."""
    return np.dtype(name)


def check_output(var: Var, out) -> np.ndarray:
    type_ = var.type
    if isinstance(type_, TupleType):
        return tuple(check_output(_Typed(t, var), o) for t, o in zip(type_.types, out))
    out = np.asarray(out)
    # dtype equality is a C comparison; .name is built by Python code at each call (a third of a
    # small node's time); a byte-swapped result differs here and is judged by its name
    if out.dtype != _numpy_dtype(type_.dtype) and out.dtype.name != type_.dtype:
        raise EvaluationError(
            f"internal error: {var.op} returned dtype {out.dtype.name} but its type says {type_.dtype} "
            f"(node created at {var.where()})"
        )
    if not type_.accepts_shape(out.shape):
        raise EvaluationError(
            f"{var.op} produced shape {out.shape}, but its static type says {type_}; node created at\n  {var.where()}"
        )
    return out


class _Typed:
    """A stand-in Var for checking one element of a multi-output node's result."""

    def __init__(self, type_, var: Var) -> None:
        self.type, self.op, self.where = type_, var.op, var.where


def node_error(var: Var, error: Exception, args: Sequence[np.ndarray]) -> Exception:
    shapes = ", ".join(f"{a.dtype}{list(np.shape(a))}" for a in args)
    message = (
        f"{error}\nApply node that caused the error: {var.op}({', '.join(map(str, var.inputs))})"
        f"\nInputs: {shapes}\nThe node was created at:\n  {var.where()}"
    )
    kind = type(error) if type(error) in (ValueError, TypeError, IndexError, ZeroDivisionError, FloatingPointError, OverflowError) else EvaluationError
    return kind(message)


def evaluate(outputs: Sequence[Var], values: dict) -> list[np.ndarray]:
    """Compute `outputs` given {input: value}; the simple, exact oracle for every backend."""
    computed: dict[int, np.ndarray] = {}
    for var in toposort(outputs, stop=set(values)):
        if var in values:
            computed[id(var)] = filter_value(values[var], var.type, f"value for {var.describe()}")
        elif not var.inputs:
            computed[id(var)] = leaf_value(var, values)
        else:
            computed[id(var)] = run_node(var, [computed[id(x)] for x in var.inputs])
    return [computed[id(v)] for v in outputs]


__all__ = ["evaluate", "EvaluationError", "TensorType"]
