"""Elementwise loop generation: one numba loop nest per fused Composite (or lone Elemwise node).

A kernel's source depends on the scalar body and on its calling pattern: `flat` (every input a
contiguous array of the output's size, or a single element) or `nd` (inputs broadcast as strided
views, one loop per axis); per input `v` (read per element) or `s` (one element, read once before
the loop). Each source holds a serial function and a `prange` one used above PARALLEL_SIZE elements.
The source is deterministic: arguments x0.., outputs out0.., temporaries t0.., function k_<sha12>.
"""

from __future__ import annotations

import hashlib
import os

import numpy as np

from ...graph.ops.composite import Composite, placeholder
from ...graph.var import Var
from .cache import load_source
from .scalar import render_body

# Below this many elements a loop runs on one thread. Measured on the 2-core benchmark machine when
# quiet (fused chain tanh(x*w+b)*sigmoid(y)+0.5*x**2, float32, medians): one thread against two,
# 2^16: 102 -> 63 us, 2^18: 315 -> 156 us, 2^20: 1.25 -> 0.58 ms, 2^22: 5.3 -> 3.1 ms. With the
# other core busy, waking a second thread can cost a scheduler tick (4-8 ms): set
# THEANINE_PARALLEL_SIZE higher on a shared machine. Fused reductions and random draws use it too.
PARALLEL_SIZE = int(os.environ.get("THEANINE_PARALLEL_SIZE", 1 << 15))

def _helpers_version() -> str:
    """A digest of special.py and cblas.py: generated kernels link their functions into their
    cached machine code, and numba's cache does not notice when a called function changes, so the
    digest is part of each kernel's source (and so of its content address)."""
    from . import cblas, special

    digest = hashlib.sha256()
    for module in (special, cblas):
        with open(module.__file__, "rb") as handle:
            digest.update(handle.read())
    return digest.hexdigest()[:16]


_PRELUDE = f"""# helpers {_helpers_version()}
import math

import numba
import numpy as np

from theanine.kernels.numba import cblas
from theanine.kernels.numba import special as S

"""


def scalar_graph(var: Var) -> tuple[tuple, tuple]:
    """(placeholders, outputs) of a Composite, or of a lone elementwise node as a one-op body."""
    if isinstance(var.op, Composite):
        return var.op.placeholders, var.op.outputs
    placeholders = tuple(placeholder(k, x.dtype) for k, x in enumerate(var.inputs))
    return placeholders, (Var(var.op, placeholders),)


def kernel_source(placeholders: tuple, outputs: tuple, ndim: int, pattern: str) -> tuple[str, str]:
    """(module source, kernel name) for one body, rank (0: flat loop) and input pattern."""
    n_in, n_out = len(placeholders), len(outputs)
    arguments = [f"a{k}" for k in range(n_in)]
    lines, results = render_body(placeholders, outputs, arguments)
    params = ", ".join([f"x{k}" for k in range(n_in)] + [f"out{k}" for k in range(n_out)])
    if ndim == 0:
        index, loops = "i", [("i", "out0.shape[0]")]
    else:
        index = ", ".join(f"i{d}" for d in range(ndim))
        loops = [(f"i{d}", f"out0.shape[{d}]") for d in range(ndim)]
    first = ", ".join(["0"] * max(ndim, 1))
    hoisted = [f"a{k} = x{k}[{first}]" for k in range(n_in) if pattern[k] == "s"]
    loaded = [f"a{k} = x{k}[{index}]" for k in range(n_in) if pattern[k] == "v"]
    stores = [f"out{k}[{index}] = {r}" for k, r in enumerate(results)]

    def function(name: str, parallel: bool) -> str:
        flags = "cache=True, error_model=\"numpy\"" + (", parallel=True" if parallel else "")
        text = [f"@numba.njit({flags})", f"def {name}({params}):"]
        text += [f"    {h}" for h in hoisted]
        depth = 1
        for level, (variable, bound) in enumerate(loops):
            ranged = "numba.prange" if parallel and level == 0 else "range"
            text.append("    " * depth + f"for {variable} in {ranged}({bound}):")
            depth += 1
        text += ["    " * depth + line for line in loaded + lines + stores]
        return "\n".join(text) + "\n"

    body = function("KERNEL", False) + "\n\n" + function("KERNEL_parallel", True)
    name = "k_" + hashlib.sha256(body.encode()).hexdigest()[:12]
    return _PRELUDE + "\n" + body.replace("KERNEL", name), name


