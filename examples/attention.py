"""Attention over all of a GRU's outputs for classification; the weights show where it looks.

Each sequence is noise with one signal token somewhere in it; the class is which signal it is.
Instead of classifying from the final state, the model scores every step's output, turns the
scores into weights with a softmax over the valid steps (sequences have different lengths) and
classifies the weighted sum of the outputs. The backward pass goes through the softmax by hand.
The weights land on the signal step and the steps after it (whose outputs remember the signal),
and almost none before it.
"""

import numpy as np
from _common import Thresholds, backend_name, parser

import pyrnn
from pyrnn.train import Adam, Dense, softmax, softmax_backward, softmax_cross_entropy

CLASSES, NOISE_TOKENS = 4, 12  # tokens 0..3 are the signals, the rest noise
VOCAB = CLASSES + NOISE_TOKENS
MIN_LEN, MAX_LEN, H, BATCH = 10, 30, 32, 64


def batch(rng, n):
    """One-hot tokens [MAX_LEN, n, VOCAB], lengths [n], signal positions [n], classes [n]."""
    lengths = rng.integers(MIN_LEN, MAX_LEN + 1, size=n)
    tokens = rng.integers(CLASSES, VOCAB, size=(MAX_LEN, n))
    where = (rng.random(n) * lengths).astype(int)
    label = rng.integers(0, CLASSES, size=n)
    tokens[where, np.arange(n)] = label
    return np.eye(VOCAB, dtype=np.float32)[tokens], lengths, where, label


class AttentionClassifier:
    """GRU outputs out_t -> scores s_t = v . out_t -> weights a = softmax over t of s
    -> logits = Dense(sum_t a_t out_t)."""

    def __init__(self, args):
        self.gru = pyrnn.GRU(VOCAB, H, backend=args.backend, seed=args.seed)
        self.score = Dense(H, 1, bias=False, seed=args.seed + 1)
        self.head = Dense(H, CLASSES, seed=args.seed + 2)
        self.modules = [self.gru, self.score, self.head]

    def forward_train(self, x, lengths):
        """logits [B, CLASSES], weights [T, B] and the context for ``backward``."""
        out, _, gru_ctx = self.gru.forward_train(x, lengths=lengths)  # [T,B,H]
        scores, score_ctx = self.score.forward_train(out)  # [T,B,1]
        valid = np.arange(len(x))[:, None] < lengths[None, :]  # [T,B]
        weights = softmax(scores[..., 0], axis=0, mask=valid)
        context = np.einsum("tb,tbh->bh", weights, out)
        logits, head_ctx = self.head.forward_train(context)
        return logits, weights, (out, weights, gru_ctx, score_ctx, head_ctx)

    def __call__(self, x, lengths):
        return self.forward_train(x, lengths)[:2]

    def backward(self, ctx, g_logits):
        """Parameter gradients, one dict per module of ``self.modules``."""
        out, weights, gru_ctx, score_ctx, head_ctx = ctx
        g_context, g_head = self.head.backward(head_ctx, g_logits)  # [B,H]
        # context = sum_t a_t out_t: out_t gets a_t * g_context, a_t gets out_t . g_context
        g_out = weights[..., None] * g_context[None]
        g_weights = np.einsum("tbh,bh->tb", out, g_context)
        g_scores = softmax_backward(weights, g_weights, axis=0)
        g_out_score, g_score = self.score.backward(score_ctx, g_scores[..., None])
        _, _, g_gru = self.gru.backward(gru_ctx, g_out + g_out_score, input_grad=False,
                                        state_grad=False)
        return [g_gru, g_score, g_head]


def main():
    args = parser(__doc__.splitlines()[0]).parse_args()
    steps = args.steps if args.steps is not None else (150 if args.quick else 400)
    rng = np.random.default_rng(args.seed)
    model = AttentionClassifier(args)
    opt = Adam([m.parameters() for m in model.modules], lr=0.01)
    print(f"{CLASSES} classes, sequences of {MIN_LEN}..{MAX_LEN}; GRU({H}) + attention, {steps} "
          f"steps of {BATCH}, on {backend_name(args.backend)}")
    for step in range(steps):
        x, lengths, _, label = batch(rng, BATCH)
        logits, _, ctx = model.forward_train(x, lengths)
        loss, g_logits = softmax_cross_entropy(logits, label)
        opt.step(model.backward(ctx, g_logits))
        if step % max(steps // 5, 1) == 0:
            print(f"  step {step:4d}  loss {loss:.3f}")

    x, lengths, where, label = batch(rng, 2000)
    logits, weights = model(x, lengths)
    accuracy = float(np.mean(logits.argmax(axis=-1) == label))
    # the GRU carries the signal forward, so every output from the signal step on knows the class
    # and the attention may spread over them; the steps before the signal are useless
    before = float(np.mean(np.sum(weights * (np.arange(MAX_LEN)[:, None] < where), axis=0)))
    uniform = float(np.mean(where / lengths))
    print(f"held-out accuracy {accuracy:.3f}; attention on the steps before the signal "
          f"{before:.3f} (uniform weights would give {uniform:.3f})")
    print(f"attention weights on one sequence (signal {label[0]} at step {where[0]}):")
    for t in range(lengths[0]):
        token = x[t, 0].argmax()
        name = f"signal {token}" if token < CLASSES else "noise"
        print(f"  step {t:2d} {name:8s} {weights[t, 0]:.3f} {'#' * int(round(40 * weights[t, 0]))}")

    checks = Thresholds()
    target = 0.9 if args.quick else 0.98
    checks.expect(accuracy >= target, f"accuracy {accuracy:.3f} >= {target}")
    checks.expect(before <= 0.2, f"attention before the signal {before:.3f} <= 0.2")
    checks.finish()


if __name__ == "__main__":
    main()
