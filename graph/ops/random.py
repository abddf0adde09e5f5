"""Random draws from one counter-based generator, Philox 4x32-10, as pure ops on a stream state.

The algorithm is spelled out so that another backend (the CUDA kernels) reproduces it bit for bit.

Philox 4x32-10 (Salmon et al., "Parallel random numbers: as easy as 1, 2, 3", SC 2011): a 128-bit
counter (c0, c1, c2, c3) and a 64-bit key (k0, k1), all uint32 words, give four uint32 words.
A round is

    (hi0, lo0) = 0xD2511F53 * c0   (the 64-bit product split into high and low 32 bits)
    (hi1, lo1) = 0xCD9E8D57 * c2
    c = (hi1 ^ c1 ^ k0, lo1, hi0 ^ c3 ^ k1, lo0)

and ten rounds run, the key bumped by (k0 += 0x9E3779B9, k1 += 0xBB67AE85, mod 2^32) between rounds.

Stream state: a uint32 vector [k0, k1, d_lo, d_hi]: the stream's key and a 64-bit draw counter
d = d_lo + 2^32 d_hi. Word i of a draw (i = 0, 1, 2, ...) is output word (i mod 4) of Philox
applied to counter (b_lo, b_hi, d_lo, d_hi), key (k0, k1), where b = i div 4 = b_lo + 2^32 b_hi.
Every draw reads words 0, 1, 2, ... of its own counter d, and the state's update (`AdvanceState`)
sets d to d + 1, so a draw consumes one counter value however many numbers it makes. Elements go
in C (row-major) order. Keys: the draw made s-th (s = 0, 1, ...) by `RandomStreams(seed)` starts
at d = 0 with (k0, k1) = words 0, 1 of Philox((s_lo, s_hi, 0, 0), key (seed_lo, seed_hi)), the
seed taken mod 2^64 (`seed_key`; a list seed is first folded to 64 bits, `random.fold_seed`).

Words to numbers (w, w0, w1 are words; all arithmetic exact):
- u24(w)      = (2 (w >> 9) + 1) * 2^-24, a float32 in (0, 1)            (one word)
- u53(w0, w1) = (2 x + 1) * 2^-53, x = (w0 << 20) | (w1 >> 12), a float64 in (0, 1)   (two words)
- u33(w)      = (2 w + 1) * 2^-33, a float64 in (0, 1)                    (one word)
- below(w, m) = (w * m) >> 32 in 64-bit integers, an integer in [0, m) for 1 <= m <= 2^32
- key64(w0, w1) = (w0 << 32) | w1, a uint64 sort key
Distributions (element e, parameters broadcast to the output shape, each computed in the output
dtype except where float64 is named):
- uniform: u = u24(word e) for float32 and float16, u53(words 2e, 2e+1) for float64;
  low + (high - low) * u (float16 computes in float32, then rounds).
- normal (Box-Muller): pair j takes uniforms (u1, u2) = (u24(2j), u24(2j+1)) for float32/16 or
  (u53(4j, 4j+1), u53(4j+2, 4j+3)) for float64; in float64 r = sqrt(-2 log u1),
  z[2j] = r cos(2 pi u2), z[2j+1] = r sin(2 pi u2), with this module's own log (`log_positive`)
  and sin/cos (`sincos_2pi`); z is rounded to the dtype; out = avg + std * z.
- binomial(n, p): with N = max n, element e runs trials t < n_e on words e N + t; successes are
  u33(word) < p (p in float64).
- integers(low, high) (inclusive): low + below(word e, high - low + 1).
- multinomial(n, pvals): with N = max n, trial t of row r takes u = u53(words 2(r N + t),
  2(r N + t) + 1); with the row's float64 running sums s_j = p_0 + ... + p_j (added in order), it
  lands in category min(k - 1, #{j : s_j <= u * s_{k-1}}).
- permutation(n): row r sorts keys key64(words 2(r n + i), 2(r n + i) + 1), i < n, stably (ties keep
  the lower i first) and returns the order.
- choice(a, size m): with replacement and no p, below(word e, n); with p, element e is one
  multinomial trial on u53(words 2e, 2e+1); without replacement and no p, the first m entries
  of permutation(n); without replacement with p, the m smallest of -log(u53(words 2i, 2i+1)) / p_i
  (float64), stably.
All of this is exact integer or correctly rounded arithmetic, so another implementation matches bit
for bit. That includes normals: libraries round log, sin and cos differently (numpy's float64 log
is not glibc's, nor a GPU's), so Box-Muller does not call them but spells them out from + - * /,
sqrt and exact bit moves (`log_positive`, `sincos_2pi`), and the numba and CUDA kernels repeat the
same operations in the same order. Only choice without replacement with p calls numpy's log; it
runs as numpy code in every mode.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..type import TensorType, as_dtype, is_discrete
from ..var import Op, Var
from .shape import static_vector

__all__ = [
    "philox4x32",
    "stream_words",
    "seed_key",
    "RandomOp",
    "AdvanceState",
    "RandomDraw",
    "Multinomial",
    "Permutation",
    "Choice",
    "RowChoice",
    "advance_state",
]

_M0, _M1 = np.uint64(0xD2511F53), np.uint64(0xCD9E8D57)
_W0, _W1 = 0x9E3779B9, 0xBB67AE85
_MASK = 0xFFFFFFFF
STATE_TYPE = TensorType("uint32", (4,))


def philox4x32(counters: np.ndarray, key: tuple, rounds: int = 10) -> np.ndarray:
    """Philox 4x32 of each row of `counters` (shape (n, 4), uint32) under `key` (two words)."""
    c = np.asarray(counters, dtype=np.uint32).reshape(-1, 4)
    c0, c1, c2, c3 = (c[:, i].copy() for i in range(4))
    k0, k1 = int(key[0]) & _MASK, int(key[1]) & _MASK
    for r in range(rounds):
        if r:
            k0, k1 = (k0 + _W0) & _MASK, (k1 + _W1) & _MASK
        p0 = c0.astype(np.uint64) * _M0
        p1 = c2.astype(np.uint64) * _M1
        hi0, lo0 = (p0 >> np.uint64(32)).astype(np.uint32), p0.astype(np.uint32)
        hi1, lo1 = (p1 >> np.uint64(32)).astype(np.uint32), p1.astype(np.uint32)
        c0, c1, c2, c3 = hi1 ^ c1 ^ np.uint32(k0), lo1, hi0 ^ c3 ^ np.uint32(k1), lo0
    return np.stack([c0, c1, c2, c3], axis=1)


def stream_words(state: np.ndarray, n: int, start: int = 0) -> np.ndarray:
    """Words start .. start + n - 1 of the draw that the stream state [k0, k1, d_lo, d_hi] makes."""
    n, start = int(n), int(start)
    first, stop = start // 4, -(-(start + n) // 4)
    b = np.arange(first, max(stop, first), dtype=np.uint64)
    counters = np.empty((len(b), 4), dtype=np.uint32)
    counters[:, 0] = (b & np.uint64(_MASK)).astype(np.uint32)
    counters[:, 1] = (b >> np.uint64(32)).astype(np.uint32)
    counters[:, 2] = state[2]
    counters[:, 3] = state[3]
    skip = start - 4 * first
    return philox4x32(counters, (state[0], state[1])).reshape(-1)[skip : skip + n]


def seed_key(seed: int, stream: int) -> tuple:
    """Key of stream number `stream`: words 0, 1 of Philox((s_lo, s_hi, 0, 0), the seed's key)."""
    seed, stream = int(seed) % 2**64, int(stream) % 2**64
    counter = np.array([[stream & _MASK, stream >> 32, 0, 0]], dtype=np.uint32)
    out = philox4x32(counter, (seed & _MASK, seed >> 32))[0]
    return int(out[0]), int(out[1])


# --- words to numbers ----------------------------------------------------------------------------


def u24(w: np.ndarray) -> np.ndarray:
    """float32 uniforms in (0, 1), one word each."""
    odd = (w >> np.uint32(9)).astype(np.float32) * np.float32(2) + np.float32(1)
    return odd * np.float32(2.0**-24)


def u53(w0: np.ndarray, w1: np.ndarray) -> np.ndarray:
    """float64 uniforms in (0, 1), two words each."""
    x = (w0.astype(np.uint64) << np.uint64(20)) | (w1 >> np.uint32(12)).astype(np.uint64)
    return (x.astype(np.float64) * 2.0 + 1.0) * 2.0**-53


def u33(w: np.ndarray) -> np.ndarray:
    """float64 uniforms in (0, 1), one word each (for comparisons with a probability)."""
    return (w.astype(np.float64) * 2.0 + 1.0) * 2.0**-33


def below(w: np.ndarray, m: np.ndarray) -> np.ndarray:
    """Integers in [0, m) (1 <= m <= 2^32) by the multiply-shift (w * m) >> 32."""
    product = w.astype(np.uint64) * np.asarray(m).astype(np.uint64)
    return (product >> np.uint64(32)).astype(np.int64)


def _key64(w: np.ndarray) -> np.ndarray:
    return (w[0::2].astype(np.uint64) << np.uint64(32)) | w[1::2].astype(np.uint64)


def _uniforms(state: np.ndarray, n: int, dtype: str) -> np.ndarray:
    """n uniforms in (0, 1): u24 for float32/float16 (as float32), u53 for float64."""
    if dtype == "float64":
        w = stream_words(state, 2 * n)
        return u53(w[0::2], w[1::2])
    return u24(stream_words(state, n))


# --- log and sin/cos of 2 pi u from + - * / sqrt and bit moves only -------------------------------
# Box-Muller's float64 log, sin and cos are written out here, and step for step the same in the
# numba and CUDA kernels, because libraries round them differently (numpy's AVX-512 log differs
# from glibc's by one ulp on about 0.35% of arguments; a GPU's libm is yet another). Every step
# is an IEEE basic operation (correctly rounded everywhere, each a separate operation: never an
# FMA) or an exact bit move, a comparison or a select, so every backend gets the same bits.
# Accuracy: log within 1 ulp, sin and cos within 1.5 ulp (tests/test_normal_transform.py).
# Coefficients are exact values rounded once: 2/(2j+1) (atanh's series) and the Taylor
# coefficients (-1)^j (pi/2)^i / i! of sin(pi r / 2) and cos(pi r / 2), from 60-digit pi.

LN2_HI = float.fromhex("0x1.62e42fefa3800p-1")  # ln 2 cut to 42 bits: k * LN2_HI is exact
LN2_LO = float.fromhex("0x1.ef35793c76730p-45")  # ln 2 - LN2_HI, rounded
SQRT2 = float.fromhex("0x1.6a09e667f3bcdp+0")  # mantissas from here down are halved
# log(1 + f) = 2 atanh(s) = f - s (f - T), s = f / (2 + f), T = s^2 (2/3 + 2/5 s^2 + ... 2/21 s^18)
ATANH = tuple(float.fromhex(c) for c in (
    "0x1.5555555555555p-1", "0x1.999999999999ap-2", "0x1.2492492492492p-2",
    "0x1.c71c71c71c71cp-3", "0x1.745d1745d1746p-3", "0x1.3b13b13b13b14p-3",
    "0x1.1111111111111p-3", "0x1.e1e1e1e1e1e1ep-4", "0x1.af286bca1af28p-4",
    "0x1.8618618618618p-4"))  # fmt: skip
# sin(pi r / 2) = r + r (HALF_PI_M1 + r^2 (SIN[0] + r^2 (SIN[1] + ...))): r^3 .. r^19
HALF_PI_M1 = float.fromhex("0x1.243f6a8885a31p-1")  # pi / 2 - 1
SIN = tuple(float.fromhex(c) for c in (
    "-0x1.4abbce625be53p-1", "0x1.466bc6775aae2p-4", "-0x1.32d2cce62bd86p-8",
    "0x1.50783487ee782p-13", "-0x1.e3074fde8871fp-19", "0x1.e8f434d018d63p-25",
    "-0x1.6fadb9f155744p-31", "0x1.aaec32af93359p-38", "-0x1.8a404211f9547p-45"))  # fmt: skip
# cos(pi r / 2) = (1 - r^2) + r^2 (COS_1 + r^2 (COS[0] + r^2 (COS[1] + ...))): r^4 .. r^18
COS_1 = float.fromhex("-0x1.de9e64df22ef3p-3")  # 1 - (pi / 2)^2 / 2
COS = tuple(float.fromhex(c) for c in (
    "0x1.03c1f081b5ac4p-2", "-0x1.55d3c7e3cbffap-6", "0x1.e1f506891babbp-11",
    "-0x1.a6d1f2a204a8cp-16", "0x1.f9d38a3763cc3p-22", "-0x1.b6e24f44b128fp-28",
    "0x1.20c62c2f2d7f5p-34", "-0x1.2a0c591af8314p-41"))  # fmt: skip


def horner(x: np.ndarray, coefficients: tuple) -> np.ndarray:
    """c0 + x (c1 + x (c2 + ...)), innermost first, one rounded * and + per step."""
    p = np.full_like(x, coefficients[-1])
    for c in reversed(coefficients[:-1]):
        p = c + x * p
    return p


def log_positive(x: np.ndarray) -> np.ndarray:
    """Natural log of positive normal float64 values (within 1 ulp), the same bits everywhere.

    x = 2^k m with m in [sqrt(1/2), sqrt(2)) (exponent and mantissa from the bits), f = m - 1
    (exact), s = f / (2 + f), log x = k LN2_HI + (f + (k LN2_LO - s (f - T(s^2)))).
    """
    bits = np.asarray(x, dtype=np.float64).view(np.uint64)
    k = ((bits >> np.uint64(52)) & np.uint64(0x7FF)).astype(np.int64) - 1023
    m = ((bits & np.uint64(0xFFFFFFFFFFFFF)) | np.uint64(0x3FF0000000000000)).view(np.float64)
    big = m >= SQRT2
    m = np.where(big, m * 0.5, m)
    k = (k + big).astype(np.float64)
    f = m - 1.0
    s = f / (2.0 + f)
    s2 = s * s
    t = s2 * horner(s2, ATANH)
    return k * LN2_HI + (f + (k * LN2_LO - s * (f - t)))


def sincos_2pi(u: np.ndarray) -> tuple:
    """(sin 2 pi u, cos 2 pi u) of float64 u in [0, 1) (within 1.5 ulp), the same bits everywhere.

    x = 4 u (exact) = q + r with q an integer and r in [-1/2, 1/2] (exact), so 2 pi u =
    q pi / 2 + pi r / 2: polynomials give sin and cos of pi r / 2, and the quadrant q mod 4 swaps
    and negates them.
    """
    x = np.asarray(u, dtype=np.float64) * 4.0
    q = np.floor(x)
    r = x - q
    up = r > 0.5
    r = np.where(up, r - 1.0, r)
    q = np.where(up, q + 1.0, q).astype(np.int64) & 3
    r2 = r * r
    s = r + r * (HALF_PI_M1 + r2 * horner(r2, SIN))
    w = 1.0 - r2  # 1 - r^2 rounded; (1 - w) - r^2 is its rounding error, computed exactly
    c = w + (((1.0 - w) - r2) + r2 * (COS_1 + r2 * horner(r2, COS)))
    sin = np.where(q == 0, s, np.where(q == 1, c, np.where(q == 2, -s, -c)))
    cos = np.where(q == 0, c, np.where(q == 1, -s, np.where(q == 2, -c, s)))
    return sin, cos


def _normals(state: np.ndarray, n: int, dtype: str) -> np.ndarray:
    """n standard normals by Box-Muller in float64, rounded to `dtype`."""
    pairs = -(-n // 2)
    u = _uniforms(state, 2 * pairs, dtype).astype(np.float64)
    r = np.sqrt(-2.0 * log_positive(u[0::2]))
    sin, cos = sincos_2pi(u[1::2])
    z = np.empty(2 * pairs, dtype=np.float64)
    z[0::2], z[1::2] = r * cos, r * sin
    return z[:n].astype(dtype)


_CHUNK = 1 << 22  # elements per temporary array, to bound memory on large draws


def _category(cdf: np.ndarray, u: np.ndarray) -> np.ndarray:
    """For rows of running sums cdf (R, k) and uniforms u (R, T): the category of each trial."""
    rows, k = cdf.shape
    found = np.empty(u.shape, dtype=np.int64)
    step = max(1, _CHUNK // max(1, u.shape[1] * k))
    for r in range(0, rows, step):
        c = cdf[r : r + step]
        t = u[r : r + step] * c[:, -1:]
        found[r : r + step] = (c[:, None, :] <= t[:, :, None]).sum(axis=2)
    return np.minimum(found, k - 1)


# --- ops -----------------------------------------------------------------------------------------


def _check_state(state: TensorType, op: Op) -> None:
    if state != STATE_TYPE:
        raise TypeError(f"{type(op).__name__}: the stream state must be {STATE_TYPE}, got {state}")


def _check_size(size: TensorType, op: Op) -> None:
    if size.ndim != 1 or not is_discrete(size.dtype):
        raise TypeError(f"{type(op).__name__}: size must be an integer vector, got {size}")


def _size(size: np.ndarray) -> tuple:
    shape = tuple(int(s) for s in size)
    if any(s < 0 for s in shape):
        raise ValueError(f"random draw: negative size {shape}")
    return shape


@dataclass(frozen=True)
class RandomOp(Op):
    """Base of the draws: a pure function of the stream state; no gradient for any input."""

    def pullback(self, inputs, output, g):
        return (None,) * len(inputs)


@dataclass(frozen=True)
class AdvanceState(RandomOp):
    """The stream state with its 64-bit draw counter [d_lo, d_hi] incremented (mod 2^64)."""

    def infer_type(self, state: TensorType) -> TensorType:
        _check_state(state, self)
        return state

    def perform(self, state):
        d = (int(state[2]) | (int(state[3]) << 32)) + 1
        return np.array([state[0], state[1], d & _MASK, (d >> 32) & _MASK], dtype=np.uint32)


advance_state = AdvanceState()


def _broadcast_static(shapes: list) -> tuple:
    ndim = max((len(s) for s in shapes), default=0)
    out = []
    for axis in range(ndim):
        dims = [s[axis - ndim + len(s)] for s in shapes if axis - ndim + len(s) >= 0]
        known = [d for d in dims if d is not None and d != 1]
        if known:
            out.append(known[0])
        elif all(d == 1 for d in dims):
            out.append(1)
        else:
            out.append(None)
    return tuple(out)


def _draw_shape(op: Op, size: Var, params: list) -> tuple:
    """Static output shape: the size's entries, or the parameters' broadcast shape for size ()."""
    if size.type.shape[0] == 0:
        return _broadcast_static([p.type.shape for p in params])
    if size.type.shape[0] is None:
        return (None,) * op.ndim
    static = static_vector(size)
    for p in params:
        if p.ndim > len(static):
            raise ValueError(
                f"{type(op).__name__}: parameter {p} has {p.ndim} dimensions, more than the "
                f"size {static}"
            )
        for d, s in zip(reversed(p.type.shape), reversed(static)):
            if d not in (None, 1) and s is not None and d != s:
                raise ValueError(
                    f"{type(op).__name__}: parameter {p} of shape {p.type.shape} does not "
                    f"broadcast to the size {tuple(static)}"
                )
    return tuple(None if s is None or s < 0 else s for s in static)


def _run_shape(op: Op, size: np.ndarray, params: tuple) -> tuple:
    shape = _size(size)
    if not shape and any(np.ndim(p) for p in params):
        return np.broadcast_shapes(*[np.shape(p) for p in params])
    try:
        fits = np.broadcast_shapes(shape, *[np.shape(p) for p in params]) == shape
    except ValueError:
        fits = False
    if not fits:
        shapes = ", ".join(str(np.shape(p)) for p in params)
        raise ValueError(f"{op.dist}: parameters of shapes {shapes} do not broadcast to {shape}")
    return shape


@dataclass(frozen=True)
class RandomDraw(RandomOp):
    """An elementwise distribution (uniform, normal, binomial, integers) of (state, size, a, b)."""

    dist: str
    dtype: str
    ndim: int

    def make_type(self, inputs) -> TensorType:
        state, size, *params = inputs
        _check_state(state.type, self)
        _check_size(size.type, self)
        if self.dist not in ("uniform", "normal", "binomial", "integers"):
            raise ValueError(f"RandomDraw: unknown distribution {self.dist!r}")
        floats = ("float16", "float32", "float64")
        if self.dist in ("uniform", "normal") and self.dtype not in floats:
            raise TypeError(f"{self.dist}: dtype must be a float type, got {self.dtype!r}")
        shape = _draw_shape(self, size, params)
        if len(shape) != self.ndim:
            raise ValueError(
                f"{self.dist}: expected {self.ndim} dimensions, the size and parameters give "
                f"{len(shape)}"
            )
        return TensorType(self.dtype, shape)

    def perform(self, state, size, a, b):
        shape = _run_shape(self, size, (a, b))
        n = int(np.prod(shape, dtype=np.int64))
        if self.dist == "uniform":
            work = "float32" if self.dtype == "float16" else self.dtype
            u = _uniforms(state, n, self.dtype).astype(work).reshape(shape)
            low, high = np.asarray(a, dtype=work), np.asarray(b, dtype=work)
            return (low + (high - low) * u).astype(self.dtype)
        if self.dist == "normal":
            z = _normals(state, n, self.dtype).reshape(shape)
            avg, std = np.asarray(a, dtype=self.dtype), np.asarray(b, dtype=self.dtype)
            return (avg + std * z).astype(self.dtype)
        if self.dist == "binomial":
            return self._binomial(state, shape, n, a, b)
        return self._integers(state, shape, n, a, b)

    def _binomial(self, state, shape, n, trials, p):
        trials = np.broadcast_to(np.asarray(trials), shape).reshape(n).astype(np.int64)
        p = np.broadcast_to(np.asarray(p, dtype=np.float64), shape).reshape(n)
        if n and trials.min() < 0:
            raise ValueError(f"binomial: n must be >= 0, got {trials.min()}")
        if n and (p.min() < 0 or p.max() > 1 or np.isnan(p).any()):
            raise ValueError("binomial: p must lie in [0, 1]")
        most = int(trials.max()) if n else 0
        out = np.zeros(n, dtype=np.int64)
        step = max(1, _CHUNK // max(1, most))
        for e in range(0, n if most else 0, step):
            part = slice(e, min(n, e + step))
            count = part.stop - e
            u = u33(stream_words(state, count * most, start=e * most)).reshape(count, most)
            hits = (u < p[part, None]) & (np.arange(most)[None, :] < trials[part, None])
            out[part] = hits.sum(axis=1)
        return out.reshape(shape).astype(self.dtype)

    def _integers(self, state, shape, n, low, high):
        low = np.broadcast_to(np.asarray(low, dtype=np.int64), shape).reshape(n)
        span = np.broadcast_to(np.asarray(high, dtype=np.int64), shape).reshape(n) - low + 1
        if n and (span.min() < 1 or span.max() > 2**32):
            raise ValueError(
                f"random_integers: need low <= high and high - low < 2**32, got ranges from "
                f"{span.min() - 1} to {span.max() - 1}"
            )
        return (low + below(stream_words(state, n), span)).reshape(shape).astype(self.dtype)


@dataclass(frozen=True)
class Multinomial(RandomOp):
    """Counts of n trials over pvals' last axis: (state, size, n, pvals) -> shape size + (k,)."""

    dtype: str
    ndim: int

    def make_type(self, inputs) -> TensorType:
        state, size, n, pvals = inputs
        _check_state(state.type, self)
        _check_size(size.type, self)
        if pvals.ndim < 1:
            raise TypeError(f"multinomial: pvals needs at least one dimension, got {pvals.type}")
        k = pvals.type.shape[-1]
        if size.type.shape[0] == 0:
            batch = _broadcast_static([n.type.shape, pvals.type.shape[:-1]])
        elif size.type.shape[0] is None:
            batch = (None,) * (self.ndim - 1)
        else:
            batch = tuple(None if s is None or s < 0 else s for s in static_vector(size))
        if len(batch) + 1 != self.ndim:
            raise ValueError(f"multinomial: expected {self.ndim} dimensions, got {len(batch) + 1}")
        return TensorType(self.dtype, batch + (k,))

    def perform(self, state, size, n, pvals):
        k = pvals.shape[-1]
        batch = _size(size) or np.broadcast_shapes(np.shape(n), pvals.shape[:-1])
        rows = int(np.prod(batch, dtype=np.int64))
        pvals = np.broadcast_to(np.asarray(pvals, dtype=np.float64), batch + (k,)).reshape(rows, k)
        trials = np.broadcast_to(np.asarray(n, dtype=np.int64), batch).reshape(rows)
        if rows and (pvals.min() < 0 or trials.min() < 0):
            raise ValueError("multinomial: pvals and n must be >= 0")
        most = int(trials.max()) if rows else 0
        w = stream_words(state, 2 * rows * most)
        u = u53(w[0::2], w[1::2]).reshape(rows, most)
        category = _category(np.cumsum(pvals, axis=1), u)
        used = np.arange(most)[None, :] < trials[:, None]
        counts = np.zeros((rows, k), dtype=np.int64)
        row_of_trial = np.repeat(np.arange(rows), most)
        np.add.at(counts, (row_of_trial, category.reshape(-1)), used.reshape(-1))
        return counts.reshape(batch + (k,)).astype(self.dtype)


@dataclass(frozen=True)
class Permutation(RandomOp):
    """Random permutations of range(n): inputs (state, size, n); shape size + (n,)."""

    dtype: str
    ndim: int

    def make_type(self, inputs) -> TensorType:
        state, size, n = inputs
        _check_state(state.type, self)
        _check_size(size.type, self)
        if n.ndim != 0 or not is_discrete(n.dtype):
            raise TypeError(f"permutation: n must be an integer scalar, got {n.type}")
        from .shape import static_int

        batch = static_vector(size) if size.type.shape[0] is not None else [None] * (self.ndim - 1)
        batch = tuple(None if s is None or s < 0 else s for s in batch)
        if len(batch) + 1 != self.ndim:
            raise ValueError(f"permutation: expected {self.ndim} dimensions, got {len(batch) + 1}")
        return TensorType(self.dtype, batch + (static_int(n),))

    def perform(self, state, size, n):
        batch, n = _size(size), int(n)
        if n < 0:
            raise ValueError(f"permutation: n must be >= 0, got {n}")
        rows = int(np.prod(batch, dtype=np.int64))
        keys = _key64(stream_words(state, 2 * rows * n)).reshape(rows, n)
        return np.argsort(keys, axis=1, kind="stable").reshape(batch + (n,)).astype(self.dtype)


@dataclass(frozen=True)
class Choice(RandomOp):
    """Draws from range(n) or the entries of a vector: inputs (state, size, a[, p]); shape size."""

    replace: bool
    weighted: bool
    dtype: str
    ndim: int

    def make_type(self, inputs) -> TensorType:
        state, size, a, *p = inputs
        _check_state(state.type, self)
        _check_size(size.type, self)
        if len(p) != int(self.weighted):
            raise TypeError(f"choice: expected {3 + self.weighted} inputs, got {len(inputs)}")
        if a.ndim > 1 or (a.ndim == 0 and not is_discrete(a.dtype)):
            raise TypeError(f"choice: a must be an integer scalar or a vector, got {a.type}")
        if p and p[0].ndim != 1:
            raise TypeError(f"choice: p must be a vector, got {p[0].type}")
        shape = static_vector(size) if size.type.shape[0] is not None else [None] * self.ndim
        if len(shape) != self.ndim:
            raise ValueError(f"choice: expected {self.ndim} dimensions, got {len(shape)}")
        dtype = a.dtype if a.ndim == 1 else self.dtype
        return TensorType(dtype, tuple(None if s is None or s < 0 else s for s in shape))

    def perform(self, state, size, a, p=None):
        shape = _size(size)
        m = int(np.prod(shape, dtype=np.int64))
        n = int(a) if np.ndim(a) == 0 else len(a)
        if n <= 0 and m:
            raise ValueError(f"choice: a must be positive (or a non-empty vector), got {n}")
        if p is not None:
            p = np.asarray(p, dtype=np.float64)
            if len(p) != n:
                raise ValueError(f"choice: p has {len(p)} entries but a has {n}")
            if p.min(initial=0) < 0:
                raise ValueError("choice: probabilities p must be >= 0")
        if not self.replace and m > n:
            raise ValueError(
                f"choice: cannot take {m} samples without replacement from {n} entries"
            )
        if self.replace and p is None:
            index = below(stream_words(state, m), n)
        elif self.replace:
            w = stream_words(state, 2 * m)
            index = _category(np.cumsum(p)[None, :], u53(w[0::2], w[1::2])[None, :])[0]
        elif p is None:
            index = np.argsort(_key64(stream_words(state, 2 * n)), kind="stable")[:m]
        else:
            if np.count_nonzero(p) < m:
                raise ValueError(
                    f"choice: fewer non-zero entries in p than the {m} samples asked for"
                )
            w = stream_words(state, 2 * n)
            with np.errstate(divide="ignore"):
                race = -np.log(u53(w[0::2], w[1::2])) / p
            index = np.argsort(race, kind="stable")[:m]
        index = index.reshape(shape)
        if np.ndim(a) == 1:
            return np.asarray(a)[index]
        return index.astype(self.dtype)


@dataclass(frozen=True)
class RowChoice(RandomOp):
    """m category indices per row of a probability matrix p: inputs (state, m, p); shape (rows, m).

    Row r without replacement: the m smallest of -log(u53(words 2(r k + i), 2(r k + i) + 1)) / p_ri;
    with replacement: sample t as one multinomial trial on words 2(r m + t), 2(r m + t) + 1.
    """

    replace: bool
    dtype: str

    def make_type(self, inputs) -> TensorType:
        state, m, p = inputs
        _check_state(state.type, self)
        if m.ndim != 0 or not is_discrete(m.dtype):
            raise TypeError(f"choice: size must be an integer scalar, got {m.type}")
        if p.ndim != 2:
            raise TypeError(
                f"choice: p must be a matrix (one row of probabilities per draw), got {p.type}"
            )
        from .shape import static_int

        return TensorType(self.dtype, (p.type.shape[0], static_int(m)))

    def perform(self, state, m, p):
        m, (rows, k) = int(m), p.shape
        p = np.asarray(p, dtype=np.float64)
        if m < 0:
            raise ValueError(f"choice: size must be >= 0, got {m}")
        if p.size and p.min() < 0:
            raise ValueError("choice: probabilities p must be >= 0")
        if self.replace:
            w = stream_words(state, 2 * rows * m)
            index = _category(np.cumsum(p, axis=1), u53(w[0::2], w[1::2]).reshape(rows, m))
            return index.astype(self.dtype)
        if rows and (np.count_nonzero(p, axis=1).min() < m):
            raise ValueError(
                f"choice: a row of p has fewer non-zero entries than the {m} samples asked for"
            )
        w = stream_words(state, 2 * rows * k)
        with np.errstate(divide="ignore"):
            race = -np.log(u53(w[0::2], w[1::2]).reshape(rows, k)) / p
        return np.argsort(race, axis=1, kind="stable")[:, :m].astype(self.dtype)


def check_dtype(dtype: object, what: str) -> str:
    """A dtype name for a draw, with the draw named in the message."""
    try:
        return as_dtype(dtype)
    except TypeError as error:
        raise TypeError(f"{what}: {error}") from None
