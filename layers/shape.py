"""Layers that reshape or combine tensors: Reshape, Flatten, Dimshuffle, Slice, Concat, merges."""

from __future__ import annotations

from functools import reduce

import numpy as np

from ..graph import tensor as T
from ..graph.var import Var
from .base import Layer, MergeLayer

__all__ = [
    "ReshapeLayer", "reshape", "FlattenLayer", "flatten", "DimshuffleLayer", "dimshuffle",
    "SliceLayer", "PadLayer", "pad", "ConcatLayer", "concat", "ElemwiseMergeLayer",
    "ElemwiseSumLayer",
]


class ReshapeLayer(Layer):
    """Reshapes its input; `shape` holds ints, one -1 (inferred) and `[i]` (input axis i's size).

    >>> from theanine.layers import InputLayer, ReshapeLayer
    >>> ReshapeLayer(InputLayer((None, 6, 4)), ([0], 2, -1)).output_shape
    (None, 2, 12)
    """

    def __init__(self, incoming, shape, **kwargs) -> None:
        super().__init__(incoming, **kwargs)
        shape = tuple(shape)
        for entry in shape:
            if isinstance(entry, list):
                if len(entry) != 1 or not isinstance(entry[0], int) or entry[0] < 0:
                    raise ValueError(
                        f"ReshapeLayer: a reference must be [i] with an int i >= 0, got {entry!r} "
                        f"in {shape}"
                    )
            elif isinstance(entry, Var):
                if entry.ndim != 0 or entry.dtype[:3] not in ("int", "uin"):
                    raise ValueError(
                        f"ReshapeLayer: a symbolic size must be an integer scalar, got {entry} "
                        f"in {shape}"
                    )
            elif not isinstance(entry, (int, np.integer)) or entry < -1 or entry == 0:
                raise ValueError(
                    f"ReshapeLayer: shape entries must be positive ints, -1 or [i], got {entry!r} "
                    f"in {shape}"
                )
        if sum(1 for s in shape if isinstance(s, (int, np.integer)) and s == -1) > 1:
            raise ValueError(f"ReshapeLayer: shape {shape} has more than one -1")
        self.shape = shape
        self.get_output_shape_for(self.input_shape)  # checks sizes at construction

    def get_output_shape_for(self, input_shape: tuple) -> tuple:
        """The static output shape; None where a size depends on unknown input sizes."""
        output, out_known, in_known = [], [], list(input_shape)
        for entry in self.shape:
            if isinstance(entry, list):
                if entry[0] >= len(input_shape):
                    raise ValueError(
                        f"ReshapeLayer: shape {self.shape} refers to [{entry[0]}] but the input "
                        f"shape {input_shape} has {len(input_shape)} axes"
                    )
                size = input_shape[entry[0]]
                output.append(size)
                # a referenced unknown size appears on both sides: it cancels out of the size check
                if size is None and in_known[entry[0]] is None:
                    in_known[entry[0]] = 1
                    size = 1
                out_known.append(size)
            elif isinstance(entry, Var):
                output.append(None)
                out_known.append(None)
            else:
                output.append(int(entry))
                out_known.append(int(entry))
        in_size = None if None in in_known else int(np.prod(in_known))
        rest = [s for s in out_known if s != -1]
        out_size = None if None in rest else int(np.prod(rest))
        if -1 in output:
            axis = output.index(-1)
            if in_size is None or out_size is None:
                output[axis] = None
                return tuple(output)
            if in_size % out_size:
                raise ValueError(
                    f"ReshapeLayer: input shape {input_shape} cannot be reshaped to {self.shape}: "
                    f"{in_size} values do not divide into parts of {out_size}"
                )
            output[axis] = in_size // out_size
            out_size = in_size
        if in_size is not None and out_size is not None and in_size != out_size:
            raise ValueError(
                f"ReshapeLayer: input shape {input_shape} ({in_size} values) cannot be reshaped to "
                f"{self.shape} ({out_size} values)"
            )
        return tuple(output)

    def get_output_for(self, input: Var, **kwargs) -> Var:  # noqa: A002
        """input.reshape(shape) with [i] replaced by input.shape[i]."""
        target = [input.shape[s[0]] if isinstance(s, list) else s for s in self.shape]
        return input.reshape(tuple(target))


