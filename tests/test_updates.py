"""theanine.layers.updates: every rule for ten steps against numpy written from the papers."""

from __future__ import annotations

import numpy as np
import pytest

import theanine
import theanine.tensor as T
from theanine.layers import updates

# f(p) = 0.5 * sum(a * (p - c)^2) over two parameters: its gradient is a * (p - c)
A = [np.array([1.0, 2.0, 3.0, 0.5]), np.array([[0.3, 1.5, 2.5], [1.0, 4.0, 0.7]])]
C = [np.array([1.0, -2.0, 0.5, 3.0]), np.array([[2.0, -1.0, 0.0], [0.5, 1.5, -3.0]])]
START = [np.array([0.2, 0.4, -0.3, 1.0]), np.array([[-1.0, 0.5, 2.0], [0.0, -0.5, 1.0]])]
STEPS = 10


def numpy_grads(params):
    return [a * (p - c) for a, p, c in zip(A, params, C)]


def run_rule(make_updates, use_grads=False):
    """Ten steps of the theanine rule on the quadratic; returns the parameter values after each."""
    params = [theanine.shared(p.copy(), name=f"p{k}") for k, p in enumerate(START)]
    loss = sum(0.5 * T.sum(a * T.sqr(p - c)) for a, p, c in zip(A, params, C))
    loss_or_grads = theanine.grad(loss, params) if use_grads else loss
    step = theanine.function([], loss, updates=make_updates(loss_or_grads, params))
    history = []
    for _ in range(STEPS):
        step()
        history.append([p.get_value() for p in params])
    return history


def reference(step_fn, state_names):
    """Ten steps of a numpy rule `step_fn(p, g, state, t) -> p` with per-parameter state dicts."""
    params = [p.copy() for p in START]
    states = [{name: np.zeros_like(p) for name in state_names} for p in params]
    history = []
    for t in range(1, STEPS + 1):
        grads = numpy_grads(params)
        params = [step_fn(p, g, s, t) for p, g, s in zip(params, grads, states)]
        history.append([p.copy() for p in params])
    return history


def sgd_ref(lr):
    return lambda p, g, s, t: p - lr * g


def momentum_ref(lr, mu=0.9):
    def step(p, g, s, t):
        s["v"] = mu * s["v"] - lr * g
        return p + s["v"]

    return step


def nesterov_ref(lr, mu=0.9):
    def step(p, g, s, t):
        s["v"] = mu * s["v"] - lr * g
        return p + mu * s["v"] - lr * g

    return step


def adagrad_ref(lr=1.0, eps=1e-6):
    def step(p, g, s, t):
        s["r"] = s["r"] + g * g
        return p - lr * g / np.sqrt(s["r"] + eps)

    return step


def rmsprop_ref(lr=1.0, rho=0.9, eps=1e-6):
    def step(p, g, s, t):
        s["r"] = rho * s["r"] + (1 - rho) * g * g
        return p - lr * g / np.sqrt(s["r"] + eps)

    return step


def adadelta_ref(lr=1.0, rho=0.95, eps=1e-6):
    def step(p, g, s, t):
        s["eg2"] = rho * s["eg2"] + (1 - rho) * g * g
        dx = np.sqrt(s["edx2"] + eps) / np.sqrt(s["eg2"] + eps) * g
        s["edx2"] = rho * s["edx2"] + (1 - rho) * dx * dx
        return p - lr * dx

    return step


def adam_ref(lr=0.001, b1=0.9, b2=0.999, eps=1e-8):
    def step(p, g, s, t):
        s["m"] = b1 * s["m"] + (1 - b1) * g
        s["v"] = b2 * s["v"] + (1 - b2) * g * g
        alpha = lr * np.sqrt(1 - b2**t) / (1 - b1**t)
        return p - alpha * s["m"] / (np.sqrt(s["v"]) + eps)

    return step


def adamax_ref(lr=0.002, b1=0.9, b2=0.999, eps=1e-8):
    def step(p, g, s, t):
        s["m"] = b1 * s["m"] + (1 - b1) * g
        s["u"] = np.maximum(b2 * s["u"], np.abs(g))
        return p - lr / (1 - b1**t) * s["m"] / (s["u"] + eps)

    return step


def amsgrad_ref(lr=0.001, b1=0.9, b2=0.999, eps=1e-8):
    def step(p, g, s, t):
        s["m"] = b1 * s["m"] + (1 - b1) * g
        s["v"] = b2 * s["v"] + (1 - b2) * g * g
        s["vhat"] = np.maximum(s["vhat"], s["v"])
        alpha = lr * np.sqrt(1 - b2**t) / (1 - b1**t)
        return p - alpha * s["m"] / (np.sqrt(s["vhat"]) + eps)

    return step


CASES = {
    "sgd": (lambda l, p: updates.sgd(l, p, 0.1), sgd_ref(0.1), []),
    "momentum": (lambda l, p: updates.momentum(l, p, 0.05), momentum_ref(0.05), ["v"]),
    "momentum_0.5": (
        lambda l, p: updates.momentum(l, p, 0.05, momentum=0.5), momentum_ref(0.05, 0.5), ["v"]
    ),
    "nesterov": (lambda l, p: updates.nesterov_momentum(l, p, 0.05), nesterov_ref(0.05), ["v"]),
    "adagrad": (updates.adagrad, adagrad_ref(), ["r"]),
    "adagrad_lr": (
        lambda l, p: updates.adagrad(l, p, 0.1, epsilon=1e-3), adagrad_ref(0.1, 1e-3), ["r"]
    ),
    "rmsprop": (updates.rmsprop, rmsprop_ref(), ["r"]),
    "rmsprop_args": (
        lambda l, p: updates.rmsprop(l, p, 0.01, rho=0.8), rmsprop_ref(0.01, 0.8), ["r"]
    ),
    "adadelta": (updates.adadelta, adadelta_ref(), ["eg2", "edx2"]),
    "adam": (updates.adam, adam_ref(), ["m", "v"]),
    "adam_args": (
        lambda l, p: updates.adam(l, p, 0.1, beta1=0.8, beta2=0.99),
        adam_ref(0.1, 0.8, 0.99),
        ["m", "v"],
    ),
    "adamax": (updates.adamax, adamax_ref(), ["m", "u"]),
    "amsgrad": (lambda l, p: updates.amsgrad(l, p, 0.1), amsgrad_ref(0.1), ["m", "v", "vhat"]),
}


