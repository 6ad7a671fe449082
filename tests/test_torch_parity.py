"""pyrnn's layers and cells against torch.nn with the same weights: PyTorch is the public oracle.

Outputs, final states and every gradient (input, initial states, each parameter), padded and
packed sequences (pyrnn's ``lengths`` against ``pack_padded_sequence``), on every host backend.
"""

import numpy as np
import pytest
import torch
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

import pyrnn

from .conftest import rel_err

torch.set_num_threads(1)

CASES = [
    ("RNN", {"nonlinearity": "tanh"}), ("RNN", {"nonlinearity": "relu"}), ("LSTM", {}),
    ("GRU", {}),
]
CONFIGS = [
    dict(num_layers=1, bidirectional=False, batch_first=False, bias=True),
    dict(num_layers=2, bidirectional=True, batch_first=False, bias=True),
    dict(num_layers=2, bidirectional=False, batch_first=True, bias=False),
    dict(num_layers=1, bidirectional=True, batch_first=True, bias=True),
]
TOL = {np.float64: 1e-10, np.float32: 1e-4}


def _pair(cls_name, flags, config, dtype, backend):
    m = getattr(pyrnn, cls_name)(5, 4, dtype=dtype, backend=backend, seed=11, **config, **flags)
    t = getattr(torch.nn, cls_name)(5, 4, dtype=getattr(torch, np.dtype(dtype).name), **config,
                                    **flags)
    t.load_state_dict({k: torch.from_numpy(v) for k, v in m.state_dict().items()})
    return m, t


def _grads_of(t_module, x, states):
    return ([x.grad.numpy()], [s.grad.numpy() for s in states],
            {k: p.grad.numpy() for k, p in t_module.named_parameters()})


@pytest.mark.parametrize("case", CASES, ids=lambda c: c[0] + "".join(c[1].values()))
@pytest.mark.parametrize("config", CONFIGS, ids=["L1", "L2-bi", "L2-bf-nobias", "L1-bi-bf"])
@pytest.mark.parametrize("packed", [False, True], ids=["padded", "packed"])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_layers_match_torch(backend, case, config, packed, dtype):
    cls_name, flags = case
    rng = np.random.default_rng(2)
    m, t = _pair(cls_name, flags, config, dtype, backend)
    T, B = 6, 4
    LD = config["num_layers"] * (2 if config["bidirectional"] else 1)
    bf = config["batch_first"]
    x = rng.standard_normal((B, T, 5) if bf else (T, B, 5)).astype(dtype)
    lengths = np.array([6, 2, 5, 1]) if packed else None
    lstm = cls_name == "LSTM"
    states = [rng.standard_normal((LD, B, 4)).astype(dtype) for _ in range(2 if lstm else 1)]
    hx = tuple(states) if lstm else states[0]

    out, state, ctx = m.forward_train(x, hx, lengths)
    g_out = rng.standard_normal(out.shape).astype(dtype)
    g_states = [rng.standard_normal(s.shape).astype(dtype) for s in states]
    dx, dhx, grads = m.backward(ctx, g_out, tuple(g_states) if lstm else g_states[0])

    tx = torch.tensor(x, requires_grad=True)
    ts = [torch.tensor(s, requires_grad=True) for s in states]
    t_in = pack_padded_sequence(tx, torch.tensor(lengths), batch_first=bf,
                                enforce_sorted=False) if packed else tx
    t_out, t_state = t(t_in, tuple(ts) if lstm else ts[0])
    if packed:
        t_out, _ = pad_packed_sequence(t_out, batch_first=bf, total_length=T)
    t_states = list(t_state) if lstm else [t_state]
    loss = (t_out * torch.from_numpy(g_out)).sum() + sum(
        (a * torch.from_numpy(g)).sum() for a, g in zip(t_states, g_states))
    loss.backward()

    tol = TOL[dtype]
    assert rel_err(out, t_out.detach().numpy()) < tol
    for ours, theirs in zip(state if lstm else [state], t_states):
        assert rel_err(ours, theirs.detach().numpy()) < tol
    assert rel_err(dx, tx.grad.numpy()) < tol
    for ours, theirs in zip(dhx if lstm else [dhx], ts):
        assert rel_err(ours, theirs.grad.numpy()) < tol
    t_grads = {k: p.grad.numpy() for k, p in t.named_parameters()}
    assert sorted(grads) == sorted(t_grads)
    for k in grads:
        assert rel_err(grads[k], t_grads[k]) < tol, k


