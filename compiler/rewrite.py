"""The rewrite engine: rules are (name, pattern, function), applied bottom-up to a fixed point."""

from __future__ import annotations

import inspect
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import numpy as np

from ..graph.var import Constant, Var, inherited_trace, toposort


class Pat:
    """A pattern over Vars: an op class (or tuple of classes) with input patterns, a named variable, or a constant.

    `Pat(Mul, x, Pat.const(1.0))` matches `a * 1` and binds x to `a`. Keyword arguments match op fields:
    `Pat(Sum, x, axis=(0,))`. A pattern variable used twice must bind the same Var both times.
    """

    __slots__ = ("op_type", "inputs", "name", "fields", "value", "kind")

    def __init__(self, op_type=None, *inputs: "Pat", name: str | None = None, **fields: Any) -> None:
        self.op_type, self.inputs, self.name, self.fields = op_type, inputs, name, fields
        self.kind, self.value = "op", None

    @staticmethod
    def var(name: str) -> "Pat":
        """Matches any Var and binds it to `name`."""
        pat = Pat(None, name=name)
        pat.kind = "var"
        return pat

    @staticmethod
    def const(value=None, name: str | None = None) -> "Pat":
        """Matches a constant whose elements all equal `value` (any constant when value is None)."""
        pat = Pat(None, name=name)
        pat.kind, pat.value = "const", value
        return pat

    def match(self, var: Var, bound: dict, opaque=frozenset()) -> bool:
        """True when `var` matches, filling `bound`; vars in `opaque` match only pattern variables."""
        if self.kind == "var":
            return self._bind(var, bound)
        if var in opaque:
            return False
        if self.kind == "const":
            if not isinstance(var.op, Constant):
                return False
            if self.value is not None:
                data = var.op.data
                if data.size == 0 or not np.all(data == self.value):
                    return False
            return self._bind(var, bound)
        if not isinstance(var.op, self.op_type):
            return False
        for key, wanted in self.fields.items():
            if getattr(var.op, key) != wanted:
                return False
        if self.inputs:
            if len(self.inputs) != len(var.inputs):
                return False
            for pat, x in zip(self.inputs, var.inputs):
                if not pat.match(x, bound, opaque):
                    return False
        return self._bind(var, bound)

    def _bind(self, var: Var, bound: dict) -> bool:
        if self.name is None:
            return True
        if self.name in bound:
            return bound[self.name] is var
        bound[self.name] = var
        return True

    def op_types(self) -> tuple:
        if self.kind != "op":
            return ()
        return self.op_type if isinstance(self.op_type, tuple) else (self.op_type,)


@dataclass(frozen=True)
class Rule:
    """A named rewrite: when `pattern` matches a node, `fn(**bindings)` returns its replacement or None."""

    name: str
    pattern: Pat
    fn: Callable
    params: tuple | None = None  # the bound names fn takes; None: all of them


def rule(name: str, pattern: Pat, fn: Callable) -> Rule:
    """Make a Rule; `fn` takes the bound names it wants, and `node` to see the matched Var itself."""
    parameters = inspect.signature(fn).parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values()):
        return Rule(name, pattern, fn, None)
    return Rule(name, pattern, fn, tuple(parameters))


class RewriteCycleError(RuntimeError):
    """The rules kept rewriting past the step limit."""


@dataclass
class PassReport:
    """What one pass did: which rules fired how often, and how long it took."""

    name: str
    fired: Counter = field(default_factory=Counter)
    seconds: float = 0.0
    nodes_before: int = 0
    nodes_after: int = 0


def _index(rules: Sequence[Rule]) -> dict:
    by_type: dict[type, list[Rule]] = defaultdict(list)
    generic: list[Rule] = []
    for r in rules:
        types = r.pattern.op_types()
        if not types:
            generic.append(r)
        for t in types:
            by_type[t].append(r)
    return by_type, generic


def _rules_for(op_type: type, by_type: dict, generic: list, cache: dict) -> list:
    found = cache.get(op_type)
    if found is None:
        found = [r for t in op_type.__mro__ for r in by_type.get(t, ())] + generic
        cache[op_type] = found
    return found


