// FP32 GEMM driver: packing, blocking and threading around the ISA microkernels.
//
// Steps of RunGemmF32:
//  1. pack B for all of K (unless pre-packed) into scratch, split across threads;
//  2. give each thread one contiguous block of C (split along M or N);
//  3. per task and K block: pack A's block (only when alpha != 1; A is
//     otherwise read in place), then for each
//     nr-wide B panel and each mr-high A panel call the microkernel, which
//     accumulates after the first K block and applies the epilogue on the last.
#include "ops/cpu/gemm_f32.h"

#include <algorithm>
#include <cmath>
#include <cstdlib>

#include "ops/float16.h"

namespace kvant::cpu {
namespace avx512 {
void HalfToF32(const uint16_t* src, float* dst, int64_t n);
}  // namespace avx512
namespace {

constexpr int64_t kMcPanels = 12;  // A block height in mr panels

int64_t RoundUp(int64_t v, int64_t m) { return (v + m - 1) / m * m; }

// Widens n float16 values (VCVTPH2PS where the microkernel's ISA has it).
void WidenHalf(const GemmUkernelInfoF32& uk, const uint16_t* src, float* dst, int64_t n) {
  if ((uk.needs & kIsaAvx512) == kIsaAvx512) return avx512::HalfToF32(src, dst, n);
  for (int64_t i = 0; i < n; ++i) dst[i] = HalfToFloat(src[i]);
}

}  // namespace

void PackStridedF32(int64_t outer, int64_t k, int64_t tile, const float* src, int64_t so, int64_t sk,
                    float scale, float* dst) {
  if (sk == 1 && k <= kGemmKc) {
    // Rows contiguous along K (row-major A, transposed B): read each row once
    // in order and scatter it down its panel column.
    const int64_t padded = (outer + tile - 1) / tile * tile;
    for (int64_t p = 0; p < padded; p += tile) {
      float* panel = dst + (p / tile) * k * tile;
      for (int64_t t = 0; t < tile; ++t) {
        if (p + t >= outer) {
          for (int64_t kk = 0; kk < k; ++kk) panel[kk * tile + t] = 0.f;
          continue;
        }
        const float* row = src + (p + t) * so;
        for (int64_t kk = 0; kk < k; ++kk) panel[kk * tile + t] = row[kk] * scale;
      }
    }
    return;
  }
  if (scale == 1.f) {
    PackPanelsF32(outer, k, tile, dst, [&](int64_t o, int64_t kk) { return src[o * so + kk * sk]; });
  } else {
    PackPanelsF32(outer, k, tile, dst, [&](int64_t o, int64_t kk) { return src[o * so + kk * sk] * scale; });
  }
}

PackedPanelsF32 PackConstantF32(int64_t outer, int64_t k, int64_t tile, const float* src, int64_t so,
                                int64_t sk, float scale) {
  PackedPanelsF32 p;
  p.outer = outer;
  p.k = k;
  p.tile = tile;
  size_t bytes = RoundUp(std::max<int64_t>(1, PackedPanelFloats(outer, k, tile)) * 4, 64);
  p.data = std::shared_ptr<float>(static_cast<float*>(std::aligned_alloc(64, bytes)), [](float* q) { std::free(q); });
  PackStridedF32(outer, k, tile, src, so, sk, scale, p.data.get());
  return p;
}

const GemmUkernelInfoF32& SelectGemmUkernelF32(CpuFeatures features) {
  const auto& all = GemmUkernelsF32();
  const GemmUkernelInfoF32* best = &all.front();
  for (const auto& uk : all) {
    if ((uk.needs & features) == uk.needs) best = &uk;
  }
  return *best;
}

const GemmUkernelInfoF32& SelectGemmUkernelF32(CpuFeatures features, int64_t n) {
  const GemmUkernelInfoF32& best = SelectGemmUkernelF32(features);
  if (n > 16 || best.nr == 16) return best;
  const GemmUkernelInfoF32* narrow = &best;
  for (const auto& uk : GemmUkernelsF32()) {
    if ((uk.needs & features) == uk.needs && uk.nr == 16) narrow = &uk;
  }
  return *narrow;
}

bool NarrowToHalf(PackedPanelsF32& p) {
  const int64_t count = PackedPanelFloats(p.outer, p.k, p.tile);
  const float* src = p.data.get();
  float most = 0.f;
  for (int64_t i = 0; i < count; ++i) {
    const float a = std::fabs(src[i]);
    if (!(a <= 65504.f)) return false;  // overflow, Inf or NaN
    most = std::max(most, a);
  }
  if (most != 0.f && most < 0x1p-14f) return false;  // all subnormal in FP16
  const size_t bytes = RoundUp(std::max<int64_t>(count, 1) * 2, 64);
  auto half = std::shared_ptr<uint16_t>(static_cast<uint16_t*>(std::aligned_alloc(64, bytes)),
                                        [](uint16_t* q) { std::free(q); });
  for (int64_t i = 0; i < count; ++i) half.get()[i] = FloatToHalf(src[i]);
  p.half = std::move(half);
  p.data.reset();
  return true;
}

size_t GemmScratchBytesF32(const GemmUkernelInfoF32& uk, int64_t m, int64_t n, int64_t k, bool pack_b,
                           int threads, bool half_b) {
  size_t bytes = 0;
  if (pack_b) bytes += RoundUp(PackedPanelFloats(n, k, uk.nr) * 4, 64);
  const int64_t a_rows = std::min<int64_t>(kMcPanels, RoundUp(m, uk.mr) / uk.mr) * uk.mr;  // one A slice
  bytes += threads * RoundUp(a_rows * std::min(k, kGemmKc) * 4, 64);
  if (half_b) bytes += threads * RoundUp(std::min(k, kGemmKc) * uk.nr * 4, 64);
  return bytes + 64;
}

void RunGemmF32(const GemmUkernelInfoF32& uk, const GemmArgsF32& args, void* scratch, ParallelRunner* pool) {
  const int64_t m = args.m, n = args.n, k = args.k, mr = uk.mr, nr = uk.nr;
  if (m == 0 || n == 0) return;
  if (k == 0) {
    // Empty product: C = act(bias) (or C + 0).
    for (int64_t i = 0; i < m; ++i) {
      float* row = args.c + i * args.ldc;
      for (int64_t j = 0; j < n; ++j) {
        float v = args.accumulate ? row[j] : 0.f;
        if (args.row_bias) v += args.row_bias[i];
        if (args.col_bias) v += args.col_bias[j];
        row[j] = args.act.Apply(v);
      }
    }
    return;
  }
  InlineRunner inline_runner;
  if (pool == nullptr) pool = &inline_runner;
  const int threads = pool->num_threads();
  char* cursor = static_cast<char*>(scratch);

  // 1. B panels.
  PackedPanelsF32 local_b;
  const PackedPanelsF32* b = args.b.packed;
  if (b == nullptr) {
    local_b.outer = n;
    local_b.k = k;
    local_b.tile = nr;
    float* dst = reinterpret_cast<float*>(cursor);
    local_b.data = std::shared_ptr<float>(dst, [](float*) {});
    cursor += RoundUp(PackedPanelFloats(n, k, nr) * 4, 64);
    const int64_t panels = RoundUp(n, nr) / nr;
    const float* src = args.b.src;
    const int64_t so = args.b.so, sk = args.b.sk;
    const int64_t padded = RoundUp(n, nr);
    pool->ParallelFor(panels, [&](int64_t p0, int64_t p1) {
      for (int64_t k0 = 0; k0 < k; k0 += kGemmKc) {
        const int64_t kc = std::min(kGemmKc, k - k0);
        for (int64_t p = p0; p < p1; ++p) {
          float* panel = dst + k0 * padded + p * kc * nr;
          const int64_t valid = std::min<int64_t>(nr, n - p * nr);
          for (int64_t kk = 0; kk < kc; ++kk) {
            const float* s = src + (k0 + kk) * sk + p * nr * so;
            float* row = panel + kk * nr;
            if (so == 1) {
              std::copy(s, s + valid, row);
            } else {
              for (int64_t t = 0; t < valid; ++t) row[t] = s[t * so];
            }
            std::fill(row + valid, row + nr, 0.f);
          }
        }
      }
    });
    b = &local_b;
  }

  // 2. One contiguous block of C per thread. Split M when C is at least as
  //    tall as wide (every thread then streams all of B once), else split N
  //    (every thread packs all of A once).
  const int64_t mc = kMcPanels * mr;
  const int64_t m_panels = RoundUp(m, mr) / mr, n_panels = RoundUp(n, nr) / nr;
  int64_t m_parts = 1, n_parts = 1;
  if (threads > 1) {
    if ((m >= n && m_panels >= threads) || n_panels < threads) {
      m_parts = std::min<int64_t>(threads, m_panels);
    } else {
      n_parts = std::min<int64_t>(threads, n_panels);
    }
  }
  // (an A slice is at most mc rows, and at most m rounded up to mr)
  const size_t a_buf_floats = RoundUp(std::min(kMcPanels, m_panels) * mr * std::min(k, kGemmKc), 16);
  float* a_bufs = reinterpret_cast<float*>(cursor);
  // FP16 weights: microkernels with a half_by_rows table widen B as they
  // load it; for the others each task widens the B panel it is about to use
  // into its own buffer (one K block x nr, L1-sized), reused by every A
  // panel of the kMc slice.
  const bool half_b = b->half != nullptr;
  const size_t b_buf_floats = RoundUp(std::min(k, kGemmKc) * nr, 16);
  float* b_bufs = a_bufs + threads * a_buf_floats;

  // 3. Blocks: rows in kMc slices, K in kKc blocks, then nr x mr microtiles.
  pool->ParallelFor(m_parts * n_parts, [&](int64_t c0, int64_t c1) {
    for (int64_t chunk = c0; chunk < c1; ++chunk) {
      float* a_buf = a_bufs + chunk * a_buf_floats;
      float* b_buf = b_bufs + chunk * b_buf_floats;
      const int64_t mi = chunk / n_parts, ni = chunk % n_parts;
      const int64_t m0 = std::min(m, m_panels * mi / m_parts * mr), m1 = std::min(m, m_panels * (mi + 1) / m_parts * mr);
      const int64_t n0 = std::min(n, n_panels * ni / n_parts * nr), n1 = std::min(n, n_panels * (ni + 1) / n_parts * nr);
      // The microkernel reads A where it lies (alpha must then be 1): packing
      // A only pays for itself with strides the microkernel cannot take. An
      // A panel of 14 rows x one K block (at most 14 KiB) stays in L1 across
      // the B panels either way, and copying it cost more than it saved on
      // every shape measured (gemm_f32_bench: MiniLM's FFN 1.4 -> 1.0 ms,
      // 1024^3 21 -> 15 ms, EfficientNet-Lite0's 7x7 layers 5-10%).
      const bool read_a_in_place = args.a.packed == nullptr && args.alpha == 1.f;
      const int64_t jc = n0, ncur = n1 - n0;
      for (int64_t ic = m0; ic < m1; ic += mc) {
        const int64_t mcur = std::min(mc, m1 - ic);
        for (int64_t k0 = 0; k0 < k; k0 += kGemmKc) {
          const int64_t kc = std::min(kGemmKc, k - k0);
          const bool last = k0 + kc >= k;
          const bool accumulate = k0 > 0 || args.accumulate;
          const float* a_block;
          int64_t a_rs = 1, a_cs = mr, a_panel_stride = kc * mr;
          if (args.a.packed != nullptr) {
            a_block = args.a.packed->panel(ic, k0);
          } else if (read_a_in_place) {
            a_block = args.a.src + ic * args.a.so + k0 * args.a.sk;
            a_rs = args.a.so;
            a_cs = args.a.sk;
            a_panel_stride = mr * args.a.so;
          } else {
            PackStridedF32(mcur, kc, mr, args.a.src + ic * args.a.so + k0 * args.a.sk, args.a.so, args.a.sk,
                           args.alpha, a_buf);
            a_block = a_buf;
          }
          for (int64_t jr = 0; jr < ncur; jr += nr) {
            const float* b_panel;
            const GemmUkernelF32* kernels = uk.by_rows;
            if (half_b && uk.half_by_rows != nullptr) {
              b_panel = reinterpret_cast<const float*>(b->half_panel(jc + jr, k0));
              kernels = uk.half_by_rows;
            } else if (half_b) {
              WidenHalf(uk, b->half_panel(jc + jr, k0), b_buf, kc * nr);
              b_panel = b_buf;
            } else {
              b_panel = b->panel(jc + jr, k0);
            }
            const int64_t n_valid = std::min(nr, ncur - jr);
            if (!half_b && uk.tail_by_rows != nullptr && 2 * n_valid <= nr) kernels = uk.tail_by_rows;
            for (int64_t ir = 0; ir < mcur; ir += mr) {
              const int64_t m_valid = std::min(mr, mcur - ir);
              GemmEpilogueF32 ep;
              if (last) {
                ep.act = args.act;
                ep.row_bias = args.row_bias ? args.row_bias + ic + ir : nullptr;
                ep.col_bias = args.col_bias ? args.col_bias + jc + jr : nullptr;
                if (args.residual != nullptr) {
                  ep.residual = args.residual + (ic + ir) * args.ld_residual + jc + jr;
                  ep.ld_residual = args.ld_residual;
                }
              }
              kernels[m_valid - 1](kc, a_block + (ir / mr) * a_panel_stride, a_rs, a_cs, b_panel,
                                      args.c + (ic + ir) * args.ldc + jc + jr, args.ldc, m_valid, n_valid,
                                      accumulate, last ? &ep : nullptr);
            }
          }
        }
      }
    }
  });
}

}  // namespace kvant::cpu
