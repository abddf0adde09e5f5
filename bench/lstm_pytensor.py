"""The LSTM of bench/lstm.py in PyTensor (scan), forward + backward, in one of its modes.

Run with the PyTensor venv's interpreter (bench/pytensor_venv.sh: PyTensor pins numba <= 0.65.1,
so it cannot share theanine's environment): prints one JSON line with the median, min and max
times in ms, the compile time in s and the library versions.
Usage: /work/venvs/pytensor/bin/python bench/lstm_pytensor.py --mode NUMBA [--repeat 20]
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np

BATCH, STEPS, FEATURES, HIDDEN = 32, 50, 64, 128


def build(mode: str):
    """The compiled function returning the loss and the gradients, as theanine's bench builds it:
    the input projection of every step in one product, the recurrence in scan, peepholes, loss on
    the last hidden state."""
    import pytensor
    import pytensor.tensor as pt

    rng = np.random.default_rng(0)

    def param(*shape):
        return pytensor.shared((rng.normal(size=shape) * 0.1).astype("float32"))

    w_in, w_hid, bias = param(FEATURES, 4 * HIDDEN), param(HIDDEN, 4 * HIDDEN), param(4 * HIDDEN)
    peep_i, peep_f, peep_o = param(HIDDEN), param(HIDDEN), param(HIDDEN)
    c0, h0 = param(1, HIDDEN), param(1, HIDDEN)
    x = pt.tensor3("x", dtype="float32")
    projected = pt.dot(x.dimshuffle(1, 0, 2), w_in) + bias  # (steps, batch, 4 hidden)

    def step(gates_in, c_prev, h_prev):
        gates = gates_in + pt.dot(h_prev, w_hid)
        i = pt.sigmoid(gates[:, :HIDDEN] + c_prev * peep_i)
        f = pt.sigmoid(gates[:, HIDDEN : 2 * HIDDEN] + c_prev * peep_f)
        g = pt.tanh(gates[:, 2 * HIDDEN : 3 * HIDDEN])
        c = f * c_prev + i * g
        o = pt.sigmoid(gates[:, 3 * HIDDEN :] + c * peep_o)
        return c, o * pt.tanh(c)

    ones = pt.ones((x.shape[0], 1), dtype="float32")
    (cs, hs), _ = pytensor.scan(step, sequences=projected,
                                outputs_info=[pt.dot(ones, c0), pt.dot(ones, h0)])
    loss = pt.mean(hs[-1] ** 2)
    params = [w_in, w_hid, bias, peep_i, peep_f, peep_o, c0, h0]
    return pytensor.function([x], [loss, *pytensor.grad(loss, params)], mode=mode)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mode", default="NUMBA")
    parser.add_argument("--repeat", type=int, default=20)
    args = parser.parse_args()
    import numba
    import pytensor

    data = np.random.default_rng(0).normal(size=(BATCH, STEPS, FEATURES)).astype("float32")
    start = time.perf_counter()
    f = build(args.mode)
    f(data)
    compile_s = time.perf_counter() - start
    for _ in range(3):
        f(data)
    times = []
    for _ in range(args.repeat):
        tic = time.perf_counter()
        f(data)
        times.append(time.perf_counter() - tic)
    print(json.dumps({
        "median_ms": 1e3 * float(np.median(times)), "min_ms": 1e3 * min(times),
        "max_ms": 1e3 * max(times), "compile_s": compile_s, "mode": args.mode,
        "pytensor": pytensor.__version__, "numba": numba.__version__,
    }))


if __name__ == "__main__":
    main()
