// Softmax of contiguous rows with AVX-512: 16 lanes, the row's tail under a
// mask, so short rows (attention over 13 tokens) take no scalar steps. The
// exponential is avx512::Exp, FastExp's steps (vector_math.h). Compiled with
// -mavx512f; selected by normalization_f32.cc when the CPU has AVX-512F.
#include <immintrin.h>

#include <cstdint>

#include "ops/cpu/activation_f32_avx512.h"

namespace kvant::cpu {

// GCC 12's _mm512_reduce_*_ps use _mm256_undefined_pd, which -Wuninitialized
// reports as uninitialized.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wuninitialized"
#endif

void SoftmaxRowAvx512(const float* x, float* y, int64_t len) {
  const int64_t full = len / 16 * 16;
  const __mmask16 tail = static_cast<__mmask16>((1u << (len - full)) - 1);
  const __m512 lowest = _mm512_set1_ps(-INFINITY);
  __m512 mx = lowest;
  for (int64_t i = 0; i < full; i += 16) mx = _mm512_max_ps(mx, _mm512_loadu_ps(x + i));
  if (tail) mx = _mm512_max_ps(mx, _mm512_mask_loadu_ps(lowest, tail, x + full));
  const __m512 m = _mm512_set1_ps(_mm512_reduce_max_ps(mx));
  __m512 sum = _mm512_setzero_ps();
  for (int64_t i = 0; i < full; i += 16) {
    const __m512 e = avx512::Exp(_mm512_sub_ps(_mm512_loadu_ps(x + i), m));
    _mm512_storeu_ps(y + i, e);
    sum = _mm512_add_ps(sum, e);
  }
  if (tail) {
    const __m512 e = avx512::Exp(_mm512_sub_ps(_mm512_maskz_loadu_ps(tail, x + full), m));
    _mm512_mask_storeu_ps(y + full, tail, e);
    sum = _mm512_mask_add_ps(sum, tail, sum, e);
  }
  // Terms whose share falls below FLT_MIN are 0: their product would be a
  // subnormal, which costs a microcode assist per multiply (PP-OCR's
  // 6625-character softmax over float logits: 4x slower than over quantized
  // ones, whose range never got there). Their value is under 2^-126; NaN
  // stays NaN (an unordered compare keeps the lane).
  const float total = _mm512_reduce_add_ps(sum);
  const __m512 inv = _mm512_set1_ps(1.f / total);
  const __m512 tiny = _mm512_set1_ps(1.17549435e-38f * total);
  for (int64_t i = 0; i < full; i += 16) {
    const __m512 e = _mm512_loadu_ps(y + i);
    _mm512_storeu_ps(y + i, _mm512_maskz_mul_ps(_mm512_cmp_ps_mask(e, tiny, _CMP_NLT_UQ), e, inv));
  }
  if (tail) {
    const __m512 e = _mm512_maskz_loadu_ps(tail, y + full);
    _mm512_mask_storeu_ps(y + full, tail, _mm512_maskz_mul_ps(_mm512_cmp_ps_mask(e, tiny, _CMP_NLT_UQ), e, inv));
  }
}

}  // namespace kvant::cpu
