// BF16 GEMM driver, packing and reference (see the header).
//   1. A is rounded to bf16 pairs into scratch, rows split over the pool.
//   2. Tasks are (row block of mr, column panel of nr) pairs over the pool;
//      each runs the microkernel over all of K into an f32 tile.
//   3. The tile gets the bias and the activation and is stored (partial rows
//      and columns from the tile's valid part).
#include "ops/cpu/gemm_bf16.h"

#include <algorithm>

namespace kvant::cpu {
namespace {

size_t RoundUp(size_t v, size_t a) { return (v + a - 1) / a * a; }

}  // namespace

const GemmUkernelInfoBf16* SelectGemmUkernelBf16(CpuFeatures features) {
  const GemmUkernelInfoBf16* best = nullptr;
  for (const auto& uk : GemmUkernelsBf16()) {
    if ((uk.needs & features) == uk.needs) best = &uk;
  }
  return best;
}

PackedBBf16 PackBBf16(const GemmUkernelInfoBf16& uk, int64_t k, int64_t n, const float* src, int64_t sk, int64_t sn) {
  PackedBBf16 p;
  p.n = n;
  p.k = k;
  p.pairs = (k + 1) / 2;
  p.nr = uk.nr;
  const int64_t panels = (n + uk.nr - 1) / uk.nr;
  const int64_t count = panels * p.pairs * uk.nr * 2;
  p.data = std::shared_ptr<uint16_t>(new uint16_t[count](), std::default_delete<uint16_t[]>());
  uint16_t* d = p.data.get();
  for (int64_t panel = 0; panel < panels; ++panel) {
    for (int64_t pair = 0; pair < p.pairs; ++pair) {
      uint16_t* row = d + (panel * p.pairs + pair) * uk.nr * 2;
      for (int64_t c = 0; c < uk.nr; ++c) {
        const int64_t col = panel * uk.nr + c;
        if (col >= n) continue;
        for (int64_t h = 0; h < 2; ++h) {
          const int64_t kk = 2 * pair + h;
          row[2 * c + h] = kk < k ? F32ToBf16(src[kk * sk + col * sn]) : 0;
        }
      }
    }
  }
  return p;
}

size_t GemmScratchBytesBf16(const GemmUkernelInfoBf16& uk, int64_t m, int64_t k, int threads) {
  const int64_t pairs = (k + 1) / 2;
  return RoundUp(m * pairs * 4, 64) + static_cast<size_t>(threads) * RoundUp(uk.mr * uk.nr * 4, 64) + 128;
}

void RunGemmBf16(const GemmUkernelInfoBf16& uk, const GemmArgsBf16& args, void* scratch, ParallelRunner* pool) {
  const PackedBBf16& b = *args.b;
  const int64_t m = args.m, n = b.n, k = b.k, pairs = b.pairs;
  char* base = reinterpret_cast<char*>(RoundUp(reinterpret_cast<uintptr_t>(scratch), 64));
  uint32_t* a_packed = reinterpret_cast<uint32_t*>(base);
  float* tiles = reinterpret_cast<float*>(base + RoundUp(m * pairs * 4, 64));
  const size_t tile_floats = RoundUp(uk.mr * uk.nr * 4, 64) / 4;
  // 1. A as bf16 pairs.
  pool->ParallelFor(m, [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      const float* src = args.a + r * args.lda;
      uint32_t* dst = a_packed + r * pairs;
      for (int64_t p = 0; p < pairs; ++p) {
        const uint32_t lo = F32ToBf16(src[2 * p]);
        const uint32_t hi = 2 * p + 1 < k ? F32ToBf16(src[2 * p + 1]) : 0;
        dst[p] = lo | (hi << 16);
      }
    }
  });
  // 2-3. Tiles.
  const int64_t row_blocks = (m + uk.mr - 1) / uk.mr, col_panels = (n + uk.nr - 1) / uk.nr;
  const int64_t tasks = row_blocks * col_panels;
  const int64_t chunks = std::min<int64_t>(tasks, pool->num_threads());  // one tile buffer each
  pool->ParallelFor(chunks, [&](int64_t ch0, int64_t ch1) {
   for (int64_t chunk = ch0; chunk < ch1; ++chunk) {
    float* tile = tiles + chunk * tile_floats;
    for (int64_t t = chunk * tasks / chunks; t < (chunk + 1) * tasks / chunks; ++t) {
      // Column panels outermost within a thread's range keep a B panel hot.
      const int64_t panel = t / row_blocks, block = t % row_blocks;
      const int64_t r0 = block * uk.mr, rows = std::min<int64_t>(uk.mr, m - r0);
      const int64_t c0 = panel * uk.nr, cols = std::min<int64_t>(uk.nr, n - c0);
      uk.by_rows[rows - 1](pairs, a_packed + r0 * pairs, pairs, b.panel(c0), tile);
      for (int64_t r = 0; r < rows; ++r) {
        float* out = args.c + (r0 + r) * args.ldc + c0;
        const float* v = tile + r * uk.nr;
        for (int64_t c = 0; c < cols; ++c) out[c] = v[c] + (args.col_bias ? args.col_bias[c0 + c] : 0.f);
        if (!args.act.identity()) ApplyActivationF32(args.act, out, cols);
      }
    }
   }
  });
}

void GemmBf16Reference(int64_t m, int64_t n, int64_t k, const float* a, int64_t lda, const float* b, int64_t ldb,
                       const float* col_bias, float* c, int64_t ldc) {
  for (int64_t i = 0; i < m; ++i) {
    for (int64_t j = 0; j < n; ++j) {
      double sum = col_bias ? col_bias[j] : 0.0;
      for (int64_t kk = 0; kk < k; ++kk) {
        sum += double{Bf16ToF32(F32ToBf16(a[i * lda + kk]))} * Bf16ToF32(F32ToBf16(b[kk * ldb + j]));
      }
      c[i * ldc + j] = static_cast<float>(sum);
    }
  }
}

}  // namespace kvant::cpu
