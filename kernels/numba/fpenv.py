"""The x86 floating-point control word (MXCSR) of the calling thread: flushing denormals.

`set_flush_denormal(True)` sets MXCSR's flush-to-zero (FTZ: a denormal result becomes 0) and
denormals-are-zero (DAZ: a denormal input is read as 0) bits, as `torch.set_flush_denormal` does.
Arithmetic on denormal floats runs one to two orders of magnitude slower on these processors: a
plain RNN's back-propagation through 50 steps, whose gradients vanish into float32 denormals, ran
15.1 ms per step against 4.0 ms with this set (bench/denormals.py), and one GEMM on denormal
data 32 ms against 0.29 ms (MKL, measured here). Results then differ from IEEE arithmetic (and from numpy's) where a value
would be denormal, so it is off unless asked for.

The setting is per thread: it covers everything computed on the calling thread (numpy included,
as with torch) and MKL's products (Intel OpenMP's workers take the caller's control word at each
parallel region); OpenBLAS's worker threads and numba's parallel loops keep their own.
"""

from __future__ import annotations

import platform

import numba
import numpy as np
from llvmlite import ir
from numba import types
from numba.extending import intrinsic

_FTZ, _DAZ = 1 << 15, 1 << 6
X86 = platform.machine().lower() in ("x86_64", "amd64", "i386", "i686")


def _mxcsr_call(builder, name: str, slot) -> None:
    pointer = ir.IntType(8).as_pointer()
    function = builder.module.declare_intrinsic(
        name, fnty=ir.FunctionType(ir.VoidType(), [pointer])
    )
    builder.call(function, [builder.bitcast(slot, pointer)])


@intrinsic
def _read_mxcsr(typingctx):
    def codegen(context, builder, signature, args):
        slot = builder.alloca(ir.IntType(32))
        _mxcsr_call(builder, "llvm.x86.sse.stmxcsr", slot)
        return builder.load(slot)

    return types.uint32(), codegen


@intrinsic
def _write_mxcsr(typingctx, value):
    def codegen(context, builder, signature, args):
        slot = builder.alloca(ir.IntType(32))
        builder.store(args[0], slot)
        _mxcsr_call(builder, "llvm.x86.sse.ldmxcsr", slot)
        return context.get_dummy_value()

    return types.void(types.uint32), codegen


@numba.njit(cache=True)
def _get() -> int:
    return _read_mxcsr()


@numba.njit(cache=True)
def _set(value) -> None:
    _write_mxcsr(np.uint32(value))


def set_flush_denormal(mode: bool) -> bool:
    """Flush denormal floats to zero on the calling thread (mode True) or compute them exactly
    (False, the default); returns False, changing nothing, where the processor has no such
    control (not x86)."""
    if not X86:
        return False
    word = int(_get())
    _set((word | _FTZ | _DAZ) if mode else (word & ~(_FTZ | _DAZ)))
    return True


def flushing_denormals() -> bool:
    """Does the calling thread flush denormals now?"""
    return X86 and (int(_get()) & (_FTZ | _DAZ)) == (_FTZ | _DAZ)