def _check_replacement(rule_: Rule, old: Var, new: Var) -> None:
    if not isinstance(new, Var):
        raise TypeError(f"rewrite rule {rule_.name!r} returned {type(new).__name__}, expected a Var or None")
    if new.dtype != old.dtype or new.ndim != old.ndim:
        raise TypeError(
            f"rewrite rule {rule_.name!r} changed the type of a node from {old.type} to {new.type}; "
            "a rewrite must keep the dtype and the number of dimensions"
        )


class _Settled:
    """Stops a toposort at nodes already in their final form."""

    __slots__ = ("done", "opaque")

    def __init__(self, done: dict, opaque=frozenset()) -> None:
        self.done, self.opaque = done, opaque

    def __contains__(self, var: Var) -> bool:
        return id(var) in self.done or var in self.opaque


def rewrite(outputs: Sequence[Var], rules: Sequence[Rule], name: str = "rewrite", max_steps: int | None = None,
            report: list | None = None, opaque=frozenset()) -> list[Var]:
    """Apply `rules` bottom-up until none fires; raises RewriteCycleError past `max_steps` rule applications.

    Vars in `opaque` are kept as they are and never looked into (grad keeps its `wrt` variables so).
    """
    tic = time.perf_counter()
    by_type, generic = _index(rules)
    cache: dict = {}
    order = toposort(outputs, stop=opaque)
    limit = max_steps if max_steps is not None else 50 * len(order) + 1000
    fired: Counter = Counter()
    steps = 0
    done: dict[int, Var] = {}  # id of a node seen -> its final form
    keep: list[Var] = []  # holds every node whose id is a key of `done`, so no id is reused

    def settle(var: Var) -> Var:
        """Rewrite one node whose inputs are final, until no rule applies; returns the final Var."""
        nonlocal steps
        while True:
            for r in _rules_for(type(var.op), by_type, generic, cache):
                bound: dict = {}
                if not r.pattern.match(var, bound, opaque):
                    continue
                bound["node"] = var
                if r.params is not None:
                    bound = {k: bound[k] for k in r.params if k in bound}
                with inherited_trace(var.trace):
                    new = r.fn(**bound)
                    if new is None or new is var:
                        continue
                    _check_replacement(r, var, new)
                    steps += 1
                    fired[r.name] += 1
                    if steps > limit:
                        top = ", ".join(f"{n} ({c} times)" for n, c in fired.most_common(4))
                        raise RewriteCycleError(
                            f"pass {name!r} did not reach a fixed point after {limit} rewrites; the rules that "
                            f"fired most: {top}. Some rules undo each other; exclude one with "
                            "THEANINE_FLAGS=optimizer_excluding=NAME"
                        )
                    var = finish_inputs(new)
                break
            else:
                return var

    def finish_inputs(var: Var) -> Var:
        """Bring the new nodes below a replacement to their final form; returns it rebuilt on them."""
        if id(var) in done:
            return done[id(var)]
        if not var.inputs:
            return var
        for node in toposort(var.inputs, stop=_Settled(done, opaque)):
            if id(node) in done:
                continue
            if not node.inputs or node in opaque:
                done[id(node)] = node
                keep.append(node)
                continue
            result = settle(rebuild(node))
            keep.extend((node, result))
            done[id(node)] = done[id(result)] = result
        return rebuild(var)

    def rebuild(var: Var) -> Var:
        inputs = tuple(done.get(id(x), x) for x in var.inputs)
        if all(a is b for a, b in zip(inputs, var.inputs)):
            return var
        with inherited_trace(var.trace):
            return Var(var.op, inputs, var.name)

    for var in order:
        if not var.inputs or var in opaque:
            done[id(var)] = var
            continue
        rebuilt = rebuild(var)
        with inherited_trace(var.trace):
            result = settle(rebuilt)
        keep.extend((rebuilt, result))
        done[id(var)] = done[id(result)] = result
    new_outputs = [done[id(v)] for v in outputs]
    for old, new in zip(outputs, new_outputs):
        if new is not old and old.name and not new.name:
            new.name = old.name
    if report is not None:
        report.append(PassReport(name, fired, time.perf_counter() - tic, len(order), len(toposort(new_outputs))))
    return new_outputs
