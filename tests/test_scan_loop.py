"""Mode numba runs a whole scan as one generated numba loop (kernels/numba/scan_loop.py)."""

from __future__ import annotations

import re
import warnings

import numpy as np
import pytest

import theanine
import theanine.tensor as T
from theanine.graph.ops.scan import Scan

RNG = np.random.default_rng(7)


def _scan_runners(f) -> list:
    return [run[0] for run in f._plan.runs if isinstance(run[4].op, Scan)]


def _compiled(f) -> list[bool]:
    """Per Scan node of a numba function: does it run as one compiled loop?"""
    return [hasattr(runner, "loop") for runner in _scan_runners(f)]


def _both(inputs, outputs, *args, updates=None):
    """(numba results, py results, the numba function)."""
    f = theanine.function(inputs, outputs, mode="numba", updates=updates)
    g = theanine.function(inputs, outputs, mode="py", updates=updates)
    return f(*args), g(*args), f


def _elman():
    x, h0 = T.tensor3("x"), T.matrix("h0")
    w = theanine.shared(RNG.normal(size=(4, 5)).astype("float32") * 0.5, name="w")
    u = theanine.shared(RNG.normal(size=(5, 5)).astype("float32") * 0.5, name="u")
    b = theanine.shared(RNG.normal(size=5).astype("float32"), name="b")

    def step(x_t, h):
        return T.tanh(T.dot(x_t, w) + T.dot(h, u) + b)

    hs, _ = theanine.scan(step, sequences=x, outputs_info=h0)
    return x, h0, (w, u, b), hs


def test_elman_rnn_and_its_gradient_run_as_compiled_loops():
    x, h0, params, hs = _elman()
    cost = T.sum(hs[-1] ** 2) + T.mean(hs)
    grads = theanine.grad(cost, [*params, h0])
    xv = RNG.normal(size=(6, 3, 4)).astype("float32")
    hv = RNG.normal(size=(3, 5)).astype("float32")
    got, want, f = _both([x, h0], [hs, cost, *grads], xv, hv)
    assert _compiled(f) and all(_compiled(f))
    for a, b in zip(got, want):
        np.testing.assert_allclose(a, b, rtol=2e-4, atol=2e-5)
    assert got[0].shape == (6, 3, 5) and got[0].dtype == np.float32


def test_fibonacci_scalar_states_with_two_taps():
    a = T.lvector("a")
    fib, _ = theanine.scan(lambda x1, x2: x1 + x2,
                           outputs_info=dict(initial=a, taps=[-2, -1]), n_steps=10)
    got, want, f = _both([a], fib, np.array([1, 1]))
    assert _compiled(f) == [True]
    np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(got, [2, 3, 5, 8, 13, 21, 34, 55, 89, 144])


def test_until_stops_early():
    x = T.dscalar("x")
    values, _ = theanine.scan(lambda v: (v * 2, theanine.scan_module.until(v * 2 > 100)),
                              outputs_info=x, n_steps=50)
    got, want, f = _both([x], values, 3.0)
    assert _compiled(f) == [True]
    np.testing.assert_array_equal(got, want)
    assert got.tolist() == [6, 12, 24, 48, 96, 192]


def test_sequence_taps_nitsot_outputs_and_go_backwards():
    s = T.matrix("s")
    out, _ = theanine.scan(lambda prev, nxt: (prev * nxt).sum(axis=0) - prev.max(),
                           sequences=dict(input=s, taps=[-1, 1]))
    back, _ = theanine.scan(lambda row, acc: acc + row, sequences=s,
                            outputs_info=T.zeros_like(s[0]), go_backwards=True)
    sv = RNG.normal(size=(7, 4)).astype("float32")
    got, want, f = _both([s], [out, back], sv)
    assert all(_compiled(f)) and len(_compiled(f)) == 2
    for a, b in zip(got, want):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    expected = [(sv[k - 1] * sv[k + 1]).sum() - sv[k - 1].max() for k in range(1, 6)]
    np.testing.assert_allclose(got[0], expected, rtol=1e-5)
    np.testing.assert_allclose(got[1][-1], sv.sum(axis=0), rtol=1e-5)


