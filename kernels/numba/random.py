"""Numba lowerings of graph/ops/random.py: Philox 4x32-10 and the elementwise draws, bit for bit.

The kernels reproduce the reference perform exactly (see the algorithm in graph/ops/random.py):
the draw's words are made block by block (one Philox call gives four words) for a chunk of CHUNK
elements at a time into a small buffer, and each element is then a pure function of its words
and its parameters. Chunks are independent, so large draws run them in `prange` (above
PARALLEL_SIZE words of work). Arithmetic keeps the reference's types: uniforms are exact in both
float widths, so a kernel stores one into the output element and reads it back, which makes the
affine map `low + (high - low) * u` run in the output's dtype as numpy's does. Normals are
bit-identical too: Box-Muller calls no libm function (libraries round log, sin and cos
differently) but repeats, operation for operation, the reference's `log_positive` and
`sincos_2pi`, built from + - * /, sqrt and exact bit moves, which LLVM rounds as numpy does
(numba is given no fastmath, so nothing is fused into an FMA or reassociated). float16 draws,
which numba has no arithmetic for, run the perform; bool integer draws are made as int64 and
cast as the perform does.
Multinomial, permutation and choice stay numpy steps (their reasons are in NUMPY_STEPS).
"""

from __future__ import annotations

import math

import numba
import numpy as np

from ...graph.ops import random as R
from ...graph.ops.random import _run_shape
from .loops import PARALLEL_SIZE as PARALLEL_ELEMENTWISE

njit = numba.njit(cache=True, error_model="numpy", nogil=True)
njit_parallel = numba.njit(cache=True, error_model="numpy", nogil=True, parallel=True)
inline = numba.njit(cache=True, error_model="numpy", inline="always")

CHUNK = 2048  # elements per buffer of words: a multiple of 4, so every chunk starts a block
# A draw runs its chunks on numba's threads from this much work, counted in words made (a normal
# counts 12 per element: its log, sin and cos polynomials cost about that): the elementwise
# loops' bound (THEANINE_PARALLEL_SIZE sets both). Measured on the 2-core machine: a 128x1000
# float32 dropout mask takes 0.17 ms on one thread (the perform 4 ms) and 0.085 ms on two with
# the other core idle, but 8-16 ms with it busy (a scheduler tick to wake the worker); 2^20
# float32 uniforms 0.93 -> 0.54 ms idle. Threads only pay where one thread needs several
# milliseconds.
PARALLEL_SIZE = PARALLEL_ELEMENTWISE

_MASK = np.uint64(0xFFFFFFFF)
_S32 = np.uint64(32)
_M0, _M1 = np.uint64(0xD2511F53), np.uint64(0xCD9E8D57)
_W0, _W1 = np.uint64(0x9E3779B9), np.uint64(0xBB67AE85)
_EXPONENT, _MANTISSA = np.uint64(0x7FF), np.uint64(0xFFFFFFFFFFFFF)
_ONE_BITS = np.uint64(0x3FF0000000000000)  # the exponent bits of 1.0


@inline
def philox(c0, c1, c2, c3, k0, k1):
    """Philox 4x32-10 of counter (c0, c1, c2, c3) under key (k0, k1): uint64 values below 2^32."""
    for r in range(10):
        if r:
            k0 = (k0 + _W0) & _MASK
            k1 = (k1 + _W1) & _MASK
        p0 = c0 * _M0
        p1 = c2 * _M1
        c0, c1, c2, c3 = (p1 >> _S32) ^ c1 ^ k0, p1 & _MASK, (p0 >> _S32) ^ c3 ^ k1, p0 & _MASK
    return c0, c1, c2, c3


@njit
def fill_words(state, start, count):
    """(buffer, skip): words start .. start + count - 1 of the state's draw are buffer[skip:]."""
    k0, k1 = np.uint64(state[0]), np.uint64(state[1])
    d_lo, d_hi = np.uint64(state[2]), np.uint64(state[3])
    first = start // 4
    blocks = (start + count + 3) // 4 - first
    buf = np.empty(4 * blocks, np.uint32)
    for j in range(blocks):
        b = np.uint64(first + j)
        w0, w1, w2, w3 = philox(b & _MASK, b >> _S32, d_lo, d_hi, k0, k1)
        buf[4 * j] = w0
        buf[4 * j + 1] = w1
        buf[4 * j + 2] = w2
        buf[4 * j + 3] = w3
    return buf, start - 4 * first


@inline
def u24(w):
    """A float32 uniform in (0, 1) from one word (exact, so held in a float64 here)."""
    return np.float64((np.int64(w) >> 9) * 2 + 1) * 2.0**-24


@inline
def u53(w0, w1):
    """A float64 uniform in (0, 1) from two words."""
    x = (np.int64(w0) << 20) | (np.int64(w1) >> 12)
    return (np.float64(x) * 2.0 + 1.0) * 2.0**-53


