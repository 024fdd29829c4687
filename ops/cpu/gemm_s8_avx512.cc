// INT8 GEMM for AVX-512BW without VNNI, and the AVX-512 epilogue every
// AVX-512 microkernel shares. The BW microkernel (8 rows x 32 columns)
// widens both operands to 16 bits (VPMOVZXBW / VPMOVSXBW) and multiplies
// with VPMADDWD, whose 16 x 16 -> 32-bit products cannot saturate: the
// VPMADDUBSW shortcut saturates at 2 x 255 x 127 and is not used. Each
// VPMADDWD lane holds the sum of two of a column's four K values, the lane
// pair is added at the end. Compiled with -mavx512f -mavx512bw.
#include <immintrin.h>

#include <algorithm>
#include <cstring>

#include "ops/cpu/activation_f32_avx512.h"
#include "ops/cpu/gemm_s8.h"
#include "ops/cpu/pack_bytes_avx512.h"

namespace kvant::cpu::avx512 {
namespace {

// A's 4 bytes of one group, zero-extended to 4 x u16 and broadcast to all
// 64-bit lanes.
inline __m512i BroadcastA16(const uint8_t* p) {
  int32_t v;
  std::memcpy(&v, p, 4);
  const __m128i w = _mm_cvtepu8_epi16(_mm_cvtsi32_si128(v));
  return _mm512_broadcastq_epi64(w);
}

template <int R>
void UkernelBw(int64_t kp, const uint8_t* a, int64_t a_rs, int64_t a_gs, const int8_t* b, int32_t* tile) {
  // acc[r][v]: columns 8v..8v+7, two lanes per column.
  __m512i acc[R][4];
#pragma GCC unroll 8
  for (int r = 0; r < R; ++r) acc[r][0] = acc[r][1] = acc[r][2] = acc[r][3] = _mm512_setzero_si512();
  for (int64_t g = 0; g < kp / 4; ++g) {
    const int8_t* bg = b + g * 128;
    __m512i bw[4];
#pragma GCC unroll 4
    for (int v = 0; v < 4; ++v) bw[v] = _mm512_cvtepi8_epi16(_mm256_load_si256(reinterpret_cast<const __m256i*>(bg + 32 * v)));
#pragma GCC unroll 8
    for (int r = 0; r < R; ++r) {
      const __m512i av = BroadcastA16(a + r * a_rs + g * a_gs);
#pragma GCC unroll 4
      for (int v = 0; v < 4; ++v) acc[r][v] = _mm512_add_epi32(acc[r][v], _mm512_madd_epi16(av, bw[v]));
    }
  }
  // Add lane pairs: columns 8v..8v+7 of two vectors -> 16 columns.
  const __m512i even = _mm512_set_epi32(30, 28, 26, 24, 22, 20, 18, 16, 14, 12, 10, 8, 6, 4, 2, 0);
  const __m512i odd = _mm512_set_epi32(31, 29, 27, 25, 23, 21, 19, 17, 15, 13, 11, 9, 7, 5, 3, 1);
#pragma GCC unroll 8
  for (int r = 0; r < R; ++r) {
    for (int h = 0; h < 2; ++h) {
      const __m512i lo = acc[r][2 * h], hi = acc[r][2 * h + 1];
      const __m512i sum = _mm512_add_epi32(_mm512_permutex2var_epi32(lo, even, hi), _mm512_permutex2var_epi32(lo, odd, hi));
      _mm512_store_si512(tile + r * 32 + 16 * h, sum);
    }
  }
}

const GemmUkernelS8 kByRowsBw[8] = {UkernelBw<1>, UkernelBw<2>, UkernelBw<3>, UkernelBw<4>,
                                    UkernelBw<5>, UkernelBw<6>, UkernelBw<7>, UkernelBw<8>};

// u8/s8 outputs with float scales from a tile 32 columns wide, two rows at a
// time through the packs (ops/cpu/pack_bytes_avx512.h): row r's columns
// 0-15 and 16-31, then row r + 1's, come out as row r's 32 bytes and then
// row r + 1's. A third of the operations of converting 16 columns at a time,
// with the same results. kSmall: every scale in [0, 0.5] (no float clamp
// needed, pack_bytes::SmallScales); kClamp: [lo, hi] narrower than the type.
template <bool kSigned, bool kSmall, bool kClamp>
void EpilogueRowPairs32(const int32_t* tile, int64_t rows, int64_t cols, const GemmS8Output& out, void* c,
                        int64_t ldc) {
  const __mmask16 m0 = cols >= 16 ? 0xFFFF : static_cast<__mmask16>((1u << cols) - 1);
  const __mmask16 m1 = cols >= 32 ? 0xFFFF : cols <= 16 ? 0 : static_cast<__mmask16>((1u << (cols - 16)) - 1);
  const __mmask32 row_bytes = cols >= 32 ? ~__mmask32{0} : static_cast<__mmask32>((uint64_t{1} << cols) - 1);
  const __m512i off0 = _mm512_maskz_loadu_epi32(m0, out.col_offset), off1 = _mm512_maskz_loadu_epi32(m1, out.col_offset + 16);
  const __m512 scale0 = _mm512_maskz_loadu_ps(m0, out.scale), scale1 = _mm512_maskz_loadu_ps(m1, out.scale + 16);
  const __m512i zp16 = _mm512_set1_epi16(static_cast<int16_t>(out.zero_point));
  const __m512i lo = _mm512_set1_epi8(static_cast<char>(out.lo)), hi = _mm512_set1_epi8(static_cast<char>(out.hi));
  const __m512i order = pack_bytes::ElementOrder();
  auto rounded = [&](const int32_t* t, __m512i off, __m512 scale) {
    const __m512 f = _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_add_epi32(_mm512_loadu_si512(t), off)), scale);
    return kSmall ? pack_bytes::RoundedSmall(f) : pack_bytes::Rounded(f);
  };
  auto* y = static_cast<int8_t*>(c);
  for (int64_t r = 0; r < rows; r += 2) {
    const int32_t* t0 = tile + r * 32;
    const int32_t* t1 = r + 1 < rows ? t0 + 32 : t0;
    const __m512i w0 = pack_bytes::Words(rounded(t0, off0, scale0), rounded(t0 + 16, off1, scale1), zp16);
    const __m512i w1 = pack_bytes::Words(rounded(t1, off0, scale0), rounded(t1 + 16, off1, scale1), zp16);
    __m512i v = _mm512_permutexvar_epi32(order, pack_bytes::Bytes<kSigned>(w0, w1));
    if (kClamp) v = pack_bytes::Clamp<kSigned>(v, lo, hi);
    _mm256_mask_storeu_epi8(y + r * ldc, row_bytes, _mm512_castsi512_si256(v));
    if (r + 1 < rows) _mm256_mask_storeu_epi8(y + (r + 1) * ldc, row_bytes, _mm512_extracti64x4_epi64(v, 1));
  }
}

