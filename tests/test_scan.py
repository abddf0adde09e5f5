"""scan, map, reduce, foldl, foldr: values against numpy loops, gradients against differences."""

from __future__ import annotations

import numpy as np
import pytest

import theanine
import theanine.tensor as T
from theanine.compiler.scan import foldl, foldr, map as scan_map, reduce as scan_reduce, scan, until
from theanine.graph.ops.scan import Scan
from theanine.graph.random import RandomStreams
from theanine.graph.var import toposort

from helpers import check_grad


def f64(value):
    """A float64 constant (Python floats would be floatX)."""
    return T.constant(value, dtype="float64")


RNG = np.random.default_rng(42)


def compile_py(inputs, outputs, **kwargs):
    return theanine.function(inputs, outputs, mode="py", **kwargs)


def elman(X, W, U, h0):
    """h_t = tanh(x_t @ U + h_{t-1} @ W)."""
    step = lambda x, h, W, U: T.tanh(T.dot(x, U) + T.dot(h, W))  # noqa: E731
    hs, updates = scan(step, sequences=X, outputs_info=h0, non_sequences=[W, U])
    assert not updates
    return hs


def elman_numpy(X, W, U, h0):
    h, out = h0, []
    for x in X:
        h = np.tanh(x @ U + h @ W)
        out.append(h)
    return np.array(out)


# -- values ------------------------------------------------------------------------------------
def test_elman_rnn_values_and_static_type():
    X, W, U, h0 = T.dmatrix("X"), T.dmatrix("W"), T.dmatrix("U"), T.dvector("h0")
    hs = elman(X, W, U, h0)
    assert hs.dtype == "float64" and hs.ndim == 2
    args = [RNG.normal(size=(5, 3)), RNG.normal(size=(4, 4)) * 0.5, RNG.normal(size=(3, 4)),
            RNG.normal(size=4)]
    out = compile_py([X, W, U, h0], hs)(*args)
    np.testing.assert_allclose(out, elman_numpy(*args), rtol=1e-12)
    assert out.shape == (5, 4)


def test_elman_rnn_gradients_for_weights_and_initial_state():
    X = RNG.normal(size=(4, 2))
    check_grad(lambda W, U, h0: elman(T.constant(X), W, U, h0),
               [RNG.normal(size=(3, 3)) * 0.5, RNG.normal(size=(2, 3)), RNG.normal(size=3)])
    # and through the sequence itself, with the loss on the last state only
    check_grad(lambda X, W: elman(X, W, T.constant(np.ones((2, 3))), T.constant(np.zeros(3)))[-1],
               [RNG.normal(size=(4, 2)), RNG.normal(size=(3, 3)) * 0.5])


def test_fibonacci_with_taps_minus_two_minus_one():
    f0 = T.lvector("f0")
    fib, _ = scan(lambda a, b: a + b, outputs_info=dict(initial=f0, taps=[-2, -1]), n_steps=10)
    out = fib.eval({f0: np.array([0, 1])})
    expected = [1, 2, 3, 5, 8, 13, 21, 34, 55, 89]
    np.testing.assert_array_equal(out, expected)
    assert out.dtype == np.int64 and fib.type.shape == (10,)


def test_output_taps_gradient_reaches_the_initial_rows():
    def fn(init, c):
        out, _ = scan(lambda a, b, c: a * c + T.sin(b),
                      outputs_info=dict(initial=init, taps=[-3, -1]),
                      non_sequences=c, n_steps=5)
        return out

    check_grad(fn, [RNG.normal(size=(3, 2)), RNG.normal(size=2)])


