"""The array operations that compose layers, for device arrays: ``pyrnn/_host_ops.py`` on the GPU.

Same names, arguments and results as the host set (plus ``to_device``), so ``pyrnn.functional``
and ``pyrnn.modules`` run unchanged on device data (``Backend.ops`` picks this set for device
arrays). Inputs are any
C-contiguous device arrays (Numba, CuPy, PyTorch...); results are new Numba device arrays, and
nothing is copied to the host except by ``to_host``. Four small kernels, one thread per element:
a strided column copy (concatenation, slicing and stacking), the time/batch transpose, an
elementwise product (dropout masks) and ``a + alpha*b`` (sums of gradients; an SGD step).
"""

from __future__ import annotations

import functools
import math

import numpy as np

from .. import _host_ops
from . import _runtime as rt
from ._runtime import I64, Kernel, array_type, cuda, scalar_type
from .cells import launch_1d


@functools.cache
def kernels(dtype) -> dict[str, Kernel]:
    F = array_type(dtype)

    def copy_columns(src, src_ld, src_col, dst, dst_ld, dst_col, rows, width):
        """dst[r, dst_col + c] = src[r, src_col + c] for r < rows, c < width; row-major matrices
        with leading dimensions src_ld and dst_ld."""
        idx = cuda.grid(1)
        if idx < rows * width:
            r = idx // width
            c = idx - r * width
            dst[r * dst_ld + dst_col + c] = src[r * src_ld + src_col + c]

    def swap01(src, n0, n1, inner, dst):
        """dst [n1,n0,inner] = src [n0,n1,inner] with its first two axes swapped."""
        idx = cuda.grid(1)
        if idx < n0 * n1 * inner:
            row = idx // inner
            k = idx - row * inner
            i = row // n1
            j = row - i * n1
            dst[(j * n0 + i) * inner + k] = src[idx]

    def multiply(a, b, out, n):
        idx = cuda.grid(1)
        if idx < n:
            out[idx] = a[idx] * b[idx]

    def add_scaled(a, b, alpha, out, n):
        """out = a + alpha * b (out may be a)."""
        idx = cuda.grid(1)
        if idx < n:
            out[idx] = a[idx] + alpha * b[idx]

    return {
        "copy_columns": Kernel(copy_columns, (F, I64, I64, F, I64, I64, I64, I64)),
        "swap01": Kernel(swap01, (F, I64, I64, I64, F)),
        "multiply": Kernel(multiply, (F, F, F, I64)),
        "add_scaled": Kernel(add_scaled, (F, F, scalar_type(dtype), F, I64)),
    }


def _device(name: str, a):
    """Device array ``a`` as a C-contiguous Numba device array over the same memory."""
    d = rt.device_view(a)
    if not d.is_c_contiguous():
        raise ValueError(f"{name}: expected a C-contiguous device array, got strides "
                         f"{d.strides}")
    return d


def _copy_columns(src, src_ld: int, src_col: int, dst, dst_ld: int, dst_col: int, rows: int,
                  width: int) -> None:
    launch_1d(kernels(dst.dtype)["copy_columns"], rows * width, src, src_ld, src_col, dst,
              dst_ld, dst_col, rows, width)


def concat_last(parts):
    """[..., W0], [..., W1], ... -> [..., W0+W1+...] (a single part is returned as it is)."""
    if len(parts) == 1:
        return parts[0]
    ds = [_device(f"parts[{k}]", p) for k, p in enumerate(parts)]
    lead = tuple(ds[0].shape)[:-1]
    rows, total = math.prod(lead), sum(tuple(d.shape)[-1] for d in ds)
    out = rt.empty(rows * total, ds[0].dtype)
    col = 0
    for d in ds:
        width = tuple(d.shape)[-1]
        _copy_columns(rt.flat(d), width, 0, out, total, col, rows, width)
        col += width
    return out.reshape(*lead, total)


def take_last(a, start: int, stop: int):
    """a[..., start:stop] as a contiguous array."""
    d = _device("a", a)
    *lead, total = tuple(d.shape)
    width = stop - start
    rows = math.prod(lead)
    out = rt.empty(rows * width, d.dtype)
    _copy_columns(rt.flat(d), total, start, out, width, 0, rows, width)
    return out.reshape(*lead, width)


def swap01(a):
    """[N0,N1,...] -> [N1,N0,...]: time-major <-> batch-major."""
    d = _device("a", a)
    n0, n1, *rest = tuple(d.shape)
    out = rt.empty(d.size, d.dtype)
    launch_1d(kernels(d.dtype)["swap01"], d.size, rt.flat(d), n0, n1, math.prod(rest), out)
    return out.reshape(n1, n0, *rest)


def stack(parts):
    """N arrays of one shape S -> [N,*S]."""
    ds = [_device(f"parts[{k}]", p) for k, p in enumerate(parts)]
    size = ds[0].size
    out = rt.empty(len(ds) * size, ds[0].dtype)
    for k, d in enumerate(ds):
        _copy_columns(rt.flat(d), size, 0, out, len(ds) * size, k * size, 1, size)
    return out.reshape(len(ds), *ds[0].shape)


def multiply(a, b):
    """a * b, elementwise, same shapes."""
    da, db = _device("a", a), _device("b", b)
    out = rt.empty(da.size, da.dtype)
    launch_1d(kernels(da.dtype)["multiply"], da.size, rt.flat(da), rt.flat(db), out, da.size)
    return out.reshape(da.shape)


def add(a, b, alpha: float = 1.0, out=None):
    """a + alpha * b, elementwise, same shapes; into ``out`` when given (may be ``a``).

    With ``out=p`` this is an SGD step on a parameter in place: ``add(p, grad, -lr, out=p)``.
    """
    da, db = _device("a", a), _device("b", b)
    if tuple(db.shape) != tuple(da.shape):
        raise ValueError(f"b: expected shape {list(da.shape)} like a, got {list(db.shape)}")
    dout = rt.empty(da.size, da.dtype).reshape(da.shape) if out is None else _device("out", out)
    launch_1d(kernels(da.dtype)["add_scaled"], da.size, rt.flat(da), rt.flat(db),
              da.dtype.type(alpha), rt.flat(dout), da.size)
    return dout if out is None else out


def dropout_mask(shape: tuple[int, ...], p: float, rng, dtype):
    """The host set's mask, drawn from the same ``rng`` (so a seed gives the same mask on either
    side) and uploaded: one host-to-device copy per layer, never a copy to the host."""
    return cuda.to_device(_host_ops.dropout_mask(shape, p, rng, dtype))


def to_device(a, dtype):
    """A new device copy of host array ``a`` as C-contiguous ``dtype``."""
    return cuda.to_device(np.ascontiguousarray(a, dtype=dtype))


def to_host(a):
    """A new host (NumPy) copy of device array ``a``."""
    return _device("a", a).copy_to_host()


def copy_into(dst, src) -> None:
    """Overwrite device array ``dst`` with ``src`` (host or device, same shape) in place."""
    d = _device("dst", dst)
    s = _device("src", src) if rt.is_device_array(src) else \
        np.ascontiguousarray(src, dtype=d.dtype)
    if tuple(s.shape) != tuple(d.shape):
        raise ValueError(f"src: expected shape {list(d.shape)} like dst, got {list(s.shape)}")
    d.copy_to_device(s)
