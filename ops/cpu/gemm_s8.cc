// INT8 GEMM driver: B packing with column sums, per-call zero-point terms,
// blocking and threading around the ISA microkernels and epilogues, and the
// scalar requantization every epilogue must reproduce.
//
// RunGemmS8:
//  1. col_offset[n] = bias[n] - za * colsum[n] + K * za * zb[n] (and the row
//     sums of A when some zb[n] != 0);
//  2. one contiguous block of C per thread (split along M when C is at least
//     as tall as wide, else along N);
//  3. per block: N in slices whose B panels fit in L2, then mr-row panels of A
//     (read in place when K % 4 == 0, else packed with zero padding), then
//     the nr-wide B panels of the slice: microkernel, then epilogue.
#include "ops/cpu/gemm_s8.h"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <limits>

namespace kvant::cpu {

namespace avx512vnni {
// C (u8/s8, float requantization, out.col_offset filled, no weight zero
// points) = A x B for n <= 8 columns, K a multiple of 4, rows in lanes.
void NarrowGemmS8(int64_t m, int64_t k, const uint8_t* a, int64_t lda, const int8_t* b, int64_t nr, int64_t n,
                  const GemmS8Output& out, void* c, int64_t ldc);
}  // namespace avx512vnni
namespace {

int64_t RoundUp(int64_t v, int64_t m) { return (v + m - 1) / m * m; }

constexpr int64_t kSliceBytes = 1 << 20;  // B panels per N slice (L2-resident)

}  // namespace

int32_t RequantizeFloat(int32_t v, float scale) {
  // float(v) * scale rounded half to even (the default rounding mode), as
  // VCVTPS2DQ does; out-of-range values saturate.
  const float r = std::nearbyint(static_cast<float>(v) * scale);
  if (!(r > -2147483648.f)) return std::numeric_limits<int32_t>::min();
  if (!(r < 2147483648.f)) return std::numeric_limits<int32_t>::max();
  return static_cast<int32_t>(r);
}

int32_t RequantizeFixedPoint(int32_t v, int32_t m0, int32_t shift) {
  // gemmlowp: SaturatingRoundingDoublingHighMul, then RoundingDivideByPOT.
  int32_t high;
  if (v == std::numeric_limits<int32_t>::min() && m0 == std::numeric_limits<int32_t>::min()) {
    high = std::numeric_limits<int32_t>::max();
  } else {
    const int64_t ab = static_cast<int64_t>(v) * m0;
    const int64_t nudge = ab >= 0 ? (int64_t{1} << 30) : (1 - (int64_t{1} << 30));
    high = static_cast<int32_t>((ab + nudge) / (int64_t{1} << 31));
  }
  const int32_t mask = static_cast<int32_t>((int64_t{1} << shift) - 1);
  const int32_t remainder = high & mask;
  const int32_t threshold = (mask >> 1) + (high < 0 ? 1 : 0);
  return (high >> shift) + (remainder > threshold ? 1 : 0);
}

void QuantizeMultiplier(double scale, int32_t* m0, int32_t* shift) {
  if (!(scale > 0) || scale >= 1) {
    *m0 = 0;
    *shift = 0;
    return;
  }
  int exponent = 0;
  const double q = std::frexp(scale, &exponent);  // scale = q * 2^exponent, q in [0.5, 1)
  int64_t q31 = static_cast<int64_t>(std::llround(q * 2147483648.0));
  if (q31 == (int64_t{1} << 31)) {
    q31 /= 2;
    ++exponent;
  }
  *m0 = static_cast<int32_t>(q31);
  *shift = std::min(31, -exponent);
}

GemmS8Output OutputForColumns(const GemmS8Output& base, const int32_t* col_offset, const int32_t* b_zero_points,
                              int64_t col) {
  GemmS8Output out = base;
  out.col_offset = col_offset + col;
  out.col_zb = out.row_sum ? b_zero_points + col : nullptr;
  if (base.scale) out.scale = base.scale + col;
  if (base.bias_f32) out.bias_f32 = base.bias_f32 + col;
  if (base.m0) {
    out.m0 = base.m0 + col;
    out.shift = base.shift + col;
  }
  return out;
}

const GemmUkernelInfoS8* FindGemmUkernelS8(const char* name) {
  for (const auto& uk : GemmUkernelsS8()) {
    if (std::strcmp(uk.name, name) == 0) return &uk;
  }
  return nullptr;
}

const GemmUkernelInfoS8& SelectGemmUkernelS8(CpuFeatures features) {
  const auto& all = GemmUkernelsS8();
  const GemmUkernelInfoS8* best = &all.front();
  for (const auto& uk : all) {
    if ((uk.needs & features) == uk.needs) best = &uk;
  }
  return *best;
}

PackedBS8 PackBS8(const GemmUkernelInfoS8& uk, int64_t k, int64_t n, const int8_t* src, int64_t sk, int64_t sn) {
  return PackBS8(uk.nr, uk.k_align, k, n, src, sk, sn);
}

PackedBS8 PackBS8(int64_t nr, int64_t k_align, int64_t k, int64_t n, const int8_t* src, int64_t sk, int64_t sn) {
  PackedBS8 p;
  p.n = n;
  p.k = k;
  p.kp = RoundUp(std::max<int64_t>(k, 1), k_align);
  p.nr = nr;
  const size_t bytes = RoundUp(std::max<int64_t>(p.bytes(), 1), 64);
  p.data = std::shared_ptr<int8_t>(static_cast<int8_t*>(std::aligned_alloc(64, bytes)), [](int8_t* q) { std::free(q); });
  std::memset(p.data.get(), 0, bytes);
  p.col_sums.assign(n, 0);
  for (int64_t col = 0; col < n; ++col) {
    int8_t* panel = p.data.get() + (col / nr) * p.kp * nr;
    const int64_t c = col % nr;
    int32_t sum = 0;
    for (int64_t kk = 0; kk < k; ++kk) {
      const int8_t v = src[kk * sk + col * sn];
      panel[(kk / 4) * nr * 4 + c * 4 + kk % 4] = v;
      sum += v;
    }
    p.col_sums[col] = sum;
  }
  return p;
}

size_t GemmScratchBytesS8(const GemmUkernelInfoS8& uk, int64_t m, int64_t n, int64_t k, int threads) {
  const int64_t kp = RoundUp(std::max<int64_t>(k, 1), uk.k_align);
  return RoundUp(n * 4, 64) + RoundUp(m * 4, 64) + threads * RoundUp(uk.mr * kp, 64) + 64;
}

void RunGemmS8(const GemmUkernelInfoS8& uk, const GemmArgsS8& args, void* scratch, ParallelRunner* pool) {
  // Few rows, or a K the microkernel would mostly pad (AMX's 64-byte steps
  // at K = 16 do four times the products), run on `small_m`, which reads the
  // same panels and stops at its own K alignment.
  const int64_t k1 = std::max<int64_t>(args.b->k, 1);
  if ((args.m < uk.min_m || 2 * RoundUp(k1, uk.k_align) > 3 * k1) && uk.small_m != nullptr) {
    if (const GemmUkernelInfoS8* small = FindGemmUkernelS8(uk.small_m)) return RunGemmS8(*small, args, scratch, pool);
  }
  const PackedBS8& b = *args.b;
  // K as this microkernel steps it: b.kp when b was packed for it, less for
  // a kernel of a finer alignment on another's panels (the rest is zeros).
  const int64_t m = args.m, n = b.n, k = b.k, kp = RoundUp(k1, uk.k_align), mr = uk.mr, nr = uk.nr;
  if (m == 0 || n == 0) return;
  InlineRunner inline_runner;
  if (pool == nullptr) pool = &inline_runner;
  const int threads = pool->num_threads();
  char* cursor = static_cast<char*>(scratch);

  // 1. Zero-point and bias terms.
  int32_t* col_offset = reinterpret_cast<int32_t*>(cursor);
  cursor += RoundUp(n * 4, 64);
  const int32_t za = args.a_zero_point;
  bool any_zb = false;
  for (int64_t j = 0; j < n; ++j) {
    const int32_t zb = args.b_zero_points ? args.b_zero_points[j] : 0;
    any_zb |= zb != 0;
    // int64, then wrapped to int32 as the SIMD accumulators wrap.
    col_offset[j] = static_cast<int32_t>((args.bias ? args.bias[j] : 0) - int64_t{za} * b.col_sums[j] + k * za * zb);
  }
  int32_t* row_sum = reinterpret_cast<int32_t*>(cursor);
  cursor += RoundUp(m * 4, 64);
  if (any_zb && args.a_rows == nullptr) {
    for (int64_t i = 0; i < m; ++i) {
      const uint8_t* row = args.a + i * args.lda;
      int64_t s = 0;
      for (int64_t kk = 0; kk < k; ++kk) s += row[kk];
      row_sum[i] = static_cast<int32_t>(s);
    }
  }
  // At most 8 columns with u8/s8 outputs on an AVX-512 VNNI machine: rows in
  // lanes (gemm_s8_narrow_avx512vnni.cc), blocks of rows across the threads.
  const bool narrow_out = (args.out.kind == GemmS8Output::Kind::kU8 || args.out.kind == GemmS8Output::Kind::kS8) &&
                          args.out.m0 == nullptr && args.out.scale != nullptr;
  if (NarrowGemmS8Applies(uk, n, k) && args.a_rows == nullptr && !any_zb && narrow_out) {
    GemmS8Output out = args.out;
    out.col_offset = col_offset;
    out.row_sum = nullptr;
    constexpr int64_t kRows = 256;
    pool->ParallelFor((m + kRows - 1) / kRows, [&](int64_t b0, int64_t b1) {
      const int64_t r0 = b0 * kRows, r1 = std::min(m, b1 * kRows);
      avx512vnni::NarrowGemmS8(r1 - r0, k, args.a + r0 * args.lda, args.lda, b.panel(0), b.nr, n, out,
                               static_cast<uint8_t*>(args.c) + r0 * args.ldc, args.ldc);
    });
    return;
  }
  uint8_t* a_bufs = reinterpret_cast<uint8_t*>(cursor);
  const int64_t a_buf_bytes = RoundUp(mr * kp, 64);
  // A is read in place where the microkernel's reads stay inside it: rows
  // past the panel only when they exist, and K rounded up to kp reads into
  // the next row, which B's zero rows past K cancel (a 1x1 convolution of
  // 144 channels no longer copies its input for AMX's 192). Only the last
  // row's overread could leave the buffer: that panel is packed.
  const bool a_direct = args.a_rows == nullptr && args.lda >= k;
  const int64_t a_end = (m - 1) * args.lda + k;  // one past A's last byte
  const size_t out_size = args.out.kind == GemmS8Output::Kind::kS32 || args.out.kind == GemmS8Output::Kind::kF32 ? 4 : 1;

  // 2. Blocks of C per thread.
  const int64_t m_panels = RoundUp(m, mr) / mr, n_panels = RoundUp(n, nr) / nr;
  int64_t m_parts = 1, n_parts = 1;
  if (threads > 1) {
    if ((m >= n && m_panels >= threads) || n_panels < threads) {
      m_parts = std::min<int64_t>(threads, m_panels);
    } else {
      n_parts = std::min<int64_t>(threads, n_panels);
    }
  }
  const int64_t slice = std::max<int64_t>(nr, kSliceBytes / (b.kp * nr) * nr);

  // 3. Slices of N, panels of A, panels of B.
  pool->ParallelFor(m_parts * n_parts, [&](int64_t c0, int64_t c1) {
    alignas(64) int32_t tile[64 * 64];
    int32_t panel_sums[64];  // row sums of an implicit A panel (this thread's)
    if (uk.begin) uk.begin();
    for (int64_t chunk = c0; chunk < c1; ++chunk) {
      uint8_t* a_buf = a_bufs + chunk * a_buf_bytes;
      const int64_t mi = chunk / n_parts, ni = chunk % n_parts;
      const int64_t m0 = std::min(m, m_panels * mi / m_parts * mr), m1 = std::min(m, m_panels * (mi + 1) / m_parts * mr);
      const int64_t n0 = std::min(n, n_panels * ni / n_parts * nr), n1 = std::min(n, n_panels * (ni + 1) / n_parts * nr);
      for (int64_t jc = n0; jc < n1; jc += slice) {
        const int64_t jend = std::min(n1, jc + slice);
        for (int64_t ir = m0; ir < m1; ir += mr) {
          const int64_t rows = std::min(mr, m1 - ir);
          const uint8_t* a_panel;
          int64_t a_rs, a_gs;
          const int64_t read_rows = !uk.full_panels ? rows : rows <= uk.half_rows ? uk.half_rows : mr;
          if (a_direct && ir + read_rows <= m && (ir + read_rows - 1) * args.lda + kp <= a_end) {
            a_panel = args.a + ir * args.lda;
            a_rs = args.lda;
          } else {
            // Rows of kp bytes, zero past K and past the valid rows.
            const int64_t pad = kp - k;  // locals: the lambda's captured ones are reloaded after each store
            for (int64_t r = 0; r < rows && pad > 0; ++r) {
              uint8_t* z = a_buf + r * kp + k;
              if (pad <= 8) {
                for (int64_t q = 0; q < pad; ++q) z[q] = 0;  // a convolution's K = 27 + 1: no call
              } else {
                std::memset(z, 0, pad);
              }
            }
            if (rows < read_rows) std::memset(a_buf + rows * kp, 0, (read_rows - rows) * kp);
            if (args.a_rows != nullptr) {
              (*args.a_rows)(ir, rows, a_buf, kp);
              for (int64_t r = 0; any_zb && r < rows; ++r) {  // row sums of an implicit A, per panel
                int64_t sum = 0;
                for (int64_t kk = 0; kk < k; ++kk) sum += a_buf[r * kp + kk];
                panel_sums[r] = static_cast<int32_t>(sum);
              }
            } else {
              for (int64_t r = 0; r < rows; ++r) std::memcpy(a_buf + r * kp, args.a + (ir + r) * args.lda, k);
            }
            a_panel = a_buf;
            a_rs = kp;
          }
          a_gs = 4;
          GemmS8Output base = args.out;
          base.row_sum = !any_zb ? nullptr : args.a_rows != nullptr ? panel_sums : row_sum + ir;
          for (int64_t jr = jc; jr < jend; jr += nr) {
            const int64_t cols = std::min(nr, jend - jr);
            const GemmUkernelS8* fns = cols * 2 <= nr && uk.half_cols != nullptr ? uk.half_cols : uk.by_rows;
            fns[rows - 1](kp, a_panel, a_rs, a_gs, b.panel(jr), tile);
            const GemmS8Output out = OutputForColumns(base, col_offset, args.b_zero_points, jr);
            uk.epilogue(tile, nr, rows, cols, out,
                        static_cast<char*>(args.c) + (ir * args.ldc + jr) * out_size, args.ldc);
          }
        }
      }
    }
    if (uk.end) uk.end();
  });
}

}  // namespace kvant::cpu
