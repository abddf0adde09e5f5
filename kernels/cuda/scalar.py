"""The CUDA scalar table: C types of dtypes, C expressions of elementwise ops, their helpers."""

from __future__ import annotations

import math
from typing import Callable

import numpy as np

from ...graph.ops import elemwise as E
from ...graph.ops import elemwise_math as M
from ...graph.ops import nnet as N
from ...graph.ops import user as U
from ...graph.var import Var

CTYPE = {
    "float32": "float", "float64": "double", "bool": "bool", "int8": "signed char",
    "int16": "short", "int32": "int", "int64": "long long", "uint8": "unsigned char",
    "uint16": "unsigned short", "uint32": "unsigned int", "uint64": "unsigned long long",
}

# Device helpers, emitted into a kernel's source only when its body uses them.
HELPERS = {
    "th_max": """template <class T> __device__ __forceinline__ T th_max(T a, T b) {
  return (a != a || a > b) ? a : b;  // NaN propagates, as numpy.maximum
}""",
    "th_min": """template <class T> __device__ __forceinline__ T th_min(T a, T b) {
  return (a != a || a < b) ? a : b;  // NaN propagates, as numpy.minimum
}""",
    "th_sign": """template <class T> __device__ __forceinline__ T th_sign(T a) {
  return a != a ? a : (T)((a > (T)0) - (a < (T)0));
}""",
    "th_floordiv": """template <class T> __device__ __forceinline__ T th_floordiv(T a, T b) {
  if (b == (T)0) return (T)0;  // numpy gives 0 (and a warning) for integer division by zero
  if ((T)-1 < (T)0 && b == (T)-1) return (T)0 - a;  // INT_MIN / -1 traps on x86; numpy wraps
  T q = a / b;
  return (q * b != a && ((a < (T)0) != (b < (T)0))) ? q - (T)1 : q;
}
__device__ __forceinline__ float th_floordiv(float a, float b) {
  if (b == 0.0f) return a / b;
  float m = fmodf(a, b), d = (a - m) / b;
  if (m != 0.0f && ((b < 0.0f) != (m < 0.0f))) d -= 1.0f;
  float f = floorf(d);
  return d - f > 0.5f ? f + 1.0f : f;
}
__device__ __forceinline__ double th_floordiv(double a, double b) {
  if (b == 0.0) return a / b;
  double m = fmod(a, b), d = (a - m) / b;
  if (m != 0.0 && ((b < 0.0) != (m < 0.0))) d -= 1.0;
  double f = floor(d);
  return d - f > 0.5 ? f + 1.0 : f;
}""",
    "th_mod": """template <class T> __device__ __forceinline__ T th_mod(T a, T b) {
  if (b == (T)0 || ((T)-1 < (T)0 && b == (T)-1)) return (T)0;  // INT_MIN % -1 traps on x86
  T r = a % b;
  return (r != (T)0 && ((r < (T)0) != (b < (T)0))) ? r + b : r;
}
__device__ __forceinline__ float th_mod(float a, float b) {
  float r = fmodf(a, b);
  if (b == 0.0f) return r;
  return r != 0.0f ? (((r < 0.0f) != (b < 0.0f)) ? r + b : r) : copysignf(0.0f, b);
}
__device__ __forceinline__ double th_mod(double a, double b) {
  double r = fmod(a, b);
  if (b == 0.0) return r;
  return r != 0.0 ? (((r < 0.0) != (b < 0.0)) ? r + b : r) : copysign(0.0, b);
}""",
    "th_ipow": """template <class T> __device__ __forceinline__ T th_ipow(T a, T b) {
  T result = 1;
  if (b < (T)0) return a == (T)1 ? (T)1 : (a == (T)-1 ? ((b & (T)1) ? (T)-1 : (T)1) : (T)0);
  for (; b > (T)0; b >>= 1, a *= a)
    if (b & (T)1) result *= a;
  return result;
}""",
    "th_sigmoid": """template <class T> __device__ __forceinline__ T th_sigmoid(T x) {
  const T e = exp(-fabs(x));  // in (0, 1]: never overflows
  return x >= (T)0 ? (T)1 / ((T)1 + e) : e / ((T)1 + e);
}""",
    "th_logaddexp": """template <class T> __device__ __forceinline__ T th_logaddexp(T a, T b) {
  if (a == b) return a + (T)0.6931471805599453;  // also right for infinities of one sign
  const T m = a > b ? a : b, d = a > b ? b - a : a - b;
  return d != d ? d : m + log1p(exp(d));
}""",
}


