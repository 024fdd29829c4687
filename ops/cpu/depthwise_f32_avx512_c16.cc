// Depthwise 2-D convolution for AVX-512 with channels in the lanes, for
// planes too narrow to fill 16 columns (late layers of mobile CNNs: 7x7,
// 10x10): sixteen NCHW planes are transposed into a zero-padded
// [row][column][16 channels] copy, each output pixel of the sixteen is one
// vector (four at a time through all taps, the tap's 16 weights one load),
// and the [pixel][16] results are transposed back into the planes.
// Compiled with -mavx512f.
#include <immintrin.h>

#include <cstring>
#include <vector>

#include "ops/cpu/activation_f32_avx512.h"
#include "ops/cpu/depthwise_f32.h"

namespace kvant::cpu::avx512 {
namespace {

// r[i][j] <- r[j][i] for a 16x16 block of floats.
inline void Transpose16(__m512 r[16]) {
  __m512 t[16];
  for (int i = 0; i < 16; i += 2) {
    t[i] = _mm512_unpacklo_ps(r[i], r[i + 1]);
    t[i + 1] = _mm512_unpackhi_ps(r[i], r[i + 1]);
  }
  for (int i = 0; i < 16; i += 4) {
    r[i] = _mm512_shuffle_ps(t[i], t[i + 2], 0x44);
    r[i + 1] = _mm512_shuffle_ps(t[i], t[i + 2], 0xEE);
    r[i + 2] = _mm512_shuffle_ps(t[i + 1], t[i + 3], 0x44);
    r[i + 3] = _mm512_shuffle_ps(t[i + 1], t[i + 3], 0xEE);
  }
  for (int h = 0; h < 16; h += 8) {
    for (int i = 0; i < 4; ++i) {
      t[h + i] = _mm512_shuffle_f32x4(r[h + i], r[h + i + 4], 0x88);
      t[h + i + 4] = _mm512_shuffle_f32x4(r[h + i], r[h + i + 4], 0xDD);
    }
  }
  for (int i = 0; i < 8; ++i) {
    r[i] = _mm512_shuffle_f32x4(t[i], t[i + 8], 0x88);
    r[i + 8] = _mm512_shuffle_f32x4(t[i], t[i + 8], 0xDD);
  }
}

inline __mmask16 FirstLanes(int64_t n) {
  return n >= 16 ? static_cast<__mmask16>(0xFFFF) : static_cast<__mmask16>((1u << n) - 1);
}

// The staged copy: padded rows x padded columns of 16 channels.
struct Geometry {
  int64_t rows, cols, out_hw;
  explicit Geometry(const DepthwisePlane& p)
      : rows((p.out_h - 1) * p.s_h + (p.k_h - 1) * p.d_h + 1),
        cols((p.out_w - 1) * p.s_w + (p.k_w - 1) * p.d_w + 1),
        out_hw(p.out_h * p.out_w) {}
  int64_t staged_floats() const { return rows * cols * 16; }
  int64_t out_floats() const { return (out_hw + 16 + 8) * 16; }
};

}  // namespace

size_t DepthwiseChannelScratchBytesF32(const DepthwisePlane& p) {
  const Geometry g(p);
  return static_cast<size_t>(g.staged_floats() + g.out_floats() + 2 * 16 * (p.k_h * p.k_w + 1)) * sizeof(float) + 64;
}

void DepthwiseChannelGroupsF32(const DepthwisePlane& p, const float* x, const float* w, const float* bias,
                               int64_t channels, int64_t p0, int64_t p1, const ActivationF32& act, float* y,
                               void* scratch) {
  const Geometry g(p);
  const int64_t taps = p.k_h * p.k_w, in_plane = p.in_h * p.in_w;
  float* staged = static_cast<float*>(scratch);
  float* out16 = staged + g.staged_floats();
  float* w16 = out16 + g.out_floats();  // [tap][16], then the 16 biases
  std::memset(staged, 0, g.staged_floats() * sizeof(float));  // padding stays zero for every group
  std::vector<int64_t> tap_off(taps);
  for (int64_t kh = 0; kh < p.k_h; ++kh) {
    for (int64_t kw = 0; kw < p.k_w; ++kw) tap_off[kh * p.k_w + kw] = (kh * p.d_h * g.cols + kw * p.d_w) * 16;
  }
  // Pixel q's staged base, eight pixels at a time (eight FMA chains; the
  // last group repeats its final pixel, whose result lands in out16 twice).
  constexpr int kGroup = 8;
  const int64_t groups = (g.out_hw + kGroup - 1) / kGroup;
  std::vector<int64_t> base(groups * kGroup);
  for (int64_t q = 0; q < groups * kGroup; ++q) {
    const int64_t qq = std::min(q, g.out_hw - 1), oh = qq / p.out_w, ow = qq % p.out_w;
    base[q] = (oh * p.s_h * g.cols + ow * p.s_w) * 16;
  }
  const int64_t col_end = std::min(p.in_w, g.cols - p.pad_w);  // input columns the output reads
  for (int64_t c0 = p0; c0 < p1; c0 += 16) {
    const int64_t lanes = std::min<int64_t>(16, p1 - c0);
    // 1. Weights and biases of the lanes' channels.
    for (int64_t l = 0; l < 16; ++l) {
      const int64_t ch = (c0 + std::min(l, lanes - 1)) % channels;
      for (int64_t t = 0; t < taps; ++t) w16[t * 16 + l] = w[ch * taps + t];
      w16[taps * 16 + l] = bias ? bias[ch] : 0.f;
    }
    // 2. Stage: each input row of the sixteen planes, 16 columns at a time.
    for (int64_t ih = 0; ih < p.in_h; ++ih) {
      const int64_t r = ih + p.pad_h;
      if (r < 0 || r >= g.rows) continue;
      for (int64_t j0 = 0; j0 < col_end; j0 += 16) {
        const __mmask16 m = FirstLanes(col_end - j0);
        __m512 v[16];
        for (int64_t l = 0; l < 16; ++l) {
          v[l] = l < lanes ? _mm512_maskz_loadu_ps(m, x + (c0 + l) * in_plane + ih * p.in_w + j0) : _mm512_setzero_ps();
        }
        Transpose16(v);
        float* dst = staged + (r * g.cols + p.pad_w + j0) * 16;
        for (int64_t k = 0; k < std::min<int64_t>(16, col_end - j0); ++k) _mm512_storeu_ps(dst + k * 16, v[k]);
      }
    }
    // 3. Every output pixel of the sixteen channels.
    const __m512 b = _mm512_loadu_ps(w16 + taps * 16);
    for (int64_t q = 0; q < groups * kGroup; q += kGroup) {
      __m512 acc[kGroup];
#pragma GCC unroll 8
      for (int i = 0; i < kGroup; ++i) acc[i] = b;
      for (int64_t t = 0; t < taps; ++t) {
        const __m512 wt = _mm512_loadu_ps(w16 + t * 16);
        const float* s = staged + tap_off[t];
#pragma GCC unroll 8
        for (int i = 0; i < kGroup; ++i) acc[i] = _mm512_fmadd_ps(wt, _mm512_loadu_ps(s + base[q + i]), acc[i]);
      }
#pragma GCC unroll 8
      for (int i = 0; i < kGroup; ++i) _mm512_storeu_ps(out16 + (q + i) * 16, Activate(acc[i], act));
    }
    // 4. Back into the planes, 16 pixels at a time.
    for (int64_t q0 = 0; q0 < g.out_hw; q0 += 16) {
      const int64_t n = std::min<int64_t>(16, g.out_hw - q0);
      __m512 v[16];
      for (int64_t k = 0; k < 16; ++k) v[k] = k < n ? _mm512_loadu_ps(out16 + (q0 + k) * 16) : _mm512_setzero_ps();
      Transpose16(v);
      for (int64_t l = 0; l < lanes; ++l) _mm512_mask_storeu_ps(y + (c0 + l) * g.out_hw + q0, FirstLanes(n), v[l]);
    }
  }
}

}  // namespace kvant::cpu::avx512
