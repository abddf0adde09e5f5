"""Mode 'numba' against mode 'py': every op, fused graphs, random elementwise graphs, errors."""

from __future__ import annotations

import importlib
import inspect
import pkgutil
import sys
import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import theanine
import theanine.tensor as T
from theanine.compiler.fuse import fuse_elementwise
from theanine.graph.evaluate import evaluate
from theanine.graph.ops.composite import Composite
from theanine.graph.type import TensorType
from theanine.graph.var import Op, input_var

numba = pytest.importorskip("numba")
from theanine.kernels.numba import backend as NB  # noqa: E402

RNG = np.random.default_rng(0)


def sample(shape, dtype, low=-2.0, high=2.0):
    """Random values of a dtype: floats in [low, high), ints in [-3, 4), bools."""
    if dtype == "bool":
        return RNG.random(shape) < 0.5
    if np.dtype(dtype).kind in "iu":
        lo = 0 if np.dtype(dtype).kind == "u" else -3
        return RNG.integers(lo, 4, size=shape).astype(dtype)
    return RNG.uniform(low, high, size=shape).astype(dtype)


def compare(build, arrays, fuse=True, rtol=None, types=None):
    """Compile build(*inputs) in mode numba (fused) and check values and dtypes against perform."""
    types = types or [TensorType(a.dtype, a.shape) for a in arrays]
    inputs = [input_var(t, f"x{k}") for k, t in enumerate(types)]
    outputs = build(*inputs)
    outputs = list(outputs) if isinstance(outputs, (list, tuple)) else [outputs]
    expected = evaluate(outputs, dict(zip(inputs, arrays)))
    lowered = fuse_elementwise(outputs, NB.BACKEND.supported) if fuse else outputs
    got = NB.BACKEND.compile(inputs, lowered).run(list(arrays))
    for g, e, out in zip(got, expected, outputs):
        assert g.dtype == e.dtype == np.dtype(out.dtype), (g.dtype, e.dtype, out.dtype)
        assert g.shape == e.shape
        tol = rtol if rtol is not None else (2e-5 if g.dtype == np.float32 else 1e-11)
        if g.dtype.kind in "fc":
            np.testing.assert_allclose(g, e, rtol=tol, atol=tol, equal_nan=True)
        else:
            np.testing.assert_array_equal(g, e)
    return got


# --- coverage: every op class has a lowering, a numpy step with a reason, or is UNSUPPORTED ------


def op_classes():
    import theanine.graph.ops as ops

    found = set()
    for info in pkgutil.iter_modules(ops.__path__):
        module = importlib.import_module(f"theanine.graph.ops.{info.name}")
        for value in vars(module).values():
            ours = inspect.isclass(value) and value.__module__ == module.__name__
            if ours and issubclass(value, Op):
                found.add(value)
    return found


def test_every_op_class_has_a_lowering_or_a_stated_reason():
    known = {**NB.LOWERINGS, **NB.UNSUPPORTED}
    missing = [c.__name__ for c in op_classes() if c not in known]
    assert not missing, f"ops with no numba lowering: {missing}"
    for cls, reason in {**NB.NUMPY_STEPS, **NB.UNSUPPORTED}.items():
        assert isinstance(reason, str) and len(reason) > 10, cls
    # elementwise ops are all rendered as generated loops, never numpy steps
    from theanine.graph.ops.elemwise import Elemwise

    assert not [c for c in NB.NUMPY_STEPS if issubclass(c, Elemwise)]


def test_an_op_without_a_lowering_raises_naming_it():
    from dataclasses import dataclass

    @dataclass(frozen=True)
    class Mystery(Op):
        def infer_type(self, x):
            return x

        def perform(self, x):
            return x + 1

    x = T.dvector("x")
    # a user's own op runs its perform, as in Theano
    assert NB.BACKEND.compile([x], [Mystery()(x)]).run([np.zeros(2)])[0].tolist() == [1, 1]
    Mystery.__module__ = "theanine.graph.ops.mystery"  # one of ours without a lowering: an error
    with pytest.raises(NotImplementedError, match="cannot compile Mystery"):
        NB.BACKEND.compile([x], [Mystery()(x.T)])


# --- elementwise ops, alone: one table of cases --------------------------------------------------

