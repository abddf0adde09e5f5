"""Scalar helper functions that generated elementwise loops call (numba, inlined into the loop).

Each follows its numpy / scipy.special counterpart: NaN propagates, infinities map as they do there.
The special functions scipy provides but numba's `math` lacks are computed here in float64:
erfinv and erfcinv by Newton steps on `math.erf` / `math.erfc` (accurate to a few ulps), erfcx by
the direct formula below x = 25 and its asymptotic series above, polygamma by the recurrence up to
x >= 20 and the asymptotic (Bernoulli) series there.
"""

from __future__ import annotations

import math

import numba
import numpy as np
from llvmlite import ir
from numba.core import types
from numba.extending import intrinsic

_inline = numba.njit(cache=True, inline="always", error_model="numpy")
_njit = numba.njit(cache=True, error_model="numpy")

_TWO_OVER_SQRT_PI = 2.0 / math.sqrt(math.pi)
_SQRT_PI = math.sqrt(math.pi)
_LOG2 = math.log(2.0)
# Bernoulli numbers B2, B4, ..., B20
_BERNOULLI = (
    1.0 / 6, -1.0 / 30, 1.0 / 42, -1.0 / 30, 5.0 / 66, -691.0 / 2730, 7.0 / 6, -3617.0 / 510,
    43867.0 / 798, -174611.0 / 330,
)  # fmt: skip


@_inline
def maximum(a, b):
    """numpy's maximum: NaN when either is NaN."""
    return a if (a > b or a != a) else b


@_inline
def minimum(a, b):
    """numpy's minimum: NaN when either is NaN."""
    return a if (a < b or a != a) else b


@_inline
def logaddexp(x, y):
    """log(exp(x) + exp(y)) without overflow, as numpy's."""
    if x == y:
        return x + _LOG2
    d = x - y
    if d > 0:
        return x + math.log1p(math.exp(-d))
    if d <= 0:
        return y + math.log1p(math.exp(d))
    return d  # NaN


@_inline
def sigmoid(x):
    """1 / (1 + exp(-x)) without overflow."""
    e = math.exp(-abs(x))
    return 1.0 / (1.0 + e) if x >= 0 else e / (1.0 + e)


@_inline
def softplus(x):
    """log(1 + exp(x)) without overflow."""
    return math.log1p(math.exp(-abs(x))) + maximum(x, 0.0)


@_njit
def erfinv(y):
    """The inverse of erf on [-1, 1] (float64)."""
    if y != y or y < -1.0 or y > 1.0:
        return math.nan
    if y == 1.0:
        return math.inf
    if y == -1.0:
        return -math.inf
    if y == 0.0:
        return y
    # a rough start (Winitzki), then Newton steps on erf, accurate to a few ulps
    a = 0.147
    ln = math.log((1.0 - y) * (1.0 + y))
    t = 2.0 / (math.pi * a) + ln / 2.0
    x = math.copysign(math.sqrt(math.sqrt(t * t - ln / a) - t), y)
    for _ in range(6):
        err = math.erf(x) - y
        step = err / (_TWO_OVER_SQRT_PI * math.exp(-x * x))
        x -= step
        if abs(step) <= 1e-16 * abs(x):
            break
    return x


@_njit
def erfcx(x):
    """exp(x**2) * erfc(x) (float64)."""
    if x < 25.0:
        return math.exp(x * x) * math.erfc(x)
    if x != x:
        return x
    z = 1.0 / (x * x)
    # 1 - 1/(2x^2) + 3/(2x^2)^2 - 15/(2x^2)^3 + ..., in Horner form
    h = z / 2
    series = 1.0 - h * (1.0 - 3 * h * (1.0 - 5 * h * (1.0 - 7 * h * (1.0 - 9 * h))))
    return series / (x * _SQRT_PI)


@_njit
def erfcinv(y):
    """The inverse of erfc on [0, 2] (float64)."""
    if y != y or y < 0.0 or y > 2.0:
        return math.nan
    if y == 0.0:
        return math.inf
    if y == 2.0:
        return -math.inf
    if y > 1.0:  # erfcinv(y) = -erfcinv(2 - y)
        return -_erfcinv_low(2.0 - y)
    return _erfcinv_low(y)


