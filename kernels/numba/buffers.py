"""Buffer reuse for numba plans: elementwise results written over dead intermediates (donors) and
shared variables' new values written over their old storage (in-place updates).

The py backend's rules, stated for numba runners. A donor is a fresh intermediate (made by one of
our kernels; never an input, constant, shared value or view) whose last reader is the elementwise
step, with the step's static type. An update is done in place when its last node is elementwise
(or a Gemm), reads the old value, has its dtype, nothing else reads the result, and no returned
output can be a view of shared storage; such steps run last, after every other reader.
"""

from __future__ import annotations

from typing import Sequence

from ...graph.ops import blas as B
from ...graph.ops import linalg as L
from ...graph.ops import nnet as N
from ...graph.ops import reduce as R
from ...graph.type import TensorType
from .loops import ElementwiseRunner

# ops whose numba runner always returns a new array (never a view of an input)
FRESH = (L.Dot, L.MatMul, L.TensorDot, B.Gemm, B.Ger, R.Sum, R.Prod, R.Max, R.Min, R.Argmax,
         R.All, N.Softmax, N.LogSoftmax, N.SelectClass, N.SelectClassGrad)  # fmt: skip


def _fresh(runner, var) -> bool:
    if isinstance(runner, ElementwiseRunner):
        return runner.single and isinstance(var.type, TensorType)
    return isinstance(var.op, FRESH)


def donors(runs: list[tuple], n_inputs: int) -> list[int]:
    """For each step (runner, args, slot, dead, var): the slot it may write over, or -1."""
    producer = {run[2]: run for run in runs}
    chosen = []
    for runner, args, slot, dead, var in runs:
        donor = -1
        if isinstance(runner, ElementwiseRunner) and runner.single:
            for i in args:
                source = producer.get(i)
                if (
                    i >= n_inputs
                    and i in dead
                    and source is not None
                    and _fresh(source[0], source[4])
                    and source[4].type == var.type
                ):
                    donor = i
                    break
        chosen.append(donor)
    return chosen


def updates_in_place(
    runs: list[tuple], output_slots: tuple, updated: Sequence, shared_slot: dict
) -> dict[int, int]:
    """{output slot: shared slot} for the updates whose last step may write over the old value."""
    producer = {run[2]: run for run in runs}
    readers: dict[int, int] = {}
    for run in runs:
        for i in set(run[1]):
            readers[i] = readers.get(i, 0) + 1
    for k, slot in enumerate(output_slots):
        if updated[k] is None:
            run = producer.get(slot)
            if run is None or not _fresh(run[0], run[4]):
                return {}  # a returned output might alias storage we would overwrite
    chosen: dict[int, int] = {}
    for slot, target in zip(output_slots, updated):
        if target is None or slot not in producer or output_slots.count(slot) != 1:
            continue
        if readers.get(slot):
            continue
        runner, args, _, _, var = producer[slot]
        own = shared_slot.get(id(target.container))
        if own is None or own not in args or own in output_slots or var.dtype != target.dtype:
            continue
        if not (hasattr(runner, "into") and runner.single):  # elementwise loops and Gemm
            continue
        if any(own in producer[s][1] or w in args for s, w in chosen.items()):
            continue
        chosen[slot] = own
    return chosen
