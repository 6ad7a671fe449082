/* CPU feature detection (cpuid + xgetbv) and the choice of kernel tables.
 *
 * The choice is made once, at first use, and kept in the only mutable global of the library:
 * an atomic int. Racing first calls compute the same value, so no lock is needed.
 * PYRNN_DISABLE_CPU_FEATURES=avx512,avx2 (a comma list) forces lower paths; disabling avx2
 * also disables avx512, whose kernels use AVX2 and FMA too. */
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "common.h"

#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>

static uint64_t xgetbv0(void)
{
    uint32_t lo, hi;
    __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
    return ((uint64_t)hi << 32) | lo;
}

static enum pyrnn_isa detect(void)
{
    unsigned a, b, c, d;
    if (!__get_cpuid(1, &a, &b, &c, &d)) return PYRNN_ISA_GENERIC;
    const int fma = (c >> 12) & 1, osxsave = (c >> 27) & 1, avx = (c >> 28) & 1;
    if (!(fma && osxsave && avx)) return PYRNN_ISA_GENERIC;
    const uint64_t xcr0 = xgetbv0();
    if ((xcr0 & 0x6) != 0x6) return PYRNN_ISA_GENERIC;  /* the OS saves XMM and YMM state */
    if (!__get_cpuid_count(7, 0, &a, &b, &c, &d)) return PYRNN_ISA_GENERIC;
    if (!((b >> 5) & 1)) return PYRNN_ISA_GENERIC;      /* AVX2 */
    const int avx512 = ((b >> 16) & 1) && ((b >> 17) & 1) && ((b >> 30) & 1) &&
                       ((b >> 31) & 1);                /* F, DQ, BW, VL */
    if (avx512 && (xcr0 & 0xe6) == 0xe6) return PYRNN_ISA_AVX512;  /* + opmask and ZMM state */
    return PYRNN_ISA_AVX2;
}
#else
static enum pyrnn_isa detect(void) { return PYRNN_ISA_GENERIC; }
#endif

/* Whether the comma list `list` names `feature`. */
static int listed(const char *list, const char *feature)
{
    const size_t n = strlen(feature);
    for (const char *p = list; *p;) {
        const char *end = strchr(p, ',');
        const size_t len = end ? (size_t)(end - p) : strlen(p);
        if (len == n && strncmp(p, feature, n) == 0) return 1;
        p += len + (end != NULL);
    }
    return 0;
}

static enum pyrnn_isa choose(void)
{
    enum pyrnn_isa isa = detect();
    const char *off = getenv("PYRNN_DISABLE_CPU_FEATURES");
    if (off) {
        if (listed(off, "avx2")) isa = PYRNN_ISA_GENERIC;
        if (listed(off, "avx512") && isa == PYRNN_ISA_AVX512) isa = PYRNN_ISA_AVX2;
    }
    return isa;
}

static atomic_int chosen = -1;

enum pyrnn_isa pyrnn_isa(void)
{
    int isa = atomic_load_explicit(&chosen, memory_order_acquire);
    if (isa < 0) {
        isa = (int)choose();
        atomic_store_explicit(&chosen, isa, memory_order_release);
    }
    return (enum pyrnn_isa)isa;
}

const char *pyrnn_isa_name(void)
{
    static const char *const names[] = {"generic", "avx2", "avx512"};
    return names[pyrnn_isa()];
}

extern const struct pyrnn_kernels_f32 pyrnn_kernels_generic_f32;
extern const struct pyrnn_kernels_f64 pyrnn_kernels_generic_f64;
#if defined(__x86_64__) || defined(__i386__)
extern const struct pyrnn_kernels_f32 pyrnn_kernels_avx2_f32, pyrnn_kernels_avx512_f32;
extern const struct pyrnn_kernels_f64 pyrnn_kernels_avx2_f64, pyrnn_kernels_avx512_f64;
#endif

const struct pyrnn_kernels_f32 *pyrnn_kernels_f32(void)
{
#if defined(__x86_64__) || defined(__i386__)
    switch (pyrnn_isa()) {
    case PYRNN_ISA_AVX512: return &pyrnn_kernels_avx512_f32;
    case PYRNN_ISA_AVX2: return &pyrnn_kernels_avx2_f32;
    default: break;
    }
#endif
    return &pyrnn_kernels_generic_f32;
}

const struct pyrnn_kernels_f64 *pyrnn_kernels_f64(void)
{
#if defined(__x86_64__) || defined(__i386__)
    switch (pyrnn_isa()) {
    case PYRNN_ISA_AVX512: return &pyrnn_kernels_avx512_f64;
    case PYRNN_ISA_AVX2: return &pyrnn_kernels_avx2_f64;
    default: break;
    }
#endif
    return &pyrnn_kernels_generic_f64;
}
