"""The report of bench/run.py: the machine, markdown tables with issue 4's targets, a chart."""

from __future__ import annotations

import glob
import json
import os
import platform
import sys
import time

import numpy as np
import peers

# Issue 4's targets for mode numba: (what, peer or None for seconds, factor), met when
# theanine <= factor x peer (or <= factor seconds).
TARGETS = {
    "chain_2^22": ("steady", "jax", 1.0),
    "chain_2^24": ("steady", "jax", 0.5),
    "mlp_step": ("steady", "jax", 1.0),
    "cnn_step": ("steady", "torch eager", 1.0),
    "mlp_step cold": ("cold", None, 3.0),
    "mlp_step warm": ("warm", "jax", 1.0),
    "cnn_step cold": ("cold", None, 5.0),
}


def numpy_blas() -> dict:
    """The OpenBLAS that numpy loaded: its kernel (core name), build config and thread count."""
    import ctypes

    try:
        folder = os.path.dirname(np.__file__) + ".libs"
        lib = ctypes.CDLL(glob.glob(os.path.join(folder, "*openblas*"))[0])
        found = {}
        for key, symbol in (("core", "corename"), ("config", "config")):
            function = getattr(lib, f"scipy_openblas_get_{symbol}64_")
            function.restype = ctypes.c_char_p
            found[key] = function().decode()
        found["threads"] = lib.scipy_openblas_get_num_threads64_()
        return found
    except (IndexError, OSError, AttributeError) as error:
        return {"unknown": str(error)}


def threads() -> dict:
    """Thread settings of the libraries this process used (read after the runs)."""
    found = {}
    if "torch" in sys.modules:
        found["torch_threads"] = sys.modules["torch"].get_num_threads()
    if "numba" in sys.modules:
        numba = sys.modules["numba"]
        found["numba_threads"] = numba.get_num_threads()
        try:
            found["numba_threading_layer"] = numba.threading_layer()
        except ValueError:  # no parallel region ran
            pass
    return found


def machine() -> dict:
    """CPU model, cores, load, BLAS settings, date and library versions."""
    model = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as handle:
            model = next(
                line.split(":", 1)[1].strip() for line in handle if line.startswith("model name")
            )
    except (OSError, StopIteration):
        pass
    return {
        "date_utc": time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime()),
        "cpu": model,
        "cores": os.cpu_count(),
        "platform": platform.platform(),
        "load_average_at_start": os.getloadavg(),
        "OPENBLAS_CORETYPE": os.environ.get("OPENBLAS_CORETYPE"),
        "OPENBLAS_L2_SIZE": os.environ.get("OPENBLAS_L2_SIZE"),
        "numpy_blas": numpy_blas(),
        "versions": peers.versions(),
    }


def _ms(seconds: float) -> str:
    return f"{seconds * 1e3:.3f}" if seconds < 0.1 else f"{seconds * 1e3:.1f}"


def verdict(value: float, reference: float | None, factor: float) -> str:
    """'met' or 'missed' for value <= factor x reference, with the ratio."""
    if reference is None:
        return "n/a (peer not measured)"
    ratio = value / reference
    return f"{ratio:.2f} ({'met' if ratio <= factor + 1e-12 else 'missed'}, target <= {factor:g})"


