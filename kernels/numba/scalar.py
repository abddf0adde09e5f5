"""The numba scalar table: each elementwise op class as a Python expression over scalar arguments.

`SCALAR[OpClass](op, args, dtype)` returns the expression for one element, where `args` are the
names of the (already converted) arguments and `dtype` the dtype they were converted to. Arguments
are converted to the op's computation dtype first (its output dtype, or the promoted input dtype for
comparisons), and the result is converted to the node's dtype, so float32 stays float32 as numpy
computes it. `render_body` turns a Composite's scalar graph into assignment lines t0 = ..., t1 = ...
"""

from __future__ import annotations

import math
from typing import Callable

import numpy as np

from ...graph.ops import elemwise as E
from ...graph.ops import nnet as N
from ...graph.ops.composite import Composite
from ...graph.ops.user import ScalarKernel, UserElemwise
from ...graph.type import TensorType, upcast
from ...graph.var import Constant, Var, toposort

# dtypes the generated loops handle (float16 and complex ones are not numba scalar types we support)
DTYPES = frozenset(
    "bool int8 int16 int32 int64 uint8 uint16 uint32 uint64 float32 float64".split()
)


def literal(value, dtype: str) -> str:
    """A typed constant: np.float32(0.5), np.int64(3), True; non-finite floats by name."""
    value = np.asarray(value).astype(dtype).item()
    if dtype == "bool":
        return repr(bool(value))
    if isinstance(value, float):
        if math.isnan(value):
            text = "np.nan"
        elif math.isinf(value):
            text = "np.inf" if value > 0 else "-np.inf"
        else:
            text = repr(value)
    else:
        text = repr(int(value))
    return f"np.{_numpy_name(dtype)}({text})"


def _numpy_name(dtype: str) -> str:
    return "bool_" if dtype == "bool" else dtype


def convert(name: str, source: str, target: str) -> str:
    """`name` (of dtype `source`) as dtype `target`."""
    if source == target:
        return name
    if target == "bool":
        return f"({name} != 0)"
    return f"np.{_numpy_name(target)}({name})"


def _is_float(dtype: str) -> bool:
    return dtype.startswith("float")


def _unary(func: str) -> Callable:
    return lambda op, a, t: f"{func}({a[0]})"


def _binary(symbol: str) -> Callable:
    return lambda op, a, t: f"({a[0]} {symbol} {a[1]})"


def _identity(op, a, t):
    return a[0]


def _float_only(func: str) -> Callable:
    """A math function of floats; integers never reach it (float_only ops convert first)."""
    return lambda op, a, t: f"{func}({a[0]})"


def _rounding(func: str) -> Callable:
    return lambda op, a, t: f"{func}({a[0]})" if _is_float(t) else a[0]


def _invert(op, a, t):
    return f"(not {a[0]})" if t == "bool" else f"(~{a[0]})"


def _isnan(op, a, t):
    return f"({a[0]} != {a[0]})" if _is_float(t) else "False"


def _isinf(op, a, t):
    return f"(abs({a[0]}) == np.inf)" if _is_float(t) else "False"


def _round(op, a, t):
    if not _is_float(t):
        return a[0]
    return f"np.rint({a[0]})" if op.mode == "half_to_even" else f"S.round_half_away({a[0]})"


def _relu(op, a, t):
    zero = literal(0, t)
    if op.alpha == 0:
        return f"S.maximum({a[0]}, {zero})"
    return f"({a[0]} if {a[0]} > {zero} else {literal(op.alpha, t)} * {a[0]})"


def _elu(op, a, t):
    x = a[0]
    negative = f"{literal(op.alpha, t)} * math.expm1(S.minimum({x}, {literal(0, t)}))"
    return f"({x} if {x} > 0 else {negative})"


def _selu(op, a, t):
    x = a[0]
    scale, alpha = literal(N.SELU_SCALE, t), literal(N.SELU_ALPHA, t)
    negative = f"{alpha} * math.expm1(S.minimum({x}, {literal(0, t)}))"
    return f"({scale} * ({x} if {x} > 0 else {negative}))"


def _hard_sigmoid(op, a, t):
    inner = f"({a[0]} * {literal(0.2, t)} + {literal(0.5, t)})"
    return f"S.minimum(S.maximum({inner}, {literal(0, t)}), {literal(1, t)})"


def _angle(op, a, t):
    return f"math.atan2({literal(0, t)}, {a[0]})"


# float32 tanh, exp and sigmoid as vectorizable approximations (special.py states their errors:
# <= 5, 2 and 3 ulps); libm's calls stay scalar and cost ~30x in a fused loop.
FAST_FLOAT32 = True


