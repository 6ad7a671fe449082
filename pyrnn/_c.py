"""The C backend: pyrnn's compiled kernels through cffi.

The same function table as :mod:`pyrnn.ref`, with the same signatures and return values. The
kernel (float32 or float64) follows ``x.dtype``; other arrays are converted to it (no copy when
they already match) and passed as pointers to C-contiguous data; outputs are allocated here with
NumPy. The workspace is used as given, so it must already have the right dtype and length.
The GIL is released while a kernel runs. Batch-1 calls are short, so the per-call Python work
here is kept to plain lookups and one pointer per array.
"""

from __future__ import annotations

from functools import partial

import numpy as np

from ._errors import PyrnnError
from ._pyrnn_c import ffi, lib

_SUFFIX = {np.dtype(np.float32): "f32", np.dtype(np.float64): "f64"}  # keys are singletons
_DTYPE = {sfx: dtype for dtype, sfx in _SUFFIX.items()}
# the array types as cffi objects: from_buffer parses a type named by a string at each call
_CTYPE = {"f32": ffi.typeof("float[]"), "f64": ffi.typeof("double[]")}
_INT64_ARRAY = ffi.typeof("int64_t[]")
_ADDRESS_TYPE = {"f32": ffi.typeof("float *"), "f64": ffi.typeof("double *")}
_GATES = {"rnn": 1, "lstm": 4, "gru": 3}
_STATE_NAMES = {"rnn": ("h0",), "lstm": ("h0", "c0"), "gru": ("h0",)}
_GRAD_NAMES = {"rnn": ("dh_n",), "lstm": ("dh_n", "dc_n"), "gru": ("dh_n",)}
# (cell, pass, suffix) -> the C function, looked up once
_KERNELS = {(cell, p, sfx): getattr(lib, f"pyrnn_{cell}_{p}_{sfx}")
            for cell in _GATES for p in ("forward", "backward") for sfx in ("f32", "f64")}
_WORKSPACE_LEN = {cell: getattr(lib, f"pyrnn_{cell}_workspace_len") for cell in _GATES}
NULL = ffi.NULL  # the pointer for an array not given
_from_buffer = ffi.from_buffer
_cast = ffi.cast


def _shape(shape) -> str:
    return "[" + ",".join(str(s) for s in shape) + "]"


def _pointer(ctype: str, dtype, name: str, a, shape):
    """A pointer to ``a`` as a C-contiguous array of ``dtype`` and ``shape``; NULL for None."""
    if a is None:
        return NULL
    if a.__class__ is not np.ndarray or a.dtype is not dtype:
        a = np.ascontiguousarray(a, dtype=dtype)
    if a.shape != shape:
        raise ValueError(f"{name}: expected shape {_shape(shape)}, got {_shape(a.shape)}")
    try:
        return _from_buffer(ctype, a)
    except ValueError:  # not C-contiguous: pass a contiguous copy
        return _from_buffer(ctype, np.ascontiguousarray(a))


def _new(ctype: str, dtype, shape):
    """A new array of ``shape`` and a pointer to it."""
    a = np.empty(shape, dtype)
    return a, _from_buffer(ctype, a)


# forward_at's and backward_at's default ``new``: NumPy arrays (a partial calls _new from C)
_NUMPY_OUTPUTS = {sfx: partial(_new, _CTYPE[sfx], _DTYPE[sfx]) for sfx in _CTYPE}


def _row_aligned(ctype: str, dtype, shape):
    """A new array of ``shape`` whose data starts on a 64-byte boundary, and a pointer to it.
    The time loops' threads write the rows of y unit block by unit block, each its own blocks;
    NumPy starts its data 16 or 32 bytes into a line, so one line of every row went back and
    forth between the threads every step (LSTM 50x32x32x128 training forward, alternating in
    one process: 1.96 ms against 1.87 aligned)."""
    n = 1
    for d in shape:
        n *= d
    pad = 64 // dtype.itemsize
    buf = np.empty(n + pad, dtype=dtype)
    ptr = _from_buffer(ctype, buf)
    skip = (-int(ffi.cast("uintptr_t", ptr)) % 64) // dtype.itemsize
    return buf[skip:skip + n].reshape(shape), ptr + skip


def empty(n: int, dtype) -> np.ndarray:
    """A workspace of ``n`` elements starting on a 64-byte boundary, where the kernels start
    their regions (so they start at element 0, as the reference's do: a saved front part of
    one workspace put at the front of another is where the kernels read it)."""
    dtype = np.dtype(dtype)
    pad = 64 // dtype.itemsize
    buf = np.empty(n + pad, dtype)
    skip = (-int(ffi.cast("uintptr_t", _from_buffer("char[]", buf))) % 64) // dtype.itemsize
    return buf[skip:skip + n]


