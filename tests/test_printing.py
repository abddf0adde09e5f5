"""theanine.printing: debugprint, pprint and pydotprint text for small graphs."""

from __future__ import annotations

import io
import types
import warnings
from dataclasses import dataclass

import numpy as np
import pytest

import theanine
import theanine.tensor as T
from theanine import printing
from theanine.graph.type import TensorType
from theanine.graph.var import Op, Var


@dataclass(frozen=True)
class Twice(Op):
    """2 * x (a test op with a parameterless name)."""

    def infer_type(self, x: TensorType) -> TensorType:
        return x

    def perform(self, x):
        return 2 * x


@dataclass(frozen=True)
class Scale(Op):
    """factor * x (a test op with a parameter)."""

    factor: float = 1.0

    def infer_type(self, x: TensorType) -> TensorType:
        return x

    def perform(self, x):
        return self.factor * x


@dataclass(frozen=True)
class Pair(Op):
    """x + y (a test op with two inputs)."""

    def infer_type(self, x: TensorType, y: TensorType) -> TensorType:
        return x

    def perform(self, x, y):
        return x + y


def small_graph():
    x, y = T.dvector("x"), T.dvector("y")
    inner = Var(Twice(), (x,))
    out = Var(Pair(), (Var(Scale(3.0), (inner,)), Var(Pair(), (inner, y))), name="out")
    return x, y, inner, out


def test_debugprint_exact_text_with_shared_subgraph():
    x, y, inner, out = small_graph()
    expected = (
        "Pair [id A] 'out'\n"
        " |Scale{factor=3.0} [id B] ''\n"
        " | |Twice [id C] ''\n"
        " |   |x [id D]\n"
        " |Pair [id E] ''\n"
        "   |Twice [id C] ''\n"
        "   |y [id F]\n"
    )
    assert printing.debugprint(out, file="str") == expected


def test_debugprint_types_ids_depth_and_stop_on_name():
    x, y, inner, out = small_graph()
    text = printing.debugprint(inner, file="str", print_type=True, ids="int")
    assert text == "Twice [id 0] <float64[?]> ''\n |x [id 1] <float64[?]>\n"
    assert printing.debugprint(out, file="str", depth=1) == "Pair [id A] 'out'\n"
    assert printing.debugprint(out, file="str", depth=2) == (
        "Pair [id A] 'out'\n |Scale{factor=3.0} [id B] ''\n |Pair [id C] ''\n"
    )
    assert printing.debugprint(out, file="str", ids="") == (
        "Pair 'out'\n |Scale{factor=3.0} ''\n | |Twice ''\n |   |x\n"
        " |Pair ''\n   |Twice ''\n   |y\n"
    )
    inner.name = "twice"
    try:
        text = printing.debugprint(Var(Scale(2.0), (inner,)), file="str", stop_on_name=True)
    finally:
        inner.name = None
    assert text == "Scale{factor=2.0} [id A] ''\n |Twice [id B] 'twice'\n"
    with pytest.raises(ValueError, match="ids must be 'CHAR', 'id', 'int' or '', got 'x'"):
        printing.debugprint(out, ids="x")


def test_debugprint_list_shares_ids_and_constants_print_like_theano():
    x = T.dvector("x")
    a, b = Var(Twice(), (x,)), Var(Pair(), (Var(Twice(), (x,)), T.constant(np.float64(2.5))))
    text = printing.debugprint([a, b], file="str")
    assert text == (
        "Twice [id A] ''\n |x [id B]\n"
        "Pair [id C] ''\n |Twice [id A] ''\n |TensorConstant{2.5} [id D]\n"
    )


def test_debugprint_writes_to_files_and_stdout(capsys):
    x, y, inner, out = small_graph()
    buffer = io.StringIO()
    assert printing.debugprint(inner, file=buffer) is buffer
    assert buffer.getvalue() == "Twice [id A] ''\n |x [id B]\n"
    returned = printing.debugprint(inner)
    assert capsys.readouterr().out == "Twice [id A] ''\n |x [id B]\n"
    assert returned is not None


def test_debugprint_of_a_compiled_function_duck_type():
    x, y, inner, out = small_graph()
    fgraph = types.SimpleNamespace(outputs=[inner])
    fake = types.SimpleNamespace(maker=types.SimpleNamespace(fgraph=fgraph))
    assert printing.debugprint(fake, file="str") == "Twice [id A] ''\n |x [id B]\n"
    with pytest.raises(TypeError, match="cannot print a int"):
        printing.debugprint(3, file="str")


def test_debugprint_of_deep_graph_does_not_recurse():
    x = T.dvector("x")
    h = x
    for _ in range(3000):
        h = Var(Twice(), (h,))
    text = printing.debugprint(h, file="str", ids="")
    assert text.count("\n") == 3001 and text.endswith("|x\n")


