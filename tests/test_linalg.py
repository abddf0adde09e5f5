"""dot, matmul, tensordot, batched_dot, batched_tensordot, outer: values, types, grads, errors."""

from __future__ import annotations

import numpy as np
import pytest

import theanine.tensor as T
from theanine.graph.evaluate import evaluate
from theanine.graph.ops.linalg import Dot, MatMul, TensorDot
from theanine.graph.type import TensorType
from theanine.graph.var import constant, input_var

from tests.helpers import check_grad, run

RNG = np.random.default_rng(42)


def rand(*shape, dtype="float64"):
    return RNG.normal(size=shape).astype(dtype)


def check_value(fn, expected_fn, *arrays, rtol=None):
    """fn's value, dtype and static shape against an independent numpy computation."""
    value, out = run(fn, *arrays)
    expected = np.asarray(expected_fn(*arrays))
    assert value.dtype == expected.dtype, (value.dtype, expected.dtype)
    assert out.dtype == expected.dtype
    assert out.type.shape == expected.shape, (out.type.shape, expected.shape)
    tol = rtol if rtol is not None else (1e-5 if expected.dtype == np.float32 else 1e-12)
    np.testing.assert_allclose(value, expected, rtol=tol, atol=tol)
    return out


def loop_dot(a, b):
    """Matrix product by explicit sums (independent of np.dot)."""
    return np.einsum("ik,kj->ij", a, b)


DOT_CASES = [
    ((4,), (4,), lambda a, b: np.sum(a * b)),
    ((2, 4), (4,), lambda a, b: np.einsum("ik,k->i", a, b)),
    ((4,), (4, 3), lambda a, b: np.einsum("k,kj->j", a, b)),
    ((2, 4), (4, 3), loop_dot),
    ((2, 5, 4), (4, 3), lambda a, b: np.einsum("abk,kj->abj", a, b)),
    ((2, 5, 4), (6, 4, 3), lambda a, b: np.einsum("abk,ckj->abcj", a, b)),
    ((5, 4), (6, 4, 3), lambda a, b: np.einsum("ak,ckj->acj", a, b)),
    ((2, 5, 4), (4,), lambda a, b: np.einsum("abk,k->ab", a, b)),
]


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("sa, sb, expected", DOT_CASES)
def test_dot_values_types_and_shapes(sa, sb, expected, dtype):
    check_value(T.dot, expected, rand(*sa, dtype=dtype), rand(*sb, dtype=dtype))


@pytest.mark.parametrize("sa, sb, expected", DOT_CASES)
def test_dot_gradients(sa, sb, expected):
    check_grad(T.dot, [rand(*sa), rand(*sb)])


def test_dot_of_matrices_is_a_dot_node_and_nd_is_a_tensordot():
    x, y = T.matrix("x"), T.matrix("y")
    assert isinstance(T.dot(x, y).op, Dot)
    assert isinstance(x.dot(y).op, Dot)
    assert isinstance(T.dot(T.tensor3("a"), y).op, TensorDot)


def test_dot_dtype_promotion():
    a, b = rand(2, 3, dtype="float32"), rand(3, 4)
    check_value(T.dot, lambda x, y: loop_dot(x.astype("float64"), y), a, b)
    ints = [RNG.integers(-5, 5, size=shape).astype("int32") for shape in ((2, 3), (3, 4))]
    out = check_value(T.dot, loop_dot, *ints)
    assert out.dtype == "int32"


def test_dot_with_a_scalar_multiplies():
    a = rand(2, 3)
    check_value(lambda x: T.dot(x, 3.0), lambda x: x * 3.0, a)
    check_value(lambda s, x: T.dot(s, x), lambda s, x: s * x, np.float64(2.5), a)


def test_dot_inner_dimension_mismatch_names_both_shapes():
    x = input_var(TensorType("float32", (2, 3)), "x")
    y = input_var(TensorType("float32", (4, 5)), "y")
    message = r"dot: inner dimensions differ: 'x' with shape \(2, 3\) . 'y' with shape \(4, 5\) "
    message += r"\(3 != 4\)"
    with pytest.raises(ValueError, match=message):
        T.dot(x, y)
    v = input_var(TensorType("float32", (7,)), "v")
    with pytest.raises(ValueError, match=r"'x' with shape \(2, 3\) . 'v' with shape \(7,\)"):
        T.dot(x, v)
    with pytest.raises(ValueError, match=r"shape \(2, 5, 3\) . 'y' with shape \(4, 5\)"):
        T.dot(input_var(TensorType("float32", (2, 5, 3)), "t"), y)


