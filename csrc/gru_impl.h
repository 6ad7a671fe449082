/* GRU forward and backward, both variants, for one instruction set and data type (layout:
 * gru.c). Mirrors pyrnn/ref/gru.py: same local names, same numbered steps. Included by
 * kernels_impl.h. No include guard on purpose.
 *
 * reset_after: one recurrent product h_prev @ w_hh^T per step, one barrier.
 * reset_before: n needs (r * h_prev) @ w_hn^T, and r of every unit, so each step has two
 * phases (r, z; then n) with a barrier after each; backward has three (dz, dn; dr; dh). */

struct FN(gru_regions) {
    real *gates, *extra, *hprev, *dgx, *dgh, *dh, *drh, *hbuf;
    struct FN(tail) tail;
};

static struct FN(gru_regions) FN(gru_carve)(real *ws, int64_t T, int64_t B, int64_t H,
                                            int training, int reset_after)
{
    ws = FN(align64)(ws);  /* the head on a 64-byte boundary too (workspace.c's slack) */
    struct FN(gru_regions) r = {0};
    const int64_t TBH = T * B * H;
    r.gates = ws;
    if (training) {
        r.extra = ws + 3 * TBH;
        r.hprev = ws + 4 * TBH;
        r.dgx = ws + 5 * TBH;
        /* reset_before's h-side pre-activation gradient equals the x side's: dgh is dgx */
        r.dgh = reset_after ? ws + 8 * TBH : r.dgx;
        r.dh = ws + (reset_after ? 11 : 8) * TBH;
        r.drh = r.dh + B * H;
        r.tail = FN(carve_tail)(r.drh + B * H, B, H, 3, T == 1 && reset_after);
    } else {
        r.hbuf = ws + 3 * TBH;
        r.tail = FN(carve_tail)(r.hbuf + 3 * B * H, B, H, 3, T == 1 && reset_after);
    }
    return r;
}

struct FN(gru_ctx) {
    const struct PYRNN_CAT(pyrnn_call_, SFX) *c;
    struct FN(gru_regions) r;
    int64_t nblk;
    int folded;  /* the one step's products are in acc already (gru_fold_one_step) */
};

/* A one-step reset_after call's recurrent products h0 @ w_hh^T, as the RNN and the LSTM fold
 * theirs (cell_common.h fold_one_step), but kept apart from the input projection, as the n gate
 * needs them: one GEMM of B rows reading w_hh where it is, into tbuf (free until the team
 * transposes states into it), then spread into acc's layout [nblk][B][r,z,n][VW], zeros in
 * the last block's lanes past H (zeros everywhere without h0). The time loop then neither
 * packs tiles nor computes a product. Returns whether it folded. */
static int FN(gru_fold_one_step)(const struct FN(gru_ctx) *x)
{
    const struct PYRNN_CAT(pyrnn_call_, SFX) *c = x->c;
    const int64_t B = c->B, H = c->H, G = 3;
    real *acc = x->r.tail.acc, *gh = x->r.tail.tbuf;
    if (c->T != 1 || !c->flag) return 0;
    memset(acc, 0, (size_t)(G * B * pyrnn_hpad(H)) * sizeof(real));
    if (!c->h0) return 1;
    FN(gemm_run)(B, G * H, H, c->h0, H, 1, c->w_hh, 1, H, gh, G * H, 0, x->r.tail.bpack);
    for (int64_t u = 0; u < x->nblk; u++) {
        const int64_t ju = u * VW, n = H - ju < VW ? H - ju : VW;
        for (int64_t b = 0; b < B; b++)
            for (int k = 0; k < G; k++)
                memcpy(acc + ((u * B + b) * G + k) * VW, gh + b * G * H + k * H + ju,
                       (size_t)n * sizeof(real));
    }
    return 1;
}

static inline real *FN(gru_state)(const struct FN(gru_ctx) *x, int64_t s)
{
    const struct PYRNN_CAT(pyrnn_call_, SFX) *c = x->c;
    if (c->training) return x->r.hprev + FN(step_at)(c->T, c->reverse, s) * c->B * c->H;
    return x->r.hbuf + (s & 1) * c->B * c->H;
}

