"""The C kernels against PyTorch's CPU layers and the NumPy reference, on PERFORMANCE.md's grid.

One layer-direction per call, the same weights everywhere, 2 threads for everyone (PyTorch's
intra-op threads, pyrnn's kernels, NumPy's BLAS through the environment). "fwd" is an inference
forward, "fwdbwd" a training forward then the backward that gives dx and every weight gradient.
pyrnn is timed through its backend function table (pyrnn._c / pyrnn.ref, what the layers call),
PyTorch through nn.RNN/LSTM/GRU. Also: lengths with a spread against the padded run, float64.

    python -m pytest benchmarks/test_kernels.py --benchmark-only --benchmark-json=kernels.json
    python benchmarks/test_kernels.py kernels.json [run2.json ...] > table.md   # RESULTS.md's
    python benchmarks/test_kernels.py --interleaved   # C and PyTorch in alternating blocks

Timing targets live in RESULTS.md, never in assertions; each benchmark only checks first that
its pyrnn result matches the reference (float32 1e-4, float64 1e-10 relative).
"""

from __future__ import annotations

import functools
import json
import os
import sys
import time

import numpy as np
import pytest

import pyrnn
from pyrnn import ref
from pyrnn.bench.contenders import Call, TorchContender, reference_layer, torch_version
from pyrnn.bench.plan import flops

from _timing import alternating_medians

_c = pytest.importorskip("pyrnn._c", reason="the C extension is not built")

THREADS = 2
GRID = [(100, 1, 32, 64), (200, 16, 64, 128), (100, 32, 128, 256), (50, 64, 512, 1024)]
CELLS = {"rnn": {"relu": False}, "lstm": {}, "gru": {"reset_after": True}}
LENGTHS_SHAPE = (100, 32, 128, 256)
SECONDS_PER_BENCHMARK = 2.0
SETTLE_SECONDS = 0.5


def shape_id(shape) -> str:
    return "T{}-B{}-I{}-H{}".format(*shape)


@functools.lru_cache(maxsize=None)
def problem(cell: str, shape, dtype_name: str):
    """The reference layer (weights), x [T,B,I], dy [T,B,H] and spread lengths [B]."""
    T, B, I, H = shape
    dtype = np.dtype(dtype_name)
    layer = reference_layer(cell, I, H, dtype, seed=0)
    rng = np.random.default_rng(1)
    x = rng.uniform(-1, 1, (T, B, I)).astype(dtype)
    dy = rng.uniform(-1, 1, (T, B, H)).astype(dtype)
    lengths = rng.integers(1, T + 1, B).astype(np.int64)
    lengths[0] = T
    return layer, x, dy, lengths


