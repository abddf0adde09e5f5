"""Write a fused kernel: a traced GELU and a hand-written softplus, checked, timed and printed.

The GELU (tanh form) is written once with theanine's scalar math and becomes one named op that
fuses with its neighbours; the softplus is written per backend (a Python function numba compiles,
a CUDA C expression) with its gradient rule. Both gradients are checked against central
differences; the fused function is timed against the same graph without fusion and against numpy;
the generated numba and CUDA sources are printed with the user kernels inlined.
Usage: python examples/custom_kernel.py [--size N] [--repeat R]
"""

from __future__ import annotations

import argparse
import math
import time

import numpy as np

import theanine
import theanine.tensor as T
from theanine.kernels import elementwise, scalar_kernel


@elementwise
def gelu(x):
    """GELU, tanh approximation."""
    # x * x * x, not x**3: a kernel body is compiled as written (no rewrite turns pow into
    # multiplies inside it), and pow is a libm call in the loop
    inner = 0.7978845608028654 * (x + 0.044715 * (x * x * x))
    return 0.5 * x * (1.0 + T.tanh(inner))


def _softplus(x):
    return x if x > 20.0 else math.log1p(math.exp(x))


softplus = scalar_kernel(
    "softplus",
    numba=_softplus,
    cuda="x > (T)20 ? x : log1p(exp(x))",
    grad=lambda inputs, output, g: (g * T.nnet.sigmoid(inputs[0]),),
)


def numpy_reference(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """gelu(a) * b + 1 in numpy."""
    g = 0.5 * a * (1.0 + np.tanh(0.7978845608028654 * (a + 0.044715 * (a * a * a))))
    return g * b + np.float32(1.0)


def unfused(x, y):
    """gelu(x) * y + 1 from built-in ops, compiled without elementwise fusion below."""
    g = 0.5 * x * (1.0 + T.tanh(0.7978845608028654 * (x + 0.044715 * (x * x * x))))
    return g * y + 1.0


def best_of(fn, args, repeat: int) -> float:
    """The fastest of `repeat` calls, in milliseconds."""
    fn(*args)
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn(*args)
        times.append(time.perf_counter() - start)
    return 1e3 * min(times)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=1 << 20)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args(argv)

    # 1. the gradients, against central differences (float64)
    rng = np.random.default_rng(0)
    theanine.gradient.verify_grad(gelu, [rng.normal(size=(3, 4))], rng=rng)
    theanine.gradient.verify_grad(softplus, [rng.normal(size=(3, 4)) * 5], rng=rng)
    print("gradients of gelu and softplus agree with central differences")

    # 2. one fused kernel: both user kernels and their neighbours
    x, y = T.fvector("x"), T.fvector("y")
    out = gelu(x) * softplus(y) + 1.0
    both = theanine.function([x, y], out)
    nodes = both.maker.fgraph.toposort()
    print(f"fused graph: {len(nodes)} node(s): {', '.join(str(n.op) for n in nodes)}")
    a = rng.normal(size=args.size).astype("float32")
    b = (rng.normal(size=args.size) * 10).astype("float32")
    softplus_b = np.where(b > 20, b, np.log1p(np.exp(np.minimum(b, 20))))
    expected = numpy_reference(a, softplus_b)
    np.testing.assert_allclose(both(a, b), expected, rtol=1e-4, atol=1e-5)

    # 3. timings of gelu(x) * y + 1: fused user kernel, the unfused graph, numpy
    fused = theanine.function([x, y], gelu(x) * y + 1.0)
    np.testing.assert_allclose(fused(a, b), numpy_reference(a, b), rtol=1e-4, atol=1e-5)
    previous = theanine.config.optimizer_excluding
    theanine.config.optimizer_excluding = "fuse"  # one loop per op, as an unfused graph runs
    try:
        plain = theanine.function([x, y], unfused(x, y))
    finally:
        theanine.config.optimizer_excluding = previous
    np.testing.assert_allclose(plain(a, b), numpy_reference(a, b), rtol=1e-5, atol=1e-5)
    count = len(plain.maker.fgraph.toposort())
    rows = [
        ("fused, traced gelu (numba)", best_of(fused, (a, b), args.repeat)),
        (f"unfused graph ({count} nodes)", best_of(plain, (a, b), args.repeat)),
        ("numpy", best_of(numpy_reference, (a, b), args.repeat)),
    ]
    print(f"\n{args.size} float32 elements, best of {args.repeat}:")
    for label, ms in rows:
        print(f"  {label:<32} {ms:8.2f} ms")

    # 4. the generated sources, user kernels inlined
    for mode in ("numba", "cuda-emulator"):
        f = theanine.function([x, y], out, mode=mode)
        print(f"\n# ---- mode {mode} ----")
        theanine.printing.show_kernels(f)


if __name__ == "__main__":
    main()
