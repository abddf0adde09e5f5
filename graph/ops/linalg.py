"""Products and contractions: dot, matmul (@), tensordot, batched_dot, batched_tensordot, outer."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..type import TensorType, upcast
from ..var import Op, Var, as_tensor_variable
from .elemwise import mul
from .shape import dimshuffle

__all__ = [
    "Dot", "MatMul", "TensorDot", "dot", "matmul", "tensordot", "batched_dot", "batched_tensordot",
    "outer",
]


def _text(shape: tuple) -> str:
    """A static shape as '(3, ?)' for messages."""
    dims = ", ".join("?" if d is None else str(d) for d in shape)
    return f"({dims},)" if len(shape) == 1 else f"({dims})"


def _both(a: tuple, b: tuple) -> str:
    return f"{_text(a)} and {_text(b)}"


def _merge_dim(a: int | None, b: int | None) -> int | None:
    return a if a is not None else b


def _differ(a: int | None, b: int | None) -> bool:
    return a is not None and b is not None and a != b


# --- Dot: Theano's T.dot on vectors and matrices ------------------------------------------------


@dataclass(frozen=True)
class Dot(Op):
    """np.dot of two 1-d or 2-d tensors (vector.vector gives a scalar)."""

    def infer_type(self, a: TensorType, b: TensorType) -> TensorType:
        if a.ndim not in (1, 2) or b.ndim not in (1, 2):
            raise TypeError(f"Dot takes 1-d or 2-d inputs, got shapes {_both(a.shape, b.shape)}")
        inner_b = b.shape[0]
        if _differ(a.shape[-1], inner_b):
            raise ValueError(
                f"dot: inner dimensions differ: {_text(a.shape)} . {_text(b.shape)} "
                f"({a.shape[-1]} != {inner_b})"
            )
        shape = a.shape[:-1] + b.shape[1:]
        return TensorType(upcast(a.dtype, b.dtype), shape)

    def perform(self, a, b):
        if a.shape[-1] != b.shape[0]:
            raise ValueError(
                f"dot: inner dimensions differ: {a.shape} . {b.shape} "
                f"({a.shape[-1]} != {b.shape[0]})"
            )
        return np.asarray(np.dot(a, b)).astype(upcast(a.dtype.name, b.dtype.name), copy=False)

    def pullback(self, inputs, output, g):
        a, b = inputs
        if a.ndim == 1 and b.ndim == 1:
            return (g * b, g * a)
        if a.ndim == 2 and b.ndim == 1:
            return (outer(g, b), dot(transpose2(a), g))
        if a.ndim == 1 and b.ndim == 2:
            return (dot(b, g), outer(a, g))
        return (dot(g, transpose2(b)), dot(transpose2(a), g))


def transpose2(x: Var) -> Var:
    """Swap the last two axes."""
    order = list(range(x.ndim))
    order[-1], order[-2] = order[-2], order[-1]
    return dimshuffle(x, order)


# --- MatMul: numpy's @ on stacks of matrices ----------------------------------------------------


@dataclass(frozen=True)
class MatMul(Op):
    """np.matmul of two tensors with ndim >= 2; leading (batch) axes broadcast."""

    def infer_type(self, a: TensorType, b: TensorType) -> TensorType:
        if a.ndim < 2 or b.ndim < 2:
            shapes = _both(a.shape, b.shape)
            raise TypeError(f"MatMul takes inputs with ndim >= 2, got shapes {shapes}")
        if _differ(a.shape[-1], b.shape[-2]):
            raise ValueError(
                f"matmul: inner dimensions differ: {_text(a.shape)} @ {_text(b.shape)} "
                f"({a.shape[-1]} != {b.shape[-2]})"
            )
        n = max(a.ndim, b.ndim)
        batch_a = (1,) * (n - a.ndim) + a.shape[:-2]
        batch_b = (1,) * (n - b.ndim) + b.shape[:-2]
        batch = []
        for da, db in zip(batch_a, batch_b):
            if da == 1 or db == 1:
                batch.append(db if da == 1 else da)
            elif _differ(da, db):
                raise ValueError(
                    "matmul: batch dimensions cannot be broadcast: "
                    f"{_text(a.shape)} @ {_text(b.shape)}"
                )
            else:
                batch.append(_merge_dim(da, db))
        return TensorType(upcast(a.dtype, b.dtype), tuple(batch) + (a.shape[-2], b.shape[-1]))

    def perform(self, a, b):
        if a.shape[-1] != b.shape[-2]:
            raise ValueError(
                f"matmul: inner dimensions differ: {a.shape} @ {b.shape} "
                f"({a.shape[-1]} != {b.shape[-2]})"
            )
        return np.asarray(np.matmul(a, b)).astype(upcast(a.dtype.name, b.dtype.name), copy=False)

    def pullback(self, inputs, output, g):
        a, b = inputs
        # Cotangents come out with the broadcast batch shape; autodiff sums them back to a and b.
        return (matmul(g, transpose2(b)), matmul(transpose2(a), g))


# --- TensorDot: general contraction, optionally with leading batch axes ---------------------------


@dataclass(frozen=True)
class TensorDot(Op):
    """Contract axes_a of a with axes_b of b; the first `batch` axes of both are paired, not summed.

    Output axes: the batch axes, then a's remaining axes in order, then b's remaining axes in order.
    """

    axes_a: tuple
    axes_b: tuple
    batch: int = 0

    def free_axes(self, ndim: int, contracted: tuple) -> tuple:
        return tuple(i for i in range(self.batch, ndim) if i not in contracted)

    def infer_type(self, a: TensorType, b: TensorType) -> TensorType:
        what = "batched_tensordot" if self.batch else "tensordot"
        for name, t, axes in (("a", a, self.axes_a), ("b", b, self.axes_b)):
            valid = all(self.batch <= i < t.ndim for i in axes) and len(set(axes)) == len(axes)
            if t.ndim < self.batch or not valid:
                shape = _text(t.shape)
                raise ValueError(f"{what}: invalid axes {axes} for {name} with shape {shape}")
        if len(self.axes_a) != len(self.axes_b):
            raise ValueError(f"{what}: axes {self.axes_a} and {self.axes_b} differ in length")
        for i, j in zip(self.axes_a, self.axes_b):
            if _differ(a.shape[i], b.shape[j]):
                raise ValueError(
                    f"{what}: summed dimensions differ: axis {i} of {_text(a.shape)} has size "
                    f"{a.shape[i]}, axis {j} of {_text(b.shape)} has size {b.shape[j]}"
                )
        batch = []
        for i in range(self.batch):
            if _differ(a.shape[i], b.shape[i]):
                raise ValueError(f"{what}: batch sizes differ: {_both(a.shape, b.shape)}")
            batch.append(_merge_dim(a.shape[i], b.shape[i]))
        free_a = tuple(a.shape[i] for i in self.free_axes(a.ndim, self.axes_a))
        free_b = tuple(b.shape[i] for i in self.free_axes(b.ndim, self.axes_b))
        return TensorType(upcast(a.dtype, b.dtype), tuple(batch) + free_a + free_b)

    def perform(self, a, b):
        what = "batched_tensordot" if self.batch else "tensordot"
        if a.shape[: self.batch] != b.shape[: self.batch]:
            raise ValueError(f"{what}: batch sizes differ: {a.shape} and {b.shape}")
        summed_a = tuple(a.shape[i] for i in self.axes_a)
        summed_b = tuple(b.shape[i] for i in self.axes_b)
        if summed_a != summed_b:
            raise ValueError(
                f"{what}: summed dimensions differ: {summed_a} of {a.shape} "
                f"vs {summed_b} of {b.shape}"
            )
        lead = tuple(range(self.batch))
        free_a, free_b = self.free_axes(a.ndim, self.axes_a), self.free_axes(b.ndim, self.axes_b)
        batch_shape = a.shape[: self.batch]
        nbatch, k = int(np.prod(batch_shape)), int(np.prod(summed_a))
        shape_a, shape_b = tuple(a.shape[i] for i in free_a), tuple(b.shape[i] for i in free_b)
        m, n = int(np.prod(shape_a)), int(np.prod(shape_b))
        # Bring every contraction to one batched matrix product (BLAS does the work).
        x = np.transpose(a, lead + free_a + self.axes_a).reshape(nbatch, m, k)
        y = np.transpose(b, lead + self.axes_b + free_b).reshape(nbatch, k, n)
        out = np.matmul(x, y).reshape(batch_shape + shape_a + shape_b)
        return out.astype(upcast(a.dtype.name, b.dtype.name), copy=False)

    def pullback(self, inputs, output, g):
        a, b = inputs
        nb = self.batch
        lead = tuple(range(nb))
        free_a, free_b = self.free_axes(a.ndim, self.axes_a), self.free_axes(b.ndim, self.axes_b)
        g_free_a = tuple(range(nb, nb + len(free_a)))
        g_free_b = tuple(range(nb + len(free_a), g.ndim))
        # d/da: contract g's b-part with b's free axes; the result holds a's axes in this order:
        ga = Var(TensorDot(g_free_b, free_b, nb), (g, b))
        paired_a = tuple(self.axes_a[self.axes_b.index(j)] for j in sorted(self.axes_b))
        order_a = lead + free_a + paired_a
        gb = Var(TensorDot(free_a, g_free_a, nb), (a, g))
        paired_b = tuple(self.axes_b[self.axes_a.index(i)] for i in sorted(self.axes_a))
        order_b = lead + paired_b + free_b
        return (dimshuffle(ga, [order_a.index(i) for i in range(a.ndim)]),
                dimshuffle(gb, [order_b.index(i) for i in range(b.ndim)]))


# --- user functions -------------------------------------------------------------------------------


def dot(a, b) -> Var:
    """Theano's T.dot: scalars multiply, vectors give inner products, N-d operands follow np.dot."""
    a, b = as_tensor_variable(a), as_tensor_variable(b)
    if a.ndim == 0 or b.ndim == 0:
        return mul(a, b)
    if a.ndim <= 2 and b.ndim <= 2:
        _check_inner("dot", a, b, a.ndim - 1, 0)
        return Var(Dot(), (a, b))
    axis_b = max(b.ndim - 2, 0)
    _check_inner("dot", a, b, a.ndim - 1, axis_b)
    return Var(TensorDot((a.ndim - 1,), (axis_b,)), (a, b))


