"""Parameter initializers (Lasagne's `lasagne.init`): `X(...)(shape)` returns a floatX array."""

from __future__ import annotations

import numpy as np

from .random import get_rng
from .utils import floatX

__all__ = [
    "Initializer", "Normal", "Uniform", "Glorot", "GlorotNormal", "GlorotUniform", "He", "HeNormal",
    "HeUniform", "Constant", "Sparse", "Orthogonal",
]


class Initializer:
    """Base class: calling an initializer with a shape returns a sampled array of that shape."""

    def __call__(self, shape) -> np.ndarray:
        """Same as `sample(shape)`."""
        return self.sample(shape)

    def sample(self, shape) -> np.ndarray:
        """A floatX array of `shape`; subclasses define it."""
        raise NotImplementedError(f"{type(self).__name__} does not define sample(shape)")

    def __repr__(self) -> str:
        fields = ", ".join(f"{k}={v!r}" for k, v in vars(self).items())
        return f"{type(self).__name__}({fields})"


class Normal(Initializer):
    """Samples from a normal distribution with mean `mean` and standard deviation `std`."""

    def __init__(self, std: float = 0.01, mean: float = 0.0) -> None:
        self.std, self.mean = std, mean

    def sample(self, shape) -> np.ndarray:
        """Normal samples of `shape`."""
        return floatX(get_rng().normal(self.mean, self.std, size=shape))


class Uniform(Initializer):
    """Samples uniformly from [-range, range], from range=(low, high), or with a mean and std."""

    def __init__(self, range=0.01, std: float | None = None, mean: float = 0.0) -> None:  # noqa
        if std is not None:
            # a uniform on [a, b] has standard deviation (b - a) / sqrt(12)
            low, high = mean - np.sqrt(3) * std, mean + np.sqrt(3) * std
        elif isinstance(range, (tuple, list)):
            low, high = range
        else:
            low, high = -range, range
        self.range = (low, high)

    def sample(self, shape) -> np.ndarray:
        """Uniform samples of `shape`."""
        return floatX(get_rng().uniform(low=self.range[0], high=self.range[1], size=shape))


def _gain_value(gain) -> float:
    if gain == "relu":
        return float(np.sqrt(2))
    return float(gain)


class Glorot(Initializer):
    """Glorot/Xavier scaling: std = gain * sqrt(2 / ((fan_in + fan_out) * receptive_field))."""

    def __init__(self, initializer, gain=1.0, c01b: bool = False) -> None:
        self.initializer, self.gain, self.c01b = initializer, _gain_value(gain), c01b

    def sample(self, shape) -> np.ndarray:
        """Samples of `shape` from `initializer(std=...)` with the Glorot standard deviation."""
        shape = tuple(shape)
        if self.c01b:
            if len(shape) != 4:
                raise RuntimeError(f"with c01b=True, Glorot needs a 4-d shape, got {shape}")
            fan_in, fan_out, field = shape[0], shape[3], shape[1] * shape[2]
        else:
            if len(shape) < 2:
                raise RuntimeError(f"Glorot needs a shape of length >= 2, got {shape}")
            fan_in, fan_out, field = shape[0], shape[1], int(np.prod(shape[2:]))
        std = self.gain * np.sqrt(2.0 / ((fan_in + fan_out) * field))
        return self.initializer(std=std).sample(shape)


class GlorotNormal(Glorot):
    """Glorot scaling with normal samples."""

    def __init__(self, gain=1.0, c01b: bool = False) -> None:
        super().__init__(Normal, gain, c01b)


class GlorotUniform(Glorot):
    """Glorot scaling with uniform samples (Lasagne's default for weights)."""

    def __init__(self, gain=1.0, c01b: bool = False) -> None:
        super().__init__(Uniform, gain, c01b)


class He(Initializer):
    """He scaling: std = gain * sqrt(1 / fan_in)."""

    def __init__(self, initializer, gain=1.0, c01b: bool = False) -> None:
        self.initializer, self.gain, self.c01b = initializer, _gain_value(gain), c01b

    def sample(self, shape) -> np.ndarray:
        """Samples of `shape` from `initializer(std=...)` with the He standard deviation."""
        shape = tuple(shape)
        if self.c01b:
            if len(shape) != 4:
                raise RuntimeError(f"with c01b=True, He needs a 4-d shape, got {shape}")
            fan_in = int(np.prod(shape[:3]))
        elif len(shape) == 2:
            fan_in = shape[0]
        elif len(shape) > 2:
            fan_in = int(np.prod(shape[1:]))
        else:
            raise RuntimeError(f"He initialization needs a shape of length >= 2, got {shape}")
        return self.initializer(std=self.gain * np.sqrt(1.0 / fan_in)).sample(shape)


class HeNormal(He):
    """He scaling with normal samples."""

    def __init__(self, gain=1.0, c01b: bool = False) -> None:
        super().__init__(Normal, gain, c01b)


class HeUniform(He):
    """He scaling with uniform samples."""

    def __init__(self, gain=1.0, c01b: bool = False) -> None:
        super().__init__(Uniform, gain, c01b)


class Constant(Initializer):
    """Fills the array with `val`."""

    def __init__(self, val: float = 0.0) -> None:
        self.val = val

    def sample(self, shape) -> np.ndarray:
        """An array of `shape` filled with `val`."""
        return floatX(np.full(shape, self.val))


class Sparse(Initializer):
    """A 2-d weight matrix whose columns have `sparsity * rows` nonzero normal(0, std) entries."""

    def __init__(self, sparsity: float = 0.1, std: float = 0.01) -> None:
        self.sparsity, self.std = sparsity, std

    def sample(self, shape) -> np.ndarray:
        """A sparse matrix of the 2-d `shape`."""
        shape = tuple(shape)
        if len(shape) != 2:
            raise RuntimeError(f"Sparse initialization needs a 2-d shape, got {shape}")
        rows, columns = shape
        weights = floatX(np.zeros(shape))
        size = int(self.sparsity * rows)
        rng = get_rng()
        for column in range(columns):
            chosen = rng.permutation(rows)[:size]
            weights[chosen, column] = rng.normal(0.0, self.std, size=size)
        return weights


class Orthogonal(Initializer):
    """An (semi-)orthogonal matrix from the SVD of a normal sample, scaled by `gain`."""

    def __init__(self, gain=1.0) -> None:
        self.gain = _gain_value(gain)

    def sample(self, shape) -> np.ndarray:
        """Orthogonal rows or columns of `shape` flattened to 2-d (first axis by the rest)."""
        shape = tuple(shape)
        if len(shape) < 2:
            raise RuntimeError(f"Orthogonal needs a shape of length >= 2, got {shape}")
        flat = (shape[0], int(np.prod(shape[1:])))
        u, _, v = np.linalg.svd(get_rng().normal(0.0, 1.0, flat), full_matrices=False)
        q = u if u.shape == flat else v
        return floatX(self.gain * q.reshape(shape))
