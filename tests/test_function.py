"""theanine.function: calls, input checks, updates, givens, defaults, modes, aliasing, profile."""

from __future__ import annotations

import warnings
from collections import OrderedDict
from dataclasses import dataclass

import numpy as np
import pytest

import theanine
import theanine.tensor as T
from theanine import In, Out, function, shared
from theanine.compiler.function import MissingInputError, UnusedInputError
from theanine.graph.type import TensorType
from theanine.graph.var import Op, Var

F32 = "float32"


def vec(*values, dtype=F32):
    return np.asarray(values, dtype=dtype)


# -- calling --------------------------------------------------------------------------------------
def test_single_output_returns_array_and_list_returns_list():
    x, y = T.vector("x"), T.vector("y")
    a, b = vec(1, 2, 3), vec(10, 20, 30)
    f = function([x, y], x * y + x)
    out = f(a, b)
    assert isinstance(out, np.ndarray) and out.dtype == F32
    np.testing.assert_array_equal(out, a * b + a)
    g = function([x, y], [x + y, x - y])
    s, d = g(a, b)
    np.testing.assert_array_equal(s, a + b)
    np.testing.assert_array_equal(d, a - b)
    one = function([x], [T.exp(x)])(a)
    assert isinstance(one, list) and len(one) == 1
    np.testing.assert_allclose(one[0], np.exp(a), rtol=1e-6)
    assert function([x], (x + 1,))(a)[0].tolist() == [2, 3, 4]


def test_no_outputs_returns_empty_list():
    x = T.vector("x")
    assert function([x], None, on_unused_input="ignore")(vec(1)) == []
    assert function([x], [], on_unused_input="ignore")(vec(1)) == []


def test_dict_outputs_return_dict():
    x = T.vector("x")
    out = function([x], {"double": x * 2, "neg": -x})(vec(1, 2))
    assert list(out) == ["double", "neg"]
    assert out["double"].tolist() == [2, 4] and out["neg"].tolist() == [-1, -2]


def test_call_by_keyword_and_mixed():
    x, y = T.vector("x"), T.vector("y")
    f = function([x, y], x - y)
    assert f(x=vec(5), y=vec(2)).tolist() == [3]
    assert f(vec(5), y=vec(1)).tolist() == [4]
    assert f(y=vec(1), x=vec(7)).tolist() == [6]


def test_call_errors_name_function_and_inputs():
    x, y = T.vector("x"), T.vector("y")
    f = function([x, y], x + y, name="adder")
    with pytest.raises(
        TypeError, match=r"function 'adder' takes 2 argument\(s\) \('x', 'y'\), got 3"
    ):
        f(vec(1), vec(1), vec(1))
    with pytest.raises(
        TypeError, match=r"function 'adder' got an unexpected keyword argument 'z'.*'x', 'y'"
    ):
        f(vec(1), z=vec(1))
    with pytest.raises(TypeError, match=r"function 'adder' got multiple values for input 'x'"):
        f(vec(1), x=vec(1))
    with pytest.raises(TypeError, match=r"function 'adder' is missing a value for input\(s\) 'y'"):
        f(vec(1))


def test_call_error_for_unnamed_input_uses_position_and_type():
    x = T.vector()
    f = function([x], x + 1)
    with pytest.raises(TypeError, match=r"missing a value for input\(s\) #0 \(float32\[\?\]\)"):
        f()


def test_argument_filtering():
    x = T.fvector("x")
    f = function([x], x * 2, name="f")
    with pytest.raises(
        TypeError,
        match=r"input 'x' \(position 0\): expected dtype float32, got "
        r"float64.*allow_input_downcast=True",
    ):
        f(np.array([1.0, 2.0]))
    with pytest.raises(
        TypeError, match=r"input 'x'.*expected a 1-d array.*got 2-d with shape \(1, 2\)"
    ):
        f(np.ones((1, 2), F32))
    # Python floats are accepted into floatX; ints that fit exactly are converted.
    assert f([1.5, 2.0]).tolist() == [3.0, 4.0]
    assert f(np.array([1, 2], "int8")).dtype == F32
    g = function([x], x * 2, allow_input_downcast=True)
    out = g(np.array([0.1], "float64"))
    assert out.dtype == F32 and out[0] == np.float32(0.1) * 2
    h = function([In(x, allow_downcast=True)], x + 0)
    assert h(np.array([3.0])).dtype == F32


