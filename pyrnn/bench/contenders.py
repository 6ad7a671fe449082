"""The things being timed: a pyrnn layer on one backend, or PyTorch's layer with the same weights.

A contender turns a list of calls (inputs of one call each) into two functions: ``run(k)`` does
call ``k`` (cycling through the list) for the timer, ``result(k)`` does it once and returns every
output and gradient as NumPy arrays for the correctness check.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

import pyrnn

PYRNN_BACKENDS = ("numpy", "c", "cuda")
BACKENDS = (*PYRNN_BACKENDS, "torch")
_LAYERS = {"rnn": "RNN", "lstm": "LSTM", "gru": "GRU"}


@dataclass(frozen=True)
class Call:
    """One call's inputs: x [Tc,b,I], lengths [b] int64 or None, dy [Tc,b,H] (training only)."""

    x: np.ndarray
    lengths: np.ndarray | None
    dy: np.ndarray | None


Runner = Callable[[int], None]
ResultFn = Callable[[int], dict]


def torch_version() -> str | None:
    """PyTorch's version when it imports, else None."""
    try:
        import torch
    except ImportError:
        return None
    return torch.__version__


def reference_layer(cell: str, I: int, H: int, dtype, seed: int):
    """The layer on the NumPy reference whose weights every contender copies."""
    return getattr(pyrnn, _LAYERS[cell])(I, H, dtype=dtype, backend="numpy", seed=seed)


class PyrnnContender:
    """A pyrnn layer on ``backend`` (numpy, c or cuda) with the reference's weights."""

    def __init__(self, backend: str, reference):
        self.name = backend
        kind = type(reference)
        self.layer = kind(reference.input_size, reference.hidden_size, dtype=reference.dtype,
                          backend=backend)
        self.layer.load_state_dict(reference.state_dict())

    def prepare(self, calls: list[Call], train: bool) -> tuple[Runner, ResultFn]:
        layer = self.layer

        def outputs(call: Call) -> dict:
            if not train:
                out, state = layer(call.x, None, call.lengths)
                return _named(out, state)
            out, state, ctx = layer.forward_train(call.x, None, call.lengths)
            dx, _, grads = layer.backward(ctx, call.dy)
            return {**_named(out, state), "dx": dx, **grads}

        def run(k: int) -> None:
            outputs(calls[k % len(calls)])

        def result(k: int) -> dict:
            return {name: np.asarray(a) for name, a in outputs(calls[k % len(calls)]).items()}

        return run, result


class TorchContender:
    """PyTorch's CPU layer (nn.RNN/LSTM/GRU) loaded with the reference's state_dict."""

    name = "torch"

    def __init__(self, reference):
        import torch

        self.torch = torch
        dtype = {np.dtype(np.float32): torch.float32,
                 np.dtype(np.float64): torch.float64}[reference.dtype]
        self.layer = getattr(torch.nn, type(reference).__name__)(
            reference.input_size, reference.hidden_size, dtype=dtype)
        self.layer.load_state_dict({k: torch.from_numpy(v) for k, v in
                                    reference.state_dict().items()})

    def prepare(self, calls: list[Call], train: bool) -> tuple[Runner, ResultFn]:
        torch, layer = self.torch, self.layer
        pack = torch.nn.utils.rnn.pack_padded_sequence
        unpack = torch.nn.utils.rnn.pad_packed_sequence
        # The tensors share the calls' NumPy buffers: no copy is timed.
        prepared = [(torch.from_numpy(c.x).requires_grad_(train),
                     None if c.lengths is None else torch.from_numpy(c.lengths),
                     None if c.dy is None else torch.from_numpy(c.dy)) for c in calls]

        def forward(x, lengths):
            if lengths is None:
                return layer(x)
            packed_out, state = layer(pack(x, lengths, enforce_sorted=False))
            return unpack(packed_out, total_length=x.shape[0])[0], state

        def outputs(k: int):
            x, lengths, dy = prepared[k % len(prepared)]
            if not train:
                with torch.inference_mode():
                    return forward(x, lengths)
            x.grad = None
            layer.zero_grad(set_to_none=True)
            out, state = forward(x, lengths)
            out.backward(dy)
            return out, state

        def result(k: int) -> dict:
            out, state = outputs(k)
            named = _named(out, state)
            if train:
                named["dx"] = prepared[k % len(prepared)][0].grad
                named.update({n: p.grad for n, p in layer.named_parameters()})
            return {n: a.detach().numpy() for n, a in named.items()}

        return outputs, result


def _named(out, state) -> dict:
    """out, h_n and (LSTM) c_n by name; state is h_n or the pair (h_n, c_n)."""
    if isinstance(state, tuple):
        return {"out": out, "h_n": state[0], "c_n": state[1]}
    return {"out": out, "h_n": state}


def make_contender(name: str, reference):
    """The contender called ``name`` (a pyrnn backend or "torch")."""
    if name == "torch":
        return TorchContender(reference)
    return PyrnnContender(name, reference)