def _check_inner(what: str, a: Var, b: Var, axis_a: int, axis_b: int, symbol: str = ".") -> None:
    """Raise naming both operands when the summed dimensions are statically different."""
    da, db = a.type.shape[axis_a], b.type.shape[axis_b]
    if _differ(da, db):
        raise ValueError(
            f"{what}: inner dimensions differ: {a.describe()} with shape {_text(a.type.shape)} "
            f"{symbol} {b.describe()} with shape {_text(b.type.shape)} ({da} != {db})"
        )


def matmul(a, b) -> Var:
    """numpy's matmul (the @ operator): 1-d operands are promoted, batch axes broadcast."""
    a, b = as_tensor_variable(a), as_tensor_variable(b)
    if a.ndim == 0 or b.ndim == 0:
        raise ValueError(
            "matmul: scalar operands are not allowed, got shapes "
            f"{_both(a.type.shape, b.type.shape)}"
        )
    _check_inner("matmul", a, b, a.ndim - 1, max(b.ndim - 2, 0), "@")
    if a.ndim <= 2 and b.ndim <= 2:
        return Var(Dot(), (a, b))  # identical to np.dot here: one op for the compiler to specialize
    x = dimshuffle(a, ("x", 0)) if a.ndim == 1 else a
    y = dimshuffle(b, (0, "x")) if b.ndim == 1 else b
    out = Var(MatMul(), (x, y))
    keep = list(range(out.ndim))
    if b.ndim == 1:
        keep.pop(-1)
    if a.ndim == 1:
        keep.pop(-2 if b.ndim != 1 else -1)
    return dimshuffle(out, keep)


