"""Every rewrite rule: the graph it produces (`is` the expected graph) and equal values with it on and off."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
import pytest

import theanine
import theanine.tensor as T
from theanine.compiler.pipeline import optimize
from theanine.graph.evaluate import evaluate
from theanine.graph.ops.blas import Gemm, Ger, MaxAndArgmax
from theanine.graph.ops.composite import Composite, Proj
from theanine.graph.ops.linalg import Dot
from theanine.graph.ops.nnet import LogSoftmax, SelectClass, Softplus
from theanine.graph.type import TensorType
from theanine.graph.var import Constant, Var, input_var, toposort

RNG = np.random.default_rng(7)


def dmat(name, shape=(3, 4)):
    return input_var(TensorType("float64", (None,) * len(shape)), name), shape


def optimized(expr, exclude=""):
    """The pipeline's result without fusion (so the rule's own output is visible)."""
    with theanine.config.change_flags(optimizer_excluding=":".join(filter(None, ["fuse", exclude]))):
        return optimize([expr])[0]


def values_for(inputs, shapes, positive=False, labels=None):
    out = {}
    for x, shape in zip(inputs, shapes):
        if x.dtype.startswith("int"):
            out[x] = labels
        else:
            v = RNG.uniform(0.5, 2.0, size=shape) if positive else RNG.normal(size=shape)
            out[x] = v.astype(x.dtype)
    return out


@dataclass
class Case:
    rule: str
    build: Callable  # () -> (inputs, shapes, expr, expected)
    positive: bool = False
    also_exclude: str = ""  # rules that reach the same result another way

    def __str__(self):
        return self.rule


def _case_mul_one():
    (x, s) = dmat("x")
    return [x], [s], x * 1.0, x


def _case_add_zero():
    (x, s) = dmat("x")
    return [x], [s], 0.0 + x, x


def _case_neg_neg():
    (x, s) = dmat("x")
    return [x], [s], -(-x), x


def _case_exp_log():
    (x, s) = dmat("x")
    return [x], [s], T.exp(T.log(x)), x


def _case_log_exp():
    (x, s) = dmat("x")
    return [x], [s], T.log(T.exp(x)), x


def _case_dimshuffle_chain():
    (x, s) = dmat("x")
    return [x], [s], x.T.T, x


def _case_dimshuffle_compose():
    (x, s) = dmat("x", (2, 3, 4))
    return [x], [s], x.dimshuffle(2, 0, 1).dimshuffle(1, 2, 0), x


def _case_reshape_reshape():
    (x, s) = dmat("x", (2, 3, 4))
    inner = x.reshape((6, 4))
    expr = inner.reshape((4, 6))
    return [x], [s], expr, Var(expr.op, (x, expr.inputs[1]))


def _row_batch(name="x"):
    """A (rows, 1, columns) input whose middle axis is typed broadcastable."""
    return input_var(TensorType("float64", (None, 1, None)), name), (3, 1, 4)


def _case_sum_broadcastable():
    x, s = _row_batch()
    # summing the size-1 axis is a dimshuffle dropping it
    return [x], [s], T.sum(x, axis=1), x.dimshuffle(0, 2)


def _case_sum_partly_broadcastable():
    x, s = _row_batch()
    return [x], [s], T.sum(x, axis=(0, 1)), T.sum(x.dimshuffle(0, 2), axis=0)


def _case_max_keepdims_broadcastable():
    x, s = _row_batch()
    return [x], [s], T.max(x, axis=1, keepdims=True), x


def _case_prod_keepdims_partly():
    x, s = _row_batch()
    return [x], [s], T.prod(x, axis=(1, 2), keepdims=True), T.prod(x, axis=2, keepdims=True)


def _case_sub_self():
    (x, s) = dmat("x")
    return [x], [s], x - x, x * T.constant(np.zeros((1, 1)), dtype="float64")


def _case_constants_last():
    (x, s) = dmat("x")
    expr = T.maximum(2.0, x)
    return [x], [s], expr, Var(expr.op, (x, T.constant(np.full((1, 1), 2.0))))


def _case_fold_constants():
    (x, s) = dmat("x")
    expr = x * (T.constant(2.0, dtype="float64") * T.constant(3.0, dtype="float64"))
    return [x], [s], expr, None


def _case_shape_static():
    x = input_var(TensorType("float64", (3, 4)), "x")
    expr = T.cast(x.shape[1], "float64") * x
    return [x], [(3, 4)], expr, x * T.constant(np.full((1, 1), 4.0))


def _case_shape_of_elemwise():
    (x, s) = dmat("x")
    expr = T.shape(T.exp(x) + x)
    return [x], [s], expr, T.shape(x)


def _case_fill_of_elemwise():
    (x, s), (y, _) = dmat("x"), dmat("y")
    # zeros_like of an elementwise result reads its shape from a leaf input of the same shape
    expr = T.zeros_like(T.exp(y) * x) + y
    return [x, y], [s, s], expr, optimized(T.zeros_like(x) + y)


def _case_log_softmax():
    (x, s) = dmat("x")
    return [x], [s], T.log(T.nnet.softmax(x)), Var(LogSoftmax(1), (x,))


def _case_log_sigmoid():
    (x, s) = dmat("x")
    return [x], [s], T.log(T.nnet.sigmoid(x)), -Var(Softplus(), (-x,))


def _case_log_one_minus_sigmoid():
    (x, s) = dmat("x")
    return [x], [s], T.log(1 - T.nnet.sigmoid(x)), -Var(Softplus(), (x,))


def _case_softplus():
    (x, s) = dmat("x")
    return [x], [s], T.log(1 + T.exp(x)), Var(Softplus(), (x,))


def _case_log1p():
    (x, s) = dmat("x")
    return [x], [s], T.log(1 + x), T.log1p(x)


def _case_expm1():
    (x, s) = dmat("x")
    return [x], [s], T.exp(x) - 1, T.expm1(x)


def _case_pow_sqr():
    (x, s) = dmat("x")
    return [x], [s], x**2, T.sqr(x)


def _case_pow_sqrt():
    (x, s) = dmat("x")
    return [x], [s], x**0.5, T.sqrt(x)


def _case_pow_reciprocal():
    (x, s) = dmat("x")
    return [x], [s], x**-1, T.reciprocal(x)


def _case_reshape_same():
    x = input_var(TensorType("float64", (3, 4)), "x")
    return [x], [(3, 4)], T.exp(x).reshape((3, 4)), T.exp(x)


def _case_flatten_add():
    (x, s) = dmat("x")
    expr = (T.exp(x) + 2.0) + 3.0
    return [x], [s], expr, T.exp(x) + T.constant(np.full((1, 1), 5.0))


def _case_flatten_mul():
    (x, s) = dmat("x")
    expr = (T.exp(x) * 2.0) * 3.0
    return [x], [s], expr, T.exp(x) * T.constant(np.full((1, 1), 6.0))


def _case_shape_of_softmax():
    (x, s) = dmat("x")
    return [x], [s], T.shape(T.nnet.softmax(x)), T.shape(x)


def _case_remove_zero_grad():
    (x, s) = dmat("x")
    return [x], [s], T.exp(theanine.gradient.zero_grad(x)), T.exp(x)


def _case_dimshuffle_identity():
    (x, s) = dmat("x")
    expr = Var(T.DimShuffle((0, 1)), (T.exp(x),))
    return [x], [s], expr, T.exp(x)


def _case_pow_cube():
    (x, s) = dmat("x")
    return [x], [s], x**3, T.sqr(x) * x


def _case_pow_rsqrt():
    (x, s) = dmat("x")
    return [x], [s], x**-0.5, T.reciprocal(T.sqrt(x))


CASES = [
    Case("reshape_same", _case_reshape_same),
    Case("flatten_add", _case_flatten_add, also_exclude="fold_constants"),
    Case("flatten_mul", _case_flatten_mul, also_exclude="fold_constants"),
    Case("shape_of_shape_preserving", _case_shape_of_softmax),
    Case("remove_zero_grad", _case_remove_zero_grad),
    Case("dimshuffle_identity", _case_dimshuffle_identity),
    Case("pow_specialize", _case_pow_cube),
    Case("pow_specialize", _case_pow_rsqrt, positive=True),
    Case("mul_one", _case_mul_one),
    Case("add_zero", _case_add_zero),
    Case("neg_neg", _case_neg_neg),
    Case("exp_log", _case_exp_log, positive=True),
    Case("log_exp", _case_log_exp),
    Case("dimshuffle_chain", _case_dimshuffle_chain),
    Case("dimshuffle_chain", _case_dimshuffle_compose),
    Case("reshape_reshape", _case_reshape_reshape),
    Case("reduce_broadcastable", _case_sum_broadcastable),
    Case("reduce_broadcastable", _case_sum_partly_broadcastable),
    Case("reduce_broadcastable", _case_max_keepdims_broadcastable),
    Case("reduce_broadcastable", _case_prod_keepdims_partly),
    Case("sub_self", _case_sub_self),
    Case("constants_last", _case_constants_last),
    Case("shape_static", _case_shape_static, also_exclude="shape_entry_static"),
    Case("shape_of_elemwise", _case_shape_of_elemwise),
    Case("fill_of_elemwise", _case_fill_of_elemwise),
    Case("log_softmax", _case_log_softmax),
    Case("log_sigmoid", _case_log_sigmoid),
    Case("log_one_minus_sigmoid", _case_log_one_minus_sigmoid),
    Case("softplus", _case_softplus),
    Case("log1p", _case_log1p, positive=True),
    Case("expm1", _case_expm1),
    Case("pow_specialize", _case_pow_sqr),
    Case("pow_specialize", _case_pow_sqrt, positive=True),
    Case("pow_specialize", _case_pow_reciprocal, positive=True),
]


@pytest.mark.parametrize("case", CASES, ids=[f"{c.rule}-{k}" for k, c in enumerate(CASES)])
def test_rule_produces_the_expected_graph_and_values(case):
    inputs, shapes, expr, expected = case.build()
    out = optimized(expr)
    assert out is expected, f"{case.rule}: got {theanine.printing.debugprint(out, file='str')}"
    off = optimized(expr, exclude=":".join(filter(None, [case.rule, case.also_exclude])))
    assert off is not expected, f"excluding {case.rule} should leave the graph unrewritten"
    values = values_for(inputs, shapes, case.positive)
    want = evaluate([expr], values)[0]
    np.testing.assert_allclose(evaluate([out], values)[0], want, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(evaluate([off], values)[0], want, rtol=1e-12, atol=1e-12)


def test_fold_constants_leaves_one_constant():
    inputs, shapes, expr, _ = _case_fold_constants()
    out = optimized(expr)
    (x,) = inputs
    constant = out.inputs[1]
    assert out.inputs[0] is x and isinstance(constant.op, Constant) and float(constant.op.data.ravel()[0]) == 6.0


def test_large_constants_are_not_folded():
    big = T.constant(np.ones((200, 200)), dtype="float64")
    expr = big * 2.0
    out = optimized(expr)
    assert not isinstance(out.op, Constant)  # 40,000 elements stay a computation


def test_reduce_broadcastable_keeps_a_widening_sum():
    """A sum that changes the dtype (int8 summed as int64) is left to compute the cast."""
    x = input_var(TensorType("int8", (None, 1)), "x")
    out = optimized(T.sum(x, axis=1))
    assert isinstance(out.op, type(T.sum(x, axis=1).op)) and out.dtype == "int64"
    value = np.array([[100], [-7]], dtype="int8")
    np.testing.assert_array_equal(evaluate([out], {x: value})[0], np.array([100, -7]))


def test_div_self_keeps_nan_semantics():
    (x, s) = dmat("x", (5,))
    out = optimized(x / x)
    assert not any(type(v.op).__name__ == "TrueDiv" for v in toposort([out]))
    value = np.array([2.0, 0.0, np.inf, np.nan, -3.0])
    with np.errstate(all="ignore"):
        np.testing.assert_array_equal(evaluate([out], {x: value})[0], value / value)


def test_sub_self_keeps_nan_for_infinities():
    (x, s) = dmat("x", (3,))
    out = optimized(x - x)
    value = np.array([1.0, np.inf, np.nan])
    with np.errstate(all="ignore"):
        np.testing.assert_array_equal(evaluate([out], {x: value})[0], value - value)


def test_division_by_a_constant_becomes_a_multiplication():
    (x, s) = dmat("x")
    out = optimized(x / 4.0)
    assert type(out.op).__name__ == "Mul"
    value = RNG.normal(size=s)
    np.testing.assert_allclose(evaluate([out], {x: value})[0], value / 4.0)


def test_gemm_from_dot_plus_scaled_matrix():
    a, b, c = (input_var(TensorType("float64", (None, None)), n) for n in "abc")
    alpha = input_var(TensorType("float64", ()), "alpha")
    expr = T.dot(a, b) * alpha + c * 0.5
    out = optimized(expr)
    assert isinstance(out.op, Gemm) and out.inputs[2] is a and out.inputs[3] is b
    values = {a: RNG.normal(size=(3, 5)), b: RNG.normal(size=(5, 4)), c: RNG.normal(size=(3, 4)), alpha: np.array(1.5)}
    np.testing.assert_allclose(evaluate([out], values)[0], evaluate([expr], values)[0])
    assert not isinstance(optimized(expr, exclude="gemm").op, Gemm)


@pytest.mark.parametrize("mode", ["py", "numba"])
def test_a_bias_added_to_a_tensordot_over_rows_becomes_one_gemm(mode):
    """x (3-d) @ W + b: one Gemm on x's rows with b as its beta term, no Add pass; and the
    product's shape, read for the step count of a loop, is taken from the operands."""
    x = input_var(TensorType("float32", (None, None, None)), "x")
    w = input_var(TensorType("float32", (None, None)), "w")
    b = input_var(TensorType("float32", (None,)), "b")
    expr = T.dot(x.dimshuffle(1, 0, 2), w) + b
    out = optimized(expr)
    ops = [type(v.op).__name__ for v in toposort([out]) if v.inputs]
    assert "Gemm" in ops and "Add" not in ops and "TensorDot" not in ops
    assert "Gemm" not in [type(v.op).__name__ for v in toposort([optimized(expr, "gemm_rows_bias")])]
    xv = RNG.normal(size=(4, 5, 3)).astype("float32")
    wv = RNG.normal(size=(3, 6)).astype("float32")
    bv = RNG.normal(size=6).astype("float32")
    want = np.einsum("abk,kn->ban", xv.astype("float64"), wv) + bv
    f = theanine.function([x, w, b], [expr, expr.shape[0]], mode=mode)
    got, steps = f(xv, wv, bv)
    assert got.shape == (5, 4, 6) and steps == 5
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    shape = optimized(T.shape(T.tensordot(x, w, [[2], [0]])))
    assert "TensorDot" not in [type(v.op).__name__ for v in toposort([shape])]
    assert list(evaluate([shape], {x: xv, w: wv})[0]) == [4, 5, 6]


