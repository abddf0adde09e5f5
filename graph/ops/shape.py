"""Shape ops: dimshuffle, shape, reshape, broadcast patterns, joins, splits (alloc: shape_alloc)."""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np

from ..type import TensorType, is_discrete, upcast
from ..var import Constant, Op, Var, as_tensor_variable, constant


@functools.lru_cache(maxsize=None)
def _dimshuffle_layout(new_order: tuple, ndim: int) -> tuple:
    """(dropped axes, transpose permutation or None for the identity, the source axis of each
    output axis or None for an inserted one) of a dimshuffle of a rank-`ndim` input."""
    kept = tuple(d for d in new_order if d != "x")
    dropped = tuple(a for a in range(ndim) if a not in kept)
    permutation = kept + dropped
    if permutation == tuple(range(ndim)):
        permutation = None
    return dropped, permutation, tuple(None if d == "x" else d for d in new_order)


@dataclass(frozen=True)
class DimShuffle(Op):
    """Permute axes and insert broadcastable ones: new_order holds input axes and 'x'.

    Axes left out of new_order must have static size 1 (they are dropped).
    """

    new_order: tuple

    def infer_type(self, x: TensorType) -> TensorType:
        kept = [d for d in self.new_order if d != "x"]
        bad = any(not isinstance(d, int) or d < 0 or d >= x.ndim for d in kept)
        if bad or len(set(kept)) != len(kept):
            raise ValueError(f"dimshuffle{self.new_order}: invalid for a {x.ndim}-d input {x}")
        for axis in range(x.ndim):
            if axis not in kept and x.shape[axis] != 1:
                raise ValueError(
                    f"dimshuffle{self.new_order} drops axis {axis} of an input with shape "
                    f"{x.shape}; only axes of static size 1 can be dropped"
                )
        return TensorType(x.dtype, tuple(1 if d == "x" else x.shape[d] for d in self.new_order))

    @property
    def dropped(self) -> tuple:
        return ()

    def perform(self, x):
        # a transpose putting the kept axes in order (the dropped ones last), then a reshape
        # inserting and dropping size-1 axes: both views; the orders are worked out once per rank
        dropped, permutation, sources = _dimshuffle_layout(self.new_order, x.ndim)
        shape = x.shape
        for a in dropped:
            if shape[a] != 1:
                raise ValueError(f"dimshuffle{self.new_order} drops axis {a} of an input with "
                                 f"shape {shape}, which is not of size 1")
        y = x if permutation is None else x.transpose(permutation)
        return y.reshape(tuple(1 if d is None else shape[d] for d in sources))

    def pullback(self, inputs, output, g):
        (x,) = inputs
        kept = [d for d in self.new_order if d != "x"]
        # Sum away the inserted axes, then undo the permutation and restore dropped axes.
        inserted = tuple(i for i, d in enumerate(self.new_order) if d == "x")
        if inserted:
            g = sum_(g, axis=inserted, keepdims=False)
        inverse = [kept.index(a) if a in kept else "x" for a in range(x.ndim)]
        return (dimshuffle(g, inverse),)


def dimshuffle(x, *pattern) -> Var:
    """Theano's `x.dimshuffle(1, 'x', 0)`; a pattern may also be passed as one list or tuple."""
    x = as_tensor_variable(x)
    if len(pattern) == 1 and isinstance(pattern[0], (list, tuple)):
        pattern = tuple(pattern[0])
    for d in pattern:
        if d != "x" and not isinstance(d, (int, np.integer)):
            raise ValueError(
                f"dimshuffle: pattern entries must be axis numbers or 'x', got {pattern!r} for {x}"
            )
    pattern = tuple(int(d) if d != "x" else "x" for d in pattern)
    if pattern == tuple(range(x.ndim)):
        return x
    return Var(DimShuffle(pattern), (x,))


def shape_padleft(x, n_ones: int = 1) -> Var:
    """Add `n_ones` broadcastable axes on the left."""
    x = as_tensor_variable(x)
    return dimshuffle(x, ("x",) * n_ones + tuple(range(x.ndim)))


def shape_padright(x, n_ones: int = 1) -> Var:
    """Add `n_ones` broadcastable axes on the right."""
    x = as_tensor_variable(x)
    return dimshuffle(x, tuple(range(x.ndim)) + ("x",) * n_ones)


