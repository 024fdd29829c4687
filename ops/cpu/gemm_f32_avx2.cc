// FP32 GEMM microkernel for AVX2+FMA: 6 rows x 16 columns (12 ymm
// accumulators). Partial column tiles go through a small stack tile. A
// second instantiation reads FP16 B panels (FP16 weights) and widens them
// with F16C's VCVTPH2PS as it loads them.
// Compiled with -mavx2 -mfma -mf16c; selected only when cpu_caps reports all three.
#include <immintrin.h>

#include <array>
#include <type_traits>
#include <utility>

#include "ops/cpu/gemm_f32.h"

namespace kvant::cpu::avx2 {
namespace {

template <int R, bool kHalfB>
void Ukernel(int64_t kc, const float* a, int64_t a_rs, int64_t a_cs, const float* b_in, float* c, int64_t ldc,
             int64_t m_valid, int64_t n_valid, bool accumulate, const GemmEpilogueF32* ep) {
  using BType = std::conditional_t<kHalfB, uint16_t, float>;
  const BType* b = reinterpret_cast<const BType*>(b_in);
  __m256 acc0[R], acc1[R];
#pragma GCC unroll 6
  for (int r = 0; r < R; ++r) acc0[r] = acc1[r] = _mm256_setzero_ps();
  for (int64_t kk = 0; kk < kc; ++kk) {
    __m256 b0, b1;
    if constexpr (kHalfB) {
      b0 = _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(b)));
      b1 = _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(b + 8)));
    } else {
      b0 = _mm256_load_ps(b);
      b1 = _mm256_load_ps(b + 8);
    }
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

template <bool kHalfB, int... R>
constexpr std::array<GemmUkernelF32, sizeof...(R)> MakeTable(std::integer_sequence<int, R...>) {
  return {Ukernel<R + 1, kHalfB>...};
}

constexpr auto kByRows = MakeTable<false>(std::make_integer_sequence<int, 6>{});
constexpr auto kHalfByRows = MakeTable<true>(std::make_integer_sequence<int, 6>{});

}  // namespace

const GemmUkernelF32* GemmF32ByRows() { return kByRows.data(); }
const GemmUkernelF32* GemmF32HalfByRows() { return kHalfByRows.data(); }

}  // namespace kvant::cpu::avx2
