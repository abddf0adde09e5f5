"""`theanine.gradient`: grad, Lop, Rop, jacobian, hessian, verify_grad and gradient-shaping ops."""

from __future__ import annotations

from typing import Any, Callable, Sequence

import numpy as np

from ..graph import tensor as T
from ..graph.evaluate import evaluate
from ..graph.type import TensorType, is_discrete
from ..graph.var import Var, as_tensor_variable, input_var
from .autodiff import (  # noqa: F401
    DisconnectedInputError,
    DisconnectedType,
    Lop,
    NullGrad,
    NullTypeGradError,
    Rop,
    backprop,
    fit_cotangent,
    grad,
    grad_not_implemented,
    grad_undefined,
)

__all__ = [
    "grad", "Lop", "Rop", "jacobian", "hessian", "verify_grad", "numeric_grad", "GradientError",
    "DisconnectedInputError", "NullTypeGradError", "DisconnectedType", "grad_undefined",
    "grad_not_implemented", "NullGrad",
]  # zero_grad, disconnected_grad, grad_clip, grad_scale: module attributes, looked up in T late

_GRAD_SHAPERS = ("zero_grad", "disconnected_grad", "grad_clip", "grad_scale")
_ALIASES = {"consider_constant": "zero_grad"}  # Theano's older name: a zero gradient


def __getattr__(name: str) -> Any:
    """zero_grad & co. are ops of `theanine.tensor`, looked up late (import order is free)."""
    if name in _GRAD_SHAPERS or name in _ALIASES:
        try:
            return getattr(T, _ALIASES.get(name, name))
        except AttributeError:
            message = f"theanine.gradient.{name} needs T.{name}, which is not defined"
            raise AttributeError(message) from None
    raise AttributeError(f"module 'theanine.gradient' has no attribute {name!r}")


# --- jacobian and hessian ------------------------------------------------------------------------


def _format_as(wrt: Any, results: list) -> Any:
    if isinstance(wrt, tuple):
        return tuple(results)
    return results if isinstance(wrt, list) else results[0]


def _element(expression: Var, i: int, n: int) -> Var:
    """expression[i] as a scalar; without indexing ops, a dot with the constant one-hot e_i."""
    if hasattr(T, "getitem") or hasattr(T, "subtensor"):
        return expression[i]
    onehot = np.zeros(n, dtype=expression.dtype)
    onehot[i] = 1
    return T.sum(expression * T.constant(onehot))


def _stack(rows: list, n: int) -> Var:
    """Stack n same-shaped tensors along a new first axis (T.stack when it exists)."""
    if hasattr(T, "stack"):
        return T.stack(rows)
    total = None
    for i, r in enumerate(rows):  # sum_i e_i (x) r_i: only elementwise ops and dimshuffle
        onehot = np.zeros((n,) + (1,) * r.ndim, dtype=r.dtype)
        onehot[i] = 1
        term = T.constant(onehot) * T.shape_padleft(r)
        total = term if total is None else total + term
    return total


