"""The matrix products of the numba backend: one GEMM entry point, bound to the BLAS library chosen
by `config.blas__library` when this module loads.

- "openblas": scipy's BLAS (its bundled OpenBLAS), the library numba's own np.dot calls;
- "mkl": Intel's MKL runtime (`pip install theanine[mkl]`, the `mkl` wheel), with its OpenMP
  threads (`libiomp5` beside it; sequential when that is missing). On the 2-core benchmark machine
  it runs the products of an LSTM step in half the time of OpenBLAS (bench/results/lstm.md);
- "auto" (the default): MKL when its runtime is installed in this Python's prefix, else OpenBLAS.

Both libraries export the Fortran `sgemm`/`dgemm`, whose address is registered with LLVM under the
names `theanine_sgemm`/`theanine_dgemm`. Compiled kernels call those names, not addresses, so numba's
on-disk cache stays valid across processes and libraries. `gemm` is the numba entry point (an
overload, inlined into the calling kernel), `py_gemm` the same call from Python through ctypes.

Arrays are C-ordered; BLAS is column-major, and a C-ordered matrix is the transpose of the
column-major matrix it lies as, so C = op(A) op(B) is computed as C^T = op(B)^T op(A)^T with the
operands swapped and no copy.
"""

from __future__ import annotations

import ctypes
import glob
import os
import sys
import warnings

import numba
import numpy as np
from llvmlite import binding as llvm
from numba import types
from numba.extending import get_cython_function_address, overload

_SYMBOLS = {np.float32: "theanine_sgemm", np.float64: "theanine_dgemm"}
_MKL_THREADING = {"intel": 0, "sequential": 1}


class _Library:
    """The BLAS library in use: its name and the addresses of its sgemm and dgemm."""

    def __init__(self, name: str, detail: str, sgemm: int, dgemm: int) -> None:
        self.name, self.detail = name, detail
        self.addresses = {np.float32: sgemm, np.float64: dgemm}


def _mkl_runtime() -> str | None:
    """The path of MKL's single dynamic library installed by the `mkl` wheel, or None."""
    for directory in (os.path.join(sys.prefix, "lib"), os.path.join(sys.base_prefix, "lib")):
        found = sorted(glob.glob(os.path.join(directory, "libmkl_rt.so*")))
        if found:
            return found[0]
    return None


def _load_mkl(path: str) -> _Library:
    lib = ctypes.CDLL(path)
    lib.MKL_Set_Interface_Layer.argtypes = [ctypes.c_int]
    if lib.MKL_Set_Interface_Layer(0) != 0:  # LP64: the 32-bit integers this module passes
        raise OSError("its interface layer is not LP64 (MKL_INTERFACE_LAYER is set)")
    threading = "sequential"
    if "MKL_THREADING_LAYER" in os.environ:
        threading = os.environ["MKL_THREADING_LAYER"].lower()  # MKL reads the user's own setting
    else:
        if glob.glob(os.path.join(os.path.dirname(path), "libiomp5.so*")):
            threading = "intel"
        lib.MKL_Set_Threading_Layer.argtypes = [ctypes.c_int]
        lib.MKL_Set_Threading_Layer(_MKL_THREADING[threading])
    address = lambda name: ctypes.cast(getattr(lib, name), ctypes.c_void_p).value  # noqa: E731
    return _Library("mkl", f"MKL ({os.path.basename(path)}, {threading} threading)",
                    address("sgemm_"), address("dgemm_"))


def _load_openblas() -> _Library:
    return _Library(
        "openblas", "scipy's BLAS (scipy.linalg.cython_blas)",
        get_cython_function_address("scipy.linalg.cython_blas", "sgemm"),
        get_cython_function_address("scipy.linalg.cython_blas", "dgemm"),
    )


