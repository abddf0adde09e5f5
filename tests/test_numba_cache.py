"""The numba backend's disk cache: second processes compile nothing; concurrent writers; repairs."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import uuid

import pytest

pytest.importorskip("numba")

# One fused graph; the constant makes its kernel source unique to each test run (a cold cache).
SCRIPT = """
import json, sys, warnings
import numpy as np
import theanine.tensor as T
from theanine.compiler.fuse import fuse_elementwise
from theanine.kernels.numba.backend import BACKEND
from theanine.kernels.numba.cache import compile_counts, loaded_modules

x, y = T.dvector("x"), T.dvector("y")
big = np.arange(5000.0)  # a large constant: passed as an argument, never written into the source
out = T.tanh(x * y + {constant}) + T.exp(-x) * big
plan = BACKEND.compile([x, y], fuse_elementwise([out], BACKEND.supported))
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    value = plan.run([np.linspace(0, 1, 5000), np.ones(5000)])[0]
expected = np.tanh(np.linspace(0, 1, 5000) + {constant}) + np.exp(-np.linspace(0, 1, 5000)) * big
print(json.dumps(dict(ok=bool(np.allclose(value, expected)), counts=compile_counts(),
                      modules=sorted(loaded_modules()), warnings=[str(w.message) for w in caught])))
"""


def run_script(cache: str, constant: float) -> dict:
    import json

    env = dict(os.environ, THEANINE_CACHE=cache)
    command = [sys.executable, "-c", SCRIPT.format(constant=constant)]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def start_script(cache: str, constant: float) -> subprocess.Popen:
    env = dict(os.environ, THEANINE_CACHE=cache)
    command = [sys.executable, "-c", SCRIPT.format(constant=constant)]
    pipe = subprocess.PIPE
    return subprocess.Popen(command, env=env, stdout=pipe, stderr=pipe, text=True)


def kernel_files(cache: str) -> list[str]:
    names = os.listdir(cache)
    return sorted(name for name in names if name.startswith("k_") and name.endswith(".py"))


@pytest.fixture
def constant() -> float:
    return 1 + uuid.uuid4().int % 10**6 / 10**7


def test_second_process_compiles_nothing_and_the_directory_is_private(tmp_path, constant):
    cache = str(tmp_path / "cache")
    first = run_script(cache, constant)
    assert first["ok"] and first["counts"]["misses"] >= 1  # it compiled its new kernel
    assert stat.S_IMODE(os.stat(cache).st_mode) == 0o700
    files = kernel_files(cache)
    assert len(files) == 1 and files[0] == f"k_{first['modules'][0]}.py"
    second = run_script(cache, constant)
    assert second["ok"]
    assert second["counts"]["misses"] == 0, second  # everything came from the disk cache
    assert second["counts"]["hits"] >= 1
    assert kernel_files(cache) == files


def test_large_constants_are_not_baked_into_the_source(tmp_path, constant):
    cache = str(tmp_path / "cache")
    run_script(cache, constant)
    (name,) = kernel_files(cache)
    source = open(os.path.join(cache, name)).read()
    assert len(source) < 3000
    assert "4999" not in source and "x2" in source  # the array arrives as the third argument
    assert repr(constant) in source  # a scalar constant may be inlined


def test_two_processes_compiling_the_same_graph_at_once_both_succeed(tmp_path, constant):
    cache = str(tmp_path / "cache")
    processes = [start_script(cache, constant) for _ in range(2)]
    for process in processes:
        out, err = process.communicate(timeout=240)
        assert process.returncode == 0, err
        assert '"ok": true' in out
    assert len(kernel_files(cache)) == 1
    assert not [n for n in os.listdir(cache) if n.startswith(".tmp_")]


@pytest.mark.parametrize("damage", ["truncate", "garbage"])
def test_a_corrupted_entry_is_removed_rebuilt_and_reported(tmp_path, constant, damage):
    cache = str(tmp_path / "cache")
    run_script(cache, constant)
    (name,) = kernel_files(cache)
    path = os.path.join(cache, name)
    good = open(path).read()
    with open(path, "w") as handle:
        if damage == "truncate":
            handle.write(good[: len(good) // 2])
        else:
            handle.write(good.replace("def ", "def def "))
    result = run_script(cache, constant)
    assert result["ok"]
    assert any("corrupted" in w and name in w for w in result["warnings"]), result["warnings"]
    assert open(path).read() == good


def test_load_source_in_process_round_trips(tmp_path, monkeypatch):
    from theanine.kernels.numba import cache as C

    monkeypatch.setenv("THEANINE_CACHE", str(tmp_path / "c"))
    source = f"VALUE = {uuid.uuid4().int % 1000}\n"
    module = C.load_source(source)
    assert module.VALUE == int(source.split("=")[1])
    assert C.load_source(source) is module
    text = open(os.path.join(str(tmp_path / "c"), f"k_{C.source_hash(source)[:16]}.py")).read()
    assert text.startswith("# theanine generated kernel; sha256 of the source below: ")


def test_an_unwritable_cache_directory_falls_back_to_a_temporary_one(tmp_path, monkeypatch):
    from theanine.kernels.numba import cache

    blocked = tmp_path / "file"
    blocked.write_text("not a directory")
    monkeypatch.setenv("THEANINE_CACHE", str(blocked / "cache"))
    monkeypatch.setattr(cache, "_fallback", [])
    with pytest.warns(UserWarning, match="cannot create the kernel cache"):
        path = cache.cache_dir()
    assert os.path.isdir(path) and "theanine-cache-" in path
    assert cache.cache_dir() == path  # warned once, then reused
