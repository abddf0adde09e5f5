"""Scan and ifelse rewrites: drop unused scan outputs and inputs, hoist loop-invariant and row-wise
work out of loops, keep only the last row of states read only at the end, let branches read values
computed anyway, and optimize the inner graphs.

`optimize_scans(outputs, optimize_body)` runs them all; each is a function `list[Var] -> list[Var]`.
They run after differentiation (at compile time), so a gradient never sees a rewritten scan.
"""

from __future__ import annotations

import dataclasses
from typing import Callable, Sequence

import numpy as np

from ..graph import tensor as T
from ..graph.ops.composite import Proj
from ..graph.ops.elemwise import Add, Elemwise, Second
from ..graph.ops.ifelse import IfElse
from ..graph.ops.linalg import Dot
from ..graph.ops.random import RandomOp
from ..graph.ops.scan import Scan, inner_placeholder
from ..graph.ops.shape import DimShuffle
from ..graph.ops.shape_alloc import Alloc
from ..graph.ops.subtensor import Subtensor
from ..graph.type import TupleType
from ..graph.var import Constant, Var, replace, toposort
from .rules.common import constant_value, like

__all__ = [
    "optimize_scans", "merge_extended_scans", "prune_scans", "hoist_invariants", "save_memory",
    "products_out_of_loops", "optimize_bodies", "share_branch_work",
]


def optimize_scans(outputs: Sequence[Var], optimize_body: Callable | None = None) -> list[Var]:
    """Every scan rewrite; `optimize_body(list[Var]) -> list[Var]` rewrites the inner graphs."""
    outputs = merge_extended_scans(outputs)
    outputs = prune_scans(outputs)
    outputs = hoist_invariants(outputs)
    outputs = prune_scans(outputs)  # hoisting can leave inputs unused
    outputs = save_memory(outputs)
    outputs = products_out_of_loops(outputs)
    outputs = prune_scans(outputs)  # an accumulator left as its own copy is read by nobody
    outputs = share_branch_work(outputs)
    if optimize_body is not None:
        outputs = optimize_bodies(outputs, optimize_body)
        outputs = prune_scans(outputs)  # a rewritten body may read fewer inputs
    return outputs


def _has_scan(outputs: Sequence[Var]) -> bool:
    return any(isinstance(v.op, (Scan, IfElse)) for v in toposort(outputs))


def _rebuild(outputs: Sequence[Var], transform: Callable) -> list[Var]:
    """Rebuild bottom-up; transform(old_var, new_inputs) gives a replacement Var, or None to keep
    the node (rebuilt on the new inputs). Projections of a replaced Scan follow its `index_map`."""
    new: dict[int, Var] = {}
    index_maps: dict[int, dict] = {}
    for var in toposort(outputs):
        inputs = tuple(new[id(x)] for x in var.inputs)
        out = transform(var, inputs, index_maps)
        if out is None:
            if isinstance(var.op, Proj) and id(inputs[0]) in index_maps:
                out = Var(Proj(index_maps[id(inputs[0])][var.op.index]), inputs, var.name)
            elif all(a is b for a, b in zip(inputs, var.inputs)):
                out = var
            else:
                out = Var(var.op, inputs, var.name)
        new[id(var)] = out
    return [new[id(v)] for v in outputs]


def _users(outputs: Sequence[Var]) -> dict[int, list[Var]]:
    users: dict[int, list[Var]] = {}
    for var in toposort(outputs):
        for x in var.inputs:
            users.setdefault(id(x), []).append(var)
    return users


def _reached(roots: Sequence[Var], inputs: Sequence[Var]) -> set[int]:
    """Ids of the placeholders in `inputs` that `roots` depend on."""
    own = {id(p) for p in inputs}
    return {id(v) for v in toposort(roots, stop=set(inputs)) if id(v) in own}


