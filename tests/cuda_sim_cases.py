"""The CUDA backend against the NumPy reference, in Numba's CUDA simulator.

Run only with NUMBA_ENABLE_CUDASIM=1 set before numba is imported: tests/test_cuda_simulator.py
runs this file in its own pytest process (the file name keeps the main run from collecting it).
Shapes are tiny (the simulator runs a Python thread per CUDA thread); the simulator's small GEMM
tiles make them span several tiles. Every launch is checked against the kernel's declared
signature (the one the PTX tests compile), and the last test checks every kernel ran.
"""

from __future__ import annotations

import os
import types

import numpy as np
import pytest

assert os.environ.get("NUMBA_ENABLE_CUDASIM") == "1", "run through tests/test_cuda_simulator.py"

from numba import cuda  # noqa: E402

import pyrnn  # noqa: E402
import pyrnn.cuda as cu  # noqa: E402
from pyrnn import ref  # noqa: E402
from pyrnn.cuda import _runtime, gemm, persistent  # noqa: E402

T, B, I, H = 3, 2, 3, 4
TOL = {np.float32: 1e-4, np.float64: 1e-10}
VARIANTS = {  # name -> (cell, gates, flags)
    "rnn_tanh": ("rnn", 1, {"relu": False}),
    "rnn_relu": ("rnn", 1, {"relu": True}),
    "lstm": ("lstm", 4, {}),
    "gru_reset_after": ("gru", 3, {"reset_after": True}),
    "gru_reset_before": ("gru", 3, {"reset_after": False}),
}
# two flag settings per case between them cover every value of every flag
SETTINGS = {
    "fwd-bias-lengths-h0": dict(reverse=False, bias=True, lengths=[1, 3], states=True),
    "rev-nobias-full": dict(reverse=True, bias=False, lengths=None, states=False),
    "rev-bias-lengths": dict(reverse=True, bias=True, lengths=[3, 2], states=True),
}


def rel_err(got, want):
    got, want = np.asarray(got, dtype=np.float64), np.asarray(want, dtype=np.float64)
    scale = np.linalg.norm(want)
    return np.linalg.norm(got - want) / (scale if scale > 0 else 1.0)


def host(a):
    return a.copy_to_host() if _runtime.is_device_array(a) else a


def make_case(variant, dtype, setting, seed=0):
    cell, G, flags = VARIANTS[variant]
    rng = np.random.default_rng(seed)

    def rand(*shape, scale=1.0):
        return (rng.standard_normal(shape) * scale).astype(dtype)

    s = SETTINGS[setting]
    case = types.SimpleNamespace(cell=cell, flags=flags, dtype=dtype, reverse=s["reverse"])
    case.x = rand(T, B, I)
    case.weights = (rand(G * H, I, scale=0.5), rand(G * H, H, scale=0.5),
                    rand(G * H) if s["bias"] else None, rand(G * H) if s["bias"] else None)
    n_states = 2 if cell == "lstm" else 1
    case.states = tuple(rand(B, H) if s["states"] else None for _ in range(n_states))
    case.lengths = None if s["lengths"] is None else np.array(s["lengths"], dtype=np.int64)
    case.dy = rand(T, B, H)
    case.grads_n = tuple(rand(B, H) if s["states"] else None for _ in range(n_states))
    return case


def workspace_len(case, training):
    fn = getattr(ref, f"{case.cell}_workspace_len")
    if case.cell == "gru":
        return fn(T, B, I, H, training, case.flags["reset_after"])
    return fn(T, B, I, H, training)


def forward(module, case, workspace, training, **arrays):
    a = {**dict(x=case.x, states=case.states, weights=case.weights, lengths=case.lengths),
         **arrays}
    return getattr(module, f"{case.cell}_forward")(
        a["x"], *a["states"], *a["weights"], a["lengths"], workspace, reverse=case.reverse,
        training=training, **case.flags)


def backward(module, case, workspace, **arrays):
    a = {**dict(x=case.x, states=case.states, weights=case.weights, lengths=case.lengths,
                dy=case.dy, grads_n=case.grads_n), **arrays}
    return getattr(module, f"{case.cell}_backward")(
        a["x"], *a["states"], *a["weights"], a["lengths"], a["dy"], *a["grads_n"], workspace,
        reverse=case.reverse, **case.flags)


def assert_close(got, want, dtype, what):
    assert len(got) == len(want), what
    for k, (g, w) in enumerate(zip(got, want)):
        if w is None:
            assert g is None, f"{what}[{k}]: expected None"
            continue
        g = host(g)
        assert g.shape == w.shape and g.dtype == w.dtype, f"{what}[{k}]: {g.shape} {g.dtype}"
        assert rel_err(g, w) <= TOL[dtype], f"{what}[{k}]: rel err {rel_err(g, w):.2e}"


