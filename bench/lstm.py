"""LSTM forward + backward (input 64, hidden 128, 50 steps, batch 32, loss on the last state).

Times theanine (modes numba and py) and, when installed, PyTorch's nn.LSTM and PyTensor (modes
NUMBA and FAST_RUN, in its own venv: bench/pytensor_venv.sh), in one run; the compile time of the
theanine function is measured cold (empty cache, new process) and warm (second process).
Usage: python bench/lstm.py [--repeat 20] [--out bench/results/lstm.md]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time

import numpy as np

BATCH, STEPS, FEATURES, HIDDEN = 32, 50, 64, 128


def theanine_step(mode: str, peepholes: bool = True):
    """A compiled function returning the loss and the gradients of every parameter. Lasagne's
    LSTMLayer has peepholes (as PyTensor's script here); nn.LSTM's cell has none."""
    import theanine
    import theanine.tensor as T
    from theanine import layers

    x = T.tensor3("x")
    net = layers.LSTMLayer(layers.InputLayer((None, STEPS, FEATURES), x), HIDDEN,
                           only_return_final=True, peepholes=peepholes)
    loss = T.mean(layers.get_output(net) ** 2)
    params = layers.get_all_params(net, trainable=True)
    return theanine.function([x], [loss, *theanine.grad(loss, params)], mode=mode)


def timed(call, repeat: int) -> tuple[float, float, float]:
    for _ in range(3):
        call()
    times = []
    for _ in range(repeat):
        tic = time.perf_counter()
        call()
        times.append(time.perf_counter() - tic)
    return 1e3 * float(np.median(times)), 1e3 * min(times), 1e3 * max(times)


def torch_row(repeat: int, data: np.ndarray):
    try:
        import torch
    except ImportError:
        return None
    torch.set_num_threads(2)
    lstm = torch.nn.LSTM(FEATURES, HIDDEN, batch_first=True)
    x = torch.from_numpy(data)

    def call():
        lstm.zero_grad()
        out, _ = lstm(x)
        (out[:, -1] ** 2).mean().backward()

    return ("PyTorch nn.LSTM (eager) " + torch.__version__, *timed(call, repeat))


PYTENSOR_PYTHON = os.environ.get("THEANINE_BENCH_PYTENSOR", "/work/venvs/pytensor/bin/python")


def pytensor_rows(repeat: int) -> list:
    """PyTensor's rows (modes NUMBA and FAST_RUN, its C backend), run by bench/lstm_pytensor.py in
    PyTensor's own venv (it pins numba <= 0.65.1) with an empty compile directory each."""
    if not os.path.exists(PYTENSOR_PYTHON):
        return []
    rows = []
    for mode in ("NUMBA", "FAST_RUN"):
        env = dict(os.environ, PYTENSOR_FLAGS=f"compiledir={tempfile.mkdtemp(prefix='pt-')}",
                   NUMBA_CACHE_DIR=tempfile.mkdtemp(prefix="pt-numba-"))
        script = os.path.join(os.path.dirname(os.path.abspath(__file__)), "lstm_pytensor.py")
        out = subprocess.run([PYTENSOR_PYTHON, script, "--mode", mode, "--repeat", str(repeat)],
                             env=env, capture_output=True, text=True)
        if out.returncode != 0:
            rows.append((f"PyTensor {mode}: failed ({out.stderr.strip().splitlines()[-1]})",
                         float("nan"), float("nan"), float("nan")))
            continue
        r = json.loads(out.stdout.strip().splitlines()[-1])
        name = f"PyTensor {r['pytensor']} {mode} (numba {r['numba']}; compile {r['compile_s']:.1f} s)"
        rows.append((name, r["median_ms"], r["min_ms"], r["max_ms"]))
    return rows


def json_from_own_process(code: str, env: dict | None = None):
    """The JSON value a fresh Python running `code` (from the repo root) prints last, or None
    when it fails (a peer not installed)."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=root,
                         env=env)
    if out.returncode != 0:
        return None
    return json.loads(out.stdout.strip().splitlines()[-1])


def torch_row_in_own_process(repeat: int):
    """torch_row in a process of its own: PyTorch's OpenMP pool and numba's (and the BLAS pools)
    in one process take each other's cores on 2 cores (nn.LSTM measured 21.9 ms beside theanine
    in one process, against 4-5 ms alone)."""
    code = (
        "import sys, json, numpy as np; sys.path.insert(0, 'bench'); import lstm; "
        "data = np.random.default_rng(0).normal(size=(lstm.BATCH, lstm.STEPS, lstm.FEATURES))"
        f".astype('float32'); print(json.dumps(lstm.torch_row({repeat}, data)))"
    )
    row = json_from_own_process(code)
    return tuple(row) if row else None


# The matrix products of one forward + backward pass: (name, m, k, n, calls per pass)
PRODUCTS = [
    ("step forward h @ W_hid", BATCH, HIDDEN, 4 * HIDDEN, STEPS),
    ("step backward dgates @ W_hid.T", BATCH, 4 * HIDDEN, HIDDEN, STEPS),
    ("input projection x @ W_in", BATCH * STEPS, FEATURES, 4 * HIDDEN, 1),
    ("dW_in = x.T @ dgates", FEATURES, BATCH * STEPS, 4 * HIDDEN, 1),
    ("dW_hid = h.T @ dgates", HIDDEN, BATCH * STEPS, 4 * HIDDEN, 1),
    # what theanine runs for the two above (merge_sibling_products): not counted in the totals
    ("[dW_in dW_hid] = [x h].T @ dgates", FEATURES + HIDDEN, BATCH * STEPS, 4 * HIDDEN, 0),
]


def product_microseconds(repeat: int) -> list[float]:
    """Microseconds per product of each shape in PRODUCTS through theanine's BLAS (the library
    config.blas__library chose): the step shapes as the compiled loop calls them (cblas.matmul in
    numba), the others as the plan does (GEMM called from Python)."""
    import numba

    from theanine.kernels.numba import cblas
    from theanine.kernels.numba.linalg import real_gemm

    @numba.njit
    def loop(a, b, n):
        total = 0.0
        for _ in range(n):
            total += cblas.matmul(a, b)[0, 0]
        return total

    @numba.njit
    def transposed_loop(a, b, n):  # OpenBLAS: the loop's form for a weight of k >= 2n rows
        bt = np.ascontiguousarray(b.T)
        out = np.empty((a.shape[0], b.shape[1]), a.dtype)
        for _ in range(n):
            ct = cblas.matmul(bt, a.T)
            for i0 in range(out.shape[0]):
                for i1 in range(out.shape[1]):
                    out[i0, i1] = ct[i1, i0]
        return out[0, 0]

    rng = np.random.default_rng(1)
    out = []
    for _, m, k, n, calls in PRODUCTS:
        a = rng.normal(size=(m, k)).astype("float32")
        b = rng.normal(size=(k, n)).astype("float32")
        if calls > 1:  # a loop's step
            tall = k >= 2 * n and cblas.library() == "openblas"
            run = transposed_loop if tall else loop
            run(a, b, 3)
            tic = time.perf_counter()
            run(a, b, repeat * 50)
            out.append(1e6 * (time.perf_counter() - tic) / (repeat * 50))
        else:
            out.append(1e3 * timed(lambda: real_gemm(a, b), repeat)[0])
    return out


def torch_product_microseconds(repeat: int) -> list[float] | None:
    """The same products through torch.mm (MKL), in a process of its own, 2 threads."""
    code = (
        "import sys, json, time, torch; sys.path.insert(0, 'bench'); import lstm; "
        "torch.set_num_threads(2); out = []\n"
        "for _, m, k, n, calls in lstm.PRODUCTS:\n"
        "    a, b = torch.randn(m, k), torch.randn(k, n)\n"
        "    for _ in range(20): torch.mm(a, b)\n"
        f"    reps = {repeat} * (50 if calls > 1 else 1); tic = time.perf_counter()\n"
        "    for _ in range(reps): torch.mm(a, b)\n"
        "    out.append(1e6 * (time.perf_counter() - tic) / reps)\n"
        "print(json.dumps(out))"
    )
    return json_from_own_process(code)


def product_lines(repeat: int) -> list[str]:
    from theanine.kernels.numba import cblas

    ours, theirs = product_microseconds(repeat), torch_product_microseconds(repeat)
    lines = [
        "",
        "The matrix products alone (the floor under both): microseconds per product, theanine's "
        f"BLAS ({cblas.LIBRARY.detail}, as the compiled loop and the plan call it) against "
        "torch.mm (PyTorch's MKL), 2 threads each, and milliseconds per forward + backward pass.",
        "",
        "| product (m x k x n) | calls | theanine (us) | torch.mm (us) |",
        "|---|---:|---:|---:|",
    ]
    total_ours = total_theirs = 0.0
    for k, (name, m, kk, n, calls) in enumerate(PRODUCTS):
        theirs_k = f"{theirs[k]:.1f}" if theirs else "-"
        shown = calls if calls else "(the two above, as theanine runs them)"
        lines.append(f"| {name} ({m} x {kk} x {n}) | {shown} | {ours[k]:.1f} | {theirs_k} |")
        total_ours += calls * ours[k] / 1e3
        total_theirs += calls * theirs[k] / 1e3 if theirs else 0.0
    theirs_total = f"**{total_theirs:.2f}**" if theirs else "-"
    lines.append(f"| **per pass (ms)** | | **{total_ours:.2f}** | {theirs_total} |")
    return lines


def theanine_row_in_own_process(library: str, peepholes: bool, repeat: int):
    """The theanine numba row on another BLAS library (config.blas__library is read once per
    process, when the numba backend loads), in a process of its own."""
    code = (
        "import sys, json, numpy as np; sys.path.insert(0, 'bench'); import lstm; "
        "data = np.random.default_rng(0).normal(size=(lstm.BATCH, lstm.STEPS, lstm.FEATURES))"
        f".astype('float32'); step = lstm.theanine_step('numba', {peepholes}); "
        f"print(json.dumps(lstm.timed(lambda: step(data), {repeat})))"
    )
    row = json_from_own_process(code, dict(os.environ, THEANINE_FLAGS=f"blas__library={library}"))
    return tuple(row) if row else None


def first_call_seconds(mode: str, cache: str) -> float:
    """Build, compile and run once in a new process with the given cache directory."""
    code = (
        "import time, numpy as np; t = time.perf_counter(); import sys; sys.path.insert(0, 'bench'); "
        f"from lstm import theanine_step, BATCH, STEPS, FEATURES; f = theanine_step({mode!r}); "
        "f(np.zeros((BATCH, STEPS, FEATURES), dtype='float32')); print(time.perf_counter() - t)"
    )
    env = dict(os.environ, THEANINE_CACHE=cache)
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    return float(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=20)
    parser.add_argument("--out", default="bench/results/lstm.md")
    args = parser.parse_args()
    data = np.random.default_rng(0).normal(size=(BATCH, STEPS, FEATURES)).astype("float32")
    from theanine.kernels.numba import cblas

    rows = []
    blas = "MKL" if cblas.library() == "mkl" else "OpenBLAS"
    runs = [(f"theanine numba ({blas})", "numba", True), ("theanine py", "py", True),
            (f"theanine numba ({blas}), no peepholes (nn.LSTM's cell)", "numba", False)]
    for name, mode, peepholes in runs:
        step = theanine_step(mode, peepholes)
        rows.append((name, *timed(lambda: step(data), args.repeat)))
    if cblas.library() == "mkl":  # the default library without the mkl extra, for comparison
        for peepholes, suffix in ((True, ""), (False, ", no peepholes")):
            row = theanine_row_in_own_process("openblas", peepholes, args.repeat)
            if row:
                rows.append((f"theanine numba (OpenBLAS: blas__library=openblas){suffix}", *row))
    peer = torch_row_in_own_process(args.repeat)
    if peer:
        rows.append(peer)
    rows += pytensor_rows(args.repeat)
    cache = tempfile.mkdtemp(prefix="theanine-bench-")
    cold, warm = first_call_seconds("numba", cache), first_call_seconds("numba", cache)
    load = os.getloadavg()
    lines = [
        "# LSTM forward + backward: input 64, hidden 128, 50 steps, batch 32, loss on the last state",
        "",
        f"Command: `python bench/lstm.py`; machine: {platform.machine()}, {os.cpu_count()} cores, Python "
        f"{platform.python_version()}, numpy {np.__version__}; load average at the end {load[0]:.1f}. "
        "Medians of repeated calls, measured in one run; theanine in this process, PyTorch and "
        "PyTensor each in a process of its own (thread pools of two libraries in one process "
        "take each other's cores). theanine and PyTensor run Lasagne's LSTM cell (with "
        "peepholes); nn.LSTM's cell has none, as the no-peepholes row.",
        "",
        "| runner | median (ms) | min (ms) | max (ms) |",
        "|---|---:|---:|---:|",
        *[f"| {name} | {median:.2f} | {low:.2f} | {high:.2f} |" for name, median, low, high in rows],
        "",
        f"theanine numba, build + compile + first call in a new process: {cold:.2f} s with an empty cache, "
        f"{warm:.2f} s with a warm cache.",
    ]
    if peer:
        ratios = [f"{name}: {median / peer[1]:.2f}x" for name, median, _, _ in rows
                  if name.startswith("theanine numba")]
        lines += ["", "Median / PyTorch nn.LSTM's median: " + "; ".join(ratios) + "."]
    lines += product_lines(args.repeat)
    if not peer:
        lines.append("\nPyTorch is not installed here, so it has no row (`pip install torch==2.13.0`).")
    text = "\n".join(lines)
    print(text)
    with open(args.out, "w") as f:
        f.write(text + "\n")
    with open(args.out.replace(".md", ".json"), "w") as f:
        json.dump({"rows": rows, "cold_s": cold, "warm_s": warm}, f, indent=1)


if __name__ == "__main__":
    main()
