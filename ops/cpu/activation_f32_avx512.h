// The fused activation on 16 floats, for the AVX-512 kernels (include only
// from files compiled with -mavx512f).
#ifndef KVANT_OPS_CPU_ACTIVATION_F32_AVX512_H_
#define KVANT_OPS_CPU_ACTIVATION_F32_AVX512_H_

#include <immintrin.h>

#include "ops/cpu/activation_f32.h"

namespace kvant::cpu::avx512 {

// FastExp and FastErf (vector_math.h) on 16 lanes, the same steps.
inline __m512 Exp(__m512 in) {
  const __m512 x = _mm512_min_ps(_mm512_max_ps(in, _mm512_set1_ps(-87.3f)), _mm512_set1_ps(88.7f));
  const __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(1.44269504088896341f)),
                                        _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  const __m512 r =
      _mm512_fmadd_ps(n, _mm512_set1_ps(2.12194440e-4f), _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693359375f), x));
  __m512 p = _mm512_set1_ps(1.9875691500e-4f);
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.3981999507e-3f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(8.3334519073e-3f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(4.1665795894e-2f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.6666665459e-1f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(5.0000001201e-1f));
  p = _mm512_fmadd_ps(_mm512_mul_ps(p, r), r, _mm512_add_ps(r, _mm512_set1_ps(1.f)));
  __m512 y = _mm512_scalef_ps(p, n);
  y = _mm512_mask_mov_ps(y, _mm512_cmp_ps_mask(in, _mm512_set1_ps(-87.3f), _CMP_LT_OQ), _mm512_setzero_ps());
  return _mm512_mask_mov_ps(y, _mm512_cmp_ps_mask(in, in, _CMP_UNORD_Q), in);
}

inline __m512 Erf(__m512 x) {
  const __m512 sign = _mm512_set1_ps(-0.f);
  const __m512 ax = _mm512_andnot_ps(sign, x);
  const __m512 one = _mm512_set1_ps(1.f);
  const __m512 t = _mm512_div_ps(one, _mm512_fmadd_ps(ax, _mm512_set1_ps(0.3275911f), one));
  __m512 p = _mm512_set1_ps(1.061405429f);
  p = _mm512_fmadd_ps(p, t, _mm512_set1_ps(-1.453152027f));
  p = _mm512_fmadd_ps(p, t, _mm512_set1_ps(1.421413741f));
  p = _mm512_fmadd_ps(p, t, _mm512_set1_ps(-0.284496736f));
  p = _mm512_fmadd_ps(p, t, _mm512_set1_ps(0.254829592f));
  const __m512 e = Exp(_mm512_mul_ps(_mm512_xor_ps(ax, sign), ax));
  const __m512 r = _mm512_fnmadd_ps(_mm512_mul_ps(p, t), e, one);
  return _mm512_or_ps(_mm512_andnot_ps(sign, r), _mm512_and_ps(sign, x));
}

inline __m512 Gelu(__m512 v) {
  const __m512 e = Erf(_mm512_mul_ps(v, _mm512_set1_ps(0.70710678118654752f)));
  return _mm512_mul_ps(_mm512_mul_ps(_mm512_set1_ps(0.5f), v), _mm512_add_ps(_mm512_set1_ps(1.f), e));
}

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
    case ActivationF32::Kind::kGelu: v = Gelu(v); break;
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
