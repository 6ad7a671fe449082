"""Weights to and from the layouts of other RNN libraries: Keras, oneDNN and haste.

pyrnn's layout is PyTorch's, one layer and direction at a time: ``w_ih [G*H,I]``,
``w_hh [G*H,H]``, ``b_ih [G*H]``, ``b_hh [G*H]`` (or both biases None), with LSTM gates in the
order i, f, g, o and GRU gates r, z, n (G = 1, 4, 3 for rnn, lstm, gru). Every ``from_*`` returns
that tuple ``(w_ih, w_hh, b_ih, b_hh)``; every ``to_*`` returns a dict named as the other library
names its arrays. ``layer_weights`` / ``layer_state_dict`` move such a tuple out of and into a
state_dict (pyrnn's or PyTorch's, which share names).

Where the other layout keeps one bias per gate, a layout that adds ``b_ih + b_hh`` before any
nonlinearity is exact: ``to_*`` stores the sum and ``from_*`` returns it as ``b_ih`` with a zero
``b_hh``. GRU's n-gate recurrent bias sits inside the reset gate when ``reset_after=True``
(PyTorch, cuDNN), so layouts of that variant keep it separately.

Sources for the layouts:

- Keras 3, ``keras/src/layers/rnn/{simple_rnn,lstm,gru}.py``: ``kernel [I,G*H]``,
  ``recurrent_kernel [H,G*H]``; LSTM gates i, f, c, o and ``bias [4H]``; GRU gates z, r, h with
  ``bias [2,3H]`` (row 0 input bias, row 1 recurrent bias) when ``reset_after=True`` (the default)
  and ``bias [3H]`` when False; ``h = z * h_prev + (1 - z) * hh``.
- oneDNN developer guide, "RNN" primitive (``doc/primitives/rnn.md``): weights ``ldigo``
  (``weights_layer [L,D,I,G,H]``, ``weights_iter [L,D,H,G,H]``) and bias ``ldgo [L,D,G,H]``;
  LSTM gates i, f, c~, o; GRU gates u, r, o with one bias (``o = tanh(W_o x + U_o (r * h) +
  B_o)``: pyrnn's reset_after=False); linear-before-reset GRU (pyrnn's reset_after=True) with
  bias gates u, r, o, u' where ``o = tanh(W_o x + r * (U_o h + B_u') + B_o)``;
  ``h = u * h_prev + (1 - u) * o``. The functions here take one layer and direction:
  ``weights_layer [I,G,H]``, ``weights_iter [H,G,H]``, ``bias [G,H]`` (``[4,H]`` for
  linear-before-reset GRU); stack them to get the ``ldigo``/``ldgo`` arrays.
- haste (lmnt-com/haste), ``frameworks/pytorch/{lstm,gru}.py`` and their ``to_native_weights``:
  ``kernel [I,G*H]``, ``recurrent_kernel [H,G*H]``; LSTM gates i, g, f, o with ``bias [4H]``;
  GRU (reset-after only) gates z, r, h with ``bias [3H]`` and ``recurrent_bias [3H]``.
"""

from __future__ import annotations

import numpy as np

from .functional import GATES

# each layout's gate order as indices into pyrnn's (lstm: i f g o; gru: r z n)
_KERAS_ORDER = {"rnn": [0], "lstm": [0, 1, 2, 3], "gru": [1, 0, 2]}
_ONEDNN_ORDER = _KERAS_ORDER
_HASTE_ORDER = {"lstm": [0, 2, 1, 3], "gru": [1, 0, 2]}


def _cell(cell: str, supported=tuple(GATES)) -> int:
    if cell not in supported:
        raise ValueError(f"cell: expected one of {list(supported)}, got {cell!r}")
    return GATES[cell]


def _array(name: str, value, shape: tuple) -> np.ndarray:
    arr = np.asarray(value)
    if arr.dtype.kind != "f":
        raise TypeError(f"{name}: expected floating-point data, got dtype {arr.dtype}")
    if arr.shape != shape:
        raise ValueError(f"{name}: expected shape [{','.join(map(str, shape))}], got "
                         f"[{','.join(map(str, arr.shape))}]")
    return arr


