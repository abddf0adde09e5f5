"""Canonical forms: constants folded and moved last, identities removed, shape questions answered early."""

from __future__ import annotations

import numpy as np

from ...graph import tensor as T
from ...graph.ops import elemwise as E
from ...graph.ops.reduce import Max, Min, Prod, Sum
from ...graph.ops.shape import DimShuffle, Reshape, Shape
from ...graph.ops.subtensor import Subtensor
from ...graph.type import TensorType, TupleType, is_discrete
from ...graph.var import Constant, Op, Var
from ..rewrite import Pat, rule
from .common import constant, constant_value, is_scalar_like, like, scalar_value

# Folding bigger results would bake large arrays into the graph; they stay computations (buffers).
FOLD_LIMIT = 1 << 12
COMMUTATIVE = (E.Add, E.Mul, E.Maximum, E.Minimum, E.EQ, E.NEQ, E.And, E.Or, E.Xor)

x, y = Pat.var("x"), Pat.var("y")


def fold_constants(node: Var):
    """Compute a node whose inputs are all constants, when its result is small."""
    if not node.inputs or isinstance(node.type, TupleType):
        return None
    if not all(isinstance(i.op, Constant) for i in node.inputs):
        return None
    size = np.prod([d if d is not None else FOLD_LIMIT + 1 for d in node.type.shape], dtype=float)
    if size > FOLD_LIMIT:
        return None
    try:
        value = np.asarray(node.op.perform(*[i.op.data.astype(i.dtype, copy=False) for i in node.inputs]))
    except Exception:  # leave the error to run time, where it names the user's line
        return None
    if value.size > FOLD_LIMIT or value.dtype.name != node.dtype or not node.type.accepts_shape(value.shape):
        return None
    return Var(Constant(value), ())


def constants_last(node: Var):
    """a op b with a constant first and b not: swap, so rules match one order."""
    a, b = node.inputs
    if constant_value(a) is not None and constant_value(b) is None:
        return Var(node.op, (b, a))
    return None


def _identity(value: float):
    def apply(node: Var, x: Var, c: Var):
        if scalar_value(c) == value and is_scalar_like(c):
            return like(node, x)
        return None

    return apply


def sub_self(node: Var, x: Var):
    """x - x: zero, but NaN where x is NaN or infinite (x * 0 keeps that); exact zeros for integers."""
    if is_discrete(node.dtype):
        return T.zeros_like(node)
    return like(node, x * constant(0, x.dtype))


def div_self(node: Var, x: Var):
    """x / x: one, but NaN where x is 0, infinite or NaN, as the division gives."""
    if is_discrete(x.dtype):
        return None
    nan = constant(np.nan, node.dtype)
    one = x * constant(0, x.dtype) + constant(1, x.dtype)
    return like(node, T.switch(T.eq(x, constant(0, x.dtype)), nan, one))


def dimshuffle_chain(node: Var, x: Var):
    """dimshuffle of dimshuffle: one dimshuffle (or none when the composition is the identity)."""
    inner, outer = node.inputs[0].op.new_order, node.op.new_order
    composed = tuple("x" if d == "x" else inner[d] for d in outer)
    if composed == tuple(range(x.ndim)):
        return x
    kept = [d for d in composed if d != "x"]
    if any(a not in kept and x.type.shape[a] != 1 for a in range(x.ndim)):
        return None
    return Var(DimShuffle(composed), (x,))


def dimshuffle_identity(node: Var, x: Var):
    return x if node.op.new_order == tuple(range(x.ndim)) else None


