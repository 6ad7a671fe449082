"""Every kind of bad input raises ValueError/TypeError whose message names what was wrong."""

import numpy as np
import pytest

import pyrnn


@pytest.fixture
def lstm():
    return pyrnn.LSTM(4, 3, num_layers=2, backend="numpy", seed=0)


@pytest.fixture
def gru():
    return pyrnn.GRU(4, 3, backend="numpy", seed=0)


X = np.zeros((5, 2, 4), np.float32)


@pytest.mark.parametrize("kwargs, exc, match", [
    (dict(input_size=0), ValueError, r"input_size: expected an int >= 1, got 0"),
    (dict(input_size=2.5), TypeError, r"input_size: expected an int"),
    (dict(hidden_size=-1), ValueError, r"hidden_size: expected an int >= 1"),
    (dict(num_layers=0), ValueError, r"num_layers"),
    (dict(dropout=float("nan")), ValueError, r"dropout: expected a float in \[0, 1\), got nan"),
    (dict(dropout=1.0), ValueError, r"dropout"),
    (dict(dropout=float("inf")), ValueError, r"dropout"),
    (dict(bias="yes"), TypeError, r"bias: expected True or False"),
    (dict(dtype=np.int32), TypeError, r"dtype: expected np.float32 or np.float64, got int32"),
    (dict(dtype=np.float16), TypeError, r"dtype"),
    (dict(backend="tpu"), ValueError, r"backend: expected one of"),
    (dict(nonlinearity="sigmoid"), ValueError, r"nonlinearity: expected 'tanh' or 'relu'"),
])
def test_bad_hyperparameters(kwargs, exc, match):
    args = dict(input_size=4, hidden_size=3, backend="numpy") | kwargs
    with pytest.raises(exc, match=match):
        pyrnn.RNN(**args)


def test_bad_reset_after():
    with pytest.raises(TypeError, match="reset_after: expected True or False"):
        pyrnn.GRU(2, 2, reset_after=1, backend="numpy")


@pytest.mark.parametrize("x, exc, match", [
    (np.zeros((5, 2, 3), np.float32), ValueError,
     r"x: expected \[T,B,I\] \(batch_first=False\) with I=4 .* got shape \[5,2,3\]"),
    (np.zeros((5, 2, 4, 1), np.float32), ValueError, r"x: expected .* got shape \[5,2,4,1\]"),
    (np.zeros(4, np.float32), ValueError, r"x: expected .*unbatched \[T,I\]"),
    (np.zeros((0, 2, 4), np.float32), ValueError, r"x: expected .* T >= 1 and B >= 1"),
    (np.zeros((5, 2, 4), np.int64), TypeError,
     r"x: expected floating-point data .* got dtype int64"),
    (np.zeros((5, 2, 4), np.complex64), TypeError, r"x: expected floating-point .*complex64"),
    (np.zeros((5, 2, 4), object), TypeError, r"x: expected floating-point .*object"),
    ([[[1.0, 2.0]], [[1.0]]], TypeError, r"x: expected a rectangular array of floats"),
])
def test_bad_x(gru, x, exc, match):
    with pytest.raises(exc, match=match):
        gru(x)


def test_bad_x_batch_first_message():
    m = pyrnn.GRU(4, 3, batch_first=True, backend="numpy")
    with pytest.raises(ValueError, match=r"\[B,T,I\] \(batch_first=True\) with I=4"):
        m(np.zeros((2, 5, 7), np.float32))


@pytest.mark.parametrize("lengths, exc, match", [
    ([5, 0], ValueError, r"lengths: expected every length in 1..T = 1..5, got \[0\]"),
    ([6, 2], ValueError, r"lengths: expected every length in 1..T = 1..5, got \[6\]"),
    ([5, 2, 1], ValueError, r"lengths: expected \[B\] = \[2\], one length per sequence, got "
                            r"shape \[3\]"),
    ([[5, 2]], ValueError, r"lengths: expected \[B\] = \[2\]"),
    ([5.0, 2.0], TypeError, r"lengths: expected integers, got dtype float64"),
])
def test_bad_lengths(gru, lengths, exc, match):
    with pytest.raises(exc, match=match):
        gru(X, lengths=lengths)


def test_lengths_hint_batch_first(gru):
    with pytest.raises(ValueError, match=r"did you mean batch_first=True\?"):
        gru(X, lengths=[1, 2, 3, 4, 5])


def test_lengths_with_unbatched_input(gru):
    with pytest.raises(ValueError, match="lengths: unbatched input"):
        gru(np.zeros((5, 4), np.float32), lengths=[5])


