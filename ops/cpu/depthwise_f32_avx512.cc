// Depthwise 2-D convolution for AVX-512: 16 output columns per vector. Each
// tap's input columns are loaded with masks that zero the lanes reading
// padding (masked lanes never touch memory); stride 2 loads 32 inputs and
// keeps the even lanes, other strides gather. Compiled with -mavx512f.
#include <immintrin.h>

#include "ops/cpu/activation_f32_avx512.h"
#include "ops/cpu/depthwise_f32.h"

namespace kvant::cpu::avx512 {
namespace {

// Lanes l where 0 <= base + l * step < limit.
inline __mmask16 ValidLanes(int64_t base, int64_t step, int64_t limit) {
  const __m512i iota = _mm512_set_epi32(15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0);
  const __m512i pos = _mm512_add_epi32(_mm512_mullo_epi32(iota, _mm512_set1_epi32(static_cast<int>(step))),
                                       _mm512_set1_epi32(static_cast<int>(base)));
  return _mm512_cmpge_epi32_mask(pos, _mm512_setzero_si512()) &
         _mm512_cmplt_epi32_mask(pos, _mm512_set1_epi32(static_cast<int>(limit)));
}

inline __m512 LoadTap(const float* row, int64_t base, int64_t stride, int64_t in_w, __mmask16 lanes) {
  if (stride == 1) return _mm512_maskz_loadu_ps(ValidLanes(base, 1, in_w) & lanes, row + base);
  if (stride == 2) {
    const __m512 lo = _mm512_maskz_loadu_ps(ValidLanes(base, 1, in_w), row + base);
    const __m512 hi = _mm512_maskz_loadu_ps(ValidLanes(base + 16, 1, in_w), row + base + 16);
    const __m512i even = _mm512_set_epi32(30, 28, 26, 24, 22, 20, 18, 16, 14, 12, 10, 8, 6, 4, 2, 0);
    return _mm512_maskz_mov_ps(lanes, _mm512_permutex2var_ps(lo, even, hi));
  }
  const __m512i idx = _mm512_mullo_epi32(_mm512_set_epi32(15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0),
                                         _mm512_set1_epi32(static_cast<int>(stride)));
  return _mm512_mask_i32gather_ps(_mm512_setzero_ps(), ValidLanes(base, stride, in_w) & lanes, idx, row + base, 4);
}

}  // namespace

void DepthwisePlaneF32(const DepthwisePlane& p, const float* x, const float* w, float bias, const ActivationF32& act,
                       float* y) {
  for (int64_t oh = 0; oh < p.out_h; ++oh) {
    float* yr = y + oh * p.out_w;
    for (int64_t ow0 = 0; ow0 < p.out_w; ow0 += 16) {
      const int64_t n = std::min<int64_t>(16, p.out_w - ow0);
      const __mmask16 lanes = static_cast<__mmask16>(n == 16 ? 0xFFFF : (1u << n) - 1);
      __m512 acc = _mm512_set1_ps(bias);
      for (int64_t kh = 0; kh < p.k_h; ++kh) {
        const int64_t ih = oh * p.s_h - p.pad_h + kh * p.d_h;
        if (ih < 0 || ih >= p.in_h) continue;
        const float* row = x + ih * p.in_w;
        for (int64_t kw = 0; kw < p.k_w; ++kw) {
          const int64_t base = ow0 * p.s_w - p.pad_w + kw * p.d_w;
          acc = _mm512_fmadd_ps(_mm512_set1_ps(w[kh * p.k_w + kw]), LoadTap(row, base, p.s_w, p.in_w, lanes), acc);
        }
      }
      acc = Activate(acc, act);
      _mm512_mask_storeu_ps(yr + ow0, lanes, acc);
    }
  }
}

}  // namespace kvant::cpu::avx512
