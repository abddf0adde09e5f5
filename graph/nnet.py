"""`theanine.tensor.nnet` (Theano's `T.nnet`): sigmoid, softmax, cross-entropies and friends."""

from __future__ import annotations

from .ops.nnet import (  # noqa: F401
    Elu,
    HardSigmoid,
    LogSoftmax,
    Relu,
    SelectClass,
    SelectClassGrad,
    Selu,
    Sigmoid,
    Softmax,
    Softplus,
    Softsign,
    binary_crossentropy,
    categorical_crossentropy,
    crossentropy_categorical_1hot,
    crossentropy_softmax_1hot,
    crossentropy_softmax_1hot_with_bias,
    elu,
    hard_sigmoid,
    log_softmax,
    logsoftmax,
    relu,
    selu,
    sigmoid,
    sigmoid_binary_crossentropy,
    softmax,
    softmax_with_bias,
    softplus,
    softsign,
    ultra_fast_sigmoid,
)

# Convolution and batch normalization, with Theano's submodule names as attributes.
from .ops import batchnorm as bn  # noqa: E402  (T.nnet.bn.batch_normalization_train, as Theano)
from .ops import conv as abstract_conv  # noqa: E402  (T.nnet.abstract_conv.conv2d)
from .ops import conv  # noqa: E402,F401  (the old T.nnet.conv.conv2d entry point)
from .ops.batchnorm import (  # noqa: E402
    batch_normalization,
    batch_normalization_test,
    batch_normalization_train,
)
from .ops.conv import conv2d, conv2d_transpose  # noqa: E402

__all__ = [
    "Elu", "HardSigmoid", "LogSoftmax", "Relu", "SelectClass", "SelectClassGrad", "Selu", "Sigmoid",
    "Softmax", "Softplus", "Softsign", "binary_crossentropy", "categorical_crossentropy",
    "crossentropy_categorical_1hot", "crossentropy_softmax_1hot",
    "crossentropy_softmax_1hot_with_bias", "elu", "hard_sigmoid", "log_softmax", "logsoftmax",
    "relu", "selu", "sigmoid", "sigmoid_binary_crossentropy", "softmax", "softmax_with_bias",
    "softplus", "softsign", "ultra_fast_sigmoid",
    "conv2d", "conv2d_transpose", "batch_normalization", "batch_normalization_train", "batch_normalization_test",
]
