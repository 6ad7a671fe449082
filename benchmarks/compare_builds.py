"""Builds of the C kernels against each other, in one process, in alternating blocks: the A/B
behind RESULTS.md's "what each change measured" on a machine whose speed drifts.

    python benchmarks/compare_builds.py CELL T B I H PASS LIB [LIB ...] [--seconds S]
                                        [--dtype float32|float64] [--flag 0|1]
    # CELL: rnn, lstm or gru; PASS: infer, fwd (training forward) or fwd+bwd;
    # --flag: the cell's variant, rnn relu (default 0: tanh), gru reset_after (default 1);
    # LIB: a built extension, e.g. pyrnn/_pyrnn_c.abi3.so copied aside before a change

Each LIB is loaded on its own through ctypes (two builds of one cffi module cannot both be
imported), its outputs are checked against the first LIB's (relative error 1e-5 in float32, 1e-12
in float64: a change may reorder sums, not change results), and every build is timed in turn for
about --seconds in all. Prints each build's median ms and its ratio to the first. Threads come
from PYRNN_NUM_THREADS, as in the package; pin PYRNN_BARRIER_NS so every build takes the same
thread decisions.
"""

from __future__ import annotations

import argparse
import ctypes
import os
import sys
import time

import numpy as np

from _timing import alternating_medians

GATES = {"rnn": 1, "lstm": 4, "gru": 3}
FLAGS = {"rnn": 0, "gru": 1}  # the cell's flag argument by default: tanh; reset_after
BLOCK_SECONDS = 0.05
TOLERANCE = {"float32": 1e-5, "float64": 1e-12}


class Build:
    """One library's forward and backward of a cell on fixed inputs, with its own outputs."""

    def __init__(self, path: str, cell: str, shape, dtype, pass_: str, inputs: dict,
                 flag: int | None = None):
        self.path = path
        lib = ctypes.CDLL(os.path.abspath(path), mode=os.RTLD_LOCAL | os.RTLD_NOW)
        sfx = "f32" if dtype == np.float32 else "f64"
        self.forward = getattr(lib, f"pyrnn_{cell}_forward_{sfx}")
        self.backward = getattr(lib, f"pyrnn_{cell}_backward_{sfx}")
        workspace_len = getattr(lib, f"pyrnn_{cell}_workspace_len")
        workspace_len.restype = ctypes.c_int64
        sizes = [ctypes.c_int64(n) for n in shape]
        n_states = 2 if cell == "lstm" else 1
        # the cell's flag argument (none for the LSTM); the GRU's workspace depends on it
        flag = [] if cell == "lstm" else [FLAGS[cell] if flag is None else flag]
        variant = flag if cell == "gru" else []
        # one workspace for every pass: the longer of the two lengths (neither bounds the other)
        self.ws = np.empty(max(workspace_len(*sizes, t, *variant) for t in (0, 1)), dtype)
        T, B, I, H = shape
        self.y = np.empty((T, B, H), dtype)
        self.states = [np.empty((B, H), dtype) for _ in range(n_states)]
        self.dx = np.empty((T, B, I), dtype)
        self.dstates = [np.empty((B, H), dtype) for _ in range(n_states)]
        self.dw = [np.empty_like(w) for w in inputs["weights"]]
        ptr = self._pointer
        none = [None] * n_states
        weights = [ptr(w) for w in inputs["weights"]]
        self.fwd_args = [*sizes, 0, int(pass_ != "infer"), *flag, ptr(inputs["x"]), *none,
                         *weights, None, ptr(self.y), *map(ptr, self.states), ptr(self.ws)]
        self.bwd_args = [*sizes, 0, *flag, ptr(inputs["x"]), *none, *weights, None,
                         ptr(inputs["dy"]), *none, ptr(self.dx), *map(ptr, self.dstates),
                         *map(ptr, self.dw), ptr(self.ws)]
        self.with_backward = pass_ == "fwd+bwd"

    @staticmethod
    def _pointer(a: np.ndarray):
        return a.ctypes.data_as(ctypes.c_void_p)

    def __call__(self) -> None:
        if self.forward(*self.fwd_args) != 0:
            sys.exit(f"{self.path}: forward failed")
        if self.with_backward and self.backward(*self.bwd_args) != 0:
            sys.exit(f"{self.path}: backward failed")

    def outputs(self) -> list[np.ndarray]:
        outs = [self.y, *self.states]
        if self.with_backward:
            outs += [self.dx, *self.dstates, *self.dw]
        return [o.copy() for o in outs]


def check_agreement(builds, tolerance: float) -> None:
    """Run each build once and exit with a message unless its outputs match the first's."""
    builds[0]()
    want = builds[0].outputs()
    for build in builds[1:]:
        build()
        for a, b in zip(build.outputs(), want):
            err = np.linalg.norm(a - b) / max(np.linalg.norm(b), 1e-30)
            if err > tolerance:
                sys.exit(f"{build.path}: outputs differ from {builds[0].path}'s (relative "
                         f"error {err:.2g})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("cell", choices=list(GATES))
    for size in "TBIH":  # one positional each: a tuple metavar breaks --help
        parser.add_argument(size, type=int)
    parser.add_argument("pass_", choices=["infer", "fwd", "fwd+bwd"], metavar="PASS")
    parser.add_argument("libs", nargs="+", metavar="LIB")
    parser.add_argument("--seconds", type=float, default=6.0,
                        help="about this long in all (default 6)")
    parser.add_argument("--dtype", choices=list(TOLERANCE), default="float32")
    parser.add_argument("--flag", type=int, choices=[0, 1], default=None,
                        help="the variant: rnn relu (default 0), gru reset_after (default 1)")
    args = parser.parse_args()
    args.sizes = (args.T, args.B, args.I, args.H)
    if args.flag is not None and args.cell == "lstm":
        parser.error("--flag: the LSTM has no variant")
    if args.seconds <= 0:
        parser.error(f"--seconds: expected a positive number, got {args.seconds:g}")
    if min(args.sizes) < 1:
        parser.error(f"T B I H: expected sizes >= 1, got {' '.join(map(str, args.sizes))}")
    cell, shape, dtype = args.cell, tuple(args.sizes), np.dtype(args.dtype).type
    T, B, I, H = shape
    G = GATES[cell]
    rng = np.random.default_rng(0)

    def f(*s):
        return (0.1 * rng.standard_normal(s)).astype(dtype)

    inputs = {"x": f(T, B, I), "dy": f(T, B, H),
              "weights": [f(G * H, I), f(G * H, H), f(G * H), f(G * H)]}
    builds = [Build(p, cell, shape, dtype, args.pass_, inputs, args.flag) for p in args.libs]
    check_agreement(builds, TOLERANCE[args.dtype])
    start = time.perf_counter()
    builds[0]()
    once = time.perf_counter() - start
    block = max(1, round(BLOCK_SECONDS / once))
    rounds = max(1, round(args.seconds / (len(builds) * block * once))) * block
    meds = alternating_medians(builds, rounds, block)
    print(f"{cell} T={T} B={B} I={I} H={H} {args.pass_} {args.dtype}, PYRNN_NUM_THREADS="
          f"{os.environ.get('PYRNN_NUM_THREADS', 'unset')}: "
          + " | ".join(f"{p} {m * 1e3:.4f} ms ({m / meds[0]:.3f})"
                       for p, m in zip(args.libs, meds)))


if __name__ == "__main__":
    main()
