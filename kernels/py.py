"""The py backend (mode 'py'): run each node's numpy `perform` over a precomputed plan of slots."""

from __future__ import annotations

import time
from typing import Sequence

import numpy as np

from .slots import last_uses, lay_out
from ..graph.evaluate import EvaluationError, check_output, node_error, run_node
from ..graph.ops.blas import Gemm, Ger
from ..graph.ops.composite import Composite
from ..graph.ops.linalg import Dot
from ..graph.ops.elemwise import Elemwise, check_runtime_broadcast
from ..graph.type import TensorType
from ..graph.var import Var


REUSE_BUFFERS = True  # elementwise results written over dead intermediates (bench/memory_step.py turns it off)


class PyPlan:
    """A graph as steps over a list of slots: inputs first, then constants, shared values, nodes.

    Each step is (var, perform-argument slots, output slot, slots to free afterwards): the call loop
    does no dict lookups, and an intermediate is dropped after its last use (Theano's allow_gc).
    """

    __slots__ = ("n_inputs", "template", "shared", "steps", "output_slots", "constants",
                 "nan_guard", "n_plain", "update_types")

    def __init__(self, inputs: Sequence[Var], outputs: Sequence[Var], nan_guard: bool = False,
                 updated: Sequence | None = None):
        layout = lay_out(inputs, outputs)
        self.n_inputs, self.template = layout.n_inputs, layout.template
        self.shared, self.constants = layout.shared, layout.constants
        self.output_slots, steps = layout.output_slots, layout.steps
        self.nan_guard = nan_guard
        in_place: dict[int, int] = {}
        self.update_types = [(slot, target.type) for slot, target in zip(self.output_slots, updated or ()) if target is not None]
        if REUSE_BUFFERS and updated is not None and not nan_guard:
            shared_slot = {id(container): slot for slot, container in self.shared}
            in_place = _updates_in_place(steps, self.output_slots, updated, shared_slot)
        # In-place updates run last, after every other reader of the old value.
        steps = [s for s in steps if s[2] not in in_place] + [s for s in steps if s[2] in in_place]
        self.n_plain = len(steps) - len(in_place)
        steps = _with_frees(steps, set(self.output_slots))
        steps = _with_donors(steps, self.n_inputs) if REUSE_BUFFERS else [s + (-1,) for s in steps]
        self.steps = steps[: self.n_plain] + [s[:4] + (in_place[s[2]],) for s in steps[self.n_plain :]]

    def run(self, input_values: Sequence[np.ndarray], times: list | None = None) -> list:
        """Every output, from checked input values; shared values are all read first, once."""
        values = self.template.copy()
        values[: self.n_inputs] = input_values
        for slot, container in self.shared:
            values[slot] = container.value
        if times is not None or self.nan_guard:
            return self._run_checked(values, times)
        steps = self.steps
        for var, args, slot, dead, donor in steps[: self.n_plain]:
            if donor < 0:
                values[slot] = run_node(var, [values[i] for i in args])
            else:
                values[slot] = _run_into(var, [values[i] for i in args], values[donor])
            for i in dead:
                values[i] = None
        if self.n_plain < len(steps):
            self._run_updates_in_place(values)
        return [values[i] for i in self.output_slots]

    def _run_updates_in_place(self, values: list) -> None:
        """Write shared variables' new values over their storage, only when every write will fit.

        All are checked before any is written, so a shape error changes no shared variable.
        """
        tail = self.steps[self.n_plain :]
        fits = all(_fits(var, [values[i] for i in args], values[donor]) for var, args, _, _, donor in tail)
        # and every other update will be accepted: otherwise the call fails and nothing may change
        fits = fits and all(
            values[slot] is None or type_.accepts_shape(values[slot].shape) for slot, type_ in self.update_types
        )
        for var, args, slot, dead, donor in tail:
            arguments = [values[i] for i in args]
            values[slot] = _run_into(var, arguments, values[donor]) if fits else run_node(var, arguments)
            for i in dead:
                values[i] = None

    def _run_checked(self, values: list, times: list | None) -> list[np.ndarray]:
        """The slow loop: per-step timing (profile=True) and NaN/Inf checks (NanGuardMode)."""
        for k, (var, args, slot, dead, _) in enumerate(self.steps):
            start = time.perf_counter()
            out = values[slot] = run_node(var, [values[i] for i in args])
            if times is not None:
                times[k] += time.perf_counter() - start
            if self.nan_guard and out.dtype.kind in "fc" and not np.isfinite(out).all():
                bad = "NaN" if np.isnan(out).any() else "Inf"
                raise FloatingPointError(
                    f"NanGuardMode: {var.op} produced {bad} (output shape {out.shape}); "
                    "node created at\n"
                    f"  {var.where()}"
                )
            for i in dead:
                values[i] = None
        return [values[i] for i in self.output_slots]

    def nodes(self) -> list[Var]:
        """The computed Vars, in execution order."""
        return [step[0] for step in self.steps]


def _with_frees(steps: list[tuple], keep: set) -> list[tuple]:
    """Append to each step the slots whose last reader it is (outputs are kept)."""
    return [step + (dead,) for step, dead in zip(steps, last_uses(steps, keep))]


