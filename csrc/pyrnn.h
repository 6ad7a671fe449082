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
 * training is 0, forward-for-training plus backward otherwise. Returns -1 for invalid sizes.
 * The layouts are documented in rnn.c, lstm.c and gru.c (and mirrored by pyrnn/ref). */
int64_t pyrnn_rnn_workspace_len(int64_t T, int64_t B, int64_t I, int64_t H, int training);
int64_t pyrnn_lstm_workspace_len(int64_t T, int64_t B, int64_t I, int64_t H, int training);
int64_t pyrnn_gru_workspace_len(int64_t T, int64_t B, int64_t I, int64_t H, int training,
                                int reset_after);

/* One layer x one direction x T steps of a cell. Arguments: sizes and flags, then the NumPy
 * reference's parameters in order, then its return values in order, then the workspace.
 *   T, B, I, H: steps, batch, input size, hidden size, each >= 1
 *   reverse: visit steps T-1..0; training: forward fills the workspace for backward
 *   relu (rnn): relu instead of tanh; reset_after (gru): PyTorch's variant, else Cho et al.'s
 *   x: [T,B,I]; h0, c0: [B,H] initial states, NULL = zeros
 *   w_ih: [G*H,I]; w_hh: [G*H,H] (G = 1 rnn, 4 lstm (i,f,g,o), 3 gru (r,z,n))
 *   b_ih, b_hh: [G*H], both NULL = no bias
 *   lengths: [B] each in 1..T (any order), NULL = all T
 *   y: [T,B,H] out, zero past each length; h_n, c_n: [B,H] out, the state after the last
 *   valid step
 *   dy: [T,B,H] gradient of y (ignored past each length); dh_n, dc_n: [B,H], NULL = zeros
 *   dx: [T,B,I]; dh0, dc0: [B,H]; dw_ih: [G*H,I]; dw_hh: [G*H,H]; db_ih, db_hh: [G*H] out,
 *   overwritten; each may be NULL: that gradient is not computed, and the work that only it
 *   needs is skipped (a GEMM for dx, dw_ih, dw_hh and a one-step call's dh0, the last step's
 *   recurrent product for dh0); db_* are not written without a bias
 *   workspace: *_workspace_len(..., training) elements; backward needs the one its training
 *   forward filled
 * Outputs are overwritten, never accumulated. Returns PYRNN_OK or an error status. */
int pyrnn_rnn_forward_f32(int64_t T, int64_t B, int64_t I, int64_t H, int reverse, int training,
    int relu, const float *x, const float *h0, const float *w_ih, const float *w_hh,
    const float *b_ih, const float *b_hh, const int64_t *lengths, float *y, float *h_n,
    float *workspace);
int pyrnn_rnn_backward_f32(int64_t T, int64_t B, int64_t I, int64_t H, int reverse, int relu,
    const float *x, const float *h0, const float *w_ih, const float *w_hh, const float *b_ih,
    const float *b_hh, const int64_t *lengths, const float *dy, const float *dh_n, float *dx,
    float *dh0, float *dw_ih, float *dw_hh, float *db_ih, float *db_hh, float *workspace);
int pyrnn_lstm_forward_f32(int64_t T, int64_t B, int64_t I, int64_t H, int reverse,
    int training, const float *x, const float *h0, const float *c0, const float *w_ih,
    const float *w_hh, const float *b_ih, const float *b_hh, const int64_t *lengths, float *y,
    float *h_n, float *c_n, float *workspace);
int pyrnn_lstm_backward_f32(int64_t T, int64_t B, int64_t I, int64_t H, int reverse,
    const float *x, const float *h0, const float *c0, const float *w_ih, const float *w_hh,
    const float *b_ih, const float *b_hh, const int64_t *lengths, const float *dy,
    const float *dh_n, const float *dc_n, float *dx, float *dh0, float *dc0, float *dw_ih,
    float *dw_hh, float *db_ih, float *db_hh, float *workspace);
int pyrnn_gru_forward_f32(int64_t T, int64_t B, int64_t I, int64_t H, int reverse, int training,
    int reset_after, const float *x, const float *h0, const float *w_ih, const float *w_hh,
    const float *b_ih, const float *b_hh, const int64_t *lengths, float *y, float *h_n,
    float *workspace);
int pyrnn_gru_backward_f32(int64_t T, int64_t B, int64_t I, int64_t H, int reverse,
    int reset_after, const float *x, const float *h0, const float *w_ih, const float *w_hh,
    const float *b_ih, const float *b_hh, const int64_t *lengths, const float *dy,
    const float *dh_n, float *dx, float *dh0, float *dw_ih, float *dw_hh, float *db_ih,
    float *db_hh, float *workspace);

