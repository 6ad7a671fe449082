/* GEMM micro-kernels and the blocked GEMM built on them, for one instruction set and data type.
 * Included by kernels_impl.h after simd.h. No include guard on purpose.
 *
 * The micro-kernel computes an mr x (nv*VW) tile of C in registers:
 *     C(i, :) (+)= sum_k A(i, k) * B(k, :),   A(i, k) = a[k*lda + i],  B(k, :) = b[k*ldb ...]
 * so A is read "k-major" (a packed micro-panel, a transposed state, or a column-major view) and
 * every row of B is nv whole vectors. Each element is one chain of FMAs in k order, whatever
 * the tile's size or place: results do not depend on the blocking or on who computes a tile. */

/* Rows of a tile of nv vectors: the accumulators use at most PYRNN_ACC_REGS registers. */
#define MR_FOR(nv) ((PYRNN_ACC_REGS / (nv)) > 12 ? 12 : (PYRNN_ACC_REGS / (nv)))

/* Step k of mk_body's tile. */
static inline __attribute__((always_inline)) void FN(mk_step)(
    const int mr, const int nv, int64_t k, const real *PYRNN_RESTRICT a, int64_t lda,
    const real *PYRNN_RESTRICT b, int64_t ldb, V acc[12][4], const char *pf, int64_t pf_step)
{
    __builtin_prefetch(pf + k * pf_step, 0, 2);
    V bv[4];
#pragma GCC unroll 4
    for (int v = 0; v < nv; v++) bv[v] = FN(vload)(b + k * ldb + v * VW);
#pragma GCC unroll 12
    for (int i = 0; i < mr; i++) {
        const real s = a[k * lda + i];
#pragma GCC unroll 4
        for (int v = 0; v < nv; v++) acc[i][v] += s * bv[v];
    }
}

/* The k loop goes PYRNN_MK_UNROLL steps a turn (isa_*.c) where the tile's accumulators and its
 * row of B leave a register for the broadcast: its counter and branch were a large part of
 * AVX2's 12-FMA step (hot 6 x 16 tiles 62-68 -> 70-75 GFLOP/s on one Zen 3 core,
 * benchmarks/kernel_parts.c `tile 2 256 48`). With every register taken (LSTM's 3 x 4-vector
 * tiles) unrolling made the compiler spill: half the speed. */
#define MK_PRAGMA(x) _Pragma(#x)
#define MK_UNROLL_BY(n) MK_PRAGMA(GCC unroll n)
#define MK_UNROLLED MK_UNROLL_BY(PYRNN_MK_UNROLL)
static inline __attribute__((always_inline)) void FN(mk_body)(
    const int mr, const int nv, int64_t K, const real *PYRNN_RESTRICT a, int64_t lda,
    const real *PYRNN_RESTRICT b, int64_t ldb, real *PYRNN_RESTRICT c, int64_t ldc, int load,
    const char *pf, int64_t pf_step)
{
    V acc[12][4];
#pragma GCC unroll 12
    for (int i = 0; i < mr; i++)
#pragma GCC unroll 4
        for (int v = 0; v < nv; v++)
            acc[i][v] = load ? FN(vload)(c + i * ldc + v * VW) : FN(vdup)(0);
    if (mr * nv + nv < PYRNN_VREGS) {
        MK_UNROLLED
        for (int64_t k = 0; k < K; k++) FN(mk_step)(mr, nv, k, a, lda, b, ldb, acc, pf, pf_step);
    } else {
        for (int64_t k = 0; k < K; k++) FN(mk_step)(mr, nv, k, a, lda, b, ldb, acc, pf, pf_step);
    }
#pragma GCC unroll 12
    for (int i = 0; i < mr; i++)
#pragma GCC unroll 4
        for (int v = 0; v < nv; v++) FN(vstore)(c + i * ldc + v * VW, acc[i][v]);
}

#define MK_CASE(MR, NV)                                                   \
    case MR:                                                              \
        if ((MR) <= MR_FOR(NV))                                           \
            FN(mk_body)(MR, NV, K, a, lda, b, ldb, c, ldc, load, pf, pf_step); \
        return;
#define MK_CASES(NV)                                                                         \
    switch (mr) {                                                                            \
        MK_CASE(1, NV) MK_CASE(2, NV) MK_CASE(3, NV) MK_CASE(4, NV) MK_CASE(5, NV)           \
        MK_CASE(6, NV) MK_CASE(7, NV) MK_CASE(8, NV) MK_CASE(9, NV) MK_CASE(10, NV)          \
        MK_CASE(11, NV) MK_CASE(12, NV) default: return;                                     \
    }

/* The micro-kernel for 1 <= nv <= 4 and 1 <= mr <= MR_FOR(nv). Step k also asks for the line
 * at pf + k*pf_step to be brought into L2: the recurrent product streams the next tile's
 * weights in while it computes (pf_step 0 with pf a valid address, such as b, asks nothing new). */
static void FN(mk)(int mr, int nv, int64_t K, const real *a, int64_t lda, const real *b,
                   int64_t ldb, real *c, int64_t ldc, int load, const char *pf, int64_t pf_step)
{
    switch (nv) {
    case 1: MK_CASES(1)
    case 2: MK_CASES(2)
    case 3: MK_CASES(3)
    case 4: MK_CASES(4)
    default: return;
    }
}
#undef MK_CASE
#undef MK_CASES

/* Batch 1: the products of np panels of pv vectors each (np <= MV_TILES(pv)) at once,
 *     c[p*ldc + i*VW ...] = sum_k a[k] * b[p*pstride + k*ldb + i*VW ...],
 * bound by reading b: one broadcast of a[k] serves all np * pv vectors (3 loads for 2 FMAs
 * with one pair of vectors, 9 for 8 with four pairs). MV_SPLIT(pv) independent chains a vector
 * over interleaved k hide the FMA latency, as many as the accumulator registers hold with
 * MV_TILES(pv) tiles; they are added in a fixed order that depends on pv alone, so a thread's
 * share of the tiles does not change a bit of the results. LSTM tiles (pv 4) go one at a time:
 * their weights come from L2 from H=64 on, and two at once made LSTM 100x1x32x128 inference 5%
 * slower (benchmarks/RESULTS.md). */
