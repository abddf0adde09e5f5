"""The backend side of user kernels: numba functions and CUDA device functions, their errors.

Backends call these lazily (numba and the CUDA toolchain are imported only inside them):
`numba_call` compiles a scalar kernel's Python function and names it for a generated loop,
`cuda_function` emits a user kernel as a __device__ function the fused kernel calls, the custom-op
runners run registered implementations, and `explain_compile_error` turns a compiler's log into an
error naming the user kernel and the offending line of the user's own source.
"""

from __future__ import annotations

import linecache
import re
from typing import Sequence

import numpy as np

from ..graph.ops.user import KernelError, ScalarKernel, UserElemwise

_MARK = "// theanine user kernel "  # opens each user device function in generated CUDA source


# --- numba ----------------------------------------------------------------------------------------


def numba_call(op: ScalarKernel, dtype: str) -> str:
    """`S.u_<name>_<digest>`: the user's function compiled for `dtype`, reachable from a loop.

    Generated loops import theanine.kernels.numba.special as S, so the dispatcher is attached to
    that module under a name holding a digest of the function's code (a changed function gets a
    new name, so a cached loop never calls a stale one)."""
    import numba

    from . import user
    from .numba import special

    attribute = f"u_{op.name}_{user.function_digest(op.numba)}"
    dispatcher = getattr(special, attribute, None)
    if dispatcher is None:
        dispatcher = numba.njit(error_model="numpy")(op.numba)
    signature = (numba.from_dtype(np.dtype(dtype)),) * op.arity
    try:
        dispatcher.compile(signature)
    except Exception as error:  # numba's TypingError, UnsupportedError, ...
        raise KernelError(numba_failure(op.what, op.numba, dtype, error)) from None
    setattr(special, attribute, dispatcher)
    return f"S.{attribute}"


def numba_failure(what: str, fn, dtype: str, error: Exception) -> str:
    """The message for a function numba cannot compile: the kernel, the line, numba's reason."""
    text = re.sub(r"\x1b\[[0-9;]*m", "", str(error))  # numba colours its messages
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    # numba opens with the pipeline stage that failed; the line after it says why
    noise = ("Failed in", "File ", "- Resolution")
    reasons = [line for line in lines if not line.startswith(noise)]
    reason = reasons[0] if reasons else type(error).__name__
    where = ""
    for filename, line in re.findall(r'File "([^"]+)", line (\d+)', text):
        source = linecache.getline(filename, int(line)).strip()
        where = f'\n  File "{filename}", line {line}\n    {source}'
    name = getattr(fn, "__qualname__", repr(fn))
    return f"{what}: numba cannot compile {name} for {dtype} inputs: {reason.strip()}{where}"


class CustomNumbaRunner:
    """Runs a registered custom op in mode 'numba': njit(fn)(*inputs, *op fields), checked."""

    def __init__(self, var, fn) -> None:
        import numba
        from dataclasses import fields

        self.var = var
        self.fn = fn if hasattr(fn, "py_func") else numba.njit(fn)
        op = var.op
        dataclass = hasattr(op, "__dataclass_fields__")
        self.extra = tuple(getattr(op, f.name) for f in fields(op)) if dataclass else ()

    def __call__(self, *xs):
        from ..graph.evaluate import check_output

        try:
            out = self.fn(*xs, *self.extra)
        except Exception as error:
            if type(error).__module__.startswith("numba"):
                what = f"custom op {type(self.var.op).__name__}"
                dtype = ", ".join(np.asarray(x).dtype.name for x in xs)
                raise KernelError(numba_failure(what, self.fn.py_func, dtype, error)) from None
            raise
        return check_output(self.var, np.asarray(out))


# --- CUDA -----------------------------------------------------------------------------------------


def cuda_function(op, helpers: set) -> str:
    """The name of `op`'s __device__ function, emitted (via the HELPERS table) before the kernel."""
    from . import user
    from .cuda import scalar

    if isinstance(op, ScalarKernel):
        if op.cuda is None:
            raise KernelError(f"{op.what} has no cuda= code")
        name = f"u{user.level(op):02d}_{op.name}_{_digest(op.cuda)}"
        if name not in scalar.HELPERS:
            scalar.HELPERS[name] = _scalar_device_function(op, name)
    else:
        text, inner = _traced_device_function(op)
        name = f"u{user.level(op):02d}_{op.name}_{_digest(text)}"
        helpers.update(inner)
        if name not in scalar.HELPERS:
            scalar.HELPERS[name] = text.replace("NAME", name)
    helpers.add(name)
    return name


def _digest(text: str) -> str:
    import hashlib

    return hashlib.sha256(text.encode()).hexdigest()[:8]


def _scalar_device_function(op: ScalarKernel, name: str) -> str:
    params = op.params or tuple(f"x{k}" for k in range(op.arity))
    code = op.cuda.strip()
    statement = "return" in code or ";" in code
    body = code if statement else f"return ({code});"
    signature = ", ".join(f"const T {p}" for p in params)
    lines = body.splitlines()
    return "\n".join(
        [f"{_MARK}'{op.name}' (scalar kernel; its cuda source follows, from line 1)",
         f"template <class T> __device__ __forceinline__ T {name}({signature}) {{"]
        + [f"  {line}" for line in lines]
        + ["}"]
    )


