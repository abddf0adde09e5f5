"""pool_2d: values against a loop reference for every mode and geometry, gradients, errors."""

from __future__ import annotations

import itertools
import warnings

import numpy as np
import pytest

import theanine
import theanine.tensor as T
from theanine.graph import signal
from theanine.graph.evaluate import evaluate
from theanine.graph.ops.pool import AveragePool2dGrad, MaxPool2dGrad, MaxPool2dGradGrad, Pool2d
from theanine.graph.signal import max_pool_2d_same_size, pool_2d
from theanine.graph.type import TensorType
from theanine.graph.var import input_var
from tests.helpers import check_grad, run

RNG = np.random.default_rng(5)


def out_length(n, w, s, p, ignore_border):
    """Theano's formula, written out case by case."""
    n += 2 * p
    if ignore_border:
        return (n - w) // s + 1 if n >= w else 0
    if s >= w:
        return (n - 1) // s + 1
    return max(0, (n - 1 - w + s) // s) + 1


def reference_pool(x, ws, ignore_border, stride, pad, mode):
    """Pooling by its definition: one loop per output entry over an explicitly padded image."""
    rows, cols = x.shape[-2:]
    out_r = out_length(rows, ws[0], stride[0], pad[0], ignore_border)
    out_c = out_length(cols, ws[1], stride[1], pad[1], ignore_border)
    padded_r, padded_c = rows + 2 * pad[0], cols + 2 * pad[1]
    y = np.zeros(x.shape[:-2] + (padded_r, padded_c))
    y[..., pad[0] : pad[0] + rows, pad[1] : pad[1] + cols] = x
    out = np.zeros(x.shape[:-2] + (out_r, out_c))
    for lead in itertools.product(*map(range, x.shape[:-2])):
        for r, c in itertools.product(range(out_r), range(out_c)):
            r0, c0 = r * stride[0], c * stride[1]
            r1, c1 = min(r0 + ws[0], padded_r), min(c0 + ws[1], padded_c)
            if mode != "average_inc_pad":  # only the real image
                r0, c0 = max(r0, pad[0]), max(c0, pad[1])
                r1, c1 = min(r1, rows + pad[0]), min(c1, cols + pad[1])
            window = [y[lead + (i, j)] for i in range(r0, r1) for j in range(c0, c1)]
            if mode == "max":
                out[lead + (r, c)] = max(window)
            elif mode == "sum":
                out[lead + (r, c)] = sum(window)
            else:
                out[lead + (r, c)] = sum(window) / len(window)
    return out


MODES = ["max", "sum", "average_inc_pad", "average_exc_pad"]
GEOMETRIES = [  # ws, ignore_border, stride, pad
    ((2, 2), True, None, (0, 0)),
    ((2, 2), False, None, (0, 0)),
    ((3, 2), True, (1, 2), (0, 0)),
    ((3, 2), False, (1, 2), (0, 0)),
    ((2, 3), False, (3, 1), (0, 0)),
    ((3, 3), True, (2, 2), (1, 2)),
    ((2, 3), True, (1, 1), (1, 1)),
]


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("geometry", GEOMETRIES, ids=str)
def test_pool_matches_loop_reference(mode, geometry):
    ws, ignore_border, stride, pad = geometry
    x = RNG.normal(size=(2, 3, 5, 7))
    value, out = run(lambda a: pool_2d(a, ws, ignore_border, stride, pad, mode), x)
    expected = reference_pool(x, ws, ignore_border, stride or ws, pad, mode)
    assert out.type.shape == expected.shape and value.dtype == np.float64
    np.testing.assert_allclose(value, expected, rtol=1e-12)


@pytest.mark.parametrize("shape", [(5, 7), (3, 5, 7), (2, 2, 3, 5, 7)], ids=str)
def test_pool_works_on_the_last_two_axes_of_any_rank(shape):
    x = RNG.normal(size=shape).astype("float32")
    value, out = run(lambda a: pool_2d(a, (2, 3), ignore_border=True, mode="average_exc_pad"), x)
    expected = reference_pool(x.astype("float64"), (2, 3), True, (2, 3), (0, 0), "average_exc_pad")
    assert value.dtype == np.float32 and out.dtype == "float32"
    assert out.type.shape == expected.shape == shape[:-2] + (2, 2)
    np.testing.assert_allclose(value, expected, rtol=1e-5)


def test_max_pool_of_integers_keeps_the_dtype():
    x = RNG.integers(-50, 50, size=(3, 4, 5)).astype("int32")
    value, out = run(lambda a: pool_2d(a, (2, 2), ignore_border=False), x)
    assert out.dtype == "int32" and value.dtype == np.int32
    np.testing.assert_array_equal(value, reference_pool(x, (2, 2), False, (2, 2), (0, 0), "max"))


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("geometry", [GEOMETRIES[1], GEOMETRIES[3], GEOMETRIES[5]], ids=str)
def test_pool_gradients_match_central_differences(mode, geometry):
    ws, ignore_border, stride, pad = geometry
    x = RNG.permutation(2 * 2 * 5 * 4).reshape(2, 2, 5, 4) / 7.0  # distinct: no ties in a max
    check_grad(lambda a: pool_2d(a, ws, ignore_border, stride, pad, mode), [x])


def test_max_gradient_goes_to_every_tied_maximum_as_in_theano():
    x = np.array([[[[1.0, 3.0], [3.0, 2.0]]]])
    xv = T.dtensor4("x")
    g = theanine.grad(pool_2d(xv, (2, 2), ignore_border=True).sum(), xv)
    np.testing.assert_array_equal(g.eval({xv: x}), [[[[0.0, 1.0], [1.0, 0.0]]]])


@pytest.mark.parametrize("mode", ["max", "average_inc_pad"])
def test_pool_gradient_ops_are_differentiable(mode):
    x = RNG.permutation(2 * 5 * 4).reshape(2, 5, 4) / 5.0
    geometry = ((3, 2), True, (1, 2), (1, 0), mode)
    pooled = evaluate([Pool2d(*geometry)(T.constant(x))], {})[0]
    g = RNG.normal(size=pooled.shape)
    xc, pc = T.constant(x), T.constant(pooled)
    if mode == "max":
        check_grad(lambda b: MaxPool2dGrad(*geometry)(xc, pc, b), [g])
        check_grad(lambda b: MaxPool2dGradGrad(*geometry)(xc, pc, b), [RNG.normal(size=x.shape)])
    else:
        check_grad(lambda b: AveragePool2dGrad(*geometry)(xc, b), [g])


def test_max_pool_2d_same_size_keeps_patch_maxima():
    x = RNG.normal(size=(2, 4, 6))
    value, _ = run(lambda a: max_pool_2d_same_size(a, (2, 3)), x)
    expected = np.zeros_like(x)
    for n, r, c in itertools.product(range(2), range(0, 4, 2), range(0, 6, 3)):
        patch = x[n, r : r + 2, c : c + 3]
        i, j = np.unravel_index(np.argmax(patch), patch.shape)
        expected[n, r + i, c + j] = patch[i, j]
    np.testing.assert_array_equal(value, expected)


def test_deprecated_aliases_warn_once_and_work():
    x = T.dtensor4("x")
    signal._warned.clear()
    with pytest.warns(DeprecationWarning, match="'ds' argument is deprecated"):
        y = pool_2d(x, ds=(2, 2), ignore_border=True)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        y2 = pool_2d(x, ds=(2, 2), ignore_border=True)  # warned once already
    assert y.op == Pool2d((2, 2), True, (2, 2), (0, 0), "max") and y2 is y
    with pytest.warns(DeprecationWarning, match="'st'.*'stride'"):
        y = pool_2d(x, (3, 3), ignore_border=True, st=(1, 1))
    with pytest.warns(DeprecationWarning, match="'padding'.*'pad'"):
        z = pool_2d(x, (3, 3), ignore_border=True, st=(1, 1), padding=(1, 1))
    assert y.op.stride == (1, 1) and z.op.pad == (1, 1)
    with pytest.raises(ValueError, match="give 'ws' or its deprecated alias 'ds', not both"):
        pool_2d(x, (2, 2), ds=(2, 2))


def test_ignore_border_none_warns_and_is_false_as_in_theano():
    x = input_var(TensorType("float64", (2, 3, 5, 7)), "x")
    with pytest.warns(UserWarning, match="ignore_border was not given"):
        y = pool_2d(x, (2, 2))
    assert y.type.shape == (2, 3, 3, 4)


def test_static_shapes_and_errors():
    x = input_var(TensorType("float32", (None, 3, 5, 7)), "x")
    assert pool_2d(x, (2, 2), ignore_border=True).type.shape == (None, 3, 2, 3)
    assert pool_2d(x, (2, 2), ignore_border=True, pad=(1, 1)).type.shape == (None, 3, 3, 4)
    with pytest.raises(ValueError, match="mode must be one of max, sum"):
        pool_2d(x, (2, 2), ignore_border=True, mode="mean")
    with pytest.raises(ValueError, match="the window size ws is required"):
        pool_2d(x, ignore_border=True)
    with pytest.raises(TypeError, match="at least 2 dimensions"):
        pool_2d(T.vector("v"), (2, 2), ignore_border=True)
    with pytest.raises(ValueError, match="padding \\(2, 0\\) must be smaller than the window"):
        pool_2d(x, (2, 2), ignore_border=True, pad=(2, 0))
    with pytest.raises(NotImplementedError, match="padding needs ignore_border=True"):
        pool_2d(x, (2, 2), ignore_border=False, pad=(1, 1))
    with pytest.raises(ValueError, match="ws must be a pair of ints >= 1"):
        pool_2d(x, (0, 2), ignore_border=True)
    with pytest.raises(ValueError, match="does not fit in the input"):
        pool_2d(x, (6, 2), ignore_border=True)


def test_pool_through_function_in_py_mode():
    x = T.ftensor4("x")
    y = pool_2d(x, (2, 2), ignore_border=True, mode="average_inc_pad", pad=(1, 1))
    f = theanine.function([x], [y, theanine.grad(y.sum(), x)], mode="py")
    xv = RNG.normal(size=(2, 3, 5, 7)).astype("float32")
    out, gx = f(xv)
    expected = reference_pool(xv, (2, 2), True, (2, 2), (1, 1), "average_inc_pad")
    np.testing.assert_allclose(out, expected, rtol=1e-5)
    assert gx.dtype == np.float32 and gx.shape == xv.shape
    np.testing.assert_allclose(gx, np.full(xv.shape, 0.25), rtol=1e-6)


def test_gradients_of_an_empty_pooled_output_are_zeros():
    """A window larger than the image with ignore_border: no output, and zero gradients."""
    from theanine.tensor.signal.pool import pool_2d

    x = T.dtensor4("x")
    xv = np.random.default_rng(3).normal(size=(2, 3, 2, 3))
    for mode in ("max", "sum", "average_exc_pad"):
        y = pool_2d(x, ws=(3, 3), ignore_border=True, mode=mode)
        f = theanine.function([x], [y, theanine.grad(y.sum(), x)], mode="py")
        out, gx = f(xv)
        assert out.shape == (2, 3, 0, 1)
        np.testing.assert_array_equal(gx, np.zeros_like(xv))
