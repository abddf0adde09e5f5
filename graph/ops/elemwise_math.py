"""Unary and binary math ops of the elementwise family: exp/log, trig, rounding, special, complex.

Imported (and re-exported) by `elemwise.py`; import names from there, not from this module.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from ..var import Var, as_tensor_variable
from .elemwise import Elemwise, cast, neg, real_dtype, upcast, upgrade_to_float

_SQRT_PI = math.sqrt(math.pi)


def _special(name: str):
    """scipy.special's function, imported on first use so `import theanine` stays light."""
    import scipy.special

    return getattr(scipy.special, name)


# --- signs, powers, exponentials and logarithms --------------------------------------------------


@dataclass(frozen=True)
class Abs(Elemwise):
    """|x|; complex inputs give their real magnitude. Gradient sgn(x) (0 at 0, as Theano)."""

    nin: ClassVar[int] = 1
    fn: ClassVar = np.abs

    def output_dtype(self, *dtypes: str) -> str:
        return real_dtype(upcast(*dtypes))

    def pullback(self, inputs, output, g):
        (x,) = inputs
        if x.dtype.startswith("complex"):
            return (g * x / output,)
        return (g * sgn(x),)


@dataclass(frozen=True)
class Sgn(Elemwise):
    """The sign of x: -1, 0 or 1 in x's dtype; no gradient."""

    nin: ClassVar[int] = 1
    fn: ClassVar = np.sign

    def pullback(self, inputs, output, g):
        return (None,)


@dataclass(frozen=True)
class Sqr(Elemwise):
    """x * x."""

    nin: ClassVar[int] = 1
    fn: ClassVar = np.square

    def pullback(self, inputs, output, g):
        return (g * 2 * inputs[0],)


@dataclass(frozen=True)
class Sqrt(Elemwise):
    """Square root."""

    nin: ClassVar[int] = 1
    float_only: ClassVar[bool] = True
    fn: ClassVar = np.sqrt

    def pullback(self, inputs, output, g):
        return (g / (output * 2),)


@dataclass(frozen=True)
class Reciprocal(Elemwise):
    """1 / x (Theano's `inv`)."""

    nin: ClassVar[int] = 1
    float_only: ClassVar[bool] = True
    fn: ClassVar = np.reciprocal

    def pullback(self, inputs, output, g):
        return (neg(g) * sqr(output),)


@dataclass(frozen=True)
class Exp(Elemwise):
    """e ** x."""

    nin: ClassVar[int] = 1
    float_only: ClassVar[bool] = True
    fn: ClassVar = np.exp

    def pullback(self, inputs, output, g):
        return (g * output,)


@dataclass(frozen=True)
class Exp2(Elemwise):
    """2 ** x."""

    nin: ClassVar[int] = 1
    float_only: ClassVar[bool] = True
    fn: ClassVar = np.exp2

    def pullback(self, inputs, output, g):
        return (g * output * math.log(2.0),)


@dataclass(frozen=True)
class Expm1(Elemwise):
    """exp(x) - 1, accurate for small x."""

    nin: ClassVar[int] = 1
    float_only: ClassVar[bool] = True
    fn: ClassVar = np.expm1

    def pullback(self, inputs, output, g):
        return (g * (output + 1),)


@dataclass(frozen=True)
class Log(Elemwise):
    """Natural logarithm."""

    nin: ClassVar[int] = 1
    float_only: ClassVar[bool] = True
    fn: ClassVar = np.log

    def pullback(self, inputs, output, g):
        return (g / inputs[0],)


@dataclass(frozen=True)
class Log2(Elemwise):
    """Base-2 logarithm."""

    nin: ClassVar[int] = 1
    float_only: ClassVar[bool] = True
    fn: ClassVar = np.log2

    def pullback(self, inputs, output, g):
        return (g / (inputs[0] * math.log(2.0)),)


