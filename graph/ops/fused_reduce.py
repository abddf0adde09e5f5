"""FusedReduce: a sum, prod, max or min of a fused elementwise body, computed in one pass."""

from __future__ import annotations

from dataclasses import dataclass

from ..type import TensorType
from ..var import Op, Var
from .composite import Composite
from .reduce import Max, Min, Prod, Sum

# The reductions that may absorb the elementwise work feeding them.
FUSABLE_REDUCTIONS = (Sum, Prod, Max, Min)


@dataclass(frozen=True)
class FusedReduce(Op):
    """`reduce` applied to the single output of the elementwise `body`, without materialising it.

    `body` is a one-output Composite over this node's inputs (they broadcast as for any Elemwise);
    `reduce` is the Sum, Prod, Max or Min op it replaces (its axis, keepdims and dtype);
    `broadcastable` holds, per input, which axes are typed size 1: only those may broadcast at run
    time (Theano).
    """

    body: Composite
    reduce: Op
    broadcastable: tuple

    def make_type(self, inputs):
        if not isinstance(self.reduce, FUSABLE_REDUCTIONS):
            raise TypeError(f"FusedReduce: cannot fuse a {type(self.reduce).__name__} reduction")
        if len(self.body.outputs) != 1:
            raise TypeError(
                f"FusedReduce needs a one-output body, got {len(self.body.outputs)} outputs"
            )
        mapped = self.body.make_type(inputs)
        return self.reduce.infer_type(mapped)

    @property
    def kind(self) -> str:
        """'sum', 'prod', 'max' or 'min'."""
        return type(self.reduce).__name__.lower()

    @property
    def axis(self) -> tuple:
        """The reduced axes (sorted)."""
        return self.reduce.axis

    @property
    def keepdims(self) -> bool:
        """Whether reduced axes stay as size-1 axes."""
        return self.reduce.keepdims

    def perform(self, *xs):
        check_broadcast(self, xs)
        return self.reduce.perform(self.body.perform(*xs))

    def pullback(self, inputs, output, g):
        raise NotImplementedError("differentiate before fusion: a FusedReduce has no gradient rule")

    def __str__(self) -> str:
        from ..printing_scalar import scalar_text

        body = scalar_text(self.body.outputs[0], self.body.placeholders)
        keep = ", keepdims" if self.keepdims else ""
        return f"FusedReduce{{{self.kind}{list(self.axis)}{keep} of {body}}}"


def check_broadcast(op: FusedReduce, xs) -> None:
    """Raise ValueError when an input broadcasts along an axis not typed broadcastable."""
    for axis in range(xs[0].ndim if xs else 0):
        size = None
        for k, (x, kinds) in enumerate(zip(xs, op.broadcastable)):
            if kinds[axis]:
                continue
            n = x.shape[axis]
            if size is None:
                size = (n, k)
            elif n != size[0]:
                raise ValueError(
                    f"FusedReduce: input {size[1]} has size {size[0]} but input {k} has size {n} "
                    f"on axis {axis}; only axes typed broadcastable (static size 1) broadcast, "
                    "as in Theano"
                )


def fused_reduce(body: Composite, reduce: Op, inputs: tuple) -> Var:
    """The node computing `reduce(body(*inputs))` in one pass."""
    broadcastable = tuple(
        tuple(d == 1 for d in x.type.shape) if isinstance(x.type, TensorType) else ()
        for x in inputs
    )
    return Var(FusedReduce(body, reduce, broadcastable), tuple(inputs))


__all__ = ["FusedReduce", "fused_reduce", "FUSABLE_REDUCTIONS"]

