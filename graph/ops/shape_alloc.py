"""Allocation, ranges, reorderings: alloc, zeros, eye, arange, tile, repeat, roll, diag, sort..."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..type import TensorType, as_dtype, is_discrete
from ..var import Constant, Op, Var, as_tensor_variable, constant
from .shape import (
    _shape_text,
    common_dtype,
    flatten,
    reshape,
    shape,
    shape_padleft,
    static_int,
    zeros_like,
)


def _sizes(dims, what: str) -> tuple:
    """A shape (an int, a tuple of ints/scalars, or an int vector) as a tuple of ints and Vars."""
    if isinstance(dims, Var) and dims.ndim == 1:
        n = dims.type.shape[0]
        if n is None:
            raise ValueError(
                f"{what}: the length of the shape vector {dims} is not known statically"
            )
        if isinstance(dims.op, Constant):
            return tuple(int(d) for d in dims.op.data)
        return tuple(dims[i] for i in range(n))
    if isinstance(dims, (int, np.integer, Var)):
        dims = (dims,)
    out = []
    for d in dims:
        if isinstance(d, (int, np.integer)):
            out.append(int(d))
            continue
        d = as_tensor_variable(d)
        if d.ndim != 0 or not is_discrete(d.dtype):
            raise TypeError(
                f"{what}: shape entries must be integer scalars, got {d} of type {d.type}"
            )
        out.append(d)
    return tuple(out)


def _scalar(d) -> Var:
    return constant(np.asarray(d, dtype="int64")) if isinstance(d, int) else as_tensor_variable(d)


@dataclass(frozen=True)
class Alloc(Op):
    """`value` broadcast to the shape given by the scalar inputs after it."""

    def make_type(self, inputs) -> TensorType:
        value, dims = inputs[0], inputs[1:]
        if value.ndim > len(dims):
            raise ValueError(
                f"alloc: value {value} has {value.ndim} dimensions, more than the {len(dims)} given"
            )
        out = [static_int(d) for d in dims]
        for a, d in zip(range(len(dims) - value.ndim, len(dims)), value.type.shape):
            if d not in (None, 1) and out[a] is not None and out[a] != d:
                raise ValueError(
                    f"alloc: cannot broadcast {value} of shape {value.type.shape} to "
                    f"{_shape_text(out)}"
                )
        return TensorType(value.dtype, tuple(out))

    def perform(self, value, *dims):
        return np.array(np.broadcast_to(value, tuple(int(d) for d in dims)))

    def pullback(self, inputs, output, g):
        return (sum_to_shape(g, inputs[0]),) + (None,) * (len(inputs) - 1)


@dataclass(frozen=True)
class SumToShape(Op):
    """g summed down to the run-time shape of x (leading axes, and axes where x has size 1)."""

    def make_type(self, inputs) -> TensorType:
        g, x = inputs
        return TensorType(g.dtype, x.type.shape)

    def perform(self, g, x):
        dtype = g.dtype  # numpy sums narrow integers as int64: the result keeps g's dtype
        lead = g.ndim - x.ndim
        g = g.sum(axis=tuple(range(lead))) if lead else g
        axes = tuple(a for a, (dg, dx) in enumerate(zip(g.shape, x.shape)) if dx == 1 and dg != 1)
        out = g.sum(axis=axes, keepdims=True) if axes else g
        return np.asarray(out).astype(dtype, copy=False)

    def pullback(self, inputs, output, g):
        gg, x = inputs
        dims = [shape(gg)[a] if d is None else d for a, d in enumerate(gg.type.shape)]
        return (alloc(g, *dims), None)


def sum_to_shape(g: Var, x: Var) -> Var:
    """The cotangent `g` of a broadcast of `x`, summed back to x's shape (static when possible)."""
    lead = g.ndim - x.ndim
    pairs = zip(g.type.shape[lead:], x.type.shape)
    if all(dx == 1 or (dx is not None and dx == dg) for dg, dx in pairs):
        return g  # fit_cotangent can undo this broadcast from static shapes alone
    return Var(SumToShape(), (g, x))


