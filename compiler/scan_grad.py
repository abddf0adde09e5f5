"""The gradient of a scan (back-propagation through time), itself a scan that runs backwards.

Forward step k reads sequence rows k, the state rows k + lag + d for each tap d (buffer rows), and
writes row k + lag of each state. The backward scan visits the forward steps from the last to the
first. For a state with lag L it carries L accumulators w[1..L]: before it handles forward step k,
w[j] holds the cotangent gathered so far for buffer row k + j. Step k's state row is complete at
that point (w[L] plus the cotangent the caller gave for that row), the inner graph's pullback turns
it into cotangents for the taps, and the window shifts by one row. Non-sequences accumulate their
cotangent in a state; each sequence row's cotangent is a per-step output.
"""

from __future__ import annotations

import dataclasses
from typing import Sequence

import numpy as np

from ..graph import tensor as T
from ..graph.ops import elemwise as E
from ..graph.ops import elemwise_math as EM
from ..graph.ops import shape as S
from ..graph.ops.composite import Proj
from ..graph.ops.scan import Scan, inner_placeholder
from ..graph.ops.subtensor import IncSubtensor, Subtensor
from ..graph.type import TensorType, is_discrete
from ..graph.var import Var, replace, toposort
from .rules.common import constant_value


def _diff(var: Var) -> bool:
    return not is_discrete(var.dtype)


