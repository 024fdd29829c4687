// INT8 convolution (NHWC): weight preparation, im2col + INT8 GEMM for
// group 1, the depthwise driver, and the reference depthwise row.
#include "ops/cpu/conv_s8.h"

#include <algorithm>
#include <cstring>

#include "absl/strings/str_format.h"

namespace kvant::cpu {
namespace {

int64_t RoundUp(int64_t v, int64_t m) { return (v + m - 1) / m * m; }

// Scratch of one depthwise thread: the ring of kh lane-image rows, a padded
// input row (with room for the last lane's partners), two output rows of
// sums (the second: window sums of x, for weight zero points).
int64_t DepthwiseSlotBytes(const ConvS8Shape& s) {
  const int64_t wp = s.w + s.pad_l + s.pad_r, ring = (s.kh - 1) * s.dh + 1;
  return RoundUp(ring * wp * s.cin * 4, 64) + RoundUp((wp + 3 * s.dw) * s.cin, 64) +
         2 * RoundUp(s.out_w() * s.cin * 4, 64);
}

int32_t Pack16(int32_t lo, int32_t hi) {
  return static_cast<int32_t>((static_cast<uint32_t>(lo) & 0xffffu) | (static_cast<uint32_t>(hi) << 16));
}

}  // namespace

namespace ref {

void DepthwiseRowS8(const ConvS8Shape& s, const int32_t* const* rows, const int32_t* w_pairs, int32_t* acc) {
  const int64_t c = s.cin, pairs = DepthwiseLanesPerRow(s, 2);
  for (int64_t ow = 0; ow < s.out_w(); ++ow) {
    for (int64_t ch = 0; ch < c; ++ch) {
      int32_t sum = 0;
      for (int64_t ky = 0; ky < s.kh; ++ky) {
        for (int64_t j = 0; j < pairs; ++j) {
          const int32_t p = rows[ky][(ow * s.sw + 2 * j * s.dw) * c + ch];
          const int32_t w = w_pairs[(ky * pairs + j) * c + ch];
          sum += static_cast<int16_t>(p & 0xffff) * static_cast<int16_t>(w & 0xffff) + (p >> 16) * (w >> 16);
        }
      }
      acc[ow * c + ch] = sum;
    }
  }
}

void PairRowS8(const uint8_t* x, int64_t n, int64_t partner, int32_t* p) {
  for (int64_t i = 0; i < n; ++i) p[i] = Pack16(x[i], x[i + partner]);
}

// The four-taps-per-lane layout (bytes) of the VNNI kernel, for its
// fallback on kernels wider than it unrolls.
void DepthwiseLanes4RowS8(const ConvS8Shape& s, const int32_t* const* rows, const int32_t* w_lanes, int32_t* acc) {
  const int64_t c = s.cin, lanes = DepthwiseLanesPerRow(s, 4);
  for (int64_t ow = 0; ow < s.out_w(); ++ow) {
    for (int64_t ch = 0; ch < c; ++ch) {
      int32_t sum = 0;
      for (int64_t ky = 0; ky < s.kh; ++ky) {
        for (int64_t j = 0; j < lanes; ++j) {
          const uint32_t x = static_cast<uint32_t>(rows[ky][(ow * s.sw + 4 * j * s.dw) * c + ch]);
          const uint32_t w = static_cast<uint32_t>(w_lanes[(ky * lanes + j) * c + ch]);
          for (int t = 0; t < 4; ++t) sum += int32_t((x >> (8 * t)) & 0xff) * int32_t(int8_t((w >> (8 * t)) & 0xff));
        }
      }
      acc[ow * c + ch] = sum;
    }
  }
}

}  // namespace ref

absl::StatusOr<std::unique_ptr<ConvS8>> ConvS8::Create(const ConvS8Shape& s, const int8_t* weights,
                                                       CpuFeatures features) {
  if (s.depthwise && s.kh > 64) {
    return absl::InvalidArgumentError(absl::StrFormat("INT8 depthwise convolution: kernel height must be <= 64, got %d", s.kh));
  }
  if (s.depthwise && s.cin != s.cout) {
    return absl::InvalidArgumentError(
        absl::StrFormat("INT8 depthwise convolution: channels in and out must match, got %d and %d", s.cin, s.cout));
  }
  auto conv = std::make_unique<ConvS8>();
  conv->shape_ = s;
  conv->uk_ = &SelectGemmUkernelS8(features);
  const int64_t taps = s.kh * s.kw;
  if (s.depthwise) {
    for (const auto& k : DepthwiseS8Kernels()) {
      if ((k.needs & features) == k.needs) conv->dw_ = &k;
    }
    conv->dw_weights_.assign(weights, weights + s.cin * taps);
    conv->dw_wsum_.assign(s.cin, 0);
    for (int64_t ch = 0; ch < s.cin; ++ch) {
      for (int64_t t = 0; t < taps; ++t) conv->dw_wsum_[ch] += weights[ch * taps + t];
    }
    conv->PackDepthwise();
    return conv;
  }
  // B(k, n) with k = (ky * kw + kx) * cin + ci, from [cout][cin][kh][kw].
  const int64_t k = taps * s.cin;
  std::vector<int8_t> b(k * s.cout);
  for (int64_t n = 0; n < s.cout; ++n) {
    for (int64_t ci = 0; ci < s.cin; ++ci) {
      for (int64_t t = 0; t < taps; ++t) b[(t * s.cin + ci) * s.cout + n] = weights[(n * s.cin + ci) * taps + t];
    }
  }
  conv->packed_ = PackBS8(*conv->uk_, k, s.cout, b.data(), s.cout, 1);
  // The direct kernel for stride 1 (as created; a Run with other strides
  // takes im2col), where the channel padding to its K chunk
  // costs at most a third more products.
  const ConvTapsS8Info* direct = nullptr;
  for (const auto& row : ConvTapsS8Kernels()) {
    if (row.preferred && (row.needs & features) == row.needs) direct = &row;
  }
  if (direct != nullptr && taps > 1 && s.sh == 1 && s.sw == 1 && s.dh == 1 && s.dw == 1 &&
      3 * RoundUp(s.cin, direct->k_align) <= 4 * s.cin) {
    conv->PackDirect(*direct);
  }
  return conv;
}

void ConvS8::PackDepthwise() {
  const ConvS8Shape& s = shape_;
  const int tpl = dw_->taps_per_lane;
  const int64_t c = s.cin, taps = s.kh * s.kw, lanes = DepthwiseLanesPerRow(s, tpl);
  dw_lanes_.assign(s.kh * lanes * c, 0);
  dw_ones_.assign(s.kh * lanes * c, 0);
  for (int64_t ch = 0; ch < c; ++ch) {
    for (int64_t ky = 0; ky < s.kh; ++ky) {
      for (int64_t j = 0; j < lanes; ++j) {
        int32_t w[4] = {0, 0, 0, 0};
        for (int t = 0; t < tpl && j * tpl + t < s.kw; ++t) w[t] = dw_weights_[ch * taps + ky * s.kw + j * tpl + t];
        uint32_t lane = 0;
        if (tpl == 2) {
          lane = (static_cast<uint32_t>(w[0]) & 0xffffu) | (static_cast<uint32_t>(w[1]) << 16);
        } else {
          for (int t = 0; t < 4; ++t) lane |= (static_cast<uint32_t>(w[t]) & 0xffu) << (8 * t);
        }
        dw_lanes_[(ky * lanes + j) * c + ch] = static_cast<int32_t>(lane);
        uint32_t ones = 0;  // weight 1 on each tap of the lane: window sums of x
        for (int t = 0; t < tpl && j * tpl + t < s.kw; ++t) ones |= 1u << ((tpl == 2 ? 16 : 8) * t);
        dw_ones_[(ky * lanes + j) * c + ch] = static_cast<int32_t>(ones);
      }
    }
  }
}

size_t ConvS8::ScratchBytes(const ConvS8Shape& s, int threads) const {
  const int64_t oh = s.out_h(), ow = s.out_w();
  if (s.depthwise) return RoundUp(s.cin * 4, 64) + threads * DepthwiseSlotBytes(s) + 64;
  const int64_t m = s.n * oh * ow, k = s.kh * s.kw * s.cin;
  if (Direct(s)) return std::max(DirectScratchBytes(s, threads), GemmScratchBytesS8(*uk_, m, s.cout, k, threads) + 64);
  return GemmScratchBytesS8(*uk_, m, s.cout, k, threads) + 64;
}

void ConvS8::Run(const ConvS8Shape& s, const uint8_t* x, int32_t zx, const int32_t* bias,
                 const int32_t* w_zero_points, const GemmS8Output& out, void* y, void* scratch,
                 ParallelRunner* pool) const {
  InlineRunner inline_runner;
  if (pool == nullptr) pool = &inline_runner;
  const int64_t oh_n = s.out_h(), ow_n = s.out_w(), taps = s.kh * s.kw;
  const size_t esize = out.kind == GemmS8Output::Kind::kS32 || out.kind == GemmS8Output::Kind::kF32 ? 4 : 1;
  char* cursor = static_cast<char*>(scratch);
  if (s.depthwise) {
    const int64_t c = s.cin, wp = s.w + s.pad_l + s.pad_r, wx = wp + 3 * s.dw, ring = (s.kh - 1) * s.dh + 1;
    int32_t* offset = reinterpret_cast<int32_t*>(cursor);
    cursor += RoundUp(c * 4, 64);
    for (int64_t ch = 0; ch < c; ++ch) {
      // int64, then wrapped to int32 as the SIMD sums wrap (a bias near
      // 2^31 must not overflow here: that would be undefined).
      // With weight zero points zw: sum (x - zx)(w - zw) = sum x w - zx sum w
      // - zw (sum x - kh kw zx), sum x over the window padded with zx.
      const int64_t zw = w_zero_points ? w_zero_points[ch] : 0;
      offset[ch] = static_cast<int32_t>(int64_t{bias ? bias[ch] : 0} - int64_t{zx} * dw_wsum_[ch] + zw * taps * zx);
    }
    GemmS8Output o = out;
    o.col_offset = offset;
    o.row_sum = nullptr;
    o.col_zb = nullptr;
    // Per thread: a ring of lane-image rows, one zx-padded input row, the
    // int32 sums of one output row.
    const int64_t slots = std::min<int64_t>(pool->num_threads(), s.n * oh_n);
    pool->ParallelFor(slots, [&](int64_t s0, int64_t s1) {
      for (int64_t slot = s0; slot < s1; ++slot) {
        char* mine = cursor + slot * DepthwiseSlotBytes(s);
        int32_t* ring_rows = reinterpret_cast<int32_t*>(mine);
        uint8_t* padded = reinterpret_cast<uint8_t*>(mine + RoundUp(ring * wp * c * 4, 64));
        int32_t* acc = reinterpret_cast<int32_t*>(mine + RoundUp(ring * wp * c * 4, 64) + RoundUp(wx * c, 64));
        int32_t* window_sums = acc + RoundUp(ow_n * c * 4, 64) / 4;
        std::vector<int64_t> held(ring, -1);  // padded-image row held by each ring slot, per image
        int64_t held_image = -1;
        const int32_t* rows[64];
        for (int64_t task = s.n * oh_n * slot / slots; task < s.n * oh_n * (slot + 1) / slots; ++task) {
          const int64_t img = task / oh_n, oh = task % oh_n;
          if (img != held_image) {
            std::fill(held.begin(), held.end(), -1);
            held_image = img;
          }
          for (int64_t ky = 0; ky < s.kh; ++ky) {
            const int64_t r = oh * s.sh + ky * s.dh;  // row of the padded image
            int32_t* dst = ring_rows + (r % ring) * wp * c;
            if (held[r % ring] != r) {
              const int64_t iy = r - s.pad_t;
              std::memset(padded, zx, wx * c);
              if (iy >= 0 && iy < s.h) std::memcpy(padded + s.pad_l * c, x + ((img * s.h + iy) * s.w) * c, s.w * c);
              dw_->lane_row(padded, wp * c, s.dw * c, dst);
              held[r % ring] = r;
            }
            rows[ky] = dst;
          }
          dw_->row(s, rows, dw_lanes_.data(), acc);
          if (w_zero_points != nullptr) {
            dw_->row(s, rows, dw_ones_.data(), window_sums);
            for (int64_t ow = 0; ow < ow_n; ++ow) {
              for (int64_t ch = 0; ch < c; ++ch) {
                // Wrapping, as the vector sums wrap.
                acc[ow * c + ch] = static_cast<int32_t>(static_cast<uint32_t>(acc[ow * c + ch]) -
                                                        static_cast<uint32_t>(w_zero_points[ch]) *
                                                            static_cast<uint32_t>(window_sums[ow * c + ch]));
              }
            }
          }
          uk_->epilogue(acc, c, ow_n, c, o, static_cast<char*>(y) + ((img * oh_n + oh) * ow_n) * c * esize, c);
        }
      }
    });
    return;
  }
  const int64_t m = s.n * oh_n * ow_n, k = taps * s.cin;
  const bool in_place = s.kh == 1 && s.kw == 1 && s.sh == 1 && s.sw == 1 && s.pad_t == 0 && s.pad_l == 0 &&
                      s.pad_b == 0 && s.pad_r == 0;
  if (!in_place && w_zero_points == nullptr && Direct(s)) return RunDirect(s, x, zx, bias, out, y, scratch, pool);
  // Otherwise the im2col rows of each A panel are built as the GEMM reaches
  // it, into its (cache-resident) panel buffer: no M x K copy in memory.
  auto im2col = [&](int64_t row0, int64_t rows, uint8_t* dst, int64_t kp) {
    for (int64_t p = row0; p < row0 + rows; ++p, dst += kp) {
      const int64_t img = p / (oh_n * ow_n), oh = p / ow_n % oh_n, ow = p % ow_n;
      for (int64_t ky = 0; ky < s.kh; ++ky) {
        const int64_t iy = oh * s.sh - s.pad_t + ky * s.dh, ix0 = ow * s.sw - s.pad_l;
        uint8_t* row = dst + ky * s.kw * s.cin;
        if (iy < 0 || iy >= s.h) {
          std::memset(row, zx, s.kw * s.cin);
          continue;
        }
        const uint8_t* src = x + ((img * s.h + iy) * s.w) * s.cin;
        if (s.dw == 1 && ix0 >= 0 && ix0 + s.kw <= s.w) {  // the kernel row lies inside: one copy (NHWC)
          std::memcpy(row, src + ix0 * s.cin, s.kw * s.cin);
          continue;
        }
        for (int64_t kx = 0; kx < s.kw; ++kx) {
          const int64_t ix = ix0 + kx * s.dw;
          if (ix < 0 || ix >= s.w) {
            std::memset(row + kx * s.cin, zx, s.cin);
          } else {
            std::memcpy(row + kx * s.cin, src + ix * s.cin, s.cin);
          }
        }
      }
    }
  };
  const GemmRowsS8 rows_fn(im2col);
  GemmArgsS8 g;
  g.m = m;
  g.a = x;
  g.lda = k;
  g.a_rows = in_place ? nullptr : &rows_fn;
  g.b = &packed_;
  g.a_zero_point = zx;
  g.b_zero_points = w_zero_points;
  g.bias = bias;
  g.out = out;
  g.c = y;
  g.ldc = s.cout;
  RunGemmS8(*uk_, g, cursor, pool);
}

}  // namespace kvant::cpu
