"""The C kernels against the NumPy reference, and their other promises.

Every cell, variant, dtype and flag (lengths in any order, reverse, states given or zero, bias or
none, inference and training forward, every backward output) on shapes from T=B=I=H=1 to a few
hundred; the workspace lengths; bit-identical results for 1 and 2 threads and for concurrent
calls from Python threads; bad sizes reaching C; the activations' error bound. The instruction
set is the best this machine has unless PYRNN_DISABLE_CPU_FEATURES says otherwise
(tests/test_c_isa.py reruns this file once per lower instruction set).
"""

import os
import subprocess
import sys
import threading

import numpy as np
import pytest

import pyrnn
from pyrnn import ref

from .conftest import rel_err

_c = pytest.importorskip("pyrnn._c", reason="the C extension is not built")
ffi, lib = _c.ffi, _c.lib

GATES = {"rnn": 1, "lstm": 4, "gru": 3}
CELLS = [
    ("rnn", {"relu": False}), ("rnn", {"relu": True}), ("lstm", {}),
    ("gru", {"reset_after": True}), ("gru", {"reset_after": False}),
]
TOL = {np.float32: 1e-4, np.float64: 1e-10}

# T, B, I, H, reverse, lengths ("none", "spread": any order, some full; "short": none full),
# bias, states given
CASES = [
    (1, 1, 1, 1, False, "none", True, False),
    (5, 3, 4, 7, True, "spread", True, True),
    (4, 13, 3, 20, False, "spread", False, True),     # rows past a register tile, H tail
    (3, 2, 50, 33, True, "none", False, False),
    (6, 1, 8, 17, True, "spread", True, True),        # batch 1 (the matrix-vector path)
    (6, 1, 8, 17, False, "short", True, True),        # batch 1's steps past its length
    (3, 4, 1, 16, False, "none", True, True),         # I = 1, H a whole vector
    (2, 5, 300, 260, False, "spread", True, True),    # a few hundred
    (3, 7, 130, 1, True, "spread", False, True),      # H = 1
    (40, 9, 24, 40, True, "spread", True, True),      # T*B past the GEMMs' K and M blocks
]


def case_id(case):
    T, B, I, H, reverse, lengths, bias, states = case
    return (f"T{T}B{B}I{I}H{H}-{'rev' if reverse else 'fwd'}-{lengths}-"
            f"{'bias' if bias else 'nobias'}-{'states' if states else 'zeros'}")


def cell_id(cell):
    kind, flags = cell
    return kind + "".join(f"-{k}={v}" for k, v in flags.items())


def workspace_len(be, kind, flags, T, B, I, H, training):
    fn = getattr(be, f"{kind}_workspace_len")
    if kind == "gru":
        return fn(T, B, I, H, training, flags["reset_after"])
    return fn(T, B, I, H, training)


def make_problem(kind, T, B, I, H, dtype, lengths, bias, states, seed=0):
    """Arguments of forward and backward for one cell, with weights of PyTorch's scale."""
    rng = np.random.default_rng(seed)
    G = GATES[kind]
    k = 1 / np.sqrt(H)

    def uniform(*shape):
        return rng.uniform(-k, k, shape).astype(dtype)

    n_states = 2 if kind == "lstm" else 1
    if lengths == "spread":
        lens = rng.integers(1, T + 1, B)
        lens[rng.integers(B)] = T
        lens = lens.astype(np.int64)
    elif lengths == "short":
        lens = rng.integers(1, T, B).astype(np.int64)
    else:
        lens = None
    return {
        "x": rng.standard_normal((T, B, I)).astype(dtype),
        "states": [rng.standard_normal((B, H)).astype(dtype) if states else None
                   for _ in range(n_states)],
        "weights": [uniform(G * H, I), uniform(G * H, H), uniform(G * H) if bias else None,
                    uniform(G * H) if bias else None],
        "lengths": lens,
        "dy": rng.standard_normal((T, B, H)).astype(dtype),
        "grads_n": [rng.standard_normal((B, H)).astype(dtype) if states else None
                    for _ in range(n_states)],
    }


