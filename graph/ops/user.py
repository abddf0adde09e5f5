"""User-defined elementwise ops: a traced scalar body (UserElemwise), per-backend code (ScalarKernel).

The public constructors live in `theanine.kernels.user` (`elementwise`, `scalar_kernel`); these are
the graph-level semantics: type inference, the numpy reference and the gradient. Backends render a
UserElemwise by inlining its body into the fused loop or kernel, and a ScalarKernel by calling the
user's compiled numba function or CUDA device function from it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from ..type import TensorType, is_discrete, upcast
from ..var import Constant, Var, toposort
from .composite import Composite
from .elemwise import Elemwise, broadcast_shapes, prepare_inputs, second


class KernelError(TypeError):
    """A user kernel was defined or used wrongly; the message names the kernel."""


def _check_arity(what: str, inputs: tuple, n: int) -> None:
    if len(inputs) != n:
        raise KernelError(f"{what} takes {n} input(s), got {len(inputs)}")
    if len({x.ndim for x in inputs}) > 1:
        ndims = [x.ndim for x in inputs]
        raise KernelError(f"{what}: inputs must have equal ndim here, got {ndims}")


def _broadcast(op: Elemwise, what: str, inputs: tuple) -> tuple:
    try:
        return broadcast_shapes(op, inputs)
    except ValueError as error:
        raise ValueError(f"{what}: {error}") from None


@dataclass(frozen=True)
class UserElemwise(Elemwise):
    """A named elementwise op whose scalar body was traced from a user's Python function."""

    name: str
    placeholders: tuple
    outputs: tuple

    @property
    def what(self) -> str:
        """How errors name this op: elementwise kernel 'swish'."""
        return f"elementwise kernel '{self.name}'"

    def make_type(self, inputs: tuple) -> TensorType:
        _check_arity(self.what, inputs, len(self.placeholders))
        for k, (p, x) in enumerate(zip(self.placeholders, inputs)):
            if x.dtype != p.dtype:
                raise KernelError(
                    f"{self.what} was traced for input {k} of dtype {p.dtype}, got {x} of dtype "
                    f"{x.dtype}; call the decorated function (it traces once per dtype)"
                )
        return TensorType(self.outputs[0].dtype, _broadcast(self, self.what, inputs))

    @property
    def nodes(self) -> list[Var]:
        """The body's inner nodes in evaluation order."""
        return [v for v in toposort(self.outputs) if v.inputs]

    def perform(self, *xs: np.ndarray) -> np.ndarray:
        return Composite(self.placeholders, self.outputs).perform(*xs)

    def perform_into(self, out: np.ndarray, *xs: np.ndarray) -> np.ndarray:
        return self.perform(*xs)

    def pullback(self, inputs, output, g):
        # Rebuild the body on the real inputs (broadcast to one shape, so that no inner node
        # broadcasts) and differentiate it node by node with each op's own pullback.
        same = all(x.type.shape == output.type.shape for x in inputs)
        real = tuple(x if same else second(g, x) for x in inputs)
        body = rebuild_body(self.placeholders, self.outputs[0], real)
        cotangents = differentiate(body, real, g)
        return tuple(None if is_discrete(x.dtype) else c for x, c in zip(inputs, cotangents))

    def __str__(self) -> str:
        return self.name


def rebuild_body(placeholders: tuple, output: Var, inputs: tuple) -> Var:
    """The scalar body `output` applied to real tensors `inputs` (one per placeholder)."""
    new: dict[int, Var] = {id(p): x for p, x in zip(placeholders, inputs)}
    for node in toposort([output], stop=set(placeholders)):
        if id(node) in new:
            continue
        if not node.inputs:  # a constant of the body
            new[id(node)] = node
            continue
        args = tuple(new[id(x)] for x in node.inputs)
        new[id(node)] = Var(node.op, prepare_inputs(node.op, args))
    return new[id(output)]


def differentiate(output: Var, wrt: tuple, g: Var) -> list[Var | None]:
    """Reverse-mode cotangents of `output` (seeded with g) for each of `wrt`, by op pullbacks."""
    stop = set(wrt)
    cotangent: dict[int, Var] = {id(output): g}
    for node in reversed(toposort([output], stop=stop)):
        if id(node) in {id(w) for w in wrt} or not node.inputs or id(node) not in cotangent:
            continue
        parts = node.op.pullback(node.inputs, node, cotangent[id(node)])
        for x, part in zip(node.inputs, parts):
            if part is None or isinstance(x.op, Constant) or is_discrete(x.dtype):
                continue
            if part.dtype != x.dtype:
                from .elemwise import cast

                part = cast(part, x.dtype)
            previous = cotangent.get(id(x))
            cotangent[id(x)] = part if previous is None else previous + part
    return [cotangent.get(id(w)) for w in wrt]


@dataclass(frozen=True)
class ScalarKernel(Elemwise):
    """A named elementwise op whose code the user wrote per backend (numba function, CUDA C).

    Inputs are promoted to one dtype, which must be among `dtypes`; the result has that dtype.
    `numpy` (or, without it, the numba function applied element by element) is the reference.
    """

    name: str
    arity: int
    numba: Callable | None = None
    cuda: str | None = None
    grad: Callable | None = None
    dtypes: tuple = ("float32", "float64")
    numpy: Callable | None = None
    params: tuple = ()

    @property
    def what(self) -> str:
        """How errors name this op: scalar kernel 'softplus'."""
        return f"scalar kernel '{self.name}'"

    def output_dtype(self, *dtypes: str) -> str:
        dtype = upcast(*dtypes)
        if dtype not in self.dtypes:
            raise KernelError(
                f"{self.what} declares dtypes {', '.join(self.dtypes)}; its inputs have dtypes "
                f"{', '.join(dtypes)} (computed as {dtype}); cast them, or declare {dtype} "
                "in dtypes="
            )
        return dtype

    def make_type(self, inputs: tuple) -> TensorType:
        _check_arity(self.what, inputs, self.arity)
        dtype = self.output_dtype(*[x.dtype for x in inputs])
        return TensorType(dtype, _broadcast(self, self.what, inputs))

    def impl(self, *xs: np.ndarray) -> np.ndarray:
        dtype = upcast(*[x.dtype.name for x in xs])
        xs = tuple(x.astype(dtype, copy=False) for x in xs)
        if self.numpy is not None:
            return self.numpy(*xs)
        return np.vectorize(self.numba, otypes=[dtype])(*xs)

    def pullback(self, inputs, output, g):
        if self.grad is None:
            message = f"{self.what} declares no gradient (pass grad= to scalar_kernel)"
            raise NotImplementedError(message)
        return check_cotangents(self.what, self.grad(tuple(inputs), output, g), len(inputs))

    def __str__(self) -> str:
        return self.name


def check_cotangents(what: str, result, n: int) -> tuple:
    """A grad rule's result as a tuple of n Vars or None; raises naming the kernel otherwise."""
    if isinstance(result, Var) or not isinstance(result, (tuple, list)):
        got = "a single Var" if isinstance(result, Var) else type(result).__name__
        raise KernelError(
            f"{what}: grad must return a tuple with one cotangent (or None) per input "
            f"({n}), got {got}"
        )
    if len(result) != n:
        raise KernelError(
            f"{what}: grad returned {len(result)} cotangent(s), expected {n} (one per input)"
        )
    from ..var import as_tensor_variable

    return tuple(None if c is None else as_tensor_variable(c) for c in result)


__all__ = ["UserElemwise", "ScalarKernel", "KernelError", "rebuild_body", "differentiate"]
