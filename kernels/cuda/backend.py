"""Modes 'cuda-emulator' and 'cuda': generated kernels and explicit host ops on a device."""

from __future__ import annotations

import contextlib
import importlib
import os
import time
from typing import Iterator, Sequence

import numpy as np

from ...graph.evaluate import leaf_value, run_node
from ...graph.shared import device_backed
from ...graph.ops import blas, composite, elemwise, linalg, nnet, random, reduce, shape, shape_alloc
from ...graph.ops import elemwise_math, fused_reduce, subtensor
from ...graph.type import TensorType
from ...graph.var import Input, Shared, Var, toposort
from .device import DeviceArray, EmulatorDevice, EmulatorError
from .elementwise import elementwise_kernel, supported as elementwise_supported
from .fused_reduce import fused_reduce_kernel, supported_reduction as fused_reduce_supported
from .gemm import GemmLowering, gemm_epilogue_kernel, gemm_kernel, gemm_supported
from .gemm import extra_lowering as gemm_extra_lowering
from .indexing import basic_subtensor, subtensor_kernel
from ..user import CUDA_IMPLS
from ..user_backends import explain_compile_error
from .kernel import CudaCompileError, Kernel
from .reduction import reducible, reduction_kernel, softmax_kernel
from .scalar import CTYPE

_DTYPES = "a kernel runs for real dtypes; this node's dtypes (bool, float16, complex) have none"
# Ops that run on the host (numpy perform) in the CUDA backends, each with the reason. Most ops
# here have kernels (random.py, conv.py, pool.py, scatter.py, gemm.py, control.py); their entry is
# the reason given for the nodes those modules decline (dtypes with no CUDA C type).
HOST_OPS: dict[type, str] = {
    reduce.AxisSize: "a scalar computed from the input's shape: no data to move",
    shape.Shape: "a shape is host metadata",
    shape.MakeVector: "builds a small host vector from scalars",
    shape.Copy: _DTYPES,
    shape.Join: _DTYPES,
    linalg.TensorDot: _DTYPES,
    blas.Ger: _DTYPES,
    reduce.CumSum: _DTYPES,
    reduce.CumProd: _DTYPES,
    nnet.SelectClass: _DTYPES,
    nnet.SelectClassGrad: _DTYPES,
    subtensor.Subtensor: _DTYPES,
    subtensor.IncSubtensor: _DTYPES,
    random.RandomOp: _DTYPES,
    # only where supported_reduction says no (complex or float16 values, scalar ops with no CUDA
    # rendering), which the pipeline never builds: its perform (body, then reduction) on the host
    fused_reduce.FusedReduce: "its dtypes or scalar ops have no CUDA rendering",
}
for _cls in (shape_alloc.ARange, shape_alloc.Alloc, shape_alloc.Eye, shape_alloc.PutAlongAxis,
             shape_alloc.Repeat, shape_alloc.Roll, shape_alloc.TakeAlongAxis, shape_alloc.Tile):
    HOST_OPS[_cls] = _DTYPES
for _cls in (shape_alloc.AllocDiag, shape_alloc.Diagonal, shape_alloc.DiagonalGrad,
             shape_alloc.SumToShape, shape_alloc.ArgSort, shape_alloc.Sort):
    HOST_OPS[_cls] = _DTYPES
HOST_OPS[shape_alloc.Nonzero] = (
    "a compaction whose output size depends on the data: runs its numpy perform on the host"
)
# Ops of modules that may be absent in a partial checkout: (module, class, reason).
_OPTIONAL = [
    ("conv", "Conv2d", _DTYPES),
    ("conv", "Conv2dGradInputs", _DTYPES),
    ("conv", "Conv2dGradWeights", _DTYPES),
    ("pool", "Pool2d", _DTYPES),
    ("pool", "MaxPool2dGrad", _DTYPES),
    ("pool", "MaxPool2dGradGrad", _DTYPES),
    ("pool", "AveragePool2dGrad", _DTYPES),
]
for _module, _name, _reason in _OPTIONAL:
    try:
        _op_module = importlib.import_module(f"...graph.ops.{_module}", __package__)
        HOST_OPS[getattr(_op_module, _name)] = _reason
    except (ImportError, AttributeError):
        pass
_M = elemwise_math
for _cls in (_M.Erfinv, _M.Erfcinv, _M.Erfcx, _M.Polygamma, _M.Real, _M.Imag, _M.Conj, _M.Angle):
    HOST_OPS[_cls] = "no CUDA scalar rendering (special function or complex numbers)"


