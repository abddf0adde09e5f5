"""CUDA kernels of advanced indexing, inc/set_subtensor (atomics), class selection, allocs vs 'py'."""

from __future__ import annotations

import functools

import numpy as np
import pytest
import theanine
import theanine.tensor as T
from theanine.graph.ops import nnet, shape_alloc
from theanine.graph.ops.shape import Copy
from theanine.graph.var import Var
from theanine.kernels.cuda import nvcc, scatter
from theanine.kernels.cuda.backend import EMULATOR_BACKEND, thread_order

ORDERS = ["forward", "reverse", "shuffled"]
RNG = np.random.default_rng(7)
INDEX = np.array([1, 1, -5, 0, 4, 1], dtype="int64")  # repeats and a negative (size-5 axis)


def _normal(shape, dtype):
    return RNG.standard_normal(shape).astype(dtype)


def _ints(shape, dtype):
    return RNG.integers(0, 3, shape).astype(dtype)


# --- cases: (name, build -> (inputs, outputs), values, op types that must run kernels) ----------


def _gather_int(dtype):
    def build():
        x, i = T.tensor(dtype=dtype, shape=(None,) * 3, name="x"), T.lvector("i")
        outs = [
            x[i],
            x[:, i[:4]],
            x[1:, i[:4], ::2],
            x[i[:3], :, i[3:]],
            x[:, None, i[:4]],
            x[0, :, i[:5]],
            x[i[:2], None, i[2:4]],
            x[::-1, 2, i[:3]],
        ]
        return [x, i], outs

    return build


def _gather_matrix_index():
    x, m = T.ftensor3("x"), T.imatrix("m")
    return [x, m], [x[m], x[:, m[:, :2]], x[m, m]]


def _gather_mask():
    x = T.dtensor3("x")
    mask2 = T.TensorType("bool", (None, None))("mask2")
    mask1 = T.TensorType("bool", (None,))("mask1")
    return [x, mask2, mask1], [
        x[mask2],
        x[:, :, 1][mask2],
        x[mask1],
        x[:, mask2[0]],
        x[mask1, 1:3],
    ]


def _scatter(dtype):
    def build():
        x = T.tensor(dtype=dtype, shape=(None, None), name="x")
        y = T.tensor(dtype=dtype, shape=(None, None), name="y")
        i = T.lvector("i")
        row = y[0]
        outs = [
            T.inc_subtensor(x[i], y),
            T.set_subtensor(x[i], y),
            T.inc_subtensor(x[i], row),
            T.inc_subtensor(x[1:, 2], y[:4, 0]),
            T.set_subtensor(x[::2, 1:], y[:3, 1:]),
            T.inc_subtensor(x[i, i[::-1]], y[:, 1]),
            T.set_subtensor(x[2], y[0]),
        ]
        return [x, y, i], outs

    return build


def _scatter_3d():
    x, y, i = T.dtensor3("x"), T.dmatrix("y"), T.lvector("i")
    mask = T.TensorType("bool", (None, None))("mask")
    outs = [
        T.inc_subtensor(x[:, i[:4], 1], y[:5, :4]),
        T.inc_subtensor(x[mask], y[0, 0]),
        T.set_subtensor(x[1, :, i[:3]], y.T[:3]),
        T.inc_subtensor(x[i[:3], None, i[3:]], 2.0),
    ]
    return [x, y, i, mask], outs


def _index_grads(dtype):
    def build():
        x, i = T.tensor(dtype=dtype, shape=(None, None), name="x"), T.lvector("i")
        mask = T.TensorType("bool", (None, None))("mask")
        w = T.constant(np.arange(1.0, 7.0, dtype=dtype))
        cost = (x[i].sum(axis=1) * w).sum() + (x[mask] ** 2).sum() + (x[:, i[:3]] ** 3).sum()
        return [x, i, mask], [T.grad(cost, x)]

    return build


def _select(dtype):
    def build():
        p, labels = (
            T.tensor(dtype=dtype, shape=(None, None), name="p"),
            T.lvector("labels"),
        )
        loss = T.nnet.categorical_crossentropy(T.nnet.softmax(p), labels).mean()
        g = T.vector("g", dtype=dtype)
        direct = [
            Var(nnet.SelectClass(), (p, labels)),
            Var(nnet.SelectClassGrad(), (g, p, labels)),
        ]
        return [p, labels, g], [loss, T.grad(loss, p)] + direct

    return build