UNARY_FLOAT = [
    "abs_", "sgn", "sqr", "sqrt", "reciprocal", "exp", "exp2", "expm1", "log", "log2", "log10",
    "log1p", "sin", "cos", "tan", "arcsin", "arccos", "arctan", "sinh", "cosh", "tanh", "arcsinh",
    "arccosh", "arctanh", "deg2rad", "rad2deg", "floor", "ceil", "trunc", "round_", "erf", "erfc",
    "erfinv", "erfcinv", "erfcx", "gamma", "gammaln", "psi", "tri_gamma", "real", "imag", "conj",
    "angle", "neg", "isnan", "isinf", "invert_float_skip",
]  # fmt: skip
UNARY_FLOAT = [name for name in UNARY_FLOAT if not name.endswith("_skip")]
DOMAIN = {"arccosh": (1.0, 4.0), "arcsin": (-1, 1), "arccos": (-1, 1), "arctanh": (-0.99, 0.99),
          "erfinv": (-1, 1), "erfcinv": (0, 2), "log": (0.01, 5), "log2": (0.01, 5),
          "log10": (0.01, 5), "sqrt": (0, 5), "gamma": (0.1, 5), "gammaln": (0.1, 5),
          "psi": (-3.5, 6), "tri_gamma": (-3.5, 6), "log1p": (-0.9, 3)}  # fmt: skip


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("name", UNARY_FLOAT)
def test_unary_elementwise_matches_py(name, dtype):
    low, high = DOMAIN.get(name, (-3.0, 3.0))
    x = sample((2, 3, 4), dtype, low, high)
    compare(getattr(T, name), [x], rtol=1e-5 if dtype == "float32" else 1e-9)


NNET_UNARY = ["sigmoid", "softplus", "relu", "elu", "selu", "softsign", "hard_sigmoid"]


@pytest.mark.parametrize("name", NNET_UNARY)
def test_nnet_elementwise_matches_py(name):
    x = sample((3, 5), "float64", -6, 6)
    x[0, 0] = 0.0
    compare(getattr(T.nnet, name), [x])
    compare(lambda v: T.nnet.relu(v, 0.1) + T.nnet.elu(v, 0.5), [x.astype("float32")])


BINARY = ["add", "sub", "mul", "true_div", "int_div", "mod", "pow_", "maximum", "minimum", "eq",
          "neq", "lt", "le", "gt", "ge", "logaddexp", "arctan2"]  # fmt: skip


DTYPE_PAIRS = [("float32", "float32"), ("float64", "int64"), ("int32", "int8"), ("int64", "int64")]


@pytest.mark.parametrize("dtypes", DTYPE_PAIRS)
@pytest.mark.parametrize("name", BINARY)
def test_binary_elementwise_matches_py_with_broadcasting(name, dtypes):
    a = sample((2, 3, 4), dtypes[0])
    b = sample((1, 3, 1), dtypes[1])
    if name in ("int_div", "mod", "true_div") and b.dtype.kind in "iu":
        b[b == 0] = 2
    if name == "pow_":
        a = np.abs(a) + (1 if a.dtype.kind in "iu" else 0.5)
        b = np.abs(b)
    compare(getattr(T, name), [a, b])


@pytest.mark.parametrize("name", ["and_", "or_", "xor"])
def test_bitwise_matches_py(name):
    compare(getattr(T, name), [sample((4, 3), "int32"), sample((4, 3), "int32")])
    compare(getattr(T, name), [sample((4, 3), "bool"), sample((1, 3), "bool")])
    compare(T.invert, [sample((5,), "bool")])
    compare(T.invert, [sample((5,), "int16")])


def test_switch_clip_cast_second_and_gradient_identities_match_py():
    c, a, b = sample((3, 4), "bool"), sample((3, 4), "float32"), sample((1, 4), "float64")
    compare(T.switch, [c, a, b])
    compare(lambda x: T.clip(x, -0.5, 0.7), [a])
    compare(lambda x: T.cast(x, "int32") + T.cast(x > 0, "int8"), [a])
    compare(lambda x: T.cast(x, "bool"), [np.array([0.0, -0.0, 2.5, np.nan], "float32")])
    compare(lambda x, y: T.fill(x, y), [a, b])
    compare(lambda x: T.zero_grad(x) + T.disconnected_grad(x) * T.grad_clip(x, -1, 1), [a])
    halves = np.array([0.5, 1.5, -2.5, 2.4], "float64")
    compare(lambda x: T.round_(x, "half_away_from_zero") + T.round_(x), [halves])