def test_a_loss_on_the_last_state_starts_the_backward_loop_with_its_cotangent():
    """The cotangent of hs[-1] is zero but on the last row: it becomes the backward window's
    initial value instead of a sequence of zero rows; gradients as central differences, with one
    tap and with taps [-3, -1] (the window's last of three rows)."""
    def last(init, c):
        out, _ = scan(lambda a, b, c: a * c + T.sin(b),
                      outputs_info=dict(initial=init, taps=[-3, -1]), non_sequences=c, n_steps=5)
        return out[-1]

    check_grad(last, [RNG.normal(size=(3, 2)), RNG.normal(size=2)])
    X, W, h0 = T.dmatrix("X"), T.dmatrix("W"), T.dvector("h0")
    hs, _ = scan(lambda x, h: T.tanh(T.dot(h, W) + x), sequences=X, outputs_info=h0)
    for cost, seeded in ((hs[-1].sum(), True), (hs.sum(), False), ((hs[-1] + hs[0]).sum(), False)):
        grads = theanine.grad(cost, [W, h0])
        backward = [v for v in toposort(grads) if isinstance(v.op, Scan) and v.op.n_states > 1]
        assert len(backward) == 1
        names = [p.name for p in backward[0].op.inner_inputs]
        assert ("g_state" not in names) == seeded, names
        args = [RNG.normal(size=(4, 3)), RNG.normal(size=(3, 3)) * 0.5, RNG.normal(size=3)]
        cost_f = theanine.function([X, W, h0], cost, mode="py")
        numeric = [_central_difference(cost_f, args, k) for k in (1, 2)]  # float64
        for mode in ("py", "numba"):
            got = theanine.function([X, W, h0], grads, mode=mode)(*args)
            for g, n in zip(got, numeric):
                np.testing.assert_allclose(g, n, rtol=1e-6, atol=1e-8)


def _central_difference(f, args: list, k: int, step: float = 1e-6) -> np.ndarray:
    """d f(*args) / d args[k] by central differences."""
    out = np.zeros_like(args[k])
    for index in np.ndindex(args[k].shape):
        moved = []
        for sign in (1, -1):
            shifted = args[k].copy()
            shifted[index] += sign * step
            moved.append(f(*args[:k], shifted, *args[k + 1 :]))
        out[index] = (moved[0] - moved[1]) / (2 * step)
    return out


def test_sequence_taps_minus_one_plus_one():
    x = T.dvector("x")
    out, _ = scan(lambda a, b: a * 10 + b, sequences=dict(input=x, taps=[-1, 1]))
    values = np.arange(6.0)
    # step t reads x[t] (tap -1) and x[t + 2] (tap +1): len(x) - 2 steps
    np.testing.assert_allclose(out.eval({x: values}), values[:-2] * 10 + values[2:])
    check_grad(lambda x: scan(lambda a, b, c: a * T.cos(b) + c,
                              sequences=dict(input=x, taps=[-1, 1, 0]))[0],
               [RNG.normal(size=(6, 2))])


def test_go_backwards_values_and_gradient():
    x, s0 = T.dvector("x"), T.dscalar("s0")
    out, _ = scan(lambda a, s: s * 0.5 + a, sequences=x, outputs_info=s0, go_backwards=True)
    values, s = RNG.normal(size=5), 1.5
    expected = []
    for a in values[::-1]:
        s = s * 0.5 + a
        expected.append(s)
    np.testing.assert_allclose(out.eval({x: values, s0: 1.5}), expected)
    check_grad(lambda x, s0: scan(lambda a, s: T.tanh(s * a), sequences=x, outputs_info=s0,
                                  go_backwards=True)[0], [RNG.normal(size=4), np.array(0.7)])


def test_until_stops_after_the_step_where_the_condition_holds():
    limit = T.dscalar("limit")
    out, _ = scan(lambda p: (p * 2, until(p * 2 > limit)), outputs_info=f64(1.0),
                  n_steps=100)
    np.testing.assert_allclose(out.eval({limit: 50.0}), [2, 4, 8, 16, 32, 64])
    np.testing.assert_allclose(out.eval({limit: 1000.0}), 2.0 ** np.arange(1, 11))
    # the gradient through an early-stopped loop covers only the steps that ran
    a = T.dscalar("a")
    stopped, _ = scan(lambda p, a: (p * a, until(p * a > 10)), outputs_info=f64(1.0),
                      non_sequences=a, n_steps=50)
    grad = theanine.grad(stopped[-1], a)
    value, steps = compile_py([a], [grad, stopped.shape[0]])(1.5)
    assert steps == 6  # 1.5 ** 6 > 10
    np.testing.assert_allclose(value, 6 * 1.5**5)


