"""LSTM on the GPU: the reference's ``lstm_forward`` / ``lstm_backward`` (``ref/lstm.py``)."""

from __future__ import annotations

from ..ref.common import only_wanted
from ..ref.lstm import _workspace as layout
from ..ref.lstm import lstm_workspace_len
from . import _layer as L
from . import _runtime as rt
from . import persistent
from .cells import kernels, launch_1d


def lstm_forward(x, h0, c0, w_ih, w_hh, b_ih, b_hh, lengths, workspace, *, reverse=False,
                 training=False):
    """Same contract as ``pyrnn.ref.lstm_forward``."""
    call = L.Call(x, h0=h0, c0=c0, w_ih=w_ih, w_hh=w_hh, b_ih=b_ih, b_hh=b_hh, lengths=lengths,
                  workspace=workspace)
    T, B, I = call.x.shape
    H = w_hh.shape[1]
    ws = call.workspace(workspace, lstm_workspace_len(T, B, I, H, training))
    gates, hprev, cprev, tanh_c, _, _, _ = L.flat_views(layout(ws, T, B, H, training))
    hprev, cprev, tanh_c = (gates, gates, gates) if hprev is None else (hprev, cprev, tanh_c)
    lens = call.lengths(lengths, T, B)

    # 1. input projection for all steps as one GEMM: gates = x @ w_ih^T + b_ih + b_hh
    L.project_input(call, w_ih, b_ih, b_hh, gates, 4, H, 4 * H)

    # 2. time loop: one persistent launch, or one launch per step
    y = rt.empty(T * B * H, call.dtype)
    hbuf = L.state_buffers(call, h0, B, H)
    c = call.fill(rt.empty(B * H, call.dtype), "c0", c0, (B, H))
    w_hh_d = call.weight("w_hh", w_hh, (4 * H, H))
    if not persistent.launch(
            "persistent_lstm", call.dtype, 4, H, B,
            lambda U: (gates, w_hh_d, hbuf, c, y, hprev, cprev, tanh_c, lens, T, B, H, U,
                       reverse, training)):
        w_t = L.packed_w_hh(call, w_hh, 4, H)
        step = kernels(call.dtype)["lstm_step"]
        for k, t in enumerate(L.step_order(T, reverse)):
            src, dst = (k % 2) * B * H, ((k + 1) % 2) * B * H
            launch_1d(step, B * H, gates, w_t, hbuf[src : src + B * H],
                      hbuf[dst : dst + B * H], c, y, hprev, cprev, tanh_c, lens, t, B, H,
                      training)
    call.finish()
    return (call.result(y.reshape(T, B, H)), call.result(L.final_state(hbuf, T, B, H)),
            call.result(c.reshape(B, H)))


def lstm_backward(x, h0, c0, w_ih, w_hh, b_ih, b_hh, lengths, dy, dh_n, dc_n, workspace, *,
                  reverse=False, wanted=None):
    """Same contract as ``pyrnn.ref.lstm_backward``."""
    call = L.Call(x, h0=h0, c0=c0, w_ih=w_ih, w_hh=w_hh, b_ih=b_ih, b_hh=b_hh, lengths=lengths,
                  dy=dy, dh_n=dh_n, dc_n=dc_n, workspace=workspace)
    T, B, I = call.x.shape
    H = w_hh.shape[1]
    ws = call.workspace(workspace, lstm_workspace_len(T, B, I, H, True))
    gates, hprev, cprev, tanh_c, dgates, dh, dc = L.flat_views(layout(ws, T, B, H, True))
    lens = call.lengths(lengths, T, B)
    dy_d = call.array("dy", dy, (T, B, H))
    w_hh_d = call.weight("w_hh", w_hh, (4 * H, H))

    # 1. reverse time loop: dgates[t] and the carried gradients only
    call.fill(dh, "dh_n", dh_n, (B, H))
    call.fill(dc, "dc_n", dc_n, (B, H))
    step = kernels(call.dtype)["lstm_backward_step"]
    for t, t_prev in L.backward_order(T, reverse):
        launch_1d(step, B * H, gates, cprev, tanh_c, dgates, dh, dc, dy_d, w_hh_d, lens, t,
                  t_prev, B, H)

    # 2. weight gradients and dx, each one GEMM over all steps
    dx, dw_ih = L.input_gradients(call, w_ih, dgates, 4, H)
    dw_hh = rt.empty(4 * H * H, call.dtype)
    L.weight_gradient(dgates, 4 * H, 0, 4 * H, hprev, T * B, H, dw_hh, 0)
    db = None if b_ih is None else L.bias_gradient(call, dgates, T * B, 4 * H)
    dh0, dc0 = rt.copy_of(dh), rt.copy_of(dc)
    call.finish()
    res = call.result
    return only_wanted((res(dx), res(dh0.reshape(B, H)), res(dc0.reshape(B, H)), res(dw_ih),
                        res(dw_hh.reshape(4 * H, H)), None if db is None else res(db),
                        None if db is None else res(rt.copy_of(db))), wanted)
