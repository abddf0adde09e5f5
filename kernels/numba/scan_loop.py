"""A whole scan loop as one numba function: a counted `for` over the steps, the body inline.

`compile_loop(op)` writes, for a Scan whose body uses only the ops below, a module holding one
`@numba.njit(cache=True)` function that runs every step (a `break` ends an `until` loop), plus one
small helper per elementwise group or reduction of the body; the Python wrapper only checks the
inputs, allocates the state buffers (`Scan.prepare`) and slices the results (`Scan.results`), so no
Python runs per step. Bodies with any other op keep the per-step plan (kernels/numba/control.py).

Inside the generated code a 0-d value is a numba scalar (a row of a vector, a full reduction, a
constant), every other value an array. Constants and shared values of the body are arguments,
never literals in the source. The compiled loop raises a bare exception on bad shapes; the wrapper
then runs the reference loop, which raises the error with the step, shapes and names.

Body ops: fused elementwise groups (Composite, Elemwise) and their Proj, basic Subtensor and
IncSubtensor with constant indices, DimShuffle, Dot and Gemm of float32/float64, Sum and
FusedReduce (sum, prod, max, min).
"""

from __future__ import annotations

import hashlib
import os
import re
import warnings

import numpy as np
from numba.core.errors import NumbaError, NumbaPerformanceWarning

from ...graph.ops import blas, composite, fused_reduce, linalg, reduce, shape, subtensor
from ...graph.ops.scan import Scan
from ...graph.type import TensorType, TupleType
from ...graph.var import Constant, Shared, Var, toposort
from . import cblas
from .cache import load_source
from .loops import _PRELUDE, scalar_graph
from .scalar import render_body, supported

_FLOATS = ("float32", "float64")
_REDUCTIONS = (reduce.Sum, reduce.Prod, reduce.Max, reduce.Min)


class Unsupported(Exception):
    """A body node the loop generator cannot write: the scan keeps its per-step plan."""


# --- per-node code ---------------------------------------------------------------------------------


def _constant_key(idx: tuple) -> str | None:
    """Source text of a constant basic index (ints and slices of ints), else None."""
    parts = []
    for e in idx:
        if isinstance(e, int) and not isinstance(e, bool):
            parts.append(str(e))
        elif isinstance(e, tuple) and e[0] == "slice":
            start, stop, step = e[1:]
            if any(b is not None and not isinstance(b, int) for b in (start, stop, step)):
                return None
            text = f"{'' if start is None else start}:{'' if stop is None else stop}"
            parts.append(text if step is None else f"{text}:{step}")
        else:
            return None  # newaxis, index inputs, advanced indices
    return ", ".join(parts) if parts else None


def _window_starts(idx: tuple) -> tuple | None:
    """The start of each sliced axis when `idx` is a window: leading slices of step 1 with
    constant non-negative bounds (x[:, 128:256]); else None."""
    starts = []
    for e in idx:
        if not (isinstance(e, tuple) and e[0] == "slice" and e[3] in (None, 1)):
            return None
        start, stop = e[1], e[2]
        if any(b is not None and (not isinstance(b, int) or b < 0) for b in (start, stop)):
            return None
        starts.append(start or 0)
    return tuple(starts) if starts else None


