"""Devices: EmulatorDevice (g++ against emulator.h, called via ctypes) and PyCudaDevice (a GPU)."""

from __future__ import annotations

import ctypes
import hashlib
import os
import subprocess
import tempfile
import threading
from pathlib import Path
from typing import Sequence

import numpy as np

from .kernel import CudaCompileError, Kernel, compile_error

HEADER = Path(__file__).with_name("emulator.h")
ORDERS = {"forward": 0, "reverse": 1, "shuffled": 2}
_CTYPES = {
    "float": ctypes.c_float, "double": ctypes.c_double, "bool": ctypes.c_bool,
    "char": ctypes.c_char, "signed char": ctypes.c_int8, "unsigned char": ctypes.c_uint8,
    "short": ctypes.c_int16, "unsigned short": ctypes.c_uint16, "int": ctypes.c_int32,
    "unsigned": ctypes.c_uint32, "unsigned int": ctypes.c_uint32, "long": ctypes.c_long,
    "unsigned long": ctypes.c_ulong, "long long": ctypes.c_longlong,
    "unsigned long long": ctypes.c_ulonglong, "size_t": ctypes.c_size_t,
}


class EmulatorError(RuntimeError):
    """A kernel failed on the emulator: a barrier error, an assert, an out-of-bounds write."""


def cache_dir() -> Path:
    """Where compiled kernels are kept: $THEANINE_CACHE or ~/.cache/theanine."""
    default = os.path.join(os.path.expanduser("~"), ".cache", "theanine")
    root = os.environ.get("THEANINE_CACHE") or default
    return Path(root)


class DeviceArray:
    """An array in device memory: `shape`, `dtype`, and the device's handle to its bytes."""

    __slots__ = ("shape", "dtype", "handle", "device")
    is_device_array = True  # graph/shared.py recognizes device values by this (it can't import us)

    def __init__(self, shape: tuple, dtype: np.dtype, handle, device) -> None:
        self.shape, self.dtype = tuple(shape), np.dtype(dtype)
        self.handle, self.device = handle, device

    @property
    def size(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64))

    @property
    def nbytes(self) -> int:
        return self.size * self.dtype.itemsize

    def get(self) -> np.ndarray:
        """A host copy."""
        return self.device.to_host(self)

    def copy(self) -> DeviceArray:
        """A device copy (no host transfer)."""
        return self.device.copy(self)

    def row(self, k: int) -> DeviceArray:
        """Row k (along the first axis) as a view of the same device memory."""
        if not 0 <= k < self.shape[0]:
            raise IndexError(f"row {k} is out of range for a device array of shape {self.shape}")
        size = int(np.prod(self.shape[1:], dtype=np.int64))
        return self.device.view(self, k * size, self.shape[1:])

    def rows(self, stop: int) -> DeviceArray:
        """The first `stop` rows as a view of the same device memory."""
        return self.device.view(self, 0, (stop,) + self.shape[1:])

    def __repr__(self) -> str:
        where = type(self.device).__name__
        return f"DeviceArray(shape={self.shape}, dtype={self.dtype.name}, on {where})"


# --- the emulator ---------------------------------------------------------------------------------

GUARD = 256  # bytes of 0xFF before and after every buffer: a changed byte is an out-of-bounds write


class Transfers:
    """Counts of host<->device copies and their bytes, and of device-to-device copies."""

    __slots__ = ("device_copies", "down_bytes", "down_calls", "up_bytes", "up_calls")

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        """Set every count to zero."""
        self.up_calls = self.up_bytes = self.down_calls = self.down_bytes = 0
        self.device_copies = 0

    def snapshot(self) -> dict:
        """The counts as a dict."""
        return {name: getattr(self, name) for name in self.__slots__}

    def __repr__(self) -> str:
        return f"Transfers({self.snapshot()})"


