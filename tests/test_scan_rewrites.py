"""Scan rewrites: each gives the expected graph, and the values agree with the graph before it."""

from __future__ import annotations

import numpy as np

import theanine
import theanine.tensor as T
from theanine.compiler import pipeline
from theanine.compiler.scan import reduce as scan_reduce, scan
from theanine.compiler.scan_rewrites import (
    hoist_invariants,
    merge_extended_scans,
    optimize_bodies,
    optimize_scans,
    products_out_of_loops,
    prune_scans,
    save_memory,
    share_branch_work,
)
from theanine.graph.evaluate import evaluate
from theanine.graph.ops.composite import Composite
from theanine.graph.ops.elemwise import Add, Exp
from theanine.graph.ops.linalg import Dot, TensorDot
from theanine.graph.ops.scan import Scan
from theanine.graph.random import RandomStreams
from theanine.graph.var import toposort
from theanine.kernels.py import BACKEND


def f64(value):
    """A float64 constant (Python floats would be floatX)."""
    return T.constant(value, dtype="float64")


RNG = np.random.default_rng(5)


def scans(outputs):
    return [v for v in toposort(outputs) if isinstance(v.op, Scan)]


def inner_ops(op: Scan) -> list[type]:
    return [type(v.op) for v in toposort(op.inner_outputs) if v.inputs]


def same_values(before, after, values):
    for a, b in zip(evaluate(before, values), evaluate(after, values)):
        np.testing.assert_allclose(b, a, rtol=1e-12)


def rnn():
    X, W, U, h0 = T.dmatrix("X"), T.dmatrix("W"), T.dmatrix("U"), T.dvector("h0")
    step = lambda x, h, W, U: T.tanh(T.dot(x, U) + T.dot(h, W) + T.exp(W).sum())  # noqa: E731
    hs, _ = scan(step, sequences=X, outputs_info=h0, non_sequences=[W, U])
    values = {X: RNG.normal(size=(5, 3)), W: RNG.normal(size=(4, 4)) * 0.3,
              U: RNG.normal(size=(3, 4)),
              h0: RNG.normal(size=4)}
    return hs, (X, W, U, h0), values


def test_prune_drops_unused_outputs_and_the_inputs_only_they_read():
    x, y = T.dvector("x"), T.dvector("y")
    (a, b, c), _ = scan(lambda u, v, s: (u * 2, v + 1, s + u), sequences=[x, y],
                        outputs_info=[None, None, f64(0.0)])
    values = {x: RNG.normal(size=4), y: RNG.normal(size=4)}
    (node,) = scans([a, c])
    after = prune_scans([a, c])
    (new,) = scans(after)
    assert (new.op.n_seqs, new.op.n_states, new.op.n_nitsot) == (1, 1, 1)  # y and b are gone
    # y is no longer a sequence of the loop; only its length still counts (the shorter one sets
    # the number of steps, as in Theano)
    assert not any(isinstance(v.op, type(new.op)) and y in v.inputs for v in toposort(after))
    same_values([a, c], after, values)
    assert prune_scans([a, b, c])[1] is b  # nothing to drop: the graph is unchanged


def test_prune_keeps_a_state_that_a_kept_output_reads():
    (s, t), _ = scan(lambda s, t: (s + 1.0, t + s), outputs_info=[f64(0.0),
                                                                f64(0.0)], n_steps=4)
    after = prune_scans([t])
    assert scans(after)[0].op.n_states == 2
    np.testing.assert_allclose(evaluate(after, {})[0], [0, 1, 3, 6])


def test_hoisting_moves_the_input_projection_and_invariants_out_of_the_loop():
    hs, _, values = rnn()
    after = hoist_invariants([hs])
    (node,) = scans(prune_scans(after))
    ops = inner_ops(node.op)
    assert Exp not in ops  # exp(W).sum() is computed once
    assert ops.count(Dot) == 1  # only h @ W stays in the loop
    outer_dot = [x for x in node.inputs if isinstance(x.op, Dot)]
    assert len(outer_dot) == 1 and outer_dot[0].ndim == 2  # X @ U: one product for all rows
    same_values([hs], after, values)


def test_row_wise_elementwise_work_moves_out_only_with_a_product_it_feeds():
    X, Y, U, h0 = T.dmatrix("X"), T.dmatrix("Y"), T.dmatrix("U"), T.dvector("h0")
    # tanh(x) feeds the product tanh(x) @ U: both leave the loop as one whole-sequence product;
    # exp(y) * 2 feeds no product: it stays in the loop, fused there with the step's other work
    step = lambda x, y, h, U: T.tanh(T.dot(T.tanh(x), U) + h) + T.exp(y) * f64(2.0)  # noqa: E731
    hs, _ = scan(step, sequences=[X, Y], outputs_info=h0, non_sequences=U)
    after = hoist_invariants([hs])
    (node,) = scans(prune_scans(after))
    ops = inner_ops(node.op)
    assert Dot not in ops and Exp in ops
    assert [type(v.op).__name__ for v in toposort(node.op.inner_outputs)].count("Tanh") == 1
    outer = [v for v in toposort(node.inputs) if v.inputs]
    assert any(isinstance(v.op, Dot) and v.ndim == 2 for v in outer)
    assert not any(isinstance(v.op, Exp) for v in outer)
    values = {X: RNG.normal(size=(5, 3)), Y: RNG.normal(size=(5, 4)), U: RNG.normal(size=(3, 4)),
              h0: RNG.normal(size=4)}
    same_values([hs], after, values)


