"""Shape ops: values vs numpy, static shapes, gradients, symbolic sizes and build-time errors."""

import numpy as np
import pytest

import theanine.tensor as T
from tests.helpers import check_grad, run

RNG = np.random.default_rng(1)
A = RNG.normal(size=(2, 3, 4))
M = RNG.normal(size=(3, 4))


def same(value, out, expected):
    """value equals expected in values, dtype and shape, and out's static shape agrees."""
    expected = np.asarray(expected)
    np.testing.assert_allclose(value, expected)
    assert value.dtype == expected.dtype, (value.dtype, expected.dtype)
    assert value.shape == expected.shape
    assert out.type.accepts_shape(expected.shape), (out.type, expected.shape)


CASES = [
    ("reshape", lambda x: T.reshape(x, (4, 6)), lambda a: a.reshape(4, 6), (4, 6)),
    ("reshape_neg", lambda x: x.reshape((3, -1)), lambda a: a.reshape(3, -1), (3, 8)),
    ("reshape_sym", lambda x: x.reshape((x.shape[0], -1)), lambda a: a.reshape(2, -1), (2, 12)),
    ("flatten", lambda x: x.flatten(), lambda a: a.ravel(), (24,)),
    ("flatten2", lambda x: T.flatten(x, 2), lambda a: a.reshape(2, 12), (2, 12)),
    ("flatten_outdim", lambda x: T.flatten(x, outdim=2), lambda a: a.reshape(2, 12), (2, 12)),
    ("swapaxes", lambda x: x.swapaxes(0, 2), lambda a: a.swapaxes(0, 2), (4, 3, 2)),
    ("transpose", lambda x: x.T, lambda a: a.T, (4, 3, 2)),
    ("dimshuffle", lambda x: x.dimshuffle(2, "x", 0, 1), lambda a: a.transpose(2, 0, 1)[:, None],
     (4, 1, 2, 3)),
    ("concat1", lambda x: T.concatenate([x, 2 * x], axis=1),
     lambda a: np.concatenate([a, 2 * a], 1), (2, 6, 4)),
    ("concat_neg", lambda x: T.concatenate([x, x[:, :, :1]], axis=-1),
     lambda a: np.concatenate([a, a[:, :, :1]], -1), (2, 3, 5)),
    ("join", lambda x: T.join(0, x, x), lambda a: np.concatenate([a, a]), (4, 3, 4)),
    ("stack", lambda x: T.stack([x, x + 1], axis=2), lambda a: np.stack([a, a + 1], 2),
     (2, 3, 2, 4)),
    ("stack_args", lambda x: T.stack(x, x, x), lambda a: np.stack([a, a, a]), (3, 2, 3, 4)),
    ("tile", lambda x: T.tile(x, (2, 1, 3)), lambda a: np.tile(a, (2, 1, 3)), (4, 3, 12)),
    ("tile_more", lambda x: T.tile(x, (2, 1, 1, 2)), lambda a: np.tile(a, (2, 1, 1, 2)),
     (2, 2, 3, 8)),
    ("repeat", lambda x: T.repeat(x, 2, axis=1), lambda a: np.repeat(a, 2, 1), (2, 6, 4)),
    ("repeat_vec", lambda x: x.repeat([1, 0, 3], axis=1), lambda a: np.repeat(a, [1, 0, 3], 1),
     (2, 4, 4)),
    ("repeat_flat", lambda x: T.repeat(x, 2), lambda a: np.repeat(a, 2), (48,)),
    ("roll", lambda x: T.roll(x, 2, axis=2), lambda a: np.roll(a, 2, 2), (2, 3, 4)),
    ("roll_flat", lambda x: T.roll(x, -5), lambda a: np.roll(a, -5), (2, 3, 4)),
    ("sort", lambda x: T.sort(x), lambda a: np.sort(a), (2, 3, 4)),
    ("sort0", lambda x: x.sort(axis=0), lambda a: np.sort(a, 0), (2, 3, 4)),
    ("sort_none", lambda x: T.sort(x, axis=None), lambda a: np.sort(a, None), (24,)),
    ("diagonal", lambda x: x.diagonal(1, 1, 2), lambda a: a.diagonal(1, 1, 2), (2, 3)),
    ("copy", lambda x: x.copy(), lambda a: a.copy(), (2, 3, 4)),
    ("squeeze", lambda x: T.squeeze(x[:, :1]), lambda a: a[:, 0], (2, 4)),
    ("alloc", lambda x: T.alloc(x[0, 0], 5, 3, 4), lambda a: np.broadcast_to(a[0, 0], (5, 3, 4)),
     (5, 3, 4)),
]