class _Writer:
    """Collects the loop's lines and the helper functions they call."""

    def __init__(self, readers: dict) -> None:
        self.helpers: list[str] = []
        self.names: dict[int, str] = {}
        self.readers = readers  # id(var) -> how many times the body reads it (outputs count)
        self.fresh: set[int] = set()  # ids of values in memory of their own, written by this step
        self.by_text: dict[str, str] = {}  # helper text -> its name
        # id(window) -> (the array it is a window of, its starts): elementwise helpers read such
        # a window from the array itself at an offset, in C order, instead of copying it
        self.windows: dict[int, tuple[str, tuple]] = {}
        # (id(var), output j) -> (row expression, inner output index): an elementwise result that
        # is a state's next row or a per-step output row is written there by its helper
        self.destinations: dict[tuple[int, int], tuple[str, int]] = {}
        self.written: set[int] = set()  # inner output indices their helper wrote in place
        self.n_states = 0  # inner outputs below this index are states
        # inner output index -> the in-place slice writes between it and the helper that made
        # its array (a chain of gradient slices filling a buffer): all must be done in place
        self.chains: dict[int, list[int]] = {}
        self.in_place: set[int] = set()  # ids of slice writes done into their input's array
        self.invariant: set[int] = set()  # ids of the values every step shares (non-sequences)
        self.prelude: list[str] = []  # lines run once before the steps
        self.transposed: dict[int, str] = {}  # id(invariant matrix) -> its C-ordered transpose
        self.dummies: dict[str, str] = {}  # "dtype ndim" -> name of an empty array of that type

    def helper(self, text: str) -> str:
        """Add a helper function (text with the name HELPER), or find the same one written
        before (each compiled once: numba's compile time is per function); return its name."""
        name = self.by_text.get(text)
        if name is None:
            name = self.by_text[text] = f"h{len(self.helpers)}"
            self.helpers.append(text.replace("HELPER", name))
        return name

    def node(self, var: Var, out: str) -> list[str]:
        """Lines computing `var` into the local `out`; raises Unsupported."""
        op = var.op
        args = [self.names[id(x)] for x in var.inputs]
        if isinstance(op, composite.Proj):
            return [f"{out} = {args[0]}[{op.index}]"]
        elementwise = isinstance(op, composite.Composite) or (
            type(op).__module__.endswith(("ops.elemwise", "ops.elemwise_math", "ops.nnet"))
            and isinstance(var.type, TensorType)
        )
        if elementwise and supported(var):
            if not isinstance(var.type, TupleType):
                self.fresh.add(id(var))
            return self._elementwise(var, out, args)
        if isinstance(op, subtensor.Subtensor) and len(var.inputs) == 1 and var.inputs[0].ndim:
            key = _constant_key(op.idx)
            if key is not None:
                starts = _window_starts(op.idx)
                if starts is not None and var.ndim == var.inputs[0].ndim:
                    self.windows[id(var)] = (args[0], starts + (0,) * (var.ndim - len(starts)))
                return [f"{out} = {args[0]}[{key}]"]
        if isinstance(op, subtensor.IncSubtensor) and len(var.inputs) == 2 and var.ndim:
            key = _constant_key(op.idx)
            if key is not None:
                verb = "=" if op.set_instead_of_inc else "+="
                self.fresh.add(id(var))
                x = var.inputs[0]
                if id(x) in self.fresh and self.readers.get(id(x)) == 1 and x.type == var.type:
                    # x is this step's own new array and nothing else reads it: write into it
                    # (a chain of slice gradients filling one buffer)
                    first = f"{out} = {args[0]}"
                    self.in_place.add(id(var))
                else:
                    first = f"{out} = {args[0]}.copy()"
                target_ndim = var.ndim - sum(isinstance(e, int) for e in op.idx)
                y = var.inputs[1]
                if target_ndim == 0 or y.ndim > target_ndim:
                    return [first, f"{out}[{key}] {verb} {args[1]}"]
                starts = _window_starts(op.idx)
                if starts is not None and target_ndim == var.ndim:
                    starts = starts + (0,) * (var.ndim - len(starts))
                    put = self.helper(_put_source(target_ndim, y, verb, window=True))
                    offsets = _offsets(starts)
                    return [first, f"{put}({out}, {offsets}, {out}[{key}], {args[1]})"]
                put = self.helper(_put_source(target_ndim, y, verb))
                return [first, f"{put}({out}[{key}], {args[1]})"]
        if isinstance(op, shape.DimShuffle) and var.inputs[0].ndim:
            return self._dimshuffle(var, out, args[0])
        if isinstance(op, linalg.Dot) and _blas_types(var):
            found = self.destinations.get((id(var), 0))
            into_state = found is not None and found[1] < self.n_states and var.ndim == 2
            matrices = var.ndim == 2 and var.inputs[0].ndim == 2
            if into_state:
                # a state's next row: the product is written there (another shape raises, and
                # the per-step plan then names the state)
                self.written.add(found[1])
            dest = found[0] if into_state else None
            if not matrices:
                plain = f"np.dot({args[0]}, {args[1]}{'' if dest is None else ', ' + dest})"
            elif dest is None:
                plain = f"cblas.matmul({args[0]}, {args[1]})"
            else:
                plain = f"cblas.matmul_into({args[0]}, {args[1]}, {dest})"
            b = var.inputs[1]
            if not matrices or id(b) not in self.invariant or cblas.library() != "openblas":
                return [f"{out} = {plain}"]
            # a step's rows times a weight matrix with more rows than columns (a gradient's
            # g @ W.T): OpenBLAS is faster on the transposed problem, W @ g.T (measured for
            # 32 x 512 @ 512 x 128: 27 us with the transposing copy, against 38 us); MKL is not
            bt = self.transposed.get(id(b))
            if bt is None:
                bt = self.transposed[id(b)] = f"bt{len(self.transposed)}"
                self.prelude.append(f"{bt} = np.ascontiguousarray({args[1]}.T)")
            helper = self.helper(_transposed_dot_source())
            return [
                f"if {args[1]}.shape[0] >= 2 * {args[1]}.shape[1]:",
                f"    {out} = {helper}({args[0]}, {bt}, {dest or self._dummy(var.dtype, 2)})",
                "else:",
                f"    {out} = {plain}",
            ]
        if isinstance(op, blas.Gemm) and _blas_types(var) and var.ndim == 2:
            # z copied into the result, then one GEMM adding the product to it
            pattern = tuple(d == 1 for d in var.inputs[0].type.shape)
            gemm = self.helper(_gemm_source(pattern, var.dtype))
            return [f"{out} = {gemm}({', '.join(args)})"]
        if isinstance(op, _REDUCTIONS) and var.inputs[0].ndim and _reducible(var.inputs[0].dtype):
            return self._reduction(var, out, args, type(op).__name__.lower())
        if isinstance(op, fused_reduce.FusedReduce) and var.inputs[0].ndim:
            if var.op.kind in ("sum", "prod", "max", "min") and _reducible(var.dtype):
                return self._reduction(var, out, args, var.op.kind)
        raise Unsupported(f"{type(op).__name__} ({var.type})")

    # -- elementwise groups
    def _elementwise(self, var: Var, out: str, args: list[str]) -> list[str]:
        placeholders, outputs = scalar_graph(var)
        ndim = len(var.inputs[0].type.shape) if var.inputs else 0
        if any(x.ndim != ndim for x in var.inputs):
            raise Unsupported("elementwise inputs of different ranks")
        if ndim == 0:  # scalars: the expression inline
            lines, results = render_body(placeholders, outputs, args, start=0)
            prefix = f"{out}_"
            lines = [_rename(line, prefix) for line in lines]
            results = [_rename(r, prefix) for r in results]
            value = results[0] if len(results) == 1 else "(" + ", ".join(results) + ",)"
            return lines + [f"{out} = {value}"]
        n = len(var.inputs)
        patterns = [tuple(d == 1 for d in x.type.shape) for x in var.inputs]
        windows, args = self._windows(var.inputs, patterns, args)
        inner = [f"a{k} = x{k}[{_index(patterns[k], ndim, f's{k}' if k in windows else None)}]"
                 for k in range(n)]
        body, results = render_body(placeholders, outputs, [f"a{k}" for k in range(n)])
        dtypes = [o.dtype for o in outputs]
        stores = [f"out{j}[{_index((False,) * ndim, ndim)}] = {r}" for j, r in enumerate(results)]
        returned = "out0" if len(outputs) == 1 else "(" + ", ".join(
            f"out{j}" for j in range(len(outputs))) + ",)"
        text = self._loop_function(patterns, ndim, dtypes, inner + body + stores, returned,
                                   windows=windows, destinations=True)
        name = self.helper(text)
        targets = []
        for j, dtype in enumerate(dtypes):
            found = self.destinations.get((id(var), j))
            if found is None:
                targets.append(self._dummy(dtype, ndim))
            else:
                targets.append(found[0])
                self.written.add(found[1])
        return [f"{out} = {name}({', '.join(args + targets)})"]

    def _dummy(self, dtype: str, ndim: int) -> str:
        """An empty array standing for "no destination": the helper allocates its output."""
        return self.dummies.setdefault(f"{dtype} {ndim}", f"z{len(self.dummies)}")

    def _windows(self, inputs, patterns, args: list[str]) -> tuple[set, list[str]]:
        """The inputs read as windows of a larger array (none broadcast), and the call's
        arguments: for such an input the array, the window's starts and the window (for its
        shape) in place of the window alone."""
        windows, call = set(), []
        for k, (x, name) in enumerate(zip(inputs, args)):
            window = self.windows.get(id(x))
            if window is None or any(patterns[k]):
                call.append(name)
                continue
            windows.add(k)
            base, starts = window
            call += [base, _offsets(starts), name]
        return windows, call

    def _loop_function(self, patterns, ndim, dtypes, body, returned, init=None, out_shape=None,
                       windows=frozenset(), destinations=False):
        """A helper over inputs x0.. broadcast by their static patterns: sizes d0.., checks,
        outputs out0.. of `out_shape` (default the loop's shape), one loop per axis. An input
        k in `windows` comes as three parameters: the array x{k}, the starts s{k} and the window
        w{k}, whose shape is the one checked. `destinations`: one more parameter per output, an
        array the output is written into when it has the output's shape (a state's or a per-step
        output's row), else a new array."""
        n = len(patterns)
        params = ", ".join(f"x{k}, s{k}, w{k}" if k in windows else f"x{k}" for k in range(n))
        if destinations:
            params += "".join(f", dest{j}" for j in range(len(dtypes)))
        lines = [f"def HELPER({params}):"]
        lines += [f"    x{k} = np.ascontiguousarray(x{k})" for k in range(n)]
        shape_of = {k: (f"w{k}" if k in windows else f"x{k}") for k in range(n)}
        checks = []
        for axis in range(ndim):
            sources = [k for k in range(n) if not patterns[k][axis]]
            if not sources:
                lines.append(f"    d{axis} = 1")
                continue
            lines.append(f"    d{axis} = {shape_of[sources[0]]}.shape[{axis}]")
            checks += [f"{shape_of[k]}.shape[{axis}] != d{axis}" for k in sources[1:]]
        if checks:  # one raise for all: numba compiles each raise as code of its own (~30 ms)
            lines.append(f"    if {' or '.join(checks)}:")
            lines.append("        raise ValueError('elementwise: shapes do not match')")
        shape = out_shape or "(" + "".join(f"d{a}, " for a in range(ndim)) + ")"
        fits = " and ".join(f"dest{{j}}.shape[{a}] == d{a}" for a in range(ndim)) or "True"
        for j, dtype in enumerate(dtypes):
            if destinations:
                lines.append(f"    if {fits.format(j=j)}:")
                lines.append(f"        out{j} = dest{j}")
                lines.append("    else:")
                lines.append(f"        out{j} = np.empty({shape}, np.{dtype})")
            elif init is None:
                lines.append(f"    out{j} = np.empty({shape}, np.{dtype})")
            else:
                lines.append(f"    out{j} = np.full({shape}, {init}, np.{dtype})")
        depth = 1
        for axis in range(ndim):
            lines.append("    " * depth + f"for i{axis} in range(d{axis}):")
            depth += 1
        lines += ["    " * depth + line for line in body]
        lines.append(f"    return {returned}")
        return "\n".join(lines) + "\n"

    # -- reductions
    def _reduction(self, var: Var, out: str, args: list[str], kind: str) -> list[str]:
        op = var.op
        if isinstance(op, fused_reduce.FusedReduce):
            placeholders, outputs = op.body.placeholders, op.body.outputs
            axes, keepdims = op.axis, op.keepdims
            patterns = [tuple(op.broadcastable[k]) for k in range(len(var.inputs))]
            ndim = len(patterns[0])
            expression, element = render_body(placeholders, outputs,
                                              [f"a{k}" for k in range(len(var.inputs))])
            element_value = element[0]
        else:
            axes, keepdims = op.axis, op.keepdims
            ndim = var.inputs[0].ndim
            patterns = [(False,) * ndim]
            expression, element_value = [], "a0"
        if any(len(p) != ndim for p in patterns):
            raise Unsupported("reduction inputs of different ranks")
        acc = "float64" if var.dtype.startswith("float") else "int64"
        init = {"sum": "0", "prod": "1", "max": "-np.inf", "min": "np.inf"}[kind]
        if acc == "int64" and kind in ("max", "min"):
            raise Unsupported("integer max/min reductions")
        n = len(patterns)
        loads = [f"a{k} = x{k}[{_index(patterns[k], ndim)}]" for k in range(n)]
        kept = ", ".join("0" if a in axes else f"i{a}" for a in range(ndim))
        update = {
            "sum": f"out0[{kept}] += {element_value}",
            "prod": f"out0[{kept}] *= {element_value}",
            "max": f"out0[{kept}] = max(out0[{kept}], {element_value})",
            "min": f"out0[{kept}] = min(out0[{kept}], {element_value})",
        }[kind]
        shape = "(" + "".join(("1" if a in axes else f"d{a}") + ", " for a in range(ndim)) + ")"
        final_shape = [f"d{a}" for a in range(ndim) if a not in axes]
        if keepdims:
            finish = f"out0.astype(np.{var.dtype})"
        elif final_shape:
            finish = f"out0.reshape(({', '.join(final_shape)},)).astype(np.{var.dtype})"
        else:
            finish = f"np.{var.dtype}(out0.reshape(-1)[0])"
        text = self._loop_function(patterns, ndim, [acc], loads + expression + [update], finish,
                                   init=init, out_shape=shape)
        name = self.helper(text)
        return [f"{out} = {name}({', '.join(args)})"]

    # -- views
    def _dimshuffle(self, var: Var, out: str, x: str) -> list[str]:
        order = var.op.new_order
        source = var.inputs[0]
        kept = [d for d in order if d != "x"]
        lines: list[str] = []
        value = x

        def step(expression: str) -> None:  # each stage its own name: numba types each once
            nonlocal value
            name = f"{out}_{len(lines)}"
            lines.append(f"{name} = {expression}")
            value = name

        dropped = [a for a in range(source.ndim) if a not in kept]
        if dropped:
            step(f"{value}[{', '.join('0' if a in dropped else ':' for a in range(source.ndim))}]")
        if not kept and "x" in order:  # every axis dropped (a scalar), then only new axes
            step(f"np.full({(1,) * len(order)}, {value})")
        elif kept:
            remaining = sorted(kept)
            permutation = tuple(remaining.index(d) for d in kept)
            if permutation != tuple(range(len(kept))):
                step(f"np.transpose({value}, {permutation})")
            for position, d in enumerate(order):
                if d == "x":
                    step(f"np.expand_dims({value}, {position})")
        return lines + [f"{out} = {value}"]


