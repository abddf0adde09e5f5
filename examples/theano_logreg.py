"""A classic Theano logistic-regression program, run unchanged but for its imports.

It follows the deeplearning.net tutorial: a shared data set, a symbolic minibatch index substituted
through `givens`, `T.grad`, and `updates`. Usage: python examples/theano_logreg.py [--epochs N]
[--mode py] [--data DIR]
"""

from __future__ import annotations

import argparse
import time

import numpy

import theanine as theano
import theanine.tensor as T
from theanine.layers.datasets import load_fashion_mnist


class LogisticRegression(object):
    def __init__(self, input, n_in, n_out):
        self.W = theano.shared(
            value=numpy.zeros((n_in, n_out), dtype=theano.config.floatX), name="W", borrow=True
        )
        self.b = theano.shared(value=numpy.zeros((n_out,), dtype=theano.config.floatX), name="b", borrow=True)
        self.p_y_given_x = T.nnet.softmax(T.dot(input, self.W) + self.b)
        self.y_pred = T.argmax(self.p_y_given_x, axis=1)
        self.params = [self.W, self.b]
        self.input = input

    def negative_log_likelihood(self, y):
        return -T.mean(T.log(self.p_y_given_x)[T.arange(y.shape[0]), y])

    def errors(self, y):
        if y.ndim != self.y_pred.ndim:
            raise TypeError("y should have the same shape as self.y_pred", ("y", y.type, "y_pred", self.y_pred.type))
        return T.mean(T.neq(self.y_pred, y))


def shared_dataset(data_xy, borrow=True):
    data_x, data_y = data_xy
    shared_x = theano.shared(numpy.asarray(data_x, dtype=theano.config.floatX), borrow=borrow)
    shared_y = theano.shared(numpy.asarray(data_y, dtype=theano.config.floatX), borrow=borrow)
    return shared_x, T.cast(shared_y, "int32")


def build(train, test, learning_rate=0.13, batch_size=600, mode=None):
    """The tutorial's model and its compiled train/test functions."""
    train_set_x, train_set_y = shared_dataset(train)
    test_set_x, test_set_y = shared_dataset(test)
    index = T.lscalar()
    x = T.matrix("x")
    y = T.ivector("y")
    classifier = LogisticRegression(input=x, n_in=28 * 28, n_out=10)
    cost = classifier.negative_log_likelihood(y)
    test_model = theano.function(
        inputs=[index],
        outputs=classifier.errors(y),
        givens={
            x: test_set_x[index * batch_size : (index + 1) * batch_size],
            y: test_set_y[index * batch_size : (index + 1) * batch_size],
        },
        mode=mode,
    )
    g_W = T.grad(cost=cost, wrt=classifier.W)
    g_b = T.grad(cost=cost, wrt=classifier.b)
    updates = [(classifier.W, classifier.W - learning_rate * g_W), (classifier.b, classifier.b - learning_rate * g_b)]
    train_model = theano.function(
        inputs=[index],
        outputs=cost,
        updates=updates,
        givens={
            x: train_set_x[index * batch_size : (index + 1) * batch_size],
            y: train_set_y[index * batch_size : (index + 1) * batch_size],
        },
        mode=mode,
    )
    return classifier, train_model, test_model


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--mode", default=None, help="compilation mode (default: theanine.config.mode)")
    parser.add_argument("--data", default=None, help="directory of the Fashion-MNIST IDX files")
    parser.add_argument("--batch-size", type=int, default=600)
    args = parser.parse_args(argv)
    (train, test), directory = load_fashion_mnist(args.data)
    print(f"data: {directory} ({len(train[0])} train, {len(test[0])} test images)")
    batch_size = args.batch_size
    classifier, train_model, test_model = build(train, test, batch_size=batch_size, mode=args.mode)
    n_train_batches = len(train[0]) // batch_size
    n_test_batches = len(test[0]) // batch_size
    start = time.perf_counter()
    for epoch in range(1, args.epochs + 1):
        costs = [train_model(i) for i in range(n_train_batches)]
        test_error = numpy.mean([test_model(i) for i in range(n_test_batches)])
        print(f"epoch {epoch}: mean cost {numpy.mean(costs):.4f}, test error {100 * test_error:.2f} %")
    print(f"final test accuracy {1 - test_error:.4f} ({time.perf_counter() - start:.1f} s)")
    return 1 - test_error


if __name__ == "__main__":
    main()
