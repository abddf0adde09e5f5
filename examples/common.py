"""What the dataset examples share: their command-line options and the data, cut to size."""

from __future__ import annotations

import argparse

from theanine.layers.datasets import load_fashion_mnist


def parse_args(argv, description: str, batch_size: int, learning_rate: float):
    """The options every example shares."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--mode", default=None,
                        help="compilation mode (default: theanine.config.mode)")
    parser.add_argument("--data", default=None, help="directory of the Fashion-MNIST IDX files")
    parser.add_argument("--batch-size", type=int, default=batch_size)
    parser.add_argument("--train-size", type=int, default=None,
                        help="use only the first N training images (quick runs)")
    parser.add_argument("--test-size", type=int, default=None,
                        help="use only the first N test images (quick runs)")
    parser.add_argument("--lr", type=float, default=learning_rate)
    parser.add_argument("--seed", type=int, default=0)
    return parser


def load(args, flatten: bool):
    """The training and test sets, cut to --train-size and --test-size."""
    (train, test), directory = load_fashion_mnist(args.data, flatten=flatten)
    (x_train, y_train), (x_test, y_test) = train, test
    x_train, y_train = x_train[: args.train_size], y_train[: args.train_size]
    x_test, y_test = x_test[: args.test_size], y_test[: args.test_size]
    print(f"data: {directory} ({len(x_train)} train, {len(x_test)} test images)")
    return (x_train, y_train), (x_test, y_test)