@inline
def u33(w):
    """A float64 uniform in (0, 1) from one word, for comparisons with a probability."""
    return (np.float64(w) * 2.0 + 1.0) * 2.0**-33


@inline
def below(w, m):
    """An integer in [0, m) (1 <= m <= 2^32) by the multiply-shift (w * m) >> 32."""
    return np.int64((np.uint64(w) * np.uint64(m)) >> _S32)


# --- one chunk of each draw: elements lo .. hi - 1 ------------------------------------------------
# Loops index views (`o`, `w`) by a range variable, and broadcast parameters by unsigned indices
# (`_at`): numba then adds no negative-index wraparound check and the loops vectorize (about 4x).


@inline
def _at(e, stride):
    """The unsigned index of element e in a parameter of stride 0 (one value) or 1."""
    return np.uint64(e * stride)


@njit
def uniform_chunk(state, out, low, high, sl, sh, wide, lo, hi):
    """out[e] = low + (high - low) * u, computed in out's dtype (low, high of that dtype)."""
    o = out[lo:hi]
    if wide:
        buf, skip = fill_words(state, 2 * lo, 2 * (hi - lo))
        w = buf[skip:]
        for i in range(hi - lo):
            o[i] = u53(w[2 * i], w[2 * i + 1])
    else:
        buf, skip = fill_words(state, lo, hi - lo)
        w = buf[skip:]
        for i in range(hi - lo):
            o[i] = u24(w[i])
    for i in range(hi - lo):
        a = low[_at(lo + i, sl)]
        o[i] = a + (high[_at(lo + i, sh)] - a) * o[i]


@njit
def integers_chunk(state, out, low, span, sl, ss, lo, hi):
    """out[e] = low + below(word e, span) (span = high - low + 1, checked by the caller)."""
    buf, skip = fill_words(state, lo, hi - lo)
    o, w = out[lo:hi], buf[skip:]
    for i in range(hi - lo):
        o[i] = low[_at(lo + i, sl)] + below(w[i], span[_at(lo + i, ss)])


@njit
def binomial_chunk(state, out, trials, p, st, sp, most, lo, hi):
    """out[e] = how many of words e most + t (t < trials[e]) have u33(word) < p[e]."""
    buf, skip = fill_words(state, lo * most, (hi - lo) * most)
    o = out[lo:hi]
    if most == 1:  # one trial per element (a dropout mask): a loop that vectorizes
        w = buf[skip:]
        for i in range(hi - lo):
            o[i] = (u33(w[i]) < p[_at(lo + i, sp)]) & (trials[_at(lo + i, st)] > 0)
        return
    for i in range(hi - lo):
        q = p[_at(lo + i, sp)]
        w = buf[skip + i * most :]
        count = 0
        for t in range(trials[_at(lo + i, st)]):
            count += u33(w[t]) < q
        o[i] = count


@inline
def horner(x, coefficients):
    """c0 + x (c1 + x (c2 + ...)), innermost first, as graph/ops/random.py:horner."""
    p = coefficients[len(coefficients) - 1]
    for i in range(len(coefficients) - 2, -1, -1):
        p = coefficients[i] + x * p
    return p


@inline
def log_positive(x):
    """log x of a positive normal float64, step for step graph/ops/random.py:log_positive."""
    bits = np.float64(x).view(np.uint64)
    k = np.int64((bits >> np.uint64(52)) & _EXPONENT) - 1023
    m = np.uint64((bits & _MANTISSA) | _ONE_BITS).view(np.float64)
    if m >= R.SQRT2:
        m = m * 0.5
        k += 1
    kf = np.float64(k)
    f = m - 1.0
    s = f / (2.0 + f)
    s2 = s * s
    t = s2 * horner(s2, R.ATANH)
    return kf * R.LN2_HI + (f + (kf * R.LN2_LO - s * (f - t)))


@inline
def sincos_2pi(u):
    """(sin 2 pi u, cos 2 pi u) of u in [0, 1), step for step graph/ops/random.py:sincos_2pi."""
    x = u * 4.0
    q = np.floor(x)
    r = x - q
    if r > 0.5:
        r = r - 1.0
        q = q + 1.0
    quadrant = np.int64(q) & 3
    r2 = r * r
    s = r + r * (R.HALF_PI_M1 + r2 * horner(r2, R.SIN))
    w = 1.0 - r2
    c = w + (((1.0 - w) - r2) + r2 * (R.COS_1 + r2 * horner(r2, R.COS)))
    if quadrant == 0:
        return s, c
    if quadrant == 1:
        return c, -s
    if quadrant == 2:
        return -s, -c
    return -c, s


