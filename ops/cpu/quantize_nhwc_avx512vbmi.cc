// kvant.QuantizeLinearNhwc for AVX-512 VBMI (ops/cpu/quantize_s8.cc): an NCHW
// float image of at most 4 channels quantized into NHWC bytes. Per 16
// pixels, each channel's 16 values are quantized (x / scale rounded half to
// even, + zero point, saturated, NaN -> the zero point: QuantizeLinear's
// arithmetic, bit exact) into one 128-bit lane of a vector, and one VPERMB
// interleaves the lanes into the 16 x C output bytes. Compiled with
// -mavx512f -mavx512bw -mavx512vbmi.
#include <immintrin.h>

#include <cstdint>
#include <type_traits>

namespace kvant::cpu::avx512vbmi {
namespace {

// Pixels [0, count) of channel planes `stride` floats apart.
template <typename T>
void ToNhwc(const float* x, int64_t c, int64_t stride, float scale, float zero_point, T* y, int64_t count) {
  const __m512 vs = _mm512_set1_ps(scale), vz = _mm512_set1_ps(zero_point);
  const __m512 lo = _mm512_set1_ps(std::is_signed_v<T> ? -128.f : 0.f);
  const __m512 hi = _mm512_set1_ps(std::is_signed_v<T> ? 127.f : 255.f);
  alignas(64) uint8_t order[64] = {};  // output byte i = lane (i % c), pixel i / c
  for (int64_t i = 0; i < 16 * c; ++i) order[i] = static_cast<uint8_t>((i % c) * 16 + i / c);
  const __m512i idx = _mm512_load_si512(order);
  for (int64_t p = 0; p < count; p += 16) {
    const int64_t n = count - p < 16 ? count - p : 16;
    const __mmask16 m = static_cast<__mmask16>((1u << n) - 1);
    __m512i lanes = _mm512_setzero_si512();
    for (int64_t ch = 0; ch < c; ++ch) {
      __m512 q = _mm512_roundscale_ps(_mm512_div_ps(_mm512_maskz_loadu_ps(m, x + ch * stride + p), vs),
                                      _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
      q = _mm512_add_ps(q, vz);
      const __mmask16 nan = _mm512_cmp_ps_mask(q, q, _CMP_UNORD_Q);
      q = _mm512_mask_mov_ps(_mm512_min_ps(_mm512_max_ps(q, lo), hi), nan, vz);
      const __m128i bytes = _mm512_cvtepi32_epi8(_mm512_cvtps_epi32(q));
      lanes = _mm512_mask_broadcast_i32x4(lanes, static_cast<__mmask16>(0xF << (4 * ch)), bytes);
    }
    const __mmask64 out = n * c == 64 ? ~__mmask64{0} : (__mmask64{1} << (n * c)) - 1;
    _mm512_mask_storeu_epi8(y + p * c, out, _mm512_permutexvar_epi8(idx, lanes));
  }
}

}  // namespace

void QuantizeToNhwcU8(const float* x, int64_t c, int64_t stride, float scale, float zero_point, uint8_t* y,
                      int64_t count) {
  ToNhwc<uint8_t>(x, c, stride, scale, zero_point, y, count);
}
void QuantizeToNhwcS8(const float* x, int64_t c, int64_t stride, float scale, float zero_point, int8_t* y,
                      int64_t count) {
  ToNhwc<int8_t>(x, c, stride, scale, zero_point, y, count);
}

}  // namespace kvant::cpu::avx512vbmi
