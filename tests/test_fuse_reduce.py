"""Reduction fusion: sum/prod/max/min of elementwise work as one FusedReduce node, every backend."""

from __future__ import annotations

import numpy as np
import pytest

import theanine
import theanine.tensor as T
from theanine.compiler.fuse import fuse_elementwise
from theanine.compiler.fuse_reduce import fuse_reductions
from theanine.graph.ops.composite import Composite, Proj, placeholder
from theanine.graph.ops.elemwise import Add, Exp, Mul
from theanine.graph.ops.fused_reduce import FusedReduce, fused_reduce
from theanine.graph.ops.reduce import Argmax, AxisSize, Max, Min, Sum
from theanine.graph.var import Var

MODES = ["py", "numba", "cuda-emulator"]
RNG = np.random.default_rng(0)


def ops_of(f) -> list:
    """The computed nodes' ops of a compiled function, in order."""
    return [node.op for node in f.maker.fgraph.toposort() if node.inputs]


def reference(inputs, output, values):
    """The value in mode py with reduction fusion off."""
    with theanine.config.change_flags(optimizer_excluding="fuse_reduce"):
        f = theanine.function(inputs, output, mode="py")
    assert not [op for op in ops_of(f) if isinstance(op, FusedReduce)]
    return f(*values)


def _sum_of_squares():
    x = T.fvector("x")
    a = RNG.normal(size=7).astype("float32")
    return [x], T.sum(x**2), [a], np.sum(a.astype("float64") ** 2)


def _logsumexp_rows():
    x, m = T.fmatrix("x"), T.fcol("m")
    a = RNG.normal(size=(3, 5)).astype("float32")
    b = a.max(axis=1, keepdims=True)
    return [x, m], T.sum(T.exp(x - m), axis=1), [a, b], np.exp(a - b).sum(axis=1)


def _mean_squared_error():
    y, t = T.fvector("y"), T.fvector("t")
    a, b = RNG.normal(size=6).astype("float32"), RNG.normal(size=6).astype("float32")
    return [y, t], T.mean((y - t) ** 2), [a, b], np.mean((a - b) ** 2)


CASES = {"sum_of_squares": _sum_of_squares, "logsumexp_rows": _logsumexp_rows,
         "mean_squared_error": _mean_squared_error}  # fmt: skip


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("case", sorted(CASES))
def test_issue_examples_fuse_into_one_node_with_equal_values(case, mode):
    inputs, output, values, expected = CASES[case]()
    f = theanine.function(inputs, output, mode=mode)
    ops = ops_of(f)
    fused = [op for op in ops if isinstance(op, FusedReduce)]
    assert len(fused) == 1 and fused[0].kind == "sum"
    assert not [op for op in ops if isinstance(op, (Sum, Composite))]  # no stored body
    assert not [op for op in ops if type(op).__name__ in ("Sqr", "Pow", "Exp", "Sub")]
    out = f(*values)
    assert out.dtype == np.float32 and out.shape == np.shape(expected)
    np.testing.assert_allclose(out, reference(inputs, output, values), rtol=1e-6)
    np.testing.assert_allclose(out, expected, rtol=1e-5)


def test_mean_of_unknown_length_reads_its_size_from_an_input():
    (y, t), output, _, _ = _mean_squared_error()
    f = theanine.function([y, t], output, mode="numba")
    (size,) = [node for node in f.maker.fgraph.toposort() if isinstance(node.op, AxisSize)]
    assert size.inputs[0] is y  # the squared differences are never built to take their length


KINDS = {"sum": (T.sum, np.sum), "prod": (T.prod, np.prod), "max": (T.max, np.max),
         "min": (T.min, np.min)}  # fmt: skip


@pytest.mark.parametrize("mode", ["py", "numba"])
@pytest.mark.parametrize("kind", sorted(KINDS))
@pytest.mark.parametrize("axis, keepdims", [(None, False), (0, False), (1, True), ((0, 2), False),
                                            (2, False), ((1, 2), True)])  # fmt: skip
