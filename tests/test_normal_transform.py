"""Box-Muller's own log and sin/cos: accurate, and normal draws bit-identical in every mode.

graph/ops/random.py builds log and sin/cos of 2 pi u from + - * /, sqrt and exact bit moves, and
the numba and CUDA kernels repeat the same operations, so normals match bit for bit (libm's log,
sin and cos round differently from library to library). References: numpy's float64 functions
and, for the ulp bounds, numpy's long double (x86's 64-bit mantissa) on the exactly reduced
argument.
"""

from __future__ import annotations

import re

import numba
import numpy as np
import pytest
import theanine
from theanine.graph.ops.random import (
    log_positive,
    seed_key,
    sincos_2pi,
    stream_words,
    u24,
    u53,
)
from theanine.kernels.numba import random as numba_random
from theanine.tensor.shared_randomstreams import RandomStreams

SMALLEST_U53, SMALLEST_U24 = 2.0**-53, 2.0**-24
EDGES = np.array(
    [SMALLEST_U53, 3 * SMALLEST_U53, SMALLEST_U24, 0.125, 0.25, 0.5, 0.75, 1 - SMALLEST_U53]
    + [0.25 - SMALLEST_U53, 0.25 + SMALLEST_U53, 0.5 - SMALLEST_U53, 0.75 + SMALLEST_U53]
    + [0.7071067811865475, 0.7071067811865476, 0.35355339059327373, 1 - SMALLEST_U24]
)
LONG = np.finfo(np.longdouble).nmant >= 63  # an x87 long double: a reference finer than float64


def _u53(n: int, seed: int) -> np.ndarray:
    """n uniforms u53 = (2x + 1) 2^-53 (the draws' float64 uniforms), from numpy's generator."""
    x = np.random.default_rng(seed).integers(0, 2**52, size=n, dtype=np.int64)
    return (x.astype(np.float64) * 2.0 + 1.0) * 2.0**-53


