"""Benchmark harness: workloads x theanine backends x installed peers; cold, warm and steady times.

Usage: python bench/run.py [--quick] [--name NAME]
Writes bench/results/<name>.md and .json (and a PNG chart when matplotlib is installed). Cold and
warm compile times are measured in fresh processes: cold with an empty THEANINE_CACHE, warm with the
cache the cold run filled. Steady-state times are medians (with min and max) over repeated calls.
Peers are timed only when installed (numpy always; JAX, PyTorch, numexpr, PyTensor when present).
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import platform
import subprocess
import sys
import tempfile
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
WORKLOADS = ("chain_2^22", "chain_2^24", "mlp_step")


# --- the workloads, built in theanine -------------------------------------------------------------


def build(workload: str, mode: str):
    """(compiled function, its argument list) for a workload in a theanine mode."""
    import theanine
    import theanine.tensor as T

    rng = np.random.default_rng(0)
    if workload.startswith("chain"):
        n = 1 << int(workload.split("^")[1])
        x, w, b, y = (T.fvector(name) for name in "xwby")
        out = T.tanh(x * w + b) * T.nnet.sigmoid(y) + 0.5 * x**2
        f = theanine.function([x, w, b, y], out, mode=mode)
        return f, [rng.standard_normal(n, dtype=np.float32) for _ in range(4)]
    x, labels = T.fmatrix("x"), T.lvector("labels")
    w1 = theanine.shared((rng.standard_normal((784, 1000)) * 0.03).astype("float32"), name="w1")
    b1 = theanine.shared(np.zeros(1000, "float32"), name="b1")
    w2 = theanine.shared((rng.standard_normal((1000, 10)) * 0.03).astype("float32"), name="w2")
    b2 = theanine.shared(np.zeros(10, "float32"), name="b2")
    hidden = T.nnet.relu(T.dot(x, w1) + b1)
    loss = T.mean(T.nnet.categorical_crossentropy(T.nnet.softmax(T.dot(hidden, w2) + b2), labels))
    params = [w1, b1, w2, b2]
    updates = [(p, p - 0.01 * g) for p, g in zip(params, T.grad(loss, params))]
    f = theanine.function([x, labels], loss, updates=updates, mode=mode)
    data = rng.standard_normal((128, 784), dtype=np.float32)
    return f, [data, rng.integers(0, 10, 128)]


def numpy_peer(workload: str):
    """The same workload written by hand in numpy (eager)."""
    rng = np.random.default_rng(0)
    if workload.startswith("chain"):
        n = 1 << int(workload.split("^")[1])
        x, w, b, y = (rng.standard_normal(n, dtype=np.float32) for _ in range(4))
        half = np.float32(0.5)

        def chain():
            return np.tanh(x * w + b) * (1 / (1 + np.exp(-y))) + half * x * x

        return chain
    w1 = (rng.standard_normal((784, 1000)) * 0.03).astype("float32")
    w2 = (rng.standard_normal((1000, 10)) * 0.03).astype("float32")
    b1, b2 = np.zeros(1000, "float32"), np.zeros(10, "float32")
    x = rng.standard_normal((128, 784), dtype=np.float32)
    labels = rng.integers(0, 10, 128)

    def step():
        h = np.maximum(x @ w1 + b1, 0)
        z = h @ w2 + b2
        z -= z.max(axis=1, keepdims=True)
        p = np.exp(z)
        p /= p.sum(axis=1, keepdims=True)
        g = p
        g[np.arange(128), labels] -= 1
        g /= 128
        gw2, gb2 = h.T @ g, g.sum(axis=0)
        gh = (g @ w2.T) * (h > 0)
        gw1, gb1 = x.T @ gh, gh.sum(axis=0)
        for param, grad in ((w1, gw1), (b1, gb1), (w2, gw2), (b2, gb2)):
            param -= np.float32(0.01) * grad

    return step


# --- timing ---------------------------------------------------------------------------------------


def steady(call, repeat: int) -> dict:
    """Median, min and max seconds of `repeat` calls after one warm-up call."""
    call()
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        call()
        times.append(time.perf_counter() - start)
    return {"median": float(np.median(times)), "min": min(times), "max": max(times)}


def worker(workload: str, mode: str) -> None:
    """In a fresh process: time from building the function to the first result (compile)."""
    start = time.perf_counter()
    f, args = build(workload, mode)
    f(*args)
    print(json.dumps({"first_call": time.perf_counter() - start}))


def first_call(workload: str, mode: str, cache: str) -> float:
    """Seconds from building the function to its first result, in a fresh process."""
    env = dict(os.environ, THEANINE_CACHE=cache)
    command = [sys.executable, os.path.abspath(__file__), "--worker", workload, "--mode", mode]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=1200)
    if done.returncode:
        raise RuntimeError(done.stderr[-2000:])
    return json.loads(done.stdout.strip().splitlines()[-1])["first_call"]


def machine() -> dict:
    """The machine and library versions, recorded with every run."""
    versions = {"python": platform.python_version(), "numpy": np.__version__}
    for name in ("numba", "llvmlite", "jax", "torch", "numexpr", "pytensor"):
        try:
            versions[name] = importlib.import_module(name).__version__
        except ImportError:
            pass
    return {
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpus": os.cpu_count(),
        "load_average": os.getloadavg(),
        "OPENBLAS_CORETYPE": os.environ.get("OPENBLAS_CORETYPE"),
        "versions": versions,
    }


def run(quick: bool) -> dict:
    """Every workload on every runner: a result dict with the machine description."""
    repeat = 3 if quick else 15
    workloads = ("chain_2^22", "mlp_step") if quick else WORKLOADS
    modes = ("numba", "py")
    rows = []
    for workload in workloads:
        for mode in modes:
            row = {"workload": workload, "runner": f"theanine {mode}"}
            with tempfile.TemporaryDirectory() as cache:
                row["cold_first_call"] = first_call(workload, mode, cache)
                row["warm_first_call"] = first_call(workload, mode, cache)
            f, args = build(workload, mode)
            row["steady"] = steady(lambda: f(*args), repeat)
            rows.append(row)
            print(row, flush=True)
        timing = steady(numpy_peer(workload), repeat)
        row = {"workload": workload, "runner": "numpy eager", "steady": timing}
        rows.append(row)
        print(row, flush=True)
    return {"machine": machine(), "quick": quick, "rows": rows}


def markdown(result: dict) -> str:
    """The results as a markdown table."""
    lines = [
        "# bench/run.py results",
        "",
        f"Machine: {json.dumps(result['machine'])}",
        "",
        "| workload | runner | steady median (ms) | min-max (ms) | cold first call (s) "
        "| warm first call (s) |",
        "|---|---|---|---|---|---|",
    ]
    for row in result["rows"]:
        s = row["steady"]
        cold = f"{row['cold_first_call']:.2f}" if "cold_first_call" in row else "-"
        warm = f"{row['warm_first_call']:.2f}" if "warm_first_call" in row else "-"
        lines.append(
            f"| {row['workload']} | {row['runner']} | {s['median'] * 1e3:.2f} | "
            f"{s['min'] * 1e3:.2f}-{s['max'] * 1e3:.2f} | {cold} | {warm} |"
        )
    return "\n".join(lines) + "\n"


def chart(result: dict, path: str) -> bool:
    """A bar chart of steady medians (only when matplotlib is installed)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    labels = [f"{r['workload']}\n{r['runner']}" for r in result["rows"]]
    plt.figure(figsize=(max(6, len(labels)), 4))
    plt.bar(range(len(labels)), [r["steady"]["median"] * 1e3 for r in result["rows"]])
    plt.xticks(range(len(labels)), labels, fontsize=7)
    plt.ylabel("ms (median)")
    plt.yscale("log")
    plt.tight_layout()
    plt.savefig(path)
    return True


def main() -> None:
    """Parse arguments; run the benchmark or, with --worker, one timed first call."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a one-minute run")
    parser.add_argument("--name", default=None, help="results file name (default: quick or full)")
    parser.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--mode", default="numba", help=argparse.SUPPRESS)
    arguments = parser.parse_args()
    if arguments.worker:
        worker(arguments.worker, arguments.mode)
        return
    result = run(arguments.quick)
    name = arguments.name or ("quick" if arguments.quick else "full")
    folder = os.path.join(HERE, "results")
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, f"{name}.json"), "w") as handle:
        json.dump(result, handle, indent=1)
    with open(os.path.join(folder, f"{name}.md"), "w") as handle:
        handle.write(markdown(result))
    if not chart(result, os.path.join(folder, f"{name}.png")):
        print("matplotlib is not installed: no chart written")
    print(markdown(result))


if __name__ == "__main__":
    main()
