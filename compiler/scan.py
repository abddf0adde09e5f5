"""theanine.scan_module: Theano's symbolic loop (scan, map, reduce, foldl, foldr, until)."""

from __future__ import annotations

from collections import OrderedDict
from typing import Any, Callable

import numpy as np

from ..graph import tensor as T
from ..graph.ops.composite import Proj
from ..graph.ops.scan import Scan, inner_leaves, inner_placeholder
from ..graph.shared import SharedVariable
from ..graph.type import TensorType
from ..graph.var import Constant, Var, as_tensor_variable, replace

__all__ = ["scan", "map", "reduce", "foldl", "foldr", "until", "Scan"]


class until:
    """Returned by a step function: stop the loop after this step when `condition` is true."""

    def __init__(self, condition: Any) -> None:
        condition = as_tensor_variable(condition)
        if condition.ndim != 0:
            raise TypeError(
                f"until: the condition must be a scalar, got {condition} of type {condition.type}"
            )
        self.condition = condition


class _Seq:
    """A sequence as the user gave it: the variable, its taps, its name in messages."""

    def __init__(self, var: Var, taps: list[int], label: str) -> None:
        self.var, self.taps, self.label = var, taps, label
        self.lo, self.hi = min(min(taps), 0), max(max(taps), 0)

    def length(self) -> Var:
        """The number of steps this sequence gives: its length less the span of its taps."""
        span = self.hi - self.lo
        return self.var.shape[0] - span if span else self.var.shape[0]

    def static_length(self) -> int | None:
        """The number of steps, when the static shape knows the sequence's length."""
        n = self.var.type.shape[0]
        return None if n is None else n - (self.hi - self.lo)

    def sliced(self, tap: int) -> Var:
        """The rows that tap `tap` reads, one per step: seq[tap - lo : len - (hi - tap)]."""
        start, end = tap - self.lo, self.hi - tap
        if not start and not end:
            return self.var
        return self.var[start : (-end if end else None)]


class _Out:
    """An entry of outputs_info: initial value (None: not fed back) and taps."""

    def __init__(self, initial: Var | None, taps: list[int], label: str) -> None:
        self.initial, self.taps, self.label = initial, taps, label

    @property
    def lag(self) -> int:
        """How many past values the taps reach back."""
        return -min(self.taps)

    def row_type(self) -> TensorType:
        """The type of one state value (the initial without its time axis, except for taps [-1])."""
        init = self.initial.type
        return init if self.taps == [-1] else TensorType(init.dtype, init.shape[1:])

    def buffer(self) -> Var:
        """The initial buffer: `lag` rows of past values."""
        if self.taps == [-1]:
            return T.shape_padleft(self.initial)
        return self.initial[: self.lag]


def _as_list(x: Any) -> list:
    if x is None:
        return []
    return list(x) if isinstance(x, (list, tuple)) else [x]


def _label(kind: str, k: int, var: Var | None, taps: list[int] | None = None) -> str:
    text = f"{kind} {k}"
    if var is not None and var.name:
        text += f" ({var.name!r})"
    if taps is not None and taps not in ([0], [-1]):
        text += f" with taps {taps}"
    return text


def _taps(value: Any, what: str) -> list[int]:
    taps = _as_list(value)
    for t in taps:
        if not isinstance(t, (int, np.integer)) or isinstance(t, bool):
            raise TypeError(f"scan: the taps of {what} must be integers, got {value!r}")
    return [int(t) for t in taps]


def _sequences(sequences: Any) -> list[_Seq]:
    out = []
    for k, entry in enumerate(_as_list(sequences)):
        if isinstance(entry, dict):
            if "input" not in entry:
                raise ValueError(f"scan: sequence {k} is a dict without 'input': {entry!r:.80}")
            var = as_tensor_variable(entry["input"])
            given = entry.get("taps")
            taps = _taps([0] if given is None else given, f"sequence {k}")
        else:
            var, taps = as_tensor_variable(entry), [0]
        label = _label("sequence", k, var, taps)
        if var.ndim < 1:
            raise TypeError(
                f"scan: {label} must have a leading time axis, got the scalar {var} of type "
                f"{var.type}"
            )
        if taps:
            out.append(_Seq(var, taps, label))
    return out


