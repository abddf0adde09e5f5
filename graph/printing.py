"""`theanine.printing`: debugprint (indented graph text), pprint (infix), pydotprint (graphviz)."""

from __future__ import annotations

import io
import os
import shutil
import subprocess
import sys
import tempfile
import warnings
from dataclasses import MISSING, dataclass, field, fields
from typing import Any, Sequence, TextIO

from .ops.elemwise import Elemwise
from .var import Constant, Input, Shared, Var, toposort

__all__ = ["debugprint", "pprint", "pp", "pydotprint"]


def _outputs_of(obj: Any) -> list:
    """The Vars to print for a Var, a list of Vars, or a compiled function (duck typed)."""
    fgraph = _fgraph_of(obj)
    if fgraph is not None:
        return list(fgraph.outputs)
    if isinstance(obj, Var):
        return [obj]
    if isinstance(obj, (list, tuple)):
        found = []
        for item in obj:
            found.extend(_outputs_of(item))
        return found
    owner_outputs = getattr(obj, "outputs", None)  # an Apply
    if isinstance(owner_outputs, list):
        return list(owner_outputs)
    raise TypeError(
        f"debugprint: cannot print a {type(obj).__name__}; give a variable, a list or a function"
    )


def _fgraph_of(obj: Any) -> Any:
    fgraph = getattr(getattr(obj, "maker", None), "fgraph", None)
    return fgraph if hasattr(fgraph, "outputs") else None


def _char_id(number: int) -> str:
    """0 -> A, 25 -> Z, 26 -> BA: base 26 with letters as digits."""
    digits = []
    while True:
        number, rem = divmod(number, 26)
        digits.append(chr(ord("A") + rem))
        if number == 0:
            return "".join(reversed(digits))


def _leaf_text(var: Var) -> str:
    if isinstance(var.op, Constant):
        return var.name or f"TensorConstant{{{var.op}}}"
    if isinstance(var.op, Shared):
        return var.name or str(var.op)
    if isinstance(var.op, Input):
        return var.name or f"<{var.type}>"
    return str(var)


@dataclass
class _Printer:
    """The settings and shared state of one debugprint call."""

    stream: TextIO
    depth: int
    print_type: bool
    ids: str
    stop_on_name: bool
    done: dict
    used_ids: dict
    leaves: frozenset = frozenset()  # a function's inputs: printed as leaves
    positions: dict = field(default_factory=dict)  # id(var) -> position in a function's toposort


def debugprint(
    obj: Any, depth: int = -1, print_type: bool = False, file: Any = None, ids: str = "CHAR",
    stop_on_name: bool = False, done: dict | None = None, print_storage: bool = False,
    used_ids: dict | None = None,
) -> Any:
    """Print a graph one node per line, indented by depth; repeated subgraphs are printed once.

    `file='str'` returns the text; `file=None` prints to stdout and returns sys.stdout; any
    file object works (and is returned). For a compiled function, each node ends with its
    position in the function's toposort, as in Theano.
    """
    if ids not in ("CHAR", "id", "int", ""):
        raise ValueError(f"debugprint: ids must be 'CHAR', 'id', 'int' or '', got {ids!r}")
    stream: TextIO = io.StringIO() if file == "str" else (sys.stdout if file is None else file)
    printer = _Printer(
        stream, depth, print_type, ids, stop_on_name,
        {} if done is None else done, {} if used_ids is None else used_ids,
    )
    fgraph = _fgraph_of(obj)
    if fgraph is not None:
        printer.leaves = frozenset(id(v) for v in getattr(fgraph, "inputs", ()))
        if hasattr(fgraph, "toposort"):
            printer.positions = {id(a.outputs[0]): k for k, a in enumerate(fgraph.toposort())}
    for var in _outputs_of(obj):
        _print_tree(var, printer)
    return stream.getvalue() if file == "str" else stream


def _id_of(var: Var, printer: _Printer) -> str:
    if printer.ids == "":
        return ""
    used = printer.used_ids
    if id(var) not in used:
        number = len(used)
        kind = printer.ids
        text = _char_id(number) if kind == "CHAR" else str(id(var) if kind == "id" else number)
        used[id(var)] = text
    return f" [id {used[id(var)]}]"


