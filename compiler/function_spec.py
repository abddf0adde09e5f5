"""function()'s arguments checked and normalized into a spec: inputs, outputs, givens, updates."""

from __future__ import annotations

import os
import warnings
from typing import Any

import numpy as np

from ..graph.config import config
from ..graph.shared import SharedVariable, filter_value
from ..graph.type import TensorType
from ..graph.var import Constant, Input, Shared, Var, as_tensor_variable, constant, replace
from ..graph.var import toposort
from ..kernels.backends import BackendUnavailable, get_backend

# mode name -> (backend name, NaN guard). Theano's names: FAST_RUN compiles (numba), FAST_COMPILE
# interprets (py), DebugMode checks every node of numba against py.
_MODES = {
    "py": ("py", False),
    "FAST_RUN": ("numba", False),
    "FAST_COMPILE": ("py", False),
    "DebugMode": ("debug", False),
    "DEBUG_MODE": ("debug", False),
    "NanGuardMode": ("py", True),
    "numba": ("numba", False),
    "cuda": ("cuda", False),
    "cuda-emulator": ("cuda-emulator", False),
}

class UnusedInputError(ValueError):
    """An input of `function` is not needed to compute its outputs or updates."""


class MissingInputError(ValueError):
    """The outputs depend on a symbolic input that is not in `function`'s inputs."""


class In:
    """An input: a symbolic variable with an optional name, default value and update."""

    def __init__(
        self,
        variable: Var,
        name: str | None = None,
        value: Any = None,
        update: Any = None,
        mutable: bool = False,
        strict: bool = False,
        allow_downcast: bool | None = None,
        autoname: bool = True,
        implicit: bool | None = None,
        borrow: bool = False,
        shared: bool = False,
    ) -> None:
        if not isinstance(variable, Var):
            raise TypeError(f"In() expects a symbolic variable, got {_show(variable)}")
        self.variable = variable
        self.name = variable.name if name is None and autoname else name
        self.value, self.update = value, update
        self.mutable, self.strict, self.allow_downcast = mutable, strict, allow_downcast
        self.implicit, self.borrow, self.shared = bool(implicit), borrow, shared
        if (self.implicit or update is not None) and value is None:
            raise TypeError(
                f"In({self.name or variable}): an implicit input, or one with an update, "
                "needs a value"
            )

    def __repr__(self) -> str:
        return f"In({self.variable!r})"


class Out:
    """An output: `borrow=True` lets the result alias internal storage (no defensive copy)."""

    def __init__(self, variable: Var, borrow: bool = False) -> None:
        if not isinstance(variable, Var):
            raise TypeError(f"Out() expects a symbolic variable, got {_show(variable)}")
        self.variable, self.borrow = variable, borrow

    def __repr__(self) -> str:
        return f"Out({self.variable!r}, borrow={self.borrow})"


def build_spec(
    inputs: Any,
    outputs: Any,
    updates: Any,
    givens: Any,
    mode: Any,
    name: str | None,
    allow_input_downcast: bool | None,
    on_unused_input: str | None,
    no_default_updates: Any,
    profile: bool | None,
    rebuild_strict: bool,
) -> dict:
    """Check and normalize function()'s arguments into what Function compiles and pickles."""
    mode_name = _resolve_mode(mode)
    policy = config.on_unused_input if on_unused_input is None else on_unused_input
    if policy not in ("raise", "warn", "ignore"):
        raise ValueError(f"on_unused_input must be 'raise', 'warn' or 'ignore', got {policy!r}")
    ins = _normalize_inputs(inputs)
    in_vars = [i.variable for i in ins]
    out_vars, borrow, kind, keys = _normalize_outputs(outputs)
    given = _normalize_givens(givens, in_vars, rebuild_strict)
    pairs = _normalize_updates(updates)
    stateful = [k for k, i in enumerate(ins) if i.update is not None]
    # Substitute givens in everything at once: outputs, updates and In(update=) expressions.
    in_updates = [_update_expr(ins[k].variable, ins[k].update) for k in stateful]
    exprs = replace(out_vars + [u for _, u in pairs] + in_updates, given)
    n_out, n_up = len(out_vars), len(pairs)
    out_vars = exprs[:n_out]
    pairs = [(s, u) for (s, _), u in zip(pairs, exprs[n_out : n_out + n_up])]
    for k, expr in zip(stateful, exprs[n_out + n_up :]):
        _check_update_type(ins[k].variable, expr)
        ins[k] = with_value(ins[k], ins[k].value, expr)
    for target, expr in pairs:
        _check_update_type(target, expr)
    pairs += _default_updates(exprs, pairs, in_vars, given, no_default_updates)
    everything = exprs + [u for _, u in pairs[n_up:]]
    _check_missing(everything, in_vars)
    _check_unused(everything, ins, policy)
    spec = {
        "inputs": ins,
        "outputs": list(zip(out_vars, borrow)),
        "updates": pairs,
        "kind": kind,
        "keys": keys,
        "name": name,
        "mode": mode_name,
        "allow_input_downcast": allow_input_downcast,
        "profile": bool(config.profile if profile is None else profile),
    }
    return spec


