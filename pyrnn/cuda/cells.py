"""Per-step kernels of the general path: one launch per step (two for GRU reset_before).

One thread per (b, j), 1-D grid over B*H. Forward: the thread forms the G recurrent dot products
of its hidden unit from w_t = w_hh^T [H,G*H] (a warp reads consecutive columns: coalesced; h_prev
is a broadcast) and applies the fused cell update; h ping-pongs between two [B,H] buffers.
Backward: a step's launch first finishes the carried gradient of the step processed before it
(dh[b,j] += dgates[t_prev][b,:] @ w_hh[:,j], coalesced on w_hh as stored), then computes this
step's dgates. The ``*_point`` device functions are the cell updates, shared with the
persistent kernels.

Indexing: gates-like arrays are [T,B,K*H] flat, element (t, b, g*H + j); states [B,H] flat.
"""

from __future__ import annotations

import functools
from types import SimpleNamespace

from ._runtime import BOOL, I64, INDEX, SIMULATOR, Kernel, array_type, cuda
from .common import device_functions

THREADS = 3 if SIMULATOR else 128  # odd in the simulator: several blocks, a partial last one


@functools.cache
def point_functions(dtype) -> SimpleNamespace:
    """The fused pointwise cell updates for one (t, b, j), given the recurrent dot products."""
    f = device_functions(dtype)
    one, zero = f.one, f.zero
    sigmoid, tanh, relu = f.sigmoid, f.tanh, f.relu

    @cuda.jit(device=True)
    def rnn_point(gates, hprev, y, t, b, j, B, H, dot, hp, valid, use_relu, training):
        gi = (t * B + b) * H + j
        pre = gates[gi] + dot
        v = relu(pre) if use_relu else tanh(pre)
        gates[gi] = v
        if training:
            hprev[gi] = hp
        hn = v if valid else hp
        y[gi] = hn if valid else zero
        return hn

    @cuda.jit(device=True)
    def lstm_point(gates, c, hprev, cprev, tanh_c, y, t, b, j, B, H, d_i, d_f, d_g, d_o, hp,
                   valid, training):
        g0 = (t * B + b) * 4 * H + j
        i = sigmoid(gates[g0] + d_i)
        fg = sigmoid(gates[g0 + H] + d_f)
        g = tanh(gates[g0 + 2 * H] + d_g)
        o = sigmoid(gates[g0 + 3 * H] + d_o)
        gates[g0] = i
        gates[g0 + H] = fg
        gates[g0 + 2 * H] = g
        gates[g0 + 3 * H] = o
        cp = c[b * H + j]
        c_new = fg * cp + i * g
        tc = tanh(c_new)
        si = (t * B + b) * H + j
        if training:
            hprev[si] = hp
            cprev[si] = cp
            tanh_c[si] = tc
        hn = o * tc if valid else hp
        if valid:
            c[b * H + j] = c_new
        y[si] = hn if valid else zero
        return hn

    @cuda.jit(device=True)
    def gru_point(gates, extra, hprev, y, t, b, j, B, H, d_r, d_z, n_seen, hp, valid, training):
        """reset_after: n = tanh(gx_n + r * n_seen), n_seen = W_hn h + b_hn."""
        g0 = (t * B + b) * 3 * H + j
        r = sigmoid(gates[g0] + d_r)
        z = sigmoid(gates[g0 + H] + d_z)
        n = tanh(gates[g0 + 2 * H] + r * n_seen)
        gates[g0] = r
        gates[g0 + H] = z
        gates[g0 + 2 * H] = n
        si = (t * B + b) * H + j
        if training:
            extra[si] = n_seen
            hprev[si] = hp
        hn = (one - z) * n + z * hp if valid else hp
        y[si] = hn if valid else zero
        return hn

    @cuda.jit(device=True)
    def gru_point_rz(gates, hprev, t, b, j, B, H, d_r, d_z, hp, training):
        """reset_before, first half: r and z; returns r * h_prev, what the n gate sees."""
        g0 = (t * B + b) * 3 * H + j
        r = sigmoid(gates[g0] + d_r)
        z = sigmoid(gates[g0 + H] + d_z)
        gates[g0] = r
        gates[g0 + H] = z
        if training:
            hprev[(t * B + b) * H + j] = hp
        return r * hp

    @cuda.jit(device=True)
    def gru_point_n(gates, y, t, b, j, B, H, d_n, hp, valid):
        """reset_before, second half: n = tanh(gx_n + (r*h) @ W_hn^T) and the new state."""
        g0 = (t * B + b) * 3 * H + j
        n = tanh(gates[g0 + 2 * H] + d_n)
        gates[g0 + 2 * H] = n
        z = gates[g0 + H]
        hn = (one - z) * n + z * hp if valid else hp
        y[(t * B + b) * H + j] = hn if valid else zero
        return hn

    return SimpleNamespace(rnn_point=rnn_point, lstm_point=lstm_point, gru_point=gru_point,
                           gru_point_rz=gru_point_rz, gru_point_n=gru_point_n)