def test_static_shape_mismatch():
    x = T.TensorType(F32, (2, None))("x")
    f = function([x], x + 1)
    assert f(np.ones((2, 3), F32)).shape == (2, 3)
    with pytest.raises(ValueError, match=r"input 'x'.*expected shape \(2, \?\), got \(3, 3\)"):
        f(np.ones((3, 3), F32))


def test_trust_input_skips_filtering():
    x = T.fvector("x")
    f = function([x], x + 1)
    f.trust_input = True
    out = f(np.array([1.0], "float32"))
    assert out.tolist() == [2.0]


# -- inputs ---------------------------------------------------------------------------------------
def test_bad_inputs_are_rejected():
    x = T.vector("x")
    w = shared(vec(1, 2), name="w")
    with pytest.raises(TypeError, match="inputs must be a list"):
        function(x, x + 1)
    with pytest.raises(TypeError, match=r"inputs\[1\] is the shared variable w; .*givens"):
        function([x, w], x + w)
    with pytest.raises(TypeError, match=r"inputs\[0\] is the constant"):
        function([T.constant(1.0)], x, on_unused_input="ignore")
    with pytest.raises(TypeError, match=r"inputs\[0\] must be a symbolic variable .* got int 3"):
        function([3], x)
    with pytest.raises(
        ValueError, match=r"variable x is used twice in inputs, at positions 0 and 1"
    ):
        function([x, x], x + 1)
    with pytest.raises(
        TypeError, match=r"outputs must be symbolic variables or Out.*output 0 is int"
    ):
        function([x], 3, on_unused_input="ignore")


def test_missing_input_names_the_variable():
    x, y = T.vector("x"), T.vector("y")
    with pytest.raises(
        MissingInputError,
        match=r"(?s)depend on the input 'y' of type "
        r"float32\[\?\].*test_function.py",
    ):
        function([x], x + y)


def test_unused_input_policies():
    x, y = T.vector("x"), T.vector("y")
    with pytest.raises(
        UnusedInputError, match=r"input 1 \(y\) is not used.*on_unused_input='ignore'"
    ):
        function([x, y], x + 1)
    assert issubclass(UnusedInputError, ValueError)
    with pytest.warns(UserWarning, match=r"input 1 \(y\) is not used"):
        f = function([x, y], x + 1, on_unused_input="warn")
    assert f(vec(1), vec(5)).tolist() == [2]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        g = function([x, y], x + 1, on_unused_input="ignore")
    assert g(vec(1), vec(5)).tolist() == [2]
    with theanine.config.change_flags(on_unused_input="ignore"):
        assert function([x, y], x * 3)(vec(1), vec(1)).tolist() == [3]
    with pytest.raises(ValueError, match="on_unused_input must be"):
        function([x], x, on_unused_input="loud")


def test_intermediate_variable_as_input_cuts_the_graph():
    x = T.vector("x")
    h = x * 2
    y = h + 1
    f = function([h], y)
    assert f(vec(10)).tolist() == [11]


def test_in_defaults_names_and_setitem():
    x, y = T.vector("x"), T.vector("y")
    f = function([x, In(y, value=[10.0, 20.0], name="offset")], x + y)
    assert f(vec(1, 2)).tolist() == [11, 22]
    assert f(vec(1, 2), vec(1, 1)).tolist() == [2, 3]
    assert f(vec(1, 2), offset=vec(3, 3)).tolist() == [4, 5]
    assert f["offset"].tolist() == [10, 20]
    f["offset"] = [0.5, 0.5]
    assert f(vec(1, 2)).tolist() == [1.5, 2.5]
    with pytest.raises(KeyError, match="has no input named 'nope'"):
        f["nope"]


def test_in_update_keeps_state_between_calls():
    acc, x = T.scalar("acc"), T.scalar("x")
    f = function([x, In(acc, value=0.0, update=acc + x)], acc + x)
    assert float(f(1.0)) == 1.0
    assert float(f(2.0)) == 3.0
    assert float(f["acc"]) == 3.0
    with pytest.raises(TypeError, match="needs a value"):
        In(acc, update=acc + 1)


