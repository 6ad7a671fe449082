"""The C backend: pyrnn's compiled kernels through cffi.

The same function table as :mod:`pyrnn.ref`, with the same signatures and return values. The
kernel (float32 or float64) follows ``x.dtype``; other arrays are converted to it (no copy when
they already match) and passed as pointers to C-contiguous data; outputs are allocated here with
NumPy. The workspace is used as given, so it must already have the right dtype and length.
The GIL is released while a kernel runs.
"""

from __future__ import annotations

import numpy as np

from ._errors import PyrnnError
from ._pyrnn_c import ffi, lib

_SUFFIX = {np.dtype(np.float32): "f32", np.dtype(np.float64): "f64"}  # keys are singletons
_CTYPE = {"f32": "float[]", "f64": "double[]"}
_NULL = ffi.NULL
_from_buffer = ffi.from_buffer


def _shape(shape) -> str:
    return "[" + ",".join(str(s) for s in shape) + "]"


def _pointer(ctype: str, dtype, name: str, a, shape):
    """A pointer to ``a`` as a C-contiguous array of ``dtype`` and ``shape``; NULL for None."""
    if a is None:
        return _NULL
    if a.__class__ is not np.ndarray or a.dtype is not dtype:
        a = np.ascontiguousarray(a, dtype=dtype)
    if a.shape != shape:
        raise ValueError(f"{name}: expected shape {_shape(shape)}, got {_shape(a.shape)}")
    try:
        return _from_buffer(ctype, a)
    except ValueError:  # not C-contiguous: pass a contiguous copy
        return _from_buffer(ctype, np.ascontiguousarray(a))


class _Call:
    """One kernel call: the sizes (from x and w_hh), the data type, pointers and checks."""

    def __init__(self, x, w_hh, gates: int):
        x = np.asarray(x)
        self.suffix = _SUFFIX.get(x.dtype)
        if self.suffix is None:
            raise TypeError(f"x: expected float32 or float64 data, got dtype {x.dtype}")
        if x.ndim != 3 or np.ndim(w_hh) != 2:
            raise ValueError(f"x: expected [T,B,I] and w_hh [G*H,H], got shapes "
                             f"{_shape(x.shape)} and {_shape(np.shape(w_hh))}")
        self.x, self.dtype, self.ctype = x, x.dtype, _CTYPE[self.suffix]
        self.T, self.B, self.I = x.shape
        self.H = np.shape(w_hh)[1]
        self.G = gates

    def pointers(self, items):
        """Pointers for (name, array or None, shape) items, in order."""
        ctype, dtype = self.ctype, self.dtype
        return [_pointer(ctype, dtype, name, a, shape) for name, a, shape in items]

    def inputs(self, states, w_ih, w_hh, b_ih, b_hh, lengths):
        """Pointers to x, the states, the weights and lengths, in the kernels' order."""
        T, B, I, H, GH = self.T, self.B, self.I, self.H, self.G * self.H
        if w_ih is None or w_hh is None:
            raise ValueError("w_ih, w_hh: expected arrays, got None")
        if (b_ih is None) != (b_hh is None):
            raise ValueError("b_ih, b_hh: expected both arrays or both None")
        ptrs = self.pointers([("x", self.x, (T, B, I))] + [(n, s, (B, H)) for n, s in states]
                             + [("w_ih", w_ih, (GH, I)), ("w_hh", w_hh, (GH, H)),
                                ("b_ih", b_ih, (GH,)), ("b_hh", b_hh, (GH,))])
        if lengths is None:
            return ptrs + [_NULL]
        lens = np.ascontiguousarray(lengths, dtype=np.int64)
        if lens.shape != (B,):
            raise ValueError(f"lengths: expected shape [{B}], got {_shape(lens.shape)}")
        return ptrs + [_from_buffer("int64_t[]", lens)]

    def workspace(self, workspace, need: int):
        """A pointer into ``workspace`` itself: backward reads what forward left there."""
        if type(workspace) is not np.ndarray or workspace.dtype != self.dtype:
            raise TypeError(f"workspace: expected a NumPy array of {self.dtype}, got "
                            f"{getattr(workspace, 'dtype', type(workspace).__name__)}")
        if (workspace.ndim != 1 or workspace.size < need
                or not workspace.flags.c_contiguous or not workspace.flags.writeable):
            raise ValueError(f"workspace: expected a writeable contiguous 1-D array of at least "
                             f"{need} elements, got shape {_shape(workspace.shape)}")
        return _from_buffer(self.ctype, workspace)

    def outputs(self, shapes):
        """New arrays of these shapes (None: no array) and pointers to them."""
        arrays = [None if s is None else np.empty(s, dtype=self.dtype) for s in shapes]
        ctype = self.ctype
        return arrays, [_NULL if a is None else _from_buffer(ctype, a) for a in arrays]

    def run(self, name: str, *args) -> None:
        """Call pyrnn_<name>_<f32|f64> and turn a failure status into PyrnnError."""
        full = f"pyrnn_{name}_{self.suffix}"
        status = getattr(lib, full)(self.T, self.B, self.I, self.H, *args)
        if status != 0:
            message = ffi.string(lib.pyrnn_status_message(status)).decode()
            raise PyrnnError(f"{full} failed (status {status}: {message}); this is a bug in "
                             "pyrnn, please report it")


