"""Tiled GEMM: alpha * (a @ b) + beta * z, batched (MatMul, TensorDot), Ger, fused epilogues.

One TILE x TILE block of threads per output tile, K walked in shared-memory tiles; operands are
read through element strides, so transposes and broadcast batches cost no copy. A batched GEMM
walks its batches along the grid's z axis. A Dot whose only reader is an elementwise Composite
(bias add, activation) can run as one kernel: `gemm_epilogue_kernel(dot_var, composite_var)`.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ...graph.ops import blas
from ...graph.ops import linalg as L
from ...graph.ops.composite import Composite, placeholder
from ...graph.ops.elemwise import Elemwise
from ...graph.type import TensorType
from ...graph.var import Var
from .device import DeviceArray
from .elementwise import BLOCK, contiguous_strides, scalar_body
from .elementwise import supported as elementwise_supported
from .kernel import Kernel, kernel_name
from .scalar import CTYPE, HELPERS, ctype
from .templates import finish

TILE = 16


def _plain_dtypes(var: Var) -> bool:
    dtypes = [x.dtype for x in var.inputs] + [var.dtype]
    return all(d in CTYPE and d != "bool" for d in dtypes)


def gemm_supported(var: Var) -> bool:
    """Dot of 1-d/2-d operands, MatMul (batched, broadcast batches) and Gemm, float or int."""
    if not _plain_dtypes(var):
        return False
    return isinstance(var.op, (L.Dot, L.MatMul, blas.Gemm))


def _tiles(c: str, a: str = "a", b: str = "b") -> list[str]:
    """acc = sum_k a[row, k] * b[k, col] over shared-memory tiles (a, b: pointers with strides)."""
    zero = f"({c})0"
    load_a = f"row < M && ka < K ? ({c}){a}[row * sa0 + ka * sa1] : {zero}"
    load_b = f"kb < K && col < N ? ({c}){b}[kb * sb0 + col * sb1] : {zero}"
    return [
        f"{c} acc = {zero};",
        f"for (long long k0 = 0; k0 < K; k0 += {TILE}) {{",
        "  const long long ka = k0 + threadIdx.x, kb = k0 + threadIdx.y;",
        f"  tile_a[threadIdx.y][threadIdx.x] = {load_a};",
        f"  tile_b[threadIdx.y][threadIdx.x] = {load_b};",
        "  __syncthreads();",
        f"  for (int k = 0; k < {TILE}; k++)",
        "    acc += tile_a[threadIdx.y][k] * tile_b[k][threadIdx.x];",
        "  __syncthreads();",
        "}",
    ]


def _head(c: str) -> list[str]:
    return [
        f"__shared__ {c} tile_a[{TILE}][{TILE} + 1];  // +1: no bank conflicts on column reads",
        f"__shared__ {c} tile_b[{TILE}][{TILE} + 1];",
        f"const long long row = (long long)blockIdx.y * {TILE} + threadIdx.y;",
        f"const long long col = (long long)blockIdx.x * {TILE} + threadIdx.x;",
    ]


def _operands(a_dtype: str, b_dtype: str) -> list[str]:
    return [
        f"const {ctype(a_dtype)}* __restrict__ a",
        f"const {ctype(b_dtype)}* __restrict__ b",
    ]


_SIZES = [f"const long long {n}" for n in ("M", "N", "K", "sa0", "sa1", "sb0", "sb1")]


def _scaled_params(z: Var, alpha: Var, beta: Var) -> list[str]:
    return [
        f"const {ctype(z.dtype)}* __restrict__ z",
        "const long long sz0",
        "const long long sz1",
        f"const {ctype(alpha.dtype)}* __restrict__ alpha",
        f"const {ctype(beta.dtype)}* __restrict__ beta",
    ]


def _scaled(c: str) -> str:
    return f"({c})alpha[0] * acc + ({c})beta[0] * ({c})z[row * sz0 + col * sz1]"


def _finish(what: str, params: list, body: list, helpers: Sequence[str] = ()) -> Kernel:
    source = finish(what, list(helpers), TILE * TILE, params, body)
    name = kernel_name(source)
    return Kernel(name, source.replace("KERNEL", name), "gemm", what)


def gemm_kernel(var: Var) -> GemmLowering:
    """The lowering of a Dot, MatMul (2-d or batched) or Gemm node."""
    op = var.op
    if isinstance(op, L.MatMul) and var.ndim > 2:
        return batched_gemm(var, var.inputs[0].dtype, var.inputs[1].dtype, var.ndim - 2)
    epilogue = isinstance(op, blas.Gemm)
    a_var, b_var = (var.inputs[2], var.inputs[3]) if epilogue else var.inputs
    c = ctype(var.dtype)
    params = _operands(a_var.dtype, b_var.dtype) + [f"{c}* __restrict__ out"] + _SIZES
    if epilogue:
        params += _scaled_params(var.inputs[0], var.inputs[1], var.inputs[4])
    result = _scaled(c) if epilogue else "acc"
    body = _head(c) + _tiles(c) + [f"if (row < M && col < N) out[row * N + col] = {result};"]
    what = f"{op} of {', '.join(str(x.type) for x in var.inputs)}"
    return GemmLowering(_finish(what, params, body), var)


def batched_gemm(var: Var, a_dtype: str, b_dtype: str, n_batch: int) -> GemmLowering:
    """out[t] = a[t] @ b[t] for each t of a batch of `n_batch` axes (broadcast by zero strides)."""
    c = ctype(var.dtype)
    params = _operands(a_dtype, b_dtype) + [f"{c}* __restrict__ out"] + _SIZES
    params.append("const long long batches")
    params += [f"const long long {p}{j}" for p in ("bd", "bsa", "bsb") for j in range(n_batch)]
    body = _head(c) + [
        "for (long long t = blockIdx.z; t < batches; t += gridDim.z) {",
        "  long long rest = t, oa = 0, ob = 0;",
    ]
    for j in reversed(range(n_batch)):
        body += [
            f"  const long long c{j} = rest % bd{j}; rest /= bd{j};",
            f"  oa += c{j} * bsa{j}; ob += c{j} * bsb{j};",
        ]
    body += ["  const auto* at = a + oa;", "  const auto* bt = b + ob;"]
    body += [f"  {line}" for line in _tiles(c, "at", "bt")]
    body += ["  if (row < M && col < N) out[(t * M + row) * N + col] = acc;", "}"]
    what = f"batched GEMM ({n_batch} batch axes) of {a_dtype} and {b_dtype} for {var.op}"
    return GemmLowering(_finish(what, params, body), var, n_batch)


def _matrix(shape: tuple, as_row: bool) -> tuple[int, int, int, int]:
    """(rows, cols, row stride, col stride) of a contiguous 1-d or 2-d operand."""
    if len(shape) == 2:
        return shape[0], shape[1], shape[1], 1
    return (1, shape[0], 0, 1) if as_row else (shape[0], 1, 1, 0)


def _launch_tiles(device, module, kernel: Kernel, m: int, n: int, args: list, batches: int = 1):
    if m and n and batches:
        grid = (
            (n + TILE - 1) // TILE,
            (m + TILE - 1) // TILE,
            min(batches, device.max_grid),
        )
        device.launch(module, kernel.name, grid, (TILE, TILE), args)


def _batch_strides(shape: tuple, batch: tuple) -> list[int]:
    """Element strides of a contiguous operand's batch axes over `batch` (0: broadcast)."""
    own = contiguous_strides(shape)[: len(shape) - 2]
    sizes = shape[: len(shape) - 2]
    lead = len(batch) - len(sizes)
    return [0] * lead + [0 if d == 1 else s for d, s in zip(sizes, own)]