class _Guarded:
    """Host bytes with guard zones; `pointer` is the address of the first data byte."""

    __slots__ = ("raw", "nbytes", "pointer")

    def __init__(self, nbytes: int) -> None:
        self.raw = np.full(GUARD + nbytes + GUARD, 0xFF, dtype=np.uint8)
        self.nbytes = nbytes
        self.pointer = self.raw.ctypes.data + GUARD

    def data(self) -> np.ndarray:
        return self.raw[GUARD : GUARD + self.nbytes]

    def damage(self) -> str | None:
        """Where the guard zones were overwritten, or None."""
        before = np.flatnonzero(self.raw[:GUARD] != 0xFF)
        after = np.flatnonzero(self.raw[GUARD + self.nbytes :] != 0xFF)
        if before.size:
            return f"{GUARD - before[0]} bytes before its start"
        if after.size:
            return f"{after[-1] + 1} bytes after its end"
        return None


class _GuardedView:
    """`nbytes` bytes of a _Guarded buffer from byte `offset` (device views share memory)."""

    __slots__ = ("base", "nbytes", "offset", "pointer")

    def __init__(self, base: _Guarded, offset: int, nbytes: int) -> None:
        self.base, self.offset, self.nbytes = base, offset, nbytes
        self.pointer = base.pointer + offset

    def data(self) -> np.ndarray:
        return self.base.raw[GUARD + self.offset : GUARD + self.offset + self.nbytes]

    def damage(self) -> str | None:
        return self.base.damage()


def _check_view(array: DeviceArray, offset: int, shape: tuple) -> int:
    """The byte size of a view of `array` at element `offset` with `shape` (raises if outside)."""
    size = int(np.prod(shape, dtype=np.int64))
    if offset < 0 or offset + size > array.size:
        raise IndexError(
            f"a view of {size} elements at offset {offset} does not fit in a device array of "
            f"shape {array.shape}"
        )
    return size * array.dtype.itemsize


_STACKS: list[int] = []  # the process's fiber stacks, shared by every module
_LAUNCH_LOCK = threading.Lock()  # one launch at a time in the process: the stacks are shared


def _fiber_stacks(library) -> int:
    """The address of the fiber stacks, mapped by the first module loaded."""
    with _LAUNCH_LOCK:
        if not _STACKS:
            address = library.emu_map_stacks()
            if not address:
                raise MemoryError("the CUDA emulator could not map its fiber stacks")
            _STACKS.append(address)
    return _STACKS[0]


class EmulatorModule:
    """A compiled shared library of kernels; `launch` runs one of them on the emulator."""

    def __init__(self, path: Path, kernels: Sequence[Kernel]) -> None:
        self.library = ctypes.CDLL(str(path))
        self.library.emu_launch.restype = ctypes.c_int
        self.library.emu_launch.argtypes = [ctypes.c_uint] * 6 + [
            ctypes.c_int, ctypes.c_ulonglong, ctypes.c_void_p, ctypes.c_void_p,
        ]
        self.library.emu_last_error.restype = ctypes.c_char_p
        self.library.emu_map_stacks.restype = ctypes.c_void_p
        self.library.emu_use_stacks.argtypes = [ctypes.c_void_p]
        self.library.emu_use_stacks(_fiber_stacks(self.library))
        self.kernels = {k.name: k for k in kernels}
        self.parameters = {k.name: k.parameters() for k in kernels}
        self.bodies = {
            k.name: ctypes.cast(getattr(self.library, f"emu_body_{k.name}"), ctypes.c_void_p).value
            for k in kernels
        }


def _launcher(kernel: Kernel, namespace: str) -> str:
    """C++ calling `kernel` with arguments unpacked from a void** array (as cuLaunchKernel)."""
    args = ", ".join(f"*({ctype}*)a[{k}]" for k, (ctype, _) in enumerate(kernel.parameters()))
    call = f"{namespace}::{kernel.name}({args});"
    return f'extern "C" void emu_body_{kernel.name}(void** a) {{ {call} }}\n'


