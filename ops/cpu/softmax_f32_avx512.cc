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
  const __m512 inv = _mm512_set1_ps(1.f / _mm512_reduce_add_ps(sum));
  for (int64_t i = 0; i < full; i += 16) _mm512_storeu_ps(y + i, _mm512_mul_ps(_mm512_loadu_ps(y + i), inv));
  if (tail) _mm512_mask_storeu_ps(y + full, tail, _mm512_mul_ps(_mm512_maskz_loadu_ps(tail, y + full), inv));
}

}  // namespace kvant::cpu
