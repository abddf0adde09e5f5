"""The compile gate: every kernel the emulator tests generate compiles with nvcc, within limits."""

from __future__ import annotations

import pytest

from tests.test_cuda_emulator import HAND_KERNELS, all_case_kernels
from theanine.kernels.cuda import nvcc
from theanine.kernels.cuda.kernel import CudaCompileError, Kernel

NVCC = nvcc.find_nvcc()
needs_nvcc = pytest.mark.skipif(
    NVCC is None, reason="nvcc (the CUDA toolkit) is not installed on this machine"
)


@pytest.fixture(scope="module")
def generated() -> list[Kernel]:
    kernels = list({k.source: k for k in all_case_kernels()}.values())
    # The hand-written kernels too, except the one using assert (needs <assert.h> under nvcc).
    return kernels + [k for k in HAND_KERNELS if k.name == "k_sgemm"]


@needs_nvcc
def test_every_generated_kernel_compiles_for_sm80_and_sm90_within_limits(generated):
    reports = nvcc.compile_kernels(generated, nvcc.ARCHS)
    assert len(reports) == len(generated) * len(nvcc.ARCHS)
    by_name = {k.name: k for k in generated}
    problems = [p for r in reports for p in nvcc.limit_problems(by_name[r.kernel], r)]
    assert problems == []
    kinds = {by_name[r.kernel].kind for r in reports}
    assert {"elementwise", "reduction", "softmax", "gemm"} <= kinds
    assert {r.arch for r in reports} == {"sm_80", "sm_90"}
    assert all(r.registers > 0 for r in reports)
    gemm = [r for r in reports if by_name[r.kernel].kind == "gemm"]
    assert all(r.shared_bytes > 0 for r in gemm)  # the tiles live in shared memory


@needs_nvcc
def test_nvcc_error_shows_numbered_source_and_op():
    source = (
        "// Exp of float32[3]\n"
        'extern "C" __global__ void k_0123456789ab(float* out) {\n'
        "  out[0] = undefined_name;\n"
        "}\n"
    )
    broken = Kernel("k_0123456789ab", source, "elementwise", "Exp of float32[3]")
    expected = (
        r"(?s)nvcc -arch=sm_80 failed to compile kernel k_0123456789ab generated for "
        r"Exp of float32\[3\]:\n1 \| // Exp.*3 \|   out\[0\] = undefined_name;"
        r".*--- nvcc -arch=sm_80 output ---.*undefined_name"
    )
    with pytest.raises(CudaCompileError, match=expected):
        nvcc.compile_kernels([broken], ["sm_80"])


def test_resource_report_parsing_and_limits():
    log = (
        "ptxas info    : Compiling entry function 'k_aaaaaaaaaaaa' for 'sm_90'\n"
        "ptxas info    : Function properties for k_aaaaaaaaaaaa\n"
        "    16 bytes stack frame, 8 bytes spill stores, 4 bytes spill loads\n"
        "ptxas info    : Used 80 registers, used 1 barriers, 50000 bytes smem, 400 bytes cmem[0]\n"
    )
    source = 'extern "C" __global__ void __launch_bounds__(1024) k_aaaaaaaaaaaa()'
    kernel = Kernel("k_aaaaaaaaaaaa", source, "gemm", "Dot of float32[?, ?], float32[?, ?]")
    report = nvcc.parse_report(log, kernel, "sm_90")
    assert (report.registers, report.shared_bytes, report.stack_bytes) == (80, 50000, 16)
    assert (report.spill_stores, report.spill_loads, report.threads) == (8, 4, 1024)
    problems = nvcc.limit_problems(kernel, report)
    assert len(problems) == 3
    assert "80 registers x 1024 threads > 65536" in problems[0]
    assert "50000 bytes of static shared memory > 49152" in problems[1]
    assert "spills (8 bytes stored, 4 loaded) in a gemm kernel" in problems[2]
    with pytest.raises(ValueError, match="no ptxas resource report for k_aaaaaaaaaaaa"):
        nvcc.parse_report("nothing here", kernel, "sm_90")


def test_missing_nvcc_is_a_clear_error(monkeypatch):
    monkeypatch.setattr(nvcc, "find_nvcc", lambda: None)
    with pytest.raises(FileNotFoundError, match="nvcc was not found .*CUDA_HOME"):
        nvcc.compile_kernels([HAND_KERNELS[0]])
