"""TensorType: a dtype and a static shape (None where only the run time knows the size)."""

from __future__ import annotations

import functools

import numpy as np

from .config import config

Shape = tuple  # tuple[int | None, ...]

DISCRETE = ("bool", "int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64")
FLOATS = ("float16", "float32", "float64")
COMPLEX = ("complex64", "complex128")
ALL_DTYPES = DISCRETE + FLOATS + COMPLEX

# Theano's one-letter prefixes (T.fmatrix, T.lvector, ...).
PREFIX_DTYPES = {
    "b": "int8", "w": "int16", "i": "int32", "l": "int64",
    "f": "float32", "d": "float64", "c": "complex64", "z": "complex128",
}


def as_dtype(dtype: object) -> str:
    """Normalize a dtype spec ('floatX', np.float32, 'f4', ...) to a name such as 'float32'."""
    if dtype == "floatX" or dtype is None:
        return config.floatX
    if isinstance(dtype, str) and dtype in ALL_DTYPES:
        return dtype
    try:
        name = np.dtype(dtype).name
    except TypeError:
        raise TypeError(f"expected a numpy dtype such as 'float32', got {dtype!r}") from None
    if name not in ALL_DTYPES:
        raise TypeError(f"dtype {name!r} is not supported; supported: {', '.join(ALL_DTYPES)}")
    return name


def _as_shape(shape: object) -> tuple:
    if shape is None:
        return ()
    try:
        dims = tuple(shape)
    except TypeError:
        raise TypeError(f"a static shape is a tuple of ints or None, got {shape!r}") from None
    out = []
    for d in dims:
        if isinstance(d, (bool, np.bool_)):  # Theano's broadcastable pattern
            out.append(1 if d else None)
        elif d is None:
            out.append(None)
        elif isinstance(d, (int, np.integer)) and d >= 0:
            out.append(int(d))
        else:
            raise TypeError(f"a static shape is a tuple of ints >= 0 or None, got {shape!r}")
    return tuple(out)


class TensorType:
    """The type of a tensor variable: `TensorType(dtype, shape)`; `shape` may be Theano's broadcastable tuple."""

    __slots__ = ("dtype", "shape", "_hash")

    def __init__(self, dtype: object, shape: object = None, broadcastable: object = None, name=None) -> None:
        if broadcastable is not None:
            shape = tuple(bool(b) for b in broadcastable)
        object.__setattr__(self, "dtype", as_dtype(dtype))
        object.__setattr__(self, "shape", _as_shape(shape))
        object.__setattr__(self, "_hash", hash((self.dtype, self.shape)))

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError("TensorType is immutable")

    def __reduce__(self):
        return (TensorType, (self.dtype, self.shape))

    def __eq__(self, other: object) -> bool:
        return isinstance(other, TensorType) and self.dtype == other.dtype and self.shape == other.shape

    def __hash__(self) -> int:
        return self._hash

    @property
    def ndim(self) -> int:
        return len(self.shape)

    @property
    def broadcastable(self) -> tuple:
        return tuple(d == 1 for d in self.shape)

    @property
    def numpy_dtype(self) -> np.dtype:
        return np.dtype(self.dtype)

    def clone(self, dtype: object = None, shape: object = None) -> "TensorType":
        return TensorType(self.dtype if dtype is None else dtype, self.shape if shape is None else shape)

    def __call__(self, name: str | None = None):
        """Make a new symbolic input of this type, as Theano's `TensorType(...)('x')`."""
        from .var import input_var

        return input_var(self, name)

    def is_super(self, other: "TensorType") -> bool:
        """True when every value of `other` is also a value of this type."""
        return (
            self.dtype == other.dtype
            and self.ndim == other.ndim
            and all(a is None or a == b for a, b in zip(self.shape, other.shape))
        )

    def accepts_shape(self, shape: tuple) -> bool:
        return len(shape) == self.ndim and all(a is None or a == b for a, b in zip(self.shape, shape))

    def __repr__(self) -> str:
        return f"TensorType({self.dtype}, shape={self.shape})"

    def __str__(self) -> str:
        dims = ", ".join("?" if d is None else str(d) for d in self.shape)
        return f"{self.dtype}[{dims}]"


def is_discrete(dtype: str) -> bool:
    return dtype in DISCRETE


def is_float(dtype: str) -> bool:
    return dtype in FLOATS or dtype in COMPLEX


@functools.lru_cache(maxsize=4096)
def upcast(*dtypes: str) -> str:
    """numpy 2 promotion of strongly typed dtypes."""
    return np.result_type(*[np.dtype(d) for d in dtypes]).name


class TupleType:
    """The type of a multi-output node (a fused group, scan): read it through `Proj(i)` projections."""

    __slots__ = ("types",)

    def __init__(self, types) -> None:
        object.__setattr__(self, "types", tuple(types))

    def __setattr__(self, name, value):
        raise AttributeError("TupleType is immutable")

    def __reduce__(self):
        return (TupleType, (self.types,))

    def __eq__(self, other) -> bool:
        return isinstance(other, TupleType) and self.types == other.types

    def __hash__(self) -> int:
        return hash(self.types)

    def __repr__(self) -> str:
        return f"TupleType({', '.join(map(str, self.types))})"

    __str__ = __repr__
