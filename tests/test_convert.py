"""Weight converters: round trips for every layout, and numeric equality with each layout's
documented equations (written here in NumPy, since Keras, oneDNN and haste are not installed)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import pyrnn
from pyrnn import convert

CASES = [("rnn", True), ("lstm", True), ("gru", True), ("gru", False)]  # (cell, reset_after)
LAYOUTS = {
    "keras": (convert.to_keras, convert.from_keras, CASES),
    "onednn": (convert.to_onednn, convert.from_onednn, CASES),
    "haste": (convert.to_haste, convert.from_haste, [("lstm", True), ("gru", True)]),
}
PARAMS = [(layout, cell, ra) for layout, (_, _, cases) in LAYOUTS.items() for cell, ra in cases]
IDS = [f"{layout}-{cell}{'' if ra or cell != 'gru' else '-reset_before'}"
       for layout, cell, ra in PARAMS]


def sigmoid(a):
    return 1 / (1 + np.exp(-a))


def random_pyrnn(cell, I, H, rng, bias=True):
    G = pyrnn.functional.GATES[cell]
    w = [rng.standard_normal((G * H, I)), rng.standard_normal((G * H, H))]
    return tuple(w + ([rng.standard_normal(G * H), rng.standard_normal(G * H)] if bias
                      else [None, None]))


def layout_kwargs(layout, cell, reset_after):
    return {"reset_after": reset_after} if layout != "haste" else {}


def to_layout(layout, cell, reset_after, weights):
    return LAYOUTS[layout][0](cell, *weights, **layout_kwargs(layout, cell, reset_after))


def from_layout(layout, cell, reset_after, arrays):
    return LAYOUTS[layout][1](cell, **arrays, **layout_kwargs(layout, cell, reset_after))


# --- each layout's equations, one direction over x [T,B,I] ------------------------------------

def keras_step(cell, reset_after, x, h, c, kernel, recurrent_kernel, bias):
    """keras/src/layers/rnn/{simple_rnn,lstm,gru}.py, one step (gates i,f,c,o / z,r,h)."""
    H = recurrent_kernel.shape[0]
    if cell == "rnn":
        return np.tanh(x @ kernel + bias + h @ recurrent_kernel), None
    if cell == "lstm":
        z = x @ kernel + h @ recurrent_kernel + bias
        i, f, g, o = (z[:, k * H : (k + 1) * H] for k in range(4))
        c = sigmoid(f) * c + sigmoid(i) * np.tanh(g)
        return sigmoid(o) * np.tanh(c), c
    input_bias, recurrent_bias = (bias[0], bias[1]) if reset_after else (bias, 0 * bias)
    x_z, x_r, x_h = np.split(x @ kernel + input_bias, 3, axis=1)
    inner = h @ recurrent_kernel + recurrent_bias
    z = sigmoid(x_z + inner[:, :H])
    r = sigmoid(x_r + inner[:, H : 2 * H])
    if reset_after:
        hh = np.tanh(x_h + r * inner[:, 2 * H :])
    else:
        hh = np.tanh(x_h + (r * h) @ recurrent_kernel[:, 2 * H :])
    return z * h + (1 - z) * hh, None


def onednn_step(cell, reset_after, x, h, c, weights_layer, weights_iter, bias):
    """oneDNN RNN primitive equations (doc/primitives/rnn.md), one step."""
    W = weights_layer.reshape(weights_layer.shape[0], -1)
    U = weights_iter.reshape(weights_iter.shape[0], -1)
    H = weights_iter.shape[0]
    if cell == "rnn":
        return np.tanh(x @ W + h @ U + bias[0]), None
    if cell == "lstm":
        a = x @ W + h @ U + bias.reshape(-1)
        i, f, ct, o = (a[:, k * H : (k + 1) * H] for k in range(4))
        c = sigmoid(f) * c + sigmoid(i) * np.tanh(ct)
        return np.tanh(c) * sigmoid(o), c
    Wx = x @ W
    u = sigmoid(Wx[:, :H] + h @ U[:, :H] + bias[0])
    r = sigmoid(Wx[:, H : 2 * H] + h @ U[:, H : 2 * H] + bias[1])
    if reset_after:  # linear-before-reset GRU: bias rows u, r, o, u'
        o = np.tanh(Wx[:, 2 * H :] + r * (h @ U[:, 2 * H :] + bias[3]) + bias[2])
    else:
        o = np.tanh(Wx[:, 2 * H :] + (r * h) @ U[:, 2 * H :] + bias[2])
    return u * h + (1 - u) * o, None


def haste_step(cell, reset_after, x, h, c, kernel, recurrent_kernel, bias, recurrent_bias=None):
    """haste's reference equations (frameworks/pytorch/{lstm,gru}.py LSTMScript/GRUScript)."""
    if cell == "lstm":
        v = h @ recurrent_kernel + x @ kernel + bias
        i, g, f, o = np.split(v, 4, axis=1)
        c = sigmoid(f) * c + sigmoid(i) * np.tanh(g)
        return sigmoid(o) * np.tanh(c), c
    vx = np.split(x @ kernel + bias, 3, axis=1)
    vh = np.split(h @ recurrent_kernel + recurrent_bias, 3, axis=1)
    z = sigmoid(vx[0] + vh[0])
    r = sigmoid(vx[1] + vh[1])
    g = np.tanh(vx[2] + r * vh[2])
    return z * h + (1 - z) * g, None


