"""A non-editable install works from another directory and carries the shipped data subset."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_non_editable_install_imports_from_elsewhere(tmp_path):
    target = tmp_path / "site"
    build = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--no-deps", "--no-build-isolation", "--no-index", "-q",
         "--target", str(target), str(ROOT)],
        capture_output=True, text=True, cwd=tmp_path,
    )
    assert build.returncode == 0, build.stdout + build.stderr
    code = (
        "import theanine, theanine.tensor as T, theanine.layers.datasets as d\n"
        "print(theanine.__file__)\n"
        "print(sorted(p.name for p in d.SHIPPED.iterdir()))\n"
        "x = T.vector('x'); print((x * 2).eval({x: [1.0, 2.0]}).tolist())\n"
    )
    env = dict(os.environ, PYTHONPATH=str(target))
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path, env=env)
    assert run.returncode == 0, run.stderr
    lines = run.stdout.splitlines()
    assert lines[0].startswith(str(target)), f"imported from {lines[0]}, not from the installed copy"
    assert "train-images-idx3-ubyte.gz" in lines[1] and "NOTICE" in lines[1]
    assert lines[2] == "[2.0, 4.0]"
    assert not (target / "theanine" / "setup.py").exists()