# -- updates --------------------------------------------------------------------------------------
@pytest.mark.parametrize("kind", [list, tuple, dict, OrderedDict])
def test_update_containers(kind):
    a = shared(vec(1, 2), name="a")
    x = T.vector("x")
    pairs = [(a, a + x)]
    f = function([x], a * 1, updates=kind(pairs))
    assert f(vec(10, 10)).tolist() == [1, 2]  # outputs see the value before the update
    assert a.get_value().tolist() == [11, 12]


def test_outputs_and_updates_use_values_before_the_call():
    a = shared(vec(1, 2, 3), name="a")
    b = shared(vec(10, 20, 30), name="b")
    f = function([], [a + b, a], updates=[(a, a + b), (b, a * 2)])
    s, old_a = f()
    assert s.tolist() == [11, 22, 33] and old_a.tolist() == [1, 2, 3]
    assert a.get_value().tolist() == [11, 22, 33]
    assert b.get_value().tolist() == [2, 4, 6]


def test_swap_two_shared_variables():
    a, b = shared(vec(1, 2), name="a"), shared(vec(3, 4), name="b")
    swap = function([], [], updates=[(a, b), (b, a)])
    swap()
    assert a.get_value().tolist() == [3, 4] and b.get_value().tolist() == [1, 2]
    swap()
    assert a.get_value().tolist() == [1, 2] and b.get_value().tolist() == [3, 4]
    assert not np.shares_memory(a.get_value(borrow=True), b.get_value(borrow=True))


def test_update_from_another_shared_variable_is_copied():
    a, b = shared(vec(1, 2), name="a"), shared(vec(3, 4), name="b")
    function([], [], updates=[(a, b)])()
    assert a.get_value().tolist() == [3, 4]
    assert not np.shares_memory(a.get_value(borrow=True), b.get_value(borrow=True))


def test_failing_call_changes_no_shared_variable():
    a, b = shared(vec(1, 2, 3), name="a"), shared(vec(5, 6, 7), name="b")
    v = T.vector("v")
    f = function([v], a.sum(), updates=[(a, a + 1), (b, b + v)])
    with pytest.raises(ValueError, match=r"Add"):
        f(vec(1, 2, 3, 4))  # b + v fails to broadcast after a + 1 was computed
    assert a.get_value().tolist() == [1, 2, 3] and b.get_value().tolist() == [5, 6, 7]
    assert float(f(vec(1, 1, 1))) == 6.0
    assert a.get_value().tolist() == [2, 3, 4] and b.get_value().tolist() == [6, 7, 8]


def test_update_shape_checked_at_run_time_before_any_change():
    a = shared(vec(1, 2), name="a", shape=(2,))
    c = shared(vec(0), name="c")
    v = T.vector("v")
    f = function([v], [], updates=[(c, c + 1), (a, v)])
    with pytest.raises(
        ValueError, match=r"update of 'a' computed shape \(3,\).*no shared variable was changed"
    ):
        f(vec(1, 2, 3))
    assert c.get_value().tolist() == [0] and a.get_value().tolist() == [1, 2]


def test_update_errors():
    a = shared(vec(1, 2), name="a")
    x = T.vector("x")
    with pytest.raises(TypeError, match=r"update targets must be shared variables, got Var"):
        function([x], x, updates=[(x, x + 1)])
    with pytest.raises(
        TypeError,
        match=r"(?s)An update must have the same type as the original shared variable "
        r"\(shared_var=a, "
        r"shared_var.type=float32\[\?\], .*update_val.type=float64\[\?\]\).*test_function.py",
    ):
        function([], [], updates=[(a, a + T.dvector("d"))])
    with pytest.raises(
        TypeError, match=r"An update must have the same type.*update_val.type=float32\[\?, \?\]"
    ):
        function([], [], updates=[(a, T.matrix("m"))])
    with pytest.raises(ValueError, match=r"shared variable a is updated twice"):
        function([], [], updates=[(a, a + 1), (a, a * 2)])
    with pytest.raises(TypeError, match="must be a dict or a list of"):
        function([], [], updates=5)