def test_map_reduce_foldl_foldr():
    x, y = T.dvector("x"), T.dvector("y")
    values, other = RNG.normal(size=5), RNG.normal(size=5)
    squares, _ = scan_map(lambda a, b: a * b, sequences=[x, y])
    np.testing.assert_allclose(squares.eval({x: values, y: other}), values * other)
    total, _ = scan_reduce(lambda a, s: s + a, sequences=x, outputs_info=f64(0.0))
    assert total.ndim == 0
    np.testing.assert_allclose(total.eval({x: values}), values.sum())
    # foldl and foldr differ for a non-commutative step: s -> 2 s + a
    left, _ = foldl(lambda a, s: 2 * s + a, sequences=x, outputs_info=f64(0.0))
    right, _ = foldr(lambda a, s: 2 * s + a, sequences=x, outputs_info=f64(0.0))
    expected_left = expected_right = 0.0
    for a in values:
        expected_left = 2 * expected_left + a
    for a in values[::-1]:
        expected_right = 2 * expected_right + a
    np.testing.assert_allclose(left.eval({x: values}), expected_left)
    np.testing.assert_allclose(right.eval({x: values}), expected_right)


def test_several_outputs_with_none_scalar_and_tensor_states():
    x, v0 = T.dvector("x"), T.dmatrix("v0")

    def step(a, count, v):
        return count + 1, v * a, (v * a).sum()

    (counts, vs, sums), _ = scan(step, sequences=x,
                                 outputs_info=[T.constant(np.int64(0)), v0, None])
    values, start = RNG.normal(size=4), RNG.normal(size=(2, 3))
    f = compile_py([x, v0], [counts, vs, sums])
    c, v, s = f(values, start)
    np.testing.assert_array_equal(c, [1, 2, 3, 4])
    expected = np.array([start * np.prod(values[: k + 1]) for k in range(4)])
    np.testing.assert_allclose(v, expected)
    np.testing.assert_allclose(s, expected.sum(axis=(1, 2)))
    assert v.shape == (4, 2, 3) and c.dtype == np.int64


def test_lstm_step_values_and_gradient():
    n_in, n_hid, steps, batch = 3, 2, 4, 5

    def lstm(X, W, U, b, h0, c0):
        def step(x, h, c, W, U, b):
            z = T.dot(x, W) + T.dot(h, U) + b
            i = T.nnet.sigmoid(z[:, :n_hid])
            f = T.nnet.sigmoid(z[:, n_hid : 2 * n_hid])
            o = T.nnet.sigmoid(z[:, 2 * n_hid : 3 * n_hid])
            g = T.tanh(z[:, 3 * n_hid :])
            c_new = f * c + i * g
            return o * T.tanh(c_new), c_new

        (hs, cs), _ = scan(step, sequences=X, outputs_info=[h0, c0], non_sequences=[W, U, b])
        return hs

    def sigmoid(z):
        return 1 / (1 + np.exp(-z))

    args = [RNG.normal(size=(steps, batch, n_in)), RNG.normal(size=(n_in, 4 * n_hid)),
            RNG.normal(size=(n_hid, 4 * n_hid)), RNG.normal(size=4 * n_hid),
            RNG.normal(size=(batch, n_hid)), RNG.normal(size=(batch, n_hid))]
    X, W, U, b, h, c = args
    expected = []
    for x in X:
        z = x @ W + h @ U + b
        i, f, o, g = sigmoid(z[:, :2]), sigmoid(z[:, 2:4]), sigmoid(z[:, 4:6]), np.tanh(z[:, 6:])
        c = f * c + i * g
        h = o * np.tanh(c)
        expected.append(h)
    symbols = [T.dtensor3(), T.dmatrix(), T.dmatrix(), T.dvector(), T.dmatrix(), T.dmatrix()]
    np.testing.assert_allclose(compile_py(symbols, lstm(*symbols))(*args), expected, rtol=1e-10)
    small = [a[:, :2] if k == 0 else a for k, a in enumerate(args)]
    small[0] = args[0][:3, :2]
    small[4], small[5] = args[4][:2], args[5][:2]
    check_grad(lstm, small, rtol=1e-4)


