"""Elementwise fusion: chains and trees of elementwise ops become one Composite node (one kernel).

Two steps. First each maximal tree of fusable nodes whose inner results have no other reader is folded
into its root. Then independent fused nodes of the same type that read a common input are merged into
one multi-output Composite read through Proj projections (siblings share their loads).
"""

from __future__ import annotations

from typing import Callable, Sequence

import numpy as np

from ..graph.ops.composite import Composite, Proj, placeholder
from ..graph.ops.elemwise import Elemwise
from ..graph.ops.shape import DimShuffle
from ..graph.type import TensorType
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
    return outputs
