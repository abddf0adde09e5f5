"""The py backend (mode 'py'): run each node's numpy `perform` over a precomputed plan of slots."""

from __future__ import annotations

import time
from typing import Sequence

import numpy as np

from ..graph.evaluate import EvaluationError, check_output, leaf_value, node_error, run_node
from ..graph.ops.blas import Gemm, Ger
from ..graph.ops.composite import Composite
from ..graph.ops.linalg import Dot
from ..graph.ops.elemwise import Elemwise, check_runtime_broadcast
from ..graph.type import TensorType
from ..graph.var import Input, Shared, Var, toposort


REUSE_BUFFERS = True  # elementwise results written over dead intermediates (bench/memory_step.py turns it off)


class PyPlan:
    """A graph as steps over a list of slots: inputs first, then constants, shared values, nodes.

    Each step is (var, perform-argument slots, output slot, slots to free afterwards): the call loop
    does no dict lookups, and an intermediate is dropped after its last use (Theano's allow_gc).
    """

    __slots__ = ("n_inputs", "template", "shared", "steps", "output_slots", "constants",
                 "nan_guard")

    def __init__(self, inputs: Sequence[Var], outputs: Sequence[Var], nan_guard: bool = False):
        slot_of: dict[int, int] = {id(v): k for k, v in enumerate(inputs)}
        self.n_inputs = len(inputs)
        self.shared: list[tuple[int, object]] = []
        self.constants: list[np.ndarray] = []
        self.nan_guard = nan_guard
        template: list = [None] * len(inputs)
        steps: list[tuple] = []
        # Inputs are cut points: a value given for an intermediate variable replaces its sub-graph.
        for var in toposort(outputs, stop=set(inputs)):
            if id(var) in slot_of:
                continue
            slot_of[id(var)] = slot = len(template)
            template.append(None)
            if var.inputs:
                steps.append((var, tuple(slot_of[id(x)] for x in var.inputs), slot))
            elif isinstance(var.op, Shared):
                self.shared.append((slot, var.container))
            elif isinstance(var.op, Input):
                leaf_value(var, {})  # raises: the caller did not list this input
            else:
                template[slot] = leaf_value(var, {})
                self.constants.append(template[slot])
        self.template = template
        self.output_slots = tuple(slot_of[id(v)] for v in outputs)
        steps = _with_frees(steps, set(self.output_slots))
        self.steps = _with_donors(steps, self.n_inputs) if REUSE_BUFFERS else [s + (-1,) for s in steps]

    def run(self, input_values: Sequence[np.ndarray], times: list | None = None) -> list:
        """Every output, from checked input values; shared values are all read first, once."""
        values = self.template.copy()
        values[: self.n_inputs] = input_values
        for slot, container in self.shared:
            values[slot] = container.value
        if times is not None or self.nan_guard:
            return self._run_checked(values, times)
        for var, args, slot, dead, donor in self.steps:
            if donor < 0:
                values[slot] = run_node(var, [values[i] for i in args])
            else:
                values[slot] = _run_into(var, [values[i] for i in args], values[donor])
            for i in dead:
                values[i] = None
        return [values[i] for i in self.output_slots]

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
    last_use: dict[int, int] = {}
    for k, (_, args, _) in enumerate(steps):
        for i in args:
            last_use[i] = k
    frees: list[list[int]] = [[] for _ in steps]
    for i, k in last_use.items():
        if i not in keep:
            frees[k].append(i)
    return [(var, args, slot, tuple(frees[k])) for k, (var, args, slot) in enumerate(steps)]


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
        if isinstance(var.op, Elemwise) and isinstance(var.type, TensorType):
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


def _run_into(var: Var, args: list, buffer: np.ndarray) -> np.ndarray:
    """Run an elementwise node writing its result over `buffer` when the run-time shapes allow it."""
    try:
        check_runtime_broadcast(var, args)
        if buffer.shape == np.broadcast_shapes(*[a.shape for a in args]) and buffer.flags.writeable:
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
    def compile(inputs: Sequence[Var], outputs: Sequence[Var], nan_guard: bool = False) -> PyPlan:
        return PyPlan(inputs, outputs, nan_guard)


BACKEND = PyBackend()
