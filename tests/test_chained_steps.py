"""T chained single-step calls equal one T-step call, forward and backward, on every host backend.

With ``lengths``, step t of the chain runs on the sub-batch of sequences valid at t (t < length),
which is what the T-step call must do internally, in both directions.
"""

import numpy as np
import pytest

from pyrnn._backend import resolve
from pyrnn.functional import CellSpec

from .conftest import rel_err

SPECS = [CellSpec("rnn", (("relu", False),)), CellSpec("rnn", (("relu", True),)),
         CellSpec("lstm"), CellSpec("gru", (("reset_after", True),)),
         CellSpec("gru", (("reset_after", False),))]


def _full(spec, be, x, h0, c0, w, lengths, reverse, dy, dh_n, dc_n):
    T, B, I = x.shape
    ws = be.empty(spec.workspace_len(be, T, B, I, w[1].shape[1], True), x.dtype)
    fwd = spec.forward(be, x, h0, c0, w, lengths, ws, reverse, True)
    bwd = spec.backward(be, x, h0, c0, w, lengths, dy, dh_n, dc_n, ws, reverse)
    return fwd, bwd


def _chained(spec, be, x, h0, c0, w, lengths, reverse, dy, dh_n, dc_n):
    T, B, I = x.shape
    H = w[1].shape[1]
    lengths = np.full(B, T) if lengths is None else lengths
    lstm = c0 is not None
    h, c = h0.copy(), (c0.copy() if lstm else None)
    y = np.zeros((T, B, H), x.dtype)
    saved = []
    for t in (range(T - 1, -1, -1) if reverse else range(T)):
        rows = np.flatnonzero(t < lengths)
        ws = be.empty(spec.workspace_len(be, 1, len(rows), I, H, True), x.dtype)
        inputs = (x[t : t + 1, rows].copy(), h[rows].copy(), c[rows].copy() if lstm else None)
        out = spec.forward(be, *inputs, w, None, ws, False, True)
        saved.append((t, rows, inputs, ws))
        y[t, rows], h[rows] = out[0][0], out[1]
        if lstm:
            c[rows] = out[2]
    dx = np.zeros_like(x)
    dh, dc = dh_n.copy(), (dc_n.copy() if lstm else None)
    dw = [np.zeros_like(a) for a in w]
    for t, rows, (xt, ht, ct), ws in reversed(saved):
        g = spec.backward(be, xt, ht, ct, w, None, dy[t : t + 1, rows].copy(), dh[rows].copy(),
                          dc[rows].copy() if lstm else None, ws, False)
        dx[t, rows], dh[rows] = g[0][0], g[1]
        if lstm:
            dc[rows] = g[2]
        dw = [a + b for a, b in zip(dw, g[-4:])]
    return (y, h) + ((c,) if lstm else ()), (dx, dh) + ((dc,) if lstm else ()) + tuple(dw)


def _spec_id(spec):
    return spec.kind + "".join(f"-{k}={v}" for k, v in spec.flags)


@pytest.mark.parametrize("spec", SPECS, ids=_spec_id)
@pytest.mark.parametrize("reverse", [False, True], ids=["fwd", "rev"])
@pytest.mark.parametrize("lengths", [None, [5, 2, 4]], ids=["full", "lengths"])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_chained_single_steps_equal_one_call(backend, spec, reverse, lengths, dtype):
    rng = np.random.default_rng(5)
    be = resolve(backend)
    T, B, I, H, G = 5, 3, 4, 6, spec.gates
    lengths = None if lengths is None else np.array(lengths, dtype=np.int64)
    x = rng.standard_normal((T, B, I)).astype(dtype)
    h0 = rng.standard_normal((B, H)).astype(dtype)
    c0 = rng.standard_normal((B, H)).astype(dtype) if spec.has_cell_state else None
    w = tuple((rng.standard_normal(s) * 0.4).astype(dtype)
              for s in [(G * H, I), (G * H, H), (G * H,), (G * H,)])
    dy = rng.standard_normal((T, B, H)).astype(dtype)
    dh_n = rng.standard_normal((B, H)).astype(dtype)
    dc_n = rng.standard_normal((B, H)).astype(dtype) if spec.has_cell_state else None
    args = (spec, be, x, h0, c0, w, lengths, reverse, dy, dh_n, dc_n)
    full_fwd, full_bwd = _full(*args)
    chain_fwd, chain_bwd = _chained(*args)
    tol = 1e-12 if dtype == np.float64 else 2e-5
    assert len(full_fwd) == len(chain_fwd) and len(full_bwd) == len(chain_bwd)
    for a, b in zip(full_fwd + full_bwd, chain_fwd + chain_bwd):
        assert a.dtype == dtype
        assert rel_err(a, b) < tol


