"""Numba glue: kernels with declared signatures, and moving one call's arrays to the device.

Every kernel is declared with the exact argument types it is launched with (1-D C-contiguous
arrays of the data type or int64, int64 scalars, booleans), so ``numba.cuda.compile_ptx`` can
compile precisely what runs (the PTX tests do), a real GPU compiles each kernel once for that
signature, and the simulator, which does no type checking, checks every launch against it.
"""

from __future__ import annotations

import contextlib
import functools
import numbers

import numpy as np

try:
    import numba
    from numba import cuda, types
except ImportError as exc:  # pragma: no cover - depends on the install
    raise ImportError(
        'the CUDA backend needs numba-cuda: pip install "pyrnn[cuda]"') from exc

SIMULATOR = bool(numba.config.ENABLE_CUDASIM)

I64 = types.int64
BOOL = types.boolean
INDEX = types.Array(types.int64, 1, "C")
launched: set[tuple[str, str]] = set()  # simulator only: (kernel, dtype) pairs that ran


def array_type(dtype) -> types.Array:
    """The Numba type of a 1-D C-contiguous array of ``dtype``."""
    return types.Array(numba.from_dtype(np.dtype(dtype)), 1, "C")


def scalar_type(dtype) -> types.Type:
    return numba.from_dtype(np.dtype(dtype))


class Kernel:
    """A ``cuda.jit`` kernel for one declared signature, launched as ``k[grid, block](...)``.

    py_func: the Python function; argtypes: its Numba argument types, in order.
    """

    def __init__(self, py_func, argtypes):
        self.py_func = py_func
        self.argtypes = tuple(argtypes)
        self.name = py_func.__name__

    @functools.cached_property
    def dispatcher(self):
        if SIMULATOR:
            return cuda.jit(self.py_func)
        # an explicit signature: compiled once, and a launch with other types fails loudly
        return cuda.jit(types.void(*self.argtypes))(self.py_func)

    def max_cooperative_blocks(self, threads: int, shared_bytes: int) -> int:
        """How many blocks of this kernel a cooperative (grid-synced) launch can hold."""
        if SIMULATOR:
            return 1  # the simulator syncs a grid only when it is one block
        compiled = self.dispatcher.compile(types.void(*self.argtypes))
        return compiled.max_cooperative_grid_blocks(threads, shared_bytes)

    def __getitem__(self, config):
        def launch(*args):
            if SIMULATOR:
                self._check_types(args)
                launched.add((self.name, str(self.argtypes[0].dtype)))
            self.dispatcher[config](*args)
        return launch

    def _check_types(self, args):
        got = tuple(_numba_type(a) for a in args)
        if got != self.argtypes:
            raise TypeError(f"kernel {self.name} launched with {got}, declared {self.argtypes}")


def _numba_type(value) -> types.Type:
    if isinstance(value, (bool, np.bool_)):
        return BOOL
    if isinstance(value, numbers.Integral):
        return I64
    if isinstance(value, np.floating):
        return scalar_type(value.dtype)
    layout = "C" if value.flags["C_CONTIGUOUS"] else "A"
    return types.Array(numba.from_dtype(value.dtype), value.ndim, layout)


