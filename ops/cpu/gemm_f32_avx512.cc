// FP32 GEMM microkernels for AVX-512F: 14 rows x 32 columns (28 zmm
// accumulators, 2 B vectors, 1 broadcast), and 28 rows x 16 columns for
// outputs at most 16 wide (a 1x1 convolution to 16 channels would leave half
// of the 14x32 tile empty). Partial column tiles use masks; a last panel
// of at most 16 columns runs a 14x16 kernel on the 32-wide panel.
// Also the FP16 -> f32 widening of FP16 weight panels (gemm_f32.cc).
// Compiled with -mavx512f; selected only when cpu_caps reports AVX-512.
#include <immintrin.h>

#include <array>
#include <type_traits>
#include <utility>

#include "ops/cpu/activation_f32_avx512.h"
#include "ops/cpu/gemm_f32.h"

namespace kvant::cpu::avx512 {
namespace {

// The first `left` of 16 lanes (none when left <= 0).
inline __mmask16 ColumnMask(int64_t left) {
  return left >= 16 ? static_cast<__mmask16>(0xFFFF) : left > 0 ? static_cast<__mmask16>((1u << left) - 1) : 0;
}

// R rows x V B vectors of 16 columns. kPacked: A is a packed panel
// (a_rs == 1), so broadcasts use fixed offsets. kHalfB: the B panel holds
// float16 (FP16 weights), widened by VCVTPH2PS as it is loaded.
template <int R, int V, bool kPacked, bool kHalfB = false, int kBRow = 16 * V>
void Body(int64_t kc, const float* a, int64_t a_rs, int64_t a_cs, const float* b_in, float* c, int64_t ldc,
          int64_t n_valid, bool accumulate, const GemmEpilogueF32* ep) {
  using BType = std::conditional_t<kHalfB, uint16_t, float>;
  const BType* b = reinterpret_cast<const BType*>(b_in);
  if constexpr (kPacked) a_rs = 1;
  // A read in place (row stride a_rs): rows in groups of five from one base
  // pointer each, at 0, 1, 2, 3 and 4 row strides, which x86 addressing
  // reaches with two stride registers (rs and 3 rs, scaled by 1 or 2 or 4).
  // Indexing a[r * a_rs] instead keeps one offset register per row, and 28
  // rows (or 14) spill most of them: the 28-row kernel reloaded 15 offsets
  // from the stack every K step, which made it load-bound.
  constexpr int kGroups = (R + 4) / 5;
  const char* group[kGroups];
  const int64_t rs = a_rs * 4, rs3 = 3 * rs;
  for (int g = 0; g < kGroups; ++g) group[g] = reinterpret_cast<const char*>(a) + 5 * g * rs;
  auto a_at = [&](int r) -> float {
    const char* p = group[r / 5];
    switch (r % 5) {
      case 0: return *reinterpret_cast<const float*>(p);
      case 1: return *reinterpret_cast<const float*>(p + rs);
      case 2: return *reinterpret_cast<const float*>(p + 2 * rs);
      case 3: return *reinterpret_cast<const float*>(p + rs3);
      default: return *reinterpret_cast<const float*>(p + 4 * rs);
    }
  };
  // acc[v * R + r]: one flat array, so the tile passes whole to ActivateTile.
  __m512 acc[V * R];
#pragma GCC unroll 28
  for (int i = 0; i < V * R; ++i) acc[i] = _mm512_setzero_ps();
  // A read in place with its rows back to back (a 1x1 convolution or an
  // im2col tile, K in one block): the next tile's rows are the R * kc
  // floats after this tile's; fetch them, ceil(R / 16) lines per K step, so
  // a large activation streams from L3 ahead of use (EfficientNet-Lite0's
  // block-0 projection, 12544 x 16 x 32: 1.44x, its batch of four 1.59x,
  // the stem's GEMM 1.20x; min of 200 alternated calls). Past the end of A
  // the prefetches touch nothing (they never fault).
  const bool prefetch_a = !kPacked && a_cs == 1 && a_rs == kc;
  const char* next_a = reinterpret_cast<const char*>(a + R * a_rs);
  constexpr int kLinesPerStep = (R + 15) / 16;
  for (int64_t kk = 0; kk < kc; ++kk) {
    if (prefetch_a) {
      for (int l = 0; l < kLinesPerStep; ++l) _mm_prefetch(next_a + (kk * kLinesPerStep + l) * 64, _MM_HINT_T0);
    }
    // Fetch B 16 k-steps ahead: the first A panel to meet a B panel finds it
    // in memory (a network's weights are read once per run, so they are cold;
    // EfficientNet-Lite0's 7x7 1x1 layers 1.2-1.3x faster with cold weights,
    // gemm_f32_bench .../cold_weights), and with fewer than a full panel of
    // rows (token-sized M) B streams through once. Later panels hit L1.
    for (int v = 0; v < V; ++v) _mm_prefetch(reinterpret_cast<const char*>(b + kBRow * 16 + 16 * v), _MM_HINT_T0);
    __m512 bv[V];
    for (int v = 0; v < V; ++v) {
      if constexpr (kHalfB) {
        bv[v] = _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(b + 16 * v)));
      } else {
        bv[v] = _mm512_load_ps(b + 16 * v);
      }
    }
#pragma GCC unroll 28
    for (int r = 0; r < R; ++r) {
      const __m512 av = _mm512_set1_ps(kPacked ? a[r] : a_at(r));
      for (int v = 0; v < V; ++v) acc[v * R + r] = _mm512_fmadd_ps(av, bv[v], acc[v * R + r]);
    }
    if constexpr (kPacked) {
      a += a_cs;
    } else {
#pragma GCC unroll 6
      for (int g = 0; g < kGroups; ++g) group[g] += a_cs * 4;
    }
    b += kBRow;
  }
  // The epilogue in passes over the tile (accumulate, row bias, column bias,
  // residual, activation), each behind one branch (a shallow
  // product, K of 16 to 40 as in a network's 1x1 layers, spends as long
  // here as in the loop above). No arrays of column biases or masks: GCC 12
  // with -fsanitize=address,undefined together miscompiled that form (column
  // biases added wrongly; found by tools/test's sanitizer build).
  if (accumulate) {
#pragma GCC unroll 28
    for (int r = 0; r < R; ++r) {
      for (int v = 0; v < V; ++v) {
        acc[v * R + r] = _mm512_add_ps(acc[v * R + r],
                                       _mm512_maskz_loadu_ps(ColumnMask(n_valid - 16 * v), c + r * ldc + 16 * v));
      }
    }
  }
  if (ep) {
    if (ep->row_bias) {
#pragma GCC unroll 28
      for (int r = 0; r < R; ++r) {
        const __m512 rb = _mm512_set1_ps(ep->row_bias[r]);
        for (int v = 0; v < V; ++v) acc[v * R + r] = _mm512_add_ps(acc[v * R + r], rb);
      }
    }
    if (ep->col_bias) {
      for (int v = 0; v < V; ++v) {
        const __m512 cb = _mm512_maskz_loadu_ps(ColumnMask(n_valid - 16 * v), ep->col_bias + 16 * v);
#pragma GCC unroll 28
        for (int r = 0; r < R; ++r) acc[v * R + r] = _mm512_add_ps(acc[v * R + r], cb);
      }
    }
    if (ep->residual) {
#pragma GCC unroll 28
      for (int r = 0; r < R; ++r) {
        for (int v = 0; v < V; ++v) {
          acc[v * R + r] = _mm512_add_ps(acc[v * R + r], _mm512_maskz_loadu_ps(ColumnMask(n_valid - 16 * v),
                                                                              ep->residual + r * ep->ld_residual + 16 * v));
        }
      }
    }
    ActivateTile(acc, ep->act);
  }
#pragma GCC unroll 28
  for (int r = 0; r < R; ++r) {
    for (int v = 0; v < V; ++v) {
      _mm512_mask_storeu_ps(c + r * ldc + 16 * v, ColumnMask(n_valid - 16 * v), acc[v * R + r]);
    }
  }
}

