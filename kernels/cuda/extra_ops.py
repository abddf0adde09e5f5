"""CUDA lowering of ... (being written)."""

from __future__ import annotations


def lowering(var):
    """The lowering of `var` when this module generates its kernel, else None."""
    return None
