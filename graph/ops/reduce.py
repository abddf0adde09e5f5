"""Reductions over axes: sum, prod, mean, var, std, max, min, argmax, argmin, all, any, cumsum."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..type import TensorType
from ..var import Constant, Op, Var, as_tensor_variable
from . import elemwise as E


def normalize_axis(axis, ndim: int, what: str = "reduction") -> tuple:
    """None -> every axis; ints (negative allowed) -> a sorted tuple; out of range raises."""
    if axis is None:
        return tuple(range(ndim))
    if isinstance(axis, Var):
        if isinstance(axis.op, Constant):
            axis = axis.op.data.tolist()
        else:
            raise TypeError(f"{what}: axis must be a Python int or tuple, not a symbolic variable")
    if isinstance(axis, (int, np.integer)):
        axes = (axis,)
    elif isinstance(axis, (tuple, list)):
        axes = tuple(axis)
    else:
        raise TypeError(
            f"{what}: axis must be an int, a tuple or list of ints, or None, got {axis!r}"
        )
    out = []
    for a in axes:
        if isinstance(a, (bool, np.bool_)) or not isinstance(a, (int, np.integer)):
            raise TypeError(f"{what}: axis must be ints, got {axis!r}")
        a = int(a)
        if not -ndim <= a < ndim:
            raise ValueError(
                f"{what}: axis {a} is out of range for a {ndim}-d input "
                f"(expected {-ndim} <= axis < {ndim})"
            )
        out.append(a % ndim)
    if len(set(out)) != len(out):
        raise ValueError(f"{what}: repeated axis in {axis!r}")
    return tuple(sorted(out))


def reduced_shape(shape: tuple, axis: tuple, keepdims: bool) -> tuple:
    """The static shape after reducing `axis`."""
    if keepdims:
        return tuple(1 if a in axis else d for a, d in enumerate(shape))
    return tuple(d for a, d in enumerate(shape) if a not in axis)


def _check_axis(op: Op, x: TensorType) -> None:
    if any(a >= x.ndim for a in op.axis):
        raise ValueError(f"{type(op).__name__.lower()}: axis {op.axis} out of range for {x}")


def accumulate_dtype(dtype: str) -> str:
    """numpy's np.sum / np.prod result dtype: small ints widen to the platform int."""
    return np.sum(np.zeros(1, dtype=dtype)).dtype.name


def restore_axes(g: Var, x: Var, axis: tuple, keepdims: bool) -> Var:
    """A reduction's output (or cotangent) with its reduced axes put back as broadcastable ones."""
    if keepdims:
        return g
    from .shape import dimshuffle

    order, k = [], 0
    for a in range(x.ndim):
        if a in axis:
            order.append("x")
        else:
            order.append(k)
            k += 1
    return dimshuffle(g, order)


@dataclass(frozen=True)
class Sum(Op):
    """Sum over `axis` (a sorted tuple), keeping reduced axes as size 1 when `keepdims`."""

    axis: tuple
    keepdims: bool = False
    dtype: str | None = None

    def infer_type(self, x: TensorType) -> TensorType:
        _check_axis(self, x)
        return TensorType(self.out_dtype(x.dtype), reduced_shape(x.shape, self.axis, self.keepdims))

    def out_dtype(self, dtype: str) -> str:
        return self.dtype or accumulate_dtype(dtype)

    def perform(self, x):
        out = np.sum(x, axis=self.axis, keepdims=self.keepdims, dtype=self.dtype or None)
        return np.asarray(out).astype(self.out_dtype(x.dtype.name), copy=False)

    def pullback(self, inputs, output, g):
        (x,) = inputs
        from .. import tensor as T

        return (T.broadcast_to_like(restore_axes(g, x, self.axis, self.keepdims), x),)