def _put_source(ndim: int, y: Var, verb: str, window: bool = False) -> str:
    """A helper writing (verb "=") or adding ("+=") y into the array `target` of rank `ndim`, y
    broadcast as numpy does (missing leading axes; axes typed size 1), its shape checked. With
    `window`, the target is the window `w` of the C-ordered array `target` starting at `s`,
    written through the array at an offset: a loop over the strided view does not vectorize
    (an LSTM gradient's gate columns: 1.4 us per 32 x 128 slice)."""
    lead = ndim - y.ndim
    pattern = tuple(True for _ in range(lead)) + tuple(d == 1 for d in y.type.shape)
    shaped = "w" if window else "target"
    lines = ["def HELPER(target, s, w, y):" if window else "def HELPER(target, y):"]
    checks = [f"y.shape[{a - lead}] != {shaped}.shape[{a}]" for a in range(ndim) if not pattern[a]]
    if checks:  # one raise (each is compiled as code of its own)
        lines.append(f"    if {' or '.join(checks)}:")
        lines.append("        raise ValueError('a value does not fit the rows it is written to')")
    depth = 1
    for a in range(ndim):
        lines.append("    " * depth + f"for i{a} in range({shaped}.shape[{a}]):")
        depth += 1
    source_index = ", ".join("0" if pattern[a] else f"i{a}" for a in range(lead, ndim))
    target_index = _index((False,) * ndim, ndim, "s" if window else None)
    value = f"y[{source_index}]" if y.ndim else "y"
    lines.append("    " * depth + f"target[{target_index}] {verb} {value}")
    return "\n".join(lines) + "\n"


