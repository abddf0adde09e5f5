"""Training steps of `theanine.layers` nets in mode 'cuda-emulator' against mode 'py', end to end:
a LeNet-style CNN (with dropout and batch norm), LSTM and GRU (gradient through scan), and an
embedding net (advanced indexing, inc_subtensor with repeated indices)."""

from __future__ import annotations

import collections

import numpy as np
import pytest
import theanine
import theanine.layers as L
import theanine.tensor as T
from theanine.graph.ops import reduce, shape
from theanine.kernels.cuda import nvcc
from theanine.kernels.cuda.backend import EMULATOR_BACKEND, thread_order
from theanine.kernels.cuda.scatter import GatherLowering, ScatterLowering

MODE = "cuda-emulator"
DEVICE = EMULATOR_BACKEND.device
STEPS = 3
SEED = 1234
# The only ops a CUDA training step of these nets may run on the host: shape metadata, no tensor
# data. Shape reads a DeviceArray's header (the plan passes a zero-byte stand-in, nothing is
# copied); MakeVector builds a small int64 size vector from host scalars (a dropout mask's size, a
# reshape target); AxisSize is one axis's size as a scalar (a mean's divisor). Each test below
# lists exactly which of them its plan keeps, and why.
SHAPE_METADATA = (shape.Shape, shape.MakeVector, reduce.AxisSize)
RNG = np.random.default_rng(5)


def build(make_net, mode: str, floatx: str, optimizer):
    """(net, train function, shared variables the updates change): the same initial values in
    every call, the layers' generator (weights, dropout seeds) seeded the same each time."""
    previous = L.random.get_rng()
    L.random.set_rng(np.random.RandomState(SEED))  # other tests may have set one of their own
    try:
        return _build(make_net, mode, floatx, optimizer)
    finally:
        L.random.set_rng(previous)


def _build(make_net, mode: str, floatx: str, optimizer):
    with theanine.config.change_flags(floatX=floatx):
        net, inputs, outputs = make_net()
        params = L.get_all_params(net, trainable=True)
        if optimizer == "adam":
            updates = L.updates.adam(outputs[0], params, learning_rate=0.01)
        elif optimizer == "sgd":
            updates = L.updates.sgd(outputs[0], params, learning_rate=0.1)
        else:  # (loss, params) -> updates
            updates = optimizer(outputs[0], params)
        train = theanine.function(inputs, outputs, updates=updates, mode=mode)
    return net, train, list(updates.keys())


def check_training(make_net, data, floatx="float32", optimizer="adam", rtol=1e-4, order=None):
    """Run STEPS training steps in mode 'cuda-emulator' and mode 'py' from the same initial
    values; after each, compare the outputs (the loss first), every value of the net (params,
    batch-norm averages) and every optimizer state. Outputs after the loss are probes whose zeros
    must match exactly (dropout masks). Returns the cuda-emulator function (its nets: `.nets`)."""
    net_c, f_c, updated_c = build(make_net, MODE, floatx, optimizer)
    net_p, f_p, updated_p = build(make_net, "py", floatx, optimizer)
    for a, b in zip(L.get_all_param_values(net_c), L.get_all_param_values(net_p)):
        np.testing.assert_array_equal(a, b)  # the same initial values
    assert len(updated_c) == len(updated_p)
    atol = 1e-6 if floatx == "float32" else 1e-12
    for step in range(STEPS):
        if order is None:
            got = f_c(*data)
        else:
            with thread_order(order, seed=step):
                got = f_c(*data)
        expected = f_p(*data)
        assert got[0].dtype == expected[0].dtype == floatx and got[0].shape == ()
        for k, (a, b) in enumerate(zip(got, expected)):
            assert a.dtype == b.dtype and a.shape == b.shape
            np.testing.assert_allclose(a, b, rtol=rtol, atol=atol, err_msg=f"output {k}, {step}")
            if k:  # a dropout draw: the same seed gives the same mask in every mode
                np.testing.assert_array_equal(a == 0, b == 0)
                assert 0 < np.count_nonzero(a == 0) < a.size  # it dropped some, kept some
        for var_c, var_p in zip(updated_c, updated_p):
            a, b = var_c.get_value(), var_p.get_value()
            assert a.dtype == b.dtype and a.shape == b.shape, var_c.name
            np.testing.assert_allclose(a, b, rtol=rtol, atol=atol, err_msg=f"{var_c}, {step}")
        for a, b in zip(L.get_all_param_values(net_c), L.get_all_param_values(net_p)):
            np.testing.assert_allclose(a, b, rtol=rtol, atol=atol, err_msg=f"step {step}")
    f_c.nets = (net_c, net_p)
    return f_c