def test_gemm_for_an_sgd_update():
    w = theanine.shared(RNG.normal(size=(4, 3)), name="w")
    x, d = (input_var(TensorType("float64", (None, None)), n) for n in "xd")
    lr = input_var(TensorType("float64", ()), "lr")
    expr = w - lr * T.dot(x.T, d)
    out = optimized(expr)
    assert isinstance(out.op, Gemm) and out.inputs[0] is w
    values = {x: RNG.normal(size=(5, 4)), d: RNG.normal(size=(5, 3)), lr: np.array(0.1)}
    np.testing.assert_allclose(evaluate([out], values)[0], evaluate([expr], values)[0])


def test_gemv_and_ger():
    m = input_var(TensorType("float64", (None, None)), "m")
    v, y = (input_var(TensorType("float64", (None,)), n) for n in "vy")
    gemv = optimized(T.dot(m, v) + y)
    assert isinstance(gemv.op, Gemm)
    ger = optimized(m + T.outer(v, y))
    assert isinstance(ger.op, Ger)
    values = {m: RNG.normal(size=(3, 4)), v: RNG.normal(size=(4,)), y: RNG.normal(size=(3,))}
    np.testing.assert_allclose(evaluate([gemv], values)[0], values[m] @ values[v] + values[y])
    values2 = {m: RNG.normal(size=(3, 4)), v: RNG.normal(size=(3,)), y: RNG.normal(size=(4,))}
    np.testing.assert_allclose(evaluate([ger], values2)[0], values2[m] + np.outer(values2[v], values2[y]))