class View:
    """Nodes that relabel device memory without moving it: Proj, Reshape, SpecifyShape."""

    kernel = None

    def apply(self, var: Var, values: list, host) -> object:
        """The output: a DeviceArray sharing its input's memory (a host value for host inputs)."""
        x = values[0]
        if isinstance(var.op, composite.Proj):
            return x[var.op.index]
        if not isinstance(x, DeviceArray):
            return run_node(var, [x] + [host(v) for v in values[1:]])
        # perform on a zero-byte stand-in: the op's own checks and shape logic, no data copied
        stand_in = np.empty(x.shape, dtype=[])
        shape_ = var.op.perform(stand_in, *[host(v) for v in values[1:]]).shape
        if not var.type.accepts_shape(shape_):
            raise ValueError(f"{var.op} computed shape {shape_}, which does not fit {var.type}")
        return DeviceArray(shape_, x.dtype, x.handle, x.device)


VIEW_OPS = (composite.Proj, shape.Reshape, shape.SpecifyShape)
# Ops with generated kernels (some instances fall back to the host: dtypes, batched MatMul).
KERNEL_OPS = (composite.Composite, elemwise.Elemwise, shape.DimShuffle, reduce.Sum, reduce.Prod,
              reduce.Max, reduce.Min, reduce.Argmax, reduce.All, blas.MaxAndArgmax, nnet.Softmax,
              nnet.LogSoftmax, linalg.Dot, linalg.MatMul, blas.Gemm)


# Modules whose `lowering(var)` claims the nodes it generates kernels for (after the tables above).
_EXTRA_MODULES = [importlib.import_module(f".{name}", __package__)
                  for name in ("random", "conv", "pool", "scatter", "control", "extra_ops")]
for _module in _EXTRA_MODULES:  # a module's own reasons for the nodes it declines
    HOST_OPS.update(getattr(_module, "HOST_REASONS", {}))
# Op classes an extra module lowers for every node (no host reason needed).
EXTRA_KERNEL_OPS = tuple(cls for m in _EXTRA_MODULES for cls in getattr(m, "KERNEL_OPS", ()))

_GRAPH = __name__.rsplit(".", 3)[0] + ".graph"  # "theanine.graph": ops that must be covered


def lower(var: Var):
    """The kernel lowering of `var`, or (None, reason) when it runs on the host."""
    op = var.op
    if type(op) in CUDA_IMPLS:  # a custom op's registered kernel template
        from ..user_backends import CustomCudaLowering

        return CustomCudaLowering(var, *CUDA_IMPLS[type(op)]), None
    if isinstance(op, VIEW_OPS):
        return View(), None
    multi_output = isinstance(op, (composite.Composite, blas.MaxAndArgmax))
    tensor = isinstance(var.type, TensorType) or multi_output
    if tensor and isinstance(op, (elemwise.Elemwise, shape.DimShuffle)):
        copyable = isinstance(op, shape.DimShuffle) and var.dtype in CTYPE
        if copyable or elementwise_supported(var):
            return elementwise_kernel(var), None
    if tensor and reducible(var):
        return reduction_kernel(var), None
    if isinstance(op, fused_reduce.FusedReduce) and fused_reduce_supported(var):
        return fused_reduce_kernel(var), None
    softmax = isinstance(op, (nnet.Softmax, nnet.LogSoftmax))
    if tensor and softmax and var.dtype in ("float32", "float64"):
        return softmax_kernel(var), None
    if tensor and isinstance(op, (linalg.Dot, linalg.MatMul, blas.Gemm)) and gemm_supported(var):
        return gemm_kernel(var), None
    products = gemm_extra_lowering(var)  # TensorDot, Ger, batched MatMul
    if products is not None:
        return products, None
    if basic_subtensor(var):
        return subtensor_kernel(var), None
    for module in _EXTRA_MODULES:  # each module's lowering(var): its lowering object, or None
        lowering = module.lowering(var)
        if lowering is not None:
            return lowering, None
    for cls in type(op).__mro__:
        if cls in HOST_OPS:
            return None, HOST_OPS[cls]
    if isinstance(op, KERNEL_OPS):  # e.g. complex or float16 dtypes, batched MatMul
        types = ", ".join(str(x.type) for x in var.inputs)
        return None, f"no CUDA kernel for these dtypes or shapes (inputs {types})"
    if not type(op).__module__.startswith(_GRAPH):
        # An op defined elsewhere (a user's, the compiler's): like Theano, run its perform.
        return None, f"defined outside theanine.graph ({type(op).__module__}): runs its perform"
    raise NotImplementedError(
        f"the CUDA backend has no lowering for {type(op).__name__} ({var.describe()}) and it is "
        f"not in kernels/cuda/backend.py:HOST_OPS; node created at\n  {var.where()}"
    )