def _allocs():
    x, n, reps = T.dmatrix("x"), T.lscalar("n"), T.lvector("reps")
    f = T.fmatrix("f")
    idx = T.lmatrix("idx")
    taken = Var(shape_alloc.TakeAlongAxis(1), (x, idx))
    outs = [
        T.alloc(x[0], n, 5),
        T.alloc(np.float64(1.5), 2, n),
        T.concatenate([x, x[:2] * 2]),
        T.concatenate([x, f[:, :2]], axis=1),
        T.arange(n),
        T.arange(1.5, n, 0.25),
        T.arange(n, -3, -2),
        T.eye(n, 5, 1),
        T.eye(n, dtype="float32"),
        T.tile(x, (2, 1, 3)),
        T.repeat(x, 2, axis=1),
        T.repeat(x, reps, axis=0),
        T.roll(x, n, axis=1),
        T.roll(x, -n),
        Var(Copy(), (x,)),
        taken,
        T.grad((taken**2 * T.arange(1.0, 4.0)).sum(), x),  # a PutAlongAxis (np.add.at)
        Var(shape_alloc.PutAlongAxis(1), (f, idx % 3, f[:, :3] * 3)),
    ]
    return [x, n, reps, f, idx], outs


VALUES = {
    "gather_float64": [_normal((5, 7, 6), "float64"), INDEX],
    "gather_float32": [_normal((5, 7, 6), "float32"), INDEX],
    "gather_int32": [_ints((5, 7, 6), "int32"), INDEX],
    "gather_index_matrix": [
        _normal((5, 6, 3), "float32"),
        np.array([[0, -1, 2], [2, 2, 4]], "int32"),
    ],
    "gather_mask": [
        _normal((3, 4, 5), "float64"),
        RNG.random((3, 4)) > 0.4,
        np.array([True, False, True]),
    ],
    "scatter_3d": [
        _normal((5, 6, 7), "float64"),
        _normal((6, 5), "float64"),
        INDEX,
        RNG.random((5, 6)) > 0.5,
    ],
    "grad_float64": [_normal((5, 6), "float64"), INDEX, RNG.random((5, 6)) > 0.5],
    "grad_float32": [_normal((5, 6), "float32"), INDEX, RNG.random((5, 6)) > 0.5],
    "select_float32": [
        _normal((4, 7), "float32"),
        np.array([0, 6, 3, 3]),
        _normal(4, "float32"),
    ],
    "select_float64": [
        _normal((4, 7), "float64"),
        np.array([6, 0, 0, 2]),
        _normal(4, "float64"),
    ],
    "allocs": [
        _normal((3, 5), "float64"),
        3,
        np.array([2, 0, 1]),
        _normal((3, 4), "float32"),
        np.array([[0, 4, -1], [2, 2, 1], [3, 0, 0]]),
    ],
}
BUILDS = {
    "gather_float64": (_gather_int("float64"), ["Subtensor"]),
    "gather_float32": (_gather_int("float32"), ["Subtensor"]),
    "gather_int32": (_gather_int("int32"), ["Subtensor"]),
    "gather_index_matrix": (_gather_matrix_index, ["Subtensor"]),
    "gather_mask": (_gather_mask, ["Subtensor"]),
    "scatter_3d": (_scatter_3d, ["IncSubtensor"]),
    "grad_float64": (_index_grads("float64"), ["IncSubtensor"]),
    "grad_float32": (_index_grads("float32"), ["IncSubtensor"]),
    "select_float32": (_select("float32"), ["SelectClass", "SelectClassGrad"]),
    "select_float64": (_select("float64"), ["SelectClass", "SelectClassGrad"]),
    "allocs": (
        _allocs,
        [
            "Alloc",
            "Join",
            "ARange",
            "Eye",
            "Tile",
            "Repeat",
            "Roll",
            "Copy",
            "TakeAlongAxis",
            "PutAlongAxis",
        ],
    ),
}
for _dtype in ("float32", "float64", "int32", "int64", "int8", "uint16", "bool"):
    _x, _y = (
        (_normal((5, 7), _dtype), _normal((6, 7), _dtype))
        if _dtype[0] == "f"
        else (_ints((5, 7), _dtype), _ints((6, 7), _dtype))
    )
    VALUES[f"scatter_{_dtype}"] = [_x, _y, INDEX]
    BUILDS[f"scatter_{_dtype}"] = (_scatter(_dtype), ["IncSubtensor"])
