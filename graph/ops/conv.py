"""2-d convolution (`T.nnet.conv2d`) and its two gradients, as im2col plus a matrix product."""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Sequence

import numpy as np
from numpy.lib.stride_tricks import as_strided

from ..type import TensorType, is_discrete, upcast
from ..var import Constant, Op, Var, as_tensor_variable, constant

__all__ = [
    "Conv2d", "Conv2dGradInputs", "Conv2dGradWeights", "conv2d", "conv2d_transpose",
    "conv2d_grad_wrt_inputs", "conv2d_grad_wrt_weights", "conv_output_length",
]

BORDER_MODES = ("valid", "full", "half")


# --- geometry -------------------------------------------------------------------------------------


def _pads(border_mode, kernel: Sequence, dilation: Sequence) -> tuple:
    """Rows and columns of zero padding on each side for `border_mode` and the kernel size."""
    if border_mode == "full":
        return tuple((k - 1) * d for k, d in zip(kernel, dilation))
    if border_mode == "half":
        return tuple(((k - 1) * d + 1) // 2 for k, d in zip(kernel, dilation))
    return tuple(border_mode)


def conv_output_length(size, kernel, stride: int, pad: int, dilation: int = 1):
    """Output length along one axis (None when the input or kernel length is unknown)."""
    if size is None or kernel is None:
        return None
    return (size + 2 * pad - ((kernel - 1) * dilation + 1)) // stride + 1


def _out_spatial(op: "_ConvOp", image: Sequence, kernel: Sequence) -> tuple:
    """Static output (rows, cols); None where unknown (an unknown kernel with 'full'/'half')."""
    if isinstance(op.border_mode, str) and None in kernel:
        return (None, None)
    pads = _pads(op.border_mode, [k or 0 for k in kernel], op.filter_dilation)
    return tuple(
        conv_output_length(n, k, s, p, d)
        for n, k, s, p, d in zip(image, kernel, op.subsample, pads, op.filter_dilation)
    )


def _windows(xp: np.ndarray, kernel: tuple, op: "_ConvOp", out: tuple) -> np.ndarray:
    """A read-only view (batch, channels, kr, kc, out_rows, out_cols) of the padded input."""
    b, c = xp.shape[:2]
    sb, sc, sh, sw = xp.strides
    (dr, dc), (sr, scol) = op.filter_dilation, op.subsample
    shape = (b, c) + tuple(kernel) + tuple(out)
    strides = (sb, sc, sh * dr, sw * dc, sh * sr, sw * scol)
    return as_strided(xp, shape, strides, writeable=False)


def _pad(x: np.ndarray, pads: tuple) -> np.ndarray:
    if pads == (0, 0):
        return x
    return np.pad(x, ((0, 0), (0, 0), (pads[0], pads[0]), (pads[1], pads[1])))


def _shape_text(shape: Sequence) -> str:
    return "(" + ", ".join("?" if d is None else str(d) for d in shape) + ")"


# --- the ops --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _ConvOp(Op):
    """Parameters shared by the convolution and its gradients."""

    border_mode: object = (0, 0)  # (pad_rows, pad_cols), 'full' or 'half'
    subsample: tuple = (1, 1)
    filter_flip: bool = True
    filter_dilation: tuple = (1, 1)
    num_groups: int = 1

    def _check(self, image: TensorType, kernel: TensorType, what: str) -> None:
        """Raise at build time when the static channel counts cannot match."""
        if image.ndim != 4 or kernel.ndim != 4:
            raise TypeError(
                f"{what}: needs a 4-d input (batch, channels, rows, cols) and 4-d filters "
                f"(out_channels, in_channels / num_groups, rows, cols), got input {image} and "
                f"filters {kernel}"
            )
        c, kc, f = image.shape[1], kernel.shape[1], kernel.shape[0]
        g = self.num_groups
        if c is not None and kc is not None and c != kc * g:
            raise ValueError(
                f"{what}: the input has {c} channels but the filters expect {kc} * num_groups="
                f"{g} = {kc * g}; input shape {_shape_text(image.shape)}, filter shape "
                f"{_shape_text(kernel.shape)}"
            )
        if f is not None and f % g:
            raise ValueError(
                f"{what}: {f} filters cannot be split into num_groups={g} groups; filter shape "
                f"{_shape_text(kernel.shape)}"
            )

    def _runtime_out(self, x_shape: tuple, kernel: tuple, what: str) -> tuple:
        pads = _pads(self.border_mode, kernel, self.filter_dilation)
        geometry = zip(x_shape[2:], kernel, self.subsample, pads, self.filter_dilation)
        out = tuple(conv_output_length(n, k, s, p, d) for n, k, s, p, d in geometry)
        if min(out) <= 0:
            raise ValueError(
                f"{what}: the (dilated) filters of size {tuple(kernel)} do not fit in the input of "
                f"shape {x_shape} padded by {pads}"
            )
        return pads, out

    def _groups(self, channels: int, filters: int):
        cg, fg = channels // self.num_groups, filters // self.num_groups
        return [
            (slice(k * cg, (k + 1) * cg), slice(k * fg, (k + 1) * fg))
            for k in range(self.num_groups)
        ]

    def _kernel(self, w: np.ndarray) -> np.ndarray:
        return w[:, :, ::-1, ::-1] if self.filter_flip else w

    def params(self) -> dict:
        """The geometry fields, to build a sibling op."""
        return dict(
            border_mode=self.border_mode, subsample=self.subsample, filter_flip=self.filter_flip,
            filter_dilation=self.filter_dilation, num_groups=self.num_groups,
        )


def _spatial_shape(v: Var) -> Var:
    """The (rows, cols) of a 4-d variable: a constant when static, else symbolic."""
    known = v.type.shape[2:]
    if None not in known:
        return constant(np.array(known, dtype="int64"))
    return v.shape[2:]


def _static_pair(v: Var) -> tuple:
    if isinstance(v.op, Constant):
        return tuple(int(n) for n in v.op.data)
    return (None, None)


def _check_shape_input(s: TensorType, what: str) -> None:
    if s.ndim != 1 or not is_discrete(s.dtype) or s.shape[0] not in (None, 2):
        raise TypeError(f"{what}: the shape input must be an integer vector of 2 sizes, got {s}")


@dataclass(frozen=True)
class Conv2d(_ConvOp):
    """Convolution (or cross-correlation when filter_flip=False) of a batch of images."""

    def infer_type(self, x: TensorType, w: TensorType) -> TensorType:
        self._check(x, w, "conv2d")
        out = _out_spatial(self, x.shape[2:], w.shape[2:])
        if any(n is not None and n <= 0 for n in out):
            raise ValueError(
                f"conv2d: the filters {_shape_text(w.shape)} (dilation {self.filter_dilation}) do "
                f"not fit in the input {_shape_text(x.shape)} with border_mode "
                f"{self.border_mode!r}"
            )
        return TensorType(upcast(x.dtype, w.dtype), (x.shape[0], w.shape[0]) + out)

    def perform(self, x, w, tensordot=np.tensordot):
        """The convolution; `tensordot` (numpy's unless a backend passes its own BLAS call)
        contracts the im2col windows with the filters."""
        dtype = upcast(x.dtype.name, w.dtype.name)
        x, w = x.astype(dtype, copy=False), self._kernel(w.astype(dtype, copy=False))
        self._runtime_check(x.shape, w.shape)
        pads, out_shape = self._runtime_out(x.shape, w.shape[2:], "conv2d")
        cols = _windows(_pad(x, pads), w.shape[2:], self, out_shape)
        out = np.empty((x.shape[0], w.shape[0]) + out_shape, dtype=dtype)
        for cs, fs in self._groups(x.shape[1], w.shape[0]):
            part = tensordot(cols[:, cs], w[fs], axes=([1, 2, 3], [1, 2, 3]))
            out[:, fs] = part.transpose(0, 3, 1, 2)
        return out

    def _runtime_check(self, x_shape, w_shape) -> None:
        image = TensorType("float64", x_shape)
        kernel = TensorType("float64", w_shape)
        self._check(image, kernel, "conv2d")

    def pullback(self, inputs, output, g):
        x, w = inputs
        dx = Var(Conv2dGradInputs(**self.params()), (w, g, _spatial_shape(x)))
        dw = Var(Conv2dGradWeights(**self.params()), (x, g, _spatial_shape(w)))
        return (dx, dw)


@dataclass(frozen=True)
class Conv2dGradInputs(_ConvOp):
    """The gradient of conv2d with respect to its input (a transposed convolution) from the
    filters, the output gradient and the input's (rows, cols)."""

    def make_type(self, inputs):
        w, gy, shape = inputs
        _check_shape_input(shape.type, "Conv2dGradInputs")
        if w.ndim != 4 or gy.ndim != 4:
            raise TypeError(f"Conv2dGradInputs: needs 4-d filters and gradient, got {w} and {gy}")
        c = None if w.type.shape[1] is None else w.type.shape[1] * self.num_groups
        rows, cols = _static_pair(shape)
        out_type = TensorType("float64", (gy.type.shape[0], c, rows, cols))
        self._check(out_type, w.type, "Conv2dGradInputs")
        return TensorType(upcast(w.dtype, gy.dtype), out_type.shape)

    def perform(self, w, gy, shape, tensordot=np.tensordot):
        """The input gradient; `tensordot` as for Conv2d.perform."""
        dtype = upcast(w.dtype.name, gy.dtype.name)
        w, gy = self._kernel(w.astype(dtype, copy=False)), gy.astype(dtype, copy=False)
        rows, cols = (int(n) for n in shape)
        x_shape = (gy.shape[0], w.shape[1] * self.num_groups, rows, cols)
        pads, out_shape = self._runtime_out(x_shape, w.shape[2:], "Conv2dGradInputs")
        _check_grad_shape(gy.shape, (x_shape[0], w.shape[0]) + out_shape, "Conv2dGradInputs")
        (pr, pc), (dr, dc), (sr, sc) = pads, self.filter_dilation, self.subsample
        dxp = np.zeros((x_shape[0], x_shape[1], rows + 2 * pr, cols + 2 * pc), dtype=dtype)
        ho, wo = out_shape
        for cs, fs in self._groups(x_shape[1], w.shape[0]):
            # (channels, kr, kc, batch, ho, wo): each kernel tap scatters one strided block
            parts = tensordot(w[fs], gy[:, fs], axes=([0], [1]))
            for i in range(w.shape[2]):
                for j in range(w.shape[3]):
                    r0, c0 = i * dr, j * dc
                    rows_hit = slice(r0, r0 + sr * (ho - 1) + 1, sr)
                    cols_hit = slice(c0, c0 + sc * (wo - 1) + 1, sc)
                    dxp[:, cs, rows_hit, cols_hit] += parts[:, i, j].transpose(1, 0, 2, 3)
        return np.ascontiguousarray(dxp[:, :, pr : pr + rows, pc : pc + cols])

    def pullback(self, inputs, output, g):
        w, gy, shape = inputs
        dw = Var(Conv2dGradWeights(**self.params()), (g, gy, _spatial_shape(w)))
        dgy = Var(Conv2d(**self.params()), (g, w))
        return (dw, dgy, None)


@dataclass(frozen=True)
class Conv2dGradWeights(_ConvOp):
    """The gradient of conv2d with respect to its filters, from the input, the output gradient
    and the filters' (rows, cols)."""

    def make_type(self, inputs):
        x, gy, shape = inputs
        _check_shape_input(shape.type, "Conv2dGradWeights")
        if x.ndim != 4 or gy.ndim != 4:
            raise TypeError(f"Conv2dGradWeights: needs 4-d input and gradient, got {x} and {gy}")
        c = x.type.shape[1]
        cg = None if c is None else c // self.num_groups
        out_shape = (gy.type.shape[1], cg) + _static_pair(shape)
        self._check(x.type, TensorType("float64", out_shape), "Conv2dGradWeights")
        return TensorType(upcast(x.dtype, gy.dtype), out_shape)

    def perform(self, x, gy, shape, tensordot=np.tensordot):
        """The filter gradient; `tensordot` as for Conv2d.perform."""
        dtype = upcast(x.dtype.name, gy.dtype.name)
        x, gy = x.astype(dtype, copy=False), gy.astype(dtype, copy=False)
        kernel = tuple(int(n) for n in shape)
        pads, out_shape = self._runtime_out(x.shape, kernel, "Conv2dGradWeights")
        _check_grad_shape(gy.shape[2:], out_shape, "Conv2dGradWeights")
        cols = _windows(_pad(x, pads), kernel, self, out_shape)
        f = gy.shape[1]
        dw = np.empty((f, x.shape[1] // self.num_groups) + kernel, dtype=dtype)
        for cs, fs in self._groups(x.shape[1], f):
            dw[fs] = tensordot(gy[:, fs], cols[:, cs], axes=([0, 2, 3], [0, 4, 5]))
        return np.ascontiguousarray(self._kernel(dw))

    def pullback(self, inputs, output, g):
        x, gy, shape = inputs
        dx = Var(Conv2dGradInputs(**self.params()), (g, gy, _spatial_shape(x)))
        dgy = Var(Conv2d(**self.params()), (x, g))
        return (dx, dgy, None)


def _check_grad_shape(given: tuple, expected: tuple, what: str) -> None:
    if tuple(given) != tuple(expected):
        raise ValueError(f"{what}: the output gradient has shape {given}, expected {expected}")


# --- the user function ----------------------------------------------------------------------------


def _int_pair(value, what: str, minimum: int) -> tuple:
    pair = (value, value) if isinstance(value, (int, np.integer)) else value
    try:
        pair = tuple(pair)
    except TypeError:
        raise TypeError(f"conv2d: {what} must be an int or a pair of ints, got {value!r}") from None
    ok = len(pair) == 2 and all(isinstance(v, (int, np.integer)) and v >= minimum for v in pair)
    if not ok:
        raise ValueError(f"conv2d: {what} must be a pair of ints >= {minimum}, got {value!r}")
    return tuple(int(v) for v in pair)


def _border_mode(border_mode) -> object:
    if isinstance(border_mode, str):
        if border_mode not in BORDER_MODES:
            raise ValueError(
                f"conv2d: border_mode must be 'valid', 'full', 'half', an int or a pair of ints, "
                f"got {border_mode!r}"
            )
        return (0, 0) if border_mode == "valid" else border_mode
    return _int_pair(border_mode, "border_mode (explicit padding)", 0)


def _with_hint(v: Var, hint, what: str) -> Var:
    """`v` with the static sizes of a shape hint (None entries keep what is known)."""
    if hint is None:
        return v
    from .shape import specify_shape

    hint = tuple(None if h is None else int(h) for h in hint)
    if len(hint) != 4:
        raise ValueError(f"conv2d: {what} must have 4 entries, got {hint}")
    for axis, (h, known) in enumerate(zip(hint, v.type.shape)):
        if h is not None and known is not None and h != known:
            raise ValueError(
                f"conv2d: {what} {_shape_text(hint)} disagrees with the static shape "
                f"{_shape_text(v.type.shape)} of {v} on axis {axis}"
            )
    return specify_shape(v, hint)


def conv2d(
    input,  # noqa: A002  (Theano's name)
    filters,
    input_shape=None,
    filter_shape=None,
    border_mode="valid",
    subsample=(1, 1),
    filter_flip: bool = True,
    image_shape=None,
    filter_dilation=(1, 1),
    num_groups: int = 1,
    **kwargs,
) -> Var:
    """Theano's `T.nnet.conv2d`: input (batch, channels, rows, cols), filters (out_channels,
    in_channels / num_groups, rows, cols); border_mode 'valid', 'full', 'half' or explicit
    padding; filter_flip=False gives cross-correlation."""
    for key in kwargs:  # the old conv.conv2d tuning knobs change nothing here
        if key not in ("unroll_batch", "unroll_kern", "unroll_patch", "openmp", "verbose"):
            raise TypeError(f"conv2d() got an unexpected keyword argument {key!r}")
    if image_shape is not None:
        if input_shape is not None:
            raise ValueError("conv2d: input_shape and image_shape cannot both be given")
        warnings.warn(
            "conv2d: the image_shape argument is deprecated; it is now called input_shape",
            DeprecationWarning,
            stacklevel=2,
        )
        input_shape = image_shape
    x, w = as_tensor_variable(input), as_tensor_variable(filters)
    op = Conv2d(**_geometry(border_mode, subsample, filter_flip, filter_dilation, num_groups))
    for v, what in ((x, "input"), (w, "filters")):
        if v.ndim != 4:
            raise TypeError(
                f"conv2d: {what} must be a 4-d tensor, got {v.describe()} of type {v.type}"
            )
    x = _with_hint(x, input_shape, "input_shape")
    w = _with_hint(w, filter_shape, "filter_shape")
    return Var(op, (x, w))


def _geometry(border_mode, subsample, filter_flip, filter_dilation, num_groups) -> dict:
    if not isinstance(num_groups, (int, np.integer)) or num_groups < 1:
        raise ValueError(f"conv2d: num_groups must be a positive int, got {num_groups!r}")
    return dict(
        border_mode=_border_mode(border_mode),
        subsample=_int_pair(subsample, "subsample", 1),
        filter_flip=bool(filter_flip),
        filter_dilation=_int_pair(filter_dilation, "filter_dilation", 1),
        num_groups=int(num_groups),
    )


def _size_pair(shape, what: str) -> Var:
    """The last two entries of a shape (ints or symbolic sizes) as an int64 vector."""
    if isinstance(shape, Var):
        return shape[-2:]
    sizes = list(shape)[-2:]
    if len(sizes) != 2:
        raise ValueError(f"conv2d: {what} needs at least 2 entries (rows, cols), got {shape!r}")
    if all(isinstance(s, (int, np.integer)) for s in sizes):
        return constant(np.array(sizes, dtype="int64"))
    from .. import tensor as T

    return T.stack([T.cast(as_tensor_variable(s), "int64") for s in sizes])


def conv2d_grad_wrt_inputs(output_grad, filters, input_shape, filter_shape=None,
                           border_mode="valid", subsample=(1, 1), filter_flip: bool = True,
                           filter_dilation=(1, 1), num_groups: int = 1) -> Var:
    """The gradient of conv2d with respect to its input, for an input of `input_shape`."""
    w = _with_hint(as_tensor_variable(filters), filter_shape, "filter_shape")
    params = _geometry(border_mode, subsample, filter_flip, filter_dilation, num_groups)
    shape = _size_pair(input_shape, "input_shape")
    return Var(Conv2dGradInputs(**params), (w, as_tensor_variable(output_grad), shape))


def conv2d_grad_wrt_weights(input, output_grad, filter_shape, input_shape=None,  # noqa: A002
                            border_mode="valid", subsample=(1, 1), filter_flip: bool = True,
                            filter_dilation=(1, 1), num_groups: int = 1) -> Var:
    """The gradient of conv2d with respect to its filters, for filters of `filter_shape`."""
    x = _with_hint(as_tensor_variable(input), input_shape, "input_shape")
    params = _geometry(border_mode, subsample, filter_flip, filter_dilation, num_groups)
    shape = _size_pair(filter_shape, "filter_shape")
    return Var(Conv2dGradWeights(**params), (x, as_tensor_variable(output_grad), shape))


def conv2d_transpose(input, filters, output_shape, filter_shape=None,  # noqa: A002
                     border_mode="valid", input_dilation=(1, 1), filter_flip: bool = True,
                     filter_dilation=(1, 1), num_groups: int = 1) -> Var:
    """The transposed convolution ("deconvolution"): the gradient of a conv2d with stride
    `input_dilation` whose input has `output_shape`, applied to `input`."""
    return conv2d_grad_wrt_inputs(
        input, filters, output_shape, filter_shape, border_mode, input_dilation, filter_flip,
        filter_dilation, num_groups,
    )
