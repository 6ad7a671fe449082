"""Time one C kernel call directly: inference forward, training forward and forward+backward, min
and median ms.

    python benchmarks/time_kernel.py CELL T B I H [REPEATS] [--only infer|fwd|fwd+bwd]
                                     [--idle MS]
    # CELL: rnn, lstm or gru; --only times one pass (e.g. under `perf record`); --idle sleeps
    # MS milliseconds before each timed call, as a program that calls now and then does

The thread count comes from PYRNN_NUM_THREADS. RESULTS.md's measurements of the thread team on a
busy machine use it next to `python -c "while True: pass" &` on one of the cores.
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np

from pyrnn import _c

GATES = {"rnn": 1, "lstm": 4, "gru": 3}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("cell", choices=list(GATES))
    for size in "TBIH":  # one positional each: a tuple metavar breaks --help
        parser.add_argument(size, type=int)
    parser.add_argument("repeats", type=int, nargs="?", default=20)
    parser.add_argument("--only", choices=["infer", "fwd", "fwd+bwd"],
                        help="time this pass alone")
    parser.add_argument("--idle", type=float, default=0.0, metavar="MS",
                        help="sleep this long before each timed call")
    args = parser.parse_args()
    args.sizes = (args.T, args.B, args.I, args.H)
    if args.idle < 0:
        parser.error(f"--idle: expected milliseconds >= 0, got {args.idle:g}")
    cell, (T, B, I, H), G = args.cell, args.sizes, GATES[args.cell]
    rng = np.random.default_rng(0)

    def f(*shape):
        return (0.1 * rng.standard_normal(shape)).astype(np.float32)

    x, dy = f(T, B, I), f(T, B, H)
    states = [f(B, H) for _ in range(2 if cell == "lstm" else 1)]
    weights = [f(G * H, I), f(G * H, H), f(G * H), f(G * H)]
    variant = [True] if cell == "gru" else []
    workspace_len = getattr(_c, f"{cell}_workspace_len")
    # one workspace for all three passes: the longer of the two lengths (neither bounds the other)
    ws = np.empty(max(workspace_len(T, B, I, H, training, *variant) for training in (False, True)),
                  np.float32)
    forward, backward = getattr(_c, f"{cell}_forward"), getattr(_c, f"{cell}_backward")

    def infer():
        forward(x, *states, *weights, None, ws, training=False)

    def fwd():
        forward(x, *states, *weights, None, ws, training=True)

    def fwd_bwd():
        fwd()
        backward(x, *states, *weights, None, dy, *states, ws)

    parts = []
    for name, run in (("infer", infer), ("fwd", fwd), ("fwd+bwd", fwd_bwd)):
        if args.only not in (None, name):
            continue
        run()
        times = []
        for _ in range(args.repeats):
            if args.idle:
                time.sleep(args.idle / 1e3)
            start = time.perf_counter()
            run()
            times.append(1e3 * (time.perf_counter() - start))
        times.sort()
        parts.append(f"{name} min {times[0]:.3f} med {times[len(times) // 2]:.3f} ms")
    print(f"{cell} T={T} B={B} I={I} H={H}, PYRNN_NUM_THREADS="
          f"{os.environ.get('PYRNN_NUM_THREADS', 'unset')}: " + " | ".join(parts))


if __name__ == "__main__":
    main()
