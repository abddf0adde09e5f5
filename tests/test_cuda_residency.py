"""Residency in mode 'cuda-emulator': shared values on the device, device inputs and outputs, and
the host<->device traffic of a call (counted by the emulator device)."""

from __future__ import annotations

import pickle
from dataclasses import dataclass

import numpy as np
import pytest
import theanine
import theanine.tensor as T
from theanine.graph.shared import peek_host
from theanine.graph.var import Op, Var
from theanine.kernels.cuda.backend import EMULATOR_BACKEND, thread_order
from theanine.kernels.cuda.device import DeviceArray

MODE = "cuda-emulator"
DEVICE = EMULATOR_BACKEND.device
RNG = np.random.default_rng(7)


def traffic(call):
    """(result of call(), the transfers it made as a dict)."""
    DEVICE.transfers.reset()
    result = call()
    return result, DEVICE.transfers.snapshot()


def test_shared_value_goes_up_once_and_updates_stay_on_the_device():
    w = theanine.shared(RNG.standard_normal((3, 4)), name="w")
    x = T.dmatrix("x")
    step = theanine.function([x], (x * w).sum(), updates=[(w, w * 0.5 + x)], mode=MODE)
    data = RNG.standard_normal((3, 4))
    expected = w.get_value() * 0.5 + data  # w after the first call
    _, first = traffic(lambda: step(data))
    assert first["up_calls"] == 2 and first["up_bytes"] == 2 * data.nbytes  # x, then w once
    for _ in range(3):
        loss, later = traffic(lambda: step(data))
        np.testing.assert_allclose(loss, (data * expected).sum(), rtol=1e-12)
        expected = expected * 0.5 + data
        assert later == {"up_calls": 1, "up_bytes": data.nbytes, "down_calls": 1,
                         "down_bytes": 8, "device_copies": 0}
    assert peek_host(w.container) is None  # the newest value lives only on the device
    value, down = traffic(lambda: w.get_value())
    np.testing.assert_allclose(value, expected, rtol=1e-12)
    assert down["down_calls"] == 1 and down["down_bytes"] == value.nbytes
    _, again = traffic(lambda: (w.get_value(), w.get_value(borrow=True)))
    assert again["down_calls"] == 0  # the host copy is cached until the next update
    internal = w.get_value(borrow=True, return_internal_type=True)
    assert isinstance(internal, DeviceArray) and internal.shape == (3, 4)


def test_set_value_refreshes_the_device_copy_on_next_use():
    w = theanine.shared(np.arange(6.0).reshape(2, 3), name="w")
    f = theanine.function([], w * 2, mode=MODE)
    np.testing.assert_array_equal(f(), np.arange(6.0).reshape(2, 3) * 2)
    w.set_value(np.ones((2, 3)))
    out, moved = traffic(f)
    np.testing.assert_array_equal(out, np.full((2, 3), 2.0))
    assert moved["up_calls"] == 1 and moved["up_bytes"] == 48
    array = np.zeros((2, 3))
    w.set_value(array, borrow=True)
    assert w.get_value(borrow=True) is array
    np.testing.assert_array_equal(f(), array)
    array[:] = 5.0  # changing a borrowed value in place, then set_value(borrow=True): seen
    w.set_value(array, borrow=True)
    np.testing.assert_array_equal(f(), np.full((2, 3), 10.0))


@pytest.mark.parametrize("other", ["py", "numba"])
def test_cpu_modes_read_and_write_device_resident_values(other):
    s = theanine.shared(np.arange(4.0), name="s")
    double = theanine.function([], [], updates=[(s, s * 2)], mode=MODE)
    read = theanine.function([], s + 1, mode=other)
    bump = theanine.function([], [], updates=[(s, s + 10)], mode=other)  # may write in place
    double()
    assert peek_host(s.container) is None
    np.testing.assert_array_equal(read(), np.arange(4.0) * 2 + 1)
    bump()
    double()
    np.testing.assert_array_equal(s.get_value(), (np.arange(4.0) * 2 + 10) * 2)
    np.testing.assert_array_equal(read(), (np.arange(4.0) * 2 + 10) * 2 + 1)


def test_pickling_device_resident_shared_variables_and_functions():
    s = theanine.shared(np.arange(3.0), name="s")
    x = T.dvector("x")
    f = theanine.function([x], s * x, updates=[(s, s + 1)], mode=MODE)
    f(np.ones(3))
    assert peek_host(s.container) is None
    s2 = pickle.loads(pickle.dumps(s))
    assert isinstance(s2.get_value(borrow=True), np.ndarray)
    np.testing.assert_array_equal(s2.get_value(), np.arange(3.0) + 1)
    f2 = pickle.loads(pickle.dumps(f))
    np.testing.assert_array_equal(f2(np.full(3, 2.0)), (np.arange(3.0) + 1) * 2)


def test_device_array_inputs_are_used_without_a_copy():
    x = T.fmatrix("x")
    f = theanine.function([x], T.exp(x).sum(axis=1), mode=MODE)
    data = RNG.standard_normal((3, 5)).astype("float32")
    on_device = DEVICE.to_device(data)
    out, moved = traffic(lambda: f(on_device))
    np.testing.assert_allclose(out, np.exp(data).sum(axis=1), rtol=1e-5)
    assert moved["up_calls"] == 0 and moved["down_bytes"] == 3 * 4


