"""Reverse-mode symbolic differentiation: grad, Lop, Rop, and the Theano gradient helpers."""

from __future__ import annotations

import gc
import warnings
from typing import Sequence

from ..graph import tensor as T
from ..graph.ops.composite import Proj
from ..graph.type import TupleType, is_discrete
from ..graph.var import Constant, inherited_trace, Var, as_tensor_variable, format_trace, toposort


class DisconnectedInputError(ValueError):
    """grad was asked for a variable the cost does not depend on."""


class NullTypeGradError(TypeError):
    """A gradient that is mathematically undefined was requested."""


class DisconnectedType:
    """Returned for disconnected inputs with return_disconnected='Disconnected'."""

    def __repr__(self):
        return "DisconnectedType()"


class NullGrad:
    """A pullback's answer for an input whose gradient is undefined or not implemented.

    It is an error only when that gradient is actually needed (the input leads to a wrt).
    """

    def __init__(self, op, position: int, comment: str = "", kind: str = "undefined") -> None:
        self.op, self.position, self.comment, self.kind = op, position, comment, kind

    def __repr__(self) -> str:
        return f"NullGrad({self.op}, {self.position}, {self.kind})"


def grad_undefined(op, x_pos: int, x=None, comment: str = "") -> NullGrad:
    """For pullbacks: the gradient with respect to input `x_pos` is mathematically undefined."""
    return NullGrad(op, x_pos, comment, "undefined")


def grad_not_implemented(op, x_pos: int, x=None, comment: str = "") -> NullGrad:
    """For pullbacks: the gradient with respect to input `x_pos` is not implemented."""
    return NullGrad(op, x_pos, comment, "not implemented")


def fit_cotangent(g: Var, x: Var) -> Var:
    """Undo broadcasting once, centrally: sum `g` down to the static shape of `x`, in x's dtype."""
    gt, xt = g.type, x.type
    if gt.shape == xt.shape and gt.dtype == xt.dtype:  # the common case, kept cheap
        return g
    if g.ndim > x.ndim:
        g = T.sum(g, axis=tuple(range(g.ndim - x.ndim)))
    if g.ndim != x.ndim:
        raise ValueError(f"internal error: cotangent {g.type} cannot fit {x} of type {x.type}")
    pairs = enumerate(zip(g.type.shape, x.type.shape))
    axes = tuple(a for a, (dg, dx) in pairs if dx == 1 and dg != 1)
    if axes:
        g = T.sum(g, axis=axes, keepdims=True)
    if g.dtype != x.dtype and not is_discrete(x.dtype):
        g = T.cast(g, x.dtype)
    return g


def _sum_all(parts: list) -> Var:
    """parts[0] + parts[1] + ... (a chain of adds; fusion flattens it later). A part that adds a
    slice's gradient into zeros (the pullback of x[idx]) is added into the running total instead:
    the gradients of the slices of one array (an LSTM's four gates) fill a single buffer."""
    total = parts[0]
    for part in parts[1:]:
        if _into_zeros(part) and part.type == total.type:
            total, part = part, total
        if _into_zeros(total) and part.type == total.type:
            total = Var(total.op, (part,) + total.inputs[1:])  # inc(0, y, idx) + a = inc(a, y, idx)
        else:
            total = total + part
    return total


def _into_zeros(v: Var) -> bool:
    """Is v inc_subtensor(zeros_like(x), y, idx) (an increment, not a set)?"""
    from ..graph.ops.elemwise import Second
    from ..graph.ops.subtensor import IncSubtensor

    if not isinstance(v.op, IncSubtensor) or v.op.set_instead_of_inc:
        return False
    from ..graph.ops.shape import DimShuffle

    base = v.inputs[0]
    if not isinstance(base.op, Second):
        return False
    fill = base.inputs[1]
    while isinstance(fill.op, DimShuffle):  # the scalar zero, broadcast to the base's rank
        fill = fill.inputs[0]
    if not isinstance(fill.op, Constant):
        return False
    fill = fill.op.data
    return fill.size == 1 and not fill.any() and base.type == v.type


def backprop(seeds: dict, wrt: Sequence[Var], stop: frozenset = frozenset()) -> tuple[dict, set]:
    """Propagate the cotangents `seeds` ({var: cotangent}) back to `wrt`.

    Returns ({var: summed cotangent}, the set of ids of vars the seeds reach at all). Variables in
    `stop` are treated as constants; discrete-valued nodes pass no gradient (zero, as in Theano).
    """
    # Building a gradient allocates many small acyclic objects; pausing the cycle collector
    # meanwhile saves about a quarter of the time on large graphs (it rescans the whole heap).
    paused = gc.isenabled()
    gc.disable()
    try:
        return _backprop(seeds, wrt, stop)
    finally:
        if paused:
            gc.enable()


