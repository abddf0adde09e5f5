"""Elementwise ops: numpy broadcasting, numpy 2 dtype promotion with weakly typed Python scalars."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

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


def broadcast_shapes(op: Op, inputs: tuple) -> tuple:
    """The static shape of the broadcast of `inputs` (same ndim); raises naming both operands."""
    ndim = inputs[0].ndim
    shape = []
    for axis in range(ndim):
        dims = [x.type.shape[axis] for x in inputs]
        known = {d for d in dims if d is not None and d != 1}
        if len(known) > 1:
            described = ", ".join(f"{x} with shape {_shape_text(x.type.shape)}" for x in inputs)
            raise ValueError(
                f"{type(op).__name__}: shapes cannot be broadcast together along axis {axis}: {described}"
            )
        if known:
            shape.append(known.pop())
        elif all(d == 1 for d in dims):
            shape.append(1)
        else:
            shape.append(None)
    return tuple(shape)


def _shape_text(shape: tuple) -> str:
    return "(" + ", ".join("?" if d is None else str(d) for d in shape) + (",)" if len(shape) == 1 else ")")


@dataclass(frozen=True)
class Elemwise(Op):
    """Base of elementwise ops. Subclasses define `impl` (numpy) and `pullback`.

    `nin` is the arity; `promote` lists the inputs whose dtypes decide the result (all by default);
    `output_dtype` maps those dtypes to the result dtype (numpy promotion by default).
    """

    nin: ClassVar[int] = 2
    promote: ClassVar[tuple | None] = None
    float_only: ClassVar[bool] = False  # exp, log, ...: integer inputs are computed as floats

    def output_dtype(self, *dtypes: str) -> str:
        dtype = upcast(*dtypes)
        return upgrade_to_float(dtype) if self.float_only else dtype

    def promoted(self, inputs: tuple) -> tuple:
        return inputs if self.promote is None else tuple(inputs[i] for i in self.promote)

    def make_type(self, inputs: tuple) -> TensorType:
        if len(inputs) != self.nin:
            raise TypeError(f"{type(self).__name__} takes {self.nin} inputs, got {len(inputs)}")
        if len({x.ndim for x in inputs}) > 1:
            raise TypeError(f"{type(self).__name__}: inputs must have equal ndim here, got {[x.ndim for x in inputs]}")
        dtype = self.output_dtype(*[x.dtype for x in self.promoted(inputs)])
        return TensorType(dtype, broadcast_shapes(self, inputs))

    def impl(self, *xs: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def perform(self, *xs: np.ndarray) -> np.ndarray:
        dtype = self.output_dtype(*[xs[i].dtype.name for i in (range(len(xs)) if self.promote is None else self.promote)])
        if self.float_only:
            xs = tuple(x.astype(dtype) if is_discrete(x.dtype.name) else x for x in xs)
        with np.errstate(all="ignore"):
            out = self.impl(*xs)
        return np.asarray(out).astype(dtype, copy=False)

    def __call__(self, *args: Any) -> Var:
        return Var(self, prepare_inputs(self, args))


def prepare_inputs(op: Elemwise, args: tuple) -> tuple:
    """as_tensor, type weak Python scalars by their strong partners, and left-pad ndims with broadcasts."""
    inputs = [as_tensor_variable(a) for a in args]
    positions = range(len(inputs)) if op.promote is None else op.promote
    strong = [inputs[i].dtype for i in positions if not _is_weak(inputs[i])]
    if strong and len(strong) < len(positions):
        for i in positions:
            if _is_weak(inputs[i]):
                value = inputs[i].op.data.item()
                dtype = np.result_type(*[np.dtype(d) for d in strong], value)
                inputs[i] = Var(Constant(np.asarray(value, dtype=dtype)), ())
    ndim = max(x.ndim for x in inputs)
    from .shape import shape_padleft

    return tuple(shape_padleft(x, ndim - x.ndim) if x.ndim < ndim else x for x in inputs)


def _is_weak(x: Var) -> bool:
    return isinstance(x.op, Constant) and x.op.weak


def _same_class_output(x: Var, like: Var) -> Var:
    return x


# --- a few core ops; the rest of the elementwise family lives below ------------------------------


@dataclass(frozen=True)
class Add(Elemwise):
    """x + y."""

    def impl(self, x, y):
        return np.add(x, y)

    def pullback(self, inputs, output, g):
        return (g, g)


@dataclass(frozen=True)
class Sub(Elemwise):
    """x - y."""

    def impl(self, x, y):
        return np.subtract(x, y)

    def pullback(self, inputs, output, g):
        return (g, neg(g))


@dataclass(frozen=True)
class Mul(Elemwise):
    """x * y."""

    def impl(self, x, y):
        return np.multiply(x, y)

    def pullback(self, inputs, output, g):
        x, y = inputs
        return (g * y, g * x)


@dataclass(frozen=True)
class TrueDiv(Elemwise):
    """x / y; integers divide as floats."""

    float_only: ClassVar[bool] = True

    def impl(self, x, y):
        return np.true_divide(x, y)

    def pullback(self, inputs, output, g):
        x, y = inputs
        return (g / y, neg(g) * output / y)


@dataclass(frozen=True)
class Neg(Elemwise):
    """-x."""

    nin: ClassVar[int] = 1

    def impl(self, x):
        return np.negative(x)

    def pullback(self, inputs, output, g):
        return (neg(g),)


@dataclass(frozen=True)
class Exp(Elemwise):
    """e ** x."""

    nin: ClassVar[int] = 1
    float_only: ClassVar[bool] = True

    def impl(self, x):
        return np.exp(x)

    def pullback(self, inputs, output, g):
        return (g * output,)


@dataclass(frozen=True)
class Log(Elemwise):
    """Natural logarithm."""

    nin: ClassVar[int] = 1
    float_only: ClassVar[bool] = True

    def impl(self, x):
        return np.log(x)

    def pullback(self, inputs, output, g):
        return (g / inputs[0],)


add, sub, mul, true_div, neg, exp, log = Add(), Sub(), Mul(), TrueDiv(), Neg(), Exp(), Log()


@dataclass(frozen=True)
class Second(Elemwise):
    """Theano's fill/second: the value `y` broadcast to the shape of `x` (x's values are ignored)."""

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
