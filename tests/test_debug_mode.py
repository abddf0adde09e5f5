"""DebugMode runs the numba backend and checks every node against the numpy reference."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest

import theanine
import theanine.tensor as T
from theanine.kernels import numba as _numba_package  # noqa: F401  (the backend is registered)
from theanine.kernels.debug import DebugModeError


def test_debug_mode_agrees_on_a_training_step():
    x = T.dmatrix("x")
    w0 = np.random.default_rng(1).normal(size=(3, 2))
    w = theanine.shared(w0, name="w")
    cost = T.mean(T.nnet.softmax(T.dot(x, w)) ** 2)
    f = theanine.function([x], cost, updates=[(w, w - 0.1 * T.grad(cost, w))], mode="DebugMode")
    xv = np.random.default_rng(0).normal(size=(4, 3))
    reference = theanine.function([x], cost, mode="py")(xv)
    assert f(xv) == pytest.approx(reference)
    assert not np.allclose(w.get_value(), w0)


def test_debug_mode_names_a_node_whose_backend_value_is_wrong(monkeypatch):
    from theanine.kernels.numba import backend

    @dataclass(frozen=True)
    class Twice(theanine.Op):
        """2x, with a wrong numba lowering planted by the test."""

        def infer_type(self, t):
            return t

        def perform(self, v):
            return v * 2

    monkeypatch.setitem(backend.LOWERINGS, Twice, lambda op, var: (lambda v: v * 3))
    Twice.__module__ = "theanine.test_planted"  # treated as one of ours: its lowering is used
    x = T.dvector("x")
    f = theanine.function([x], theanine.Var(Twice(), (x,)) + 1.0, mode="DebugMode")  # the planted node
    with pytest.raises(DebugModeError, match=r"(?s)Twice differs between mode numba and the numpy reference.*planted node"):
        f(np.array([1.0, 2.0]))