def test_map_with_slices_transposes_and_inc_subtensor():
    m = T.dtensor3("m")

    def step(x):
        y = T.inc_subtensor(x[:, 1:3], x[:, :2].T.T * 2.0)
        return T.dot(y.T, y)[0], y.dimshuffle(1, 0).sum(axis=1, keepdims=True)

    (firsts, sums), _ = theanine.map(step, sequences=m)
    mv = RNG.normal(size=(3, 4, 5))
    got, want, f = _both([m], [firsts, sums], mv)
    assert _compiled(f) == [True]
    for a, b in zip(got, want):
        np.testing.assert_allclose(a, b, rtol=1e-12)


def test_a_state_that_changes_shape_names_the_output_and_step():
    v = T.vector("v")
    grows, _ = theanine.scan(lambda acc: T.concatenate([acc, acc])[: acc.shape[0] + 1],
                             outputs_info=v, n_steps=3)
    f = theanine.function([v], grows, mode="numba")
    with pytest.raises(ValueError, match=r"changed shape between steps.*step 0 returned shape"):
        f(np.ones(2, dtype="float32"))


def test_elementwise_shape_mismatch_inside_the_loop_is_the_reference_error():
    x, y = T.matrix("x"), T.matrix("y")
    out, _ = theanine.scan(lambda a, b: a + b, sequences=[x], non_sequences=[y])
    f = theanine.function([x, y], out, mode="numba")
    assert _compiled(f) == [True]
    with pytest.raises(ValueError, match="cannot be broadcast|shape"):
        f(np.ones((3, 4), "float32"), np.ones((2, 2), "float32"))


def test_a_body_with_other_ops_keeps_the_per_step_plan():
    x = T.vector("x")
    out, _ = theanine.scan(lambda acc: acc + T.arange(acc.shape[0]).astype("float32"),
                           outputs_info=x, n_steps=4)
    got, want, f = _both([x], out, np.zeros(3, "float32"))
    assert _compiled(f) == [False]
    np.testing.assert_array_equal(got, want)


def test_constants_are_arguments_not_source_text():
    table = RNG.normal(size=300).round(3)
    x = T.dvector("x")
    out, _ = theanine.scan(lambda acc: acc * T.constant(table), outputs_info=x, n_steps=2)
    got, want, f = _both([x], out, np.ones(300))
    (runner,) = _scan_runners(f)
    assert any(c.size == 300 for c in runner.loop.constants)
    assert repr(float(table[17])) not in runner.loop.source
    np.testing.assert_allclose(got, want)


def test_last_state_only_uses_a_ring_buffer():
    x = T.dvector("x")
    out, _ = theanine.scan(lambda a, b: a + b, outputs_info=dict(initial=x, taps=[-2, -1]),
                           n_steps=20)
    got, want, f = _both([x], out[-1], np.array([0.0, 1.0]))
    assert _compiled(f) == [True]
    assert float(got) == float(want) == 10946.0


def test_lstm_layer_scans_compile_as_loops():
    from theanine import layers

    x = T.tensor3("x")
    net = layers.LSTMLayer(layers.InputLayer((None, 5, 3), x), 4, only_return_final=True)
    loss = T.mean(layers.get_output(net) ** 2)
    params = layers.get_all_params(net, trainable=True)
    xv = RNG.normal(size=(2, 5, 3)).astype("float32")
    got, want, f = _both([x], [loss, *theanine.grad(loss, params)], xv)
    assert _compiled(f) == [True, True]
    for a, b in zip(got, want):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)


