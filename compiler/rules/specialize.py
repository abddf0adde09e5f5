"""Specialization: cheaper or BLAS-shaped forms of what the user wrote (sqr for x**2, one GEMM, ...)."""

from __future__ import annotations

from typing import Sequence

import numpy as np

from ...graph import tensor as T
from ...graph.ops import elemwise as E
from ...graph.ops.blas import Gemm, Ger, MaxAndArgmax
from ...graph.ops.composite import Proj
from ...graph.ops.linalg import Dot
from ...graph.ops.reduce import Argmax, Max, Sum
from ...graph.ops.shape import DimShuffle
from ...graph.type import is_discrete
from ...graph.var import Var, inherited_trace, toposort
from ..rewrite import Pat, rule
from .common import constant, constant_value, is_scalar_like, like, scalar_value

x, y = Pat.var("x"), Pat.var("y")


def pow_specialize(node: Var, x: Var, c: Var):
    """x**2 -> sqr(x), x**0.5 -> sqrt(x), x**-1 -> 1/x, x**-0.5 -> 1/sqrt(x), x**3 -> sqr(x)*x."""
    p = scalar_value(c)
    if p is None or not is_scalar_like(c):
        return None
    if p == 2:
        return like(node, T.sqr(x))
    if p == 3:
        return like(node, T.sqr(x) * x)
    if is_discrete(node.dtype):
        return None
    if p == 0.5:
        return like(node, T.sqrt(x))
    if p == -1:
        return like(node, T.reciprocal(x))
    if p == -0.5:
        return like(node, T.reciprocal(T.sqrt(x)))
    return None


def _reciprocal_constant(c: Var, dtype: str) -> Var:
    value = np.reciprocal(constant_value(c).astype(dtype))
    return T.constant(value.reshape([d if d is not None else 1 for d in c.type.shape]), dtype=dtype)


def _scalar(var: Var) -> Var | None:
    """`var` as a 0-d scalar when it holds one value broadcast (a scalar or a dimshuffled scalar)."""
    if var.ndim == 0:
        return var
    if is_scalar_like(var) and isinstance(var.op, DimShuffle) and var.inputs[0].ndim == 0:
        return var.inputs[0]
    if is_scalar_like(var) and constant_value(var) is not None:
        return constant(constant_value(var).reshape(()), var.dtype)
    return None


def _term(var: Var, sign: float) -> tuple | None:
    """(alpha, a, b) when var is sign * alpha * dot(a, b); else None."""
    if isinstance(var.op, E.Neg):
        var, sign = var.inputs[0], -sign
    if isinstance(var.op, Dot):
        return constant(sign, var.dtype), var.inputs[0], var.inputs[1]
    if isinstance(var.op, E.Mul):
        first, second = var.inputs
        for dot, scale in ((first, second), (second, first)):
            s = _scalar(scale)
            if isinstance(dot.op, Dot) and s is not None:
                return (s if sign == 1 else -s), dot.inputs[0], dot.inputs[1]
    return None


def _scaled(var: Var, sign: float) -> tuple:
    """(beta, z) with var == beta * z."""
    if isinstance(var.op, E.Mul):
        first, second = var.inputs
        for z, scale in ((first, second), (second, first)):
            s = _scalar(scale)
            if s is not None:
                return (s if sign == 1 else -s), z
    return constant(sign, var.dtype), var


def gemm(node: Var, a: Var, b: Var):
    """z + alpha * dot(x, y) (also with -, beta * z, or matrix-vector) -> one Gemm node."""
    plus = isinstance(node.op, E.Add)
    candidates = [(b, a, 1.0 if plus else -1.0, 1.0)]
    if plus:
        candidates.append((a, b, 1.0, 1.0))
    else:
        candidates.append((a, b, 1.0, -1.0))
    for product, other, sign, other_sign in candidates:
        term = _term(product, sign)
        if term is None:
            continue
        alpha, left, right = term
        if left.ndim != 2 or right.ndim not in (1, 2):
            continue
        beta, z = _scaled(other, other_sign)
        if z.ndim != node.ndim or z.ndim != (1 if right.ndim == 1 else 2):
            continue
        product = (left.type.shape[0],) + right.type.shape[1:]
        if any(p == 1 and d != 1 for p, d in zip(product, z.type.shape)):
            continue  # z would enlarge the product: Gemm only lets z broadcast up to it
        out = Var(Gemm(), (z, T.cast(alpha, node.dtype), left, right, T.cast(beta, node.dtype)))
        if out.dtype != node.dtype or not _same_shape(out, node):
            continue
        return out
    return None


