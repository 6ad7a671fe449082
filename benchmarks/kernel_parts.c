/* Parts of the C kernels timed on their own, on cache-hot data: the machine's FMA peak, the
 * recurrent product of one unit-block tile, the blocked GEMM, the activations and the per-step
 * barrier. The numbers RESULTS.md and
 * the comments of csrc/gemm_impl.h quote for these come from here. The AVX-512 paths by
 * default (it includes isa_avx512.c, so it needs a CPU with AVX-512); -DKP_AVX2 builds the AVX2
 * paths instead, for CPUs without AVX-512.
 *
 *   gcc -O3 -std=c11 -ffp-contract=fast -fopenmp -Icsrc benchmarks/kernel_parts.c \
 *       csrc/threads.c csrc/status.c -o /tmp/kernel_parts          # [-DKP_AVX2]
 *   /tmp/kernel_parts peak THREADS               # 12 independent FMA chains per thread
 *   /tmp/kernel_parts tile NV K B                # recur_tile: B rows, nv vectors, depth K
 *   /tmp/kernel_parts gemm M N K LAYOUT [ROUNDS] # LAYOUT 0: x @ w^T (input projection),
 *                                                #        1: dgates^T @ h (weight gradients),
 *                                                #        2: dgates @ w (dx); the best of
 *                                                # ROUNDS calls (default 5)
 *   /tmp/kernel_parts act                        # sigmoid and tanh, ns per 16 values
 *   /tmp/kernel_parts barrier                    # the per-step barrier of a 2-thread team
 *   /tmp/kernel_parts barriers SECONDS           # the same every 0.3 s in one process: where
 *                                                # the host puts the vCPUs moves
 *   /tmp/kernel_parts wake MS                    # a plain OpenMP region's second thread
 *                                                # after MS ms idle: start, shared CPUs
 *
 * The GEMM uses PYRNN_NUM_THREADS threads (set it to 1 for one core); the tile runs on one. */
#define _GNU_SOURCE /* sched_getcpu */
#ifdef KP_AVX2
#include "isa_avx2.c"
#define KP_VBYTES 32
#else
#include "isa_avx512.c"
#define KP_VBYTES 64
#endif
#define KP_VW (KP_VBYTES / 4) /* floats per vector */

#include <omp.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + 1e-9 * t.tv_nsec;
}

static float *filled(int64_t n, int mod)
{
    float *p = aligned_alloc(64, (size_t)((n * 4 + 63) / 64 * 64) + 4096);
    for (int64_t i = 0; i < n; i++) p[i] = 0.001f * (float)(i % mod);
    return p;
}

typedef float vf __attribute__((vector_size(KP_VBYTES)));

static double peak(int threads, long reps)
{
    double sink = 0;
    const double t0 = now();
#pragma omp parallel num_threads(threads) reduction(+ : sink)
    {
        vf acc[12], a = {0}, b = {0};
        for (int i = 0; i < KP_VW; i++) a[i] = 0.999f, b[i] = 0.001f * (float)omp_get_thread_num();
        for (int i = 0; i < 12; i++) acc[i] = b;
        for (long r = 0; r < reps; r++)
#pragma GCC unroll 12
            for (int i = 0; i < 12; i++) acc[i] = acc[i] * a + b;
        for (int i = 0; i < 12; i++) sink += acc[i][0];
    }
    const double dt = now() - t0;
    printf("(checksum %g) ", sink);
    return 2.0 * KP_VW * 12 * (double)reps * threads / dt;
}

/* Runs `reps` barriers in a row on a team of two. */
static void barriers(void *ctx, int tid, int nth)
{
    (void)tid;
    for (long r = *(const long *)ctx; r > 0; r--) pyrnn_barrier(nth);
}

/* ns a barrier of a team of two: the fastest of `rounds` runs of `reps` in a row. */
static double barrier_ns(long reps, int rounds)
{
    double best = 1e9;
    for (int round = 0; round < rounds; round++) {
        const double t0 = now();
        pyrnn_team(2, barriers, (void *)&reps);
        const double dt = now() - t0;
        if (dt < best) best = dt;
    }
    return 1e9 * best / (double)reps;
}

