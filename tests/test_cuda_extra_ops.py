"""CUDA kernels of cumsum/cumprod, sum_to_shape, the diagonal ops and sort/argsort vs mode 'py'."""

from __future__ import annotations

import functools

import numpy as np
import pytest
import theanine
import theanine.tensor as T
from theanine.graph.ops import reduce, shape_alloc
from theanine.graph.var import Var
from theanine.kernels.cuda import extra_ops, nvcc
from theanine.kernels.cuda.backend import thread_order

ORDERS = ["forward", "reverse", "shuffled"]
RNG = np.random.default_rng(11)
OURS = {"CumSum", "CumProd", "SumToShape", "AllocDiag", "Diagonal", "DiagonalGrad", "Sort",
        "ArgSort"}


def _values(shape, dtype, ties=False, nans=False):
    """Random values of `dtype`: small integers (ties) or normals; NaNs at a few places."""
    if dtype == "bool":
        return RNG.integers(0, 2, shape).astype(bool)
    if np.dtype(dtype).kind in "iu" or ties:
        values = RNG.integers(-3, 4, shape).astype(dtype)
    else:
        values = RNG.standard_normal(shape).astype(dtype)
    if nans:
        values.reshape(-1)[:: 7] = np.nan
        values.reshape(-1)[3] = -0.0  # with the zeros among the ties: -0.0 == 0.0 keeps its place
    return values


def _tensor(dtype, ndim, name="x"):
    return T.tensor(dtype=dtype, shape=(None,) * ndim, name=name)


# --- cases: name -> (build () -> (inputs, outputs), values, op names that must run kernels) ------


def _cumulative(dtype):
    def build():
        x = _tensor(dtype, 3)
        outs = [T.cumsum(x, axis=0), T.cumsum(x, axis=1), T.cumsum(x, axis=-1), T.cumsum(x),
                Var(reduce.CumSum(1, True), (x,)), T.cumprod(x, axis=0), T.cumprod(x, axis=-1),
                T.cumprod(x, axis=1)]
        return [x], outs

    return build


def _sum_to_shape(dtype):
    def build():
        g, x, y = _tensor(dtype, 4, "g"), _tensor(dtype, 3, "x"), _tensor(dtype, 4, "y")
        outs = [Var(shape_alloc.SumToShape(), (g, x)), Var(shape_alloc.SumToShape(), (g, y))]
        return [g, x, y], outs

    return build


def _diagonals(dtype):
    def build():
        x, v = _tensor(dtype, 3), _tensor(dtype, 1, "v")
        outs = [T.diagonal(x, 0, 0, 1), T.diagonal(x, 1, 0, 2), T.diagonal(x, -2, 2, 0),
                T.diagonal(x, 1, -1, -2), T.diagonal(x, 9, 0, 1), T.diag(v), T.diag(v, 2),
                T.diag(v, -1), T.diag(x[1], -1)]
        return [x, v], outs

    return build


def _sorts(dtype, kind="stable"):
    def build():
        x = _tensor(dtype, 3)
        outs = [T.sort(x, axis=0), T.sort(x, axis=1), T.sort(x, axis=-1), T.sort(x, axis=None),
                T.argsort(x, axis=0, kind=kind), T.argsort(x, axis=1, kind=kind),
                T.argsort(x, axis=-1, kind=kind), T.argsort(x, axis=None, kind=kind)]
        return [x], outs

    return build


SHAPE = (5, 7, 6)
CASES = {}
for _dtype in ("float32", "float64", "int64", "int32", "bool"):
    _x = _values(SHAPE, _dtype)
    if _dtype.startswith("float"):
        _x = (1 + 0.1 * _x).astype(_dtype)  # products stay near 1
    CASES[f"cumulative_{_dtype}"] = (_cumulative(_dtype), [_x], {"CumSum", "CumProd"})
