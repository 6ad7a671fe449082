"""GRU, one layer x one direction x T steps: the reference for ``csrc/gru.c``.

    r = sigmoid(W_ir x + b_ir + W_hr h + b_hr);  z = sigmoid(W_iz x + b_iz + W_hz h + b_hz)
    reset_after=True  (PyTorch, cuDNN):  n = tanh(W_in x + b_in + r * (W_hn h + b_hn))
    reset_after=False (Cho et al. 2014): n = tanh(W_in x + b_in + W_hn (r * h) + b_hn)
    h' = (1 - z) * n + z * h

Workspace layout (elements of the data type), training:
    gates [T,B,3H] activated r, z, n of every step
    extra [T,B,H]  reset_after: W_hn h + b_hn;  reset_before: r * h  (what the n gate saw)
    hprev [T,B,H]  the state entering every step
    dgx   [T,B,3H] backward: gradient of the input-side pre-activations (x @ w_ih^T + b_ih)
    dgh   [T,B,3H] backward, reset_after only: gradient of h @ w_hh^T + b_hh (differs in n)
    dh    [B,H]    backward: gradient of the carried state
    drh   [B,H]    backward, reset_before only: gradient of r * h
Inference keeps ``gates`` and a [B,3H] scratch (the compiled kernels double-buffer the state
in its first 2*B*H). Both layouts end with the compiled kernels' own regions
(``common.kernel_regions_len``), which the reference carves and leaves alone.
"""

from __future__ import annotations

import numpy as np