int pyrnn_rnn_forward_f64(int64_t T, int64_t B, int64_t I, int64_t H, int reverse, int training,
    int relu, const double *x, const double *h0, const double *w_ih, const double *w_hh,
    const double *b_ih, const double *b_hh, const int64_t *lengths, double *y, double *h_n,
    double *workspace);
int pyrnn_rnn_backward_f64(int64_t T, int64_t B, int64_t I, int64_t H, int reverse, int relu,
    const double *x, const double *h0, const double *w_ih, const double *w_hh,
    const double *b_ih, const double *b_hh, const int64_t *lengths, const double *dy,
    const double *dh_n, double *dx, double *dh0, double *dw_ih, double *dw_hh, double *db_ih,
    double *db_hh, double *workspace);
int pyrnn_lstm_forward_f64(int64_t T, int64_t B, int64_t I, int64_t H, int reverse,
    int training, const double *x, const double *h0, const double *c0, const double *w_ih,
    const double *w_hh, const double *b_ih, const double *b_hh, const int64_t *lengths,
    double *y, double *h_n, double *c_n, double *workspace);
int pyrnn_lstm_backward_f64(int64_t T, int64_t B, int64_t I, int64_t H, int reverse,
    const double *x, const double *h0, const double *c0, const double *w_ih,
    const double *w_hh, const double *b_ih, const double *b_hh, const int64_t *lengths,
    const double *dy, const double *dh_n, const double *dc_n, double *dx, double *dh0,
    double *dc0, double *dw_ih, double *dw_hh, double *db_ih, double *db_hh,
    double *workspace);
int pyrnn_gru_forward_f64(int64_t T, int64_t B, int64_t I, int64_t H, int reverse, int training,
    int reset_after, const double *x, const double *h0, const double *w_ih, const double *w_hh,
    const double *b_ih, const double *b_hh, const int64_t *lengths, double *y, double *h_n,
    double *workspace);
int pyrnn_gru_backward_f64(int64_t T, int64_t B, int64_t I, int64_t H, int reverse,
    int reset_after, const double *x, const double *h0, const double *w_ih,
    const double *w_hh, const double *b_ih, const double *b_hh, const int64_t *lengths,
    const double *dy, const double *dh_n, double *dx, double *dh0, double *dw_ih,
    double *dw_hh, double *db_ih, double *db_hh, double *workspace);

/* y[k] = sigmoid(x[k]) (kind 0) or tanh(x[k]) (kind 1) for k < n, with the vectorised
 * activations the cells use on the chosen instruction set (exposed so tests can check their
 * error bound, stated in activations.h). */
int pyrnn_activation_f32(int kind, int64_t n, const float *x, float *y);
int pyrnn_activation_f64(int kind, int64_t n, const double *x, double *y);

/* Threads the kernels may use (1 <= n <= 256; the initial value is $PYRNN_NUM_THREADS, else
 * the OpenMP default). Small problems use fewer, and so do small calls after the team has idled
 * ($PYRNN_TEAM_IDLE_NS, docs/architecture.md). Results do not depend on it. */
int pyrnn_set_num_threads(int n);
int pyrnn_get_num_threads(void);
/* "avx512", "avx2" or "generic": the kernels chosen at first use from cpuid and
 * $PYRNN_DISABLE_CPU_FEATURES (a comma list of avx512, avx2). */
const char *pyrnn_isa_name(void);
/* 1 when built with OpenMP (the kernels' thread team), else 0 (then they run on one thread). */
int pyrnn_has_thread_team(void);
/* Nanoseconds one barrier of a two-thread team takes here, which sets how much work a second
 * thread needs: $PYRNN_BARRIER_NS (1 to 1000000) when set, else measured (the fastest of up to
 * 32 runs of 32 barriers, 0.05-0.4 ms with the team's start) at the first call big enough for
 * a team and again at up to seven later calls, each at least 4 times as long after the one
 * before as that one after its own (50 ms, 0.2 s, 0.8 s, ... 3.4 min: a virtual machine's host
 * moves its vCPUs nearer and further), the fastest measurement counting; 480 ns until one did
 * not meet a busy core (and for good if none did). */
double pyrnn_barrier_ns(void);
/* How many measurements pyrnn_barrier_ns has taken so far (0 when $PYRNN_BARRIER_NS is set). */
int pyrnn_barrier_measurements(void);
/* PYRNN_CDEF_END */

#ifdef __cplusplus
}
#endif
#endif /* PYRNN_H */
