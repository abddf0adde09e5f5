"""ifelse: both branches, laziness (the untaken branch never runs), gradients, errors."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest

import theanine
import theanine.tensor as T
from theanine.compiler.ifelse import ifelse
from theanine.compiler.scan import scan
from theanine.graph.type import TensorType
from theanine.graph.var import Op

from helpers import check_grad


def f64(value):
    """A float64 constant (Python floats would be floatX)."""
    return T.constant(value, dtype="float64")


RNG = np.random.default_rng(3)
CALLS = {"count": 0}


@dataclass(frozen=True)
class Counted(Op):
    """Identity that counts how often it runs."""

    def infer_type(self, x: TensorType) -> TensorType:
        return x

    def perform(self, x):
        CALLS["count"] += 1
        return x.copy()

    def pullback(self, inputs, output, g):
        return (g,)


def test_both_branches_values_dtype_and_static_shape():
    c, x, y = T.lscalar("c"), T.dmatrix("x"), T.dmatrix("y")
    out = ifelse(c, x * 2, y + 1)
    f = theanine.function([c, x, y], out, mode="py")
    a, b = RNG.normal(size=(2, 3)), RNG.normal(size=(2, 3))
    np.testing.assert_allclose(f(1, a, b), a * 2)
    np.testing.assert_allclose(f(0, a, b), b + 1)
    assert out.type == TensorType("float64", (None, None))
    fixed = ifelse(c, T.constant(np.zeros((2, 3))), T.constant(np.ones((2, 4))))
    assert fixed.type.shape == (2, None)  # the sizes both branches agree on stay known
    np.testing.assert_allclose(fixed.eval({c: 0}), np.ones((2, 4)))


def test_list_branches_give_a_list():
    c, x = T.dscalar("c"), T.dvector("x")
    first, second = ifelse(T.gt(c, 0), [x, x.sum()], [x * 3, c])
    f = theanine.function([c, x], [first, second], mode="py")
    values = np.arange(4.0)
    out = f(1.0, values)
    np.testing.assert_allclose(out[0], values)
    assert out[1] == 6.0
    out = f(-2.0, values)
    np.testing.assert_allclose(out[0], values * 3)
    assert out[1] == -2.0


def test_the_untaken_branch_is_never_computed():
    c, x = T.lscalar("c"), T.dvector("x")
    counted = Var_counted(x) * 2
    crashing = x[10]  # raises IndexError when run on a short vector
    f = theanine.function([c, x], ifelse(c, crashing, counted.sum()), mode="py")
    CALLS["count"] = 0
    assert f(0, np.arange(3.0)) == 6.0
    assert CALLS["count"] == 1
    with pytest.raises(IndexError):
        f(1, np.arange(3.0))
    assert CALLS["count"] == 1  # the counted branch did not run for c = 1
    assert f(1, np.arange(12.0)) == 10.0
    assert CALLS["count"] == 1


def Var_counted(x):
    return Counted()(x)


def test_gradients_through_both_branches():
    for sign in (1.0, -1.0):
        check_grad(lambda x, y: ifelse(T.gt(T.constant(sign), 0), T.sin(x) * y, T.exp(y) * x.sum()),
                   [RNG.normal(size=3), RNG.normal(size=3)])
    c, x = T.dscalar("c"), T.dscalar("x")
    f = theanine.function([c, x], theanine.grad(ifelse(T.gt(c, 0), x**2, x**3), x), mode="py")
    assert f(1.0, 3.0) == 6.0 and f(-1.0, 2.0) == 12.0


def test_gradient_branch_is_lazy_too():
    c, x = T.lscalar("c"), T.dvector("x")
    cost = ifelse(c, (Counted()(x) ** 2).sum(), x.sum())
    f = theanine.function([c, x], theanine.grad(cost, x), mode="py")
    CALLS["count"] = 0
    np.testing.assert_allclose(f(0, np.arange(3.0)), np.ones(3))
    assert CALLS["count"] == 0
    np.testing.assert_allclose(f(1, np.arange(3.0)), 2 * np.arange(3.0))
    assert CALLS["count"] >= 1


def test_ifelse_inside_a_scan_step():
    x = T.dvector("x")
    out, _ = scan(lambda a, s: ifelse(T.gt(a, 0), s + a, s * 0.5), sequences=x,
                  outputs_info=f64(1.0))
    values = np.array([1.0, -1.0, 2.0, -3.0])
    expected, s = [], 1.0
    for a in values:
        s = s + a if a > 0 else s * 0.5
        expected.append(s)
    np.testing.assert_allclose(out.eval({x: values}), expected)
    check_grad(lambda x: scan(lambda a, s: ifelse(T.gt(a, 0), s * a, T.sin(s + a)), sequences=x,
                              outputs_info=f64(0.3))[0], [np.array([0.5, -1.0, 2.0])])


def test_errors():
    x, y = T.dvector("x"), T.fvector("y")
    with pytest.raises(TypeError, match="the condition must be a scalar"):
        ifelse(x, x, x)
    with pytest.raises(TypeError, match=r"output 0 of the then branch is x of type float64\[\?\], "
                                        r"of the else "
                                        r"branch y of type float32\[\?\]"):
        ifelse(T.dscalar("c"), x, y)
    message = r"the then branch has 2 output\(s\) and the else branch 1"
    with pytest.raises(ValueError, match=message):
        ifelse(T.dscalar("c"), [x, x], [x])
