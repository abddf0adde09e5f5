"""Writing new fused kernels: traced elementwise kernels, hand-written scalar kernels, custom ops.

`@elementwise` traces a Python function of scalars into one named op that fuses, broadcasts and
differentiates like any elementwise op. `scalar_kernel` takes the code per backend (a numba-compiled
Python function, a CUDA C expression or device-function body) and a symbolic gradient rule.
`register_numba` and `register_cuda` give a user's own Op subclass a numba implementation and a CUDA
kernel template. This module stays light: numba is imported only when a numba kernel is compiled.
"""

from __future__ import annotations

import hashlib
import inspect
import re
from dataclasses import fields
from types import SimpleNamespace
from typing import Callable, Sequence

from ..graph.ops.composite import placeholder
from ..graph.ops.elemwise import Elemwise, prepare_inputs
from ..graph.ops.user import KernelError, ScalarKernel, UserElemwise, check_cotangents
from ..graph.type import TensorType, as_dtype, upcast
from ..graph.var import Constant, Op, Var, toposort

_ANY = SimpleNamespace(promote=None)  # prepare_inputs reads only `promote`


# --- 1. traced elementwise kernels ----------------------------------------------------------------


class ElementwiseKernel:
    """A Python function of scalars turned into a named elementwise op, traced once per dtype."""

    def __init__(self, fn: Callable, name: str, dtypes: tuple | None) -> None:
        self.fn, self.name, self.dtypes = fn, name, dtypes
        self.arity, self.params = _positional_arity(fn, f"elementwise kernel '{name}'")
        self.ops: dict[tuple, UserElemwise] = {}
        self.__doc__, self.__name__ = fn.__doc__, name

    def __call__(self, *args) -> Var:
        what = f"elementwise kernel '{self.name}'"
        if len(args) != self.arity:
            raise KernelError(
                f"{what} takes {self.arity} argument(s) ({', '.join(self.params)}), got {len(args)}"
            )
        inputs = prepare_inputs(_ANY, args)
        dtypes = tuple(x.dtype for x in inputs)
        if self.dtypes is not None and upcast(*dtypes) not in self.dtypes:
            raise KernelError(
                f"{what} declares dtypes {', '.join(self.dtypes)}; got inputs of dtypes "
                f"{', '.join(dtypes)}; cast them, or declare {upcast(*dtypes)} in dtypes="
            )
        return Var(self.op(dtypes), inputs)

    def op(self, dtypes: tuple) -> UserElemwise:
        """The op of this kernel for inputs of `dtypes` (traced on first use)."""
        found = self.ops.get(dtypes)
        if found is None:
            found = self.ops[dtypes] = trace(self.fn, self.name, dtypes)
        return found

    def __repr__(self) -> str:
        return f"<elementwise kernel {self.name}({', '.join(self.params)})>"


def elementwise(fn: Callable | None = None, *, name: str | None = None, dtypes=None):
    """Decorator: a function of scalars written with T's math becomes one fusable, named op.

    >>> @elementwise
    ... def swish(x):
    ...     return x * T.nnet.sigmoid(x)
    """

    def wrap(function: Callable) -> ElementwiseKernel:
        if not callable(function):
            raise KernelError(f"@elementwise needs a function, got {type(function).__name__}")
        kernel_name = _identifier(name or function.__name__, "@elementwise")
        declared = None if dtypes is None else tuple(as_dtype(d) for d in dtypes)
        return ElementwiseKernel(function, kernel_name, declared)

    return wrap if fn is None else wrap(fn)


