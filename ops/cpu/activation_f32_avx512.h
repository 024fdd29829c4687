// The fused activation on 16 floats, for the AVX-512 kernels (include only
// from files compiled with -mavx512f).
#ifndef KVANT_OPS_CPU_ACTIVATION_F32_AVX512_H_
#define KVANT_OPS_CPU_ACTIVATION_F32_AVX512_H_

#include <immintrin.h>

#include "ops/cpu/activation_f32.h"

namespace kvant::cpu::avx512 {

inline __m512 Activate(__m512 v, const ActivationF32& act) {
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
  if (act.post_scale != 1.f || act.post_shift != 0.f) {
    v = _mm512_fmadd_ps(v, _mm512_set1_ps(act.post_scale), _mm512_set1_ps(act.post_shift));
  }
  return v;
}

}  // namespace kvant::cpu::avx512

#endif  // KVANT_OPS_CPU_ACTIVATION_F32_AVX512_H_
