"""T.nnet: activations, softmax and cross-entropies: values, types, stability, gradients."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest

import theanine
import theanine.tensor as T
from theanine.graph.evaluate import evaluate
from theanine.graph.ops.nnet import LogSoftmax, SelectClass, Sigmoid, Softmax
from theanine.graph.type import TensorType
from theanine.graph.var import constant, input_var
from tests.helpers import check_grad, run

RNG = np.random.default_rng(7)
SELU_ALPHA, SELU_SCALE = 1.6732632423543772848170429916717, 1.0507009873554804934193349852946


def rand(*shape, dtype="float64", scale=2.0):
    return (RNG.normal(size=shape) * scale).astype(dtype)


def scalar_map(fn):
    """An oracle applied element by element with Python's math module (not numpy's ufuncs)."""

    def oracle(x):
        return np.vectorize(fn, otypes=[np.float64])(x.astype("float64")).astype(x.dtype)

    return oracle


def stable_sigmoid(v):
    return 1 / (1 + math.exp(-v)) if v >= 0 else math.exp(v) / (1 + math.exp(v))


ACTIVATIONS = [
    ("sigmoid", T.nnet.sigmoid, stable_sigmoid),
    ("ultra_fast_sigmoid", T.nnet.ultra_fast_sigmoid, stable_sigmoid),
    ("softplus", T.nnet.softplus, lambda v: max(v, 0) + math.log1p(math.exp(-abs(v)))),
    ("relu", T.nnet.relu, lambda v: v if v > 0 else 0.0),
    ("leaky_relu", lambda x: T.nnet.relu(x, 0.1), lambda v: v if v > 0 else 0.1 * v),
    ("elu", T.nnet.elu, lambda v: v if v > 0 else math.expm1(v)),
    ("elu_alpha", lambda x: T.nnet.elu(x, 0.5), lambda v: v if v > 0 else 0.5 * math.expm1(v)),
    ("selu", T.nnet.selu, lambda v: SELU_SCALE * (v if v > 0 else SELU_ALPHA * math.expm1(v))),
    ("softsign", T.nnet.softsign, lambda v: v / (1 + abs(v))),
    ("hard_sigmoid", T.nnet.hard_sigmoid, lambda v: min(max(0.2 * v + 0.5, 0.0), 1.0)),
]


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("name, fn, oracle", ACTIVATIONS, ids=[a[0] for a in ACTIVATIONS])
def test_activation_values_dtype_and_shape(name, fn, oracle, dtype):
    x = rand(2, 3, 4, dtype=dtype, scale=4.0)
    value, out = run(fn, x)
    assert out.dtype == dtype and value.dtype == np.dtype(dtype)
    assert out.type.shape == (2, 3, 4)
    rtol = 1e-6 if dtype == "float32" else 1e-13
    np.testing.assert_allclose(value, scalar_map(oracle)(x), rtol=rtol, atol=rtol)


@pytest.mark.parametrize("name, fn, oracle", ACTIVATIONS, ids=[a[0] for a in ACTIVATIONS])
def test_activation_gradients(name, fn, oracle):
    x = rand(3, 4, scale=3.0)
    x[np.abs(x) < 1e-3] = 0.5  # keep central differences away from the kinks at 0
    x[np.abs(np.abs(x) - 2.5) < 1e-3] = 1.0  # and hard_sigmoid's at +-2.5
    check_grad(fn, [x])


@pytest.mark.parametrize("name, fn, oracle", ACTIVATIONS, ids=[a[0] for a in ACTIVATIONS])
def test_activations_are_finite_at_extreme_inputs(name, fn, oracle):
    x = np.array([-1000.0, -80.0, 0.5, 80.0, 1000.0], dtype="float32")
    xv = input_var(TensorType("float32", (5,)), "x")
    out = fn(xv)
    g = T.grad(T.sum(out), xv)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        value, grad = evaluate([out, g], {xv: x})
    assert np.all(np.isfinite(value)) and np.all(np.isfinite(grad))
    # The kernel itself never overflows (perform hides floating-point warnings, so call impl).
    with np.errstate(over="raise", invalid="raise", divide="raise"):
        out.op.impl(x)
    expected = scalar_map(oracle)(x.astype("float64")).astype("float32")
    np.testing.assert_allclose(value, expected, rtol=1e-6)


def test_sigmoid_and_softplus_limits():
    x = np.array([-1000.0, 1000.0])
    np.testing.assert_array_equal(run(T.nnet.sigmoid, x)[0], [0.0, 1.0])
    np.testing.assert_array_equal(run(T.nnet.softplus, x)[0], [0.0, 1000.0])
    assert isinstance(T.nnet.sigmoid(T.vector()).op, Sigmoid)


def test_activation_dtypes_for_integer_inputs():
    assert T.nnet.sigmoid(T.ivector()).dtype == "float64"
    assert T.nnet.sigmoid(T.bvector()).dtype == "float32"
    assert T.nnet.relu(T.ivector()).dtype == "int32"
    assert T.nnet.relu(T.ivector(), 0.5).dtype == "float64"
    value, _ = run(T.nnet.relu, np.array([-3, 0, 4], dtype="int32"))
    np.testing.assert_array_equal(value, [0, 0, 4])
    assert value.dtype == np.int32


def test_relu_and_elu_with_symbolic_alpha():
    x = rand(3, 4)
    alpha = np.array(0.3)
    value, _ = run(lambda v, a: T.nnet.relu(v, a), x, alpha)
    np.testing.assert_allclose(value, np.where(x > 0, x, 0.3 * x), rtol=1e-13)
    value, _ = run(lambda v, a: T.nnet.elu(v, a), x, alpha)
    np.testing.assert_allclose(value, np.where(x > 0, x, 0.3 * np.expm1(x)), rtol=1e-13)
    check_grad(lambda v, a: T.nnet.relu(v, a), [x, alpha])
    check_grad(lambda v, a: T.nnet.elu(v, a), [x, alpha])
    # A float32 input with a Python alpha stays float32.
    assert T.nnet.relu(T.fmatrix(), 0.2).dtype == "float32"


def np_softmax(x, axis=-1):
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_softmax_and_log_softmax_values(dtype):
    x = rand(3, 5, dtype=dtype)
    rtol = 1e-6 if dtype == "float32" else 1e-13
    for fn, oracle in [
        (T.nnet.softmax, lambda v: np.exp(v) / np.exp(v).sum(axis=1, keepdims=True)),
        (T.nnet.log_softmax, lambda v: v - np.log(np.exp(v).sum(axis=1, keepdims=True))),
        (T.nnet.logsoftmax, lambda v: v - np.log(np.exp(v).sum(axis=1, keepdims=True))),
    ]:
        value, out = run(fn, x)
        assert out.dtype == dtype and value.dtype == np.dtype(dtype) and out.type.shape == (3, 5)
        np.testing.assert_allclose(value, oracle(x.astype("float64")), rtol=rtol, atol=rtol)
    assert isinstance(T.nnet.softmax(T.matrix()).op, Softmax)
    assert isinstance(T.nnet.log_softmax(T.matrix()).op, LogSoftmax)
    assert T.nnet.logsoftmax is T.nnet.log_softmax


def test_softmax_axes_and_vectors():
    x = rand(2, 3, 4)
    value, out = run(T.nnet.softmax, x)
    np.testing.assert_allclose(value, np_softmax(x, -1), rtol=1e-13)
    value, out = run(lambda v: T.nnet.softmax(v, axis=1), x)
    np.testing.assert_allclose(value.sum(axis=1), np.ones((2, 4)), rtol=1e-13)
    np.testing.assert_allclose(value, np_softmax(x, 1), rtol=1e-13)
    # Theano 1.0 turns a vector into a one-row matrix; an explicit axis keeps the vector.
    v = rand(4)
    value, out = run(T.nnet.softmax, v)
    assert out.type.shape == (1, 4) and value.shape == (1, 4)
    np.testing.assert_allclose(value[0], np_softmax(v), rtol=1e-13)
    value, out = run(lambda t: T.nnet.softmax(t, axis=0), v)
    assert out.type.shape == (4,)
    np.testing.assert_allclose(value, np_softmax(v), rtol=1e-13)
    value, out = run(T.nnet.log_softmax, v)
    np.testing.assert_allclose(value, np.log(np_softmax(v))[None], rtol=1e-13)
    assert T.nnet.softmax(T.ivector()).dtype == "float64"
    with pytest.raises(ValueError, match="softmax: axis 2 is out of range for a 2-d input"):
        T.nnet.softmax(T.matrix(), axis=2)
    with pytest.raises(ValueError, match="softmax needs at least one dimension"):
        T.nnet.softmax(T.scalar("s"))


def test_softmax_gradients():
    x = rand(3, 4)
    check_grad(T.nnet.softmax, [x])
    check_grad(T.nnet.log_softmax, [x])
    check_grad(lambda v: T.nnet.softmax(v, axis=0), [x])
    check_grad(lambda v: T.nnet.log_softmax(v, axis=0), [x])
    check_grad(T.nnet.softmax, [rand(5)])
    check_grad(lambda v, b: T.nnet.softmax_with_bias(v, b), [x, rand(4)])


def test_softmax_stable_at_plus_minus_1000():
    big = np.array([[1000.0, -1000.0, 0.0, 1000.0], [-1000.0, -1000.0, -1000.0, -999.0]])
    value, _ = run(T.nnet.softmax, big)
    expected = [[0.5, 0, 0, 0.5], np_softmax(np.array([-1.0, -1, -1, 0]))]
    np.testing.assert_allclose(value, expected, rtol=1e-13)
    with np.errstate(over="raise", invalid="raise", divide="raise"):
        Softmax(1).perform(big)
        value = LogSoftmax(1).perform(big)
    assert np.all(np.isfinite(value))
    log2 = math.log(2)
    np.testing.assert_allclose(value[0], [-log2, -2000 - log2, -1000 - log2, -log2])
    # Gradients: finite, and equal to the closed forms s * (d - sum(d * s)) and d - s * sum(d).
    d = rand(2, 4)
    x = input_var(TensorType("float64", (2, 4)), "x")
    s = np_softmax(big)
    for fn, expected in [
        (T.nnet.softmax, s * (d - (d * s).sum(axis=1, keepdims=True))),
        (T.nnet.log_softmax, d - s * d.sum(axis=1, keepdims=True)),
    ]:
        (g,) = evaluate([T.grad(T.sum(fn(x) * constant(d)), x)], {x: big})
        assert np.all(np.isfinite(g))
        np.testing.assert_allclose(g, expected, rtol=1e-12, atol=1e-12)
    check_grad(T.nnet.softmax, [big], atol=1e-6)


def test_categorical_crossentropy_with_integer_labels():
    p = np_softmax(rand(4, 5))
    y = np.array([1, 4, 0, 4], dtype="int32")
    value, out = run(T.nnet.categorical_crossentropy, p, y)
    assert out.type.shape == (4,) and out.dtype == "float64"
    np.testing.assert_allclose(value, [-math.log(p[i, y[i]]) for i in range(4)], rtol=1e-13)
    value, out = run(T.nnet.categorical_crossentropy, p.astype("float32"), y)
    assert out.dtype == "float32" and value.dtype == np.float32
    assert isinstance(out.inputs[0].inputs[0].op, SelectClass)
    check_grad(lambda q: T.nnet.categorical_crossentropy(q, constant(y)), [p])
    # The second derivative goes through SelectClassGrad's own pullback.
    w = rand(4)
    def first_derivative(q):
        return T.grad(T.sum(T.nnet.categorical_crossentropy(q, constant(y)) * constant(w)), q)

    check_grad(first_derivative, [p])


def test_categorical_crossentropy_with_one_hot_matrix():
    p = np_softmax(rand(4, 5))
    y = np.array([1, 4, 0, 2])
    one_hot = np.eye(5)[y]
    value, out = run(T.nnet.categorical_crossentropy, p, one_hot)
    assert out.type.shape == (4,)
    np.testing.assert_allclose(value, -np.log(p[np.arange(4), y]), rtol=1e-13)
    soft = np_softmax(rand(4, 5))
    value, _ = run(T.nnet.categorical_crossentropy, p, soft)
    expected = [-sum(soft[i, j] * math.log(p[i, j]) for j in range(5)) for i in range(4)]
    np.testing.assert_allclose(value, expected)
    check_grad(T.nnet.categorical_crossentropy, [p, soft])


def test_categorical_crossentropy_errors():
    p = input_var(TensorType("float64", (4, 5)), "p")
    with pytest.raises(TypeError, match="class labels must be integers, got dtype float64"):
        T.nnet.categorical_crossentropy(p, T.dvector("y"))
    message = r"the distribution has shape \(4, 5\) but the labels have shape \(3,\)"
    with pytest.raises(ValueError, match=message):
        T.nnet.categorical_crossentropy(p, input_var(TensorType("int64", (3,)), "y"))
    with pytest.raises(TypeError, match="true_dist must be a distribution .* got coding_dist"):
        T.nnet.categorical_crossentropy(p, T.tensor3("t"))
    y = T.lvector("y")
    with pytest.raises(IndexError, match="class label 5 is out of range for 5 classes"):
        values = {p: np.full((4, 5), 0.2), y: np.array([0, 5, 1, 2])}
        evaluate([T.nnet.categorical_crossentropy(p, y)], values)


def test_classic_negative_log_likelihood_idiom():
    """The deeplearning.net logistic-regression cost, with advanced indexing."""
    x = T.matrix("x", dtype="float64")
    y = T.ivector("y")
    p = T.nnet.softmax(x)
    cost = -T.mean(T.log(p)[T.arange(y.shape[0]), y])
    xv, yv = rand(4, 3), np.array([2, 0, 1, 2], dtype="int32")
    s = np_softmax(xv)
    (value,) = evaluate([cost], {x: xv, y: yv})
    np.testing.assert_allclose(value, -np.mean(np.log(s[np.arange(4), yv])), rtol=1e-13)
    (g,) = evaluate([T.grad(cost, x)], {x: xv, y: yv})
    np.testing.assert_allclose(g, (s - np.eye(3)[yv]) / 4, rtol=1e-12, atol=1e-15)
    # The same cost through categorical_crossentropy.
    (value2,) = evaluate([T.mean(T.nnet.categorical_crossentropy(p, y))], {x: xv, y: yv})
    np.testing.assert_allclose(value2, value, rtol=1e-13)


def test_binary_crossentropy():
    o = 1 / (1 + np.exp(-rand(3, 4)))
    t = RNG.uniform(size=(3, 4))
    value, out = run(T.nnet.binary_crossentropy, o, t)
    assert out.type.shape == (3, 4) and out.dtype == "float64"
    expected = scalar_map(lambda v: 0.0)(o)
    for idx in np.ndindex(3, 4):
        expected[idx] = -(t[idx] * math.log(o[idx]) + (1 - t[idx]) * math.log(1 - o[idx]))
    np.testing.assert_allclose(value, expected, rtol=1e-13)
    value, out = run(T.nnet.binary_crossentropy, o.astype("float32"), t.astype("float32"))
    assert out.dtype == "float32"
    check_grad(T.nnet.binary_crossentropy, [o, t])


def test_sigmoid_binary_crossentropy_is_stable():
    logits = rand(3, 4)
    t = RNG.uniform(size=(3, 4))
    value, _ = run(T.nnet.sigmoid_binary_crossentropy, logits, t)
    reference, _ = run(lambda a, b: T.nnet.binary_crossentropy(T.nnet.sigmoid(a), b), logits, t)
    np.testing.assert_allclose(value, reference, rtol=1e-12)
    check_grad(T.nnet.sigmoid_binary_crossentropy, [logits, t])
    big = np.array([-1000.0, 1000.0, -1000.0, 1000.0])
    target = np.array([0.0, 1.0, 1.0, 0.0])
    x = input_var(TensorType("float64", (4,)), "x")
    loss = T.nnet.sigmoid_binary_crossentropy(x, constant(target))
    value, g = evaluate([loss, T.grad(T.sum(loss), x)], {x: big})
    np.testing.assert_allclose(value, [0.0, 0.0, 1000.0, 1000.0])
    np.testing.assert_allclose(g, [0.0, 0.0, -1.0, 1.0])


def test_crossentropy_softmax_1hot():
    x, b = rand(4, 5), rand(5)
    y = np.array([1, 4, 0, 4])
    nll, sm = evaluate(list(T.nnet.crossentropy_softmax_1hot(constant(x), constant(y))), {})
    s = np_softmax(x)
    np.testing.assert_allclose(sm, s, rtol=1e-13)
    np.testing.assert_allclose(nll, -np.log(s[np.arange(4), y]), rtol=1e-12)
    with_bias = T.nnet.crossentropy_softmax_1hot_with_bias(constant(x), constant(b), constant(y))
    nll_b, sm_b = evaluate(list(with_bias), {})
    np.testing.assert_allclose(sm_b, np_softmax(x + b), rtol=1e-13)
    np.testing.assert_allclose(nll_b, -np.log(np_softmax(x + b)[np.arange(4), y]), rtol=1e-12)
    big = np.array([[1000.0, -1000.0], [-1000.0, 1000.0]])
    labels = constant(np.array([1, 1]))
    nll, _ = evaluate(list(T.nnet.crossentropy_softmax_1hot(constant(big), labels)), {})
    np.testing.assert_allclose(nll, [2000.0, 0.0])
    check_grad(lambda a: T.nnet.crossentropy_softmax_1hot(a, constant(y))[0], [x])


def test_nnet_namespace():
    from theanine.tensor.nnet import log_softmax, sigmoid, softmax  # noqa: F401
    import theanine.tensor.nnet as nnet

    assert nnet is T.nnet and theanine.tensor.nnet is T.nnet
    names = (
        "sigmoid softplus relu elu selu softsign hard_sigmoid ultra_fast_sigmoid softmax "
        "log_softmax logsoftmax categorical_crossentropy binary_crossentropy "
        "sigmoid_binary_crossentropy"
    ).split()
    for name in names:
        assert callable(getattr(nnet, name)), name
    assert sigmoid is T.nnet.sigmoid
