"""theanine.ifelse: `ifelse(condition, then_branch, else_branch)`, lazy, and its gradient."""

from __future__ import annotations

from typing import Any, Sequence

from ..graph import tensor as T
from ..graph.ops.composite import Proj
from ..graph.ops.ifelse import IfElse
from ..graph.ops.scan import inner_leaves, inner_placeholder
from ..graph.type import TensorType, TupleType, is_discrete
from ..graph.var import Var, as_tensor_variable, replace

__all__ = ["ifelse", "IfElse"]


def _as_list(x: Any) -> list:
    return list(x) if isinstance(x, (list, tuple)) else [x]


def ifelse(condition: Any, then_branch: Any, else_branch: Any, name: str | None = None):
    """then_branch when the scalar `condition` is nonzero, else else_branch; only one is computed.

    Branches may be lists of variables (of equal length); the result is then a list.
    """
    cond = as_tensor_variable(condition)
    if cond.ndim != 0:
        raise TypeError(f"ifelse: the condition must be a scalar, got {cond} of type {cond.type}")
    single = not isinstance(then_branch, (list, tuple))
    thens, elses = _as_list(then_branch), _as_list(else_branch)
    if len(thens) != len(elses) or not thens:
        raise ValueError(
            f"ifelse: the then branch has {len(thens)} output(s) and the else branch {len(elses)}; "
            "give both the same number (at least one)"
        )
    # As Theano: a plain number or array in one branch takes the dtype of the other branch.
    for k, (a, b) in enumerate(zip(thens, elses)):
        if not isinstance(a, Var) and isinstance(b, Var):
            thens[k] = as_tensor_variable(a, dtype=b.dtype)
        elif not isinstance(b, Var) and isinstance(a, Var):
            elses[k] = as_tensor_variable(b, dtype=a.dtype)
    thens = [as_tensor_variable(x) for x in thens]
    elses = [as_tensor_variable(x) for x in elses]
    for k, (a, b) in enumerate(zip(thens, elses)):
        if a.dtype != b.dtype or a.ndim != b.ndim:
            raise TypeError(
                f"ifelse{f' {name!r}' if name else ''}: output {k} of the then branch is {a} of "
                f"type {a.type}, of the else branch {b} of type {b.type}; both branches must give "
                f"the same dtype and number of dimensions (cast one with T.cast(x, '{a.dtype}'))"
            )
    return _build(cond, thens, elses, name, single)


def _build(cond: Var, thens: list, elses: list, name, single: bool):
    free = inner_leaves(thens + elses, [])
    placeholders = [inner_placeholder(v.type, v.name) for v in free]
    inner = replace(thens + elses, dict(zip(free, placeholders))) if free else thens + elses
    n = len(thens)
    op = IfElse(tuple(placeholders), tuple(inner[:n]), tuple(inner[n:]), name)
    node = Var(op, (cond,) + tuple(free))
    if not isinstance(node.type, TupleType):
        return node if single else [node]
    outs = [Var(Proj(k), (node,)) for k in range(n)]
    return outs[0] if single and n == 1 else outs


def ifelse_pullback(inputs: Sequence[Var], node: Var, g) -> tuple:
    """Cotangents of an IfElse's inputs: an IfElse whose branches are the branches' pullbacks."""
    from .autodiff import backprop

    op: IfElse = node.op
    gs = g if isinstance(g, tuple) else (g,)
    xs = list(inputs[1:])
    wrt = [p for p, x in zip(op.inner_inputs, xs) if not is_discrete(x.dtype)]
    if not wrt:
        return (None,) * len(inputs)
    given, g_ps = [], []
    for k, gk in enumerate(gs):
        if gk is not None and not is_discrete(op.then_outputs[k].dtype):
            given.append((k, gk))
            g_ps.append(inner_placeholder(TensorType(gk.dtype, gk.type.shape), "g"))
    branches = []
    for outputs in (op.then_outputs, op.else_outputs):
        seeds: dict = {}
        for (k, _), p in zip(given, g_ps):
            out = outputs[k]
            seeds[out] = seeds[out] + p if out in seeds else p
        totals, _ = backprop(seeds, wrt)
        branches.append([totals.get(id(p), T.zeros_like(p)) for p in wrt])
    grad_op = IfElse(tuple(op.inner_inputs) + tuple(g_ps), tuple(branches[0]), tuple(branches[1]))
    grad_node = Var(grad_op, (inputs[0],) + tuple(xs) + tuple(gk for _, gk in given))
    if isinstance(grad_node.type, TupleType):
        grads = iter([Var(Proj(k), (grad_node,)) for k in range(len(wrt))])
    else:
        grads = iter([grad_node])
    results: list = [None]
    for x in xs:
        results.append(None if is_discrete(x.dtype) else next(grads))
    return tuple(results)
