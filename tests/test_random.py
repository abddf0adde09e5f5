"""Random streams: Philox 4x32-10 bit-exactness, the documented word layout, Theano's draw API."""

from __future__ import annotations

import pickle
import subprocess
import sys

import numpy as np
import pytest

import theanine
import theanine.tensor as T
from theanine.graph.evaluate import evaluate
from theanine.graph.ops.random import (
    AdvanceState,
    RandomDraw,
    philox4x32,
    seed_key,
    stream_words,
)
from theanine.graph.random import MRG_RandomStreams, RandomStreams, fold_seed
from theanine.graph.var import Var

from helpers import check_grad

M32 = 0xFFFFFFFF


# --- an independent scalar Philox, written from the paper's description, as the oracle ------------


def philox_scalar(ctr, key):
    c, k = list(ctr), list(key)
    for r in range(10):
        if r:
            k = [(k[0] + 0x9E3779B9) & M32, (k[1] + 0xBB67AE85) & M32]
        p0, p1 = 0xD2511F53 * c[0], 0xCD9E8D57 * c[2]
        c = [(p1 >> 32) ^ c[1] ^ k[0], p1 & M32, (p0 >> 32) ^ c[3] ^ k[1], p0 & M32]
    return c


def words_scalar(state, n):
    """Word i of a draw = word i % 4 of Philox((b_lo, b_hi, d_lo, d_hi), key), b = i // 4."""
    k0, k1, d_lo, d_hi = (int(s) for s in state)
    out = []
    for i in range(n):
        b = i // 4
        out.append(philox_scalar([b & M32, b >> 32, d_lo, d_hi], [k0, k1])[i % 4])
    return out


def first_state(seed, index=0):
    return np.array(list(seed_key(seed, index)) + [0, 0], dtype=np.uint32)


KAT = [
    ((0, 0, 0, 0), (0, 0), (0x6627E8D5, 0xE169C58D, 0xBC57AC4C, 0x9B00DBD8)),
    ((M32,) * 4, (M32, M32), (0x408F276D, 0x41C83B0E, 0xA20BC7C6, 0x6D5451FD)),
    (
        (0x243F6A88, 0x85A308D3, 0x13198A2E, 0x03707344),
        (0xA4093822, 0x299F31D0),
        (0xD16CFE09, 0x94FDCCEB, 0x5001E420, 0x24126EA1),
    ),
]


@pytest.mark.parametrize("counter,key,expected", KAT)
def test_philox_known_answers(counter, key, expected):
    out = philox4x32(np.array([counter], dtype=np.uint32), key)
    assert out.dtype == np.uint32
    assert tuple(int(w) for w in out[0]) == expected
    assert tuple(philox_scalar(counter, key)) == expected


def test_vectorized_philox_matches_scalar_oracle():
    rng = np.random.default_rng(1)
    counters = rng.integers(0, 2**32, size=(20, 4), dtype=np.uint64).astype(np.uint32)
    key = (int(rng.integers(0, 2**32)), int(rng.integers(0, 2**32)))
    got = philox4x32(counters, key)
    for row, out in zip(counters, got):
        assert [int(w) for w in out] == philox_scalar([int(c) for c in row], key)


def test_stream_word_layout_matches_documentation():
    state = np.array([0x12345678, 0x9ABCDEF0, 7, 3], dtype=np.uint32)
    assert [int(w) for w in stream_words(state, 11)] == words_scalar(state, 11)
    seed = 2**40 + 5
    assert seed_key(seed, 3) == tuple(philox_scalar([3, 0, 0, 0], [seed & M32, seed >> 32])[:2])


def test_words_from_an_offset_and_chunked_draws_match(monkeypatch):
    import theanine.graph.ops.random as ops

    state = np.array([9, 8, 7, 6], dtype=np.uint32)
    full = stream_words(state, 23)
    for start in range(9):
        got = stream_words(state, 11, start=start)
        np.testing.assert_array_equal(got, full[start : start + 11])
    binomial = RandomDraw("binomial", "int64", 1)
    multinomial = ops.Multinomial("int64", 2)
    args_b = (state, np.array([50]), np.array(9), np.array(0.4))
    args_m = (state, np.array([30]), np.array(4), np.array([0.1, 0.2, 0.7]))
    whole_b, whole_m = binomial.perform(*args_b), multinomial.perform(*args_m)
    monkeypatch.setattr(ops, "_CHUNK", 7)  # many small pieces must give the same numbers
    np.testing.assert_array_equal(binomial.perform(*args_b), whole_b)
    np.testing.assert_array_equal(multinomial.perform(*args_m), whole_m)