/* The input-side pre-activation of gate k (0 r, 1 z, 2 n) with the biases the reference folds
 * into it: b_ih always, b_hh for r and z, and for n too when reset_before. */
static inline V FN(gru_gx)(const struct PYRNN_CAT(pyrnn_call_, SFX) *c, const real *g3, int k,
                           int64_t ju, int64_t n)
{
    V gx = FN(vload_n)(g3 + k * c->H, n);
    if (c->b_ih) {
        gx += FN(vload_n)(c->b_ih + k * c->H + ju, n);
        if (k < 2 || !c->flag) gx += FN(vload_n)(c->b_hh + k * c->H + ju, n);
    }
    return gx;
}

/* The end of every step: h = valid ? (1-z)*n + z*h_prev : h_prev, written to the next state
 * and y. */
static inline void FN(gru_output)(const struct PYRNN_CAT(pyrnn_call_, SFX) *c, int64_t t,
                                  int64_t b, int64_t ju, int64_t n, V z, V nv,
                                  const real *h_prev, real *h)
{
    const int64_t at = b * c->H + ju;
    const V hp = FN(vload_n)(h_prev + at, n);
    const int ok = FN(valid)(c->lengths, b, t);
    const V hv = ok ? ((real)1 - z) * nv + z * hp : hp;
    FN(vstore_n)(h + at, hv, n);
    FN(vstore_n)(c->y + t * c->B * c->H + at, ok ? hv : FN(vdup)(0), n);
}

/* Phase 1 of step t for row b of nb (1 or 2) consecutive unit blocks from unit ju, the last
 * with n_last units, the others whole: r and z, then n and the output (reset_after) or
 * r * h_prev, kept where the next state goes until phase 2 (reset_before). gh: the blocks'
 * recurrent sums, G*VW apart. Two blocks side by side let their activations' dependency chains
 * (sigmoid, then tanh) interleave, which batch 1, one row a block, otherwise waits on block by
 * block (GRU 100x1x32x64 inference 0.86-0.87 of the time, benchmarks/RESULTS.md). */
static inline __attribute__((always_inline)) void FN(gru_row)(
    const struct FN(gru_ctx) *x, const int reset_after, const int nb, int64_t n_last, int64_t t,
    int64_t b, int64_t ju, const real *gh, const real *h_prev, real *h)
{
    const struct PYRNN_CAT(pyrnn_call_, SFX) *c = x->c;
    const int64_t B = c->B, H = c->H, G = 3, at = b * H + ju;
    real *g3 = x->r.gates + (t * B + b) * G * H + ju;
    real *extra = c->training ? x->r.extra + t * B * H + at : NULL;
    V r[2], z[2], n_seen[2], nv[2];
    int64_t n[2];
    for (int k = 0; k < nb; k++) {  /* every load first: the chains below run uninterrupted */
        const real *ghk = gh + k * G * VW;
        n[k] = k + 1 < nb ? VW : n_last;
        r[k] = FN(gru_gx)(c, g3 + k * VW, 0, ju + k * VW, n[k]) + FN(vload)(ghk);
        z[k] = FN(gru_gx)(c, g3 + k * VW, 1, ju + k * VW, n[k]) + FN(vload)(ghk + VW);
        if (reset_after) {
            nv[k] = FN(gru_gx)(c, g3 + k * VW, 2, ju + k * VW, n[k]);
            n_seen[k] = FN(vload)(ghk + 2 * VW);
            if (c->b_hh) n_seen[k] += FN(vload_n)(c->b_hh + 2 * H + ju + k * VW, n[k]);
        } else {
            nv[k] = FN(vdup)(0);  /* n waits for phase 2 */
            n_seen[k] = FN(vload_n)(h_prev + at + k * VW, n[k]);  /* h_prev, r applied below */
        }
    }
    for (int k = 0; k < nb; k++) r[k] = FN(vsigmoid)(r[k]);
    for (int k = 0; k < nb; k++) z[k] = FN(vsigmoid)(z[k]);
    if (reset_after)
        for (int k = 0; k < nb; k++) nv[k] = FN(vtanh)(nv[k] + r[k] * n_seen[k]);
    else
        for (int k = 0; k < nb; k++) n_seen[k] = r[k] * n_seen[k];
    for (int k = 0; k < nb; k++) {
        FN(vstore_n)(g3 + k * VW, r[k], n[k]);
        FN(vstore_n)(g3 + k * VW + H, z[k], n[k]);
        if (extra) FN(vstore_n)(extra + k * VW, n_seen[k], n[k]);
        if (reset_after) {
            FN(vstore_n)(g3 + k * VW + 2 * H, nv[k], n[k]);
            FN(gru_output)(c, t, b, ju + k * VW, n[k], z[k], nv[k], h_prev, h);
        } else {  /* kept in the next state until phase 2 writes it, to be transposed */
            FN(vstore_n)(h + at + k * VW, n_seen[k], n[k]);
        }
    }
}

