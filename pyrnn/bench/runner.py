"""The run: probe the machine, then check and time every configuration on every contender."""

from __future__ import annotations

import platform
from dataclasses import dataclass, field

import numpy as np

import pyrnn

from . import plan
from .check import compare
from .contenders import PyrnnContender, make_contender, reference_layer, torch_version
from .grids import Shape, batch_sizes
from .machine import cpu_info, fma_peak_estimate, gemm_probe, thread_limits
from .progress import Progress
from .timing import POLICIES, Stats, time_in_groups


@dataclass
class Measurement:
    """One contender's timing of one configuration, or why it has none."""

    cell: str
    pass_name: str  # "fwd" or "train"
    backend: str
    shape: Shape
    config: plan.Config
    calls_per_unit: int
    sequences_per_unit: int
    flops_per_unit: float  # useful FLOPs: the sum of lengths for the ragged strategies
    check: dict | None = None
    time: Stats | None = None
    error: str | None = None

    @property
    def seq_per_s(self) -> float:
        return self.sequences_per_unit / self.time.median

    @property
    def gflops(self) -> float:
        return self.flops_per_unit / self.time.median / 1e9


@dataclass
class Results:
    settings: plan.Settings
    versions: dict
    machine: dict
    ceilings: dict
    lengths: dict = field(default_factory=dict)  # (cell, shape) -> ragged lengths [B]
    measurements: list[Measurement] = field(default_factory=list)
    skipped: dict = field(default_factory=dict)  # backend -> why it took no (further) part

    @property
    def failed_checks(self) -> list[Measurement]:
        return [m for m in self.measurements if m.check is not None and not m.check["ok"]]


def versions() -> dict:
    return {"pyrnn": pyrnn.__version__, "python": platform.python_version(),
            "numpy": np.__version__, "torch": torch_version(),
            "backend_info": pyrnn.backend_info()}


def run(settings: plan.Settings, progress: Progress) -> Results:
    """Measure everything ``settings`` asks for; the caller reports and writes the results."""
    with_torch = "torch" in settings.backends
    cpu = cpu_info()
    with thread_limits(settings.threads, with_torch) as limited:
        progress.group("machine ceilings (GEMM probe)")
        ceilings = {"gemm": gemm_probe(settings.dtype, settings.gemm_size, with_torch,
                                           settings.mode),
                    "fma_peak_estimate": fma_peak_estimate(cpu, settings.threads,
                                                           settings.dtype)}
        results = Results(settings, versions(), {**cpu, "threads": limited}, ceilings)
        for cell in settings.cells:
            for shape in settings.shapes[cell]:
                progress.group(f"{cell} {shape}")
                _measure_shape(results, cell, shape, progress)
    return results


def _measure_shape(results: Results, cell: str, shape: Shape, progress: Progress) -> None:
    settings = results.settings
    reference = reference_layer(cell, shape.I, shape.H, settings.dtype, settings.seed)
    oracle = PyrnnContender("numpy", reference)
    contenders = []
    for name in settings.backends:
        if name in results.skipped:
            continue
        try:
            contenders.append(oracle if name == "numpy" else make_contender(name, reference))
        except Exception as exc:  # a backend that cannot even be built takes no part
            _skip(results, name, exc, progress)
    data = plan.ShapeData.draw(shape, settings.dtype, settings.seed)
    results.lengths[(cell, shape)] = data.lengths
    sizes = batch_sizes(shape.B, settings.sweep)
    for pass_name in settings.passes:
        train = pass_name == "train"
        for config in plan.configs(shape, sizes, settings.buckets):
            progress.step(f"{cell} {shape} {pass_name} {config.label}")
            calls, unit, steps = plan.calls(config, data, train)
            template = dict(cell=cell, pass_name=pass_name, shape=shape, config=config,
                            calls_per_unit=unit,
                            sequences_per_unit=sum(c.x.shape[1] for c in calls[:unit]),
                            flops_per_unit=plan.flops(cell, steps, shape.I, shape.H, train))
            contenders = _check_and_time(results, contenders, oracle, calls, unit, train,
                                         template, progress)


def _check_and_time(results, contenders, oracle, calls, unit, train, template, progress):
    """Check each contender's first unit against the oracle, time those that pass.

    Returns the contenders still taking part (one that raises is dropped from the run).
    """
    _, oracle_result = oracle.prepare(calls, train)
    expected = [oracle_result(k) for k in range(unit)]
    timed, runners, alive = [], [], []
    for contender in contenders:
        m = Measurement(backend=contender.name, **template)
        try:
            run, result = contender.prepare(calls, train)
            got = expected if contender is oracle else [result(k) for k in range(unit)]
        except Exception as exc:
            _skip(results, contender.name, exc, progress)
            continue
        alive.append(contender)
        checks = [compare(g, e, results.settings.dtype) for g, e in zip(got, expected)]
        m.check = max(checks, key=lambda c: c["max_rel_err"])
        m.check["reference"] = "numpy"
        results.measurements.append(m)
        if m.check["ok"]:
            timed.append(m)
            runners.append(_unit_runner(run, unit))
        else:
            m.error = (f"check failed: {m.check['worst']} differs from the NumPy reference by "
                       f"a relative error of {m.check['max_rel_err']:.3g} > "
                       f"{m.check['tolerance']:.0e}")
    if runners:
        calls_blas = [m.backend == "numpy" for m in timed]
        for m, stats in zip(timed, time_in_groups(runners, calls_blas,
                                                  POLICIES[results.settings.mode])):
            m.time = stats
    return alive


def _unit_runner(run, unit: int):
    """Unit k of work: calls k*unit .. k*unit + unit - 1 (the runner cycles through its calls)."""
    if unit == 1:
        return run

    def run_unit(k: int) -> None:
        for j in range(k * unit, (k + 1) * unit):
            run(j)

    return run_unit


def _skip(results: Results, name: str, exc: Exception, progress: Progress) -> None:
    results.skipped[name] = f"{type(exc).__name__}: {exc}"
    progress.note(f"{name} takes no further part: {results.skipped[name]}")