def _resolve_mode(mode: Any) -> str:
    """The mode's name, or a clear error when its backend is not available."""
    if mode is None:
        mode = config.mode
    if not isinstance(mode, str):
        raise TypeError(f"mode must be a string such as 'py', got {_show(mode)}")
    if mode not in _MODES:
        raise ValueError(f"unknown mode {mode!r}; known modes: {', '.join(_MODES)}")
    if mode == "cuda" and not _has_cuda_gpu():
        raise NotImplementedError(
            "mode='cuda': no CUDA GPU was found on this machine (no /dev/nvidia0); use "
            "mode='cuda-emulator' to run the CUDA backend on the CPU emulator, or mode='numba' "
            "for the CPU"
        )
    try:
        get_backend(_MODES[mode][0])
    except BackendUnavailable as error:
        raise NotImplementedError(f"mode={mode!r}: {error}") from None
    return mode


def _has_cuda_gpu() -> bool:
    return os.path.exists("/dev/nvidiactl") or os.path.exists("/dev/nvidia0")


def _normalize_inputs(inputs: Any) -> list[In]:
    if inputs is None:
        inputs = []
    if not isinstance(inputs, (list, tuple)):
        raise TypeError(
            "function(): inputs must be a list of symbolic variables, even for a single input; "
            f"got {_show(inputs)}"
        )
    ins: list[In] = []
    for k, x in enumerate(inputs):
        var = x.variable if isinstance(x, In) else x
        if not isinstance(var, Var):
            raise TypeError(
                f"function(): inputs[{k}] must be a symbolic variable (e.g. T.matrix('x')) or "
                f"In(...), got {_show(x)}"
            )
        if isinstance(var.op, Shared):
            raise TypeError(
                f"function(): inputs[{k}] is the shared variable {var}; a shared variable "
                "cannot be an explicit input (its value is read at each call); substitute a "
                "symbolic variable for it with givens"
            )
        if isinstance(var.op, Constant):
            raise TypeError(
                f"function(): inputs[{k}] is the constant {var}; inputs must be symbolic variables"
            )
        ins.append(x if isinstance(x, In) else In(var))
    seen: dict[int, int] = {}
    for k, i in enumerate(ins):
        first = seen.setdefault(id(i.variable), k)
        if first != k:
            raise ValueError(
                f"function(): the variable {i.variable} is used twice in inputs, at positions "
                f"{first} and {k}; list each input once"
            )
    return ins


def _normalize_outputs(outputs: Any) -> tuple:
    """(variables, borrow flags, 'single' | 'list' | 'dict', the dict's keys)."""
    if outputs is None:
        return [], [], "list", None
    if isinstance(outputs, dict):
        variables, borrow, _, _ = _normalize_outputs(list(outputs.values()))
        return variables, borrow, "dict", list(outputs)
    single = not isinstance(outputs, (list, tuple))
    items = [outputs] if single else list(outputs)
    variables, borrow = [], []
    for k, item in enumerate(items):
        var = item.variable if isinstance(item, Out) else item
        if not isinstance(var, Var):
            raise TypeError(
                f"function(): outputs must be symbolic variables or Out(...); output {k} is "
                f"{_show(item)}"
            )
        variables.append(var)
        borrow.append(isinstance(item, Out) and item.borrow)
    return variables, borrow, "single" if single else "list", None


def _pairs(value: Any, what: str) -> list:
    """A dict, or a list or tuple of pairs, as a list of pairs."""
    if value is None:
        return []
    items = list(value.items()) if isinstance(value, dict) else value
    try:
        pairs = [tuple(p) for p in items]
    except TypeError:
        raise TypeError(
            f"function(): {what} must be a dict or a list of (variable, value) pairs, got "
            f"{_show(value)}"
        ) from None
    for p in pairs:
        if len(p) != 2:
            raise TypeError(f"function(): each entry of {what} must be a pair, got {p!r:.80}")
    return pairs


def _normalize_givens(givens: Any, in_vars: list[Var], strict: bool) -> dict:
    given: dict = {}
    inputs = set(in_vars)
    for key, value in _pairs(givens, "givens"):
        if not isinstance(key, Var):
            raise TypeError(f"function(): givens keys must be symbolic variables, got {_show(key)}")
        if key in given:
            raise ValueError(f"function(): givens replaces {key} twice")
        if key in inputs:
            raise RuntimeError(
                f"function(): givens replaces {key}, which is also an input of the function; "
                "replacing an input has no effect. Define a new input y and pass givens={x: g(y)}, "
                "or rebuild the outputs with theanine.clone(outputs, replace={x: g(x)})"
            )
        new = value if isinstance(value, Var) else _as_value(value, key.type, key.describe())
        same_dtype = new.dtype == key.dtype or not strict
        if not same_dtype or new.ndim != key.ndim or not _compatible(key.type, new.type):
            raise TypeError(
                f"function(): givens replaces {key.describe()} of type {key.type} with "
                f"{new.describe()} of type {new.type}; the replacement needs the same dtype and "
                f"number of dimensions, and compatible static shapes (T.cast(v, '{key.dtype}'))"
            )
        given[key] = new
    return given


