"""Recurrent layers (Lasagne's `lasagne.layers.recurrent`): custom, vanilla, LSTM, GRU, on scan."""

from __future__ import annotations

import numpy as np

from ..compiler.scan import scan
from ..graph import tensor as T
from ..graph.var import Var
from . import init, nonlinearities
from .base import InputLayer, Layer, MergeLayer
from .dense import DenseLayer
from .helper import get_all_params, get_output

__all__ = ["CustomRecurrentLayer", "RecurrentLayer", "Gate", "LSTMLayer", "GRULayer"]


def _swap_batch_time(x: Var) -> Var:
    """(batch, time, ...) <-> (time, batch, ...): scan loops over the leading axis."""
    return x.dimshuffle(1, 0, *range(2, x.ndim))


class _RecurrentBase(MergeLayer):
    """What every recurrent layer shares: the incomings (input, mask, initial-state layers), the
    options, the output shape, the initial states and the loop (scan or unrolled)."""

    def __init__(self, incoming, initial_specs: dict, mask_input=None, backwards: bool = False,
                 learn_init: bool = False, gradient_steps: int = -1, grad_clipping: float = 0,
                 unroll_scan: bool = False, precompute_input: bool = True,
                 only_return_final: bool = False, **kwargs) -> None:
        incomings = [incoming]
        self.mask_incoming_index = -1
        if mask_input is not None:
            incomings.append(mask_input)
            self.mask_incoming_index = len(incomings) - 1
        # initial states given as layers become extra incomings (Lasagne's hid_init=Layer)
        self._init_index = {}
        for key, spec in initial_specs.items():
            if isinstance(spec, Layer):
                incomings.append(spec)
                self._init_index[key] = len(incomings) - 1
        super().__init__(incomings, **kwargs)
        who = f"{type(self).__name__}{f' {self.name!r}' if self.name else ''}"
        self._who = who
        input_shape = self.input_shapes[0]
        if len(input_shape) < 3:
            raise ValueError(
                f"{who}: the input must be (batch, time, features...), at least 3-d; got shape "
                f"{input_shape}"
            )
        if mask_input is not None and len(self.input_shapes[self.mask_incoming_index]) != 2:
            raise ValueError(
                f"{who}: mask_input must be a (batch, time) layer, got shape "
                f"{self.input_shapes[self.mask_incoming_index]}"
            )
        if unroll_scan and gradient_steps != -1:
            raise ValueError(
                f"{who}: gradient_steps must be -1 with unroll_scan=True, got {gradient_steps}"
            )
        if unroll_scan and input_shape[1] is None:
            raise ValueError(
                f"{who}: unroll_scan=True needs a known sequence length, but the input shape "
                f"{input_shape} has None on the time axis"
            )
        if grad_clipping < 0:
            raise ValueError(f"{who}: grad_clipping must be >= 0 (0: off), got {grad_clipping}")
        self.learn_init, self.backwards = learn_init, backwards
        self.gradient_steps, self.grad_clipping = gradient_steps, grad_clipping
        self.unroll_scan, self.precompute_input = unroll_scan, precompute_input
        self.only_return_final = only_return_final

    def _num_inputs(self) -> int:
        trailing = self.input_shapes[0][2:]
        if any(s is None for s in trailing):
            raise ValueError(
                f"{self._who}: the number of input features must be known; got input shape "
                f"{self.input_shapes[0]}"
            )
        return int(np.prod(trailing))

    def _add_initial(self, key: str, spec, shape: tuple) -> Var | None:
        """The learnable (if learn_init) initial state parameter, or None for a layer."""
        if key in self._init_index:
            return None
        return self.add_param(spec, shape, name=key, trainable=self.learn_init,
                              regularizable=False)

    def _state_shape(self) -> tuple:
        return (self.num_units,)

    def get_output_shape_for(self, input_shapes: list) -> tuple:
        """(batch, time) + state shape, or (batch,) + state shape with only_return_final."""
        shape = input_shapes[0]
        if self.only_return_final:
            return (shape[0],) + self._state_shape()
        return (shape[0], shape[1]) + self._state_shape()

    def _split_inputs(self, inputs: list) -> tuple[Var, Var | None]:
        """The time-major input and the (time, batch, 1) mask (or None)."""
        sequence = _swap_batch_time(inputs[0])
        mask = None
        if self.mask_incoming_index > 0:
            mask = inputs[self.mask_incoming_index].dimshuffle(1, 0, "x")
        return sequence, mask

    def _initial(self, key: str, inputs: list, param: Var | None, num_batch: Var,
                 dtype: str) -> Var:
        """The initial state for every sequence of the batch, cast to the state's dtype."""
        if key in self._init_index:
            state = inputs[self._init_index[key]]
        else:
            # one learned (or constant) row repeated over the batch, as Lasagne does; an
            # n-d state (1, c, h, w) is read as (c, h, 1, w) so that dot sums its size-1 axis
            if param.ndim > 2:
                param = param.dimshuffle(list(range(1, param.ndim - 1)) + [0, param.ndim - 1])
            state = T.dot(T.ones((num_batch, 1), dtype=param.dtype), param)
        return state if state.dtype == dtype else T.cast(state, dtype)

    def _clip(self, x: Var) -> Var:
        """x with its gradient clipped to [-grad_clipping, grad_clipping] (when set)."""
        if not self.grad_clipping:
            return x
        return T.grad_clip(x, -self.grad_clipping, self.grad_clipping)

    def _loop(self, step, sequences: list, initial: list, non_sequences: list) -> list:
        """Every state over time, time-major, in the order computed (reversed when backwards)."""
        if self.unroll_scan:
            length = self.input_shapes[0][1]
            order = range(length - 1, -1, -1) if self.backwards else range(length)
            states, history = list(initial), [[] for _ in initial]
            for t in order:
                result = step(*[s[t] for s in sequences], *states, *non_sequences)
                states = list(result) if isinstance(result, (list, tuple)) else [result]
                for past, state in zip(history, states):
                    past.append(state)
            return [T.stack(past, axis=0) for past in history]
        outputs, _ = scan(step, sequences=sequences, outputs_info=initial,
                          non_sequences=non_sequences, go_backwards=self.backwards,
                          truncate_gradient=self.gradient_steps, strict=True, return_list=True)
        return outputs

    def _finish(self, states: Var) -> Var:
        """The last state, or every state in time order, batch-major."""
        if self.only_return_final:
            return states[-1]
        states = _swap_batch_time(states)
        return states[:, ::-1] if self.backwards else states

    def _masked(self, step, n_states: int, n_non_sequences: int):
        """A step taking (inputs..., mask_n, states...) keeping the old states where mask is 0."""

        def masked_step(*args):
            k = len(args) - n_states - n_non_sequences - 1
            mask_n = args[k]
            previous = args[k + 1 : k + 1 + n_states]
            result = step(*args[:k], *args[k + 1 :])
            result = list(result) if isinstance(result, (list, tuple)) else [result]
            kept = []
            for new, old in zip(result, previous):
                # a (batch, 1) mask; states with more axes (a convolutional hidden_to_hidden)
                # need it padded further
                keep = T.shape_padright(mask_n, new.ndim - 2) if new.ndim > 2 else mask_n
                kept.append(T.switch(keep, new, old))
            return kept if n_states > 1 else kept[0]

        return masked_step