def test_slice_gradients_fill_one_buffer_in_the_loop():
    """The gradients of an LSTM's four gate slices chain into one buffer: one copy per step."""
    x, w = T.tensor3("x"), T.matrix("w")

    def step(x_t, h):
        gates = T.dot(x_t, w)
        return T.tanh(gates[:, :3] * gates[:, 3:6] + gates[:, 6:9]) + h

    hs, _ = theanine.scan(step, sequences=x, outputs_info=T.zeros((2, 3)))
    cost = (hs[-1] ** 2).sum()
    gw = theanine.grad(cost, w)
    xv = RNG.normal(size=(4, 2, 5)).astype("float32")
    wv = RNG.normal(size=(5, 9)).astype("float32")
    got, want, f = _both([x, w], gw, xv, wv)
    # float32 through tanh (a few ulps) and a sum over steps: small entries of a gradient whose
    # entries reach 11 carry absolute, not relative, errors
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5 * np.abs(want).max())
    backward = [r.loop.source for r in _scan_runners(f) if hasattr(r, "loop")][-1]
    loop_body = backward[backward.index("def scan_"):]
    # the zeros are made in the loop (row-wise elementwise work stays there), a fresh buffer
    # each step: no copy, and the three gate gradients are written into it in place
    assert loop_body.count(".copy()") == 0
    # each through the buffer at the window's offset (a loop over the strided view would not
    # vectorize): the buffer, the window's starts, the window (for its shape), the value
    writes = re.findall(r"h\d+\((v\d+), \(np.int64\(0\), np.int64\((\d+)\), \), (v\d+)\[:, [\d:]+\], ",
                        loop_body)
    assert len(writes) == 3 and len({w[0] for w in writes}) == 3, loop_body
    assert sorted(int(w[1]) for w in writes) == [0, 3, 6] and all(w[0] == w[2] for w in writes)
    # the starts are int64 values, not literals (numba types a literal tuple by its values):
    # the three windows call one helper, compiled once
    assert len(set(re.findall(r"(h\d+)\(v\d+, \(np.int64", loop_body))) == 1
    # that buffer is the per-step output's row itself (from step 1 on): no copy into the output
    assert re.search(r"= h\d+\(.*\(o0\[t\] if t > 0 else z\d+\)\)", loop_body), loop_body
    assert not re.search(r"h\d+\(o0\[t\]", loop_body)


def test_a_product_that_is_a_state_is_written_into_its_row():
    x, w = T.matrix("x"), T.matrix("w")
    hs, _ = theanine.scan(lambda h, w: T.dot(h, w), outputs_info=x, non_sequences=w, n_steps=4)
    xv = RNG.normal(size=(2, 3)).astype("float32")
    wv = RNG.normal(size=(3, 3)).astype("float32")
    got, want, f = _both([x, w], hs, xv, wv)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    (runner,) = _scan_runners(f)
    body = runner.loop.source[runner.loop.source.index("def scan_"):]
    assert re.search(r"cblas\.matmul_into\(p\d+, p\d+, b0\[\(t \+ 1\) % size0\]\)", body), body
    # a product of another shape than the state's: the step's error names the state
    with pytest.raises(ValueError, match="shape"):
        f(xv, RNG.normal(size=(3, 4)).astype("float32"))


def test_gate_windows_are_read_in_place_by_the_elementwise_loops():
    """An LSTM-like step slices its gates' product into column windows: the elementwise loops
    read each window from the product at its offset (in C order, vectorized) without a copy."""
    x, w = T.tensor3("x"), T.matrix("w")

    def step(x_t, h):
        gates = T.dot(x_t, w)
        return T.tanh(gates[:, :3]) * T.nnet.sigmoid(gates[:, 3:6]) + gates[:, 6:] * h

    hs, _ = theanine.scan(step, sequences=x, outputs_info=T.ones((2, 3)))
    xv = RNG.normal(size=(4, 2, 5)).astype("float32")
    wv = RNG.normal(size=(5, 9)).astype("float32")
    got, want, f = _both([x, w], hs, xv, wv)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    (runner,) = _scan_runners(f)
    body = runner.loop.source[runner.loop.source.index("def scan_"):]
    for start in (0, 3, 6):  # the product, the window's starts, the window (for its shape)
        assert re.search(rf"= h\d+\(.*\b[pv]\d+, \(np.int64\(0\), np.int64\({start}\), \), v\d+",
                         body), body


