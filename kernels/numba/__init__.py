"""The numba CPU backend (mode numba): lowerings, generated elementwise loops, the disk cache."""