def _workspace(ctype: str, dtype, workspace, need: int):
    """A pointer into ``workspace`` itself: backward reads what forward left there."""
    if workspace.__class__ is not np.ndarray or workspace.dtype is not dtype:
        raise TypeError(f"workspace: expected a NumPy array of {dtype}, got "
                        f"{getattr(workspace, 'dtype', type(workspace).__name__)}")
    if workspace.ndim == 1 and workspace.size >= need:
        try:  # fails for a read-only or strided array
            return _from_buffer(ctype, workspace, True)  # require_writable; by keyword 2x slower
        except ValueError:
            pass
    raise ValueError(f"workspace: expected a writeable contiguous 1-D array of at least "
                     f"{need} elements, got shape {_shape(workspace.shape)}")


def _inputs(cell, x, states, w_ih, w_hh, b_ih, b_hh, lengths):
    """Sizes, suffix, data type and the pointers to x, the states, the weights and lengths.
    states: the cell's initial states (h0 or h0, c0), each an array or None."""
    if x.__class__ is not np.ndarray:
        x = np.asarray(x)
    dtype = x.dtype
    sfx = _SUFFIX.get(dtype)
    if sfx is None:
        raise TypeError(f"x: expected float32 or float64 data, got dtype {dtype}")
    w_hh_shape = w_hh.shape if w_hh.__class__ is np.ndarray else np.shape(w_hh)
    if x.ndim != 3 or len(w_hh_shape) != 2:
        raise ValueError(f"x: expected [T,B,I] and w_hh [G*H,H], got shapes "
                         f"{_shape(x.shape)} and {_shape(w_hh_shape)}")
    if w_ih is None:
        raise ValueError("w_ih: expected an array, got None")
    if (b_ih is None) != (b_hh is None):
        raise ValueError("b_ih, b_hh: expected both arrays or both None")
    T, B, I = x.shape
    H = w_hh_shape[1]
    GH = _GATES[cell] * H
    ctype = _CTYPE[sfx]
    ptrs = [_pointer(ctype, dtype, "x", x, (T, B, I))]
    for name, s in zip(_STATE_NAMES[cell], states):
        ptrs.append(_pointer(ctype, dtype, name, s, (B, H)))
    ptrs.append(_pointer(ctype, dtype, "w_ih", w_ih, (GH, I)))
    ptrs.append(_pointer(ctype, dtype, "w_hh", w_hh, (GH, H)))
    if b_ih is None:
        ptrs += (NULL, NULL)
    else:
        ptrs.append(_pointer(ctype, dtype, "b_ih", b_ih, (GH,)))
        ptrs.append(_pointer(ctype, dtype, "b_hh", b_hh, (GH,)))
    if lengths is None:
        ptrs.append(NULL)
    else:
        lens = np.ascontiguousarray(lengths, dtype=np.int64)
        if lens.shape != (B,):
            raise ValueError(f"lengths: expected shape [{B}], got {_shape(lens.shape)}")
        ptrs.append(_from_buffer(_INT64_ARRAY, lens))
    return T, B, I, H, sfx, ctype, dtype, ptrs


def run_kernel(cell: str, pass_: str, sfx: str, *args) -> None:
    """Call pyrnn_<cell>_<pass>_<f32|f64> and turn a failure status into PyrnnError."""
    status = _KERNELS[cell, pass_, sfx](*args)
    if status != 0:
        message = ffi.string(lib.pyrnn_status_message(status)).decode()
        raise PyrnnError(f"pyrnn_{cell}_{pass_}_{sfx} failed (status {status}: {message}); "
                         "this is a bug in pyrnn, please report it")


def _forward(cell, x, states, w_ih, w_hh, b_ih, b_hh, lengths, workspace, flags, ws_flags):
    """Shared body of the three forwards: y [T,B,H] and the final states [B,H].

    flags: the kernel's flags (reverse, training, variant); ws_flags: the workspace length's
    (training, variant)."""
    T, B, I, H, sfx, ctype, dtype, ptrs = _inputs(cell, x, states, w_ih, w_hh, b_ih, b_hh,
                                                  lengths)
    ws = _workspace(ctype, dtype, workspace, _WORKSPACE_LEN[cell](T, B, I, H, *ws_flags))
    return forward_at(cell, sfx, T, B, I, H, flags, ptrs, ws)


