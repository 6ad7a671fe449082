/* Vectorised sigmoid and tanh (and relu), the activations of every cell; the counterpart of the
 * activations in pyrnn/ref/common.py. Included once per data type by kernels_impl.h after
 * simd.h. No include guard on purpose.
 *
 * Both rest on exp(u) = 2^n * (1 + q(r)): n = round(u / ln 2), r = u - n ln 2 (|r| <= ln2/2, two
 * constants so n ln 2 is exact), q = expm1(r) by its Taylor series (degree 7 for float, 13 for
 * double: truncation below 2^-26 and 2^-55 relative). Then
 *     sigmoid(x) = 1 / (1 + exp(-x)),  -x clamped to [-87, 88] (float) / [-708, 709] (double)
 *     tanh(x) = sign(x) * e / (e + 2), e = expm1(2|x|) = 2^n q + (2^n - 1), 2|x| clamped to
 *               20 (float) / 40 (double), where tanh rounds to 1
 * Computing tanh through expm1 keeps its relative error small near 0, where tanh(x) ~ x.
 * Error bound (checked by tests/test_c_kernels.py on dense samples against long double, on
 * every instruction set): relative error at most 2 eps (eps = 2^-23 for float, 2^-52 for
 * double; measured 1.5 eps) wherever the result is a normal number, and absolute error below the
 * smallest normal number elsewhere (sigmoid of x < -87 in float, x < -708 in double). NaN
 * propagates; +-inf give the limits. */

#define ACT_SIGMOID 0
#define ACT_TANH 1

/* 2^n and q with exp(u) = 2^n (1 + q), for u already clamped to the finite range. */
static inline void FN(exp_parts)(V u, V *scale, V *q)
{
#if PYRNN_REAL_IS_DOUBLE
    const real log2e = 1.4426950408889634074, magic = 6755399441055744.0;  /* 1.5 * 2^52 */
    const real ln2_hi = 6.93147180369123816490e-01, ln2_lo = 1.90821492927058770002e-10;
    const int mant = 52;
    const ireal bias = 1023;
#else
    const real log2e = 1.44269504088896341f, magic = 12582912.0f;  /* 1.5 * 2^23 */
    const real ln2_hi = 0.693359375f, ln2_lo = -2.12194440e-4f;
    const int mant = 23;
    const ireal bias = 127;
#endif
    /* adding 1.5 * 2^mant rounds to an integer that then sits in the low mantissa bits */
    const V t = u * log2e + magic;
    const V n = t - magic;
    V r = u - n * ln2_hi;
    r = r - n * ln2_lo;
    /* expm1(r) = r + r^2 p(r), p(r) = 1/2! + r/3! + r^2/4! + ...: Estrin's scheme, whose
     * dependency chain is half Horner's (batch 1 waits on it every step) */
    const V r2 = r * r, r4 = r2 * r2;
#if PYRNN_REAL_IS_DOUBLE
    const V p01 = r * (1.0 / 6.0) + 0.5, p23 = r * (1.0 / 120.0) + 1.0 / 24.0;
    const V p45 = r * (1.0 / 5040.0) + 1.0 / 720.0, p67 = r * (1.0 / 362880.0) + 1.0 / 40320.0;
    const V p89 = r * (1.0 / 39916800.0) + 1.0 / 3628800.0;
    const V pab = r * (1.0 / 6227020800.0) + 1.0 / 479001600.0;  /* 1/12!, 1/13! */
    const V q0 = r2 * p23 + p01, q1 = r2 * p67 + p45, q2 = r2 * pab + p89;
    const V p = (r4 * r4) * q2 + (r4 * q1 + q0);
#else
    const V p01 = r * (1.0f / 6.0f) + 0.5f, p23 = r * (1.0f / 120.0f) + 1.0f / 24.0f;
    const V p45 = r * (1.0f / 5040.0f) + 1.0f / 720.0f;  /* up to 1/7! */
    const V p = r4 * p45 + (r2 * p23 + p01);
#endif
    *q = r2 * p + r;
    const VI ni = (VI)t - (VI)FN(vdup)(magic);
    *scale = (V)((ni + bias) << mant);
}

static inline V FN(vclamp)(V x, real lo, real hi)
{
    return FN(vmin)(FN(vdup)(hi), FN(vmax)(FN(vdup)(lo), x));  /* NaN passes through */
}

static inline V FN(vsigmoid)(V x)
{
#if PYRNN_REAL_IS_DOUBLE
    const V u = FN(vclamp)(-x, -708.0, 709.0);
#else
    const V u = FN(vclamp)(-x, -87.0f, 88.0f);
#endif
    V scale, q;
    FN(exp_parts)(u, &scale, &q);
    return (real)1 / ((real)1 + (scale + scale * q));
}

static inline V FN(vtanh)(V x)
{
    const VI sign = (VI)FN(vdup)((real)-0.0);
    const V a2 = (V)((VI)x & ~sign) * (real)2;
#if PYRNN_REAL_IS_DOUBLE
    const V y = FN(vclamp)(a2, 0.0, 40.0);
#else
    const V y = FN(vclamp)(a2, 0.0f, 20.0f);
#endif
    V scale, q;
    FN(exp_parts)(y, &scale, &q);
    const V em1 = scale * q + (scale - (real)1);  /* exact q when n = 0 */
    const V r = em1 / (em1 + (real)2);
    return (V)((VI)r | ((VI)x & sign));
}

static inline V FN(vrelu)(V x)
{
    return FN(vmax)(FN(vdup)(0), x);  /* NaN and -0 pass through */
}

static void FN(activation)(int kind, int64_t n, const real *x, real *y)
{
    for (int64_t k = 0; k < n; k += VW) {
        const int64_t m = n - k < VW ? n - k : VW;
        const V v = FN(vload_n)(x + k, m);
        FN(vstore_n)(y + k, kind == ACT_SIGMOID ? FN(vsigmoid)(v) : FN(vtanh)(v), m);
    }
}
