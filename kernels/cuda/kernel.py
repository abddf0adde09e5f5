"""A generated CUDA kernel (name, source, kind, the op it computes) and the error that shows it."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

_SIGNATURE = re.compile(
    r"__global__\s+(?:__launch_bounds__\([^)]*\)\s*)?void\s+(?:__launch_bounds__\([^)]*\)\s*)?"
    r"(\w+)\s*\(([^)]*)\)"
)


@dataclass(frozen=True)
class Kernel:
    """A kernel's CUDA C; `kind`: elementwise, reduction, gemm, softmax or other; `what`: its op."""

    name: str
    source: str
    kind: str = "other"
    what: str = ""

    def parameters(self) -> list[tuple[str, str]]:
        """(C type, name) of each parameter of the `__global__` function called `name`."""
        for match in _SIGNATURE.finditer(self.source):
            if match.group(1) == self.name:
                return parse_parameters(match.group(2))
        raise ValueError(f"kernel {self.name}: no `__global__ void {self.name}(...)` in its source")


def parse_parameters(text: str) -> list[tuple[str, str]]:
    """Split a C parameter list into (type, name) pairs; `__restrict__` is dropped from types."""
    params = []
    for part in text.split(","):
        part = part.strip()
        if not part:
            continue
        match = re.match(r"(.*?)(\w+)\s*$", part, re.S)
        if match is None or not match.group(1).strip():
            raise ValueError(f"cannot read the kernel parameter {part!r}")
        ctype = " ".join(match.group(1).replace("__restrict__", "").split())
        params.append((ctype, match.group(2)))
    return params


def kernel_name(body: str) -> str:
    """k_<sha12> of a kernel source written with the placeholder name KERNEL."""
    return "k_" + hashlib.sha256(body.encode()).hexdigest()[:12]


def numbered(source: str) -> str:
    """The source with right-aligned line numbers, as compile errors show it."""
    lines = source.splitlines()
    width = len(str(len(lines)))
    return "\n".join(f"{k:>{width}} | {line}" for k, line in enumerate(lines, 1))


class CudaCompileError(RuntimeError):
    """A generated kernel failed to compile: the message shows its op, numbered source and log."""


def compile_error(compiler: str, kernel: Kernel, log: str) -> CudaCompileError:
    """The error for `kernel` failing under `compiler` (nvcc, g++) with output `log`."""
    what = f" generated for {kernel.what}" if kernel.what else ""
    return CudaCompileError(
        f"{compiler} failed to compile kernel {kernel.name}{what}:\n"
        f"{numbered(kernel.source)}\n--- {compiler} output ---\n{log.strip()}"
    )