def jacobian(expression, wrt, consider_constant=None, disconnected_inputs: str = "raise") -> Any:
    """The Jacobian of the 0- or 1-d `expression` with respect to `wrt` (a variable, list or tuple).

    Each result has shape (len(expression),) + wrt.shape. A short expression of static length gets
    one gradient per element, stacked; otherwise a scan over the elements builds it, as Theano does.
    """
    expression = as_tensor_variable(expression)
    wrt_list = list(wrt) if isinstance(wrt, (list, tuple)) else [wrt]
    if expression.ndim == 0:
        out = grad(
            expression, wrt_list, consider_constant=consider_constant,
            disconnected_inputs=disconnected_inputs,
        )
        return _format_as(wrt, out)
    if expression.ndim != 1:
        raise TypeError(
            f"jacobian: expression must be a 0-d or 1-d tensor, got {expression} with "
            f"{expression.ndim} dimensions (type {expression.type}); flatten it first. "
            f"Created at\n  {expression.where()}"
        )
    n = expression.type.shape[0]
    if n is None or n > 64:
        return _format_as(wrt, _jacobian_by_scan(expression, wrt_list, consider_constant, disconnected_inputs))
    if n == 0:  # an empty Jacobian: zero rows of wrt's shape
        empty = [T.shape_padleft(T.zeros_like(w, dtype=_float(w)))[:0] for w in wrt_list]
        return _format_as(wrt, empty)
    rows_per_wrt: list[list] = [[] for _ in wrt_list]
    for i in range(n):
        gs = grad(
            _element(expression, i, n), wrt_list, consider_constant=consider_constant,
            disconnected_inputs=disconnected_inputs, return_disconnected="zero",
        )
        for k, g in enumerate(gs):
            rows_per_wrt[k].append(g)
    return _format_as(wrt, [_stack(rows, n) for rows in rows_per_wrt])


def _jacobian_by_scan(expression: Var, wrt_list: list, consider_constant, disconnected_inputs: str) -> list:
    """Row i of each Jacobian is grad(expression[i], wrt), computed in a scan over i."""
    from .scan import scan

    def row(i, expr, *ws):
        return grad(expr[i], list(ws), consider_constant=consider_constant,
                    disconnected_inputs=disconnected_inputs, return_disconnected="zero")

    rows, _ = scan(row, sequences=T.arange(expression.shape[0]), non_sequences=[expression, *wrt_list],
                   return_list=True)
    return list(rows)


def _float(w: Var) -> str:
    from ..graph.config import config

    return config.floatX if is_discrete(w.dtype) else w.dtype


def hessian(cost, wrt, consider_constant=None, disconnected_inputs: str = "raise") -> Any:
    """The Hessian of the scalar `cost` with respect to each 1-d variable in `wrt`."""
    cost = as_tensor_variable(cost)
    if cost.ndim != 0:
        raise TypeError(
            f"hessian: cost must be a scalar, got {cost} with {cost.ndim} dimensions; "
            f"created at\n  {cost.where()}"
        )
    wrt_list = list(wrt) if isinstance(wrt, (list, tuple)) else [wrt]
    results = []
    for w in wrt_list:
        if not isinstance(w, Var) or w.ndim != 1:
            what = f"{w} with {w.ndim} dimensions" if isinstance(w, Var) else type(w).__name__
            raise TypeError(f"hessian: each wrt must be a 1-d tensor, got {what}")
        g = grad(
            cost, w, consider_constant=consider_constant, disconnected_inputs=disconnected_inputs
        )
        h = jacobian(
            g, w, consider_constant=consider_constant, disconnected_inputs=disconnected_inputs
        )
        results.append(h)
    return _format_as(wrt, results)


# --- numerical verification ----------------------------------------------------------------------

_TYPE_EPS = {"float64": 1e-6, "float32": 1e-3, "float16": 1e-2}
_TYPE_TOL = {"float64": 1e-4, "float32": 1e-2, "float16": 5e-2}


class GradientError(Exception):
    """The symbolic gradient of an argument differs from its numerical estimate."""

    def __init__(
        self, arg: int, err_pos: Any, shape: tuple, val1: float, val2: float, abs_err: float,
        rel_err: float, abs_tol: float, rel_tol: float, what: str = "element",
    ) -> None:
        super().__init__(arg, err_pos, shape, val1, val2, abs_err, rel_err, abs_tol, rel_tol)
        self.arg, self.err_pos, self.shape = arg, err_pos, shape
        self.val1, self.val2 = val1, val2
        self.abs_err, self.rel_err, self.abs_tol, self.rel_tol = abs_err, rel_err, abs_tol, rel_tol
        self.what = what

    def __str__(self) -> str:
        return (
            f"GradientError: the symbolic gradient of argument {self.arg} (shape {self.shape}) "
            f"differs from the numerical one; worst {self.what} {self.err_pos}: "
            f"symbolic {self.val1!r}, numeric {self.val2!r}, abs_err {self.abs_err:.3g} > abs_tol "
            f"{self.abs_tol:.3g} and rel_err {self.rel_err:.3g} > rel_tol {self.rel_tol:.3g}"
        )