def trace(fn: Callable, name: str, dtypes: Sequence[str]) -> UserElemwise:
    """Call `fn` on 0-d placeholders of `dtypes`, check the body is elementwise, make the op."""
    what = f"elementwise kernel '{name}'"
    placeholders = tuple(placeholder(k, d) for k, d in enumerate(dtypes))
    try:
        out = fn(*placeholders)
    except KernelError:
        raise
    except Exception as error:
        raise KernelError(
            f"{what}: tracing its body on scalars of dtypes {', '.join(dtypes)} failed: "
            f"{type(error).__name__}: {error}"
        ) from error
    if isinstance(out, (int, float, bool)):
        raise KernelError(f"{what}: the body returned the Python constant {out!r}, not a Var")
    if not isinstance(out, Var):
        raise KernelError(
            f"{what}: the body must return one Var (a single output), got {type(out).__name__}"
        )
    known = {id(p) for p in placeholders}
    for node in toposort([out], stop=set(placeholders)):
        if id(node) in known:
            continue
        if not node.inputs:
            if isinstance(node.op, Constant) and node.op.data.size == 1:
                continue
            raise KernelError(
                f"{what}: its body reads {node.describe()}, which is not one of its arguments "
                f"({', '.join(_params_of(fn))}); pass it as an argument"
            )
        if not isinstance(node.op, Elemwise) or not isinstance(node.type, TensorType):
            raise KernelError(
                f"{what}: its body uses {type(node.op).__name__}, which is not an elementwise op "
                f"(a kernel body may use only elementwise math: arithmetic, T.exp, T.switch, ...); "
                f"used at\n  {node.where()}"
            )
        if node.ndim != 0:
            where = node.where()
            raise KernelError(f"{what}: its body computes a {node.ndim}-d value at\n  {where}")
    _check_on_vectors(fn, what, dtypes)
    return UserElemwise(name, placeholders, (out,))


def _check_on_vectors(fn: Callable, what: str, dtypes: Sequence[str]) -> None:
    """Trace once more on vectors: a reduction of a scalar is the scalar itself (T.sum(x) is x),
    so only on vectors does a non-elementwise op in the body show."""
    from ..graph.var import input_var

    vectors = tuple(input_var(TensorType(d, (None,)), f"v{k}") for k, d in enumerate(dtypes))
    out = fn(*vectors)
    for node in toposort([out], stop=set(vectors)):
        if not node.inputs or any(node is v for v in vectors):
            continue
        padding = type(node.op).__name__ == "DimShuffle" and not node.inputs[0].inputs
        if not padding and not isinstance(node.op, Elemwise):
            raise KernelError(
                f"{what}: its body uses {type(node.op).__name__}, which is not an elementwise op "
                f"(a kernel body may use only elementwise math: arithmetic, T.exp, T.switch, ...); "
                f"used at\n  {node.where()}"
            )


# --- 2. hand-written scalar kernels ---------------------------------------------------------------


def scalar_kernel(
    name: str,
    numba: Callable | None = None,
    cuda: str | None = None,
    grad: Callable | None = None,
    dtypes: Sequence[str] = ("float32", "float64"),
    numpy: Callable | None = None,
    nin: int | None = None,
) -> ScalarKernel:
    """An elementwise op from code per backend; call it on Vars (`softplus(x)`).

    Args:
        numba: a Python function of scalars, compiled with numba.njit and called from fused loops.
        cuda: a C expression of the numba function's parameters, or a device-function body with
            `return`; the type `T` is the computation's C type.
        grad: (inputs, output, g) -> one cotangent Var (or None) per input.
        dtypes: the dtypes the kernel computes in (inputs are promoted to one of them).
        numpy: a vectorized reference for mode 'py' (default: the numba function per element).
    """
    kernel_name = _identifier(name, "scalar_kernel")
    what = f"scalar kernel '{kernel_name}'"
    if numba is None and numpy is None:
        raise KernelError(f"{what}: give numba= (a Python scalar function) or numpy=")
    params: tuple = ()
    for label, function in (("numba", numba), ("numpy", numpy)):
        if function is None:
            continue
        if not callable(function):
            raise KernelError(f"{what}: {label}= must be a function, got {type(function).__name__}")
        arity, names = _positional_arity(function, f"{what}: {label}=")
        if nin is not None and arity != nin:
            raise KernelError(f"{what}: {label}= takes {arity} argument(s), but nin={nin}")
        nin, params = arity, params or names
    if cuda is not None and (not isinstance(cuda, str) or not cuda.strip()):
        raise KernelError(f"{what}: cuda= must be CUDA C source text, got {cuda!r}")
    declared = tuple(as_dtype(d) for d in dtypes)
    if grad is not None:
        if not callable(grad) or _positional_arity(grad, f"{what}: grad=")[0] != 3:
            raise KernelError(
                f"{what}: grad= must be a function (inputs, output, g) -> tuple of cotangents"
            )
        _probe_grad(what, grad, nin, declared[0])
    return ScalarKernel(kernel_name, nin, numba, cuda, grad, declared, numpy, tuple(params))