def _outputs_info(outputs_info: Any) -> list[_Out]:
    out = []
    for k, entry in enumerate(_as_list(outputs_info)):
        if isinstance(entry, dict):
            initial = entry.get("initial")
            taps = _taps(entry.get("taps", [-1]), f"output {k}") if initial is not None else []
            if initial is None and entry.get("taps"):
                raise ValueError(f"scan: output {k} has taps {entry['taps']} but no initial value")
        else:
            initial, taps = entry, ([-1] if entry is not None else [])
        if initial is not None:
            initial = as_tensor_variable(initial)
            label = _label("output", k, initial)
            if not taps:
                initial = None
            elif any(t >= 0 for t in taps):
                raise ValueError(
                    f"scan: the taps of {label} must be negative (past values), got {taps}"
                )
            elif taps != [-1]:
                rows = initial.type.shape[0] if initial.ndim else None
                if initial.ndim == 0:
                    raise TypeError(
                        f"scan: {label} reads {-min(taps)} past values, so its initial value "
                        f"needs a leading axis of at least that length; got the scalar {initial}"
                    )
                if rows is not None and rows < -min(taps):
                    raise ValueError(
                        f"scan: {label} has taps {taps}, which reach {-min(taps)} steps before the "
                        f"start, but its initial value has only {rows} row(s)"
                    )
        else:
            label = _label("output", k, None)
        out.append(_Out(initial, taps, label))
    return out


def _parse_step_result(result: Any) -> tuple[list, list, Var | None]:
    """(outputs, update pairs, condition) from whatever the step function returned."""

    def is_updates(x):
        if isinstance(x, dict):
            return True
        return (
            isinstance(x, (list, tuple)) and len(x) > 0
            and all(
                isinstance(p, (list, tuple)) and len(p) == 2 and isinstance(p[0], SharedVariable)
                for p in x
            )
        )

    def is_outputs(x):
        if isinstance(x, (list, tuple)):
            return all(not isinstance(e, (until, dict, list, tuple)) for e in x)
        return not isinstance(x, (until, dict))

    def pairs(x):
        return list(x.items()) if isinstance(x, dict) else [tuple(p) for p in x]

    if isinstance(result, until):
        return [], [], result.condition
    if is_updates(result) and not is_outputs(result):
        return [], pairs(result), None
    if is_outputs(result):
        return _as_list(result) if result is not None else [], [], None
    parts = list(result) if isinstance(result, (list, tuple)) else [result]
    outputs, updates, condition = [], [], None
    kinds = []
    for part in parts:
        if isinstance(part, until):
            kinds.append("until")
            condition = part.condition
        elif is_updates(part) and not (isinstance(part, (list, tuple)) and is_outputs(part)):
            kinds.append("updates")
            updates = pairs(part)
        elif is_outputs(part):
            kinds.append("outputs")
            outputs = _as_list(part)
        else:
            kinds.append("?")
    order = {"outputs": 0, "updates": 1, "until": 2}
    ranks = [order.get(k, -1) for k in kinds]
    if -1 in ranks or ranks != sorted(set(ranks)) or len(parts) > 3:
        raise ValueError(
            "scan: cannot read the step function's return value; return the outputs, then the "
            "updates (a dict of shared variable -> new value), then "
            f"theanine.scan_module.until(cond), each optional, in that order; got {_show(result)}"
        )
    return outputs, updates, condition


def _show(x: Any) -> str:
    text = repr(x)
    return text if len(text) < 120 else text[:117] + "..."


def _check_state(out: Var, spec: _Out) -> None:
    row = spec.row_type()
    if out.ndim != row.ndim:
        raise TypeError(
            f"scan: the step function returns {out} with {out.ndim} dimension(s) (type {out.type}) "
            f"for {spec.label}, whose initial value makes each step a {row.ndim}-d {row} value"
        )
    if out.dtype != row.dtype:
        raise TypeError(
            f"scan: {spec.label} has initial value of dtype {row.dtype}, but the step function "
            f"returns dtype {out.dtype} for it ({out.type}); cast the initial value or the result "
            f"(T.cast(..., '{row.dtype}')) so that the state keeps one dtype"
        )
    for a, b in zip(out.type.shape, row.shape):
        if a is not None and b is not None and a != b:
            raise ValueError(
                f"scan: {spec.label} has initial shape {row.shape}, but the step function returns "
                f"shape {out.type.shape} for it; a state must keep its shape from step to step"
            )


