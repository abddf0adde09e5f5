"""Numba lowerings of graph/ops/random.py (being written; shape.py lists them as numpy steps)."""

from __future__ import annotations

LOWERINGS: dict = {}
NUMPY_STEPS: dict = {}
