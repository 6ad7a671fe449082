/* GRU, one layer x one direction x T steps, both variants: the public entry points (checks,
 * then the kernels of the chosen instruction set in gru_impl.h). Mirrors pyrnn/ref/gru.py.
 *
 *     r = sigmoid(W_ir x + b_ir + W_hr h + b_hr);  z = sigmoid(W_iz x + b_iz + W_hz h + b_hz)
 *     reset_after=True  (PyTorch, cuDNN):  n = tanh(W_in x + b_in + r * (W_hn h + b_hn))
 *     reset_after=False (Cho et al. 2014): n = tanh(W_in x + b_in + W_hn (r * h) + b_hn)
 *     h' = (1 - z) * n + z * h
 *
 * Workspace layout (elements of the data type, from the workspace's first 64-byte boundary;
 * Hp = H rounded up to a multiple of 32):
 *   training:  gates [T,B,3H]  activated r, z, n of every step
 *              extra [T,B,H]   reset_after: W_hn h + b_hn;  reset_before: r * h
 *              hprev [T,B,H]   the state entering every step
 *              dgx [T,B,3H]    backward: gradient of the input-side pre-activations
 *              dgh [T,B,3H]    backward, reset_after only: gradient of h @ w_hh^T + b_hh
 *              dh [B,H]        backward: gradient of the carried state
 *              drh [B,H]       backward, reset_before only: gradient of r * h
 *   inference: gates [T,B,3H]  the input projection, then the activations
 *              hbuf [B,3H]     the state, double-buffered across steps (first 2*B*H)
 *   then, both: acc [3*B*Hp]   the recurrent sums of the current step, per unit block
 *              tbuf [2,3H,B]   forward: the state transposed (two steps; not at batch 1,
 *                              whose row is its own transpose) and r * h transposed;
 *                              backward: the gate gradients transposed (two steps; not at
 *                              batch 1)
 *              wpack [3*Hp*H]  w_hh packed per unit block: forward tiles of r, z, n
 *                              (reset_before: r, z tiles then n tiles), backward panels
 *              bpack [256*roundup(max(3H, I), 32)]  the GEMMs' packed panels */
#include "common.h"

#define GRU_API(real, SFX)                                                                      \
    int pyrnn_gru_forward_##SFX(int64_t T, int64_t B, int64_t I, int64_t H, int reverse,        \
                                int training, int reset_after, const real *x, const real *h0,   \
                                const real *w_ih, const real *w_hh, const real *b_ih,           \
                                const real *b_hh, const int64_t *lengths, real *y, real *h_n,   \
                                real *workspace)                                                \
    {                                                                                           \
        const void *required[] = {x, w_ih, w_hh, y, h_n, workspace};                            \
        const int st = pyrnn_check_call(T, B, I, H, required, 6, b_ih, b_hh, lengths);          \
        if (st != PYRNN_OK) return st;                                                          \
        const struct pyrnn_call_##SFX c = {                                                     \
            .T = T, .B = B, .I = I, .H = H, .reverse = !!reverse, .training = !!training,       \
            .flag = !!reset_after, .x = x, .h0 = h0, .w_ih = w_ih, .w_hh = w_hh, .b_ih = b_ih,  \
            .b_hh = b_hh, .lengths = lengths, .y = y, .h_n = h_n, .workspace = workspace};      \
        pyrnn_kernels_##SFX()->gru_forward(&c);                                                 \
        return PYRNN_OK;                                                                        \
    }                                                                                           \
                                                                                                \
    int pyrnn_gru_backward_##SFX(int64_t T, int64_t B, int64_t I, int64_t H, int reverse,       \
                                 int reset_after, const real *x, const real *h0,                \
                                 const real *w_ih, const real *w_hh, const real *b_ih,          \
                                 const real *b_hh, const int64_t *lengths, const real *dy,      \
                                 const real *dh_n, real *dx, real *dh0, real *dw_ih,            \
                                 real *dw_hh, real *db_ih, real *db_hh, real *workspace)        \
    {                                                                                           \
        const void *required[] = {x, w_ih, w_hh, dy, workspace};                                \
        const int st = pyrnn_check_call(T, B, I, H, required, 5, b_ih, b_hh, lengths);          \
        if (st != PYRNN_OK) return st;                                                          \
        const struct pyrnn_call_##SFX c = {                                                     \
            .T = T, .B = B, .I = I, .H = H, .reverse = !!reverse, .training = 1,                \
            .flag = !!reset_after, .x = x, .h0 = h0, .w_ih = w_ih, .w_hh = w_hh, .b_ih = b_ih,  \
            .b_hh = b_hh, .lengths = lengths, .dy = dy, .dh_n = dh_n, .dx = dx, .dh0 = dh0,     \
            .dw_ih = dw_ih, .dw_hh = dw_hh, .db_ih = b_ih ? db_ih : NULL,                       \
            .db_hh = b_ih ? db_hh : NULL, .workspace = workspace};                              \
        pyrnn_kernels_##SFX()->gru_backward(&c);                                                \
        return PYRNN_OK;                                                                        \
    }

GRU_API(float, f32)
GRU_API(double, f64)
