"""pyrnn's kernels as PyTorch operators, so that a model under ``torch.compile`` keeps them.

The compiler cannot trace into the autograd functions of ``_function`` (they call C through
cffi), so under ``torch.compile`` a pyrnn.torch layer calls two opaque operators
(``torch.library.custom_op``, torch 2.4 on) per layer-direction: ``pyrnn::layer_forward_v2``
and its backward ``pyrnn::layer_backward_v2`` (``REVISION``), each with a fake implementation
that gives the compiler its results' shapes. What goes around them (layers, directions, dropout
between layers) is torch operations, which the compiler traces (``run_stack``). The workspace a
training forward leaves for backward is one of its outputs, a tensor of its own, which backward
only reads. (Cells run torch.nn's step under torch.compile: compiled, it is faster than one
operator a step.)

The operators run host tensors on the host backends: the C kernels by pointer (``_pointers``),
the reference through NumPy views.
"""

from __future__ import annotations

import torch
from torch import Tensor
from torch.nn import functional as F

from .. import _steps
from .. import ref as reference
from .._backend import follow_num_threads, resolve
from . import _pointers
from ._function import SPECS, as_array, nest_weights

HOST_BACKENDS = ("c", "numpy")


def available() -> bool:
    """Whether this torch has ``torch.library.custom_op`` (2.4 on)."""
    return hasattr(torch.library, "custom_op")


def _backend(name: str):
    """The backend named by a module's setting ("": $PYRNN_BACKEND, else auto), at run time,
    with torch's thread count passed on as in eager calls."""
    follow_num_threads(torch.get_num_threads())
    be = resolve(name or None)
    if be.name not in HOST_BACKENDS:
        raise ValueError(f"pyrnn.torch under torch.compile runs the host backends "
                         f"{HOST_BACKENDS}, got {be.name!r} (from PYRNN_BACKEND)")
    return be


def _lengths(lengths: Tensor | None):
    return None if lengths is None else lengths.numpy()


def _layer_forward(x: Tensor, h0: Tensor | None, c0: Tensor | None, w_ih: Tensor, w_hh: Tensor,
                   b_ih: Tensor | None, b_hh: Tensor | None, lengths: Tensor | None, cell: str,
                   reverse: bool, training: bool,
                   backend: str) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """One layer-direction over x [T,B,I]: y [T,B,H], h_n [B,H], c_n [B,H] (LSTM; else empty)
    and the workspace backward reads (empty unless ``training``). h0, c0: [B,H] or None;
    lengths: [B] int64 or None."""
    spec, be = SPECS[cell], _backend(backend)
    T, B, I = x.shape
    H = w_hh.shape[1]
    workspace = be.empty(spec.workspace_len(be, T, B, I, H, training),
                         _pointers.NUMPY_DTYPE[x.dtype])
    weights = (w_ih, w_hh, b_ih, b_hh)
    if _pointers.takes(be, x):
        res = _pointers.forward(spec, be, x, h0, c0, weights, _lengths(lengths), reverse,
                                training, workspace)
    else:
        res = spec.forward(be, as_array(x), as_array(h0), as_array(c0),
                           [as_array(w) for w in weights], _lengths(lengths), workspace,
                           reverse, training)
    y, h_n = torch.as_tensor(res[0]), torch.as_tensor(res[1])
    c_n = torch.as_tensor(res[2]) if spec.has_cell_state else x.new_empty(0)
    return y, h_n, c_n, (torch.from_numpy(workspace) if training else x.new_empty(0))


def _layer_forward_fake(x, h0, c0, w_ih, w_hh, b_ih, b_hh, lengths, cell, reverse, training,
                        backend):
    T, B, _ = x.shape
    H = w_hh.shape[1]
    c_n = x.new_empty((B, H) if cell == "LSTM" else (0,))
    # every backend's workspace has the reference's length (the kernels' tests check it), which
    # the reference computes in Python: symbolic sizes go through it
    n = SPECS[cell].workspace_len(reference, T, B, x.shape[2], H, True) if training else 0
    return x.new_empty((T, B, H)), x.new_empty((B, H)), c_n, x.new_empty(n)


def _backward_workspace(spec, be, workspace: Tensor, x: Tensor, H: int):
    """Backward's workspace: what forward left at the front of ``workspace`` (checked to be a
    training workspace of x's call) copied to the front of a scratch one, where backward then
    writes its own regions. ``workspace`` is only read: an operator that wrote into an
    argument would be declared as mutating it, and torch then copied the whole workspace
    before each backward and spent 120 us a call filling in the mutating operator's arguments
    (benchmarks/RESULTS.md). The scratch workspace starts where the C kernels start their
    regions (64 bytes), which a compiled graph's copy of forward's need not."""
    T, B, I = x.shape
    n = spec.workspace_len(be, T, B, I, H, True)
    if workspace.dtype != x.dtype or workspace.shape != (n,):
        raise ValueError(f"workspace: expected layer_forward's training workspace, [{n}] "
                         f"{x.dtype}, got {list(workspace.shape)} {workspace.dtype}")
    saved = spec.workspace_saved_len(T, B, H)
    scratch = _steps.scratch_workspace(be, n, _pointers.NUMPY_DTYPE[x.dtype])
    scratch[:saved] = workspace[:saved].numpy()
    return scratch