def _fresh(var: Var) -> bool:
    """Does this node's perform return a new buffer (never a view of an input, a constant or a shared value)?"""
    op = var.op
    if isinstance(op, Composite):
        return isinstance(var.type, TensorType)
    if isinstance(op, (Dot, Gemm, Ger)):  # np.dot and the BLAS forms return new arrays
        return True
    return isinstance(op, Elemwise) and isinstance(type(op).fn, np.ufunc)


def _with_donors(steps: list[tuple], n_inputs: int) -> list[tuple]:
    """Append to each elementwise step the slot of an input buffer it may overwrite, or -1.

    A donor is a fresh intermediate (never a function input, constant or shared value) whose last
    reader is this step, of the result's dtype and static shape: the result is written over it.
    """
    producer = {slot: var for var, _, slot, _ in steps}
    out = []
    for var, args, slot, dead in steps:
        donor = -1
        if isinstance(var.op, (Elemwise, Gemm)) and isinstance(var.type, TensorType):
            for i in args:
                source = producer.get(i)
                if (
                    i >= n_inputs and i in dead and source is not None and _fresh(source)
                    and source.type == var.type
                ):
                    donor = i
                    break
        out.append((var, args, slot, dead, donor))
    return out


# Ops whose result is never a view of an input: an output of theirs cannot alias a shared value.
_FRESH_RESULT = ("Dot", "MatMul", "TensorDot", "Gemm", "Ger", "Sum", "Prod", "Max", "Min", "Argmax", "All",
                 "Softmax", "LogSoftmax", "SelectClass", "Composite", "MaxAndArgmax")


def _updates_in_place(steps: list[tuple], output_slots: tuple, updated: Sequence, shared_slot: dict) -> dict:
    """{output slot: shared slot} for updates whose last elementwise node may write over the old value.

    Allowed when the node reads that value, nothing else reads the node's result, the result has the
    shared variable's dtype, no returned output can be a view of shared storage, and no other in-place
    update reads this value (or writes one this node reads).
    """
    producer = {slot: step for step in steps for slot in (step[2],)}
    readers: dict[int, int] = {}
    for _, args, _ in steps:
        for i in set(args):
            readers[i] = readers.get(i, 0) + 1
    for k, slot in enumerate(output_slots):
        if updated[k] is None:
            step = producer.get(slot)
            if step is None or not (_fresh(step[0]) or type(step[0].op).__name__ in _FRESH_RESULT):
                return {}  # a returned output might alias storage we would overwrite
    chosen: dict[int, int] = {}
    for k, (slot, target) in enumerate(zip(output_slots, updated)):
        if target is None or slot not in producer or output_slots.count(slot) != 1 or readers.get(slot):
            continue
        var, args, _ = producer[slot]
        own = shared_slot.get(id(target.container))
        if own is None or own not in args or own in output_slots or var.dtype != target.dtype:
            continue
        if not (isinstance(var.op, (Elemwise, Gemm)) and isinstance(var.type, TensorType)):
            continue
        if any(own in producer[s][1] or w in args for s, w in chosen.items()):
            continue
        chosen[slot] = own
    return chosen


def _result_shape(var: Var, args: list) -> tuple:
    """The run-time shape of an elementwise or Gemm result (raises on mismatched broadcasting)."""
    if isinstance(var.op, Gemm):
        z, _, x, y, _ = args
        return np.broadcast_shapes(z.shape, x.shape[:1] + y.shape[1:])
    check_runtime_broadcast(var, args)
    return np.broadcast_shapes(*[a.shape for a in args])


def _fits(var: Var, args: list, buffer: np.ndarray) -> bool:
    try:
        return buffer.flags.writeable and buffer.shape == _result_shape(var, args)
    except ValueError:
        return False


def _run_into(var: Var, args: list, buffer: np.ndarray) -> np.ndarray:
    """Run an elementwise node writing its result over `buffer` when the run-time shapes allow it."""
    try:
        if buffer.shape == _result_shape(var, args) and buffer.flags.writeable:
            out = var.op.perform_into(buffer, *args)
        else:
            out = var.op.perform(*args)
    except Exception as error:
        raise node_error(var, error, args) from error
    return check_output(var, out)


def compile_py(inputs: Sequence[Var], outputs: Sequence[Var], nan_guard: bool = False) -> PyPlan:
    """The py backend's compiled form of `outputs` as a function of `inputs`."""
    return PyPlan(inputs, outputs, nan_guard)


__all__ = ["PyPlan", "compile_py", "EvaluationError"]


class PyBackend:
    """Mode 'py': every node's numpy perform; fuses any elementwise op (a Composite runs its perform)."""

    name = "py"

    @staticmethod
    def supported(var: Var) -> bool:
        return True

    @staticmethod
    def supported_reduction(var: Var) -> bool:
        """Any FusedReduce runs: its perform evaluates the body, then reduces (numpy)."""
        return True

    @staticmethod
    def compile(inputs: Sequence[Var], outputs: Sequence[Var], nan_guard: bool = False,
                updated: Sequence | None = None) -> PyPlan:
        return PyPlan(inputs, outputs, nan_guard, updated)


BACKEND = PyBackend()
