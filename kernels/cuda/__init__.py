"""The CUDA backend: generated CUDA C run on a GPU through PyCUDA, or on the CPU by our emulator."""
