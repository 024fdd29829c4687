// BF16 GEMM driver, packing and reference (see the header).
//   1. A is rounded to bf16 pairs into scratch, rows split over the pool.
//   2. Tasks are (group of row blocks, column panel of nr) over the pool;
//      each block runs the microkernel over all of K into an f32 tile.
//   3. The tile gets the bias and the activation and is stored (partial rows
//      and columns from the tile's valid part).
#include "ops/cpu/gemm_bf16.h"

#include <algorithm>
#include <string_view>

namespace kvant::cpu {
namespace avx512bf16 {  // (every BF16 microkernel needs AVX-512)
void PackRowBf16(const float* src, int64_t k, uint32_t* dst, int64_t pairs);
void StoreTileBf16(const float* tile, int64_t ld, int64_t rows, int64_t cols, const float* bias,
                   const ActivationF32& act, float* c, int64_t ldc);
}  // namespace avx512bf16
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

const GemmUkernelInfoBf16* FindGemmUkernelBf16(const char* name) {
  for (const auto& uk : GemmUkernelsBf16()) {
    if (std::string_view(uk.name) == name) return &uk;
  }
  return nullptr;
}

PackedBBf16 PackBBf16(const GemmUkernelInfoBf16& uk, int64_t k, int64_t n, const float* src, int64_t sk, int64_t sn) {
  PackedBBf16 p;
  p.n = n;
  p.k = k;
  p.pairs = ((k + 1) / 2 + uk.pair_align - 1) / uk.pair_align * uk.pair_align;
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
  const int64_t pairs = ((k + 1) / 2 + uk.pair_align - 1) / uk.pair_align * uk.pair_align;
  const int64_t rows = (m + uk.mr - 1) / uk.mr * uk.mr;
  size_t bytes = RoundUp(rows * pairs * 4, 64) + static_cast<size_t>(threads) * RoundUp(uk.mr * uk.nr * 4, 64) + 128;
  if (uk.small_m != nullptr) {
    if (const GemmUkernelInfoBf16* small = FindGemmUkernelBf16(uk.small_m)) {
      bytes = std::max(bytes, GemmScratchBytesBf16(*small, std::min<int64_t>(m, uk.min_m), k, threads) +
                                  static_cast<size_t>(rows * pairs * 4));
    }
  }
  return bytes;
}

void RunGemmBf16(const GemmUkernelInfoBf16& uk, const GemmArgsBf16& args, void* scratch, ParallelRunner* pool) {
  if (args.m < uk.min_m && uk.small_m != nullptr) {
    if (const GemmUkernelInfoBf16* small = FindGemmUkernelBf16(uk.small_m)) return RunGemmBf16(*small, args, scratch, pool);
  }
  const PackedBBf16& b = *args.b;
  const int64_t m = args.m, n = b.n, k = b.k, pairs = b.pairs;
  const int64_t rows_packed = uk.full_rows ? (m + uk.mr - 1) / uk.mr * uk.mr : m;
  char* base = reinterpret_cast<char*>(RoundUp(reinterpret_cast<uintptr_t>(scratch), 64));
  uint32_t* a_packed = reinterpret_cast<uint32_t*>(base);
  float* tiles = reinterpret_cast<float*>(base + RoundUp(rows_packed * pairs * 4, 64));
  const size_t tile_floats = RoundUp(uk.mr * uk.nr * 4, 64) / 4;
  // 1. A as bf16 pairs (rows and pairs past the end are zeros); every BF16
  //    kernel needs AVX-512 BF16, whose conversion instruction packs.
  pool->ParallelFor(rows_packed, [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      if (r < m) {
        avx512bf16::PackRowBf16(args.a + r * args.lda, k, a_packed + r * pairs, pairs);
      } else {
        std::memset(a_packed + r * pairs, 0, pairs * 4);
      }
    }
  });
  // 2-3. Tiles.
  // Tasks are (group of row blocks, column panel), group-major: a group's A
  // rows (about 256 KiB) stay in L2 while the panels stream past, and each
  // B panel is reused by every row block of the group from L1/L2.
  const int64_t row_blocks = (m + uk.mr - 1) / uk.mr, col_panels = (n + uk.nr - 1) / uk.nr;
  const int64_t group = std::max<int64_t>(1, (int64_t{256} << 10) / (uk.mr * pairs * 4));
  const int64_t groups = (row_blocks + group - 1) / group;
  const int64_t tasks = groups * col_panels;
  const int64_t chunks = std::min<int64_t>(tasks, pool->num_threads());  // one tile buffer each
  pool->ParallelFor(chunks, [&](int64_t ch0, int64_t ch1) {
    if (uk.begin) uk.begin();
    for (int64_t chunk = ch0; chunk < ch1; ++chunk) {
      float* tile = tiles + chunk * tile_floats;
      for (int64_t t = chunk * tasks / chunks; t < (chunk + 1) * tasks / chunks; ++t) {
        const int64_t g = t / col_panels, panel = t % col_panels;
        const int64_t c0 = panel * uk.nr, cols = std::min<int64_t>(uk.nr, n - c0);
        for (int64_t block = g * group; block < std::min(row_blocks, (g + 1) * group); ++block) {
          const int64_t r0 = block * uk.mr, rows = std::min<int64_t>(uk.mr, m - r0);
          uk.by_rows[rows - 1](pairs, a_packed + r0 * pairs, pairs, b.panel(c0), tile);
          avx512bf16::StoreTileBf16(tile, uk.nr, rows, cols, args.col_bias ? args.col_bias + c0 : nullptr, args.act,
                                    args.c + r0 * args.ldc + c0, args.ldc);
        }
      }
    }
    if (uk.end) uk.end();
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