// The same for at most 16 columns (a narrow last panel, a convolution with
// 16 or fewer output channels), four rows at a time: the first 16 columns of
// rows r .. r + 3 (nr apart) come out as their 16 bytes each.
template <bool kSigned, bool kSmall, bool kClamp>
void EpilogueRowQuads16(const int32_t* tile, int64_t nr, int64_t rows, int64_t cols, const GemmS8Output& out, void* c,
                        int64_t ldc) {
  const __mmask16 m = cols >= 16 ? 0xFFFF : static_cast<__mmask16>((1u << cols) - 1);
  const __m512i off = _mm512_maskz_loadu_epi32(m, out.col_offset);
  const __m512 scale = _mm512_maskz_loadu_ps(m, out.scale);
  const __m512i zp16 = _mm512_set1_epi16(static_cast<int16_t>(out.zero_point));
  const __m512i lo = _mm512_set1_epi8(static_cast<char>(out.lo)), hi = _mm512_set1_epi8(static_cast<char>(out.hi));
  const __m512i order = pack_bytes::ElementOrder();
  auto rounded = [&](int64_t r) {
    const int32_t* t = tile + std::min(r, rows - 1) * nr;
    const __m512 f = _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_add_epi32(_mm512_loadu_si512(t), off)), scale);
    return kSmall ? pack_bytes::RoundedSmall(f) : pack_bytes::Rounded(f);
  };
  auto* y = static_cast<int8_t*>(c);
  for (int64_t r = 0; r < rows; r += 4) {
    __m512i v = _mm512_permutexvar_epi32(
        order, pack_bytes::Bytes<kSigned>(pack_bytes::Words(rounded(r), rounded(r + 1), zp16),
                                          pack_bytes::Words(rounded(r + 2), rounded(r + 3), zp16)));
    if (kClamp) v = pack_bytes::Clamp<kSigned>(v, lo, hi);
    if (cols == 16 && ldc == 16 && r + 4 <= rows) {
      _mm512_storeu_si512(y + r * ldc, v);
      continue;
    }
    _mm_mask_storeu_epi8(y + r * ldc, m, _mm512_castsi512_si128(v));
    if (r + 1 < rows) _mm_mask_storeu_epi8(y + (r + 1) * ldc, m, _mm512_extracti32x4_epi32(v, 1));
    if (r + 2 < rows) _mm_mask_storeu_epi8(y + (r + 2) * ldc, m, _mm512_extracti32x4_epi32(v, 2));
    if (r + 3 < rows) _mm_mask_storeu_epi8(y + (r + 3) * ldc, m, _mm512_extracti32x4_epi32(v, 3));
  }
}

}  // namespace

