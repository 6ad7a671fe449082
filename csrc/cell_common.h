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

/* dT[(j0 + j)*B + b] = src[b*lds + j] for b < B, j < n (n <= VW): one unit block's columns of
 * a [B, lds] array, transposed for the next recurrent product (which reads it k-major), by
 * VW x VW blocks in registers. */
static void FN(transpose_rows)(const real *src, int64_t lds, int64_t B, int64_t n, int64_t j0,
                               real *dT)
{
    if (B == 1) {  /* a single row is its own transpose */
        memcpy(dT + j0, src, (size_t)n * sizeof(real));
        return;
    }
    int64_t b0 = 0;
    if (n == VW)
        for (; b0 + VW <= B; b0 += VW)
            FN(transpose_tile)(src + b0 * lds, lds, VW, dT + j0 * B + b0, B, VW);
    for (; b0 < B; b0++)
        for (int64_t j = 0; j < n; j++) dT[(j0 + j) * B + b0] = src[b0 * lds + j];
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

/* The block visited after the i-th one of [u0, u1) in step s's order; -1 after the last. */
static inline int64_t FN(next_block)(int64_t u0, int64_t u1, int64_t s, int64_t i)
{
    return i + 1 < u1 - u0 ? FN(block_at)(u0, u1, s, i + 1) : -1;
}

/* The block the thread visits after the ui-th one of step s (in block_at's order), and its step
 * t (visiting step s maps to t = step_at(T, rev, s)); -1 after the very last. The cells
 * prefetch, row by row, what that visit reads: a block ahead is soon enough, and late enough
 * that the streaming weights have not evicted it from L2 yet. */
static inline int64_t FN(next_visit)(int64_t T, int rev, int64_t u0, int64_t u1, int64_t s,
                                     int64_t ui, int64_t *u)
{
    *u = FN(next_block)(u0, u1, s, ui);
    if (*u >= 0) return FN(step_at)(T, rev, s);
    if (s + 1 < T) {
        *u = FN(block_at)(u0, u1, s + 1, 0);
        return FN(step_at)(T, rev, s + 1);
    }
    *u = u0;
    return -1;
}

/* A forward step's recurrent products of the tiles [u0, u1) a thread owns, each of nv vectors,
 * when the transposed state aT ([K,B]) is larger than RECUR_GROUP_BYTES: K in groups of
 * recur_tile's chunks whose rows of aT take at most that much, every tile's chunks of a group
 * (in step s's order) before the next group's, so that a group of aT stays in L2 while the
 * tiles pass over it; tile by tile, each read all of aT, from L3 once it no longer fitted in L2
 * beside the streaming weights (float64 at B=64, H=1024: 512 KiB, all of a Zen 3 core's L2;
 * RNN 50x64x512x1024 inference 0.87-1.00 of the time in nine alternations, median 0.90; the
 * GRU's and LSTM's within noise: benchmarks/RESULTS.md). Groups of a quarter of that L2 rather
 * than half took that RNN's float32 state (256 KiB, which had gone tile by tile) in two groups:
 * inference 0.94-0.97 of the time, forward+backward 0.97-0.99, float64 0.93-0.95; the GRU's and
 * LSTM's within noise. Backward's gate gradients (1 MiB for that LSTM in float32) gained
 * nothing measurable so, and keep the tile order.
 * tiles + u*tile_len and acc + u*acc_len are tile u's panel and sums; each sum keeps its k
 * order, so its bits. Returns 0 without a product where one group would hold all of K (or K
 * is one chunk): the caller then takes each tile's product right before its rows' update. */
#define RECUR_GROUP_BYTES (128 << 10)
static int FN(products_in_groups)(int64_t B, int nv, int64_t K, const real *aT, const real *tiles,
                                  int64_t tile_len, real *acc, int64_t acc_len,
                                  const int64_t *lengths, int64_t t, int64_t u0, int64_t u1,
                                  int64_t s)
{
    const int nchunks = FN(recur_chunks)(nv, K);
    const int64_t chunk_bytes = (K + nchunks - 1) / nchunks * B * (int64_t)sizeof(real);
    const int64_t fit = RECUR_GROUP_BYTES / chunk_bytes;  /* chunks of aT a group takes */
    if (B == 1 || nchunks == 1 || fit >= nchunks) return 0;
    const int group = fit < 1 ? 1 : (int)fit;
    for (int c0 = 0; c0 < nchunks; c0 += group)
        for (int64_t i = 0; i < u1 - u0; i++) {
            const int64_t u = FN(block_at)(u0, u1, s, i), nu = FN(next_block)(u0, u1, s, i);
            FN(recur_tile_part)(B, nv, K, aT, tiles + u * tile_len, acc + u * acc_len, lengths,
                                t, nu < 0 ? NULL : tiles + nu * tile_len, c0, c0 + group);
        }
    return 1;
}

/* The unit blocks [u0, u1) thread tid of nth owns, the same for every step: whole pairs of
 * blocks, because the products with one vector per block (rnn forward, every backward) run on
 * pairs of blocks (two vectors keep the FMAs, not the loads, the bound). */
static inline void FN(own_blocks)(int64_t nblk, int tid, int nth, int64_t *u0, int64_t *u1)
{
    int64_t q0, q1;
    pyrnn_share((nblk + 1) / 2, tid, nth, &q0, &q1);
    *u0 = 2 * q0;
    *u1 = 2 * q1 < nblk ? 2 * q1 : nblk;
}

/* Units [j0, j1) of the unit blocks [u0, u1). */
static inline void FN(own_units)(int64_t H, int64_t u0, int64_t u1, int64_t *j0, int64_t *j1)
{
    *j0 = u0 * VW;
    *j1 = u1 * VW < H ? u1 * VW : H;
}

/* Threads for a time loop over nblk unit blocks of a cell with G gates: one per MFLOP of work
 * per step (two from 2 MFLOP, the measured crossover on AVX-512: below it the step's barrier
 * costs more than the second thread saves). Recurrent weights that fill one core's L1 are
 * read from L2 every step (the step's other rows need room too), which bounds a small batch,
 * and each thread reads only its share from its own L2 (and L1): from the L1's size on they
 * count as 2 MFLOP per L1 of weights, so batch 1 splits as soon as they spill (at batch 1,
 * benchmarks/time_kernel.py: LSTM H=64, 64 KiB of weights against 48 KiB of L1, 0.40 -> 0.32
 * us a step; H=128 1.52 -> 0.94 us; GRU H=64, 48 KiB, forward 0.041 -> 0.037 ms for 100 steps;
 * but 36 KiB, LSTM H=48 or RNN H=96, ran no faster on two threads). The T steps' flops are
 * what waking a sleeping team is weighed against.
 * A folded one-step call (fold_one_step) has no product in its loop, only the pointwise work
 * on its G*B*H gate values, counted as POINTWISE_FLOPS each: a team pays from about seven
 * thousand values (benchmarks/compare_builds.py, T=1, one thread over two: LSTM B=8 H=128,
 * four thousand, 0.94 of the time; GRU B=16 H=128 0.90 inference; LSTM B=16 H=128 and GRU B=32
 * kept two). Counted as the product's, a one-step call of a few hundred values took two
 * threads as soon as its weights passed the L1 (benchmarks/RESULTS.md). */
#define POINTWISE_FLOPS 300.0
static inline int FN(loop_threads)(int G, int64_t T, int64_t B, int64_t H, int64_t nblk,
                                   int folded)
{
    const double values = (double)G * (double)B * (double)H;
    const double flops = folded ? POINTWISE_FLOPS * values : 2.0 * values * (double)H;
    const double streamed =
        folded ? 0.0 : FN(streamed_work)((double)G * (double)H * (double)H * sizeof(real), 1.0);
    return pyrnn_threads_for(flops > streamed ? flops : streamed, 1e6, (nblk + 1) / 2,
                             (double)T * flops);
}

/* One pair q of unit blocks through a product with one vector per block:
 *     acc[q][b][0 : 2*VW] = sum_{k<K} aT[k*B + b] * panels[q][k0 + k][0 : 2*VW]
 * aT: [K,B]; panels: [npairs][ktot][2*VW] pair panels, used from row k0;
 * acc: [npairs][B][2*VW]; rows over at step t are skipped; pair next_q's panel (-1: none) is
 * brought into L2 meanwhile (recur_tile). */
static inline void FN(pair_product)(int64_t B, int64_t K, const real *aT, const real *panels,
                                    int64_t ktot, int64_t k0, int64_t q, int64_t next_q,
                                    real *acc, const int64_t *lengths, int64_t t)
{
    const int64_t w = 2 * VW;
    FN(recur_tile)(B, 2, K, aT, panels + (q * ktot + k0) * w, acc + q * B * w, lengths, t,
                   next_q < 0 ? NULL : panels + (next_q * ktot + k0) * w);
}

/* b_ih + b_hh of gate k of unit block u, H apart from gate to gate (zeros without bias). */
static inline V FN(block_bias)(const struct PYRNN_CAT(pyrnn_call_, SFX) *c, int k, int64_t u)
{
    const int64_t ju = u * VW, n = c->H - ju < VW ? c->H - ju : VW, at = k * c->H + ju;
    return c->b_ih ? FN(vload_n)(c->b_ih + at, n) + FN(vload_n)(c->b_hh + at, n) : FN(vdup)(0);
}

/* Batch 1's recurrent products of the tiles [u0, u1), of pv vectors each, ahead of the
 * pointwise updates that read them (batch 1 skips recur_tile): up to MV_TILES(pv) at once, in
 * groups as even as they can be, so that one broadcast of a[k] serves several tiles.
 *     acc[u*ldc ...] = sum_{k<K} a[k] * panels[(u*ktot + k0 + k)*pv*VW ...]
 * a: [K] the state or gate gradient row; zeros where step t is over (t >= lengths[0]). */
static void FN(tiles_product_b1)(int pv, int64_t K, const real *a, const real *panels,
                                 int64_t ktot, int64_t k0, int64_t u0, int64_t u1, real *acc,
                                 int64_t ldc, const int64_t *lengths, int64_t t)
{
    const int64_t w = pv * VW, most = MV_TILES(pv), n = u1 - u0;
    if (lengths && t >= lengths[0]) {
        for (int64_t u = u0; u < u1; u++) memset(acc + u * ldc, 0, (size_t)w * sizeof(real));
        return;
    }
    const int groups = (int)((n + most - 1) / most);
    for (int i = 0; i < groups; i++) {
        int64_t g0, g1;
        pyrnn_share(n, i, groups, &g0, &g1);
        const int64_t u = u0 + g0;
        FN(mv)((int)(g1 - g0), pv, K, a, panels + (u * ktot + k0) * w, w, ktot * w,
               acc + u * ldc, ldc);
    }
}

/* ---- backward's gate gradients of a step, row block by row block ----
 * Each cell gives two functions of its context x (the cell's *_ctx):
 *   dgate(x, ok, n, hb, at, atG): one row's block of n units, from unit ju of row b at step t:
 *       hb = b*H+ju indexes it in the [B,H] carried gradients, at = (t*B+b)*H+ju in the
 *       [T,B,H] arrays, atG = (t*B+b)*G*H+ju in the [T,B,G*H] ones; ok: step t is valid for
 *       the row;
 *   prefetch_row(x, at, atG, n): asks for what dgate reads and writes at such a row.
 * The loops below inline them (always_inline, constant function pointers). */
typedef void (*FN(dgate_fn))(const void *x, int ok, int64_t n, int64_t hb, int64_t at,
                             int64_t atG);
typedef void (*FN(row_fn))(const void *x, int64_t at, int64_t atG, int64_t n);

/* Gates [k0, G) of a block of n units from unit ju at step t, of gate gradients dg
 * [T,B,G*H], transposed into dgT for the recurrent products. */
static inline void FN(transpose_gates)(const real *dg, int64_t t, int64_t B, int64_t H, int G,
                                       int k0, int64_t ju, int64_t n, real *dgT)
{
    for (int k = k0; k < G; k++)
        FN(transpose_rows)(dg + t * B * G * H + k * H + ju, G * H, B, n, k * H + ju, dgT);
}

/* Batch 1's gate gradients of step t for units [j0, j1): one contiguous run of each array a
 * step, in order, which the hardware prefetchers follow. The batch's block order and its
 * prefetching of the next visit cost batch 1 more than they saved (RNN 100x1x32x64 fwd+bwd
 * 0.92-0.96 of the time without them, LSTM 0.95-0.96, GRU 0.92-0.96: benchmarks/RESULTS.md). */
static inline __attribute__((always_inline)) void FN(dgates_b1)(
    const void *x, const struct PYRNN_CAT(pyrnn_call_, SFX) *c, const int G, FN(dgate_fn) dgate,
    int64_t t, int64_t j0, int64_t j1)
{
    const int ok = FN(valid)(c->lengths, 0, t);
    for (int64_t j = j0; j < j1; j += VW)
        dgate(x, ok, j1 - j < VW ? j1 - j : VW, j, t * c->H + j, t * G * c->H + j);
}

/* A batch's gate gradients of step t (s-th visited) over the thread's unit blocks [u0, u1),
 * row by row, asking for the next visit's rows as it goes; then each block's gates [k0, G) of
 * dg, what the recurrent products read, transposed into dgT. */
static inline __attribute__((always_inline)) void FN(dgates_batch)(
    const void *x, const struct PYRNN_CAT(pyrnn_call_, SFX) *c, const int G, FN(dgate_fn) dgate,
    FN(row_fn) prefetch_row, const real *dg, int k0, int64_t s, int64_t t, int64_t u0,
    int64_t u1, real *dgT)
{
    const int64_t T = c->T, B = c->B, H = c->H;
    for (int64_t ui = 0; ui < u1 - u0; ui++) {
        const int64_t u = FN(block_at)(u0, u1, s, ui);
        const int64_t ju = u * VW, n = H - ju < VW ? H - ju : VW;
        int64_t pu;
        const int64_t pt = FN(next_visit)(T, !c->reverse, u0, u1, s, ui, &pu);
        const int64_t pj = pu * VW, pn = H - pj < VW ? H - pj : VW;
        for (int64_t b = 0; b < B; b++) {
            if (pt >= 0)  /* what this row of the next visit reads and writes */
                prefetch_row(x, (pt * B + b) * H + pj, (pt * B + b) * G * H + pj, pn);
            dgate(x, FN(valid)(c->lengths, b, t), n, b * H + ju, (t * B + b) * H + ju,
                  (t * B + b) * G * H + ju);
        }
        FN(transpose_gates)(dg, t, B, H, G, k0, ju, n, dgT);
    }
}

/* The end of every backward step: for the pairs [q0, q1) a thread owns (in step s's order),
 *     dh[b] = (add ? dh[b] : 0) + (dgT^T @ panels)[b]   where step t is valid for sequence b
 * (dh is left alone elsewhere). dgT: [K,B] the gate gradients transposed; panels: [npairs]
 * [ktot][2*VW] the rows of w_hh for the pair's units, the first K used; dh: [B,H]. */
static void FN(dh_update)(const struct PYRNN_CAT(pyrnn_call_, SFX) *c, int64_t t, int64_t nblk,
                          int64_t q0, int64_t q1, int64_t s, int64_t K, int64_t ktot,
                          const real *dgT, const real *panels, real *acc, real *dh, int add)
{
    const int64_t B = c->B, H = c->H;
    if (B == 1)
        FN(tiles_product_b1)(2, K, dgT, panels, ktot, 0, q0, q1, acc, 2 * VW, c->lengths, t);
    for (int64_t qi = 0; qi < q1 - q0; qi++) {
        const int64_t q = FN(block_at)(q0, q1, s, qi);
        if (B > 1)
            FN(pair_product)(B, K, dgT, panels, ktot, 0, q, FN(next_block)(q0, q1, s, qi), acc,
                             c->lengths, t);
        for (int64_t u = 2 * q; u < 2 * q + 2 && u < nblk; u++) {
            const int64_t ju = u * VW, n = H - ju < VW ? H - ju : VW;
            const real *a = acc + q * B * 2 * VW + (u - 2 * q) * VW;
            for (int64_t b = 0; b < B; b++)
                if (FN(valid)(c->lengths, b, t)) {
                    V v = FN(vload)(a + b * 2 * VW);
                    if (add) v = FN(vload_n)(dh + b * H + ju, n) + v;
                    FN(vstore_n)(dh + b * H + ju, v, n);
                }
        }
    }
}

/* The regions every cell appends to the reference's (workspace.c sizes them):
 *   acc   [G*B*Hp]   recurrent sums of the current step, per unit block [nblk][B][tile]
 *   tbuf  [2,G*H,B]  transposed states (forward) or gate gradients (backward), two steps
 *   wpack [G*Hp*H]   recurrent weights packed once per call, tiles or panels per unit block;
 *                    none where the call folds its one step (fold_one_step, gru_fold_one_step:
 *                    T = 1, and reset_after for the GRU), which packs none: a training
 *                    workspace is kept from forward to backward, and in an LSTMCell step of
 *                    B=32 I=H=512 wpack was 4 MiB of its 7.5
 *   bpack [pyrnn_bpack_len(G*H, I)]  the GEMMs' packed B panels
 * each starting on a 64-byte boundary (the length has 16 elements of slack per region), so
 * whole-vector loads of tiles and panels never straddle cache lines. */
struct FN(tail) {
    real *acc, *tbuf, *wpack, *bpack;
};

static inline real *FN(align64)(real *p)
{
    return (real *)(((uintptr_t)p + 63) & ~(uintptr_t)63);
}

static struct FN(tail) FN(carve_tail)(real *p, int64_t B, int64_t H, int G, int folds)
{
    const int64_t Hp = pyrnn_hpad(H);
    struct FN(tail) t;
    t.acc = FN(align64)(p);
    t.tbuf = FN(align64)(t.acc + G * B * Hp);
    t.wpack = folds ? NULL : FN(align64)(t.tbuf + 2 * G * H * B);
    t.bpack = FN(align64)(t.tbuf + 2 * G * H * B + (folds ? 0 : G * Hp * H));
    return t;
}

/* Asks for the n (<= VW) reals at p to be brought into cache (for writing when `write`). The
 * cells ask, row by row as they go, for the rows of [T,B,...] arrays that their next visit
 * reads: those rows are far apart, so the hardware prefetchers miss them, and asking a row at a
 * time spreads the requests. */
static inline void FN(prefetch)(const real *p, int64_t n, int write)
{
    /* at most two cache lines: no loop, so no branch in the rows' code */
    if (write) {
        __builtin_prefetch(p, 1, 3);
        __builtin_prefetch(p + n - 1, 1, 3);
    } else {
        __builtin_prefetch(p, 0, 3);
        __builtin_prefetch(p + n - 1, 0, 3);
    }
}

/* The input side's GEMMs of backward, shared by every cell, each where its result is asked for
 * (not NULL: a caller that needs no dx or dw_ih saves its GEMM):
 *     dx = dg @ w_ih;  dw_ih = dg^T @ x
 * dg: [T*B, GH] gate gradients (ldg = GH); x: [T*B, I]. */
static void FN(input_grads)(int64_t TB, int64_t I, int64_t GH, const real *dg, const real *w_ih,
                            const real *x, real *dx, real *dw_ih, real *bpack)
{
    if (dx) FN(gemm_run)(TB, I, GH, dg, GH, 1, w_ih, I, 1, dx, I, 0, bpack);
    if (dw_ih) FN(gemm_run)(GH, I, TB, dg, 1, GH, x, I, 1, dw_ih, I, 0, bpack);
}

/* Bias gradients that are both the column sums of dg [TB, GH]: into db and a copy into
 * db_copy, each where it is asked for (not NULL). */
static void FN(bias_grads)(int64_t TB, int64_t GH, const real *dg, real *db, real *db_copy)
{
    real *first = db ? db : db_copy;
    if (!first) return;
    FN(column_sums)(TB, GH, dg, GH, first);
    if (db && db_copy) memcpy(db_copy, db, (size_t)GH * sizeof(real));
}

/* A one-step call (T = 1) makes one recurrent product, h0 @ w_hh^T. The RNN and the LSTM add it
 * to the input projection rather than pack w_hh into tiles for it: gates (ld apart) += h0 @
 * w_hh^T, a GEMM of B rows that reads w_hh where it is when B is small (gemm_few_rows), and
 * their time loop, told by the returned 1, skips its product and reads zeros from acc [G*B*Hp].
 * (The GRU's n gate needs its product apart, r * (h0 @ w_hn^T + b_hn): gru_fold_one_step.) An
 * LSTM call of T=1 B=1 I=H=512 took 0.33-0.34 of the time before, fwd+bwd 0.64-0.70 (with
 * unfold_one_step; benchmarks/RESULTS.md). */
static int FN(fold_one_step)(const struct PYRNN_CAT(pyrnn_call_, SFX) *c, int G, real *gates,
                             int64_t ld, real *acc, real *bpack)
{
    if (c->T != 1) return 0;
    const int64_t B = c->B, H = c->H;
    if (c->h0) FN(gemm_run)(B, G * H, H, c->h0, H, 1, c->w_hh, 1, H, gates, ld, 1, bpack);
    memset(acc, 0, (size_t)(G * B * pyrnn_hpad(H)) * sizeof(real));
    return 1;
}

/* The backward of a folded step: dh0 (+)= dg @ w_hh (dg [B, G*H], the step's gate gradients
 * on the recurrent side; add: onto what the loop left in dh0, the GRU's z part), a GEMM
 * reading w_hh where it is, after a time loop that, folded, packed no panels and left
 * dh_update to this. */
static void FN(unfold_one_step)(const struct PYRNN_CAT(pyrnn_call_, SFX) *c, int G,
                                const real *dg, int add, real *bpack)
{
    const int64_t H = c->H;
    FN(gemm_run)(c->B, H, G * H, dg, G * H, 1, c->w_hh, H, 1, c->dh0, H, add, bpack);
}
