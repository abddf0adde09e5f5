"""Snippets in the style of Theano's own tutorial, run with only the imports changed."""

from __future__ import annotations

import numpy
import pytest

import theanine as theano
import theanine.tensor as T
from theanine import In, function, pp, shared
from theanine.tensor.shared_randomstreams import RandomStreams


def test_adding_two_scalars_and_matrices():
    x = T.dscalar("x")
    y = T.dscalar("y")
    z = x + y
    f = function([x, y], z)
    assert f(2, 3) == numpy.array(5.0)
    assert numpy.allclose(z.eval({x: 16.3, y: 12.1}), 28.4)
    a, b = T.dmatrix("x"), T.dmatrix("y")
    g = function([a, b], a + b)
    assert numpy.array_equal(g([[1, 2], [3, 4]], [[10, 20], [30, 40]]), numpy.array([[11.0, 22.0], [33.0, 44.0]]))


def test_logistic_function_two_ways_and_several_outputs():
    x = T.dmatrix("x")
    s = 1 / (1 + T.exp(-x))
    s2 = (1 + T.tanh(x / 2)) / 2
    logistic = function([x], s)
    logistic2 = function([x], s2)
    value = [[0, 1], [-1, -2]]
    assert numpy.allclose(logistic(value), logistic2(value))
    a, b = T.dmatrices("a", "b")
    diff = a - b
    abs_diff = abs(diff)
    diff_squared = diff**2
    f = function([a, b], [diff, abs_diff, diff_squared])
    out = f([[1, 1], [1, 1]], [[0, 1], [2, 3]])
    assert [o.tolist() for o in out] == [[[1, 0], [-1, -2]], [[1, 0], [1, 2]], [[1, 0], [1, 4]]]


def test_default_values_and_names():
    x, y, w = T.dscalars("x", "y", "w")
    z = (x + y) * w
    f = function([x, In(y, value=1), In(w, value=2, name="w_by_name")], z)
    assert f(33) == 68
    assert f(33, 2) == 70
    assert f(33, 0, 1) == 33
    assert f(33, w_by_name=1) == 34
    assert f(33, w_by_name=1, y=0) == 33


def test_shared_accumulator_and_givens():
    state = shared(0)
    inc = T.iscalar("inc")
    accumulator = function([inc], state, updates=[(state, state + inc)])
    assert state.get_value() == 0
    assert accumulator(1) == 0
    assert state.get_value() == 1
    accumulator(300)
    assert state.get_value() == 301
    state.set_value(-1)
    accumulator(3)
    assert state.get_value() == 2
    decrementor = function([inc], state, updates=[(state, state - inc)])
    decrementor(2)
    assert state.get_value() == 0
    fn_of_state = state * 2 + inc
    foo = T.scalar(dtype=state.dtype)
    skip_shared = function([inc, foo], fn_of_state, givens=[(state, foo)])
    assert skip_shared(1, 3) == 7
    assert state.get_value() == 0


def test_random_streams():
    srng = RandomStreams(seed=234)
    rv_u = srng.uniform((2, 2))
    rv_n = srng.normal((2, 2))
    f = function([], rv_u)
    g = function([], rv_n, no_default_updates=True)
    nearly_zeros = function([], rv_u + rv_u - 2 * rv_u)
    f_val0, f_val1 = f(), f()
    assert not numpy.array_equal(f_val0, f_val1)
    assert numpy.array_equal(g(), g())
    assert numpy.allclose(nearly_zeros(), 0)
    srng.seed(902340)


def test_derivatives():
    x = T.dscalar("x")
    y = x**2
    gy = T.grad(y, x)
    assert "x" in pp(gy)
    f = function([x], gy)
    assert f(4) == 8.0 and f(94.2) == pytest.approx(188.4)
    xm = T.dmatrix("x")
    s = T.sum(1 / (1 + T.exp(-xm)))
    gs = T.grad(s, xm)
    dlogistic = function([xm], gs)
    expected = [[0.25, 0.19661193], [0.19661193, 0.10499359]]
    assert numpy.allclose(dlogistic([[0, 1], [-1, -2]]), expected)


def test_rop_and_lop():
    W = T.dmatrix("W")
    V = T.dmatrix("V")
    x = T.dvector("x")
    y = T.dot(x, W)
    JV = T.Rop(y, W, V)
    f = function([W, V, x], JV)
    assert numpy.allclose(f([[1, 1], [1, 1]], [[2, 2], [2, 2]], [0, 1]), [2.0, 2.0])
    v = T.dvector("v")
    VJ = T.Lop(y, W, v)
    g = function([v, x], VJ)
    assert numpy.allclose(g([2, 2], [0, 1]), [[0.0, 0.0], [2.0, 2.0]])


def test_logistic_regression_training_loop():
    rng = numpy.random.default_rng(0)
    N, feats = 40, 7
    D = (rng.normal(size=(N, feats)), rng.integers(size=N, low=0, high=2))
    x = T.dmatrix("x")
    y = T.dvector("y")
    w = shared(rng.normal(size=feats), name="w")
    b = shared(0.0, name="b")
    p_1 = 1 / (1 + T.exp(-T.dot(x, w) - b))
    prediction = p_1 > 0.5
    xent = -y * T.log(p_1) - (1 - y) * T.log(1 - p_1)
    cost = xent.mean() + 0.01 * (w**2).sum()
    gw, gb = T.grad(cost, [w, b])
    train = function([x, y], outputs=[prediction, xent], updates=((w, w - 0.1 * gw), (b, b - 0.1 * gb)))
    predict = function([x], prediction)
    first = None
    for _ in range(200):
        pred, err = train(D[0], D[1])
        first = err.mean() if first is None else first
    assert err.mean() < first
    assert predict(D[0]).dtype == bool


def test_config_and_casting():
    assert theano.config.floatX in ("float32", "float64")
    x = T.matrix("x")
    assert x.dtype == theano.config.floatX
    f = function([x], T.cast(x, "int32"))
    assert f(numpy.ones((2, 2), dtype=theano.config.floatX)).dtype == numpy.int32
    with pytest.raises(TypeError, match="allow_input_downcast"):
        f(numpy.ones((2, 2), dtype="float64") * 0.1) if theano.config.floatX == "float32" else f("x")
    g = function([x], x * 2, allow_input_downcast=True)
    assert g(numpy.ones((1, 1), dtype="float64")).dtype == theano.config.floatX
