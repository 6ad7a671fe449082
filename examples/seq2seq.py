"""An encoder-decoder pair of GRUs learns to reverse short sequences of digits.

The encoder reads the digits; its final state is the decoder's initial state, the only thing the
decoder knows about the input. Training uses teacher forcing: the decoder's input at each step is
the previous *correct* digit (a start token first), so the whole target is one batched call.
Evaluation is greedy decoding: one step at a time, feeding back the digit the decoder just chose.
"""

import numpy as np
from _common import Thresholds, backend_name, parser

import pyrnn
from pyrnn.train import Adam, Dense, clip_grad_norm, softmax_cross_entropy

L, DIGITS, H, BATCH = 5, 10, 96, 64
GO = DIGITS  # the decoder's start token: one more input symbol than there are digits


def one_hot(tokens, size):
    return np.eye(size, dtype=np.float32)[tokens]


def batch(rng, n):
    """Digit sequences [L, n] and their reversals [L, n]."""
    digits = rng.integers(0, DIGITS, size=(L, n))
    return digits, digits[::-1]


def greedy_decode(encoder, decoder, head, digits):
    """Reverse ``digits`` [L, B] one step at a time; returns the decoded digits [L, B]."""
    _, h = encoder(one_hot(digits, DIGITS))
    token = np.full(digits.shape[1], GO)
    decoded = []
    for _ in range(L):
        out, h = decoder(one_hot(token, DIGITS + 1)[None], h)  # one step: [1, B, ...]
        token = head(out[0]).argmax(axis=-1)
        decoded.append(token)
    return np.stack(decoded)


def main():
    args = parser(__doc__.splitlines()[0]).parse_args()
    steps = args.steps if args.steps is not None else (200 if args.quick else 600)
    rng = np.random.default_rng(args.seed)
    encoder = pyrnn.GRU(DIGITS, H, backend=args.backend, seed=args.seed)
    decoder = pyrnn.GRU(DIGITS + 1, H, backend=args.backend, seed=args.seed + 1)
    head = Dense(H, DIGITS, seed=args.seed + 2)
    modules = [encoder, decoder, head]
    lr = 0.005
    opt = Adam([m.parameters() for m in modules], lr=lr)
    print(f"reverse {L} digits; GRU encoder and decoder, hidden size {H}, {steps} steps of "
          f"{BATCH}, on {backend_name(args.backend)}")

    for step in range(steps):
        opt.lr = lr * (1 - step / steps)  # decaying to 0 settles the final weights
        digits, target = batch(rng, BATCH)
        enc_out, h_n, enc_ctx = encoder.forward_train(one_hot(digits, DIGITS))
        # teacher forcing: the decoder reads GO, target[0], ..., target[L-2]
        dec_in = np.concatenate([np.full((1, BATCH), GO), target[:-1]])
        dec_out, _, dec_ctx = decoder.forward_train(one_hot(dec_in, DIGITS + 1), h_n)
        logits, head_ctx = head.forward_train(dec_out)
        loss, g_logits = softmax_cross_entropy(logits, target)
        g_dec_out, g_head = head.backward(head_ctx, g_logits)
        _, g_h0, g_dec = decoder.backward(dec_ctx, g_dec_out, input_grad=False)
        # the decoder's h0 was the encoder's h_n: its gradient flows into the encoder
        _, _, g_enc = encoder.backward(enc_ctx, np.zeros_like(enc_out), g_h0, input_grad=False,
                                       state_grad=False)
        grads = [g_enc, g_dec, g_head]
        clip_grad_norm(grads, 5.0)
        opt.step(grads)
        if step % max(steps // 5, 1) == 0:
            print(f"  step {step:4d}  loss {loss:.3f}")

    digits, target = batch(rng, 2000)
    decoded = greedy_decode(encoder, decoder, head, digits)
    seq_acc = float(np.mean(np.all(decoded == target, axis=0)))
    digit_acc = float(np.mean(decoded == target))
    print(f"greedy decoding on 2000 new sequences: sequence accuracy {seq_acc:.3f}, digit "
          f"accuracy {digit_acc:.3f}")
    for b in range(4):
        print(f"  {''.join(map(str, digits[:, b]))} -> {''.join(map(str, decoded[:, b]))}"
              f"  {'ok' if np.all(decoded[:, b] == target[:, b]) else 'WRONG'}")

    checks = Thresholds()
    target_acc = 0.7 if args.quick else 0.95
    checks.expect(seq_acc >= target_acc, f"sequence accuracy {seq_acc:.3f} >= {target_acc}")
    checks.finish()


if __name__ == "__main__":
    main()
