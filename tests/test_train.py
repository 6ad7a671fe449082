"""pyrnn.train: every gradient against finite differences, the optimisers, clipping, batching."""

import numpy as np
import pytest

from pyrnn.train import (
    SGD,
    Adam,
    Dense,
    Embedding,
    clip_grad_norm,
    global_norm,
    minibatches,
    mse_loss,
    softmax,
    softmax_backward,
    softmax_cross_entropy,
)

from .conftest import numeric_grad, rel_err


@pytest.mark.parametrize("bias", [True, False])
def test_dense_gradients(bias):
    rng = np.random.default_rng(0)
    layer = Dense(4, 3, bias=bias, dtype=np.float64, seed=1)
    x = rng.standard_normal((2, 5, 4))
    r = rng.standard_normal((2, 5, 3))  # loss = sum(r * y), so grad_y = r

    y, ctx = layer.forward_train(x)
    assert y.shape == (2, 5, 3)
    expected = x @ layer.parameters()["weight"].T + (layer.parameters()["bias"] if bias else 0)
    np.testing.assert_allclose(y, expected)
    grad_x, grads = layer.backward(ctx, r)
    assert set(grads) == set(layer.parameters()) == ({"weight", "bias"} if bias else {"weight"})

    def loss():
        return float(np.sum(r * layer(x)))
    assert rel_err(grad_x, numeric_grad(loss, x)) < 1e-8
    for name, p in layer.parameters().items():
        assert rel_err(grads[name], numeric_grad(loss, p)) < 1e-8, name


def test_dense_rejects_wrong_sizes():
    layer = Dense(4, 3)
    with pytest.raises(ValueError, match="in_features=4"):
        layer(np.zeros((2, 5)))
    _, ctx = layer.forward_train(np.zeros((2, 4)))
    with pytest.raises(ValueError, match="grad_y"):
        layer.backward(ctx, np.zeros((2, 4)))


def test_dense_float32_stays_float32():
    layer = Dense(4, 3, seed=0)
    y, ctx = layer.forward_train(np.ones((2, 4), dtype=np.float64))
    grad_x, grads = layer.backward(ctx, np.ones_like(y))
    assert y.dtype == grad_x.dtype == grads["weight"].dtype == np.float32


def test_embedding_lookup_and_gradient_with_repeated_ids():
    rng = np.random.default_rng(0)
    emb = Embedding(5, 3, dtype=np.float64, seed=2)
    ids = np.array([[0, 2], [2, 4], [2, 0]])  # 2 three times, 0 twice, 1 and 3 never
    r = rng.standard_normal((3, 2, 3))
    y, ctx = emb.forward_train(ids)
    np.testing.assert_array_equal(y, emb.parameters()["weight"][ids])
    grad_ids, grads = emb.backward(ctx, r)
    assert grad_ids is None

    def loss():
        return float(np.sum(r * emb(ids)))
    assert rel_err(grads["weight"], numeric_grad(loss, emb.parameters()["weight"])) < 1e-8
    np.testing.assert_array_equal(grads["weight"][[1, 3]], 0)


def test_embedding_rejects_bad_ids():
    emb = Embedding(5, 3)
    with pytest.raises(ValueError, match="0..4"):
        emb(np.array([1, 5]))
    with pytest.raises(TypeError, match="integer"):
        emb(np.array([1.0]))


@pytest.mark.parametrize("weighted", [False, True])
def test_softmax_cross_entropy_value_and_gradient(weighted):
    rng = np.random.default_rng(0)
    logits = rng.standard_normal((3, 4, 5))
    targets = rng.integers(0, 5, size=(3, 4))
    weights = (rng.random((3, 4)) < 0.6).astype(float) if weighted else None
    if weighted:
        weights[0, 0] = 1.0
    loss, grad = softmax_cross_entropy(logits, targets, weights)

    p = np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)
    ce = -np.log(np.take_along_axis(p, targets[..., None], -1)[..., 0])
    w = np.ones((3, 4)) if weights is None else weights
    assert loss == pytest.approx((w * ce).sum() / w.sum(), rel=1e-12)
    num = numeric_grad(lambda: softmax_cross_entropy(logits, targets, weights)[0], logits)
    assert rel_err(grad, num) < 1e-8
    if weighted:  # a masked prediction gets no gradient
        np.testing.assert_array_equal(grad[w == 0], 0)


