"""The rewrite pipeline: the one function that orders every graph pass before backend lowering."""

from __future__ import annotations

import gc
from typing import Sequence

from ..graph.config import config
from ..graph.var import Var
from .fuse import fuse_elementwise
from .fuse_reduce import fuse_reductions
from .rewrite import PassReport, Rule, rewrite
from .rules.canonical import canonical, drop_gradient_ops
from .rules.specialize import merge_max_and_argmax, specialize
from .rules.stability import stability

# Passes that fast_compile keeps: cheap, and needed for safety (stable values) or for small graphs.
FAST_COMPILE_PASSES = ("canonicalize", "stabilize")


def _excluded() -> set[str]:
    return {name for name in config.optimizer_excluding.split(":") if name}


def _rules(rules: Sequence[Rule], excluded: set[str]) -> list[Rule]:
    return [r for r in rules if r.name not in excluded]


def optimize(outputs: Sequence[Var], backend=None, report: list | None = None) -> list[Var]:
    """Rewrite `outputs` for `backend`: returns the same number of Vars computing the same values.

    The order: canonicalize (fold constants, normal forms, identities, shapes) -> drop the gradient-
    shaping ops -> stabilize -> specialize (sqr, gemm, ...) -> max+argmax -> scan and ifelse bodies
    (pruned, loop-invariant work hoisted, each body optimized by this same function) -> products
    sharing an operand merged into one -> fuse elementwise
    -> fuse reductions with the elementwise work feeding them (sum of squares in one pass).
    THEANINE_FLAGS: optimizer=None skips everything, optimizer=fast_compile keeps only canonicalize and
    stabilize, optimizer_excluding=a:b drops rules or whole passes by name.
    """
    outputs = list(outputs)
    mode = config.optimizer
    if mode == "None":
        return outputs
    # Rewriting allocates many small acyclic objects; the cycle collector would rescan the whole
    # heap again and again (the same pause as in autodiff.backprop).
    paused = gc.isenabled()
    gc.disable()
    try:
        return _optimize(outputs, backend, report)
    finally:
        if paused:
            gc.enable()


def _optimize(outputs: list[Var], backend, report: list | None) -> list[Var]:
    mode = config.optimizer
    excluded = _excluded()
    fast = mode == "fast_compile"

    def run(name: str, rules: Sequence[Rule]) -> None:
        nonlocal outputs
        if name in excluded or (fast and name not in FAST_COMPILE_PASSES):
            return
        outputs = rewrite(outputs, _rules(rules, excluded), name=name, report=report)

    run("canonicalize", canonical)
    run("drop_gradient_ops", drop_gradient_ops)
    run("stabilize", canonical + stability)
    run("specialize", canonical + specialize)
    if not fast and "max_and_argmax" not in excluded:
        outputs = _timed("max_and_argmax", merge_max_and_argmax, outputs, report)
    if "scan" not in excluded:  # loop and branch bodies: prune, hoist, save memory, rewrite inside
        from .scan_rewrites import optimize_scans

        outputs = _timed("scan", lambda outs: optimize_scans(outs, lambda inner: optimize(inner, backend)),
                         outputs, report)
    if not fast and "merge_products" not in excluded:  # gradients sharing a cotangent
        from .products import merge_sibling_products

        outputs = _timed("merge_products", merge_sibling_products, outputs, report)
    if not fast and "fuse" not in excluded:
        supported = backend.supported if backend is not None else (lambda var: True)
        outputs = _timed("fuse", lambda outs: fuse_elementwise(outs, supported), outputs, report)
    if not fast and not {"fuse", "fuse_reduce"} & excluded:  # reductions absorb the work feeding them
        outputs = _fuse_reductions(outputs, backend, report)
    return outputs


def _fuse_reductions(outputs: list[Var], backend, report: list | None) -> list[Var]:
    """Reductions fed by elementwise work, fused where the backend computes the pair in one pass."""
    if backend is None:  # the reference interpreter runs any FusedReduce's perform
        supported, reducible = (lambda var: True), (lambda var: True)
    else:
        supported = backend.supported
        reducible = getattr(backend, "supported_reduction", None)
        if reducible is None:  # a backend that does not say: nothing to fuse
            return outputs
    return _timed(
        "fuse_reduce", lambda outs: fuse_reductions(outs, reducible, supported), outputs, report
    )


def _timed(name: str, pass_, outputs: list[Var], report: list | None) -> list[Var]:
    import time

    tic = time.perf_counter()
    result = pass_(outputs)
    if report is not None:
        report.append(PassReport(name, seconds=time.perf_counter() - tic))
    return result
