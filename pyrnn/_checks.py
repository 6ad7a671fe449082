"""Validation of user input, before anything reaches a kernel.

Every message names the argument, what was expected in [T,B,I] terms and what came. Host data
is converted (to a C-contiguous array of the module's dtype); device arrays are checked through
their ``__cuda_array_interface__`` (shape, dtype, strides) and used in place, never copied.
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


def is_device_array(a) -> bool:
    """Whether ``a`` lives on a GPU: it has ``__cuda_array_interface__`` (Numba, CuPy, PyTorch)
    or is one of the arrays Numba's CUDA simulator stands in for them with. A NumPy array is
    answered first: the two failed attribute lookups cost it about a microsecond, and a call
    checks several arrays several times."""
    if a.__class__ is np.ndarray:
        return False
    return hasattr(a, "__cuda_array_interface__") or getattr(type(a), "__cuda_ndarray__", False)


def device_layout(a) -> tuple[tuple[int, ...], np.dtype, bool]:
    """Shape, dtype and C-contiguity of device array ``a``, read without touching its data."""
    cai = getattr(a, "__cuda_array_interface__", None)
    if cai is None:  # a simulator array: a NumPy array underneath
        return tuple(a.shape), np.dtype(a.dtype), bool(a.is_c_contiguous())
    shape, dtype = tuple(cai["shape"]), np.dtype(cai["typestr"])
    strides = cai.get("strides")
    if strides is None:
        return shape, dtype, True
    expected = dtype.itemsize
    for n, stride in zip(reversed(shape), reversed(strides)):
        if n > 1 and stride != expected:
            return shape, dtype, False
        expected *= n
    return shape, dtype, True


def _side(on_device: bool) -> str:
    return "a device array" if on_device else "a host array"


def as_operand(name: str, value, dtype: np.dtype, on_device: bool):
    """``value`` ready for a kernel, on the side the module's data lives on.

    on_device False: a C-contiguous NumPy array of ``dtype`` (see as_float_array). True: a
    C-contiguous device array of exactly ``dtype``, returned as it is (nothing is copied).
    A value on the other side raises: pyrnn never moves data behind the caller's back.
    """
    if is_device_array(value) != on_device:
        fix = ("call the module's .to('cpu') or pass device arrays (numba.cuda.to_device, CuPy, "
               "PyTorch CUDA tensors)" if on_device else
               "call the module's .to('cuda') first, or pass host arrays")
        raise ValueError(f"{name}: expected {_side(on_device)} like the module's parameters "
                         f"(on {'cuda' if on_device else 'cpu'}), got {_side(not on_device)}; "
                         f"{fix}")
    if not on_device:
        return as_float_array(name, value, dtype)
    shape, got, contiguous = device_layout(value)
    if got != dtype:
        raise TypeError(f"{name}: expected a device array of {dtype} (the module's dtype), got "
                        f"{got}; device arrays are never converted, convert it on the device")
    if not contiguous:
        raise ValueError(f"{name}: expected a C-contiguous device array, got a strided view of "
                         f"shape {_shape(shape)}; make it contiguous on the device first")
    return value


def shape_of(a) -> tuple[int, ...]:
    if a.__class__ is np.ndarray:
        return a.shape
    return device_layout(a)[0] if is_device_array(a) else tuple(np.shape(a))


def dtype_of(a) -> np.dtype:
    """The NumPy dtype of a host or device array (PyTorch's dtypes are not NumPy's)."""
    if a.__class__ is np.ndarray:
        return a.dtype
    return device_layout(a)[1] if is_device_array(a) else np.dtype(a.dtype)


def as_float_array(name: str, value, dtype: np.dtype) -> np.ndarray:
    """``value`` as a C-contiguous array of ``dtype``; floats of the other precision convert."""
    if value.__class__ is np.ndarray:
        pass  # neither a tensor nor a device array: no attribute lookups
    elif hasattr(value, "detach") and hasattr(value, "numpy"):  # a torch tensor: to the host
        value = value.detach().cpu().numpy()
    elif is_device_array(value):
        raise TypeError(f"{name}: expected a host array, got a device array "
                        f"({type(value).__name__}); copy it to the host first")
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


def check_input(x, input_size: int, batch_first: bool, dtype: np.dtype, name: str = "x",
                on_device: bool = False) -> tuple:
    """x as a 3-D array in the caller's layout ([T,B,I], or [B,T,I] with batch_first) and
    whether it came unbatched ([T,I], returned as [T,1,I]); see as_operand for on_device."""
    arr = as_operand(name, x, dtype, on_device)
    shape = shape_of(arr)
    layout = "[B,T,I] (batch_first=True)" if batch_first else "[T,B,I] (batch_first=False)"
    if len(shape) not in (2, 3):
        raise ValueError(f"{name}: expected {layout} or unbatched [T,I] with I={input_size}, "
                         f"got shape {_shape(shape)}")
    if shape[-1] != input_size:
        raise ValueError(f"{name}: expected {layout} with I={input_size} (the module's "
                         f"input_size), got shape {_shape(shape)} whose last axis is "
                         f"{shape[-1]}")
    if 0 in shape:
        raise ValueError(f"{name}: expected {layout} with T >= 1 and B >= 1, got shape "
                         f"{_shape(shape)}")
    if len(shape) == 2:
        return arr.reshape(shape[0], 1, shape[1]), True
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


def check_state(name: str, value, shape: tuple[int, ...], dtype: np.dtype, what: str,
                on_device: bool = False):
    """A state such as h0 as a C-contiguous array of exactly ``shape``, or None (on_device: see
    as_operand)."""
    if value is None:
        return None
    arr = as_operand(name, value, dtype, on_device)
    if shape_of(arr) != shape:
        raise ValueError(f"{name}: expected {what} = {_shape(shape)}, got shape "
                         f"{_shape(shape_of(arr))}")
    return arr


def check_grad(name: str, value, shape: tuple[int, ...], dtype: np.dtype, what: str,
               on_device: bool = False):
    if value is None:
        raise ValueError(f"{name}: expected an array of {what} = {_shape(shape)}, got None")
    return check_state(name, value, shape, dtype, what, on_device)
