"""T.nnet.conv2d: values against a nested-loop reference, static shapes, errors and gradients."""

from __future__ import annotations

import itertools
import warnings

import numpy as np
import pytest

import theanine
import theanine.tensor as T
from theanine.graph.evaluate import evaluate
from theanine.graph.ops.conv import Conv2d, Conv2dGradInputs, Conv2dGradWeights, conv2d
from theanine.graph.type import TensorType
from theanine.graph.var import input_var
from tests.helpers import check_grad, run

RNG = np.random.default_rng(11)


def reference_conv(x, w, pad, stride=(1, 1), flip=True, dilation=(1, 1), groups=1):
    """conv2d by the definition: explicit zero padding and one loop per output element."""
    b, c, h, wd = x.shape
    f, cg, kr, kc = w.shape
    pr, pc = pad
    xp = np.zeros((b, c, h + 2 * pr, wd + 2 * pc), dtype="float64")
    xp[:, :, pr : pr + h, pc : pc + wd] = x
    kern = w[:, :, ::-1, ::-1] if flip else w
    ho = (h + 2 * pr - (kr - 1) * dilation[0] - 1) // stride[0] + 1
    wo = (wd + 2 * pc - (kc - 1) * dilation[1] - 1) // stride[1] + 1
    fg = f // groups
    out = np.zeros((b, f, ho, wo))
    for n, k, r, q in itertools.product(range(b), range(f), range(ho), range(wo)):
        group = k // fg
        total = 0.0
        for ch, i, j in itertools.product(range(cg), range(kr), range(kc)):
            row, col = r * stride[0] + i * dilation[0], q * stride[1] + j * dilation[1]
            total += xp[n, group * cg + ch, row, col] * kern[k, ch, i, j]
        out[n, k, r, q] = total
    return out


