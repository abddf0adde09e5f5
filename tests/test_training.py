"""The fit loop, its history and early stopping; parameters saved and loaded as .npz, atomically."""

from __future__ import annotations

import sys

import numpy as np
import pytest

import theanine
import theanine.tensor as T
from theanine import layers
from theanine.layers.training import fit, load_params, save_params

RNG = np.random.default_rng(3)


def small_problem(n=120):
    x = RNG.normal(size=(n, 5)).astype(theanine.config.floatX)
    y = (x[:, 0] + x[:, 1] > 0).astype("int32")
    net = layers.InputLayer((None, 5))
    net = layers.DenseLayer(net, 8)
    net = layers.DenseLayer(net, 2, nonlinearity=layers.nonlinearities.softmax)
    xs, ys = T.matrix("x"), T.ivector("y")
    p = layers.get_output(net, xs)
    loss = layers.objectives.categorical_crossentropy(p, ys).mean()
    accuracy = layers.objectives.categorical_accuracy(p, ys).mean()
    lr = theanine.shared(np.asarray(0.5, dtype=theanine.config.floatX), name="lr")
    params = layers.get_all_params(net, trainable=True)
    train = theanine.function([xs, ys], [loss, accuracy], updates=layers.updates.sgd(loss, params, lr))
    val = theanine.function([xs, ys], [loss, accuracy])
    return net, x, y, train, val, lr


def test_fit_lowers_the_loss_and_records_history():
    net, x, y, train, val, lr = small_problem()
    history = fit(train, x, y, epochs=6, batch_size=16, val_fn=val, validation_split=0.25,
                  metric_names=("loss", "accuracy"), progress=False)
    assert set(history.metrics) == {"loss", "accuracy", "val_loss", "val_accuracy"}
    assert len(history["loss"]) == 6 and history["loss"][-1] < history["loss"][0]
    assert history.best_epoch is not None and len(history.seconds) == 6


def test_learning_rate_schedule_and_early_stopping_with_restore():
    net, x, y, train, _, lr = small_problem()
    calls = []

    def worse_each_time(xb, yb):  # a validation loss that only grows: stop after `patience` epochs
        calls.append(1)
        return [np.float32(len(calls)), np.float32(0.0)]

    before = [p.get_value() for p in layers.get_all_params(net)]
    history = fit(train, x, y, epochs=10, batch_size=32, val_fn=worse_each_time, validation_data=(x[:8], y[:8]),
                  metric_names=("loss", "accuracy"), patience=2, restore_best=net, learning_rate=lr,
                  lr_schedule=lambda epoch: 0.1 / epoch, progress=False)
    assert history.stopped_early and len(history["loss"]) == 3 and history.best_epoch == 1
    assert lr.get_value() == pytest.approx(0.1 / 3)
    after = [p.get_value() for p in layers.get_all_params(net)]
    assert any(not np.array_equal(a, b) for a, b in zip(before, after))  # epoch 1's values, not the start


def test_fit_rejects_bad_arguments():
    _, x, y, train, _, _ = small_problem()
    with pytest.raises(ValueError, match="x has 120 samples but y has 3"):
        fit(train, x, y[:3], progress=False)
    with pytest.raises(ValueError, match="validation needs val_fn"):
        fit(train, x, y, validation_split=0.1, progress=False)
    with pytest.raises(ValueError, match="returned 2 values but metric_names has 1"):
        fit(train, x, y, epochs=1, progress=False)


def test_save_and_load_round_trip(tmp_path):
    net, *_ = small_problem()
    path = save_params(tmp_path / "weights.npz", net)
    saved = [p.get_value() for p in layers.get_all_params(net)]
    for p in layers.get_all_params(net):
        p.set_value(np.zeros_like(p.get_value()))
    load_params(path, net)
    for a, b in zip(saved, layers.get_all_params(net)):
        np.testing.assert_array_equal(a, b.get_value())


def test_load_names_the_parameter_that_does_not_fit(tmp_path):
    net, *_ = small_problem()
    path = save_params(tmp_path / "w.npz", net)
    other = layers.DenseLayer(layers.DenseLayer(layers.InputLayer((None, 5)), 9), 2)
    with pytest.raises(ValueError, match=r"parameter '000:W' has shape \(5, 8\) in the file but \(5, 9\)"):
        load_params(path, other)
    untouched = [p.get_value() for p in layers.get_all_params(other)]
    assert all(np.any(v != 0) or v.ndim == 1 for v in untouched)


def test_corrupted_file_is_reported(tmp_path):
    net, *_ = small_problem()
    path = save_params(tmp_path / "w.npz", net)
    path.write_bytes(path.read_bytes()[:40])
    with pytest.raises(ValueError, match="w.npz: not a readable .npz parameter file"):
        load_params(path, net)


def test_a_crash_while_saving_keeps_the_old_file(tmp_path, monkeypatch):
    net, *_ = small_problem()
    path = save_params(tmp_path / "w.npz", net)
    good = path.read_bytes()

    def crash(*args, **kwargs):
        raise KeyboardInterrupt("power cut")

    monkeypatch.setattr(np, "savez", crash)
    with pytest.raises(KeyboardInterrupt):
        save_params(path, net)
    assert path.read_bytes() == good
    assert [p.name for p in tmp_path.iterdir()] == ["w.npz"]


def test_plot_needs_matplotlib_and_says_so(monkeypatch, tmp_path):
    from theanine.layers.training import History

    history = History({"loss": [1.0, 0.5]})
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    with pytest.raises(ImportError, match=r"pip install 'theanine\[viz\]'"):
        history.plot(tmp_path / "curves.png")
