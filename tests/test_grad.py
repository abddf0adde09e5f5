"""theanine.gradient: grad options and messages, Lop/Rop, jacobian/hessian, verify_grad."""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
import pytest

import theanine
import theanine.tensor as T
from theanine import gradient
from theanine.graph.type import TensorType
from theanine.graph.var import Op, Var, toposort
from tests.helpers import check_grad

RNG = np.random.default_rng(42)


def ev(outputs, values):
    """Evaluate a Var or list of Vars with the reference interpreter."""
    from theanine.graph.evaluate import evaluate

    single = isinstance(outputs, Var)
    out = evaluate([outputs] if single else list(outputs), values)
    return out[0] if single else out


# --- grad: shapes of the result and options -------------------------------------------------------


def test_grad_single_wrt_returns_var_and_list_returns_list():
    x, y = T.dvector("x"), T.dvector("y")
    cost = T.sum(T.exp(x) * y)
    g = theanine.grad(cost, x)
    assert isinstance(g, Var) and g.type == x.type
    gs = theanine.grad(cost, [x, y])
    assert isinstance(gs, list) and len(gs) == 2
    assert isinstance(T.grad(cost, (x, y)), list)
    xv, yv = RNG.normal(size=3), RNG.normal(size=3)
    gx, gy = ev(gs, {x: xv, y: yv})
    np.testing.assert_allclose(gx, np.exp(xv) * yv)
    np.testing.assert_allclose(gy, np.exp(xv))


def test_grad_of_non_scalar_cost_names_the_cost_and_user_line():
    x = T.dmatrix("x")
    with pytest.raises(TypeError, match=r"cost must be a scalar.*2 dimensions(.|\n)*test_grad\.py"):
        theanine.grad(T.exp(x), x)


def test_grad_of_integer_cost_raises():
    i = T.ivector("i")
    with pytest.raises(TypeError, match="cost must be a float, got dtype int"):
        theanine.grad(T.sum(i), i)


def test_disconnected_raise_names_variable_and_its_line():
    x, y = T.dvector("x"), T.dvector("y")
    cost = T.sum(T.exp(x))
    with pytest.raises(gradient.DisconnectedInputError, match=r"y(.|\n)*test_grad\.py\", line \d+"):
        theanine.grad(cost, [x, y])


def test_disconnected_warn_and_ignore_return_zeros():
    x, y = T.dvector("x"), T.dvector("y")
    cost = T.sum(T.exp(x))
    with pytest.warns(UserWarning, match="not part of the computational graph"):
        gy = theanine.grad(cost, y, disconnected_inputs="warn")
    np.testing.assert_array_equal(ev(gy, {y: np.ones(4)}), np.zeros(4))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        gy = theanine.grad(cost, y, disconnected_inputs="ignore")
    assert ev(gy, {y: np.ones(2)}).shape == (2,)


def test_return_disconnected_none_and_disconnected():
    x, y = T.dvector("x"), T.dvector("y")
    cost = T.sum(T.exp(x))
    gx, gy = theanine.grad(cost, [x, y], disconnected_inputs="ignore", return_disconnected="None")
    assert gy is None and isinstance(gx, Var)
    gy = theanine.grad(cost, y, disconnected_inputs="ignore", return_disconnected="Disconnected")
    assert isinstance(gy, gradient.DisconnectedType)


def test_bad_option_strings_raise():
    x = T.dvector("x")
    expected = "disconnected_inputs must be 'raise', 'warn' or 'ignore', got 'no'"
    with pytest.raises(ValueError, match=expected):
        theanine.grad(T.sum(x), x, disconnected_inputs="no")
    with pytest.raises(ValueError, match="return_disconnected must be"):
        theanine.grad(T.sum(x), x, return_disconnected="zeros")
    with pytest.raises(TypeError, match=r"wrt\[0\] must be a symbolic variable, got ndarray"):
        theanine.grad(T.sum(x), np.ones(3))


def test_consider_constant_blocks_gradient_through_a_variable():
    x = T.dvector("x")
    y = x * 2.0
    cost = T.sum(x * y)
    xv = np.array([1.0, -2.0, 3.0])
    np.testing.assert_allclose(ev(theanine.grad(cost, x), {x: xv}), 4 * xv)
    np.testing.assert_allclose(ev(theanine.grad(cost, x, consider_constant=[y]), {x: xv}), 2 * xv)


