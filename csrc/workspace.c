/* Workspace sizes: the only place they are computed. The layouts are documented next to each
 * cell (rnn.c, lstm.c, gru.c) and mirrored by pyrnn/ref (a test checks they agree). */
#include "pyrnn.h"

static int sizes_ok(int64_t T, int64_t B, int64_t I, int64_t H)
{
    /* keep T*B*11*H far from overflowing int64 */
    const int64_t cap = (int64_t)1 << 40;
    return T >= 1 && B >= 1 && I >= 1 && H >= 1 && T < cap && B < cap && I < cap && H < cap &&
           (double)T * (double)B * (double)H * 16.0 < (double)((int64_t)1 << 62);
}

int64_t pyrnn_rnn_workspace_len(int64_t T, int64_t B, int64_t I, int64_t H, int training)
{
    if (!sizes_ok(T, B, I, H)) return -1;
    return training ? 3 * T * B * H + B * H : T * B * H;
}

int64_t pyrnn_lstm_workspace_len(int64_t T, int64_t B, int64_t I, int64_t H, int training)
{
    if (!sizes_ok(T, B, I, H)) return -1;
    return training ? 11 * T * B * H + 2 * B * H : 4 * T * B * H;
}

int64_t pyrnn_gru_workspace_len(int64_t T, int64_t B, int64_t I, int64_t H, int training,
                                int reset_after)
{
    if (!sizes_ok(T, B, I, H)) return -1;
    if (!training) return 3 * T * B * H + 3 * B * H;
    return (reset_after ? 11 : 8) * T * B * H + 2 * B * H;
}