class ElementwiseRunner:
    """Runs one fused node: checks and broadcasts shapes in Python, then calls its loop kernel."""

    __slots__ = ("placeholders", "outputs", "dtypes", "kernels", "single", "fixed")

    def __init__(self, var: Var) -> None:
        self.placeholders, self.outputs = scalar_graph(var)
        # per input, the axes typed broadcastable (static size 1): only those may broadcast (Theano)
        self.fixed = [tuple(d != 1 for d in x.type.shape) for x in var.inputs]
        self.dtypes = [out.dtype for out in self.outputs]
        self.single = len(self.outputs) == 1
        self.kernels: dict[tuple, tuple] = {}

    def kernel(self, ndim: int, pattern: str) -> tuple:
        """(serial, parallel) dispatchers for a rank and pattern, generated and loaded once."""
        key = (ndim, pattern)
        found = self.kernels.get(key)
        if found is None:
            source, name = kernel_source(self.placeholders, self.outputs, ndim, pattern)
            if os.environ.get("DEBUG") == "2":  # the generated source, as STYLE.md asks
                print(f"# numba kernel {name}\n{source}")
            module = load_source(source)
            found = self.kernels[key] = (getattr(module, name), getattr(module, name + "_parallel"))
        return found

    def __call__(self, *xs: np.ndarray):
        shape = broadcast_shape(xs, self.fixed)
        size = 1
        for d in shape:
            size *= d
        outs = [np.empty(shape, dtype) for dtype in self.dtypes]
        if size:
            self._fill(xs, shape, size, outs)
        return outs[0] if self.single else tuple(outs)

    def into(self, buffer: np.ndarray, *xs: np.ndarray):
        """The result written over `buffer` (a dead input, or a shared value's storage) when it
        has the result's shape and dtype and is a writeable C-contiguous array; else a new array.
        Elementwise loops read each element before writing it, so the buffer may be an input."""
        if not self.fits(buffer, xs):
            return self(*xs)
        shape = buffer.shape
        if buffer.size:
            self._fill(xs, shape, buffer.size, [buffer])
        return buffer

    def fits(self, buffer: np.ndarray, xs: list) -> bool:
        """Would `into(buffer, *xs)` write over the buffer (and not raise)?"""
        try:
            shape = broadcast_shape(xs, self.fixed)
        except ValueError:
            return False
        flags = buffer.flags
        return (
            self.single
            and buffer.shape == shape
            and buffer.dtype == self.dtypes[0]
            and flags.c_contiguous
            and flags.writeable
            and not overlaps(buffer, xs)
        )

    def _fill(self, xs: tuple, shape: tuple, size: int, outs: list) -> None:
        flat = all(x.size == 1 or (x.shape == shape and x.flags.c_contiguous) for x in xs)
        pattern = "".join("s" if x.size == 1 and size != 1 else "v" for x in xs)
        if flat:
            args = [x.reshape(-1) for x in xs] + [o.reshape(-1) for o in outs]
            serial, parallel = self.kernel(0, pattern)
        else:
            ones = (1,) * len(shape)
            args = [
                x.reshape(ones) if p == "s" else np.broadcast_to(x, shape)
                for x, p in zip(xs, pattern)
            ]
            args += outs
            serial, parallel = self.kernel(len(shape), pattern)
        (parallel if size >= PARALLEL_SIZE else serial)(*args)


def overlaps(buffer: np.ndarray, xs) -> bool:
    """Does an argument other than `buffer` itself view its memory (say x.T of the buffer x)?
    Then writing element i could change what a later element reads: no in-place write."""
    return any(x is not buffer and np.may_share_memory(x, buffer) for x in xs)


def broadcast_shape(xs: tuple, fixed: list) -> tuple:
    """The output shape; only axes typed broadcastable may broadcast (Theano), else ValueError."""
    shape = xs[0].shape
    for x in xs[1:]:
        if x.shape != shape:
            return _broadcast_slow(xs, fixed)
    return shape


def _broadcast_slow(xs: tuple, fixed: list) -> tuple:
    shape = []
    for axis in range(xs[0].ndim):
        size = None
        for x, kinds in zip(xs, fixed):
            n = x.shape[axis]
            if not kinds[axis] and n == 1:
                continue
            if size is None:
                size = n
            elif n != size:
                shapes = " and ".join(str(x.shape) for x in xs)
                raise ValueError(
                    f"elementwise: shapes {shapes} cannot be broadcast together (axis {axis}); "
                    "only axes typed broadcastable (static size 1) broadcast, as in Theano"
                )
        shape.append(1 if size is None else size)
    return tuple(shape)
