"""An Elman RNN learns to predict the next value of a noisy sine wave.

The target is itself noisy, so no model can beat the noise floor (the noise variance): a good model
gets close to it. Then the trained model forecasts free-running: it is fed its own predictions.
"""

import numpy as np
from _common import Thresholds, backend_name, parser

import pyrnn
from pyrnn.train import Adam, Dense, mse_loss

PERIOD = 20.0  # steps per cycle
NOISE = 0.1  # standard deviation of the observation noise
WARMUP = 10  # steps the model may spend finding the phase before it is scored


def sine_windows(rng, n, length):
    """Clean and noisy windows [length, n, 1] of sines with random phases."""
    phase = rng.uniform(0, 2 * np.pi, size=(1, n, 1))
    clean = np.sin(phase + 2 * np.pi * np.arange(length)[:, None, None] / PERIOD)
    noisy = clean + NOISE * rng.standard_normal(clean.shape)
    return clean.astype(np.float32), noisy.astype(np.float32)


def main():
    args = parser(__doc__.splitlines()[0]).parse_args()
    rng = np.random.default_rng(args.seed)
    T, H, batch = 50, 32, 32
    steps = args.steps if args.steps is not None else (150 if args.quick else 800)
    rnn = pyrnn.RNN(1, H, backend=args.backend, seed=args.seed)
    head = Dense(H, 1, seed=args.seed + 1)
    opt = Adam([rnn.parameters(), head.parameters()], lr=0.01)
    print(f"Elman RNN(1 -> {H}) + Dense on {backend_name(args.backend)}, {steps} steps of "
          f"{batch} windows of {T}")

    scored = np.ones((T, batch, 1))  # loss weights: the first steps only find the phase
    scored[:WARMUP] = 0
    for step in range(steps):
        _, noisy = sine_windows(rng, batch, T + 1)
        out, _, ctx = rnn.forward_train(noisy[:-1])  # input x_0..x_{T-1}
        pred, head_ctx = head.forward_train(out)  # prediction of x_1..x_T
        loss, g_pred = mse_loss(pred, noisy[1:], weights=scored)
        g_out, g_head = head.backward(head_ctx, g_pred)
        # the input is data and h0 zeros: neither needs a gradient (the kernels skip them)
        _, _, g_rnn = rnn.backward(ctx, g_out, input_grad=False, state_grad=False)
        opt.step([g_rnn, g_head])
        if step % max(steps // 5, 1) == 0:
            print(f"  step {step:4d}  train MSE {loss:.4f}")

    # one-step-ahead prediction on fresh windows
    _, noisy = sine_windows(rng, 500, T + 1)
    pred = head(rnn(noisy[:-1])[0])
    test_mse = float(np.mean((pred[WARMUP:] - noisy[1 + WARMUP:]) ** 2))
    repeat_mse = float(np.mean((noisy[WARMUP:-1] - noisy[1 + WARMUP:]) ** 2))
    floor = NOISE ** 2
    print(f"test MSE {test_mse:.4f}: noise floor {floor:.4f}, repeating the last value "
          f"{repeat_mse:.4f}")

    # free-running: after T observed steps, feed the prediction back as the next input
    horizon = 40
    clean, noisy = sine_windows(rng, 100, T + horizon)
    out, h = rnn(noisy[:T])
    x = head(out[-1:])
    forecast = []
    for _ in range(horizon):
        forecast.append(x[0])
        out, h = rnn(x, h)
        x = head(out)
    forecast = np.stack(forecast)
    forecast_mse = float(np.mean((forecast - clean[T:]) ** 2))
    print(f"free-running forecast, {horizon} steps: MSE {forecast_mse:.4f} against the clean sine")
    print("  step  forecast  clean sine")
    for k in range(0, horizon, 5):
        print(f"  {k:4d}  {forecast[k, 0, 0]:+8.3f}  {clean[T + k, 0, 0]:+8.3f}")

    checks = Thresholds()
    ratio = 2.0 if args.quick else 1.3
    checks.expect(test_mse <= ratio * floor,
                  f"test MSE {test_mse:.4f} <= {ratio} x noise floor ({ratio * floor:.4f})")
    limit = 0.2 if args.quick else 0.05
    checks.expect(forecast_mse <= limit, f"forecast MSE {forecast_mse:.4f} <= {limit}")
    checks.finish()


if __name__ == "__main__":
    main()