def shape_padaxis(x, axis: int) -> Var:
    """Insert one broadcastable axis at `axis`."""
    x = as_tensor_variable(x)
    if axis < 0:
        axis += x.ndim + 1
    order = list(range(x.ndim))
    order.insert(axis, "x")
    return dimshuffle(x, order)


def transpose(x, axes=None) -> Var:
    """Reverse (or permute by `axes`) the axes."""
    x = as_tensor_variable(x)
    axes = tuple(reversed(range(x.ndim))) if axes is None else tuple(axes)
    return dimshuffle(x, axes)


from .reduce import sum_  # noqa: E402  (reduce imports this module's helpers lazily)


def zeros_like(x, dtype=None) -> Var:
    """Zeros with the shape (and dtype, unless given) of `x`."""
    from ..type import as_dtype
    from ..var import constant
    from .elemwise import second

    x = as_tensor_variable(x)
    dtype = as_dtype(dtype) if dtype is not None else x.dtype
    return second(x, constant(np.zeros((), dtype=dtype)))


def ones_like(x, dtype=None) -> Var:
    """Ones with the shape (and dtype, unless given) of `x`."""
    from ..type import as_dtype
    from ..var import constant
    from .elemwise import second

    x = as_tensor_variable(x)
    return second(x, constant(np.ones((), dtype=as_dtype(dtype) if dtype is not None else x.dtype)))


def copy(x, name: str | None = None) -> Var:
    """A copy of `x` (Theano's tensor.copy): same values, a distinct node."""
    return Var(Copy(), (as_tensor_variable(x),), name)


@dataclass(frozen=True)
class Copy(Op):
    """The identity, as a separate buffer."""

    def infer_type(self, x: TensorType) -> TensorType:
        return x

    def perform(self, x):
        return x.copy()

    def pullback(self, inputs, output, g):
        return (g,)


# --- the symbolic shape and what static information can be read from it --------------------------


@dataclass(frozen=True)
class Shape(Op):
    """The shape of `x` as an int64 vector."""

    def infer_type(self, x: TensorType) -> TensorType:
        return TensorType("int64", (x.ndim,))

    def perform(self, x):
        return np.asarray(x.shape, dtype="int64")

    def pullback(self, inputs, output, g):
        return (None,)


def shape(x) -> Var:
    """The symbolic shape of `x` (an int64 vector); `x.shape[i]` is a symbolic scalar."""
    return Var(Shape(), (as_tensor_variable(x),))


def shape_i(x, i: int) -> Var:
    """The size of axis `i` of `x`, as an int64 scalar."""
    return shape(x)[i]


def static_int(v) -> int | None:
    """The value of a scalar integer Var when known before run time (constants, static sizes)."""
    if isinstance(v, (int, np.integer)):
        return int(v)
    if not isinstance(v, Var) or v.ndim != 0 or not is_discrete(v.dtype):
        return None
    if isinstance(v.op, Constant):
        return int(v.op.data)
    source = shape_source(v)
    if source is not None:
        return source[0].type.shape[source[1]]
    if not v.inputs or len(v.inputs) > 3 or not all(x.ndim == 0 for x in v.inputs):
        return None
    from .elemwise import Elemwise

    if isinstance(v.op, (Elemwise, Copy)):  # arithmetic on static sizes: x.shape[0] * 2
        values = [static_int(x) for x in v.inputs]
        if None not in values:
            args = [np.asarray(value, dtype=x.dtype) for value, x in zip(values, v.inputs)]
            try:
                return int(v.op.perform(*args))
            except (ArithmeticError, ValueError):
                return None
    return None


def shape_source(v: Var) -> tuple | None:
    """(x, axis) when `v` is `x.shape[axis]`."""
    from .subtensor import Subtensor

    if isinstance(v.op, Subtensor) and isinstance(v.inputs[0].op, Shape) and len(v.op.idx) == 1:
        entry = v.op.idx[0]
        if isinstance(entry, int):
            x = v.inputs[0].inputs[0]
            return (x, entry % x.ndim)
    return None