class CustomRecurrentLayer(_RecurrentBase):
    """A recurrent layer from two layers: h_t = nonlinearity(input_to_hidden(x_t) +
    hidden_to_hidden(h_{t-1})); input (batch, time, features...), output (batch, time, units...).

    >>> from theanine.layers import InputLayer, DenseLayer, CustomRecurrentLayer
    >>> l_in = InputLayer((None, 5, 4))
    >>> l_ih = DenseLayer(InputLayer((None, 4)), 6, nonlinearity=None)
    >>> l_hh = DenseLayer(InputLayer((None, 6)), 6, nonlinearity=None, b=None)
    >>> CustomRecurrentLayer(l_in, l_ih, l_hh).output_shape
    (None, 5, 6)
    """

    def __init__(self, incoming, input_to_hidden: Layer, hidden_to_hidden: Layer,
                 nonlinearity=nonlinearities.rectify, hid_init=init.Constant(0.0),
                 backwards: bool = False, learn_init: bool = False, gradient_steps: int = -1,
                 grad_clipping: float = 0, unroll_scan: bool = False,
                 precompute_input: bool = True, mask_input=None, only_return_final: bool = False,
                 **kwargs) -> None:
        super().__init__(incoming, {"hid_init": hid_init}, mask_input, backwards, learn_init,
                         gradient_steps, grad_clipping, unroll_scan, precompute_input,
                         only_return_final, **kwargs)
        self.input_to_hidden, self.hidden_to_hidden = input_to_hidden, hidden_to_hidden
        in_shape = input_to_hidden.output_shape
        hid_in_shape = _input_shape_of(hidden_to_hidden)
        hid_shape = hidden_to_hidden.output_shape
        if tuple(in_shape[1:]) != tuple(hid_shape[1:]):
            raise ValueError(
                f"{self._who}: input_to_hidden and hidden_to_hidden must give the same shape past "
                f"the batch axis; got {in_shape} and {hid_shape}"
            )
        if hid_in_shape is not None and tuple(hid_in_shape[1:]) != tuple(hid_shape[1:]):
            raise ValueError(
                f"{self._who}: hidden_to_hidden must map the hidden state to its own shape; its "
                f"input shape is {hid_in_shape}, its output shape {hid_shape}"
            )
        self._hidden_shape = tuple(hid_shape[1:])
        self.num_units = self._hidden_shape[0] if len(self._hidden_shape) == 1 else None
        self.nonlinearity = nonlinearities.identity if nonlinearity is None else nonlinearity
        self.hid_init = self._add_initial("hid_init", hid_init, (1,) + self._hidden_shape)

    def _state_shape(self) -> tuple:
        return self._hidden_shape

    def get_params(self, unwrap_shared: bool = True, **tags) -> list:
        """The layer's own parameters (hid_init), then those of input_to_hidden and
        hidden_to_hidden."""
        params = super().get_params(unwrap_shared=unwrap_shared, **tags)
        params += get_all_params(self.input_to_hidden, unwrap_shared=unwrap_shared, **tags)
        params += get_all_params(self.hidden_to_hidden, unwrap_shared=unwrap_shared, **tags)
        return params

    def get_output_for(self, inputs: list, **kwargs) -> Var:
        """The hidden states (batch, time, units...), or the last one with only_return_final."""
        sequence, mask = self._split_inputs(inputs)
        num_steps, num_batch = sequence.shape[0], sequence.shape[1]
        if self.precompute_input:
            # one big product over every time step instead of one per step
            flat = T.reshape(sequence, (num_steps * num_batch,) + tuple(
                sequence.shape[k] for k in range(2, sequence.ndim)))
            projected = get_output(self.input_to_hidden, flat, **kwargs)
            sequence = T.reshape(projected, (num_steps, num_batch) + tuple(
                projected.shape[k] for k in range(1, projected.ndim)))
        # the parameter expressions themselves (not the shared variables under them), so that
        # strict scan finds every variable the step reads among its non-sequences
        params = get_all_params(self.hidden_to_hidden, unwrap_shared=False)
        if not self.precompute_input:
            params += get_all_params(self.input_to_hidden, unwrap_shared=False)

        def step(input_n, hid_previous, *args):
            hid_pre = get_output(self.hidden_to_hidden, hid_previous, **kwargs)
            if self.precompute_input:
                hid_pre = hid_pre + input_n
            else:
                hid_pre = hid_pre + get_output(self.input_to_hidden, input_n, **kwargs)
            return self.nonlinearity(self._clip(hid_pre))

        dtype = np.result_type(sequence.dtype, *(p.dtype for p in params)).name
        hid_init = self._initial("hid_init", inputs, self.hid_init, num_batch, dtype)
        sequences = [sequence] if mask is None else [sequence, mask]
        step_fn = step if mask is None else self._masked(step, 1, len(params))
        (hid_out,) = self._loop(step_fn, sequences, [hid_init], params)
        return self._finish(hid_out)