def reduce_broadcastable(node: Var, x: Var):
    """A sum, product, max or min over axes of static size 1 reduces nothing there: those axes
    are dropped by a dimshuffle (kept as they are with keepdims), and the reduction, if any axis
    is left, runs over the others. Not when the reduction changes the dtype (a sum of int8)."""
    op = node.op
    ones = [a for a in op.axis if x.type.shape[a] == 1]
    if not ones or node.dtype != x.dtype:
        return None
    rest = [a for a in op.axis if a not in ones]
    if op.keepdims:
        return x if not rest else Var(type(op)(tuple(rest), True, *_extra(op)), (x,))
    kept = [a for a in range(x.ndim) if a not in ones]
    y = Var(DimShuffle(tuple(kept)), (x,))
    if not rest:
        return y
    return Var(type(op)(tuple(kept.index(a) for a in rest), False, *_extra(op)), (y,))


def _extra(op) -> tuple:
    """A reduction's fields after (axis, keepdims): Sum's and Prod's dtype."""
    return (op.dtype,) if isinstance(op, (Sum, Prod)) else ()


def reshape_reshape(node: Var, x: Var):
    """reshape(reshape(x, a), b): reshape(x, b)."""
    return Var(node.op, (x, node.inputs[1]))


def reshape_same(node: Var, x: Var):
    """A reshape to the static shape x already has is the identity."""
    if node.type.shape == x.type.shape and None not in x.type.shape:
        return x
    return None


def fold_add_constants(node: Var, x: Var, c1: Var, c2: Var):
    """(x + c1) + c2: x + (c1 + c2), one addition; likewise for products."""
    if constant_value(c1) is None or constant_value(c2) is None or not (is_scalar_like(c1) and is_scalar_like(c2)):
        return None
    inner = node.inputs[0]
    if len({node.dtype, inner.dtype, c1.dtype, c2.dtype, x.dtype}) != 1:
        return None
    return Var(node.op, (x, Var(node.op, (c1, c2))))


def shape_static(node: Var, x: Var):
    """x.shape when every dimension is static: a constant."""
    if None in x.type.shape:
        return None
    return constant(x.type.shape, "int64")


def shape_of_elemwise(node: Var, x: Var):
    """The shape of an elementwise result read from an input of the same shape (nothing computed for it)."""
    if not isinstance(x.op, E.Elemwise) or isinstance(x.type, TupleType):
        return None
    for source in x.inputs:
        if source.ndim == x.ndim and all(ds != 1 or dx == 1 for ds, dx in zip(source.type.shape, x.type.shape)):
            return Var(Shape(), (source,))
    return None


def shape_of_product(node: Var, x: Var):
    """The shape of a tensordot (or dot) read from its operands' shapes: the product need not be
    computed for it (a scan's step count taken from its input projection)."""
    from ...graph.ops.linalg import Dot, TensorDot
    from ...graph.ops.shape import as_shape_vector

    if isinstance(x.op, TensorDot):
        a, b = x.inputs
        op = x.op
        entries = [a.shape[i] for i in range(op.batch)]
        entries += [a.shape[i] for i in op.free_axes(a.ndim, op.axes_a)]
        entries += [b.shape[i] for i in op.free_axes(b.ndim, op.axes_b)]
    elif isinstance(x.op, Dot) and x.ndim:
        a, b = x.inputs
        entries = [a.shape[i] for i in range(a.ndim - 1)] + [b.shape[i] for i in range(1, b.ndim)]
    else:
        return None
    if not entries:
        return None
    return as_shape_vector(tuple(entries), "shape")


def fill_of_elemwise(node: Var, x: Var, y: Var):
    """second(x, y) (y broadcast to x's shape, zeros_like's form) reads x only for its shape: an
    elementwise x gives way to an input of the same shape, a leaf first, so x itself need not be
    computed (a gradient's zeros_like(gates) in a backward loop would redo the gates' product)."""
    if not isinstance(x.op, E.Elemwise) or isinstance(x.type, TupleType):
        return None
    same = [
        source for source in x.inputs
        if source.ndim == x.ndim
        and all(ds != 1 or dx == 1 for ds, dx in zip(source.type.shape, x.type.shape))
    ]
    if not same:
        return None
    source = next((v for v in same if not v.inputs), same[0])
    return Var(node.op, (source, y), node.name)