def host_ops(plan) -> collections.Counter:
    """The op class names of the nodes run on the host, in `plan` and in its scan/ifelse plans."""
    found = collections.Counter()
    for var, lowering, *_ in plan.steps:
        if lowering is None:
            assert isinstance(var.op, SHAPE_METADATA), (var.describe(), var.op)
            found[type(var.op).__name__] += 1
        inner = [getattr(lowering, "plan", None), *getattr(lowering, "plans", {}).values()]
        found.update(sum((host_ops(p) for p in inner if p is not None), collections.Counter()))
    return found


def steady_traffic(f, data) -> dict:
    """The host<->device transfers of one more training step (parameters already resident)."""
    DEVICE.transfers.reset()
    f(*data)
    return DEVICE.transfers.snapshot()


# --- (1) and (2): a LeNet-style CNN -------------------------------------------------------------

IMAGES = RNG.standard_normal((4, 1, 10, 9))
LABELS = np.array([0, 2, 1, 2], dtype="int32")


def lenet(dropout: bool = False, batch_norm: bool = False):
    """conv 3x3 (+ batch norm) -> max-pool -> conv 2x2 -> average pool (-> dropout) -> dense
    (+ batch norm) (-> dropout) -> softmax; outputs: the loss, then the dropout layers' outputs."""

    def make():
        x, y = T.tensor4("x"), T.ivector("y")
        net = L.InputLayer((None, 1, 10, 9), input_var=x)
        net = L.Conv2DLayer(net, 3, (3, 3), nonlinearity=L.nonlinearities.rectify)  # 3x8x7
        if batch_norm:
            net = L.batch_norm(net)
        net = L.MaxPool2DLayer(net, (2, 2))  # 3x4x3
        net = L.Conv2DLayer(net, 4, (2, 2), nonlinearity=L.nonlinearities.tanh)  # 4x3x2
        net = L.Pool2DLayer(net, (2, 2), ignore_border=False, mode="average_inc_pad")  # 4x2x1
        drops = []
        if dropout:
            net = L.DropoutLayer(net, p=0.3)
            drops.append(net)
        net = L.DenseLayer(net, 5, nonlinearity=L.nonlinearities.sigmoid)
        if batch_norm:
            net = L.BatchNormLayer(net)
        if dropout:
            net = L.DropoutLayer(net, p=0.5)
            drops.append(net)
        net = L.DenseLayer(net, 3, nonlinearity=L.nonlinearities.softmax)
        prediction, *dropped = L.get_output([net] + drops)
        loss = L.objectives.categorical_crossentropy(prediction, y).mean()
        return net, [x, y], [loss] + dropped

    return make


def test_lenet_float32_adam():
    data = (IMAGES.astype("float32"), LABELS)
    f = check_training(lenet(), data)
    # Host nodes: the dense layer flattens its input with reshape((x.shape[0], -1)): the Shape of
    # the pooled map (read from the DeviceArray's header) and the MakeVector of the reshape target;
    # AxisSize: the batch size dividing the mean of the loss (uploaded as a small value).
    assert host_ops(f._plan) == {"Shape": 1, "MakeVector": 1, "AxisSize": 1}, host_ops(f._plan)
    kinds = collections.Counter(k.kind for k in f._plan.kernels())
    assert {"elementwise", "gemm", "reduction", "softmax"} <= set(kinds), kinds
    ops = {type(v.op).__name__ for v in f._plan.nodes()}
    assert {"Conv2d", "Conv2dGradWeights", "Pool2d", "MaxPool2dGrad"} <= ops, ops
    assert {"AveragePool2dGrad", "SelectClass", "SelectClassGrad"} <= ops, ops
    # A step moves its minibatch up and the loss down, nothing else: the parameters and Adam's
    # state stay on the device. The labels go up once, as int64 (SelectClass and its gradient
    # check them on the host, then share one upload).
    traffic = steady_traffic(f, (data[0], LABELS[::-1].copy()))  # new labels: sent once
    assert (traffic["down_calls"], traffic["down_bytes"]) == (1, 4)
    assert (traffic["up_calls"], traffic["up_bytes"]) == (2, data[0].nbytes + 8 * 4), traffic


