/* LSTM forward and backward for one instruction set and data type (layout: lstm.c).
 * Mirrors pyrnn/ref/lstm.py: same local names, same numbered steps. Included by
 * kernels_impl.h. No include guard on purpose. */

struct FN(lstm_regions) {
    real *gates, *hprev, *cprev, *tanh_c, *dgates, *dh, *dc, *hbuf, *cbuf;
    int64_t gates_ld;  /* elements from one row of gates to the next (lstm.c) */
    struct FN(tail) tail;
};

static struct FN(lstm_regions) FN(lstm_carve)(real *ws, int64_t T, int64_t B, int64_t H,
                                              int training)
{
    ws = FN(align64)(ws);  /* the head on a 64-byte boundary too (workspace.c's slack) */
    struct FN(lstm_regions) r = {0};
    const int64_t TBH = T * B * H;
    r.gates = ws;
    if (training) {
        r.hprev = ws + 4 * TBH;
        r.cprev = ws + 5 * TBH;
        r.tanh_c = ws + 6 * TBH;
        r.dgates = ws + 7 * TBH;
        r.dh = ws + 11 * TBH;
        r.dc = r.dh + B * H;
        r.tail = FN(carve_tail)(r.dc + B * H, B, H, 4, T == 1);
        r.gates_ld = 4 * H;
    } else {
        const int64_t state = B * H + PYRNN_STATE_SKEW;
        r.gates_ld = B > 1 ? 4 * H + PYRNN_ROW_SKEW : 4 * H;  /* one row a step: no sets shared */
        r.hbuf = ws + T * B * r.gates_ld;
        r.cbuf = r.hbuf + 2 * state;
        r.tail = FN(carve_tail)(r.cbuf + 2 * state, B, H, 4, T == 1);
    }
    return r;
}

struct FN(lstm_ctx) {
    const struct PYRNN_CAT(pyrnn_call_, SFX) *c;
    struct FN(lstm_regions) r;
    int64_t nblk;
    int folded;  /* the one step's product is in gates already (fold_one_step) */
};

/* The hidden (which = 0) or cell (1) state entering the s-th visited step. */
static inline real *FN(lstm_state)(const struct FN(lstm_ctx) *x, int which, int64_t s)
{
    const struct PYRNN_CAT(pyrnn_call_, SFX) *c = x->c;
    if (c->training)
        return (which ? x->r.cprev : x->r.hprev) + FN(step_at)(c->T, c->reverse, s) * c->B * c->H;
    return (which ? x->r.cbuf : x->r.hbuf) + (s & 1) * (c->B * c->H + PYRNN_STATE_SKEW);
}

/* What the pointwise update of one unit block needs for every row of one step (pointers at the
 * block's first unit). */
struct FN(lstm_rows) {
    const int64_t *lengths;
    int64_t t;
    real *gates;                 /* [B,ld] gates[t]: the input projection (and bias) in */
    int64_t ld;                  /* gates' row stride (gates_ld) */
    const real *gh;              /* [B][i,f,g,o][VW] h_prev @ w_hh^T */
    const real *c_prev, *h_prev; /* [B,H] */
    real *h, *cs, *y;            /* [B,H] the next states, y[t] */
    int64_t H;
    V bias[4];                   /* b_ih + b_hh of the block (zeros without bias) */
    real *acts;                  /* [B,4H] where the activations go: gates (training) or ... */
    int64_t acts_row, acts_gate; /* ... scratch vectors: strides of a row and a gate, or 0, VW */
    real *tanh_c;                /* [B,H] tanh(c) of step t, or a scratch vector ... */
    int64_t tanh_c_stride;       /* ... H, or 0 for the scratch */
    const real *pf_gates, *pf_y; /* the next visit's rows, prefetched as we go */
    int64_t pf_n;
};

/* The fused LSTM update of row b of one unit block (n <= VW units): no branches, so the
 * compiler can interleave two rows' dependency chains (sigmoid and tanh are long ones). */