#define MV_VECTORS 8
#define MV_TILES(pv) ((pv) == 2 ? 4 : (pv) == 3 ? 2 : 1)
#define MV_CHAINS(pv) (PYRNN_ACC_REGS / (MV_TILES(pv) * (pv)))
#define MV_SPLIT(pv) (MV_CHAINS(pv) >= 4 ? 4 : MV_CHAINS(pv) >= 2 ? 2 : 1)
static inline __attribute__((always_inline)) void FN(mv_body)(
    const int np, const int pv, int64_t K, const real *PYRNN_RESTRICT a,
    const real *PYRNN_RESTRICT b, int64_t ldb, int64_t pstride, real *PYRNN_RESTRICT c,
    int64_t ldc)
{
    const int nv = np * pv, split = MV_SPLIT(pv);
    V acc[4][MV_VECTORS];
#pragma GCC unroll 4
    for (int s = 0; s < split; s++)
#pragma GCC unroll 8
        for (int v = 0; v < nv; v++) acc[s][v] = FN(vdup)(0);
    int64_t k = 0;
    for (; k + split <= K; k += split)
#pragma GCC unroll 4
        for (int s = 0; s < split; s++)
#pragma GCC unroll 8
            for (int v = 0; v < nv; v++)
                acc[s][v] += a[k + s] * FN(vload)(b + (v / pv) * pstride + (k + s) * ldb +
                                                  (v % pv) * VW);
    for (; k < K; k++)
#pragma GCC unroll 8
        for (int v = 0; v < nv; v++)
            acc[0][v] += a[k] * FN(vload)(b + (v / pv) * pstride + k * ldb + (v % pv) * VW);
#pragma GCC unroll 8
    for (int v = 0; v < nv; v++)
        FN(vstore)(c + (v / pv) * ldc + (v % pv) * VW,
                   split == 4   ? (acc[0][v] + acc[1][v]) + (acc[2][v] + acc[3][v])
                   : split == 2 ? acc[0][v] + acc[1][v]
                                : acc[0][v]);
}

#define MV_CASE(NP, PV)                                              \
    case (NP) * 8 + (PV):                                            \
        FN(mv_body)(NP, PV, K, a, b, ldb, pstride, c, ldc);          \
        return;
/* mv_body for the panels the cells have: pairs of vectors (RNN, the backwards' dh, GRU's
 * reset-before n and r, z), GRU's r, z, n tiles, LSTM's four gates, up to MV_TILES(pv). */
static void FN(mv)(int np, int pv, int64_t K, const real *a, const real *b, int64_t ldb,
                   int64_t pstride, real *c, int64_t ldc)
{
    switch (np * 8 + pv) {
        MV_CASE(1, 2) MV_CASE(2, 2) MV_CASE(3, 2) MV_CASE(4, 2) MV_CASE(1, 3) MV_CASE(2, 3)
        MV_CASE(1, 4)
    default: return;
    }
}
#undef MV_CASE

/* The recurrent product of one unit-block tile for the whole batch:
 *     acc[b][0 : nv*VW] = sum_{k<K} aT[k*B + b] * panel[k][0 : nv*VW]
 * aT: [K,B] a transposed state (or gate gradient); panel: [K][nv*VW] packed weights;
 * acc: [B][nv*VW]; next: the panel the caller works on after this one, or NULL. (Batch 1
 * takes mv, several tiles at once, through the cells' tiles_product_b1 instead.)
 * K goes in as few even chunks as keep a chunk of the panel within RECUR_PANEL_BYTES, and all
 * row blocks pass over a chunk while it is there, so the panel comes from memory once a step and
 * the sums go through memory once a chunk. The size is the instruction set's
 * (PYRNN_RECUR_PANEL_BYTES, isa_*.c). AVX-512's 128 KiB, a part of L2, was measured on Zen 5 and
 * Intel (48 KiB L1): chunks sized for L1 with row blocks in groups of four were slower on
 * cache-hot panels (benchmarks/kernel_parts.c `tile`, one core): 104-122 GFLOP/s against 118-132,
 * 77 against 111 at K = 4096. AVX2's rows are half as wide and its blocks have half the rows
 * (3 for LSTM's 4 vectors), so a k step of a row block reads 128 bytes of panel and a 64-byte
 * line of aT for 12 FMAs: from L2 that is all of a 32-byte-per-cycle L2 (AMD Zen 3, 32 KiB L1,
 * 512 KiB L2). Its 16 KiB, half of a 32 KiB L1, stay in L1 while the row blocks pass: tiles of
 * LSTM K=1024 B=64 72-84 GFLOP/s against 52-67, and in place (benchmarks/RESULTS.md) LSTM
 * 50x64x512x1024 inference 8-10% faster, forward+backward 2-12%. The portable path keeps 128
 * KiB: 16 KiB made no difference to it on that machine. Meanwhile the micro-kernels
 * bring `next` into L2, a share per tile, so weights larger than L2 arrive one panel ahead
 * rather than on demand (LSTM 50x64x8x1024 forward on one thread, benchmarks/time_kernel.py:
 * 375-386 ms without, 328-342 ms with). Row blocks are as even as they can be: a short last
 * block pays a whole tile's loads and stores for little work (B=32 in blocks of up to 6 rows:
 * 5,5,6,5,5,6, not 6,6,6,6,6,2).
 * Rows whose sequence is over at step t (t >= lengths[b]; lengths NULL: none) do not need the
 * product: a row block made only of those gets zeros instead, so lengths with a spread cost
 * less than the padded run. */
