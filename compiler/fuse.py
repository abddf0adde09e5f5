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
    replacement: dict[int, tuple[int, int]] = {}
    merged_nodes = []
    for g_index, group in enumerate(groups):
        externals: list[Var] = []
        position: dict[int, int] = {}
        bodies = []
        for member in group:
            placeholders, member_outputs, inputs = _as_body(member)
            mapping = {}
            for p, x in zip(placeholders, inputs):
                if id(x) not in position:
                    position[id(x)] = len(externals)
                    externals.append(x)
                mapping[p] = placeholder(position[id(x)], x.dtype)
            bodies.append(replace(list(member_outputs), mapping)[0])
            replacement[id(member)] = (g_index, len(bodies) - 1)
        new_placeholders = tuple(placeholder(k, x.dtype) for k, x in enumerate(externals))
        merged_nodes.append((Composite(new_placeholders, tuple(bodies)), externals, group[0].trace))
    built: dict[int, Var] = {}

    def deps(var: Var) -> Sequence[Var]:
        return merged_nodes[replacement[id(var)][0]][1] if id(var) in replacement else var.inputs

    def make(var: Var, new: dict) -> Var:
        if id(var) not in replacement:
            return _rebuild(var, tuple(new[id(x)] for x in var.inputs)) if var.inputs else var
        g_index, out_index = replacement[id(var)]
        if g_index not in built:
            op, externals, trace = merged_nodes[g_index]
            with inherited_trace(trace):
                built[g_index] = Var(op, tuple(new[id(x)] for x in externals))
        with inherited_trace(var.trace):
            return Var(Proj(out_index), (built[g_index],))

    new = rebuild_graph(outputs, deps, make)
    return [new[id(v)] for v in outputs]


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
    """Fold a fused node that reads another's results into one multi-output Composite with it,
    the producer's results kept as outputs (they have other readers): one loop computes both,
    each value read from a register instead of memory. An LSTM step's gates, cell and hidden
    state are then one loop instead of six. Only where the two loop over one shape (the consumer
    reads the producer's result without broadcasting it) and no other input of the consumer
    depends on the producer (that value would be needed before the merged loop runs)."""
    order = toposort(outputs)
    roots = {id(v) for v in outputs}
    candidates = [v for v in order if (isinstance(v.op, Composite) or _fusable(v, supported))
                  and not (isinstance(v.type, TupleType) and id(v) in roots)
                  and _composite_outputs(v)[0].ndim]  # not scalar index arithmetic
    if len(candidates) < 2:
        return list(outputs)
    bit = {id(v): 1 << k for k, v in enumerate(candidates)}
    below: dict[int, int] = {}
    for var in order:
        mask = 0
        for x in var.inputs:
            mask |= below[id(x)] | bit.get(id(x), 0)
        below[id(var)] = mask
    pairs = _consumer_pairs(order, candidates, roots, below, bit)
    if not pairs:
        return list(outputs)
    merged: dict[int, Var] = {}  # id(old producer or consumer) -> the merged node
    offsets: dict[int, int] = {}  # id(old node) -> index of its first output in the merged node
    built: dict[int, tuple] = {}  # id(consumer) -> (op, externals, trace)
    for producer, consumer in pairs:
        built[id(consumer)] = (*_merged_body(producer, consumer), consumer.trace)
        merged[id(producer)] = merged[id(consumer)] = consumer
        offsets[id(producer)] = 0
        offsets[id(consumer)] = len(_composite_outputs(producer))
    nodes: dict[int, Var] = {}

    def deps(var: Var) -> Sequence[Var]:
        old = _merged_member(var, merged)
        if old is not None:
            return built[id(merged[id(old)])][1]
        return var.inputs

    def make(var: Var, new: dict) -> Var:
        old = _merged_member(var, merged)
        if old is None:
            return _rebuild(var, tuple(new[id(x)] for x in var.inputs)) if var.inputs else var
        key = id(merged[id(old)])
        if key not in nodes:
            op, externals, trace = built[key]
            with inherited_trace(trace):
                nodes[key] = Var(op, tuple(new[id(x)] for x in externals))
        index = offsets[id(old)] + (var.op.index if var is not old else 0)
        with inherited_trace(var.trace):
            return Var(Proj(index), (nodes[key],))

    new = rebuild_graph(outputs, deps, make)
    return [new[id(v)] for v in outputs]


