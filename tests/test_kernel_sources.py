"""Function.kernel_sources() and printing.show_kernels show the generated source of every backend."""

from __future__ import annotations

import theanine
import theanine.tensor as T


def _fused(mode):
    x, y = T.fmatrix("x"), T.fmatrix("y")
    return theanine.function([x, y], T.tanh(x * y) + 1.0, mode=mode)


def test_numba_source_is_the_fused_loop():
    ((where, source),) = _fused("numba").kernel_sources()
    assert where.startswith("Composite") and "test_kernel_sources.py" in where
    assert "@numba.njit" in source and "tanh" in source and "def k_" in source


def test_cuda_source_is_a_grid_stride_kernel():
    sources = _fused("cuda-emulator").kernel_sources()
    assert len(sources) == 1
    assert '__global__' in sources[0][1] and "blockIdx.x" in sources[0][1]


def test_py_mode_has_none_and_show_kernels_says_so():
    f = _fused("py")
    assert f.kernel_sources() == []
    assert theanine.printing.show_kernels(f, file="str") == "# mode 'py' generates no kernel source"
    text = theanine.printing.show_kernels(_fused("numba"), file="str")
    assert text.startswith("# Composite") and "numba.njit" in text
