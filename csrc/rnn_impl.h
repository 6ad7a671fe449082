/* Elman RNN forward and backward for one instruction set and data type (layout: rnn.c).
 * Mirrors pyrnn/ref/rnn.py: same local names, same numbered steps. Included by
 * kernels_impl.h. No include guard on purpose. */

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
        r.tail = FN(carve_tail)(ws + 3 * TBH + B * H, B, H, 1);
        r.gates_ld = H;
    } else {
        const int64_t state = B * H + PYRNN_STATE_SKEW;
        r.gates_ld = B > 1 ? H + PYRNN_ROW_SKEW : H;  /* one row a step: no sets shared */
        r.hbuf = ws + T * B * r.gates_ld;
        r.tail = FN(carve_tail)(r.hbuf + 2 * state, B, H, 1);
    }
    return r;
}

struct FN(rnn_ctx) {
    const struct PYRNN_CAT(pyrnn_call_, SFX) *c;
    struct FN(rnn_regions) r;
    int64_t nblk;
};

/* The state entering the s-th visited step: hprev[t] when training, else a double buffer. */
static inline real *FN(rnn_state)(const struct FN(rnn_ctx) *x, int64_t s)
{
    const struct PYRNN_CAT(pyrnn_call_, SFX) *c = x->c;
    if (c->training) return x->r.hprev + FN(step_at)(c->T, c->reverse, s) * c->B * c->H;
    return x->r.hbuf + (s & 1) * (c->B * c->H + PYRNN_STATE_SKEW);
}

