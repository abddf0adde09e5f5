"""theanine.function: the compiled Function with Theano's call semantics (specs: function_spec)."""

from __future__ import annotations

import inspect
import time
from typing import Any

import numpy as np

from ..graph.shared import SharedVariable, filter_value, peek_host
from ..graph.var import Shared, Var, toposort
from ..graph.var import input_var, replace
from ..kernels.backends import get_backend
from . import pipeline
from .function_spec import (
    _MODES,
    In,
    MissingInputError,
    Out,
    UnusedInputError,
    build_spec,
    input_name,
    with_value,
)


class FunctionGraph:
    """Theano's view of the compiled graph: `inputs` (shared ones last), `outputs`, `toposort()`."""

    def __init__(self, inputs: list[Var], outputs: list[Var]) -> None:
        order = toposort(outputs, stop=set(inputs))
        given = set(inputs)
        self.outputs = list(outputs)
        shared = [v for v in order if isinstance(v.op, Shared) and v not in given]
        self.inputs = list(inputs) + shared
        self._nodes = [v for v in order if v.inputs and v not in given]
        self.variables = set(order)

    def toposort(self) -> list:
        """The Apply nodes, inputs before users."""
        return [v.owner for v in self._nodes]

    @property
    def apply_nodes(self) -> set:
        """The Apply nodes, as a set."""
        return set(self.toposort())

    def __repr__(self) -> str:
        return f"FunctionGraph({', '.join(map(str, self.outputs))})"


class FunctionMaker:
    """What `Function.maker` shows: the graph, the In and Out specs and the mode."""

    def __init__(self, fgraph: FunctionGraph, inputs: list, outputs: list, mode: str) -> None:
        self.fgraph, self.inputs, self.outputs, self.mode = fgraph, inputs, outputs, mode


class ProfileStats:
    """Call counts and times per call and per node (Theano's `Function.profile`)."""

    def __init__(self, name: str | None, nodes: list[Var]) -> None:
        self.name, self.nodes = name, nodes
        self.fct_callcount, self.fct_call_time = 0, 0.0
        self.node_times = [0.0] * len(nodes)

    def op_times(self) -> dict:
        """Seconds spent per op class."""
        out: dict[str, float] = {}
        for var, seconds in zip(self.nodes, self.node_times):
            out[type(var.op).__name__] = out.get(type(var.op).__name__, 0.0) + seconds
        return out

    def summary(self, file=None) -> None:
        """Print the totals and the time per op class, largest first."""
        lines = [
            f"Function profile: {self.name or '<unnamed>'}",
            f"  calls: {self.fct_callcount}, total time: {self.fct_call_time:.6f} s",
        ]
        for op, seconds in sorted(self.op_times().items(), key=lambda kv: -kv[1]):
            lines.append(f"  {seconds:12.6f} s  {op}")
        print("\n".join(lines), file=file)


