"""Numba lowering of FusedReduce: one generated loop nest evaluates the body and accumulates.

The loops run over the broadcast input shape in C order (inputs are passed as broadcast views, no
copy); the accumulator is a local variable over the trailing reduced axes, loaded from and stored to
the (keepdims-shaped) output once per kept index, so any set of reduced axes works. A full
reduction of contiguous inputs runs one flat loop. Sums and products of floats accumulate in
float64 (as kernels/numba/reduce.py does): float32 results are then at least as accurate as numpy's
pairwise float32 sum, and within float32 rounding of it. The loops are serial: a reduction's
output is shared between iterations, and the elementwise work it fuses is what it saves.
The source is deterministic: arguments x0.., the accumulator array out, sizes n0.., function k_<sha12>.
"""

from __future__ import annotations

import hashlib
import os

import numpy as np

from ...graph.ops.fused_reduce import FusedReduce
from ...graph.ops.reduce import reduced_shape
from ...graph.var import Var
from .cache import load_source
from .loops import _PRELUDE, broadcast_shape
from .scalar import DTYPES, convert, literal, render_body, supported

KINDS = ("sum", "prod", "max", "min")


def accumulator_dtype(kind: str, dtype: str) -> str:
    """The dtype partial results are kept in: float64 for float sums and products."""
    if kind in ("sum", "prod") and dtype.startswith("float"):
        return "float64"
    return dtype


def identity(kind: str, dtype: str):
    """The starting value of a reduction in `dtype` (max of floats starts at -inf)."""
    if kind in ("sum", "prod"):
        return np.asarray(0 if kind == "sum" else 1, dtype)[()]
    if dtype.startswith("float"):
        return np.asarray(-np.inf if kind == "max" else np.inf, dtype)[()]
    info = np.iinfo(dtype)
    return np.asarray(info.min if kind == "max" else info.max, dtype)[()]


def _combine(kind: str, value: str) -> str:
    """The statement joining `value` into `acc`; for max and min a NaN, once seen, stays (numpy)."""
    if kind == "sum":
        return f"acc = acc + {value}"
    if kind == "prod":
        return f"acc = acc * {value}"
    symbol = ">" if kind == "max" else "<"
    return f"if acc == acc and ({value} {symbol} acc or {value} != {value}): acc = {value}"


def kernel_source(var: Var, ndim: int, pattern: str) -> tuple[str, str]:
    """(module source, kernel name) for a FusedReduce at rank `ndim` (0: one flat loop over all
    elements) and input `pattern` (per input: 'v' read per element, 's' one element read once)."""
    op: FusedReduce = var.op
    body = op.body
    n_in = len(body.placeholders)
    acc_dtype = accumulator_dtype(op.kind, var.dtype)
    lines, (result,) = render_body(body.placeholders, body.outputs, [f"a{k}" for k in range(n_in)])
    value_dtype = body.outputs[0].dtype
    lines.append(f"v = {convert(result, value_dtype, acc_dtype)}")
    rank = max(ndim, 1)
    sizes = [f"n{d}" for d in range(rank)]
    params = ", ".join([f"x{k}" for k in range(n_in)] + ["out"] + sizes)
    index = ", ".join(f"i{d}" for d in range(rank))
    first = ", ".join(["0"] * rank)
    kept = [] if ndim == 0 else [a for a in range(ndim) if a not in op.axis]
    last_kept = max(kept) if kept else -1
    out_index = "0" if ndim == 0 else ", ".join(f"i{a}" if a in kept else "0" for a in range(ndim))
    text = [f"@numba.njit(cache=True, error_model=\"numpy\", nogil=True)", f"def KERNEL({params}):"]
    text += [f"    a{k} = x{k}[{first}]" for k in range(n_in) if pattern[k] == "s"]
    depth = 1

    def emit(line: str) -> None:
        text.append("    " * depth + line)

    for axis in range(last_kept + 1):  # the kept axes and the reduced ones between them
        emit(f"for i{axis} in range(n{axis}):")
        depth += 1
    emit(f"acc = out[{out_index}]")
    outer = depth
    for axis in range(last_kept + 1, rank):  # the trailing reduced axes: acc stays in a register
        emit(f"for i{axis} in range(n{axis}):")
        depth += 1
    for k in range(n_in):
        if pattern[k] == "v":
            emit(f"a{k} = x{k}[{index}]")
    for line in lines + [_combine(op.kind, "v")]:
        emit(line)
    depth = outer
    emit(f"out[{out_index}] = acc")
    source = "\n".join(text) + "\n"
    name = "k_" + hashlib.sha256(source.encode()).hexdigest()[:12]
    # the accumulator's start value is the output's fill value: written out for the reader
    header = f"# FusedReduce {op.kind} over axes {op.axis}, accumulator {acc_dtype} from "
    header += f"{literal(identity(op.kind, acc_dtype), acc_dtype)}\n"
    return _PRELUDE + header + "\n" + source.replace("KERNEL", name), name


