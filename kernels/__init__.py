"""theanine.kernels: backend lowerings (py, numba, cuda) and their caches."""
