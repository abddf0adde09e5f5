"""Composite: a fused group of elementwise ops held as a scalar sub-graph; Proj reads a multi-output node."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..type import TensorType, TupleType
from ..var import Constant, Input, Op, Var, toposort
from .elemwise import Elemwise, broadcast_shapes


def placeholder(position: int, dtype: str) -> Var:
    """The k-th scalar input of a composite: interned, so equal bodies give equal composites."""
    return Var(Input(f"i{position}", TensorType(dtype, ()), -1 - position), ())


@dataclass(frozen=True)
class Proj(Op):
    """Output `index` of a multi-output node."""

    index: int

    def make_type(self, inputs):
        (x,) = inputs
        if not isinstance(x.type, TupleType):
            raise TypeError(f"Proj({self.index}) needs a multi-output node, got {x.type}")
        return x.type.types[self.index]

    def perform(self, values):
        return values[self.index]

    def pullback(self, inputs, output, g):
        raise NotImplementedError("differentiate before fusion: Proj of a fused node has no gradient")


@dataclass(frozen=True)
class Composite(Elemwise):
    """Several elementwise ops fused into one node: `outputs` computed from 0-d `placeholders`.

    Every inner op is elementwise, so the composite broadcasts its inputs like any Elemwise and its
    backends render the body as one loop (numba) or one kernel (CUDA).
    """

    placeholders: tuple
    outputs: tuple

    def make_type(self, inputs):
        if len(inputs) != len(self.placeholders):
            raise TypeError(f"Composite takes {len(self.placeholders)} inputs, got {len(inputs)}")
        shape = broadcast_shapes(self, tuple(inputs))
        types = [TensorType(out.dtype, shape) for out in self.outputs]
        return types[0] if len(types) == 1 else TupleType(types)

    @property
    def nodes(self) -> list[Var]:
        """The inner nodes in evaluation order (placeholders and constants excluded)."""
        return [v for v in toposort(self.outputs) if v.inputs]

    def perform(self, *xs, out=None):
        values: dict[int, np.ndarray] = {id(p): x for p, x in zip(self.placeholders, xs)}
        last = self.outputs[0] if out is not None else None
        for node in toposort(self.outputs):
            if id(node) in values:
                continue
            if isinstance(node.op, Constant):
                values[id(node)] = node.op.data.astype(node.dtype, copy=False)
                continue
            args = [values[id(x)] for x in node.inputs]
            if node is last and np.broadcast_shapes(*[np.shape(a) for a in args]) == out.shape:
                values[id(node)] = node.op.perform_into(out, *args)  # the result lands in the donated buffer
            else:
                values[id(node)] = node.op.perform(*args)
        shape = np.broadcast_shapes(*[np.shape(x) for x in xs]) if xs else ()
        results = []
        for out in self.outputs:
            value = values[id(out)]
            if value.shape != shape:  # an output that reads only some inputs still has the full shape
                value = np.array(np.broadcast_to(value, shape))
            results.append(value.astype(out.dtype, copy=False))
        return results[0] if len(results) == 1 else tuple(results)

    def perform_into(self, out, *xs):
        """perform, with the single output written into `out` where its last op can."""
        if len(self.outputs) != 1:
            return self.perform(*xs)
        return self.perform(*xs, out=out)

    def pullback(self, inputs, output, g):
        raise NotImplementedError("differentiate before fusion: a Composite has no gradient rule")

    def __str__(self) -> str:
        from ..printing_scalar import scalar_text

        return f"Composite{{{', '.join(scalar_text(out, self.placeholders) for out in self.outputs)}}}"
