"""Inference calls made now and then: torch.nn against pyrnn.torch, median ms per call when the
program sleeps before each one (a server answering requests rather than a benchmark loop).

    python benchmarks/idle_calls.py CELL T B I H [--idle MS] [--calls N] [--rounds R]
    # CELL: rnn, lstm or gru; each round times N calls of each module, the module that goes first
    # alternating between rounds; prints one line a round

A thread team that has slept can take milliseconds to wake on a virtual machine (see
docs/architecture.md, "A team that has gone to sleep"); both libraries use the same OpenMP
threads, with the thread counts they pick by default.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from torch import nn

import pyrnn.torch

CELLS = {"rnn": (nn.RNN, pyrnn.torch.RNN), "lstm": (nn.LSTM, pyrnn.torch.LSTM),
         "gru": (nn.GRU, pyrnn.torch.GRU)}


def median_ms(module, x, calls: int, idle_s: float) -> float:
    """Median ms of `calls` calls of module(x), each after sleeping idle_s (one untimed first)."""
    times = []
    with torch.no_grad():
        module(x)
        for _ in range(calls):
            if idle_s:
                time.sleep(idle_s)
            start = time.perf_counter()
            module(x)
            times.append(1e3 * (time.perf_counter() - start))
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("cell", choices=list(CELLS))
    for size in "TBIH":  # one positional each: a tuple metavar breaks --help
        parser.add_argument(size, type=int)
    parser.add_argument("--idle", type=float, default=20.0, metavar="MS",
                        help="sleep this long before each timed call (default 20)")
    parser.add_argument("--calls", type=int, default=40, help="timed calls a module a round")
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    args.sizes = (args.T, args.B, args.I, args.H)
    if args.idle < 0:
        parser.error(f"--idle: expected milliseconds >= 0, got {args.idle:g}")
    (T, B, I, H), (torch_cls, pyrnn_cls) = args.sizes, CELLS[args.cell]
    torch.manual_seed(0)
    theirs = torch_cls(I, H)
    ours = pyrnn_cls(I, H)
    ours.load_state_dict(theirs.state_dict())
    x = torch.randn(T, B, I)
    for r in range(args.rounds):
        order = [("torch.nn", theirs), ("pyrnn.torch", ours)]
        if r % 2:
            order.reverse()
        ms = {name: median_ms(m, x, args.calls, args.idle / 1e3) for name, m in order}
        print(f"{args.cell} T={T} B={B} I={I} H={H}, idle {args.idle:g} ms: torch.nn "
              f"{ms['torch.nn']:.3f} ms, pyrnn.torch {ms['pyrnn.torch']:.3f} ms, "
              f"{ms['torch.nn'] / ms['pyrnn.torch']:.2f}x", flush=True)


if __name__ == "__main__":
    main()
