"""Philox draws on the CUDA backend: the same numbers as modes py and numba, run as kernels.

Bit for bit (np.array_equal): uniform, random_integers, binomial, multinomial, choice and MRG's
row-wise choice with replacement, normals (float32 and float64: Box-Muller's log, sin and cos are
the generator's own, built from correctly rounded operations, not libm's), and the stream state.
"""

from __future__ import annotations

import numpy as np
import pytest
import theanine
import theanine.tensor as T
from theanine.graph.ops.random import (
    AdvanceState,
    Choice,
    Multinomial,
    Permutation,
    RandomDraw,
    RandomOp,
    RowChoice,
)
from theanine.kernels.cuda import nvcc
from theanine.kernels.cuda import random as cuda_random
from theanine.kernels.cuda.backend import thread_order
from theanine.sandbox.rng_mrg import MRG_RandomStreams
from theanine.tensor.shared_randomstreams import RandomStreams

ORDERS = ["forward", "reverse", "shuffled"]
MODES = ["py", "numba", "cuda-emulator"]
SEED = 2026
X = np.linspace(-1.0, 2.0, 15, dtype="float32").reshape(3, 5)
LOW = np.array([0.0, 10.0, -100.0, 5.5], dtype="float64")


def _streams_draws(r: RandomStreams, x, low) -> dict:
    """One draw of each kind the CUDA backend lowers, with odd sizes (not multiples of 4)."""
    u = r.uniform((3, 5), dtype="float32")
    return {
        "uniform32": r.uniform((3, 5), low=-1.5, high=2.5, dtype="float32"),
        "uniform64": r.uniform((7,), low=-2.0, high=3.0, dtype="float64"),
        "uniform_vec_low": r.uniform((3, 4), low=low, high=low + 1.0),  # strided parameters
        "normal32": r.normal((5, 3), avg=1.0, std=2.0, dtype="float32"),
        "normal64": r.normal((7,), avg=-1.0, std=0.5, dtype="float64"),
        "normal32_odd": r.normal((1,), dtype="float32"),
        "integers": r.random_integers((2, 3, 3), low=-4, high=9),
        "integers32": r.random_integers((5,), low=0, high=2**31, dtype="int32"),
        "binomial": r.binomial((11,), n=5, p=0.3),
        "binomial_mask": r.binomial((3, 5), p=0.5, dtype="float32"),
        "binomial_vec": r.binomial((2, 3), n=np.array([1, 7, 3]), p=np.array([0.9, 0.5, 0.1])),
        "binomial_int8": r.binomial((9,), n=300, p=0.9, dtype="int8"),  # wraps as numpy's astype
        "multinomial": r.multinomial((5,), n=7, pvals=[0.2, 0.3, 0.5]),
        "multinomial32": r.multinomial(
            (2, 3), n=np.array([4, 0, 9]), pvals=[0.5, 0.25, 0.25], dtype="float32"
        ),
        "choice": r.choice((7,), a=5),
        "choice_vec_p": r.choice((5,), a=np.array([3.5, 4.0, 9.0], "float32"), p=[0.1, 0.6, 0.3]),
        "dropout": x * (u < 0.5),  # a draw read by an elementwise kernel
        "two_in_one": r.uniform((3,), dtype="float32") + r.normal((3,), dtype="float32"),
        "uniform32_f64_params": r.uniform((3, 4), low=low, high=low + 1.0, dtype="float32"),
        "normal32_vec_avg": r.normal((2, 4), avg=low, std=2.0, dtype="float32"),
        "binomial_device_p": r.binomial((3, 4), p=abs(T.sin(low))),  # p computed by a kernel
    }


def _mrg_draws(r: MRG_RandomStreams, x) -> dict:
    pvals = np.array([[0.1, 0.2, 0.7], [0.5, 0.5, 0.0], [0.3, 0.3, 0.4]], dtype="float32")
    return {
        "mrg_uniform": r.uniform((5, 3)),
        "mrg_normal64": r.normal((9,), dtype="float64"),
        "mrg_binomial": r.binomial(size=(4, 5), p=0.8, dtype="float32"),
        "mrg_multinomial": r.multinomial(pvals=pvals, n=3),
        "mrg_row_choice": r.choice(size=2, p=pvals, replace=True),
        "mrg_multinomial_softmax": r.multinomial(pvals=T.nnet.softmax(x), n=2),
        "mrg_row_choice_softmax": r.choice(size=3, p=T.nnet.softmax(x), replace=True),
    }


def _function(mode: str):
    """A fresh pair of streams (same seeds) and the function drawing everything, in `mode`."""
    x, low = T.fmatrix("x"), T.dvector("low")
    streams, mrg = RandomStreams(SEED), MRG_RandomStreams(SEED)
    outputs = {**_streams_draws(streams, x, low), **_mrg_draws(mrg, x)}
    f = theanine.function([x, low], list(outputs.values()), mode=mode)
    return f, list(outputs), len(streams.state_updates) + len(mrg.state_updates)