def _compile(inputs: list, outputs: list, mode: Any) -> Callable:
    """A callable computing `outputs`: theanine.function(mode=mode) when asked and available."""
    if mode is not None:
        from .function import function

        try:
            fn = function(inputs, outputs, mode=mode, on_unused_input="ignore")
        except NotImplementedError:
            fn = None
        if fn is not None:
            return lambda *values: [np.asarray(v) for v in fn(*values)]
    return lambda *values: evaluate(outputs, dict(zip(inputs, values)))


class numeric_grad:  # noqa: N801  (Theano's name)
    """Central-difference gradient of a scalar function of arrays, element by element."""

    def __init__(self, f: Callable, pt: Sequence[np.ndarray], eps: float | None = None) -> None:
        self.gf = [_numeric_along(f, pt, k, None, eps) for k in range(len(pt))]

    def max_err(self, g_pt: Sequence[np.ndarray], abs_tol: float, rel_tol: float) -> tuple:
        """(argument, flat position, abs_err, rel_err) of the worst element of `g_pt` against gf."""
        worst = (-1, -1, 0.0, 0.0, -np.inf)
        for k, (a, b) in enumerate(zip(g_pt, self.gf)):
            if np.shape(a) != np.shape(b):
                raise ValueError(
                    f"argument {k}: gradient shape {np.shape(a)} differs from {np.shape(b)}"
                )
            abs_err, rel_err = self.abs_rel_err(a, b)
            scaled = np.minimum(abs_err / abs_tol, rel_err / rel_tol).ravel()
            if scaled.size and scaled.max() > worst[4]:
                pos = int(np.argmax(scaled))
                errs = float(abs_err.ravel()[pos]), float(rel_err.ravel()[pos])
                worst = (k, pos, *errs, scaled[pos])
        return worst[:4]

    @staticmethod
    def abs_rel_err(a, b):
        """Elementwise absolute and relative error of two arrays."""
        abs_err = np.abs(np.asarray(a, dtype="float64") - b)
        return abs_err, abs_err / np.maximum(np.abs(a) + np.abs(b), 1e-8)


def _numeric_along(f: Callable, pt: list, k: int, direction: np.ndarray | None, eps: float | None):
    """d f / d pt[k], per element (direction None) or along `direction`, by central differences."""
    x = pt[k]
    step = eps if eps is not None else _TYPE_EPS.get(x.dtype.name, 1e-6)

    def at(value):
        args = list(pt)
        args[k] = value
        return float(f(*args))

    def central(delta):
        plus, minus = (x + delta).astype(x.dtype), (x - delta).astype(x.dtype)
        # The step actually taken after rounding to x's dtype, so float32 estimates stay honest.
        actual = np.asarray(plus, dtype="float64") - np.asarray(minus, dtype="float64")
        return at(plus) - at(minus), actual

    if direction is not None:
        change, actual = central(direction * step)
        return change / float(np.sum(actual * direction))
    out = np.zeros(x.shape, dtype="float64")
    for idx in np.ndindex(*x.shape):
        delta = np.zeros(x.shape, dtype=x.dtype)
        delta[idx] = step
        change, actual = central(delta)
        out[idx] = change / actual[idx]
    return out


