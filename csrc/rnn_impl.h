/* Elman RNN forward and backward for one instruction set and data type (layout: rnn.c).
 * Mirrors pyrnn/ref/rnn.py: same local names, same numbered steps. Included by
 * kernels_impl.h. No include guard on purpose. */

#ifndef RNN_ROW_BLOCKS
#define RNN_ROW_BLOCKS 4  /* batch 1's blocks updated side by side (rnn_step_b1) */
#endif

struct FN(rnn_regions) {
    real *gates, *hprev, *dgates, *dh, *hbuf;
    int64_t gates_ld;  /* elements from one row of gates to the next (rnn.c) */
    struct FN(tail) tail;
};

static struct FN(rnn_regions) FN(rnn_carve)(real *ws, int64_t T, int64_t B, int64_t H,
                                            int training)
{
    ws = FN(align64)(ws);  /* the head on a 64-byte boundary too (workspace.c's slack) */
    struct FN(rnn_regions) r = {0};
    const int64_t TBH = T * B * H;
    r.gates = ws;
    if (training) {
        r.hprev = ws + TBH;
        r.dgates = ws + 2 * TBH;
        r.dh = ws + 3 * TBH;
        r.tail = FN(carve_tail)(ws + 3 * TBH + B * H, B, H, 1, T == 1);
        r.gates_ld = H;
    } else {
        const int64_t state = B * H + PYRNN_STATE_SKEW;
        r.gates_ld = B > 1 ? H + PYRNN_ROW_SKEW : H;  /* one row a step: no sets shared */
        r.hbuf = ws + T * B * r.gates_ld;
        r.tail = FN(carve_tail)(r.hbuf + 2 * state, B, H, 1, T == 1);
    }
    return r;
}

struct FN(rnn_ctx) {
    const struct PYRNN_CAT(pyrnn_call_, SFX) *c;
    struct FN(rnn_regions) r;
    int64_t nblk;
    int folded;  /* the one step's product is in gates already (fold_one_step) */
};

/* The state entering the s-th visited step: hprev[t] when training, else a double buffer. */
static inline real *FN(rnn_state)(const struct FN(rnn_ctx) *x, int64_t s)
{
    const struct PYRNN_CAT(pyrnn_call_, SFX) *c = x->c;
    if (c->training) return x->r.hprev + FN(step_at)(c->T, c->reverse, s) * c->B * c->H;
    return x->r.hbuf + (s & 1) * (c->B * c->H + PYRNN_STATE_SKEW);
}

/* The fused update of one row of nb (1 to RNN_ROW_BLOCKS) consecutive unit blocks, the last
 * with n_last units, the others whole. Pointers are at the first block's first unit in that
 * row: g of gates[t] (the input projection in, the activation out), y of y[t], h_prev and h of
 * the states; g_next, y_next: the next step's rows, prefetched (NULL after the last step); gh:
 * the blocks' recurrent sums (VW apart); bias: their bias sums; ok: whether step t is valid for
 * the row. Blocks side by side let their activations' dependency chains (tanh: about 55
 * cycles, ending in a division) interleave, which batch 1, one row a block, otherwise waits
 * on block by block (two: RNN 100x1x32x64 inference 0.83 of the time; four: see
 * benchmarks/RESULTS.md). */
static inline __attribute__((always_inline)) void FN(rnn_row)(
    int relu, const int nb, int64_t n_last, real *g, const real *g_next, real *y,
    const real *y_next, const real *h_prev, real *h, const real *gh, const V *bias, int ok)
{
    V pre[RNN_ROW_BLOCKS], act[RNN_ROW_BLOCKS];
    for (int k = 0; k < nb; k++) {
        const int64_t n = k + 1 < nb ? VW : n_last;
        if (g_next) {
            FN(prefetch)(g_next + k * VW, n, 0);
            FN(prefetch)(y_next + k * VW, n, 1);
        }
        pre[k] = (FN(vload_n)(g + k * VW, n) + bias[k]) + FN(vload)(gh + k * VW);
    }
    if (relu)  /* one branch around both blocks' activations, which then interleave */
        for (int k = 0; k < nb; k++) act[k] = FN(vrelu)(pre[k]);
    else
        for (int k = 0; k < nb; k++) act[k] = FN(vtanh)(pre[k]);
    for (int k = 0; k < nb; k++) {
        const int64_t n = k + 1 < nb ? VW : n_last;
        FN(vstore_n)(g + k * VW, act[k], n);
        FN(vstore_n)(h + k * VW, ok ? act[k] : FN(vload_n)(h_prev + k * VW, n), n);
        FN(vstore_n)(y + k * VW, ok ? act[k] : FN(vdup)(0), n);
    }
}

