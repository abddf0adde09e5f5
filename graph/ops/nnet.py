"""Neural-net functions: stable sigmoid and softplus, rectifiers, softmax, cross-entropies."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from ..type import TensorType, is_discrete
from ..var import Constant, Op, Var, as_tensor_variable
from .elemwise import Elemwise, exp, log, mul, neg, upgrade_to_float
from .reduce import normalize_axis, sum_

__all__ = [
    "Sigmoid", "Softplus", "Relu", "Elu", "Selu", "Softsign", "HardSigmoid", "Softmax",
    "LogSoftmax", "SelectClass", "SelectClassGrad", "sigmoid", "softplus", "relu", "elu", "selu",
    "softsign", "hard_sigmoid", "ultra_fast_sigmoid", "softmax", "log_softmax", "logsoftmax",
    "softmax_with_bias", "categorical_crossentropy", "crossentropy_categorical_1hot",
    "binary_crossentropy", "sigmoid_binary_crossentropy", "crossentropy_softmax_1hot",
    "crossentropy_softmax_1hot_with_bias",
]

SELU_ALPHA = 1.6732632423543772848170429916717
SELU_SCALE = 1.0507009873554804934193349852946


def _T():
    from .. import tensor as T  # comparison and switch ops live in a module that imports this one

    return T


# --- elementwise ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Sigmoid(Elemwise):
    """1 / (1 + exp(-x)), computed without overflow for large |x|."""

    nin: ClassVar[int] = 1
    float_only: ClassVar[bool] = True

    def impl(self, x):
        e = np.exp(-np.abs(x))  # in (0, 1]: never overflows
        return np.where(x >= 0, 1 / (1 + e), e / (1 + e))

    def pullback(self, inputs, output, g):
        return (g * output * (1 - output),)


@dataclass(frozen=True)
class Softplus(Elemwise):
    """log(1 + exp(x)), computed as log1p(exp(-|x|)) + max(x, 0)."""

    nin: ClassVar[int] = 1
    float_only: ClassVar[bool] = True

    def impl(self, x):
        return np.log1p(np.exp(-np.abs(x))) + np.maximum(x, 0)

    def pullback(self, inputs, output, g):
        return (g * sigmoid(inputs[0]),)


@dataclass(frozen=True)
class Relu(Elemwise):
    """max(x, 0); with alpha != 0 the leaky rectifier x if x > 0 else alpha * x."""

    alpha: float = 0.0
    nin: ClassVar[int] = 1

    def output_dtype(self, *dtypes: str) -> str:
        return upgrade_to_float(dtypes[0]) if self.alpha != 0 else dtypes[0]

    def impl(self, x):
        if self.alpha == 0:
            return np.maximum(x, np.zeros((), x.dtype))
        return np.where(x > 0, x, self.alpha * x)

    def pullback(self, inputs, output, g):
        T = _T()
        return (T.switch(T.gt(inputs[0], 0), g, g * self.alpha if self.alpha != 0 else 0),)


@dataclass(frozen=True)
class Elu(Elemwise):
    """x if x > 0 else alpha * (exp(x) - 1)."""

    alpha: float = 1.0
    nin: ClassVar[int] = 1
    float_only: ClassVar[bool] = True

    def impl(self, x):
        return np.where(x > 0, x, self.alpha * np.expm1(np.minimum(x, 0)))

    def pullback(self, inputs, output, g):
        T = _T()
        return (T.switch(T.gt(inputs[0], 0), g, g * (output + self.alpha)),)


@dataclass(frozen=True)
class Selu(Elemwise):
    """The self-normalizing ELU: scale * elu(x, alpha), constants from Klambauer et al. (2017)."""

    nin: ClassVar[int] = 1
    float_only: ClassVar[bool] = True

    def impl(self, x):
        return SELU_SCALE * np.where(x > 0, x, SELU_ALPHA * np.expm1(np.minimum(x, 0)))

    def pullback(self, inputs, output, g):
        T = _T()
        negative_part = g * (output + SELU_SCALE * SELU_ALPHA)  # d/dx of scale*alpha*(e^x - 1)
        return (T.switch(T.gt(inputs[0], 0), g * SELU_SCALE, negative_part),)


@dataclass(frozen=True)
class Softsign(Elemwise):
    """x / (1 + |x|)."""

    nin: ClassVar[int] = 1
    float_only: ClassVar[bool] = True

    def impl(self, x):
        return x / (1 + np.abs(x))

    def pullback(self, inputs, output, g):
        d = 1 + _T().abs_(inputs[0])
        return (g / (d * d),)


@dataclass(frozen=True)
class HardSigmoid(Elemwise):
    """Theano's piecewise-linear sigmoid: clip(0.2 * x + 0.5, 0, 1)."""

    nin: ClassVar[int] = 1
    float_only: ClassVar[bool] = True

    def impl(self, x):
        return np.clip(x * 0.2 + 0.5, 0, 1)

    def pullback(self, inputs, output, g):
        T = _T()
        inside = T.and_(T.gt(output, 0), T.lt(output, 1))
        return (T.switch(inside, g * 0.2, 0),)