def test_sequences_read_backwards_reach_the_loop_in_their_own_order():
    """A reversed C-ordered sequence (go_backwards, a backward loop's inputs) is read from its last
    row instead of being copied reversed; a reversed and strided one is copied; values as numpy's."""
    from theanine.kernels.numba.scan_loop import _rows_in_order

    x = T.tensor3("x")
    cases = [x[::-1], x.dimshuffle(0, 2, 1)[::-1], x[1:][::-1], x]
    outs = [theanine.scan(lambda row, acc: acc * 0.5 + T.tanh(row), sequences=seq,
                          outputs_info=T.zeros_like(seq[0]))[0] for seq in cases]
    xv = RNG.normal(size=(5, 4, 3)).astype("float32")
    got, want, f = _both([x], outs, xv)
    for a, b in zip(got, want):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    assert all(not r.loop.broken for r in _scan_runners(f))
    rows, last = _rows_in_order(xv[::-1])
    assert last == 4 and np.shares_memory(rows, xv) and rows.flags.c_contiguous
    rows, last = _rows_in_order(xv[::-1, ::2])
    assert last == -1 and not np.shares_memory(rows, xv)


def test_elementwise_steps_write_state_and_output_rows_in_place():
    """A state's next value and a per-step output made by an elementwise helper are written into
    the state's buffer row and the output's row (from step 1 on) by the helper itself: no copy."""
    x, h0 = T.tensor3("x"), T.matrix("h0")
    (hs, ys), _ = theanine.scan(lambda row, h: (T.tanh(row + h), T.exp(row) * h), sequences=x,
                                outputs_info=[h0, None])
    xv = RNG.normal(size=(5, 2, 3)).astype("float32")
    hv = RNG.normal(size=(2, 3)).astype("float32")
    got, want, f = _both([x, h0], [hs, ys], xv, hv)
    for a, b in zip(got, want):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    (runner,) = _scan_runners(f)
    body = runner.loop.source[runner.loop.source.index("def scan_"):]
    assert re.search(r"= h\d+\(.*, b0\[\(t \+ 1\) % size0\]", body)  # the state's row
    assert re.search(r"= h\d+\(.*, \(o0\[t\] if t > 0 else z\d+\)", body)  # the output's
    assert not re.search(r"h\d+\(b0\[", body)  # no copy into the state's row afterwards
    assert re.search(r"if t == 0:\n\s+h\d+\(o0\[0\], v\d+\)", body)  # step 0 copies once
    # a state that changes shape still fails with the step's message
    g = theanine.function([x, h0], hs, mode="numba")
    with pytest.raises(ValueError, match="changed shape|shape"):
        g(xv, hv[:1])


@pytest.mark.parametrize("k, n", [(8, 3), (3, 8)])
def test_products_with_a_tall_weight_matrix_are_computed_transposed(k, n):
    """On OpenBLAS, rows @ W with W of k >= 2n rows (a gradient's g @ W.T) runs as
    (W.T @ rows.T).T with W.T copied once per call (OpenBLAS is faster so); on MKL, and for other
    shapes, as it is; values as numpy's."""
    from theanine.kernels.numba import cblas

    h0, v, w = T.matrix("h0"), T.matrix("v"), T.matrix("w")
    # h (2 x n) @ v (n x k), then @ w (k x n): one of the two weights is tall, the other wide
    hs, _ = theanine.scan(lambda h, v, w: T.tanh(T.dot(T.tanh(T.dot(h, v)), w)),
                          outputs_info=h0, non_sequences=[v, w], n_steps=4)
    hv = RNG.normal(size=(2, n)).astype("float32")
    vv = RNG.normal(size=(n, k)).astype("float32")
    wv = RNG.normal(size=(k, n)).astype("float32")
    got, want, f = _both([h0, v, w], hs, hv, vv, wv)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    h = hv.astype("float64")
    for step in range(4):
        h = np.tanh(np.tanh(h @ vv) @ wv)
        np.testing.assert_allclose(got[step], h, rtol=1e-4, atol=1e-5)
    (runner,) = _scan_runners(f)
    source = runner.loop.source
    transposed = re.search(r"if p\d+\.shape\[0\] >= 2 \* p\d+\.shape\[1\]:", source)
    if cblas.library() == "openblas":
        assert "np.ascontiguousarray(p" in source and "ct = cblas.matmul(bt, a.T)" in source
        assert transposed
    else:
        assert not transposed and "bt0" not in source
        assert len(re.findall(r"= cblas\.matmul\(", source)) == 2