def emulator_source(kernels: Sequence[Kernel]) -> str:
    """One C++ translation unit: the header, each source in its own namespace, the launchers."""
    parts = [f'#include "{HEADER}"\n']
    namespaces: dict[str, str] = {}  # a source holding several kernels is compiled once
    for kernel in kernels:
        if kernel.source not in namespaces:
            namespaces[kernel.source] = space = f"m{len(namespaces)}"
            parts.append(f'namespace {space} {{\n#line 1 "{kernel.name}.cu"\n{kernel.source}\n}}\n')
    parts.append('#line 1 "launchers.cpp"\n')
    parts.extend(_launcher(kernel, namespaces[kernel.source]) for kernel in kernels)
    return "".join(parts)


class EmulatorDevice:
    """Runs generated CUDA C on the CPU: g++ -O2 against emulator.h, launched through ctypes.

    `order` is how the threads of a block take turns: forward, reverse or shuffled (by `seed`);
    running a test in all three exposes a missing __syncthreads that one order hides.
    """

    name = "emulator"
    max_grid = 64  # grid-stride kernels stay correct with few blocks; fewer fibers run faster

    def __init__(self, order: str = "forward", seed: int = 0) -> None:
        self.order = order
        self.seed = seed
        self._modules: dict[str, EmulatorModule] = {}
        self._lock = threading.Lock()
        self.transfers = Transfers()

    @property
    def order(self) -> str:
        return self._order

    @order.setter
    def order(self, value: str) -> None:
        if value not in ORDERS:
            raise ValueError(f"thread order must be one of {', '.join(ORDERS)}, got {value!r}")
        self._order = value

    # --- compilation ---
    def compile(self, kernels: Sequence[Kernel]) -> EmulatorModule:
        """A module holding `kernels` (compiled once per source set, then loaded from disk)."""
        unique = list({k.name: k for k in kernels}.values())
        source = emulator_source(unique)
        key = hashlib.sha256((HEADER.read_text() + source).encode()).hexdigest()[:20]
        with self._lock:
            module = self._modules.get(key)
            if module is None:
                module = EmulatorModule(self._build(key, source, unique), unique)
                self._modules[key] = module
        return module

    def _build(self, key: str, source: str, kernels: Sequence[Kernel]) -> Path:
        folder = cache_dir() / "cuda-emulator"
        path = folder / f"{key}.so"
        if path.exists():
            return path
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=folder) as tmp:
            cpp, lib = Path(tmp) / f"{key}.cpp", Path(tmp) / f"{key}.so"
            cpp.write_text(source)
            command = ["g++", "-O2", "-std=c++17", "-fPIC", "-shared", "-fno-strict-aliasing",
                       "-w", "-o", str(lib), str(cpp)]
            result = subprocess.run(command, capture_output=True, text=True)
            if result.returncode != 0:
                raise _which_failed(kernels, result.stderr)
            os.replace(lib, path)  # atomic: a concurrent process sees the whole file or none
        return path

    # --- memory ---
    def empty(self, shape: tuple, dtype) -> DeviceArray:
        """Uninitialized device memory (poisoned: 0xFF bytes, NaN for floats)."""
        dtype = np.dtype(dtype)
        nbytes = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
        return DeviceArray(shape, dtype, _Guarded(nbytes), self)

    def to_device(self, array: np.ndarray) -> DeviceArray:
        """A device copy of a host array (C order)."""
        array = np.asarray(array)
        out = self.empty(array.shape, array.dtype)
        out.handle.data()[:] = np.ascontiguousarray(array).reshape(-1).view(np.uint8)
        self.transfers.up_calls += 1
        self.transfers.up_bytes += out.nbytes
        return out

    def to_host(self, array: DeviceArray) -> np.ndarray:
        """A host copy of a device array."""
        self.transfers.down_calls += 1
        self.transfers.down_bytes += array.nbytes
        return array.handle.data().view(array.dtype).reshape(array.shape).copy()

    def view(self, array: DeviceArray, offset: int, shape: tuple) -> DeviceArray:
        """A DeviceArray of `shape` over `array`'s memory from element `offset` (no copy)."""
        nbytes = _check_view(array, offset, shape)
        handle = array.handle
        start = offset * array.dtype.itemsize
        if isinstance(handle, _GuardedView):
            handle, start = handle.base, handle.offset + start
        return DeviceArray(shape, array.dtype, _GuardedView(handle, start, nbytes), self)

    def copy_into(self, target: DeviceArray, source: DeviceArray) -> None:
        """Copy `source` into `target` on the device (same dtype and number of elements)."""
        _check_copy(target, source)
        self.transfers.device_copies += 1
        target.handle.data()[:] = source.handle.data()

    def copy(self, array: DeviceArray) -> DeviceArray:
        """A new device array holding a copy of `array`."""
        out = self.empty(array.shape, array.dtype)
        self.copy_into(out, array)
        return out

    # --- launches ---
    def launch(
        self, module: EmulatorModule, name: str, grid: tuple, block: tuple, args: Sequence
    ) -> None:
        """Run kernel `name` on a grid; DeviceArrays pass as pointers, numbers by value."""
        params = module.parameters[name]
        if len(args) != len(params):
            raise TypeError(f"kernel {name} takes {len(params)} arguments, got {len(args)}")
        storage, buffers = [], []
        for (ctype, pname), arg in zip(params, args):
            if isinstance(arg, DeviceArray):
                if "*" not in ctype:
                    message = f"kernel {name}: argument {pname} is {ctype}, got a device array"
                    raise TypeError(message)
                storage.append(ctypes.c_void_p(arg.handle.pointer))
                buffers.append((pname, arg))
            else:
                base = ctype.replace("const ", "").strip()
                if base not in _CTYPES:
                    message = f"kernel {name}: cannot pass {arg!r} as argument {pname} ({ctype})"
                    raise TypeError(message)
                storage.append(_CTYPES[base](arg.item() if hasattr(arg, "item") else arg))
        pointers = (ctypes.c_void_p * max(len(storage), 1))(*[ctypes.addressof(s) for s in storage])
        grid, block = _dims(grid), _dims(block)
        with _LAUNCH_LOCK:
            status = module.library.emu_launch(
                *grid, *block, ORDERS[self.order], self.seed, module.bodies[name], pointers
            )
            message = module.library.emu_last_error().decode() if status else ""
        if status != 0:
            raise EmulatorError(
                f"kernel {name} failed on the emulator ({self.order} order): {message}\n"
                f"{_what(module, name)}"
            )
        for pname, arg in buffers:
            damage = arg.handle.damage()
            if damage is not None:
                raise EmulatorError(
                    f"kernel {name} wrote out of bounds of argument {pname} "
                    f"({arg.dtype.name} buffer of {arg.size} elements): {damage}\n"
                    f"{_what(module, name)}"
                )

    def synchronize(self) -> None:
        """Launches are synchronous on the emulator."""


