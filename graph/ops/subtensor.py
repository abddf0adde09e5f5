"""Indexing: basic and advanced getitem (Subtensor), set_subtensor / inc_subtensor, take.

An index is stored on the op as a tuple of hashable entries, one per item of the user's key after
Ellipsis is expanded:
    int                      a constant integer index
    ("in", k)                a symbolic integer scalar: the k-th index input
    ("slice", a, b, c)       a slice; each part is None, an int or ("in", k)
    None                     np.newaxis
    ("adv", k)               an integer array (k-th index input)
    ("bool", k)              a boolean mask (k-th index input); it consumes mask.ndim axes
The index inputs follow x (and y, for IncSubtensor) in the node's inputs.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..type import TensorType, is_discrete
from ..var import Constant, Op, Var, as_tensor_variable, constant
from .shape import _cast, _shape_text, flatten, static_int, zeros_like

_UNKNOWN = object()


def _is_ref(part) -> bool:
    return isinstance(part, tuple) and part[0] == "in"


def normalize_key(x: Var, key) -> tuple:
    """The user's key as (idx entries, index input Vars); raises IndexError/TypeError early."""
    if not isinstance(key, tuple):
        key = (key,)
    inputs: list = []

    def add(var: Var) -> int:
        inputs.append(var)
        return len(inputs) - 1

    def scalar_part(v, what: str):
        if v is None or isinstance(v, (int, np.integer)) and not isinstance(v, (bool, np.bool_)):
            return None if v is None else int(v)
        v = as_tensor_variable(v)
        if v.ndim != 0 or not is_discrete(v.dtype) or v.dtype == "bool":
            raise TypeError(
                f"indexing {x}: slice {what} must be an integer scalar, got {v} of type {v.type}"
            )
        if isinstance(v.op, Constant):
            return int(v.op.data)
        return ("in", add(v))

    entries: list = []
    for item in key:
        if item is None or item is Ellipsis:
            entries.append(item)
        elif isinstance(item, slice):
            step = scalar_part(item.step, "step")
            if step == 0:
                raise ValueError(f"indexing {x}: slice step cannot be zero")
            start, stop = scalar_part(item.start, "start"), scalar_part(item.stop, "stop")
            entries.append(("slice", start, stop, step))
        elif isinstance(item, (bool, np.bool_)):
            raise TypeError(
                f"indexing {x} with a Python bool is not supported; use a boolean tensor mask"
            )
        elif isinstance(item, (int, np.integer)):
            entries.append(int(item))
        else:
            v = as_tensor_variable(item)  # lists of symbolic scalars are stacked
            if v.dtype == "bool":
                if v.ndim == 0:
                    raise TypeError(f"indexing {x} with a 0-d boolean is not supported")
                entries.append(("bool", add(v)))
            elif not is_discrete(v.dtype):
                raise TypeError(
                    f"indexing {x}: indices must be integers or booleans, got {v} of dtype "
                    f"{v.dtype}"
                )
            elif v.ndim == 0:
                entries.append(int(v.op.data) if isinstance(v.op, Constant) else ("in", add(v)))
            else:
                entries.append(("adv", add(v)))
    if sum(1 for e in entries if e is Ellipsis) > 1:
        raise IndexError(f"indexing {x}: an index can only have a single ellipsis ('...')")
    used = sum(_consumed(e, inputs) for e in entries if e is not Ellipsis)
    if used > x.ndim:
        raise IndexError(
            f"too many indices for {x}: it has {x.ndim} dimensions (type {x.type}) but {used} "
            "were indexed"
        )
    at = next((i for i, e in enumerate(entries) if e is Ellipsis), None)
    if at is not None:
        entries[at : at + 1] = [("slice", None, None, None)] * (x.ndim - used)
    return tuple(entries), inputs


def _consumed(entry, inputs) -> int:
    if entry is None:
        return 0
    if isinstance(entry, tuple) and entry[0] == "bool":
        return inputs[entry[1]].ndim
    return 1


def _broadcast(shapes: list, x: Var) -> tuple:
    ndim = max((len(s) for s in shapes), default=0)
    out = []
    for axis in range(ndim):
        dims = [s[axis - ndim + len(s)] for s in shapes if axis - ndim + len(s) >= 0]
        known = {d for d in dims if d is not None and d != 1}
        if len(known) > 1:
            raise IndexError(
                f"indexing {x}: index arrays could not be broadcast together with shapes {shapes}"
            )
        out.append(known.pop() if known else (1 if all(d == 1 for d in dims) else None))
    return tuple(out)


