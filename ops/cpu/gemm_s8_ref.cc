// Reference INT8 microkernel (plain loops over the packed layout) and the
// reference epilogue: the scalar semantics every ISA variant must match.
#include <algorithm>
#include <cstdint>

#include "ops/cpu/activation_f32.h"
#include "ops/cpu/gemm_s8.h"

namespace kvant::cpu::ref {
namespace {

constexpr int kMr = 4, kNr = 16;

template <int kRows>
void Ukernel(int64_t kp, const uint8_t* a, int64_t a_rs, int64_t a_gs, const int8_t* b, int32_t* tile) {
  int32_t acc[kRows][kNr] = {};
  for (int64_t g = 0; g < kp / 4; ++g) {
    const int8_t* bg = b + g * kNr * 4;
    for (int r = 0; r < kRows; ++r) {
      const uint8_t* ag = a + r * a_rs + g * a_gs;
      for (int c = 0; c < kNr; ++c) {
        for (int i = 0; i < 4; ++i) acc[r][c] += int32_t{ag[i]} * int32_t{bg[c * 4 + i]};
      }
    }
  }
  for (int r = 0; r < kRows; ++r) std::copy(acc[r], acc[r] + kNr, tile + r * kNr);
}

const GemmUkernelS8 kByRows[kMr] = {Ukernel<1>, Ukernel<2>, Ukernel<3>, Ukernel<4>};

}  // namespace

const GemmUkernelS8* GemmS8ByRows() { return kByRows; }

void GemmS8Epilogue(const int32_t* tile, int64_t nr, int64_t rows, int64_t cols, const GemmS8Output& out, void* c,
                    int64_t ldc) {
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t j = 0; j < cols; ++j) {
      // Wrapping int32 arithmetic, as the vector units do.
      int64_t v = int64_t{tile[r * nr + j]} + out.col_offset[j];
      if (out.row_sum != nullptr) v -= int64_t{out.row_sum[r]} * out.col_zb[j];
      const int32_t w = static_cast<int32_t>(v);
      switch (out.kind) {
        case GemmS8Output::Kind::kS32: static_cast<int32_t*>(c)[r * ldc + j] = w; break;
        case GemmS8Output::Kind::kF32: {
          const float f = static_cast<float>(w) * out.scale[j] + (out.bias_f32 ? out.bias_f32[j] : 0.f);
          static_cast<float*>(c)[r * ldc + j] = out.act != nullptr ? out.act->Apply(f) : f;
          break;
        }
        case GemmS8Output::Kind::kU8:
        case GemmS8Output::Kind::kS8: {
          const int32_t q = out.m0 ? RequantizeFixedPoint(w, out.m0[j], out.shift[j]) : RequantizeFloat(w, out.scale[j]);
          const int64_t y = std::clamp<int64_t>(int64_t{q} + out.zero_point, out.lo, out.hi);
          if (out.kind == GemmS8Output::Kind::kU8) {
            static_cast<uint8_t*>(c)[r * ldc + j] = static_cast<uint8_t>(y);
          } else {
            static_cast<int8_t*>(c)[r * ldc + j] = static_cast<int8_t>(y);
          }
          break;
        }
      }
    }
  }
}

}  // namespace kvant::cpu::ref