def test_debugprint_uses_op_str_for_real_ops():
    x, y = T.dmatrix("x"), T.dmatrix("y")
    z = T.exp(x) + y
    text = printing.debugprint(z, file="str")
    assert text == f"{z.op} [id A] ''\n |{z.inputs[0].op} [id B] ''\n | |x [id C]\n |y [id D]\n"


def test_pprint_infix():
    x, y = T.dmatrix("x"), T.dmatrix("y")
    assert printing.pprint(x + y * 2.0) == "(x + (y * 2.0))"
    assert printing.pp(T.exp(x)) == "exp(x)"
    assert printing.pprint(T.sum(x, axis=1)) == "sum(x, axis=(1,))"
    assert printing.pprint(T.sum(x, axis=0, keepdims=True)) == "sum(x, axis=(0,), keepdims=True)"
    assert printing.pprint(-(x - y) / y) == "(-(x - y) / y)"
    assert printing.pprint(x.T) == "x.T"
    assert printing.pprint(T.dtensor3("t").dimshuffle(2, "x", 0, 1)) == "t.dimshuffle(2, 'x', 0, 1)"
    b, i = T.dvector("b"), T.lscalar("i")
    assert printing.pprint(x + b) == "(x + b)"
    assert printing.pprint(T.shape_padleft(b) * 1.0) == "(b * 1.0)"
    assert printing.pprint(T.shape_padleft(b)) == "b.dimshuffle('x', 0)"
    assert printing.pprint(T.cast(x, "float32")) == "cast(x, 'float32')"
    assert printing.pprint(x[1:3]) == "x[1:3]"
    assert printing.pprint(x[::2, i:]) == "x[::2, i:]"
    assert printing.pprint(x[i, None]) == "x[i, None]"
    assert printing.pprint(T.set_subtensor(x[i], b)) == "set_subtensor(x[i], b)"
    x, y, inner, out = small_graph()
    assert printing.pprint(out) == "pair(scale(twice(x), factor=3.0), pair(twice(x), y))"
    assert printing.pprint([inner, x]) == "twice(x)\nx"


def test_pydotprint_writes_dot_file(tmp_path, monkeypatch):
    x, y, inner, out = small_graph()
    monkeypatch.setattr(printing.shutil, "which", lambda name: None)
    monkeypatch.setattr(printing, "_warned_no_dot", False)
    target = tmp_path / "graph.png"
    with pytest.warns(UserWarning, match="'dot' program is not on PATH.*apt-get install graphviz"):
        written = printing.pydotprint(out, outfile=str(target), print_output_file=False)
    assert written == [str(tmp_path / "graph.dot")]
    text = (tmp_path / "graph.dot").read_text()
    assert text.startswith("digraph G {") and text.rstrip().endswith("}")
    assert '[label="Scale{factor=3.0}", shape=ellipse]' in text
    assert '[label="x\\nfloat64[?]", shape=box, style=filled, fillcolor=limegreen]' in text
    assert text.count("->") == 7  # 6 input edges (Twice shared) + 1 to the output box
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # warned once only
        again = printing.pydotprint(out, outfile=str(tmp_path / "g2.svg"), print_output_file=False)
    assert again == [str(tmp_path / "g2.dot")]
    only_dot = printing.pydotprint(inner, outfile=str(tmp_path / "g3.dot"), print_output_file=False)
    assert only_dot == [str(tmp_path / "g3.dot")]


def test_pydotprint_renders_with_dot_when_available(tmp_path, monkeypatch):
    calls = []
    monkeypatch.setattr(printing.shutil, "which", lambda name: "/usr/bin/dot")
    monkeypatch.setattr(printing.subprocess, "run", lambda args, check: calls.append(args))
    x, y, inner, out = small_graph()
    written = printing.pydotprint(out, outfile=str(tmp_path / "g.svg"), print_output_file=False)
    assert written == [str(tmp_path / "g.dot"), str(tmp_path / "g.svg")]
    dot, svg = str(tmp_path / "g.dot"), str(tmp_path / "g.svg")
    assert calls == [["/usr/bin/dot", "-Tsvg", dot, "-o", svg]]


def test_printing_is_exposed_as_theanine_printing():
    import theanine.printing as p

    assert p is printing and theanine.printing.debugprint is printing.debugprint


def test_debugprint_and_pydotprint_of_compiled_function(tmp_path):
    x = T.dmatrix("x")
    f = theanine.function([x], T.exp(x) * 2.0, mode="py")
    text = printing.debugprint(f, file="str")
    nodes = f.maker.fgraph.toposort()
    lines = text.splitlines()
    assert lines[0].startswith(f"{nodes[-1].op} [id A] ''   {len(nodes) - 1}")
    numbered = [line for line in lines if line.endswith(tuple("0123456789"))]
    assert sorted(int(line.rsplit("   ", 1)[1]) for line in numbered) == list(range(len(nodes)))
    assert "|x [id " in text
    written = printing.pydotprint(f, outfile=str(tmp_path / "f.dot"), print_output_file=False)
    assert written == [str(tmp_path / "f.dot")]
    assert "digraph G {" in (tmp_path / "f.dot").read_text()