@pytest.mark.parametrize("name", list(CASES))
@pytest.mark.parametrize("use_grads", [False, True], ids=["loss", "grads"])
def test_update_rule_matches_numpy_for_ten_steps(name, use_grads):
    make_updates, step_fn, state_names = CASES[name]
    # the time step of adam & co. is floatX, as in Lasagne: float64 keeps 1 - beta2**t exact enough
    with theanine.config.change_flags(floatX="float64"):
        got = run_rule(make_updates, use_grads)
    want = reference(step_fn, state_names)
    for t, (got_t, want_t) in enumerate(zip(got, want)):
        for k, (g, w) in enumerate(zip(got_t, want_t)):
            assert g.dtype == np.float64
            where = f"{name}: step {t + 1}, parameter {k}"
            np.testing.assert_allclose(g, w, rtol=1e-6, atol=1e-9, err_msg=where)
    assert not np.allclose(got[-1][0], START[0])  # the rule moved the parameters


@pytest.mark.parametrize("name", ["adam", "adamax", "amsgrad", "rmsprop", "adadelta"])
def test_update_rules_in_float32(name):
    make_updates, step_fn, state_names = CASES[name]
    global START
    start64, START = START, [p.astype("float32") for p in START]
    try:
        got = run_rule(make_updates)
    finally:
        START = start64
    want = reference(step_fn, state_names)
    assert got[-1][0].dtype == np.float32
    for g, w in zip(got[-1], want[-1]):
        np.testing.assert_allclose(g, w, rtol=2e-4, atol=1e-5)


def test_updates_return_ordered_dicts_with_state_variables():
    p = theanine.shared(np.zeros(3), name="p")
    result = updates.adam(T.sum(T.sqr(p - 1)), [p])
    assert list(result)[0] is not p and p in result
    shapes = [v.get_value().shape for v in result]
    assert shapes.count((3,)) == 3 and shapes.count(()) == 1  # p, m, v and the time step


def test_update_argument_errors():
    p = theanine.shared(np.zeros(3), name="p")
    with pytest.raises(ValueError, match="got 2 gradient expressions for 1 parameters"):
        updates.sgd([p, p], [p], 0.1)
    x = T.vector("x")
    with pytest.raises(ValueError, match="need shared variables as params, got x"):
        updates.sgd(T.sum(x), [x], 0.1)


def test_apply_momentum_on_given_updates():
    p = theanine.shared(np.array([1.0, 2.0]), name="p")
    base = {p: p - 0.5}
    result = updates.apply_momentum(base, momentum=0.5)
    step = theanine.function([], [], updates=result)
    step()
    step()
    # v1 = -0.5, p1 = 0.5, 2.5-1=1.5; v2 = 0.5 * -0.5 - 0.5 = -0.75
    np.testing.assert_allclose(p.get_value(), [1.0 - 0.5 - 0.75, 2.0 - 0.5 - 0.75])


def test_norm_constraint_against_numpy():
    w_value = np.array([[3.0, 0.1, 1.0], [4.0, 0.2, -1.0]])  # column norms 5, ~0.22, ~1.41
    w = T.dmatrix("w")
    out = updates.norm_constraint(w, 1.0).eval({w: w_value})
    norms = np.sqrt((w_value**2).sum(axis=0, keepdims=True))
    expected = w_value * (np.clip(norms, 0, 1.0) / (1e-7 + norms))
    np.testing.assert_allclose(out, expected, rtol=1e-6)
    assert np.sqrt((out**2).sum(axis=0)).max() <= 1.0 + 1e-6
    t = T.dtensor4("t")
    t_value = np.random.default_rng(0).normal(size=(2, 3, 4, 5))
    out = updates.norm_constraint(t, 2.0).eval({t: t_value})
    norms = np.sqrt((t_value**2).sum(axis=(1, 2, 3), keepdims=True))
    np.testing.assert_allclose(out, t_value * np.clip(norms, 0, 2.0) / (1e-7 + norms), rtol=1e-6)
    with pytest.raises(ValueError, match="give norm_axes for a 1-d tensor"):
        updates.norm_constraint(T.dvector("v"), 1.0)


def test_total_norm_constraint_against_numpy():
    a_value, b_value = np.array([3.0, 4.0]), np.array([[12.0]])  # joint norm 13
    a, b = T.dvector("a"), T.dmatrix("b")
    scaled, norm = updates.total_norm_constraint([a, b], 6.5, return_norm=True)
    f = theanine.function([a, b], [*scaled, norm])
    got_a, got_b, got_norm = f(a_value, b_value)
    assert got_norm == pytest.approx(13.0)
    np.testing.assert_allclose(got_a, a_value * 6.5 / (13 + 1e-7))
    np.testing.assert_allclose(got_b, b_value * 6.5 / (13 + 1e-7))
    unchanged = updates.total_norm_constraint([a, b], 100.0)
    got = unchanged[0].eval({a: a_value, b: b_value})
    np.testing.assert_allclose(got, a_value * 13 / (13 + 1e-7))