@pytest.mark.parametrize("cls_name", ["RNNCell", "LSTMCell", "GRUCell"])
@pytest.mark.parametrize("unbatched", [False, True])
def test_cells_match_torch(backend, cls_name, unbatched):
    rng = np.random.default_rng(3)
    m = getattr(pyrnn, cls_name)(5, 4, dtype=np.float64, backend=backend, seed=1)
    t = getattr(torch.nn, cls_name)(5, 4, dtype=torch.float64)
    t.load_state_dict({k: torch.from_numpy(v) for k, v in m.state_dict().items()})
    shape_x, shape_h = ((5,), (4,)) if unbatched else ((3, 5), (3, 4))
    x = rng.standard_normal(shape_x)
    lstm = cls_name == "LSTMCell"
    states = [rng.standard_normal(shape_h) for _ in range(2 if lstm else 1)]
    state, ctx = m.forward_train(x, tuple(states) if lstm else states[0])
    gs = [rng.standard_normal(shape_h) for _ in states]
    dx, dhx, grads = m.backward(ctx, *gs)
    tx = torch.tensor(x, requires_grad=True)
    ts = [torch.tensor(s, requires_grad=True) for s in states]
    t_state = t(tx, tuple(ts) if lstm else ts[0])
    t_states = list(t_state) if lstm else [t_state]
    sum((a * torch.from_numpy(g)).sum() for a, g in zip(t_states, gs)).backward()
    for ours, theirs in zip(state if lstm else [state], t_states):
        assert rel_err(ours, theirs.detach().numpy()) < 1e-10
    assert rel_err(dx, tx.grad.numpy()) < 1e-10
    for ours, theirs in zip(dhx if lstm else [dhx], ts):
        assert rel_err(ours, theirs.grad.numpy()) < 1e-10
    for k, p in t.named_parameters():
        assert rel_err(grads[k], p.grad.numpy()) < 1e-10, k


def test_unbatched_input_and_hx_none_match_torch(backend):
    rng = np.random.default_rng(4)
    m = pyrnn.LSTM(3, 2, num_layers=2, dtype=np.float64, backend=backend, seed=5)
    t = torch.nn.LSTM(3, 2, num_layers=2, dtype=torch.float64)
    t.load_state_dict({k: torch.from_numpy(v) for k, v in m.state_dict().items()})
    x = rng.standard_normal((7, 3))
    out, (h, c) = m(x)
    t_out, (t_h, t_c) = t(torch.from_numpy(x))
    assert out.shape == (7, 2) and h.shape == (2, 2)
    for a, b in [(out, t_out), (h, t_h), (c, t_c)]:
        assert rel_err(a, b.detach().numpy()) < 1e-10


def test_torch_state_dict_loads_as_is():
    t = torch.nn.GRU(3, 4, num_layers=2, bidirectional=True)
    m = pyrnn.GRU(3, 4, num_layers=2, bidirectional=True, backend="numpy")
    m.load_state_dict(t.state_dict())
    for k, v in t.state_dict().items():
        assert np.array_equal(m.state_dict()[k], v.numpy())


def test_initialisation_follows_torch_bounds_and_seed():
    m1 = pyrnn.LSTM(3, 16, seed=42, backend="numpy")
    m2 = pyrnn.LSTM(3, 16, seed=42, backend="numpy")
    m3 = pyrnn.LSTM(3, 16, seed=43, backend="numpy")
    bound = 1 / np.sqrt(16)
    for k, v in m1.state_dict().items():
        assert np.array_equal(v, m2.state_dict()[k])
        assert not np.array_equal(v, m3.state_dict()[k])
        assert np.abs(v).max() <= bound and np.abs(v).max() > 0.8 * bound
