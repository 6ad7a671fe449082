"""Models under torch.compile: torch.nn against pyrnn.torch, each eager and compiled (CPU).

    python benchmarks/torch_compile.py [--rounds 200] [--compiler inductor] [--quick]

Two models, each timed as four contenders in alternating blocks (torch.nn eager, torch.nn
compiled, pyrnn.torch eager, pyrnn.torch compiled), without gradients and with them (forward,
then backward of the sum of the outputs):
- one recurrent layer (LSTM, GRU) over T steps, traced with torch._dynamo.config.allow_rnn
  (without it the compiler leaves both libraries' layers to eager mode), where pyrnn.torch
  compiles to its operators;
- a loop of T cell steps (LSTMCell, GRUCell), which the compiler traces: compiled, pyrnn.torch's
  cells run torch.nn's step (a FallbackWarning, silenced here), which the compiler fuses.
Each compiled contender is compiled and warmed up before the timing; compile time is not counted.
"""

from __future__ import annotations

import argparse
import time
import warnings

import torch
import torch._dynamo

import pyrnn.torch

from _timing import add_shape_options, alternating_medians, shapes_and_rounds, torch_header

LAYERS = ("LSTM", "GRU")
CELLS = ("LSTMCell", "GRUCell")


def cell_loop(cell, xs, h):
    """T steps of ``cell`` from state ``h`` (LSTM: (h, c)); the stacked hidden states."""
    outs = []
    for x in xs:
        h = cell(x, h)
        outs.append(h[0] if isinstance(h, tuple) else h)
    return torch.stack(outs)


def layer_call(layer, xs, h):
    return layer(xs, h)[0]


def make_call(run, module, xs, h, grad: bool):
    if grad:
        def call():
            run(module, xs, h).sum().backward()
    else:
        def call():
            with torch.no_grad():
                run(module, xs, h)
    return call


def contenders(kind: str, T: int, B: int, I: int, H: int, grad: bool, compiler: str):
    """The four calls (torch.nn eager, compiled; pyrnn.torch eager, compiled), warmed up."""
    torch.manual_seed(0)
    is_cell = kind in CELLS
    reference = getattr(torch.nn, kind)(I, H)
    ours = getattr(pyrnn.torch, kind)(I, H)
    ours.load_state_dict(reference.state_dict())
    xs = torch.randn(T, B, I, requires_grad=grad)
    h = torch.randn(B, H) if is_cell else torch.randn(1, B, H)
    h = (h, torch.randn_like(h)) if kind.startswith("LSTM") else h
    run = cell_loop if is_cell else layer_call
    compiled = torch.compile(run, backend=compiler, dynamic=False)
    calls = [make_call(fn, m, xs, h, grad) for m in (reference, ours) for fn in (run, compiled)]
    for call in calls:
        for _ in range(3):
            call()
    return calls


def main(models, shapes, rounds: int, compiler: str) -> None:
    print(torch_header(rounds, "calls (ms each)", f", compiler {compiler}"))
    print("| model | T | B | I | H | pass | torch.nn eager | torch.nn compiled | pyrnn.torch "
          "eager | pyrnn.torch compiled | pyrnn compiled vs torch.nn compiled |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    with torch._dynamo.config.patch(allow_rnn=True), warnings.catch_warnings():
        warnings.simplefilter("ignore", pyrnn.torch.FallbackWarning)
        for kind in models:
            for T, B, I, H in shapes:
                for grad in (False, True):
                    torch._dynamo.reset()
                    start = time.perf_counter()
                    calls = contenders(kind, T, B, I, H, grad, compiler)
                    ready = time.perf_counter() - start
                    ms = [1e3 * t for t in alternating_medians(calls, rounds,
                                                               max(1, min(10, rounds)))]
                    print(f"| {kind} | {T} | {B} | {I} | {H} | "
                          f"{'fwd+bwd' if grad else 'no_grad'} | "
                          + " | ".join(f"{t:.3f}" for t in ms)
                          + f" | {ms[1] / ms[3]:.2f}x |", flush=True)
                    if ready > 60:
                        print(f"(compiling and warming up took {ready:.0f} s)", flush=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_shape_options(parser, rounds=200, quick_rounds=4)
    parser.add_argument("--models", nargs="+", choices=LAYERS + CELLS, default=LAYERS + CELLS,
                        help="which models (default: all)")
    parser.add_argument("--compiler", default="inductor",
                        help="torch.compile's backend (default inductor; aot_eager compiles "
                             "fastest)")
    args = parser.parse_args()
    main(args.models, *shapes_and_rounds(parser, args), args.compiler)
