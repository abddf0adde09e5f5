"""Elementwise ops: numpy broadcasting, numpy 2 dtype promotion with weakly typed Python scalars."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, ClassVar

import numpy as np

from ..type import TensorType, is_discrete, upcast
from ..var import Constant, Op, Var, as_tensor_variable


def upgrade_to_float(dtype: str) -> str:
    """Theano's rule for ops that need a float (exp, log, true division): small ints -> float32."""
    if dtype in ("bool", "int8", "uint8", "int16", "uint16"):
        return "float32"
    if is_discrete(dtype):
        return "float64"
    return dtype


def real_dtype(dtype: str) -> str:
    """The real dtype of the same precision (complex64 -> float32); real dtypes are unchanged."""
    return {"complex64": "float32", "complex128": "float64"}.get(dtype, dtype)


def broadcast_shapes(op: Op, inputs: tuple) -> tuple:
    """The static shape of the broadcast of `inputs` (same ndim); raises naming both operands."""
    first = inputs[0].type.shape
    if all(x.type.shape == first for x in inputs):  # the common case: nothing to broadcast
        return first
    ndim = inputs[0].ndim
    shape = []
    for axis in range(ndim):
        dims = [x.type.shape[axis] for x in inputs]
        known = {d for d in dims if d is not None and d != 1}
        if len(known) > 1:
            described = ", ".join(f"{x} with shape {_shape_text(x.type.shape)}" for x in inputs)
            raise ValueError(
                f"{type(op).__name__}: shapes cannot be broadcast together along axis {axis}: "
                f"{described}"
            )
        if known:
            shape.append(known.pop())
        elif all(d == 1 for d in dims):
            shape.append(1)
        else:
            shape.append(None)
    return tuple(shape)


def _shape_text(shape: tuple) -> str:
    dims = ", ".join("?" if d is None else str(d) for d in shape)
    return f"({dims},)" if len(shape) == 1 else f"({dims})"


def check_runtime_broadcast(var: Var, values) -> None:
    """Theano's rule at run time: only axes whose static size is 1 may broadcast.

    A None axis that turns out to be 1 while its partner is bigger would give a gradient of the wrong
    shape (gradients sum only over static broadcast axes), so it is an error, as in Theano.
    """
    inputs = var.inputs
    for axis in range(inputs[0].ndim if inputs else 0):
        size = None
        for x, value in zip(inputs, values):
            if x.type.shape[axis] == 1:
                continue
            n = value.shape[axis]
            if size is None:
                size = (n, x)
            elif n != size[0]:
                first = size[1]
                raise ValueError(
                    f"{type(var.op).__name__}: input {first} has size {size[0]} but input {x} has size {n} on "
                    f"axis {axis}; only axes typed broadcastable (static size 1) broadcast, as in Theano: "
                    "use T.addbroadcast, a row/col type or shape=(..., 1, ...) for an axis meant to broadcast"
                )


