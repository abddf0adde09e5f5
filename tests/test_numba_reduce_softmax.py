"""Mode numba's parallel fused reductions, their lane-wise max/min folds, and float32 softmax."""

from __future__ import annotations

import numpy as np
import pytest
import theanine
import theanine.tensor as T

pytest.importorskip("numba")
from theanine.kernels.numba import fused_reduce as FR
from theanine.kernels.numba import nnet as NN
from theanine.kernels.numba import special

RNG = np.random.default_rng(2)


def test_parallel_plan_splits_full_row_and_column_reductions_only():
    from types import SimpleNamespace

    cases = {(0, 1, 2): None, (1, 2): "outer", (2,): "outer", (0, 1): "columns", (0,): None}
    for axis, plan in cases.items():  # a strided full reduction and axis 0 alone stay serial
        assert FR.parallel_plan(SimpleNamespace(axis=axis), 3) == plan, axis
    assert FR.parallel_plan(SimpleNamespace(axis=(0,)), 0) == "flat"  # one flat loop


@pytest.mark.parametrize("kind", ["sum", "prod", "max", "min"])
def test_parallel_loops_match_the_serial_ones(kind, monkeypatch):
    build = {"sum": T.sum, "prod": T.prod, "max": T.max, "min": T.min}[kind]
    x, v = T.dmatrix("x"), T.dvector("v")
    a = RNG.uniform(0.9, 1.1, (37, 3 * FR.CHUNK + 5))  # parts of unequal size, partial chunks
    a[5, 700] = 1.5 if kind == "max" else 0.5  # one extreme, inside a lane block
    outputs = [build(x * 1.0001, axis=1), build(x * 1.0001, axis=0), build(v * 1.0001)]
    f = theanine.function([x, v], outputs, mode="numba")
    serial = f(a, a[3])
    monkeypatch.setattr(FR, "PARALLEL_SIZE", 0)
    parallel = f(a, a[3])
    oracle = {"sum": np.sum, "prod": np.prod, "max": np.max, "min": np.min}[kind]
    b = a * 1.0001
    for got, want, expected in zip(parallel, serial, [oracle(b, 1), oracle(b, 0), oracle(b[3])]):
        assert got.shape == want.shape == expected.shape
        np.testing.assert_allclose(got, want, rtol=1e-13)
        np.testing.assert_allclose(got, expected, rtol=1e-12)


@pytest.mark.parametrize("kind", ["max", "min"])
@pytest.mark.parametrize("dtype", ["float32", "float64", "int32"])
def test_lane_folds_keep_nan_and_match_numpy(kind, dtype):
    x = T.TensorType(dtype, (None, None))("x")
    build, oracle = (T.max, np.max) if kind == "max" else (T.min, np.min)
    f = theanine.function([x], [build(x * 3, axis=1), build(x * 3)], mode="numba")
    a = RNG.integers(-1000, 1000, (4, 2 * FR.CHUNK + 13)).astype(dtype)
    rows, total = f(a)
    np.testing.assert_array_equal(rows, oracle(a * 3, axis=1))
    assert total == oracle(a * 3)
    if dtype.startswith("float"):
        a[2, FR.CHUNK + 9] = np.nan  # in the second chunk, past the first lane block
        rows, total = f(a)
        assert np.isnan(rows[2]) and np.isnan(total)
        np.testing.assert_array_equal(rows[[0, 1, 3]], oracle(a[[0, 1, 3]] * 3, axis=1))


def test_exp32_gives_exp_f32s_bits():
    import numba

    @numba.njit
    def both(x, a, b):
        for i in range(x.shape[0]):
            a[i] = NN.exp32(x[i])
            b[i] = special.exp_f32(x[i])

    x = np.arange(0, 2**32, 1031, dtype=np.uint64).astype(np.uint32).view(np.float32)
    a, b = np.empty_like(x), np.empty_like(x)
    both(x, a, b)
    assert np.array_equal(a, b, equal_nan=True)
    assert np.array_equal(np.signbit(a), np.signbit(b))


@pytest.mark.parametrize("log", [False, True])
def test_float32_softmax_is_close_to_float64_numpy(log):
    x = T.fmatrix("x")
    f = theanine.function([x], (T.nnet.log_softmax if log else T.nnet.softmax)(x), mode="numba")
    a = RNG.normal(0, 5, (7, 1003)).astype("float32")
    a[0, :5] = [80.0, -80.0, 0.0, 88.0, -100.0]  # large shifts: exp underflows, never overflows
    got = f(a)
    b = a.astype("float64")
    shifted = b - b.max(axis=1, keepdims=True)
    want = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    want = want if log else np.exp(want)
    assert got.dtype == np.float32 and got.shape == a.shape
    keep = np.abs(want) > 1e-30  # relative error where float32 has normal numbers
    rel = np.abs(got.astype("float64")[keep] - want[keep]) / np.abs(want[keep])
    if log:
        assert rel.max() < 4e-7, rel.max()
    else:  # as close as numpy's own float32 softmax of these rows (2.0-2.2e-6: float32 row sums)
        e = np.exp(a - a.max(axis=1, keepdims=True))
        numpy32 = (e / e.sum(axis=1, keepdims=True)).astype("float64")
        rel32 = np.abs(numpy32[keep] - want[keep]) / np.abs(want[keep])
        assert rel.max() < 1.5 * rel32.max(), (rel.max(), rel32.max())
    assert np.all(np.abs(got.astype("float64") - want)[~keep] < 1e-37)
    nan_row = a.copy()
    nan_row[3, 10] = np.nan
    out = f(nan_row)
    assert np.isnan(out[3]).all() and np.isfinite(out[[0, 1, 2, 4]]).all()
