"""Recurrent layers: shapes, parameters, values against numpy loops, masks, gradients, examples."""

from __future__ import annotations

import doctest
import importlib.util
from pathlib import Path

import numpy as np
import pytest

import theanine
import theanine.tensor as T
from theanine.layers import (
    CustomRecurrentLayer,
    DenseLayer,
    Gate,
    GRULayer,
    InputLayer,
    LSTMLayer,
    RecurrentLayer,
    count_params,
    get_all_params,
    get_output,
    nonlinearities,
    objectives,
    updates,
)
from theanine.layers import random as layers_random
from theanine.layers import recurrent

from tests.helpers import check_grad

BATCH, STEPS, FEATURES, UNITS = 3, 5, 4, 6
LAYERS = [RecurrentLayer, LSTMLayer, GRULayer]


def sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def relu(x):
    return np.maximum(x, 0.0)


# --- independent numpy loops, written from the published equations -------------------------------


def np_loop(step, x, states, mask=None, backwards=False):
    """Run `step(x_t, *states) -> states` over time; returns the last state entry per time step,
    in time order; masked steps keep the previous states."""
    out = np.zeros(x.shape[:2] + states[-1].shape[1:])
    order = range(x.shape[1] - 1, -1, -1) if backwards else range(x.shape[1])
    for t in order:
        new = step(x[:, t], *states)
        if mask is not None:
            new = [np.where(mask[:, t, None] > 0, n, s) for n, s in zip(new, states)]
        states = new
        out[:, t] = states[-1]
    return out


def rnn_step(p):
    return lambda x, h: [relu(x @ p["W_in_to_hid"] + h @ p["W_hid_to_hid"] + p["b"])]


def lstm_step(p):
    """Graves (2013), eq. 7-11: peephole connections from the cell to the three gates."""

    def step(x, c, h):
        i = sigmoid(x @ p["W_in_to_ingate"] + h @ p["W_hid_to_ingate"] + c * p["W_cell_to_ingate"]
                    + p["b_ingate"])
        f = sigmoid(x @ p["W_in_to_forgetgate"] + h @ p["W_hid_to_forgetgate"]
                    + c * p["W_cell_to_forgetgate"] + p["b_forgetgate"])
        c_new = f * c + i * np.tanh(x @ p["W_in_to_cell"] + h @ p["W_hid_to_cell"] + p["b_cell"])
        o = sigmoid(x @ p["W_in_to_outgate"] + h @ p["W_hid_to_outgate"]
                    + c_new * p["W_cell_to_outgate"] + p["b_outgate"])
        return [c_new, o * np.tanh(c_new)]

    return step


def gru_step(p):
    """Cho et al. (2014) with the reset gate applied to the hidden product (Lasagne, cuDNN)."""

    def step(x, h):
        r = sigmoid(x @ p["W_in_to_resetgate"] + h @ p["W_hid_to_resetgate"] + p["b_resetgate"])
        u = sigmoid(x @ p["W_in_to_updategate"] + h @ p["W_hid_to_updategate"]
                    + p["b_updategate"])
        c = np.tanh(x @ p["W_in_to_hidden_update"] + p["b_hidden_update"]
                    + r * (h @ p["W_hid_to_hidden_update"]))
        return [(1 - u) * h + u * c]

    return step


def randomize(layer, rng, scale=0.5):
    """Random values in every parameter; returns {short name: value} (float64)."""
    values = {}
    for param in get_all_params(layer):
        value = rng.normal(0, scale, param.get_value().shape).astype(param.dtype)
        param.set_value(value)
        values[param.name.split(".")[-1]] = value.astype("float64")
    if isinstance(layer, RecurrentLayer):  # its weights live in two DenseLayers, named W and b
        for key in ("W_in_to_hid", "W_hid_to_hid", "b"):
            values[key] = getattr(layer, key).get_value().astype("float64")
    return values


