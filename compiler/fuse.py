"""Elementwise fusion: chains and trees of elementwise ops become one Composite node (one kernel).

Three steps. First each maximal tree of fusable nodes whose inner results have no other reader is folded
into its root. Then independent fused nodes of the same type that read a common input are merged into
one multi-output Composite read through Proj projections (siblings share their loads). Last, a fused
node that reads another's results (stored because something else reads them too) is merged with it
(merge_consumers): the producer's results stay outputs, and the consumer reads them in the loop.
"""

from __future__ import annotations

from typing import Callable, Sequence

import numpy as np

from ..graph.ops.composite import Composite, Proj, placeholder
from ..graph.ops import elemwise as E
from ..graph.ops import elemwise_math as EM
from ..graph.ops.elemwise import Elemwise
from ..graph.ops.shape import DimShuffle
from ..graph.type import TensorType, TupleType
from ..graph.var import Constant, Var, inherited_trace, replace, toposort

Supported = Callable[[Var], bool]


def default_supported(var: Var) -> bool:
    """The py backend runs any elementwise op's perform, so every one fuses."""
    return True


def _fusable(var: Var, supported: Supported) -> bool:
    return isinstance(var.op, Elemwise) and isinstance(var.type, TensorType) and supported(var)


def _scalar_constant(var: Var) -> np.ndarray | None:
    """The value of a one-element constant (possibly under a broadcasting dimshuffle), else None."""
    while isinstance(var.op, DimShuffle):
        var = var.inputs[0]
    if isinstance(var.op, Constant) and var.op.data.size == 1:
        return var.op.data.reshape(()).astype(var.dtype)
    return None


def count_readers(order: list[Var], outputs: Sequence[Var]) -> dict[int, int]:
    """How many nodes read each var of `order`; a graph output counts one more (its caller)."""
    count: dict[int, int] = {id(v): 0 for v in order}
    for var in order:
        for x in var.inputs:
            count[id(x)] += 1
    for out in outputs:
        count[id(out)] += 1  # an output is read by the caller
    return count


def _build_composite(root: Var, members: set[int]) -> tuple[Var, list[Var]]:
    """The scalar body of the tree under `root` and its external inputs, in first-use order."""
    externals: list[Var] = []
    inner: dict[int, Var] = {}

    def convert(var: Var) -> Var:
        done = inner.get(id(var))
        if done is not None:
            return done
        if id(var) in members:
            result = Var(var.op, tuple(convert(x) for x in var.inputs))
        else:
            value = _scalar_constant(var)
            if value is not None:
                result = Var(Constant(value), ())
            else:
                externals.append(var)
                result = placeholder(len(externals) - 1, var.dtype)
        inner[id(var)] = result
        return result

    for var in toposort([root], stop=_NotMember(members)):  # inputs first: convert never recurses deeply
        convert(var)
    return inner[id(root)], externals


class _NotMember:
    """Stops a toposort at nodes outside the fused tree."""

    def __init__(self, members: set[int]) -> None:
        self.members = members

    def __contains__(self, var: Var) -> bool:
        return id(var) not in self.members


def fuse_trees(outputs: Sequence[Var], supported: Supported = default_supported) -> list[Var]:
    """Fold each maximal single-reader tree of fusable elementwise nodes into one Composite."""
    order = toposort(outputs)
    clients = count_readers(order, outputs)
    owner: dict[int, int] = {}  # id of an absorbed node -> id of its root
    trees: dict[int, set[int]] = {}
    for var in reversed(order):
        if id(var) in owner or not _fusable(var, supported):
            continue
        members = {id(var)}
        stack = [var]
        while stack:
            node = stack.pop()
            for x in node.inputs:
                if id(x) in members or id(x) in owner:
                    continue
                if _fusable(x, supported) and clients[id(x)] == 1 and x.ndim == var.ndim:
                    members.add(id(x))
                    owner[id(x)] = id(var)
                    stack.append(x)
        if len(members) > 1:
            trees[id(var)] = members
    new: dict[int, Var] = {}
    for var in order:
        if id(var) in owner:
            continue
        if id(var) in trees:
            body, externals = _build_composite(var, trees[id(var)])
            placeholders = tuple(placeholder(k, x.dtype) for k, x in enumerate(externals))
            with inherited_trace(var.trace):
                fused = Var(Composite(placeholders, (body,)), tuple(new[id(x)] for x in externals))
            new[id(var)] = fused
        elif var.inputs:
            inputs = tuple(new[id(x)] for x in var.inputs)
            new[id(var)] = var if all(a is b for a, b in zip(inputs, var.inputs)) else _rebuild(var, inputs)
        else:
            new[id(var)] = var
    return [new[id(v)] for v in outputs]


