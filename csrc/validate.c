/* The checks every public entry point makes before it calls a kernel. */
#include "common.h"

int pyrnn_check_call(int64_t T, int64_t B, int64_t I, int64_t H, const void *const *required,
                     int n_required, const void *b_ih, const void *b_hh,
                     const int64_t *lengths)
{
    const int st = pyrnn_check_sizes(T, B, I, H);
    if (st != PYRNN_OK) return st;
    for (int k = 0; k < n_required; k++)
        if (!required[k]) return PYRNN_ERR_NULL;
    if ((b_ih == NULL) != (b_hh == NULL)) return PYRNN_ERR_NULL;
    if (lengths)
        for (int64_t b = 0; b < B; b++)
            if (lengths[b] < 1 || lengths[b] > T) return PYRNN_ERR_LENGTHS;
    return PYRNN_OK;
}

int pyrnn_activation_f32(int kind, int64_t n, const float *x, float *y)
{
    if (kind != 0 && kind != 1) return PYRNN_ERR_ARGUMENT;
    if (n < 0) return PYRNN_ERR_SIZE;
    if (n > 0 && (!x || !y)) return PYRNN_ERR_NULL;
    pyrnn_kernels_f32()->activation(kind, n, x, y);
    return PYRNN_OK;
}

int pyrnn_activation_f64(int kind, int64_t n, const double *x, double *y)
{
    if (kind != 0 && kind != 1) return PYRNN_ERR_ARGUMENT;
    if (n < 0) return PYRNN_ERR_SIZE;
    if (n > 0 && (!x || !y)) return PYRNN_ERR_NULL;
    pyrnn_kernels_f64()->activation(kind, n, x, y);
    return PYRNN_OK;
}
