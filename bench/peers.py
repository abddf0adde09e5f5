"""Benchmark peers: the workloads as an expert writes them in numpy, numexpr, JAX, torch, PyTensor.

Imports numpy only at the top (it also runs under PyTensor's own venv, which has no theanine):
`python bench/peers.py --serve` answers JSON-line requests (build, time, versions) so run.py can
alternate PyTensor's calls with the in-process runners; `--first-step PEER WORKLOAD` prints the
import time and the build + compile + first call time of one peer in a fresh process.
"""

from __future__ import annotations

import importlib.metadata
import json
import sys
import time
from collections.abc import Callable

import numpy as np

WORKLOADS = ("chain_2^22", "chain_2^24", "mlp_step", "cnn_step")
LR = 0.01
MLP_BATCH, CNN_BATCH = 128, 64
# (peer, workloads it can express): numpy by hand for the MLP only; numexpr only elementwise.
PEERS = {
    "numpy": ("chain_2^22", "chain_2^24", "mlp_step"),
    "numexpr": ("chain_2^22", "chain_2^24"),
    "jax": WORKLOADS,
    "torch eager": WORKLOADS,
    "torch.compile": WORKLOADS,
    "pytensor C": WORKLOADS,
    "pytensor NUMBA": WORKLOADS,
}
LIBRARY = {
    "numpy": "numpy",
    "numexpr": "numexpr",
    "jax": "jax",
    "torch eager": "torch",
    "torch.compile": "torch",
    "pytensor C": "pytensor",
    "pytensor NUMBA": "pytensor",
}
# What a user's program imports before building anything (timed apart from the first step).
IMPORT = {
    "numpy": "numpy",
    "numexpr": "numexpr",
    "jax": "jax.numpy",
    "torch": "torch",
    "pytensor": "pytensor.tensor",
}


def chain_size(workload: str) -> int:
    """Elements of a chain workload: chain_2^22 -> 4194304."""
    return 1 << int(workload.split("^")[1])


def data(workload: str) -> dict:
    """A workload's inputs and initial parameters (float32, seeded: every runner gets the same)."""
    rng = np.random.default_rng(0)

    def normal(*shape, scale=1.0):
        return (rng.standard_normal(shape, dtype=np.float32) * np.float32(scale)).astype("float32")

    if workload.startswith("chain"):
        n = chain_size(workload)
        return {name: normal(n) for name in "xwby"}
    if workload == "mlp_step":
        return {
            "x": normal(MLP_BATCH, 784),
            "labels": rng.integers(0, 10, MLP_BATCH),
            "w1": normal(784, 1000, scale=0.03),
            "b1": np.zeros(1000, "float32"),
            "w2": normal(1000, 10, scale=0.03),
            "b2": np.zeros(10, "float32"),
        }
    if workload == "cnn_step":
        return {
            "x": normal(CNN_BATCH, 1, 28, 28),
            "labels": rng.integers(0, 10, CNN_BATCH),
            "c1": normal(20, 1, 5, 5, scale=0.2),
            "cb1": np.zeros(20, "float32"),
            "c2": normal(50, 20, 5, 5, scale=0.05),
            "cb2": np.zeros(50, "float32"),
            "w3": normal(800, 500, scale=0.03),
            "b3": np.zeros(500, "float32"),
            "w4": normal(500, 10, scale=0.05),
            "b4": np.zeros(10, "float32"),
        }
    raise ValueError(f"unknown workload {workload!r}; expected one of {WORKLOADS}")


PARAMS = {
    "mlp_step": ("w1", "b1", "w2", "b2"),
    "cnn_step": ("c1", "cb1", "c2", "cb2", "w3", "b3", "w4", "b4"),
}


# --- numpy and numexpr ----------------------------------------------------------------------------