def test_sum_of_product_of_vectors_is_a_dot():
    v, y = (input_var(TensorType("float64", (None,)), n) for n in "vy")
    out = optimized(T.sum(v * y))
    assert isinstance(out.op, Dot) and out.inputs == (v, y)
    values = {v: RNG.normal(size=6), y: RNG.normal(size=6)}
    np.testing.assert_allclose(evaluate([out], values)[0], values[v] @ values[y])


def test_max_and_argmax_computed_once():
    (x, s) = dmat("x")
    f = theanine.function([x], [T.max(x, axis=1), T.argmax(x, axis=1)])
    kinds = [type(n.op) for n in f.maker.fgraph.toposort()]
    assert kinds.count(MaxAndArgmax) == 1 and kinds.count(Proj) == 2
    value = RNG.normal(size=s)
    mx, am = f(value)
    np.testing.assert_array_equal(mx, value.max(axis=1))
    np.testing.assert_array_equal(am, value.argmax(axis=1))


def test_crossentropy_forms_become_log_softmax():
    (z, s) = dmat("z")
    y = input_var(TensorType("int32", (None,)), "y")
    indexed = -T.log(T.nnet.softmax(z))[T.arange(y.shape[0]), y]
    selected = T.nnet.categorical_crossentropy(T.nnet.softmax(z), y)
    for expr in (indexed, selected):
        out = optimized(expr)
        kinds = {type(v.op) for v in toposort([out])}
        assert LogSoftmax in kinds and "Softmax" not in {k.__name__ for k in kinds}
    assert SelectClass in {type(v.op) for v in toposort([optimized(selected)])}