def alloc(value, *shape_) -> Var:
    """`value` broadcast to `shape` (Theano's T.alloc(value, *shape))."""
    if len(shape_) == 1 and isinstance(shape_[0], (tuple, list)):
        shape_ = tuple(shape_[0])
    value = as_tensor_variable(value)
    dims = _sizes(shape_, "alloc") if shape_ else ()
    return Var(Alloc(), (value,) + tuple(_scalar(d) for d in dims))


def zeros(shape_, dtype=None) -> Var:
    """A tensor of zeros of the given (possibly symbolic) shape."""
    return alloc(constant(np.zeros((), dtype=as_dtype(dtype))), *_sizes(shape_, "zeros"))


def ones(shape_, dtype=None) -> Var:
    """A tensor of ones of the given (possibly symbolic) shape."""
    return alloc(constant(np.ones((), dtype=as_dtype(dtype))), *_sizes(shape_, "ones"))


def empty_like(x, dtype=None) -> Var:
    """A tensor shaped like `x` (zeros here: contents are unspecified in Theano)."""
    return zeros_like(x, dtype)


@dataclass(frozen=True)
class Eye(Op):
    """An n x m matrix with ones on diagonal k; inputs (n, m, k)."""

    dtype: str

    def make_type(self, inputs) -> TensorType:
        return TensorType(self.dtype, (static_int(inputs[0]), static_int(inputs[1])))

    def perform(self, n, m, k):
        return np.eye(int(n), int(m), int(k), dtype=self.dtype)

    def pullback(self, inputs, output, g):
        return (None, None, None)


def eye(n, m=None, k=0, dtype=None) -> Var:
    """Identity-like matrix with ones on diagonal `k`."""
    m = n if m is None else m
    return Var(Eye(as_dtype(dtype)), tuple(_scalar(d) for d in (n, m, k)))


def identity_like(x, dtype=None) -> Var:
    """An identity matrix with the shape of the matrix `x`."""
    x = as_tensor_variable(x)
    rows, cols = (shape(x)[i] if x.type.shape[i] is None else x.type.shape[i] for i in range(2))
    return eye(rows, cols, 0, dtype=dtype or x.dtype)


@dataclass(frozen=True)
class ARange(Op):
    """np.arange(start, stop, step) in `dtype`."""

    dtype: str

    def make_type(self, inputs) -> TensorType:
        for x in inputs:
            if x.ndim != 0:
                raise TypeError(f"arange: start, stop and step must be scalars, got {x.type}")
        values = [_static_number(x) for x in inputs]
        if None in values:
            return TensorType(self.dtype, (None,))
        if values[2] == 0:
            raise ValueError("arange: step must not be zero")
        return TensorType(self.dtype, (len(np.arange(*values)),))

    def perform(self, start, stop, step):
        return np.arange(start, stop, step, dtype=self.dtype)

    def pullback(self, inputs, output, g):
        return (None, None, None)


def _static_number(x: Var):
    if isinstance(x.op, Constant):
        return x.op.data.item()
    return static_int(x)


def arange(start, stop=None, step=1, dtype=None) -> Var:
    """Values from start to stop (exclusive) by step; bounds may be symbolic scalars."""
    if stop is None:
        start, stop = 0, start
    inputs = common_dtype([as_tensor_variable(v) for v in (start, stop, step)])
    dtype = as_dtype(dtype) if dtype is not None else inputs[0].dtype
    return Var(ARange(dtype), tuple(inputs))


# --- tile, repeat, roll ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Tile(Op):
    """np.tile(x, reps) with constant reps."""

    reps: tuple

    def infer_type(self, x: TensorType) -> TensorType:
        ndim = max(x.ndim, len(self.reps))
        dims = (1,) * (ndim - x.ndim) + x.shape
        reps = (1,) * (ndim - len(self.reps)) + self.reps
        return TensorType(x.dtype, tuple(None if d is None else d * r for d, r in zip(dims, reps)))

    def perform(self, x):
        return np.tile(x, self.reps)

    def pullback(self, inputs, output, g):
        (x,) = inputs
        ndim = output.ndim
        xp = shape_padleft(x, ndim - x.ndim)
        reps = (1,) * (ndim - len(self.reps)) + self.reps
        # Output axis a has size reps[a] * n[a], laid out rep-major: split it and sum the rep axes.
        sizes = []
        for a in range(ndim):
            n = xp.type.shape[a]
            sizes += [reps[a], shape(xp)[a] if n is None else n]
        from .reduce import sum_

        gx = sum_(reshape(g, tuple(sizes)), axis=tuple(range(0, 2 * ndim, 2)))
        return (gx,)


