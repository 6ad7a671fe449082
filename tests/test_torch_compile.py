"""pyrnn.torch under torch.compile: outputs and gradients against torch.nn, pyrnn's operators in
the compiled graph where the compiler traces a layer, its eager path where it does not, and
torch.nn's step for cells."""

from __future__ import annotations

import warnings
from types import SimpleNamespace

import pytest
import torch
import torch._dynamo
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence

import pyrnn
import pyrnn.torch as pt
from pyrnn.functional import GATES
from pyrnn.torch import _ops

from .conftest import HOST_BACKENDS
from .test_torch_dropin import CELLS, LAYERS, gradients_needing, rel_err_t, tolerance

pytestmark = pytest.mark.skipif(not _ops.available(),
                                reason="torch.library.custom_op arrived in torch 2.4")


@pytest.fixture(autouse=True)
def fresh_compiler():
    """Each test compiles its own modules (a code object recompiles at most 8 times)."""
    torch._dynamo.reset()
    yield
    torch._dynamo.reset()


@pytest.fixture
def layers_traced():
    """torch.compile traces recurrent layers only with this option (else a graph break)."""
    with torch._dynamo.config.patch(allow_rnn=True):
        yield


class GraphRecorder:
    """A torch.compile backend that keeps the graphs it is given and runs them as they are."""

    def __init__(self):
        self.graphs = []

    def __call__(self, gm, example_inputs):
        self.graphs.append(gm)
        return gm.forward

    def calls(self) -> list:
        return [str(node.target) for gm in self.graphs for node in gm.graph.nodes
                if node.op == "call_function"]


def pair(kind: str, dtype=torch.float64, cells=LAYERS, backend=None, **kwargs):
    """(torch.nn module, pyrnn.torch module) with the same weights."""
    ref_cls, our_cls, flags = cells[kind]
    torch.manual_seed(0)
    ref = ref_cls(3, 5, dtype=dtype, **flags, **kwargs)
    ours = our_cls(3, 5, dtype=dtype, backend=backend, **flags, **kwargs)
    ours.load_state_dict(ref.state_dict())
    return ref, ours


def loss_and_grads(call, module, x, hx=None):
    """``call(x, hx)``'s outputs and states, and the gradients of a loss of them with respect
    to x, hx and ``module``'s parameters."""
    out, hidden = call(x, hx)
    states = hidden if isinstance(hidden, tuple) else (hidden,)
    loss = (out * torch.linspace(-1, 1, out.shape[-1], dtype=out.dtype)).sum()
    loss = loss + sum((s * s).sum() for s in states)
    inputs = [t for t in (x, *(hx if isinstance(hx, tuple) else (hx,))) if t is not None]
    grads = torch.autograd.grad(loss, inputs + list(module.parameters()))
    return (out, *states, *grads)


def assert_close(ours, ref, dtype):
    assert len(ours) == len(ref)
    for a, b in zip(ours, ref):
        assert a.shape == b.shape
        assert rel_err_t(a, b) <= tolerance(dtype)


@pytest.mark.parametrize("kind", list(LAYERS))
def test_untraced_layers_run_pyrnn_eagerly(kind):
    """By default the compiler does not trace recurrent layers (torch.nn's nor pyrnn's): the
    module runs pyrnn's eager path, inside a compiled model (it crashed there: the compiler
    tried pyrnn's internals as graphs of their own)."""
    ref, ours = pair(kind, num_layers=2)
    compiled = torch.compile(lambda x, hx: ours(x, hx), backend="aot_eager")
    x = torch.randn(4, 2, 3, dtype=torch.float64, requires_grad=True)
    with warnings.catch_warnings():
        warnings.simplefilter("error", pt.FallbackWarning)
        out, _ = compiled(x, None)
        assert type(out.grad_fn).__name__ == "StackFunctionBackward"
        assert_close(loss_and_grads(compiled, ours, x), loss_and_grads(ref, ref, x),
                     torch.float64)


CONFIGS = [
    dict(),
    dict(num_layers=2, bidirectional=True),
    dict(bias=False, batch_first=True),
    dict(num_layers=3, hx=True),
    dict(bidirectional=True, hx=True, batch_first=True),
]


