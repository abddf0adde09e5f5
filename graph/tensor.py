"""The `theanine.tensor` namespace (Theano's `T`): variable constructors and every tensor function."""

from __future__ import annotations

import numpy as np

from .config import config
from .shared import SharedVariable, shared
from .type import PREFIX_DTYPES, TensorType, as_dtype
from .var import Apply, Constant, Op, Var, as_tensor, as_tensor_variable, constant, input_var
from .ops.elemwise import *  # noqa: F401,F403
from .ops.elemwise import Elemwise, fill, second
from .ops.reduce import *  # noqa: F401,F403
from .ops.reduce import sum_
from .ops.shape import *  # noqa: F401,F403
from .ops.shape import DimShuffle, dimshuffle, shape_padaxis, shape_padleft, shape_padright, transpose
from .ops.subtensor import *  # noqa: F401,F403
from .ops.linalg import *  # noqa: F401,F403
from .ops.nnet import *  # noqa: F401,F403

# Theano names that shadow Python builtins are defined with a trailing underscore in the op modules.
for _public, _private in {
    "sum": "sum_", "max": "max_", "min": "min_", "all": "all_", "any": "any_", "round": "round_",
    "pow": "pow_", "abs": "abs_", "slice": "slice_", "range": "range_",
}.items():
    if _private in globals():
        globals()[_public] = globals()[_private]

TensorVariable = Var
TensorConstant = Var
Variable = Var


def broadcast_to_like(g: Var, x: Var) -> Var:
    """`g` broadcast to the (run-time) shape of `x`, in g's dtype."""
    if g.type.shape == x.type.shape and None not in x.type.shape:
        return g
    return second(x, g)


# --- symbolic variable constructors: T.matrix('x'), T.fvector(), T.tensor4(dtype='int64') ----------

_NDIMS = {"scalar": 0, "vector": 1, "matrix": 2, "tensor3": 3, "tensor4": 4, "tensor5": 5, "tensor6": 6, "tensor7": 7}


def _constructor(kind: str, fixed_dtype: str | None):
    ndim = _NDIMS[kind]

    def make(name: str | None = None, dtype=None, shape=None) -> Var:
        if fixed_dtype is not None and dtype is not None:
            raise TypeError(f"{kind}() with a dtype prefix takes no dtype argument")
        static = (None,) * ndim if shape is None else shape
        if len(tuple(static)) != ndim:
            raise ValueError(f"{kind}() needs a shape with {ndim} entries, got {shape!r}")
        return input_var(TensorType(fixed_dtype or as_dtype(dtype), static), name)

    make.__name__ = kind
    make.__doc__ = f"A new symbolic {ndim}-d input ({fixed_dtype or 'floatX'} unless dtype= says otherwise)."
    return make


for _kind in _NDIMS:
    globals()[_kind] = _constructor(_kind, None)
    for _prefix, _dtype in PREFIX_DTYPES.items():
        globals()[_prefix + _kind] = _constructor(_kind, _dtype)


def row(name=None, dtype=None) -> Var:
    """A new symbolic matrix with one row (broadcastable first axis)."""
    return input_var(TensorType(as_dtype(dtype), (1, None)), name)


def col(name=None, dtype=None) -> Var:
    """A new symbolic matrix with one column (broadcastable last axis)."""
    return input_var(TensorType(as_dtype(dtype), (None, 1)), name)


for _prefix, _dtype in PREFIX_DTYPES.items():
    globals()[_prefix + "row"] = (lambda d: lambda name=None: row(name, d))(_dtype)
    globals()[_prefix + "col"] = (lambda d: lambda name=None: col(name, d))(_dtype)


def tensor(dtype=None, broadcastable=None, name=None, shape=None) -> Var:
    """A new symbolic input: Theano's T.tensor(dtype, broadcastable, name) or PyTensor's shape=."""
    if isinstance(dtype, str) and broadcastable is None and shape is None and dtype not in np.sctypeDict and dtype != "floatX":
        name, dtype = dtype, None  # T.tensor("x", ...) in PyTensor style
    if shape is None:
        shape = tuple(1 if b else None for b in broadcastable) if broadcastable is not None else ()
    return input_var(TensorType(as_dtype(dtype), shape), name)


def _plural(make, kind: str):
    def many(*names, dtype=None):
        if len(names) == 1 and isinstance(names[0], int):
            names = (None,) * names[0]
        elif len(names) == 1 and isinstance(names[0], (list, tuple)):
            names = tuple(names[0])
        made = [make(name) if dtype is None else make(name, dtype=dtype) for name in names]
        return made[0] if len(made) == 1 else made

    many.__name__ = kind
    many.__doc__ = f"Several inputs at once: T.{kind}('a', 'b') (or a count)."
    return many


_PLURALS = {"scalar": "scalars", "vector": "vectors", "matrix": "matrices", "row": "rows", "col": "cols",
            "tensor3": "tensor3s", "tensor4": "tensor4s", "tensor5": "tensor5s"}
for _kind, _plural_name in _PLURALS.items():
    globals()[_plural_name] = _plural(globals()[_kind], _plural_name)
    for _prefix in PREFIX_DTYPES:
        globals()[_prefix + _plural_name] = _plural(globals()[_prefix + _kind], _prefix + _plural_name)
