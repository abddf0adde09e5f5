"""Batch normalization (Theano's `T.nnet.bn`), written as elementwise expressions and reductions."""

from __future__ import annotations

from ..var import Var, as_tensor_variable

__all__ = ["batch_normalization", "batch_normalization_train", "batch_normalization_test"]


def _T():
    from .. import tensor as T  # the tensor namespace imports the op modules, this one included

    return T


def batch_normalization(inputs, gamma, beta, mean, std, mode: str = "low_mem") -> Var:
    """(inputs - mean) * (gamma / std) + beta, elementwise with broadcasting."""
    if mode not in ("low_mem", "high_mem"):
        raise ValueError(f"batch_normalization: mode must be 'low_mem' or 'high_mem', got {mode!r}")
    inputs, gamma, beta, mean, std = map(as_tensor_variable, (inputs, gamma, beta, mean, std))
    return (inputs - mean) * (gamma / std) + beta


def _axes(axes, ndim: int) -> tuple:
    if axes == "per-activation":
        return (0,)
    if axes == "spatial":
        return (0,) + tuple(range(2, ndim))
    if isinstance(axes, str):
        raise ValueError(
            f"batch normalization: axes must be 'per-activation', 'spatial' or a tuple of ints, "
            f"got {axes!r}"
        )
    axes = (axes,) if isinstance(axes, int) else tuple(axes)
    if not all(isinstance(a, int) and -ndim <= a < ndim for a in axes):
        raise ValueError(f"batch normalization: axes {axes} are out of range for a {ndim}-d input")
    return tuple(sorted(a % ndim for a in axes))


def _param_adapter(inputs: Var, axes: tuple, params: list, what: str):
    """Broadcast parameters given without the normalized axes; return them and a function that
    brings per-channel statistics back to the parameters' own layout."""
    ndim = inputs.ndim
    kept = [a for a in range(ndim) if a not in axes]
    dims = {p.ndim for p in params}
    if dims == {ndim}:
        return params, lambda v: v
    if dims == {len(kept)}:
        pattern = ["x" if a in axes else kept.index(a) for a in range(ndim)]
        back = [a for a in range(ndim) if a not in axes]
        return [p.dimshuffle(*pattern) for p in params], lambda v: v.dimshuffle(*back)
    shapes = ", ".join(str(p.type) for p in params)
    raise ValueError(
        f"{what}: the parameters must have {ndim} dimensions (the input's) or {len(kept)} (without "
        f"the normalized axes {axes}), got {shapes}"
    )


def batch_normalization_train(
    inputs,
    gamma,
    beta,
    axes="per-activation",
    epsilon: float = 1e-4,
    running_average_factor: float = 0.1,
    running_mean=None,
    running_var=None,
) -> tuple:
    """Normalize with the batch statistics over `axes`: returns (out, mean, invstd) and, when
    running_mean and running_var are given, their updated values (the variance unbiased)."""
    T = _T()
    inputs, gamma, beta = map(as_tensor_variable, (inputs, gamma, beta))
    axes = _axes(axes, inputs.ndim)
    if (running_mean is None) != (running_var is None):
        raise ValueError(
            "batch_normalization_train: give both running_mean and running_var, or neither"
        )
    params = [gamma, beta]
    if running_mean is not None:
        params += [as_tensor_variable(running_mean), as_tensor_variable(running_var)]
    params, back = _param_adapter(inputs, axes, params, "batch_normalization_train")
    gamma, beta = params[:2]
    mean = T.mean(inputs, axis=axes, keepdims=True)
    var = T.var(inputs, axis=axes, keepdims=True)
    invstd = T.inv(T.sqrt(var + epsilon))
    out = (inputs - mean) * (gamma * invstd) + beta
    results = [out, back(mean), back(invstd)]
    if running_mean is not None:
        factor = running_average_factor
        count = T.prod(T.stack([T.cast(inputs.shape[a], var.dtype) for a in axes]))
        unbiased = var * (count / T.maximum(count - 1, 1))
        results.append(back(params[2] * (1 - factor) + mean * factor))
        results.append(back(params[3] * (1 - factor) + unbiased * factor))
    return tuple(results)


def batch_normalization_test(
    inputs, gamma, beta, mean, var, axes="per-activation", epsilon: float = 1e-4
) -> Var:
    """Normalize with given statistics: (inputs - mean) * gamma / sqrt(var + epsilon) + beta."""
    T = _T()
    inputs = as_tensor_variable(inputs)
    axes = _axes(axes, inputs.ndim)
    params = list(map(as_tensor_variable, (gamma, beta, mean, var)))
    (gamma, beta, mean, var), _ = _param_adapter(inputs, axes, params, "batch_normalization_test")
    return (inputs - mean) * (gamma / T.sqrt(var + epsilon)) + beta