def verify_grad(
    fun: Callable, pt: Sequence, n_tests: int = 2, rng=None, eps: float | None = None,
    out_type=None, abs_tol: float | None = None, rel_tol: float | None = None, mode=None,
    cast_to_output_type: bool = False, no_debug_ref: bool = True,
) -> None:
    """Check the symbolic gradient of `fun` at the point `pt` against central differences.

    The cost is sum(fun(*inputs) * R) for a random R; raises verify_grad.E_grad (GradientError)
    naming the argument and its worst element when the two disagree beyond the tolerances.
    """
    if not isinstance(pt, (list, tuple)):
        raise TypeError(f"verify_grad: pt must be a list of numpy arrays, got {type(pt).__name__}")
    pt = [np.array(p) for p in pt]
    for k, p in enumerate(pt):
        if p.dtype.kind != "f":
            raise TypeError(
                "verify_grad can only check floating-point inputs; "
                f"argument {k} has dtype {p.dtype}"
            )
    if rng is None:
        rng = np.random.default_rng()
    uniform = rng.random if isinstance(rng, np.random.Generator) else rng.random_sample
    tol = max(_TYPE_TOL.get(p.dtype.name, 1e-4) for p in pt)
    abs_tol = tol if abs_tol is None else abs_tol
    rel_tol = tol if rel_tol is None else rel_tol

    inputs = [
        input_var(TensorType(p.dtype, (None,) * p.ndim), f"input {k}") for k, p in enumerate(pt)
    ]
    out = fun(*inputs)
    if isinstance(out, (list, tuple)):
        raise NotImplementedError("verify_grad: fun must return one variable, not a list")
    out = as_tensor_variable(out)
    if is_discrete(out.dtype):
        raise TypeError(f"verify_grad: fun's output must be floating point, got dtype {out.dtype}")
    forward = _compile(inputs, [out], mode)
    out_value = np.asarray(forward(*pt)[0])
    # A projection that changes between tests, kept away from zero so no element is ignored.
    projection = T.tensor(dtype=out_value.dtype if cast_to_output_type else "float64",
                          shape=(None,) * out.ndim, name="random_projection")
    cost = T.sum(out * projection)
    cost_fn = _compile(inputs + [projection], [cost], mode)
    grads = grad(cost, inputs, disconnected_inputs="ignore")
    grad_fn = _compile(inputs + [projection], grads, mode)
    for _ in range(n_tests):
        r = (uniform(out_value.shape) + 0.5).astype(projection.dtype)
        symbolic = [np.asarray(g, dtype="float64") for g in grad_fn(*pt, r)]

        def f(*values, r=r):
            return cost_fn(*values, r)[0]

        for k, p in enumerate(pt):
            _compare(k, p, symbolic[k], f, pt, eps, abs_tol, rel_tol, uniform)


def _compare(k, p, symbolic, f, pt, eps, abs_tol, rel_tol, uniform) -> None:
    """Raise GradientError when argument k's gradient is off (per element, or random directions)."""
    if p.size <= 64:
        numeric = _numeric_along(f, pt, k, None, eps)
        abs_err, rel_err = numeric_grad.abs_rel_err(symbolic, numeric)
        scaled = np.minimum(abs_err / abs_tol, rel_err / rel_tol)
        if scaled.size and scaled.max() > 1:
            pos = np.unravel_index(int(np.argmax(scaled)), p.shape)
            raise GradientError(k, pos, p.shape, float(symbolic[pos]), float(numeric[pos]),
                                float(abs_err[pos]), float(rel_err[pos]), abs_tol, rel_tol)
        return
    for d in range(8):  # large arguments: directional derivatives along random unit directions
        direction = uniform(p.shape) - 0.5
        direction /= np.linalg.norm(direction)
        numeric = _numeric_along(f, pt, k, direction, eps)
        along = float(np.sum(symbolic * direction))
        abs_err, rel_err = numeric_grad.abs_rel_err(along, numeric)
        if min(abs_err / abs_tol, rel_err / rel_tol) > 1:
            errs = float(abs_err), float(rel_err)
            raise GradientError(
                k, d, p.shape, along, float(numeric), *errs, abs_tol, rel_tol,
                what="random direction",
            )


verify_grad.E_grad = GradientError