@pytest.mark.parametrize("form", ["indexed", "categorical"])
def test_extreme_logits_give_finite_values_and_gradients(form):
    z = T.dmatrix("z")
    y = T.ivector("y")
    p = T.nnet.softmax(z)
    if form == "indexed":
        cost = -T.mean(T.log(p)[T.arange(y.shape[0]), y])
    else:
        cost = T.mean(T.nnet.categorical_crossentropy(p, y))
    f = theanine.function([z, y], [cost, T.grad(cost, z)])
    logits = np.array([[1000.0, -1000.0, 0.0], [-1000.0, 1000.0, 0.0]])
    value, gradient = f(logits, np.array([1, 1], dtype="int32"))
    assert value == pytest.approx(1000.0)
    np.testing.assert_allclose(gradient, [[0.5, -0.5, 0.0], [0.0, 0.0, 0.0]], atol=1e-12)


def test_sigmoid_cross_entropy_on_extreme_logits():
    x, t = T.dvector("x"), T.dvector("t")
    cost = T.sum(T.nnet.binary_crossentropy(T.nnet.sigmoid(x), t))
    f = theanine.function([x, t], [cost, T.grad(cost, x)])
    logits, targets = np.array([1000.0, -1000.0, 0.0]), np.array([0.0, 1.0, 1.0])
    value, gradient = f(logits, targets)
    assert value == pytest.approx(2000 + np.log(2))
    np.testing.assert_allclose(gradient, [1.0, -1.0, -0.5])


