"""LSTM, one layer x one direction x T steps: the reference for ``csrc/lstm.c``.

    i, f, g, o = sigmoid, sigmoid, tanh, sigmoid of (x_t @ w_ih^T + b_ih + h_{t-1} @ w_hh^T + b_hh)
    c_t = f * c_{t-1} + i * g;   h_t = o * tanh(c_t)

Workspace layout (elements of the data type), training:
    gates  [T,B,4H] activated i, f, g, o of every step
    hprev  [T,B,H]  the hidden state entering every step
    cprev  [T,B,H]  the cell state entering every step
    tanh_c [T,B,H]  tanh(c_t) of every step
    dgates [T,B,4H] backward: gradient of the pre-activations
    dh, dc [B,H]    backward: gradients of the carried states
Inference keeps ``gates`` (the input projection, then the activations) and
    hbuf, cbuf [2,B,H]  the states, double-buffered across steps (used by the compiled kernels).
The compiled kernels lay inference out with ROW_SKEW unused elements after each row of gates
(batch > 1) and STATE_SKEW after each [B,H] state buffer (csrc/common.h: rows 4 KiB apart slow
their loads); the length includes them, and the reference carves its regions from the front,
unspaced.
Both layouts end with the compiled kernels' own regions (``common.kernel_regions_len``), which
the reference carves and leaves alone.
"""

from __future__ import annotations

import numpy as np

from .common import (
    ROW_SKEW,
    STATE_SKEW,
    carve,
    dsigmoid_from_output,
    dtanh_from_output,
    kernel_regions_len,
    only_wanted,
    sigmoid,
    step_order,
    tanh,
    valid_mask,
)


def lstm_workspace_head_len(T: int, B: int, H: int, training: bool) -> int:
    """Elements of the layout's own regions, before the compiled kernels' (their scratch)."""
    inference = T * B * (4 * H + ROW_SKEW) + 4 * (B * H + STATE_SKEW)
    return 11 * T * B * H + 2 * B * H if training else inference


def lstm_workspace_saved_len(T: int, B: int, H: int) -> int:
    """Elements at the front of a training workspace that forward leaves for backward (gates,
    hprev, cprev, tanh_c); backward's own regions follow."""
    return 7 * T * B * H


def lstm_workspace_len(T: int, B: int, I: int, H: int, training: bool) -> int:
    """Elements of workspace that lstm_forward (and, when ``training``, lstm_backward) need."""
    return lstm_workspace_head_len(T, B, H, training) + kernel_regions_len(B, I, H, 4, T == 1)


def _workspace(workspace, T, B, H, training, I=None):
    # the compiled kernels' regions are carved (so their size is checked) when I is known
    kernels = [] if I is None else [(kernel_regions_len(B, I, H, 4, T == 1),)]
    if training:
        return carve(workspace, [(T, B, 4 * H), (T, B, H), (T, B, H), (T, B, H), (T, B, 4 * H),
                                 (B, H), (B, H)] + kernels)[:7]
    return carve(workspace, [(T, B, 4 * H), (2, B, H), (2, B, H)] + kernels)[:1] + [None] * 6


