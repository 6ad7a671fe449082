"""The report on stdout: what ran where, the ceilings, then two tables per cell and pass.

The batch table has one row per shape, backend and batch size (batch 1 is the sequential run);
the ragged table one row per shape, backend and strategy (padded, lengths, bucketed).
"""

from __future__ import annotations

from dataclasses import replace

from .plan import PASSES
from .runner import Measurement, Results

BATCH_HEADERS = ("shape TxBxIxH", "backend", "batch", "ms/call", "spread", "seq/s", "GFLOP/s",
                 "%gemm", "%fma", "x seq", "x torch")
RAGGED_HEADERS = ("shape TxBxIxH", "lengths", "backend", "strategy", "ms/all", "spread", "seq/s",
                  "GFLOP/s", "%gemm", "%fma", "x padded", "x torch")
BUSY_LOAD = 1.0  # a 1-minute load average from this point up means someone else is computing
NOISY_SPREAD = 0.25  # rows whose interquartile range exceeds this fraction of the median


def _num(value: float | None) -> str:
    """Three significant digits or so, plain (no exponent) so that it parses as a float."""
    if value is None:
        return "-"
    if value >= 100:
        return f"{value:.0f}"
    if value >= 10:
        return f"{value:.1f}"
    if value >= 0.1:
        return f"{value:.2f}"
    return f"{value:.4f}"


def _table(headers: tuple[str, ...], rows: list[tuple]) -> list[str]:
    """Columns padded to width: text left-aligned, numbers right-aligned.

    A row shorter than the headers ends in a message that runs on over the remaining columns.
    """
    text_columns = {0, 1} | {i for i, h in enumerate(headers) if h in ("backend", "strategy")}
    widths = [len(h) for h in headers]
    for row in rows:
        sized = row if len(row) == len(headers) else row[:-1]
        for i, cell in enumerate(sized):
            widths[i] = max(widths[i], len(cell))

    def fmt(row):
        parts = [cell if len(row) < len(headers) and i == len(row) - 1
                 else cell.ljust(widths[i]) if i in text_columns else cell.rjust(widths[i])
                 for i, cell in enumerate(row)]
        return "  ".join(parts).rstrip()

    return [fmt(headers)] + [fmt(row) for row in rows]


def _ceiling(results: Results, name: str) -> float | None:
    if name == "gemm":
        return results.ceilings["gemm"]["numpy"]["gflops"]
    return results.ceilings["fma_peak_estimate"]["gflops"]


def _pct(gflops: float, ceiling: float | None) -> str:
    return "-" if ceiling is None else _num(100 * gflops / ceiling)


class _Lookup:
    """Throughput of the timed measurements by (cell, pass, backend, shape, strategy, batch)."""

    def __init__(self, measurements: list[Measurement]):
        self.by_key = {self._key(m): m for m in measurements if m.time is not None}

    @staticmethod
    def _key(m: Measurement, **change) -> tuple:
        key = dict(cell=m.cell, pass_name=m.pass_name, backend=m.backend, shape=m.shape,
                   strategy=m.config.strategy, batch=m.config.batch)
        key.update(change)
        return tuple(key.values())

    def find(self, m: Measurement, **change) -> Measurement | None:
        """The timed measurement like ``m`` but for the ``change``d fields."""
        return self.by_key.get(self._key(m, **change))

    def rate(self, m: Measurement, **change) -> float | None:
        other = self.find(m, **change)
        return None if other is None else other.seq_per_s

    def torch_rate(self, m: Measurement) -> float | None:
        return None if m.backend == "torch" else self.rate(m, backend="torch")


def _ratio(a: float, b: float | None) -> str:
    return "-" if b is None else f"{a / b:.2f}"


def _numbers(results: Results, m: Measurement, base_rate: float | None,
             torch_rate: float | None) -> tuple:
    """ms, spread, seq/s, GFLOP/s, %gemm, %fma, x base, x torch of a timed measurement."""
    gflops = m.gflops
    return (_num(1e3 * m.time.median), f"{100 * m.time.rel_spread:.0f}%", _num(m.seq_per_s),
            _num(gflops), _pct(gflops, _ceiling(results, "gemm")),
            _pct(gflops, _ceiling(results, "fma")), _ratio(m.seq_per_s, base_rate),
            _ratio(m.seq_per_s, torch_rate))


def _message(m: Measurement) -> tuple:
    return (m.error or "not timed",)


_STRATEGY_ORDER = {"batched": 0, "lengths": 1, "bucketed": 2}


def _in_order(results: Results, cell: str, pass_name: str) -> list[Measurement]:
    """The cell's measurements of one pass by shape (grid order), backend, strategy, batch."""
    shapes = results.settings.shapes[cell]
    backends = results.settings.backends
    return sorted((m for m in results.measurements if (m.cell, m.pass_name) == (cell, pass_name)),
                  key=lambda m: (shapes.index(m.shape), backends.index(m.backend),
                                 _STRATEGY_ORDER[m.config.strategy], m.config.batch))