def kernel_runner(backend, cell: str, shape, dtype_name: str, train: bool, with_lengths: bool):
    """A function running one layer-direction on a pyrnn backend module, and one returning
    its outputs (for the check)."""
    layer, x, dy, lengths = problem(cell, shape, dtype_name)
    T, B, I, H = shape
    sd = layer.state_dict()
    weights = [sd[f"{n}_l0"] for n in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")]
    flags = CELLS[cell]
    lens = lengths if with_lengths else None
    n_states = 2 if cell == "lstm" else 1
    wl = getattr(backend, f"{cell}_workspace_len")
    ws = np.empty(wl(T, B, I, H, train, *([flags["reset_after"]] if cell == "gru" else [])),
                  x.dtype)
    fwd, bwd = getattr(backend, f"{cell}_forward"), getattr(backend, f"{cell}_backward")

    def run():
        out = fwd(x, *[None] * n_states, *weights, lens, ws, training=train, **flags)
        if train:
            out += bwd(x, *[None] * n_states, *weights, lens, dy, *[None] * n_states, ws,
                       **flags)
        return out

    return run


def torch_runner(cell: str, shape, dtype_name: str, train: bool, with_lengths: bool):
    """PyTorch's layer with the same weights (packed sequences for lengths)."""
    import torch

    torch.set_num_threads(THREADS)
    layer, x, dy, lengths = problem(cell, shape, dtype_name)
    run, _ = TorchContender(layer).prepare(
        [Call(x, lengths if with_lengths else None, dy if train else None)], train)
    return lambda: run(0)


def check(run, cell, shape, dtype_name, train, with_lengths):
    want = kernel_runner(ref, cell, shape, dtype_name, train, with_lengths)()
    tol = 1e-4 if dtype_name == "float32" else 1e-10
    for a, b in zip(run(), want):
        if b is not None:
            err = np.linalg.norm(a - b) / max(np.linalg.norm(b), 1e-30)
            assert err <= tol, err


def bench(benchmark, run, group, **info):
    """Time ``run`` with pytest-benchmark for about SECONDS_PER_BENCHMARK; medians go into the
    table of RESULTS.md.

    It first waits SETTLE_SECONDS: the previous contender's idle threads keep spinning on the
    cores for a while after its last call (OpenBLAS's, behind the NumPy reference, for about
    0.1 s), and would slow whichever contender comes next."""
    time.sleep(SETTLE_SECONDS)
    start = time.perf_counter()
    run()
    once = time.perf_counter() - start
    rounds = int(max(3, min(200, SECONDS_PER_BENCHMARK / max(once, 1e-6))))
    benchmark.group = group
    benchmark.extra_info.update(info)
    benchmark.pedantic(run, rounds=rounds, iterations=1, warmup_rounds=1)


def bench_case(benchmark, kind, impl, cell, shape, dtype_name, train):
    """One benchmark of the table ``kind`` ("grid", "lengths", "float64"); an impl ending in
    "-lengths" runs the spread lengths of ``problem``."""
    run = make_run(impl.split("-")[0], cell, shape, dtype_name, train, impl.endswith("lengths"))
    T, B, I, H = shape
    prefix = "" if kind == "grid" else f"{kind} "
    bench(benchmark, run, f"{prefix}{cell} {shape_id(shape)} {'fwdbwd' if train else 'fwd'}",
          kind=kind, impl=impl, cell=cell, shape=list(shape), dtype=dtype_name, train=train,
          flops=flops(cell, T * B, I, H, train))


@pytest.fixture(autouse=True, scope="module")
def two_threads():
    before = _c.info()["threads"]
    pyrnn.set_num_threads(THREADS)
    yield
    pyrnn.set_num_threads(before)


IMPLS = ["c", "torch", "numpy"]


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("train", [False, True], ids=["fwd", "fwdbwd"])
@pytest.mark.parametrize("shape", GRID, ids=shape_id)
@pytest.mark.parametrize("cell", list(CELLS))
def test_grid(benchmark, cell, shape, train, impl):
    bench_case(benchmark, "grid", impl, cell, shape, "float32", train)


@pytest.mark.parametrize("impl", ["c", "c-lengths", "torch", "torch-lengths"])
@pytest.mark.parametrize("train", [False, True], ids=["fwd", "fwdbwd"])
@pytest.mark.parametrize("cell", list(CELLS))
def test_lengths_against_padded(benchmark, cell, train, impl):
    bench_case(benchmark, "lengths", impl, cell, LENGTHS_SHAPE, "float32", train)


@pytest.mark.parametrize("impl", ["c", "torch"])
@pytest.mark.parametrize("train", [False, True], ids=["fwd", "fwdbwd"])
@pytest.mark.parametrize("shape", GRID, ids=shape_id)
@pytest.mark.parametrize("cell", list(CELLS))
def test_float64(benchmark, cell, shape, train, impl):
    bench_case(benchmark, "float64", impl, cell, shape, "float64", train)


def make_run(impl, cell, shape, dtype_name, train, with_lengths):
    if impl == "torch":
        if torch_version() is None:
            pytest.skip("PyTorch is not installed")
        return torch_runner(cell, shape, dtype_name, train, with_lengths)
    run = kernel_runner(_c if impl == "c" else ref, cell, shape, dtype_name, train, with_lengths)
    if impl == "c":
        check(run, cell, shape, dtype_name, train, with_lengths)
    return run


# ---- the table of RESULTS.md from a --benchmark-json file ----

def fma_peak(dtype_name: str) -> float:
    """The FMA peak of THREADS cores in GFLOP/s: ../shared/PERFORMANCE.md's ~530 for float32 on
    this project's machine (2 AVX-512 cores; benchmarks/kernel_parts.c `peak 2` measures 491-533),
    half that for float64; PYRNN_PEAK_GFLOPS gives another machine's float32 figure."""
    float32 = float(os.environ.get("PYRNN_PEAK_GFLOPS", "530"))
    return float32 if dtype_name == "float32" else float32 / 2


def ratio(m: dict, slow: str, fast: str) -> str:
    return f"{m[slow][0] / m[fast][0]:.2f}x" if slow in m and fast in m else ""


TABLES = [  # kind, title, implementations timed, ratio columns (name, slower, faster)
    ("grid", "float32, PERFORMANCE.md's grid", ["c", "torch", "numpy"],
     [("C vs torch", "torch", "c"), ("C vs numpy", "numpy", "c")]),
    ("lengths", "float32, lengths spread over 1..T against the padded run",
     ["c", "c-lengths", "torch", "torch-lengths"],
     [("padded / lengths (C)", "c", "c-lengths"), ("C lengths vs torch lengths",
                                                   "torch-lengths", "c-lengths")]),
    ("float64", "float64", ["c", "torch"], [("C vs torch", "torch", "c")]),
]


def medians(path: str) -> dict:
    """(kind, cell, shape, dtype, train) -> impl -> (median seconds, FLOPs) of one JSON file."""
    med = {}
    for r in json.load(open(path))["benchmarks"]:
        e = r["extra_info"]
        key = (e["kind"], e["cell"], tuple(e["shape"]), e["dtype"], e["train"])
        med.setdefault(key, {})[e["impl"]] = (r["stats"]["median"], e["flops"])
    return med


def table(*paths: str) -> str:
    """Markdown tables of the medians in pytest-benchmark JSON files of this suite; with several
    files (runs), each cell gives every run's value, "a / b" (this machine is noisy)."""
    runs = [medians(p) for p in paths]

    def joined(ms, fmt) -> str:  # empty when no run has the value
        parts = [fmt(m) for m in ms]
        return " / ".join(parts) if any(parts) else ""

    lines = []
    for kind, title, impls, ratios in TABLES:
        lines += [f"### {title}", "",
                  "| cell | T | B | I | H | pass | " + " | ".join(f"{i} ms" for i in impls)
                  + " | C GFLOP/s | C % of FMA peak | " + " | ".join(r[0] for r in ratios)
                  + " |", "|" + "---|" * (6 + len(impls) + 2 + len(ratios))]
        keys = sorted(k for k in runs[0] if k[0] == kind and all(k in r for r in runs))
        keys.sort(key=lambda k: (list(CELLS).index(k[1]), k[2][1], k[4]))
        for key in keys:
            _, name, shape, dtype, train = key
            ms = [r[key] for r in runs]
            gflops = [m["c"][1] / m["c"][0] / 1e9 for m in ms]
            lines.append(
                f"| {name} | {' | '.join(map(str, shape))} | {'fwd+bwd' if train else 'fwd'} | "
                + " | ".join(joined(ms, lambda m, i=i: f"{m[i][0] * 1e3:.3f}" if i in m else "")
                             for i in impls)
                + " | " + " / ".join(f"{g:.1f}" for g in gflops) + " | "
                + " / ".join(f"{100 * g / fma_peak(dtype):.0f}%" for g in gflops) + " | "
                + " | ".join(joined(ms, lambda m, r=r: ratio(m, r[1], r[2])) for r in ratios)
                + " |")
        lines.append("")
    return "\n".join(lines)


# ---- C against PyTorch in alternating blocks (ratios that the machine's drift cannot skew) ----

def interleaved(rounds: int = 8, block_seconds: float = 0.1) -> str:
    """The float32 grid, C and PyTorch timed in ``rounds`` alternating blocks of about
    ``block_seconds`` each; a Markdown table of the medians and their ratio."""
    pyrnn.set_num_threads(THREADS)
    lines = ["| cell | T | B | I | H | pass | c ms | torch ms | C vs torch |",
             "|---|---|---|---|---|---|---|---|---|"]
    for cell in CELLS:
        for shape in GRID:
            for train in (False, True):
                runs = [make_run(impl, cell, shape, "float32", train, False)
                        for impl in ("c", "torch")]
                once = []
                for run in runs:
                    start = time.perf_counter()
                    run()
                    once.append(time.perf_counter() - start)
                block = max(1, round(block_seconds / max(once)))
                c_s, torch_s = alternating_medians(runs, rounds * block, block)
                lines.append(f"| {cell} | {' | '.join(map(str, shape))} | "
                             f"{'fwd+bwd' if train else 'fwd'} | {c_s * 1e3:.3f} | "
                             f"{torch_s * 1e3:.3f} | {torch_s / c_s:.2f}x |")
    return "\n".join(lines)


if __name__ == "__main__":
    if sys.argv[1:] == ["--interleaved"]:
        print(interleaved())
    else:
        print(table(*sys.argv[1:]))