def _choose(setting: str) -> _Library:
    if setting == "openblas":
        return _load_openblas()
    path = _mkl_runtime()
    if path is None:
        if setting == "mkl":
            raise ImportError(
                "theanine: config.blas__library is 'mkl' but MKL's runtime (libmkl_rt.so) is not "
                f"installed under {sys.prefix}/lib; install it with `pip install theanine[mkl]` "
                "(or `pip install mkl`), or set THEANINE_FLAGS=blas__library=openblas"
            )
        return _load_openblas()
    try:
        return _load_mkl(path)
    except (OSError, AttributeError, KeyError) as error:  # a broken or foreign install
        if setting == "mkl":
            raise ImportError(
                f"theanine: config.blas__library is 'mkl' but {path} does not load ({error}); "
                "reinstall it (`pip install --force-reinstall mkl`) or set "
                "THEANINE_FLAGS=blas__library=openblas"
            ) from error
        warnings.warn(f"theanine: MKL's runtime {path} does not load ({error}); mode numba's "
                      "products run on scipy's OpenBLAS", RuntimeWarning, stacklevel=2)
        return _load_openblas()


def _load() -> _Library:
    from ...graph.config import config

    chosen = _choose(config.blas__library)
    for dtype, symbol in _SYMBOLS.items():
        llvm.add_symbol(symbol, chosen.addresses[dtype])
    return chosen


LIBRARY = _load()


def library() -> str:
    """'mkl' or 'openblas': the BLAS library the numba backend's products run on."""
    return LIBRARY.name


# -- the call from numba ---------------------------------------------------------------------

_p = types.uintp  # a pointer, as an address (what `array.ctypes.data` is in numba)
_EXTERNAL = {
    dtype: types.ExternalFunction(symbol, types.void(*([_p] * 13)))
    for dtype, symbol in _SYMBOLS.items()
}


def gemm(alpha, a, trans_a, b, trans_b, beta, c):
    """c = alpha * op(a) @ op(b) + beta * c, op transposing when its flag is true; a, b and c
    2-d and C-ordered, of c's dtype (float32 or float64), their shapes checked by the caller."""
    raise NotImplementedError("cblas.gemm is called from numba-compiled code")


@overload(gemm, inline="always")
def _gemm_overload(alpha, a, trans_a, b, trans_b, beta, c):
    kind = {types.float32: np.float32, types.float64: np.float64}.get(c.dtype)
    if kind is None or a.dtype != c.dtype or b.dtype != c.dtype:
        return None  # numba then reports no matching implementation
    external = _EXTERNAL[kind]
    dtype = kind

    def impl(alpha, a, trans_a, b, trans_b, beta, c):
        m, n = c.shape
        k = a.shape[0] if trans_a else a.shape[1]
        if m == 0 or n == 0:
            return
        if k == 0:  # BLAS's convention: beta 0 does not read c
            for i in range(m):
                for j in range(n):
                    c[i, j] = beta * c[i, j] if beta != 0 else 0
            return
        ints = np.empty(6, np.int32)
        ints[0], ints[1], ints[2] = n, m, k
        ints[3], ints[4], ints[5] = b.shape[1], a.shape[1], n
        scalars = np.empty(2, dtype)
        scalars[0], scalars[1] = alpha, beta
        flags = np.empty(2, np.uint8)
        flags[0] = 84 if trans_b else 78  # 'T' or 'N'; column-major C^T = op(b)^T op(a)^T
        flags[1] = 84 if trans_a else 78
        i4, s = ints.ctypes.data, scalars.ctypes.data
        f = flags.ctypes.data
        external(f, f + 1, i4, i4 + 4, i4 + 8,
                 s, b.ctypes.data, i4 + 12,
                 a.ctypes.data, i4 + 16,
                 s + scalars.itemsize, c.ctypes.data, i4 + 20)
        # used after the call, so that numba frees none of them before it (it frees an array
        # after its last use in its own IR, which only sees the addresses taken above)
        ints[0], scalars[0], flags[0] = 0, 0, 0

    return impl


@numba.njit(cache=True, nogil=True)
def operand(x):
    """(x as BLAS reads it, transposed?): x itself when C-ordered, its transpose (flagged) when
    Fortran-ordered, else a C-ordered copy (py_operand is the same from Python)."""
    if x.flags.c_contiguous:
        return x, False
    if x.flags.f_contiguous:
        return x.T, True
    return np.ascontiguousarray(x), False


@numba.njit(cache=True, nogil=True)
def product(alpha, a, b, beta, out):
    """out = alpha * a @ b + beta * out for 2-d operands of out's dtype with any strides; out
    C-ordered, the shapes checked by the caller."""
    x, trans_x = operand(a)
    y, trans_y = operand(b)
    gemm(alpha, x, trans_x, y, trans_y, beta, out)


