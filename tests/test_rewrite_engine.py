"""The rewrite engine: pattern matching, bottom-up fixed point, step limit, reports, traces."""

from __future__ import annotations

import numpy as np
import pytest

import theanine.tensor as T
from theanine.compiler.rewrite import Pat, RewriteCycleError, rewrite, rule
from theanine.graph.ops.elemwise import Add, Exp, Log, Mul, Neg
from theanine.graph.ops.reduce import Sum
from theanine.graph.var import Constant, Op, Var

x = Pat.var("x")


def _fold(node):
    if node.inputs and all(isinstance(i.op, Constant) for i in node.inputs):
        return Var(Constant(np.asarray(node.op.perform(*[i.op.data for i in node.inputs]), dtype=node.dtype)), ())
    return None


RULES = [
    rule("fold", Pat(Op), _fold),
    rule("mul_one", Pat(Mul, x, Pat.const(1.0)), lambda x: x),
    rule("log_exp", Pat(Log, Pat(Exp, x)), lambda x: x),
    rule("neg_neg", Pat(Neg, Pat(Neg, x)), lambda x: x),
]


def test_rules_apply_bottom_up_to_a_fixed_point():
    a = T.dmatrix("a")
    report = []
    (out,) = rewrite([T.log(T.exp(-(-(a * 1.0))))], RULES, name="simplify", report=report)
    assert out is a
    assert report[0].name == "simplify"
    assert dict(report[0].fired) == {"fold": 1, "mul_one": 1, "neg_neg": 1, "log_exp": 1}


def test_a_replacement_exposes_new_matches_above_it():
    a = T.dvector("a")
    expr = T.exp(T.log(T.exp(a) * 1.0))
    (out,) = rewrite([T.log(expr)], RULES)
    # log(exp(log(exp(a) * 1))) -> log(exp(log(exp(a)))) -> log(exp(a)) -> a
    assert out is a


def test_unmatched_graph_is_returned_unchanged():
    a, b = T.dvector("a"), T.dvector("b")
    expr = T.exp(a) + b
    (out,) = rewrite([expr], RULES)
    assert out is expr


def test_field_patterns_and_repeated_variables():
    a, b = T.dmatrix("a"), T.dmatrix("b")
    same = rule("x_plus_x", Pat(Add, x, x), lambda x: x * 2.0)
    (out,) = rewrite([a + a], [same])
    assert out is a * 2.0
    (kept,) = rewrite([a + b], [same])
    assert kept is a + b
    only_axis0 = rule("sum0", Pat(Sum, x, axis=(0,)), lambda x: T.sum(x, axis=(0,), keepdims=False) * 1.0)
    (out0,) = rewrite([T.sum(a, axis=1)], [only_axis0])
    assert out0 is T.sum(a, axis=1)


def test_values_agree_on_a_deep_chain():
    a = T.dvector("a")
    y = a
    for _ in range(300):
        y = T.log(T.exp(y * 1.0)) + 1.0
    (out,) = rewrite([y], RULES)
    value = np.array([0.5, -1.0])
    assert np.allclose(out.eval({a: value}), y.eval({a: value}))
    assert sum(1 for v in __import__("theanine").toposort([out]) if isinstance(v.op, (Exp, Log))) == 0


def test_cycles_stop_with_a_message_naming_the_rules():
    a, b = T.dmatrix("a"), T.dmatrix("b")
    swap = rule("swap_add", Pat(Add, Pat.var("p"), Pat.var("q")), lambda p, q: Var(Add(), (q, p)))
    with pytest.raises(RewriteCycleError, match=r"swap_add \(\d+ times\).*optimizer_excluding"):
        rewrite([a + b], [swap])


def test_a_rule_that_changes_the_type_is_refused():
    a = T.dmatrix("a")
    bad = rule("bad", Pat(Exp, x), lambda x: T.sum(x))
    with pytest.raises(TypeError, match="rule 'bad' changed the type"):
        rewrite([T.exp(a)], [bad])


def test_new_nodes_keep_the_users_line():
    a = T.dvector("a")
    expr = T.exp(a) * 1.0 + 2.0  # the user's line
    double = rule("add_to_mul", Pat(Add, x, Pat.const(2.0)), lambda x: x * 3.0)
    (out,) = rewrite([expr], RULES + [double])
    assert out.owner.inputs[0] is T.exp(a)
    assert "the user's line" in out.where()
