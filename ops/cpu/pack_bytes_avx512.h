// Requantized int32 vectors to u8/s8 with the saturating packs (AVX-512BW),
// shared by the GEMM epilogue, the depthwise rows and the QLinearAdd/Mul
// rows: round float(sum) * scale to int32 (half to even) below 2^30 so that
// the conversion cannot wrap, VPACKSSDW two vectors to 16-bit words and add
// the zero point saturating, VPACKUSWB (u8) or VPACKSSWB (s8) two word
// vectors to bytes. The packs saturate at the type's range, so clamping at
// [lo, hi] on the bytes afterwards gives what clamping the float at
// [lo - zp, hi - zp] first gives: both bounds are integers. The packs work
// within 128-bit lanes: Bytes(Words(r0, r1), Words(r2, r3)) holds r_z's
// 128-bit lane L at dword 4 L + z; ElementOrder() is the VPERMD that puts
// those back as r0, r1, r2, r3. Include only from files compiled for AVX-512BW.
#ifndef KVANT_OPS_CPU_PACK_BYTES_AVX512_H_
#define KVANT_OPS_CPU_PACK_BYTES_AVX512_H_

#include <immintrin.h>

namespace kvant::cpu::pack_bytes {

inline __m512i Rounded(__m512 f) { return _mm512_cvtps_epi32(_mm512_min_ps(f, _mm512_set1_ps(0x1p30f))); }

// The same when f = float(int32) * scale with 0 <= scale <= 0.5, so |f| <=
// 2^30 already (SmallScales): the conversion cannot wrap.
inline __m512i RoundedSmall(__m512 f) { return _mm512_cvtps_epi32(f); }

// Whether every scale[j], j < n <= 32, is in [0, 0.5] (not NaN):
// requantization scales nearly always are (input scale x weight scale /
// output scale). Two masked compares: the epilogue asks once per tile.
inline bool SmallScales(const float* scale, int n) {
  const __mmask16 m0 = n >= 16 ? 0xFFFF : static_cast<__mmask16>((1u << n) - 1);
  const __mmask16 m1 = n >= 32 ? 0xFFFF : n <= 16 ? 0 : static_cast<__mmask16>((1u << (n - 16)) - 1);
  const __m512 s0 = _mm512_maskz_loadu_ps(m0, scale), s1 = _mm512_maskz_loadu_ps(m1, scale + 16);
  const __m512 zero = _mm512_setzero_ps(), half = _mm512_set1_ps(0.5f);
  const __mmask16 ok0 = _mm512_mask_cmp_ps_mask(_mm512_mask_cmp_ps_mask(m0, s0, zero, _CMP_GE_OQ), s0, half, _CMP_LE_OQ);
  const __mmask16 ok1 = _mm512_mask_cmp_ps_mask(_mm512_mask_cmp_ps_mask(m1, s1, zero, _CMP_GE_OQ), s1, half, _CMP_LE_OQ);
  return ok0 == m0 && ok1 == m1;
}

// Whether [lo, hi] is the whole u8 or s8 range: the packs' saturation is
// then the clamp.
template <bool kSigned>
inline bool FullRange(int lo, int hi) {
  return kSigned ? lo <= -128 && hi >= 127 : lo <= 0 && hi >= 255;
}

inline __m512i Words(__m512i r0, __m512i r1, __m512i zp16) {
  return _mm512_adds_epi16(_mm512_packs_epi32(r0, r1), zp16);
}

template <bool kSigned>
inline __m512i Bytes(__m512i w0, __m512i w1) {
  return kSigned ? _mm512_packs_epi16(w0, w1) : _mm512_packus_epi16(w0, w1);
}

// Bytes clamped to [lo, hi] (each lo or hi in every byte).
template <bool kSigned>
inline __m512i Clamp(__m512i v, __m512i lo, __m512i hi) {
  return kSigned ? _mm512_min_epi8(_mm512_max_epi8(v, lo), hi) : _mm512_min_epu8(_mm512_max_epu8(v, lo), hi);
}

inline __m512i ElementOrder() { return _mm512_set_epi32(15, 11, 7, 3, 14, 10, 6, 2, 13, 9, 5, 1, 12, 8, 4, 0); }

}  // namespace kvant::cpu::pack_bytes

#endif  // KVANT_OPS_CPU_PACK_BYTES_AVX512_H_