def test_special_values_propagate_like_numpy():
    x = np.array([0.0, -0.0, np.inf, -np.inf, np.nan, 1e-310, -3.0, 2.0], "float64")
    for name in ["exp", "log", "sqrt", "tanh", "sgn", "abs_", "floor", "isnan", "isinf", "expm1"]:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            compare(getattr(T, name), [x])
    compare(lambda a, b: T.maximum(a, b) + T.minimum(a, b), [x, x[::-1].copy()])


# --- fused graphs ---------------------------------------------------------------------------------


def test_fused_chain_is_one_kernel_and_matches_py():
    x, w, y = (sample((5, 6), "float32") for _ in range(3))
    b = sample((1, 6), "float32")

    def chain(x, w, b, y):
        return T.tanh(x * w + b) * T.nnet.sigmoid(y) + 0.5 * x**2

    got = compare(chain, [x, w, b, y])
    assert got[0].dtype == np.float32
    inputs = [input_var(TensorType("float32", a.shape)) for a in (x, w, b, y)]
    fused = fuse_elementwise([chain(*inputs)], NB.BACKEND.supported)
    plan = NB.BACKEND.compile(inputs, fused)
    assert [type(v.op) for v in plan.nodes()] == [Composite]


def test_multi_output_composite_and_projections():
    x, y = sample((4, 3), "float64"), sample((4, 3), "float64")
    compare(lambda a, b: [T.exp(a) * b + 1, T.sin(a) - b * 2, T.cos(a + b)], [x, y])


def test_non_contiguous_and_broadcast_inputs_use_the_strided_loop():
    x = sample((6, 5), "float64")
    types = [TensorType("float64", (5, 6)), TensorType("float64", (None, 1))]
    compare(lambda a, b: T.exp(a) + b, [x.T, sample((5, 1), "float64")], types=types)
    compare(lambda a: a * 2 + 1, [np.asarray(7.0)])  # 0-d
    compare(lambda a: a * 2 + 1, [np.zeros((0, 3))])  # empty


def test_large_input_takes_the_parallel_loop(monkeypatch):
    from theanine.kernels.numba import loops

    monkeypatch.setattr(loops, "PARALLEL_SIZE", 1 << 12)
    calls = []
    original = loops.ElementwiseRunner.kernel

    def spy(self, ndim, pattern):
        found = original(self, ndim, pattern)
        calls.append(found)
        return found

    monkeypatch.setattr(loops.ElementwiseRunner, "kernel", spy)
    compare(lambda a, b: T.tanh(a) * 2 + a * b, [sample((1 << 13,), "float32")] * 2)
    compare(lambda a, b: T.exp(a) - b, [sample((64, 70), "float64").T, sample((70, 1), "float64")],
            types=[TensorType("float64", (70, 64)), TensorType("float64", (70, 1))])
    assert len(calls) == 2 and all(parallel.signatures for _, parallel in calls)


def test_through_theanine_function_in_mode_numba():
    x, y = T.fmatrix("x"), T.fvector("y")
    outputs = [T.nnet.softmax(T.dot(x, T.ones((4, 3))) + y).sum(axis=0), (x * 2).max()]
    f = theanine.function([x, y], outputs, mode="numba")
    g = theanine.function([x, y], outputs, mode="py")
    a, b = sample((5, 4), "float32"), sample((3,), "float32")
    for got, want in zip(f(a, b), g(a, b)):
        assert got.dtype == want.dtype
        np.testing.assert_allclose(got, want, rtol=1e-5)


# --- hypothesis: random elementwise graphs and broadcasting patterns ------------------------------

_UNARY_SAFE = ["exp", "tanh", "sin", "neg", "abs_", "sqr", "expm1", "arctan", "floor"]
_BINARY_SAFE = ["add", "sub", "mul", "maximum", "minimum"]


@st.composite
def elementwise_graphs(draw):
    dtype = draw(st.sampled_from(["float32", "float64"]))
    n_inputs = draw(st.integers(1, 3))
    full = (2, 3, 4)
    shapes = [tuple(d if draw(st.booleans()) else 1 for d in full) for _ in range(n_inputs)]
    step = st.tuples(
        st.sampled_from(_UNARY_SAFE + _BINARY_SAFE), st.integers(0, 50), st.integers(0, 50)
    )
    ops = draw(st.lists(step, min_size=1, max_size=6))
    return dtype, shapes, ops


