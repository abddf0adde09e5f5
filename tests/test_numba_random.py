"""Mode numba's random draws: compiled Philox kernels giving mode py's streams bit for bit."""

from __future__ import annotations

import numpy as np
import pytest
import theanine
from theanine.graph.ops import random as R
from theanine.graph.random import RandomStreams

pytest.importorskip("numba")
from theanine.kernels.numba import backend as NB
from theanine.kernels.numba import random as K

RNG = np.random.default_rng(5)
SIZES = [(), (1,), (7,), (3, 5), (2, 3, 4), (2049,), (4099,)]  # odd sizes; chunk boundaries
PORTED = (R.AdvanceState, R.RandomDraw)


def random_state() -> np.ndarray:
    """A stream state with random key and counter (the counter's high word near a carry)."""
    state = RNG.integers(0, 2**32, 4, dtype=np.uint64).astype(np.uint32)
    state[2] = 0xFFFFFFFF - RNG.integers(0, 3)
    return state


def draw_both(dist: str, dtype: str, size: tuple, a, b) -> tuple:
    """(numba lowering's result, the perform's) for one draw from one state."""
    op = R.RandomDraw(dist, dtype, len(size))
    state, size = random_state(), np.array(size, dtype=np.int64)
    want = op.perform(state, size, a, b)
    got = K._draw(op, None)(state, size, a, b)
    return got, want


def assert_same(got: np.ndarray, want: np.ndarray) -> None:
    assert got.dtype == want.dtype and got.shape == want.shape
    assert np.array_equal(got, want), f"{(got != want).sum()} of {got.size} elements differ"


def test_ported_draws_are_lowered_not_numpy_steps():
    for cls in PORTED:
        assert cls not in NB.NUMPY_STEPS
        assert NB.LOWERINGS[cls] is K.LOWERINGS[cls]
    for cls in (R.Multinomial, R.Permutation, R.Choice, R.RowChoice):  # kept, with a reason
        assert len(NB.NUMPY_STEPS[cls]) > 10
    rng = RandomStreams(3)
    draw = rng.normal((2, 3), dtype="float32")
    ((_, update),) = rng.state_updates
    for var in (draw, update):
        runner = NB.lower(var)
        assert "numpy_step" not in runner.__qualname__, runner.__qualname__
    assert "numpy_step" in NB.lower(rng.permutation(n=4)).__qualname__


def test_philox_words_match_the_reference_across_block_boundaries():
    state = random_state()
    for start, count in [(0, 1), (1, 6), (3, 9), (4, 4), (5, 0), (1 << 32, 7)]:
        buf, skip = K.fill_words(state, start, count)
        assert_same(buf[skip : skip + count], R.stream_words(state, count, start=start))


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("dtype", ["float32", "float64", "float16"])
def test_uniform_matches_py(size, dtype):
    assert_same(*draw_both("uniform", dtype, size, -1.5, 4.0))


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_normal_matches_py(size, dtype):
    assert_same(*draw_both("normal", dtype, size, 0.5, 3.0))


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("dtype", ["int64", "int8", "uint32", "float32", "bool"])
def test_integers_match_py(size, dtype):
    assert_same(*draw_both("integers", dtype, size, -3, 200))


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("dtype", ["int64", "int32", "float32", "float64"])
def test_binomial_with_one_trial_matches_py(size, dtype):
    got, want = draw_both("binomial", dtype, size, 1, 0.3)
    assert_same(got, want)
    if got.size > 1000:  # a real mask: about 30 percent ones
        assert 0.25 < got.mean() < 0.35


def test_draws_with_broadcast_parameters_match_py():
    low, high = RNG.uniform(-2, 0, (3, 1)), RNG.uniform(1, 2, (5,))
    for dtype in ("float32", "float64"):
        assert_same(*draw_both("uniform", dtype, (3, 5), low, high))
        assert_same(*draw_both("normal", dtype, (3, 5), low, np.abs(high)))
        assert_same(*draw_both("uniform", dtype, (), low, high))  # size (): the params' shape
    assert_same(*draw_both("integers", "int64", (3, 5), np.arange(3)[:, None], np.arange(5) + 4))
    trials = np.array([[0], [1], [5]])  # several trials per element; n = 0 gives 0
    p = np.array([0.0, 0.2, 0.5, 0.9, 1.0])
    for dtype in ("int64", "float32"):
        assert_same(*draw_both("binomial", dtype, (3, 5), trials, p))
        assert_same(*draw_both("binomial", dtype, (3, 5), np.array([[0], [1], [1]]), p))


def test_bad_parameters_raise_as_in_py():
    op = R.RandomDraw("binomial", "int64", 1)
    run, size = K._draw(op, None), np.array([3])
    with pytest.raises(ValueError, match="binomial: n must be >= 0, got -1"):
        run(random_state(), size, np.array([1, -1, 2]), 0.5)
    with pytest.raises(ValueError, match=r"binomial: p must lie in \[0, 1\]"):
        run(random_state(), size, 1, 1.5)
    op = R.RandomDraw("integers", "int64", 1)
    with pytest.raises(ValueError, match="random_integers: need low <= high"):
        K._draw(op, None)(random_state(), size, 5, 2)
    op = R.RandomDraw("uniform", "float32", 1)
    with pytest.raises(ValueError, match=r"uniform: parameters of shapes \(2,\), \(\) do not"):
        K._draw(op, None)(random_state(), size, np.zeros(2), 1.0)


def test_advance_state_carries_into_the_high_word():
    run = K._advance(R.advance_state, None)
    for state in ([1, 2, 0xFFFFFFFF, 7], [1, 2, 0xFFFFFFFF, 0xFFFFFFFF], [9, 8, 5, 0]):
        state = np.array(state, np.uint32)
        assert_same(run(state), R.advance_state.perform(state))


def test_the_parallel_drivers_give_the_same_bits(monkeypatch):
    monkeypatch.setattr(K, "PARALLEL_SIZE", 0)
    for dist, dtype, a, b in [("uniform", "float32", 0.0, 1.0), ("normal", "float64", 1.0, 2.0),
                              ("integers", "int32", 0, 9), ("binomial", "float32", 2, 0.4)]:  # fmt: skip
        assert_same(*draw_both(dist, dtype, (5000,), a, b))


def test_compiled_functions_give_py_streams_over_several_calls():
    outputs = {}
    for mode in ("numba", "py"):
        rng = RandomStreams(11)
        draws = [
            rng.uniform((3, 5), low=-1.0, high=2.0, dtype="float32"),
            rng.uniform((9,), dtype="float64"),
            rng.normal((2, 7), avg=1.0, std=0.5, dtype="float32"),
            rng.normal((5,), dtype="float64"),
            rng.binomial((128, 10), p=0.5, dtype="float32"),
            rng.binomial((6,), n=4, p=0.25),
            rng.random_integers((4, 3), low=-2, high=6, dtype="int16"),
        ]
        f = theanine.function([], draws, mode=mode)
        outputs[mode] = [f() for _ in range(3)]  # the states advance between calls
    for got_call, want_call in zip(outputs["numba"], outputs["py"]):
        for got, want in zip(got_call, want_call):
            assert_same(got, want)
    first, second = outputs["numba"][0][0], outputs["numba"][1][0]
    assert not np.array_equal(first, second)
