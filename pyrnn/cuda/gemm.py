"""The large GEMMs of a layer: input projection, dx and the weight gradients.

A tiled kernel: each block computes a [BM,BN] tile of C from [BK,BM] and [BK,BN] tiles of A and B
staged in shared memory, each thread an [RM,RN] register block. Operands are addressed BLAS
style (flat array, offset, leading dimension, transpose flag), so column blocks of the workspace
(GRU's n gate) need no copies. With CuPy installed the product goes to cuBLAS instead.
"""

from __future__ import annotations

import functools

import numpy as np

from ._runtime import BOOL, I64, SIMULATOR, Kernel, array_type, blocks, cuda, scalar_type

# the simulator runs one Python thread per CUDA thread: small tiles keep it fast, and make the
# tiny test shapes span several tiles, edges included
BM, BN, BK, RM, RN = (4, 4, 2, 2, 2) if SIMULATOR else (64, 64, 16, 4, 4)
TX, TY = BN // RN, BM // RM
MAX_GRID_Y = 65535
THREADS_1D = 5 if SIMULATOR else 256


@functools.cache
def kernels(dtype) -> dict[str, Kernel]:
    nbt = scalar_type(dtype)
    zero = np.dtype(dtype).type(0)
    F = array_type(dtype)

    def gemm(a, a_off, lda, trans_a, b, b_off, ldb, trans_b, c, c_off, ldc, M, N, K,
             bias1, bias2, n_bias2, has_bias):
        """c[m,n] = sum_k op(a)[m,k] op(b)[k,n] (+ bias1[n] + bias2[n] where n < n_bias2)."""
        a_tile = cuda.shared.array((BK, BM), nbt)
        b_tile = cuda.shared.array((BK, BN), nbt)
        acc = cuda.local.array((RM, RN), nbt)
        tx = cuda.threadIdx.x
        ty = cuda.threadIdx.y
        tid = ty * TX + tx
        m0 = cuda.blockIdx.x * BM
        n0 = cuda.blockIdx.y * BN
        for i in range(RM):
            for j in range(RN):
                acc[i, j] = zero
        for k0 in range(0, K, BK):
            # stage the tiles, walking memory in its contiguous direction; zeros past the edges
            for idx in range(tid, BM * BK, TX * TY):
                if trans_a:
                    ml = idx % BM
                    kl = idx // BM
                else:
                    kl = idx % BK
                    ml = idx // BK
                m = m0 + ml
                k = k0 + kl
                v = zero
                if m < M and k < K:
                    v = a[a_off + k * lda + m] if trans_a else a[a_off + m * lda + k]
                a_tile[kl, ml] = v
            for idx in range(tid, BN * BK, TX * TY):
                if trans_b:
                    kl = idx % BK
                    nl = idx // BK
                else:
                    nl = idx % BN
                    kl = idx // BN
                n = n0 + nl
                k = k0 + kl
                v = zero
                if n < N and k < K:
                    v = b[b_off + n * ldb + k] if trans_b else b[b_off + k * ldb + n]
                b_tile[kl, nl] = v
            cuda.syncthreads()
            for kk in range(BK):
                for i in range(RM):
                    av = a_tile[kk, ty + i * TY]
                    for j in range(RN):
                        acc[i, j] += av * b_tile[kk, tx + j * TX]
            cuda.syncthreads()
        for i in range(RM):
            m = m0 + ty + i * TY
            for j in range(RN):
                n = n0 + tx + j * TX
                if m < M and n < N:
                    v = acc[i, j]
                    if has_bias:
                        bsum = bias1[n]
                        if n < n_bias2:
                            bsum += bias2[n]
                        v += bsum
                    c[c_off + m * ldc + n] = v

    def column_sum(a, M, N, out):
        """out[n] = sum over the M rows of the [M,N] matrix a."""
        n = cuda.grid(1)
        if n < N:
            s = zero
            for m in range(M):
                s += a[m * N + n]
            out[n] = s

    def transpose(src, rows, cols, dst):
        """dst [cols,rows] = src [rows,cols] transposed."""
        idx = cuda.grid(1)
        if idx < rows * cols:
            r = idx // cols
            c = idx - r * cols
            dst[c * rows + r] = src[idx]

    return {
        "gemm": Kernel(gemm, (F, I64, I64, BOOL, F, I64, I64, BOOL, F, I64, I64, I64, I64, I64,
                              F, F, I64, BOOL)),
        "column_sum": Kernel(column_sum, (F, I64, I64, F)),
        "transpose": Kernel(transpose, (F, I64, I64, F)),
    }


