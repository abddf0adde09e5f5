"""Noise layers active in training only: DropoutLayer, GaussianNoiseLayer (off if deterministic)."""

from __future__ import annotations

from ..graph import tensor as T
from ..graph.var import Var
from .base import Layer
from .random import get_rng

__all__ = [
    "DropoutLayer", "dropout", "dropout_channels", "spatial_dropout", "dropout_locations",
    "GaussianNoiseLayer",
]


class _RandomLayer(Layer):
    """A layer with its own random stream, seeded from `layers.random.get_rng()` at construction."""

    def __init__(self, incoming, **kwargs) -> None:
        super().__init__(incoming, **kwargs)
        # the seed is drawn now (so that set_rng/np.random.seed make networks reproducible); the
        # stream itself is built on first use
        self._seed = int(get_rng().randint(1, 2147462579))
        self._stream = None

    @property
    def _srng(self):
        if self._stream is None:
            from ..graph import random as graph_random  # written after this module; imported late

            self._stream = graph_random.RandomStreams(self._seed)
        return self._stream


class DropoutLayer(_RandomLayer):
    """Sets each value to zero with probability `p` (scaling the rest by 1 / (1 - p) if `rescale`);
    axes in `shared_axes` share one mask value. Returns the input unchanged when deterministic.

    >>> from theanine.layers import InputLayer, DropoutLayer
    >>> DropoutLayer(InputLayer((None, 10)), p=0.2).output_shape
    (None, 10)
    """

    def __init__(self, incoming, p=0.5, rescale: bool = True, shared_axes=(), **kwargs) -> None:
        super().__init__(incoming, **kwargs)
        if not isinstance(p, Var) and not 0 <= p < 1:
            raise ValueError(f"DropoutLayer: p must be in [0, 1), got {p}")
        self.p, self.rescale, self.shared_axes = p, rescale, tuple(shared_axes)

    def get_output_for(self, input: Var, deterministic: bool = False, **kwargs) -> Var:  # noqa
        """input * mask (rescaled) in training; input when deterministic or p == 0."""
        if deterministic or (not isinstance(self.p, Var) and self.p == 0):
            return input
        retain = 1 - self.p
        if self.rescale:
            input = input / retain
        axes = {a % input.ndim for a in self.shared_axes}
        mask_shape = tuple(1 if a in axes else input.shape[a] for a in range(input.ndim))
        mask = self._srng.binomial(mask_shape, p=retain, dtype=input.dtype)
        if axes:
            mask = T.patternbroadcast(mask, tuple(a in axes for a in range(input.ndim)))
        return input * mask


dropout = DropoutLayer


def dropout_channels(incoming, *args, **kwargs) -> DropoutLayer:
    """Dropout of whole channels: one mask value per (example, channel), shared over space."""
    ndim = len(getattr(incoming, "output_shape", incoming))
    kwargs["shared_axes"] = tuple(range(2, ndim))
    return DropoutLayer(incoming, *args, **kwargs)


spatial_dropout = dropout_channels


def dropout_locations(incoming, *args, **kwargs) -> DropoutLayer:
    """Dropout of whole locations: one mask value per (example, position), shared over channels."""
    kwargs["shared_axes"] = (1,)
    return DropoutLayer(incoming, *args, **kwargs)


class GaussianNoiseLayer(_RandomLayer):
    """Adds zero-mean Gaussian noise of standard deviation `sigma`; nothing when deterministic.

    >>> from theanine.layers import InputLayer, GaussianNoiseLayer
    >>> GaussianNoiseLayer(InputLayer((None, 3)), sigma=0.5).output_shape
    (None, 3)
    """

    def __init__(self, incoming, sigma=0.1, **kwargs) -> None:
        super().__init__(incoming, **kwargs)
        self.sigma = sigma

    def get_output_for(self, input: Var, deterministic: bool = False, **kwargs) -> Var:  # noqa
        """input + normal(0, sigma) noise in training; input when deterministic or sigma == 0."""
        if deterministic or (not isinstance(self.sigma, Var) and self.sigma == 0):
            return input
        return input + self._srng.normal(input.shape, avg=0.0, std=self.sigma, dtype=input.dtype)
