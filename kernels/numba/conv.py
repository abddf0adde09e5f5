"""Numba lowerings of graph/ops/conv.py: im2col views contracted through this backend's BLAS.

conv2d and its gradients run their perform (a strided im2col view of the padded input contracted
with the filters) with the contraction passed to `linalg.blas_tensordot`: one GEMM per group in
scipy's BLAS, the library every other product of mode numba calls. With numpy's tensordot (numpy's
own BLAS, a second thread pool) a CNN training step's GEMMs stalled behind the other library's
spinning threads on 2 cores. A fused im2col numba kernel is still to be written.
"""

from __future__ import annotations

from ...graph.evaluate import check_output
from ...graph.ops import conv as C
from .linalg import blas_tensordot


def _conv(op, var):
    def run(*args):
        return check_output(var, op.perform(*args, tensordot=blas_tensordot))

    return run


LOWERINGS = {C.Conv2d: _conv, C.Conv2dGradInputs: _conv, C.Conv2dGradWeights: _conv}
NUMPY_STEPS: dict = {}
