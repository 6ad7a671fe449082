"""Elman RNN, one layer x one direction x T steps: the reference for ``csrc/rnn.c``.

    h_t = act(x_t @ w_ih^T + b_ih + h_{t-1} @ w_hh^T + b_hh),   act = tanh or relu

Workspace layout (elements of the data type), training:
    gates  [T,B,H]  act(...) of every step (the new state where the step is valid)
    hprev  [T,B,H]  the state entering every step
    dgates [T,B,H]  backward: gradient of the pre-activation
    dh     [B,H]    backward: gradient of the carried state
Inference keeps ``gates`` (it holds the input projection, then the activations) and
    hbuf   [2,B,H]  the state, double-buffered across steps (used by the compiled kernels).
The compiled kernels lay inference out with ROW_SKEW unused elements after each row of gates
(batch > 1) and STATE_SKEW after each [B,H] state buffer (csrc/common.h: rows 4 KiB apart slow
their loads); the length includes them, and the reference carves its regions from the front,
unspaced.
Both layouts end with the compiled kernels' own regions (``common.kernel_regions_len``), which
the reference carves and leaves alone.
"""

from __future__ import annotations

import numpy as np

from . import common
from .common import (
    ROW_SKEW,
    STATE_SKEW,
    carve,
    kernel_regions_len,
    only_wanted,
    step_order,
    valid_mask,
)


def rnn_workspace_head_len(T: int, B: int, H: int, training: bool) -> int:
    """Elements of the layout's own regions, before the compiled kernels' (their scratch)."""
    inference = T * B * (H + ROW_SKEW) + 2 * (B * H + STATE_SKEW)
    return 3 * T * B * H + B * H if training else inference


def rnn_workspace_saved_len(T: int, B: int, H: int) -> int:
    """Elements at the front of a training workspace that forward leaves for backward (gates,
    hprev); backward's own regions follow."""
    return 2 * T * B * H


def rnn_workspace_len(T: int, B: int, I: int, H: int, training: bool) -> int:
    """Elements of workspace that rnn_forward (and, when ``training``, rnn_backward) need."""
    return rnn_workspace_head_len(T, B, H, training) + kernel_regions_len(B, I, H, 1, T == 1)


def _workspace(workspace, T, B, H, training, I=None):
    # the compiled kernels' regions are carved (so their size is checked) when I is known
    kernels = [] if I is None else [(kernel_regions_len(B, I, H, 1, T == 1),)]
    if training:
        return carve(workspace, [(T, B, H), (T, B, H), (T, B, H), (B, H)] + kernels)[:4]
    return carve(workspace, [(T, B, H), (2, B, H)] + kernels)[:1] + [None, None, None]


def rnn_forward(x, h0, w_ih, w_hh, b_ih, b_hh, lengths, workspace, *, reverse=False,
                training=False, relu=False):
    """Run the cell over all steps of ``x``.

    x: [T,B,I]; h0: [B,H] or None (zeros); w_ih: [H,I]; w_hh: [H,H]; b_ih, b_hh: [H] or None;
    lengths: [B] int64 in 1..T or None (all T); workspace: 1-D, rnn_workspace_len elements.
    Returns y [T,B,H] (zero past each length) and h_n [B,H].
    """
    T, B, I = x.shape
    H = w_hh.shape[1]
    act = common.relu if relu else common.tanh
    gates, hprev, _, _ = _workspace(workspace, T, B, H, training, I)
    valid = valid_mask(lengths, T, B)

    # 1. input projection for all steps as one GEMM: gates = x @ w_ih^T + b_ih + b_hh
    np.matmul(x.reshape(T * B, I), w_ih.T, out=gates.reshape(T * B, H))
    if b_ih is not None:
        gates += b_ih + b_hh

    # 2. time loop: recurrent product and the fused pointwise update
    y = np.empty((T, B, H), dtype=x.dtype)
    h = np.zeros((B, H), dtype=x.dtype) if h0 is None else h0.copy()
    for t in step_order(T, reverse):
        h_prev = h
        if training:
            hprev[t] = h_prev
        gates[t] = act(gates[t] + h_prev @ w_hh.T)
        h = np.where(valid[t], gates[t], h_prev)
        y[t] = np.where(valid[t], h, 0)
    return y, h


def rnn_backward(x, h0, w_ih, w_hh, b_ih, b_hh, lengths, dy, dh_n, workspace, *, reverse=False,
                 relu=False, wanted=None):
    """Gradients of a loss through rnn_forward(training=True) that filled ``workspace``.

    dy: [T,B,H] gradient of y (ignored past each length); dh_n: [B,H] or None.
    wanted: None, or a flag per result (common.only_wanted): those not wanted are None.
    Returns dx [T,B,I], dh0 [B,H], dw_ih [H,I], dw_hh [H,H], db_ih [H] or None, db_hh [H] or None.
    """
    T, B, I = x.shape
    H = w_hh.shape[1]
    dact = common.drelu_from_output if relu else common.dtanh_from_output
    gates, hprev, dgates, dh = _workspace(workspace, T, B, H, True, I)
    valid = valid_mask(lengths, T, B)

    # 1. reverse time loop: dgates[t] and the carried gradient only
    dh[:] = 0 if dh_n is None else dh_n
    for t in reversed(step_order(T, reverse)):
        # forward was: gates[t] = act(gx + h_prev @ w_hh^T); h = valid ? gates[t] : h_prev; y = h
        dh_t = dh + dy[t]
        dgates[t] = np.where(valid[t], dh_t * dact(gates[t]), 0)
        dh[:] = np.where(valid[t], dgates[t] @ w_hh, dh)

    # 2. weight gradients and dx, each one GEMM over all steps
    dg = dgates.reshape(T * B, H)
    dx = (dg @ w_ih).reshape(T, B, I)
    dw_ih = dg.T @ x.reshape(T * B, I)
    dw_hh = dg.T @ hprev.reshape(T * B, H)
    db = dg.sum(axis=0) if b_ih is not None else None
    return only_wanted((dx, dh.copy(), dw_ih, dw_hh, db, None if db is None else db.copy()),
                       wanted)