def _input_shape_of(layer: Layer) -> tuple | None:
    """The input shape of a single-input layer (None for a merge layer)."""
    return getattr(layer, "input_shape", None) if not isinstance(layer, MergeLayer) else None


class RecurrentLayer(CustomRecurrentLayer):
    """A vanilla recurrent layer: h_t = nonlinearity(x_t W_in_to_hid + h_{t-1} W_hid_to_hid + b).

    >>> from theanine.layers import InputLayer, RecurrentLayer
    >>> layer = RecurrentLayer(InputLayer((None, 5, 4)), num_units=6)
    >>> layer.output_shape
    (None, 5, 6)
    >>> layer.W_in_to_hid.get_value().shape, layer.W_hid_to_hid.get_value().shape
    ((4, 6), (6, 6))
    """

    def __init__(self, incoming, num_units: int, W_in_to_hid=init.Uniform(),
                 W_hid_to_hid=init.Uniform(), b=init.Constant(0.0),
                 nonlinearity=nonlinearities.rectify, hid_init=init.Constant(0.0),
                 backwards: bool = False, learn_init: bool = False, gradient_steps: int = -1,
                 grad_clipping: float = 0, unroll_scan: bool = False,
                 precompute_input: bool = True, mask_input=None, only_return_final: bool = False,
                 **kwargs) -> None:
        input_shape = incoming if isinstance(incoming, tuple) else incoming.output_shape
        if len(input_shape) < 3:
            raise ValueError(
                f"RecurrentLayer: the input must be (batch, time, features...), at least 3-d; got "
                f"shape {input_shape}"
            )
        prefix = f"{kwargs['name']}." if kwargs.get("name") else ""
        in_to_hid = DenseLayer(InputLayer((None,) + tuple(input_shape[2:])), num_units,
                               W=W_in_to_hid, b=b, nonlinearity=None,
                               name=prefix + "input_to_hidden")
        hid_to_hid = DenseLayer(InputLayer((None, num_units)), num_units, W=W_hid_to_hid, b=None,
                                nonlinearity=None, name=prefix + "hidden_to_hidden")
        self.W_in_to_hid, self.W_hid_to_hid, self.b = in_to_hid.W, hid_to_hid.W, in_to_hid.b
        super().__init__(incoming, in_to_hid, hid_to_hid, nonlinearity=nonlinearity,
                         hid_init=hid_init, backwards=backwards, learn_init=learn_init,
                         gradient_steps=gradient_steps, grad_clipping=grad_clipping,
                         unroll_scan=unroll_scan, precompute_input=precompute_input,
                         mask_input=mask_input, only_return_final=only_return_final, **kwargs)


