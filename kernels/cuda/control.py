"""CUDA lowerings of Scan and IfElse: inner graphs compiled as inner CudaPlans on the same device.

Scan's loop runs on the host over device values: each step's sequence rows and state taps are
views of device memory (no copy), the state buffers and the per-step outputs are allocated on the
device once, and each step's results are copied into their rows by device-to-device copies, so no
value crosses the bus per step. The one exception is `until`: its condition, a scalar, is read on
the host after every step. IfElse reads its condition (one scalar) on the host and runs only the
taken branch's inner plan. The inner plans' kernels are compiled into the outer plan's module.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ...graph.ops.ifelse import IfElse
from ...graph.ops.scan import Scan
from ...graph.var import Var


def _inner_plan(inputs: Sequence[Var], outputs: Sequence[Var], on_device: Sequence[bool]):
    """A CudaPlan of an inner graph whose outputs stay on the device where `on_device` says."""
    # backend imports this module: import it when first needed
    from .backend import CudaPlan

    plan = CudaPlan(inputs, outputs, device=None)
    plan.keep_on_device = list(on_device)
    return plan


def _bind(plan, device, module) -> None:
    """Run `plan` on `device` with the outer plan's module (it holds the inner kernels too)."""
    plan.device = device
    plan._module = module


class IfElseLowering:
    """The condition is read on the host; only the taken branch's plan runs, on the device."""

    host_inputs = (0,)

    def __init__(self, var: Var) -> None:
        op = var.op
        self.op = op
        self.plans = {
            True: _inner_plan(op.inner_inputs, op.then_outputs, [True] * len(op.then_outputs)),
            False: _inner_plan(op.inner_inputs, op.else_outputs, [True] * len(op.else_outputs)),
        }
        self.kernels = self.plans[True].kernels() + self.plans[False].kernels()

    def launch(self, device, module, inputs: Sequence):
        """The taken branch's outputs, as DeviceArrays."""
        plan = self.plans[bool(np.asarray(inputs[0]))]
        _bind(plan, device, module)
        return self.op.run_branch(plan, list(inputs[1:]))


class ScanLowering:
    """A host loop over the inner plan; states and per-step outputs are device buffers."""

    host_inputs = (0,)  # n_steps

    def __init__(self, var: Var) -> None:
        op = var.op
        self.op = op
        n_out = len(op.inner_outputs)
        on_device = [not (op.until and k == n_out - 1) for k in range(n_out)]  # until: on host
        self.plan = _inner_plan(op.inner_inputs, op.inner_outputs, on_device)
        self.kernels = self.plan.kernels()

    def launch(self, device, module, inputs: Sequence) -> tuple:
        """The node's outputs (state buffers, per-step outputs) as DeviceArrays."""
        op, plan = self.op, self.plan
        _bind(plan, device, module)
        steps = int(np.asarray(inputs[0]))
        if steps < 0:
            raise ValueError(f"scan: n_steps must be >= 0, got {steps}")
        _, seqs, inits, nonseqs = op.split_inputs(inputs)
        op._check_sequences(seqs, steps)
        states = [self._state(device, i, init, steps) for i, init in enumerate(inits)]
        for k, seq in enumerate(seqs):
            op._check_rows(op.inner_inputs[k], seq.shape[1:], op.name_of("sequence", k), "rows")
        nitsots: list = [None] * op.n_nitsot
        done = steps
        for k in range(steps):
            args = [seq.row(k) for seq in seqs]
            for buffer, size, _, _, offsets in states:
                args.extend(buffer.row((k + o) % size) for o in offsets)
            args.extend(nonseqs)
            outs = plan.run(args)
            for i, (buffer, size, row, lag, _) in enumerate(states):
                out = outs[i]
                if out.shape != row:
                    raise ValueError(
                        f"scan: {op.name_of('output', i)} changed shape between steps: its "
                        f"initial value has shape {row}, step {k} returned shape {out.shape}"
                    )
                device.copy_into(buffer.row((k + lag) % size), out)
            for m in range(op.n_nitsot):
                out = outs[op.n_states + m]
                if nitsots[m] is None:
                    nitsots[m] = device.empty((steps,) + out.shape, out.dtype)
                elif out.shape != nitsots[m].shape[1:]:
                    raise ValueError(
                        f"scan: {op.name_of('nitsot', m)} changed shape between steps: step 0 "
                        f"returned shape {nitsots[m].shape[1:]}, step {k} returned {out.shape}"
                    )
                device.copy_into(nitsots[m].row(k), out)
            if op.until and bool(outs[-1]):  # the one per-step read: a scalar
                done = k + 1
                break
        return self._results(device, states, nitsots, done)

    def _state(self, device, i: int, init, steps: int) -> tuple:
        """(buffer holding the initial rows, its length, row shape, lag, tap rows) of state i."""
        op = self.op
        lag = op.lag(i)
        taps = op.tap_slices()[i]
        if init.shape[0] < lag:
            raise ValueError(
                f"scan: {op.name_of('output', i)} has taps {list(op.state_taps[i])}, which reach "
                f"{lag} steps before the start, but its initial value has {init.shape[0]} row(s)"
            )
        name = op.name_of("output", i)
        op._check_rows(op.inner_inputs[taps.start], init.shape[1:], name, "initial value")
        keep = op.keep[i] if i < len(op.keep) else 0
        # a kept-last-rows state lives in a ring of lag + 1 rows at least (as the reference loop)
        size = max(lag + 1, keep) if keep else lag + steps
        buffer = device.empty((size,) + tuple(init.shape[1:]), init.dtype)
        if lag:
            device.copy_into(buffer.rows(lag), init.rows(lag))
        return buffer, size, buffer.shape[1:], lag, [lag + d for d in op.state_taps[i]]

    def _results(self, device, states: list, nitsots: list, done: int) -> tuple:
        op = self.op
        results = []
        for i, (buffer, size, row, lag, _) in enumerate(states):
            keep = op.keep[i] if i < len(op.keep) else 0
            if not keep:
                results.append(buffer.rows(lag + done))
                continue
            out = device.empty((keep,) + row, buffer.dtype)
            for j, r in enumerate(range(lag + done - keep, lag + done)):
                device.copy_into(out.row(j), buffer.row(r % size))
            results.append(out)
        for m in range(op.n_nitsot):
            out = nitsots[m]
            if out is None:  # no step ran: the rows' shape comes from the static type
                type_ = op.inner_outputs[op.n_states + m].type
                out = device.empty((0,) + tuple(d or 0 for d in type_.shape), type_.dtype)
            results.append(out.rows(done))
        return tuple(results)


KERNEL_OPS = (Scan, IfElse)  # every node of these runs on the device (backend's coverage test)


def lowering(var: Var):
    """The lowering of `var` when this module generates its kernel, else None."""
    if isinstance(var.op, Scan):
        return ScanLowering(var)
    if isinstance(var.op, IfElse):
        return IfElseLowering(var)
    return None
