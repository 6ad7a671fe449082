"""The command line of ``python -m pyrnn.bench``: parse, validate, and turn into Settings."""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

import pyrnn

from .contenders import BACKENDS, PYRNN_BACKENDS, torch_version
from .grids import CELLS, SWEEPS, grid, parse_shape
from .machine import GEMM_SIZE, usable_cpus
from .plan import PASSES, Settings

DESCRIPTION = """\
Time pyrnn's RNN, LSTM and GRU layers on every available backend (and PyTorch's, on the same
weights and inputs): N sequences one call each at batch 1 (sequential) against the same
sequences in batches, and ragged lengths padded, with `lengths`, and bucketed. Prints a table
per cell on stdout (progress goes to stderr); with --out, also results.json and PNG plots."""

EPILOG = """\
examples:
  python -m pyrnn.bench --quick
  python -m pyrnn.bench --cells lstm --backends c,torch --shapes 100x32x128x256 --out bench-out
  python -m pyrnn.bench --full --dtype float64 --threads 1"""


def _list_of(what: str, convert):
    """An argparse type: a comma-separated list, each item converted (ValueError = bad item)."""

    def parse(text: str) -> tuple:
        items = [item.strip() for item in text.split(",")]
        if not all(items):
            raise argparse.ArgumentTypeError(f"expected a comma-separated list of {what}, "
                                             f"got {text!r}")
        try:
            converted = [convert(item) for item in items]
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None
        return tuple(dict.fromkeys(converted))  # without repeats, in the order given

    return parse


def _one_of(choices: tuple[str, ...]):
    def convert(item: str) -> str:
        if item not in choices:
            raise ValueError(f"{item!r} is not one of {', '.join(choices)}")
        return item

    return convert


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise ValueError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise ValueError(f"expected a positive integer, got {value}")
    return value


def _argparse_type(convert):
    def parse(text: str):
        try:
            return convert(text)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    return parse


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m pyrnn.bench", description=DESCRIPTION,
                                epilog=EPILOG,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    size = p.add_mutually_exclusive_group()
    size.add_argument("--quick", action="store_true",
                      help="one small shape per cell, short timings (under a minute)")
    size.add_argument("--full", action="store_true",
                      help="add the DeepBench and haste grids (long: hours with the numpy "
                      "backend in the race; --backends c,torch keeps it shorter)")
    p.add_argument("--cells", type=_list_of("cells", _one_of(CELLS)), default=CELLS,
                   metavar="LIST", help="cells to time, from rnn,lstm,gru (default: all)")
    p.add_argument("--backends", type=_list_of("backends", _one_of(BACKENDS)), default=None,
                   metavar="LIST", help="from numpy,c,cuda,torch (default: every one "
                   "available here, but beyond --quick numpy only when neither c nor cuda is; "
                   "torch is PyTorch's CPU layer with the same weights)")
    p.add_argument("--dtype", choices=("float32", "float64"), default="float32",
                   help="data type (default: float32)")
    p.add_argument("--threads", type=_argparse_type(_positive_int), default=usable_cpus(),
                   metavar="N", help="threads for pyrnn's C kernels, PyTorch and (with "
                   "threadpoolctl) NumPy's BLAS (default: the usable CPUs, %(default)s here)")
    p.add_argument("--shapes", type=_list_of("shapes TxBxIxH", parse_shape), default=None,
                   metavar="TxBxIxH,...", help="shapes to time instead of the mode's grid: T "
                   "steps, B sequences (the largest batch), I inputs, H hidden units")
    p.add_argument("--batch-sizes", type=_list_of("batch sizes", _positive_int), default=None,
                   metavar="LIST", help="batch sizes to sweep below each shape's B, which is "
                   "always timed (default: quick 1,4; default 1,4,16; full 1,2,4,...,64)")
    p.add_argument("--passes", type=_list_of("passes", _one_of(tuple(PASSES))),
                   default=tuple(PASSES), metavar="LIST",
                   help="fwd (inference) and/or train (forward+backward) (default: both)")
    p.add_argument("--buckets", type=_argparse_type(_positive_int), default=4, metavar="K",
                   help="length buckets for the bucketed ragged run; 1 leaves it out "
                   "(default: 4)")
    p.add_argument("--gemm-size", type=_argparse_type(_positive_int), default=GEMM_SIZE,
                   metavar="N", help="size of the N^3 matrix product that measures the GEMM "
                   "ceiling (default: %(default)s)")
    p.add_argument("--out", type=Path, default=None, metavar="DIR",
                   help="write results.json and PNG plots into DIR (created if needed)")
    return p


def why_unavailable(name: str) -> str | None:
    """None when the backend can run here, else why not."""
    if name == "torch":
        return None if torch_version() is not None else "PyTorch is not installed"
    if name in pyrnn.available_backends():
        return None
    return pyrnn.backend_info()["unavailable"].get(name, "not available")


def default_backends(mode: str) -> tuple[str, ...]:
    """Every backend available here; beyond --quick, the NumPy reference only when nothing
    compiled is there (it still checks every result; timing it on large shapes takes long)."""
    available = tuple(b for b in (*PYRNN_BACKENDS, "torch") if why_unavailable(b) is None)
    compiled = any(b in available for b in ("c", "cuda"))
    if mode != "quick" and compiled:
        return tuple(b for b in available if b != "numpy")
    return available


def parse_args(argv: list[str] | None = None) -> Settings:
    """Settings from ``argv``; a bad argument exits through argparse with status 2."""
    parser = build_parser()
    args = parser.parse_args(argv)
    mode = "quick" if args.quick else "full" if args.full else "default"
    backends = default_backends(mode) if args.backends is None else args.backends
    for name in backends:
        why = why_unavailable(name)
        if why is not None:
            available = [b for b in BACKENDS if why_unavailable(b) is None]
            parser.error(f"--backends: {name!r} is not available here ({why}); available: "
                         f"{', '.join(available)}")
    if args.out is not None and args.out.exists() and not args.out.is_dir():
        parser.error(f"--out: {str(args.out)!r} exists and is not a directory")
    shapes = {cell: args.shapes or grid(mode, cell) for cell in args.cells}
    return Settings(mode=mode, cells=args.cells, backends=backends,
                    dtype=np.dtype(args.dtype), threads=args.threads, shapes=shapes,
                    sweep=args.batch_sizes or SWEEPS[mode], passes=args.passes,
                    buckets=args.buckets, gemm_size=args.gemm_size, out=args.out)