def blocks(n: int, per_block: int) -> int:
    """Blocks of ``per_block`` threads that cover ``n`` items (at least one)."""
    return max(1, -(-n // per_block))


# -- arrays ------------------------------------------------------------------------------------

if SIMULATOR:
    from numba.cuda.simulator.cudadrv.devicearray import FakeCUDAArray as _SimArray
else:
    _SimArray = ()


def is_device_array(a) -> bool:
    return hasattr(a, "__cuda_array_interface__") or isinstance(a, _SimArray)


def _device_ordinal(a) -> int:
    """Which GPU holds device array ``a`` (CuPy and PyTorch say so; else ask the driver)."""
    device = getattr(a, "device", None)
    for attr in ("id", "index"):  # cupy.cuda.Device.id, torch.device.index
        ordinal = getattr(device, attr, None)
        if isinstance(ordinal, numbers.Integral):
            return int(ordinal)
    if SIMULATOR:
        return 0
    try:
        from cuda.bindings import driver

        ptr = a.__cuda_array_interface__["data"][0]
        attr = driver.CUpointer_attribute.CU_POINTER_ATTRIBUTE_DEVICE_ORDINAL
        err, ordinal = driver.cuPointerGetAttribute(attr, ptr)
    except Exception:  # an older binding or an exotic pointer: the launch itself will tell
        return current_device_id()
    return int(ordinal) if err == driver.CUresult.CUDA_SUCCESS else current_device_id()


def current_device_id() -> int:
    return 0 if SIMULATOR else int(cuda.get_current_device().id)


def check_same_device(named: dict) -> None:
    """Raise ValueError unless every device array in ``named`` lives on the current GPU."""
    here = current_device_id()
    where = {name: _device_ordinal(a) for name, a in named.items()
             if a is not None and is_device_array(a)}
    elsewhere = {name: d for name, d in where.items() if d != here}
    if elsewhere:
        listing = ", ".join(f"{name} on GPU {d}" for name, d in where.items())
        raise ValueError(
            f"inputs live on different devices ({listing}) but this call runs on GPU {here}; "
            f"move them to one GPU and select it (numba.cuda.select_device)")


def device_view(a):
    """Device array ``a`` (Numba, CuPy, PyTorch...) as a Numba device array over its memory."""
    return a if isinstance(a, _SimArray) or SIMULATOR else cuda.as_cuda_array(a)


def as_device(name: str, a, dtype, ndim: int | None = None):
    """``a`` as a C-contiguous device array of ``dtype``: device arrays are used in place."""
    if is_device_array(a):
        d = device_view(a)
        if np.dtype(d.dtype) != np.dtype(dtype):
            raise TypeError(f"{name}: expected a device array of {np.dtype(dtype)}, got {d.dtype}")
        if not d.is_c_contiguous():
            raise ValueError(f"{name}: expected a C-contiguous device array, got strides "
                             f"{d.strides}")
    else:
        d = cuda.to_device(np.ascontiguousarray(a, dtype=dtype))
    if ndim is not None and d.ndim != ndim:
        raise ValueError(f"{name}: expected {ndim} dimensions, got shape {tuple(d.shape)}")
    return d


def flat(d):
    """A 1-D view of a C-contiguous device array."""
    return d.reshape(d.size)


def zeros(n: int, dtype):
    return cuda.to_device(np.zeros(n, dtype=dtype))


def empty(n: int, dtype):
    return cuda.device_array(n, dtype=dtype)


def copy_of(d):
    """A new device array with the contents of device array ``d``."""
    out = cuda.device_array(d.shape, dtype=d.dtype)
    out.copy_to_device(d)
    return out


# -- weights -----------------------------------------------------------------------------------

_weight_cache: dict | None = None


@contextlib.contextmanager
def cache_weights():
    """Upload each NumPy weight array once for the calls inside this block.

    Outside it, NumPy weights are copied to the device at every call, which is always correct.
    Inside it, a weight is recognised by identity (the array object itself, kept alive here),
    so the arrays must not change while the block runs: wrap inference, or one
    forward+backward, never an optimiser step. Device-array weights are never copied.
    """
    global _weight_cache
    outer = _weight_cache
    if outer is None:
        _weight_cache = {}
    try:
        yield
    finally:
        if outer is None:
            _weight_cache = None


def weight(name: str, a, dtype, tag: str = "", make=None):
    """The device copy of weight ``a`` (or ``make(device copy)`` for ``tag``), cached if enabled."""
    def build():
        d = as_device(name, a, dtype)
        return make(d) if make is not None else d

    if _weight_cache is None:
        return build()
    key = (id(a), tag, np.dtype(dtype).str)
    hit = _weight_cache.get(key)
    if hit is not None and hit[0] is a:
        return hit[1]
    d = build()
    _weight_cache[key] = (a, d)
    return d
