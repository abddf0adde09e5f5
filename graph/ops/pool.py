"""2-d pooling of the last two axes (max, sum, average with or without padding), its gradients."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.lib.stride_tricks import as_strided

from ..type import TensorType
from ..var import Op, Var

__all__ = [
    "Pool2d", "MaxPool2dGrad", "AveragePool2dGrad", "MaxPool2dGradGrad", "pool_output_length",
]

MODES = ("max", "sum", "average_inc_pad", "average_exc_pad")


def pool_output_length(size, ws: int, stride: int, pad: int, ignore_border: bool):
    """Theano's output length along one pooled axis (None when the input length is unknown)."""
    if size is None:
        return None
    size = size + 2 * pad
    if ignore_border:
        return max(0, (size - ws) // stride + 1)
    if stride >= ws:
        return (size - 1) // stride + 1
    return max(0, (size - 1 - ws + stride) // stride) + 1


@dataclass(frozen=True)
class _PoolOp(Op):
    """The pooling geometry shared by the pool and its gradients."""

    ws: tuple = (2, 2)
    ignore_border: bool = True
    stride: tuple = (2, 2)
    pad: tuple = (0, 0)
    mode: str = "max"

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(
                f"pool_2d: mode must be one of {', '.join(MODES)}, got {self.mode!r}"
            )
        if self.pad != (0, 0) and not self.ignore_border:
            raise NotImplementedError("pool_2d: padding needs ignore_border=True, as in Theano")
        if any(p >= w for p, w in zip(self.pad, self.ws)):
            raise ValueError(
                f"pool_2d: the padding {self.pad} must be smaller than the window {self.ws}"
            )

    def _out(self, rows, cols) -> tuple:
        return tuple(
            pool_output_length(n, w, s, p, self.ignore_border)
            for n, w, s, p in zip((rows, cols), self.ws, self.stride, self.pad)
        )

    def _frame(self, x: np.ndarray, fill) -> tuple:
        """x as (n, rows, cols) in a padded frame big enough for every window; the output size."""
        rows, cols = x.shape[-2:]
        out = self._out(rows, cols)
        (pr, pc), (sr, sc), (wr, wc) = self.pad, self.stride, self.ws
        height = max(rows + 2 * pr, (out[0] - 1) * sr + wr)
        width = max(cols + 2 * pc, (out[1] - 1) * sc + wc)
        frame = np.full((int(np.prod(x.shape[:-2])), height, width), fill, dtype=x.dtype)
        frame[:, pr : pr + rows, pc : pc + cols] = x.reshape(-1, rows, cols)
        return frame, out

    def _windows(self, frame: np.ndarray, out: tuple) -> np.ndarray:
        """A read-only view (n, out_rows, out_cols, ws_rows, ws_cols) of the frame."""
        n, sh, sw = frame.strides
        strides = (n, sh * self.stride[0], sw * self.stride[1], sh, sw)
        return as_strided(frame, (frame.shape[0],) + out + self.ws, strides, writeable=False)

    def _counts(self, rows: int, cols: int, out: tuple) -> np.ndarray:
        """The number of entries each window averages over: (out_rows, out_cols)."""
        (pr, pc) = self.pad
        ones = np.zeros((1, rows + 2 * pr, cols + 2 * pc))
        if self.mode == "average_inc_pad":
            ones[:] = 1  # padding counts; the part past the padded input (ignore_border=False) not
        else:
            ones[:, pr : pr + rows, pc : pc + cols] = 1
        op = Pool2d(self.ws, self.ignore_border, self.stride, (0, 0), "sum")
        frame, _ = op._frame(ones, 0)
        return op._windows(frame, out).sum(axis=(3, 4))[0]

    def _taps(self, out: tuple):
        """For each window offset (i, j): the frame slice it reads at every output position."""
        (sr, sc) = self.stride
        for i in range(self.ws[0]):
            for j in range(self.ws[1]):
                yield (slice(None), slice(i, i + sr * (out[0] - 1) + 1, sr),
                       slice(j, j + sc * (out[1] - 1) + 1, sc))

    def _crop(self, frame: np.ndarray, shape: tuple) -> np.ndarray:
        (pr, pc), (rows, cols) = self.pad, shape[-2:]
        return np.ascontiguousarray(frame[:, pr : pr + rows, pc : pc + cols]).reshape(shape)

    def params(self) -> tuple:
        """The geometry fields, to build a sibling op."""
        return (self.ws, self.ignore_border, self.stride, self.pad, self.mode)


def _lowest(dtype: np.dtype):
    if dtype.kind == "f":
        return -np.inf
    if dtype.kind == "b":
        return False
    return np.iinfo(dtype).min


def _check_pool_input(x: TensorType, what: str) -> None:
    if x.ndim < 2:
        raise TypeError(f"{what}: needs an input with at least 2 dimensions, got {x}")


@dataclass(frozen=True)
class Pool2d(_PoolOp):
    """Pool the last two axes of a tensor with window `ws`, `stride` and zero `pad`."""

    def infer_type(self, x: TensorType) -> TensorType:
        _check_pool_input(x, "pool_2d")
        out = self._out(*x.shape[-2:])
        if 0 in out:
            raise ValueError(
                f"pool_2d: the window {self.ws} does not fit in the input {x} with padding "
                f"{self.pad} and ignore_border=True"
            )
        return TensorType(x.dtype, x.shape[:-2] + out)

    def perform(self, x):
        out_shape = x.shape[:-2] + self._out(*x.shape[-2:])
        if self.mode == "max":
            frame, out = self._frame(x, _lowest(x.dtype))
            return self._windows(frame, out).max(axis=(3, 4)).reshape(out_shape)
        frame, out = self._frame(x, 0)
        total = self._windows(frame, out).sum(axis=(3, 4))
        if self.mode != "sum":
            total = total / self._counts(*x.shape[-2:], out)
        return total.astype(x.dtype, copy=False).reshape(out_shape)

    def pullback(self, inputs, output, g):
        (x,) = inputs
        if self.mode == "max":
            return (Var(MaxPool2dGrad(*self.params()), (x, output, g)),)
        return (Var(AveragePool2dGrad(*self.params()), (x, g)),)


def _grad_type(x: TensorType, g: TensorType, op: _PoolOp, what: str) -> TensorType:
    _check_pool_input(x, what)
    if g.ndim != x.ndim:
        raise TypeError(f"{what}: the gradient {g} must have the input's {x.ndim} dimensions")
    return TensorType(x.dtype, x.shape)


@dataclass(frozen=True)
class MaxPool2dGrad(_PoolOp):
    """The gradient of max pooling: each window's gradient goes to every entry equal to its max."""

    def infer_type(self, x: TensorType, maxout: TensorType, g: TensorType) -> TensorType:
        return _grad_type(x, g, self, "MaxPool2dGrad")

    def perform(self, x, maxout, g):
        frame, out = self._frame(x, _lowest(x.dtype))
        lead = (frame.shape[0],)  # not -1: an empty pooled output leaves -1 undetermined
        m, gz = maxout.reshape(lead + out), g.reshape(lead + out)
        gx = np.zeros(frame.shape, dtype=np.result_type(x.dtype, g.dtype))
        for tap in self._taps(out):
            gx[tap] += np.where(frame[tap] == m, gz, 0)
        return self._crop(gx, x.shape).astype(x.dtype, copy=False)

    def pullback(self, inputs, output, gg):
        x, maxout, g = inputs
        # piecewise constant in x and maxout; linear in g with MaxPool2dGradGrad as adjoint
        return (None, None, Var(MaxPool2dGradGrad(*self.params()), (x, maxout, gg)))


@dataclass(frozen=True)
class MaxPool2dGradGrad(_PoolOp):
    """The adjoint of MaxPool2dGrad in its gradient: per window, the sum of `gg` at its maxima."""

    def infer_type(self, x: TensorType, maxout: TensorType, gg: TensorType) -> TensorType:
        _check_pool_input(x, "MaxPool2dGradGrad")
        return TensorType(gg.dtype, maxout.shape)

    def perform(self, x, maxout, gg):
        frame, out = self._frame(x, _lowest(x.dtype))
        ggframe, _ = self._frame(gg, 0)
        m = maxout.reshape((frame.shape[0],) + out)
        result = np.zeros(m.shape, dtype=gg.dtype)
        for tap in self._taps(out):
            result += np.where(frame[tap] == m, ggframe[tap], 0).astype(gg.dtype, copy=False)
        return result.reshape(maxout.shape)

    def pullback(self, inputs, output, g):
        x, maxout, gg = inputs
        return (None, None, Var(MaxPool2dGrad(*self.params()), (x, maxout, g)))


@dataclass(frozen=True)
class AveragePool2dGrad(_PoolOp):
    """The gradient of sum and average pooling: each window's gradient spread over its entries."""

    def infer_type(self, x: TensorType, g: TensorType) -> TensorType:
        return _grad_type(x, g, self, "AveragePool2dGrad")

    def perform(self, x, g):
        rows, cols = x.shape[-2:]
        out = self._out(rows, cols)
        gz = g.reshape((int(np.prod(x.shape[:-2])),) + out).astype(np.result_type(x.dtype, g.dtype), copy=False)
        if self.mode != "sum":
            gz = gz / self._counts(rows, cols, out)
        frame, _ = self._frame(np.zeros(x.shape, dtype=gz.dtype), 0)
        for tap in self._taps(out):
            frame[tap] += gz
        return self._crop(frame, x.shape).astype(x.dtype, copy=False)

    def pullback(self, inputs, output, gg):
        # linear in g; its adjoint is the forward pooling itself
        return (None, Var(Pool2d(*self.params()), (gg,)))