def test_device_array_inputs_of_the_wrong_type_raise_naming_the_input():
    x = T.fmatrix("x")
    f = theanine.function([x], x * 2, mode=MODE)
    with pytest.raises(TypeError, match=r"input 'x' .*expected a 2-d array .*got a 1-d device array"):
        f(DEVICE.to_device(np.zeros(3, "float32")))
    with pytest.raises(TypeError, match=r"input 'x' .*expected dtype float32, got float64"):
        f(DEVICE.to_device(np.zeros((2, 3))))
    small = DEVICE.to_device(np.arange(6, dtype="int8").reshape(2, 3))  # a safe cast: allowed
    np.testing.assert_array_equal(f(small), np.arange(6).reshape(2, 3) * 2.0)
    y = T.TensorType("float32", (2, None))("y")
    g = theanine.function([y], y + 1, mode=MODE)
    with pytest.raises(ValueError, match=r"input 'y' .*expected shape \(2, \?\), got \(3, 1\)"):
        g(DEVICE.to_device(np.zeros((3, 1), "float32")))


def test_return_device_gives_device_arrays():
    x = T.dvector("x")
    s = theanine.shared(np.arange(3.0), name="s")
    f = theanine.function([x], [x * s, s], mode=MODE, return_device=True)
    (product, same), moved = traffic(lambda: f(np.full(3, 2.0)))
    assert isinstance(product, DeviceArray) and isinstance(same, DeviceArray)
    assert moved["down_calls"] == 0
    np.testing.assert_array_equal(product.get(), np.arange(3.0) * 2)
    np.testing.assert_array_equal(same.get(), np.arange(3.0))
    assert same is not s.get_value(borrow=True, return_internal_type=True)  # copied on the device
    chained = theanine.function([x], x + 1, mode=MODE)
    np.testing.assert_array_equal(chained(product), np.arange(3.0) * 2 + 1)
    echo = theanine.function([x], x, mode=MODE, return_device=True)
    given = DEVICE.to_device(np.ones(3))
    assert echo(given) is not given  # an output aliasing an input is copied (on the device)
    with pytest.raises(ValueError, match="return_device=True needs mode 'cuda' or 'cuda-emulator'"):
        theanine.function([x], x + 1, mode="py", return_device=True)


def _one_hot_step(mode: str):
    """An MLP SGD step whose loss needs no indexing: every node has a kernel."""
    rng = np.random.default_rng(3)
    x, y = T.dmatrix("x"), T.dmatrix("y")
    params = [
        theanine.shared(rng.standard_normal((6, 7)) * 0.3, name="W1"),
        theanine.shared(np.zeros(7), name="b1"),
        theanine.shared(rng.standard_normal((7, 4)) * 0.3, name="W2"),
        theanine.shared(np.zeros(4), name="b2"),
    ]
    w1, b1, w2, b2 = params
    probs = T.nnet.softmax(T.dot(T.tanh(T.dot(x, w1) + b1), w2) + b2)
    loss = -T.mean(T.sum(y * T.log(probs), axis=1))
    updates = [(p, p - 0.5 * g) for p, g in zip(params, T.grad(loss, params))]
    return theanine.function([x, y], loss, updates=updates, mode=mode), params


@pytest.mark.parametrize("order", ["forward", "shuffled"])
def test_training_step_moves_only_its_minibatch_and_its_loss(order):
    step, params = _one_hot_step(MODE)
    reference, reference_params = _one_hot_step("py")
    data = RNG.standard_normal((9, 6))
    labels = np.eye(4)[np.arange(9) % 4]
    # the mean's divisor comes from the shape alone: nothing of the batch is copied down for it
    assert [type(v.op).__name__ for v, _ in step._plan.host_nodes()] == ["AxisSize"]
    with thread_order(order, seed=2):
        losses = [traffic(lambda: step(data, labels)) for _ in range(3)]
    expected = [reference(data, labels) for _ in range(3)]
    np.testing.assert_allclose([loss for loss, _ in losses], expected, rtol=1e-10)
    for _, moved in losses[1:]:
        assert moved["up_bytes"] == data.nbytes + labels.nbytes and moved["up_calls"] == 2
        assert moved["down_bytes"] == 8 and moved["down_calls"] == 1
    for p, q in zip(params, reference_params):
        np.testing.assert_allclose(p.get_value(), q.get_value(), rtol=1e-9, atol=1e-12)


def test_training_step_with_host_steps_keeps_its_parameters_on_the_device():
    from test_cuda_emulator import _training_step

    step, params = _training_step(MODE)
    reference, reference_params = _training_step("py")
    data = np.random.default_rng(2).standard_normal((12, 8))
    labels = np.arange(12) % 5
    moved = [traffic(lambda: step(data, labels))[1] for _ in range(4)]
    expected = [reference(data, labels) for _ in range(4)]
    assert moved[1] == moved[2] == moved[3]  # the same traffic every call: host steps only
    assert all(peek_host(p.container) is None for p in params)  # no parameter was copied down
    for p, q in zip(params, reference_params):
        np.testing.assert_allclose(p.get_value(), q.get_value(), rtol=1e-9, atol=1e-12)
    assert expected[-1] < expected[0]


