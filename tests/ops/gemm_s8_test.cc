// INT8 GEMM microkernels and epilogues (every KVANT_GEMM_S8_UKERNEL row of
// ops/cpu/kernels.inc the machine has) against plain loops over the unpacked
// operands: sizes around the mr/nr tiles, K not a multiple of 4, A zero
// points 0/128/255, per-column B zero points, saturating operands (255 x
// -128 in every product), s32 / f32 / u8 / s8 outputs with per-tensor and
// per-channel scales, float and fixed-point requantization, clamps, 1 and 2
// threads. Integer results must match exactly; float requantization within
// 1 LSB (in practice exact). Operands live in guard-page buffers.
#include <cmath>
#include <cstring>
#include <random>
#include <vector>

#include "gtest/gtest.h"
#include "ops/cpu/activation_f32.h"
#include "ops/cpu/gemm_s8.h"
#include "runtime/cpu_caps.h"
#include "runtime/thread_pool.h"
#include "tests/testing/guarded_buffer.h"

namespace kvant::cpu {
namespace {

using testing::GuardedBuffer;
using Kind = GemmS8Output::Kind;

class GemmS8Tester {
 public:
  GemmS8Tester& M(int64_t v) { m_ = v; return *this; }
  GemmS8Tester& N(int64_t v) { n_ = v; return *this; }
  GemmS8Tester& K(int64_t v) { k_ = v; return *this; }
  GemmS8Tester& Za(int32_t v) { za_ = v; return *this; }
  GemmS8Tester& ColumnZeroPoints(bool v) { zb_ = v; return *this; }
  GemmS8Tester& Bias(bool v) { bias_ = v; return *this; }
  GemmS8Tester& Output(Kind v) { kind_ = v; return *this; }
  GemmS8Tester& PerChannel(bool v) { per_channel_ = v; return *this; }
  GemmS8Tester& FixedPoint(bool v) { fixed_ = v; return *this; }
  GemmS8Tester& Clamp(int32_t lo, int32_t hi) { lo_ = lo; hi_ = hi; clamp_ = true; return *this; }
  GemmS8Tester& Saturating(bool v) { saturating_ = v; return *this; }
  // Float requantization: scales this much larger (1e9: products past the int32 range).
  GemmS8Tester& ScaleMult(float v) { scale_mult_ = v; return *this; }
  GemmS8Tester& Lda(int64_t extra) { lda_extra_ = extra; return *this; }
  GemmS8Tester& ImplicitA(bool v) { implicit_a_ = v; return *this; }
  GemmS8Tester& Threads(int v) { threads_ = v; return *this; }
  // f32 output: an activation after the bias (dynamic quantization's fused Relu, Gelu...).
  GemmS8Tester& Act(ActivationF32 v) { act_ = v; return *this; }
  GemmS8Tester& Seed(uint64_t v) { seed_ = v; return *this; }