def _pyrnn_weights(G: int, w_ih, w_hh, b_ih, b_hh):
    """Validated pyrnn weights of one layer and direction, and H."""
    w_hh = np.asarray(w_hh)
    if w_hh.ndim != 2 or w_hh.shape[1] < 1 or w_hh.shape[0] != G * w_hh.shape[1]:
        raise ValueError(f"w_hh: expected shape [{G}*H,H], got {list(w_hh.shape)}")
    H = w_hh.shape[1]
    w_hh = _array("w_hh", w_hh, (G * H, H))
    w_ih = np.asarray(w_ih)
    w_ih = _array("w_ih", w_ih, (G * H, w_ih.shape[-1] if w_ih.ndim else 0))
    if (b_ih is None) != (b_hh is None):
        raise ValueError("b_ih, b_hh: expected both arrays or both None")
    if b_ih is not None:
        b_ih, b_hh = _array("b_ih", b_ih, (G * H,)), _array("b_hh", b_hh, (G * H,))
    return w_ih, w_hh, b_ih, b_hh, H


def _gates(a: np.ndarray, order: list[int], axis: int) -> np.ndarray:
    """``a`` with its gate blocks along ``axis`` taken in ``order``."""
    blocks = np.split(a, len(order), axis=axis)
    return np.concatenate([blocks[k] for k in order], axis=axis)


def _inverse(order: list[int]) -> list[int]:
    return [int(k) for k in np.argsort(order)]


def _from_kernels(G: int, kernel, recurrent_kernel, back: list[int]):
    """Keras/haste-style kernel [I,G*H] and recurrent_kernel [H,G*H] -> pyrnn's w_ih, w_hh, H."""
    recurrent_kernel = np.asarray(recurrent_kernel)
    H = recurrent_kernel.shape[0] if recurrent_kernel.ndim == 2 else 0
    recurrent_kernel = _array("recurrent_kernel", recurrent_kernel, (H, G * H))
    kernel = np.asarray(kernel)
    kernel = _array("kernel", kernel, (kernel.shape[0] if kernel.ndim else 0, G * H))
    return (_gates(kernel, back, 1).T.copy(), _gates(recurrent_kernel, back, 1).T.copy(), H)


def _zero_b_hh(b: np.ndarray | None):
    return (None, None) if b is None else (b, np.zeros_like(b))


# --- Keras ------------------------------------------------------------------------------------

def to_keras(cell: str, w_ih, w_hh, b_ih=None, b_hh=None, *, reset_after: bool = True) -> dict:
    """pyrnn weights of one layer and direction -> Keras SimpleRNN/LSTM/GRU weights.

    Returns {"kernel": [I,G*H], "recurrent_kernel": [H,G*H], "bias": [G*H] (GRU with
    reset_after: [2,3H]) or None without bias}; ``reset_after`` matters for GRU only.
    """
    G, order = _cell(cell), _KERAS_ORDER[cell]
    w_ih, w_hh, b_ih, b_hh, H = _pyrnn_weights(G, w_ih, w_hh, b_ih, b_hh)
    out = {"kernel": _gates(w_ih.T, order, 1), "recurrent_kernel": _gates(w_hh.T, order, 1),
           "bias": None}
    if b_ih is not None:
        if cell == "gru" and reset_after:
            out["bias"] = np.stack([_gates(b_ih, order, 0), _gates(b_hh, order, 0)])
        else:
            out["bias"] = _gates(b_ih + b_hh, order, 0)
    return out


