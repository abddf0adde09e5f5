"""Rewrite time of the whole pipeline on graphs of 1k, 5k and 10k nodes (issue: grows no worse than linearly).

Usage: python bench/rewrite_scaling.py [--out bench/results/rewrite_scaling.md]
"""

from __future__ import annotations

import argparse
import gc
import platform
import time

import numpy as np

import theanine
import theanine.tensor as T
from theanine.compiler.pipeline import optimize
from theanine.graph.var import toposort


def training_like_graph(n_nodes: int):
    """A forward chain of dense-ish layers plus its gradient: the mix a training step has."""
    x = T.matrix("x")
    w = theanine.shared(np.ones((8, 8), dtype="float32"), name="w")
    h, k = x, 0
    while True:
        step = k % 5
        if step == 0:
            h = T.tanh(T.dot(h, w) + 0.5)
        elif step == 1:
            h = h * 1.0 + T.log(1 + T.exp(h)) - h / 4.0
        elif step == 2:
            h = h - T.sum(h, axis=1, keepdims=True) * 0.1
        elif step == 3:
            h = T.nnet.sigmoid(h) ** 2
        else:
            h = T.maximum(h, 0.0) + T.exp(T.log(h * h + 1.0))
        k += 1
        cost = T.mean(h)
        if len(toposort([cost])) >= n_nodes // 3:
            break
    g = T.grad(cost, w)
    return [cost, g]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="bench/results/rewrite_scaling.md")
    args = parser.parse_args()
    rows = []
    for target in (1000, 5000, 10000):
        outputs = training_like_graph(target)
        nodes = len(toposort(outputs))
        times = []
        for _ in range(3):
            gc.collect()
            tic = time.perf_counter()
            result = optimize(outputs)
            times.append(time.perf_counter() - tic)
        rows.append((nodes, min(times), len(toposort(result))))
    lines = [
        "# Rewrite time of the pass pipeline (canonicalize, stabilize, specialize, fuse)",
        "",
        f"Command: `python bench/rewrite_scaling.py`; machine: {platform.machine()}, 2 cores, "
        f"Python {platform.python_version()}, numpy {np.__version__}; best of 3.",
        "",
        "| graph nodes (forward + gradient) | rewrite time (s) | microseconds per node | nodes after |",
        "|---:|---:|---:|---:|",
    ]
    for nodes, seconds, after in rows:
        lines.append(f"| {nodes} | {seconds:.3f} | {1e6 * seconds / nodes:.1f} | {after} |")
    text = "\n".join(lines)
    print(text)
    with open(args.out, "w") as f:
        f.write(text + "\n")


if __name__ == "__main__":
    main()
