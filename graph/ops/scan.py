"""Scan: a loop whose body is an inner graph over placeholder inputs (Theano's scan), and InnerPlan.

The outer inputs of a Scan node are (n_steps, *sequences, *initial buffers, *non-sequences). Step k
reads row k of every sequence, the rows of each state's buffer at its taps, and every non-sequence;
it writes each state's next value and each per-step ("nit-sot") output. A state with taps
(-2, -1) has a buffer whose first 2 rows are its initial values: the node's output for that state
is the whole buffer (2 + n_steps rows), and `scan()` shows the user the rows after the initial ones.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from ..evaluate import leaf_value, run_node
from ..type import TensorType, TupleType
from ..var import Constant, Input, Op, Shared, Var, input_var, toposort

__all__ = ["Scan", "InnerPlan", "inner_placeholder", "inner_leaves"]


def inner_placeholder(type_: TensorType, name: str | None = None) -> Var:
    """A fresh inner input of an inner graph (a scan step's argument, an ifelse branch's input)."""
    return input_var(type_, name)


def inner_leaves(outputs: Sequence[Var], placeholders: Sequence[Var]) -> list[Var]:
    """The free variables of an inner graph: inputs and shared variables not in `placeholders`."""
    own = set(placeholders)
    return [
        v for v in toposort(outputs, stop=own)
        if not v.inputs and v not in own and isinstance(v.op, (Input, Shared))
    ]


class InnerPlan:
    """An inner graph compiled once into steps over slots: placeholders first, constants preset."""

    __slots__ = ("n_inputs", "template", "steps", "shared", "output_slots")

    def __init__(self, inputs: Sequence[Var], outputs: Sequence[Var]) -> None:
        slot_of: dict[int, int] = {id(v): k for k, v in enumerate(inputs)}
        self.n_inputs = len(inputs)
        template: list = [None] * len(inputs)
        steps: list[tuple] = []
        self.shared: list[tuple[int, object]] = []
        for var in toposort(outputs, stop=set(inputs)):
            if id(var) in slot_of:
                continue
            slot_of[id(var)] = slot = len(template)
            template.append(None)
            if var.inputs:
                steps.append((var, tuple(slot_of[id(x)] for x in var.inputs), slot))
            elif isinstance(var.op, Shared):
                self.shared.append((slot, var.container))
            else:
                template[slot] = leaf_value(var, {})  # a constant; a stray input raises here
        self.template = template
        self.steps = steps
        self.output_slots = tuple(slot_of[id(v)] for v in outputs)

    def run(self, values: Sequence[np.ndarray]) -> list[np.ndarray]:
        """The inner outputs for the placeholder `values`."""
        slots = self.template.copy()
        slots[: self.n_inputs] = values
        for slot, container in self.shared:
            slots[slot] = container.value
        for var, args, slot in self.steps:
            slots[slot] = run_node(var, [slots[i] for i in args])
        return [slots[i] for i in self.output_slots]


def _plan(op: Op) -> InnerPlan:
    """The op's inner plan, built on first use and cached on the (immutable) op instance."""
    plan = op.__dict__.get("_plan")
    if plan is None:
        plan = InnerPlan(op.inner_inputs, op.inner_outputs)
        object.__setattr__(op, "_plan", plan)
    return plan