# -- one loop for a scan and its extension ------------------------------------------------------
def merge_extended_scans(outputs: Sequence[Var]) -> list[Var]:
    """A scan and a copy of it with more per-step outputs, on the same inputs (the gradient's
    copy of a forward loop that also stores what the backward loop reads), run as one loop: the
    copy, whose first outputs are the scan's own."""
    outputs = list(outputs)
    nodes = [v for v in toposort(outputs) if isinstance(v.op, Scan)]
    if len(nodes) < 2:
        return outputs
    roots = {id(v) for v in outputs}
    into: dict[int, Var] = {}
    for a in nodes:
        if id(a) in roots:
            continue
        longest = [b for b in nodes if b is not a and _extends(b, a)]
        if longest:
            into[id(a)] = max(longest, key=lambda b: b.op.n_nitsot)
    if not into:
        return outputs
    for a_id, b in list(into.items()):  # a chain a < b < c goes straight to c
        while id(b) in into:
            b = into[id(b)]
        into[a_id] = b
    rebuilt: dict[int, Var] = {}

    def transform(var, inputs, index_maps):
        if not isinstance(var.op, Scan):
            return None
        target = into.get(id(var), var)
        node = rebuilt.get(id(target))
        if node is None:  # a and its extension have the same inputs: either one's new inputs do
            node = rebuilt[id(target)] = Var(target.op, inputs, target.name)
            index_maps[id(node)] = {i: i for i in range(len(target.type.types))}
        return node

    return _rebuild(outputs, transform)


def _extends(b: Var, a: Var) -> bool:
    """Is Scan b the Scan a with per-step outputs appended, on the same inputs?"""
    x, y = a.op, b.op
    if y.n_nitsot <= x.n_nitsot or len(a.inputs) != len(b.inputs):
        return False
    if any(p is not q for p, q in zip(a.inputs, b.inputs)):
        return False
    if len(x.inner_inputs) != len(y.inner_inputs):
        return False
    if any(p is not q for p, q in zip(x.inner_inputs, y.inner_inputs)):
        return False
    same = ("n_seqs", "state_taps", "until", "exact_length", "truncate_gradient", "keep")
    if any(getattr(x, f) != getattr(y, f) for f in same):
        return False
    n = x.n_states + x.n_nitsot
    own = list(y.inner_outputs[:n]) + (list(y.inner_outputs[-1:]) if y.until else [])
    theirs = list(x.inner_outputs[:n]) + (list(x.inner_outputs[-1:]) if x.until else [])
    return all(p is q for p, q in zip(own, theirs))


# -- dropping unused outputs and inputs ---------------------------------------------------------
def prune_scans(outputs: Sequence[Var]) -> list[Var]:
    """Drop the scan outputs nothing reads (and the states and inputs only they needed)."""
    outputs = list(outputs)
    if not _has_scan(outputs):
        return outputs
    users = _users(outputs)
    roots = {id(v) for v in outputs}

    def transform(var, inputs, index_maps):
        if not isinstance(var.op, Scan) or id(var) in roots:
            return None
        used = {u.op.index for u in users.get(id(var), []) if isinstance(u.op, Proj)}
        pruned = _prune(var.op, used)
        if pruned is None:
            return None
        op, kept_inputs, index_map = pruned
        node = Var(op, tuple(inputs[j] for j in kept_inputs), var.name)
        index_maps[id(node)] = index_map
        return node

    return _rebuild(outputs, transform)