@dataclass(frozen=True)
class Log10(Elemwise):
    """Base-10 logarithm."""

    nin: ClassVar[int] = 1
    float_only: ClassVar[bool] = True
    fn: ClassVar = np.log10

    def pullback(self, inputs, output, g):
        return (g / (inputs[0] * math.log(10.0)),)


@dataclass(frozen=True)
class Log1p(Elemwise):
    """log(1 + x), accurate for small x."""

    nin: ClassVar[int] = 1
    float_only: ClassVar[bool] = True
    fn: ClassVar = np.log1p

    def pullback(self, inputs, output, g):
        return (g / (inputs[0] + 1),)


@dataclass(frozen=True)
class LogAddExp(Elemwise):
    """log(exp(x) + exp(y)) without overflow."""

    float_only: ClassVar[bool] = True
    fn: ClassVar = np.logaddexp

    def pullback(self, inputs, output, g):
        x, y = inputs
        return (g * exp(x - output), g * exp(y - output))


# --- trigonometric and hyperbolic ----------------------------------------------------------------


@dataclass(frozen=True)
class Sin(Elemwise):
    """Sine."""

    nin: ClassVar[int] = 1
    float_only: ClassVar[bool] = True
    fn: ClassVar = np.sin

    def pullback(self, inputs, output, g):
        return (g * cos(inputs[0]),)


@dataclass(frozen=True)
class Cos(Elemwise):
    """Cosine."""

    nin: ClassVar[int] = 1
    float_only: ClassVar[bool] = True
    fn: ClassVar = np.cos

    def pullback(self, inputs, output, g):
        return (neg(g) * sin(inputs[0]),)


@dataclass(frozen=True)
class Tan(Elemwise):
    """Tangent."""

    nin: ClassVar[int] = 1
    float_only: ClassVar[bool] = True
    fn: ClassVar = np.tan

    def pullback(self, inputs, output, g):
        return (g * (sqr(output) + 1),)


@dataclass(frozen=True)
class ArcSin(Elemwise):
    """Inverse sine."""

    nin: ClassVar[int] = 1
    float_only: ClassVar[bool] = True
    fn: ClassVar = np.arcsin

    def pullback(self, inputs, output, g):
        return (g / sqrt(1 - sqr(inputs[0])),)


@dataclass(frozen=True)
class ArcCos(Elemwise):
    """Inverse cosine."""

    nin: ClassVar[int] = 1
    float_only: ClassVar[bool] = True
    fn: ClassVar = np.arccos

    def pullback(self, inputs, output, g):
        return (neg(g) / sqrt(1 - sqr(inputs[0])),)


@dataclass(frozen=True)
class ArcTan(Elemwise):
    """Inverse tangent."""

    nin: ClassVar[int] = 1
    float_only: ClassVar[bool] = True
    fn: ClassVar = np.arctan

    def pullback(self, inputs, output, g):
        return (g / (sqr(inputs[0]) + 1),)


@dataclass(frozen=True)
class ArcTan2(Elemwise):
    """arctan(y / x) in the right quadrant; called as arctan2(y, x)."""

    float_only: ClassVar[bool] = True
    fn: ClassVar = np.arctan2

    def pullback(self, inputs, output, g):
        y, x = inputs
        r2 = sqr(x) + sqr(y)
        return (g * x / r2, neg(g) * y / r2)


@dataclass(frozen=True)
class Sinh(Elemwise):
    """Hyperbolic sine."""

    nin: ClassVar[int] = 1
    float_only: ClassVar[bool] = True
    fn: ClassVar = np.sinh

    def pullback(self, inputs, output, g):
        return (g * cosh(inputs[0]),)


@dataclass(frozen=True)
class Cosh(Elemwise):
    """Hyperbolic cosine."""

    nin: ClassVar[int] = 1
    float_only: ClassVar[bool] = True
    fn: ClassVar = np.cosh

    def pullback(self, inputs, output, g):
        return (g * sinh(inputs[0]),)


