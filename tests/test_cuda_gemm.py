"""CUDA GEMM kernels: batched MatMul, TensorDot, Ger and the fused epilogue vs 'py' and numpy."""

from __future__ import annotations

import functools

import numpy as np
import pytest
import theanine
import theanine.tensor as T
from theanine.graph.evaluate import evaluate
from theanine.graph.ops import blas, nnet
from theanine.graph.ops import elemwise as E
from theanine.graph.ops.composite import Composite, placeholder
from theanine.graph.ops.elemwise_math import Tanh
from theanine.graph.var import Var
from theanine.kernels.cuda import gemm, nvcc
from theanine.kernels.cuda.backend import EMULATOR_BACKEND, thread_order

ORDERS = ["forward", "reverse", "shuffled"]
RNG = np.random.default_rng(11)


def _normal(shape, dtype):
    return RNG.standard_normal(shape).astype(dtype)


def _batched(dtype):
    def build():
        a = T.tensor(dtype=dtype, shape=(None,) * 3, name="a")
        b = T.tensor(dtype=dtype, shape=(None,) * 3, name="b")
        w = T.tensor(dtype=dtype, shape=(None, None), name="w")
        a4 = T.tensor(dtype=dtype, shape=(None,) * 4, name="a4")
        outs = [T.matmul(a, b), T.matmul(a, w), T.matmul(a4, b), T.batched_dot(a, b)]
        return [a, b, w, a4], outs

    return build


def _tensordots(dtype):
    def build():
        a = T.tensor(dtype=dtype, shape=(None,) * 3, name="a")
        w = T.tensor(dtype=dtype, shape=(None, None), name="w")
        c = T.tensor(dtype=dtype, shape=(None,) * 3, name="c")
        outs = [
            T.tensordot(a, w, axes=[[2], [0]]),  # merges: no copy
            T.tensordot(c, w, axes=[[1, 2], [0, 1]]),
            T.tensordot(c, c, axes=[[0], [0]]),
            T.tensordot(a, c, axes=[[1], [0]]),  # a's free axes 0 and 2: copied first
            T.tensordot(w, c, axes=[[1], [2]]),
            T.batched_tensordot(a, c[:2, :, :3], axes=[[1], [2]]),
        ]
        return [a, w, c], outs

    return build


def _ger(dtype):
    def build():
        m, alpha = (
            T.tensor(dtype=dtype, shape=(None, None), name="m"),
            T.scalar("al", dtype),
        )
        x, y = T.vector("x", dtype), T.vector("y", dtype)
        return [m, alpha, x, y], [
            Var(blas.Ger(), (m, alpha, x, y)),
            Var(blas.Ger(), (m.T * 2, alpha, y, x)),
        ]

    return build


BUILDS = {
    "batched_float32": _batched("float32"),
    "batched_float64": _batched("float64"),
    "batched_int32": _batched("int32"),
    "tensordot_float32": _tensordots("float32"),
    "tensordot_float64": _tensordots("float64"),
    "ger_float32": _ger("float32"),
    "ger_float64": _ger("float64"),
}


def _values(name):
    dtype = name.rsplit("_", 1)[1]
    sample = (
        (lambda s: RNG.integers(-3, 4, s).astype(dtype))
        if dtype == "int32"
        else (lambda s: _normal(s, dtype))
    )
    if name.startswith("batched"):
        return [
            sample((2, 3, 4)),
            sample((2, 4, 5)),
            sample((4, 5)),
            sample((3, 1, 3, 4)),
        ]
    if name.startswith("tensordot"):
        return [sample((2, 3, 4)), sample((4, 5)), sample((3, 4, 5))]
    return [sample((3, 4)), np.asarray(0.5, dtype), sample(3), sample(4)]


VALUES = {name: _values(name) for name in BUILDS}


@functools.cache
def _functions(name):
    inputs, outputs = BUILDS[name]()
    return (
        theanine.function(inputs, outputs, mode="cuda-emulator"),
        theanine.function(inputs, outputs, mode="py"),
    )


def _close(got, expected):
    assert got.dtype == expected.dtype and got.shape == expected.shape
    rtol = 2e-5 if got.dtype == np.float32 else 1e-12
    np.testing.assert_allclose(got, expected, rtol=rtol, atol=1e-5 if got.dtype.kind == "f" else 0)


@pytest.mark.parametrize("order", ORDERS)
@pytest.mark.parametrize("name", list(BUILDS))
def test_kernels_match_py(name, order):
    emulated, reference = _functions(name)
    with thread_order(order, seed=5):
        got = emulated(*VALUES[name])
    for g, e in zip(got, reference(*VALUES[name])):
        _close(g, e)