def _print_tree(root: Var, printer: _Printer) -> None:
    """Write `root` and its inputs; iterative so that deep graphs do not hit the recursion limit."""
    stack = [(root, printer.depth, "", "")]
    write = printer.stream.write
    while stack:
        var, left, prefix, child_prefix = stack.pop()
        if left == 0:  # depth=1 prints the root only, as in Theano
            continue
        type_text = f" <{var.type}>" if printer.print_type else ""
        if not var.inputs or id(var) in printer.leaves:
            write(f"{prefix}{_leaf_text(var)}{_id_of(var, printer)}{type_text}\n")
            continue
        seen = id(var) in printer.done
        position = printer.positions.get(id(var))
        suffix = "" if position is None else f"   {position}"
        write(f"{prefix}{var.op}{_id_of(var, printer)}{type_text} '{var.name or ''}'{suffix}\n")
        printer.done[id(var)] = var
        if seen or (printer.stop_on_name and var.name and var is not root):
            continue
        children = []
        for k, x in enumerate(var.inputs):
            below = child_prefix + ("  " if k == len(var.inputs) - 1 else " |")
            children.append((x, left - 1, child_prefix + " |", below))
        stack.extend(reversed(children))


# --- pprint ---------------------------------------------------------------------------------------

_INFIX = {
    "Add": "+", "Sub": "-", "Mul": "*", "TrueDiv": "/", "IntDiv": "//", "Mod": "%", "Pow": "**",
    "LT": "<", "GT": ">", "LE": "<=", "GE": ">=", "EQ": "==", "NEQ": "!=", "And": "&", "Or": "|",
    "Xor": "^", "MatMul": "@",
}


def _op_params(op: Any) -> list:
    """The op's fields that differ from their defaults, as 'name=value'."""
    if not hasattr(op, "__dataclass_fields__"):
        return []
    out = []
    for f in fields(op):
        value = getattr(op, f.name)
        if f.default is not MISSING and value == f.default:
            continue
        out.append(f"{f.name}={value!r}")
    return out


def _is_padding(var: Var) -> bool:
    """A DimShuffle that only inserts broadcastable axes (what elementwise broadcasting adds)."""
    if type(var.op).__name__ != "DimShuffle":
        return False
    kept = [d for d in var.op.new_order if d != "x"]
    return kept == list(range(var.inputs[0].ndim))


def _index_text(idx: tuple, refs: list) -> str:
    """Subtensor's encoded index as Python source: 1:3, i, :, None."""

    def part(p):
        if p is None:
            return ""
        return refs[p[1]] if isinstance(p, tuple) else str(p)

    items = []
    for e in idx:
        if e is None:
            items.append("None")
        elif isinstance(e, int):
            items.append(str(e))
        elif e[0] == "slice":
            start, stop, step = (part(p) for p in e[1:])
            items.append(f"{start}:{stop}" + (f":{step}" if step else ""))
        else:  # ("in" | "adv" | "bool", k): a symbolic index
            items.append(refs[e[1]])
    return ", ".join(items)


def _pp_node(var: Var, args: list, unpadded: dict) -> str:
    op = var.op
    kind = type(op).__name__
    if isinstance(op, Elemwise):  # implicit broadcasting is not what the user wrote: hide it
        args = [unpadded.get(id(x), a) for x, a in zip(var.inputs, args)]
    if kind in _INFIX and len(args) == 2:
        return f"({args[0]} {_INFIX[kind]} {args[1]})"
    if kind == "Neg":
        return f"-{args[0]}"
    if kind == "DimShuffle":
        order = op.new_order
        if tuple(order) == tuple(reversed(range(var.inputs[0].ndim))):
            return f"{args[0]}.T"
        return f"{args[0]}.dimshuffle({', '.join(map(repr, order))})"
    if kind == "Subtensor":
        return f"{args[0]}[{_index_text(op.idx, args[1:])}]"
    if kind == "IncSubtensor":
        what = "set_subtensor" if op.set_instead_of_inc else "inc_subtensor"
        return f"{what}({args[0]}[{_index_text(op.idx, args[2:])}], {args[1]})"
    if kind == "Cast":
        return f"cast({args[0]}, {op.dtype!r})"
    return f"{kind.lower()}({', '.join(args + _op_params(op))})"


def pprint(obj: Any) -> str:
    """Infix text of an expression, e.g. '(x + (y * 2.0))', 'exp(x)', 'sum(x, axis=(1,))'."""
    outputs = _outputs_of(obj)
    text: dict[int, str] = {}
    unpadded: dict[int, str] = {}  # id(padding DimShuffle) -> text of its input
    for var in toposort(outputs):
        if not var.inputs:
            is_constant = isinstance(var.op, Constant)
            text[id(var)] = (var.name or str(var.op)) if is_constant else _leaf_text(var)
            continue
        text[id(var)] = _pp_node(var, [text[id(x)] for x in var.inputs], unpadded)
        if _is_padding(var):
            unpadded[id(var)] = text[id(var.inputs[0])]
    return "\n".join(text[id(v)] for v in outputs)


pp = pprint


# --- pydotprint ---------------------------------------------------------------------------------

_warned_no_dot = False
_LEAF_COLORS = {Constant: "lightgrey", Input: "limegreen", Shared: "cyan"}