def test_dot_mismatch_at_run_time_when_shapes_are_unknown():
    x, y = T.matrix("x", dtype="float64"), T.matrix("y", dtype="float64")
    z = T.dot(x, y)
    with pytest.raises(ValueError, match=r"inner dimensions differ: \(2, 3\) . \(4, 5\)"):
        evaluate([z], {x: rand(2, 3), y: rand(4, 5)})


MATMUL_CASES = [
    ((3,), (3,)),
    ((2, 3), (3,)),
    ((3,), (3, 4)),
    ((2, 3), (3, 4)),
    ((5, 2, 3), (5, 3, 4)),
    ((5, 2, 3), (3, 4)),
    ((2, 3), (5, 3, 4)),
    ((3,), (5, 3, 4)),
    ((5, 2, 3), (3,)),
    ((6, 1, 2, 3), (5, 3, 4)),
]


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("sa, sb", MATMUL_CASES)
def test_matmul_values_match_numpy_matmul(sa, sb, dtype):
    a, b = rand(*sa, dtype=dtype), rand(*sb, dtype=dtype)
    # Oracle: broadcast by hand, then multiply matrix by matrix with einsum.
    def oracle(x, y):
        xx = x[None, :] if x.ndim == 1 else x
        yy = y[:, None] if y.ndim == 1 else y
        batch = np.broadcast_shapes(xx.shape[:-2], yy.shape[:-2])
        xx = np.broadcast_to(xx, batch + xx.shape[-2:])
        yy = np.broadcast_to(yy, batch + yy.shape[-2:])
        out = np.einsum("...ik,...kj->...ij", xx, yy)
        if y.ndim == 1:
            out = out[..., 0]
        if x.ndim == 1:
            out = out[..., 0, :] if y.ndim != 1 else out[..., 0]
        return out

    check_value(lambda x, y: x @ y, oracle, a, b)
    check_value(T.matmul, oracle, a, b)


@pytest.mark.parametrize("sa, sb", [c for c in MATMUL_CASES if c[0][:1] != (6,)])
def test_matmul_gradients(sa, sb):
    check_grad(T.matmul, [rand(*sa), rand(*sb)])


def test_matmul_gradient_sums_over_a_broadcast_batch_axis():
    x = input_var(TensorType("float64", (1, 2, 3)), "x")
    y = input_var(TensorType("float64", (5, 3, 4)), "y")
    d = rand(5, 2, 4)
    out = x @ y
    assert isinstance(out.op, MatMul) and out.type.shape == (5, 2, 4)
    gx, gy = T.grad(T.sum(out * constant(d)), [x, y])
    a, b = rand(1, 2, 3), rand(5, 3, 4)
    vx, vy = evaluate([gx, gy], {x: a, y: b})
    np.testing.assert_allclose(vx, np.einsum("bij,bkj->ik", d, b)[None], rtol=1e-12)
    np.testing.assert_allclose(vy, np.einsum("ik,bij->bkj", a[0], d), rtol=1e-12)


def test_matmul_errors():
    x = input_var(TensorType("float32", (5, 2, 3)), "x")
    message = r"matmul: inner dimensions differ: 'x' with shape \(5, 2, 3\) @ "
    message += r"'y' with shape \(5, 4, 2\)"
    with pytest.raises(ValueError, match=message):
        x @ input_var(TensorType("float32", (5, 4, 2)), "y")
    message = r"matmul: batch dimensions cannot be broadcast: \(5, 2, 3\) @ \(4, 3, 2\)"
    with pytest.raises(ValueError, match=message):
        x @ input_var(TensorType("float32", (4, 3, 2)), "y")
    with pytest.raises(ValueError, match="matmul: scalar operands are not allowed"):
        T.matmul(x, T.scalar("s"))


def test_tensordot_forms():
    a, b = rand(2, 3, 4), rand(3, 4, 5)
    check_value(T.tensordot, lambda x, y: np.einsum("ijk,jkl->il", x, y), a, b)
    c = rand(4, 5, 2)
    for axes, spec, y in [
        (1, "ijk,kl->ijl", rand(4, 6)),
        ([[2, 0], [0, 2]], "ijk,kli->jl", c),
        ([[-1], [0]], "ijk,klm->ijlm", c),
    ]:
        check_value(lambda u, v: T.tensordot(u, v, axes), lambda u, v: np.einsum(spec, u, v), a, y)
    outer = lambda u, v: np.einsum("i,j->ij", u, v)  # noqa: E731
    check_value(lambda u, v: T.tensordot(u, v, 0), outer, rand(3), rand(2))
    oracle = lambda u, v: np.einsum("ijk,jkl->il", u, v)  # noqa: E731
    f32 = check_value(T.tensordot, oracle, a.astype("float32"), b.astype("float32"))
    assert f32.dtype == "float32"


