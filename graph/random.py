"""Theano's random streams (RandomStreams, MRG_RandomStreams), both drawing from Philox 4x32-10.

Each draw gets its own stream: a shared uint32 state [k0, k1, d_lo, d_hi] (see `ops/random.py`)
whose key is derived from the seed and the draw's number, and whose `default_update` advances
the draw counter, so every call of a compiled function gives new numbers and a seed gives the
same numbers in every mode and process.
"""

from __future__ import annotations

import secrets
from typing import Any

import numpy as np

from .config import config
from .shared import SharedVariable, shared
from .type import upcast
from .var import Constant, Var, as_tensor_variable
from .ops.random import (
    STATE_TYPE,
    Choice,
    Multinomial,
    Permutation,
    RandomDraw,
    RowChoice,
    advance_state,
    check_dtype,
    philox4x32,
    seed_key,
)
from .ops.shape import as_shape_vector

__all__ = ["RandomStreams", "MRG_RandomStreams", "RandomStream", "fold_seed"]


def fold_seed(seed: Any) -> int:
    """A 64-bit seed from an int or a sequence of ints (MRG's six-int seeds), folded by Philox."""
    integer = (int, np.integer)
    if isinstance(seed, integer):
        return int(seed) % 2**64
    if isinstance(seed, (list, tuple, np.ndarray)) and all(isinstance(s, integer) for s in seed):
        value = 0
        for s in seed:  # value <- words 0, 1 of Philox((s_lo, s_hi, 0, 1), key=value)
            s = int(s) % 2**64
            counter = np.array([[s & 0xFFFFFFFF, s >> 32, 0, 1]], dtype=np.uint32)
            w = philox4x32(counter, (value & 0xFFFFFFFF, value >> 32))[0]
            value = int(w[0]) | (int(w[1]) << 32)
        return value
    raise TypeError(
        f"a random seed must be an int or a list of ints, got {type(seed).__name__} {seed!r:.60}"
    )


def _weak(x: Var) -> bool:
    return isinstance(x.op, Constant) and x.op.weak


def _float_dtype(dtype: Any, params: list, what: str) -> str:
    """The draw's dtype: as given, or floatX upcast with the float parameters' dtypes."""
    if dtype is not None:
        return check_dtype(dtype, what)
    dtypes = [p.dtype for p in params if not _weak(p) and p.dtype.startswith("float")]
    return upcast(config.floatX, *dtypes)


