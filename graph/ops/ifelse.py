"""IfElse: a lazy conditional holding its two branches as inner graphs; only the taken one runs."""

from __future__ import annotations

from dataclasses import dataclass

from ..type import TensorType, TupleType
from ..var import Op
from .scan import InnerPlan

__all__ = ["IfElse"]


def _merged(a: TensorType, b: TensorType) -> TensorType:
    """The type of a value that is either of type a or of type b (same dtype and ndim)."""
    return TensorType(a.dtype, tuple(x if x == y else None for x, y in zip(a.shape, b.shape)))


@dataclass(frozen=True)
class IfElse(Op):
    """Inputs (condition, *free variables of the branches); `inner_inputs` stand for those free
    variables inside `then_outputs` and `else_outputs`. Only the taken branch is computed."""

    inner_inputs: tuple
    then_outputs: tuple
    else_outputs: tuple
    name: str | None = None

    def make_type(self, inputs):
        if len(inputs) != 1 + len(self.inner_inputs):
            raise TypeError(f"IfElse takes {1 + len(self.inner_inputs)} inputs, got {len(inputs)}")
        cond = inputs[0]
        if cond.ndim != 0:
            raise TypeError(
                f"ifelse: the condition must be a scalar, got {cond} of type {cond.type}"
            )
        for p, x in zip(self.inner_inputs, inputs[1:]):
            if p.dtype != x.dtype or p.ndim != x.ndim:
                raise TypeError(f"ifelse: input {x} of type {x.type} does not fit {p.type}")
        types = []
        for k, (a, b) in enumerate(zip(self.then_outputs, self.else_outputs)):
            if a.dtype != b.dtype or a.ndim != b.ndim:
                raise TypeError(
                    f"ifelse: output {k} of the then branch has type {a.type}, of the else branch "
                    f"{b.type}; both branches must give the same dtype and number of dimensions"
                )
            types.append(_merged(a.type, b.type))
        return types[0] if len(types) == 1 else TupleType(types)

    def _plan(self, taken: bool) -> InnerPlan:
        key = "_then_plan" if taken else "_else_plan"
        plan = self.__dict__.get(key)
        if plan is None:
            outputs = self.then_outputs if taken else self.else_outputs
            plan = InnerPlan(self.inner_inputs, outputs)
            object.__setattr__(self, key, plan)
        return plan

    def perform(self, cond, *values):
        return self.run_branch(self._plan(bool(cond)), values)

    def run_branch(self, plan, values) -> object:
        """The taken branch's outputs, run by `plan.run(values)` (a backend's compiled branch)."""
        outs = plan.run(list(values))
        return outs[0] if len(outs) == 1 else tuple(outs)

    def pullback(self, inputs, output, g):
        raise NotImplementedError("the gradient of IfElse is built by theanine.compiler.ifelse")

    def __getstate__(self):
        state = dict(self.__dict__)
        state.pop("_then_plan", None)
        state.pop("_else_plan", None)
        return state

    def __str__(self) -> str:
        name = f"{self.name}, " if self.name else ""
        return f"IfElse{{{name}{len(self.then_outputs)} output(s)}}"
