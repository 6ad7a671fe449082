"""The NumPy reference against central finite differences in float64.

Per cell function (every parameter, h0/c0 and x) and through the layer stack (layers,
bidirectional, lengths, batch_first).
"""

import numpy as np
import pytest

import pyrnn
from pyrnn import ref
from pyrnn.functional import GATES

from .conftest import VARIANTS, numeric_grad, rel_err, variant_id

TOL = 1e-6


def _flags(kind, flags):
    if kind == "rnn":
        return {"relu": flags["nonlinearity"] == "relu"}
    return dict(flags)


@pytest.mark.parametrize("variant", VARIANTS, ids=variant_id)
@pytest.mark.parametrize("reverse", [False, True], ids=["fwd", "rev"])
@pytest.mark.parametrize("lengths", [None, [4, 1, 3]], ids=["full", "lengths"])
@pytest.mark.parametrize("bias", [True, False], ids=["bias", "nobias"])
def test_cell_function_gradients(variant, reverse, lengths, bias, rng):
    kind, _, mflags = variant
    flags = _flags(kind, mflags)
    T, B, I, H, G = 4, 3, 2, 3, GATES[kind]
    lengths = None if lengths is None else np.array(lengths, dtype=np.int64)
    p = {"x": rng.standard_normal((T, B, I)), "h0": rng.standard_normal((B, H)),
         "w_ih": rng.standard_normal((G * H, I)) * 0.6,
         "w_hh": rng.standard_normal((G * H, H)) * 0.6,
         "b_ih": rng.standard_normal(G * H) if bias else None,
         "b_hh": rng.standard_normal(G * H) if bias else None}
    if kind == "lstm":
        p["c0"] = rng.standard_normal((B, H))
    names = ["x", "h0"] + (["c0"] if kind == "lstm" else []) + ["w_ih", "w_hh", "b_ih", "b_hh"]
    n_out = 3 if kind == "lstm" else 2
    douts = [rng.standard_normal((T, B, H))]
    douts += [rng.standard_normal((B, H)) for _ in range(n_out - 1)]
    fwd, bwd = getattr(ref, f"{kind}_forward"), getattr(ref, f"{kind}_backward")
    wl = getattr(ref, f"{kind}_workspace_len")
    ws_len = wl(T, B, I, H, True, flags["reset_after"]) if kind == "gru" else wl(T, B, I, H, True)
    workspace = np.empty(ws_len)

    def loss():
        outs = fwd(*[p[n] for n in names], lengths, workspace, reverse=reverse, training=True,
                   **flags)
        return sum(float((o * d).sum()) for o, d in zip(outs, douts))

    loss()
    grads = bwd(*[p[n] for n in names], lengths, *douts, workspace, reverse=reverse, **flags)
    assert len(grads) == len(names)
    for name, g in zip(names, grads):
        if p[name] is None:
            assert g is None, name
            continue
        num = numeric_grad(loss, p[name])
        assert np.linalg.norm(num) > 0 or name == "h0", name
        assert rel_err(g, num) < TOL, (name, rel_err(g, num))


def test_padded_outputs_are_zero_and_padded_grads_ignored(rng):
    T, B, I, H = 5, 2, 3, 4
    lengths = np.array([2, 5])
    x = rng.standard_normal((T, B, I))
    w_ih, w_hh = rng.standard_normal((4 * H, I)), rng.standard_normal((4 * H, H))
    ws = np.empty(ref.lstm_workspace_len(T, B, I, H, True))
    y, h_n, c_n = ref.lstm_forward(x, None, None, w_ih, w_hh, None, None, lengths, ws,
                                   reverse=False, training=True)
    assert np.all(y[2:, 0] == 0) and np.all(y[:, 1] != 0)
    assert np.array_equal(h_n[0], y[1, 0])
    dy = rng.standard_normal((T, B, H))
    g1 = ref.lstm_backward(x, None, None, w_ih, w_hh, None, None, lengths, dy, None, None, ws)
    dy[2:, 0] = 1e6  # gradients at padded positions must not matter
    g2 = ref.lstm_backward(x, None, None, w_ih, w_hh, None, None, lengths, dy, None, None, ws)
    for a, b in zip(g1, g2):
        if a is not None:
            assert np.array_equal(a, b)


STACKS = [
    dict(num_layers=2, bidirectional=True, batch_first=False),
    dict(num_layers=2, bidirectional=False, batch_first=True),
    dict(num_layers=1, bidirectional=True, batch_first=True),
]


