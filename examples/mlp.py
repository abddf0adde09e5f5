"""Train a multilayer perceptron on Fashion-MNIST: the README's main job.

Runs on the subset shipped in the package when no data directory is given (or $THEANINE_DATA points at
the full set). Usage: python examples/mlp.py [--epochs N] [--mode py] [--data DIR] [--hidden 256,128]
"""

from __future__ import annotations

import argparse
import time

import numpy as np

import theanine
import theanine.tensor as T
from theanine.layers.datasets import load_fashion_mnist


def init_layer(rng: np.random.Generator, n_in: int, n_out: int, name: str):
    """He-uniform weights and zero biases as shared variables."""
    bound = np.sqrt(6.0 / n_in)
    W = theanine.shared(rng.uniform(-bound, bound, (n_in, n_out)).astype(theanine.config.floatX), name=f"W{name}")
    b = theanine.shared(np.zeros(n_out, dtype=theanine.config.floatX), name=f"b{name}")
    return W, b


def build(sizes, learning_rate=0.05, momentum=0.9, weight_decay=1e-4, seed=0, mode=None):
    """Symbolic MLP with ReLU hidden layers; returns (train, predict) compiled functions and params."""
    rng = np.random.default_rng(seed)
    x = T.matrix("x")
    y = T.ivector("y")
    lr = T.scalar("lr")
    params = []
    h = x
    for k, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:])):
        W, b = init_layer(rng, n_in, n_out, str(k))
        params += [W, b]
        a = T.dot(h, W) + b
        h = T.nnet.relu(a) if k < len(sizes) - 2 else a
    p = T.nnet.softmax(h)
    loss = T.mean(T.nnet.categorical_crossentropy(p, y))
    cost = loss + weight_decay * sum(T.sum(W ** 2) for W in params[::2])
    grads = T.grad(cost, params)
    updates = []
    for param, g in zip(params, grads):
        velocity = theanine.shared(np.zeros_like(param.get_value()), name=f"v_{param.name}")
        step = momentum * velocity - lr * g
        updates += [(velocity, step), (param, param + step)]
    accuracy = T.mean(T.eq(T.argmax(p, axis=1), y))
    train = theanine.function([x, y, lr], [loss, accuracy], updates=updates, mode=mode, name="train")
    predict = theanine.function([x], T.argmax(p, axis=1), mode=mode, name="predict")
    return train, predict, params


def main(argv=None) -> float:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--mode", default=None, help="compilation mode (default: theanine.config.mode)")
    parser.add_argument("--data", default=None, help="directory of the Fashion-MNIST IDX files")
    parser.add_argument("--hidden", default="256,128", help="hidden layer sizes, comma separated")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--lr", type=float, default=0.05)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    ((x_train, y_train), (x_test, y_test)), directory = load_fashion_mnist(args.data)
    print(f"data: {directory} ({len(x_train)} train, {len(x_test)} test images)")
    sizes = [784, *(int(s) for s in args.hidden.split(",") if s), 10]
    start = time.perf_counter()
    train, predict, _ = build(sizes, learning_rate=args.lr, seed=args.seed, mode=args.mode)
    print(f"compiled {'-'.join(map(str, sizes))} MLP in mode {args.mode or theanine.config.mode} "
          f"({time.perf_counter() - start:.2f} s)")
    rng = np.random.default_rng(args.seed)
    lr = np.asarray(args.lr, dtype=theanine.config.floatX)
    for epoch in range(1, args.epochs + 1):
        tic = time.perf_counter()
        order = rng.permutation(len(x_train))
        losses, accuracies = [], []
        for i in range(0, len(order) - args.batch_size + 1, args.batch_size):
            batch = order[i : i + args.batch_size]
            loss, accuracy = train(x_train[batch], y_train[batch], lr)
            losses.append(loss)
            accuracies.append(accuracy)
        test_accuracy = float(np.mean(predict(x_test) == y_test))
        print(f"epoch {epoch}/{args.epochs}: loss {np.mean(losses):.4f}, train accuracy "
              f"{np.mean(accuracies):.4f}, test accuracy {test_accuracy:.4f} ({time.perf_counter() - tic:.1f} s)")
        lr = lr * np.asarray(0.8, dtype=lr.dtype)
    print(f"final test accuracy {test_accuracy:.4f}")
    return test_accuracy


if __name__ == "__main__":
    main()
