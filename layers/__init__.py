"""theanine.layers: Lasagne-style layers, initializers, objectives and updates."""

import sys as _sys

from . import init, nonlinearities, objectives, random, regularization, updates, utils
from .base import InputLayer, Layer, MergeLayer
from .conv import Conv2DLayer, Deconv2DLayer, TransposedConv2DLayer
from .dense import (
    BiasLayer,
    DenseLayer,
    ExpressionLayer,
    NonlinearityLayer,
    ParametricRectifierLayer,
    ScaleLayer,
    prelu,
)
from .embedding import EmbeddingLayer
from .helper import (
    count_params,
    get_all_layers,
    get_all_param_values,
    get_all_params,
    get_output,
    get_output_shape,
    set_all_param_values,
)
from .normalization import BatchNormLayer, batch_norm
from .pool import GlobalPoolLayer, MaxPool2DLayer, Pool2DLayer
from .recurrent import CustomRecurrentLayer, GRULayer, Gate, LSTMLayer, RecurrentLayer
from .noise import (
    DropoutLayer,
    GaussianNoiseLayer,
    dropout,
    dropout_channels,
    dropout_locations,
    spatial_dropout,
)
from .shape import (
    ConcatLayer,
    DimshuffleLayer,
    ElemwiseMergeLayer,
    ElemwiseSumLayer,
    FlattenLayer,
    PadLayer,
    ReshapeLayer,
    SliceLayer,
    concat,
    dimshuffle,
    flatten,
    pad,
    reshape,
)

# `import theanine.layers as lasagne` then `lasagne.layers.DenseLayer` works as in Lasagne
layers = _sys.modules[__name__]

from . import training  # noqa: E402
from .training import History, fit, load_params, save_params  # noqa: E402
