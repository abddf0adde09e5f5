"""Var, the one graph node; Op, what a node computes; the leaf ops; creation traces and toposort."""

from __future__ import annotations

import itertools
import os
import sys
import weakref
from dataclasses import dataclass, fields
from typing import Any, Iterable, Sequence

import numpy as np

from .config import config
from .type import TensorType, as_dtype

# Files under these folders are ours; the first frame outside them is the user's line.
_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_OWN_PREFIXES = tuple(os.path.join(_ROOT, d) + os.sep for d in ("graph", "compiler", "kernels", "layers"))
_OWN_FILES = (os.path.join(_ROOT, "__init__.py"),)


_own_file_cache: dict[str, bool] = {}


def _is_own_file(filename: str) -> bool:
    own = _own_file_cache.get(filename)
    if own is None:
        own = filename.startswith(_OWN_PREFIXES) or filename in _OWN_FILES or "importlib" in filename
        _own_file_cache[filename] = own
    return own


_inherited: list[tuple] = []


class inherited_trace:
    """Within this block new nodes take `trace` (a rewrite's nodes keep the user's line they replace)."""

    def __init__(self, trace: tuple) -> None:
        self.trace = trace

    def __enter__(self) -> None:
        _inherited.append(self.trace)

    def __exit__(self, *exc: object) -> None:
        _inherited.pop()


def creation_trace(limit: int | None = None) -> tuple:
    """The caller's frames outside theanine, innermost first: ((file, line, function), ...)."""
    if _inherited:
        return _inherited[-1]
    limit = config.traceback__limit if limit is None else limit
    frame = sys._getframe(1)
    found = []
    while frame is not None and len(found) < limit:
        code = frame.f_code
        if not _is_own_file(code.co_filename):
            found.append((code.co_filename, frame.f_lineno, code.co_name))
        frame = frame.f_back
    return tuple(found)


def format_trace(trace: tuple) -> str:
    """The innermost user line of a trace, as 'file:line in function: source'."""
    if not trace:
        return "(created inside theanine)"
    import linecache

    filename, line, function = trace[0]
    source = linecache.getline(filename, line).strip()
    where = f'File "{filename}", line {line}, in {function}'
    return f"{where}\n    {source}" if source else where


class Op:
    """What a node computes. Subclasses are frozen dataclasses whose fields are the op's parameters.

    infer_type(*input_types) -> TensorType    (or make_type(inputs) when the type needs input values)
    perform(*input_values) -> np.ndarray      (the numpy reference)
    pullback(inputs, output, g) -> tuple      (one cotangent Var or None per input)
    """

    def make_type(self, inputs: Sequence["Var"]) -> TensorType:
        return self.infer_type(*[i.type for i in inputs])

    def infer_type(self, *types: TensorType) -> TensorType:
        raise NotImplementedError(f"{type(self).__name__} defines no infer_type")

    def perform(self, *values: np.ndarray) -> np.ndarray:
        raise NotImplementedError(f"{type(self).__name__} defines no perform")

    def pullback(self, inputs: Sequence["Var"], output: "Var", g: "Var") -> tuple:
        raise NotImplementedError(f"{type(self).__name__} defines no gradient (pullback)")

    def __call__(self, *inputs: Any) -> "Var":
        return Var(self, tuple(as_tensor_variable(x) for x in inputs))

    def __str__(self) -> str:
        params = [f"{f.name}={getattr(self, f.name)!r}" for f in fields(self)] if hasattr(self, "__dataclass_fields__") else []
        return f"{type(self).__name__}{{{', '.join(params)}}}" if params else type(self).__name__


@dataclass(frozen=True)
class Input(Op):
    """A symbolic input to be given a value at call time."""

    name: str | None
    type: TensorType
    uid: int

    def make_type(self, inputs):
        return self.type

    def perform(self):
        raise RuntimeError(f"input {self.name or 'unnamed'} has no value")

    def __reduce__(self):  # an unpickled input is a new variable, as in Theano
        return (_fresh_input_op, (self.name, self.type))

    def __str__(self):
        return self.name or f"<{self.type}>"


_uids = itertools.count(1)


def _fresh_input_op(name, type_):
    return Input(name, type_, next(_uids))


