"""Numerical stability: rewrite forms that overflow or lose precision into stable equivalents.

`grad` applies these to a cost before differentiating it, so gradients come from the stable forms too.
"""

from __future__ import annotations

from ...graph import tensor as T
from ...graph.ops import elemwise as E
from ...graph.ops.nnet import LogSoftmax, SelectClass, Sigmoid, Softmax, Softplus
from ...graph.ops.reduce import Max, Sum
from ...graph.ops.shape import DimShuffle
from ...graph.ops.subtensor import Subtensor
from ...graph.var import Var
from ..rewrite import Pat, rule
from .common import is_scalar_like, like, scalar_value

x, y = Pat.var("x"), Pat.var("y")


def _one(c: Var) -> bool:
    return scalar_value(c) == 1 and is_scalar_like(c)


def log_softmax(node: Var, s: Var, x: Var):
    """log(softmax(x)) -> log_softmax(x)."""
    return Var(LogSoftmax(s.op.axis), (x,))


def log_of_indexed_softmax(node: Var, p: Var, s: Var, x: Var):
    """log(softmax(x)[idx]) -> log_softmax(x)[idx]: the cross-entropy written with advanced indexing."""
    if p.inputs[0] is not s:
        return None
    return Var(p.op, (Var(LogSoftmax(s.op.axis), (x,)),) + p.inputs[1:])


def log_of_selected_softmax(node: Var, s: Var, x: Var, labels: Var):
    """log(softmax(x)[rows, labels]) -> log_softmax(x)[rows, labels] (categorical_crossentropy)."""
    return Var(SelectClass(), (Var(LogSoftmax(s.op.axis), (x,)), labels))


def log_sigmoid(node: Var, x: Var):
    """log(sigmoid(x)) -> -softplus(-x)."""
    return like(node, -Var(Softplus(), (-x,)))


def log_one_minus_sigmoid(node: Var, c: Var, x: Var):
    """log(1 - sigmoid(x)) -> -softplus(x)."""
    return like(node, -Var(Softplus(), (x,))) if _one(c) else None


def log_one_plus_exp(node: Var, x: Var, c: Var):
    """log(1 + exp(x)) -> softplus(x)."""
    return like(node, Var(Softplus(), (x,))) if _one(c) else None


def log_one_plus(node: Var, x: Var, c: Var):
    """log(1 + x) -> log1p(x)."""
    return like(node, T.log1p(x)) if _one(c) else None


def exp_minus_one(node: Var, x: Var, c: Var):
    """exp(x) - 1 -> expm1(x)."""
    return like(node, T.expm1(x)) if _one(c) else None


def _is_shifted(x: Var) -> bool:
    """x - max(x) (possibly through a broadcast or a gradient stop): already the stable form."""
    if not isinstance(x.op, E.Sub):
        return False
    shift = x.inputs[1]
    while isinstance(shift.op, (DimShuffle, E.DisconnectedGrad, E.ZeroGrad)):
        shift = shift.inputs[0]
    return isinstance(shift.op, Max)


def log_sum_exp(node: Var, total: Var, x: Var):
    """log(sum(exp(x))) -> max(x) + log(sum(exp(x - max(x)))), which cannot overflow."""
    if _is_shifted(x):
        return None
    return like(node, T.logsumexp(x, axis=total.op.axis, keepdims=total.op.keepdims))


stability = [
    rule("log_softmax", Pat(E.Log, Pat(Softmax, x, name="s")), log_softmax),
    rule("log_indexed_softmax", Pat(E.Log, Pat(Subtensor, name="p")), lambda node, p: (
        log_of_indexed_softmax(node, p, p.inputs[0], p.inputs[0].inputs[0])
        if isinstance(p.inputs[0].op, Softmax) else None)),
    rule("log_selected_softmax", Pat(E.Log, Pat(SelectClass, Pat(Softmax, x, name="s"), Pat.var("labels"))),
         log_of_selected_softmax),
    rule("log_sigmoid", Pat(E.Log, Pat(Sigmoid, x)), log_sigmoid),
    rule("log_one_minus_sigmoid", Pat(E.Log, Pat(E.Sub, Pat.var("c"), Pat(Sigmoid, x))), log_one_minus_sigmoid),
    rule("softplus", Pat(E.Log, Pat(E.Add, Pat(E.Exp, x), Pat.var("c"))), log_one_plus_exp),
    rule("log1p", Pat(E.Log, Pat(E.Add, x, Pat.var("c"))), log_one_plus),
    rule("expm1", Pat(E.Sub, Pat(E.Exp, x), Pat.var("c")), exp_minus_one),
    rule("logsumexp", Pat(E.Log, Pat(Sum, Pat(E.Exp, x), name="total")), log_sum_exp),
]