@_njit
def _erfcinv_low(y):
    """erfcinv on (0, 1]."""
    if y > 0.1:
        return _erfc_newton(y, erfinv(1.0 - y))
    # small y: Newton on log(erfc(x)) = log(erfcx(x)) - x*x, which is smooth and nearly quadratic
    ly = math.log(y)
    x = math.sqrt(-ly)
    for _ in range(30):
        g = math.log(erfcx(x)) - x * x - ly
        slope = -_TWO_OVER_SQRT_PI / erfcx(x)
        step = g / slope
        x -= step
        if abs(step) <= 1e-16 * x:
            break
    return x


@_njit
def _erfc_newton(y, x):
    for _ in range(6):
        err = math.erfc(x) - y
        step = err / (-_TWO_OVER_SQRT_PI * math.exp(-x * x))
        x -= step
        if abs(step) <= 1e-16 * abs(x):
            break
    return x


@_njit
def polygamma(n, x):
    """The n-th derivative of digamma at x (float64), as scipy.special.polygamma."""
    if x != x:
        return x
    if x <= 0.0 and x == np.floor(x):
        return math.nan if n == 0 else math.inf
    if n == 0:
        return _digamma(x)
    sign = 1.0 if n % 2 == 1 else -1.0  # (-1) ** (n + 1)
    factorial = math.gamma(n + 1.0)
    total = 0.0
    while x < 20.0 + n:  # psi_n(x) = psi_n(x + 1) + (-1)**(n+1) n! / x**(n+1)
        total += sign * factorial / x ** (n + 1)
        x += 1.0
    series = math.gamma(n * 1.0) / x**n + factorial / (2.0 * x ** (n + 1))
    for k in range(1, 11):
        term = _BERNOULLI[k - 1] * math.exp(math.lgamma(2.0 * k + n) - math.lgamma(2.0 * k + 1.0))
        series += term / x ** (2 * k + n)
    return total + sign * series


@_njit
def _digamma(x):
    total = 0.0
    if x < 0.0:  # reflection: psi(1 - x) - psi(x) = pi / tan(pi x)
        total -= math.pi / math.tan(math.pi * x)
        x = 1.0 - x
    while x < 10.0:
        total -= 1.0 / x
        x += 1.0
    z = 1.0 / (x * x)
    series = 0.0
    power = z
    for k in range(1, 11):
        series += _BERNOULLI[k - 1] / (2 * k) * power
        power *= z
    return total + math.log(x) - 0.5 / x - series


@_inline
def sign(x):
    """numpy's sign: -1, 0 or 1 (NaN for NaN)."""
    if x > 0:
        return 1
    if x < 0:
        return -1
    return x  # 0 or NaN keeps its value


@_inline
def round_half_away(x):
    """x rounded to the nearest integer, ties away from zero."""
    return math.copysign(np.floor(abs(x) + 0.5), x) if x == x else x


# --- float32 approximations that vectorize (only arithmetic and selects: no libm calls) ----------
@intrinsic
def _muladd(typingctx, a, b, c):
    """a * b + c in float32 as llvm.fmuladd: one fused multiply-add where the CPU has FMA (one
    rounding instead of two), a multiply and an add elsewhere; the polynomials below are chains
    of these (a third faster in a vectorized loop here, measured)."""
    sig = types.float32(types.float32, types.float32, types.float32)

    def codegen(context, builder, signature, args):
        f32 = ir.FloatType()
        fn = builder.module.declare_intrinsic("llvm.fmuladd", [f32], ir.FunctionType(f32, [f32] * 3))
        return builder.call(fn, args)

    return sig, codegen


# tanh: x * P(x^2) / Q(x^2) on |x| <= 7.905 (clamped beyond, where tanh rounds to within 3e-7 of
# +-1); coefficients fitted here by least squares on the relative error (5e-9 in float64).
# Measured in float32 against float64 numpy: at most 5 ulps (absolute error <= 3.1e-7).
_TANH_CLAMP = 7.90531110763549805
_TP = (
    9.9999999932058337e-01, 1.3133103959850909e-01, 3.1592728985975114e-03, 1.1751151730813748e-05,
    -2.2799943981937371e-08, 6.6345161108608401e-11, -1.2386972550578750e-13,
)  # fmt: skip
_TQ = (1.0, 4.6466436169492992e-01, 2.4714081361870432e-02, 2.6276701141579378e-04)