def _transposed_dot_source() -> str:
    """a @ b as (bt @ a.T).T, bt the C-ordered transpose of b, into `dest` when it fits."""
    return "\n".join([
        "def HELPER(a, bt, dest):",
        "    ct = cblas.matmul(bt, a.T)",
        "    m, n = a.shape[0], bt.shape[0]",
        "    if dest.shape[0] == m and dest.shape[1] == n:",
        "        out = dest",
        "    else:",
        "        out = np.empty((m, n), ct.dtype)",
        "    for i0 in range(m):",
        "        for i1 in range(n):",
        "            out[i0, i1] = ct[i1, i0]",
        "    return out",
    ]) + "\n"


def _gemm_source(z_pattern: tuple, dtype: str) -> str:
    """beta * z + alpha * dot(x, y) with z broadcast along its axes typed size 1: z copied into
    the result, which BLAS then updates (beta applied there)."""
    index = ", ".join("0" if z_pattern[a] else f"i{a}" for a in range(2))
    checks = ["x.shape[1] != y.shape[0]"]
    checks += [f"z.shape[{a}] != {'x.shape[0]' if a == 0 else 'y.shape[1]'}"
               for a in range(2) if not z_pattern[a]]
    lines = [
        "def HELPER(z, alpha, x, y, beta):",
        f"    if {' or '.join(checks)}:",
        "        raise ValueError('gemm: the operands do not fit')",
        f"    p = np.empty((x.shape[0], y.shape[1]), np.{dtype})",
    ]
    lines += [
        "    for i0 in range(p.shape[0]):",
        "        for i1 in range(p.shape[1]):",
        f"            p[i0, i1] = z[{index}]",
        "    cblas.product(alpha, x, y, beta, p)",
        "    return p",
    ]
    return "\n".join(lines) + "\n"