def reference(layer, params, x, mask=None, backwards=False):
    """The numpy loop for `layer`'s kind, started from its hid_init (and cell_init)."""
    batch = x.shape[0]
    hid0 = np.repeat(params["hid_init"], batch, axis=0)
    if isinstance(layer, LSTMLayer):
        cell0 = np.repeat(params["cell_init"], batch, axis=0)
        return np_loop(lstm_step(params), x, [cell0, hid0], mask, backwards)
    if isinstance(layer, GRULayer):
        return np_loop(gru_step(params), x, [hid0], mask, backwards)
    return np_loop(rnn_step(params), x, [hid0], mask, backwards)


def compute(layer, *values):
    inputs = [l.input_var for l in layer.input_layers]
    return theanine.function(inputs, get_output(layer), mode="py")(*values)


def make(cls, mask=False, **kwargs):
    l_in = InputLayer((None, STEPS, FEATURES))
    l_mask = InputLayer((None, STEPS)) if mask else None
    return cls(l_in, UNITS, mask_input=l_mask, **kwargs)


# --- shapes and parameters -----------------------------------------------------------------------


@pytest.mark.parametrize("final", [False, True])
@pytest.mark.parametrize("cls", LAYERS)
def test_output_shapes(cls, final):
    layer = cls(InputLayer((BATCH, STEPS, FEATURES)), UNITS, only_return_final=final)
    expected = (BATCH, UNITS) if final else (BATCH, STEPS, UNITS)
    assert layer.output_shape == expected
    x = np.random.default_rng(0).normal(size=(BATCH, STEPS, FEATURES)).astype("float32")
    out = compute(layer, x)
    assert out.shape == expected and out.dtype == np.float32


def test_trailing_feature_axes_are_flattened():
    layer = LSTMLayer(InputLayer((BATCH, STEPS, 2, 2)), UNITS)
    assert layer.W_in_to_ingate.get_value().shape == (4, UNITS)
    x = np.ones((BATCH, STEPS, 2, 2), dtype="float32")
    assert compute(layer, x).shape == (BATCH, STEPS, UNITS)


def test_lstm_params_shapes_and_tags():
    layer = LSTMLayer(InputLayer((None, STEPS, FEATURES)), UNITS, name="lstm")
    shapes = {p.name: p.get_value().shape for p in layer.get_params()}
    for gate in ("ingate", "forgetgate", "cell", "outgate"):
        assert shapes[f"lstm.W_in_to_{gate}"] == (FEATURES, UNITS)
        assert shapes[f"lstm.W_hid_to_{gate}"] == (UNITS, UNITS)
        assert shapes[f"lstm.b_{gate}"] == (UNITS,)
    for gate in ("ingate", "forgetgate", "outgate"):
        assert shapes[f"lstm.W_cell_to_{gate}"] == (UNITS,)
    assert "lstm.W_cell_to_cell" not in shapes
    assert shapes["lstm.hid_init"] == shapes["lstm.cell_init"] == (1, UNITS)
    trainable = {p.name for p in get_all_params(layer, trainable=True)}
    assert "lstm.hid_init" not in trainable and "lstm.cell_init" not in trainable
    regularizable = {p.name for p in get_all_params(layer, regularizable=True)}
    assert regularizable == {n for n in shapes if "W_" in n}
    assert count_params(layer, trainable=True) == 4 * (FEATURES + UNITS + 1) * UNITS + 3 * UNITS
    no_peep = LSTMLayer(InputLayer((None, STEPS, FEATURES)), UNITS, peepholes=False)
    assert not any("W_cell" in (p.name or "") for p in no_peep.get_params())


def test_gru_and_rnn_params():
    gru = GRULayer(InputLayer((None, STEPS, FEATURES)), UNITS, learn_init=True)
    names = [p.name for p in gru.get_params(trainable=True)]
    for gate in ("resetgate", "updategate", "hidden_update"):
        assert f"W_in_to_{gate}" in names and f"W_hid_to_{gate}" in names and f"b_{gate}" in names
    assert "hid_init" in names  # learn_init makes the initial state trainable
    assert gru.W_hid_to_hidden_update.get_value().shape == (UNITS, UNITS)
    rnn = RecurrentLayer(InputLayer((None, STEPS, FEATURES)), UNITS, name="rnn")
    params = rnn.get_params(trainable=True)
    assert [p.name for p in params] == [
        "rnn.input_to_hidden.W", "rnn.input_to_hidden.b", "rnn.hidden_to_hidden.W"]
    assert [p.get_value().shape for p in params] == [(FEATURES, UNITS), (UNITS,), (UNITS, UNITS)]
    assert rnn.W_in_to_hid is params[0] and rnn.b is params[1] and rnn.W_hid_to_hid is params[2]
    assert get_all_params(rnn, regularizable=True) == [params[0], params[2]]