@_inline
def tanh_f32(x):
    """tanh in float32 arithmetic (see above: <= 5 ulps; NaN and signed zeros preserved)."""
    c = np.float32(_TANH_CLAMP)
    y = x if x > -c else -c  # plain compares (not NaN-aware) keep the loop vectorizable;
    y = y if y < c else c  # a NaN is restored by the last select
    s = y * y
    p = np.float32(_TP[6])
    p = _muladd(p, s, np.float32(_TP[5]))
    p = _muladd(p, s, np.float32(_TP[4]))
    p = _muladd(p, s, np.float32(_TP[3]))
    p = _muladd(p, s, np.float32(_TP[2]))
    p = _muladd(p, s, np.float32(_TP[1]))
    p = _muladd(p, s, np.float32(_TP[0]))
    q = np.float32(_TQ[3])
    q = _muladd(q, s, np.float32(_TQ[2]))
    q = _muladd(q, s, np.float32(_TQ[1]))
    q = _muladd(q, s, np.float32(_TQ[0]))
    return y * p / q if x == x else x


# exp: n = rint(x / ln 2), r = x - n ln 2 in two parts (|r| <= 0.347), e^r by its degree-7 Taylor
# polynomial (truncation 5e-9 relative), times 2^n applied in two halves made from exponent bits
# (so 2^128 and gradual underflow to subnormals both come out right). Overflow gives inf,
# underflow 0. Measured against float64 numpy: at most 2 ulps on normal results.
_LN2_HI = 0.693359375
_LN2_LO = -2.12194440e-4
_LOG2E = 1.44269504088896341


@intrinsic
def _float32_from_bits(typingctx, bits):
    """The float32 whose bit pattern is the int32 `bits` (one LLVM bitcast)."""
    sig = types.float32(types.int32)

    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], ir.FloatType())

    return sig, codegen


@_inline
def _pow2(k):
    """2 ** k as a float32 for an integer -126 <= k <= 127, made from its exponent field (a
    bitcast, not a chain of selects: the loops around it vectorize)."""
    return _float32_from_bits(np.int32((k + 127) << 23))


@_inline
def _exp_parts(y):
    """(e^r, n) with y = n ln 2 + r, n = rint(y / ln 2): exp(y) = e^r * 2^n (see above)."""
    # round to nearest by adding and subtracting 1.5 * 2**23 (exact in float32; no libm rint call)
    n = (y * np.float32(_LOG2E) + np.float32(12582912.0)) - np.float32(12582912.0)
    r = (y - n * np.float32(_LN2_HI)) - n * np.float32(_LN2_LO)
    p = np.float32(1.0 / 5040.0)
    p = _muladd(p, r, np.float32(1.0 / 720.0))
    p = _muladd(p, r, np.float32(1.0 / 120.0))
    p = _muladd(p, r, np.float32(1.0 / 24.0))
    p = _muladd(p, r, np.float32(1.0 / 6.0))
    p = _muladd(p, r, np.float32(0.5))
    p = _muladd(p, r, np.float32(1.0))
    p = _muladd(p, r, np.float32(1.0))
    return p, np.int32(n)


@_inline
def exp_f32(x):
    """exp in float32 arithmetic (see above)."""
    y = x if x > np.float32(-104.0) else np.float32(-104.0)
    y = y if y < np.float32(89.0) else np.float32(89.0)
    p, k = _exp_parts(y)
    a = k if k >= 0 else -k
    half = a >> 1
    rest = a - half
    # 2^n in two halves (each within the float32 exponent range), so 2^128 and gradual underflow
    # to subnormals come out right; p * 2^-h is p / 2^h exactly (both correctly rounded)
    s1 = _pow2(half if k >= 0 else -half)
    s2 = _pow2(rest if k >= 0 else -rest)
    value = (p * s1) * s2
    return value if x == x else x


@_inline
def _exp_large_f32(x):
    """exp_f32 where only results above 2^-126 matter (1 + exp(x) in a sigmoid): x clamped to
    [-87.3, 89], 2^n made once from exponent bits as 2^(n-1) * 2 (2^128 overflows to inf as it
    should; below -87.3 the result is 0, which leaves 1 + exp(x) = 1 unchanged). Equal to exp_f32
    above 2^-126 and half its cost: no two-halves scaling for gradual underflow."""
    y = x if x > np.float32(-87.3) else np.float32(-87.3)
    y = y if y < np.float32(89.0) else np.float32(89.0)
    p, n = _exp_parts(y)
    return (p * _pow2(n - np.int32(1))) * np.float32(2.0)


@_inline
def sigmoid_f32(x):
    """1 / (1 + exp(-x)) in float32 arithmetic: a few ulps (0 below x = -88.7, where exp(-x)
    overflows; the subnormal results above it as the division gives them)."""
    value = np.float32(1.0) / (np.float32(1.0) + _exp_large_f32(-x))
    return value if x == x else x
