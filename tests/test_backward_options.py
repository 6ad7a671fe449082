"""The NumPy API's backward asked for less: ``input_grad=False`` (x is data) and
``state_grad=False`` leave those gradients out, the backends are asked only for the rest (the C
kernels skip their work), and every gradient still given is the full call's, bit for bit."""

import numpy as np
import pytest

import pyrnn

from .conftest import VARIANTS, variant_id

ASKED = [(False, True), (True, False), (False, False)]


def spy_on_backward(monkeypatch, backend: str, kind: str) -> list:
    """The ``wanted`` of each call of the backend's ``<kind>_backward`` (None: every
    gradient)."""
    be = pyrnn._backend.resolve(backend)
    original = getattr(be, f"{kind}_backward")
    asked = []

    def spy(*args, wanted=None, **kwargs):
        asked.append(wanted)
        return original(*args, wanted=wanted, **kwargs)

    monkeypatch.setattr(be, f"{kind}_backward", spy, raising=False)
    return asked


def assert_same(got, want):
    """Equal bits, through the nesting of states and dicts (None where both are None)."""
    if isinstance(want, dict):
        assert got.keys() == want.keys()
        for k in want:
            assert_same(got[k], want[k])
    elif isinstance(want, tuple):
        assert isinstance(got, tuple) and len(got) == len(want)
        for g, w in zip(got, want):
            assert_same(g, w)
    else:
        assert np.array_equal(got, want)


@pytest.mark.parametrize("asked", ASKED, ids=["data-x", "no-state", "weights-only"])
@pytest.mark.parametrize("shape", ["batched", "batch-first", "unbatched"])
@pytest.mark.parametrize("variant", VARIANTS, ids=variant_id)
def test_layer_backward_leaves_out_what_is_not_asked_for(variant, shape, asked, backend,
                                                         monkeypatch):
    kind, cls_name, flags = variant
    input_grad, state_grad = asked
    m = getattr(pyrnn, cls_name)(3, 4, num_layers=2, bidirectional=True, bias=shape != "batched",
                                 batch_first=shape == "batch-first", dtype=np.float64,
                                 backend=backend, seed=0, **flags)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((5, 3) if shape == "unbatched" else (5, 2, 3))
    out, _, ctx = m.forward_train(x)
    g = rng.standard_normal(out.shape)
    full = m.backward(ctx, g)
    out, _, ctx = m.forward_train(x)
    asked_calls = spy_on_backward(monkeypatch, backend, kind)
    part = m.backward(ctx, g, input_grad=input_grad, state_grad=state_grad)
    assert_same(part[2], full[2])
    assert_same(part[0], full[0] if input_grad else None)
    assert_same(part[1], full[1] if state_grad else None)
    states = 2 if kind == "lstm" else 1
    weights = (True,) * 4
    # layer 1 first (backward runs the stack from the top), each direction; layer 0 is asked
    # for dx only when x needs it
    assert asked_calls == [(True, *(state_grad,) * states, *weights)] * 2 + [
        (input_grad, *(state_grad,) * states, *weights)] * 2


@pytest.mark.parametrize("asked", ASKED, ids=["data-x", "no-state", "weights-only"])
@pytest.mark.parametrize("variant", VARIANTS, ids=variant_id)
def test_cell_backward_leaves_out_what_is_not_asked_for(variant, asked, backend, monkeypatch):
    kind, cls_name, flags = variant
    input_grad, state_grad = asked
    cell = getattr(pyrnn, cls_name + "Cell")(3, 4, dtype=np.float64, backend=backend, seed=0,
                                              **flags)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 3))
    hx = rng.standard_normal((2, 4))
    hx = (hx, rng.standard_normal((2, 4))) if kind == "lstm" else hx
    grads_of = [rng.standard_normal((2, 4)) for _ in range(2 if kind == "lstm" else 1)]
    _, ctx = cell.forward_train(x, hx)
    full = cell.backward(ctx, *grads_of)
    _, ctx = cell.forward_train(x, hx)
    asked_calls = spy_on_backward(monkeypatch, backend, kind)
    part = cell.backward(ctx, *grads_of, input_grad=input_grad, state_grad=state_grad)
    assert_same(part[2], full[2])
    assert_same(part[0], full[0] if input_grad else None)
    assert_same(part[1], full[1] if state_grad else None)
    states = 2 if kind == "lstm" else 1
    assert asked_calls == [(input_grad, *(state_grad,) * states, *(True,) * 4)]


def test_backward_asked_for_everything_passes_no_flags(backend, monkeypatch):
    """The default asks the backend for every gradient as before (no ``wanted``: a backend
    without the argument still serves it)."""
    m = pyrnn.GRU(3, 4, backend=backend, seed=0)
    out, _, ctx = m.forward_train(np.ones((2, 1, 3), np.float32))
    asked_calls = spy_on_backward(monkeypatch, backend, "gru")
    m.backward(ctx, np.ones_like(out), input_grad=True, state_grad=True)
    assert asked_calls == [None]


@pytest.mark.parametrize("name", ["input_grad", "state_grad"])
def test_backward_options_must_be_booleans(name):
    m = pyrnn.LSTM(3, 4, backend="numpy", seed=0)
    out, _, ctx = m.forward_train(np.ones((2, 1, 3), np.float32))
    with pytest.raises(TypeError, match=f"{name}: expected True or False"):
        m.backward(ctx, np.ones_like(out), **{name: "no"})
    cell = pyrnn.LSTMCell(3, 4, backend="numpy", seed=0)
    (h, _), ctx = cell.forward_train(np.ones((1, 3), np.float32))
    with pytest.raises(TypeError, match=f"{name}: expected True or False"):
        cell.backward(ctx, np.ones_like(h), **{name: 0})