class Gate:
    """The weights and nonlinearity of one LSTM/GRU gate (W_cell=None: no peephole).

    >>> from theanine.layers import Gate
    >>> Gate(W_cell=None).W_cell is None
    True
    """

    def __init__(self, W_in=init.Normal(0.1), W_hid=init.Normal(0.1), W_cell=init.Normal(0.1),
                 b=init.Constant(0.0), nonlinearity=nonlinearities.sigmoid) -> None:
        self.W_in, self.W_hid, self.b = W_in, W_hid, b
        self.W_cell = W_cell
        self.nonlinearity = nonlinearities.identity if nonlinearity is None else nonlinearity


class _GatedBase(_RecurrentBase):
    """LSTM and GRU: per-gate weights stacked into one matrix, so a step does two products."""

    def _add_gates(self, gates: dict, num_inputs: int) -> None:
        n = self.num_units
        for gate_name, gate in gates.items():
            setattr(self, f"W_in_to_{gate_name}",
                    self.add_param(gate.W_in, (num_inputs, n), name=f"W_in_to_{gate_name}"))
            setattr(self, f"W_hid_to_{gate_name}",
                    self.add_param(gate.W_hid, (n, n), name=f"W_hid_to_{gate_name}"))
            setattr(self, f"b_{gate_name}", self.add_param(gate.b, (n,), name=f"b_{gate_name}",
                                                           regularizable=False))
            setattr(self, f"nonlinearity_{gate_name}", gate.nonlinearity)
        self._gate_names = tuple(gates)

    def _stacked(self) -> tuple[Var, Var, Var]:
        """(W_in, W_hid, b) with the gates side by side, in the gate order."""
        names = self._gate_names
        w_in = T.concatenate([getattr(self, f"W_in_to_{g}") for g in names], axis=1)
        w_hid = T.concatenate([getattr(self, f"W_hid_to_{g}") for g in names], axis=1)
        b = T.concatenate([getattr(self, f"b_{g}") for g in names], axis=0)
        return w_in, w_hid, b

    def _gate(self, x: Var, k: int) -> Var:
        """Columns of gate k in a stacked pre-activation."""
        return x[:, k * self.num_units : (k + 1) * self.num_units]

    def _prepare(self, inputs: list):
        """(time-major input, projected when precompute_input; mask; stacked weights; batch)."""
        sequence, mask = self._split_inputs(inputs)
        if sequence.ndim > 3:
            sequence = T.flatten(sequence, 3)
        num_batch = sequence.shape[1]
        w_in, w_hid, b = self._stacked()
        if self.precompute_input:
            sequence = T.dot(sequence, w_in) + b
        return sequence, mask, w_in, w_hid, b, num_batch