def shape_of_shape_preserving(node: Var, x: Var):
    """Shapes of ops that keep their input's shape (softmax and friends, dimshuffles read through)."""
    from ...graph.ops.nnet import LogSoftmax, Softmax

    if isinstance(x.op, (Softmax, LogSoftmax)):
        return Var(Shape(), (x.inputs[0],))
    return None


def shape_entry_static(node: Var, s: Var):
    """x.shape[i] with a static size: a constant."""
    if len(node.op.idx) != 1 or not isinstance(node.op.idx[0], int):
        return None
    size = s.inputs[0].type.shape[node.op.idx[0]]
    return None if size is None else constant(size, node.dtype)


def remove_identity_ops(node: Var, x: Var):
    """Gradient-shaping ops are the identity once gradients are taken."""
    return like(node, x)


canonical = [
    rule("fold_constants", Pat(Op), fold_constants),
    rule("constants_last", Pat(COMMUTATIVE, x, y), constants_last),
    rule("neg_neg", Pat(E.Neg, Pat(E.Neg, x)), lambda x: x),
    rule("sub_self", Pat(E.Sub, x, x), sub_self),
    rule("div_self", Pat(E.TrueDiv, x, x), div_self),
    rule("mul_one", Pat(E.Mul, x, Pat.const(1, name="c")), _identity(1)),
    rule("add_zero", Pat(E.Add, x, Pat.const(0, name="c")), _identity(0)),
    rule("sub_zero", Pat(E.Sub, x, Pat.const(0, name="c")), _identity(0)),
    rule("div_one", Pat(E.TrueDiv, x, Pat.const(1, name="c")), _identity(1)),
    rule("pow_one", Pat(E.Pow, x, Pat.const(1, name="c")), _identity(1)),
    rule("exp_log", Pat(E.Exp, Pat(E.Log, x)), lambda node, x: like(node, x)),
    rule("log_exp", Pat(E.Log, Pat(E.Exp, x)), lambda node, x: like(node, x)),
    rule("dimshuffle_chain", Pat(DimShuffle, Pat(DimShuffle, x)), dimshuffle_chain),
    rule("dimshuffle_identity", Pat(DimShuffle, x), dimshuffle_identity),
    rule("reduce_broadcastable", Pat((Sum, Prod, Max, Min), x), reduce_broadcastable),
    rule("reshape_reshape", Pat(Reshape, Pat(Reshape, x, Pat.var("s1")), Pat.var("s2")), reshape_reshape),
    rule("reshape_same", Pat(Reshape, x, Pat.var("s")), reshape_same),
    rule("flatten_add", Pat(E.Add, Pat(E.Add, x, Pat.var("c1")), Pat.var("c2")), fold_add_constants),
    rule("flatten_mul", Pat(E.Mul, Pat(E.Mul, x, Pat.var("c1")), Pat.var("c2")), fold_add_constants),
    rule("shape_static", Pat(Shape, x), shape_static),
    rule("shape_of_elemwise", Pat(Shape, x), shape_of_elemwise),
    rule("shape_of_shape_preserving", Pat(Shape, x), shape_of_shape_preserving),
    rule("fill_of_elemwise", Pat(E.Second, x, y), fill_of_elemwise),
    rule("shape_of_product", Pat(Shape, x), shape_of_product),
    rule("shape_entry_static", Pat(Subtensor, Pat(Shape, x, name="s")), shape_entry_static),
]

# What grad applies with the stability rules before differentiating.
canonical_order = [rule("constants_last", Pat(COMMUTATIVE, x, y), constants_last)]

# Only after differentiation: these ops exist to shape gradients.
drop_gradient_ops = [
    rule("remove_zero_grad", Pat((E.ZeroGrad, E.DisconnectedGrad, E.GradClip, E.GradScale), x), remove_identity_ops),
]

__all__ = ["canonical", "drop_gradient_ops", "FOLD_LIMIT", "TensorType"]