static void FN(rnn_forward_team)(void *vctx, int tid, int nth)
{
    const struct FN(rnn_ctx) *x = vctx;
    const struct PYRNN_CAT(pyrnn_call_, SFX) *c = x->c;
    const int64_t T = c->T, B = c->B, H = c->H;
    real *gates = x->r.gates, *acc = x->r.tail.acc, *wpack = x->r.tail.wpack;
    const int64_t ld = x->r.gates_ld;
    real *hT = x->r.tail.tbuf;
    int64_t u0, u1, j0, j1;
    FN(own_blocks)(x->nblk, tid, nth, &u0, &u1);
    FN(own_units)(H, u0, u1, &j0, &j1);
    const int64_t q0 = u0 / 2, q1 = (u1 + 1) / 2;  /* the pairs of blocks */
    FN(pack_tiles)(c->w_hh, H, 1, 2 * VW, q0, q1, wpack);
    FN(init_state)(c->h0, B, H, j0, j1, FN(rnn_state)(x, 0), B > 1 ? hT : NULL);
    pyrnn_barrier(nth);

    // 2. time loop: recurrent product and the fused pointwise update
    for (int64_t s = 0; s < T; s++) {
        const int64_t t = FN(step_at)(T, c->reverse, s);
        const int64_t t2 = s + 1 < T ? FN(step_at)(T, c->reverse, s + 1) : -1;
        const real *h_prev = FN(rnn_state)(x, s);
        real *h = s + 1 < T ? FN(rnn_state)(x, s + 1) : c->h_n;
        /* batch 1's state is its own transpose: the products read it where it is */
        const real *hT_prev = B == 1 ? h_prev : hT + (s & 1) * H * B;
        real *hT_next = hT + ((s + 1) & 1) * H * B;
        if (B == 1)  /* every pair's product first, several at once; then the updates */
            FN(tiles_product_b1)(2, H, h_prev, wpack, H, 0, q0, q1, acc, 2 * VW, c->lengths, t);
        for (int64_t qi = 0; qi < q1 - q0; qi++) {
            const int64_t q = FN(block_at)(q0, q1, s, qi);
            if (B > 1)
                FN(pair_product)(B, H, hT_prev, wpack, H, 0, q, FN(next_block)(q0, q1, s, qi),
                                 acc, c->lengths, t);
            for (int64_t u = 2 * q; u < 2 * q + 2 && u < x->nblk; u++) {
                const int64_t ju = u * VW, n = H - ju < VW ? H - ju : VW;
                /* [B][2*VW] h_prev @ w_hh^T for the pair's units; this block's half */
                const real *gh = acc + q * B * 2 * VW + (u - 2 * q) * VW;
                const V bias = c->b_ih ? FN(vload_n)(c->b_ih + ju, n) +
                                             FN(vload_n)(c->b_hh + ju, n)
                                       : FN(vdup)(0);
                for (int64_t b = 0; b < B; b++) {
                    if (t2 >= 0) {  /* this row of the next step's input projection and output */
                        FN(prefetch)(gates + (t2 * B + b) * ld + ju, n, 0);
                        FN(prefetch)(c->y + (t2 * B + b) * H + ju, n, 1);
                    }
                    real *g = gates + (t * B + b) * ld + ju;
                    V pre = FN(vload_n)(g, n);
                    if (c->b_ih) pre += bias;
                    pre += FN(vload)(gh + b * 2 * VW);
                    const V act = c->flag ? FN(vrelu)(pre) : FN(vtanh)(pre);
                    FN(vstore_n)(g, act, n);
                    const int ok = FN(valid)(c->lengths, b, t);
                    const V hv = ok ? act : FN(vload_n)(h_prev + b * H + ju, n);
                    FN(vstore_n)(h + b * H + ju, hv, n);
                    FN(vstore_n)(c->y + (t * B + b) * H + ju, ok ? act : FN(vdup)(0), n);
                }
                if (B > 1) FN(transpose_rows)(h + ju, H, B, n, ju, hT_next);
            }
        }
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
    const int nth = FN(loop_threads)(1, T, B, H, x.nblk);
    pyrnn_team(nth, FN(rnn_forward_team), &x);
}

static void FN(rnn_backward_team)(void *vctx, int tid, int nth)
{
    const struct FN(rnn_ctx) *x = vctx;
    const struct PYRNN_CAT(pyrnn_call_, SFX) *c = x->c;
    const int64_t T = c->T, B = c->B, H = c->H;
    const real *gates = x->r.gates;
    real *dgates = x->r.dgates, *dh = x->r.dh, *acc = x->r.tail.acc, *wpack = x->r.tail.wpack;
    int64_t u0, u1, j0, j1;
    FN(own_blocks)(x->nblk, tid, nth, &u0, &u1);
    FN(own_units)(H, u0, u1, &j0, &j1);
    const int64_t q0 = u0 / 2, q1 = (u1 + 1) / 2;  /* the pairs of blocks */
    FN(pack_panels)(c->w_hh, H, H, 2 * VW, q0, q1, wpack);
    FN(init_state)(c->dh_n, B, H, j0, j1, dh, NULL);

    // 1. reverse time loop: dgates[t] and the carried gradient only
    for (int64_t s = 0; s < T; s++) {
        const int64_t t = FN(step_at)(T, !c->reverse, s);
        /* batch 1's gate gradients are their own transpose, as the forward's state is */
        real *dgT = B == 1 ? dgates + t * H : x->r.tail.tbuf + (s & 1) * H * B;
        // forward was: gates[t] = act(gx + h_prev @ w_hh^T); h = valid ? gates[t] : h_prev
        for (int64_t ui = 0; ui < u1 - u0; ui++) {
            const int64_t u = FN(block_at)(u0, u1, s, ui);
            const int64_t ju = u * VW, n = H - ju < VW ? H - ju : VW;
            int64_t pu;
            const int64_t pt = FN(next_visit)(T, !c->reverse, u0, u1, s, ui, &pu);
            const int64_t pj = pu * VW, pn = H - pj < VW ? H - pj : VW;
            for (int64_t b = 0; b < B; b++) {
                if (pt >= 0) {  /* what this row of the next visit reads and writes */
                    const int64_t nat = (pt * B + b) * H + pj;
                    FN(prefetch)(gates + nat, pn, 0);
                    FN(prefetch)(dgates + nat, pn, 1);
                    FN(prefetch)(c->dy + nat, pn, 0);
                }
                const int64_t at = (t * B + b) * H + ju;
                V dg = FN(vdup)(0);
                if (FN(valid)(c->lengths, b, t)) {
                    const V y = FN(vload_n)(gates + at, n);
                    const V dh_t = FN(vload_n)(dh + b * H + ju, n) + FN(vload_n)(c->dy + at, n);
                    const V dact = c->flag ? FN(vselect)(y > FN(vdup)(0), FN(vdup)(1), FN(vdup)(0))
                                           : (real)1 - y * y;
                    dg = dh_t * dact;
                }
                FN(vstore_n)(dgates + at, dg, n);
            }
            if (B > 1) FN(transpose_rows)(dgates + t * B * H + ju, H, B, n, ju, dgT);
        }
        pyrnn_barrier(nth);
        FN(dh_update)(c, t, x->nblk, q0, q1, s, H, H, dgT, wpack, acc, dh, 0);
    }
    for (int64_t b = 0; b < B; b++)
        memcpy(c->dh0 + b * H + j0, dh + b * H + j0, (size_t)(j1 - j0) * sizeof(real));
}

static void FN(rnn_backward)(const struct PYRNN_CAT(pyrnn_call_, SFX) *c)
{
    const int64_t T = c->T, B = c->B, I = c->I, H = c->H;
    struct FN(rnn_ctx) x = {c, FN(rnn_carve)(c->workspace, T, B, H, 1), (H + VW - 1) / VW};
    const int nth = FN(loop_threads)(1, T, B, H, x.nblk);
    pyrnn_team(nth, FN(rnn_backward_team), &x);

    // 2. weight gradients and dx, each one GEMM over all steps
    real *bpack = x.r.tail.bpack;
    FN(input_grads)(T * B, I, H, x.r.dgates, c->w_ih, c->x, c->dx, c->dw_ih, c->db_ih, bpack);
    FN(gemm_run)(H, H, T * B, x.r.dgates, 1, H, x.r.hprev, H, 1, c->dw_hh, H, 0, bpack);
    if (c->db_ih) memcpy(c->db_hh, c->db_ih, (size_t)H * sizeof(real));
}
