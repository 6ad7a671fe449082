"""The layers' autograd bridges, ``torch.autograd.Function``s around pyrnn's
stack_forward/backward and, for one layer and one direction on the C backend with host tensors,
around the kernels by pointer (``_pointers``); and the conversions between tensors and backends'
arrays (the cells' bridge is ``_cells``).

Tensors reach the backend without copies: a contiguous CPU tensor's ``.numpy()`` shares its
memory and results come back through ``torch.from_numpy``; a CUDA tensor goes as it is (it
exposes ``__cuda_array_interface__``, so the composition stays on the device) and the backend's
device arrays come back through ``torch.as_tensor``, which shares their memory.
"""

from __future__ import annotations

from functools import partial
from typing import NamedTuple

import numpy as np
import torch

from .. import _steps
from .._backend import Backend
from ..functional import CellSpec, stack_backward, stack_forward
from . import _pointers, _twice

SPECS = {
    "RNN_TANH": CellSpec("rnn", (("relu", False),)),
    "RNN_RELU": CellSpec("rnn", (("relu", True),)),
    "LSTM": CellSpec("lstm"),
    "GRU": CellSpec("gru", (("reset_after", True),)),  # PyTorch's GRU is the reset-after one
}


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
    """A backend's result (NumPy, a device array, or a tensor the C kernels wrote) as a tensor
    sharing its memory."""
    if isinstance(a, np.ndarray):
        return torch.from_numpy(a)
    if isinstance(a, torch.Tensor):
        return a
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
        return nest_weights(flat, self.num_layers, self.num_directions, self.bias)

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
    def backward(ctx, grad_out, grad_h_n, grad_c_n=None):
        x = ctx.saved_tensors[0]  # raises if an input was modified in place since forward
        stack, call = ctx.stack, ctx.call
        if stack is None:
            raise RuntimeError("pyrnn.torch: backward through a forward that ran without "
                               "gradients being needed")
        if torch.is_grad_enabled():  # create_graph=True
            masks = [None if m is None else as_tensor(m, x.device) for m in stack.masks]
            return _graph_gradients(ctx, masks, (grad_out, grad_h_n, grad_c_n))
        if grad_out is None:
            T, B, H = stack.shape
            grad_out = torch.zeros((T, B, call.num_directions * H), dtype=x.dtype,
                                   device=x.device)
        needs = ctx.needs_input_grad[1:]
        # what autograd needs, so that the backends skip the rest (a model's input, states
        # given without requires_grad, frozen weights)
        weights_needed = [[tuple(bool(f) for f in group) for group in layer]
                          for layer in call.nest(list(needs[3:]))]
        dx, dh0, dc0, grads = stack_backward(
            stack, *(as_array(g if g is None else g.contiguous())
                     for g in (grad_out, grad_h_n, grad_c_n)),
            needs=(needs[0], needs[1], needs[2], weights_needed))
        flat = call.flatten(grads)
        results = [dx, dh0, dc0, *flat]
        return (None, *(as_tensor(g, x.device) if need and g is not None else None
                        for g, need in zip(results, needs)))


def _graph_gradients(ctx, masks: list, grads_out) -> tuple:
    """StackFunction's and LayerFunction's backward when autograd builds a graph of it
    (``create_graph=True``): through torch's operators (``_twice``), with the forward's dropout
    ``masks``."""
    gradients = _twice.gradients(partial(_twice.stack_outputs, ctx.call, masks),
                                 ctx.saved_tensors, ctx.needs_input_grad[1:], grads_out)
    return (None, *gradients)


def nest_weights(flat: list, num_layers: int, num_directions: int, bias: bool) -> list:
    """PyTorch's flat weight list -> [layer][direction] -> (w_ih, w_hh, b_ih, b_hh)."""
    per = 4 if bias else 2
    groups = [four_weights(flat[k * per : (k + 1) * per])
              for k in range(num_layers * num_directions)]
    D = num_directions
    return [groups[layer * D : (layer + 1) * D] for layer in range(num_layers)]


def four_weights(weights) -> tuple:
    """(w_ih, w_hh, b_ih, b_hh) of one layer-direction, the biases None where it has none."""
    return tuple(weights) + (None, None) * (len(weights) == 2)


def by_pointer(call: StackCall, x) -> bool:
    """Whether ``call`` runs through ``LayerFunction``/``run_layer``: one layer and one
    direction, by pointer. A call of a layer spends a few tens of microseconds of Python around
    its kernel (LSTM 100x1x32x64 inference through the stack: 211-219 us, the kernel through
    ``_c`` 138-142), and a tensor's NumPy view and pointer are 1.5 us of it each."""
    return call.num_layers == call.num_directions == 1 and _pointers.takes(call.backend, x)


def run_layer(call: StackCall, x, h0, c0, flat_weights):
    """The forward of a ``by_pointer`` call: its result tensors (as ``run_stack``'s), and the
    workspace backward reads (None unless ``call.keep_workspace``)."""
    T, B, I = x.shape
    H = flat_weights[1].shape[-1]
    n = call.spec.workspace_len(call.backend, T, B, I, H, call.keep_workspace)
    dtype = _pointers.NUMPY_DTYPE[x.dtype]
    # a training call's workspace is kept for backward: its own
    workspace = (call.backend.empty(n, dtype) if call.keep_workspace else
                 _steps.scratch_workspace(call.backend, n, dtype))
    y, *states = _pointers.forward(call.spec, call.backend, x, h0, c0, four_weights(flat_weights),
                                   call.lengths, False, call.keep_workspace, workspace)
    results = (as_tensor(y, x.device), *(as_tensor(s[None], x.device) for s in states))
    return results, (workspace if call.keep_workspace else None)


class LayerFunction(torch.autograd.Function):
    """``out, h_n[, c_n] = LayerFunction.apply(call, x, h0, c0, *flat_weights)``:
    StackFunction's contract for a ``by_pointer`` call."""

    @staticmethod
    def forward(ctx, call: StackCall, x, h0, c0, *flat_weights):
        results, ctx.workspace = run_layer(call, x, h0, c0, flat_weights)
        ctx.call = call
        # backward reads them by pointer, and autograd checks nothing was modified in place
        ctx.save_for_backward(x, h0, c0, *flat_weights)
        ctx.set_materialize_grads(False)
        return results

    @staticmethod
    def backward(ctx, grad_out, grad_h_n, grad_c_n=None):
        if torch.is_grad_enabled():  # create_graph=True
            return _graph_gradients(ctx, [None], (grad_out, grad_h_n, grad_c_n))
        x, h0, c0, *flat_weights = ctx.saved_tensors
        call = ctx.call
        if grad_out is None:
            grad_out = torch.zeros((*x.shape[:2], flat_weights[1].shape[-1]), dtype=x.dtype)
        needs = ctx.needs_input_grad[1:]
        res = _pointers.backward(call.spec, call.backend, x, h0, c0, four_weights(flat_weights),
                                 call.lengths, False, grad_out, grad_h_n, grad_c_n,
                                 ctx.workspace, _pointers.wanted(call.spec, needs))
        dx, dh0, dc0, *grads = _steps.split_gradients(call.spec, res)
        results = [dx, None if dh0 is None else dh0[None], None if dc0 is None else dc0[None],
                   *grads[:len(flat_weights)]]
        return (None, *(as_tensor(g, x.device) if need and g is not None else None
                        for g, need in zip(results, needs)))