def test_lenet_dropout_batchnorm_float64_sgd():
    f = check_training(
        lenet(dropout=True, batch_norm=True), (IMAGES, LABELS), "float64", "sgd", rtol=1e-10
    )
    # Host nodes: as in the plain net, the flatten before the first dense layer (Shape of the
    # pooled map, MakeVector of the reshape target) and the loss mean's AxisSize; the first
    # dropout's mask size (batch, 4, 2, 1) is a MakeVector over that same Shape's batch entry; the
    # second dropout's mask size is a MakeVector over the dense product's shape, itself a
    # MakeVector read from the shapes of its operands (the batch entry and the Shape of the
    # weight: shared weights have unknown shapes), so the product is not needed for it; each
    # batch norm divides its statistics by an AxisSize (the size of the axes it normalizes over).
    assert host_ops(f._plan) == {"Shape": 3, "MakeVector": 4, "AxisSize": 3}, host_ops(f._plan)
    assert {"random"} <= {k.kind for k in f._plan.kernels()}
    # Inference after training: no dropout, batch norm with the running averages just trained.
    predictions = []
    for net, mode in zip(f.nets, (MODE, "py")):
        x = L.get_all_layers(net)[0].input_var
        predict = theanine.function([x], L.get_output(net, deterministic=True), mode=mode)
        predictions.append(predict(IMAGES[::-1]))
    assert predictions[0].dtype == predictions[1].dtype == "float64"
    np.testing.assert_allclose(*predictions, rtol=1e-10)
    # One more step sends the minibatch (labels as int64, see the plain net), nothing else: not
    # the dropouts' constant number of trials (random.py copies a constant up once).
    labels = np.array([1, 1, 0, 2], dtype="int32")  # new labels (no other test sends these)
    traffic = steady_traffic(f, (IMAGES, labels))
    assert (traffic["up_calls"], traffic["up_bytes"]) == (2, IMAGES.nbytes + 8 * 4), traffic
    # down: the loss and the two dropout outputs (4 x 4 x 2 x 1 and 4 x 5 float64)
    assert (traffic["down_calls"], traffic["down_bytes"]) == (3, 8 + 8 * (32 + 20)), traffic


@pytest.mark.parametrize("order", ["reverse", "shuffled"])
def test_lenet_dropout_batchnorm_thread_orders(order):
    data = (IMAGES.astype("float32"), LABELS)
    check_training(lenet(dropout=True, batch_norm=True), data, order=order)


# --- (3) LSTM and GRU: the gradient through scan ------------------------------------------------

SEQUENCES = RNG.standard_normal((2, 5, 3))
TARGETS = np.array([1, 0], dtype="int32")


def recurrent(layer):
    """5 steps of 3 features (batch 2) -> 4 units (last state) -> softmax over 2 classes."""

    def make():
        x, y = T.tensor3("x"), T.ivector("y")
        net = L.InputLayer((2, 5, 3), input_var=x)
        net = layer(net, 4, grad_clipping=5.0, only_return_final=True)
        net = L.DenseLayer(net, 2, nonlinearity=L.nonlinearities.softmax)
        loss = L.objectives.categorical_crossentropy(L.get_output(net), y).mean()
        return net, [x, y], [loss]

    return make


# Host nodes of the recurrent training steps (none inside the scans' inner plans): the gradient
# of the gates' stacked weights (a Join of each gate's W_in, W_hid and b) splits the cotangent at
# offsets read from the Shape of every piece, a shared variable of unknown static shape: 3 per gate
# (LSTM: 4 gates, GRU: 3); one more Shape gives the scan's step count (the length of the
# precomputed input), one the batch size of the initial states (ones((batch, 1)) . hid_init); the
# AxisSize is the batch size dividing the loss mean. The input projection plus its bias is one Gemm
# on the input's rows: two MakeVectors give the shapes of its reshapes (to rows and back). The
# LSTM's gradients of W_in, W_hid and b are one product of the joined inputs, hidden states and
# ones with the gates' cotangent: its rows split at the Shapes of the parts, the ones shaped from
# the cotangent's Shape (a MakeVector).
RECURRENT_HOST = {
    L.LSTMLayer: {"Shape": 18, "MakeVector": 3, "AxisSize": 1},
    L.GRULayer: {"Shape": 11, "MakeVector": 2, "AxisSize": 1},
}