@pytest.mark.parametrize("backend", HOST_BACKENDS)
@pytest.mark.parametrize("config", CONFIGS, ids=lambda c: "-".join(c) or "plain")
@pytest.mark.parametrize("kind", list(LAYERS))
def test_traced_layers_match_torch_nn(kind, config, backend, layers_traced):
    """Traced, a layer compiles to one graph holding pyrnn's operators, and matches torch.nn:
    outputs, states, and the gradients of input, states and every weight."""
    config = dict(config)
    with_hx = config.pop("hx", False)
    ref, ours = pair(kind, backend=backend, **config)
    D = 2 if ours.bidirectional else 1
    x = torch.randn(2, 4, 3, dtype=torch.float64, requires_grad=True)
    hx = None
    if with_hx:
        h0 = torch.randn(ours.num_layers * D, 2 if ours.batch_first else 4, 5,
                         dtype=torch.float64, requires_grad=True)
        hx = (h0, torch.randn_like(h0).requires_grad_()) if kind == "lstm" else h0
    recorder = GraphRecorder()
    compiled = torch.compile(ours, backend=recorder, fullgraph=True)
    assert_close(loss_and_grads(compiled, ours, x, hx), loss_and_grads(ref, ref, x, hx),
                 torch.float64)
    calls = recorder.calls()
    assert calls.count(str(_ops.layer_forward._opoverload)) == ours.num_layers * D, calls


@pytest.mark.parametrize("kind", list(LAYERS))
def test_traced_layers_without_gradients(kind, layers_traced):
    ref, ours = pair(kind, dtype=torch.float32, num_layers=2, bidirectional=True)
    compiled = torch.compile(ours, backend="aot_eager", fullgraph=True)
    x = torch.randn(6, 3, 3)
    with torch.no_grad():
        ours_out, ref_out = compiled(x), ref(x)
    flat = [ours_out[0], *(ours_out[1] if kind == "lstm" else (ours_out[1],))]
    ref_flat = [ref_out[0], *(ref_out[1] if kind == "lstm" else (ref_out[1],))]
    assert_close(flat, ref_flat, torch.float32)


@pytest.mark.parametrize("kind", ["lstm", "gru"])
def test_traced_packed_sequences(kind, layers_traced):
    """Unsorted packed input: torch's packing breaks the graph (its sizes depend on the
    lengths' values), and the layer runs pyrnn's eager path, not the parent's."""
    ref, ours = pair(kind, num_layers=2, bidirectional=True)
    lengths = torch.tensor([2, 5, 1, 4])
    x = torch.randn(5, 4, 3, dtype=torch.float64, requires_grad=True)

    def run(module):
        def call(x, hx=None):
            out, hidden = module(pack_padded_sequence(x, lengths, enforce_sorted=False))
            return out.data, hidden
        return call

    compiled = torch.compile(run(ours), backend="aot_eager")
    with warnings.catch_warnings():
        warnings.simplefilter("error", pt.FallbackWarning)
        assert_close(loss_and_grads(compiled, ours, x), loss_and_grads(run(ref), ref, x),
                     torch.float64)


def test_traced_dropout_between_layers(layers_traced):
    """Training mode's dropout after every layer but the last: torch's, reproduced by the seed;
    evaluation mode runs none."""
    ref, ours = pair("lstm", num_layers=3, dropout=0.5)
    compiled = torch.compile(ours, backend="aot_eager", fullgraph=True)
    x = torch.randn(4, 2, 3, dtype=torch.float64)
    torch.manual_seed(1)
    first = compiled(x)[0]
    torch.manual_seed(1)
    again = compiled(x)[0]
    torch.manual_seed(2)
    other = compiled(x)[0]
    assert torch.equal(first, again) and rel_err_t(first, other) > 1e-3
    ours.eval()
    ref.eval()
    without = compiled(x)[0]
    assert rel_err_t(without, ref(x)[0]) <= tolerance(torch.float64)
    assert rel_err_t(first, without) > 1e-3  # masks drawn in training mode


@pytest.mark.parametrize("kind", list(CELLS))
def test_compiled_cells_run_torch_nn_steps(kind):
    """The compiler fuses torch.nn's cell step into code faster than pyrnn's one operator a
    step: cells run their parent's step, after one warning, in one graph with gradients."""
    ref, ours = pair(kind, cells=CELLS)
    xs = torch.randn(4, 2, 3, dtype=torch.float64, requires_grad=True)

    def steps(cell, xs):
        state, outs = None, []
        for x in xs:
            state = cell(x, state)
            outs.append(state[0] if isinstance(state, tuple) else state)
        return torch.stack(outs)

    compiled = torch.compile(steps, backend="aot_eager", fullgraph=True)
    results = []
    with pytest.warns(pt.FallbackWarning, match="torch.compile fuses") as caught:
        for run, cell in ((compiled, ours), (steps, ref)):
            out = run(cell, xs)
            results.append([out, *torch.autograd.grad(out.square().sum(),
                                                      [xs, *cell.parameters()])])
    assert len([w for w in caught if issubclass(w.category, pt.FallbackWarning)]) == 1
    assert_close(*results, torch.float64)


