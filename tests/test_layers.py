"""theanine.layers: layer shapes and values, parameters and tags, helpers, init, training."""

from __future__ import annotations

import doctest
import importlib

import numpy as np
import pytest

import theanine
import theanine.layers as lasagne
import theanine.tensor as T
from theanine.layers import (
    BiasLayer, ConcatLayer, DenseLayer, DimshuffleLayer, DropoutLayer, ElemwiseMergeLayer,
    ElemwiseSumLayer, EmbeddingLayer, ExpressionLayer, FlattenLayer, GaussianNoiseLayer, InputLayer,
    NonlinearityLayer, PadLayer, ReshapeLayer, ScaleLayer, SliceLayer, get_all_layers,
    get_all_param_values, get_all_params, get_output, get_output_shape, set_all_param_values,
)
from theanine.layers import init, nonlinearities

RNG = np.random.default_rng(0)


def f32(*shape):
    return RNG.normal(size=shape).astype("float32")


def value_of(layer, x_value, input_layer=None, **kwargs):
    """Evaluate `get_output(layer)` for one input array."""
    out = get_output(layer, **kwargs)
    return out.eval({(input_layer or get_all_layers(layer)[0]).input_var: x_value})


# --- layer output shapes, parameter shapes and values -------------------------------------------


def test_input_layer_shape_and_variable():
    l_in = InputLayer((None, 1, 5), name="img")
    assert l_in.output_shape == (None, 1, 5)
    assert l_in.input_var.ndim == 3 and l_in.input_var.dtype == theanine.config.floatX
    assert l_in.input_var.type.shape == (None, 1, None)  # only size-1 axes are static, as Lasagne
    assert l_in.input_var.name == "img.input"
    assert get_output(l_in) is l_in.input_var


def test_input_layer_errors():
    message = "shape \\(None, 3\\) has 2 dimensions but input_var .* has 3"
    with pytest.raises(ValueError, match=message):
        InputLayer((None, 3), input_var=T.tensor3("x"))
    with pytest.raises(ValueError, match="positive int or None, got \\(0, 3\\)"):
        InputLayer((0, 3))


def test_dense_layer_shapes_values_and_tags():
    l_in = InputLayer((None, 3, 4))
    layer = DenseLayer(l_in, num_units=5, name="hid")
    assert layer.output_shape == (None, 5)
    assert layer.W.get_value().shape == (12, 5) and layer.b.get_value().shape == (5,)
    assert layer.W.name == "hid.W" and layer.b.name == "hid.b"
    assert layer.params[layer.W] == {"trainable", "regularizable"}
    assert layer.params[layer.b] == {"trainable"}
    x = f32(2, 3, 4)
    expected = np.maximum(x.reshape(2, 12) @ layer.W.get_value() + layer.b.get_value(), 0)
    out = value_of(layer, x)
    assert out.dtype == np.float32
    np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-6)


def test_dense_layer_num_leading_axes_and_no_bias():
    l_in = InputLayer((None, 6, 4))
    layer = DenseLayer(l_in, 3, num_leading_axes=2, b=None, nonlinearity=None)
    assert layer.output_shape == (None, 6, 3)
    assert layer.b is None and layer.W.get_value().shape == (4, 3)
    x = f32(2, 6, 4)
    np.testing.assert_allclose(value_of(layer, x), x @ layer.W.get_value(), rtol=1e-5, atol=1e-6)
    layer = DenseLayer(InputLayer((None, 6, 4)), 3, num_leading_axes=-1)
    assert layer.output_shape == (None, 6, 3)


def test_dense_layer_errors():
    with pytest.raises(ValueError, match="num_leading_axes=2 for a 2-d input .* no trailing axes"):
        DenseLayer(InputLayer((None, 4)), 3, num_leading_axes=2)
    with pytest.raises(ValueError, match="num_leading_axes=-3 .* more trailing axes"):
        DenseLayer(InputLayer((None, 4)), 3, num_leading_axes=-3)
    with pytest.raises(ValueError, match="fixed input size .* \\(None, None\\)"):
        DenseLayer(InputLayer((None, None)), 3)