def ctype(dtype: str) -> str:
    """The C type of a numpy dtype; raises for dtypes the CUDA backend does not handle."""
    if str(dtype) not in CTYPE:
        raise TypeError(f"the CUDA backend has no C type for dtype {dtype}")
    return CTYPE[str(dtype)]


def literal(value, dtype: str) -> str:
    """A C literal of `value` in `dtype`."""
    value = np.asarray(value).item()
    if dtype == "bool":
        return "true" if value else "false"
    if dtype in ("float32", "float64"):
        value = float(value)
        suffix = "f" if dtype == "float32" else ""
        if math.isnan(value):
            return f"(({ctype(dtype)})NAN)"
        if math.isinf(value):
            return f"(({ctype(dtype)}){'-' if value < 0 else ''}INFINITY)"
        text = repr(value)
        if "e" not in text and "." not in text:
            text += ".0"
        return f"{text}{suffix}"
    return f"(({ctype(dtype)}){int(value)})"


def _is_float(dtype: str) -> bool:
    return dtype in ("float32", "float64")


Render = Callable[[list, str, set], str]  # (argument expressions, compute dtype, helpers used)


def _call(name: str) -> Render:
    return lambda a, c, h: f"{name}({', '.join(a)})"


def _helper(name: str) -> Render:
    def render(a, c, h):
        h.add(name)
        return f"{name}({', '.join(a)})"

    return render


def _integral_identity(name: str) -> Render:
    """floor/ceil/trunc/rint: integers are already integral."""
    return lambda a, c, h: a[0] if not _is_float(c) else f"{name}({a[0]})"


def _maxmin(name: str, symbol: str) -> Render:
    def render(a, c, h):
        if _is_float(c):
            h.add(name)
            return f"{name}({a[0]}, {a[1]})"
        return f"({a[0]} {symbol} {a[1]} ? {a[0]} : {a[1]})"

    return render


def _logical(bool_symbol: str, int_symbol: str) -> Render:
    return lambda a, c, h: f"({a[0]} {bool_symbol if c == 'bool' else int_symbol} {a[1]})"


def _by_kind(floats: Render, integers: Render) -> Render:
    return lambda a, c, h: (floats if _is_float(c) else integers)(a, c, h)


def _clip(a, c, h):
    inner = _maxmin("th_max", ">")([a[0], a[1]], c, h)
    return _maxmin("th_min", "<")([inner, a[2]], c, h)


def _relu(op, a, c, h):
    if op.alpha == 0:
        return _maxmin("th_max", ">")([a[0], literal(0, c)], c, h)
    return f"({a[0]} > {literal(0, c)} ? {a[0]} : {literal(op.alpha, c)} * {a[0]})"


def _elu(scale: float, alpha: float, a, c, h) -> str:
    negative = f"{literal(alpha, c)} * expm1({_maxmin('th_min', '<')([a[0], literal(0, c)], c, h)})"
    out = f"({a[0]} > {literal(0, c)} ? {a[0]} : {negative})"
    return out if scale == 1 else f"({literal(scale, c)} * {out})"


def _integer_abs(a, c, h):
    return a[0] if c == "bool" else f"({a[0]} < 0 ? -{a[0]} : {a[0]})"