@pytest.mark.parametrize("name", list(BUILDS))
def test_nodes_run_gemm_kernels(name):
    plan = _functions(name)[0]._plan
    assert plan.host_nodes() == []
    kinds = {k.kind for k in plan.kernels()}
    assert ("elementwise" if name.startswith("ger") else "gemm") in kinds
    ops = {type(v.op).__name__ for v in plan.nodes()}
    assert {"batched": "MatMul", "tensordot": "TensorDot", "ger": "Ger"}[name.split("_")[0]] in ops


def test_plain_gemm_kernel_keeps_its_parameters():
    # conv lowerings launch gemm_kernel(var) themselves: its parameter list is an interface
    a, b = T.fmatrix("a"), T.fmatrix("b")
    kernel = gemm.gemm_kernel(T.dot(a, b)).kernel
    names = [name for _, name in kernel.parameters()]
    assert names == ["a", "b", "out", "M", "N", "K", "sa0", "sa1", "sb0", "sb1"]


def test_runtime_shape_errors():
    a, b, c = T.dtensor3("a"), T.dtensor3("b"), T.dtensor3("c")
    f = theanine.function([a, b], T.matmul(a, b), mode="cuda-emulator")
    with pytest.raises(
        ValueError,
        match=r"(?s)MatMul.*matmul: inner dimensions differ: "
        r"\(2, 3, 4\) @ \(2, 5, 5\) \(4 != 5\).*node created at",
    ):
        f(np.ones((2, 3, 4)), np.ones((2, 5, 5)))
    with pytest.raises(
        ValueError,
        match=r"batch dimensions cannot be broadcast: \(2, 3, 4\) @ "
        r"\(3, 4, 5\)",
    ):
        f(np.ones((2, 3, 4)), np.ones((3, 4, 5)))
    g = theanine.function([a, c], T.tensordot(a, c, axes=[[2], [0]]), mode="cuda-emulator")
    with pytest.raises(
        ValueError,
        match=r"tensordot: summed dimensions differ: \(4,\) of "
        r"\(2, 3, 4\) and \(3,\) of \(3, 4, 5\)",
    ):
        g(np.ones((2, 3, 4)), np.ones((3, 4, 5)))
    m, x, y, al = T.dmatrix("m"), T.dvector("x"), T.dvector("y"), T.dscalar("al")
    h = theanine.function([m, al, x, y], Var(blas.Ger(), (m, al, x, y)), mode="cuda-emulator")
    with pytest.raises(
        ValueError,
        match=r"ger: a of shape \(3, 5\) does not broadcast to the "
        r"outer product \(3, 4\)",
    ):
        h(np.ones((3, 5)), 1.0, np.ones(3), np.ones(4))


# --- the fused epilogue ---------------------------------------------------------------------------

ACTIVATIONS = {
    "identity": (lambda v: v, lambda v: v),
    "relu": (lambda v: Var(nnet.Relu(0.0), (v,)), lambda v: np.maximum(v, 0)),
    "tanh": (lambda v: Var(Tanh(), (v,)), np.tanh),
    "sigmoid": (lambda v: Var(nnet.Sigmoid(), (v,)), lambda v: 1 / (1 + np.exp(-v))),
}


def _bias_activation(dot: Var, bias: Var, activation: str) -> Var:
    """The Composite act(p0 + p1) over (dot, bias), as fusion builds it."""
    p0, p1 = placeholder(0, dot.dtype), placeholder(1, bias.dtype)
    body = ACTIVATIONS[activation][0](Var(E.Add(), (p0, p1)))
    return Var(Composite((p0, p1), (body,)), (dot, bias))


def _launch(lowering, values):
    device = EMULATOR_BACKEND.device
    module = device.compile([lowering.kernel])
    return lowering.launch(device, module, [device.to_device(v) for v in values]).get()


@pytest.mark.parametrize("order", ORDERS)
@pytest.mark.parametrize("activation", list(ACTIVATIONS))
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_dot_bias_activation_runs_as_one_kernel(dtype, activation, order):
    x, w, b = T.matrix("x", dtype), T.matrix("W", dtype), T.vector("b", dtype)
    dot, row = (
        T.dot(x, w),
        b.dimshuffle("x", 0),
    )  # the bias row, as the fused graph reads it
    fused = _bias_activation(dot, row, activation)
    lowering = gemm.gemm_epilogue_kernel(dot, fused)
    assert lowering is not None and lowering.inputs == (x, w, row)
    assert lowering.kernel.kind == "gemm" and "tile_a" in lowering.kernel.source
    xv, wv, bv = _normal((19, 33), dtype), _normal((33, 17), dtype), _normal(17, dtype)
    with thread_order(order, seed=2):
        got = _launch(lowering, [xv, wv, bv[None]])
    expected = ACTIVATIONS[activation][1](xv.astype("float64") @ wv + bv).astype(dtype)
    reference = theanine.function([x, w, b], fused, mode="py")(xv, wv, bv)
    _close(got, reference)
    np.testing.assert_allclose(got, expected, rtol=1e-4 if dtype == "float32" else 1e-12, atol=1e-5)


