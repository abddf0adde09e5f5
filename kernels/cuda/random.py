"""CUDA kernels of the Philox 4x32-10 draws, word for word the generator of graph/ops/random.py.

Each thread computes the Philox block(s) of its elements from the stream state [k0, k1, d_lo,
d_hi], read in device memory (block b of a draw is Philox of counter (b_lo, b_hi, d_lo, d_hi), as
in `stream_words`), then applies the CPU's conversions (u24, u53, u33, below) and transformations
in the same order and precision. Bit for bit the same as mode 'py', on the emulator and on a GPU:
- uniform (float32, float64), random_integers, binomial (any n, p and output dtype),
  multinomial, choice with replacement (with or without p), MRG's row-wise choice with
  replacement, and the state update (`AdvanceState`): exact integer arithmetic plus correctly
  rounded + and *, where every a + b * c is written __fadd_rn(a, __fmul_rn(b, c)) (and the
  double versions) so that nvcc cannot fuse it into an FMA, which numpy does not do.
- normal (float32, float64): Box-Muller in double as on the CPU (r = sqrt(-2 log u1),
  r cos 2 pi u2, r sin 2 pi u2), rounded to the dtype. log, sin and cos are not the device's
  libm (which rounds differently from numpy's, as glibc's does) but graph/ops/random.py's
  `log_positive` and `sincos_2pi` written out operation for operation (normal_transform.py):
  + - * / and sqrt as __dadd_rn, __dsub_rn, __dmul_rn, __ddiv_rn, __dsqrt_rn (each correctly
  rounded, never fused), exact bit moves, floor and comparisons, so the bits match mode 'py'.
Checks that the CPU's perform makes on parameter values (binomial's p in [0, 1], non-negative
probabilities) run on the host where those values are constants; values computed on the device
are not read back (a p outside [0, 1] then acts as the comparison u < p implies).
Permutation and choice without replacement sort the keys of the whole draw: they stay host ops
(`HOST_REASONS`, for backend.HOST_OPS). The size, and the integers that fix the output shape or
the word layout (binomial's and multinomial's n, choice's n, random_integers' bounds, MRG
choice's size), are host inputs: small, and the CPU's error messages need their values.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ...graph.ops.random import (
    AdvanceState,
    Choice,
    Multinomial,
    Permutation,
    RandomDraw,
    RowChoice,
    _run_shape,
    _size,
)
from ...graph.var import Constant, Var
from .elementwise import contiguous_strides
from .kernel import Kernel, kernel_name
from .normal_transform import BOX_MULLER
from .scalar import CTYPE, ctype
from .templates import finish

BLOCK = 256
_FLOATS = ("float32", "float64")

# Ops left on the host, with the reason (merged into backend.HOST_OPS by the lead).
HOST_REASONS: dict[type, str] = {
    Permutation: "a stable sort of 64-bit keys per row: a sort, not an elementwise draw",
    Choice: "without replacement it sorts keys of the whole draw (a host sort); float16 values",
    RowChoice: "without replacement it sorts keys of each row (a host sort)",
    RandomDraw: "float16 draws or parameters have no CUDA C type",
    Multinomial: "float16 probabilities or counts have no CUDA C type",
}

# --- device helpers (identical text in every kernel source that uses them) -----------------------

PHILOX = r"""// Philox 4x32-10 of counter (b_lo, b_hi, d_lo, d_hi) under key (k0, k1): block b of a draw
__device__ __forceinline__ void th_philox(const unsigned long long b, unsigned k0, unsigned k1,
                                          const unsigned d0, const unsigned d1, unsigned w[4]) {
  unsigned c0 = (unsigned)b, c1 = (unsigned)(b >> 32), c2 = d0, c3 = d1;
#pragma unroll
  for (int r = 0; r < 10; r++) {
    if (r) {
      k0 += 0x9E3779B9u;
      k1 += 0xBB67AE85u;
    }
    const unsigned long long p0 = (unsigned long long)c0 * 0xD2511F53ull;
    const unsigned long long p1 = (unsigned long long)c2 * 0xCD9E8D57ull;
    const unsigned n0 = (unsigned)(p1 >> 32) ^ c1 ^ k0, n2 = (unsigned)(p0 >> 32) ^ c3 ^ k1;
    c1 = (unsigned)p1;
    c3 = (unsigned)p0;
    c0 = n0;
    c2 = n2;
  }
  w[0] = c0;
  w[1] = c1;
  w[2] = c2;
  w[3] = c3;
}
// word j (0..3) of a block, by selects (a dynamic index would put w in local memory)
__device__ __forceinline__ unsigned th_pick(const unsigned w[4], const unsigned long long j) {
  return (j & 2) ? ((j & 1) ? w[3] : w[2]) : ((j & 1) ? w[1] : w[0]);
}
// words to numbers, exactly as graph/ops/random.py
__device__ __forceinline__ float th_u24(const unsigned w) {
  return ((float)(w >> 9) * 2.0f + 1.0f) * 0x1p-24f;
}
__device__ __forceinline__ double th_u53(const unsigned w0, const unsigned w1) {
  const unsigned long long x = ((unsigned long long)w0 << 20) | (unsigned long long)(w1 >> 12);
  return ((double)x * 2.0 + 1.0) * 0x1p-53;
}
__device__ __forceinline__ double th_u33(const unsigned w) {
  return ((double)w * 2.0 + 1.0) * 0x1p-33;
}
__device__ __forceinline__ unsigned long long th_below(const unsigned w,
                                                      const unsigned long long m) {
  return ((unsigned long long)w * m) >> 32;
}"""

ROUNDED = r"""// + and * rounded once each, as numpy: nvcc would otherwise fuse a + b * c into an FMA
__device__ __forceinline__ float th_add(const float a, const float b) {
#ifdef __CUDACC__
  return __fadd_rn(a, b);
#else
  return a + b;
#endif
}
__device__ __forceinline__ double th_add(const double a, const double b) {
#ifdef __CUDACC__
  return __dadd_rn(a, b);
#else
  return a + b;
#endif
}
__device__ __forceinline__ float th_mul(const float a, const float b) {
#ifdef __CUDACC__
  return __fmul_rn(a, b);
#else
  return a * b;
#endif
}
__device__ __forceinline__ double th_mul(const double a, const double b) {
#ifdef __CUDACC__
  return __dmul_rn(a, b);
#else
  return a * b;
#endif
}"""


CATEGORY = r"""// the category of uniform u among running float64 sums of p[0], p[step], ... (k entries):
// min(k - 1, #{j : s_j <= u * s_(k-1)}), as graph/ops/random.py:_category
template <class P>
__device__ __forceinline__ double th_total(const P* __restrict__ p, const long long k,
                                           const long long step) {
  double s = 0.0;
  for (long long j = 0; j < k; j++) s += (double)p[j * step];
  return s;
}
template <class P>
__device__ __forceinline__ long long th_category(const P* __restrict__ p, const long long k,
                                                 const long long step, const double total,
                                                 const double u) {
  const double t = u * total;
  double s = 0.0;
  long long found = 0;
  for (long long j = 0; j < k; j++) {
    s += (double)p[j * step];
    found += s <= t;
  }
  return found < k - 1 ? found : k - 1;
}"""

_LOOP = [
    "const unsigned k0 = state[0], k1 = state[1], d0 = state[2], d1 = state[3];",
    "const long long stride = (long long)gridDim.x * blockDim.x;",
]


def _grid_loop(var: str, count: str) -> list[str]:
    start = "blockIdx.x * (long long)blockDim.x + threadIdx.x"
    return [f"for (long long {var} = {start}; {var} < {count}; {var} += stride) {{"]


def _source(
    what: str,
    helpers: Sequence[str],
    params: Sequence[str],
    body: Sequence[str],
    kind: str = "random",
) -> Kernel:
    source = finish(what, helpers, BLOCK, params, body)
    name = kernel_name(source)
    return Kernel(name, source.replace("KERNEL", name), kind, what)


def _scalar(x: Var) -> bool:
    """A parameter of static size 1: read once, x[0], instead of by strides."""
    return all(s == 1 for s in x.type.shape)


def _strides(own: Sequence[int], shape: Sequence[int], steps: Sequence[int] | None = None) -> list:
    """Element strides of an array of shape `own` (C-contiguous unless `steps` are given)
    broadcast, right-aligned, to `shape`: 0 on the axes it lacks or has size 1."""
    steps = contiguous_strides(own) if steps is None else steps
    lead = len(shape) - len(own)
    return [0 if a < lead or own[a - lead] == 1 else steps[a - lead] for a in range(len(shape))]


class _Params:
    """Elementwise parameters x0, x1, ... of a draw: scalars hoisted, the others read by strides."""

    def __init__(
        self,
        ctypes_: Sequence[str],
        scalar: Sequence[bool],
        ndim: int,
        works: Sequence[str],
    ) -> None:
        self.ctypes, self.scalar, self.ndim = list(ctypes_), list(scalar), ndim
        self.works = list(works)  # the C type each value is converted to, as the CPU converts
        self.strided = [k for k, s in enumerate(self.scalar) if not s]

    def params(self) -> list[str]:
        """Their C parameters: pointers, then the output's sizes and their strides if needed."""
        out = [f"const {c}* __restrict__ x{k}" for k, c in enumerate(self.ctypes)]
        if self.strided:
            out += [f"const long long n{a}" for a in range(self.ndim)]
            out += [f"const long long s{k}_{a}" for k in self.strided for a in range(self.ndim)]
        return out

    def hoisted(self) -> list[str]:
        """The scalar parameters' values v<k>, read once per thread."""
        return [
            f"const {self.works[k]} v{k} = ({self.works[k]})x{k}[0];"
            for k, s in enumerate(self.scalar)
            if s
        ]

    def at(self, e: str) -> list[str]:
        """The strided parameters' values v<k> at element `e` (C order over n0, n1, ...)."""
        if not self.strided:
            return []
        lines = [f"long long rest = {e};"]
        for a in reversed(range(self.ndim)):
            lines.append(
                f"const long long c{a} = rest % n{a};" if a else "const long long c0 = rest;"
            )
            if a:
                lines.append(f"rest /= n{a};")
        for k in self.strided:
            offset = " + ".join(f"c{a} * s{k}_{a}" for a in range(self.ndim)) or "0"
            lines.append(f"const {self.works[k]} v{k} = ({self.works[k]})x{k}[{offset}];")
        return lines

    def arguments(self, values: Sequence, shape: tuple) -> list:
        """Launch arguments after the pointers: sizes and strides of the strided parameters."""
        if not self.strided:
            return []
        args = [np.int64(d) for d in shape]
        for k in self.strided:
            args += [np.int64(s) for s in _strides(values[k].shape, shape)]
        return args