def _probe_grad(what: str, grad: Callable, nin: int, dtype: str) -> None:
    """Call the rule once on scalars so a wrong number of cotangents fails at definition."""
    xs = tuple(placeholder(k, dtype) for k in range(nin))
    output, g = placeholder(nin, dtype), placeholder(nin + 1, dtype)
    check_cotangents(what, grad(xs, output, g), nin)


# --- 3. custom ops: a numba implementation and a CUDA kernel template per Op class ------------

NUMBA_IMPLS: dict[type, Callable] = {}
CUDA_IMPLS: dict[type, tuple[str, Callable]] = {}


def _check_op_class(cls, caller: str) -> int | None:
    """The number of inputs of an Op subclass (None: variadic); raises saying what is missing."""
    if not (inspect.isclass(cls) and issubclass(cls, Op)):
        raise KernelError(f"{caller}: expected a subclass of theanine's Op, got {cls!r}")
    missing = []
    if cls.infer_type is Op.infer_type and cls.make_type is Op.make_type:
        missing.append("infer_type (the output's dtype and shape)")
    if cls.perform is Op.perform:
        missing.append("perform (the numpy reference)")
    if cls.pullback is Op.pullback:
        missing.append("pullback (the gradient; return None per input for none)")
    if missing:
        raise KernelError(f"{caller}: {cls.__name__} defines no {'; no '.join(missing)}")
    if cls.infer_type is Op.infer_type:
        return None
    return _positional_arity(cls.infer_type, f"{caller}: {cls.__name__}.infer_type", skip=1)[0]


def _field_names(cls) -> list[str]:
    return [f.name for f in fields(cls)] if hasattr(cls, "__dataclass_fields__") else []


def register_numba(op_class: type, fn: Callable) -> None:
    """Run `op_class` nodes in mode 'numba' as numba.njit(fn)(*inputs, *op_fields)."""
    caller = f"register_numba({getattr(op_class, '__name__', op_class)!r})"
    n_inputs = _check_op_class(op_class, caller)
    if not callable(fn):
        raise KernelError(f"{caller}: fn must be a function, got {type(fn).__name__}")
    names = _field_names(op_class)
    arity = _positional_arity(getattr(fn, "py_func", fn), f"{caller}: fn")[0]
    if n_inputs is not None and arity != n_inputs + len(names):
        extra = f" then its fields {', '.join(names)}" if names else ""
        raise KernelError(
            f"{caller}: fn takes {arity} argument(s), expected {n_inputs + len(names)}: the "
            f"{n_inputs} input array(s){extra}"
        )
    NUMBA_IMPLS[op_class] = fn