class GemmLowering:
    """Launches the GEMM: vectors become 1-row or 1-column matrices; z broadcasts by strides."""

    def __init__(self, kernel: Kernel, var: Var, n_batch: int | None = None) -> None:
        self.kernel, self.var, self.n_batch = kernel, var, n_batch

    def launch(self, device, module, inputs: Sequence):
        """Allocate the product and run the kernel on a grid of output tiles."""
        if self.n_batch is not None:
            return self._batched(device, module, *inputs)
        epilogue = isinstance(self.var.op, blas.Gemm)
        a, b = (inputs[2], inputs[3]) if epilogue else inputs
        m, k, sa0, sa1 = _matrix(a.shape, as_row=True)
        k2, n, sb0, sb1 = _matrix(b.shape, as_row=False)
        if k != k2:
            raise ValueError(f"inner dimensions differ: {a.shape} . {b.shape} ({k} != {k2})")
        shape = tuple(a.shape[:-1]) + tuple(b.shape[1:])
        out = device.empty(shape, self.var.dtype)
        args = [a, b, out] + [np.int64(v) for v in (m, n, k, sa0, sa1, sb0, sb1)]
        if epilogue:
            z, alpha, beta = inputs[0], inputs[1], inputs[4]
            fits = len(z.shape) == len(shape) and all(zd in (1, d) for zd, d in zip(z.shape, shape))
            if not fits:
                raise ValueError(f"z of shape {z.shape} does not broadcast to the product {shape}")
            own = contiguous_strides(z.shape)
            strides = [0 if size == 1 else s for size, s in zip(z.shape, own)]
            # The kernel indexes z as (row, col); a 1-d product is one column (N == 1).
            sz0, sz1 = strides if len(strides) == 2 else (strides[0], 0)
            args += [z, np.int64(sz0), np.int64(sz1), alpha, beta]
        _launch_tiles(device, module, self.kernel, m, n, args)
        return out

    def _batched(self, device, module, a, b):
        """MatMul of stacks: batch axes broadcast as numpy's matmul does."""
        if a.shape[-1] != b.shape[-2]:
            raise ValueError(
                f"matmul: inner dimensions differ: {a.shape} @ {b.shape} "
                f"({a.shape[-1]} != {b.shape[-2]})"
            )
        try:
            batch = tuple(np.broadcast_shapes(a.shape[:-2], b.shape[:-2]))
        except ValueError:
            raise ValueError(f"matmul: batch dimensions cannot be broadcast: {a.shape} @ {b.shape}")
        batch = (1,) * (self.n_batch - len(batch)) + batch
        m, k, n = a.shape[-2], a.shape[-1], b.shape[-1]
        out = device.empty(batch + (m, n), self.var.dtype)
        batches = int(np.prod(batch, dtype=np.int64))
        args = [a, b, out] + [np.int64(v) for v in (m, n, k, k, 1, n, 1, batches)]
        strides = (
            list(batch),
            _batch_strides(a.shape, batch),
            _batch_strides(b.shape, batch),
        )
        args += [np.int64(v) for row in strides for v in row]
        _launch_tiles(device, module, self.kernel, m, n, args, batches)
        return out