def _offsets(starts: tuple) -> str:
    """A window's starts as a tuple of int64 values, not literals: numba types a literal tuple
    by its values, so each window would compile the helper again (about 0.15 s each)."""
    return "(" + "".join(f"np.int64({a}), " for a in starts) + ")"


def _index(pattern: tuple, ndim: int, starts: str | None = None) -> str:
    """The element index of an input with broadcast pattern `pattern` inside the loop nest;
    offset by the tuple named `starts` for an input read through a window."""
    if starts is not None:  # unsigned: numba then skips its negative-index wraparound, which
        # kept these loops from vectorizing (half the speed of a plain C-ordered read, measured)
        return ", ".join(f"np.uintp(i{a} + {starts}[{a}])" for a in range(ndim))
    return ", ".join("0" if pattern[a] else f"i{a}" for a in range(ndim))


def _rename(text: str, prefix: str) -> str:
    """Render_body's temporaries t0, t1 .. as <prefix>t0 ..: unique across inline scalar bodies."""
    return re.sub(r"\bt(\d+)\b", lambda m: f"{prefix}t{m.group(1)}", text)


def _blas_types(var: Var) -> bool:
    dtypes = {x.dtype for x in var.inputs} | {var.dtype}
    return len(dtypes) == 1 and var.dtype in _FLOATS and all(x.ndim <= 2 for x in var.inputs)