def test_nonlinearity_bias_scale_layers():
    l_in = InputLayer((None, 3, 5, 6))
    x = f32(2, 3, 5, 6)
    tanh = NonlinearityLayer(l_in, nonlinearities.tanh)
    np.testing.assert_allclose(value_of(tanh, x), np.tanh(x), rtol=1e-6)
    bias = BiasLayer(l_in, b=init.Normal(1.0))
    assert bias.b.get_value().shape == (3,) and bias.params[bias.b] == {"trainable"}
    expected = x + bias.b.get_value()[None, :, None, None]
    np.testing.assert_allclose(value_of(bias, x), expected, rtol=1e-6)
    scale = ScaleLayer(l_in, scales=init.Normal(1.0), shared_axes=(0, 1))
    assert scale.scales.get_value().shape == (5, 6)
    expected = x * scale.scales.get_value()[None, None]
    np.testing.assert_allclose(value_of(scale, x), expected, rtol=1e-6)
    with pytest.raises(ValueError, match="BiasLayer: b needs fixed sizes .* \\(None, None\\)"):
        BiasLayer(InputLayer((None, None)))


def test_expression_layer():
    l_in = InputLayer((None, 3, 4))
    layer = ExpressionLayer(l_in, lambda x: x.sum(axis=1), output_shape="auto")
    assert layer.output_shape == (None, 4)
    given = ExpressionLayer(l_in, lambda x: x, output_shape=lambda s: s[:2])
    assert given.output_shape == (None, 3)
    x = f32(2, 3, 4)
    np.testing.assert_allclose(value_of(layer, x), x.sum(axis=1), rtol=1e-5)


def test_reshape_layer():
    l_in = InputLayer((None, 6, 4))
    layer = ReshapeLayer(l_in, ([0], 2, -1))
    assert layer.output_shape == (None, 2, 12)
    x = f32(5, 6, 4)
    out = value_of(layer, x)
    np.testing.assert_array_equal(out, x.reshape(5, 2, 12))
    assert ReshapeLayer(InputLayer((2, 6, 4)), (-1, 3)).output_shape == (16, 3)
    assert ReshapeLayer(l_in, (-1, 3)).output_shape == (None, 3)
    assert ReshapeLayer(l_in, ([0], [2], [1])).output_shape == (None, 4, 6)


def test_reshape_layer_errors():
    l_in = InputLayer((None, 6, 4))
    with pytest.raises(ValueError, match="refers to \\[3\\] but the input shape .* has 3 axes"):
        ReshapeLayer(l_in, ([0], [3]))
    with pytest.raises(ValueError, match="more than one -1"):
        ReshapeLayer(l_in, (-1, -1))
    message = "\\(2, 6, 4\\) \\(48 values\\) cannot be reshaped to \\(5, 10\\)"
    with pytest.raises(ValueError, match=message):
        ReshapeLayer(InputLayer((2, 6, 4)), (5, 10))
    with pytest.raises(ValueError, match="positive ints, -1 or \\[i\\], got 'a'"):
        ReshapeLayer(l_in, ("a", 3))


def test_flatten_and_dimshuffle_layers():
    l_in = InputLayer((None, 3, 4, 5))
    x = f32(2, 3, 4, 5)
    flat = FlattenLayer(l_in)
    assert flat.output_shape == (None, 60)
    np.testing.assert_array_equal(value_of(flat, x), x.reshape(2, 60))
    flat3 = FlattenLayer(l_in, outdim=3)
    assert flat3.output_shape == (None, 3, 20)
    np.testing.assert_array_equal(value_of(flat3, x), x.reshape(2, 3, 20))
    with pytest.raises(ValueError, match="outdim must be >= 1, got 0"):
        FlattenLayer(l_in, outdim=0)
    shuffle = DimshuffleLayer(l_in, (3, "x", 0, 2, 1))
    assert shuffle.output_shape == (5, 1, None, 4, 3)
    np.testing.assert_array_equal(value_of(shuffle, x), x.transpose(3, 0, 2, 1)[:, None])
    with pytest.raises(ValueError, match="drops axis 1 of size 3"):
        DimshuffleLayer(l_in, (0, 2, 3))
    with pytest.raises(ValueError, match="uses an input axis twice or more"):
        DimshuffleLayer(l_in, (0, 0, 1, 2))


def test_slice_layer():
    l_in = InputLayer((None, 7, 5))
    x = f32(2, 7, 5)
    layer = SliceLayer(l_in, slice(1, 6, 2), axis=1)
    assert layer.output_shape == (None, 3, 5)
    np.testing.assert_array_equal(value_of(layer, x), x[:, 1:6:2])
    last = SliceLayer(l_in, -1)
    assert last.output_shape == (None, 7)
    np.testing.assert_array_equal(value_of(last, x), x[..., -1])