/* Phase 1 of batch 1's step t over the thread's unit blocks [u0, u1) (u0 even): every
 * block's products first, then pairs of blocks side by side (gru_row); reset_before's
 * r * h_prev copied where phase 2's product reads it. */
static __attribute__((noinline)) void FN(gru_phase1_b1)(const struct FN(gru_ctx) *x, int64_t t,
                                                        int64_t u0, int64_t u1,
                                                        const real *h_prev, real *h)
{
    const struct PYRNN_CAT(pyrnn_call_, SFX) *c = x->c;
    const int64_t H = c->H, G = 3;
    const int reset_after = c->flag;
    real *acc = x->r.tail.acc;
    if (!x->folded)
        FN(tiles_product_b1)(reset_after ? 3 : 2, H, h_prev, x->r.tail.wpack, H, 0, u0, u1, acc,
                             G * VW, c->lengths, t);
    for (int64_t u = u0; u < u1; u += 2) {
        if (u + 2 <= u1 && (u + 2) * VW <= H) {  /* whole vectors: no partial loads */
            if (reset_after)
                FN(gru_row)(x, 1, 2, VW, t, 0, u * VW, acc + u * G * VW, h_prev, h);
            else
                FN(gru_row)(x, 0, 2, VW, t, 0, u * VW, acc + u * G * VW, h_prev, h);
            continue;
        }
        for (int64_t v = u; v < u1 && v < u + 2; v++)
            FN(gru_row)(x, reset_after, 1, H - v * VW < VW ? H - v * VW : VW, t, 0, v * VW,
                        acc + v * G * VW, h_prev, h);
    }
    if (!reset_after) {
        const int64_t j0 = u0 * VW, j1 = u1 * VW < H ? u1 * VW : H;
        real *rhT = x->r.tail.tbuf + 2 * H;
        memcpy(rhT + j0, h + j0, (size_t)(j1 - j0) * sizeof(real));
    }
}

/* Phase 1 of a batch's step (s-th visited, step t) over the thread's unit blocks [u0, u1):
 * each block's product, then its rows; the new state (reset_after) or r * h_prev
 * (reset_before) transposed for the next product. */