def static_vector(v: Var) -> list:
    """The entries of an integer vector Var, each an int when known before run time, else None."""
    n = v.type.shape[0]
    if isinstance(v.op, Constant):
        return [int(e) for e in v.op.data]
    if isinstance(v.op, Shape):
        return list(v.inputs[0].type.shape)
    if isinstance(v.op, MakeVector):
        return [static_int(e) for e in v.inputs]
    if isinstance(v.op, Join):
        return [e for part in v.inputs for e in static_vector(part)]
    from .subtensor import Subtensor

    if isinstance(v.op, Subtensor) and len(v.op.idx) == 1 and n is not None:
        entry = v.op.idx[0]  # x.shape[1:], x.shape[::-1]: a constant slice of a readable vector
        constant_slice = not any(isinstance(p, tuple) for p in entry[1:])
        if isinstance(entry, tuple) and entry[0] == "slice" and constant_slice:
            return static_vector(v.inputs[0])[slice(*entry[1:])]
    return [None] * (n or 0)


# --- reshape, flatten -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Reshape(Op):
    """x reshaped to the int vector `newshape` (one -1 entry allowed); inputs (x, newshape)."""

    ndim: int

    def make_type(self, inputs) -> TensorType:
        x, newshape = inputs
        if newshape.ndim != 1 or not is_discrete(newshape.dtype):
            raise TypeError(
                f"reshape: the new shape must be an integer vector, got {newshape.type}"
            )
        known_length = newshape.type.shape[0] == self.ndim
        entries = static_vector(newshape) if known_length else [None] * self.ndim
        if sum(1 for e in entries if e == -1) > 1:
            raise ValueError(f"reshape: at most one -1 is allowed in the new shape, got {entries}")
        if any(e is not None and e < -1 for e in entries):
            raise ValueError(f"reshape: negative size in the new shape {entries} for {x}")
        out = [e if e is not None and e >= 0 else None for e in entries]
        # Entries that are x.shape[i] cancel axis i, so x.reshape((x.shape[0], -1)) stays static.
        left = list(x.type.shape)
        known_other = []
        if newshape.owner is not None and isinstance(newshape.op, MakeVector):
            for e, entry in zip(newshape.inputs, entries):
                source = shape_source(e)
                cancels = source is not None and source[0] is x and left[source[1]] != "used"
                if cancels and entry is None:
                    left[source[1]] = "used"
                elif entry != -1:
                    known_other.append(entry)
        else:
            known_other = [e for e in entries if e != -1]
        remaining = [d for d in left if d != "used"]
        if None not in remaining and None not in known_other:
            total, other = int(np.prod(remaining)), int(np.prod(known_other))
            if -1 in entries:
                if other == 0 or total % other:
                    raise ValueError(
                        f"reshape: cannot reshape {x} of shape {x.type.shape} ({total} elements) "
                        f"to {_shape_text(entries)}: {total} is not a multiple of {other}"
                    )
                out[entries.index(-1)] = total // other
            elif total != other and "used" not in left:
                raise ValueError(
                    f"reshape: cannot reshape {x} of shape {x.type.shape} ({total} elements) to "
                    f"{_shape_text(entries)} ({other} elements)"
                )
        return TensorType(x.dtype, tuple(out))

    def perform(self, x, newshape):
        newshape = tuple(int(n) for n in newshape)
        try:
            return np.reshape(x, newshape)
        except ValueError:
            raise ValueError(
                f"reshape: cannot reshape an array of shape {x.shape} ({x.size} elements) to "
                f"{newshape}"
            ) from None

    def pullback(self, inputs, output, g):
        x, _ = inputs
        return (reshape(g, shape(x), ndim=x.ndim), None)


def _shape_text(shape) -> str:
    dims = ", ".join("?" if d is None else str(d) for d in shape)
    return "(" + dims + (",)" if len(shape) == 1 else ")")