def test_tensordot_gradients():
    a, b, c = rand(2, 3, 4), rand(3, 4, 5), rand(4, 5, 2)
    check_grad(T.tensordot, [a, b])
    check_grad(lambda x, y: T.tensordot(x, y, [[2, 0], [0, 2]]), [a, c])
    check_grad(lambda x, y: T.tensordot(x, y, [[0, 2], [2, 0]]), [a, c])
    check_grad(lambda x, y: T.tensordot(x, y, 0), [rand(3), rand(2, 2)])


def test_tensordot_errors():
    a = input_var(TensorType("float64", (2, 3, 4)), "a")
    b = input_var(TensorType("float64", (3, 5)), "b")
    message = r"tensordot: inner dimensions differ: 'a' with shape \(2, 3, 4\) . "
    message += r"'b' with shape \(3, 5\)"
    with pytest.raises(ValueError, match=message + r" \(4 != 3\)"):
        T.tensordot(a, b, 1)
    with pytest.raises(ValueError, match="axes .* must have the same length"):
        T.tensordot(a, b, [[1, 2], [0]])
    with pytest.raises(ValueError, match="axis 3 is out of range for 'a'"):
        T.tensordot(a, b, [[3], [0]])
    with pytest.raises(ValueError, match="cannot sum over 3 axes"):
        T.tensordot(a, b, 3)


BATCHED_CASES = [
    ((5, 2, 3), (5, 3, 4), "bij,bjk->bik"),
    ((5, 3), (5, 3), "bi,bi->b"),
    ((5, 2, 3), (5, 3), "bij,bj->bi"),
    ((5, 3), (5, 3, 4), "bj,bjk->bk"),
    ((5, 2, 6, 3), (5, 3, 4), "bipj,bjk->bipk"),
    ((5, 2, 3), (5, 6, 3, 4), "bij,bpjk->bipk"),
    ((5,), (5, 3, 4), "b,bjk->bjk"),
]


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("sa, sb, spec", BATCHED_CASES)
def test_batched_dot_values(sa, sb, spec, dtype):
    a, b = rand(*sa, dtype=dtype), rand(*sb, dtype=dtype)
    check_value(T.batched_dot, lambda x, y: np.einsum(spec, x, y), a, b)


@pytest.mark.parametrize("sa, sb, spec", BATCHED_CASES)
def test_batched_dot_gradients(sa, sb, spec):
    check_grad(T.batched_dot, [rand(*sa), rand(*sb)])


def test_batched_tensordot():
    a, b = rand(5, 2, 3, 4), rand(5, 3, 4, 6)
    check_value(T.batched_tensordot, lambda x, y: np.einsum("bijk,bjkl->bil", x, y), a, b)
    c = rand(5, 4, 6, 2)
    spec = "bijk,bkli->bjl"
    oracle = lambda x, y: np.einsum(spec, x, y)  # noqa: E731
    check_value(lambda x, y: T.batched_tensordot(x, y, [[3, 1], [1, 3]]), oracle, a, c)
    check_grad(T.batched_tensordot, [a, b])
    check_grad(lambda x, y: T.batched_tensordot(x, y, [[3, 1], [1, 3]]), [a, c])
    check_grad(lambda x, y: T.batched_tensordot(x, y, [[1], [3]]), [a, c])


def test_batched_errors():
    a = input_var(TensorType("float64", (5, 2, 3)), "a")
    message = r"batched_dot: batch sizes differ: 'a' with shape \(5, 2, 3\) and "
    message += r"'b' with shape \(4, 3, 2\)"
    with pytest.raises(ValueError, match=message):
        T.batched_dot(a, input_var(TensorType("float64", (4, 3, 2)), "b"))
    message = r"batched_dot: inner dimensions differ: 'a' with shape \(5, 2, 3\) . 'b'"
    with pytest.raises(ValueError, match=message):
        T.batched_dot(a, input_var(TensorType("float64", (5, 2, 2)), "b"))
    with pytest.raises(ValueError, match="axis 0 is the batch axis"):
        T.batched_tensordot(a, a, [[0], [0]])
    with pytest.raises(TypeError, match="both operands need a batch axis"):
        T.batched_dot(a, T.scalar("s"))
    x, y = T.tensor3("x", dtype="float64"), T.tensor3("y", dtype="float64")
    with pytest.raises(ValueError, match="batch sizes differ"):
        evaluate([T.batched_tensordot(x, y, [[2], [1]])], {x: rand(5, 2, 3), y: rand(4, 3, 2)})


