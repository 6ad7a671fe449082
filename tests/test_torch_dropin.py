"""pyrnn.torch against torch.nn: outputs, states and every gradient, for random configurations."""

from __future__ import annotations

import os
import subprocess
import sys
import warnings
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence

import pyrnn
import pyrnn.torch as pt

from .conftest import rel_err

LAYERS = {"rnn_tanh": (nn.RNN, pt.RNN, {"nonlinearity": "tanh"}),
          "rnn_relu": (nn.RNN, pt.RNN, {"nonlinearity": "relu"}),
          "lstm": (nn.LSTM, pt.LSTM, {}), "gru": (nn.GRU, pt.GRU, {})}
CELLS = {"rnn_tanh": (nn.RNNCell, pt.RNNCell, {"nonlinearity": "tanh"}),
         "rnn_relu": (nn.RNNCell, pt.RNNCell, {"nonlinearity": "relu"}),
         "lstm": (nn.LSTMCell, pt.LSTMCell, {}), "gru": (nn.GRUCell, pt.GRUCell, {})}
INPUTS = ("padded", "packed_sorted", "packed_unsorted", "unbatched")


def rel_err_t(a, b) -> float:
    return rel_err(a.detach(), b.detach())


def tolerance(dtype) -> float:
    return 1e-10 if dtype == torch.float64 else 1e-4