def test_bad_hx(gru, lstm):
    with pytest.raises(ValueError, match=r"hx: expected \[num_layers\*num_directions,B,H\] = "
                                         r"\[1,2,3\], got shape \[2,3\]"):
        gru(X, np.zeros((2, 3), np.float32))
    with pytest.raises(ValueError, match=r"hx: expected .* = \[1,2,3\], got shape \[1,2,4\]"):
        gru(X, np.zeros((1, 2, 4), np.float32))
    with pytest.raises(TypeError, match=r"hx: expected floating-point data"):
        gru(X, np.zeros((1, 2, 3), np.int32))
    with pytest.raises(TypeError, match=r"hx: expected a tuple \(h0, c0\) or None, got ndarray"):
        lstm(X, np.zeros((2, 2, 3), np.float32))
    with pytest.raises(ValueError, match=r"hx\[1\] \(c0\): expected .* = \[2,2,3\], got shape "
                                         r"\[1,2,3\]"):
        lstm(X, (np.zeros((2, 2, 3), np.float32), np.zeros((1, 2, 3), np.float32)))


def test_bad_state_dict(gru):
    sd = gru.state_dict()
    with pytest.raises(ValueError, match=r"missing \['bias_hh_l0'\], unexpected \['bias_xx'\]"):
        gru.load_state_dict({**{k: v for k, v in sd.items() if k != "bias_hh_l0"},
                             "bias_xx": sd["bias_hh_l0"]})
    with pytest.raises(ValueError, match=r"state_dict\['weight_hh_l0'\]: expected shape \[9, 3\], "
                                         r"got \[9, 4\]"):
        gru.load_state_dict({**sd, "weight_hh_l0": np.zeros((9, 4))})
    with pytest.raises(TypeError, match=r"state_dict\['bias_ih_l0'\]: expected floating-point"):
        gru.load_state_dict({**sd, "bias_ih_l0": np.zeros(9, np.int64)})
    with pytest.raises(TypeError, match="state_dict: expected a mapping"):
        gru.load_state_dict([1, 2])
    before = gru.state_dict()
    with pytest.raises(ValueError):  # a failed load changes nothing
        gru.load_state_dict({**sd, "weight_ih_l0": np.ones((9, 4)), "weight_hh_l0": np.ones(3)})
    assert all(np.array_equal(v, gru.state_dict()[k]) for k, v in before.items())


def test_bad_backward(gru, lstm):
    out, h, ctx = gru.forward_train(X)
    other = pyrnn.GRU(4, 3, backend="numpy", seed=0)
    with pytest.raises(ValueError, match="ctx: this context was made by forward_train of another "
                                         "module"):
        other.backward(ctx, np.ones_like(out))
    with pytest.raises(TypeError, match="ctx: expected the context returned by forward_train"):
        gru.backward({}, np.ones_like(out))
    with pytest.raises(ValueError, match=r"grad_output: expected .* = \[5,2,3\], got shape "
                                         r"\[5,2,4\]"):
        gru.backward(ctx, np.ones((5, 2, 4)))
    with pytest.raises(ValueError, match="grad_output: expected an array .* got None"):
        gru.backward(ctx, None)
    with pytest.raises(ValueError, match=r"grad_h_n: expected .* = \[1,2,3\], got shape \[2,3\]"):
        gru.backward(ctx, np.ones_like(out), np.ones((2, 3)))
    out, _, ctx = lstm.forward_train(X)
    with pytest.raises(TypeError, match=r"grad_h_n: expected a tuple \(grad_h_n, grad_c_n\)"):
        lstm.backward(ctx, np.ones_like(out), np.ones((2, 2, 3)))


def test_bad_cell_input():
    cell = pyrnn.LSTMCell(4, 3, backend="numpy")
    with pytest.raises(ValueError, match=r"x: expected \[B,I\] or unbatched \[I\] with I=4, got "
                                         r"shape \[2, 5\]"):
        cell(np.zeros((2, 5)))
    with pytest.raises(ValueError, match=r"hx\[0\] \(h\): expected \[B,H\] = \[2,3\]"):
        cell(np.zeros((2, 4)), (np.zeros((3, 3)), np.zeros((2, 3))))
    g = pyrnn.GRUCell(4, 3, backend="numpy")
    _, ctx = g.forward_train(np.zeros((2, 4)))
    with pytest.raises(TypeError, match="grad_c: GRUCell has no cell state"):
        g.backward(ctx, np.zeros((2, 3)), np.zeros((2, 3)))


def test_nan_and_inf_propagate(gru):
    import torch

    x = X.copy()
    x[2, 0, 1] = np.nan
    x[3, 1, 0] = np.inf
    out, h = gru(x)
    assert np.isnan(out[2:, 0]).all() and np.isfinite(out[:2]).all() and np.isnan(h[0, 0]).all()
    t = torch.nn.GRU(4, 3)
    t.load_state_dict({k: torch.from_numpy(v) for k, v in gru.state_dict().items()})
    t_out, _ = t(torch.from_numpy(x))
    np.testing.assert_allclose(out, t_out.detach().numpy(), rtol=1e-5, atol=1e-6)


def test_other_precision_is_converted(gru):
    out64, _ = gru(X.astype(np.float64))
    out32, _ = gru(X)
    assert out64.dtype == np.float32 and np.array_equal(out64, out32)