  void Test(const GemmUkernelInfoS8& uk) const {
    std::mt19937_64 rng(seed_);
    const int64_t lda = k_ + lda_extra_;
    GuardedBuffer<uint8_t> a(std::max<int64_t>(1, m_ * lda));
    GuardedBuffer<int8_t> b(std::max<int64_t>(1, k_ * n_));
    for (int64_t i = 0; i < m_ * lda; ++i) a[i] = saturating_ ? 255 : static_cast<uint8_t>(rng());
    for (int64_t i = 0; i < k_ * n_; ++i) b[i] = saturating_ ? -128 : static_cast<int8_t>(rng());
    std::vector<int32_t> zb(n_, 0), bias(n_, 0), m0(n_), shift(n_);
    std::vector<float> scale(n_), bias_f(n_);
    std::uniform_real_distribution<float> unit(0.f, 1.f);
    for (int64_t j = 0; j < n_; ++j) {
      if (zb_) zb[j] = static_cast<int32_t>(rng() % 21) - 10;
      if (bias_) bias[j] = static_cast<int32_t>(rng() % 200001) - 100000;
      // Scales so that outputs spread over the 8-bit range (and past it).
      const float base = 1.f / (std::sqrt(static_cast<float>(std::max<int64_t>(k_, 1))) * 4000.f);
      scale[j] = per_channel_ || j == 0 ? scale_mult_ * base * (0.25f + 2.f * unit(rng)) : scale[0];
      QuantizeMultiplier(scale[j], &m0[j], &shift[j]);
      bias_f[j] = unit(rng) - 0.5f;
    }
    GemmS8Output out;
    out.kind = kind_;
    out.scale = scale.data();
    out.bias_f32 = kind_ == Kind::kF32 && bias_ ? bias_f.data() : nullptr;
    if (!act_.identity()) out.act = &act_;
    if (fixed_) {
      out.m0 = m0.data();
      out.shift = shift.data();
    }
    out.zero_point = kind_ == Kind::kU8 ? 117 : -9;
    out.lo = clamp_ ? lo_ : kind_ == Kind::kU8 ? 0 : -128;
    out.hi = clamp_ ? hi_ : kind_ == Kind::kU8 ? 255 : 127;

    // Reference: plain loops over the unpacked operands, int64 then wrapped.
    std::vector<double> want(m_ * n_);
    for (int64_t i = 0; i < m_; ++i) {
      for (int64_t j = 0; j < n_; ++j) {
        int64_t acc = bias[j];
        for (int64_t kk = 0; kk < k_; ++kk) acc += (int64_t{a[i * lda + kk]} - za_) * (int64_t{b[kk * n_ + j]} - zb[j]);
        const int32_t v = static_cast<int32_t>(acc);
        double y = v;
        if (kind_ == Kind::kF32) {
          y = act_.Apply(static_cast<float>(v) * scale[j] + (out.bias_f32 ? bias_f[j] : 0.f));
        } else if (kind_ != Kind::kS32) {
          const int32_t q = fixed_ ? RequantizeFixedPoint(v, m0[j], shift[j]) : RequantizeFloat(v, scale[j]);
          y = std::clamp<int64_t>(int64_t{q} + out.zero_point, out.lo, out.hi);
        }
        want[i * n_ + j] = y;
      }
    }

    const size_t esize = kind_ == Kind::kS32 || kind_ == Kind::kF32 ? 4 : 1;
    GuardedBuffer<char> c(std::max<int64_t>(1, m_ * n_ * esize));
    for (int64_t i = 0; i < m_ * n_ * static_cast<int64_t>(esize); ++i) c[i] = static_cast<char>(0xA5);  // poison
    const PackedBS8 packed = PackBS8(uk, k_, n_, b.data(), n_, 1);
    GemmArgsS8 args;
    args.m = m_;
    args.a = a.data();
    args.lda = lda;
    args.b = &packed;
    args.a_zero_point = za_;
    args.b_zero_points = zb_ ? zb.data() : nullptr;
    args.bias = bias_ ? bias.data() : nullptr;
    args.out = out;
    args.c = c.data();
    args.ldc = n_;
    // An implicit A: the driver asks for each panel's rows.
    auto rows = [&](int64_t row0, int64_t count, uint8_t* dst, int64_t kp) {
      for (int64_t r = 0; r < count; ++r) std::memcpy(dst + r * kp, a.data() + (row0 + r) * lda, k_);
    };
    const GemmRowsS8 rows_fn(rows);
    if (implicit_a_) args.a_rows = &rows_fn;
    ThreadPool pool(threads_);
    std::vector<char> scratch(GemmScratchBytesS8(uk, m_, n_, k_, threads_));
    RunGemmS8(uk, args, scratch.data(), &pool);

    int bad = 0;
    for (int64_t i = 0; i < m_ * n_ && bad < 5; ++i) {
      double got;
      switch (kind_) {
        case Kind::kS32: got = reinterpret_cast<const int32_t*>(c.data())[i]; break;
        case Kind::kF32: got = reinterpret_cast<const float*>(c.data())[i]; break;
        case Kind::kU8: got = reinterpret_cast<const uint8_t*>(c.data())[i]; break;
        default: got = reinterpret_cast<const int8_t*>(c.data())[i]; break;
      }
      const double tol = kind_ == Kind::kS32 || fixed_ ? 0 : kind_ == Kind::kF32 ? 1e-6 * std::abs(want[i]) + 1e-6 : 1;
      if (!(std::abs(got - want[i]) <= tol)) {
        ++bad;
        ADD_FAILURE() << uk.name << " M=" << m_ << " N=" << n_ << " K=" << k_ << " za=" << za_ << " at (" << i / n_
                      << "," << i % n_ << "): got " << got << ", want " << want[i];
      }
    }
  }

