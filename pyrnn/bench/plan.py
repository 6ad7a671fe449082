"""What one run measures: its settings, the configurations per shape and each one's calls.

For a shape TxBxIxH the runner draws B sequences (x [T,B,I], upstream gradients dy [T,B,H]) and a
ragged set of lengths for them, then times, for each pass (forward; forward+backward):

- ``batched`` at each swept batch size b: calls of b sequences with no lengths (b = 1 is the
  sequential run, b = B one call for all; the latter doubles as the ragged set's padded run);
- ``lengths``: one call for all B sequences with their ragged ``lengths``;
- ``bucketed``: the sequences sorted by length and cut into buckets, one call per bucket, each
  trimmed to its longest sequence and given its lengths.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pyrnn.functional import GATES

from .contenders import Call
from .grids import Shape, batch_sizes

PASSES = {"fwd": "forward (inference)", "train": "forward+backward (training)"}


@dataclass(frozen=True)
class Settings:
    """A run's settings, as the command line gave them."""

    mode: str
    cells: tuple[str, ...]
    backends: tuple[str, ...]
    dtype: np.dtype
    threads: int
    shapes: dict[str, tuple[Shape, ...]]  # cell -> shapes
    sweep: tuple[int, ...]
    passes: tuple[str, ...]
    buckets: int
    gemm_size: int
    out: Path | None
    seed: int = 0

    def as_dict(self) -> dict:
        return {"mode": self.mode, "cells": list(self.cells), "backends": list(self.backends),
                "dtype": self.dtype.name, "threads": self.threads,
                "shapes": {c: [str(s) for s in v] for c, v in self.shapes.items()},
                "batch_sweep": list(self.sweep), "passes": list(self.passes),
                "buckets": self.buckets, "gemm_size": self.gemm_size, "seed": self.seed,
                "out": None if self.out is None else str(self.out)}


@dataclass(frozen=True)
class Config:
    """One timed configuration: a strategy and its batch size or bucket count."""

    strategy: str  # "batched", "lengths" or "bucketed"
    batch: int  # sequences per call ("bucketed": the largest bucket)
    buckets: int = 1

    @property
    def label(self) -> str:
        if self.strategy == "batched":
            return f"b={self.batch}"
        return self.strategy if self.buckets == 1 else f"{self.strategy} x{self.buckets}"


@dataclass
class ShapeData:
    """The B sequences of one shape and their ragged lengths, drawn once for every contender."""

    shape: Shape
    x: np.ndarray  # [T,B,I]
    dy: np.ndarray  # [T,B,H]
    lengths: np.ndarray  # [B] int64, drawn from T/4..T

    @classmethod
    def draw(cls, shape: Shape, dtype, seed: int) -> ShapeData:
        rng = np.random.default_rng(seed)
        T, B, I, H = shape.T, shape.B, shape.I, shape.H
        x = rng.uniform(-1, 1, (T, B, I)).astype(dtype)
        dy = rng.uniform(-1, 1, (T, B, H)).astype(dtype)
        lengths = rng.integers(max(1, T // 4), T + 1, size=B).astype(np.int64)
        return cls(shape, x, dy, lengths)


def flops(cell: str, steps: int, I: int, H: int, train: bool) -> float:
    """2*G*H*(I+H) per sequence step forward, 3x that for forward+backward.

    steps: sequence steps processed (T*b for a padded call, the sum of lengths otherwise).
    """
    return 2.0 * steps * GATES[cell] * H * (I + H) * (3 if train else 1)


def configs(shape: Shape, batch_sizes: tuple[int, ...], buckets: int) -> list[Config]:
    """The batch sweep, then the ragged strategies (bucketing needs two buckets at least)."""
    out = [Config("batched", b) for b in batch_sizes]
    out.append(Config("lengths", shape.B))
    n_buckets = min(buckets, shape.B)
    if n_buckets >= 2:
        out.append(Config("bucketed", -(-shape.B // n_buckets), n_buckets))
    return out


def calls(config: Config, data: ShapeData, train: bool) -> tuple[list[Call], int, int]:
    """The calls of ``config``, how many of them make one unit of work, and its steps.

    A unit is one call for "batched" and "lengths" and all B sequences (one call per bucket) for
    "bucketed". Every array is C-contiguous, so no call copies its input while it is timed.
    """
    T, B = data.shape.T, data.shape.B

    def call(idx, t_len, lengths):
        dy = np.ascontiguousarray(data.dy[:t_len, idx]) if train else None
        return Call(np.ascontiguousarray(data.x[:t_len, idx]), lengths, dy)

    if config.strategy == "batched":
        b = config.batch
        chunks = [np.arange(j * b, (j + 1) * b) for j in range(B // b)]
        return [call(idx, T, None) for idx in chunks], 1, T * b
    if config.strategy == "lengths":
        return [call(np.arange(B), T, data.lengths)], 1, int(data.lengths.sum())
    order = np.argsort(-data.lengths, kind="stable")
    buckets = np.array_split(order, config.buckets)
    bucket_calls = [call(idx, int(data.lengths[idx].max()), data.lengths[idx]) for idx in buckets]
    return bucket_calls, len(bucket_calls), int(data.lengths.sum())


def count_configs(settings: Settings) -> int:
    """How many configurations the run times (for the progress bar)."""
    return sum(len(configs(shape, batch_sizes(shape.B, settings.sweep), settings.buckets))
               for cell in settings.cells for shape in settings.shapes[cell]) * len(settings.passes)
