"""Reverse-mode symbolic differentiation: grad, Lop, Rop, and the Theano gradient helpers."""

from __future__ import annotations

import warnings
from typing import Sequence

import numpy as np

from ..graph import tensor as T
from ..graph.type import is_discrete
from ..graph.var import Var, as_tensor_variable, format_trace, toposort


class DisconnectedInputError(ValueError):
    """grad was asked for a variable the cost does not depend on."""


class NullTypeGradError(TypeError):
    """A gradient that is mathematically undefined was requested."""


class DisconnectedType:
    """Returned for disconnected inputs with return_disconnected='Disconnected'."""

    def __repr__(self):
        return "DisconnectedType()"


def fit_cotangent(g: Var, x: Var) -> Var:
    """Undo broadcasting once, centrally: sum `g` down to the static shape of `x`, in x's dtype."""
    if g.ndim > x.ndim:
        g = T.sum(g, axis=tuple(range(g.ndim - x.ndim)))
    if g.ndim != x.ndim:
        raise ValueError(f"internal error: cotangent {g.type} cannot fit {x} of type {x.type}")
    axes = tuple(a for a, (dg, dx) in enumerate(zip(g.type.shape, x.type.shape)) if dx == 1 and dg != 1)
    if axes:
        g = T.sum(g, axis=axes, keepdims=True)
    if g.dtype != x.dtype and not is_discrete(x.dtype):
        g = T.cast(g, x.dtype)
    return g


def _sum_all(parts: list) -> Var:
    total = parts[0]
    for part in parts[1:]:
        total = total + part
    return total


def backprop(seeds: dict, wrt: Sequence[Var], stop: frozenset = frozenset()) -> tuple[dict, set]:
    """Propagate the cotangents `seeds` ({var: cotangent}) back to `wrt`.

    Returns ({var: summed cotangent}, the set of ids of vars the seeds reach at all). Variables in
    `stop` are treated as constants; discrete-valued nodes pass no gradient (zero, as in Theano).
    """
    wanted = {id(w) for w in wrt}
    order = toposort(list(seeds), stop=set(stop))
    relevant: set[int] = set()
    for var in order:  # inputs first: a var is relevant if some wanted var lies below it
        if id(var) in wanted or (var not in stop and any(id(x) in relevant for x in var.inputs)):
            relevant.add(id(var))
    parts: dict[int, list] = {}
    for var, g in seeds.items():
        if id(var) in relevant:
            parts.setdefault(id(var), []).append(fit_cotangent(as_tensor_variable(g), var))
    reached = {id(v) for v in seeds if id(v) in relevant}
    totals: dict[int, Var] = {}
    for var in reversed(order):
        if id(var) not in reached:
            continue
        if id(var) in parts:
            totals[id(var)] = _sum_all(parts.pop(id(var)))
        if not var.inputs or var in stop:
            continue
        for x in var.inputs:
            if id(x) in relevant:
                reached.add(id(x))
        g = totals.get(id(var))
        if g is None or is_discrete(var.dtype):
            continue
        cotangents = var.op.pullback(var.inputs, var, g)
        if len(cotangents) != len(var.inputs):
            raise ValueError(
                f"internal error: {var.op}.pullback returned {len(cotangents)} cotangents for {len(var.inputs)} inputs"
            )
        for x, gx in zip(var.inputs, cotangents):
            if gx is None or id(x) not in relevant or is_discrete(x.dtype):
                continue
            parts.setdefault(id(x), []).append(fit_cotangent(as_tensor_variable(gx), x))
    return totals, reached


def grad(cost, wrt, consider_constant=None, known_grads=None, disconnected_inputs: str = "raise",
         return_disconnected: str = "zero", add_names: bool = True, null_gradients: str = "raise"):
    """The symbolic gradient of the scalar `cost` with respect to `wrt` (a variable or a list)."""
    if disconnected_inputs not in ("raise", "warn", "ignore"):
        raise ValueError(f"disconnected_inputs must be 'raise', 'warn' or 'ignore', got {disconnected_inputs!r}")
    if return_disconnected not in ("zero", "None", "Disconnected"):
        raise ValueError(f"return_disconnected must be 'zero', 'None' or 'Disconnected', got {return_disconnected!r}")
    single = not isinstance(wrt, (list, tuple))
    wrt_list = [wrt] if single else list(wrt)
    for position, w in enumerate(wrt_list):
        if not isinstance(w, Var):
            raise TypeError(f"grad: wrt[{position}] must be a symbolic variable, got {type(w).__name__} {w!r:.60}")
    seeds: dict = {}
    if cost is not None:
        cost = as_tensor_variable(cost)
        if cost.ndim != 0:
            raise TypeError(
                f"grad: cost must be a scalar, got {cost} with {cost.ndim} dimensions (type {cost.type}); "
                f"sum or average it first. The cost was created at\n  {cost.where()}"
            )
        if is_discrete(cost.dtype):
            raise TypeError(f"grad: cost must be a float, got dtype {cost.dtype}; created at\n  {cost.where()}")
        seeds[cost] = T.ones_like(cost)
    elif not known_grads:
        raise ValueError("grad: cost is None, so known_grads must give at least one gradient")
    for var, g in (known_grads or {}).items():
        var, g = as_tensor_variable(var), as_tensor_variable(g)
        if g.ndim != var.ndim:
            raise ValueError(f"grad: known_grads for {var} has {g.ndim} dimensions, expected {var.ndim}")
        seeds[var] = seeds[var] + g if var in seeds else g
    stop = frozenset(as_tensor_variable(c) for c in (consider_constant or ()))
    totals, reached = backprop(seeds, wrt_list, stop)
    results = []
    for w in wrt_list:
        g = totals.get(id(w))
        if g is None and id(w) not in reached:
            message = (
                "grad method was asked to compute the gradient with respect to a variable that is not part of "
                f"the computational graph of the cost, or is used only by a non-differentiable operator: {w!r}, "
                f"created at\n  {w.where()}"
            )
            if disconnected_inputs == "raise":
                raise DisconnectedInputError(message)
            if disconnected_inputs == "warn":
                warnings.warn(message, stacklevel=2)
            if return_disconnected == "None":
                results.append(None)
                continue
            if return_disconnected == "Disconnected":
                results.append(DisconnectedType())
                continue
        if g is None:
            g = T.zeros_like(w, dtype=_grad_dtype(w))
        if add_names and w.name and cost is not None:
            g.name = g.name or f"(d{cost.name or '<cost>'}/d{w.name})"
        results.append(g)
    return results[0] if single else results


