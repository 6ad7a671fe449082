/* Private helpers shared by every translation unit: instruction sets, threads, the per-call
 * argument block and the kernel tables that the public entry points dispatch through. */
#ifndef PYRNN_COMMON_H
#define PYRNN_COMMON_H

#include <stddef.h>
#include <stdint.h>

#include "pyrnn.h"

#define PYRNN_RESTRICT restrict
#define PYRNN_CAT_(a, b) a##b
#define PYRNN_CAT(a, b) PYRNN_CAT_(a, b)

/* Hidden sizes are rounded up to a multiple of this many units in the workspace regions that
 * hold per-unit-block tiles, so the layout does not depend on the instruction set (32 units are
 * a pair of the widest vectors, float32 on AVX-512). */
#define PYRNN_HPAD 32
static inline int64_t pyrnn_hpad(int64_t H)
{
    return (H + PYRNN_HPAD - 1) / PYRNN_HPAD * PYRNN_HPAD;
}

/* LSTM and RNN inference's rows, spaced off multiples of 4 KiB (workspace.c sizes them,
 * lstm.c and rnn.c lay them out): their gates rows are PYRNN_ROW_SKEW elements longer than G*H
 * (for B > 1), and each [B,H] state buffer is followed by PYRNN_STATE_SKEW elements. Rows 4 KiB
 * apart (H = 1024 in float32) share their L1 set and their low 12 address bits, so every load
 * is checked against the stores before it as a possible alias (benchmarks/RESULTS.md: at
 * 50x64x8x1024, inference 6% faster with the skews for LSTM and for RNN). GRU's time loop did
 * not lose to it. */
#define PYRNN_ROW_SKEW 16
#define PYRNN_STATE_SKEW 160

/* The GEMMs' K block: the workspace holds B packed for one K block, PYRNN_GEMM_KC rows of the
 * widest B a cell's GEMMs have (G*H or I) rounded up to 32 (workspace.c sizes it). */
#define PYRNN_GEMM_KC 256
static inline int64_t pyrnn_bpack_len(int64_t GH, int64_t I)
{
    const int64_t n = GH > I ? GH : I;
    return PYRNN_GEMM_KC * ((n + 31) / 32 * 32);
}

/* ---- instruction sets (cpu.c) ---- */
enum pyrnn_isa { PYRNN_ISA_GENERIC = 0, PYRNN_ISA_AVX2 = 1, PYRNN_ISA_AVX512 = 2 };
/* The best instruction set this CPU and PYRNN_DISABLE_CPU_FEATURES allow; decided once. */
enum pyrnn_isa pyrnn_isa(void);

/* ---- threads (threads.c) ---- */
/* Bytes of one core's L1 data cache (the system's word where it gives one, else 32 KiB): the
 * time loops' thread count depends on whether the recurrent weights fit in it. */
int64_t pyrnn_l1d_bytes(void);
/* Threads for a parallel section doing `work` flops (a time loop: per step), when at least
 * `per_thread` flops make a thread worth waking where a barrier takes 60 ns (more in proportion
 * where pyrnn_barrier_ns says it takes longer), capped by the setting and by `max_parts`
 * independent parts; one thread when the team has gone to sleep and the section's `total`
 * flops would not pay for waking it (threads.c). */
int pyrnn_threads_for(double work, double per_thread, int64_t max_parts, double total);
/* Runs body(ctx, tid, nth) on nth threads (one team) and returns when all are done; on one
 * thread when the team is busy with another call. */
void pyrnn_team(int nth, void (*body)(void *ctx, int tid, int nth), void *ctx);
/* Moves the calling thread off `cpu` when it runs there and allows another CPU, leaving its
 * affinity as it was; returns whether it moved (pyrnn_team's workers after idle, threads.c). */
int pyrnn_leave_cpu(int cpu);
/* [begin, end) of n parts for thread tid of nth: contiguous, the same for every step. */
static inline void pyrnn_share(int64_t n, int tid, int nth, int64_t *begin, int64_t *end)
{
    *begin = n * tid / nth;
    *end = n * (tid + 1) / nth;
}
/* Waits until all nth threads of the running team have arrived (nothing when nth is 1). */
void pyrnn_barrier(int nth);

/* ---- argument validation (workspace.c, validate.c) ---- */
/* PYRNN_OK when sizes are >= 1 and small enough that every workspace offset fits int64. */
int pyrnn_check_sizes(int64_t T, int64_t B, int64_t I, int64_t H);
/* Everything an entry point checks: sizes, the n_required pointers non-NULL, b_ih and b_hh
 * both given or both NULL, lengths (NULL or each in 1..T). Returns a status. */
int pyrnn_check_call(int64_t T, int64_t B, int64_t I, int64_t H, const void *const *required,
                     int n_required, const void *b_ih, const void *b_hh,
                     const int64_t *lengths);

/* ---- the per-call argument block and kernel tables, one per data type ---- */
#define real float
#define SFX f32
#include "call.h"
#undef real
#undef SFX
#define real double
#define SFX f64
#include "call.h"
#undef real
#undef SFX

/* The table for the chosen instruction set (cpu.c). */
const struct pyrnn_kernels_f32 *pyrnn_kernels_f32(void);
const struct pyrnn_kernels_f64 *pyrnn_kernels_f64(void);

#endif /* PYRNN_COMMON_H */