def register_cuda(op_class: type, template: str, launch: Callable) -> None:
    """Run `op_class` nodes in the CUDA modes with a kernel template and a launch configuration.

    `template` is CUDA C of one `__global__ void KERNEL(...)` (KERNEL is replaced by its name;
    `scalar_t` is the output's C type) taking one pointer per input, then the output pointer,
    then any scalars. `launch(op, *input_shapes)` returns a dict: grid, block, shape (of the
    output) and args (those scalars).
    """
    caller = f"register_cuda({getattr(op_class, '__name__', op_class)!r})"
    n_inputs = _check_op_class(op_class, caller)
    if not isinstance(template, str) or "__global__" not in template or "KERNEL" not in template:
        raise KernelError(
            f"{caller}: template must be CUDA C text holding `__global__ void KERNEL(...)`"
        )
    from .cuda.kernel import Kernel

    pointers = [p for p in Kernel("KERNEL", template).parameters() if "*" in p[0]]
    if n_inputs is not None and len(pointers) != n_inputs + 1:
        raise KernelError(
            f"{caller}: the kernel takes {len(pointers)} pointer(s), expected {n_inputs + 1} "
            f"({n_inputs} input(s), then the output)"
        )
    if not callable(launch):
        raise KernelError(f"{caller}: launch must be a function (op, *input_shapes) -> dict")
    arity = _positional_arity(launch, f"{caller}: launch")[0]
    if n_inputs is not None and arity not in (n_inputs + 1, -1):
        raise KernelError(
            f"{caller}: launch takes {arity} argument(s), expected {n_inputs + 1} "
            "(the op, then one shape per input)"
        )
    CUDA_IMPLS[op_class] = (template, launch)


# --- helpers shared with the backends -------------------------------------------------------------


def _identifier(name, caller: str) -> str:
    if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z_]\w*", name):
        raise KernelError(f"{caller}: a kernel name must be an identifier, got {name!r}")
    return name


def _params_of(fn: Callable) -> list[str]:
    try:
        return list(inspect.signature(fn).parameters)
    except (TypeError, ValueError):
        return []


def _positional_arity(fn: Callable, what: str, skip: int = 0) -> tuple[int, tuple]:
    """(number of positional parameters, their names); -1 for *args; raises on keyword-only."""
    try:
        parameters = list(inspect.signature(fn).parameters.values())[skip:]
    except (TypeError, ValueError):
        return -1, ()
    kinds = inspect.Parameter
    if any(p.kind == kinds.VAR_POSITIONAL for p in parameters):
        return -1, ()
    required = [p for p in parameters if p.kind == kinds.KEYWORD_ONLY and p.default is p.empty]
    if required:
        raise KernelError(f"{what} has keyword-only parameters {[p.name for p in required]}")
    ordered = (kinds.POSITIONAL_ONLY, kinds.POSITIONAL_OR_KEYWORD)
    positional = [p for p in parameters if p.kind in ordered]
    return len(positional), tuple(p.name for p in positional)


def function_digest(fn: Callable) -> str:
    """A digest of a Python function's code and closure (its compiled form's content address)."""
    code = getattr(fn, "__code__", None)
    try:
        text = inspect.getsource(fn)
    except (OSError, TypeError):
        text = repr(code.co_code) + repr(code.co_consts) if code else repr(fn)
    cells = getattr(fn, "__closure__", None) or ()
    text += repr([getattr(c, "cell_contents", None) for c in cells])
    return hashlib.sha256(text.encode()).hexdigest()[:10]


def level(op) -> int:
    """Nesting depth of user kernels: 0 for a scalar kernel, 1 + the deepest inner one otherwise.

    CUDA device functions are emitted in name order, and names start u<level>, so a kernel's
    inner kernels are defined before it."""
    if isinstance(op, UserElemwise):
        inner = [level(n.op) for n in op.nodes if isinstance(n.op, (UserElemwise, ScalarKernel))]
        return 1 + max(inner, default=0)
    return 0


from .user_backends import (  # noqa: E402  (they read the registries above)
    explain_compile_error,
    numba_call,
    nvcc_check,
)

__all__ = [
    "elementwise", "scalar_kernel", "register_numba", "register_cuda", "trace", "KernelError",
    "ElementwiseKernel", "UserElemwise", "ScalarKernel", "explain_compile_error", "nvcc_check",
    "numba_call", "NUMBA_IMPLS", "CUDA_IMPLS", "function_digest",
]  # fmt: skip