def test_every_kind_and_axis_matches_numpy(kind, axis, keepdims, mode):
    x = T.TensorType("float64", (2, 3, 4))("x")  # distinct static sizes: the inferred shape shows
    w = T.TensorType("float64", (2, 1, 4))("w")
    build, oracle = KINDS[kind]
    output = build(x * w + 0.5, axis=axis, keepdims=keepdims)
    a = RNG.uniform(0.5, 1.5, size=(2, 3, 4))
    b = RNG.uniform(0.5, 1.5, size=(2, 1, 4))
    f = theanine.function([x, w], output, mode=mode)
    assert [type(op) for op in ops_of(f)] == [FusedReduce]
    expected = oracle(a * b + 0.5, axis=axis, keepdims=keepdims)
    out = f(a, b)
    assert out.dtype == np.float64 and out.shape == expected.shape == output.type.shape
    np.testing.assert_allclose(out, expected, rtol=1e-12)
    np.testing.assert_allclose(out, reference([x, w], output, [a, b]), rtol=1e-12)


@pytest.mark.parametrize("mode", ["py", "numba"])
def test_strided_and_scalar_inputs_and_integer_sums(mode):
    x, s = T.dmatrix("x"), T.TensorType("float64", (1, 1))("s")
    i = T.ivector("i")
    outputs = [T.sum(T.exp(x) * s), T.max(x - s, axis=0), T.sum(i * 3),
               T.sum(x * 2, dtype="float32")]  # fmt: skip
    f = theanine.function([x, s, i], outputs, mode=mode)
    assert sum(isinstance(op, FusedReduce) for op in ops_of(f)) == 4
    a = RNG.normal(size=(4, 6))[:, ::2]  # not contiguous: the loop reads a strided view
    b = np.array([[0.25]])
    c = np.array([1, -2, 7], dtype="int32")
    total, maxima, ints, as_float32 = f(a, b, c)
    np.testing.assert_allclose(total, np.sum(np.exp(a) * 0.25), rtol=1e-12)
    np.testing.assert_allclose(maxima, np.max(a - 0.25, axis=0), rtol=1e-12)
    assert ints.dtype == np.int64 and ints == 18
    assert as_float32.dtype == np.float32
    np.testing.assert_allclose(as_float32, np.sum(a * 2), rtol=1e-6)


def test_float32_sum_accumulates_in_float64_on_numba():
    # the numba loop accumulates float32 sums in float64: at least as accurate as numpy's pairwise
    # float32 sum, so it agrees with the float64 result to float32 rounding
    x = T.fvector("x")
    a = RNG.uniform(0, 1, size=1 << 20).astype("float32")
    f = theanine.function([x], T.sum(T.sqrt(x)), mode="numba")  # (sum(x * x) becomes a dot)
    assert [type(op) for op in ops_of(f)] == [FusedReduce]
    out = f(a)
    exact = np.sum(np.sqrt(a).astype("float64"))  # the float32 roots, summed exactly enough
    assert abs(float(out) - exact) / exact <= 2.0**-24  # one float32 rounding of the true sum
    assert abs(float(np.sum(np.sqrt(a))) - exact) / exact < 1e-5  # numpy's float32 sum, for scale


@pytest.mark.parametrize("mode", ["py", "numba", "cuda-emulator"])
def test_max_and_min_propagate_nan_and_empty_groups_raise(mode):
    x = T.dmatrix("x")
    f = theanine.function([x], [T.max(x + 1, axis=1), T.min(x * 2, axis=1)], mode=mode)
    a = np.array([[1.0, np.nan, 3.0], [4.0, 5.0, np.nan], [0.0, 2.0, 1.0]])
    maxima, minima = f(a)
    np.testing.assert_array_equal(maxima, [np.nan, np.nan, 3.0])
    np.testing.assert_array_equal(minima, [np.nan, np.nan, 0.0])
    with pytest.raises(ValueError, match="zero-size array to reduction operation maximum"):
        f(np.zeros((2, 0)))
    g = theanine.function([x], [T.sum(x + 1, axis=1), T.prod(x + 1, axis=1)], mode=mode)
    sums, products = g(np.zeros((2, 0)))
    np.testing.assert_array_equal(sums, [0.0, 0.0])
    np.testing.assert_array_equal(products, [1.0, 1.0])