def _fast32(approximation: str, exact: str) -> Callable:
    return lambda op, a, t: f"{approximation if FAST_FLOAT32 and t == 'float32' else exact}({a[0]})"


def _pow(op, a, t):
    return f"({a[0]} ** {a[1]})"


def _scaled(factor: float) -> Callable:
    return lambda op, a, t: f"({a[0]} * {literal(factor, t)})"


SCALAR: dict[type, Callable] = {
    E.Add: _binary("+"),
    E.Sub: _binary("-"),
    E.Mul: _binary("*"),
    E.TrueDiv: _binary("/"),
    E.IntDiv: _binary("//"),
    E.Mod: _binary("%"),
    E.Pow: _binary("**"),
    E.Neg: lambda op, a, t: f"(-{a[0]})",
    E.Maximum: lambda op, a, t: f"S.maximum({a[0]}, {a[1]})",
    E.Minimum: lambda op, a, t: f"S.minimum({a[0]}, {a[1]})",
    E.Clip: lambda op, a, t: f"S.minimum(S.maximum({a[0]}, {a[1]}), {a[2]})",
    E.Switch: lambda op, a, t: f"({a[1]} if {a[0]} else {a[2]})",
    E.EQ: _binary("=="),
    E.NEQ: _binary("!="),
    E.LT: _binary("<"),
    E.LE: _binary("<="),
    E.GT: _binary(">"),
    E.GE: _binary(">="),
    E.IsNan: _isnan,
    E.IsInf: _isinf,
    E.And: _binary("&"),
    E.Or: _binary("|"),
    E.Xor: _binary("^"),
    E.Invert: _invert,
    E.Second: lambda op, a, t: a[1],
    E.Cast: _identity,
    E.ZeroGrad: _identity,
    E.DisconnectedGrad: _identity,
    E.GradClip: _identity,
    E.GradScale: _identity,
    E.Abs: _unary("abs"),
    E.Sgn: lambda op, a, t: f"S.sign({a[0]})",
    E.Sqr: lambda op, a, t: f"({a[0]} * {a[0]})",
    E.Sqrt: _float_only("math.sqrt"),
    E.Reciprocal: lambda op, a, t: f"({literal(1, t)} / {a[0]})",
    E.Exp: _fast32("S.exp_f32", "math.exp"),
    E.Exp2: lambda op, a, t: f"({literal(2, t)} ** {a[0]})",
    E.Expm1: _float_only("math.expm1"),
    E.Log: _float_only("math.log"),
    E.Log2: _float_only("math.log2"),
    E.Log10: _float_only("math.log10"),
    E.Log1p: _float_only("math.log1p"),
    E.LogAddExp: lambda op, a, t: f"S.logaddexp({a[0]}, {a[1]})",
    E.Sin: _float_only("math.sin"),
    E.Cos: _float_only("math.cos"),
    E.Tan: _float_only("math.tan"),
    E.ArcSin: _float_only("math.asin"),
    E.ArcCos: _float_only("math.acos"),
    E.ArcTan: _float_only("math.atan"),
    E.ArcTan2: lambda op, a, t: f"math.atan2({a[0]}, {a[1]})",
    E.Sinh: _float_only("math.sinh"),
    E.Cosh: _float_only("math.cosh"),
    E.Tanh: _fast32("S.tanh_f32", "math.tanh"),
    E.ArcSinh: _float_only("math.asinh"),
    E.ArcCosh: _float_only("math.acosh"),
    E.ArcTanh: _float_only("math.atanh"),
    E.Deg2Rad: _scaled(math.pi / 180.0),
    E.Rad2Deg: _scaled(180.0 / math.pi),
    E.Floor: _rounding("np.floor"),
    E.Ceil: _rounding("np.ceil"),
    E.Trunc: _rounding("np.trunc"),
    E.Round: _round,
    E.Erf: _float_only("math.erf"),
    E.Erfc: _float_only("math.erfc"),
    E.Erfinv: _float_only("S.erfinv"),
    E.Erfcinv: _float_only("S.erfcinv"),
    E.Erfcx: _float_only("S.erfcx"),
    E.Gamma: _float_only("math.gamma"),
    E.GammaLn: _float_only("math.lgamma"),
    E.Polygamma: lambda op, a, t: f"S.polygamma({op.n}, {a[0]})",
    E.Real: _identity,
    E.Imag: lambda op, a, t: literal(0, t),
    E.Conj: _identity,
    E.Angle: _angle,
    N.Sigmoid: _fast32("S.sigmoid_f32", "S.sigmoid"),
    N.Softplus: _float_only("S.softplus"),
    N.Relu: _relu,
    N.Elu: _elu,
    N.Selu: _selu,
    N.Softsign: lambda op, a, t: f"({a[0]} / ({literal(1, t)} + abs({a[0]})))",
    N.HardSigmoid: _hard_sigmoid,
}


