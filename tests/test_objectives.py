"""theanine.layers.objectives and regularization against numpy."""

from __future__ import annotations

import numpy as np
import pytest

import theanine.tensor as T
from theanine.graph.var import input_var
from theanine.layers import DenseLayer, InputLayer, objectives, regularization
from theanine.layers.regularization import l1, l2
from tests.helpers import check_grad

RNG = np.random.default_rng(0)


def probabilities(*shape):
    e = np.exp(RNG.normal(size=shape))
    return e / e.sum(axis=-1, keepdims=True)


def test_crossentropies_and_squared_error():
    p_value, t_index = probabilities(4, 3), np.array([0, 2, 1, 2], dtype="int32")
    p, t = T.dmatrix("p"), T.ivector("t")
    got = objectives.categorical_crossentropy(p, t).eval({p: p_value, t: t_index})
    np.testing.assert_allclose(got, -np.log(p_value[np.arange(4), t_index]), rtol=1e-7)
    t_dist = T.dmatrix("td")
    dist = probabilities(4, 3)
    got = objectives.categorical_crossentropy(p, t_dist).eval({p: p_value, t_dist: dist})
    np.testing.assert_allclose(got, -(dist * np.log(p_value)).sum(axis=1), rtol=1e-7)
    q_value = RNG.uniform(0.05, 0.95, size=(4, 3))
    y_value = RNG.integers(0, 2, size=(4, 3)).astype("float64")
    q, y = T.dmatrix("q"), T.dmatrix("y")
    got = objectives.binary_crossentropy(q, y).eval({q: q_value, y: y_value})
    expected = -(y_value * np.log(q_value) + (1 - y_value) * np.log(1 - q_value))
    np.testing.assert_allclose(got, expected, rtol=1e-7)
    got = objectives.squared_error(q, y).eval({q: q_value, y: y_value})
    np.testing.assert_allclose(got, (q_value - y_value) ** 2, rtol=1e-7)


def test_single_column_predictions_align_with_target_vectors():
    q = input_var(T.TensorType("float64", (None, 1)), "q")  # one static column
    y = T.dvector("y")
    q_value, y_value = np.array([[0.2], [0.9], [0.6]]), np.array([0.0, 1.0, 0.0])
    loss = objectives.binary_crossentropy(q, y)
    assert loss.ndim == 2
    expected = -(y_value[:, None] * np.log(q_value) + (1 - y_value[:, None]) * np.log(1 - q_value))
    np.testing.assert_allclose(loss.eval({q: q_value, y: y_value}), expected, rtol=1e-7)
    accuracy = objectives.binary_accuracy(q, y).eval({q: q_value, y: y_value})
    np.testing.assert_array_equal(accuracy.ravel(), [1, 1, 0])


def test_hinge_losses():
    s_value = RNG.normal(size=(5, 4))
    t_value = np.array([0, 3, 1, 1, 2], dtype="int32")
    s, t = T.dmatrix("s"), T.ivector("t")
    correct = s_value[np.arange(5), t_value]
    masked = s_value.copy()
    masked[np.arange(5), t_value] = -np.inf
    expected = np.maximum(0, masked.max(axis=1) - correct + 1.0)
    got = objectives.multiclass_hinge_loss(s, t).eval({s: s_value, t: t_value})
    np.testing.assert_allclose(got, expected)
    np.testing.assert_allclose(objectives.hinge(s, t).eval({s: s_value, t: t_value}), expected)
    one_hot = T.dmatrix("oh")
    loss = objectives.multiclass_hinge_loss(s, one_hot, delta=0.5)
    got = loss.eval({s: s_value, one_hot: np.eye(4)[t_value]})
    np.testing.assert_allclose(got, np.maximum(0, masked.max(axis=1) - correct + 0.5))
    with pytest.raises(TypeError, match="targets must have 1 .* or 2 .* got 3"):
        objectives.multiclass_hinge_loss(s, T.dtensor3())
    v_value, y_value = RNG.normal(size=6), np.array([0, 1, 1, 0, 1, 0.0])
    v, y = T.dvector("v"), T.dvector("y")
    expected = np.maximum(0, 1 - v_value * (2 * y_value - 1))
    got = objectives.binary_hinge_loss(v, y, log_odds=True).eval({v: v_value, y: y_value})
    np.testing.assert_allclose(got, expected)
    p_value = RNG.uniform(0.1, 0.9, size=6)
    got = objectives.binary_hinge_loss(v, y, log_odds=False).eval({v: p_value, y: y_value})
    expected = np.maximum(0, 1 - np.log(p_value / (1 - p_value)) * (2 * y_value - 1))
    np.testing.assert_allclose(got, expected)
    with pytest.warns(FutureWarning, match="log_odds"):
        objectives.binary_hinge_loss(v, y)


def test_kl_divergence():
    p_value, t_value = probabilities(3, 4), probabilities(3, 4)
    t_value[0, 1] = 0.0  # 0 * log 0 counts as 0
    p, t = T.dmatrix("p"), T.dmatrix("t")
    got = objectives.kl_divergence(p, t).eval({p: p_value, t: t_value})
    safe = np.where(t_value > 0, t_value, 1.0)
    expected = (t_value * (np.log(safe) - np.log(p_value))).sum(axis=1)
    np.testing.assert_allclose(got, expected, rtol=1e-7)