def test_a_scalar_non_sequence_reaches_the_compiled_loop_as_a_scalar():
    """Theano's tutorial polynomial: x ** power in the loop, x a 0-d non-sequence."""
    coefficients, x = T.dvector("coefficients"), T.dscalar("x")
    terms, _ = theanine.scan(lambda c, power, free: c * free**power,
                             sequences=[coefficients, T.arange(10)], non_sequences=x)
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)  # a loop that fails to compile warns
        got, want, f = _both([coefficients, x], terms, np.array([1.0, 0.0, 2.0]), 3.0)
    np.testing.assert_allclose(got, [1.0, 0.0, 18.0])
    np.testing.assert_allclose(got, want)
    (runner,) = _scan_runners(f)
    assert not runner.loop.broken


def test_the_flag_numba__scan_loop_keeps_the_per_step_plan(monkeypatch):
    monkeypatch.setattr(theanine.config, "numba__scan_loop", False)
    a = T.lvector("a")
    fib, _ = theanine.scan(lambda x1, x2: x1 + x2,
                           outputs_info=dict(initial=a, taps=[-2, -1]), n_steps=6)
    got, want, f = _both([a], fib, np.array([1, 1]))
    assert _compiled(f) == [False]
    np.testing.assert_array_equal(got, want)


def test_slice_writes_broadcast_as_numpy_does():
    m, r, c = T.dtensor3("m"), T.dvector("r"), T.dcol("c")

    def step(x):
        a = T.inc_subtensor(x[:, 1:3], r)  # a row added to every row of the slice
        b = T.set_subtensor(a[1:, :2], c)  # a column written across
        return T.inc_subtensor(b[:, 3:10], 1.0)  # a window cut at the end: columns 3 and 4

    out, _ = theanine.map(step, sequences=m)
    mv = RNG.normal(size=(3, 4, 5))
    rv, cv = np.array([10.0, 20.0]), np.arange(3.0).reshape(3, 1)
    got, want, f = _both([m, r, c], out, mv, rv, cv)
    assert _compiled(f) == [True]
    np.testing.assert_array_equal(got, want)
    expected = mv.copy()
    expected[:, :, 1:3] += rv
    expected[:, 1:, :2] = cv
    expected[:, :, 3:] += 1.0
    np.testing.assert_array_equal(got, expected)
    (runner,) = _scan_runners(f)
    body = runner.loop.source[runner.loop.source.index("def scan_"):]
    for a, b in ((0, 1), (1, 0), (0, 3)):  # every write goes through its array at an offset
        starts = rf"\(np.int64\({a}\), np.int64\({b}\), \)"
        assert re.search(rf"h\d+\((v\d+), {starts}, \1\[", body), body

    with pytest.raises(ValueError):
        f(mv, np.ones(3), cv)


def test_a_loop_numba_cannot_compile_warns_and_runs_step_by_step(monkeypatch):
    from numba.core.errors import TypingError

    from theanine.kernels.numba import scan_loop

    def broken(self, op, n_steps, values):
        raise TypingError("a generator bug")

    monkeypatch.setattr(scan_loop.CompiledLoop, "run", broken)
    x = T.dvector("x")
    out, _ = theanine.scan(lambda acc: acc * 2.0, outputs_info=x, n_steps=3)
    f = theanine.function([x], out, mode="numba")
    with pytest.warns(RuntimeWarning, match=r"failed to compile \(a generator bug\).*step by step"):
        got = f(np.ones(2))
    np.testing.assert_array_equal(got, [[2, 2], [4, 4], [8, 8]])
    np.testing.assert_array_equal(f(np.ones(2)), got)  # no second warning: it stays per-step
