"""What the runner times: the named shape grids, the batch sizes swept and the --shapes syntax.

A shape ``TxBxIxH`` stands for B sequences of T steps: the sequential run feeds them one call
each at batch 1, the batched runs feed the same B sequences in calls of ``b`` sequences for each
swept ``b`` up to B (one call at ``b = B``).
"""

from __future__ import annotations

from dataclasses import dataclass

CELLS = ("rnn", "lstm", "gru")
MODES = ("quick", "default", "full")


@dataclass(frozen=True)
class Shape:
    """T steps, B sequences (the largest batch), I inputs, H hidden units."""

    T: int
    B: int
    I: int
    H: int

    def __str__(self) -> str:
        return f"{self.T}x{self.B}x{self.I}x{self.H}"

    def as_dict(self) -> dict:
        return {"T": self.T, "B": self.B, "I": self.I, "H": self.H}


def parse_shape(text: str) -> Shape:
    """``"100x32x128x256"`` as a Shape; ValueError naming the problem otherwise."""
    parts = text.strip().lower().split("x")
    if len(parts) != 4:
        raise ValueError(f"shape {text!r}: expected TxBxIxH, four sizes joined by 'x', "
                         f"e.g. 100x32x128x256")
    try:
        sizes = [int(p) for p in parts]
    except ValueError:
        raise ValueError(f"shape {text!r}: expected TxBxIxH with integer sizes, "
                         f"e.g. 100x32x128x256") from None
    if min(sizes) < 1:
        raise ValueError(f"shape {text!r}: every size in TxBxIxH must be >= 1")
    return Shape(*sizes)


# The minimum grid of PERFORMANCE.md, the same for every cell.
PERFORMANCE_GRID = (Shape(100, 1, 32, 64), Shape(200, 16, 64, 128), Shape(100, 32, 128, 256),
                    Shape(50, 64, 512, 1024))
QUICK_GRID = (Shape(50, 16, 64, 128),)

# DeepBench's RNN training shapes (I = H, single layer): B 64 is the largest training batch and
# the swept batch sizes 1, 2, 4 are its inference set. DeepBench varies T for GRU; 50 keeps the
# run bounded.
DEEPBENCH_GRID = {
    "rnn": tuple(Shape(50, 64, H, H) for H in (1760, 2048, 2560)),
    "lstm": tuple(Shape(25, 64, H, H) for H in (512, 1024, 2048)),
    "gru": tuple(Shape(50, 32, H, H) for H in (512, 1024, 1536, 2048, 2560, 2816)),
}
# haste's grid: B 1..128 (swept), T 50, H 128-4096 with I 64-512.
HASTE_GRID = tuple(Shape(50, 128, I, H) for I, H in ((64, 128), (128, 256), (256, 512),
                                                    (512, 1024), (512, 2048), (512, 4096)))

# The batch sizes each mode sweeps below a shape's B (B itself is always timed).
SWEEPS = {"quick": (1, 4), "default": (1, 4, 16), "full": (1, 2, 4, 8, 16, 32, 64)}


def grid(mode: str, cell: str) -> tuple[Shape, ...]:
    """The shapes a ``mode`` run times for ``cell``."""
    if mode == "quick":
        return QUICK_GRID
    if mode == "default":
        return PERFORMANCE_GRID
    return PERFORMANCE_GRID + DEEPBENCH_GRID[cell] + HASTE_GRID


def batch_sizes(B: int, sweep: tuple[int, ...]) -> tuple[int, ...]:
    """The batch sizes timed for B sequences: those of ``sweep`` below B, then B itself."""
    return tuple(sorted(b for b in set(sweep) if b < B)) + (B,)