reshape = ReshapeLayer


class FlattenLayer(Layer):
    """Flattens the trailing axes so that the output has `outdim` axes.

    >>> from theanine.layers import InputLayer, FlattenLayer
    >>> FlattenLayer(InputLayer((None, 3, 4, 5))).output_shape
    (None, 60)
    """

    def __init__(self, incoming, outdim: int = 2, **kwargs) -> None:
        super().__init__(incoming, **kwargs)
        if outdim < 1:
            raise ValueError(f"FlattenLayer: outdim must be >= 1, got {outdim}")
        if outdim > len(self.input_shape):
            raise ValueError(
                f"FlattenLayer: outdim={outdim} exceeds the input's {len(self.input_shape)} axes"
            )
        self.outdim = outdim

    def get_output_shape_for(self, input_shape: tuple) -> tuple:
        """The first outdim - 1 sizes, then the product of the rest (None if any is unknown)."""
        rest = input_shape[self.outdim - 1 :]
        last = None if None in rest else int(np.prod(rest))
        return tuple(input_shape[: self.outdim - 1]) + (last,)

    def get_output_for(self, input: Var, **kwargs) -> Var:  # noqa: A002
        """input.flatten(outdim)."""
        return input.flatten(self.outdim)


flatten = FlattenLayer


class DimshuffleLayer(Layer):
    """Permutes axes and inserts broadcastable ones ('x'), as Var.dimshuffle.

    >>> from theanine.layers import InputLayer, DimshuffleLayer
    >>> DimshuffleLayer(InputLayer((2, 3, 4)), (2, "x", 0, 1)).output_shape
    (4, 1, 2, 3)
    """

    def __init__(self, incoming, pattern, **kwargs) -> None:
        super().__init__(incoming, **kwargs)
        pattern = tuple(pattern)
        axes = [p for p in pattern if p != "x"]
        if not all(isinstance(p, (int, np.integer)) for p in axes):
            raise ValueError(f"DimshuffleLayer: pattern entries must be ints or 'x', got {pattern}")
        if len(set(axes)) != len(axes):
            raise ValueError(f"DimshuffleLayer: pattern {pattern} uses an input axis twice or more")
        self.pattern = pattern
        self.get_output_shape_for(self.input_shape)

    def get_output_shape_for(self, input_shape: tuple) -> tuple:
        """The permuted sizes, 1 for each 'x'; dropped axes must have size 1."""
        ndim = len(input_shape)
        for p in self.pattern:
            if p != "x" and not 0 <= p < ndim:
                raise ValueError(
                    f"DimshuffleLayer: pattern {self.pattern} refers to axis {p} of a "
                    f"{ndim}-d input"
                )
        for axis in set(range(ndim)) - set(self.pattern):
            if input_shape[axis] not in (1, None):
                raise ValueError(
                    f"DimshuffleLayer: pattern {self.pattern} drops axis {axis} of size "
                    f"{input_shape[axis]} (input shape {input_shape}); only axes of size 1 can be "
                    "dropped"
                )
        return tuple(1 if p == "x" else input_shape[p] for p in self.pattern)

    def get_output_for(self, input: Var, **kwargs) -> Var:  # noqa: A002
        """input.dimshuffle(pattern)."""
        return input.dimshuffle(*self.pattern)


dimshuffle = DimshuffleLayer


