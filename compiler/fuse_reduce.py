"""Reduction fusion: a sum, prod, max or min fed by elementwise work becomes one FusedReduce node.

Runs after elementwise fusion, so the work feeding a reduction is one Composite, one output of a
multi-output Composite (read through Proj), or one lone elementwise node. When that result has no
other reader and the backend says it can compute the pair in one pass (`supported_reduction(var)`),
the reduction reads the body's inputs directly and the elementwise result is never stored:
`sum(x ** 2)` is one loop. An output taken out of a multi-output Composite leaves it, so sibling
merging never costs a reduction its fusion.
"""

from __future__ import annotations

from typing import Callable, Sequence

import numpy as np

from ..graph.ops.composite import Composite, Proj, placeholder
from ..graph.ops.elemwise import Elemwise, Mul
from ..graph.ops.reduce import AxisSize
from ..graph.ops.fused_reduce import FUSABLE_REDUCTIONS, fused_reduce
from ..graph.ops.shape import DimShuffle
from ..graph.type import TensorType
from ..graph.var import Constant, Var, inherited_trace, toposort
from .fuse import count_readers

Supported = Callable[[Var], bool]


def _scalar_constant(var: Var) -> np.ndarray | None:
    """The value of a one-element constant (possibly under a broadcasting dimshuffle), else None."""
    while isinstance(var.op, DimShuffle):
        var = var.inputs[0]
    if isinstance(var.op, Constant) and var.op.data.size == 1:
        return var.op.data.reshape(()).astype(var.dtype)
    return None


def _as_composite(var: Var) -> tuple[Composite, tuple] | None:
    """(one-output Composite, its inputs) computing `var`, or None when `var` is not elementwise."""
    if not isinstance(var.type, TensorType):
        return None
    if isinstance(var.op, Proj) and isinstance(var.inputs[0].op, Composite):
        # every input stays: an output reading only some of them still has the full shape
        merged = var.inputs[0]
        return Composite(merged.op.placeholders, (merged.op.outputs[var.op.index],)), merged.inputs
    if isinstance(var.op, Composite):
        return var.op, var.inputs
    if not isinstance(var.op, Elemwise):
        return None
    inputs: list[Var] = []
    arguments = []
    for x in var.inputs:
        value = _scalar_constant(x)
        if value is not None:  # a broadcast scalar constant is inlined, not loaded per element
            arguments.append(Var(Constant(value), ()))
        else:
            arguments.append(placeholder(len(inputs), x.dtype))
            inputs.append(x)
    if not inputs:
        return None  # elementwise work on constants alone: left to constant folding
    placeholders = tuple(placeholder(k, x.dtype) for k, x in enumerate(inputs))
    return Composite(placeholders, (Var(var.op, tuple(arguments)),)), tuple(inputs)


def _elementwise_inputs(x: Var) -> tuple:
    """The inputs of the elementwise node computing `x` (through a Proj: of the merged node)."""
    return x.inputs[0].inputs if isinstance(x.op, Proj) else x.inputs


def _size_sources(size: Var, x: Var) -> tuple[list[int], dict[int, list[int]]] | None:
    """How to compute `size` (an AxisSize of the elementwise result `x`) without x: the static
    sizes, and per input of x the axes it gives; None when some axis has no such input.

    At run time only axes typed size 1 broadcast, so an input whose static size on an axis is not 1
    has the result's size there.
    """
    known: list[int] = []
    by_input: dict[int, list[int]] = {}
    for axis in size.op.axis:
        if x.type.shape[axis] is not None:
            known.append(x.type.shape[axis])
            continue
        inputs = _elementwise_inputs(x)
        source = next((k for k, i in enumerate(inputs) if i.type.shape[axis] != 1), None)
        if source is None:
            return None
        by_input.setdefault(source, []).append(axis)
    return known, by_input


def _size_of(size: Var, x: Var, new: dict[int, Var]) -> Var:
    """`size` rebuilt on the (rebuilt) inputs of `x`, a product of AxisSize nodes and constants."""
    known, by_input = _size_sources(size, x)
    dtype = size.op.dtype
    with inherited_trace(size.trace):
        inputs = _elementwise_inputs(x)
        factors = [Var(AxisSize(tuple(axes), dtype), (new[id(inputs[k])],))
                   for k, axes in by_input.items()]  # fmt: skip
        if known or not factors:
            factors.append(Var(Constant(np.asarray(int(np.prod(known)), dtype)), ()))
        result = factors[0]
        for factor in factors[1:]:
            result = Var(Mul(), (result, factor))
    return result