class Constant(Op):
    """A constant value. `weak` marks Python scalars, typed by their partner in an expression (numpy 2)."""

    __slots__ = ("data", "weak", "dtype", "_key")

    def __init__(self, data: np.ndarray, weak: bool = False) -> None:
        data = np.asarray(data)
        data.setflags(write=False)
        self.data = data
        self.weak = weak
        # a weak Python float is typed floatX as of its creation: part of its identity
        self.dtype = _weak_dtype(data) if weak else data.dtype.name
        self._key = (data.dtype.str, self.dtype, data.shape, weak, data.tobytes() if data.size < 4096 else id(data))

    def __eq__(self, other):
        return type(other) is Constant and self._key == other._key

    def __hash__(self):
        return hash(self._key)

    def __reduce__(self):
        return (Constant, (np.array(self.data), self.weak))

    def make_type(self, inputs):
        return TensorType(self.dtype, self.data.shape)

    def perform(self):
        return self.data

    @property
    def value(self):
        return self.data

    def __str__(self):
        if self.data.size <= 6:
            return np.array2string(self.data, separator=", ") if self.data.ndim else repr(self.data.item())
        return f"Constant{{{self.data.dtype}{list(self.data.shape)}}}"


def _weak_dtype(data: np.ndarray) -> str:
    kind = data.dtype.kind
    if kind == "f":
        return config.floatX
    if kind == "c":
        return "complex128"
    if kind == "b":
        return "bool"
    return "int64"


@dataclass(frozen=True)
class Shared(Op):
    """A shared variable: its value lives in the SharedVariable's container."""

    uid: int
    type: TensorType

    def make_type(self, inputs):
        return self.type

    def __reduce__(self):
        return (Shared, (self.uid, self.type))

    def __str__(self):
        return f"Shared#{self.uid}"


class Apply:
    """Theano's view of a node: `.op`, `.inputs`, `.outputs`."""

    __slots__ = ("op", "inputs", "outputs")

    def __init__(self, op: Op, inputs: list, outputs: list) -> None:
        self.op, self.inputs, self.outputs = op, inputs, outputs

    @property
    def out(self):
        return self.outputs[0]

    @property
    def nin(self):
        return len(self.inputs)

    @property
    def nout(self):
        return len(self.outputs)

    def __repr__(self):
        return f"{self.op}({', '.join(map(str, self.inputs))})"

    def __eq__(self, other):
        return isinstance(other, Apply) and self.outputs[0] is other.outputs[0]

    def __hash__(self):
        return id(self.outputs[0])


def _tensor():
    from . import tensor

    return tensor


class Var:
    """A symbolic tensor: `op` applied to `inputs`. Interned: the same (op, inputs) is the same object."""

    __slots__ = ("op", "inputs", "type", "trace", "name", "tag", "__weakref__")
    _interned: "weakref.WeakValueDictionary" = weakref.WeakValueDictionary()

    def __new__(cls, op: Op, inputs: tuple = (), name: str | None = None) -> "Var":
        inputs = tuple(inputs)
        key = (op, tuple(map(id, inputs)))
        found = Var._interned.get(key)
        if found is not None and found.inputs == inputs:
            if name is not None and found.name is None:
                found.name = name
            return found
        for position, x in enumerate(inputs):
            if not isinstance(x, Var):
                raise TypeError(f"{op}: input {position} must be a symbolic variable, got {type(x).__name__}")
        self = object.__new__(cls)
        self.op = op
        self.inputs = inputs
        self.type = op.make_type(inputs)
        self.trace = creation_trace()
        self.name = name
        self.tag = _Tag()
        Var._interned[key] = self
        return self

    def __reduce__(self):
        return (_rebuild_var, (self.op, self.inputs, self.name))

    # -- Theano's views ------------------------------------------------------------------
    @property
    def owner(self) -> Apply | None:
        if isinstance(self.op, (Input, Constant, Shared)):
            return None
        return Apply(self.op, list(self.inputs), [self])

    @property
    def index(self) -> int:
        return 0

    @property
    def dtype(self) -> str:
        return self.type.dtype

    @property
    def ndim(self) -> int:
        return self.type.ndim

    @property
    def broadcastable(self) -> tuple:
        return self.type.broadcastable

    @property
    def static_shape(self) -> tuple:
        return self.type.shape

    @property
    def shape(self) -> "Var":
        return _tensor().shape(self)

    @property
    def size(self) -> "Var":
        return _tensor().prod(self.shape)

    @property
    def data(self):
        if isinstance(self.op, Constant):
            return self.op.data
        raise AttributeError("only constants have .data")

    @property
    def value(self):
        return self.data

    def where(self) -> str:
        """The user's line that created this variable."""
        return format_trace(self.trace)

    def describe(self) -> str:
        """A short name for messages: the variable's name, or its op."""
        if self.name:
            return repr(self.name)
        if isinstance(self.op, Input):
            return f"an unnamed {self.type} input"
        return f"the output of {type(self.op).__name__}"

    def eval(self, inputs_to_values: dict | None = None) -> np.ndarray:
        """Evaluate with the reference backend, as Theano's `var.eval({x: value})`."""
        from .evaluate import evaluate

        return evaluate([self], inputs_to_values or {})[0]

    def clone(self) -> "Var":
        return self

    def __str__(self) -> str:
        if self.name:
            return self.name
        if isinstance(self.op, (Input, Constant)):
            return str(self.op)
        return f"{type(self.op).__name__}.0"

    def __repr__(self) -> str:
        return f"{self}:{self.type}" if not self.name else f"{self.name}:{self.type}"

    def __bool__(self):
        raise TypeError(
            "a symbolic variable has no truth value; use T.eq, T.switch or theanine.ifelse.ifelse "
            f"(variable {self} created at {self.where()})"
        )

    def __iter__(self):
        n = self.type.shape[0] if self.ndim else None
        if n is None:
            raise TypeError(f"cannot iterate over {self}: its length is not known until run time")
        return (self[i] for i in range(n))

    def __len__(self):
        raise TypeError("symbolic variables have no len(); use x.shape[0]")

    def __hash__(self) -> int:
        return id(self)

    def __eq__(self, other) -> bool:  # identity, as in Theano; use T.eq for elementwise equality
        return self is other

    def __ne__(self, other) -> bool:
        return self is not other

    def __array__(self, *args, **kwargs):
        raise TypeError(f"cannot convert the symbolic variable {self} to a numpy array; compile a function or use .eval()")

    __array_priority__ = 1000


