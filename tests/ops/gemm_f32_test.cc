// FP32 GEMM microkernels (every row of ops/cpu/kernels.inc the machine has)
// against a plain triple loop: sizes around the mr/nr tiles and the K block,
// transposed and strided operands, pre-packed and run-time-packed weights,
// bias per row and per column, a residual tile, fused activations,
// accumulation, 1 and 2 threads; weights stored in FP16 (NarrowToHalf).
// Operands live in guard-page buffers.
#include <cmath>
#include <random>
#include <vector>

#include "gtest/gtest.h"
#include "ops/cpu/gemm_f32.h"
#include "ops/float16.h"
#include "runtime/cpu_caps.h"
#include "runtime/thread_pool.h"
#include "tests/testing/guarded_buffer.h"

namespace kvant::cpu {
namespace {

using testing::GuardedBuffer;

class GemmTester {
 public:
  GemmTester& M(int64_t v) { m_ = v; return *this; }
  GemmTester& N(int64_t v) { n_ = v; return *this; }
  GemmTester& K(int64_t v) { k_ = v; return *this; }
  GemmTester& TransA(bool v) { ta_ = v; return *this; }
  GemmTester& TransB(bool v) { tb_ = v; return *this; }
  GemmTester& PackB(bool v) { pack_b_ = v; return *this; }
  // B rounded to FP16 values (the reference uses them) and packed as FP16.
  GemmTester& HalfB(bool v) { half_b_ = v; return *this; }
  GemmTester& Alpha(float v) { alpha_ = v; return *this; }
  GemmTester& RowBias(bool v) { row_bias_ = v; return *this; }
  GemmTester& ColBias(bool v) { col_bias_ = v; return *this; }
  GemmTester& Accumulate(bool v) { accumulate_ = v; return *this; }
  GemmTester& Residual(bool v) { residual_ = v; return *this; }
  GemmTester& Act(ActivationF32::Kind k) {
    act_.kind = k;
    act_.lo = -0.5f;
    act_.hi = 0.75f;
    act_.alpha = k == ActivationF32::Kind::kHardSigmoid ? 0.3f : 0.1f;
    act_.beta = 0.4f;
    return *this;
  }
  GemmTester& PostAffine(float scale, float shift) { act_.post_scale = scale; act_.post_shift = shift; return *this; }
  GemmTester& Threads(int v) { threads_ = v; return *this; }
  GemmTester& Seed(uint64_t v) { seed_ = v; return *this; }

  void Test(const GemmUkernelInfoF32& uk) const {
    std::mt19937_64 rng(seed_);
    std::uniform_real_distribution<float> u(-1.f, 1.f);
    GuardedBuffer<float> a(std::max<int64_t>(1, m_ * k_)), b(std::max<int64_t>(1, k_ * n_)),
        c(std::max<int64_t>(1, m_ * n_));
    std::vector<float> rb(m_), cb(n_), ref(m_ * n_);
    const int64_t ld_res = n_ + 3;  // a residual with its own row stride
    std::vector<float> res(m_ * ld_res);
    for (float& v : res) v = u(rng);
    for (int64_t i = 0; i < m_ * k_; ++i) a[i] = u(rng);
    for (int64_t i = 0; i < k_ * n_; ++i) b[i] = half_b_ ? HalfToFloat(FloatToHalf(u(rng))) : u(rng);
    for (float& v : rb) v = u(rng);
    for (float& v : cb) v = u(rng);
    for (int64_t i = 0; i < m_ * n_; ++i) c[i] = u(rng);
    // Reference: plain loops in double.
    for (int64_t i = 0; i < m_; ++i) {
      for (int64_t j = 0; j < n_; ++j) {
        double acc = 0;
        for (int64_t kk = 0; kk < k_; ++kk) {
          acc += double(a[ta_ ? kk * m_ + i : i * k_ + kk]) * b[tb_ ? j * k_ + kk : kk * n_ + j];
        }
        acc *= alpha_;
        if (accumulate_) acc += c[i * n_ + j];
        if (row_bias_) acc += rb[i];
        if (col_bias_) acc += cb[j];
        if (residual_) acc += res[i * ld_res + j];
        ref[i * n_ + j] = act_.Apply(static_cast<float>(acc));
      }
    }
    GemmArgsF32 g;
    g.m = m_;
    g.n = n_;
    g.k = k_;
    g.a = {nullptr, a.data(), ta_ ? 1 : k_, ta_ ? m_ : 1};
    const int64_t so = tb_ ? k_ : 1, sk = tb_ ? 1 : n_;
    PackedPanelsF32 packed;
    if (pack_b_) {
      packed = PackConstantF32(n_, k_, uk.nr, b.data(), so, sk, 1.f);
      if (half_b_) {
        ASSERT_TRUE(NarrowToHalf(packed));
        ASSERT_EQ(packed.data, nullptr);
      }
      g.b.packed = &packed;
    } else {
      g.b = {nullptr, b.data(), so, sk};
    }
    g.alpha = alpha_;
    g.c = c.data();
    g.ldc = n_;
    g.accumulate = accumulate_;
    g.row_bias = row_bias_ ? rb.data() : nullptr;
    g.col_bias = col_bias_ ? cb.data() : nullptr;
    if (residual_) {
      g.residual = res.data();
      g.ld_residual = ld_res;
    }
    g.act = act_;
    ThreadPool pool(threads_);
    std::vector<char> scratch(GemmScratchBytesF32(uk, m_, n_, k_, !pack_b_, threads_, half_b_) + 64);
    void* aligned = reinterpret_cast<void*>((reinterpret_cast<uintptr_t>(scratch.data()) + 63) & ~uintptr_t{63});
    RunGemmF32(uk, g, aligned, &pool);
    const float tol = 1e-5f * (k_ + 1);
    for (int64_t i = 0; i < m_ * n_; ++i) {
      ASSERT_NEAR(c[i], ref[i], tol * (1.f + std::fabs(ref[i])))
          << uk.name << " index " << i << " (row " << i / std::max<int64_t>(n_, 1) << ") M=" << m_ << " N=" << n_
          << " K=" << k_ << " transA=" << ta_ << " transB=" << tb_ << " packB=" << pack_b_ << " halfB=" << half_b_
          << " seed=" << seed_;
    }
  }

