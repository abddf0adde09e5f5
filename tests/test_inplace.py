"""Buffer reuse in mode py: an elementwise node writes over a fresh intermediate that nothing reads later."""

from __future__ import annotations

import numpy as np

import theanine
import theanine.tensor as T


def _donors(f):
    return [(type(step[0].op).__name__, step[4]) for step in f._plan.steps if step[4] >= 0]


def test_elementwise_after_a_dot_reuses_its_buffer_and_values_match():
    x, w = T.dmatrix("x"), T.dmatrix("w")
    f = theanine.function([x, w], T.tanh(T.dot(x, w)) * 2.0 + 1.0)
    assert _donors(f), "the fused node should write over the dot's result"
    xv, wv = np.random.default_rng(0).normal(size=(3, 4)), np.random.default_rng(1).normal(size=(4, 5))
    np.testing.assert_allclose(f(xv, wv), np.tanh(xv @ wv) * 2 + 1)


def test_never_in_place_on_inputs_shared_values_or_values_read_later():
    x = T.dmatrix("x")
    s = theanine.shared(np.ones((2, 3)), name="s")
    d = T.dot(x, T.ones((3, 3)))
    f = theanine.function([x], [T.exp(x) + s, T.exp(d) + d.sum()])
    # x is an input, s is shared, and d is read twice: no step may overwrite them
    xv = np.arange(6.0).reshape(2, 3) / 10
    before = xv.copy()
    first, second = f(xv)
    np.testing.assert_array_equal(xv, before)
    np.testing.assert_array_equal(s.get_value(), np.ones((2, 3)))
    dv = xv @ np.ones((3, 3))
    np.testing.assert_allclose(first, np.exp(xv) + 1)
    np.testing.assert_allclose(second, np.exp(dv) + dv.sum())


def test_a_broadcast_donor_is_not_overwritten():
    x = T.dmatrix("x")
    r = T.dot(T.ones((1, 2)), x)  # a (1, n) row, broadcast against x
    f = theanine.function([x], T.exp(T.addbroadcast(r, 0)) + x)
    xv = np.random.default_rng(2).normal(size=(2, 3))
    np.testing.assert_allclose(f(xv), np.exp(np.ones((1, 2)) @ xv) + xv)


def test_an_sgd_update_writes_into_the_shared_storage():
    w = theanine.shared(np.ones((3, 2)), name="w")
    x = T.dmatrix("x")
    cost = T.sum(T.tanh(T.dot(x, w)))
    f = theanine.function([x], cost, updates=[(w, w * 0.9 - 0.1 * T.grad(cost, w))])
    storage = w.get_value(borrow=True)
    xv = np.random.default_rng(4).normal(size=(4, 3))
    expected = np.ones((3, 2)) * 0.9 - 0.1 * xv.T @ (1 - np.tanh(xv @ np.ones((3, 2))) ** 2)
    f(xv)
    assert w.get_value(borrow=True) is storage, "the new value should land in the old buffer"
    np.testing.assert_allclose(w.get_value(), expected)


def test_updates_that_read_each_other_stay_correct():
    a = theanine.shared(np.array([1.0, 2.0]), name="a")
    b = theanine.shared(np.array([10.0, 20.0]), name="b")
    f = theanine.function([], [], updates=[(a, a + b), (b, b * a)])
    f()
    np.testing.assert_array_equal(a.get_value(), [11.0, 22.0])
    np.testing.assert_array_equal(b.get_value(), [10.0, 40.0])


def test_an_output_viewing_the_old_value_keeps_it():
    w = theanine.shared(np.arange(4.0), name="w")
    f = theanine.function([], w[::-1], updates=[(w, w + 1.0)])
    np.testing.assert_array_equal(f(), [3.0, 2.0, 1.0, 0.0])
    np.testing.assert_array_equal(w.get_value(), [1.0, 2.0, 3.0, 4.0])
