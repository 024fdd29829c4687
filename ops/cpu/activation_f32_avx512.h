// The fused activation on 16 floats, for the AVX-512 kernels (include only
// from files compiled with -mavx512f).
#ifndef KVANT_OPS_CPU_ACTIVATION_F32_AVX512_H_
#define KVANT_OPS_CPU_ACTIVATION_F32_AVX512_H_

#include <immintrin.h>

#include "ops/cpu/activation_f32.h"

namespace kvant::cpu::avx512 {

// The activation's kind alone (no post scale or shift).
inline __m512 ActivateKind(__m512 v, const ActivationF32& act) {
  const __m512 zero = _mm512_setzero_ps(), one = _mm512_set1_ps(1.f);
  switch (act.kind) {
    case ActivationF32::Kind::kNone: break;
    case ActivationF32::Kind::kRelu: v = _mm512_max_ps(v, zero); break;
    case ActivationF32::Kind::kClip:
      v = _mm512_min_ps(_mm512_max_ps(v, _mm512_set1_ps(act.lo)), _mm512_set1_ps(act.hi));
      break;
    case ActivationF32::Kind::kLeakyRelu: {
      const __mmask16 neg = _mm512_cmp_ps_mask(v, zero, _CMP_LT_OQ);
      v = _mm512_mask_mul_ps(v, neg, v, _mm512_set1_ps(act.alpha));
      break;
    }
    case ActivationF32::Kind::kHardSigmoid:
      v = _mm512_min_ps(one, _mm512_max_ps(zero, _mm512_fmadd_ps(v, _mm512_set1_ps(act.alpha), _mm512_set1_ps(act.beta))));
      break;
    case ActivationF32::Kind::kHardSwish: {
      const __m512 gate = _mm512_fmadd_ps(v, _mm512_set1_ps(1.f / 6.f), _mm512_set1_ps(0.5f));
      v = _mm512_mul_ps(v, _mm512_min_ps(one, _mm512_max_ps(zero, gate)));
      break;
    }
  }
  return v;
}

inline __m512 Activate(__m512 v, const ActivationF32& act) {
  v = ActivateKind(v, act);
  if (act.post_scale != 1.f || act.post_shift != 0.f) {
    v = _mm512_fmadd_ps(v, _mm512_set1_ps(act.post_scale), _mm512_set1_ps(act.post_shift));
  }
  return v;
}

// Activate on N accumulators of a microkernel's tile, with the same results:
// the branches on the kind and the post scale are taken once for the tile,
// not once per vector (a tile of a shallow product has few FMAs per store).
template <int N>
inline __attribute__((always_inline)) void ActivateTile(__m512 (&v)[N], const ActivationF32& act) {
  switch (act.kind) {
    case ActivationF32::Kind::kNone: break;
    case ActivationF32::Kind::kRelu: {
      const __m512 zero = _mm512_setzero_ps();
#pragma GCC unroll 32
      for (int i = 0; i < N; ++i) v[i] = _mm512_max_ps(v[i], zero);
      break;
    }
    case ActivationF32::Kind::kClip: {
      const __m512 lo = _mm512_set1_ps(act.lo), hi = _mm512_set1_ps(act.hi);
#pragma GCC unroll 32
      for (int i = 0; i < N; ++i) v[i] = _mm512_min_ps(_mm512_max_ps(v[i], lo), hi);
      break;
    }
    default:
#pragma GCC unroll 32
      for (int i = 0; i < N; ++i) v[i] = ActivateKind(v[i], act);
      break;
  }
  if (act.post_scale != 1.f || act.post_shift != 0.f) {
    const __m512 scale = _mm512_set1_ps(act.post_scale), shift = _mm512_set1_ps(act.post_shift);
#pragma GCC unroll 32
    for (int i = 0; i < N; ++i) v[i] = _mm512_fmadd_ps(v[i], scale, shift);
  }
}

}  // namespace kvant::cpu::avx512

#endif  // KVANT_OPS_CPU_ACTIVATION_F32_AVX512_H_
