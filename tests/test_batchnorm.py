"""Batch normalization: T.nnet.batch_normalization(_train/_test), BatchNormLayer, averages."""

from __future__ import annotations

import numpy as np
import pytest

import theanine
import theanine.layers as L
import theanine.tensor as T
from tests.helpers import check_grad, run

RNG = np.random.default_rng(3)


def test_batch_normalization_formula_and_gradient():
    x, g, b = RNG.normal(size=(4, 3)), RNG.normal(size=(1, 3)), RNG.normal(size=(1, 3))
    m, s = RNG.normal(size=(1, 3)), RNG.uniform(0.5, 2, size=(1, 3))
    for mode in ("low_mem", "high_mem"):
        value, out = run(lambda *a: T.nnet.batch_normalization(*a, mode=mode), x, g, b, m, s)
        np.testing.assert_allclose(value, (x - m) * (g / s) + b, rtol=1e-12)
        assert out.type.shape == (4, 3)
    check_grad(T.nnet.batch_normalization, [x, g, b, m, s])
    with pytest.raises(ValueError, match="mode must be 'low_mem' or 'high_mem', got 'fast'"):
        T.nnet.batch_normalization(*map(T.constant, (x, g, b, m, s)), mode="fast")


def numpy_train(x, gamma, beta, axes, eps, factor, running_mean, running_var):
    mean = x.mean(axis=axes, keepdims=True)
    var = x.var(axis=axes, keepdims=True)
    invstd = 1 / np.sqrt(var + eps)
    count = np.prod([x.shape[a] for a in axes])
    new_mean = running_mean * (1 - factor) + mean * factor
    new_var = running_var * (1 - factor) + var * count / (count - 1) * factor
    return (x - mean) * gamma * invstd + beta, mean, invstd, new_mean, new_var


@pytest.mark.parametrize(
    "axes, resolved", [("per-activation", (0,)), ("spatial", (0, 2, 3)), ((0, 3), (0, 3))]
)
def test_batch_normalization_train_matches_numpy(axes, resolved):
    x = RNG.normal(size=(4, 3, 5, 2)) * 2 + 1
    pshape = tuple(1 if a in resolved else n for a, n in enumerate(x.shape))
    gamma, beta = RNG.normal(size=pshape), RNG.normal(size=pshape)
    rm, rv = RNG.normal(size=pshape), RNG.uniform(1, 2, size=pshape)
    values, _ = zip(*[
        run(lambda *a, k=k: T.nnet.bn.batch_normalization_train(
            a[0], a[1], a[2], axes, 1e-3, 0.2, a[3], a[4])[k], x, gamma, beta, rm, rv)
        for k in range(5)
    ])
    expected = numpy_train(x, gamma, beta, resolved, 1e-3, 0.2, rm, rv)
    for got, want in zip(values, expected):
        np.testing.assert_allclose(got, want, rtol=1e-10)
    constants = map(T.constant, (x, gamma, beta))
    out, mean, invstd = T.nnet.batch_normalization_train(*constants, axes=axes)
    assert mean.type.shape == pshape and out.type.shape == x.shape


def test_batch_normalization_train_with_reduced_parameters_and_gradient():
    x = RNG.normal(size=(5, 3, 2))
    gamma, beta = RNG.normal(size=(3,)), RNG.normal(size=(3,))
    train = T.nnet.batch_normalization_train
    value, mean = run(lambda a, g, b: train(a, g, b, "spatial")[1], x, gamma, beta)
    assert mean.type.shape == (3,)
    np.testing.assert_allclose(value, x.mean(axis=(0, 2)), rtol=1e-12)
    check_grad(lambda a, g, b: train(a, g, b, "spatial")[0], [x, gamma, beta])
    with pytest.raises(ValueError, match="parameters must have 3 dimensions .* or 1"):
        T.nnet.batch_normalization_train(T.tensor3(), T.matrix(), T.matrix(), "spatial")
    with pytest.raises(ValueError, match="axes must be 'per-activation', 'spatial'"):
        T.nnet.batch_normalization_train(T.tensor3(), T.tensor3(), T.tensor3(), "channel")
    with pytest.raises(ValueError, match="both running_mean and running_var"):
        train(T.matrix(), T.matrix(), T.matrix(), running_mean=T.matrix())


def test_batch_normalization_test_matches_numpy():
    x = RNG.normal(size=(4, 3))
    g, b, m = RNG.normal(size=(3, 3))
    v = RNG.uniform(1, 2, size=(3,))
    value, _ = run(lambda *a: T.nnet.bn.batch_normalization_test(*a, epsilon=1e-2), x, g, b, m, v)
    np.testing.assert_allclose(value, (x - m) * g / np.sqrt(v + 1e-2) + b, rtol=1e-12)


# --- BatchNormLayer -------------------------------------------------------------------------------


def test_layer_params_shapes_and_tags():
    layer = L.BatchNormLayer(L.InputLayer((None, 3, 5, 4)), name="bn")
    assert layer.axes == (0, 2, 3) and layer.output_shape == (None, 3, 5, 4)
    names = lambda ps: [p.name for p in ps]  # noqa: E731
    assert names(layer.get_params()) == ["bn.beta", "bn.gamma", "bn.mean", "bn.inv_std"]
    assert names(layer.get_params(trainable=True)) == ["bn.beta", "bn.gamma"]
    assert names(layer.get_params(regularizable=True)) == ["bn.gamma"]
    assert all(p.get_value().shape == (3,) for p in layer.get_params())
    dense = L.BatchNormLayer(L.InputLayer((None, 7)), axes=0)
    assert dense.gamma.get_value().shape == (7,)
    with pytest.raises(ValueError, match="needs known sizes on every axis it does not normalize"):
        L.BatchNormLayer(L.InputLayer((None, None, 5)))