def _workspace_len(n: int) -> int:
    if n < 0:
        raise ValueError("workspace_len: sizes must be >= 1")
    return int(n)


def rnn_workspace_len(T: int, B: int, I: int, H: int, training: bool) -> int:
    return _workspace_len(lib.pyrnn_rnn_workspace_len(T, B, I, H, int(training)))


def lstm_workspace_len(T: int, B: int, I: int, H: int, training: bool) -> int:
    return _workspace_len(lib.pyrnn_lstm_workspace_len(T, B, I, H, int(training)))


def gru_workspace_len(T: int, B: int, I: int, H: int, training: bool, reset_after: bool) -> int:
    return _workspace_len(lib.pyrnn_gru_workspace_len(T, B, I, H, int(training),
                                                      int(reset_after)))


def _forward(kind, gates, need, x, states, weights, lengths, workspace, flags, n_states):
    """Shared body of the three forwards: returns y [T,B,H] and the final states [B,H]."""
    call = _Call(x, weights[1], gates)
    T, B, H = call.T, call.B, call.H
    inputs = call.inputs(states, *weights, lengths)
    ws = call.workspace(workspace, need(T, B, call.I, H))
    outs, out_ptrs = call.outputs([(T, B, H)] + [(B, H)] * n_states)
    call.run(f"{kind}_forward", *flags, *inputs, *out_ptrs, ws)
    return tuple(outs)


def _backward(kind, gates, need, x, states, weights, lengths, dy, grads_n, workspace, flags):
    """Shared body of the three backwards: dx, d<states>, dw_ih, dw_hh, db_ih, db_hh."""
    call = _Call(x, weights[1], gates)
    T, B, I, H = call.T, call.B, call.I, call.H
    GH = gates * H
    inputs = call.inputs(states, *weights, lengths)
    if dy is None:
        raise ValueError(f"dy: expected an array of shape {_shape((T, B, H))}, got None")
    grads = call.pointers([("dy", dy, (T, B, H))] + [(n, g, (B, H)) for n, g in grads_n])
    ws = call.workspace(workspace, need(T, B, I, H))
    bias = weights[2] is not None
    outs, out_ptrs = call.outputs([(T, B, I)] + [(B, H)] * len(states) + [
        (GH, I), (GH, H), (GH,) if bias else None, (GH,) if bias else None])
    call.run(f"{kind}_backward", *flags, *inputs, *grads, *out_ptrs, ws)
    return tuple(outs)


