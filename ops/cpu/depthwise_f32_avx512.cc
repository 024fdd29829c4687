// Depthwise 2-D convolution for AVX-512: 16 output columns per vector. Each
// tap's input columns are loaded with masks that zero the lanes reading
// padding (masked lanes never touch memory); stride 2 loads 32 inputs and
// keeps the even lanes, other strides gather. Compiled with -mavx512f.
#include <immintrin.h>

#include <vector>

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

}  // namespace

namespace {

// Output rows for a compile-time kernel width kKw (0: p.k_w) and stride kS
// (0: p.s_w), so the tap loop unrolls and the load form is fixed.
template <int kKw, int kS>
void Rows(const DepthwisePlane& p, const float* x, const float* w, float bias, const ActivationF32& act, float* y,
          const __mmask16* lo, const __mmask16* hi, const __mmask16* store, int64_t blocks) {
  const int64_t kw_n = kKw ? kKw : p.k_w;
  const int64_t s_w = kS ? kS : p.s_w;
  const __m512i even = _mm512_set_epi32(30, 28, 26, 24, 22, 20, 18, 16, 14, 12, 10, 8, 6, 4, 2, 0);
  const __m512i step = _mm512_mullo_epi32(_mm512_set_epi32(15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0),
                                          _mm512_set1_epi32(static_cast<int>(s_w)));
  for (int64_t oh = 0; oh < p.out_h; ++oh) {
    float* yr = y + oh * p.out_w;
    for (int64_t b = 0; b < blocks; ++b) {
      __m512 acc = _mm512_set1_ps(bias);
      const int64_t base0 = b * 16 * s_w - p.pad_w;
      for (int64_t kh = 0; kh < p.k_h; ++kh) {
        const int64_t ih = oh * p.s_h - p.pad_h + kh * p.d_h;
        if (ih < 0 || ih >= p.in_h) continue;
        const float* row = x + ih * p.in_w + base0;
        const float* wr = w + kh * kw_n;
#pragma GCC unroll 8
        for (int64_t kw = 0; kw < kw_n; ++kw) {
          const float* src = row + kw * p.d_w;
          const __mmask16 m = lo[b * kw_n + kw];
          __m512 v;
          if constexpr (kS == 1) {
            v = m == 0xFFFF ? _mm512_loadu_ps(src) : _mm512_maskz_loadu_ps(m, src);
          } else if constexpr (kS == 2) {
            const __mmask16 mh = hi[b * kw_n + kw];
            const __m512 a = m == 0xFFFF ? _mm512_loadu_ps(src) : _mm512_maskz_loadu_ps(m, src);
            const __m512 c = mh == 0xFFFF ? _mm512_loadu_ps(src + 16) : _mm512_maskz_loadu_ps(mh, src + 16);
            v = _mm512_maskz_mov_ps(store[b], _mm512_permutex2var_ps(a, even, c));
          } else {
            v = _mm512_mask_i32gather_ps(_mm512_setzero_ps(), m, step, src, 4);
          }
          acc = _mm512_fmadd_ps(_mm512_set1_ps(wr[kw]), v, acc);
        }
      }
      _mm512_mask_storeu_ps(yr + b * 16, store[b], Activate(acc, act));
    }
  }
}

}  // namespace

void DepthwisePlaneF32(const DepthwisePlane& p, const float* x, const float* w, float bias, const ActivationF32& act,
                       float* y) {
  // Masks depend only on the column block and kw: computed once per plane.
  const int64_t blocks = (p.out_w + 15) / 16, kw_n = p.k_w;
  std::vector<__mmask16> lo(blocks * kw_n), hi(blocks * kw_n), store(blocks);
  for (int64_t b = 0; b < blocks; ++b) {
    const int64_t n = std::min<int64_t>(16, p.out_w - b * 16);
    store[b] = static_cast<__mmask16>(n == 16 ? 0xFFFF : (1u << n) - 1);
    for (int64_t kw = 0; kw < kw_n; ++kw) {
      const int64_t base = b * 16 * p.s_w - p.pad_w + kw * p.d_w;
      if (p.s_w == 2) {
        lo[b * kw_n + kw] = ValidLanes(base, 1, p.in_w);
        hi[b * kw_n + kw] = ValidLanes(base + 16, 1, p.in_w);
      } else {
        lo[b * kw_n + kw] = ValidLanes(base, p.s_w, p.in_w) & store[b];
      }
    }
  }
  const auto* l = lo.data();
  const auto* h = hi.data();
  const auto* st = store.data();
  if (p.k_w == 3 && p.s_w == 1) return Rows<3, 1>(p, x, w, bias, act, y, l, h, st, blocks);
  if (p.k_w == 3 && p.s_w == 2) return Rows<3, 2>(p, x, w, bias, act, y, l, h, st, blocks);
  if (p.k_w == 5 && p.s_w == 1) return Rows<5, 1>(p, x, w, bias, act, y, l, h, st, blocks);
  if (p.k_w == 5 && p.s_w == 2) return Rows<5, 2>(p, x, w, bias, act, y, l, h, st, blocks);
  if (p.s_w == 1) return Rows<0, 1>(p, x, w, bias, act, y, l, h, st, blocks);
  if (p.s_w == 2) return Rows<0, 2>(p, x, w, bias, act, y, l, h, st, blocks);
  Rows<0, 0>(p, x, w, bias, act, y, l, h, st, blocks);
}

}  // namespace kvant::cpu::avx512