def numpy_peer(workload: str, d: dict) -> Callable:
    """Chain in numpy; the MLP step by hand (forward, backward, SGD in place)."""
    if workload.startswith("chain"):
        x, w, b, y = d["x"], d["w"], d["b"], d["y"]
        return lambda: np.tanh(x * w + b) * (1 / (1 + np.exp(-y))) + np.float32(0.5) * x * x
    x, labels = d["x"], d["labels"]
    w1, b1, w2, b2 = (d[k].copy() for k in PARAMS["mlp_step"])
    rows, lr = np.arange(len(labels)), np.float32(LR)

    def step():
        h = np.maximum(x @ w1 + b1, 0)
        z = h @ w2 + b2
        z -= z.max(axis=1, keepdims=True)
        p = np.exp(z)
        p /= p.sum(axis=1, keepdims=True)
        loss = -np.log(p[rows, labels]).mean()
        g = p  # d loss / d z = (softmax - onehot) / batch
        g[rows, labels] -= 1
        g /= len(labels)
        gw2, gb2 = h.T @ g, g.sum(axis=0)
        gh = (g @ w2.T) * (h > 0)
        gw1, gb1 = x.T @ gh, gh.sum(axis=0)
        for param, grad in ((w1, gw1), (b1, gb1), (w2, gw2), (b2, gb2)):
            param -= lr * grad
        return loss

    return step


def numexpr_peer(workload: str, d: dict) -> Callable:
    """The chain as one numexpr expression (float32 constants keep it float32)."""
    import numexpr

    local = dict(d, one=np.float32(1), half=np.float32(0.5))
    expression = "tanh(x*w+b)*(one/(one+exp(-y)))+half*x*x"
    return lambda: numexpr.evaluate(expression, local_dict=local)


# --- JAX ------------------------------------------------------------------------------------------


def jax_peer(workload: str, d: dict) -> Callable:
    """jax.jit of the whole step, parameters donated and returned updated."""
    import functools

    import jax
    import jax.numpy as jnp

    if workload.startswith("chain"):
        chain = jax.jit(lambda x, w, b, y: jnp.tanh(x * w + b) * jax.nn.sigmoid(y) + 0.5 * x**2)
        args = [jnp.asarray(d[k]) for k in "xwby"]
        return lambda: chain(*args).block_until_ready()

    def conv(h, w, b):
        out = jax.lax.conv_general_dilated(
            h, w, (1, 1), "VALID", dimension_numbers=("NCHW", "OIHW", "NCHW")
        )
        return out + b[None, :, None, None]

    def pool(h):
        return jax.lax.reduce_window(h, -jnp.inf, jax.lax.max, (1, 1, 2, 2), (1, 1, 2, 2), "VALID")

    def loss(params, x, labels):
        if workload == "mlp_step":
            w1, b1, w2, b2 = params
            z = jax.nn.relu(x @ w1 + b1) @ w2 + b2
        else:
            c1, cb1, c2, cb2, w3, b3, w4, b4 = params
            h = pool(jax.nn.relu(conv(x, c1, cb1)))
            h = pool(jax.nn.relu(conv(h, c2, cb2))).reshape(x.shape[0], -1)
            z = jax.nn.relu(h @ w3 + b3) @ w4 + b4
        logp = jax.nn.log_softmax(z)
        return -jnp.mean(jnp.take_along_axis(logp, labels[:, None], axis=1))

    @functools.partial(jax.jit, donate_argnums=0)
    def step(params, x, labels):
        value, grads = jax.value_and_grad(loss)(params, x, labels)
        return [p - LR * g for p, g in zip(params, grads)], value

    state = [[jnp.asarray(d[k]) for k in PARAMS[workload]]]
    x, labels = jnp.asarray(d["x"]), jnp.asarray(d["labels"].astype("int32"))

    def call():
        state[0], value = step(state[0], x, labels)
        return value.block_until_ready()

    return call


# --- PyTorch --------------------------------------------------------------------------------------