#define RECUR_PANEL_BYTES PYRNN_RECUR_PANEL_BYTES

/* The chunks recur_tile passes K in, with tiles of nv vectors. */
static inline int FN(recur_chunks)(int nv, int64_t K)
{
    const int64_t kc_max = RECUR_PANEL_BYTES / ((int64_t)nv * VW * (int64_t)sizeof(real));
    return (int)((K + kc_max - 1) / kc_max);
}

/* recur_tile's chunks [c0, c1) of K alone: acc holds the sums of the chunks before c0. */
static void FN(recur_tile_part)(int64_t B, int nv, int64_t K, const real *aT, const real *panel,
                                real *acc, const int64_t *lengths, int64_t t, const real *next,
                                int c0, int c1)
{
    const int64_t w = (int64_t)nv * VW;
    /* row block r is rows [b0, b1) of pyrnn_share(B, r, nblocks); chunk ci likewise of K */
    const int nchunks = FN(recur_chunks)(nv, K);
    const int nblocks = (int)((B + MR_FOR(nv) - 1) / MR_FOR(nv));
    const int64_t share = K * w * (int64_t)sizeof(real) / ((int64_t)nchunks * nblocks);
    for (int ci = c0; ci < c1 && ci < nchunks; ci++) {
        int64_t k0, k1, b0, b1;
        pyrnn_share(K, ci, nchunks, &k0, &k1);
        for (int r = 0; r < nblocks; r++) {
            pyrnn_share(B, r, nblocks, &b0, &b1);
            const int mr = (int)(b1 - b0);
            const char *pf = next ? (const char *)next + (ci * nblocks + r) * share
                                  : (const char *)panel;
            int live = !lengths;
            for (int i = 0; i < mr && !live; i++) live = t < lengths[b0 + i];
            if (live)
                FN(mk)(mr, nv, k1 - k0, aT + k0 * B + b0, B, panel + k0 * w, w, acc + b0 * w, w,
                       k0 > 0, pf, next ? share / (k1 - k0) : 0);
            else if (ci == 0)
                memset(acc + b0 * w, 0, (size_t)(mr * w) * sizeof(real));
        }
    }
}

static void FN(recur_tile)(int64_t B, int nv, int64_t K, const real *aT, const real *panel,
                           real *acc, const int64_t *lengths, int64_t t, const real *next)
{
    FN(recur_tile_part)(B, nv, K, aT, panel, acc, lengths, t, next, 0, FN(recur_chunks)(nv, K));
}

/* Shuffle masks of the transpose below, for rounds b = 1, 2, 4, 8 (only the first VW lanes of
 * each row are used): lo takes lanes of row i where bit b of the lane is clear and the lanes
 * b lower of row i+b where it is set; hi the rest. */
#define TR_LO(b, l) (((l) & (b)) ? VW + (l) - (b) : (l))
#define TR_HI(b, l) (((l) & (b)) ? VW + (l) : (l) + (b))
#define TR_ROW(M, b)                                                                           \
    {M(b, 0), M(b, 1), M(b, 2), M(b, 3), M(b, 4), M(b, 5), M(b, 6), M(b, 7), M(b, 8),          \
     M(b, 9), M(b, 10), M(b, 11), M(b, 12), M(b, 13), M(b, 14), M(b, 15)}
static const ireal FN(tr_lo)[4][16] = {TR_ROW(TR_LO, 1), TR_ROW(TR_LO, 2), TR_ROW(TR_LO, 4),
                                       TR_ROW(TR_LO, 8)};
static const ireal FN(tr_hi)[4][16] = {TR_ROW(TR_HI, 1), TR_ROW(TR_HI, 2), TR_ROW(TR_HI, 4),
                                       TR_ROW(TR_HI, 8)};
#undef TR_LO
#undef TR_HI
#undef TR_ROW

/* dst[k*ldd + j] = j < rows ? src[j*lds + k] : 0 for k < VW, j < n: a VW x VW block whose rows
 * past `rows` (<= VW) are zeros, transposed in registers by log2(VW) rounds of two-vector
 * shuffles (row pairs b apart swap their off-diagonal halves); n (<= VW) columns are stored. */
static inline __attribute__((always_inline)) void FN(transpose_tile)(
    const real *src, int64_t lds, int64_t rows, real *dst, int64_t ldd, int64_t n)
{
    V r[VW];
#pragma GCC unroll 16
    for (int j = 0; j < VW; j++) r[j] = j < rows ? FN(vload)(src + j * lds) : FN(vdup)(0);
#pragma GCC unroll 4
    for (int round = 0, b = 1; b < VW; round++, b *= 2) {
        VI lo, hi;
        memcpy(&lo, FN(tr_lo)[round], sizeof lo);
        memcpy(&hi, FN(tr_hi)[round], sizeof hi);
#pragma GCC unroll 16
        for (int i = 0; i < VW; i++)
            if (!(i & b)) {
                const V a = r[i], c = r[i + b];
                r[i] = __builtin_shuffle(a, c, lo);
                r[i + b] = __builtin_shuffle(a, c, hi);
            }
    }
#pragma GCC unroll 16
    for (int k = 0; k < VW; k++) FN(vstore_n)(dst + k * ldd, r[k], n);
}

/* dst[k*ldd + j] = j < rows ? src[j*lds + k] : 0 for j < VW, k < K: a strip of `rows` (<= VW)
 * rows of src transposed, zero-padded to VW columns. */
static void FN(transpose_strip)(const real *src, int64_t lds, int64_t rows, int64_t K, real *dst,
                                int64_t ldd)
{
    int64_t k = 0;
    for (; k + VW <= K; k += VW) FN(transpose_tile)(src + k, lds, rows, dst + k * ldd, ldd, VW);
    for (; k < K; k++)
        for (int64_t j = 0; j < VW; j++) dst[k * ldd + j] = j < rows ? src[j * lds + k] : 0;
}