# Host steps that read only their inputs' shapes and dtypes: a device input is not copied down.
_SHAPE_ONLY = (shape.Shape, reduce.AxisSize)
_SMALL = 4096  # bytes: host-computed values up to this size are uploaded only when they change


class CudaPlan:
    """A graph as steps over slots: kernel steps launch generated code, host steps run perform.

    Residency: shared variables read by kernels live on the device (copied up once, then reused;
    updates computed on the device stay there); constants are copied up once; small values
    computed on the host (shapes, sizes) are copied up only when they change; a kernel step whose
    inputs were all computed on the host runs its numpy perform there too (shape arithmetic stays
    on the host, as Theano's GPU optimizer leaves it). Function inputs may be numpy arrays or
    DeviceArrays; outputs come back as numpy arrays except where `keep_on_device` says so, and
    updates of shared variables come back as they are (device values stay on the device).
    """

    resident = True  # compiler/function.py: results may be DeviceArrays

    def __init__(
        self, inputs: Sequence[Var], outputs: Sequence[Var], device, nan_guard: bool = False,
        updated: Sequence | None = None,
    ) -> None:
        self.device = device
        self.nan_guard = nan_guard
        self.n_inputs = len(inputs)
        slot_of: dict[int, int] = {id(v): k for k, v in enumerate(inputs)}
        self.template: list = [None] * len(inputs)
        self.shared: list[tuple[int, object]] = []
        self.constants: list[np.ndarray] = []  # the Function copies outputs that alias these
        self.steps: list[tuple] = []  # (var, lowering or None, reason, argument slots, output slot)
        for var in toposort(list(outputs), stop=set(inputs)):
            if id(var) in slot_of:
                continue
            slot_of[id(var)] = slot = len(self.template)
            self.template.append(None)
            if var.inputs:
                lowering, reason = lower(var)
                arguments = tuple(slot_of[id(x)] for x in var.inputs)
                self.steps.append((var, lowering, reason, arguments, slot))
            elif isinstance(var.op, Shared):
                self.shared.append((slot, device_backed(var.container)))
            elif isinstance(var.op, Input):
                leaf_value(var, {})  # raises: the caller did not list this input
            else:
                self.template[slot] = leaf_value(var, {})
                self.constants.append(self.template[slot])
        self.output_slots = tuple(slot_of[id(v)] for v in outputs)
        self._fuse_epilogues(slot_of)
        for target in updated or ():
            if target is not None:
                device_backed(target.container)
        # per output: come back as a DeviceArray (Function's return_device sets the first ones)
        self.keep_on_device = [False] * len(outputs)
        # per output: an update of a shared variable, returned wherever its value is
        self._as_is = [t is not None for t in updated] if updated else [False] * len(outputs)
        self._place()
        self._module = None

    def _fuse_epilogues(self, slot_of: dict) -> None:
        """A matrix product read only by one elementwise kernel (bias, activation) runs with it
        as one GEMM kernel whose epilogue applies the elementwise body (gemm.py)."""
        readers: dict[int, int] = {}
        for step in self.steps:
            for i in step[3]:
                readers[i] = readers.get(i, 0) + 1
        by_slot = {step[4]: k for k, step in enumerate(self.steps)}
        fused: set[int] = set()
        for k, (var, lowering, reason, args, slot) in enumerate(self.steps):
            if lowering is None or not isinstance(getattr(lowering, "kernel", None), Kernel):
                continue
            if lowering.kernel.kind != "elementwise":
                continue
            for i in args:
                source = by_slot.get(i)
                if source is None or source in fused or readers.get(i) != 1:
                    continue
                if i in self.output_slots or not isinstance(self.steps[source][1], GemmLowering):
                    continue
                epilogue = gemm_epilogue_kernel(self.steps[source][0], var)
                if epilogue is None:
                    continue
                arguments = tuple(slot_of[id(x)] for x in epilogue.inputs)
                self.steps[k] = (var, epilogue, reason, arguments, slot)
                fused.add(source)
                break
        self.steps = [step for k, step in enumerate(self.steps) if k not in fused]

    def _place(self) -> None:
        """Decide which steps run on the host and which shared values are read on the device.

        A kernel step whose inputs were all computed on the host (shape arithmetic) runs there
        too, unless a kernel running on the device reads its result there and no step reads it
        on the host (or it may be large): then it runs on the device, as a generator (an arange
        feeding an elementwise kernel is made where it is used). A small value read both ways (a
        slice bound also added to another) stays on the host and is uploaded when it changes.
        Readers decide for their inputs, so this is iterated from an optimistic start (every
        candidate on the host) until no step moves; steps only ever move to the device.
        """
        constant = {k for k, v in enumerate(self.template) if v is not None}
        steps = self.steps
        readers: dict[int, list] = {}  # slot: [(step index, argument position)]
        for k, step in enumerate(steps):
            for position, i in enumerate(step[3]):
                readers.setdefault(i, []).append((k, position))
        on_host = [True] * len(steps)

        def host_read(k: int, position: int) -> bool:  # does step k need the host value?
            var, lowering = steps[k][0], steps[k][1]
            if on_host[k] or lowering is None:
                return not isinstance(var.op, _SHAPE_ONLY)  # those read only shape and dtype
            if isinstance(lowering, View):
                return False
            return position in _host_inputs(lowering, len(steps[k][3]))

        def device_read(slot: int) -> bool:  # does a device step read `slot` on the device?
            for k, position in readers.get(slot, ()):
                lowering = steps[k][1]
                if on_host[k] or lowering is None:
                    continue
                if isinstance(lowering, View):
                    if position == 0 and device_read(steps[k][4]):
                        return True
                elif position not in _host_inputs(lowering, len(steps[k][3])):
                    return True
            return False

        changed = True
        while changed:
            changed, host_made = False, set()
            for k, (var, lowering, _, args, slot) in enumerate(steps):
                if lowering is None:
                    now = True
                elif isinstance(lowering, View):
                    now = args[0] in host_made
                else:
                    data = [i for i in args if i not in constant]
                    now = bool(data) and all(i in host_made for i in data)
                    if now and device_read(slot):
                        now = _small(var) and any(host_read(j, p) for j, p in readers[slot])
                if now != on_host[k]:
                    on_host[k], changed = now, True
                if now:
                    host_made.add(slot)
        device_read_slots: set[int] = set()
        for k, (var, lowering, _, args, slot) in enumerate(steps):
            if not on_host[k] and lowering is not None and not isinstance(lowering, View):
                positions = _host_inputs(lowering, len(args))
                device_read_slots.update(i for p, i in enumerate(args) if p not in positions)
        self._on_host: list[bool] = on_host
        self._host_made = host_made
        self._device_shared = [slot in device_read_slots for slot, _ in self.shared]
        self._container_of = {slot: container for slot, container in self.shared}
        self._device_constants: dict[int, DeviceArray] = {}
        self._small_uploads: dict[int, tuple] = {}  # slot: ((bytes, dtype, shape), DeviceArray)

    # --- inspection ---
    def nodes(self) -> list[Var]:
        """The computed Vars, in execution order."""
        return [step[0] for step in self.steps]

    def kernels(self) -> list[Kernel]:
        """Every generated kernel, in execution order."""
        return [kernel for step in self.steps for kernel in _kernels_of(step[1])]

    def kernel_sources(self) -> list[tuple[Var, str]]:
        """(node, generated CUDA C) for every node that runs a kernel."""
        return [(step[0], kernel.source) for step in self.steps for kernel in _kernels_of(step[1])]

    def host_nodes(self) -> list[tuple[Var, str]]:
        """(node, reason) for every node that runs on the host."""
        return [(step[0], step[2]) for step in self.steps if step[1] is None]

    # --- running ---
    def module(self):
        """The compiled module of this plan's kernels (built on first use)."""
        if self._module is None:
            try:
                self._module = self.device.compile(self.kernels()) if self.kernels() else None
            except CudaCompileError as error:  # name the user kernel and line it points at, if any
                raise explain_compile_error(error) from None
        return self._module

    def run(self, input_values: Sequence, times: list | None = None) -> list:
        """Every output from checked input values (numpy arrays or DeviceArrays); shared values
        are read first. Outputs are numpy arrays except as `keep_on_device` and updates say."""
        module = self.module()
        values = self.template.copy()
        values[: self.n_inputs] = input_values
        for (slot, container), on_device in zip(self.shared, self._device_shared):
            values[slot] = self._resident(container) if on_device else container.value
        cache: dict = {}  # this call's copies: (slot, "up" | "down") -> value
        for k, (var, lowering, _, args, slot) in enumerate(self.steps):
            start = time.perf_counter() if times is not None else 0.0
            if self._on_host[k]:
                if isinstance(var.op, _SHAPE_ONLY):
                    arguments = [_stand_in(values[i]) for i in args]
                elif isinstance(lowering, View):
                    arguments = [values[i] for i in args]
                else:
                    arguments = [self._host_arg(values, i, cache) for i in args]
                if isinstance(lowering, View):
                    values[slot] = lowering.apply(var, arguments, self._host)
                else:
                    values[slot] = run_node(var, arguments)
            elif isinstance(lowering, View):
                values[slot] = lowering.apply(var, [values[i] for i in args], self._host)
            else:
                on_host = _host_inputs(lowering, len(args))  # e.g. index inputs, read on the host
                arguments = [self._host_arg(values, i, cache) if p in on_host
                             else self._device_arg(values, i, cache) for p, i in enumerate(args)]
                _check_inputs(var, arguments, getattr(lowering, "inputs", var.inputs))
                try:
                    values[slot] = lowering.launch(self.device, module, arguments)
                except (EmulatorError, ValueError, IndexError) as error:
                    where = f"node created at\n  {var.where()}"
                    message = f"{var.op} ({var.describe()}): {error}\n{where}"
                    raise type(error)(message) from None
            if times is not None:
                self.device.synchronize()
                times[k] += time.perf_counter() - start
            if self.nan_guard:
                self._check_finite(var, values[slot])
        results = []
        for i, keep, as_is in zip(self.output_slots, self.keep_on_device, self._as_is):
            if keep:
                results.append(self._device_arg(values, i, cache))
            elif as_is and isinstance(values[i], DeviceArray) and i not in self._container_of:
                results.append(values[i])
            else:
                results.append(self._host_arg(values, i, cache))
        return results

    def _resident(self, container) -> DeviceArray:
        """A shared container's value on this plan's device (copied up once per new value)."""
        value = container.device_value
        if value is None or value.device is not self.device:
            value = self.device.to_device(np.asarray(container.value))
            container.device_value = value
        return value

    def _device_arg(self, values: list, i: int, cache: dict) -> DeviceArray:
        """Slot i's value on the device: copied up at most once per call (constants once, small
        host-computed values when they change)."""
        value = values[i]
        if isinstance(value, DeviceArray):
            if value.device is self.device:
                return value
            value = value.get()
        found = cache.get((i, "up"))
        if found is not None:
            return found
        container = self._container_of.get(i)
        if container is not None:
            found = self._resident(container)
        elif self.template[i] is not None:  # a constant
            found = self._device_constants.get(i)
            if found is None:
                found = self._device_constants[i] = self.device.to_device(np.asarray(value))
        else:
            array = np.asarray(value)
            if i in self._host_made and array.nbytes <= _SMALL:
                key = (array.tobytes(), array.dtype, array.shape)
                last = self._small_uploads.get(i)
                if last is not None and last[0] == key:
                    found = last[1]
                else:
                    found = self.device.to_device(array)
                    self._small_uploads[i] = (key, found)
            else:
                found = self.device.to_device(array)
        cache[(i, "up")] = found
        return found

    def _host_arg(self, values: list, i: int, cache: dict):
        """Slot i's value on the host: copied down at most once per call (a shared value once
        per update: its container keeps the host copy)."""
        value = values[i]
        if isinstance(value, DeviceArray):
            container = self._container_of.get(i)
            if container is not None:
                return container.value
            found = cache.get((i, "down"))
            if found is None:
                found = cache[(i, "down")] = value.get()
            return found
        if isinstance(value, tuple):
            return tuple(self._host(v) for v in value)
        return value

    def _host(self, value):
        if isinstance(value, DeviceArray):
            return value.get()
        if isinstance(value, tuple):
            return tuple(self._host(v) for v in value)
        return value

    def _check_finite(self, var: Var, value) -> None:
        for out in value if isinstance(value, tuple) else (value,):
            out = self._host(out)
            floating = isinstance(out, np.ndarray) and out.dtype.kind in "fc"
            if floating and not np.isfinite(out).all():
                bad = "NaN" if np.isnan(out).any() else "Inf"
                raise FloatingPointError(
                    f"NanGuardMode: {var.op} produced {bad} (output shape {out.shape}); "
                    f"node created at\n  {var.where()}"
                )


