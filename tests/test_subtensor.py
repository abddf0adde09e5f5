"""Indexing: getitem, set/inc_subtensor, take: values, static shapes, gradients, errors."""

import numpy as np
import pytest

import theanine.tensor as T
from tests.helpers import check_grad, run

RNG = np.random.default_rng(2)
A = RNG.normal(size=(2, 3, 4))
IDX = np.array([2, 0, 2, 1])
M = RNG.normal(size=(3, 4))

S = slice(None)
# (id, key): each key indexes the symbolic x and the numpy array alike
KEYS = [
    ("int", 1),
    ("neg_int", -1),
    ("ints", (1, -2, 3)),
    ("slice", (S, slice(1, 3))),
    ("neg_step", (Ellipsis, slice(None, None, -1))),
    ("neg_step_bounds", (S, slice(2, 0, -1))),
    ("step2", (S, S, slice(3, None, -2))),
    ("neg_bounds", (slice(-1, None), slice(-3, -1))),
    ("past_end", (S, slice(1, 100))),
    ("newaxis", (None, 0, None, slice(1, None))),
    ("ellipsis", (Ellipsis, 2)),
    ("ellipsis_mid", (0, Ellipsis, 1)),
    ("list", (S, [2, 0, 0])),
    ("array_2d", (np.array([[1, 0], [0, 1]]),)),
    ("adv_adjacent", (S, [0, 2], [1, 3])),
    ("adv_split", ([0, 1], S, [1, 3])),
    ("adv_int_mix", (1, S, [0, 3, 3])),
    ("adv_int_adjacent", (S, 1, [0, 3])),
    ("adv_bcast", (np.array([[0], [1]]), S, np.array([0, 1, 3]))),
    ("const_mask", (S, np.array([True, False, True]))),
    ("mask_2d", (A[:, :, 0] > 0,)),
]


@pytest.mark.parametrize("name,key", KEYS, ids=[k[0] for k in KEYS])
def test_getitem_matches_numpy(name, key):
    value, out = run(lambda x: x[key], A)
    expected = A[key]
    np.testing.assert_array_equal(value, expected)
    assert value.dtype == A.dtype
    assert out.type.shape == expected.shape  # static everywhere: masks here are constants


@pytest.mark.parametrize("name,key", KEYS, ids=[k[0] for k in KEYS])
def test_getitem_gradients(name, key):
    check_grad(lambda x: x[key], [A])


def test_symbolic_index_vector():
    x, i = T.dtensor3("x"), T.lvector("i")
    y = x[:, :, i]
    assert y.type.shape == (None, None, None)
    np.testing.assert_array_equal(y.eval({x: A, i: IDX}), A[:, :, IDX])
    check_grad(lambda x: x[:, :, T.constant(IDX)], [A])


def test_list_of_symbolic_scalars_as_index():
    x, i, j = T.dmatrix("x"), T.lscalar("i"), T.lscalar("j")
    y = x[[i, j, i]]
    assert y.type.shape == (3, None)
    np.testing.assert_array_equal(y.eval({x: M, i: 2, j: 0}), M[[2, 0, 2]])


def test_symbolic_scalar_bounds():
    x, i, j, s = T.dtensor3("x"), T.lscalar("i"), T.lscalar("j"), T.lscalar("s")
    y = x[i:j:s, -i]
    values = {x: A, i: 1, j: -5, s: -1}
    np.testing.assert_array_equal(y.eval(values), A[1:-5:-1, -1])
    z = x[:, i]
    np.testing.assert_array_equal(z.eval({x: A, i: -2}), A[:, -2])
    k = T.dtensor3("k", shape=(2, 3, 4))
    assert k[:, : k.shape[0]].type.shape == (2, 2, 4)
    assert k[i].type.shape == (3, 4)
    assert k[i:].type.shape == (None, 3, 4)
    check_grad(lambda x: x[1:, ::-1][:, x.shape[1] - 2 :: -1], [A])