def _reducible(dtype: str) -> bool:
    return dtype in _FLOATS or dtype.startswith(("int", "uint"))


# --- the loop ------------------------------------------------------------------------------------


class CompiledLoop:
    """The generated loop of one Scan and what its wrapper passes to it."""

    __slots__ = ("function", "constants", "shared", "source", "warm", "broken")

    def __init__(self, function, constants: list, shared: list, source: str) -> None:
        self.function, self.constants, self.shared, self.source = function, constants, shared, source
        self.warm = False  # compiled for the argument types seen so far
        self.broken = False  # numba could not compile it: the per-step plan runs instead

    def run(self, op: Scan, n_steps, values: tuple) -> tuple:
        """The node's outputs; raises a bare exception on a shape problem (see the module doc)."""
        steps, seqs, buffers, lags, nonseqs = op.prepare(n_steps, values)
        # C order, copied once here if need be: each step's rows are then C-ordered arrays to
        # numba, which its loops vectorize, instead of strided views copied at every step
        seqs, last_rows = zip(*(_rows_in_order(s) for s in seqs)) if seqs else ((), ())
        nonseqs = [_c_order(x) for x in nonseqs]
        extra = list(self.constants) + [container.value for container in self.shared]
        outs = self.function(np.int64(steps), *seqs, *last_rows, *buffers, *nonseqs, *extra)
        done, nitsots = int(outs[0]), list(outs[1:])
        if done == 0:
            nitsots = [None] * op.n_nitsot
        return op.results(buffers, lags, nitsots, done)


def _rows_in_order(seq: np.ndarray) -> tuple[np.ndarray, np.int64]:
    """(seq in C order, -1), or (seq[::-1], its last row index) for a sequence that is a C-ordered
    array read backwards (a backward loop's sequences: the forward loop's outputs reversed): the
    loop reads its rows from the end instead of getting a reversed copy of every sequence."""
    if seq.ndim and seq.shape[0] > 1 and seq.strides[0] < 0:
        ahead = seq[::-1]
        if ahead.flags.c_contiguous:
            return ahead, np.int64(seq.shape[0] - 1)
    return _c_order(seq), np.int64(-1)


def _c_order(x: np.ndarray) -> np.ndarray:
    """x in C order (np.ascontiguousarray would make a 0-d array 1-d)."""
    return x if x.flags.c_contiguous else np.ascontiguousarray(x)


