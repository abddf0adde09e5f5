"""Scan and IfElse in mode 'cuda-emulator': inner plans on the device against mode 'py', and the
host<->device traffic of their loops (no transfer per step, except `until`'s scalar)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest
import theanine
import theanine.tensor as T
from theanine.compiler.ifelse import ifelse
from theanine.compiler.scan import scan, until
from theanine.graph.ops.ifelse import IfElse
from theanine.graph.ops.scan import Scan
from theanine.graph.random import RandomStreams
from theanine.graph.var import Op, Var
from theanine.kernels.cuda import nvcc
from theanine.kernels.cuda.backend import EMULATOR_BACKEND, thread_order
from theanine.kernels.cuda.control import IfElseLowering, ScanLowering

MODE = "cuda-emulator"
DEVICE = EMULATOR_BACKEND.device
RNG = np.random.default_rng(11)
ORDERS = ["forward", "reverse", "shuffled"]


def f64(value):
    """A float64 constant (Python floats would be floatX)."""
    return T.constant(value, dtype="float64")


def both(inputs, outputs, **kwargs):
    """The function compiled in mode 'cuda-emulator' and in mode 'py'."""
    return [theanine.function(inputs, outputs, mode=m, **kwargs) for m in (MODE, "py")]


def assert_same(got, expected, rtol=1e-10):
    got = got if isinstance(got, list) else [got]
    expected = expected if isinstance(expected, list) else [expected]
    assert len(got) == len(expected)
    for g, e in zip(got, expected):
        assert g.dtype == e.dtype and g.shape == e.shape
        np.testing.assert_allclose(g, e, rtol=rtol, atol=1e-12)


def lowered(f, op_type):
    """The lowerings the plan chose for its `op_type` nodes (they must not run on the host)."""
    assert not [v for v, _ in f._plan.host_nodes() if isinstance(v.op, op_type)]
    return [step[1] for step in f._plan.steps if isinstance(step[0].op, op_type)]


def traffic(call):
    """(result of call(), the transfers it made)."""
    DEVICE.transfers.reset()
    result = call()
    return result, DEVICE.transfers.snapshot()


def elman(X, W, h0):
    """h_t = tanh(x_t + h_{t-1} @ W)."""
    return scan(lambda x, h, W: T.tanh(x + T.dot(h, W)), sequences=X, outputs_info=h0,
                non_sequences=W)[0]


@pytest.fixture(scope="module")
def rnn():
    X, W, h0 = T.dmatrix("X"), T.dmatrix("W"), T.dvector("h0")
    hs = elman(X, W, h0)
    cost = (hs**2).sum()
    return both([X, W, h0], [hs] + theanine.grad(cost, [X, W, h0]))


@pytest.mark.parametrize("order", ORDERS)
def test_rnn_values_and_gradient_match_py(rnn, order):
    emulated, reference = rnn
    args = [RNG.standard_normal((5, 3)), RNG.standard_normal((3, 3)) * 0.5,
            RNG.standard_normal(3)]
    with thread_order(order, seed=4):
        got = emulated(*args)
    assert_same(got, reference(*args))
    lowerings = lowered(emulated, Scan)
    assert len(lowerings) == 2 and all(isinstance(x, ScanLowering) for x in lowerings)
    kinds = {k.kind for k in emulated._plan.kernels()}
    assert {"gemm", "elementwise"} <= kinds  # the step bodies' kernels, in the outer module


def test_no_transfer_per_step(rnn):
    emulated, _ = rnn
    W, h0 = RNG.standard_normal((3, 3)) * 0.5, RNG.standard_normal(3)
    counts = []
    for steps in (2, 7):
        X = RNG.standard_normal((steps, 3))
        emulated(X, W, h0)
        _, moved = traffic(lambda X=X: emulated(X, W, h0))
        counts.append(moved)
    short, long = counts
    assert short["up_calls"] == long["up_calls"] == 3  # X, W, h0
    assert short["down_calls"] == long["down_calls"] == 4  # the four outputs
    assert long["device_copies"] > short["device_copies"]  # the rows are copied on the device


@pytest.mark.skipif(nvcc.find_nvcc() is None, reason="nvcc (the CUDA toolkit) is not installed")
def test_step_kernels_compile_with_nvcc_within_limits(rnn):
    kernels = list({k.source: k for k in rnn[0]._plan.kernels()}.values())
    reports = nvcc.compile_kernels(kernels, nvcc.ARCHS)
    assert len(reports) == len(kernels) * len(nvcc.ARCHS)
    by_name = {k.name: k for k in kernels}
    assert [p for r in reports for p in nvcc.limit_problems(by_name[r.kernel], r)] == []


def test_until_reads_one_scalar_per_step():
    limit = T.dscalar("limit")
    out, _ = scan(lambda p: (p * 2, until(p * 2 > limit)), outputs_info=f64(1.0), n_steps=10)
    emulated, reference = both([limit], out)
    for value in (5.0, 100.0, 1e6):
        got, moved = traffic(lambda value=value: emulated(value))
        assert_same(got, reference(value))
        assert moved["down_calls"] == len(got) + 1  # the condition after each step, the output
    assert isinstance(lowered(emulated, Scan)[0], ScanLowering)


def test_taps_minus_two_minus_one_and_sequence_taps():
    init = T.dvector("init")
    fib = scan(lambda a, b: a + b, outputs_info={"initial": init, "taps": [-2, -1]}, n_steps=8)[0]
    x = T.dvector("x")
    around = scan(lambda a, b: a * 10 + b, sequences={"input": x, "taps": [-1, 1]})[0]
    emulated, reference = both([init, x], [fib, around])
    args = [np.array([0.0, 1.0]), np.arange(6.0)]
    assert_same(emulated(*args), reference(*args))
    assert emulated(*args)[0][-1] == 34.0
    # only the last value used: the state lives in a ring of lag + 1 rows on the device
    emulated, reference = both([init], fib[-1])
    assert [step[0].op.keep for step in emulated._plan.steps if isinstance(step[0].op, Scan)] == [
        (1,)
    ]
    assert_same(emulated(args[0]), reference(args[0]))


def test_go_backwards_and_its_gradient():
    x, s0 = T.dvector("x"), T.dscalar("s0")
    out = scan(lambda a, s: s * 0.5 + a, sequences=x, outputs_info=s0, go_backwards=True)[0]
    emulated, reference = both([x, s0], [out] + theanine.grad((out**2).sum(), [x, s0]))
    args = [RNG.standard_normal(4), np.array(0.7)]
    assert_same(emulated(*args), reference(*args))


def test_several_outputs_states_and_per_step_outputs():
    X = T.fmatrix("X")
    a0, b0 = T.fvector("a0"), T.fvector("b0")

    def step(x, a, b):
        a_next = a * 0.5 + x
        b_next = T.maximum(b, x)
        return [a_next, b_next, (a_next * b_next).sum()]

    (a, b, dots), _ = scan(step, sequences=X, outputs_info=[a0, b0, None])
    emulated, reference = both([X, a0, b0], [a, b, dots])
    args = [RNG.standard_normal((4, 3)).astype("float32"), np.zeros(3, "float32"),
            np.full(3, -1.0, "float32")]
    assert_same(emulated(*args), reference(*args), rtol=1e-5)


def test_last_state_only_and_no_steps():
    X, W, h0 = T.dmatrix("X"), T.dmatrix("W"), T.dvector("h0")
    last = elman(X, W, h0)[-1]
    emulated, reference = both([X, W, h0], last)
    args = [RNG.standard_normal((6, 3)), RNG.standard_normal((3, 3)) * 0.5, RNG.standard_normal(3)]
    assert_same(emulated(*args), reference(*args))
    rows = T.lscalar("n")
    doubled = scan(lambda x: x * 2, sequences=X, n_steps=rows)[0]
    emulated, reference = both([X, rows], doubled)
    for n in (0, 3):
        assert_same(emulated(args[0], n), reference(args[0], n))


def test_shared_variables_inside_the_step_stay_on_the_device():
    W = theanine.shared(RNG.standard_normal((3, 3)) * 0.5, name="W")
    count = theanine.shared(np.int64(0), name="count")
    X = T.dmatrix("X")

    def step(x, h):
        return T.tanh(T.dot(h, W) + x), {count: count + 1}

    hs, updates = scan(step, sequences=X, outputs_info=T.zeros((3,), dtype="float64"))
    gW = theanine.grad((hs**2).sum(), W)
    emulated = theanine.function([X], [hs, gW], updates=updates, mode=MODE)
    reference = theanine.function([X], [hs, gW], mode="py")
    values = RNG.standard_normal((4, 3))
    assert_same(emulated(values), reference(values))
    assert count.get_value() == 4
    _, moved = traffic(lambda: emulated(values))
    assert moved["up_calls"] == 1  # X only: W and count live on the device
    assert count.get_value() == 8


def test_random_draws_inside_the_step_match_py():
    def build(mode, steps=3):
        srng = RandomStreams(5)
        noise, updates = scan(lambda h: h + srng.uniform((2,), dtype="float64"),
                              outputs_info=T.zeros((2,), dtype="float64"), n_steps=steps)
        return theanine.function([], noise, updates=updates, mode=mode)

    emulated, reference = build(MODE), build("py")
    first, second = emulated(), emulated()
    assert_same([first, second], [reference(), reference()])
    assert not np.allclose(first, second)  # the state advanced on the device as on the host
    longer = build(MODE, steps=9)
    longer()
    for f, steps in ((emulated, 3), (longer, 9)):  # the draws and the state stay on the device
        _, moved = traffic(f)
        assert (moved["up_calls"], moved["down_calls"], moved["down_bytes"]) == (0, 1, steps * 16)


def test_sequence_errors_match_py():
    x = T.dvector("x")
    n = T.lscalar("n")
    out = scan(lambda a: a * 2, sequences=x, n_steps=n)[0]
    emulated, _ = both([x, n], out)
    with pytest.raises(ValueError, match=r"scan: .* gives 2 steps, fewer than n_steps=3"):
        emulated(np.ones(2), 3)
    with pytest.raises(ValueError, match=r"scan: n_steps must be >= 0, got -1"):
        emulated(np.ones(2), -1)


def test_device_views_and_copies():
    array = DEVICE.to_device(np.arange(12.0).reshape(3, 4))
    np.testing.assert_array_equal(array.row(1).get(), [4.0, 5.0, 6.0, 7.0])
    np.testing.assert_array_equal(array.rows(2).row(1).get(), [4.0, 5.0, 6.0, 7.0])
    target = DEVICE.empty((2, 4), "float64")
    DEVICE.copy_into(target.row(0), array.row(2))
    DEVICE.copy_into(target.row(1), array.row(0))
    np.testing.assert_array_equal(target.get(), [[8, 9, 10, 11], [0, 1, 2, 3]])
    with pytest.raises(IndexError, match=r"row 3 is out of range for a device array of shape"):
        array.row(3)
    with pytest.raises(ValueError, match=r"cannot copy a float64 array of shape \(4,\) into a "
                                         r"float64 array of shape \(2, 4\)"):
        DEVICE.copy_into(target, array.row(0))


# --- ifelse ---------------------------------------------------------------------------------------

RUNS = {"count": 0}


@dataclass(frozen=True)
class _Counted(Op):
    """Identity that counts how often it runs (on the host: it has no kernel)."""

    def infer_type(self, x):
        return x

    def perform(self, x):
        RUNS["count"] += 1
        return x.copy()


@pytest.mark.parametrize("order", ORDERS)
def test_ifelse_runs_only_the_taken_branch(order):
    c, x = T.dscalar("c"), T.fmatrix("x")
    counted = Var(_Counted(), (x,))
    out = ifelse(T.gt(c, 0), T.exp(x) * 2, counted - 1)
    emulated, reference = both([c, x], out)
    data = RNG.standard_normal((3, 4)).astype("float32")
    assert isinstance(lowered(emulated, IfElse)[0], IfElseLowering)
    with thread_order(order, seed=1):
        RUNS["count"] = 0
        for cond in (1.0, -1.0, 2.0):
            got, _ = traffic(lambda cond=cond: emulated(cond, data))
            assert_same(got, reference(cond, data), rtol=1e-6)
        assert RUNS["count"] == 1 + 1  # the else branch ran once here, once in mode py
    _, moved = traffic(lambda: emulated(1.0, data))
    assert moved["down_calls"] == 2 and moved["down_bytes"] == 1 + data.nbytes  # the bool, the result


def test_ifelse_several_outputs_and_gradient_and_inside_a_scan():
    c, x = T.dscalar("c"), T.dvector("x")
    first, second = ifelse(T.gt(c, 0), [x * 2, x.sum()], [x * 3, c])
    grad = theanine.grad(ifelse(T.gt(c, 0), (x**2).sum(), (x**3).sum()), x)
    emulated, reference = both([c, x], [first, second, grad])
    values = RNG.standard_normal(4)
    for cond in (1.0, -2.0):
        assert_same(emulated(cond, values), reference(cond, values))
    out = scan(lambda a, s: ifelse(T.gt(a, 0), s + a, s * 0.5), sequences=x,
               outputs_info=f64(1.0))[0]
    emulated, reference = both([x], [out, theanine.grad(out.sum(), x)])
    assert_same(emulated(values), reference(values))