@pytest.fixture(scope="module")
def compiled() -> dict:
    return {mode: _function(mode) for mode in MODES}


def _same(name: str, got: np.ndarray, expected: np.ndarray) -> None:
    assert got.dtype == expected.dtype and got.shape == expected.shape, name
    assert np.array_equal(got, expected), f"{name}: {got} != {expected}"


def test_every_draw_matches_py_and_numba_bit_for_bit_over_calls_and_orders(compiled):
    runs = {}
    for mode in ("py", "numba"):
        f, names, _ = compiled[mode]
        runs[mode] = [f(X, LOW) for _ in range(len(ORDERS))]  # the state advances each call
    f, names, _ = compiled["cuda-emulator"]
    device_runs = []
    for order in ORDERS:  # each call in another thread order
        with thread_order(order, seed=5):
            device_runs.append(f(X, LOW))
    for mode, reference in runs.items():
        for call, (got, expected) in enumerate(zip(device_runs, reference)):
            for name, g, e in zip(names, got, expected):
                _same(f"{name} (call {call}, vs {mode})", g, e)
    # successive calls draw new numbers
    first, second = device_runs[0], device_runs[1]
    assert not np.array_equal(first[names.index("uniform32")], second[names.index("uniform32")])
    dropout = device_runs[0][names.index("dropout")]
    assert set(np.unique(dropout)) - set(np.unique(X)) <= {0.0}


def test_draws_run_as_kernels_and_the_state_stays_on_the_device(compiled):
    f, _, n_streams = compiled["cuda-emulator"]
    host = [var for var, _ in f._plan.host_nodes()]
    assert not [v for v in host if isinstance(v.op, RandomOp)]
    ops = [v.op for v in f._plan.nodes()]
    random_nodes = [op for op in ops if isinstance(op, RandomOp)]
    advances = sum(isinstance(op, AdvanceState) for op in ops)
    assert advances == len(random_nodes) - advances == n_streams  # each draw has its stream
    kinds = [k.kind for k in f._plan.kernels()]
    assert kinds.count("random") == len(random_nodes)  # one kernel each
    lowered = {type(op) for op in random_nodes}
    assert lowered == {AdvanceState, RandomDraw, Multinomial, Choice, RowChoice}
    sources = [text for _, text in f.kernel_sources()]
    assert sum("th_philox(" in text for text in sources) == advances  # one per draw


def test_state_update_carries_into_the_high_word_like_py():
    results = {}
    for mode in ("py", "cuda-emulator"):
        r = RandomStreams(SEED)
        u = r.uniform((6,), dtype="float32")
        f = theanine.function([], u, mode=mode)
        state = r.state_updates[0][0]
        k0, k1 = state.get_value()[:2]
        state.set_value(np.array([k0, k1, 0xFFFFFFFF, 7], dtype=np.uint32))
        draws = [f(), f()]
        results[mode] = draws, state.get_value()
    (py_draws, py_state), (cu_draws, cu_state) = results["py"], results["cuda-emulator"]
    assert py_state.tolist()[2:] == [1, 8] and np.array_equal(cu_state, py_state)
    for got, expected in zip(cu_draws, py_draws):
        assert np.array_equal(got, expected)


def test_large_draws_use_grid_stride_loops_and_keep_the_bits():
    # more Philox blocks than the emulator's 64 x 256 threads: each thread loops over blocks
    out = {}
    for mode in ("py", "cuda-emulator"):
        r = RandomStreams(7)
        draws = [
            r.normal((100001,), dtype="float32"),
            r.normal((40001,), dtype="float64"),
            r.binomial((70001,), p=0.3, dtype="float32"),
            r.uniform((70001,), dtype="float32"),
        ]
        out[mode] = theanine.function([], draws, mode=mode)()
    (py32, py64, py_mask, py_u), (cu32, cu64, cu_mask, cu_u) = out["py"], out["cuda-emulator"]
    assert np.array_equal(cu32, py32) and np.array_equal(cu64, py64)
    assert np.array_equal(cu_mask, py_mask) and np.array_equal(cu_u, py_u)
    assert abs(cu64.mean()) < 0.03 and abs(cu64.std() - 1.0) < 0.03
    assert abs(cu_mask.mean() - 0.3) < 0.01