def test_outer():
    oracle = lambda x, y: np.einsum("i,j->ij", x, y)  # noqa: E731
    check_value(T.outer, oracle, rand(3), rand(4))
    check_value(T.outer, oracle, rand(3, dtype="float32"), rand(4, dtype="float32"))
    check_grad(T.outer, [rand(3), rand(4)])
    check_value(T.outer, lambda x, y: np.einsum("i,j->ij", x.ravel(), y), rand(2, 3), rand(4))


def test_ger_with_a_broadcast_row_has_the_outer_products_shape():
    from theanine.graph.ops.blas import Ger
    from theanine.graph.var import Var

    a = T.tensor(dtype="float64", shape=(1, None), name="a")
    x, y = T.dvector("x"), T.dvector("y")
    out = Var(Ger(), (a, T.constant(2.0, dtype="float64"), x, y))
    assert out.type.shape == (None, None)
    av, xv, yv = np.ones((1, 4)), np.arange(3.0), np.arange(4.0)
    got = evaluate([out], {a: av, x: xv, y: yv})[0]
    np.testing.assert_allclose(got, av + 2 * np.outer(xv, yv))


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_numba_gemm_through_blas_in_place_and_with_transposes(dtype):
    from types import SimpleNamespace

    from theanine.kernels.numba.linalg import GemmRunner, real_gemm

    rng = np.random.default_rng(8)
    a, b = rng.normal(size=(4, 3)).astype(dtype), rng.normal(size=(3, 5)).astype(dtype)
    tol = 1e-5 if dtype == "float32" else 1e-12
    for x, y in ((a, b), (np.asfortranarray(a), b), (a, np.asfortranarray(b)), (a[:, ::1], b.T.T)):
        got = real_gemm(x, y)
        assert got.flags.c_contiguous and got.dtype == dtype
        np.testing.assert_allclose(got, a @ b, rtol=tol)
    assert real_gemm(a[:, :0], b[:0]).tolist() == np.zeros((4, 5)).tolist()
    runner = GemmRunner(SimpleNamespace(dtype=dtype))
    z = rng.normal(size=(4, 5)).astype(dtype)
    want = 0.5 * z - 0.1 * (a @ b)
    out = runner.into(z, z, -0.1, np.asfortranarray(a), b, 0.5)  # a weight's in-place update
    assert out is z
    np.testing.assert_allclose(z, want, rtol=tol, atol=tol)
    row = rng.normal(size=(1, 5)).astype(dtype)  # a broadcast bias row
    np.testing.assert_allclose(runner(row, 1.0, a, b, 1.0), a @ b + row, rtol=tol, atol=tol)
    buffer = a.copy()  # an input's buffer: the product is read before it is written
    np.testing.assert_allclose(runner.into(np.empty((4, 5), dtype), z, 2.0, buffer, b, 0.0),
                               2.0 * (a @ b), rtol=tol, atol=tol)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_tensordot_of_operands_read_backwards_in_mode_numba(dtype):
    """A backward loop stacks its per-step values in reverse: the kernel reverses the smaller
    operand along the summed axes instead of copying the larger one; the sum is unchanged."""
    import theanine

    x, g = T.tensor3("x", dtype=dtype), T.tensor3("g", dtype=dtype)
    xv, gv = rand(5, 3, 4, dtype=dtype), rand(5, 3, 6, dtype=dtype)
    rev0, rev1 = (slice(None, None, -1),), (slice(None), slice(None, None, -1))
    cases = [((), rev0), (rev0, ()), (rev0, rev0), (rev1, rev1), (rev0, rev1)]
    for ia, ib in cases:
        out = T.tensordot(x[ia], g[ib], [[0, 1], [0, 1]])
        f = theanine.function([x, g], out, mode="numba")
        expected = np.einsum("ijk,ijl->kl", xv[ia].astype("float64"), gv[ib].astype("float64"))
        got = f(xv, gv)
        assert got.dtype == dtype and got.shape == (4, 6)
        np.testing.assert_allclose(got, expected, rtol=1e-5 if dtype == "float32" else 1e-12,
                                   atol=1e-5)
    # a free axis read backwards stays where it is
    f = theanine.function([x, g], T.tensordot(x[:, :, ::-1], g[::-1], [[0, 1], [0, 1]]),
                          mode="numba")
    expected = np.einsum("ijk,ijl->kl", xv[:, :, ::-1], gv[::-1])
    np.testing.assert_allclose(f(xv, gv), expected, rtol=1e-5, atol=1e-5)