def compile_loop(op: Scan) -> CompiledLoop | None:
    """The whole loop of `op` as one numba function, or None when its body has another op."""
    inner_inputs = list(op.inner_inputs)
    outputs = list(op.inner_outputs)
    readers: dict[int, int] = {}
    for v in toposort(outputs, stop=set(inner_inputs)):
        for x in v.inputs:
            readers[id(x)] = readers.get(id(x), 0) + 1
    for v in outputs:
        readers[id(v)] = readers.get(id(v), 0) + 1
    writer = _Writer(readers)
    placeholder_names = [f"p{k}" for k in range(len(inner_inputs))]
    for p, name in zip(inner_inputs, placeholder_names):
        writer.names[id(p)] = name
    writer.invariant.update(id(p) for p in inner_inputs[len(inner_inputs) - op.n_nonseqs :])
    _plan_destinations(op, writer)
    constants, shared, lines = [], [], []
    nodes = toposort(outputs, stop=set(inner_inputs))
    try:
        for k, var in enumerate(nodes):
            if id(var) in writer.names:
                continue
            if not var.inputs:
                if isinstance(var.op, Constant):
                    constants.append(np.asarray(var.op.data))
                    writer.names[id(var)] = _leaf(f"c{len(constants) - 1}", var)
                elif isinstance(var.op, Shared):
                    shared.append(var.container)
                    writer.names[id(var)] = _leaf(f"s{len(shared) - 1}", var)
                else:
                    return None  # a stray input: the per-step plan raises the error
                writer.invariant.add(id(var))
                continue
            name = f"v{k}"
            lines.extend(writer.node(var, name))
            writer.names[id(var)] = name
    except Unsupported:
        return None
    source = _loop_source(op, writer, lines, placeholder_names, len(constants), len(shared))
    digest = hashlib.sha256(source.encode()).hexdigest()[:12]
    name = f"scan_{digest}"
    text = _PRELUDE + source.replace("LOOP", name)
    if os.environ.get("DEBUG") == "2":
        print(f"# numba scan loop {name}\n{text}")
    module = load_source(text)
    return CompiledLoop(getattr(module, name), constants, shared, text)


def _plan_destinations(op: Scan, writer: _Writer) -> None:
    """Each state's next row and each per-step output's row (from the second step on: the first
    step's value gives the output its shape), as the destination of the elementwise helper that
    computes it: no copy of the value into the buffer afterwards. A value that is two outputs
    goes to the first; the others copy it."""
    n_s, n_m = op.n_states, op.n_nitsot
    writer.n_states = n_s
    for k, out in enumerate(op.inner_outputs[: n_s + n_m]):
        if out.ndim == 0 or not out.inputs:
            continue
        if k < n_s:
            row = f"b{k}[(t + {op.lag(k)}) % size{k}]"
        else:
            row = f"(o{k - n_s}[t] if t > 0 else {writer._dummy(out.dtype, out.ndim)})"
        chain = []  # slice writes into one buffer: its first array is the output's row
        while (isinstance(out.op, subtensor.IncSubtensor) and len(out.inputs) == 2
               and out.inputs[0].type == out.type and writer.readers.get(id(out.inputs[0])) == 1):
            chain.append(id(out))
            out = out.inputs[0]
        if chain:
            writer.chains[k] = chain
        if isinstance(out.op, composite.Proj):  # output j of a multi-output helper
            key = (id(out.inputs[0]), out.op.index)
        else:
            key = (id(out), 0)
        writer.destinations.setdefault(key, (row, k))


def _written(writer: _Writer, k: int) -> bool:
    """Did the step write inner output k's value into its row itself?"""
    return k in writer.written and all(c in writer.in_place for c in writer.chains.get(k, ()))


def _leaf(name: str, var: Var) -> str:
    """A constant or shared argument; 0-d ones are read once as scalars."""
    return f"{name}[()]" if var.ndim == 0 else name


