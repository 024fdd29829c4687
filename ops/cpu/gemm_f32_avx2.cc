// FP32 GEMM microkernel for AVX2+FMA: 6 rows x 16 columns (12 ymm
// accumulators). Partial column tiles go through a small stack tile.
// Compiled with -mavx2 -mfma; selected only when cpu_caps reports both.
#include <immintrin.h>

#include <array>
#include <utility>

#include "ops/cpu/gemm_f32.h"

namespace kvant::cpu::avx2 {
namespace {

template <int R>
void Ukernel(int64_t kc, const float* a, int64_t a_rs, int64_t a_cs, const float* b, float* c, int64_t ldc, int64_t m_valid,
             int64_t n_valid, bool accumulate, const GemmEpilogueF32* ep) {
  __m256 acc0[R], acc1[R];
#pragma GCC unroll 6
  for (int r = 0; r < R; ++r) acc0[r] = acc1[r] = _mm256_setzero_ps();
  for (int64_t kk = 0; kk < kc; ++kk) {
    const __m256 b0 = _mm256_load_ps(b);
    const __m256 b1 = _mm256_load_ps(b + 8);
#pragma GCC unroll 6
    for (int r = 0; r < R; ++r) {
      const __m256 av = _mm256_broadcast_ss(a + r * a_rs);
      acc0[r] = _mm256_fmadd_ps(av, b0, acc0[r]);
      acc1[r] = _mm256_fmadd_ps(av, b1, acc1[r]);
    }
    a += a_cs;
    b += 16;
  }
  alignas(32) float tile[R][16];
#pragma GCC unroll 6
  for (int r = 0; r < R; ++r) {
    _mm256_store_ps(tile[r], acc0[r]);
    _mm256_store_ps(tile[r] + 8, acc1[r]);
  }
  for (int r = 0; r < R; ++r) {
    float* row = c + r * ldc;
    for (int64_t j = 0; j < n_valid; ++j) {
      float v = tile[r][j];
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

constexpr auto kByRows = MakeTable(std::make_integer_sequence<int, 6>{});

}  // namespace

const GemmUkernelF32* GemmF32ByRows() { return kByRows.data(); }

}  // namespace kvant::cpu::avx2
