"""Elementwise ops: values vs numpy, numpy 2 dtypes, static shapes, gradients, errors."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
import scipy.special

import theanine.tensor as T
from theanine.compiler.autodiff import grad
from theanine.graph.evaluate import evaluate
from theanine.graph.type import TensorType
from theanine.graph.var import input_var
from tests.helpers import check_grad, numeric_grad, run

RNG = np.random.default_rng(1)

DOMAINS = {
    "real": lambda shape: RNG.normal(size=shape),
    "pos": lambda shape: RNG.uniform(0.5, 2.0, size=shape),
    "unit": lambda shape: RNG.uniform(-0.9, 0.9, size=shape),
    "ge1": lambda shape: RNG.uniform(1.2, 3.0, size=shape),
    "open02": lambda shape: RNG.uniform(0.2, 1.8, size=shape),
    "nonint": lambda shape: RNG.integers(-5, 5, size=shape) + RNG.uniform(0.1, 0.9, size=shape),
}


@dataclass
class Case:
    """One op: the theanine function, the numpy oracle, the input domains, and what to check."""

    name: str
    fn: Callable
    ref: Callable
    domains: tuple
    dtypes: tuple = ("float32", "float64")
    grad: bool = True
    theano_float: bool = False  # result dtype follows Theano's int -> float upgrade, not numpy's
    rtol: float = 1e-5
    kwargs: dict = field(default_factory=dict)

    def __str__(self):
        return self.name


def _ints(domain):
    return domain not in ("real", "unit", "nonint")


UNARY = [
    Case("neg", T.neg, np.negative, ("real",), ("float32", "float64", "int32", "int8")),
    Case("abs", T.abs, np.abs, ("nonint",), ("float32", "float64", "int32", "int64")),
    Case("sgn", T.sgn, np.sign, ("nonint",), ("float32", "float64", "int32"), grad=False),
    Case("sqr", T.sqr, np.square, ("real",), ("float32", "float64", "int32", "uint8")),
    Case("sqrt", T.sqrt, np.sqrt, ("pos",), ("float32", "float64", "int32"), theano_float=True),
    Case("inv", T.inv, lambda x: 1.0 / x, ("pos",)),
    Case("exp", T.exp, np.exp, ("real",), ("float32", "float64", "int64"), theano_float=True),
    Case("exp2", T.exp2, np.exp2, ("real",)),
    Case("expm1", T.expm1, np.expm1, ("real",)),
    Case("log", T.log, np.log, ("pos",), ("float32", "float64", "int32"), theano_float=True),
    Case("log2", T.log2, np.log2, ("pos",)),
    Case("log10", T.log10, np.log10, ("pos",)),
    Case("log1p", T.log1p, np.log1p, ("pos",)),
    Case("sin", T.sin, np.sin, ("real",)),
    Case("cos", T.cos, np.cos, ("real",)),
    Case("tan", T.tan, np.tan, ("unit",)),
    Case("arcsin", T.arcsin, np.arcsin, ("unit",)),
    Case("arccos", T.arccos, np.arccos, ("unit",)),
    Case("arctan", T.arctan, np.arctan, ("real",)),
    Case("sinh", T.sinh, np.sinh, ("real",)),
    Case("cosh", T.cosh, np.cosh, ("real",)),
    Case("tanh", T.tanh, np.tanh, ("real",)),
    Case("arcsinh", T.arcsinh, np.arcsinh, ("real",)),
    Case("arccosh", T.arccosh, np.arccosh, ("ge1",)),
    Case("arctanh", T.arctanh, np.arctanh, ("unit",)),
    Case("deg2rad", T.deg2rad, np.deg2rad, ("real",)),
    Case("rad2deg", T.rad2deg, np.rad2deg, ("real",)),
    Case("floor", T.floor, np.floor, ("nonint",), ("float32", "float64", "int32"), grad=False),
    Case("ceil", T.ceil, np.ceil, ("nonint",), ("float32", "float64", "int32"), grad=False),
    Case("trunc", T.trunc, np.trunc, ("nonint",), ("float32", "float64", "int32"), grad=False),
    Case("round", T.round, np.round, ("nonint",), ("float32", "float64", "int32"), grad=False),
    Case("erf", T.erf, scipy.special.erf, ("real",), rtol=1e-4),
    Case("erfc", T.erfc, scipy.special.erfc, ("real",), rtol=1e-4),
    Case("erfcx", T.erfcx, scipy.special.erfcx, ("real",), rtol=1e-4),
    Case("erfinv", T.erfinv, scipy.special.erfinv, ("unit",), rtol=1e-4),
    Case("erfcinv", T.erfcinv, scipy.special.erfcinv, ("open02",), rtol=1e-4),
    Case("gamma", T.gamma, scipy.special.gamma, ("pos",), rtol=1e-4),
    Case("gammaln", T.gammaln, scipy.special.gammaln, ("pos",), rtol=1e-4),
    Case("psi", T.psi, scipy.special.psi, ("pos",), rtol=1e-4),
    Case("tri_gamma", T.tri_gamma, lambda x: scipy.special.polygamma(1, x).astype(x.dtype),
         ("pos",), rtol=1e-4),
    Case("real", T.real, np.real, ("real",)),
    Case("conj", T.conj, np.conj, ("real",)),
    Case("zero_grad", T.zero_grad, lambda x: x, ("real",), grad=False),
    Case("clip", lambda x: T.clip(x, -0.5, 0.7), lambda x: np.clip(x, -0.5, 0.7), ("nonint",)),
]

BINARY = [
    Case("add", T.add, np.add, ("real", "real"), ("float32", "float64", "int32", "int8")),
    Case("sub", T.sub, np.subtract, ("real", "real"), ("float32", "float64", "int32", "uint8")),
    Case("mul", T.mul, np.multiply, ("real", "real"), ("float32", "float64", "int64")),
    Case("true_div", T.true_div, np.true_divide, ("real", "pos"), ("float32", "float64", "int32"),
         theano_float=True),
    Case("int_div", T.int_div, np.floor_divide, ("real", "pos"), ("float32", "float64", "int32"),
         grad=False),
    Case("mod", T.mod, np.mod, ("nonint", "pos"), ("float32", "float64", "int32", "int64")),
    Case("pow", T.pow, np.power, ("pos", "real"), ("float32", "float64", "int64")),
    Case("maximum", T.maximum, np.maximum, ("real", "real"), ("float32", "float64", "int32")),
    Case("minimum", T.minimum, np.minimum, ("real", "real"), ("float32", "float64", "int32")),
    Case("arctan2", T.arctan2, np.arctan2, ("real", "pos")),
    Case("logaddexp", T.logaddexp, np.logaddexp, ("real", "real")),
    Case("eq", T.eq, np.equal, ("nonint", "nonint"), ("float32", "int32"), grad=False),
    Case("neq", T.neq, np.not_equal, ("nonint", "nonint"), ("float32", "int32"), grad=False),
    Case("lt", T.lt, np.less, ("real", "real"), ("float32", "int32"), grad=False),
    Case("le", T.le, np.less_equal, ("real", "real"), ("float32", "int32"), grad=False),
    Case("gt", T.gt, np.greater, ("real", "real"), ("float32", "int32"), grad=False),
    Case("ge", T.ge, np.greater_equal, ("real", "real"), ("float32", "int32"), grad=False),
]

BITWISE = [
    Case("and_", T.and_, np.bitwise_and, ("ints", "ints"), ("int32", "bool", "uint8"), grad=False),
    Case("or_", T.or_, np.bitwise_or, ("ints", "ints"), ("int32", "bool", "int8"), grad=False),
    Case("xor", T.xor, np.bitwise_xor, ("ints", "ints"), ("int64", "bool"), grad=False),
    Case("invert", T.invert, np.invert, ("ints",), ("int32", "bool", "uint16"), grad=False),
]


def sample(domain: str, shape: tuple, dtype: str) -> np.ndarray:
    """Values from `domain` in `dtype` (integer dtypes get small integers of the right sign)."""
    if dtype == "bool":
        return RNG.integers(0, 2, size=shape).astype(bool)
    if np.dtype(dtype).kind in "iu":
        low = 1 if domain in ("pos", "ge1", "open02") or np.dtype(dtype).kind == "u" else -4
        return RNG.integers(low, 5, size=shape).astype(dtype)
    return DOMAINS[domain](shape).astype(dtype)


def check_value(case: Case, dtype: str, shapes: list) -> None:
    arrays = [sample(d, s, dtype) for d, s in zip(case.domains, shapes)]
    if case.name == "pow" and dtype.startswith("int"):
        arrays[1] = np.abs(arrays[1])  # numpy forbids negative integer powers of integers
    value, out = run(case.fn, *arrays)
    expected = np.asarray(case.ref(*arrays))
    np.testing.assert_allclose(value, expected, rtol=case.rtol, atol=1e-6, err_msg=case.name)
    # The static type: dtype as numpy 2 (or Theano's float upgrade), shape exactly the real one.
    if case.theano_float and dtype in ("int8", "int16", "uint8", "uint16", "bool"):
        assert out.dtype == "float32"
    else:
        assert out.dtype == expected.dtype.name, (case.name, dtype, out.dtype, expected.dtype)
    assert value.dtype.name == out.dtype
    assert out.type.shape == value.shape


@pytest.mark.parametrize("case", UNARY + BINARY + BITWISE, ids=str)
def test_values_dtypes_shapes(case):
    shapes = [(2, 3, 4)] * len(case.domains)
    for dtype in case.dtypes:
        check_value(case, dtype, shapes)


@pytest.mark.parametrize("case", BINARY + BITWISE[:3], ids=str)
@pytest.mark.parametrize("shapes", [((3, 1), (1, 4)), ((2, 3, 4), (4,)), ((1, 3, 1), (2, 1, 4))])
def test_binary_broadcasting(case, shapes):
    check_value(case, case.dtypes[0], list(shapes))


@pytest.mark.parametrize("case", [c for c in UNARY + BINARY if c.grad], ids=str)
def test_gradient(case):
    arrays = [sample(d, (2, 3), "float64") for d in case.domains]
    check_grad(case.fn, arrays, rtol=1e-4, atol=1e-6)


def check_grad_static(fn, arrays):
    """check_grad with inputs typed by their full static shapes, so broadcast axes are known."""
    arrays = [np.asarray(a, dtype="float64") for a in arrays]
    inputs = [input_var(TensorType("float64", a.shape), f"x{k}") for k, a in enumerate(arrays)]
    out = fn(*inputs)
    direction = RNG.normal(size=out.type.shape)
    symbolic = evaluate(grad(T.sum(out * T.constant(direction)), inputs), dict(zip(inputs, arrays)))
    for k, (s, n) in enumerate(zip(symbolic, numeric_grad(fn, arrays, direction))):
        assert s.shape == n.shape
        np.testing.assert_allclose(s, n, rtol=1e-5, atol=1e-6, err_msg=f"input {k}")


def test_gradient_broadcast_inputs():
    column, row = RNG.normal(size=(3, 1)), RNG.normal(size=(1, 4))
    check_grad_static(lambda x, y: x * y + T.maximum(x, y), [column, row])
    matrix, vector = RNG.uniform(0.5, 2, size=(2, 3)), RNG.uniform(0.5, 2, size=(3,))
    check_grad_static(lambda x, y: x / y - y ** x, [matrix, vector])


def test_clip_and_switch_gradients():
    x = T.dvector("x")
    lo, hi = T.dscalar("lo"), T.dscalar("hi")
    gx, glo, ghi = grad(T.clip(x, lo, hi).sum(), [x, lo, hi])
    values = {x: np.array([-2.0, 0.0, 0.5, 3.0]), lo: np.array(-1.0), hi: np.array(1.0)}
    gx, glo, ghi = evaluate([gx, glo, ghi], values)
    np.testing.assert_array_equal(gx, [0, 1, 1, 0])
    assert glo == 1 and ghi == 1
    cond = T.bvector("cond")
    a, b = T.dvector("a"), T.dvector("b")
    out = T.switch(cond, a * 2, b * 3).sum()
    ga, gb = grad(out, [a, b])
    c = np.array([1, 0, 1], dtype="int8")
    ga, gb = evaluate([ga, gb], {cond: c, a: np.ones(3), b: np.ones(3)})
    np.testing.assert_array_equal(ga, [2, 0, 2])
    np.testing.assert_array_equal(gb, [0, 3, 0])
    assert T.where is T.switch


def test_switch_values_and_dtype():
    value, out = run(lambda c, a, b: T.switch(c, a, b), np.array([True, False, True]),
                     np.arange(3, dtype="int32"), np.ones((2, 1), dtype="float32"))
    expected = np.where([True, False, True], np.arange(3), np.ones((2, 1)))
    np.testing.assert_array_equal(value, expected)
    assert out.dtype == "float64" and out.type.shape == (2, 3)  # int32 with float32 -> float64


def test_maximum_ties_give_gradient_to_both():
    x, y = T.dvector("x"), T.dvector("y")
    values = {x: np.array([1.0, 2.0]), y: np.array([1.0, 3.0])}
    gx, gy = evaluate(grad(T.maximum(x, y).sum(), [x, y]), values)
    np.testing.assert_array_equal(gx, [1, 0])
    np.testing.assert_array_equal(gy, [1, 1])


def test_abs_gradient_is_sign():
    x = T.dvector("x")
    (g,) = evaluate([grad(T.abs(x).sum(), x)], {x: np.array([-2.0, 0.0, 3.0])})
    np.testing.assert_array_equal(g, [-1, 0, 1])


@pytest.mark.parametrize(
    "fn", [T.floor, T.ceil, T.round, T.sgn, lambda x: T.int_div(x, 2.0), T.trunc]
)
def test_piecewise_constant_ops_have_zero_gradient(fn):
    x = T.dvector("x")
    (g,) = evaluate([grad(fn(x).sum() + x.sum() * 0, x)], {x: np.array([0.3, 1.7])})
    np.testing.assert_array_equal(g, [0.0, 0.0])


def test_comparisons_and_isnan_are_bool():
    x = T.fmatrix("x")
    for out in (x < 1, x <= 1, x > 1, x >= 1, T.eq(x, 1), T.neq(x, 1), T.isnan(x), T.isinf(x)):
        assert out.dtype == "bool"
    values = np.array([np.nan, np.inf, -np.inf, 1.0], dtype="float32")
    v = T.fvector("v")
    np.testing.assert_array_equal(T.isnan(v).eval({v: values}), np.isnan(values))
    np.testing.assert_array_equal(T.isinf(v).eval({v: values}), np.isinf(values))


def test_isclose():
    a, b = T.dvector("a"), T.dvector("b")
    va = np.array([1.0, 1.0, np.nan, np.inf, 2.0])
    vb = np.array([1.0 + 1e-9, 1.1, np.nan, np.inf, 2.0 + 1e-3])
    np.testing.assert_array_equal(T.isclose(a, b).eval({a: va, b: vb}), np.isclose(va, vb))
    np.testing.assert_array_equal(T.isclose(a, b, equal_nan=True).eval({a: va, b: vb}),
                                  np.isclose(va, vb, equal_nan=True))
    assert not T.allclose(a, b).eval({a: va, b: vb})


def test_round_modes():
    x = T.dvector("x")
    v = np.array([-2.5, -1.5, -0.5, 0.5, 1.5, 2.5, 0.4])
    np.testing.assert_array_equal(T.round(x).eval({x: v}), np.round(v))
    even = T.round(x, mode="half_to_even").eval({x: v})
    np.testing.assert_array_equal(even, [-2, -2, -0, 0, 2, 2, 0])
    away = T.round(x, mode="half_away_from_zero").eval({x: v})
    np.testing.assert_array_equal(away, [-3, -2, -1, 1, 2, 3, 0])
    r = T.iround(x, mode="half_away_from_zero")
    assert r.dtype == "int64"
    np.testing.assert_array_equal(r.eval({x: v}), [-3, -2, -1, 1, 2, 3, 0])
    with pytest.raises(ValueError, match="round: mode must be one of .* got 'nearest'"):
        T.round(x, mode="nearest")


def test_weak_python_scalars_follow_numpy2():
    f, i, b = T.fmatrix("f"), T.imatrix("i"), T.bmatrix("b")
    assert (f * 2.0).dtype == "float32"
    assert (2.0 * f).dtype == "float32"
    assert (f + 1).dtype == "float32"
    assert (i * 2.0).dtype == np.result_type(np.int32, 2.0).name == "float64"
    assert (i + 2).dtype == "int32"
    assert (b + 1).dtype == "int8"
    assert (f ** 2).dtype == "float32"
    assert (i / 2).dtype == "float64"
    assert (b / b).dtype == "float32"  # Theano's upgrade of small ints, where numpy gives float64
    assert (i < 2.5).dtype == "bool"
    value = (i < 2.5).eval({i: np.array([[2, 3]], dtype="int32")})
    np.testing.assert_array_equal(value, [[True, False]])
    assert (f * np.float64(2.0)).dtype == "float64"  # numpy scalars are strong, as in numpy 2


def test_variadic_add_and_mul_fold_to_binary_nodes():
    a, b, c = T.dvector("a"), T.dvector("b"), T.dvector("c")
    s = T.add(a, b, c)
    assert isinstance(s.op, T.Add) and isinstance(s.inputs[0].op, T.Add) and s.inputs[1] is c
    va, vb, vc = np.ones(2), np.full(2, 2.0), np.full(2, 4.0)
    np.testing.assert_array_equal(s.eval({a: va, b: vb, c: vc}), va + vb + vc)
    np.testing.assert_array_equal(T.mul(a, b, c).eval({a: va, b: vb, c: vc}), va * vb * vc)
    assert T.add(a) is a
    check_grad(lambda x, y, z: T.mul(x, y, z), [RNG.normal(size=3) for _ in range(3)])


def test_operators_dispatch_to_the_ops():
    x, y = T.imatrix("x"), T.imatrix("y")
    assert isinstance((x // y).op, T.IntDiv)
    assert isinstance((x % y).op, T.Mod)
    assert isinstance((x ** y).op, T.Pow)
    assert isinstance((x & y).op, T.And) and isinstance((x | y).op, T.Or)
    assert isinstance((x ^ y).op, T.Xor) and isinstance((~x).op, T.Invert)
    assert isinstance((-x).op, T.Neg) and isinstance(abs(x).op, T.Abs)
    assert T.pow is T.pow_ and T.abs is T.abs_ and T.square is T.sqr and T.inv is T.reciprocal
    assert isinstance((3 - x).op, T.Sub) and (3 - x).inputs[1] is x


def test_complex_parts():
    z = T.zvector("z")
    v = np.array([1 + 2j, -3 - 0.5j])
    for fn, ref, dtype in [(T.real, np.real, "float64"), (T.imag, np.imag, "float64"),
                           (T.conj, np.conj, "complex128"), (T.angle, np.angle, "float64"),
                           (T.abs, np.abs, "float64")]:
        out = fn(z)
        assert out.dtype == dtype
        np.testing.assert_allclose(out.eval({z: v}), ref(v))
    assert T.real(T.cvector()).dtype == "float32"


def test_broadcast_error_names_the_shapes():
    x = T.tensor(dtype="float32", shape=(2, 3), name="x")
    y = T.tensor(dtype="float32", shape=(2, 4), name="y")
    message = r"Add: shapes cannot be broadcast.*axis 1: x with shape \(2, 3\), y with shape \(2, 4"
    with pytest.raises(ValueError, match=message):
        x + y
    with pytest.raises(ValueError, match=r"Maximum: .*x with shape \(2, 3\)"):
        T.maximum(x, y)


def test_bitwise_on_floats_is_a_type_error():
    x, i = T.fmatrix("x"), T.imatrix("i")
    message = "And: bitwise ops need integer or bool inputs, got dtypes float32, int32"
    with pytest.raises(TypeError, match=message):
        x & i
    with pytest.raises(TypeError, match="Invert: bitwise ops need integer or bool inputs"):
        ~x


def test_wrong_arity_is_reported():
    with pytest.raises(TypeError, match="Sub takes 2 inputs, got 3"):
        T.sub(T.dvector(), T.dvector(), T.dvector())


def test_gradient_shaping_ops():
    x = T.dvector("x")
    v = np.array([1.0, -2.0, 3.0])
    cost = (T.zero_grad(x) * x).sum()
    np.testing.assert_array_equal(grad(cost, x).eval({x: v}), v)  # only the right factor counts
    cost = (T.disconnected_grad(x) * x).sum()
    np.testing.assert_array_equal(grad(cost, x).eval({x: v}), v)
    np.testing.assert_array_equal(T.stop_gradient(x).eval({x: v}), v)
    np.testing.assert_array_equal(grad(T.grad_clip(x, -1, 1).sum() * 5, x).eval({x: v}), [1, 1, 1])
    clipped = grad((T.grad_clip(x, -1, 1) * [0.5, -3, 2]).sum(), x)
    np.testing.assert_array_equal(clipped.eval({x: v}), [0.5, -1, 1])
    np.testing.assert_array_equal(grad(T.grad_scale(x, 3.0).sum(), x).eval({x: v}), [3, 3, 3])
    zero = grad(T.zero_grad(x).sum() + x.sum() * 0, x)
    np.testing.assert_array_equal(zero.eval({x: v}), [0, 0, 0])
    with pytest.raises(ValueError, match="grad_clip: lower_bound 2 is above upper_bound 1"):
        T.grad_clip(x, 2, 1)


def test_largest_and_smallest():
    a, b, c = T.dvector("a"), T.dvector("b"), T.dvector("c")
    va, vb, vc = RNG.normal(size=(3, 4))
    got = evaluate([T.largest(a, b, c), T.smallest(a, b, c)], {a: va, b: vb, c: vc})
    np.testing.assert_array_equal(got[0], np.maximum(np.maximum(va, vb), vc))
    np.testing.assert_array_equal(got[1], np.minimum(np.minimum(va, vb), vc))


def test_mod_and_int_div_follow_numpy_signs():
    a, b = T.ivector("a"), T.ivector("b")
    va, vb = np.array([7, -7, 7, -7], dtype="int32"), np.array([2, 2, -2, -2], dtype="int32")
    np.testing.assert_array_equal((a % b).eval({a: va, b: vb}), va % vb)
    np.testing.assert_array_equal((a // b).eval({a: va, b: vb}), va // vb)
    np.testing.assert_array_equal(T.ceil_intdiv(a, b).eval({a: va, b: vb}), -(-va // vb))


def test_unknown_static_shapes_stay_unknown():
    x, r = T.dmatrix("x"), T.drow("r")
    assert (x + r).type.shape == (None, None)
    assert (r * r).type.shape == (1, None)
    t = T.tensor(dtype="float64", shape=(None, 1, 5))
    assert (t + T.tensor(dtype="float64", shape=(3, 1))).type.shape == (None, 3, 5)


# --- random expressions: dtype and value agree with numpy 2 evaluating the same program -----------

BINARY_PROGRAM = [(T.add, np.add), (T.sub, np.subtract), (T.mul, np.multiply),
                  (T.maximum, np.maximum), (T.minimum, np.minimum)]
UNARY_PROGRAM = [(T.neg, np.negative), (T.abs, np.abs), (T.sqr, np.square)]
FLOAT_PROGRAM = [(T.tanh, np.tanh), (T.sin, np.sin)]  # only on floats: ints upgrade as Theano
SCALARS = [2, -3, 1.5, 0.25]
PROGRAM_DTYPES = ["float32", "float64", "int8", "int32", "int64", "uint8"]
PROGRAM_SHAPES = [(3, 1), (1, 4), (3, 4), (4,)]


@st.composite
def programs(draw):
    leaves = [(draw(st.sampled_from(PROGRAM_DTYPES)), draw(st.sampled_from(PROGRAM_SHAPES)))
              for _ in range(3)]
    steps = draw(st.lists(st.tuples(st.integers(0, 3), st.integers(0, 99), st.integers(0, 99),
                                    st.integers(0, 99)), min_size=1, max_size=6))
    return leaves, steps


@settings(max_examples=60, deadline=None, derandomize=True)
@given(programs())
def test_random_elementwise_programs_match_numpy(program):
    leaves, steps = program
    arrays = [sample("real", shape, dtype) for dtype, shape in leaves]
    symbols = [input_var(TensorType(d, shape), f"x{k}") for k, (d, shape) in enumerate(leaves)]
    values = list(arrays)
    with np.errstate(all="ignore"):
        for kind, a, b, c in steps:
            i, j = a % len(symbols), b % len(symbols)
            if kind == 0:
                fn, ref = BINARY_PROGRAM[c % len(BINARY_PROGRAM)]
                symbols.append(fn(symbols[i], symbols[j]))
                values.append(ref(values[i], values[j]))
            elif kind == 1:
                fn, ref = UNARY_PROGRAM[c % len(UNARY_PROGRAM)]
                symbols.append(fn(symbols[i]))
                values.append(ref(values[i]))
            elif kind == 2 and symbols[i].dtype.startswith("float"):
                fn, ref = FLOAT_PROGRAM[c % len(FLOAT_PROGRAM)]
                symbols.append(fn(symbols[i]))
                values.append(ref(values[i]))
            else:  # a weakly typed Python scalar
                scalar = SCALARS[c % len(SCALARS)]
                if isinstance(scalar, int) and symbols[i].dtype == "uint8":
                    scalar = abs(scalar)
                symbols.append(symbols[i] * scalar)
                values.append(values[i] * scalar)
        got = evaluate([symbols[-1]], dict(zip(symbols[:3], arrays)))[0]
    expected = np.asarray(values[-1])
    assert symbols[-1].dtype == expected.dtype.name
    assert symbols[-1].type.shape == expected.shape
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)