@pytest.mark.parametrize("name", ["RNN", "LSTM", "GRU"])
def test_chained_cell_calls_equal_the_layer(backend, name):
    """The public cells, chained by hand over T steps, against the one-layer module."""
    import pyrnn

    rng = np.random.default_rng(8)
    layer = getattr(pyrnn, name)(3, 4, dtype=np.float64, backend=backend, seed=2)
    cell = getattr(pyrnn, name + "Cell")(3, 4, dtype=np.float64, backend=backend)
    cell.load_state_dict({k[: -len("_l0")]: v for k, v in layer.state_dict().items()})
    lstm = name == "LSTM"
    T, B = 4, 2
    x = rng.standard_normal((T, B, 3))
    g_out = rng.standard_normal((T, B, 4))
    out, _, ctx = layer.forward_train(x)
    dx, dhx, grads = layer.backward(ctx, g_out)

    state, ctxs, hs = None, [], []
    for t in range(T):
        state, c = cell.forward_train(x[t], state)
        ctxs.append(c)
        hs.append(state[0] if lstm else state)
    assert rel_err(np.stack(hs), out) < 1e-12
    d_state, cell_dx, cell_grads = None, np.zeros_like(x), {}
    for t in reversed(range(T)):
        dh = g_out[t] + (0 if d_state is None else (d_state[0] if lstm else d_state))
        dc = None if not lstm or d_state is None else d_state[1]
        cell_dx[t], d_state, g = cell.backward(ctxs[t], dh, dc) if lstm else \
            cell.backward(ctxs[t], dh)
        for k, v in g.items():
            cell_grads[k] = cell_grads.get(k, 0) + v
    assert rel_err(cell_dx, dx) < 1e-12
    for ours, theirs in zip(d_state if lstm else [d_state], dhx if lstm else [dhx]):
        assert rel_err(ours, theirs[0]) < 1e-12
    for k, v in cell_grads.items():
        assert rel_err(v, grads[k + "_l0"]) < 1e-12, k


@pytest.mark.parametrize("spec", SPECS, ids=_spec_id)
@pytest.mark.parametrize("T", [1, 4])
@pytest.mark.parametrize("reverse", [False, True], ids=["fwd", "rev"])
def test_backward_reads_only_the_saved_front_of_its_workspace(backend, spec, T, reverse):
    """What a cell step keeps for backward (pyrnn/_steps.py): the workspace's first
    ``workspace_saved_len`` elements. Everything after them poisoned between forward and
    backward changes no gradient (backward writes its own regions before reading them)."""
    rng = np.random.default_rng(3)
    be = resolve(backend)
    B, I, H, G = 3, 4, 6, spec.gates
    x = rng.standard_normal((T, B, I))
    h0 = rng.standard_normal((B, H))
    c0 = rng.standard_normal((B, H)) if spec.has_cell_state else None
    w = tuple(rng.standard_normal(s) * 0.4 for s in [(G * H, I), (G * H, H), (G * H,), (G * H,)])
    lengths = np.array([T, max(1, T - 2), 1], dtype=np.int64)
    dy, dh_n = rng.standard_normal((T, B, H)), rng.standard_normal((B, H))
    dc_n = rng.standard_normal((B, H)) if spec.has_cell_state else None
    results = []
    for poison in (False, True):
        ws = be.empty(spec.workspace_len(be, T, B, I, H, True), np.float64)
        spec.forward(be, x, h0, c0, w, lengths, ws, reverse, True)
        if poison:
            ws[spec.workspace_saved_len(T, B, H):] = np.nan
        results.append(spec.backward(be, x, h0, c0, w, lengths, dy, dh_n, dc_n, ws, reverse))
    for a, b in zip(*results):
        assert np.array_equal(a, b)
