"""theanine.set_flush_denormal: denormal floats flushed to zero on the calling thread, opt-in."""

from __future__ import annotations

import numpy as np
import pytest

import theanine
import theanine.tensor as T
from theanine.kernels.numba import fpenv

pytestmark = pytest.mark.skipif(not fpenv.X86, reason="MXCSR is x86's control word")

TINY = np.float32(1e-39)  # a float32 denormal


@pytest.fixture
def restore():
    before = fpenv.flushing_denormals()
    yield
    theanine.set_flush_denormal(before)


def test_denormals_are_exact_by_default_and_flushed_when_asked(restore):
    assert not fpenv.flushing_denormals()
    x = T.fvector("x")
    f = theanine.function([x], x * np.float32(1.5), mode="numba")
    value = np.array([TINY, 1.0], np.float32)
    exact = f(value)
    assert exact[0] != 0 and exact[0] == TINY * np.float32(1.5)
    assert theanine.set_flush_denormal(True) is True
    assert fpenv.flushing_denormals()
    flushed = f(value)
    np.testing.assert_array_equal(flushed, [0.0, 1.5])  # a denormal input reads as zero
    assert np.float32(1e-30) * np.float32(1e-10) == 0  # numpy on this thread flushes too
    assert theanine.set_flush_denormal(False) is True
    assert not fpenv.flushing_denormals()
    np.testing.assert_array_equal(f(value), exact)


# MXCSR's other control bits: the exception masks and the rounding mode (bits 7-14; bits 0-5 are
# status flags that arithmetic sets)
OTHERS = 0x7F80


def test_flushing_keeps_normal_numbers_and_other_bits(restore):
    word = int(fpenv._get())
    theanine.set_flush_denormal(True)
    assert int(fpenv._get()) & OTHERS == word & OTHERS
    a = np.random.default_rng(0).normal(size=(4, 5)).astype(np.float32)
    x = T.fmatrix("x")
    f = theanine.function([x], T.tanh(x) * 2 + T.dot(x, x.T).sum(), mode="numba")
    np.testing.assert_allclose(f(a), np.tanh(a) * 2 + (a @ a.T).sum(), rtol=1e-5)
    theanine.set_flush_denormal(False)
    after = int(fpenv._get())
    assert after & OTHERS == word & OTHERS and not after & (fpenv._FTZ | fpenv._DAZ)
