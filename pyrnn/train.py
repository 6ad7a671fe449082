"""Small training helpers to go with the recurrent layers: no autograd, explicit backward passes.

Everything here follows the layers' conventions: a module has ``parameters()`` (live arrays by
name, updated in place by the optimisers), ``forward_train`` returning its output and a context,
and ``backward(ctx, grad_output)`` returning the input's gradient and a dict of parameter
gradients with the same names. Losses return ``(loss, grad)`` where ``grad`` is the loss's
gradient with respect to the prediction. Optimisers and clipping take one dict of arrays or a
list of dicts (one per module), matched position by position with the gradients.

A typical step::

    out, h_n, ctx = rnn.forward_train(x)
    pred, head_ctx = head.forward_train(out)
    loss, g_pred = mse_loss(pred, target)
    g_out, g_head = head.backward(head_ctx, g_pred)
    _, _, g_rnn = rnn.backward(ctx, g_out, input_grad=False, state_grad=False)  # x is data
    clip_grad_norm([g_rnn, g_head], 1.0)
    opt.step([g_rnn, g_head])
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping

import numpy as np

from . import _checks

__all__ = [
    "Dense", "Embedding", "softmax", "softmax_backward", "softmax_cross_entropy", "mse_loss",
    "global_norm", "clip_grad_norm", "SGD", "Adam", "minibatches",
]


def _as_list(dicts) -> list[Mapping[str, np.ndarray]]:
    """One dict, or a list/tuple of dicts, as a list of dicts."""
    if isinstance(dicts, Mapping):
        return [dicts]
    dicts = list(dicts)
    if not all(isinstance(d, Mapping) for d in dicts):
        raise TypeError("expected a dict of name -> array, or a list of such dicts")
    return dicts


class Dense:
    """Affine layer ``y = x @ weight^T + bias`` over the last axis (PyTorch's ``Linear``).

    Parameters
    ----------
    in_features, out_features : int
        Sizes of the last axis of the input and of the output.
    bias : bool
        Whether to add a bias.
    dtype : np.float32 or np.float64
    seed : int or None
        Seed of the initialisation, PyTorch's: uniform in +-1/sqrt(in_features).

    ``parameters()`` holds ``weight`` [out_features,in_features] and ``bias`` [out_features].
    """

    def __init__(self, in_features: int, out_features: int, bias: bool = True,
                 dtype=np.float32, seed: int | None = None):
        self.in_features = _checks.check_size("in_features", in_features)
        self.out_features = _checks.check_size("out_features", out_features)
        self.dtype = _checks.check_dtype(dtype)
        rng = np.random.default_rng(seed)
        bound = 1.0 / np.sqrt(in_features)
        self._params = {"weight": rng.uniform(-bound, bound, (out_features, in_features))
                        .astype(self.dtype)}
        if _checks.check_bool("bias", bias):
            self._params["bias"] = rng.uniform(-bound, bound, out_features).astype(self.dtype)

    def parameters(self) -> dict[str, np.ndarray]:
        """The live parameter arrays by name (update them in place to train)."""
        return self._params

    def __call__(self, x) -> np.ndarray:
        """x: [..., in_features] -> [..., out_features]."""
        x = _checks.as_float_array("x", x, self.dtype)
        if x.ndim == 0 or x.shape[-1] != self.in_features:
            raise ValueError(f"x: expected [..., in_features] with in_features="
                             f"{self.in_features}, got shape {list(x.shape)}")
        y = x @ self._params["weight"].T
        if "bias" in self._params:
            y += self._params["bias"]
        return y

    def forward_train(self, x) -> tuple[np.ndarray, np.ndarray]:
        """Like calling the layer; also returns the context (the input) for ``backward``."""
        x = _checks.as_float_array("x", x, self.dtype)
        return self(x), x

    def backward(self, ctx: np.ndarray, grad_y) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """grad_y: [..., out_features] -> (grad_x [..., in_features], {"weight", "bias"} grads)."""
        x = ctx
        grad_y = _checks.check_grad("grad_y", grad_y, x.shape[:-1] + (self.out_features,),
                                    self.dtype, "[..., out_features]")
        g2 = grad_y.reshape(-1, self.out_features)
        grads = {"weight": g2.T @ x.reshape(-1, self.in_features)}
        if "bias" in self._params:
            grads["bias"] = g2.sum(axis=0)
        return grad_y @ self._params["weight"], grads


class Embedding:
    """Lookup table from token ids to vectors (PyTorch's ``Embedding``).

    Parameters
    ----------
    num_embeddings : int
        Vocabulary size V; ids are in 0..V-1.
    embedding_dim : int
        Vector size E.
    dtype : np.float32 or np.float64
    seed : int or None
        Seed of the initialisation, PyTorch's: standard normal.

    ``parameters()`` holds ``weight`` [V,E].
    """

    def __init__(self, num_embeddings: int, embedding_dim: int, dtype=np.float32,
                 seed: int | None = None):
        self.num_embeddings = _checks.check_size("num_embeddings", num_embeddings)
        self.embedding_dim = _checks.check_size("embedding_dim", embedding_dim)
        self.dtype = _checks.check_dtype(dtype)
        rng = np.random.default_rng(seed)
        self._params = {"weight": rng.standard_normal((num_embeddings, embedding_dim))
                        .astype(self.dtype)}

    def parameters(self) -> dict[str, np.ndarray]:
        """The live parameter arrays by name (update them in place to train)."""
        return self._params

    def _check_ids(self, ids) -> np.ndarray:
        ids = np.asarray(ids)
        if ids.dtype.kind not in "iu":
            raise TypeError(f"ids: expected integer token ids, got dtype {ids.dtype}")
        if ids.size and (ids.min() < 0 or ids.max() >= self.num_embeddings):
            raise ValueError(f"ids: expected every id in 0..{self.num_embeddings - 1}, got "
                             f"values in {ids.min()}..{ids.max()}")
        return ids

    def __call__(self, ids) -> np.ndarray:
        """ids: integer array of any shape [...] -> vectors [..., E]."""
        return self._params["weight"][self._check_ids(ids)]

    def forward_train(self, ids) -> tuple[np.ndarray, np.ndarray]:
        """Like calling the layer; also returns the context (the ids) for ``backward``."""
        ids = self._check_ids(ids)
        return self._params["weight"][ids], ids

    def backward(self, ctx: np.ndarray, grad_y) -> tuple[None, dict[str, np.ndarray]]:
        """grad_y: [..., E] -> (None: ids have no gradient, {"weight": [V,E]})."""
        ids = ctx
        grad_y = _checks.check_grad("grad_y", grad_y, ids.shape + (self.embedding_dim,),
                                    self.dtype, "[..., embedding_dim]")
        grad_w = np.zeros_like(self._params["weight"])
        # ids repeat (a word used twice): their gradients add up
        np.add.at(grad_w, ids.reshape(-1), grad_y.reshape(-1, self.embedding_dim))
        return None, {"weight": grad_w}


def softmax(x: np.ndarray, axis: int = -1, mask: np.ndarray | None = None) -> np.ndarray:
    """Softmax along ``axis``; where ``mask`` (broadcastable to x) is False the weight is 0.

    Each slice along ``axis`` must keep at least one True entry of the mask.
    """
    if mask is not None:
        x = np.where(mask, x, -np.inf)
    e = np.exp(x - np.max(x, axis=axis, keepdims=True))
    return e / np.sum(e, axis=axis, keepdims=True)


def softmax_backward(probs: np.ndarray, grad_probs: np.ndarray, axis: int = -1) -> np.ndarray:
    """Gradient with respect to softmax's input, given its output ``probs`` and their gradient.

    ``d x = probs * (grad_probs - sum(probs * grad_probs, axis))``; masked entries (probability
    0) get 0.
    """
    return probs * (grad_probs - np.sum(probs * grad_probs, axis=axis, keepdims=True))


def _check_weights(weights, shape) -> np.ndarray | None:
    if weights is None:
        return None
    w = np.asarray(weights, dtype=np.float64)
    if w.shape != shape:
        raise ValueError(f"weights: expected shape {list(shape)} (one per prediction), got "
                         f"{list(w.shape)}")
    if w.sum() <= 0:
        raise ValueError("weights: expected a positive total weight")
    return w


def softmax_cross_entropy(logits, targets, weights=None) -> tuple[float, np.ndarray]:
    """Mean cross-entropy of ``softmax(logits)`` against integer class targets.

    Parameters
    ----------
    logits : [..., C] float
    targets : [...] int in 0..C-1
    weights : [...] or None
        Per-prediction weights (e.g. a 0/1 mask of the valid steps of padded sequences); the
        loss is ``sum(w * ce) / sum(w)``.

    Returns
    -------
    loss : float
    grad_logits : [..., C], same dtype as ``logits``
    """
    logits = np.asarray(logits)
    targets = np.asarray(targets)
    if targets.dtype.kind not in "iu":
        raise TypeError(f"targets: expected integer classes, got dtype {targets.dtype}")
    if logits.ndim == 0 or logits.shape[:-1] != targets.shape:
        raise ValueError(f"logits, targets: expected [..., C] and [...], got shapes "
                         f"{list(logits.shape)} and {list(targets.shape)}")
    C = logits.shape[-1]
    if targets.size and (targets.min() < 0 or targets.max() >= C):
        raise ValueError(f"targets: expected classes in 0..{C - 1}, got values in "
                         f"{targets.min()}..{targets.max()}")
    w = _check_weights(weights, targets.shape)
    shifted = logits - logits.max(axis=-1, keepdims=True)
    log_probs = shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))
    ce = -np.take_along_axis(log_probs, targets[..., None], axis=-1)[..., 0]
    grad = np.exp(log_probs)
    np.put_along_axis(grad, targets[..., None],
                      np.take_along_axis(grad, targets[..., None], axis=-1) - 1, axis=-1)
    if w is None:
        loss, scale = ce.mean(), np.full(targets.shape, 1.0 / max(targets.size, 1))
    else:
        loss, scale = (w * ce).sum() / w.sum(), w / w.sum()
    return float(loss), (grad * scale[..., None]).astype(logits.dtype, copy=False)


def mse_loss(pred, target, weights=None) -> tuple[float, np.ndarray]:
    """Mean squared error ``mean((pred - target)^2)``.

    Parameters
    ----------
    pred, target : [...] float, the same shape
    weights : [...] or None
        Per-element weights (e.g. a mask of valid steps); the loss is
        ``sum(w * (pred - target)^2) / sum(w)``.

    Returns
    -------
    loss : float
    grad_pred : [...], same dtype as ``pred``
    """
    pred = np.asarray(pred)
    target = np.asarray(target)
    if pred.shape != target.shape:
        raise ValueError(f"pred, target: expected the same shape, got {list(pred.shape)} and "
                         f"{list(target.shape)}")
    w = _check_weights(weights, pred.shape)
    diff = pred - target
    if w is None:
        w = np.ones(pred.shape)
    loss = (w * diff * diff).sum() / w.sum()
    return float(loss), (2 * w * diff / w.sum()).astype(pred.dtype, copy=False)


def global_norm(grads) -> float:
    """The 2-norm of all arrays together: ``sqrt(sum of every squared element)``.

    grads: a dict of name -> array, or a list of such dicts; None entries are skipped.
    """
    total = 0.0
    for d in _as_list(grads):
        for g in d.values():
            if g is not None:
                total += float(np.sum(np.square(g, dtype=np.float64)))
    return float(np.sqrt(total))


def clip_grad_norm(grads, max_norm: float) -> float:
    """Scale all gradients in place so that their global norm is at most ``max_norm``.

    grads: a dict of name -> array, or a list of such dicts (all scaled by the same factor, so
    the update's direction is kept). Returns the global norm before clipping, which is worth
    logging: a sudden jump means the gradients exploded.
    """
    if not max_norm > 0:
        raise ValueError(f"max_norm: expected a positive number, got {max_norm!r}")
    norm = global_norm(grads)
    if norm > max_norm:
        scale = max_norm / (norm + 1e-12)
        for d in _as_list(grads):
            for g in d.values():
                if g is not None:
                    g *= scale
    return norm


class _Optimizer:
    def __init__(self, params, lr: float):
        if not lr > 0:
            raise ValueError(f"lr: expected a positive learning rate, got {lr!r}")
        self.params = _as_list(params)
        self.lr = float(lr)

    def _pairs(self, grads):
        """(key, parameter, gradient) for every parameter that has a gradient."""
        grads = _as_list(grads)
        if len(grads) != len(self.params):
            raise ValueError(f"grads: expected {len(self.params)} dict(s), one per parameter "
                             f"dict given to the optimiser, got {len(grads)}")
        for k, (pd, gd) in enumerate(zip(self.params, grads)):
            unknown = sorted(set(gd) - set(pd))
            if unknown:
                raise ValueError(f"grads[{k}]: names {unknown} are not among the parameters")
            for name, g in gd.items():
                if g is None:
                    continue
                p = pd[name]
                if np.shape(g) != p.shape:
                    raise ValueError(f"grads[{k}][{name!r}]: expected shape {list(p.shape)}, "
                                     f"got {list(np.shape(g))}")
                yield (k, name), p, g


class SGD(_Optimizer):
    """Stochastic gradient descent with optional momentum: ``v = m*v + g; p -= lr*v``.

    params: a dict of name -> array (e.g. ``layer.parameters()``) or a list of such dicts;
    the arrays are updated in place by ``step``.
    """

    def __init__(self, params, lr: float = 0.01, momentum: float = 0.0):
        super().__init__(params, lr)
        self.momentum = float(momentum)
        self._velocity: dict = {}

    def step(self, grads) -> None:
        """One update; ``grads`` is structured like ``params`` (missing names are left alone)."""
        for key, p, g in self._pairs(grads):
            if self.momentum:
                v = self._velocity.setdefault(key, np.zeros_like(p))
                v *= self.momentum
                v += g
                g = v
            p -= self.lr * g


class Adam(_Optimizer):
    """Adam (Kingma & Ba, 2015) with bias correction, as PyTorch's ``torch.optim.Adam``.

    params: a dict of name -> array (e.g. ``layer.parameters()``) or a list of such dicts;
    the arrays are updated in place by ``step``; the moments are kept in the parameters' dtype.
    """

    def __init__(self, params, lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8):
        super().__init__(params, lr)
        self.beta1, self.beta2 = (float(b) for b in betas)
        self.eps = float(eps)
        self._moments: dict = {}
        self._steps: dict = {}

    def step(self, grads) -> None:
        """One update; ``grads`` is structured like ``params`` (missing names are left alone)."""
        for key, p, g in self._pairs(grads):
            m, v = self._moments.setdefault(key, (np.zeros_like(p), np.zeros_like(p)))
            t = self._steps[key] = self._steps.get(key, 0) + 1
            m *= self.beta1
            m += (1 - self.beta1) * g
            v *= self.beta2
            v += (1 - self.beta2) * np.square(g)
            m_hat = m / (1 - self.beta1 ** t)
            v_hat = v / (1 - self.beta2 ** t)
            p -= (self.lr * m_hat / (np.sqrt(v_hat) + self.eps)).astype(p.dtype, copy=False)


def minibatches(n: int, batch_size: int, rng: np.random.Generator | None = None
                ) -> Iterator[np.ndarray]:
    """Index arrays covering ``range(n)`` in batches of ``batch_size`` (the last may be smaller).

    With ``rng`` the order is shuffled; without it the batches are consecutive.
    """
    n = _checks.check_size("n", n, minimum=0)
    batch_size = _checks.check_size("batch_size", batch_size)
    order = rng.permutation(n) if rng is not None else np.arange(n)
    for start in range(0, n, batch_size):
        yield order[start:start + batch_size]
