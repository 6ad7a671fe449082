"""GRU on the GPU, both variants: the reference's ``gru_forward`` / ``gru_backward``
(``ref/gru.py``). reset_before needs r*h of every unit before the n gate, so its steps are two
launches (two grid syncs in the persistent kernel)."""

from __future__ import annotations

from ..ref.common import only_wanted
from ..ref.gru import _workspace as layout
from ..ref.gru import gru_workspace_len
from . import _layer as L
from . import _runtime as rt
from . import persistent
from .cells import kernels, launch_1d


def gru_forward(x, h0, w_ih, w_hh, b_ih, b_hh, lengths, workspace, *, reverse=False,
                training=False, reset_after=True):
    """Same contract as ``pyrnn.ref.gru_forward``."""
    call = L.Call(x, h0=h0, w_ih=w_ih, w_hh=w_hh, b_ih=b_ih, b_hh=b_hh, lengths=lengths,
                  workspace=workspace)
    T, B, I = call.x.shape
    H = w_hh.shape[1]
    ws = call.workspace(workspace, gru_workspace_len(T, B, I, H, training, reset_after))
    gates, gh, extra, hprev, _, _, _, _ = L.flat_views(
        layout(ws, T, B, H, training, reset_after))
    lens = call.lengths(lengths, T, B)
    # what the n gate saw: the workspace's extra when training, else gh's first [B,H]
    extra, rh_stride = (extra, B * H) if training else (gh, 0)
    hprev = gates if hprev is None else hprev

    # 1. input projection for all steps as one GEMM: gates = x @ w_ih^T + b_ih (+ the parts of
    #    b_hh that are added outside the reset gate)
    b_hh_d = L.project_input(call, w_ih, b_ih, b_hh, gates, 3, H, 2 * H if reset_after else 3 * H)
    has_bias = b_hh_d is not None
    b_hh_d = gates if b_hh_d is None else b_hh_d

    # 2. time loop: one persistent launch, or one or two launches per step
    y = rt.empty(T * B * H, call.dtype)
    hbuf = L.state_buffers(call, h0, B, H)
    w_hh_d = call.weight("w_hh", w_hh, (3 * H, H))
    if reset_after:
        ran = persistent.launch(
            "persistent_gru", call.dtype, 3, H, B,
            lambda U: (gates, w_hh_d, b_hh_d, hbuf, y, extra, hprev, lens, T, B, H, U, reverse,
                       has_bias, training))
    else:
        ran = persistent.launch(
            "persistent_gru_reset_before", call.dtype, 3, H, B,
            lambda U: (gates, w_hh_d, hbuf, extra, rh_stride, y, hprev, lens, T, B, H, U,
                       reverse, training))
    if not ran:
        w_t = L.packed_w_hh(call, w_hh, 3, H)
        k_all = kernels(call.dtype)
        for k, t in enumerate(L.step_order(T, reverse)):
            src, dst = (k % 2) * B * H, ((k + 1) % 2) * B * H
            h_prev, h_next = hbuf[src : src + B * H], hbuf[dst : dst + B * H]
            if reset_after:
                launch_1d(k_all["gru_step"], B * H, gates, w_t, b_hh_d, h_prev, h_next, y,
                          extra, hprev, lens, t, B, H, has_bias, training)
            else:
                launch_1d(k_all["gru_step_rz"], B * H, gates, w_t, h_prev, extra,
                          t * rh_stride, hprev, t, B, H, training)
                launch_1d(k_all["gru_step_n"], B * H, gates, w_t, extra, t * rh_stride,
                          h_prev, h_next, y, lens, t, B, H)
    call.finish()
    return call.result(y.reshape(T, B, H)), call.result(L.final_state(hbuf, T, B, H))


def gru_backward(x, h0, w_ih, w_hh, b_ih, b_hh, lengths, dy, dh_n, workspace, *, reverse=False,
                 reset_after=True, wanted=None):
    """Same contract as ``pyrnn.ref.gru_backward``."""
    call = L.Call(x, h0=h0, w_ih=w_ih, w_hh=w_hh, b_ih=b_ih, b_hh=b_hh, lengths=lengths, dy=dy,
                  dh_n=dh_n, workspace=workspace)
    T, B, I = call.x.shape
    H = w_hh.shape[1]
    ws = call.workspace(workspace, gru_workspace_len(T, B, I, H, True, reset_after))
    gates, _, extra, hprev, dgx, dgh, dh, drh = L.flat_views(
        layout(ws, T, B, H, True, reset_after))
    lens = call.lengths(lengths, T, B)
    dy_d = call.array("dy", dy, (T, B, H))
    w_hh_d = call.weight("w_hh", w_hh, (3 * H, H))

    # 1. reverse time loop: dgx[t], dgh[t] and the carried gradient only
    call.fill(dh, "dh_n", dh_n, (B, H))
    k_all = kernels(call.dtype)
    for t, t_prev in L.backward_order(T, reverse):
        if reset_after:
            launch_1d(k_all["gru_backward_step"], B * H, gates, extra, hprev, dgx, dgh, dh, dy_d,
                      w_hh_d, lens, t, t_prev, B, H)
            continue
        launch_1d(k_all["gru_backward_step_a"], B * H, gates, hprev, dgx, dh, dy_d, w_hh_d,
                  lens, t, t_prev, B, H)
        if t >= 0:
            launch_1d(k_all["gru_backward_step_b"], B * H, gates, hprev, dgx, dh, drh, w_hh_d,
                      lens, t, B, H)

    # 2. weight gradients and dx, each one GEMM over all steps
    dx, dw_ih = L.input_gradients(call, w_ih, dgx, 3, H)
    dw_hh = rt.empty(3 * H * H, call.dtype)
    if reset_after:
        L.weight_gradient(dgh, 3 * H, 0, 3 * H, hprev, T * B, H, dw_hh, 0)
    else:
        L.weight_gradient(dgh, 3 * H, 0, 2 * H, hprev, T * B, H, dw_hh, 0)
        L.weight_gradient(dgh, 3 * H, 2 * H, H, extra, T * B, H, dw_hh, 2 * H)
    has_bias = b_ih is not None
    db_ih = L.bias_gradient(call, dgx, T * B, 3 * H) if has_bias else None
    db_hh = L.bias_gradient(call, dgh, T * B, 3 * H) if has_bias else None
    dh0 = rt.copy_of(dh)
    call.finish()
    res = call.result
    return only_wanted((res(dx), res(dh0.reshape(B, H)), res(dw_ih),
                        res(dw_hh.reshape(3 * H, H)), None if db_ih is None else res(db_ih),
                        None if db_hh is None else res(db_hh)), wanted)