def test_known_grads_without_and_with_cost():
    x = T.dvector("x")
    y = T.exp(x)
    g = T.dvector("g")
    xv, gv = np.array([0.5, -1.0]), np.array([2.0, 3.0])
    gx = theanine.grad(None, x, known_grads={y: g})
    np.testing.assert_allclose(ev(gx, {x: xv, g: gv}), gv * np.exp(xv))
    gx = theanine.grad(T.sum(x), x, known_grads={y: g})
    np.testing.assert_allclose(ev(gx, {x: xv, g: gv}), gv * np.exp(xv) + 1)
    with pytest.raises(ValueError, match="known_grads must give at least one gradient"):
        theanine.grad(None, x)
    with pytest.raises(ValueError, match="known_grads for .* has 2 dimensions, expected 1"):
        theanine.grad(None, x, known_grads={y: T.dmatrix()})


def test_wrt_intermediate_variable():
    x = T.dvector("x")
    y = T.exp(x)
    cost = T.sum(y * y)
    xv = np.array([0.1, 0.2])
    np.testing.assert_allclose(ev(theanine.grad(cost, y), {x: xv}), 2 * np.exp(xv))


def test_integer_wrt_gives_float_zeros():
    x, i = T.dvector("x"), T.lvector("i")
    cost = T.sum(x * T.cast(i, "float64"))
    gi = theanine.grad(cost, i)
    assert gi.dtype == theanine.config.floatX
    out = ev(gi, {x: np.ones(3), i: np.arange(3)})
    np.testing.assert_array_equal(out, np.zeros(3))


def test_composite_expression_against_central_differences():
    a, b = RNG.normal(size=(2, 3)), RNG.uniform(1, 2, size=(2, 3))
    check_grad(
        lambda x, y: T.log(T.exp(x) * y + 1.0) / y - T.sum(x, axis=1, keepdims=True) * y, [a, b]
    )


def test_dense_layer_gradient():
    x, w, b = RNG.normal(size=(4, 3)), RNG.normal(size=(3, 5)), RNG.normal(size=(5,))
    check_grad(lambda x, w, b: T.tanh(T.dot(x, w) + b), [x, w, b])


def test_softmax_cross_entropy_gradient():
    softmax, xent = T.nnet.softmax, T.nnet.categorical_crossentropy
    x, w = RNG.normal(size=(4, 3)), RNG.normal(size=(3, 5))
    target = np.eye(5)[[0, 3, 1, 4]]
    check_grad(lambda x, w: T.sum(xent(softmax(T.dot(x, w)), T.constant(target))), [x, w])


def test_missing_pullback_names_op_and_line():
    @dataclass(frozen=True)
    class NoGrad(Op):
        """Identity without a gradient."""

        def infer_type(self, x):
            return x

        def perform(self, x):
            return x

    x = T.dvector("x")
    y = Var(NoGrad(), (x,))
    with pytest.raises(NotImplementedError, match=r"NoGrad(.|\n)*test_grad\.py"):
        theanine.grad(T.sum(y), x)


def test_grad_graph_is_linear_in_forward_size():
    def new_nodes(n):
        x = T.dvector("x")
        h = x
        for k in range(n):
            h = T.exp(h * 0.5) + x if k % 2 else T.log(h * h + 1.0)
        fwd = len(toposort([h]))
        g = theanine.grad(T.sum(h), x)
        return fwd, len(toposort([h, g])) - fwd

    f1, n1 = new_nodes(100)
    f2, n2 = new_nodes(200)
    assert n2 <= 2.2 * n1 and n1 <= 4 * f1


# --- Lop and Rop --------------------------------------------------------------------------------


def test_lop_of_exp():
    x, u = T.dvector("x"), T.dvector("u")
    xv, uv = np.array([0.0, 1.0]), np.array([2.0, -1.0])
    np.testing.assert_allclose(ev(T.Lop(T.exp(x), x, u), {x: xv, u: uv}), uv * np.exp(xv))
    out = T.Lop([T.exp(x)], [x], [u])
    assert isinstance(out, list) and len(out) == 1
    with pytest.raises(ValueError, match="1 outputs but 2 eval_points"):
        T.Lop([T.exp(x)], x, [u, u])