def test_boolean_symbolic_mask_and_cross_entropy_idiom():
    x = T.dmatrix("x")
    y = x[x > 0]
    assert y.type.shape == (None,)
    m = A[0]
    np.testing.assert_array_equal(y.eval({x: m}), m[m > 0])
    check_grad(lambda x: x[x > 0.05] ** 2, [m])
    # the classic Theano negative log-likelihood
    p = RNG.uniform(0.1, 1, size=(4, 3))
    labels = np.array([0, 2, 1, 2])
    t = T.lvector("t")
    nll = -T.log(x[T.arange(x.shape[0]), t])
    np.testing.assert_allclose(nll.eval({x: p, t: labels}), -np.log(p[np.arange(4), labels]))
    g = T.grad(T.sum(nll), x).eval({x: p, t: labels})
    expected = np.zeros_like(p)
    expected[np.arange(4), labels] = -1 / p[np.arange(4), labels]
    np.testing.assert_allclose(g, expected)
    check_grad(lambda p: T.log(p[T.arange(p.shape[0]), labels]), [p])


def test_repeated_indices_accumulate_in_gradient_and_inc():
    check_grad(lambda x: x[[0, 0, 1, 0], [2, 2, 2, 1]] * T.constant(np.arange(4.0)), [A])
    y = RNG.normal(size=(4, 4))
    value, out = run(lambda x, y: T.inc_subtensor(x[0, IDX], y), A, y)
    expected = A.copy()
    np.add.at(expected, (0, IDX), y)
    np.testing.assert_allclose(value, expected)
    assert out.type.shape == (2, 3, 4)
    check_grad(lambda x, y: T.inc_subtensor(x[0, IDX], y), [A, y])


SET_CASES = [
    ("basic", lambda x: x[0, 1:], (2, 4)),
    ("neg_step", lambda x: x[:, ::-2, 1], (2, 2)),
    ("broadcast_row", lambda x: x[1], (1, 4)),
    ("advanced", lambda x: x[:, [2, 0]], (2, 2, 4)),
    ("mask", lambda x: x[:, np.array([True, False, True])], (2, 2, 4)),
    ("newaxis", lambda x: x[None, 1, :2], (1, 2, 4)),
]


@pytest.mark.parametrize("name,index,y_shape", SET_CASES, ids=[c[0] for c in SET_CASES])
def test_set_and_inc_subtensor(name, index, y_shape):
    y = RNG.normal(size=y_shape)
    set_value, set_out = run(lambda x, y: T.set_subtensor(index(x), y), A, y)
    inc_value, _ = run(lambda x, y: T.inc_subtensor(index(x), y), A, y)
    expected_set, expected_inc = A.copy(), A.copy()
    key = _numpy_key(name)
    expected_set[key] = np.broadcast_to(y, A[key].shape)
    expected_inc[key] += np.broadcast_to(y, A[key].shape)
    np.testing.assert_allclose(set_value, expected_set)
    np.testing.assert_allclose(inc_value, expected_inc)
    assert set_out.type.shape == A.shape
    check_grad(lambda x, y: T.set_subtensor(index(x), y * 2) * x, [A, y])
    check_grad(lambda x, y: T.inc_subtensor(index(x), y * 2) * x, [A, y])


def _numpy_key(name):
    return {
        "basic": (0, slice(1, None)),
        "neg_step": (slice(None), slice(None, None, -2), 1),
        "broadcast_row": (1,),
        "advanced": (slice(None), [2, 0]), "mask": (slice(None), np.array([True, False, True])),
        "newaxis": (None, 1, slice(None, 2)),
    }[name]


def test_set_subtensor_theano_keywords_and_dtype():
    x = T.imatrix("x")
    y = T.set_subtensor(x[0], 7, inplace=False, tolerate_inplace_aliasing=True)
    assert y.dtype == "int32"
    np.testing.assert_array_equal(y.eval({x: np.zeros((2, 2), "int32")}), [[7, 7], [0, 0]])
    z = T.inc_subtensor(x[:, 1], 5, set_instead_of_inc=True)
    np.testing.assert_array_equal(z.eval({x: np.ones((2, 2), "int32")}), [[1, 5], [1, 5]])


