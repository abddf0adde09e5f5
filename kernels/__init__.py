"""theanine.kernels: backend lowerings (py, numba, cuda), their caches, and user-defined kernels."""

from .user import (  # noqa: F401  (the public API for writing new kernels; imports no numba)
    KernelError,
    elementwise,
    register_cuda,
    register_numba,
    scalar_kernel,
)