# --- values against the numpy loops --------------------------------------------------------------

VARIANTS = [
    {},
    {"precompute_input": False},
    {"unroll_scan": True},
    {"backwards": True},
    {"backwards": True, "unroll_scan": True},
]


@pytest.mark.parametrize("options", VARIANTS, ids=lambda o: ",".join(o) or "default")
@pytest.mark.parametrize("cls", LAYERS)
def test_values_match_numpy(cls, options):
    rng = np.random.default_rng(1)
    layer = make(cls, **options)
    params = randomize(layer, rng)
    x = rng.normal(size=(BATCH, STEPS, FEATURES)).astype("float32")
    expected = reference(layer, params, x.astype("float64"), backwards=options.get("backwards"))
    np.testing.assert_allclose(compute(layer, x), expected, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("backwards", [False, True])
@pytest.mark.parametrize("cls", LAYERS)
def test_masks_keep_the_previous_state(cls, backwards):
    rng = np.random.default_rng(2)
    layer = make(cls, mask=True, backwards=backwards)
    params = randomize(layer, rng)
    x = rng.normal(size=(BATCH, STEPS, FEATURES)).astype("float32")
    mask = np.ones((BATCH, STEPS), dtype="float32")
    mask[0, 3:] = 0  # a short sequence, padded at the end
    mask[1, 1] = 0  # a gap inside a sequence
    out = compute(layer, x, mask)
    expected = reference(layer, params, x.astype("float64"), mask, backwards)
    np.testing.assert_allclose(out, expected, rtol=1e-4, atol=1e-5)
    if not backwards:
        np.testing.assert_array_equal(out[0, 3], out[0, 2])
        np.testing.assert_array_equal(out[0, 4], out[0, 2])
        np.testing.assert_array_equal(out[1, 1], out[1, 0])
        assert not np.allclose(out[2, 1], out[2, 0])
    else:  # the state is carried from later steps to earlier ones
        np.testing.assert_array_equal(out[1, 1], out[1, 2])
        np.testing.assert_allclose(out[0, 3:], np.repeat(params["hid_init"], 2, axis=0), atol=1e-6)


@pytest.mark.parametrize("backwards", [False, True])
@pytest.mark.parametrize("cls", LAYERS)
def test_only_return_final(cls, backwards):
    rng = np.random.default_rng(3)
    full = make(cls, backwards=backwards)
    final = make(cls, backwards=backwards, only_return_final=True)
    for source, target in zip(get_all_params(full), get_all_params(final)):
        value = rng.normal(0, 0.5, source.get_value().shape).astype(source.dtype)
        source.set_value(value)
        target.set_value(value)
    x = rng.normal(size=(BATCH, STEPS, FEATURES)).astype("float32")
    last = compute(final, x)
    assert last.shape == (BATCH, UNITS)
    np.testing.assert_allclose(last, compute(full, x)[:, 0 if backwards else -1], rtol=1e-6)


def test_initial_states_from_layers():
    rng = np.random.default_rng(4)
    l_in = InputLayer((None, STEPS, FEATURES))
    l_hid, l_cell = InputLayer((None, UNITS)), InputLayer((None, UNITS))
    layer = LSTMLayer(l_in, UNITS, hid_init=l_hid, cell_init=l_cell)
    assert "hid_init" not in [p.name for p in layer.get_params()]
    params = randomize(layer, rng)
    x = rng.normal(size=(BATCH, STEPS, FEATURES)).astype("float32")
    h0, c0 = rng.normal(size=(2, BATCH, UNITS)).astype("float32")
    out = theanine.function([l_in.input_var, l_hid.input_var, l_cell.input_var],
                            get_output(layer), mode="py")(x, h0, c0)
    expected = np_loop(lstm_step(params), x.astype("float64"), [c0, h0])
    np.testing.assert_allclose(out, expected, rtol=1e-4, atol=1e-5)


def test_custom_recurrent_layer_matches_recurrent_layer():
    rng = np.random.default_rng(5)
    l_in = InputLayer((None, STEPS, FEATURES))
    l_ih = DenseLayer(InputLayer((None, FEATURES)), UNITS, nonlinearity=None)
    l_hh = DenseLayer(InputLayer((None, UNITS)), UNITS, nonlinearity=None, b=None)
    custom = CustomRecurrentLayer(l_in, l_ih, l_hh, nonlinearity=nonlinearities.tanh)
    assert get_all_params(custom, trainable=True) == [l_ih.W, l_ih.b, l_hh.W]
    params = {"W_in_to_hid": rng.normal(size=(FEATURES, UNITS)), "b": rng.normal(size=UNITS),
              "W_hid_to_hid": rng.normal(0, 0.3, size=(UNITS, UNITS))}
    for param, key in ((l_ih.W, "W_in_to_hid"), (l_ih.b, "b"), (l_hh.W, "W_hid_to_hid")):
        param.set_value(params[key].astype("float32"))
    x = rng.normal(size=(BATCH, STEPS, FEATURES)).astype("float32")

    def step(x_t, h):
        return [np.tanh(x_t @ params["W_in_to_hid"] + h @ params["W_hid_to_hid"] + params["b"])]

    expected = np_loop(step, x.astype("float64"), [np.zeros((BATCH, UNITS))])
    np.testing.assert_allclose(compute(custom, x), expected, rtol=1e-4, atol=1e-5)


# --- gradients -----------------------------------------------------------------------------------


def lstm_of(x, w_in_cell, w_hid_forget, b_out, cell_init, **options):
    """An LSTM whose input, some weights and initial cell are the given (float64) variables."""
    rng = np.random.default_rng(6)
    fixed = lambda *shape: rng.normal(0, 0.5, shape)  # noqa: E731
    n_in, n = 2, 3
    layer = LSTMLayer(
        InputLayer((None, None, n_in)), n,
        ingate=Gate(W_in=fixed(n_in, n), W_hid=fixed(n, n), W_cell=fixed(n)),
        forgetgate=Gate(W_in=fixed(n_in, n), W_hid=w_hid_forget, W_cell=fixed(n)),
        cell=Gate(W_in=w_in_cell, W_hid=fixed(n, n), W_cell=None, nonlinearity=T.tanh),
        outgate=Gate(W_in=fixed(n_in, n), W_hid=fixed(n, n), W_cell=fixed(n), b=b_out),
        cell_init=cell_init, **options,
    )
    return get_output(layer, x)


@pytest.mark.parametrize("options", [{}, {"backwards": True, "precompute_input": False}],
                         ids=["default", "backwards"])
def test_lstm_gradient_matches_central_differences(options):
    rng = np.random.default_rng(7)
    arrays = [rng.normal(size=(2, 3, 2)), rng.normal(0, 0.5, (2, 3)), rng.normal(0, 0.5, (3, 3)),
              rng.normal(0, 0.5, 3), rng.normal(0, 0.5, (1, 3))]
    check_grad(lambda *v: lstm_of(*v, **options), arrays, rtol=1e-5, atol=1e-7)


def test_gru_and_rnn_gradients_match_central_differences():
    rng = np.random.default_rng(8)

    def gru(x, w_hid):
        # the other weights come from the layers' generator: the same ones on every call
        saved = layers_random.get_rng()
        layers_random.set_rng(np.random.RandomState(0))
        try:
            layer = GRULayer(InputLayer((None, None, 2)), 3,
                             updategate=Gate(W_hid=w_hid, W_cell=None))
        finally:
            layers_random.set_rng(saved)
        return get_output(layer, x)

    def rnn(x, w_hid):
        layer = RecurrentLayer(InputLayer((None, None, 2)), 3, W_in_to_hid=init_normal(2, 3),
                               W_hid_to_hid=w_hid, nonlinearity=nonlinearities.tanh)
        return get_output(layer, x)

    arrays = [rng.normal(size=(2, 3, 2)), rng.normal(0, 0.5, (3, 3))]
    check_grad(gru, arrays, rtol=1e-5, atol=1e-7)
    check_grad(rnn, arrays, rtol=1e-5, atol=1e-7)


def init_normal(*shape):
    return np.random.default_rng(9).normal(0, 0.5, shape)


def gradients(layer, cost_of, x):
    """d cost / d (input, every trainable parameter), evaluated on x."""
    x_var = layer.input_layers[0].input_var
    cost = cost_of(get_output(layer))
    wrt = [x_var] + get_all_params(layer, trainable=True)
    return theanine.function([x_var], [cost] + T.grad(cost, wrt), mode="py")(x)


def test_gradient_steps_truncates_backpropagation():
    rng = np.random.default_rng(10)
    x = rng.normal(size=(BATCH, STEPS, FEATURES)).astype("float32")
    full, truncated = make(LSTMLayer), make(LSTMLayer, gradient_steps=2)
    for source, target in zip(get_all_params(full), get_all_params(truncated)):
        target.set_value(source.get_value())
    cost_of = lambda out: out[:, -1].sum()  # noqa: E731
    g_full, g_truncated = gradients(full, cost_of, x)[1], gradients(truncated, cost_of, x)[1]
    assert np.all(g_truncated[:, : STEPS - 2] == 0)
    np.testing.assert_allclose(g_truncated[:, STEPS - 2 :], g_full[:, STEPS - 2 :], rtol=1e-5)
    assert np.all(np.abs(g_full[:, 0]) > 0)


@pytest.mark.parametrize("cls", LAYERS)
def test_grad_clipping_changes_gradients_not_values(cls):
    rng = np.random.default_rng(11)
    x = rng.normal(0, 3, size=(BATCH, STEPS, FEATURES)).astype("float32")
    plain, clipped = make(cls), make(cls, grad_clipping=0.01)
    for source, target in zip(get_all_params(plain), get_all_params(clipped)):
        value = rng.normal(0, 1.0, source.get_value().shape).astype(source.dtype)
        source.set_value(value)
        target.set_value(value)
    cost_of = lambda out: (out**2).sum()  # noqa: E731
    np.testing.assert_array_equal(compute(plain, x), compute(clipped, x))
    g_plain, g_clipped = gradients(plain, cost_of, x), gradients(clipped, cost_of, x)
    assert g_plain[0] == g_clipped[0]  # same cost
    assert any(not np.allclose(a, b) for a, b in zip(g_plain[1:], g_clipped[1:]))
    norm = lambda gs: np.sqrt(sum(float(np.sum(g**2)) for g in gs))  # noqa: E731
    assert norm(g_clipped[2:]) < norm(g_plain[2:])


# --- training ------------------------------------------------------------------------------------


def test_tiny_lstm_classifier_loss_falls():
    rng = np.random.default_rng(12)
    x_value = rng.normal(size=(32, STEPS, 2)).astype("float32")
    y_value = (x_value[:, :, 0].sum(axis=1) > 0).astype("int32")  # the sign of a running sum
    l_in = InputLayer((None, STEPS, 2))
    l_lstm = LSTMLayer(l_in, 8, only_return_final=True)
    l_out = DenseLayer(l_lstm, 2, nonlinearity=nonlinearities.softmax)
    y = T.ivector("y")
    loss = objectives.categorical_crossentropy(get_output(l_out), y).mean()
    step = updates.adam(loss, get_all_params(l_out, trainable=True), learning_rate=0.05)
    train = theanine.function([l_in.input_var, y], loss, updates=step, mode="py")
    losses = [float(train(x_value, y_value)) for _ in range(30)]
    assert losses[-1] < 0.6 * losses[0], losses


# --- errors --------------------------------------------------------------------------------------


def test_errors_name_what_was_expected():
    with pytest.raises(ValueError, match=r"LSTMLayer: the input must be \(batch, time"):
        LSTMLayer(InputLayer((None, 4)), UNITS)
    with pytest.raises(ValueError, match="RecurrentLayer: the input must be"):
        RecurrentLayer(InputLayer((None, 4)), UNITS)
    with pytest.raises(ValueError, match="unroll_scan=True needs a known sequence length"):
        GRULayer(InputLayer((None, None, 4)), UNITS, unroll_scan=True)
    with pytest.raises(ValueError, match="gradient_steps must be -1 with unroll_scan"):
        GRULayer(InputLayer((None, STEPS, 4)), UNITS, unroll_scan=True, gradient_steps=2)
    with pytest.raises(ValueError, match="peepholes=True needs W_cell on the ingate Gate"):
        LSTMLayer(InputLayer((None, STEPS, 4)), UNITS, ingate=Gate(W_cell=None))
    with pytest.raises(ValueError, match=r"mask_input must be a \(batch, time\) layer"):
        LSTMLayer(InputLayer((None, STEPS, 4)), UNITS, mask_input=InputLayer((None, STEPS, 1)))
    with pytest.raises(ValueError, match="number of input features must be known"):
        LSTMLayer(InputLayer((None, STEPS, None)), UNITS)
    with pytest.raises(ValueError, match="must give the same shape past the batch axis"):
        CustomRecurrentLayer(InputLayer((None, STEPS, 4)),
                             DenseLayer(InputLayer((None, 4)), 5),
                             DenseLayer(InputLayer((None, 6)), 6))


def test_docstring_examples():
    result = doctest.testmod(recurrent)
    assert result.attempted > 0 and result.failed == 0


# --- the examples --------------------------------------------------------------------------------

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def load_example(name: str):
    spec = importlib.util.spec_from_file_location(f"example_{name}", EXAMPLES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize(
    "name, line",
    [("cnn", "final test accuracy"), ("rnn", "final test accuracy"),
     ("autoencoder", "final reconstruction error")],
)
def test_example_runs(name, line, capsys, tmp_path):
    example = load_example(name)
    argv = ["--epochs", "1", "--train-size", "300", "--test-size", "200", "--mode", "py"]
    if name == "autoencoder":
        argv += ["--output", str(tmp_path / "reconstructions.png")]
    result = example.main(argv)
    printed = capsys.readouterr().out
    assert "epoch 1/1" in printed
    value = float(printed.split(line)[1].split()[0])
    assert value == pytest.approx(result, abs=1e-4)
    if name == "autoencoder":
        assert 0 < value < 0.2  # mean squared error of [0, 1] pixels: far below an untrained net
    else:
        assert 0.1 < value <= 1.0


def test_convolutional_recurrent_layer_with_its_default_initial_state():
    """An n-d state (conv maps) starts from the learned hid_init (1, c, h, w) repeated over the
    batch, as Lasagne's CustomRecurrentLayer does."""
    from theanine import layers as L

    x = T.tensor5("x")
    conv = {"num_filters": 2, "filter_size": (3, 3), "pad": "same", "nonlinearity": None}
    in_to_hid = L.Conv2DLayer(L.InputLayer((None, 1, 6, 5)), **conv)
    hid_to_hid = L.Conv2DLayer(L.InputLayer((None, 2, 6, 5)), **conv)
    net = L.CustomRecurrentLayer(L.InputLayer((None, 4, 1, 6, 5), input_var=x), in_to_hid,
                                 hid_to_hid, nonlinearity=L.nonlinearities.tanh)
    hid_init = [p for p in net.get_params() if p.name and "hid_init" in p.name][0]
    assert hid_init.get_value().shape == (1, 2, 6, 5)
    hid_init.set_value(np.random.default_rng(1).normal(size=(1, 2, 6, 5)).astype(hid_init.dtype))
    xv = np.zeros((3, 4, 1, 6, 5), dtype=theanine.config.floatX)
    out = theanine.function([x], L.get_output(net), mode="py")(xv)
    assert out.shape == (3, 4, 2, 6, 5)
    # with no input, step 1 is tanh(hid_to_hid(h0) + biases): the same for every batch row
    np.testing.assert_allclose(out[0], out[2], rtol=1e-6)
