"""Issue 2's 'done when': gradients of composite expressions agree with central differences."""

from __future__ import annotations

import numpy as np

import theanine.tensor as T
from helpers import check_grad

RNG = np.random.default_rng(11)


def test_dense_layers_with_broadcast_bias():
    x, w1, b1, w2 = RNG.normal(size=(4, 3)), RNG.normal(size=(3, 5)), RNG.normal(size=(5,)), RNG.normal(size=(5, 2))
    check_grad(lambda x, w1, b1, w2: T.dot(T.tanh(T.dot(x, w1) + b1), w2), [x, w1, b1, w2])


def test_softmax_cross_entropy_with_advanced_indexing():
    labels = np.array([2, 0, 3], dtype="int32")

    def cost(z, w):
        p = T.nnet.softmax(T.dot(z, w))
        return -T.mean(T.log(p)[T.arange(3), T.constant(labels)])

    check_grad(cost, [RNG.normal(size=(3, 4)), RNG.normal(size=(4, 5))])


def test_reductions_and_broadcasting():
    check_grad(
        lambda x, r: T.max(x * r, axis=0) + T.mean(x, axis=1).sum() - T.var(x, axis=0) * T.prod(r),
        [RNG.normal(size=(3, 4)), RNG.uniform(0.5, 1.5, size=(1, 4))],
    )


def test_negative_step_slicing_and_set_subtensor():
    def f(x, y):
        flipped = x[::-1, 1::2]
        replaced = T.set_subtensor(flipped[0], y * 2.0)
        return T.inc_subtensor(replaced[:, -1:], T.exp(y[:1])) * x[:, ::-2]

    check_grad(f, [RNG.normal(size=(3, 4)), RNG.normal(size=(2,))])


def test_batched_dot_and_tensordot():
    check_grad(lambda a, b: T.batched_dot(a, b), [RNG.normal(size=(2, 3, 4)), RNG.normal(size=(2, 4, 5))])
    check_grad(
        lambda a, b: T.tensordot(a, b, axes=[[1, 2], [0, 1]]),
        [RNG.normal(size=(2, 3, 4)), RNG.normal(size=(3, 4, 5))],
    )
