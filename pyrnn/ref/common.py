"""Activations, their derivatives from the output, and workspace carving.

The NumPy counterpart of ``csrc/common.h``. Derivatives are written in terms of the activation's
output (``y``), because that is what the forward pass keeps in the workspace.
"""

from __future__ import annotations

import math

import numpy as np


def sigmoid(x: np.ndarray) -> np.ndarray:
    """Logistic function, computed without overflow for large ``|x|``."""
    e = np.exp(-np.abs(x))
    return np.where(x >= 0, 1.0 / (1.0 + e), e / (1.0 + e)).astype(x.dtype, copy=False)


def tanh(x: np.ndarray) -> np.ndarray:
    return np.tanh(x)


def relu(x: np.ndarray) -> np.ndarray:
    return np.maximum(x, 0)


def dsigmoid_from_output(y: np.ndarray) -> np.ndarray:
    return y * (1 - y)


def dtanh_from_output(y: np.ndarray) -> np.ndarray:
    return 1 - y * y


def drelu_from_output(y: np.ndarray) -> np.ndarray:
    return (y > 0).astype(y.dtype)


def only_wanted(gradients: tuple, wanted) -> tuple:
    """A backward's results with those not ``wanted`` made None. wanted: None for all, or one
    flag per result in their order (dx, dh0[, dc0], dw_ih, dw_hh, db_ih, db_hh); the compiled
    kernels skip the work of those not wanted, this and the CUDA backend drop them."""
    if wanted is None:
        return gradients
    if len(wanted) != len(gradients):
        raise ValueError(f"wanted: expected {len(gradients)} flags, got {len(wanted)}")
    return tuple(g if w else None for g, w in zip(gradients, wanted))


def step_order(T: int, reverse: bool) -> range:
    """The order in which a direction visits the steps 0..T-1."""
    return range(T - 1, -1, -1) if reverse else range(T)


def valid_mask(lengths: np.ndarray | None, T: int, B: int) -> np.ndarray:
    """[T,B,1] bool: step t is valid for sequence b iff t < lengths[b].

    The same rule serves both directions: going forward a sequence stops updating after its last
    valid step; going in reverse it keeps its initial state until its last valid step, where it
    starts (PyTorch's packed-sequence semantics).
    """
    if lengths is None:
        return np.ones((T, B, 1), dtype=bool)
    return (np.arange(T)[:, None] < np.asarray(lengths)[None, :])[:, :, None]


# Hidden sizes are rounded up to a multiple of this in the compiled kernels' per-unit-block
# regions (csrc/common.h, PYRNN_HPAD).
HPAD = 32
# LSTM and RNN inference's row spacing in the compiled kernels (csrc/common.h, PYRNN_ROW_SKEW and
# PYRNN_STATE_SKEW): elements after each row of gates and after each [B,H] state buffer.
ROW_SKEW = 16
STATE_SKEW = 160


def kernel_regions_len(B: int, I: int, H: int, G: int, folds: bool) -> int:
    """Elements of the regions the compiled kernels append to every workspace layout.

    The reference carves them but does not use them (csrc/cell_common.h does):
    acc [G*B*Hp] recurrent sums of the current step; tbuf [2,G*H,B] transposed states or gate
    gradients; wpack [G*Hp*H] packed recurrent weights, absent where the call ``folds`` its one
    step (T = 1, and reset_after for GRU: it packs none); bpack [256*roundup(max(G*H, I), 32)]
    the GEMMs' packed panels (Hp = H rounded up to a multiple of HPAD); each with 16 elements of
    slack so that it can start on a 64-byte boundary.
    """
    Hp = -(-H // HPAD) * HPAD
    gemm_n = -(-max(G * H, I) // 32) * 32
    wpack = 0 if folds else G * Hp * H
    return G * B * Hp + 2 * G * H * B + wpack + 256 * gemm_n + 4 * 16


def carve(workspace: np.ndarray, shapes: list[tuple[int, ...]]) -> list[np.ndarray]:
    """Consecutive C-contiguous views of ``shapes`` from the front of a 1-D ``workspace``."""
    need = sum(math.prod(s) for s in shapes)
    if workspace.ndim != 1 or workspace.size < need:
        raise ValueError(
            f"workspace: expected a 1-D array of at least {need} elements, got shape "
            f"{workspace.shape}")
    views, offset = [], 0
    for shape in shapes:
        n = math.prod(shape)
        views.append(workspace[offset : offset + n].reshape(shape))
        offset += n
    return views