def _consumer_pairs(order: list, candidates: list, roots: set, below: dict, bit: dict) -> list:
    """(producer, consumer) pairs to merge this round: each node in one pair at most, and no two
    pairs that depend on each other through different members (that would make a cycle)."""
    readers: dict[int, list[Var]] = {}
    for var in order:
        for x in var.inputs:
            readers.setdefault(id(x), []).append(var)
    pairs: list[tuple[Var, Var]] = []
    taken_bits, taken_below = 0, 0
    costs: dict[int, int] = {}

    def costly(v: Var) -> int:
        if id(v) not in costs:
            costs[id(v)] = _costly(v)
        return costs[id(v)]

    for consumer in candidates:
        if bit[id(consumer)] & taken_bits or _feeds_reductions(consumer, readers, roots):
            continue
        shape = _composite_outputs(consumer)[0].shape
        found = None
        for x in consumer.inputs:
            made = _producer_of(x)
            if made is None or id(made[0]) not in bit or made[0] is consumer:
                continue
            producer = made[0]
            if bit[id(producer)] & taken_bits:
                continue
            if x.type.shape != shape or _composite_outputs(producer)[0].shape != shape:
                continue  # broadcast or of another shape: the loops differ
            dtypes = {t.dtype for t in _composite_outputs(producer) + _composite_outputs(consumer)}
            if len(dtypes) > 1:
                continue  # one dtype per fused node, as merge_siblings keeps
            if costly(producer) + costly(consumer) > MERGED_COSTLY_OPS:
                continue
            others = [y for y in consumer.inputs if _producer_of(y) is None
                      or _producer_of(y)[0] is not producer]
            if any(below[id(y)] & bit[id(producer)] or y is producer for y in others):
                continue  # another input is computed from the producer's results
            found = producer
            break
        if found is None:
            continue
        pair_bits = bit[id(found)] | bit[id(consumer)]
        pair_below = (below[id(found)] | below[id(consumer)]) & ~pair_bits
        if pair_below & taken_bits or taken_below & pair_bits:
            continue  # depends on a pair merged this round through another member
        pairs.append((found, consumer))
        taken_bits |= pair_bits
        taken_below |= pair_below
    return pairs


def _merged_body(producer: Var, consumer: Var) -> tuple[Composite, list[Var]]:
    """(the Composite computing the producer's outputs then the consumer's, its inputs): the
    consumer's placeholders for the producer's results become the producer's own expressions."""
    p_holders, p_outputs, p_inputs = _as_body(producer)
    c_holders, c_outputs, c_inputs = _as_body(consumer)
    externals: list[Var] = []
    position: dict[int, int] = {}

    def slot(x: Var) -> Var:
        if id(x) not in position:
            position[id(x)] = len(externals)
            externals.append(x)
        return placeholder(position[id(x)], x.dtype)

    p_bodies = replace(list(p_outputs), {h: slot(x) for h, x in zip(p_holders, p_inputs)})
    c_map = {}
    for h, x in zip(c_holders, c_inputs):
        made = _producer_of(x)
        c_map[h] = p_bodies[made[1]] if made is not None and made[0] is producer else slot(x)
    c_bodies = replace(list(c_outputs), c_map)
    holders = tuple(placeholder(k, x.dtype) for k, x in enumerate(externals))
    return Composite(holders, tuple(p_bodies) + tuple(c_bodies)), externals


# Arithmetic a vectorized loop does in a few instructions; any other scalar op (tanh, exp, a
# division, ...) is costly: dozens of instructions and vector registers.
_CHEAP = (E.Add, E.Sub, E.Mul, E.Neg, E.Maximum, E.Minimum, E.Second, E.Cast, E.Switch, E.EQ,
          E.NEQ, E.LT, E.LE, E.GT, E.GE, E.And, E.Or, E.Xor, E.Invert, EM.Abs, EM.Sqr)
# At most this many costly ops in a loop merge_consumers builds: an LSTM step's three sigmoids
# and two tanh in one loop ran 15 us per 32 x 128 step against 12.5 us as five loops (registers
# spill), while its gradient's arithmetic ran 6.3 us merged against 8.2 us apart (measured).
MERGED_COSTLY_OPS = 2
CONSUMER_ROUNDS = 4


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


def _merged_member(var: Var, merged: dict) -> Var | None:
    """The merged producer or consumer that `var` is (or projects), else None."""
    if id(var) in merged:
        return var
    if isinstance(var.op, Proj) and id(var.inputs[0]) in merged:
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
    # then producers and their consumers, a pair per node each round, a few rounds: each rebuilds
    # the graph (6 ms per 1k nodes), and a round pairs only nodes independent of the pairs taken
    # before it; an LSTM step's loops need three
    for _ in range(CONSUMER_ROUNDS):
        merged = merge_consumers(outputs, supported)
        if all(a is b for a, b in zip(merged, outputs)):
            break
        outputs = merged
    return outputs
