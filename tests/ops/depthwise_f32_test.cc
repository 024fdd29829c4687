// FP32 NHWC depthwise rows (the kernels kvant.ConvNhwc runs) against a plain
// loop in double: the AVX-512 kernel's sliding-window rows (kernels 3, 5 and
// 7 wide, strides 1 and 2, every group width 4/8/12/16 through row widths
// 1..40, edge groups, rows of non-square kernels, row dilation), its
// tap-by-tap rows (other widths, column strides and dilations), and the
// portable loop; channels around the 16-lane vector; symmetric, one-sided
// and wide padding; every fused activation, a post scale, bias or none; rows
// taken in several calls as the thread pool splits them. Input and output
// end at a guard page, outputs are poisoned first.
#include <cmath>
#include <random>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "ops/cpu/depthwise_f32.h"
#include "ops/kernel.h"
#include "runtime/cpu_caps.h"
#include "tests/testing/guarded_buffer.h"

namespace kvant::cpu {
namespace {

using testing::GuardedBuffer;

struct DwCase {
  int64_t h, w, c, kh, kw, sh, sw, dh = 1, dw = 1, pad_t = 0, pad_l = 0, pad_b = 0, pad_r = 0;
  ActivationF32 act;
  bool bias = true;
  int64_t row_chunk = 0;  // rows per call (0: all at once)