@pytest.mark.parametrize("variant", VARIANTS, ids=variant_id)
@pytest.mark.parametrize("stack", STACKS, ids=["L2-bi", "L2-bf", "L1-bi-bf"])
@pytest.mark.parametrize("with_lengths", [False, True], ids=["full", "lengths"])
def test_layer_stack_gradients(variant, stack, with_lengths, rng):
    _, cls_name, flags = variant
    m = getattr(pyrnn, cls_name)(2, 2, dtype=np.float64, backend="numpy", seed=3, **stack,
                                 **flags)
    T, B = 3, 2
    x = rng.standard_normal((B, T, 2) if stack["batch_first"] else (T, B, 2))
    LD = stack["num_layers"] * (2 if stack["bidirectional"] else 1)
    lstm = cls_name == "LSTM"
    h0 = rng.standard_normal((LD, B, 2))
    c0 = rng.standard_normal((LD, B, 2)) if lstm else None
    lengths = np.array([3, 2]) if with_lengths else None
    out0, _ = m(x, (h0, c0) if lstm else h0, lengths)
    g_out = rng.standard_normal(out0.shape)
    g_h = rng.standard_normal((LD, B, 2))
    g_c = rng.standard_normal((LD, B, 2)) if lstm else None

    def loss():
        out, state = m(x, (h0, c0) if lstm else h0, lengths)
        h_n, c_n = state if lstm else (state, None)
        total = (out * g_out).sum() + (h_n * g_h).sum()
        return total + ((c_n * g_c).sum() if lstm else 0.0)

    out, _, ctx = m.forward_train(x, (h0, c0) if lstm else h0, lengths)
    assert np.array_equal(out, out0)
    dx, dhx, grads = m.backward(ctx, g_out, (g_h, g_c) if lstm else g_h)
    assert rel_err(dx, numeric_grad(loss, x)) < TOL
    if lstm:
        assert rel_err(dhx[0], numeric_grad(loss, h0)) < TOL
        assert rel_err(dhx[1], numeric_grad(loss, c0)) < TOL
    else:
        assert rel_err(dhx, numeric_grad(loss, h0)) < TOL
    params = m.parameters()
    assert sorted(grads) == sorted(params)
    for name, p in params.items():
        assert grads[name].shape == p.shape
        assert rel_err(grads[name], numeric_grad(loss, p)) < TOL, name


def test_dropout_is_applied_in_training_only_and_its_gradient_is_right(rng):
    m = pyrnn.GRU(3, 4, num_layers=2, dropout=0.5, dtype=np.float64, backend="numpy", seed=7)
    x = rng.standard_normal((4, 2, 3))
    out_inf, _ = m(x)
    out_tr, _, ctx = m.forward_train(x)
    assert not np.allclose(out_inf, out_tr)  # a mask was drawn
    g = rng.standard_normal(out_tr.shape)
    dx, _, grads = m.backward(ctx, g)
    mask = ctx.kept.masks[0]
    assert set(np.unique(mask)) <= {0.0, 2.0}

    # with the same mask held fixed, the stack is a smooth function: check by differences
    from pyrnn._backend import resolve
    from pyrnn.functional import stack_forward

    def loss():
        be = resolve("numpy")
        o1, _, _, _ = stack_forward(m._spec, be, m._weights()[:1], x, None, None, None,
                                    training=False)
        o2, _, _, _ = stack_forward(m._spec, be, m._weights()[1:], o1 * mask, None, None, None,
                                    training=False)
        return (o2 * g).sum()

    assert rel_err(dx, numeric_grad(loss, x)) < TOL
    w = m.parameters()["weight_hh_l0"]
    assert rel_err(grads["weight_hh_l0"], numeric_grad(loss, w)) < TOL


@pytest.mark.parametrize("cls", [pyrnn.RNNCell, pyrnn.LSTMCell, pyrnn.GRUCell],
                         ids=lambda c: c.__name__)
def test_cell_gradients(cls, rng):
    cell = cls(3, 2, dtype=np.float64, backend="numpy", seed=1)
    x = rng.standard_normal((2, 3))
    lstm = cls is pyrnn.LSTMCell
    h = rng.standard_normal((2, 2))
    c = rng.standard_normal((2, 2)) if lstm else None
    gh = rng.standard_normal((2, 2))
    gc = rng.standard_normal((2, 2)) if lstm else None

    def loss():
        s = cell(x, (h, c) if lstm else h)
        return (s[0] * gh).sum() + (s[1] * gc).sum() if lstm else (s * gh).sum()

    _, ctx = cell.forward_train(x, (h, c) if lstm else h)
    dx, dhx, grads = cell.backward(ctx, gh, gc) if lstm else cell.backward(ctx, gh)
    assert rel_err(dx, numeric_grad(loss, x)) < TOL
    assert rel_err(dhx[0] if lstm else dhx, numeric_grad(loss, h)) < TOL
    if lstm:
        assert rel_err(dhx[1], numeric_grad(loss, c)) < TOL
    for name, p in cell.parameters().items():
        assert rel_err(grads[name], numeric_grad(loss, p)) < TOL, (cls.__name__, name)
