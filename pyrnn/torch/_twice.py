"""Backward asked for a graph (``create_graph=True``): gradients that can be differentiated
again, for gradient penalties, Hessian-vector products and meta-learning.

pyrnn's fused backward computes outside autograd, so no graph can run through it. A backward
asked for one runs the layer's or cell's forward again through torch's own recurrent operators
(the ones torch.nn's forward calls), on the same inputs, lengths and dropout masks, and takes
its gradients through autograd with ``create_graph=True``: torch.nn's gradients and second
derivatives. Such a backward pays for torch's forward and backward on top of pyrnn's forward; a
plain backward stays pyrnn's.
"""

from __future__ import annotations

import torch
from torch.nn.utils.rnn import PackedSequence, pack_padded_sequence, pad_packed_sequence

# torch's operators for a layer and for one step, by cell and whether an RNN's is relu (a GRU
# here is always torch's, reset-after)
_LAYER_OPS = {("rnn", False): torch.rnn_tanh, ("rnn", True): torch.rnn_relu,
              ("lstm", False): torch.lstm, ("gru", False): torch.gru}
_CELL_OPS = {("rnn", False): torch.rnn_tanh_cell, ("rnn", True): torch.rnn_relu_cell,
             ("gru", False): torch.gru_cell}


def _key(spec) -> tuple[str, bool]:
    return spec.kind, dict(spec.flags).get("relu", False)


def stack_outputs(call, masks: list, x, h0, c0, *flat_weights) -> tuple:
    """StackFunction's forward (out, h_n[, c_n]) of ``call`` (a StackCall) through torch's
    operators, layer by layer, each layer's output multiplied by the dropout mask the forward
    drew for it (``masks``: one a layer, None where none applied)."""
    op, lstm = _LAYER_OPS[_key(call.spec)], call.spec.has_cell_state
    L, D = call.num_layers, call.num_directions
    T, B, _ = x.shape
    H = flat_weights[1].shape[-1]
    if h0 is None:
        h0 = x.new_zeros((L * D, B, H))
    if lstm and c0 is None:
        c0 = x.new_zeros((L * D, B, H))
    lengths = None if call.lengths is None else torch.from_numpy(call.lengths)
    per = (4 if call.bias else 2) * D
    layer_in, h_n, c_n = x, [], []
    for layer in range(L):
        states = slice(layer * D, (layer + 1) * D)
        hx = (h0[states], c0[states]) if lstm else h0[states]
        params = flat_weights[layer * per:(layer + 1) * per]
        if lengths is None:
            out, *state = op(layer_in, hx, params, call.bias, 1, 0.0, True, D == 2, False)
        else:
            packed = pack_padded_sequence(layer_in, lengths)
            data, *state = op(packed.data, packed.batch_sizes, hx, params, call.bias, 1, 0.0,
                              True, D == 2)
            out, _ = pad_packed_sequence(PackedSequence(data, packed.batch_sizes),
                                         total_length=T)
        h_n.append(state[0])
        if lstm:
            c_n.append(state[1])
        layer_in = out if masks[layer] is None else out * masks[layer]
    if lstm:
        return layer_in, torch.cat(h_n), torch.cat(c_n)
    return layer_in, torch.cat(h_n)


def cell_outputs(spec, x, h0, c0, *weights) -> tuple:
    """CellFunction's forward (h'[, c']) through torch's operator for one step."""
    w_ih, w_hh, b_ih, b_hh = (*weights, None, None)[:4]
    if h0 is None:  # called without states (an LSTMCell's come as a pair)
        h0 = c0 = x.new_zeros((x.shape[0], w_hh.shape[-1]))
    if spec.has_cell_state:
        return torch.lstm_cell(x, (h0, c0), w_ih, w_hh, b_ih, b_hh)
    return (_CELL_OPS[_key(spec)](x, h0, w_ih, w_hh, b_ih, b_hh),)


def gradients(outputs, inputs, needs, grads_out) -> list:
    """The gradients of ``inputs`` (None where not in ``needs``, or not used) through
    ``outputs(*inputs)``, given the outputs' gradients ``grads_out`` (None: zero), built as a
    graph that autograd can differentiate again."""
    wanted = [k for k, (t, need) in enumerate(zip(inputs, needs)) if need and t is not None]
    results = [None] * len(inputs)
    with torch.enable_grad():
        pairs = [(o, g) for o, g in zip(outputs(*inputs), grads_out) if g is not None]
        if not wanted or not pairs:
            return results
        found = torch.autograd.grad([o for o, _ in pairs], [inputs[k] for k in wanted],
                                    [g for _, g in pairs], create_graph=True, allow_unused=True)
    for k, g in zip(wanted, found):
        results[k] = g
    return results