@settings(max_examples=25, deadline=None)
@given(elementwise_graphs())
def test_random_elementwise_graphs_match_py(case):
    dtype, shapes, ops = case
    arrays = [sample(s, dtype, -1, 1) for s in shapes]

    def build(*xs):
        values = list(xs)
        for name, i, j in ops:
            f = getattr(T, name)
            a = values[i % len(values)]
            if name in _BINARY_SAFE:
                values.append(f(a, values[j % len(values)]))
            else:
                values.append(f(T.tanh(a)))  # bounded arguments keep exp finite
        return values[-1] + 0.25

    compare(build, arrays, rtol=1e-4 if dtype == "float32" else 1e-10)


# --- non-elementwise ops --------------------------------------------------------------------------

REDUCTIONS = [
    lambda x: T.sum(x, axis=1), lambda x: T.sum(x, axis=(0, 2), keepdims=True), lambda x: T.sum(x),
    lambda x: T.sum(x, axis=0), lambda x: T.prod(x, axis=2), lambda x: T.max(x, axis=(1, 2)),
    lambda x: T.min(x, axis=0), lambda x: T.argmax(x, axis=1), lambda x: T.argmin(x, axis=(0, 2)),
    lambda x: T.all(x > 0, axis=2), lambda x: T.any(x > 1, axis=0, keepdims=True),
    lambda x: T.mean(x, axis=1), lambda x: T.var(x, axis=(0, 1)), lambda x: T.cumsum(x, axis=1),
    lambda x: T.cumprod(x, axis=2), lambda x: T.argmax(x, axis=0), lambda x: T.argmax(x),
]  # fmt: skip


@pytest.mark.parametrize("dtype", ["float32", "float64", "int32"])
@pytest.mark.parametrize("k", range(len(REDUCTIONS)))
def test_reductions_match_py(k, dtype):
    compare(REDUCTIONS[k], [sample((2, 3, 4), dtype)], fuse=False)


def test_reductions_propagate_nan_and_reject_empty_max():
    x = sample((3, 4), "float64")
    x[1, 2] = np.nan
    def build(a):
        return [T.max(a, axis=1), T.min(a, axis=0), T.argmax(a, axis=1), T.sum(a, axis=0)]

    compare(build, [x])
    a = T.dmatrix("a")
    plan = NB.BACKEND.compile([a], [T.max(a, axis=1)])
    with pytest.raises(ValueError, match="zero-size array to reduction operation maximum"):
        plan.run([np.zeros((2, 0))])


def test_max_and_argmax_and_axis_size():
    from theanine.graph.ops.blas import MaxAndArgmax
    from theanine.graph.ops.composite import Proj
    from theanine.graph.ops.reduce import AxisSize
    from theanine.graph.var import Var

    def build(x):
        both = Var(MaxAndArgmax((1,)), (x,))
        size = Var(AxisSize((0, 2), "float32"), (x,))
        return [Var(Proj(0), (both,)), Var(Proj(1), (both,)), size]

    compare(build, [sample((2, 3, 4), "float64")], fuse=False)


LINALG = [
    (lambda a, b: T.dot(a, b), [(3, 4), (4, 5)]),
    (lambda a, b: T.dot(a, b), [(3, 4), (4,)]),
    (lambda a, b: T.dot(a, b), [(4,), (4, 5)]),
    (lambda a, b: T.dot(a, b), [(4,), (4,)]),
    (lambda a, b: T.batched_dot(a, b), [(2, 3, 4), (2, 4, 5)]),
    (lambda a, b: T.tensordot(a, b, axes=[[1, 2], [0, 1]]), [(2, 3, 4), (3, 4, 5)]),
    (lambda a, b: T.batched_tensordot(a, b, axes=[[2], [1]]), [(2, 3, 4), (2, 4, 5)]),
    (lambda a, b: T.matmul(a, b), [(2, 1, 3, 4), (5, 4, 2)]),
]


@pytest.mark.parametrize("dtype", ["float32", "float64", "int64"])
@pytest.mark.parametrize("k", range(len(LINALG)))
def test_products_match_py(k, dtype):
    build, shapes = LINALG[k]
    rtol = 1e-5 if dtype == "float32" else 1e-10
    compare(build, [sample(s, dtype) for s in shapes], fuse=False, rtol=rtol)


