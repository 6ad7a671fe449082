"""How the gradient with respect to earlier hidden states vanishes or explodes: RNN vs LSTM.

A cell is stepped 50 times (one cell call per step, so the backward pass hands back the gradient
with respect to every intermediate state), then a loss on the last state is backpropagated step by
step. Through an RNN each step multiplies the gradient by the recurrent Jacobian, so its norm
shrinks or grows geometrically with the recurrent weights' scale. Through an LSTM the cell state
carries it, multiplied by the forget gate: at its default of about 0.5 the gradient still
vanishes, but with the forget gate biased open it stays within a few orders of magnitude at either
scale. An exploding gradient is then tamed by clipping its global norm.
"""

import numpy as np
from _common import Thresholds, backend_name, parser

import pyrnn
from pyrnn.train import clip_grad_norm, global_norm

T, I, H, B = 50, 8, 64, 8
SMALL, LARGE = 0.5, 3.0  # spectral radius of each recurrent weight block
MODELS = {"RNN": 0.0, "LSTM": 0.0, "LSTM forget bias 3": 3.0}  # name -> forget-gate bias


def make_cell(name, scale, args, rng):
    """A cell whose recurrent weight blocks are ``scale`` x a random orthogonal matrix."""
    kind = pyrnn.RNNCell if name == "RNN" else pyrnn.LSTMCell
    cell = kind(I, H, dtype=np.float64, backend=args.backend, seed=args.seed)
    w_hh = cell.parameters()["weight_hh"]
    for block in range(w_hh.shape[0] // H):
        q, _ = np.linalg.qr(rng.standard_normal((H, H)))
        w_hh[block * H:(block + 1) * H] = scale * q
    if name != "RNN":
        cell.parameters()["bias_hh"][H:2 * H] += MODELS[name]  # gates i, f, g, o
    return cell


def state_gradient_norms(cell, rng):
    """||dL/d state_t|| / ||dL/d state_T|| for t = T..0 (index = steps back), and param grads.

    L = <r, h_T> for a random unit r; the LSTM's state is the pair (h_t, c_t).
    """
    is_lstm = isinstance(cell, pyrnn.LSTMCell)
    x = rng.standard_normal((T, B, I))
    state = (np.zeros((B, H)), np.zeros((B, H))) if is_lstm else np.zeros((B, H))
    contexts = []
    for t in range(T):
        state, ctx = cell.forward_train(x[t], state)
        contexts.append(ctx)
    g_h = rng.standard_normal((B, H))
    g_h /= np.linalg.norm(g_h)
    g_c = np.zeros((B, H))
    norms, param_grads = [1.0], {}
    for ctx in reversed(contexts):
        if is_lstm:
            _, (g_h, g_c), grads = cell.backward(ctx, g_h, g_c, input_grad=False)
        else:
            _, g_h, grads = cell.backward(ctx, g_h, input_grad=False)
        norms.append(float(np.sqrt(np.sum(g_h ** 2) + np.sum(g_c ** 2))))
        for name, g in grads.items():
            param_grads[name] = param_grads.get(name, 0) + g
    return np.array(norms), param_grads


def plot(curves, path):
    try:
        import matplotlib
    except ImportError:
        print("(matplotlib is not installed: no plot)")
        return
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    colors = {name: f"C{k}" for k, name in enumerate(MODELS)}
    for (name, scale), norms in curves.items():
        ax.semilogy(norms, label=f"{name}, recurrent scale {scale}", color=colors[name],
                    linestyle="-" if scale == LARGE else "--")
    ax.set_xlabel("steps back from the loss")
    ax.set_ylabel("||dL / d state||  (relative)")
    ax.set_title("Gradient with respect to earlier states")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    print(f"plot written to {path}")


def main():
    p = parser(__doc__.splitlines()[0], trains=False)
    p.add_argument("--out", default="vanishing_gradients.png", help="where to write the plot")
    args = p.parse_args()
    rng = np.random.default_rng(args.seed)
    print(f"{T} chained cell steps, I={I}, H={H}, batch {B}, float64, on "
          f"{backend_name(args.backend)}")
    shown = [1, 10, 25, 50]
    print(f"{'':32s}" + "".join(f"{k:>3d} back " for k in shown))
    curves, exploding_grads = {}, None
    for name in MODELS:
        for scale in (SMALL, LARGE):
            norms, param_grads = state_gradient_norms(make_cell(name, scale, args, rng), rng)
            curves[name, scale] = norms
            if name == "RNN" and scale == LARGE:
                exploding_grads = param_grads
            print(f"{name + ', scale ' + str(scale):32s}" +
                  "".join(f"{norms[k]:9.1e} " for k in shown))
    plot(curves, args.out)

    # clipping: the exploding RNN's parameter gradients, scaled down to a global norm of 1
    before = clip_grad_norm(exploding_grads, 1.0)
    after = global_norm(exploding_grads)
    print(f"clipping the exploding RNN's parameter gradients: global norm {before:.2e} -> "
          f"{after:.2f} (same direction: an update of bounded size)")

    checks = Thresholds()
    rnn_small, rnn_large = curves["RNN", SMALL][T], curves["RNN", LARGE][T]
    checks.expect(rnn_small < 1e-6, f"RNN, small weights: vanishes, {rnn_small:.1e} < 1e-6")
    checks.expect(rnn_large > 1e4, f"RNN, large weights: explodes, {rnn_large:.1e} > 1e4")
    for scale in (SMALL, LARGE):
        kept = curves["LSTM forget bias 3", scale]
        lo, hi = kept.min(), kept.max()
        checks.expect(1e-2 < lo and hi < 1e4,
                      f"LSTM forget bias 3, scale {scale}: within 1e-2..1e4 ({lo:.1e}..{hi:.1e})")
    checks.expect(before > 1e3 and abs(after - 1.0) < 1e-6,
                  f"clipping brings {before:.1e} down to 1.0")
    checks.finish()


if __name__ == "__main__":
    main()
