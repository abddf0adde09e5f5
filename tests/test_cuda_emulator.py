"""The CUDA emulator: hand-written kernels, generated kernels vs mode 'py', mode 'cuda-emulator'."""

from __future__ import annotations

import numpy as np
import pytest

import theanine
import theanine.tensor as T
from theanine.kernels.cuda.backend import EMULATOR_BACKEND, HOST_OPS, thread_order
from theanine.kernels.cuda.device import EmulatorDevice, EmulatorError
from theanine.kernels.cuda.kernel import CudaCompileError, Kernel

ORDERS = ["forward", "reverse", "shuffled"]
RNG = np.random.default_rng(0)

# --- hand-written kernels ------------------------------------------------------------------------

HAND_WRITTEN = r"""
extern "C" __global__ void k_axpy(const float* __restrict__ x, const float* __restrict__ y,
                                  float* __restrict__ out, const float alpha, const long long n) {
  for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < n;
       i += (long long)gridDim.x * blockDim.x)
    out[i] = alpha * x[i] + y[i];
}

extern "C" __global__ void k_block_sum(const double* __restrict__ x, double* __restrict__ out,
                                       const long long n) {
  __shared__ double partial[32];
  double acc = 0.0;
  for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < n;
       i += (long long)gridDim.x * blockDim.x)
    acc += x[i];
  for (int delta = 16; delta > 0; delta >>= 1) acc += __shfl_down_sync(0xffffffffu, acc, delta);
  if (threadIdx.x % 32 == 0) partial[threadIdx.x / 32] = acc;
  __syncthreads();
  if (threadIdx.x < 32) {
    acc = threadIdx.x < blockDim.x / 32 ? partial[threadIdx.x] : 0.0;
    for (int delta = 16; delta > 0; delta >>= 1) acc += __shfl_xor_sync(0xffffffffu, acc, delta);
    if (threadIdx.x == 0) out[blockIdx.x] = acc;
  }
}

extern "C" __global__ void k_sgemm(const float* __restrict__ a, const float* __restrict__ b,
                                   float* __restrict__ c, const int M, const int N, const int K) {
  __shared__ float ta[16][16];
  __shared__ float tb[16][16];
  const int row = blockIdx.y * 16 + threadIdx.y, col = blockIdx.x * 16 + threadIdx.x;
  float acc = 0.0f;
  for (int k0 = 0; k0 < K; k0 += 16) {
    const int ka = k0 + threadIdx.x, kb = k0 + threadIdx.y;
    ta[threadIdx.y][threadIdx.x] = row < M && ka < K ? a[row * K + ka] : 0.0f;
    tb[threadIdx.y][threadIdx.x] = col < N && kb < K ? b[kb * N + col] : 0.0f;
    __syncthreads();
    for (int k = 0; k < 16; k++) acc += ta[threadIdx.y][k] * tb[k][threadIdx.x];
    __syncthreads();
  }
  if (row < M && col < N) c[row * N + col] = acc;
}

extern "C" __global__ void k_shift_missing_sync(const float* __restrict__ x,
                                                float* __restrict__ out) {
  __shared__ float s[256];
  s[threadIdx.x] = x[threadIdx.x];
  // BUG (on purpose): no __syncthreads() here, so thread t may read s[t - 1] before it is written.
  out[threadIdx.x] = threadIdx.x > 0 ? s[threadIdx.x - 1] : 0.0f;
}

extern "C" __global__ void k_off_by_one(float* __restrict__ out, const int n) {
  const int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i <= n) out[i] = 1.0f;  // BUG (on purpose): writes out[n]
}

extern "C" __global__ void k_wild_write(float* __restrict__ out) {
  out[threadIdx.x * 100000000LL] = 1.0f;  // BUG (on purpose): far outside any buffer
}

extern "C" __global__ void k_uninitialized_shared(float* __restrict__ out) {
  __shared__ float s[64];
  if (threadIdx.x < 32) s[threadIdx.x] = 1.0f;
  __syncthreads();
  out[threadIdx.x] = s[threadIdx.x];  // BUG (on purpose): s[32..63] are never written
}

extern "C" __global__ void k_divergent_barrier(float* __restrict__ out) {
  if (threadIdx.x < 16) {
    __syncthreads();
  } else {
    __syncthreads();
  }
  out[threadIdx.x] = 1.0f;
}

extern "C" __global__ void k_assert(const float* __restrict__ x) {
  assert(x[threadIdx.x] >= 0.0f);
}

extern "C" __global__ void k_ballot(const int* __restrict__ x, unsigned* __restrict__ out) {
  const unsigned mask = __ballot_sync(0xffffffffu, x[threadIdx.x] > 0);
  if (threadIdx.x % 32 == 0) out[threadIdx.x / 32] = mask;
  __syncwarp();
}
"""


