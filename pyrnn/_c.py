"""The C backend: pyrnn's compiled kernels through cffi."""

from __future__ import annotations

from ._pyrnn_c import ffi, lib


def _workspace_len(n: int) -> int:
    if n < 0:
        raise ValueError("workspace_len: sizes must be >= 1")
    return int(n)


def rnn_workspace_len(T: int, B: int, I: int, H: int, training: bool) -> int:
    return _workspace_len(lib.pyrnn_rnn_workspace_len(T, B, I, H, int(training)))


def lstm_workspace_len(T: int, B: int, I: int, H: int, training: bool) -> int:
    return _workspace_len(lib.pyrnn_lstm_workspace_len(T, B, I, H, int(training)))


def gru_workspace_len(T: int, B: int, I: int, H: int, training: bool, reset_after: bool) -> int:
    return _workspace_len(lib.pyrnn_gru_workspace_len(T, B, I, H, int(training), int(reset_after)))


def info() -> dict:
    return {"version": ffi.string(lib.pyrnn_version()).decode()}


def check_available() -> None:
    """Raise unless the extension carries the cell kernels."""
    if not hasattr(lib, "pyrnn_lstm_forward_f32"):
        raise ImportError("the C extension was built without the cell kernels")
