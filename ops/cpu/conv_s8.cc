// INT8 convolution (NHWC): weight preparation, im2col + INT8 GEMM for
// group 1, the depthwise driver, and the reference depthwise row.
#include "ops/cpu/conv_s8.h"

#include <algorithm>
#include <cstring>

#include "absl/strings/str_format.h"

namespace kvant::cpu {
namespace {

int64_t RoundUp(int64_t v, int64_t m) { return (v + m - 1) / m * m; }

int64_t Pairs(const ConvS8Shape& s) { return (s.kh * s.kw + 1) / 2; }

// Tap t of output column ow in the padded input row block starting at oh.
inline const uint8_t* Tap(const ConvS8Shape& s, const uint8_t* x, int64_t row, int64_t oh, int64_t ow, int64_t t) {
  const int64_t ky = t / s.kw, kx = t % s.kw;
  return x + (oh * s.sh + ky * s.dh) * row + (ow * s.sw + kx * s.dw) * s.cin;
}

}  // namespace

namespace ref {

void DepthwiseRowS8(const ConvS8Shape& s, const uint8_t* x, int64_t oh, const int32_t* w_pairs, int32_t* acc) {
  const int64_t c = s.cin, taps = s.kh * s.kw, row = (s.w + s.pad_l + s.pad_r) * c;
  for (int64_t ow = 0; ow < s.out_w(); ++ow) {
    for (int64_t ch = 0; ch < c; ++ch) {
      int32_t sum = 0;
      for (int64_t t = 0; t < taps; ++t) {
        const int32_t pair = w_pairs[(t / 2) * c + ch];
        const int32_t w = t % 2 == 0 ? static_cast<int16_t>(pair & 0xffff) : pair >> 16;
        sum += int32_t{Tap(s, x, row, oh, ow, t)[ch]} * w;
      }
      acc[ow * c + ch] = sum;
    }
  }
}

}  // namespace ref

absl::StatusOr<std::unique_ptr<ConvS8>> ConvS8::Create(const ConvS8Shape& s, const int8_t* weights,
                                                       CpuFeatures features) {
  if (s.out_h() <= 0 || s.out_w() <= 0) {
    return absl::InvalidArgumentError(absl::StrFormat("INT8 convolution: output must be non-empty, got %dx%d",
                                                      s.out_h(), s.out_w()));
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
    const int64_t c = s.cin, pairs = Pairs(s);
    conv->dw_pairs_.assign(pairs * c, 0);
    conv->dw_wsum_.assign(c, 0);
    for (int64_t ch = 0; ch < c; ++ch) {
      for (int64_t t = 0; t < taps; ++t) {
        const int32_t w = weights[ch * taps + t];
        conv->dw_wsum_[ch] += w;
        int32_t& pair = conv->dw_pairs_[(t / 2) * c + ch];
        pair = t % 2 == 0 ? static_cast<int32_t>((pair & ~0xffff) | (w & 0xffff))
                          : static_cast<int32_t>((pair & 0xffff) | static_cast<int32_t>(static_cast<uint32_t>(w) << 16));
      }
    }
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
  return conv;
}

size_t ConvS8::ScratchBytes(int threads) const {
  const ConvS8Shape& s = shape_;
  const int64_t oh = s.out_h(), ow = s.out_w();
  if (s.depthwise) {
    const int64_t padded = (s.h + s.pad_t + s.pad_b) * (s.w + s.pad_l + s.pad_r) * s.cin;
    return RoundUp(padded, 64) + RoundUp(s.cin * 4, 64) + threads * RoundUp(ow * s.cin * 4, 64) + 64;
  }
  const int64_t m = s.n * oh * ow, k = s.kh * s.kw * s.cin;
  return RoundUp(m * k, 64) + GemmScratchBytesS8(*uk_, m, s.cout, k, threads) + 64;
}

void ConvS8::Run(const uint8_t* x, int32_t zx, const int32_t* bias, const GemmS8Output& out, void* y, void* scratch,
                 ParallelRunner* pool) const {
  InlineRunner inline_runner;
  if (pool == nullptr) pool = &inline_runner;
  const ConvS8Shape& s = shape_;
  const int64_t oh_n = s.out_h(), ow_n = s.out_w(), taps = s.kh * s.kw;
  const size_t esize = out.kind == GemmS8Output::Kind::kS32 || out.kind == GemmS8Output::Kind::kF32 ? 4 : 1;
  char* cursor = static_cast<char*>(scratch);
  if (s.depthwise) {
    const int64_t c = s.cin, hp = s.h + s.pad_t + s.pad_b, wp = s.w + s.pad_l + s.pad_r;
    uint8_t* xp = reinterpret_cast<uint8_t*>(cursor);
    cursor += RoundUp(hp * wp * c, 64);
    int32_t* offset = reinterpret_cast<int32_t*>(cursor);
    cursor += RoundUp(c * 4, 64);
    for (int64_t ch = 0; ch < c; ++ch) offset[ch] = (bias ? bias[ch] : 0) - zx * dw_wsum_[ch];
    GemmS8Output o = out;
    o.col_offset = offset;
    o.row_sum = nullptr;
    o.col_zb = nullptr;
    int32_t* accs = reinterpret_cast<int32_t*>(cursor);
    const int64_t acc_ints = RoundUp(ow_n * c * 4, 64) / 4;
    for (int64_t img = 0; img < s.n; ++img) {
      // The image with a border of zx (which the weight sums cancel).
      const uint8_t* xi = x + img * s.h * s.w * c;
      std::memset(xp, zx, hp * wp * c);
      for (int64_t iy = 0; iy < s.h; ++iy) {
        std::memcpy(xp + ((iy + s.pad_t) * wp + s.pad_l) * c, xi + iy * s.w * c, s.w * c);
      }
      char* yi = static_cast<char*>(y) + img * oh_n * ow_n * c * esize;
      const int64_t slots = std::min<int64_t>(pool->num_threads(), oh_n);
      pool->ParallelFor(slots, [&](int64_t s0, int64_t s1) {
        for (int64_t slot = s0; slot < s1; ++slot) {
          int32_t* acc = accs + slot * acc_ints;
          for (int64_t oh = oh_n * slot / slots; oh < oh_n * (slot + 1) / slots; ++oh) {
            dw_->row(s, xp, oh, dw_pairs_.data(), acc);
            uk_->epilogue(acc, c, ow_n, c, o, yi + oh * ow_n * c * esize, c);
          }
        }
      });
    }
    return;
  }
  const int64_t m = s.n * oh_n * ow_n, k = taps * s.cin;
  const uint8_t* a = x;
  const bool direct = s.kh == 1 && s.kw == 1 && s.sh == 1 && s.sw == 1 && s.pad_t == 0 && s.pad_l == 0 &&
                      s.pad_b == 0 && s.pad_r == 0;
  if (!direct) {
    uint8_t* col = reinterpret_cast<uint8_t*>(cursor);
    pool->ParallelFor(m, [&](int64_t p0, int64_t p1) {
      for (int64_t p = p0; p < p1; ++p) {
        const int64_t img = p / (oh_n * ow_n), oh = p / ow_n % oh_n, ow = p % ow_n;
        uint8_t* dst = col + p * k;
        for (int64_t t = 0; t < taps; ++t) {
          const int64_t iy = oh * s.sh - s.pad_t + (t / s.kw) * s.dh, ix = ow * s.sw - s.pad_l + (t % s.kw) * s.dw;
          if (iy < 0 || iy >= s.h || ix < 0 || ix >= s.w) {
            std::memset(dst + t * s.cin, zx, s.cin);
          } else {
            std::memcpy(dst + t * s.cin, x + ((img * s.h + iy) * s.w + ix) * s.cin, s.cin);
          }
        }
      }
    });
    a = col;
  }
  cursor += RoundUp(m * k, 64);
  GemmArgsS8 g;
  g.m = m;
  g.a = a;
  g.lda = k;
  g.b = &packed_;
  g.a_zero_point = zx;
  g.bias = bias;
  g.out = out;
  g.c = y;
  g.ldc = s.cout;
  RunGemmS8(*uk_, g, cursor, pool);
}

}  // namespace kvant::cpu
