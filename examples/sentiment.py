"""Word embeddings + an LSTM classify generated movie-review phrases as positive or negative.

Phrases have different lengths: they are padded to the longest and the LSTM gets ``lengths``, so
its final state h_n is each phrase's state after its own last word, not after the padding. "not"
flips the next sentiment word ("not bad"), so word counts alone do not solve it: order matters.
"""

from itertools import chain, count

import numpy as np
from _common import Thresholds, backend_name, parser

import pyrnn
from pyrnn.train import Adam, Dense, Embedding, clip_grad_norm, minibatches, softmax_cross_entropy

POSITIVE = "good great excellent wonderful superb enjoyable brilliant delightful fun moving".split()
NEGATIVE = "bad awful terrible boring dull poor weak tedious bland messy".split()
FILLER = ("the movie film plot acting story was is and a very really quite this with but "
          "script ending cast music").split()
VOCAB = ["<pad>", "not", *POSITIVE, *NEGATIVE, *FILLER]
ID = {word: k for k, word in enumerate(VOCAB)}
MIN_LEN, MAX_LEN = 4, 16


def phrase(rng):
    """One phrase as a list of words, and its label (1 positive, 0 negative)."""
    while True:
        length = int(rng.integers(MIN_LEN, MAX_LEN + 1))
        words = [FILLER[k] for k in rng.integers(len(FILLER), size=length)]
        score = 0
        # 1 to 3 sentiment words, never first, so that "not" fits before any of them
        for slot in sorted(1 + rng.permutation(length - 1)[:rng.integers(1, 4)]):
            polarity = 1 if rng.random() < 0.5 else -1
            words[slot] = str(rng.choice(POSITIVE if polarity > 0 else NEGATIVE))
            if words[slot - 1] in FILLER and rng.random() < 0.3:
                words[slot - 1], polarity = "not", -polarity
            score += polarity
        if score != 0:
            return words, int(score > 0)


def corpus(rng, n):
    """n phrases as ids [MAX_LEN, n] padded with 0, lengths [n], labels [n], and the words."""
    phrases, labels = zip(*(phrase(rng) for _ in range(n)))
    ids = np.zeros((MAX_LEN, n), dtype=np.int64)
    for b, words in enumerate(phrases):
        ids[:len(words), b] = [ID[w] for w in words]
    return ids, np.array([len(p) for p in phrases]), np.array(labels), phrases


def main():
    args = parser(__doc__.splitlines()[0]).parse_args()
    E, H, batch_size = 16, 32, 64
    steps = args.steps if args.steps is not None else (100 if args.quick else 400)
    rng = np.random.default_rng(args.seed)
    embed = Embedding(len(VOCAB), E, seed=args.seed)
    lstm = pyrnn.LSTM(E, H, backend=args.backend, seed=args.seed + 1)
    head = Dense(H, 2, seed=args.seed + 2)
    opt = Adam([embed.parameters(), lstm.parameters(), head.parameters()], lr=0.01)
    print(f"{len(VOCAB)} words, phrases of {MIN_LEN}..{MAX_LEN}; Embedding({E}) + LSTM({H}) + "
          f"Dense, {steps} steps of {batch_size}, on {backend_name(args.backend)}")

    def classify(ids, lengths):
        _, (h_n, _) = lstm(embed(ids), lengths=lengths)
        return head(h_n[-1]).argmax(axis=-1)

    ids, lengths, labels, phrases = corpus(rng, 4000)
    n_train = 3000  # the other 1000 phrases are held out
    batches = chain.from_iterable(minibatches(n_train, batch_size, rng) for _ in count())
    for step, rows in zip(range(steps), batches):  # epoch after epoch
        # pad only to the batch's longest phrase: T varies from batch to batch
        T = lengths[rows].max()
        x, embed_ctx = embed.forward_train(ids[:T, rows])
        out, (h_n, _), ctx = lstm.forward_train(x, lengths=lengths[rows])
        logits, head_ctx = head.forward_train(h_n[-1])
        loss, g_logits = softmax_cross_entropy(logits, labels[rows])
        g_h, g_head = head.backward(head_ctx, g_logits)
        g_x, _, g_lstm = lstm.backward(ctx, np.zeros_like(out), (g_h[None], None),
                                       state_grad=False)
        _, g_embed = embed.backward(embed_ctx, g_x)
        grads = [g_embed, g_lstm, g_head]
        clip_grad_norm(grads, 5.0)
        opt.step(grads)
        if step % max(steps // 4, 1) == 0:
            print(f"  step {step:4d}  loss {loss:.3f}")

    predicted = classify(ids[:, n_train:], lengths[n_train:])
    accuracy = float(np.mean(predicted == labels[n_train:]))
    print(f"held-out accuracy {accuracy:.3f} on {len(predicted)} phrases not trained on")
    for k in range(6):
        mark = "ok" if predicted[k] == labels[n_train + k] else "WRONG"
        print(f"  {'positive' if predicted[k] else 'negative':8s} {mark:5s} "
              f"{' '.join(phrases[n_train + k])}")

    checks = Thresholds()
    target = 0.8 if args.quick else 0.97
    checks.expect(accuracy >= target, f"held-out accuracy {accuracy:.3f} >= {target}")
    checks.finish()


if __name__ == "__main__":
    main()
