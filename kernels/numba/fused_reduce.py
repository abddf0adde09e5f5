"""Numba lowering of FusedReduce: one generated loop nest evaluates the body and accumulates.

The loops run over the broadcast input shape in C order (inputs are passed as broadcast views, no
copy). The innermost axis runs in chunks: the body fills a small buffer that stays in L1 (a loop
that vectorizes like an elementwise one), which is then folded into a local accumulator (a reduced
innermost axis) or into the output row (a kept one). A full reduction of contiguous inputs is one
flat loop. Sums and products of floats accumulate in float64 (as kernels/numba/reduce.py does), and
their folds may be reassociated into vector lanes: float32 results are at least as accurate as
numpy's pairwise float32 sum. A max or min folds in eight independent lanes (a NaN, once seen,
takes the ordered loop that keeps it). From PARALLEL_SIZE elements (the elementwise loops' bound:
numba's threads cost more to wake than they save below it on the benchmark machine, see
kernels/numba/loops.py) a full, row or column reduction runs KERNEL_parallel, its outer loop cut
into PARTS fixed parts (a full reduction then joins PARTS partial results, so its float rounding
differs from the serial loop's, not from run to run). Generated source is deterministic:
arguments x0.., accumulator array out, sizes n0.., functions k_<sha12>(_fold, _parallel).
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
from .loops import PARALLEL_SIZE as PARALLEL_ELEMENTWISE
from .scalar import DTYPES, convert, literal, render_body, supported

KINDS = ("sum", "prod", "max", "min")
CHUNK = 256  # elements of the innermost axis computed into a buffer before they are combined
PARTS = 8  # a parallel loop's parts: fixed, so a result does not depend on the number of threads
# From this many elements the loop nest runs its parts on numba's threads: the elementwise loops'
# bound (THEANINE_PARALLEL_SIZE sets both). Measured on the 2-core machine (float32, 2^22
# elements, ms, serial -> parallel, best of 12): sum(tanh(v)*2+v*v/2) 2.5 -> 2.3, row sums of
# tanh(x)*2 over 1024x4096 2.4 -> 2.0, sum(sqrt(v*v+1)) 0.7 -> 0.4 with the other core idle; with
# it busy (other processes) the medians went to 6-20 ms, a scheduler tick to wake the worker.
PARALLEL_SIZE = PARALLEL_ELEMENTWISE


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


def _combine(kind: str, target: str, value: str) -> str:
    """The statement joining `value` into `target`; for max and min a NaN, once in, stays (numpy)."""
    if kind == "sum":
        return f"{target} = {target} + {value}"
    if kind == "prod":
        return f"{target} = {target} * {value}"
    symbol = ">" if kind == "max" else "<"
    return f"if {target} == {target} and ({value} {symbol} {target} or {value} != {value}): " + (
        f"{target} = {value}"
    )


def _fold_source(kind: str, flags: str, fast: str) -> list[str]:
    """FOLD(acc, buf, m): buf[:m] joined into acc. A sum or product is one loop (reassociated into
    vector lanes). A max or min is a serial chain of compares, 5 ns per element; unless acc or buf
    holds a NaN (then the ordered loop, which keeps it), it runs as eight independent lanes instead
    (0.2 ns per element measured): the same result, but for the sign of a zero among equal zeros."""
    ordered = ["    for j in range(m):", f"        {_combine(kind, 'acc', 'buf[j]')}", "    return acc"]
    if kind in ("sum", "prod"):
        return [f"@numba.njit({flags}{fast})", "def FOLD(acc, buf, m):", *ordered, "", ""]
    symbol = ">" if kind == "max" else "<"
    lanes = [f"a{k}" for k in range(8)]
    text = [f"@numba.njit({flags})", "def FOLD_nan(buf, m):", "    bad = False",
            "    for j in range(m):", "        bad |= buf[j] != buf[j]", "    return bad", "", "",
            f"@numba.njit({flags})", "def FOLD(acc, buf, m):",
            "    if acc != acc or FOLD_nan(buf, m):",
            *["    " + line for line in ordered],
            f"    {' = '.join(lanes)} = acc", "    j = 0", "    while j + 8 <= m:"]  # fmt: skip
    for k, lane in enumerate(lanes):
        text += [f"        v = buf[j + {k}]", f"        {lane} = v if v {symbol} {lane} else {lane}"]
    text += ["        j += 8", "    for k in range(j, m):", "        v = buf[k]",
             f"        a0 = v if v {symbol} a0 else a0"]  # fmt: skip
    for step in (1, 2, 4):  # the lanes joined pairwise
        for k in range(0, 8, 2 * step):
            a, b = lanes[k], lanes[k + step]
            text.append(f"    {a} = {b} if {b} {symbol} {a} else {a}")
    return text + ["    return a0", "", ""]


def parallel_plan(op: FusedReduce, ndim: int) -> str | None:
    """How the loop nest splits over threads, or None: 'flat' (a full reduction of one flat loop:
    PARTS partial accumulators, then combined), 'outer' (axis 0 kept: parts of its range) or
    'columns' (only the innermost axis kept: parts of its chunks, each over every outer index)."""
    if ndim == 0:
        return "flat"
    kept = [a for a in range(ndim) if a not in op.axis]
    if ndim >= 2 and kept and kept[0] == 0:
        return "outer"
    if ndim >= 2 and kept == [ndim - 1]:
        return "columns"
    return None


def kernel_source(var: Var, ndim: int, pattern: str) -> tuple[str, str]:
    """(module source, kernel name) for a FusedReduce at rank `ndim` (0: one flat loop over all
    elements) and input `pattern` (per input: 'v' read per element, 's' one element read once).

    The innermost axis runs in chunks of CHUNK elements: the body fills a small buffer (a loop the
    compiler vectorizes, as an elementwise loop), which then joins the accumulator (over a reduced
    innermost axis: by FOLD, whose sums and products may be reassociated into vector lanes) or the
    output row (over a kept innermost axis). Where `parallel_plan` finds a split, the module also
    holds KERNEL_parallel, the same nest with its outermost loop cut into PARTS `prange` parts.
    """
    op: FusedReduce = var.op
    body = op.body
    n_in = len(body.placeholders)
    acc_dtype = accumulator_dtype(op.kind, var.dtype)
    lines, (result,) = render_body(body.placeholders, body.outputs, [f"a{k}" for k in range(n_in)])
    lines.append(f"buf[j] = {convert(result, body.outputs[0].dtype, acc_dtype)}")
    rank = max(ndim, 1)
    inner = rank - 1
    params = ", ".join([f"x{k}" for k in range(n_in)] + ["out"] + [f"n{d}" for d in range(rank)])
    first = ", ".join(["0"] * rank)
    kept = [] if ndim == 0 else [a for a in range(ndim) if a not in op.axis]
    last_kept = max(kept) if kept else -1
    out_index = "0" if ndim == 0 else ", ".join(f"i{a}" if a in kept else "0" for a in range(ndim))
    flags = 'cache=True, error_model="numpy", nogil=True'
    # reassociating a sum or product lets it run in vector lanes; max and min keep their order
    fast = ', fastmath={"reassoc"}' if op.kind in ("sum", "prod") else ""
    start_value = literal(identity(op.kind, acc_dtype), acc_dtype)
    hoisted = [f"    a{k} = x{k}[{first}]" for k in range(n_in) if pattern[k] == "s"]
    folding = last_kept < inner  # the innermost axis is reduced: a local accumulator

    def nest(split: str | None) -> list[str]:
        """The loop nest's lines; `split` cuts its outermost loop into parts (see parallel_plan)."""
        text: list[str] = []
        depth = 1

        def emit(line: str) -> None:
            text.append("    " * depth + line)

        if split is None:
            emit(f"buf = np.empty({CHUNK}, np.{acc_dtype})")
        else:  # one buffer per part (an allocation inside prange could be hoisted and shared)
            emit(f"bufs = np.empty(({PARTS}, {CHUNK}), np.{acc_dtype})")
            if split == "flat":
                emit(f"partial = np.full({PARTS}, {start_value})")
            count = f"(n{inner} + {CHUNK - 1}) // {CHUNK}" if split == "columns" else "n0"
            emit(f"step = ({count} + {PARTS - 1}) // {PARTS}")
            emit(f"for part in numba.prange({PARTS}):")
            depth += 1
            emit("buf = bufs[part]")
        if split == "columns":  # the chunks of the kept innermost axis, each over all outer axes
            emit(f"for chunk in range(part * step, min((part + 1) * step, (n{inner} + "
                 f"{CHUNK - 1}) // {CHUNK})):")  # fmt: skip
            depth += 1
            emit(f"start = chunk * {CHUNK}")
            emit(f"m = min({CHUNK}, n{inner} - start)")
            for axis in range(inner):
                emit(f"for i{axis} in range(n{axis}):")
                depth += 1
        else:
            bounds = "part * step, min((part + 1) * step, n0)" if split else "n0"
            for axis in range(last_kept + 1 if folding else inner):
                emit(f"for i{axis} in range({bounds if axis == 0 else f'n{axis}'}):")
                depth += 1
            if folding:
                emit(f"acc = {start_value}" if split == "flat" else f"acc = out[{out_index}]")
                outer = depth
                for axis in range(last_kept + 1, inner):
                    emit(f"for i{axis} in range(n{axis}):")
                    depth += 1
            if split == "flat":  # the part's slice of the one flat axis, in chunks
                emit(f"for start in range(part * step, min((part + 1) * step, n0), {CHUNK}):")
                emit(f"    m = min({CHUNK}, min((part + 1) * step, n0) - start)")
            else:
                emit(f"for start in range(0, n{inner}, {CHUNK}):")
                emit(f"    m = min({CHUNK}, n{inner} - start)")
            depth += 1
        # rows are 1-d views indexed by j from range(m): numba then knows no index is negative and
        # the loop vectorizes (x[start + j] would need a wraparound check per element)
        prefix = "".join(f"i{d}, " for d in range(inner))
        for k in range(n_in):
            if pattern[k] == "v":
                emit(f"r{k} = x{k}[{prefix}start:start + m]")
        emit("for j in range(m):")
        depth += 1
        for k in range(n_in):
            if pattern[k] == "v":
                emit(f"a{k} = r{k}[j]")
        for line in lines:
            emit(line)
        depth -= 1
        if folding:
            emit("acc = FOLD(acc, buf, m)")
            depth = outer
            emit("partial[part] = acc" if split == "flat" else f"out[{out_index}] = acc")
        else:  # the innermost axis is kept: each buffer element joins its own output element
            row = ", ".join(f"i{a}" if a in kept else "0" for a in range(inner))
            emit(f"row = out[{row + ', ' if row else ''}start:start + m]")
            emit("for j in range(m):")
            depth += 1
            emit("o = row[j]")
            emit(_combine(op.kind, "o", "buf[j]"))
            emit("row[j] = o")
        if split == "flat":  # the parts' results, joined in order
            depth = 1
            emit("acc = out[0]")
            emit(f"for part in range({PARTS}):")
            emit(f"    {_combine(op.kind, 'acc', 'partial[part]')}")
            emit("out[0] = acc")
        return text

    text = _fold_source(op.kind, flags, fast) + [f"@numba.njit({flags})", f"def KERNEL({params}):"]
    text += hoisted + nest(None)
    split = parallel_plan(op, ndim)
    if split is not None:
        text += ["", "", f"@numba.njit({flags}, parallel=True)", f"def KERNEL_parallel({params}):"]
        text += hoisted + nest(split)
    source = "\n".join(text) + "\n"
    name = "k_" + hashlib.sha256(source.encode()).hexdigest()[:12]
    # the accumulator's start value is the output's fill value: written out for the reader
    header = f"# FusedReduce {op.kind} over axes {op.axis}, accumulator {acc_dtype} from "
    header += f"{start_value}\n"
    source = source.replace("KERNEL", name).replace("FOLD", name + "_fold")
    return _PRELUDE + header + "\n" + source, name


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

    def kernel(self, ndim: int, pattern: str, size: int = 0):
        """The compiled loop for a rank and input pattern (generated and loaded once): its
        parallel form for `size` >= PARALLEL_SIZE elements when the nest splits."""
        key = (ndim, pattern)
        found = self.kernels.get(key)
        if found is None:
            source, name = kernel_source(self.var, ndim, pattern)
            if os.environ.get("DEBUG") == "2":  # the generated source, as STYLE.md asks
                print(f"# numba kernel {name}\n{source}")
            module = load_source(source)
            found = (getattr(module, name), getattr(module, name + "_parallel", None))
            self.kernels[key] = found
        serial, parallel = found
        return parallel if parallel is not None and size >= PARALLEL_SIZE else serial

    def source(self) -> str:
        """The generated source of the loop nest over all axes, every input read per element."""
        ndim = self.var.inputs[0].ndim if self.var.inputs else 0
        return kernel_source(self.var, ndim, "v" * len(self.var.inputs))[0]

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
                self.kernel(0, pattern, size)(*args)
            else:
                ones = (1,) * len(shape)
                args = [x.reshape(ones) if p == "s" else np.broadcast_to(x, shape)
                        for x, p in zip(xs, pattern)]  # fmt: skip
                kernel = self.kernel(len(shape), pattern, size)
                kernel(*args, out.reshape(keep_shape), *shape)
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
