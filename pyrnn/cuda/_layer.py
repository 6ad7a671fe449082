"""Host-side pieces every cell's driver shares: one call's arrays, and the hoisted GEMMs."""

from __future__ import annotations

import numpy as np

from ..ref.common import step_order
from . import _runtime as rt
from .gemm import column_sum, gemm, transposed


class Call:
    """One backend call: its arrays on the device, its results back in the caller's kind.

    NumPy inputs are copied to the device and results come back as NumPy; when ``x`` is a device
    array nothing is copied to the host and results are device arrays. A NumPy workspace is
    copied in and, by ``finish``, back out, so a forward fills it exactly as the reference does.
    """

    def __init__(self, x, **named):
        rt.check_same_device({"x": x, **named})
        self.on_device = rt.is_device_array(x)
        x = rt.device_view(x) if self.on_device else np.asarray(x)
        self.dtype = np.dtype(x.dtype)
        if self.dtype not in (np.float32, np.float64):
            raise TypeError(f"x: expected float32 or float64 data, got {self.dtype}")
        self.x = rt.as_device("x", x, self.dtype, ndim=3)
        self._host_workspace = None
        self._workspace = None

    def array(self, name: str, a, shape: tuple[int, ...]):
        """``a`` (required) on the device, flat, after checking its shape is ``shape``."""
        d = rt.as_device(name, a, self.dtype)
        if tuple(d.shape) != shape:
            raise ValueError(f"{name}: expected shape {list(shape)}, got {list(d.shape)}")
        return rt.flat(d)

    def weight(self, name: str, a, shape: tuple[int, ...], tag: str = "", make=None):
        """A weight on the device, flat (``make`` derives a packed form, cached as ``tag``)."""
        if tuple(a.shape) != shape:
            raise ValueError(f"{name}: expected shape {list(shape)}, got {list(a.shape)}")
        return rt.weight(name, a, self.dtype, tag,
                         lambda d: make(rt.flat(d)) if make else rt.flat(d))

    def optional_weight(self, name: str, a, shape: tuple[int, ...]):
        return None if a is None else self.weight(name, a, shape)

    def fill(self, dst, name: str, a, shape: tuple[int, ...]):
        """Set the flat device array ``dst`` to ``a`` (zeros when None)."""
        if a is None:
            dst.copy_to_device(np.zeros(dst.size, dtype=self.dtype))
        else:
            dst.copy_to_device(self.array(name, a, shape))
        return dst

    def lengths(self, lengths, T: int, B: int):
        """int64 [B] on the device (all T when None)."""
        if lengths is None:
            return rt.cuda.to_device(np.full(B, T, dtype=np.int64))
        if rt.is_device_array(lengths):
            d = rt.as_device("lengths", lengths, np.int64, ndim=1)
        else:
            d = rt.cuda.to_device(np.ascontiguousarray(lengths, dtype=np.int64))
        if tuple(d.shape) != (B,):
            raise ValueError(f"lengths: expected shape [{B}], got {list(d.shape)}")
        return d

    def workspace(self, workspace, need: int):
        """The workspace on the device (a 1-D array of at least ``need`` elements)."""
        if rt.is_device_array(workspace):
            d = rt.as_device("workspace", workspace, self.dtype, ndim=1)
        else:
            if np.asarray(workspace).dtype != self.dtype:
                raise TypeError(f"workspace: expected {self.dtype} like x, got "
                                f"{np.asarray(workspace).dtype}")
            self._host_workspace = workspace
            d = rt.as_device("workspace", workspace, self.dtype, ndim=1)
        if d.size < need:
            raise ValueError(f"workspace: expected a 1-D array of at least {need} elements, "
                             f"got shape {list(d.shape)}")
        self._workspace = d
        return d

    def result(self, d):
        return d if self.on_device else d.copy_to_host()

    def finish(self):
        """Copy a NumPy workspace's new contents back into it."""
        if self._host_workspace is not None:
            self._workspace.copy_to_host(self._host_workspace)


def flat_views(views):
    """Flat views of the reference layout's workspace regions (None stays None)."""
    return [None if v is None else rt.flat(v) for v in views]


def packed_w_hh(call: Call, w_hh, G: int, H: int):
    """w_hh^T [H,G*H] flat on the device, the forward step kernels' layout."""
    return call.weight("w_hh", w_hh, (G * H, H), tag="T",
                       make=lambda d: transposed(d, G * H, H))


def project_input(call: Call, w_ih, b_ih, b_hh, gates, G: int, H: int, n_bias2: int):
    """gates [T*B,G*H] = x @ w_ih^T + b_ih (+ b_hh's first n_bias2 entries)."""
    T, B, I = call.x.shape
    w = call.weight("w_ih", w_ih, (G * H, I))
    if (b_ih is None) != (b_hh is None):
        raise ValueError("b_ih, b_hh: expected both or neither")
    bias1 = call.optional_weight("b_ih", b_ih, (G * H,))
    bias2 = call.optional_weight("b_hh", b_hh, (G * H,))
    gemm(rt.flat(call.x), 0, I, False, w, 0, I, True, gates, 0, G * H, T * B, G * H, I,
         bias1, bias2, n_bias2)
    return bias2


def state_buffers(call: Call, h0, B: int, H: int):
    """[2*B*H] ping-pong buffer for h, its first half set to h0 (zeros when None)."""
    hbuf = rt.empty(2 * B * H, call.dtype)
    call.fill(hbuf[: B * H], "h0", h0, (B, H))
    return hbuf


def final_state(hbuf, T: int, B: int, H: int):
    """The half of the ping-pong buffer written by the last of T steps, as [B,H]."""
    start = (T % 2) * B * H
    return hbuf[start : start + B * H].reshape(B, H)


def backward_order(T: int, reverse: bool) -> list[tuple[int, int]]:
    """(t, t_prev) launches of the reverse loop: each finishes t_prev's carried gradient then
    does step t; the last has t = -1 and only finishes."""
    order = list(reversed(step_order(T, reverse)))
    return list(zip(order + [-1], [-1] + order))


def input_gradients(call: Call, w_ih, dgx, G: int, H: int):
    """dx [T,B,I] = dgx @ w_ih and dw_ih [G*H,I] = dgx^T @ x, dgx flat [T*B,G*H]."""
    T, B, I = call.x.shape
    w = call.weight("w_ih", w_ih, (G * H, I))
    dx = rt.empty(T * B * I, call.dtype)
    dw_ih = rt.empty(G * H * I, call.dtype)
    gemm(dgx, 0, G * H, False, w, 0, I, False, dx, 0, I, T * B, I, G * H)
    gemm(dgx, 0, G * H, True, rt.flat(call.x), 0, I, False, dw_ih, 0, I, G * H, I, T * B)
    return dx.reshape(T, B, I), dw_ih.reshape(G * H, I)


def weight_gradient(dg, ldg: int, col0: int, rows: int, v, M: int, H: int, out, out_row0: int):
    """out[out_row0 : out_row0+rows] = dg[:, col0:col0+rows]^T @ v, with v flat [M,H]."""
    gemm(dg, col0, ldg, True, v, 0, H, False, out, out_row0 * H, H, rows, H, M)


def bias_gradient(call: Call, dg, M: int, N: int):
    db = rt.empty(N, call.dtype)
    column_sum(dg, M, N, db)
    return db