/* Where step t of the forward reads and writes: the rows of gates[t] and y[t], the next
 * step's (prefetched; NULL after the last step) and the states. */
struct FN(rnn_step) {
    int64_t t;
    real *g, *y;
    const real *g_next, *y_next;
    const real *h_prev;
    real *h;
};

/* Batch 1's step over the thread's unit blocks [u0, u1) (u0 even): every pair's product first,
 * several pairs at once (the state row is its own transpose: they read it where it is), then
 * the updates up to RNN_ROW_BLOCKS blocks side by side (nb a constant in each call, so each
 * row's blocks stay in registers). */
static __attribute__((noinline)) void FN(rnn_step_b1)(const struct FN(rnn_ctx) *x,
                                                      const struct FN(rnn_step) *st, int64_t u0,
                                                      int64_t u1)
{
    const struct PYRNN_CAT(pyrnn_call_, SFX) *c = x->c;
    const int64_t H = c->H, t = st->t;
    real *acc = x->r.tail.acc;
    if (!x->folded)
        FN(tiles_product_b1)(2, H, st->h_prev, x->r.tail.wpack, H, 0, u0 / 2, (u1 + 1) / 2,
                             acc, 2 * VW, c->lengths, t);
    const int ok = FN(valid)(c->lengths, 0, t);
    for (int64_t u = u0; u < u1; u += RNN_ROW_BLOCKS) {
        const int nb = u1 - u < RNN_ROW_BLOCKS ? (int)(u1 - u) : RNN_ROW_BLOCKS;
        const int64_t ju = u * VW, last = H - (u + nb - 1) * VW;
        const int64_t n_last = last < VW ? last : VW;
        V bias[RNN_ROW_BLOCKS];
        for (int k = 0; k < RNN_ROW_BLOCKS; k++)
            bias[k] = k < nb ? FN(block_bias)(c, 0, u + k) : FN(vdup)(0);
        real *g = st->g + ju, *y = st->y + ju, *h = st->h + ju;
        const real *g_next = st->g_next ? st->g_next + ju : NULL;
        const real *y_next = st->y_next ? st->y_next + ju : NULL;
        const real *h_prev = st->h_prev + ju, *gh = acc + ju;
        if (nb == 4)
            FN(rnn_row)(c->flag, 4, n_last, g, g_next, y, y_next, h_prev, h, gh, bias, ok);
        else if (nb == 3)
            FN(rnn_row)(c->flag, 3, n_last, g, g_next, y, y_next, h_prev, h, gh, bias, ok);
        else if (nb == 2)
            FN(rnn_row)(c->flag, 2, n_last, g, g_next, y, y_next, h_prev, h, gh, bias, ok);
        else
            FN(rnn_row)(c->flag, 1, n_last, g, g_next, y, y_next, h_prev, h, gh, bias, ok);
    }
}

/* A batch's step (s-th visited) over the thread's pairs of unit blocks [q0, q1): each pair's
 * product, then its blocks row by row; the new state's columns transposed for the next step
 * (hT_prev -> hT_next). */
static __attribute__((noinline)) void FN(rnn_step_batch)(const struct FN(rnn_ctx) *x,
                                                         const struct FN(rnn_step) *st,
                                                         int64_t s, int64_t q0, int64_t q1,
                                                         const real *hT_prev, real *hT_next)
{
    const struct PYRNN_CAT(pyrnn_call_, SFX) *c = x->c;
    const int64_t B = c->B, H = c->H, ld = x->r.gates_ld, t = st->t;
    real *acc = x->r.tail.acc;
    const int summed = x->folded || FN(products_in_groups)(B, 2, H, hT_prev, x->r.tail.wpack,
                                                           H * 2 * VW, acc, B * 2 * VW,
                                                           c->lengths, t, q0, q1, s);
    for (int64_t qi = 0; qi < q1 - q0; qi++) {
        const int64_t q = FN(block_at)(q0, q1, s, qi);
        if (!summed)
            FN(pair_product)(B, H, hT_prev, x->r.tail.wpack, H, 0, q,
                             FN(next_block)(q0, q1, s, qi), acc, c->lengths, t);
        for (int64_t u = 2 * q; u < 2 * q + 2 && u < x->nblk; u++) {
            const int64_t ju = u * VW, n = H - ju < VW ? H - ju : VW;
            /* [B][2*VW] h_prev @ w_hh^T for the pair's units; this block's half */
            const real *gh = acc + q * B * 2 * VW + (u - 2 * q) * VW;
            const V bias = FN(block_bias)(c, 0, u);
            for (int64_t b = 0; b < B; b++) {
                const int64_t gb = b * ld + ju, yb = b * H + ju;
                FN(rnn_row)(c->flag, 1, n, st->g + gb, st->g_next ? st->g_next + gb : NULL,
                            st->y + yb, st->y_next ? st->y_next + yb : NULL, st->h_prev + yb,
                            st->h + yb, gh + b * 2 * VW, &bias, FN(valid)(c->lengths, b, t));
            }
            FN(transpose_rows)(st->h + ju, H, B, n, ju, hT_next);
        }
    }
}

