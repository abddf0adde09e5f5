"""The layout of a generated kernel's source: a comment naming its op, helpers, signature, body."""

from __future__ import annotations

from typing import Sequence


def finish(
    comment: str, helpers: Sequence[str], bounds: int, params: Sequence[str], body: Sequence[str]
) -> str:
    """The kernel source with the placeholder name KERNEL (replaced by k_<sha12> of this text)."""
    head = [f"// {line}" for line in comment.splitlines() or [""]]
    signature = ",\n    ".join(params)
    return "\n".join(
        head
        + list(helpers)
        # min 1 block per SM: ptxas otherwise caps registers to chase occupancy and spills
        # around the slow-path calls of double division and sqrt
        + [f'extern "C" __global__ void __launch_bounds__({bounds}, 1) KERNEL(']
        + [f"    {signature}) {{"]
        + [f"  {line}" if line else "" for line in body]
        + ["}", ""]
    )
