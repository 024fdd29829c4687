// Depthwise 2-D convolution for AVX-512 over NCHW planes (steps in
// depthwise_f32.h). A plane is staged into a zero-padded copy whose columns
// are split into s_w phases (column x goes to phase x % s_w, slot x / s_w),
// so a strided, dilated tap is a plain unaligned load at a constant offset
// from the output vector's base. Compiled with -mavx512f.
#include <immintrin.h>

#include <cstring>
#include <vector>

#include "ops/cpu/activation_f32_avx512.h"
#include "ops/cpu/depthwise_f32.h"

namespace kvant::cpu::avx512 {
namespace {

// The staged copy: rows of s_w phases of `phase_w` floats each.
struct Staging {
  int64_t rows, phase_w, row_w, blocks;

  explicit Staging(const DepthwisePlane& p) {
    blocks = (p.out_w + 15) / 16;
    rows = (p.out_h - 1) * p.s_h + (p.k_h - 1) * p.d_h + 1;
    // Slack: the last block's 16 lanes plus the farthest tap's slot.
    phase_w = (blocks * 16 + (p.k_w - 1) * p.d_w / p.s_w + 16 + 15) / 16 * 16;
    row_w = phase_w * p.s_w;
  }
  int64_t floats() const { return rows * row_w; }
};

// dst[0, n) = src[0, n), 16 floats at a time (rows are short: no call).
inline void CopyRow(float* dst, const float* src, int64_t n) {
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) _mm512_storeu_ps(dst + i, _mm512_loadu_ps(src + i));
  if (i < n) {
    const __mmask16 m = static_cast<__mmask16>((1u << (n - i)) - 1);
    _mm512_mask_storeu_ps(dst + i, m, _mm512_maskz_loadu_ps(m, src + i));
  }
}

// Lanes l with begin <= l < end (clamped to 0..16).
inline __mmask16 LaneRange(int64_t begin, int64_t end) {
  begin = std::clamp<int64_t>(begin, 0, 16);
  end = std::clamp<int64_t>(end, 0, 16);
  if (end <= begin) return 0;
  return static_cast<__mmask16>(((1u << end) - 1) & ~((1u << begin) - 1));
}

// Copies plane `x` into `dst` (already zero where it is padding). Stride 2
// splits each row straight from the input with masked loads (no bounce
// through a padded row, whose misaligned stores would stall the loads).
void Stage(const DepthwisePlane& p, const Staging& st, const float* x, float* dst) {
  const int64_t r0 = std::max<int64_t>(0, p.pad_h), r1 = std::min(st.rows, p.pad_h + p.in_h);
  const int64_t padded = p.pad_w + p.in_w;
  const __m512i even = _mm512_set_epi32(30, 28, 26, 24, 22, 20, 18, 16, 14, 12, 10, 8, 6, 4, 2, 0);
  const __m512i odd = _mm512_add_epi32(even, _mm512_set1_epi32(1));
  for (int64_t r = r0; r < r1; ++r) {  // rows outside the input stay zero
    const float* src = x + (r - p.pad_h) * p.in_w;
    float* d = dst + r * st.row_w;
    if (p.s_w == 1) {
      CopyRow(d + p.pad_w, src, std::min<int64_t>(p.in_w, st.phase_w - p.pad_w));
    } else if (p.s_w == 2) {
      for (int64_t j = 0; j * 2 < padded; j += 16) {
        const int64_t at = 2 * j - p.pad_w;  // input column of padded column 2j
        const __m512 a = _mm512_maskz_loadu_ps(LaneRange(-at, p.in_w - at), src + at);
        const __m512 b = _mm512_maskz_loadu_ps(LaneRange(-at - 16, p.in_w - at - 16), src + at + 16);
        _mm512_storeu_ps(d + j, _mm512_permutex2var_ps(a, even, b));
        _mm512_storeu_ps(d + st.phase_w + j, _mm512_permutex2var_ps(a, odd, b));
      }
    } else {
      for (int64_t iw = 0; iw < p.in_w; ++iw) {
        const int64_t xcol = iw + p.pad_w;
        d[(xcol % p.s_w) * st.phase_w + xcol / p.s_w] = src[iw];
      }
    }
  }
}

// Output vectors computed together: eight independent FMA chains cover the
// FMA latency on two ports.
constexpr int kGroup = 8;

// The output vectors of a plane (16 columns of one row each) in the order
// they are computed, padded with mask-0 copies to a multiple of kGroup:
// blocks of a row side by side when a row has at least four, else the same
// block of consecutive rows, so a group shares cache lines.
struct VectorList {
  std::vector<int64_t> in, out;  // staged base and output offset
  std::vector<__mmask16> mask;