def test_layer_training_and_deterministic_outputs_and_running_averages():
    l_in = L.InputLayer((None, 3, 5, 4))
    layer = L.BatchNormLayer(l_in, alpha=0.25, epsilon=1e-3)
    layer.beta.set_value(np.array([0.5, -1, 2], dtype="float32"))
    layer.gamma.set_value(np.array([2, 1, 0.5], dtype="float32"))
    mean0 = np.array([0.1, 0.2, 0.3], dtype="float32")
    inv0 = np.array([1.5, 0.5, 2.0], dtype="float32")
    layer.mean.set_value(mean0)
    layer.inv_std.set_value(inv0)
    train = theanine.function([l_in.input_var], L.get_output(layer), mode="py")
    test = theanine.function([l_in.input_var], L.get_output(layer, deterministic=True), mode="py")
    x = (RNG.normal(size=(6, 3, 5, 4)) * 3 + 2).astype("float32")
    shaped = lambda v: v.reshape(1, 3, 1, 1)  # noqa: E731
    beta, gamma = shaped(layer.beta.get_value()), shaped(layer.gamma.get_value())

    got = test(x)  # deterministic: stored statistics, no update
    np.testing.assert_allclose(got, (x - shaped(mean0)) * gamma * shaped(inv0) + beta, rtol=1e-5)
    np.testing.assert_array_equal(layer.mean.get_value(), mean0)

    got = train(x)
    batch_mean = x.mean(axis=(0, 2, 3))
    batch_inv = 1 / np.sqrt(x.var(axis=(0, 2, 3)) + 1e-3)
    expected = (x - shaped(batch_mean)) * gamma * shaped(batch_inv) + beta
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(layer.mean.get_value(), 0.75 * mean0 + 0.25 * batch_mean, rtol=1e-5)
    np.testing.assert_allclose(layer.inv_std.get_value(), 0.75 * inv0 + 0.25 * batch_inv, rtol=1e-5)
    train(x)  # a second step moves them again
    twice = 0.75 * (0.75 * mean0 + 0.25 * batch_mean) + 0.25 * batch_mean
    np.testing.assert_allclose(layer.mean.get_value(), twice, rtol=1e-5)
    # the deterministic function now sees the updated averages
    got = test(x)
    stored = (x - shaped(layer.mean.get_value())) * gamma * shaped(layer.inv_std.get_value()) + beta
    np.testing.assert_allclose(got, stored, rtol=1e-5)


def test_layer_flags_use_and_update_averages():
    l_in = L.InputLayer((None, 4))
    layer = L.BatchNormLayer(l_in)
    x = RNG.normal(size=(8, 4)).astype("float32")
    out = L.get_output(layer, batch_norm_use_averages=True, batch_norm_update_averages=True)
    f = theanine.function([l_in.input_var], out, mode="py")
    np.testing.assert_allclose(f(x), x, rtol=1e-6)  # stored mean 0, inv_std 1, gamma 1, beta 0
    np.testing.assert_allclose(layer.mean.get_value(), 0.1 * x.mean(axis=0), rtol=1e-5)
    before = layer.mean.get_value()
    out = L.get_output(layer, batch_norm_update_averages=False)
    theanine.function([l_in.input_var], out, mode="py")(x)
    np.testing.assert_array_equal(layer.mean.get_value(), before)


def test_layer_gradients_reach_beta_gamma_and_input():
    l_in = L.InputLayer((None, 3))
    layer = L.BatchNormLayer(l_in)
    weights = T.constant(RNG.normal(size=(5, 3)).astype("float32"))
    loss = (L.get_output(layer) * weights).sum()
    grads = theanine.grad(loss, [layer.beta, layer.gamma, l_in.input_var])
    f = theanine.function([l_in.input_var], grads, mode="py")
    x = RNG.normal(size=(5, 3)).astype("float32")
    gb, gg, gx = f(x)
    w = weights.data
    normalized = (x - x.mean(0)) / np.sqrt(x.var(0) + 1e-4)
    np.testing.assert_allclose(gb, w.sum(0), rtol=1e-5)
    np.testing.assert_allclose(gg, (w * normalized).sum(0), rtol=1e-4)
    assert gx.shape == (5, 3) and np.allclose(gx.sum(0), 0, atol=1e-4)  # shifts cancel


def test_batch_norm_helper_moves_nonlinearity_and_drops_bias():
    l_in = L.InputLayer((None, 6))
    dense = L.DenseLayer(l_in, 4, name="fc", nonlinearity=L.nonlinearities.tanh)
    top = L.batch_norm(dense)
    assert isinstance(top, L.NonlinearityLayer) and top.nonlinearity is L.nonlinearities.tanh
    assert top.name == "fc_bn_nonlin" and top.input_layer.name == "fc_bn"
    assert dense.b is None and dense.nonlinearity is L.nonlinearities.identity
    names = [p.name for p in L.get_all_params(top, trainable=True)]
    assert names == ["fc.W", "fc_bn.beta", "fc_bn.gamma"]
