"""Validation of user input, before anything reaches a kernel.

Every message names the argument, what was expected in [T,B,I] terms and what came.
"""

from __future__ import annotations

import math
import numbers

import numpy as np

FLOAT_DTYPES = (np.float32, np.float64)


def check_dtype(dtype) -> np.dtype:
    try:
        dt = np.dtype(dtype)
    except TypeError as exc:
        raise TypeError(f"dtype: expected np.float32 or np.float64, got {dtype!r}") from exc
    if dt not in FLOAT_DTYPES:
        raise TypeError(f"dtype: expected np.float32 or np.float64, got {dt}")
    return dt


def check_size(name: str, value, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name}: expected an int >= {minimum}, got "
                        f"{type(value).__name__} {value!r}")
    if value < minimum:
        raise ValueError(f"{name}: expected an int >= {minimum}, got {value}")
    return int(value)


def check_bool(name: str, value) -> bool:
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name}: expected True or False, got {type(value).__name__} {value!r}")
    return bool(value)


def check_probability(name: str, value) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name}: expected a float in [0, 1), got {type(value).__name__} {value!r}")
    if not math.isfinite(value) or not 0 <= value < 1:
        raise ValueError(f"{name}: expected a float in [0, 1), got {value!r}")
    return float(value)


def as_float_array(name: str, value, dtype: np.dtype) -> np.ndarray:
    """``value`` as a C-contiguous array of ``dtype``; floats of the other precision convert."""
    if hasattr(value, "detach") and hasattr(value, "numpy"):  # a torch tensor, on the CPU
        value = value.detach().cpu().numpy()
    try:
        arr = np.asarray(value)
    except ValueError as exc:  # ragged nested sequences
        raise TypeError(f"{name}: expected a rectangular array of floats, got a ragged "
                        f"{type(value).__name__}") from exc
    if arr.dtype.kind != "f":
        raise TypeError(f"{name}: expected floating-point data (float32 or float64), got dtype "
                        f"{arr.dtype}")
    return np.ascontiguousarray(arr, dtype=dtype)


def _shape(shape) -> str:
    return "[" + ",".join(str(s) for s in shape) + "]"


def check_input(x, input_size: int, batch_first: bool, dtype: np.dtype,
                name: str = "x") -> tuple[np.ndarray, bool]:
    """x as time-major [T,B,I] and whether it came unbatched ([T,I])."""
    arr = as_float_array(name, x, dtype)
    layout = "[B,T,I] (batch_first=True)" if batch_first else "[T,B,I] (batch_first=False)"
    if arr.ndim not in (2, 3):
        raise ValueError(f"{name}: expected {layout} or unbatched [T,I] with I={input_size}, "
                         f"got shape {_shape(arr.shape)}")
    if arr.shape[-1] != input_size:
        raise ValueError(f"{name}: expected {layout} with I={input_size} (the module's "
                         f"input_size), got shape {_shape(arr.shape)} whose last axis is "
                         f"{arr.shape[-1]}")
    if 0 in arr.shape:
        raise ValueError(f"{name}: expected {layout} with T >= 1 and B >= 1, got shape "
                         f"{_shape(arr.shape)}")
    if arr.ndim == 2:
        return np.ascontiguousarray(arr[:, None, :]), True
    if batch_first:
        arr = np.ascontiguousarray(arr.transpose(1, 0, 2))
    return arr, False


def check_lengths(lengths, T: int, B: int, batch_first: bool) -> np.ndarray | None:
    """lengths as int64 [B] with every value in 1..T, or None."""
    if lengths is None:
        return None
    arr = np.asarray(lengths)
    if arr.dtype.kind not in "iu":
        raise TypeError(f"lengths: expected integers, got dtype {arr.dtype}")
    if arr.shape != (B,):
        hint = ""
        if arr.shape == (T,) and T != B:
            hint = (" (did you mean batch_first=True?)" if not batch_first
                    else " (did you mean batch_first=False?)")
        raise ValueError(f"lengths: expected [B] = [{B}], one length per sequence, got shape "
                         f"{_shape(arr.shape)}{hint}")
    if arr.min() < 1 or arr.max() > T:
        bad = arr[(arr < 1) | (arr > T)]
        raise ValueError(f"lengths: expected every length in 1..T = 1..{T}, got {bad.tolist()}")
    return np.ascontiguousarray(arr, dtype=np.int64)


def check_state(name: str, value, shape: tuple[int, ...], dtype: np.dtype,
                what: str) -> np.ndarray | None:
    """A state such as h0 as a C-contiguous array of exactly ``shape``, or None."""
    if value is None:
        return None
    arr = as_float_array(name, value, dtype)
    if arr.shape != shape:
        raise ValueError(f"{name}: expected {what} = {_shape(shape)}, got shape "
                         f"{_shape(arr.shape)}")
    return arr


def check_grad(name: str, value, shape: tuple[int, ...], dtype: np.dtype, what: str) -> np.ndarray:
    if value is None:
        raise ValueError(f"{name}: expected an array of {what} = {_shape(shape)}, got None")
    return check_state(name, value, shape, dtype, what)