def _backprop(seeds: dict, wrt: Sequence[Var], stop: frozenset) -> tuple[dict, set]:
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
    # Cotangents of the projections of a multi-output node, gathered for that node: {id: {i: g}}.
    tuple_parts: dict[int, dict] = {}
    for var in reversed(order):
        if id(var) not in reached:
            continue
        if id(var) in parts:
            with inherited_trace(var.trace):
                totals[id(var)] = _sum_all(parts.pop(id(var)))
        if not var.inputs or var in stop:
            continue
        g = totals.get(id(var))
        if isinstance(var.op, Proj) and isinstance(var.inputs[0].type, TupleType):
            # A projection passes its cotangent on to its node, which gets them all at once.
            node = var.inputs[0]
            if id(node) in relevant:
                reached.add(id(node))
                if g is not None and not is_discrete(var.dtype):
                    tuple_parts.setdefault(id(node), {})[var.op.index] = g
            continue
        if isinstance(var.type, TupleType):
            found = tuple_parts.pop(id(var), {})
            g = tuple(found.get(i) for i in range(len(var.type.types))) if found else None
        if g is None or (not isinstance(var.type, TupleType) and is_discrete(var.dtype)):
            # Connected through an integer-valued node: a zero gradient, not a disconnected one.
            reached.update(id(x) for x in var.inputs if id(x) in relevant)
            continue
        try:
            with inherited_trace(var.trace):  # gradient nodes point at the user's forward line
                cotangents = _pullback(var, g)
        except (NotImplementedError, NullTypeGradError) as error:
            node = f"{var.op}({', '.join(map(str, var.inputs))})"
            raise type(error)(
                f"{error}; grad needs it for the node {node}, created at\n  {var.where()}"
            ) from error
        if len(cotangents) != len(var.inputs):
            raise ValueError(
                f"internal error: {var.op}.pullback returned {len(cotangents)} cotangents for "
                f"{len(var.inputs)} inputs"
            )
        for x, gx in zip(var.inputs, cotangents):
            # None means "not connected" (Theano's DisconnectedType), e.g. fill's shape input.
            if gx is None or id(x) not in relevant:
                continue
            if isinstance(gx, NullGrad):
                raise _null_grad_error(var, x, gx)
            reached.add(id(x))
            if is_discrete(x.dtype):
                continue
            with inherited_trace(var.trace):
                parts.setdefault(id(x), []).append(fit_cotangent(as_tensor_variable(gx), x))
    return totals, reached


def _pullback(var: Var, g) -> tuple:
    """The node's cotangents: its op's pullback, or a compiler rule for ops with inner graphs.

    A multi-output node (TupleType) gets a tuple of cotangents, None for unused outputs.
    """
    rule = _compiler_pullbacks().get(type(var.op))
    if rule is not None:
        return rule(var.inputs, var, g)
    return var.op.pullback(var.inputs, var, g)


_RULES: dict = {}


def _compiler_pullbacks() -> dict:
    """Pullbacks that need autodiff itself (the inner graphs of scan and ifelse), loaded lazily."""
    if not _RULES:
        from ..graph.ops.ifelse import IfElse
        from ..graph.ops.scan import Scan
        from .ifelse import ifelse_pullback
        from .scan_grad import scan_pullback

        _RULES.update({Scan: scan_pullback, IfElse: ifelse_pullback})
    return _RULES


def _null_grad_error(var: Var, x: Var, null: NullGrad) -> Exception:
    comment = f" ({null.comment})" if null.comment else ""
    message = (
        f"the gradient of {var.op} with respect to its input {null.position} ({x!r}) is "
        f"{null.kind}{comment}, and grad needs it; the node was created at\n  {var.where()}"
    )
    return NullTypeGradError(message) if null.kind == "undefined" else NotImplementedError(message)


def _check_choice(name: str, value: str, choices: tuple) -> None:
    if value not in choices:
        allowed = ", ".join(repr(c) for c in choices[:-1]) + f" or {choices[-1]!r}"
        raise ValueError(f"{name} must be {allowed}, got {value!r}")


