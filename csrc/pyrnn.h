/* pyrnn public C API.
 *
 * The section between PYRNN_CDEF_BEGIN and PYRNN_CDEF_END is read verbatim by ffi_build.py as the
 * cffi cdef, so it holds only plain declarations (no macros, no attributes).
 *
 * Conventions: sizes are int64_t; T steps, B batch, I input size, H hidden size. Arrays are
 * C-contiguous, time-major (x [T,B,I], y [T,B,H]), weights in PyTorch's layout. Every function
 * returns a status (0 = PYRNN_OK); kernels never allocate, print or abort.
 */
#ifndef PYRNN_H
#define PYRNN_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* PYRNN_CDEF_BEGIN */
enum {
    PYRNN_OK = 0,
    PYRNN_ERR_SIZE = 1,       /* a size is < 1 (or < 0 where 0 is allowed) or too large */
    PYRNN_ERR_NULL = 2,       /* a required pointer is NULL */
    PYRNN_ERR_LENGTHS = 3,    /* a length is outside 1..T */
    PYRNN_ERR_ARGUMENT = 4    /* a flag or count is out of range */
};

/* A static, human-readable description of a status. */
const char *pyrnn_status_message(int status);
/* The library version, "MAJOR.MINOR.PATCH". */
const char *pyrnn_version(void);

/* Elements of workspace (of the data type) that one layer-direction needs: inference when
 * training is 0, forward-for-training plus backward otherwise. Returns -1 for invalid sizes. */
int64_t pyrnn_rnn_workspace_len(int64_t T, int64_t B, int64_t I, int64_t H, int training);
int64_t pyrnn_lstm_workspace_len(int64_t T, int64_t B, int64_t I, int64_t H, int training);
int64_t pyrnn_gru_workspace_len(int64_t T, int64_t B, int64_t I, int64_t H, int training,
                                int reset_after);
/* PYRNN_CDEF_END */

#ifdef __cplusplus
}
#endif
#endif /* PYRNN_H */