class Function:
    """A compiled function: call it by position or input name; returns arrays, applies updates."""

    def __init__(self, spec: dict) -> None:
        self._spec = spec
        self.name = spec["name"]
        self.mode = spec["mode"]
        ins: list[In] = spec["inputs"]
        outputs, updates = spec["outputs"], spec["updates"]
        self._in_vars = [i.variable for i in ins]
        stateful = [k for k, i in enumerate(ins) if i.update is not None]
        exprs = [v for v, _ in outputs] + [u for _, u in updates]
        exprs += [ins[k].update for k in stateful]
        backend_name, nan_guard = _MODES[self.mode]
        backend = get_backend(backend_name)
        # An intermediate variable given as an input cuts the graph: it becomes a plain leaf, so
        # no rewrite or fusion looks through it.
        cut = {v: input_var(v.type, v.name) for v in self._in_vars if v.inputs}
        leaves = [cut.get(v, v) for v in self._in_vars]
        exprs = replace(exprs, cut) if cut else exprs
        self.rewrite_report: list = []
        exprs = pipeline.optimize(exprs, backend, report=self.rewrite_report)
        # Which output updates which shared variable: a backend may write the new value in place.
        updated = [None] * len(outputs) + [s for s, _ in updates] + [None] * len(stateful)
        if "updated" in inspect.signature(backend.compile).parameters:
            self._plan = backend.compile(leaves, exprs, nan_guard, updated=updated)
        else:
            self._plan = backend.compile(leaves, exprs, nan_guard)
        fgraph = FunctionGraph(self._in_vars, exprs)
        self.maker = FunctionMaker(fgraph, ins, [Out(v, b) for v, b in outputs], self.mode)
        # A device plan (modes cuda, cuda-emulator) keeps shared values and, if asked, the outputs
        # on its device: its results may be DeviceArrays.
        self._device_plan = bool(getattr(self._plan, "resident", False))
        if spec.get("return_device"):
            if not self._device_plan:
                raise ValueError(
                    f"{self._label()}: return_device=True needs mode 'cuda' or 'cuda-emulator', "
                    f"got mode {self.mode!r}"
                )
            self._plan.keep_on_device[: len(outputs)] = [True] * len(outputs)
        self.trust_input = False
        self.profile = ProfileStats(self.name, self._plan.nodes()) if spec["profile"] else None
        self._n_out = len(outputs)
        self._borrow = [b for _, b in outputs]
        self._kind, self._keys = spec["kind"], spec["keys"]
        # Per input: (type, message prefix, strict, allow_downcast), so a call builds no strings.
        allow = spec["allow_input_downcast"]
        self._checks = [
            (
                i.variable.type,
                f"{self._label()}, input {input_name(i, k)} (position {k})",
                i.strict,
                allow if i.allow_downcast is None else i.allow_downcast,
                self._device_plan,  # keep_device: a DeviceArray input is used without a copy
            )
            for k, i in enumerate(ins)
        ]
        # Defaults live in boxes so that `f[name] = v` and In(update=) can change them.
        self._defaults = [
            None if i.value is None else _Box(self._filter(k, i.value)) for k, i in enumerate(ins)
        ]
        self._explicit = [k for k, i in enumerate(ins) if not i.implicit]
        self._names: dict[str, int | None] = {}
        for k in self._explicit:
            name = ins[k].name
            if name is not None:
                self._names[name] = None if name in self._names else k  # None: ambiguous
        self._targets = [(s.container, s.type, s) for s, _ in updates]
        for k in stateful:
            self._targets.append((self._defaults[k], ins[k].variable.type, ins[k].variable))
        updated = {id(s.container) for s, _ in updates}
        self._other_shared = [c for _, c in self._plan.shared if id(c) not in updated]
        self._constant_roots = {id(_root(c)) for c in self._plan.constants}
        self._fast = len(self._explicit) == len(ins)

    # -- calling ------------------------------------------------------------------------------
    def __call__(self, *args: Any, **kwargs: Any):
        profile = self.profile
        start = time.perf_counter() if profile is not None else 0.0
        if self.trust_input and not kwargs and len(args) == len(self._in_vars):
            values = list(args)
        elif self._fast and not kwargs and len(args) == len(self._checks):
            values = [filter_value(a, *check) for a, check in zip(args, self._checks)]
        else:
            values = self._bind(args, kwargs)
        results = self._plan.run(values, None if profile is None else profile.node_times)
        outs, news = results[: self._n_out], results[self._n_out :]
        # Everything is computed; check the updates, then apply them all together.
        for (_, type_, target), value in zip(self._targets, news):
            if not type_.accepts_shape(value.shape):
                raise ValueError(
                    f"{self._label()}: the update of {target.describe()} computed shape "
                    f"{value.shape}, but its type is {type_}; no shared variable was changed"
                )
        self._unalias(values, outs, news)
        for (box, _, _), value in zip(self._targets, news):
            box.value = value
        if profile is not None:
            profile.fct_callcount += 1
            profile.fct_call_time += time.perf_counter() - start
        if self._kind == "single":
            return outs[0]
        if self._kind == "dict":
            return dict(zip(self._keys, outs))
        return outs

    def _bind(self, args: tuple, kwargs: dict) -> list:
        """Match positional and keyword arguments to inputs, fill defaults, filter each value."""
        n_inputs = len(self._checks)
        if len(args) > len(self._explicit):
            raise TypeError(
                f"{self._label()} takes {len(self._explicit)} argument(s) ({self._signature()}), "
                f"got {len(args)}"
            )
        values: list = [None] * n_inputs
        given = [False] * n_inputs
        for k, arg in zip(self._explicit, args):
            values[k], given[k] = arg, True
        for key, arg in kwargs.items():
            k = self._names.get(key, -1)
            if k is None:
                raise TypeError(
                    f"{self._label()}: several inputs are named {key!r}; pass them by position"
                )
            if k < 0:
                raise TypeError(
                    f"{self._label()} got an unexpected keyword argument {key!r}; its inputs are "
                    f"({self._signature()})"
                )
            if given[k]:
                raise TypeError(f"{self._label()} got multiple values for input {key!r}")
            values[k], given[k] = arg, True
        missing = []
        for k in range(n_inputs):
            if given[k]:
                values[k] = self._filter(k, values[k])
            elif self._defaults[k] is not None:
                values[k] = self._defaults[k].value
            else:
                missing.append(input_name(self._spec["inputs"][k], k))
        if missing:
            raise TypeError(
                f"{self._label()} is missing a value for input(s) {', '.join(missing)}; "
                f"its inputs are ({self._signature()})"
            )
        return values

    def _filter(self, k: int, value: Any) -> np.ndarray:
        return filter_value(value, *self._checks[k])

    def _unalias(self, inputs: list, outs: list, news: list) -> None:
        """Copy results sharing memory with an input, a constant, a shared value or each other."""
        taken = {id(_root(v)) for v in inputs} | self._constant_roots
        if self._device_plan:  # read the host slots: `value` would copy device values down
            taken.update(id(_root(peek_host(c))) for c in self._other_shared)
            taken.update(id(c.device_value) for c in self._other_shared)
            old = {id(_root(peek_host(box))) for box, _, _ in self._targets}
            old.update(id(getattr(box, "device_value", None)) for box, _, _ in self._targets)
        else:
            taken.update(id(_root(c.value)) for c in self._other_shared)
            old = {id(_root(box.value)) for box, _, _ in self._targets}
        for k, v in enumerate(outs):
            root = id(_root(v))
            if (root in taken or root in old) and not self._borrow[k]:
                v = outs[k] = v.copy()
                root = id(v)
            taken.add(root)
        # An update may take the old value of a variable that is being replaced too (a swap).
        for k, v in enumerate(news):
            root = id(_root(v))
            if root in taken:
                v = news[k] = v.copy()
                root = id(v)
            taken.add(root)

    def kernel_sources(self) -> list[tuple[str, str]]:
        """(node, generated source) for every kernel this function runs; [] for mode py."""
        sources = getattr(self._plan, "kernel_sources", None)
        return [] if sources is None else [(f"{var.op} {var.where()}", text) for var, text in sources()]

    def _label(self) -> str:
        return f"function {self.name!r}" if self.name else "the compiled function"

    def _signature(self) -> str:
        ins = self._spec["inputs"]
        return ", ".join(input_name(ins[k], k) for k in self._explicit)

    # -- Theano's extras ----------------------------------------------------------------------
    def __getitem__(self, name: str) -> np.ndarray:
        """The default value of the input called `name`."""
        box = self._defaults[self._index(name)]
        if box is None:
            raise KeyError(f"input {name!r} of {self._label()} has no default value")
        return box.value

    def __setitem__(self, name: str, value: Any) -> None:
        """Set the default value of the input called `name`."""
        k = self._index(name)
        if self._defaults[k] is None:
            self._defaults[k] = _Box(self._filter(k, value))
        else:  # the box may also be an update target (In(update=)): keep it
            self._defaults[k].value = self._filter(k, value)

    def _index(self, name: str) -> int:
        for k, i in enumerate(self._spec["inputs"]):
            if i.name == name or i.variable is name:
                return k
        raise KeyError(f"{self._label()} has no input named {name!r}")

    def free(self) -> None:
        """Release intermediate storage (a no-op: the py backend keeps none between calls)."""

    def copy(self) -> "Function":
        """A new Function over the same graph and shared variables, with the current defaults."""
        return _load_function(self._current_spec(), self.trust_input)

    def get_shared(self) -> list:
        """The shared variables this function reads or updates."""
        found = [v for v in self.maker.fgraph.inputs if isinstance(v, SharedVariable)]
        return found + [s for s, _ in self._spec["updates"] if s not in set(found)]

    def _current_spec(self) -> dict:
        spec = dict(self._spec)
        boxes = self._defaults
        spec["inputs"] = [with_value(i, b and b.value) for i, b in zip(spec["inputs"], boxes)]
        return spec

    def __reduce__(self):
        # The symbolic spec travels; the backend plan is rebuilt on load.
        return (_load_function, (self._current_spec(), self.trust_input))

    def __repr__(self) -> str:
        return f"<theanine.Function {self.name or ''}({self._signature()})>"