def _slice_length(n, start, stop, step):
    if _UNKNOWN in (start, stop, step):
        return None
    if n is None:
        return None
    return len(range(*slice(start, stop, step).indices(n)))


def indexed_shape(x: Var, idx: tuple, inputs: tuple) -> tuple:
    """The static shape of x[idx] by numpy's rules (adjacent advanced indices stay put)."""

    def value(part):
        if _is_ref(part):
            known = static_int(inputs[part[1]])
            return _UNKNOWN if known is None else known
        return part

    shape = x.type.shape
    has_adv = any(isinstance(e, tuple) and e[0] in ("adv", "bool") for e in idx)
    pieces: list = []  # basic output dims, with the marker "ADV" where advanced indices sit
    adv_shapes: list = []
    adv_positions: list = []
    axis = 0
    for position, e in enumerate(idx):
        if e is None:
            pieces.append(1)
            continue
        if isinstance(e, int) or _is_ref(e):
            n = shape[axis]
            v = value(e)
            if v is not _UNKNOWN and n is not None and not -n <= v < n:
                raise IndexError(f"index {v} is out of bounds for axis {axis} with size {n} in {x}")
            if has_adv:
                adv_shapes.append(())
                adv_positions.append(position)
            axis += 1
        elif e[0] == "slice":
            pieces.append(_slice_length(shape[axis], value(e[1]), value(e[2]), value(e[3])))
            axis += 1
        elif e[0] == "adv":
            adv_shapes.append(inputs[e[1]].type.shape)
            adv_positions.append(position)
            axis += 1
        else:  # boolean mask
            mask = inputs[e[1]]
            for a, (m, n) in enumerate(zip(mask.type.shape, shape[axis:])):
                if m is not None and n is not None and m != n:
                    raise IndexError(
                        f"boolean index {mask} of shape {_shape_text(mask.type.shape)} does not "
                        f"match axis {axis + a} of {x} with size {n}"
                    )
            count = int(np.count_nonzero(mask.op.data)) if isinstance(mask.op, Constant) else None
            adv_shapes.append((count,))
            adv_positions.append(position)
            axis += mask.ndim
        if position in adv_positions and adv_positions[0] == position:
            pieces.append("ADV")
    pieces += list(shape[axis:])
    if not has_adv:
        return tuple(pieces)
    adv = _broadcast(adv_shapes, x)
    at = pieces.index("ADV")
    rest = pieces[:at] + pieces[at + 1 :]
    adjacent = adv_positions == list(range(adv_positions[0], adv_positions[-1] + 1))
    if not adjacent:
        return adv + tuple(rest)
    return tuple(pieces[:at]) + adv + tuple(pieces[at + 1 :])


def numpy_key(idx: tuple, values: tuple) -> tuple:
    """The numpy index for `idx` given the values of the index inputs."""

    def part(p):
        return int(values[p[1]]) if _is_ref(p) else p

    key = []
    for e in idx:
        if e is None or isinstance(e, int):
            key.append(e)
        elif e[0] == "in":
            key.append(int(values[e[1]]))
        elif e[0] == "slice":
            key.append(slice(part(e[1]), part(e[2]), part(e[3])))
        else:
            key.append(values[e[1]])
    return tuple(key)


@dataclass(frozen=True)
class Subtensor(Op):
    """x[idx] with numpy semantics; inputs (x, *index inputs)."""

    idx: tuple

    def make_type(self, inputs) -> TensorType:
        x, rest = inputs[0], inputs[1:]
        return TensorType(x.dtype, indexed_shape(x, self.idx, rest))

    def perform(self, x, *values):
        # basic indexing returns a view: a minibatch of a shared data set is never copied here
        return np.asarray(x[numpy_key(self.idx, values)])

    def pullback(self, inputs, output, g):
        x, rest = inputs[0], inputs[1:]
        gx = Var(IncSubtensor(self.idx, False), (zeros_like(x), g) + tuple(rest))
        return (gx,) + (None,) * len(rest)