@dataclass(frozen=True)
class Elemwise(Op):
    """Base of elementwise ops. Subclasses define `impl` (or the ClassVar `fn`) and `pullback`.

    `nin` is the arity; `promote` lists the inputs whose dtypes decide the result (all by default);
    `output_dtype` maps those dtypes to the result dtype (numpy promotion by default);
    `variadic` ops (add, mul) fold more than two arguments into a chain of binary nodes.
    """

    nin: ClassVar[int] = 2
    promote: ClassVar[tuple | None] = None
    float_only: ClassVar[bool] = False  # exp, log, ...: integer inputs are computed as floats
    variadic: ClassVar[bool] = False
    bool_out: ClassVar[bool] = False  # comparisons: the result is bool whatever the inputs
    discrete_only: ClassVar[bool] = False  # bitwise ops: integer or bool inputs only
    fn: ClassVar[Callable | None] = None  # the numpy function, when impl is just fn(*xs)

    def output_dtype(self, *dtypes: str) -> str:
        if self.discrete_only and not all(is_discrete(d) for d in dtypes):
            raise TypeError(
                f"{type(self).__name__}: bitwise ops need integer or bool inputs, "
                f"got dtypes {', '.join(dtypes)}"
            )
        if self.bool_out:
            return "bool"
        dtype = upcast(*dtypes)
        return upgrade_to_float(dtype) if self.float_only else dtype

    def pullback(self, inputs, output, g):
        if self.bool_out or self.discrete_only:  # piecewise constant: no gradient to any input
            return (None,) * len(inputs)
        raise NotImplementedError(f"{type(self).__name__} defines no gradient (pullback)")

    def promoted(self, inputs: tuple) -> tuple:
        return inputs if self.promote is None else tuple(inputs[i] for i in self.promote)

    def make_type(self, inputs: tuple) -> TensorType:
        name = type(self).__name__
        if len(inputs) != self.nin:
            raise TypeError(f"{name} takes {self.nin} inputs, got {len(inputs)}")
        if len({x.ndim for x in inputs}) > 1:
            ndims = [x.ndim for x in inputs]
            raise TypeError(f"{name}: inputs must have equal ndim here, got {ndims}")
        dtype = self.output_dtype(*[x.dtype for x in self.promoted(inputs)])
        return TensorType(dtype, broadcast_shapes(self, inputs))

    def impl(self, *xs: np.ndarray) -> np.ndarray:
        if self.fn is None:
            raise NotImplementedError(f"{type(self).__name__} defines neither impl nor fn")
        return type(self).fn(*xs)

    def perform(self, *xs: np.ndarray) -> np.ndarray:
        positions = range(len(xs)) if self.promote is None else self.promote
        dtype = self.output_dtype(*[xs[i].dtype.name for i in positions])
        if self.float_only:
            xs = tuple(x.astype(dtype) if is_discrete(x.dtype.name) else x for x in xs)
        with np.errstate(all="ignore"):
            out = self.impl(*xs)
        return np.asarray(out).astype(dtype, copy=False)

    def perform_into(self, out: np.ndarray, *xs: np.ndarray) -> np.ndarray:
        """perform, writing into `out` (same dtype and shape as the result; it may be one of xs).

        Ops that are one numpy ufunc write in place; others return a new array.
        """
        fn = type(self).fn
        if isinstance(fn, np.ufunc) and fn.nout == 1 and all(x.dtype == out.dtype for x in xs):
            with np.errstate(all="ignore"):
                return fn(*xs, out=out)
        return self.perform(*xs)

    def __call__(self, *args: Any) -> Var:
        if self.variadic and len(args) != 2:
            if not args:
                raise TypeError(f"{type(self).__name__} needs at least one input")
            out = as_tensor_variable(args[0])
            for arg in args[1:]:  # a left fold: add(a, b, c) == (a + b) + c
                out = Var(self, prepare_inputs(self, (out, arg)))
            return out
        return Var(self, prepare_inputs(self, args))  # make_type checks the arity


def prepare_inputs(op: Elemwise, args: tuple) -> tuple:
    """as_tensor, type weak scalars by their strong partners, left-pad ndims with broadcasts."""
    inputs = [a if isinstance(a, Var) else as_tensor_variable(a) for a in args]
    positions = range(len(inputs)) if op.promote is None else op.promote
    strong = [inputs[i].dtype for i in positions if not _is_weak(inputs[i])]
    if strong and len(strong) < len(positions):
        for i in positions:
            if _is_weak(inputs[i]):
                value = inputs[i].op.data.item()
                dtype = np.result_type(*[np.dtype(d) for d in strong], value)
                inputs[i] = Var(Constant(np.asarray(value, dtype=dtype)), ())
    ndim = max(x.ndim for x in inputs)
    if all(x.ndim == ndim for x in inputs):
        return tuple(inputs)
    from .shape import shape_padleft

    return tuple(shape_padleft(x, ndim - x.ndim) if x.ndim < ndim else x for x in inputs)


def _is_weak(x: Var) -> bool:
    return isinstance(x.op, Constant) and x.op.weak


# --- arithmetic -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Add(Elemwise):
    """x + y (more arguments fold left)."""

    variadic: ClassVar[bool] = True
    fn: ClassVar = np.add

    def pullback(self, inputs, output, g):
        return (g, g)


@dataclass(frozen=True)
class Sub(Elemwise):
    """x - y."""

    fn: ClassVar = np.subtract

    def pullback(self, inputs, output, g):
        return (g, neg(g))


