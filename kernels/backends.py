"""The backend table: each mode's lowering, found by name and imported only when first used.

A backend has `name`, `supported(var) -> bool` (which elementwise nodes it can fuse into one kernel)
and `compile(inputs, outputs, nan_guard) -> plan`, where a plan has `run(input_values, times=None)`
returning the outputs and `nodes()` listing the computed Vars in execution order.
"""

from __future__ import annotations

import importlib
from typing import Sequence

from ..graph.var import Var

# backend name -> "module:attribute" of its backend object (modules load lazily: numba, pycuda)
_TABLE = {
    "py": "theanine.kernels.py:BACKEND",
    "debug": "theanine.kernels.debug:BACKEND",
    "numba": "theanine.kernels.numba.backend:BACKEND",
    "cuda-emulator": "theanine.kernels.cuda.backend:EMULATOR_BACKEND",
    "cuda": "theanine.kernels.cuda.backend:GPU_BACKEND",
}
_loaded: dict[str, object] = {}


class BackendUnavailable(NotImplementedError):
    """The backend is not built in this version, or cannot run on this machine."""


def get_backend(name: str):
    """The backend object for `name`; raises BackendUnavailable with the reason."""
    if name in _loaded:
        return _loaded[name]
    if name not in _TABLE:
        raise ValueError(f"unknown backend {name!r}; known: {', '.join(_TABLE)}")
    module_name, attribute = _TABLE[name].split(":")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as error:
        if error.name and (module_name.startswith(error.name) or error.name.startswith(module_name)):
            raise BackendUnavailable(f"the {name} backend is not available yet in this version; use mode='py'") from None
        raise
    backend = getattr(module, attribute)
    _loaded[name] = backend
    return backend


def available(name: str) -> bool:
    try:
        get_backend(name)
    except BackendUnavailable:
        return False
    return True


__all__ = ["get_backend", "available", "BackendUnavailable", "Sequence", "Var"]