@njit
def normal_chunk(state, out, avg, std, sa, ss, wide, lo, hi):
    """Box-Muller pairs lo .. hi - 1: z = sqrt(-2 log u1) (cos 2 pi u2, sin 2 pi u2), rounded to
    out's dtype (by storing it), then avg + std * z in that dtype; the last pair may have one
    element. Uniforms: u53 of words 4j .. 4j + 3 when wide, else u24 of words 2j, 2j + 1."""
    n = out.shape[0]
    per = 4 if wide else 2
    buf, skip = fill_words(state, per * lo, per * (hi - lo))
    w = buf[skip:]
    for i in range(hi - lo):
        if wide:
            u1 = u53(w[4 * i], w[4 * i + 1])
            u2 = u53(w[4 * i + 2], w[4 * i + 3])
        else:
            u1 = u24(w[2 * i])
            u2 = u24(w[2 * i + 1])
        r = math.sqrt(-2.0 * log_positive(u1))
        sin, cos = sincos_2pi(u2)
        e = 2 * (lo + i)
        out[e] = r * cos
        out[e] = avg[_at(e, sa)] + std[_at(e, ss)] * out[e]
        if e + 1 < n:
            out[e + 1] = r * sin
            out[e + 1] = avg[_at(e + 1, sa)] + std[_at(e + 1, ss)] * out[e + 1]


# --- drivers: every chunk of a draw, on one thread or on numba's threads -------------------------


