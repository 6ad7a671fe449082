"""The array operations that compose layers, for host (NumPy) arrays.

``pyrnn.functional`` and ``pyrnn.modules`` compose layers, directions, dropout and layouts only
through these names, so the same code runs on the GPU: ``pyrnn/cuda/ops.py`` provides the same
functions for device arrays (``Backend.ops`` picks the set for the data at hand). Every result is
a new C-contiguous array unless stated otherwise.
"""

from __future__ import annotations

import numpy as np


def concat_last(parts):
    """[..., W0], [..., W1], ... -> [..., W0+W1+...] (a single part is returned as it is)."""
    return parts[0] if len(parts) == 1 else np.concatenate(parts, axis=-1)


def take_last(a, start: int, stop: int):
    """a[..., start:stop] as a contiguous array."""
    return np.ascontiguousarray(a[..., start:stop])


def swap01(a):
    """[N0,N1,...] -> [N1,N0,...]: time-major <-> batch-major."""
    return np.ascontiguousarray(a.swapaxes(0, 1))


def stack(parts):
    """N arrays of one shape S -> [N,*S]; a single part gets a new axis in front, as a view of it
    (np.stack's copy is a measurable part of a batch-1 call, and a one-layer stack has one)."""
    return parts[0][np.newaxis] if len(parts) == 1 else np.stack(parts)


def multiply(a, b):
    """a * b, elementwise, same shapes."""
    return a * b


def add(a, b, alpha: float = 1.0, out=None):
    """a + alpha * b, elementwise, same shapes; into ``out`` when given (may be ``a``)."""
    return np.add(a, b if alpha == 1 else a.dtype.type(alpha) * b, out=out)


def dropout_mask(shape: tuple[int, ...], p: float, rng, dtype):
    """Inverted dropout: 1/(1-p) with probability 1-p, else 0; drawn from ``rng.random(shape)``
    (a NumPy Generator, or anything with that method)."""
    dtype = np.dtype(dtype)
    return (rng.random(shape) >= p).astype(dtype) / dtype.type(1 - p)


def to_host(a):
    """A new host copy of ``a``."""
    return np.array(a, copy=True)


def copy_into(dst, src) -> None:
    """Overwrite ``dst`` with ``src`` (same shape) in place."""
    dst[...] = src