def _cupy():
    """CuPy when it is installed and a real GPU runs (cuBLAS through it), else None."""
    if SIMULATOR:
        return None
    try:
        import cupy
    except ImportError:
        return None
    return cupy


def gemm(a, a_off, lda, trans_a, b, b_off, ldb, trans_b, c, c_off, ldc, M, N, K,
         bias1=None, bias2=None, n_bias2=0):
    """c[m,n] = op(a)[m,k] op(b)[k,n] (+ bias), on flat device arrays addressed BLAS style.

    a, b, c: 1-D device arrays; op(a)[m,k] = a[a_off + (k*lda + m if trans_a else m*lda + k)],
    op(b)[k,n] = b[b_off + (n*ldb + k if trans_b else k*ldb + n)], c[m,n] = c[c_off + m*ldc + n];
    bias1 [N] and bias2 (first n_bias2 entries) are added to every row when given.
    """
    cupy = _cupy()
    if cupy is not None:
        _gemm_cupy(cupy, a, a_off, lda, trans_a, b, b_off, ldb, trans_b, c, c_off, ldc, M, N, K,
                   bias1, bias2, n_bias2)
        return
    grid = (blocks(M, BM), blocks(N, BN))
    if grid[1] > MAX_GRID_Y:
        raise ValueError(f"a GEMM with {N} output columns exceeds what the tiled kernel supports "
                         f"({MAX_GRID_Y * BN}); install CuPy to use cuBLAS instead")
    has_bias = bias1 is not None
    b1 = bias1 if has_bias else c
    b2 = bias2 if bias2 is not None else b1
    kernels(c.dtype)["gemm"][grid, (TX, TY)](
        a, a_off, lda, trans_a, b, b_off, ldb, trans_b, c, c_off, ldc, M, N, K, b1, b2,
        n_bias2 if bias2 is not None else 0, has_bias)


def _gemm_cupy(cupy, a, a_off, lda, trans_a, b, b_off, ldb, trans_b, c, c_off, ldc, M, N, K,
               bias1, bias2, n_bias2):
    strided = cupy.lib.stride_tricks.as_strided

    def view(arr, off, ld, trans, rows, cols):
        base = cupy.asarray(arr)[off:]
        step = base.itemsize
        strides = (step, ld * step) if trans else (ld * step, step)
        return strided(base, shape=(rows, cols), strides=strides)

    out = view(c, c_off, ldc, False, M, N)
    out[...] = cupy.matmul(view(a, a_off, lda, trans_a, M, K), view(b, b_off, ldb, trans_b, K, N))
    if bias1 is not None:
        out += cupy.asarray(bias1)
    if bias2 is not None and n_bias2 > 0:
        out[:, :n_bias2] += cupy.asarray(bias2)[:n_bias2]


def column_sum(a, M: int, N: int, out):
    """out [N] = the column sums of the [M,N] device matrix ``a`` (flat)."""
    kernels(a.dtype)["column_sum"][blocks(N, THREADS_1D), THREADS_1D](a, M, N, out)


def transposed(src, rows: int, cols: int):
    """A new flat device array holding the [rows,cols] matrix ``src`` (flat) transposed."""
    dst = cuda.device_array(rows * cols, dtype=src.dtype)
    kernels(src.dtype)["transpose"][blocks(rows * cols, THREADS_1D), THREADS_1D](
        src, rows, cols, dst)
    return dst
