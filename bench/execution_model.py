"""Mode numba's execution model, measured: per-node kernels run by a lean Python loop, or whole
compiled functions.

Two measurements, in one run:
1. Straight-line graphs (an MLP training step, 784-1000-10, batch 128): the call time against the
   sum of its nodes' kernel times; the difference is the Python loop's cost per node.
2. Loops (the LSTM of bench/lstm.py, forward + backward): its scans as one compiled numba loop
   each (flag numba__scan_loop=True, the default) against the per-step plan of kernels
   (numba__scan_loop=False), steady-state time and cold compile time (new process, empty cache).
Usage: python bench/execution_model.py [--repeat 20] [--out bench/results/execution_model.md]
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import tempfile
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))


def mlp_step():
    """The MLP SGD step of bench/run.py in mode numba, and its arguments."""
    import theanine
    import theanine.tensor as T

    rng = np.random.default_rng(0)
    x, labels = T.fmatrix("x"), T.lvector("labels")
    w1 = theanine.shared((rng.standard_normal((784, 1000)) * 0.03).astype("float32"))
    b1 = theanine.shared(np.zeros(1000, "float32"))
    w2 = theanine.shared((rng.standard_normal((1000, 10)) * 0.03).astype("float32"))
    b2 = theanine.shared(np.zeros(10, "float32"))
    hidden = T.nnet.relu(T.dot(x, w1) + b1)
    probs = T.nnet.softmax(T.dot(hidden, w2) + b2)
    loss = T.mean(T.nnet.categorical_crossentropy(probs, labels))
    params = [w1, b1, w2, b2]
    updates = [(p, p - 0.1 * g) for p, g in zip(params, theanine.grad(loss, params))]
    f = theanine.function([x, labels], loss, updates=updates, mode="numba")
    data = rng.standard_normal((128, 784)).astype("float32")
    return f, [data, rng.integers(0, 10, 128)]


class _Timed:
    """A runner that adds the time of each call (plain or `into` a buffer) to `total`."""

    def __init__(self, runner, total: list) -> None:
        self.runner, self.total = runner, total

    def __call__(self, *values):
        tic = time.perf_counter()
        out = self.runner(*values)
        self.total[0] += time.perf_counter() - tic
        return out

    def into(self, buffer, *values):
        tic = time.perf_counter()
        out = self.runner.into(buffer, *values)
        self.total[0] += time.perf_counter() - tic
        return out

    def fits(self, buffer, values) -> bool:
        return self.runner.fits(buffer, values)


def mlp_overhead(repeat: int) -> dict:
    """Call time, summed kernel time and node count of the MLP step in mode numba."""
    f, args = mlp_step()
    plan = f._plan
    total = [0.0]
    runs = list(plan.runs)
    plan.runs = [(_Timed(run[0], total),) + run[1:] for run in runs]
    for _ in range(3):
        f(*args)
    calls, kernels = [], []
    for _ in range(repeat):  # each call's own time and its kernels' time, so loads cancel
        total[0] = 0.0
        tic = time.perf_counter()
        f(*args)
        calls.append(time.perf_counter() - tic)
        kernels.append(total[0])
    plan.runs = runs
    overhead = [c - k for c, k in zip(calls, kernels)]
    return {"call_ms": 1e3 * float(np.median(calls)), "kernels_ms": 1e3 * float(np.median(kernels)),
            "overhead_ms": 1e3 * float(np.median(overhead)), "nodes": len(runs)}


def lstm_times(repeat: int, loop: bool) -> float:
    """Steady-state ms of the LSTM step with or without compiled scan loops."""
    import theanine

    sys.path.insert(0, HERE)
    from lstm import BATCH, FEATURES, STEPS, theanine_step, timed

    theanine.config.numba__scan_loop = loop
    try:
        f = theanine_step("numba")
        data = np.random.default_rng(0).normal(size=(BATCH, STEPS, FEATURES)).astype("float32")
        return timed(lambda: f(data), repeat)[0]  # lstm.py's timing: the median
    finally:
        theanine.config.numba__scan_loop = True


def cold_compile_s(loop: bool) -> float:
    """Build, compile and run once in a new process with an empty cache."""
    code = (
        "import time, sys, numpy as np; t = time.perf_counter(); sys.path.insert(0, 'bench'); "
        "from lstm import theanine_step, BATCH, STEPS, FEATURES; f = theanine_step('numba'); "
        "f(np.zeros((BATCH, STEPS, FEATURES), dtype='float32')); print(time.perf_counter() - t)"
    )
    env = dict(os.environ, THEANINE_CACHE=tempfile.mkdtemp(prefix="theanine-em-"),
               THEANINE_FLAGS=f"numba__scan_loop={loop}")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         check=True, cwd=os.path.dirname(HERE))
    return float(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=20)
    parser.add_argument("--out", default=os.path.join(HERE, "results", "execution_model.md"))
    args = parser.parse_args()
    mlp = mlp_overhead(args.repeat)
    per_node_us = 1e3 * mlp["overhead_ms"] / mlp["nodes"]
    loop_ms, plan_ms = lstm_times(args.repeat, True), lstm_times(args.repeat, False)
    loop_cold, plan_cold = cold_compile_s(True), cold_compile_s(False)
    load = os.getloadavg()[0]
    lines = [
        "# Mode numba: per-node kernels or whole compiled functions",
        "",
        f"Command: `python bench/execution_model.py`; machine: {platform.machine()}, "
        f"{os.cpu_count()} cores, Python {platform.python_version()}; load average at the end "
        f"{load:.1f}. Medians of {args.repeat} calls, measured in one run.",
        "",
        "## Straight-line graph: MLP 784-1000-10 training step, batch 128",
        "",
        "| call (ms) | kernels (ms) | outside the kernels (ms) | nodes | per node (us) |",
        "|---:|---:|---:|---:|---:|",
        f"| {mlp['call_ms']:.3f} | {mlp['kernels_ms']:.3f} | {mlp['overhead_ms']:.3f} | "
        f"{mlp['nodes']} | {per_node_us:.1f} |",
        "",
        "(outside the kernels: the plan's loop, argument checks and update bookkeeping, per call; "
        "the medians of the per-call differences)",
        "",
        "## Loops: LSTM 64->128, 50 steps, batch 32, forward + backward",
        "",
        "| scan bodies run as | steady (ms) | build + compile + first call, empty cache (s) |",
        "|---|---:|---:|",
        f"| one compiled numba loop per scan | {loop_ms:.2f} | {loop_cold:.1f} |",
        f"| per-step plan of kernels | {plan_ms:.2f} | {plan_cold:.1f} |",
    ]
    text = "\n".join(lines)
    print(text)
    with open(args.out, "w") as handle:
        handle.write(text + "\n")


if __name__ == "__main__":
    main()