/* Forward tiles of `width` units (a multiple of VW), all gates of the same units together:
 *     out[p][k][g][j] = w[(g*H + p*width + j)*H + k]   (0 for units >= H)
 * w: [G*H,H] rows of G gate blocks; out: [ntiles][H][G][width]; tiles p in [p0, p1) only. */
static void FN(pack_tiles)(const real *w, int64_t H, int G, int64_t width, int64_t p0,
                           int64_t p1, real *out)
{
    const int64_t tile = (int64_t)G * width;
    for (int64_t p = p0; p < p1; p++)
        for (int g = 0; g < G; g++)
            for (int64_t j = 0; j < width; j += VW) {
                const int64_t first = p * width + j;
                const int64_t rows = H - first <= 0 ? 0 : H - first < VW ? H - first : VW;
                FN(transpose_strip)(rows ? w + (g * H + first) * H : w, H, rows, H,
                                    out + p * H * tile + g * width + j, tile);
            }
}

/* Backward panels of `width` units: out[p][k][j] = w[k*H + p*width + j] for k < K (0 for units
 * >= H). w: [K,H]; out: [ntiles][K][width]; tiles p in [p0, p1) only. */
static void FN(pack_panels)(const real *w, int64_t K, int64_t H, int64_t width, int64_t p0,
                            int64_t p1, real *out)
{
    for (int64_t p = p0; p < p1; p++) {
        const int64_t first = p * width;
        const int64_t n = H - first < width ? H - first : width;
        real *o = out + p * K * width;
        for (int64_t k = 0; k < K; k++) {
            memcpy(o + k * width, w + k * H + first, (size_t)n * sizeof(real));
            for (int64_t j = n; j < width; j++) o[k * width + j] = 0;
        }
    }
}

/* ---- the blocked GEMM:  C[M,N] (+)= A[M,K] B[K,N] with strided views ----
 * A(m, k) = A[m*rsa + k*csa], B(k, n) = B[k*rsb + n*csb], C row-major with ldc.
 * Per K block of GEMM_KC: the team packs B into panels [KC][NR] in `bpack` (shared, at least
 * GEMM_KC * roundup(N, 32) reals), one barrier, then every thread packs its own A blocks
 * [MC x KC] on its stack and runs the micro-kernel over them. Threads share N panels (or M
 * blocks when there are more of those); the split never changes any element's arithmetic.
 * KC = 256 rather than 128 halves the passes over C (one per K block): large GEMMs went from
 * 75-93 to 92-117 GFLOP/s on one core (benchmarks/kernel_parts.c `gemm`); A blocks stay
 * 48 KiB, a small part of a thread's stack. */
#define GEMM_KC PYRNN_GEMM_KC
#define GEMM_NV 2
#define GEMM_NR (GEMM_NV * VW)
#define GEMM_MR MR_FOR(GEMM_NV)
#define GEMM_MC (49152 / (GEMM_KC * (int)sizeof(real)) / GEMM_MR * GEMM_MR)
/* An operand is read where it is, unpacked, when its layout is what the micro-kernel reads
 * (A with rsa 1, B with csb 1), A and B have at most GEMM_UNPACKED_BYTES together (the L2 of
 * the machine measured), so they stay in a core's L2, and its lines (a row of B, a column of
 * A) are at most GEMM_UNPACKED_STRIDE bytes apart, so the kc of them a micro-tile reads spread
 * over at least a quarter of L1's sets (lines 1 KiB or more apart share a sixteenth or less of
 * them and evict one another). On one core (benchmarks/kernel_parts.c `gemm`, the best of
 * 2000 rounds, AMD Zen 3, 32 KiB L1, 512 KiB L2): RNN 100x1x32x64's weight gradients, 64 x 32
 * and 64 x 64 over K = 100, 53-69 GFLOP/s packed, 77-93 unpacked (its forward+backward
 * 0.93-0.95 of the time: benchmarks/RESULTS.md); a one-step LSTM call's dw_ih at B=32
 * I=H=512, dg^T 8 KiB a column, 77-78 packed and 50-68 unpacked. */
#define GEMM_UNPACKED_BYTES (512 << 10)
#define GEMM_UNPACKED_STRIDE 256

struct FN(gemm) {
    int64_t M, N, K;
    const real *A;
    int64_t rsa, csa;
    const real *B;
    int64_t rsb, csb;
    real *C;
    int64_t ldc;
    int accumulate;
    real *bpack;
};

/* A's block [m0, m0+mc) x [k0, k0+kc) into micro-panels [kc][GEMM_MR] of GEMM_MR rows (the last
 * may have fewer; its other lanes are not read). Whole micro-panels take vector paths with
 * constant sizes: rows of A (csa 1) transposed VW x VW at a time, columns of A (rsa 1) copied
 * a k at a time across the block, so each line of A is read once. */
static void FN(pack_a)(const struct FN(gemm) *g, int64_t m0, int64_t mc, int64_t k0,
                       int64_t kc, real *out)
{
    if (g->rsa == 1) {
        for (int64_t k = 0; k < kc; k++) {
            const real *src = g->A + m0 + (k0 + k) * g->csa;
            int64_t i0 = 0;
            for (; i0 + GEMM_MR <= mc; i0 += GEMM_MR)
                for (int i = 0; i < GEMM_MR; i++) out[i0 * kc + k * GEMM_MR + i] = src[i0 + i];
            for (int64_t i = 0; i0 + i < mc; i++) out[i0 * kc + k * GEMM_MR + i] = src[i0 + i];
        }
        return;
    }
    for (int64_t i0 = 0; i0 < mc; i0 += GEMM_MR) {
        const int64_t mr = mc - i0 < GEMM_MR ? mc - i0 : GEMM_MR;
        real *o = out + i0 * kc;  /* micro-panel [kc][GEMM_MR] */
        const real *src = g->A + (m0 + i0) * g->rsa + k0 * g->csa;
        int64_t k = 0;
        if (mr == GEMM_MR && g->csa == 1)
            for (; k + VW <= kc; k += VW)
#pragma GCC unroll 2
                for (int j = 0; j < GEMM_MR; j += VW) {
                    const int n = GEMM_MR - j < VW ? GEMM_MR - j : VW;
                    FN(transpose_tile)(src + j * g->rsa + k, g->rsa, n, o + k * GEMM_MR + j,
                                       GEMM_MR, n);
                }
        for (; k < kc; k++)
            for (int64_t i = 0; i < mr; i++) o[k * GEMM_MR + i] = src[i * g->rsa + k * g->csa];
    }
}