def _as_value(value: Any, type_: TensorType, what: str) -> Var:
    """A constant for a numeric `value` in a slot of type `type_`."""
    if isinstance(value, (np.ndarray, np.generic, int, float, bool, list, tuple)):
        return constant(filter_value(value, type_, f"value for {what}"))
    return as_tensor_variable(value)


def _compatible(a: TensorType, b: TensorType) -> bool:
    return all(x is None or y is None or x == y for x, y in zip(a.shape, b.shape))


def _normalize_updates(updates: Any) -> list[tuple]:
    pairs: list[tuple] = []
    seen: set = set()
    for target, value in _pairs(updates, "updates"):
        if not isinstance(target, SharedVariable):
            raise TypeError(
                f"function(): update targets must be shared variables, got {_show(target)}; "
                "only theanine.shared(...) values persist between calls"
            )
        if target in seen:
            raise ValueError(
                f"function(): the shared variable {target} is updated twice; give one update "
                "per variable"
            )
        seen.add(target)
        pairs.append((target, _update_expr(target, value)))
    return pairs


def _update_expr(target: Var, value: Any) -> Var:
    return value if isinstance(value, Var) else _as_value(value, target.type, f"update of {target}")


def _check_update_type(target: Var, value: Var) -> None:
    """Theano's rule: an update keeps the variable's dtype and ndim; static shapes must agree."""
    same = value.dtype == target.dtype and value.ndim == target.ndim
    if not same or not _compatible(target.type, value.type):
        raise TypeError(
            "An update must have the same type as the original shared variable "
            f"(shared_var={target}, shared_var.type={target.type}, update_val={value}, "
            f"update_val.type={value.type}). Cast the update (T.cast(update, '{target.dtype}')) "
            f"or fix its shape; the update was built at\n  {value.where()}"
        )


def _default_updates(
    exprs: list[Var], pairs: list, in_vars: list[Var], given: dict, excluded: Any
) -> list[tuple]:
    """The default_update of each shared variable the graph reads, unless excluded or updated."""
    if excluded is True:
        return []
    skip = set(excluded or ()) | {s for s, _ in pairs}
    stop = set(in_vars)
    found: list[tuple] = []
    frontier = list(exprs)
    while frontier:  # a default update may read further shared variables with their own
        new = []
        for var in toposort(frontier, stop=stop):
            if not isinstance(var, SharedVariable) or var in skip or var.default_update is None:
                continue
            skip.add(var)
            (expr,) = replace([_update_expr(var, var.default_update)], given)
            _check_update_type(var, expr)
            found.append((var, expr))
            new.append(expr)
        frontier = new
    return found


def _check_missing(exprs: list[Var], in_vars: list[Var]) -> None:
    given = set(in_vars)
    for var in toposort(exprs, stop=given):
        if isinstance(var.op, Input) and var not in given:
            raise MissingInputError(
                f"function(): the outputs depend on the input {var.describe()} of type {var.type}, "
                "which is not in the inputs list; add it to the inputs or replace it with givens. "
                f"It was created at\n  {var.where()}"
            )


def _check_unused(exprs: list[Var], ins: list[In], policy: str) -> None:
    if policy == "ignore":
        return
    used = set(toposort(exprs, stop={i.variable for i in ins}))
    for k, i in enumerate(ins):
        if i.variable not in used:
            message = (
                f"function(): input {k} ({i.name or i.variable}) is not used to compute the "
                "outputs or updates; remove it from the inputs, or pass "
                "on_unused_input='ignore' (or 'warn')"
            )
            if policy == "raise":
                raise UnusedInputError(message)
            warnings.warn(message, stacklevel=3)


def _show(x: Any) -> str:
    return f"{type(x).__name__} {x!r:.60}"


def input_name(spec: In, k: int) -> str:
    """How messages name input `k`: its name, or its position and type."""
    return repr(spec.name) if spec.name else f"#{k} ({spec.variable.type})"


def with_value(spec: In, value: Any, update: Any = None) -> In:
    """A copy of `spec` with another default value (and update expression, when given)."""
    return In(
        spec.variable, spec.name, value, spec.update if update is None else update, spec.mutable,
        spec.strict, spec.allow_downcast, False, spec.implicit, spec.borrow, spec.shared,
    )
