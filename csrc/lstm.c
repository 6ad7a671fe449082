/* LSTM, one layer x one direction x T steps: the public entry points (checks, then the kernels
 * of the chosen instruction set in lstm_impl.h). Mirrors pyrnn/ref/lstm.py.
 *
 *     i, f, g, o = sigmoid, sigmoid, tanh, sigmoid of
 *                  (x_t @ w_ih^T + b_ih + h_{t-1} @ w_hh^T + b_hh)
 *     c_t = f * c_{t-1} + i * g;   h_t = o * tanh(c_t)
 *
 * Workspace layout (elements of the data type, from the workspace's first 64-byte boundary;
 * Hp = H rounded up to a multiple of 32):
 *   training:  gates [T,B,4H]   activated i, f, g, o of every step
 *              hprev [T,B,H]    the hidden state entering every step
 *              cprev [T,B,H]    the cell state entering every step
 *              tanh_c [T,B,H]   tanh(c_t) of every step
 *              dgates [T,B,4H]  backward: gradient of the pre-activations
 *              dh, dc [B,H]     backward: gradients of the carried states
 *   inference: gates [T,B,4H+RS]  the input projection, then the activations (RS =
 *                               PYRNN_ROW_SKEW elements at the end of each row are not used;
 *                               batch 1 has rows of 4H, one a step, and leaves the rest)
 *              hbuf, cbuf [2][B*H+SS]  the states, double-buffered across steps, each buffer
 *                               [B,H] then SS = PYRNN_STATE_SKEW elements not used
 *   then, both: acc [4*B*Hp]    the recurrent sums of the current step, per unit block
 *              tbuf [2,4H,B]    the hidden state (forward) or dgates (backward), transposed
 *                               (not at batch 1, whose rows are their own transposes)
 *              wpack [4*Hp*H]   w_hh packed per unit block: tiles of the 4 gates of the same
 *                               units (forward), panels (backward)
 *              bpack [256*roundup(max(4H, I), 32)]  the GEMMs' packed panels */
#include "common.h"

#define LSTM_API(real, SFX)                                                                     \
    int pyrnn_lstm_forward_##SFX(int64_t T, int64_t B, int64_t I, int64_t H, int reverse,       \
                                 int training, const real *x, const real *h0, const real *c0,   \
                                 const real *w_ih, const real *w_hh, const real *b_ih,          \
                                 const real *b_hh, const int64_t *lengths, real *y, real *h_n,  \
                                 real *c_n, real *workspace)                                    \
    {                                                                                           \
        const void *required[] = {x, w_ih, w_hh, y, h_n, c_n, workspace};                       \
        const int st = pyrnn_check_call(T, B, I, H, required, 7, b_ih, b_hh, lengths);          \
        if (st != PYRNN_OK) return st;                                                          \
        const struct pyrnn_call_##SFX c = {                                                     \
            .T = T, .B = B, .I = I, .H = H, .reverse = !!reverse, .training = !!training,       \
            .x = x, .h0 = h0, .c0 = c0, .w_ih = w_ih, .w_hh = w_hh, .b_ih = b_ih,               \
            .b_hh = b_hh, .lengths = lengths, .y = y, .h_n = h_n, .c_n = c_n,                   \
            .workspace = workspace};                                                            \
        pyrnn_kernels_##SFX()->lstm_forward(&c);                                                \
        return PYRNN_OK;                                                                        \
    }                                                                                           \
                                                                                                \
    int pyrnn_lstm_backward_##SFX(int64_t T, int64_t B, int64_t I, int64_t H, int reverse,      \
                                  const real *x, const real *h0, const real *c0,                \
                                  const real *w_ih, const real *w_hh, const real *b_ih,         \
                                  const real *b_hh, const int64_t *lengths, const real *dy,     \
                                  const real *dh_n, const real *dc_n, real *dx, real *dh0,      \
                                  real *dc0, real *dw_ih, real *dw_hh, real *db_ih,             \
                                  real *db_hh, real *workspace)                                 \
    {                                                                                           \
        const void *required[] = {x, w_ih, w_hh, dy, workspace};                                \
        const int st = pyrnn_check_call(T, B, I, H, required, 5, b_ih, b_hh, lengths);          \
        if (st != PYRNN_OK) return st;                                                          \
        const struct pyrnn_call_##SFX c = {                                                     \
            .T = T, .B = B, .I = I, .H = H, .reverse = !!reverse, .training = 1, .x = x,        \
            .h0 = h0, .c0 = c0, .w_ih = w_ih, .w_hh = w_hh, .b_ih = b_ih, .b_hh = b_hh,         \
            .lengths = lengths, .dy = dy, .dh_n = dh_n, .dc_n = dc_n, .dx = dx, .dh0 = dh0,     \
            .dc0 = dc0, .dw_ih = dw_ih, .dw_hh = dw_hh, .db_ih = b_ih ? db_ih : NULL,           \
            .db_hh = b_ih ? db_hh : NULL, .workspace = workspace};                              \
        pyrnn_kernels_##SFX()->lstm_backward(&c);                                               \
        return PYRNN_OK;                                                                        \
    }

LSTM_API(float, f32)
LSTM_API(double, f64)