static __attribute__((noinline)) void FN(gru_phase1_batch)(
    const struct FN(gru_ctx) *x, int64_t s, int64_t u0, int64_t u1, const real *hT_prev,
    const real *h_prev, real *h, real *hT_next)
{
    const struct PYRNN_CAT(pyrnn_call_, SFX) *c = x->c;
    const int64_t T = c->T, B = c->B, H = c->H, G = 3, t = FN(step_at)(T, c->reverse, s);
    const int reset_after = c->flag, tile = reset_after ? 3 : 2;
    real *gates = x->r.gates, *acc = x->r.tail.acc, *wpack = x->r.tail.wpack;
    real *rhT = x->r.tail.tbuf + 2 * H * B;
    const int summed = x->folded || FN(products_in_groups)(B, tile, H, hT_prev, wpack,
                                                           H * tile * VW, acc, B * G * VW,
                                                           c->lengths, t, u0, u1, s);
    for (int64_t ui = 0; ui < u1 - u0; ui++) {
        const int64_t u = FN(block_at)(u0, u1, s, ui);
        const int64_t ju = u * VW, n = H - ju < VW ? H - ju : VW;
        real *gh = acc + u * B * G * VW;  /* [B][r,z(,n)][VW] h_prev @ w_h{rz(n)}^T */
        const int64_t nu = FN(next_block)(u0, u1, s, ui);
        if (!summed)
            FN(recur_tile)(B, tile, H, hT_prev, wpack + u * H * tile * VW, gh, c->lengths, t,
                           nu < 0 ? NULL : wpack + nu * H * tile * VW);
        int64_t pu;
        const int64_t pt = FN(next_visit)(T, c->reverse, u0, u1, s, ui, &pu);
        const int64_t pj = pu * VW, pn = H - pj < VW ? H - pj : VW;
        for (int64_t b = 0; b < B; b++) {
            if (pt >= 0) {  /* this row of the next visit's input projection and outputs */
                for (int k = 0; k < G; k++)
                    FN(prefetch)(gates + (pt * B + b) * G * H + k * H + pj, pn, 0);
                FN(prefetch)(c->y + (pt * B + b) * H + pj, pn, 1);
                if (c->training) FN(prefetch)(x->r.extra + (pt * B + b) * H + pj, pn, 1);
            }
            if (reset_after)
                FN(gru_row)(x, 1, 1, n, t, b, ju, gh + b * tile * VW, h_prev, h);
            else
                FN(gru_row)(x, 0, 1, n, t, b, ju, gh + b * tile * VW, h_prev, h);
        }
        FN(transpose_rows)(h + ju, H, B, n, ju, reset_after ? hT_next : rhT);
    }
}

static void FN(gru_forward_team)(void *vctx, int tid, int nth)
{
    const struct FN(gru_ctx) *x = vctx;
    const struct PYRNN_CAT(pyrnn_call_, SFX) *c = x->c;
    const int64_t T = c->T, B = c->B, H = c->H, G = 3, Hp = pyrnn_hpad(H);
    const int reset_after = c->flag;
    real *gates = x->r.gates, *acc = x->r.tail.acc, *wpack = x->r.tail.wpack;
    real *hT = x->r.tail.tbuf, *rhT = x->r.tail.tbuf + 2 * H * B;
    real *wpack_n = wpack + 2 * Hp * H;  /* reset_before: the n rows' tiles */
    int64_t u0, u1, j0, j1;
    FN(own_blocks)(x->nblk, tid, nth, &u0, &u1);
    FN(own_units)(H, u0, u1, &j0, &j1);
    const int64_t q0 = u0 / 2, q1 = (u1 + 1) / 2;  /* the pairs of blocks */
    if (reset_after) {
        if (!x->folded) FN(pack_tiles)(c->w_hh, H, 3, VW, u0, u1, wpack);
    } else {  /* r and z tiles per block, n tiles per pair of blocks */
        FN(pack_tiles)(c->w_hh, H, 2, VW, u0, u1, wpack);
        FN(pack_tiles)(c->w_hh + 2 * H * H, H, 1, 2 * VW, q0, q1, wpack_n);
    }
    FN(init_state)(c->h0, B, H, j0, j1, FN(gru_state)(x, 0), B > 1 ? hT : NULL);
    pyrnn_barrier(nth);

    // 2. time loop: recurrent product(s) and the fused pointwise update
    for (int64_t s = 0; s < T; s++) {
        const int64_t t = FN(step_at)(T, c->reverse, s);
        const real *h_prev = FN(gru_state)(x, s);
        real *h = s + 1 < T ? FN(gru_state)(x, s + 1) : c->h_n;
        real *hT_next = hT + ((s + 1) & 1) * H * B;
        /* batch 1's state is its own transpose: the products read it where it is (r * h_prev,
         * written where the next state goes until phase 2, is copied) */
        if (B == 1)
            FN(gru_phase1_b1)(x, t, u0, u1, h_prev, h);
        else
            FN(gru_phase1_batch)(x, s, u0, u1, hT + (s & 1) * H * B, h_prev, h, hT_next);
        if (!reset_after) {
            pyrnn_barrier(nth);  /* every unit's r * h_prev is ready */
            if (B == 1)
                FN(tiles_product_b1)(2, H, rhT, wpack_n, H, 0, q0, q1, acc, 2 * VW, c->lengths,
                                     t);
            const int summed = FN(products_in_groups)(B, 2, H, rhT, wpack_n, H * 2 * VW, acc,
                                                      B * 2 * VW, c->lengths, t, q0, q1, s);
            for (int64_t qi = 0; qi < q1 - q0; qi++) {
                const int64_t q = FN(block_at)(q0, q1, s, qi);
                if (B > 1 && !summed)
                    FN(pair_product)(B, H, rhT, wpack_n, H, 0, q, FN(next_block)(q0, q1, s, qi),
                                     acc, c->lengths, t);
                for (int64_t u = 2 * q; u < 2 * q + 2 && u < x->nblk; u++) {
                    const int64_t ju = u * VW, n = H - ju < VW ? H - ju : VW;
                    /* [B][2*VW] (r * h_prev) @ w_hn^T for the pair; this block's half */
                    const real *gh = acc + q * B * 2 * VW + (u - 2 * q) * VW;
                    for (int64_t b = 0; b < B; b++) {
                        real *g3 = gates + (t * B + b) * G * H + ju;
                        const V nv =
                            FN(vtanh)(FN(gru_gx)(c, g3, 2, ju, n) + FN(vload)(gh + b * 2 * VW));
                        FN(vstore_n)(g3 + 2 * H, nv, n);
                        FN(gru_output)(c, t, b, ju, n, FN(vload_n)(g3 + H, n), nv, h_prev, h);
                    }
                    if (B > 1) FN(transpose_rows)(h + ju, H, B, n, ju, hT_next);
                }
            }
        }
        if (s + 1 < T) pyrnn_barrier(nth);
    }
}