def test_rop_of_product_and_sum_closed_forms():
    x, y, u, v = T.dvector("x"), T.dvector("y"), T.dvector("u"), T.dvector("v")
    xv, yv = np.array([0.1, 0.5]), np.array([2.0, 3.0])
    uv, vv = np.array([1.0, -1.0]), np.array([0.5, 2.0])
    vals = {x: xv, y: yv, u: uv, v: vv}
    jvp = T.Rop(T.exp(x) * y, [x, y], [u, v])
    np.testing.assert_allclose(ev(jvp, vals), np.exp(xv) * yv * uv + np.exp(xv) * vv)
    np.testing.assert_allclose(ev(T.Rop(T.sum(x), x, u), vals), np.sum(uv))
    both = T.Rop([T.sum(x), x * 3.0], x, u)
    np.testing.assert_allclose(ev(both[1], vals), 3 * uv)
    with pytest.raises(ValueError, match="1 wrt variables but 2 eval_points"):
        T.Rop(T.sum(x), x, [u, v])


def test_rop_of_tanh():
    x, v = T.dvector("x"), T.dvector("v")
    xv, vv = np.array([0.3, -0.7, 1.2]), np.array([1.0, 2.0, -3.0])
    jvp = ev(T.Rop(T.tanh(x), x, v), {x: xv, v: vv})
    np.testing.assert_allclose(jvp, (1 - np.tanh(xv) ** 2) * vv)


def test_rop_of_matrix_vector_product_wrt_matrix():
    w, x, v = T.dmatrix("W"), T.dvector("x"), T.dmatrix("V")
    wv, xv, vv = RNG.normal(size=(3, 4)), RNG.normal(size=4), RNG.normal(size=(3, 4))
    np.testing.assert_allclose(ev(T.Rop(T.dot(w, x), w, v), {w: wv, x: xv, v: vv}), vv @ xv)


# --- jacobian and hessian -----------------------------------------------------------------------


def test_jacobian_of_elementwise_is_diagonal():
    x = T.vector("x", dtype="float64", shape=(3,))
    a = np.array([1.0, 2.0, 3.0])
    xv = np.array([0.1, -0.2, 0.3])
    j = gradient.jacobian(T.exp(x) * a, x)
    assert j.type.shape == (3, 3)
    np.testing.assert_allclose(ev(j, {x: xv}), np.diag(np.exp(xv) * a))


def test_jacobian_list_tuple_and_scalar_forms():
    x = T.vector("x", dtype="float64", shape=(2,))
    m = T.matrix("m", dtype="float64", shape=(2, 3))
    y = x * T.sum(m, axis=1)
    jl = gradient.jacobian(y, [x, m])
    jt = gradient.jacobian(y, (x, m))
    assert isinstance(jl, list) and isinstance(jt, tuple)
    xv, mv = np.array([2.0, -1.0]), RNG.normal(size=(2, 3))
    jx, jm = ev(jl, {x: xv, m: mv})
    np.testing.assert_allclose(jx, np.diag(mv.sum(axis=1)))
    expected = np.zeros((2, 2, 3))
    expected[0, 0, :], expected[1, 1, :] = xv[0], xv[1]
    np.testing.assert_allclose(jm, expected)
    np.testing.assert_allclose(ev(gradient.jacobian(T.sum(x * x), x), {x: xv}), 2 * xv)


def test_jacobian_and_hessian_of_unknown_length_use_scan():
    x = T.dvector("x")
    xv = np.array([0.5, -1.0, 2.0])
    np.testing.assert_allclose(ev(gradient.jacobian(T.exp(x), x), {x: xv}), np.diag(np.exp(xv)))
    np.testing.assert_allclose(ev(gradient.hessian(T.sum(x**3), x), {x: xv}), np.diag(6 * xv))


def test_jacobian_errors():
    x = T.dvector("x")
    with pytest.raises(TypeError, match="must be a 0-d or 1-d tensor, got .* 2 dimensions"):
        gradient.jacobian(T.exp(T.dmatrix("m")), x)


def test_hessian_of_weighted_squares_is_diagonal():
    x = T.vector("x", dtype="float64", shape=(3,))
    a = np.array([1.0, -2.0, 0.5])
    h = gradient.hessian(T.sum(x**2 * a), x)
    np.testing.assert_allclose(ev(h, {x: np.array([3.0, 1.0, -1.0])}), np.diag(2 * a))
    assert T.hessian is gradient.hessian and T.jacobian is gradient.jacobian


def test_hessian_of_cubic_and_mixed_terms():
    x = T.vector("x", dtype="float64", shape=(2,))
    cost = T.sum(x * x * x) + T.sum(x) * T.sum(x)
    xv = np.array([0.5, -2.0])
    expected = np.diag(6 * xv) + 2 * np.ones((2, 2))
    np.testing.assert_allclose(ev(gradient.hessian(cost, [x])[0], {x: xv}), expected)


