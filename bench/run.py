"""Benchmark harness: workloads x theanine backends x installed peers; first-step and steady times.

Usage: python bench/run.py [--quick] [--workloads chain_2^22,mlp_step] [--backend numba,cuda]
           [--peers jax,numpy] [--no-first-step] [--name NAME] [--out DIR] [--pytensor-python PATH]
Writes DIR/<name>.md and .json (and .png when matplotlib is installed); DIR defaults to
bench/results. Time to first step (build + compile + first call, imports timed apart) is measured
in fresh processes, cold (empty caches) then warm (the caches the cold run filled). Steady-state
times are medians (with min and max) of calls made in rounds that alternate between all runners in
one process (PyTensor runs in a server process of its own venv, driven in the same rounds); the
first call of every block is excluded. With `--backend cuda` and no GPU, a roofline MODEL of each
CUDA kernel (bench/roofline.py) is printed instead of a measurement; `--backend none` times the
peers only. `--quick`: chain_2^22 and mlp_step, the peers in QUICK_PEERS, short rounds.
PyTensor runs under --pytensor-python, $THEANINE_BENCH_PYTENSOR or DEFAULT_PYTENSOR (made by
bench/pytensor_venv.sh); it is skipped when none exists.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)  # bench/ holds scripts, not a package
import peers  # numpy-only: it also runs under PyTensor's venv
import report  # the markdown report, chart and machine description

DEFAULT_PYTENSOR = "/work/venvs/pytensor/bin/python"
FIRST_STEP_WORKLOADS = ("mlp_step", "cnn_step")
FIRST_STEP_PEERS = ("jax", "torch.compile", "pytensor C", "pytensor NUMBA")
REMOTE = ("pytensor C", "pytensor NUMBA")
QUICK_PEERS = ("numpy", "numexpr", "jax", "torch eager")  # --quick: the peers that compile fast
SUBPROCESS_TIMEOUT = 420  # PyTensor NUMBA's cold CNN compile took 211 s in issue 4


# --- the workloads in theanine --------------------------------------------------------------------


def build_theanine(workload: str, mode: str, d: dict) -> tuple:
    """(compiled function, its argument list) for a workload in a theanine mode."""
    import theanine
    import theanine.tensor as T

    if workload.startswith("chain"):
        x, w, b, y = (T.fvector(name) for name in "xwby")
        out = T.tanh(x * w + b) * T.nnet.sigmoid(y) + 0.5 * x**2
        return theanine.function([x, w, b, y], out, mode=mode), [d[k] for k in "xwby"]
    p = {k: theanine.shared(d[k].copy(), name=k) for k in peers.PARAMS[workload]}
    labels = T.lvector("labels")
    if workload == "mlp_step":
        x = T.fmatrix("x")
        z = T.dot(T.nnet.relu(T.dot(x, p["w1"]) + p["b1"]), p["w2"]) + p["b2"]
    else:
        from theanine.tensor.signal.pool import pool_2d

        x = T.ftensor4("x")

        def conv(h, w, b):
            out = T.nnet.conv2d(h, w, filter_flip=False) + b.dimshuffle("x", 0, "x", "x")
            return pool_2d(T.nnet.relu(out), ws=(2, 2), ignore_border=True)

        h = conv(conv(x, p["c1"], p["cb1"]), p["c2"], p["cb2"]).flatten(2)
        z = T.dot(T.nnet.relu(T.dot(h, p["w3"]) + p["b3"]), p["w4"]) + p["b4"]
    loss = T.mean(T.nnet.categorical_crossentropy(T.nnet.softmax(z), labels))
    params = list(p.values())
    updates = [(v, v - np.float32(peers.LR) * g) for v, g in zip(params, T.grad(loss, params))]
    f = theanine.function([x, labels], loss, updates=updates, mode=mode)
    return f, [d["x"], d["labels"]]


def theanine_first_step(workload: str, mode: str) -> dict:
    """In a fresh process: import time (theanine, and numba for mode numba), then first step."""
    start = time.perf_counter()
    import theanine  # noqa: F401

    if mode == "numba":
        import numba  # noqa: F401
    imported = time.perf_counter()
    d = peers.data(workload)
    begin = time.perf_counter()
    f, args = build_theanine(workload, mode, d)
    f(*args)
    return {"import_s": imported - start, "first_step_s": time.perf_counter() - begin}


# --- fresh processes: time to first step ----------------------------------------------------------


def cache_env(root: str) -> dict:
    """Environment giving every library its own cache under `root` (JAX's is off by default).

    NUMBA_CACHE_DIR also catches the numba cache of theanine's hand-written kernels (kept in the
    package's __pycache__ otherwise), so a cold run compiles those too.
    """
    flags = os.environ.get("PYTENSOR_FLAGS", "")
    return dict(
        os.environ,
        THEANINE_CACHE=os.path.join(root, "theanine"),
        NUMBA_CACHE_DIR=os.path.join(root, "numba"),
        TORCHINDUCTOR_CACHE_DIR=os.path.join(root, "inductor"),
        PYTENSOR_FLAGS=",".join(f for f in (flags, f"base_compiledir={root}/pytensor") if f),
    )


def fresh_process(runner: str, workload: str, root: str, pytensor_python: str | None) -> dict:
    """Import and first-step seconds of one runner in a fresh process with caches under `root`."""
    if runner.startswith("theanine "):
        command = [sys.executable, __file__, "--first-step-worker", workload, runner.split()[1]]
    else:
        python = pytensor_python if runner in REMOTE else sys.executable
        command = [python, os.path.join(HERE, "peers.py"), "--first-step", runner, workload]
    try:
        done = subprocess.run(
            command,
            env=cache_env(root),
            capture_output=True,
            text=True,
            timeout=SUBPROCESS_TIMEOUT,
            check=False,
        )
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {SUBPROCESS_TIMEOUT} s"}
    if done.returncode:
        return {"error": done.stderr.strip()[-600:]}
    return json.loads(done.stdout.strip().splitlines()[-1])


def first_step_root(scratch: str, runner: str, workload: str) -> str:
    """The cache root of one runner's first-step runs on one workload."""
    return os.path.join(scratch, "first", runner.replace(" ", "_"), workload)


TOO_SLOW: set = set()  # (runner, workload) whose cold first step timed out: not timed again


def first_steps(workloads, runners, pytensor_python, scratch: str) -> list:
    """Cold then warm time to first step of each runner; the cache dirs are kept in `scratch`."""
    rows = []
    for workload in workloads:
        for runner in runners:
            if not runner.startswith("theanine ") and workload not in peers.PEERS[runner]:
                continue
            root = first_step_root(scratch, runner, workload)
            os.makedirs(root, exist_ok=True)
            row = {"workload": workload, "runner": runner}
            row["cold"] = fresh_process(runner, workload, root, pytensor_python)
            if "timed out" in row["cold"].get("error", ""):  # keeps the whole run bounded
                row["warm"] = {"error": "skipped: the cold run timed out"}
                TOO_SLOW.add((runner, workload))
            else:
                row["warm"] = fresh_process(runner, workload, root, pytensor_python)
            print(json.dumps(row), flush=True)
            rows.append(row)
    return rows


def merge_caches(scratch: str, family: str) -> str:
    """One cache root holding what the first-step runs of a family of runners wrote."""
    target = os.path.join(scratch, "steady", family)
    first = os.path.join(scratch, "first")
    for runner in sorted(os.listdir(first)) if os.path.isdir(first) else []:
        if family not in runner:
            continue
        for workload in os.listdir(os.path.join(first, runner)):
            shutil.copytree(os.path.join(first, runner, workload), target, dirs_exist_ok=True)
    os.makedirs(target, exist_ok=True)
    return target


# --- steady state ---------------------------------------------------------------------------------


class Local:
    """A runner in this process: a zero-argument step callable."""

    def __init__(self, step: Callable) -> None:
        self.step = step

    def block(self, calls: int) -> list[float]:
        """Seconds of each of `calls` consecutive calls."""
        times = []
        for _ in range(calls):
            start = time.perf_counter()
            self.step()
            times.append(time.perf_counter() - start)
        return times


def request(server: subprocess.Popen, payload: dict) -> dict:
    """Send one request to the PyTensor server and wait for its answer (an error: RuntimeError)."""
    try:
        server.stdin.write(json.dumps(payload) + "\n")
        server.stdin.flush()
    except BrokenPipeError:
        raise RuntimeError("the PyTensor server process has died") from None
    line = server.stdout.readline()
    if not line:
        log = getattr(server, "log_path", "")
        tail = ""
        if os.path.exists(log):
            with open(log) as handle:
                tail = handle.read()[-600:]
        raise RuntimeError(f"the PyTensor server process died: {tail}")
    reply = json.loads(line)
    if "error" in reply:
        raise RuntimeError(reply["error"])
    return reply


class Remote:
    """A PyTensor runner in a server process of PyTensor's venv (bench/peers.py --serve) of its
    own, whose caches are those its first-step runs filled (PyTensor and numba key by path)."""

    def __init__(self, python: str, peer: str, workload: str, root: str) -> None:
        self.key = {"peer": peer, "workload": workload}
        os.makedirs(root, exist_ok=True)
        self.log_path = os.path.join(root, "server.log")
        with open(self.log_path, "w") as log:
            self.server = subprocess.Popen(
                [python, os.path.join(HERE, "peers.py"), "--serve"],
                env=cache_env(root),
                text=True,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=log,
            )
        self.server.log_path = self.log_path
        try:
            self.versions = self.ask("versions")
            reply = self.ask("build")
        except RuntimeError:
            self.close()
            raise
        self.first_call_s, self.check = reply["first_step_s"], reply["check"]

    def ask(self, op: str, **extra) -> dict:
        """One request about this runner (see `request`)."""
        return request(self.server, dict(self.key, op=op, **extra))

    def block(self, calls: int) -> list[float]:
        """Seconds of each of `calls` consecutive calls, timed in the server."""
        return self.ask("time", calls=calls)["times"]

    def close(self) -> None:
        """End the server process."""
        try:
            self.server.stdin.close()
            self.server.wait(timeout=30)
        except (BrokenPipeError, subprocess.TimeoutExpired):
            self.server.kill()


def make_runner(runner: str, workload: str, d: dict, python: str | None, scratch: str) -> object:
    """Build one runner (a Local or Remote) and make its first call (compilation)."""
    start = time.perf_counter()
    root = first_step_root(scratch, runner, workload)  # warm caches when its first steps ran
    if not os.path.isdir(root):
        root = os.path.join(scratch, "steady", runner.replace(" ", "_"))
    if runner.startswith("theanine "):
        os.environ["THEANINE_CACHE"] = os.path.join(root, "theanine")
        f, args = build_theanine(workload, runner.split()[1], d)
        made = Local(lambda: f(*args))
    elif runner in REMOTE:
        return Remote(python, runner, workload, root)
    else:
        if runner == "torch.compile":  # inductor reads this variable on each use
            os.environ["TORCHINDUCTOR_CACHE_DIR"] = os.path.join(root, "inductor")
        made = Local(peers.make(runner, workload, d))
    value = made.step()
    made.first_call_s = time.perf_counter() - start
    made.check = peers.checksum(value)
    return made


result_versions: dict = {}  # PyTensor's venv: versions and config, reported by its servers


def steady(workload: str, runners: list, python: str | None, quick: bool, scratch: str) -> list:
    """Median, min and max seconds per call of every runner, measured in alternating rounds."""
    d = peers.data(workload)
    built, rows = {}, []
    for runner in runners:
        if not runner.startswith("theanine ") and workload not in peers.PEERS[runner]:
            continue
        if (runner, workload) in TOO_SLOW:
            error = f"skipped: its cold first step took over {SUBPROCESS_TIMEOUT} s"
            rows.append({"workload": workload, "runner": runner, "error": error})
            continue
        try:
            built[runner] = make_runner(runner, workload, d, python, scratch)
            built[runner].block(2)  # warm-up calls, excluded
        except Exception as error:  # noqa: BLE001  (recorded; the other runners go on)
            rows.append(
                {
                    "workload": workload,
                    "runner": runner,
                    "error": f"{type(error).__name__}: {error}"[:600],
                }
            )
            print(f"{workload} {runner}: FAILED {rows[-1]['error'][:200]}", flush=True)
    failed: dict[str, str] = {}

    def measure(name: str, calls: int) -> list[float]:  # a runner that fails drops out, recorded
        try:
            return built[name].block(calls)
        except Exception as error:  # noqa: BLE001
            failed[name] = f"{type(error).__name__}: {error}"[:600]
            return []

    estimate = {name: min(measure(name, 2) or [1.0]) for name in built}
    budget, per_block = (0.3, 2) if quick else (3.0, 2)
    rounds = {
        n: int(np.clip(budget / (3 * max(t, 1e-6)), 3, 5 if quick else 15))
        for n, t in estimate.items()
    }
    samples: dict[str, list] = {name: [] for name in built}
    names = list(built)
    for k in range(max(rounds.values(), default=0)):
        for name in names[k % len(names) :] + names[: k % len(names)]:  # rotate who goes first
            if k < rounds[name] and name not in failed:
                samples[name] += measure(name, 1 + per_block)[1:]  # first of a block excluded
    for name, error in failed.items():
        rows.append({"workload": workload, "runner": name, "error": error})
        samples.pop(name)
    for name, times in samples.items():
        rows.append(
            {
                "workload": workload,
                "runner": name,
                "median_s": float(np.median(times)),
                "min_s": min(times),
                "max_s": max(times),
                "samples": len(times),
                "first_call_in_process_s": built[name].first_call_s,
                "check": built[name].check,
            }
        )
        print(f"{workload} {name}: {rows[-1]['median_s'] * 1e3:.3f} ms", flush=True)
    for runner in built.values():
        if isinstance(runner, Remote):
            result_versions.update(runner.versions)
            runner.close()
    return rows


# --- CUDA: measured on a GPU, or modelled ---------------------------------------------------------


def cuda_models(workloads) -> dict:
    """Roofline model of each workload's CUDA kernels, compiled in mode 'cuda-emulator'."""
    import roofline

    results = {}
    for workload in workloads:
        try:
            f, args = build_theanine(workload, "cuda-emulator", peers.data(workload))
            results[workload] = roofline.model(f, args)
        except Exception as error:  # noqa: BLE001  (recorded; the other workloads go on)
            results[workload] = {"error": f"{type(error).__name__}: {error}"[:600]}
        print(
            roofline.markdown(workload, results[workload])
            if "error" not in results[workload]
            else f"{workload}: roofline failed: {results[workload]['error']}",
            flush=True,
        )
    return results


def gpu_available() -> str | None:
    """None when mode 'cuda' can compile a function here, else the reason it cannot."""
    import theanine
    import theanine.tensor as T

    x = T.fvector("x")
    try:
        theanine.function([x], x + 1, mode="cuda")(np.ones(3, "float32"))
    except Exception as error:  # noqa: BLE001  (any failure means: no usable GPU here)
        return f"{type(error).__name__}: {str(error).splitlines()[0]}"
    return None


def pytensor_interpreter(given: str | None) -> str | None:
    """--pytensor-python, else $THEANINE_BENCH_PYTENSOR, else the default venv if it exists."""
    path = given or os.environ.get("THEANINE_BENCH_PYTENSOR") or DEFAULT_PYTENSOR
    return path if path and os.path.exists(path) else None


def parse(argv=None) -> argparse.Namespace:
    """Command-line arguments."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a short run (chain_2^22, mlp_step)")
    parser.add_argument("--workloads", default=None, help=f"comma list of {peers.WORKLOADS}")
    parser.add_argument(
        "--backend", default="numba", help="theanine modes: numba,py,cuda (none: peers only)"
    )
    parser.add_argument("--peers", default=None, help=f"comma list of {list(peers.PEERS)}")
    parser.add_argument("--no-first-step", action="store_true", help="skip time to first step")
    parser.add_argument("--name", default=None, help="results file name (default quick or full)")
    parser.add_argument("--out", default=os.path.join(HERE, "results"), help="results folder")
    parser.add_argument("--pytensor-python", default=None, help="python of PyTensor's venv")
    parser.add_argument("--first-step-worker", nargs=2, default=None, help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main(argv=None) -> dict | None:
    """Run the benchmark (or, with --first-step-worker, one fresh-process first step)."""
    args = parse(argv)
    if args.first_step_worker:
        print(json.dumps(theanine_first_step(*args.first_step_worker)))
        return None
    workloads = (
        args.workloads.split(",")
        if args.workloads
        else ["chain_2^22", "mlp_step"]
        if args.quick
        else list(peers.WORKLOADS)
    )
    for workload in workloads:
        if workload not in peers.WORKLOADS:
            raise SystemExit(f"unknown workload {workload!r}; expected some of {peers.WORKLOADS}")
    backends = [b for b in args.backend.split(",") if b and b != "none"]  # none: peers only
    pytensor_python = pytensor_interpreter(args.pytensor_python)
    wanted = (
        args.peers.split(",")
        if args.peers is not None
        else list(QUICK_PEERS)
        if args.quick
        else list(peers.PEERS)
    )
    for peer in wanted:
        if peer and peer not in peers.PEERS:
            raise SystemExit(f"unknown peer {peer!r}; expected some of {list(peers.PEERS)}")
    available = [
        p for p in wanted if p and (pytensor_python if p in REMOTE else peers.installed(p))
    ]
    result = {
        "machine": report.machine(),
        "command": " ".join(["bench/run.py", *(sys.argv[1:] if argv is None else argv)]),
        "quick": args.quick,
        "workloads": workloads,
        "backends": backends,
        "peers": available,
        "first_step": [],
        "steady": [],
    }
    modes = [b for b in backends if b != "cuda"]
    result["ours"] = f"theanine {modes[0] if modes else 'numba'}"
    scratch = tempfile.mkdtemp(prefix="theanine_bench_")
    saved = {k: os.environ.get(k) for k in ("NUMBA_CACHE_DIR", "TORCHINDUCTOR_CACHE_DIR")}
    saved["THEANINE_CACHE"] = os.environ.get("THEANINE_CACHE")
    # read once, when numba and torch are imported: set before anything imports them (the
    # steady phase fills these folders with the first-step runs' caches, see steady_phase)
    os.environ["NUMBA_CACHE_DIR"] = os.path.join(scratch, "steady", "theanine", "numba")
    os.environ["TORCHINDUCTOR_CACHE_DIR"] = os.path.join(scratch, "steady", "torch", "inductor")
    if "cuda" in backends:
        no_gpu = gpu_available()
        modes += ["cuda"] if no_gpu is None else []
        result["cuda"] = {"no_gpu": no_gpu} if no_gpu else None
    try:
        first = [w for w in workloads if w in FIRST_STEP_WORKLOADS]
        if first and not args.no_first_step:
            runners = [f"theanine {b}" for b in modes if b != "py"]
            runners += [p for p in FIRST_STEP_PEERS if p in available]
            result["first_step"] = first_steps(first, runners, pytensor_python, scratch)
        steady_phase(result, workloads, modes, available, pytensor_python, scratch, args.quick)
        result["machine"]["load_average_at_end"] = os.getloadavg()
        result["machine"]["threads"] = report.threads()
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
        for key, value in saved.items():  # the caches pointed into scratch
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
    name = args.name or ("quick" if args.quick else "full")
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, f"{name}.json"), "w") as handle:
        json.dump(result, handle, indent=1)
    text = report.markdown(result)
    with open(os.path.join(args.out, f"{name}.md"), "w") as handle:
        handle.write(text)
    report.chart(result, os.path.join(args.out, f"{name}.png"))  # skipped without matplotlib
    print(text)
    return result


def steady_phase(result, workloads, modes, available, pytensor_python, scratch, quick) -> None:
    """Steady-state rounds of every runner, with the caches the first-step runs filled."""
    # NUMBA_CACHE_DIR is read once, when numba is imported: numba mirrors each source's absolute
    # path under it, and each theanine runner reuses its first-step THEANINE_CACHE (make_runner),
    # so the merged folder serves them all
    merge_caches(scratch, "theanine")
    if result.get("cuda"):  # no GPU: model the CUDA kernels instead of timing them
        result["cuda"]["models"] = cuda_models(workloads)
    runners = [f"theanine {b}" for b in modes] + available
    for workload in workloads:
        result["steady"] += steady(workload, runners, pytensor_python, quick, scratch)
    if result_versions:
        result["pytensor"] = dict(result_versions)


if __name__ == "__main__":
    main()