def tile(x, reps, ndim=None) -> Var:
    """Repeat the whole of `x` reps[i] times along axis i (constant reps)."""
    x = as_tensor_variable(x)
    if isinstance(reps, Var):
        if not isinstance(reps.op, Constant):
            raise TypeError("tile: reps must be constant (Python ints)")
        reps = reps.op.data.tolist()
    if isinstance(reps, (int, np.integer)):
        reps = (int(reps),)
    reps = tuple(static_int(r) for r in reps)
    if None in reps:
        raise TypeError(f"tile: reps must be ints known before run time, got {reps}")
    return Var(Tile(reps), (x,))


@dataclass(frozen=True)
class Repeat(Op):
    """np.repeat(x, repeats, axis): inputs (x, repeats) with repeats an int scalar or vector."""

    axis: int

    def make_type(self, inputs) -> TensorType:
        x, repeats = inputs
        if not is_discrete(repeats.dtype) or repeats.ndim > 1:
            raise TypeError(
                f"repeat: repeats must be an integer scalar or vector, got {repeats.type}"
            )
        if not 0 <= self.axis < x.ndim:
            raise ValueError(
                f"repeat: axis {self.axis} is out of range for {x} with {x.ndim} dimensions"
            )
        n = x.type.shape[self.axis]
        size = None
        if isinstance(repeats.op, Constant):
            r = repeats.op.data
            if r.ndim == 0 and n is not None:
                size = n * int(r)
            elif r.ndim == 1:
                if n is not None and len(r) != n:
                    raise ValueError(
                        f"repeat: {len(r)} repeats for axis {self.axis} of size {n} in {x}"
                    )
                size = int(r.sum())
        out = list(x.type.shape)
        out[self.axis] = size
        return TensorType(x.dtype, tuple(out))

    def perform(self, x, repeats):
        return np.repeat(x, repeats, axis=self.axis)

    def pullback(self, inputs, output, g):
        from .subtensor import getitem, inc_subtensor

        x, repeats = inputs
        n = x.type.shape[self.axis]
        positions = arange(shape(x)[self.axis] if n is None else n)
        index = repeat(positions, repeats, axis=0)
        target = getitem(zeros_like(x), (slice(None),) * self.axis + (index,))
        return (inc_subtensor(target, g), None)


def repeat(x, repeats, axis=None) -> Var:
    """np.repeat: each element repeated `repeats` times along `axis` (flattened when None)."""
    x = as_tensor_variable(x)
    if axis is None:
        x, axis = flatten(x), 0
    axis = int(axis) % max(x.ndim, 1)
    repeats = as_tensor_variable(repeats)
    if repeats.dtype != "int64":
        if isinstance(repeats.op, Constant):
            repeats = constant(repeats.op.data.astype("int64"))
    return Var(Repeat(axis), (x, repeats))


@dataclass(frozen=True)
class Roll(Op):
    """np.roll(x, shift, axis); inputs (x, shift)."""

    axis: int | None

    def make_type(self, inputs) -> TensorType:
        return inputs[0].type

    def perform(self, x, shift):
        return np.roll(x, int(shift), axis=self.axis)

    def pullback(self, inputs, output, g):
        from .elemwise import neg

        return (Var(Roll(self.axis), (g, neg(inputs[1]))), None)


def roll(x, shift, axis=None) -> Var:
    """Elements shifted cyclically by `shift` along `axis` (over the flattened array when None)."""
    x = as_tensor_variable(x)
    axis = None if axis is None else int(axis) % x.ndim
    shift = _scalar(shift) if isinstance(shift, int) else as_tensor_variable(shift)
    return Var(Roll(axis), (x, shift))


