/* Vectors of `real` for one instruction set: GCC vector extensions of PYRNN_VBYTES bytes, which
 * the target pragma of the including isa_*.c lowers to zmm, ymm or xmm registers.
 *
 * Included once per data type by kernels_impl.h with real, ireal (the same-width integer),
 * SFX and FN(name) defined. Defines V (vector), VI (integer vector), VW (reals per vector).
 * No include guard on purpose. */

#define VW (PYRNN_VBYTES / (int)sizeof(real))
typedef real PYRNN_CAT(vec_, SFX) __attribute__((vector_size(PYRNN_VBYTES)));
typedef ireal PYRNN_CAT(ivec_, SFX) __attribute__((vector_size(PYRNN_VBYTES)));
#define V PYRNN_CAT(vec_, SFX)
#define VI PYRNN_CAT(ivec_, SFX)

static inline V FN(vload)(const real *p)
{
    V v;
    memcpy(&v, p, sizeof v);  /* an unaligned vector load */
    return v;
}

static inline void FN(vstore)(real *p, V v) { memcpy(p, &v, sizeof v); }

static inline V FN(vdup)(real s)
{
    V v;  /* element by element, which compilers turn into one broadcast (0 + s would lose -0) */
    for (int i = 0; i < VW; i++) v[i] = s;
    return v;
}

/* The first n (1..VW) reals at p, zeros after: loads of the last, partial unit block. */
static inline V FN(vload_n)(const real *p, int64_t n)
{
    if (n == VW) return FN(vload)(p);
    V v = {0};
    memcpy(&v, p, (size_t)n * sizeof(real));
    return v;
}

static inline void FN(vstore_n)(real *p, V v, int64_t n)
{
    if (n == VW)
        FN(vstore)(p, v);
    else
        memcpy(p, &v, (size_t)n * sizeof(real));
}

/* Element-wise m ? a : b for a comparison mask m (all bits set or clear per element). */
static inline V FN(vselect)(VI m, V a, V b) { return (V)((m & (VI)a) | (~m & (VI)b)); }

/* Element-wise max(lo, x) and min(hi, x). x86's max and min return their second operand when
 * either one is NaN, so NaN in x passes through, as with the compare-and-select below; that
 * select takes three instructions on AVX-512 (the compare's mask turned back into a vector)
 * where these take one (sigmoid 3.0 -> 2.3 ns per 16 values, tanh 3.7 -> 2.7:
 * benchmarks/kernel_parts.c `act`). */
#if (defined(__x86_64__) || defined(__i386__)) && (PYRNN_VBYTES != 16 || defined(__SSE2__))
#include <immintrin.h>
#if PYRNN_VBYTES == 64 && PYRNN_REAL_IS_DOUBLE
#define PYRNN_VMAX(a, b) (V) _mm512_max_pd((__m512d)(a), (__m512d)(b))
#define PYRNN_VMIN(a, b) (V) _mm512_min_pd((__m512d)(a), (__m512d)(b))
#elif PYRNN_VBYTES == 64
#define PYRNN_VMAX(a, b) (V) _mm512_max_ps((__m512)(a), (__m512)(b))
#define PYRNN_VMIN(a, b) (V) _mm512_min_ps((__m512)(a), (__m512)(b))
#elif PYRNN_VBYTES == 32 && PYRNN_REAL_IS_DOUBLE
#define PYRNN_VMAX(a, b) (V) _mm256_max_pd((__m256d)(a), (__m256d)(b))
#define PYRNN_VMIN(a, b) (V) _mm256_min_pd((__m256d)(a), (__m256d)(b))
#elif PYRNN_VBYTES == 32
#define PYRNN_VMAX(a, b) (V) _mm256_max_ps((__m256)(a), (__m256)(b))
#define PYRNN_VMIN(a, b) (V) _mm256_min_ps((__m256)(a), (__m256)(b))
#elif PYRNN_REAL_IS_DOUBLE
#define PYRNN_VMAX(a, b) (V) _mm_max_pd((__m128d)(a), (__m128d)(b))
#define PYRNN_VMIN(a, b) (V) _mm_min_pd((__m128d)(a), (__m128d)(b))
#else
#define PYRNN_VMAX(a, b) (V) _mm_max_ps((__m128)(a), (__m128)(b))
#define PYRNN_VMIN(a, b) (V) _mm_min_ps((__m128)(a), (__m128)(b))
#endif
static inline V FN(vmax)(V lo, V x) { return PYRNN_VMAX(lo, x); }
static inline V FN(vmin)(V hi, V x) { return PYRNN_VMIN(hi, x); }
#undef PYRNN_VMAX
#undef PYRNN_VMIN
#else
static inline V FN(vmax)(V lo, V x) { return FN(vselect)(x < lo, lo, x); }
static inline V FN(vmin)(V hi, V x) { return FN(vselect)(x > hi, hi, x); }
#endif