  VectorList(const DepthwisePlane& p, const Staging& st) {
    const __mmask16 tail = static_cast<__mmask16>((1u << (p.out_w - (st.blocks - 1) * 16)) - 1);
    auto add = [&](int64_t oh, int64_t bl) {
      in.push_back(oh * p.s_h * st.row_w + bl * 16);
      out.push_back(oh * p.out_w + bl * 16);
      mask.push_back(bl + 1 == st.blocks ? tail : static_cast<__mmask16>(0xFFFF));
    };
    if (st.blocks >= 4) {
      for (int64_t oh = 0; oh < p.out_h; ++oh) {
        for (int64_t bl = 0; bl < st.blocks; ++bl) add(oh, bl);
      }
    } else {
      for (int64_t bl = 0; bl < st.blocks; ++bl) {
        for (int64_t oh = 0; oh < p.out_h; ++oh) add(oh, bl);
      }
    }
    while (in.size() % kGroup != 0) {  // computed, never stored
      in.push_back(in.back());
      out.push_back(out.back());
      mask.push_back(0);
    }
  }
};

// One plane, kGroup output vectors at a time. kTaps > 0 fixes the tap
// count (the loop unrolls, offsets and, for 3x3, weights stay in registers).
template <int kTaps>
void Vectors(const VectorList& list, const float* staged, const int32_t* tap_offset, const float* w,
             int64_t taps_rt, float bias, const ActivationF32& act, float* y) {
  const int64_t taps = kTaps > 0 ? kTaps : taps_rt;
  const __m512 b = _mm512_set1_ps(bias);
  const size_t n = list.in.size();
  for (size_t i = 0; i < n; i += kGroup) {
    const float* src[kGroup];
    __m512 acc[kGroup];
#pragma GCC unroll 8
    for (int g = 0; g < kGroup; ++g) {
      src[g] = staged + list.in[i + g];
      acc[g] = b;
    }
#pragma GCC unroll 25
    for (int64_t t = 0; t < taps; ++t) {
      const __m512 wt = _mm512_set1_ps(w[t]);
      const int64_t o = tap_offset[t];
#pragma GCC unroll 8
      for (int g = 0; g < kGroup; ++g) acc[g] = _mm512_fmadd_ps(wt, _mm512_loadu_ps(src[g] + o), acc[g]);
    }
#pragma GCC unroll 8
    for (int g = 0; g < kGroup; ++g) _mm512_mask_storeu_ps(y + list.out[i + g], list.mask[i + g], Activate(acc[g], act));
  }
}

}  // namespace

// Planes narrower than this many output columns run with channels in the
// lanes: a 7-wide row fills 7 of 16 lanes here.
constexpr int64_t kChannelLanesBelowWidth = 12;

size_t DepthwiseScratchBytesF32(const DepthwisePlane& p) {
  if (p.out_w < kChannelLanesBelowWidth) return DepthwiseChannelScratchBytesF32(p);
  const Staging st(p);
  return static_cast<size_t>(st.floats()) * sizeof(float) + 64;
}

void DepthwisePlanesF32(const DepthwisePlane& p, const float* x, const float* w, const float* bias, int64_t channels,
                        int64_t p0, int64_t p1, const ActivationF32& act, float* y, void* scratch) {
  if (p.out_w < kChannelLanesBelowWidth) return DepthwiseChannelGroupsF32(p, x, w, bias, channels, p0, p1, act, y, scratch);
  const Staging st(p);
  float* staged = static_cast<float*>(scratch);
  std::memset(scratch, 0, DepthwiseScratchBytesF32(p) - 64);  // padding stays zero for every plane
  const int64_t taps = p.k_h * p.k_w;
  std::vector<int32_t> offset(taps);
  for (int64_t kh = 0; kh < p.k_h; ++kh) {
    for (int64_t kw = 0; kw < p.k_w; ++kw) {
      const int64_t col = kw * p.d_w;
      offset[kh * p.k_w + kw] =
          static_cast<int32_t>(kh * p.d_h * st.row_w + (col % p.s_w) * st.phase_w + col / p.s_w);
    }
  }
  const VectorList list(p, st);
  const int64_t in_plane = p.in_h * p.in_w, out_plane = p.out_h * p.out_w;
  for (int64_t plane = p0; plane < p1; ++plane) {
    const int64_t ch = plane % channels;
    Stage(p, st, x + plane * in_plane, staged);
    const float* wc = w + ch * taps;
    const float b = bias ? bias[ch] : 0.f;
    float* yc = y + plane * out_plane;
    if (taps == 9) {
      Vectors<9>(list, staged, offset.data(), wc, taps, b, act, yc);
    } else if (taps == 25) {
      Vectors<25>(list, staged, offset.data(), wc, taps, b, act, yc);
    } else {
      Vectors<0>(list, staged, offset.data(), wc, taps, b, act, yc);
    }
  }
}

}  // namespace kvant::cpu::avx512