static void FN(gru_forward)(const struct PYRNN_CAT(pyrnn_call_, SFX) *c)
{
    const int64_t T = c->T, B = c->B, I = c->I, H = c->H;
    struct FN(gru_ctx) x = {c, FN(gru_carve)(c->workspace, T, B, H, c->training, c->flag),
                            (H + VW - 1) / VW};
    // 1. input projection for all steps as one GEMM: gates = x @ w_ih^T (+ the biases, added
    //    in the time loop)
    FN(gemm_run)(T * B, 3 * H, I, c->x, I, 1, c->w_ih, 1, I, x.r.gates, 3 * H, 0,
                 x.r.tail.bpack);
    x.folded = FN(gru_fold_one_step)(&x);
    const int nth = FN(loop_threads)(3, T, B, H, x.nblk, x.folded);
    pyrnn_team(nth, FN(gru_forward_team), &x);
}

/* One row's block of n units of gate gradients (cell_common.h dgate_fn for the indexes). dh
 * becomes dh_prev's z part where the step is valid for the row (ok); the gradients are 0 where
 * it is not. reset_before's dr needs the product with W_hn first (the team's second phase). */
static inline __attribute__((always_inline)) void FN(gru_dgate)(
    const void *vx, int ok, int64_t n, int64_t hb, int64_t at, int64_t at3)
{
    const struct FN(gru_ctx) *x = vx;
    const struct PYRNN_CAT(pyrnn_call_, SFX) *c = x->c;
    const int64_t H = c->H;
    const int reset_after = c->flag;
    real *dgx = x->r.dgx, *dgh = x->r.dgh;
    const V zero = FN(vdup)(0);
    V dr_pre = zero, dz_pre = zero, dn_pre = zero, r = zero;
    if (ok) {
        const real *gates = x->r.gates;
        r = FN(vload_n)(gates + at3, n);
        const V z = FN(vload_n)(gates + at3 + H, n), nv = FN(vload_n)(gates + at3 + 2 * H, n);
        const V h_prev = FN(vload_n)(x->r.hprev + at, n);
        const V dh_t = FN(vload_n)(x->r.dh + hb, n) + FN(vload_n)(c->dy + at, n);
        dn_pre = dh_t * ((real)1 - z) * ((real)1 - nv * nv);
        dz_pre = dh_t * (h_prev - nv) * (z * ((real)1 - z));
        if (reset_after) {
            // forward was: n = tanh(gx_n + r * extra), extra = W_hn h_prev + b_hn
            dr_pre = dn_pre * FN(vload_n)(x->r.extra + at, n) * (r * ((real)1 - r));
        }
        FN(vstore_n)(x->r.dh + hb, dh_t * z, n);  /* dh_prev so far */
    }
    FN(vstore_n)(dgx + at3 + H, dz_pre, n);
    FN(vstore_n)(dgx + at3 + 2 * H, dn_pre, n);
    if (reset_after) {
        FN(vstore_n)(dgx + at3, dr_pre, n);
        FN(vstore_n)(dgh + at3, dr_pre, n);
        FN(vstore_n)(dgh + at3 + H, dz_pre, n);
        FN(vstore_n)(dgh + at3 + 2 * H, dn_pre * r, n);
    }
}