static void FN(pack_b)(const struct FN(gemm) *g, int64_t p, int64_t k0, int64_t kc, real *out)
{
    const int64_t n0 = p * GEMM_NR, nr = g->N - n0 < GEMM_NR ? g->N - n0 : GEMM_NR;
    const real *src = g->B + k0 * g->rsb + n0 * g->csb;
    /* whole rows as vectors: memcpy was a call a row (dx's GEMM of a one-step call of B=256
     * I=H=512 on one core, `kernel_parts gemm 256 512 2048 2 2000`: 75-80 -> 85-86 GFLOP/s) */
    if (g->csb == 1 && nr == GEMM_NR) {
        for (int64_t k = 0; k < kc; k++)
#pragma GCC unroll 4
            for (int v = 0; v < GEMM_NV; v++)
                FN(vstore)(out + k * GEMM_NR + v * VW, FN(vload)(src + k * g->rsb + v * VW));
    } else if (g->csb == 1) {
        for (int64_t k = 0; k < kc; k++) {
            memcpy(out + k * GEMM_NR, src + k * g->rsb, (size_t)nr * sizeof(real));
            for (int64_t n = nr; n < GEMM_NR; n++) out[k * GEMM_NR + n] = 0;
        }
    } else if (g->rsb == 1) {  /* B^T is row-major: transpose strips of VW columns */
        for (int64_t n = 0; n < GEMM_NR; n += VW) {
            const int64_t rows = nr - n < 0 ? 0 : (nr - n < VW ? nr - n : VW);
            FN(transpose_strip)(src + n * g->csb, g->csb, rows, kc, out + n, GEMM_NR);
        }
    } else {
        for (int64_t k = 0; k < kc; k++)
            for (int64_t n = 0; n < GEMM_NR; n++)
                out[k * GEMM_NR + n] = n < nr ? src[n * g->csb + k * g->rsb] : 0;
    }
}

/* Asks for C's rows [m0, m0 + rows) x [n0, n0 + GEMM_NR) that a micro-tile will read and write,
 * a tile ahead, so that they arrive while the tile before computes. C's rows are far apart (a
 * gates row: 16 KiB at LSTM H=1024) and the tiles visit them a few lines at a time, which no
 * hardware prefetcher follows: each tile waited on its C before its first FMA. Inlined: as a
 * function of its own, GCC took it for one without effects (prefetches only) and dropped its
 * calls. */
static inline __attribute__((always_inline)) void FN(prefetch_c_tile)(const struct FN(gemm) *g,
                                                                      int64_t m0, int64_t rows,
                                                                      int64_t n0)
{
    const int64_t bytes = (g->N - n0 < GEMM_NR ? g->N - n0 : GEMM_NR) * (int64_t)sizeof(real);
    for (int64_t r = 0; r < rows && bytes > 0; r++) {
        const char *row = (const char *)(g->C + (m0 + r) * g->ldc + n0);
        for (int64_t at = 0; at < bytes; at += 64) __builtin_prefetch(row + at, 1, 3);
        __builtin_prefetch(row + bytes - 1, 1, 3);
    }
}