def _prune(op: Scan, used: set) -> tuple | None:
    n_s, n_m = op.n_states, op.n_nitsot
    inner_in, inner_out = list(op.inner_inputs), list(op.inner_outputs)
    slices = op.tap_slices()
    tap_owner = {id(p): i for i, sl in enumerate(slices) for p in inner_in[sl]}
    states = {i for i in used if i < n_s}
    nitsots = sorted(m for m in range(n_m) if n_s + m in used)
    while True:  # a kept state keeps every state its next value reads
        needed = [inner_out[i] for i in sorted(states)] + [inner_out[n_s + m] for m in nitsots]
        needed += [inner_out[-1]] if op.until else []
        reached = _reached(needed, inner_in)
        more = {tap_owner[r] for r in reached if r in tap_owner} - states
        if not more:
            break
        states |= more
    states = sorted(states)
    seqs = [k for k in range(op.n_seqs) if id(inner_in[k]) in reached]
    n_ns = op.n_nonseqs
    ns_start = len(inner_in) - n_ns
    nonseqs = [n for n in range(n_ns) if id(inner_in[ns_start + n]) in reached]
    same = (len(states), len(nitsots), len(seqs), len(nonseqs)) == (n_s, n_m, op.n_seqs, n_ns)
    if same:
        return None
    if not states and not nitsots:
        return None
    new_in = [inner_in[k] for k in seqs] + [p for i in states for p in inner_in[slices[i]]]
    new_in += [inner_in[ns_start + n] for n in nonseqs]
    new_out = [inner_out[i] for i in states] + [inner_out[n_s + m] for m in nitsots]
    new_out += [inner_out[-1]] if op.until else []
    old_names = list(op.names) if len(op.names) == op.n_seqs + n_s + n_m else []
    names = []
    if old_names:
        names = [old_names[k] for k in seqs] + [old_names[op.n_seqs + i] for i in states]
        names += [old_names[op.n_seqs + n_s + m] for m in nitsots]
    new_op = dataclasses.replace(
        op, inner_inputs=tuple(new_in), inner_outputs=tuple(new_out), n_seqs=len(seqs),
        state_taps=tuple(op.state_taps[i] for i in states), n_nitsot=len(nitsots),
        names=tuple(names),
        keep=tuple(op.keep[i] for i in states) if op.keep else (),
    )
    kept_inputs = [0] + [1 + k for k in seqs] + [1 + op.n_seqs + i for i in states]
    kept_inputs += [1 + op.n_seqs + n_s + n for n in nonseqs]
    index_map = {i: j for j, i in enumerate(states)}
    index_map.update({n_s + m: len(states) + j for j, m in enumerate(nitsots)})
    return new_op, kept_inputs, index_map


# -- hoisting ------------------------------------------------------------------------------------
def hoist_invariants(outputs: Sequence[Var]) -> list[Var]:
    """Move out of each scan the inner work that does not change between steps (computed once),
    and the row-wise work on sequences (elementwise ops, x_t @ W) as one computation over all
    rows."""
    outputs = list(outputs)
    if not _has_scan(outputs):
        return outputs

    def transform(var, inputs, index_maps):
        if not isinstance(var.op, Scan):
            return None
        hoisted = _hoist(var.op, list(inputs))
        if hoisted is None:
            return None
        op, new_inputs = hoisted
        node = Var(op, tuple(new_inputs), var.name)
        index_maps[id(node)] = {i: i for i in range(len(var.type.types))}
        return node

    return _rebuild(outputs, transform)


