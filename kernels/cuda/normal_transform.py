"""Box-Muller's CUDA C: graph/ops/random.py's log_positive and sincos_2pi, operation for operation.

th_box_muller(u1, u2, z) makes the two float64 normals of a pair of uniforms exactly as
graph/ops/random.py:_normals does. libm's log, sin and cos round differently from library to
library (numpy's, glibc's on the emulator, the GPU's), so they are not called: every step is an
IEEE basic operation, written th_add / th_sub / th_mul / th_div / th_sqrt (the __d*_rn
intrinsics under nvcc, which it never fuses into an FMA; the plain operators under g++, whose
x86-64 baseline has no FMA), an exact bit move, floor, a comparison or a select. The text goes
after random.py's ROUNDED (th_add, th_mul); coefficients come from graph/ops/random.py itself.
"""

from __future__ import annotations

from collections.abc import Sequence

from ...graph.ops import random as R


def _horner_c(x: str, coefficients: Sequence[float]) -> str:
    """C text of graph/ops/random.py:horner: c0 + x (c1 + x (...)), each step rounded."""
    text = coefficients[-1].hex()
    for c in reversed(coefficients[:-1]):
        text = f"th_add({c.hex()}, th_mul({x}, {text}))"
    return text


def _rounded_double(name: str, op: str, intrinsic: str) -> str:
    """C text of th_<name>(a, b): the _rn intrinsic under nvcc, the plain operator in g++."""
    return (
        f"__device__ __forceinline__ double th_{name}(const double a, const double b) {{\n"
        f"#ifdef __CUDACC__\n  return {intrinsic}(a, b);\n#else\n  return a {op} b;\n#endif\n}}"
    )


BOX_MULLER = "\n".join([
    "// - / sqrt rounded once each, as numpy (with ROUNDED's + and *)",
    _rounded_double("sub", "-", "__dsub_rn"),
    _rounded_double("div", "/", "__ddiv_rn"),
    "__device__ __forceinline__ double th_sqrt(const double a) {",
    "#ifdef __CUDACC__",
    "  return __dsqrt_rn(a);",
    "#else",
    "  return sqrt(a);",
    "#endif",
    "}",
    "// log of a positive normal double, as graph/ops/random.py:log_positive",
    "__device__ __forceinline__ double th_log(const double x) {",
    "  const unsigned long long bits = (unsigned long long)__double_as_longlong(x);",
    "  long long k = (long long)((bits >> 52) & 0x7FFull) - 1023;",
    "  double m = __longlong_as_double(",
    "      (long long)((bits & 0xFFFFFFFFFFFFFull) | 0x3FF0000000000000ull));",
    f"  if (m >= {R.SQRT2.hex()}) {{",
    "    m = th_mul(m, 0.5);",
    "    k += 1;",
    "  }",
    "  const double kf = (double)k;",
    "  const double f = th_sub(m, 1.0);",
    "  const double s = th_div(f, th_add(2.0, f));",
    "  const double s2 = th_mul(s, s);",
    f"  const double t = th_mul(s2, {_horner_c('s2', R.ATANH)});",
    f"  const double lo = th_sub(th_mul(kf, {R.LN2_LO.hex()}), th_mul(s, th_sub(f, t)));",
    f"  return th_add(th_mul(kf, {R.LN2_HI.hex()}), th_add(f, lo));",
    "}",
    "// (sin 2 pi u, cos 2 pi u) of u in [0, 1), as graph/ops/random.py:sincos_2pi",
    "__device__ __forceinline__ void th_sincos_2pi(const double u, double* sn, double* cs) {",
    "  const double x = th_mul(u, 4.0);",
    "  double q = floor(x);",
    "  double r = th_sub(x, q);",
    "  if (r > 0.5) {",
    "    r = th_sub(r, 1.0);",
    "    q = th_add(q, 1.0);",
    "  }",
    "  const int quadrant = (int)q & 3;",
    "  const double r2 = th_mul(r, r);",
    f"  const double sp = th_add({R.HALF_PI_M1.hex()}, th_mul(r2, {_horner_c('r2', R.SIN)}));",
    "  const double s = th_add(r, th_mul(r, sp));",
    "  const double w = th_sub(1.0, r2);",
    f"  const double cp = th_add({R.COS_1.hex()}, th_mul(r2, {_horner_c('r2', R.COS)}));",
    "  const double c = th_add(w, th_add(th_sub(th_sub(1.0, w), r2), th_mul(r2, cp)));",
    "  *sn = quadrant == 0 ? s : quadrant == 1 ? c : quadrant == 2 ? -s : -c;",
    "  *cs = quadrant == 0 ? c : quadrant == 1 ? -s : quadrant == 2 ? -c : s;",
    "}",
    "// Box-Muller in double, as graph/ops/random.py:_normals",
    "__device__ __forceinline__ void th_box_muller(const double u1, const double u2,",
    "                                              double z[2]) {",
    "  const double r = th_sqrt(th_mul(-2.0, th_log(u1)));",
    "  double sn, cs;",
    "  th_sincos_2pi(u2, &sn, &cs);",
    "  z[0] = th_mul(r, cs);",
    "  z[1] = th_mul(r, sn);",
    "}",
])  # fmt: skip
