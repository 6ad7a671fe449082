/* Elman RNN, one layer x one direction x T steps: the public entry points (checks, then the
 * kernels of the chosen instruction set in rnn_impl.h). Mirrors pyrnn/ref/rnn.py.
 *
 *     h_t = act(x_t @ w_ih^T + b_ih + h_{t-1} @ w_hh^T + b_hh),   act = tanh or relu
 *
 * Workspace layout (elements of the data type, from the workspace's first 64-byte boundary;
 * Hp = H rounded up to a multiple of 32):
 *   training:  gates [T,B,H]   act(...) of every step
 *              hprev [T,B,H]   the state entering every step
 *              dgates [T,B,H]  backward: gradient of the pre-activation
 *              dh [B,H]        backward: gradient of the carried state
 *   inference: gates [T,B,H+RS]  the input projection, then the activations (RS =
 *                              PYRNN_ROW_SKEW elements at the end of each row are not used;
 *                              batch 1 has rows of H, one a step, and leaves the rest)
 *              hbuf [2][B*H+SS]  the state, double-buffered across steps, each buffer [B,H]
 *                              then SS = PYRNN_STATE_SKEW elements not used
 *   then, both: acc [B*Hp]     the recurrent sums of the current step, per unit block
 *              tbuf [2,H,B]    the state (forward) or dgates (backward), transposed, two steps
 *                              (not at batch 1, whose rows are their own transposes)
 *              wpack [Hp*H]    w_hh packed per unit block (forward tiles, backward panels)
 *              bpack [256*roundup(max(H, I), 32)]  the GEMMs' packed panels */
#include "common.h"

#define RNN_API(real, SFX)                                                                      \
    int pyrnn_rnn_forward_##SFX(int64_t T, int64_t B, int64_t I, int64_t H, int reverse,        \
                                int training, int relu, const real *x, const real *h0,          \
                                const real *w_ih, const real *w_hh, const real *b_ih,           \
                                const real *b_hh, const int64_t *lengths, real *y, real *h_n,   \
                                real *workspace)                                                \
    {                                                                                           \
        const void *required[] = {x, w_ih, w_hh, y, h_n, workspace};                            \
        const int st = pyrnn_check_call(T, B, I, H, required, 6, b_ih, b_hh, lengths);          \
        if (st != PYRNN_OK) return st;                                                          \
        const struct pyrnn_call_##SFX c = {                                                     \
            .T = T, .B = B, .I = I, .H = H, .reverse = !!reverse, .training = !!training,       \
            .flag = !!relu, .x = x, .h0 = h0, .w_ih = w_ih, .w_hh = w_hh, .b_ih = b_ih,         \
            .b_hh = b_hh, .lengths = lengths, .y = y, .h_n = h_n, .workspace = workspace};      \
        pyrnn_kernels_##SFX()->rnn_forward(&c);                                                 \
        return PYRNN_OK;                                                                        \
    }                                                                                           \
                                                                                                \
    int pyrnn_rnn_backward_##SFX(int64_t T, int64_t B, int64_t I, int64_t H, int reverse,       \
                                 int relu, const real *x, const real *h0, const real *w_ih,     \
                                 const real *w_hh, const real *b_ih, const real *b_hh,          \
                                 const int64_t *lengths, const real *dy, const real *dh_n,      \
                                 real *dx, real *dh0, real *dw_ih, real *dw_hh, real *db_ih,    \
                                 real *db_hh, real *workspace)                                  \
    {                                                                                           \
        const void *required[] = {x, w_ih, w_hh, dy, workspace};                                \
        const int st = pyrnn_check_call(T, B, I, H, required, 5, b_ih, b_hh, lengths);          \
        if (st != PYRNN_OK) return st;                                                          \
        const struct pyrnn_call_##SFX c = {                                                     \
            .T = T, .B = B, .I = I, .H = H, .reverse = !!reverse, .training = 1,                \
            .flag = !!relu, .x = x, .h0 = h0, .w_ih = w_ih, .w_hh = w_hh, .b_ih = b_ih,         \
            .b_hh = b_hh, .lengths = lengths, .dy = dy, .dh_n = dh_n, .dx = dx, .dh0 = dh0,     \
            .dw_ih = dw_ih, .dw_hh = dw_hh, .db_ih = b_ih ? db_ih : NULL,                       \
            .db_hh = b_ih ? db_hh : NULL, .workspace = workspace};                              \
        pyrnn_kernels_##SFX()->rnn_backward(&c);                                                \
        return PYRNN_OK;                                                                        \
    }

RNN_API(float, f32)
RNN_API(double, f64)
