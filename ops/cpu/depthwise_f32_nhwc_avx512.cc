// NHWC depthwise 2-D convolution for AVX-512 (kvant.ConvNhwc): channels in
// the lanes, so a tap's 16 weights are one vector and no layout change is
// needed. Pixels go eight at a time through the taps (eight independent FMA
// chains): interior groups (every tap inside the input) with plain loads,
// the rest (edges, a row's remainder) with a load mask of zero for a tap in
// the padding, which never touches memory.
// Compiled with -mavx512f.
#include <immintrin.h>

#include <type_traits>

#include "ops/cpu/activation_f32_avx512.h"
#include "ops/cpu/depthwise_f32.h"

namespace kvant::cpu::avx512 {

void DepthwiseNhwcRowsF32(const DepthwiseNhwc& d, const float* x, const float* w_tc, const float* bias,
                          const ActivationF32& act, int64_t oh0, int64_t oh1, float* y) {
  const DepthwisePlane& p = d.plane;
  const int64_t c = d.c;
  // Output columns whose every kw tap lies inside the input.
  const int64_t ow_lo = std::min(p.out_w, (p.pad_w + p.s_w - 1) / p.s_w);
  int64_t ow_hi = p.out_w;
  while (ow_hi > ow_lo && (ow_hi - 1) * p.s_w - p.pad_w + (p.k_w - 1) * p.d_w >= p.in_w) --ow_hi;
  constexpr int kGroup = 8;
  for (int64_t oh = oh0; oh < oh1; ++oh) {
    float* yr = y + oh * p.out_w * c;
    for (int64_t c0 = 0; c0 < c; c0 += 16) {
      const __mmask16 m = c - c0 >= 16 ? static_cast<__mmask16>(0xFFFF) : static_cast<__mmask16>((1u << (c - c0)) - 1);
      const __m512 b = bias ? _mm512_maskz_loadu_ps(m, bias + c0) : _mm512_setzero_ps();
      // Pixels [ow0, ow0 + n), n <= kGroup. Checked: any position, a tap in
      // the padding loads with mask 0 (never touching memory). Unchecked:
      // every tap inside (n < kGroup only on a staged input, where the
      // missing pixels read the padding).
      auto group = [&](int64_t ow0, int64_t n, auto checked) {
        constexpr bool kChecked = decltype(checked)::value;
        __m512 acc[kGroup];
#pragma GCC unroll 8
        for (int i = 0; i < kGroup; ++i) acc[i] = b;
        for (int64_t kh = 0; kh < p.k_h; ++kh) {
          const int64_t ih = oh * p.s_h - p.pad_h + kh * p.d_h;
          if (ih < 0 || ih >= p.in_h) continue;
          const float* row = x + ih * p.in_w * c + c0;
          for (int64_t kw = 0; kw < p.k_w; ++kw) {
            const __m512 wv = _mm512_maskz_loadu_ps(m, w_tc + (kh * p.k_w + kw) * c + c0);
#pragma GCC unroll 8
            for (int i = 0; i < kGroup; ++i) {
              const int64_t iw = (ow0 + i) * p.s_w - p.pad_w + kw * p.d_w;
              __m512 v;
              if constexpr (kChecked) {
                const bool inside = i < n && iw >= 0 && iw < p.in_w;
                v = _mm512_maskz_loadu_ps(inside ? m : 0, row + (inside ? iw * c : 0));
              } else {
                v = _mm512_maskz_loadu_ps(m, row + iw * c);
              }
              acc[i] = _mm512_fmadd_ps(wv, v, acc[i]);
            }
          }
        }
#pragma GCC unroll 8
        for (int i = 0; i < kGroup; ++i) {
          if (i < n) _mm512_mask_storeu_ps(yr + (ow0 + i) * c + c0, m, Activate(acc[i], act));
        }
      };
      auto checked = [&](int64_t ow0, int64_t n) { group(ow0, n, std::true_type{}); };
      auto fast = [&](int64_t ow0, int64_t n) { group(ow0, n, std::false_type{}); };
      if (d.staged) {
        for (int64_t ow = 0; ow < p.out_w; ow += kGroup) fast(ow, std::min<int64_t>(kGroup, p.out_w - ow));
        continue;
      }
      // A checked group covers the left edge (and a short row whole), fast
      // groups the interior, checked groups the rest.
      int64_t ow = 0;
      while (ow < ow_lo) {
        const int64_t n = std::min<int64_t>(kGroup, p.out_w - ow);
        checked(ow, n);
        ow += n;
      }
      for (; ow + kGroup <= ow_hi; ow += kGroup) fast(ow, kGroup);
      for (; ow < p.out_w; ow += kGroup) checked(ow, std::min<int64_t>(kGroup, p.out_w - ow));  // ow >= ow_lo here
    }
  }
}

}  // namespace kvant::cpu::avx512
