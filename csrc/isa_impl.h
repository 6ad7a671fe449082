/* Instantiates every kernel for float and double on the instruction set that the including
 * isa_*.c selected (PYRNN_ISA, PYRNN_ISA_NAME, PYRNN_VBYTES, PYRNN_ACC_REGS, PYRNN_VREGS,
 * PYRNN_MK_UNROLL, PYRNN_RECUR_PANEL_BYTES and its target pragma). No include guard on
 * purpose. */

#define real float
#define ireal int32_t
#define SFX f32
#define PYRNN_REAL_IS_DOUBLE 0
#include "kernels_impl.h"
#undef real
#undef ireal
#undef SFX
#undef PYRNN_REAL_IS_DOUBLE

#define real double
#define ireal int64_t
#define SFX f64
#define PYRNN_REAL_IS_DOUBLE 1
#include "kernels_impl.h"
#undef real
#undef ireal
#undef SFX
#undef PYRNN_REAL_IS_DOUBLE
