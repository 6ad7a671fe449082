"""Second derivatives through pyrnn.torch (a backward with ``create_graph=True``, then another
backward): torch.nn's, for layers and cells, every input and parameter."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.nn.utils.rnn import PackedSequence, pack_padded_sequence

import pyrnn.torch as pt
from pyrnn.torch import _twice

from .conftest import HOST_BACKENDS, rel_err

F64 = torch.float64

# (torch.nn class, pyrnn.torch class, constructor keywords, input kind, hx given)
LAYER_CASES = {
    "rnn_tanh": (nn.RNN, pt.RNN, {}, "padded", False),
    "rnn_relu_2_layers_hx": (nn.RNN, pt.RNN, {"nonlinearity": "relu", "num_layers": 2},
                             "padded", True),
    "lstm_bidirectional_packed_hx": (nn.LSTM, pt.LSTM, {"bidirectional": True}, "packed",
                                     True),
    "gru_2_layers_bidirectional_batch_first": (
        nn.GRU, pt.GRU, {"num_layers": 2, "bidirectional": True, "batch_first": True},
        "padded", False),
    "lstm_no_bias_packed": (nn.LSTM, pt.LSTM, {"bias": False}, "packed", False),
    "gru_unbatched": (nn.GRU, pt.GRU, {}, "unbatched", True),
}
CELL_CASES = {
    "rnn_tanh": (nn.RNNCell, pt.RNNCell, {}),
    "rnn_relu_no_bias": (nn.RNNCell, pt.RNNCell, {"nonlinearity": "relu", "bias": False}),
    "lstm": (nn.LSTMCell, pt.LSTMCell, {}),
    "gru": (nn.GRUCell, pt.GRUCell, {}),
}
I, H = 3, 4


def _layer_call(model, case, seed):
    """The inputs of a call (leaves requiring grad) and a function running the model on them
    and returning every output tensor."""
    _, _, kwargs, kind, with_hx = case
    gen = torch.Generator().manual_seed(seed)
    D = 2 if kwargs.get("bidirectional") else 1
    L = kwargs.get("num_layers", 1)
    T, B = 5, 3
    shape = (T, I) if kind == "unbatched" else (B, T, I) if kwargs.get("batch_first") \
        else (T, B, I)
    x = torch.randn(shape, generator=gen, dtype=F64, requires_grad=True)
    state_shape = (L * D, H) if kind == "unbatched" else (L * D, B, H)
    n_states = 2 if issubclass(case[0], nn.LSTM) else 1
    states = [torch.randn(state_shape, generator=gen, dtype=F64, requires_grad=True)
              for _ in range(n_states)] if with_hx else []

    def run():
        inp = pack_padded_sequence(x, torch.tensor([5, 2, 4]), enforce_sorted=False) \
            if kind == "packed" else x
        hx = None if not states else tuple(states) if n_states == 2 else states[0]
        out, hidden = model(inp, hx)
        data = out.data if isinstance(out, PackedSequence) else out
        return [data, *(hidden if isinstance(hidden, tuple) else (hidden,))]

    return [x, *states], run


def _second_derivatives(model, inputs, run):
    """The gradients, of every input and parameter, of the squared norm of the first
    gradients (themselves of a weighted sum of squares of the outputs)."""
    leaves = [*inputs, *model.parameters()]
    outputs = run()
    loss = sum((k + 1) * o.pow(2).sum() for k, o in enumerate(outputs))
    first = torch.autograd.grad(loss, leaves, create_graph=True)
    penalty = sum(g.pow(2).sum() for g in first)
    return first, torch.autograd.grad(penalty, leaves)


def _assert_close(got, want):
    for g, w in zip(got, want):
        assert rel_err(g.detach().numpy(), w.detach().numpy()) <= 1e-10


@pytest.mark.parametrize("backend", HOST_BACKENDS)
@pytest.mark.parametrize("name", list(LAYER_CASES))
def test_layer_second_derivatives_match_torch(name, backend):
    case = LAYER_CASES[name]
    torch.manual_seed(7)
    reference = case[0](I, H, dtype=F64, **case[2])
    ours = case[1](I, H, dtype=F64, backend=backend, **case[2])
    ours.load_state_dict(reference.state_dict())
    results = []
    for model in (reference, ours):
        inputs, run = _layer_call(model, case, seed=8)
        results.append(_second_derivatives(model, inputs, run))
    (first_ref, second_ref), (first, second) = results
    _assert_close(first, first_ref)
    _assert_close(second, second_ref)


@pytest.mark.parametrize("backend", HOST_BACKENDS)
@pytest.mark.parametrize("name", list(CELL_CASES))
def test_cell_second_derivatives_match_torch(name, backend):
    ref_class, our_class, kwargs = CELL_CASES[name]
    torch.manual_seed(9)
    reference = ref_class(I, H, dtype=F64, **kwargs)
    ours = our_class(I, H, dtype=F64, backend=backend, **kwargs)
    ours.load_state_dict(reference.state_dict())
    lstm = ref_class is nn.LSTMCell
    results = []
    for model in (reference, ours):
        gen = torch.Generator().manual_seed(10)
        x = torch.randn(2, I, generator=gen, dtype=F64, requires_grad=True)
        states = [torch.randn(2, H, generator=gen, dtype=F64, requires_grad=True)
                  for _ in range(2 if lstm else 1)]

        def run(model=model, x=x, states=states):
            out = model(x, tuple(states) if lstm else states[0])
            return list(out) if lstm else [out]

        results.append(_second_derivatives(model, [x, *states], run))
    (first_ref, second_ref), (first, second) = results
    _assert_close(first, first_ref)
    _assert_close(second, second_ref)


def test_a_cell_without_states_has_second_derivatives():
    reference = nn.LSTMCell(I, H, dtype=F64)
    ours = pt.LSTMCell(I, H, dtype=F64)
    ours.load_state_dict(reference.state_dict())
    results = []
    for model in (reference, ours):
        x = torch.randn(2, I, generator=torch.Generator().manual_seed(3), dtype=F64,
                        requires_grad=True)
        results.append(_second_derivatives(model, [x], lambda model=model, x=x: list(model(x))))
    _assert_close(results[1][1], results[0][1])


@pytest.mark.parametrize("backend", HOST_BACKENDS)
def test_gradgradcheck_through_a_stack_and_a_cell(backend):
    torch.manual_seed(11)
    layer = pt.LSTM(2, 2, num_layers=2, bidirectional=True, dtype=F64, backend=backend)
    lengths = torch.tensor([3, 2])
    x = torch.randn(3, 2, 2, dtype=F64, requires_grad=True)
    h0 = torch.randn(4, 2, 2, dtype=F64, requires_grad=True)
    c0 = torch.randn(4, 2, 2, dtype=F64, requires_grad=True)

    def run_layer(x, h0, c0):
        out, (h, c) = layer(pack_padded_sequence(x, lengths), (h0, c0))
        return out.data, h, c

    assert torch.autograd.gradgradcheck(run_layer, [x, h0, c0], eps=1e-6, atol=1e-6)
    cell = pt.GRUCell(2, 3, dtype=F64, backend=backend)
    h = torch.randn(2, 3, dtype=F64, requires_grad=True)
    assert torch.autograd.gradgradcheck(cell, [x[0], h], eps=1e-6, atol=1e-6)


@pytest.mark.parametrize("backend", HOST_BACKENDS)
def test_graph_gradients_use_the_forwards_dropout_masks(backend):
    """With dropout between layers, the gradients built as a graph are those of the same
    forward's fast backward (the masks it drew), and their derivatives check numerically with
    the masks fixed by reseeding."""
    model = pt.GRU(2, 3, num_layers=3, dropout=0.5, dtype=F64, backend=backend)
    model.train()
    x = torch.randn(4, 2, 2, dtype=F64, requires_grad=True)
    out, h = model(x)
    loss = out.pow(2).sum() + h.pow(2).sum()
    leaves = [x, *model.parameters()]
    fast = torch.autograd.grad(loss, leaves, retain_graph=True)
    graph = torch.autograd.grad(loss, leaves, create_graph=True)
    assert all(g.requires_grad for g in graph)
    _assert_close(graph, fast)

    def run(x):
        torch.manual_seed(12)
        return model(x)[0]

    assert torch.autograd.gradgradcheck(run, [x], eps=1e-6, atol=1e-6)


def test_a_plain_backward_stays_pyrnns(monkeypatch):
    """Only a backward asked for a graph runs torch's operators again."""
    def refuse(*args):
        raise AssertionError("recomputed through torch's operators")

    monkeypatch.setattr(_twice, "gradients", refuse)
    stack, layer, cell = pt.LSTM(3, 4, num_layers=2), pt.RNN(3, 4), pt.GRUCell(3, 4)
    x = torch.randn(5, 2, 3, requires_grad=True)
    (stack(x)[0].sum() + layer(x)[0].sum() + cell(x[0]).sum()).backward()
    assert x.grad is not None


@pytest.mark.parametrize("backend", HOST_BACKENDS)
def test_a_meta_learning_step_through_functional_call(backend):
    """MAML's outer gradient: an inner step's weights are a graph of the first gradients, run
    through torch.func.functional_call."""
    torch.manual_seed(13)
    reference = nn.GRU(3, 5, num_layers=2, dtype=F64)
    ours = pt.GRU(3, 5, num_layers=2, dtype=F64, backend=backend)
    ours.load_state_dict(reference.state_dict())
    x, y = torch.randn(6, 4, 3, dtype=F64), torch.randn(6, 4, 5, dtype=F64)
    outer_grads = []
    for model in (reference, ours):
        params = dict(model.named_parameters())
        loss = (torch.func.functional_call(model, params, (x,))[0] - y).pow(2).mean()
        grads = torch.autograd.grad(loss, list(params.values()), create_graph=True)
        stepped = {k: v - 0.1 * g for (k, v), g in zip(params.items(), grads)}
        (torch.func.functional_call(model, stepped, (x,))[0] - y).pow(2).mean().backward()
        outer_grads.append([p.grad for p in model.parameters()])
    _assert_close(outer_grads[1], outer_grads[0])