class RandomStreams:
    """Theano's `shared_randomstreams.RandomStreams`: random draws, each with a shared state."""

    default_seed: int | None = None

    def __init__(self, seed: Any = None) -> None:
        if seed is None:
            seed = self.default_seed if self.default_seed is not None else secrets.randbits(63)
        self.default_instance_seed = seed
        self._seed = fold_seed(seed)
        self.state_updates: list[tuple[SharedVariable, Var]] = []

    # -- streams -----------------------------------------------------------------------------------
    def seed(self, seed: Any = None) -> None:
        """Reseed every stream made so far (and later ones) from `seed` (default: the first one)."""
        self._seed = fold_seed(self.default_instance_seed if seed is None else seed)
        for index, (state, _) in enumerate(self.state_updates):
            state.set_value(self._initial_state(index))

    def _initial_state(self, index: int) -> np.ndarray:
        k0, k1 = seed_key(self._seed, index)
        return np.array([k0, k1, 0, 0], dtype=np.uint32)

    def _new_state(self) -> SharedVariable:
        index = len(self.state_updates)
        value = self._initial_state(index)
        state = shared(value, name=f"rng_state_{index}", shape=STATE_TYPE.shape)
        state.default_update = advance_state(state)
        self.state_updates.append((state, state.default_update))
        return state

    def updates(self) -> list:
        """(state, new state) pairs of every stream, for `function(..., updates=srng.updates())`."""
        return list(self.state_updates)

    @property
    def random_state_variables(self) -> list:
        """The (state, update) pair of every stream, as Theano's attribute of that name."""
        return list(self.state_updates)

    # -- sizes ------------------------------------------------------------------------------------
    def _size(self, size: Any, ndim: int | None, what: str) -> Var:
        """size as an int64 vector Var: None or () is empty (shape from the parameters)."""
        if size is None:
            size = ()
        vector = as_shape_vector(size, what, ndim)
        n = vector.type.shape[0]
        if ndim is not None and n and n != ndim:  # size () takes the parameters' shape
            raise ValueError(f"{what}: size {size!r} has {n} entries but ndim={ndim}")
        return vector

    @staticmethod
    def _ndim(size: Var, ndim: int | None, params: list) -> int:
        n = size.type.shape[0]
        if n is None:
            return ndim
        return n if n else max((p.ndim for p in params), default=0)

    def _draw(self, dist: str, size, ndim, dtype: str, a: Var, b: Var) -> Var:
        vector = self._size(size, ndim, dist)
        op = RandomDraw(dist, dtype, self._ndim(vector, ndim, [a, b]))
        return Var(op, (self._new_state(), vector, a, b))

    # -- distributions ----------------------------------------------------------------------------
    def uniform(self, size=(), low=0.0, high=1.0, ndim=None, dtype=None, **kwargs) -> Var:
        """Uniform floats in [low, high) (open at both ends in exact arithmetic), shape `size`."""
        low, high = as_tensor_variable(low), as_tensor_variable(high)
        dtype = _float_dtype(dtype, [low, high], "uniform")
        return self._draw("uniform", size, ndim, dtype, low, high)

    def normal(self, size=(), avg=0.0, std=1.0, ndim=None, dtype=None, truncate=False, **kw) -> Var:
        """Normal floats with mean `avg` and standard deviation `std` (Box-Muller), shape `size`."""
        if truncate:
            raise NotImplementedError(
                "normal(truncate=True) is not supported; clip the draw or resample it"
            )
        avg, std = as_tensor_variable(avg), as_tensor_variable(std)
        dtype = _float_dtype(dtype, [avg, std], "normal")
        return self._draw("normal", size, ndim, dtype, avg, std)

    def binomial(self, size=(), n=1, p=0.5, ndim=None, dtype="int64", prob=None, **kwargs) -> Var:
        """Successes in `n` trials of probability `p`, shape `size` (dropout masks: n=1)."""
        if prob is not None:
            p = prob
        if p is None:
            raise TypeError("binomial: p (the success probability) is required")
        n, p = as_tensor_variable(n), as_tensor_variable(p)
        if not n.dtype.startswith(("int", "uint")):
            raise TypeError(f"binomial: n must be an integer, got {n} of type {n.type}")
        return self._draw("binomial", size, ndim, check_dtype(dtype, "binomial"), n, p)

    def random_integers(self, size=(), low=0, high=1, ndim=None, dtype="int64") -> Var:
        """Integers uniformly drawn from [low, high], both ends included, shape `size`."""
        low, high = as_tensor_variable(low), as_tensor_variable(high)
        for name, x in (("low", low), ("high", high)):
            if not x.dtype.startswith(("int", "uint")):
                raise TypeError(
                    f"random_integers: {name} must be an integer, got {x} of type {x.type}"
                )
        return self._draw("integers", size, ndim, check_dtype(dtype, "random_integers"), low, high)

    def multinomial(self, size=None, n=1, pvals=None, ndim=None, dtype="int64", **kwargs) -> Var:
        """Counts of `n` draws among len(pvals) categories; shape size + (k,), or pvals' shape."""
        if pvals is None:
            pvals = [0.5, 0.5]
        pvals, n = as_tensor_variable(pvals), as_tensor_variable(n)
        if not n.dtype.startswith(("int", "uint")):
            raise TypeError(f"multinomial: n must be an integer, got {n} of type {n.type}")
        vector = self._size(size, ndim, "multinomial")
        length = vector.type.shape[0]
        batch = ndim if length is None else (length or max(n.ndim, pvals.ndim - 1))
        op = Multinomial(check_dtype(dtype, "multinomial"), batch + 1)
        return Var(op, (self._new_state(), vector, n, pvals))

    def permutation(self, size=None, n=1, ndim: int | None = None, dtype="int64") -> Var:
        """Random permutations of range(n); shape size + (n,)."""
        n = as_tensor_variable(n)
        if n.ndim != 0 or not n.dtype.startswith(("int", "uint")):
            raise TypeError(f"permutation: n must be an integer scalar, got {n} of type {n.type}")
        vector = self._size(size, ndim, "permutation")
        batch = vector.type.shape[0] if vector.type.shape[0] is not None else ndim
        op = Permutation(check_dtype(dtype, "permutation"), batch + 1)
        return Var(op, (self._new_state(), vector, n))

    def choice(self, size=None, a=2, replace=True, p=None, ndim=None, dtype="int64") -> Var:
        """Samples of range(a) (a an int) or of the entries of the vector `a`, probabilities `p`."""
        a = as_tensor_variable(a)
        vector = self._size(size, ndim, "choice")
        out_ndim = vector.type.shape[0] if vector.type.shape[0] is not None else ndim
        inputs = (self._new_state(), vector, a) + (() if p is None else (as_tensor_variable(p),))
        op = Choice(bool(replace), p is not None, check_dtype(dtype, "choice"), out_ndim)
        return Var(op, inputs)

    def shuffle_row_elements(self, input) -> Var:
        """`input` with the entries of each row (last axis) in a new random order."""
        from .ops.shape_alloc import TakeAlongAxis

        x = as_tensor_variable(input)
        if x.ndim < 1:
            raise TypeError(
                f"shuffle_row_elements needs at least one dimension, got {x} of type {x.type}"
            )
        shape = x.shape
        perm = self.permutation(size=shape[:-1], n=shape[-1], ndim=x.ndim - 1)
        return Var(TakeAlongAxis(x.ndim - 1), (x, perm))