def _hoist(op: Scan, inputs: list[Var]) -> tuple | None:
    inner_in, inner_out = list(op.inner_inputs), list(op.inner_outputs)
    n_steps, seqs, inits, nonseqs = op.split_inputs(inputs)
    n_ns = op.n_nonseqs
    ns_ps = inner_in[len(inner_in) - n_ns :]
    seq_ps = inner_in[: op.n_seqs]
    outer_of = {id(p): x for p, x in zip(ns_ps, nonseqs)}
    # Sequences may be longer than the loop runs (Theano cuts them to the shortest): batch n rows.
    seq_of = {id(p): s[:n_steps] for p, s in zip(seq_ps, seqs)}
    # "inv": the same at every step; "row": row k of a whole-sequence value; "var": anything else
    kind: dict[int, str] = {}
    order = toposort(inner_out, stop=set(inner_in))
    for v in order:
        if id(v) in outer_of or isinstance(v.op, Constant):
            kind[id(v)] = "inv"
        elif id(v) in seq_of:
            kind[id(v)] = "row"
        elif not v.inputs or isinstance(v.type, TupleType):
            kind[id(v)] = "var"
        else:
            kinds = {kind[id(x)] for x in v.inputs}
            if kinds <= {"inv"} and not _stateful(v):
                kind[id(v)] = "inv"
            elif "var" not in kinds and _row_wise(v, kind):
                kind[id(v)] = "row"
            else:
                kind[id(v)] = "var"
    users: dict[int, list[Var]] = {}
    for v in order:
        for x in v.inputs:
            users.setdefault(id(x), []).append(v)
    _keep_elementwise_rows(order, kind, users)
    out_ids = {id(v) for v in inner_out}
    moved_inv, moved_row = [], []
    for v in order:
        k = kind[id(v)]
        if k == "var" or not v.inputs or id(v) in seq_of:
            continue
        if id(v) in out_ids or any(kind[id(u)] != k for u in users.get(id(v), [])):
            (moved_inv if k == "inv" else moved_row).append(v)
    if not moved_inv and not moved_row:
        return None
    mapping: dict = {}
    new_seq_ps, new_seqs, new_ns_ps, new_ns = [], [], [], []
    for v in moved_inv:
        outer = replace([v], {p: outer_of[id(p)] for p in ns_ps})[0]
        mapping[v] = p = inner_placeholder(v.type, "hoisted")
        new_ns_ps.append(p)
        new_ns.append(outer)
    batched: dict[int, Var] = {}
    for v in moved_row:
        mapping[v] = p = inner_placeholder(v.type, "hoisted")
        new_seq_ps.append(p)
        new_seqs.append(_batch(v, kind, seq_of, outer_of, batched))
    new_out = replace(inner_out, mapping)
    n_taps = sum(len(t) for t in op.state_taps)
    new_in = seq_ps + new_seq_ps + inner_in[op.n_seqs : op.n_seqs + n_taps] + ns_ps + new_ns_ps
    names = list(op.names)
    if len(names) == op.n_seqs + op.n_states + op.n_nitsot:
        moved = "a row-wise computation moved out of the loop"
        names[op.n_seqs : op.n_seqs] = [moved] * len(new_seqs)
    new_op = dataclasses.replace(
        op, inner_inputs=tuple(new_in), inner_outputs=tuple(new_out),
        n_seqs=op.n_seqs + len(new_seqs), names=tuple(names),
    )
    return new_op, [n_steps] + seqs + new_seqs + inits + nonseqs + new_ns


def _keep_elementwise_rows(order: list[Var], kind: dict, users: dict) -> None:
    """Row-wise elementwise work moves out only as part of a row-wise product's operand: done for
    all steps at once it costs the same arithmetic, as separate passes over whole-sequence
    temporaries, where in the loop it fuses with the step's other elementwise work on rows that
    stay in cache (an LSTM's backward loop spent 1.4 ms of 17 on such hoisted passes)."""
    feeds_product: set[int] = set()  # row-wise products and the row-wise work of their operands
    for v in reversed(order):
        if kind[id(v)] == "row" and (isinstance(v.op, Dot) or any(
            kind[id(u)] == "row" and id(u) in feeds_product for u in users.get(id(v), [])
        )):
            feeds_product.add(id(v))
    for v in order:
        if kind[id(v)] == "row" and v.inputs and id(v) not in feeds_product:
            kind[id(v)] = "var"


def _stateful(v: Var) -> bool:
    """Random draws read a stream state: never moved (they are not loop-invariant in meaning)."""
    return isinstance(v.op, RandomOp)


def _row_wise(v: Var, kind: dict) -> bool:
    """Can v be computed for all steps at once from whole sequences and invariants?"""
    kinds = [kind[id(x)] for x in v.inputs]
    if isinstance(v.op, Elemwise):
        return True
    if isinstance(v.op, Dot):
        a, b = v.inputs
        return kinds == ["row", "inv"] and b.ndim == 2 and a.ndim >= 1
    return False