def _rebuild(var: Var, inputs: tuple) -> Var:
    if all(a is b for a, b in zip(inputs, var.inputs)):
        return var
    with inherited_trace(var.trace):
        return Var(var.op, inputs, var.name)


def _as_body(var: Var) -> tuple[tuple, tuple, tuple]:
    """(placeholders, outputs, external inputs) of a fused node or of a single elementwise node."""
    if isinstance(var.op, Composite):
        return var.op.placeholders, var.op.outputs, var.inputs
    placeholders = tuple(placeholder(k, x.dtype) for k, x in enumerate(var.inputs))
    return placeholders, (Var(var.op, placeholders),), var.inputs


def _same_runtime_shape(a: Var, b: Var) -> bool:
    """True when two elementwise results surely have one shape: per axis, a static size or a common
    input that does not broadcast there (run time allows broadcasting only on static size-1 axes)."""
    common = [x for x in a.inputs if any(x is y for y in b.inputs)]
    for axis, (da, db) in enumerate(zip(a.type.shape, b.type.shape)):
        if da is not None and da == db:
            continue
        if not any(x.ndim == a.ndim and x.type.shape[axis] != 1 for x in common):
            return False
    return True


def merge_siblings(outputs: Sequence[Var], supported: Supported = default_supported) -> list[Var]:
    """Merge independent fused nodes of one type that read a common input into a multi-output Composite."""
    order = toposort(outputs)
    candidates = [v for v in order if isinstance(v.op, Composite) and isinstance(v.type, TensorType)]
    if len(candidates) < 2:
        return list(outputs)
    bit = {id(v): 1 << k for k, v in enumerate(candidates)}
    below: dict[int, int] = {}  # id -> bitmask of candidates strictly below (ancestors of) the var
    for var in order:
        mask = 0
        for x in var.inputs:
            mask |= below[id(x)] | bit.get(id(x), 0)
        below[id(var)] = mask
    by_input: dict[int, list[Var]] = {}
    for var in candidates:
        for x in set(var.inputs):
            by_input.setdefault(id(x), []).append(var)
    groups: list[list[Var]] = []
    grouped: set[int] = set()
    for var in candidates:
        if id(var) in grouped:
            continue
        group, group_bits, group_below = [var], bit[id(var)], below[id(var)]
        for x in var.inputs:
            for other in by_input.get(id(x), ()):
                if id(other) in grouped or other is var or any(other is g for g in group):
                    continue
                if other.type != var.type or not _same_runtime_shape(var, other):
                    continue
                if below[id(other)] & group_bits or group_below & bit[id(other)]:
                    continue  # one reads the other: merging would make a cycle
                group.append(other)
                group_bits |= bit[id(other)]
                group_below |= below[id(other)]
        if len(group) > 1:
            grouped.update(id(g) for g in group)
            groups.append((group, group_bits, group_below))
    # Two merged groups that depend on each other through different members would form a cycle:
    # this round merges only groups with no dependency between them; the next round sees the rest.
    accepted, taken_bits, taken_below = [], 0, 0
    for group, group_bits, group_below in groups:
        if group_below & taken_bits or taken_below & group_bits:
            continue
        accepted.append(group)
        taken_bits |= group_bits
        taken_below |= group_below
    groups = accepted
    if not groups:
        return list(outputs)
    # members read none of each other: every member's result is read outside its group
    return _merge_groups(outputs, groups, _readers(order), lambda group: group[0].trace)