for _dtype in ("float32", "float64", "int64"):
    CASES[f"sum_to_shape_{_dtype}"] = (
        _sum_to_shape(_dtype),
        [_values((3, 4, 5, 6), _dtype), np.zeros((4, 1, 6), _dtype),
         np.zeros((1, 4, 1, 1), _dtype)],
        {"SumToShape"},
    )
    CASES[f"diagonals_{_dtype}"] = (
        _diagonals(_dtype), [_values((4, 5, 6), _dtype), _values((3,), _dtype)],
        {"Diagonal", "AllocDiag"},
    )
for _dtype in ("float32", "float64"):  # NaNs, -0.0 and ties: the stable order is numpy's
    CASES[f"sort_ties_{_dtype}"] = (
        _sorts(_dtype), [_values((9, 37, 6), _dtype, ties=True, nans=True)], {"Sort", "ArgSort"},
    )
    # numpy's default 'quicksort' orders ties as it likes: without ties, both orders agree
    CASES[f"sort_quick_{_dtype}"] = (
        _sorts(_dtype, "quicksort"), [_values((9, 37, 6), _dtype)], {"Sort", "ArgSort"},
    )
CASES["sort_ties_int64"] = (_sorts("int64"), [_values((9, 37, 6), "int64")], {"Sort", "ArgSort"})
CASES["sort_ties_bool"] = (_sorts("bool"), [_values((9, 37, 6), "bool")], {"Sort", "ArgSort"})
NAMES = list(CASES)


@functools.cache
def _functions(name: str):
    build, _, _ = CASES[name]
    inputs, outputs = build()
    emulated = theanine.function(inputs, outputs, mode="cuda-emulator")
    return emulated, theanine.function(inputs, outputs, mode="py")


def _assert_same(got, expected):
    assert len(got) == len(expected)
    for g, e in zip(got, expected):
        assert g.dtype == e.dtype and g.shape == e.shape
        if g.dtype.kind == "f":
            rtol = 2e-5 if g.dtype == np.float32 else 1e-12
            np.testing.assert_allclose(g, e, rtol=rtol, atol=1e-6)
        else:
            np.testing.assert_array_equal(g, e)


@pytest.mark.parametrize("order", ORDERS)
@pytest.mark.parametrize("name", NAMES)
def test_kernels_match_py(name, order):
    emulated, reference = _functions(name)
    values = CASES[name][1]
    with thread_order(order, seed=5):
        got = emulated(*values)
    _assert_same(got, reference(*values))


@pytest.mark.parametrize("name", NAMES)
def test_nodes_run_kernels(name):
    emulated, _ = _functions(name)
    plan = emulated._plan
    on_host = {type(v.op).__name__ for v, _ in plan.host_nodes()}
    assert not on_host & OURS
    assert CASES[name][2] <= {type(v.op).__name__ for v, _ in plan.kernel_sources()}


def test_scans_and_sorts_are_bitwise_numpys():
    """Cumulative sums of short lines run in numpy's order and sorts are exact: equal bits.

    (Not the flattened cumsum: its one line of 210 is cut into chunks, which round otherwise;
    nor -0.0 among zeros: numpy's 'quicksort' of values puts -0.0 and 0.0 in either order.)
    """
    for name in ("cumulative_float32", "sort_ties_float32", "sort_ties_float64"):
        emulated, reference = _functions(name)
        value = CASES[name][1][0].copy()
        value[value == 0] = 0
        got, expected = emulated(value), reference(value)
        chunked = 3 if name.startswith("cumulative") else None
        for k, (g, e) in enumerate(zip(got, expected)):
            assert k == chunked or g.tobytes() == e.tobytes()