static inline __attribute__((always_inline)) void FN(lstm_row)(const struct FN(lstm_rows) *rw,
                                                               int64_t b, int64_t n)
{
    const int64_t H = rw->H, G = 4, at = b * H;
    for (int k = 0; k < G; k++)
        FN(prefetch)(rw->pf_gates + b * rw->ld + k * H, rw->pf_n, 0);
    FN(prefetch)(rw->pf_y + at, rw->pf_n, 1);
    real *g4 = rw->gates + b * rw->ld;
    V pre[4];
    for (int k = 0; k < G; k++)
        pre[k] = (FN(vload_n)(g4 + k * H, n) + rw->bias[k]) + FN(vload)(rw->gh + (b * G + k) * VW);
    const V i = FN(vsigmoid)(pre[0]), f = FN(vsigmoid)(pre[1]);
    const V g = FN(vtanh)(pre[2]), o = FN(vsigmoid)(pre[3]);
    const V cp = FN(vload_n)(rw->c_prev + at, n);
    const V c_new = f * cp + i * g;
    const V tc = FN(vtanh)(c_new);
    real *a4 = rw->acts + b * rw->acts_row;
    FN(vstore_n)(a4, i, n);
    FN(vstore_n)(a4 + rw->acts_gate, f, n);
    FN(vstore_n)(a4 + 2 * rw->acts_gate, g, n);
    FN(vstore_n)(a4 + 3 * rw->acts_gate, o, n);
    FN(vstore_n)(rw->tanh_c + b * rw->tanh_c_stride, tc, n);
    const VI zero = {0};
    const VI ok = zero - (ireal)FN(valid)(rw->lengths, b, rw->t);  /* all bits set if valid */
    const V hv = FN(vselect)(ok, o * tc, FN(vload_n)(rw->h_prev + at, n));
    FN(vstore_n)(rw->h + at, hv, n);
    FN(vstore_n)(rw->cs + at, FN(vselect)(ok, c_new, cp), n);
    FN(vstore_n)(rw->y + at, FN(vselect)(ok, hv, FN(vdup)(0)), n);
}

/* b_ih + b_hh of the 4 gates of unit block u (zeros without bias). */
static inline void FN(lstm_block_bias)(const struct PYRNN_CAT(pyrnn_call_, SFX) *c, int64_t u,
                                       V *bias)
{
    for (int k = 0; k < 4; k++) bias[k] = FN(block_bias)(c, k, u);
}

/* A thread's blocks whose bias sums batch 1 takes once a call rather than every step (8 KiB of
 * stack with AVX2): the two loads a gate from arrays that the streaming weights evict from L1
 * were on a step's path (LSTM 100x1x32x64 inference 3-5% faster, benchmarks/RESULTS.md). */
#define LSTM_HELD_BIAS_BLOCKS 64

/* The recurrent product of the ui-th block a thread visits in step s (of its blocks [u0, u1)),
 * and the rows of its pointwise update in *rw (scratch: 5 vectors); returns the block's unit
 * count n. held: the bias sums of blocks [u0, u1) (4 vectors a block), or NULL. */
static inline int64_t FN(lstm_block)(const struct FN(lstm_ctx) *x, int64_t s, int64_t u0,
                                     int64_t u1, int64_t ui, const real *hT_prev,
                                     const real *h_prev, const real *c_prev, real *h, real *cs,
                                     V *scratch, struct FN(lstm_rows) *rw, const V *held,
                                     int summed)
{
    const struct PYRNN_CAT(pyrnn_call_, SFX) *c = x->c;
    const int64_t T = c->T, B = c->B, H = c->H, G = 4, t = FN(step_at)(T, c->reverse, s);
    const int64_t u = FN(block_at)(u0, u1, s, ui);
    const int64_t ju = u * VW, n = H - ju < VW ? H - ju : VW;
    real *gates = x->r.gates, *wpack = x->r.tail.wpack;
    real *gh = x->r.tail.acc + u * B * G * VW;  /* [B][i,f,g,o][VW] h_prev @ w_hh^T */
    const int64_t nu = FN(next_block)(u0, u1, s, ui);
    if (x->folded || summed) {
        /* the one step's sums are in gates already, and gh reads zeros (fold_one_step); or
         * products_in_groups has put this step's sums in gh */
    } else if (B > 1) {
        FN(recur_tile)(B, G, H, hT_prev, wpack + u * H * G * VW, gh, c->lengths, t,
                       nu < 0 ? NULL : wpack + nu * H * G * VW);
    } else {
        FN(tiles_product_b1)(G, H, hT_prev, wpack, H, 0, u, u + 1, x->r.tail.acc, G * VW,
                             c->lengths, t);
    }
    /* field by field: an initializer would zero the whole struct first, with a `rep stos` that
     * cost batch 1 about 10 ns a block */
    rw->lengths = c->lengths;
    rw->t = t;
    const int64_t ld = x->r.gates_ld;
    rw->ld = ld;
    rw->gates = gates + t * B * ld + ju;
    rw->gh = gh;
    rw->c_prev = c_prev + ju;
    rw->h_prev = h_prev + ju;
    rw->h = h + ju;
    rw->cs = cs + ju;
    rw->y = c->y + t * B * H + ju;
    rw->H = H;
    /* inference keeps neither the activations nor tanh(c): they go to scratch vectors */
    rw->acts = c->training ? rw->gates : (real *)scratch;
    rw->acts_row = c->training ? ld : 0;
    rw->acts_gate = c->training ? H : VW;
    rw->tanh_c = c->training ? x->r.tanh_c + t * B * H + ju : (real *)(scratch + 4);
    rw->tanh_c_stride = c->training ? H : 0;
    if (held)
        for (int k = 0; k < G; k++) rw->bias[k] = held[(u - u0) * G + k];
    else
        FN(lstm_block_bias)(c, u, rw->bias);
    int64_t pu;
    const int64_t pt = FN(next_visit)(T, c->reverse, u0, u1, s, ui, &pu);
    rw->pf_gates = gates + (pt < 0 ? t : pt) * B * ld + pu * VW;
    rw->pf_y = c->y + (pt < 0 ? t : pt) * B * H + pu * VW;
    rw->pf_n = H - pu * VW < VW ? H - pu * VW : VW;
    return n;
}