def test_hessian_disconnected_and_errors():
    x = T.vector("x", dtype="float64", shape=(2,))
    y = T.vector("y", dtype="float64", shape=(2,))
    with pytest.raises(gradient.DisconnectedInputError):
        gradient.hessian(T.sum(x * y), x)
    h = gradient.hessian(T.sum(x * y), x, disconnected_inputs="ignore")
    np.testing.assert_array_equal(ev(h, {x: np.ones(2), y: np.ones(2)}), np.zeros((2, 2)))
    with pytest.raises(TypeError, match="each wrt must be a 1-d tensor, got m with 2 dimensions"):
        gradient.hessian(T.sum(x), T.dmatrix("m"))
    with pytest.raises(TypeError, match="hessian: cost must be a scalar"):
        gradient.hessian(x, x)


# --- verify_grad --------------------------------------------------------------------------------


@dataclass(frozen=True)
class WrongSquare(Op):
    """x * x with a deliberately wrong pullback (g * x instead of 2 * g * x)."""

    def infer_type(self, x: TensorType) -> TensorType:
        return x

    def perform(self, x):
        return x * x

    def pullback(self, inputs, output, g):
        return (g * inputs[0],)


def test_verify_grad_passes_on_correct_gradients():
    pt = [RNG.normal(size=(3, 4)), RNG.uniform(1, 2, size=(3, 4))]
    gradient.verify_grad(lambda a, b: T.exp(a) * b / (b + a * a), pt, rng=np.random.RandomState(0))
    pt32 = [p.astype("float32") for p in pt]
    gradient.verify_grad(lambda a, b: T.log(b) * a, pt32, rng=np.random.default_rng(1))
    big = [RNG.normal(size=(20, 10))]  # 200 elements: checked along random directions
    gradient.verify_grad(lambda a: T.exp(a * 0.5), big, n_tests=1, rng=np.random.default_rng(2))


def test_verify_grad_raises_gradient_error_on_wrong_pullback():
    pt = [RNG.uniform(1, 2, size=(2, 3)), RNG.normal(size=(2, 3))]
    with pytest.raises(gradient.verify_grad.E_grad) as info:
        fun = lambda a, b: Var(WrongSquare(), (a,)) + b  # noqa: E731
        gradient.verify_grad(fun, pt, rng=np.random.default_rng(0))
    err = info.value
    assert isinstance(err, gradient.GradientError)
    assert err.arg == 0 and err.shape == (2, 3) and err.abs_tol == 1e-4 and err.rel_tol == 1e-4
    assert err.abs_err > 0.5 and 0.3 < err.rel_err < 0.4  # symbolic x vs numeric 2x: rel = 1/3
    assert "argument 0" in str(err) and f"element {err.err_pos}" in str(err)
    with pytest.raises(gradient.GradientError, match="random direction"):
        gradient.verify_grad(lambda a: Var(WrongSquare(), (a,)), [RNG.uniform(1, 2, size=(10, 10))])


def test_verify_grad_rejects_integer_points_and_custom_tolerance():
    with pytest.raises(TypeError, match="argument 0 has dtype int64"):
        gradient.verify_grad(lambda a: a * 2.0, [np.arange(3)])
    pt = [RNG.uniform(1, 2, size=(3,))]
    gradient.verify_grad(lambda a: Var(WrongSquare(), (a,)), pt, abs_tol=10.0, rel_tol=10.0)


# --- gradient-shaping ops (provided by graph/ops/elemwise.py) -----------------------------------


def test_zero_grad_and_disconnected_grad():
    x = T.dvector("x")
    cost = T.sum(gradient.zero_grad(x) * x)
    xv = np.array([1.0, 2.0])
    np.testing.assert_allclose(ev(theanine.grad(cost, x), {x: xv}), xv)
    np.testing.assert_allclose(ev(gradient.zero_grad(x), {x: xv}), xv)
    cost = T.sum(gradient.disconnected_grad(x) * x)
    np.testing.assert_allclose(ev(theanine.grad(cost, x), {x: xv}), xv)
    with pytest.raises(gradient.DisconnectedInputError):
        theanine.grad(T.sum(gradient.disconnected_grad(x)), x)