def run(be, kind, flags, p, reverse, training, backward=True):
    """Forward (and backward after a training forward): the list of every output."""
    x = p["x"]
    T, B, I = x.shape
    H = p["weights"][1].shape[1]
    ws = np.full(workspace_len(be, kind, flags, T, B, I, H, training), np.nan, x.dtype)
    args = (x, *p["states"], *p["weights"], p["lengths"])
    outs = list(getattr(be, f"{kind}_forward")(*args, ws, reverse=reverse, training=training,
                                                **flags))
    if training and backward:
        outs += getattr(be, f"{kind}_backward")(*args, p["dy"], *p["grads_n"], ws,
                                                reverse=reverse, **flags)
    return outs


def assert_close(got, want, tol):
    assert len(got) == len(want)
    for k, (a, b) in enumerate(zip(got, want)):
        if b is None:
            assert a is None, f"output {k}"
            continue
        assert a.shape == b.shape and a.dtype == b.dtype, f"output {k}"
        err = rel_err(a, b)
        assert err <= tol, f"output {k}: relative error {err:.3g} > {tol:g}"


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("cell", CELLS, ids=cell_id)
@pytest.mark.parametrize("case", CASES, ids=case_id)
def test_matches_reference(cell, dtype, case):
    kind, flags = cell
    T, B, I, H, reverse, lengths, bias, states = case
    p = make_problem(kind, T, B, I, H, dtype, lengths, bias, states)
    for training in (False, True):
        want = run(ref, kind, flags, p, reverse, training)
        got = run(_c, kind, flags, p, reverse, training)
        assert_close(got, want, TOL[dtype])


@pytest.mark.parametrize("cell", CELLS, ids=cell_id)
def test_padded_steps_zero_and_ignored(cell):
    kind, flags = cell
    p = make_problem(kind, 6, 4, 3, 5, np.float64, "spread", True, True, seed=1)
    y = run(_c, kind, flags, p, reverse=True, training=False)[0]
    lens = p["lengths"]
    for b in range(4):
        assert np.all(y[lens[b]:, b] == 0) and np.any(y[: lens[b], b] != 0)
    g1 = run(_c, kind, flags, p, reverse=True, training=True)
    for b in range(4):
        p["dy"][lens[b]:, b] = 1e6
    g2 = run(_c, kind, flags, p, reverse=True, training=True)
    for a, b in zip(g1, g2):
        assert a is None or np.array_equal(a, b)


@pytest.mark.parametrize("cell", CELLS, ids=cell_id)
def test_workspace_len_matches_reference(cell):
    kind, flags = cell
    for T, B, I, H in [(1, 1, 1, 1), (7, 3, 5, 17), (2, 64, 512, 1024), (50, 1, 2000, 33)]:
        for training in (False, True):
            assert (workspace_len(_c, kind, flags, T, B, I, H, training)
                    == workspace_len(ref, kind, flags, T, B, I, H, training))


@pytest.mark.parametrize("cell", CELLS, ids=cell_id)
def test_one_step_workspace_has_no_room_for_packed_weights(cell):
    """A call that folds its one step (T = 1; the GRU's reset_after) packs no recurrent weights,
    so its workspace, which a training forward keeps until backward (a cell's step under
    autograd), holds none: at B=32 I=H=512 the whole of it is less than the weights would be.
    The GRU's reset_before packs them at T = 1 too."""
    kind, flags = cell
    G = GATES[kind]
    need = workspace_len(_c, kind, flags, 1, 32, 512, 512, True)
    if flags.get("reset_after", True):
        assert need < G * 512 * 512
    else:
        assert need > G * 512 * 512


