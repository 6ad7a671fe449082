"""A small PyTorch training loop: torch.nn against pyrnn.torch, time per step (CPU).

The model is one recurrent layer (T=50, I=32, H=128) with a linear head on every step, trained
with Adam on a regression target; one step is zero_grad, forward, MSE loss, backward and
optimizer step. Both contenders start from the same weights and see the same data.

    python -m pytest benchmarks/test_torch_training.py   # pytest-benchmark tables
    python benchmarks/test_torch_training.py [--rounds 50] [--threads N]   # Markdown table

Target: pyrnn.torch at least 3x faster per step than torch.nn at batch 1. The Markdown table also
times a third model whose recurrent layer costs nothing (it returns zeros and zero gradients):
torch.nn's step over that one is the most any recurrent layer could gain in this loop.
"""

from __future__ import annotations

import argparse
import copy

import pytest
import torch
from torch import nn

import pyrnn
import pyrnn.torch

from _timing import warmed_medians

T, I, H = 50, 32, 128
CELLS = {"LSTM": nn.LSTM, "GRU": nn.GRU}
BATCHES = (1, 32)


class Regressor(nn.Module):
    def __init__(self, cell: str):
        super().__init__()
        self.rnn = CELLS[cell](I, H)
        self.head = nn.Linear(H, 1)

    def forward(self, x):
        out, _ = self.rnn(x)
        return self.head(out)


class _ZeroCost(torch.autograd.Function):
    """Zeros [T,B,H] out, zero gradients back to every parameter (so Adam still updates them)."""

    @staticmethod
    def forward(ctx, x, w_hh, *params):
        ctx.params = (w_hh, *params)
        return x.new_zeros(x.shape[0], x.shape[1], w_hh.shape[1])

    @staticmethod
    def backward(ctx, grad):
        return (None, *(torch.zeros_like(p) for p in ctx.params))


class ZeroCostLayer(nn.Module):
    """Stands in for a recurrent layer with the same parameters, at no cost."""

    def __init__(self, layer: nn.Module):
        super().__init__()
        self.layer = layer

    def forward(self, x):
        layer = self.layer
        others = [p for p in layer.parameters() if p is not layer.weight_hh_l0]
        return _ZeroCost.apply(x, layer.weight_hh_l0, *others), None


def make_pair(cell: str, batch: int):
    """(torch.nn model, pyrnn.torch model) with the same weights, and one batch of data."""
    torch.manual_seed(0)
    reference = Regressor(cell)
    ours = pyrnn.torch.convert(copy.deepcopy(reference))
    x = torch.randn(T, batch, I)
    target = torch.randn(T, batch, 1)
    return reference, ours, x, target


def make_step(model, x, target, fused_adam: bool = False):
    # fused=True is torch's single-kernel Adam (CPU too since torch 2.4): the optimizer's
    # fixed cost per step, the same for both contenders, shrinks next to the recurrent layer's
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3, fused=fused_adam)

    def step():
        optimizer.zero_grad()
        loss = nn.functional.mse_loss(model(x), target)
        loss.backward()
        optimizer.step()
        return loss

    return step


def check_same_training(cell: str, batch: int) -> None:
    """Both contenders take the same three steps (so the timing compares equal work)."""
    reference, ours, x, target = make_pair(cell, batch)
    ref_step, our_step = make_step(reference, x, target), make_step(ours, x, target)
    for _ in range(3):
        a, b = ref_step().item(), our_step().item()
        assert abs(a - b) <= 1e-4 * abs(a), (cell, batch, a, b)


@pytest.mark.parametrize("fused_adam", [False, True], ids=["adam", "fused_adam"])
@pytest.mark.parametrize("batch", BATCHES, ids=lambda b: f"B{b}")
@pytest.mark.parametrize("cell", list(CELLS))
@pytest.mark.parametrize("contender", ["torch.nn", "pyrnn.torch"])
def test_training_step(benchmark, contender, cell, batch, fused_adam):
    if contender == "pyrnn.torch" and not fused_adam:
        check_same_training(cell, batch)
    reference, ours, x, target = make_pair(cell, batch)
    step = make_step(ours if contender == "pyrnn.torch" else reference, x, target, fused_adam)
    benchmark.group = (f"{cell} T={T} B={batch} I={I} H={H} training step, "
                       f"{'fused ' if fused_adam else ''}Adam")
    benchmark.extra_info["backend"] = pyrnn.backend_info()["auto"]
    benchmark.pedantic(step, rounds=30, warmup_rounds=3)


def main(rounds: int = 50) -> None:
    info = pyrnn.backend_info()
    backend = info["auto"]
    if backend == "c":
        backend += f" ({info['c'].get('isa')}, {info['c'].get('threads')} threads)"
    print(f"pyrnn backend {backend}, torch {torch.__version__}, {torch.get_num_threads()} "
          f"torch threads; T={T} I={I} H={H}, Adam; median of {rounds} steps per contender, "
          f"in alternating blocks\n")
    print("| cell | batch | optimizer | torch.nn ms/step | pyrnn.torch ms/step | speedup | "
          "zero-cost layer ms/step | most any layer could gain |")
    print("|---|---|---|---|---|---|---|---|")
    for cell in CELLS:
        for batch in BATCHES:
            check_same_training(cell, batch)
            for fused in (False, True):
                reference, ours, x, target = make_pair(cell, batch)
                free = copy.deepcopy(reference)
                free.rnn = ZeroCostLayer(free.rnn)
                steps = [make_step(model, x, target, fused) for model in (reference, ours, free)]
                ref_ms, our_ms, free_ms = (1e3 * m for m in warmed_medians(steps, rounds, block=10,
                                                                             warmups=3))
                print(f"| {cell} | {batch} | {'Adam(fused=True)' if fused else 'Adam()'} | "
                      f"{ref_ms:.2f} | {our_ms:.2f} | {ref_ms / our_ms:.2f}x | {free_ms:.2f} | "
                      f"{ref_ms / free_ms:.2f}x |")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=50, help="timed steps per contender")
    parser.add_argument("--threads", type=int, default=None,
                        help="threads for both torch and pyrnn (default: torch's, which "
                             "pyrnn.torch follows)")
    args = parser.parse_args()
    if args.threads is not None:
        torch.set_num_threads(args.threads)
        pyrnn.set_num_threads(args.threads)
    main(args.rounds)