def _grad_dtype(w: Var) -> str:
    from ..graph.config import config

    return config.floatX if is_discrete(w.dtype) else w.dtype


def Lop(f, wrt, eval_points, consider_constant=None, disconnected_inputs: str = "raise"):
    """Vector-Jacobian product: eval_points^T (df/dwrt), one result per `wrt`."""
    fs = f if isinstance(f, (list, tuple)) else [f]
    points = eval_points if isinstance(eval_points, (list, tuple)) else [eval_points]
    if len(fs) != len(points):
        raise ValueError(f"Lop: {len(fs)} outputs but {len(points)} eval_points")
    known = {}
    for fi, p in zip(fs, points):
        fi, p = as_tensor_variable(fi), as_tensor_variable(p)
        if p.ndim != fi.ndim:
            raise ValueError(f"Lop: eval point for {fi} must have {fi.ndim} dimensions, got {p.ndim}")
        known[fi] = p
    out = grad(None, wrt if isinstance(wrt, (list, tuple)) else [wrt], consider_constant=consider_constant,
               known_grads=known, disconnected_inputs=disconnected_inputs)
    return out if isinstance(wrt, (list, tuple)) else out[0]


def Rop(f, wrt, eval_points, disconnected_outputs: str = "raise", return_disconnected: str = "zero"):
    """Jacobian-vector product (df/dwrt) eval_points, by differentiating a vector-Jacobian product.

    Lop is linear in its cotangent u, so d/du <Lop(f, wrt, u), v> = (df/dwrt) v.
    """
    fs = f if isinstance(f, (list, tuple)) else [f]
    ws = wrt if isinstance(wrt, (list, tuple)) else [wrt]
    vs = eval_points if isinstance(eval_points, (list, tuple)) else [eval_points]
    if len(ws) != len(vs):
        raise ValueError(f"Rop: {len(ws)} wrt variables but {len(vs)} eval_points")
    results = []
    for fi in fs:
        fi = as_tensor_variable(fi)
        u = T.zeros_like(fi) if not is_discrete(fi.dtype) else T.zeros_like(fi, dtype="float64")
        u = T.tensor(dtype=u.dtype, shape=fi.type.shape, name="rop_u")
        vjps = Lop(fi, ws, [u], disconnected_inputs="ignore")
        inner = None
        for vjp, v in zip(vjps, vs):
            term = T.sum(vjp * as_tensor_variable(v))
            inner = term if inner is None else inner + term
        jvp = grad(inner, u, disconnected_inputs="ignore")
        results.append(_substitute_zero(jvp, u, fi))
    return results if isinstance(f, (list, tuple)) else results[0]


def _substitute_zero(expr: Var, u: Var, like: Var) -> Var:
    """Replace the dummy cotangent in a JVP (whose value it does not depend on) by zeros shaped like `like`."""
    from ..graph.var import replace

    return replace([expr], {u: T.zeros_like(like, dtype=u.dtype)})[0]


def zero_grad(x) -> Var:
    """x in the forward pass; a zero gradient in the backward pass."""
    return T.zero_grad(x)


def disconnected_grad(x) -> Var:
    """x in the forward pass; no gradient flows back through it."""
    return T.disconnected_grad(x)


def grad_clip(x, lower_bound, upper_bound) -> Var:
    """x in the forward pass; its gradient clipped to [lower_bound, upper_bound]."""
    return T.grad_clip(x, lower_bound, upper_bound)


def grad_scale(x, multiplier) -> Var:
    """x in the forward pass; its gradient multiplied by `multiplier`."""
    return T.grad_scale(x, multiplier)


def where(var: Var) -> str:
    return format_trace(var.trace)