@dataclass(frozen=True)
class _HostOnly(Op):
    """A test op with no CUDA kernel: it runs its perform on the host."""

    def infer_type(self, x):
        return x

    def perform(self, x):
        return np.cumsum(x, axis=-1)


def test_host_steps_copy_down_and_up_and_cache_shared_host_copies():
    s = theanine.shared(np.arange(5.0), name="s")
    x = T.dvector("x")
    f = theanine.function([x], Var(_HostOnly(), (s * x,)) + s, updates=[(s, s + 1)], mode=MODE)
    g = theanine.function([], Var(_HostOnly(), (s,)) * 2, mode=MODE)
    assert [type(v.op) for v, _ in f._plan.host_nodes()] == [_HostOnly]
    ones = np.ones(5)
    np.testing.assert_array_equal(f(ones), np.cumsum(np.arange(5.0)) + np.arange(5.0))
    out, moved = traffic(lambda: f(ones))
    base = np.arange(5.0) + 1
    np.testing.assert_array_equal(out, np.cumsum(base) + base)
    # x up; s*x down to the host step; its result up; the output down
    assert moved["up_calls"] == 2 and moved["down_calls"] == 2
    # g's `* 2` reads only a host result: it runs on the host too (as Theano's GPU optimizer
    # leaves such nodes); s comes down once, then its host copy is cached until the next update
    out, moved = traffic(g)
    _, again = traffic(g)
    np.testing.assert_array_equal(out, np.cumsum(base + 1) * 2)
    assert moved == {"up_calls": 0, "up_bytes": 0, "down_calls": 1, "down_bytes": 40,
                     "device_copies": 0}
    assert again["down_calls"] == 0 and again["up_calls"] == 0


def test_shape_only_host_steps_copy_nothing_down():
    x = T.dmatrix("x")
    f = theanine.function([x], x.sum() / x.shape[0] + x.shape[1], mode=MODE)
    data = RNG.standard_normal((4, 3))
    on_device = DEVICE.to_device(data)
    f(on_device)
    out, moved = traffic(lambda: f(on_device))
    np.testing.assert_allclose(out, data.sum() / 4 + 3, rtol=1e-12)
    assert moved["down_bytes"] == 8 and moved["up_calls"] == 0


def test_shape_arithmetic_moves_nothing_after_the_first_call():
    x = T.dmatrix("x")
    f = theanine.function([x], x * x.shape[0] + T.arange(x.shape[1]), mode=MODE)
    data = RNG.standard_normal((4, 3))
    on_device = DEVICE.to_device(data)
    f(on_device)
    for _ in range(2):
        out, moved = traffic(lambda: f(on_device))
        np.testing.assert_allclose(out, data * 4 + np.arange(3), rtol=1e-12)
        assert moved == {"up_calls": 0, "up_bytes": 0, "down_calls": 1, "down_bytes": data.nbytes,
                         "device_copies": 0}
    other = RNG.standard_normal((2, 5))  # a new shape: its small host values go up once
    np.testing.assert_allclose(f(other), other * 2 + np.arange(5), rtol=1e-12)


@pytest.mark.gpu
def test_gpu_training_step_moves_only_its_minibatch_and_its_loss():
    pytest.importorskip("pycuda", reason="mode 'cuda' needs pycuda and a CUDA GPU")
    from theanine.kernels.cuda.backend import GPU_BACKEND

    try:
        gpu = GPU_BACKEND.device
    except Exception as error:  # noqa: BLE001  (no driver, no GPU)
        pytest.skip(f"no usable CUDA GPU: {error}")
    step, params = _one_hot_step("cuda")
    reference, reference_params = _one_hot_step("py")
    data = RNG.standard_normal((9, 6))
    labels = np.eye(4)[np.arange(9) % 4]
    for call in range(3):
        gpu.transfers.reset()
        loss = step(data, labels)
        np.testing.assert_allclose(loss, reference(data, labels), rtol=1e-9)
        if call:
            assert gpu.transfers.up_bytes == data.nbytes + labels.nbytes
            assert gpu.transfers.down_bytes == 8
    for p, q in zip(params, reference_params):
        np.testing.assert_allclose(p.get_value(), q.get_value(), rtol=1e-8, atol=1e-12)


def test_mode_cuda_without_pycuda_says_how_to_install_it(monkeypatch):
    import builtins

    from theanine.kernels.cuda import backend

    real_import = builtins.__import__

    def no_pycuda(name, *args, **kwargs):
        if name.startswith("pycuda"):
            raise ModuleNotFoundError("No module named 'pycuda'", name="pycuda")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_pycuda)
    expected = r"needs PyCUDA .*pip install -e \"\.\[cuda\]\".*cuda-emulator"
    with pytest.raises(ImportError, match=expected):
        backend._gpu_device()
