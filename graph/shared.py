"""Shared variables: symbolic leaves whose value persists between calls (`theanine.shared`)."""

from __future__ import annotations

import itertools

import numpy as np

from .config import config
from .type import TensorType, as_dtype
from .var import Shared, Var, creation_trace, format_trace

_uids = itertools.count(1)


def filter_value(
    value, type_: TensorType, what: str, strict: bool = False, allow_downcast=None,
    keep_device: bool = False,
) -> np.ndarray:
    """Check and convert `value` for a slot of type `type_`; `what` names the slot in messages.

    Follows Theano: the same dtype passes; a safe cast (int8 -> float32) is made unless `strict`;
    a lossy cast needs `allow_downcast=True`, except Python floats into floatX when it is None.
    A device array (a CUDA DeviceArray) of the right dtype passes as it is when `keep_device`;
    otherwise it is copied to the host and checked as numpy.
    """
    if isinstance(value, Var):
        raise TypeError(f"{what}: expected a numeric value, got the symbolic variable {value}")
    is_python_scalar = isinstance(value, (int, float, bool, complex)) and not isinstance(value, np.generic)
    array = np.asarray(value)
    if array.dtype == object or array.dtype.kind in "USV":
        if _on_device(value):  # a DeviceArray: off the hot path, numpy inputs never get here
            return _filter_device(value, type_, what, strict, allow_downcast, keep_device)
        raise TypeError(f"{what}: expected a numeric array of dtype {type_.dtype}, got {type(value).__name__} {value!r:.80}")
    if array.ndim != type_.ndim:
        raise TypeError(
            f"{what}: expected a {type_.ndim}-d array (type {type_}), got {array.ndim}-d with shape {array.shape}"
        )
    if array.dtype.name != type_.dtype:
        if strict:
            raise TypeError(f"{what}: expected dtype {type_.dtype} (strict), got {array.dtype.name}")
        with np.errstate(all="ignore"):
            converted = array.astype(type_.dtype)
        if not (np.can_cast(array.dtype, type_.dtype, "safe") or allow_downcast):
            from .config import config

            python_data = not isinstance(value, (np.ndarray, np.generic))
            exact = python_data and bool(np.all((converted == array) | (np.isnan(converted) & np.isnan(array))))
            floatx = is_python_scalar and array.dtype.kind == "f" and type_.dtype == config.floatX
            if allow_downcast is not None or not (exact or floatx):
                raise TypeError(
                    f"{what}: expected dtype {type_.dtype}, got {array.dtype.name}; converting would lose "
                    f"precision. Cast the value (np.asarray(v, dtype='{type_.dtype}')) or pass "
                    "allow_input_downcast=True"
                )
        array = converted
    if not type_.accepts_shape(array.shape):
        raise ValueError(f"{what}: expected shape {_shape_text(type_.shape)}, got {array.shape}")
    return array


def _filter_device(value, type_: TensorType, what: str, strict, allow_downcast, keep_device: bool):
    """filter_value for a device array: used without a copy when its dtype fits exactly."""
    if len(value.shape) != type_.ndim:
        raise TypeError(
            f"{what}: expected a {type_.ndim}-d array (type {type_}), got a {len(value.shape)}-d "
            f"device array with shape {value.shape}"
        )
    if not keep_device or value.dtype.name != type_.dtype:  # a cast runs on the host: copy down
        return filter_value(value.get(), type_, what, strict, allow_downcast)
    if not type_.accepts_shape(value.shape):
        raise ValueError(f"{what}: expected shape {_shape_text(type_.shape)}, got {value.shape}")
    return value


def _shape_text(shape: tuple) -> str:
    return "(" + ", ".join("?" if d is None else str(d) for d in shape) + (",)" if len(shape) == 1 else ")")


