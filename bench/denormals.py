"""A plain RNN's training step with and without theanine.set_flush_denormal(True).

Lasagne's RecurrentLayer, input 64, 128 units, 50 steps, batch 32, loss on the last state: the
gradients vanish over the steps into float32 denormals, on which the processor's arithmetic (and
BLAS) runs one to two orders of magnitude slower. Each setting runs in a process of its own,
alternating, twice. Usage: python bench/denormals.py [--out bench/results/denormals.md]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys

CODE = """
import json, sys, time, numpy as np
import theanine, theanine.tensor as T
from theanine import layers
flush = sys.argv[1] == "on"
if flush:
    assert theanine.set_flush_denormal(True)
x, m = T.tensor3("x"), T.matrix("m")
net = layers.RecurrentLayer(layers.InputLayer((None, 50, 64), x), 128,
                            mask_input=layers.InputLayer((None, 50), m), only_return_final=True)
loss = T.mean(layers.get_output(net) ** 2)
params = layers.get_all_params(net, trainable=True)
f = theanine.function([x, m], [loss] + theanine.grad(loss, params), mode="numba")
xv = np.random.default_rng(0).normal(size=(32, 50, 64)).astype("float32")
mv = np.ones((32, 50), "float32"); mv[:, 40:] = 0
for _ in range(3):
    f(xv, mv)
times = []
for _ in range(30):
    tic = time.perf_counter(); f(xv, mv); times.append(time.perf_counter() - tic)
print(json.dumps(1e3 * float(np.median(times))))
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="bench/results/denormals.md")
    args = parser.parse_args()
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    results = {"off": [], "on": []}
    for setting in ("off", "on", "off", "on"):
        out = subprocess.run([sys.executable, "-c", CODE, setting], capture_output=True, text=True,
                             cwd=root, check=True)
        results[setting].append(json.loads(out.stdout.strip().splitlines()[-1]))
    lines = [
        "# A plain RNN's training step, denormals computed exactly or flushed to zero", "",
        f"Command: `python bench/denormals.py`; machine: {platform.machine()}, {os.cpu_count()} cores, "
        f"Python {platform.python_version()}; median ms per step (30 calls), each setting in a "
        "process of its own, alternating.", "",
        "| setting | run 1 (ms) | run 2 (ms) |", "|---|---:|---:|",
        "| exact (default) | " + " | ".join(f"{v:.2f}" for v in results["off"]) + " |",
        "| theanine.set_flush_denormal(True) | " + " | ".join(f"{v:.2f}" for v in results["on"]) + " |",
        "",
    ]
    text = "\n".join(lines)
    print(text)
    with open(args.out, "w") as f:
        f.write(text)


if __name__ == "__main__":
    main()
