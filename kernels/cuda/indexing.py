"""Basic indexing (slices, integers, newaxis) as a strided-copy kernel; the host finds the view."""

from __future__ import annotations

from typing import Sequence

import numpy as np

from ...graph.ops.subtensor import Subtensor, numpy_key
from ...graph.var import Var
from .elementwise import BLOCK, contiguous_strides
from .kernel import Kernel, kernel_name
from .scalar import CTYPE, ctype
from .templates import finish


def basic_subtensor(var: Var) -> bool:
    """True for x[key] with only slices, integers and newaxis (a strided view of x)."""
    if not isinstance(var.op, Subtensor) or var.dtype not in CTYPE:
        return False
    advanced = ("adv", "bool")
    return not any(isinstance(e, tuple) and e[0] in advanced for e in var.op.idx)


def subtensor_kernel(var: Var) -> SubtensorLowering:
    """Copy the elements of a strided view of x (offset, sizes, strides known at launch)."""
    c = ctype(var.dtype)
    ndim = var.ndim
    params = [f"const {c}* __restrict__ x0", f"{c}* __restrict__ out0", "const long long n",
              "const long long offset"]
    params += [f"const long long {p}{a}" for a in range(ndim) for p in ("d", "s")]
    body = [
        "for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < n;",
        "     i += (long long)gridDim.x * blockDim.x) {",
        "  long long rest = i, at = offset;",
    ]
    body += [f"  at += (rest % d{a}) * s{a}; rest /= d{a};" for a in reversed(range(ndim))]
    body += ["  out0[i] = x0[at];", "}"]
    what = f"{var.op} of {var.inputs[0].type}"
    source = finish(what, [], BLOCK, params, body)
    name = kernel_name(source)
    return SubtensorLowering(Kernel(name, source.replace("KERNEL", name), "elementwise", what), var)


def view_of(shape: Sequence[int], idx: tuple, values: Sequence) -> tuple[int, tuple, tuple]:
    """(element offset, shape, element strides) of x[key] for a C-contiguous x of `shape`.

    numpy does the work on a stand-in that claims, but never reads, memory of one byte per element:
    basic indexing only computes a pointer and strides, and checks bounds.
    """
    base = np.zeros(1, dtype=np.uint8)
    stand_in = np.lib.stride_tricks.as_strided(base, shape=tuple(shape),
                                               strides=tuple(contiguous_strides(shape)))
    view = stand_in[numpy_key(idx, tuple(values)) + (Ellipsis,)]  # a 0-d view, never a scalar
    offset = view.__array_interface__["data"][0] - base.__array_interface__["data"][0]
    return offset, view.shape, view.strides


class SubtensorLowering:
    """Launches the copy: the index inputs arrive as host values (hence `host_indices`)."""

    host_indices = True

    def __init__(self, kernel: Kernel, var: Var) -> None:
        self.kernel, self.var = kernel, var

    def launch(self, device, module, inputs: Sequence):
        """Find the view on the host, then copy it on the device."""
        x, values = inputs[0], inputs[1:]
        offset, shape, strides = view_of(x.shape, self.var.op.idx, values)
        out = device.empty(shape, self.var.dtype)
        n = int(np.prod(shape, dtype=np.int64))
        if n:
            args = [x, out, np.int64(n), np.int64(offset)]
            args += [np.int64(v) for d, s in zip(shape, strides) for v in (d, s)]
            grid = min((n + BLOCK - 1) // BLOCK, device.max_grid)
            device.launch(module, self.kernel.name, grid, BLOCK, args)
        return out
