/* The kernels for AVX-512 (F, DQ, BW, VL) with FMA: 64-byte vectors, 32 registers. */
#include <string.h>

#include "common.h"

#if defined(__x86_64__) || defined(__i386__)
#pragma GCC target("avx512f,avx512dq,avx512bw,avx512vl,avx2,fma,bmi,bmi2")
#define PYRNN_ISA avx512
#define PYRNN_ISA_NAME "avx512"
#define PYRNN_VBYTES 64
#define PYRNN_ACC_REGS 24
#define PYRNN_VREGS 32
#define PYRNN_MK_UNROLL 1 /* gemm_impl.h mk_body; 4 measured on AVX2 only */
#define PYRNN_RECUR_PANEL_BYTES 131072 /* gemm_impl.h recur_tile */
#include "isa_impl.h"
#endif
