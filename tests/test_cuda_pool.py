"""pool_2d and its gradients on the CUDA emulator (one thread per output / gather) against mode 'py'."""

from __future__ import annotations

import numpy as np
import pytest
import theanine
import theanine.tensor as T
from theanine.graph.ops.pool import AveragePool2dGrad, MaxPool2dGrad, MaxPool2dGradGrad, Pool2d
from theanine.graph.var import Var
from theanine.kernels.cuda import nvcc
from theanine.kernels.cuda import pool as cuda_pool
from theanine.kernels.cuda.backend import EMULATOR_BACKEND, thread_order
from theanine.tensor.signal.pool import pool_2d

MODES = ["max", "sum", "average_inc_pad", "average_exc_pad"]
POOL_OPS = (Pool2d, MaxPool2dGrad, MaxPool2dGradGrad, AveragePool2dGrad)
# (ws, ignore_border, stride, pad): windows that overlap, skip rows, cross the border, are padded.
GEOMETRIES = [
    ((2, 2), True, None, (0, 0)),
    ((3, 2), False, (2, 1), (0, 0)),
    ((3, 2), True, (1, 2), (1, 1)),
    ((2, 3), False, (3, 3), (0, 0)),
    ((3, 3), True, (2, 2), (2, 1)),
]
TOLERANCE = {"float32": {"rtol": 1e-6, "atol": 1e-6}, "float64": {"rtol": 1e-13, "atol": 1e-13}}
_FUNCTIONS: dict = {}


def _graph(dtype: str, mode: str, geometry: tuple):
    """pool_2d, the gradient of sum(y * c) for an input c, and for max the gradient of that
    gradient (MaxPool2dGradGrad)."""
    ws, ignore_border, stride, pad = geometry
    x, c = T.tensor4("x", dtype=dtype), T.tensor4("c", dtype=dtype)
    y = pool_2d(x, ws, ignore_border=ignore_border, stride=stride, pad=pad, mode=mode)
    g = theanine.grad((y * c).sum(), x)
    outputs = [y, g]
    if mode == "max":
        outputs.append(theanine.grad((g * x).sum(), c))
    return [x, c], outputs


def functions(dtype: str, mode: str, geometry: tuple) -> tuple:
    """(emulated, reference) functions, built once per test session."""
    key = (dtype, mode, geometry)
    if key not in _FUNCTIONS:
        inputs, outputs = _graph(dtype, mode, geometry)
        _FUNCTIONS[key] = (
            theanine.function(inputs, outputs, mode="cuda-emulator"),
            theanine.function(inputs, outputs, mode="py"),
        )
    return _FUNCTIONS[key]


