"""The package layering graph <- kernels <- compiler <- layers, checked by reading every import."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
ORDER = ["graph", "kernels", "compiler", "layers"]
MAX_LINES = 800


def _imported_packages(path: Path) -> set[str]:
    """The theanine subpackages a file imports (absolute `theanine.x` or relative `..x`)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    package = path.relative_to(ROOT).parts[0]
    depth_of_file = len(path.relative_to(ROOT).parts) - 1
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level == 0:
                names = [node.module or ""]
            else:
                parents = path.relative_to(ROOT).parts[: depth_of_file - (node.level - 1)]
                base = list(parents)
                module = (node.module or "").split(".") if node.module else []
                names = [".".join(["theanine", *base, *module])] if base else [".".join(["theanine", *module])]
                if not base and not module:
                    names = ["theanine." + alias.name for alias in node.names]
        else:
            continue
        for name in names:
            parts = name.split(".")
            if parts[0] == "theanine" and len(parts) > 1 and parts[1] in ORDER:
                found.add(parts[1])
            elif parts[0] == "theanine" and len(parts) == 1 and package != "theanine":
                found.add("<root>")
    return found


def _package_files():
    for package in ORDER:
        yield from ((package, p) for p in sorted((ROOT / package).rglob("*.py")))


def test_imports_follow_the_layering():
    violations = []
    for package, path in _package_files():
        allowed = set(ORDER[: ORDER.index(package) + 1])
        bad = _imported_packages(path) - allowed
        if bad:
            violations.append(f"{path.relative_to(ROOT)} imports {sorted(bad)} (allowed: {sorted(allowed)})")
    assert not violations, "layering violated: graph <- kernels <- compiler <- layers\n" + "\n".join(violations)


def test_the_checker_sees_a_violation(tmp_path, monkeypatch):
    bad = ROOT / "graph" / "_layering_probe.py"
    bad.write_text("from ..compiler import function\n")
    try:
        assert _imported_packages(bad) == {"compiler"}
    finally:
        bad.unlink()


def test_no_source_file_is_too_long():
    long_files = []
    for _, path in _package_files():
        lines = len(path.read_text().splitlines())
        if lines > MAX_LINES:
            long_files.append(f"{path.relative_to(ROOT)}: {lines} lines")
    assert not long_files, f"files over {MAX_LINES} lines:\n" + "\n".join(long_files)


def test_import_theanine_loads_neither_numba_nor_pycuda():
    code = "import sys, theanine, theanine.tensor as T; print(sorted(m for m in ('numba', 'pycuda') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd="/", check=True)
    assert out.stdout.strip() == "[]"