def _kernel(name: str) -> Kernel:
    return Kernel(name, HAND_WRITTEN, "other", f"the hand-written test kernel {name}")


HAND_NAMES = "k_axpy k_block_sum k_sgemm k_shift_missing_sync k_off_by_one k_uninitialized_shared"
HAND_NAMES += " k_divergent_barrier k_assert k_ballot k_wild_write"
HAND_KERNELS = [_kernel(n) for n in HAND_NAMES.split()]


@pytest.fixture(scope="module")
def module():
    return EmulatorDevice().compile(HAND_KERNELS)


@pytest.mark.parametrize("order", ORDERS)
def test_grid_stride_elementwise(module, order):
    device = EmulatorDevice(order)
    x, y = RNG.standard_normal((2, 10_001)).astype("float32")
    out = device.empty(x.shape, "float32")
    device.launch(module, "k_axpy", 7, 128, [device.to_device(x), device.to_device(y), out,
                                             np.float32(2.5), np.int64(x.size)])
    np.testing.assert_array_equal(out.get(), np.float32(2.5) * x + y)


@pytest.mark.parametrize("order", ORDERS)
def test_shared_memory_and_warp_shuffle_reduction(module, order):
    device = EmulatorDevice(order, seed=3)
    x = RNG.standard_normal(5000)
    out = device.empty((6,), "float64")
    device.launch(module, "k_block_sum", 6, 256, [device.to_device(x), out, np.int64(x.size)])
    np.testing.assert_allclose(out.get().sum(), x.sum(), rtol=1e-12)