def test_inductor_with_changing_sequence_lengths(layers_traced):
    """The default compiler (inductor) around pyrnn's operators, recompiling for a dynamic
    sequence length: a model with a head, float32, forward and backward."""
    torch.manual_seed(0)
    ref = nn.Sequential()
    ref.rnn, ref.head = nn.GRU(3, 8, num_layers=2), nn.Linear(8, 1)
    ours = pt.convert(nn.Sequential())
    ours.rnn, ours.head = pt.GRU(3, 8, num_layers=2), nn.Linear(8, 1)
    ours.load_state_dict(ref.state_dict())

    def loss(model, x):
        y, _ = model.rnn(x)
        return model.head(torch.tanh(y)).square().mean()

    compiled = torch.compile(loss)
    for T in (5, 9, 13):
        x = torch.randn(T, 2, 3)
        a, b = compiled(ours, x), loss(ref, x)
        assert rel_err_t(a, b) <= 1e-4
        grads = [torch.autograd.grad(v, list(m.parameters())) for v, m in ((a, ours), (b, ref))]
        for g, h in zip(*grads):
            assert rel_err_t(g, h) <= 1e-4


def test_traced_fallbacks_run_the_parent(layers_traced):
    """What pyrnn cannot run falls back under torch.compile too, with its warning."""
    ref, ours = pair("lstm", dtype=torch.float32, proj_size=2)
    x = torch.randn(4, 2, 3)
    compiled = torch.compile(ours, backend="aot_eager", fullgraph=True)
    with pytest.warns(pt.FallbackWarning, match="proj_size") as caught:
        out = compiled(x)[0]
        compiled(x)
    assert len([w for w in caught if issubclass(w.category, pt.FallbackWarning)]) == 1
    assert torch.equal(out, ref(x)[0])
    ref, ours = pair("gru", dtype=torch.float32)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        with pytest.warns(pt.FallbackWarning, match="autocast"):
            out = torch.compile(ours, backend="aot_eager", fullgraph=True)(x)[0]
        assert torch.equal(out, ref(x)[0])


LAYER_ARGS = {
    "lstm": ("LSTM", True), "gru": ("GRU", False), "rnn": ("RNN_RELU", False),
}


@pytest.mark.parametrize("training", [True, False])
@pytest.mark.parametrize("lengths", [None, [3, 1, 2]], ids=["padded", "lengths"])
@pytest.mark.parametrize("cell", list(LAYER_ARGS))
def test_operators_pass_torch_opcheck(cell, lengths, training):
    """torch.library.opcheck: schema (what each operator mutates), fake implementations,
    autograd registration, and tracing by AOTAutograd."""
    mode, has_c = LAYER_ARGS[cell]
    G = GATES[cell]
    torch.manual_seed(0)
    T, B, I, H = 3, 3, 2, 4
    x = torch.randn(T, B, I, dtype=torch.float64, requires_grad=training)
    h0 = torch.randn(B, H, dtype=torch.float64, requires_grad=training)
    c0 = torch.randn(B, H, dtype=torch.float64) if has_c else None
    weights = [torch.randn(*shape, dtype=torch.float64, requires_grad=training)
               for shape in ((G * H, I), (G * H, H), (G * H,), (G * H,))]
    lens = None if lengths is None else torch.tensor(lengths)
    args = (x, h0, c0, *weights, lens, mode, False, training, "")
    # AOTAutograd's own test compares every output of two runs, the training workspace's
    # never-written scratch included; the graphs above keep the workspace inside (and run
    # through AOTAutograd there)
    checks = ("test_schema", "test_autograd_registration", "test_faketensor") + (
        () if training else ("test_aot_dispatch_dynamic",))
    torch.library.opcheck(_ops.layer_forward._opoverload, args, test_utils=checks)
    if training:
        with torch.no_grad():
            workspace = _ops.layer_forward(*args)[3]
        dy, dh_n = torch.randn(T, B, H, dtype=torch.float64), torch.randn(B, H,
                                                                           dtype=torch.float64)
        dc_n = torch.randn(B, H, dtype=torch.float64) if has_c else None
        backward_args = (x.detach(), h0.detach(), c0, *(w.detach() for w in weights), lens,
                         workspace, dy, dh_n, dc_n, mode, False, "")
        # every gradient, and some left out (a raw input's, c0's, the biases')
        for wanted in ([True] * 7, [False, True, False, True, True, False, False]):
            torch.library.opcheck(_ops.layer_backward._opoverload,
                                  (*backward_args, wanted))


