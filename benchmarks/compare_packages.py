"""pyrnn's Python at a git revision against the working tree's, in one process, in alternating
blocks: the A/B behind RESULTS.md's measurements of what a call does around its kernel (cells
and short layers, the NumPy API and pyrnn.torch), on a machine whose speed drifts.

    python benchmarks/compare_packages.py REV [--groups GROUP,...] [--rounds 40] [--threads 2]
                                          [--quick]
    # GROUP: torch-cells, numpy-cells, torch-layers, numpy-layers, torch-compiled (default: all)

REV's ``pyrnn/`` is extracted (``git archive``) into a temporary folder as ``pyrnn_at_rev``
(pyrnn imports itself relatively, and its backends by the names in ``_backend._MODULES``, which
are pointed at REV's own) with a copy of the working tree's built extension, so both packages
run the same kernels: REV must have this build's C API, and what differs is the Python, REV's
``_c.py`` included.
Each row prints both packages' median microseconds a call and the new over the old. Calls
"no_grad"/"call" compute no gradients; "fwd+bwd" run forward, then backward (pyrnn.torch: of
the outputs' sum; the NumPy API: forward_train, then backward of ones, for a layer of its
output sequence). "torch-compiled" times layers under torch.compile with allow_rnn, which run
pyrnn's operators (inductor; aot_eager with --quick), compiled without torch's caches; it needs
REV's operators under other names than the tree's (``pyrnn.torch._ops.REVISION``), since the
operator registered last would run for both packages.
"""

from __future__ import annotations

import argparse
import importlib
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from _timing import alternating_medians

ROOT = Path(__file__).resolve().parent.parent
CELLS = ("LSTMCell", "GRUCell", "RNNCell")
LAYERS = ("LSTM", "GRU", "RNN")
# quick -> the layers' TxBxIxH
_LAYER_SHAPES = {True: ((3, 1, 2, 4),),
                 False: ((100, 1, 32, 64), (50, 1, 32, 128), (200, 16, 64, 128))}
_COMPILED_SHAPES = {True: ((3, 1, 2, 4),), False: ((50, 1, 32, 128), (50, 32, 128, 128))}


def load_at(rev: str, where: Path):
    """The package at ``rev`` as module ``pyrnn_at_rev``, with this tree's extension."""
    import pyrnn._pyrnn_c as ext

    archive = subprocess.run(["git", "archive", rev, "pyrnn"], cwd=ROOT, capture_output=True,
                             check=True).stdout
    subprocess.run(["tar", "-x", "-C", str(where)], input=archive, check=True)
    package = where / "pyrnn_at_rev"
    (where / "pyrnn").rename(package)
    backends = package / "_backend.py"  # "pyrnn._c" and the others: REV's, not the tree's
    backends.write_text(backends.read_text().replace('"pyrnn.', '"pyrnn_at_rev.'))
    shutil.copy(ext.__file__, package / Path(ext.__file__).name)
    sys.path.insert(0, str(where))
    return importlib.import_module("pyrnn_at_rev")


def torch_step(module, x, hx, grad: bool, outputs):
    """A call of ``module``; with ``grad``, then backward of the sum of ``outputs(result)``."""
    import torch

    def run():
        if grad:
            sum(o.sum() for o in outputs(module(x, hx))).backward()
        else:
            with torch.no_grad():
                module(x, hx)
    return run


def cell_outputs(result):
    return result if isinstance(result, tuple) else (result,)


def layer_outputs(result):
    return result[:1]  # the output sequence


def numpy_step(module, x, hx, grad: bool):
    def run():
        if grad:
            state, ctx = module.forward_train(x, hx)
            ones = [np.ones_like(s) for s in (state if isinstance(state, tuple) else (state,))]
            module.backward(ctx, *ones)
        else:
            module(x, hx)
    return run


def numpy_layer_step(module, x, grad: bool):
    def run():
        if grad:
            out, _, ctx = module.forward_train(x)
            module.backward(ctx, np.ones_like(out))
        else:
            module(x)
    return run


def torch_cells(packages, quick: bool):
    import torch

    for cell in CELLS[:1] if quick else CELLS:
        for B, H in ((1, 8),) if quick else ((1, 128), (32, 512)):
            for grad in (False, True):
                torch.manual_seed(0)
                x = torch.randn(B, H)
                hx = (torch.randn(B, H), torch.randn(B, H)) if cell == "LSTMCell" \
                    else torch.randn(B, H)
                runs = []
                for package in packages:
                    module = getattr(package.torch, cell)(H, H)
                    module.load_state_dict(getattr(torch.nn, cell)(H, H).state_dict())
                    runs.append(torch_step(module, x, hx, grad, cell_outputs))
                yield f"pyrnn.torch {cell} B={B} H={H} {'fwd+bwd' if grad else 'no_grad'}", runs


