"""conv2d and its gradients on the CUDA emulator (im2col / col2im + batched GEMM) against mode 'py'."""

from __future__ import annotations

import numpy as np
import pytest
import theanine
import theanine.tensor as T
from theanine.graph.ops.conv import (
    Conv2d,
    Conv2dGradInputs,
    Conv2dGradWeights,
    conv2d_grad_wrt_inputs,
    conv2d_grad_wrt_weights,
)
from theanine.kernels.cuda import conv as cuda_conv
from theanine.kernels.cuda import nvcc
from theanine.kernels.cuda.backend import thread_order

CONV_OPS = (Conv2d, Conv2dGradInputs, Conv2dGradWeights)
TOLERANCE = {"float32": {"rtol": 2e-5, "atol": 2e-5}, "float64": {"rtol": 1e-12, "atol": 1e-12}}

# (x dtype, w dtype, x shape, w shape, conv2d keywords): a grid over every geometry parameter,
# with distinct sizes (batch 2, channels 3 or 4, 7x6 images, 3x2 filters) so swapped axes show.
CASES = [
    ("float64", "float64", (2, 3, 7, 6), (4, 3, 3, 2), {}),
    (
        "float32",
        "float32",
        (2, 3, 7, 6),
        (4, 3, 3, 2),
        {"border_mode": "full", "subsample": (2, 1), "filter_flip": False},
    ),
    (
        "float64",
        "float64",
        (2, 3, 7, 6),
        (4, 3, 3, 2),
        {"border_mode": "half", "subsample": (1, 2), "filter_dilation": (2, 1)},
    ),
    (
        "float32",
        "float32",
        (2, 3, 7, 6),
        (5, 3, 2, 3),
        {"border_mode": (1, 2), "subsample": (2, 3)},
    ),
    (
        "float64",
        "float64",
        (2, 3, 7, 6),
        (6, 1, 3, 2),
        {"border_mode": (2, 0), "filter_flip": False, "filter_dilation": (1, 2), "num_groups": 3},
    ),
    (
        "float32",
        "float32",
        (2, 4, 7, 6),
        (6, 2, 3, 2),
        {"border_mode": "valid", "subsample": (2, 2), "filter_dilation": (2, 2), "num_groups": 2},
    ),
    (
        "float64",
        "float64",
        (3, 4, 6, 7),
        (2, 2, 2, 3),
        {"border_mode": "full", "subsample": (3, 2), "filter_dilation": (1, 2), "num_groups": 2},
    ),
    ("float64", "float64", (2, 3, 7, 6), (4, 3, 3, 2), {"border_mode": 1, "subsample": 3}),
    ("float32", "float64", (2, 3, 7, 6), (4, 3, 3, 2), {"border_mode": "half"}),
]
_FUNCTIONS: dict = {}


def _graph(x_dtype: str, w_dtype: str, keywords: dict):
    """conv2d, and the gradients of sum(y * c) for an input c: the three conv ops."""
    x, w = T.tensor4("x", dtype=x_dtype), T.tensor4("w", dtype=w_dtype)
    y = T.nnet.conv2d(x, w, **keywords)
    c = T.tensor4("c", dtype=y.dtype)
    gx, gw = theanine.grad((y * c).sum(), [x, w])
    return [x, w, c], [y, gx, gw]


def functions(case) -> tuple:
    """(emulated, reference) functions of a case, built once per test session."""
    key = repr(case)
    if key not in _FUNCTIONS:
        x_dtype, w_dtype, _, _, keywords = case
        inputs, outputs = _graph(x_dtype, w_dtype, keywords)
        _FUNCTIONS[key] = (
            theanine.function(inputs, outputs, mode="cuda-emulator"),
            theanine.function(inputs, outputs, mode="py"),
        )
    return _FUNCTIONS[key]


def sample(case, seed: int = 0) -> list[np.ndarray]:
    """Random x, w, and a random output weighting c of the output's shape."""
    x_dtype, w_dtype, x_shape, w_shape, keywords = case
    rng = np.random.default_rng(seed)
    x = rng.normal(size=x_shape).astype(x_dtype)
    w = rng.normal(size=w_shape).astype(w_dtype)
    inputs, outputs = _graph(x_dtype, w_dtype, keywords)
    y = theanine.function(inputs[:2], outputs[0], mode="py")(x, w)
    return [x, w, rng.normal(size=y.shape).astype(y.dtype)]