@pytest.mark.parametrize("order", ORDERS)
def test_tiled_sgemm_with_syncthreads(module, order):
    device = EmulatorDevice(order)
    a = RNG.standard_normal((37, 21)).astype("float32")
    b = RNG.standard_normal((21, 45)).astype("float32")
    c = device.empty((37, 45), "float32")
    grid = ((45 + 15) // 16, (37 + 15) // 16)
    sizes = [np.int32(37), np.int32(45), np.int32(21)]
    operands = [device.to_device(a), device.to_device(b), c]
    device.launch(module, "k_sgemm", grid, (16, 16), operands + sizes)
    np.testing.assert_allclose(c.get(), a @ b, rtol=1e-5, atol=1e-5)


def test_missing_syncthreads_hidden_by_forward_caught_by_reverse_and_shuffled(module):
    x = np.arange(256, dtype="float32") + 1
    expected = np.concatenate([[0], x[:-1]]).astype("float32")
    results = {}
    for order in ORDERS:
        device = EmulatorDevice(order, seed=1)
        out = device.empty((256,), "float32")
        device.launch(module, "k_shift_missing_sync", 1, 256, [device.to_device(x), out])
        results[order] = out.get()
    np.testing.assert_array_equal(results["forward"], expected)  # forward order hides the bug
    assert np.isnan(results["reverse"][1:]).all()  # reverse: every read precedes the write
    assert np.isnan(results["shuffled"]).any()


def test_out_of_bounds_write_is_caught(module):
    device = EmulatorDevice()
    out = device.empty((100,), "float32")
    expected = (
        r"k_off_by_one wrote out of bounds of argument out "
        r"\(float32 buffer of 100 elements\): 4 bytes after its end"
    )
    with pytest.raises(EmulatorError, match=expected):
        device.launch(module, "k_off_by_one", 1, 128, [out, np.int32(100)])


def test_a_wild_write_is_an_error_not_a_crash(module):
    device = EmulatorDevice()
    out = device.empty((4,), "float32")
    expected = r"segmentation fault: thread \(1,0,0\) of block \(0,0,0\) touched address 0x"
    with pytest.raises(EmulatorError, match=expected):
        device.launch(module, "k_wild_write", 1, 32, [out])
    good = device.to_device(np.ones(32, dtype="float32"))
    device.launch(module, "k_assert", 1, 32, [good])  # the emulator still works afterwards


def test_uninitialized_shared_memory_reads_nan(module):
    device = EmulatorDevice()
    out = device.empty((64,), "float32")
    device.launch(module, "k_uninitialized_shared", 1, 64, [out])
    values = out.get()
    assert (values[:32] == 1).all() and np.isnan(values[32:]).all()


def test_divergent_barrier_is_an_error(module):
    device = EmulatorDevice()
    out = device.empty((64,), "float32")
    expected = (
        r"k_divergent_barrier failed on the emulator .*divergent __syncthreads: "
        r"thread \(0,0,0\) of block \(0,0,0\) waits at line \d+"
    )
    with pytest.raises(EmulatorError, match=expected):
        device.launch(module, "k_divergent_barrier", 1, 64, [out])


def test_assert_in_a_kernel_comes_back_as_an_exception(module):
    device = EmulatorDevice()
    x = np.ones(32, dtype="float32")
    x[5] = -1
    expected = r"assert\(x\[threadIdx.x\] >= 0.0f\) failed at line \d+"
    with pytest.raises(EmulatorError, match=expected):
        device.launch(module, "k_assert", 1, 32, [device.to_device(x)])
    good = device.to_device(np.ones(32, dtype="float32"))
    device.launch(module, "k_assert", 1, 32, [good])  # the next launch runs normally


def test_ballot(module):
    device = EmulatorDevice("reverse")
    x = (np.arange(64) % 3 == 0).astype("int32")
    out = device.empty((2,), "uint32")
    device.launch(module, "k_ballot", 1, 64, [device.to_device(x), out])
    expected = [sum(1 << k for k in range(32) if x[w * 32 + k]) for w in range(2)]
    assert out.get().tolist() == expected


def test_bad_launches_raise():
    device = EmulatorDevice()
    module = device.compile([_kernel("k_axpy")])
    with pytest.raises(TypeError, match="kernel k_axpy takes 5 arguments, got 1"):
        device.launch(module, "k_axpy", 1, 32, [np.int64(3)])
    out = device.empty((4,), "float32")
    args = [out, out, out, np.float32(1), np.int64(4)]
    with pytest.raises(EmulatorError, match=r"block of 2048 x 1 x 1 threads: expected 1 to 1024"):
        device.launch(module, "k_axpy", 1, 2048, args)
    with pytest.raises(ValueError, match="thread order must be one of forward, reverse, shuffled"):
        EmulatorDevice("backwards")


def test_gxx_compile_error_shows_numbered_source():
    source = 'extern "C" __global__ void k_broken(float* out) {\n  out[0] = nope;\n}\n'
    broken = Kernel("k_broken", source, "elementwise", "Exp of float32[3]")
    expected = (
        r"(?s)g\+\+ failed to compile kernel k_broken generated for Exp of float32\[3\]:\n"
        r"1 \| extern.*\n2 \|   out\[0\] = nope;.*k_broken.cu:2"
    )
    with pytest.raises(CudaCompileError, match=expected):
        EmulatorDevice().compile([broken])


# --- generated kernels against mode 'py' ----------------------------------------------------------


def _arrays(*specs):
    return [
        RNG.standard_normal(shape).astype(dtype)
        if dtype.startswith("float")
        else RNG.integers(-5, 6, shape).astype(dtype)
        for shape, dtype in specs
    ]


def _composite_broadcast():
    x, y = T.ftensor3("x"), T.frow("y")
    return [x, y], [T.exp(x) * 2.0 + y - T.nnet.sigmoid(x)]


def _two_outputs():
    x, y = T.dmatrix("x"), T.dmatrix("y")
    return [x, y], [T.tanh(x) + y, T.maximum(x, y) * x]


def _integer_ops():
    i, j = T.lmatrix("i"), T.lmatrix("j")
    return [i, j], [(i // 3) % 4 + abs(j) - i * j, T.switch(i > j, i, -j)]


def _mixed_dtypes():
    x, i = T.fmatrix("x"), T.imatrix("i")
    return [x, i], [x / (abs(i) + 1) + T.cast(i, "float32"), T.isnan(x) | (x > 0.5)]


def _math():
    x = T.dvector("x")
    y = T.log1p(abs(x)) + T.sqrt(abs(x)) - T.floor(x) + T.nnet.softplus(x)
    return [x], [y + T.nnet.relu(x, 0.1) + T.clip(x, -0.5, 0.5) + x**2]


def _transpose():
    x = T.fmatrix("x")
    return [x], [x.T * 1.5, x.dimshuffle(1, "x", 0) + 1]


def _reshape():
    x = T.dtensor3("x")
    return [x], [(x.reshape((4, 6)) * 2).sum(axis=0), x.flatten() + 1]


def _reductions():
    x = T.dtensor3("x")
    return [x], [
        T.sum(x, axis=(0, 2)), T.max(x, axis=1), T.min(x, axis=0, keepdims=True),
        T.prod(x, axis=2), T.mean(x), T.argmax(x, axis=1), T.argmin(x, axis=(0, 2)),
        T.any(x > 1, axis=2),
    ]


def _int_reductions():
    i = T.imatrix("i")
    return [i], [T.sum(i, axis=0), T.max(i, axis=1)]


def _softmax():
    x = T.fmatrix("x")
    return [x], [T.nnet.softmax(x), T.nnet.log_softmax(x)]


def _softmax_axis0():
    x = T.dmatrix("x")
    return [x], [T.nnet.softmax(x, axis=0)]


def _dense_softmax():
    x, W, b = T.fmatrix("x"), T.fmatrix("W"), T.fvector("b")
    return [x, W, b], [T.nnet.softmax(T.dot(x, W) + b)]


def _gemm_float64():
    a, b, c = T.dmatrix("a"), T.dmatrix("b"), T.dmatrix("c")
    return [a, b, c], [0.5 * T.dot(a, b) + 2.0 * c, T.dot(a, b[:, 0]), T.dot(a.T, a)]


def _slicing():
    x, i = T.dtensor3("x"), T.lscalar("i")
    return [x, i], [x[1:, ::-2] * 2, x[0] + 1, x[:, None, -1], x[i : i + 2, 1:] - 1, x[i, i, i] * 3]


# (name, build() -> (inputs, outputs), input arrays); distinct sizes so swapped axes show
CASES = [
    ("composite_broadcast", _composite_broadcast,
     _arrays(((2, 3, 4), "float32"), ((1, 4), "float32"))),
    ("two_outputs", _two_outputs, _arrays(((3, 5), "float64"), ((3, 5), "float64"))),
    ("integer_ops", _integer_ops, _arrays(((4, 3), "int64"), ((4, 3), "int64"))),
    ("mixed_dtypes", _mixed_dtypes, _arrays(((2, 5), "float32"), ((2, 5), "int32"))),
    ("math", _math, _arrays(((17,), "float64"))),
    ("transpose", _transpose, _arrays(((3, 4), "float32"))),
    ("reshape", _reshape, _arrays(((2, 3, 4), "float64"))),
    ("reductions", _reductions, _arrays(((2, 3, 40), "float64"))),
    ("slicing", _slicing, _arrays(((4, 5, 3), "float64")) + [np.array(1, dtype="int64")]),
    ("int_reductions", _int_reductions, _arrays(((70, 3), "int32"))),
    ("softmax", _softmax, _arrays(((3, 300), "float32"))),
    ("softmax_axis0", _softmax_axis0, _arrays(((5, 2), "float64"))),
    ("gemm_float32", _dense_softmax,
     _arrays(((5, 33), "float32"), ((33, 19), "float32"), ((19,), "float32"))),
    ("gemm_float64", _gemm_float64,
     _arrays(((20, 17), "float64"), ((17, 18), "float64"), ((20, 18), "float64"))),
]


def _compile(case, mode):
    name, build, arrays = case
    inputs, outputs = build()
    return theanine.function(inputs, outputs, mode=mode), arrays


@pytest.mark.parametrize("order", ORDERS)
@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_generated_kernels_match_py(case, order):
    emulated, arrays = _compile(case, "cuda-emulator")
    reference, _ = _compile(case, "py")
    with thread_order(order, seed=7):
        got = emulated(*arrays)
    expected = reference(*arrays)
    for g, e in zip(got, expected):
        assert g.dtype == e.dtype and g.shape == e.shape
        np.testing.assert_allclose(g, e, rtol=2e-5 if g.dtype == np.float32 else 1e-12, atol=1e-6)
    assert emulated._plan.kernels(), "the case must generate kernels"


def test_generated_source_is_deterministic_and_named_by_hash():
    first, _ = _compile(CASES[0], "cuda-emulator")
    second, _ = _compile(CASES[0], "cuda-emulator")
    sources = [s for _, s in first._plan.kernel_sources()]
    assert sources == [s for _, s in second._plan.kernel_sources()]
    kernel = first._plan.kernels()[-1]
    assert kernel.name.startswith("k_") and len(kernel.name) == 14
    assert f"void __launch_bounds__(256, 1) {kernel.name}(" in kernel.source
    assert "const float* __restrict__ x0" in kernel.source and "t0" in kernel.source


def test_host_ops_are_explicit():
    x = T.dvector("x")
    f = theanine.function([x], T.flatnonzero(x) * 2, mode="cuda-emulator")
    value = np.array([0.0, 1.5, 0.0, -2.0])
    np.testing.assert_array_equal(f(value), np.flatnonzero(value) * 2)
    hosts = [(n, r) for n, r in f._plan.host_nodes() if type(n.op).__name__ == "Nonzero"]
    (node, reason), = hosts
    assert type(node.op) in HOST_OPS and reason == HOST_OPS[type(node.op)]
    assert "compaction" in reason


def test_views_and_basic_indexing_run_no_host_step():
    for build, op_name in ((_reshape, "Reshape"), (_slicing, "Subtensor")):
        inputs, outputs = build()
        plan = theanine.function(inputs, outputs, mode="cuda-emulator")._plan
        assert plan.host_nodes() == []
        assert any(type(v.op).__name__ == op_name for v in plan.nodes())


def test_basic_indexing_errors_name_the_node():
    x, i = T.dvector("x"), T.lscalar("i")
    f = theanine.function([x, i], x[i] * 2, mode="cuda-emulator")
    assert f(np.arange(4.0), 3) == 6
    expected = r"(?s)Subtensor.*index 7 is out of bounds.*node created at"
    with pytest.raises(IndexError, match=expected):
        f(np.arange(4.0), 7)


def test_ops_without_a_scalar_rendering_are_not_fused_and_run_on_the_host():
    x = T.dvector("x")
    y = T.erfinv(x * 0.5) + 1
    assert not EMULATOR_BACKEND.supported(y.owner.inputs[0])
    f = theanine.function([x], y, mode="cuda-emulator")
    value = np.linspace(-0.9, 0.9, 7)
    np.testing.assert_allclose(f(value), theanine.function([x], y, mode="py")(value), rtol=1e-12)
    assert [type(v.op).__name__ for v, _ in f._plan.host_nodes()] == ["Erfinv"]


def test_kernel_ops_in_unsupported_dtypes_or_shapes_run_on_the_host():
    x = T.tensor(dtype="complex128", shape=(None, None), name="x")
    a = T.tensor(dtype="complex128", shape=(None, None, None), name="a")
    f = theanine.function([x, a], [x.T * 2, T.matmul(a, a)], mode="cuda-emulator")
    values = [np.arange(6).reshape(2, 3) * 1j, np.ones((2, 3, 3)) * 1j]
    got = f(*values)
    np.testing.assert_array_equal(got[0], values[0].T * 2)
    np.testing.assert_array_equal(got[1], np.full((2, 3, 3), -3.0 + 0j))
    reasons = [reason for _, reason in f._plan.host_nodes()]
    batched = "no CUDA kernel for these dtypes or shapes (inputs complex128[?, ?, ?], complex128"
    assert any(reason.startswith(batched) for reason in reasons)
    assert any("complex128" in reason for reason in reasons)


def test_ops_outside_the_graph_package_run_on_the_host():
    from dataclasses import dataclass

    from theanine.graph.type import TensorType
    from theanine.graph.var import Op, Var

    @dataclass(frozen=True)
    class Mystery(Op):
        def infer_type(self, x):
            return TensorType(x.dtype, x.shape)

        def perform(self, x):
            return x

    x = T.dvector("x")
    plan = EMULATOR_BACKEND.compile([x], [Var(Mystery(), (x,)) * 2])
    np.testing.assert_array_equal(plan.run([np.arange(3.0)])[0], [0, 2, 4])
    (node, reason), = plan.host_nodes()
    assert reason == f"defined outside theanine.graph ({__name__}): runs its perform"


def test_every_graph_op_has_a_kernel_a_view_or_a_host_entry():
    import importlib
    import inspect
    import pkgutil

    import theanine.graph.ops as ops
    from theanine.graph.var import Op
    from theanine.kernels.cuda.backend import EXTRA_KERNEL_OPS, KERNEL_OPS, VIEW_OPS

    missing = []
    for info in pkgutil.iter_modules(ops.__path__):
        module = importlib.import_module(f"theanine.graph.ops.{info.name}")
        for name, cls in vars(module).items():
            is_op = inspect.isclass(cls) and issubclass(cls, Op)
            if not is_op or cls.__module__ != module.__name__:
                continue
            if name.startswith("_") or cls.__subclasses__() and not issubclass(cls, KERNEL_OPS):
                continue  # private bases and abstract parents (RandomOp's draws are covered by it)
            on_host = any(k in HOST_OPS for k in cls.__mro__)
            if not on_host and not issubclass(cls, KERNEL_OPS + VIEW_OPS + EXTRA_KERNEL_OPS):
                missing.append(f"{info.name}.{name}")
    assert missing == []


def test_a_graph_op_with_neither_kernel_nor_host_entry_raises(monkeypatch):
    from theanine.graph.ops import shape_alloc

    monkeypatch.delitem(HOST_OPS, shape_alloc.Nonzero)
    x = T.dvector("x")
    expected = r"no lowering for Nonzero .* not in kernels/cuda/backend.py:HOST_OPS"
    with pytest.raises(NotImplementedError, match=expected):
        EMULATOR_BACKEND.compile([x], [T.flatnonzero(x)])


def test_wrong_shapes_name_the_node():
    x, y = T.fvector("x"), T.fvector("y")
    plan = theanine.function([x, y], T.exp(x) + y, mode="cuda-emulator")._plan
    expected = r"input 0 has shape \(2, 2\), expected float32\[\?\]; node created at"
    with pytest.raises(ValueError, match=expected):
        plan.run([np.ones((2, 2), "float32"), np.ones(2, "float32")])
    expected = r"Composite.*shape mismatch.*\nnode created at\n  .*test_cuda_emulator.py"
    with pytest.raises(ValueError, match=expected):
        plan.run([np.ones(3, "float32"), np.ones(2, "float32")])


# --- mode 'cuda-emulator' end to end --------------------------------------------------------------


@pytest.mark.parametrize("order", ORDERS)
def test_softmax_of_dense_layer(order):
    x, W = T.fmatrix("x"), T.fmatrix("W")
    b = theanine.shared(RNG.standard_normal(6).astype("float32"), name="b")
    y = T.nnet.softmax(T.dot(x, W) + b)
    xv, Wv = _arrays(((4, 9), "float32"), ((9, 6), "float32"))
    with thread_order(order):
        got = theanine.function([x, W], y, mode="cuda-emulator")(xv, Wv)
    expected = theanine.function([x, W], y, mode="py")(xv, Wv)
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-7)


def _training_step(mode: str):
    rng = np.random.default_rng(1)
    x, t = T.dmatrix("x"), T.lvector("t")
    W1 = theanine.shared(rng.standard_normal((8, 16)) * 0.3, name="W1")
    b1 = theanine.shared(np.zeros(16), name="b1")
    W2 = theanine.shared(rng.standard_normal((16, 5)) * 0.3, name="W2")
    b2 = theanine.shared(np.zeros(5), name="b2")
    hidden = T.tanh(T.dot(x, W1) + b1)
    probs = T.nnet.softmax(T.dot(hidden, W2) + b2)
    loss = -T.mean(T.log(probs)[T.arange(t.shape[0]), t])
    params = [W1, b1, W2, b2]
    grads = T.grad(loss, params)
    updates = [(p, p - 0.5 * g) for p, g in zip(params, grads)]
    step = theanine.function([x, t], loss, updates=updates, mode=mode)
    return step, params


@pytest.mark.parametrize("order", ORDERS)
def test_mlp_training_step_matches_py(order):
    data = np.random.default_rng(2).standard_normal((12, 8))
    labels = np.arange(12) % 5
    emulated, emulated_params = _training_step("cuda-emulator")
    reference, reference_params = _training_step("py")
    with thread_order(order, seed=5):
        losses = [float(emulated(data, labels)) for _ in range(3)]
    expected = [float(reference(data, labels)) for _ in range(3)]
    np.testing.assert_allclose(losses, expected, rtol=1e-10)
    assert losses[-1] < losses[0]
    for p, q in zip(emulated_params, reference_params):
        np.testing.assert_allclose(p.get_value(), q.get_value(), rtol=1e-9, atol=1e-12)
    kinds = {k.kind for k in emulated._plan.kernels()}
    assert {"gemm", "softmax", "elementwise", "reduction"} <= kinds


def test_every_case_kernels():
    """The kernels every case generates (the compile gate in test_cuda_compile.py reads this)."""
    assert all_case_kernels()


def all_case_kernels() -> list[Kernel]:
    """Every kernel the cases and the training step generate (code generation only)."""
    kernels = [k for case in CASES for k in _compile(case, "cuda-emulator")[0]._plan.kernels()]
    kernels += _training_step("cuda-emulator")[0]._plan.kernels()
    for dtype in ("float32", "float64", "int64", "int32"):
        inputs, outputs = _scalar_table_graph(dtype)
        kernels += theanine.function(inputs, outputs, mode="cuda-emulator")._plan.kernels()
    return kernels


@pytest.mark.gpu
def test_gpu_backend_matches_emulator():
    pytest.importorskip("pycuda", reason="mode 'cuda' needs pycuda and a CUDA GPU")
    from theanine.kernels.cuda.backend import GPU_BACKEND

    try:
        GPU_BACKEND.device
    except Exception as error:  # no driver, no GPU
        pytest.skip(f"no usable CUDA GPU: {error}")
    for case in CASES:
        gpu, arrays = _compile(case, "cuda")
        reference, _ = _compile(case, "py")
        for g, e in zip(gpu(*arrays), reference(*arrays)):
            np.testing.assert_allclose(g, e, rtol=1e-4, atol=1e-5)


# --- the scalar table against numpy, edge values included ----------------------------------------

UNARY = (
    "exp exp2 expm1 log log2 log10 log1p sqrt sqr sin cos tan arcsin arccos arctan sinh cosh tanh "
    "arcsinh arccosh arctanh floor ceil trunc round sgn erf erfc gamma gammaln deg2rad rad2deg "
    "isnan isinf abs_"
).split()
NNET = ("sigmoid", "softplus", "relu", "elu", "softsign", "hard_sigmoid", "selu")
BINARY = {"add": lambda a, b: a + b, "sub": lambda a, b: a - b, "mul": lambda a, b: a * b,
          "truediv": lambda a, b: a / b, "floordiv": lambda a, b: a // b, "mod": lambda a, b: a % b,
          "maximum": T.maximum, "minimum": T.minimum, "lt": T.lt, "ge": T.ge, "eq": T.eq,
          "neq": T.neq,
          "arctan2": T.arctan2, "logaddexp": T.logaddexp}
FLOATS = np.array([-2.5, -1.5, -0.5, -0.0, 0.0, 0.5, 1.5, 2.5, 3.7, -3.7, 1e-3, 100.0, -100.0,
                   np.inf, -np.inf, np.nan])
INTS = np.array([-7, -3, -1, 0, 1, 2, 3, 7, 10, -10, 5, -5, 4, -4, 6, -6])


def _scalar_table_graph(dtype: str):
    x = T.tensor(dtype=dtype, shape=(None,), name="x")
    y = T.tensor(dtype=dtype, shape=(None,), name="y")
    outputs = [getattr(T, name)(x) for name in UNARY] + [getattr(T.nnet, name)(x) for name in NNET]
    outputs += [T.round(x, "half_away_from_zero"), T.clip(x, -1, 2)]
    outputs += [f(x, y) for f in BINARY.values()]
    if dtype.startswith("int"):
        outputs += [x ** abs(y), T.and_(x, y), T.or_(x, y), T.xor(x, y), T.invert(x)]
    else:
        outputs += [x ** y, T.switch(x > y, x, y * 2)]
    return [x, y], outputs


@pytest.mark.parametrize("dtype", ["float32", "float64", "int64", "int32"])
def test_scalar_table_matches_numpy_on_edge_values(dtype):
    values = (FLOATS if dtype.startswith("float") else INTS).astype(dtype)
    inputs, outputs = _scalar_table_graph(dtype)
    with np.errstate(all="ignore"):
        got = theanine.function(inputs, outputs, mode="cuda-emulator")(values, values[::-1].copy())
        expected = theanine.function(inputs, outputs, mode="py")(values, values[::-1].copy())
    for k, (g, e) in enumerate(zip(got, expected)):
        assert g.dtype == e.dtype, (k, outputs[k])
        rtol = 1e-5 if dtype == "float32" else 1e-12
        np.testing.assert_allclose(
            g, e, rtol=rtol, atol=1e-6, equal_nan=True, err_msg=str(outputs[k])
        )


def test_importing_the_cuda_backend_loads_no_pycuda():
    import subprocess
    import sys

    code = (
        "import sys, theanine, theanine.kernels.cuda.backend as b; "
        "b.EMULATOR_BACKEND.device; print('pycuda' in sys.modules)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "False"


def test_thread_order_from_the_environment(monkeypatch):
    from theanine.kernels.cuda import backend

    monkeypatch.setenv("THEANINE_EMULATOR_ORDER", "reverse")
    assert backend._emulator_device().order == "reverse"
    monkeypatch.setenv("THEANINE_EMULATOR_ORDER", "sideways")
    with pytest.raises(ValueError, match="thread order must be one of forward, reverse, shuffled, "
                                         "got 'sideways'"):
        backend._emulator_device()
