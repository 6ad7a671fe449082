/* The portable kernels: 16-byte vectors (SSE2 on x86-64, scalar code where the target has no
 * vectors of that size), built with the compiler's baseline flags only. */
#include <string.h>

#include "common.h"

#define PYRNN_ISA generic
#define PYRNN_ISA_NAME "generic"
#define PYRNN_VBYTES 16
#define PYRNN_ACC_REGS 12
#define PYRNN_VREGS 16
#define PYRNN_MK_UNROLL 1 /* gemm_impl.h mk_body; 4 measured on AVX2 only */
#define PYRNN_RECUR_PANEL_BYTES 131072 /* gemm_impl.h recur_tile */
#include "isa_impl.h"