def test_concat_and_elemwise_merge_layers():
    a, b = InputLayer((None, 3, 2)), InputLayer((4, 5, 2))
    concat = ConcatLayer([a, b], axis=1)
    assert concat.output_shape == (4, 8, 2)
    xa, xb = f32(4, 3, 2), f32(4, 5, 2)
    out = get_output(concat).eval({a.input_var: xa, b.input_var: xb})
    np.testing.assert_array_equal(out, np.concatenate([xa, xb], axis=1))
    assert ConcatLayer([a, b], axis=-2).output_shape == (4, 8, 2)
    with pytest.raises(ValueError, match="ConcatLayer .*axis 1.* disagree"):
        ConcatLayer([a, b], axis=0)
    c, d = InputLayer((None, 3)), InputLayer((2, 3))
    xc, xd = f32(2, 3), f32(2, 3)
    total = ElemwiseSumLayer([c, d], coeffs=[2, -1])
    assert total.output_shape == (2, 3)
    out = get_output(total).eval({c.input_var: xc, d.input_var: xd})
    np.testing.assert_allclose(out, 2 * xc - xd, rtol=1e-6)
    biggest = ElemwiseMergeLayer([c, d], T.maximum)
    out = get_output(biggest).eval({c.input_var: xc, d.input_var: xd})
    np.testing.assert_array_equal(out, np.maximum(xc, xd))
    with pytest.raises(ValueError, match="got 3 coeffs for 2 inputs"):
        ElemwiseSumLayer([c, d], coeffs=[1, 2, 3])
    with pytest.raises(ValueError, match="ElemwiseSumLayer, axis 1.* disagree"):
        ElemwiseSumLayer([c, InputLayer((2, 4))])


def test_embedding_layer():
    l_in = InputLayer((None, 6), input_var=T.imatrix("idx"))
    layer = EmbeddingLayer(l_in, input_size=10, output_size=4)
    assert layer.output_shape == (None, 6, 4) and layer.W.get_value().shape == (10, 4)
    idx = RNG.integers(0, 10, size=(3, 6)).astype("int32")
    np.testing.assert_array_equal(value_of(layer, idx), layer.W.get_value()[idx])
    with pytest.raises(TypeError, match="EmbeddingLayer needs integer indices, got .* float32"):
        get_output(EmbeddingLayer(InputLayer((None, 6)), 10, 4))


# --- parameters: add_param specs, tags, values ----------------------------------------------------


def test_add_param_accepts_arrays_shared_and_callables():
    l_in = InputLayer((None, 3))
    w = np.arange(12, dtype="float32").reshape(3, 4)
    assert np.array_equal(DenseLayer(l_in, 4, W=w).W.get_value(), w)
    shared_w = theanine.shared(w, name="mine")
    assert DenseLayer(l_in, 4, W=shared_w).W is shared_w
    called = []
    layer = DenseLayer(l_in, 4, W=lambda shape: called.append(shape) or np.ones(shape, "float32"))
    assert called == [(3, 4)] and layer.W.get_value().sum() == 12
    message = "'W' expects shape \\(3, 4\\), the given array gives shape \\(4, 3\\)"
    with pytest.raises(ValueError, match=message):
        DenseLayer(l_in, 4, W=w.T)
    message = "expects shape \\(3, 5\\), the shared variable mine has shape \\(3, 4\\)"
    with pytest.raises(ValueError, match=message):
        DenseLayer(l_in, 5, W=shared_w)
    with pytest.raises(ValueError, match="expects a 1-d variable .* got 2-d"):
        DenseLayer(l_in, 4, b=T.matrix())
    with pytest.raises(TypeError, match="expected a numpy array, a shared variable.* got str"):
        DenseLayer(l_in, 4, W="glorot")


