"""Numba lowerings of graph/ops/ifelse.py and scan.py: inner graphs compiled as numba plans.

IfElse compiles each branch into its own plan (built on first use: only a taken branch is ever
lowered) and runs only the taken one. Scan runs as one generated numba loop (scan_loop.py) when
its body allows; otherwise its loop is the op's own `run_loop` over a numba plan of the body.
"""

from __future__ import annotations

import numpy as np

from ...graph.ops.ifelse import IfElse
from ...graph.ops.scan import Scan


def _ifelse(op, var):
    from .backend import NumbaPlan

    plans: dict[bool, object] = {}

    def run(cond, *values):
        taken = bool(cond)
        plan = plans.get(taken)
        if plan is None:
            outputs = op.then_outputs if taken else op.else_outputs
            plan = plans[taken] = NumbaPlan(op.inner_inputs, outputs)
        return op.run_branch(plan, values)

    return run


def _scan(op, var):
    from .backend import NumbaPlan

    from .scan_loop import loop_runner

    plan = NumbaPlan(op.inner_inputs, op.inner_outputs)
    first = 1 + op.n_seqs + op.n_states  # the non-sequences' place in (n_steps, *values)

    def run(n_steps, *values):
        nonseqs = map(_c_order, values[first - 1 :])
        return op.run_loop(plan, n_steps, *values[: first - 1], *nonseqs)

    return loop_runner(op, run)


def _c_order(value):
    """A transposed (Fortran-ordered) non-sequence, such as W.T for a gradient, copied to C order
    once: the BLAS runners would otherwise copy it at every step."""
    if getattr(value, "ndim", 0) >= 2 and not value.flags.c_contiguous and value.flags.f_contiguous:
        return np.ascontiguousarray(value)
    return value


LOWERINGS = {IfElse: _ifelse, Scan: _scan}
NUMPY_STEPS: dict = {}