@pytest.mark.parametrize("mode", ["py", "numba"])
def test_no_fusion_when_the_elementwise_result_has_another_reader(mode):
    x = T.dmatrix("x")
    square = T.exp(x) * 2
    f = theanine.function([x], [T.sum(square), square], mode=mode)
    ops = ops_of(f)
    assert not [op for op in ops if isinstance(op, FusedReduce)]
    assert [type(op) for op in ops if isinstance(op, Sum)] == [Sum]
    a = RNG.normal(size=(2, 3))
    total, values = f(a)
    np.testing.assert_allclose(total, np.sum(np.exp(a) * 2), rtol=1e-12)
    g = theanine.function([x], [T.sum(square, axis=0), T.max(square, axis=1)], mode=mode)
    assert not [op for op in ops_of(g) if isinstance(op, FusedReduce)]


@pytest.mark.parametrize("mode", ["py", "numba"])
def test_gradients_are_unaffected(mode):
    x, m = T.dmatrix("x"), T.dcol("m")
    direction = RNG.normal(size=3)
    cost = T.sum(T.sum(T.exp(x - m), axis=1) * direction) + T.sum(x**2)
    gx, gm = T.grad(cost, [x, m])
    f = theanine.function([x, m], [cost, gx, gm], mode=mode)
    assert any(isinstance(op, FusedReduce) for op in ops_of(f))  # sum(x**2) fuses after grad
    a, b = RNG.normal(size=(3, 4)), RNG.normal(size=(3, 1))
    value, grad_x, grad_m = f(a, b)
    e = np.exp(a - b)
    np.testing.assert_allclose(value, np.sum(e.sum(axis=1) * direction) + np.sum(a**2), rtol=1e-12)
    np.testing.assert_allclose(grad_x, e * direction[:, None] + 2 * a, rtol=1e-12)
    np.testing.assert_allclose(grad_m, -(e * direction[:, None]).sum(axis=1, keepdims=True),
                               rtol=1e-12)  # fmt: skip
    for want, got in zip(reference([x, m], [cost, gx, gm], [a, b]), (value, grad_x, grad_m)):
        np.testing.assert_allclose(got, want, rtol=1e-12)


def test_the_pass_can_be_turned_off_by_name():
    x = T.dvector("x")
    with theanine.config.change_flags(optimizer_excluding="fuse_reduce"):
        f = theanine.function([x], T.sum(x**2), mode="numba")
    assert not [op for op in ops_of(f) if isinstance(op, FusedReduce)]
    assert f(np.array([1.0, 2.0])) == 5.0


def test_the_backend_decides():
    x = T.dmatrix("x")
    (output,) = fuse_elementwise([T.sum(T.exp(x) + 1, axis=0)])  # the pipeline fuses this first
    (kept,) = fuse_reductions([output], supported_reduction=lambda var: False)
    assert kept is output
    (fused,) = fuse_reductions([output], supported_reduction=lambda var: True)
    assert isinstance(fused.op, FusedReduce) and fused.inputs == (x,)
    assert fused.op.axis == (0,) and fused.op.kind == "sum" and not fused.op.keepdims
    assert str(fused.op) == "FusedReduce{sum[0] of (exp(i0) + 1.0)}"
    # numba lowers the four kinds on real dtypes; complex bodies stay apart
    from theanine.kernels.numba.backend import BACKEND

    assert BACKEND.supported_reduction(fused)
    z = T.zmatrix("z")
    complex_sum = fuse_reductions([T.sum(z * 2)], supported_reduction=lambda var: True)[0]
    assert isinstance(complex_sum.op, FusedReduce)
    assert not BACKEND.supported_reduction(complex_sum)


def test_cuda_backend_runs_one_kernel_or_says_why_it_runs_on_the_host():
    from theanine.kernels.cuda.backend import EMULATOR_BACKEND, HOST_OPS

    x = T.dmatrix("x")
    (fused,) = fuse_reductions([T.sum(T.exp(x), axis=1)], supported_reduction=lambda var: True)
    assert EMULATOR_BACKEND.supported_reduction(fused)
    plan = EMULATOR_BACKEND.compile([x], [fused])
    assert plan.host_nodes() == [] and [k.kind for k in plan.kernels()] == ["reduction"]
    a = RNG.normal(size=(2, 3))
    np.testing.assert_allclose(plan.run([a])[0], np.exp(a).sum(axis=1), rtol=1e-12)
    z = T.zmatrix("z")  # complex values have no CUDA rendering: the host runs its perform
    (complex_sum,) = fuse_reductions([T.sum(z * 2)], supported_reduction=lambda var: True)
    assert not EMULATOR_BACKEND.supported_reduction(complex_sum)
    plan = EMULATOR_BACKEND.compile([z], [complex_sum])
    assert plan.host_nodes() == [(complex_sum, HOST_OPS[FusedReduce])]
    assert plan.run([np.array([[1 + 2j, 3j]])])[0] == 2 + 10j


