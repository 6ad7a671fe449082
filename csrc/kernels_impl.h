/* Every kernel of one instruction set for one data type, and its table. Included by isa_impl.h
 * with real, ireal, SFX and PYRNN_REAL_IS_DOUBLE defined. No include guard on purpose. */

#define FN(name) PYRNN_CAT(name##_, SFX)

#include "simd.h"
#include "activations.h"
#include "gemm_impl.h"
#include "cell_common.h"
#include "rnn_impl.h"
#include "lstm_impl.h"
#include "gru_impl.h"

#define TABLE PYRNN_CAT(PYRNN_CAT(pyrnn_kernels_, PYRNN_ISA), PYRNN_CAT(_, SFX))
const struct PYRNN_CAT(pyrnn_kernels_, SFX) TABLE = {
    PYRNN_ISA_NAME,
    FN(rnn_forward), FN(rnn_backward),
    FN(lstm_forward), FN(lstm_backward),
    FN(gru_forward), FN(gru_backward),
    FN(activation),
};

#undef TABLE
#undef FN
#undef VW
#undef V
#undef VI
#undef MR_FOR
#undef MK_PRAGMA
#undef MK_UNROLL_BY
#undef MK_UNROLLED
#undef MV_SPLIT
#undef MV_CHAINS
#undef MV_TILES
#undef MV_VECTORS
#undef RECUR_PANEL_BYTES
#undef GEMM_KC
#undef GEMM_NV
#undef GEMM_NR
#undef GEMM_MR
#undef GEMM_MC
#undef ACT_SIGMOID
#undef ACT_TANH