@dataclass(frozen=True)
class Mul(Elemwise):
    """x * y (more arguments fold left)."""

    variadic: ClassVar[bool] = True
    fn: ClassVar = np.multiply

    def pullback(self, inputs, output, g):
        x, y = inputs
        return (g * y, g * x)


@dataclass(frozen=True)
class TrueDiv(Elemwise):
    """x / y; integers divide as floats (int8 / int8 -> float32, as Theano)."""

    float_only: ClassVar[bool] = True
    fn: ClassVar = np.true_divide

    def pullback(self, inputs, output, g):
        x, y = inputs
        return (g / y, neg(g) * output / y)


@dataclass(frozen=True)
class IntDiv(Elemwise):
    """x // y, numpy's floor division (floats stay floats); piecewise constant: no gradient."""

    fn: ClassVar = np.floor_divide

    def pullback(self, inputs, output, g):
        return (None, None)


@dataclass(frozen=True)
class Mod(Elemwise):
    """x % y with numpy's (Python's) sign convention: the result has the sign of y."""

    fn: ClassVar = np.mod

    def pullback(self, inputs, output, g):
        x, y = inputs
        return (g, neg(g) * int_div(x, y))


@dataclass(frozen=True)
class Pow(Elemwise):
    """x ** y."""

    fn: ClassVar = np.power

    def pullback(self, inputs, output, g):
        x, y = inputs
        return (g * y * pow_(x, y - 1), g * output * log(x))


@dataclass(frozen=True)
class Neg(Elemwise):
    """-x."""

    nin: ClassVar[int] = 1
    fn: ClassVar = np.negative

    def pullback(self, inputs, output, g):
        return (neg(g),)


@dataclass(frozen=True)
class Maximum(Elemwise):
    """Elementwise maximum; the gradient goes to the larger input (to both on ties, as Theano)."""

    fn: ClassVar = np.maximum

    def pullback(self, inputs, output, g):
        x, y = inputs
        return (switch(eq(output, x), g, 0), switch(eq(output, y), g, 0))


@dataclass(frozen=True)
class Minimum(Elemwise):
    """Elementwise minimum; the gradient goes to the smaller input (to both on ties, as Theano)."""

    fn: ClassVar = np.minimum

    def pullback(self, inputs, output, g):
        x, y = inputs
        return (switch(eq(output, x), g, 0), switch(eq(output, y), g, 0))


@dataclass(frozen=True)
class Clip(Elemwise):
    """x limited to [lo, hi] (minimum(maximum(x, lo), hi)); the gradient passes inside the range."""

    nin: ClassVar[int] = 3

    def impl(self, x, lo, hi):
        return np.minimum(np.maximum(x, lo), hi)

    def pullback(self, inputs, output, g):
        x, lo, hi = inputs
        inside = and_(ge(x, lo), le(x, hi))
        return (switch(inside, g, 0), switch(lt(x, lo), g, 0), switch(gt(x, hi), g, 0))


@dataclass(frozen=True)
class Switch(Elemwise):
    """Where cond is true, a; elsewhere b. The gradient goes to the branch chosen, none to cond."""

    nin: ClassVar[int] = 3
    promote: ClassVar[tuple] = (1, 2)

    def impl(self, cond, a, b):
        return np.where(cond, a, b)

    def pullback(self, inputs, output, g):
        cond = inputs[0]
        return (None, switch(cond, g, 0), switch(cond, 0, g))


add, sub, mul, true_div, int_div, mod, pow_ = Add(), Sub(), Mul(), TrueDiv(), IntDiv(), Mod(), Pow()
neg, maximum, minimum, switch = Neg(), Maximum(), Minimum(), Switch()
floor_div = int_div
where = switch


def clip(x, min, max) -> Var:  # noqa: A002  (Theano's argument names)
    """x limited to the range [min, max]."""
    return Clip()(x, min, max)


def largest(*args) -> Var:
    """The elementwise maximum of all arguments."""
    out = as_tensor_variable(args[0])
    for arg in args[1:]:
        out = maximum(out, arg)
    return out


def smallest(*args) -> Var:
    """The elementwise minimum of all arguments."""
    out = as_tensor_variable(args[0])
    for arg in args[1:]:
        out = minimum(out, arg)
    return out


def ceil_intdiv(a, b) -> Var:
    """Integer division rounding up: -((-a) // b)."""
    return neg(int_div(neg(a), b))