def as_shape_vector(newshape, what: str, ndim: int | None = None) -> Var:
    """A shape (an int, a tuple of ints and scalar Vars, or an int vector) as an int64 vector."""
    if isinstance(newshape, Var):
        if newshape.ndim == 0:
            newshape = (newshape,)
        elif newshape.ndim != 1 or not is_discrete(newshape.dtype):
            raise TypeError(
                f"{what}: a shape must be an integer vector, got {newshape} of type {newshape.type}"
            )
        else:
            if newshape.type.shape[0] is None and ndim is None:
                raise ValueError(
                    f"{what}: the length of the shape vector {newshape} is not known statically; "
                    "pass ndim="
                )
            return newshape if newshape.dtype == "int64" else _cast(newshape, "int64")
    if isinstance(newshape, (int, np.integer)):
        newshape = (newshape,)
    entries = tuple(newshape)
    if all(isinstance(e, (int, np.integer)) for e in entries):
        return constant(np.asarray(entries, dtype="int64").reshape(len(entries)))
    items = []
    for e in entries:
        e = as_tensor_variable(e)
        if e.ndim != 0 or not is_discrete(e.dtype):
            raise TypeError(
                f"{what}: shape entries must be integer scalars, got {e} of type {e.type}"
            )
        items.append(e if e.dtype == "int64" else _cast(e, "int64"))
    return Var(MakeVector("int64"), tuple(items))


def _cast(x: Var, dtype: str) -> Var:
    from .elemwise import cast

    return cast(x, dtype)


def reshape(x, newshape, ndim: int | None = None) -> Var:
    """x with a new shape; entries may be ints (one -1), symbolic scalars, or an int vector Var."""
    x = as_tensor_variable(x)
    vector = as_shape_vector(newshape, "reshape", ndim)
    n = vector.type.shape[0]
    if ndim is not None and n is not None and ndim != n:
        raise ValueError(f"reshape: ndim={ndim} but the new shape has {n} entries")
    return Var(Reshape(n if n is not None else int(ndim)), (x, vector))


def flatten(x, ndim: int = 1, outdim: int | None = None) -> Var:
    """Keep the first ndim-1 axes and collapse the rest into the last (Theano's flatten/outdim)."""
    x = as_tensor_variable(x)
    ndim = outdim if outdim is not None else ndim
    if ndim < 1 or ndim > max(x.ndim, 1):
        raise ValueError(
            f"flatten: ndim must be between 1 and {max(x.ndim, 1)} for {x}, got {ndim}"
        )
    if ndim == x.ndim:
        return x
    sizes = [shape(x)[i] if x.type.shape[i] is None else x.type.shape[i] for i in range(ndim - 1)]
    return reshape(x, tuple(sizes) + (-1,))


@dataclass(frozen=True)
class MakeVector(Op):
    """Scalars stacked into a vector of `dtype`."""

    dtype: str

    def make_type(self, inputs) -> TensorType:
        for position, e in enumerate(inputs):
            if e.ndim != 0:
                raise TypeError(f"MakeVector: input {position} must be a scalar, got {e.type}")
        return TensorType(self.dtype, (len(inputs),))

    def perform(self, *xs):
        return np.asarray(xs, dtype=self.dtype).reshape(len(xs))

    def pullback(self, inputs, output, g):
        return tuple(g[i] for i in range(len(inputs)))


# --- static shape declarations --------------------------------------------------------------------


@dataclass(frozen=True)
class SpecifyShape(Op):
    """x with the static shape `shape` (None = unknown); checked against the value at run time."""

    shape: tuple

    def infer_type(self, x: TensorType) -> TensorType:
        if len(self.shape) != x.ndim:
            raise ValueError(
                f"specify_shape: {x} has {x.ndim} dimensions, but the shape {self.shape} has "
                f"{len(self.shape)}"
            )
        for axis, (given, known) in enumerate(zip(self.shape, x.shape)):
            if given is not None and known is not None and given != known:
                raise ValueError(
                    f"specify_shape: axis {axis} of {x} has static size {known}, but {given} was "
                    "specified"
                )
        return TensorType(x.dtype, self.shape)

    def perform(self, x):
        if not all(d is None or d == s for d, s in zip(self.shape, x.shape)):
            raise ValueError(
                f"specify_shape: expected shape {_shape_text(self.shape)}, got {x.shape}"
            )
        return x

    def pullback(self, inputs, output, g):
        return (g,)


def _with_static(x: Var, new: tuple) -> Var:
    return x if new == x.type.shape else Var(SpecifyShape(tuple(new)), (x,))


def specify_shape(x, shape) -> Var:
    """Declare the shape of `x` (ints, None or symbolic sizes); checked when the graph runs."""
    x = as_tensor_variable(x)
    given = [static_int(d) if d is not None else None for d in shape]
    if len(given) != x.ndim:
        raise ValueError(
            f"specify_shape: {x} has {x.ndim} dimensions, but the shape {tuple(shape)} has "
            f"{len(given)}"
        )
    return _with_static(x, tuple(k if g is None else g for g, k in zip(given, x.type.shape)))


