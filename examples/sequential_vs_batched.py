"""The same N sequences through an LSTM one at a time vs as one batch, on each backend.

Done properly: the same weights and the same sequences (of different lengths: the batched call
pads them and passes ``lengths``), a check that both ways give the same outputs, final states and
parameter gradients before anything is timed, a warm-up, and the median of several rounds in
which the two ways take turns, so a noisy neighbour slows both alike.
"""

import time
from functools import partial

import numpy as np
from _common import Thresholds, parser

import pyrnn


def sequential(lstm, seqs, grads_out=None):
    """Each sequence alone (unbatched [T_b, I]); with ``grads_out`` also the backward pass."""
    outs, grads = [], {}
    for b, x in enumerate(seqs):
        if grads_out is None:
            outs.append(lstm(x)[0])
            continue
        out, _, ctx = lstm.forward_train(x)
        outs.append(out)
        for name, g in lstm.backward(ctx, grads_out[:len(x), b])[2].items():
            grads[name] = grads.get(name, 0) + g
    return outs, grads


def batched(lstm, x, lengths, grads_out=None):
    """All sequences in one call: x [T, N, I] zero-padded, with ``lengths``."""
    if grads_out is None:
        return lstm(x, lengths=lengths)[0], {}
    out, _, ctx = lstm.forward_train(x, lengths=lengths)
    return out, lstm.backward(ctx, grads_out)[2]


def time_in_turns(fns, rounds):
    """Median seconds of each function, the functions taking turns round after round."""
    times = [[] for _ in fns]
    for _ in range(rounds):
        for fn, samples in zip(fns, times):
            start = time.perf_counter()
            fn()
            samples.append(time.perf_counter() - start)
    return [float(np.median(samples)) for samples in times]


def max_rel_diff(a, b):
    return float(np.max(np.abs(a - b)) / max(np.max(np.abs(b)), 1e-30))


def main():
    p = parser(__doc__.splitlines()[0], trains=False)
    p.set_defaults(backend=None)
    p.description += " (--backend: only that one; default: every available backend)"
    args = p.parse_args()
    N, T, I, H = (16, 20, 16, 32) if args.quick else (64, 50, 32, 128)
    rounds = 3 if args.quick else 7
    rng = np.random.default_rng(args.seed)
    lengths = rng.integers(T // 2, T + 1, size=N)
    x = rng.standard_normal((T, N, I)).astype(np.float32)
    x[np.arange(T)[:, None] >= lengths] = 0  # padding
    seqs = [x[:lengths[b], b] for b in range(N)]
    grads_out = rng.standard_normal((T, N, H)).astype(np.float32)  # loss = sum(grads_out * out)
    backends = [args.backend] if args.backend else pyrnn.available_backends()
    print(f"{N} sequences of {T // 2}..{T} steps, LSTM I={I} H={H}, float32; "
          f"median of {rounds} rounds")

    checks = Thresholds()
    for backend in backends:
        lstm = pyrnn.LSTM(I, H, backend=backend, seed=args.seed)
        # correctness first (this is also the warm-up)
        seq_out, seq_grads = sequential(lstm, seqs, grads_out)
        bat_out, bat_grads = batched(lstm, x, lengths, grads_out)
        diff = max(max_rel_diff(bat_out[:len(s), b], s) for b, s in enumerate(seq_out))
        diff = max(diff, *(max_rel_diff(bat_grads[k], seq_grads[k]) for k in seq_grads))
        checks.expect(diff <= 1e-4, f"{backend}: batched == one at a time (outputs, "
                                    f"gradients): max relative difference {diff:.1e} <= 1e-4")
        for what, g in (("forward", None), ("forward+backward", grads_out)):
            t_seq, t_bat = time_in_turns([partial(sequential, lstm, seqs, g),
                                          partial(batched, lstm, x, lengths, g)], rounds)
            speedup = t_seq / t_bat
            print(f"  {backend:5s} {what:16s}  one at a time {t_seq * 1e3:8.2f} ms   batched "
                  f"{t_bat * 1e3:7.2f} ms   speedup {speedup:6.1f}x")
            if not args.quick:  # timings of a few-second run are too noisy to judge
                checks.expect(speedup > 1, f"{backend} {what}: batching is faster")
    checks.finish()


if __name__ == "__main__":
    main()