def test_advance_state_carries_into_high_word():
    state = np.array([1, 2, M32, 5], dtype=np.uint32)
    assert AdvanceState().perform(state).tolist() == [1, 2, 0, 6]
    wrapped = AdvanceState().perform(np.array([1, 2, M32, M32], dtype=np.uint32))
    assert wrapped.tolist() == [1, 2, 0, 0]


# --- values follow the documented formulas exactly ------------------------------------------------


def test_uniform_float32_bits():
    low, high = -1.5, 2.5
    u = RandomStreams(11).uniform((2, 3), low=low, high=high, dtype="float32").eval()
    w = np.array(words_scalar(first_state(11), 6), dtype=np.uint64)
    unit = ((w >> 9) * 2 + 1).astype(np.float32) * np.float32(2.0**-24)
    expected = np.float32(low) + (np.float32(high) - np.float32(low)) * unit
    assert u.dtype == np.float32 and u.shape == (2, 3)
    np.testing.assert_array_equal(u, expected.reshape(2, 3))


def test_uniform_float64_and_normal_float64_bits():
    u = RandomStreams(12).uniform((3,), dtype="float64").eval()
    w = words_scalar(first_state(12), 6)
    x = [((w[2 * i] << 20) | (w[2 * i + 1] >> 12)) for i in range(3)]
    np.testing.assert_array_equal(u, [(2 * v + 1) / 2.0**53 for v in x])

    z = RandomStreams(12).normal((3,), avg=1.0, std=2.0, dtype="float64").eval()
    w = words_scalar(first_state(12), 8)
    uni = [((2 * ((w[2 * i] << 20) | (w[2 * i + 1] >> 12)) + 1) / 2.0**53) for i in range(4)]
    r, t = np.sqrt(-2 * np.log(uni[0])), 2 * np.pi * uni[1]
    r2, t2 = np.sqrt(-2 * np.log(uni[2])), 2 * np.pi * uni[3]
    expected = 1.0 + 2.0 * np.array([r * np.cos(t), r * np.sin(t), r2 * np.cos(t2)])
    np.testing.assert_allclose(z, expected, rtol=1e-15)


def test_random_integers_multiply_shift():
    got = RandomStreams(13).random_integers((5,), low=-3, high=9).eval()
    w = words_scalar(first_state(13), 5)
    assert got.tolist() == [-3 + ((v * 13) >> 32) for v in w]
    assert got.dtype == np.int64


# --- reproducibility and stream semantics ---------------------------------------------------------


def test_same_seed_same_numbers_and_different_seed_differs():
    def draws(seed):
        r = RandomStreams(seed)
        return theanine.function([], [r.uniform((4,)), r.normal((4,))])()

    a, b, c = draws(3), draws(3), draws(4)
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x, y)
    assert not np.array_equal(a[0], c[0])
    assert not np.array_equal(a[0], a[1])  # two draws of one object use different streams


def test_successive_calls_give_new_numbers_and_seed_resets():
    r = RandomStreams(5)
    u = r.uniform((6,))
    f = theanine.function([], u)
    first, second = f(), f()
    assert not np.array_equal(first, second)
    r.seed(5)
    np.testing.assert_array_equal(f(), first)
    r.seed(6)
    assert not np.array_equal(f(), first)
    fixed = theanine.function([], u, no_default_updates=True)
    np.testing.assert_array_equal(fixed(), fixed())


def test_updates_method_lists_state_pairs():
    r = RandomStreams(5)
    u = r.uniform((2,))
    (state, new), = r.updates()
    assert isinstance(new.op, AdvanceState) and new.inputs[0] is state
    f = theanine.function([], u, updates=r.updates(), no_default_updates=True)
    assert not np.array_equal(f(), f())