def padding_of(mode, kernel, dilation):
    if mode == "valid":
        return (0, 0)
    if mode == "full":
        return tuple((k - 1) * d for k, d in zip(kernel, dilation))
    if mode == "half":
        return tuple(((k - 1) * d + 1) // 2 for k, d in zip(kernel, dilation))
    return (mode, mode) if isinstance(mode, int) else mode


MODES = ["valid", "full", "half", 1, (2, 1)]
CASES = [
    dict(stride=(1, 1), flip=True, dilation=(1, 1), groups=1),
    dict(stride=(2, 1), flip=True, dilation=(1, 1), groups=1),
    dict(stride=(1, 2), flip=False, dilation=(1, 1), groups=1),
    dict(stride=(1, 1), flip=False, dilation=(2, 1), groups=1),
    dict(stride=(2, 3), flip=True, dilation=(1, 2), groups=1),
    dict(stride=(1, 1), flip=True, dilation=(1, 1), groups=3),
    dict(stride=(2, 2), flip=False, dilation=(2, 2), groups=3),
]


@pytest.mark.parametrize("mode", MODES, ids=str)
@pytest.mark.parametrize("case", CASES, ids=lambda c: "-".join(f"{k}{v}" for k, v in c.items()))
def test_conv2d_matches_loop_reference(mode, case):
    groups = case["groups"]
    x = RNG.normal(size=(2, 3, 7, 6))
    w = RNG.normal(size=(6 if groups == 3 else 4, 3 // groups, 3, 2))
    value, out = run(
        lambda a, b: conv2d(a, b, border_mode=mode, subsample=case["stride"],
                            filter_flip=case["flip"], filter_dilation=case["dilation"],
                            num_groups=groups),
        x, w,
    )
    pad = padding_of(mode, w.shape[2:], case["dilation"])
    expected = reference_conv(x, w, pad, case["stride"], case["flip"], case["dilation"], groups)
    assert out.type.shape == expected.shape
    assert value.shape == expected.shape and value.dtype == np.float64
    np.testing.assert_allclose(value, expected, rtol=1e-10, atol=1e-10)


def test_conv2d_float32_and_unknown_shapes_through_function():
    x, w = T.ftensor4("x"), T.ftensor4("w")
    y = T.nnet.conv2d(x, w, border_mode="half")
    assert y.dtype == "float32" and y.type.shape == (None,) * 4
    f = theanine.function([x, w], y, mode="py")
    xv = RNG.normal(size=(2, 3, 7, 6)).astype("float32")
    wv = RNG.normal(size=(4, 3, 3, 2)).astype("float32")
    got = f(xv, wv)
    assert got.dtype == np.float32 and got.shape == (2, 4, 7, 7)
    np.testing.assert_allclose(got, reference_conv(xv, wv, (1, 1)), rtol=1e-4, atol=1e-4)


def test_shape_hints_give_static_shapes_and_are_checked():
    x, w = T.dtensor4("x"), T.dtensor4("w")
    y = conv2d(x, w, input_shape=(2, 3, 7, 6), filter_shape=(4, 3, 3, 2), subsample=(2, 2))
    assert y.type.shape == (2, 4, 3, 3)
    y = conv2d(x, w, input_shape=(None, 3, 7, 6), filter_shape=(4, 3, 3, 2))
    assert y.type.shape == (None, 4, 5, 5)
    with pytest.raises(ValueError, match="expected shape"):
        y.eval({x: np.zeros((1, 3, 6, 6)), w: np.zeros((4, 3, 3, 2))})
    with pytest.warns(DeprecationWarning, match="image_shape"):
        y = conv2d(x, w, image_shape=(2, 3, 7, 6), filter_shape=(4, 3, 3, 2))
    assert y.type.shape == (2, 4, 5, 5)


def test_build_time_errors_name_both_shapes():
    x = input_var(TensorType("float64", (2, 3, 7, 6)), "x")
    w = input_var(TensorType("float64", (4, 2, 3, 2)), "w")
    with pytest.raises(ValueError, match=r"3 channels.*expect 2.*\(2, 3, 7, 6\).*\(4, 2, 3, 2\)"):
        conv2d(x, w)
    with pytest.raises(ValueError, match=r"5 filters cannot be split into num_groups=3"):
        conv2d(x, input_var(TensorType("float64", (5, 1, 3, 2)), "w"), num_groups=3)
    with pytest.raises(TypeError, match="input must be a 4-d tensor"):
        conv2d(T.matrix("m"), w)
    with pytest.raises(ValueError, match="border_mode must be"):
        conv2d(x, w, border_mode="same")
    with pytest.raises(ValueError, match="subsample must be a pair of ints >= 1"):
        conv2d(x, w, subsample=(0, 1))
    with pytest.raises(ValueError, match="num_groups must be a positive int"):
        conv2d(x, w, num_groups=0)
    big = input_var(TensorType("float64", (4, 3, 9, 2)), "big")
    with pytest.raises(ValueError, match="do not fit in the input"):
        conv2d(x, big)
    with pytest.raises(ValueError, match="disagrees with the static shape"):
        conv2d(x, big, input_shape=(2, 4, 7, 6))
    with pytest.raises(ValueError, match="input_shape and image_shape"):
        conv2d(x, big, input_shape=(2, 3, 7, 6), image_shape=(2, 3, 7, 6))


def test_runtime_channel_mismatch_is_reported():
    x, w = T.dtensor4("x"), T.dtensor4("w")
    y = conv2d(x, w)
    with pytest.raises(ValueError, match="3 channels but the filters expect 2"):
        y.eval({x: np.zeros((2, 3, 7, 6)), w: np.zeros((4, 2, 3, 2))})


GRAD_CASES = [
    dict(border_mode="valid", subsample=(1, 1), filter_flip=True),
    dict(border_mode="full", subsample=(2, 1), filter_flip=False),
    dict(border_mode="half", subsample=(1, 2), filter_flip=True, filter_dilation=(2, 1)),
    dict(border_mode=(1, 2), subsample=(2, 2), filter_flip=False, num_groups=2),
]


@pytest.mark.parametrize("kw", GRAD_CASES, ids=lambda c: str(c["border_mode"]))
def test_conv2d_gradients_match_central_differences(kw):
    groups = kw.get("num_groups", 1)
    x = RNG.normal(size=(2, 2, 5, 4))
    w = RNG.normal(size=(4 if groups == 2 else 3, 2 // groups, 3, 2))
    check_grad(lambda a, b: conv2d(a, b, **kw), [x, w], rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("kw", GRAD_CASES[:2], ids=lambda c: str(c["border_mode"]))
def test_gradient_ops_are_differentiable(kw):
    """The gradient ops' own gradients (second derivatives) against central differences."""
    x = RNG.normal(size=(2, 2, 5, 4))
    w = RNG.normal(size=(3, 2, 3, 2))
    out_shape = evaluate([conv2d(T.constant(x), T.constant(w), **kw)], {})[0].shape
    gy = RNG.normal(size=out_shape)
    params = {k: v for k, v in kw.items()}
    params["border_mode"] = (0, 0) if params["border_mode"] == "valid" else params["border_mode"]
    in_shape = T.constant(np.array(x.shape[2:], dtype="int64"))
    k_shape = T.constant(np.array(w.shape[2:], dtype="int64"))
    grad_inputs = Conv2dGradInputs(**params)
    grad_weights = Conv2dGradWeights(**params)
    check_grad(lambda a, b: grad_inputs(a, b, in_shape), [w, gy], rtol=1e-5, atol=1e-7)
    check_grad(lambda a, b: grad_weights(a, b, k_shape), [x, gy], rtol=1e-5, atol=1e-7)


def test_gradient_types_follow_the_inputs():
    x = input_var(TensorType("float32", (2, 3, 7, 6)), "x")
    w = input_var(TensorType("float32", (4, 3, 3, 2)), "w")
    y = conv2d(x, w, subsample=(2, 2))
    gx, gw = theanine.grad(y.sum(), [x, w])
    assert gx.type == x.type and gw.type == w.type
    xv = RNG.normal(size=(2, 3, 7, 6)).astype("float32")
    wv = RNG.normal(size=(4, 3, 3, 2)).astype("float32")
    gxv, gwv = evaluate([gx, gw], {x: xv, w: wv})
    assert gxv.dtype == np.float32 and gxv.shape == (2, 3, 7, 6) and gwv.shape == (4, 3, 3, 2)
    # d(sum y)/dw[f, c, i, j] is the sum of the input entries each tap meets (flipped kernel)
    ones = reference_conv(xv, np.ones((1, 3, 3, 2)), (0, 0), (2, 2))
    assert ones.shape[2:] == (3, 3)
    expected = np.zeros((3, 3, 2))
    for c, i, j in itertools.product(range(3), range(3), range(2)):
        expected[c, 2 - i, 1 - j] = xv[:, c, i : i + 5 : 2, j : j + 5 : 2].sum()
    np.testing.assert_allclose(gwv[0], expected, rtol=1e-4)
    np.testing.assert_allclose(gwv[3], expected, rtol=1e-4)


def test_old_conv_keywords_are_accepted_and_bad_ones_rejected():
    x, w = T.dtensor4("x"), T.dtensor4("w")
    assert isinstance(conv2d(x, w, unroll_batch=2).op, Conv2d)
    with pytest.raises(TypeError, match="unexpected keyword argument 'strides'"):
        conv2d(x, w, strides=(1, 1))


def test_nnet_namespace_exports():
    assert T.nnet.conv2d is conv2d
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        T.nnet.conv2d(T.tensor4(), T.tensor4(), input_shape=(None, 3, 7, 6))


def reference_transpose(y, w, pad, stride, flip, in_size):
    """The transposed convolution by scattering every output entry back through the kernel."""
    b, f, ho, wo = y.shape
    _, c, kr, kc = w.shape
    kern = w[:, :, ::-1, ::-1] if flip else w
    xp = np.zeros((b, c, in_size[0] + 2 * pad[0], in_size[1] + 2 * pad[1]))
    for n, k, r, q, ch, i, j in itertools.product(*map(range, (b, f, ho, wo, c, kr, kc))):
        xp[n, ch, r * stride[0] + i, q * stride[1] + j] += y[n, k, r, q] * kern[k, ch, i, j]
    return xp[:, :, pad[0] : pad[0] + in_size[0], pad[1] : pad[1] + in_size[1]]


@pytest.mark.parametrize(
    "mode, stride", [("valid", (1, 1)), ("full", (2, 1)), ((1, 0), (2, 3))], ids=str
)
def test_conv2d_transpose_and_grad_helpers_match_references(mode, stride):
    y = RNG.normal(size=(2, 4, 3, 2))
    w = RNG.normal(size=(4, 3, 3, 2))
    pad = padding_of(mode, (3, 2), (1, 1))
    in_size = ((3 - 1) * stride[0] - 2 * pad[0] + 3, (2 - 1) * stride[1] - 2 * pad[1] + 2)
    value, out = run(
        lambda a, b: T.nnet.conv2d_transpose(a, b, (2, 3) + in_size, border_mode=mode,
                                             input_dilation=stride),
        y, w,
    )
    assert out.type.shape == (2, 3) + in_size
    expected = reference_transpose(y, w, pad, stride, True, in_size)
    np.testing.assert_allclose(value, expected, rtol=1e-10)
    # the weight gradient helper is the adjoint in the filters: <conv(x, w), y> = <w, gw(x, y)>
    x = RNG.normal(size=(2, 3) + in_size)
    grad_wrt_weights = T.nnet.abstract_conv.conv2d_grad_wrt_weights
    gw, out = run(
        lambda a, b: grad_wrt_weights(a, b, (4, 3, 3, 2), border_mode=mode, subsample=stride),
        x, y,
    )
    assert out.type.shape == w.shape
    forward = reference_conv(x, w, pad, stride)
    np.testing.assert_allclose(np.sum(forward * y), np.sum(gw * w), rtol=1e-10)


def test_conv2d_transpose_with_symbolic_output_shape():
    y, w = T.dtensor4("y"), T.dtensor4("w")
    rows = T.lscalar("rows")
    out = T.nnet.conv2d_transpose(y, w, (None, None, rows, 4), input_dilation=(2, 1))
    assert out.type.shape == (None, None, None, None)
    yv, wv = RNG.normal(size=(2, 4, 3, 3)), RNG.normal(size=(4, 3, 3, 2))
    got = out.eval({y: yv, w: wv, rows: 7})
    expected = reference_transpose(yv, wv, (0, 0), (2, 1), True, (7, 4))
    np.testing.assert_allclose(got, expected, rtol=1e-10)
    with pytest.raises(ValueError, match="output gradient has shape"):
        out.eval({y: yv, w: wv, rows: 9})


@pytest.mark.parametrize("dtype", ["float32", "float64", "int64"])
def test_numba_tensordot_through_its_blas_matches_numpy(dtype):
    from theanine.kernels.numba.linalg import blas_tensordot

    rng = np.random.default_rng(4)
    a = rng.normal(size=(2, 3, 4, 5)).astype(dtype)
    b = rng.normal(size=(5, 3, 6)).astype(dtype)
    for axes in (([1, 3], [1, 0]), ([3], [0]), ([-1, 1], [0, -2])):
        want = np.tensordot(a, b, axes)
        got = blas_tensordot(a, b, axes)
        assert got.shape == want.shape and got.dtype == want.dtype
        np.testing.assert_allclose(got, want, rtol=1e-5 if dtype == "float32" else 1e-12)
    strided = a[:, ::2].transpose(0, 2, 1, 3)  # not contiguous
    np.testing.assert_allclose(blas_tensordot(strided, b[:, :2], ([2, 3], [1, 0])),
                               np.tensordot(strided, b[:, :2], ([2, 3], [1, 0])), rtol=1e-5)


def test_numba_conv_is_a_lowering_not_a_numpy_step():
    from theanine.graph.ops import conv as C
    from theanine.kernels.numba.backend import LOWERINGS, NUMPY_STEPS

    for cls in (C.Conv2d, C.Conv2dGradInputs, C.Conv2dGradWeights):
        assert cls not in NUMPY_STEPS and cls in LOWERINGS
