"""DebugMode: run the numba backend and check every node against the reference `perform`."""

from __future__ import annotations

from typing import Sequence

import numpy as np

from ..graph.evaluate import leaf_value, run_node
from ..graph.var import Var, toposort


class DebugModeError(AssertionError):
    """A node's value on the numba backend differs from its numpy reference."""


def _close(got, want, dtype: str) -> tuple[bool, str]:
    got, want = np.asarray(got), np.asarray(want)
    if got.shape != want.shape or got.dtype != want.dtype:
        return False, f"numba gave {got.dtype}{list(got.shape)}, py gave {want.dtype}{list(want.shape)}"
    if got.dtype.kind in "fc":
        tolerance = 1e-4 if got.dtype.itemsize <= 4 else 1e-9
        if np.allclose(got, want, rtol=tolerance, atol=tolerance, equal_nan=True):
            return True, ""
        with np.errstate(invalid="ignore"):
            worst = np.nanmax(np.abs(got - want)) if got.size else 0.0
        return False, f"largest difference {worst:.3g} (tolerance {tolerance:g})"
    return (True, "") if np.array_equal(got, want) else (False, "integer or boolean values differ")


class DebugPlan:
    """The numba plan computing every node; each node is then recomputed by py on the same inputs."""

    def __init__(self, inputs: Sequence[Var], outputs: Sequence[Var]) -> None:
        from .backends import get_backend

        self.inputs = list(inputs)
        self.outputs = list(outputs)
        self._nodes = [v for v in toposort(outputs, stop=set(inputs)) if v.inputs and v not in inputs]
        self.plan = get_backend("numba").compile(self.inputs, self.outputs + self._nodes)
        self.shared, self.constants = self.plan.shared, self.plan.constants

    def run(self, input_values: Sequence[np.ndarray], times: list | None = None) -> list:
        results = self.plan.run(input_values)
        n = len(self.outputs)
        given = dict(zip(self.inputs, input_values))
        computed = {id(v): r for v, r in zip(self._nodes, results[n:])}
        for var in self._nodes:
            args = [computed[id(x)] if id(x) in computed else leaf_value(x, given) for x in var.inputs]
            want = run_node(var, args)
            got = computed[id(var)]
            pairs = zip(got, want) if isinstance(want, tuple) else [(got, want)]
            for k, (g, w) in enumerate(pairs):
                ok, why = _close(g, w, var.type)
                if not ok:
                    part = f" output {k}" if isinstance(want, tuple) else ""
                    raise DebugModeError(
                        f"DebugMode: {var.op}{part} differs between mode numba and the numpy reference: {why}; "
                        f"node created at\n  {var.where()}"
                    )
        return results[:n]

    def nodes(self) -> list[Var]:
        return list(self._nodes)

    def kernel_sources(self):
        return self.plan.kernel_sources()


class DebugBackend:
    """Mode DebugMode: numba's rewrites and kernels, every node checked against py."""

    name = "debug"

    @staticmethod
    def supported(var: Var) -> bool:
        from .backends import get_backend

        return get_backend("numba").supported(var)

    @staticmethod
    def compile(inputs, outputs, nan_guard: bool = False, updated=None) -> DebugPlan:
        return DebugPlan(inputs, outputs)


BACKEND = DebugBackend()
