// INT8 convolution (NHWC): weight preparation, im2col + INT8 GEMM for
// group 1, the depthwise driver, and the reference depthwise row.
#include "ops/cpu/conv_s8.h"

#include <algorithm>
#include <cstring>

#include "absl/strings/str_format.h"

namespace kvant::cpu {
namespace {

// memcpy of a few bytes without the library call: a convolution of 3 input
// channels copies 9 bytes per kernel row and output position. Two
// overlapping words cover 4..16 bytes.
inline void CopyBytes(uint8_t* dst, const uint8_t* src, int64_t n) {
  if (n > 16) {
    std::memcpy(dst, src, n);
  } else if (n >= 8) {
    uint64_t a, b;
    std::memcpy(&a, src, 8);
    std::memcpy(&b, src + n - 8, 8);
    std::memcpy(dst, &a, 8);
    std::memcpy(dst + n - 8, &b, 8);
  } else if (n >= 4) {
    uint32_t a, b;
    std::memcpy(&a, src, 4);
    std::memcpy(&b, src + n - 4, 4);
    std::memcpy(dst, &a, 4);
    std::memcpy(dst + n - 4, &b, 4);
  } else {
    for (int64_t i = 0; i < n; ++i) dst[i] = src[i];
  }
}

int64_t RoundUp(int64_t v, int64_t m) { return (v + m - 1) / m * m; }

// Strided depthwise work goes in vertical strips of output columns, so that
// a thread's ring of kh lane rows of one strip stays in L1 (about 24 KB).
// Stride 1 takes whole rows: there the kw - 1 lane pixels each strip
// rebuilds cost more than L1 saves (5x5 over 240 channels: 0.8x).
struct DepthwiseStrips {
  int64_t out_w;   // output columns per strip (the last may have fewer)
  int64_t lane_w;  // lane-image pixels a full strip reads
  int64_t ring;    // lane rows held
};

DepthwiseStrips StripsFor(const ConvS8Shape& s, int64_t pitch) {
  constexpr int64_t kL1Bytes = 24 << 10;
  // Stride 1 holds one row more: two output rows are computed at once.
  const int64_t ring = (s.kh - 1) * s.dh + 1 + (s.sh == 1 && s.dh == 1 ? 1 : 0), span = s.dw * (s.kw - 1) + 1;
  const int64_t fit = (kL1Bytes / (ring * pitch * 4) - span) / s.sw + 1;
  const int64_t out_w = s.sw == 1 ? s.out_w() : std::min(s.out_w(), std::max<int64_t>(fit, 8));
  return {out_w, (out_w - 1) * s.sw + span, ring};
}

// Scratch of one depthwise thread: the ring of lane rows of one strip
// (pixels `pitch` lanes apart), the zx-padded input of a strip row (with
// room for the last lane's partners), two rows of sums (the second: window
// sums of x, for weight zero points), and the per-channel offsets of an
// output row whose window has padding rows (in channel and in lane order).
int64_t DepthwiseSlotBytes(const ConvS8Shape& s, int64_t pitch) {
  const DepthwiseStrips st = StripsFor(s, pitch);
  return RoundUp(st.ring * st.lane_w * pitch * 4, 64) + RoundUp((st.lane_w + 3 * s.dw) * s.cin, 64) +
         2 * RoundUp(st.out_w * s.cin * 4, 64) + RoundUp(s.cin * 4, 64) + RoundUp(pitch * 4, 64);
}

// v[ch] (null: 0) at its lane lane_of[ch] of `pitch`, zero elsewhere.
template <typename T>
void ToLaneOrder(const std::vector<int32_t>& lane_of, int64_t pitch, const T* v, T* lanes) {
  std::fill(lanes, lanes + pitch, T{0});
  if (v == nullptr) return;
  for (size_t ch = 0; ch < lane_of.size(); ++ch) lanes[lane_of[ch]] = v[ch];
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

void PairRowS8(const uint8_t* x, int64_t pixels, int64_t c, int64_t step, int64_t partner, int32_t* p) {
  for (int64_t u = 0; u < pixels; ++u) {
    for (int64_t i = u * step * c; i < (u * step + 1) * c; ++i) p[i] = Pack16(x[i], x[i + partner]);
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
  const CpuFeatures vbmi = kIsaAvx512 | kCpuAvx512vbmi;
  if ((features & vbmi) == vbmi) conv->expand_rgb_ = avx512vbmi::ExpandPixels3To4;
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
  // The last preferred direct kernel the machine and the channel count
  // allow, where the channel padding to its K chunk costs at most a third
  // more products.
  const ConvTapsS8Info* direct = nullptr;
  for (const auto& row : ConvTapsS8Kernels()) {
    if (row.preferred && (row.needs & features) == row.needs && (row.max_cin == 0 || s.cin <= row.max_cin) &&
        (row.max_cout == 0 || s.cout <= row.max_cout) && 3 * RoundUp(s.cin, row.k_align) <= 4 * s.cin) {
      direct = &row;
    }
  }
  if (direct != nullptr && taps > 1) conv->PackDirect(*direct);
  return conv;
}

void ConvS8::PackDepthwise() {
  const ConvS8Shape& s = shape_;
  const int tpl = dw_->taps_per_lane;
  const int64_t c = s.cin, taps = s.kh * s.kw, lanes = DepthwiseLanesPerRow(s, tpl);
  const int64_t pitch = DepthwiseLanePitch(dw_->order, c);
  dw_lanes_.assign(s.kh * lanes * pitch, 0);
  dw_ones_.assign(s.kh * lanes * pitch, 0);
  dw_lane_of_.resize(c);
  for (int64_t ch = 0; ch < c; ++ch) dw_lane_of_[ch] = static_cast<int32_t>(DepthwiseLaneOf(dw_->order, c, ch));
  dw_wsum_rows_.assign((s.kh + 1) * pitch, 0);
  for (int64_t ch = 0; ch < c; ++ch) {
    int32_t sum = 0;
    for (int64_t ky = 0; ky < s.kh; ++ky) {
      for (int64_t kx = 0; kx < s.kw; ++kx) sum += dw_weights_[ch * taps + ky * s.kw + kx];
      dw_wsum_rows_[(ky + 1) * pitch + dw_lane_of_[ch]] = sum;
    }
  }
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
        const int64_t at = (ky * lanes + j) * pitch + dw_lane_of_[ch];
        dw_lanes_[at] = static_cast<int32_t>(lane);
        uint32_t ones = 0;  // weight 1 on each tap of the lane: window sums of x
        for (int t = 0; t < tpl && j * tpl + t < s.kw; ++t) ones |= 1u << ((tpl == 2 ? 16 : 8) * t);
        dw_ones_[at] = static_cast<int32_t>(ones);
      }
    }
  }
}

size_t ConvS8::ScratchBytes(const ConvS8Shape& s, int threads) const {
  const int64_t oh = s.out_h(), ow = s.out_w();
  if (s.depthwise) {
    const int64_t pitch = DepthwiseLanePitch(dw_->order, s.cin);
    return RoundUp(s.cin * 4, 64) + 3 * RoundUp(pitch * 4, 64) + threads * DepthwiseSlotBytes(s, pitch) + 64;
  }
  const int64_t m = s.n * oh * ow, k = s.kh * s.kw * s.cin;
  const size_t gemm = GemmScratchBytesS8(*uk_, m, s.cout, k, threads) + 64;
  return direct_uk_ != nullptr ? std::max(DirectScratchBytes(s, threads), gemm) : gemm;
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
    const int64_t c = s.cin;
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
    // The requantizing row takes offsets and scales in lane order; the
    // offsets of rows whose kernel rows are cut are made from the bias.
    const int64_t pitch = DepthwiseLanePitch(dw_->order, c);
    int32_t* offset_lanes = reinterpret_cast<int32_t*>(cursor);
    cursor += RoundUp(pitch * 4, 64);
    float* scale_lanes = reinterpret_cast<float*>(cursor);
    cursor += RoundUp(pitch * 4, 64);
    int32_t* bias_lanes = reinterpret_cast<int32_t*>(cursor);
    cursor += RoundUp(pitch * 4, 64);
    GemmS8Output o = out;
    o.col_offset = offset;
    o.row_sum = nullptr;
    o.col_zb = nullptr;
    const bool requant_row = w_zero_points == nullptr && dw_->row_requant != nullptr && DepthwiseRowRequantApplies(o);
    ToLaneOrder(dw_lane_of_, pitch, bias, bias_lanes);
    if (requant_row) {
      ToLaneOrder(dw_lane_of_, pitch, offset, offset_lanes);
      ToLaneOrder(dw_lane_of_, pitch, out.scale, scale_lanes);
    }
    // Outputs read lane pixels ow * sw + taps_per_lane * j * dw: with a
    // stride that divides taps_per_lane * dw, only every sw-th pixel.
    const int64_t lane_step = (dw_->taps_per_lane * s.dw) % s.sw == 0 ? s.sw : 1;
    // Per thread: rows of output, strip by strip; per strip a ring of lane
    // rows (kh rows of the strip's lane pixels), reused down the rows.
    const DepthwiseStrips st = StripsFor(s, pitch);
    const int64_t slots = std::min<int64_t>(pool->num_threads(), s.n * oh_n);
    pool->ParallelFor(slots, [&](int64_t s0, int64_t s1) {
      for (int64_t slot = s0; slot < s1; ++slot) {
        char* mine = cursor + slot * DepthwiseSlotBytes(s, pitch);
        int32_t* ring_rows = reinterpret_cast<int32_t*>(mine);
        mine += RoundUp(st.ring * st.lane_w * pitch * 4, 64);
        uint8_t* padded = reinterpret_cast<uint8_t*>(mine);
        mine += RoundUp((st.lane_w + 3 * s.dw) * c, 64);
        int32_t* acc = reinterpret_cast<int32_t*>(mine);
        int32_t* window_sums = acc + RoundUp(st.out_w * c * 4, 64) / 4;
        int32_t* row_offset = window_sums + RoundUp(st.out_w * c * 4, 64) / 4;
        int32_t* row_offset_lanes = row_offset + RoundUp(c * 4, 64) / 4;
        const int64_t lanes = DepthwiseLanesPerRow(s, dw_->taps_per_lane);
        std::vector<int64_t> held(st.ring);  // padded-image row held by each ring slot
        const int32_t* rows[65];  // kh + 1 for two output rows
        for (int64_t ox0 = 0; ox0 < ow_n; ox0 += st.out_w) {
          // The strip as a convolution of its own: lane pixels from px0 of
          // the padded row, no padding, its columns of output.
          ConvS8Shape ss = s;
          const int64_t px0 = ox0 * s.sw, strip_ow = std::min(st.out_w, ow_n - ox0);
          ss.w = (strip_ow - 1) * s.sw + s.dw * (s.kw - 1) + 1;
          ss.pad_l = ss.pad_r = 0;
          const int64_t seg = ss.w + 3 * s.dw;  // padded pixels the lane rows read
          // The input columns of the segment and the padding around them.
          const int64_t in0 = std::clamp<int64_t>(px0 - s.pad_l, 0, s.w);
          const int64_t in1 = std::clamp<int64_t>(px0 + seg - s.pad_l, 0, s.w);
          int64_t held_image = -1;
          const int64_t task1 = s.n * oh_n * (slot + 1) / slots;
          for (int64_t task = s.n * oh_n * slot / slots; task < task1; ++task) {
            const int64_t img = task / oh_n, oh = task % oh_n;
            if (img != held_image) {
              std::fill(held.begin(), held.end(), -1);
              held_image = img;
            }
            // Kernel rows over the top or bottom padding add (zx - zx) * w = 0:
            // without weight zero points they are left out (short images,
            // such as 3 rows under a 5x5 kernel, were mostly padding), and
            // the row's offset counts only the weights of the rows kept.
            int64_t ky0 = 0, ky1 = s.kh;
            if (w_zero_points == nullptr) {
              const int64_t top = oh * s.sh - s.pad_t;  // input row of ky = 0
              while (ky0 < s.kh && top + ky0 * s.dh < 0) ++ky0;
              while (ky1 > ky0 && top + (ky1 - 1) * s.dh >= s.h) --ky1;
            }
            GemmS8Output ro = o, ro_lanes = o;  // the latter for the requantizing row
            ro_lanes.col_offset = offset_lanes;
            ro_lanes.scale = scale_lanes;
            ConvS8Shape rs = ss;
            const int32_t* w_rows = dw_lanes_.data();
            if (ky0 > 0 || ky1 < s.kh) {
              // bias - zx * (weights of the rows kept), wrapping as the sums do.
              const int32_t* sum0 = dw_wsum_rows_.data() + ky0 * pitch;
              const int32_t* sum1 = dw_wsum_rows_.data() + ky1 * pitch;
              for (int64_t l = 0; l < pitch; ++l) {
                row_offset_lanes[l] = static_cast<int32_t>(static_cast<uint32_t>(bias_lanes[l]) -
                                                           static_cast<uint32_t>(zx) *
                                                               static_cast<uint32_t>(sum1[l] - sum0[l]));
              }
              ro_lanes.col_offset = row_offset_lanes;
              if (!requant_row) {
                for (int64_t ch = 0; ch < c; ++ch) row_offset[ch] = row_offset_lanes[dw_lane_of_[ch]];
                ro.col_offset = row_offset;
              }
              rs.kh = ky1 - ky0;
              w_rows += ky0 * lanes * pitch;
            }
            // Rows oh and oh + 1 at once where both keep every kernel row.
            const bool pair = requant_row && dw_->row_pair_requant != nullptr && s.sh == 1 && s.dh == 1 &&
                              ky0 == 0 && ky1 == s.kh && task + 1 < task1 && oh + 1 < oh_n &&
                              oh + s.kh - s.pad_t < s.h;
            for (int64_t ky = ky0; ky < ky1 + (pair ? 1 : 0); ++ky) {
              const int64_t r = oh * s.sh + ky * s.dh;  // row of the padded image
              int32_t* dst = ring_rows + (r % st.ring) * st.lane_w * pitch;
              if (held[r % st.ring] != r) {
                const int64_t iy = r - s.pad_t;
                if (iy >= 0 && iy < s.h && in1 > in0) {
                  const int64_t lead = in0 + s.pad_l - px0;  // padding pixels before the input
                  std::memset(padded, zx, lead * c);
                  std::memcpy(padded + lead * c, x + ((img * s.h + iy) * s.w + in0) * c, (in1 - in0) * c);
                  std::memset(padded + (lead + in1 - in0) * c, zx, (seg - lead - (in1 - in0)) * c);
                } else {
                  std::memset(padded, zx, seg * c);
                }
                dw_->lane_row(padded, (ss.w + lane_step - 1) / lane_step, c, lane_step, s.dw * c, dst);
                held[r % st.ring] = r;
              }
              rows[ky - ky0] = dst;
            }
            char* y_row = static_cast<char*>(y) + ((img * oh_n + oh) * ow_n + ox0) * c * esize;
            if (pair && dw_->row_pair_requant(rs, rows, w_rows, ro_lanes, y_row, y_row + ow_n * c * esize)) {
              ++task;
              continue;
            }
            if (requant_row) {
              dw_->row_requant(rs, rows, w_rows, ro_lanes, y_row);
              continue;
            }
            dw_->row(rs, rows, w_rows, acc);
            if (w_zero_points != nullptr) {
              dw_->row(ss, rows, dw_ones_.data(), window_sums);
              for (int64_t ow = 0; ow < strip_ow; ++ow) {
                for (int64_t ch = 0; ch < c; ++ch) {
                  // Wrapping, as the vector sums wrap.
                  acc[ow * c + ch] = static_cast<int32_t>(static_cast<uint32_t>(acc[ow * c + ch]) -
                                                          static_cast<uint32_t>(w_zero_points[ch]) *
                                                              static_cast<uint32_t>(window_sums[ow * c + ch]));
                }
              }
            }
            uk_->epilogue(acc, c, strip_ow, c, ro, y_row, c);
          }
        }
      }
    });
    return;
  }
  const int64_t m = s.n * oh_n * ow_n, k = taps * s.cin;
  const bool in_place = s.kh == 1 && s.kw == 1 && s.sh == 1 && s.sw == 1 && s.pad_t == 0 && s.pad_l == 0 &&
                      s.pad_b == 0 && s.pad_r == 0;
  if (!in_place && w_zero_points == nullptr && direct_uk_ != nullptr) {
    return RunDirect(s, x, zx, bias, out, y, scratch, pool);
  }
  // Otherwise the im2col rows of each A panel are built as the GEMM reaches
  // it, into its (cache-resident) panel buffer: no M x K copy in memory.
  auto im2col = [&](int64_t row0, int64_t rows, uint8_t* dst, int64_t kp) {
    // The first row's position by division, the next ones by stepping.
    int64_t img = row0 / (oh_n * ow_n), oh = row0 / ow_n % oh_n, ow = row0 % ow_n;
    const int64_t row_bytes = s.kw * s.cin;
    for (int64_t p = row0; p < row0 + rows; ++p, dst += kp) {
      for (int64_t ky = 0; ky < s.kh; ++ky) {
        const int64_t iy = oh * s.sh - s.pad_t + ky * s.dh, ix0 = ow * s.sw - s.pad_l;
        uint8_t* row = dst + ky * row_bytes;
        if (iy < 0 || iy >= s.h) {
          std::memset(row, zx, row_bytes);
          continue;
        }
        const uint8_t* src = x + ((img * s.h + iy) * s.w) * s.cin;
        if (s.dw == 1 && ix0 >= 0 && ix0 + s.kw <= s.w) {  // the kernel row lies inside: one copy (NHWC)
          CopyBytes(row, src + ix0 * s.cin, row_bytes);
          continue;
        }
        for (int64_t kx = 0; kx < s.kw; ++kx) {
          const int64_t ix = ix0 + kx * s.dw;
          if (ix < 0 || ix >= s.w) {
            std::memset(row + kx * s.cin, zx, s.cin);
          } else {
            CopyBytes(row + kx * s.cin, src + ix * s.cin, s.cin);
          }
        }
      }
      if (++ow == ow_n) {
        ow = 0;
        if (++oh == oh_n) {
          oh = 0;
          ++img;
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