def test_same_numbers_in_a_subprocess():
    code = (
        "import numpy as np, theanine\n"
        "from theanine.graph.random import RandomStreams\n"
        "r = RandomStreams(2024)\n"
        "f = theanine.function([], [r.uniform((3,)), r.normal((3,), dtype='float64'),\n"
        "                           r.permutation(n=5)])\n"
        "f()\n"
        "print(repr([v.tolist() for v in f()]))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    r = RandomStreams(2024)
    draws = [r.uniform((3,)), r.normal((3,), dtype="float64"), r.permutation(n=5)]
    f = theanine.function([], draws)
    f()
    assert done.stdout.strip() == repr([v.tolist() for v in f()])


# --- statistics -----------------------------------------------------------------------------------


def test_uniform_and_normal_moments():
    r = RandomStreams(7)
    draws = [r.uniform((100000,), low=2.0, high=5.0), r.normal((100000,), avg=-1.0, std=3.0)]
    u, z = theanine.function([], draws)()
    assert u.min() >= 2.0 and u.max() <= 5.0
    assert abs(u.mean() - 3.5) < 0.02 and abs(u.std() - 3 / np.sqrt(12)) < 0.01
    assert abs(z.mean() + 1.0) < 0.03 and abs(z.std() - 3.0) < 0.03
    assert abs(np.mean(np.abs(z + 1.0) < 3.0) - 0.6827) < 0.01  # the shape, not just two moments


def test_binomial_mean_and_range():
    b = RandomStreams(8).binomial((20000,), n=10, p=0.3).eval()
    assert b.dtype == np.int64 and b.min() >= 0 and b.max() <= 10
    assert abs(b.mean() - 3.0) < 0.05 and abs(b.var() - 2.1) < 0.1
    p = np.array([0.1, 0.9], dtype="float32")
    mask = RandomStreams(8).binomial((5000, 2), p=p, dtype="float32").eval()
    assert mask.dtype == np.float32 and set(np.unique(mask)) <= {0.0, 1.0}
    np.testing.assert_allclose(mask.mean(axis=0), p, atol=0.02)


def test_random_integers_covers_inclusive_range():
    v = RandomStreams(9).random_integers((5000,), low=3, high=7).eval()
    assert set(np.unique(v)) == {3, 4, 5, 6, 7}


def test_multinomial_counts():
    pvals = [0.2, 0.3, 0.5]
    m = RandomStreams(10).multinomial((4000,), n=5, pvals=pvals).eval()
    assert m.shape == (4000, 3) and m.dtype == np.int64
    assert (m.sum(axis=1) == 5).all()
    np.testing.assert_allclose(m.sum(axis=0) / m.sum(), pvals, atol=0.01)


def test_permutation_and_choice_without_replacement():
    r = RandomStreams(11)
    perms = r.permutation((3, 2), n=10).eval()
    assert perms.shape == (3, 2, 10)
    for row in perms.reshape(-1, 10):
        assert sorted(row.tolist()) == list(range(10))
    assert len({tuple(row) for row in perms.reshape(-1, 10)}) > 1
    picks = r.choice((2, 4), a=8, replace=False).eval()
    assert picks.shape == (2, 4) and len(set(picks.ravel().tolist())) == 8
    weighted = r.choice((3,), a=[5, 6, 7, 8], replace=False, p=[0.1, 0.2, 0.3, 0.4]).eval()
    assert len(set(weighted.tolist())) == 3 and set(weighted.tolist()) <= {5, 6, 7, 8}


def test_choice_with_replacement_frequencies():
    r = RandomStreams(12)
    c = r.choice((20000,), a=[10, 20, 30], p=[0.2, 0.0, 0.8]).eval()
    assert set(np.unique(c)) == {10, 30}
    assert abs(np.mean(c == 30) - 0.8) < 0.015
    plain = r.choice((20000,), a=4).eval()
    np.testing.assert_allclose(np.bincount(plain) / 20000, 0.25, atol=0.015)


# --- types, shapes, symbolic sizes, gradients -----------------------------------------------------


def test_types_and_static_shapes():
    r = RandomStreams(1)
    assert r.uniform((2, 3, 4)).type == T.TensorType(theanine.config.floatX, (2, 3, 4))
    assert r.normal((5,), dtype="float64").type == T.TensorType("float64", (5,))
    assert r.binomial((2, 3)).type == T.TensorType("int64", (2, 3))
    assert r.multinomial((2,), n=3, pvals=[0.5, 0.25, 0.25]).type == T.TensorType("int64", (2, 3))
    assert r.permutation((4,), n=6).type == T.TensorType("int64", (4, 6))
    assert r.permutation(n=6).type == T.TensorType("int64", (6,))
    assert r.choice(a=5).type == T.TensorType("int64", ())
    assert r.uniform().type.shape == ()
    # size () takes the parameters' broadcast shape
    assert r.uniform(low=T.dvector("lo")).type == T.TensorType("float64", (None,))
    assert r.normal(avg=T.dmatrix("m"), ndim=2).type == T.TensorType("float64", (None, None))
    assert r.uniform((2,), dtype="float16").eval().dtype == np.float16


def test_size_from_symbolic_shape_and_scalars():
    r = RandomStreams(2)
    x = T.tensor3("x")
    u = r.uniform(x.shape)
    assert u.ndim == 3
    k = T.lscalar("k")
    z = r.normal((k, 3))
    assert z.type.shape == (None, 3)
    v = T.lvector("v")
    b = r.binomial(v, p=0.5, ndim=2)
    f = theanine.function([x, k, v], [u, z, b])
    a, b_, c = f(np.zeros((2, 3, 4), dtype=theanine.config.floatX), 5, np.array([4, 2]))
    assert a.shape == (2, 3, 4) and b_.shape == (5, 3) and c.shape == (4, 2)

    static = T.TensorType("float32", (2, 3, 4))("s")
    assert r.uniform(static.shape).type.shape == (2, 3, 4)


def test_symbolic_broadcast_parameters():
    r = RandomStreams(3)
    low = T.dvector("low")
    u = r.uniform((4, 3), low=low, high=low + 1.0)
    assert u.dtype == "float64" and u.type.shape == (4, 3)
    lv = np.array([0.0, 10.0, 100.0])
    out = theanine.function([low], u)(lv)
    assert out.shape == (4, 3) and ((out >= lv) & (out <= lv + 1)).all()


def test_no_gradient_through_draw_but_grad_to_weights():
    r = RandomStreams(4)
    w = T.dvector("w")
    u = r.uniform((3,), dtype="float64")
    g = T.grad(T.sum(u * w), w)
    values, grads = theanine.function([w], [u, g], no_default_updates=True)(np.ones(3))
    np.testing.assert_array_equal(values, grads)
    assert u.owner.op.pullback(u.inputs, u, None) == (None,) * 4


def test_shuffle_row_elements_permutes_rows_and_has_gradient():
    x = np.arange(12.0).reshape(3, 4)
    out = RandomStreams(5).shuffle_row_elements(T.dmatrix("x"))
    (got,) = evaluate([out], {out.inputs[0]: x})
    for row, original in zip(got, x):
        assert sorted(row.tolist()) == original.tolist()
    check_grad(lambda a: RandomStreams(5).shuffle_row_elements(a), [x])


def test_mrg_streams():
    r = MRG_RandomStreams(seed=[1, 2, 3, 4, 5, 6])
    assert fold_seed([1, 2, 3, 4, 5, 6]) != fold_seed([1, 2, 3, 4, 5, 7])
    p = np.tile([[0.1, 0.2, 0.3, 0.4]], (5, 1))
    rows = r.choice(size=3, p=p, replace=False)
    counts = r.multinomial(pvals=p.astype(theanine.config.floatX), n=4)
    mask = r.binomial(size=(6,), p=0.5, dtype="float32")
    a, b, c = theanine.function([], [rows, counts, mask])()
    assert rows.type.shape == (5, 3) and a.shape == (5, 3)
    assert all(len(set(row)) == 3 for row in a.tolist())
    assert b.shape == (5, 4) and (b.sum(axis=1) == 4).all()
    assert c.dtype == np.float32
    same = MRG_RandomStreams(seed=[1, 2, 3, 4, 5, 6]).choice(size=3, p=p, replace=False).eval()
    np.testing.assert_array_equal(same, a)
    default = MRG_RandomStreams().uniform((2,)).eval()
    np.testing.assert_array_equal(default, MRG_RandomStreams(12345).uniform((2,)).eval())


def test_pickled_function_continues_the_stream():
    f = theanine.function([], MRG_RandomStreams(3).normal((3,)))
    f()
    g = pickle.loads(pickle.dumps(f))
    np.testing.assert_array_equal(f(), g())


# --- errors ---------------------------------------------------------------------------------------


def test_errors():
    r = RandomStreams(1)
    with pytest.raises(TypeError, match="uniform: dtype must be a float type, got 'int32'"):
        r.uniform((2,), dtype="int32")
    with pytest.raises(ValueError, match=r"does not broadcast to the size \(2, 3\)"):
        r.uniform((2, 3), low=np.zeros(4))
    with pytest.raises(ValueError, match="size \\(2, 3\\) has 2 entries but ndim=3"):
        r.normal((2, 3), ndim=3)
    with pytest.raises(ValueError, match="not known statically; pass ndim="):
        r.normal(T.lvector("v"))
    with pytest.raises(TypeError, match="random_integers: low must be an integer"):
        r.random_integers((2,), low=0.5, high=3)
    with pytest.raises(NotImplementedError, match="truncate=True"):
        r.normal((2,), truncate=True)
    with pytest.raises(TypeError, match="stream state must be uint32\\[4\\]"):
        no_size = T.constant(np.zeros(0, "int64"))
        bounds = (T.constant(0.0), T.constant(1.0))
        Var(RandomDraw("uniform", "float32", 0), (T.dvector("s"), no_size) + bounds)
    with pytest.raises(ValueError, match="cannot take 5 samples without replacement from 3"):
        r.choice((5,), a=3, replace=False).eval()
    with pytest.raises(ValueError, match="binomial: p must lie in \\[0, 1\\]"):
        r.binomial((2,), p=1.5).eval()
    with pytest.raises(ValueError, match="need low <= high"):
        r.random_integers((2,), low=5, high=1).eval()
    with pytest.raises(TypeError, match="a random seed must be an int or a list of ints, got str"):
        RandomStreams("abc")