def _candidate(var: Var, readers: dict[int, int], sizes: dict[int, list[Var]], supported: Supported,
               supported_reduction: Supported) -> Var | None:
    """The FusedReduce replacing the reduction `var`, or None when it should stay as it is."""
    if not isinstance(var.op, FUSABLE_REDUCTIONS) or not isinstance(var.type, TensorType):
        return None
    (x,) = var.inputs
    if readers[id(x)] - len(sizes.get(id(x), ())) != 1:
        return None  # the elementwise result is needed elsewhere: it must be stored anyway
    merged = isinstance(x.op, Proj) and isinstance(x.inputs[0].op, Composite)
    if not (merged or isinstance(x.op, Composite) or isinstance(x.op, Elemwise) and supported(x)):
        return None
    if any(_size_sources(size, x) is None for size in sizes.get(id(x), ())):
        return None
    found = _as_composite(x)
    if found is None:
        return None
    body, inputs = found
    if any(not isinstance(i.type, TensorType) or i.ndim != x.ndim for i in inputs):
        return None
    with inherited_trace(var.trace):
        fused = fused_reduce(body, var.op, inputs)
    if fused.type != var.type or not supported_reduction(fused):
        return None
    return fused


def fuse_reductions(
    outputs: Sequence[Var],
    supported_reduction: Supported,
    supported: Supported = lambda var: True,
) -> list[Var]:
    """Replace each reduction fed by single-reader elementwise work by one FusedReduce node.

    The elementwise result may also be read by AxisSize nodes (the divisor of a mean): those then
    read the body's inputs instead. `supported(var)` says whether a lone elementwise node may be
    fused (the backend's scalar ops); `supported_reduction(fused)` whether the backend computes
    that FusedReduce in one pass.
    """
    order = toposort(outputs)
    readers = count_readers(order, outputs)
    sizes: dict[int, list[Var]] = {}  # id of a node -> the AxisSize nodes reading it
    for var in order:
        if isinstance(var.op, AxisSize):
            sizes.setdefault(id(var.inputs[0]), []).append(var)
    fused: dict[int, Var] = {}  # id of a reduction -> its FusedReduce (on the old inputs)
    absorbed: set[int] = set()  # ids of the elementwise nodes that FusedReduce nodes absorbed
    for var in order:
        candidate = _candidate(var, readers, sizes, supported, supported_reduction)
        if candidate is not None:
            fused[id(var)] = candidate
            absorbed.add(id(var.inputs[0]))
    if not fused:
        return list(outputs)
    taken: dict[int, set[int]] = {}  # id of a multi-output Composite -> the outputs taken out of it
    for var in order:
        if isinstance(var.op, Proj) and id(var) in absorbed:
            taken.setdefault(id(var.inputs[0]), set()).add(var.op.index)
    new: dict[int, Var] = {}
    for var in order:
        if id(var) in taken:
            rest = _without(var, taken[id(var)], new)
            if rest is not None:
                new[id(var)] = rest
        elif isinstance(var.op, Proj) and id(var.inputs[0]) in taken and id(var) not in absorbed:
            rest = new[id(var.inputs[0])]
            index = _remaining(var.inputs[0], taken[id(var.inputs[0])]).index(var.op.index)
            if isinstance(rest.type, TensorType):
                new[id(var)] = rest  # the one output left: the node itself
            else:
                with inherited_trace(var.trace):
                    new[id(var)] = Var(Proj(index), (rest,))
        elif id(var) in fused:
            node = fused[id(var)]
            inputs = tuple(new[id(x)] for x in node.inputs)
            if any(a is not b for a, b in zip(inputs, node.inputs)):
                with inherited_trace(var.trace):
                    node = Var(node.op, inputs)
            new[id(var)] = node
        elif isinstance(var.op, AxisSize) and id(var.inputs[0]) in absorbed:
            new[id(var)] = _size_of(var, var.inputs[0], new)
        elif id(var) in absorbed:
            continue  # computed inside its FusedReduce, never on its own
        elif var.inputs:
            inputs = tuple(new[id(x)] for x in var.inputs)
            if all(a is b for a, b in zip(inputs, var.inputs)):
                new[id(var)] = var
            else:
                with inherited_trace(var.trace):
                    new[id(var)] = Var(var.op, inputs, var.name)
        else:
            new[id(var)] = var
    return [new[id(v)] for v in outputs]


def _remaining(merged: Var, taken: set[int]) -> list[int]:
    return [k for k in range(len(merged.op.outputs)) if k not in taken]


def _without(merged: Var, taken: set[int], new: dict[int, Var]) -> Var | None:
    """The multi-output Composite `merged` less the outputs `taken` (None when none is left)."""
    rest = _remaining(merged, taken)
    if not rest:
        return None
    op = merged.op
    with inherited_trace(merged.trace):
        body = Composite(op.placeholders, tuple(op.outputs[k] for k in rest))
        return Var(body, tuple(new[id(x)] for x in merged.inputs))
