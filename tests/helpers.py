"""Shared test helpers: evaluate a graph with the reference backend, check gradients numerically."""

from __future__ import annotations

import numpy as np

from theanine.graph.evaluate import evaluate
from theanine.graph.type import TensorType
from theanine.graph.var import input_var

RNG = np.random.default_rng(0)


def run(fn, *arrays):
    """Build fn on fresh inputs typed like `arrays` (static shapes known) and evaluate with perform."""
    inputs = [input_var(TensorType(np.asarray(a).dtype, np.shape(a)), f"x{i}") for i, a in enumerate(arrays)]
    out = fn(*inputs)
    return evaluate([out], dict(zip(inputs, [np.asarray(a) for a in arrays])))[0], out


def broadcast_type(a) -> TensorType:
    """float64 with unknown sizes, except size-1 axes, typed broadcastable (Theano's rule)."""
    return TensorType("float64", tuple(1 if n == 1 else None for n in np.shape(a)))


def numeric_grad(fn, arrays, direction, eps=1e-6):
    """Central differences of sum(fn(*arrays) * direction) with respect to every element of every array."""
    from theanine.compiler.autodiff import grad  # noqa: F401  (keeps imports parallel with check_grad)

    inputs = [input_var(broadcast_type(a), f"x{i}") for i, a in enumerate(arrays)]
    out = fn(*inputs)

    def f(values):
        return float(np.sum(evaluate([out], dict(zip(inputs, values)))[0] * direction))

    grads = []
    for k, a in enumerate(arrays):
        g = np.zeros_like(a, dtype="float64")
        for idx in np.ndindex(*np.shape(a)):
            plus = [np.array(v, dtype="float64") for v in arrays]
            minus = [np.array(v, dtype="float64") for v in arrays]
            plus[k][idx] += eps
            minus[k][idx] -= eps
            g[idx] = (f(plus) - f(minus)) / (2 * eps)
        grads.append(g)
    return grads


def check_grad(fn, arrays, rtol=1e-5, atol=1e-6, seed=0):
    """Compare the symbolic gradient of fn (via theanine.grad) with central differences, in float64."""
    from theanine.compiler.autodiff import grad
    import theanine.graph.tensor as T

    arrays = [np.asarray(a, dtype="float64") for a in arrays]
    inputs = [input_var(broadcast_type(a), f"x{i}") for i, a in enumerate(arrays)]
    out = fn(*inputs)
    direction = np.random.default_rng(seed).normal(size=evaluate([out], dict(zip(inputs, arrays)))[0].shape)
    cost = T.sum(out * T.constant(direction))
    symbolic = evaluate(grad(cost, inputs), dict(zip(inputs, arrays)))
    numeric = numeric_grad(fn, arrays, direction)
    for k, (s, n) in enumerate(zip(symbolic, numeric)):
        assert s.shape == n.shape, f"gradient {k}: shape {s.shape} vs numeric {n.shape}"
        np.testing.assert_allclose(s, n, rtol=rtol, atol=atol, err_msg=f"gradient with respect to input {k}")