@dataclass(frozen=True)
class Prod(Op):
    """Product over `axis`; the gradient is exact when a reduced group holds zeros."""

    axis: tuple
    keepdims: bool = False
    dtype: str | None = None

    def infer_type(self, x: TensorType) -> TensorType:
        _check_axis(self, x)
        return TensorType(self.out_dtype(x.dtype), reduced_shape(x.shape, self.axis, self.keepdims))

    def out_dtype(self, dtype: str) -> str:
        return self.dtype or accumulate_dtype(dtype)

    def perform(self, x):
        out = np.prod(x, axis=self.axis, keepdims=self.keepdims, dtype=self.dtype or None)
        return np.asarray(out).astype(self.out_dtype(x.dtype.name), copy=False)

    def pullback(self, inputs, output, g):
        # d prod / d x_i is the product of the others. With no zero in the group that is prod / x_i;
        # with exactly one zero it is the product of the non-zeros at the zero and 0 elsewhere;
        # with two or more zeros it is 0 everywhere.
        (x,) = inputs
        g = restore_axes(g, x, self.axis, self.keepdims)
        is_zero = E.eq(x, 0)
        zeros = sum_(E.cast(is_zero, "int64"), self.axis, keepdims=True)
        nonzero_prod = prod(E.switch(is_zero, 1, x), self.axis, keepdims=True)
        others = E.switch(
            E.eq(zeros, 0),
            nonzero_prod / E.switch(is_zero, 1, x),
            E.switch(E.and_(E.eq(zeros, 1), is_zero), nonzero_prod, 0),
        )
        return (g * others,)


@dataclass(frozen=True)
class Max(Op):
    """Maximum over `axis`; the gradient goes to every position equal to the maximum (as Theano)."""

    axis: tuple
    keepdims: bool = False

    def infer_type(self, x: TensorType) -> TensorType:
        _check_axis(self, x)
        return TensorType(x.dtype, reduced_shape(x.shape, self.axis, self.keepdims))

    def perform(self, x):
        return np.asarray(np.max(x, axis=self.axis, keepdims=self.keepdims))

    def pullback(self, inputs, output, g):
        (x,) = inputs
        kept = restore_axes(output, x, self.axis, self.keepdims)
        return (E.switch(E.eq(x, kept), restore_axes(g, x, self.axis, self.keepdims), 0),)


@dataclass(frozen=True)
class Min(Op):
    """Minimum over `axis`; the gradient goes to every position equal to the minimum (as Theano)."""

    axis: tuple
    keepdims: bool = False

    def infer_type(self, x: TensorType) -> TensorType:
        _check_axis(self, x)
        return TensorType(x.dtype, reduced_shape(x.shape, self.axis, self.keepdims))

    def perform(self, x):
        return np.asarray(np.min(x, axis=self.axis, keepdims=self.keepdims))

    def pullback(self, inputs, output, g):
        (x,) = inputs
        kept = restore_axes(output, x, self.axis, self.keepdims)
        return (E.switch(E.eq(x, kept), restore_axes(g, x, self.axis, self.keepdims), 0),)


@dataclass(frozen=True)
class Argmax(Op):
    """Index (int64) of the first maximum over `axis`; several axes count as one flattened axis."""

    axis: tuple
    keepdims: bool = False
    minimum: bool = False  # argmin

    def infer_type(self, x: TensorType) -> TensorType:
        _check_axis(self, x)
        return TensorType("int64", reduced_shape(x.shape, self.axis, self.keepdims))

    def perform(self, x):
        kept = [a for a in range(x.ndim) if a not in self.axis]
        # Move the reduced axes last (in order) and flatten them: C-order index within the group.
        moved = np.transpose(x, kept + list(self.axis))
        flat = moved.reshape(moved.shape[: len(kept)] + (-1,))
        index = (np.argmin if self.minimum else np.argmax)(flat, axis=-1)
        if self.keepdims:
            index = index.reshape(reduced_shape(x.shape, self.axis, True))
        return np.asarray(index, dtype="int64")

    def pullback(self, inputs, output, g):
        return (None,)


@dataclass(frozen=True)
class All(Op):
    """True where every element over `axis` is non-zero (any_: where some is)."""

    axis: tuple
    keepdims: bool = False
    any: bool = False

    def infer_type(self, x: TensorType) -> TensorType:
        _check_axis(self, x)
        return TensorType("bool", reduced_shape(x.shape, self.axis, self.keepdims))

    def perform(self, x):
        reduce = np.any if self.any else np.all
        return np.asarray(reduce(x, axis=self.axis, keepdims=self.keepdims))

    def pullback(self, inputs, output, g):
        return (None,)


@dataclass(frozen=True)
class AxisSize(Op):
    """The number of elements along `axis` (a scalar of `dtype`): the divisor of mean and var."""

    axis: tuple
    dtype: str = "float64"

    def infer_type(self, x: TensorType) -> TensorType:
        _check_axis(self, x)
        return TensorType(self.dtype, ())

    def perform(self, x):
        return np.asarray(int(np.prod([x.shape[a] for a in self.axis])), dtype=self.dtype)

    def pullback(self, inputs, output, g):
        return (None,)


