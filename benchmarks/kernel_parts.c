/* Parts of the C kernels timed on their own, on cache-hot data: the machine's FMA peak, the
 * recurrent product of one unit-block tile, and the blocked GEMM. The numbers RESULTS.md and
 * the comments of csrc/gemm_impl.h quote for these come from here. AVX-512 paths only (it
 * includes isa_avx512.c), so it needs a CPU with AVX-512.
 *
 *   gcc -O3 -std=c11 -ffp-contract=fast -fopenmp -Icsrc benchmarks/kernel_parts.c \
 *       csrc/threads.c csrc/status.c csrc/cpu.c -o /tmp/kernel_parts
 *   /tmp/kernel_parts peak THREADS               # 12 independent FMA chains per thread
 *   /tmp/kernel_parts tile NV K B                # recur_tile: B rows, nv vectors, depth K
 *   /tmp/kernel_parts gemm M N K LAYOUT          # LAYOUT 0: x @ w^T (input projection),
 *                                                #        1: dgates^T @ h (weight gradients)
 *
 * The GEMM uses PYRNN_NUM_THREADS threads (set it to 1 for one core); the tile runs on one. */
#include "isa_avx512.c"

#include <omp.h>
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

typedef float v16 __attribute__((vector_size(64)));

static double peak(int threads, long reps)
{
    double sink = 0;
    const double t0 = now();
#pragma omp parallel num_threads(threads) reduction(+ : sink)
    {
        v16 acc[12], a = {0}, b = {0};
        for (int i = 0; i < 16; i++) a[i] = 0.999f, b[i] = 0.001f * (float)omp_get_thread_num();
        for (int i = 0; i < 12; i++) acc[i] = b;
        for (long r = 0; r < reps; r++)
#pragma GCC unroll 12
            for (int i = 0; i < 12; i++) acc[i] = acc[i] * a + b;
        for (int i = 0; i < 12; i++) sink += acc[i][0];
    }
    const double dt = now() - t0;
    printf("(checksum %g) ", sink);
    return 2.0 * 16 * 12 * (double)reps * threads / dt;
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
        const int64_t K = atol(argv[3]), B = atol(argv[4]), w = nv * 16;
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
    if (!strcmp(mode, "gemm") && argc == 6) {
        const int64_t M = atol(argv[2]), N = atol(argv[3]), K = atol(argv[4]);
        const int layout = atoi(argv[5]);
        float *A = filled(M * K, 7), *Bm = filled(K * N, 5), *C = filled(M * N, 3);
        float *bpack = filled(PYRNN_GEMM_KC * ((N + 31) / 32 * 32), 1);
        for (int round = 0; round < 5; round++) {
            const double t0 = now();
            if (layout == 0)  /* A [M,K] row-major, B given as its transpose [N,K] */
                gemm_run_f32(M, N, K, A, K, 1, Bm, 1, K, C, N, 0, bpack);
            else  /* A given as its transpose [K,M], B [K,N] row-major */
                gemm_run_f32(M, N, K, A, 1, M, Bm, N, 1, C, N, 0, bpack);
            const double dt = now() - t0;
            if (dt < best) best = dt;
        }
        flops = 2.0 * M * N * K;
        printf("gemm M=%ld N=%ld K=%ld layout %d: %.1f GFLOP/s\n", (long)M, (long)N, (long)K,
               layout, 1e-9 * flops / best);
        return 0;
    }
    fprintf(stderr, "usage: kernel_parts peak THREADS | tile NV K B | gemm M N K LAYOUT\n");
    return 2;
}
