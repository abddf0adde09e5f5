"""The CUDA plan runs a matrix product and the elementwise kernel reading it as one GEMM kernel."""

from __future__ import annotations

import numpy as np
import pytest

import theanine
import theanine.tensor as T
from theanine.kernels.cuda.backend import thread_order

RNG = np.random.default_rng(11)


def _dense(dtype: str):
    x = T.matrix("x", dtype=dtype)
    w = theanine.shared(RNG.normal(size=(5, 4)).astype(dtype), name="w")
    b = theanine.shared(RNG.normal(size=4).astype(dtype), name="b")
    hidden = T.nnet.relu(T.dot(x, w) + b)
    out = T.tanh(T.dot(hidden, w.T[:4, :4])) * 2.0
    return [x], [hidden, out]


def _kinds(f) -> list[str]:
    return [type(step[1]).__name__ for step in f._plan.steps]


@pytest.mark.parametrize("order", ["forward", "reverse", "shuffled"])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_dense_layers_run_as_fused_gemm_kernels(dtype, order):
    inputs, outputs = _dense(dtype)
    f = theanine.function(inputs, outputs, mode="cuda-emulator")
    g = theanine.function(inputs, outputs, mode="py")
    xv = RNG.normal(size=(3, 5)).astype(dtype)
    with thread_order(order):
        got = f(xv)
    for a, b in zip(got, g(xv)):
        np.testing.assert_allclose(a, b, rtol=1e-5 if dtype == "float32" else 1e-12, atol=1e-6)
    kinds = _kinds(f)
    assert kinds.count("EpilogueLowering") == 2
    assert "GemmLowering" not in kinds  # both products fused with the kernel reading them


def test_a_product_read_twice_is_not_fused():
    x = T.fmatrix("x")
    w = theanine.shared(RNG.normal(size=(5, 4)).astype("float32"), name="w")
    product = T.dot(x, w)
    # (two elementwise readers would merge into one loop reading it once: a reduction reads it)
    f = theanine.function([x], [T.nnet.relu(product), product.sum(axis=0)], mode="cuda-emulator")
    xv = RNG.normal(size=(3, 5)).astype("float32")
    got = f(xv)
    want = xv @ w.get_value()
    np.testing.assert_allclose(got[0], np.maximum(want, 0), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(got[1], want.sum(axis=0), rtol=1e-5, atol=1e-6)
    assert "EpilogueLowering" not in _kinds(f)


def test_two_elementwise_readers_of_a_product_are_one_epilogue():
    """relu(x w) and 3 x w share the product: merged into one loop, they are one epilogue of the
    GEMM with two outputs, and the product itself is never stored."""
    x = T.fmatrix("x")
    w = theanine.shared(RNG.normal(size=(5, 4)).astype("float32"), name="w")
    product = T.dot(x, w)
    f = theanine.function([x], [T.nnet.relu(product), product * 3.0], mode="cuda-emulator")
    xv = RNG.normal(size=(3, 5)).astype("float32")
    got = f(xv)
    want = xv @ w.get_value()
    np.testing.assert_allclose(got[0], np.maximum(want, 0), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(got[1], want * 3, rtol=1e-5)
    assert _kinds(f).count("EpilogueLowering") == 1


def test_fused_kernel_shape_errors_name_the_node():
    inputs, outputs = _dense("float32")
    f = theanine.function(inputs, outputs[0], mode="cuda-emulator")
    expected = r"(?s)operands of shapes \(3, 6\) and \(5, 4\).*node created at.*test_cuda_epilogue"
    with pytest.raises(ValueError, match=expected):
        f(np.ones((3, 6), "float32"))
