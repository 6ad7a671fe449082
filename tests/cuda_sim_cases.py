"""The CUDA backend against the NumPy reference, in Numba's CUDA simulator.

Run only with NUMBA_ENABLE_CUDASIM=1 set before numba is imported: tests/test_cuda_simulator.py
runs this file in its own pytest process (the file name keeps the main run from collecting it).
Shapes are tiny (the simulator runs a Python thread per CUDA thread); the simulator's small GEMM
tiles make them span several tiles. Every launch is checked against the kernel's declared
signature (the one the PTX tests compile), and the last test checks every kernel ran.
"""

from __future__ import annotations

import contextlib
import os
import types

import numpy as np
import pytest

assert os.environ.get("NUMBA_ENABLE_CUDASIM") == "1", "run through tests/test_cuda_simulator.py"

from numba import cuda  # noqa: E402
from numba.cuda.simulator.cudadrv.devicearray import FakeCUDAArray  # noqa: E402

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


@pytest.mark.parametrize("variant", ["lstm", "gru_reset_after", "rnn_tanh"])
def test_backward_returns_only_the_wanted_gradients(variant):
    """``wanted`` (a flag per result): those not wanted are None, the others the reference's."""
    dtype = np.float64
    case = make_case(variant, dtype, "fwd-bias-lengths-h0")
    n = workspace_len(case, True)
    ws_ref, ws_cuda = np.zeros(n, dtype), np.zeros(n, dtype)
    forward(ref, case, ws_ref, True)
    forward(cu, case, ws_cuda, True)
    count = len(case.states) + 5
    for wanted in ([k % 2 == 0 for k in range(count)], [k % 2 == 1 for k in range(count)]):
        args = (case.x, *case.states, *case.weights, case.lengths, case.dy, *case.grads_n)
        got = getattr(cu, f"{case.cell}_backward")(*args, ws_cuda, reverse=case.reverse,
                                                    wanted=wanted, **case.flags)
        want = getattr(ref, f"{case.cell}_backward")(*args, ws_ref, reverse=case.reverse,
                                                     wanted=wanted, **case.flags)
        assert [g is None for g in want] == [not w for w in wanted]
        assert_close(got, want, dtype, "backward")


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


# -- array operations and modules on device arrays -----------------------------------------

@contextlib.contextmanager
def no_host_copies():
    """Inside: reading floating-point data of a simulator device array on the host raises
    (device lengths, B integers, are copied to be checked, by design), device-to-device copies
    still work, and arithmetic on device arrays raises (real Numba device arrays have none), so
    a composition that falls back to NumPy cannot pass."""
    def refuse(*args, **kwargs):
        raise AssertionError("a device array was read on the host")

    original_to_host, original = FakeCUDAArray.copy_to_host, FakeCUDAArray.copy_to_device

    def copy_to_host(self, ary=None, stream=0):
        if self.dtype.kind == "f":
            refuse()
        return original_to_host(self, ary, stream)

    def copy_to_device(self, ary, stream=0):
        if isinstance(ary, FakeCUDAArray):  # device to device: no __array__ involved
            assert ary.shape == self.shape and ary.dtype == self.dtype
            np.copyto(self._ary, ary._ary)
        else:
            original(self, ary, stream)

    # NumPy reads a simulator array through any of these (it forwards them to its ndarray)
    patches = {"copy_to_host": copy_to_host, "__array__": refuse,
               "__array_interface__": property(refuse), "__array_struct__": property(refuse),
               "copy_to_device": copy_to_device,
               **{op: refuse for op in ("__add__", "__sub__", "__mul__", "__truediv__")}}
    saved = {name: FakeCUDAArray.__dict__.get(name) for name in patches}
    for name, fn in patches.items():
        setattr(FakeCUDAArray, name, fn)
    try:
        yield
    finally:
        for name, fn in saved.items():
            if fn is None:
                delattr(FakeCUDAArray, name)
            else:
                setattr(FakeCUDAArray, name, fn)


def on_device(a):
    """Host data (arrays, tuples of them, None) as simulator device arrays."""
    if a is None:
        return None
    if isinstance(a, tuple):
        return tuple(on_device(v) for v in a)
    return cuda.to_device(a)