def _batch(v: Var, kind: dict, seq_of: dict, outer_of: dict, done: dict) -> Var:
    """The whole-sequence value whose row k is v at step k."""
    if id(v) in done:
        return done[id(v)]
    if id(v) in seq_of:
        out = seq_of[id(v)]
    elif isinstance(v.op, Dot):
        a, b = v.inputs
        out = T.dot(_batch(a, kind, seq_of, outer_of, done), _invariant(b, outer_of))
    else:  # elementwise: give the time axis to every row-wise input, in front of its row axes
        parts = []
        for x in v.inputs:
            if kind[id(x)] == "row":
                whole = _batch(x, kind, seq_of, outer_of, done)
                if x.ndim < v.ndim:
                    pattern = [0] + ["x"] * (v.ndim - x.ndim) + list(range(1, x.ndim + 1))
                    whole = whole.dimshuffle(*pattern)
                parts.append(whole)
            else:  # an invariant broadcasts over the time axis and any missing row axes
                whole = _invariant(x, outer_of)
                parts.append(T.shape_padleft(whole, v.ndim + 1 - x.ndim))
        out = Var(v.op, tuple(parts))
    if out.dtype != v.dtype:
        out = T.cast(out, v.dtype)
    done[id(v)] = out
    return out


def _invariant(v: Var, outer_of: dict) -> Var:
    return replace([v], {x_p: outer_of[id(x_p)] for x_p in toposort([v]) if id(x_p) in outer_of})[0]


# -- memory ------------------------------------------------------------------------------------
def save_memory(outputs: Sequence[Var]) -> list[Var]:
    """A state whose rows are read only at the end (out[-1]: reduce, updates, gradient sums) keeps
    only its last row instead of its whole history."""
    outputs = list(outputs)
    if not _has_scan(outputs):
        return outputs
    users = _users(outputs)
    roots = {id(v) for v in outputs}
    readers: dict[int, tuple] = {}  # id(reader of the last row) -> (old scan, state index)
    plans: dict[int, list[int]] = {}
    for var in toposort(outputs):
        if not isinstance(var.op, Scan) or any(var.op.keep) or id(var) in roots:
            continue
        last_only = []
        for u in users.get(id(var), []):
            i = u.op.index
            if i >= var.op.n_states or id(u) in roots:
                continue
            found = _last_row_readers(u, var.op.lag(i), users, roots)
            if found is not None:
                last_only.append(i)
                for r in found:
                    readers[id(r)] = (var, i)
        if last_only:
            plans[id(var)] = last_only
    if not plans:
        return outputs

    def transform(var, inputs, index_maps):
        if id(var) in plans:
            keep = [1 if i in plans[id(var)] else 0 for i in range(var.op.n_states)]
            node = Var(dataclasses.replace(var.op, keep=tuple(keep)), inputs, var.name)
            index_maps[id(node)] = {i: i for i in range(len(var.type.types))}
            new_nodes[id(var)] = node
            return node
        if id(var) in readers:
            scan_node, i = readers[id(var)]
            return Var(Proj(i), (new_nodes[id(scan_node)],))[-1]
        return None

    new_nodes: dict[int, Var] = {}
    return _rebuild(outputs, transform)


def _last_row_readers(proj: Var, lag: int, users: dict, roots: set) -> list[Var] | None:
    """The nodes reading proj[-1] (directly or as proj[lag:][-1]), if that is all that reads it."""
    found = []
    for u in users.get(id(proj), []):
        if not isinstance(u.op, Subtensor):
            return None
        if u.op.idx == (-1,):
            found.append(u)
        elif u.op.idx == (("slice", lag, None, None),) and id(u) not in roots:
            for w in users.get(id(u), []):
                if not isinstance(w.op, Subtensor) or w.op.idx != (-1,):
                    return None
                found.append(w)
        else:
            return None
    return found or None