 private:
  int64_t m_ = 1, n_ = 1, k_ = 1;
  bool ta_ = false, tb_ = false, pack_b_ = true, half_b_ = false, row_bias_ = false, col_bias_ = false,
       accumulate_ = false, residual_ = false;
  float alpha_ = 1.f;
  ActivationF32 act_;
  int threads_ = 1;
  uint64_t seed_ = 1;
};

class GemmF32UkernelTest : public ::testing::TestWithParam<int> {
 protected:
  const GemmUkernelInfoF32& uk() const { return GemmUkernelsF32()[GetParam()]; }
  void SetUp() override {
    if ((uk().needs & ActiveCpuFeatures()) != uk().needs) GTEST_SKIP() << uk().name << " needs features this CPU lacks";
  }
};

TEST_P(GemmF32UkernelTest, SizesAroundTiles) {
  const int64_t mr = uk().mr, nr = uk().nr;
  uint64_t seed = 1;
  for (int64_t m : {int64_t{1}, mr - 1, mr, mr + 1, 2 * mr + 3}) {
    // nr + nr / 2 (+ 1): a last panel exactly half full (tail_by_rows) or one over.
    for (int64_t n : {int64_t{1}, nr - 1, nr, nr + 1, nr + nr / 2, nr + nr / 2 + 1, 3 * nr + 5}) {
      for (int64_t k : {int64_t{1}, int64_t{3}, int64_t{17}, kGemmKc - 1, kGemmKc, kGemmKc + 1}) {
        GemmTester().M(m).N(n).K(k).Seed(seed++).Test(uk());
      }
    }
  }
}

TEST_P(GemmF32UkernelTest, OperandLayouts) {
  uint64_t seed = 100;
  for (bool ta : {false, true}) {
    for (bool tb : {false, true}) {
      for (bool pack : {false, true}) {
        GemmTester().M(37).N(45).K(300).TransA(ta).TransB(tb).PackB(pack).Seed(seed++).Test(uk());
        GemmTester().M(200).N(150).K(70).TransA(ta).TransB(tb).PackB(pack).Seed(seed++).Test(uk());
      }
    }
  }
}

TEST_P(GemmF32UkernelTest, EpilogueBiasActivationAccumulate) {
  uint64_t seed = 200;
  for (auto act : {ActivationF32::Kind::kNone, ActivationF32::Kind::kRelu, ActivationF32::Kind::kClip,
                   ActivationF32::Kind::kLeakyRelu, ActivationF32::Kind::kHardSigmoid, ActivationF32::Kind::kHardSwish,
                   ActivationF32::Kind::kGelu}) {
    GemmTester().M(29).N(70).K(2 * kGemmKc + 1).RowBias(true).Act(act).Seed(seed++).Test(uk());
    GemmTester().M(17).N(33).K(20).ColBias(true).Act(act).PostAffine(-1.5f, 0.25f).Seed(seed++).Test(uk());
    GemmTester().M(29).N(70).K(40).ColBias(true).Accumulate(true).Act(act).Seed(seed++).Test(uk());
    GemmTester().M(5).N(9).K(0).ColBias(true).RowBias(true).Act(act).Seed(seed++).Test(uk());
    // A residual tile added before the activation, over several K blocks.
    GemmTester().M(31).N(50).K(kGemmKc + 7).ColBias(true).Residual(true).Act(act).Seed(seed++).Test(uk());
    GemmTester().M(31).N(40).K(kGemmKc + 7).ColBias(true).Residual(true).Act(act).Seed(seed++).Test(uk());
  }
  GemmTester().M(33).N(65).K(129).Alpha(0.5f).Seed(seed++).Test(uk());
}

TEST_P(GemmF32UkernelTest, Threads) {
  uint64_t seed = 300;
  for (int64_t m : {1, 7, 300}) {
    for (int64_t n : {5, 64, 513}) {
      GemmTester().M(m).N(n).K(300).Threads(2).PackB(n != 64).Residual(m == 300).Seed(seed++).Test(uk());
    }
  }
}

// FP16 weights: every tile edge and K block, the fused epilogue, threads.
TEST_P(GemmF32UkernelTest, HalfWeights) {
  const int64_t mr = uk().mr, nr = uk().nr;
  uint64_t seed = 400;
  for (int64_t m : {int64_t{1}, mr + 1, 3 * mr + 2}) {
    for (int64_t n : {int64_t{1}, nr - 1, 2 * nr + 3}) {
      for (int64_t k : {int64_t{1}, int64_t{17}, kGemmKc + 1, 2 * kGemmKc + 5}) {
        GemmTester().M(m).N(n).K(k).HalfB(true).Seed(seed++).Test(uk());
      }
    }
  }
  GemmTester().M(31).N(50).K(kGemmKc + 7).TransB(true).HalfB(true).ColBias(true).Residual(true)
      .Act(ActivationF32::Kind::kHardSwish).Seed(seed++).Test(uk());
  GemmTester().M(300).N(513).K(300).HalfB(true).Threads(2).Seed(seed++).Test(uk());
  GemmTester().M(2).N(700).K(300).HalfB(true).Threads(2).Seed(seed++).Test(uk());
}

// With FP16 weights the products and sums are the FP32 kernel's, in the same
// order: C equals the FP32 GEMM on the FP16-rounded weights bit for bit.
TEST_P(GemmF32UkernelTest, HalfWeightsMatchFp32OnRoundedWeights) {
  std::mt19937_64 rng(7);
  std::uniform_real_distribution<float> u(-2.f, 2.f);
  const int64_t m = 2 * uk().mr + 1, n = 3 * uk().nr + 7, k = kGemmKc + 77;
  std::vector<float> a(m * k), b(k * n), c32(m * n), c16(m * n, -1.f);
  for (float& v : a) v = u(rng);
  for (float& v : b) v = HalfToFloat(FloatToHalf(u(rng)));
  PackedPanelsF32 p32 = PackConstantF32(n, k, uk().nr, b.data(), 1, n, 1.f);
  PackedPanelsF32 p16 = PackConstantF32(n, k, uk().nr, b.data(), 1, n, 1.f);
  ASSERT_TRUE(NarrowToHalf(p16));
  EXPECT_EQ(p16.bytes() * 2, p32.bytes());
  std::vector<char> scratch(GemmScratchBytesF32(uk(), m, n, k, false, 1, true) + 64);
  void* aligned = reinterpret_cast<void*>((reinterpret_cast<uintptr_t>(scratch.data()) + 63) & ~uintptr_t{63});
  for (auto [packed, out] : {std::pair{&p32, &c32}, std::pair{&p16, &c16}}) {
    GemmArgsF32 g;
    g.m = m;
    g.n = n;
    g.k = k;
    g.a = {nullptr, a.data(), k, 1};
    g.b.packed = packed;
    g.c = out->data();
    g.ldc = n;
    RunGemmF32(uk(), g, aligned, nullptr);
  }
  for (int64_t i = 0; i < m * n; ++i) ASSERT_EQ(c16[i], c32[i]) << uk().name << " index " << i;
}

INSTANTIATE_TEST_SUITE_P(AllRows, GemmF32UkernelTest,
                         ::testing::Range(0, static_cast<int>(GemmUkernelsF32().size())),
                         [](const ::testing::TestParamInfo<int>& info) {
                           return std::string(GemmUkernelsF32()[info.param].name);
                         });

// Weights FP16 cannot hold stay f32: above 65504, NaN, or a tensor whose
// largest value is below FP16's smallest normal (2^-14). A few values that
// flush to zero beside larger ones do not keep it f32.
TEST(NarrowToHalf, KeepsWeightsFp16CannotHold) {
  auto narrow = [](std::vector<float> w) {
    PackedPanelsF32 p = PackConstantF32(static_cast<int64_t>(w.size()), 1, 16, w.data(), 1, 1, 1.f);
    const bool narrowed = NarrowToHalf(p);
    EXPECT_NE(narrowed, p.data != nullptr);
    EXPECT_EQ(narrowed, p.half != nullptr);
    return narrowed;
  };
  std::vector<float> w(200, 0.5f);
  EXPECT_TRUE(narrow(w));
  w[3] = 65504.f;
  EXPECT_TRUE(narrow(w));
  w[3] = 65600.f;
  EXPECT_FALSE(narrow(w));
  w[3] = std::nanf("");
  EXPECT_FALSE(narrow(w));
  w[3] = 0.5f;
  for (int i = 0; i < 20; ++i) w[5 + i] = 1e-9f;  // flush to zero beside 0.5: narrowed
  EXPECT_TRUE(narrow(w));
  std::vector<float> tiny(200, 0x1p-15f);  // all subnormal in FP16
  EXPECT_FALSE(narrow(tiny));
  tiny[9] = 0x1p-14f;
  EXPECT_TRUE(narrow(tiny));
  EXPECT_TRUE(narrow(std::vector<float>(200, 0.f)));
}

}  // namespace
}  // namespace kvant::cpu