@numba.njit(cache=True, nogil=True)
def matmul_into(a, b, out):
    """out = a @ b for 2-d float arrays of one dtype, any strides; out C-ordered. Returns out."""
    if a.shape[1] != b.shape[0] or out.shape[0] != a.shape[0] or out.shape[1] != b.shape[1]:
        raise ValueError("matrix product: the operands' shapes do not fit the output")
    if not out.flags.c_contiguous:
        raise ValueError("matrix product: the output is not C-ordered")
    product(1.0, a, b, 0.0, out)
    return out


@numba.njit(cache=True, nogil=True)
def matmul(a, b):
    """a @ b for 2-d float arrays of one dtype, as a new C-ordered array."""
    if a.shape[1] != b.shape[0]:
        raise ValueError("matrix product: the inner dimensions differ")
    return matmul_into(a, b, np.empty((a.shape[0], b.shape[1]), a.dtype))


# -- the call from Python --------------------------------------------------------------------

def _python_entry(dtype) -> object:
    scalar = ctypes.c_float if dtype == np.float32 else ctypes.c_double
    p = ctypes.c_void_p
    prototype = ctypes.CFUNCTYPE(None, *([p] * 13))
    return prototype(LIBRARY.addresses[dtype]), scalar


_PY = {dtype: _python_entry(dtype) for dtype in (np.float32, np.float64)}


def py_gemm(alpha: float, a: np.ndarray, trans_a: bool, b: np.ndarray, trans_b: bool,
            beta: float, c: np.ndarray) -> None:
    """`gemm` called from Python (no numba compile): c = alpha op(a) op(b) + beta c, a, b and c
    C-ordered 2-d arrays of c's dtype (float32 or float64) with fitting shapes."""
    function, scalar = _PY[c.dtype.type]
    m, n = c.shape
    k = a.shape[0] if trans_a else a.shape[1]
    rows_a = a.shape[1] if trans_a else a.shape[0]
    rows_b, cols_b = b.shape[::-1] if trans_b else b.shape
    if (rows_a, k, cols_b) != (m, rows_b, n) or a.ndim != 2 or b.ndim != 2:
        raise ValueError(f"gemm: op(a) {a.shape}, op(b) {b.shape} and c {c.shape} do not fit")
    if not (a.flags.c_contiguous and b.flags.c_contiguous and c.flags.c_contiguous):
        raise ValueError("gemm: a, b and c must be C-ordered")
    if a.dtype != c.dtype or b.dtype != c.dtype:
        raise ValueError(f"gemm: dtypes differ: {a.dtype}, {b.dtype}, {c.dtype}")
    if m == 0 or n == 0:
        return
    if k == 0:  # BLAS's convention: beta 0 does not read c
        c[...] = beta * c if beta != 0 else 0
        return
    ints = [ctypes.c_int(v) for v in (n, m, k, b.shape[1], a.shape[1], n)]
    ref = ctypes.byref
    function(ctypes.c_char_p(b"T" if trans_b else b"N"), ctypes.c_char_p(b"T" if trans_a else b"N"),
             ref(ints[0]), ref(ints[1]), ref(ints[2]), ref(scalar(alpha)), b.ctypes.data,
             ref(ints[3]), a.ctypes.data, ref(ints[4]), ref(scalar(beta)), c.ctypes.data,
             ref(ints[5]))


def py_operand(x: np.ndarray) -> tuple[np.ndarray, bool]:
    """`operand` from Python: (x as BLAS reads it, transposed?), copying only an x that is
    neither C- nor Fortran-ordered."""
    if x.flags.c_contiguous:
        return x, False
    if x.flags.f_contiguous:
        return x.T, True
    return np.ascontiguousarray(x), False


def py_product(alpha: float, a: np.ndarray, b: np.ndarray, beta: float, out: np.ndarray) -> None:
    """`product` from Python: out = alpha * a @ b + beta * out, a and b of out's dtype with any
    strides, out C-ordered."""
    x, trans_x = py_operand(a)
    y, trans_y = py_operand(b)
    py_gemm(alpha, x, trans_x, y, trans_y, beta, out)
