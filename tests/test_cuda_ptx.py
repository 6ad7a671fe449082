"""Every CUDA kernel compiled to PTX for compute capabilities 8.0 and 9.0, float32 and float64.

The simulator does no type checking, so this is what shows the kernels compile for real GPUs.
Each kernel is compiled for exactly the signature it is launched with (the simulator tests check
every launch against it). No GPU is needed: numba-cuda compiles device functions for the
current device's compute capability, so these tests state the target one instead.
"""

from __future__ import annotations

import re
import types

import numpy as np
import pytest

from pyrnn.cuda import _runtime, cells, common, gemm, ops, persistent

MODULES = (gemm, cells, persistent, ops)
NAMES = [name for mod in MODULES for name in mod.kernels(np.dtype(np.float32))]
_built: dict = {}


def _fresh_kernels(dtype) -> dict:
    """New kernel and device-function objects, so nothing compiled for another target is reused."""
    common.device_functions.cache_clear()
    cells.point_functions.cache_clear()
    for mod in MODULES:
        mod.kernels.cache_clear()
    return {name: k for mod in MODULES for name, k in mod.kernels(np.dtype(dtype)).items()}


@pytest.fixture(scope="module", autouse=True)
def _forget_kernels_afterwards():
    yield
    _fresh_kernels(np.float32)
    _built.clear()


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("cc", [(8, 0), (9, 0)], ids=["ptx-sm80", "ptx-sm90"])
def test_kernel_compiles_to_ptx(cc, dtype, name, monkeypatch):
    assert not _runtime.SIMULATOR, "PTX tests need NUMBA_ENABLE_CUDASIM unset"
    import numba.cuda.dispatcher
    from numba import cuda

    monkeypatch.setattr(numba.cuda.dispatcher, "get_current_device",
                        lambda: types.SimpleNamespace(compute_capability=cc))
    if (cc, dtype) not in _built:
        _built[(cc, dtype)] = _fresh_kernels(dtype)
    kernel = _built[(cc, dtype)][name]
    ptx, _ = cuda.compile_ptx(kernel.py_func, kernel.argtypes, cc=cc)
    assert f".target sm_{cc[0]}{cc[1]}" in ptx
    entries = [line for line in ptx.splitlines() if line.startswith(".visible .entry")]
    assert len(entries) == 1 and f"{len(name)}{name}" in entries[0]
    if dtype == np.float32:
        # a stray float64 constant would turn float32 arithmetic into float64
        f64 = [line for line in ptx.splitlines()
               if re.search(r"\.f64\b", line) and not line.strip().startswith(".reg")]
        assert not f64, f64[:5]
