"""A task that needs the future: tag every step by whether a marker appears later in the sequence.

A unidirectional GRU at step t has seen only steps 0..t, which say nothing about what comes next:
the best it can do is guess from the position (the printed ceiling). A bidirectional GRU also reads
the sequence backwards, so at every step it knows what follows.
"""

import numpy as np
from _common import Thresholds, backend_name, parser

import pyrnn
from pyrnn.train import Adam, Dense, softmax_cross_entropy

T, VOCAB, H, BATCH = 16, 5, 32, 64
P_MARKER = 0.1  # token 0 is the marker; each step is a marker with this probability


def batch(rng, n):
    """One-hot tokens [T, n, VOCAB] and tags [T, n]: 1 where a marker appears at a later step."""
    tokens = np.where(rng.random((T, n)) < P_MARKER, 0, rng.integers(1, VOCAB, size=(T, n)))
    is_marker = (tokens == 0).astype(int)
    later = np.cumsum(is_marker[::-1], axis=0)[::-1] - is_marker  # markers after step t
    return np.eye(VOCAB, dtype=np.float32)[tokens], (later > 0).astype(np.int64)


def ceiling_without_future():
    """Best accuracy from the position alone: P(marker later) = 1 - (1-p)^(T-1-t)."""
    p_later = 1 - (1 - P_MARKER) ** (T - 1 - np.arange(T))
    return float(np.mean(np.maximum(p_later, 1 - p_later)))


def train_and_test(bidirectional, args, steps):
    rng = np.random.default_rng(args.seed)
    gru = pyrnn.GRU(VOCAB, H, bidirectional=bidirectional, backend=args.backend, seed=args.seed)
    head = Dense(gru.num_directions * H, 2, seed=args.seed + 1)  # out: [T,B,D*H]
    opt = Adam([gru.parameters(), head.parameters()], lr=0.01)
    for _ in range(steps):
        x, tags = batch(rng, BATCH)
        out, _, ctx = gru.forward_train(x)
        logits, head_ctx = head.forward_train(out)
        _, g_logits = softmax_cross_entropy(logits, tags)
        g_out, g_head = head.backward(head_ctx, g_logits)
        _, _, g_gru = gru.backward(ctx, g_out, input_grad=False, state_grad=False)
        opt.step([g_gru, g_head])
    x, tags = batch(rng, 2000)
    return float(np.mean(head(gru(x)[0]).argmax(axis=-1) == tags))


def main():
    args = parser(__doc__.splitlines()[0]).parse_args()
    steps = args.steps if args.steps is not None else (150 if args.quick else 300)
    print(f"{T} steps, marker probability {P_MARKER} per step; GRU hidden size {H}, {steps} "
          f"steps of {BATCH}, on {backend_name(args.backend)}")
    ceiling = ceiling_without_future()
    uni = train_and_test(False, args, steps)
    bi = train_and_test(True, args, steps)
    print(f"unidirectional GRU per-step accuracy {uni:.3f}  (best possible without the "
          f"future: {ceiling:.3f})")
    print(f"bidirectional GRU  per-step accuracy {bi:.3f}")

    checks = Thresholds()
    target = 0.95 if args.quick else 0.99
    checks.expect(bi >= target, f"bidirectional {bi:.3f} >= {target}")
    checks.expect(uni <= ceiling + 0.01, f"unidirectional {uni:.3f} <= ceiling + 0.01 "
                                         f"(it cannot see the future)")
    checks.expect(bi - uni >= 0.1, f"bidirectional beats unidirectional by {bi - uni:.3f} >= 0.1")
    checks.finish()


if __name__ == "__main__":
    main()
