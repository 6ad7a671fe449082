/* The thread setting and the team runner.
 *
 * The setting is an atomic int read once at the start of each call (a configuration value, not
 * kernel state): $PYRNN_NUM_THREADS at first use, else OpenMP's default, until
 * pyrnn_set_num_threads changes it. A team is one OpenMP parallel region; kernels put it around
 * their whole time loop and synchronise steps with PYRNN_BARRIER(). */
#include <stdatomic.h>
#include <stdlib.h>

#include "common.h"

#ifdef _OPENMP
#include <omp.h>
#endif

static atomic_int setting = 0;  /* 0: not read from the environment yet */

static int initial_threads(void)
{
    const char *env = getenv("PYRNN_NUM_THREADS");
    if (env && *env) {
        char *end;
        const long n = strtol(env, &end, 10);
        if (*end == '\0' && n >= 1 && n <= 4096) return (int)n;
    }
#ifdef _OPENMP
    return omp_get_max_threads();
#else
    return 1;
#endif
}

int pyrnn_get_num_threads(void)
{
    int n = atomic_load_explicit(&setting, memory_order_relaxed);
    if (n == 0) {
        int expected = 0;
        n = initial_threads();
        if (!atomic_compare_exchange_strong(&setting, &expected, n)) n = expected;
    }
    return n;
}

int pyrnn_set_num_threads(int n)
{
    if (n < 1 || n > 4096) return PYRNN_ERR_ARGUMENT;
    atomic_store_explicit(&setting, n, memory_order_relaxed);
    return PYRNN_OK;
}

int pyrnn_has_openmp(void)
{
#ifdef _OPENMP
    return 1;
#else
    return 0;
#endif
}

int pyrnn_threads_for(double work, double per_thread, int64_t max_parts)
{
#ifdef _OPENMP
    int64_t n = pyrnn_get_num_threads();
    const double useful = work / per_thread;
    if (useful < (double)n) n = useful < 1.0 ? 1 : (int64_t)useful;
    if (n > max_parts) n = max_parts;
    return n < 1 ? 1 : (int)n;
#else
    (void)work, (void)per_thread, (void)max_parts;
    return 1;
#endif
}

void pyrnn_team(int nth, void (*body)(void *ctx, int tid, int nth), void *ctx)
{
#ifdef _OPENMP
    if (nth > 1) {
#pragma omp parallel num_threads(nth)
        {
            /* the runtime may give fewer threads than asked: share by the real count */
            body(ctx, omp_get_thread_num(), omp_get_num_threads());
        }
        return;
    }
#endif
    body(ctx, 0, 1);
}
