"""Throughput suites: sequential against batched, and padded against lengths against bucketed.

The configurations of ``python -m pyrnn.bench`` (pyrnn.bench.plan, the same contenders and the
same check against the NumPy reference) on one shape, as pytest-benchmark tests so that runs
can be saved and compared over time:

    pytest benchmarks/test_throughput.py --benchmark-only --benchmark-autosave
    pytest benchmarks/test_throughput.py --benchmark-only --benchmark-compare
    pytest benchmarks/test_throughput.py --benchmark-only --pyrnn-backends c,torch -k lstm

Every benchmark processes all B sequences of SHAPE once (B calls at batch 1 for the sequential
one, one call per bucket for the bucketed one), so times within a group compare directly;
extra_info carries sequences/s and GFLOP/s (FLOPs = 2*T*B*G*H*(I+H), 3x with backward; the
ragged strategies count the sum of lengths instead of T*B).
"""

from __future__ import annotations

import functools

import numpy as np
import pytest

import pyrnn
from pyrnn.bench.check import compare
from pyrnn.bench.contenders import PyrnnContender, make_contender, reference_layer, torch_version
from pyrnn.bench.grids import CELLS, Shape
from pyrnn.bench.plan import PASSES, Config, ShapeData, calls, flops

SHAPE = Shape(T=50, B=16, I=64, H=128)
DTYPE = np.dtype(np.float32)
BATCH_SWEEP = {"sequential": Config("batched", 1), "batched-4": Config("batched", 4),
               "batched-16": Config("batched", 16)}
RAGGED = {"padded": Config("batched", SHAPE.B), "lengths": Config("lengths", SHAPE.B),
          "bucketed-4": Config("bucketed", SHAPE.B // 4, 4)}


def pytest_generate_tests(metafunc):
    if "backend" not in metafunc.fixturenames:
        return
    chosen = metafunc.config.getoption("--pyrnn-backends")
    if chosen is None:
        backends = pyrnn.available_backends() + (["torch"] if torch_version() else [])
    else:
        backends = [b.strip() for b in chosen.split(",") if b.strip()]
    metafunc.parametrize("backend", backends)


@functools.lru_cache(maxsize=None)
def shape_data() -> ShapeData:
    return ShapeData.draw(SHAPE, DTYPE, seed=0)


@functools.lru_cache(maxsize=None)
def reference(cell: str):
    return reference_layer(cell, SHAPE.I, SHAPE.H, DTYPE, seed=0)


def bench_all_sequences(benchmark, cell, pass_name, backend, config: Config, group: str):
    """Check ``backend`` against the NumPy reference on ``config``, then time all B sequences."""
    train = pass_name == "train"
    batch_calls, unit, steps = calls(config, shape_data(), train)
    try:
        contender = make_contender(backend, reference(cell))
        run, result = contender.prepare(batch_calls, train)
        got = result(0)
    except Exception as exc:  # a backend listed as available that cannot run this
        pytest.skip(f"{backend} cannot run here: {type(exc).__name__}: {exc}")
    _, expected = PyrnnContender("numpy", reference(cell)).prepare(batch_calls, train)
    verdict = compare(got, expected(0), DTYPE)
    assert verdict["ok"], f"{backend} differs from the NumPy reference: {verdict}"

    def all_sequences():
        for k in range(len(batch_calls)):
            run(k)

    total_steps = steps * len(batch_calls) // unit
    benchmark.group = f"{cell} {SHAPE} {PASSES[pass_name]}: {group}"
    benchmark.extra_info.update(backend=backend, shape=str(SHAPE), calls=len(batch_calls),
                                sequences=SHAPE.B,
                                flops=flops(cell, total_steps, SHAPE.I, SHAPE.H, train))
    benchmark.pedantic(all_sequences, rounds=7, warmup_rounds=1)
    seconds = benchmark.stats.stats.median
    benchmark.extra_info["seq_per_s"] = SHAPE.B / seconds
    benchmark.extra_info["gflops"] = benchmark.extra_info["flops"] / seconds / 1e9


@pytest.mark.parametrize("config", list(BATCH_SWEEP))
@pytest.mark.parametrize("pass_name", list(PASSES))
@pytest.mark.parametrize("cell", CELLS)
def test_sequential_vs_batched(benchmark, cell, pass_name, backend, config):
    bench_all_sequences(benchmark, cell, pass_name, backend, BATCH_SWEEP[config],
                        "sequential vs batched")


@pytest.mark.parametrize("config", list(RAGGED))
@pytest.mark.parametrize("pass_name", list(PASSES))
@pytest.mark.parametrize("cell", CELLS)
def test_padded_vs_lengths_vs_bucketed(benchmark, cell, pass_name, backend, config):
    bench_all_sequences(benchmark, cell, pass_name, backend, RAGGED[config],
                        "ragged lengths, padded vs lengths vs bucketed")