static void FN(gemm_body)(void *ctx, int tid, int nth)
{
    const struct FN(gemm) *g = ctx;
    const int64_t npan = (g->N + GEMM_NR - 1) / GEMM_NR;
    const int64_t nmb = (g->M + GEMM_MC - 1) / GEMM_MC;
    const int split_n = npan >= nmb;
    int64_t p0, p1, m0, m1;
    pyrnn_share(npan, tid, nth, &p0, &p1);
    pyrnn_share(nmb, tid, nth, &m0, &m1);
    const int64_t pb = split_n ? p0 : 0, pe = split_n ? p1 : npan;
    const int64_t mb = split_n ? 0 : m0, me = split_n ? nmb : m1;
    const int small = (g->M + g->N) * g->K * (int64_t)sizeof(real) <= GEMM_UNPACKED_BYTES;
    /* B's whole panels read where they are when its rows run along n and A is one row block
     * (split_n: each thread reads its own panels): packed, each would be copied for the one
     * block that reads it. A one-step call of B=32 copied its weights whole so (dx, dh0: K =
     * G*H; LSTM T=1 B=32 I=H=512 fwd+bwd 0.76-0.78 of the time without it, GRU 0.74:
     * benchmarks/RESULTS.md). Small ones with close rows are read in place too. */
    const int in_place =
        g->csb == 1 &&
        (nmb == 1 || (small && g->rsb * (int64_t)sizeof(real) <= GEMM_UNPACKED_STRIDE));
    /* A with its columns along m (rsa 1: the weight gradients' dg^T) is what the micro-kernel
     * reads, k-major: a small one with close columns is not packed. */
    const int a_in_place =
        g->rsa == 1 && small && g->csa * (int64_t)sizeof(real) <= GEMM_UNPACKED_STRIDE;
    /* With one row block, no thread reads another's panels either: each is packed right
     * before its products, into the thread's one slot, where it is still in L1, and the team
     * needs no barrier. Packed all first, a one-step call of B=32 wrote its transposed
     * weights whole (LSTM I=H=512: 4 MiB for each of its two products) and read them back. */
    const int own_panels = split_n && nmb == 1;
    real *const slot = g->bpack + p0 * GEMM_KC * GEMM_NR;
    real apack[GEMM_MC * GEMM_KC] __attribute__((aligned(64)));
    real ctile[GEMM_MR * GEMM_NR] __attribute__((aligned(64)));

    for (int64_t k0 = 0; k0 < g->K; k0 += GEMM_KC) {
        const int64_t kc = g->K - k0 < GEMM_KC ? g->K - k0 : GEMM_KC;
        const int load = k0 > 0 || g->accumulate;
        if (!own_panels) {
            if (k0 > 0) pyrnn_barrier(nth);  /* everyone is done with the previous panels */
            for (int64_t p = p0; p < p1; p++)
                if (!in_place || g->N - p * GEMM_NR < GEMM_NR)
                    FN(pack_b)(g, p, k0, kc, g->bpack + p * kc * GEMM_NR);
            pyrnn_barrier(nth);
        }
        for (int64_t ib = mb; ib < me; ib++) {
            const int64_t i0 = ib * GEMM_MC, mc = g->M - i0 < GEMM_MC ? g->M - i0 : GEMM_MC;
            if (!a_in_place) FN(pack_a)(g, i0, mc, k0, kc, apack);
            for (int64_t p = pb; p < pe; p++) {
                const int64_t n0 = p * GEMM_NR;
                const int64_t nr = g->N - n0 < GEMM_NR ? g->N - n0 : GEMM_NR;
                const int direct = in_place && nr == GEMM_NR;
                if (own_panels && !direct) FN(pack_b)(g, p, k0, kc, slot);
                const real *bp = direct       ? g->B + k0 * g->rsb + n0
                                 : own_panels ? slot
                                              : g->bpack + p * kc * GEMM_NR;
                const int64_t ldb = direct ? g->rsb : GEMM_NR;
                for (int64_t i = 0; i < mc; i += GEMM_MR) {
                    const int mr = mc - i < GEMM_MR ? (int)(mc - i) : GEMM_MR;
                    real *cp = g->C + (i0 + i) * g->ldc + n0;
                    if (i + GEMM_MR < mc)  /* the next tile: this panel's, or the next one's */
                        FN(prefetch_c_tile)(g, i0 + i + GEMM_MR,
                                            mc - i - GEMM_MR < GEMM_MR ? mc - i - GEMM_MR
                                                                       : GEMM_MR,
                                            n0);
                    else if (p + 1 < pe)
                        FN(prefetch_c_tile)(g, i0, mc < GEMM_MR ? mc : GEMM_MR, n0 + GEMM_NR);
                    const real *ap = a_in_place ? g->A + i0 + i + k0 * g->csa : apack + i * kc;
                    const int64_t lda = a_in_place ? g->csa : GEMM_MR;
                    if (nr == GEMM_NR) {
                        FN(mk)(mr, GEMM_NV, kc, ap, lda, bp, ldb, cp, g->ldc, load,
                               (const char *)bp, 0);
                        continue;
                    }
                    /* the last, partial panel goes through a full-width tile */
                    for (int r = 0; r < mr && load; r++)
                        memcpy(ctile + r * GEMM_NR, cp + r * g->ldc, (size_t)nr * sizeof(real));
                    FN(mk)(mr, GEMM_NV, kc, ap, lda, bp, GEMM_NR, ctile, GEMM_NR, load,
                           (const char *)bp, 0);
                    for (int r = 0; r < mr; r++)
                        memcpy(cp + r * g->ldc, ctile + r * GEMM_NR, (size_t)nr * sizeof(real));
                }
            }
        }
    }
}

/* ---- a GEMM of few rows: C (+)= A B with B read where it is, unpacked ----
 * With M <= GEMM_FEW_ROWS (a one-step call's input projection, its recurrent product and dh0
 * (cell_common.h fold_one_step), a short sequence's dx), packing B, the weights, costs more
 * than the product: in an LSTM call of T=1 B=1 I=H=512 the packing of the tiles and of the GEMM
 * panels took 3/4 of the time (benchmarks/RESULTS.md). B with rows along n (csb 1) goes as sums
 * of its rows; B with columns along k (rsb 1, A's rows contiguous too) as dot products, from
 * K >= FEW_DOT_MIN_K (below it the lane sums cost more than the packing: LSTM T=1 I=32 H=128
 * 1.03x the time). Four output vectors or dot products at a time, and for a lone row two chains
 * over interleaved k, keep eight accumulators in flight. Each element is one thread's, summed
 * in an order that does not depend on the thread count. */
#define GEMM_FEW_ROWS 2
#define FEW_GROUP 4
#define FEW_DOT_MIN_K (8 * VW)

static inline real FN(lane_sum)(V v)
{
    real s = 0;
    for (int l = 0; l < VW; l++) s += v[l];
    return s;
}

/* One group of FEW_GROUP vectors of C's M rows as sums of B's rows (csb 1), from n0: w[v] is
 * vector v's width, 0 past N. Each row's element is GEMM_FEW_ROWS / M chains of FMAs over
 * interleaved k, added in order at the end, so that one row keeps as many chains in flight as
 * two. Every loop but k's unrolls, which keeps the accumulators in registers (with a chain
 * index that varied at run time they lived on the stack: T=1 B=1 I=H=128 RNN inference spent
 * 69% of its time here, benchmarks/RESULTS.md); whole: every vector of the group is VW wide. */