def flatten(result):
    """Every array in a nest of tuples and dicts, in order."""
    if isinstance(result, dict):
        return [v for k in sorted(result) for v in flatten(result[k])]
    if isinstance(result, (tuple, list)):
        return [v for r in result for v in flatten(r)]
    return [result]


def assert_device_results_match(got, want, tol=1e-10):
    got, want = flatten(got), flatten(want)
    assert len(got) == len(want)
    for k, (g, w) in enumerate(zip(got, want)):
        assert isinstance(g, FakeCUDAArray), f"result {k} is {type(g).__name__}, not on device"
        g = g.copy_to_host()
        assert g.shape == w.shape and g.dtype == w.dtype, f"result {k}: {g.shape} {g.dtype}"
        assert rel_err(g, w) <= tol, f"result {k}: rel err {rel_err(g, w):.2e}"


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
def test_array_ops_match_the_host_set(dtype):
    """Every device array operation against pyrnn/_host_ops.py, device arrays in and out."""
    from pyrnn import _host_ops as host

    rng = np.random.default_rng(6)
    a, b = (rng.standard_normal((3, 2, 5)).astype(dtype) for _ in range(2))
    c = rng.standard_normal((3, 2, 2)).astype(dtype)
    da, db, dc = on_device((a, b, c))
    dev = cu.array_ops
    with no_host_copies():
        got = [dev.concat_last([da, dc, db]), dev.take_last(da, 1, 4), dev.swap01(da),
               dev.stack([da, db]), dev.multiply(da, db), dev.add(da, db),
               dev.add(da, db, -0.5)]
        out = cuda.to_device(np.zeros_like(a))
        assert dev.add(da, db, 2.0, out=out) is out
        dev.copy_into(dc, dev.take_last(db, 0, 2))
        assert dev.concat_last([da]) is da
    want = [host.concat_last([a, c, b]), host.take_last(a, 1, 4), host.swap01(a),
            host.stack([a, b]), host.multiply(a, b), host.add(a, b), host.add(a, b, -0.5)]
    assert_device_results_match(got + [out, dc],
                                want + [a + 2 * b, np.ascontiguousarray(b[..., :2])])
    assert np.array_equal(dev.to_host(da), a)
    mask = dev.dropout_mask((4, 3), 0.5, np.random.default_rng(1), dtype)
    assert np.array_equal(mask.copy_to_host(),
                          host.dropout_mask((4, 3), 0.5, np.random.default_rng(1), dtype))
    with pytest.raises(ValueError, match="expected a C-contiguous device array"):
        dev.swap01(da.transpose((1, 0, 2)))


LAYER_CASES = {  # variant -> (module keyword arguments, call options)
    "rnn_tanh": (dict(num_layers=2), dict(unbatched=True, hx=True)),
    "rnn_relu": (dict(nonlinearity="relu", batch_first=True, bidirectional=True),
                 dict(lengths="host", grad_h_n=True)),
    "lstm": (dict(num_layers=2, bidirectional=True, dropout=0.25),
             dict(lengths="host", hx=True, grad_h_n=True)),
    "gru_reset_after": (dict(batch_first=True, bias=False), dict(lengths="device")),
    "gru_reset_before": (dict(num_layers=2, dropout=0.5, reset_after=False),
                         dict(hx=True, grad_h_n=True)),
}
MODULES = {"rnn": "RNN", "lstm": "LSTM", "gru": "GRU"}


def layer_pair(variant, **extra):
    """The same layer (float64, same seed) on the numpy backend and moved to the GPU."""
    kw, _ = LAYER_CASES[variant]
    cls = getattr(pyrnn, MODULES[VARIANTS[variant][0]])
    host_m = cls(I, H, dtype=np.float64, backend="numpy", seed=7, **kw, **extra)
    dev_m = cls(I, H, dtype=np.float64, backend="cuda", seed=7, **kw, **extra)
    dev_m.load_state_dict(host_m.state_dict())
    assert dev_m.to("cuda") is dev_m and dev_m.device == "cuda"
    return host_m, dev_m


