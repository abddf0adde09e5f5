"""Gathers and scatters: advanced indexing, set/inc_subtensor (atomics), class selection, allocs.

Every indexing node here is planned on the host from the index values (host inputs): the plan is
a base offset, per output axis an element stride into x and a stride into the "advanced block"
(the broadcast integer/boolean index arrays, collapsed into one int64 vector of element offsets),
so one kernel shape (dtype, ndim) serves any mix of slices, integers, newaxis, arrays and masks.
Indices are checked (IndexError naming the bound and the value) before anything is written.

inc_subtensor with repeated indices sums as np.add.at: atomicAdd for float32/float64 and the 32-
and 64-bit integers; other dtypes run one launch per repetition rank (deterministic, in numpy's
order). set_subtensor with repeated indices keeps numpy's last write: the host drops all but the
last occurrence of each target (its offset becomes -1, which the kernel skips).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ...graph.ops import nnet, shape, shape_alloc
from ...graph.ops.subtensor import IncSubtensor, Subtensor, indexed_shape, numpy_key
from ...graph.type import TensorType
from ...graph.var import Var
from .device import DeviceArray
from .elementwise import BLOCK, contiguous_strides
from .indexing import basic_subtensor
from .kernel import Kernel, kernel_name
from .scalar import CTYPE, ctype
from .templates import finish

ATOMIC_DTYPES = ("float32", "float64", "int32", "uint32", "int64", "uint64")
# Recent small index uploads per device: (id(device), shape, bytes) -> (device, DeviceArray).
_INDEX_UPLOADS: OrderedDict = OrderedDict()
_CACHED_INDEX_BYTES = 1 << 16  # larger index vectors are sent every time
_CACHED_INDEXES = 8
_LOOP = [
    "for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < n;",
    "     i += (long long)gridDim.x * blockDim.x) {",
]


def _make(what: str, params: list, body: list, kind: str = "other") -> Kernel:
    source = finish(what, [], BLOCK, params, body)
    name = kernel_name(source)
    return Kernel(name, source.replace("KERNEL", name), kind, what)


def _coords(ndim: int, terms: Sequence[tuple[str, str]]) -> list[str]:
    """Lines splitting i into coordinates c{a} over d{a} and summing c{a} * stride into each name."""
    lines = ["  long long rest = i;"] if ndim else []
    for a in reversed(range(ndim)):
        split = f"rest % d{a}; rest /= d{a};" if a else "rest;"
        lines.append(f"  const long long c{a} = {split}")
        lines += [f"  {name} += c{a} * {prefix}{a};" for name, prefix in terms]
    return lines


def upload_index(device, values: np.ndarray) -> DeviceArray:
    """An int64 index vector on the device (kernels only read it). A training step's nodes send
    the same minibatch indices several times (SelectClass and its gradient, a gather and the
    scatter of its gradient): a recent small upload with the same bytes is reused instead."""
    values = np.ascontiguousarray(values, dtype=np.int64)
    if values.nbytes > _CACHED_INDEX_BYTES:
        return device.to_device(values)
    key = (id(device), values.shape, values.tobytes())
    found = _INDEX_UPLOADS.get(key)
    if found is not None and found[0] is device:
        _INDEX_UPLOADS.move_to_end(key)
        return found[1]
    array = device.to_device(values)
    _INDEX_UPLOADS[key] = (device, array)
    if len(_INDEX_UPLOADS) > _CACHED_INDEXES:
        _INDEX_UPLOADS.popitem(last=False)
    return array


# --- kernels --------------------------------------------------------------------------------------


def copy_kernel(src: str, dst: str, ndim: int) -> Kernel:
    """out[ooff + c . os] = (dst) x[xoff + c . xs] over a box of `ndim` sizes (casting copy)."""
    params = [
        f"const {ctype(src)}* __restrict__ x",
        f"{ctype(dst)}* __restrict__ out",
        "const long long n",
        "const long long xoff",
        "const long long ooff",
    ]
    params += [f"const long long {p}{a}" for p in ("d", "xs", "os") for a in range(ndim)]
    body = _LOOP + ["  long long at = xoff, to = ooff;"]
    body += _coords(ndim, [("at", "xs"), ("to", "os")])
    body += [f"  out[to] = ({ctype(dst)})x[at];", "}"]
    return _make(f"strided copy {src}[{ndim}-d box] -> {dst}", params, body)


def index_kernel(
    mode: str, src: str, dst: str, ndim: int, adv: bool, atomic: bool = False
) -> Kernel:
    """gather: out[i] = x[at(i)]; set / add: out[at(i)] = / += y[yo(i)] over the indexed box.

    at(i) = offset + sum c_a * s_a + adv[sum c_a * b_a]; an adv entry of -1 marks a skipped write.
    """
    t, s = ctype(dst), ctype(src)
    gather = mode == "gather"
    params = [
        f"const {s}* __restrict__ x" if gather else f"{t}* __restrict__ out",
        f"{t}* __restrict__ out" if gather else f"const {s}* __restrict__ y",
    ]
    if adv:
        params.append("const long long* __restrict__ adv")
    params += ["const long long n", "const long long offset"]
    prefixes = ["d", "s"] + (["b"] if adv else []) + ([] if gather else ["ys"])
    params += [f"const long long {p}{a}" for p in prefixes for a in range(ndim)]
    terms = [("at", "s")] + ([("blk", "b")] if adv else []) + ([] if gather else [("yo", "ys")])
    body = _LOOP + [
        "  long long "
        + ", ".join(f"{v} = {'offset' if v == 'at' else '0'}" for v, _ in terms)
        + ";"
    ]
    body += _coords(ndim, terms)
    if adv:
        body += [
            "  const long long o = adv[blk];",
            "  if (o < 0) continue;  // written by another launch (repeats)",
            "  at += o;",
        ]
    if gather:
        body.append(f"  out[i] = ({t})x[at];")
    elif mode == "set":
        body.append(f"  out[at] = ({t})y[yo];")
    elif atomic and dst in ("int64", "uint64"):  # CUDA adds 64-bit integers as unsigned
        body.append("  atomicAdd((unsigned long long*)&out[at], (unsigned long long)y[yo]);")
    elif atomic:
        body.append(f"  atomicAdd(&out[at], ({t})y[yo]);  // repeated indices accumulate")
    else:
        body.append(f"  out[at] += ({t})y[yo];")
    body.append("}")
    what = f"{mode} {'advanced ' if adv else ''}indexing of {src} into {dst}, {ndim}-d"
    return _make(what, params, body, "elementwise" if gather else "other")


def select_kernel(grad: bool, x_dtype: str, g_dtype: str) -> Kernel:
    """SelectClass: out[r] = x[r, label[r]]; its gradient: out[r, c] = c == label[r] ? g[r] : 0."""
    t = ctype(x_dtype)
    if grad:
        params = [
            f"const {ctype(g_dtype)}* __restrict__ g",
            "const long long* __restrict__ label",
            f"{t}* __restrict__ out",
            "const long long n",
            "const long long k",
        ]
        line = f"  out[i] = (i % k == label[i / k]) ? ({t})g[i / k] : ({t})0;"
    else:
        params = [
            f"const {t}* __restrict__ x",
            "const long long* __restrict__ label",
            f"{t}* __restrict__ out",
            "const long long n",
            "const long long k",
        ]
        line = "  out[i] = x[i * k + label[i]];"
    what = f"{'SelectClassGrad' if grad else 'SelectClass'} of {x_dtype} rows"
    return _make(what, params, _LOOP + [line, "}"], "elementwise")


def _fill_kernel(op: str, dtype: str) -> Kernel:
    """ARange: out[i] = start + i * delta; Eye: out[r, c] = c - r == k (n = rows * m)."""
    t = ctype(dtype)
    if op == "arange":
        params = [
            f"{t}* __restrict__ out",
            "const long long n",
            f"const {t} start",
            f"const {t} delta",
        ]
        line = f"  out[i] = start + ({t})i * delta;"
    else:
        params = [
            f"{t}* __restrict__ out",
            "const long long n",
            "const long long m",
            "const long long k",
        ]
        line = f"  out[i] = (i % m) - (i / m) == k ? ({t})1 : ({t})0;"
    return _make(f"{op} of {dtype}", params, _LOOP + [line, "}"], "elementwise")


# --- host-side planning of an index ---------------------------------------------------------------


@dataclass
class IndexPlan:
    """x[key] for a C-contiguous x: result shape, base offset, strides, the advanced block."""

    shape: tuple
    offset: int
    strides: list  # element stride into x per result axis (0 inside the advanced block)
    block: list  # stride into the advanced block per result axis (0 outside it)
    adv: np.ndarray | None  # int64 element offsets of the advanced block, C order (-1: skip)


def index_plan(shape_: Sequence[int], key: tuple) -> IndexPlan:
    """Plan numpy's x[key] (ints, slices, None, int arrays, bool masks) on a C-contiguous x."""
    strides = contiguous_strides(shape_)
    has_adv = any(isinstance(k, np.ndarray) and k.ndim > 0 for k in key)
    axes: list = []  # (size, stride), with "ADV" where the advanced block goes
    arrays: list = []  # (indices, axis size, stride, axis)
    positions: list = []
    offset, axis = 0, 0
    used = sum(
        k.ndim if isinstance(k, np.ndarray) and k.dtype == bool else k is not None for k in key
    )
    if used > len(shape_):
        raise IndexError(f"too many indices: {used} for an array of shape {tuple(shape_)}")
    for position, k in enumerate(key):
        if k is None:
            axes.append((1, 0))
            continue
        if isinstance(k, slice):
            start, stop, step = k.indices(shape_[axis])
            length = len(range(start, stop, step))
            offset += start * strides[axis] if length else 0
            axes.append((length, step * strides[axis]))
            axis += 1
            continue
        if isinstance(k, np.ndarray) and k.dtype == bool and k.ndim > 0:
            box = tuple(shape_[axis : axis + k.ndim])
            if k.shape != box:
                raise IndexError(
                    f"boolean index of shape {k.shape} does not match the indexed axes "
                    f"{axis}..{axis + k.ndim - 1} of shape {box}"
                )
            for j, ix in enumerate(np.nonzero(k)):
                arrays.append((ix, shape_[axis + j], strides[axis + j], axis + j))
            axis += k.ndim
        elif isinstance(k, np.ndarray) and k.ndim > 0:
            if k.dtype.kind not in "iu":
                raise IndexError(f"index arrays must be integers or booleans, got dtype {k.dtype}")
            arrays.append((k, shape_[axis], strides[axis], axis))
            axis += 1
        else:
            n, v = shape_[axis], int(k)
            if not -n <= v < n:
                raise IndexError(f"index {v} is out of bounds for axis {axis} with size {n}")
            v = v + n if v < 0 else v
            if not has_adv:
                offset += v * strides[axis]
                axis += 1
                continue
            arrays.append((np.asarray(v), n, strides[axis], axis))
            axis += 1
        positions.append(position)
        if len(positions) == 1:
            axes.append("ADV")
    axes += [(shape_[a], strides[a]) for a in range(axis, len(shape_))]
    if not positions:
        return IndexPlan(
            tuple(s for s, _ in axes),
            offset,
            [s for _, s in axes],
            [0] * len(axes),
            None,
        )
    try:
        block_shape = np.broadcast_shapes(*[ix.shape for ix, _, _, _ in arrays])
    except ValueError:
        shapes = " ".join(str(ix.shape) for ix, _, _, _ in arrays)
        raise IndexError(
            f"index arrays could not be broadcast together with shapes {shapes}"
        ) from None
    adv = np.zeros(block_shape, dtype=np.int64)
    for ix, n, stride, a in arrays:
        ix = ix.astype(np.int64, copy=False)
        bad = (ix < -n) | (ix >= n)
        if bad.any():
            raise IndexError(f"index {ix[bad].flat[0]} is out of bounds for axis {a} with size {n}")
        adv += np.where(ix < 0, ix + n, ix) * stride
    at = axes.index("ADV")
    rest = axes[:at] + axes[at + 1 :]
    inner = [(d, "B") for d in block_shape]
    adjacent = positions == list(range(positions[0], positions[-1] + 1))
    axes = rest[:at] + inner + rest[at:] if adjacent else inner + rest
    block_strides = iter(contiguous_strides(block_shape))
    return IndexPlan(
        tuple(d for d, _ in axes),
        offset,
        [0 if s == "B" else s for _, s in axes],
        [next(block_strides) if s == "B" else 0 for _, s in axes],
        adv.reshape(-1),
    )


