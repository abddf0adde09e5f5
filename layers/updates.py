"""Gradient-descent update rules (Lasagne's `lasagne.updates`): each returns an OrderedDict
{shared variable: new value expression} for `theanine.function(..., updates=...)`."""

from __future__ import annotations

from collections import OrderedDict

import numpy as np

from ..compiler.autodiff import grad
from ..graph import tensor as T
from ..graph.config import config
from ..graph.shared import SharedVariable, shared
from ..graph.var import Var

__all__ = [
    "get_or_compute_grads", "sgd", "apply_momentum", "momentum", "apply_nesterov_momentum",
    "nesterov_momentum", "adagrad", "rmsprop", "adadelta", "adam", "adamax", "amsgrad",
    "norm_constraint", "total_norm_constraint",
]


def get_or_compute_grads(loss_or_grads, params: list) -> list:
    """`loss_or_grads` itself when it is a list of gradients (one per parameter), else the
    gradients of the scalar loss with respect to `params`."""
    params = list(params)
    not_shared = [p for p in params if not isinstance(p, SharedVariable)]
    if not_shared:
        raise ValueError(
            f"updates need shared variables as params, got {not_shared[0]!r} "
            "(get_all_params(..., unwrap_shared=True) returns the shared variables)"
        )
    if isinstance(loss_or_grads, (list, tuple)):
        if len(loss_or_grads) != len(params):
            raise ValueError(
                f"got {len(loss_or_grads)} gradient expressions for {len(params)} parameters"
            )
        return list(loss_or_grads)
    return grad(loss_or_grads, params)


def _zeros_like(param: SharedVariable) -> SharedVariable:
    """A new shared variable of zeros with the parameter's shape, dtype and broadcast pattern."""
    value = param.get_value(borrow=True)
    return shared(np.zeros(value.shape, dtype=value.dtype), shape=param.type.shape)


def sgd(loss_or_grads, params, learning_rate) -> OrderedDict:
    """param <- param - learning_rate * grad."""
    params = list(params)  # may be a generator: it is walked twice
    grads = get_or_compute_grads(loss_or_grads, params)
    return OrderedDict((p, p - learning_rate * g) for p, g in zip(params, grads))


def apply_momentum(updates, params=None, momentum: float = 0.9) -> OrderedDict:
    """Adds classical momentum: v <- momentum * v + (update - param); param <- param + v."""
    params = list(updates) if params is None else params
    updates = OrderedDict(updates)
    for param in params:
        velocity = _zeros_like(param)
        x = momentum * velocity + updates[param]
        updates[velocity] = x - param
        updates[param] = x
    return updates


def momentum(loss_or_grads, params, learning_rate, momentum: float = 0.9) -> OrderedDict:
    """SGD with classical momentum."""
    return apply_momentum(sgd(loss_or_grads, params, learning_rate), momentum=momentum)


def apply_nesterov_momentum(updates, params=None, momentum: float = 0.9) -> OrderedDict:
    """Adds Nesterov momentum to `updates`: v <- momentum * v + (update - param);
    param <- param + momentum * v + (update - param)."""
    params = list(updates) if params is None else params
    updates = OrderedDict(updates)
    for param in params:
        velocity = _zeros_like(param)
        x = momentum * velocity + updates[param] - param
        updates[velocity] = x
        updates[param] = momentum * x + updates[param]
    return updates


def nesterov_momentum(loss_or_grads, params, learning_rate, momentum: float = 0.9) -> OrderedDict:
    """SGD with Nesterov momentum."""
    return apply_nesterov_momentum(sgd(loss_or_grads, params, learning_rate), momentum=momentum)


def adagrad(
    loss_or_grads, params, learning_rate: float = 1.0, epsilon: float = 1e-6
) -> OrderedDict:
    """Adagrad: a <- a + g^2; param <- param - lr * g / sqrt(a + epsilon)."""
    params = list(params)  # may be a generator: it is walked twice
    grads = get_or_compute_grads(loss_or_grads, params)
    updates = OrderedDict()
    for param, g in zip(params, grads):
        accu = _zeros_like(param)
        accu_new = accu + g**2
        updates[accu] = accu_new
        updates[param] = param - learning_rate * g / T.sqrt(accu_new + epsilon)
    return updates


def rmsprop(loss_or_grads, params, learning_rate: float = 1.0, rho: float = 0.9,
            epsilon: float = 1e-6) -> OrderedDict:
    """RMSProp: a <- rho * a + (1 - rho) * g^2; param <- param - lr * g / sqrt(a + epsilon)."""
    params = list(params)  # may be a generator: it is walked twice
    grads = get_or_compute_grads(loss_or_grads, params)
    updates = OrderedDict()
    for param, g in zip(params, grads):
        accu = _zeros_like(param)
        accu_new = rho * accu + (1 - rho) * g**2
        updates[accu] = accu_new
        updates[param] = param - learning_rate * g / T.sqrt(accu_new + epsilon)
    return updates