 private:
  int64_t m_ = 1, n_ = 1, k_ = 1, lda_extra_ = 0;
  int32_t za_ = 0, lo_ = 0, hi_ = 255;
  bool zb_ = false, bias_ = false, per_channel_ = true, fixed_ = false, clamp_ = false, saturating_ = false,
       implicit_a_ = false;
  Kind kind_ = Kind::kS32;
  int threads_ = 1;
  float scale_mult_ = 1.f;
  uint64_t seed_ = 1;
  ActivationF32 act_;
};

class GemmS8UkernelTest : public ::testing::TestWithParam<int> {
 protected:
  const GemmUkernelInfoS8& uk() const { return GemmUkernelsS8()[GetParam()]; }
  void SetUp() override {
    if ((uk().needs & ActiveCpuFeatures()) != uk().needs) GTEST_SKIP() << uk().name << " needs features this CPU lacks";
  }
};

TEST_P(GemmS8UkernelTest, SizesAroundTilesInt32) {
  const int64_t mr = uk().mr, nr = uk().nr;
  uint64_t seed = 1;
  // 2: the AMX row's smallest; 16, 17, mr + 16: its 16-row kernel's edges.
  for (int64_t m : {int64_t{1}, int64_t{2}, int64_t{9}, int64_t{16}, int64_t{17}, mr - 1, mr, mr + 1, mr + 16,
                    2 * mr + 3}) {
    for (int64_t n : {int64_t{1}, nr / 2, nr / 2 + 1, nr - 1, nr, nr + 1, 3 * nr + 5}) {  // nr / 2: half_cols' edge
      for (int64_t k : {1, 3, 4, 5, 17, 64, 259}) {
        for (int32_t za : {0, 128, 255}) {
          GemmS8Tester().M(m).N(n).K(k).Za(za).Bias(seed % 2 == 0).Seed(seed++).Test(uk());
        }
      }
    }
  }
}

TEST_P(GemmS8UkernelTest, ZeroPointsLayoutsAndSaturation) {
  uint64_t seed = 100;
  for (int32_t za : {0, 128, 255}) {
    GemmS8Tester().M(23).N(45).K(130).Za(za).ColumnZeroPoints(true).Bias(true).Seed(seed++).Test(uk());
    GemmS8Tester().M(31).N(70).K(96).Za(za).Lda(7).Seed(seed++).Test(uk());   // strided A, in place
    GemmS8Tester().M(9).N(33).K(99).Za(za).Lda(5).Seed(seed++).Test(uk());    // strided A, packed
    // Every product 255 x -128: the pairs that saturate VPMADDUBSW.
    GemmS8Tester().M(17).N(40).K(1000).Za(za).Saturating(true).Seed(seed++).Test(uk());
  }
  GemmS8Tester().M(5).N(9).K(0).Za(3).Bias(true).Seed(seed++).Test(uk());
  // Implicit A (the convolution's im2col), with and without column zero points, 2 threads split along N.
  for (bool zb : {false, true}) {
    GemmS8Tester().M(45).N(70).K(75).Za(128).ColumnZeroPoints(zb).ImplicitA(true).Seed(seed++).Test(uk());
    GemmS8Tester().M(3).N(200).K(64).Za(7).ColumnZeroPoints(zb).ImplicitA(true).Threads(2).Seed(seed++).Test(uk());
  }
}

TEST_P(GemmS8UkernelTest, Requantization) {
  uint64_t seed = 200;
  for (Kind kind : {Kind::kF32, Kind::kU8, Kind::kS8}) {
    for (bool per_channel : {false, true}) {
      for (bool fixed : {false, true}) {
        if (kind == Kind::kF32 && fixed) continue;
        for (int32_t za : {0, 128, 255}) {
          GemmS8Tester t;
          t.M(29).N(70).K(301).Za(za).Output(kind).PerChannel(per_channel).FixedPoint(fixed).Bias(true);
          t.Seed(seed++).Test(uk());
          t.ColumnZeroPoints(true).M(uk().mr + 1).N(uk().nr - 3).K(18).Seed(seed++).Test(uk());
        }
      }
    }
    if (kind == Kind::kF32) {
      // Activations after the bias, with a post scale: every fused kind.
      using K = ActivationF32::Kind;
      for (auto act : {K::kRelu, K::kClip, K::kLeakyRelu, K::kHardSigmoid, K::kHardSwish, K::kGelu}) {
        ActivationF32 a;
        a.kind = act;
        a.lo = -0.25f;
        a.hi = 0.5f;
        a.alpha = 0.2f;
        a.beta = 0.5f;
        a.post_scale = act == K::kGelu ? -1.5f : 1.f;
        a.post_shift = act == K::kGelu ? 0.25f : 0.f;
        GemmS8Tester().M(uk().mr + 3).N(2 * uk().nr + 5).K(77).Za(128).Output(kind).Bias(true).Act(a)
            .Seed(seed++).Test(uk());
      }
    } else {
      // ReLU and ReLU6-style clamps in the quantized domain.
      GemmS8Tester().M(40).N(37).K(64).Output(kind).Clamp(kind == Kind::kU8 ? 117 : -9, kind == Kind::kU8 ? 200 : 60)
          .Seed(seed++).Test(uk());
      // Outputs saturating both ways, most beyond the int32 range before rounding.
      for (float mult : {40.f, 1e9f}) {
        GemmS8Tester().M(uk().mr + 3).N(70).K(64).Za(128).Output(kind).PerChannel(true).ScaleMult(mult).Bias(true)
            .Seed(seed++).Test(uk());
      }
    }
  }
}

// At most 8 columns with u8/s8 outputs: rows in lanes on AVX-512 VNNI
// machines (the microkernel elsewhere, and for K not a multiple of 4 or
// weight zero points): 1 to 8 columns, 1 and 2 rows (a squeeze-excitation
// 1x1 convolution over a pooled pixel) and row counts around the 16-row blocks,
// zero points 0/128/255, per-column scales, clamps, saturation, two threads.
TEST_P(GemmS8UkernelTest, NarrowOutputs) {
  uint64_t seed = 400;
  for (int64_t n = 1; n <= 8; ++n) {
    for (int64_t m : {1, 2, 15, 16, 17, 33, 300}) {
      for (int32_t za : {0, 128, 255}) {
        const Kind kind = (m + n) % 2 ? Kind::kU8 : Kind::kS8;
        GemmS8Tester().M(m).N(n).K(24).Za(za).Output(kind).Bias(true).Seed(seed++).Test(uk());
      }
    }
    GemmS8Tester().M(70).N(n).K(96).Output(Kind::kU8).Clamp(30, 200).Lda(5).Seed(seed++).Test(uk());
    GemmS8Tester().M(70).N(n).K(64).Za(128).Output(Kind::kS8).ScaleMult(1e9f).Seed(seed++).Test(uk());
    GemmS8Tester().M(37).N(n).K(27).Output(Kind::kU8).Seed(seed++).Test(uk());                   // K % 4 != 0
    GemmS8Tester().M(37).N(n).K(32).Output(Kind::kU8).ColumnZeroPoints(true).Seed(seed++).Test(uk());
    GemmS8Tester().M(600).N(n).K(48).Za(3).Output(Kind::kU8).PerChannel(false).Threads(2).Seed(seed++).Test(uk());
  }
}

TEST_P(GemmS8UkernelTest, Threads) {
  uint64_t seed = 300;
  for (int64_t m : {1, 7, 300}) {
    for (int64_t n : {5, 64, 513}) {
      GemmS8Tester().M(m).N(n).K(300).Za(128).Output(Kind::kU8).Threads(2).Seed(seed++).Test(uk());
    }
  }
}

INSTANTIATE_TEST_SUITE_P(AllRows, GemmS8UkernelTest, ::testing::Range(0, static_cast<int>(GemmUkernelsS8().size())),
                         [](const ::testing::TestParamInfo<int>& info) {
                           return std::string(GemmUkernelsS8()[info.param].name);
                         });

// The gemmlowp fixed-point path against real arithmetic: within 1 of
// round(v * scale) for multipliers across the (0, 1) range.
TEST(GemmS8Requantize, FixedPointTracksRealScale) {
  std::mt19937_64 rng(7);
  for (int i = 0; i < 100000; ++i) {
    const double scale = std::ldexp(0.5 + 0.5 * (rng() % 1000000) / 1e6, -static_cast<int>(rng() % 30) - 1);
    int32_t m0, shift;
    QuantizeMultiplier(scale, &m0, &shift);
    const int32_t v = static_cast<int32_t>(rng());
    const double want = std::nearbyint(v * scale);
    EXPECT_LE(std::abs(RequantizeFixedPoint(v, m0, shift) - want), 1.0) << "v=" << v << " scale=" << scale;
  }
}

}  // namespace
}  // namespace kvant::cpu
