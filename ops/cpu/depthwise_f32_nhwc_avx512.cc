// NHWC depthwise 2-D convolution for AVX-512 (kvant.ConvNhwc): channels in
// the lanes, so a tap's 16 weights are one vector and no layout change is
// needed.
//  - Kernels 3, 5 or 7 wide, stride 1 or 2, no column dilation (nearly every
//    depthwise layer in practice): a sliding window. A group of G output
//    pixels of one row reads each input pixel of a kernel row once and feeds
//    it to every output whose window covers it (KW / SW FMAs per load, the
//    row's KW weights in registers), so the loop is bound by FMAs rather
//    than by loads. Groups near the edges load pixels in the padding with a
//    zero mask (never touching memory).
//  - Other geometries: eight pixels through every tap, one load per FMA.
// Rows are taken in bands whose input fits in L2, and within a band one
// 16-channel slice at a time, so a slice's kernel rows stay in L1 from one
// output row to the next (NCHWc's locality without its layout).
// Compiled with -mavx512f.
#include <immintrin.h>

#include <cstdint>

#include "ops/cpu/activation_f32_avx512.h"
#include "ops/cpu/depthwise_f32.h"

namespace kvant::cpu::avx512 {
namespace {

// Input rows a band of output rows may read, at most this many bytes.
constexpr int64_t kBandBytes = 192 * 1024;

struct Slice {
  int64_t c0;
  __mmask16 m;
  __m512 bias;
};

// Outputs y[i * c], i < n, of one group, activated.
template <int G>
inline void StoreGroup(const Slice& s, const ActivationF32& act, __m512 (&acc)[G], int64_t n, int64_t c, float* y) {
  ActivateTile(acc, act);
#pragma GCC unroll 16
  for (int i = 0; i < G; ++i) {
    if (i < n) _mm512_mask_storeu_ps(y + i * c, s.m, acc[i]);
  }
}

// Output pixels [ow0, ow0 + n) (n <= G) of row oh, one channel slice.
// Unchecked: every input pixel the group reads lies inside the row.
template <int KW, int SW, int G, bool kChecked>
void SlideGroup(const DepthwiseNhwc& d, const float* x, const float* w_tc, const Slice& s, int64_t oh, int64_t ow0,
                int64_t n, const ActivationF32& act, float* y) {
  const DepthwisePlane& p = d.plane;
  const int64_t c = d.c;
  constexpr int J = (G - 1) * SW + KW;  // input pixels per kernel row
  const int64_t iw0 = ow0 * SW - p.pad_w;
  // Checked: the load mask of each input pixel, zero outside the row (and
  // past the pixels the group's n outputs read). Addresses are formed as
  // integers: a masked-off lane never touches memory.
  __mmask16 mk[J];
  if constexpr (kChecked) {
    const int64_t j_lo = std::clamp<int64_t>(-iw0, 0, J);
    const int64_t j_hi = std::clamp<int64_t>(std::min<int64_t>(p.in_w - iw0, (n - 1) * SW + KW), 0, J);
#pragma GCC unroll 64
    for (int j = 0; j < J; ++j) mk[j] = j >= j_lo && j < j_hi ? s.m : 0;
  }
  __m512 acc[G];
#pragma GCC unroll 16
  for (int i = 0; i < G; ++i) acc[i] = s.bias;
  for (int64_t kh = 0; kh < p.k_h; ++kh) {
    const int64_t ih = oh * p.s_h - p.pad_h + kh * p.d_h;
    if (ih < 0 || ih >= p.in_h) continue;
    const float* row = x + ih * p.in_w * c + s.c0;
    const float* wr = w_tc + kh * KW * c + s.c0;
    __m512 wk[KW];
#pragma GCC unroll 8
    for (int kw = 0; kw < KW; ++kw) wk[kw] = _mm512_maskz_loadu_ps(s.m, wr + kw * c);
#pragma GCC unroll 64
    for (int j = 0; j < J; ++j) {
      __m512 v;
      if constexpr (kChecked) {
        const auto at = reinterpret_cast<uintptr_t>(row) + static_cast<uintptr_t>((iw0 + j) * c) * sizeof(float);
        v = _mm512_maskz_loadu_ps(mk[j], reinterpret_cast<const float*>(at));
      } else {
        v = _mm512_maskz_loadu_ps(s.m, row + (iw0 + j) * c);
      }
#pragma GCC unroll 8
      for (int kw = 0; kw < KW; ++kw) {
        const int t = j - kw;  // SW * output + kw = j
        if (t >= 0 && t % SW == 0 && t / SW < G) acc[t / SW] = _mm512_fmadd_ps(wk[kw], v, acc[t / SW]);
      }
    }
  }
  StoreGroup<G>(s, act, acc, n, c, y + (oh * p.out_w + ow0) * c + s.c0);
}

template <int KW, int SW>
void SlideRow(const DepthwiseNhwc& d, const float* x, const float* w_tc, const Slice& s, int64_t oh,
              const ActivationF32& act, float* y) {
  const DepthwisePlane& p = d.plane;
  for (int64_t ow = 0; ow < p.out_w;) {
    const int64_t left = p.out_w - ow;
    // Whole groups of 16, then the smallest group that takes the rest.
    const int g = left > 12 ? 16 : left > 8 ? 12 : left > 4 ? 8 : 4;
    const int64_t n = std::min<int64_t>(g, left);
    const int64_t iw0 = ow * SW - p.pad_w;
    const bool inside = iw0 >= 0 && iw0 + (g - 1) * SW + KW <= p.in_w;
    if (g == 16) {
      inside ? SlideGroup<KW, SW, 16, false>(d, x, w_tc, s, oh, ow, n, act, y)
             : SlideGroup<KW, SW, 16, true>(d, x, w_tc, s, oh, ow, n, act, y);
    } else if (g == 12) {
      inside ? SlideGroup<KW, SW, 12, false>(d, x, w_tc, s, oh, ow, n, act, y)
             : SlideGroup<KW, SW, 12, true>(d, x, w_tc, s, oh, ow, n, act, y);
    } else if (g == 8) {
      inside ? SlideGroup<KW, SW, 8, false>(d, x, w_tc, s, oh, ow, n, act, y)
             : SlideGroup<KW, SW, 8, true>(d, x, w_tc, s, oh, ow, n, act, y);
    } else {
      inside ? SlideGroup<KW, SW, 4, false>(d, x, w_tc, s, oh, ow, n, act, y)
             : SlideGroup<KW, SW, 4, true>(d, x, w_tc, s, oh, ow, n, act, y);
    }
    ow += n;
  }
}

// Any geometry: pixels [ow0, ow0 + n), n <= 8, through every tap.
template <bool kChecked>
void TapGroup(const DepthwiseNhwc& d, const float* x, const float* w_tc, const Slice& s, int64_t oh, int64_t ow0,
              int64_t n, const ActivationF32& act, float* y) {
  const DepthwisePlane& p = d.plane;
  const int64_t c = d.c;
  constexpr int kGroup = 8;
  __m512 acc[kGroup];
#pragma GCC unroll 8
  for (int i = 0; i < kGroup; ++i) acc[i] = s.bias;
  for (int64_t kh = 0; kh < p.k_h; ++kh) {
    const int64_t ih = oh * p.s_h - p.pad_h + kh * p.d_h;
    if (ih < 0 || ih >= p.in_h) continue;
    const float* row = x + ih * p.in_w * c + s.c0;
    for (int64_t kw = 0; kw < p.k_w; ++kw) {
      const __m512 wv = _mm512_maskz_loadu_ps(s.m, w_tc + (kh * p.k_w + kw) * c + s.c0);
#pragma GCC unroll 8
      for (int i = 0; i < kGroup; ++i) {
        const int64_t iw = (ow0 + i) * p.s_w - p.pad_w + kw * p.d_w;
        __m512 v;
        if constexpr (kChecked) {
          const bool inside = i < n && iw >= 0 && iw < p.in_w;
          v = _mm512_maskz_loadu_ps(inside ? s.m : 0, row + (inside ? iw * c : 0));
        } else {
          v = _mm512_maskz_loadu_ps(s.m, row + iw * c);
        }
        acc[i] = _mm512_fmadd_ps(wv, v, acc[i]);
      }
    }
  }
  StoreGroup<kGroup>(s, act, acc, n, c, y + (oh * p.out_w + ow0) * c + s.c0);
}

void TapRow(const DepthwiseNhwc& d, const float* x, const float* w_tc, const Slice& s, int64_t oh,
            const ActivationF32& act, float* y) {
  const DepthwisePlane& p = d.plane;
  for (int64_t ow = 0; ow < p.out_w; ow += 8) {
    const int64_t n = std::min<int64_t>(8, p.out_w - ow);
    const int64_t iw0 = ow * p.s_w - p.pad_w;
    const bool inside = n == 8 && iw0 >= 0 && iw0 + 7 * p.s_w + (p.k_w - 1) * p.d_w < p.in_w;
    inside ? TapGroup<false>(d, x, w_tc, s, oh, ow, n, act, y) : TapGroup<true>(d, x, w_tc, s, oh, ow, n, act, y);
  }
}

using RowFn = void (*)(const DepthwiseNhwc&, const float*, const float*, const Slice&, int64_t,
                       const ActivationF32&, float*);

RowFn SelectRow(const DepthwisePlane& p) {
  if (p.d_w != 1 || (p.s_w != 1 && p.s_w != 2)) return TapRow;
  const bool s1 = p.s_w == 1;
  switch (p.k_w) {
    case 3: return s1 ? SlideRow<3, 1> : SlideRow<3, 2>;
    case 5: return s1 ? SlideRow<5, 1> : SlideRow<5, 2>;
    case 7: return s1 ? SlideRow<7, 1> : SlideRow<7, 2>;
    default: return TapRow;
  }
}

}  // namespace

void DepthwiseNhwcRowsF32(const DepthwiseNhwc& d, const float* x, const float* w_tc, const float* bias,
                          const ActivationF32& act, int64_t oh0, int64_t oh1, float* y) {
  const DepthwisePlane& p = d.plane;
  const int64_t c = d.c;
  const RowFn row = SelectRow(p);
  const int64_t row_bytes = p.s_h * p.in_w * c * static_cast<int64_t>(sizeof(float));
  const int64_t band = std::max<int64_t>(1, kBandBytes / std::max<int64_t>(1, row_bytes));
  for (int64_t b0 = oh0; b0 < oh1; b0 += band) {
    const int64_t b1 = std::min(oh1, b0 + band);
    for (int64_t c0 = 0; c0 < c; c0 += 16) {
      Slice s;
      s.c0 = c0;
      s.m = c - c0 >= 16 ? static_cast<__mmask16>(0xFFFF) : static_cast<__mmask16>((1u << (c - c0)) - 1);
      s.bias = bias ? _mm512_maskz_loadu_ps(s.m, bias + c0) : _mm512_setzero_ps();
      for (int64_t oh = b0; oh < b1; ++oh) row(d, x, w_tc, s, oh, act, y);
    }
  }
}

}  // namespace kvant::cpu::avx512