def _dot_quote(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def _dot_box(node: str, label: str, color: str) -> str:
    return f"  {node} [label={_dot_quote(label)}, shape=box, style=filled, fillcolor={color}];"


def dot_source(
    outputs: list, max_label_size: int = 70, with_ids: bool = False, stop: Sequence[Var] = ()
) -> str:
    """The graphviz DOT text of the graph computing `outputs` (ops as ellipses, leaves as boxes)."""

    def clip(label: str) -> str:
        return label if len(label) <= max_label_size else label[: max_label_size - 3] + "..."

    stop = set(stop)  # a function's inputs: drawn as leaves even when they have an op
    order = toposort(outputs, stop=stop)
    names = {id(v): f"n{k}" for k, v in enumerate(order)}
    lines = ["digraph G {", "  graph [rankdir=TB];"]
    for k, var in enumerate(order):
        node = names[id(var)]
        suffix = f" id={k}" if with_ids else ""
        if not var.inputs or var in stop:
            color = _LEAF_COLORS.get(type(var.op), "limegreen")
            lines.append(_dot_box(node, clip(f"{_leaf_text(var)}{suffix}\n{var.type}"), color))
            continue
        lines.append(f"  {node} [label={_dot_quote(clip(str(var.op) + suffix))}, shape=ellipse];")
        for position, x in enumerate(var.inputs):
            edge = f"{position} {x.type}" if len(var.inputs) > 1 else str(x.type)
            lines.append(f"  {names[id(x)]} -> {node} [label={_dot_quote(edge)}];")
    for k, var in enumerate(outputs):
        label = f"{var.name + ' ' if var.name else ''}{var.type}"
        lines.append(_dot_box(f"out{k}", label, "dodgerblue"))
        lines.append(f"  {names[id(var)]} -> out{k};")
    lines.append("}")
    return "\n".join(lines) + "\n"


def pydotprint(
    fct: Any, outfile: str | None = None, compact: bool = True, format: str = "png",
    with_ids: bool = False, high_contrast: bool = True, cond_highlight=None, colorCodes=None,
    max_label_size: int = 70, scan_graphs: bool = False, var_with_name_simple: bool = False,
    print_output_file: bool = True, return_image: bool = False,
) -> list:
    """Write a graphviz picture of a graph or function: a .dot file, and an image if `dot` exists.

    The image format comes from outfile's extension (or `format`); returns the paths written.
    """
    global _warned_no_dot
    outputs = _outputs_of(fct)
    fgraph = _fgraph_of(fct)
    stop = list(getattr(fgraph, "inputs", ())) if fgraph is not None else []
    if outfile is None:
        outfile = os.path.join(tempfile.gettempdir(), f"theanine.pydotprint.{format}")
    base, ext = os.path.splitext(str(outfile))
    format = ext.lstrip(".") or format
    dot_path = base + ".dot"
    with open(dot_path, "w") as handle:
        handle.write(dot_source(outputs, max_label_size, with_ids, stop))
    written = [dot_path]
    dot_program = shutil.which("dot") if format != "dot" else None
    if format != "dot" and dot_program is None and not _warned_no_dot:
        warnings.warn(
            f"pydotprint: the graphviz 'dot' program is not on PATH, so only {dot_path} was "
            "written; install graphviz (e.g. apt-get install graphviz) and run "
            f"'dot -T{format} {dot_path} -o {base}.{format}' to get the picture",
            stacklevel=2,
        )
        _warned_no_dot = True
    if dot_program is not None:
        image = f"{base}.{format}"
        subprocess.run([dot_program, f"-T{format}", dot_path, "-o", image], check=True)
        written.append(image)
    if print_output_file:
        print("The output file is available at", ", ".join(written))
    return written


def rewrite_report(fn, file=None) -> str:
    """Which rewrite rules fired in a compiled function, how often, and how long each pass took."""
    lines = [f"Rewrites of {getattr(fn, 'name', None) or 'function'}:"]
    for report in getattr(fn, "rewrite_report", []):
        fired = ", ".join(f"{name} x{count}" for name, count in report.fired.most_common()) or "nothing fired"
        lines.append(f"  {report.name:<18} {report.seconds * 1000:8.2f} ms  {fired}")
    text = "\n".join(lines)
    if file == "str":
        return text
    print(text, file=file)
    return text


def show_kernels(fn, file=None) -> str:
    """Print the generated source of every kernel of a compiled function (numba loops, CUDA C)."""
    parts = [f"# {where}\n{source}" for where, source in fn.kernel_sources()]
    text = "\n\n".join(parts) if parts else f"# mode {fn.mode!r} generates no kernel source"
    if file == "str":
        return text
    print(text, file=file)
    return text