class LSTMLayer(_GatedBase):
    """A long short-term memory layer (Graves 2013, with peepholes by default): input
    (batch, time, features...), output the hidden states (batch, time, num_units).

    >>> from theanine.layers import InputLayer, LSTMLayer
    >>> layer = LSTMLayer(InputLayer((None, 5, 4)), num_units=6)
    >>> layer.output_shape
    (None, 5, 6)
    >>> layer.W_in_to_ingate.get_value().shape, layer.W_cell_to_ingate.get_value().shape
    ((4, 6), (6,))
    """

    def __init__(self, incoming, num_units: int, ingate=Gate(), forgetgate=Gate(),
                 cell=Gate(W_cell=None, nonlinearity=nonlinearities.tanh), outgate=Gate(),
                 nonlinearity=nonlinearities.tanh, cell_init=init.Constant(0.0),
                 hid_init=init.Constant(0.0), backwards: bool = False, learn_init: bool = False,
                 peepholes: bool = True, gradient_steps: int = -1, grad_clipping: float = 0,
                 unroll_scan: bool = False, precompute_input: bool = True, mask_input=None,
                 only_return_final: bool = False, **kwargs) -> None:
        super().__init__(incoming, {"hid_init": hid_init, "cell_init": cell_init}, mask_input,
                         backwards, learn_init, gradient_steps, grad_clipping, unroll_scan,
                         precompute_input, only_return_final, **kwargs)
        self.num_units, self.peepholes = num_units, peepholes
        self.nonlinearity = nonlinearities.identity if nonlinearity is None else nonlinearity
        gates = {
            "ingate": ingate or Gate(),
            "forgetgate": forgetgate or Gate(),
            "cell": cell or Gate(W_cell=None, nonlinearity=nonlinearities.tanh),
            "outgate": outgate or Gate(),
        }
        self._add_gates(gates, self._num_inputs())
        if peepholes:
            for name in ("ingate", "forgetgate", "outgate"):
                spec = gates[name].W_cell
                if spec is None:
                    raise ValueError(
                        f"{self._who}: peepholes=True needs W_cell on the {name} Gate, got None"
                    )
                setattr(self, f"W_cell_to_{name}",
                        self.add_param(spec, (num_units,), name=f"W_cell_to_{name}"))
        self.cell_init = self._add_initial("cell_init", cell_init, (1, num_units))
        self.hid_init = self._add_initial("hid_init", hid_init, (1, num_units))

    def get_output_for(self, inputs: list, **kwargs) -> Var:
        """The hidden states (batch, time, num_units), or the last one with only_return_final."""
        sequence, mask, w_in, w_hid, b, num_batch = self._prepare(inputs)
        non_sequences = [w_hid]
        if self.peepholes:
            non_sequences += [self.W_cell_to_ingate, self.W_cell_to_forgetgate,
                              self.W_cell_to_outgate]
        if not self.precompute_input:
            non_sequences += [w_in, b]

        def step(input_n, cell_previous, hid_previous, *args):
            if not self.precompute_input:
                input_n = T.dot(input_n, w_in) + b
            gates = self._clip(input_n + T.dot(hid_previous, w_hid))
            ingate, forgetgate = self._gate(gates, 0), self._gate(gates, 1)
            cell_input, outgate = self._gate(gates, 2), self._gate(gates, 3)
            if self.peepholes:
                ingate = ingate + cell_previous * self.W_cell_to_ingate
                forgetgate = forgetgate + cell_previous * self.W_cell_to_forgetgate
            ingate = self.nonlinearity_ingate(ingate)
            forgetgate = self.nonlinearity_forgetgate(forgetgate)
            cell_input = self.nonlinearity_cell(cell_input)
            cell = forgetgate * cell_previous + ingate * cell_input
            if self.peepholes:
                outgate = outgate + cell * self.W_cell_to_outgate
            outgate = self.nonlinearity_outgate(outgate)
            return [cell, outgate * self.nonlinearity(cell)]

        params = [w_in, w_hid, b] + non_sequences
        dtype = np.result_type(sequence.dtype, *(p.dtype for p in params)).name
        cell_init = self._initial("cell_init", inputs, self.cell_init, num_batch, dtype)
        hid_init = self._initial("hid_init", inputs, self.hid_init, num_batch, dtype)
        sequences = [sequence] if mask is None else [sequence, mask]
        step_fn = step if mask is None else self._masked(step, 2, len(non_sequences))
        _, hid_out = self._loop(step_fn, sequences, [cell_init, hid_init], non_sequences)
        return self._finish(hid_out)