def steady_table(workload: str, rows: list, ours: str) -> list[str]:
    """Markdown lines: one workload's steady-state table and its ratios."""
    done = [r for r in rows if r["workload"] == workload and "median_s" in r]
    by = {r["runner"]: r for r in done}
    lines = [
        f"### {workload}: steady state per call (ms)",
        "",
        (
            "| runner | median | min | max | calls | first call in this process (s) "
            f"| {ours} / runner | check: sum of the first result |"
        ),
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in sorted(done, key=lambda r: r["median_s"]):
        ratio = by[ours]["median_s"] / r["median_s"] if ours in by else float("nan")
        lines.append(
            f"| {r['runner']} | {_ms(r['median_s'])} | {_ms(r['min_s'])} | "
            f"{_ms(r['max_s'])} | {r['samples']} | {r['first_call_in_process_s']:.2f} "
            f"| {ratio:.2f} | {r['check']:.6g} |"
        )
    for r in rows:
        if r["workload"] == workload and "error" in r:
            lines.append(f"| {r['runner']} | failed: {r['error'][:150]} | | | | | | |")
    lines.append("")
    if done:  # every runner starts from the same data and parameters: the first results agree
        reference = by[ours]["check"] if ours in by else done[0]["check"]
        off = [
            r["runner"]
            for r in done
            if abs(r["check"] - reference) > 1e-3 * max(abs(reference), 1e-6)
        ]
        lines.append(
            f"- checks agree within 1e-3 relative: "
            f"{'yes' if not off else 'NO, differing: ' + ', '.join(off)}"
        )
    others = [r for r in done if not r["runner"].startswith("theanine ")]
    if ours in by and others:
        best = min(others, key=lambda r: r["median_s"])
        lines.append(
            f"- {ours} / best peer ({best['runner']}): "
            f"{by[ours]['median_s'] / best['median_s']:.2f}"
        )
        _, peer, factor = TARGETS.get(workload, (None, None, None))
        if peer:
            reference = by[peer]["median_s"] if peer in by else None
            lines.append(
                f"- issue 4 target, {ours} <= {factor:g} x {peer}: "
                f"{verdict(by[ours]['median_s'], reference, factor)}"
            )
    return lines + [""]


def first_step_table(workload: str, rows: list, ours: str) -> list[str]:
    """Markdown lines: one workload's time to first step, cold and warm, and the targets."""
    done = [r for r in rows if r["workload"] == workload]
    lines = [
        f"### {workload}: time to first step (s) in a fresh process",
        "",
        (
            "| runner | import (cold) | first step, empty caches | import (warm) "
            "| first step, warm caches |"
        ),
        "|---|---|---|---|---|",
    ]
    value = {}
    for r in done:
        cells = []
        for phase in ("cold", "warm"):
            got = r[phase]
            if "error" in got:
                cells += ["-", f"failed: {got['error'][-150:]}"]
            else:
                cells += [f"{got['import_s']:.2f}", f"{got['first_step_s']:.2f}"]
                value[(r["runner"], phase)] = got["first_step_s"]
        lines.append(f"| {r['runner']} | " + " | ".join(cells) + " |")
    lines.append("")
    for phase in ("cold", "warm"):
        peer_values = {r: v for (r, p), v in value.items() if p == phase and "theanine" not in r}
        if (ours, phase) in value and peer_values:
            best = min(peer_values, key=peer_values.get)
            lines.append(
                f"- {phase}: {ours} / best peer ({best}): "
                f"{value[(ours, phase)] / peer_values[best]:.2f}"
            )
    for phase in ("cold", "warm"):
        target = TARGETS.get(f"{workload} {phase}")
        if target is None or (ours, phase) not in value:
            continue
        _, peer, factor = target
        if peer is None:
            ok = "met" if value[(ours, phase)] <= factor else "missed"
            lines.append(
                f"- issue 4 target, {phase}: {ours} <= {factor:g} s: "
                f"{value[(ours, phase)]:.2f} s ({ok})"
            )
        else:
            lines.append(
                f"- issue 4 target, {phase}: {ours} <= {factor:g} x {peer}: "
                f"{verdict(value[(ours, phase)], value.get((peer, phase)), factor)}"
            )
    return lines + [""]


NOTES = [
    (
        "Steady state: every runner is built in one process (PyTensor in a server process of its "
        "own venv, driven in the same rounds); rounds alternate between runners, rotating who "
        "goes first; each block's first call is excluded, as are the first call and two warm-up "
        "calls."
    ),
    (
        "Time to first step: a fresh process per run; library imports are timed apart (theanine's"
        " import includes numba's for mode numba); 'first step' = data ready -> graph built, "
        "compiled, called once. Cold: empty THEANINE_CACHE, NUMBA_CACHE_DIR, "
        "TORCHINDUCTOR_CACHE_DIR and PyTensor base_compiledir; warm: a second process with the "
        "caches the cold one filled."
    ),
    (
        "check: the float64 sum of each runner's first result (the loss of the first training "
        "step, or the chain's output): all start from the same data and parameters, so they must "
        "agree."
    ),
    (
        "JAX's persistent compilation cache is off by default and left off, so its cold and warm "
        "first steps both compile everything (cold == warm up to noise)."
    ),
    (
        "JAX: jax.jit of the whole step (value_and_grad + SGD) with donate_argnums on the "
        "parameters. torch: autograd + torch.optim.SGD; torch.compile compiles the loss (forward;"
        " backward via AOTAutograd), the optimizer step runs eagerly. numpy: the MLP's backward "
        "written by hand."
    ),
    (
        "CNN: conv 5x5x20 + bias, relu, maxpool 2 -> conv 5x5x50 + bias, relu, maxpool 2 -> dense"
        " 500 relu -> dense 10 softmax cross-entropy, SGD (cross-correlation in every runner). "
        "PyTensor 3 has no batched multi-channel conv2d or pool op: its CNN uses im2col by "
        "slicing + tensordot and max pooling as reshape + max."
    ),
    (
        "PyTensor runs in its own venv (numba 0.65 there; see the 'PyTensor venv' line above for "
        "its versions, C compiler and BLAS flags). Its C mode is FAST_RUN (C code compiled with "
        "that g++); installed by pip it finds no BLAS (blas__ldflags empty) and uses its fallback."
    ),
]


def markdown(result: dict) -> str:
    """The whole report."""
    m = result["machine"]
    ours = result["ours"]
    lines = [
        "# bench/run.py results",
        "",
        f"Command: `python {result.get('command', 'bench/run.py')}`",
        "",
        (
            f"{m['date_utc']} UTC; {m['cpu']}, {m['cores']} cores; load average at start "
            f"{', '.join(f'{x:.2f}' for x in m['load_average_at_start'])}, at end "
            f"{', '.join(f'{x:.2f}' for x in m.get('load_average_at_end', ()))}; "
            f"OPENBLAS_CORETYPE={m['OPENBLAS_CORETYPE']}; quick={result['quick']}"
        ),
        "",
        "Versions: " + ", ".join(f"{k} {v}" for k, v in m["versions"].items()),
        "",
        f"numpy's BLAS: {json.dumps(m['numpy_blas'])}; threads: {json.dumps(m.get('threads', {}))}",
        "",
    ]
    if result.get("pytensor"):
        lines += [f"PyTensor venv: {json.dumps(result['pytensor'])}", ""]
    lines += ["## Steady state", ""]
    for workload in result["workloads"]:
        lines += steady_table(workload, result["steady"], ours)
    if result["first_step"]:
        lines += ["## Time to first step", ""]
        for workload in dict.fromkeys(r["workload"] for r in result["first_step"]):
            lines += first_step_table(workload, result["first_step"], ours)
    if result.get("cuda"):
        import roofline

        lines += [
            "## CUDA",
            "",
            f"Mode 'cuda' could not start: {result['cuda']['no_gpu']}",
            "",
            "So each CUDA kernel of mode 'cuda-emulator' is MODELLED below, not measured.",
            "",
        ]
        for workload, model in result["cuda"]["models"].items():
            lines.append(
                roofline.markdown(workload, model)
                if "error" not in model
                else f"### {workload}: model failed: {model['error']}\n"
            )
    lines += ["## Notes", ""] + [f"- {note}" for note in NOTES]
    return "\n".join(lines) + "\n"


def chart(result: dict, path: str) -> bool:
    """Bar chart of steady medians per workload (only when matplotlib is installed)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    rows = [r for r in result["steady"] if "median_s" in r]
    workloads = list(dict.fromkeys(r["workload"] for r in rows))
    figure, axes = plt.subplots(1, max(1, len(workloads)), figsize=(4 * max(1, len(workloads)), 4))
    for ax, workload in zip(np.atleast_1d(axes), workloads):
        mine = [r for r in rows if r["workload"] == workload]
        ax.barh([r["runner"] for r in mine], [r["median_s"] * 1e3 for r in mine])
        ax.set_title(workload)
        ax.set_xlabel("ms per call (median)")
        ax.set_xscale("log")
    figure.tight_layout()
    figure.savefig(path)
    plt.close(figure)
    return True


# --- main -----------------------------------------------------------------------------------------