@pytest.mark.parametrize("name,fn,ref,static", CASES, ids=[c[0] for c in CASES])
def test_values_and_static_shape(name, fn, ref, static):
    value, out = run(fn, A)
    same(value, out, ref(A))
    assert out.type.shape == static


GRAD_CASES = [c for c in CASES if c[0] not in ("alloc",)] + [
    ("alloc_bcast", lambda x: T.alloc(x[0, :1], 5, 3, 4), None, None),
    ("alloc_static_bcast", lambda x: T.alloc(T.addbroadcast(x[0, :1], 0), 5, 3, 4), None, None),
    ("split", lambda x: T.split(x, [1, 3], 2, axis=2)[1] * T.split(x, [3, 1], 2, axis=2)[0],
     None, None),
    ("diag_sum", lambda x: T.trace(x[0]) * x, None, None),
]


@pytest.mark.parametrize("name,fn,ref,static", GRAD_CASES, ids=[c[0] for c in GRAD_CASES])
def test_gradients(name, fn, ref, static):
    check_grad(fn, [A])


def test_matrix_ops_values_and_grads():
    v = RNG.normal(size=3)
    value, out = run(lambda x: T.diag(x, 1), v)
    same(value, out, np.diag(v, 1))
    assert out.type.shape == (4, 4)
    value, out = run(lambda x: T.diag(x), M)
    same(value, out, np.diag(M))
    assert out.type.shape == (3,)
    value, out = run(T.trace, M)
    same(value, out, np.trace(M))
    check_grad(lambda x: T.diag(x, -1), [v])
    check_grad(lambda x: T.diag(x, 1), [M])
    check_grad(T.trace, [M])
    value, out = run(lambda x: T.identity_like(x), M)
    same(value, out, np.eye(3, 4))
    assert T.eye(3, 5, 1).type.shape == (3, 5)
    eye = T.eye(3, 5, 1, dtype="int32").eval()
    np.testing.assert_array_equal(eye, np.eye(3, 5, 1, dtype="int32"))
    assert eye.dtype == np.int32
    # sort's gradient also through its own second-order path (TakeAlongAxis / PutAlongAxis)
    check_grad(lambda x: T.sort(x, axis=1) ** 2, [M])


def test_argsort_nonzero_are_integer_and_match_numpy():
    value, out = run(lambda x: T.argsort(x, axis=1), M)
    same(value, out, np.argsort(M, axis=1))
    mask = np.array([[0, 1.5, 0], [2, 0, 3]])
    rows, cols = (v.eval({}) for v in T.nonzero(T.constant(mask)))
    np.testing.assert_array_equal(rows, np.nonzero(mask)[0])
    np.testing.assert_array_equal(cols, np.nonzero(mask)[1])
    value, out = run(lambda x: T.flatnonzero(x), mask)
    same(value, out, np.flatnonzero(mask))
    value, out = run(lambda x: T.nonzero(x, return_matrix=True), mask)
    same(value, out, np.array(np.nonzero(mask)))
    value, out = run(lambda x: T.nonzero_values(x), mask)
    same(value, out, mask[mask != 0])


def test_integer_results_pass_no_gradient():
    x = T.dmatrix("x")
    cost = T.sum(T.cast(T.argsort(x), "float64")) + T.sum(T.cast(x.shape, "float64"))
    g = T.grad(cost + T.sum(x * 0.0), x)
    np.testing.assert_array_equal(g.eval({x: M}), np.zeros_like(M))


def test_shape_is_int64_vector_with_static_length():
    x = T.tensor3("x")
    assert x.shape.type == T.TensorType("int64", (3,))
    value, out = run(lambda x: x.shape, A)
    same(value, out, np.array([2, 3, 4], dtype="int64"))
    value, out = run(lambda x: T.shape_i(x, 2) * 2, A)
    assert value == 8