def test_gemm_and_ger_match_py():
    from theanine.graph.ops.blas import Gemm, Ger
    from theanine.graph.var import Var

    def build(z, a, x, y, b, v):
        return [Var(Gemm(), (z, a, x, y, b)), Var(Ger(), (x, a, v, v[:3]))]

    shapes = [(1, 3), (), (4, 3), (3, 3), (), (4,)]
    arrays = [np.asarray(sample(s, "float64")) for s in shapes]
    compare(build, arrays, fuse=False)


@pytest.mark.parametrize("axis", [-1, 0])
def test_softmax_family_matches_py(axis):
    x = sample((3, 5), "float32", -30, 30)
    def build(a):
        return [T.nnet.softmax(a, axis=axis), T.nnet.log_softmax(a, axis=axis)]

    compare(build, [x], fuse=False)


def test_select_class_and_its_gradient_match_py():
    from theanine.graph.ops.nnet import SelectClassGrad
    from theanine.graph.var import Var

    p, y, g = sample((4, 5), "float64"), np.array([0, 4, 2, 1]), sample((4,), "float64")
    def build(a, b, c):
        loss = T.nnet.categorical_crossentropy(T.nnet.softmax(a), b)
        return [loss, Var(SelectClassGrad(), (c, a, b))]

    compare(build, [p, y, g], fuse=False)


SHAPE_CASES = [
    (lambda x: x.dimshuffle(2, "x", 0, 1), [(2, 3, 4)]),
    (lambda x: x.reshape((4, 6)), [(2, 3, 4)]),
    (lambda x: T.flatten(x, 2) * 1, [(2, 3, 4)]),
    (lambda x: x.shape, [(2, 3, 4)]),
    (lambda x: T.concatenate([x, x * 2], axis=1), [(2, 3, 4)]),
    (lambda x: T.alloc(x[0, 0], 3, 4), [(2, 3, 4)]),
    (lambda x: T.tile(x, (2, 1, 1)), [(2, 3, 4)]),
    (lambda x: T.repeat(x, 2, axis=1), [(2, 3, 4)]),
    (lambda x: T.sort(x, axis=1), [(2, 3, 4)]),
    (lambda x: T.argsort(x, axis=2), [(2, 3, 4)]),
    (lambda x: x[1, ::-1, 1:3], [(2, 3, 4)]),
    (lambda x: x[[1, 0, 1]], [(2, 3, 4)]),
    (lambda x: T.inc_subtensor(x[:, 1], 1.5), [(2, 3, 4)]),
    (lambda x: T.set_subtensor(x[[0, 0], 2], 7.0), [(2, 3, 4)]),
    (lambda x: T.eye(3, 4, 1) + T.arange(4), [(2, 3, 4)]),
    (lambda x: T.roll(x, 1, axis=2), [(2, 3, 4)]),
    (lambda x: T.diagonal(x[0]) * 1, [(2, 3, 4)]),
    (lambda x: T.stack([x[0], x[1]]), [(2, 3, 4)]),
]


@pytest.mark.parametrize("k", range(len(SHAPE_CASES)))
def test_shape_and_indexing_ops_match_py(k):
    build, shapes = SHAPE_CASES[k]
    compare(build, [sample(s, "float64") for s in shapes])


@pytest.mark.parametrize("shape, order, static", [
    ((2, 3, 4), (1, 0, 2), (None, None, None)),
    ((2, 3, 4), (2, "x", 0, 1), (None, None, None)),
    ((3, 1, 4), (2, 0), (None, 1, None)),
    ((5, 1), (1, "x", 0), (None, 1)),
    ((1, 1), (), (1, 1)),
    ((), ("x", "x"), ()),
])
def test_dimshuffle_runner_is_a_view_equal_to_numpy(shape, order, static):
    x = T.tensor("float64", shape=static)
    v = x.dimshuffle(*order)
    run = NB.lower(v)  # mode numba's runner: the op's perform, a view
    a = sample(shape, "float64")
    kept = [d for d in order if d != "x"]
    dropped = tuple(ax for ax in range(len(shape)) if ax not in kept)
    want = np.transpose(a.squeeze(axis=dropped), [sorted(kept).index(d) for d in kept])
    want = want.reshape([1 if d == "x" else shape[d] for d in order])
    got = run(a)
    np.testing.assert_array_equal(got, want)
    assert got.shape == want.shape and np.shares_memory(got, a)
    if any(d == 1 for d in static) and len(order) < len(shape):  # a size-1 axis dropped
        with pytest.raises(ValueError, match="not of size 1"):
            run(sample(tuple(2 if d == 1 else n for d, n in zip(static, shape)), "float64"))