def from_keras(cell: str, kernel, recurrent_kernel, bias=None, *, reset_after: bool = True):
    """Keras SimpleRNN/LSTM/GRU weights -> pyrnn ``(w_ih, w_hh, b_ih, b_hh)``.

    kernel: [I,G*H]; recurrent_kernel: [H,G*H]; bias: [G*H], for GRU with reset_after [2,3H],
    or None. A single Keras bias comes back as b_ih with b_hh zero.
    """
    G, back = _cell(cell), _inverse(_KERAS_ORDER[cell])
    w_ih, w_hh, H = _from_kernels(G, kernel, recurrent_kernel, back)
    if bias is None:
        return w_ih, w_hh, None, None
    if cell == "gru" and reset_after:
        bias = _array("bias", bias, (2, 3 * H))
        return w_ih, w_hh, _gates(bias[0], back, 0), _gates(bias[1], back, 0)
    return w_ih, w_hh, *_zero_b_hh(_gates(_array("bias", bias, (G * H,)), back, 0))


# --- oneDNN -----------------------------------------------------------------------------------

def to_onednn(cell: str, w_ih, w_hh, b_ih=None, b_hh=None, *, reset_after: bool = True) -> dict:
    """pyrnn weights of one layer and direction -> oneDNN's ``ldigo``/``ldgo`` slices.

    Returns {"weights_layer": [I,G,H], "weights_iter": [H,G,H], "bias": [G,H]}; for GRU with
    reset_after (oneDNN's linear-before-reset GRU) bias is [4,H] (u, r, o, u'). oneDNN always
    takes a bias, so no bias gives zeros.
    """
    G, order = _cell(cell), _ONEDNN_ORDER[cell]
    w_ih, w_hh, b_ih, b_hh, H = _pyrnn_weights(G, w_ih, w_hh, b_ih, b_hh)
    lbr = cell == "gru" and reset_after
    if b_ih is None:
        b_ih, b_hh = np.zeros(G * H, w_hh.dtype), np.zeros(G * H, w_hh.dtype)
    if lbr:
        # the n gate's recurrent bias stays inside the reset gate: oneDNN's extra u' row
        summed = np.concatenate([b_ih[: 2 * H] + b_hh[: 2 * H], b_ih[2 * H :]])
        bias = np.concatenate([_gates(summed, order, 0), b_hh[2 * H :]]).reshape(4, H)
    else:
        bias = _gates(b_ih + b_hh, order, 0).reshape(G, H)
    return {"weights_layer": _gates(w_ih.T, order, 1).reshape(-1, G, H),
            "weights_iter": _gates(w_hh.T, order, 1).reshape(H, G, H),
            "bias": bias}


def from_onednn(cell: str, weights_layer, weights_iter, bias=None, *, reset_after: bool = True):
    """oneDNN weights of one layer and direction -> pyrnn ``(w_ih, w_hh, b_ih, b_hh)``.

    weights_layer: [I,G,H]; weights_iter: [H,G,H]; bias: [G,H] ([4,H] for GRU with reset_after,
    oneDNN's linear-before-reset GRU) or None. Summed biases come back as b_ih with b_hh zero,
    except the linear-before-reset u' row, which is b_hh's n gate.
    """
    G, back = _cell(cell), _inverse(_ONEDNN_ORDER[cell])
    weights_iter = np.asarray(weights_iter)
    H = weights_iter.shape[0] if weights_iter.ndim == 3 else 0
    weights_iter = _array("weights_iter", weights_iter, (H, G, H))
    weights_layer = np.asarray(weights_layer)
    I = weights_layer.shape[0] if weights_layer.ndim == 3 else 0
    weights_layer = _array("weights_layer", weights_layer, (I, G, H))
    w_ih = _gates(weights_layer.reshape(I, G * H), back, 1).T.copy()
    w_hh = _gates(weights_iter.reshape(H, G * H), back, 1).T.copy()
    if bias is None:
        return w_ih, w_hh, None, None
    if cell == "gru" and reset_after:
        bias = _array("bias", bias, (4, H))
        b_ih = _gates(bias[:3].reshape(-1), back, 0)
        b_hh = np.concatenate([np.zeros(2 * H, bias.dtype), bias[3]])
        return w_ih, w_hh, b_ih, b_hh
    return w_ih, w_hh, *_zero_b_hh(_gates(_array("bias", bias, (G, H)).reshape(-1), back, 0))


# --- haste ------------------------------------------------------------------------------------