class _Box:
    """A value holder shaped like a shared variable's container."""

    __slots__ = ("value",)

    def __init__(self, value: Any) -> None:
        self.value = value


def _root(a: Any) -> Any:
    """The object that owns a numpy array's memory."""
    base = getattr(a, "base", None)
    while base is not None:
        a, base = base, getattr(base, "base", None)
    return a


def _load_function(spec: dict, trust_input: bool) -> Function:
    f = Function(spec)
    f.trust_input = trust_input
    return f


def function(
    inputs,
    outputs=None,
    updates=None,
    givens=None,
    mode=None,
    name: str | None = None,
    allow_input_downcast: bool | None = None,
    on_unused_input: str | None = None,
    no_default_updates: Any = False,
    profile: bool | None = None,
    accept_inplace: bool = False,
    rebuild_strict: bool = True,
    return_device: bool = False,
) -> Function:
    """Compile `outputs` and `updates` of shared variables as a function of `inputs` (Theano's).

    In modes 'cuda' and 'cuda-emulator' shared variables live on the device, inputs may be numpy
    arrays or DeviceArrays, and outputs come back as numpy arrays; `return_device=True` returns
    them as DeviceArrays instead (no copy to the host; `.get()` copies one down).
    """
    spec = build_spec(
        inputs, outputs, updates, givens, mode, name, allow_input_downcast, on_unused_input,
        no_default_updates, profile, rebuild_strict,
    )
    if return_device:
        spec["return_device"] = True
    return Function(spec)


__all__ = ["function", "Function", "In", "Out", "UnusedInputError", "MissingInputError"]