@pytest.mark.parametrize("layer", [L.LSTMLayer, L.GRULayer])
def test_recurrent_float64_adam(layer):
    f = check_training(recurrent(layer), (SEQUENCES, TARGETS), "float64", rtol=1e-10)
    assert host_ops(f._plan) == RECURRENT_HOST[layer], host_ops(f._plan)
    assert {type(v.op).__name__ for v in f._plan.nodes()} >= {"Scan"}
    scans = [s[1] for s in f._plan.steps if type(s[0].op).__name__ == "Scan"]
    assert len(scans) == 2  # the forward loop and the backward (gradient) loop, both lowered
    assert all(s.kernels for s in scans)


def test_gru_float32_shuffled():
    with thread_order("shuffled", seed=4):
        check_training(recurrent(L.GRULayer), (SEQUENCES.astype("float32"), TARGETS))


FRAMES = RNG.standard_normal((2, 4, 1, 6, 5))  # batch 2, 4 steps of 1x6x5 images


def conv_recurrent():
    """A CustomRecurrentLayer whose input-to-hidden and hidden-to-hidden maps are 3x3 'same'
    convolutions (conv kernels inside both scans), then max-pool -> dense -> squared error.
    The initial state is an input: the layer's default hid_init of shape (1, 2, 6, 5) fails to
    build in every mode (layers/recurrent.py: see the helper report)."""
    x, h0, y = T.tensor5("x"), T.tensor4("h0"), T.vector("y")
    conv = {"num_filters": 2, "filter_size": (3, 3), "pad": "same", "nonlinearity": None}
    in_to_hid = L.Conv2DLayer(L.InputLayer((None, 1, 6, 5)), **conv)
    hid_to_hid = L.Conv2DLayer(L.InputLayer((None, 2, 6, 5)), **conv)
    net = L.CustomRecurrentLayer(
        L.InputLayer((None, 4, 1, 6, 5), input_var=x),
        in_to_hid,
        hid_to_hid,
        nonlinearity=L.nonlinearities.tanh,
        only_return_final=True,
        hid_init=L.InputLayer((None, 2, 6, 5), input_var=h0),
    )
    net = L.DenseLayer(L.MaxPool2DLayer(net, (2, 2)), 1, nonlinearity=None)
    loss = L.objectives.squared_error(L.get_output(net).flatten(), y).mean()
    return net, [x, h0, y], [loss]


def test_conv_recurrent_float64_adam():
    data = (FRAMES, RNG.standard_normal((2, 2, 6, 5)), np.array([0.5, -1.0]))
    f = check_training(conv_recurrent, data, "float64", rtol=1e-10)
    # Host nodes, none inside the scans: the layer runs input_to_hidden on all steps at once,
    # reshaping (batch, steps, 1, 6, 5) to (batch * steps, ...) and back (the Shape of the
    # swapped input, a MakeVector per reshape target); the Shape of the result gives the scan's
    # step count; the flatten before the dense layer (Shape, MakeVector); the gradients of the
    # two reshapes take their target from the shape of the dense product (a MakeVector over the
    # Shapes of its operands, so the product is not needed for it) and the Shape of the conv
    # output; AxisSize: the loss mean's divisor.
    assert host_ops(f._plan) == {"Shape": 6, "MakeVector": 4, "AxisSize": 1}, host_ops(f._plan)
    scans = [s[1].plan for s in f._plan.steps if type(s[0].op).__name__ == "Scan"]
    inner = [{type(v.op).__name__ for v in plan.nodes()} for plan in scans]
    assert "Conv2d" in inner[0] and {"Conv2dGradInputs", "Conv2dGradWeights"} <= inner[1]