static void FN(lstm_forward_team)(void *vctx, int tid, int nth)
{
    const struct FN(lstm_ctx) *x = vctx;
    const struct PYRNN_CAT(pyrnn_call_, SFX) *c = x->c;
    const int64_t T = c->T, B = c->B, H = c->H, G = 4;
    real *hT = x->r.tail.tbuf;
    int64_t u0, u1, j0, j1;
    FN(own_blocks)(x->nblk, tid, nth, &u0, &u1);
    FN(own_units)(H, u0, u1, &j0, &j1);
    if (!x->folded) FN(pack_tiles)(c->w_hh, H, G, VW, u0, u1, x->r.tail.wpack);
    FN(init_state)(c->h0, B, H, j0, j1, FN(lstm_state)(x, 0, 0), B > 1 ? hT : NULL);
    FN(init_state)(c->c0, B, H, j0, j1, FN(lstm_state)(x, 1, 0), NULL);
    V held_bias[LSTM_HELD_BIAS_BLOCKS * G];
    const int hold = B == 1 && u1 - u0 <= LSTM_HELD_BIAS_BLOCKS;
    for (int64_t u = u0; u < u1 && hold; u++)
        FN(lstm_block_bias)(c, u, held_bias + (u - u0) * G);
    pyrnn_barrier(nth);

    // 2. time loop: recurrent product and the fused pointwise update
    for (int64_t s = 0; s < T; s++) {
        const real *h_prev = FN(lstm_state)(x, 0, s), *c_prev = FN(lstm_state)(x, 1, s);
        real *h = s + 1 < T ? FN(lstm_state)(x, 0, s + 1) : c->h_n;
        real *cs = s + 1 < T ? FN(lstm_state)(x, 1, s + 1) : c->c_n;
        /* batch 1's state is its own transpose: the products read it where it is */
        const real *hT_prev = B == 1 ? h_prev : hT + (s & 1) * H * B;
        real *hT_next = hT + ((s + 1) & 1) * H * B;
        const int summed = !x->folded &&
                           FN(products_in_groups)(B, G, H, hT_prev, x->r.tail.wpack, H * G * VW,
                                                  x->r.tail.acc, B * G * VW, c->lengths,
                                                  FN(step_at)(T, c->reverse, s), u0, u1, s);
        for (int64_t ui = 0; ui < u1 - u0;) {
            /* batch 1 takes blocks two at a time: their one row each interleave as two rows of
             * a block do (the pointwise update's chains are long: sigmoid, then tanh(c)) */
            const int64_t nb = B == 1 && ui + 1 < u1 - u0 ? 2 : 1;
            struct FN(lstm_rows) rw[2];
            V scratch[2][5];  /* where what inference does not keep goes */
            int64_t n[2];
            for (int64_t k = 0; k < nb; k++)
                n[k] = FN(lstm_block)(x, s, u0, u1, ui + k, hT_prev, h_prev, c_prev, h, cs,
                                      scratch[k], &rw[k], hold ? held_bias : NULL, summed);
            if (nb == 2 && n[0] == VW && n[1] == VW) {
                FN(lstm_row)(&rw[0], 0, VW);
                FN(lstm_row)(&rw[1], 0, VW);
            } else {
                for (int64_t k = 0; k < nb; k++) {
                    if (n[k] == VW) {  /* whole vectors: rows two at a time, likewise */
                        int64_t b = 0;
                        for (; b + 2 <= B; b += 2) {
                            FN(lstm_row)(&rw[k], b, VW);
                            FN(lstm_row)(&rw[k], b + 1, VW);
                        }
                        for (; b < B; b++) FN(lstm_row)(&rw[k], b, VW);
                    } else {
                        for (int64_t b = 0; b < B; b++) FN(lstm_row)(&rw[k], b, n[k]);
                    }
                }
            }
            for (int64_t k = 0; k < nb && B > 1; k++) {
                const int64_t ju = FN(block_at)(u0, u1, s, ui + k) * VW;
                FN(transpose_rows)(h + ju, H, B, n[k], ju, hT_next);
            }
            ui += nb;
        }
        if (s + 1 < T) pyrnn_barrier(nth);
    }
}

