/* The kernels for AVX2 with FMA: 32-byte vectors, 16 registers. */
#include <string.h>

#include "common.h"

#if defined(__x86_64__) || defined(__i386__)
#pragma GCC target("avx2,fma,bmi,bmi2")
#define PYRNN_ISA avx2
#define PYRNN_ISA_NAME "avx2"
#define PYRNN_VBYTES 32
#define PYRNN_ACC_REGS 12
#define PYRNN_VREGS 16
#define PYRNN_MK_UNROLL 4 /* gemm_impl.h mk_body */
#define PYRNN_RECUR_PANEL_BYTES 16384 /* gemm_impl.h recur_tile */
#include "isa_impl.h"
#endif