@dataclass(frozen=True)
class IncSubtensor(Op):
    """x with y written (set_instead_of_inc) or added at x[idx]; inputs (x, y, *index inputs)."""

    idx: tuple
    set_instead_of_inc: bool

    def make_type(self, inputs) -> TensorType:
        x, y, rest = inputs[0], inputs[1], inputs[2:]
        target = indexed_shape(x, self.idx, rest)
        what = "set_subtensor" if self.set_instead_of_inc else "inc_subtensor"
        if y.ndim > len(target):
            raise ValueError(
                f"{what}: the value {y} has {y.ndim} dimensions, more than the {len(target)} of "
                f"the indexed {x}"
            )
        for d, t in zip(reversed(y.type.shape), reversed(target)):
            if d is not None and t is not None and d not in (1, t):
                raise ValueError(
                    f"{what}: cannot broadcast the value {y} of shape {_shape_text(y.type.shape)} "
                    "to the "
                    f"indexed shape {_shape_text(target)} of {x}"
                )
        return x.type

    def perform(self, x, y, *values):
        out = x.copy()
        key = numpy_key(self.idx, values)
        target = x[key].shape
        y = np.broadcast_to(np.asarray(y, dtype=x.dtype), target)
        has_adv = any(isinstance(e, tuple) and e[0] in ("adv", "bool") for e in self.idx)
        if self.set_instead_of_inc:
            out[key] = y
        elif not has_adv:
            out[key] += y
        else:
            # np.add.at takes neither np.newaxis nor masks: give each newaxis a real size-1 axis of
            # a view of `out` (indexed by a full slice, same result layout) and expand masks.
            target, expanded, axis = out, [], 0
            for k in key:
                if k is None:
                    target = np.expand_dims(target, axis)
                    expanded.append(slice(None))
                    axis += 1
                elif isinstance(k, np.ndarray) and k.dtype == np.bool_:
                    expanded.extend(np.nonzero(k))
                    axis += k.ndim
                else:
                    expanded.append(k)
                    axis += 1
            np.add.at(target, tuple(expanded), y)
        return out

    def pullback(self, inputs, output, g):
        rest = tuple(inputs[2:])
        if self.set_instead_of_inc:
            zero = constant(np.zeros((), dtype=g.dtype))
            gx = Var(IncSubtensor(self.idx, True), (g, zero) + rest)
        else:
            gx = g
        from .shape_alloc import sum_to_shape

        gy = sum_to_shape(Var(Subtensor(self.idx), (g,) + rest), inputs[1])
        return (gx, gy) + (None,) * len(rest)


def getitem(x, key) -> Var:
    """x[key] with numpy semantics (Var.__getitem__)."""
    x = as_tensor_variable(x)
    idx, inputs = normalize_key(x, key)
    return Var(Subtensor(idx), (x,) + tuple(inputs))


def _modify(x_indexed, y, set_: bool, what: str) -> Var:
    if not isinstance(x_indexed, Var) or not isinstance(x_indexed.op, Subtensor):
        raise TypeError(
            f"{what}: the first argument must be an indexed variable such as x[idx], got "
            f"{x_indexed!r:.80}"
            + (f" (type {x_indexed.type})" if isinstance(x_indexed, Var) else "")
        )
    x, rest = x_indexed.inputs[0], x_indexed.inputs[1:]
    y = as_tensor_variable(y)
    if y.dtype != x.dtype:
        y = _cast(y, x.dtype)
    return Var(IncSubtensor(x_indexed.op.idx, set_), (x, y) + tuple(rest))


def set_subtensor(x, y, inplace: bool = False, tolerate_inplace_aliasing: bool = False) -> Var:
    """A copy of the tensor indexed by `x` (e.g. a[idx]) with y written at idx."""
    return _modify(x, y, True, "set_subtensor")


def inc_subtensor(x, y, inplace: bool = False, set_instead_of_inc: bool = False,
                  tolerate_inplace_aliasing: bool = False) -> Var:
    """A copy of the tensor indexed by `x` (e.g. a[idx]) with y added at idx; repeats accumulate."""
    what = "set_subtensor" if set_instead_of_inc else "inc_subtensor"
    return _modify(x, y, bool(set_instead_of_inc), what)


def take(a, indices, axis=None, mode: str = "raise") -> Var:
    """np.take: elements of `a` at `indices` along `axis` (of the flattened `a` when None)."""
    a = as_tensor_variable(a)
    if axis is None:
        return getitem(flatten(a), indices)
    axis = int(axis) % a.ndim
    return getitem(a, (slice(None),) * axis + (indices,))


__all__ = ["Subtensor", "IncSubtensor", "getitem", "set_subtensor", "inc_subtensor", "take"]