def layer_arguments(training: bool, dtype=torch.float64):
    """layer_forward's arguments for an LSTM layer-direction of T=3 B=2 I=2 H=4."""
    torch.manual_seed(0)
    T, B, I, H = 3, 2, 2, 4
    x = torch.randn(T, B, I, dtype=dtype)
    h0, c0 = torch.randn(B, H, dtype=dtype), torch.randn(B, H, dtype=dtype)
    weights = [torch.randn(*shape, dtype=dtype) for shape in ((4 * H, I), (4 * H, H), (4 * H,),
                                                              (4 * H,))]
    return (x, h0, c0, *weights, None, "LSTM", False, training, "")


# the operators' schemas at _ops.REVISION
SCHEMAS = {
    "layer_forward": "pyrnn::layer_forward_v2(Tensor x, Tensor? h0, Tensor? c0, Tensor w_ih, "
                     "Tensor w_hh, Tensor? b_ih, Tensor? b_hh, Tensor? lengths, str cell, "
                     "bool reverse, bool training, str backend) -> (Tensor, Tensor, Tensor, "
                     "Tensor)",
    "layer_backward": "pyrnn::layer_backward_v2(Tensor x, Tensor? h0, Tensor? c0, Tensor w_ih, "
                      "Tensor w_hh, Tensor? b_ih, Tensor? b_hh, Tensor? lengths, "
                      "Tensor workspace, Tensor dy, Tensor dh_n, Tensor? dc_n, str cell, "
                      "bool reverse, str backend, bool[] wanted) -> (Tensor, Tensor, Tensor, "
                      "Tensor, Tensor, Tensor, Tensor)",
}


@pytest.mark.parametrize("name", list(SCHEMAS))
def test_operator_schemas_belong_to_their_revision(name):
    """torch.compile's caches know an operator by its name only: a cache written by an older
    pyrnn would run a changed operator with its old arguments. An operator's schema changes
    only with a new ``_ops.REVISION`` in the names, and this table with it."""
    assert str(getattr(_ops, name)._opoverload._schema) == SCHEMAS[name]


def test_backward_reads_a_workspace_off_the_kernels_alignment():
    """A workspace handed to backward that does not start on 64 bytes (a compiled graph's copy
    need not) gives the same gradients: the kernels would find their regions elsewhere."""
    args = layer_arguments(True)
    for w in args[3:7]:
        w.requires_grad_()
    workspace = _ops.layer_forward(*args)[3]
    assert not workspace.requires_grad  # autograd's business is the other outputs
    shifted = torch.empty(workspace.numel() + 1, dtype=workspace.dtype)[1:]
    shifted.copy_(workspace)
    assert shifted.data_ptr() % 64 != 0
    before = workspace.clone()
    x, h0, c0, *weights = (t.detach() for t in args[:7])
    T, B, H = x.shape[0], x.shape[1], h0.shape[1]
    grads_of = [torch.randn(T, B, H, dtype=x.dtype), torch.randn(B, H, dtype=x.dtype),
                torch.randn(B, H, dtype=x.dtype)]
    results = [_ops.layer_backward(x, h0, c0, *weights, None, ws, *grads_of, "LSTM", False,
                                   "", [True] * 7)
               for ws in (workspace, shifted)]
    for a, b in zip(*results):
        assert torch.equal(a, b)
    # backward only reads it, as its schema says (bytes: the scratch's never-written NaNs)
    assert torch.equal(workspace.view(torch.uint8), before.view(torch.uint8))
    with pytest.raises(ValueError, match="expected 7 flags"):
        _ops.layer_backward(x, h0, c0, *weights, None, workspace, *grads_of, "LSTM", False,
                            "", [True] * 6)


@pytest.mark.parametrize("bad", ["short", "long", "dtype"])
def test_backward_refuses_another_workspace(bad):
    """The backward operator is reachable as ``torch.ops.pyrnn``: a workspace that is not its
    forward's (the kernels would read and write past a short one) raises."""
    args = layer_arguments(True)
    workspace = _ops.layer_forward(*args)[3]
    wrong = {"short": workspace[:-1], "long": torch.cat([workspace, workspace[:1]]),
             "dtype": workspace.float()}[bad]
    x, h0, c0, *weights = args[:7]
    T, B, H = x.shape[0], x.shape[1], h0.shape[1]
    grads_of = [torch.zeros(T, B, H, dtype=x.dtype), torch.zeros(B, H, dtype=x.dtype),
                torch.zeros(B, H, dtype=x.dtype)]
    with pytest.raises(ValueError, match="training workspace"):
        _ops.layer_backward(x, h0, c0, *weights, None, wrong, *grads_of, "LSTM", False, "",
                            [True] * 7)