def to_haste(cell: str, w_ih, w_hh, b_ih=None, b_hh=None) -> dict:
    """pyrnn weights of one layer and direction -> haste LSTM/GRU weights.

    Returns {"kernel": [I,G*H], "recurrent_kernel": [H,G*H], "bias": [G*H]} and for GRU also
    "recurrent_bias": [3H]. haste always has biases, so no bias gives zeros. haste's GRU is
    the reset-after variant (PyTorch's).
    """
    G, order = _cell(cell, ("lstm", "gru")), _HASTE_ORDER[cell]
    w_ih, w_hh, b_ih, b_hh, H = _pyrnn_weights(G, w_ih, w_hh, b_ih, b_hh)
    if b_ih is None:
        b_ih, b_hh = np.zeros(G * H, w_hh.dtype), np.zeros(G * H, w_hh.dtype)
    out = {"kernel": _gates(w_ih.T, order, 1), "recurrent_kernel": _gates(w_hh.T, order, 1)}
    if cell == "gru":
        out.update(bias=_gates(b_ih, order, 0), recurrent_bias=_gates(b_hh, order, 0))
    else:
        out["bias"] = _gates(b_ih + b_hh, order, 0)
    return out


def from_haste(cell: str, kernel, recurrent_kernel, bias=None, recurrent_bias=None):
    """haste LSTM/GRU weights -> pyrnn ``(w_ih, w_hh, b_ih, b_hh)``.

    kernel: [I,G*H]; recurrent_kernel: [H,G*H]; bias: [G*H] or None; recurrent_bias (GRU only):
    [3H] or None. The LSTM's single bias comes back as b_ih with b_hh zero.
    """
    G, back = _cell(cell, ("lstm", "gru")), _inverse(_HASTE_ORDER[cell])
    w_ih, w_hh, H = _from_kernels(G, kernel, recurrent_kernel, back)
    if cell == "lstm":
        if recurrent_bias is not None:
            raise ValueError("recurrent_bias: haste's LSTM has a single bias; pass only bias")
        if bias is None:
            return w_ih, w_hh, None, None
        return w_ih, w_hh, *_zero_b_hh(_gates(_array("bias", bias, (4 * H,)), back, 0))
    if bias is None and recurrent_bias is None:
        return w_ih, w_hh, None, None
    if bias is None or recurrent_bias is None:
        raise ValueError("bias, recurrent_bias: haste's GRU has both; pass both or neither")
    return (w_ih, w_hh, _gates(_array("bias", bias, (3 * H,)), back, 0),
            _gates(_array("recurrent_bias", recurrent_bias, (3 * H,)), back, 0))


# --- state_dict helpers -----------------------------------------------------------------------

def _names(layer: int | None, reverse: bool) -> list[str]:
    suffix = "" if layer is None else f"_l{layer}{'_reverse' if reverse else ''}"
    return [f"{kind}{suffix}" for kind in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")]


def layer_weights(state_dict, layer: int | None = 0, reverse: bool = False):
    """``(w_ih, w_hh, b_ih, b_hh)`` of one layer and direction from a pyrnn or torch state_dict.

    layer None reads a cell's names (``weight_ih``...). Biases are None when absent. Torch
    tensors are read through ``.detach().cpu().numpy()``.
    """
    def get(name):
        value = state_dict.get(name)
        if value is not None and hasattr(value, "detach"):
            value = value.detach().cpu().numpy()
        return value

    names = _names(layer, reverse)
    if names[0] not in state_dict:
        raise KeyError(f"state_dict has no {names[0]!r}; its keys are {sorted(state_dict)}")
    return tuple(get(name) for name in names)


def layer_state_dict(weights, layer: int | None = 0, reverse: bool = False) -> dict:
    """The state_dict entries for ``(w_ih, w_hh, b_ih, b_hh)`` of one layer and direction.

    Merge the entries of every layer and direction into one dict and pass it to
    ``load_state_dict`` (pyrnn's, or torch's after ``torch.as_tensor``). layer None: a cell.
    """
    return {name: w for name, w in zip(_names(layer, reverse), weights)
            if w is not None}
