"""The machine: what it is, how many threads everyone gets, and its ceilings.

Two ceilings put every row's GFLOP/s in context: a GEMM measured here (NumPy's BLAS, and
PyTorch's when it takes part), and an FMA peak estimated from the CPU's vector width and clock.
"""

from __future__ import annotations

import contextlib
import os
import platform
import re

import numpy as np

import pyrnn

from .timing import POLICIES, time_interleaved

GEMM_SIZE = 2048
# Assumed FMA units per core for the peak estimate: two is what current x86 server cores
# (Zen 4/5, Ice Lake and later Xeons) have for their widest vectors.
FMA_UNITS = 2


def usable_cpus() -> int:
    """CPUs this process may run on (its affinity mask where the OS has one)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def _cpuinfo() -> dict:
    try:
        with open("/proc/cpuinfo") as f:
            text = f.read()
    except OSError:
        return {}
    fields = {}
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if sep and key.strip() not in fields:
            fields[key.strip()] = value.strip()
    return fields


def cpu_info() -> dict:
    """Model, CPU count, clock (MHz, as the OS reports it) and vector extensions."""
    fields = _cpuinfo()
    flags = set(fields.get("flags", "").split())
    mhz = fields.get("cpu MHz")
    return {
        "model": fields.get("model name") or platform.processor() or platform.machine(),
        "machine": platform.machine(),
        "logical_cpus": os.cpu_count(),
        "usable_cpus": usable_cpus(),
        "mhz": float(mhz) if mhz and re.fullmatch(r"[0-9.]+", mhz) else None,
        "vector_extensions": sorted(f for f in flags if f in ("avx512f", "avx2", "fma", "avx")),
        "load_average_1min": os.getloadavg()[0] if hasattr(os, "getloadavg") else None,
    }


def fma_peak_estimate(cpu: dict, threads: int, dtype) -> dict:
    """threads x GHz x FMA units x vector lanes x 2, or gflops None where the clock is unknown."""
    ext = set(cpu["vector_extensions"])
    bits = 512 if "avx512f" in ext else 256 if "avx" in ext else 128
    lanes = bits // (8 * np.dtype(dtype).itemsize)
    cores = min(threads, cpu["usable_cpus"])
    flop_per_cycle = FMA_UNITS * lanes * 2
    if cpu["mhz"] is None:
        return {"gflops": None, "formula": "unknown clock"}
    ghz = cpu["mhz"] / 1000
    return {"gflops": cores * ghz * flop_per_cycle,
            "formula": f"{cores} core{'s' if cores > 1 else ''} x {ghz:.2f} GHz x "
                       f"{flop_per_cycle} flop/cycle "
                       f"({FMA_UNITS} FMA units x {lanes} {np.dtype(dtype).name} lanes x 2)"}


def gemm_probe(dtype, size: int, with_torch: bool, mode: str) -> dict:
    """GFLOP/s of a size^3 matrix product in NumPy (and PyTorch), timed interleaved."""
    rng = np.random.default_rng(0)
    a, b = (rng.uniform(-1, 1, (size, size)).astype(dtype) for _ in range(2))
    c = np.empty_like(a)
    runners = {"numpy": lambda k: np.matmul(a, b, out=c)}
    if with_torch:
        import torch

        ta, tb, tc = (torch.from_numpy(m) for m in (a, b, c))
        runners["torch"] = lambda k: torch.matmul(ta, tb, out=tc)
    for run in runners.values():
        run(0)  # warm-up: thread pools start, pages fault in
    flops = 2.0 * size ** 3
    stats = time_interleaved(list(runners.values()), POLICIES[mode])
    return {name: {"what": f"{name} matmul {size}^3 {np.dtype(dtype).name}",
                   "gflops": flops / s.median / 1e9, "time_s": s.as_dict()}
            for name, s in zip(runners, stats)}


@contextlib.contextmanager
def thread_limits(threads: int, with_torch: bool):
    """Run the block with ``threads`` threads in pyrnn's C kernels, PyTorch and NumPy's BLAS.

    Yields a dict saying what could be limited; NumPy's BLAS needs threadpoolctl for that.
    """
    previous_pyrnn = pyrnn.backend_info().get("c", {}).get("threads")
    pyrnn.set_num_threads(threads)
    limited = {"pyrnn": threads}
    if with_torch:
        import torch

        previous_torch = torch.get_num_threads()
        torch.set_num_threads(threads)
        limited["torch"] = threads
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        limiter = contextlib.nullcontext()
        limited["numpy_blas"] = "not limited (threadpoolctl is not installed)"
    else:
        limiter = threadpool_limits(limits=threads)
        limited["numpy_blas"] = threads
    try:
        with limiter:
            yield limited
    finally:  # leave the process as it was (main() may run inside a larger program)
        if previous_pyrnn is not None:
            pyrnn.set_num_threads(previous_pyrnn)
        if with_torch:
            torch.set_num_threads(previous_torch)
