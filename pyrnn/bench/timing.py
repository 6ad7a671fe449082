"""Timing: warm-up, auto-ranged samples, repeats interleaved across contenders, median and spread.

Contenders for the same measurement (pyrnn's backends and PyTorch on the same inputs) take their
samples in turns, round after round, in a new order each round, so that a noisy neighbour on a
shared machine slows them all alike instead of whichever happened to run during the noise. Those
that call NumPy's BLAS (the NumPy backend) take theirs apart, after the others (time_in_groups).
"""

from __future__ import annotations

import gc
import math
import time
from dataclasses import dataclass
from typing import Callable

import numpy as np


@dataclass(frozen=True)
class TimingPolicy:
    """How long and how often to sample.

    min_sample_s: one sample repeats the work until it lasts at least this long, so that timer
    resolution and call jitter do not dominate fast calls. min_repeats, max_repeats: samples per
    contender; beyond min_repeats, a contender stops once its samples add up to budget_s.
    """

    min_sample_s: float
    min_repeats: int
    max_repeats: int
    budget_s: float


POLICIES = {
    "quick": TimingPolicy(min_sample_s=0.01, min_repeats=3, max_repeats=7, budget_s=0.25),
    "default": TimingPolicy(min_sample_s=0.02, min_repeats=3, max_repeats=7, budget_s=1.0),
    "full": TimingPolicy(min_sample_s=0.05, min_repeats=3, max_repeats=11, budget_s=4.0),
}


@dataclass(frozen=True)
class Stats:
    """Seconds per unit of work over ``samples`` samples of ``units_per_sample`` units each."""

    median: float
    q1: float
    q3: float
    min: float
    max: float
    samples: int
    units_per_sample: int

    @property
    def rel_spread(self) -> float:
        """Interquartile range relative to the median."""
        return (self.q3 - self.q1) / self.median if self.median > 0 else 0.0

    def as_dict(self) -> dict:
        return {"median": self.median, "q1": self.q1, "q3": self.q3, "min": self.min,
                "max": self.max, "rel_spread": self.rel_spread, "samples": self.samples,
                "units_per_sample": self.units_per_sample}


def summarize(per_unit: list[float], units_per_sample: int) -> Stats:
    q1, median, q3 = np.percentile(per_unit, [25, 50, 75])
    return Stats(float(median), float(q1), float(q3), min(per_unit), max(per_unit),
                 len(per_unit), units_per_sample)


def _sample(run_unit: Callable[[int], None], first: int, units: int) -> float:
    """Seconds for ``units`` consecutive units of work starting at unit ``first``."""
    gc_was_enabled = gc.isenabled()
    gc.disable()  # a collection mid-sample is noise, not the work's cost
    try:
        start = time.perf_counter()
        for k in range(first, first + units):
            run_unit(k)
        return time.perf_counter() - start
    finally:
        if gc_was_enabled:
            gc.enable()


def time_interleaved(runners: list[Callable[[int], None]], policy: TimingPolicy) -> list[Stats]:
    """Median seconds per unit of work of each runner, sampled in turns.

    ``runners[i](k)`` does contender i's k-th unit of work (runners cycle through their inputs
    by ``k``). Each runner has been warmed up by its caller (the correctness check); here one
    more timed unit sizes its samples (and is the first sample when it lasts long enough).
    """
    first_unit = [_sample(run, 0, 1) for run in runners]
    units = [max(1, math.ceil(policy.min_sample_s / max(t, 1e-9))) for t in first_unit]
    wanted = [min(policy.max_repeats, max(policy.min_repeats,
                                          int(policy.budget_s // max(u * t, 1e-9))))
              for u, t in zip(units, first_unit)]
    # a unit long enough to be a sample on its own is the first sample (slow calls stay cheap)
    per_unit = [[t] if u == 1 else [] for t, u in zip(first_unit, units)]
    position = [1] * len(runners)
    # A fresh order every round: no contender always runs right after the same other one
    # (whose thread pool may still be spinning when it starts).
    shuffle = np.random.default_rng(0)
    for _ in range(max(wanted)):
        for i in shuffle.permutation(len(runners)):
            if len(per_unit[i]) < wanted[i]:
                per_unit[i].append(_sample(runners[i], position[i], units[i]) / units[i])
                position[i] += units[i]
    return [summarize(p, u) for p, u in zip(per_unit, units)]


# NumPy's BLAS (OpenBLAS) keeps its threads spinning for about 0.1 s after each call, on the cores
# that the next contender's threads need: on 2 cores, a C call right after NumPy's matrix
# products took 2.5x its time (benchmarks/RESULTS.md). So the runners that call it are timed on
# their own, and the others start this long after the last BLAS call (the check's).
BLAS_QUIET_S = 0.3


def time_in_groups(runners: list[Callable[[int], None]], calls_blas: list[bool],
                   policy: TimingPolicy) -> list[Stats]:
    """time_interleaved's statistics of each runner: first those that do not call NumPy's BLAS
    (``calls_blas[i]`` false), interleaved among themselves once BLAS_QUIET_S has passed and each
    has run one untimed unit (which wakes its thread team after the pause), then those that do."""
    stats: list[Stats | None] = [None] * len(runners)
    quiet = [i for i, blas in enumerate(calls_blas) if not blas]
    loud = [i for i, blas in enumerate(calls_blas) if blas]
    if quiet:
        time.sleep(BLAS_QUIET_S)
        for i in quiet:
            runners[i](0)
    for group in (quiet, loud):
        if group:
            for i, s in zip(group, time_interleaved([runners[i] for i in group], policy)):
                stats[i] = s
    return stats