def _traced_device_function(op: UserElemwise) -> tuple[str, set]:
    from .cuda.elementwise import scalar_body
    from .cuda.scalar import ctype

    lines, results, inner = scalar_body(op.placeholders, op.outputs)
    params = ", ".join(f"const {ctype(p.dtype)} a{k}" for k, p in enumerate(op.placeholders))
    out = ctype(op.outputs[0].dtype)
    text = "\n".join(
        [f"{_MARK}'{op.name}' (traced elementwise kernel)",
         f"__device__ __forceinline__ {out} NAME({params}) {{"]
        + [f"  {line}" for line in lines]
        + [f"  return {results[0]};", "}"]
    )
    return text, inner


def cuda_renders(var) -> bool:
    """May the CUDA backend render this user-kernel node inside a fused kernel?"""
    from .cuda.scalar import CTYPE, renders

    op = var.op
    dtypes = [var.dtype] + [x.dtype for x in var.inputs]
    if not all(str(d) in CTYPE for d in dtypes):
        return False
    if isinstance(op, ScalarKernel):
        return op.cuda is not None
    return all(renders(node) for node in op.nodes)


class CustomCudaLowering:
    """A registered custom op's kernel: the user's template, launched by its launch function."""

    def __init__(self, var, template: str, launch) -> None:
        from .cuda.kernel import Kernel, kernel_name
        from .cuda.scalar import ctype

        self.var, self.launch_config = var, launch
        what = f"custom op {type(var.op).__name__}"
        source = f"{_MARK}'{type(var.op).__name__}' (custom op template; scalar_t: {var.dtype})\n"
        # scalar_t is substituted, not typedef'd: launchers outside the kernel's namespace read
        # its parameter types
        source += re.sub(r"\bscalar_t\b", ctype(var.dtype), template.strip()) + "\n"
        name = kernel_name(source)
        self.kernel = Kernel(name, source.replace("KERNEL", name), "other", what)

    def launch(self, device, module, inputs: Sequence):
        """Allocate the output, check the configuration against the kernel, run it."""
        op = self.var.op
        what = f"custom op {type(op).__name__}"
        config = self.launch_config(op, *[tuple(x.shape) for x in inputs])
        if not isinstance(config, dict) or not {"grid", "block", "shape"} <= set(config):
            raise KernelError(
                f"{what}: launch must return a dict with grid, block, shape (and args), "
                f"got {config!r}"
            )
        extra = list(config.get("args", ()))
        params = self.kernel.parameters()
        expected = len(inputs) + 1 + len(extra)
        if len(params) != expected:
            raise KernelError(
                f"{what}: its kernel takes {len(params)} parameter(s), but the launch passes "
                f"{expected} ({len(inputs)} input(s), the output, {len(extra)} from args)"
            )
        out = device.empty(tuple(config["shape"]), self.var.dtype)
        tail = params[expected - len(extra) :]
        scalars = [_numpy_type(c)(a) for (c, _), a in zip(tail, extra)]
        if out.size:
            arguments = list(inputs) + [out] + scalars
            device.launch(module, self.kernel.name, config["grid"], config["block"], arguments)
        return out


def _numpy_type(ctype: str):
    base = ctype.replace("const", "").strip()
    table = {"int": np.int32, "long long": np.int64, "long": np.int64, "float": np.float32,
             "double": np.float64, "unsigned int": np.uint32, "bool": np.bool_}
    return table.get(base, np.int64)


# --- compile errors -------------------------------------------------------------------------------


def explain_compile_error(error: Exception) -> Exception:
    """`error` (a CudaCompileError), opened by the user kernel and line it points at."""
    text = str(error)
    source_lines = [m.group(1) for m in re.finditer(r"^\s*\d+ \| (.*)$", text, re.M)]
    log = text.split("output ---", 1)[-1]
    found = []
    for match in re.finditer(r"\.cu(?::(\d+):\d+:|\((\d+)\):)\s*(?:fatal )?error:?\s*(.*)", log):
        number = int(match.group(1) or match.group(2))
        owner = _owner(source_lines, number)
        if owner is not None:
            found.append((owner, number, match.group(3).strip()))
    if not found:
        return error
    (name, kind, start), number, message = found[0]
    offending = source_lines[number - 1].strip() if number <= len(source_lines) else ""
    line = number - start - 1
    head = (
        f"{kind} '{name}': its CUDA code does not compile: line {line} of its source:\n"
        f"    {offending}\n  error: {message}\n\n"
    )
    return type(error)(head + text)


def _owner(lines: list[str], number: int):
    """(kernel name, kind, line index of its marker) of the user function holding line `number`."""
    for index in range(min(number, len(lines)) - 1, -1, -1):
        line = lines[index]
        if line.startswith(_MARK):
            match = re.match(re.escape(_MARK) + r"'(\w+)' \((\w[\w ]*?)[;)]", line)
            if match is None:
                return None
            kind = {"scalar kernel": "scalar kernel", "traced elementwise kernel":
                    "elementwise kernel"}.get(match.group(2), "custom op")
            # a scalar kernel's source starts after its signature line; a template after the mark
            return match.group(1), kind, index + 1 if kind == "scalar kernel" else index
        if index < number - 1 and line.startswith("}") and not line.startswith("} "):
            return None  # left a function before finding a marker
    return None


def nvcc_check(function, archs: Sequence[str] = ("sm_80",)) -> list:
    """Compile a Function's kernels with nvcc; failures name the user kernel and line."""
    from .cuda.kernel import CudaCompileError
    from .cuda.nvcc import compile_kernels

    plan = function._plan
    try:
        return compile_kernels(plan.kernels(), archs)
    except CudaCompileError as error:
        raise explain_compile_error(error) from None