@pytest.mark.parametrize("activation", ["relu", "tanh", "sigmoid"])
def test_epilogue_fuses_what_the_pipeline_builds(activation):
    # dot(x, W) + b becomes Gemm(b row, 1, x, W, 1) read by one Elemwise: fuse that pair
    x, w, b = T.fmatrix("x"), T.fmatrix("W"), T.fvector("b")
    y = {"relu": T.nnet.relu, "tanh": T.tanh, "sigmoid": T.nnet.sigmoid}[activation](
        T.dot(x, w) + b
    )
    emulated = theanine.function([x, w, b], y, mode="cuda-emulator")
    (reader,) = [v for v in emulated._plan.nodes() if isinstance(v.op, E.Elemwise)]
    product = reader.inputs[0]
    assert isinstance(product.op, blas.Gemm)
    lowering = gemm.gemm_epilogue_kernel(product, reader)
    values = {
        x: _normal((9, 21), "float32"),
        w: _normal((21, 13), "float32"),
        b: _normal(13, "float32"),
    }
    got = _launch(lowering, evaluate(list(lowering.inputs), values))
    _close(got, theanine.function([x, w, b], y, mode="py")(*values.values()))


def _scaled_relu():
    """relu(0.5 * x @ W - 2 * z + b) as Gemm and a Composite, fused."""
    z, x, w = T.dmatrix("z"), T.dmatrix("x"), T.dmatrix("W")
    b = T.TensorType("float64", (1, None))("b")
    alpha, beta = T.constant(np.float64(0.5)), T.constant(np.float64(-2.0))
    product = Var(blas.Gemm(), (z, alpha, x, w, beta))
    return gemm.gemm_epilogue_kernel(product, _bias_activation(product, b, "relu"))


def test_gemm_with_alpha_beta_and_a_bias_row_fuses():
    lowering = _scaled_relu()
    values = [
        _normal((6, 5), "float64"),
        np.float64(0.5),
        _normal((6, 7), "float64"),
        _normal((7, 5), "float64"),
        np.float64(-2.0),
        _normal((1, 5), "float64"),
    ]
    got = _launch(lowering, values)
    z_, _, x_, w_, _, b_ = values
    np.testing.assert_allclose(got, np.maximum(0.5 * x_ @ w_ - 2.0 * z_ + b_, 0), rtol=1e-12)


def test_epilogue_refuses_what_it_cannot_fuse_and_checks_shapes():
    x, w, b = T.dmatrix("x"), T.dmatrix("W"), T.dmatrix("b")
    dot = T.dot(x, w)
    other = _bias_activation(T.dot(w, x), b, "relu")
    assert gemm.gemm_epilogue_kernel(dot, other) is None  # does not read this product
    v = T.dvector("v")
    column = T.dot(x, v)
    assert gemm.gemm_epilogue_kernel(column, _bias_activation(column, v, "relu")) is None  # 1-d
    lowering = gemm.gemm_epilogue_kernel(dot, _bias_activation(dot, b, "tanh"))
    with pytest.raises(
        ValueError,
        match=r"an epilogue input of shape \(1, 4\) does not "
        r"broadcast to the product \(2, 3\)",
    ):
        _launch(lowering, [np.ones((2, 5)), np.ones((5, 3)), np.ones((1, 4))])


NVCC = nvcc.find_nvcc()


@pytest.mark.skipif(NVCC is None, reason="nvcc (the CUDA toolkit) is not installed here")
def test_every_kernel_compiles_for_sm80_and_sm90_within_limits():
    kernels = [k for name in BUILDS for k in _functions(name)[0]._plan.kernels()]
    for dtype in ("float32", "float64"):
        x, w, b = T.matrix("x", dtype), T.matrix("W", dtype), T.row("b", dtype)
        for activation in ACTIVATIONS:
            dot = T.dot(x, w)
            kernels.append(
                gemm.gemm_epilogue_kernel(dot, _bias_activation(dot, b, activation)).kernel
            )
    kernels.append(_scaled_relu().kernel)
    kernels = list({k.source: k for k in kernels}.values())
    reports = nvcc.compile_kernels(kernels, nvcc.ARCHS)
    by_name = {k.name: k for k in kernels}
    assert [p for r in reports for p in nvcc.limit_problems(by_name[r.kernel], r)] == []
    gemms = [r for r in reports if by_name[r.kernel].kind == "gemm"]
    assert gemms and all(0 < r.shared_bytes <= 48 * 1024 for r in gemms)
    assert {r.arch for r in reports} == {"sm_80", "sm_90"}