def torch_peer(workload: str, d: dict, compiled: bool) -> Callable:
    """Eager PyTorch (autograd + torch.optim.SGD), or the same with the loss torch.compile'd."""
    import torch
    import torch.nn.functional as F

    if workload.startswith("chain"):

        def chain(x, w, b, y):
            return torch.tanh(x * w + b) * torch.sigmoid(y) + 0.5 * x**2

        fn = torch.compile(chain) if compiled else chain
        args = [torch.from_numpy(d[k]) for k in "xwby"]
        return lambda: fn(*args)

    params = [torch.from_numpy(d[k].copy()).requires_grad_() for k in PARAMS[workload]]

    def loss(x, labels):
        if workload == "mlp_step":
            w1, b1, w2, b2 = params
            z = F.relu(x @ w1 + b1) @ w2 + b2
        else:
            c1, cb1, c2, cb2, w3, b3, w4, b4 = params
            h = F.max_pool2d(F.relu(F.conv2d(x, c1, cb1)), 2)
            h = F.max_pool2d(F.relu(F.conv2d(h, c2, cb2)), 2).flatten(1)
            z = F.relu(h @ w3 + b3) @ w4 + b4
        return F.cross_entropy(z, labels)

    fn = torch.compile(loss) if compiled else loss
    optimizer = torch.optim.SGD(params, lr=LR)
    x, labels = torch.from_numpy(d["x"]), torch.from_numpy(d["labels"])

    def step():
        optimizer.zero_grad(set_to_none=True)
        value = fn(x, labels)
        value.backward()
        optimizer.step()
        return value.detach()

    return step


# --- PyTensor -------------------------------------------------------------------------------------


