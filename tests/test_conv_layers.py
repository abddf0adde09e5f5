"""Convolution and pooling layers: shapes, parameters, values, and a small CNN that trains."""

from __future__ import annotations

import numpy as np
import pytest

import theanine
import theanine.layers as L
import theanine.tensor as T
from tests.test_conv import reference_conv
from tests.test_pool import reference_pool

RNG = np.random.default_rng(9)


@pytest.mark.parametrize(
    "pad, stride, expected",
    [
        (0, (1, 1), (None, 4, 5, 5)),
        ("valid", (2, 1), (None, 4, 3, 5)),
        ("full", (1, 1), (None, 4, 9, 7)),
        ("same", (1, 2), (None, 4, 7, 3)),
        (1, (1, 1), (None, 4, 7, 7)),
        ((2, 0), (3, 2), (None, 4, 3, 3)),
    ],
    ids=str,
)
def test_conv_layer_shapes_match_the_computed_output(pad, stride, expected):
    l_in = L.InputLayer((None, 3, 7, 6))
    filter_size = (3, 3) if pad == "same" else (3, 2)
    layer = L.Conv2DLayer(l_in, num_filters=4, filter_size=filter_size, stride=stride, pad=pad)
    assert layer.output_shape == expected
    assert layer.W.get_value().shape == (4, 3) + filter_size and layer.b.get_value().shape == (4,)
    x = RNG.normal(size=(2, 3, 7, 6)).astype("float32")
    value = L.get_output(layer).eval({l_in.input_var: x})
    assert value.shape == (2,) + layer.output_shape[1:]


def test_conv_layer_values_untied_biases_and_groups():
    l_in = L.InputLayer((None, 4, 7, 6))
    layer = L.Conv2DLayer(l_in, 6, (3, 2), stride=(2, 1), pad=(1, 0), untie_biases=True,
                          b=L.init.Normal(1.0), nonlinearity=None, flip_filters=False, num_groups=2)
    assert layer.W.get_value().shape == (6, 2, 3, 2)
    assert layer.b.get_value().shape == (6, 4, 5) and layer.output_shape == (None, 6, 4, 5)
    x = RNG.normal(size=(2, 4, 7, 6)).astype("float32")
    got = L.get_output(layer).eval({l_in.input_var: x})
    w, b = layer.W.get_value(), layer.b.get_value()
    expected = reference_conv(x, w, (1, 1 - 1), (2, 1), flip=False, groups=2) + b[None]
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-5)


def test_conv_layer_default_is_flipped_convolution_plus_bias_then_rectify():
    l_in = L.InputLayer((2, 3, 6, 5))
    layer = L.Conv2DLayer(l_in, 4, 3, pad="same", b=L.init.Normal(1.0))
    x = RNG.normal(size=(2, 3, 6, 5)).astype("float32")
    got = L.get_output(layer).eval({l_in.input_var: x})
    conv = reference_conv(x, layer.W.get_value(), (1, 1), flip=True)
    expected = np.maximum(conv + layer.b.get_value()[None, :, None, None], 0)
    assert layer.output_shape == (2, 4, 6, 5)
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-5)


def test_conv_layer_errors():
    with pytest.raises(ValueError, match="expected a 4-d input shape"):
        L.Conv2DLayer(L.InputLayer((None, 3, 7)), 4, 3)
    with pytest.raises(NotImplementedError, match="pad='same' needs odd filter sizes"):
        L.Conv2DLayer(L.InputLayer((None, 3, 7, 6)), 4, (3, 2), pad="same")
    with pytest.raises(ValueError, match="divisible by num_groups=2"):
        L.Conv2DLayer(L.InputLayer((None, 3, 7, 6)), 4, 3, num_groups=2)
    with pytest.raises(ValueError, match="known number of input channels"):
        L.Conv2DLayer(L.InputLayer((None, None, 7, 6)), 4, 3)


@pytest.mark.parametrize("mode", ["max", "sum", "average_inc_pad", "average_exc_pad"])
def test_pool_layers_shapes_and_values(mode):
    l_in = L.InputLayer((None, 3, 9, 7))
    layer = L.Pool2DLayer(l_in, (3, 2), stride=(2, 1), pad=(1, 1), mode=mode)
    assert layer.output_shape == (None, 3, 5, 8)
    x = RNG.normal(size=(2, 3, 9, 7)).astype("float32")
    got = L.get_output(layer).eval({l_in.input_var: x})
    expected = reference_pool(x.astype("float64"), (3, 2), True, (2, 1), (1, 1), mode)
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)
    assert layer.get_params() == []