def _loop_source(op: Scan, writer: _Writer, body: list, names: list, n_const: int,
                 n_shared: int) -> str:
    """The module text: helpers, then the loop function named LOOP."""
    n_seqs, n_states, n_nitsot = op.n_seqs, op.n_states, op.n_nitsot
    params = ["n_steps"] + [f"q{k}" for k in range(n_seqs)] + [f"r{k}" for k in range(n_seqs)]
    params += [f"b{i}" for i in range(n_states)]
    params += [f"n{k}" for k in range(op.n_nonseqs)]
    params += [f"c{k}" for k in range(n_const)] + [f"s{k}" for k in range(n_shared)]
    flags = 'cache=True, error_model="numpy"'
    lines = [f"@numba.njit({flags})", f"def LOOP({', '.join(params)}):"]
    first_nonseq = len(names) - op.n_nonseqs
    scalar_nonseqs = []
    for k in range(op.n_nonseqs):
        if op.inner_inputs[first_nonseq + k].ndim == 0:
            scalar_nonseqs.append(f"    {names[first_nonseq + k]} = n{k}[()]")
        else:
            scalar_nonseqs.append(f"    {names[first_nonseq + k]} = n{k}")
    lines += scalar_nonseqs
    lines += [f"    {line}" for line in writer.prelude]
    for i in range(n_states):
        lines.append(f"    size{i} = b{i}.shape[0]")
    for key, name in writer.dummies.items():
        dtype, ndim = key.split()
        lines.append(f"    {name} = np.empty(({'0, ' * int(ndim)}), np.{dtype})")
    for m in range(n_nitsot):
        out = op.inner_outputs[n_states + m]
        zeros = ", ".join(["0"] * (out.ndim + 1))
        lines.append(f"    o{m} = np.empty(({zeros},), np.{out.dtype})")
    lines.append("    done = n_steps")
    lines.append("    for t in range(n_steps):")
    step = []
    for k in range(n_seqs):
        # r{k} >= 0: the sequence came reversed, passed in its own order: step t reads row r - t
        step.append(f"{names[k]} = q{k}[t if r{k} < 0 else r{k} - t]")
    position = n_seqs
    for i, taps in enumerate(op.state_taps):
        lag = op.lag(i)
        for d in taps:
            step.append(f"{names[position]} = b{i}[(t + {lag + d}) % size{i}]")
            position += 1
    step += body
    results = [writer.names[id(v)] for v in op.inner_outputs]
    for i in range(n_states):
        value = results[i]
        if op.inner_outputs[i].ndim:
            step.append(f"if {value}.shape != b{i}.shape[1:]:")
            step.append("    raise ValueError('scan: a state changed shape between steps')")
        if _written(writer, i):
            pass  # its helper wrote the row (or made a new array of another shape: raised above)
        elif op.inner_outputs[i].ndim:  # an array row: a loop (numba's setitem compiles slowly)
            put = writer.helper(_put_source(op.inner_outputs[i].ndim, op.inner_outputs[i], "="))
            step.append(f"{put}(b{i}[(t + {op.lag(i)}) % size{i}], {value})")
        else:
            step.append(f"b{i}[(t + {op.lag(i)}) % size{i}] = {value}")
    for m in range(n_nitsot):
        value = results[n_states + m]
        out = op.inner_outputs[n_states + m]
        if out.ndim:
            step.append("if t == 0:")
            step.append(f"    o{m} = np.empty((n_steps,) + {value}.shape, np.{out.dtype})")
            step.append(f"elif {value}.shape != o{m}.shape[1:]:")
            step.append("    raise ValueError('scan: an output changed shape between steps')")
        else:
            step.append("if t == 0:")
            step.append(f"    o{m} = np.empty((n_steps,), np.{out.dtype})")
        if out.ndim:
            put = writer.helper(_put_source(out.ndim, out, "="))
            if _written(writer, n_states + m):  # from the second step on, written there
                step.append("if t == 0:")
                step.append(f"    {put}(o{m}[0], {value})")
            else:
                step.append(f"{put}(o{m}[t], {value})")
        else:
            step.append(f"o{m}[t] = {value}")
    if op.until:
        step.append(f"if {results[-1]}:")
        step.append("    done = t + 1")
        step.append("    break")
    lines += ["        " + line for line in step]
    returned = ", ".join(["done"] + [f"o{m}" for m in range(n_nitsot)])
    lines.append(f"    return ({returned},)")
    # the helpers are called from the loop only: no Python-callable wrapper to compile for them
    # (about 0.3 s less per loop, measured)
    inner = flags + ", no_cpython_wrapper=True, no_cfunc_wrapper=True"
    helpers = [f"@numba.njit({inner})\n" + h for h in writer.helpers]
    return "\n\n".join(helpers + ["\n".join(lines) + "\n"])


def loop_runner(op: Scan, fallback):
    """The runner of a Scan node in mode numba: the compiled loop when its body allows, else
    `fallback` (the per-step plan's runner). A failed compiled run is run again by the fallback,
    which raises the error naming the output, the step and the shapes."""
    from ...graph.config import config

    loop = compile_loop(op) if config.numba__scan_loop else None
    if loop is None:
        return fallback

    def run(n_steps, *values):
        if loop.broken:
            return fallback(n_steps, *values)
        try:
            if loop.warm:
                return loop.run(op, n_steps, values)
            with warnings.catch_warnings():  # numba's compile-time notes (np.dot on strided views)
                warnings.simplefilter("ignore", NumbaPerformanceWarning)
                result = loop.run(op, n_steps, values)
            loop.warm = True
            return result
        except NumbaError as error:  # our generated code did not compile: a bug of ours
            loop.broken = True
            reason = re.sub(r"\x1b\[[0-9;]*m", "", str(error)).strip()  # numba colours its text
            warnings.warn(
                f"theanine: the compiled loop of {op} failed to compile ({reason[:200]}); "
                "it runs step by step instead. Please report this.",
                RuntimeWarning, stacklevel=2,
            )
            return fallback(n_steps, *values)
        except Exception as error:
            fallback(n_steps, *values)  # raises the precise error
            raise error

    run.loop = loop
    return run