@pytest.mark.parametrize("variant", list(LAYER_CASES))
def test_layer_on_device_arrays(variant):
    """forward, forward_train and backward of a layer whose parameters are on the GPU: device
    arrays in, device arrays out, nothing read on the host, the numpy backend's numbers."""
    host_m, dev_m = layer_pair(variant)
    _, opts = LAYER_CASES[variant]
    rng = np.random.default_rng(8)
    D, LD = host_m.num_directions, host_m.num_layers * host_m.num_directions
    lead = (T,) if opts.get("unbatched") else ((B, T) if host_m.batch_first else (T, B))
    state = (LD,) if opts.get("unbatched") else (LD, B)
    x = rng.standard_normal((*lead, I))
    n_states = 2 if variant == "lstm" else 1

    def states():
        s = tuple(rng.standard_normal((*state, H)) for _ in range(n_states))
        return s if n_states == 2 else s[0]

    hx = states() if opts.get("hx") else None
    lengths = np.array([2, 3]) if opts.get("lengths") else None
    dev_lengths = on_device(lengths) if opts.get("lengths") == "device" else lengths
    g_out = rng.standard_normal((*lead, D * H))
    g_h = states() if opts.get("grad_h_n") else None
    with no_host_copies():
        infer = dev_m(on_device(x), on_device(hx), dev_lengths)
        *fwd, ctx = dev_m.forward_train(on_device(x), on_device(hx), dev_lengths)
        bwd = dev_m.backward(ctx, on_device(g_out), on_device(g_h))
        *_, ctx = dev_m.forward_train(on_device(x), on_device(hx), dev_lengths)
        weights_only = dev_m.backward(ctx, on_device(g_out), on_device(g_h), input_grad=False,
                                      state_grad=False)
    want_fwd = host_m.forward_train(x, hx, lengths)
    assert_device_results_match(infer, host_m(x, hx, lengths))
    assert_device_results_match(fwd, want_fwd[:2])
    assert_device_results_match(bwd, host_m.backward(want_fwd[2], g_out, g_h))
    assert set(bwd[2]) == set(dev_m.parameters())
    # asked for the weights' gradients only (the second forward draws the same dropout masks
    # on both sides: each module's own generator)
    *_, host_ctx = host_m.forward_train(x, hx, lengths)
    assert weights_only[:2] == (None, None)
    assert_device_results_match(weights_only[2], host_m.backward(host_ctx, g_out, g_h)[2])


@pytest.mark.parametrize("variant", ["rnn_relu", "lstm", "gru_reset_before"])
def test_cell_on_device_arrays(variant):
    cell, _, flags = VARIANTS[variant]
    kw = {"nonlinearity": "relu"} if cell == "rnn" else {k: v for k, v in flags.items()}
    cls = getattr(pyrnn, MODULES[cell] + "Cell")
    host_m = cls(I, H, dtype=np.float64, backend="numpy", seed=9, **kw)
    dev_m = cls(I, H, dtype=np.float64, seed=9, **kw).to("cuda")
    rng = np.random.default_rng(10)
    unbatched = cell == "lstm"  # one cell runs unbatched [I] input
    lead = () if unbatched else (B,)
    x = rng.standard_normal((*lead, I))
    hx = tuple(rng.standard_normal((*lead, H)) for _ in range(2 if cell == "lstm" else 1))
    hx = hx if cell == "lstm" else hx[0]
    grads = tuple(rng.standard_normal((*lead, H)) for _ in range(2 if cell == "lstm" else 1))
    with no_host_copies():
        infer = dev_m(on_device(x), on_device(hx))
        state, ctx = dev_m.forward_train(on_device(x), on_device(hx))
        bwd = dev_m.backward(ctx, *on_device(grads))
    state_np, ctx_np = host_m.forward_train(x, hx)
    assert_device_results_match(infer, host_m(x, hx))
    assert_device_results_match(state, state_np)
    assert_device_results_match(bwd, host_m.backward(ctx_np, *grads))


