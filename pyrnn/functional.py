"""Stacks of recurrent layers over any backend's per-cell function table.

A backend runs one layer x one direction x T steps (``<cell>_forward`` / ``<cell>_backward``);
this module composes layers, directions (the reverse one is ``reverse=True`` on the same input)
and inter-layer dropout, forward and backward. All arrays here are time-major and validated,
and all on one side: host arrays, or device arrays that never leave the device (concatenation,
slicing, stacking and dropout go through the backend's array operations, ``Backend.ops``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from types import ModuleType

import numpy as np

from ._backend import Backend
from ._checks import dtype_of
from .ref.gru import gru_workspace_saved_len
from .ref.lstm import lstm_workspace_saved_len
from .ref.rnn import rnn_workspace_saved_len

GATES = {"rnn": 1, "lstm": 4, "gru": 3}
_SAVED_LEN = {"rnn": rnn_workspace_saved_len, "lstm": lstm_workspace_saved_len,
              "gru": gru_workspace_saved_len}


@dataclass(frozen=True)
class CellSpec:
    """Which cell and its variant flags (``relu`` for rnn, ``reset_after`` for gru)."""

    kind: str
    flags: tuple[tuple[str, bool], ...] = ()

    @property
    def gates(self) -> int:
        return GATES[self.kind]

    @property
    def has_cell_state(self) -> bool:
        return self.kind == "lstm"

    # what every call looks up, made once per spec (a batch-1 call is a few tens of us)
    @cached_property
    def _names(self) -> tuple[str, str, str]:
        return tuple(f"{self.kind}_{fn}" for fn in ("workspace_len", "forward", "backward"))

    @cached_property
    def _flag_kwargs(self) -> dict[str, bool]:
        return dict(self.flags)

    @cached_property
    def flag_values(self) -> tuple[int, ...]:
        """The variant flags as the C kernels take them (after reverse, and training)."""
        return tuple(int(value) for _, value in self.flags)

    def workspace_len(self, be: Backend, T: int, B: int, I: int, H: int, training: bool) -> int:
        fn = getattr(be, self._names[0])
        if self.kind == "gru":
            return fn(T, B, I, H, training, self._flag_kwargs["reset_after"])
        return fn(T, B, I, H, training)

    def workspace_saved_len(self, T: int, B: int, H: int) -> int:
        """Elements at the front of every backend's training workspace, laid out as the
        reference's (pyrnn/ref), that forward leaves for backward to read; backward's own
        regions and the compiled kernels' scratch follow."""
        return _SAVED_LEN[self.kind](T, B, H)

    def forward(self, be: Backend, x, h0, c0, weights, lengths, workspace, reverse, training):
        states = (h0, c0) if self.has_cell_state else (h0,)
        return getattr(be, self._names[1])(x, *states, *weights, lengths, workspace,
                                           reverse=reverse, training=training,
                                           **self._flag_kwargs)

    def backward(self, be: Backend, x, h0, c0, weights, lengths, dy, dh_n, dc_n, workspace,
                 reverse, wanted=None):
        """The backend's backward; ``wanted`` (None: every gradient) is passed on only when
        given, so a backend without it still serves calls that need everything."""
        states = (h0, c0) if self.has_cell_state else (h0,)
        grads_n = (dh_n, dc_n) if self.has_cell_state else (dh_n,)
        options = self._flag_kwargs if wanted is None else {**self._flag_kwargs, "wanted": wanted}
        return getattr(be, self._names[2])(x, *states, *weights, lengths, dy, *grads_n,
                                           workspace, reverse=reverse, **options)


@dataclass
class _Saved:
    """What one layer-direction's backward needs from its forward (arrays on the data's side)."""

    x: object
    h0: object
    c0: object
    workspace: object


@dataclass
class StackContext:
    """Everything stack_backward needs; made by stack_forward(training=True)."""

    spec: CellSpec
    backend: Backend
    ops: ModuleType  # the array operations for the data's side (Backend.ops)
    weights: list
    lengths: np.ndarray | None
    shape: tuple[int, int, int]  # T, B, H
    saved: list = field(default_factory=list)  # [layer][direction] -> _Saved
    masks: list = field(default_factory=list)  # [layer] -> dropout mask after it, or None


