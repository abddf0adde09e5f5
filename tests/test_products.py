"""Products sharing an operand merged into one (compiler/products.py): graphs and values."""

from __future__ import annotations

import numpy as np
import pytest

import theanine
import theanine.tensor as T
from theanine.compiler.products import merge_sibling_products
from theanine.graph.evaluate import evaluate
from theanine.graph.ops.linalg import TensorDot
from theanine.graph.ops.reduce import Sum
from theanine.graph.ops.shape import Join
from theanine.graph.var import toposort

RNG = np.random.default_rng(11)


def products(outputs):
    return [v for v in toposort(outputs) if isinstance(v.op, TensorDot)]


def test_two_gradients_sharing_a_cotangent_become_one_product():
    """dW_in = x^T g and dW_hid = h^T g[::-1] (g read backwards): one product of [x[::-1] | h]
    with g, its rows split after."""
    x, h, g = T.dtensor3("x"), T.dtensor3("h"), T.dtensor3("g")
    dw_in = T.tensordot(x, g[::-1], [[0, 1], [0, 1]])
    dw_hid = T.tensordot(h, g, [[0, 1], [0, 1]])
    other = T.tensordot(h, g, [[0], [0]])  # sums other axes: left alone
    outs = [dw_in, dw_hid, other]
    merged = merge_sibling_products(outs)
    found = products(merged)
    assert len(found) == 2  # the merged pair and the other product
    pair = [v for v in found if v.op.axes_a == (0, 1)]
    assert len(pair) == 1 and isinstance(pair[0].inputs[0].op, Join) and pair[0].inputs[1] is g
    values = {x: RNG.normal(size=(5, 3, 2)), h: RNG.normal(size=(5, 3, 4)),
              g: RNG.normal(size=(5, 3, 6))}
    want = [np.einsum("tbi,tbj->ij", values[x], values[g][::-1]),
            np.einsum("tbi,tbj->ij", values[h], values[g]),
            np.einsum("tbi,tcj->bicj", values[h], values[g])]
    for got, expected in zip(evaluate(merged, values), want):
        np.testing.assert_allclose(got, expected, rtol=1e-12)
    # compiled in both CPU modes, with the pass excluded and not
    for mode in ("py", "numba"):
        for excluded in ("", "merge_products"):
            with theanine.config.change_flags(optimizer_excluding=excluded):
                f = theanine.function([x, h, g], outs, mode=mode)
            for got, expected in zip(f(values[x], values[h], values[g]), want):
                np.testing.assert_allclose(got, expected, rtol=1e-10)


@pytest.mark.parametrize("keepdims", [False, True])
def test_a_sum_of_the_shared_operand_is_one_more_row_of_the_product(keepdims):
    x, h, g = T.dtensor3("x"), T.dtensor3("h"), T.dtensor3("g")
    outs = [T.tensordot(x, g, [[0, 1], [0, 1]]), T.tensordot(h, g[::-1], [[0, 1], [0, 1]]),
            T.sum(g[::-1], axis=(0, 1), keepdims=keepdims)]
    merged = merge_sibling_products(outs)
    assert len(products(merged)) == 1
    assert not [v for v in toposort(merged) if isinstance(v.op, Sum)]
    values = {x: RNG.normal(size=(5, 3, 2)), h: RNG.normal(size=(5, 3, 4)),
              g: RNG.normal(size=(5, 3, 6))}
    got = evaluate(merged, values)
    want = evaluate(outs, values)
    assert got[2].shape == want[2].shape == ((1, 1, 6) if keepdims else (6,))
    for a, b in zip(got, want):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-12)


def test_a_product_reading_its_sibling_is_not_merged_with_it():
    x, g = T.dmatrix("x"), T.dmatrix("g")
    first = T.tensordot(x, g, [[0], [0]])  # (x cols, g cols)
    second = T.tensordot(T.dot(g, first.T), g, [[0], [0]])  # its operand reads the first
    outs = [first, second]
    assert merge_sibling_products(outs) == outs


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_the_lstm_gradients_of_its_two_weights_are_one_product(dtype):
    from theanine import layers

    x = T.tensor3("x", dtype=dtype)
    with theanine.config.change_flags(floatX=dtype):
        net = layers.LSTMLayer(layers.InputLayer((None, 6, 3), x), 4, only_return_final=True)
        loss = T.mean(layers.get_output(net) ** 2)
        params = layers.get_all_params(net, trainable=True)
        grads = theanine.grad(loss, params)
    f = theanine.function([x], grads, mode="numba")
    g = theanine.function([x], grads, mode="py")
    dots = [s for s in f._plan.nodes() if isinstance(s.op, TensorDot) and s.op.axes_a == (0, 1)]
    assert len(dots) == 1  # dW_in and dW_hid of the stacked gates, and the bias's sum of them
    sums = [s for s in f._plan.nodes() if isinstance(s.op, Sum)]
    assert all(all(s.inputs[0].type.shape[a] == 1 for a in s.op.axis) for s in sums)
    xv = RNG.normal(size=(2, 6, 3)).astype(dtype)
    for a, b in zip(f(xv), g(xv)):
        np.testing.assert_allclose(a, b, rtol=1e-4 if dtype == "float32" else 1e-10, atol=1e-6)
