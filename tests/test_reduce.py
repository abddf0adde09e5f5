"""Reductions and scans over axes: values, dtypes, static shapes, gradients, axis errors."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.special import logsumexp as scipy_logsumexp

import theanine.tensor as T
from theanine.compiler.autodiff import grad
from theanine.graph.evaluate import evaluate
from tests.helpers import check_grad, run

RNG = np.random.default_rng(2)
SHAPE = (2, 3, 4)
AXES = [None, 0, 1, 2, -1, -2, (0, 2), [1, 2], (0, 1, 2), (), (-1, 0)]


def _np_axis(axis):
    return tuple(axis) if isinstance(axis, list) else axis


def _argmax_ref(x, axis, keepdims, fn):
    """numpy arg-reduction over several axes: move them last, flatten, reduce."""
    if axis is None:
        axis = tuple(range(x.ndim))
    axis = tuple(a % x.ndim for a in ((axis,) if isinstance(axis, int) else axis))
    kept = [a for a in range(x.ndim) if a not in axis]
    moved = np.transpose(x, kept + sorted(axis))
    out = fn(moved.reshape(moved.shape[: len(kept)] + (-1,)), axis=-1)
    if keepdims:
        out = out.reshape([1 if a in axis else d for a, d in enumerate(x.shape)])
    return out


# (name, theanine function, numpy oracle, dtypes)
REDUCTIONS = [
    ("sum", T.sum, np.sum, ("float32", "float64", "int32", "int8", "uint8", "bool")),
    ("prod", T.prod, np.prod, ("float32", "float64", "int32", "int16")),
    ("mean", T.mean, np.mean, ("float32", "float64", "int32", "int64")),
    ("var", T.var, np.var, ("float32", "float64", "int32")),
    ("std", T.std, np.std, ("float32", "float64")),
    ("max", T.max, np.max, ("float32", "float64", "int32", "uint8")),
    ("min", T.min, np.min, ("float32", "float64", "int64", "int8")),
    ("all", T.all, np.all, ("bool", "int32", "float32")),
    ("any", T.any, np.any, ("bool", "int32", "float64")),
    ("ptp", T.ptp, np.ptp, ("float32", "int32")),
    ("argmax", T.argmax, lambda x, axis, keepdims: _argmax_ref(x, axis, keepdims, np.argmax),
     ("float32", "int32")),
    ("argmin", T.argmin, lambda x, axis, keepdims: _argmax_ref(x, axis, keepdims, np.argmin),
     ("float64", "int8")),
    ("logsumexp", T.logsumexp, scipy_logsumexp, ("float64", "float32")),
]


def sample(dtype: str, shape=SHAPE) -> np.ndarray:
    if dtype == "bool":
        return RNG.integers(0, 2, size=shape).astype(bool)
    if np.dtype(dtype).kind in "iu":
        return RNG.integers(0 if np.dtype(dtype).kind == "u" else -3, 4, size=shape).astype(dtype)
    return RNG.normal(size=shape).astype(dtype)


@pytest.mark.parametrize("name, fn, ref, dtypes", REDUCTIONS, ids=[r[0] for r in REDUCTIONS])
@pytest.mark.parametrize("keepdims", [False, True])
def test_reduction_matches_numpy(name, fn, ref, dtypes, keepdims):
    for dtype in dtypes:
        x = sample(dtype)
        for axis in AXES:
            if name in ("argmax", "argmin", "ptp", "logsumexp") and axis == ():
                continue  # numpy has no empty-axis form of these
            value, out = run(lambda v: fn(v, axis=axis, keepdims=keepdims), x)
            expected = np.asarray(ref(x, axis=_np_axis(axis), keepdims=keepdims))
            if name == "logsumexp":
                expected = expected.astype(dtype)
            rtol = 1e-5 if dtype != "float32" else 1e-4
            message = f"{name} {dtype} {axis}"
            np.testing.assert_allclose(value, expected, rtol=rtol, atol=1e-6, err_msg=message)
            assert out.dtype == expected.dtype.name, (name, dtype, axis, out.dtype, expected.dtype)
            assert out.type.shape == expected.shape, (name, axis, out.type.shape, expected.shape)
            assert value.shape == expected.shape


@pytest.mark.parametrize("name", ["sum", "prod", "mean", "max", "min", "argmax"])
def test_unknown_static_shape_reduces_to_unknown(name):
    x = T.dtensor3("x")
    out = getattr(T, name)(x, axis=1)
    assert out.type.shape == (None, None)
    assert getattr(T, name)(x, axis=(0, 2), keepdims=True).type.shape == (1, None, 1)
    value = out.eval({x: sample("float64")})
    assert value.shape == (2, 4)


def test_mean_of_unknown_shape_counts_at_run_time():
    x = T.dmatrix("x")
    v = RNG.normal(size=(3, 5))
    np.testing.assert_allclose(T.mean(x, axis=0).eval({x: v}), v.mean(axis=0))
    np.testing.assert_allclose(T.var(x, axis=1, ddof=1).eval({x: v}), v.var(axis=1, ddof=1))
    np.testing.assert_allclose(T.std(x, corrected=True).eval({x: v}), v.std())
    assert T.mean(T.imatrix()).dtype == "float64"
    assert T.mean(T.fmatrix(), dtype="float64").dtype == "float64"


def test_sum_dtype_argument():
    x = T.bmatrix("x")
    v = np.full((2, 3), 100, dtype="int8")
    assert T.sum(x).dtype == "int64"
    out = T.sum(x, dtype="int8")
    assert out.dtype == "int8"
    assert out.eval({x: v}) == np.sum(v, dtype="int8")
    assert T.sum(x, acc_dtype="int32", axis=0).dtype == "int64"


GRAD_CASES = [
    ("sum", lambda x: T.sum(x, axis=1)),
    ("sum_keep", lambda x: T.sum(x, axis=(0, 2), keepdims=True)),
    ("prod", lambda x: T.prod(x, axis=-1)),
    ("prod_all", lambda x: T.prod(x)),
    ("mean", lambda x: T.mean(x, axis=(0, 1))),
    ("var", lambda x: T.var(x, axis=0)),
    ("var_ddof", lambda x: T.var(x, axis=2, ddof=1, keepdims=True)),
    ("std", lambda x: T.std(x, axis=1)),
    ("max", lambda x: T.max(x, axis=1)),
    ("min", lambda x: T.min(x, axis=(0, 2), keepdims=True)),
    ("max_all", lambda x: T.max(x)),
    ("ptp", lambda x: T.ptp(x, axis=2)),
    ("logsumexp", lambda x: T.logsumexp(x, axis=1)),
    ("norm1", lambda x: x.norm(1, axis=1)),
    ("norm2", lambda x: x.norm(2)),
    ("norm3", lambda x: T.norm(x, 3, axis=0)),
    ("cumsum", lambda x: T.cumsum(x, axis=1)),
    ("cumsum_neg", lambda x: T.cumsum(x, axis=-1)),
    ("cumprod", lambda x: T.cumprod(x, axis=2)),
]


@pytest.mark.parametrize("name, fn", GRAD_CASES, ids=[c[0] for c in GRAD_CASES])
def test_gradient(name, fn):
    x = RNG.uniform(0.5, 2.0, size=SHAPE) * RNG.choice([-1, 1], size=SHAPE)
    check_grad(fn, [x], rtol=1e-4)


def test_prod_gradient_with_zeros():
    x = T.dmatrix("x")
    v = np.array([[0.0, 2.0, 3.0], [1.0, 2.0, 3.0], [0.0, 0.0, 5.0]])
    (g,) = evaluate([grad(T.prod(x, axis=1).sum(), x)], {x: v})
    np.testing.assert_allclose(g, [[6.0, 0.0, 0.0], [6.0, 3.0, 2.0], [0.0, 0.0, 0.0]])
    check_grad(lambda x: T.prod(x, axis=0), [v])  # central differences agree at the zeros too


def test_max_gradient_goes_to_all_ties():
    x = T.dmatrix("x")
    v = np.array([[1.0, 3.0, 3.0], [2.0, 0.0, 1.0]])
    (g,) = evaluate([grad(T.max(x, axis=1).sum(), x)], {x: v})
    np.testing.assert_array_equal(g, [[0, 1, 1], [1, 0, 0]])


def test_max_and_argmax():
    x = T.fmatrix("x")
    v = RNG.normal(size=(3, 4)).astype("float32")
    m, i = T.max_and_argmax(x, axis=1)
    mv, iv = evaluate([m, i], {x: v})
    np.testing.assert_array_equal(mv, v.max(axis=1))
    np.testing.assert_array_equal(iv, v.argmax(axis=1))
    assert i.dtype == "int64" and m.dtype == "float32"


def test_methods_dispatch():
    x = T.dmatrix("x")
    v = RNG.normal(size=(3, 4))
    for name in ("sum", "prod", "mean", "var", "std", "max", "min", "argmax", "argmin", "ptp"):
        value = getattr(x, name)(axis=1).eval({x: v})
        np.testing.assert_allclose(value, getattr(np, name)(v, axis=1), err_msg=name)
    np.testing.assert_array_equal((x > 0).all(axis=0).eval({x: v}), (v > 0).all(axis=0))
    np.testing.assert_array_equal((x > 0).any().eval({x: v}), (v > 0).any())
    np.testing.assert_allclose(x.norm(2, axis=0).eval({x: v}), np.linalg.norm(v, axis=0))
    np.testing.assert_allclose(x.norm(1).eval({x: v}), np.abs(v).sum())
    np.testing.assert_allclose(x.cumsum(axis=0).eval({x: v}), v.cumsum(axis=0))
    np.testing.assert_allclose(x.cumprod(axis=1).eval({x: v}), v.cumprod(axis=1))
    np.testing.assert_allclose(x.clip(-0.5, 0.5).eval({x: v}), v.clip(-0.5, 0.5))
    np.testing.assert_allclose(x.round().eval({x: v}), v.round())


@pytest.mark.parametrize("dtype", ["float32", "int32", "int8", "bool"])
@pytest.mark.parametrize("axis", [0, 1, 2, -2])
def test_cumsum_cumprod(dtype, axis):
    x = sample(dtype)
    for fn, ref in ((T.cumsum, np.cumsum), (T.cumprod, np.cumprod)):
        value, out = run(lambda v: fn(v, axis=axis), x)
        expected = ref(x, axis=axis)
        np.testing.assert_allclose(value, expected, rtol=1e-5)
        assert out.dtype == expected.dtype.name and out.type.shape == expected.shape


def test_cumulative_ops_without_axis_flatten():
    value, out = run(T.cumsum, np.arange(5, dtype="float64"))
    np.testing.assert_array_equal(value, np.cumsum(np.arange(5)))
    x = sample("float64")
    for fn, ref in ((T.cumsum, np.cumsum), (T.cumprod, np.cumprod)):
        value, out = run(fn, x)
        np.testing.assert_allclose(value, ref(x))
        assert out.type.shape in ((24,), (None,))
    check_grad(T.cumsum, [RNG.normal(size=(2, 3))])
    check_grad(T.cumprod, [RNG.uniform(0.5, 2.0, size=(2, 3))])


def test_bad_axis_errors_name_the_input():
    x = T.dtensor3("x")
    message = r"sum of x: axis 3 is out of range for a 3-d input \(expected -3 <= axis < 3\)"
    with pytest.raises(ValueError, match=message):
        T.sum(x, axis=3)
    with pytest.raises(ValueError, match=r"max of x: axis -4 is out of range for a 3-d input"):
        x.max(axis=(0, -4))
    with pytest.raises(ValueError, match=r"mean of x: repeated axis in \(1, -2\)"):
        T.mean(x, axis=(1, -2))
    message = r"argmax of x: axis must be an int, a tuple or list of ints, or None, got 1.5"
    with pytest.raises(TypeError, match=message):
        T.argmax(x, axis=1.5)
    message = "axis must be a Python int or tuple, not a symbolic variable"
    with pytest.raises(TypeError, match=message):
        T.sum(x, axis=T.lscalar("a"))
    with pytest.raises(ValueError, match=r"cumsum of x: axis 5 is out of range"):
        T.cumsum(x, axis=5)
    with pytest.raises(NotImplementedError, match="norm: L=0"):
        x.norm(0)


def test_symbolic_constant_axis_is_accepted():
    x = T.dmatrix("x")
    v = RNG.normal(size=(3, 4))
    np.testing.assert_allclose(T.sum(x, axis=T.constant(1)).eval({x: v}), v.sum(axis=1))


@pytest.mark.parametrize("name", ["sum", "prod", "max", "min", "argmax"])
def test_reductions_over_axes_read_backwards_in_mode_numba(name):
    """A reduced axis laid out backwards (a backward loop's stacked outputs, x[::-1]) is read
    forwards by the order-free reductions; argmax keeps numpy's first index of a tie."""
    import theanine

    x = T.dtensor3("x")
    value = np.round(np.random.default_rng(3).normal(size=(5, 4, 6)), 1)
    value[1, :, 2] = value[3, :, 2] = 9.0  # a tie along axis 0
    for axis in [(0,), (0, 1), (1, 2), (0, 2)]:
        view = x[::-1, :, ::-1]
        if name == "argmax":
            if len(axis) != 1:
                continue
            expr = T.argmax(view, axis=axis[0])
            want = np.argmax(value[::-1, :, ::-1], axis=axis[0])
        else:
            expr = getattr(T, name)(view, axis=axis)
            want = getattr(np, name)(value[::-1, :, ::-1], axis=axis)
        got = theanine.function([x], expr, mode="numba")(value)
        np.testing.assert_allclose(got, want, rtol=1e-12)