def test_constant_update_value():
    a = shared(vec(1, 2), name="a")
    function([], [], updates=[(a, np.zeros(2, F32))])()
    assert a.get_value().tolist() == [0, 0]


def test_default_update():
    a = shared(vec(1), name="a")
    a.default_update = a + 1
    b = shared(vec(10), name="b")
    b.default_update = b * 2
    f = function([], a + b)
    assert f().tolist() == [11]
    assert a.get_value().tolist() == [2] and b.get_value().tolist() == [20]
    function([], a + b, no_default_updates=True)()
    assert a.get_value().tolist() == [2] and b.get_value().tolist() == [20]
    function([], a + b, no_default_updates=[a])()
    assert a.get_value().tolist() == [2] and b.get_value().tolist() == [40]
    function([], a * 1, updates=[(a, a - 100)])()  # an explicit update wins
    assert a.get_value().tolist() == [-98]
    unrelated = shared(vec(0), name="u")
    unrelated.default_update = unrelated + 1
    function([], b * 1, no_default_updates=[b])()
    assert unrelated.get_value().tolist() == [0]  # not read by the graph: no default update


def test_default_update_with_wrong_type():
    a = shared(vec(1), name="a")
    a.default_update = T.cast(a, "float64")
    with pytest.raises(TypeError, match=r"An update must have the same type.*shared_var=a"):
        function([], a + 1)


# -- givens ---------------------------------------------------------------------------------------
def test_givens_dict_and_pairs_apply_to_outputs_and_updates():
    x, y = T.vector("x"), T.vector("y")
    a = shared(vec(0, 0), name="a")
    f = function([y], x * 2, givens={x: y + 1}, updates=[(a, a + x)])
    assert f(vec(1, 2)).tolist() == [4, 6]
    assert a.get_value().tolist() == [2, 3]
    g = function([y], x * 3, givens=[(x, y)])
    assert g(vec(1, 2)).tolist() == [3, 6]
    h = function([], x + 1, givens={x: vec(5, 6)})
    assert h().tolist() == [6, 7]


def test_givens_errors():
    x, y = T.vector("x"), T.vector("y")
    with pytest.raises(
        TypeError, match=r"givens replaces 'x' of type float32\[\?\] with 'd' of type float64\[\?\]"
    ):
        function([], x, givens={x: T.dvector("d")})
    with pytest.raises(
        TypeError,
        match=r"givens replaces 'x' of type float32\[\?\] with 'm' of type "
        r"float32\[\?, \?\]",
    ):
        function([], x, givens={x: T.matrix("m")})
    with pytest.raises(RuntimeError, match=r"givens replaces x, which is also an input"):
        function([x], x + 1, givens={x: y})
    with pytest.raises(TypeError, match=r"givens keys must be symbolic variables, got str"):
        function([], x, givens={"x": y})


@dataclass(frozen=True)
class TakeRows(Op):
    """Test op: rows [i * size, (i + 1) * size) of a matrix, as a view; records its argument."""

    size: int
    seen = []

    def infer_type(self, x: TensorType, i: TensorType) -> TensorType:
        return TensorType(x.dtype, (None, x.shape[1]))

    def perform(self, x, i):
        TakeRows.seen.append(x)
        return x[i * self.size : (i + 1) * self.size]


def test_givens_minibatch_passes_the_data_set_by_reference():
    data = shared(np.arange(4_000_000, dtype=F32).reshape(1_000_000, 4), name="data")
    x, i = T.matrix("x"), T.lscalar("i")
    TakeRows.seen.clear()
    f = function([i], [x, x * 2], givens={x: Var(TakeRows(3), (data, i))})
    batch, doubled = f(2)
    storage = data.get_value(borrow=True)
    np.testing.assert_array_equal(batch, storage[6:9])
    np.testing.assert_array_equal(doubled, storage[6:9] * 2)
    # The op received the shared storage itself: no copy of the data set per call ...
    assert TakeRows.seen[-1] is storage
    # ... and an output that is a view of shared storage is copied before it is returned.
    assert not np.shares_memory(batch, storage)
    batch[:] = -1
    assert storage[6, 0] == 24