def test_take():
    value, out = run(lambda x: T.take(x, [[0, 2], [1, 1]], axis=1), A)
    np.testing.assert_array_equal(value, np.take(A, [[0, 2], [1, 1]], axis=1))
    assert out.type.shape == (2, 2, 2, 4)
    value, out = run(lambda x: T.take(x, np.array([5, 23, 0])), A)
    np.testing.assert_array_equal(value, np.take(A, [5, 23, 0]))
    check_grad(lambda x: T.take(x, [[0, 2], [1, 1]], axis=-1), [A])


def test_ops_are_hashable_and_interned():
    x, i = T.dtensor3("x"), T.lscalar("i")
    a, b = x[i:, ::-1, [0, 1]], x[i:, ::-1, [0, 1]]
    assert a is b
    assert hash(a.op) == hash(b.op)
    assert a.op.idx == (("slice", ("in", 0), None, None), ("slice", None, None, -1), ("adv", 1))


def test_index_errors():
    k = T.dtensor3("k", shape=(2, 3, 4))
    too_many = r"too many indices for k: it has 3 dimensions .* but 4 were indexed"
    with pytest.raises(IndexError, match=too_many):
        k[0, 0, 0, 0]
    with pytest.raises(IndexError, match="index 3 is out of bounds for axis 1 with size 3 in k"):
        k[:, 3]
    with pytest.raises(IndexError, match="index -3 is out of bounds for axis 0 with size 2"):
        k[-3]
    with pytest.raises(IndexError, match="single ellipsis"):
        k[..., 0, ...]
    with pytest.raises(ValueError, match="slice step cannot be zero"):
        k[::0]
    with pytest.raises(TypeError, match="indices must be integers or booleans, got .* float64"):
        k[T.dvector("f")]
    with pytest.raises(TypeError, match="slice start must be an integer scalar"):
        k[T.dscalar("f") :]
    with pytest.raises(IndexError, match="could not be broadcast together"):
        k[[0, 1], :, [0, 1, 2]]
    with pytest.raises(IndexError, match="boolean index .* does not match axis 1 of k with size 3"):
        k[:, np.array([True, False])]
    with pytest.raises(TypeError, match="set_subtensor: the first argument must be an indexed"):
        T.set_subtensor(k, 1.0)
    bad_value = r"cannot broadcast the value .* of shape \(5,\) to the indexed shape \(3, 4\)"
    with pytest.raises(ValueError, match=bad_value):
        T.inc_subtensor(k[0], T.dvector(shape=(5,)))


def test_run_time_out_of_bounds_names_op_and_line():
    x, i = T.dmatrix("x"), T.lscalar("i")
    y = x[i]
    with pytest.raises(IndexError, match=r"(?s)index 7 is out of bounds.*Subtensor.*test_subt"):
        y.eval({x: A[0], i: 7})
    z = T.inc_subtensor(x[[0, 9]], 1.0)
    with pytest.raises(IndexError, match=r"(?s)out of bounds.*IncSubtensor"):
        z.eval({x: A[0]})


NEWAXIS_ADVANCED = [
    (S, [0, 2, 0], None, [1, 1, 3]),
    (None, [1, 0, 1], S, None, 2),
    (S, None, np.array([True, False, True]), None),
]


@pytest.mark.parametrize("key", NEWAXIS_ADVANCED, ids=["split", "int_mix", "mask"])
def test_inc_subtensor_with_newaxis_and_advanced(key):
    y = RNG.normal(size=A[key].shape)
    value, _ = run(lambda x, y: T.inc_subtensor(x[key], y), A, y)
    # oracle: index the flat positions with the same key, then accumulate element by element
    positions = np.arange(A.size).reshape(A.shape)[key].ravel()
    expected = A.copy().ravel()
    for p, v in zip(positions, y.ravel()):
        expected[p] += v
    np.testing.assert_allclose(value, expected.reshape(A.shape))
    check_grad(lambda x, y: T.inc_subtensor(x[key], y) * x, [A, y])
