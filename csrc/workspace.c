/* Size checks and workspace sizes: the only place the sizes are computed. The layouts are
 * documented next to each cell (rnn.c, lstm.c, gru.c) and mirrored by pyrnn/ref (a test checks
 * that the lengths agree). */
#include "common.h"

int pyrnn_check_sizes(int64_t T, int64_t B, int64_t I, int64_t H)
{
    if (T < 1 || B < 1 || I < 1 || H < 1) return PYRNN_ERR_SIZE;
    /* every region offset (at most ~16*T*B*H + 12*H*H + I*H elements, in bytes) fits int64 */
    const double t = (double)T, b = (double)B, i = (double)I, h = (double)H + PYRNN_HPAD;
    const double elems = 16.0 * t * b * h + 12.0 * h * h + 4.0 * i * h + t * b * i;
    return elems * 8.0 < 0x1p62 ? PYRNN_OK : PYRNN_ERR_SIZE;
}

/* The regions every cell appends to the reference's (cell_common.h carves them): recurrent
 * sums of the current step [G*B*Hp], transposed states or gate gradients [2*G*H*B], packed
 * recurrent weights [G*Hp*H] (none in a call that folds its one step: it packs none), the
 * GEMMs' packed panels [pyrnn_bpack_len(G*H, I)], each aligned to 64 bytes. The cell's own
 * regions (the head) start on the workspace's first 64-byte boundary too, so rows that two
 * threads write share no cache line wherever H is a multiple of 16. The slack, 16 elements for
 * each of the four regions, covers all five starts: acc, wpack and bpack have lengths of whole
 * 64-byte lines, so only the head's start, the head's length and tbuf's length can each cost up
 * to 15 elements (45 at most; tests/test_c_kernels.py checks that a workspace at any offset is
 * never written past its end). */
static int64_t tail(int64_t B, int64_t I, int64_t H, int64_t G, int folds)
{
    const int64_t Hp = pyrnn_hpad(H);
    const int64_t slack = 4 * 16;  /* each region starts on a 64-byte boundary */
    return G * B * Hp + 2 * G * H * B + (folds ? 0 : G * Hp * H) + pyrnn_bpack_len(G * H, I) +
           slack;
}

int64_t pyrnn_rnn_workspace_len(int64_t T, int64_t B, int64_t I, int64_t H, int training)
{
    if (pyrnn_check_sizes(T, B, I, H) != PYRNN_OK) return -1;
    const int64_t inference = T * B * (H + PYRNN_ROW_SKEW) + 2 * (B * H + PYRNN_STATE_SKEW);
    return (training ? 3 * T * B * H + B * H : inference) + tail(B, I, H, 1, T == 1);
}

int64_t pyrnn_lstm_workspace_len(int64_t T, int64_t B, int64_t I, int64_t H, int training)
{
    if (pyrnn_check_sizes(T, B, I, H) != PYRNN_OK) return -1;
    const int64_t inference = T * B * (4 * H + PYRNN_ROW_SKEW) + 4 * (B * H + PYRNN_STATE_SKEW);
    return (training ? 11 * T * B * H + 2 * B * H : inference) + tail(B, I, H, 4, T == 1);
}

int64_t pyrnn_gru_workspace_len(int64_t T, int64_t B, int64_t I, int64_t H, int training,
                                int reset_after)
{
    if (pyrnn_check_sizes(T, B, I, H) != PYRNN_OK) return -1;
    const int64_t head = training ? (reset_after ? 11 : 8) * T * B * H + 2 * B * H
                                  : 3 * T * B * H + 3 * B * H;
    return head + tail(B, I, H, 3, T == 1 && reset_after);
}