def adadelta(loss_or_grads, params, learning_rate: float = 1.0, rho: float = 0.95,
             epsilon: float = 1e-6) -> OrderedDict:
    """Adadelta: step = g * sqrt(d + eps) / sqrt(a + eps), a and d running means of g^2, step^2."""
    params = list(params)  # may be a generator: it is walked twice
    grads = get_or_compute_grads(loss_or_grads, params)
    updates = OrderedDict()
    for param, g in zip(params, grads):
        accu = _zeros_like(param)
        delta_accu = _zeros_like(param)
        accu_new = rho * accu + (1 - rho) * g**2
        updates[accu] = accu_new
        step = g * T.sqrt(delta_accu + epsilon) / T.sqrt(accu_new + epsilon)
        updates[param] = param - learning_rate * step
        updates[delta_accu] = rho * delta_accu + (1 - rho) * step**2
    return updates


def _timestep() -> tuple[SharedVariable, Var]:
    t_prev = shared(np.asarray(0.0, dtype=config.floatX))
    return t_prev, t_prev + 1


def adam(
    loss_or_grads, params, learning_rate: float = 0.001, beta1: float = 0.9, beta2: float = 0.999,
    epsilon: float = 1e-8,
) -> OrderedDict:
    """Adam, with both bias corrections folded into the step size (Kingma & Ba, section 2)."""
    params = list(params)  # may be a generator: it is walked twice
    grads = get_or_compute_grads(loss_or_grads, params)
    t_prev, t = _timestep()
    updates = OrderedDict()
    a_t = learning_rate * T.sqrt(1 - beta2**t) / (1 - beta1**t)
    for param, g in zip(params, grads):
        m_prev, v_prev = _zeros_like(param), _zeros_like(param)
        m_t = beta1 * m_prev + (1 - beta1) * g
        v_t = beta2 * v_prev + (1 - beta2) * g**2
        updates[m_prev], updates[v_prev] = m_t, v_t
        updates[param] = param - a_t * m_t / (T.sqrt(v_t) + epsilon)
    updates[t_prev] = t
    return updates


def adamax(
    loss_or_grads, params, learning_rate: float = 0.002, beta1: float = 0.9, beta2: float = 0.999,
    epsilon: float = 1e-8,
) -> OrderedDict:
    """Adamax: Adam with the infinity norm, u <- max(beta2 * u, |g|)."""
    params = list(params)  # may be a generator: it is walked twice
    grads = get_or_compute_grads(loss_or_grads, params)
    t_prev, t = _timestep()
    updates = OrderedDict()
    a_t = learning_rate / (1 - beta1**t)
    for param, g in zip(params, grads):
        m_prev, u_prev = _zeros_like(param), _zeros_like(param)
        m_t = beta1 * m_prev + (1 - beta1) * g
        u_t = T.maximum(beta2 * u_prev, abs(g))
        updates[m_prev], updates[u_prev] = m_t, u_t
        updates[param] = param - a_t * m_t / (u_t + epsilon)
    updates[t_prev] = t
    return updates


def amsgrad(
    loss_or_grads, params, learning_rate: float = 0.001, beta1: float = 0.9, beta2: float = 0.999,
    epsilon: float = 1e-8,
) -> OrderedDict:
    """AMSGrad: Adam dividing by the running maximum of the second-moment estimate."""
    params = list(params)  # may be a generator: it is walked twice
    grads = get_or_compute_grads(loss_or_grads, params)
    t_prev, t = _timestep()
    updates = OrderedDict()
    a_t = learning_rate * T.sqrt(1 - beta2**t) / (1 - beta1**t)
    for param, g in zip(params, grads):
        m_prev, v_prev, v_hat_prev = _zeros_like(param), _zeros_like(param), _zeros_like(param)
        m_t = beta1 * m_prev + (1 - beta1) * g
        v_t = beta2 * v_prev + (1 - beta2) * g**2
        v_hat_t = T.maximum(v_hat_prev, v_t)
        updates[m_prev], updates[v_prev], updates[v_hat_prev] = m_t, v_t, v_hat_t
        updates[param] = param - a_t * m_t / (T.sqrt(v_hat_t) + epsilon)
    updates[t_prev] = t
    return updates


def norm_constraint(tensor_var: Var, max_norm: float, norm_axes=None, epsilon: float = 1e-7) -> Var:
    """`tensor_var` rescaled so that its norms over `norm_axes` (default: axis 0 for matrices, all
    but the first axis for 3-5-d tensors) are at most `max_norm`."""
    ndim = tensor_var.ndim
    if norm_axes is not None:
        axes = tuple(norm_axes)
    elif ndim == 2:
        axes = (0,)
    elif ndim in (3, 4, 5):
        axes = tuple(range(1, ndim))
    else:
        raise ValueError(f"norm_constraint: give norm_axes for a {ndim}-d tensor ({tensor_var})")
    dtype = np.dtype(config.floatX).type
    norms = T.sqrt(T.sum(T.sqr(tensor_var), axis=axes, keepdims=True))
    target = T.clip(norms, 0, dtype(max_norm))
    return tensor_var * (target / (dtype(epsilon) + norms))


def total_norm_constraint(tensor_vars: list, max_norm: float, epsilon: float = 1e-7,
                          return_norm: bool = False):
    """The tensors rescaled together so that their joint L2 norm is at most `max_norm` (gradient
    clipping); with `return_norm`, also the norm before rescaling."""
    norm = T.sqrt(sum(T.sum(T.sqr(x)) for x in tensor_vars))
    dtype = np.dtype(config.floatX).type
    multiplier = T.clip(norm, 0, dtype(max_norm)) / (dtype(epsilon) + norm)
    scaled = [x * multiplier for x in tensor_vars]
    return (scaled, norm) if return_norm else scaled