NAMES = list(BUILDS)


@functools.cache
def _functions(name: str):
    build, _ = BUILDS[name]
    inputs, outputs = build()
    emulated = theanine.function(inputs, outputs, mode="cuda-emulator")
    return emulated, theanine.function(inputs, outputs, mode="py")


@pytest.mark.parametrize("order", ORDERS)
@pytest.mark.parametrize("name", NAMES)
def test_kernels_match_py(name, order):
    emulated, reference = _functions(name)
    values = VALUES[name]
    with thread_order(order, seed=3):
        got = emulated(*values)
    expected = reference(*values)
    assert len(got) == len(expected)
    for g, e in zip(got, expected):
        assert g.dtype == e.dtype and g.shape == e.shape
        rtol = 2e-5 if g.dtype == np.float32 else 1e-12
        np.testing.assert_allclose(g, e, rtol=rtol, atol=1e-6 if g.dtype.kind == "f" else 0)


@pytest.mark.parametrize("name", NAMES)
def test_nodes_run_kernels(name):
    emulated, _ = _functions(name)
    plan = emulated._plan
    on_host = {type(v.op).__name__ for v, _ in plan.host_nodes()}
    assert on_host <= {"AxisSize", "Shape"}  # shape metadata only
    ran = {type(v.op).__name__ for v in plan.nodes()}
    assert set(BUILDS[name][1]) <= ran


def test_atomics_only_for_repeated_increments_of_atomic_dtypes():
    x, y, i = T.fmatrix("x"), T.fmatrix("y"), T.lvector("i")
    lowering = scatter.lowering(T.inc_subtensor(x[i], y))
    assert (
        lowering.atomic is not None
        and "atomicAdd(&out[at], (float)y[yo])" in lowering.atomic.source
    )
    big = T.lmatrix("big")
    assert "unsigned long long" in scatter.lowering(T.inc_subtensor(big[i], big)).atomic.source
    small = T.bmatrix("small")
    assert scatter.lowering(T.inc_subtensor(small[i], small)).atomic is None
    assert scatter.lowering(T.set_subtensor(x[i], y)).atomic is None


@pytest.mark.parametrize("dtype", ["float32", "int8"])
def test_repeated_increments_launch_atomics_or_one_round_per_repeat(dtype, monkeypatch):
    x, y = T.matrix("x", dtype), T.matrix("y", dtype)
    i = T.lvector("i")
    f = theanine.function([x, y, i], T.inc_subtensor(x[i], y), mode="cuda-emulator")
    (node,) = [v for v in f._plan.nodes() if type(v.op).__name__ == "IncSubtensor"]
    lowering = scatter.lowering(node)
    xv, yv, _ = VALUES[f"scatter_{dtype}"]
    names = _launched(monkeypatch)
    got = f(xv, yv, INDEX)
    expected = xv.copy()
    np.add.at(expected, INDEX, yv)
    np.testing.assert_allclose(got, expected, rtol=1e-6)
    if dtype == "float32":
        assert names.count(lowering.atomic.name) == 1
    else:  # index 1 appears three times: three deterministic rounds, no atomics
        assert lowering.atomic is None and names.count(lowering.skipping.name) == 3


def test_set_subtensor_keeps_numpys_last_write_and_inc_sums_like_add_at():
    emulated, _ = _functions("scatter_float64")
    x, y, i = VALUES["scatter_float64"]
    added, written = emulated(x, y, i)[:2]
    expected = x.copy()
    np.add.at(expected, i, y)
    np.testing.assert_allclose(added, expected, rtol=1e-12)
    last = x.copy()
    last[i] = y  # numpy: the last of the repeated rows (index 1 -> y[5]) wins
    np.testing.assert_array_equal(written, last)
    np.testing.assert_array_equal(written[1], y[5])


def test_source_is_deterministic():
    x, i = T.dmatrix("x"), T.lvector("i")
    first = scatter.lowering(x[i, 1:]).kernel
    second = scatter.lowering(T.dmatrix("other")[i, 1:]).kernel
    assert first.source == second.source and first.name.startswith("k_")
    assert "gather advanced indexing of float64" in first.source