def test_givens_minibatch_with_subtensor():
    data = shared(np.arange(40, dtype=F32).reshape(10, 4), name="data")
    x, i = T.matrix("x"), T.lscalar("i")
    f = function([i], x.sum(axis=1), givens={x: data[i * 3 : (i + 1) * 3]})
    np.testing.assert_array_equal(f(1), np.arange(40, dtype=F32).reshape(10, 4)[3:6].sum(axis=1))


def test_logistic_regression_with_givens_minibatches():
    rng = np.random.default_rng(0)
    n, d, bs = 40, 3, 10
    data_x = rng.normal(size=(n, d)).astype(F32)
    true_w = np.array([1.5, -2.0, 0.5], F32)
    data_y = (data_x @ true_w > 0).astype(F32)
    sx, sy = shared(data_x, name="sx"), shared(data_y, name="sy")
    W, b = shared(np.zeros(d, F32), name="W"), shared(np.float32(0.0), name="b")
    x, y, i = T.matrix("x"), T.vector("y"), T.lscalar("i")
    p = 1 / (1 + T.exp(-(T.dot(x, W) + b)))
    cost = -T.mean(y * T.log(p) + (1 - y) * T.log(1 - p))
    gW, gb = T.grad(cost, [W, b])
    train = function(
        [i], cost, updates=[(W, W - 0.5 * gW), (b, b - 0.5 * gb)],
        givens={x: sx[i * bs : (i + 1) * bs], y: sy[i * bs : (i + 1) * bs]},
    )
    # Independent numpy reference of the same SGD.
    w_ref, b_ref = np.zeros(d, "float64"), 0.0
    for epoch in range(3):
        for k in range(n // bs):
            xb, yb = data_x[k * bs : (k + 1) * bs].astype("float64"), data_y[k * bs : (k + 1) * bs]
            pr = 1 / (1 + np.exp(-(xb @ w_ref + b_ref)))
            ref_cost = -np.mean(yb * np.log(pr) + (1 - yb) * np.log(1 - pr))
            got = train(k)
            assert got.dtype == F32 and got.shape == ()
            np.testing.assert_allclose(got, ref_cost, rtol=1e-4)
            w_ref -= 0.5 * xb.T @ (pr - yb) / bs
            b_ref -= 0.5 * np.mean(pr - yb)
    np.testing.assert_allclose(W.get_value(), w_ref, rtol=1e-3, atol=1e-5)
    np.testing.assert_allclose(b.get_value(), b_ref, rtol=1e-3, atol=1e-5)


# -- aliasing -------------------------------------------------------------------------------------
def test_outputs_never_alias_inputs_shared_or_each_other():
    x = T.vector("x")
    a = shared(vec(1, 2), name="a")
    arg = vec(3, 4)
    f = function([x], [x, a, x + 1, x + 1])
    out_x, out_a, p, q = f(arg)
    assert out_x is not arg and not np.shares_memory(out_x, arg)
    assert not np.shares_memory(out_a, a.get_value(borrow=True))
    assert p is not q and p.tolist() == q.tolist() == [4, 5]
    same = function([x], Out(x, borrow=True))
    assert same(arg) is arg


# -- modes, attributes ----------------------------------------------------------------------------
def test_modes(monkeypatch):
    from theanine.kernels import backends

    x = T.vector("x")
    for mode in (None, "py", "FAST_RUN", "FAST_COMPILE", "DebugMode"):
        assert function([x], x + 1, mode=mode)(vec(1)).tolist() == [2]
    monkeypatch.setitem(backends._TABLE, "numba", "theanine.kernels.not_built_yet:BACKEND")
    monkeypatch.setattr(backends, "_loaded", {})
    with pytest.raises(
        NotImplementedError, match=r"mode='numba': the numba backend is not available yet"
    ):
        function([x], x, mode="numba")
    with pytest.raises(NotImplementedError, match=r"cuda-emulator"):
        function([x], x, mode="cuda")
    with pytest.raises(ValueError, match=r"unknown mode 'FAST'; known modes: py, FAST_RUN"):
        function([x], x, mode="FAST")
    with pytest.raises(TypeError, match="mode must be a string"):
        function([x], x, mode=3)


def test_cuda_mode_without_gpu_names_the_emulator(monkeypatch):
    import theanine.compiler.function_spec as fn

    monkeypatch.setattr(fn, "_has_cuda_gpu", lambda: False)
    with pytest.raises(
        NotImplementedError, match=r"no CUDA GPU was found.*use mode='cuda-emulator'"
    ):
        function([], [], mode="cuda")


def test_nan_guard_mode():
    x = T.vector("x")
    f = function([x], T.log(x) * 2, mode="NanGuardMode")
    assert f(vec(1)).tolist() == [0]
    with pytest.raises(
        FloatingPointError, match=r"(?s)NanGuardMode: .*log.* produced NaN.*test_function.py"
    ):
        f(vec(-1))


def test_function_attributes_and_fgraph():
    x, y = T.vector("x"), T.vector("y")
    a = shared(vec(1), name="a")
    z = x * y + a
    with theanine.config.change_flags(optimizer="None"):  # the graph as written
        f = function([x, y], z, name="fn")
    assert f.name == "fn" and f.profile is None and f.trust_input is False
    fg = f.maker.fgraph
    assert fg.inputs[:2] == [x, y] and fg.inputs[2] is a and fg.outputs == [z]
    nodes = fg.toposort()
    assert [type(n.op).__name__ for n in nodes] == ["Mul", "Add"]
    assert nodes[1].outputs[0] is z and nodes[1].inputs[0] is nodes[0].outputs[0]
    fused = function([x, y], z).maker.fgraph.toposort()  # rewritten: one fused node
    assert [type(n.op).__name__ for n in fused] == ["Composite"]
    assert [i.variable for i in f.maker.inputs] == [x, y]
    assert f.get_shared() == [a]
    f.free()
    assert f.copy()(vec(2), vec(3)).tolist() == [7]


def test_profile(capsys):
    x = T.vector("x")
    f = function([x], T.exp(x) + T.sum(x), profile=True, name="prof")
    f(vec(1))
    f(vec(2))
    assert f.profile.fct_callcount == 2 and f.profile.fct_call_time > 0
    times = f.profile.op_times()
    assert {"Composite", "Sum"} <= set(times)
    assert sum(times.values()) == pytest.approx(sum(f.profile.node_times))
    f.profile.summary()
    assert "Function profile: prof" in capsys.readouterr().out


def test_rebuild_strict_false_lets_givens_change_the_dtype():
    x = T.vector("x")
    d = T.dvector("d")
    f = function([d], x * 2, givens={x: d}, rebuild_strict=False)
    out = f(np.array([0.1]))
    assert out.dtype == "float64" and out[0] == 0.2


def test_chained_default_updates():
    c, d = shared(vec(1), name="c"), shared(vec(10), name="d")
    c.default_update = c + d  # d is read only by c's default update
    d.default_update = d * 2
    function([], c * 1)()
    assert c.get_value().tolist() == [11] and d.get_value().tolist() == [20]


def test_implicit_strict_and_ambiguous_inputs():
    x, k = T.vector("x"), T.vector("k")
    f = function([x, In(k, value=vec(5), implicit=True)], x + k)
    assert f(vec(1)).tolist() == [6]
    with pytest.raises(TypeError, match=r"takes 1 argument\(s\) \('x'\), got 2"):
        f(vec(1), vec(1))
    s = function([In(x, strict=True)], x + 1)
    with pytest.raises(TypeError, match=r"expected dtype float32 \(strict\), got int8"):
        s(np.array([1], "int8"))
    a, b = T.vector("same"), T.vector("same")
    g = function([a, b], a - b)
    with pytest.raises(TypeError, match=r"several inputs are named 'same'; pass them by position"):
        g(same=vec(1))
    assert g(vec(3), vec(1)).tolist() == [2]


def test_copy_keeps_current_defaults_and_shares_shared_variables():
    x, y = T.vector("x"), T.vector("y")
    a = shared(vec(0), name="a")
    f = function([x, In(y, value=vec(1))], x + y, updates=[(a, a + 1)])
    f["y"] = vec(7)
    g = f.copy()
    assert g(vec(1)).tolist() == [8]
    assert a.get_value().tolist() == [1]
    assert f.get_shared() == [a]