def _pool(x, mode):
    from theanine.graph.ops.pool import Pool2d
    from theanine.graph.var import Var

    return Var(Pool2d((2, 2), True, (2, 1), (0, 0), mode), (x,))


IMAGE, FILTERS = (2, 3, 6, 5), (4, 3, 2, 3)
NETWORK_CASES = [
    (lambda x, w: T.nnet.conv2d(x, w), [(2, 3, 6, 5), (4, 3, 2, 3)]),
    (lambda x, w: T.nnet.conv2d(x, w, border_mode="half", subsample=(2, 1)), [IMAGE, (4, 3, 3, 3)]),
    (lambda x, w: T.grad(T.sum(T.nnet.conv2d(x, w) ** 2), [x, w]), [(2, 3, 6, 5), (4, 3, 2, 3)]),
    (lambda x, w: _pool(x, "max") + _pool(w, "average_exc_pad").sum(), [IMAGE, FILTERS]),
    (lambda x, w: T.grad(T.sum(_pool(x, "max") ** 2) + T.sum(_pool(x, "average_inc_pad")), x),
     [IMAGE, FILTERS]),
    (lambda x, w: T.grad(T.sum(_pool(x, "sum") * 3), x), [(2, 3, 6, 5), (4, 3, 2, 3)]),
]


@pytest.mark.parametrize("k", range(len(NETWORK_CASES)))
def test_conv_and_pool_match_py(k):
    build, shapes = NETWORK_CASES[k]
    compare(build, [sample(s, "float64") for s in shapes])


def test_ifelse_runs_only_the_taken_branch_and_scan_runs_its_body_compiled():
    from theanine.compiler.ifelse import ifelse

    a, b = sample((3, 4), "float64"), sample((3, 4), "float64")
    for c in (np.asarray(True), np.asarray(False)):
        compare(lambda x, y, z: ifelse(z, T.exp(x) + y, x * y - 1), [a, b, c])
    from theanine.compiler.scan import scan

    def build(x, n):
        step = lambda prev, w: T.tanh(prev * w + 1)  # noqa: E731
        out, _ = scan(step, outputs_info=x[0], non_sequences=x[1], n_steps=n)
        return out
    compare(build, [a, np.asarray(5)])


def test_gradients_compile_and_match_py():
    x, w, b = T.dmatrix("x"), T.dmatrix("w"), T.dvector("b")
    y = T.lvector("y")
    cost = T.mean(T.nnet.categorical_crossentropy(T.nnet.softmax(T.dot(x, w) + b), y))
    grads = T.grad(cost, [w, b])
    values = [sample(s, "float64") for s in [(5, 4), (4, 3), (3,)]] + [np.array([0, 2, 1, 1, 0])]
    outputs = [cost] + list(grads)
    expected = evaluate(outputs, dict(zip([x, w, b, y], values)))
    lowered = fuse_elementwise(outputs, NB.BACKEND.supported)
    got = NB.BACKEND.compile([x, w, b, y], lowered).run(values)
    for g, e in zip(got, expected):
        np.testing.assert_allclose(g, e, rtol=1e-10)


# --- run-time errors name the op and the user's line ----------------------------------------------


def test_shape_mismatch_in_a_fused_kernel_names_the_op_and_line():
    x, y = T.dmatrix("x"), T.dmatrix("y")
    out = T.exp(x) * y + 1  # the user's line
    plan = NB.BACKEND.compile([x, y], fuse_elementwise([out], NB.BACKEND.supported))
    where = r"cannot be broadcast(.|\n)*Composite(.|\n)*test_numba_backend.py"
    with pytest.raises(ValueError, match=where):
        plan.run([np.zeros((2, 3)), np.zeros((4, 3))])


def test_label_out_of_bounds_raises_index_error_without_reading_past_the_end():
    p, y = T.dmatrix("p"), T.lvector("y")
    plan = NB.BACKEND.compile([p, y], [T.nnet.categorical_crossentropy(p, y)])
    message = r"class label 7 is out of range for 3 classes(.|\n)*SelectClass"
    with pytest.raises(IndexError, match=message):
        plan.run([np.ones((2, 3)) / 3, np.array([0, 7])])
    with pytest.raises(IndexError, match="class label -1"):
        plan.run([np.ones((2, 3)) / 3, np.array([-1, 0])])


