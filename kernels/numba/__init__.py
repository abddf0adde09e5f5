"""The numba CPU backend (mode numba): lowerings, generated elementwise loops, the disk cache."""

import os


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


_start_threads()