class _Tag:
    """Free-form metadata (Theano's `var.tag`)."""

    def __repr__(self):
        return f"Tag({vars(self)})"


def _rebuild_var(op, inputs, name):
    return Var(op, inputs, name)


def input_var(type_: TensorType, name: str | None = None) -> Var:
    """A new symbolic input of the given type."""
    return Var(Input(name, type_, next(_uids)), (), name)


def constant(value: Any, name: str | None = None, dtype: object = None, ndim: int | None = None) -> Var:
    """A constant tensor. Python floats become floatX (Theano's autocast)."""
    weak = False
    if isinstance(value, Var):
        raise TypeError(f"constant() expects a value, got the symbolic variable {value}")
    if dtype is not None:
        data = np.asarray(value, dtype=as_dtype(dtype))
    elif isinstance(value, (bool, int, float, complex)) and not isinstance(value, np.generic):
        data = np.asarray(value)
        weak = True
    else:
        data = np.asarray(value)
        if data.dtype == object:
            raise TypeError(f"cannot make a tensor constant from {value!r}")
        if data.dtype.kind == "f" and not isinstance(value, (np.ndarray, np.generic)):
            data = data.astype(config.floatX)  # lists of Python floats
        elif data.dtype.kind in "US":
            raise TypeError(f"cannot make a tensor constant from the string {value!r}")
        as_dtype(data.dtype)
    if ndim is not None and data.ndim != ndim:
        if data.ndim < ndim and all(s == 1 for s in data.shape):
            data = data.reshape((1,) * ndim)
        else:
            raise ValueError(f"constant {value!r} has {data.ndim} dimensions, expected {ndim}")
    return Var(Constant(data, weak), (), name)


def as_tensor_variable(x: Any, name: str | None = None, ndim: int | None = None, dtype=None) -> Var:
    """Wrap a value as a Var; Vars pass through unchanged."""
    if isinstance(x, Var):
        if ndim is not None and x.ndim != ndim:
            raise ValueError(f"expected a {ndim}-d tensor, got {x} with {x.ndim} dimensions")
        return x
    if isinstance(x, Apply):
        return x.outputs[0]
    if isinstance(x, (list, tuple)) and any(isinstance(e, Var) for e in _flatten(x)):
        return _tensor().stack([as_tensor_variable(e) for e in x])
    return constant(x, name=name, dtype=dtype, ndim=ndim)


as_tensor = as_tensor_variable


def _flatten(x):
    for e in x:
        if isinstance(e, (list, tuple)):
            yield from _flatten(e)
        else:
            yield e