def _small(var: Var) -> bool:
    """Is var's value at most _SMALL bytes whatever the inputs (a scalar, a short static shape)?"""
    if not isinstance(var.type, TensorType) or None in var.type.shape:
        return False
    return int(np.prod(var.type.shape, dtype=np.int64)) * np.dtype(var.dtype).itemsize <= _SMALL


def _stand_in(value):
    """A zero-byte array of `value`'s shape and dtype: for host steps that read only those."""
    if isinstance(value, DeviceArray):
        return np.broadcast_to(np.zeros((), value.dtype), value.shape)
    return value


def _kernels_of(lowering) -> list[Kernel]:
    """The kernels a lowering launches: its `kernels` list, or its one `kernel` (None: none)."""
    kernels = getattr(lowering, "kernels", None)
    if kernels is not None:
        return list(kernels)
    kernel = getattr(lowering, "kernel", None)
    return [] if kernel is None else [kernel]


def _host_inputs(lowering, n: int) -> frozenset:
    """Positions of the inputs a lowering reads as host (numpy) values: its `host_inputs`, or
    every input after the first when it sets `host_indices` (indexing: the index values)."""
    positions = getattr(lowering, "host_inputs", None)
    if positions is not None:
        return frozenset(positions)
    return frozenset(range(1, n)) if getattr(lowering, "host_indices", False) else frozenset()


