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
