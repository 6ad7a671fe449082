"""The C backend on host tensors' own memory: one layer-direction of a cell over T steps (a
cell's step is T=1), each tensor's data pointer handed to the kernel.

Through NumPy each tensor cost a ``.numpy()`` view (about 1.2 us) and a cffi pointer to it (0.3
us); ``data_ptr()`` and a cast cost 0.35. The sizes are checked here as the C backend checks
arrays' (a weight of another shape raises rather than the kernel reading past it), and a
strided or lazily negated tensor (the imaginary part of a conjugate) is made plain first, as the
C backend copies a strided array.
"""

from __future__ import annotations

import numpy as np
import torch

from .._backend import Backend
from ..functional import CellSpec

NUMPY_DTYPE = {torch.float32: np.dtype(np.float32), torch.float64: np.dtype(np.float64)}
_SUFFIX = {torch.float32: "f32", torch.float64: "f64"}
_STATE_NAMES = ("h0", "c0")
_GRAD_NAMES = ("dh_n", "dc_n")


def takes(backend: Backend, x: torch.Tensor) -> bool:
    """Whether a call on ``x`` goes by pointer: the C backend with host tensors."""
    return backend.name == "c" and x.is_cpu


def _size_error(named) -> ValueError:
    """The error for the first tensor of ``named`` ((name, tensor or None, shape) in the order
    the sizes follow from: x, the weights, then the states or gradients, which may have a
    leading 1) whose shape is not its own."""
    for name, t, shape in named:
        if t is not None and t.shape != shape and (name[:2] in ("w_", "b_")
                                                   or t.shape != (1, *shape)):
            return ValueError(f"{name}: expected shape {list(shape)}, got {list(t.shape)}")
    raise AssertionError("no tensor of another size")  # the caller found one


def _pointers_to(c_module, sfx: str, tensors, shapes, loose: int, pointers: list,
                 held: list) -> bool:
    """Append a pointer to each of ``tensors`` (None: NULL) to ``pointers``; a strided or lazily
    negated tensor is made plain first, into ``held``, which the caller keeps while the kernel
    reads it. Returns False, leaving the rest, at the first tensor whose shape is neither its
    one in ``shapes`` nor, for the first ``loose`` tensors, that shape with a leading 1 (a
    layer's states are [1,B,H]; a cell's input [B,I], one step of [1,B,I]).
    One loop, calling no function of its own: a batch-1 cell step's Python is most of its
    time (benchmarks/RESULTS.md)."""
    at, null = c_module.POINTER_AT[sfx], c_module.NULL
    for k, t in enumerate(tensors):
        if t is None:
            pointers.append(null)
            continue
        shape = shapes[k]
        if t.shape != shape and (k >= loose or t.shape != (1, *shape)):
            return False
        if not t.is_contiguous() or t.is_neg():
            t = t.resolve_neg().contiguous()
            held.append(t)
        pointers.append(at(t.data_ptr()))
    return True


def _input_pointers(spec: CellSpec, c_module, sfx: str, x, states, weights, lengths, T: int):
    """B, I, H of a call on x ([T,B,I], or [B,I] for one step), pointers to x, the states, the
    weights and lengths in the kernels' order, each size checked, and the tensors made plain
    (``_pointers_to``)."""
    B, I = x.shape[-2:]
    H = weights[1].shape[-1]
    GH = spec.gates * H
    x_shape, state = ((T, B, I) if T > 1 else (B, I)), (B, H)
    weight_shapes = ((GH, I), (GH, H), (GH,), (GH,))
    pointers, held = [], []
    if not _pointers_to(c_module, sfx, (x, *states, *weights),
                        (x_shape, *(state,) * len(states), *weight_shapes), 1 + len(states),
                        pointers, held):
        names = ("x", "w_ih", "w_hh", "b_ih", "b_hh", *_STATE_NAMES[:len(states)])
        raise _size_error(zip(names, (x, *weights, *states),
                              (x_shape, *weight_shapes, state, state)))
    if lengths is None:
        pointers.append(c_module.NULL)
    elif lengths.dtype != np.int64 or lengths.shape != (B,):
        raise ValueError(f"lengths: expected [{B}] int64, got {list(lengths.shape)} "
                         f"{lengths.dtype}")
    else:
        pointers.append(c_module.lengths_at(lengths))
    return B, I, H, pointers, held


# a call whose largest result has at least this many bytes makes its results with torch's
# allocator, a smaller one with NumPy's
_TORCH_ALLOCATES = 1 << 20


