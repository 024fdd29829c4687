// Depthwise INT8 convolution for AVX-512 VNNI. Each int32 lane of the lane
// image holds four horizontally adjacent taps of one channel as bytes, so
// one VPDPBUSD (u8 x s8, exact int32 sums) applies four taps to 16 channels:
// a 3x3 kernel is three per output vector, a 5x5 ten.
//
// The lane image is in the blocked lane order (ops/cpu/conv_s8.h): the four
// tap vectors of 64 channels interleaved by VPUNPCK{L,H}BW and
// VPUNPCK{L,H}WD, eight shuffles per 64 lanes (widening each byte on its
// own took three times as many operations). Requantization packs the sums
// with VPACKSSDW and VPACKUSWB (VPACKSSWB for s8; ops/cpu/pack_bytes_avx512.h),
// which undo that order within 128-bit lanes: a full block comes out in
// channel order, 64 bytes at a time, and a narrower one after one VPERMD.
// Compiled with -mavx512f -mavx512bw -mavx512vnni.
#include <immintrin.h>

#include <algorithm>
#include <array>

#include "ops/cpu/conv_s8.h"
#include "ops/cpu/pack_bytes_avx512.h"

namespace kvant::cpu::avx512vnni {
namespace {

constexpr DepthwiseLaneOrder kOrder = DepthwiseLaneOrder::kBlocked64;

// A block of the lane order: n <= 64 channels from b0, in q vectors.
struct Block {
  int64_t b0, n, q;
};

Block BlockAt(int64_t c, int64_t b0) {
  const int64_t n = std::min<int64_t>(64, c - b0);
  return {b0, n, (n + 15) / 16};
}

__mmask64 BytesMask(int64_t n) { return n >= 64 ? ~__mmask64{0} : (__mmask64{1} << n) - 1; }

// VPERMD indices that bring the packed bytes of a q-vector block into
// channel order (dword g: channels 4g .. 4g + 3). The packs put vector z,
// 128-bit lane lz at dword 4 lz + 2 (z / 2) + z % 2; the block holds channel
// group g = 4 L + v at lane v * 4q + 4 L.
const std::array<std::array<int32_t, 16>, 5>& PackOrders() {
  static const auto orders = [] {
    std::array<std::array<int32_t, 16>, 5> o{};
    for (int64_t q = 1; q <= 4; ++q) {
      for (int g = 0; g < 16; ++g) o[q][g] = g;
      for (int64_t l = 0; l < q; ++l) {
        for (int64_t v = 0; v < 4; ++v) {
          const int64_t at = v * 4 * q + 4 * l, z = at / 16, lz = at % 16 / 4;
          o[q][4 * l + v] = static_cast<int32_t>(4 * lz + 2 * (z / 2) + z % 2);
        }
      }
    }
    return o;
  }();
  return orders;
}

// What a row's sums need: lane rows by kernel row, packed weights
// ([ky][lane][pitch]), and the steps between lanes and output columns.
struct Terms {
  const int32_t* const* rows;
  const int32_t* w;
  int64_t kh, lanes, pitch;
  int64_t lane_step;  // 4 * dw * pitch: from one lane of a kernel row to the next
  int64_t col_step;   // sw * pitch: from one output column to the next
};

Terms TermsOf(const ConvS8Shape& s, const int32_t* const* rows, const int32_t* w_lanes) {
  const int64_t pitch = DepthwiseLanePitch(kOrder, s.cin);
  return {rows, w_lanes, s.kh, DepthwiseLanesPerRow(s, 4), pitch, 4 * s.dw * pitch, s.sw * pitch};
}

// Kernels RequantRows runs two output rows of at once: 3x3 and 5x5 (up to 3x4
// and 5x8).
bool Unrolled(const Terms& t) { return (t.kh == 3 && t.lanes == 1) || (t.kh == 5 && t.lanes == 2); }

// For output columns [ow0, ow1) and the kZ vectors of lanes from l0: calls
// emit(ow, row, sums) with the int32 sums plus init[l0 ..] (null: 0) of
// output row `row` < kRows. kKh > 0 fixes the kernel rows and kLanes the
// lanes per row (3x3: 3 and 1, 5x5: 5 and 2) and keeps the weights in
// registers; kKh == 0 reads them as it goes (one row). With kRows == 2,
// t.rows holds kh + 1 lane rows, the second output row reading rows 1 .. kh
// (stride 1): each lane vector loaded serves both rows.
template <int kKh, int kLanes, int kZ, int kRows, typename Emit>
void ForSums(const Terms& t, int64_t l0, int64_t ow0, int64_t ow1, const int32_t* init, Emit&& emit) {
  if constexpr (kKh > 0) {
    constexpr int kTerms = kKh * kLanes, kLoads = (kKh + kRows - 1) * kLanes;
    __m512i w[kTerms][kZ];
    const int32_t* base[kLoads];
#pragma GCC unroll 16
    for (int i = 0; i < kLoads; ++i) base[i] = t.rows[i / kLanes] + i % kLanes * t.lane_step + l0;
#pragma GCC unroll 16
    for (int i = 0; i < kTerms; ++i) {
#pragma GCC unroll 4
      for (int z = 0; z < kZ; ++z) w[i][z] = _mm512_loadu_si512(t.w + i * t.pitch + l0 + 16 * z);
    }
    for (int64_t ow = ow0; ow < ow1; ++ow) {
      __m512i sum[kRows][kZ];
#pragma GCC unroll 4
      for (int z = 0; z < kZ; ++z) {
        sum[0][z] = init ? _mm512_loadu_si512(init + l0 + 16 * z) : _mm512_setzero_si512();
        if constexpr (kRows > 1) sum[1][z] = sum[0][z];
      }
#pragma GCC unroll 16
      for (int i = 0; i < kLoads; ++i) {
#pragma GCC unroll 4
        for (int z = 0; z < kZ; ++z) {
          const __m512i x = _mm512_loadu_si512(base[i] + ow * t.col_step + 16 * z);
#pragma GCC unroll 2
          for (int r = 0; r < kRows; ++r) {
            const int term = i - r * kLanes;  // this row's kernel row ky = i / kLanes - r
            if (term >= 0 && term < kTerms) sum[r][z] = _mm512_dpbusd_epi32(sum[r][z], x, w[term][z]);
          }
        }
      }
#pragma GCC unroll 2
      for (int r = 0; r < kRows; ++r) emit(ow, r, sum[r]);
    }
  } else {
    static_assert(kRows == 1);
    for (int64_t ow = ow0; ow < ow1; ++ow) {
      __m512i sum[kZ];
#pragma GCC unroll 4
      for (int z = 0; z < kZ; ++z) sum[z] = init ? _mm512_loadu_si512(init + l0 + 16 * z) : _mm512_setzero_si512();
      const int32_t* w = t.w + l0;
      for (int64_t ky = 0; ky < t.kh; ++ky) {
        const int32_t* x = t.rows[ky] + ow * t.col_step + l0;
        for (int64_t j = 0; j < t.lanes; ++j, x += t.lane_step, w += t.pitch) {
#pragma GCC unroll 4
          for (int z = 0; z < kZ; ++z) {
            sum[z] = _mm512_dpbusd_epi32(sum[z], _mm512_loadu_si512(x + 16 * z), _mm512_loadu_si512(w + 16 * z));
          }
        }
      }
      emit(ow, 0, sum);
    }
  }
}

// The requantization of one block (ops/cpu/gemm_s8.h, float scales) through
// the packs (ops/cpu/pack_bytes_avx512.h), whose in-lane order undoes the
// blocked lane order: a full block comes out in channel order, a narrower one
// after VPERMD by PackOrders.
struct Requant {
  __m512i order, zp16, lo, hi;
  __mmask64 m;
  Requant(const GemmS8Output& out, const Block& b)
      : order(_mm512_loadu_si512(PackOrders()[b.q].data())),
        zp16(_mm512_set1_epi16(static_cast<int16_t>(out.zero_point))),
        lo(_mm512_set1_epi8(static_cast<char>(out.lo))),
        hi(_mm512_set1_epi8(static_cast<char>(out.hi))),
        m(BytesMask(b.n)) {}

