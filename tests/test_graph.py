"""The IR: types, interning, constructors, promotion, shared variables, creation traces."""

from __future__ import annotations

import numpy as np
import pytest

import theanine
import theanine.tensor as T
from theanine.graph.type import TensorType
from theanine.graph.var import Var, toposort, replace


def test_tensor_type_accepts_shapes_and_broadcastable_patterns():
    assert TensorType("float32", (None, 3)).shape == (None, 3)
    assert TensorType("float32", (True, False)).shape == (1, None)
    assert TensorType("float64", broadcastable=(False, True)).broadcastable == (False, True)
    assert TensorType("floatX", ()).dtype == theanine.config.floatX
    assert TensorType("float32", (2, 3)) == TensorType(np.float32, [2, 3])
    with pytest.raises(TypeError, match="expected a numpy dtype"):
        TensorType("floatY", ())
    with pytest.raises(TypeError, match="static shape"):
        TensorType("float32", (-1,))


def test_constructors_have_theano_dtypes_and_shapes():
    assert T.matrix().type == TensorType(theanine.config.floatX, (None, None))
    assert T.fmatrix().dtype == "float32" and T.dvector().dtype == "float64"
    assert T.lscalar().type == TensorType("int64", ())
    assert T.ivector().dtype == "int32" and T.btensor3().ndim == 3 and T.wtensor4().dtype == "int16"
    assert T.row().type.shape == (1, None) and T.col().type.shape == (None, 1)
    assert T.tensor("float64", (False, True, False), "t").type.shape == (None, 1, None)
    assert T.TensorType("int32", (False,))("v").name == "v"
    assert T.matrix(dtype="int64").dtype == "int64"


def test_interning_makes_identical_expressions_one_object():
    x, y = T.dmatrix("x"), T.dmatrix("y")
    assert (x + y) is (x + y)
    assert T.exp(x) is T.exp(x)
    assert (x + y) is not (y + x)
    assert T.dmatrix("x") is not x  # a new input is a new variable even with the same name


def test_weak_python_scalars_follow_numpy2_promotion():
    assert (T.fmatrix() * 2.0).dtype == "float32"
    assert (T.fmatrix() + 1).dtype == "float32"
    assert (T.imatrix() * 2).dtype == "int32"
    assert (T.imatrix() * 2.0).dtype == np.result_type(np.int32, 2.0).name
    assert (T.bvector() + 1).dtype == "int8"
    assert (T.fvector() + T.dvector()).dtype == "float64"
    assert T.constant(1.5).dtype == theanine.config.floatX


def test_weak_scalar_keeps_its_exact_value_in_float64_expressions():
    x = T.dvector("x")
    assert (x * 0.1).eval({x: np.array([1.0])})[0] == 0.1


def test_static_broadcast_error_names_shapes():
    a = T.tensor("float32", shape=(2, 3), name="a")
    b = T.tensor("float32", shape=(4, 3), name="b")
    with pytest.raises(ValueError, match=r"axis 0.*a with shape \(2, 3\).*b with shape \(4, 3\)"):
        a + b


def test_symbolic_variables_refuse_truth_values_and_len():
    x = T.vector("x")
    with pytest.raises(TypeError, match="no truth value"):
        bool(x)
    with pytest.raises(TypeError, match="len"):
        len(x)


def test_creation_trace_points_at_this_file():
    x = T.vector("x")
    y = T.exp(x)
    filename, line, function = y.trace[0]
    assert filename == __file__ and function == "test_creation_trace_points_at_this_file"
    assert "y = T.exp(x)" in y.where()


def test_owner_view_and_toposort():
    x, y = T.dvector("x"), T.dvector("y")
    z = T.exp(x) * y
    assert z.owner.op == T.Mul() and z.owner.inputs[0] is T.exp(x) and z.owner.outputs[0] is z
    assert x.owner is None
    order = toposort([z])
    assert order.index(x) < order.index(T.exp(x)) < order.index(z) and order[-1] is z


def test_toposort_handles_deep_graphs():
    x = T.dscalar("x")
    y = x
    for _ in range(20000):
        y = y + 1.0
    assert len(toposort([y])) > 20000


def test_replace_rebuilds_with_new_types():
    x = T.dmatrix("x")
    out = T.exp(x) + 1.0
    v = T.dvector("v")
    (new,) = replace([out], {x: T.shape_padleft(v)})
    assert new.type.shape == (1, None)
    assert np.allclose(new.eval({v: np.array([0.0, 1.0])}), np.exp([[0.0, 1.0]]) + 1)


def test_shared_variable_values_and_borrow():
    value = np.arange(6, dtype="float64").reshape(2, 3)
    s = theanine.shared(value, name="s")
    assert s.type == TensorType("float64", (None, None)) and s.name == "s"
    value[0, 0] = 100
    assert s.get_value()[0, 0] == 0  # copied at creation
    got = s.get_value(borrow=True)
    assert got is s.get_value(borrow=True)
    assert s.get_value() is not got
    s.set_value(np.ones((4, 5)))
    assert s.get_value().shape == (4, 5)
    borrowed = np.zeros((2, 2))
    b = theanine.shared(borrowed, borrow=True)
    assert b.get_value(borrow=True) is borrowed


def test_shared_python_float_is_floatx_and_set_value_checks():
    lr = theanine.shared(0.1, name="lr")
    assert lr.dtype == theanine.config.floatX and lr.ndim == 0
    # a numpy scalar says its dtype (np.float64 is a subclass of float, but not a Python float)
    assert theanine.shared(np.float64(0.1)).dtype == "float64"
    assert theanine.shared(np.float32(0.1)).dtype == "float32"
    w = theanine.shared(np.zeros(3, dtype="float32"), name="w")
    with pytest.raises(TypeError, match=r"shared variable 'w'.*expected dtype float32, got float64"):
        w.set_value(np.zeros(3))
    with pytest.raises(TypeError, match=r"shared variable 'w'.*expected a 1-d array.*got 2-d"):
        w.set_value(np.zeros((3, 1), dtype="float32"))
    w.set_value(np.arange(3, dtype="int8"))  # a safe cast is made
    assert w.get_value().dtype == np.float32
    loose = theanine.shared(np.zeros(2, dtype="float32"), allow_downcast=True)
    loose.set_value(np.array([0.5, 1.5]))
    assert loose.get_value().dtype == np.float32
    with pytest.raises(TypeError, match="symbolic"):
        theanine.shared(T.vector())


def test_shared_default_update_attribute():
    s = theanine.shared(np.zeros(2))
    assert s.default_update is None
    s.default_update = s + 1
    assert s.default_update.owner.inputs[0] is s


def test_eval_reports_missing_inputs():
    x, y = T.dvector("x"), T.dvector("y")
    with pytest.raises(Exception, match="no value was given for the input 'y'"):
        (x + y).eval({x: np.ones(2)})


def test_runtime_error_names_the_op_and_users_line():
    x, y = T.dvector("x"), T.dvector("y")
    z = x + y  # the line the message must show
    with pytest.raises(ValueError, match=r"(?s)Add.*z = x \+ y  # the line the message must show"):
        z.eval({x: np.ones(2), y: np.ones(3)})


def test_constants():
    c = T.constant([[1.0, 2.0]])
    assert c.dtype == theanine.config.floatX and c.type.shape == (1, 2)
    assert T.constant(np.arange(3)).dtype == np.arange(3).dtype.name
    assert T.constant(3, dtype="int8").dtype == "int8"
    assert isinstance(T.as_tensor_variable(np.float32(1)), Var)
    with pytest.raises(TypeError, match="string"):
        T.constant("abc")
