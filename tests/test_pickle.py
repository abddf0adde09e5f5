"""Pickling shared variables, graphs and compiled functions; loading here and in a new process."""

from __future__ import annotations

import os
import pickle
import subprocess
import sys

import numpy as np
import pytest

import theanine
import theanine.tensor as T
from theanine import In, function, shared

F32 = "float32"


def run_in_new_process(code: str, tmp_path) -> str:
    """Run `code` in a fresh interpreter (cwd tmp_path) and return its stdout."""
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=120,
        env={**os.environ, "PYTHONHASHSEED": "123"},
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_shared_variable_round_trip_is_a_copy():
    w = shared(np.arange(6, dtype=F32).reshape(2, 3), name="w")
    w2 = pickle.loads(pickle.dumps(w))
    assert w2 is not w and w2.name == "w" and w2.type == w.type
    np.testing.assert_array_equal(w2.get_value(), w.get_value())
    w2.set_value(np.zeros((2, 3), F32))
    assert w.get_value()[1, 2] == 5


def test_graph_round_trip():
    x = T.vector("x")
    y = T.exp(x) * 2 + x.sum()
    x2, y2 = pickle.loads(pickle.dumps((x, y)))
    assert x2 is not x and x2.name == "x" and y2.type == y.type
    value = np.array([0.5, 1.5], F32)
    np.testing.assert_allclose(y2.eval({x2: value}), np.exp(value) * 2 + value.sum(), rtol=1e-6)


def test_function_round_trip_same_process():
    x = T.vector("x")
    w = shared(np.array([1, 2], F32), name="w")
    f = function([x], x * w + 2, updates=[(w, w + 1)], name="step")
    g = pickle.loads(pickle.dumps(f))
    assert g.name == "step"
    np.testing.assert_array_equal(g(np.array([1, 1], F32)), [3, 4])
    # The unpickled function updates its own copy of w, not the original.
    assert w.get_value().tolist() == [1, 2]
    np.testing.assert_array_equal(g(np.array([1, 1], F32)), [4, 5])
    np.testing.assert_array_equal(f(np.array([1, 1], F32)), [3, 4])


def test_function_keeps_givens_defaults_and_updates(tmp_path):
    data = shared(np.arange(12, dtype=F32).reshape(6, 2), name="data")
    counter = shared(np.int64(0), name="counter")
    step = shared(np.int64(1), name="step")
    x, i = T.matrix("x"), T.lscalar("i")
    offset = T.scalar("offset")
    f = function(
        [i, In(offset, value=0.5)],
        [x.sum() + offset, counter * 1],
        givens={x: data[i * 2 : (i + 1) * 2]},
        updates=[(counter, counter + step)],
        name="batch_sum",
    )
    path = tmp_path / "f.pkl"
    path.write_bytes(pickle.dumps(f))
    out = run_in_new_process(
        "import pickle, numpy as np\n"
        "f = pickle.load(open('f.pkl', 'rb'))\n"
        "a = f(1)\n"
        "b = f(2, offset=0.0)\n"
        "print(float(a[0]), int(a[1]), float(b[0]), int(b[1]), f.name)\n",
        tmp_path,
    )
    assert out.split() == ["22.5", "0", "38.0", "1", "batch_sum"]
    assert counter.get_value() == 0  # the pickled copy advanced, not this process's variable


def test_training_function_in_new_process(tmp_path):
    x = T.vector("x")
    w = shared(np.array([1.0, -1.0], F32), name="w")
    residual = (x * w).sum() - 1
    cost = residual * residual
    (gw,) = T.grad(cost, [w])
    train = function([x], cost, updates=[(w, w - 0.1 * gw)])
    (tmp_path / "train.pkl").write_bytes(pickle.dumps(train))
    out = run_in_new_process(
        "import pickle, numpy as np\n"
        "train = pickle.load(open('train.pkl', 'rb'))\n"
        "costs = [float(train(np.array([1.0, 2.0], 'float32'))) for _ in range(3)]\n"
        "print(' '.join(repr(c) for c in costs))\n"
        "w = [v for v in train.get_shared() if v.name == 'w'][0]\n"
        "print(' '.join(repr(float(v)) for v in w.get_value()))\n",
        tmp_path,
    )
    # The same steps in numpy: cost = (x.w - 1)^2, grad = 2 (x.w - 1) x.
    xv, wv, costs = np.array([1.0, 2.0], F32), np.array([1.0, -1.0], F32), []
    for _ in range(3):
        r = np.float32(xv @ wv - 1)
        costs.append(float(r * r))
        wv = (wv - np.float32(0.1) * (2 * r * xv)).astype(F32)
    lines = out.splitlines()
    np.testing.assert_allclose([float(c) for c in lines[0].split()], costs, rtol=1e-5)
    np.testing.assert_allclose([float(v) for v in lines[1].split()], wv, rtol=1e-5)
    assert w.get_value().tolist() == [1.0, -1.0]


def test_function_with_default_update_that_reads_its_variable():
    s = shared(np.float32(1.0), name="s")
    s.default_update = s + 1
    f = pickle.loads(pickle.dumps(function([], s * 2)))
    assert float(f()) == 2.0 and float(f()) == 4.0
    (s2,) = f.get_shared()
    assert float(s2.get_value()) == 3.0 and s2.default_update.inputs[0] is s2


def test_mode_is_kept():
    x = T.vector("x")
    f = function([x], T.log(x), mode="NanGuardMode")
    g = pickle.loads(pickle.dumps(f))
    assert g.mode == "NanGuardMode"
    with pytest.raises(FloatingPointError, match="NanGuardMode"):
        g(np.array([-1.0], F32))
    default = function([x], T.log(x))
    assert pickle.loads(pickle.dumps(default)).mode == default.mode == theanine.config.mode