const GemmUkernelS8* GemmS8BwByRows() { return kByRowsBw; }

// Vectors of 16 columns; the last one masked.
void GemmS8Epilogue(const int32_t* tile, int64_t nr, int64_t rows, int64_t cols, const GemmS8Output& out, void* c,
                    int64_t ldc) {
  const bool float_requant = out.m0 == nullptr;
  const bool bytes = out.kind == GemmS8Output::Kind::kU8 || out.kind == GemmS8Output::Kind::kS8;
  if (bytes && float_requant && out.row_sum == nullptr && (cols <= 16 || (nr == 32 && cols <= 32))) {
    const bool s8 = out.kind == GemmS8Output::Kind::kS8;
    const bool small = pack_bytes::SmallScales(out.scale, static_cast<int>(cols));
    const bool clamp = s8 ? !pack_bytes::FullRange<true>(out.lo, out.hi) : !pack_bytes::FullRange<false>(out.lo, out.hi);
    // One variant per (s8, small, clamp).
    using Fn = void (*)(const int32_t*, int64_t, int64_t, int64_t, const GemmS8Output&, void*, int64_t);
    static constexpr Fn kQuads[8] = {
        EpilogueRowQuads16<false, false, false>, EpilogueRowQuads16<false, false, true>,
        EpilogueRowQuads16<false, true, false>,  EpilogueRowQuads16<false, true, true>,
        EpilogueRowQuads16<true, false, false>,  EpilogueRowQuads16<true, false, true>,
        EpilogueRowQuads16<true, true, false>,   EpilogueRowQuads16<true, true, true>};
    using PairFn = void (*)(const int32_t*, int64_t, int64_t, const GemmS8Output&, void*, int64_t);
    static constexpr PairFn kPairs[8] = {
        EpilogueRowPairs32<false, false, false>, EpilogueRowPairs32<false, false, true>,
        EpilogueRowPairs32<false, true, false>,  EpilogueRowPairs32<false, true, true>,
        EpilogueRowPairs32<true, false, false>,  EpilogueRowPairs32<true, false, true>,
        EpilogueRowPairs32<true, true, false>,   EpilogueRowPairs32<true, true, true>};
    const int variant = (s8 ? 4 : 0) + (small ? 2 : 0) + (clamp ? 1 : 0);
    if (cols <= 16) return kQuads[variant](tile, nr, rows, cols, out, c, ldc);
    return kPairs[variant](tile, rows, cols, out, c, ldc);
  }
  for (int64_t j = 0; j < cols; j += 16) {
    const int64_t n = std::min<int64_t>(16, cols - j);
    const __mmask16 m = n == 16 ? 0xFFFF : static_cast<__mmask16>((1u << n) - 1);
    const __m512i off = _mm512_maskz_loadu_epi32(m, out.col_offset + j);
    const __m512i zb = out.row_sum ? _mm512_maskz_loadu_epi32(m, out.col_zb + j) : _mm512_setzero_si512();
    __m512 scale = _mm512_setzero_ps(), bias = _mm512_setzero_ps();
    __m512i m0 = _mm512_setzero_si512(), shift = _mm512_setzero_si512();
    if (out.kind != GemmS8Output::Kind::kS32) {
      if (float_requant) {
        scale = _mm512_maskz_loadu_ps(m, out.scale + j);
      } else {
        m0 = _mm512_maskz_loadu_epi32(m, out.m0 + j);
        shift = _mm512_maskz_loadu_epi32(m, out.shift + j);
      }
      if (out.bias_f32) bias = _mm512_maskz_loadu_ps(m, out.bias_f32 + j);
    }
    // Bounds before the zero point is added (integers, exact in float).
    const __m512i zp = _mm512_set1_epi32(out.zero_point);
    const __m512i qlo = _mm512_set1_epi32(out.lo - out.zero_point), qhi = _mm512_set1_epi32(out.hi - out.zero_point);
    const __m512 flo = _mm512_cvtepi32_ps(qlo), fhi = _mm512_cvtepi32_ps(qhi);
    for (int64_t r = 0; r < rows; ++r) {
      __m512i v = _mm512_add_epi32(_mm512_loadu_si512(tile + r * nr + j), off);
      if (out.row_sum) v = _mm512_sub_epi32(v, _mm512_mullo_epi32(_mm512_set1_epi32(out.row_sum[r]), zb));
      switch (out.kind) {
        case GemmS8Output::Kind::kS32:
          _mm512_mask_storeu_epi32(static_cast<int32_t*>(c) + r * ldc + j, m, v);
          continue;
        case GemmS8Output::Kind::kF32: {
          __m512 f = _mm512_add_ps(_mm512_mul_ps(_mm512_cvtepi32_ps(v), scale), bias);
          if (out.act != nullptr) f = Activate(f, *out.act);
          _mm512_mask_storeu_ps(static_cast<float*>(c) + r * ldc + j, m, f);
          continue;
        }
        default: break;
      }
      __m512i y;
      if (float_requant) {
        // Clamp in float to [lo - zp, hi - zp] (integers), then round half to
        // even: the same as rounding, saturating, adding zp and clamping,
        // because rounding is monotonic and the bounds are integers.
        __m512 f = _mm512_mul_ps(_mm512_cvtepi32_ps(v), scale);
        f = _mm512_min_ps(_mm512_max_ps(f, flo), fhi);
        y = _mm512_add_epi32(_mm512_cvtps_epi32(f), zp);
      } else {
        // SaturatingRoundingDoublingHighMul: 64-bit products of even and odd lanes.
        const __m512i nudge_pos = _mm512_set1_epi64(int64_t{1} << 30), nudge_neg = _mm512_set1_epi64(1 - (int64_t{1} << 30));
        auto high = [&](__m512i x, __m512i y) {  // even lanes of x * y, doubled high half
          const __m512i p = _mm512_mul_epi32(x, y);
          const __mmask8 neg = _mm512_cmplt_epi64_mask(p, _mm512_setzero_si512());
          const __m512i s = _mm512_add_epi64(p, _mm512_mask_mov_epi64(nudge_pos, neg, nudge_neg));
          // (s / 2^31) truncating toward zero: add 2^31 - 1 to negatives before shifting.
          const __m512i t = _mm512_mask_add_epi64(s, _mm512_cmplt_epi64_mask(s, _mm512_setzero_si512()), s,
                                                  _mm512_set1_epi64((int64_t{1} << 31) - 1));
          return _mm512_srai_epi64(t, 31);
        };
        const __m512i he = high(v, m0);
        const __m512i ho = high(_mm512_srli_epi64(v, 32), _mm512_srli_epi64(m0, 32));
        __m512i h = _mm512_mask_blend_epi32(0xAAAA, he, _mm512_slli_epi64(ho, 32));
        const __mmask16 overflow = _mm512_cmpeq_epi32_mask(v, _mm512_set1_epi32(INT32_MIN)) &
                                   _mm512_cmpeq_epi32_mask(m0, _mm512_set1_epi32(INT32_MIN));
        h = _mm512_mask_mov_epi32(h, overflow, _mm512_set1_epi32(0x7fffffff));
        // RoundingDivideByPOT.
        const __m512i mask = _mm512_sub_epi32(_mm512_sllv_epi32(_mm512_set1_epi32(1), shift), _mm512_set1_epi32(1));
        const __m512i rem = _mm512_and_si512(h, mask);
        const __m512i thr = _mm512_add_epi32(_mm512_srai_epi32(mask, 1),
                                             _mm512_maskz_mov_epi32(_mm512_cmplt_epi32_mask(h, _mm512_setzero_si512()),
                                                                    _mm512_set1_epi32(1)));
        const __m512i q = _mm512_add_epi32(_mm512_srav_epi32(h, shift),
                                           _mm512_maskz_mov_epi32(_mm512_cmpgt_epi32_mask(rem, thr), _mm512_set1_epi32(1)));
        // q is within +-2^31 / 2^shift: clamp first, then add the zero point.
        y = _mm512_add_epi32(_mm512_min_epi32(_mm512_max_epi32(q, qlo), qhi), zp);
      }
      if (out.kind == GemmS8Output::Kind::kU8) {
        _mm_mask_storeu_epi8(static_cast<uint8_t*>(c) + r * ldc + j, m, _mm512_cvtepi32_epi8(y));
      } else {
        _mm_mask_storeu_epi8(static_cast<int8_t*>(c) + r * ldc + j, m, _mm512_cvtepi32_epi8(y));
      }
    }
  }
}

}  // namespace kvant::cpu::avx512
