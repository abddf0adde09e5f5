"""Peak memory allocated per call of an MLP training step, without and with buffer reuse (mode py).

Usage: python bench/memory_step.py [--out bench/results/memory_step.md]
numpy reports its allocations to tracemalloc, so the peak counts every array a call creates.
"""

from __future__ import annotations

import argparse
import platform
import sys
import tracemalloc
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "examples"))

import theanine  # noqa: E402
import theanine.kernels.py as py_backend  # noqa: E402
from mlp import build  # noqa: E402


def peak_bytes(reuse: bool, batch: int = 128) -> tuple[int, float]:
    py_backend.REUSE_BUFFERS = reuse
    train, _, _ = build([784, 1000, 10], seed=0, mode="py")
    rng = np.random.default_rng(0)
    x = rng.random((batch, 784), dtype="float32")
    y = rng.integers(0, 10, batch).astype("int32")
    lr = np.float32(0.01)
    train(x, y, lr)  # warm up
    tracemalloc.start()
    tracemalloc.reset_peak()
    base = tracemalloc.get_traced_memory()[0]
    loss, _ = train(x, y, lr)
    peak = tracemalloc.get_traced_memory()[1] - base
    tracemalloc.stop()
    return peak, float(loss)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="bench/results/memory_step.md")
    args = parser.parse_args()
    before, loss_before = peak_bytes(reuse=False)
    after, loss_after = peak_bytes(reuse=True)
    assert loss_before == loss_after, "buffer reuse must not change the values"
    text = "\n".join([
        "# Peak bytes allocated by one MLP training step (784-1000-10, batch 128, float32, mode py)",
        "",
        f"Command: `python bench/memory_step.py`; machine: {platform.machine()}, 2 cores, Python "
        f"{platform.python_version()}, numpy {np.__version__}. Measured with tracemalloc; same loss both ways.",
        "",
        "| buffer reuse | peak bytes per call | MiB |",
        "|---|---:|---:|",
        f"| off | {before} | {before / 2**20:.2f} |",
        f"| on (elementwise and GEMM results written over dead intermediates; updates written into the shared storage) | {after} | {after / 2**20:.2f} |",
        "",
        f"Reduction: {100 * (1 - after / before):.1f} %.",
    ])
    print(text)
    Path(args.out).write_text(text + "\n")


if __name__ == "__main__":
    main()