def test_softmax_cross_entropy_is_stable_for_large_logits():
    loss, grad = softmax_cross_entropy(np.array([[1000.0, 0.0], [0.0, 1000.0]]), np.array([0, 0]))
    assert np.isfinite(loss) and np.isfinite(grad).all()
    assert loss == pytest.approx(500.0)


def test_softmax_cross_entropy_rejects_mismatched_targets():
    with pytest.raises(ValueError, match="0..2"):
        softmax_cross_entropy(np.zeros((2, 3)), np.array([0, 3]))
    with pytest.raises(ValueError, match="shapes"):
        softmax_cross_entropy(np.zeros((2, 3)), np.array([0, 1, 2]))
    with pytest.raises(TypeError, match="integer"):
        softmax_cross_entropy(np.zeros((2, 3)), np.array([0.0, 1.0]))


@pytest.mark.parametrize("weighted", [False, True])
def test_mse_loss_value_and_gradient(weighted):
    rng = np.random.default_rng(1)
    pred, target = rng.standard_normal((2, 3, 4)), rng.standard_normal((2, 3, 4))
    weights = rng.random((2, 3, 4)) if weighted else None
    loss, grad = mse_loss(pred, target, weights)
    w = np.ones_like(pred) if weights is None else weights
    assert loss == pytest.approx((w * (pred - target) ** 2).sum() / w.sum(), rel=1e-12)
    num = numeric_grad(lambda: mse_loss(pred, target, weights)[0], pred)
    assert rel_err(grad, num) < 1e-8


def test_mse_loss_rejects_shape_mismatch():
    with pytest.raises(ValueError, match="same shape"):
        mse_loss(np.zeros((2, 1)), np.zeros(2))


def test_softmax_with_mask_and_its_backward():
    rng = np.random.default_rng(2)
    x = rng.standard_normal((4, 3))
    mask = np.ones((4, 3), dtype=bool)
    mask[2:, 1] = mask[3:, 2] = False  # e.g. sequences of lengths 4, 2, 3 along axis 0
    r = rng.standard_normal((4, 3))
    probs = softmax(x, axis=0, mask=mask)
    np.testing.assert_allclose(probs.sum(axis=0), 1.0)
    assert (probs[~mask] == 0).all()
    grad = softmax_backward(probs, r, axis=0)
    num = numeric_grad(lambda: float(np.sum(r * softmax(x, axis=0, mask=mask))), x)
    assert rel_err(grad, num) < 1e-8
    assert (grad[~mask] == 0).all()


def test_global_norm_and_clipping_keep_direction():
    grads = [{"a": np.array([3.0, 0.0]), "b": np.array([[4.0]])}, {"c": None}]
    assert global_norm(grads) == pytest.approx(5.0)
    before = clip_grad_norm(grads, 1.0)
    assert before == pytest.approx(5.0)
    assert global_norm(grads) == pytest.approx(1.0)
    np.testing.assert_allclose(grads[0]["a"], [0.6, 0.0])
    np.testing.assert_allclose(grads[0]["b"], [[0.8]])


def test_clipping_leaves_small_gradients_alone():
    g = {"a": np.array([0.3, 0.4])}
    assert clip_grad_norm(g, 1.0) == pytest.approx(0.5)
    np.testing.assert_array_equal(g["a"], [0.3, 0.4])
    with pytest.raises(ValueError, match="max_norm"):
        clip_grad_norm(g, 0.0)


