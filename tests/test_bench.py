"""Tests of the benchmark harness: the roofline model's arithmetic, the report, a smoke run."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import theanine
import theanine.tensor as T

BENCH = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "bench")


def _load(name: str):
    """Import a bench/ module by path (bench/ is scripts, not a package)."""
    if BENCH not in sys.path:
        sys.path.insert(0, BENCH)
    spec = importlib.util.spec_from_file_location(
        f"bench_{name}", os.path.join(BENCH, f"{name}.py")
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


roofline = _load("roofline")


def test_predict_is_the_slower_of_bandwidth_and_compute():
    assert roofline.predict_seconds(3.35e12, 0) == pytest.approx(1.0)
    assert roofline.predict_seconds(0, 67e12) == pytest.approx(1.0)
    assert roofline.predict_seconds(3.35e12, 2 * 67e12) == pytest.approx(2.0)
    assert roofline.predict_seconds(2 * 3.35e12, 67e12) == pytest.approx(2.0)


def test_gemm_row_counts_2mnk_flops_and_every_byte():
    a, b = T.fmatrix("a"), T.fmatrix("b")
    f = theanine.function([a, b], T.dot(a, b), mode="cuda-emulator")
    m, k, n = 3, 5, 4
    model = roofline.model(f, [np.ones((m, k), "float32"), np.ones((k, n), "float32")])
    (row,) = model["kernels"]
    assert row["flops"] == 2 * m * n * k
    assert row["bytes"] == 4 * (m * k + k * n + m * n)
    assert row["shape"] == [m, n]
    assert row["rule"] == "GEMM: 2mnk"
    expected = max(row["bytes"] / 3.35e12, row["flops"] / 67e12)
    assert row["predicted_s"] == pytest.approx(expected)
    assert model["predicted_total_s"] == pytest.approx(expected)
    assert model["host"] == []


def test_elementwise_row_counts_scalar_ops_times_elements():
    x, y = T.fvector("x"), T.fvector("y")
    f = theanine.function([x, y], T.exp(x) * y + 1, mode="cuda-emulator")
    n = 7
    model = roofline.model(f, [np.ones(n, "float32"), np.ones(n, "float32")])
    (row,) = model["kernels"]
    assert row["op"] == "Composite"
    assert row["flops"] == 3 * n  # exp, mul, add
    assert row["bytes"] == 4 * 3 * n  # x and y read, the output written
    assert row["bound"] == "memory"
    text = roofline.markdown("toy", model)
    assert "MODEL" in text and "not measured" in text and "Host steps: none." in text


def test_gemm_with_fused_epilogue_counts_both():
    a, b, c = T.fmatrix("a"), T.fmatrix("b"), T.fvector("c")
    f = theanine.function([a, b, c], T.tanh(T.dot(a, b) + c), mode="cuda-emulator")
    m, k, n = 3, 5, 4
    args = [np.ones((m, k), "float32"), np.ones((k, n), "float32"), np.ones(n, "float32")]
    rows = roofline.model(f, args)["kernels"]
    fused = [r for r in rows if r["rule"].startswith("GEMM 2mnk + epilogue")]
    if not fused:  # the plan did not fuse: the product's own row has the GEMM flops
        fused = [r for r in rows if r["rule"] == "GEMM: 2mnk"]
        assert fused[0]["flops"] == 2 * m * n * k
    else:
        assert fused[0]["flops"] == 2 * m * n * k + m * n  # the product, then tanh per element
    assert fused[0]["bytes"] >= 4 * (m * k + k * n + m * n)
    assert fused[0]["shape"] == [m, n]


def test_report_marks_targets_met_and_missed():
    report = _load("report")
    assert report.verdict(1.0, 2.0, 0.5) == "0.50 (met, target <= 0.5)"
    assert report.verdict(1.5, 1.0, 1.0) == "1.50 (missed, target <= 1)"
    assert report.verdict(1.0, None, 1.0) == "n/a (peer not measured)"
    step = {"import_s": 0.5, "first_step_s": 4.0}
    rows = [
        {"workload": "mlp_step", "runner": "theanine numba", "cold": step, "warm": step},
        {
            "workload": "mlp_step",
            "runner": "jax",
            "cold": {"error": "boom"},
            "warm": {"import_s": 1.0, "first_step_s": 2.0},
        },
    ]
    text = "\n".join(report.first_step_table("mlp_step", rows, "theanine numba"))
    assert "theanine numba <= 3 s: 4.00 s (missed)" in text
    assert "theanine numba <= 1 x jax: 2.00 (missed, target <= 1)" in text
    assert "failed: boom" in text


def test_smoke_run_writes_markdown_and_json(tmp_path):
    command = [
        sys.executable,
        os.path.join(BENCH, "run.py"),
        "--quick",
        "--workloads",
        "chain_2^22",
        "--peers",
        "numpy",
        "--name",
        "test_tmp",
        "--out",
        str(tmp_path),
    ]
    done = subprocess.run(
        command,
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
        env=dict(os.environ, THEANINE_CACHE=str(tmp_path / "cache")),
    )
    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads((tmp_path / "test_tmp.json").read_text())
    runners = {row["runner"]: row for row in result["steady"]}
    assert set(runners) == {"theanine numba", "numpy"}
    for row in runners.values():
        assert row["workload"] == "chain_2^22"
        assert row["min_s"] <= row["median_s"] <= row["max_s"] and row["samples"] >= 3
    assert result["machine"]["cores"] == os.cpu_count()
    assert result["machine"]["versions"]["numpy"] == np.__version__
    text = (tmp_path / "test_tmp.md").read_text()
    assert "| runner | median | min | max | calls |" in text
    assert "theanine numba / best peer (numpy):" in text
    assert "issue 4 target, theanine numba <= 1 x jax: n/a" in text


def test_unknown_workload_is_refused(tmp_path):
    run = _load("run")
    with pytest.raises(SystemExit, match="unknown workload 'chain_2\\^99'"):
        run.main(["--workloads", "chain_2^99", "--out", str(tmp_path)])


def test_server_process_times_a_peer_and_reports_errors(tmp_path):
    run = _load("run")
    peers = _load("peers")
    # the protocol does not depend on PyTensor: serve a numpy peer from this interpreter
    remote = run.Remote(sys.executable, "numpy", "chain_2^22", str(tmp_path / "a"))
    try:
        times = remote.block(3)
        assert len(times) == 3 and all(t > 0 for t in times)
        expected = peers.checksum(peers.make("numpy", "chain_2^22")())
        assert remote.check == pytest.approx(expected, rel=1e-6)
        assert remote.versions["versions"]["numpy"] == np.__version__
    finally:
        remote.close()
    assert remote.server.returncode == 0
    with pytest.raises(RuntimeError, match="peer 'numexpr' has no 'mlp_step' workload"):
        run.Remote(sys.executable, "numexpr", "mlp_step", str(tmp_path / "b"))