@dataclass(frozen=True)
class Tanh(Elemwise):
    """Hyperbolic tangent."""

    nin: ClassVar[int] = 1
    float_only: ClassVar[bool] = True
    fn: ClassVar = np.tanh

    def pullback(self, inputs, output, g):
        return (g * (1 - sqr(output)),)


@dataclass(frozen=True)
class ArcSinh(Elemwise):
    """Inverse hyperbolic sine."""

    nin: ClassVar[int] = 1
    float_only: ClassVar[bool] = True
    fn: ClassVar = np.arcsinh

    def pullback(self, inputs, output, g):
        return (g / sqrt(sqr(inputs[0]) + 1),)


@dataclass(frozen=True)
class ArcCosh(Elemwise):
    """Inverse hyperbolic cosine (x >= 1)."""

    nin: ClassVar[int] = 1
    float_only: ClassVar[bool] = True
    fn: ClassVar = np.arccosh

    def pullback(self, inputs, output, g):
        return (g / sqrt(sqr(inputs[0]) - 1),)


@dataclass(frozen=True)
class ArcTanh(Elemwise):
    """Inverse hyperbolic tangent (|x| < 1)."""

    nin: ClassVar[int] = 1
    float_only: ClassVar[bool] = True
    fn: ClassVar = np.arctanh

    def pullback(self, inputs, output, g):
        return (g / (1 - sqr(inputs[0])),)


@dataclass(frozen=True)
class Deg2Rad(Elemwise):
    """Degrees to radians."""

    nin: ClassVar[int] = 1
    float_only: ClassVar[bool] = True
    fn: ClassVar = np.deg2rad

    def pullback(self, inputs, output, g):
        return (g * (math.pi / 180.0),)


@dataclass(frozen=True)
class Rad2Deg(Elemwise):
    """Radians to degrees."""

    nin: ClassVar[int] = 1
    float_only: ClassVar[bool] = True
    fn: ClassVar = np.rad2deg

    def pullback(self, inputs, output, g):
        return (g * (180.0 / math.pi),)


# --- rounding: integers keep their dtype (numpy 2); zero gradient ---------------------------------


@dataclass(frozen=True)
class Floor(Elemwise):
    """The largest integer <= x."""

    nin: ClassVar[int] = 1
    fn: ClassVar = np.floor

    def pullback(self, inputs, output, g):
        return (None,)


@dataclass(frozen=True)
class Ceil(Elemwise):
    """The smallest integer >= x."""

    nin: ClassVar[int] = 1
    fn: ClassVar = np.ceil

    def pullback(self, inputs, output, g):
        return (None,)


@dataclass(frozen=True)
class Trunc(Elemwise):
    """x rounded toward zero."""

    nin: ClassVar[int] = 1
    fn: ClassVar = np.trunc

    def pullback(self, inputs, output, g):
        return (None,)


@dataclass(frozen=True)
class Round(Elemwise):
    """x rounded to the nearest integer; `mode`: 'half_to_even' (numpy) or 'half_away_from_zero'."""

    mode: str = "half_to_even"
    nin: ClassVar[int] = 1

    def impl(self, x):
        if self.mode == "half_to_even" or x.dtype.kind in "biu":
            return np.round(x)
        return np.sign(x) * np.floor(np.abs(x) + 0.5)

    def pullback(self, inputs, output, g):
        return (None,)


_ROUND_MODES = ("half_to_even", "half_away_from_zero")


def round_(a, mode: str | None = None) -> Var:
    """Round to the nearest integer; ties to even by default (numpy's and Theano 1.0's default)."""
    mode = "half_to_even" if mode is None else mode
    if mode not in _ROUND_MODES:
        raise ValueError(f"round: mode must be one of {_ROUND_MODES}, got {mode!r}")
    return Round(mode)(a)


def round_half_to_even(a) -> Var:
    """Round, ties to even."""
    return round_(a, "half_to_even")


