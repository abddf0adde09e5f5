"""Infix text of a small scalar graph (the body of a Composite), for printing and debugging."""

from __future__ import annotations

from .var import Constant, Var

_INFIX = {"Add": "+", "Sub": "-", "Mul": "*", "TrueDiv": "/", "Pow": "**", "IntDiv": "//", "Mod": "%"}


def scalar_text(var: Var, placeholders: tuple) -> str:
    """`tanh((i0 * i1) + i2)`-style text of `var` over the composite's placeholders."""
    names = {id(p): f"i{k}" for k, p in enumerate(placeholders)}

    def text(v: Var) -> str:
        if id(v) in names:
            return names[id(v)]
        if isinstance(v.op, Constant):
            return repr(v.op.data.item()) if v.op.data.size == 1 else "<const>"
        kind = type(v.op).__name__
        if kind in _INFIX and len(v.inputs) == 2:
            return f"({text(v.inputs[0])} {_INFIX[kind]} {text(v.inputs[1])})"
        if kind == "Neg":
            return f"-{text(v.inputs[0])}"
        label = str(v.op) if hasattr(v.op, "name") else kind.lower()  # user kernels show their name
        return f"{label}({', '.join(text(x) for x in v.inputs)})"

    return text(var)