def scan_pullback(inputs: Sequence[Var], node: Var, g) -> tuple:
    """Cotangents for the inputs of the Scan `node`, given a tuple of cotangents of its outputs."""
    from .autodiff import backprop

    op: Scan = node.op
    if any(op.keep):
        raise NotImplementedError(
            "the gradient of a scan that keeps only its last rows (rewritten to save memory)"
        )
    gs = g if isinstance(g, tuple) else (g,)
    n_steps, seqs, inits, nonseqs = op.split_inputs(list(inputs))
    n_s, n_m = op.n_states, op.n_nitsot
    inner_in, inner_out = list(op.inner_inputs), list(op.inner_outputs)
    tap_slices = op.tap_slices()
    outs = [Var(Proj(i), (node,)) for i in range(n_s + n_m)]
    lags = [op.lag(i) for i in range(n_s)]
    if not op.until:
        steps = n_steps
    elif n_s:
        steps = outs[0].shape[0] - lags[0]
    else:
        steps = outs[0].shape[0]
    truncate = op.truncate_gradient
    back_steps = T.minimum(steps, truncate) if truncate >= 0 else steps

    def backward(rows: Var) -> Var:
        """The rows of a forward-aligned array (row k = forward step k) in backward order."""
        rows = rows[:steps][::-1]
        return rows[:back_steps] if truncate >= 0 else rows

    diff_states = [i for i in range(n_s) if _diff(inits[i])]
    diff_seqs = [k for k in range(op.n_seqs) if _diff(seqs[k])]
    n_ns = op.n_nonseqs
    nonseq_ps = inner_in[len(inner_in) - n_ns :]
    diff_nonseqs = [n for n in range(n_ns) if _diff(nonseqs[n])]
    # -- sequences of the backward scan -------------------------------------------------------
    b_seq_ps: list[Var] = []
    b_seq_outer: list[Var] = []
    for k in range(op.n_seqs):
        b_seq_ps.append(inner_in[k])
        b_seq_outer.append(backward(seqs[k]))
    for i in range(n_s):
        for p, d in zip(inner_in[tap_slices[i]], op.state_taps[i]):
            b_seq_ps.append(p)
            b_seq_outer.append(backward(outs[i][lags[i] + d :]))
    stored: dict = {}  # forward inner outputs read back from the forward results, not recomputed
    for i in range(n_s):
        if inner_out[i].inputs and inner_out[i] not in stored:
            stored[inner_out[i]] = q = inner_placeholder(inner_out[i].type, "stored")
            b_seq_ps.append(q)
            b_seq_outer.append(backward(outs[i][lags[i] :]))
    for m in range(n_m):
        out = inner_out[n_s + m]
        if out.inputs and out not in stored:
            stored[out] = q = inner_placeholder(out.type, "stored")
            b_seq_ps.append(q)
            b_seq_outer.append(backward(outs[n_s + m]))
    seeds: dict = {}

    def seed(var: Var, cot: Var) -> None:
        seeds[var] = seeds[var] + cot if var in seeds else cot

    given: dict = {}
    # a state whose cotangent is zero but on its last row (a loss on the final state): that row
    # starts the backward window, instead of a sequence of zero rows read at every step
    last_only = {
        i: last for i in diff_states
        if gs[i] is not None and truncate < 0 and not op.until
        and (last := _last_row_only(gs[i], lags[i])) is not None
    }
    for i in diff_states:
        if gs[i] is not None and i not in last_only:
            row = TensorType(gs[i].dtype, gs[i].type.shape[1:])
            given[i] = c = inner_placeholder(row, "g_state")
            b_seq_ps.append(c)
            b_seq_outer.append(backward(gs[i][lags[i] :]))
    for m in range(n_m):
        out = inner_out[n_s + m]
        if gs[n_s + m] is not None and _diff(out):
            gz = gs[n_s + m]
            e = inner_placeholder(TensorType(gz.dtype, gz.type.shape[1:]), "g_out")
            b_seq_ps.append(e)
            b_seq_outer.append(backward(gs[n_s + m]))
            seed(out, e)
    # -- states of the backward scan: the windows, then the non-sequence accumulators -----------
    windows: dict[int, list[Var]] = {}
    b_state_ps, b_state_init = [], []
    for i in diff_states:
        row = inner_in[tap_slices[i].start].type
        windows[i] = [inner_placeholder(row, f"w{j}") for j in range(1, lags[i] + 1)]
        b_state_ps += windows[i]
        b_state_init += [T.zeros_like(inits[i][:1])] * (lags[i] - 1)
        if i in last_only:  # w[L] holds the cotangent of the last row when the backward loop starts
            start = T.cast(T.shape_padleft(last_only[i]), inits[i].dtype)
            b_state_init.append(start + T.zeros_like(inits[i][:1]))
        else:
            b_state_init.append(T.zeros_like(inits[i][:1]))
        total = windows[i][-1]
        if i in given:
            total = total + given[i]
        seed(inner_out[i], total)
    wrt = [inner_in[k] for k in diff_seqs]
    wrt += [p for i in diff_states for p in inner_in[tap_slices[i]]]
    wrt += [nonseq_ps[n] for n in diff_nonseqs]
    totals, _ = backprop(seeds, wrt) if seeds else ({}, set())

    def cot(p: Var) -> Var | None:
        return totals.get(id(p))

    # An input whose placeholder gets no cotangent in the step is disconnected (None), as in Theano.
    diff_nonseqs = [n for n in diff_nonseqs if cot(nonseq_ps[n]) is not None]
    diff_seqs = [k for k in diff_seqs if cot(inner_in[k]) is not None]
    accs = {n: inner_placeholder(nonseqs[n].type, "acc") for n in diff_nonseqs}
    b_state_ps += list(accs.values())
    b_state_init += [T.shape_padleft(T.zeros_like(nonseqs[n])) for n in diff_nonseqs]

    new_states = []
    for i in diff_states:
        lag, w = lags[i], windows[i]
        by_row: dict[int, list] = {}
        for p, d in zip(inner_in[tap_slices[i]], op.state_taps[i]):
            if cot(p) is not None:
                by_row.setdefault(lag + d + 1, []).append(cot(p))  # window index j = L + d + 1
        for j in range(1, lag + 1):
            parts = ([w[j - 2]] if j >= 2 else []) + by_row.get(j, [])
            new_states.append(_sum(parts) if parts else T.zeros_like(w[0]))
    new_states += [accs[n] + cot(nonseq_ps[n]) for n in diff_nonseqs]
    seq_cots = [cot(inner_in[k]) for k in diff_seqs]
    b_outs = new_states + seq_cots
    residuals = _residuals(op, b_outs, stored)
    if residuals:
        # the forward loop stores these per step (as more per-step outputs of a copy of it that
        # the scan rewrites merge with the loop itself), instead of the backward loop redoing them
        extended = _with_outputs(node, residuals)
        for j, value in enumerate(residuals):
            stored[value] = q = inner_placeholder(value.type, "stored")
            b_seq_ps.append(q)
            b_seq_outer.append(backward(Var(Proj(n_s + n_m + j), (extended,))))
    b_outs = replace(b_outs, stored) if stored else b_outs
    b_op = Scan(
        inner_inputs=tuple(b_seq_ps + b_state_ps + list(nonseq_ps)),
        inner_outputs=tuple(_fit_state(o, p) for o, p in zip(b_outs, b_state_ps))
        + tuple(b_outs[len(b_state_ps) :]),
        n_seqs=len(b_seq_ps),
        state_taps=((-1,),) * len(b_state_ps),
        n_nitsot=len(seq_cots),
    )
    b_inputs = [T.cast(back_steps, "int64")] + b_seq_outer + b_state_init + list(nonseqs)
    b_node = Var(b_op, tuple(b_inputs))
    finals = [Var(Proj(j), (b_node,))[-1] for j in range(len(b_state_ps))]
    results: list = [None] * len(inputs)
    position = 0
    for i in diff_states:
        window = T.stack(finals[position : position + lags[i]])
        position += lags[i]
        taps = inner_in[tap_slices[i]]
        if gs[i] is None and all(cot(p) is None for p in taps):
            continue  # the initial value reaches nothing that has a cotangent
        if truncate >= 0:
            window = T.switch(T.le(steps, truncate), window, T.zeros_like(window))
        if gs[i] is not None and i not in last_only:  # (with no step, w[L] is the last row's)
            window = window + gs[i][: lags[i]]
        results[1 + op.n_seqs + i] = window
    for n in diff_nonseqs:
        results[1 + op.n_seqs + n_s + n] = finals[position]
        position += 1
    for j, k in enumerate(diff_seqs):
        rows = Var(Proj(len(b_state_ps) + j), (b_node,))[::-1]
        seq = seqs[k]
        if truncate < 0 and not op.until and op.exact_length:
            results[1 + k] = rows
        else:
            start = steps - back_steps if truncate >= 0 else 0
            results[1 + k] = T.set_subtensor(T.zeros_like(seq)[start:steps], rows)
    return tuple(results)