def rnn_forward(x, h0, w_ih, w_hh, b_ih, b_hh, lengths, workspace, *, reverse=False,
                training=False, relu=False):
    """See :func:`pyrnn.ref.rnn_forward`. Returns y [T,B,H], h_n [B,H]."""
    return _forward("rnn", 1, lambda *size: rnn_workspace_len(*size, training),
                    x, [("h0", h0)], (w_ih, w_hh, b_ih, b_hh), lengths, workspace,
                    (int(reverse), int(training), int(relu)), 1)


def rnn_backward(x, h0, w_ih, w_hh, b_ih, b_hh, lengths, dy, dh_n, workspace, *, reverse=False,
                 relu=False):
    """See :func:`pyrnn.ref.rnn_backward`. Returns dx, dh0, dw_ih, dw_hh, db_ih, db_hh."""
    return _backward("rnn", 1, lambda *size: rnn_workspace_len(*size, True), x, [("h0", h0)],
                     (w_ih, w_hh, b_ih, b_hh), lengths, dy, [("dh_n", dh_n)], workspace,
                     (int(reverse), int(relu)))


def lstm_forward(x, h0, c0, w_ih, w_hh, b_ih, b_hh, lengths, workspace, *, reverse=False,
                 training=False):
    """See :func:`pyrnn.ref.lstm_forward`. Returns y [T,B,H], h_n [B,H], c_n [B,H]."""
    return _forward("lstm", 4, lambda *size: lstm_workspace_len(*size, training),
                    x, [("h0", h0), ("c0", c0)], (w_ih, w_hh, b_ih, b_hh), lengths, workspace,
                    (int(reverse), int(training)), 2)


def lstm_backward(x, h0, c0, w_ih, w_hh, b_ih, b_hh, lengths, dy, dh_n, dc_n, workspace, *,
                  reverse=False):
    """See :func:`pyrnn.ref.lstm_backward`. Returns dx, dh0, dc0, dw_ih, dw_hh, db_ih, db_hh."""
    return _backward("lstm", 4, lambda *size: lstm_workspace_len(*size, True), x,
                     [("h0", h0), ("c0", c0)], (w_ih, w_hh, b_ih, b_hh), lengths, dy,
                     [("dh_n", dh_n), ("dc_n", dc_n)], workspace, (int(reverse),))


def gru_forward(x, h0, w_ih, w_hh, b_ih, b_hh, lengths, workspace, *, reverse=False,
                training=False, reset_after=True):
    """See :func:`pyrnn.ref.gru_forward`. Returns y [T,B,H], h_n [B,H]."""
    return _forward("gru", 3, lambda *size: gru_workspace_len(*size, training, reset_after),
                    x, [("h0", h0)], (w_ih, w_hh, b_ih, b_hh), lengths, workspace,
                    (int(reverse), int(training), int(reset_after)), 1)


def gru_backward(x, h0, w_ih, w_hh, b_ih, b_hh, lengths, dy, dh_n, workspace, *, reverse=False,
                 reset_after=True):
    """See :func:`pyrnn.ref.gru_backward`. Returns dx, dh0, dw_ih, dw_hh, db_ih, db_hh."""
    return _backward("gru", 3, lambda *size: gru_workspace_len(*size, True, reset_after), x,
                     [("h0", h0)], (w_ih, w_hh, b_ih, b_hh), lengths, dy, [("dh_n", dh_n)],
                     workspace, (int(reverse), int(reset_after)))


def set_num_threads(n: int) -> None:
    """Threads the kernels may use from now on (n >= 1); results do not depend on it."""
    if lib.pyrnn_set_num_threads(int(n)) != 0:
        raise ValueError(f"set_num_threads: expected a positive int, got {n!r}")


def info() -> dict:
    """The instruction set chosen, the thread setting, OpenMP and the library version."""
    return {
        "version": ffi.string(lib.pyrnn_version()).decode(),
        "isa": ffi.string(lib.pyrnn_isa_name()).decode(),
        "threads": lib.pyrnn_get_num_threads(),
        "openmp": bool(lib.pyrnn_has_openmp()),
    }


def check_available() -> None:
    """Raise unless the extension is this version's (an older build lacks its entry points)."""
    lib.pyrnn_isa_name()