def _ranks(offsets: np.ndarray) -> np.ndarray:
    """For each entry, how many earlier entries have the same value (0 for first occurrences)."""
    order = np.argsort(offsets, kind="stable")
    ordered = offsets[order]
    first = np.r_[True, ordered[1:] != ordered[:-1]] if ordered.size else np.zeros(0, bool)
    starts = np.maximum.accumulate(np.where(first, np.arange(ordered.size), 0))
    ranks = np.empty_like(order)
    ranks[order] = np.arange(ordered.size) - starts
    return ranks


def _grid(device, n: int) -> int:
    return min((n + BLOCK - 1) // BLOCK, device.max_grid)


def _ints(values) -> list:
    return [np.int64(v) for v in values]


def _copy(device, module, kernel: Kernel, x, out, dims, xs, os_, xoff=0, ooff=0) -> None:
    n = int(np.prod(dims, dtype=np.int64))
    if n:
        args = [x, out, np.int64(n), np.int64(xoff), np.int64(ooff)]
        device.launch(
            module,
            kernel.name,
            _grid(device, n),
            BLOCK,
            args + _ints([*dims, *xs, *os_]),
        )


def _broadcast_strides(shape_: Sequence[int], target: Sequence[int], what: str) -> list:
    """Element strides of a contiguous array of `shape_` read broadcast to `target` (numpy rules)."""
    lead = len(target) - len(shape_)
    if lead < 0 or any(s not in (1, t) for s, t in zip(shape_, target[lead:])):
        raise ValueError(f"cannot broadcast {what} of shape {tuple(shape_)} to {tuple(target)}")
    own = contiguous_strides(shape_)
    return [0] * lead + [0 if s == 1 else st for s, st in zip(shape_, own)]


# --- lowerings ------------------------------------------------------------------------------------


def _along_axis_key(shape_: tuple, indices, axis: int) -> tuple:
    """The numpy key of take_along_axis / put_along_axis: aranges, with `indices` at `axis`."""
    idx, ndim = np.asarray(indices), len(shape_)
    if idx.ndim != ndim:
        raise ValueError(
            f"take/put_along_axis: the indices have {idx.ndim} dimensions, the array has {ndim}"
        )
    key = [
        np.arange(n).reshape((1,) * a + (n,) + (1,) * (ndim - a - 1)) for a, n in enumerate(shape_)
    ]
    key[axis] = idx
    return tuple(key)


class GatherLowering:
    """x[key] with advanced indices (Subtensor), and Repeat, Roll, TakeAlongAxis as gathers."""

    def __init__(self, var: Var, host_inputs: tuple, ndim: int) -> None:
        self.var, self.host_inputs = var, host_inputs
        self.kernel = index_kernel("gather", var.inputs[0].dtype, var.dtype, ndim, True)

    def key(self, x: DeviceArray, values: Sequence) -> tuple[tuple, tuple]:
        """(the numpy key, the shape x is read as) from the host values of the index inputs."""
        op = self.var.op
        if isinstance(op, Subtensor):
            return numpy_key(op.idx, tuple(values)), x.shape
        if isinstance(op, shape_alloc.Repeat):
            positions = np.repeat(np.arange(x.shape[op.axis]), values[0])
            return (slice(None),) * op.axis + (positions,), x.shape
        if isinstance(op, shape_alloc.Roll):
            flat = op.axis is None
            n = x.size if flat else x.shape[op.axis]
            positions = (np.arange(n) - int(values[0])) % max(n, 1)
            return (
                ((positions,), (n,)) if flat else ((slice(None),) * op.axis + (positions,), x.shape)
            )
        return _along_axis_key(x.shape, values[0], op.axis), x.shape  # TakeAlongAxis

    def launch(self, device, module, inputs: Sequence):
        """Plan the index on the host (checking it), then gather on the device."""
        x = inputs[0]
        key, read_as = self.key(x, inputs[1:])
        plan = index_plan(read_as, key)
        shape_ = x.shape if isinstance(self.var.op, shape_alloc.Roll) else plan.shape
        out = device.empty(shape_, self.var.dtype)
        n = out.size
        if n == 0:
            return out
        dims = list(plan.shape)
        adv = upload_index(device, plan.adv)
        args = [x, out, adv, np.int64(n), np.int64(plan.offset)]
        args += _ints(dims + plan.strides + plan.block)
        device.launch(module, self.kernel.name, _grid(device, n), BLOCK, args)
        return out


class ScatterLowering:
    """IncSubtensor and PutAlongAxis: a copy of x, then y written or added at x[key] (atomics
    where repeated indices add up)."""

    def __init__(self, var: Var) -> None:
        self.var = var
        op = var.op
        x = var.inputs[0]
        if isinstance(op, IncSubtensor):
            y, rest = var.inputs[1], var.inputs[2:]
            self.host_inputs = tuple(range(2, len(var.inputs)))
            ndim = len(indexed_shape(x, op.idx, rest))
            adv = any(isinstance(e, tuple) and e[0] in ("adv", "bool") for e in op.idx)
            self.set = op.set_instead_of_inc
        else:  # PutAlongAxis: inputs (x, indices, values), np.add.at semantics
            y, ndim, adv, self.set = var.inputs[2], x.ndim, True, False
            self.host_inputs = (1,)
        mode = "set" if self.set else "add"
        t, s = x.dtype, y.dtype
        self.copy = copy_kernel(t, t, 1)
        self.plain = None if adv else index_kernel(mode, s, t, ndim, False)
        self.skipping = index_kernel(mode, s, t, ndim, True) if adv else None
        self.atomic = None
        if adv and mode == "add" and t in ATOMIC_DTYPES:
            self.atomic = index_kernel(mode, s, t, ndim, True, atomic=True)
        self.kernels = [k for k in (self.copy, self.plain, self.skipping, self.atomic) if k]

    def launch(self, device, module, inputs: Sequence):
        """Check and plan on the host, copy x, then scatter y (never touching x itself)."""
        x = inputs[0]
        if isinstance(self.var.op, IncSubtensor):
            y, key = inputs[1], numpy_key(self.var.op.idx, tuple(inputs[2:]))
        else:
            y, key = inputs[2], _along_axis_key(x.shape, inputs[1], self.var.op.axis)
        plan = index_plan(x.shape, key)
        ys = _broadcast_strides(y.shape, plan.shape, "the value")
        rounds = []
        if plan.adv is not None:
            ranks = _ranks(plan.adv)
            repeated = bool(ranks.size) and int(ranks.max()) > 0
            if self.set and repeated:  # numpy keeps the last write
                last = np.zeros(plan.adv.size, dtype=bool)
                order = np.argsort(plan.adv, kind="stable")
                ordered = plan.adv[order]
                last[order[np.r_[ordered[1:] != ordered[:-1], True]]] = True
                rounds = [(self.skipping, np.where(last, plan.adv, -1))]
            elif repeated and self.atomic is not None:
                rounds = [(self.atomic, plan.adv)]
            elif repeated:  # no atomics for this dtype: one launch per repetition rank
                rounds = [
                    (self.skipping, np.where(ranks == r, plan.adv, -1))
                    for r in range(int(ranks.max()) + 1)
                ]
            else:
                rounds = [(self.skipping, plan.adv)]
        out = device.empty(x.shape, self.var.dtype)
        _copy(device, module, self.copy, x, out, [x.size], [1], [1])
        n = int(np.prod(plan.shape, dtype=np.int64))
        if n == 0:
            return out
        head = [np.int64(n), np.int64(plan.offset)]
        if plan.adv is None:
            args = [out, y] + head + _ints(list(plan.shape) + plan.strides + ys)
            device.launch(module, self.plain.name, _grid(device, n), BLOCK, args)
        for kernel, adv in rounds:
            args = [out, y, upload_index(device, adv)] + head
            args += _ints(list(plan.shape) + plan.strides + plan.block + ys)
            device.launch(module, kernel.name, _grid(device, n), BLOCK, args)
        return out


class SelectLowering:
    """SelectClass and SelectClassGrad: labels checked on the host, then one gather kernel."""

    def __init__(self, var: Var) -> None:
        self.var = var
        self.grad = isinstance(var.op, nnet.SelectClassGrad)
        self.host_inputs = (2,) if self.grad else (1,)
        g_dtype = var.inputs[0].dtype
        self.kernel = select_kernel(self.grad, var.dtype, g_dtype)

    def launch(self, device, module, inputs: Sequence):
        """Check the labels' shape and range, upload them as int64, run the kernel."""
        if self.grad:
            g, x, labels = inputs
            rows = g.shape
        else:
            x, labels = inputs
            rows = x.shape[:-1]
        labels = np.asarray(labels)
        what = "SelectClassGrad" if self.grad else "SelectClass"
        if x.shape[:-1] != labels.shape or rows != labels.shape:
            raise ValueError(
                f"{what}: the distribution has shape {x.shape} but the labels have "
                f"shape {labels.shape}" + (f" and g {rows}" if self.grad else "")
            )
        k = x.shape[-1]
        if labels.size and (labels.min() < 0 or labels.max() >= k):
            bad = labels[(labels < 0) | (labels >= k)].flat[0]
            raise IndexError(f"class label {bad} is out of range for {k} classes")
        out = device.empty(x.shape if self.grad else rows, self.var.dtype)
        if out.size:
            label = upload_index(device, labels)
            first = g if self.grad else x
            args = [first, label, out, np.int64(out.size), np.int64(k)]
            device.launch(module, self.kernel.name, _grid(device, out.size), BLOCK, args)
        return out


class CopyLowering:
    """Copy, Alloc (a broadcast), Join (one copy per piece) and Tile (a broadcast box)."""

    def __init__(self, var: Var) -> None:
        self.var = var
        op, t = var.op, var.dtype
        self.host_inputs = (
            tuple(range(1, len(var.inputs))) if isinstance(op, shape_alloc.Alloc) else ()
        )
        if isinstance(op, shape.Join):
            self.kernels = [copy_kernel(x.dtype, t, var.ndim) for x in var.inputs]
        elif isinstance(op, shape_alloc.Tile):
            self.kernels = [copy_kernel(t, t, 2 * var.ndim)]
        else:
            self.kernels = [copy_kernel(var.inputs[0].dtype, t, var.ndim)]

    def launch(self, device, module, inputs: Sequence):
        """Allocate the output and launch the copies into it."""
        op, kernel = self.var.op, self.kernels[0]
        if isinstance(op, shape.Copy):
            (x,) = inputs
            out = device.empty(x.shape, self.var.dtype)
            own = contiguous_strides(x.shape)
            _copy(device, module, kernel, x, out, x.shape, own, own)
            return out
        if isinstance(op, shape_alloc.Alloc):
            value, dims = inputs[0], tuple(int(d) for d in inputs[1:])
            if any(d < 0 for d in dims):
                raise ValueError(f"alloc: negative dimensions are not allowed, got {dims}")
            xs = _broadcast_strides(value.shape, dims, "alloc: the value")
            out = device.empty(dims, self.var.dtype)
            _copy(device, module, kernel, value, out, dims, xs, contiguous_strides(dims))
            return out
        if isinstance(op, shape_alloc.Tile):
            (x,) = inputs
            ndim = self.var.ndim
            dims = (1,) * (ndim - len(x.shape)) + tuple(x.shape)
            reps = (1,) * (ndim - len(op.reps)) + tuple(op.reps)
            own = contiguous_strides(dims)
            box = [v for r, d in zip(reps, dims) for v in (r, d)]
            xs = [v for s in own for v in (0, s)]
            out = device.empty(tuple(r * d for r, d in zip(reps, dims)), self.var.dtype)
            _copy(device, module, kernel, x, out, box, xs, contiguous_strides(box))
            return out
        return self._join(device, module, inputs)

    def _join(self, device, module, inputs: Sequence):
        axis, first = self.var.op.axis, inputs[0].shape
        for x in inputs:
            if len(x.shape) != len(first) or any(
                a != axis and d != e for a, (d, e) in enumerate(zip(x.shape, first))
            ):
                shapes = ", ".join(str(v.shape) for v in inputs)
                raise ValueError(
                    f"concatenate along axis {axis}: shapes differ off that axis: {shapes}"
                )
        shape_ = list(first)
        shape_[axis] = sum(x.shape[axis] for x in inputs)
        out = device.empty(tuple(shape_), self.var.dtype)
        ostrides = contiguous_strides(shape_)
        start = 0
        for kernel, x in zip(self.kernels, inputs):
            own = contiguous_strides(x.shape)
            _copy(
                device,
                module,
                kernel,
                x,
                out,
                x.shape,
                own,
                ostrides,
                ooff=start * ostrides[axis],
            )
            start += x.shape[axis]
        return out


class FillLowering:
    """ARange and Eye: sizes from host scalars, values generated on the device."""

    def __init__(self, var: Var) -> None:
        self.var = var
        self.host_inputs = tuple(range(len(var.inputs)))
        self.arange = isinstance(var.op, shape_alloc.ARange)
        self.kernel = _fill_kernel("arange" if self.arange else "eye", var.dtype)

    def launch(self, device, module, inputs: Sequence):
        """Compute the length (or n, m) on the host and fill the output."""
        dtype = np.dtype(self.var.dtype)
        if self.arange:
            start, stop, step = (np.asarray(v).item() for v in inputs)
            if step == 0:
                raise ValueError("arange: step must not be zero")
            if all(isinstance(v, int) for v in (start, stop, step)):
                n = max(-((start - stop) // step), 0)
            else:
                n = max(int(np.ceil((stop - start) / step)), 0)
            first = dtype.type(start)
            delta = dtype.type(start + step) - first  # numpy's fill: start + i * delta
            out = device.empty((n,), dtype)
            args = [out, np.int64(n), first, delta]
        else:
            rows, m, k = (int(np.asarray(v)) for v in inputs)
            if rows < 0 or m < 0:
                raise ValueError(f"eye: negative dimensions are not allowed, got {rows} x {m}")
            out = device.empty((rows, m), dtype)
            n = rows * m
            args = [out, np.int64(n), np.int64(m), np.int64(k)]
        if n:
            device.launch(module, self.kernel.name, _grid(device, n), BLOCK, args)
        return out


_GATHERS = (shape_alloc.Repeat, shape_alloc.Roll, shape_alloc.TakeAlongAxis)
_COPIES = (shape.Copy, shape.Join, shape_alloc.Alloc, shape_alloc.Tile)


def lowering(var: Var):
    """The lowering of `var` when this module generates its kernel, else None."""
    op = var.op
    types = [var.type] + [x.type for x in var.inputs]
    if not all(isinstance(t, TensorType) and t.dtype in CTYPE for t in types):
        return None
    if isinstance(op, Subtensor) and not basic_subtensor(var):
        return GatherLowering(var, tuple(range(1, len(var.inputs))), var.ndim)
    if isinstance(op, (IncSubtensor, shape_alloc.PutAlongAxis)):
        return ScatterLowering(var)
    if isinstance(op, (nnet.SelectClass, nnet.SelectClassGrad)):
        return SelectLowering(var)
    if isinstance(op, _GATHERS):
        return GatherLowering(
            var,
            (1,),
            1 if isinstance(op, shape_alloc.Roll) and op.axis is None else var.ndim,
        )
    if isinstance(op, _COPIES):
        return CopyLowering(var)
    if isinstance(op, (shape_alloc.ARange, shape_alloc.Eye)):
        return FillLowering(var)
    return None
