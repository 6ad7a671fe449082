"""``python -m pyrnn.bench``: run, print the report, write results.json and plots."""

from __future__ import annotations

import sys

from . import cli, plan, report, results, runner
from .progress import Progress


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark for ``argv`` (default: the command line); the exit status.

    0 when every result matched the NumPy reference, 1 when one did not (its row says so),
    2 for a bad argument.
    """
    argv = sys.argv[1:] if argv is None else list(argv)
    settings = cli.parse_args(argv)
    why_no_c = cli.why_unavailable("c")
    if why_no_c is not None:
        print(f"pyrnn.bench: the C backend is not available here ({why_no_c}). If this runs in "
              f"a pyrnn checkout after a plain `pip install .`, the checkout's unbuilt pyrnn/ "
              f"shadows the installed package: use `pip install -e .`, or run from another "
              f"directory.", file=sys.stderr)
    progress = Progress(plan.count_configs(settings))
    try:
        outcome = runner.run(settings, progress)
    finally:
        progress.close()
    sys.stdout.write(report.render(outcome))
    if settings.out is not None:
        settings.out.mkdir(parents=True, exist_ok=True)
        print(f"\nwrote {results.write(outcome, argv, settings.out)}")
        _write_plots(outcome)
    sys.stdout.flush()
    failed = outcome.failed_checks
    for m in failed:
        print(f"pyrnn.bench: {m.backend} {m.cell} {m.shape} {m.pass_name} {m.config.label}: "
              f"{m.error}", file=sys.stderr)
    return 1 if failed else 0


def _write_plots(outcome: runner.Results) -> None:
    from . import plots

    try:
        paths = plots.write_plots(outcome, outcome.settings.out)
    except ImportError:
        print('no plots: matplotlib is not installed (pip install "pyrnn[plot]"); wrote the '
              "JSON and the table only")
        return
    for path in paths:
        print(f"wrote {path}")


if __name__ == "__main__":
    sys.exit(main())