def test_shared_variables_read_inside_the_step_are_found():
    W = theanine.shared(RNG.normal(size=(3, 3)) * 0.5, name="W")
    count = theanine.shared(np.int64(0), name="count")
    X = T.dmatrix("X")

    def step(x, h):
        return T.tanh(T.dot(h, W) + x), {count: count + 1}

    hs, updates = scan(step, sequences=X, outputs_info=T.zeros((3,), dtype="float64"))
    assert list(updates) == [count]
    scan_node = next(v for v in toposort([hs]) if isinstance(v.op, Scan))
    assert W in scan_node.inputs  # an outer input, so grad and function see it
    values = RNG.normal(size=(4, 3))
    f = compile_py([X], [hs, theanine.grad(hs.sum(), W)], updates=updates)
    out, gw = f(values)
    np.testing.assert_allclose(out, elman_numpy(values, W.get_value(), np.eye(3), np.zeros(3)))
    assert count.get_value() == 4
    f(values)
    assert count.get_value() == 8
    check_grad(lambda w: scan(lambda x, h, w: T.tanh(T.dot(h, w) + x), sequences=T.constant(values),
                              outputs_info=T.zeros((3,), dtype="float64"), non_sequences=w)[0],
               [W.get_value()])


def test_random_draws_inside_the_step_advance_and_reproduce():
    def build(seed):
        srng = RandomStreams(seed)
        noise, updates = scan(lambda h: h + srng.normal((2,), dtype="float64"),
                              outputs_info=T.zeros((2,), dtype="float64"), n_steps=3)
        return compile_py([], noise, updates=updates), updates

    f, updates = build(7)
    assert len(updates) == 1
    first, second = f(), f()
    steps = np.diff(np.vstack([np.zeros((1, 2)), first]), axis=0)
    assert len({tuple(r) for r in steps}) == 3  # every step draws new numbers
    assert not np.allclose(first, second)  # and the state advances between calls
    g, _ = build(7)
    np.testing.assert_array_equal(g(), first)
    np.testing.assert_array_equal(g(), second)


def test_truncate_gradient_keeps_the_last_steps():
    X, W = T.dmatrix("X"), T.dmatrix("W")
    step = lambda x, h, W: T.tanh(T.dot(h, W) + x)  # noqa: E731
    h0 = T.zeros((3,), dtype="float64")
    full, _ = scan(step, sequences=X, outputs_info=h0, non_sequences=W)
    cut, _ = scan(step, sequences=X, outputs_info=h0, non_sequences=W, truncate_gradient=2)
    f = compile_py([X, W], [theanine.grad(full[-1].sum(), X), theanine.grad(cut[-1].sum(), X)])
    g_full, g_cut = f(RNG.normal(size=(5, 3)), RNG.normal(size=(3, 3)))
    np.testing.assert_allclose(g_cut[3:], g_full[3:])
    np.testing.assert_array_equal(g_cut[:3], 0)


def test_rop_through_scan():
    W, X, h0, V = T.dmatrix("W"), T.dmatrix("X"), T.dvector("h0"), T.dmatrix("V")
    hs = elman(X, W, T.constant(np.eye(3)), h0)
    jvp = T.Rop(hs, W, V)
    values = {W: RNG.normal(size=(3, 3)) * 0.5, X: RNG.normal(size=(4, 3)), h0: RNG.normal(size=3),
              V: RNG.normal(size=(3, 3))}
    eps = 1e-6
    plus = hs.eval({**values, W: values[W] + eps * values[V]})
    minus = hs.eval({**values, W: values[W] - eps * values[V]})
    np.testing.assert_allclose(jvp.eval(values), (plus - minus) / (2 * eps), rtol=1e-6, atol=1e-8)


def test_nested_scan_and_closure_over_an_outer_placeholder():
    M = T.dmatrix("M")

    def row_sums(row, scale):
        total, _ = scan_reduce(lambda a, s: s + a * scale, sequences=row,
                               outputs_info=f64(0.0))
        return total

    sums, _ = scan(row_sums, sequences=M, non_sequences=T.dscalar("scale"))
    scale = next(v for v in toposort([sums]) if v.name == "scale")
    values = RNG.normal(size=(3, 4))
    np.testing.assert_allclose(sums.eval({M: values, scale: 2.0}), 2 * values.sum(axis=1))
    check_grad(lambda m: scan(lambda r: scan_reduce(lambda a, s: s * 0.5 + T.sin(a), sequences=r,
                                                   outputs_info=f64(0.0))[0],
                              sequences=m)[0], [RNG.normal(size=(2, 3))])


