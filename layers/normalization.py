"""Batch normalization (Lasagne's `layers.normalization`): BatchNormLayer and batch_norm."""

from __future__ import annotations

from ..graph import tensor as T
from ..graph.shared import SharedVariable
from ..graph.var import Var
from . import init, nonlinearities
from .base import Layer
from .dense import NonlinearityLayer

__all__ = ["BatchNormLayer", "batch_norm"]


def _alias(variable: SharedVariable) -> SharedVariable:
    """A new shared variable over the same storage (Theano's clone(share_inputs=False)): a
    default_update set on it runs only in functions whose graph reads this alias."""
    alias = SharedVariable(
        variable.get_value(borrow=True), name=variable.name, type_=variable.type,
        strict=variable.strict, allow_downcast=variable.allow_downcast, borrow=True,
    )
    alias.container = variable.container
    return alias


class BatchNormLayer(Layer):
    """Normalizes over `axes` (default: all but the second) with batch statistics in training and
    with running averages (updated with momentum `alpha`) when deterministic, then scales by gamma
    and shifts by beta.

    >>> from theanine.layers import InputLayer, BatchNormLayer
    >>> layer = BatchNormLayer(InputLayer((None, 3, 5, 4)))
    >>> [p.name for p in layer.get_params(trainable=True)], layer.gamma.get_value().shape
    (['beta', 'gamma'], (3,))
    """

    def __init__(self, incoming, axes="auto", epsilon: float = 1e-4, alpha: float = 0.1,
                 beta=init.Constant(0), gamma=init.Constant(1), mean=init.Constant(0),
                 inv_std=init.Constant(1), **kwargs) -> None:
        super().__init__(incoming, **kwargs)
        ndim = len(self.input_shape)
        if axes == "auto":
            axes = (0,) + tuple(range(2, ndim))
        elif isinstance(axes, int):
            axes = (axes,)
        axes = tuple(a % ndim for a in axes)
        self.axes, self.epsilon, self.alpha = axes, epsilon, alpha
        shape = tuple(n for axis, n in enumerate(self.input_shape) if axis not in axes)
        if any(n is None for n in shape):
            raise ValueError(
                f"BatchNormLayer needs known sizes on every axis it does not normalize over; "
                f"input shape {self.input_shape}, axes {axes}"
            )
        fixed = dict(trainable=False, regularizable=False)
        self.beta = None
        if beta is not None:
            self.beta = self.add_param(beta, shape, "beta", regularizable=False)
        self.gamma = None if gamma is None else self.add_param(gamma, shape, "gamma")
        self.mean = self.add_param(mean, shape, "mean", **fixed)
        self.inv_std = self.add_param(inv_std, shape, "inv_std", **fixed)
        self.get_output_kwargs = ["batch_norm_use_averages", "batch_norm_update_averages"]

    def get_output_for(self, input: Var, deterministic: bool = False,  # noqa: A002
                       batch_norm_use_averages=None, batch_norm_update_averages=None,
                       **kwargs) -> Var:
        """(input - mean) * gamma * inv_std + beta, with batch or running statistics."""
        batch_mean = input.mean(self.axes)
        batch_inv_std = T.inv(T.sqrt(input.var(self.axes) + self.epsilon))
        use_averages, update = batch_norm_use_averages, batch_norm_update_averages
        use_averages = deterministic if use_averages is None else use_averages
        update = not deterministic if update is None else update
        mean, inv_std = (self.mean, self.inv_std) if use_averages else (batch_mean, batch_inv_std)
        if update:
            stored = (self.mean, self.inv_std)
            if not all(isinstance(v, SharedVariable) for v in stored):
                raise TypeError(
                    "BatchNormLayer: updating the running averages needs mean and inv_std to be "
                    "shared variables; pass batch_norm_update_averages=False"
                )
            # As Lasagne: aliases of the stored statistics carry the update, and enter the graph
            # (as 0 * alias when unused), so only functions built from this output update them.
            running_mean, running_inv_std = _alias(self.mean), _alias(self.inv_std)
            running_mean.default_update = (1 - self.alpha) * running_mean + self.alpha * batch_mean
            running_inv_std.default_update = (
                (1 - self.alpha) * running_inv_std + self.alpha * batch_inv_std
            )
            if use_averages:  # the aliases hold the stored values (read before any update)
                mean, inv_std = running_mean, running_inv_std
            else:
                mean = mean + 0 * running_mean
                inv_std = inv_std + 0 * running_inv_std
        own_axes = iter(range(input.ndim - len(self.axes)))
        pattern = ["x" if axis in self.axes else next(own_axes) for axis in range(input.ndim)]
        beta = 0 if self.beta is None else self.beta.dimshuffle(*pattern)
        gamma = 1 if self.gamma is None else self.gamma.dimshuffle(*pattern)
        return (input - mean.dimshuffle(*pattern)) * (gamma * inv_std.dimshuffle(*pattern)) + beta


def batch_norm(layer: Layer, **kwargs) -> Layer:
    """Insert batch normalization after `layer`: its bias is removed, and its nonlinearity moves
    after the normalization (into a NonlinearityLayer)."""
    nonlinearity = getattr(layer, "nonlinearity", None)
    if nonlinearity is not None:
        layer.nonlinearity = nonlinearities.identity
    if getattr(layer, "b", None) is not None:
        del layer.params[layer.b]
        layer.b = None
    name = kwargs.pop("name", None) or (layer.name and f"{layer.name}_bn")
    layer = BatchNormLayer(layer, name=name, **kwargs)
    if nonlinearity is not None:
        layer = NonlinearityLayer(layer, nonlinearity, name=name and f"{name}_nonlin")
    return layer
