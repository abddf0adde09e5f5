"""EmbeddingLayer: maps integer indices to learned vectors (rows of W)."""

from __future__ import annotations

from ..graph.var import Var
from . import init
from .base import Layer

__all__ = ["EmbeddingLayer"]


class EmbeddingLayer(Layer):
    """Looks up row `i` of W (input_size x output_size) for every integer index `i` of the input.

    >>> from theanine.layers import InputLayer, EmbeddingLayer
    >>> l_emb = EmbeddingLayer(InputLayer((None, 6)), input_size=10, output_size=4)
    >>> l_emb.output_shape, l_emb.W.get_value().shape
    ((None, 6, 4), (10, 4))
    """

    def __init__(
        self, incoming, input_size: int, output_size: int, W=init.Normal(), **kwargs
    ) -> None:
        super().__init__(incoming, **kwargs)
        self.input_size, self.output_size = input_size, output_size
        self.W = self.add_param(W, (input_size, output_size), name="W")

    def get_output_shape_for(self, input_shape: tuple) -> tuple:
        """The input shape followed by output_size."""
        return tuple(input_shape) + (self.output_size,)

    def get_output_for(self, input: Var, **kwargs) -> Var:  # noqa: A002
        """W[input]: one row of W per index (the input must have an integer dtype)."""
        if input.dtype[:3] not in ("int", "uin"):
            raise TypeError(
                f"EmbeddingLayer needs integer indices, got {input} of dtype {input.dtype}; "
                "declare the InputLayer with an integer input_var (T.imatrix())"
            )
        return self.W[input]