def forward_at(cell: str, sfx: str, T, B, I, H, flags, ptrs, ws, new=None):
    """The forward kernel on checked pointers (x, the states, the four weights, lengths, in the
    reference's order, then the workspace's): y [T,B,H] and the final states [B,H], new
    NumPy arrays, or what ``new(shape)`` gives with a pointer to it: (array, pointer), its
    data C-contiguous (threads write y's rows by unit blocks: best started on 64 bytes)."""
    if new is None:
        ctype, dtype = _CTYPE[sfx], _DTYPE[sfx]
        # batch 1 writes one row a step: not worth the extra microsecond of aligning y
        y, y_ptr = (_row_aligned if B > 1 else _new)(ctype, dtype, (T, B, H))
        new = _NUMPY_OUTPUTS[sfx]
    else:
        y, y_ptr = new((T, B, H))
    h_n, h_ptr = new((B, H))
    if cell != "lstm":
        run_kernel(cell, "forward", sfx, T, B, I, H, *flags, *ptrs, y_ptr, h_ptr, ws)
        return y, h_n
    c_n, c_ptr = new((B, H))
    run_kernel(cell, "forward", sfx, T, B, I, H, *flags, *ptrs, y_ptr, h_ptr, c_ptr, ws)
    return y, h_n, c_n


def _backward(cell, x, states, w_ih, w_hh, b_ih, b_hh, lengths, dy, grads_n, workspace, flags,
              ws_flags, wanted):
    """Shared body of the three backwards: dx, d<states>, dw_ih, dw_hh, db_ih, db_hh.
    grads_n: the gradients of the final states (dh_n or dh_n, dc_n), each an array or None;
    wanted: None, or a flag for each result (the kernel skips those not wanted: None)."""
    n = len(states) + 5
    if wanted is not None and len(wanted) != n:
        raise ValueError(f"wanted: expected {n} flags, got {len(wanted)}")
    T, B, I, H, sfx, ctype, dtype, ptrs = _inputs(cell, x, states, w_ih, w_hh, b_ih, b_hh,
                                                  lengths)
    if dy is None:
        raise ValueError(f"dy: expected an array of shape {_shape((T, B, H))}, got None")
    ptrs.append(_pointer(ctype, dtype, "dy", dy, (T, B, H)))
    for name, g in zip(_GRAD_NAMES[cell], grads_n):
        ptrs.append(_pointer(ctype, dtype, name, g, (B, H)))
    ws = _workspace(ctype, dtype, workspace, _WORKSPACE_LEN[cell](T, B, I, H, 1, *ws_flags))
    bias = b_ih is not None
    return backward_at(cell, sfx, T, B, I, H, flags, ptrs, bias, ws, None,
                       wanted if wanted is None or bias else wanted[:-2])


def backward_at(cell: str, sfx: str, T, B, I, H, flags, ptrs, bias: bool, ws, new=None,
                wanted=None):
    """The backward kernel on checked pointers (forward's, then dy's and the final states'
    gradients'): dx, d<states>, dw_ih, dw_hh, db_ih, db_hh, new as ``forward_at``'s results
    (the biases' None without ``bias``). ``wanted``: None for all of them, or a flag for each
    in that order (the biases' included only with ``bias``); one not wanted is None, and the
    kernel skips the work only it needs."""
    if new is None:
        new = _NUMPY_OUTPUTS[sfx]
    GH = _GATES[cell] * H
    shapes = [(T, B, I), *[(B, H)] * len(_STATE_NAMES[cell]), (GH, I), (GH, H)]
    if bias:
        shapes += (GH,), (GH,)
    if wanted is None:
        wanted = (True,) * len(shapes)
    elif len(wanted) != len(shapes):
        raise ValueError(f"wanted: expected {len(shapes)} flags, got {len(wanted)}")
    outs, out_ptrs = [], []
    for shape, want in zip(shapes, wanted):  # a plain loop: comprehensions cost a call each
        a, p = new(shape) if want else (None, NULL)
        outs.append(a)
        out_ptrs.append(p)
    if not bias:
        outs += None, None
        out_ptrs += NULL, NULL
    run_kernel(cell, "backward", sfx, T, B, I, H, *flags, *ptrs, *out_ptrs, ws)
    return tuple(outs)


# suffix -> a function giving a pointer of the kernels' data type to memory at an address (an
# int): for callers that hold another framework's arrays and have checked them (pyrnn.torch)
POINTER_AT = {sfx: partial(_cast, ptype) for sfx, ptype in _ADDRESS_TYPE.items()}