def pytensor_peer(workload: str, d: dict, mode: str) -> Callable:
    """pytensor.function with SGD updates, in mode 'FAST_RUN' (C) or 'NUMBA'.

    PyTensor 3 has no batched multi-channel conv2d or pool op, so the CNN uses im2col written with
    slices and a tensordot, and max pooling as a reshape and max: what its users write.
    """
    import pytensor
    import pytensor.tensor as pt
    from pytensor.tensor.special import log_softmax

    if workload.startswith("chain"):
        x, w, b, y = (pt.vector(k, dtype="float32", shape=(chain_size(workload),)) for k in "xwby")
        out = pt.tanh(x * w + b) * pt.sigmoid(y) + np.float32(0.5) * x**2
        f = pytensor.function([x, w, b, y], out, mode=mode)
        args = [d[k] for k in "xwby"]
        return lambda: f(*args)

    params = {k: pytensor.shared(d[k].copy(), name=k) for k in PARAMS[workload]}
    batch = len(d["labels"])
    x = pt.tensor("x", dtype="float32", shape=d["x"].shape)
    labels = pt.vector("labels", dtype="int64", shape=(batch,))

    def conv(h, w, b, size: int, k: int = 5):  # valid cross-correlation: im2col + tensordot
        # shared variables carry no static shape in PyTensor: the sizes are given
        out_channels, in_channels = d[w.name].shape[:2]
        rows = size - k + 1
        patches = pt.stack(
            [h[:, :, i : i + rows, j : j + rows] for i in range(k) for j in range(k)], 2
        )
        filters = w.reshape((out_channels, in_channels, k * k))
        out = pt.tensordot(patches, filters, axes=[[1, 2], [1, 2]])  # (n, rows, rows, out)
        return out.dimshuffle(0, 3, 1, 2) + b.dimshuffle("x", 0, "x", "x")

    def pool(h, channels: int, size: int):
        return h.reshape((batch, channels, size // 2, 2, size // 2, 2)).max(axis=(3, 5))

    p = params
    if workload == "mlp_step":
        z = pt.maximum(x @ p["w1"] + p["b1"], 0) @ p["w2"] + p["b2"]
    else:
        h = pool(pt.maximum(conv(x, p["c1"], p["cb1"], 28), 0), 20, 24)
        h = pool(pt.maximum(conv(h, p["c2"], p["cb2"], 12), 0), 50, 8).reshape((batch, 800))
        z = pt.maximum(h @ p["w3"] + p["b3"], 0) @ p["w4"] + p["b4"]
    loss = -log_softmax(z, axis=1)[pt.arange(batch), labels].mean()
    grads = pytensor.grad(loss, list(params.values()))
    updates = [(v, v - np.float32(LR) * g) for v, g in zip(params.values(), grads)]
    f = pytensor.function([x, labels], loss, updates=updates, mode=mode)
    return lambda: f(d["x"], d["labels"])


def checksum(value) -> float:
    """The float64 sum of a step's result (the loss, or the chain's output): runners must agree."""
    return float(np.sum(np.asarray(value), dtype=np.float64))


def make(peer: str, workload: str, d: dict | None = None) -> Callable:
    """A zero-argument callable running one step of `workload` in `peer` (built, not yet called)."""
    if workload not in PEERS.get(peer, ()):
        raise ValueError(f"peer {peer!r} has no {workload!r} workload")
    d = data(workload) if d is None else d
    if peer == "numpy":
        return numpy_peer(workload, d)
    if peer == "numexpr":
        return numexpr_peer(workload, d)
    if peer == "jax":
        return jax_peer(workload, d)
    if peer.startswith("torch"):
        return torch_peer(workload, d, compiled=peer == "torch.compile")
    return pytensor_peer(workload, d, "NUMBA" if peer.endswith("NUMBA") else "FAST_RUN")


def installed(peer: str) -> bool:
    """Is the peer's library importable in this interpreter (checked without importing it)?"""
    import importlib.util

    return importlib.util.find_spec(LIBRARY[peer]) is not None


def versions() -> dict:
    """Versions of the libraries this interpreter has (from package metadata, nothing imported)."""
    found = {"python": sys.version.split()[0]}
    for name in (
        "numpy",
        "numexpr",
        "jax",
        "jaxlib",
        "torch",
        "numba",
        "llvmlite",
        "pytensor",
        "scipy",
    ):
        try:
            found[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            pass
    return found


def pytensor_config() -> dict:
    """PyTensor's C compiler, BLAS flags and compile directory (is its C mode really C?)."""
    if not installed("pytensor C"):
        return {}
    import pytensor

    return {
        "cxx": pytensor.config.cxx,
        "blas__ldflags": pytensor.config.blas__ldflags,
        "compiledir": pytensor.config.compiledir,
    }


# --- processes ------------------------------------------------------------------------------------


def first_step(peer: str, workload: str) -> dict:
    """In a fresh process: seconds to import the library, then to build, compile and call once."""
    start = time.perf_counter()
    __import__(IMPORT[LIBRARY[peer]])
    imported = time.perf_counter()
    d = data(workload)
    begin = time.perf_counter()
    make(peer, workload, d)()
    return {"import_s": imported - start, "first_step_s": time.perf_counter() - begin}


def serve() -> None:
    """Answer JSON-line requests on stdin: build, time (k calls, each timed), free, versions."""
    built: dict[str, Callable] = {}
    for line in sys.stdin:
        request = json.loads(line)
        try:
            op = request["op"]
            key = f"{request.get('peer')}|{request.get('workload')}"
            if op == "build":
                begin = time.perf_counter()
                built[key] = make(request["peer"], request["workload"])
                value = built[key]()
                reply = {"first_step_s": time.perf_counter() - begin, "check": checksum(value)}
            elif op == "time":
                times = []
                for _ in range(request["calls"]):
                    begin = time.perf_counter()
                    built[key]()
                    times.append(time.perf_counter() - begin)
                reply = {"times": times}
            elif op == "free":
                built.pop(key, None)
                reply = {}
            elif op == "versions":
                reply = {"versions": versions(), "pytensor_config": pytensor_config()}
            else:
                raise ValueError(f"unknown request {op!r}")
        except Exception as error:  # noqa: BLE001  (reported to run.py: the runner failed)
            reply = {"error": f"{type(error).__name__}: {error}"[:2000]}
        print(json.dumps(reply, default=str), flush=True)


if __name__ == "__main__":
    if sys.argv[1:2] == ["--serve"]:
        serve()
    elif sys.argv[1:2] == ["--first-step"] and len(sys.argv) == 4:
        print(json.dumps(first_step(sys.argv[2], sys.argv[3])))
    else:
        raise SystemExit("usage: peers.py --serve | --first-step PEER WORKLOAD")
