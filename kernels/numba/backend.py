"""The numba backend (mode 'numba'): each node lowered to a runner calling compiled numba kernels.

`LOWERINGS` maps every op class (exact type) to `lowering(op, var) -> runner`, a small Python
function that checks shapes and calls module-level `@numba.njit(cache=True)` kernels (or a generated
loop, for elementwise nodes). `NUMPY_STEPS` lists, with the reason, the op classes whose runner is
an explicit numpy step instead of a numba kernel; `UNSUPPORTED` those that cannot run at all. A
plan runs the runners by a lean Python loop over slots, like the py backend's PyPlan.
"""

from __future__ import annotations

import time
from typing import Callable, Sequence

import numpy as np

from ...graph.evaluate import check_output, node_error
from ...graph.ops.composite import Composite
from ...graph.ops.elemwise import Elemwise
from ...graph.ops.random import RandomOp
from ...graph.var import Op, Var
from ..py import PyPlan
from . import linalg, nnet, reduce, shape, subtensor
from .loops import ElementwiseRunner
from .scalar import SCALAR, supported

Runner = Callable[..., object]


def _elementwise(op: Op, var: Var) -> Runner:
    if not supported(var):  # complex or float16 values: numba loops are generated for real dtypes
        return numpy_step(op, var)
    return ElementwiseRunner(var)


def numpy_step(op: Op, var: Var) -> Runner:
    """The explicit numpy step: the op's reference perform, checked against the node's type."""

    def run(*args):
        return check_output(var, var.op.perform(*args))

    return run


LOWERINGS: dict[type, Callable[[Op, Var], Runner]] = {cls: _elementwise for cls in SCALAR}
LOWERINGS[Composite] = _elementwise
NUMPY_STEPS: dict[type, str] = {}
for _module in (reduce, linalg, nnet, shape, subtensor):
    LOWERINGS.update(_module.LOWERINGS)
    for _cls, _reason in _module.NUMPY_STEPS.items():
        LOWERINGS[_cls] = numpy_step
        NUMPY_STEPS[_cls] = _reason
UNSUPPORTED: dict[type, str] = {
    Elemwise: "the abstract base of elementwise ops; never a node itself",
    RandomOp: "the abstract base of the random draws; never a node itself",
}


def lower(var: Var) -> Runner:
    """The runner of one node; raises NotImplementedError naming an op class with no lowering."""
    lowering = LOWERINGS.get(type(var.op))
    if lowering is None:
        reason = UNSUPPORTED.get(type(var.op), "no lowering is registered for it")
        raise NotImplementedError(
            f"mode 'numba' cannot compile {type(var.op).__name__} ({reason}); node created at\n"
            f"  {var.where()}"
        )
    return lowering(var.op, var)


class NumbaPlan(PyPlan):
    """PyPlan's slots and frees, with each step's numpy perform replaced by its numba runner."""

    __slots__ = ("runs",)

    def __init__(self, inputs: Sequence[Var], outputs: Sequence[Var], nan_guard: bool = False):
        super().__init__(inputs, outputs, nan_guard)
        self.runs = [(lower(var), args, slot, dead, var) for var, args, slot, dead in self.steps]

    def run(self, input_values: Sequence[np.ndarray], times: list | None = None) -> list:
        """Every output, from checked input values; shared values are all read first, once."""
        values = self.template.copy()
        values[: self.n_inputs] = input_values
        for slot, container in self.shared:
            values[slot] = container.value
        if times is not None or self.nan_guard:
            return self._run_checked(values, times)
        step = None
        try:
            for step in self.runs:
                runner, args, slot, dead, _ = step
                values[slot] = runner(*[values[i] for i in args])
                for i in dead:
                    values[i] = None
        except Exception as error:
            raise _failure(step, values, error) from error
        return [values[i] for i in self.output_slots]

    def _run_checked(self, values: list, times: list | None) -> list[np.ndarray]:
        """The slow loop: per-step timing (profile=True) and NaN/Inf checks (NanGuardMode)."""
        for k, step in enumerate(self.runs):
            runner, args, slot, dead, var = step
            start = time.perf_counter()
            try:
                out = values[slot] = runner(*[values[i] for i in args])
            except Exception as error:
                raise _failure(step, values, error) from error
            if times is not None:
                times[k] += time.perf_counter() - start
            if self.nan_guard:
                _check_finite(var, out)
            for i in dead:
                values[i] = None
        return [values[i] for i in self.output_slots]

    def nodes(self) -> list[Var]:
        """The computed Vars, in execution order."""
        return [step[4] for step in self.runs]


def _failure(step: tuple, values: list, error: Exception) -> Exception:
    """The error of a failed step, naming its op and the user's line (as mode py does)."""
    runner, args, _, _, var = step
    return node_error(var, error, [np.asarray(values[i]) for i in args])


def _check_finite(var: Var, out) -> None:
    for value in out if isinstance(out, tuple) else (out,):
        if value.dtype.kind in "fc" and not np.isfinite(value).all():
            bad = "NaN" if np.isnan(value).any() else "Inf"
            raise FloatingPointError(
                f"NanGuardMode: {var.op} produced {bad} (output shape {value.shape}); "
                f"node created at\n  {var.where()}"
            )


class NumbaBackend:
    """Mode 'numba': elementwise groups become generated loops, other ops compiled kernels."""

    name = "numba"

    @staticmethod
    def supported(var: Var) -> bool:
        """May this elementwise node be fused into a Composite rendered by this backend?"""
        return supported(var)

    @staticmethod
    def compile(inputs: Sequence[Var], outputs: Sequence[Var], nan_guard: bool = False) -> NumbaPlan:
        """The compiled form of `outputs` as a function of `inputs`."""
        return NumbaPlan(inputs, outputs, nan_guard)


BACKEND = NumbaBackend()
