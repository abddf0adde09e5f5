"""Fully connected and per-unit layers: Dense, Nonlinearity, Bias, Scale and Expression layers."""

from __future__ import annotations

import numpy as np

from ..graph import nnet
from ..graph import tensor as T
from ..graph.var import Var
from . import init, nonlinearities
from .base import Layer

__all__ = [
    "DenseLayer", "NonlinearityLayer", "BiasLayer", "ScaleLayer", "ExpressionLayer",
    "ParametricRectifierLayer", "prelu",
]


class DenseLayer(Layer):
    """A fully connected layer: nonlinearity(dot(input, W) + b), flattening trailing input axes.

    >>> from theanine.layers import InputLayer, DenseLayer
    >>> l_hid = DenseLayer(InputLayer((None, 3, 4)), num_units=5)
    >>> l_hid.output_shape, l_hid.W.get_value().shape, l_hid.b.get_value().shape
    ((None, 5), (12, 5), (5,))
    """

    def __init__(self, incoming, num_units: int, W=init.GlorotUniform(), b=init.Constant(0.0),
                 nonlinearity=nonlinearities.rectify, num_leading_axes: int = 1, **kwargs) -> None:
        super().__init__(incoming, **kwargs)
        self.nonlinearity = nonlinearities.identity if nonlinearity is None else nonlinearity
        self.num_units = num_units
        ndim = len(self.input_shape)
        if num_leading_axes >= ndim:
            raise ValueError(
                f"DenseLayer: num_leading_axes={num_leading_axes} for a {ndim}-d input "
                f"{self.input_shape} leaves no trailing axes for the dot product"
            )
        if num_leading_axes < -ndim:
            raise ValueError(
                f"DenseLayer: num_leading_axes={num_leading_axes} for a {ndim}-d input "
                f"{self.input_shape} asks for more trailing axes than the input has"
            )
        self.num_leading_axes = num_leading_axes
        trailing = self.input_shape[num_leading_axes:]
        if any(s is None for s in trailing):
            raise ValueError(
                f"DenseLayer needs a fixed input size past the leading axes: got input shape "
                f"{self.input_shape} with num_leading_axes={num_leading_axes}"
            )
        num_inputs = int(np.prod(trailing))
        self.W = self.add_param(W, (num_inputs, num_units), name="W")
        self.b = None
        if b is not None:
            self.b = self.add_param(b, (num_units,), name="b", regularizable=False)

    def get_output_shape_for(self, input_shape: tuple) -> tuple:
        """The leading axes of the input followed by num_units."""
        return tuple(input_shape[: self.num_leading_axes]) + (self.num_units,)

    def get_output_for(self, input: Var, **kwargs) -> Var:  # noqa: A002
        """nonlinearity(dot(flattened input, W) + b)."""
        leading = self.num_leading_axes + (input.ndim if self.num_leading_axes < 0 else 0)
        if input.ndim > leading + 1:
            input = input.flatten(leading + 1)
        activation = T.dot(input, self.W)
        if self.b is not None:
            activation = activation + self.b
        return self.nonlinearity(activation)


class NonlinearityLayer(Layer):
    """Applies an elementwise nonlinearity to its input.

    >>> from theanine.layers import InputLayer, NonlinearityLayer, nonlinearities
    >>> NonlinearityLayer(InputLayer((None, 7)), nonlinearities.tanh).output_shape
    (None, 7)
    """

    def __init__(self, incoming, nonlinearity=nonlinearities.rectify, **kwargs) -> None:
        super().__init__(incoming, **kwargs)
        self.nonlinearity = nonlinearities.identity if nonlinearity is None else nonlinearity

    def get_output_for(self, input: Var, **kwargs) -> Var:  # noqa: A002
        """nonlinearity(input)."""
        return self.nonlinearity(input)


def _auto_shared_axes(shared_axes, ndim: int) -> tuple:
    if shared_axes == "all":
        return tuple(range(ndim))
    if shared_axes == "auto":
        # one value per channel (axis 1), shared over the batch and any spatial axes
        return (0,) + tuple(range(2, ndim))
    if isinstance(shared_axes, int):
        return (shared_axes,)
    return tuple(shared_axes)


def _per_axis_shape(layer: Layer, what: str) -> tuple:
    shape = tuple(s for axis, s in enumerate(layer.input_shape) if axis not in layer.shared_axes)
    if any(s is None for s in shape):
        raise ValueError(
            f"{type(layer).__name__}: {what} needs fixed sizes on the axes it does not share; "
            f"input shape {layer.input_shape}, shared_axes {layer.shared_axes}"
        )
    return shape


def _broadcast_pattern(layer: Layer, ndim: int) -> list:
    own_axes = iter(range(ndim - len(layer.shared_axes)))
    return ["x" if axis in layer.shared_axes else next(own_axes) for axis in range(ndim)]


