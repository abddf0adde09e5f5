"""Products that share an operand, computed as one matrix product.

tensordot(a1, b) and tensordot(a2, b) summing the same axes of b, where a1 and a2 have one axis
left after the sum (their rows), are the rows of one tensordot of a1 and a2 joined along that
axis. Back-propagation makes such pairs: every weight that multiplies the same activations gets
its gradient from the same cotangent (an LSTM's dW_in = x^T g and dW_hid = h^T g, with g the
gates' cotangent of every step), and the bias's gradient, a sum of g, is one more row (a ones
part). One larger product reads g once and runs closer to the BLAS's peak than two smaller ones;
the join copies a1 and a2, which the products would copy anyway when they are not laid out for
BLAS.
"""

from __future__ import annotations

from typing import Sequence

from ..graph import tensor as T
from ..graph.ops.linalg import TensorDot
from ..graph.ops.reduce import Sum
from ..graph.ops.subtensor import Subtensor
from ..graph.var import Var, replace, toposort

__all__ = ["merge_sibling_products"]


def merge_sibling_products(outputs: Sequence[Var]) -> list[Var]:
    """Rewrite each group of tensordots sharing their second operand and summed axes (and whose
    first operands keep one axis each) into one tensordot of the joined first operands."""
    outputs = list(outputs)
    groups: dict[tuple, list[tuple]] = {}
    sums: dict[int, list[Var]] = {}  # sums over several axes, by the array they sum read forwards
    for var in toposort(outputs):
        op = var.op
        if isinstance(op, Sum) and len(op.axis) > 1:
            source = _reversed_source(var.inputs[0])
            x = var.inputs[0] if source is None else source
            sums.setdefault(id(x), []).append(var)
        if not isinstance(op, TensorDot) or op.batch:
            continue
        a, b = _forwards(*var.inputs, op)
        free = op.free_axes(a.ndim, op.axes_a)
        if len(free) != 1:
            continue
        key = (id(b), op.axes_a, op.axes_b, a.ndim, free[0], a.dtype, var.dtype)
        groups.setdefault(key, []).append((var, a, b))
    mapping: dict = {}
    for found in groups.values():
        kept = {id(m) for m in _independent([m for m, _, _ in found])}
        found = [f for f in found if id(f[0]) in kept]
        if len(found) < 2:
            continue
        members, parts, b = [f[0] for f in found], [f[1] for f in found], found[0][2]
        op = members[0].op
        axis = op.free_axes(parts[0].ndim, op.axes_a)[0]
        # a sum of b over the summed axes (a bias gradient beside the weights') is one more row:
        # the product of a ones part with b
        summed = tuple(sorted(op.axes_b))
        extra = [v for v in sums.get(id(b), [])
                 if v.op.axis == summed and v.dtype == members[0].dtype]
        for total in extra:
            ones_shape = [1 if i == axis else b.shape[op.axes_b[op.axes_a.index(i)]]
                          for i in range(parts[0].ndim)]
            members.append(total)
            parts.append(T.ones(ones_shape, dtype=parts[0].dtype))
        product = Var(op, (T.concatenate(parts, axis=axis), b))
        start = None
        for member, part in zip(members, parts):
            stop = part.shape[axis] if start is None else start + part.shape[axis]
            rows = product[start:stop]
            mapping[member] = rows if isinstance(member.op, TensorDot) else _as_sum(rows, member, b)
            start = stop
    return replace(outputs, mapping) if mapping else outputs


def _reversed_source(v: Var) -> Var | None:
    """g when v is g[::-1] (g read backwards along its first axis), else None."""
    if isinstance(v.op, Subtensor) and v.op.idx == (("slice", None, None, -1),):
        return v.inputs[0]
    return None


def _as_sum(rows: Var, total: Var, b: Var) -> Var:
    """The product's row of a ones part, (1, *b's other axes), in the shape of the Sum `total`
    of b (read from b: the Sum itself is not computed)."""
    axes = total.op.axis
    if total.op.keepdims:
        shape = [1 if i in axes else b.shape[i] for i in range(b.ndim)]
    else:
        shape = [b.shape[i] for i in range(b.ndim) if i not in axes]
    return T.reshape(rows, shape, ndim=total.ndim) if shape else rows.reshape(())


def _forwards(a: Var, b: Var, op: TensorDot) -> tuple[Var, Var]:
    """(a, b), or (a reversed, b's source) when b is a reversed along a summed axis (b = g[::-1]):
    the sum is the same, and products of g and of g[::-1] then share their operand."""
    source = _reversed_source(b)
    if source is None or 0 not in op.axes_b:
        return a, b
    k = op.axes_a[op.axes_b.index(0)]
    return a[(slice(None),) * k + (slice(None, None, -1),)], source


def _independent(members: list[Var]) -> list[Var]:
    """The members none of whose first operands depends on another member (joining those would
    make the product depend on itself)."""
    ids = {id(m) for m in members}
    kept = []
    for m in members:
        ancestors = {id(v) for v in toposort([m.inputs[0]])}
        if not (ancestors & (ids - {id(m)})):
            kept.append(m)
    return kept
