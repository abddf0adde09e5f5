"""The numba backend's GEMM entry point (kernels/numba/cblas.py) on each BLAS library: values
against numpy for every transpose, dtype, alpha and beta, empty sizes; the library flag and its
errors; compiled kernels cached under one library run under the other."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import numba
import numpy as np
import pytest

from theanine.graph.config import _parse_value
from theanine.kernels.numba import cblas

MKL = cblas._mkl_runtime() is not None
LIBRARIES = ["openblas", pytest.param("mkl", marks=pytest.mark.skipif(
    not MKL, reason="MKL's runtime is not installed (pip install theanine[mkl])"))]


@numba.njit(cache=False)
def _compiled_gemm(alpha, a, trans_a, b, trans_b, beta, c):
    cblas.gemm(alpha, a, trans_a, b, trans_b, beta, c)


def _cases():
    rng = np.random.default_rng(7)
    for dtype in (np.float32, np.float64):
        for trans_a in (False, True):
            for trans_b in (False, True):
                for m, k, n in ((3, 5, 7), (1, 4, 2), (6, 1, 5)):
                    a = rng.normal(size=(k, m) if trans_a else (m, k)).astype(dtype)
                    b = rng.normal(size=(n, k) if trans_b else (k, n)).astype(dtype)
                    c = rng.normal(size=(m, n)).astype(dtype)
                    yield dtype, trans_a, a, trans_b, b, c


@pytest.mark.parametrize("entry", ["python", "numba"])
def test_gemm_is_alpha_op_a_op_b_plus_beta_c(entry):
    call = cblas.py_gemm if entry == "python" else _compiled_gemm
    for dtype, trans_a, a, trans_b, b, c in _cases():
        x, y = (a.T if trans_a else a).astype(np.float64), (b.T if trans_b else b).astype(np.float64)
        want = 0.5 * (x @ y) - 2.0 * c
        got = c.copy()
        call(0.5, a, trans_a, b, trans_b, -2.0, got)
        tol = 1e-5 if dtype == np.float32 else 1e-12
        np.testing.assert_allclose(got, want, rtol=tol, atol=tol)


@pytest.mark.parametrize("entry", ["python", "numba"])
def test_gemm_with_an_empty_sum_scales_c_and_with_no_rows_writes_nothing(entry):
    call = cblas.py_gemm if entry == "python" else _compiled_gemm
    c = np.arange(6, dtype=np.float32).reshape(2, 3)
    call(1.0, np.zeros((2, 0), np.float32), False, np.zeros((0, 3), np.float32), False, 3.0, c)
    assert c.tolist() == (3 * np.arange(6).reshape(2, 3)).tolist()
    c[0, 0] = np.nan  # beta 0 does not read c (BLAS's convention)
    call(1.0, np.zeros((2, 0), np.float32), False, np.zeros((0, 3), np.float32), False, 0.0, c)
    assert c.tolist() == np.zeros((2, 3)).tolist()
    empty = np.zeros((0, 3), np.float32)
    call(1.0, np.zeros((0, 4), np.float32), False, np.ones((4, 3), np.float32), False, 0.0, empty)
    assert empty.shape == (0, 3)


def test_matmul_reads_transposed_and_strided_operands():
    rng = np.random.default_rng(3)
    a = rng.normal(size=(6, 8))
    b = rng.normal(size=(5, 6))
    d = rng.normal(size=(8, 10))
    for x, y in ((a.T, b.T), (a[::2], d[:, ::2]), (a[:, 1:4].T, b.T[:, ::2])):
        np.testing.assert_allclose(cblas.matmul(x, y), x @ y, rtol=1e-12)
    out = np.zeros((4, 3))
    assert cblas.matmul_into(a[:4, :5], b[:, :3], out) is out
    np.testing.assert_allclose(out, a[:4, :5] @ b[:, :3], rtol=1e-12)
    with pytest.raises(ValueError, match="do not fit the output"):
        cblas.matmul_into(a, b, np.zeros((6, 6)))
    with pytest.raises(ValueError, match="not C-ordered"):
        cblas.matmul_into(a[:4, :5], b[:, :3], np.zeros((3, 4)).T)


def test_gemm_from_python_names_what_does_not_fit():
    a, b = np.ones((2, 3), np.float32), np.ones((3, 4), np.float32)
    with pytest.raises(ValueError, match=r"op\(a\) \(2, 3\), op\(b\) \(3, 4\) and c \(2, 5\)"):
        cblas.py_gemm(1.0, a, False, b, False, 0.0, np.zeros((2, 5), np.float32))
    with pytest.raises(ValueError, match="C-ordered"):
        cblas.py_gemm(1.0, a, False, np.ones((4, 3), np.float32).T, False, 0.0,
                      np.zeros((2, 4), np.float32))
    with pytest.raises(ValueError, match="dtypes differ: float64, float32, float32"):
        cblas.py_gemm(1.0, a.astype(np.float64), False, b, False, 0.0, np.zeros((2, 4), np.float32))


def test_the_library_flag_takes_three_values_and_names_them():
    assert _parse_value("blas__library", "mkl") == "mkl"
    with pytest.raises(ValueError, match=r"'blas__library' expects one of auto, openblas, mkl; "
                                         r"got 'atlas'"):
        _parse_value("blas__library", "atlas")


def test_mkl_asked_for_but_missing_says_how_to_install_it(monkeypatch):
    monkeypatch.setattr(cblas, "_mkl_runtime", lambda: None)
    with pytest.raises(ImportError, match=r"pip install theanine\[mkl\].*blas__library=openblas"):
        cblas._choose("mkl")
    assert cblas._choose("auto").name == "openblas"  # auto falls back without a word


def test_an_mkl_runtime_that_does_not_load_falls_back_or_says_why(monkeypatch, tmp_path):
    broken = tmp_path / "libmkl_rt.so.3"
    broken.write_bytes(b"not a shared library")
    monkeypatch.setattr(cblas, "_mkl_runtime", lambda: str(broken))
    with pytest.raises(ImportError, match=r"libmkl_rt\.so\.3 does not load .*blas__library=openblas"):
        cblas._choose("mkl")
    with pytest.warns(RuntimeWarning, match="does not load.*run on scipy's OpenBLAS"):
        assert cblas._choose("auto").name == "openblas"


def test_auto_is_mkl_exactly_when_its_runtime_is_installed():
    from theanine.graph.config import config

    setting = config.blas__library  # what this process's numba backend loaded with
    expected = {"auto": "mkl" if MKL else "openblas"}.get(setting, setting)
    assert cblas.library() == expected
    assert cblas.LIBRARY.detail.startswith("MKL (libmkl_rt" if expected == "mkl" else "scipy's BLAS")


_SCRIPT = textwrap.dedent("""
    import json, numpy as np, theanine, theanine.tensor as T
    from theanine.kernels.numba import cache, cblas
    rng = np.random.default_rng(0)
    x, h0, w, v = T.matrix("x"), T.matrix("h0"), T.matrix("w"), T.matrix("v")
    # a product, a Gemm outside loops (dot + bias), and a loop with a state product and a
    # tall-weight product (a gradient's shape)
    hs, _ = theanine.scan(lambda h, w, v: T.tanh(T.dot(T.tanh(T.dot(h, w)), v)),
                          outputs_info=h0, non_sequences=[w, v], n_steps=3)
    out = T.dot(x, w) + 1.5 * x[:, :1]
    f = theanine.function([x, h0, w, v], [out, hs[-1]], mode="numba")
    xv, hv = rng.normal(size=(5, 4)), rng.normal(size=(2, 4))
    wv, vv = rng.normal(size=(4, 9)), rng.normal(size=(9, 4))
    xv, hv, wv, vv = (a.astype("float32") for a in (xv, hv, wv, vv))
    got_out, got_h = f(xv, hv, wv, vv)
    want_out = xv @ wv + 1.5 * xv[:, :1]
    h = hv.astype("float64")
    for _ in range(3):
        h = np.tanh(np.tanh(h @ wv) @ vv)
    print(json.dumps({"library": cblas.library(), "hits": cache.compile_counts()["hits"],
                      "out": float(np.abs(got_out - want_out).max()),
                      "h": float(np.abs(got_h - h).max())}))
""")


def _run(library: str, cache_dir: str) -> dict:
    env = dict(os.environ, THEANINE_FLAGS=f"blas__library={library}", THEANINE_CACHE=cache_dir)
    done = subprocess.run([sys.executable, "-c", _SCRIPT], env=env, capture_output=True,
                          text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("library", LIBRARIES)
def test_compiled_functions_on_each_library_and_kernels_cached_under_the_other(library, tmp_path):
    """A function with products outside and inside a compiled loop gives numpy's values on each
    library; a second process on the same cache, with the other library when there is one, loads
    the kernels the first compiled (they call GEMM by name, not by a first process's address)."""
    first = _run(library, str(tmp_path))
    assert first["library"] == library
    assert first["out"] < 1e-4 and first["h"] < 1e-4, first
    other = "openblas" if library == "mkl" or not MKL else "mkl"
    second = _run(other, str(tmp_path))
    assert second["library"] == other
    assert second["out"] < 1e-4 and second["h"] < 1e-4, second
    assert second["hits"] > 0, second
