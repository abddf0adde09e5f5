"""The numba backend (mode 'numba'): each node lowered to a runner calling compiled numba kernels.

`LOWERINGS` maps every op class (exact type) to `lowering(op, var) -> runner`, a small Python
function that checks shapes and calls module-level `@numba.njit(cache=True)` kernels (or a generated
loop, for elementwise nodes). `NUMPY_STEPS` lists, with the reason, the op classes whose runner is
an explicit numpy step instead of a numba kernel; `UNSUPPORTED` those that cannot run at all. A
plan runs the runners by a lean Python loop over slots, as the py backend's PyPlan does.

Why per-node kernels and not one compiled function per graph (bench/results/execution_model.md):
the loop costs 2.9 us per node, 0.09 ms of a 2.08 ms MLP training step (4%), while one numba
function per graph would compile every graph anew (a whole LSTM loop takes 11 s cold, against 5 s
for its per-node kernels, which other graphs share through the cache). Inside a scan the per-step
cost repeats at every step, so there the whole loop is one compiled function (scan_loop.py): the
LSTM forward + backward drops from 22.4 to 14.3 ms.
"""

from __future__ import annotations

import time
from typing import Callable, Sequence

import numpy as np

from ...graph.evaluate import check_output, node_error
from ...graph.ops.composite import Composite
from ...graph.ops.conv import _ConvOp
from ...graph.ops.elemwise import Elemwise
from ...graph.ops.pool import _PoolOp
from ...graph.ops.random import RandomOp
from ...graph.ops.subtensor import IncSubtensor, Subtensor
from ..slots import last_uses, lay_out
from ...graph.var import Op, Var
from . import control, conv, fused_reduce, linalg, loops, nnet, pool, random, reduce, shape, subtensor
from .buffers import donors, updates_in_place
from .loops import ElementwiseRunner
from ..user import NUMBA_IMPLS
from .scalar import SCALAR, supported

Runner = Callable[..., object]


# Up to this many elements, strided or broadcast inputs of an elementwise loop are copied to
# C order so the contiguous (flat) kernel runs: numba does not vectorize the strided loop nest. On
# the 2-core benchmark machine a 32x128 sigmoid over a column slice and a broadcast row took 40 us
# strided against 4 us flat plus about 1 us per copy (an LSTM step's gate slices and peepholes).
# The bound keeps the temporary copies small.
SMALL_COPY = 1 << 20


class ContiguousElementwiseRunner(ElementwiseRunner):
    """An ElementwiseRunner that copies small strided or broadcast inputs to C order first."""

    __slots__ = ()

    def _fill(self, xs: tuple, shape: tuple, size: int, outs: list) -> None:
        if size > SMALL_COPY:
            return ElementwiseRunner._fill(self, xs, shape, size, outs)
        # every input is then one element or C-ordered of the output's shape: the flat kernel
        pattern = "".join("s" if x.size == 1 and size != 1 else "v" for x in xs)
        args = [(x if p == "s" else _c_copy(x, shape)).reshape(-1) for x, p in zip(xs, pattern)]
        args += [o.reshape(-1) for o in outs]
        serial, parallel = self.kernel(0, pattern)
        (parallel if size >= loops.PARALLEL_SIZE else serial)(*args)


def _c_copy(x: np.ndarray, shape: tuple) -> np.ndarray:
    """x itself when C-contiguous of `shape`, else a C-ordered copy broadcast to `shape`."""
    if x.shape == shape:
        return x if x.flags.c_contiguous else np.ascontiguousarray(x)
    out = np.empty(shape, x.dtype)
    out[...] = x  # the shape was checked by broadcast_shape: only typed-broadcastable axes differ
    return out


def _elementwise(op: Op, var: Var) -> Runner:
    if not supported(var):  # complex or float16 values: numba loops are generated for real dtypes
        return numpy_step(op, var)
    return ContiguousElementwiseRunner(var)


def numpy_step(op: Op, var: Var) -> Runner:
    """The explicit numpy step: the op's reference perform, checked against the node's type."""

    def run(*args):
        return check_output(var, var.op.perform(*args))

    return run


LOWERINGS: dict[type, Callable[[Op, Var], Runner]] = {cls: _elementwise for cls in SCALAR}
LOWERINGS[Composite] = _elementwise
NUMPY_STEPS: dict[type, str] = {}
for _module in (reduce, fused_reduce, linalg, nnet, shape, random, subtensor, conv, pool, control):
    LOWERINGS.update(_module.LOWERINGS)
    for _cls, _reason in _module.NUMPY_STEPS.items():
        LOWERINGS[_cls] = numpy_step
        NUMPY_STEPS[_cls] = _reason