def _n_steps(n_steps: Any, seqs: list[_Seq], go_backwards: bool) -> tuple[Var, bool, bool]:
    """(n_steps as an int64 scalar, whether sequences must match it exactly, go_backwards)."""
    if n_steps is not None:
        if isinstance(n_steps, (int, np.integer)) and not isinstance(n_steps, bool):
            if n_steps < 0:  # Theano: a negative number of steps runs backwards
                n_steps, go_backwards = -int(n_steps), not go_backwards
        n = as_tensor_variable(n_steps)
        if n.ndim != 0 or not n.dtype.startswith(("int", "uint")):
            raise TypeError(
                f"scan: n_steps must be an integer scalar, got {n_steps!r} of type {n.type}"
            )
        if isinstance(n.op, Constant):
            value = int(n.op.data)
            for seq in seqs:
                length = seq.static_length()
                if length is not None and length < value:
                    raise ValueError(
                        f"scan: {seq.label} gives {length} steps, fewer than n_steps={value}"
                    )
        return T.cast(n, "int64"), False, go_backwards
    if not seqs:
        raise ValueError(
            "scan: give n_steps or at least one sequence, so that scan knows how many steps to run"
        )
    known = [(s, s.static_length()) for s in seqs if s.static_length() is not None]
    for seq, length in known:
        if length < 0:
            raise ValueError(
                f"scan: {seq.label} is too short for its taps: {seq.var.type.shape[0]} rows"
            )
    # Theano runs as many steps as the shortest sequence gives (its scan tutorial's polynomial
    # example pairs a coefficient vector with T.arange(10000)); the longer ones are cut.
    if len(known) == len(seqs):
        return T.constant(np.int64(min(length for _, length in known))), False, go_backwards
    n = T.cast(seqs[0].length(), "int64")
    for seq in seqs[1:]:
        n = T.minimum(n, T.cast(seq.length(), "int64"))
    return n, len(seqs) == 1, go_backwards


def scan(
    fn: Callable,
    sequences=None,
    outputs_info=None,
    non_sequences=None,
    n_steps=None,
    truncate_gradient: int = -1,
    go_backwards: bool = False,
    mode=None,
    name: str | None = None,
    profile: bool = False,
    allow_gc=None,
    strict: bool = False,
    return_list: bool = False,
):
    """Theano's scan: loop `fn` over sequences and recurrent outputs; returns (outputs, updates)."""
    seqs = _sequences(sequences)
    outs_info = _outputs_info(outputs_info)
    nonseqs = [as_tensor_variable(x) for x in _as_list(non_sequences)]
    n, exact, go_backwards = _n_steps(n_steps, seqs, go_backwards)
    # Placeholders: each sequence tap, each output tap, each non-constant non-sequence.
    seq_args, seq_outer = [], []
    for seq in seqs:
        row = TensorType(seq.var.dtype, seq.var.type.shape[1:])
        for tap in seq.taps:
            seq_args.append(inner_placeholder(row, _tap_name(seq.var, tap)))
            outer = seq.sliced(tap)
            seq_outer.append((outer[::-1] if go_backwards else outer, seq.label))
    states = [o for o in outs_info if o.initial is not None]
    state_args = []
    for spec in states:
        row = spec.row_type()
        state_args.append([inner_placeholder(row, _tap_name(spec.initial, t)) for t in spec.taps])
    # As in Theano, the step gets the non-sequences themselves (so it may differentiate with
    # respect to them); they become inner placeholders afterwards. Constants stay constants.
    op_nonseqs = list(dict.fromkeys(x for x in nonseqs if not isinstance(x.op, Constant)))
    op_nonseq_args = [inner_placeholder(x.type, x.name) for x in op_nonseqs]
    args = seq_args + [p for taps in state_args for p in taps] + nonseqs
    outputs, updates, condition = _parse_step_result(fn(*args))
    outputs = [_as_output(o, k) for k, o in enumerate(outputs)]
    if outs_info and len(outputs) != len(outs_info):
        raise ValueError(
            f"scan: the step function returns {len(outputs)} output(s), but outputs_info has "
            f"{len(outs_info)} entries; give one entry per output (None for an output that is not "
            "fed back)"
        )
    if not outs_info:
        outs_info = [_Out(None, [], _label("output", k, None)) for k in range(len(outputs))]
    for out, spec in zip(outputs, outs_info):
        if spec.initial is not None:
            _check_state(out, spec)
    shared_updates = _shared_updates(updates, outputs, condition, args)
    # Free variables of the step: implicit non-sequences (Theano finds them), or shared states.
    roots = outputs + list(shared_updates.values()) + ([condition] if condition is not None else [])
    free = [v for v in inner_leaves(roots, args) if v not in shared_updates]
    if strict and free:
        raise ValueError(
            "scan(strict=True): the step function reads "
            f"{', '.join(v.describe() for v in free)}, which is not passed in non_sequences"
        )
    shared_list = list(shared_updates)
    shared_args = [inner_placeholder(s.type, s.name) for s in shared_list]
    free_args = [inner_placeholder(v.type, v.name) for v in free]
    mapping = dict(zip(shared_list, shared_args))
    mapping.update(zip(free, free_args))
    mapping.update(zip(op_nonseqs, op_nonseq_args))
    state_outs = [out for out, spec in zip(outputs, outs_info) if spec.initial is not None]
    nitsot_outs = [out for out, spec in zip(outputs, outs_info) if spec.initial is None]
    inner_outs = state_outs + list(shared_updates.values()) + nitsot_outs
    inner_outs += [condition] if condition is not None else []
    inner_outs = replace(inner_outs, mapping) if mapping else inner_outs
    inner_ins = seq_args + [p for taps in state_args for p in taps]
    inner_ins += shared_args + op_nonseq_args + free_args
    prefix = f"scan {name!r}: " if name else ""
    names = [prefix + label for _, label in seq_outer]
    names += [prefix + spec.label for spec in states]
    names += [prefix + f"the update of {s.describe()}" for s in shared_list]
    names += [prefix + spec.label for spec in outs_info if spec.initial is None]
    op = Scan(
        inner_inputs=tuple(inner_ins),
        inner_outputs=tuple(inner_outs),
        n_seqs=len(seq_outer),
        state_taps=tuple(tuple(spec.taps) for spec in states) + ((-1,),) * len(shared_list),
        n_nitsot=len(nitsot_outs),
        until=condition is not None,
        names=tuple(names),
        exact_length=exact,
        truncate_gradient=int(truncate_gradient),
    )
    inits = [spec.buffer() for spec in states] + [T.shape_padleft(s) for s in shared_list]
    outer = [n] + [o for o, _ in seq_outer] + inits + op_nonseqs + free
    node = Var(op, tuple(outer))
    results, k_state, k_nitsot = [], 0, len(states) + len(shared_list)
    for spec in outs_info:
        if spec.initial is not None:
            results.append(Var(Proj(k_state), (node,))[spec.lag :])
            k_state += 1
        else:
            results.append(Var(Proj(k_nitsot), (node,)))
            k_nitsot += 1
    new_values = OrderedDict()
    for j, s in enumerate(shared_list):
        new_values[s] = Var(Proj(len(states) + j), (node,))[-1]
    for r in results:
        if name and not r.name:
            r.name = name
    if len(results) == 1 and not return_list:
        return results[0], new_values
    return results, new_values


