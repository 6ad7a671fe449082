"""The CUDA backend, written with Numba: the reference's per-cell function table on the GPU.

Imported only when the ``cuda`` backend is resolved (importing pyrnn never imports numba).
Inputs are NumPy arrays (copied to the device, results returned as NumPy) or device arrays with
``__cuda_array_interface__`` (nothing is copied to the host, results are Numba device arrays).
Workspaces live on the device (``empty``). NumPy weights are copied to the device at each call
unless the call runs inside ``cache_weights()``; a module moved with ``m.to("cuda")`` keeps its
weights on the device instead. ``array_ops`` (``ops.py``) composes layers on device arrays.
Without a GPU, Numba's simulator (``NUMBA_ENABLE_CUDASIM=1``) runs the same kernels, slowly.
``PYRNN_CUDA_PERSISTENT=0`` turns the persistent small-batch kernels off, ``=1`` uses them for
any batch they fit.
"""

from __future__ import annotations

import numpy as np

from .._errors import BackendUnavailableError
from ..ref import gru_workspace_len, lstm_workspace_len, rnn_workspace_len
from . import _runtime
from . import ops as array_ops
from ._runtime import cache_weights
from .gru import gru_backward, gru_forward
from .lstm import lstm_backward, lstm_forward
from .rnn import rnn_backward, rnn_forward

__all__ = [
    "rnn_forward", "rnn_backward", "rnn_workspace_len",
    "lstm_forward", "lstm_backward", "lstm_workspace_len",
    "gru_forward", "gru_backward", "gru_workspace_len",
    "check_available", "empty", "info", "cache_weights", "array_ops",
]


def check_available() -> None:
    """Raise BackendUnavailableError unless a GPU, or the simulator, can run the kernels."""
    if _runtime.SIMULATOR:
        return
    if not _runtime.cuda.is_available():
        raise BackendUnavailableError(
            "no CUDA GPU is usable here (numba.cuda.is_available() is False) and "
            "NUMBA_ENABLE_CUDASIM=1 is not set; run on a machine with an NVIDIA GPU and driver, "
            "or set NUMBA_ENABLE_CUDASIM=1 before importing numba to use its (slow) simulator")
    from numba.cuda.cudadrv import nvvm

    if not nvvm.is_available():
        raise BackendUnavailableError(
            'a GPU is here but the NVVM compiler library is not; pip install "pyrnn[cuda]" '
            "(numba-cuda[cu13]) to get it")


def empty(n: int, dtype):
    """A 1-D device workspace of ``n`` elements."""
    return _runtime.empty(n, np.dtype(dtype))


def info() -> dict:
    """Numba versions, whether this is the simulator, and the GPU."""
    import numba

    from .gemm import _cupy

    details = {"numba_version": numba.__version__, "simulator": _runtime.SIMULATOR,
               "cublas_via_cupy": _cupy() is not None}
    try:
        from importlib.metadata import version

        details["numba_cuda_version"] = version("numba-cuda")
    except Exception:  # not installed as a distribution
        pass
    if not _runtime.SIMULATOR:
        device = _runtime.cuda.get_current_device()
        name = device.name
        details["device"] = name.decode() if isinstance(name, bytes) else str(name)
        details["compute_capability"] = device.compute_capability
    return details