def test_get_all_layers_order_and_params_with_tags():
    l_in = InputLayer((None, 4))
    h1 = DenseLayer(l_in, 6)
    h2 = DenseLayer(l_in, 5, b=None)
    merged = ConcatLayer([h1, h2])
    out = DenseLayer(merged, 3)
    assert get_all_layers(out) == [l_in, h1, h2, merged, out]
    assert get_all_layers([h2, out]) == [l_in, h2, h1, merged, out]
    assert get_all_layers(out, treat_as_input=[merged]) == [merged, out]
    assert get_all_params(out) == [h1.W, h1.b, h2.W, out.W, out.b]
    assert get_all_params(out, regularizable=True) == [h1.W, h2.W, out.W]
    assert get_all_params(out, regularizable=False) == [h1.b, out.b]
    assert get_all_params(out, trainable=True) == get_all_params(out)
    h1.params[h1.W].discard("trainable")
    assert get_all_params(out, trainable=True) == [h1.b, h2.W, out.W, out.b]
    assert lasagne.layers.count_params(out) == 4 * 6 + 6 + 4 * 5 + 11 * 3 + 3


def test_param_values_round_trip_and_errors():
    l_in = InputLayer((None, 4))
    net = DenseLayer(DenseLayer(l_in, 6, name="h"), 3, name="out")
    values = get_all_param_values(net)
    assert [v.shape for v in values] == [(4, 6), (6,), (6, 3), (3,)]
    new = [np.full(v.shape, k, dtype="float32") for k, v in enumerate(values)]
    set_all_param_values(net, new)
    for got, want in zip(get_all_param_values(net), new):
        np.testing.assert_array_equal(got, want)
    new[0][0, 0] = 99  # the values were copied, not aliased
    assert get_all_param_values(net)[0][0, 0] == 0
    with pytest.raises(ValueError, match="got 3 values for 4 parameters"):
        set_all_param_values(net, new[:3])
    wrong = [new[0], new[1], new[2].T, new[3]]
    message = "parameter 2 \\(out.W\\) has shape \\(6, 3\\), the value to set has shape \\(3, 6\\)"
    with pytest.raises(ValueError, match=message):
        set_all_param_values(net, wrong)
    np.testing.assert_array_equal(get_all_param_values(net)[0], np.zeros((4, 6)))  # nothing changed


def test_get_output_with_substituted_inputs_and_shapes():
    l_in = InputLayer((None, 4))
    net = DenseLayer(l_in, 3, nonlinearity=None)
    x = f32(2, 4)
    expected = x @ net.W.get_value() + net.b.get_value()
    other = T.matrix("other")
    np.testing.assert_allclose(get_output(net, other).eval({other: x}), expected, rtol=1e-5)
    np.testing.assert_allclose(get_output(net, {l_in: x}).eval(), expected, rtol=1e-5)
    np.testing.assert_allclose(get_output([net, l_in], x)[0].eval(), expected, rtol=1e-5)
    assert get_output_shape(net) == (None, 3)
    assert get_output_shape(FlattenLayer(InputLayer((None, 3, 4))), (2, 5, 6)) == (2, 30)
    a, b = InputLayer((None, 2)), InputLayer((None, 3))
    with pytest.raises(ValueError, match="one input expression for a network with 2 input layers"):
        get_output(ConcatLayer([a, b]), x)
    with pytest.warns(UserWarning, match="unused keyword arguments: \\['bogus'\\]"):
        get_output(net, bogus=True)


# --- nonlinearities and initializers --------------------------------------------------------------


def test_nonlinearities_against_numpy():
    x_value = np.linspace(-3, 3, 12).reshape(3, 4).astype("float64")
    x = T.dmatrix("x")
    e = np.exp(x_value - x_value.max(axis=1, keepdims=True))
    cases = {
        "sigmoid": 1 / (1 + np.exp(-x_value)),
        "softmax": e / e.sum(axis=1, keepdims=True),
        "tanh": np.tanh(x_value),
        "rectify": np.maximum(x_value, 0),
        "leaky_rectify": np.where(x_value > 0, x_value, 0.01 * x_value),
        "very_leaky_rectify": np.where(x_value > 0, x_value, x_value / 3),
        "elu": np.where(x_value > 0, x_value, np.exp(x_value) - 1),
        "selu": 1.0507009873554805
        * np.where(x_value > 0, x_value, 1.6732632423543772 * (np.exp(x_value) - 1)),
        "softplus": np.log1p(np.exp(x_value)),
        "linear": x_value,
        "identity": x_value,
    }
    for name, expected in cases.items():
        got = getattr(nonlinearities, name)(x).eval({x: x_value})
        np.testing.assert_allclose(got, expected, rtol=1e-7, atol=1e-12, err_msg=name)
    scaled = nonlinearities.ScaledTanH(scale_in=0.5, scale_out=2.0)(x).eval({x: x_value})
    np.testing.assert_allclose(scaled, 2 * np.tanh(0.5 * x_value), rtol=1e-7)


