"""Grid-stride kernels of Composite, Elemwise and DimShuffle nodes, broadcast by strides."""

from __future__ import annotations

from typing import Sequence

import numpy as np

from ...graph.ops.composite import Composite, placeholder
from ...graph.ops.elemwise import Elemwise
from ...graph.ops.shape import DimShuffle
from ...graph.var import Constant, Var, toposort
from .kernel import Kernel, kernel_name
from .scalar import HELPERS, ctype, literal, render, renders
from .templates import finish

BLOCK = 256


def scalar_body(placeholders: Sequence[Var], outputs: Sequence[Var]) -> tuple[list, list, set]:
    """(statements computing `outputs` from loaded arguments a0.., result names, helpers used)."""
    names = {id(p): f"a{k}" for k, p in enumerate(placeholders)}
    lines: list[str] = []
    helpers: set = set()
    for node in toposort(list(outputs)):
        if id(node) in names:
            continue
        if isinstance(node.op, Constant):
            names[id(node)] = literal(node.op.data, node.dtype)
            continue
        if not node.inputs:
            raise ValueError(f"elementwise body reads {node.describe()}, which is not an input")
        expression = render(node, [names[id(x)] for x in node.inputs], helpers)
        name = f"t{len(lines)}"
        lines.append(f"const {ctype(node.dtype)} {name} = {expression};")
        names[id(node)] = name
    return lines, [names[id(out)] for out in outputs], helpers


def _body_of(var: Var) -> tuple[tuple, tuple]:
    """(placeholders, scalar outputs) of the node: a Composite's own, or one op on placeholders."""
    op = var.op
    if isinstance(op, Composite):
        return op.placeholders, op.outputs
    placeholders = tuple(placeholder(k, x.dtype) for k, x in enumerate(var.inputs))
    if isinstance(op, DimShuffle):
        return placeholders, placeholders  # a strided copy: the launch permutes the strides
    return placeholders, (Var(op, placeholders),)


def elementwise_kernel(var: Var) -> ElementwiseLowering:
    """The kernel of an Elemwise or Composite node (outputs out0..), or of a DimShuffle."""
    placeholders, outputs = _body_of(var)
    in_dtypes = [x.dtype for x in var.inputs]
    out_dtypes = [o.dtype for o in outputs]
    if isinstance(var.op, DimShuffle):
        ndim = len(var.op.new_order)
    else:
        ndim = var.inputs[0].ndim if var.inputs else 0
    lines, results, helpers = scalar_body(placeholders, outputs)
    params = [f"const {ctype(d)}* __restrict__ x{k}" for k, d in enumerate(in_dtypes)]
    params += [f"{ctype(d)}* __restrict__ out{k}" for k, d in enumerate(out_dtypes)]
    params += ["const long long n"] + [f"const long long d{a}" for a in range(ndim)]
    params += [f"const long long s{k}_{a}" for k in range(len(in_dtypes)) for a in range(ndim)]
    body = [
        "for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < n;",
        "     i += (long long)gridDim.x * blockDim.x) {",
    ]
    if ndim:
        body.append("  long long rest = i;")
        for a in reversed(range(ndim)):
            if a:
                body.append(f"  const long long c{a} = rest % d{a}; rest /= d{a};")
            else:
                body.append("  const long long c0 = rest;")
    for k, d in enumerate(in_dtypes):
        offset = " + ".join(f"c{a} * s{k}_{a}" for a in range(ndim)) or "0"
        body.append(f"  const {ctype(d)} a{k} = x{k}[{offset}];")
    body += [f"  {line}" for line in lines]
    body += [f"  out{k}[i] = {result};" for k, result in enumerate(results)]
    body.append("}")
    what = str(var.op)
    helper_text = [HELPERS[h] for h in sorted(helpers)]
    source = finish(what, helper_text, BLOCK, params, body)
    name = kernel_name(source)
    kernel = Kernel(name, source.replace("KERNEL", name), "elementwise", what)
    return ElementwiseLowering(kernel, var, out_dtypes)


class ElementwiseLowering:
    """Launches an elementwise kernel: output shape, input strides (0 on broadcast axes), grid."""

    def __init__(self, kernel: Kernel, var: Var, out_dtypes: list) -> None:
        self.kernel, self.var, self.out_dtypes = kernel, var, out_dtypes

    def shapes(self, inputs: Sequence) -> tuple[tuple, list[list[int]]]:
        """The output shape and each input's element strides over the output's axes."""
        op = self.var.op
        if isinstance(op, DimShuffle):
            (x,) = inputs
            own = contiguous_strides(x.shape)
            shape = tuple(1 if d == "x" else x.shape[d] for d in op.new_order)
            strides = [0 if d == "x" or x.shape[d] == 1 else own[d] for d in op.new_order]
            return shape, [strides]
        shape = tuple(np.broadcast_shapes(*[x.shape for x in inputs])) if inputs else ()
        strides = []
        for x in inputs:
            own = contiguous_strides(x.shape)
            strides.append([0 if x.shape[a] == 1 else own[a] for a in range(len(shape))])
        return shape, strides

    def launch(self, device, module, inputs: Sequence):
        """Allocate the outputs and run the kernel; returns one DeviceArray or a tuple."""
        shape, strides = self.shapes(inputs)
        outputs = [device.empty(shape, d) for d in self.out_dtypes]
        n = int(np.prod(shape, dtype=np.int64))
        if n:
            grid = min((n + BLOCK - 1) // BLOCK, device.max_grid)
            args = list(inputs) + outputs + [np.int64(n)] + [np.int64(d) for d in shape]
            args += [np.int64(s) for row in strides for s in row]
            device.launch(module, self.kernel.name, grid, BLOCK, args)
        multi = isinstance(self.var.op, Composite) and len(self.var.op.outputs) > 1
        return tuple(outputs) if multi else outputs[0]


def contiguous_strides(shape: Sequence[int]) -> list[int]:
    """Element strides of a C-contiguous array."""
    strides, step = [], 1
    for size in reversed(shape):
        strides.append(step)
        step *= size
    return strides[::-1]


def supported(var: Var) -> bool:
    """May this elementwise node be fused into a CUDA Composite (its op and dtypes render)?"""
    if isinstance(var.op, Composite):
        return all(renders(node) for node in var.op.nodes)
    return isinstance(var.op, Elemwise) and renders(var)
