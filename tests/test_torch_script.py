"""torch.jit.script on models holding pyrnn.torch modules: TorchScript compiles their torch.nn
parents' forward in their place (it cannot call pyrnn's kernels), with the same parameters."""

from __future__ import annotations

import io
import warnings

import pytest
import torch
from torch import nn

import pyrnn.torch as pt

# torch 2.13 deprecates TorchScript; pyrnn.torch keeps working with it while torch does
pytestmark = pytest.mark.filterwarnings(
    r"ignore:`torch\.jit\.\w+` is deprecated:DeprecationWarning")


class Tagger(nn.Module):
    def __init__(self):
        super().__init__()
        self.rnn = pt.GRU(3, 4, num_layers=2, bidirectional=True)
        self.cell = pt.LSTMCell(3, 4)
        self.head = nn.Linear(8, 2)

    def forward(self, x):
        out, _ = self.rnn(x)
        h, _ = self.cell(x[0])
        return self.head(out) + h.sum()


def _script(module):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        scripted = torch.jit.script(module)
    return scripted, [str(w.message) for w in caught if w.category is pt.FallbackWarning]


def test_a_scripted_model_runs_torch_nn_in_place_of_pyrnn():
    torch.manual_seed(0)
    model = Tagger()
    rnn, cell = model.rnn, model.cell
    x = torch.randn(5, 2, 3)
    want = model(x)
    scripted, messages = _script(model)
    assert torch.allclose(scripted(x), want, atol=1e-6)
    assert len(messages) == 2 and "torch.nn.GRU's forward" in messages[0]
    assert "torch.nn.LSTMCell's forward" in messages[1]
    # torch.jit.script put the torch.nn parents in the model, holding the same parameters
    assert type(model.rnn) is nn.GRU and type(model.cell) is nn.LSTMCell
    assert model.rnn.weight_hh_l1_reverse is rnn.weight_hh_l1_reverse
    assert model.cell.weight_ih is cell.weight_ih
    assert not hasattr(model.rnn, "backend")
    buffer = io.BytesIO()
    torch.jit.save(scripted, buffer)
    buffer.seek(0)
    assert torch.allclose(torch.jit.load(buffer)(x), want, atol=1e-6)
    pt.convert(model)  # pyrnn's again
    assert type(model.rnn) is pt.GRU and type(model.cell) is pt.LSTMCell
    assert torch.allclose(model(x), want, atol=1e-6)


@pytest.mark.parametrize("cls", [pt.RNNCell, pt.LSTMCell, pt.GRUCell])
def test_a_scripted_cell_computes_as_the_module(cls):
    cell = cls(3, 4, backend="numpy")
    x = torch.randn(2, 3)
    scripted, messages = _script(cell)
    assert len(messages) == 1
    want, got = cell(x), scripted(x)
    for a, b in zip(want if isinstance(want, tuple) else (want,),
                    got if isinstance(got, tuple) else (got,)):
        assert torch.allclose(a, b, atol=1e-6)
    assert type(cell) is cls  # scripting a module itself leaves it as it was