UNSUPPORTED: dict[type, str] = {
    Elemwise: "the abstract base of elementwise ops; never a node itself",
    RandomOp: "the abstract base of the random draws; never a node itself",
    _ConvOp: "the abstract base of conv2d and its gradients; never a node itself",
    _PoolOp: "the abstract base of pooling and its gradients; never a node itself",
}


def _constant_key(idx: tuple) -> tuple | None:
    """The numpy key of a basic index with no index inputs (ints, slices, newaxis), else None."""
    key = []
    for e in idx:
        if e is None or isinstance(e, int):
            key.append(e)
        elif e[0] == "slice" and not any(isinstance(p, tuple) for p in e[1:]):
            key.append(slice(*e[1:]))
        else:
            return None
    return tuple(key)


def _basic_subtensor(var: Var) -> Runner | None:
    """x[key] for a constant basic index: the precomputed key, no per-call index decoding (a scan
    body runs its gate slices at every step). The result is a view, as Subtensor.perform's."""
    key = _constant_key(var.op.idx)
    if key is None or len(var.inputs) != 1:
        return None
    if var.ndim == 0:  # every axis indexed by an int: numpy gives a scalar, the node a 0-d array
        return lambda x: np.asarray(x[key])
    return lambda x: x[key]


def _basic_inc_subtensor(var: Var) -> Runner | None:
    """A copy of x with y added at (or written to) a constant basic index, as IncSubtensor.perform
    computes it, without decoding the index at every call."""
    key = _constant_key(var.op.idx)
    if key is None or len(var.inputs) != 2:
        return None
    dtype, assign = np.dtype(var.dtype), var.op.set_instead_of_inc
    key = key + (Ellipsis,)  # out[key] is then a view even when every axis is indexed by an int

    def run(x, y):
        out = x.copy()
        view = out[key]
        y = np.asarray(y, dtype=dtype)
        if y.shape != view.shape:  # numpy's message when y does not broadcast to the target
            y = np.broadcast_to(y, view.shape)
        if assign:
            view[...] = y
        else:
            view += y
        return out

    return run


_FAST_INDEXING = {Subtensor: _basic_subtensor, IncSubtensor: _basic_inc_subtensor}


def lower(var: Var) -> Runner:
    """The runner of one node; raises NotImplementedError for a theanine op with no lowering."""
    fast = _FAST_INDEXING.get(type(var.op))
    runner = fast(var) if fast is not None and LOWERINGS.get(type(var.op)) is numpy_step else None
    if runner is not None:
        return runner
    lowering = LOWERINGS.get(type(var.op))
    if lowering is None and type(var.op) in NUMBA_IMPLS:  # a custom op's registered implementation
        from ..user_backends import CustomNumbaRunner

        return CustomNumbaRunner(var, NUMBA_IMPLS[type(var.op)])
    if lowering is None and not type(var.op).__module__.startswith("theanine."):
        return numpy_step(var.op, var)  # a user's own Op (as in Theano): its perform defines it
    if lowering is None:
        reason = UNSUPPORTED.get(type(var.op), "no lowering is registered for it")
        raise NotImplementedError(
            f"mode 'numba' cannot compile {type(var.op).__name__} ({reason}); node created at\n"
            f"  {var.where()}"
        )
    return lowering(var.op, var)