def _softplus(a, c, h):
    positive = _maxmin("th_max", ">")([a[0], literal(0, c)], c, h)
    return f"(log1p(exp(-fabs({a[0]}))) + {positive})"


# op class -> render(args, compute dtype, helpers). Parametrized ops take the op first (OP_RENDER).
SCALAR: dict[type, Render] = {
    E.Add: _logical("||", "+"), E.Sub: lambda a, c, h: f"({a[0]} - {a[1]})",
    E.Mul: _logical("&&", "*"), E.TrueDiv: lambda a, c, h: f"({a[0]} / {a[1]})",
    E.IntDiv: _helper("th_floordiv"), E.Mod: _helper("th_mod"),
    E.Pow: _by_kind(_call("pow"), _helper("th_ipow")), E.Neg: lambda a, c, h: f"(-{a[0]})",
    E.Maximum: _maxmin("th_max", ">"), E.Minimum: _maxmin("th_min", "<"), E.Clip: _clip,
    E.EQ: lambda a, c, h: f"({a[0]} == {a[1]})", E.NEQ: lambda a, c, h: f"({a[0]} != {a[1]})",
    E.LT: lambda a, c, h: f"({a[0]} < {a[1]})", E.LE: lambda a, c, h: f"({a[0]} <= {a[1]})",
    E.GT: lambda a, c, h: f"({a[0]} > {a[1]})", E.GE: lambda a, c, h: f"({a[0]} >= {a[1]})",
    E.IsNan: _by_kind(_call("isnan"), lambda a, c, h: "false"),
    E.IsInf: _by_kind(_call("isinf"), lambda a, c, h: "false"),
    E.And: _logical("&&", "&"), E.Or: _logical("||", "|"), E.Xor: _logical("!=", "^"),
    E.Invert: lambda a, c, h: f"(!{a[0]})" if c == "bool" else f"(~{a[0]})",
    E.Second: lambda a, c, h: a[1], E.Cast: lambda a, c, h: a[0],
    E.ZeroGrad: lambda a, c, h: a[0], E.DisconnectedGrad: lambda a, c, h: a[0],
    E.GradClip: lambda a, c, h: a[0], E.GradScale: lambda a, c, h: a[0],
    M.Abs: _by_kind(_call("fabs"), _integer_abs),
    M.Sgn: _by_kind(_helper("th_sign"), lambda a, c, h: f"({a[0]} > 0) - ({a[0]} < 0)"),
    M.Sqr: lambda a, c, h: f"({a[0]} * {a[0]})", M.Sqrt: _call("sqrt"),
    M.Reciprocal: lambda a, c, h: f"({literal(1, c)} / {a[0]})",
    M.Exp: _call("exp"), M.Exp2: _call("exp2"), M.Expm1: _call("expm1"), M.Log: _call("log"),
    M.Log2: _call("log2"), M.Log10: _call("log10"), M.Log1p: _call("log1p"),
    M.LogAddExp: _helper("th_logaddexp"), M.Sin: _call("sin"), M.Cos: _call("cos"),
    M.Tan: _call("tan"), M.ArcSin: _call("asin"), M.ArcCos: _call("acos"), M.ArcTan: _call("atan"),
    M.ArcTan2: _call("atan2"), M.Sinh: _call("sinh"), M.Cosh: _call("cosh"), M.Tanh: _call("tanh"),
    M.ArcSinh: _call("asinh"), M.ArcCosh: _call("acosh"), M.ArcTanh: _call("atanh"),
    M.Deg2Rad: lambda a, c, h: f"({a[0]} * {literal(math.pi / 180, c)})",
    M.Rad2Deg: lambda a, c, h: f"({a[0]} * {literal(180 / math.pi, c)})",
    M.Floor: _integral_identity("floor"), M.Ceil: _integral_identity("ceil"),
    M.Trunc: _integral_identity("trunc"), M.Erf: _call("erf"), M.Erfc: _call("erfc"),
    M.Gamma: _call("tgamma"),
    M.GammaLn: lambda a, c, h: f"(isinf({a[0]}) ? {a[0]} : lgamma({a[0]}))",  # scipy: -inf -> -inf
    N.Sigmoid: _helper("th_sigmoid"),
    N.Softplus: _softplus,
    N.Softsign: lambda a, c, h: f"({a[0]} / ({literal(1, c)} + fabs({a[0]})))",
    N.HardSigmoid: lambda a, c, h: _clip([f"({a[0]} * {literal(0.2, c)} + {literal(0.5, c)})",
                                          literal(0, c), literal(1, c)], c, h),
    N.Selu: lambda a, c, h: _elu(N.SELU_SCALE, N.SELU_ALPHA, a, c, h),
}
# Ops whose rendering reads the op's own fields.
OP_RENDER: dict[type, Callable] = {
    N.Relu: _relu,
    N.Elu: lambda op, a, c, h: _elu(1, op.alpha, a, c, h),
    M.Round: lambda op, a, c, h: a[0] if not _is_float(c)
    else (f"rint({a[0]})" if op.mode == "half_to_even" else f"round({a[0]})"),
}


