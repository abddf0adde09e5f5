"""The numba CPU backend (mode numba): lowerings, generated elementwise loops, the disk cache."""

import ctypes
import os
import sys


def _start_threads() -> None:
    """Start numba's worker threads now, sleeping (not spinning) between parallel loops.

    libgomp's default wait policy keeps idle workers spinning, taking the cores OpenBLAS's threads
    need for the next product: on the 2-core benchmark machine an MLP training step took 16 ms
    instead of 2.0 ms. libgomp reads OMP_WAIT_POLICY once, when it loads, so it is set only while
    numba's OpenMP layer loads here, then removed: other libraries (PyTorch's own OpenMP) and child
    processes keep the user's environment. A user's own OMP_WAIT_POLICY is left as it is.
    """
    from numba.np.ufunc import parallel

    own = "OMP_WAIT_POLICY" not in os.environ
    if own:
        os.environ["OMP_WAIT_POLICY"] = "PASSIVE"
    try:
        parallel._launch_threads()
    except Exception:  # no threading layer here: numba says so at the first parallel loop
        pass
    finally:
        if own:
            del os.environ["OMP_WAIT_POLICY"]


def _keep_freed_memory() -> None:
    """Have glibc keep freed blocks up to 32 MiB in the heap instead of returning them to the OS.

    By default glibc serves a block of 128 KiB or more (up to a threshold it raises as it sees
    larger frees) with its own mmap and trims the heap's free top at every free: every call of a
    compiled function then gets its large temporaries as fresh pages, and the kernel zero-fills
    each 4 KiB page on first touch. An LSTM's forward and backward pass (50 steps, 3 MB
    temporaries) spent 3 of its 20 ms in those page faults. Here the heap keeps up to 256 MiB of
    freed memory for the next call (as PyTorch users get from jemalloc or tcmalloc). Only glibc on
    Linux; a user's own MALLOC_MMAP_THRESHOLD_ / MALLOC_TRIM_THRESHOLD_ are kept;
    THEANINE_FLAGS=numba__keep_freed_memory=False turns it off.
    """
    from ...graph.config import config

    if not config.numba__keep_freed_memory or not sys.platform.startswith("linux"):
        return
    if "MALLOC_MMAP_THRESHOLD_" in os.environ or "MALLOC_TRIM_THRESHOLD_" in os.environ:
        return
    try:
        mallopt = ctypes.CDLL(None).mallopt  # glibc's; musl has none
    except (OSError, AttributeError):
        return
    mallopt.argtypes, mallopt.restype = (ctypes.c_int, ctypes.c_int), ctypes.c_int
    m_trim_threshold, m_mmap_threshold = -1, -3
    mallopt(m_mmap_threshold, 32 << 20)  # glibc's largest allowed value
    mallopt(m_trim_threshold, 256 << 20)


_start_threads()
_keep_freed_memory()
