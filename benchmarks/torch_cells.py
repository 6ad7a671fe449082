"""One step of a cell: torch.nn against pyrnn.torch (CPU), microseconds per call.

    python benchmarks/torch_cells.py [--shapes 1:128,32:512] [--rounds 1000] [--threads N]

Times `cell(x, hx)` for LSTMCell and GRUCell with input size = hidden size, batch B and hidden
size H from --shapes (B:H pairs), in alternating blocks: once under torch.no_grad() (a decoding
or inference loop) and once with gradients (forward, then backward of the sum of the outputs).
A cell runs one step per call, so what a call costs besides the step counts in full here: at
small sizes the Python on the way to the kernel (a one-step call no longer packs its weights),
which a layer's time loop spreads over all its steps (benchmarks/RESULTS.md). Each block of
pyrnn calls follows a block of torch.nn calls, so the team's idle rule applies
(PYRNN_TEAM_IDLE_NS=0 times a steady caller).
"""

from __future__ import annotations

import argparse

import torch

import pyrnn
import pyrnn.torch

from _timing import torch_header, warmed_medians

CELLS = ("LSTMCell", "GRUCell")


def parse_shapes(text: str) -> list[tuple[int, int]]:
    shapes = []
    for item in text.split(","):
        b, _, h = item.partition(":")
        if not (b.isdigit() and h.isdigit() and int(b) > 0 and int(h) > 0):
            raise argparse.ArgumentTypeError(f"expected B:H pairs such as 1:128, got {item!r}")
        shapes.append((int(b), int(h)))
    return shapes


def make_step(model, x, hx, grad: bool):
    if grad:
        def step():
            out = model(x, hx)
            sum(o.sum() for o in (out if isinstance(out, tuple) else (out,))).backward()
    else:
        def step():
            with torch.no_grad():
                model(x, hx)
    return step


def main(shapes, rounds: int) -> None:
    print(torch_header(rounds, "calls"))
    print("| cell | B | H | pass | torch.nn us/call | pyrnn.torch us/call | speedup |")
    print("|---|---|---|---|---|---|---|")
    for cell in CELLS:
        for B, H in shapes:
            torch.manual_seed(0)
            reference = getattr(torch.nn, cell)(H, H)
            ours = getattr(pyrnn.torch, cell)(H, H)
            ours.load_state_dict(reference.state_dict())
            x = torch.randn(B, H)
            h = torch.randn(B, H)
            hx = (h, torch.randn(B, H)) if cell == "LSTMCell" else h
            for grad in (False, True):
                xin = x.clone().requires_grad_() if grad else x
                steps = [make_step(m, xin, hx, grad) for m in (reference, ours)]
                ref_s, our_s = warmed_medians(steps, rounds, block=20, warmups=5)
                print(f"| {cell} | {B} | {H} | {'fwd+bwd' if grad else 'no_grad'} | "
                      f"{ref_s * 1e6:.0f} | {our_s * 1e6:.0f} | {ref_s / our_s:.2f}x |",
                      flush=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shapes", type=parse_shapes, default=parse_shapes(
        "1:128,32:128,1:512,32:512,256:512"), help="B:H pairs, comma-separated")
    parser.add_argument("--rounds", type=int, default=1000, help="timed calls per contender")
    parser.add_argument("--threads", type=int, default=None,
                        help="threads for both torch and pyrnn (default: torch's, which "
                             "pyrnn.torch follows)")
    args = parser.parse_args()
    if args.rounds < 1:
        parser.error(f"--rounds: expected at least 1, got {args.rounds}")
    if args.threads is not None:
        torch.set_num_threads(args.threads)
        pyrnn.set_num_threads(args.threads)
    main(args.shapes, args.rounds)
