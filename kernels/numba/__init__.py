"""The numba CPU backend (mode numba): lowerings, generated elementwise loops, the disk cache."""

import os

# numba's OpenMP workers spin after each parallel loop (libgomp's default wait policy), taking the
# cores OpenBLAS's threads need for the next product: on the 2-core benchmark machine an MLP
# training step took 16 ms instead of 2.0 ms. Passive workers sleep instead. Set before numba's
# OpenMP layer loads (at its first parallel loop); a user's own setting is kept.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