sigmoid, softplus, selu = Sigmoid(), Softplus(), Selu()
softsign, hard_sigmoid = Softsign(), HardSigmoid()
ultra_fast_sigmoid = sigmoid  # Theano's approximation; the exact, stable sigmoid is as fast here


def _number(value) -> float | None:
    """A Python float for numbers and constant Vars; None for symbolic values."""
    if isinstance(value, Var):
        if isinstance(value.op, Constant) and value.op.data.size == 1:
            return float(value.op.data)
        return None
    return float(value)


def relu(x, alpha=0) -> Var:
    """The rectifier max(x, 0); leaky (alpha * x below 0) when alpha != 0; alpha may be symbolic."""
    x = as_tensor_variable(x)
    a = _number(alpha)
    if a is not None:
        return Relu(a)(x)
    alpha = as_tensor_variable(alpha)
    # Theano's formula: exact for any alpha and differentiable in alpha.
    return 0.5 * (1 + alpha) * x + 0.5 * (1 - alpha) * _T().abs_(x)


def elu(x, alpha=1) -> Var:
    """The exponential linear unit: x if x > 0 else alpha * (exp(x) - 1). alpha may be symbolic."""
    x = as_tensor_variable(x)
    a = _number(alpha)
    if a is not None:
        return Elu(a)(x)
    T = _T()
    return T.switch(T.gt(x, 0), x, as_tensor_variable(alpha) * T.expm1(T.minimum(x, 0)))


# --- softmax --------------------------------------------------------------------------------------


def _softmax_type(op: Op, x: TensorType) -> TensorType:
    if not -x.ndim <= op.axis < x.ndim:
        name = type(op).__name__
        raise ValueError(f"{name}: axis {op.axis} is out of range for an input of type {x}")
    return TensorType(upgrade_to_float(x.dtype), x.shape)


def _shifted(op: Op, x: np.ndarray) -> np.ndarray:
    """x minus its maximum along the axis: the largest entry becomes 0, so exp cannot overflow."""
    x = x.astype(upgrade_to_float(x.dtype.name), copy=False)
    if x.shape[op.axis] == 0:
        return x
    return x - np.max(x, axis=op.axis, keepdims=True)


@dataclass(frozen=True)
class Softmax(Op):
    """exp(x) / sum(exp(x)) along `axis`, computed after subtracting the maximum."""

    axis: int = -1

    def infer_type(self, x: TensorType) -> TensorType:
        return _softmax_type(self, x)

    def perform(self, x):
        e = np.exp(_shifted(self, x))
        return e / np.sum(e, axis=self.axis, keepdims=True)

    def pullback(self, inputs, output, g):
        return (output * (g - sum_(g * output, axis=self.axis, keepdims=True)),)


@dataclass(frozen=True)
class LogSoftmax(Op):
    """log(softmax(x)) along `axis`, as (x - max) - log(sum(exp(x - max)))."""

    axis: int = -1

    def infer_type(self, x: TensorType) -> TensorType:
        return _softmax_type(self, x)

    def perform(self, x):
        z = _shifted(self, x)
        return z - np.log(np.sum(np.exp(z), axis=self.axis, keepdims=True))

    def pullback(self, inputs, output, g):
        return (g - exp(output) * sum_(g, axis=self.axis, keepdims=True),)


def _softmax_input(c, axis, what: str) -> tuple:
    """Theano: the last axis, a vector padded to one row; an explicit axis is numpy-like."""
    c = as_tensor_variable(c)
    if c.ndim == 0:
        raise ValueError(f"{what} needs at least one dimension, got the scalar {c.describe()}")
    if axis is None:
        if c.ndim == 1:  # Theano 1.0 returns a (1, n) matrix for a vector; its programs rely on it
            from .shape import shape_padleft

            c = shape_padleft(c)
        axis = c.ndim - 1
    return c, normalize_axis(axis, c.ndim, what)[0]


def softmax(c, axis=None) -> Var:
    """Softmax over the last axis (or `axis`); a vector gives a one-row matrix, as in Theano."""
    c, axis = _softmax_input(c, axis, "softmax")
    return Var(Softmax(axis), (c,))


def log_softmax(c, axis=None) -> Var:
    """log(softmax(c)), computed stably; a vector gives a one-row matrix, as in Theano."""
    c, axis = _softmax_input(c, axis, "log_softmax")
    return Var(LogSoftmax(axis), (c,))


logsoftmax = log_softmax


def softmax_with_bias(x, b) -> Var:
    """softmax(x + b) over the last axis."""
    return softmax(as_tensor_variable(x) + b)


# --- picking one class per row --------------------------------------------------------------------


