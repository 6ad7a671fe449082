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


def parse_shape(text: str) -> tuple[int, int, int, int]:
    """A ``TxBxIxH`` command-line shape."""
    parts = text.split("x")
    if len(parts) != 4 or not all(p.isdigit() and int(p) > 0 for p in parts):
        raise argparse.ArgumentTypeError(f"expected TxBxIxH such as 50x1x32x128, got {text!r}")
    return tuple(int(p) for p in parts)