def assert_matches(case, order: str = "forward") -> None:
    emulated, reference = functions(case)
    arrays = sample(case)
    with thread_order(order, seed=3):
        got = emulated(*arrays)
    expected = reference(*arrays)
    tolerance = TOLERANCE[np.result_type(case[0], case[1]).name]
    for name, a, b in zip(("conv2d", "grad wrt input", "grad wrt filters"), got, expected):
        assert a.dtype == b.dtype and a.shape == b.shape, name
        np.testing.assert_allclose(a, b, err_msg=name, **tolerance)


@pytest.mark.parametrize("case", CASES, ids=lambda c: f"{c[0]}-{c[1]}-{c[4]}")
def test_conv2d_and_its_gradients_match_py(case):
    assert_matches(case)


@pytest.mark.parametrize("order", ["reverse", "shuffled"])
@pytest.mark.parametrize("case", [CASES[2], CASES[5]], ids=["half-dilated", "groups-strided"])
def test_other_thread_orders(case, order):
    assert_matches(case, order)


def test_the_conv_nodes_run_kernels():
    emulated, _ = functions(CASES[4])
    host = [node for node, _ in emulated._plan.host_nodes()]
    assert not any(isinstance(node.op, CONV_OPS) for node in host)
    ran = {type(node.op) for node in emulated._plan.nodes()} & set(CONV_OPS)
    assert ran == set(CONV_OPS)
    what = [k.what for k in emulated._plan.kernels()]
    assert any(w.startswith("im2col") for w in what)
    assert any(w.startswith("col2im") for w in what)
    assert any(w.startswith("batched GEMM") for w in what)
    assert "gemm" in {k.kind for k in emulated._plan.kernels()}


def test_kernels_are_shared_across_geometries_and_named_by_their_source():
    one = {k.name for k in functions(CASES[0])[0]._plan.kernels() if "conv" in k.what.lower()}
    two = {k.name for k in functions(CASES[2])[0]._plan.kernels() if "conv" in k.what.lower()}
    assert one and one == two  # the geometry is passed at launch: one module serves both
    source = cuda_conv.im2col_kernel("float32", "float32").source
    assert source == cuda_conv.im2col_kernel("float32", "float32").source
    assert source.startswith("// im2col for Conv2d")


def test_batch_of_zero_images():
    case = ("float64", "float64", (0, 3, 7, 6), (4, 3, 3, 2), {"border_mode": "full"})
    emulated, reference = functions(case)
    x, w = np.zeros((0, 3, 7, 6)), np.ones((4, 3, 3, 2))
    got, expected = emulated(x, w, np.zeros((0, 4, 9, 7))), reference(x, w, np.zeros((0, 4, 9, 7)))
    for a, b in zip(got, expected):
        assert a.shape == b.shape
        np.testing.assert_array_equal(a, b)  # the filter gradient: zeros, summed over no image


def test_static_shapes_are_kept():
    x, w = T.dtensor4("x"), T.dtensor4("w")
    y = T.nnet.conv2d(x, w, input_shape=(2, 3, 7, 6), filter_shape=(4, 3, 3, 2), subsample=(2, 1))
    assert y.type.shape == (2, 4, 3, 5)
    f = theanine.function([x, w], y, mode="cuda-emulator")
    rng = np.random.default_rng(1)
    xv, wv = rng.normal(size=(2, 3, 7, 6)), rng.normal(size=(4, 3, 3, 2))
    expected = theanine.function([x, w], y, mode="py")(xv, wv)
    np.testing.assert_allclose(f(xv, wv), expected, rtol=1e-12, atol=1e-12)


def test_integer_convolution():
    x, w = T.itensor4("x"), T.itensor4("w")
    y = T.nnet.conv2d(x, w, border_mode="half", filter_flip=False)
    rng = np.random.default_rng(2)
    xv = rng.integers(-9, 9, size=(2, 3, 7, 6)).astype("int32")
    wv = rng.integers(-9, 9, size=(4, 3, 3, 2)).astype("int32")
    got = theanine.function([x, w], y, mode="cuda-emulator")(xv, wv)
    expected = theanine.function([x, w], y, mode="py")(xv, wv)
    assert got.dtype == np.int32
    np.testing.assert_array_equal(got, expected)


# --- errors ------------------------------------------------------------------------------------------


def test_channel_mismatch_is_a_clear_error():
    emulated, _ = functions(CASES[0])
    x, w = np.zeros((2, 5, 7, 6)), np.zeros((4, 3, 3, 2))
    message = (
        r"(?s)conv2d: the input has 5 channels but the filters expect 3 \* num_groups=1;"
        r".*node created at.*test_cuda_conv.py"
    )
    with pytest.raises(ValueError, match=message):
        emulated(x, w, np.zeros((2, 4, 5, 5)))