def stack_forward(spec: CellSpec, be: Backend, weights, x, h0, c0, lengths, *, training: bool,
                  dropout: float = 0.0, rng: np.random.Generator | None = None):
    """Run ``len(weights)`` layers of ``len(weights[0])`` directions over ``x``.

    weights: [layer][direction] -> (w_ih, w_hh, b_ih, b_hh); x: [T,B,I]; h0, c0: [L*D,B,H] or
    None; lengths: [B] int64 or None. Returns out [T,B,D*H], h_n [L*D,B,H], c_n (or None) and a
    StackContext when ``training`` (else None). Dropout (training only) follows every layer but
    the last; its masks come from ``rng.random(shape)``. Device-array ``x`` (and states and
    weights with it) keeps every step on the device: the composition runs ``be.ops(x)``.
    """
    ops, dtype = be.ops(x), dtype_of(x)
    T, B, _ = x.shape
    L, D = len(weights), len(weights[0])
    H = weights[0][0][1].shape[1]
    ctx = StackContext(spec, be, ops, weights, lengths, (T, B, H)) if training else None
    h_n, c_n = [], []
    layer_in = x
    for layer in range(L):
        outs, saved = [], []
        for direction in range(D):
            k = layer * D + direction
            h0_k = None if h0 is None else h0[k]
            c0_k = None if c0 is None else c0[k]
            I = layer_in.shape[2]
            workspace = be.empty(spec.workspace_len(be, T, B, I, H, training), dtype)
            res = spec.forward(be, layer_in, h0_k, c0_k, weights[layer][direction], lengths,
                               workspace, direction == 1, training)
            outs.append(res[0])
            h_n.append(res[1])
            if spec.has_cell_state:
                c_n.append(res[2])
            if ctx is not None:
                saved.append(_Saved(layer_in, h0_k, c0_k, workspace))
        out = ops.concat_last(outs)
        mask = None
        if training and dropout > 0 and layer < L - 1:
            mask = ops.dropout_mask(out.shape, dropout, rng, dtype)
            out = ops.multiply(out, mask)
        if ctx is not None:
            ctx.saved.append(saved)
            ctx.masks.append(mask)
        layer_in = out
    return layer_in, ops.stack(h_n), ops.stack(c_n) if spec.has_cell_state else None, ctx


def stack_backward(ctx: StackContext, grad_out, grad_h_n, grad_c_n, needs=None):
    """Gradients through a stack_forward(training=True) call.

    grad_out: [T,B,D*H] (ignored past each length); grad_h_n, grad_c_n: [L*D,B,H] or None, on
    the forward's side. Returns dx [T,B,I], dh0 [L*D,B,H], dc0 (or None), grads
    [layer][direction] -> (dw_ih, dw_hh, db_ih, db_hh).
    needs: None for all of them, or (x, h0, c0, [layer][direction] -> four flags for the
    weights) saying which are needed; the others are None (the first layer's dx, the states',
    a layer-direction's weights'), and the backends skip what they can of their work.
    """
    spec, be, ops = ctx.spec, ctx.backend, ctx.ops
    H = ctx.shape[2]
    L, D = len(ctx.weights), len(ctx.weights[0])
    dh0, dc0 = [None] * (L * D), [None] * (L * D)
    grads = [[None] * D for _ in range(L)]
    d_out = grad_out
    for layer in reversed(range(L)):
        if ctx.masks[layer] is not None:
            d_out = ops.multiply(d_out, ctx.masks[layer])
        d_in = None
        for direction in range(D):
            k = layer * D + direction
            s = ctx.saved[layer][direction]
            dy = d_out if D == 1 else ops.take_last(d_out, direction * H, (direction + 1) * H)
            dh_n = None if grad_h_n is None else grad_h_n[k]
            dc_n = None if grad_c_n is None else grad_c_n[k]
            wanted = None
            if needs is not None:
                x_needed, h0_needed, c0_needed, weights_needed = needs
                states = (h0_needed, c0_needed) if spec.has_cell_state else (h0_needed,)
                wanted = (layer > 0 or x_needed, *states, *weights_needed[layer][direction])
            res = spec.backward(be, s.x, s.h0, s.c0, ctx.weights[layer][direction], ctx.lengths,
                                dy, dh_n, dc_n, s.workspace, direction == 1, wanted)
            dx = res[0]
            dh0[k] = res[1]
            if spec.has_cell_state:
                dc0[k] = res[2]
            grads[layer][direction] = tuple(res[-4:])
            d_in = dx if d_in is None else ops.add(d_in, dx)
        d_out = d_in
    dh0 = None if dh0[0] is None else ops.stack(dh0)
    dc0 = None if not spec.has_cell_state or dc0[0] is None else ops.stack(dc0)
    return d_out, dh0, dc0, grads