def _new_results(c_module, sfx: str, dtype, largest: int):
    """``forward_at``'s and ``backward_at``'s ``new`` for a call whose largest result has
    ``largest`` elements: None (NumPy arrays, the callers' ``as_tensor`` makes them tensors
    without copies: ``np.empty`` and ``torch.from_numpy`` take 1.2 us, ``torch.empty`` 2.2), or
    for large results new tensors from torch's allocator. NumPy's large blocks went back to the
    system and came again as fresh pages: 20 chained LSTMCell steps of B=32 I=H=512 with
    backward took 20 thousand page faults a call, torch.nn's 6 (benchmarks/RESULTS.md)."""
    if largest * NUMPY_DTYPE[dtype].itemsize < _TORCH_ALLOCATES:
        return None
    pointer = c_module.POINTER_AT[sfx]

    def new(shape):
        t = torch.empty(shape, dtype=dtype)
        return t, pointer(t.data_ptr())

    return new


def forward(spec: CellSpec, backend: Backend, x, h0, c0, weights, lengths, reverse: bool,
            training: bool, workspace: np.ndarray):
    """``<cell>_forward`` of T = len(x) steps (x [T,B,I]; or one step, x [B,I]): y [T,B,H],
    h_n [B,H] and, for LSTM, c_n [B,H], new (NumPy arrays, or tensors for large results).
    h0, c0: [B,H] or [1,B,H], or None; weights (w_ih, w_hh, b_ih, b_hh), biases None without;
    lengths [B] int64 or None;
    workspace: the call's ``<cell>_workspace_len`` elements of x's dtype, which the callers
    (pyrnn.torch's own modules, never a user) make so."""
    T = x.shape[0] if x.dim() == 3 else 1
    states = (h0, c0) if spec.has_cell_state else (h0,)
    c_module, sfx = backend.module, _SUFFIX[x.dtype]
    B, I, H, args, _held = _input_pointers(spec, c_module, sfx, x, states, weights, lengths, T)
    return c_module.forward_at(spec.kind, sfx, T, B, I, H,
                               (int(reverse), int(training), *spec.flag_values), args,
                               c_module.workspace_at(sfx, workspace),
                               _new_results(c_module, sfx, x.dtype, T * B * H))


def wanted(spec: CellSpec, needs) -> tuple:
    """``backward``'s ``wanted`` from autograd's ``needs_input_grad`` for (x, h0, c0, w_ih,
    w_hh[, b_ih, b_hh]): the gradients nobody asked for (a first layer's dx, a state's that was
    not given or needs none, frozen weights') are not computed."""
    return (needs[0], *(needs[1:3] if spec.has_cell_state else needs[1:2]), *needs[3:])


def backward(spec: CellSpec, backend: Backend, x, h0, c0, weights, lengths, reverse: bool,
             dy, dh_n, dc_n, workspace: np.ndarray, wanted: tuple | None = None):
    """``<cell>_backward`` of what ``forward(training=True)`` left in ``workspace``, on the same
    inputs: dx (x's shape), dh0 [B,H], dc0 [B,H] (LSTM), dw_ih, dw_hh, db_ih, db_hh (None
    without biases), new as ``forward``'s. dy: y's gradient; dh_n, dc_n: [B,H], [1,B,H] or None;
    wanted: a flag for each result in that order (biases' only with biases; None: all), a
    result not wanted being None."""
    T = x.shape[0] if x.dim() == 3 else 1
    states = (h0, c0) if spec.has_cell_state else (h0,)
    c_module, sfx = backend.module, _SUFFIX[x.dtype]
    B, I, H, args, held = _input_pointers(spec, c_module, sfx, x, states, weights, lengths, T)
    grads = (dy, dh_n, dc_n)[:1 + len(states)]
    state = (B, H)
    shapes = ((T, B, H) if T > 1 else state, state, state)
    if not _pointers_to(c_module, sfx, grads, shapes, 3, args, held):
        raise _size_error(zip(("dy", *_GRAD_NAMES), grads, shapes))
    res = c_module.backward_at(spec.kind, sfx, T, B, I, H, (int(reverse), *spec.flag_values),
                               args, weights[2] is not None,
                               c_module.workspace_at(sfx, workspace),
                               _new_results(c_module, sfx, x.dtype,
                                            max(T * B * I, spec.gates * H * max(I, H))),
                               wanted)
    if x.dim() == 3 or res[0] is None:
        return res
    return (res[0][0], *res[1:])