def test_long_lines_and_single_element_axes():
    """Tiles of 256 sorted in shared memory, then merge passes in global memory (lines of 1000,
    300, 256, 257: partial tiles, several lines of several tiles), and axes of length 1."""
    x = _tensor("float64", 2)
    outs = [T.sort(x, axis=0), T.argsort(x, axis=0, kind="stable"), T.cumsum(x, axis=1),
            T.sort(x, axis=1), T.argsort(x, axis=1, kind="stable")]
    emulated = theanine.function([x], outs, mode="cuda-emulator")
    reference = theanine.function([x], outs, mode="py")
    for shape in ((1000, 1), (300, 3), (256, 2), (257, 2), (3, 1), (0, 4)):
        value = _values(shape, "float64", ties=True, nans=shape[0] > 3)
        for order in ORDERS:
            with thread_order(order, seed=1):
                _assert_same(emulated(value), reference(value))


def test_long_lines_are_scanned_in_chunks():
    """Few long lines: chunk totals, their scan, then each chunk from its carry (ints exact)."""
    x, i = _tensor("float64", 2), _tensor("int64", 2, "i")
    outs = [T.cumsum(x, axis=1), Var(reduce.CumSum(0, True), (x,)), T.cumprod(x, axis=0),
            T.cumsum(i, axis=1), Var(reduce.CumSum(0, True), (i,)), T.cumprod(i, axis=1)]
    emulated = theanine.function([x, i], outs, mode="cuda-emulator")
    reference = theanine.function([x, i], outs, mode="py")
    assert extra_ops._chunks(2, 3001) == (46, 66) and extra_ops._chunks(8192, 3001) == (1, 3001)
    for shape in ((2, 3001), (3001, 3)):
        value = 1 + 1e-3 * _values(shape, "float64")
        ints = _values(shape, "int64")
        ints[ints == 0] = 3  # products overflow and wrap as numpy's do
        with thread_order("reverse"):
            _assert_same(emulated(value, ints), reference(value, ints))


def test_quicksort_ties_give_the_stable_order():
    """numpy's 'quicksort' orders ties per CPU; ours is its stable order, a valid argsort."""
    emulated, _ = _functions("sort_quick_float32")
    value = _values((9, 37, 6), "float32", ties=True)
    got = emulated(value)
    for axis, index in zip((0, 1, 2), got[4:7]):
        np.testing.assert_array_equal(index, np.argsort(value, axis=axis, kind="stable"))
        sorted_ = np.take_along_axis(value, index, axis=axis)
        np.testing.assert_array_equal(sorted_, np.sort(value, axis=axis))


def _grad_functions(build):
    inputs, outputs = build()
    return (theanine.function(inputs, outputs, mode="cuda-emulator"),
            theanine.function(inputs, outputs, mode="py"))


def test_gradients_match_py():
    def build():
        x, w = _tensor("float64", 3), _tensor("float64", 3, "w")
        costs = [
            (T.cumsum(x, axis=1) * w).sum(),
            (T.cumsum(x, axis=-1) * w).sum(),
            (T.cumprod(x, axis=0) * w).sum(),
            (T.cumprod(x, axis=2) * w).sum(),
            (T.diagonal(x, 1, 0, 2) * w[0, :4, :5].T).sum(),
            (T.diagonal(x, -1, 2, 1) * w[:, 0, :5]).sum(),
            (T.sort(x, axis=1) * w).sum(),
        ]
        return [x, w], [T.grad(c, x) for c in costs]

    emulated, reference = _grad_functions(build)
    x = 1 + 0.2 * _values((4, 5, 6), "float64")
    w = _values((4, 5, 6), "float64")
    with thread_order("shuffled", seed=2):
        got = emulated(x, w)
    _assert_same(got, reference(x, w))
    host = {type(v.op).__name__ for v, _ in emulated._plan.host_nodes()}
    assert not host & OURS
    ran = {type(v.op).__name__ for v in emulated._plan.nodes()}
    assert {"CumSum", "DiagonalGrad", "ArgSort"} <= ran