def _composite_outputs(var: Var) -> list:
    """The output types of a fused node (one, or one per Proj of a multi-output one)."""
    return list(var.type.types) if isinstance(var.type, TupleType) else [var.type]


def _producer_of(x: Var) -> tuple[Var, int] | None:
    """(the node, output index) when x is an elementwise node's result or a Proj of a fused
    node's (candidacy is checked by the caller)."""
    if isinstance(x.op, Elemwise) and isinstance(x.type, TensorType):
        return x, 0
    if isinstance(x.op, Proj) and isinstance(x.inputs[0].op, Composite):
        return x.inputs[0], x.op.index
    return None


def merge_consumers(outputs: Sequence[Var], supported: Supported = default_supported) -> list[Var]:
    """Fold fused nodes that read each other's results into one multi-output Composite: one loop
    computes them all, each value read from a register instead of memory, and the results read
    outside the group stay its outputs. An LSTM step's gates, cell and hidden state are then two
    loops instead of six, its gradient's one instead of four.

    Groups are runs of a topological order built for them (a node is placed right after the group
    it reads when it is ready): each group is contiguous in that order, so merging makes no cycle.
    A node joins only a group it reads directly, of its shape (read without broadcasting) and
    dtype, while the group holds at most MERGED_COSTLY_OPS costly ops; a node read only by
    reductions stays out (fuse_reduce computes it inside the reduction, never stored)."""
    outputs = list(outputs)
    order = toposort(outputs)
    roots = {id(v) for v in outputs}
    readers = _readers(order)

    def candidate(v: Var) -> bool:
        return ((isinstance(v.op, Composite) or _fusable(v, supported))
                and not (isinstance(v.type, TupleType) and id(v) in roots)
                and _composite_outputs(v)[0].ndim > 0  # not scalar index arithmetic
                and not _feeds_reductions(v, readers, roots))

    groups = _schedule_groups(order, readers, candidate)
    if not groups:
        return outputs
    return _merge_groups(outputs, groups, readers, lambda group: group[-1].trace)


def _readers(order: list) -> dict[int, list[Var]]:
    """id(var) -> the nodes of `order` that read it (each once)."""
    readers: dict[int, list[Var]] = {}
    for var in order:
        for x in dict.fromkeys(var.inputs):
            readers.setdefault(id(x), []).append(var)
    return readers


def _merge_groups(outputs: list, groups: list, readers: dict, trace_of: Callable) -> list[Var]:
    """Each group of elementwise nodes as one Composite (`_group_node`), made with the trace
    `trace_of(group)`: the members' results read outside the group are read through Proj nodes
    of it (the node itself when only one is)."""
    roots = {id(v) for v in outputs}
    member_of = {id(m): k for k, group in enumerate(groups) for m in group}
    built = [_group_node(group, readers, roots, member_of) + (trace_of(group),) for group in groups]
    nodes: dict[int, Var] = {}

    def deps(var: Var) -> Sequence[Var]:
        old = _merged_member(var, member_of)
        return built[member_of[id(old)]][1] if old is not None else var.inputs

    def make(var: Var, new: dict) -> Var:
        old = _merged_member(var, member_of)
        if old is None:
            return _rebuild(var, tuple(new[id(x)] for x in var.inputs)) if var.inputs else var
        k = member_of[id(old)]
        op, externals, kept, trace = built[k]
        if k not in nodes:
            with inherited_trace(trace):
                nodes[k] = Var(op, tuple(new[id(x)] for x in externals))
        if len(op.outputs) == 1:  # one result read outside the group: the node itself
            return nodes[k]
        index = kept[(id(old), var.op.index if var is not old else 0)]
        with inherited_trace(var.trace):
            return Var(Proj(index), (nodes[k],))

    new = rebuild_graph(outputs, deps, make)
    return [new[id(v)] for v in outputs]