@dataclass(frozen=True)
class CumSum(Op):
    """Cumulative sum along `axis` (from the end when `reverse`); numpy's np.cumsum dtype."""

    axis: int
    reverse: bool = False

    def infer_type(self, x: TensorType) -> TensorType:
        if not 0 <= self.axis < x.ndim:
            raise ValueError(f"cumsum: axis {self.axis} out of range for {x}")
        return TensorType(accumulate_dtype(x.dtype), x.shape)

    def perform(self, x):
        if self.reverse:
            x = np.flip(x, self.axis)
        out = np.cumsum(x, axis=self.axis)
        return np.flip(out, self.axis) if self.reverse else out

    def pullback(self, inputs, output, g):
        return (Var(CumSum(self.axis, not self.reverse), (g,)),)


@dataclass(frozen=True)
class CumProd(Op):
    """Cumulative product along `axis`; the gradient assumes no zeros in the input (as Theano)."""

    axis: int

    def infer_type(self, x: TensorType) -> TensorType:
        if not 0 <= self.axis < x.ndim:
            raise ValueError(f"cumprod: axis {self.axis} out of range for {x}")
        return TensorType(accumulate_dtype(x.dtype), x.shape)

    def perform(self, x):
        return np.cumprod(x, axis=self.axis)

    def pullback(self, inputs, output, g):
        (x,) = inputs
        return (Var(CumSum(self.axis, True), (g * output,)) / x,)


# --- user functions -------------------------------------------------------------------------------


def _reduction(what: str, x, axis) -> tuple:
    x = as_tensor_variable(x)
    return x, normalize_axis(axis, x.ndim, f"{what} of {x}")


def sum_(x, axis=None, dtype=None, keepdims: bool = False, acc_dtype=None) -> Var:
    """Sum of the elements over the given axes (numpy's result dtype unless `dtype` is given)."""
    x, axis = _reduction("sum", x, axis)
    op = Sum(axis, bool(keepdims), None if dtype is None else np.dtype(dtype).name)
    if not axis and op.out_dtype(x.dtype) == x.dtype:
        return x  # nothing to reduce, nothing to convert
    return Var(op, (x,))


def prod(
    x, axis=None, dtype=None, keepdims: bool = False, acc_dtype=None, no_zeros_in_input=False
) -> Var:
    """Product of the elements over the given axes."""
    x, axis = _reduction("prod", x, axis)
    return Var(Prod(axis, bool(keepdims), None if dtype is None else np.dtype(dtype).name), (x,))


def _count(x: Var, axis: tuple, dtype: str) -> Var:
    """The number of reduced elements: a constant when the static shape knows it."""
    sizes = [x.type.shape[a] for a in axis]
    if None not in sizes:
        return Var(Constant(np.asarray(int(np.prod(sizes)), dtype=dtype)), ())
    return Var(AxisSize(axis, dtype), (x,))


def mean(x, axis=None, dtype=None, keepdims: bool = False, acc_dtype=None) -> Var:
    """Mean over the given axes; integer inputs give float64 (as Theano and numpy)."""
    x, axis = _reduction("mean", x, axis)
    total = sum_(x, axis, dtype=dtype, keepdims=keepdims)
    divisor_dtype = total.dtype if total.dtype in ("float16", "float32", "complex64") else "float64"
    out = total / _count(x, axis, divisor_dtype)
    return E.cast(out, dtype) if dtype is not None else out


def var(x, axis=None, ddof: int = 0, keepdims: bool = False, corrected: bool = False) -> Var:
    """Variance over the axes (ddof=0 by default); `corrected` uses the two-pass correction."""
    x, axis = _reduction("var", x, axis)
    centered = x - mean(x, axis, keepdims=True)
    magnitude = E.abs_(centered) if centered.dtype.startswith("complex") else centered
    squares = sum_(E.sqr(magnitude), axis, keepdims=keepdims)
    dtype = squares.dtype if squares.dtype in ("float16", "float32") else "float64"
    n = _count(x, axis, dtype)
    if corrected:  # subtract the rounding error of the mean: (sum centered)^2 / n
        squares = squares - E.sqr(sum_(centered, axis, keepdims=keepdims)) / n
    return squares / (n - ddof) if ddof else squares / n


def std(x, axis=None, ddof: int = 0, keepdims: bool = False, corrected: bool = False) -> Var:
    """Standard deviation over the given axes: sqrt(var)."""
    return E.sqrt(var(x, axis, ddof=ddof, keepdims=keepdims, corrected=corrected))


