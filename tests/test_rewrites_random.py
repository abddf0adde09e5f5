"""Hypothesis: random elementwise graphs give the same values rewritten (and fused) as written."""

from __future__ import annotations

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import theanine
import theanine.tensor as T

UNARY = [
    lambda a: -a, T.tanh, T.nnet.sigmoid, T.sqr, lambda a: T.log(T.abs_(a) + 1.0),
    lambda a: T.exp(T.tanh(a)), lambda a: a * 1.0, lambda a: a + 0.0, lambda a: a**2, lambda a: a**0.5 * 0.0 + a,
    lambda a: T.log(1 + T.exp(T.tanh(a))), lambda a: T.exp(a * 0.1) - 1, lambda a: a / 3.0, lambda a: -(-a),
]
BINARY = [
    lambda a, b: a + b, lambda a, b: a - b, lambda a, b: a * b, lambda a, b: a / (T.abs_(b) + 1.0),
    T.maximum, T.minimum, lambda a, b: T.switch(T.gt(a, b), a, b * 2.0), lambda a, b: a - a + b,
]


@st.composite
def expressions(draw, leaves):
    """A random tree of elementwise ops over `leaves`, built bottom-up."""
    pool = list(leaves)
    for _ in range(draw(st.integers(1, 8))):
        if draw(st.booleans()):
            op = draw(st.sampled_from(UNARY))
            pool.append(op(draw(st.sampled_from(pool))))
        else:
            op = draw(st.sampled_from(BINARY))
            pool.append(op(draw(st.sampled_from(pool)), draw(st.sampled_from(pool))))
    return pool[-1], pool[-2]


@settings(max_examples=60, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data(), dtype=st.sampled_from(["float64", "float32"]))
def test_rewritten_equals_unrewritten(data, dtype):
    x = T.matrix("x", dtype=dtype)
    b = T.row("b", dtype=dtype)
    c = T.scalar("c", dtype=dtype)
    first, second = data.draw(expressions([x, b, c]))
    rng = np.random.default_rng(data.draw(st.integers(0, 2**16)))
    values = [rng.normal(size=(3, 4)), rng.normal(size=(1, 4)), np.array(rng.normal())]
    values = [v.astype(dtype) for v in values]
    with theanine.config.change_flags(optimizer="None"):
        plain = theanine.function([x, b, c], [first, second], on_unused_input="ignore")
    rewritten = theanine.function([x, b, c], [first, second], on_unused_input="ignore")
    rtol = 1e-4 if dtype == "float32" else 1e-10
    with np.errstate(all="ignore"):
        for got, want in zip(rewritten(*values), plain(*values)):
            assert got.dtype == want.dtype and got.shape == want.shape
            np.testing.assert_allclose(got, want, rtol=rtol, atol=rtol, equal_nan=True)