class GRULayer(_GatedBase):
    """A gated recurrent unit layer (Cho et al. 2014, the reset gate applied after the hidden
    product as in Lasagne): input (batch, time, features...), output (batch, time, num_units).

    >>> from theanine.layers import InputLayer, GRULayer
    >>> layer = GRULayer(InputLayer((None, 5, 4)), num_units=6, only_return_final=True)
    >>> layer.output_shape, layer.W_hid_to_updategate.get_value().shape
    ((None, 6), (6, 6))
    """

    def __init__(self, incoming, num_units: int, resetgate=Gate(W_cell=None),
                 updategate=Gate(W_cell=None),
                 hidden_update=Gate(W_cell=None, nonlinearity=nonlinearities.tanh),
                 hid_init=init.Constant(0.0), backwards: bool = False,
                 learn_init: bool = False, gradient_steps: int = -1, grad_clipping: float = 0,
                 unroll_scan: bool = False, precompute_input: bool = True, mask_input=None,
                 only_return_final: bool = False, **kwargs) -> None:
        super().__init__(incoming, {"hid_init": hid_init}, mask_input, backwards, learn_init,
                         gradient_steps, grad_clipping, unroll_scan, precompute_input,
                         only_return_final, **kwargs)
        self.num_units = num_units
        gates = {
            "resetgate": resetgate or Gate(W_cell=None),
            "updategate": updategate or Gate(W_cell=None),
            "hidden_update": hidden_update or Gate(W_cell=None,
                                                   nonlinearity=nonlinearities.tanh),
        }
        self._add_gates(gates, self._num_inputs())
        self.hid_init = self._add_initial("hid_init", hid_init, (1, num_units))

    def get_output_for(self, inputs: list, **kwargs) -> Var:
        """The hidden states (batch, time, num_units), or the last one with only_return_final."""
        sequence, mask, w_in, w_hid, b, num_batch = self._prepare(inputs)
        non_sequences = [w_hid] if self.precompute_input else [w_hid, w_in, b]

        def step(input_n, hid_previous, *args):
            if not self.precompute_input:
                input_n = T.dot(input_n, w_in) + b
            hid_input = self._clip(T.dot(hid_previous, w_hid))
            input_n = self._clip(input_n)
            resetgate = self.nonlinearity_resetgate(
                self._gate(hid_input, 0) + self._gate(input_n, 0))
            updategate = self.nonlinearity_updategate(
                self._gate(hid_input, 1) + self._gate(input_n, 1))
            hidden_update = self._gate(input_n, 2) + resetgate * self._gate(hid_input, 2)
            hidden_update = self.nonlinearity_hidden_update(self._clip(hidden_update))
            return (1 - updategate) * hid_previous + updategate * hidden_update

        params = [w_in, w_hid, b]
        dtype = np.result_type(sequence.dtype, *(p.dtype for p in params)).name
        hid_init = self._initial("hid_init", inputs, self.hid_init, num_batch, dtype)
        sequences = [sequence] if mask is None else [sequence, mask]
        step_fn = step if mask is None else self._masked(step, 1, len(non_sequences))
        (hid_out,) = self._loop(step_fn, sequences, [hid_init], non_sequences)
        return self._finish(hid_out)