from .common import (
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


def gru_workspace_head_len(T: int, B: int, H: int, training: bool, reset_after: bool) -> int:
    """Elements of the layout's own regions, before the compiled kernels' (their scratch)."""
    if not training:
        return 3 * T * B * H + 3 * B * H
    return (11 if reset_after else 8) * T * B * H + 2 * B * H


def gru_workspace_saved_len(T: int, B: int, H: int) -> int:
    """Elements at the front of a training workspace that forward leaves for backward (gates,
    extra, hprev; either variant); backward's own regions follow."""
    return 5 * T * B * H


def gru_workspace_len(T: int, B: int, I: int, H: int, training: bool, reset_after: bool) -> int:
    """Elements of workspace that gru_forward (and, when ``training``, gru_backward) need."""
    return (gru_workspace_head_len(T, B, H, training, reset_after)
            + kernel_regions_len(B, I, H, 3, T == 1 and reset_after))


def _workspace(workspace, T, B, H, training, reset_after, I=None):
    # the compiled kernels' regions are carved (so their size is checked) when I is known
    kernels = [] if I is None else [(kernel_regions_len(B, I, H, 3, T == 1 and reset_after),)]
    if not training:
        gates, gh = carve(workspace, [(T, B, 3 * H), (B, 3 * H)] + kernels)[:2]
        return gates, gh, None, None, None, None, None, None
    dgh_shape = (T, B, 3 * H) if reset_after else (0,)
    gates, extra, hprev, dgx, dgh, dh, drh = carve(
        workspace, [(T, B, 3 * H), (T, B, H), (T, B, H), (T, B, 3 * H), dgh_shape, (B, H), (B, H)]
        + kernels)[:7]
    # reset_before's h-side pre-activation gradient equals the x side's: dgh is dgx
    return gates, None, extra, hprev, dgx, dgh if reset_after else dgx, dh, drh


def gru_forward(x, h0, w_ih, w_hh, b_ih, b_hh, lengths, workspace, *, reverse=False,
                training=False, reset_after=True):
    """Run the cell over all steps of ``x``.

    x: [T,B,I]; h0: [B,H] or None (zeros); w_ih: [3H,I]; w_hh: [3H,H]; b_ih, b_hh: [3H] or None;
    lengths: [B] int64 in 1..T or None; workspace: 1-D, gru_workspace_len elements.
    Returns y [T,B,H] (zero past each length) and h_n [B,H].
    """
    T, B, I = x.shape
    H = w_hh.shape[1]
    gates, _, extra, hprev, _, _, _, _ = _workspace(workspace, T, B, H, training, reset_after,
                                                    I)
    valid = valid_mask(lengths, T, B)
    w_hrz, w_hn = w_hh[: 2 * H], w_hh[2 * H :]

    # 1. input projection for all steps as one GEMM: gates = x @ w_ih^T + b_ih (+ the parts of
    #    b_hh that are added outside the reset gate)
    np.matmul(x.reshape(T * B, I), w_ih.T, out=gates.reshape(T * B, 3 * H))
    if b_ih is not None:
        gates += b_ih
        gates[:, :, : 2 * H] += b_hh[: 2 * H]
        if not reset_after:
            gates[:, :, 2 * H :] += b_hh[2 * H :]

    # 2. time loop: recurrent product(s) and the fused pointwise update
    y = np.empty((T, B, H), dtype=x.dtype)
    h = np.zeros((B, H), dtype=x.dtype) if h0 is None else h0.copy()
    for t in step_order(T, reverse):
        h_prev = h
        gx = gates[t]
        gh_rz = h_prev @ w_hrz.T
        r = sigmoid(gx[:, :H] + gh_rz[:, :H])
        z = sigmoid(gx[:, H : 2 * H] + gh_rz[:, H:])
        if reset_after:
            n_seen = h_prev @ w_hn.T
            if b_hh is not None:
                n_seen = n_seen + b_hh[2 * H :]
            n = tanh(gx[:, 2 * H :] + r * n_seen)
        else:
            n_seen = r * h_prev
            n = tanh(gx[:, 2 * H :] + n_seen @ w_hn.T)
        gates[t] = np.concatenate([r, z, n], axis=1)
        if training:
            extra[t], hprev[t] = n_seen, h_prev
        h = np.where(valid[t], (1 - z) * n + z * h_prev, h_prev)
        y[t] = np.where(valid[t], h, 0)
    return y, h


def gru_backward(x, h0, w_ih, w_hh, b_ih, b_hh, lengths, dy, dh_n, workspace, *, reverse=False,
                 reset_after=True, wanted=None):
    """Gradients of a loss through gru_forward(training=True) that filled ``workspace``.

    dy: [T,B,H] gradient of y (ignored past each length); dh_n: [B,H] or None.
    wanted: None, or a flag per result (common.only_wanted): those not wanted are None.
    Returns dx [T,B,I], dh0 [B,H], dw_ih [3H,I], dw_hh [3H,H], db_ih, db_hh [3H] or None.
    """
    T, B, I = x.shape
    H = w_hh.shape[1]
    gates, _, extra, hprev, dgx, dgh, dh, drh = _workspace(workspace, T, B, H, True,
                                                          reset_after, I)
    valid = valid_mask(lengths, T, B)
    w_hrz, w_hn = w_hh[: 2 * H], w_hh[2 * H :]

    # 1. reverse time loop: dgx[t], dgh[t] and the carried gradient only
    dh[:] = 0 if dh_n is None else dh_n
    for t in reversed(step_order(T, reverse)):
        # forward was: h = (1-z)*n + z*h_prev, kept only where the step is valid
        r, z, n = (gates[t][:, k * H : (k + 1) * H] for k in range(3))
        h_prev = hprev[t]
        dh_t = dh + dy[t]
        dn_pre = dh_t * (1 - z) * dtanh_from_output(n)
        dz_pre = dh_t * (h_prev - n) * dsigmoid_from_output(z)
        if reset_after:
            # forward was: n = tanh(gx_n + r * extra), extra = W_hn h_prev + b_hn
            dr_pre = dn_pre * extra[t] * dsigmoid_from_output(r)
            dgh[t] = np.where(valid[t], np.concatenate([dr_pre, dz_pre, dn_pre * r], axis=1), 0)
            dh_prev = dh_t * z + dgh[t] @ w_hh
        else:
            # forward was: n = tanh(gx_n + (r * h_prev) @ W_hn^T + b_hn), extra = r * h_prev
            drh[:] = dn_pre @ w_hn
            dr_pre = drh * h_prev * dsigmoid_from_output(r)
            dh_prev = dh_t * z + drh * r
        dgx[t] = np.where(valid[t], np.concatenate([dr_pre, dz_pre, dn_pre], axis=1), 0)
        if not reset_after:
            dh_prev = dh_prev + dgx[t][:, : 2 * H] @ w_hrz
        dh[:] = np.where(valid[t], dh_prev, dh)

    # 2. weight gradients and dx, each one GEMM over all steps
    dgx2 = dgx.reshape(T * B, 3 * H)
    dgh2 = dgh.reshape(T * B, 3 * H)
    dx = (dgx2 @ w_ih).reshape(T, B, I)
    dw_ih = dgx2.T @ x.reshape(T * B, I)
    if reset_after:
        dw_hh = dgh2.T @ hprev.reshape(T * B, H)
    else:
        dw_hh = np.concatenate([dgh2[:, : 2 * H].T @ hprev.reshape(T * B, H),
                                dgh2[:, 2 * H :].T @ extra.reshape(T * B, H)])
    db_ih = dgx2.sum(axis=0) if b_ih is not None else None
    db_hh = dgh2.sum(axis=0) if b_ih is not None else None
    return only_wanted((dx, dh.copy(), dw_ih, dw_hh, db_ih, db_hh), wanted)