  int64_t out_h() const { return (h + pad_t + pad_b - (kh - 1) * dh - 1) / sh + 1; }
  int64_t out_w() const { return (w + pad_l + pad_r - (kw - 1) * dw - 1) / sw + 1; }
  std::string Name() const {
    return std::to_string(h) + "x" + std::to_string(w) + "x" + std::to_string(c) + " k" + std::to_string(kh) + "x" +
           std::to_string(kw) + " s" + std::to_string(sh) + "," + std::to_string(sw) + " d" + std::to_string(dh) +
           "," + std::to_string(dw) + " pad " + std::to_string(pad_t) + "," + std::to_string(pad_l) + "," +
           std::to_string(pad_b) + "," + std::to_string(pad_r) + " act " +
           std::to_string(static_cast<int>(act.kind));
  }
};

using RowsFn = void (*)(const DepthwiseNhwc&, const float*, const float*, const float*, const ActivationF32&,
                        int64_t, int64_t, float*);

void Check(const DwCase& t, RowsFn rows, const char* kernel, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<float> u(-2.f, 2.f);
  const int64_t oh = t.out_h(), ow = t.out_w(), taps = t.kh * t.kw;
  ASSERT_GT(oh, 0);
  ASSERT_GT(ow, 0);
  GuardedBuffer<float> x(t.h * t.w * t.c), y(oh * ow * t.c);
  std::vector<float> w(taps * t.c), bias(t.c);
  for (size_t i = 0; i < x.size(); ++i) x[i] = u(rng);
  for (float& v : w) v = u(rng);
  for (float& v : bias) v = u(rng);
  for (size_t i = 0; i < y.size(); ++i) y[i] = std::nanf("");

  const DepthwiseNhwc d{{t.h, t.w, oh, ow, t.kh, t.kw, t.sh, t.sw, t.dh, t.dw, t.pad_t, t.pad_l}, t.c};
  const int64_t chunk = t.row_chunk > 0 ? t.row_chunk : oh;
  for (int64_t r = 0; r < oh; r += chunk) {
    rows(d, x.data(), w.data(), t.bias ? bias.data() : nullptr, t.act, r, std::min(oh, r + chunk), y.data());
  }

  int bad = 0;
  for (int64_t r = 0; r < oh && bad < 5; ++r) {
    for (int64_t col = 0; col < ow && bad < 5; ++col) {
      for (int64_t ch = 0; ch < t.c && bad < 5; ++ch) {
        double acc = t.bias ? bias[ch] : 0.0, mag = std::abs(acc);
        for (int64_t ky = 0; ky < t.kh; ++ky) {
          for (int64_t kx = 0; kx < t.kw; ++kx) {
            const int64_t iy = r * t.sh - t.pad_t + ky * t.dh, ix = col * t.sw - t.pad_l + kx * t.dw;
            if (iy < 0 || iy >= t.h || ix < 0 || ix >= t.w) continue;
            const double p = double(w[(ky * t.kw + kx) * t.c + ch]) * x[(iy * t.w + ix) * t.c + ch];
            acc += p;
            mag += std::abs(p);
          }
        }
        const double want = t.act.Apply(static_cast<float>(acc));
        const float got = y[(r * ow + col) * t.c + ch];
        // FP32 accumulation in some order: within a few ulps of the sum of
        // magnitudes (activations scale it by at most their slope).
        const double tol = 4e-6 * (mag + 1.0) * std::max(1.f, std::abs(t.act.post_scale));
        if (!(std::abs(got - want) <= tol)) {
          ++bad;
          ADD_FAILURE() << kernel << " " << t.Name() << " at row " << r << " col " << col << " channel " << ch
                        << ": got " << got << ", want " << want;
        }
      }
    }
  }
}

ActivationF32 Act(ActivationF32::Kind kind) {
  ActivationF32 a;
  a.kind = kind;
  if (kind == ActivationF32::Kind::kClip) {
    a.lo = -1.f;
    a.hi = 1.5f;
  }
  if (kind == ActivationF32::Kind::kLeakyRelu) a.alpha = 0.1f;
  if (kind == ActivationF32::Kind::kHardSigmoid) {
    a.alpha = 0.2f;
    a.beta = 0.5f;
  }
  return a;
}

std::vector<std::pair<RowsFn, const char*>> Kernels() {
  std::vector<std::pair<RowsFn, const char*>> k = {{DepthwiseNhwcRowsF32, "depthwise_nhwc_f32"}};
  if ((ActiveCpuFeatures() & kIsaAvx512) == kIsaAvx512) {
    k.push_back({avx512::DepthwiseNhwcRowsF32, "depthwise_nhwc_f32_avx512"});
  }
  return k;
}

TEST(DepthwiseNhwcF32, SlidingWindowRows) {
  uint64_t seed = 1;
  for (const auto& [rows, name] : Kernels()) {
    for (int64_t k : {3, 5, 7}) {
      for (int64_t s : {1, 2}) {
        // Row widths that end on every group width and between them.
        for (int64_t w : {1, 2, 3, 4, 5, 7, 8, 9, 12, 13, 16, 17, 21, 28, 33, 40}) {
          const int64_t c = w % 3 == 0 ? 17 : w % 3 == 1 ? 16 : 5;
          DwCase t{5, w, c, k, k, s, s};
          t.pad_t = t.pad_b = t.pad_l = t.pad_r = k / 2;
          Check(t, rows, name, seed++);
        }
      }
    }
  }
}

TEST(DepthwiseNhwcF32, PaddingChannelsAndRowSplits) {
  uint64_t seed = 100;
  for (const auto& [rows, name] : Kernels()) {
    for (int64_t c : {1, 15, 16, 17, 40, 64}) {
      DwCase t{9, 30, c, 3, 3, 1, 1};
      t.pad_t = t.pad_l = t.pad_b = t.pad_r = 1;
      t.row_chunk = 2;
      Check(t, rows, name, seed++);
      DwCase u{11, 23, c, 5, 5, 2, 2};  // SAME_UPPER-style: no padding before, one after
      u.pad_b = u.pad_r = 1;
      u.row_chunk = 3;
      Check(u, rows, name, seed++);
    }
    DwCase wide{6, 12, 24, 3, 3, 1, 1};  // padding wider than the kernel's reach
    wide.pad_t = wide.pad_b = 2;
    wide.pad_l = 4;
    wide.pad_r = 3;
    Check(wide, rows, name, seed++);
    DwCase none{7, 26, 20, 5, 5, 1, 1};  // no padding (a staged copy): every group unchecked
    Check(none, rows, name, seed++);
    DwCase rect{8, 19, 33, 3, 5, 2, 1};  // 3x5 kernel, row stride 2, column stride 1
    rect.pad_t = rect.pad_b = 1;
    rect.pad_l = rect.pad_r = 2;
    rect.dh = 2;
    Check(rect, rows, name, seed++);
  }
}

TEST(DepthwiseNhwcF32, TapByTapRows) {
  uint64_t seed = 200;
  for (const auto& [rows, name] : Kernels()) {
    for (int64_t c : {7, 16, 33}) {
      DwCase dil{12, 20, c, 3, 3, 1, 1, 2, 2, 2, 2, 2, 2};  // column dilation
      Check(dil, rows, name, seed++);
      DwCase s3{13, 25, c, 3, 3, 3, 3, 1, 1, 1, 1, 1, 1};  // stride 3
      Check(s3, rows, name, seed++);
      DwCase even{6, 9, c, 2, 4, 1, 1, 1, 1, 0, 1, 1, 2};  // even widths
      Check(even, rows, name, seed++);
      DwCase one{4, 11, c, 1, 1, 1, 1};  // 1x1
      Check(one, rows, name, seed++);
    }
  }
}

TEST(DepthwiseNhwcF32, FusedActivations) {
  uint64_t seed = 300;
  using K = ActivationF32::Kind;
  for (const auto& [rows, name] : Kernels()) {
    for (K kind : {K::kNone, K::kRelu, K::kClip, K::kLeakyRelu, K::kHardSigmoid, K::kHardSwish, K::kGelu}) {
      for (bool bias : {true, false}) {
        DwCase t{6, 19, 20, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1, Act(kind), bias};
        Check(t, rows, name, seed++);
        DwCase s{5, 11, 20, 3, 3, 1, 2, 2, 2, 2, 2, 2, 2, Act(kind), bias};  // tap-by-tap rows
        Check(s, rows, name, seed++);
      }
    }
    DwCase scaled{6, 19, 20, 5, 5, 1, 1, 1, 1, 2, 2, 2, 2, Act(K::kRelu)};
    scaled.act.post_scale = -0.5f;
    scaled.act.post_shift = 0.25f;
    Check(scaled, rows, name, seed++);
  }
}

}  // namespace
}  // namespace kvant::cpu