static inline __attribute__((always_inline)) void FN(few_rows_sums_group)(
    const int M, const int whole, const struct FN(gemm) *g, int64_t n0, const int64_t *w)
{
    const int split = GEMM_FEW_ROWS / M;
    const int64_t K = g->K;
    V acc[GEMM_FEW_ROWS][FEW_GROUP];  /* row m's chain c: acc[m * split + c] */
#pragma GCC unroll 2
    for (int r = 0; r < GEMM_FEW_ROWS; r++)
#pragma GCC unroll 4
        for (int v = 0; v < FEW_GROUP; v++)
            acc[r][v] = r % split == 0 && g->accumulate && w[v]
                            ? FN(vload_n)(g->C + (r / split) * g->ldc + n0 + v * VW, w[v])
                            : FN(vdup)(0);
    int64_t k = 0;
    for (; k + split <= K; k += split)
#pragma GCC unroll 2
        for (int c = 0; c < split; c++) {
            const real *row = g->B + (k + c) * g->rsb + n0;
            V b[FEW_GROUP];
#pragma GCC unroll 4
            for (int v = 0; v < FEW_GROUP; v++)
                b[v] = whole ? FN(vload)(row + v * VW)
                             : w[v] ? FN(vload_n)(row + v * VW, w[v]) : FN(vdup)(0);
#pragma GCC unroll 2
            for (int m = 0; m < M; m++) {
                const real a = g->A[m * g->rsa + (k + c) * g->csa];
#pragma GCC unroll 4
                for (int v = 0; v < FEW_GROUP; v++) acc[m * split + c][v] += a * b[v];
            }
        }
    if (k < K) {  /* one k left over (split 2, K odd): chain 0's, as in its turn */
        const real *row = g->B + k * g->rsb + n0;
#pragma GCC unroll 2
        for (int m = 0; m < M; m++) {
            const real a = g->A[m * g->rsa + k * g->csa];
#pragma GCC unroll 4
            for (int v = 0; v < FEW_GROUP; v++)
                if (w[v]) acc[m * split][v] += a * FN(vload_n)(row + v * VW, w[v]);
        }
    }
#pragma GCC unroll 2
    for (int m = 0; m < M; m++)
#pragma GCC unroll 4
        for (int v = 0; v < FEW_GROUP; v++)
            if (w[v]) {
                V sum = acc[m * split][v];
                for (int c = 1; c < split; c++) sum += acc[m * split + c][v];
                FN(vstore_n)(g->C + m * g->ldc + n0 + v * VW, sum, w[v]);
            }
}

/* C's M rows as sums of B's rows (csb 1): vector groups [v0, v1) of FEW_GROUP vectors. */
static inline __attribute__((always_inline)) void FN(few_rows_sums_body)(
    const int M, const struct FN(gemm) *g, int64_t v0, int64_t v1)
{
    const int64_t N = g->N;
    for (int64_t grp = v0; grp < v1; grp++) {
        const int64_t n0 = grp * FEW_GROUP * VW;
        int64_t w[FEW_GROUP];  /* the group's vectors' widths, 0 past N */
        for (int v = 0; v < FEW_GROUP; v++) {
            const int64_t left = N - n0 - v * VW;
            w[v] = left <= 0 ? 0 : left < VW ? left : VW;
        }
        if (w[FEW_GROUP - 1] == VW)
            FN(few_rows_sums_group)(M, 1, g, n0, w);
        else
            FN(few_rows_sums_group)(M, 0, g, n0, w);
    }
}

/* C's M rows as dot products with B's columns (rsb 1, csa 1): output groups [q0, q1) of
 * FEW_GROUP, GEMM_FEW_ROWS / M chains a dot product over interleaved vectors of k (the last,
 * partial slice's vectors all chain 0's). Unrolled as the sums are; a group short of
 * FEW_GROUP columns (the last) computes its first column again in the place of each missing
 * one, and stores only its own. */
static inline __attribute__((always_inline)) void FN(few_rows_dots_body)(
    const int M, const struct FN(gemm) *g, int64_t q0, int64_t q1)
{
    const int split = GEMM_FEW_ROWS / M;
    const int64_t N = g->N, K = g->K, whole_k = K / (split * VW) * (split * VW);
    for (int64_t q = q0; q < q1; q++) {
        const int64_t n0 = q * FEW_GROUP, nn = N - n0 < FEW_GROUP ? N - n0 : FEW_GROUP;
        const real *col[FEW_GROUP];
        for (int j = 0; j < FEW_GROUP; j++) col[j] = g->B + (n0 + (j < nn ? j : 0)) * g->csb;
        V acc[GEMM_FEW_ROWS][FEW_GROUP];  /* row m's chain c: acc[m * split + c] */
#pragma GCC unroll 2
        for (int r = 0; r < GEMM_FEW_ROWS; r++)
#pragma GCC unroll 4
            for (int j = 0; j < FEW_GROUP; j++) acc[r][j] = FN(vdup)(0);
        for (int64_t k0 = 0; k0 < whole_k; k0 += split * VW)
#pragma GCC unroll 2
            for (int c = 0; c < split; c++) {
                const int64_t k = k0 + c * VW;
                V b[FEW_GROUP];
#pragma GCC unroll 4
                for (int j = 0; j < FEW_GROUP; j++) b[j] = FN(vload)(col[j] + k);
#pragma GCC unroll 2
                for (int m = 0; m < M; m++) {
                    const V a = FN(vload)(g->A + m * g->rsa + k);
#pragma GCC unroll 4
                    for (int j = 0; j < FEW_GROUP; j++) acc[m * split + c][j] += a * b[j];
                }
            }
        for (int64_t k = whole_k; k < K; k += VW) {
            const int64_t kn = K - k < VW ? K - k : VW;
            V b[FEW_GROUP];
#pragma GCC unroll 4
            for (int j = 0; j < FEW_GROUP; j++) b[j] = FN(vload_n)(col[j] + k, kn);
#pragma GCC unroll 2
            for (int m = 0; m < M; m++) {
                const V a = FN(vload_n)(g->A + m * g->rsa + k, kn);
#pragma GCC unroll 4
                for (int j = 0; j < FEW_GROUP; j++) acc[m * split][j] += a * b[j];
            }
        }
        for (int m = 0; m < M; m++)
            for (int64_t j = 0; j < nn; j++) {
                V sum = acc[m * split][j];
                for (int c = 1; c < split; c++) sum += acc[m * split + c][j];
                real *out = g->C + m * g->ldc + n0 + j;
                *out = (g->accumulate ? *out : 0) + FN(lane_sum)(sum);
            }
    }
}

