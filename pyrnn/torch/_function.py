"""The autograd bridges: ``torch.autograd.Function``s around pyrnn's stack_forward/backward
(layers) and around one step of a backend's cell functions (cells).

Tensors reach the backend without copies: a contiguous CPU tensor's ``.numpy()`` shares its
memory and results come back through ``torch.from_numpy``; a CUDA tensor goes as it is (it
exposes ``__cuda_array_interface__``, so the composition stays on the device) and the backend's
device arrays come back through ``torch.as_tensor``, which shares their memory.
"""

from __future__ import annotations

import threading
from typing import NamedTuple

import numpy as np
import torch
from torch.autograd.function import once_differentiable

from .._backend import Backend
from .._checks import dtype_of
from ..functional import CellSpec, stack_backward, stack_forward


class TorchRandom:
    """Dropout masks drawn from torch's generator, so ``torch.manual_seed`` reproduces a run.

    stack_forward asks its ``rng`` only for ``random(shape)``: uniform floats in [0, 1).
    """

    def random(self, shape) -> np.ndarray:
        return torch.rand(shape, dtype=torch.float64).numpy()


def as_array(t: torch.Tensor | None):
    """A tensor's data for a backend, sharing its memory (None stays None): a host tensor's
    strides as they are (the C backend copies a strided array it is given), a device tensor
    made contiguous (the CUDA backend takes no strides)."""
    if t is None:
        return None
    if t.is_cuda:
        # torch refuses __cuda_array_interface__ on tensors that require grad
        return t.detach().contiguous()
    return t.numpy(force=True)  # a host tensor's detach().numpy() in one call: no copy


def as_tensor(a, device: torch.device) -> torch.Tensor:
    """A backend's result (NumPy, or a device array) as a tensor sharing its memory."""
    if isinstance(a, np.ndarray):
        return torch.from_numpy(a)
    return torch.as_tensor(a, device=device)


class StackCall(NamedTuple):
    """What one call runs: the cell, backend, stack shape and options (a tuple: a frozen
    dataclass took 2.7 us to make, a tenth of a batch-1 cell step).

    lengths: [B] int64 NumPy array in 1..T, or None (every sequence is T long).
    dropout: the probability actually applied between layers (0 outside training mode).
    keep_workspace: run the training forward, which keeps what backward needs (and applies
    dropout); false for inference.
    """

    spec: CellSpec
    backend: Backend
    num_layers: int
    num_directions: int
    bias: bool
    lengths: np.ndarray | None
    dropout: float
    keep_workspace: bool

    def nest(self, flat: list) -> list:
        """PyTorch's flat weight list -> [layer][direction] -> (w_ih, w_hh, b_ih, b_hh)."""
        per = 4 if self.bias else 2
        groups = [tuple(flat[k * per : (k + 1) * per]) + (None, None) * (not self.bias)
                  for k in range(self.num_layers * self.num_directions)]
        D = self.num_directions
        return [groups[layer * D : (layer + 1) * D] for layer in range(self.num_layers)]

    def flatten(self, nested: list) -> list:
        """The inverse of ``nest`` (biases dropped when the module has none)."""
        per = 4 if self.bias else 2
        return [g for layer in nested for group in layer for g in group[:per]]


def run_stack(call: StackCall, x, h0, c0, flat_weights):
    """The forward of ``call`` on tensors: its result tensors, and the StackContext backward
    needs (None unless ``call.keep_workspace``)."""
    weights = call.nest([as_array(w) for w in flat_weights])
    out, h_n, c_n, stack = stack_forward(
        call.spec, call.backend, weights, as_array(x), as_array(h0), as_array(c0),
        call.lengths, training=call.keep_workspace, dropout=call.dropout, rng=TorchRandom())
    device = x.device
    results = (out, h_n) if c_n is None else (out, h_n, c_n)
    return tuple(as_tensor(a, device) for a in results), stack


class StackFunction(torch.autograd.Function):
    """``out, h_n[, c_n] = StackFunction.apply(call, x, h0, c0, *flat_weights)``.

    x: [T,B,I] contiguous, time-major; h0, c0: [L*D,B,H] contiguous or None; flat_weights in
    PyTorch's ``_flat_weights_names`` order. Returns out [T,B,D*H] (zero past each length),
    h_n [L*D,B,H] and, for LSTM, c_n [L*D,B,H]. Backward is pyrnn's fused backward.
    """

    @staticmethod
    def forward(ctx, call: StackCall, x, h0, c0, *flat_weights):
        results, ctx.stack = run_stack(call, x, h0, c0, flat_weights)
        ctx.call = call
        # saved only so that autograd checks nothing was modified in place before backward
        ctx.save_for_backward(x, h0, c0, *flat_weights)
        ctx.set_materialize_grads(False)
        return results

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_out, grad_h_n, grad_c_n=None):
        x = ctx.saved_tensors[0]  # raises if an input was modified in place since forward
        stack, call = ctx.stack, ctx.call
        if stack is None:
            raise RuntimeError("pyrnn.torch: backward through a forward that ran without "
                               "gradients being needed")
        if grad_out is None:
            T, B, H = stack.shape
            grad_out = torch.zeros((T, B, call.num_directions * H), dtype=x.dtype,
                                   device=x.device)
        dx, dh0, dc0, grads = stack_backward(
            stack, *(as_array(g if g is None else g.contiguous())
                     for g in (grad_out, grad_h_n, grad_c_n)))
        flat = call.flatten(grads)
        results = [dx, dh0, dc0, *flat]
        needs = ctx.needs_input_grad[1:]
        return (None, *(as_tensor(g, x.device) if need and g is not None else None
                        for g, need in zip(results, needs)))


