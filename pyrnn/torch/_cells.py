"""pyrnn.torch's cells: one step (``pyrnn._steps``) on tensors, inside autograd
(``CellFunction``) or outside it (``run_cell``).

Two ways to the kernels, with the same steps and results: by pointer (``_pointers``: the C
backend with host tensors, each tensor's data pointer handed to the kernel), and by array for
any other backend (host tensors as NumPy views, device tensors as they are: ``as_array``),
through ``pyrnn._steps``, whose backend functions check them.
"""

from __future__ import annotations

from functools import partial

import torch

from .. import _steps
from .._backend import Backend
from ..functional import CellSpec
from . import _pointers, _twice
from ._function import as_array, as_tensor, four_weights


def run_cell(spec: CellSpec, backend: Backend, x, h0, c0, weights, training: bool):
    """One step of a cell on tensors. x [B,I]; h0, c0 [B,H] or None; weights (w_ih, w_hh[,
    b_ih, b_hh]). Returns h' [B,H], c' [B,H] (None but for LSTM) and what ``_cell_backward``
    needs (None unless ``training``)."""
    if _pointers.takes(backend, x):
        B, I = x.shape
        workspace, kept = _steps.step_workspace(spec, backend, B, I, weights[1].shape[-1],
                                                training, _pointers.NUMPY_DTYPE[x.dtype])
        res = _pointers.forward(spec, backend, x, h0, c0, four_weights(weights), None, False,
                                training, workspace)
        h, c = res[0][0], (res[2] if spec.has_cell_state else None)
        saved = _steps.keep(workspace, kept) if training else None
    else:
        weight_arrays = four_weights([as_array(w) for w in weights])
        # x as [1,B,I]: a view, on the array's side (a tensor's costs more)
        h, c, saved = _steps.step_forward(spec, backend, as_array(x)[None], as_array(h0),
                                          as_array(c0), weight_arrays, training)
    device = x.device
    return as_tensor(h, device), None if c is None else as_tensor(c, device), saved


def _cell_backward(spec: CellSpec, backend: Backend, saved, tensors, grad_h, grad_c, needs):
    """dx, dh0, dc0 (None but for LSTM), dw_ih, dw_hh, db_ih, db_hh of a step, as arrays (or
    tensors). saved: run_cell's; tensors: the step's x, h0, c0 and weights as forward had them;
    needs: autograd's flags for them (by pointer, only those are computed)."""
    x, h0, c0, *weights = tensors
    if grad_h is None:
        grad_h = torch.zeros((x.shape[0], weights[1].shape[-1]), dtype=x.dtype, device=x.device)
    if _pointers.takes(backend, x):
        res = _pointers.backward(spec, backend, x, h0, c0, four_weights(weights), None, False,
                                 grad_h, None, grad_c, _steps.backward_workspace(backend, *saved),
                                 _pointers.wanted(spec, needs))
        return _steps.split_gradients(spec, res)
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
    def backward(ctx, grad_h, grad_c=None):
        tensors = ctx.saved_tensors  # raises if an input was modified in place since forward
        if torch.is_grad_enabled():  # create_graph=True: through torch's operator (_twice)
            return (None, None, *_twice.gradients(partial(_twice.cell_outputs, ctx.spec), tensors,
                                                  ctx.needs_input_grad[2:], (grad_h, grad_c)))
        needs = ctx.needs_input_grad[2:]
        results = _cell_backward(ctx.spec, ctx.backend, ctx.kept, tensors, grad_h, grad_c, needs)
        device = tensors[0].device
        return (None, None, *(as_tensor(g, device) if need and g is not None else None
                              for g, need in zip(results, needs)))