def gemm_rows_bias(node: Var, a: Var, b: Var):
    """tensordot(x, W) over x's last axis plus a bias broadcast along every other axis (a layer's
    x @ W + b, an LSTM's input projection of every step) -> one Gemm on x's rows, b copied into
    the output first (beta = 1): the bias costs no pass of its own over the result."""
    from ...graph.ops.linalg import TensorDot

    for product, bias in ((a, b), (b, a)):
        op = product.op
        if not isinstance(op, TensorDot) or op.batch or op.axes_b != (0,):
            continue
        left, right = product.inputs
        if left.ndim < 3 or right.ndim != 2 or op.axes_a != (left.ndim - 1,):
            continue
        if bias.ndim != node.ndim or any(d != 1 for d in bias.type.shape[:-1]):
            continue
        if len({node.dtype, product.dtype, bias.dtype}) != 1 or is_discrete(node.dtype):
            continue
        rows = T.reshape(left, (-1, left.shape[-1]))
        one = constant(1, node.dtype)
        product2 = Var(Gemm(), (T.reshape(bias, (1, -1)), one, rows, right, one))
        shape = [left.shape[i] for i in range(left.ndim - 1)] + [right.shape[1]]
        return T.reshape(product2, shape, ndim=node.ndim)
    return None


def _same_shape(a: Var, b: Var) -> bool:
    return all(p == q or p is None or q is None for p, q in zip(a.type.shape, b.type.shape))


def ger(node: Var, a: Var, b: Var):
    """A + outer(x, y) (x[:, None] * y[None, :]) -> Ger."""
    for matrix, outer in ((a, b), (b, a)):
        if matrix.ndim != 2 or not isinstance(outer.op, E.Mul):
            continue
        u, v = outer.inputs
        if (isinstance(u.op, DimShuffle) and u.op.new_order == (0, "x") and isinstance(v.op, DimShuffle)
                and v.op.new_order == ("x", 0)):
            out = Var(Ger(), (matrix, constant(1, node.dtype), u.inputs[0], v.inputs[0]))
            if out.dtype == node.dtype and _same_shape(out, node) and matrix.type.shape[0] != 1 and matrix.type.shape[1] != 1:
                return out
    return None


def sum_of_product_to_dot(node: Var, a: Var, b: Var):
    """sum(x * y) of two vectors -> dot(x, y)."""
    if a.ndim != 1 or b.ndim != 1 or node.op.keepdims or node.op.axis != (0,) or a.dtype != b.dtype:
        return None
    if a.type.shape[0] == 1 or b.type.shape[0] == 1:
        return None
    return like(node, Var(Dot(), (a, b)))


specialize = [
    rule("pow_specialize", Pat(E.Pow, x, Pat.const(name="c")), pow_specialize),
    rule("div_by_constant", Pat(E.TrueDiv, x, Pat.const(name="c")), lambda node, x, c: (
        like(node, x * _reciprocal_constant(c, node.dtype))
        if constant_value(c) is not None and not is_discrete(node.dtype) and constant_value(c).dtype.kind == "f"
        and not np.any(constant_value(c) == 0) else None)),
    rule("gemm", Pat((E.Add, E.Sub), Pat.var("a"), Pat.var("b")), gemm),
    rule("gemm_rows_bias", Pat(E.Add, Pat.var("a"), Pat.var("b")), gemm_rows_bias),
    rule("ger", Pat(E.Add, Pat.var("a"), Pat.var("b")), ger),
    rule("sum_of_product_to_dot", Pat(Sum, Pat(E.Mul, Pat.var("a"), Pat.var("b"))), sum_of_product_to_dot),
]


def merge_max_and_argmax(outputs: Sequence[Var]) -> list[Var]:
    """max(x, axis) and argmax(x, axis) in one graph: one MaxAndArgmax node read twice."""
    order = toposort(outputs)
    maxes = {(id(v.inputs[0]), v.op.axis, v.op.keepdims): v for v in order if type(v.op) is Max}
    pairs = {}
    for v in order:
        if type(v.op) is Argmax and not v.op.minimum:
            key = (id(v.inputs[0]), v.op.axis, v.op.keepdims)
            if key in maxes:
                pairs[key] = (maxes[key], v)
    if not pairs:
        return list(outputs)
    mapping = {}
    for (_, axis, keepdims), (mx, am) in pairs.items():
        with inherited_trace(mx.trace):
            both = Var(MaxAndArgmax(axis, keepdims), (mx.inputs[0],))
            mapping[mx] = Var(Proj(0), (both,))
            mapping[am] = Var(Proj(1), (both,))
    from ...graph.var import replace

    return replace(list(outputs), mapping)