static inline __attribute__((always_inline)) void FN(gru_prefetch_row)(
    const void *vx, int64_t at, int64_t at3, int64_t n)
{
    const struct FN(gru_ctx) *x = vx;
    const int64_t H = x->c->H;
    for (int k = 0; k < 3; k++) {
        FN(prefetch)(x->r.gates + at3 + k * H, n, 0);
        FN(prefetch)(x->r.dgx + at3 + k * H, n, 1);
        if (x->c->flag) FN(prefetch)(x->r.dgh + at3 + k * H, n, 1);
    }
    FN(prefetch)(x->r.extra + at, n, 0);
    FN(prefetch)(x->r.hprev + at, n, 0);
    FN(prefetch)(x->c->dy + at, n, 0);
}

static void FN(gru_backward_team)(void *vctx, int tid, int nth)
{
    const struct FN(gru_ctx) *x = vctx;
    const struct PYRNN_CAT(pyrnn_call_, SFX) *c = x->c;
    const int64_t T = c->T, B = c->B, H = c->H, G = 3;
    const int reset_after = c->flag;
    const real *gates = x->r.gates, *hprev = x->r.hprev;
    real *dgx = x->r.dgx, *dgh = x->r.dgh, *dh = x->r.dh, *drh = x->r.drh;
    real *acc = x->r.tail.acc, *wpack = x->r.tail.wpack;
    int64_t u0, u1, j0, j1;
    FN(own_blocks)(x->nblk, tid, nth, &u0, &u1);
    FN(own_units)(H, u0, u1, &j0, &j1);
    const int64_t q0 = u0 / 2, q1 = (u1 + 1) / 2;  /* the pairs of blocks */
    if (!x->folded) FN(pack_panels)(c->w_hh, G * H, H, 2 * VW, q0, q1, wpack);
    FN(init_state)(c->dh_n, B, H, j0, j1, dh, NULL);

    // 1. reverse time loop: dgx[t], dgh[t] and the carried gradient only
    for (int64_t s = 0; s < T; s++) {
        const int64_t t = FN(step_at)(T, !c->reverse, s);
        /* batch 1's gate gradients are their own transpose (dgh is dgx when reset_before) */
        real *dgT = B == 1 ? dgh + t * G * H : x->r.tail.tbuf + (s & 1) * G * H * B;
        // forward was: h = (1-z)*n + z*h_prev, kept only where the step is valid
        if (B == 1)
            FN(dgates_b1)(x, c, G, FN(gru_dgate), t, j0, j1);
        else
            /* the products read dgh's r, z, n (reset_after); dz and dn (reset_before: dr
             * after phase 2) */
            FN(dgates_batch)(x, c, G, FN(gru_dgate), FN(gru_prefetch_row), dgh,
                             reset_after ? 0 : 1, s, t, u0, u1, dgT);
        pyrnn_barrier(nth);
        if (!reset_after) {
            // forward was: n = tanh(gx_n + (r * h_prev) @ W_hn^T + b_hn), extra = r * h_prev
            if (B == 1)
                FN(tiles_product_b1)(2, H, dgT + 2 * H, wpack, G * H, 2 * H, q0, q1, acc, 2 * VW,
                                     c->lengths, t);
            for (int64_t qi = 0; qi < q1 - q0; qi++) {
                const int64_t q = FN(block_at)(q0, q1, s, qi);
                if (B > 1)
                    FN(pair_product)(B, H, dgT + 2 * H * B, wpack, G * H, 2 * H, q,
                                     FN(next_block)(q0, q1, s, qi), acc, c->lengths, t);
                for (int64_t u = 2 * q; u < 2 * q + 2 && u < x->nblk; u++) {
                    const int64_t ju = u * VW, n = H - ju < VW ? H - ju : VW;
                    /* [B][2*VW] dn_pre @ w_hn for the pair; this block's half */
                    const real *drh_u = acc + q * B * 2 * VW + (u - 2 * q) * VW;
                    for (int64_t b = 0; b < B; b++) {
                        const int64_t at = (t * B + b) * H + ju, at3 = (t * B + b) * G * H + ju;
                        const V drh_b = FN(vload)(drh_u + b * 2 * VW);
                        FN(vstore_n)(drh + b * H + ju, drh_b, n);
                        V dr_pre = FN(vdup)(0);
                        if (FN(valid)(c->lengths, b, t)) {
                            const V r = FN(vload_n)(gates + at3, n);
                            dr_pre = drh_b * FN(vload_n)(hprev + at, n) * (r * ((real)1 - r));
                            const V dh_prev = FN(vload_n)(dh + b * H + ju, n) + drh_b * r;
                            FN(vstore_n)(dh + b * H + ju, dh_prev, n);
                        }
                        FN(vstore_n)(dgx + at3, dr_pre, n);
                    }
                    if (B > 1) FN(transpose_rows)(dgx + t * B * G * H + ju, G * H, B, n, ju, dgT);
                }
            }
            pyrnn_barrier(nth);
        }
        /* dh_prev += [dgh @ w_hh] (reset_after), [dgx_r, dgx_z] @ w_hrz (reset_before) */
        if (!x->folded && (s + 1 < T || c->dh0))
            FN(dh_update)(c, t, x->nblk, q0, q1, s, reset_after ? G * H : 2 * H, G * H, dgT,
                          wpack, acc, dh, 1);
    }
    for (int64_t b = 0; b < B && c->dh0; b++)
        memcpy(c->dh0 + b * H + j0, dh + b * H + j0, (size_t)(j1 - j0) * sizeof(real));
}

