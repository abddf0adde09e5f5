"""The compile gate: generated kernels through the real nvcc (-cubin -Xptxas -v) and their resource reports."""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import tempfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Sequence

from .device import cache_dir
from .kernel import Kernel, compile_error

ARCHS = ("sm_80", "sm_90")
MAX_REGISTERS_PER_BLOCK = 65536
MAX_STATIC_SHARED = 48 * 1024
NO_SPILL_KINDS = ("elementwise", "reduction", "gemm", "softmax")


def find_nvcc() -> str | None:
    """The nvcc of the CUDA toolkit ($CUDA_HOME, /usr/local/cuda, then PATH), or None."""
    for root in (os.environ.get("CUDA_HOME"), os.environ.get("CUDA_PATH"), "/usr/local/cuda"):
        if root and os.access(os.path.join(root, "bin", "nvcc"), os.X_OK):
            return os.path.join(root, "bin", "nvcc")
    return shutil.which("nvcc")


@dataclass(frozen=True)
class Resources:
    """What ptxas reports for one kernel on one architecture."""

    kernel: str
    arch: str
    registers: int
    shared_bytes: int
    stack_bytes: int
    spill_stores: int
    spill_loads: int
    threads: int  # the most threads per block the kernel is launched with (__launch_bounds__)


def parse_report(log: str, kernel: Kernel, arch: str) -> Resources:
    """The resources of `kernel` in ptxas's -v output."""
    section = log[log.find(f"'{kernel.name}'"):] if f"'{kernel.name}'" in log else log

    def number(pattern: str) -> int:
        match = re.search(pattern, section)
        return int(match.group(1)) if match else 0

    if not re.search(r"Used (\d+) registers", section):
        raise ValueError(f"no ptxas resource report for {kernel.name} in:\n{log}")
    bounds = re.search(r"__launch_bounds__\((\d+)\)", kernel.source)
    return Resources(
        kernel=kernel.name, arch=arch, registers=number(r"Used (\d+) registers"),
        shared_bytes=number(r"(\d+) bytes smem"), stack_bytes=number(r"(\d+) bytes stack frame"),
        spill_stores=number(r"(\d+) bytes spill stores"), spill_loads=number(r"(\d+) bytes spill loads"),
        threads=int(bounds.group(1)) if bounds else 1024,
    )


def _compile_one(nvcc: str, kernel: Kernel, arch: str) -> Resources:
    key = hashlib.sha256(f"{arch}\n{kernel.source}".encode()).hexdigest()[:24]
    folder = cache_dir() / "nvcc"
    cached = folder / f"{key}.json"
    if cached.exists():
        return Resources(**json.loads(cached.read_text()))
    folder.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=folder) as tmp:
        source = Path(tmp) / f"{kernel.name}.cu"
        source.write_text(kernel.source)
        command = [nvcc, f"-arch={arch}", "-cubin", "-Xptxas", "-v", "-o", str(Path(tmp) / "k.cubin"),
                   str(source)]
        result = subprocess.run(command, capture_output=True, text=True)
        if result.returncode != 0:
            raise compile_error(f"nvcc -arch={arch}", kernel, result.stderr + result.stdout)
        resources = parse_report(result.stderr + result.stdout, kernel, arch)
        partial = Path(tmp) / "report.json"
        partial.write_text(json.dumps(asdict(resources)))
        os.replace(partial, cached)
    return resources


def compile_kernels(kernels: Sequence[Kernel], archs: Sequence[str] = ARCHS, jobs: int = 4) -> list[Resources]:
    """Compile every kernel for every arch (in parallel; reports cached on disk by source hash)."""
    nvcc = find_nvcc()
    if nvcc is None:
        raise FileNotFoundError("nvcc was not found (set CUDA_HOME or put the CUDA toolkit's bin on PATH)")
    unique = list({k.source: k for k in kernels}.values())
    work = [(k, arch) for k in unique for arch in archs]
    with ThreadPoolExecutor(max_workers=jobs) as pool:
        return list(pool.map(lambda item: _compile_one(nvcc, *item), work))


def limit_problems(kernel: Kernel, resources: Resources) -> list[str]:
    """What in a resource report breaks the gate: register file, static shared memory, spills."""
    problems = []
    where = f"{kernel.name} ({kernel.what}) on {resources.arch}"
    if resources.registers * resources.threads > MAX_REGISTERS_PER_BLOCK:
        problems.append(f"{where}: {resources.registers} registers x {resources.threads} threads > "
                        f"{MAX_REGISTERS_PER_BLOCK}")
    if resources.shared_bytes > MAX_STATIC_SHARED:
        problems.append(f"{where}: {resources.shared_bytes} bytes of static shared memory > {MAX_STATIC_SHARED}")
    if kernel.kind in NO_SPILL_KINDS and (resources.spill_stores or resources.spill_loads):
        problems.append(f"{where}: spills ({resources.spill_stores} bytes stored, "
                        f"{resources.spill_loads} loaded) in a {kernel.kind} kernel")
    return problems