def _normalize_axes(what: str, axes, x: Var, first: int = 0) -> tuple:
    out = []
    for i in axes:
        i = int(i)
        if not -x.ndim <= i < x.ndim:
            raise ValueError(
                f"{what}: axis {i} is out of range for {x.describe()} with {x.ndim} dimensions"
            )
        out.append(i % x.ndim)
    return tuple(out)


def _axes_pair(what: str, a: Var, b: Var, axes, batch: int) -> tuple:
    """Theano's axes: an int n (a's last n, b's first n after the batch) or a pair of axis lists."""
    if isinstance(axes, (int, np.integer)):
        n = int(axes)
        if n < 0 or n > a.ndim - batch or n > b.ndim - batch:
            raise ValueError(
                f"{what}: cannot sum over {n} axes of shapes {_both(a.type.shape, b.type.shape)}"
            )
        return tuple(range(a.ndim - n, a.ndim)), tuple(range(batch, batch + n))
    try:
        axes_a, axes_b = axes
    except (TypeError, ValueError):
        message = f"{what}: axes must be an int or a pair of axis lists, got {axes!r}"
        raise TypeError(message) from None
    axes_a = (axes_a,) if isinstance(axes_a, (int, np.integer)) else tuple(axes_a)
    axes_b = (axes_b,) if isinstance(axes_b, (int, np.integer)) else tuple(axes_b)
    if len(axes_a) != len(axes_b):
        raise ValueError(f"{what}: axes {axes_a} and {axes_b} must have the same length")
    axes_a, axes_b = _normalize_axes(what, axes_a, a), _normalize_axes(what, axes_b, b)
    if batch and (0 in axes_a or 0 in axes_b):
        message = f"{what}: axis 0 is the batch axis and cannot be summed; got axes {axes!r}"
        raise ValueError(message)
    return axes_a, axes_b