def test_random_draws_stay_in_the_loop():
    srng = RandomStreams(1)
    out, updates = scan(lambda h: h + srng.uniform((2,), dtype="float64"),
                        outputs_info=T.zeros((2,), dtype="float64"), n_steps=3)
    (node,) = scans(hoist_invariants([out]))
    assert "RandomDraw" in [t.__name__ for t in inner_ops(node.op)]


def test_save_memory_keeps_only_the_last_row_when_only_it_is_read():
    x = T.dvector("x")
    total, _ = scan_reduce(lambda a, s: s + a, sequences=x, outputs_info=f64(0.0))
    after = save_memory([total])
    (node,) = scans(after)
    assert node.op.keep == (1,)
    values = RNG.normal(size=6)
    np.testing.assert_allclose(evaluate(after, {x: values})[0], values.sum())
    hs, _, _ = rnn()
    assert scans(save_memory([hs]))[0].op.keep == ()  # the whole history is an output


def test_gradient_accumulators_keep_one_row_and_values_agree():
    hs, (X, W, U, h0), values = rnn()
    outs = [hs[-1]] + theanine.grad(hs[-1].sum(), [W, U, h0])
    after = optimize_scans(outs)
    forward, backward = sorted(scans(after), key=lambda v: v.op.n_states)
    assert forward.op.keep == ()  # the backward pass reads the forward history
    assert backward.op.keep == (1,) * backward.op.n_states
    same_values(outs, after, values)


def test_inner_graphs_are_optimized_by_the_pipeline():
    hs, _, values = rnn()

    def optimize(outputs):
        return pipeline.optimize(outputs, BACKEND)

    after = optimize_bodies(optimize([hs]), optimize)
    (node,) = scans(after)
    assert Composite in inner_ops(node.op)  # the step's elementwise chain is fused
    same_values([hs], after, values)
    f_after = optimize_scans(optimize([hs]), optimize)
    same_values([hs], f_after, values)


def test_a_branch_reads_values_the_function_computes_anyway():
    from theanine.compiler.ifelse import ifelse
    from theanine.graph.ops.ifelse import IfElse

    c, x = T.lscalar("c"), T.dvector("x")
    shared_work = T.exp(x) * 2
    out = ifelse(c, shared_work.sum() + 1, x.sum()) + shared_work
    after = share_branch_work([out])
    (node,) = [v for v in toposort(after) if isinstance(v.op, IfElse)]
    assert shared_work in node.inputs  # passed in, not recomputed inside the branch
    assert Exp not in [type(v.op) for v in toposort(node.op.then_outputs)]
    for flag in (0, 1):
        same_values([out], after, {c: flag, x: RNG.normal(size=3)})


def test_accumulated_weight_products_become_one_tensordot_after_the_loop():
    X, W, U, h0 = T.dtensor3("X"), T.dmatrix("W"), T.dmatrix("U"), T.dmatrix("h0")
    step = lambda x, h, W, U: T.tanh(T.dot(x, U) + T.dot(h, W))  # noqa: E731
    hs, _ = scan(step, sequences=X, outputs_info=h0, non_sequences=[W, U])
    values = {X: RNG.normal(size=(5, 2, 3)), W: RNG.normal(size=(4, 4)) * 0.3,
              U: RNG.normal(size=(3, 4)), h0: RNG.normal(size=(2, 4))}
    outs = [hs[-1]] + theanine.grad(hs[-1].sum(), [W, U, h0])
    kept = save_memory(hoist_invariants(prune_scans(outs)))
    before = max(scans(kept), key=lambda v: v.op.n_states)
    after = prune_scans(products_out_of_loops(kept))
    backward = max(scans(after), key=lambda v: v.op.n_nitsot)
    # dW and dU (h_prev.T @ g and x.T @ g per step) left the loop: their states are gone and
    # their factors are stacked per step; only the state carrying dh stays. The factors h_prev
    # and x are rows of the loop's sequences, read after it as they are; g, a factor of both
    # products, is stacked once
    assert before.op.n_states == 3 and backward.op.n_states == 1
    assert backward.op.n_nitsot == before.op.n_nitsot + 1
    outer = [v for v in toposort(after) if isinstance(v.op, TensorDot)]
    assert any(v.op.axes_a == (0, 1) and v.op.axes_b == (0, 1) for v in outer)
    # the gradients start from zeros: each is its tensordot alone, no zeros added to it
    assert isinstance(after[1].op, TensorDot) and isinstance(after[2].op, TensorDot)
    same_values(outs, after, values)
    # the loop compiled in mode numba gives the same gradients as numpy's reference
    f = theanine.function([X, W, U, h0], outs, mode="numba")
    got = f(*(values[v] for v in (X, W, U, h0)))
    for a, b in zip(got, evaluate(outs, values)):
        np.testing.assert_allclose(a, b, rtol=1e-10)