STEPS = {"keras": keras_step, "onednn": onednn_step, "haste": haste_step}


def layout_forward(layout, cell, reset_after, x, arrays, reverse=False):
    """y [T,B,H] of one direction, run step by step with the layout's own equations."""
    T, B, _ = x.shape
    H = (arrays.get("recurrent_kernel") if "recurrent_kernel" in arrays
         else arrays["weights_iter"]).shape[0]
    h, c = np.zeros((B, H)), np.zeros((B, H))
    y = np.empty((T, B, H))
    for t in (range(T - 1, -1, -1) if reverse else range(T)):
        h, c = STEPS[layout](cell, reset_after, x[t], h, c, **arrays)
        y[t] = h
    return y


def pyrnn_layer(cell, reset_after, I, H, **kw):
    extra = {"reset_after": reset_after} if cell == "gru" else {}
    cls = {"rnn": pyrnn.RNN, "lstm": pyrnn.LSTM, "gru": pyrnn.GRU}[cell]
    return cls(I, H, dtype=np.float64, backend="numpy", **extra, **kw)


# --- round trips ------------------------------------------------------------------------------

@pytest.mark.parametrize("layout,cell,reset_after", PARAMS, ids=IDS)
def test_layout_round_trip_is_exact(layout, cell, reset_after):
    rng = np.random.default_rng(0)
    weights = random_pyrnn(cell, 3, 4, rng)
    arrays = to_layout(layout, cell, reset_after, weights)
    # layout -> pyrnn -> layout returns the very same arrays
    again = to_layout(layout, cell, reset_after, from_layout(layout, cell, reset_after, arrays))
    assert arrays.keys() == again.keys()
    for name in arrays:
        np.testing.assert_array_equal(again[name], arrays[name], err_msg=name)
    # pyrnn -> layout -> pyrnn keeps the weights; biases keep their sum (and both, where the
    # layout keeps both)
    w_ih, w_hh, b_ih, b_hh = from_layout(layout, cell, reset_after, arrays)
    np.testing.assert_array_equal(w_ih, weights[0])
    np.testing.assert_array_equal(w_hh, weights[1])
    np.testing.assert_allclose(b_ih + b_hh, weights[2] + weights[3], rtol=1e-15, atol=1e-15)
    if cell == "gru" and reset_after and layout in ("keras", "haste"):
        np.testing.assert_array_equal(b_ih, weights[2])
        np.testing.assert_array_equal(b_hh, weights[3])


@pytest.mark.parametrize("layout,cell,reset_after", PARAMS, ids=IDS)
def test_layout_shapes_match_the_documentation(layout, cell, reset_after):
    G, I, H = pyrnn.functional.GATES[cell], 3, 4
    arrays = to_layout(layout, cell, reset_after, random_pyrnn(cell, I, H,
                                                               np.random.default_rng(1)))
    if layout == "onednn":
        bias_rows = 4 if cell == "gru" and reset_after else G
        expected = {"weights_layer": (I, G, H), "weights_iter": (H, G, H),
                    "bias": (bias_rows, H)}
    else:
        expected = {"kernel": (I, G * H), "recurrent_kernel": (H, G * H)}
        if layout == "haste" and cell == "gru":
            expected.update(bias=(G * H,), recurrent_bias=(G * H,))
        else:
            expected["bias"] = (2, G * H) if cell == "gru" and reset_after else (G * H,)
    assert {k: v.shape for k, v in arrays.items()} == expected