def test_symbolic_sizes():
    x = T.dtensor3("x")
    z = T.zeros((x.shape[0], 3))
    assert z.type.shape == (None, 3) and z.dtype == T.config.floatX
    assert z.eval({x: A}).shape == (2, 3)
    y = x.reshape((x.shape[0], -1))
    assert y.type.shape == (None, None)
    np.testing.assert_array_equal(y.eval({x: A}), A.reshape(2, -1))
    o = T.ones(x.shape, dtype="int32")
    assert o.type == T.TensorType("int32", (None, None, None))
    np.testing.assert_array_equal(o.eval({x: A}), np.ones((2, 3, 4), dtype="int32"))
    r = T.arange(x.shape[1] * 2)
    np.testing.assert_array_equal(r.eval({x: A}), np.arange(6))
    a = T.alloc(1.5, x.shape[2], 2)
    np.testing.assert_array_equal(a.eval({x: A}), np.full((4, 2), 1.5, dtype=T.config.floatX))
    # a reshape to a symbolic int vector
    s = T.lvector("s")
    w = T.reshape(x, s, ndim=2)
    np.testing.assert_array_equal(w.eval({x: A, s: np.array([4, 6])}), A.reshape(4, 6))
    # static sizes flow through the shape of a static input
    k = T.dtensor3("k", shape=(2, 3, 4))
    assert k.reshape((k.shape[0], -1)).type.shape == (2, 12)
    assert T.zeros((k.shape[2], k.shape[0] * 3)).type.shape == (4, 6)
    assert T.flatten(T.dtensor3(shape=(None, 3, 4)), 2).type.shape == (None, 12)


def test_arange():
    cases = [((5,), {}), ((2, 9, 3), {}), ((5, 0, -2), {}), ((0, 1, 0.25), {"dtype": "float64"})]
    for args, kwargs in cases:
        out = T.arange(*args, **kwargs)
        expected = np.arange(*args, **kwargs)
        np.testing.assert_allclose(out.eval(), expected)
        assert out.type.shape == expected.shape
    assert T.arange(5).dtype == "int64"
    n = T.lscalar("n")
    out = T.arange(1, n, 2)
    assert out.type.shape == (None,)
    np.testing.assert_array_equal(out.eval({n: 8}), np.arange(1, 8, 2))


def test_zeros_ones_like_and_dtypes():
    x = T.imatrix("x")
    assert T.zeros_like(x).dtype == "int32"
    assert T.ones_like(x, dtype="float64").dtype == "float64"
    assert T.empty_like(x).type == x.type
    assert T.zeros((2, 3), dtype="int8").eval().dtype == np.int8
    np.testing.assert_array_equal(T.ones(4).eval(), np.ones(4, dtype=T.config.floatX))


def test_broadcast_patterns():
    x = T.matrix("x")
    r = T.addbroadcast(x, 0)
    assert r.broadcastable == (True, False)
    assert T.unbroadcast(r, 0).broadcastable == (False, False)
    assert T.patternbroadcast(x, (False, True)).type.shape == (None, 1)
    s = T.specify_shape(x, (2, 3))
    assert s.type.shape == (2, 3)
    np.testing.assert_array_equal(r.eval({x: np.ones((1, 3), "float32")}), np.ones((1, 3)))
    with pytest.raises(ValueError, match=r"specify_shape: expected shape \(2, 3\), got \(3, 3\)"):
        s.eval({x: np.ones((3, 3), "float32")})
    with pytest.raises(ValueError, match="axis 0 of .* has static size 2, but 5 was specified"):
        T.specify_shape(s, (5, 3))
    with pytest.raises(ValueError, match="squeeze: axis 1 of .* has size 3, not 1"):
        T.squeeze(s, axis=1)
    q = T.squeeze(x, axis=0)
    assert q.type.shape == (None,)
    np.testing.assert_array_equal(q.eval({x: np.ones((1, 3), "float32")}), np.ones(3))


