"""Elman RNN on the GPU: the reference's ``rnn_forward`` / ``rnn_backward`` (``ref/rnn.py``)."""

from __future__ import annotations

from ..ref.common import only_wanted
from ..ref.rnn import _workspace as layout
from ..ref.rnn import rnn_workspace_len
from . import _layer as L
from . import _runtime as rt
from . import persistent
from .cells import kernels, launch_1d


def rnn_forward(x, h0, w_ih, w_hh, b_ih, b_hh, lengths, workspace, *, reverse=False,
                training=False, relu=False):
    """Same contract as ``pyrnn.ref.rnn_forward``; see the module docstring of ``_layer.Call``."""
    call = L.Call(x, h0=h0, w_ih=w_ih, w_hh=w_hh, b_ih=b_ih, b_hh=b_hh, lengths=lengths,
                  workspace=workspace)
    T, B, I = call.x.shape
    H = w_hh.shape[1]
    ws = call.workspace(workspace, rnn_workspace_len(T, B, I, H, training))
    gates, hprev, _, _ = L.flat_views(layout(ws, T, B, H, training))
    hprev = gates if hprev is None else hprev
    lens = call.lengths(lengths, T, B)

    # 1. input projection for all steps as one GEMM: gates = x @ w_ih^T + b_ih + b_hh
    L.project_input(call, w_ih, b_ih, b_hh, gates, 1, H, H)

    # 2. time loop: one persistent launch, or one launch per step
    y = rt.empty(T * B * H, call.dtype)
    hbuf = L.state_buffers(call, h0, B, H)
    w_hh_d = call.weight("w_hh", w_hh, (H, H))
    if not persistent.launch(
            "persistent_rnn", call.dtype, 1, H, B,
            lambda U: (gates, w_hh_d, hbuf, y, hprev, lens, T, B, H, U, reverse, relu, training)):
        w_t = L.packed_w_hh(call, w_hh, 1, H)
        step = kernels(call.dtype)["rnn_step"]
        for k, t in enumerate(L.step_order(T, reverse)):
            src, dst = (k % 2) * B * H, ((k + 1) % 2) * B * H
            launch_1d(step, B * H, gates, w_t, hbuf[src : src + B * H],
                      hbuf[dst : dst + B * H], y, hprev, lens, t, B, H, relu, training)
    call.finish()
    return call.result(y.reshape(T, B, H)), call.result(L.final_state(hbuf, T, B, H))


def rnn_backward(x, h0, w_ih, w_hh, b_ih, b_hh, lengths, dy, dh_n, workspace, *, reverse=False,
                 relu=False, wanted=None):
    """Same contract as ``pyrnn.ref.rnn_backward``."""
    call = L.Call(x, h0=h0, w_ih=w_ih, w_hh=w_hh, b_ih=b_ih, b_hh=b_hh, lengths=lengths, dy=dy,
                  dh_n=dh_n, workspace=workspace)
    T, B, I = call.x.shape
    H = w_hh.shape[1]
    ws = call.workspace(workspace, rnn_workspace_len(T, B, I, H, True))
    gates, hprev, dgates, dh = L.flat_views(layout(ws, T, B, H, True))
    lens = call.lengths(lengths, T, B)
    dy_d = call.array("dy", dy, (T, B, H))
    w_hh_d = call.weight("w_hh", w_hh, (H, H))

    # 1. reverse time loop: dgates[t] and the carried gradient only
    call.fill(dh, "dh_n", dh_n, (B, H))
    step = kernels(call.dtype)["rnn_backward_step"]
    for t, t_prev in L.backward_order(T, reverse):
        launch_1d(step, B * H, gates, dgates, dh, dy_d, w_hh_d, lens, t, t_prev, B, H, relu)

    # 2. weight gradients and dx, each one GEMM over all steps
    dx, dw_ih = L.input_gradients(call, w_ih, dgates, 1, H)
    dw_hh = rt.empty(H * H, call.dtype)
    L.weight_gradient(dgates, H, 0, H, hprev, T * B, H, dw_hh, 0)
    db = None if b_ih is None else L.bias_gradient(call, dgates, T * B, H)
    dh0 = rt.copy_of(dh)
    call.finish()
    res = call.result
    return only_wanted((res(dx), res(dh0.reshape(B, H)), res(dw_ih), res(dw_hh.reshape(H, H)),
                        None if db is None else res(db),
                        None if db is None else res(rt.copy_of(db))), wanted)