def test_grad_clip_and_grad_scale():
    x = T.dvector("x")
    xv = np.array([-3.0, 0.1, 4.0])
    g = theanine.grad(T.sum(gradient.grad_clip(x, -1.0, 1.0) * x), x)
    np.testing.assert_allclose(ev(g, {x: xv}), np.clip(xv, -1, 1) + xv)
    g = theanine.grad(T.sum(gradient.grad_scale(x * x, 0.5)), x)
    np.testing.assert_allclose(ev(g, {x: xv}), xv)


def test_unknown_gradient_helper_name_raises_attribute_error():
    with pytest.raises(AttributeError, match="has no attribute 'nothing'"):
        gradient.nothing  # noqa: B018


def test_numeric_grad_class_and_max_err():
    pt = [np.array([1.0, 2.0]), np.array([[3.0]])]
    ng = gradient.numeric_grad(lambda a, b: np.sum(a * a) * b[0, 0], pt)
    np.testing.assert_allclose(ng.gf[0], [6.0, 12.0], rtol=1e-6)
    np.testing.assert_allclose(ng.gf[1], [[5.0]], rtol=1e-6)
    arg, pos, abs_err, rel_err = ng.max_err([np.array([6.0, 10.0]), np.array([[5.0]])], 1e-4, 1e-4)
    assert (arg, pos) == (0, 1) and abs(abs_err - 2.0) < 1e-4 and abs(rel_err - 2 / 22) < 1e-4


def test_verify_grad_through_compiled_function():
    pt = [RNG.normal(size=(2, 3))]
    gradient.verify_grad(lambda a: T.exp(a) * a, pt, mode="py", rng=np.random.default_rng(3))
    with pytest.raises(gradient.GradientError):
        gradient.verify_grad(lambda a: Var(WrongSquare(), (a,)), pt, mode="py")


def test_grad_with_respect_to_shared_variable():
    w = theanine.shared(np.array([1.0, -2.0, 0.5]), name="w")
    x = T.dvector("x")
    gw = theanine.grad(T.sum(w * w * x), w)
    expected = 2 * np.array([1.0, -2.0, 0.5]) * [1, 2, 3]
    np.testing.assert_allclose(ev(gw, {x: np.array([1.0, 2.0, 3.0])}), expected)
    assert gw.name == "(d<cost>/dw)"


def test_rop_disconnected_outputs_and_bad_eval_points():
    x, y, v = T.dvector("x"), T.dvector("y"), T.dvector("v")
    expected = r"Rop: the output .* does not depend(.|\n)*test_grad"
    with pytest.raises(gradient.DisconnectedInputError, match=expected):
        T.Rop(T.exp(y), x, v)
    with pytest.warns(UserWarning, match="does not depend on any of wrt"):
        zero = T.Rop(T.exp(y), x, v, disconnected_outputs="warn")
    np.testing.assert_array_equal(ev(zero, {y: np.ones(2)}), np.zeros(2))
    assert T.Rop(T.exp(y), x, v, disconnected_outputs="ignore", return_disconnected="None") is None
    out = T.Rop([T.exp(y)], x, v, disconnected_outputs="ignore", return_disconnected="Disconnected")
    assert isinstance(out[0], gradient.DisconnectedType)
    with pytest.raises(ValueError, match=r"eval_points\[0\] must have the 1 dimensions of wrt"):
        T.Rop(T.exp(x), x, T.dmatrix("m"))
    with pytest.raises(ValueError, match="disconnected_outputs must be"):
        T.Rop(T.exp(x), x, v, disconnected_outputs="nope")


def test_null_gradient_error_names_the_node():
    @dataclass(frozen=True)
    class Undefined(Op):
        """An op whose gradient is mathematically undefined."""

        def infer_type(self, x):
            return x

        def perform(self, x):
            return x

        def pullback(self, inputs, output, g):
            raise gradient.NullTypeGradError("the gradient of Undefined is undefined")

    x = T.dvector("x")
    expected = r"Undefined is undefined; grad needs it(.|\n)*test_grad\.py"
    with pytest.raises(gradient.NullTypeGradError, match=expected):
        theanine.grad(T.sum(Var(Undefined(), (x,))), x)


def test_pause_of_garbage_collector_is_restored():
    import gc

    x = T.dvector("x")
    theanine.grad(T.sum(T.exp(x)), x)
    assert gc.isenabled()
    gc.disable()
    try:
        theanine.grad(T.sum(T.exp(x)), x)
        assert not gc.isenabled()
    finally:
        gc.enable()