# --- TensorDot: a (batched) GEMM over merged axis groups --------------------------------------


def _consecutive(axes: Sequence[int]) -> bool:
    return list(axes) == list(range(axes[0], axes[0] + len(axes))) if axes else True


class TensorDotLowering:
    """TensorDot as a batched GEMM: [batch, free, summed] of a times [batch, summed, free] of b.

    Axis groups that are consecutive in a contiguous operand merge into one stride; an operand
    whose groups do not is first copied into that order on the device (a strided-copy kernel).
    """

    def __init__(self, var: Var) -> None:
        from .scatter import copy_kernel  # scatter.py imports this module at its top

        op: L.TensorDot = var.op
        a, b = var.inputs
        nb, summed = op.batch, len(op.axes_a)
        free_a, free_b = op.free_axes(a.ndim, op.axes_a), op.free_axes(b.ndim, op.axes_b)
        self.var = var
        self.order_a = tuple(range(nb)) + free_a + tuple(op.axes_a)
        self.order_b = tuple(range(nb)) + tuple(op.axes_b) + free_b
        merges_a = _consecutive(free_a) and _consecutive(op.axes_a)
        merges_b = _consecutive(free_b) and _consecutive(op.axes_b)
        self.copy_a = None if merges_a else copy_kernel(a.dtype, a.dtype, a.ndim)
        self.copy_b = None if merges_b else copy_kernel(b.dtype, b.dtype, b.ndim)
        # (batch, rows, summed) axes of a and (batch, summed, cols) axes of b, as arranged
        self.groups_a = _split(self.order_a if merges_a else range(a.ndim), nb, len(free_a))
        self.groups_b = _split(self.order_b if merges_b else range(b.ndim), nb, summed)
        self.gemm = batched_gemm(var, a.dtype, b.dtype, 1)
        self.kernels = [k for k in (self.copy_a, self.copy_b, self.gemm.kernel) if k is not None]

    @staticmethod
    def _arranged(device, module, x, order: tuple, copy: Kernel | None) -> DeviceArray:
        """x itself, or (with a copy kernel) a contiguous copy of x transposed to `order`."""
        if copy is None:
            return x
        shape = tuple(x.shape[a] for a in order)
        out = device.empty(shape, x.dtype)
        n = int(np.prod(shape, dtype=np.int64))
        if n:
            own = contiguous_strides(x.shape)
            strides = [own[a] for a in order] + contiguous_strides(shape)
            args = [x, out, np.int64(n), np.int64(0), np.int64(0)]
            args += [np.int64(v) for v in (*shape, *strides)]
            grid = min((n + BLOCK - 1) // BLOCK, device.max_grid)
            device.launch(module, copy.name, grid, BLOCK, args)
        return out

    def launch(self, device, module, inputs: Sequence):
        """Arrange both operands, check the summed sizes, run one batched GEMM."""
        op, (a, b) = self.var.op, inputs
        nb = op.batch
        if a.shape[:nb] != b.shape[:nb]:
            raise ValueError(f"tensordot: batch sizes differ: {a.shape} and {b.shape}")
        summed_a = tuple(a.shape[i] for i in op.axes_a)
        summed_b = tuple(b.shape[i] for i in op.axes_b)
        if summed_a != summed_b:
            raise ValueError(
                f"tensordot: summed dimensions differ: {summed_a} of {a.shape} and "
                f"{summed_b} of {b.shape}"
            )
        a = self._arranged(device, module, a, self.order_a, self.copy_a)
        b = self._arranged(device, module, b, self.order_b, self.copy_b)
        (batches, sa_batch), (m, sa0), (k, sa1) = _merged(a.shape, self.groups_a)
        (_, sb_batch), (_, sb0), (n, sb1) = _merged(b.shape, self.groups_b)
        free = [a.shape[i] for i in self.groups_a[1]] + [b.shape[i] for i in self.groups_b[2]]
        out = device.empty(tuple(a.shape[:nb]) + tuple(free), self.var.dtype)
        args = [a, b, out] + [np.int64(v) for v in (m, n, k, sa0, sa1, sb0, sb1, batches)]
        args += [np.int64(v) for v in (batches, sa_batch, sb_batch)]
        _launch_tiles(device, module, self.gemm.kernel, m, n, args, batches)
        return out


def _split(order, first: int, second: int) -> tuple[tuple, tuple, tuple]:
    order = tuple(order)
    return order[:first], order[first : first + second], order[first + second :]


def _merged(shape: tuple, groups: Sequence[tuple]) -> list[tuple[int, int]]:
    """(size, element stride) of each group of consecutive axes of a contiguous array."""
    own = contiguous_strides(shape)
    merged = []
    for group in groups:
        size = int(np.prod([shape[a] for a in group], dtype=np.int64))
        merged.append((size, own[group[-1]] if group and size > 1 else 0))
    return merged


# --- Ger: a + alpha * outer(x, y) --------------------------------------------------------------


class GerLowering:
    """One elementwise kernel: out[r, c] = a[r, c] + alpha * x[r] * y[c] (a broadcasts)."""

    def __init__(self, var: Var) -> None:
        self.var = var
        a, alpha, x, y = var.inputs
        t = ctype(var.dtype)
        params = [
            f"const {ctype(a.dtype)}* __restrict__ a",
            f"const {ctype(alpha.dtype)}* __restrict__ alpha",
            f"const {ctype(x.dtype)}* __restrict__ x",
            f"const {ctype(y.dtype)}* __restrict__ y",
            f"{t}* __restrict__ out",
            "const long long n",
            "const long long cols",
            "const long long sa0",
            "const long long sa1",
        ]
        body = [
            "for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < n;",
            "     i += (long long)gridDim.x * blockDim.x) {",
            "  const long long r = i / cols, c = i % cols;",
            f"  out[i] = ({t})a[r * sa0 + c * sa1] + ({t})alpha[0] * (({t})x[r] * ({t})y[c]);",
            "}",
        ]
        what = f"Ger of {', '.join(str(v.type) for v in var.inputs)}"
        source = finish(what, [], BLOCK, params, body)
        name = kernel_name(source)
        self.kernel = Kernel(name, source.replace("KERNEL", name), "elementwise", what)

    def launch(self, device, module, inputs: Sequence):
        """Check a against the outer product's shape, then run the kernel."""
        a, alpha, x, y = inputs
        shape = (x.shape[0], y.shape[0])
        if len(a.shape) != 2 or any(d not in (1, s) for d, s in zip(a.shape, shape)):
            raise ValueError(
                f"ger: a of shape {a.shape} does not broadcast to the outer product {shape}"
            )
        out = device.empty(shape, self.var.dtype)
        n = shape[0] * shape[1]
        strides = [0 if d == 1 else s for d, s in zip(a.shape, contiguous_strides(a.shape))]
        if n:
            args = [a, alpha, x, y, out, np.int64(n), np.int64(shape[1])]
            args += [np.int64(s) for s in strides]
            grid = min((n + BLOCK - 1) // BLOCK, device.max_grid)
            device.launch(module, self.kernel.name, grid, BLOCK, args)
        return out


def extra_lowering(var: Var):
    """TensorDot and Ger lowerings (called from scatter.lowering), else None."""
    if not isinstance(var.type, TensorType) or not _plain_dtypes(var):
        return None
    if isinstance(var.op, L.TensorDot):
        return TensorDotLowering(var)
    if isinstance(var.op, blas.Ger):
        return GerLowering(var)
    return None


# --- the fused epilogue: act(alpha * a @ b + beta * z + bias...) in one kernel ------------------


class EpilogueLowering:
    """A GEMM whose result feeds an elementwise Composite, computed in the same kernel.

    `inputs` are the Vars whose values `launch` takes: the dot's inputs, then the composite's
    other inputs (bias rows, scalars, matrices: anything that broadcasts to the product).
    """

    def __init__(
        self,
        kernel: Kernel,
        dot: GemmLowering,
        composite: Var,
        inputs: tuple,
        extras: list,
        out_dtypes: list,
    ) -> None:
        self.kernel, self.dot, self.var, self.inputs = kernel, dot, composite, inputs
        self.extras, self.out_dtypes = extras, out_dtypes

    def launch(self, device, module, inputs: Sequence):
        """Run the GEMM with the composite's body applied to each result element."""
        n_dot = len(self.dot.var.inputs)
        dot_inputs, extras = list(inputs[:n_dot]), list(inputs[n_dot:])
        scaled = isinstance(self.dot.var.op, blas.Gemm)
        a, b = (dot_inputs[2], dot_inputs[3]) if scaled else dot_inputs
        if len(a.shape) != 2 or len(b.shape) != 2 or a.shape[1] != b.shape[0]:
            raise ValueError(
                f"fused GEMM: operands of shapes {a.shape} and {b.shape} do not "
                "make a matrix product"
            )
        m, k, n = a.shape[0], a.shape[1], b.shape[1]
        outs = [device.empty((m, n), d) for d in self.out_dtypes]
        args = [a, b] + outs + [np.int64(v) for v in (m, n, k, k, 1, n, 1)]
        if scaled:
            z, alpha, beta = dot_inputs[0], dot_inputs[1], dot_inputs[4]
            zs = _strides_2d(z.shape, (m, n), "z")
            args += [z, np.int64(zs[0]), np.int64(zs[1]), alpha, beta]
        for value in extras:
            strides = _strides_2d(value.shape, (m, n), "an epilogue input")
            args += [value, np.int64(strides[0]), np.int64(strides[1])]
        _launch_tiles(device, module, self.kernel, m, n, args)
        return tuple(outs) if len(outs) > 1 else outs[0]


def _strides_2d(shape: tuple, target: tuple, what: str) -> tuple[int, int]:
    lead = 2 - len(shape)
    if lead < 0 or any(d not in (1, t) for d, t in zip(shape, target[lead:])):
        raise ValueError(f"{what} of shape {shape} does not broadcast to the product {target}")
    own = [0] * lead + [0 if d == 1 else s for d, s in zip(shape, contiguous_strides(shape))]
    return own[0], own[1]


def _scalar_graph(var: Var) -> tuple[tuple, tuple] | None:
    """(placeholders, scalar outputs) of a Composite, or of a single supported Elemwise node."""
    if isinstance(var.op, Composite):
        return var.op.placeholders, var.op.outputs
    if not isinstance(var.op, Elemwise) or not elementwise_supported(var):
        return None
    placeholders = tuple(placeholder(k, x.dtype) for k, x in enumerate(var.inputs))
    return placeholders, (Var(var.op, placeholders),)


def gemm_epilogue_kernel(dot_var: Var, composite_var: Var) -> EpilogueLowering | None:
    """The fused kernel of `composite_var` (a Composite, or one Elemwise such as the Relu the
    pipeline leaves after a Gemm, reading the 2-d product `dot_var`: Dot, MatMul or Gemm),
    computing both in one launch; None when they cannot fuse. The caller checks that the
    composite is the product's only reader."""
    body = _scalar_graph(composite_var)
    if body is None or not isinstance(dot_var.type, TensorType):
        return None
    placeholders, scalar_outputs = body
    if not isinstance(dot_var.op, (L.Dot, L.MatMul, blas.Gemm)) or dot_var.ndim != 2:
        return None
    if not gemm_supported(dot_var) or not any(x is dot_var for x in composite_var.inputs):
        return None
    if any(x.ndim > 2 or x.dtype not in CTYPE for x in composite_var.inputs):
        return None
    dtypes = [o.dtype for o in scalar_outputs]
    if any(d not in CTYPE for d in dtypes):
        return None
    try:
        lines, results, helpers = scalar_body(placeholders, scalar_outputs)
    except (KeyError, ValueError, NotImplementedError):
        return None
    scaled = isinstance(dot_var.op, blas.Gemm)
    a_var, b_var = (dot_var.inputs[2], dot_var.inputs[3]) if scaled else dot_var.inputs
    c = ctype(dot_var.dtype)
    params = _operands(a_var.dtype, b_var.dtype)
    params += [f"{ctype(d)}* __restrict__ out{k}" for k, d in enumerate(dtypes)] + _SIZES
    if scaled:
        params += _scaled_params(dot_var.inputs[0], dot_var.inputs[1], dot_var.inputs[4])
    extras = [x for x in composite_var.inputs if x is not dot_var]
    unique_extras = list({id(x): x for x in extras}.values())
    for q, x in enumerate(unique_extras):
        params += [
            f"const {ctype(x.dtype)}* __restrict__ e{q}",
            f"const long long es{q}_0",
            f"const long long es{q}_1",
        ]
    body = _head(c) + _tiles(c) + ["if (row < M && col < N) {"]
    body.append(f"  const {c} product = {_scaled(c) if scaled else 'acc'};")
    position = {id(x): q for q, x in enumerate(unique_extras)}
    for p, x in enumerate(composite_var.inputs):
        dtype = placeholders[p].dtype
        if x is dot_var:
            body.append(f"  const {ctype(dtype)} a{p} = ({ctype(dtype)})product;")
        else:
            q = position[id(x)]
            body.append(
                f"  const {ctype(dtype)} a{p} = ({ctype(dtype)})e{q}"
                f"[row * es{q}_0 + col * es{q}_1];"
            )
    body += [f"  {line}" for line in lines]
    body += [f"  out{k}[row * N + col] = {r};" for k, r in enumerate(results)]
    body.append("}")
    what = f"{dot_var.op} fused with {composite_var.op}"
    kernel = _finish(what, params, body, [HELPERS[h] for h in sorted(helpers)])
    dot = GemmLowering(kernel, dot_var)
    return EpilogueLowering(
        kernel,
        dot,
        composite_var,
        tuple(dot_var.inputs) + tuple(unique_extras),
        unique_extras,
        dtypes,
    )