def test_no_bias():
    rng = np.random.default_rng(2)
    weights = random_pyrnn("lstm", 3, 2, rng, bias=False)
    keras = convert.to_keras("lstm", *weights)
    assert keras["bias"] is None
    assert convert.from_keras("lstm", **keras)[2:] == (None, None)
    # oneDNN and haste always carry a bias: zeros, which leave the outputs unchanged
    assert not convert.to_onednn("lstm", *weights)["bias"].any()
    assert not convert.to_haste("lstm", *weights)["bias"].any()


def test_bad_input_names_the_argument():
    rng = np.random.default_rng(3)
    w_ih, w_hh, b_ih, b_hh = random_pyrnn("gru", 3, 4, rng)
    with pytest.raises(ValueError, match="w_hh"):
        convert.to_keras("gru", w_ih, w_hh[:5], b_ih, b_hh)
    with pytest.raises(ValueError, match="b_ih, b_hh"):
        convert.to_onednn("gru", w_ih, w_hh, b_ih, None)
    with pytest.raises(ValueError, match=r"bias: expected shape \[2,12\]"):
        convert.from_keras("gru", w_ih.T, w_hh.T, b_ih, reset_after=True)
    with pytest.raises(ValueError, match="cell"):
        convert.to_haste("rnn", w_ih[:4], w_hh[:4])
    with pytest.raises(ValueError, match="recurrent_bias"):
        convert.from_haste("gru", w_ih.T, w_hh.T, b_ih)


# --- numeric equality with each layout's equations --------------------------------------------

@pytest.mark.parametrize("layout,cell,reset_after", PARAMS, ids=IDS)
def test_converted_model_matches_the_layout_equations(layout, cell, reset_after):
    """A 2-layer bidirectional pyrnn model and the layout's equations with converted weights."""
    rng = np.random.default_rng(4)
    T, B, I, H = 5, 3, 4, 3
    model = pyrnn_layer(cell, reset_after, I, H, num_layers=2, bidirectional=True)
    x = rng.standard_normal((T, B, I))
    expected, _ = model(x)

    # pyrnn weights -> the layout, run with the layout's own equations
    layer_in = x
    converted = {}
    for layer in range(2):
        outs = []
        for reverse in (False, True):
            weights = convert.layer_weights(model.state_dict(), layer, reverse)
            arrays = to_layout(layout, cell, reset_after, weights)
            outs.append(layout_forward(layout, cell, reset_after, layer_in, arrays, reverse))
            converted.update(convert.layer_state_dict(
                from_layout(layout, cell, reset_after, arrays), layer, reverse))
        layer_in = np.concatenate(outs, axis=2)
    np.testing.assert_allclose(layer_in, expected, rtol=1e-12, atol=1e-12)

    # ... and back: a model loaded from the layout's weights gives the same outputs
    model_back = pyrnn_layer(cell, reset_after, I, H, num_layers=2, bidirectional=True)
    model_back.load_state_dict(converted)
    np.testing.assert_allclose(model_back(x)[0], expected, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("layout,cell,reset_after", PARAMS, ids=IDS)
def test_weights_from_the_layout_reproduce_its_outputs(layout, cell, reset_after):
    """Random weights born in the layout (not made by to_*), converted into a pyrnn layer."""
    rng = np.random.default_rng(5)
    T, B, I, H = 4, 2, 3, 5
    template = to_layout(layout, cell, reset_after, random_pyrnn(cell, I, H, rng))
    arrays = {name: rng.standard_normal(a.shape) for name, a in template.items()}
    x = rng.standard_normal((T, B, I))
    expected = layout_forward(layout, cell, reset_after, x, arrays)
    model = pyrnn_layer(cell, reset_after, I, H)
    model.load_state_dict(convert.layer_state_dict(from_layout(layout, cell, reset_after,
                                                               arrays)))
    np.testing.assert_allclose(model(x)[0], expected, rtol=1e-12, atol=1e-12)


def test_state_dict_helpers_read_torch_and_cells():
    lstm = torch.nn.LSTM(3, 4, num_layers=2, bidirectional=True, bias=False)
    w_ih, w_hh, b_ih, b_hh = convert.layer_weights(lstm.state_dict(), 1, reverse=True)
    np.testing.assert_array_equal(w_ih, lstm.weight_ih_l1_reverse.detach().numpy())
    assert w_hh.shape == (16, 4) and b_ih is None and b_hh is None
    cell = pyrnn.GRUCell(3, 2, dtype=np.float64, backend="numpy")
    weights = convert.layer_weights(cell.state_dict(), layer=None)
    assert convert.layer_state_dict(weights, layer=None).keys() == cell.state_dict().keys()
    with pytest.raises(KeyError, match="weight_ih_l5"):
        convert.layer_weights(lstm.state_dict(), 5)