static void FN(lstm_forward)(const struct PYRNN_CAT(pyrnn_call_, SFX) *c)
{
    const int64_t T = c->T, B = c->B, I = c->I, H = c->H;
    struct FN(lstm_ctx) x = {c, FN(lstm_carve)(c->workspace, T, B, H, c->training),
                             (H + VW - 1) / VW};
    // 1. input projection for all steps as one GEMM: gates = x @ w_ih^T (+ b_ih + b_hh, added
    //    in the time loop)
    FN(gemm_run)(T * B, 4 * H, I, c->x, I, 1, c->w_ih, 1, I, x.r.gates, x.r.gates_ld, 0,
                 x.r.tail.bpack);
    x.folded = FN(fold_one_step)(c, 4, x.r.gates, x.r.gates_ld, x.r.tail.acc, x.r.tail.bpack);
    const int nth = FN(loop_threads)(4, T, B, H, x.nblk, x.folded);
    pyrnn_team(nth, FN(lstm_forward_team), &x);
}

/* One row's block of n units of gate gradients (cell_common.h dgate_fn for the indexes). dc
 * becomes the gradient carried to c_prev where the step is valid for the row (ok); dgates 0
 * where it is not. */
static inline __attribute__((always_inline)) void FN(lstm_dgate)(
    const void *vx, int ok, int64_t n, int64_t hb, int64_t at, int64_t at4)
{
    const struct FN(lstm_ctx) *x = vx;
    const struct PYRNN_CAT(pyrnn_call_, SFX) *c = x->c;
    const int64_t H = c->H;
    const real *gates = x->r.gates;
    V d_pre[4] = {FN(vdup)(0), FN(vdup)(0), FN(vdup)(0), FN(vdup)(0)};
    if (ok) {
        const V i = FN(vload_n)(gates + at4, n), f = FN(vload_n)(gates + at4 + H, n);
        const V g = FN(vload_n)(gates + at4 + 2 * H, n), o = FN(vload_n)(gates + at4 + 3 * H, n);
        const V tc = FN(vload_n)(x->r.tanh_c + at, n), c_prev = FN(vload_n)(x->r.cprev + at, n);
        const V dh_t = FN(vload_n)(x->r.dh + hb, n) + FN(vload_n)(c->dy + at, n);
        const V dc_t = FN(vload_n)(x->r.dc + hb, n) + dh_t * o * ((real)1 - tc * tc);
        d_pre[0] = dc_t * g * (i * ((real)1 - i));
        d_pre[1] = dc_t * c_prev * (f * ((real)1 - f));
        d_pre[2] = dc_t * i * ((real)1 - g * g);
        d_pre[3] = dh_t * tc * (o * ((real)1 - o));
        FN(vstore_n)(x->r.dc + hb, dc_t * f, n);
    }
    for (int k = 0; k < 4; k++) FN(vstore_n)(x->r.dgates + at4 + k * H, d_pre[k], n);
}

