// INT8 GEMM for AVX2: 6 rows x 8 columns. Both operands are widened to 16
// bits and multiplied with VPMADDWD, so no product pair can saturate (the
// VPMADDUBSW shortcut saturates at 2 x 255 x 127 and is not used); each lane
// holds the sum of two of a column's four K values and lane pairs are added
// at the end. The AVX2 epilogue vectorizes the integer, f32 and float
// requantization outputs over 8 columns and leaves tails and fixed-point
// requantization to the reference. Compiled with -mavx2 -mfma.
#include <immintrin.h>

#include <cstring>

#include "ops/cpu/activation_f32.h"
#include "ops/cpu/gemm_s8.h"

namespace kvant::cpu {
namespace ref {
void GemmS8Epilogue(const int32_t* tile, int64_t nr, int64_t rows, int64_t cols, const GemmS8Output& out, void* c,
                    int64_t ldc);
}  // namespace ref

namespace avx2 {
namespace {

inline __m256i BroadcastA16(const uint8_t* p) {
  int32_t v;
  std::memcpy(&v, p, 4);
  const __m128i w = _mm_cvtepu8_epi16(_mm_cvtsi32_si128(v));
  return _mm256_broadcastq_epi64(w);
}

template <int R>
void Ukernel(int64_t kp, const uint8_t* a, int64_t a_rs, int64_t a_gs, const int8_t* b, int32_t* tile) {
  __m256i acc[R][2];  // columns 0-3 and 4-7, two lanes per column
#pragma GCC unroll 6
  for (int r = 0; r < R; ++r) acc[r][0] = acc[r][1] = _mm256_setzero_si256();
  for (int64_t g = 0; g < kp / 4; ++g) {
    const int8_t* bg = b + g * 32;
    const __m256i b0 = _mm256_cvtepi8_epi16(_mm_load_si128(reinterpret_cast<const __m128i*>(bg)));
    const __m256i b1 = _mm256_cvtepi8_epi16(_mm_load_si128(reinterpret_cast<const __m128i*>(bg + 16)));
#pragma GCC unroll 6
    for (int r = 0; r < R; ++r) {
      const __m256i av = BroadcastA16(a + r * a_rs + g * a_gs);
      acc[r][0] = _mm256_add_epi32(acc[r][0], _mm256_madd_epi16(av, b0));
      acc[r][1] = _mm256_add_epi32(acc[r][1], _mm256_madd_epi16(av, b1));
    }
  }
#pragma GCC unroll 6
  for (int r = 0; r < R; ++r) {
    const __m256i h = _mm256_hadd_epi32(acc[r][0], acc[r][1]);  // c0 c1 c4 c5 | c2 c3 c6 c7
    _mm256_store_si256(reinterpret_cast<__m256i*>(tile + r * 8), _mm256_permute4x64_epi64(h, 0xD8));
  }
}

const GemmUkernelS8 kByRows[6] = {Ukernel<1>, Ukernel<2>, Ukernel<3>, Ukernel<4>, Ukernel<5>, Ukernel<6>};

}  // namespace

const GemmUkernelS8* GemmS8ByRows() { return kByRows; }

void GemmS8Epilogue(const int32_t* tile, int64_t nr, int64_t rows, int64_t cols, const GemmS8Output& out, void* c,
                    int64_t ldc) {
  const size_t esize = out.kind == GemmS8Output::Kind::kS32 || out.kind == GemmS8Output::Kind::kF32 ? 4 : 1;
  const int64_t vec_cols = out.m0 != nullptr ? 0 : cols / 8 * 8;
  for (int64_t j = 0; j < vec_cols; j += 8) {
    const __m256i off = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(out.col_offset + j));
    const __m256i zb = out.row_sum ? _mm256_loadu_si256(reinterpret_cast<const __m256i*>(out.col_zb + j))
                                   : _mm256_setzero_si256();
    const __m256 scale = out.kind == GemmS8Output::Kind::kS32 ? _mm256_setzero_ps() : _mm256_loadu_ps(out.scale + j);
    const __m256 bias = out.bias_f32 ? _mm256_loadu_ps(out.bias_f32 + j) : _mm256_setzero_ps();
    for (int64_t r = 0; r < rows; ++r) {
      __m256i v = _mm256_add_epi32(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(tile + r * nr + j)), off);
      if (out.row_sum) v = _mm256_sub_epi32(v, _mm256_mullo_epi32(_mm256_set1_epi32(out.row_sum[r]), zb));
      if (out.kind == GemmS8Output::Kind::kS32) {
        _mm256_storeu_si256(reinterpret_cast<__m256i*>(static_cast<int32_t*>(c) + r * ldc + j), v);
        continue;
      }
      const __m256 f = _mm256_mul_ps(_mm256_cvtepi32_ps(v), scale);
      if (out.kind == GemmS8Output::Kind::kF32) {
        float* dst = static_cast<float*>(c) + r * ldc + j;
        _mm256_storeu_ps(dst, _mm256_add_ps(f, bias));
        if (out.act != nullptr) ApplyActivationF32(*out.act, dst, 8);
        continue;
      }
      // Round half to even; values past int32 (cvtps gives INT_MIN) saturate.
      __m256i q = _mm256_cvtps_epi32(f);
      q = _mm256_blendv_epi8(q, _mm256_set1_epi32(0x7fffffff),
                             _mm256_castps_si256(_mm256_cmp_ps(f, _mm256_set1_ps(2147483648.f), _CMP_GE_OQ)));
      // q + zp in 64 bits is not needed: clamp q first to [-2^30, 2^30].
      q = _mm256_min_epi32(_mm256_max_epi32(q, _mm256_set1_epi32(-(1 << 30))), _mm256_set1_epi32(1 << 30));
      __m256i y = _mm256_add_epi32(q, _mm256_set1_epi32(out.zero_point));
      y = _mm256_min_epi32(_mm256_max_epi32(y, _mm256_set1_epi32(out.lo)), _mm256_set1_epi32(out.hi));
      // Pack the 8 values (already in [lo, hi] within the output type) to bytes.
      alignas(32) int32_t vals[8];
      _mm256_store_si256(reinterpret_cast<__m256i*>(vals), y);
      char* dst = static_cast<char*>(c) + (r * ldc + j) * esize;
      for (int i = 0; i < 8; ++i) dst[i] = static_cast<char>(vals[i]);
    }
  }
  if (vec_cols < cols) {
    GemmS8Output tail = out;
    tail.col_offset += vec_cols;
    if (tail.col_zb) tail.col_zb += vec_cols;
    if (tail.scale) tail.scale += vec_cols;
    if (tail.bias_f32) tail.bias_f32 += vec_cols;
    if (tail.m0) {
      tail.m0 += vec_cols;
      tail.shift += vec_cols;
    }
    ref::GemmS8Epilogue(tile + vec_cols, nr, rows, cols - vec_cols, tail, static_cast<char*>(c) + vec_cols * esize,
                        ldc);
  }
}

}  // namespace avx2
}  // namespace kvant::cpu