template <int R, int V, bool kHalfB = false, int kBRow = 16 * V>
void Ukernel(int64_t kc, const float* a, int64_t a_rs, int64_t a_cs, const float* b, float* c, int64_t ldc,
             int64_t m_valid, int64_t n_valid, bool accumulate, const GemmEpilogueF32* ep) {
  if (a_rs == 1) {
    Body<R, V, true, kHalfB, kBRow>(kc, a, 1, a_cs, b, c, ldc, n_valid, accumulate, ep);
  } else {
    Body<R, V, false, kHalfB, kBRow>(kc, a, a_rs, a_cs, b, c, ldc, n_valid, accumulate, ep);
  }
}

template <int V, bool kHalfB, int kBRow, int... R>
constexpr std::array<GemmUkernelF32, sizeof...(R)> MakeTable(std::integer_sequence<int, R...>) {
  return {Ukernel<R + 1, V, kHalfB, kBRow>...};
}

constexpr auto kByRows = MakeTable<2, false, 32>(std::make_integer_sequence<int, 14>{});
constexpr auto kNarrowByRows = MakeTable<1, false, 16>(std::make_integer_sequence<int, 28>{});
constexpr auto kHalfByRows = MakeTable<2, true, 32>(std::make_integer_sequence<int, 14>{});
// The 14x32 tile's last panel when its valid columns fit in the first 16:
// one B vector per K step from the 32-wide panel, half the FMAs of a masked
// full-width tile (N = 80 or 112, EfficientNet-Lite0's projections, or the
// classifier's 1000 = 31 x 32 + 8).
constexpr auto kTailByRows = MakeTable<1, false, 32>(std::make_integer_sequence<int, 14>{});

}  // namespace

const GemmUkernelF32* GemmF32ByRows() { return kByRows.data(); }
const GemmUkernelF32* GemmF32NarrowByRows() { return kNarrowByRows.data(); }
const GemmUkernelF32* GemmF32HalfByRows() { return kHalfByRows.data(); }
const GemmUkernelF32* GemmF32TailByRows() { return kTailByRows.data(); }

// FP16 weight panels widened for the microkernels (VCVTPH2PS is exact).
void HalfToF32(const uint16_t* src, float* dst, int64_t n) {
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) {
    _mm512_storeu_ps(dst + i, _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(src + i))));
  }
  if (i < n) {
    const __mmask16 m = ColumnMask(n - i);
    _mm512_mask_storeu_ps(dst + i, m, _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(m, src + i)));
  }
}

}  // namespace kvant::cpu::avx512