def batch_table(results: Results, cell: str, pass_name: str, lookup: _Lookup) -> list[str]:
    rows = []
    for m in _in_order(results, cell, pass_name):
        if m.config.strategy != "batched":
            continue
        head = (str(m.shape), m.backend, str(m.config.batch))
        tail = _message(m) if m.time is None else \
            _numbers(results, m, lookup.rate(m, batch=1), lookup.torch_rate(m))
        rows.append(head + tail)
    return _table(BATCH_HEADERS, rows) if rows else []


def ragged_table(results: Results, cell: str, pass_name: str, lookup: _Lookup) -> list[str]:
    """padded (the batched run at b = B), lengths and bucketed, all on useful FLOPs."""
    rows = []
    for m in _in_order(results, cell, pass_name):
        if m.config.strategy == "batched":
            continue
        lengths = results.lengths[(cell, m.shape)]
        label = f"{lengths.min()}..{lengths.max()}"
        head = (str(m.shape), label, m.backend)
        padded = lookup.find(m, strategy="batched", batch=m.shape.B)
        if m.config.strategy == "lengths" and padded is not None:
            # the padded run counted on the ragged set's useful FLOPs, so the rows compare
            useful = replace(padded, flops_per_unit=m.flops_per_unit)
            rows.append(head + ("padded",) + _numbers(results, useful, padded.seq_per_s,
                                                      lookup.torch_rate(padded)))
        padded_rate = None if padded is None else padded.seq_per_s
        tail = _message(m) if m.time is None else \
            _numbers(results, m, padded_rate, lookup.torch_rate(m))
        rows.append(head + (m.config.label,) + tail)
    return _table(RAGGED_HEADERS, rows) if rows else []


def header(results: Results) -> list[str]:
    s, v, mach, ceil = results.settings, results.versions, results.machine, results.ceilings
    torch = f" (PyTorch {v['torch']})" if "torch" in s.backends and v["torch"] else ""
    load = mach["load_average_1min"]
    busy = "" if load is None or load < BUSY_LOAD else \
        f", load average {load:.1f} at the start (other work is running: expect noise)"
    lines = [f"pyrnn.bench {v['pyrnn']} ({s.mode} run): {s.dtype.name}, threads={s.threads}, "
             f"backends {', '.join(s.backends)}{torch}",
             f"machine: {mach['model']}, {mach['usable_cpus']} usable CPUs, "
             f"{' '.join(mach['vector_extensions']) or 'no AVX'}{busy}"]
    measured = "; ".join(f"{g['what']} {_num(g['gflops'])} GFLOP/s"
                         for g in ceil["gemm"].values())
    fma = ceil["fma_peak_estimate"]
    peak = "unknown" if fma["gflops"] is None else f"~{fma['gflops']:.0f} GFLOP/s"
    lines += [f"ceilings: measured {measured}",
              f"          FMA peak {peak} (estimate: {fma['formula']})",
              "FLOPs = 2*T*B*G*H*(I+H) forward, 3x for forward+backward (ragged: sum of lengths "
              "instead of T*B).",
              "batch 1 is the sequential run (one call per sequence); x seq = throughput / "
              "sequential throughput;",
              "x torch = throughput / PyTorch's on the same inputs; %gemm = % of the NumPy "
              "matmul above, %fma = % of the FMA peak;",
              "spread = interquartile range / median of the samples; ms/all = time for all B "
              "sequences."]
    if "cuda" in s.backends:
        lines.append("cuda rows take NumPy arrays in and out: every call copies the data and "
                     "the weights to the GPU and the results back.")
    return lines


def render(results: Results) -> str:
    """The whole report as text."""
    lines = header(results)
    lookup = _Lookup(results.measurements)
    for cell in results.settings.cells:
        for pass_name in results.settings.passes:
            batch = batch_table(results, cell, pass_name, lookup)
            if batch:
                lines += ["", f"== {cell}: {PASSES[pass_name]}, batch sizes", *batch]
            ragged = ragged_table(results, cell, pass_name, lookup)
            if ragged:
                lines += ["", f"== {cell}: {PASSES[pass_name]}, ragged lengths", *ragged]
    if results.skipped:
        lines.append("")
        lines += [f"skipped {name}: {why}" for name, why in results.skipped.items()]
    timed = [m for m in results.measurements if m.time is not None]
    noisy = sum(m.time.rel_spread > NOISY_SPREAD for m in timed)
    if noisy:
        lines += ["", f"{noisy} of {len(timed)} timings spread by more than "
                      f"{NOISY_SPREAD:.0%} of their median: the machine was busy; rerun when it "
                      "is quiet (or with fewer --threads) to trust those rows."]
    failed = results.failed_checks
    if failed:
        lines += ["", f"{len(failed)} result(s) FAILED the check against the NumPy reference "
                      "(see the rows marked 'check failed')."]
    return "\n".join(lines) + "\n"