def max_(x, axis=None, keepdims: bool = False) -> Var:
    """Maximum over the given axes."""
    x, axis = _reduction("max", x, axis)
    return Var(Max(axis, bool(keepdims)), (x,))


def min_(x, axis=None, keepdims: bool = False) -> Var:
    """Minimum over the given axes."""
    x, axis = _reduction("min", x, axis)
    return Var(Min(axis, bool(keepdims)), (x,))


def argmax(x, axis=None, keepdims: bool = False) -> Var:
    """Index (int64) of the first maximum; with several axes, the index into them flattened."""
    x, axis = _reduction("argmax", x, axis)
    return Var(Argmax(axis, bool(keepdims)), (x,))


def argmin(x, axis=None, keepdims: bool = False) -> Var:
    """Index (int64) of the first minimum; with several axes, the index into them flattened."""
    x, axis = _reduction("argmin", x, axis)
    return Var(Argmax(axis, bool(keepdims), minimum=True), (x,))


def max_and_argmax(x, axis=None, keepdims: bool = False) -> tuple:
    """(max, argmax) over the given axes, as two variables."""
    return max_(x, axis, keepdims), argmax(x, axis, keepdims)


def all_(x, axis=None, keepdims: bool = False) -> Var:
    """True where every element over the axes is non-zero."""
    x, axis = _reduction("all", x, axis)
    return Var(All(axis, bool(keepdims)), (x,))


def any_(x, axis=None, keepdims: bool = False) -> Var:
    """True where some element over the axes is non-zero."""
    x, axis = _reduction("any", x, axis)
    return Var(All(axis, bool(keepdims), any=True), (x,))


def ptp(a, axis=None, keepdims: bool = False) -> Var:
    """Range (max - min) over the given axes."""
    return max_(a, axis, keepdims) - min_(a, axis, keepdims)


def logsumexp(x, axis=None, keepdims: bool = False) -> Var:
    """log(sum(exp(x))) over the axes, shifted by the maximum so it does not overflow."""
    x, axes = _reduction("logsumexp", x, axis)
    # The shift's gradient cancels exactly, so none flows through it.
    shift = E.disconnected_grad(max_(x, axes, keepdims=True))
    out_shift = shift if keepdims else E.disconnected_grad(max_(x, axes))
    return E.log(sum_(E.exp(x - shift), axes, keepdims=keepdims)) + out_shift


def norm(x, L=2, axis=None, keepdims: bool = False) -> Var:
    """The L-norm over the given axes (Theano's `x.norm(L, axis)`): L1, L2 or any L > 0."""
    x = as_tensor_variable(x)
    if L == 0:
        raise NotImplementedError("norm: L=0 (the count of non-zeros) is not supported")
    if L == 1:
        return sum_(E.abs_(x), axis, keepdims=keepdims)
    if L == 2:
        return E.sqrt(sum_(E.sqr(E.abs_(x)), axis, keepdims=keepdims))
    if L == float("inf"):
        return max_(E.abs_(x), axis, keepdims)
    return E.pow_(sum_(E.pow_(E.abs_(x), L), axis, keepdims=keepdims), 1.0 / L)


def _cumulative(what: str, x, axis) -> tuple:
    x = as_tensor_variable(x)
    if axis is None:  # numpy and Theano: over the flattened input
        if x.ndim != 1:
            from .. import tensor as T

            x = T.flatten(x)
        return x, 0
    (axis,) = normalize_axis(int(axis), x.ndim, f"{what} of {x}")
    return x, axis


def cumsum(x, axis=None) -> Var:
    """Cumulative sum along `axis` (over the flattened input when None)."""
    x, axis = _cumulative("cumsum", x, axis)
    return Var(CumSum(axis), (x,))


def cumprod(x, axis=None) -> Var:
    """Cumulative product along `axis` (over the flattened input when None)."""
    x, axis = _cumulative("cumprod", x, axis)
    return Var(CumProd(axis), (x,))


__all__ = [
    "Sum", "Prod", "Max", "Min", "Argmax", "All", "AxisSize", "CumSum", "CumProd",
    "sum_", "prod", "mean", "var", "std", "max_", "min_", "argmax", "argmin", "max_and_argmax",
    "all_", "any_", "ptp", "logsumexp", "norm", "cumsum", "cumprod", "normalize_axis",
    "reduced_shape",
]  # fmt: skip