# -- bad input -----------------------------------------------------------------------------------
def test_wrong_number_of_outputs_names_outputs_info():
    x = T.dvector("x")
    with pytest.raises(ValueError, match=r"returns 2 output\(s\), but outputs_info has 1 entries"):
        scan(lambda a, s: (s + a, s * a), sequences=x, outputs_info=f64(0.0))


def test_step_returning_a_non_variable():
    message = "output 0 of the step function must be a symbolic variable, got str"
    with pytest.raises(TypeError, match=message):
        scan(lambda a: "oops", sequences=T.dvector("x"))


def test_unreadable_return_value():
    x = T.dvector("x")
    with pytest.raises(ValueError, match="cannot read the step function's return value"):
        scan(lambda a: (until(a > 0), a), sequences=x)


def test_state_dtype_change_names_the_output():
    x = T.dvector("x")
    h0 = T.fscalar("h0")
    with pytest.raises(TypeError, match=r"output 0 \('h0'\) has initial value of dtype float32, "
                                        r"but the step "
                                        r"function returns dtype float64"):
        scan(lambda a, h: h + a, sequences=x, outputs_info=h0)


def test_state_ndim_and_static_shape_change():
    x = T.dvector("x")
    h0 = T.dvector("h0")
    message = r"returns .* with 2 dimension\(s\) .* for output 0 \('h0'\)"
    with pytest.raises(TypeError, match=message):
        scan(lambda a, h: T.outer(h, h), sequences=x, outputs_info=h0)
    fixed = T.constant(np.zeros(3))
    message = r"output 0 has initial shape \(3,\), .* returns shape \(4,\)"
    with pytest.raises(ValueError, match=message):
        scan(lambda a, h: T.constant(np.ones(4)) * a, sequences=x, outputs_info=fixed)


def test_state_shape_change_at_run_time_changes_no_shared_variable():
    x = T.dvector("x")
    count = theanine.shared(np.int64(0), name="count")
    out, updates = scan(lambda a, h: (T.concatenate([h, h])[: a.astype("int64") + 1],
                                      {count: count + 1}),
                        sequences=x, outputs_info=T.dvector("h0"))
    h0 = next(v for v in toposort([out]) if v.name == "h0")
    f = compile_py([x, h0], out, updates=updates)
    with pytest.raises(ValueError, match=r"output 0 \('h0'\) changed shape between steps: its "
                                         r"initial value "
                                         r"has shape \(2,\), step 0 returned shape \(3,\)"):
        f(np.array([2.0, 1.0]), np.ones(2))
    assert count.get_value() == 0


def test_sequences_of_different_lengths_run_as_many_steps_as_the_shortest():
    """Theano's rule (its tutorial's polynomial pairs coefficients with T.arange(10000))."""
    b = T.constant(np.arange(8.0).reshape(4, 2))
    c = T.constant(np.ones((5, 2)))
    out, _ = scan(lambda x, y: x + y, sequences=[b, c])
    assert out.type.shape[0] == 4
    np.testing.assert_array_equal(out.eval(), np.arange(8.0).reshape(4, 2) + 1)
    coefficients = T.dvector("coefficients")
    x = T.dscalar("x")
    components, _ = scan(lambda coefficient, power, free: coefficient * (free**power),
                         sequences=[coefficients, T.arange(10000)], non_sequences=x)
    polynomial = components.sum()
    f = theanine.function([coefficients, x], polynomial)
    assert f(np.array([1.0, 0.0, 2.0]), 3.0) == pytest.approx(19.0)


def test_sequence_shorter_than_n_steps():
    with pytest.raises(ValueError, match=r"sequence 0 gives 4 steps, fewer than n_steps=6"):
        scan(lambda x: x * 2, sequences=T.constant(np.zeros(4)), n_steps=6)