def _constant(x: Var):
    return np.asarray(x.op.data) if isinstance(x.op, Constant) else None


def _upload(lowering, device, x: Var, value: np.ndarray):
    """`value` (input x's host value) on the device: copied up once per device when x is a
    constant (dropout's n = 1), so a training step does not send it again; else every launch."""
    if not isinstance(x.op, Constant):
        return device.to_device(value)
    cache = lowering.__dict__.setdefault("_uploaded", {})
    found = cache.get(id(x))
    if found is None or found[0] is not device:
        found = cache[id(x)] = (device, device.to_device(value))
    return found[1]


# --- AdvanceState ---------------------------------------------------------------------------------


class AdvanceLowering:
    """The next stream state, by one thread on the device: the state never visits the host."""

    def __init__(self) -> None:
        body = [
            "if (blockIdx.x == 0 && threadIdx.x == 0) {",
            "  const unsigned low = state[2] + 1u;",
            "  out0[0] = state[0];",
            "  out0[1] = state[1];",
            "  out0[2] = low;",
            "  out0[3] = state[3] + (low == 0u ? 1u : 0u);  // carry into the high word",
            "}",
        ]
        params = ["const unsigned* __restrict__ state", "unsigned* __restrict__ out0"]
        what = "AdvanceState: uint32[4] stream state, draw counter + 1 (mod 2^64)"
        self.kernel = _source(what, [], params, body)

    def launch(self, device, module, inputs: Sequence):
        """Launch one thread."""
        out = device.empty((4,), np.uint32)
        device.launch(module, self.kernel.name, 1, 1, [inputs[0], out])
        return out


