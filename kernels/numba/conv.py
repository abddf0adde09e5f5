"""Numba lowerings of graph/ops/conv.py: for now numpy steps whose work is already BLAS.

conv2d and its gradients run their perform: a strided im2col view of the padded input contracted
with the filters by np.tensordot, so the arithmetic runs in BLAS GEMM. A direct-loop or fused
im2col numba kernel (and the measurement of which is faster) is still to be written.
"""

from __future__ import annotations

from ...graph.ops import conv as C

_BLAS = "im2col view + np.tensordot: the arithmetic already runs in BLAS GEMM; no numba kernel yet"
LOWERINGS: dict = {}
NUMPY_STEPS = {C.Conv2d: _BLAS, C.Conv2dGradInputs: _BLAS, C.Conv2dGradWeights: _BLAS}