def test_output_taps_reaching_before_the_start():
    with pytest.raises(ValueError, match=r"output 0 has taps \[-3, -1\], which reach 3 steps "
                                         r"before the start, "
                                         r"but its initial value has only 2 row"):
        scan(lambda a, b: a + b,
             outputs_info=dict(initial=T.constant(np.zeros((2, 3))), taps=[-3, -1]),
             n_steps=4)
    init = T.dmatrix("init")
    out, _ = scan(lambda a, b: a + b, outputs_info=dict(initial=init, taps=[-3, -1]), n_steps=4)
    with pytest.raises(ValueError, match=r"output 0 \(.init.\) has taps \[-3, -1\], which "
                                         r"reach 3 steps before the start, but its initial value "
                                         r"has 2 row"):
        out.eval({init: np.zeros((2, 3))})
    with pytest.raises(ValueError, match=r"taps of output 0 .* must be negative"):
        scan(lambda a: a, outputs_info=dict(initial=init, taps=[1]), n_steps=2)


def test_n_steps_needed_without_sequences():
    with pytest.raises(ValueError, match="give n_steps or at least one sequence"):
        scan(lambda h: h * 2, outputs_info=T.dscalar("h"))


def test_strict_rejects_free_variables():
    w = T.dscalar("w")
    message = r"strict=True.*reads 'w', which is not passed in non_sequences"
    with pytest.raises(ValueError, match=message):
        scan(lambda a: a * w, sequences=T.dvector("x"), strict=True)


def test_the_step_gets_the_non_sequences_themselves_so_it_can_differentiate():
    # Theano's jacobian: the gradient of y[i] with respect to x, taken inside the step
    x = T.dvector("x")
    y = T.exp(x) * x.sum()
    rows, _ = scan(lambda i, y, x: theanine.grad(y[i], x), sequences=T.arange(y.shape[0]),
                   non_sequences=[y, x])
    values = np.array([0.1, 0.2, -0.3])
    expected = np.diag(np.exp(values)) * values.sum() + np.exp(values)[:, None]
    np.testing.assert_allclose(rows.eval({x: values}), expected, rtol=1e-12)


def test_return_value_combinations_and_return_list():
    x = T.dvector("x")
    count = theanine.shared(np.int64(0), name="count")
    (out,), updates = scan(lambda a: (a * 2, {count: count + 1}, until(a > 1)), sequences=x,
                           return_list=True)
    f = compile_py([x], out, updates=updates)
    np.testing.assert_allclose(f(np.array([0.5, 2.0, 3.0])), [1.0, 4.0])
    assert count.get_value() == 2
    only_updates, updates = scan(lambda a: {count: count + a.astype("int64")}, sequences=x)
    assert only_updates == [] and list(updates) == [count]


def test_pickled_function_with_a_scan_runs():
    import pickle

    X, W, U, h0 = T.dmatrix("X"), T.dmatrix("W"), T.dmatrix("U"), T.dvector("h0")
    f = compile_py([X, W, U, h0], elman(X, W, U, h0))
    args = [RNG.normal(size=(3, 2)), RNG.normal(size=(4, 4)), RNG.normal(size=(2, 4)),
            RNG.normal(size=4)]
    np.testing.assert_allclose(pickle.loads(pickle.dumps(f))(*args), f(*args))


def test_a_non_sequence_the_step_does_not_use_is_disconnected():
    x, w, v = T.dvector("x"), T.dscalar("w"), T.dscalar("v")
    out, _ = scan(lambda a, w, v: a * w, sequences=x, non_sequences=[w, v])
    with pytest.raises(theanine.compiler.autodiff.DisconnectedInputError, match="graph.*: v:"):
        theanine.grad(out.sum(), v)
    gw, gv = theanine.grad(out.sum(), [w, v], disconnected_inputs="ignore")
    values = {x: np.arange(3.0), w: 2.0, v: 5.0}
    assert gw.eval(values) == 3.0
    assert gv.eval(values) == 0.0


def test_negative_n_steps_runs_backwards_and_taps_with_go_backwards_have_gradients():
    x = T.dvector("x")
    backwards, _ = scan(lambda v: v * 2, sequences=x, n_steps=-3)
    np.testing.assert_allclose(backwards.eval({x: np.arange(5.0)}), [8.0, 6.0, 4.0])

    def fn(x, h):
        return scan(lambda a, b, s: T.tanh(s * a + b), sequences=dict(input=x, taps=[-1, 1]),
                    outputs_info=h, n_steps=3, go_backwards=True)[0]

    check_grad(fn, [RNG.normal(size=(7, 2)), RNG.normal(size=2)])