# --- diagonals ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Diagonal(Op):
    """np.diagonal(x, offset, axis1, axis2): the diagonal becomes the last axis."""

    offset: int = 0
    axis1: int = 0
    axis2: int = 1

    def infer_type(self, x: TensorType) -> TensorType:
        in_range = 0 <= self.axis1 < x.ndim and 0 <= self.axis2 < x.ndim
        if x.ndim < 2 or not in_range or self.axis1 == self.axis2:
            raise ValueError(f"diagonal: axes {self.axis1}, {self.axis2} are invalid for {x}")
        rest = tuple(d for a, d in enumerate(x.shape) if a not in (self.axis1, self.axis2))
        n, m = x.shape[self.axis1], x.shape[self.axis2]
        length = None
        if n is not None and m is not None:
            length = max(0, min(n + min(self.offset, 0), m - max(self.offset, 0)))
        return TensorType(x.dtype, rest + (length,))

    def perform(self, x):
        return np.diagonal(x, self.offset, self.axis1, self.axis2).copy()

    def pullback(self, inputs, output, g):
        return (Var(DiagonalGrad(self.offset, self.axis1, self.axis2), (g, inputs[0])),)


@dataclass(frozen=True)
class DiagonalGrad(Op):
    """Zeros shaped like the second input, the first on its diagonal (Diagonal's pullback)."""

    offset: int = 0
    axis1: int = 0
    axis2: int = 1

    def make_type(self, inputs) -> TensorType:
        g, x = inputs
        return TensorType(g.dtype, x.type.shape)

    def perform(self, g, x):
        out = np.zeros(x.shape, dtype=g.dtype)
        moved = np.moveaxis(out, (self.axis1, self.axis2), (-2, -1))
        idx = np.arange(g.shape[-1])
        moved[..., idx + max(-self.offset, 0), idx + max(self.offset, 0)] = g
        return out

    def pullback(self, inputs, output, g):
        return (Var(Diagonal(self.offset, self.axis1, self.axis2), (g,)), None)


def diagonal(x, offset: int = 0, axis1: int = 0, axis2: int = 1) -> Var:
    """The diagonal (numpy semantics: the diagonal axis is last)."""
    x = as_tensor_variable(x)
    return Var(Diagonal(int(offset), axis1 % max(x.ndim, 1), axis2 % max(x.ndim, 1)), (x,))


@dataclass(frozen=True)
class AllocDiag(Op):
    """np.diag(v, offset): a square matrix with the vector `v` on diagonal `offset`."""

    offset: int = 0

    def infer_type(self, v: TensorType) -> TensorType:
        if v.ndim != 1:
            raise ValueError(f"AllocDiag: needs a vector, got {v}")
        n = None if v.shape[0] is None else v.shape[0] + abs(self.offset)
        return TensorType(v.dtype, (n, n))

    def perform(self, v):
        return np.diag(v, self.offset)

    def pullback(self, inputs, output, g):
        return (diagonal(g, self.offset),)


def diag(v, k: int = 0) -> Var:
    """Theano's diag: a vector becomes a diagonal matrix; a matrix gives its diagonal."""
    v = as_tensor_variable(v)
    if v.ndim == 1:
        return Var(AllocDiag(int(k)), (v,))
    if v.ndim == 2:
        return diagonal(v, k)
    raise ValueError(f"diag: needs a vector or a matrix, got {v} with {v.ndim} dimensions")


def trace(x) -> Var:
    """Sum of the main diagonal of a matrix."""
    from .reduce import sum_

    return sum_(diagonal(x))


# --- sorting and nonzero --------------------------------------------------------------------------


@dataclass(frozen=True)
class Sort(Op):
    """np.sort along `axis`."""

    axis: int
    kind: str = "quicksort"

    def infer_type(self, x: TensorType) -> TensorType:
        return x

    def perform(self, x):
        return np.sort(x, axis=self.axis, kind=self.kind)

    def pullback(self, inputs, output, g):
        (x,) = inputs
        inverse = argsort(argsort(x, self.axis, self.kind), self.axis)  # where each input went
        return (Var(TakeAlongAxis(self.axis), (g, inverse)),)


