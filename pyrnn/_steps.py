"""One step of a cell on a backend, for the cells of the NumPy API and of pyrnn.torch: the
backend's ``<cell>_forward`` and ``<cell>_backward`` at T=1.

A cell step is short (LSTMCell B=1 I=H=128: about 15 us of kernel), so it skips the layers'
composition (``functional.stack_forward``) and each thread reuses one workspace per backend and
dtype for its steps, where a new one cost a step 4 us and, before backward, its pages came
fresh from the system each time (50 chained LSTMCell steps of B=1 I=H=128 and their backward
took 1.106 of the time). A step keeps nothing of that workspace past its call but the front
part it copies for backward (``step_workspace``).
"""

from __future__ import annotations

import threading
from functools import lru_cache

import numpy as np

from ._backend import Backend
from ._checks import dtype_of
from .functional import CellSpec


class _Workspaces(threading.local):
    """Each thread's one-step workspace, one per backend and dtype, grown as needed (held for
    the thread's life, as large as its largest step's)."""

    def __init__(self):
        self.arrays = {}

    def get(self, backend: Backend, n: int, dtype) -> np.ndarray:
        key = (backend.name, dtype)
        ws = self.arrays.get(key)
        if ws is None or ws.size < n:
            ws = self.arrays[key] = backend.empty(n, dtype)
        return ws[:n]


workspaces = _Workspaces()

# a call that keeps nothing of its workspace takes the thread's reused one when it needs at most
# this many bytes (batch-1 layers without gradients took 0.96-0.98 of the time,
# benchmarks/RESULTS.md); a larger one gets its own, not held for the thread's life (78 MB at
# 50x64x512x1024)
REUSED_WORKSPACE_BYTES = 4 << 20


def scratch_workspace(backend: Backend, n: int, dtype) -> np.ndarray:
    """A workspace of ``n`` elements of ``dtype`` for a call that keeps nothing of it past its
    return: the thread's reused one, or a new one past ``REUSED_WORKSPACE_BYTES``."""
    if n * np.dtype(dtype).itemsize > REUSED_WORKSPACE_BYTES:
        return backend.empty(n, dtype)
    return workspaces.get(backend, n, dtype)


@lru_cache(maxsize=256)
def _step_workspace_len(spec: CellSpec, backend: Backend, B: int, I: int, H: int,
                        training: bool) -> int:
    """A step's workspace length, asked of the backend once per size (the C backend answers
    through three Python functions and a C call: a cell step's Python is most of its time)."""
    return spec.workspace_len(backend, 1, B, I, H, training)


def step_workspace(spec: CellSpec, backend: Backend, B: int, I: int, H: int, training: bool,
                   dtype):
    """A step's workspace, and the length of its front part that a training step keeps for
    backward (None: it keeps the whole, which is then a workspace of its own).

    What forward leaves for backward (``CellSpec.workspace_saved_len``) is a small part of a
    one-step workspace, most of which is backward's regions and the kernels' scratch: a loop
    of steps under autograd kept every step's whole (100 LSTMCell steps of B=1 I=H=128 kept 54
    MB, now 0.7). Where the front part is more than a quarter (large batches), copying it twice
    cost more than the memory saved was worth (LSTMCell B=256 I=H=512 1.18x the time, when
    backward's regions were kept too), and so did copying a device workspace's."""
    n = _step_workspace_len(spec, backend, B, I, H, training)
    kept = spec.workspace_saved_len(1, B, H) if training else None
    if kept is not None and 4 * kept > n:  # kept whole: the thread's would not be reused
        return backend.empty(n, dtype), None
    workspace = workspaces.get(backend, n, dtype)
    if kept is None or workspace.__class__ is np.ndarray:
        return workspace, kept
    return backend.empty(n, dtype), None


def keep(workspace, kept: int | None):
    """What a training step keeps of its workspace for backward: (the front part, the whole's
    length), or (the whole, None)."""
    if kept is None:
        return workspace, None
    return workspace[:kept].copy(), workspace.size


def backward_workspace(backend: Backend, kept, whole: int | None):
    """Backward's workspace from what ``keep`` kept: the front part put back at the front of
    this thread's workspace (the reference carves its regions from element 0, the C kernels
    from the first 64-byte boundary, where the C backend's ``empty`` starts its arrays: the
    same place), or the kept whole."""
    if whole is None:
        return kept
    workspace = workspaces.get(backend, whole, kept.dtype)
    workspace[:kept.size] = kept
    return workspace


def step_forward(spec: CellSpec, backend: Backend, x, h0, c0, weights, training: bool):
    """x [1,B,I]; h0, c0 [B,H] or None; weights (w_ih, w_hh, b_ih, b_hh), biases None without.
    Returns h' [B,H], c' [B,H] (None but for LSTM) and, when ``training``, what
    ``step_backward`` needs."""
    _, B, I = x.shape
    H = weights[1].shape[1]
    workspace, kept = step_workspace(spec, backend, B, I, H, training, dtype_of(x))
    res = spec.forward(backend, x, h0, c0, weights, None, workspace, False, training)
    c = res[2] if spec.has_cell_state else None
    saved = (x, h0, c0, weights, *keep(workspace, kept)) if training else None
    return res[0][0], c, saved  # y[0]: h' is the step's output


def step_backward(spec: CellSpec, backend: Backend, saved, grad_h, grad_c, wanted=None):
    """The gradients of a ``step_forward(training=True)`` step given those of h' and c' ([B,H];
    grad_c None for zeros): dx [B,I], dh0, dc0 (None but for LSTM), dw_ih, dw_hh, db_ih, db_hh
    (None without biases). wanted: as the backends' ``<cell>_backward``'s (None: all); one not
    wanted is None."""
    x, h0, c0, weights, kept, whole = saved
    B, H = x.shape[1], weights[1].shape[1]
    # h' is both y[0] and h_n: its gradient goes in once, as dy's
    res = spec.backward(backend, x, h0, c0, weights, None, grad_h.reshape(1, B, H), None,
                        grad_c, backward_workspace(backend, kept, whole), False, wanted)
    dx, *rest = split_gradients(spec, res)
    return (None if dx is None else dx[0], *rest)


def split_gradients(spec: CellSpec, res) -> tuple:
    """dx, dh0, dc0 (None but for LSTM), dw_ih, dw_hh, db_ih, db_hh from a backend backward's
    results ``res`` (dx, the states' gradients, the weights')."""
    dstates = res[1:3] if spec.has_cell_state else (res[1], None)
    return (res[0], *dstates, *res[-4:])