# --- comparisons and logic: no gradient ----------------------------------------------------------


@dataclass(frozen=True)
class EQ(Elemwise):
    """x == y, elementwise."""

    bool_out: ClassVar[bool] = True
    fn: ClassVar = np.equal


@dataclass(frozen=True)
class NEQ(Elemwise):
    """x != y, elementwise."""

    bool_out: ClassVar[bool] = True
    fn: ClassVar = np.not_equal


@dataclass(frozen=True)
class LT(Elemwise):
    """x < y."""

    bool_out: ClassVar[bool] = True
    fn: ClassVar = np.less


@dataclass(frozen=True)
class LE(Elemwise):
    """x <= y."""

    bool_out: ClassVar[bool] = True
    fn: ClassVar = np.less_equal


@dataclass(frozen=True)
class GT(Elemwise):
    """x > y."""

    bool_out: ClassVar[bool] = True
    fn: ClassVar = np.greater


@dataclass(frozen=True)
class GE(Elemwise):
    """x >= y."""

    bool_out: ClassVar[bool] = True
    fn: ClassVar = np.greater_equal


@dataclass(frozen=True)
class IsNan(Elemwise):
    """True where x is NaN."""

    bool_out: ClassVar[bool] = True
    nin: ClassVar[int] = 1
    fn: ClassVar = np.isnan


@dataclass(frozen=True)
class IsInf(Elemwise):
    """True where x is +inf or -inf."""

    bool_out: ClassVar[bool] = True
    nin: ClassVar[int] = 1
    fn: ClassVar = np.isinf


eq, neq, lt, le, gt, ge, isnan, isinf = EQ(), NEQ(), LT(), LE(), GT(), GE(), IsNan(), IsInf()


def isclose(a, b, rtol: float = 1e-05, atol: float = 1e-08, equal_nan: bool = False) -> Var:
    """numpy's isclose: |a - b| <= atol + rtol * |b| (and NaN == NaN when equal_nan)."""
    a, b = as_tensor_variable(a), as_tensor_variable(b)
    close = le(abs_(a - b), atol + rtol * abs_(b))
    exact = eq(a, b)  # equal infinities are close
    out = or_(close, exact)
    return or_(out, and_(isnan(a), isnan(b))) if equal_nan else out


def allclose(a, b, rtol: float = 1e-05, atol: float = 1e-08, equal_nan: bool = False) -> Var:
    """True when every element of a is close to b."""
    from .reduce import all_

    return all_(isclose(a, b, rtol, atol, equal_nan))


@dataclass(frozen=True)
class And(Elemwise):
    """x & y."""

    discrete_only: ClassVar[bool] = True
    fn: ClassVar = np.bitwise_and


@dataclass(frozen=True)
class Or(Elemwise):
    """x | y."""

    discrete_only: ClassVar[bool] = True
    fn: ClassVar = np.bitwise_or


@dataclass(frozen=True)
class Xor(Elemwise):
    """x ^ y."""

    discrete_only: ClassVar[bool] = True
    fn: ClassVar = np.bitwise_xor


@dataclass(frozen=True)
class Invert(Elemwise):
    """~x: bitwise not (logical not on bools)."""

    discrete_only: ClassVar[bool] = True
    nin: ClassVar[int] = 1
    fn: ClassVar = np.invert


and_, or_, xor, invert = And(), Or(), Xor(), Invert()
bitwise_and, bitwise_or, bitwise_xor, bitwise_not = and_, or_, xor, invert


# --- fill and cast --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Second(Elemwise):
    """Theano's fill/second: the value `y` broadcast to the shape of `x` (x's values unused)."""

    promote: ClassVar[tuple] = (1,)

    def impl(self, x, y):
        return np.array(np.broadcast_to(y, np.broadcast_shapes(x.shape, y.shape)))

    def pullback(self, inputs, output, g):
        return (None, g)


second = Second()


def fill(model, value) -> Var:
    """`value` broadcast to the shape of `model`."""
    return second(model, value)


@dataclass(frozen=True)
class Cast(Elemwise):
    """x converted to `dtype` (numpy astype); integer targets pass no gradient."""

    dtype: str = "float64"
    nin: ClassVar[int] = 1

    def output_dtype(self, *dtypes: str) -> str:
        return self.dtype

    def impl(self, x):
        return x.astype(self.dtype)

    def pullback(self, inputs, output, g):
        return (g,)