def quadratic_grads(params, target):
    """Gradient of sum((p - target)^2) for the one parameter 'p'."""
    return {"p": 2 * (params["p"] - target)}


@pytest.mark.parametrize("make", [
    lambda p: SGD(p, lr=0.1),
    lambda p: SGD(p, lr=0.05, momentum=0.9),
    lambda p: Adam(p, lr=0.1),
], ids=["sgd", "sgd-momentum", "adam"])
def test_optimisers_minimise_a_quadratic_in_place(make):
    target = np.array([1.0, -2.0, 3.0])
    params = {"p": np.zeros(3)}
    live = params["p"]
    opt = make(params)
    for _ in range(300):
        opt.step(quadratic_grads(params, target))
    assert params["p"] is live  # updated in place: layers see the new values
    np.testing.assert_allclose(params["p"], target, atol=1e-3)


def test_sgd_step_is_exact():
    params = {"p": np.array([1.0, 2.0])}
    SGD(params, lr=0.5).step({"p": np.array([2.0, -4.0])})
    np.testing.assert_array_equal(params["p"], [0.0, 4.0])


def test_adam_first_step_moves_each_parameter_by_lr():
    # with bias correction, the first update is lr * g / |g| (up to eps) whatever |g| is
    params = {"p": np.array([0.0, 0.0])}
    Adam(params, lr=0.01).step({"p": np.array([1e-3, -50.0])})
    np.testing.assert_allclose(params["p"], [-0.01, 0.01], rtol=1e-4)


def test_adam_matches_torch():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(3)
    p0 = rng.standard_normal(4)
    grads = rng.standard_normal((5, 4))
    params = {"p": p0.copy()}
    opt = Adam(params, lr=0.01, betas=(0.8, 0.99), eps=1e-6)
    tp = torch.tensor(p0, requires_grad=True)
    topt = torch.optim.Adam([tp], lr=0.01, betas=(0.8, 0.99), eps=1e-6)
    for g in grads:
        opt.step({"p": g})
        tp.grad = torch.tensor(g)
        topt.step()
    np.testing.assert_allclose(params["p"], tp.detach().numpy(), rtol=1e-10)


def test_optimiser_over_several_dicts_and_missing_names():
    a, b = {"w": np.ones(2), "frozen": np.ones(2)}, {"v": np.ones(1)}
    opt = SGD([a, b], lr=1.0)
    opt.step([{"w": np.ones(2)}, {"v": np.full(1, 2.0)}])
    np.testing.assert_array_equal(a["w"], 0)
    np.testing.assert_array_equal(a["frozen"], 1)
    np.testing.assert_array_equal(b["v"], -1)
    with pytest.raises(ValueError, match="2 dict"):
        opt.step({"w": np.ones(2)})
    with pytest.raises(ValueError, match="not among"):
        opt.step([{"x": np.ones(2)}, {}])
    with pytest.raises(ValueError, match="shape"):
        opt.step([{"w": np.ones(3)}, {}])


def test_optimisers_train_layer_parameters_in_place():
    """The optimisers update a pyrnn layer's live parameters: the layer's output changes."""
    import pyrnn

    rnn = pyrnn.RNN(2, 3, backend="numpy", seed=0)
    x = np.ones((4, 1, 2), dtype=np.float32)
    before, _ = rnn(x)
    out, _, ctx = rnn.forward_train(x)
    _, _, grads = rnn.backward(ctx, np.ones_like(out))
    Adam(rnn.parameters(), lr=0.1).step(grads)
    after, _ = rnn(x)
    assert after.sum() < before.sum()  # one step down the gradient of sum(out)


def test_minibatches_cover_every_index_once():
    rng = np.random.default_rng(0)
    batches = list(minibatches(10, 4, rng))
    assert [len(b) for b in batches] == [4, 4, 2]
    assert sorted(np.concatenate(batches).tolist()) == list(range(10))
    assert np.concatenate(list(minibatches(5, 2))).tolist() == [0, 1, 2, 3, 4]