def patternbroadcast(x, broadcastable) -> Var:
    """Set the broadcastable pattern of `x` (True: size 1, checked at run time; False: not)."""
    x = as_tensor_variable(x)
    broadcastable = tuple(broadcastable)
    if len(broadcastable) != x.ndim:
        raise ValueError(
            f"patternbroadcast: {x} has {x.ndim} dimensions, pattern {broadcastable} has "
            f"{len(broadcastable)}"
        )
    new = tuple(1 if b else (None if d == 1 else d) for b, d in zip(broadcastable, x.type.shape))
    return _with_static(x, new)


def addbroadcast(x, *axes) -> Var:
    """Mark `axes` of `x` broadcastable (size 1)."""
    x = as_tensor_variable(x)
    axes = {a % x.ndim for a in axes}
    return _with_static(x, tuple(1 if a in axes else d for a, d in enumerate(x.type.shape)))


def unbroadcast(x, *axes) -> Var:
    """Mark `axes` of `x` not broadcastable."""
    x = as_tensor_variable(x)
    axes = {a % x.ndim for a in axes}
    new = tuple(None if a in axes and d == 1 else d for a, d in enumerate(x.type.shape))
    return _with_static(x, new)


def squeeze(x, axis=None) -> Var:
    """Drop size-1 axes: every static 1 when axis is None, else those given (run-time check)."""
    x = as_tensor_variable(x)
    if axis is None:
        axes = {a for a, d in enumerate(x.type.shape) if d == 1}
    else:
        from .reduce import normalize_axis

        axes = set(normalize_axis(axis, x.ndim, "squeeze"))
        for a in axes:
            if x.type.shape[a] not in (None, 1):
                raise ValueError(f"squeeze: axis {a} of {x} has size {x.type.shape[a]}, not 1")
        x = addbroadcast(x, *axes) if axes else x
    return dimshuffle(x, [a for a in range(x.ndim) if a not in axes])


def swapaxes(x, axis1: int, axis2: int) -> Var:
    """x with two axes exchanged."""
    x = as_tensor_variable(x)
    order = list(range(x.ndim))
    order[axis1], order[axis2] = order[axis2], order[axis1]
    return dimshuffle(x, order)


# --- joining and splitting ------------------------------------------------------------------------


def common_dtype(inputs: list) -> list:
    """Cast inputs to their numpy-2 common dtype; weak Python scalars follow the strong ones."""
    strong = [x.dtype for x in inputs if not (isinstance(x.op, Constant) and x.op.weak)]
    weak = [x.op.data.item() for x in inputs if isinstance(x.op, Constant) and x.op.weak]
    if strong:
        dtype = np.result_type(*[np.dtype(d) for d in strong], *weak).name
    else:
        dtype = upcast(*[x.dtype for x in inputs])
    return [x if x.dtype == dtype else _convert(x, dtype) for x in inputs]


def _convert(x: Var, dtype: str) -> Var:
    if isinstance(x.op, Constant):  # keep constants constant, so static values stay readable
        return constant(x.op.data.astype(dtype))
    return _cast(x, dtype)


@dataclass(frozen=True)
class Join(Op):
    """Concatenation of the inputs along `axis`."""

    axis: int

    def make_type(self, inputs) -> TensorType:
        if not inputs:
            raise ValueError("concatenate: needs at least one tensor")
        ndim = inputs[0].ndim
        if not 0 <= self.axis < max(ndim, 1) or ndim == 0:
            raise ValueError(f"concatenate: axis {self.axis} is out of range for {ndim}-d inputs")
        for x in inputs:
            if x.ndim != ndim:
                raise ValueError(
                    f"concatenate: all inputs need {ndim} dimensions, got {x} with {x.ndim}"
                )
        out = []
        for a in range(ndim):
            dims = [x.type.shape[a] for x in inputs]
            if a == self.axis:
                out.append(None if None in dims else sum(dims))
                continue
            known = {d for d in dims if d is not None}
            if len(known) > 1:
                shapes = ", ".join(f"{x} {_shape_text(x.type.shape)}" for x in inputs)
                raise ValueError(
                    f"concatenate along axis {self.axis}: sizes differ on axis {a}: {shapes}"
                )
            out.append(known.pop() if known else None)
        return TensorType(upcast(*[x.dtype for x in inputs]), tuple(out))

    def perform(self, *xs):
        dtype = upcast(*[x.dtype.name for x in xs])
        return np.concatenate(xs, axis=self.axis).astype(dtype, copy=False)

    def pullback(self, inputs, output, g):
        from .subtensor import getitem

        parts, start = [], 0
        for x in inputs:
            size = x.type.shape[self.axis]
            size = shape(x)[self.axis] if size is None else size
            stop = start + size
            parts.append(getitem(g, (slice(None),) * self.axis + (slice(start, stop),)))
            start = stop
        return tuple(parts)


