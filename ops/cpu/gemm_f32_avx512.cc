// FP32 GEMM microkernel for AVX-512F: 14 rows x 32 columns (28 zmm
// accumulators, 2 B vectors, 1 broadcast). Partial column tiles use masks.
// Compiled with -mavx512f; selected only when cpu_caps reports AVX-512.
#include <immintrin.h>

#include <array>
#include <utility>

#include "ops/cpu/activation_f32_avx512.h"
#include "ops/cpu/gemm_f32.h"

namespace kvant::cpu::avx512 {
namespace {

// kPacked: A is a packed panel (a_rs == 1), so broadcasts use fixed offsets.
template <int R, bool kPacked>
void Body(int64_t kc, const float* a, int64_t a_rs, int64_t a_cs, const float* b, float* c, int64_t ldc,
          int64_t n_valid, bool accumulate, const GemmEpilogueF32* ep) {
  if constexpr (kPacked) a_rs = 1;
  __m512 acc0[R], acc1[R];
#pragma GCC unroll 14
  for (int r = 0; r < R; ++r) acc0[r] = acc1[r] = _mm512_setzero_ps();
  for (int64_t kk = 0; kk < kc; ++kk) {
    // With fewer than 14 rows (token-sized M), B is read once and streams from
    // memory: fetch 16 k-steps (2 KiB) ahead. Full-height panels reuse B from L1.
    if constexpr (R < 14) {
      _mm_prefetch(reinterpret_cast<const char*>(b + 512), _MM_HINT_T0);
      _mm_prefetch(reinterpret_cast<const char*>(b + 528), _MM_HINT_T0);
    }
    const __m512 b0 = _mm512_load_ps(b);
    const __m512 b1 = _mm512_load_ps(b + 16);
#pragma GCC unroll 14
    for (int r = 0; r < R; ++r) {
      const __m512 av = _mm512_set1_ps(a[r * a_rs]);
      acc0[r] = _mm512_fmadd_ps(av, b0, acc0[r]);
      acc1[r] = _mm512_fmadd_ps(av, b1, acc1[r]);
    }
    a += a_cs;
    b += 32;
  }
  const __mmask16 m0 = n_valid >= 16 ? 0xFFFF : static_cast<__mmask16>((1u << n_valid) - 1);
  const __mmask16 m1 = n_valid >= 32 ? 0xFFFF
                       : n_valid > 16 ? static_cast<__mmask16>((1u << (n_valid - 16)) - 1)
                                      : 0;
  __m512 cb0 = _mm512_setzero_ps(), cb1 = _mm512_setzero_ps();
  if (ep && ep->col_bias) {
    cb0 = _mm512_maskz_loadu_ps(m0, ep->col_bias);
    cb1 = _mm512_maskz_loadu_ps(m1, ep->col_bias + 16);
  }
#pragma GCC unroll 14
  for (int r = 0; r < R; ++r) {
    float* row = c + r * ldc;
    __m512 v0 = acc0[r], v1 = acc1[r];
    if (accumulate) {
      v0 = _mm512_add_ps(v0, _mm512_maskz_loadu_ps(m0, row));
      v1 = _mm512_add_ps(v1, _mm512_maskz_loadu_ps(m1, row + 16));
    }
    if (ep) {
      if (ep->row_bias) {
        const __m512 rb = _mm512_set1_ps(ep->row_bias[r]);
        v0 = _mm512_add_ps(v0, rb);
        v1 = _mm512_add_ps(v1, rb);
      }
      v0 = Activate(_mm512_add_ps(v0, cb0), ep->act);
      v1 = Activate(_mm512_add_ps(v1, cb1), ep->act);
    }
    _mm512_mask_storeu_ps(row, m0, v0);
    _mm512_mask_storeu_ps(row + 16, m1, v1);
  }
}

template <int R>
void Ukernel(int64_t kc, const float* a, int64_t a_rs, int64_t a_cs, const float* b, float* c, int64_t ldc,
             int64_t m_valid, int64_t n_valid, bool accumulate, const GemmEpilogueF32* ep) {
  if (a_rs == 1) {
    Body<R, true>(kc, a, 1, a_cs, b, c, ldc, n_valid, accumulate, ep);
  } else {
    Body<R, false>(kc, a, a_rs, a_cs, b, c, ldc, n_valid, accumulate, ep);
  }
}

template <int... R>
constexpr std::array<GemmUkernelF32, sizeof...(R)> MakeTable(std::integer_sequence<int, R...>) {
  return {Ukernel<R + 1>...};
}

constexpr auto kByRows = MakeTable(std::make_integer_sequence<int, 14>{});

}  // namespace

const GemmUkernelF32* GemmF32ByRows() { return kByRows.data(); }

}  // namespace kvant::cpu::avx512