def _check_inputs(var: Var, arguments: Sequence[DeviceArray], inputs: Sequence[Var]) -> None:
    """Raise ValueError when a kernel's argument does not have its input's ndim or static sizes
    (`inputs`: the Vars the arguments hold, the node's own inputs unless a kernel fused more)."""
    for k, (x, value) in enumerate(zip(inputs, arguments)):
        if not isinstance(x.type, TensorType) or not isinstance(value, DeviceArray):
            continue
        sizes = zip(x.type.shape, value.shape)
        if len(value.shape) != x.ndim or any(s is not None and s != n for s, n in sizes):
            raise ValueError(
                f"{var.op} ({var.describe()}): input {k} has shape {value.shape}, "
                f"expected {x.type}; node created at\n  {var.where()}"
            )


class CudaBackend:
    """A CUDA backend on one device: the emulator (mode 'cuda-emulator') or a GPU (mode 'cuda')."""

    def __init__(self, name: str, make_device) -> None:
        self.name = name
        self._make_device = make_device
        self._device = None

    @property
    def device(self):
        """The device, created on first use (PyCUDA is imported only then)."""
        if self._device is None:
            self._device = self._make_device()
        return self._device

    @staticmethod
    def supported(var: Var) -> bool:
        """May this elementwise node be fused into a Composite (its scalar ops render as CUDA C)?"""
        return elementwise_supported(var)

    @staticmethod
    def supported_reduction(var: Var) -> bool:
        """May this FusedReduce (a reduction of a fused body) run as one kernel?"""
        return fused_reduce_supported(var)

    def compile(
        self, inputs: Sequence[Var], outputs: Sequence[Var], nan_guard: bool = False,
        updated: Sequence | None = None,
    ) -> CudaPlan:
        """The plan computing `outputs` from `inputs` on this backend's device; `updated[k]` is
        the shared variable output k updates (None: a plain output)."""
        return CudaPlan(inputs, outputs, self.device, nan_guard, updated)


def _gpu_device():
    from .device import PyCudaDevice

    try:
        return PyCudaDevice()
    except ImportError as error:  # a GPU, but no PyCUDA
        raise ImportError(
            f"mode='cuda' needs PyCUDA ({error}); install it with pip install -e \".[cuda]\" "
            "(or pip install pycuda), or use mode='cuda-emulator'"
        ) from None


def _emulator_device() -> EmulatorDevice:
    # THEANINE_EMULATOR_ORDER=reverse (or shuffled) runs a whole test suite in another thread order.
    return EmulatorDevice(os.environ.get("THEANINE_EMULATOR_ORDER", "forward"))


EMULATOR_BACKEND = CudaBackend("cuda-emulator", _emulator_device)
GPU_BACKEND = CudaBackend("cuda", _gpu_device)


@contextlib.contextmanager
def thread_order(order: str, seed: int = 0) -> Iterator[None]:
    """Run emulator launches inside the block with the threads of each block in `order`."""
    device = EMULATOR_BACKEND.device
    previous = (device.order, device.seed)
    device.order, device.seed = order, seed
    try:
        yield
    finally:
        device.order, device.seed = previous