def round_half_away_from_zero(a) -> Var:
    """Round, ties away from zero."""
    return round_(a, "half_away_from_zero")


def iround(a, mode: str | None = None) -> Var:
    """round(a, mode) as int64."""
    return cast(round_(a, mode), "int64")


# --- special functions (scipy.special) ------------------------------------------------------------


@dataclass(frozen=True)
class Erf(Elemwise):
    """The error function."""

    nin: ClassVar[int] = 1
    float_only: ClassVar[bool] = True

    def impl(self, x):
        return _special("erf")(x)

    def pullback(self, inputs, output, g):
        return (g * (2 / _SQRT_PI) * exp(neg(sqr(inputs[0]))),)


@dataclass(frozen=True)
class Erfc(Elemwise):
    """1 - erf(x)."""

    nin: ClassVar[int] = 1
    float_only: ClassVar[bool] = True

    def impl(self, x):
        return _special("erfc")(x)

    def pullback(self, inputs, output, g):
        return (g * (-2 / _SQRT_PI) * exp(neg(sqr(inputs[0]))),)


@dataclass(frozen=True)
class Erfinv(Elemwise):
    """The inverse of erf, on (-1, 1)."""

    nin: ClassVar[int] = 1
    float_only: ClassVar[bool] = True

    def impl(self, x):
        return _special("erfinv")(x)

    def pullback(self, inputs, output, g):
        return (g * (_SQRT_PI / 2) * exp(sqr(output)),)


@dataclass(frozen=True)
class Erfcinv(Elemwise):
    """The inverse of erfc, on (0, 2)."""

    nin: ClassVar[int] = 1
    float_only: ClassVar[bool] = True

    def impl(self, x):
        return _special("erfcinv")(x)

    def pullback(self, inputs, output, g):
        return (g * (-_SQRT_PI / 2) * exp(sqr(output)),)


@dataclass(frozen=True)
class Erfcx(Elemwise):
    """The scaled complementary error function exp(x**2) * erfc(x)."""

    nin: ClassVar[int] = 1
    float_only: ClassVar[bool] = True

    def impl(self, x):
        return _special("erfcx")(x)

    def pullback(self, inputs, output, g):
        return (g * (inputs[0] * output * 2 - 2 / _SQRT_PI),)


@dataclass(frozen=True)
class Gamma(Elemwise):
    """The gamma function."""

    nin: ClassVar[int] = 1
    float_only: ClassVar[bool] = True

    def impl(self, x):
        return _special("gamma")(x)

    def pullback(self, inputs, output, g):
        return (g * output * psi(inputs[0]),)


@dataclass(frozen=True)
class GammaLn(Elemwise):
    """log |gamma(x)|."""

    nin: ClassVar[int] = 1
    float_only: ClassVar[bool] = True

    def impl(self, x):
        return _special("gammaln")(x)

    def pullback(self, inputs, output, g):
        return (g * psi(inputs[0]),)


@dataclass(frozen=True)
class Polygamma(Elemwise):
    """The n-th derivative of the digamma function (n = 0: psi, 1: trigamma)."""

    n: int = 0
    nin: ClassVar[int] = 1
    float_only: ClassVar[bool] = True

    def impl(self, x):
        return _special("polygamma")(self.n, x)

    def pullback(self, inputs, output, g):
        return (g * Polygamma(self.n + 1)(inputs[0]),)


# --- complex numbers ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Real(Elemwise):
    """The real part (the input itself for real dtypes)."""

    nin: ClassVar[int] = 1
    fn: ClassVar = np.real

    def output_dtype(self, *dtypes: str) -> str:
        return real_dtype(upcast(*dtypes))

    def pullback(self, inputs, output, g):
        return (g,)


