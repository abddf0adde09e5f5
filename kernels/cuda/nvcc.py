"""The compile gate: kernels through the real nvcc (-cubin -Xptxas -v), their resource reports."""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import tempfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, replace
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
    start = log.find(f"entry function '{kernel.name}'")
    section = log if start < 0 else log[start:]
    end = section.find("Compiling entry function", 1)
    section = section if end < 0 else section[:end]

    def number(pattern: str) -> int:
        match = re.search(pattern, section)
        return int(match.group(1)) if match else 0

    if not re.search(r"Used (\d+) registers", section):
        raise ValueError(f"no ptxas resource report for {kernel.name} in:\n{log}")
    return Resources(
        kernel=kernel.name, arch=arch, registers=number(r"Used (\d+) registers"),
        shared_bytes=number(r"(\d+) bytes smem"), stack_bytes=number(r"(\d+) bytes stack frame"),
        spill_stores=number(r"(\d+) bytes spill stores"),
        spill_loads=number(r"(\d+) bytes spill loads"),
        threads=max_threads(kernel),
    )


def max_threads(kernel: Kernel) -> int:
    """The most threads per block the kernel declares (__launch_bounds__), else CUDA's 1024."""
    bounds = re.search(r"__launch_bounds__\((\d+)", kernel.source)
    return int(bounds.group(1)) if bounds else 1024


def _cache_path(kernel: Kernel, arch: str) -> Path:
    key = hashlib.sha256(f"{arch}\n{kernel.source}".encode()).hexdigest()[:24]
    return cache_dir() / "nvcc" / f"{key}.json"


def _run_nvcc(nvcc: str, kernels: Sequence[Kernel], arch: str) -> tuple[int, str]:
    """Compile the kernels as one file (each source in its own namespace); (return code, log)."""
    folder = cache_dir() / "nvcc"
    folder.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=folder) as tmp:
        if len(kernels) == 1:
            text = kernels[0].source
        else:
            text = "".join(
                f"namespace m{k} {{\n{kernel.source}\n}}\n" for k, kernel in enumerate(kernels)
            )
        source = Path(tmp) / (f"{kernels[0].name}.cu" if len(kernels) == 1 else "kernels.cu")
        source.write_text(text)
        cubin = str(Path(tmp) / "k.cubin")
        command = [nvcc, f"-arch={arch}", "-cubin", "-Xptxas", "-v", "-o", cubin, str(source)]
        result = subprocess.run(command, capture_output=True, text=True)
        return result.returncode, result.stderr + result.stdout


def _compile_batch(nvcc: str, kernels: Sequence[Kernel], arch: str) -> list[Resources]:
    """One nvcc call for many kernels (start-up dominates); on failure, find the culprit alone."""
    status, log = _run_nvcc(nvcc, kernels, arch)
    if status != 0:
        for kernel in kernels:
            alone_status, alone_log = (status, log)
            if len(kernels) > 1:
                alone_status, alone_log = _run_nvcc(nvcc, [kernel], arch)
            if alone_status != 0:
                raise compile_error(f"nvcc -arch={arch}", kernel, alone_log)
        message = f"nvcc -arch={arch} failed on the kernels together, but on none alone:\n{log}"
        raise RuntimeError(message)
    reports = []
    for kernel in kernels:
        resources = parse_report(log, kernel, arch)
        path = _cache_path(kernel, arch)
        partial = path.with_suffix(f".{os.getpid()}.tmp")
        partial.write_text(json.dumps(asdict(resources)))
        os.replace(partial, path)  # atomic: a concurrent run reads the whole report or none
        reports.append(resources)
    return reports


def compile_kernels(
    kernels: Sequence[Kernel], archs: Sequence[str] = ARCHS, jobs: int = 2
) -> list[Resources]:
    """Compile every kernel for every arch; reports are cached on disk by source hash and arch."""
    nvcc = find_nvcc()
    if nvcc is None:
        raise FileNotFoundError(
            "nvcc was not found (set CUDA_HOME or put the CUDA toolkit's bin on PATH)"
        )
    unique = list({k.source: k for k in kernels}.values())
    done: dict[tuple[str, str], Resources] = {}
    missing: dict[str, list[Kernel]] = {arch: [] for arch in archs}
    for kernel in unique:
        for arch in archs:
            path = _cache_path(kernel, arch)
            if path.exists():
                cached = Resources(**json.loads(path.read_text()))
                done[kernel.name, arch] = replace(cached, threads=max_threads(kernel))
            else:
                missing[arch].append(kernel)
    # Batches of 16 per nvcc call, run in parallel: nvcc's start-up, not the kernels, takes time.
    work = [
        (arch, group[i : i + 16])
        for arch, group in missing.items()
        for i in range(0, len(group), 16)
    ]
    with ThreadPoolExecutor(max_workers=jobs) as pool:
        for reports in pool.map(lambda item: _compile_batch(nvcc, item[1], item[0]), work):
            done.update({(r.kernel, r.arch): r for r in reports})
    return [done[k.name, arch] for k in unique for arch in archs]


def limit_problems(kernel: Kernel, resources: Resources) -> list[str]:
    """What in a resource report breaks the gate: register file, static shared memory, spills."""
    problems = []
    where = f"{kernel.name} ({kernel.what}) on {resources.arch}"
    if resources.registers * resources.threads > MAX_REGISTERS_PER_BLOCK:
        problems.append(f"{where}: {resources.registers} registers x {resources.threads} threads > "
                        f"{MAX_REGISTERS_PER_BLOCK}")
    if resources.shared_bytes > MAX_STATIC_SHARED:
        problems.append(
            f"{where}: {resources.shared_bytes} bytes of static shared memory > {MAX_STATIC_SHARED}"
        )
    if kernel.kind in NO_SPILL_KINDS and (resources.spill_stores or resources.spill_loads):
        problems.append(f"{where}: spills ({resources.spill_stores} bytes stored, "
                        f"{resources.spill_loads} loaded) in a {kernel.kind} kernel")
    return problems
