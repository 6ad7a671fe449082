/* The argument block of one kernel call and the table of kernels for one instruction set,
 * written over `real` (float or double) with suffix SFX (f32 or f64); included by common.h
 * once per data type. No include guard on purpose. */

/* Everything a cell's forward or backward gets, already validated by the public entry point.
 * Pointers are NULL where the public API allows it (h0, c0, dh_n, dc_n, biases, lengths). */
struct PYRNN_CAT(pyrnn_call_, SFX) {
    int64_t T, B, I, H;
    int reverse, training;
    int flag;                      /* rnn: relu; gru: reset_after; lstm: unused */
    const real *x;                 /* [T,B,I] */
    const real *h0, *c0;           /* [B,H] */
    const real *w_ih, *w_hh;       /* [G*H,I], [G*H,H] */
    const real *b_ih, *b_hh;       /* [G*H] */
    const int64_t *lengths;        /* [B] */
    const real *dy;                /* [T,B,H] */
    const real *dh_n, *dc_n;       /* [B,H] */
    real *y, *h_n, *c_n;           /* [T,B,H], [B,H], [B,H] */
    real *dx, *dh0, *dc0;          /* [T,B,I], [B,H], [B,H] */
    real *dw_ih, *dw_hh;           /* [G*H,I], [G*H,H] */
    real *db_ih, *db_hh;           /* [G*H] */
    real *workspace;
};

/* One instruction set's kernels for one data type (isa_*.c fill these). */
struct PYRNN_CAT(pyrnn_kernels_, SFX) {
    const char *isa;
    void (*rnn_forward)(const struct PYRNN_CAT(pyrnn_call_, SFX) *c);
    void (*rnn_backward)(const struct PYRNN_CAT(pyrnn_call_, SFX) *c);
    void (*lstm_forward)(const struct PYRNN_CAT(pyrnn_call_, SFX) *c);
    void (*lstm_backward)(const struct PYRNN_CAT(pyrnn_call_, SFX) *c);
    void (*gru_forward)(const struct PYRNN_CAT(pyrnn_call_, SFX) *c);
    void (*gru_backward)(const struct PYRNN_CAT(pyrnn_call_, SFX) *c);
    /* y = sigmoid(x) (kind 0) or tanh(x) (kind 1), the vectorised activations of the cells */
    void (*activation)(int kind, int64_t n, const real *x, real *y);
};