def _check_copy(target: DeviceArray, source: DeviceArray) -> None:
    if target.dtype != source.dtype or target.size != source.size:
        raise ValueError(
            f"device copy: cannot copy a {source.dtype.name} array of shape {source.shape} into "
            f"a {target.dtype.name} array of shape {target.shape}"
        )


def _what(module: EmulatorModule, name: str) -> str:
    what = module.kernels[name].what
    return f"(kernel generated for {what})" if what else ""


def _dims(value) -> tuple:
    value = (value,) if isinstance(value, int) else tuple(value)
    return tuple(int(v) for v in value) + (1,) * (3 - len(value))


def _which_failed(kernels: Sequence[Kernel], log: str) -> CudaCompileError:
    for kernel in kernels:
        if f"{kernel.name}.cu:" in log:
            return compile_error("g++", kernel, log)
    if len(kernels) == 1:
        return compile_error("g++", kernels[0], log)
    return compile_error("g++", Kernel("module", "", what="the launchers"), log)


# --- a real GPU through PyCUDA (imported only here, only when used) ------------------------------


class PyCudaDevice:
    """The same interface over PyCUDA: a memory pool, host<->device copies, modules and launches."""

    name = "gpu"
    max_grid = 65535

    def __init__(self) -> None:
        import pycuda.autoinit  # noqa: F401  (creates the context on the first GPU)
        import pycuda.driver as driver
        from pycuda.tools import DeviceMemoryPool

        self.driver = driver
        self.pool = DeviceMemoryPool()
        self.transfers = Transfers()
        self.stream = driver.Stream()
        self._modules: dict[str, object] = {}
        major, minor = driver.Context.get_device().compute_capability()
        self.arch = f"sm_{major}{minor}"

    def compile(self, kernels: Sequence[Kernel]):
        """A pycuda SourceModule of `kernels` (pycuda keeps the cubins in its disk cache)."""
        from pycuda.compiler import SourceModule

        unique = list({k.name: k for k in kernels}.values())
        source = "".join(
            f"namespace m{k} {{\n{kernel.source}\n}}\n" for k, kernel in enumerate(unique)
        )
        key = hashlib.sha256(source.encode()).hexdigest()
        if key not in self._modules:
            try:
                module = SourceModule(source, arch=self.arch, no_extern_c=True)
            except self.driver.CompileError as error:
                raise _which_failed(unique, str(error)) from None
            module.kernels = {k.name: k for k in unique}
            self._modules[key] = module
        return self._modules[key]

    def empty(self, shape: tuple, dtype) -> DeviceArray:
        dtype = np.dtype(dtype)
        nbytes = max(int(np.prod(shape, dtype=np.int64)) * dtype.itemsize, 1)
        return DeviceArray(shape, dtype, self.pool.allocate(nbytes), self)

    def to_device(self, array: np.ndarray) -> DeviceArray:
        array = np.ascontiguousarray(array)
        out = self.empty(array.shape, array.dtype)
        self.transfers.up_calls += 1
        self.transfers.up_bytes += array.nbytes
        if array.nbytes:
            self.driver.memcpy_htod(int(out.handle), array)
        return out

    def to_host(self, array: DeviceArray) -> np.ndarray:
        out = np.empty(array.shape, array.dtype)
        self.transfers.down_calls += 1
        self.transfers.down_bytes += out.nbytes
        if out.nbytes:
            self.synchronize()  # the launches before it run on self.stream
            self.driver.memcpy_dtoh(out, int(array.handle))
        return out

    def view(self, array: DeviceArray, offset: int, shape: tuple) -> DeviceArray:
        """A DeviceArray of `shape` over `array`'s memory from element `offset` (no copy)."""
        _check_view(array, offset, shape)
        handle, start = array.handle, offset * array.dtype.itemsize
        if isinstance(handle, _GpuView):
            handle, start = handle.base, handle.offset + start
        return DeviceArray(shape, array.dtype, _GpuView(handle, start), self)

    def copy_into(self, target: DeviceArray, source: DeviceArray) -> None:
        """Copy `source` into `target` on the device, in order with the launches."""
        _check_copy(target, source)
        self.transfers.device_copies += 1
        if source.nbytes:
            self.driver.memcpy_dtod_async(
                int(target.handle), int(source.handle), source.nbytes, self.stream
            )

    def copy(self, array: DeviceArray) -> DeviceArray:
        """A new device array holding a copy of `array`."""
        out = self.empty(array.shape, array.dtype)
        self.copy_into(out, array)
        return out

    def launch(self, module, name: str, grid: tuple, block: tuple, args: Sequence) -> None:
        function = module.get_function(name)
        # device pointers pass as np.uintp: plain allocations and views (base + offset) alike
        values = [np.uintp(int(a.handle)) if isinstance(a, DeviceArray) else a for a in args]
        function(*values, grid=_dims(grid), block=_dims(block), stream=self.stream)

    def synchronize(self) -> None:
        self.stream.synchronize()


class _GpuView:
    """A device pointer `offset` bytes into a PyCUDA allocation (kept alive by this view)."""

    __slots__ = ("base", "offset")

    def __init__(self, base, offset: int) -> None:
        self.base, self.offset = base, offset

    def __int__(self) -> int:
        return int(self.base) + self.offset
