// Portable FP32 GEMM microkernel (4 x 16) in plain C++: the `scalar` path and
// the behaviour every ISA microkernel must reproduce.
#include <array>
#include <utility>

#include "ops/cpu/gemm_f32.h"

namespace kvant::cpu::ref {
namespace {

template <int R>
void Ukernel(int64_t kc, const float* a, int64_t a_rs, int64_t a_cs, const float* b, float* c, int64_t ldc, int64_t m_valid,
             int64_t n_valid, bool accumulate, const GemmEpilogueF32* ep) {
  float acc[R][16] = {};
  for (int64_t kk = 0; kk < kc; ++kk) {
    for (int r = 0; r < R; ++r) {
      for (int j = 0; j < 16; ++j) acc[r][j] += a[r * a_rs] * b[j];
    }
    a += a_cs;
    b += 16;
  }
  for (int r = 0; r < R; ++r) {
    float* row = c + r * ldc;
    for (int64_t j = 0; j < n_valid; ++j) {
      float v = acc[r][j];
      if (accumulate) v += row[j];
      if (ep) {
        if (ep->row_bias) v += ep->row_bias[r];
        if (ep->col_bias) v += ep->col_bias[j];
        if (ep->residual) v += ep->residual[r * ep->ld_residual + j];
        v = ep->act.Apply(v);
      }
      row[j] = v;
    }
  }
}

template <int... R>
constexpr std::array<GemmUkernelF32, sizeof...(R)> MakeTable(std::integer_sequence<int, R...>) {
  return {Ukernel<R + 1>...};
}

constexpr auto kByRows = MakeTable(std::make_integer_sequence<int, 4>{});

}  // namespace

const GemmUkernelF32* GemmF32ByRows() { return kByRows.data(); }

}  // namespace kvant::cpu::ref