# -- accumulated products ------------------------------------------------------------------------
def products_out_of_loops(outputs: Sequence[Var]) -> list[Var]:
    """A state read only at the end that accumulates matrix products, acc + dot(a_t, b_t) (the
    gradient of a weight a loop multiplies by, as back-propagation through time builds it), has
    its products summed after the loop as one tensordot of the stacked a_t and b_t: one large
    GEMM instead of one small GEMM per step. Other terms of the sum stay in the loop."""
    outputs = list(outputs)
    if not _has_scan(outputs):
        return outputs
    users = _users(outputs)
    roots = {id(v) for v in outputs}
    plans: dict[int, dict] = {}  # id(scan) -> {state index: (rest, [(a, b, axes_a, axes_b)])}
    readers: dict[int, tuple] = {}  # id(reader of the last row) -> (scan, state index)
    for var in toposort(outputs):
        if not isinstance(var.op, Scan) or id(var) in roots:
            continue
        found = {}
        for u in users.get(id(var), []):
            i = u.op.index
            if i >= var.op.n_states or id(u) in roots or not _keeps_last_row(var.op, i):
                continue
            last = users.get(id(u), [])
            if not last or not all(isinstance(r.op, Subtensor) and r.op.idx == (-1,) for r in last):
                continue
            split = _accumulated_products(var.op, i)
            if split is not None:
                found[i] = split
                for r in last:
                    readers[id(r)] = (var, i)
        if found:
            plans[id(var)] = found
    if not plans:
        return outputs
    new_nodes: dict[int, tuple] = {}  # id(old scan) -> (new scan, {i: [(a, b) output indices]})

    def transform(var, inputs, index_maps):
        if id(var) in plans:
            node, stacked = _with_stacked_factors(var, inputs, plans[id(var)])
            index_maps[id(node)] = {j: j for j in range(len(var.type.types))}
            new_nodes[id(var)] = (node, stacked)
            return node
        if id(var) in readers:
            scan, i = readers[id(var)]
            node, stacked = new_nodes[id(scan)]
            products = []
            for (ra, rb), (_, _, axes_a, axes_b) in zip(stacked[i], plans[id(scan)][i][1]):
                a, b = _stacked(node, ra), _stacked(node, rb)
                products.append(T.tensordot(a, b, axes=[list(axes_a), list(axes_b)]))
            if plans[id(scan)][i][0] is None:  # nothing left in the loop: the state never changes
                initial = node.inputs[1 + scan.op.n_seqs + i]
                total = _sum_of(products, var) if _zeros(initial) else None
                if total is not None:  # a gradient's zero start: the products alone
                    return total
                total = initial[-1]
            else:
                total = Var(Proj(i), (node,))[-1]
            for product in products:
                total = total + product
            return T.cast(total, var.dtype) if total.dtype != var.dtype else total
        return None

    return _rebuild(outputs, transform)


def _zeros(v: Var) -> bool:
    """Is v zeros by construction (a constant, fill or alloc of 0, possibly dimshuffled)?"""
    while isinstance(v.op, DimShuffle):
        v = v.inputs[0]
    if isinstance(v.op, Second):
        v = v.inputs[1]
    elif isinstance(v.op, Alloc):
        v = v.inputs[0]
    value = constant_value(v)  # looks through dimshuffles
    return value is not None and not np.any(value)


def _sum_of(products: list, var: Var) -> Var | None:
    """The products added, standing for `var` (the accumulator's last row); None when their
    static type cannot (a product typed to broadcast where var is not)."""
    total = products[0]
    for product in products[1:]:
        total = total + product
    return like(var, total)


def _keeps_last_row(op: Scan, i: int) -> bool:
    return i < len(op.keep) and op.keep[i] == 1 and op.state_taps[i] == (-1,)


def _accumulated_products(op: Scan, i: int) -> tuple | None:
    """(the other terms or None, [(a, b, axes_a, axes_b)]) when state i's next value is its tap
    plus terms of which some are 2-d products; None when it is not of that form."""
    tap = op.inner_inputs[op.tap_slices()[i].start]
    out = op.inner_outputs[i]
    if not isinstance(out.op, Add) or out.type != tap.type:
        return None
    terms = _terms(out)
    if sum(t is tap for t in terms) != 1 or _uses(op, tap) != 1:
        return None
    products, rest = [], []
    for t in terms:
        if t is tap:
            continue
        factors = _product_factors(t) if t.type == tap.type else None
        if factors is None:
            rest.append(t)
        else:
            products.append(factors)
    if not products:
        return None
    total = None
    for t in rest:
        total = t if total is None else total + t
    return total, products