def test_logsumexp_is_stable():
    x = T.dmatrix("x")
    out = T.log(T.sum(T.exp(x), axis=1))
    f = theanine.function([x], [out, T.grad(T.sum(out), x)])
    value, gradient = f(np.array([[1000.0, 1000.0], [-1000.0, -1000.0]]))
    np.testing.assert_allclose(value, [1000 + np.log(2), -1000 + np.log(2)])
    np.testing.assert_allclose(gradient, np.full((2, 2), 0.5))


def test_fusion_of_the_issue_chain_gives_one_node():
    x, w, b, y = (T.fmatrix(n) for n in "xwby")
    expr = T.tanh(x * w + b) * T.nnet.sigmoid(y) + 0.5 * x**2
    f = theanine.function([x, w, b, y], expr)
    nodes = f.maker.fgraph.toposort()
    assert len(nodes) == 1 and isinstance(nodes[0].op, Composite)
    values = [RNG.normal(size=(3, 4)).astype("float32") for _ in range(4)]
    xv, wv, bv, yv = values
    want = np.tanh(xv * wv + bv) / (1 + np.exp(-yv)) + 0.5 * xv**2
    np.testing.assert_allclose(f(*values), want, rtol=1e-5)


def test_fusion_with_broadcasting_and_sibling_outputs():
    x = T.dmatrix("x")
    b = T.dvector("b")
    f = theanine.function([x, b], [T.exp(x + b), T.log(T.abs_(x) + 1.0) * 2.0])
    kinds = [type(n.op) for n in f.maker.fgraph.toposort()]
    assert kinds.count(Composite) == 1 and kinds.count(Proj) == 2
    xv, bv = RNG.normal(size=(3, 4)), RNG.normal(size=4)
    first, second = f(xv, bv)
    np.testing.assert_allclose(first, np.exp(xv + bv))
    np.testing.assert_allclose(second, np.log(np.abs(xv) + 1) * 2)