def test_dropout_with_symbolic_shape_and_shared_rate():
    out = {}
    for mode in ("py", "cuda-emulator"):
        r = RandomStreams(3)
        x = T.fmatrix("x")
        keep = theanine.shared(np.float32(0.8), name="keep")  # on the device: read there
        mask = r.binomial(x.shape, p=keep, dtype="float32")
        f = theanine.function([x], x * mask / keep, mode=mode)
        out[mode] = [f(np.ones((5, 7), "float32")) for _ in range(2)]
        keep.set_value(np.float32(0.3))
        out[mode].append(f(np.ones((5, 7), "float32")))
    for got, expected in zip(out["cuda-emulator"], out["py"]):
        assert got.shape == (5, 7) and np.array_equal(got, expected)
    assert 0 < np.count_nonzero(out["py"][2]) < np.count_nonzero(out["py"][0])


def test_sorting_draws_and_float16_stay_on_the_host_with_reasons():
    assert {Permutation, Choice, RowChoice, RandomDraw} <= set(cuda_random.HOST_REASONS)
    r = RandomStreams(4)
    draws = [
        r.permutation((2,), n=5),
        r.choice((3,), a=6, replace=False),
        r.uniform((3,), dtype="float16"),
    ]
    f = theanine.function([], draws, mode="cuda-emulator")
    host = {type(v.op) for v, _ in f._plan.host_nodes()}
    assert {Permutation, Choice, RandomDraw} <= host
    r2 = RandomStreams(4)
    g = theanine.function(
        [],
        [
            r2.permutation((2,), n=5),
            r2.choice((3,), a=6, replace=False),
            r2.uniform((3,), dtype="float16"),
        ],
        mode="py",
    )
    for got, expected in zip(f(), g()):
        assert np.array_equal(got, expected)


# --- errors: the CPU's messages, raised at run time -------------------------------------------------


def _raises(build, error, match, inputs=(), values=()):
    for mode in ("py", "cuda-emulator"):
        f = theanine.function(list(inputs), build(RandomStreams(1)), mode=mode)
        with pytest.raises(error, match=match):
            f(*values)


def test_errors_match_the_cpu():
    _raises(
        lambda r: r.binomial((2,), p=1.5),
        ValueError,
        r"binomial: p must lie in \[0, 1\]",
    )
    _raises(
        lambda r: r.binomial((3,), n=-2, p=0.5),
        ValueError,
        "binomial: n must be >= 0, got -2",
    )
    _raises(
        lambda r: r.random_integers((2,), low=5, high=1),
        ValueError,
        "need low <= high and high - low < 2\\*\\*32, got ranges from -4 to -4",
    )
    low = T.dvector("low")
    _raises(
        lambda r: r.uniform((2, 3), low=low),
        ValueError,
        r"uniform: parameters of shapes \(4,\), \(\) do not broadcast to \(2, 3\)",
        [low],
        [np.zeros(4)],
    )
    _raises(
        lambda r: r.multinomial((2,), n=3, pvals=[0.5, -0.5, 1.0]),
        ValueError,
        "multinomial: pvals and n must be >= 0",
    )
    p = T.dvector("p")
    _raises(
        lambda r: r.choice((2,), a=3, p=p),
        ValueError,
        "choice: p has 4 entries but a has 3",
        [p],
        [np.full(4, 0.25)],
    )
    _raises(lambda r: r.choice((2,), a=0), ValueError, "choice: a must be positive")
    size = T.lvector("size")
    _raises(
        lambda r: r.normal(size, ndim=1),
        ValueError,
        r"random draw: negative size \(-1,\)",
        [size],
        [np.array([-1])],
    )
    m = T.lscalar("m")
    _raises(
        lambda r: MRG_RandomStreams(1).choice(size=m, p=np.full((2, 2), 0.5)),
        ValueError,
        "choice: size must be >= 0, got -3",
        [m],
        [-3],
    )


# --- the compile gate -------------------------------------------------------------------------------


@pytest.mark.skipif(nvcc.find_nvcc() is None, reason="nvcc (the CUDA toolkit) is not installed")
def test_random_kernels_compile_for_sm80_and_sm90_within_limits_without_spills(
    compiled,
):
    kernels = list({k.source: k for k in compiled["cuda-emulator"][0]._plan.kernels()}.values())
    kernels = [k for k in kernels if k.kind == "random"]
    assert len(kernels) >= 15
    reports = nvcc.compile_kernels(kernels, nvcc.ARCHS)
    by_name = {k.name: k for k in kernels}
    assert [p for r in reports for p in nvcc.limit_problems(by_name[r.kernel], r)] == []
    assert all(r.spill_stores == 0 and r.spill_loads == 0 for r in reports)
    assert {r.arch for r in reports} == {"sm_80", "sm_90"}
    # the rounding helpers reach the device as __fadd_rn/__fmul_rn, not as fusable + and *
    assert all("__fadd_rn" in k.source for k in kernels if "th_add" in k.source)