def test_max_pool_layer_and_ignore_border():
    l_in = L.InputLayer((None, 2, 5, 7))
    assert L.MaxPool2DLayer(l_in, 2).output_shape == (None, 2, 2, 3)
    layer = L.MaxPool2DLayer(l_in, 2, ignore_border=False)
    assert layer.output_shape == (None, 2, 3, 4) and layer.mode == "max"
    x = RNG.normal(size=(3, 2, 5, 7)).astype("float32")
    got = L.get_output(layer).eval({l_in.input_var: x})
    np.testing.assert_allclose(got, reference_pool(x, (2, 2), False, (2, 2), (0, 0), "max"))
    with pytest.raises(ValueError, match="expected a 4-d input shape"):
        L.MaxPool2DLayer(L.InputLayer((None, 5, 7)), 2)
    with pytest.raises(ValueError, match="mode must be one of"):
        L.Pool2DLayer(l_in, 2, mode="median")


def test_global_pool_layer():
    l_in = L.InputLayer((None, 3, 4, 5))
    x = RNG.normal(size=(2, 3, 4, 5)).astype("float32")
    mean_layer = L.GlobalPoolLayer(l_in)
    max_layer = L.GlobalPoolLayer(l_in, pool_function=T.max)
    assert mean_layer.output_shape == (None, 3)
    means = L.get_output(mean_layer).eval({l_in.input_var: x})
    np.testing.assert_allclose(means, x.mean(axis=(2, 3)), rtol=1e-5)
    maxima = L.get_output(max_layer).eval({l_in.input_var: x})
    np.testing.assert_allclose(maxima, x.max(axis=(2, 3)))
    with pytest.raises(ValueError, match="at least 3 dimensions"):
        L.GlobalPoolLayer(L.InputLayer((None, 3)))


def test_tiny_cnn_loss_falls_in_py_mode():
    L.random.set_rng(np.random.RandomState(0))
    x_data = RNG.normal(size=(24, 2, 9, 8)).astype("float32")
    y_data = RNG.integers(0, 3, size=24).astype("int32")
    l_in = L.InputLayer((None, 2, 9, 8))
    net = L.Conv2DLayer(l_in, num_filters=5, filter_size=(3, 3), pad="same")
    net = L.MaxPool2DLayer(net, 2)
    net = L.DenseLayer(net, num_units=3, nonlinearity=L.nonlinearities.softmax)
    assert net.input_layer.output_shape == (None, 5, 4, 4)
    y = T.ivector("y")
    prediction = L.get_output(net)
    loss = L.objectives.categorical_crossentropy(prediction, y).mean()
    params = L.get_all_params(net, trainable=True)
    updates = L.updates.adam(loss, params, learning_rate=0.01)
    train = theanine.function([l_in.input_var, y], loss, updates=updates, mode="py")
    losses = [float(train(x_data, y_data)) for _ in range(30)]
    assert losses[-1] < 0.7 * losses[0], losses


TRANSPOSED = [
    (0, (1, 1), (7, 6)),
    ("same", (2, 2), (9, 7)),
    ("full", (2, 1), (7, 2)),
    ((1, 0), (2, 1), (9, 6)),
]


@pytest.mark.parametrize("crop, stride, size", TRANSPOSED, ids=str)
def test_transposed_conv_layer_inverts_the_conv_layer_shape(crop, stride, size):
    l_in = L.InputLayer((None, 3, 5, 4))
    layer = L.TransposedConv2DLayer(l_in, 6, 3, stride=stride, crop=crop, b=L.init.Normal(1.0))
    assert layer.output_shape == (None, 6) + size and layer.W.get_value().shape == (3, 6, 3, 3)
    forward = L.Conv2DLayer(L.InputLayer((None, 6) + size), 3, 3, stride=stride, pad=crop)
    assert forward.output_shape[2:] == (5, 4)
    x = RNG.normal(size=(2, 3, 5, 4)).astype("float32")
    got = L.get_output(layer).eval({l_in.input_var: x})
    assert got.shape == (2, 6) + size and (got >= 0).all()
    # unknown spatial sizes: the same size, computed symbolically
    l_free = L.InputLayer((None, 3, None, None))
    free = L.Deconv2DLayer(l_free, 6, 3, stride=stride, crop=crop, W=layer.W, b=layer.b)
    np.testing.assert_allclose(L.get_output(free).eval({l_free.input_var: x}), got, rtol=1e-6)


def test_transposed_conv_layer_output_size_and_values():
    l_in = L.InputLayer((None, 2, 3, 3))
    layer = L.TransposedConv2DLayer(
        l_in, 4, (3, 2), stride=2, output_size=(8, 7), nonlinearity=None, b=None
    )
    assert layer.output_shape == (None, 4, 8, 7)
    x = RNG.normal(size=(2, 2, 3, 3)).astype("float32")
    got = L.get_output(layer).eval({l_in.input_var: x})
    w = layer.W.get_value()  # (2, 4, 3, 2): the filters of a forward conv from 4 to 2 channels
    # adjoint test: <transposed(x), z> = <x, conv(z)> for the forward conv it transposes
    z = RNG.normal(size=(2, 4, 8, 7))
    forward = reference_conv(z, w, (0, 0), (2, 2), flip=True)
    np.testing.assert_allclose(np.sum(got * z), np.sum(x * forward), rtol=1e-4)