def _contract(what: str, a: Var, b: Var, axes_a: tuple, axes_b: tuple, batch: int) -> Var:
    for i, j in zip(axes_a, axes_b):
        _check_inner(what, a, b, i, j)
    return Var(TensorDot(axes_a, axes_b, batch), (a, b))


def tensordot(a, b, axes=2) -> Var:
    """Sum products over the given axes (numpy's tensordot; axes an int or a pair of axis lists)."""
    a, b = as_tensor_variable(a), as_tensor_variable(b)
    axes_a, axes_b = _axes_pair("tensordot", a, b, axes, 0)
    return _contract("tensordot", a, b, axes_a, axes_b, 0)


def _check_batch(what: str, a: Var, b: Var) -> None:
    if a.ndim == 0 or b.ndim == 0:
        raise TypeError(
            f"{what}: both operands need a batch axis, got shapes "
            f"{_both(a.type.shape, b.type.shape)}"
        )
    if _differ(a.type.shape[0], b.type.shape[0]):
        raise ValueError(
            f"{what}: batch sizes differ: {a.describe()} with shape {_text(a.type.shape)} and "
            f"{b.describe()} with shape {_text(b.type.shape)}"
        )


def batched_dot(a, b) -> Var:
    """Theano's batched_dot: a dot product for each index of the first (batch) axis."""
    a, b = as_tensor_variable(a), as_tensor_variable(b)
    _check_batch("batched_dot", a, b)
    if a.ndim == 1:
        return mul(dimshuffle(a, (0,) + ("x",) * (b.ndim - 1)), b)
    if b.ndim == 1:
        return mul(a, dimshuffle(b, (0,) + ("x",) * (a.ndim - 1)))
    axis_b = max(1, b.ndim - 2)
    _check_inner("batched_dot", a, b, a.ndim - 1, axis_b)
    if a.ndim == 3 and b.ndim == 3:
        return Var(MatMul(), (a, b))  # a stack of matrix products
    return Var(TensorDot((a.ndim - 1,), (axis_b,), 1), (a, b))


def batched_tensordot(a, b, axes=2) -> Var:
    """tensordot for each index of the first (batch) axis; axes as in tensordot, never axis 0."""
    a, b = as_tensor_variable(a), as_tensor_variable(b)
    _check_batch("batched_tensordot", a, b)
    axes_a, axes_b = _axes_pair("batched_tensordot", a, b, axes, 1)
    return _contract("batched_tensordot", a, b, axes_a, axes_b, 1)


def outer(x, y) -> Var:
    """The outer product of two vectors (other ndims are flattened first, as in Theano)."""
    x, y = as_tensor_variable(x), as_tensor_variable(y)
    if x.ndim != 1 or y.ndim != 1:
        from .. import tensor as T

        x = x if x.ndim == 1 else T.flatten(x)
        y = y if y.ndim == 1 else T.flatten(y)
    return mul(dimshuffle(x, (0, "x")), dimshuffle(y, ("x", 0)))
