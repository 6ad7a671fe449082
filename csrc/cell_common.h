/* Pieces every cell's forward and backward share: step order, validity, state set-up, the
 * common workspace tail. Included by kernels_impl.h after gemm_impl.h. No include guard on
 * purpose. */

/* The step visited s-th: forward 0..T-1, reverse T-1..0 (reference: common.step_order). */
static inline int64_t FN(step_at)(int64_t T, int reverse, int64_t s)
{
    return reverse ? T - 1 - s : s;
}

/* Step t is valid for sequence b iff t < lengths[b], in both directions. */
static inline int FN(valid)(const int64_t *lengths, int64_t b, int64_t t)
{
    return !lengths || t < lengths[b];
}

/* Columns [j0, j0+n) of row b: dT[j*B + b] = v[j - j0] (the transposed copy that the next
 * recurrent product reads k-major). */
static inline void FN(scatter_t)(V v, int64_t n, int64_t j0, int64_t b, int64_t B, real *dT)
{
    for (int64_t k = 0; k < n; k++) dT[(j0 + k) * B + b] = v[k];
}

/* dst[:, j0:j1] = src[:, j0:j1] (src NULL: zeros), and its transpose into dT when not NULL.
 * src, dst: [B,H]; dT: [H,B]. */
static void FN(init_state)(const real *src, int64_t B, int64_t H, int64_t j0, int64_t j1,
                           real *dst, real *dT)
{
    for (int64_t b = 0; b < B; b++)
        for (int64_t j = j0; j < j1; j++) {
            const real v = src ? src[b * H + j] : 0;
            dst[b * H + j] = v;
            if (dT) dT[j * B + b] = v;
        }
}

/* The i-th of the unit blocks [u0, u1) a thread visits in step s: in order on even steps, in
 * reverse on odd ones, so that a step starts on the weights the previous step touched last,
 * still in L1 when the thread's share of the weights is larger than L1. */
static inline int64_t FN(block_at)(int64_t u0, int64_t u1, int64_t s, int64_t i)
{
    return (s & 1) ? u1 - 1 - i : u0 + i;
}

/* Units [j0, j1) of the unit blocks [u0, u1) a thread owns. */
static inline void FN(own_units)(int64_t H, int64_t u0, int64_t u1, int64_t *j0, int64_t *j1)
{
    *j0 = u0 * VW;
    *j1 = u1 * VW < H ? u1 * VW : H;
}

/* The regions every cell appends to the reference's (workspace.c sizes them):
 *   acc   [G*B*Hp]   recurrent sums of the current step, per unit block [nblk][B][tile]
 *   tbuf  [2,G*H,B]  transposed states (forward) or gate gradients (backward), two steps
 *   wpack [G*Hp*H]   recurrent weights packed once per call, tiles or panels per unit block
 *   bpack [128*roundup(max(G*H, I), 32)]  the GEMM's packed B panels
 * each starting on a 64-byte boundary (the length has 16 elements of slack per region), so
 * whole-vector loads of tiles and panels never straddle cache lines. */
struct FN(tail) {
    real *acc, *tbuf, *wpack, *bpack;
};

static inline real *FN(align64)(real *p)
{
    return (real *)(((uintptr_t)p + 63) & ~(uintptr_t)63);
}

static struct FN(tail) FN(carve_tail)(real *p, int64_t B, int64_t H, int G)
{
    const int64_t Hp = pyrnn_hpad(H);
    struct FN(tail) t;
    t.acc = FN(align64)(p);
    t.tbuf = FN(align64)(t.acc + G * B * Hp);
    t.wpack = FN(align64)(t.tbuf + 2 * G * H * B);
    t.bpack = FN(align64)(t.wpack + G * Hp * H);
    return t;
}

/* Asks for the n reals at p to be brought into cache (for writing when `write`). The cells
 * ask, row by row as they go, for the same row of the next step's slices of [T,B,...] arrays:
 * those rows are far apart, so the hardware prefetchers miss them, and asking a step ahead and
 * a row at a time spreads the requests over the step. */
static inline void FN(prefetch)(const real *p, int64_t n, int write)
{
    const real *last = p + n - 1;
    for (const real *q = p; q <= last; q += 64 / (int64_t)sizeof(real)) {
        if (write)
            __builtin_prefetch(q, 1, 3);
        else
            __builtin_prefetch(q, 0, 3);
    }
    if (write)
        __builtin_prefetch(last, 1, 3);
    else
        __builtin_prefetch(last, 0, 3);
}

/* Threads for a time loop doing `flops` per step over nblk unit blocks: one thread unless each
 * gets enough work per step to pay for the step's barrier. */
static inline int FN(loop_threads)(double flops, int64_t nblk)
{
    return pyrnn_threads_for(flops, 3e5, nblk);
}

/* The weight-gradient GEMMs of backward, shared by every cell:
 *     dx = dg @ w_ih;  dw_ih = dg^T @ x;  db = column sums of dg (when db is not NULL)
 * dg: [T*B, GH] gate gradients (ldg = GH); x: [T*B, I]. */
static void FN(input_grads)(int64_t TB, int64_t I, int64_t GH, const real *dg, const real *w_ih,
                            const real *x, real *dx, real *dw_ih, real *db, real *bpack)
{
    FN(gemm_run)(TB, I, GH, dg, GH, 1, w_ih, I, 1, dx, I, 0, bpack);
    FN(gemm_run)(GH, I, TB, dg, 1, GH, x, I, 1, dw_ih, I, 0, bpack);
    if (db) FN(column_sums)(TB, GH, dg, GH, db);
}