@dataclass(frozen=True)
class Imag(Elemwise):
    """The imaginary part (zeros for real dtypes)."""

    nin: ClassVar[int] = 1
    fn: ClassVar = np.imag

    def output_dtype(self, *dtypes: str) -> str:
        return real_dtype(upcast(*dtypes))

    def pullback(self, inputs, output, g):
        return (g * 1j,) if inputs[0].dtype.startswith("complex") else (None,)


@dataclass(frozen=True)
class Conj(Elemwise):
    """The complex conjugate (the input itself for real dtypes)."""

    nin: ClassVar[int] = 1
    fn: ClassVar = np.conjugate

    def pullback(self, inputs, output, g):
        return (conj(g),)


@dataclass(frozen=True)
class Angle(Elemwise):
    """The argument of a complex number, in radians (0 or pi for reals); no gradient."""

    nin: ClassVar[int] = 1
    fn: ClassVar = np.angle

    def output_dtype(self, *dtypes: str) -> str:
        return real_dtype(upgrade_to_float(upcast(*dtypes)))

    def pullback(self, inputs, output, g):
        return (None,)


abs_, sgn, sqr, sqrt, reciprocal = Abs(), Sgn(), Sqr(), Sqrt(), Reciprocal()
exp, exp2, expm1, log, log2, log10, log1p = Exp(), Exp2(), Expm1(), Log(), Log2(), Log10(), Log1p()
logaddexp = LogAddExp()
sin, cos, tan, arcsin, arccos, arctan = Sin(), Cos(), Tan(), ArcSin(), ArcCos(), ArcTan()
arctan2 = ArcTan2()
sinh, cosh, tanh = Sinh(), Cosh(), Tanh()
arcsinh, arccosh, arctanh = ArcSinh(), ArcCosh(), ArcTanh()
deg2rad, rad2deg = Deg2Rad(), Rad2Deg()
floor, ceil, trunc = Floor(), Ceil(), Trunc()
erf, erfc, erfcx, erfinv, erfcinv = Erf(), Erfc(), Erfcx(), Erfinv(), Erfcinv()
gamma, gammaln = Gamma(), GammaLn()
psi, tri_gamma = Polygamma(0), Polygamma(1)
real, imag, conj, angle = Real(), Imag(), Conj(), Angle()
inv, square, sign, absolute, conjugate = reciprocal, sqr, sgn, abs_, conj


def polygamma(n: int, x) -> Var:
    """The n-th derivative of the digamma function."""
    return Polygamma(int(n))(as_tensor_variable(x))


__all__ = [
    "Abs", "Sgn", "Sqr", "Sqrt", "Reciprocal", "Exp", "Exp2", "Expm1", "Log", "Log2", "Log10",
    "Log1p", "LogAddExp", "Sin", "Cos", "Tan", "ArcSin", "ArcCos", "ArcTan", "ArcTan2", "Sinh",
    "Cosh", "Tanh", "ArcSinh", "ArcCosh", "ArcTanh", "Deg2Rad", "Rad2Deg", "Floor", "Ceil", "Trunc",
    "Round", "Erf", "Erfc", "Erfcx", "Erfinv", "Erfcinv", "Gamma", "GammaLn", "Polygamma", "Real",
    "Imag", "Conj", "Angle",
    "abs_", "sgn", "sqr", "sqrt", "reciprocal", "exp", "exp2", "expm1", "log", "log2", "log10",
    "log1p", "logaddexp", "sin", "cos", "tan", "arcsin", "arccos", "arctan", "arctan2", "sinh",
    "cosh", "tanh", "arcsinh", "arccosh", "arctanh", "deg2rad", "rad2deg", "floor", "ceil", "trunc",
    "round_", "round_half_to_even", "round_half_away_from_zero", "iround", "erf", "erfc", "erfcx",
    "erfinv", "erfcinv", "gamma", "gammaln", "psi", "tri_gamma", "polygamma", "real", "imag",
    "conj", "angle",
    "inv", "square", "sign", "absolute", "conjugate",
]  # fmt: skip