@functools.cache
def kernels(dtype) -> dict[str, Kernel]:
    f = device_functions(dtype)
    p = point_functions(dtype)
    # jitted code sees module-level or closure names, not namespace attributes
    rnn_point, lstm_point, gru_point = p.rnn_point, p.lstm_point, p.gru_point
    gru_point_rz, gru_point_n = p.gru_point_rz, p.gru_point_n
    one, zero = f.one, f.zero
    dsig, dtanh, drelu = f.dsigmoid_from_output, f.dtanh_from_output, f.drelu_from_output
    F = array_type(dtype)

    @cuda.jit(device=True)
    def dot_column(v, v_off, w_t, ldw, col, H):
        """sum_k v[v_off + k] * w_t[k*ldw + col]: a column of w_t against a state row."""
        s = zero
        for k in range(H):
            s += v[v_off + k] * w_t[k * ldw + col]
        return s

    # -- forward ---------------------------------------------------------------------------

    def rnn_step(gates, w_t, h_prev, h_next, y, hprev, lengths, t, B, H, use_relu, training):
        idx = cuda.grid(1)
        if idx < B * H:
            b = idx // H
            j = idx - b * H
            dot = dot_column(h_prev, b * H, w_t, H, j, H)
            h_next[idx] = rnn_point(gates, hprev, y, t, b, j, B, H, dot, h_prev[idx],
                                      t < lengths[b], use_relu, training)

    def lstm_step(gates, w_t, h_prev, h_next, c, y, hprev, cprev, tanh_c, lengths, t, B, H,
                  training):
        idx = cuda.grid(1)
        if idx < B * H:
            b = idx // H
            j = idx - b * H
            d_i = dot_column(h_prev, b * H, w_t, 4 * H, j, H)
            d_f = dot_column(h_prev, b * H, w_t, 4 * H, H + j, H)
            d_g = dot_column(h_prev, b * H, w_t, 4 * H, 2 * H + j, H)
            d_o = dot_column(h_prev, b * H, w_t, 4 * H, 3 * H + j, H)
            h_next[idx] = lstm_point(gates, c, hprev, cprev, tanh_c, y, t, b, j, B, H,
                                       d_i, d_f, d_g, d_o, h_prev[idx], t < lengths[b],
                                       training)

    def gru_step(gates, w_t, b_hh, h_prev, h_next, y, extra, hprev, lengths, t, B, H, has_bias,
                 training):
        idx = cuda.grid(1)
        if idx < B * H:
            b = idx // H
            j = idx - b * H
            d_r = dot_column(h_prev, b * H, w_t, 3 * H, j, H)
            d_z = dot_column(h_prev, b * H, w_t, 3 * H, H + j, H)
            n_seen = dot_column(h_prev, b * H, w_t, 3 * H, 2 * H + j, H)
            if has_bias:
                n_seen += b_hh[2 * H + j]
            h_next[idx] = gru_point(gates, extra, hprev, y, t, b, j, B, H, d_r, d_z, n_seen,
                                      h_prev[idx], t < lengths[b], training)

    def gru_step_rz(gates, w_t, h_prev, rh, rh_off, hprev, t, B, H, training):
        idx = cuda.grid(1)
        if idx < B * H:
            b = idx // H
            j = idx - b * H
            d_r = dot_column(h_prev, b * H, w_t, 3 * H, j, H)
            d_z = dot_column(h_prev, b * H, w_t, 3 * H, H + j, H)
            rh[rh_off + idx] = gru_point_rz(gates, hprev, t, b, j, B, H, d_r, d_z, h_prev[idx],
                                              training)

    def gru_step_n(gates, w_t, rh, rh_off, h_prev, h_next, y, lengths, t, B, H):
        idx = cuda.grid(1)
        if idx < B * H:
            b = idx // H
            j = idx - b * H
            d_n = dot_column(rh, rh_off + b * H, w_t, 3 * H, 2 * H + j, H)
            h_next[idx] = gru_point_n(gates, y, t, b, j, B, H, d_n, h_prev[idx],
                                        t < lengths[b])

    # -- backward --------------------------------------------------------------------------

    @cuda.jit(device=True)
    def finish_dh(dh, dg, lengths, w_hh, t_prev, b, j, B, H, ldg, rows):
        """dh[b,j] += dg[t_prev][b, :rows] @ w_hh[:rows, j] where step t_prev was valid."""
        if t_prev >= 0 and t_prev < lengths[b]:
            base = (t_prev * B + b) * ldg
            s = zero
            for i in range(rows):
                s += dg[base + i] * w_hh[i * H + j]
            dh[b * H + j] += s

    def rnn_backward_step(gates, dgates, dh, dy, w_hh, lengths, t, t_prev, B, H, use_relu):
        idx = cuda.grid(1)
        if idx < B * H:
            b = idx // H
            j = idx - b * H
            finish_dh(dh, dgates, lengths, w_hh, t_prev, b, j, B, H, H, H)
            if t >= 0:
                # forward was: gates[t] = act(gx + h_prev @ w_hh^T); h = valid ? gates[t] : h_prev
                si = (t * B + b) * H + j
                if t < lengths[b]:
                    v = gates[si]
                    d = drelu(v) if use_relu else dtanh(v)
                    dgates[si] = (dh[idx] + dy[si]) * d
                    dh[idx] = zero
                else:
                    dgates[si] = zero

    def lstm_backward_step(gates, cprev, tanh_c, dgates, dh, dc, dy, w_hh, lengths, t, t_prev,
                           B, H):
        idx = cuda.grid(1)
        if idx < B * H:
            b = idx // H
            j = idx - b * H
            finish_dh(dh, dgates, lengths, w_hh, t_prev, b, j, B, H, 4 * H, 4 * H)
            if t >= 0:
                # forward was: c = f*c_prev + i*g; h = o*tanh(c); kept only where valid
                g0 = (t * B + b) * 4 * H + j
                si = (t * B + b) * H + j
                if t < lengths[b]:
                    i = gates[g0]
                    fg = gates[g0 + H]
                    g = gates[g0 + 2 * H]
                    o = gates[g0 + 3 * H]
                    tc = tanh_c[si]
                    dh_t = dh[idx] + dy[si]
                    dc_t = dc[idx] + dh_t * o * dtanh(tc)
                    dgates[g0] = dc_t * g * dsig(i)
                    dgates[g0 + H] = dc_t * cprev[si] * dsig(fg)
                    dgates[g0 + 2 * H] = dc_t * i * dtanh(g)
                    dgates[g0 + 3 * H] = dh_t * tc * dsig(o)
                    dh[idx] = zero
                    dc[idx] = dc_t * fg
                else:
                    for k in range(4):
                        dgates[g0 + k * H] = zero

    def gru_backward_step(gates, extra, hprev, dgx, dgh, dh, dy, w_hh, lengths, t, t_prev, B,
                          H):
        """reset_after: dh_prev = dh_t * z + dgh[t] @ w_hh."""
        idx = cuda.grid(1)
        if idx < B * H:
            b = idx // H
            j = idx - b * H
            finish_dh(dh, dgh, lengths, w_hh, t_prev, b, j, B, H, 3 * H, 3 * H)
            if t >= 0:
                # forward was: h = (1-z)*n + z*h_prev, n = tanh(gx_n + r * extra)
                g0 = (t * B + b) * 3 * H + j
                si = (t * B + b) * H + j
                if t < lengths[b]:
                    r = gates[g0]
                    z = gates[g0 + H]
                    n = gates[g0 + 2 * H]
                    dh_t = dh[idx] + dy[si]
                    dn_pre = dh_t * (one - z) * dtanh(n)
                    dz_pre = dh_t * (hprev[si] - n) * dsig(z)
                    dr_pre = dn_pre * extra[si] * dsig(r)
                    dgx[g0] = dr_pre
                    dgx[g0 + H] = dz_pre
                    dgx[g0 + 2 * H] = dn_pre
                    dgh[g0] = dr_pre
                    dgh[g0 + H] = dz_pre
                    dgh[g0 + 2 * H] = dn_pre * r
                    dh[idx] = dh_t * z
                else:
                    for k in range(3):
                        dgx[g0 + k * H] = zero
                        dgh[g0 + k * H] = zero

    def gru_backward_step_a(gates, hprev, dgx, dh, dy, w_hh, lengths, t, t_prev, B, H):
        """reset_before, first half: finish dh with dgx[t_prev][:, :2H] @ w_hh[:2H]; this step's
        dz_pre, dn_pre (into dgx) and dh_t (into dh) where valid."""
        idx = cuda.grid(1)
        if idx < B * H:
            b = idx // H
            j = idx - b * H
            finish_dh(dh, dgx, lengths, w_hh, t_prev, b, j, B, H, 3 * H, 2 * H)
            if t >= 0 and t < lengths[b]:
                g0 = (t * B + b) * 3 * H + j
                si = (t * B + b) * H + j
                z = gates[g0 + H]
                n = gates[g0 + 2 * H]
                dh_t = dh[idx] + dy[si]
                dgx[g0 + H] = dh_t * (hprev[si] - n) * dsig(z)
                dgx[g0 + 2 * H] = dh_t * (one - z) * dtanh(n)
                dh[idx] = dh_t

    def gru_backward_step_b(gates, hprev, dgx, dh, drh, w_hh, lengths, t, B, H):
        """reset_before, second half: drh = dn_pre @ w_hn, dr_pre, dh = dh_t*z + drh*r."""
        idx = cuda.grid(1)
        if idx < B * H:
            b = idx // H
            j = idx - b * H
            g0 = (t * B + b) * 3 * H + j
            if t < lengths[b]:
                # forward was: n = tanh(gx_n + (r*h_prev) @ W_hn^T + b_hn), extra = r*h_prev
                base = (t * B + b) * 3 * H + 2 * H
                s = zero
                for i in range(H):
                    s += dgx[base + i] * w_hh[(2 * H + i) * H + j]
                drh[idx] = s
                r = gates[g0]
                dgx[g0] = s * hprev[(t * B + b) * H + j] * dsig(r)
                dh[idx] = dh[idx] * gates[g0 + H] + s * r
            else:
                for k in range(3):
                    dgx[g0 + k * H] = zero

    return {
        "rnn_step": Kernel(rnn_step, (F, F, F, F, F, F, INDEX, I64, I64, I64, BOOL, BOOL)),
        "lstm_step": Kernel(lstm_step, (F, F, F, F, F, F, F, F, F, INDEX, I64, I64, I64, BOOL)),
        "gru_step": Kernel(gru_step, (F, F, F, F, F, F, F, F, INDEX, I64, I64, I64, BOOL, BOOL)),
        "gru_step_rz": Kernel(gru_step_rz, (F, F, F, F, I64, F, I64, I64, I64, BOOL)),
        "gru_step_n": Kernel(gru_step_n, (F, F, F, I64, F, F, F, INDEX, I64, I64, I64)),
        "rnn_backward_step": Kernel(rnn_backward_step,
                                    (F, F, F, F, F, INDEX, I64, I64, I64, I64, BOOL)),
        "lstm_backward_step": Kernel(lstm_backward_step,
                                     (F, F, F, F, F, F, F, F, INDEX, I64, I64, I64, I64)),
        "gru_backward_step": Kernel(gru_backward_step,
                                    (F, F, F, F, F, F, F, F, INDEX, I64, I64, I64, I64)),
        "gru_backward_step_a": Kernel(gru_backward_step_a,
                                      (F, F, F, F, F, F, INDEX, I64, I64, I64, I64)),
        "gru_backward_step_b": Kernel(gru_backward_step_b,
                                      (F, F, F, F, F, F, INDEX, I64, I64, I64)),
    }


def launch_1d(kernel: Kernel, n: int, *args):
    """Launch ``kernel`` with one thread per item of ``n``."""
    kernel[max(1, -(-n // THREADS)), THREADS](*args)