class MRG_RandomStreams(RandomStreams):
    """Theano's `sandbox.rng_mrg.MRG_RandomStreams`, drawing from the same Philox streams."""

    default_seed = 12345

    def __init__(self, seed: Any = 12345) -> None:
        super().__init__(seed)

    def uniform(self, size, low=0.0, high=1.0, ndim=None, dtype=None, nstreams=None, **kw) -> Var:
        """Uniform floats in [low, high), shape `size` (`nstreams` is accepted and ignored)."""
        return super().uniform(size, low, high, ndim, dtype)

    def normal(self, size, avg=0.0, std=1.0, ndim=None, dtype=None, nstreams=None, truncate=False,
               **kw) -> Var:
        """Normal floats with mean `avg` and standard deviation `std`, shape `size`."""
        return super().normal(size, avg, std, ndim, dtype, truncate)

    def binomial(self, size=None, n=1, p=None, ndim=None, dtype="int64", nstreams=None,
                 **kw) -> Var:
        """Successes in `n` trials of probability `p` (MRG needs p)."""
        return super().binomial(size, n, p, ndim, dtype, prob=kw.get("prob"))

    def multinomial(self, size=None, n=1, pvals=None, ndim=None, dtype="int64", nstreams=None,
                    **kw) -> Var:
        """Counts of `n` draws per row of the probability matrix `pvals` (same shape as pvals)."""
        if pvals is None:
            raise TypeError("multinomial: pvals (one row of probabilities per draw) is required")
        return super().multinomial(size, n, pvals, ndim, dtype)

    def choice(self, size=1, a=None, replace=True, p=None, ndim=None, dtype="int64", nstreams=None,
               **kw) -> Var:
        """`size` category indices per row of the probability matrix `p`: shape (rows, size)."""
        if p is not None:
            p = as_tensor_variable(p)
        if p is None or p.ndim != 2:
            return super().choice(size, 2 if a is None else a, replace, p, ndim, dtype)
        if a is not None:
            raise TypeError("MRG_RandomStreams.choice with a probability matrix p takes a=None")
        m = as_tensor_variable(size)
        if m.ndim != 0:
            raise TypeError(
                f"choice: with a probability matrix p, size must be an integer scalar, got {size!r}"
            )
        op = RowChoice(bool(replace), check_dtype(dtype, "choice"))
        return Var(op, (self._new_state(), m, p))

    def multinomial_wo_replacement(self, size=None, n=1, pvals=None, ndim=None, dtype="int64",
                                   **kw) -> Var:
        """`n` distinct category indices per row of `pvals` (Theano's old name for choice)."""
        return self.choice(size=n, a=None, replace=False, p=pvals, ndim=ndim, dtype=dtype)


RandomStream = RandomStreams