def concatenate(tensor_list, axis: int = 0) -> Var:
    """Join tensors along an existing axis."""
    tensors = common_dtype([as_tensor_variable(t) for t in tensor_list])
    if not tensors:
        raise ValueError("concatenate: needs at least one tensor")
    ndim = tensors[0].ndim
    axis = int(axis)
    if ndim and -ndim <= axis < 0:
        axis += ndim
    if len(tensors) == 1:
        return tensors[0]
    return Var(Join(axis), tuple(tensors))


def join(axis, *tensors) -> Var:
    """Theano's join(axis, t1, t2, ...)."""
    if len(tensors) == 1 and isinstance(tensors[0], (list, tuple)):
        tensors = tuple(tensors[0])
    return concatenate(tensors, axis)


def stack(*tensors, axis: int = 0) -> Var:
    """Join tensors along a new axis: stack([a, b], axis=0) or Theano's older stack(a, b, c)."""
    if len(tensors) >= 1 and isinstance(tensors[0], (list, tuple)):
        if len(tensors) == 2:
            axis = tensors[1]
        elif len(tensors) > 2:
            raise TypeError("stack: pass the tensors as one list, or each as its own argument")
        tensors = tuple(tensors[0])
    if not tensors:
        raise ValueError("stack: needs at least one tensor")
    inputs = common_dtype([as_tensor_variable(t) for t in tensors])
    if axis == 0 and all(x.ndim == 0 for x in inputs):
        return Var(MakeVector(inputs[0].dtype), tuple(inputs))
    ndim = inputs[0].ndim
    if axis < 0:
        axis += ndim + 1
    return concatenate([shape_padaxis(x, axis) for x in inputs], axis)


def split(x, splits_size, n_splits: int, axis: int = 0) -> list:
    """Cut `x` along `axis` into `n_splits` pieces of the given sizes (ints or an int vector)."""
    from .subtensor import getitem

    x = as_tensor_variable(x)
    axis = axis % x.ndim
    if isinstance(splits_size, Var) and not isinstance(splits_size.op, Constant):
        sizes = [splits_size[i] for i in range(n_splits)]
    else:
        given = splits_size.op.data if isinstance(splits_size, Var) else splits_size
        sizes = [int(s) for s in np.asarray(given)]
        if len(sizes) != n_splits:
            raise ValueError(f"split: {n_splits} splits but {len(sizes)} sizes {sizes}")
        total = x.type.shape[axis]
        if total is not None and sum(sizes) != total:
            raise ValueError(
                f"split: sizes {sizes} add up to {sum(sizes)}, but axis {axis} of {x} has {total}"
            )
    parts, start = [], 0
    for size in sizes:
        stop = start + size
        parts.append(getitem(x, (slice(None),) * axis + (slice(start, stop),)))
        start = stop
    return parts


from .shape_alloc import *  # noqa: E402,F401,F403
from .shape_alloc import __all__ as _alloc_all  # noqa: E402

__all__ = [
    "DimShuffle", "Shape", "Reshape", "MakeVector", "SpecifyShape", "Join", "Copy",
    "dimshuffle", "shape_padleft", "shape_padright", "shape_padaxis", "transpose", "zeros_like",
    "ones_like", "copy", "shape", "shape_i", "reshape", "flatten", "specify_shape",
    "patternbroadcast", "addbroadcast",
    "unbroadcast", "squeeze", "swapaxes", "concatenate", "join", "stack", "split",
] + list(_alloc_all)