static void FN(rnn_forward_team)(void *vctx, int tid, int nth)
{
    const struct FN(rnn_ctx) *x = vctx;
    const struct PYRNN_CAT(pyrnn_call_, SFX) *c = x->c;
    const int64_t T = c->T, B = c->B, H = c->H, ld = x->r.gates_ld;
    real *hT = x->r.tail.tbuf;
    int64_t u0, u1, j0, j1;
    FN(own_blocks)(x->nblk, tid, nth, &u0, &u1);
    FN(own_units)(H, u0, u1, &j0, &j1);
    const int64_t q0 = u0 / 2, q1 = (u1 + 1) / 2;  /* the pairs of blocks */
    if (!x->folded) FN(pack_tiles)(c->w_hh, H, 1, 2 * VW, q0, q1, x->r.tail.wpack);
    FN(init_state)(c->h0, B, H, j0, j1, FN(rnn_state)(x, 0), B > 1 ? hT : NULL);
    pyrnn_barrier(nth);

    // 2. time loop: recurrent product and the fused pointwise update
    for (int64_t s = 0; s < T; s++) {
        const int64_t t = FN(step_at)(T, c->reverse, s);
        const int64_t t2 = s + 1 < T ? FN(step_at)(T, c->reverse, s + 1) : -1;
        const struct FN(rnn_step) st = {
            t, x->r.gates + t * B * ld, c->y + t * B * H,
            t2 >= 0 ? x->r.gates + t2 * B * ld : NULL, t2 >= 0 ? c->y + t2 * B * H : NULL,
            FN(rnn_state)(x, s), s + 1 < T ? FN(rnn_state)(x, s + 1) : c->h_n};
        if (B == 1)
            FN(rnn_step_b1)(x, &st, u0, u1);
        else
            FN(rnn_step_batch)(x, &st, s, q0, q1, hT + (s & 1) * H * B,
                               hT + ((s + 1) & 1) * H * B);
        if (s + 1 < T) pyrnn_barrier(nth);
    }
}

static void FN(rnn_forward)(const struct PYRNN_CAT(pyrnn_call_, SFX) *c)
{
    const int64_t T = c->T, B = c->B, I = c->I, H = c->H;
    struct FN(rnn_ctx) x = {c, FN(rnn_carve)(c->workspace, T, B, H, c->training),
                            (H + VW - 1) / VW};
    // 1. input projection for all steps as one GEMM: gates = x @ w_ih^T (+ b_ih + b_hh, added
    //    in the time loop)
    FN(gemm_run)(T * B, H, I, c->x, I, 1, c->w_ih, 1, I, x.r.gates, x.r.gates_ld, 0,
                 x.r.tail.bpack);
    x.folded = FN(fold_one_step)(c, 1, x.r.gates, x.r.gates_ld, x.r.tail.acc, x.r.tail.bpack);
    const int nth = FN(loop_threads)(1, T, B, H, x.nblk, x.folded);
    pyrnn_team(nth, FN(rnn_forward_team), &x);
}

/* One row's block of n units of gate gradients (cell_common.h dgate_fn for the indexes):
 * dg = (dh + dy) * act'(pre), from the activation y = act(pre) kept in gates; 0 where the
 * step is not valid for the row (ok == 0). */