def test_to_state_dict_and_a_training_step_on_the_device():
    """to() moves the live arrays; state_dict() is host copies from either side; load_state_dict
    takes either side; an SGD step on the device equals the host one."""
    m = pyrnn.GRU(I, H, dtype=np.float64, seed=11)
    live = m.parameters()
    before = m.state_dict()
    assert m.to("cuda").device == "cuda" and m.parameters() is live
    assert all(_runtime.is_device_array(p) for p in live.values())
    sd = m.state_dict()
    assert all(isinstance(v, np.ndarray) for v in sd.values())
    assert all(np.array_equal(sd[k], before[k]) for k in before)
    # host values into device parameters, in place (the live arrays stay the same objects)
    w = live["weight_hh_l0"]
    m.load_state_dict({k: v * 2 for k, v in before.items()})
    assert m.parameters()["weight_hh_l0"] is w
    assert np.array_equal(w.copy_to_host(), 2 * before["weight_hh_l0"])
    # device values into host parameters
    host_m = pyrnn.GRU(I, H, dtype=np.float64, backend="numpy", seed=12)
    host_m.load_state_dict({k: cuda.to_device(v) for k, v in before.items()})
    assert all(np.array_equal(host_m.state_dict()[k], before[k]) for k in before)
    m.load_state_dict({k: cuda.to_device(v) for k, v in before.items()})  # device to device
    # one SGD step each side
    rng = np.random.default_rng(13)
    x, g = rng.standard_normal((T, B, I)), rng.standard_normal((T, B, H))
    _, _, ctx = m.forward_train(on_device(x))
    _, _, grads = m.backward(ctx, on_device(g))
    for name, grad in grads.items():
        cu.array_ops.add(live[name], grad, -0.1, out=live[name])
    _, _, ctx = host_m.forward_train(x)
    _, _, grads = host_m.backward(ctx, g)
    for name, grad in grads.items():
        host_m.parameters()[name] -= 0.1 * grad
    assert m.to("cpu").device == "cpu"
    assert all(isinstance(p, np.ndarray) for p in live.values())
    for name, p in host_m.parameters().items():
        assert rel_err(live[name], p) <= 1e-12, name


def test_arrays_on_the_wrong_side_are_refused():
    m = pyrnn.LSTM(I, H, dtype=np.float32, seed=14)
    x = np.zeros((T, B, I), np.float32)
    with pytest.raises(ValueError, match=r"x: expected a host array .*got a device array; call "
                                         r"the module's .to\('cuda'\)"):
        m(on_device(x))
    with pytest.raises(ValueError, match="state_dict.*expected shape"):
        m.load_state_dict({**m.state_dict(), "bias_ih_l0": cuda.to_device(np.zeros(3))})
    m.to("cuda")
    with pytest.raises(ValueError, match=r"x: expected a device array .*got a host array; call "
                                         r"the module's .to\('cpu'\) or pass device arrays"):
        m(x)
    h = np.zeros((1, B, H), np.float32)
    with pytest.raises(ValueError, match=r"hx\[1\] \(c0\): expected a device array"):
        m(on_device(x), (on_device(h), h))
    with pytest.raises(TypeError, match="x: expected a device array of float32 .*got float64"):
        m(cuda.to_device(x.astype(np.float64)))
    with pytest.raises(ValueError, match="x: expected a C-contiguous device array"):
        m(cuda.to_device(np.zeros((B, T, I), np.float32)).transpose((1, 0, 2)))
    _, _, ctx = m.forward_train(on_device(x))
    with pytest.raises(ValueError, match="grad_output: expected a device array"):
        m.backward(ctx, np.zeros((T, B, H), np.float32))
    m.to("cpu")
    with pytest.raises(ValueError, match="ctx: the module moved to 'cpu' after forward_train"):
        m.backward(ctx, np.zeros((T, B, H), np.float32))
    with pytest.raises(ValueError, match="built with backend='numpy'"):
        pyrnn.RNN(I, H, backend="numpy").to("cuda")
    with pytest.raises(ValueError, match="device: expected 'cpu' or 'cuda'"):
        m.to("gpu")
    from pyrnn.functional import stack_forward

    with pytest.raises(ValueError, match="backend 'numpy' runs host arrays"):
        stack_forward(m._spec, pyrnn._backend.resolve("numpy"), m._weights(), on_device(x),
                      None, None, None, training=False)


def test_auto_picks_cuda_for_simulator_device_arrays():
    assert pyrnn._backend.resolve("auto", (cuda.to_device(np.zeros(2)),)).name == "cuda"


def test_zz_every_kernel_ran_with_its_declared_signature():
    """Runs last: each kernel of each dtype was launched by the tests above (each launch was
    checked against its declared signature, which the PTX tests compile)."""
    from pyrnn.cuda import cells, ops

    declared = {(name, str(np.dtype(dt))) for dt in (np.float32, np.float64)
                for mod in (gemm, cells, persistent, ops) for name in mod.kernels(np.dtype(dt))}
    missing = declared - _runtime.launched
    assert not missing, f"never launched: {sorted(missing)}"
