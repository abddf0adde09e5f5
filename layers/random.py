"""The numpy generator that initializers and noise layers draw from (Lasagne's `lasagne.random`)."""

from __future__ import annotations

import numpy as np

# Lasagne draws from numpy's global generator by default, so `np.random.seed(...)` makes a script
# reproducible; `set_rng(np.random.RandomState(seed))` gives the layers a generator of their own.
_rng = np.random


def get_rng():
    """The generator in use: `numpy.random` (the module) unless `set_rng` replaced it."""
    return _rng


def set_rng(new_rng) -> None:
    """Use `new_rng` (a `numpy.random.RandomState`, or anything with its methods) from now on."""
    global _rng
    if not all(hasattr(new_rng, name) for name in ("uniform", "normal", "randint")):
        raise TypeError(
            "set_rng expects a numpy.random.RandomState-like generator, "
            f"got {type(new_rng).__name__}"
        )
    _rng = new_rng