def _scalar_kernel(op, a, t):
    """A user's scalar kernel: its Python function, compiled by numba, called per element."""
    from ..user_backends import numba_call

    return f"{numba_call(op, t)}({', '.join(a)})"


def _traced(op, a, t):
    raise AssertionError("render_body inlines a traced user kernel's body")  # never reached


SCALAR[ScalarKernel] = _scalar_kernel
SCALAR[UserElemwise] = _traced
# Ops whose node is rendered by inlining a scalar body: op class -> (placeholders, outputs) of it.
INLINE_BODIES: dict[type, Callable] = {
    Composite: lambda op: (op.placeholders, op.outputs),
    UserElemwise: lambda op: (op.placeholders, op.outputs),
}


def computation_dtypes(var: Var) -> list[str]:
    """The dtype each argument of `var` is converted to before its expression is evaluated."""
    op, dtypes = var.op, [x.dtype for x in var.inputs]
    if isinstance(op, (E.EQ, E.NEQ, E.LT, E.LE, E.GT, E.GE)):
        return [upcast(*dtypes)] * len(dtypes)
    if isinstance(op, (E.IsNan, E.IsInf, E.Cast)):
        return dtypes
    if isinstance(op, E.Switch):
        return ["bool", var.dtype, var.dtype]
    if isinstance(op, E.Second):
        return [dtypes[0], var.dtype]
    return [var.dtype] * len(dtypes)


def supported(var: Var) -> bool:
    """May this elementwise node be rendered (alone or fused) by the numba loop generator?"""
    if not isinstance(var.type, TensorType) and not isinstance(var.op, Composite):
        return False
    if isinstance(var.op, Composite):
        inputs_ok = all(isinstance(x.type, TensorType) and x.dtype in DTYPES for x in var.inputs)
        return inputs_ok and all(supported(node) for node in var.op.nodes)
    if type(var.op) not in SCALAR or var.dtype not in DTYPES:
        return False
    if isinstance(var.op, ScalarKernel) and var.op.numba is None:
        return False  # only a numpy reference: it runs as a numpy step
    if isinstance(var.op, UserElemwise) and not all(supported(n) for n in var.op.nodes):
        return False
    return all(x.dtype in DTYPES for x in var.inputs)


def render_body(
    placeholders: tuple, outputs: tuple, arguments: list[str], start: int = 0
) -> tuple[list[str], list[str]]:
    """Lines computing a scalar graph from `arguments` (one per placeholder); the output names.

    Temporaries are numbered from `start` (a nested body continues its host's numbering)."""
    names: dict[int, str] = {id(p): a for p, a in zip(placeholders, arguments)}
    lines: list[str] = []
    for node in toposort(list(outputs), stop=set(placeholders)):
        if id(node) in names:
            continue
        if isinstance(node.op, Constant):
            names[id(node)] = literal(node.op.data.reshape(()), node.dtype)
            continue
        if not node.inputs:
            raise TypeError(f"numba: unexpected leaf {node} inside a fused elementwise body")
        if type(node.op) in INLINE_BODIES:  # a nested composite or a user kernel: inline its body
            inner_placeholders, inner_outputs = INLINE_BODIES[type(node.op)](node.op)
            inner_lines, inner_names = render_body(
                inner_placeholders, inner_outputs, [names[id(x)] for x in node.inputs],
                start + len(lines),
            )
            lines.extend(inner_lines)
            names[id(node)] = inner_names[0]
            continue
        targets = computation_dtypes(node)
        args = [convert(names[id(x)], x.dtype, t) for x, t in zip(node.inputs, targets)]
        if _is_square(node):  # x ** 2 as one multiply (pow is a libm call)
            expression = f"({args[0]} * {args[0]})"
        else:
            expression = SCALAR[type(node.op)](node.op, args, targets[0] if targets else node.dtype)
        name = f"t{start + len(lines)}"
        lines.append(f"{name} = {convert_expression(expression, node.dtype)}")
        names[id(node)] = name
    return lines, [names[id(out)] for out in outputs]


def _is_square(node: Var) -> bool:
    exponent = node.inputs[1] if isinstance(node.op, E.Pow) else None
    return (
        exponent is not None
        and isinstance(exponent.op, Constant)
        and exponent.op.data.size == 1
        and float(exponent.op.data.reshape(())) == 2.0
    )


def convert_expression(expression: str, target: str) -> str:
    """An expression's value as dtype `target` (always wrapped: numba widens mixed arithmetic)."""
    return f"np.{_numpy_name(target)}({expression})"
