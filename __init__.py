"""theanine: a Theano-style lazy computation-graph compiler (`import theanine as theano`)."""

from __future__ import annotations

import sys
import types

from theanine.graph.config import config
from theanine.graph.shared import SharedVariable, shared
from theanine.graph.type import TensorType
from theanine.graph.var import Apply, Constant, Op, Var, Var as Variable, toposort
from theanine.graph import tensor
from theanine.compiler import autodiff as _autodiff
from theanine.compiler.autodiff import Lop, Rop, grad

__version__ = "0.1.0"


def _alias(name: str, module: types.ModuleType) -> types.ModuleType:
    """Expose `module` as `theanine.<name>` so `import theanine.<name> as X` works."""
    sys.modules[f"{__name__}.{name}"] = module
    return module


# Theano's T namespace also carries grad and friends, which live in the compiler.
for _name in ("grad", "Rop", "Lop"):
    setattr(tensor, _name, getattr(_autodiff, _name))
_alias("tensor", tensor)

from theanine.compiler.function import Function, In, Out, function  # noqa: E402
from theanine.compiler import gradient  # noqa: E402
from theanine.graph import nnet as _nnet  # noqa: E402
from theanine.graph import printing  # noqa: E402

from theanine.graph import random as _random  # noqa: E402
from theanine.graph import signal as _signal  # noqa: E402
from theanine.graph.ops import batchnorm as _batchnorm, conv as _conv  # noqa: E402
from theanine.compiler import ifelse as _ifelse, scan as _scan  # noqa: E402
from theanine.compiler.scan import foldl, foldr, map, reduce, scan  # noqa: E402,A004

_alias("gradient", gradient)
tensor.shared_randomstreams = _alias("tensor.shared_randomstreams", _random)
tensor.random = _alias("tensor.random", _random)
tensor.signal = _alias("tensor.signal", types.ModuleType(f"{__name__}.tensor.signal", "Theano's signal: pool"))
tensor.signal.pool = _alias("tensor.signal.pool", _signal)
tensor.signal.downsample = _alias("tensor.signal.downsample", _signal)  # Theano 0.8's name
tensor.extra_ops = _alias("tensor.extra_ops", tensor)
_nnet.bn = _alias("tensor.nnet.bn", _batchnorm)
_nnet.abstract_conv = _alias("tensor.nnet.abstract_conv", _conv)
_nnet.conv = _alias("tensor.nnet.conv", _conv)
scan_module = _alias("scan_module", _scan)
ifelse = _alias("ifelse", _ifelse)
sandbox = _alias("sandbox", types.ModuleType(f"{__name__}.sandbox", "Theano's sandbox: rng_mrg"))
sandbox.rng_mrg = _alias("sandbox.rng_mrg", _random)
_alias("printing", printing)
tensor.nnet = _alias("tensor.nnet", _nnet)
for _name in ("jacobian", "hessian", "verify_grad", "zero_grad", "disconnected_grad", "grad_clip", "grad_scale"):
    if hasattr(gradient, _name):
        setattr(tensor, _name, getattr(gradient, _name))

Param = In  # Theano's old name for In
compile = _alias("compile", types.ModuleType(f"{__name__}.compile", "Theano's compile namespace"))  # noqa: A001
compile.function, compile.In, compile.Out, compile.Param = function, In, Out, In
compile.shared, compile.SharedVariable, compile.Function = shared, SharedVariable, Function
compile.sharedvalue = _alias("compile.sharedvalue", types.ModuleType(f"{__name__}.compile.sharedvalue"))
compile.sharedvalue.SharedVariable, compile.sharedvalue.shared = SharedVariable, shared

def set_flush_denormal(mode: bool) -> bool:
    """Flush denormal floats to zero on the calling thread (as torch.set_flush_denormal); returns
    False where unsupported. See theanine/kernels/numba/fpenv.py for what it covers."""
    from theanine.kernels.numba.fpenv import set_flush_denormal as _set_flush_denormal

    return _set_flush_denormal(mode)


pp = printing.pp
pprint = printing.pprint
debugprint = printing.debugprint
dot = tensor.dot
floatX = config.floatX