def random_configs(n: int, seed: int = 2024) -> list[dict]:
    rng = np.random.default_rng(seed)
    configs = []
    for k in range(n):
        kind = INPUTS[(k // 4) % 4]
        configs.append(dict(
            seed=k, cell=list(LAYERS)[k % 4], input=kind,
            num_layers=int(rng.integers(1, 4)), bidirectional=bool(rng.integers(2)),
            batch_first=bool(rng.integers(2)), bias=bool(rng.integers(2)),
            hx=bool(rng.integers(2)), dtype=(torch.float32, torch.float64)[k // 16 % 2],
            # packed batches of at least 2, so lengths differ
            T=int(rng.integers(1, 6)), B=int(rng.integers(2 if "packed" in kind else 1, 5)),
            I=int(rng.integers(1, 5)),
            H=int(rng.integers(1, 5))))
    return configs


def config_id(c: dict) -> str:
    return (f"{c['cell']}-{c['input']}-L{c['num_layers']}{'-bi' if c['bidirectional'] else ''}"
            f"{'-bf' if c['batch_first'] else ''}{'' if c['bias'] else '-nobias'}"
            f"{'-hx' if c['hx'] else ''}-{str(c['dtype'])[6:]}")


def make_pair(table, c: dict, backend: str, **sizes):
    torch_cls, ours_cls, extra = table[c["cell"]]
    ref = torch_cls(**sizes, bias=c["bias"], dtype=c["dtype"], **extra)
    ours = ours_cls(**sizes, bias=c["bias"], dtype=c["dtype"], backend=backend, **extra)
    ours.load_state_dict(ref.state_dict())
    return ref, ours


def leaves(*tensors):
    """Fresh leaf copies that require grad, one set per model so gradients do not mix."""
    return [None if t is None else t.detach().clone().requires_grad_() for t in tensors]


def run_layer(model, c, x, states, lengths):
    """model on the config's input kind (packing x when asked): ``out, hidden``."""
    hx = None if not states else (tuple(states) if c["cell"] == "lstm" else states[0])
    if c["input"].startswith("packed"):
        x = pack_padded_sequence(x, lengths, batch_first=c["batch_first"],
                                 enforce_sorted=c["input"] == "packed_sorted")
    return model(x, hx)


def graph_node_names(t) -> set:
    """The names of the autograd nodes that ``t`` was computed through."""
    names, todo = set(), [t.grad_fn]
    while todo:
        node = todo.pop()
        if node is not None and type(node).__name__ not in names:
            names.add(type(node).__name__)
            todo.extend(f for f, _ in node.next_functions)
    return names


def flat_outputs(out, hidden):
    """Everything a model returns, as tensors (PackedSequence as its data)."""
    data = out.data if isinstance(out, nn.utils.rnn.PackedSequence) else out
    return [data, *(hidden if isinstance(hidden, tuple) else (hidden,))]


@pytest.mark.parametrize("c", random_configs(48), ids=config_id)
def test_layer_matches_torch(c, backend):
    torch.manual_seed(c["seed"])
    D = 2 if c["bidirectional"] else 1
    T, B, I, H = c["T"], c["B"], c["I"], c["H"]
    ref, ours = make_pair(LAYERS, c, backend, input_size=I, hidden_size=H,
                          num_layers=c["num_layers"], bidirectional=c["bidirectional"],
                          batch_first=c["batch_first"])
    unbatched = c["input"] == "unbatched"
    x_shape = (T, I) if unbatched else ((B, T, I) if c["batch_first"] else (T, B, I))
    x = torch.randn(x_shape, dtype=c["dtype"])
    lengths = None
    if c["input"].startswith("packed"):
        lengths = torch.randint(1, T + 1, (B,))
        lengths[0] = T
        if c["input"] == "packed_sorted":
            lengths = lengths.sort(descending=True).values
    n_states = 2 if c["cell"] == "lstm" else 1
    state_shape = (c["num_layers"] * D, H) if unbatched else (c["num_layers"] * D, B, H)
    states = [torch.randn(state_shape, dtype=c["dtype"]) for _ in range(n_states)] \
        if c["hx"] else []

    results = []
    for model in (ref, ours):
        x_leaf, *state_leaves = leaves(x, *states)
        outs = flat_outputs(*run_layer(model, c, x_leaf, state_leaves, lengths))
        results.append((x_leaf, state_leaves, outs, model))
    outs_r, outs_o = results[0][2], results[1][2]

    if c["input"].startswith("packed"):
        # the packed structure itself must match too
        o_r = run_layer(ref, c, x, [], lengths)[0]
        o_o = run_layer(ours, c, x, [], lengths)[0]
        for field in ("batch_sizes", "sorted_indices", "unsorted_indices"):
            a, b = getattr(o_o, field), getattr(o_r, field)
            assert (a is None and b is None) or torch.equal(a, b), field
    tol = tolerance(c["dtype"])
    for a, b in zip(outs_o, outs_r):
        assert a.shape == b.shape and a.dtype == b.dtype
        assert rel_err_t(a, b) <= tol

    # one loss that touches every output with random weights, so every gradient is exercised
    weights = [torch.randn(o.shape, dtype=c["dtype"]) for o in outs_r]
    grads = []
    for x_leaf, s_leaves, outs, model in results:
        loss = sum((o * w).sum() for o, w in zip(outs, weights))
        wrt = [x_leaf, *s_leaves, *model.parameters()]
        grads.append(torch.autograd.grad(loss, wrt))
    names = ["input", *[f"hx{k}" for k in range(len(states))],
             *[n for n, _ in ref.named_parameters()]]
    for name, g_o, g_r in zip(names, *grads):
        assert g_o.shape == g_r.shape, name
        assert rel_err_t(g_o, g_r) <= tol, name


@pytest.mark.parametrize("cell", list(CELLS))
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("batched,hx", [(True, True), (True, False), (False, True)],
                         ids=["batched-hx", "batched", "unbatched-hx"])
def test_cell_matches_torch(cell, dtype, batched, hx, backend):
    torch.manual_seed(7)
    c = dict(cell=cell, bias=cell != "gru", dtype=dtype)
    ref, ours = make_pair(CELLS, c, backend, input_size=3, hidden_size=4)
    x = torch.randn((5, 3) if batched else (3,), dtype=dtype)
    state_shape = (5, 4) if batched else (4,)
    states = [torch.randn(state_shape, dtype=dtype) for _ in range(2 if cell == "lstm" else 1)]
    runs = []
    for model in (ref, ours):
        x_leaf, *s_leaves = leaves(x, *states)
        hx_arg = (tuple(s_leaves) if cell == "lstm" else s_leaves[0]) if hx else None
        out = model(x_leaf, hx_arg)
        outs = list(out) if cell == "lstm" else [out]
        runs.append((x_leaf, s_leaves if hx else [], outs, model))
    weights = [torch.randn(o.shape, dtype=dtype) for o in runs[0][2]]
    grads = []
    for (x_leaf, s_leaves, outs, model), other in zip(runs, reversed(runs)):
        for a, b in zip(outs, other[2]):
            assert a.shape == b.shape and rel_err_t(a, b) <= tolerance(dtype)
        loss = sum((o * w).sum() for o, w in zip(outs, weights))
        grads.append(torch.autograd.grad(loss, [x_leaf, *s_leaves, *model.parameters()]))
    for g_r, g_o in zip(*grads):
        assert rel_err_t(g_o, g_r) <= tolerance(dtype)


def _gradcheck_cell(model, x, states):
    """gradcheck over the input, the states and every parameter, through functional_call."""
    names = [n for n, _ in model.named_parameters()]
    params = [p.detach().clone().requires_grad_() for p in model.parameters()]

    def fn(x, *rest):
        st, ps = rest[: len(states)], rest[len(states):]
        hx = tuple(st) if len(st) == 2 else st[0]
        return torch.func.functional_call(model, dict(zip(names, ps)), (x, hx))

    inputs = [x.requires_grad_(), *[s.requires_grad_() for s in states], *params]
    assert torch.autograd.gradcheck(fn, inputs, eps=1e-6, atol=1e-7)


@pytest.mark.parametrize("cell", list(LAYERS))
def test_layer_gradcheck_float64(cell):
    torch.manual_seed(3)
    _, ours, extra = LAYERS[cell]
    model = ours(2, 2, num_layers=2, bidirectional=True, dtype=torch.float64,
                 backend="numpy", **extra)
    lengths = torch.tensor([2, 3])
    x = pack_padded_sequence(torch.randn(3, 2, 2, dtype=torch.float64), lengths,
                             enforce_sorted=False)
    states = [torch.randn(4, 2, 2, dtype=torch.float64) for _ in range(1 + (cell == "lstm"))]
    names = [n for n, _ in model.named_parameters()]
    params = [p.detach().clone().requires_grad_() for p in model.parameters()]

    def fn(data, *rest):
        st, ps = rest[: len(states)], rest[len(states):]
        packed = nn.utils.rnn.PackedSequence(data, x.batch_sizes, x.sorted_indices,
                                             x.unsorted_indices)
        hx = tuple(st) if len(st) == 2 else st[0]
        out, hidden = torch.func.functional_call(model, dict(zip(names, ps)),
                                                 (packed, hx))
        return flat_outputs(out, hidden)

    inputs = [x.data.clone().requires_grad_(), *[s.requires_grad_() for s in states], *params]
    assert torch.autograd.gradcheck(fn, inputs, eps=1e-6, atol=1e-7)


@pytest.mark.parametrize("cell", list(CELLS))
def test_cell_gradcheck_float64(cell):
    torch.manual_seed(4)
    _, ours, extra = CELLS[cell]
    model = ours(2, 3, dtype=torch.float64, backend="numpy", **extra)
    states = [torch.randn(2, 3, dtype=torch.float64) for _ in range(1 + (cell == "lstm"))]
    _gradcheck_cell(model, torch.randn(2, 2, dtype=torch.float64), states)


def test_dropout_follows_torch_seed_and_mode():
    model = pt.GRU(3, 5, num_layers=3, dropout=0.5, dtype=torch.float64, backend="numpy")
    x = torch.randn(4, 2, 3, dtype=torch.float64)
    model.train()
    torch.manual_seed(11)
    a = model(x)[0]
    torch.manual_seed(11)
    b = model(x)[0]
    c = model(x)[0]
    assert torch.equal(a, b)
    assert not torch.equal(a, c)
    model.eval()
    reference = nn.GRU(3, 5, num_layers=3, dtype=torch.float64)
    reference.load_state_dict(model.state_dict())
    assert rel_err_t(model(x)[0], reference(x)[0]) <= 1e-10


def test_dropout_gradients_are_consistent():
    """gradcheck with the masks fixed by reseeding torch before every evaluation."""
    model = pt.LSTM(2, 3, num_layers=2, dropout=0.4, dtype=torch.float64, backend="numpy")
    model.train()
    x = torch.randn(3, 2, 2, dtype=torch.float64, requires_grad=True)

    def fn(x):
        torch.manual_seed(5)
        return model(x)[0]

    assert torch.autograd.gradcheck(fn, [x], eps=1e-6, atol=1e-7)


def test_parameters_train_with_an_optimizer():
    model = pt.LSTM(3, 4, backend="numpy")
    assert [n for n, _ in model.named_parameters()] == \
        [n for n, _ in nn.LSTM(3, 4).named_parameters()]
    assert all(isinstance(p, nn.Parameter) for p in model.parameters())
    opt = torch.optim.SGD(model.parameters(), lr=0.5)
    x, target = torch.randn(6, 2, 3), torch.randn(6, 2, 4)
    losses = []
    for _ in range(5):
        opt.zero_grad()
        loss = ((model(x)[0] - target) ** 2).mean()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0]


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_inference_runs_outside_autograd_with_the_same_results(cell, backend):
    """Without gradients to compute, the stack runs outside autograd: no graph on the results,
    which match the recorded forward's bits; a weight assigned anew is the one used."""
    ref, ours = make_pair(LAYERS, dict(cell=cell, bias=True, dtype=torch.float64), backend,
                          input_size=3, hidden_size=4)
    x = torch.randn(5, 2, 3, dtype=torch.float64)
    recorded = flat_outputs(*ours(x.clone().requires_grad_()))
    assert all(t.grad_fn is not None for t in recorded)
    with torch.no_grad():
        plain = flat_outputs(*ours(x))
    for model in (ours, ref):
        for p in model.parameters():
            p.requires_grad_(False)
    frozen = flat_outputs(*ours(x))
    for a, b, c in zip(recorded, plain, frozen):
        assert not b.requires_grad and b.grad_fn is None and c.grad_fn is None
        assert torch.equal(a.detach(), b) and torch.equal(b, c)
    new_w = torch.randn_like(ref.weight_hh_l0)
    for model in (ref, ours):
        model.weight_hh_l0 = nn.Parameter(new_w.clone())
    for a, b in zip(flat_outputs(*ours(x)), flat_outputs(*ref(x))):
        assert rel_err_t(a, b) <= 1e-10


@pytest.mark.parametrize("cell", list(CELLS))
def test_cell_inference_runs_outside_autograd_with_the_same_results(cell, backend):
    """A cell step without gradients to compute goes straight to the backend (no graph on the
    results, the recorded forward's bits); a weight assigned anew is the one used."""
    ref, ours = make_pair(CELLS, dict(cell=cell, bias=True, dtype=torch.float64), backend,
                          input_size=3, hidden_size=4)
    x = torch.randn(2, 3, dtype=torch.float64)
    hx = torch.randn(2, 4, dtype=torch.float64)
    hx = (hx, torch.randn(2, 4, dtype=torch.float64)) if cell == "lstm" else hx
    as_list = (lambda out: list(out)) if cell == "lstm" else (lambda out: [out])
    recorded = as_list(ours(x.clone().requires_grad_(), hx))
    assert all(t.grad_fn is not None for t in recorded)
    with torch.no_grad():
        plain = as_list(ours(x, hx))
    for a, b in zip(recorded, plain):
        assert b.grad_fn is None and torch.equal(a.detach(), b)
    new_w = torch.randn_like(ref.weight_hh)
    for model in (ref, ours):
        model.weight_hh = nn.Parameter(new_w.clone())
    with torch.no_grad():
        for a, b in zip(as_list(ours(x, hx)), as_list(ref(x, hx))):
            assert rel_err_t(a, b) <= 1e-10


@pytest.mark.parametrize("cell", list(CELLS))
def test_cell_takes_strided_tensors_and_one_used_output(cell, backend):
    """Transposed (non-contiguous) input, state and weight reach the backend as they are; an
    LSTMCell whose h' is not used gets no gradient for it (c' alone flows back)."""
    ref, ours = make_pair(CELLS, dict(cell=cell, bias=True, dtype=torch.float64), backend,
                          input_size=3, hidden_size=4)
    w_t = torch.randn(ref.weight_ih.shape[::-1], dtype=torch.float64)
    for model in (ref, ours):
        model.weight_ih = nn.Parameter(w_t.clone().t())
        assert not model.weight_ih.is_contiguous()
    x = torch.randn(3, 2, dtype=torch.float64).t()
    states = [torch.randn(4, 2, dtype=torch.float64).t() for _ in range(1 + (cell == "lstm"))]
    grads = []
    for model in (ref, ours):
        x_leaf, *s_leaves = leaves(x, *states)  # clones keep the strides
        assert not any(t.is_contiguous() for t in (x_leaf, *s_leaves))
        out = model(x_leaf, tuple(s_leaves) if cell == "lstm" else s_leaves[0])
        used = out[1] if cell == "lstm" else out
        grads.append((used, torch.autograd.grad(used.sum(), [x_leaf, *s_leaves,
                                                             *model.parameters()])))
    (a, ga), (b, gb) = grads
    assert rel_err_t(a, b) <= 1e-10
    for g_o, g_r in zip(gb, ga):
        assert rel_err_t(g_o, g_r) <= 1e-10


@pytest.mark.parametrize("cell", list(LAYERS))
@pytest.mark.parametrize("batch_first", [False, True], ids=["tm", "bf"])
def test_one_layer_one_direction_matches_torch(cell, batch_first, backend):
    """A layer of one layer and one direction, which on the C backend goes by pointer
    (LayerFunction): packed sequences of distinct lengths in any order, hx given or not, both
    dtypes, every output and gradient; and the same with gradients off."""
    torch.manual_seed(11)
    T, B, I, H = 6, 4, 3, 5
    lengths = torch.tensor([3, 6, 1, 4])
    for dtype, hx_given in ((torch.float64, True), (torch.float32, False)):
        ref, ours = make_pair(LAYERS, dict(cell=cell, bias=cell != "gru", dtype=dtype), backend,
                              input_size=I, hidden_size=H, batch_first=batch_first)
        x = torch.randn((B, T, I) if batch_first else (T, B, I), dtype=dtype)
        states = [torch.randn(1, B, H, dtype=dtype) for _ in range(1 + (cell == "lstm"))] \
            if hx_given else []
        c = dict(cell=cell, input="packed_unsorted", batch_first=batch_first)
        results = []
        for model in (ref, ours):
            x_leaf, *s_leaves = leaves(x, *states)
            outs = flat_outputs(*run_layer(model, c, x_leaf, s_leaves, lengths))
            results.append((outs, [x_leaf, *s_leaves, *model.parameters()]))
        if backend == "c":
            assert "LayerFunctionBackward" in graph_node_names(results[1][0][1])
        weights = [torch.randn(o.shape, dtype=dtype) for o in results[0][0]]
        grads = [torch.autograd.grad(sum((o * w).sum() for o, w in zip(outs, weights)), inputs)
                 for outs, inputs in results]
        tol = tolerance(dtype)
        for a, b in zip(results[1][0] + list(grads[1]), results[0][0] + list(grads[0])):
            assert a.shape == b.shape and rel_err_t(a, b) <= tol
        with torch.no_grad():
            for a, b in zip(*(flat_outputs(*run_layer(m, c, x, states, lengths))
                              for m in (ours, ref))):
                assert rel_err_t(a, b) <= tol


@pytest.mark.skipif("c" not in pyrnn.available_backends(), reason="needs the C extension")
def test_calls_by_pointer_check_every_size():
    """The kernels read as many elements as the sizes say: anything of another size raises
    before a pointer to it is handed over."""
    from pyrnn.torch import _pointers

    spec, be = pt._function.SPECS["LSTM"], pyrnn._backend.resolve("c")
    T, B, I, H = 3, 2, 4, 5
    good = dict(x=torch.randn(T, B, I), h0=torch.randn(1, B, H), c0=None,
                weights=(torch.randn(4 * H, I), torch.randn(4 * H, H), torch.randn(4 * H),
                         torch.randn(4 * H)), lengths=np.array([3, 2]))
    workspace = np.empty(spec.workspace_len(be, T, B, I, H, True), np.float32)

    def run(**change):
        args = {**good, **change}
        _pointers.forward(spec, be, args["x"], args["h0"], args["c0"], args["weights"],
                          args["lengths"], False, True, workspace)

    run()
    w_ih, w_hh, b_ih, b_hh = good["weights"]
    for change, what in [(dict(lengths=np.array([3, 2, 1])), "lengths"),
                         (dict(lengths=np.array([3, 2], np.int32)), "lengths"),
                         (dict(h0=torch.randn(B, H + 1)), "h0"),
                         (dict(c0=torch.randn(2, B, H)), "c0"),
                         (dict(weights=(w_ih, torch.randn(4 * H, H - 1), b_ih, b_hh)), "w_"),
                         (dict(weights=(w_ih, w_hh, torch.randn(4 * H + 1), b_hh)), "b_ih"),
                         # the states and x may have a leading 1, the weights may not
                         (dict(weights=(w_ih[None], w_hh, b_ih, b_hh)), "w_ih"),
                         (dict(weights=(w_ih, w_hh, b_ih, b_hh[None])), "b_hh")]:
        with pytest.raises(ValueError, match=what):
            run(**change)
    dy = torch.randn(T, B, H)
    _pointers.backward(spec, be, good["x"], good["h0"], None, good["weights"], good["lengths"],
                       False, dy, None, None, workspace)
    for change, what in [(dict(dy=torch.randn(T, B + 1, H)), "dy"),
                         (dict(dh_n=torch.randn(B, 2 * H)), "dh_n")]:
        args = {"dy": dy, "dh_n": None, **change}
        with pytest.raises(ValueError, match=what):
            _pointers.backward(spec, be, good["x"], good["h0"], None, good["weights"],
                               good["lengths"], False, args["dy"], args["dh_n"], None,
                               workspace)


@pytest.mark.parametrize("cell", list(CELLS))
def test_cell_reads_a_lazily_negated_input(cell, backend):
    """The imaginary part of a conjugate is a view whose negation is applied lazily; one of a
    single element is contiguous too, and must still be read negated."""
    ref, ours = make_pair(CELLS, dict(cell=cell, bias=True, dtype=torch.float64), backend,
                          input_size=1, hidden_size=3)
    x = torch.randn(1, 1, dtype=torch.complex128).conj().imag
    assert x.is_neg() and x.is_contiguous()
    for grad in (False, True):
        x_in = x.clone() if grad else x  # a clone resolves the negation
        x_in.requires_grad_(grad)
        got, want = ours(x_in), ref(x_in)
        assert rel_err_t(got[0] if cell == "lstm" else got,
                         want[0] if cell == "lstm" else want) <= 1e-10


@pytest.mark.parametrize("cell", ["rnn_tanh", "lstm", "gru"])
@pytest.mark.parametrize("name, shape", [("weight_hh", lambda GH, H: (GH, H + 1)),
                                         ("weight_ih", lambda GH, H: (GH + 1, 2)),
                                         ("bias_hh", lambda GH, H: (GH - 1,))])
def test_cell_weight_of_another_shape_raises(cell, name, shape, backend):
    """A weight put in a cell's place with a shape that does not fit raises as torch.nn's
    does, with and without gradients, rather than the kernels reading past it."""
    _, ours = make_pair(CELLS, dict(cell=cell, bias=True, dtype=torch.float64), backend,
                        input_size=2, hidden_size=3)
    params = dict(ours.named_parameters())
    params[name] = torch.randn(shape(params["weight_hh"].shape[0], 3), dtype=torch.float64)
    x = torch.randn(4, 2, dtype=torch.float64)
    for grad in (False, True):
        with torch.set_grad_enabled(grad), \
                pytest.raises((ValueError, RuntimeError), match=r"w_|b_|shape|size"):
            torch.func.functional_call(ours, params, (x,))


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_cells_from_several_threads(cell, backend):
    """Steps from several Python threads at once (the kernels release the GIL; each thread has
    its own reused workspace) give each thread's own results, forward and backward."""
    from concurrent.futures import ThreadPoolExecutor

    torch.manual_seed(10)
    ref, ours = make_pair(CELLS, dict(cell=cell, bias=True, dtype=torch.float64), backend,
                          input_size=24, hidden_size=48)
    xs = [torch.randn(8, 24, dtype=torch.float64) for _ in range(4)]

    def chain(model, x):
        hx = None
        for _ in range(20):
            hx = model(x, hx)
        h = hx[0] if cell == "lstm" else hx
        return (h, *torch.autograd.grad(h.sum(), [x, *model.parameters()]))

    def run(model, x):
        return chain(model, x.clone().requires_grad_())

    want = [run(ref, x) for x in xs]
    with ThreadPoolExecutor(4) as pool:
        got = list(pool.map(lambda x: run(ours, x), xs * 3))
    for k, results in enumerate(got):
        for a, b in zip(results, want[k % 4]):
            assert rel_err_t(a, b) <= 1e-10


@pytest.mark.parametrize("cell", list(CELLS))
def test_cell_keeps_no_scratch_between_forward_and_backward(cell, backend, monkeypatch):
    """A cell step under autograd keeps its workspace's front part alone (the kernels' scratch
    after it is most of a one-step workspace), and backward needs nothing else: with every
    workspace NaN where nothing wrote, the gradients still match torch.nn's."""
    empty = pyrnn._backend.Backend.empty

    def poisoned(*args):
        ws = empty(*args)
        ws.fill(np.nan)
        return ws

    monkeypatch.setattr(pyrnn._backend.Backend, "empty", poisoned)
    # the steps' reused workspaces start afresh (poisoned), and are reused from then on
    reused = pyrnn._steps.workspaces
    monkeypatch.setattr(reused, "arrays", {})
    ref, ours = make_pair(CELLS, dict(cell=cell, bias=True, dtype=torch.float64), backend,
                          input_size=5, hidden_size=40)
    x = torch.randn(3, 5, dtype=torch.float64)
    states = [torch.randn(3, 40, dtype=torch.float64) for _ in range(1 + (cell == "lstm"))]
    grads = []
    for model in (ref, ours):
        x_leaf, *s_leaves = leaves(x, *states)
        out = model(x_leaf, tuple(s_leaves) if cell == "lstm" else s_leaves[0])
        for ws in reused.arrays.values():  # what forward left there, as another step would
            ws.fill(np.nan)
        h = out[0] if cell == "lstm" else out
        loss = h.sum() + (out[1] ** 2).sum() if cell == "lstm" else h.sum()
        grads.append(torch.autograd.grad(loss, [x_leaf, *s_leaves, *model.parameters()]))
    kept = h.grad_fn.kept[-2]  # what forward kept: (..., front part, whole's length)
    spec = pt._function.SPECS[ours._mode]
    assert kept.size == spec.workspace_saved_len(1, 3, 40)
    assert kept.size < spec.workspace_len(pyrnn._backend.resolve(backend), 1, 3, 5, 40, True) / 4
    for g_o, g_r in zip(*reversed(grads)):
        assert rel_err_t(g_o, g_r) <= 1e-10
    assert len(reused.arrays) == 1
    before = next(iter(reused.arrays.values()))
    out = ours(x, tuple(states) if cell == "lstm" else states[0])
    (out[0] if cell == "lstm" else out).sum().backward()
    assert next(iter(reused.arrays.values())) is before
    # a large batch's front part is most of its workspace (at H=40, from B=1029 for the RNN,
    # 1708 for the LSTM; never for the GRU): kept whole, no copies
    big = ours(torch.randn(2048, 5, dtype=torch.float64, requires_grad=True))
    node = (big[0] if cell == "lstm" else big).grad_fn
    whole = spec.workspace_len(pyrnn._backend.resolve(backend), 1, 2048, 5, 40, True)
    if cell == "gru":
        assert node.kept[-1] == whole and node.kept[-2].size == spec.workspace_saved_len(
            1, 2048, 40)
        return
    assert node.kept[-1] is None and node.kept[-2].size == whole
    # ... in a workspace of its own: the thread's reused one is neither used nor grown for it
    assert next(iter(reused.arrays.values())) is before


@pytest.mark.parametrize("cell", list(LAYERS))
def test_small_layer_inference_shares_the_threads_workspace(cell, monkeypatch):
    """A layer without gradients on the C backend takes its thread's reused workspace when that
    is small (a cell step's too, free between the step's forward and backward, which keeps its
    saved part apart), and a large one a workspace of its own, not held after the call."""
    pytest.importorskip("pyrnn._c", reason="the C extension is not built")
    reused = pyrnn._steps.workspaces
    monkeypatch.setattr(reused, "arrays", {})
    f64 = dict(bias=True, dtype=torch.float64)
    ref_layer, layer = make_pair(LAYERS, dict(cell=cell, **f64), "c", input_size=5,
                                 hidden_size=40)
    ref_cell, step = make_pair(CELLS, dict(cell="lstm", **f64), "c", input_size=5,
                               hidden_size=40)
    x = torch.randn(7, 3, 5, dtype=torch.float64)
    n = pt._function.SPECS[layer.mode].workspace_len(pyrnn._backend.resolve("c"), 7, 3, 5, 40,
                                                      False)
    with torch.no_grad():
        layer(x)
    (ws,) = reused.arrays.values()
    assert ws.size >= n  # the thread's workspace, grown to the layer's length
    results = []
    for cell_model, layer_model in ((ref_cell, ref_layer), (step, layer)):
        x_leaf, = leaves(x[0])
        h, c = cell_model(x_leaf)
        with torch.no_grad():  # between the step's forward and its backward
            out, _ = layer_model(x)
        grads = torch.autograd.grad(h.sum() + (c ** 2).sum(), [x_leaf, *cell_model.parameters()])
        results.append((out, *grads))
    for got, want in zip(results[1], results[0]):
        assert rel_err_t(got, want) <= 1e-10
    monkeypatch.setattr(pyrnn._steps, "REUSED_WORKSPACE_BYTES", n * 8 - 1)
    with torch.no_grad():
        assert rel_err_t(layer(x)[0], ref_layer(x)[0]) <= 1e-10
    monkeypatch.setattr(reused, "arrays", {})
    with torch.no_grad():
        layer(x)
    assert reused.arrays == {}  # the large call's workspace was its own


def gradients_needing(models, needs, x, states, run) -> list:
    """Each model's gradients of the squared sum of ``run(model, x, states)`` with respect to
    what requires grad, as ``needs`` says for x, the states, the weights and the biases."""
    x_grad, state_grad, weight_grad, bias_grad = needs
    grads = []
    for model in models:
        for name, p in model.named_parameters():
            p.requires_grad_(bias_grad if "bias" in name else weight_grad)
        xin = x.clone().requires_grad_(x_grad)
        hs = [s.clone().requires_grad_(state_grad) for s in states]
        out = run(model, xin, hs)
        inputs = [t for t in (xin, *hs, *model.parameters()) if t.requires_grad]
        grads.append(torch.autograd.grad((out ** 2).sum(), inputs))
    return grads


# (what requires grad: x, the states, the weights and biases) -> what backward_at is asked for
# (dx, dh0[, dc0], dw_ih, dw_hh, db_ih, db_hh): a raw input, states not given or needing
# nothing, frozen parameters
NEEDS = [
    ((False, None, True, True), (False, False, False, True, True, True, True)),
    ((True, False, True, True), (True, False, False, True, True, True, True)),
    ((True, True, False, True), (True, True, True, False, False, True, True)),
    ((False, True, True, False), (False, True, True, True, True, False, False)),
]


@pytest.mark.parametrize("needs, wanted", NEEDS, ids=["raw-x", "state-no-grad", "frozen-w",
                                                      "frozen-b"])
@pytest.mark.parametrize("kind", ["cell", "layer"])
@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_backward_computes_only_what_autograd_needs(cell, kind, needs, wanted, monkeypatch):
    """By pointer (the C backend), backward asks the kernel only for the gradients autograd
    needs (the kernel skips their work: a first layer's dx, h0's when it is not given, frozen
    weights'), and gives torch.nn's gradients for those. needs: whether x, the states (None:
    not given), the weights, the biases require grad."""
    pytest.importorskip("pyrnn._c", reason="the C extension is not built")
    asked = []
    backward_at = pyrnn._c.backward_at

    def spy(*args):
        asked.append(args[-1])
        return backward_at(*args)

    monkeypatch.setattr(pyrnn._c, "backward_at", spy)
    state_grad = needs[1]
    table = CELLS if kind == "cell" else LAYERS
    ref, ours = make_pair(table, dict(cell=cell, bias=True, dtype=torch.float64), "c",
                          input_size=3, hidden_size=5)
    x = torch.randn((4, 3) if kind == "cell" else (6, 4, 3), dtype=torch.float64)
    n_states = 2 if cell == "lstm" else 1
    state_shape = (4, 5) if kind == "cell" else (1, 4, 5)
    states = ([] if state_grad is None else
              [torch.randn(state_shape, dtype=torch.float64) for _ in range(n_states)])
    def run(model, xin, hs):
        out = model(xin, None if not hs else (tuple(hs) if cell == "lstm" else hs[0]))
        return out[0] if kind == "layer" or cell == "lstm" else out

    want, got = gradients_needing((ref, ours), needs, x, states, run)
    for g, w in zip(got, want):
        assert rel_err_t(g, w) <= 1e-10
    if cell == "gru":  # no cell state: its flag is not in backward_at's order
        wanted = wanted[:2] + wanted[3:]
    assert asked == [wanted]


@pytest.mark.parametrize("needs", [(False, None, True, True), (True, False, False, True),
                                   (False, True, True, False)],
                         ids=["raw-x", "frozen-w", "frozen-b"])
@pytest.mark.parametrize("stack", ["two-layers", "bidirectional"])
@pytest.mark.parametrize("backend", ["c", "numpy"])
def test_stack_backward_asks_only_for_what_autograd_needs(backend, stack, needs, monkeypatch):
    """Deeper and bidirectional layers ask each layer-direction's backward only for what
    autograd needs: the first layer's dx only when the input requires grad, the states' only
    when given with requires_grad, no frozen weights'; gradients are torch.nn's."""
    if backend == "c":
        pytest.importorskip("pyrnn._c", reason="the C extension is not built")
    be = pyrnn._backend.resolve(backend)
    asked = []
    lstm_backward = be.lstm_backward

    def spy(*args, wanted=None, **kwargs):
        asked.append(wanted)
        return lstm_backward(*args, wanted=wanted, **kwargs)

    monkeypatch.setattr(be, "lstm_backward", spy, raising=False)
    x_grad, state_grad, weight_grad, bias_grad = needs
    layers, directions = (2, 1) if stack == "two-layers" else (1, 2)
    ref = nn.LSTM(3, 5, layers, bidirectional=directions == 2, dtype=torch.float64)
    ours = pt.LSTM(3, 5, layers, bidirectional=directions == 2, dtype=torch.float64,
                   backend=backend)
    ours.load_state_dict(ref.state_dict())
    x = torch.randn(6, 4, 3, dtype=torch.float64)
    states = ([] if state_grad is None else
              [torch.randn(layers * directions, 4, 5, dtype=torch.float64) for _ in range(2)])
    want, got = gradients_needing((ref, ours), needs, x, states,
                                  lambda model, xin, hs: model(xin, tuple(hs) or None)[0])
    for g, w in zip(got, want):
        assert rel_err_t(g, w) <= 1e-10
    weights = (weight_grad, weight_grad, bias_grad, bias_grad)
    states_wanted = (bool(state_grad),) * 2
    first = [(x_grad, *states_wanted, *weights)] * directions
    later = [(True, *states_wanted, *weights)] * (layers - 1)
    assert sorted(asked) == sorted(first + later)


def test_cell_state_modified_in_place_before_backward_raises():
    model = pt.GRUCell(2, 3, backend="numpy")
    x = torch.randn(4, 2, requires_grad=True)
    h0 = torch.randn(4, 3)
    h = model(x, h0)
    h0.add_(1)
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        h.sum().backward()


def test_input_modified_in_place_before_backward_raises():
    model = pt.RNN(2, 3, backend="numpy")
    x = torch.randn(4, 1, 2, requires_grad=True)
    h0 = torch.randn(1, 1, 3)
    out, _ = model(x, h0)
    h0.add_(1)
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        out.sum().backward()


def test_projection_falls_back_with_one_warning():
    ref = nn.LSTM(3, 4, proj_size=2)
    model = pt.LSTM(3, 4, proj_size=2, backend="numpy")
    model.load_state_dict(ref.state_dict())
    x = torch.randn(5, 2, 3)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        out, (h, c) = model(x)
        model(x)
    fallbacks = [w for w in caught if issubclass(w.category, pt.FallbackWarning)]
    assert len(fallbacks) == 1 and "proj_size" in str(fallbacks[0].message)
    ref_out, (ref_h, ref_c) = ref(x)
    assert torch.equal(out, ref_out) and torch.equal(h, ref_h) and torch.equal(c, ref_c)


def test_other_dtype_falls_back():
    model = pt.GRUCell(3, 4, dtype=torch.bfloat16, backend="numpy")
    with pytest.warns(pt.FallbackWarning, match="bfloat16"):
        h = model(torch.randn(2, 3, dtype=torch.bfloat16))
    assert h.dtype == torch.bfloat16 and h.shape == (2, 4)


def test_autocast_falls_back_with_one_warning():
    """Under autocast torch.nn may compute in lower precision (nn.RNN on the CPU: bfloat16), so
    the parent runs it, with its dtypes; outside autocast the same module runs pyrnn again."""
    torch.manual_seed(3)
    ref = nn.RNN(3, 4)
    model = pt.RNN(3, 4, backend="numpy")
    model.load_state_dict(ref.state_dict())
    cell_ref, cell = nn.GRUCell(3, 4), pt.GRUCell(3, 4, backend="numpy")
    cell.load_state_dict(cell_ref.state_dict())
    x = torch.randn(5, 2, 3)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out, h = model(x)
            model(x)
            ref_out, ref_h = ref(x)
            h_cell = cell(x[0])
            ref_h_cell = cell_ref(x[0])
    fallbacks = [w for w in caught if issubclass(w.category, pt.FallbackWarning)]
    assert len(fallbacks) == 2 and all("autocast" in str(w.message) for w in fallbacks)
    assert out.dtype == ref_out.dtype == torch.bfloat16
    assert torch.equal(out, ref_out) and torch.equal(h, ref_h) and torch.equal(h_cell, ref_h_cell)
    with warnings.catch_warnings():
        warnings.simplefilter("error", pt.FallbackWarning)
        out, _ = model(x)
    assert out.dtype == torch.float32 and "StackFunction" in type(out.grad_fn).__name__
    assert rel_err_t(out, ref(x)[0]) <= 1e-4


def test_autocast_check_before_torch_2_4(monkeypatch):
    """torch before 2.4 has is_autocast_enabled() for CUDA and is_autocast_cpu_enabled()."""
    from pyrnn.torch import modules

    def old_is_autocast_enabled(*device_type):
        if device_type:
            raise TypeError("is_autocast_enabled() takes 0 positional arguments")
        return False

    monkeypatch.setattr(torch, "is_autocast_enabled", old_is_autocast_enabled)
    monkeypatch.setattr(torch, "is_autocast_cpu_enabled", lambda: True, raising=False)
    autocast_enabled = modules._autocast_check()
    assert autocast_enabled("cpu") and not autocast_enabled("cuda")
    monkeypatch.setattr(torch, "is_autocast_cpu_enabled", lambda: False, raising=False)
    assert not autocast_enabled("cpu")


def test_inference_mode_matches_torch(backend):
    """Under torch.inference_mode the layers and cells give torch.nn's results, as inference
    tensors like torch.nn's."""
    torch.manual_seed(4)
    ref, ours = make_pair(LAYERS, dict(cell="lstm", bias=True, dtype=torch.float64), backend,
                          input_size=3, hidden_size=4, num_layers=2)
    cell_ref, cell = make_pair(CELLS, dict(cell="gru", bias=True, dtype=torch.float64), backend,
                               input_size=3, hidden_size=4)
    x = torch.randn(5, 2, 3, dtype=torch.float64)
    with torch.inference_mode():
        got = [*flat_outputs(*ours(x)), cell(x[0])]
        want = [*flat_outputs(*ref(x)), cell_ref(x[0])]
    for a, b in zip(got, want):
        assert a.is_inference() == b.is_inference() and rel_err_t(a, b) <= 1e-10


def test_converted_model_survives_deepcopy_and_save_load():
    import copy
    import io

    torch.manual_seed(5)
    model = pt.convert(_Tagger(), backend="numpy")
    x = torch.randn(2, 5, 3)
    expected = model(x)
    buffer = io.BytesIO()
    torch.save(model, buffer)
    buffer.seek(0)
    for other in (copy.deepcopy(model), torch.load(buffer, weights_only=False)):
        assert type(other.encoder) is pt.LSTM and type(other.decoder) is pt.GRUCell
        assert other.encoder.backend == "numpy" and torch.equal(other(x), expected)


class _Halved(nn.Module):
    """A parametrization: the weight used is half the stored one."""

    def forward(self, w):
        return 0.5 * w


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_functional_call_and_parametrizations_use_the_weights_torch_uses(cell, backend):
    """torch.func.functional_call puts other tensors where the parameters are, and a
    parametrization computes its weight at each access: the layers and cells use those, with
    gradients to them, as torch.nn does."""
    torch.manual_seed(6)
    x = torch.randn(5, 2, 3, dtype=torch.float64)

    def first(out):  # a layer's output sequence, a cell's h
        return out[0] if isinstance(out, tuple) else out

    for table, extra, inp in ((LAYERS, dict(num_layers=2, bidirectional=True), x),
                              (CELLS, {}, x[0])):
        ref, ours = make_pair(table, dict(cell=cell, bias=True, dtype=torch.float64), backend,
                              input_size=3, hidden_size=4, **extra)
        params = {k: torch.randn_like(v).requires_grad_() for k, v in ref.named_parameters()}
        got, want = (first(torch.func.functional_call(m, params, (inp,))) for m in (ours, ref))
        assert rel_err_t(got, want) <= 1e-10
        grads = [torch.autograd.grad(out.sum(), list(params.values())) for out in (got, want)]
        assert all(rel_err_t(a, b) <= 1e-10 for a, b in zip(*grads))
        assert rel_err_t(first(ours(inp)), first(ref(inp))) <= 1e-10  # its own weights again
        name = "weight_hh_l0" if table is LAYERS else "weight_hh"
        for m in (ours, ref):
            nn.utils.parametrize.register_parametrization(m, name, _Halved())
        got, want = (first(m(inp)) for m in (ours, ref))
        assert rel_err_t(got, want) <= 1e-10
        got.sum().backward()
        want.sum().backward()
        originals = [m.parametrizations[name].original.grad for m in (ours, ref)]
        assert rel_err_t(*originals) <= 1e-10


@pytest.mark.parametrize("table, name", [(LAYERS, "weight_hh_l1"), (CELLS, "weight_ih")],
                         ids=["layer", "cell"])
def test_pruned_weights_are_the_ones_used(table, name, backend):
    """torch.nn.utils.prune replaces a weight by a plain attribute set before each forward."""
    from torch.nn.utils import prune

    torch.manual_seed(9)
    extra = dict(num_layers=2) if table is LAYERS else {}
    ref, ours = make_pair(table, dict(cell="lstm", bias=True, dtype=torch.float64), backend,
                          input_size=3, hidden_size=4, **extra)
    for m in (ref, ours):
        prune.l1_unstructured(m, name, amount=0.5)
    x = torch.randn(5, 2, 3, dtype=torch.float64)
    got, want = ours(x[0] if table is CELLS else x)[0], ref(x[0] if table is CELLS else x)[0]
    assert rel_err_t(got, want) <= 1e-10
    got.sum().backward()
    want.sum().backward()
    assert rel_err_t(getattr(ours, f"{name}_orig").grad, getattr(ref, f"{name}_orig").grad) \
        <= 1e-10


def test_torch_func_transforms_fall_back_with_one_warning():
    """torch.func.grad sees through torch operations only: the parent runs under it."""
    torch.manual_seed(7)
    ref, ours = make_pair(LAYERS, dict(cell="gru", bias=True, dtype=torch.float64), "numpy",
                          input_size=3, hidden_size=4)
    x = torch.randn(5, 2, 3, dtype=torch.float64)
    params = {k: v.detach() for k, v in ref.named_parameters()}

    def loss(model):
        return lambda p: torch.func.functional_call(model, p, (x,))[0].sum()

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        got = torch.func.grad(loss(ours))(params)
        torch.func.grad(loss(ours))(params)
    want = torch.func.grad(loss(ref))(params)
    fallbacks = [w for w in caught if issubclass(w.category, pt.FallbackWarning)]
    assert len(fallbacks) == 1 and "torch.func" in str(fallbacks[0].message)
    assert all(torch.equal(got[k], want[k]) for k in want)


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_backward_twice_through_a_retained_graph_gives_the_same_gradients(cell, backend):
    """Backward reads what forward kept (a layer's workspace, a cell's kept part put back into
    a reused workspace) and must leave it as it was for a second backward."""
    torch.manual_seed(8)
    for table, extra, shape in ((LAYERS, dict(num_layers=2, bidirectional=True), (5, 2, 3)),
                                (CELLS, {}, (2, 3))):
        _, model = make_pair(table, dict(cell=cell, bias=True, dtype=torch.float64), backend,
                             input_size=3, hidden_size=4, **extra)
        x = torch.randn(*shape, dtype=torch.float64, requires_grad=True)
        out = model(x)
        loss = (out[0] if isinstance(out, tuple) else out).pow(2).sum()
        wrt = [x, *model.parameters()]
        first = torch.autograd.grad(loss, wrt, retain_graph=True)
        model(torch.randn(*shape, dtype=torch.float64, requires_grad=True))[0].sum().backward()
        again = torch.autograd.grad(loss, wrt)
        assert all(torch.equal(a, b) for a, b in zip(first, again))


@pytest.mark.parametrize("cell", list(LAYERS))
def test_empty_inputs_behave_as_in_torch(cell, backend):
    """An empty batch gives torch.nn's empty results and zero gradients, without a warning; an
    empty sequence raises torch.nn's error."""
    _, ours = make_pair(LAYERS, dict(cell=cell, bias=True, dtype=torch.float32), backend,
                        input_size=3, hidden_size=4)
    _, cell_model = make_pair(CELLS, dict(cell=cell, bias=True, dtype=torch.float32), backend,
                              input_size=3, hidden_size=4)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        out, hidden = ours(torch.randn(5, 0, 3, requires_grad=True))
        h = cell_model(torch.randn(0, 3))
    assert out.shape == (5, 0, 4) and flat_outputs(out, hidden)[1].shape == (1, 0, 4)
    assert (h[0] if isinstance(h, tuple) else h).shape == (0, 4)
    out.sum().backward()
    assert all(p.grad is not None and not p.grad.any() for p in ours.parameters())
    with pytest.raises(RuntimeError, match="sequence length"):
        ours(torch.randn(0, 2, 3))


@pytest.mark.parametrize("cell", list(CELLS))
@pytest.mark.parametrize("sizes", [(0, 4), (3, 0), (0, 0)], ids=["I0", "H0", "I0H0"])
def test_cells_of_size_zero_behave_as_in_torch(cell, sizes, backend):
    """torch.nn makes cells of input or hidden size 0 (pyrnn's sizes start at 1): their
    results and gradients are torch.nn's, without a warning."""
    torch.manual_seed(12)
    I, H = sizes
    ref, ours = make_pair(CELLS, dict(cell=cell, bias=True, dtype=torch.float64), backend,
                          input_size=I, hidden_size=H)
    x = torch.randn(2, I, dtype=torch.float64)
    states = [torch.randn(2, H, dtype=torch.float64) for _ in range(1 + (cell == "lstm"))]
    results = []
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for model in (ref, ours):
            x_leaf, *s_leaves = leaves(x, *states)
            out = model(x_leaf, tuple(s_leaves) if cell == "lstm" else s_leaves[0])
            outs = list(out) if cell == "lstm" else [out]
            loss = sum((o * (k + 2)).sum() for k, o in enumerate(outs))
            inputs = [x_leaf, *s_leaves, *model.parameters()]
            results.append((outs, torch.autograd.grad(loss, inputs, allow_unused=True)))
    (outs_r, grads_r), (outs_o, grads_o) = results
    for a, b in zip(outs_o + list(grads_o), outs_r + list(grads_r)):
        assert (a is None) == (b is None)
        if a is not None:
            assert a.shape == b.shape and torch.equal(a, b)


def test_host_calls_take_torchs_thread_count_unless_pyrnns_is_chosen(monkeypatch):
    """torch.nn computes with torch's intra-op threads: so do the kernels under pyrnn.torch,
    until pyrnn.set_num_threads chooses pyrnn's own count."""
    _c = pytest.importorskip("pyrnn._c", reason="the C extension is not built")
    from pyrnn import _backend

    monkeypatch.setattr(_backend, "_threads_chosen", False)
    monkeypatch.setattr(_backend, "_threads_followed", None)
    torch_before, pyrnn_before = torch.get_num_threads(), _c.lib.pyrnn_get_num_threads()
    model, x = pt.GRU(3, 4, backend="c"), torch.randn(2, 1, 3)
    try:
        for n in (1, 3, 2):
            torch.set_num_threads(n)
            model(x)
            assert _c.lib.pyrnn_get_num_threads() == n
        pyrnn.set_num_threads(1)
        torch.set_num_threads(3)
        model(x)
        assert _c.lib.pyrnn_get_num_threads() == 1
    finally:
        torch.set_num_threads(torch_before)
        _c.set_num_threads(pyrnn_before)


def test_pyrnn_num_threads_in_the_environment_stands_over_torchs():
    code = ("import torch, pyrnn.torch as pt\n"
            "from pyrnn import _c\n"
            "torch.set_num_threads(2)\n"
            "pt.GRU(3, 4, backend='c')(torch.randn(2, 1, 3))\n"
            "assert _c.lib.pyrnn_get_num_threads() == 1, _c.lib.pyrnn_get_num_threads()\n")
    pytest.importorskip("pyrnn._c", reason="the C extension is not built")
    env = {**os.environ, "PYRNN_NUM_THREADS": "1"}
    result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0, result.stderr


def test_errors_name_the_problem():
    model = pt.GRU(3, 4, backend="numpy")
    with pytest.raises(RuntimeError, match="input_size"):
        model(torch.randn(5, 2, 7))
    with pytest.raises(RuntimeError, match="Expected hidden size"):
        model(torch.randn(5, 2, 3), torch.randn(1, 3, 4))
    with pytest.raises(ValueError, match="dtype"):
        model(torch.randn(5, 2, 3, dtype=torch.float64))
    with pytest.raises(RuntimeError, match="inconsistent input_size"):
        pt.LSTMCell(3, 4, backend="numpy")(torch.randn(2, 5))
    with pytest.raises(RuntimeError, match="hidden state of shape"):
        pt.GRUCell(3, 4, backend="numpy")(torch.randn(2, 3), torch.randn(3, 4))
    with pytest.raises(RuntimeError, match="like the input"):
        pt.RNNCell(3, 4, backend="numpy")(torch.randn(2, 3), torch.randn(2, 4,
                                                                          dtype=torch.float64))


class _Tagger(nn.Module):
    def __init__(self):
        super().__init__()
        self.encoder = nn.LSTM(3, 4, num_layers=2, bidirectional=True, batch_first=True)
        self.decoder = nn.GRUCell(8, 4)
        self.head = nn.Linear(4, 2)

    def forward(self, x):
        out, _ = self.encoder(x)
        return self.head(self.decoder(out[:, -1]))


def test_convert_replaces_in_place_and_keeps_weights():
    torch.manual_seed(1)
    model = _Tagger().double()
    x = torch.randn(2, 5, 3, dtype=torch.float64)
    expected = model(x)
    params_before = list(model.parameters())
    encoder = model.encoder
    assert pt.convert(model, backend="numpy") is model
    assert type(model.encoder) is pt.LSTM and type(model.decoder) is pt.GRUCell
    assert model.encoder is encoder and model.encoder.backend == "numpy"
    assert all(a is b for a, b in zip(model.parameters(), params_before))
    assert next(model.parameters()).dtype == torch.float64
    got = model(x)
    assert rel_err_t(got, expected) <= 1e-10
    got.sum().backward()
    assert all(p.grad is not None for p in model.parameters())


def test_convert_can_leave_the_cells_to_torch():
    model = _Tagger()
    assert pt.convert(model, cells=False) is model
    assert type(model.encoder) is pt.LSTM and type(model.decoder) is nn.GRUCell
    pt.convert(model)
    assert type(model.decoder) is pt.GRUCell


def test_importing_pyrnn_does_not_import_torch():
    code = ("import sys, numpy as np, pyrnn\n"
            "pyrnn.LSTM(2, 3, backend='numpy')(np.zeros((4, 1, 2), np.float32))\n"
            "assert 'torch' not in sys.modules, 'pyrnn imported torch'\n"
            "import pyrnn.torch\n"
            "assert 'torch' in sys.modules\n")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_cuda_tensors_route_to_the_cuda_backend_or_fall_back_naming_the_fix():
    model = pt.LSTM(3, 4)
    cuda_like = SimpleNamespace(dtype=torch.float32, device=torch.device("cuda", 0), is_cpu=False)
    backend, reason = model._backend_or_reason(cuda_like, False)
    if "cuda" in pyrnn.available_backends():
        assert backend.name == "cuda" and reason is None
    else:
        assert backend is None and "NUMBA_ENABLE_CUDASIM" in reason


def test_cuda_tensors_under_cuda_autocast_fall_back(monkeypatch):
    from pyrnn.torch import modules

    monkeypatch.setattr(modules, "_autocast_enabled", lambda device_type: device_type == "cuda")
    model = pt.GRU(3, 4)
    cuda_like = SimpleNamespace(dtype=torch.float32, device=torch.device("cuda", 0), is_cpu=False)
    backend, reason = model._backend_or_reason(cuda_like, False)
    assert backend is None and "autocast" in reason
    backend, reason = model._backend_or_reason(torch.zeros(2, 3), False)  # CPU autocast is off
    assert backend is not None and reason is None


def test_other_devices_fall_back():
    model = pt.GRU(3, 4, device="meta")
    with pytest.warns(pt.FallbackWarning, match="meta"):
        out, h = model(torch.empty(5, 2, 3, device="meta"))
    assert out.device.type == "meta" and out.shape == (5, 2, 4)


def test_cuda_backend_in_the_simulator_matches_torch():
    """The CUDA backend's function table through StackFunction and CellFunction (host tensors,
    Numba's simulator: it must be switched on before numba is imported, hence the
    subprocess)."""
    code = """
import torch, pyrnn.torch as pt
from torch.nn.utils.rnn import pack_padded_sequence
torch.manual_seed(0)
ref = torch.nn.LSTM(3, 4, num_layers=2, bidirectional=True, dtype=torch.float64)
ours = pt.LSTM(3, 4, num_layers=2, bidirectional=True, dtype=torch.float64, backend="cuda")
ours.load_state_dict(ref.state_dict())
x, lengths = torch.randn(4, 3, 3, dtype=torch.float64), torch.tensor([2, 4, 3])
hx = tuple(torch.randn(4, 3, 4, dtype=torch.float64) for _ in range(2))
grads = []
for model in (ref, ours):
    xl = x.clone().requires_grad_()
    out, (h, c) = model(pack_padded_sequence(xl, lengths, enforce_sorted=False), hx)
    grads.append(torch.autograd.grad((out.data ** 2).sum() + h.sum() + c.sum(),
                                     [xl, *model.parameters()]))
cell_ref = torch.nn.LSTMCell(3, 4, dtype=torch.float64)
cell = pt.LSTMCell(3, 4, dtype=torch.float64, backend="cuda")
cell.load_state_dict(cell_ref.state_dict())
for model in (cell_ref, cell):
    xl = x[0].clone().requires_grad_()
    h, c = model(xl, (hx[0][0], hx[1][0]))
    grads.append(torch.autograd.grad((h ** 2).sum() + c.sum(), [xl, *model.parameters()]))
for a, b in zip(*grads[:2]):
    assert torch.allclose(a, b, rtol=1e-10, atol=1e-12), (a - b).abs().max()
for a, b in zip(*grads[2:]):
    assert torch.allclose(a, b, rtol=1e-10, atol=1e-12), (a - b).abs().max()
"""
    env = {**os.environ, "NUMBA_ENABLE_CUDASIM": "1"}
    subprocess.run([sys.executable, "-c", code], check=True, env=env)


@pytest.mark.skipif("c" not in pyrnn.available_backends(), reason="needs the C extension")
@pytest.mark.parametrize("allocator", ["torch", "numpy"])
@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_results_by_pointer_from_either_allocator(monkeypatch, cell, allocator):
    """A call by pointer makes large results with torch's allocator, small ones with NumPy's:
    either way, cells and layers match torch.nn, gradients included (a step of B=32 I=H=512
    has 4 MiB weight gradients, past the threshold by itself)."""
    from pyrnn.torch import _pointers

    monkeypatch.setattr(_pointers, "_TORCH_ALLOCATES", 0 if allocator == "torch" else 1 << 60)
    c = dict(cell=cell, bias=True, dtype=torch.float32)
    for table, sizes, shape in ((CELLS, dict(input_size=512, hidden_size=512), (32, 512)),
                                (LAYERS, dict(input_size=3, hidden_size=4), (5, 2, 3))):
        ref, ours = make_pair(table, c, "c", **sizes)
        x = torch.randn(*shape)
        grads = []
        for model in (ref, ours):
            (x_leaf,) = leaves(x)
            out = model(x_leaf)
            h = out[0] if table is LAYERS or cell == "lstm" else out
            grads.append([h, *torch.autograd.grad(h.square().sum(),
                                                  [x_leaf, *model.parameters()])])
        for a, b in zip(*grads):
            assert rel_err_t(b, a) <= 1e-4