def _check_labels(what: str, x: TensorType, y: TensorType) -> None:
    if not is_discrete(y.dtype) or y.dtype == "bool":
        raise TypeError(f"{what}: class labels must be integers, got dtype {y.dtype}")
    if x.ndim != y.ndim + 1:
        raise ValueError(
            f"{what}: labels must have one dimension fewer than the distribution, got shapes "
            f"{x.shape} and {y.shape}"
        )
    for dx, dy in zip(x.shape, y.shape):
        if dx is not None and dy is not None and dx != dy:
            raise ValueError(
                f"{what}: the distribution has shape {x.shape} but the labels have shape {y.shape}"
            )


def _labels(y: np.ndarray, k: int) -> np.ndarray:
    if y.size and (y.min() < 0 or y.max() >= k):
        bad = y[(y < 0) | (y >= k)].flat[0]
        raise IndexError(f"class label {bad} is out of range for {k} classes")
    return y[..., None].astype(np.intp, copy=False)


@dataclass(frozen=True)
class SelectClass(Op):
    """x[..., y[...]]: from each row of x (last axis) the entry at that row's integer label."""

    def infer_type(self, x: TensorType, y: TensorType) -> TensorType:
        _check_labels("SelectClass", x, y)
        rows = tuple(a if a is not None else b for a, b in zip(x.shape, y.shape))
        return TensorType(x.dtype, rows)

    def perform(self, x, y):
        if x.shape[:-1] != y.shape:
            raise ValueError(
                f"SelectClass: the distribution has shape {x.shape} but the labels have shape "
                f"{y.shape}"
            )
        return np.take_along_axis(x, _labels(y, x.shape[-1]), axis=-1)[..., 0]

    def pullback(self, inputs, output, g):
        x, y = inputs
        return (Var(SelectClassGrad(), (g, x, y)), None)


@dataclass(frozen=True)
class SelectClassGrad(Op):
    """The adjoint of SelectClass: zeros shaped like x, with g[...] at each row's label."""

    def infer_type(self, g: TensorType, x: TensorType, y: TensorType) -> TensorType:
        _check_labels("SelectClassGrad", x, y)
        return TensorType(x.dtype, x.shape)

    def perform(self, g, x, y):
        out = np.zeros(x.shape, dtype=x.dtype)
        np.put_along_axis(out, _labels(y, x.shape[-1]), g[..., None], axis=-1)
        return out

    def pullback(self, inputs, output, gg):
        g, x, y = inputs
        return (Var(SelectClass(), (gg, y)), None, None)


# --- cross-entropies ------------------------------------------------------------------------------


def crossentropy_categorical_1hot(coding_dist, true_idx) -> Var:
    """-log(coding_dist[i, true_idx[i]]) for each row i."""
    coding_dist, true_idx = as_tensor_variable(coding_dist), as_tensor_variable(true_idx)
    return neg(log(Var(SelectClass(), (coding_dist, true_idx))))


def categorical_crossentropy(coding_dist, true_dist) -> Var:
    """Theano's cross-entropy per row; true_dist is a distribution (one-hot) or integer labels."""
    coding_dist, true_dist = as_tensor_variable(coding_dist), as_tensor_variable(true_dist)
    if true_dist.ndim == coding_dist.ndim:
        return neg(sum_(mul(true_dist, log(coding_dist)), axis=coding_dist.ndim - 1))
    if true_dist.ndim == coding_dist.ndim - 1:
        return crossentropy_categorical_1hot(coding_dist, true_dist)
    raise TypeError(
        "categorical_crossentropy: true_dist must be a distribution with the shape of coding_dist "
        "or integer labels with one dimension fewer; got coding_dist "
        f"{coding_dist.type} and true_dist {true_dist.type}"
    )


def binary_crossentropy(output, target) -> Var:
    """-(target * log(output) + (1 - target) * log(1 - output)), elementwise."""
    output, target = as_tensor_variable(output), as_tensor_variable(target)
    return neg(target * log(output) + (1 - target) * log(1 - output))


def sigmoid_binary_crossentropy(output, target) -> Var:
    """binary_crossentropy(sigmoid(output), target) computed stably from the logits `output`."""
    output, target = as_tensor_variable(output), as_tensor_variable(target)
    return softplus(output) - target * output


def crossentropy_softmax_1hot_with_bias(x, b, y_idx) -> tuple:
    """(negative log-likelihood of the labels, softmax(x + b)), computed stably."""
    logits = as_tensor_variable(x) + b
    nll = neg(Var(SelectClass(), (log_softmax(logits), as_tensor_variable(y_idx))))
    return nll, softmax(logits)


def crossentropy_softmax_1hot(x, y_idx) -> tuple:
    """(negative log-likelihood of the labels, softmax(x)), computed stably."""
    x = as_tensor_variable(x)
    return neg(Var(SelectClass(), (log_softmax(x), as_tensor_variable(y_idx)))), softmax(x)