def test_jacobian_without_stack_and_indexing_ops(monkeypatch):
    for name in ("stack", "getitem", "subtensor"):
        monkeypatch.delattr(T, name, raising=False)
    x = T.vector("x", dtype="float64", shape=(3,))
    m = T.matrix("m", dtype="float64", shape=(3, 2))
    j = gradient.jacobian(T.exp(x) * T.sum(m, axis=1), [x, m])
    xv, mv = np.array([0.1, 0.2, -0.3]), RNG.normal(size=(3, 2))
    jx, jm = ev(j, {x: xv, m: mv})
    np.testing.assert_allclose(jx, np.diag(np.exp(xv) * mv.sum(axis=1)))
    expected = np.zeros((3, 3, 2))
    for i in range(3):
        expected[i, i, :] = np.exp(xv[i])
    np.testing.assert_allclose(jm, expected)
    assert not any(type(v.op).__name__ in ("Subtensor", "Join", "MakeVector") for v in toposort(j))


@dataclass(frozen=True)
class ScaleBy(Op):
    """x * k where k is an input whose gradient is undefined (like an index)."""

    def infer_type(self, x, k):
        return x

    def perform(self, x, k):
        return x * k

    def pullback(self, inputs, output, g):
        x, k = inputs
        return (g * k, gradient.grad_undefined(self, 1, k, "k is a step count"))


def test_undefined_gradient_is_an_error_only_when_needed():
    x, k = T.dvector("x"), T.dvector("k")
    cost = T.sum(Var(ScaleBy(), (x, k)))
    xv, kv = np.array([1.0, 2.0]), np.array([3.0, 4.0])
    np.testing.assert_allclose(ev(theanine.grad(cost, x), {x: xv, k: kv}), kv)
    expected = r"ScaleBy with respect to its input 1 \(k:.*\) is undefined \(k is a step count\)"
    with pytest.raises(gradient.NullTypeGradError, match=expected + r"(.|\n)*test_grad\.py"):
        theanine.grad(cost, [x, k])
    not_implemented = Var(NullPullback(gradient.grad_not_implemented(ScaleBy(), 0, x)), (x,))
    with pytest.raises(NotImplementedError, match="input 0 .* is not implemented"):
        theanine.grad(T.sum(not_implemented), x)


@dataclass(frozen=True)
class NullPullback(Op):
    """Identity whose pullback returns a fixed NullGrad."""

    null: object

    def infer_type(self, x):
        return x

    def perform(self, x):
        return x

    def pullback(self, inputs, output, g):
        return (self.null,)


def test_consider_constant_function_alias():
    assert gradient.consider_constant is T.zero_grad


def test_jacobian_of_specify_shape_and_empty_expression():
    x = T.dvector("x")
    j = gradient.jacobian(T.specify_shape(T.exp(x), (2,)), x)
    xv = np.array([0.5, -0.5])
    np.testing.assert_allclose(ev(j, {x: xv}), np.diag(np.exp(xv)))
    v = T.vector("v", dtype="float64", shape=(0,))
    empty = gradient.jacobian(v * 2.0, x, disconnected_inputs="ignore")
    out = ev(empty, {x: xv, v: np.zeros(0)})
    assert out.shape == (0, 2) and out.dtype == np.float64


def test_gradients_of_slices_of_one_array_fill_one_buffer():
    from theanine.graph.ops.elemwise import Add
    from theanine.graph.ops.subtensor import IncSubtensor
    from theanine.graph.var import toposort

    x = T.dmatrix("x")
    cost = (T.exp(x[:, :2]) * T.tanh(x[:, 2:4]) + x[:, 4:]).sum()
    gx = theanine.grad(cost, x)
    nodes = [v for v in toposort([gx]) if v.inputs]
    incs = [v for v in nodes if isinstance(v.op, IncSubtensor)]
    assert len(incs) == 3 and isinstance(gx.op, IncSubtensor)
    assert not any(isinstance(v.op, Add) and all(isinstance(i.op, IncSubtensor) for i in v.inputs)
                   for v in nodes)
    xv = np.random.default_rng(2).normal(size=(3, 6))
    want = np.concatenate([np.exp(xv[:, :2]) * np.tanh(xv[:, 2:4]),
                           np.exp(xv[:, :2]) * (1 - np.tanh(xv[:, 2:4]) ** 2), np.ones((3, 2))], 1)
    np.testing.assert_allclose(theanine.function([x], gx, mode="py")(xv), want, rtol=1e-12)