def test_sum_to_shape_in_a_broadcast_gradient():
    v = T.tensor(dtype="float32", shape=(None, None), name="v")
    n = T.lscalar("n")
    cost = (T.alloc(v, 3, n, 4) * T.arange(12, dtype="float32").reshape((3, 1, 4))).sum()
    outputs = [T.grad(cost, v)]
    emulated = theanine.function([v, n], outputs, mode="cuda-emulator")
    reference = theanine.function([v, n], outputs, mode="py")
    ran = {type(x.op).__name__ for x in emulated._plan.nodes()}
    assert "SumToShape" in ran
    for shape, size in (((1, 4), 5), ((5, 1), 5), ((5, 4), 5)):
        value = _values(shape, "float32")
        _assert_same(emulated(value, size), reference(value, size))


def test_sum_to_shape_of_a_wrong_shape_is_an_error():
    emulated, _ = _functions("sum_to_shape_float64")
    g = np.zeros((3, 4, 5, 6))
    with pytest.raises(ValueError, match=r"sum_to_shape: cannot sum a cotangent of shape "
                                         r"\(3, 4, 5, 6\) to shape \(4, 3, 6\)"):
        emulated(g, np.zeros((4, 3, 6)), np.zeros((1, 4, 1, 1)))


def test_diagonal_grad_of_a_wrong_cotangent_is_an_error():
    g, x = _tensor("float32", 2, "g"), _tensor("float32", 3)
    out = Var(shape_alloc.DiagonalGrad(1, 0, 2), (g, x))
    emulated = theanine.function([g, x], out, mode="cuda-emulator")
    with pytest.raises(ValueError, match=r"diagonal gradient: the cotangent has shape \(5, 3\), "
                                         r"expected \(5, 4\)"):
        emulated(np.zeros((5, 3), "float32"), np.zeros((4, 5, 6), "float32"))


def test_dtypes_without_a_cuda_type_stay_on_the_host_with_a_reason():
    x = _tensor("float16", 2)
    f = theanine.function([x], [T.cumsum(x, axis=0), T.sort(x)], mode="cuda-emulator")
    reasons = {type(v.op).__name__: reason for v, reason in f._plan.host_nodes()}
    assert reasons == {"CumSum": extra_ops._DTYPES, "Sort": extra_ops._DTYPES}
    value = _values((3, 4), "float16")
    np.testing.assert_array_equal(f(value)[1], np.sort(value))


def test_generated_sources_are_deterministic_and_name_their_op():
    x = _tensor("float32", 3)
    first = extra_ops.lowering(T.cumsum(x, axis=1)).kernels[0]
    again = extra_ops.lowering(T.cumsum(_tensor("float32", 3, "y"), axis=1)).kernels[0]
    assert first == again
    assert first.source.startswith("// cumsum along one axis of float32 -> float32: scan")
    # another axis: the same source (compiled once), a different node in the error messages
    other = extra_ops.lowering(T.cumsum(x, axis=0)).kernels[0]
    assert other.source == first.source and other.what != first.what
    assert extra_ops.lowering(T.exp(x)) is None
    assert extra_ops.lowering(T.cumsum(_tensor("float16", 3), axis=1)) is None


NVCC = nvcc.find_nvcc()


@pytest.mark.skipif(NVCC is None, reason="nvcc (the CUDA toolkit) is not installed here")
def test_every_kernel_compiles_for_sm80_and_sm90_within_limits():
    kernels = [k for name in NAMES for k in _functions(name)[0]._plan.kernels()]
    kernels = list({k.source: k for k in kernels}.values())
    reports = nvcc.compile_kernels(kernels, nvcc.ARCHS)
    by_name = {k.name: k for k in kernels}
    assert [p for r in reports for p in nvcc.limit_problems(by_name[r.kernel], r)] == []
    assert {r.arch for r in reports} == {"sm_80", "sm_90"}
    assert all(r.spill_stores == 0 and r.spill_loads == 0 for r in reports)