def _schedule_groups(order: list, readers: dict, candidate: Callable) -> list[list[Var]]:
    """Groups of two or more candidates, each a run of a topological order scheduled so that a
    ready candidate reading the open group comes right after it. Nodes independent of the open
    group may be emitted meanwhile (they belong before it in that order), nodes computed from it
    that cannot join wait until it ends (they belong after it); the group ends when nothing else
    is ready or when a candidate independent of it starts a group of its own. Proj nodes of
    members are part of the group."""
    pending = {id(v): len(set(map(id, v.inputs))) for v in order}
    stack = [v for v in order if not v.inputs]
    groups: list[list[Var]] = []
    group: list[Var] = []
    info = {}  # the open group's shape, dtype, member ids and costly-op count
    costs: dict[int, int] = {}

    def costly(v: Var) -> int:
        if id(v) not in costs:
            costs[id(v)] = _costly(v)
        return costs[id(v)]

    def fits(v: Var) -> bool:
        if not group or not candidate(v):
            return False
        out = _composite_outputs(v)
        if out[0].shape != info["shape"] or {t.dtype for t in out} != {info["dtype"]}:
            return False
        return info["costly"] + costly(v) <= MERGED_COSTLY_OPS

    def joins(v: Var) -> bool:
        """v reads the group's results (without broadcasting them) and fits in it."""
        read = [x for x in v.inputs if (_producer_of(x) or (None,))[0] is not None
                and id(_producer_of(x)[0]) in info["ids"]]
        return bool(read) and all(x.type.shape == info["shape"] for x in read) and fits(v)

    def sibling(v: Var) -> bool:
        """v is independent of the group but reads one of its inputs (as merge_siblings)."""
        shared = [x for x in v.inputs if id(x) in info["inputs"]]
        return bool(shared) and all(x.type.shape == info["shape"] for x in shared) and fits(v)

    def add(v: Var) -> None:
        group.append(v)
        info["ids"].add(id(v))
        info["after"].add(id(v))
        info["inputs"].update(id(x) for x in v.inputs)
        info["costly"] += costly(v)

    deferred: list[Var] = []  # computed from the open group, unable to join it: placed after it

    def close() -> None:
        if len(group) > 1:
            groups.append(list(group))
        group.clear()
        stack.extend(reversed(deferred))
        deferred.clear()

    def start(v: Var) -> None:
        out = _composite_outputs(v)
        dtypes = {t.dtype for t in out}
        if len(dtypes) == 1:
            group.append(v)
            info.update(shape=out[0].shape, dtype=dtypes.pop(), ids={id(v)}, after={id(v)},
                        inputs={id(x) for x in v.inputs}, costly=costly(v))

    while stack or deferred:
        if not stack:
            close()
            continue
        v = stack.pop()
        after = bool(group) and any(id(x) in info["after"] for x in v.inputs)
        if group and not after:  # independent of the open group: it belongs before it,
            if sibling(v):  # or in it, reading the same inputs,
                add(v)
            elif candidate(v):  # or it starts a group of its own
                close()
                start(v)
        elif group and isinstance(v.op, Proj) and id(v.inputs[0]) in info["ids"]:
            info["after"].add(id(v))  # a projection of a member: part of the group
        elif group and joins(v):
            add(v)
        elif group:
            deferred.append(v)
            continue  # emitted once the group ends
        elif candidate(v):
            start(v)
        ready = []
        for r in readers.get(id(v), ()):
            pending[id(r)] -= 1
            if pending[id(r)] == 0:
                ready.append(r)
        # readers that may join the open group are taken next (pushed last)
        ready.sort(key=lambda r: isinstance(r.op, Proj) or candidate(r))
        stack.extend(ready)
    close()
    return groups


