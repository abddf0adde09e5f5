"""BLAS-shaped ops the specializer introduces: Gemm (also matrix-vector) and Ger."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..type import TensorType
from ..var import Op


@dataclass(frozen=True)
class Gemm(Op):
    """beta * z + alpha * dot(x, y) for a matrix x and a matrix or vector y; inputs (z, alpha, x, y, beta).

    z may broadcast (a bias row), but never enlarges the product's shape.
    """

    def infer_type(self, z, alpha, x, y, beta) -> TensorType:
        if x.ndim != 2 or y.ndim not in (1, 2) or alpha.ndim != 0 or beta.ndim != 0:
            raise TypeError(f"Gemm needs a matrix, a matrix or vector and scalars, got {x}, {y}, {alpha}, {beta}")
        product = (x.shape[0],) if y.ndim == 1 else (x.shape[0], y.shape[1])
        if z.ndim != len(product):
            raise TypeError(f"Gemm: z has {z.ndim} dimensions, the product has {len(product)}")
        dtype = np.result_type(z.dtype, alpha.dtype, x.dtype, y.dtype, beta.dtype).name
        shape = tuple(p if p is not None else (d if d != 1 else None) for p, d in zip(product, z.shape))
        return TensorType(dtype, shape)

    def perform(self, z, alpha, x, y, beta):
        dtype = np.result_type(z, alpha, x, y, beta)
        product = np.dot(x, y)
        out = alpha * product if alpha != 1 else product
        return np.asarray(out + (beta * z if beta != 1 else z), dtype=dtype)

    def perform_into(self, out, z, alpha, x, y, beta):
        """perform with the result written into `out` (which may be z itself: an in-place update)."""
        if out.dtype != np.result_type(z, alpha, x, y, beta):
            return self.perform(z, alpha, x, y, beta)
        product = np.dot(x, y)  # computed before out is touched, so out may also be x or y
        if alpha != 1:
            np.multiply(product, alpha, out=product, casting="unsafe")
        np.multiply(z, beta, out=out, casting="unsafe")
        return np.add(out, product, out=out)


@dataclass(frozen=True)
class Ger(Op):
    """a + alpha * outer(x, y); inputs (a, alpha, x, y)."""

    def infer_type(self, a, alpha, x, y) -> TensorType:
        if a.ndim != 2 or x.ndim != 1 or y.ndim != 1 or alpha.ndim != 0:
            raise TypeError(f"Ger needs a matrix, a scalar and two vectors, got {a}, {alpha}, {x}, {y}")
        dtype = np.result_type(a.dtype, alpha.dtype, x.dtype, y.dtype).name
        outer = TensorType(dtype, (x.shape[0], y.shape[0]))
        # a static size of `a` fixes an unknown outer size, unless it is 1 (then `a` broadcasts)
        shape = tuple(o if o is not None else (d if d != 1 else None) for o, d in zip(outer.shape, a.shape))
        return TensorType(dtype, shape)

    def perform(self, a, alpha, x, y):
        dtype = np.result_type(a, alpha, x, y)
        return np.asarray(a + alpha * np.outer(x, y), dtype=dtype)


@dataclass(frozen=True)
class MaxAndArgmax(Op):
    """(max, argmax) over `axis` in one pass; a multi-output node read through Proj."""

    axis: tuple
    keepdims: bool = False

    def make_type(self, inputs):
        from ..type import TupleType
        from .reduce import reduced_shape

        (x,) = inputs
        shape = reduced_shape(x.type.shape, self.axis, self.keepdims)
        return TupleType((TensorType(x.dtype, shape), TensorType("int64", shape)))

    def perform(self, x):
        axis = self.axis
        moved = np.moveaxis(x, axis, tuple(range(x.ndim - len(axis), x.ndim)))
        flat = moved.reshape(moved.shape[: x.ndim - len(axis)] + (-1,))
        index = np.argmax(flat, axis=-1)
        best = np.take_along_axis(flat, index[..., None], axis=-1)[..., 0]
        if self.keepdims:
            shape = tuple(1 if a in axis else n for a, n in enumerate(x.shape))
            best, index = best.reshape(shape), index.reshape(shape)
        return np.asarray(best, dtype=x.dtype), np.asarray(index, dtype="int64")