def test_impossible_reshape_and_bad_index_raise_naming_the_op():
    x, n = T.dvector("x"), T.lscalar("n")
    plan = NB.BACKEND.compile([x, n], [x.reshape((n, 4))])
    message = r"cannot reshape(.|\n)*Reshape(.|\n)*test_numba_backend.py"
    with pytest.raises(ValueError, match=message):
        plan.run([np.zeros(6), np.asarray(3)])
    plan = NB.BACKEND.compile([x, n], [x[n]])
    with pytest.raises(IndexError, match=r"out of bounds(.|\n)*Subtensor"):
        plan.run([np.zeros(6), np.asarray(9)])
    a, b = T.dmatrix("a"), T.dmatrix("b")
    plan = NB.BACKEND.compile([a, b], [T.dot(a, b)])
    with pytest.raises(ValueError, match=r"inner dimensions differ(.|\n)*Dot"):
        plan.run([np.zeros((2, 3)), np.zeros((4, 2))])


# --- float32 approximations: accuracy over the whole float32 range --------------------------------


def _float32_sweep() -> np.ndarray:
    """Every 4099th float32 bit pattern (all signs, exponents, subnormals) plus special values."""
    bits = np.arange(0, 2**32, 4099, dtype=np.uint64).astype(np.uint32).view(np.float32)
    special = [0.0, -0.0, np.inf, -np.inf, np.nan, 1e-45, -1e-45, 88.72, 88.73, -87.3, -103.9]
    special += [-104.5, 7.9, 9.0]
    return np.concatenate([bits, np.array(special, np.float32)])


@pytest.mark.parametrize(
    "name, reference, max_ulps",
    [("tanh", np.tanh, 5.0), ("exp", np.exp, 2.0), ("sigmoid", lambda v: 1 / (1 + np.exp(-v)), 3)],
)
def test_float32_approximations_stay_within_their_stated_ulps(name, reference, max_ulps):
    from theanine.kernels.numba import scalar

    assert scalar.FAST_FLOAT32
    x = _float32_sweep()
    f = getattr(T.nnet, name) if name == "sigmoid" else getattr(T, name)
    v = input_var(TensorType("float32", (None,)), "v")
    got = NB.BACKEND.compile([v], fuse_elementwise([f(v)], NB.BACKEND.supported)).run([x])[0]
    with np.errstate(all="ignore"):
        want = reference(x.astype(np.float64))
        want32 = want.astype(np.float32)
    assert np.array_equal(np.isnan(got), np.isnan(want32))  # NaN exactly where numpy has one
    infinite = np.isinf(want32)
    assert np.array_equal(got[infinite], want32[infinite])  # overflow to inf, never a finite value
    normal = np.isfinite(want32) & (np.abs(want) >= np.finfo(np.float32).tiny)
    with np.errstate(all="ignore"):
        error = np.abs(got.astype(np.float64) - want)
    ulps = error[normal] / np.spacing(np.abs(want32[normal]))
    assert ulps.max() <= max_ulps
    tiny = np.isfinite(want32) & ~normal  # results below the normal range: absolute error only
    assert np.all(error[tiny] <= 2 * np.finfo(np.float32).tiny)
    zeros = x == 0
    if name == "tanh":  # an odd function keeps the sign of zero
        assert np.array_equal(np.signbit(got[zeros]), np.signbit(x[zeros]))


# --- buffer reuse and in-place updates of shared variables ---------------------------------------


def test_an_elementwise_step_writes_over_a_dead_intermediate():
    x, w = T.dmatrix("x"), T.dmatrix("w")
    f = theanine.function([x, w], T.tanh(T.dot(x, w)) * 2.0 + 1.0, mode="numba")
    assert [type(s[0].op).__name__ for s in f._plan.steps if s[4] >= 0] == ["Composite"]
    xv, wv = sample((3, 4), "float64"), sample((4, 5), "float64")
    np.testing.assert_allclose(f(xv, wv), np.tanh(xv @ wv) * 2 + 1)
    np.testing.assert_allclose(f(xv[:2], wv), np.tanh(xv[:2] @ wv) * 2 + 1)