int main(int argc, char **argv)
{
    const char *mode = argc > 1 ? argv[1] : "";
    double flops = 0, best = 1e30;
    if (!strcmp(mode, "peak") && argc == 3) {
        printf("FMA peak, %s threads: %.1f GFLOP/s\n", argv[2],
               1e-9 * peak(atoi(argv[2]), 200000000L));
        return 0;
    }
    if (!strcmp(mode, "tile") && argc == 5) {
        const int nv = atoi(argv[2]);
        const int64_t K = atol(argv[3]), B = atol(argv[4]), w = nv * KP_VW;
        float *aT = filled(K * B, 7), *panel = filled(K * w, 5), *acc = filled(B * w, 3);
        const long reps = (long)(4e9 / (2.0 * K * B * w)) + 1;
        for (int round = 0; round < 5; round++) {
            const double t0 = now();
            for (long r = 0; r < reps; r++) recur_tile_f32(B, nv, K, aT, panel, acc, NULL, 0, NULL);
            const double dt = now() - t0;
            if (dt < best) best = dt;
        }
        flops = 2.0 * K * B * w * reps;
        printf("recur_tile nv=%d K=%ld B=%ld: %.1f GFLOP/s\n", nv, (long)K, (long)B,
               1e-9 * flops / best);
        return 0;
    }
    if (!strcmp(mode, "gemm") && (argc == 6 || argc == 7)) {
        const int64_t M = atol(argv[2]), N = atol(argv[3]), K = atol(argv[4]);
        const int layout = atoi(argv[5]), rounds = argc == 7 ? atoi(argv[6]) : 5;
        float *A = filled(M * K, 7), *Bm = filled(K * N, 5), *C = filled(M * N, 3);
        float *bpack = filled(PYRNN_GEMM_KC * ((N + 31) / 32 * 32), 1);
        for (int round = 0; round < rounds; round++) {
            const double t0 = now();
            if (layout == 0)  /* A [M,K] row-major, B given as its transpose [N,K] */
                gemm_run_f32(M, N, K, A, K, 1, Bm, 1, K, C, N, 0, bpack);
            else if (layout == 1)  /* A given as its transpose [K,M], B [K,N] row-major */
                gemm_run_f32(M, N, K, A, 1, M, Bm, N, 1, C, N, 0, bpack);
            else  /* A [M,K] and B [K,N] row-major */
                gemm_run_f32(M, N, K, A, K, 1, Bm, N, 1, C, N, 0, bpack);
            const double dt = now() - t0;
            if (dt < best) best = dt;
        }
        flops = 2.0 * M * N * K;
        printf("gemm M=%ld N=%ld K=%ld layout %d: %.1f GFLOP/s\n", (long)M, (long)N, (long)K,
               layout, 1e-9 * flops / best);
        return 0;
    }
    if (!strcmp(mode, "act") && argc == 2) {
        const int64_t n = 4096;
        float *x = filled(n, 200), *y = filled(n, 1);
        for (int64_t i = 0; i < n; i++) x[i] = 10.0f * x[i] - 1.0f;  /* -1 .. 1 */
        for (int kind = 0; kind < 2; kind++) {  /* 0 sigmoid, 1 tanh (pyrnn.h) */
            best = 1e30;
            for (int round = 0; round < 5; round++) {
                const double t0 = now();
                for (long r = 0; r < 20000; r++) activation_f32(kind, n, x, y);
                const double dt = now() - t0;
                if (dt < best) best = dt;
            }
            printf("%s: %.2f ns per 16 values\n", kind == 0 ? "sigmoid" : "tanh",
                   1e9 * best / (20000.0 * (double)(n / 16)));
        }
        return 0;
    }
    if (!strcmp(mode, "barrier") && argc == 2) {
        printf("barrier, 2 threads: %.1f ns\n", barrier_ns(200000, 5));
        return 0;
    }
    if (!strcmp(mode, "barriers") && argc == 3) {
        /* the best of 3 runs of 20,000 barriers, then 0.3 s asleep, for SECONDS */
        const struct timespec pause = {0, 300000000};
        printf("barrier, 2 threads, ns every 0.3 s:");
        for (const double end = now() + atof(argv[2]); now() < end;) {
            printf(" %.0f", barrier_ns(20000, 3));
            fflush(stdout);
            nanosleep(&pause, NULL);
        }
        printf("\n");
        return 0;
    }
    if (!strcmp(mode, "wake") && argc == 3) {
        /* 40 regions, each after sleeping MS: how long the second thread takes to enter it,
         * and how often it runs on the first one's CPU */
        enum { REPS = 40 };
        const double ms = atof(argv[2]);
        const long ns = (long)(ms * 1e6);
        const struct timespec idle = {ns / 1000000000, ns % 1000000000};
        double start_us[REPS];
        int shared = 0;
#pragma omp parallel num_threads(2)
        {
        }
        for (int r = 0; r < REPS; r++) {
            nanosleep(&idle, NULL);
            double entered[2] = {0, 0};
            int cpu[2] = {-1, -2};
            const double t0 = now();
#pragma omp parallel num_threads(2)
            {
                const int id = omp_get_thread_num();
                entered[id] = now();
                cpu[id] = sched_getcpu();
            }
            start_us[r] = 1e6 * (entered[1] - t0);
            shared += cpu[0] == cpu[1];
        }
        for (int i = 1; i < REPS; i++)  /* insertion sort */
            for (int j = i; j > 0 && start_us[j] < start_us[j - 1]; j--) {
                const double t = start_us[j];
                start_us[j] = start_us[j - 1];
                start_us[j - 1] = t;
            }
        printf("wake after %g ms: second thread in after median %.0f us, max %.0f us; "
               "on the first one's CPU in %d of %d\n", ms, start_us[REPS / 2],
               start_us[REPS - 1], shared, REPS);
        return 0;
    }
    fprintf(stderr, "usage: kernel_parts peak THREADS | tile NV K B | gemm M N K LAYOUT | act | "
            "barrier | wake MS\n");
    return 2;
}
