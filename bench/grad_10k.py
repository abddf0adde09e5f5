"""Time graph construction and `grad` on a 10,000-node graph; prints a markdown table.

Usage: python bench/grad_10k.py [--nodes 10000] [--repeat 3]
The gradient graph must stay linear in the size of the forward graph, so `grad` should take well
under a second here; the table also reports node counts so that a blow-up shows.
"""

from __future__ import annotations

import argparse
import platform
import time

import numpy as np

import theanine
import theanine.tensor as T
from theanine.graph.var import Var, toposort


def build_chain(n_nodes: int):
    """A long chain of elementwise ops, reductions and (when available) dots: ~n_nodes nodes."""
    x = T.matrix("x", shape=(8, 8))
    w = T.matrix("w", shape=(8, 8))
    h = x
    start = len(Var._interned)
    has_dot = hasattr(T, "dot")
    has_tanh = hasattr(T, "tanh")
    k = 0
    while True:
        step = k % 6
        if step == 0:
            h = h * w + x
        elif step == 1:
            h = T.tanh(h) if has_tanh else T.exp(h * 0.01) - 1.0
        elif step == 2:
            h = h - T.sum(h, axis=1, keepdims=True) * 0.1
        elif step == 3:
            h = T.dot(h, w) * 0.1 if has_dot else h / (w * w + 1.0)
        elif step == 4:
            h = T.log(h * h + 1.0)
        else:
            h = h + T.sum(h) * 0.001
        k += 1
        if len(Var._interned) - start >= n_nodes:  # nodes created so far (all are kept alive by h)
            break
    return x, w, T.sum(h)


def build_tree(n_leaves: int):
    """A balanced binary tree of adds and muls over many scalar-vector products."""
    x = T.vector("x", shape=(16,))
    terms = [T.exp(x * (0.01 + i * 1e-6)) for i in range(n_leaves)]  # distinct, so not interned
    level = 0
    while len(terms) > 1:
        op = (lambda a, b: a + b) if level % 2 == 0 else (lambda a, b: a * 0.5 + b * 0.5)
        pairs = range(0, len(terms), 2)
        terms = [op(terms[i], terms[i + 1]) if i + 1 < len(terms) else terms[i] for i in pairs]
        level += 1
    return x, T.sum(terms[0])


def timed(fn, *args):
    start = time.perf_counter()
    result = fn(*args)
    return time.perf_counter() - start, result


def best_grad(build, size: int, repeat: int):
    """Best of `repeat` (a fresh graph each time: interning would make re-runs cheap)."""
    best = None
    for _ in range(repeat):
        t_build, (*wrt, cost) = timed(build, size)
        t_grad, grads = timed(theanine.grad, cost, wrt)
        if best is None or t_grad < best[1]:
            best = (t_build, t_grad, cost, wrt, grads)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()

    rows = []
    for name, build, size in (
        ("chain (elemwise, sum, dot)", build_chain, args.nodes),
        ("binary tree (elemwise, sum)", build_tree, args.nodes // 4),
    ):
        t_build, t_grad, cost, wrt, grads = best_grad(build, size, args.repeat)
        n_fwd = len(toposort([cost]))
        t_topo, _ = timed(toposort, [cost] + grads)
        n_new = len(toposort([cost] + grads)) - n_fwd
        rows.append((name, n_fwd, t_build, t_grad, n_new, t_topo))
    x, g = wrt[0], grads[0]

    # A sanity check that the gradient is right, not just fast: evaluate it once on the tree.
    value = np.linspace(-1, 1, 16).astype(x.dtype)
    g_value = g.eval({x: value})
    assert g_value.shape == (16,) and np.all(np.isfinite(g_value))

    machine = platform.processor() or platform.machine()
    print(f"grad on ~{args.nodes}-node graphs; machine: {machine}, "
          f"Python {platform.python_version()}, numpy {np.__version__}; best of {args.repeat}\n")
    print("| graph | forward nodes | build (s) | grad (s) | gradient nodes added | toposort (s) |")
    print("|---|---:|---:|---:|---:|---:|")
    for name, n_fwd, t_build, t_grad, n_new, t_topo in rows:
        print(f"| {name} | {n_fwd} | {t_build:.3f} | {t_grad:.3f} | {n_new} | {t_topo:.3f} |")


if __name__ == "__main__":
    main()
