"""Backend registry and resolution.

A backend is a module with the reference's function table (``<cell>_forward``,
``<cell>_backward``, ``<cell>_workspace_len`` for rnn, lstm and gru), optionally an
``empty(n, dtype)`` that allocates a workspace where the backend wants it, ``info()``, and
``array_ops``: the operations of ``pyrnn/_host_ops.py`` for its device arrays.
The order of choice: the ``backend=`` argument, then ``PYRNN_BACKEND``, then ``"auto"``.
"""

from __future__ import annotations

import importlib
import os
import warnings
from types import ModuleType

import numpy as np

from . import _host_ops
from ._checks import is_device_array
from ._errors import BackendUnavailableError

_MODULES = {"c": "pyrnn._c", "numpy": "pyrnn.ref", "cuda": "pyrnn.cuda"}
_HOW_TO_GET = {
    "c": "reinstall pyrnn where a C compiler is available (`pip install --force-reinstall "
         "--no-binary pyrnn pyrnn`, or `pip install .` from a checkout)",
    "numpy": "install numpy",
    "cuda": 'install the CUDA extra (`pip install "pyrnn[cuda]"`) on a machine with an NVIDIA GPU, '
            "or set NUMBA_ENABLE_CUDASIM=1 to use Numba's simulator",
}
_loaded: dict[str, ModuleType] = {}
_failures: dict[str, str] = {}
_backends: dict[str, Backend] = {}  # name -> its one Backend, made at its first resolve
_warned_numpy_fallback = False
# whether the user chose the C kernels' thread count, which then stands over a framework's
_threads_chosen = "PYRNN_NUM_THREADS" in os.environ
_threads_followed: int | None = None  # the framework's count last passed on


class Backend:
    """One backend's function table, looked up by name: ``be.lstm_forward(...)``.

    Each name is looked up in the module once, then kept on the instance (resolve hands out one
    instance per backend): a batch-1 call looks up several, and each lookup through
    ``__getattr__`` cost about a microsecond."""

    def __init__(self, name: str, module: ModuleType):
        self.name = name
        self.module = module
        self._alloc = getattr(module, "empty", None)

    def __getattr__(self, attr):
        value = getattr(self.module, attr)
        self.__dict__[attr] = value
        return value

    def empty(self, n: int, dtype) -> np.ndarray:
        """A 1-D workspace of ``n`` elements, allocated where the backend computes."""
        return self._alloc(n, dtype) if self._alloc is not None else np.empty(n, dtype=dtype)

    def ops(self, x):
        """The array operations (``pyrnn/_host_ops.py``'s names) for data like ``x``: NumPy for
        host arrays, the backend's ``array_ops`` for device arrays."""
        if x.__class__ is np.ndarray or not is_device_array(x):
            return _host_ops
        device_ops = getattr(self.module, "array_ops", None)
        if device_ops is None:
            raise ValueError(f"x: a device array, but backend {self.name!r} runs host arrays; "
                             f"use backend='cuda' (or 'auto'), or copy x to the host")
        return device_ops

    def __repr__(self):
        return f"Backend({self.name!r})"


def _load(name: str) -> ModuleType | None:
    if name in _loaded:
        return _loaded[name]
    if name in _failures:
        return None
    try:
        module = importlib.import_module(_MODULES[name])
        check = getattr(module, "check_available", None)
        if check is not None:
            check()
    except Exception as exc:  # any import or availability failure means "not here"
        _failures[name] = f"{type(exc).__name__}: {exc}"
        return None
    _loaded[name] = module
    return module


def available_backends() -> list[str]:
    """Names of the backends that can run here, fastest first."""
    return [name for name in ("cuda", "c", "numpy") if _load(name) is not None]


def _backend(name: str) -> Backend:
    """The Backend of a loaded module."""
    be = _backends.get(name)
    if be is None:
        be = _backends[name] = Backend(name, _loaded[name])
    return be


def resolve(name: str | None, arrays=()) -> Backend:
    """The backend for a call: ``name``, else $PYRNN_BACKEND, else auto for these ``arrays``."""
    global _warned_numpy_fallback
    if name is None or name == "auto":
        name = os.environ.get("PYRNN_BACKEND", "auto") or "auto"
    if name != "auto":
        if name in _loaded:
            return _backend(name)
        if name not in _MODULES:
            raise ValueError(f"backend: expected one of 'auto', 'c', 'numpy', 'cuda', got "
                             f"{name!r}")
        if _load(name) is None:
            raise BackendUnavailableError(
                f"backend {name!r} is not available ({_failures.get(name)}); to get it, "
                f"{_HOW_TO_GET[name]}")
        return _backend(name)
    if arrays and any(is_device_array(a) for a in arrays if a is not None) \
            and _load("cuda") is not None:
        return _backend("cuda")
    if _load("c") is not None:
        return _backend("c")
    if not _warned_numpy_fallback:
        warnings.warn(
            f"pyrnn: the C extension is not available ({_failures.get('c')}); running on the "
            f"slow NumPy reference. To fix: {_HOW_TO_GET['c']}.", RuntimeWarning, stacklevel=3)
        _warned_numpy_fallback = True
    _load("numpy")
    return _backend("numpy")


def backend_info() -> dict:
    """What is here: the backend auto picks for host arrays, and each backend's details."""
    names = available_backends()
    info: dict = {
        "auto": "c" if "c" in names else "numpy",
        "available": names,
        "numpy_version": np.__version__,
    }
    for name in names:
        details = getattr(_loaded[name], "info", None)
        if details is not None:
            info[name] = details()
    info["unavailable"] = {name: why for name, why in _failures.items()}
    return info


def set_num_threads(n: int) -> None:
    """Threads the C kernels use, 1 to 256 (also settable with $PYRNN_NUM_THREADS). A count
    chosen so stands over pyrnn.torch's following of torch.set_num_threads."""
    global _threads_chosen
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or not 1 <= n <= 256:
        raise ValueError(f"set_num_threads: expected an int in 1..256, got {n!r}")
    module = _load("c")
    if module is not None:
        module.set_num_threads(int(n))
    _threads_chosen = True


def follow_num_threads(n: int) -> None:
    """The C kernels take ``n`` threads, a calling framework's own count (pyrnn.torch: torch's
    intra-op threads), unless the user chose pyrnn's (set_num_threads, $PYRNN_NUM_THREADS).
    Called at every framework call: only a change of ``n`` reaches the kernels' setting."""
    global _threads_followed
    if _threads_chosen or n == _threads_followed:
        return
    module = _load("c")
    if module is not None:
        module.set_num_threads(min(max(int(n), 1), 256))
    _threads_followed = n
