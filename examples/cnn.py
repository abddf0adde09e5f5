"""Train a LeNet-style convolutional net on Fashion-MNIST with the Lasagne-style layers.

Two convolution + max-pooling stages, a dense layer, dropout and a softmax, trained with Adam (or
Nesterov momentum) through `layers.training.fit`. The per-epoch validation figures are measured on
the test set. Runs on the subset shipped in the package when no data directory is given (or
$THEANINE_DATA points at the full set). Usage: python examples/cnn.py [--epochs N] [--mode py]
[--data DIR] [--batch-size 64] [--train-size N] [--optimizer adam|nesterov]
"""

from __future__ import annotations

import os
import sys
import time

import numpy as np

import theanine
import theanine.layers as lasagne
import theanine.tensor as T
from theanine.layers import (
    Conv2DLayer,
    DenseLayer,
    DropoutLayer,
    InputLayer,
    MaxPool2DLayer,
    get_all_params,
    get_output,
    nonlinearities,
)
from theanine.layers.training import evaluate, fit

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # examples/common.py
from common import load, parse_args  # noqa: E402


def build_network(filters=(32, 64), hidden: int = 256, dropout: float = 0.5):
    """conv 5x5 -> max-pool 2x2 -> conv 5x5 -> max-pool 2x2 -> dense -> softmax, with dropout."""
    network = InputLayer((None, 1, 28, 28), name="image")
    for k, num_filters in enumerate(filters):
        network = Conv2DLayer(network, num_filters, (5, 5), nonlinearity=nonlinearities.rectify,
                              name=f"conv{k + 1}")
        network = MaxPool2DLayer(network, (2, 2), name=f"pool{k + 1}")
    network = DenseLayer(DropoutLayer(network, p=dropout), hidden,
                         nonlinearity=nonlinearities.rectify, name="hidden")
    return DenseLayer(DropoutLayer(network, p=dropout), 10,
                      nonlinearity=nonlinearities.softmax, name="output")


def compile_functions(network, optimizer: str = "adam", learning_rate: float = 1e-3, mode=None):
    """(train, test): train(x, y) -> [loss, accuracy] with updates; test the same, deterministic."""
    x = network_input(network)
    y = T.ivector("y")
    prediction = get_output(network)
    loss = lasagne.objectives.categorical_crossentropy(prediction, y).mean()
    accuracy = lasagne.objectives.categorical_accuracy(prediction, y).mean()
    params = get_all_params(network, trainable=True)
    if optimizer == "adam":
        updates = lasagne.updates.adam(loss, params, learning_rate=learning_rate)
    elif optimizer == "nesterov":
        updates = lasagne.updates.nesterov_momentum(loss, params, learning_rate, momentum=0.9)
    else:
        raise ValueError(f"unknown optimizer {optimizer!r}: expected 'adam' or 'nesterov'")
    train = theanine.function([x, y], [loss, accuracy], updates=updates, mode=mode, name="train")
    test_prediction = get_output(network, deterministic=True)
    test_loss = lasagne.objectives.categorical_crossentropy(test_prediction, y).mean()
    test_accuracy = lasagne.objectives.categorical_accuracy(test_prediction, y).mean()
    test = theanine.function([x, y], [test_loss, test_accuracy], mode=mode, name="test")
    return train, test


def network_input(network):
    """The input variable of the network's (single) input layer."""
    (first,) = [l for l in lasagne.get_all_layers(network) if isinstance(l, InputLayer)]
    return first.input_var


def main(argv=None) -> float:
    parser = parse_args(argv, __doc__.splitlines()[0], batch_size=64, learning_rate=1e-3)
    parser.add_argument("--optimizer", choices=("adam", "nesterov"), default="adam")
    args = parser.parse_args(argv)
    np.random.seed(args.seed)  # the layers draw their initial weights and dropout seeds from it
    (x_train, y_train), (x_test, y_test) = load(args, flatten=False)
    # one input channel: (n, 1, 28, 28)
    x_train, x_test = x_train[:, None], x_test[:, None]
    start = time.perf_counter()
    network = build_network()
    train, test = compile_functions(network, args.optimizer, args.lr, args.mode)
    print(f"compiled a {lasagne.count_params(network)}-parameter CNN in mode "
          f"{args.mode or theanine.config.mode} ({time.perf_counter() - start:.2f} s)")
    fit(train, x_train, y_train, epochs=args.epochs, batch_size=args.batch_size, val_fn=test,
        validation_data=(x_test, y_test), metric_names=("loss", "accuracy"), seed=args.seed)
    test_accuracy = evaluate(test, x_test, y_test, 500, ("loss", "accuracy"))["accuracy"]
    print(f"final test accuracy {test_accuracy:.4f} ({time.perf_counter() - start:.1f} s in all)")
    return test_accuracy


if __name__ == "__main__":
    main()