@njit
def uniform_serial(state, out, low, high, sl, sh, wide):
    """All chunks of a uniform draw, in order."""
    n = out.shape[0]
    for c in range((n + CHUNK - 1) // CHUNK):
        uniform_chunk(state, out, low, high, sl, sh, wide, c * CHUNK, min(n, (c + 1) * CHUNK))


@njit_parallel
def uniform_parallel(state, out, low, high, sl, sh, wide):
    """All chunks of a uniform draw, spread over numba's threads."""
    n = out.shape[0]
    for c in numba.prange((n + CHUNK - 1) // CHUNK):
        uniform_chunk(state, out, low, high, sl, sh, wide, c * CHUNK, min(n, (c + 1) * CHUNK))


@njit
def integers_serial(state, out, low, span, sl, ss):
    """All chunks of an integer draw, in order."""
    n = out.shape[0]
    for c in range((n + CHUNK - 1) // CHUNK):
        integers_chunk(state, out, low, span, sl, ss, c * CHUNK, min(n, (c + 1) * CHUNK))


@njit_parallel
def integers_parallel(state, out, low, span, sl, ss):
    """All chunks of an integer draw, spread over numba's threads."""
    n = out.shape[0]
    for c in numba.prange((n + CHUNK - 1) // CHUNK):
        integers_chunk(state, out, low, span, sl, ss, c * CHUNK, min(n, (c + 1) * CHUNK))


@njit
def binomial_serial(state, out, trials, p, st, sp, most, chunk):
    """All chunks (of `chunk` elements, a multiple of 4) of a binomial draw, in order."""
    n = out.shape[0]
    for c in range((n + chunk - 1) // chunk):
        binomial_chunk(state, out, trials, p, st, sp, most, c * chunk, min(n, (c + 1) * chunk))


@njit_parallel
def binomial_parallel(state, out, trials, p, st, sp, most, chunk):
    """All chunks of a binomial draw, spread over numba's threads."""
    n = out.shape[0]
    for c in numba.prange((n + chunk - 1) // chunk):
        binomial_chunk(state, out, trials, p, st, sp, most, c * chunk, min(n, (c + 1) * chunk))


@njit
def normal_serial(state, out, avg, std, sa, ss, wide):
    """All chunks of pairs of a normal draw, in order."""
    pairs = (out.shape[0] + 1) // 2
    for c in range((pairs + CHUNK - 1) // CHUNK):
        normal_chunk(state, out, avg, std, sa, ss, wide, c * CHUNK, min(pairs, (c + 1) * CHUNK))


@njit_parallel
def normal_parallel(state, out, avg, std, sa, ss, wide):
    """All chunks of pairs of a normal draw, spread over numba's threads."""
    pairs = (out.shape[0] + 1) // 2
    for c in numba.prange((pairs + CHUNK - 1) // CHUNK):
        normal_chunk(state, out, avg, std, sa, ss, wide, c * CHUNK, min(pairs, (c + 1) * CHUNK))


@njit
def advance(state, out):
    """out = state with its 64-bit draw counter [d_lo, d_hi] incremented (mod 2^64)."""
    d = (np.uint64(state[2]) | (np.uint64(state[3]) << _S32)) + np.uint64(1)
    out[0] = state[0]
    out[1] = state[1]
    out[2] = d & _MASK
    out[3] = d >> _S32


# --- runners ---------------------------------------------------------------------------------------


def _pick(serial, parallel, work: int):
    """The parallel driver for at least PARALLEL_SIZE words of work, else the serial one."""
    return parallel if work >= PARALLEL_SIZE else serial


def _flat(value, shape: tuple, dtype) -> tuple:
    """(a 1-d C array, stride): one element with stride 0, or the value broadcast to `shape`."""
    value = np.asarray(value, dtype)
    if value.size == 1:
        return value.reshape(1), 0
    return np.ascontiguousarray(np.broadcast_to(value, shape)).reshape(-1), 1


def _native(dtype: np.dtype) -> bool:
    """Can a kernel store into this dtype (numba has no float16 arithmetic; bool needs != 0)?"""
    return dtype.kind in "iuf" and dtype != np.float16


def _advance(op, var):
    def run(state):
        out = np.empty(4, np.uint32)
        advance(state, out)
        return out

    return run


def _draw(op: R.RandomDraw, var):
    dtype = np.dtype(op.dtype)
    if dtype == np.float16:  # float16 computes in float32 and rounds per numpy op: the perform
        return lambda state, size, a, b: op.perform(state, size, a, b)
    return {"uniform": _uniform, "normal": _normal, "binomial": _binomial,
            "integers": _integers}[op.dist](op, dtype)  # fmt: skip


def _uniform(op, dtype):
    wide = dtype == np.float64

    def run(state, size, a, b):
        shape = _run_shape(op, size, (a, b))
        out = np.empty(int(np.prod(shape, dtype=np.int64)), dtype)
        if out.size:
            low, sl = _flat(a, shape, dtype)
            high, sh = _flat(b, shape, dtype)
            draw = _pick(uniform_serial, uniform_parallel, out.size * (1 + wide))
            draw(state, out, low, high, sl, sh, wide)
        return out.reshape(shape)

    return run


def _normal(op, dtype):
    wide = dtype == np.float64

    def run(state, size, a, b):
        shape = _run_shape(op, size, (a, b))
        n = int(np.prod(shape, dtype=np.int64))
        out = np.empty(n, dtype)
        if n:
            avg, sa = _flat(a, shape, dtype)
            std, ss = _flat(b, shape, dtype)
            _pick(normal_serial, normal_parallel, 12 * n)(state, out, avg, std, sa, ss, wide)
        return out.reshape(shape)

    return run


def _integers(op, dtype):
    def run(state, size, a, b):
        shape = _run_shape(op, size, (a, b))
        n = int(np.prod(shape, dtype=np.int64))
        low, sl = _flat(a, shape, np.int64)
        high, _ = _flat(b, shape, np.int64)
        span = high - low + 1
        if n and (span.min() < 1 or span.max() > 2**32):
            raise ValueError(
                f"random_integers: need low <= high and high - low < 2**32, got ranges from "
                f"{span.min() - 1} to {span.max() - 1}"
            )
        out = np.empty(n, dtype if _native(dtype) else np.int64)
        if n:
            ss = 1 if span.size > 1 else 0
            _pick(integers_serial, integers_parallel, n)(state, out, low, span, sl, ss)
        return out.reshape(shape).astype(dtype, copy=False)

    return run


def _binomial(op, dtype):
    def run(state, size, a, b):
        shape = _run_shape(op, size, (a, b))
        n = int(np.prod(shape, dtype=np.int64))
        trials, st = _flat(np.asarray(a).astype(np.int64), shape, np.int64)
        p, sp = _flat(b, shape, np.float64)
        if n and trials.min() < 0:
            raise ValueError(f"binomial: n must be >= 0, got {trials.min()}")
        if n and (p.min() < 0 or p.max() > 1 or np.isnan(p).any()):
            raise ValueError("binomial: p must lie in [0, 1]")
        most = int(trials.max()) if n else 0
        out = np.zeros(n, dtype if _native(dtype) else np.int64)
        if n and most:
            chunk = max(4, CHUNK // most // 4 * 4)  # about CHUNK words per chunk
            draw = _pick(binomial_serial, binomial_parallel, n * most)
            draw(state, out, trials, p, st, sp, most, chunk)
        return out.reshape(shape).astype(dtype, copy=False)

    return run


_SORTS = "a stable argsort of Philox keys per row: numpy's sort, no numba kernel"
_CATEGORIES = "a search of running sums per trial, rarely hot: numpy's vectorized compare-and-count"
LOWERINGS = {R.AdvanceState: _advance, R.RandomDraw: _draw}
NUMPY_STEPS = {
    R.Multinomial: _CATEGORIES,
    R.Permutation: _SORTS,
    R.Choice: "uniform indices, categories or a sort by Philox keys: numpy's vectorized perform",
    R.RowChoice: _CATEGORIES + " or a sort of exponential races per row",
}