def _terms(v: Var) -> list[Var]:
    """The summands of a tree of Adds."""
    if isinstance(v.op, Add):
        return [t for x in v.inputs for t in _terms(x)]
    return [v]


def _uses(op: Scan, p: Var) -> int:
    """How many times the inner graph reads `p` (as an input of a node or as an output)."""
    count = sum(x is p for v in toposort(list(op.inner_outputs), stop=set(op.inner_inputs))
                for x in v.inputs)
    return count + sum(o is p for o in op.inner_outputs)


def _product_factors(t: Var) -> tuple | None:
    """(a, b, axes_a, axes_b) with sum over steps of t = tensordot(stacked a, stacked b, axes)."""
    if not isinstance(t.op, Dot) or t.ndim != 2 or any(x.ndim != 2 for x in t.inputs):
        return None
    a, b = t.inputs
    if a.dtype != t.dtype or b.dtype != t.dtype:
        return None
    axes_a, axes_b = (0, 2), (0, 1)
    if _is_transpose(a):  # a = x.T: stack x, whose first axis is the summed one
        a, axes_a = a.inputs[0], (0, 1)
    if _is_transpose(b):
        b, axes_b = b.inputs[0], (0, 2)
    return a, b, axes_a, axes_b


def _is_transpose(v: Var) -> bool:
    return isinstance(v.op, DimShuffle) and v.op.new_order == (1, 0)


def _with_stacked_factors(var: Var, inputs: tuple, plan: dict) -> tuple:
    """The scan with each planned state's products removed from its update and their factors
    appended as per-step outputs; {state: [(where a comes from, where b comes from)]} (`_stack`)."""
    op = var.op
    n_s, n_m = op.n_states, op.n_nitsot
    outs = list(op.inner_outputs)
    states, nitsots = outs[:n_s], outs[n_s : n_s + n_m]
    cond = outs[n_s + n_m :]
    stacked: dict[int, list] = {}
    for i, (rest, products) in plan.items():
        tap = op.inner_inputs[op.tap_slices()[i].start]
        states[i] = tap if rest is None else tap + rest
        if states[i].dtype != tap.dtype:
            states[i] = T.cast(states[i], tap.dtype)
        stacked[i] = [(_stack(a, op, nitsots), _stack(b, op, nitsots)) for a, b, _, _ in products]
    names = list(op.names) + [""] * max(0, op.n_seqs + n_s + n_m - len(op.names))
    names += [""] * (len(nitsots) - n_m)
    new_op = dataclasses.replace(
        op, inner_outputs=tuple(states + nitsots + cond), n_nitsot=len(nitsots),
        names=tuple(names),
    )
    return Var(new_op, inputs, var.name), stacked


def _stack(factor: Var, op: Scan, nitsots: list) -> tuple:
    """Where the per-step values of `factor` come from after the loop: ("seq", k) when it is
    sequence k's row (the sequence itself, no copy; not with `until`, which may stop early), else
    ("out", index) of a per-step output, appended to `nitsots` unless one already gives it."""
    for k in range(op.n_seqs):
        if factor is op.inner_inputs[k] and not op.until:
            return ("seq", k)
    for m, v in enumerate(nitsots):
        if v is factor:
            return ("out", op.n_states + m)
    nitsots.append(factor)
    return ("out", op.n_states + len(nitsots) - 1)


def _stacked(node: Var, ref: tuple) -> Var:
    """The stacked per-step values `ref` (from `_stack`) of the rebuilt scan `node`."""
    kind, j = ref
    if kind == "seq":
        seq = node.inputs[1 + j]
        return seq[: node.inputs[0]]
    return Var(Proj(j), (node,))