static inline __attribute__((always_inline)) void FN(rnn_dgate)(
    const void *vx, int ok, int64_t n, int64_t hb, int64_t at, int64_t at1)
{
    const struct FN(rnn_ctx) *x = vx;
    (void)at1;  /* one gate: the [T,B,G*H] arrays are the [T,B,H] ones */
    V d = FN(vdup)(0);
    if (ok) {
        const V y = FN(vload_n)(x->r.gates + at, n);
        const V dact = x->c->flag ? FN(vselect)(y > FN(vdup)(0), FN(vdup)(1), FN(vdup)(0))
                                  : (real)1 - y * y;
        d = (FN(vload_n)(x->r.dh + hb, n) + FN(vload_n)(x->c->dy + at, n)) * dact;
    }
    FN(vstore_n)(x->r.dgates + at, d, n);
}

static inline __attribute__((always_inline)) void FN(rnn_prefetch_row)(
    const void *vx, int64_t at, int64_t at1, int64_t n)
{
    const struct FN(rnn_ctx) *x = vx;
    (void)at1;
    FN(prefetch)(x->r.gates + at, n, 0);
    FN(prefetch)(x->r.dgates + at, n, 1);
    FN(prefetch)(x->c->dy + at, n, 0);
}

static void FN(rnn_backward_team)(void *vctx, int tid, int nth)
{
    const struct FN(rnn_ctx) *x = vctx;
    const struct PYRNN_CAT(pyrnn_call_, SFX) *c = x->c;
    const int64_t T = c->T, B = c->B, H = c->H;
    real *dgates = x->r.dgates, *dh = x->r.dh, *acc = x->r.tail.acc, *wpack = x->r.tail.wpack;
    int64_t u0, u1, j0, j1;
    FN(own_blocks)(x->nblk, tid, nth, &u0, &u1);
    FN(own_units)(H, u0, u1, &j0, &j1);
    const int64_t q0 = u0 / 2, q1 = (u1 + 1) / 2;  /* the pairs of blocks */
    if (!x->folded) FN(pack_panels)(c->w_hh, H, H, 2 * VW, q0, q1, wpack);
    FN(init_state)(c->dh_n, B, H, j0, j1, dh, NULL);

    // 1. reverse time loop: dgates[t] and the carried gradient only
    for (int64_t s = 0; s < T; s++) {
        const int64_t t = FN(step_at)(T, !c->reverse, s);
        /* batch 1's gate gradients are their own transpose, as the forward's state is */
        real *dgT = B == 1 ? dgates + t * H : x->r.tail.tbuf + (s & 1) * H * B;
        // forward was: gates[t] = act(gx + h_prev @ w_hh^T); h = valid ? gates[t] : h_prev
        if (B == 1)
            FN(dgates_b1)(x, c, 1, FN(rnn_dgate), t, j0, j1);
        else
            FN(dgates_batch)(x, c, 1, FN(rnn_dgate), FN(rnn_prefetch_row), dgates, 0, s,
                             t, u0, u1, dgT);
        pyrnn_barrier(nth);
        if (!x->folded && (s + 1 < T || c->dh0))
            FN(dh_update)(c, t, x->nblk, q0, q1, s, H, H, dgT, wpack, acc, dh, 0);
    }
    for (int64_t b = 0; b < B && !x->folded && c->dh0; b++)
        memcpy(c->dh0 + b * H + j0, dh + b * H + j0, (size_t)(j1 - j0) * sizeof(real));
}

static void FN(rnn_backward)(const struct PYRNN_CAT(pyrnn_call_, SFX) *c)
{
    const int64_t T = c->T, B = c->B, I = c->I, H = c->H;
    struct FN(rnn_ctx) x = {c, FN(rnn_carve)(c->workspace, T, B, H, 1), (H + VW - 1) / VW,
                            T == 1 /* as the forward's fold_one_step */};
    const int nth = FN(loop_threads)(1, T, B, H, x.nblk, x.folded);
    pyrnn_team(nth, FN(rnn_backward_team), &x);

    // 2. weight gradients and dx, each one GEMM over all steps (those asked for)
    real *bpack = x.r.tail.bpack;
    if (x.folded && c->dh0) FN(unfold_one_step)(c, 1, x.r.dgates, 0, bpack);
    FN(input_grads)(T * B, I, H, x.r.dgates, c->w_ih, c->x, c->dx, c->dw_ih, bpack);
    if (c->dw_hh)
        FN(gemm_run)(H, H, T * B, x.r.dgates, 1, H, x.r.hprev, H, 1, c->dw_hh, H, 0, bpack);
    FN(bias_grads)(T * B, H, x.r.dgates, c->db_ih, c->db_hh);
}
