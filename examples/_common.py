"""The command line and the pass/fail report that every example shares."""

from __future__ import annotations

import argparse
import sys

from pyrnn._backend import resolve


def parser(description: str, trains: bool = True) -> argparse.ArgumentParser:
    """--quick, --backend, --seed (and --steps for the examples that train)."""
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--quick", action="store_true",
                   help="a few seconds: less data and fewer steps, same code (used by the tests)")
    p.add_argument("--backend", default="auto", choices=["auto", "c", "numpy", "cuda"],
                   help="pyrnn backend (default: auto, the fastest available)")
    p.add_argument("--seed", type=int, default=0, help="seed of data and initialisation")
    if trains:
        p.add_argument("--steps", type=int, default=None,
                       help="training steps (default: the example's own; 0 = untrained)")
    return p


def backend_name(requested: str) -> str:
    """The backend that ``requested`` ("auto" or a name) runs NumPy arrays on."""
    # the layers' own resolution: unlike pyrnn.backend_info() it does not probe for a GPU
    return resolve(requested).name


class Thresholds:
    """Collects the example's pass/fail checks; ``finish`` exits 1 if any failed."""

    def __init__(self):
        self.failed: list[str] = []

    def expect(self, ok: bool, what: str) -> None:
        print(f"  {'ok    ' if ok else 'FAILED'}  {what}")
        if not ok:
            self.failed.append(what)

    def finish(self) -> None:
        if self.failed:
            print(f"FAILED: {len(self.failed)} threshold(s) not reached")
            sys.exit(1)
        print("all thresholds reached")
