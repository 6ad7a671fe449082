"""Device functions: activations and their derivatives from the output, as in ``ref/common.py``.

Built once per data type, so that constants have the data type (a bare ``1`` would turn float32
arithmetic into float64 on the GPU).
"""

from __future__ import annotations

import functools
import math
from types import SimpleNamespace

import numpy as np

from ._runtime import cuda


@functools.cache
def device_functions(dtype) -> SimpleNamespace:
    """sigmoid, tanh, relu, dsigmoid_from_output, dtanh_from_output, drelu_from_output."""
    one = np.dtype(dtype).type(1)
    zero = np.dtype(dtype).type(0)

    @cuda.jit(device=True)
    def sigmoid(x):
        # exp of a non-positive number never overflows
        e = math.exp(-abs(x))
        if x >= zero:
            return one / (one + e)
        return e / (one + e)

    @cuda.jit(device=True)
    def tanh(x):
        return math.tanh(x)

    @cuda.jit(device=True)
    def relu(x):
        return zero if x < zero else x  # NaN passes through, as np.maximum(x, 0)

    @cuda.jit(device=True)
    def dsigmoid_from_output(y):
        return y * (one - y)

    @cuda.jit(device=True)
    def dtanh_from_output(y):
        return one - y * y

    @cuda.jit(device=True)
    def drelu_from_output(y):
        return one if y > zero else zero

    return SimpleNamespace(
        one=one, zero=zero, sigmoid=sigmoid, tanh=tanh, relu=relu,
        dsigmoid_from_output=dsigmoid_from_output, dtanh_from_output=dtanh_from_output,
        drelu_from_output=drelu_from_output)
