"""A training step with a gradient penalty (a second derivative): torch.nn against pyrnn.torch
(CPU), milliseconds a step.

    python benchmarks/torch_second_derivatives.py [--models LSTM GRU] [--shapes TxBxIxH ...]
                                                  [--rounds 40] [--quick]

A "penalty" step is forward, the input's gradient with ``create_graph=True``, then backward of
the loss plus that gradient's squared norm (as WGAN-GP and input-gradient regularisers do); a
"plain" step is forward and backward of the loss alone. pyrnn's fused backward computes outside
autograd, so a backward asked for a graph runs the forward again through torch's operators
(pyrnn/torch/_twice.py): the penalty step pays for torch's forward and backward besides pyrnn's.
"""

from __future__ import annotations

import argparse

import torch

import pyrnn.torch

from _timing import add_shape_options, shapes_and_rounds, torch_header, warmed_medians

MODELS = ("LSTM", "GRU")


def make_step(model, x, penalty: bool):
    def step():
        xg = x.clone().requires_grad_()
        out, _ = model(xg)
        loss = out.pow(2).mean()
        if penalty:
            grad, = torch.autograd.grad(loss, xg, create_graph=True)
            loss = loss + grad.pow(2).sum()
        loss.backward()
    return step


def main(models, shapes, rounds: int) -> None:
    print(torch_header(rounds, "steps"))
    print("| model | T | B | I | H | step | torch.nn ms | pyrnn.torch ms | speedup |")
    print("|---|---|---|---|---|---|---|---|---|")
    for name in models:
        for T, B, I, H in shapes:
            torch.manual_seed(0)
            reference = getattr(torch.nn, name)(I, H)
            ours = getattr(pyrnn.torch, name)(I, H)
            ours.load_state_dict(reference.state_dict())
            x = torch.randn(T, B, I)
            for penalty in (True, False):
                ref_s, our_s = warmed_medians([make_step(m, x, penalty) for m in (reference, ours)],
                                              rounds, block=5)
                print(f"| {name} | {T} | {B} | {I} | {H} | {'penalty' if penalty else 'plain'} | "
                      f"{ref_s * 1e3:.2f} | {our_s * 1e3:.2f} | {ref_s / our_s:.2f}x |",
                      flush=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_shape_options(parser, rounds=40, quick_rounds=2)
    parser.add_argument("--models", nargs="+", choices=MODELS, default=list(MODELS))
    args = parser.parse_args()
    main(args.models, *shapes_and_rounds(parser, args))