def test_cuda_kernels_compile_with_nvcc():
    from theanine.compiler.pipeline import optimize
    from theanine.kernels.cuda import nvcc
    from theanine.kernels.cuda.backend import EMULATOR_BACKEND

    if nvcc.find_nvcc() is None:
        pytest.skip("nvcc (the CUDA toolkit) is not installed on this machine")
    x, m, i = T.fmatrix("x"), T.fcol("m"), T.ivector("i")
    outputs = [T.sum(T.exp(x - m), axis=1), T.max(x * m, axis=0), T.prod(x * 0.5 + 1, axis=1),
               T.sum(i * 2), T.min(T.tanh(x), keepdims=True)]  # fmt: skip
    kernels = EMULATOR_BACKEND.compile([x, m, i], optimize(outputs, EMULATOR_BACKEND)).kernels()
    assert len(kernels) == 5 and all(k.what.startswith("FusedReduce") for k in kernels)
    reports = nvcc.compile_kernels(kernels, nvcc.ARCHS)
    by_name = {k.name: k for k in kernels}
    assert len(reports) == 10
    assert [p for r in reports for p in nvcc.limit_problems(by_name[r.kernel], r)] == []


REDUCE = {Sum: np.sum, Max: np.max, Min: np.min}


@pytest.mark.parametrize("mode", ["py", "numba", "cuda-emulator"])
@pytest.mark.parametrize("case", ["two_taken_one_left", "one_taken_two_left", "all_taken"])
def test_outputs_taken_out_of_a_merged_sibling_composite(case, mode):
    x = T.dmatrix("x")
    a, b, c = T.exp(x) * 2 + 1, T.tanh(x) * 3 + 1, T.log(x + 5) * 2
    outputs = {"two_taken_one_left": [T.sum(a), b, T.sum(c, axis=0)],
               "one_taken_two_left": [T.sum(a, axis=1), b, c],
               "all_taken": [T.max(a), T.min(c, axis=1)]}[case]  # fmt: skip
    with theanine.config.change_flags(optimizer_excluding="fuse_reduce"):
        unfused = theanine.function([x], outputs, mode=mode)
    assert any(isinstance(op, Proj) for op in ops_of(unfused))  # elementwise fusion merged them
    f = theanine.function([x], outputs, mode=mode)
    ops = ops_of(f)
    reductions = [out.op for out in outputs if type(out.op) in REDUCE]
    assert [op.reduce for op in ops if isinstance(op, FusedReduce)] == reductions
    assert not [op for op in ops if type(op) in REDUCE]
    left = len(outputs) - len(reductions)
    assert sum(isinstance(op, Composite) for op in ops) == (1 if left else 0)
    values = RNG.uniform(0.5, 1.5, size=(3, 4))
    elementwise = {id(a): np.exp(values) * 2 + 1, id(b): np.tanh(values) * 3 + 1,
                   id(c): np.log(values + 5) * 2}  # fmt: skip
    for out, got in zip(outputs, f(values)):
        if type(out.op) in REDUCE:
            want = REDUCE[type(out.op)](elementwise[id(out.inputs[0])], axis=out.op.axis)
        else:
            want = elementwise[id(out)]
        np.testing.assert_allclose(got, want, rtol=1e-12)


def _body(op, n_inputs: int = 1) -> Composite:
    placeholders = tuple(placeholder(k, "float64") for k in range(n_inputs))
    return Composite(placeholders, (Var(op, placeholders),))


def test_build_errors_name_the_problem():
    x = T.dmatrix("x")
    with pytest.raises(TypeError, match="FusedReduce: cannot fuse a Argmax reduction"):
        fused_reduce(_body(Exp()), Argmax((0,)), (x,))
    two = Composite((placeholder(0, "float64"),), (placeholder(0, "float64"),) * 2)
    with pytest.raises(TypeError, match="FusedReduce needs a one-output body, got 2 outputs"):
        fused_reduce(two, Sum((0,)), (x,))
    with pytest.raises(ValueError, match=r"max: axis \(2,\) out of range"):
        fused_reduce(_body(Exp()), Max((2,)), (x,))