@dataclass(frozen=True)
class Scan(Op):
    """A loop of `n_steps` steps whose body is the inner graph `inner_outputs(inner_inputs)`.

    inner_inputs: one placeholder per sequence, then one per tap of each state (in `state_taps`
    order), then one per non-sequence. inner_outputs: each state's next value, each nit-sot
    output, then the stopping condition when `until` is set. `names` name the sequences, the
    states and the nit-sot outputs in messages. `exact_length`: every sequence must have exactly
    n_steps rows (n_steps was taken from them). `keep[i]` > 0: state i keeps only its last keep[i]
    rows (a memory-saving rewrite; 0 keeps the whole buffer).
    """

    inner_inputs: tuple
    inner_outputs: tuple
    n_seqs: int
    state_taps: tuple
    n_nitsot: int
    until: bool = False
    names: tuple = ()
    exact_length: bool = False
    truncate_gradient: int = -1
    keep: tuple = ()

    # -- structure -------------------------------------------------------------------------------
    @property
    def n_states(self) -> int:
        """The number of recurrent states (outputs fed back through taps)."""
        return len(self.state_taps)

    def lag(self, i: int) -> int:
        """How many initial rows state i needs: the furthest its taps reach back."""
        return -min(self.state_taps[i])

    def name_of(self, kind: str, k: int) -> str:
        """How messages name sequence, output ("output": a state) or nitsot number k."""
        offset = {"sequence": 0, "output": self.n_seqs, "nitsot": self.n_seqs + self.n_states}[kind]
        if offset + k < len(self.names) and self.names[offset + k]:
            return self.names[offset + k]
        if kind == "sequence":
            return f"sequence {k}"
        return f"output {k if kind == 'output' else self.n_states + k}"

    def tap_slices(self) -> list[slice]:
        """For each state, the range of inner_inputs holding its taps."""
        start, out = self.n_seqs, []
        for taps in self.state_taps:
            out.append(slice(start, start + len(taps)))
            start += len(taps)
        return out

    def split_inputs(self, inputs: Sequence) -> tuple:
        """(n_steps, sequences, initial buffers, non-sequences) of an outer input list."""
        s, m = self.n_seqs, self.n_states
        seqs, inits = list(inputs[1 : 1 + s]), list(inputs[1 + s : 1 + s + m])
        return inputs[0], seqs, inits, list(inputs[1 + s + m :])

    @property
    def n_nonseqs(self) -> int:
        """The number of non-sequence inputs (the same value at every step)."""
        return len(self.inner_inputs) - self.n_seqs - sum(len(t) for t in self.state_taps)

    # -- types -----------------------------------------------------------------------------------
    def make_type(self, inputs):
        n_in = 1 + self.n_seqs + self.n_states + self.n_nonseqs
        if len(inputs) != n_in:
            raise TypeError(f"Scan takes {n_in} inputs, got {len(inputs)}")
        n_steps, seqs, inits, nonseqs = self.split_inputs(inputs)
        if n_steps.ndim != 0 or not n_steps.dtype.startswith(("int", "uint")):
            raise TypeError(
                f"scan: n_steps must be an integer scalar, got {n_steps} of type {n_steps.type}"
            )
        inner = list(self.inner_inputs)
        for k, seq in enumerate(seqs):
            self._check_slot(inner[k], seq.type.shape[1:], seq, self.name_of("sequence", k), 1)
        for i, (init, taps) in enumerate(zip(inits, self.tap_slices())):
            for p in inner[taps]:
                self._check_slot(p, init.type.shape[1:], init, self.name_of("output", i), 1)
        for p, x in zip(inner[len(inner) - self.n_nonseqs :], nonseqs):
            self._check_slot(p, x.type.shape, x, f"non-sequence {x.describe()}", 0)
        steps = _static_steps(n_steps) if not self.until else None
        types = []
        for i, init in enumerate(inits):
            out = self.inner_outputs[i]
            if out.dtype != init.dtype:
                raise TypeError(
                    f"scan: {self.name_of('output', i)} has initial value of dtype {init.dtype}, "
                    f"but the step function returns dtype {out.dtype} for it; cast one of them "
                    f"(T.cast(..., '{init.dtype}'))"
                )
            keep = self.keep[i] if i < len(self.keep) else 0
            rows = keep if keep else (None if steps is None else self.lag(i) + steps)
            types.append(TensorType(init.dtype, (rows,) + init.type.shape[1:]))
        for m in range(self.n_nitsot):
            out = self.inner_outputs[self.n_states + m]
            types.append(TensorType(out.dtype, (steps,) + out.type.shape))
        if self.until:
            cond = self.inner_outputs[-1]
            if cond.ndim != 0:
                raise TypeError(
                    f"scan: the until condition must be a scalar, got {cond} of type {cond.type}"
                )
        return TupleType(types)

    @staticmethod
    def _check_slot(placeholder: Var, shape: tuple, outer: Var, what: str, ndim_extra: int) -> None:
        if outer.ndim < ndim_extra:
            raise TypeError(
                f"scan: {what} must have a leading time axis, got {outer} of type {outer.type}"
            )
        if placeholder.dtype != outer.dtype or placeholder.ndim != len(shape):
            raise TypeError(
                f"scan: {what} has type {outer.type}, which does not fit the step's input "
                f"{placeholder.type}"
            )

    # -- the reference loop ------------------------------------------------------------------------
    def perform(self, n_steps, *values):
        return self.run_loop(_plan(self), n_steps, *values)

    def run_loop(self, plan, n_steps, *values) -> tuple:
        """The loop; `plan.run(values) -> outputs` runs the body (a backend's compiled body)."""
        steps, seqs, buffers, lags, nonseqs = self.prepare(n_steps, values)
        nitsots: list = [None] * self.n_nitsot
        done = steps
        # per state, hoisted out of the step loop: (buffer, its length, row shape, lag, tap offsets)
        states = [
            (buffer, len(buffer), buffer.shape[1:], lag, [lag + d for d in taps])
            for buffer, lag, taps in zip(buffers, lags, self.state_taps)
        ]
        for k in range(steps):
            args = [seq[k] for seq in seqs]
            for buffer, size, _, _, offsets in states:
                args.extend([buffer[(k + o) % size] for o in offsets])
            args.extend(nonseqs)
            outs = plan.run(args)
            for i, (buffer, size, row, lag, _) in enumerate(states):
                out = outs[i]
                if out.shape != row:
                    raise ValueError(
                        f"scan: {self.name_of('output', i)} changed shape between steps: its "
                        f"initial value has shape {row}, step {k} returned shape {out.shape}"
                    )
                buffer[(k + lag) % size] = out
            for m in range(self.n_nitsot):
                out = outs[self.n_states + m]
                if nitsots[m] is None:
                    nitsots[m] = np.empty((steps,) + out.shape, dtype=out.dtype)
                elif out.shape != nitsots[m].shape[1:]:
                    raise ValueError(
                        f"scan: {self.name_of('nitsot', m)} changed shape between steps: step 0 "
                        f"returned shape {nitsots[m].shape[1:]}, step {k} returned {out.shape}"
                    )
                nitsots[m][k] = out
            if self.until and bool(outs[-1]):
                done = k + 1
                break
        return self.results(buffers, lags, nitsots, done)

    def prepare(self, n_steps, values: Sequence) -> tuple:
        """(steps, sequences, state buffers holding their initial rows, lags, non-sequences) for
        a run on the outer `values` (after n_steps), checked; a backend's loop fills the buffers."""
        steps = int(n_steps)
        if steps < 0:
            raise ValueError(f"scan: n_steps must be >= 0, got {steps}")
        _, seqs, inits, nonseqs = self.split_inputs((None,) + values)
        self._check_sequences(seqs, steps)
        inner = self.inner_inputs
        buffers, lags = [], []
        for i, (init, taps) in enumerate(zip(inits, self.tap_slices())):
            lag = self.lag(i)
            if init.shape[0] < lag:
                raise ValueError(
                    f"scan: {self.name_of('output', i)} has taps {list(self.state_taps[i])}, "
                    f"which reach {lag} steps before the start, but its initial value has "
                    f"{init.shape[0]} row(s)"
                )
            name = self.name_of("output", i)
            self._check_rows(inner[taps.start], init.shape[1:], name, "initial value")
            keep = self.keep[i] if i < len(self.keep) else 0
            # a kept-last-rows state lives in a ring: lag + 1 rows suffice, as a step reads its
            # taps before it writes the next row (rows are indexed modulo the buffer's length)
            size = max(lag + 1, keep) if keep else lag + steps
            buffer = np.empty((size,) + init.shape[1:], dtype=init.dtype)
            buffer[:lag] = init[:lag]
            buffers.append(buffer)
            lags.append(lag)
        for k, seq in enumerate(seqs):
            self._check_rows(inner[k], seq.shape[1:], self.name_of("sequence", k), "rows")
        return steps, seqs, buffers, lags, nonseqs

    def results(self, buffers: list, lags: list, nitsots: list, done: int) -> tuple:
        """The node's outputs once `done` steps ran: each state's rows (its initial ones first, or
        its last `keep` rows), each nit-sot output's first `done` rows (None: no step ran)."""
        results = []
        for i, (buffer, lag) in enumerate(zip(buffers, lags)):
            keep = self.keep[i] if i < len(self.keep) else 0
            if keep:
                rows = np.arange(lag + done - keep, lag + done) % len(buffer)
                results.append(buffer[rows])
            else:
                results.append(buffer[: lag + done])
        for m in range(self.n_nitsot):
            out = nitsots[m]
            if out is None:  # no step ran: the rows' shape comes from the static type
                type_ = self.inner_outputs[self.n_states + m].type
                out = np.empty((0,) + tuple(d or 0 for d in type_.shape), dtype=type_.dtype)
            results.append(out[:done])
        return tuple(results)

    def _check_sequences(self, seqs: list, steps: int) -> None:
        for k, seq in enumerate(seqs):
            n = seq.shape[0]
            if self.exact_length and n != steps:
                first = self.name_of("sequence", 0)
                raise ValueError(
                    f"scan: the sequences have different lengths: {self.name_of('sequence', k)} "
                    f"gives {n} steps, {first} gives {steps}; slice them to the same length or "
                    "pass n_steps"
                )
            if n < steps:
                raise ValueError(
                    f"scan: {self.name_of('sequence', k)} gives {n} steps, fewer than "
                    f"n_steps={steps}"
                )

    @staticmethod
    def _check_rows(placeholder: Var, shape: tuple, what: str, part: str) -> None:
        if not placeholder.type.accepts_shape(shape):
            raise ValueError(
                f"scan: the {part} of {what} have shape {shape}, but the step function was built "
                f"for {placeholder.type}"
            )

    def pullback(self, inputs, output, g):
        raise NotImplementedError("the gradient of Scan is built by theanine.compiler.scan_grad")

    def __getstate__(self):
        state = dict(self.__dict__)
        state.pop("_plan", None)
        return state

    def __str__(self) -> str:
        kinds = f"seqs={self.n_seqs}, states={self.n_states}, nitsot={self.n_nitsot}"
        return f"Scan{{{kinds}{', until' if self.until else ''}}}"


def _static_steps(n_steps: Var) -> int | None:
    if isinstance(n_steps.op, Constant):
        return int(n_steps.op.data)
    return None