def test_sgd_updates_write_into_the_shared_storage_and_a_failed_call_changes_nothing():
    w = theanine.shared(np.ones((3, 2)), name="w")
    b = theanine.shared(np.zeros(2), name="b")
    x = T.dmatrix("x")
    cost = T.sum(T.tanh(T.dot(x, w) + b))
    gw, gb = T.grad(cost, [w, b])
    updates = [(w, w * 0.9 - 0.1 * gw), (b, b - 0.1 * gb)]
    f = theanine.function([x], cost, updates=updates, mode="numba")
    storage = w.get_value(borrow=True), b.get_value(borrow=True)
    xv = sample((4, 3), "float64")
    grad_h = 1 - np.tanh(xv @ np.ones((3, 2))) ** 2
    f(xv)
    assert w.get_value(borrow=True) is storage[0] and b.get_value(borrow=True) is storage[1]
    np.testing.assert_allclose(w.get_value(), 0.9 - 0.1 * xv.T @ grad_h)
    np.testing.assert_allclose(b.get_value(), -0.1 * grad_h.sum(axis=0))
    before = w.get_value(), b.get_value()
    with pytest.raises(ValueError):
        f(sample((4, 5), "float64"))  # dot fails: no shared variable may change
    np.testing.assert_array_equal(w.get_value(), before[0])
    np.testing.assert_array_equal(b.get_value(), before[1])


def test_random_draws_are_the_same_streams_in_mode_numba_and_py():
    from theanine.graph.random import RandomStreams

    draws = []
    for mode in ("numba", "py"):
        rng = RandomStreams(7)
        outputs = [
            rng.uniform((2, 3), dtype="float32"), rng.normal((4,)), rng.binomial((3,), p=0.3),
            rng.permutation(n=5), rng.choice((4,), a=6), rng.multinomial(n=3, pvals=[[0.2, 0.8]]),
        ]
        f = theanine.function([], outputs, mode=mode)
        draws.append([f(), f()])  # the second call shows each state advanced
    for got, want in zip(draws[0], draws[1]):
        for g, w in zip(got, want):
            assert g.dtype == w.dtype
            np.testing.assert_array_equal(g, w)


def test_no_in_place_write_over_a_buffer_that_another_argument_views():
    x = T.dmatrix("x")
    d = T.dot(x, x.T)
    f = theanine.function([x], T.exp(d) + d.T * 2.0, mode="numba")
    xv = sample((4, 3), "float64") + np.arange(3.0)  # d is not symmetric after the shift below
    dv = xv @ xv.T
    np.testing.assert_allclose(f(xv), np.exp(dv) + dv.T * 2.0)
    a = T.dmatrix("a")
    dot = T.dot(a, T.constant(np.triu(np.ones((3, 3)))))  # not symmetric
    g = theanine.function([a], T.tanh(dot) - dot.T, mode="numba")
    av = sample((3, 3), "float64")
    tv = av @ np.triu(np.ones((3, 3)))
    np.testing.assert_allclose(g(av), np.tanh(tv) - tv.T)
    w = theanine.shared(np.arange(9.0).reshape(3, 3), name="w")
    step = theanine.function([], [], updates=[(w, w * 2.0 + w.T)], mode="numba")
    step()
    start = np.arange(9.0).reshape(3, 3)
    np.testing.assert_array_equal(w.get_value(), start * 2 + start.T)


# --- memory: freed blocks kept for the next call --------------------------------------------------

_FAULTS = """
import resource, sys, numpy as np
import theanine.kernels.numba  # noqa: F401  (the backend's start applies the setting)
def cycle():
    arrays = [np.ones(1 << 20) for _ in range(3)]  # three 8 MB temporaries, written
    del arrays
cycle()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(3):
    cycle()
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt is Linux's")
def test_freed_temporaries_are_reused_without_page_faults():
    """With the backend loaded, a call's large temporaries come back from the heap on the next
    call (no zero-filled fresh pages); THEANINE_FLAGS=numba__keep_freed_memory=False restores
    glibc's default, where each cycle faults its 24 MB in again (about 6,000 pages)."""
    import os
    import subprocess

    def faults(flags: str, **malloc: str) -> int:
        env = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")}
        env.update(THEANINE_FLAGS=flags, **malloc)
        out = subprocess.run([sys.executable, "-c", _FAULTS], env=env, capture_output=True,
                             text=True, check=True)
        return int(out.stdout.split()[-1])

    kept, default = faults(""), faults("numba__keep_freed_memory=False")
    assert kept < 200 and default > 1000, (kept, default)
    # a user's own glibc settings win: here one that returns every freed block at once
    assert faults("", MALLOC_MMAP_THRESHOLD_="131072", MALLOC_TRIM_THRESHOLD_="0") > 1000