def _last_row_only(g: Var, lag: int) -> Var | None:
    """y when the cotangent g of a state's whole buffer is zeros with y on its last row, as the
    gradient of outs[lag:][-1] builds it; else None."""
    whole = _written_into_zeros(g)
    if whole is None or whole[1] != (("slice", lag, None, None),):
        return None
    rows = _written_into_zeros(whole[0])
    if rows is None or rows[1] != (-1,):
        return None
    return rows[0]


def _written_into_zeros(v: Var) -> tuple | None:
    """(y, idx) when v is zeros with y written or added at idx (constant index); else None."""
    if not isinstance(v.op, IncSubtensor) or len(v.inputs) != 2:
        return None
    base = v.inputs[0]
    if not isinstance(base.op, E.Second):
        return None
    value = constant_value(base.inputs[1])
    if value is None or np.any(value != 0):
        return None
    return v.inputs[1], v.op.idx


# Ops whose values the backward loop recomputes from the stored ones: views, shapes and plain
# arithmetic. Any other forward value it reads (a product, a transcendental function, a random
# draw) is stored by the forward loop, as PyTorch and JAX keep their residuals.
_CHEAP = (
    E.Add, E.Sub, E.Mul, E.TrueDiv, E.Neg, E.Maximum, E.Minimum, E.Clip, E.Switch, E.EQ, E.NEQ,
    E.LT, E.LE, E.GT, E.GE, E.And, E.Or, E.Xor, E.Invert, E.Second, E.Cast, E.ZeroGrad,
    E.DisconnectedGrad, E.GradClip, E.GradScale, EM.Sqr, EM.Abs, S.DimShuffle, S.Shape, S.Reshape,
    S.MakeVector, S.SpecifyShape, S.Join, S.Copy, Subtensor,
)


def _residuals(op: Scan, b_outs: list, stored: dict) -> list[Var]:
    """The forward inner values worth storing for the backward body `b_outs`: those it reads,
    directly or through cheap forward work it redoes, that are not cheap themselves (in forward
    order). The forward loop's own outputs are stored already."""
    inner_in = set(op.inner_inputs)
    forward = [v for v in toposort(list(op.inner_outputs), stop=inner_in) if v.inputs]
    in_forward = {id(v) for v in forward}
    read = [v for v in b_outs if id(v) in in_forward]
    for v in toposort(b_outs, stop=inner_in):
        if id(v) not in in_forward:
            # zeros_like(x) is second(x, 0): it needs x's shape only, which the canonical
            # rewrites read from x's inputs (fill_of_elemwise)
            values = v.inputs[1:] if isinstance(v.op, E.Second) else v.inputs
            read += [x for x in values if id(x) in in_forward]
    chosen: set[int] = set()
    seen: set[int] = set()
    while read:
        v = read.pop()
        if id(v) in seen or v in stored:
            continue
        seen.add(id(v))
        if isinstance(v.op, _CHEAP) or not isinstance(v.type, TensorType):
            read += [x for x in v.inputs if id(x) in in_forward]
        else:
            chosen.add(id(v))
    return [v for v in forward if id(v) in chosen]


def _with_outputs(node: Var, values: list[Var]) -> Var:
    """The Scan `node` with `values` (forward inner values) as more per-step outputs."""
    op: Scan = node.op
    n_out = op.n_states + op.n_nitsot
    outs = list(op.inner_outputs)
    names = list(op.names)
    if names:
        names += [""] * len(values)
    new_op = dataclasses.replace(
        op, inner_outputs=tuple(outs[:n_out] + list(values) + outs[n_out:]),
        n_nitsot=op.n_nitsot + len(values), names=tuple(names),
    )
    return Var(new_op, node.inputs, node.name)


def _fit_state(value: Var, placeholder: Var) -> Var:
    """A backward state's next value with the placeholder's dtype and (static) shape."""
    if value.dtype != placeholder.dtype:
        value = T.cast(value, placeholder.dtype)
    if value.type.shape != placeholder.type.shape and value.ndim > placeholder.ndim:
        value = T.sum(value, axis=tuple(range(value.ndim - placeholder.ndim)))
    return value


def _sum(parts: list) -> Var:
    total = parts[0]
    for part in parts[1:]:
        total = total + part
    return total