def _tap_name(var: Var, tap: int) -> str | None:
    if not var.name:
        return None
    return f"{var.name}[t]" if tap == 0 else f"{var.name}[t{tap:+d}]"


def _as_output(out: Any, k: int) -> Var:
    if isinstance(out, Var):
        return out
    try:
        return as_tensor_variable(out)
    except (TypeError, ValueError):
        raise TypeError(
            f"scan: output {k} of the step function must be a symbolic variable, got "
            f"{type(out).__name__} {_show(out)}"
        ) from None


def _shared_updates(
    updates: list, outputs: list, condition: Var | None, args: list
) -> "OrderedDict":
    """{shared variable: its new value after a step}: the step's updates and the default updates
    (random streams' states) of the shared variables the step reads."""
    found: OrderedDict = OrderedDict()
    for target, value in updates:
        if not isinstance(target, SharedVariable):
            raise TypeError(
                f"scan: the step function's updates must have shared variables as keys, got "
                f"{type(target).__name__} {_show(target)}"
            )
        value = value if isinstance(value, Var) else as_tensor_variable(value)
        if value.dtype != target.dtype or value.ndim != target.ndim:
            raise TypeError(
                f"scan: the step's update of {target.describe()} has type {value.type}, but the "
                f"shared variable has type {target.type}"
            )
        found[target] = value
    frontier = outputs + list(found.values()) + ([condition] if condition is not None else [])
    while frontier:
        new = []
        for leaf in inner_leaves(frontier, args):
            update = getattr(leaf, "default_update", None)
            if isinstance(leaf, SharedVariable) and leaf not in found and update is not None:
                found[leaf] = leaf.default_update
                new.append(leaf.default_update)
        frontier = new
    return found


def map(fn: Callable, sequences, non_sequences=None, truncate_gradient: int = -1,
        go_backwards: bool = False, mode=None, name: str | None = None):
    """fn applied to each row of the sequences: scan without recurrent outputs."""
    return scan(fn, sequences=sequences, outputs_info=None, non_sequences=non_sequences,
                truncate_gradient=truncate_gradient, go_backwards=go_backwards, mode=mode,
                name=name)


def reduce(fn: Callable, sequences, outputs_info, non_sequences=None, go_backwards: bool = False,
           mode=None, name: str | None = None):
    """The last value of a scan's outputs: (results, updates)."""
    outputs, updates = scan(fn, sequences=sequences, outputs_info=outputs_info,
                            non_sequences=non_sequences, go_backwards=go_backwards, mode=mode,
                            name=name, return_list=True)
    last = [o[-1] for o in outputs]
    return (last[0] if len(last) == 1 else last), updates


def foldl(fn: Callable, sequences, outputs_info, non_sequences=None, mode=None, name=None):
    """reduce from the first row to the last."""
    return reduce(fn, sequences, outputs_info, non_sequences, False, mode, name)


def foldr(fn: Callable, sequences, outputs_info, non_sequences=None, mode=None, name=None):
    """reduce from the last row to the first."""
    return reduce(fn, sequences, outputs_info, non_sequences, True, mode, name)