# --- elementwise draws: uniform, normal, integers (one thread per Philox block) -------------------


# per distribution and dtype: (elements per block, per-block C lines using e = b * E + j)
def _block_body(dist: str, dtype: str, out: str) -> tuple[int, list[str], list[str]]:
    """(elements per Philox block, statements per block, helpers) of a block-per-thread draw."""
    if dist == "uniform":
        if dtype == "float32":
            u, per = "th_u24(w[j])", 4
        else:
            u, per = "th_u53(w[2 * j], w[2 * j + 1])", 2
        body = [
            f"for (int j = 0; j < {per}; j++) {{",
            f"  const long long e = b * {per} + j;",
            "  if (e < n) {",
            "    @AT",
            f"    out0[e] = th_add(v0, th_mul(v1 - v0, {u}));",
            "  }",
            "}",
        ]
        return per, body, [PHILOX, ROUNDED]
    if dist == "normal":
        if dtype == "float32":
            pairs, u1, u2 = (
                2,
                "(double)th_u24(w[2 * j])",
                "(double)th_u24(w[2 * j + 1])",
            )
        else:
            pairs, u1, u2 = (
                1,
                "th_u53(w[4 * j], w[4 * j + 1])",
                "th_u53(w[4 * j + 2], w[4 * j + 3])",
            )
        per = 2 * pairs
        body = [
            f"for (int j = 0; j < {pairs}; j++) {{",
            "  double z[2];",
            f"  th_box_muller({u1}, {u2}, z);",
            "  for (int h = 0; h < 2; h++) {",
            f"    const long long e = b * {per} + 2 * j + h;",
            "    if (e < n) {",
            "      @AT",
            f"      out0[e] = th_add(v0, th_mul(v1, ({out})z[h]));",
            "    }",
            "  }",
            "}",
        ]
        return per, body, [PHILOX, ROUNDED, BOX_MULLER]
    # integers: low + below(word e, high - low + 1), in int64, then the output dtype
    body = [
        "for (int j = 0; j < 4; j++) {",
        "  const long long e = b * 4 + j;",
        "  if (e < n) {",
        "    @AT",
        "    const unsigned long long span = (unsigned long long)(v1 - v0 + 1);",
        f"    out0[e] = ({out})(v0 + (long long)th_below(w[j], span));",
        "  }",
        "}",
    ]
    return 4, body, [PHILOX]