def _launched(monkeypatch) -> list:
    names: list = []
    device = EMULATOR_BACKEND.device
    original = device.launch

    def record(module, name, *args, **kwargs):
        names.append(name)
        return original(module, name, *args, **kwargs)

    monkeypatch.setattr(device, "launch", record)
    return names


def test_out_of_bounds_index_raises_before_any_device_write(monkeypatch):
    x, y, i = T.dmatrix("x"), T.dmatrix("y"), T.lvector("i")
    get = theanine.function([x, i], x[i] * 2, mode="cuda-emulator")
    inc = theanine.function([x, y, i], T.inc_subtensor(x[:, i], y), mode="cuda-emulator")
    names = _launched(monkeypatch)
    with pytest.raises(
        IndexError,
        match=r"(?s)Subtensor.*index 5 is out of bounds for axis 0 "
        r"with size 5.*node created at",
    ):
        get(np.ones((5, 2)), np.array([0, 5]))
    with pytest.raises(IndexError, match="index -4 is out of bounds for axis 1 with size 3"):
        inc(np.ones((5, 3)), np.ones((5, 2)), np.array([0, -4]))
    assert names == []  # nothing was launched: the host checks came first


def test_index_error_messages():
    x, y, i = T.dtensor3("x"), T.dmatrix("y"), T.lvector("i")
    mask = T.TensorType("bool", (None, None))("mask")
    f = theanine.function([x, mask], x[mask], mode="cuda-emulator")
    with pytest.raises(
        IndexError,
        match=r"boolean index of shape \(3, 5\) does not match the "
        r"indexed axes 0..1 of shape \(3, 4\)",
    ):
        f(np.ones((3, 4, 2)), np.ones((3, 5), bool))
    j = T.lvector("j")
    g = theanine.function([x, i, j], x[i, :, j], mode="cuda-emulator")
    with pytest.raises(
        IndexError,
        match=r"index arrays could not be broadcast together with "
        r"shapes \(2,\) \(3,\)",
    ):
        g(np.ones((3, 4, 2)), np.array([0, 1]), np.array([0, 1, 1]))
    h = theanine.function([x, y, i], T.inc_subtensor(x[i], y), mode="cuda-emulator")
    with pytest.raises(
        ValueError,
        match=r"cannot broadcast the value of shape \(3, 3\) to "
        r"\(2, 4, 2\)",
    ):
        h(np.ones((3, 4, 2)), np.ones((3, 3)), np.array([0, 1]))


def test_class_label_and_arange_errors():
    p, labels, n = T.dmatrix("p"), T.lvector("labels"), T.dscalar("n")
    f = theanine.function(
        [p, labels], T.nnet.categorical_crossentropy(p, labels), mode="cuda-emulator"
    )
    with pytest.raises(
        IndexError,
        match=r"(?s)SelectClass.*class label 7 is out of range for 4 "
        "classes",
    ):
        f(np.ones((2, 4)), np.array([1, 7]))
    with pytest.raises(
        ValueError,
        match="the distribution has shape \\(2, 4\\) but the labels have shape \\(3,\\)",
    ):
        f(np.ones((2, 4)), np.array([1, 2, 3]))
    g = theanine.function([n], T.arange(0.0, 3.0, n), mode="cuda-emulator")
    with pytest.raises(ValueError, match="arange: step must not be zero"):
        g(0.0)


def test_other_dtypes_stay_on_the_host_path_of_the_backend():
    x = T.tensor(dtype="complex128", shape=(None,), name="x")
    i = T.lvector("i")
    assert scatter.lowering(x[i]) is None


NVCC = nvcc.find_nvcc()


@pytest.mark.skipif(NVCC is None, reason="nvcc (the CUDA toolkit) is not installed here")
def test_every_kernel_compiles_for_sm80_and_sm90_within_limits():
    kernels = [k for name in NAMES for k in _functions(name)[0]._plan.kernels()]
    kernels = list({k.source: k for k in kernels}.values())
    reports = nvcc.compile_kernels(kernels, nvcc.ARCHS)
    by_name = {k.name: k for k in kernels}
    assert [p for r in reports for p in nvcc.limit_problems(by_name[r.kernel], r)] == []
    assert {r.arch for r in reports} == {"sm_80", "sm_90"}
    assert any("atomicAdd" in k.source for k in kernels)