def lstm_forward(x, h0, c0, w_ih, w_hh, b_ih, b_hh, lengths, workspace, *, reverse=False,
                 training=False):
    """Run the cell over all steps of ``x``.

    x: [T,B,I]; h0, c0: [B,H] or None (zeros); w_ih: [4H,I]; w_hh: [4H,H]; b_ih, b_hh: [4H] or
    None; lengths: [B] int64 in 1..T or None; workspace: 1-D, lstm_workspace_len elements.
    Returns y [T,B,H] (zero past each length), h_n [B,H], c_n [B,H].
    """
    T, B, I = x.shape
    H = w_hh.shape[1]
    gates, hprev, cprev, tanh_c, _, _, _ = _workspace(workspace, T, B, H, training, I)
    valid = valid_mask(lengths, T, B)

    # 1. input projection for all steps as one GEMM: gates = x @ w_ih^T + b_ih + b_hh
    np.matmul(x.reshape(T * B, I), w_ih.T, out=gates.reshape(T * B, 4 * H))
    if b_ih is not None:
        gates += b_ih + b_hh

    # 2. time loop: recurrent product and the fused pointwise update
    y = np.empty((T, B, H), dtype=x.dtype)
    h = np.zeros((B, H), dtype=x.dtype) if h0 is None else h0.copy()
    c = np.zeros((B, H), dtype=x.dtype) if c0 is None else c0.copy()
    for t in step_order(T, reverse):
        h_prev, c_prev = h, c
        pre = gates[t] + h_prev @ w_hh.T
        i = sigmoid(pre[:, 0 * H : 1 * H])
        f = sigmoid(pre[:, 1 * H : 2 * H])
        g = tanh(pre[:, 2 * H : 3 * H])
        o = sigmoid(pre[:, 3 * H : 4 * H])
        c_new = f * c_prev + i * g
        tc = tanh(c_new)
        gates[t] = np.concatenate([i, f, g, o], axis=1)
        if training:
            hprev[t], cprev[t], tanh_c[t] = h_prev, c_prev, tc
        h = np.where(valid[t], o * tc, h_prev)
        c = np.where(valid[t], c_new, c_prev)
        y[t] = np.where(valid[t], h, 0)
    return y, h, c


def lstm_backward(x, h0, c0, w_ih, w_hh, b_ih, b_hh, lengths, dy, dh_n, dc_n, workspace, *,
                  reverse=False, wanted=None):
    """Gradients of a loss through lstm_forward(training=True) that filled ``workspace``.

    dy: [T,B,H] gradient of y (ignored past each length); dh_n, dc_n: [B,H] or None.
    wanted: None, or a flag per result (common.only_wanted): those not wanted are None.
    Returns dx [T,B,I], dh0 [B,H], dc0 [B,H], dw_ih [4H,I], dw_hh [4H,H], db_ih, db_hh [4H] or None.
    """
    T, B, I = x.shape
    H = w_hh.shape[1]
    gates, hprev, cprev, tanh_c, dgates, dh, dc = _workspace(workspace, T, B, H, True, I)
    valid = valid_mask(lengths, T, B)

    # 1. reverse time loop: dgates[t] and the carried gradients only
    dh[:] = 0 if dh_n is None else dh_n
    dc[:] = 0 if dc_n is None else dc_n
    for t in reversed(step_order(T, reverse)):
        # forward was: c = f*c_prev + i*g; h = o*tanh(c); both kept only where the step is valid
        i, f, g, o = (gates[t][:, k * H : (k + 1) * H] for k in range(4))
        tc = tanh_c[t]
        dh_t = dh + dy[t]
        dc_t = dc + dh_t * o * dtanh_from_output(tc)
        d_pre = np.concatenate([
            dc_t * g * dsigmoid_from_output(i),
            dc_t * cprev[t] * dsigmoid_from_output(f),
            dc_t * i * dtanh_from_output(g),
            dh_t * tc * dsigmoid_from_output(o),
        ], axis=1)
        dgates[t] = np.where(valid[t], d_pre, 0)
        dh[:] = np.where(valid[t], dgates[t] @ w_hh, dh)
        dc[:] = np.where(valid[t], dc_t * f, dc)

    # 2. weight gradients and dx, each one GEMM over all steps
    dg = dgates.reshape(T * B, 4 * H)
    dx = (dg @ w_ih).reshape(T, B, I)
    dw_ih = dg.T @ x.reshape(T * B, I)
    dw_hh = dg.T @ hprev.reshape(T * B, H)
    db = dg.sum(axis=0) if b_ih is not None else None
    return only_wanted((dx, dh.copy(), dc.copy(), dw_ih, dw_hh, db,
                        None if db is None else db.copy()), wanted)
