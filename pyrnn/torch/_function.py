"""The layers' autograd bridge, a ``torch.autograd.Function`` around pyrnn's
stack_forward/backward, and the conversions between tensors and backends' arrays (the cells'
bridge is ``_cells``).

Tensors reach the backend without copies: a contiguous CPU tensor's ``.numpy()`` shares its
memory and results come back through ``torch.from_numpy``; a CUDA tensor goes as it is (it
exposes ``__cuda_array_interface__``, so the composition stays on the device) and the backend's
device arrays come back through ``torch.as_tensor``, which shares their memory.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import torch
from torch.autograd.function import once_differentiable

from .._backend import Backend
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
