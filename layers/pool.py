"""Pooling layers (Lasagne's `layers.pool`): Pool2DLayer, MaxPool2DLayer and GlobalPoolLayer."""

from __future__ import annotations

from ..graph import tensor as T
from ..graph.ops.pool import pool_output_length
from ..graph.signal import pool_2d
from ..graph.var import Var
from .base import Layer
from .utils import as_tuple

__all__ = ["Pool2DLayer", "MaxPool2DLayer", "GlobalPoolLayer"]


class Pool2DLayer(Layer):
    """Pools the last two axes of a 4-d input; mode is 'max', 'sum', 'average_inc_pad' or
    'average_exc_pad'; stride defaults to pool_size.

    >>> from theanine.layers import InputLayer, Pool2DLayer
    >>> Pool2DLayer(InputLayer((None, 3, 9, 8)), 3, stride=2, mode="average_exc_pad").output_shape
    (None, 3, 4, 3)
    """

    def __init__(self, incoming, pool_size, stride=None, pad=(0, 0), ignore_border: bool = True,
                 mode: str = "max", **kwargs) -> None:
        super().__init__(incoming, **kwargs)
        if len(self.input_shape) != 4:
            raise ValueError(
                f"{type(self).__name__}: expected a 4-d input shape (batchsize, channels, rows, "
                f"cols), got {self.input_shape}"
            )
        self.pool_size = as_tuple(pool_size, 2, int)
        self.stride = self.pool_size if stride is None else as_tuple(stride, 2, int)
        self.pad = as_tuple(pad, 2, int)
        self.ignore_border, self.mode = ignore_border, mode
        # build one node now so that a bad mode or geometry fails here, not at get_output
        probe = T.tensor4(dtype="float32")
        pool_2d(probe, self.pool_size, ignore_border, self.stride, self.pad, mode)

    def get_output_shape_for(self, input_shape: tuple) -> tuple:
        """The input's first two axes, then the pooled rows and cols."""
        spatial = tuple(
            pool_output_length(n, w, s, p, self.ignore_border)
            for n, w, s, p in zip(input_shape[2:], self.pool_size, self.stride, self.pad)
        )
        return tuple(input_shape[:2]) + spatial

    def get_output_for(self, input: Var, **kwargs) -> Var:  # noqa: A002
        """pool_2d of the input."""
        return pool_2d(
            input, ws=self.pool_size, ignore_border=self.ignore_border, stride=self.stride,
            pad=self.pad, mode=self.mode,
        )


class MaxPool2DLayer(Pool2DLayer):
    """Max pooling over the last two axes of a 4-d input.

    >>> from theanine.layers import InputLayer, MaxPool2DLayer
    >>> MaxPool2DLayer(InputLayer((None, 3, 9, 8)), 2).output_shape
    (None, 3, 4, 4)
    """

    def __init__(self, incoming, pool_size, stride=None, pad=(0, 0), ignore_border: bool = True,
                 **kwargs) -> None:
        super().__init__(incoming, pool_size, stride, pad, ignore_border, mode="max", **kwargs)


class GlobalPoolLayer(Layer):
    """Pools each channel over all its trailing axes with `pool_function` (T.mean by default).

    >>> from theanine.layers import InputLayer, GlobalPoolLayer
    >>> GlobalPoolLayer(InputLayer((None, 3, 9, 8))).output_shape
    (None, 3)
    """

    def __init__(self, incoming, pool_function=T.mean, **kwargs) -> None:
        super().__init__(incoming, **kwargs)
        if len(self.input_shape) < 3:
            raise ValueError(
                f"GlobalPoolLayer: expected an input with at least 3 dimensions (batch, channels, "
                f"...), got {self.input_shape}"
            )
        self.pool_function = pool_function

    def get_output_shape_for(self, input_shape: tuple) -> tuple:
        """(batch, channels)."""
        return tuple(input_shape[:2])

    def get_output_for(self, input: Var, **kwargs) -> Var:  # noqa: A002
        """pool_function over the flattened trailing axes."""
        return self.pool_function(input.flatten(3), axis=2)