def is_constant(x: Var) -> bool:
    return isinstance(x.op, Constant)


def toposort(outputs: Iterable[Var], stop: set | frozenset = frozenset()) -> list[Var]:
    """Every Var that `outputs` depend on, inputs before users; iterative, so deep graphs are fine."""
    order: list[Var] = []
    seen: set[int] = set()
    for root in outputs:
        if id(root) in seen:
            continue
        stack = [(root, False)]
        while stack:
            var, expanded = stack.pop()
            if expanded:
                order.append(var)
                continue
            if id(var) in seen:
                continue
            seen.add(id(var))
            stack.append((var, True))
            if var in stop:
                continue
            for x in reversed(var.inputs):
                if id(x) not in seen:
                    stack.append((x, False))
    return order


def graph_inputs(outputs: Iterable[Var]) -> list[Var]:
    """The leaves (inputs, constants, shared variables) that `outputs` depend on."""
    return [v for v in toposort(outputs) if not v.inputs]


def replace(outputs: Sequence[Var], mapping: dict) -> list[Var]:
    """Rebuild `outputs` with each key of `mapping` replaced by its value (types re-inferred)."""
    mapping = {k: as_tensor_variable(v) for k, v in mapping.items()}
    if not mapping:
        return list(outputs)
    new: dict[int, Var] = {}
    for var in toposort(outputs, stop=set(mapping)):
        if var in mapping:
            new[id(var)] = mapping[var]
        elif var.inputs:
            inputs = tuple(new[id(x)] for x in var.inputs)
            if all(a is b for a, b in zip(inputs, var.inputs)):
                new[id(var)] = var
            else:
                new[id(var)] = Var(var.op, inputs, var.name)
        else:
            new[id(var)] = var
    return [new[id(v)] for v in outputs]


def _binary(name: str, reflected: bool = False):
    def method(self, other):
        fn = getattr(_tensor(), name)
        try:
            other = as_tensor_variable(other)
        except TypeError:
            return NotImplemented
        return fn(other, self) if reflected else fn(self, other)

    method.__name__ = name
    return method


def _method(name: str):
    def method(self, *args, **kwargs):
        return getattr(_tensor(), name)(self, *args, **kwargs)

    method.__name__ = name
    method.__doc__ = f"Same as T.{name}(x, ...)."
    return method


_OPERATORS = {
    "__add__": ("add", False), "__radd__": ("add", True), "__sub__": ("sub", False), "__rsub__": ("sub", True),
    "__mul__": ("mul", False), "__rmul__": ("mul", True), "__truediv__": ("true_div", False),
    "__rtruediv__": ("true_div", True), "__floordiv__": ("int_div", False), "__rfloordiv__": ("int_div", True),
    "__mod__": ("mod", False), "__rmod__": ("mod", True), "__pow__": ("pow", False), "__rpow__": ("pow", True),
    "__lt__": ("lt", False), "__le__": ("le", False), "__gt__": ("gt", False), "__ge__": ("ge", False),
    "__and__": ("and_", False), "__rand__": ("and_", True), "__or__": ("or_", False), "__ror__": ("or_", True),
    "__xor__": ("xor", False), "__rxor__": ("xor", True), "__matmul__": ("matmul", False),
    "__rmatmul__": ("matmul", True),
}
for _dunder, (_name, _reflected) in _OPERATORS.items():
    setattr(Var, _dunder, _binary(_name, _reflected))

for _dunder, _name in {"__neg__": "neg", "__abs__": "abs_", "__invert__": "invert", "__getitem__": "getitem"}.items():
    setattr(Var, _dunder, _method(_name))
Var.__pos__ = lambda self: self

# Theano's TensorVariable methods: x.sum(axis=1), x.reshape((2, -1)), x.dimshuffle(1, 0) ...
for _name in (
    "sum prod mean var std max min argmax argmin all any reshape flatten dimshuffle transpose dot clip round "
    "repeat squeeze copy nonzero sort argsort cumsum cumprod diagonal norm conj ptp swapaxes "
    "zeros_like ones_like fill"
).split():
    setattr(Var, _name, _method(_name))
Var.astype = _method("cast")
Var.T = property(lambda self: _tensor().transpose(self))
Var.real = property(lambda self: _tensor().real(self))
Var.imag = property(lambda self: _tensor().imag(self))
Var.ravel = lambda self: _tensor().flatten(self)