def test_initializers_shapes_dtypes_and_scales():
    lasagne.random.set_rng(np.random.RandomState(1))
    big = (400, 300)
    for initializer, std in [
        (init.Normal(0.5, mean=1.0), 0.5),
        (init.Uniform(0.3), 0.3 / np.sqrt(3)),
        (init.GlorotUniform(), np.sqrt(2 / 700)),
        (init.GlorotNormal(gain="relu"), np.sqrt(2) * np.sqrt(2 / 700)),
        (init.HeNormal(), np.sqrt(1 / 400)),
        (init.HeUniform(gain=2.0), 2 * np.sqrt(1 / 400)),
    ]:
        w = initializer(big)
        assert w.shape == big and w.dtype == np.float32, initializer
        assert abs(w.std() - std) < 0.03 * std, (initializer, w.std(), std)
    assert abs(init.Normal(0.5, mean=1.0)(big).mean() - 1.0) < 0.01
    lo_hi = init.Uniform((2.0, 3.0))((50, 60))
    assert lo_hi.min() >= 2.0 and lo_hi.max() <= 3.0
    conv = init.GlorotUniform()((8, 3, 5, 5))  # receptive field counts in fan-in and fan-out
    assert abs(conv.std() - np.sqrt(2 / (11 * 25))) < 0.05 * np.sqrt(2 / (11 * 25))
    np.testing.assert_array_equal(init.Constant(2.5)((2, 3)), np.full((2, 3), 2.5, "float32"))
    sparse = init.Sparse(sparsity=0.25)((8, 6))
    assert ((sparse != 0).sum(axis=0) == 2).all()


def test_orthogonal_initializer():
    q = init.Orthogonal(gain=2.0)((5, 7)).astype("float64")
    np.testing.assert_allclose(q @ q.T, 4 * np.eye(5), atol=1e-5)
    q = init.Orthogonal()((6, 2, 2)).reshape(6, 4).astype("float64")
    np.testing.assert_allclose(q.T @ q, np.eye(4), atol=1e-5)
    with pytest.raises(RuntimeError, match="length >= 2, got \\(5,\\)"):
        init.Orthogonal()((5,))
    with pytest.raises(RuntimeError, match="length >= 2, got \\(5,\\)"):
        init.GlorotUniform()((5,))


def test_set_rng_makes_initialization_reproducible():
    lasagne.random.set_rng(np.random.RandomState(42))
    first = DenseLayer(InputLayer((None, 4)), 3).W.get_value()
    lasagne.random.set_rng(np.random.RandomState(42))
    second = DenseLayer(InputLayer((None, 4)), 3).W.get_value()
    np.testing.assert_array_equal(first, second)
    limit = np.sqrt(6 / 7)  # Glorot uniform for fan-in 4 and fan-out 3
    expected = np.random.RandomState(42).uniform(-limit, limit, (4, 3)).astype("float32")
    np.testing.assert_allclose(first, expected, rtol=1e-6)
    assert lasagne.random.get_rng() is not np.random
    with pytest.raises(TypeError, match="RandomState-like generator, got int"):
        lasagne.random.set_rng(3)
    lasagne.random.set_rng(np.random)


# --- noise layers --------------------------------------------------------------------------------


def test_noise_layers_are_identity_when_deterministic():
    l_in = InputLayer((None, 3, 4))
    x = f32(2, 3, 4)
    for layer in (DropoutLayer(l_in, p=0.3), GaussianNoiseLayer(l_in, sigma=0.5)):
        assert layer.output_shape == (None, 3, 4)
        assert get_output(layer, deterministic=True) is l_in.input_var
    # p = 0 and sigma = 0 add no noise even in training
    assert get_output(DropoutLayer(l_in, p=0.0)) is l_in.input_var
    assert get_output(GaussianNoiseLayer(l_in, sigma=0.0)) is l_in.input_var
    out = get_output(DropoutLayer(l_in), deterministic=True)
    np.testing.assert_array_equal(out.eval({l_in.input_var: x}), x)
    with pytest.raises(ValueError, match="p must be in \\[0, 1\\), got 1.5"):
        DropoutLayer(l_in, p=1.5)