def test_lstm_step_moves_only_its_minibatch_and_loss():
    _, f, _ = build(recurrent(L.LSTMLayer), MODE, "float64", "adam")
    f(SEQUENCES, TARGETS)
    labels = np.array([1, 1], dtype="int32")  # new labels (no other test sends these)
    traffic = steady_traffic(f, (SEQUENCES, labels))
    assert (traffic["down_calls"], traffic["down_bytes"]) == (1, 8), traffic
    assert (traffic["up_calls"], traffic["up_bytes"]) == (2, SEQUENCES.nbytes + 8 * 2), traffic


# --- (4) embedding + dense: advanced indexing, inc_subtensor with repeated indices ------------

TOKENS = np.array([[1, 4, 1], [6, 4, -3]], dtype="int32")  # 1 and 4 repeat; -3 is row 4 too
TOKEN_TARGETS = RNG.standard_normal((2, 3, 2))


def embedding():
    """tokens (2, 3) -> 7 x 4 embedding -> dense over the last axis -> squared error."""
    x, y = T.imatrix("tokens"), T.tensor3("targets")
    net = L.InputLayer((None, 3), input_var=x)
    net = L.EmbeddingLayer(net, input_size=7, output_size=4)
    net = L.DenseLayer(net, 2, nonlinearity=None, num_leading_axes=2)
    loss = L.objectives.squared_error(L.get_output(net), y).mean()
    return net, [x, y], [loss]


@pytest.mark.parametrize(
    "floatx, optimizer, rtol", [("float32", "sgd", 1e-4), ("float64", "adam", 1e-10)]
)
def test_embedding(floatx, optimizer, rtol):
    data = (TOKENS, TOKEN_TARGETS.astype(floatx))
    f = check_training(embedding, data, floatx, optimizer, rtol=rtol)
    # Host nodes: AxisSize, the number of values dividing the squared error's mean; the dense
    # layer over two leading axes plus its bias is one Gemm on the embedded rows, between two
    # reshapes whose targets (MakeVector) are read from the Shapes of its operands.
    assert host_ops(f._plan) == {"AxisSize": 1, "Shape": 2, "MakeVector": 2}, host_ops(f._plan)
    lowerings: dict = {}
    for s in f._plan.steps:
        lowerings.setdefault(type(s[0].op).__name__, set()).add(type(s[1]))
    assert GatherLowering in lowerings["Subtensor"]  # W[tokens] (shape entries: host Subtensors)
    assert lowerings["IncSubtensor"] == {ScatterLowering}  # its gradient: atomics for the repeats
    # A step with new tokens sends the targets and the tokens' int64 row offsets once: the gather
    # and the scatter of its gradient plan the same offsets and share one upload.
    tokens = TOKENS[::-1] if floatx == "float32" else TOKENS[:, ::-1]  # no other test sends these
    traffic = steady_traffic(f, (np.ascontiguousarray(tokens), data[1]))
    assert (traffic["up_calls"], traffic["up_bytes"]) == (2, data[1].nbytes + 8 * 6), traffic
    assert (traffic["down_calls"], traffic["down_bytes"]) == (1, data[1].itemsize), traffic
    # the gradient of W has the rows of repeated tokens summed (checked against mode 'py' above)
    with thread_order("shuffled", seed=7):
        check_training(embedding, data, floatx, optimizer, rtol=rtol)


# --- the nvcc gate: every kernel of these training steps compiles within the limits --------------


@pytest.mark.skipif(nvcc.find_nvcc() is None, reason="nvcc (the CUDA toolkit) is not installed")
def test_training_kernels_compile_for_sm80_and_sm90():
    kernels = {}
    for make, floatx in [
        (lenet(True, True), "float32"),
        (recurrent(L.LSTMLayer), "float64"),
        (recurrent(L.GRULayer), "float32"),
        (embedding, "float32"),
        (conv_recurrent, "float64"),
    ]:
        _, f, _ = build(make, MODE, floatx, "adam")
        kernels.update({k.source: k for k in f._plan.kernels()})  # scans' inner kernels too
    kernels = list(kernels.values())
    reports = nvcc.compile_kernels(kernels, nvcc.ARCHS)
    assert len(reports) == len(kernels) * len(nvcc.ARCHS)
    by_name = {k.name: k for k in kernels}
    assert [p for r in reports for p in nvcc.limit_problems(by_name[r.kernel], r)] == []