@dataclass(frozen=True)
class ArgSort(Op):
    """np.argsort along `axis` (int64)."""

    axis: int
    kind: str = "quicksort"

    def infer_type(self, x: TensorType) -> TensorType:
        return TensorType("int64", x.shape)

    def perform(self, x):
        return np.argsort(x, axis=self.axis, kind=self.kind).astype("int64")

    def pullback(self, inputs, output, g):
        return (None,)


@dataclass(frozen=True)
class TakeAlongAxis(Op):
    """np.take_along_axis(x, indices, axis)."""

    axis: int

    def make_type(self, inputs) -> TensorType:
        x, idx = inputs
        return TensorType(x.dtype, idx.type.shape)

    def perform(self, x, idx):
        return np.take_along_axis(x, idx, axis=self.axis)

    def pullback(self, inputs, output, g):
        x, idx = inputs
        return (Var(PutAlongAxis(self.axis), (zeros_like(x), idx, g)), None)


@dataclass(frozen=True)
class PutAlongAxis(Op):
    """x with `values` added at `indices` along `axis` (repeated indices accumulate)."""

    axis: int

    def make_type(self, inputs) -> TensorType:
        return inputs[0].type

    def perform(self, x, idx, values):
        out = x.copy()
        key = list(np.indices(idx.shape, sparse=True))
        key[self.axis] = idx
        np.add.at(out, tuple(key), values)
        return out

    def pullback(self, inputs, output, g):
        return (g, None, Var(TakeAlongAxis(self.axis), (g, inputs[1])))


def _sort_axis(x: Var, axis):
    if axis is None:
        return flatten(x), 0
    return x, int(axis) % max(x.ndim, 1)


def sort(a, axis=-1, kind: str = "quicksort", order=None) -> Var:
    """Sorted copy along `axis` (flattened when None)."""
    x, axis = _sort_axis(as_tensor_variable(a), axis)
    return Var(Sort(axis, kind), (x,))


def argsort(a, axis=-1, kind: str = "quicksort", order=None) -> Var:
    """Indices that sort `a` along `axis` (int64)."""
    x, axis = _sort_axis(as_tensor_variable(a), axis)
    return Var(ArgSort(axis, kind), (x,))


@dataclass(frozen=True)
class Nonzero(Op):
    """The indices of the nonzero elements, one row per axis (int64 matrix)."""

    def infer_type(self, x: TensorType) -> TensorType:
        return TensorType("int64", (x.ndim, None))

    def perform(self, x):
        return np.asarray(np.nonzero(x), dtype="int64").reshape(x.ndim, -1)

    def pullback(self, inputs, output, g):
        return (None,)


def nonzero(a, return_matrix: bool = False):
    """Indices of nonzero elements: a tuple of vectors (one per axis), or the matrix of them."""
    a = as_tensor_variable(a)
    if a.ndim == 0:
        raise ValueError("nonzero: needs at least a 1-d input, got a scalar")
    matrix = Var(Nonzero(), (a,))
    return matrix if return_matrix else tuple(matrix[i] for i in range(a.ndim))


def flatnonzero(a) -> Var:
    """Indices of the nonzero elements of the flattened `a`."""
    return nonzero(flatten(as_tensor_variable(a)))[0]


def nonzero_values(a) -> Var:
    """The nonzero elements of the flattened `a`."""
    a = flatten(as_tensor_variable(a))
    return a[flatnonzero(a)]


__all__ = [
    "Alloc", "SumToShape", "sum_to_shape", "Eye", "ARange", "Tile", "Repeat", "Roll", "Diagonal",
    "DiagonalGrad", "AllocDiag", "Sort", "ArgSort", "TakeAlongAxis", "PutAlongAxis", "Nonzero",
    "alloc", "zeros", "ones", "empty_like", "eye", "identity_like", "arange", "tile", "repeat",
    "roll", "diagonal", "diag", "trace", "sort", "argsort", "nonzero", "flatnonzero",
    "nonzero_values",
]