@pytest.mark.parametrize("T", [3, 1], ids=["T3", "T1"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("cell", CELLS, ids=cell_id)
def test_workspace_at_any_offset_gives_the_same_bits(cell, dtype, T):
    """The kernels start their regions at the workspace's first 64-byte boundary: whatever the
    start of a workspace of exactly the asked length, results are the same and nothing past
    its end is touched. I = 256 and G*H >= I make the input projection fill its packed panels,
    the last region, to the end, so too little slack for the alignment writes past it; at
    T = 1 the layout of a call that folds its step, which has no packed weights."""
    kind, flags = cell
    B, I, H = 3, 256, {"rnn": 257, "lstm": 65, "gru": 87}[kind]
    p = make_problem(kind, T, B, I, H, dtype, "spread", True, True, seed=3)
    args = (p["x"], *p["states"], *p["weights"], p["lengths"])
    need = workspace_len(_c, kind, flags, T, B, I, H, True)
    results = []
    for offset in range(17):
        buffer = np.full(need + 17 + 8, np.nan, dtype)
        ws = buffer[offset:offset + need]
        outs = list(getattr(_c, f"{kind}_forward")(*args, ws, training=True, **flags))
        outs += getattr(_c, f"{kind}_backward")(*args, p["dy"], *p["grads_n"], ws, **flags)
        assert np.isnan(buffer[:offset]).all() and np.isnan(buffer[offset + need:]).all()
        results.append(outs)
    for other in results[1:]:
        for a, b in zip(results[0], other):
            assert a is None or np.array_equal(a, b)


@pytest.fixture
def threads_restored():
    before = lib.pyrnn_get_num_threads()
    yield
    lib.pyrnn_set_num_threads(before)


@pytest.mark.parametrize("T, B, I, H, lengths", [
    (5, 1, 120, 150, "spread"), (5, 24, 120, 150, "spread"),
    (1, 1, 600, 520, "none"), (1, 2, 600, 520, "none"),  # few-row GEMMs, one group a thread
    (1, 7, 300, 150, "none"),  # one row block: each thread packs its panels as it goes
    (1, 64, 100, 150, "none"),  # a one-step loop with values enough for its own team
], ids=["T5B1", "T5B24", "T1B1", "T1B2", "T1B7", "T1B64"])
@pytest.mark.parametrize("cell", CELLS, ids=cell_id)
def test_bit_identical_for_any_thread_count(cell, T, B, I, H, lengths, threads_restored):
    """Big enough that the time loops and the GEMMs run on two and three threads; batch 1
    reads the states and gate gradients in place, where other threads wrote them."""
    kind, flags = cell
    p = make_problem(kind, T, B, I, H, np.float32, lengths, True, True, seed=B)
    results = []
    for n in (1, 2, 3):
        pyrnn.set_num_threads(n)
        results.append(run(_c, kind, flags, p, reverse=False, training=True))
    for other in results[1:]:
        for a, b in zip(results[0], other):
            assert a is None or np.array_equal(a, b)


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("cell", CELLS, ids=cell_id)
def test_batch_1_shorter_than_t(cell, threads, threads_restored):
    """Batch 1 reads its state and gate gradients in place: steps past the sequence's length
    (products skipped, state carried) read the same rows, in both directions."""
    kind, flags = cell
    p = make_problem(kind, 7, 1, 9, 150, np.float64, "none", True, True, seed=4)
    p["lengths"] = np.array([4], dtype=np.int64)
    pyrnn.set_num_threads(threads)
    for reverse in (False, True):
        for training in (False, True):
            want = run(ref, kind, flags, p, reverse, training)
            assert_close(run(_c, kind, flags, p, reverse, training), want, TOL[np.float64])


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("cell", CELLS, ids=cell_id)
def test_batch_1_products_of_several_tiles_at_once(cell, threads, threads_restored):
    """Batch 1 computes a thread's recurrent products several unit-block tiles at a time
    (gemm_impl.h mv, cell_common.h tiles_product_b1): these H give each thread groups of one
    to four pairs of blocks and of one or two GRU and LSTM tiles, with 8 and 16 lanes, and a
    last block cut short, forward and backward, in both directions."""
    kind, flags = cell
    pyrnn.set_num_threads(threads)
    for H in (8, 24, 40, 56, 72, 100, 136):
        p = make_problem(kind, 4, 1, 5, H, np.float64, "none", True, True, seed=H)
        for reverse in (False, True):
            want = run(ref, kind, flags, p, reverse, True)
            assert_close(run(_c, kind, flags, p, reverse, True), want, TOL[np.float64])


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("cell", CELLS, ids=cell_id)
def test_one_step_and_few_row_calls(cell, dtype, threads, threads_restored):
    """T*B of 1 or 2 rows: the GEMMs read the weights unpacked (gemm_impl.h gemm_few_rows: dot
    products from K = 8 vectors, row sums for dx), and a one-step RNN or LSTM adds h0 @ w_hh^T
    to its input projection instead of packing w_hh (cell_common.h fold_one_step), a one-step
    reset_after GRU takes its products from one GEMM (gru_impl.h gru_fold_one_step); B = 3
    folds through the packed GEMM, whose one row block packs each panel as it goes (gemm_impl.h
    gemm_body own_panels), here over two K blocks (I = 300) and a last panel cut short.
    States given or zero, both directions."""
    kind, flags = cell
    pyrnn.set_num_threads(threads)
    for T, B, I, H in [(1, 1, 3, 1), (1, 1, 130, 70), (1, 2, 5, 17), (2, 1, 70, 9),
                       (1, 3, 9, 40), (1, 1, 8, 300), (1, 5, 300, 37)]:
        for states in (False, True):
            p = make_problem(kind, T, B, I, H, dtype, "none", True, states, seed=T + B + H)
            for reverse in (False, True):
                for training in (False, True):
                    want = run(ref, kind, flags, p, reverse, training)
                    assert_close(run(_c, kind, flags, p, reverse, training), want, TOL[dtype])


def backward_asking_for(kind, flags, p, wanted):
    """A training forward and the backward through ``_c.backward_at``, asking for ``wanted``
    (a flag for each of dx, the states' gradients, dw_ih, dw_hh, db_ih, db_hh)."""
    x = p["x"]
    T, B, I = x.shape
    H = p["weights"][1].shape[1]
    sfx = "f32" if x.dtype == np.float32 else "f64"
    ws = _c.empty(workspace_len(_c, kind, flags, T, B, I, H, True), x.dtype)
    wsp = _c.workspace_at(sfx, ws)

    def pointers(arrays):
        return [_c.NULL if a is None else _c.POINTER_AT[sfx](a.ctypes.data) for a in arrays]

    inputs = pointers([x, *p["states"], *p["weights"]]) + [_c.lengths_at(p["lengths"])]
    flag_values = [int(v) for v in flags.values()]
    _c.forward_at(kind, sfx, T, B, I, H, (0, 1, *flag_values), inputs, wsp)
    grads = pointers([p["dy"], *p["grads_n"]])
    return _c.backward_at(kind, sfx, T, B, I, H, (0, *flag_values), inputs + grads, True, wsp,
                          None, wanted)


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("cell", CELLS, ids=cell_id)
def test_backward_computes_only_the_gradients_asked_for(cell, threads, threads_restored):
    """A gradient passed as NULL is not computed (pyrnn.h), and the others keep their bits:
    each one left out alone, and each one asked for alone; one-step calls (whose dh0 is a GEMM
    of its own), batch 1, and a batch with lengths (the last step's product skipped without
    dh0)."""
    kind, flags = cell
    pyrnn.set_num_threads(threads)
    for T, B, I, H, lengths in [(1, 3, 5, 7, "none"), (6, 1, 8, 17, "none"),
                                (5, 4, 3, 20, "spread")]:
        p = make_problem(kind, T, B, I, H, np.float64, lengths, True, True, seed=T + B)
        full = backward_asking_for(kind, flags, p, None)
        assert_close(list(full), run(ref, kind, flags, p, False, True)[len(p["states"]) + 1:],
                     TOL[np.float64])
        n = len(full)
        for k in range(n):
            for wanted in ([j != k for j in range(n)], [j == k for j in range(n)]):
                got = backward_asking_for(kind, flags, p, wanted)
                for want, g, a in zip(wanted, got, full):
                    assert g is None if not want else np.array_equal(g, a), (k, wanted)


@pytest.mark.parametrize("cell", CELLS, ids=cell_id)
def test_backends_return_only_the_wanted_gradients(cell):
    """Every backend's ``<cell>_backward(..., wanted=...)``: a flag per result, those not wanted
    None, the others as in the full call (the C backend's bit for bit: it skips the work of
    the rest), without biases too; a wrong count raises."""
    kind, flags = cell
    for bias in (True, False):
        p = make_problem(kind, 4, 3, 5, 6, np.float64, "spread", bias, True, seed=9)
        n_states = len(p["states"])
        for be in (_c, ref):
            ws = np.empty(workspace_len(be, kind, flags, 4, 3, 5, 6, True), np.float64)
            args = (p["x"], *p["states"], *p["weights"], p["lengths"])
            getattr(be, f"{kind}_forward")(*args, ws, training=True, **flags)
            back = getattr(be, f"{kind}_backward")
            grads = (p["dy"], *p["grads_n"], ws)
            full = back(*args, *grads, **flags)
            for wanted in ([k % 2 == 0 for k in range(n_states + 5)],
                           [k % 2 == 1 for k in range(n_states + 5)]):
                got = back(*args, *grads, wanted=wanted, **flags)
                for want, g, a in zip(wanted, got, full):
                    assert g is None if not want or a is None else np.array_equal(g, a)
            with pytest.raises(ValueError, match="wanted: expected"):
                back(*args, *grads, wanted=[True] * 3, **flags)


@pytest.mark.parametrize("dtype, B", [(np.float32, 160), (np.float64, 80)], ids=["f32", "f64"])
@pytest.mark.parametrize("cell", CELLS, ids=cell_id)
def test_products_in_groups_of_chunks(cell, dtype, B, threads_restored):
    """A transposed state larger than 128 KiB (cell_common.h products_in_groups: H = 512 at
    these batches) has a forward step's products made group of K's chunks by group, every
    tile's before the next group; forward and backward against the reference, and the same
    bits on 1, 2 and 3 threads. Only AVX2's 16 KiB chunks cut K = 512 in several: the
    portable and AVX-512 paths (128 KiB chunks) take it whole here, as they would without
    the groups."""
    kind, flags = cell
    p = make_problem(kind, 3, B, 16, 512, dtype, "spread", True, True, seed=7)
    want = run(ref, kind, flags, p, True, True)
    results = []
    for n in (1, 2, 3):
        pyrnn.set_num_threads(n)
        results.append(run(_c, kind, flags, p, True, True))
    assert_close(results[0], want, TOL[dtype])
    for other in results[1:]:
        for a, b in zip(results[0], other):
            assert a is None or np.array_equal(a, b)


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("cell", CELLS, ids=cell_id)
def test_weight_gradients_packed_past_the_unpacked_size(cell, threads, threads_restored):
    """The GEMMs read small operands with close rows where they are (gemm_impl.h
    GEMM_UNPACKED_BYTES, GEMM_UNPACKED_STRIDE), as most cases here do; T*B = 640 rows of I = 96
    and H = 120 make the weight gradients' larger than 512 KiB (dw_hh: (G*H + H) * 640 floats)
    and their rows farther apart, so they pack A and B, against the reference."""
    kind, flags = cell
    pyrnn.set_num_threads(threads)
    p = make_problem(kind, 40, 16, 96, 120, np.float32, "spread", True, True, seed=5)
    got = run(_c, kind, flags, p, False, True)
    assert_close(got, run(ref, kind, flags, p, False, True), TOL[np.float32])
    q = make_problem(kind, 40, 16, 96, 120, np.float64, "spread", True, True, seed=5)
    assert_close(run(_c, kind, flags, q, False, True), run(ref, kind, flags, q, False, True),
                 TOL[np.float64])


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
def test_batch_1_lstm_with_more_blocks_than_its_held_biases(dtype, threads, threads_restored):
    """Batch 1 holds a thread's bias sums for up to 64 unit blocks (lstm_impl.h); H = 1100 is
    more than that on one thread with every vector width, and on each of two threads with up
    to 8 lanes (70 and 68 blocks); with 16 lanes two threads hold theirs (36 and 34)."""
    p = make_problem("lstm", 3, 1, 8, 1100, dtype, "none", True, True, seed=3)
    pyrnn.set_num_threads(threads)
    for training in (False, True):
        want = run(ref, "lstm", {}, p, True, training)
        assert_close(run(_c, "lstm", {}, p, True, training), want, TOL[dtype])


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
def test_workspaces_start_where_the_kernels_start_their_regions(dtype):
    """The C backend's workspaces start on a 64-byte boundary, as the kernels' regions do, so
    those start at element 0 as the reference's (pyrnn.torch's cells keep a front part)."""
    for n in (1, 17, 1000, 140_000):
        ws = _c.empty(n, dtype)
        assert ws.ctypes.data % 64 == 0 and ws.shape == (n,) and ws.dtype == dtype
        assert ws.flags.c_contiguous and ws.flags.writeable


@pytest.mark.parametrize("B", [1, 2, 7])
def test_forward_output_is_a_plain_array_on_a_cache_line(B):
    """Batched y starts on a 64-byte boundary (its rows are written by two threads), and is an
    ordinary C-contiguous array a caller can keep and write."""
    p = make_problem("lstm", 3, B, 4, 5, np.float32, "none", True, True, seed=3)
    y, h_n, c_n = run(_c, "lstm", {}, p, reverse=False, training=False)
    assert y.shape == (3, B, 5) and y.dtype == np.float32 and y.flags.c_contiguous
    assert y.flags.writeable and np.array_equal(y[-1], h_n)
    if B > 1:
        assert y.ctypes.data % 64 == 0
    want = run(ref, "lstm", {}, p, reverse=False, training=False)[0]
    assert rel_err(y, want) <= TOL[np.float32]


def test_concurrent_calls_from_python_threads(threads_restored):
    """Calls big enough for the thread team meet it busy and run on their own thread."""
    pyrnn.set_num_threads(2)
    problems = [make_problem("lstm", 4, 9 + 15 * (s % 2), 20, 70 + 80 * (s % 2), np.float32,
                             "spread", True, True, seed=s) for s in range(4)]
    expected = [run(_c, "lstm", {}, p, reverse=False, training=True) for p in problems]
    got = [None] * len(problems)
    errors = []

    def work(k):
        try:
            for _ in range(5):
                got[k] = run(_c, "lstm", {}, problems[k], reverse=False, training=True)
        except Exception as exc:  # reported below; an exception in a thread is otherwise lost
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(k,)) for k in range(len(problems))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    for e, g in zip(expected, got):
        for a, b in zip(e, g):
            assert a is None or np.array_equal(a, b)


def _ptr(a):
    return ffi.NULL if a is None else ffi.from_buffer("float[]", a)


def test_bad_sizes_reaching_c_return_a_status():
    T, B, I, H = 3, 2, 4, 5
    x, w_ih, w_hh = np.zeros((T, B, I), np.float32), np.zeros((H, I), np.float32), \
        np.zeros((H, H), np.float32)
    y, h_n = np.zeros((T, B, H), np.float32), np.zeros((B, H), np.float32)
    ws = np.zeros(ref.rnn_workspace_len(T, B, I, H, False), np.float32)

    def forward(T=T, B=B, I=I, H=H, b_ih=None, b_hh=None, y=y, lengths=ffi.NULL):
        return lib.pyrnn_rnn_forward_f32(T, B, I, H, 0, 0, 0, _ptr(x), ffi.NULL, _ptr(w_ih),
                                         _ptr(w_hh), _ptr(b_ih), _ptr(b_hh), lengths, _ptr(y),
                                         _ptr(h_n), _ptr(ws))

    assert forward() == lib.PYRNN_OK
    for bad in (dict(T=0), dict(B=0), dict(I=-1), dict(H=0), dict(T=2**62)):
        assert forward(**bad) == lib.PYRNN_ERR_SIZE, bad
    assert forward(y=None) == lib.PYRNN_ERR_NULL
    assert forward(b_ih=np.zeros(H, np.float32)) == lib.PYRNN_ERR_NULL
    for lens in ([0, 1], [1, 4], [-5, 2]):
        arr = np.array(lens, np.int64)
        assert forward(lengths=ffi.from_buffer("int64_t[]", arr)) == lib.PYRNN_ERR_LENGTHS
    assert lib.pyrnn_lstm_workspace_len(0, 1, 1, 1, 1) == -1
    assert lib.pyrnn_activation_f32(7, 1, ffi.NULL, ffi.NULL) == lib.PYRNN_ERR_ARGUMENT
    assert lib.pyrnn_set_num_threads(0) == lib.PYRNN_ERR_ARGUMENT
    assert lib.pyrnn_set_num_threads(257) == lib.PYRNN_ERR_ARGUMENT


def test_a_failing_status_becomes_pyrnn_error():
    p = make_problem("gru", 3, 2, 2, 4, np.float32, "none", True, False)
    p["lengths"] = np.array([0, 3], np.int64)  # only Python's validation would catch this
    with pytest.raises(pyrnn.PyrnnError, match=r"pyrnn_gru_forward_f32 failed \(status 3: a "
                                               r"sequence length is outside 1..T\); this is a "
                                               r"bug in pyrnn, please report it"):
        run(_c, "gru", {"reset_after": True}, p, reverse=False, training=False)


def test_wrong_workspace_raises_before_the_kernel():
    p = make_problem("rnn", 3, 2, 2, 4, np.float32, "none", True, False)
    args = (p["x"], None, *p["weights"], None)
    need = _c.rnn_workspace_len(3, 2, 2, 4, False)
    read_only = np.empty(need, np.float32)
    read_only.flags.writeable = False
    for bad in (np.empty(need - 1, np.float32), read_only, np.empty(2 * need, np.float32)[::2],
                np.empty((1, need), np.float32)):
        with pytest.raises(ValueError, match="workspace: expected a writeable contiguous 1-D"):
            _c.rnn_forward(*args, bad)
    with pytest.raises(TypeError, match="workspace: expected a NumPy array of float32"):
        _c.rnn_forward(*args, np.empty(10_000, np.float64))


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
def test_activation_error_bound(dtype):
    """The bound stated in csrc/activations.h: 2 eps relative where the result is normal."""
    ctype, suffix = ("float[]", "f32") if dtype == np.float32 else ("double[]", "f64")
    x = np.concatenate([np.linspace(-40, 40, 400_001), np.geomspace(1e-30, 40, 20_001),
                        -np.geomspace(1e-30, 40, 20_001), [0.0, -0.0, 1e-300, 750.0, -750.0]])
    x = x.astype(dtype)
    exact = {0: lambda v: 1 / (1 + np.exp(-v)), 1: np.tanh}
    eps, tiny = np.finfo(dtype).eps, np.finfo(dtype).tiny
    for kind, f in exact.items():
        y = np.empty_like(x)
        assert getattr(lib, f"pyrnn_activation_{suffix}")(
            kind, x.size, ffi.from_buffer(ctype, x), ffi.from_buffer(ctype, y)) == 0
        want = f(x.astype(np.longdouble))
        normal = np.abs(want) >= tiny
        rel = np.abs((y[normal] - want[normal]) / want[normal])
        assert rel.max() <= 2 * eps, (kind, float(rel.max() / eps))
        assert np.all(np.abs(y[~normal] - want[~normal]) < tiny)
        special = np.array([np.nan, np.inf, -np.inf], dtype)
        out = np.empty_like(special)
        getattr(lib, f"pyrnn_activation_{suffix}")(
            kind, 3, ffi.from_buffer(ctype, special), ffi.from_buffer(ctype, out))
        assert np.isnan(out[0]) and out[1] == 1 and abs(out[2] - (0 if kind == 0 else -1)) < tiny


def test_thread_count_from_the_environment():
    code = "from pyrnn import _c; print(_c.info()['threads'])"
    env = dict(os.environ, PYRNN_NUM_THREADS="3")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == "3"


def test_info_reports_the_instruction_set_and_threads(threads_restored):
    info = _c.info()
    assert info["isa"] in ("avx512", "avx2", "generic")
    expected = os.environ.get("PYRNN_EXPECT_ISA")
    if expected:
        assert info["isa"] == expected
    assert info["version"] == pyrnn.__version__
    assert isinstance(info["thread_team"], bool)
    pyrnn.set_num_threads(3)
    assert _c.info()["threads"] == 3
    assert pyrnn.backend_info()["c"]["isa"] == info["isa"]