class SliceLayer(Layer):
    """Selects `indices` (an int or a slice) along `axis`.

    >>> from theanine.layers import InputLayer, SliceLayer
    >>> SliceLayer(InputLayer((None, 7, 5)), slice(1, 6, 2), axis=1).output_shape
    (None, 3, 5)
    """

    def __init__(self, incoming, indices, axis: int = -1, **kwargs) -> None:
        super().__init__(incoming, **kwargs)
        if not isinstance(indices, (int, np.integer, slice)):
            raise TypeError(f"SliceLayer: indices must be an int or a slice, got {indices!r}")
        self.slice, self.axis = indices, axis

    def get_output_shape_for(self, input_shape: tuple) -> tuple:
        """The input shape with `axis` removed (int) or shortened (slice)."""
        shape = list(input_shape)
        axis = self.axis % len(shape)
        if isinstance(self.slice, slice):
            if shape[axis] is not None:
                shape[axis] = len(range(*self.slice.indices(shape[axis])))
        else:
            del shape[axis]
        return tuple(shape)

    def get_output_for(self, input: Var, **kwargs) -> Var:  # noqa: A002
        """input[..., indices, ...] along axis."""
        axis = self.axis % input.ndim
        return input[(slice(None),) * axis + (self.slice,)]


def _pad_widths(width, naxes: int) -> list[tuple[int, int]]:
    """(before, after) for each padded axis from an int, a list of ints, or a list of pairs."""
    if isinstance(width, (int, np.integer)):
        return [(int(width), int(width))] * naxes
    widths = [(int(w), int(w)) if isinstance(w, (int, np.integer)) else tuple(w) for w in width]
    if len(widths) > naxes or any(len(w) != 2 or min(w) < 0 for w in widths):
        raise ValueError(
            f"PadLayer: width must be an int, or up to {naxes} ints or (before, after) pairs of "
            f"non-negative ints, got {width!r}"
        )
    return widths


class PadLayer(Layer):
    """Pads the axes after the first `batch_ndim` with `val`; `width` is an int (both sides of every
    axis), or one int or (before, after) pair per axis.

    >>> from theanine.layers import InputLayer, PadLayer
    >>> PadLayer(InputLayer((None, 3, 5, 6)), width=[(1, 2), 3]).output_shape
    (None, 3, 8, 12)
    """

    def __init__(self, incoming, width, val=0, batch_ndim: int = 2, **kwargs) -> None:
        super().__init__(incoming, **kwargs)
        self.val, self.batch_ndim = val, batch_ndim
        self.widths = _pad_widths(width, len(self.input_shape) - batch_ndim)
        self.width = width

    def get_output_shape_for(self, input_shape: tuple) -> tuple:
        """Each padded size grows by before + after (unknown stays None)."""
        shape = list(input_shape)
        for k, (before, after) in enumerate(self.widths):
            axis = self.batch_ndim + k
            if shape[axis] is not None:
                shape[axis] += before + after
        return tuple(shape)

    def get_output_for(self, input: Var, **kwargs) -> Var:  # noqa: A002
        """A `val`-filled tensor of the padded shape with the input written in the middle."""
        sizes, region = [], []
        for axis in range(input.ndim):
            k = axis - self.batch_ndim
            before, after = self.widths[k] if 0 <= k < len(self.widths) else (0, 0)
            if before + after:
                sizes.append(input.shape[axis] + (before + after))
                region.append(slice(before, before + input.shape[axis]))
            else:
                sizes.append(input.shape[axis])
                region.append(slice(None))
        filled = T.alloc(np.asarray(self.val, dtype=input.dtype), *sizes)
        return T.set_subtensor(filled[tuple(region)], input)


pad = PadLayer


def _merge_sizes(sizes: list, what: str, shapes: list):
    known = {s for s in sizes if s is not None}
    if len(known) > 1:
        raise ValueError(f"{what}: input shapes {shapes} disagree ({sorted(known)})")
    return known.pop() if known else None


