"""Whole-network helpers (Lasagne's `layers.helper`): outputs, shapes, parameters and values."""

from __future__ import annotations

import warnings

import numpy as np

from .base import InputLayer, Layer, MergeLayer
from .utils import as_theano_expression, unique

__all__ = [
    "get_all_layers", "get_output", "get_output_shape", "get_all_params", "count_params",
    "get_all_param_values", "set_all_param_values",
]


def _incoming(layer: Layer) -> list:
    if isinstance(layer, MergeLayer):
        return [l for l in layer.input_layers if l is not None]
    previous = getattr(layer, "input_layer", None)
    return [] if previous is None else [previous]


def _as_list(layer_or_layers) -> tuple[list, bool]:
    if isinstance(layer_or_layers, (list, tuple)):
        return list(layer_or_layers), True
    return [layer_or_layers], False


def get_all_layers(layer, treat_as_input=None) -> list:
    """Every layer that `layer` (or a list of layers) depends on, inputs first, in the order a
    depth-first walk meets them; layers in `treat_as_input` are included but not looked through."""
    roots, _ = _as_list(layer)
    stop = set(treat_as_input or ())
    result, done = [], set()
    # iterative post-order walk: (layer, expanded) pairs, incoming layers visited left to right
    stack = [(root, False) for root in reversed(roots)]
    while stack:
        current, expanded = stack.pop()
        if current in done:
            continue
        if expanded or current in stop:
            done.add(current)
            result.append(current)
            continue
        stack.append((current, True))
        previous = [p for p in reversed(_incoming(current)) if p not in done]
        stack.extend((p, False) for p in previous)
    return result


def get_output(layer_or_layers, inputs=None, **kwargs):
    """The symbolic output of a layer (or a list of outputs for a list of layers).

    `inputs` replaces the input layers' variables: one expression (for a network with one input
    layer) or a dict {layer: expression}; extra keyword arguments (`deterministic=True`) reach every
    layer's get_output_for."""
    substitutes = inputs if isinstance(inputs, dict) else {}
    all_layers = get_all_layers(layer_or_layers, substitutes.keys())
    outputs = {
        l: l.input_var for l in all_layers if isinstance(l, InputLayer) and l not in substitutes
    }
    outputs.update((l, as_theano_expression(expr)) for l, expr in substitutes.items())
    if inputs is not None and not isinstance(inputs, dict):
        if len(outputs) != 1:
            raise ValueError(
                f"get_output() got one input expression for a network with {len(outputs)} "
                "input layers; pass a dict {input_layer: expression} instead"
            )
        (only,) = outputs
        outputs[only] = as_theano_expression(inputs)
    accepted = {"deterministic"}
    for layer in all_layers:
        if layer in outputs:
            continue
        if isinstance(layer, MergeLayer):
            missing = [i for i, l in enumerate(layer.input_layers) if l is None]
            if missing:
                raise ValueError(
                    f"get_output(): {layer!r} was built from shape tuples at inputs "
                    f"{missing}; give their expressions through inputs={layer: expression}"
                )
            layer_inputs = [outputs[l] for l in layer.input_layers]
        else:
            if layer.input_layer is None:
                raise ValueError(
                    f"get_output(): {layer!r} was built from a shape tuple, not a layer; give "
                    "its input through inputs={layer: expression} or get_output(layer, expression)"
                )
            layer_inputs = outputs[layer.input_layer]
        outputs[layer] = layer.get_output_for(layer_inputs, **kwargs)
        accepted.update(layer.get_output_kwargs)
    unused = set(kwargs) - accepted
    if unused:
        warnings.warn(
            f"get_output() was called with unused keyword arguments: {sorted(unused)}", stacklevel=2
        )
    roots, is_list = _as_list(layer_or_layers)
    results = [outputs[l] for l in roots]
    return results if is_list else results[0]


def get_output_shape(layer_or_layers, input_shapes=None):
    """The static output shape of a layer (or list of layers), optionally for other input shapes
    (one tuple for a single input layer, or a dict {layer: shape})."""
    roots, is_list = _as_list(layer_or_layers)
    if input_shapes is None:
        shapes = [l.output_shape for l in roots]
        return shapes if is_list else shapes[0]
    substitutes = input_shapes if isinstance(input_shapes, dict) else {}
    all_layers = get_all_layers(layer_or_layers, substitutes.keys())
    known = {l: l.shape for l in all_layers if isinstance(l, InputLayer) and l not in substitutes}
    known.update((l, tuple(s)) for l, s in substitutes.items())
    if not isinstance(input_shapes, dict):
        if len(known) != 1:
            raise ValueError(
                f"get_output_shape() got one input shape for a network with {len(known)} "
                "input layers; pass a dict {input_layer: shape} instead"
            )
        (only,) = known
        known[only] = tuple(input_shapes)
    for layer in all_layers:
        if layer not in known:
            if isinstance(layer, MergeLayer):
                shapes = [known[l] for l in layer.input_layers]
                known[layer] = tuple(layer.get_output_shape_for(shapes))
            else:
                known[layer] = tuple(layer.get_output_shape_for(known[layer.input_layer]))
    shapes = [known[l] for l in roots]
    return shapes if is_list else shapes[0]


def get_all_params(layer, unwrap_shared: bool = True, **tags) -> list:
    """The parameters of every layer under `layer`, without repeats, filtered by tags
    (`trainable=True`, `regularizable=True`, ...)."""
    params = []
    for each in get_all_layers(layer):
        params.extend(each.get_params(unwrap_shared=unwrap_shared, **tags))
    return unique(params)


def count_params(layer, **tags) -> int:
    """The number of scalar values in the parameters of the network (filtered by tags)."""
    return int(sum(np.prod(p.get_value(borrow=True).shape) for p in get_all_params(layer, **tags)))


def get_all_param_values(layer, **tags) -> list[np.ndarray]:
    """The values of `get_all_params(layer, **tags)`, as a list of numpy arrays (copies)."""
    return [p.get_value() for p in get_all_params(layer, **tags)]


def set_all_param_values(layer, values, **tags) -> None:
    """Set the parameters of `get_all_params(layer, **tags)` from a list of arrays, in order; the
    number of arrays and each shape must match."""
    params = get_all_params(layer, **tags)
    values = list(values)
    if len(values) != len(params):
        raise ValueError(
            f"set_all_param_values: got {len(values)} values for {len(params)} parameters"
        )
    for index, (param, value) in enumerate(zip(params, values)):
        have, given = param.get_value(borrow=True).shape, np.shape(value)
        if have != given:
            label = param.name or "unnamed"
            raise ValueError(
                f"set_all_param_values: parameter {index} ({label}) has shape {have}, "
                f"the value to set has shape {given}"
            )
    for param, value in zip(params, values):
        param.set_value(value)