def _layer_backward(x: Tensor, h0: Tensor | None, c0: Tensor | None, w_ih: Tensor, w_hh: Tensor,
                    b_ih: Tensor | None, b_hh: Tensor | None, lengths: Tensor | None,
                    workspace: Tensor, dy: Tensor, dh_n: Tensor, dc_n: Tensor | None, cell: str,
                    reverse: bool, backend: str,
                    wanted: list[bool]) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor, Tensor,
                                                 Tensor]:
    """The gradients of a ``layer_forward(training=True)`` given those of y, h_n and c_n: dx,
    dh0, dc0 (LSTM; else empty), dw_ih, dw_hh, db_ih, db_hh (empty without biases). wanted: a
    flag for each of the seven; one not wanted is empty and the kernels skip its work.
    workspace: forward's, only read."""
    _check_wanted(wanted)
    spec, be = SPECS[cell], _backend(backend)
    weights = (w_ih, w_hh, b_ih, b_hh)
    scratch = _backward_workspace(spec, be, workspace, x, w_hh.shape[1])
    if _pointers.takes(be, x):
        # the kernels' flags: none for the biases of a layer without them
        kernel_wanted = _pointers.wanted(spec, wanted if b_ih is not None else wanted[:5])
        res = _pointers.backward(spec, be, x, h0, c0, weights, _lengths(lengths), reverse, dy,
                                 dh_n, dc_n, scratch, kernel_wanted)
    else:
        res = spec.backward(be, as_array(x), as_array(h0), as_array(c0),
                            [as_array(w) for w in weights], _lengths(lengths),
                            as_array(dy.contiguous()), as_array(dh_n.contiguous()),
                            as_array(None if dc_n is None else dc_n.contiguous()),
                            scratch, reverse, _pointers.wanted(spec, wanted))
    # outputs may not alias each other: a new empty tensor for each None
    return tuple(x.new_empty(0) if g is None else torch.as_tensor(g)
                 for g in _steps.split_gradients(spec, res))


def _check_wanted(wanted) -> None:
    if len(wanted) != 7:
        raise ValueError(f"wanted: expected 7 flags (dx, dh0, dc0, dw_ih, dw_hh, db_ih, db_hh), "
                         f"got {len(wanted)}")


def _layer_backward_fake(x, h0, c0, w_ih, w_hh, b_ih, b_hh, lengths, workspace, dy, dh_n, dc_n,
                         cell, reverse, backend, wanted):
    _check_wanted(wanted)
    B, H = dh_n.shape
    state = (B, H)
    shapes = (x.shape, state, state if cell == "LSTM" else None, w_ih.shape, w_hh.shape,
              None if b_ih is None else b_ih.shape, None if b_hh is None else b_hh.shape)
    return tuple(x.new_empty(shape if want and shape is not None else (0,))
                 for shape, want in zip(shapes, wanted))


def _setup_context(ctx, inputs, output):
    x, h0, c0, w_ih, w_hh, b_ih, b_hh, lengths, cell, reverse, training, backend = inputs
    ctx.save_for_backward(x, h0, c0, w_ih, w_hh, b_ih, b_hh, lengths, output[3])
    ctx.cell, ctx.reverse, ctx.training, ctx.backend = cell, reverse, training, backend
    ctx.mark_non_differentiable(output[3])


def _backward(ctx, dy, dh_n, dc_n, _workspace_grad):
    if not ctx.training:
        raise RuntimeError("pyrnn.torch: backward through a forward that ran without gradients "
                           "being needed")
    x, h0, c0, w_ih, w_hh, b_ih, b_hh, lengths, workspace = ctx.saved_tensors
    # only what autograd needs (a model's input, states not given, frozen weights: none)
    needs = list(ctx.needs_input_grad[:7])
    grads = layer_backward(x, h0, c0, w_ih, w_hh, b_ih, b_hh, lengths, workspace, dy, dh_n,
                           dc_n if ctx.cell == "LSTM" else None, ctx.cell, ctx.reverse,
                           ctx.backend, needs)
    return tuple(g if need else None for g, need in zip(grads, needs)) + (None,) * 5


# torch.compile's caches key a compiled graph by its operators' names, not their schemas
# (pytorch/pytorch#144344): a cache written by an older pyrnn called the backward operator with
# the old arguments. So the operators' names carry a revision, raised whenever either's
# arguments or results change.
REVISION = 2

if available():
    layer_forward = torch.library.custom_op(f"pyrnn::layer_forward_v{REVISION}", _layer_forward,
                                            mutates_args=())
    layer_forward.register_fake(_layer_forward_fake)
    layer_backward = torch.library.custom_op(f"pyrnn::layer_backward_v{REVISION}",
                                             _layer_backward, mutates_args=())
    layer_backward.register_fake(_layer_backward_fake)
    layer_forward.register_autograd(_backward, setup_context=_setup_context)


def run_stack(cell: str, backend: str, num_layers: int, num_directions: int, bias: bool, x,
              h0, c0, flat_weights, lengths, dropout: float, training: bool):
    """A layer's forward in torch operations around ``layer_forward``: out [T,B,D*H], h_n
    [L*D,B,H] and, for LSTM, c_n. x [T,B,I]; h0, c0 [L*D,B,H] or None; lengths [B] int64 or
    None; dropout: the probability applied after every layer but the last."""
    weights = nest_weights(flat_weights, num_layers, num_directions, bias)
    h_n, c_n = [], []
    layer_in = x
    for layer in range(num_layers):
        outs = []
        for direction in range(num_directions):
            k = layer * num_directions + direction
            y, h, c, _ = layer_forward(layer_in, None if h0 is None else h0[k],
                                       None if c0 is None else c0[k], *weights[layer][direction],
                                       lengths, cell, direction == 1, training, backend)
            outs.append(y)
            h_n.append(h)
            c_n.append(c)
        layer_in = outs[0] if num_directions == 1 else torch.cat(outs, 2)
        if dropout > 0 and layer < num_layers - 1:
            layer_in = F.dropout(layer_in, dropout)
    states = (torch.stack(h_n), torch.stack(c_n)) if cell == "LSTM" else (torch.stack(h_n),)
    return (layer_in, *states)