def test_filters_larger_than_the_input_are_a_clear_error():
    emulated, _ = functions(CASES[0])
    x, w = np.zeros((2, 3, 2, 6)), np.zeros((4, 3, 3, 2))
    message = (
        r"conv2d: the filters of size \(3, 2\) .*do not fit in the input of shape \(2, 3, 2, 6\)"
    )
    with pytest.raises(ValueError, match=message):
        emulated(x, w, np.zeros((2, 4, 1, 5)))


def test_groups_that_do_not_divide_the_channels_are_a_clear_error():
    emulated, _ = functions(CASES[5])  # num_groups=2
    x, w = np.zeros((2, 4, 7, 6), "float32"), np.zeros((5, 2, 3, 2), "float32")
    with pytest.raises(
        ValueError, match="4 input channels and 5 filters must both split into num_groups=2 groups"
    ):
        emulated(x, w, np.zeros((2, 5, 2, 3), "float32"))


def test_gradient_ops_check_the_output_gradient_shape():
    w, gy = T.dtensor4("w"), T.dtensor4("gy")
    rows, cols = T.lscalar("rows"), T.lscalar("cols")
    dx = conv2d_grad_wrt_inputs(gy, w, (rows, cols))
    f = theanine.function([w, gy, rows, cols], dx, mode="cuda-emulator")
    message = (
        r"Conv2dGradInputs: the output gradient has shape \(2, 4, 5, 4\), expected "
        r"\(2, 4, 5, 5\)"
    )
    with pytest.raises(ValueError, match=message):
        f(np.zeros((4, 3, 3, 2)), np.zeros((2, 4, 5, 4)), 7, 6)
    x = T.dtensor4("x")
    dw = conv2d_grad_wrt_weights(x, gy, (rows, cols))
    g = theanine.function([x, gy, rows, cols], dw, mode="cuda-emulator")
    message = (
        r"Conv2dGradWeights: the output gradient has shape \(3, 4, 5, 5\), expected "
        r"\(2, 4, 5, 5\)"
    )
    with pytest.raises(ValueError, match=message):
        g(np.zeros((2, 3, 7, 6)), np.zeros((3, 4, 5, 5)), 3, 2)
    good = g(np.ones((2, 3, 7, 6)), np.ones((2, 4, 5, 5)), 3, 2)
    np.testing.assert_array_equal(good, np.full((4, 3, 3, 2), 50.0))  # 2 images x 25 pixels


# --- the compile gate --------------------------------------------------------------------------------


def _all_kernels() -> list:
    kernels = [k for case in CASES for k in functions(case)[0]._plan.kernels()]
    mine = [k for k in kernels if k.what.startswith(("im2col", "col2im", "batched GEMM"))]
    return list({k.source: k for k in mine}.values())


@pytest.mark.skipif(nvcc.find_nvcc() is None, reason="nvcc (the CUDA toolkit) is not installed")
def test_conv_kernels_compile_for_sm80_and_sm90_within_limits():
    kernels = _all_kernels()
    assert {k.kind for k in kernels} == {"gemm", "other"}
    reports = nvcc.compile_kernels(kernels, nvcc.ARCHS)
    assert len(reports) == len(kernels) * 2
    by_name = {k.name: k for k in kernels}
    assert [p for r in reports for p in nvcc.limit_problems(by_name[r.kernel], r)] == []
    assert all(r.spill_stores == r.spill_loads == 0 for r in reports)  # im2col/col2im too
    gemm = [r for r in reports if by_name[r.kernel].kind == "gemm"]
    assert gemm and all(0 < r.shared_bytes <= 2 * 16 * 17 * 8 for r in gemm)


def test_kernels_loop_over_work_beyond_their_grid(monkeypatch):
    # One block per grid axis: the grid-stride, batch x group and row-tile loops do all the work.
    from theanine.kernels.cuda.backend import EMULATOR_BACKEND

    case = ("float32", "float32", (3, 2, 5, 4), (40, 1, 2, 1), {"num_groups": 2})
    emulated, reference = functions(case)
    arrays = sample(case)
    monkeypatch.setattr(EMULATOR_BACKEND.device, "max_grid", 1)
    for a, b in zip(emulated(*arrays), reference(*arrays)):
        np.testing.assert_allclose(a, b, rtol=2e-5, atol=2e-5)