def _ulps(got: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """|got - reference| in units of the float64 spacing at the reference."""
    spacing = np.spacing(np.abs(reference.astype(np.float64))).astype(np.longdouble)
    return np.abs((got.astype(np.longdouble) - reference) / spacing).astype(np.float64)


def _arguments() -> np.ndarray:
    """10^6 uniforms, 10^5 tiny ones (down to 2^-53) and the edge cases."""
    tiny = np.random.default_rng(1).random(100_000) ** 40 + SMALLEST_U53
    return np.concatenate([_u53(1_000_000, 0), tiny, EDGES])


# --- the helpers' accuracy ---------------------------------------------------------------------


def test_log_within_one_ulp_and_two_of_numpy():
    u = _arguments()
    got = log_positive(u)
    assert got.dtype == np.float64 and got.shape == u.shape
    assert _ulps(got, np.log(u).astype(np.longdouble)).max() <= 2.0
    assert _ulps(got, np.log(u.astype(np.longdouble))).max() <= (1.0 if LONG else 2.0)
    powers = log_positive(np.array([SMALLEST_U53, SMALLEST_U24, 0.5, 1.0]))  # 2^-k: -k ln 2
    ln2 = np.log(np.longdouble(2))
    expected = (np.array([-53, -24, -1, 0], dtype=np.longdouble) * ln2).astype(np.float64)
    np.testing.assert_array_equal(powers, expected)


def test_log_over_the_whole_exponent_range():
    exponents = np.random.default_rng(2).uniform(-1020, 1020, 100_000)
    x = np.concatenate([2.0**exponents, [1.0, 2.0, 0.5, np.finfo(np.float64).max, 2.0**-1022]])
    got = log_positive(x)
    np.testing.assert_array_equal(got[-5:-2], [0.0, np.log(2.0), -np.log(2.0)])
    assert _ulps(got, np.log(x).astype(np.longdouble)).max() <= 2.0


def _sincos_reference(u: np.ndarray) -> tuple:
    """sin, cos of 2 pi u in long double: exact x = 4u = q + r, then sin/cos of r pi / 2."""
    x = u * 4.0
    q = np.round(x)
    r = (x - q).astype(np.longdouble)  # exact in float64 already
    half_pi = np.longdouble("1.57079632679489661923132169163975144")
    s, c = np.sin(r * half_pi), np.cos(r * half_pi)
    k = q.astype(np.int64) % 4
    sin = np.choose(k, [s, c, -s, -c])
    cos = np.choose(k, [c, -s, -c, s])
    return sin, cos


def test_sincos_within_two_ulps_of_exact_and_close_to_numpy():
    u = _arguments()
    sin, cos = sincos_2pi(u)
    assert sin.dtype == cos.dtype == np.float64 and sin.shape == u.shape
    ref_sin, ref_cos = _sincos_reference(u)
    assert _ulps(sin, ref_sin).max() <= 2.0 and _ulps(cos, ref_cos).max() <= 2.0
    # numpy's cos(2 pi u) rounds 2 pi u first, so near a zero only an absolute bound holds
    t = 2.0 * np.pi * u
    assert np.abs(sin - np.sin(t)).max() < 1e-15 and np.abs(cos - np.cos(t)).max() < 1e-15


def test_sincos_exact_at_quarter_turns():
    sin, cos = sincos_2pi(np.array([0.0, 0.25, 0.5, 0.75, 0.125]))
    np.testing.assert_array_equal(sin[:4], [0.0, 1.0, 0.0, -1.0])
    np.testing.assert_array_equal(cos[:4], [1.0, 0.0, -1.0, 0.0])
    assert abs(sin[4] - np.sqrt(0.5)) <= np.spacing(np.sqrt(0.5)) and sin[4] == cos[4]
    s, c = sincos_2pi(np.array([SMALLEST_U53]))  # the smallest u53: sin is 2 pi u, cos is 1
    assert c[0] == 1.0 and _ulps(s, np.array([2 * np.pi * SMALLEST_U53], np.longdouble)) <= 1


# --- the same bits from the numba helpers and in every mode ---------------------------------------


@numba.njit(cache=False)
def _numba_helpers(u, logs, sins, coss):
    for i in range(u.shape[0]):
        logs[i] = numba_random.log_positive(u[i])
        sins[i], coss[i] = numba_random.sincos_2pi(u[i])


def test_numba_helpers_give_numpys_bits():
    u = np.concatenate([_u53(200_000, 3), EDGES])
    logs, sins, coss = np.empty_like(u), np.empty_like(u), np.empty_like(u)
    _numba_helpers(u, logs, sins, coss)
    sin, cos = sincos_2pi(u)
    assert np.array_equal(logs, log_positive(u))
    assert np.array_equal(sins, sin) and np.array_equal(coss, cos)


def _draws(seed: int) -> list:
    r = RandomStreams(seed)
    out = []
    for dtype in ("float64", "float32"):
        out += [
            r.normal((1,), dtype=dtype),
            r.normal((7,), avg=-1.0, std=0.5, dtype=dtype),
            r.normal((3, 5), dtype=dtype),
            r.normal((100_001,), dtype=dtype),
        ]
    return out


@pytest.fixture(scope="module")
def by_mode() -> dict:
    """Three calls of the same draws (three seeds, odd sizes, both dtypes) in each mode."""
    out = {}
    for mode in ("py", "numba", "cuda-emulator"):
        draws = [d for seed in (1, 2026, 2**40 + 5) for d in _draws(seed)]
        f = theanine.function([], draws, mode=mode)
        out[mode] = [f() for _ in range(3)]
    return out


@pytest.mark.parametrize("mode", ["numba", "cuda-emulator"])
def test_normal_draws_are_bit_identical_to_py(by_mode, mode):
    for call, (got, expected) in enumerate(zip(by_mode[mode], by_mode["py"])):
        for i, (g, e) in enumerate(zip(got, expected)):
            assert g.dtype == e.dtype and g.shape == e.shape, (mode, call, i)
            assert np.array_equal(g, e), f"{mode}, call {call}, draw {i}: {g[:4]} != {e[:4]}"
    first, second = by_mode["py"][0], by_mode["py"][1]
    assert not np.array_equal(first[3], second[3])  # the state advances between calls


def _box_muller(u: np.ndarray, n: int) -> np.ndarray:
    """The documented transform: pairs (u1, u2) to r cos 2 pi u2, r sin 2 pi u2 (float64)."""
    r = np.sqrt(-2.0 * log_positive(u[0::2]))
    sin, cos = sincos_2pi(u[1::2])
    return np.stack([r * cos, r * sin], axis=1).reshape(-1)[:n]


def test_draws_follow_the_documented_transform_and_look_normal(by_mode):
    draws = by_mode["py"][1]  # the second call: draw counter d = 1
    for s, dtype in ((3, "float64"), (7, "float32")):
        z = draws[s]
        assert z.dtype == dtype and z.shape == (100_001,)
        assert abs(z.mean()) < 0.02 and abs(z.std() - 1.0) < 0.02
        state = np.array([*seed_key(1, s), 1, 0], dtype=np.uint32)
        if dtype == "float64":
            w = stream_words(state, 4 * 50_001)
            u = u53(w[0::2], w[1::2])
        else:  # u24 uniforms, exact in float64; the float64 result rounded once to float32
            u = u24(stream_words(state, 2 * 50_001)).astype(np.float64)
        assert np.array_equal(z, _box_muller(u, 100_001).astype(dtype))
    small = draws[5]  # avg -1, std 0.5, float32: the affine map in float32
    state = np.array([*seed_key(1, 5), 1, 0], dtype=np.uint32)
    z = _box_muller(u24(stream_words(state, 8)).astype(np.float64), 7).astype(np.float32)
    assert np.array_equal(small, np.float32(-1.0) + np.float32(0.5) * z)


def test_cuda_source_calls_no_libm_transcendentals():
    r = RandomStreams(5)
    f = theanine.function([], r.normal((9,), dtype="float64"), mode="cuda-emulator")
    sources = "\n".join(text for _, text in f.kernel_sources())
    assert "th_log(" in sources and "th_sincos_2pi(" in sources
    assert not re.search(r"(?<![\w.])(log|sin|cos|exp|sincos|sinpi|cospi)\s*\(", sources)
    for intrinsic in ("__dadd_rn", "__dsub_rn", "__dmul_rn", "__ddiv_rn", "__dsqrt_rn"):
        assert intrinsic in sources
