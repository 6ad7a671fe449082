"""results.json: every measurement with its parameters, median and spread, versions, machine."""

from __future__ import annotations

import json
import math
from pathlib import Path

from .runner import Measurement, Results

SCHEMA = "pyrnn.bench/1"


def _finite(value: float | None) -> float | None:
    """JSON has no inf or NaN: an unbounded error is written as null."""
    return value if value is None or math.isfinite(value) else None


def measurement_dict(m: Measurement) -> dict:
    timed = m.time is not None
    check = None if m.check is None else {**m.check,
                                          "max_rel_err": _finite(m.check["max_rel_err"])}
    return {
        "cell": m.cell,
        "pass": m.pass_name,
        "backend": m.backend,
        "shape": m.shape.as_dict(),
        "strategy": m.config.strategy,
        "batch": m.config.batch,
        "buckets": m.config.buckets,
        "calls_per_unit": m.calls_per_unit,
        "sequences_per_unit": m.sequences_per_unit,
        "flops_per_unit": m.flops_per_unit,
        "check": check,
        "time_s": m.time.as_dict() if timed else None,
        "seq_per_s": m.seq_per_s if timed else None,
        "gflops": m.gflops if timed else None,
        "error": m.error,
    }


def to_dict(results: Results, argv: list[str]) -> dict:
    return {
        "schema": SCHEMA,
        "argv": argv,
        "settings": results.settings.as_dict(),
        "versions": results.versions,
        "machine": results.machine,
        "ceilings": results.ceilings,
        "ragged_lengths": [{"cell": cell, "shape": shape.as_dict(), "lengths": lengths.tolist()}
                           for (cell, shape), lengths in results.lengths.items()],
        "skipped": results.skipped,
        "measurements": [measurement_dict(m) for m in results.measurements],
    }


def write(results: Results, argv: list[str], out: Path) -> Path:
    path = out / "results.json"
    path.write_text(json.dumps(to_dict(results, argv), indent=1, default=str) + "\n")
    return path
