"""Persistent forward kernels for small batches: the whole time loop in one cooperative launch.

Block ``blk`` owns hidden units [blk*U, blk*U + U) and keeps their rows of w_hh (every gate) in
shared memory for all T steps, so per step only h_prev is read from global memory (L2). Each step:
the block's threads split the dot products of its G*U weight rows with every batch row over K
slices (partial sums in shared memory), one thread per (unit, batch row) sums them and applies the
same fused cell update as the general path (``cells.point_functions``), the new states go to a
ping-pong buffer in global memory and a grid-wide sync ends the step (GRU reset_before syncs twice:
the n gate needs r*h of every unit). Used only when a plan fits (``plan``); the per-step kernels
are the general path. The simulator runs cooperative grids of one block only, so there U = H.
"""

from __future__ import annotations

import functools
import os

from ._runtime import BOOL, I64, INDEX, SIMULATOR, Kernel, array_type, cuda, scalar_type
from .cells import point_functions
from .common import device_functions

THREADS = 32 if SIMULATOR else 256
MAX_BATCH = 8
SHARED_BYTES = 48 * 1024  # static limit of dynamic shared memory per block without opt-in
launches = 0  # persistent launches so far (tests check which path ran)


@functools.cache
def kernels(dtype) -> dict[str, Kernel]:
    f = device_functions(dtype)
    p = point_functions(dtype)
    # jitted code sees module-level or closure names, not namespace attributes
    rnn_point, lstm_point, gru_point = p.rnn_point, p.lstm_point, p.gru_point
    gru_point_rz, gru_point_n = p.gru_point_rz, p.gru_point_n
    zero = f.zero
    nbt = scalar_type(dtype)
    F = array_type(dtype)

    @cuda.jit(device=True)
    def load_weights(sw, w_hh, G, H, U, u0):
        """sw[k*R + g*U + u] = w_hh[g*H + u0 + u, k] (zeros for units past H), R = G*U."""
        R = G * U
        for idx in range(cuda.threadIdx.x, R * H, cuda.blockDim.x):
            row = idx // H
            k = idx - row * H
            g = row // U
            j = u0 + row - g * U
            sw[k * R + row] = w_hh[(g * H + j) * H + k] if j < H else zero
        cuda.syncthreads()

    @cuda.jit(device=True)
    def block_dots(sw, R, row0, nrows, src, src_off, B, H, part):
        """part[(s*nrows + r)*B + b] = the slice-s share of sw row (row0 + r) . src[b]."""
        nt = cuda.blockDim.x
        tid = cuda.threadIdx.x
        S = nt // nrows
        ks = -(-H // S)
        if tid < S * nrows:
            r = tid % nrows
            s = tid // nrows
            k_end = min(H, (s + 1) * ks)
            for b in range(B):
                acc = zero
                for k in range(s * ks, k_end):
                    acc += sw[k * R + row0 + r] * src[src_off + b * H + k]
                part[(s * nrows + r) * B + b] = acc
        cuda.syncthreads()

    @cuda.jit(device=True)
    def row_sum(part, nrows, r, b, B):
        S = cuda.blockDim.x // nrows
        acc = zero
        for s in range(S):
            acc += part[(s * nrows + r) * B + b]
        return acc

    @cuda.jit(device=True)
    def carve(G, H, U):
        """The weight and partial-sum regions of the dynamic shared memory."""
        smem = cuda.shared.array(0, nbt)
        return smem[: G * U * H], smem[G * U * H:]

    def persistent_rnn(gates, w_hh, hbuf, y, hprev, lengths, T, B, H, U, reverse, use_relu,
                       training):
        sw, part = carve(1, H, U)
        u0 = cuda.blockIdx.x * U
        load_weights(sw, w_hh, 1, H, U, u0)
        grid = cuda.cg.this_grid()
        tid = cuda.threadIdx.x
        for step in range(T):
            t = T - 1 - step if reverse else step
            src = (step % 2) * B * H
            dst = B * H - src
            block_dots(sw, U, 0, U, hbuf, src, B, H, part)
            u = tid % U
            b = tid // U
            j = u0 + u
            if b < B and j < H:
                dot = row_sum(part, U, u, b, B)
                hbuf[dst + b * H + j] = rnn_point(
                    gates, hprev, y, t, b, j, B, H, dot, hbuf[src + b * H + j], t < lengths[b],
                    use_relu, training)
            grid.sync()

    def persistent_lstm(gates, w_hh, hbuf, c, y, hprev, cprev, tanh_c, lengths, T, B, H, U,
                        reverse, training):
        sw, part = carve(4, H, U)
        u0 = cuda.blockIdx.x * U
        load_weights(sw, w_hh, 4, H, U, u0)
        grid = cuda.cg.this_grid()
        tid = cuda.threadIdx.x
        R = 4 * U
        for step in range(T):
            t = T - 1 - step if reverse else step
            src = (step % 2) * B * H
            dst = B * H - src
            block_dots(sw, R, 0, R, hbuf, src, B, H, part)
            u = tid % U
            b = tid // U
            j = u0 + u
            if b < B and j < H:
                hbuf[dst + b * H + j] = lstm_point(
                    gates, c, hprev, cprev, tanh_c, y, t, b, j, B, H,
                    row_sum(part, R, u, b, B), row_sum(part, R, U + u, b, B),
                    row_sum(part, R, 2 * U + u, b, B), row_sum(part, R, 3 * U + u, b, B),
                    hbuf[src + b * H + j], t < lengths[b], training)
            grid.sync()

    def persistent_gru(gates, w_hh, b_hh, hbuf, y, extra, hprev, lengths, T, B, H, U, reverse,
                       has_bias, training):
        """reset_after."""
        sw, part = carve(3, H, U)
        u0 = cuda.blockIdx.x * U
        load_weights(sw, w_hh, 3, H, U, u0)
        grid = cuda.cg.this_grid()
        tid = cuda.threadIdx.x
        R = 3 * U
        for step in range(T):
            t = T - 1 - step if reverse else step
            src = (step % 2) * B * H
            dst = B * H - src
            block_dots(sw, R, 0, R, hbuf, src, B, H, part)
            u = tid % U
            b = tid // U
            j = u0 + u
            if b < B and j < H:
                n_seen = row_sum(part, R, 2 * U + u, b, B)
                if has_bias:
                    n_seen += b_hh[2 * H + j]
                hbuf[dst + b * H + j] = gru_point(
                    gates, extra, hprev, y, t, b, j, B, H, row_sum(part, R, u, b, B),
                    row_sum(part, R, U + u, b, B), n_seen, hbuf[src + b * H + j],
                    t < lengths[b], training)
            grid.sync()

    def persistent_gru_reset_before(gates, w_hh, hbuf, rh, rh_stride, y, hprev, lengths, T, B,
                                    H, U, reverse, training):
        """reset_before: rh[t*rh_stride + b*H + j] = r*h_prev (the workspace's extra when
        training, else a [B,H] scratch with rh_stride 0)."""
        sw, part = carve(3, H, U)
        u0 = cuda.blockIdx.x * U
        load_weights(sw, w_hh, 3, H, U, u0)
        grid = cuda.cg.this_grid()
        tid = cuda.threadIdx.x
        R = 3 * U
        for step in range(T):
            t = T - 1 - step if reverse else step
            src = (step % 2) * B * H
            dst = B * H - src
            rh_off = t * rh_stride
            block_dots(sw, R, 0, 2 * U, hbuf, src, B, H, part)
            u = tid % U
            b = tid // U
            j = u0 + u
            if b < B and j < H:
                rh[rh_off + b * H + j] = gru_point_rz(
                    gates, hprev, t, b, j, B, H, row_sum(part, 2 * U, u, b, B),
                    row_sum(part, 2 * U, U + u, b, B), hbuf[src + b * H + j], training)
            grid.sync()
            block_dots(sw, R, 2 * U, U, rh, rh_off, B, H, part)
            if b < B and j < H:
                hbuf[dst + b * H + j] = gru_point_n(
                    gates, y, t, b, j, B, H, row_sum(part, U, u, b, B), hbuf[src + b * H + j],
                    t < lengths[b])
            grid.sync()

    return {
        "persistent_rnn": Kernel(persistent_rnn, (F, F, F, F, F, INDEX, I64, I64, I64, I64,
                                                  BOOL, BOOL, BOOL)),
        "persistent_lstm": Kernel(persistent_lstm, (F, F, F, F, F, F, F, F, INDEX, I64, I64,
                                                    I64, I64, BOOL, BOOL)),
        "persistent_gru": Kernel(persistent_gru, (F, F, F, F, F, F, F, INDEX, I64, I64, I64,
                                                  I64, BOOL, BOOL, BOOL)),
        "persistent_gru_reset_before": Kernel(
            persistent_gru_reset_before, (F, F, F, F, I64, F, F, INDEX, I64, I64, I64, I64,
                                          BOOL, BOOL)),
    }


def wanted(B: int) -> bool:
    """Whether to try the persistent kernel: $PYRNN_CUDA_PERSISTENT=0 never, =1 whenever a plan
    fits, unset for batches up to MAX_BATCH."""
    mode = os.environ.get("PYRNN_CUDA_PERSISTENT", "")
    if mode == "0":
        return False
    return mode == "1" or B <= MAX_BATCH


def shared_bytes(G: int, H: int, U: int, B: int, itemsize: int) -> int:
    """Dynamic shared memory of one block: G*U weight rows of H, and THREADS*B partial sums."""
    return (G * U * H + THREADS * B) * itemsize


def plan(G: int, H: int, B: int, itemsize: int, max_blocks) -> tuple[int, int, int] | None:
    """(blocks, units per block, shared bytes) with the most blocks that fit, or None.

    max_blocks(threads, shared_bytes) -> how many blocks can be co-resident (cooperative limit).
    """
    for U in range(1, H + 1):
        smem = shared_bytes(G, H, U, B, itemsize)
        if G * U > THREADS or U * B > THREADS or smem > SHARED_BYTES:
            return None  # every larger U needs more
        n_blocks = -(-H // U)
        if n_blocks <= max_blocks(THREADS, smem):
            return n_blocks, U, smem
    return None


@functools.cache
def cached_plan(name: str, dtype, G: int, H: int, B: int):
    return plan(G, H, B, dtype.itemsize, kernels(dtype)[name].max_cooperative_blocks)


def launch(name: str, dtype, G: int, H: int, B: int, args_for_units) -> bool:
    """Run persistent kernel ``name`` if a plan fits; False (nothing launched) otherwise.

    args_for_units(U) -> the kernel's arguments for U units per block.
    """
    if not wanted(B):
        return False
    found = cached_plan(name, dtype, G, H, B)
    if found is None:
        return False
    global launches
    n_blocks, U, smem = found
    kernels(dtype)[name][n_blocks, THREADS, 0, smem](*args_for_units(U))
    launches += 1
    return True