def run_cell(spec: CellSpec, backend: Backend, x, h0, c0, weights, keep_workspace: bool):
    """One step of a cell on tensors, straight to the backend's ``<cell>_forward`` at T=1 (a
    cell step is short: the layers' stack would be most of it). x [B,I]; h0, c0 [B,H] or None;
    weights (w_ih, w_hh[, b_ih, b_hh]). Returns h' [B,H], c' [B,H] (None but for LSTM) and
    what backward needs (None unless ``keep_workspace``)."""
    xs = as_array(x)[None]  # [1,B,I]: a view, on the array's side (a tensor's costs more)
    states = as_array(h0), as_array(c0)
    arrays = tuple(as_array(w) for w in weights) + (None, None) * (len(weights) == 2)
    B, I = x.shape
    H = arrays[1].shape[1]
    workspace = backend.empty(spec.workspace_len(backend, 1, B, I, H, keep_workspace),
                              dtype_of(xs))
    res = spec.forward(backend, xs, *states, arrays, None, workspace, False, keep_workspace)
    device = x.device
    h = as_tensor(res[0][0], device)  # y[0]: h' is the step's output
    c = as_tensor(res[2], device) if spec.has_cell_state else None
    return h, c, ((xs, *states, arrays, workspace) if keep_workspace else None)


class _BackwardWorkspaces(threading.local):
    """Each thread's workspace for the cell backwards whose forward kept only the front part,
    one per backend and dtype, reused and grown as needed: a new one each call (its pages
    fresh from the system each time) made 50 chained LSTMCell steps of B=1 I=H=128 and their
    backward 1.106 of the time (benchmarks/RESULTS.md)."""

    def __init__(self):
        self.arrays = {}

    def get(self, backend: Backend, n: int, dtype) -> np.ndarray:
        key = (backend.name, dtype)
        ws = self.arrays.get(key)
        if ws is None or ws.size < n:
            ws = self.arrays[key] = backend.empty(n, dtype)
        return ws[:n]


_backward_workspaces = _BackwardWorkspaces()


class CellFunction(torch.autograd.Function):
    """``h' = CellFunction.apply(spec, backend, x, h0, c0, *weights)`` (LSTM: ``h', c'``).

    x [B,I], h0 and c0 [B,H] or None, weights (w_ih, w_hh[, b_ih, b_hh]), any strides.
    Backward is the backend's ``<cell>_backward`` at T=1. A host workspace whose scratch (the
    kernels' regions after the reference layout's, ``CellSpec.workspace_head_len``) is most of
    it is kept from forward to backward without it, and the kept part put back at the front
    of a new one: a loop of steps under autograd keeps every step's (100 LSTMCell steps of B=1
    I=H=128 kept 54 MB, now 1.3). Where the front part is more than a quarter (large batches),
    copying it twice cost more than the memory saved was worth (LSTMCell B=256 I=H=512 1.18x
    the time), and the whole workspace is kept. The reference carves its regions from element
    0, the C kernels from the first 64-byte boundary, where the C backend's ``empty`` starts
    its arrays: the same place.
    """

    @staticmethod
    def forward(ctx, spec: CellSpec, backend: Backend, x, h0, c0, *weights):
        h, c, (xs, h0s, c0s, arrays, workspace) = run_cell(spec, backend, x, h0, c0, weights,
                                                           True)
        ctx.whole = None  # the whole workspace's length, where only its front part is kept
        if workspace.__class__ is np.ndarray:
            kept = spec.workspace_head_len(1, x.shape[0], arrays[1].shape[1], True)
            if 4 * kept <= workspace.size:
                ctx.whole = workspace.size
                workspace = workspace[:kept].copy()
        ctx.arrays = xs, h0s, c0s, arrays, workspace
        ctx.spec, ctx.backend = spec, backend
        # saved only so that autograd checks nothing was modified in place before backward
        ctx.save_for_backward(x, h0, c0, *weights)
        ctx.set_materialize_grads(False)
        return h if c is None else (h, c)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_h, grad_c=None):
        x = ctx.saved_tensors[0]  # raises if an input was modified in place since forward
        xs, h0, c0, weights, workspace = ctx.arrays
        if ctx.whole is not None:  # the kept front part, into a whole workspace
            kept = workspace
            workspace = _backward_workspaces.get(ctx.backend, ctx.whole, kept.dtype)
            workspace[:kept.size] = kept
        if grad_h is None:
            grad_h = torch.zeros((x.shape[0], weights[1].shape[1]), dtype=x.dtype,
                                 device=x.device)
        dy, dc = as_array(grad_h)[None], as_array(grad_c)
        res = ctx.spec.backward(ctx.backend, xs, h0, c0, weights, None, dy, None, dc,
                                workspace, False)
        dstates = res[1:3] if ctx.spec.has_cell_state else (res[1], None)
        results = (res[0][0], *dstates, *res[-4:])
        needs = ctx.needs_input_grad[2:]
        return (None, None, *(as_tensor(g, x.device) if need and g is not None else None
                              for g, need in zip(results, needs)))
