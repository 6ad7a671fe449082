"""What the benchmark scripts share: contenders timed in alternating blocks, shape arguments."""

from __future__ import annotations

import argparse
import statistics
import time


def alternating_medians(calls, rounds: int, block: int = 10) -> list[float]:
    """Median seconds per call of each callable over ``rounds`` calls, taken in alternating blocks.

    Alternating spreads the machine's load drift over every contender alike (this machine runs
    everything 1.3-1.6x slower for a second or two at a time); blocks (rather than single calls)
    keep one contender's idle threads, still spinning after its last call, from landing on the
    other's first measured call.
    """
    times = [[] for _ in calls]
    for _ in range(0, rounds, block):
        for k, call in enumerate(calls):
            call()  # not timed: the switch from the other contender
            for _ in range(block):
                start = time.perf_counter()
                call()
                times[k].append(time.perf_counter() - start)
    return [statistics.median(t) for t in times]


def torch_header(rounds: int, what: str, setting: str = "") -> str:
    """The first line of the scripts comparing torch.nn with pyrnn.torch: backends, threads
    (and ``setting``), how many ``what`` (calls, steps) each median is of."""
    import torch

    import pyrnn

    return (f"pyrnn backend {pyrnn.backend_info()['auto']}, torch {torch.__version__}, "
            f"{torch.get_num_threads()} torch threads{setting}; median of {rounds} {what} per "
            f"contender, in alternating blocks\n")


def warmed_medians(calls, rounds: int, block: int, warmups: int = 1) -> list[float]:
    """``alternating_medians`` after ``warmups`` untimed calls of each callable, in blocks of
    ``block`` calls or fewer when ``rounds`` is smaller."""
    for call in calls:
        for _ in range(warmups):
            call()
    return alternating_medians(calls, rounds, max(1, min(block, rounds)))


def parse_shape(text: str) -> tuple[int, int, int, int]:
    """A ``TxBxIxH`` command-line shape."""
    parts = text.split("x")
    if len(parts) != 4 or not all(p.isdigit() and int(p) > 0 for p in parts):
        raise argparse.ArgumentTypeError(f"expected TxBxIxH such as 50x1x32x128, got {text!r}")
    return tuple(int(p) for p in parts)


_DEFAULT_SHAPES = ("50x1x32x128", "50x32x128x128")


def add_shape_options(parser: argparse.ArgumentParser, rounds: int, quick_rounds: int) -> None:
    """--shapes (TxBxIxH, default: the layers' batch-1 and batch-32 shapes), --rounds (timed
    calls per contender) and --quick (one tiny shape, ``quick_rounds`` rounds)."""
    parser.add_argument("--shapes", type=parse_shape, nargs="+",
                        default=[parse_shape(s) for s in _DEFAULT_SHAPES],
                        help=f"TxBxIxH shapes (default: {' '.join(_DEFAULT_SHAPES)})")
    parser.add_argument("--rounds", type=int, default=rounds,
                        help="timed calls per contender")
    parser.add_argument("--quick", action="store_true",
                        help=f"one tiny shape, {quick_rounds} rounds (checks that the script runs)")
    parser.set_defaults(quick_rounds=quick_rounds)


def shapes_and_rounds(parser: argparse.ArgumentParser, args) -> tuple[list, int]:
    """The parsed --shapes and --rounds, --quick applied; exits on fewer than one round."""
    if args.rounds < 1:
        parser.error(f"--rounds: expected at least 1, got {args.rounds}")
    if args.quick:
        return [(3, 2, 4, 5)], args.quick_rounds
    return args.shapes, args.rounds