def test_operators_refuse_a_device_backend(monkeypatch):
    """PYRNN_BACKEND may name the CUDA backend, which the operators cannot run on host
    tensors: a clear error, not device arrays taken for host ones."""
    monkeypatch.setattr(_ops, "resolve", lambda name: SimpleNamespace(name="cuda"))
    with pytest.raises(ValueError, match="host backends"):
        _ops.layer_forward(*layer_arguments(False))


def test_traced_device_backend_runs_the_parent(layers_traced):
    ref, ours = pair("gru", dtype=torch.float32)
    ours.backend = "cuda"  # as the constructor sets it where the CUDA backend is installed
    x = torch.randn(4, 2, 3)
    with pytest.warns(pt.FallbackWarning, match="host backends"):
        out = torch.compile(ours, backend="aot_eager")(x)[0]
    assert torch.equal(out, ref(x)[0])


def test_traced_backward_twice_through_a_retained_graph(layers_traced):
    """Backward writes the workspace's scratch only: a second backward through the same graph
    gives the same gradients."""
    _, ours = pair("lstm", num_layers=2)
    compiled = torch.compile(ours, fullgraph=True)
    x = torch.randn(5, 2, 3, dtype=torch.float64, requires_grad=True)
    out = compiled(x)[0].square().sum()
    first = torch.autograd.grad(out, [x, *ours.parameters()], retain_graph=True)
    second = torch.autograd.grad(out, [x, *ours.parameters()])
    for a, b in zip(first, second):
        assert torch.equal(a, b)


@pytest.mark.parametrize("needs", [(False, None, True, True), (True, False, False, True),
                                   (False, True, True, False)],
                         ids=["raw-x", "frozen-w", "frozen-b"])
@pytest.mark.parametrize("bias", [True, False], ids=["bias", "no-bias"])
@pytest.mark.parametrize("backend", HOST_BACKENDS)
def test_traced_backward_asks_only_for_what_autograd_needs(backend, bias, needs, monkeypatch,
                                                            layers_traced):
    """Compiled, each layer-direction's backward operator is asked only for the gradients
    autograd needs (the first layer's dx when the input requires grad, the states' when given
    with requires_grad, no frozen weights'; the kernels skip the rest), and gives torch.nn's.
    needs: whether x, the states (None: not given), the weights, the biases require grad."""
    if backend == "c":  # the operators call the kernels by pointer
        module, name = pyrnn._c, "backward_at"
    else:
        module, name = pyrnn._backend.resolve(backend), "lstm_backward"
    asked = []
    original = getattr(module, name)

    def spy(*args, **kwargs):
        asked.append(kwargs.get("wanted", args[-1]))
        return original(*args, **kwargs)

    monkeypatch.setattr(module, name, spy, raising=False)
    x_grad, state_grad, weight_grad, bias_grad = needs
    ref, ours = pair("lstm", num_layers=2, bidirectional=True, bias=bias, backend=backend)
    compiled = torch.compile(ours, backend="aot_eager", fullgraph=True)
    x = torch.randn(4, 2, 3, dtype=torch.float64)
    states = ([] if state_grad is None else
              [torch.randn(4, 2, 5, dtype=torch.float64) for _ in range(2)])
    want, got = gradients_needing((ref, compiled), needs, x, states,
                                  lambda model, xin, hs: model(xin, tuple(hs) or None)[0])
    for g, w in zip(got, want):
        assert rel_err_t(g, w) <= tolerance(torch.float64)
    # (dx, dh0, dc0, dw_ih, dw_hh, db_ih, db_hh); the kernels take no biases' flags without
    biases = (bias_grad and bias,) * 2 if bias or backend != "c" else ()
    states_wanted = (bool(state_grad),) * 2
    first = [(x_grad, *states_wanted, weight_grad, weight_grad, *biases)] * 2
    later = [(True, *states_wanted, weight_grad, weight_grad, *biases)] * 2
    assert sorted(tuple(a) for a in asked) == sorted(first + later)


def test_compiled_device_tensors_run_the_parent():
    model = pt.LSTM(3, 4)
    cuda_like = SimpleNamespace(dtype=torch.float32, device=torch.device("cuda", 0), is_cpu=False)
    backend, reason = model._backend_or_reason(cuda_like, True)
    assert backend is None and "cuda tensors" in reason
