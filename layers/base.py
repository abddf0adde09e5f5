"""The layer base classes (Lasagne's `lasagne.layers.base`): Layer, MergeLayer and InputLayer."""

from __future__ import annotations

from collections import OrderedDict

from ..graph.config import config
from ..graph.type import TensorType
from ..graph.var import Var, input_var as _input_var
from .utils import collect_shared_vars, create_param

__all__ = ["Layer", "MergeLayer", "InputLayer"]


def _check_shape(shape, who: str) -> tuple:
    try:
        shape = tuple(shape)
    except TypeError:
        raise TypeError(f"{who}: expected a shape tuple, got {shape!r}") from None
    if any(s is not None and (not isinstance(s, int) or s <= 0) for s in shape):
        raise ValueError(f"{who}: every dimension must be a positive int or None, got {shape}")
    return shape


class Layer:
    """A layer with one input: parameters plus `get_output_for` and `get_output_shape_for`."""

    def __init__(self, incoming, name: str | None = None) -> None:
        if isinstance(incoming, tuple):
            self.input_shape = _check_shape(incoming, f"{type(self).__name__} {name or ''}".strip())
            self.input_layer = None
        elif isinstance(incoming, Layer):
            self.input_shape = incoming.output_shape
            self.input_layer = incoming
        else:
            raise TypeError(
                f"{type(self).__name__}: incoming must be a Layer or a shape tuple, "
                f"got {incoming!r:.60}"
            )
        self.name = name
        self.params: OrderedDict = OrderedDict()
        self.get_output_kwargs: list[str] = []

    @property
    def output_shape(self) -> tuple:
        """The static output shape: ints for known sizes, None for sizes known at run time only."""
        shape = tuple(self.get_output_shape_for(self.input_shape))
        if any(isinstance(s, Var) for s in shape):
            raise ValueError(
                f"{type(self).__name__}.get_output_shape_for returned a symbolic shape {shape}; "
                "shapes must hold ints and None only"
            )
        return shape

    def get_params(self, unwrap_shared: bool = True, **tags) -> list:
        """The parameters, filtered by tags: `trainable=True` keeps those tagged trainable,
        `regularizable=False` drops those tagged regularizable."""
        result = list(self.params)
        wanted = {tag for tag, value in tags.items() if value}
        unwanted = {tag for tag, value in tags.items() if not value}
        result = [p for p in result if wanted <= self.params[p] and not (unwanted & self.params[p])]
        return collect_shared_vars(result) if unwrap_shared else result

    def get_output_shape_for(self, input_shape: tuple) -> tuple:
        """The output shape for `input_shape` (unchanged unless a subclass says otherwise)."""
        return input_shape

    def get_output_for(self, input: Var, **kwargs) -> Var:  # noqa: A002
        """The symbolic output for the symbolic `input`; every layer defines it."""
        raise NotImplementedError(f"{type(self).__name__} does not define get_output_for")

    def add_param(self, spec, shape, name: str | None = None, **tags) -> Var:
        """Create a parameter from `spec` (initializer, array, shared variable or callable), record
        it with its tags (trainable and regularizable default to True) and return it."""
        if name is not None and self.name is not None:
            name = f"{self.name}.{name}"
        tags.setdefault("trainable", True)
        tags.setdefault("regularizable", True)
        param = create_param(spec, shape, name)
        self.params[param] = {tag for tag, value in tags.items() if value}
        return param

    def __repr__(self) -> str:
        label = f" {self.name!r}" if self.name else ""
        return f"<{type(self).__name__}{label} {self.output_shape}>"


class MergeLayer(Layer):
    """A layer with several inputs: `get_output_for(inputs)` receives a list of expressions."""

    def __init__(self, incomings, name: str | None = None) -> None:
        self.input_shapes, self.input_layers = [], []
        for incoming in incomings:
            if isinstance(incoming, tuple):
                self.input_shapes.append(_check_shape(incoming, type(self).__name__))
                self.input_layers.append(None)
            elif isinstance(incoming, Layer):
                self.input_shapes.append(incoming.output_shape)
                self.input_layers.append(incoming)
            else:
                raise TypeError(
                    f"{type(self).__name__}: each incoming must be a Layer or a shape tuple, "
                    f"got {incoming!r:.60}"
                )
        self.name = name
        self.params = OrderedDict()
        self.get_output_kwargs = []

    @property
    def output_shape(self) -> tuple:
        """The static output shape computed from every input shape."""
        shape = tuple(self.get_output_shape_for(self.input_shapes))
        if any(isinstance(s, Var) for s in shape):
            raise ValueError(
                f"{type(self).__name__}.get_output_shape_for returned a symbolic shape {shape}"
            )
        return shape

    def get_output_shape_for(self, input_shapes: list) -> tuple:
        """The output shape for the list of input shapes; every merge layer defines it."""
        raise NotImplementedError(f"{type(self).__name__} does not define get_output_shape_for")

    def get_output_for(self, inputs: list, **kwargs) -> Var:
        """The symbolic output for the list of input expressions; every merge layer defines it."""
        raise NotImplementedError(f"{type(self).__name__} does not define get_output_for")


class InputLayer(Layer):
    """The network's entry: holds a symbolic input of the given shape (None for variable sizes).

    >>> from theanine.layers import InputLayer
    >>> l_in = InputLayer((None, 784))
    >>> l_in.output_shape, l_in.input_var.ndim
    ((None, 784), 2)
    """

    def __init__(
        self, shape, input_var: Var | None = None, name: str | None = None, **kwargs
    ) -> None:
        self.shape = _check_shape(shape, f"InputLayer {name or ''}".strip())
        ndim = len(self.shape)
        if input_var is None:
            # as Lasagne: only sizes of 1 are static (broadcastable); others may vary between calls
            static = tuple(1 if s == 1 else None for s in self.shape)
            label = f"{name}.input" if name else "input"
            input_var = _input_var(TensorType(config.floatX, static), label)
        elif not isinstance(input_var, Var):
            raise TypeError(
                f"InputLayer: input_var must be a symbolic variable, got {input_var!r:.60}"
            )
        elif input_var.ndim != ndim:
            raise ValueError(
                f"InputLayer: shape {self.shape} has {ndim} dimensions but input_var {input_var} "
                f"has {input_var.ndim}"
            )
        self.input_var = input_var
        self.name = name
        self.params = OrderedDict()
        self.get_output_kwargs = []
        self.input_layer = None
        self.input_shape = self.shape

    @property
    def output_shape(self) -> tuple:
        """The shape given at construction."""
        return self.shape
