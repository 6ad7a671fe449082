"""PNG plots of a run (matplotlib is optional: ``pip install "pyrnn[plot]"``).

- ``throughput_vs_batch_<pass>.png``: sequences/s against batch size, log-log, one panel per
  cell and shape, one line per backend;
- ``vs_torch_<pass>.png``: each pyrnn backend's throughput over PyTorch's, per shape, at batch 1
  and at the full batch (log scale; above 1 is faster than PyTorch).
"""

from __future__ import annotations

from pathlib import Path

from .plan import PASSES
from .runner import Measurement, Results

_COLORS = {"c": "tab:blue", "numpy": "tab:gray", "cuda": "tab:green", "torch": "tab:orange"}


def _timed(results: Results, pass_name: str, strategy: str = "batched") -> list[Measurement]:
    return [m for m in results.measurements if m.time is not None
            and m.pass_name == pass_name and m.config.strategy == strategy]


def _panels(results: Results) -> list[tuple[str, object]]:
    return [(cell, shape) for cell in results.settings.cells
            for shape in results.settings.shapes[cell]]


def throughput_vs_batch(results: Results, pass_name: str, path: Path) -> Path:
    from matplotlib.figure import Figure
    from matplotlib.ticker import FixedLocator, NullLocator, ScalarFormatter

    panels = _panels(results)
    columns = min(4, len(panels))
    rows = -(-len(panels) // columns)
    fig = Figure(figsize=(max(6.0, 3.6 * columns), 3.0 * rows + 0.6), layout="constrained")
    axes = fig.subplots(rows, columns, squeeze=False).ravel()
    timed = _timed(results, pass_name)
    for ax, (cell, shape) in zip(axes, panels):
        for backend in results.settings.backends:
            points = sorted((m.config.batch, m.seq_per_s) for m in timed
                            if (m.cell, m.shape, m.backend) == (cell, shape, backend))
            if points:
                ax.plot(*zip(*points), marker="o", label=backend, color=_COLORS.get(backend))
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.xaxis.set_major_locator(FixedLocator(sorted({m.config.batch for m in timed
                                                        if m.shape == shape})))
        ax.xaxis.set_minor_locator(NullLocator())
        ax.xaxis.set_major_formatter(ScalarFormatter())
        ax.set_title(f"{cell} {shape}", fontsize=9)
        ax.set_xlabel("batch size")
        ax.set_ylabel("sequences/s")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=7)
    for ax in axes[len(panels):]:
        ax.set_visible(False)
    fig.suptitle(f"throughput against batch size, {PASSES[pass_name]}\n"
                 f"{results.settings.dtype.name}, threads={results.settings.threads}, shapes "
                 f"TxBxIxH", fontsize=10)
    fig.savefig(path, dpi=110)
    return path


def vs_torch(results: Results, pass_name: str, path: Path) -> Path | None:
    """None when PyTorch took no part (nothing to compare with)."""
    from matplotlib.figure import Figure
    from matplotlib.ticker import FuncFormatter

    timed = _timed(results, pass_name)
    torch_rate = {(m.cell, m.shape, m.config.batch): m.seq_per_s for m in timed
                  if m.backend == "torch"}
    backends = [b for b in results.settings.backends if b != "torch"]
    if not torch_rate or not backends:
        return None
    labels, ratios = [], {b: [] for b in backends}
    for cell, shape in _panels(results):
        for batch in sorted({1, shape.B}):
            if (cell, shape, batch) not in torch_rate:
                continue
            labels.append(f"{cell} {shape}\nb={batch}")
            for b in backends:
                mine = [m.seq_per_s for m in timed if (m.cell, m.shape, m.config.batch,
                                                       m.backend) == (cell, shape, batch, b)]
                ratios[b].append(mine[0] / torch_rate[(cell, shape, batch)] if mine
                                else float("nan"))
    width = 0.8 / len(backends)
    fig = Figure(figsize=(max(6.0, 0.9 * len(labels) + 2), 3.8), layout="constrained")
    ax = fig.subplots()
    for i, b in enumerate(backends):
        xs = [k + (i - (len(backends) - 1) / 2) * width for k in range(len(labels))]
        # bars grow from 1 (as fast as PyTorch) up or down to the ratio
        bars = ax.bar(xs, [r - 1 for r in ratios[b]], width, bottom=1, label=f"pyrnn {b}",
                      color=_COLORS.get(b))
        ax.bar_label(bars, labels=[f"{r:.2g}x" for r in ratios[b]], fontsize=7)
    ax.axhline(1.0, color="black", linewidth=0.8)
    ax.set_yscale("log")
    finite = [r for rs in ratios.values() for r in rs if r == r]
    ax.set_ylim(min(finite + [1.0]) / 1.6, max(finite + [1.0]) * 1.6)
    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}x"))
    ax.yaxis.set_minor_formatter(FuncFormatter(lambda v, _: ""))
    ax.set_xticks(range(len(labels)), labels, fontsize=7)
    ax.set_ylabel("throughput / PyTorch's")
    ax.set_title(f"pyrnn against PyTorch {results.versions['torch']}: {PASSES[pass_name]}\n"
                 f"same weights and inputs, {results.settings.dtype.name}, "
                 f"threads={results.settings.threads}", fontsize=10)
    ax.legend(fontsize=8)
    ax.grid(True, axis="y", which="both", alpha=0.3)
    fig.savefig(path, dpi=110)
    return path


def write_plots(results: Results, out: Path) -> list[Path]:
    """Every plot of the run; ImportError when matplotlib is not installed."""
    import matplotlib  # noqa: F401  (fail here, before any file is written)

    paths = []
    for pass_name in results.settings.passes:
        paths.append(throughput_vs_batch(results, pass_name,
                                         out / f"throughput_vs_batch_{pass_name}.png"))
        compared = vs_torch(results, pass_name, out / f"vs_torch_{pass_name}.png")
        if compared is not None:
            paths.append(compared)
    return paths
