"""Classify Fashion-MNIST with an LSTM (or GRU) that reads each image row by row.

Each 28x28 image is a sequence of 28 steps of 28 pixels; the recurrent layer's last hidden state
feeds a softmax. Trained with Adam through `layers.training.fit`, with Lasagne's gradient clipping;
the per-epoch validation figures are measured on the test set. Runs on the subset shipped in the
package when no data directory is given (or $THEANINE_DATA points at the full set). Usage:
python examples/rnn.py [--epochs N] [--mode py] [--data DIR] [--cell lstm|gru] [--units 128]
[--batch-size 128] [--train-size N]
"""

from __future__ import annotations

import os
import sys
import time

import numpy as np

import theanine
import theanine.layers as lasagne
import theanine.tensor as T
from theanine.layers import DenseLayer, GRULayer, InputLayer, LSTMLayer, get_all_params, get_output
from theanine.layers.training import evaluate, fit

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # examples/common.py
from common import load, parse_args  # noqa: E402


def build_network(cell: str = "lstm", num_units: int = 128, grad_clipping: float = 100.0):
    """rows (batch, 28, 28) -> LSTM/GRU (last state) -> softmax over the 10 classes."""
    network = InputLayer((None, 28, 28), name="rows")
    layer = {"lstm": LSTMLayer, "gru": GRULayer}[cell]
    network = layer(network, num_units, grad_clipping=grad_clipping, only_return_final=True,
                    name=cell)
    return DenseLayer(network, 10, nonlinearity=lasagne.nonlinearities.softmax, name="output")


def compile_functions(network, learning_rate: float = 1e-3, mode=None):
    """(train, test): train(x, y) -> [loss, accuracy] with Adam updates; test without updates."""
    (l_in,) = [l for l in lasagne.get_all_layers(network) if isinstance(l, InputLayer)]
    x, y = l_in.input_var, T.ivector("y")
    prediction = get_output(network)
    loss = lasagne.objectives.categorical_crossentropy(prediction, y).mean()
    accuracy = lasagne.objectives.categorical_accuracy(prediction, y).mean()
    params = get_all_params(network, trainable=True)
    updates = lasagne.updates.adam(loss, params, learning_rate=learning_rate)
    train = theanine.function([x, y], [loss, accuracy], updates=updates, mode=mode, name="train")
    test = theanine.function([x, y], [loss, accuracy], mode=mode, name="test")
    return train, test


def main(argv=None) -> float:
    parser = parse_args(argv, __doc__.splitlines()[0], batch_size=128, learning_rate=2e-3)
    parser.add_argument("--cell", choices=("lstm", "gru"), default="lstm")
    parser.add_argument("--units", type=int, default=128)
    args = parser.parse_args(argv)
    np.random.seed(args.seed)  # the layers draw their initial weights from it
    (x_train, y_train), (x_test, y_test) = load(args, flatten=False)
    start = time.perf_counter()
    network = build_network(args.cell, args.units)
    train, test = compile_functions(network, args.lr, args.mode)
    print(f"compiled a {lasagne.count_params(network)}-parameter {args.cell.upper()} "
          f"({args.units} units, 28 steps of 28 pixels) in mode "
          f"{args.mode or theanine.config.mode} "
          f"({time.perf_counter() - start:.2f} s)")
    fit(train, x_train, y_train, epochs=args.epochs, batch_size=args.batch_size, val_fn=test,
        validation_data=(x_test, y_test), metric_names=("loss", "accuracy"), seed=args.seed)
    test_accuracy = evaluate(test, x_test, y_test, 500, ("loss", "accuracy"))["accuracy"]
    print(f"final test accuracy {test_accuracy:.4f} ({time.perf_counter() - start:.1f} s in all)")
    return test_accuracy


if __name__ == "__main__":
    main()