class FusedReduceRunner:
    """Runs one FusedReduce node: checks and broadcasts shapes in Python, then calls its loop."""

    __slots__ = ("var", "fixed", "kernels", "acc_dtype", "start", "dtype", "axis", "keepdims",
                 "kind")  # fmt: skip

    def __init__(self, var: Var) -> None:
        op: FusedReduce = var.op
        self.var = var
        self.fixed = [tuple(d != 1 for d in x.type.shape) for x in var.inputs]
        self.kind, self.axis, self.keepdims = op.kind, op.axis, op.keepdims
        self.dtype = np.dtype(var.dtype)
        self.acc_dtype = np.dtype(accumulator_dtype(op.kind, var.dtype))
        self.start = identity(op.kind, self.acc_dtype.name)
        self.kernels: dict[tuple, object] = {}

    def kernel(self, ndim: int, pattern: str):
        """The compiled loop for a rank and input pattern, generated and loaded once."""
        key = (ndim, pattern)
        found = self.kernels.get(key)
        if found is None:
            source, name = kernel_source(self.var, ndim, pattern)
            if os.environ.get("DEBUG") == "2":  # the generated source, as STYLE.md asks
                print(f"# numba kernel {name}\n{source}")
            found = self.kernels[key] = getattr(load_source(source), name)
        return found

    def __call__(self, *xs: np.ndarray) -> np.ndarray:
        shape = broadcast_shape(xs, self.fixed)
        reduced = 1
        for a in self.axis:
            reduced *= shape[a]
        if reduced == 0 and self.kind in ("max", "min"):
            name = "maximum" if self.kind == "max" else "minimum"
            raise ValueError(f"zero-size array to reduction operation {name} which has no identity")
        size = 1
        for d in shape:
            size *= d
        full = len(self.axis) == len(shape)
        keep_shape = reduced_shape(shape, self.axis, True)
        out = np.full(1 if full else keep_shape, self.start, self.acc_dtype)
        if size:
            pattern = "".join("s" if x.size == 1 and size != 1 else "v" for x in xs)
            flat = full and all(x.size == 1 or (x.shape == shape and x.flags.c_contiguous)
                                for x in xs)  # fmt: skip
            if flat:
                args = [x.reshape(-1) for x in xs] + [out, size]
                self.kernel(0, pattern)(*args)
            else:
                ones = (1,) * len(shape)
                args = [x.reshape(ones) if p == "s" else np.broadcast_to(x, shape)
                        for x, p in zip(xs, pattern)]  # fmt: skip
                self.kernel(len(shape), pattern)(*args, out.reshape(keep_shape), *shape)
        result = out.astype(self.dtype, copy=False)
        return result.reshape(reduced_shape(shape, self.axis, self.keepdims))


def supported_reduction(var: Var) -> bool:
    """May this FusedReduce run as one generated loop (its kind, dtypes and scalar ops render)?"""
    op = var.op
    if not isinstance(op, FusedReduce) or op.kind not in KINDS or var.dtype not in DTYPES:
        return False
    value_dtype = op.body.outputs[0].dtype
    if value_dtype not in DTYPES or (op.kind in ("max", "min") and value_dtype == "bool"):
        return False
    return supported(Var(op.body, var.inputs))


def _fused_reduce(op: FusedReduce, var: Var) -> FusedReduceRunner:
    return FusedReduceRunner(var)


LOWERINGS = {FusedReduce: _fused_reduce}
NUMPY_STEPS: dict = {}
