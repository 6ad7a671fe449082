"""Recall the first element of a length-50 binary sequence: plain RNN vs LSTM vs GRU.

The answer must be carried across 49 distracting steps. Through a plain RNN the gradient that
reaches step 0 has shrunk by a factor per step (see vanishing_gradients.py), so with this budget
it learns nothing and stays at chance. The LSTM's cell state and the GRU's update gate give the
gradient a path that does not shrink, once their gates start out open to keeping the memory
(the usual initialisation: a positive bias on the LSTM's forget gate and the GRU's update gate).
All three get the same optimiser, learning rate, clipping and number of steps. With a larger
learning rate Adam can sometimes push the plain RNN through: its per-parameter scaling partly
undoes the vanishing, which is why the comparison fixes the budget.
"""

import numpy as np
from _common import Thresholds, backend_name, parser

import pyrnn
from pyrnn.train import Adam, Dense, clip_grad_norm, softmax_cross_entropy

T, H, BATCH = 50, 32, 128
KEEP_BIAS = 3.0  # sigmoid(3) = 0.95: the memory gates start out keeping


def batch(rng, n):
    """Bits as -1/+1 inputs [T, n, 1] and the first bit of each sequence [n] as the label."""
    bits = rng.integers(0, 2, size=(T, n))
    return (2.0 * bits - 1)[..., None].astype(np.float32), bits[0]


def make(kind, args):
    if kind == "RNN":
        return pyrnn.RNN(1, H, backend=args.backend, seed=args.seed)
    model = {"LSTM": pyrnn.LSTM, "GRU": pyrnn.GRU}[kind](1, H, backend=args.backend,
                                                          seed=args.seed)
    # gate order: LSTM i, f, g, o and GRU r, z, n, so the second block is forget / update
    model.parameters()["bias_hh_l0"][H:2 * H] += KEEP_BIAS
    return model


def train_and_test(kind, args, steps):
    rng = np.random.default_rng(args.seed)
    model, head = make(kind, args), Dense(H, 2, seed=args.seed + 1)
    is_lstm = kind == "LSTM"
    opt = Adam([model.parameters(), head.parameters()], lr=0.003)
    for _ in range(steps):
        x, first = batch(rng, BATCH)
        out, state, ctx = model.forward_train(x)
        h_n = state[0] if is_lstm else state  # [1,B,H]
        logits, head_ctx = head.forward_train(h_n[-1])
        _, g_logits = softmax_cross_entropy(logits, first)
        g_h, g_head = head.backward(head_ctx, g_logits)
        _, _, g_model = model.backward(ctx, np.zeros_like(out),
                                       (g_h[None], None) if is_lstm else g_h[None])
        clip_grad_norm([g_model, g_head], 1.0)
        opt.step([g_model, g_head])
    x, first = batch(rng, 2000)
    _, state = model(x)
    h_n = state[0] if is_lstm else state
    return float(np.mean(head(h_n[-1]).argmax(axis=-1) == first))


def main():
    args = parser(__doc__.splitlines()[0]).parse_args()
    steps = args.steps if args.steps is not None else (200 if args.quick else 600)
    print(f"recall the first of {T} random bits; hidden size {H}, {steps} steps of {BATCH}, "
          f"Adam lr 0.003, on {backend_name(args.backend)}")
    accuracy = {kind: train_and_test(kind, args, steps) for kind in ("RNN", "LSTM", "GRU")}
    for kind, acc in accuracy.items():
        print(f"{kind:5s} held-out accuracy {acc:.3f}")

    checks = Thresholds()
    # 2000 test sequences: a model at chance scores 0.5 +- 0.011 (one standard deviation)
    checks.expect(accuracy["RNN"] < 0.6, f"RNN stays at chance: {accuracy['RNN']:.3f} < 0.6")
    target = 0.9 if args.quick else 0.98
    for kind in ("LSTM", "GRU"):
        checks.expect(accuracy[kind] >= target,
                      f"{kind} solves it: {accuracy[kind]:.3f} >= {target}")
    checks.finish()


if __name__ == "__main__":
    main()
