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
        + [f'extern "C" __global__ void __launch_bounds__({bounds}) KERNEL(\n    {signature}) {{']
        + [f"  {line}" if line else "" for line in body]
        + ["}", ""]
    )