class NumbaPlan:
    """A graph as steps over a list of slots (inputs, then constants, shared values, nodes).

    Each step is (runner, argument slots, output slot, slots to free afterwards, var, donor): the
    call loop does no dict lookups, an intermediate is dropped after its last use (Theano's
    allow_gc), and an elementwise step with a donor writes over that dead buffer. Steps that write
    shared variables' new values in place come last. `shared` and `constants` are read by
    compiler/function.py, as for the py backend's PyPlan.
    """

    __slots__ = ("n_inputs", "template", "shared", "runs", "output_slots", "constants",
                 "nan_guard", "n_plain", "update_types")  # fmt: skip

    def __init__(
        self,
        inputs: Sequence[Var],
        outputs: Sequence[Var],
        nan_guard: bool = False,
        updated: Sequence | None = None,
    ):
        layout = lay_out(inputs, outputs)
        self.n_inputs, self.template = layout.n_inputs, layout.template
        self.shared, self.constants = layout.shared, layout.constants
        self.output_slots, steps = layout.output_slots, layout.steps
        self.nan_guard = nan_guard
        runs = [(lower(var), args, slot, (), var) for var, args, slot in steps]
        in_place: dict[int, int] = {}
        targets = list(updated or ())
        self.update_types = [
            (slot, t.type) for slot, t in zip(self.output_slots, targets) if t is not None
        ]
        if updated is not None and not nan_guard:
            shared_slot = {id(container): slot for slot, container in self.shared}
            in_place = updates_in_place(runs, self.output_slots, targets, shared_slot)
        # in-place updates run last, after every other reader of the old values
        runs = [r for r in runs if r[2] not in in_place] + [r for r in runs if r[2] in in_place]
        self.n_plain = len(runs) - len(in_place)
        frees = last_uses([(r[4], r[1], r[2]) for r in runs], set(self.output_slots))
        runs = [r[:3] + (frees[k], r[4]) for k, r in enumerate(runs)]
        reuse = donors(runs[: self.n_plain], self.n_inputs)
        self.runs = [r + (reuse[k],) for k, r in enumerate(runs[: self.n_plain])] + [
            r + (in_place[r[2]],) for r in runs[self.n_plain :]
        ]

    @property
    def steps(self) -> list[tuple]:
        """(var, argument slots, output slot, freed slots, donor slot or -1), as PyPlan's."""
        return [(r[4], r[1], r[2], r[3], r[5]) for r in self.runs]

    def run(self, input_values: Sequence[np.ndarray], times: list | None = None) -> list:
        """Every output, from checked input values; shared values are all read first, once."""
        values = self.template.copy()
        values[: self.n_inputs] = input_values
        for slot, container in self.shared:
            values[slot] = container.value
        if times is not None or self.nan_guard:
            return self._run_checked(values, times)
        step = None
        runs = self.runs
        try:
            for step in runs[: self.n_plain] if self.n_plain < len(runs) else runs:
                runner, args, slot, dead, _, donor = step
                if donor < 0:
                    values[slot] = runner(*[values[i] for i in args])
                else:
                    values[slot] = runner.into(values[donor], *[values[i] for i in args])
                for i in dead:
                    values[i] = None
            if self.n_plain < len(runs):
                step = None
                self._run_updates_in_place(values)
        except Exception as error:
            if step is None:
                raise
            raise _failure(step, values, error) from error
        return [values[i] for i in self.output_slots]

    def _run_updates_in_place(self, values: list) -> None:
        """Write new shared values over their storage, only when every write will fit: all are
        checked before any is written, so a shape error changes no shared variable."""
        tail = self.runs[self.n_plain :]
        fits = all(r[0].fits(values[r[5]], [values[i] for i in r[1]]) for r in tail)
        fits = fits and all(
            values[slot] is None or type_.accepts_shape(values[slot].shape)
            for slot, type_ in self.update_types
        )
        for step in tail:
            runner, args, slot, dead, _, donor = step
            arguments = [values[i] for i in args]
            try:
                if fits:
                    values[slot] = runner.into(values[donor], *arguments)
                else:
                    values[slot] = runner(*arguments)
            except Exception as error:
                raise _failure(step, values, error) from error
            for i in dead:
                values[i] = None

    def _run_checked(self, values: list, times: list | None) -> list[np.ndarray]:
        """The slow loop: per-step timing (profile=True) and NaN/Inf checks (NanGuardMode)."""
        for k, step in enumerate(self.runs):
            runner, args, slot, dead, var, _ = step
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

    def kernel_sources(self) -> list[tuple[Var, str]]:
        """(node, generated numba source) for every fused loop, as its contiguous-input form."""
        from .loops import ElementwiseRunner, kernel_source

        sources = []
        for run in self.runs:
            if isinstance(run[0], ElementwiseRunner):
                source = kernel_source(run[0].placeholders, run[0].outputs, 0, "flat")[0]
                sources.append((run[4], source))
            elif isinstance(run[0], fused_reduce.FusedReduceRunner):  # its full-rank loop nest
                sources.append((run[4], run[0].source()))
        return sources

    def nodes(self) -> list[Var]:
        """The computed Vars, in execution order."""
        return [step[4] for step in self.runs]


def _failure(step: tuple, values: list, error: Exception) -> Exception:
    """The error of a failed step, naming its op and the user's line (as mode py does)."""
    var, args = step[4], step[1]
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
    def supported_reduction(var: Var) -> bool:
        """May this FusedReduce (a reduction of a fused body) run as one generated loop?"""
        return fused_reduce.supported_reduction(var)

    @staticmethod
    def compile(
        inputs: Sequence[Var],
        outputs: Sequence[Var],
        nan_guard: bool = False,
        updated: Sequence | None = None,
    ) -> NumbaPlan:
        """The compiled form of `outputs` as a function of `inputs`; `updated[k]` is the shared
        variable output k becomes (its new value may be written over the old storage)."""
        return NumbaPlan(inputs, outputs, nan_guard, updated)


BACKEND = NumbaBackend()