def test_objective_gradients():
    t_value = np.array([1, 0, 2], dtype="int32")
    scores = RNG.normal(size=(3, 4))
    check_grad(lambda s: objectives.multiclass_hinge_loss(s, T.constant(t_value)), [scores])
    target = probabilities(3, 4)
    check_grad(lambda p: objectives.kl_divergence(p, T.constant(target)), [probabilities(3, 4)])
    y = np.array([0.0, 1.0, 1.0])
    log_odds = np.array([0.3, -0.4, 2.0])
    check_grad(lambda v: objectives.binary_hinge_loss(v, T.constant(y), log_odds=True), [log_odds])


def test_aggregate_modes():
    loss_value, w_value = RNG.uniform(size=(3, 4)), RNG.uniform(size=(3, 4))
    loss, w = T.dmatrix("loss"), T.dmatrix("w")
    feed = {loss: loss_value, w: w_value}
    assert objectives.aggregate(loss).eval({loss: loss_value}) == pytest.approx(loss_value.mean())
    total = objectives.aggregate(loss, mode="sum").eval({loss: loss_value})
    assert total == pytest.approx(loss_value.sum())
    assert objectives.aggregate(loss, w).eval(feed) == pytest.approx((loss_value * w_value).mean())
    total = objectives.aggregate(loss, w, mode="sum").eval(feed)
    assert total == pytest.approx((loss_value * w_value).sum())
    got = objectives.aggregate(loss, w, mode="normalized_sum").eval(feed)
    assert got == pytest.approx((loss_value * w_value).sum() / w_value.sum())
    with pytest.raises(ValueError, match="normalized_sum' needs weights"):
        objectives.aggregate(loss, mode="normalized_sum")
    message = "mode must be 'mean', 'sum' or 'normalized_sum', got 'max'"
    with pytest.raises(ValueError, match=message):
        objectives.aggregate(loss, mode="max")


def test_accuracies():
    p_value = np.array([[0.1, 0.5, 0.4], [0.7, 0.2, 0.1], [0.25, 0.3, 0.45], [0.2, 0.5, 0.3]])
    t_value = np.array([2, 0, 1, 0], dtype="int32")
    p, t = T.dmatrix("p"), T.ivector("t")
    top1 = objectives.categorical_accuracy(p, t).eval({p: p_value, t: t_value})
    np.testing.assert_array_equal(np.asarray(top1, dtype=int), [0, 1, 0, 0])
    top2 = objectives.categorical_accuracy(p, t, top_k=2).eval({p: p_value, t: t_value})
    np.testing.assert_array_equal(np.asarray(top2, dtype=int), [1, 1, 1, 0])
    one_hot = T.dmatrix("oh")
    accuracy = objectives.categorical_accuracy(p, one_hot)
    got = accuracy.eval({p: p_value, one_hot: np.eye(3)[t_value]})
    np.testing.assert_array_equal(np.asarray(got, dtype=int), [0, 1, 0, 0])
    with pytest.raises(TypeError, match="targets must have 1 .* or 2 .* got 0"):
        objectives.categorical_accuracy(p, T.iscalar())
    q, y = T.dvector("q"), T.dvector("y")
    accuracy = objectives.binary_accuracy(q, y, threshold=0.4)
    got = accuracy.eval({q: np.array([0.3, 0.4, 0.9]), y: np.array([0, 0, 1.0])})
    np.testing.assert_array_equal(np.asarray(got, dtype=int), [1, 0, 1])


def test_regularization_penalties():
    l_in = InputLayer((None, 4))
    h = DenseLayer(l_in, 3)
    out = DenseLayer(h, 2)
    w1, w2 = h.W.get_value().astype("float64"), out.W.get_value().astype("float64")
    l2_total = regularization.regularize_network_params(out, regularization.l2).eval()
    # biases are not regularizable
    assert l2_total == pytest.approx((w1**2).sum() + (w2**2).sum(), rel=1e-5)
    l1_total = regularization.regularize_network_params(out, regularization.l1).eval()
    assert l1_total == pytest.approx(np.abs(w1).sum() + np.abs(w2).sum(), rel=1e-5)
    one = regularization.regularize_layer_params(h, regularization.l2).eval()
    assert one == pytest.approx((w1**2).sum(), rel=1e-5)
    both = regularization.regularize_layer_params([h, out], regularization.l1).eval()
    assert both == pytest.approx(l1_total, rel=1e-5)
    coefficients = {h: 0.1, out: 0.5}
    weighted = regularization.regularize_layer_params_weighted(coefficients, l2).eval()
    assert weighted == pytest.approx(0.1 * (w1**2).sum() + 0.5 * (w2**2).sum(), rel=1e-5)
    trainable = {"trainable": True}
    with_bias = regularization.regularize_layer_params(out, l1, tags=trainable).eval()
    assert with_bias == pytest.approx(np.abs(w2).sum() + np.abs(out.b.get_value()).sum(), rel=1e-5)
    x = T.dvector("x")
    penalty = regularization.apply_penalty(x, regularization.l1)
    assert penalty.eval({x: np.array([-1.0, 2.0])}) == 3.0