/* The few-rows path's groups: of FEW_GROUP vectors (sums) or of FEW_GROUP outputs (dots). */
static inline int64_t FN(few_rows_groups)(const struct FN(gemm) *g)
{
    return ((g->csb == 1 ? (g->N + VW - 1) / VW : g->N) + FEW_GROUP - 1) / FEW_GROUP;
}

static void FN(gemm_few_rows)(void *ctx, int tid, int nth)
{
    const struct FN(gemm) *g = ctx;
    int64_t q0, q1;
    pyrnn_share(FN(few_rows_groups)(g), tid, nth, &q0, &q1);
    if (g->csb == 1 && g->M == 1)
        FN(few_rows_sums_body)(1, g, q0, q1);
    else if (g->csb == 1)
        FN(few_rows_sums_body)(2, g, q0, q1);
    else if (g->M == 1)
        FN(few_rows_dots_body)(1, g, q0, q1);
    else
        FN(few_rows_dots_body)(2, g, q0, q1);
}

/* The work, in flops, that reading `bytes` of weights counts for in choosing threads: 2 MFLOP
 * per L1 of them, as each thread then reads its share from its own L2, from `from_l1s` L1s on
 * (cell_common.h loop_threads: weights read every step, from one L1; gemm_run: B of few rows,
 * read once, from FEW_ROWS_SPLIT_L1S). */
static inline double FN(streamed_work)(double bytes, double from_l1s)
{
    const double l1 = (double)pyrnn_l1d_bytes();
    return bytes >= from_l1s * l1 ? 2e6 * bytes / l1 : 0.0;
}

/* A few rows' B is read once: from L2, one core reads a few L1s of it sooner than a team starts
 * and ends, so it counts as work from FEW_ROWS_SPLIT_L1S L1s on (benchmarks/kernel_parts.c
 * `gemm 1 3H H 0`, hot, one thread / two, GFLOP/s: H=64, 48 KiB, 19.2 / 12.6; H=96, 108 KiB,
 * 25.0 / 23.5; H=128, 192 KiB, 27.3 / 31.2; H=192 24.2 / 47.0). From one L1, as the time
 * loops count their weights, a one-step call of B=1 H=64 started teams for its input
 * projection and its folded product: benchmarks/RESULTS.md. */
#define FEW_ROWS_SPLIT_L1S 4.0

/* Whether gemm_run takes the few-rows path for these sizes and strides. */
static inline int FN(gemm_is_few_rows)(int64_t M, int64_t K, int64_t rsb, int64_t csb,
                                       int64_t csa)
{
    return M <= GEMM_FEW_ROWS && (csb == 1 || (rsb == 1 && csa == 1 && K >= FEW_DOT_MIN_K));
}

/* C = A B (accumulate = 0) or C += A B, on a team sized to the work: a thread per 0.6 MFLOP (of
 * few rows, counting the bytes of B read as work too).
 * The GEMMs of LSTM 100x1x32x64 (1.6 MFLOP forward, 1.6 to 3.3 in backward) gained from a
 * second thread: forward 0.048 -> 0.045 ms, forward+backward 0.122 -> 0.112 (4 MFLOP a thread
 * before; benchmarks/time_kernel.py, builds alternated). */
static void FN(gemm_run)(int64_t M, int64_t N, int64_t K, const real *A, int64_t rsa,
                         int64_t csa, const real *B, int64_t rsb, int64_t csb, real *C,
                         int64_t ldc, int accumulate, real *bpack)
{
    struct FN(gemm) g = {M, N, K, A, rsa, csa, B, rsb, csb, C, ldc, accumulate, bpack};
    const double flops = 2.0 * (double)M * (double)N * (double)K;
    if (FN(gemm_is_few_rows)(M, K, rsb, csb, csa)) {
        const double read = FN(streamed_work)((double)K * (double)N * sizeof(real),
                                              FEW_ROWS_SPLIT_L1S);
        pyrnn_team(pyrnn_threads_for(flops > read ? flops : read, 6e5, FN(few_rows_groups)(&g),
                                     flops),
                   FN(gemm_few_rows), &g);
        return;
    }
    const int64_t npan = (N + GEMM_NR - 1) / GEMM_NR, nmb = (M + GEMM_MC - 1) / GEMM_MC;
    const int nth = pyrnn_threads_for(flops, 6e5, npan > nmb ? npan : nmb, flops);
    pyrnn_team(nth, FN(gemm_body), &g);
}

/* sums[n] = sum over m of A[m*lda + n], rows in order (one thread: two were slower, as half of
 * each one's columns came from the other core's cache). Row by row, with the sums in L1: down
 * the columns, each load was another line a row's length away, which the prefetchers missed
 * (T*B = 1600 rows of 4H = 512: 290 -> 114 us). */
static void FN(column_sums)(int64_t M, int64_t N, const real *A, int64_t lda, real *sums)
{
    memset(sums, 0, (size_t)N * sizeof(real));
    for (int64_t m = 0; m < M; m++)
        for (int64_t n0 = 0; n0 < N; n0 += VW) {
            const int64_t n = N - n0 < VW ? N - n0 : VW;
            FN(vstore_n)(sums + n0, FN(vload_n)(sums + n0, n) + FN(vload_n)(A + m * lda + n0, n),
                         n);
        }
}