class ConcatLayer(MergeLayer):
    """Concatenates its inputs along `axis`; the other axes must agree.

    >>> from theanine.layers import InputLayer, ConcatLayer
    >>> ConcatLayer([InputLayer((None, 3)), InputLayer((None, 4))]).output_shape
    (None, 7)
    """

    def __init__(self, incomings, axis: int = 1, cropping=None, **kwargs) -> None:
        super().__init__(incomings, **kwargs)
        if cropping is not None:
            raise NotImplementedError("ConcatLayer: cropping is not supported yet; crop the inputs")
        self.axis = axis
        self.get_output_shape_for(self.input_shapes)

    def get_output_shape_for(self, input_shapes: list) -> tuple:
        """Sizes along `axis` add up (None if any is unknown); the others must agree."""
        ndims = {len(s) for s in input_shapes}
        if len(ndims) != 1:
            raise ValueError(f"ConcatLayer: inputs have different numbers of axes: {input_shapes}")
        ndim = ndims.pop()
        axis = self.axis % ndim
        output = []
        for dim, sizes in enumerate(zip(*input_shapes)):
            if dim == axis:
                output.append(None if None in sizes else sum(sizes))
            else:
                what = f"ConcatLayer (axis {self.axis}), axis {dim}"
                output.append(_merge_sizes(list(sizes), what, input_shapes))
        return tuple(output)

    def get_output_for(self, inputs: list, **kwargs) -> Var:
        """T.concatenate(inputs, axis)."""
        return T.concatenate(inputs, axis=self.axis)


concat = ConcatLayer


class ElemwiseMergeLayer(MergeLayer):
    """Combines same-shaped inputs with a binary `merge_function` (T.add, T.mul, T.maximum ...).

    >>> from theanine.layers import InputLayer, ElemwiseMergeLayer
    >>> import theanine.tensor as T
    >>> ElemwiseMergeLayer([InputLayer((None, 3)), InputLayer((2, 3))], T.maximum).output_shape
    (2, 3)
    """

    def __init__(self, incomings, merge_function, cropping=None, **kwargs) -> None:
        super().__init__(incomings, **kwargs)
        if cropping is not None:
            raise NotImplementedError(f"{type(self).__name__}: cropping is not supported yet")
        self.merge_function = merge_function
        self.get_output_shape_for(self.input_shapes)

    def get_output_shape_for(self, input_shapes: list) -> tuple:
        """The common shape; unknown sizes take a known size from another input."""
        if len({len(s) for s in input_shapes}) != 1:
            raise ValueError(
                f"{type(self).__name__}: inputs have different numbers of axes: {input_shapes}"
            )
        return tuple(
            _merge_sizes(list(sizes), f"{type(self).__name__}, axis {dim}", input_shapes)
            for dim, sizes in enumerate(zip(*input_shapes))
        )

    def get_output_for(self, inputs: list, **kwargs) -> Var:
        """merge_function folded over the inputs, left to right."""
        return reduce(self.merge_function, inputs)


class ElemwiseSumLayer(ElemwiseMergeLayer):
    """Sums its inputs, each scaled by its coefficient (`coeffs`: one number or one per input).

    >>> from theanine.layers import InputLayer, ElemwiseSumLayer
    >>> a, b = InputLayer((None, 3)), InputLayer((None, 3))
    >>> ElemwiseSumLayer([a, b], coeffs=[1, -1]).output_shape
    (None, 3)
    """

    def __init__(self, incomings, coeffs=1, cropping=None, **kwargs) -> None:
        super().__init__(incomings, merge_function=T.add, cropping=cropping, **kwargs)
        if isinstance(coeffs, (list, tuple)):
            if len(coeffs) != len(incomings):
                raise ValueError(
                    f"ElemwiseSumLayer: got {len(coeffs)} coeffs for {len(incomings)} inputs"
                )
            self.coeffs = list(coeffs)
        else:
            self.coeffs = [coeffs] * len(incomings)

    def get_output_for(self, inputs: list, **kwargs) -> Var:
        """sum(coeff * input)."""
        # a coefficient of 1 adds no multiplication to the graph
        scaled = [
            x if isinstance(c, (int, float)) and c == 1 else x * c
            for x, c in zip(inputs, self.coeffs)
        ]
        return reduce(T.add, scaled)