def test_dropout_masks_and_rescales_in_training():
    l_in = InputLayer((None, 200, 3))
    layer = DropoutLayer(l_in, p=0.25, shared_axes=(2,))
    f = theanine.function([l_in.input_var], get_output(layer))
    x = np.ones((4, 200, 3), dtype="float32")
    out = f(x)
    assert set(np.unique(out)) <= {0.0, np.float32(1 / 0.75)}
    assert (out == out[:, :, :1]).all()  # one mask value shared along axis 2
    kept = (out[..., 0] != 0).mean()
    assert 0.65 < kept < 0.85
    assert not np.array_equal(out, f(x))  # a fresh mask every call
    noisy = theanine.function([l_in.input_var], get_output(GaussianNoiseLayer(l_in, sigma=0.5)))(x)
    assert abs((noisy - x).std() - 0.5) < 0.05


# --- training ------------------------------------------------------------------------------------


def test_small_mlp_loss_falls():
    lasagne.random.set_rng(np.random.RandomState(3))
    rng = np.random.RandomState(0)
    x_value = rng.normal(size=(64, 6)).astype("float32")
    y_value = (x_value[:, :3].argmax(axis=1)).astype("int32")
    x, y = T.matrix("x"), T.ivector("y")
    l_in = InputLayer((None, 6), input_var=x)
    l_hid = DenseLayer(l_in, 16, nonlinearity=nonlinearities.tanh)
    l_out = DenseLayer(l_hid, 3, nonlinearity=nonlinearities.softmax)
    prediction = get_output(l_out)
    loss = lasagne.objectives.categorical_crossentropy(prediction, y).mean()
    penalty = lasagne.regularization.regularize_network_params(l_out, lasagne.regularization.l2)
    loss = loss + 1e-4 * penalty
    params = get_all_params(l_out, trainable=True)
    step = lasagne.updates.nesterov_momentum(loss, params, 0.1)
    train = theanine.function([x, y], loss, updates=step)
    losses = [float(train(x_value, y_value)) for _ in range(50)]
    assert losses[-1] < 0.5 * losses[0], losses
    test_prediction = get_output(l_out, deterministic=True)
    accuracy = lasagne.objectives.categorical_accuracy(test_prediction, y).mean()
    assert theanine.function([x, y], accuracy)(x_value, y_value) > 0.8


# --- docstring examples --------------------------------------------------------------------------


@pytest.mark.parametrize("module", ["base", "dense", "shape", "noise", "embedding"])
def test_docstring_examples(module):
    mod = importlib.import_module(f"theanine.layers.{module}")
    result = doctest.testmod(mod)
    assert result.attempted > 0 and result.failed == 0


# --- Lasagne-style extension points and import paths ----------------------------------------------


class DoubleScale(lasagne.layers.Layer):
    """A user-defined layer in Lasagne's style: one parameter and get_output_for."""

    def __init__(self, incoming, **kwargs):
        super().__init__(incoming, **kwargs)
        shape = (self.input_shape[1],)
        self.scale = self.add_param(init.Constant(2.0), shape, name="scale", tag=True)

    def get_output_for(self, input, **kwargs):
        return input * self.scale


class Difference(lasagne.layers.MergeLayer):
    """A user-defined merge layer: first input minus the second."""

    def get_output_shape_for(self, input_shapes):
        return input_shapes[0]

    def get_output_for(self, inputs, **kwargs):
        return inputs[0] - inputs[1]


def test_user_defined_layers():
    a, b = InputLayer((None, 3)), InputLayer((None, 3))
    scaled = DoubleScale(a, name="double")
    net = Difference([scaled, b])
    assert net.output_shape == (None, 3)
    assert get_all_params(net, tag=True) == [scaled.scale] and scaled.scale.name == "double.scale"
    assert scaled.params[scaled.scale] == {"trainable", "regularizable", "tag"}
    xa, xb = f32(2, 3), f32(2, 3)
    out = get_output(net, {a: xa, b: xb}).eval()
    np.testing.assert_allclose(out, 2 * xa - xb, rtol=1e-6)


def test_layer_built_from_a_shape_needs_its_input():
    layer = DenseLayer((None, 4), 3, nonlinearity=None)
    assert layer.output_shape == (None, 3) and layer.input_layer is None
    with pytest.raises(ValueError, match="built from a shape tuple, not a layer"):
        get_output(layer)
    x = f32(2, 4)
    expected = x @ layer.W.get_value() + layer.b.get_value()
    np.testing.assert_allclose(get_output(layer, {layer: T.constant(x)}).eval(), x, rtol=1e-6)
    np.testing.assert_allclose(layer.get_output_for(T.constant(x)).eval(), expected, rtol=1e-5)