  __m512i Rounded(__m512i sum, const float* scale) const {
    return pack_bytes::Rounded(_mm512_mul_ps(_mm512_cvtepi32_ps(sum), _mm512_loadu_ps(scale)));
  }
  // Vectors z and z + 1 of a block as 16-bit words with the zero point.
  __m512i Words(__m512i r0, __m512i r1) const { return pack_bytes::Words(r0, r1, zp16); }
  // The words of vectors 0-1 and 2-3 as bytes in channel order.
  template <int kQ, bool kSigned>
  __m512i Bytes(__m512i w0, __m512i w1) const {
    __m512i v = pack_bytes::Bytes<kSigned>(w0, w1);
    if constexpr (kQ < 4) v = _mm512_permutexvar_epi32(order, v);
    return pack_bytes::Clamp<kSigned>(v, lo, hi);
  }
};

// Output rows y[0 .. kRows) (channel order), one block of them: all kQ
// vectors at once.
template <int kKh, int kLanes, int kQ, int kRows, bool kSigned>
void RequantBlock(const Terms& t, const Block& b, int64_t out_w, const GemmS8Output& out, int8_t* const* y,
                  int64_t c) {
  const Requant rq(out, b);
  const float* scale = out.scale + b.b0;
  ForSums<kKh, kLanes, kQ, kRows>(t, b.b0, 0, out_w, out.col_offset, [&](int64_t ow, int row, const __m512i* sum) {
    __m512i r[kQ];
#pragma GCC unroll 4
    for (int z = 0; z < kQ; ++z) r[z] = rq.Rounded(sum[z], scale + 16 * z);
    const __m512i w0 = rq.Words(r[0], r[kQ > 1 ? 1 : 0]);
    const __m512i w1 = kQ > 2 ? rq.Words(r[kQ > 2 ? 2 : 0], r[kQ > 3 ? 3 : 0]) : w0;
    _mm512_mask_storeu_epi8(y[row] + ow * c + b.b0, rq.m, rq.template Bytes<kQ, kSigned>(w0, w1));
  });
}

// The same in two passes over each chunk of columns, vectors 0-1 and then
// the rest (kQ is 3 or 4), so that the weights of a pass fit in registers
// (5x5: 2 x 10); the first pass leaves its 16-bit words on the stack.
template <int kKh, int kLanes, int kQ, int kRows, bool kSigned>
void RequantBlockHalves(const Terms& t, const Block& b, int64_t out_w, const GemmS8Output& out, int8_t* const* y,
                        int64_t c) {
  constexpr int64_t kChunk = 32;
  const Requant rq(out, b);
  const float* scale = out.scale + b.b0;
  alignas(64) __m512i words[kRows][kChunk];
  for (int64_t ow0 = 0; ow0 < out_w; ow0 += kChunk) {
    const int64_t ow1 = std::min(out_w, ow0 + kChunk);
    ForSums<kKh, kLanes, 2, kRows>(t, b.b0, ow0, ow1, out.col_offset, [&](int64_t ow, int row, const __m512i* sum) {
      words[row][ow - ow0] = rq.Words(rq.Rounded(sum[0], scale), rq.Rounded(sum[1], scale + 16));
    });
    ForSums<kKh, kLanes, kQ - 2, kRows>(
        t, b.b0 + 32, ow0, ow1, out.col_offset, [&](int64_t ow, int row, const __m512i* sum) {
          const __m512i r2 = rq.Rounded(sum[0], scale + 32);
          const __m512i w1 = rq.Words(r2, kQ > 3 ? rq.Rounded(sum[kQ > 3 ? 1 : 0], scale + 48) : r2);
          _mm512_mask_storeu_epi8(y[row] + ow * c + b.b0, rq.m,
                                  rq.template Bytes<kQ, kSigned>(words[row][ow - ow0], w1));
        });
  }
}

// The int32 sums of one block of one row into acc (channel order).
template <int kKh, int kLanes, int kZ>
void SumBlock(const Terms& t, const Block& b, int64_t out_w, int32_t* acc, int64_t c) {
  int64_t lane_of[64];
  for (int64_t k = 0; k < b.n; ++k) lane_of[k] = DepthwiseLaneOf(kOrder, c, b.b0 + k) - b.b0;
  ForSums<kKh, kLanes, kZ, 1>(t, b.b0, 0, out_w, nullptr, [&](int64_t ow, int, const __m512i* sum) {
    alignas(64) int32_t lanes[64];
#pragma GCC unroll 4
    for (int z = 0; z < kZ; ++z) _mm512_store_si512(lanes + 16 * z, sum[z]);
    for (int64_t k = 0; k < b.n; ++k) acc[ow * c + b.b0 + k] = lanes[lane_of[k]];
  });
}

// Calls f.template operator()<kZ>() with kZ = the block's vectors.
template <typename F>
void ByVectors(const Block& b, F&& f) {
  switch (b.q) {
    case 1: return f.template operator()<1>();
    case 2: return f.template operator()<2>();
    case 3: return f.template operator()<3>();
    default: return f.template operator()<4>();
  }
}

// One block of kRows rows of a kernel of kKh rows of kLanes lanes, its
// weights in registers: in one pass where they fit, else in two.
template <int kKh, int kLanes, int kRows, bool kSigned>
void RequantUnrolled(const Terms& t, const Block& b, int64_t out_w, const GemmS8Output& out, int8_t* const* y,
                     int64_t c) {
  ByVectors(b, [&]<int kQ>() {
    if constexpr (kKh * kLanes * kQ <= 20) {
      RequantBlock<kKh, kLanes, kQ, kRows, kSigned>(t, b, out_w, out, y, c);
    } else {
      RequantBlockHalves<kKh, kLanes, kQ, kRows, kSigned>(t, b, out_w, out, y, c);
    }
  });
}

// One block of kRows requantized rows. Kernels up to 3x4 and 5x8 (and the
// rows of them an output row near the top or bottom keeps) have their
// weights in registers; others (one row) read them as they go. Two rows are
// unrolled for the full 3x3 and 5x5 only (Unrolled).
template <int kRows, bool kSigned>
void RequantRows(const Terms& t, const Block& b, int64_t out_w, const GemmS8Output& out, int8_t* const* y,
                 int64_t c) {
  if constexpr (kRows == 2) {
    if (t.lanes == 1) return RequantUnrolled<3, 1, 2, kSigned>(t, b, out_w, out, y, c);
    return RequantUnrolled<5, 2, 2, kSigned>(t, b, out_w, out, y, c);
  } else {
    const int64_t key = t.lanes * 8 + t.kh;
    switch (key) {
      case 8 + 1: return RequantUnrolled<1, 1, 1, kSigned>(t, b, out_w, out, y, c);
      case 8 + 2: return RequantUnrolled<2, 1, 1, kSigned>(t, b, out_w, out, y, c);
      case 8 + 3: return RequantUnrolled<3, 1, 1, kSigned>(t, b, out_w, out, y, c);
      case 16 + 1: return RequantUnrolled<1, 2, 1, kSigned>(t, b, out_w, out, y, c);
      case 16 + 2: return RequantUnrolled<2, 2, 1, kSigned>(t, b, out_w, out, y, c);
      case 16 + 3: return RequantUnrolled<3, 2, 1, kSigned>(t, b, out_w, out, y, c);
      case 16 + 4: return RequantUnrolled<4, 2, 1, kSigned>(t, b, out_w, out, y, c);
      case 16 + 5: return RequantUnrolled<5, 2, 1, kSigned>(t, b, out_w, out, y, c);
      default: ByVectors(b, [&]<int kQ>() { RequantBlock<0, 0, kQ, 1, kSigned>(t, b, out_w, out, y, c); });
    }
  }
}

template <int kRows>
void Requantize(const ConvS8Shape& s, const int32_t* const* rows, const int32_t* w_lanes, const GemmS8Output& out,
                int8_t* const* y) {
  const Terms t = TermsOf(s, rows, w_lanes);
  for (int64_t b0 = 0; b0 < s.cin; b0 += 64) {
    const Block b = BlockAt(s.cin, b0);
    if (out.kind == GemmS8Output::Kind::kS8) {
      RequantRows<kRows, true>(t, b, s.out_w(), out, y, s.cin);
    } else {
      RequantRows<kRows, false>(t, b, s.out_w(), out, y, s.cin);
    }
  }
}

}  // namespace

void DepthwiseRowS8(const ConvS8Shape& s, const int32_t* const* rows, const int32_t* w_lanes, int32_t* acc) {
  const Terms t = TermsOf(s, rows, w_lanes);
  for (int64_t b0 = 0; b0 < s.cin; b0 += 64) {
    const Block b = BlockAt(s.cin, b0);
    if (t.kh == 3 && t.lanes == 1) {
      ByVectors(b, [&]<int kZ>() { SumBlock<3, 1, kZ>(t, b, s.out_w(), acc, s.cin); });
    } else {
      ByVectors(b, [&]<int kZ>() { SumBlock<0, 0, kZ>(t, b, s.out_w(), acc, s.cin); });
    }
  }
}

void DepthwiseRowRequantS8(const ConvS8Shape& s, const int32_t* const* rows, const int32_t* w_lanes,
                           const GemmS8Output& out, void* y) {
  int8_t* const rows_y[1] = {static_cast<int8_t*>(y)};
  Requantize<1>(s, rows, w_lanes, out, rows_y);
}

bool DepthwiseRowPairRequantS8(const ConvS8Shape& s, const int32_t* const* rows, const int32_t* w_lanes,
                               const GemmS8Output& out, void* y0, void* y1) {
  if (!Unrolled(TermsOf(s, rows, w_lanes)) || s.sh != 1 || s.dh != 1) return false;
  int8_t* const rows_y[2] = {static_cast<int8_t*>(y0), static_cast<int8_t*>(y1)};
  Requantize<2>(s, rows, w_lanes, out, rows_y);
  return true;
}

namespace {

// The four tap vectors at x, x + partner, x + 2 partner, x + 3 partner
// (bytes under m) interleaved: a[v] holds, in 128-bit lane L, the lanes of
// bytes 16 L + 4 v .. 16 L + 4 v + 3.
void Interleave(const uint8_t* x, int64_t partner, __mmask64 m, __m512i* a) {
  const __m512i x0 = _mm512_maskz_loadu_epi8(m, x), x1 = _mm512_maskz_loadu_epi8(m, x + partner);
  const __m512i x2 = _mm512_maskz_loadu_epi8(m, x + 2 * partner), x3 = _mm512_maskz_loadu_epi8(m, x + 3 * partner);
  const __m512i lo01 = _mm512_unpacklo_epi8(x0, x1), hi01 = _mm512_unpackhi_epi8(x0, x1);
  const __m512i lo23 = _mm512_unpacklo_epi8(x2, x3), hi23 = _mm512_unpackhi_epi8(x2, x3);
  a[0] = _mm512_unpacklo_epi16(lo01, lo23);
  a[1] = _mm512_unpackhi_epi16(lo01, lo23);
  a[2] = _mm512_unpacklo_epi16(hi01, hi23);
  a[3] = _mm512_unpackhi_epi16(hi01, hi23);
}

// Lanes of one block, taps one pixel apart (partner == c), every step-th
// pixel: the byte interleave of pixels (i, i + 1) serves the lane at i
// (taps 0-1) and the one at i - 2 (taps 2-3), so a lane costs two byte
// shuffles and four word shuffles instead of four and four.
template <int kStep>
void BlockLanesDense(const uint8_t* x, int64_t pixels, int64_t c, const Block& b, int32_t* p, int64_t pitch) {
  const __mmask64 m = BytesMask(b.n);
  const __mmask16 mq = static_cast<__mmask16>((1u << (4 * b.q)) - 1);
  struct Pair {
    __m512i lo, hi;
  };
  auto pair = [&](int64_t i) {
    const __m512i x0 = _mm512_maskz_loadu_epi8(m, x + i * c), x1 = _mm512_maskz_loadu_epi8(m, x + (i + 1) * c);
    return Pair{_mm512_unpacklo_epi8(x0, x1), _mm512_unpackhi_epi8(x0, x1)};
  };
  Pair p0 = pair(0), p1 = kStep == 1 ? pair(1) : p0;
  for (int64_t u = 0; u < pixels; ++u) {
    const int64_t i = u * kStep;
    const Pair p2 = pair(i + 2);
    const __m512i a[4] = {_mm512_unpacklo_epi16(p0.lo, p2.lo), _mm512_unpackhi_epi16(p0.lo, p2.lo),
                          _mm512_unpacklo_epi16(p0.hi, p2.hi), _mm512_unpackhi_epi16(p0.hi, p2.hi)};
    int32_t* pb = p + i * pitch;
    if (b.q == 4) {
      for (int v = 0; v < 4; ++v) _mm512_storeu_si512(pb + 16 * v, a[v]);
    } else {
      for (int v = 0; v < 4; ++v) _mm512_mask_storeu_epi32(pb + 4 * b.q * v, mq, a[v]);
    }
    if constexpr (kStep == 1) {
      p0 = p1;
      p1 = p2;
    } else {
      p0 = p2;
    }
  }
}

}  // namespace

void LaneRowS8(const uint8_t* x, int64_t pixels, int64_t c, int64_t step, int64_t partner, int32_t* p) {
  const int64_t pitch = DepthwiseLanePitch(kOrder, c);
  int64_t u = 0;
  if (step == 1 && (c == 16 || c == 32)) {
    // A vector holds 64 / c whole pixels (pitch == c); their 128-bit lanes
    // regrouped per pixel.
    for (; u + 64 / c <= pixels; u += 64 / c) {
      __m512i a[4];
      Interleave(x + u * c, partner, ~__mmask64{0}, a);
      const __m512i lo01 = _mm512_shuffle_i32x4(a[0], a[1], 0x44), lo23 = _mm512_shuffle_i32x4(a[2], a[3], 0x44);
      const __m512i hi01 = _mm512_shuffle_i32x4(a[0], a[1], 0xEE), hi23 = _mm512_shuffle_i32x4(a[2], a[3], 0xEE);
      int32_t* pu = p + u * pitch;
      if (c == 32) {  // pixel u: lanes 0-1 of each a[v]; u + 1: lanes 2-3
        _mm512_storeu_si512(pu, lo01);
        _mm512_storeu_si512(pu + 16, lo23);
        _mm512_storeu_si512(pu + 32, hi01);
        _mm512_storeu_si512(pu + 48, hi23);
      } else {  // pixel u + k: lane k of each a[v]
        _mm512_storeu_si512(pu, _mm512_shuffle_i32x4(lo01, lo23, 0x88));
        _mm512_storeu_si512(pu + 16, _mm512_shuffle_i32x4(lo01, lo23, 0xDD));
        _mm512_storeu_si512(pu + 32, _mm512_shuffle_i32x4(hi01, hi23, 0x88));
        _mm512_storeu_si512(pu + 48, _mm512_shuffle_i32x4(hi01, hi23, 0xDD));
      }
    }
  }
  if (u == 0 && partner == c && (step == 1 || step == 2)) {
    for (int64_t b0 = 0; b0 < c; b0 += 64) {
      const Block b = BlockAt(c, b0);
      if (step == 1) {
        BlockLanesDense<1>(x + b0, pixels, c, b, p + b0, pitch);
      } else {
        BlockLanesDense<2>(x + b0, pixels, c, b, p + b0, pitch);
      }
    }
    return;
  }
  for (; u < pixels; ++u) {
    const uint8_t* xu = x + u * step * c;
    int32_t* pu = p + u * step * pitch;
    for (int64_t b0 = 0; b0 < c; b0 += 64) {
      const Block b = BlockAt(c, b0);
      __m512i a[4];
      Interleave(xu + b0, partner, BytesMask(b.n), a);
      int32_t* pb = pu + b0;
      if (b.q == 4) {
        for (int v = 0; v < 4; ++v) _mm512_storeu_si512(pb + 16 * v, a[v]);
      } else {
        const __mmask16 mq = static_cast<__mmask16>((1u << (4 * b.q)) - 1);
        for (int v = 0; v < 4; ++v) _mm512_mask_storeu_epi32(pb + 4 * b.q * v, mq, a[v]);
      }
    }
  }
}

}  // namespace kvant::cpu::avx512vnni