class SharedVariable(Var):
    """A variable whose value is stored between function calls: get_value, set_value, default_update."""

    __slots__ = ("container", "strict", "allow_downcast", "default_update")

    def __new__(cls, *args, **kwargs):
        return object.__new__(cls)

    def __init__(self, value, name=None, type_=None, strict=False, allow_downcast=None, borrow=False) -> None:
        if type_ is None:
            raise TypeError("SharedVariable needs a type; use theanine.shared(value)")
        self.op = Shared(next(_uids), type_)
        self.inputs = ()
        self.type = type_
        self.trace = creation_trace()
        self.name = name
        from .var import _Tag

        self.tag = _Tag()
        self.strict = strict
        self.allow_downcast = allow_downcast
        self.default_update = None
        self.container = _Container(None)
        array = filter_value(value, type_, self._what(), strict=strict, allow_downcast=allow_downcast)
        self.container.value = array if borrow and array is value else np.array(array, copy=True)

    def _what(self) -> str:
        return f"shared variable {self.name!r}" if self.name else f"unnamed shared variable {self.type}"

    def get_value(self, borrow: bool = False, return_internal_type: bool = False) -> np.ndarray:
        """The current value; a copy unless `borrow=True`. With `borrow=True` and
        `return_internal_type=True`, a value living on a CUDA device comes back as its
        DeviceArray (no copy to the host), as Theano's GPU shared variables do."""
        if borrow and return_internal_type and self.container.device_value is not None:
            return self.container.device_value
        value = self.container.value
        return value if borrow else value.copy()

    def set_value(self, value, borrow: bool = False) -> None:
        """Replace the value; checks ndim and dtype (a lossy cast needs allow_downcast at creation)."""
        array = filter_value(value, self.type, self._what(), strict=self.strict, allow_downcast=self.allow_downcast)
        self.container.value = array if borrow and array is value else np.array(array, copy=True)

    @property
    def value(self):
        return self.get_value()

    @value.setter
    def value(self, v):
        self.set_value(v)

    def zero(self, borrow: bool = False) -> None:
        self.container.value = np.zeros_like(self.container.value)

    def clone(self):
        return self

    def __reduce__(self):
        # default_update often reads this very variable: restore it as state, once the object exists
        args = (self.container.value, self.name, self.type, self.strict, self.allow_downcast)
        return (_rebuild_shared, args, {"default_update": self.default_update})

    def __setstate__(self, state: dict) -> None:
        self.default_update = state["default_update"]

    def __repr__(self):
        return f"{self.name or 'shared'}:{self.type}"

    def __str__(self):
        return self.name or f"<shared {self.type}>"


class _Container:
    """Holds a shared value. `value` is a plain slot: the CPU backends' hot path is one attribute
    read. A container a device backend uses becomes a `_DeviceContainer` (see `device_backed`)."""

    __slots__ = ("device_value", "value")

    def __init__(self, value) -> None:
        self.value = value
        self.device_value = None  # a device copy (a DeviceArray), or None

    def __reduce__(self):
        return (_Container, (self.value,))  # device values pickle as numpy


_HOST = _Container.__dict__["value"]  # the slot itself: reads the host value without copying down


def peek_host(box):
    """The host value a shared container (or any box with `value`) holds now, without copying a
    device value down: None when only the device has the newest value."""
    return _HOST.__get__(box) if isinstance(box, _Container) else box.value


class _DeviceContainer(_Container):
    """A container whose newest value may live only on a device (the CUDA backends).

    `value` reads give numpy (copied down on demand and cached until the next update); assigning
    a numpy array drops the device copy; assigning a DeviceArray makes it the value and drops the
    host copy. Device plans read and refresh `device_value` directly.
    """

    __slots__ = ()

    @property
    def value(self):
        host = _HOST.__get__(self)
        if host is None:
            host = self.device_value.get()
            _HOST.__set__(self, host)
        return host

    @value.setter
    def value(self, value) -> None:
        if _on_device(value):
            _HOST.__set__(self, None)
            self.device_value = value
        else:
            _HOST.__set__(self, value)
            self.device_value = None


def _on_device(value) -> bool:
    """Is `value` a device array (kernels/cuda/device.py:DeviceArray, which graph/ can't import)?"""
    return getattr(type(value), "is_device_array", False) is True


def device_backed(container: _Container) -> _Container:
    """Let `container` hold device values (a device plan reads or updates it); same object."""
    if type(container) is _Container:
        container.__class__ = _DeviceContainer
    return container


def _rebuild_shared(value, name, type_, strict, allow_downcast):
    return SharedVariable(value, name=name, type_=type_, strict=strict, allow_downcast=allow_downcast, borrow=True)


TensorSharedVariable = SharedVariable
ScalarSharedVariable = SharedVariable


def shared(value, name: str | None = None, strict: bool = False, allow_downcast=None, borrow: bool = False,
           broadcastable=None, shape=None, dtype=None) -> SharedVariable:
    """A shared variable holding `value` (copied unless borrow=True); Python floats become floatX
    (a numpy scalar keeps its dtype: np.float64(0.5) is float64)."""
    if isinstance(value, Var):
        raise TypeError(f"shared() expects a numeric value, got the symbolic variable {value}")
    if type(value) is float:  # np.float64 subclasses float: it has a dtype of its own
        array = np.asarray(value, dtype=config.floatX)
    elif isinstance(value, bool):
        array = np.asarray(value)
    elif isinstance(value, int):
        array = np.asarray(value, dtype="int64")
    else:
        array = np.asarray(value)
    if dtype is not None:
        array = array.astype(as_dtype(dtype))
    if array.dtype == object or array.dtype.kind in "USV":
        raise TypeError(f"shared() expects a numeric array, got {type(value).__name__}")
    if shape is None:
        shape = (1 if b else None for b in broadcastable) if broadcastable is not None else (None,) * array.ndim
    type_ = TensorType(array.dtype, tuple(shape))
    source = value if (borrow and isinstance(value, np.ndarray) and value.dtype == array.dtype) else array
    return SharedVariable(source, name=name, type_=type_, strict=strict, allow_downcast=allow_downcast, borrow=borrow)


def describe_location(var: Var) -> str:
    return format_trace(var.trace)