def test_stack_scalars_and_split_symbolic():
    a, b = T.dscalar("a"), T.lscalar("b")
    v = T.stack([a, b, 2])
    assert v.type == T.TensorType("float64", (3,))
    np.testing.assert_array_equal(v.eval({a: 1.5, b: 3}), [1.5, 3, 2])
    check_grad(lambda x: T.stack([x[0, 0, 0], x[1, 2, 3] * 2]), [A])
    x, sizes = T.dmatrix("x"), T.lvector("sizes")
    parts = T.split(x, sizes, 2, axis=1)
    values = [p.eval({x: M, sizes: np.array([1, 3])}) for p in parts]
    for got, want in zip(values, np.split(M, [1], axis=1)):
        np.testing.assert_array_equal(got, want)
    parts = T.split(M, [2, 1], 2)
    assert [p.type.shape for p in parts] == [(2, 4), (1, 4)]


def test_build_time_errors():
    k = T.dtensor3("k", shape=(2, 3, 4))
    too_big = r"cannot reshape k of shape \(2, 3, 4\) \(24 elements\) to \(5, 5\)"
    with pytest.raises(ValueError, match=too_big):
        k.reshape((5, 5))
    with pytest.raises(ValueError, match="24 is not a multiple of 5"):
        k.reshape((5, -1))
    with pytest.raises(ValueError, match="at most one -1"):
        k.reshape((-1, -1))
    with pytest.raises(ValueError, match="pass ndim="):
        T.reshape(k, T.lvector("s"))
    with pytest.raises(ValueError, match="pattern entries must be axis numbers or 'x'"):
        k.dimshuffle(0, "y", 1)
    with pytest.raises(ValueError, match="drops axis 2 of an input with shape"):
        k.dimshuffle(0, 1)
    with pytest.raises(ValueError, match=r"dimshuffle\(0, 1, 5\): invalid for a 3-d input"):
        k.dimshuffle(0, 1, 5)
    with pytest.raises(ValueError, match="sizes differ on axis 1"):
        T.concatenate([k, T.dtensor3(shape=(2, 5, 4))], axis=0)
    with pytest.raises(ValueError, match="all inputs need 3 dimensions"):
        T.concatenate([k, T.dmatrix()])
    bad_split = r"split: sizes \[1, 2\] add up to 3, but axis 0 of k has 2$"
    with pytest.raises(ValueError, match=bad_split):
        T.split(k, [1, 2], 2)
    with pytest.raises(ValueError, match="3 repeats for axis 0 of size 2"):
        T.repeat(k, [1, 2, 3], axis=0)
    with pytest.raises(ValueError, match="diag: needs a vector or a matrix"):
        T.diag(k)


def test_reshape_run_time_error_names_the_op():
    x = T.dmatrix("x")
    y = x.reshape((5, -1))
    message = r"(?s)reshape: cannot reshape an array of shape \(3, 4\) \(12 elements\) to \(5, -1\)"
    with pytest.raises(ValueError, match=message + r".*Reshape.*test_shape.py"):
        y.eval({x: M})


@pytest.mark.parametrize("dtype", ["float32", "int32"])
@pytest.mark.parametrize("name,fn,ref,static", CASES, ids=[c[0] for c in CASES])
def test_dtypes_are_preserved(name, fn, ref, static, dtype):
    data = (A * 10).astype(dtype)
    value, out = run(fn, data)
    expected = np.asarray(ref(data))
    np.testing.assert_allclose(value, expected)
    assert out.dtype == value.dtype.name == expected.dtype.name


def test_sum_to_shape_keeps_narrow_integer_dtypes():
    import theanine

    from theanine.graph.ops.shape_alloc import sum_to_shape

    g = T.tensor(dtype="int8", shape=(None, None, None), name="g")
    x = T.tensor(dtype="int8", shape=(None, 1), name="x")
    out = sum_to_shape(g, x)
    gv = np.arange(24, dtype="int8").reshape(2, 3, 4)
    got = theanine.function([g, x], out, mode="py")(gv, np.zeros((3, 1), "int8"))
    assert got.dtype == np.int8 and out.dtype == "int8"
    np.testing.assert_array_equal(got, gv.sum(axis=0).sum(axis=1, keepdims=True).astype("int8"))
