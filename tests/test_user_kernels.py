"""User kernels: traced elementwise kernels, scalar kernels and custom ops, on every backend."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pytest

import theanine
import theanine.tensor as T
from theanine.graph.ops.composite import Composite
from theanine.graph.type import TensorType
from theanine.graph.var import Op
from theanine.kernels import KernelError, elementwise, register_cuda, register_numba, scalar_kernel
from theanine.kernels.cuda.kernel import CudaCompileError
from theanine.kernels.cuda.nvcc import find_nvcc
from theanine.kernels.user import nvcc_check

MODES = ["py", "numba", "cuda-emulator"]
RNG = np.random.default_rng(0)


@elementwise
def swish(x):
    """x * sigmoid(x)."""
    return x * T.nnet.sigmoid(x)


@elementwise
def gelu(x):
    """GELU, tanh form."""
    return 0.5 * x * (1.0 + T.tanh(0.7978845608028654 * (x + 0.044715 * x**3)))


@elementwise
def safe_softplus(x):
    """log(1 + exp(x)) without overflow."""
    return T.switch(x > 0, x + T.log1p(T.exp(-x)), T.log1p(T.exp(x)))


@elementwise
def lerp(a, b, t):
    """a + t * (b - a): three inputs that broadcast."""
    return a + t * (b - a)


def _np_swish(x):
    return x / (1 + np.exp(-x))


def _np_gelu(x):
    return 0.5 * x * (1 + np.tanh(0.7978845608028654 * (x + 0.044715 * x**3)))


def _np_softplus(x):
    return np.logaddexp(0, x)


def _softplus_scalar(x):
    return x if x > 20.0 else math.log1p(math.exp(x))


softplus = scalar_kernel(
    "softplus",
    numba=_softplus_scalar,
    cuda="x > (T)20 ? x : log1p(exp(x))",
    grad=lambda inputs, output, g: (g * T.nnet.sigmoid(inputs[0]),),
)


def _hypot_scalar(x, y):
    return math.sqrt(x * x + y * y)


hypot = scalar_kernel(
    "hypot2",
    numba=_hypot_scalar,
    cuda="const T r = sqrt(x * x + y * y);\nreturn r;",
    grad=lambda inputs, output, g: (g * inputs[0] / output, g * inputs[1] / output),
    dtypes=("float32", "float64"),
)

TRACED = [(swish, _np_swish), (gelu, _np_gelu), (safe_softplus, _np_softplus)]


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("kernel,reference", TRACED, ids=lambda k: getattr(k, "name", ""))
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_traced_kernel_matches_numpy_on_every_backend(kernel, reference, mode, dtype):
    x = T.tensor3("x", dtype=dtype)
    a = (RNG.normal(size=(2, 3, 4)) * 30).astype(dtype)  # large values: the safe forms matter
    out = kernel(x) * 2.0 - 1.0
    assert out.dtype == dtype and out.ndim == 3
    f = theanine.function([x], out, mode=mode)
    got = f(a)
    assert got.dtype == dtype and got.shape == (2, 3, 4)
    tol = 1e-5 if dtype == "float32" else 1e-12
    np.testing.assert_allclose(got, reference(a.astype("float64")) * 2 - 1, rtol=tol, atol=tol)


@pytest.mark.parametrize("mode", MODES)
def test_traced_kernel_broadcasts_its_inputs(mode):
    a, b, t = T.dmatrix("a"), T.drow("b"), T.dscalar("t")
    va, vb, vt = RNG.normal(size=(2, 3)), RNG.normal(size=(1, 3)), np.float64(0.25)
    out = lerp(a, b, t)
    assert out.type == TensorType("float64", (None, None))
    got = theanine.function([a, b, t], out, mode=mode)(va, vb, vt)
    np.testing.assert_allclose(got, va + vt * (vb - va), rtol=1e-12)


def test_traced_kernel_is_one_named_node_in_debugprint():
    x = T.fvector("x")
    y = swish(x)
    assert type(y.op).__name__ == "UserElemwise" and str(y.op) == "swish"
    text = theanine.printing.debugprint(y, file="str")
    assert text.splitlines()[0].startswith("swish ")
    assert swish(T.fvector("z")).op is y.op  # traced once per dtype, then reused
    assert swish(T.dvector("z")).op is not y.op


@pytest.mark.parametrize("mode", ["numba", "cuda-emulator"])
def test_user_kernels_fuse_with_their_neighbours_into_one_node(mode):
    x, y = T.fmatrix("x"), T.fmatrix("y")
    out = T.tanh(swish(x * y) + softplus(y)) * 3.0
    f = theanine.function([x, y], out, mode=mode)
    nodes = f.maker.fgraph.toposort()
    assert len(nodes) == 1 and isinstance(nodes[0].op, Composite)
    inner = {type(n.op).__name__ for n in nodes[0].op.nodes}
    assert {"UserElemwise", "ScalarKernel", "Tanh", "Mul", "Add"} <= inner
    a, b = RNG.normal(size=(2, 3)).astype("float32"), RNG.normal(size=(2, 3)).astype("float32")
    expected = np.tanh(_np_swish(a * b) + _np_softplus(b)) * 3
    np.testing.assert_allclose(f(a, b), expected, rtol=1e-5, atol=1e-6)
    ((_, source),) = f.kernel_sources()
    if mode == "numba":  # the traced body is inlined into the loop; the scalar kernel is called
        assert "S.sigmoid_f32" in source and "S.u_softplus_" in source
    else:  # both are __device__ functions emitted before the kernel, called from its loop
        assert "user kernel 'swish'" in source and "user kernel 'softplus'" in source
        swish_at = source.index("__device__ __forceinline__ float u01_swish")
        assert swish_at < source.index("__global__")
    shown = theanine.printing.show_kernels(f, file="str")
    assert "softplus" in shown


@elementwise
def swish_of_softplus(x, y):
    """User kernels inside a user kernel: a traced one and a scalar one."""
    return swish(x * y) + softplus(y) * swish(y)


@pytest.mark.parametrize("mode", MODES)
def test_user_kernels_nest_inside_user_kernels(mode):
    x, y = T.fmatrix("x"), T.fmatrix("y")
    f = theanine.function([x, y], T.exp(swish_of_softplus(x, y)), mode=mode)
    a, b = RNG.normal(size=(2, 3)).astype("float32"), RNG.normal(size=(2, 3)).astype("float32")
    expected = np.exp(_np_swish(a * b) + _np_softplus(b) * _np_swish(b))
    np.testing.assert_allclose(f(a, b), expected, rtol=2e-5)
    point = [RNG.normal(size=(2, 3)), RNG.normal(size=(2, 3))]
    theanine.gradient.verify_grad(swish_of_softplus, point, rng=np.random.default_rng(4))


@pytest.mark.parametrize("kernel", [swish, gelu, safe_softplus], ids=lambda k: k.name)
def test_traced_kernel_gradient_is_derived_from_its_body(kernel):
    point = RNG.normal(size=(2, 3)) * 3
    theanine.gradient.verify_grad(kernel, [point], rng=np.random.default_rng(1))


def test_traced_kernel_gradient_with_broadcasting_inputs():
    points = [RNG.normal(size=(2, 3)), RNG.normal(size=(1, 3)), RNG.normal(size=(2, 3))]
    theanine.gradient.verify_grad(
        lambda a, b, t: lerp(a, T.addbroadcast(b, 0), t), points, rng=np.random.default_rng(2)
    )


@pytest.mark.parametrize("mode", MODES)
def test_gradient_of_a_user_kernel_runs_on_every_backend(mode):
    x = T.dvector("x")
    cost = (gelu(x) + softplus(x)).sum()
    g = theanine.function([x], T.grad(cost, x), mode=mode)
    a = np.linspace(-4, 4, 7)
    sig = 1 / (1 + np.exp(-a))
    eps = 1e-6
    numeric_gelu = (_np_gelu(a + eps) - _np_gelu(a - eps)) / (2 * eps)
    np.testing.assert_allclose(g(a), numeric_gelu + sig, rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_scalar_kernels_match_numpy_on_every_backend(mode, dtype):
    x, y = T.matrix("x", dtype=dtype), T.matrix("y", dtype=dtype)
    a = (RNG.normal(size=(2, 3)) * 15).astype(dtype)
    b = RNG.normal(size=(2, 3)).astype(dtype)
    f = theanine.function([x, y], [softplus(x), hypot(x, y) + 1.0], mode=mode)
    got_softplus, got_hypot = f(a, b)
    assert got_softplus.dtype == dtype and got_hypot.dtype == dtype
    tol = 1e-5 if dtype == "float32" else 1e-12
    a64 = a.astype("float64")
    expected = np.where(a64 > 20, a64, np.log1p(np.exp(a64)))  # the kernel's own cut-off
    np.testing.assert_allclose(got_softplus, expected, rtol=tol)
    np.testing.assert_allclose(got_hypot, np.hypot(a, b) + 1, rtol=tol)


def test_scalar_kernel_gradients_are_checked_by_verify_grad():
    rng = np.random.default_rng(3)
    theanine.gradient.verify_grad(softplus, [rng.normal(size=(2, 3)) * 5], rng=rng)
    theanine.gradient.verify_grad(hypot, [rng.normal(size=(3,)), rng.normal(size=(3,))], rng=rng)


# --- custom ops -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Axpy(Op):
    """alpha * x + y for vectors of one length (a custom op with a parameter)."""

    alpha: float = 2.0

    def infer_type(self, x, y):
        return TensorType(x.dtype, x.shape)

    def perform(self, x, y):
        return (self.alpha * x + y).astype(x.dtype)

    def pullback(self, inputs, output, g):
        return (g * self.alpha, g)


def _axpy_numba(x, y, alpha):
    out = np.empty_like(x)
    for i in range(x.shape[0]):
        out[i] = alpha * x[i] + y[i]
    return out


AXPY_CUDA = """
extern "C" __global__ void KERNEL(const scalar_t* x, const scalar_t* y, scalar_t* out,
                                  long long n, double alpha) {
  long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x;
  if (i < n) out[i] = (scalar_t)alpha * x[i] + y[i];
}
"""


def _axpy_launch(op, x_shape, y_shape):
    n = x_shape[0]
    return {"grid": (n + 127) // 128, "block": 128, "shape": (n,), "args": (n, op.alpha)}


register_numba(Axpy, _axpy_numba)
register_cuda(Axpy, AXPY_CUDA, _axpy_launch)


@pytest.mark.parametrize("mode", MODES)
def test_custom_op_runs_its_registered_kernels(mode):
    x, y = T.dvector("x"), T.dvector("y")
    a, b = RNG.normal(size=300), RNG.normal(size=300)
    out = Axpy(3.0)(x, y)
    f = theanine.function([x, y], [out, T.grad(out.sum(), x)], mode=mode)
    value, gradient = f(a, b)
    np.testing.assert_allclose(value, 3 * a + b, rtol=1e-12)
    np.testing.assert_allclose(gradient, np.full(300, 3.0))
    if mode == "cuda-emulator":
        (source,) = [s for _, s in f.kernel_sources() if "user kernel 'Axpy'" in s]
        assert "const double* x, const double* y, double* out" in source
        assert "(double)alpha" in source
    if mode == "numba":
        step = [s for s in f._plan.runs if isinstance(s[4].op, Axpy)]
        assert type(step[0][0]).__name__ == "CustomNumbaRunner"


def test_registration_checks_signatures_and_says_what_is_missing():
    class NoGrad(Op):
        def infer_type(self, x):
            return x

        def perform(self, x):
            return x

    with pytest.raises(KernelError, match=r"NoGrad defines no pullback"):
        register_numba(NoGrad, lambda x: x)
    with pytest.raises(KernelError, match=r"fn takes 2 argument\(s\), expected 3: the 2 input"):
        register_numba(Axpy, lambda x, y: x)
    with pytest.raises(KernelError, match=r"fn must be a function"):
        register_numba(Axpy, "x + y")
    with pytest.raises(KernelError, match=r"expected a subclass of theanine's Op"):
        register_numba(int, _axpy_numba)
    with pytest.raises(KernelError, match=r"kernel takes 2 pointer\(s\), expected 3"):
        one_input = "__global__ void KERNEL(const scalar_t* x, scalar_t* out) {}"
        register_cuda(Axpy, one_input, _axpy_launch)
    with pytest.raises(KernelError, match=r"template must be CUDA C text"):
        register_cuda(Axpy, "void f() {}", _axpy_launch)
    with pytest.raises(KernelError, match=r"launch takes 1 argument\(s\), expected 3"):
        register_cuda(Axpy, AXPY_CUDA, lambda op: {})


# --- bad input: each a clear error naming the kernel ----------------------------------------------


def test_a_body_with_a_non_elementwise_op_is_refused():
    @elementwise
    def bad_norm(x):
        return x / T.sum(x)

    expected = r"elementwise kernel 'bad_norm': its body uses Sum.*not an elementwise op"
    with pytest.raises(KernelError, match=expected):
        bad_norm(T.dvector("x"))


def test_a_body_reading_an_outside_variable_is_refused():
    outside = T.dscalar("w")

    @elementwise
    def leaky(x):
        return x * outside

    with pytest.raises(KernelError, match=r"'leaky': its body reads 'w'.*pass it as an argument"):
        leaky(T.dvector("x"))


def test_numba_function_that_does_not_compile_names_kernel_and_line():
    def broken(x):
        return x.no_such_attribute  # the offending line

    bad = scalar_kernel("broken", numba=broken, numpy=lambda x: x)
    f = theanine.function([(x := T.dvector("x"))], T.exp(bad(x)), mode="numba")
    pattern = (
        r"scalar kernel 'broken': numba cannot compile .*broken for float64 inputs: "
        r"Unknown attribute(.|\n)*no_such_attribute  # the offending line"
    )
    with pytest.raises(Exception, match=pattern):
        f(np.ones(3))


def test_custom_op_numba_function_that_does_not_compile_names_op():
    @dataclass(frozen=True)
    class Broken(Op):
        def infer_type(self, x):
            return x

        def perform(self, x):
            return x

        def pullback(self, inputs, output, g):
            return (g,)

    def broken_impl(x):
        return x.no_such_attribute

    register_numba(Broken, broken_impl)
    f = theanine.function([(x := T.dvector("x"))], Broken()(x), mode="numba")
    with pytest.raises(Exception, match=r"custom op Broken: numba cannot compile .*broken_impl"):
        f(np.ones(3))


BAD_CUDA = scalar_kernel(
    "typo", numba=lambda x: x + 1.0, cuda="const T y = x + (T)1;\nretrun y;", dtypes=("float64",)
)


def test_cuda_code_that_does_not_compile_names_kernel_and_line():
    x = T.dvector("x")
    f = theanine.function([x], BAD_CUDA(x) * 2.0, mode="cuda-emulator")
    expected = r"scalar kernel 'typo': its CUDA code does not compile: line 2 of its source:\n"
    expected += "    retrun y;"
    with pytest.raises(CudaCompileError, match=expected):
        f(np.ones(3))


@pytest.mark.skipif(find_nvcc() is None, reason="nvcc is not installed")
def test_nvcc_gate_compiles_user_kernels_and_names_a_bad_one():
    x, y = T.fvector("x"), T.fvector("y")
    both = gelu(x) + hypot(x, y) + softplus(y) + swish_of_softplus(x, y)
    good = theanine.function([x, y], both, mode="cuda-emulator")
    assert nvcc_check(good)  # every kernel compiles under the real nvcc
    z = T.dvector("z")
    bad = theanine.function([z], BAD_CUDA(z), mode="cuda-emulator")
    expected = r"scalar kernel 'typo'.*line 2 of its source:\n    retrun y;"
    with pytest.raises(CudaCompileError, match=expected):
        nvcc_check(bad)


def test_gradient_of_the_wrong_arity_is_refused_at_definition_and_use():
    expected = r"scalar kernel 'pair': grad returned 1 cotangent\(s\), expected 2"
    with pytest.raises(KernelError, match=expected):
        scalar_kernel("pair", numba=lambda x, y: x * y, grad=lambda i, o, g: (g * i[1],))
    expected = r"'single': grad must return a tuple .* got a single Var"
    with pytest.raises(KernelError, match=expected):
        scalar_kernel("single", numba=lambda x: x, grad=lambda i, o, g: g)
    with pytest.raises(KernelError, match=r"'two': grad= must be a function \(inputs, output, g\)"):
        scalar_kernel("two", numba=lambda x: x, grad=lambda i, g: (g,))


def test_a_dtype_the_kernel_does_not_declare_is_refused():
    expected = r"scalar kernel 'softplus' declares dtypes float32, float64; "
    expected += "its inputs have dtypes int32"
    with pytest.raises(KernelError, match=expected):
        softplus(T.ivector("n"))
    with pytest.raises(KernelError, match=r"@elementwise: a kernel name must be an identifier"):
        elementwise(dtypes=["float32"])(lambda x: x * 2.0)
    half = elementwise(name="half", dtypes=["float32"])(lambda x: x * 0.5)
    expected = r"elementwise kernel 'half' declares dtypes float32; got inputs of dtypes float64"
    with pytest.raises(KernelError, match=expected):
        half(T.dvector("x"))


def test_wrong_number_of_arguments_names_the_kernel():
    expected = r"elementwise kernel 'lerp' takes 3 argument\(s\) \(a, b, t\), got 2"
    with pytest.raises(KernelError, match=expected):
        lerp(T.dvector("a"), T.dvector("b"))
    with pytest.raises(KernelError, match=r"scalar kernel 'hypot2' takes 2 input\(s\), got 1"):
        hypot(T.dvector("a"))


@pytest.mark.gpu
def test_user_kernels_on_a_gpu_match_the_emulator():
    pytest.importorskip("pycuda", reason="mode 'cuda' needs pycuda and a CUDA GPU")
    from theanine.kernels.cuda.backend import GPU_BACKEND

    try:
        GPU_BACKEND.device
    except Exception as error:  # no driver, no GPU
        pytest.skip(f"no usable CUDA GPU: {error}")
    x, y = T.dvector("x"), T.dvector("y")
    outputs = [gelu(x) * softplus(y) + hypot(x, y), Axpy(0.5)(x, y)]
    a, b = RNG.normal(size=1000) * 5, RNG.normal(size=1000)
    gpu = theanine.function([x, y], outputs, mode="cuda")(a, b)
    emulated = theanine.function([x, y], outputs, mode="cuda-emulator")(a, b)
    for got, expected in zip(gpu, emulated):
        np.testing.assert_allclose(got, expected, rtol=1e-12)


def test_importing_the_kernel_api_loads_neither_numba_nor_pycuda():
    import subprocess
    import sys

    code = (
        "import sys, theanine.kernels as k, theanine.tensor as T\n"
        "k.elementwise(name='twice')(lambda x: x * 2)(T.dvector('x'))\n"
        "print('numba' in sys.modules, 'pycuda' in sys.modules)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.stdout.split() == ["False", "False"], result.stderr