def test_optimizer_flags():
    x = T.dvector("x")
    expr = T.exp(x) * 1.0 + 0.0
    with theanine.config.change_flags(optimizer="None"):
        raw = theanine.function([x], expr)
    assert len(raw.maker.fgraph.toposort()) > 1
    with theanine.config.change_flags(optimizer="fast_compile"):
        fast = theanine.function([x], expr)
    assert [type(n.op).__name__ for n in fast.maker.fgraph.toposort()] == ["Exp"]
    with theanine.config.change_flags(optimizer_excluding="mul_one"):
        partial = optimize([T.exp(x) * 1.0])[0]
    assert type(partial.op).__name__ != "Exp"
    value = np.array([0.5, 1.0])
    for f in (raw, fast):
        np.testing.assert_allclose(f(value), np.exp(value))


def test_rewrite_report_names_fired_rules():
    x = T.dvector("x")
    f = theanine.function([x], T.log(T.exp(x)) * 1.0, name="report_me")
    text = theanine.printing.rewrite_report(f, file="str")
    assert "report_me" in text and "log_exp" in text and "fuse" in text


def _fused(outputs):
    from theanine.compiler.fuse import fuse_elementwise

    return fuse_elementwise(outputs)


def test_a_consumer_and_the_node_it_reads_become_one_loop():
    """y = sigmoid(x) * w is stored (an output) and read again by y * y + x: one Composite
    computes both, y kept as its output, y * y reading it in the loop."""
    x, w = dmat("x")[0], dmat("w")[0]
    y = T.nnet.sigmoid(x) * w
    z = y * y + x
    outs = _fused([y, z])
    nodes = [v for v in toposort(outs) if v.inputs]
    (composite,) = [v for v in nodes if isinstance(v.op, Composite)]
    assert all(isinstance(o.op, Proj) and o.inputs[0] is composite for o in outs)
    assert len(composite.op.outputs) == 2 and set(composite.inputs) == {x, w}
    values = values_for([x, w], [(3, 4), (3, 4)])
    for got, want in zip(evaluate(outs, values), evaluate([y, z], values)):
        np.testing.assert_allclose(got, want, rtol=1e-12)
    # the numba backend computes it in one loop with the same values
    f = theanine.function([x, w], [y, z], mode="numba")
    for got, want in zip(f(values[x], values[w]), evaluate([y, z], values)):
        np.testing.assert_allclose(got, want, rtol=1e-12)


def test_a_chain_of_stored_results_merges_in_one_pass():
    """Each link of a chain is also returned: one call of merge_consumers makes the whole chain
    one loop with all four results as its outputs."""
    from theanine.compiler.fuse import merge_consumers

    x = dmat("x")[0]
    a = x * 2.0
    b = a + 1.0
    c = b * b
    d = c - a
    outs = merge_consumers([a, b, c, d])
    loops = {o.inputs[0] for o in outs if isinstance(o.op, Proj)}
    assert len(loops) == 1 and len(next(iter(loops)).op.outputs) == 4
    values = values_for([x], [(3, 4)])
    for got, want in zip(evaluate(outs, values), evaluate([a, b, c, d], values)):
        np.testing.assert_allclose(got, want, rtol=1e-12)