def _expand(lines: Sequence[str], at: Sequence[str]) -> list[str]:
    """Replace the line `@AT` (with its indentation) by the parameter loads."""
    out = []
    for line in lines:
        if line.strip() == "@AT":
            pad = line[: len(line) - len(line.lstrip())]
            out += [pad + x for x in at]
        else:
            out.append(line)
    return out


class DrawLowering:
    """uniform, normal and random_integers: each thread makes the elements of one Philox block."""

    def __init__(self, var: Var) -> None:
        op = var.op
        self.var, self.op = var, op
        a, b = var.inputs[2:]
        out = ctype(var.dtype)
        self.host_inputs = (1, 2, 3) if op.dist == "integers" else (1,)
        if op.dist == "integers":  # bounds read on the host (checked there), sent as int64
            pointer_types, work = ["long long"] * 2, "long long"
        else:
            pointer_types, work = [ctype(a.dtype), ctype(b.dtype)], out
        self.per, block, helpers = _block_body(op.dist, var.dtype, out)
        self.params = _Params(pointer_types, [_scalar(a), _scalar(b)], var.ndim, [work] * 2)
        params = [
            "const unsigned* __restrict__ state",
            f"{out}* __restrict__ out0",
            "const long long n",
            "const long long blocks",
        ] + self.params.params()
        body = (
            _LOOP
            + self.params.hoisted()
            + _grid_loop("b", "blocks")
            + [
                "  unsigned w[4];",
                "  th_philox((unsigned long long)b, k0, k1, d0, d1, w);",
            ]
        )
        body += ["  " + x for x in _expand(block, self.params.at("e"))] + ["}"]
        types = ", ".join(str(x.type) for x in var.inputs[2:])
        what = f"{op} of ({types})"
        self.kernel = _source(what, helpers, params, body)

    def launch(self, device, module, inputs: Sequence):
        """Shape and checks on the host, as the CPU's perform; then the blocks on the device."""
        state, size, a, b = inputs
        stand = [
            x if isinstance(x, np.ndarray) else np.empty(np.shape(x), dtype=[]) for x in (a, b)
        ]
        shape = _run_shape(self.op, size, tuple(stand))
        n = int(np.prod(shape, dtype=np.int64))
        if self.op.dist == "integers":
            low, high = np.asarray(a, dtype=np.int64), np.asarray(b, dtype=np.int64)
            span = high - low + 1
            if n and (span.min() < 1 or span.max() > 2**32):
                raise ValueError(
                    f"random_integers: need low <= high and high - low < 2**32, got ranges from "
                    f"{span.min() - 1} to {span.max() - 1}"
                )
            a, b = (_upload(self, device, x, v) for x, v in zip(self.var.inputs[2:], (low, high)))
        out = device.empty(shape, self.var.dtype)
        if n:
            blocks = -(-n // self.per)
            args = [state, out, np.int64(n), np.int64(blocks), a, b]
            args += self.params.arguments((a, b), shape)
            grid = min(-(-blocks // BLOCK), device.max_grid)
            device.launch(module, self.kernel.name, grid, BLOCK, args)
        return out


class BinomialLowering:
    """binomial: element e counts trials t < n_e with u33(word e N + t) < p_e, N = max n."""

    host_inputs = (1, 2)

    def __init__(self, var: Var) -> None:
        self.var, self.op = var, var.op
        trials, p = var.inputs[2:]
        out = ctype(var.dtype)
        self.params = _Params(
            ["long long", ctype(p.dtype)],
            [_scalar(trials), _scalar(p)],
            var.ndim,
            ["long long", "double"],
        )
        params = [
            "const unsigned* __restrict__ state",
            f"{out}* __restrict__ out0",
            "const long long n",
            "const long long most",
            "const long long groups",
            "const int group",
        ] + self.params.params()
        count = [
            "const long long count = v0;",
            "long long hits = 0;",
            "for (long long t = 0; t < count; t++) {",
            "  const unsigned long long word = (unsigned long long)e * most + t;",
            "  if (word >> 2 != block) {  // a new Philox block: 4 words",
            "    block = word >> 2;",
            "    th_philox(block, k0, k1, d0, d1, w);",
            "  }",
            "  hits += th_u33(th_pick(w, word & 3)) < v1;",
            "}",
            f"out0[e] = ({out})hits;",
        ]
        body = (
            _LOOP
            + self.params.hoisted()
            + _grid_loop("g", "groups")
            + [
                "  unsigned w[4] = {0u, 0u, 0u, 0u};",
                "  unsigned long long block = ~0ull;  // no block computed yet",
                "  for (int j = 0; j < group; j++) {",
                "    const long long e = g * group + j;",
                "    if (e >= n) break;",
            ]
        )
        body += ["    " + x for x in self.params.at("e") + count] + ["  }", "}"]
        what = f"{self.op} of (n {trials.type}, p {p.type})"
        self.kernel = _source(what, [PHILOX], params, body)

    def launch(self, device, module, inputs: Sequence):
        """Check n and p as the CPU does (p only when it is a constant), then count on the device."""
        state, size, trials, p = inputs
        stand = np.empty(p.shape, dtype=[])
        shape = _run_shape(self.op, size, (trials, stand))
        n = int(np.prod(shape, dtype=np.int64))
        trials = np.asarray(trials).astype(np.int64)
        if n and trials.min() < 0:
            raise ValueError(f"binomial: n must be >= 0, got {trials.min()}")
        known = _constant(self.var.inputs[3])
        if n and known is not None:
            known = known.astype(np.float64)
            if known.min() < 0 or known.max() > 1 or np.isnan(known).any():
                raise ValueError("binomial: p must lie in [0, 1]")
        most = int(trials.max()) if n else 0
        out = device.empty(shape, self.var.dtype)
        if n:
            group = 4 // most if 1 <= most <= 4 else 1  # about one Philox block per group
            groups = -(-n // group)
            on_device = _upload(self, device, self.var.inputs[2], trials)
            args = [
                state,
                out,
                np.int64(n),
                np.int64(most),
                np.int64(groups),
                np.int32(group),
                on_device,
                p,
            ] + self.params.arguments((trials, p), shape)
            grid = min(-(-groups // BLOCK), device.max_grid)
            device.launch(module, self.kernel.name, grid, BLOCK, args)
        return out


class MultinomialLowering:
    """multinomial: one thread per row r; trial t takes u53(words 2(r N + t), 2(r N + t) + 1)."""

    host_inputs = (1, 2)

    def __init__(self, var: Var) -> None:
        self.var, self.op = var, var.op
        pvals = var.inputs[3]
        out, batch = ctype(var.dtype), var.ndim - 1
        self.direct = var.dtype == "int64"  # counts go straight to the output, else via int64
        params = ["const unsigned* __restrict__ state", f"{out}* __restrict__ out0"]
        params += [] if self.direct else ["long long* __restrict__ acc"]
        params += [
            "const long long rows",
            "const long long most",
            "const long long k",
            f"const {ctype(pvals.dtype)}* __restrict__ pv",
            "const long long* __restrict__ trials",
        ]
        params += [f"const long long n{a}" for a in range(batch)]
        params += [f"const long long {s}{a}" for s in ("sp", "st") for a in range(batch)]
        rest = ["long long rest = r;"] if batch else []
        for a in reversed(range(batch)):
            rest += (
                [f"const long long c{a} = rest % n{a};", f"rest /= n{a};"]
                if a
                else ["const long long c0 = rest;"]
            )
        row = " + ".join(f"c{a} * sp{a}" for a in range(batch)) or "0"
        count = " + ".join(f"c{a} * st{a}" for a in range(batch)) or "0"
        counts = "out0 + r * k" if self.direct else "acc + r * k"
        loop = rest + [
            f"const {ctype(pvals.dtype)}* __restrict__ row = pv + ({row});",
            f"const long long count = trials[{count}];",
            f"long long* __restrict__ cnt = {counts};",
            "for (long long j = 0; j < k; j++) cnt[j] = 0;",
            "const double total = th_total(row, k, 1);",
            "unsigned w[4] = {0u, 0u, 0u, 0u};",
            "unsigned long long block = ~0ull;  // no block computed yet",
            "for (long long t = 0; t < count; t++) {",
            "  const unsigned long long word = 2 * ((unsigned long long)r * most + t);",
            "  if (word >> 2 != block) {  // a new Philox block: two trials",
            "    block = word >> 2;",
            "    th_philox(block, k0, k1, d0, d1, w);",
            "  }",
            "  const double u = (word & 2) ? th_u53(w[2], w[3]) : th_u53(w[0], w[1]);",
            "  cnt[th_category(row, k, 1, total, u)] += 1;",
            "}",
        ]
        if not self.direct:
            loop.append(f"for (long long j = 0; j < k; j++) out0[r * k + j] = ({out})cnt[j];")
        body = _LOOP + _grid_loop("r", "rows") + ["  " + x for x in loop] + ["}"]
        what = f"{self.op} of (n {var.inputs[2].type}, pvals {pvals.type})"
        self.kernel = _source(what, [PHILOX, CATEGORY], params, body)

    def launch(self, device, module, inputs: Sequence):
        """Shape and checks on the host, as the CPU's perform; the trials on the device."""
        state, size, trials, pvals = inputs
        k = pvals.shape[-1]
        batch = _size(size) or np.broadcast_shapes(np.shape(trials), pvals.shape[:-1])
        rows = int(np.prod(batch, dtype=np.int64))
        np.broadcast_to(np.empty(pvals.shape, dtype=[]), batch + (k,))  # the CPU's shape error
        trials = np.asarray(trials, dtype=np.int64)
        np.broadcast_to(trials, batch)
        known = _constant(self.var.inputs[3])
        negative = known is not None and known.size and known.astype(np.float64).min() < 0
        if rows and (negative or trials.min() < 0):
            raise ValueError("multinomial: pvals and n must be >= 0")
        most = int(trials.max()) if rows else 0
        if rows and most and not k:
            raise ValueError("multinomial: pvals has no categories (its last axis has size 0)")
        out = device.empty(batch + (k,), self.var.dtype)
        if rows:
            args = [state, out] + ([] if self.direct else [device.empty((rows, k), np.int64)])
            args += [
                np.int64(rows),
                np.int64(most),
                np.int64(k),
                pvals,
                _upload(self, device, self.var.inputs[2], trials),
            ]
            args += [np.int64(d) for d in batch]
            row_steps = contiguous_strides(pvals.shape)[:-1]
            args += [np.int64(s) for s in _strides(pvals.shape[:-1], batch, row_steps)]
            args += [np.int64(s) for s in _strides(trials.shape, batch)]
            grid = min(-(-rows // BLOCK), device.max_grid)
            device.launch(module, self.kernel.name, grid, BLOCK, args)
        return out


class ChoiceLowering:
    """choice with replacement: below(word e, n), or one multinomial trial on u53(words 2e, 2e+1)."""

    def __init__(self, var: Var) -> None:
        self.var, self.op = var, var.op
        a = var.inputs[2]
        self.vector, weighted = a.ndim == 1, self.op.weighted
        self.host_inputs = (1,) if self.vector else (1, 2)
        out = ctype(var.dtype)
        params = [
            "const unsigned* __restrict__ state",
            f"{out}* __restrict__ out0",
            "const long long n",
            "const long long blocks",
            "const long long choices",
        ]
        params += [f"const {ctype(a.dtype)}* __restrict__ a"] if self.vector else []
        if weighted:
            params.append(f"const {ctype(var.inputs[3].dtype)}* __restrict__ p")
            self.per, pick = (
                2,
                "th_category(p, choices, 1, total, th_u53(w[2 * j], w[2 * j + 1]))",
            )
        else:
            self.per, pick = 4, "(long long)th_below(w[j], (unsigned long long)choices)"
        value = "a[index]" if self.vector else f"({out})index"
        body = _LOOP + (["const double total = th_total(p, choices, 1);"] if weighted else [])
        body += _grid_loop("b", "blocks") + [
            "  unsigned w[4];",
            "  th_philox((unsigned long long)b, k0, k1, d0, d1, w);",
            f"  for (int j = 0; j < {self.per}; j++) {{",
            f"    const long long e = b * {self.per} + j;",
            "    if (e < n) {",
            f"      const long long index = {pick};",
            f"      out0[e] = {value};",
            "    }",
            "  }",
            "}",
        ]
        types = ", ".join(str(x.type) for x in var.inputs[2:])
        helpers = [PHILOX] + ([CATEGORY] if weighted else [])
        self.kernel = _source(f"{self.op} of ({types})", helpers, params, body)

    def launch(self, device, module, inputs: Sequence):
        """Sizes and checks on the host, as the CPU's perform; the picks on the device."""
        state, size, a, *p = inputs
        shape = _size(size)
        m = int(np.prod(shape, dtype=np.int64))
        n = a.shape[0] if self.vector else int(a)
        if n <= 0 and m:
            raise ValueError(f"choice: a must be positive (or a non-empty vector), got {n}")
        if p:
            if p[0].shape[0] != n:
                raise ValueError(f"choice: p has {p[0].shape[0]} entries but a has {n}")
            known = _constant(self.var.inputs[3])
            if known is not None and known.astype(np.float64).min(initial=0) < 0:
                raise ValueError("choice: probabilities p must be >= 0")
        out = device.empty(shape, self.var.dtype)
        if m:
            blocks = -(-m // self.per)
            args = [state, out, np.int64(m), np.int64(blocks), np.int64(n)]
            args += ([a] if self.vector else []) + list(p)
            grid = min(-(-blocks // BLOCK), device.max_grid)
            device.launch(module, self.kernel.name, grid, BLOCK, args)
        return out


class RowChoiceLowering:
    """MRG's choice with replacement: sample t of row r is one trial on words 2(r m + t), +1."""

    host_inputs = (1,)

    def __init__(self, var: Var) -> None:
        self.var, self.op = var, var.op
        p = var.inputs[2]
        params = [
            "const unsigned* __restrict__ state",
            f"{ctype(var.dtype)}* __restrict__ out0",
            "const long long n",
            "const long long blocks",
            "const long long m",
            "const long long k",
            f"const {ctype(p.dtype)}* __restrict__ p",
        ]
        body = (
            _LOOP
            + _grid_loop("b", "blocks")
            + [
                "  unsigned w[4];",
                "  th_philox((unsigned long long)b, k0, k1, d0, d1, w);",
                "  for (int j = 0; j < 2; j++) {",
                "    const long long e = b * 2 + j;",
                "    if (e < n) {",
                f"      const {ctype(p.dtype)}* __restrict__ row = p + (e / m) * k;",
                "      const double u = th_u53(w[2 * j], w[2 * j + 1]);",
                f"      out0[e] = ({ctype(var.dtype)})th_category(row, k, 1, th_total(row, k, 1), u);",
                "    }",
                "  }",
                "}",
            ]
        )
        self.kernel = _source(f"{self.op} of (p {p.type})", [PHILOX, CATEGORY], params, body)

    def launch(self, device, module, inputs: Sequence):
        """Checks on the host, as the CPU's perform; the picks on the device."""
        state, m, p = inputs
        m, (rows, k) = int(m), p.shape
        if m < 0:
            raise ValueError(f"choice: size must be >= 0, got {m}")
        known = _constant(self.var.inputs[2])
        if known is not None and known.size and known.astype(np.float64).min() < 0:
            raise ValueError("choice: probabilities p must be >= 0")
        if rows * m and not k:
            raise ValueError("choice: p has no categories (its rows are empty)")
        out = device.empty((rows, m), self.var.dtype)
        if rows * m:
            blocks = -(-(rows * m) // 2)
            args = [
                state,
                out,
                np.int64(rows * m),
                np.int64(blocks),
                np.int64(m),
                np.int64(k),
                p,
            ]
            grid = min(-(-blocks // BLOCK), device.max_grid)
            device.launch(module, self.kernel.name, grid, BLOCK, args)
        return out


# --- which nodes get a kernel ---------------------------------------------------------------------


def _typed(*dtypes: str) -> bool:
    return all(str(d) in CTYPE for d in dtypes)


def lowering(var: Var):
    """The lowering of `var` when this module generates its kernel, else None."""
    op = var.op
    if isinstance(op, AdvanceState):
        return AdvanceLowering()
    if isinstance(op, RandomDraw):
        a, b = var.inputs[2:]
        if op.dist in ("uniform", "normal"):
            ok = var.dtype in _FLOATS and _typed(a.dtype, b.dtype)
            return DrawLowering(var) if ok else None
        if op.dist == "integers":
            return DrawLowering(var) if _typed(var.dtype) else None
        return BinomialLowering(var) if _typed(var.dtype, b.dtype) else None
    if isinstance(op, Multinomial):
        return MultinomialLowering(var) if _typed(var.dtype, var.inputs[3].dtype) else None
    if isinstance(op, Choice) and op.replace:
        return (
            ChoiceLowering(var) if _typed(*(x.dtype for x in var.inputs[2:]), var.dtype) else None
        )
    if isinstance(op, RowChoice) and op.replace:
        return RowChoiceLowering(var) if _typed(var.dtype, var.inputs[2].dtype) else None
    return None