def numpy_cells(packages, quick: bool):
    rng = np.random.default_rng(0)
    for cell in CELLS[:1] if quick else CELLS:
        for B, H in ((1, 8),) if quick else ((1, 128), (32, 512)):
            for grad in (False, True):
                x, h = rng.random((B, H), np.float32), rng.random((B, H), np.float32)
                hx = (h, h.copy()) if cell == "LSTMCell" else h
                runs = [numpy_step(getattr(package, cell)(H, H, seed=0), x, hx, grad)
                        for package in packages]
                yield f"pyrnn.{cell} B={B} H={H} {'fwd+bwd' if grad else 'call'}", runs


def torch_layers(packages, quick: bool):
    for cell in LAYERS[:1] if quick else LAYERS:
        for T, B, I, H in _LAYER_SHAPES[quick]:
            for grad in (False, True):
                yield (f"pyrnn.torch {cell} {T}x{B}x{I}x{H} {'fwd+bwd' if grad else 'no_grad'}",
                       layer_runs(packages, cell, (T, B, I, H), grad, lambda module: module))


def layer_runs(packages, cell: str, shape, grad: bool, wrap) -> list:
    """Each package's ``torch_step`` of a ``cell`` layer (torch.nn's weights) of TxBxIxH
    ``shape``, the module passed through ``wrap`` (torch.compile, or as it is)."""
    import torch

    T, B, I, H = shape
    torch.manual_seed(0)
    x = torch.randn(T, B, I)
    runs = []
    for package in packages:
        module = getattr(package.torch, cell)(I, H)
        module.load_state_dict(getattr(torch.nn, cell)(I, H).state_dict())
        runs.append(torch_step(wrap(module), x, None, grad, layer_outputs))
    return runs


def torch_compiled(packages, quick: bool):
    import torch
    import torch._dynamo
    import torch._inductor.config

    old, new = (package.torch._ops for package in packages)
    if getattr(old, "REVISION", 1) == new.REVISION:
        print(f"torch-compiled: skipped, both packages' operators are revision {new.REVISION} "
              "(the same names: the one registered last would run for both)")
        return
    torch._dynamo.config.allow_rnn = True  # the compiler traces layers, into pyrnn's operators
    torch._inductor.config.force_disable_caches = True  # a cache may hold an older pyrnn's graphs
    compiler = "aot_eager" if quick else "inductor"
    for cell in LAYERS[:1] if quick else LAYERS[:2]:
        for T, B, I, H in _COMPILED_SHAPES[quick]:
            yield (f"pyrnn.torch {cell} {T}x{B}x{I}x{H} compiled fwd+bwd",
                   layer_runs(packages, cell, (T, B, I, H), True,
                              lambda module: torch.compile(module, backend=compiler)))


def numpy_layers(packages, quick: bool):
    rng = np.random.default_rng(0)
    for cell in LAYERS[:1] if quick else LAYERS:
        for T, B, I, H in _LAYER_SHAPES[quick]:
            for grad in (False, True):
                x = rng.random((T, B, I), np.float32)
                runs = [numpy_layer_step(getattr(package, cell)(I, H, seed=0), x, grad)
                        for package in packages]
                yield f"pyrnn.{cell} {T}x{B}x{I}x{H} {'fwd+bwd' if grad else 'call'}", runs


GROUPS = {"torch-cells": torch_cells, "numpy-cells": numpy_cells, "torch-layers": torch_layers,
          "numpy-layers": numpy_layers, "torch-compiled": torch_compiled}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("rev", help="the git revision whose pyrnn/ is the old package")
    parser.add_argument("--groups", default=",".join(GROUPS),
                        help=f"comma-separated, of {', '.join(GROUPS)}")
    parser.add_argument("--rounds", type=int, default=40, help="blocks of calls per package")
    parser.add_argument("--threads", type=int, default=2, help="torch's and pyrnn's threads")
    parser.add_argument("--quick", action="store_true", help="one small case per group")
    args = parser.parse_args()
    groups = args.groups.split(",")
    unknown = [g for g in groups if g not in GROUPS]
    if unknown:
        parser.error(f"unknown groups {unknown}; choose from {', '.join(GROUPS)}")

    import pyrnn

    with tempfile.TemporaryDirectory() as where:
        old = load_at(args.rev, Path(where))
        for package in (old, pyrnn):
            package.set_num_threads(args.threads)
        if any(g.startswith("torch") for g in groups):
            import torch

            import pyrnn.torch  # noqa: F401  (the drop-ins of each package)

            importlib.import_module("pyrnn_at_rev.torch")
            torch.set_num_threads(args.threads)
        print(f"old: pyrnn at {args.rev}; new: the working tree; {args.threads} threads; "
              f"median of {args.rounds} blocks each, alternating")
        for group in groups:
            for name, runs in GROUPS[group]((old, pyrnn), args.quick):
                for run in runs:  # each once before timing: imports, first allocations
                    run()
                start = time.perf_counter()
                runs[0]()
                once = time.perf_counter() - start
                block = max(2, min(200, int(0.02 / max(once, 1e-6))))
                t_old, t_new = alternating_medians(runs, args.rounds * block, block)
                print(f"{name}: old {t_old * 1e6:.1f} us, new {t_new * 1e6:.1f} us, "
                      f"new/old {t_new / t_old:.3f}", flush=True)


if __name__ == "__main__":
    main()
