"""Weight penalties (Lasagne's `lasagne.regularization`): l1, l2 and sums over layers."""

from __future__ import annotations

from ..graph import tensor as T
from ..graph.var import Var
from .base import Layer
from .helper import get_all_params

__all__ = [
    "l1", "l2", "apply_penalty", "regularize_layer_params", "regularize_layer_params_weighted",
    "regularize_network_params",
]


def l1(x: Var) -> Var:
    """sum(|x|)."""
    return T.sum(abs(x))


def l2(x: Var) -> Var:
    """sum(x ** 2) (no factor 1/2, as Lasagne)."""
    return T.sum(T.sqr(x))


def apply_penalty(tensor_or_tensors, penalty, **kwargs) -> Var:
    """penalty(x) summed over a list of tensors, or penalty of one tensor."""
    if isinstance(tensor_or_tensors, (list, tuple)):
        return sum(penalty(x, **kwargs) for x in tensor_or_tensors)
    return penalty(tensor_or_tensors, **kwargs)


def regularize_layer_params(layer, penalty, tags=None, **kwargs) -> Var:
    """The penalty summed over the (by default regularizable) parameters of a layer or layers."""
    tags = {"regularizable": True} if tags is None else tags
    layers = [layer] if isinstance(layer, Layer) else layer
    params = [p for each in layers for p in each.get_params(**tags)]
    return apply_penalty(params, penalty, **kwargs)


def regularize_layer_params_weighted(layers: dict, penalty, tags=None, **kwargs) -> Var:
    """sum(coefficient * penalty of the layer's parameters) over a dict {layer: coefficient}."""
    tags = {"regularizable": True} if tags is None else tags
    return sum(
        coeff * apply_penalty(layer.get_params(**tags), penalty, **kwargs)
        for layer, coeff in layers.items()
    )


def regularize_network_params(layer, penalty, tags=None, **kwargs) -> Var:
    """The penalty summed over the (by default regularizable) parameters of the whole network."""
    tags = {"regularizable": True} if tags is None else tags
    return apply_penalty(get_all_params(layer, **tags), penalty, **kwargs)
