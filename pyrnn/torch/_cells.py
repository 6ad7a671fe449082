"""pyrnn.torch's cells: one step (``pyrnn._steps``) on tensors, inside autograd
(``CellFunction``) or outside it (``run_cell``).

Two ways to the kernels, with the same steps and results:

- *by pointer*: the C backend with host tensors. Each tensor's data pointer goes to the kernel
  (0.35 us; a ``.numpy()`` view and a cffi pointer to it cost 1.5 us, seven a forward), once
  its sizes are checked here as the C backend checks arrays'; a strided or lazily negated
  tensor is made plain first, as the C backend copies a strided array.
- *by array*: any other backend. Host tensors as NumPy views, device tensors as they are
  (``as_array``), through ``pyrnn._steps``, whose backend functions check them.
"""

from __future__ import annotations

import numpy as np
import torch
from torch.autograd.function import once_differentiable

from .. import _steps
from .._backend import Backend
from ..functional import CellSpec
from ._function import as_array, as_tensor

_SUFFIX = {torch.float32: "f32", torch.float64: "f64"}
_NUMPY_DTYPE = {torch.float32: np.dtype(np.float32), torch.float64: np.dtype(np.float64)}
_WEIGHT_NAMES = ("w_ih", "w_hh", "b_ih", "b_hh")


def _plain(t: torch.Tensor | None) -> torch.Tensor | None:
    """``t`` as memory a pointer can stand for: contiguous, its negation (a lazy view's, as in
    the imaginary part of a conjugate) applied."""
    if t is None or (t.is_contiguous() and not t.is_neg()):
        return t
    return t.resolve_neg().contiguous()


def _plain_inputs(spec: CellSpec, x, h0, c0, weights) -> list:
    """x [B,I], the states [B,H] and the weights, plain (``_plain``), in the C backend's order
    (None for an absent tensor, lengths among them), once their sizes are checked. The caller
    holds the list while the kernel reads from the tensors' addresses."""
    B, I = x.shape
    H = weights[1].shape[-1]
    GH = spec.gates * H
    for name, w, shape in zip(_WEIGHT_NAMES, weights, ((GH, I), (GH, H), (GH,), (GH,))):
        if w.shape != shape:
            raise ValueError(f"{name}: expected shape {list(shape)}, got {list(w.shape)}")
    states = (h0, c0) if spec.has_cell_state else (h0,)
    for name, s in zip(("h0", "c0"), states):
        if s is not None and s.shape != (B, H):
            raise ValueError(f"{name}: expected shape {[B, H]}, got {list(s.shape)}")
    return [_plain(t) for t in (x, *states, *weights, *(None, None) * (len(weights) == 2), None)]


def _pointers(c_module, sfx: str, tensors):
    return c_module.pointers_at(sfx, [None if t is None else t.data_ptr() for t in tensors])


def _by_pointer(backend: Backend, x: torch.Tensor) -> bool:
    return backend.name == "c" and x.is_cpu


def _forward_by_pointer(spec: CellSpec, backend: Backend, x, h0, c0, weights, training: bool):
    """run_cell's step by pointer: h' and c' as arrays, and ``_steps.keep``'s pair."""
    B, I = x.shape
    H = weights[1].shape[-1]
    workspace, kept = _steps.step_workspace(spec, backend, B, I, H, training,
                                            _NUMPY_DTYPE[x.dtype])
    c_module, sfx = backend.module, _SUFFIX[x.dtype]
    inputs = _plain_inputs(spec, x, h0, c0, weights)
    res = c_module.forward_at(spec.kind, sfx, 1, B, I, H, (0, int(training), *spec.flag_values),
                              _pointers(c_module, sfx, inputs),
                              c_module.workspace_at(sfx, workspace))
    c = res[2] if spec.has_cell_state else None
    return res[0][0], c, (_steps.keep(workspace, kept) if training else None)