def test_an_accumulator_with_a_nonzero_start_keeps_it():
    x, start = T.dmatrix("x"), T.dmatrix("start")
    accs, _ = scan(lambda row, acc: acc + T.dot(row.dimshuffle(0, "x"), row.dimshuffle("x", 0)),
                   sequences=x, outputs_info=start)
    kept = save_memory([accs[-1]])
    (after,) = prune_scans(products_out_of_loops(kept))
    assert isinstance(after.op, Add) and any(isinstance(v.op, TensorDot) for v in after.inputs)
    values = {x: RNG.normal(size=(5, 3)), start: RNG.normal(size=(3, 3))}
    np.testing.assert_allclose(evaluate([after], values)[0],
                               values[start] + values[x].T @ values[x], rtol=1e-12)


def test_an_accumulator_read_inside_the_loop_is_left_alone():
    x, w = T.dmatrix("x"), T.dmatrix("w")
    # acc is read by the step's other output: its history matters, no product leaves the loop
    (accs, peeks), _ = scan(lambda row, acc: (acc + T.dot(row.dimshuffle(0, "x"),
                                                           row.dimshuffle("x", 0)), acc.sum()),
                            sequences=x, outputs_info=[T.zeros_like(w), None])
    outs = [accs[-1], peeks]
    kept = save_memory(outs)
    assert products_out_of_loops(kept) == kept


def _gated_rnn():
    X, W, V, h0 = T.dtensor3("X"), T.dmatrix("W"), T.dmatrix("V"), T.dmatrix("h0")
    step = lambda x, h, W, V: T.nnet.sigmoid(T.dot(h, W) + x) * T.tanh(T.dot(h, V))  # noqa: E731
    hs, _ = scan(step, sequences=X, outputs_info=h0, non_sequences=[W, V])
    cost = (hs[-1] ** 2).sum()
    values = {X: RNG.normal(size=(5, 2, 3)), W: RNG.normal(size=(3, 3)),
              V: RNG.normal(size=(3, 3)), h0: RNG.normal(size=(2, 3))}
    return [cost] + theanine.grad(cost, [W, V, h0, X]), (X, W, V, h0), values


def test_the_forward_loop_stores_what_the_backward_loop_reads():
    """The backward step reads sigmoid(h W + x) and tanh(h V): the forward loop stores them per
    step (an extended copy of it, merged with it into one loop) instead of the backward loop
    redoing both products and both functions."""
    outs, inputs, values = _gated_rnn()
    before = scans(outs)
    forward = [v for v in before if v.op.n_nitsot == 0]
    extended = [v for v in before if v.op.n_nitsot == 2 and v.op.n_states == 1]
    assert len(forward) == 1 and len(extended) == 1  # the gradient's copy stores two values
    assert extended[0].inputs == forward[0].inputs
    merged = merge_extended_scans(outs)
    assert len(scans(merged)) == len(before) - 1
    same_values(outs, merged, values)
    with theanine.config.change_flags(optimizer_excluding="fuse"):
        optimized = pipeline.optimize(outs, BACKEND)
    loops = scans(optimized)
    assert len(loops) == 2  # one forward loop, one backward loop
    backward = max(loops, key=lambda v: v.op.n_seqs)
    names = [type(v.op).__name__ for v in toposort(backward.op.inner_outputs) if v.inputs]
    assert "Sigmoid" not in names and "Tanh" not in names
    outer = [v for v in toposort(backward.inputs) if v.inputs and isinstance(v.op, (Dot, TensorDot))]
    assert outer == []  # no product over the stored states redone for the backward loop
    same_values(outs, optimized, values)
    # and the compiled function agrees with numpy's reference evaluation of the unrewritten graph
    f = theanine.function(list(inputs), outs, mode="numba")
    got = f(*(values[v] for v in inputs))
    for a, b in zip(got, evaluate(outs, values)):
        np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-12)


def test_a_scan_without_an_extension_is_left_alone():
    outs, _, values = _gated_rnn()
    forward_only = [outs[0]]  # the cost alone: no gradient, no extended copy
    assert merge_extended_scans(forward_only) == forward_only