def sample(dtype: str, mode: str, geometry: tuple, shape=(2, 3, 7, 6), seed: int = 0) -> list:
    """x (with ties for max: the gradient goes to every tied maximum) and c of y's shape."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=shape)
    if mode == "max":
        x = np.round(x * 2) / 2
    inputs, outputs = _graph(dtype, mode, geometry)
    y = theanine.function(inputs[:1], outputs[0], mode="py")(x.astype(dtype))
    return [x.astype(dtype), rng.normal(size=y.shape).astype(dtype)]


def assert_matches(dtype, mode, geometry, order="forward", **sample_args) -> None:
    emulated, reference = functions(dtype, mode, geometry)
    arrays = sample(dtype, mode, geometry, **sample_args)
    with thread_order(order, seed=5):
        got = emulated(*arrays)
    expected = reference(*arrays)
    assert len(got) == (3 if mode == "max" else 2)
    for name, a, b in zip(("pool", "grad", "grad of grad"), got, expected):
        assert a.dtype == b.dtype and a.shape == b.shape, name
        np.testing.assert_allclose(a, b, err_msg=name, **TOLERANCE[dtype])


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("geometry", GEOMETRIES, ids=str)
@pytest.mark.parametrize("mode", MODES)
def test_pool_and_its_gradients_match_py(mode, geometry, dtype):
    assert_matches(dtype, mode, geometry)


@pytest.mark.parametrize("order", ["reverse", "shuffled"])
@pytest.mark.parametrize("mode", ["max", "average_inc_pad"])
def test_other_thread_orders(mode, order):
    assert_matches("float64", mode, GEOMETRIES[2], order)


def test_the_pool_nodes_run_kernels():
    emulated, _ = functions("float64", "max", GEOMETRIES[0])
    assert not any(isinstance(node.op, POOL_OPS) for node, _ in emulated._plan.host_nodes())
    ran = {type(node.op) for node in emulated._plan.nodes()} & set(POOL_OPS)
    assert ran == {Pool2d, MaxPool2dGrad, MaxPool2dGradGrad}
    emulated, _ = functions("float32", "average_exc_pad", GEOMETRIES[0])
    ran = {type(node.op) for node in emulated._plan.nodes()} & set(POOL_OPS)
    assert ran == {Pool2d, AveragePool2dGrad}
    assert not any(isinstance(node.op, POOL_OPS) for node, _ in emulated._plan.host_nodes())


def test_max_pool_propagates_nan_as_numpy():
    emulated, reference = functions("float64", "max", GEOMETRIES[0])
    x, c = sample("float64", "max", GEOMETRIES[0])
    x[0, 1, 2, 3] = np.nan
    got, expected = emulated(x, c), reference(x, c)
    assert np.isnan(got[0][0, 1, 1, 1])
    for a, b in zip(got, expected):
        np.testing.assert_array_equal(a, b)  # NaN where numpy has NaN


@pytest.mark.parametrize("dtype", ["int8", "uint8", "int32", "int64"])
def test_integer_pooling_keeps_the_dtype(dtype):
    x = T.tensor3("x", dtype=dtype)
    outputs = [pool_2d(x, (2, 3), ignore_border=False, mode=mode) for mode in MODES]
    values = np.random.default_rng(3).integers(0, 120, size=(3, 5, 7)).astype(dtype)
    values[1, 2:4, 3:6] = np.iinfo(dtype).min  # a window of the lowest value: max keeps it
    got = theanine.function([x], outputs, mode="cuda-emulator")(values)
    expected = theanine.function([x], outputs, mode="py")(values)
    for a, b in zip(got, expected):
        assert a.dtype == b.dtype == np.dtype(dtype)
        np.testing.assert_array_equal(a, b)  # sums wrap as numpy's astype; means truncate


@pytest.mark.parametrize("shape", [(7, 6), (3, 7, 6), (2, 2, 2, 7, 6)])
def test_any_rank_pools_its_last_two_axes(shape):
    x = T.tensor("float64", shape=len(shape) * (None,), name="x")
    y = pool_2d(x, (3, 2), ignore_border=True, stride=(2, 1), pad=(1, 0), mode="average_exc_pad")
    gx = theanine.grad(y.sum(), x)
    values = np.random.default_rng(4).normal(size=shape)
    got = theanine.function([x], [y, gx], mode="cuda-emulator")(values)
    expected = theanine.function([x], [y, gx], mode="py")(values)
    for a, b in zip(got, expected):
        assert a.shape == b.shape
        np.testing.assert_allclose(a, b, rtol=1e-13, atol=1e-13)


def test_a_window_larger_than_the_input_gives_an_empty_pool_and_zero_gradient():
    emulated, _reference = functions("float64", "max", GEOMETRIES[0])  # 2x2, ignore_border
    x = np.ones((2, 3, 1, 6))
    c = np.ones((2, 3, 0, 3))
    # (mode 'py' fails here: MaxPool2dGrad.perform reshapes an empty array with -1)
    y, gx, ggc = emulated(x, c)
    assert y.shape == ggc.shape == (2, 3, 0, 3)
    np.testing.assert_array_equal(gx, np.zeros((2, 3, 1, 6)))


def test_kernels_loop_over_work_beyond_their_grid(monkeypatch):
    emulated, reference = functions("float64", "average_inc_pad", GEOMETRIES[2])
    arrays = sample("float64", "average_inc_pad", GEOMETRIES[2], shape=(3, 40, 7, 6))
    monkeypatch.setattr(EMULATOR_BACKEND.device, "max_grid", 1)  # one block does all the work
    for a, b in zip(emulated(*arrays), reference(*arrays)):
        np.testing.assert_allclose(a, b, rtol=1e-13, atol=1e-13)


# --- errors ------------------------------------------------------------------------------------------


def test_max_pool_gradient_checks_maxout_and_gradient_shapes():
    x, m, g = T.dtensor4("x"), T.dtensor4("maxout"), T.dtensor4("g")
    op = MaxPool2dGrad((2, 2), True, (2, 2), (0, 0), "max")
    f = theanine.function([x, m, g], Var(op, (x, m, g)), mode="cuda-emulator")
    message = (
        r"(?s)MaxPool2dGrad: maxout has shape \(2, 3, 3, 2\), expected \(2, 3, 3, 3\) for "
        r"an input of shape \(2, 3, 7, 6\).*node created at.*test_cuda_pool.py"
    )
    with pytest.raises(ValueError, match=message):
        f(np.zeros((2, 3, 7, 6)), np.zeros((2, 3, 3, 2)), np.zeros((2, 3, 3, 3)))
    message = r"MaxPool2dGrad: the gradient has shape \(2, 3, 3, 4\), expected \(2, 3, 3, 3\)"
    with pytest.raises(ValueError, match=message):
        f(np.zeros((2, 3, 7, 6)), np.zeros((2, 3, 3, 3)), np.zeros((2, 3, 3, 4)))


def test_average_pool_gradient_and_grad_grad_check_shapes():
    x, m, g = T.dtensor4("x"), T.dtensor4("maxout"), T.dtensor4("g")
    average = AveragePool2dGrad((3, 2), False, (2, 1), (0, 0), "sum")
    f = theanine.function([x, g], Var(average, (x, g)), mode="cuda-emulator")
    message = r"AveragePool2dGrad: the gradient has shape \(2, 3, 3, 5\), expected \(2, 3, 3, 4\)"
    with pytest.raises(ValueError, match=message):
        f(np.zeros((2, 3, 7, 5)), np.zeros((2, 3, 3, 5)))
    op = MaxPool2dGradGrad((2, 2), True, (2, 2), (0, 0), "max")
    f = theanine.function([x, m, g], Var(op, (x, m, g)), mode="cuda-emulator")
    message = r"MaxPool2dGradGrad: gg has shape \(2, 3, 7, 5\), expected \(2, 3, 7, 6\)"
    with pytest.raises(ValueError, match=message):
        f(np.zeros((2, 3, 7, 6)), np.zeros((2, 3, 3, 3)), np.zeros((2, 3, 7, 5)))


# --- the compile gate --------------------------------------------------------------------------------


def _all_kernels() -> list:
    kernels = [
        cuda_pool.pool_kernel(mode, dtype) for mode in MODES for dtype in ("float32", "float64")
    ]
    kernels += [cuda_pool.pool_kernel(mode, "int8") for mode in MODES]
    for dtype in ("float32", "float64"):
        kernels += [
            cuda_pool.max_grad_kernel(dtype, dtype, dtype),
            cuda_pool.max_grad_grad_kernel(dtype, dtype, dtype),
        ]
        kernels += [cuda_pool.average_grad_kernel(mode, dtype, dtype) for mode in MODES[1:]]
    return kernels


def test_the_generated_kernels_are_those_the_functions_launch():
    emulated, _ = functions("float32", "max", GEOMETRIES[1])
    launched = {k.name for k in emulated._plan.kernels() if "Pool" in k.what}
    assert len(launched) == 3 and launched <= {k.name for k in _all_kernels()}


@pytest.mark.skipif(nvcc.find_nvcc() is None, reason="nvcc (the CUDA toolkit) is not installed")
def test_pool_kernels_compile_for_sm80_and_sm90_within_limits():
    kernels = _all_kernels()
    reports = nvcc.compile_kernels(kernels, nvcc.ARCHS)
    assert len(reports) == len(kernels) * 2
    by_name = {k.name: k for k in kernels}
    assert [p for r in reports for p in nvcc.limit_problems(by_name[r.kernel], r)] == []
    assert all(r.spill_stores == r.spill_loads == 0 and r.shared_bytes == 0 for r in reports)
    assert {r.arch for r in reports} == {"sm_80", "sm_90"}


@pytest.mark.parametrize("mode", ["max", "average_exc_pad"])
def test_mixed_dtypes_float32_input_float64_gradient(mode):
    x, c = T.ftensor4("x"), T.dtensor4("c")
    y = pool_2d(x, (3, 2), ignore_border=True, stride=(1, 2), pad=(1, 1), mode=mode)
    gx = theanine.grad((y * c).sum(), x)
    rng = np.random.default_rng(6)
    xv = (np.round(rng.normal(size=(2, 3, 7, 6)) * 2) / 2).astype("float32")
    cv = rng.normal(size=(2, 3, 7, 4))
    emulated = theanine.function([x, c], [y, gx], mode="cuda-emulator")
    kinds = {type(node.op) for node in emulated._plan.nodes()}
    assert MaxPool2dGrad in kinds if mode == "max" else AveragePool2dGrad in kinds
    got = emulated(xv, cv)
    expected = theanine.function([x, c], [y, gx], mode="py")(xv, cv)
    for a, b in zip(got, expected):
        assert a.dtype == b.dtype == np.float32
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-6)