@pytest.fixture(params=["steps", "persistent"])
def path(request, monkeypatch):
    """Which time loop runs the forward pass; checks the persistent kernel really ran."""
    monkeypatch.setenv("PYRNN_CUDA_PERSISTENT", "1" if request.param == "persistent" else "0")
    before = persistent.launches
    yield request.param
    ran = persistent.launches - before
    assert (ran > 0) == (request.param == "persistent")


@pytest.mark.parametrize("setting", ["fwd-bias-lengths-h0", "rev-nobias-full"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("variant", list(VARIANTS))
def test_matches_reference(variant, dtype, setting, path):
    """Inference forward, training forward (workspace and all), backward: all vs the reference."""
    case = make_case(variant, dtype, setting)
    # inference: y, h_n (, c_n)
    want = forward(ref, case, np.zeros(workspace_len(case, False), dtype), False)
    got = forward(cu, case, cu.empty(workspace_len(case, False), dtype), False)
    assert all(isinstance(g, np.ndarray) for g in got)
    assert_close(got, want, dtype, "inference")
    # training: outputs and the workspace the forward filled (NumPy workspace copied back)
    n = workspace_len(case, True)
    ws_ref, ws_cuda = np.zeros(n, dtype), np.zeros(n, dtype)
    assert_close(forward(cu, case, ws_cuda, True), forward(ref, case, ws_ref, True), dtype,
                 "training forward")
    assert rel_err(ws_cuda, ws_ref) <= TOL[dtype]
    # backward: every gradient, from the same workspace contents
    assert_close(backward(cu, case, ws_cuda), backward(ref, case, ws_ref), dtype, "backward")


@pytest.mark.parametrize("variant", ["lstm", "gru_reset_before", "rnn_relu"])
def test_device_arrays_in_and_out(variant, path):
    """Device-array inputs give device-array results, and the same numbers."""
    dtype = np.float32
    case = make_case(variant, dtype, "rev-bias-lengths", seed=1)
    dev = dict(x=cuda.to_device(case.x), lengths=cuda.to_device(case.lengths),
               states=tuple(cuda.to_device(s) for s in case.states),
               weights=tuple(cuda.to_device(w) for w in case.weights),
               dy=cuda.to_device(case.dy), grads_n=tuple(cuda.to_device(g) for g in case.grads_n))
    n = workspace_len(case, True)
    ws_ref, ws_dev = np.zeros(n, dtype), cu.empty(n, dtype)
    fwd_args = {k: dev[k] for k in ("x", "lengths", "states", "weights")}
    got = forward(cu, case, ws_dev, True, **fwd_args)
    assert all(_runtime.is_device_array(g) for g in got)
    assert_close(got, forward(ref, case, ws_ref, True), dtype, "forward")
    got = backward(cu, case, ws_dev, **dev)
    assert all(_runtime.is_device_array(g) for g in got)
    assert_close(got, backward(ref, case, ws_ref), dtype, "backward")


def test_layers_compose_like_numpy():
    """Two bidirectional LSTM layers with dropout through pyrnn's modules: cuda equals numpy
    (device workspaces from empty(), NumPy in and out, weights cached for forward+backward)."""
    kw = dict(num_layers=2, bidirectional=True, dropout=0.25, dtype=np.float64, seed=3)
    m_np = pyrnn.LSTM(I, H, backend="numpy", **kw)
    m_cu = pyrnn.LSTM(I, H, backend="cuda", **kw)
    m_cu.load_state_dict(m_np.state_dict())
    rng = np.random.default_rng(4)
    x = rng.standard_normal((2, B, I))
    lengths = np.array([1, 2])
    out_np, _, ctx_np = m_np.forward_train(x, lengths=lengths)
    with cu.cache_weights():
        out_cu, _, ctx_cu = m_cu.forward_train(x, lengths=lengths)
        g = rng.standard_normal(out_np.shape)
        dx_np, dh_np, grads_np = m_np.backward(ctx_np, g)
        dx_cu, dh_cu, grads_cu = m_cu.backward(ctx_cu, g)
    assert rel_err(out_cu, out_np) <= 1e-10
    assert rel_err(dx_cu, dx_np) <= 1e-10
    for k in range(2):
        assert rel_err(dh_cu[k], dh_np[k]) <= 1e-10
    for name, want in grads_np.items():
        assert rel_err(grads_cu[name], want) <= 1e-10, name


def test_persistent_falls_back_when_weights_do_not_fit(monkeypatch):
    monkeypatch.setenv("PYRNN_CUDA_PERSISTENT", "1")
    monkeypatch.setattr(persistent, "SHARED_BYTES", 64)
    persistent.cached_plan.cache_clear()
    try:
        case = make_case("lstm", np.float64, "fwd-bias-lengths-h0")
        before = persistent.launches
        got = forward(cu, case, np.zeros(workspace_len(case, False)), False)
        assert persistent.launches == before
        want = forward(ref, case, np.zeros(workspace_len(case, False)), False)
        assert_close(got, want, np.float64, "fallback")
    finally:
        persistent.cached_plan.cache_clear()


def test_persistent_plan():
    # H100-like: 132 SMs x 4 blocks; LSTM H=512 float32 at batch 1
    found = persistent.plan(4, 512, 1, 4, lambda threads, smem: 528)
    assert found is not None
    n_blocks, U, smem = found
    assert n_blocks * U >= 512 and n_blocks <= 528 and smem <= persistent.SHARED_BYTES
    assert persistent.plan(4, 512, 1, 4, lambda threads, smem: 1) is None  # weights too big
    assert persistent.plan(1, 4, 1, 8, lambda threads, smem: 1) == (
        1, 4, persistent.shared_bytes(1, 4, 4, 1, 8))


def test_weight_cache_reuses_uploads_and_reuploads_outside():
    w = np.ones((2, 2))
    with cu.cache_weights():
        a = _runtime.weight("w", w, np.float64)
        assert _runtime.weight("w", w, np.float64) is a
    assert _runtime.weight("w", w, np.float64) is not a


def test_gemm_cupy_branch_addresses_like_the_kernel(monkeypatch):
    """The cuBLAS branch's strided views (CuPy stood in for by NumPy over simulator memory)."""
    fake = types.SimpleNamespace(asarray=lambda a: a._ary if hasattr(a, "_ary") else a,
                                 matmul=np.matmul, lib=np.lib)
    rng = np.random.default_rng(5)
    M, N, K = 5, 6, 3
    a = rng.standard_normal((K, 7))   # op(a) = a[:, 1:6]^T (offset 1, trans, lda 7)
    b = rng.standard_normal((N, K))   # op(b) = b^T (trans, ldb K)
    bias1, bias2 = rng.standard_normal(N), rng.standard_normal(N)
    want = a[:, 1:6].T @ b.T + bias1
    want[:, :2] += bias2[:2]
    for cupy in (None, fake):
        monkeypatch.setattr(gemm, "_cupy", lambda cupy=cupy: cupy)
        c = cuda.to_device(np.zeros(M * N))
        gemm.gemm(cuda.to_device(a.ravel()), 1, 7, True, cuda.to_device(b.ravel()), 0, K, True,
                  c, 0, N, M, N, K, cuda.to_device(bias1), cuda.to_device(bias2), 2)
        assert rel_err(c.copy_to_host().reshape(M, N), want) <= 1e-12


# -- errors ------------------------------------------------------------------------------------

class _OnOtherGpu:
    """A device array that says it lives on GPU 1."""

    def __init__(self, arr):
        self.arr = arr
        self.device = types.SimpleNamespace(id=1)
        self.__cuda_array_interface__ = {}


def test_inputs_on_different_devices_are_refused():
    case = make_case("rnn_tanh", np.float32, "fwd-bias-lengths-h0")
    w_ih, w_hh, b_ih, b_hh = case.weights
    with pytest.raises(ValueError, match="different devices.*w_hh on GPU 1"):
        cu.rnn_forward(cuda.to_device(case.x), None, w_ih, _OnOtherGpu(w_hh), b_ih, b_hh, None,
                       cu.empty(workspace_len(case, False), np.float32))


def test_clear_errors_for_bad_arrays():
    case = make_case("gru_reset_after", np.float32, "fwd-bias-lengths-h0")
    w_ih, w_hh, b_ih, b_hh = case.weights
    small = cu.empty(3, np.float32)
    with pytest.raises(ValueError, match="workspace: expected a 1-D array of at least"):
        cu.gru_forward(case.x, None, w_ih, w_hh, b_ih, b_hh, None, small)
    ws = cu.empty(workspace_len(case, False), np.float32)
    with pytest.raises(TypeError, match="w_hh: expected a device array of float32, got float64"):
        cu.gru_forward(case.x, None, w_ih, cuda.to_device(w_hh.astype(np.float64)), b_ih, b_hh,
                       None, ws)
    with pytest.raises(ValueError, match=r"w_ih: expected shape \[12, 3\]"):
        cu.gru_forward(case.x, None, w_ih[:, :2], w_hh, b_ih, b_hh, None, ws)
    with pytest.raises(ValueError, match="exceeds what the tiled kernel supports"):
        d = cuda.to_device(np.zeros(4, np.float32))
        gemm.gemm(d, 0, 1, False, d, 0, 1, False, d, 0, 1, 1, 10**7, 1)


def test_backend_resolves_in_the_simulator():
    assert "cuda" in pyrnn.available_backends()
    assert pyrnn.backend_info()["cuda"]["simulator"] is True


def test_zz_every_kernel_ran_with_its_declared_signature():
    """Runs last: each kernel of each dtype was launched by the tests above (each launch was
    checked against its declared signature, which the PTX tests compile)."""
    from pyrnn.cuda import cells

    declared = {(name, str(np.dtype(dt))) for dt in (np.float32, np.float64)
                for mod in (gemm, cells, persistent) for name in mod.kernels(np.dtype(dt))}
    missing = declared - _runtime.launched
    assert not missing, f"never launched: {sorted(missing)}"