@pytest.mark.parametrize("mode", ["py", "numba", "cuda-emulator"])
def test_broadcasting_an_axis_not_typed_broadcastable_raises(mode):
    x, y = T.dmatrix("x"), T.dmatrix("y")
    f = theanine.function([x, y], T.sum(x * y + 1), mode=mode)
    assert [type(op) for op in ops_of(f)] == [FusedReduce]
    assert f(np.ones((2, 3)), np.full((2, 3), 2.0)) == 18.0
    with pytest.raises(ValueError, match="only axes typed broadcastable"):
        f(np.ones((2, 3)), np.ones((1, 3)))


def test_perform_of_a_hand_built_node():
    x, w = T.dmatrix("x"), T.drow("w")
    node = fused_reduce(_body(Mul(), 2), Sum((1,), keepdims=True), (x, w))
    assert node.type.shape == (None, 1) and node.dtype == "float64"
    a, b = RNG.normal(size=(2, 3)), RNG.normal(size=(1, 3))
    np.testing.assert_allclose(node.eval({x: a, w: b}), (a * b).sum(axis=1, keepdims=True))
    with pytest.raises(NotImplementedError, match="differentiate before fusion"):
        T.grad(T.sum(node), x)
    assert isinstance(_body(Add(), 2).outputs[0].op, Add)


def test_numba_kernel_source_is_one_loop_nest_accumulating_in_float64():
    x = T.fmatrix("x")
    f = theanine.function([x], T.sum(T.exp(x) * 2, axis=1), mode="numba")
    ((what, source),) = f.kernel_sources()
    assert "FusedReduce{sum[1] of (exp(i0) * 2.0)}" in what
    assert source.count("for i0 in range(n0)") == 1 and "acc = acc + buf[j]" in source
    assert "buf[j] = np.float64(t" in source and "out[i0, 0] = acc" in source


def test_numba_rows_longer_than_one_chunk():
    from theanine.kernels.numba.fused_reduce import CHUNK

    x = T.dmatrix("x")
    n = 2 * CHUNK + 37  # two full chunks and a partial one
    # distinct bodies: a body shared by two reductions has two readers and is stored once
    outputs = [T.sum(x * 3, axis=1), T.sum(x * 4, axis=0), T.max(x + 1, axis=1),
               T.min(x + 2, axis=0), T.prod(x * 1e-3 + 1, axis=1)]  # fmt: skip
    f = theanine.function([x], outputs, mode="numba")
    assert sum(isinstance(op, FusedReduce) for op in ops_of(f)) == 5
    a = RNG.normal(size=(3, n))
    a[1, CHUNK + 5] = np.nan  # a NaN in the second chunk wins its row's max and its column's min
    rows, columns, maxima, minima, product = f(a)
    np.testing.assert_allclose(rows, np.sum(a * 3, axis=1), rtol=1e-12)
    np.testing.assert_allclose(columns, np.sum(a * 4, axis=0), rtol=1e-12)
    np.testing.assert_array_equal(maxima, np.max(a + 1, axis=1))
    np.testing.assert_array_equal(minima, np.min(a + 2, axis=0))
    assert np.isnan(maxima[1]) and np.isnan(minima[CHUNK + 5]) and np.isnan(rows[1])
    np.testing.assert_allclose(product, np.prod(a * 1e-3 + 1, axis=1), rtol=1e-12)
    assert np.isnan(product[1]) and np.isfinite(product[[0, 2]]).all()


@pytest.mark.parametrize("mode", ["py", "numba"])
def test_mean_of_an_outer_product_counts_its_axes_from_two_inputs(mode):
    c, r = T.dcol("c"), T.drow("r")
    output = T.mean(T.exp(c * r))  # the (n, m) body is never stored: n from c, m from r
    f = theanine.function([c, r], output, mode=mode)
    ops = ops_of(f)
    assert sum(isinstance(op, FusedReduce) for op in ops) == 1
    assert [op.axis for op in ops if isinstance(op, AxisSize)] in ([(0,), (1,)], [(1,), (0,)])
    a, b = RNG.normal(size=(3, 1)), RNG.normal(size=(1, 5))
    np.testing.assert_allclose(f(a, b), np.mean(np.exp(a * b)), rtol=1e-12)