static void FN(gru_backward)(const struct PYRNN_CAT(pyrnn_call_, SFX) *c)
{
    const int64_t T = c->T, B = c->B, I = c->I, H = c->H, TB = T * B;
    struct FN(gru_ctx) x = {c, FN(gru_carve)(c->workspace, T, B, H, 1, c->flag),
                            (H + VW - 1) / VW, T == 1 && c->flag /* as gru_fold_one_step */};
    const int nth = FN(loop_threads)(3, T, B, H, x.nblk, x.folded);
    pyrnn_team(nth, FN(gru_backward_team), &x);

    // 2. weight gradients and dx, each one GEMM over all steps (those asked for)
    real *bpack = x.r.tail.bpack;
    if (x.folded && c->dh0)  /* onto dh0's z part */
        FN(unfold_one_step)(c, 3, x.r.dgh, 1, bpack);
    FN(input_grads)(TB, I, 3 * H, x.r.dgx, c->w_ih, c->x, c->dx, c->dw_ih, bpack);
    if (c->flag) {
        if (c->dw_hh)
            FN(gemm_run)(3 * H, H, TB, x.r.dgh, 1, 3 * H, x.r.hprev, H, 1, c->dw_hh, H, 0,
                         bpack);
        FN(bias_grads)(TB, 3 * H, x.r.dgx, c->db_ih, NULL);
        FN(bias_grads)(TB, 3 * H, x.r.dgh, c->db_hh, NULL);
    } else {
        if (c->dw_hh) {
            FN(gemm_run)(2 * H, H, TB, x.r.dgh, 1, 3 * H, x.r.hprev, H, 1, c->dw_hh, H, 0,
                         bpack);
            FN(gemm_run)(H, H, TB, x.r.dgh + 2 * H, 1, 3 * H, x.r.extra, H, 1,
                         c->dw_hh + 2 * H * H, H, 0, bpack);
        }
        FN(bias_grads)(TB, 3 * H, x.r.dgx, c->db_ih, c->db_hh);
    }
}