def grad(
    cost, wrt, consider_constant=None, known_grads=None, disconnected_inputs: str = "raise",
    return_disconnected: str = "zero", add_names: bool = True, null_gradients: str = "raise",
):
    """The symbolic gradient of the scalar `cost` with respect to `wrt` (a variable or a list).

    Undefined gradients always raise NullTypeGradError (null_gradients='return' is accepted for
    compatibility and behaves like 'raise').
    """
    _check_choice("disconnected_inputs", disconnected_inputs, ("raise", "warn", "ignore"))
    _check_choice("return_disconnected", return_disconnected, ("zero", "None", "Disconnected"))
    _check_choice("null_gradients", null_gradients, ("raise", "return"))
    single = not isinstance(wrt, (list, tuple))
    wrt_list = [wrt] if single else list(wrt)
    for position, w in enumerate(wrt_list):
        if not isinstance(w, Var):
            raise TypeError(
                f"grad: wrt[{position}] must be a symbolic variable, "
                f"got {type(w).__name__} {w!r:.60}"
            )
    seeds: dict = {}
    if cost is not None:
        cost = as_tensor_variable(cost)
        if cost.ndim != 0:
            raise TypeError(
                f"grad: cost must be a scalar, got {cost} with {cost.ndim} dimensions "
                f"(type {cost.type}); sum or average it first. The cost was created at\n"
                f"  {cost.where()}"
            )
        if is_discrete(cost.dtype):
            raise TypeError(
                f"grad: cost must be a float, got dtype {cost.dtype}; created at\n  {cost.where()}"
            )
    elif not known_grads:
        raise ValueError("grad: cost is None, so known_grads must give at least one gradient")
    for var, g in (known_grads or {}).items():
        var, g = as_tensor_variable(var), as_tensor_variable(g)
        if g.ndim != var.ndim:
            raise ValueError(
                f"grad: known_grads for {var} has {g.ndim} dimensions, expected {var.ndim}"
            )
        seeds[var] = seeds[var] + g if var in seeds else g
    stop = frozenset(as_tensor_variable(c) for c in (consider_constant or ()))
    if cost is not None:
        # Differentiate the stable form of the cost (log-softmax, softplus ...), so the gradient is
        # stable too; the variables the caller names stay as they are.
        cost = stabilize_cost(cost, frozenset(wrt_list) | stop | frozenset(seeds))
        seeds[cost] = seeds[cost] + T.ones_like(cost) if cost in seeds else T.ones_like(cost)
    totals, reached = backprop(seeds, wrt_list, stop)
    results = []
    for w in wrt_list:
        g = totals.get(id(w))
        if g is None and id(w) not in reached:
            message = (
                "grad method was asked to compute the gradient with respect to a variable that is "
                "not part of the computational graph of the cost, or is used only by a "
                f"non-differentiable operator: {w!r}, created at\n  {w.where()}"
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


def stabilize_cost(cost: Var, keep: frozenset) -> Var:
    """The cost rewritten by the stability rules, never looking into the variables in `keep`."""
    from .rewrite import rewrite
    from .rules.canonical import canonical_order
    from .rules.stability import stability

    return rewrite([cost], canonical_order + stability, name="stabilize_for_grad", opaque=keep)[0]


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
            raise ValueError(
                f"Lop: eval point for {fi} must have {fi.ndim} dimensions, got {p.ndim}"
            )
        known[fi] = p
    out = grad(
        None, wrt if isinstance(wrt, (list, tuple)) else [wrt], consider_constant=consider_constant,
        known_grads=known, disconnected_inputs=disconnected_inputs,
    )
    return out if isinstance(wrt, (list, tuple)) else out[0]


def Rop(
    f, wrt, eval_points, disconnected_outputs: str = "raise", return_disconnected: str = "zero"
):
    """Jacobian-vector product (df/dwrt) eval_points, by differentiating a vector-Jacobian product.

    Lop is linear in its cotangent u, so d/du <Lop(f, wrt, u), v> = (df/dwrt) v.
    """
    _check_choice("disconnected_outputs", disconnected_outputs, ("raise", "warn", "ignore"))
    _check_choice("return_disconnected", return_disconnected, ("zero", "None", "Disconnected"))
    fs = f if isinstance(f, (list, tuple)) else [f]
    ws = [as_tensor_variable(w) for w in _as_list(wrt)]
    vs = [as_tensor_variable(v) for v in _as_list(eval_points)]
    if len(ws) != len(vs):
        raise ValueError(f"Rop: {len(ws)} wrt variables but {len(vs)} eval_points")
    for position, (w, v) in enumerate(zip(ws, vs)):
        if v.ndim != w.ndim:
            raise ValueError(
                f"Rop: eval_points[{position}] must have the {w.ndim} dimensions of "
                f"wrt[{position}] {w!r}, got {v!r} with {v.ndim}"
            )
    results = []
    for fi in fs:
        fi = as_tensor_variable(fi)
        u = T.tensor(dtype=_grad_dtype(fi), shape=fi.type.shape, name="rop_u")
        vjps = grad(
            None, ws, known_grads={fi: u}, disconnected_inputs="ignore", return_disconnected="None"
        )
        terms = [T.sum(vjp * v) for vjp, v in zip(vjps, vs) if vjp is not None]
        if not terms:
            message = (
                f"Rop: the output {fi!r} does not depend on any of wrt "
                f"({', '.join(map(repr, ws))}); the output was created at\n  {fi.where()}"
            )
            if disconnected_outputs == "raise":
                raise DisconnectedInputError(message)
            if disconnected_outputs == "warn":
                warnings.warn(message, stacklevel=2)
            if return_disconnected != "zero":
                results.append(None if return_disconnected == "None" else DisconnectedType())
                continue
            results.append(T.zeros_like(fi, dtype=_grad_dtype(fi)))
            continue
        jvp = grad(_sum_all(terms), u, disconnected_inputs="ignore")
        results.append(_substitute_zero(jvp, u, fi))
    return results if isinstance(f, (list, tuple)) else results[0]


def _as_list(x) -> list:
    return list(x) if isinstance(x, (list, tuple)) else [x]


def _substitute_zero(expr: Var, u: Var, like: Var) -> Var:
    """Replace the dummy cotangent u of a JVP (its value is unused) by zeros shaped like `like`."""
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
    """The user's source line that created `var`."""
    return format_trace(var.trace)