# -- inner graphs ------------------------------------------------------------------------------
def optimize_bodies(outputs: Sequence[Var], optimize_body: Callable) -> list[Var]:
    """Rewrite the inner graph of every scan and ifelse with `optimize_body` (the pipeline)."""
    outputs = list(outputs)
    if not _has_scan(outputs):
        return outputs

    def transform(var, inputs, index_maps):
        op = var.op
        if isinstance(op, Scan):
            body = tuple(optimize_body(list(op.inner_outputs)))
            new_op = dataclasses.replace(op, inner_outputs=body)
        elif isinstance(op, IfElse):
            new_op = dataclasses.replace(
                op, then_outputs=tuple(optimize_body(list(op.then_outputs))),
                else_outputs=tuple(optimize_body(list(op.else_outputs))),
            )
        else:
            return None
        node = Var(new_op, inputs, var.name)
        if isinstance(var.type, TupleType):
            index_maps[id(node)] = {i: i for i in range(len(var.type.types))}
        return node

    return _rebuild(outputs, transform)


# -- ifelse --------------------------------------------------------------------------------------
def share_branch_work(outputs: Sequence[Var]) -> list[Var]:
    """A branch of an ifelse that recomputes a value the function computes anyway (outside any
    branch) gets that value as an input instead: laziness never costs a second computation."""
    outputs = list(outputs)
    order = toposort(outputs)
    if not any(isinstance(v.op, IfElse) for v in order):
        return outputs
    outer_ids = {id(v) for v in order}
    # values below an ifelse are rebuilt when it changes: only share values independent of them
    after_ifelse: set[int] = set()
    for v in order:
        if isinstance(v.op, IfElse) or any(id(x) in after_ifelse for x in v.inputs):
            after_ifelse.add(id(v))

    def transform(var, inputs, index_maps):
        if not isinstance(var.op, IfElse):
            return None
        cut = _shared_branch_values(var, outer_ids, after_ifelse)
        if not cut:
            return None
        op = var.op
        mapping = {n: inner_placeholder(n.type, "shared") for n in cut}
        new_op = dataclasses.replace(
            op, inner_inputs=op.inner_inputs + tuple(mapping.values()),
            then_outputs=tuple(replace(list(op.then_outputs), mapping)),
            else_outputs=tuple(replace(list(op.else_outputs), mapping)),
        )
        node = Var(new_op, tuple(inputs) + tuple(cut.values()), var.name)
        if isinstance(var.type, TupleType):
            index_maps[id(node)] = {i: i for i in range(len(var.type.types))}
        return node

    return _rebuild(outputs, transform)


def _shared_branch_values(var: Var, outer_ids: set, after_ifelse: set) -> dict:
    """{inner node: the identical outer node} for the largest such nodes of the branches."""
    op: IfElse = var.op
    outer: dict[int, Var] = {id(p): x for p, x in zip(op.inner_inputs, var.inputs[1:])}
    found: dict = {}
    for branch in (op.then_outputs, op.else_outputs):
        order = toposort(branch, stop=set(op.inner_inputs))
        for n in order:
            if id(n) in outer:
                continue
            if not n.inputs:
                if isinstance(n.op, Constant):
                    outer[id(n)] = n
                continue
            if not all(id(x) in outer for x in n.inputs):
                continue
            key = (n.op, tuple(id(outer[id(x)]) for x in n.inputs))
            same = Var._interned.get(key)  # the outer node, if the function builds it
            if same is not None and id(same) in outer_ids and id(same) not in after_ifelse:
                outer[id(n)] = same
        users: dict[int, list] = {}
        for n in order:
            for x in n.inputs:
                users.setdefault(id(x), []).append(n)
        roots = {id(o) for o in branch}
        for n in order:
            if not n.inputs or id(n) not in outer or n in found:
                continue
            if id(n) in roots or any(id(u) not in outer for u in users.get(id(n), [])):
                found[n] = outer[id(n)]
    return found
