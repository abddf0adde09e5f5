"""The rewrite pipeline: the one function that orders every graph pass before backend lowering."""

from __future__ import annotations

from ..graph.var import Var


def optimize(outputs: list[Var], mode: str) -> list[Var]:
    """Rewrite `outputs` for `mode`; returns a list of the same length (passes come later)."""
    # canonicalize, fold constants, merge, simplify, stabilize, specialize, fuse, inplace
    return list(outputs)