def _group_node(group: list, readers: dict, roots: set, member_of: dict) -> tuple:
    """(Composite, its inputs, {(id(member), output index): merged output index}) for a group:
    members' bodies chained (a member's placeholder for another's result becomes that result's
    expression); the results read outside the group, or returned, are its outputs."""
    k = member_of[id(group[0])]
    externals: list[Var] = []
    position: dict[int, int] = {}
    bodies: dict[tuple, Var] = {}

    def slot(x: Var) -> Var:
        if id(x) not in position:
            position[id(x)] = len(externals)
            externals.append(x)
        return placeholder(position[id(x)], x.dtype)

    def outside(var: Var) -> bool:
        return id(var) in roots or any(member_of.get(id(r)) != k for r in readers.get(id(var), ()))

    kept: dict[tuple, int] = {}
    results = []
    for m in group:
        holders, outs, inputs = _as_body(m)
        mapping = {}
        for h, x in zip(holders, inputs):
            made = _producer_of(x)
            inside = made is not None and member_of.get(id(made[0])) == k
            mapping[h] = bodies[(id(made[0]), made[1])] if inside else slot(x)
        for j, body in enumerate(replace(list(outs), mapping)):
            bodies[(id(m), j)] = body
        if isinstance(m.type, TupleType):
            read = [(p.op.index, p) for p in readers.get(id(m), ()) if isinstance(p.op, Proj)]
            used = sorted({j for j, p in read if outside(p)})
        else:
            used = [0] if outside(m) else []
        for j in used:
            kept[(id(m), j)] = len(results)
            results.append(bodies[(id(m), j)])
    holders = tuple(placeholder(i, x.dtype) for i, x in enumerate(externals))
    return Composite(holders, tuple(results)), externals, kept


# Arithmetic a vectorized loop does in a few instructions; any other scalar op (tanh, exp, a
# division, ...) is costly: dozens of instructions and vector registers.
_CHEAP = (E.Add, E.Sub, E.Mul, E.Neg, E.Maximum, E.Minimum, E.Second, E.Cast, E.Switch, E.EQ,
          E.NEQ, E.LT, E.LE, E.GT, E.GE, E.And, E.Or, E.Xor, E.Invert, EM.Abs, EM.Sqr)
# At most this many costly ops in a loop merge_consumers builds: an LSTM step's three sigmoids
# and two tanh in one loop ran 15 us per 32 x 128 step against 12.5 us as five loops (registers
# spill), while its gradient's arithmetic ran 6.3 us merged against 8.2 us apart (measured).
MERGED_COSTLY_OPS = 2


def _costly(var: Var) -> int:
    """How many costly scalar ops the fused node (or lone elementwise node) computes."""
    if isinstance(var.op, Composite):
        return sum(not isinstance(v.op, _CHEAP) for v in var.op.nodes)
    return int(not isinstance(var.op, _CHEAP))


def _feeds_reductions(var: Var, readers: dict, roots: set) -> bool:
    """Is `var` read only by reductions? Reduction fusion (fuse_reduce.py) then computes it inside
    the reduction's loop, never stored; merged into its producer it would be an output to store."""
    from ..graph.ops.fused_reduce import FUSABLE_REDUCTIONS

    users = readers.get(id(var), [])
    return bool(users) and id(var) not in roots and all(
        isinstance(u.op, FUSABLE_REDUCTIONS) for u in users)


def _merged_member(var: Var, member_of: dict) -> Var | None:
    """The grouped node that `var` is (or projects), else None."""
    if id(var) in member_of:
        return var
    if isinstance(var.op, Proj) and id(var.inputs[0]) in member_of:
        return var.inputs[0]
    return None


def rebuild_graph(outputs: Sequence[Var], deps: Callable, make: Callable) -> dict[int, Var]:
    """Build `make(var, new)` for every var reachable through `deps`, dependencies first, iteratively."""
    new: dict[int, Var] = {}
    stack = [(v, False) for v in reversed(outputs)]
    while stack:
        var, ready = stack.pop()
        if id(var) in new:
            continue
        if ready:
            new[id(var)] = make(var, new)
            continue
        stack.append((var, True))
        stack.extend((d, False) for d in reversed(deps(var)) if id(d) not in new)
    return new


def fuse_elementwise(outputs: Sequence[Var], supported: Supported = default_supported) -> list[Var]:
    """Fuse elementwise trees into Composites, then merge sibling Composites that share inputs."""
    outputs = fuse_trees(outputs, supported)
    for _ in range(64):  # each round merges independent groups; a few rounds reach the fixed point
        merged = merge_siblings(outputs, supported)
        if all(a is b for a, b in zip(merged, outputs)):
            break
        outputs = merged
    return merge_consumers(outputs, supported)  # then producers and their consumers
