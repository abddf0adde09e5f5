"""Activation functions (Lasagne's `lasagne.nonlinearities`), each a function of one expression."""

from __future__ import annotations

from ..graph import nnet
from ..graph import tensor as T
from ..graph.var import Var

__all__ = [
    "sigmoid", "softmax", "tanh", "ScaledTanH", "ScaledTanh", "rectify", "LeakyRectify",
    "leaky_rectify", "very_leaky_rectify", "elu", "SELU", "selu", "softplus", "linear", "identity",
]


def sigmoid(x: Var) -> Var:
    """1 / (1 + exp(-x))."""
    return nnet.sigmoid(x)


def softmax(x: Var) -> Var:
    """Row-wise softmax of a matrix."""
    return nnet.softmax(x)


def tanh(x: Var) -> Var:
    """Hyperbolic tangent."""
    return T.tanh(x)


class ScaledTanH:
    """scale_out * tanh(scale_in * x)."""

    def __init__(self, scale_in: float = 1.0, scale_out: float = 1.0) -> None:
        self.scale_in, self.scale_out = scale_in, scale_out

    def __call__(self, x: Var) -> Var:
        return self.scale_out * T.tanh(x * self.scale_in)


ScaledTanh = ScaledTanH


def rectify(x: Var) -> Var:
    """max(x, 0)."""
    return nnet.relu(x)


class LeakyRectify:
    """x for x > 0, leakiness * x otherwise."""

    def __init__(self, leakiness: float = 0.01) -> None:
        self.leakiness = leakiness

    def __call__(self, x: Var) -> Var:
        return nnet.relu(x, self.leakiness)


leaky_rectify = LeakyRectify()
very_leaky_rectify = LeakyRectify(1.0 / 3)


def elu(x: Var) -> Var:
    """x for x > 0, exp(x) - 1 otherwise."""
    return T.switch(x > 0, x, T.expm1(x))


class SELU:
    """scale * x for x > 0, scale * scale_neg * (exp(x) - 1) otherwise."""

    def __init__(self, scale: float = 1.0, scale_neg: float = 1.0) -> None:
        self.scale, self.scale_neg = scale, scale_neg

    def __call__(self, x: Var) -> Var:
        return self.scale * T.switch(x > 0, x, self.scale_neg * T.expm1(x))


selu = SELU(scale=1.0507009873554804934193349852946, scale_neg=1.6732632423543772848170429916717)


def softplus(x: Var) -> Var:
    """log(1 + exp(x))."""
    return nnet.softplus(x)


def linear(x: Var) -> Var:
    """The identity: returns x unchanged."""
    return x


identity = linear