def lengths_at(lengths):
    """A pointer to ``lengths`` ([B] int64 NumPy array, checked by the caller); NULL for None."""
    return NULL if lengths is None else _from_buffer(_INT64_ARRAY, lengths)


def workspace_at(sfx: str, workspace: np.ndarray):
    """A pointer into a workspace made by :func:`empty` with the kernels' data type."""
    return _from_buffer(_CTYPE[sfx], workspace, True)


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


def rnn_forward(x, h0, w_ih, w_hh, b_ih, b_hh, lengths, workspace, *, reverse=False,
                training=False, relu=False):
    """See :func:`pyrnn.ref.rnn_forward`. Returns y [T,B,H], h_n [B,H]."""
    return _forward("rnn", x, (h0,), w_ih, w_hh, b_ih, b_hh, lengths, workspace,
                    (int(reverse), int(training), int(relu)), (int(training),))


def rnn_backward(x, h0, w_ih, w_hh, b_ih, b_hh, lengths, dy, dh_n, workspace, *, reverse=False,
                 relu=False, wanted=None):
    """See :func:`pyrnn.ref.rnn_backward`. Returns dx, dh0, dw_ih, dw_hh, db_ih, db_hh."""
    return _backward("rnn", x, (h0,), w_ih, w_hh, b_ih, b_hh, lengths, dy,
                     (dh_n,), workspace, (int(reverse), int(relu)), (), wanted)


def lstm_forward(x, h0, c0, w_ih, w_hh, b_ih, b_hh, lengths, workspace, *, reverse=False,
                 training=False):
    """See :func:`pyrnn.ref.lstm_forward`. Returns y [T,B,H], h_n [B,H], c_n [B,H]."""
    return _forward("lstm", x, (h0, c0), w_ih, w_hh, b_ih, b_hh, lengths,
                    workspace, (int(reverse), int(training)), (int(training),))


def lstm_backward(x, h0, c0, w_ih, w_hh, b_ih, b_hh, lengths, dy, dh_n, dc_n, workspace, *,
                  reverse=False, wanted=None):
    """See :func:`pyrnn.ref.lstm_backward`. Returns dx, dh0, dc0, dw_ih, dw_hh, db_ih, db_hh."""
    return _backward("lstm", x, (h0, c0), w_ih, w_hh, b_ih, b_hh, lengths, dy,
                     (dh_n, dc_n), workspace, (int(reverse),), (), wanted)


def gru_forward(x, h0, w_ih, w_hh, b_ih, b_hh, lengths, workspace, *, reverse=False,
                training=False, reset_after=True):
    """See :func:`pyrnn.ref.gru_forward`. Returns y [T,B,H], h_n [B,H]."""
    return _forward("gru", x, (h0,), w_ih, w_hh, b_ih, b_hh, lengths, workspace,
                    (int(reverse), int(training), int(reset_after)),
                    (int(training), int(reset_after)))


def gru_backward(x, h0, w_ih, w_hh, b_ih, b_hh, lengths, dy, dh_n, workspace, *, reverse=False,
                 reset_after=True, wanted=None):
    """See :func:`pyrnn.ref.gru_backward`. Returns dx, dh0, dw_ih, dw_hh, db_ih, db_hh."""
    return _backward("gru", x, (h0,), w_ih, w_hh, b_ih, b_hh, lengths, dy,
                     (dh_n,), workspace, (int(reverse), int(reset_after)),
                     (int(reset_after),), wanted)


def set_num_threads(n: int) -> None:
    """Threads the kernels may use from now on (1..256); results do not depend on it."""
    if lib.pyrnn_set_num_threads(int(n)) != 0:
        raise ValueError(f"set_num_threads: expected an int in 1..256, got {n!r}")


def info() -> dict:
    """The instruction set chosen, the thread setting, whether a thread team exists and what its
    barrier costs (which sets how much work a second thread needs) after how many measurements
    of it, the version."""
    return {
        "version": ffi.string(lib.pyrnn_version()).decode(),
        "isa": ffi.string(lib.pyrnn_isa_name()).decode(),
        "threads": lib.pyrnn_get_num_threads(),
        "thread_team": bool(lib.pyrnn_has_thread_team()),
        "barrier_ns": lib.pyrnn_barrier_ns(),
        "barrier_measurements": lib.pyrnn_barrier_measurements(),
    }


def check_available() -> None:
    """Raise unless the extension is this version's (an older build lacks its entry points)."""
    lib.pyrnn_isa_name()