static inline __attribute__((always_inline)) void FN(lstm_prefetch_row)(
    const void *vx, int64_t at, int64_t at4, int64_t n)
{
    const struct FN(lstm_ctx) *x = vx;
    for (int k = 0; k < 4; k++) {
        FN(prefetch)(x->r.gates + at4 + k * x->c->H, n, 0);
        FN(prefetch)(x->r.dgates + at4 + k * x->c->H, n, 1);
    }
    FN(prefetch)(x->r.tanh_c + at, n, 0);
    FN(prefetch)(x->r.cprev + at, n, 0);
    FN(prefetch)(x->c->dy + at, n, 0);
}

static void FN(lstm_backward_team)(void *vctx, int tid, int nth)
{
    const struct FN(lstm_ctx) *x = vctx;
    const struct PYRNN_CAT(pyrnn_call_, SFX) *c = x->c;
    const int64_t T = c->T, B = c->B, H = c->H, G = 4;
    real *dgates = x->r.dgates, *dh = x->r.dh, *dc = x->r.dc;
    real *acc = x->r.tail.acc, *wpack = x->r.tail.wpack;
    int64_t u0, u1, j0, j1;
    FN(own_blocks)(x->nblk, tid, nth, &u0, &u1);
    FN(own_units)(H, u0, u1, &j0, &j1);
    const int64_t q0 = u0 / 2, q1 = (u1 + 1) / 2;  /* the pairs of blocks */
    if (!x->folded) FN(pack_panels)(c->w_hh, G * H, H, 2 * VW, q0, q1, wpack);
    FN(init_state)(c->dh_n, B, H, j0, j1, dh, NULL);
    FN(init_state)(c->dc_n, B, H, j0, j1, dc, NULL);

    // 1. reverse time loop: dgates[t] and the carried gradients only
    for (int64_t s = 0; s < T; s++) {
        const int64_t t = FN(step_at)(T, !c->reverse, s);
        /* batch 1's gate gradients are their own transpose, as the forward's state is */
        real *dgT = B == 1 ? dgates + t * G * H : x->r.tail.tbuf + (s & 1) * G * H * B;
        // forward was: c = f*c_prev + i*g; h = o*tanh(c); both kept only where the step is valid
        if (B == 1)
            FN(dgates_b1)(x, c, G, FN(lstm_dgate), t, j0, j1);
        else
            FN(dgates_batch)(x, c, G, FN(lstm_dgate), FN(lstm_prefetch_row), dgates, 0, s,
                             t, u0, u1, dgT);
        pyrnn_barrier(nth);
        if (!x->folded && (s + 1 < T || c->dh0))
            FN(dh_update)(c, t, x->nblk, q0, q1, s, G * H, G * H, dgT, wpack, acc, dh, 0);
    }
    for (int64_t b = 0; b < B; b++) {
        if (!x->folded && c->dh0)
            memcpy(c->dh0 + b * H + j0, dh + b * H + j0, (size_t)(j1 - j0) * sizeof(real));
        if (c->dc0)
            memcpy(c->dc0 + b * H + j0, dc + b * H + j0, (size_t)(j1 - j0) * sizeof(real));
    }
}

static void FN(lstm_backward)(const struct PYRNN_CAT(pyrnn_call_, SFX) *c)
{
    const int64_t T = c->T, B = c->B, I = c->I, H = c->H;
    struct FN(lstm_ctx) x = {c, FN(lstm_carve)(c->workspace, T, B, H, 1), (H + VW - 1) / VW,
                             T == 1 /* as the forward's fold_one_step */};
    const int nth = FN(loop_threads)(4, T, B, H, x.nblk, x.folded);
    pyrnn_team(nth, FN(lstm_backward_team), &x);

    // 2. weight gradients and dx, each one GEMM over all steps (those asked for)
    real *bpack = x.r.tail.bpack;
    if (x.folded && c->dh0) FN(unfold_one_step)(c, 4, x.r.dgates, 0, bpack);
    FN(input_grads)(T * B, I, 4 * H, x.r.dgates, c->w_ih, c->x, c->dx, c->dw_ih, bpack);
    if (c->dw_hh)
        FN(gemm_run)(4 * H, H, T * B, x.r.dgates, 1, 4 * H, x.r.hprev, H, 1, c->dw_hh, H, 0,
                     bpack);
    FN(bias_grads)(T * B, 4 * H, x.r.dgates, c->db_ih, c->db_hh);
}
