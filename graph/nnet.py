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

# conv2d, batch_normalization (and the abstract_conv / bn helpers) are added here by their owners.

__all__ = [
    "Elu", "HardSigmoid", "LogSoftmax", "Relu", "SelectClass", "SelectClassGrad", "Selu", "Sigmoid",
    "Softmax", "Softplus", "Softsign", "binary_crossentropy", "categorical_crossentropy",
    "crossentropy_categorical_1hot", "crossentropy_softmax_1hot",
    "crossentropy_softmax_1hot_with_bias", "elu", "hard_sigmoid", "log_softmax", "logsoftmax",
    "relu", "selu", "sigmoid", "sigmoid_binary_crossentropy", "softmax", "softmax_with_bias",
    "softplus", "softsign", "ultra_fast_sigmoid",
]