def _backward_by_pointer(spec: CellSpec, backend: Backend, saved, tensors, grad_h, grad_c):
    """_cell_backward's step by pointer; saved: ``_steps.keep``'s pair."""
    x, h0, c0, *weights = tensors
    B, I = x.shape
    H = weights[1].shape[-1]
    c_module, sfx = backend.module, _SUFFIX[x.dtype]
    grads_n = (None, _plain(grad_c)) if spec.has_cell_state else (None,)
    inputs = _plain_inputs(spec, x, h0, c0, weights) + [_plain(grad_h), *grads_n]
    res = c_module.backward_at(spec.kind, sfx, 1, B, I, H, (0, *spec.flag_values),
                               _pointers(c_module, sfx, inputs), len(weights) == 4,
                               c_module.workspace_at(sfx, _steps.backward_workspace(backend,
                                                                                    *saved)))
    dstates = res[1:3] if spec.has_cell_state else (res[1], None)
    return (res[0][0], *dstates, *res[-4:])


def run_cell(spec: CellSpec, backend: Backend, x, h0, c0, weights, training: bool):
    """One step of a cell on tensors. x [B,I]; h0, c0 [B,H] or None; weights (w_ih, w_hh[,
    b_ih, b_hh]). Returns h' [B,H], c' [B,H] (None but for LSTM) and what ``_cell_backward``
    needs (None unless ``training``)."""
    if _by_pointer(backend, x):
        h, c, saved = _forward_by_pointer(spec, backend, x, h0, c0, weights, training)
    else:
        weight_arrays = tuple(as_array(w) for w in weights) + (None, None) * (len(weights) == 2)
        # x as [1,B,I]: a view, on the array's side (a tensor's costs more)
        h, c, saved = _steps.step_forward(spec, backend, as_array(x)[None], as_array(h0),
                                          as_array(c0), weight_arrays, training)
    device = x.device
    return as_tensor(h, device), None if c is None else as_tensor(c, device), saved


def _cell_backward(spec: CellSpec, backend: Backend, saved, tensors, grad_h, grad_c):
    """dx, dh0, dc0 (None but for LSTM), dw_ih, dw_hh, db_ih, db_hh of a step, as arrays.
    saved: run_cell's; tensors: the step's x, h0, c0 and weights as forward had them."""
    x, w_hh = tensors[0], tensors[4]
    if grad_h is None:
        grad_h = torch.zeros((x.shape[0], w_hh.shape[-1]), dtype=x.dtype, device=x.device)
    if _by_pointer(backend, x):
        return _backward_by_pointer(spec, backend, saved, tensors, grad_h, grad_c)
    return _steps.step_backward(spec, backend, saved, as_array(grad_h), as_array(grad_c))


class CellFunction(torch.autograd.Function):
    """``h' = CellFunction.apply(spec, backend, x, h0, c0, *weights)`` (LSTM: ``h', c'``).

    x [B,I], h0 and c0 [B,H] or None, weights (w_ih, w_hh[, b_ih, b_hh]), any strides.
    Backward is the backend's ``<cell>_backward`` at T=1 on what forward kept (``run_cell``).
    """

    @staticmethod
    def forward(ctx, spec: CellSpec, backend: Backend, x, h0, c0, *weights):
        h, c, ctx.kept = run_cell(spec, backend, x, h0, c0, weights, True)
        ctx.spec, ctx.backend = spec, backend
        # saved for backward by pointer, and so that autograd checks nothing was modified in
        # place before backward
        ctx.save_for_backward(x, h0, c0, *weights)
        ctx.set_materialize_grads(False)
        return h if c is None else (h, c)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_h, grad_c=None):
        tensors = ctx.saved_tensors  # raises if an input was modified in place since forward
        results = _cell_backward(ctx.spec, ctx.backend, ctx.kept, tensors, grad_h, grad_c)
        device = tensors[0].device
        needs = ctx.needs_input_grad[2:]
        return (None, None, *(as_tensor(g, device) if need and g is not None else None
                              for g, need in zip(results, needs)))
