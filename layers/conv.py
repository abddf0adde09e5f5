"""Convolutional layers (Lasagne's `layers.conv`): Conv2DLayer and TransposedConv2DLayer."""

from __future__ import annotations

from ..graph import nnet
from ..graph import tensor as T
from ..graph.var import Var
from . import init, nonlinearities
from .base import Layer
from .utils import as_tuple

__all__ = [
    "Conv2DLayer", "TransposedConv2DLayer", "Deconv2DLayer", "conv_output_length",
    "conv_input_length",
]


def conv_output_length(input_length, filter_size: int, stride: int, pad=0):
    """Output length of a convolution along one axis; pad is 'valid', 'full', 'same' or an int."""
    if input_length is None:
        return None
    if pad == "valid":
        length = input_length - filter_size + 1
    elif pad == "full":
        length = input_length + filter_size - 1
    elif pad == "same":
        length = input_length
    elif isinstance(pad, int):
        length = input_length + 2 * pad - filter_size + 1
    else:
        raise ValueError(f"conv_output_length: invalid pad {pad!r}")
    return (length + stride - 1) // stride  # ceil(length / stride)


class Conv2DLayer(Layer):
    """A 2-d convolution over (batch, channels, rows, cols): nonlinearity(conv2d(input, W) + b).

    pad is 'valid' (0), 'full', 'same' (odd filters only) or an int / pair of ints; with
    untie_biases each output position has its own bias.

    >>> from theanine.layers import InputLayer, Conv2DLayer
    >>> layer = Conv2DLayer(InputLayer((None, 3, 28, 26)), num_filters=8, filter_size=(5, 3))
    >>> layer.output_shape, layer.W.get_value().shape, layer.b.get_value().shape
    ((None, 8, 24, 24), (8, 3, 5, 3), (8,))
    """

    def __init__(self, incoming, num_filters: int, filter_size, stride=(1, 1), pad=0,
                 untie_biases: bool = False, W=init.GlorotUniform(), b=init.Constant(0.0),
                 nonlinearity=nonlinearities.rectify, flip_filters: bool = True,
                 convolution=nnet.conv2d, num_groups: int = 1, **kwargs) -> None:
        super().__init__(incoming, **kwargs)
        self.nonlinearity = nonlinearities.identity if nonlinearity is None else nonlinearity
        if len(self.input_shape) != 4:
            raise ValueError(
                f"Conv2DLayer: expected a 4-d input shape (batchsize, channels, rows, cols), got "
                f"{self.input_shape}"
            )
        if not isinstance(num_groups, int) or num_groups < 1:
            raise ValueError(f"Conv2DLayer: num_groups must be a positive int, got {num_groups!r}")
        channels = self.input_shape[1]
        if channels is None:
            raise ValueError(
                f"Conv2DLayer needs a known number of input channels, got input shape "
                f"{self.input_shape}"
            )
        if channels % num_groups or num_filters % num_groups:
            raise ValueError(
                f"Conv2DLayer: {channels} input channels and {num_filters} filters must both be "
                f"divisible by num_groups={num_groups}"
            )
        self.num_filters, self.num_groups = num_filters, num_groups
        self.filter_size = as_tuple(filter_size, 2, int)
        self.stride = as_tuple(stride, 2, int)
        self.flip_filters, self.untie_biases = flip_filters, untie_biases
        self.convolution = convolution
        if pad == "same" and any(s % 2 == 0 for s in self.filter_size):
            raise NotImplementedError(
                f"Conv2DLayer: pad='same' needs odd filter sizes, got {self.filter_size}"
            )
        if pad == "valid":
            self.pad = (0, 0)
        elif pad in ("full", "same"):
            self.pad = pad
        else:
            self.pad = as_tuple(pad, 2, int)
        self.W = self.add_param(W, self.get_W_shape(), name="W")
        self.b = None
        if b is not None:
            shape = (num_filters,) + self.output_shape[2:] if untie_biases else (num_filters,)
            self.b = self.add_param(b, shape, name="b", regularizable=False)

    def get_W_shape(self) -> tuple:
        """(num_filters, input channels / num_groups, filter rows, filter cols)."""
        return (self.num_filters, self.input_shape[1] // self.num_groups) + self.filter_size

    def get_output_shape_for(self, input_shape: tuple) -> tuple:
        """(batch, num_filters, rows, cols) after padding and striding."""
        pads = self.pad if isinstance(self.pad, tuple) else (self.pad, self.pad)
        spatial = tuple(
            conv_output_length(n, f, s, p)
            for n, f, s, p in zip(input_shape[2:], self.filter_size, self.stride, pads)
        )
        return (input_shape[0], self.num_filters) + spatial

    def convolve(self, input: Var, **kwargs) -> Var:  # noqa: A002
        """The convolution alone, without bias or nonlinearity."""
        border_mode = "half" if self.pad == "same" else self.pad
        extra = {"num_groups": self.num_groups} if self.num_groups != 1 else {}
        return self.convolution(
            input, self.W, self.input_shape, self.get_W_shape(), subsample=self.stride,
            border_mode=border_mode, filter_flip=self.flip_filters, **extra,
        )

    def get_output_for(self, input: Var, **kwargs) -> Var:  # noqa: A002
        """nonlinearity(convolve(input) + b)."""
        conved = self.convolve(input, **kwargs)
        if self.b is None:
            activation = conved
        elif self.untie_biases:
            activation = conved + T.shape_padleft(self.b, 1)
        else:
            activation = conved + self.b.dimshuffle("x", 0, "x", "x")
        return self.nonlinearity(activation)


def conv_input_length(output_length, filter_size: int, stride: int, pad=0):
    """The input length a convolution maps to `output_length` (the smallest one, with stride)."""
    if output_length is None:
        return None
    pads = {"valid": 0, "full": filter_size - 1, "same": filter_size // 2}
    pad = pads.get(pad, pad) if isinstance(pad, str) else pad
    if not isinstance(pad, int):
        raise ValueError(f"conv_input_length: invalid pad {pad!r}")
    return (output_length - 1) * stride - 2 * pad + filter_size


class TransposedConv2DLayer(Conv2DLayer):
    """The transposed convolution (the gradient of a Conv2DLayer with respect to its input): it
    upsamples by `stride` and crops `crop` ('valid', 'full', 'same' or ints) from each border.

    >>> from theanine.layers import InputLayer, TransposedConv2DLayer
    >>> layer = TransposedConv2DLayer(InputLayer((None, 3, 5, 4)), 6, (3, 2), stride=2)
    >>> layer.output_shape, layer.W.get_value().shape
    ((None, 6, 11, 8), (3, 6, 3, 2))
    """

    def __init__(self, incoming, num_filters: int, filter_size, stride=(1, 1), crop=0,
                 untie_biases: bool = False, W=init.GlorotUniform(), b=init.Constant(0.0),
                 nonlinearity=nonlinearities.rectify, flip_filters: bool = False,
                 output_size=None, **kwargs) -> None:
        self.output_size = None if output_size is None else as_tuple(output_size, 2, int)
        super().__init__(incoming, num_filters, filter_size, stride, crop, untie_biases, W, b,
                         nonlinearity, flip_filters, **kwargs)
        self.crop = self.pad

    def get_W_shape(self) -> tuple:
        """(input channels, num_filters, rows, cols): a forward convolution's shape, transposed."""
        return (self.input_shape[1], self.num_filters) + self.filter_size

    def get_output_shape_for(self, input_shape: tuple) -> tuple:
        """output_size when given, else the smallest size the transposed convolution allows."""
        if self.output_size is not None:
            return (input_shape[0], self.num_filters) + self.output_size
        crops = self.pad if isinstance(self.pad, tuple) else (self.pad, self.pad)
        spatial = tuple(
            conv_input_length(n, f, s, c)
            for n, f, s, c in zip(input_shape[2:], self.filter_size, self.stride, crops)
        )
        return (input_shape[0], self.num_filters) + spatial

    def convolve(self, input: Var, **kwargs) -> Var:  # noqa: A002
        """The transposed convolution of the input with W."""
        size = self.output_shape[2:]
        if None in size:  # sizes known at run time only: the same formula, symbolically
            crops = self.pad if isinstance(self.pad, tuple) else (self.pad, self.pad)
            size = [
                conv_input_length(input.shape[2 + axis], f, s, c)
                for axis, (f, s, c) in enumerate(zip(self.filter_size, self.stride, crops))
            ]
        return nnet.conv2d_transpose(
            input, self.W, size, self.get_W_shape(),
            border_mode="half" if self.pad == "same" else self.pad,
            input_dilation=self.stride, filter_flip=not self.flip_filters,
        )


Deconv2DLayer = TransposedConv2DLayer