def compute_dtype(var: Var) -> str:
    """The dtype an elementwise node computes in: its output's, or its inputs' for a comparison."""
    op = var.op
    if getattr(op, "bool_out", False) and var.inputs:
        promoted = op.promoted(var.inputs) if hasattr(op, "promoted") else var.inputs
        return np.result_type(*[np.dtype(x.dtype) for x in promoted]).name
    return var.dtype


def _user_kernel(op, a, c, h):
    """A user kernel (traced or hand-written): a call of its __device__ function, emitted first."""
    from ..user_backends import cuda_function

    return f"{cuda_function(op, h)}({', '.join(a)})"


OP_RENDER[U.UserElemwise] = _user_kernel
OP_RENDER[U.ScalarKernel] = _user_kernel
# Ops whose arguments keep their own types (a traced kernel's device function takes its inputs').
UNCAST: tuple = (U.UserElemwise,)


def renders(var: Var) -> bool:
    """True when the scalar table renders this elementwise node (and every dtype it touches)."""
    if isinstance(var.op, (U.UserElemwise, U.ScalarKernel)):
        from ..user_backends import cuda_renders

        return cuda_renders(var)
    if type(var.op) not in SCALAR and type(var.op) not in OP_RENDER:
        return False
    dtypes = [var.dtype, compute_dtype(var)] + [x.dtype for x in var.inputs]
    return all(str(d) in CTYPE for d in dtypes)


def render(var: Var, args: list[str], helpers: set) -> str:
    """The C expression of elementwise node `var` on argument expressions."""
    compute = compute_dtype(var)
    op = var.op
    if isinstance(op, E.Switch):  # the condition keeps its own type
        args = [args[0]] + [_cast(a, x.dtype, compute) for a, x in zip(args[1:], var.inputs[1:])]
    elif not isinstance(op, (E.Cast, E.Second) + UNCAST):
        args = [_cast(a, x.dtype, compute) for a, x in zip(args, var.inputs)]
    if isinstance(op, E.Switch):
        expression = f"({args[0]} ? {args[1]} : {args[2]})"
    elif type(op) in OP_RENDER:
        expression = OP_RENDER[type(op)](op, args, compute, helpers)
    else:
        expression = SCALAR[type(op)](args, compute, helpers)
    if compute != var.dtype or isinstance(op, (E.Cast, E.Second)):
        expression = f"(({ctype(var.dtype)}){expression})"
    return expression


SCALAR[E.Switch] = lambda a, c, h: f"({a[0]} ? {a[1]} : {a[2]})"


def _cast(expression: str, dtype: str, compute: str) -> str:
    return expression if dtype == compute else f"(({ctype(compute)}){expression})"