def test_lasagne_import_paths():
    import theanine.layers.nonlinearities
    import theanine.layers.objectives
    import theanine.layers.regularization
    import theanine.layers.updates

    assert lasagne.layers.DenseLayer is DenseLayer  # `import theanine.layers as lasagne` style
    assert lasagne.layers.get_output is get_output
    assert theanine.layers.updates.adam is lasagne.updates.adam
    assert lasagne.utils.floatX([1, 2]).dtype == theanine.config.floatX


def test_pad_layer():
    l_in = InputLayer((None, 3, 4, 5))
    layer = PadLayer(l_in, width=[(1, 2), 3], val=-1.0)
    assert layer.output_shape == (None, 3, 7, 11)
    x = f32(2, 3, 4, 5)
    expected = np.pad(x, [(0, 0), (0, 0), (1, 2), (3, 3)], constant_values=-1.0)
    out = value_of(layer, x)
    assert out.dtype == np.float32
    np.testing.assert_array_equal(out, expected)
    both = PadLayer(InputLayer((None, 4, 5)), width=2, batch_ndim=1)
    assert both.output_shape == (None, 8, 9)
    x = f32(2, 4, 5)
    np.testing.assert_array_equal(value_of(both, x), np.pad(x, [(0, 0), (2, 2), (2, 2)]))
    with pytest.raises(ValueError, match="up to 2 ints or .* got \\[1, 2, 3\\]"):
        PadLayer(l_in, width=[1, 2, 3])


def test_parametric_rectifier_layer():
    l_hid = DenseLayer(InputLayer((None, 4)), 3)
    layer = lasagne.layers.prelu(l_hid)
    assert l_hid.nonlinearity is nonlinearities.identity
    assert layer.alpha.get_value().shape == (3,) and layer.params[layer.alpha] == {"trainable"}
    layer.alpha.set_value(np.array([0.1, 0.2, 0.3], dtype="float32"))
    x = f32(5, 3)
    alone = lasagne.layers.ParametricRectifierLayer(InputLayer((None, 3)), alpha=layer.alpha)
    expected = np.where(x > 0, x, x * np.array([0.1, 0.2, 0.3], dtype="float32"))
    np.testing.assert_allclose(value_of(alone, x), expected, rtol=1e-6)
    one = lasagne.layers.ParametricRectifierLayer(InputLayer((None, 3, 2)), shared_axes="all")
    assert one.alpha.get_value().shape == ()


def test_dropout_variants_share_the_right_axes():
    l_in = InputLayer((None, 3, 4, 5))
    assert lasagne.layers.dropout_channels(l_in, p=0.1).shared_axes == (2, 3)
    assert lasagne.layers.spatial_dropout(l_in).shared_axes == (2, 3)
    assert lasagne.layers.dropout_locations(l_in).shared_axes == (1,)
    assert lasagne.layers.dropout(l_in, p=0.3).p == 0.3


def test_c01b_initializers():
    shape = (30, 5, 5, 40)  # channels, rows, columns, filters
    std = np.sqrt(2 / ((30 + 40) * 25))
    assert abs(init.GlorotUniform(c01b=True)(shape).std() - std) < 0.05 * std
    std = np.sqrt(1 / (30 * 25))
    assert abs(init.HeNormal(c01b=True)(shape).std() - std) < 0.05 * std
    with pytest.raises(RuntimeError, match="c01b=True, Glorot needs a 4-d shape, got \\(3, 4\\)"):
        init.GlorotUniform(c01b=True)((3, 4))


def test_reshape_layer_with_a_symbolic_size():
    x = T.tensor3("x")
    l_in = InputLayer((None, 6, 4), input_var=x)
    layer = ReshapeLayer(l_in, (x.shape[0] * 2, -1))
    assert layer.output_shape == (None, None)
    value = f32(3, 6, 4)
    np.testing.assert_array_equal(value_of(layer, value), value.reshape(6, 12))
    with pytest.raises(ValueError, match="symbolic size must be an integer scalar"):
        ReshapeLayer(l_in, (T.matrix("m"), -1))