class BiasLayer(Layer):
    """Adds a learned bias, shared over `shared_axes` (by default all axes but the second).

    >>> from theanine.layers import InputLayer, BiasLayer
    >>> BiasLayer(InputLayer((None, 3, 5, 6))).b.get_value().shape
    (3,)
    """

    def __init__(self, incoming, b=init.Constant(0.0), shared_axes="auto", **kwargs) -> None:
        super().__init__(incoming, **kwargs)
        self.shared_axes = _auto_shared_axes(shared_axes, len(self.input_shape))
        self.b = None
        if b is not None:
            self.b = self.add_param(b, _per_axis_shape(self, "b"), "b", regularizable=False)

    def get_output_for(self, input: Var, **kwargs) -> Var:  # noqa: A002
        """input + b, broadcast over the shared axes."""
        if self.b is None:
            return input
        return input + self.b.dimshuffle(*_broadcast_pattern(self, input.ndim))


class ScaleLayer(Layer):
    """Multiplies by a learned scale, shared over `shared_axes` (by default all but the second).

    >>> from theanine.layers import InputLayer, ScaleLayer
    >>> ScaleLayer(InputLayer((None, 4)), shared_axes=0).scales.get_value().shape
    (4,)
    """

    def __init__(self, incoming, scales=init.Constant(1.0), shared_axes="auto", **kwargs) -> None:
        super().__init__(incoming, **kwargs)
        self.shared_axes = _auto_shared_axes(shared_axes, len(self.input_shape))
        shape = _per_axis_shape(self, "scales")
        self.scales = self.add_param(scales, shape, "scales", regularizable=False)

    def get_output_for(self, input: Var, **kwargs) -> Var:  # noqa: A002
        """input * scales, broadcast over the shared axes."""
        return input * self.scales.dimshuffle(*_broadcast_pattern(self, input.ndim))


class ExpressionLayer(Layer):
    """Applies `function` to its input; `output_shape` is a tuple, 'auto' (computed on a dummy
    input), a callable of the input shape, or None (same as the input).

    >>> from theanine.layers import InputLayer, ExpressionLayer
    >>> layer = ExpressionLayer(InputLayer((2, 3)), lambda x: x.sum(axis=1), output_shape="auto")
    >>> layer.output_shape
    (2,)
    """

    def __init__(self, incoming, function, output_shape=None, **kwargs) -> None:
        super().__init__(incoming, **kwargs)
        self.function = function
        self._output_shape = output_shape

    def get_output_shape_for(self, input_shape: tuple) -> tuple:
        """The shape as `output_shape` says."""
        if self._output_shape is None:
            return input_shape
        if self._output_shape == "auto":
            # as Lasagne: run the function on zeros, with size 0 standing for unknown sizes
            probe = np.zeros(tuple(0 if s is None else s for s in input_shape), dtype="float32")
            value = self.function(T.constant(probe)).eval()
            return tuple(s if s else None for s in np.shape(value))
        if callable(self._output_shape):
            return tuple(self._output_shape(input_shape))
        return tuple(self._output_shape)

    def get_output_for(self, input: Var, **kwargs) -> Var:  # noqa: A002
        """function(input)."""
        return self.function(input)


class ParametricRectifierLayer(Layer):
    """PReLU: max(x, 0) + alpha * min(x, 0) with learned slopes `alpha`, shared over `shared_axes`
    ('auto': all axes but the second; 'all': one slope).

    >>> from theanine.layers import InputLayer, ParametricRectifierLayer
    >>> ParametricRectifierLayer(InputLayer((None, 3, 5))).alpha.get_value()
    array([0.25, 0.25, 0.25], dtype=float32)
    """

    def __init__(self, incoming, alpha=init.Constant(0.25), shared_axes="auto", **kwargs) -> None:
        super().__init__(incoming, **kwargs)
        self.shared_axes = _auto_shared_axes(shared_axes, len(self.input_shape))
        shape = _per_axis_shape(self, "alpha")
        self.alpha = self.add_param(alpha, shape, name="alpha", regularizable=False)

    def get_output_for(self, input: Var, **kwargs) -> Var:  # noqa: A002
        """relu(input, alpha) with alpha broadcast over the shared axes."""
        alpha = self.alpha.dimshuffle(*_broadcast_pattern(self, input.ndim))
        return nnet.relu(input, alpha)


def prelu(layer: Layer, **kwargs) -> ParametricRectifierLayer:
    """A ParametricRectifierLayer on top of `layer`, whose own nonlinearity becomes the identity."""
    if getattr(layer, "nonlinearity", None) is not None:
        layer.nonlinearity = nonlinearities.identity
    return ParametricRectifierLayer(layer, **kwargs)