def cast(x, dtype) -> Var:
    """x converted to `dtype` ('floatX' allowed); a no-op when the dtype already matches."""
    from ..type import as_dtype

    x = as_tensor_variable(x)
    dtype = as_dtype(dtype)
    if x.dtype == dtype:
        return x
    return Cast(dtype)(x)


# --- identity ops that only shape the gradient ---------------------------------------------------


@dataclass(frozen=True)
class ZeroGrad(Elemwise):
    """x forward; a zero gradient backward."""

    nin: ClassVar[int] = 1

    def impl(self, x):
        return x

    def pullback(self, inputs, output, g):
        return (zeros_like_elem(g),)


@dataclass(frozen=True)
class DisconnectedGrad(Elemwise):
    """x forward; no gradient at all backward."""

    nin: ClassVar[int] = 1

    def impl(self, x):
        return x

    def pullback(self, inputs, output, g):
        return (None,)


@dataclass(frozen=True)
class GradClip(Elemwise):
    """x forward; the gradient clipped to [lower, upper] backward."""

    lower: float = -1.0
    upper: float = 1.0
    nin: ClassVar[int] = 1

    def impl(self, x):
        return x

    def pullback(self, inputs, output, g):
        return (clip(g, self.lower, self.upper),)


@dataclass(frozen=True)
class GradScale(Elemwise):
    """x forward; the gradient multiplied by `multiplier` backward."""

    multiplier: float = 1.0
    nin: ClassVar[int] = 1

    def impl(self, x):
        return x

    def pullback(self, inputs, output, g):
        return (g * self.multiplier,)


def zeros_like_elem(x: Var) -> Var:
    """Zeros shaped and typed like x (a local helper, so this module needs no shape ops)."""
    return second(x, Var(Constant(np.zeros((), dtype=x.dtype)), ()))


def zero_grad(x) -> Var:
    """x in the forward pass; a zero gradient in the backward pass."""
    return ZeroGrad()(x)


def disconnected_grad(x) -> Var:
    """x in the forward pass; no gradient flows back through it."""
    return DisconnectedGrad()(x)


def grad_clip(x, lower_bound: float, upper_bound: float) -> Var:
    """x in the forward pass; its gradient clipped to [lower_bound, upper_bound]."""
    if lower_bound > upper_bound:
        raise ValueError(f"grad_clip: lower_bound {lower_bound} is above upper_bound {upper_bound}")
    return GradClip(float(lower_bound), float(upper_bound))(x)


def grad_scale(x, multiplier: float) -> Var:
    """x in the forward pass; its gradient multiplied by `multiplier`."""
    return GradScale(float(multiplier))(x)


consider_constant = zero_grad
stop_gradient = disconnected_grad

# The math ops subclass Elemwise, so they are imported once it exists.
from .elemwise_math import *  # noqa: E402,F401,F403
from .elemwise_math import __all__ as _math_names  # noqa: E402
from .elemwise_math import abs_, log  # noqa: E402

__all__ = [
    "Elemwise", "check_runtime_broadcast", "upgrade_to_float",
    "Add", "Sub", "Mul", "TrueDiv", "IntDiv", "Mod", "Pow", "Neg", "Maximum", "Minimum", "Clip",
    "Switch", "add", "sub", "mul", "true_div", "int_div", "floor_div", "mod", "pow_", "neg",
    "maximum", "minimum", "switch", "where", "clip", "ceil_intdiv", "largest", "smallest",
    "EQ", "NEQ", "LT", "LE", "GT", "GE", "IsNan", "IsInf",
    "eq", "neq", "lt", "le", "gt", "ge", "isnan", "isinf", "isclose", "allclose",
    "And", "Or", "Xor", "Invert", "and_", "or_", "xor", "invert",
    "bitwise_and", "bitwise_or", "bitwise_xor", "bitwise_not",
    "Second", "second", "fill", "Cast", "cast",
    "ZeroGrad", "DisconnectedGrad", "GradClip", "GradScale", "zero_grad", "disconnected_grad",
    "grad_clip", "grad_scale", "consider_constant", "stop_gradient",
    *_math_names,
]  # fmt: skip