def test_merged_loops_hold_at_most_two_costly_ops():
    """tanh(tanh(tanh(x))), each stored: the first two merge, the third stays a loop of its own
    (five transcendental functions in one loop spilled registers and ran slower, measured)."""
    from theanine.compiler.fuse import MERGED_COSTLY_OPS

    x = dmat("x")[0]
    a = T.tanh(x)
    b = T.tanh(a)
    c = T.tanh(b)
    outs = _fused([a, b, c])
    loops = {o.inputs[0] if isinstance(o.op, Proj) else o for o in outs}
    assert MERGED_COSTLY_OPS == 2 and len(loops) == 2
    values = values_for([x], [(3, 4)])
    for got, want in zip(evaluate(outs, values), evaluate([a, b, c], values)):
        np.testing.assert_allclose(got, want, rtol=1e-12)


def test_a_consumer_feeding_only_a_reduction_is_left_to_the_reduction():
    x, w = dmat("x")[0], dmat("w")[0]
    y = T.exp(x) + w
    total = T.sum(y * x)  # y * x is read only by the sum: fused into it, never stored
    f = theanine.function([x, w], [y, total], mode="numba")
    kinds = [type(n.op).__name__ for n in f.maker.fgraph.toposort()]
    assert "FusedReduce" in kinds
    values = values_for([x, w], [(3, 4), (3, 4)])
    got = f(values[x], values[w])
    np.testing.assert_allclose(got[1], np.sum((np.exp(values[x]) + values[w]) * values[x]))


def test_no_merge_when_another_input_is_computed_from_the_producer():
    """z reads y and dot(y, m): merging y's loop with z's would need the product before the
    loop that computes y: they stay two loops."""
    x, m = dmat("x")[0], dmat("m", (4, 4))[0]
    y = T.exp(x)
    z = y * T.dot(y, m) + 1.0
    outs = _fused([y, z])
    assert not any(isinstance(v.op, Proj) for v in toposort(outs))
    values = values_for([x, m], [(3, 4), (4, 4)])
    for got, want in zip(evaluate(outs, values), evaluate([y, z], values)):
        np.testing.assert_allclose(got, want, rtol=1e-12)


def test_sibling_merging_never_makes_a_cycle():
    """Two sibling groups that depend on each other through different members (batch norm's graph)."""
    x = T.fmatrix("x")
    m0, v0, rm, rv = (theanine.shared(np.ones(4, dtype="float32"), name=n) for n in ("m0", "v0", "rm", "rv"))
    batch_mean = x.mean(0)
    batch_inv_std = T.inv(T.sqrt(x.var(0) + 1e-4))
    out = (x - (m0 + 0 * rm).dimshuffle("x", 0)) * (v0 + 0 * rv).dimshuffle("x", 0)
    updates = [(rm, 0.9 * rm + 0.1 * batch_mean), (rv, 0.9 * rv + 0.1 * batch_inv_std)]
    f = theanine.function([x], out, updates=updates)
    xv = np.arange(12, dtype="float32").reshape(3, 4)
    np.testing.assert_allclose(f(xv), xv - 1)
    np.testing.assert_allclose(rm.get_value(), 0.9 + 0.1 * xv.mean(0), rtol=1e-6)


def test_gemm_is_not_used_when_the_added_matrix_would_enlarge_the_product():
    x = T.tensor("float64", shape=(1, None), name="x")
    y, z = T.dmatrix("y"), T.dmatrix("z")
    out = optimized(T.dot(x, y) + z)
    assert not isinstance(out.op, Gemm)
    f = theanine.function([x, y, z], T.dot(x, y) + z)
    np.testing.assert_allclose(f(np.ones((1, 3)), np.ones((3, 2)), np.ones((4, 2))), np.full((4, 2), 4.0))
