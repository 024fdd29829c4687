// Direct INT8 convolution tile for AMX-INT8 (see conv_s8.h): 32 flat
// positions x 32 output channels as four 16 x 16 int32 tiles (tmm0-3). Each
// tap's rows of the padded image are loaded in place as two 16-row A tiles
// of 64 channel bytes (tmm4-5, row stride cin_p), B as two tiles of the
// packed weight panel (tmm6-7), as in the AMX GEMM kernel; no im2col. Uses
// the tile configuration of amx::Begin (gemm_s8_amx.cc).
#include <cstdint>

#include "ops/cpu/amx_s8_step.h"

namespace kvant::cpu::amx {

void ConvTapsS8(int64_t taps, const int64_t* tap_offsets, int64_t cin_p, const uint8_t* a, int64_t a_rs,
                const int8_t* b, int32_t* tile) {
  ZeroAccumulators();
  for (int64_t t = 0; t < taps; ++t) {
    const uint8_t* at = a + tap_offsets[t];
    for (int64_t c0 = 0; c0 < cin_p; c0 += 64, b += 16 * 128) StepS8(at + c0, at + 16 * a_rs + c0, a_rs, b);
  }
  StoreAccumulators(tile);
}

}  // namespace kvant::cpu::amx
