"""Regress the sum of a variable-length sequence of numbers: an RNN with relu, and an LSTM.

The final hidden state h_n (the state after each sequence's own last step, thanks to ``lengths``)
goes through a Dense layer to one number. A relu RNN can add exactly by keeping a linear
accumulator; an LSTM stores the running sum in its cell state.
"""

import numpy as np
from _common import Thresholds, backend_name, parser

import pyrnn
from pyrnn.train import Adam, Dense, mse_loss

MIN_LEN, MAX_LEN = 5, 20


def batch(rng, n):
    """Numbers uniform in [-1, 1], x [MAX_LEN, n, 1] zero-padded, lengths [n], sums [n, 1]."""
    lengths = rng.integers(MIN_LEN, MAX_LEN + 1, size=n)
    x = rng.uniform(-1, 1, size=(MAX_LEN, n, 1))
    x[np.arange(MAX_LEN)[:, None] >= lengths[None, :]] = 0
    return x.astype(np.float32), lengths, x.sum(axis=0).astype(np.float32)


def train(model, args, steps, rng):
    """Train ``model`` + a Dense head on h_n; return the test MSE."""
    H, is_lstm = model.hidden_size, isinstance(model, pyrnn.LSTM)
    head = Dense(H, 1, seed=args.seed + 1)
    lr = 0.01
    opt = Adam([model.parameters(), head.parameters()], lr=lr)
    for step in range(steps):
        opt.lr = lr * (1 - step / steps)  # decaying to 0 settles the final weights
        x, lengths, sums = batch(rng, 64)
        out, state, ctx = model.forward_train(x, lengths=lengths)
        h_n = state[0] if is_lstm else state  # LSTM: (h_n, c_n); h_n [1,B,H]
        pred, head_ctx = head.forward_train(h_n[-1])
        _, g_pred = mse_loss(pred, sums)
        g_h, g_head = head.backward(head_ctx, g_pred)
        # only h_n feeds the loss: zero gradient for out, none for c_n
        g_state = (g_h[None], None) if is_lstm else g_h[None]
        _, _, g_model = model.backward(ctx, np.zeros_like(out), g_state, input_grad=False,
                                       state_grad=False)
        opt.step([g_model, g_head])
    x, lengths, sums = batch(rng, 2000)
    _, state = model(x, lengths=lengths)
    h_n = state[0] if is_lstm else state
    return float(np.mean((head(h_n[-1]) - sums) ** 2)), float(np.var(sums))


def main():
    args = parser(__doc__.splitlines()[0]).parse_args()
    H = 32
    steps = args.steps if args.steps is not None else (200 if args.quick else 1000)
    print(f"sums of {MIN_LEN}..{MAX_LEN} numbers in [-1, 1], hidden size {H}, {steps} steps of "
          f"64, on {backend_name(args.backend)}")
    models = {
        "RNN(relu)": pyrnn.RNN(1, H, nonlinearity="relu", backend=args.backend, seed=args.seed),
        "LSTM": pyrnn.LSTM(1, H, backend=args.backend, seed=args.seed),
    }
    checks = Thresholds()
    limit = 0.2 if args.quick else 0.01
    for name, model in models.items():
        mse, variance = train(model, args, steps, np.random.default_rng(args.seed))
        print(f"{name:10s} test MSE {mse:.4f}  (predicting 0: {variance:.3f}, "
              f"R^2 = {1 - mse / variance:.4f})")
        checks.expect(mse <= limit, f"{name} test MSE {mse:.4f} <= {limit}")
    checks.finish()


if __name__ == "__main__":
    main()
