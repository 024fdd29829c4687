// BF16 GEMM: the rounding (nearest even, NaN and infinities kept) and every
// microkernel row of kernels.inc the machine has against the reference (A
// and B rounded to bf16, products summed in double), over sizes around the
// 14 x 32 tile and odd K (a zero-padded last pair), with bias and ReLU; the
// relative error allowed is that of f32 accumulation over K terms.
#include <cmath>
#include <limits>
#include <random>
#include <string>

#include "gtest/gtest.h"
#include "kvant/kvant.h"
#include "ops/cpu/gemm_bf16.h"
#include "tests/testing/graph_checks.h"
#include "tests/testing/onnx_builder.h"
#include "tests/testing/precision_runs.h"
#include "runtime/cpu_caps.h"
#include "runtime/thread_pool.h"

namespace kvant::cpu {
namespace {

TEST(GemmBf16, RoundsToNearestEven) {
  EXPECT_EQ(F32ToBf16(1.f), 0x3f80);
  EXPECT_EQ(Bf16ToF32(F32ToBf16(1.f + 1.f / 256)), 1.f) << "a tie goes to the even neighbour";
  EXPECT_EQ(Bf16ToF32(F32ToBf16(1.f + 3.f / 256)), 1.f + 4.f / 256) << "a tie goes to the even neighbour";
  EXPECT_EQ(Bf16ToF32(F32ToBf16(1.f + 1.5f / 256)), 1.f + 2.f / 256);
  EXPECT_EQ(F32ToBf16(-std::numeric_limits<float>::infinity()), 0xff80);
  EXPECT_TRUE(std::isnan(Bf16ToF32(F32ToBf16(std::numeric_limits<float>::quiet_NaN()))));
  EXPECT_TRUE(std::isnan(Bf16ToF32(F32ToBf16(std::numeric_limits<float>::signaling_NaN()))));
  EXPECT_EQ(Bf16ToF32(F32ToBf16(3.4e38f)), std::numeric_limits<float>::infinity()) << "rounds past the largest bf16";
}

class GemmBf16Kernels : public ::testing::TestWithParam<const GemmUkernelInfoBf16*> {};

TEST_P(GemmBf16Kernels, MatchesTheReference) {
  const GemmUkernelInfoBf16& uk = *GetParam();
  if ((uk.needs & ActiveCpuFeatures()) != uk.needs) GTEST_SKIP() << uk.name << " needs a CPU feature this one lacks";
  ThreadPool pool(2);
  for (int64_t m : {1, 2, 13, 14, 15, 16, 17, 29, 48}) {  // 16, 17, 48: the AMX 16-row kernel's edges
    for (int64_t n : {1, 31, 32, 33, 70}) {
      for (int64_t k : {1, 2, 7, 64, 255}) {
        for (int mode : {0, 1, 2}) {  // no epilogue, bias + Relu, bias + Gelu * -0.5 + 0.25
          const bool epilogue = mode > 0;
          SCOPED_TRACE(::testing::Message() << uk.name << " m=" << m << " n=" << n << " k=" << k << " epilogue "
                                            << mode << " seed " << m * 1000 + n * 10 + k);
          std::mt19937 rng(static_cast<uint32_t>(m * 1000 + n * 10 + k));
          std::uniform_real_distribution<float> u(-2.f, 2.f);
          std::vector<float> a(m * k), b(k * n), bias(n), c(m * n, NAN), want(m * n);
          for (float& v : a) v = u(rng);
          for (float& v : b) v = u(rng);
          for (float& v : bias) v = u(rng);
          const PackedBBf16 packed = PackBBf16(uk, k, n, b.data(), n, 1);
          std::vector<char> scratch(GemmScratchBytesBf16(uk, m, k, pool.num_threads()) + 64);
          GemmArgsBf16 args;
          args.m = m;
          args.a = a.data();
          args.lda = k;
          args.b = &packed;
          args.c = c.data();
          args.ldc = n;
          if (epilogue) {
            args.col_bias = bias.data();
            args.act.kind = mode == 1 ? ActivationF32::Kind::kRelu : ActivationF32::Kind::kGelu;
            if (mode == 2) {
              args.act.post_scale = -0.5f;
              args.act.post_shift = 0.25f;
            }
          }
          RunGemmBf16(uk, args, scratch.data(), &pool);
          GemmBf16Reference(m, n, k, a.data(), k, b.data(), n, epilogue ? bias.data() : nullptr, want.data(), n);
          for (int64_t i = 0; i < m * n; ++i) {
            const float w = args.act.Apply(want[i]);
            ASSERT_NEAR(c[i], w, 1e-6f * 4.f * static_cast<float>(k) + 1e-6f) << "at " << i / n << "," << i % n;
          }
        }
      }
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Rows, GemmBf16Kernels, ::testing::ValuesIn([] {
                           std::vector<const GemmUkernelInfoBf16*> rows;
                           for (const auto& uk : GemmUkernelsBf16()) rows.push_back(&uk);
                           return rows;
                         }()),
                         [](const auto& info) { return std::string(info.param->name); });

// The model (one input "x", one output "y") in FP32 and with precision
// bf16 on `x`: both outputs and the BF16 session's plan.
void RunFp32AndBf16(const std::string& bytes, const Tensor& x, Tensor* y_fp32, Tensor* y_bf16, PlanReport* plan) {
  testing::RunFp32And(Precision::kBf16, bytes, x, y_fp32, y_bf16, plan);
}

// SessionOptions::precision = bf16 on MatMul -> Add -> Softmax -> Gemm: the
// products run on the BF16 GEMM where the CPU has it (the plan says so) and
// stay close to FP32; elsewhere they fall back to FP32, bit for bit.

TEST(GemmBf16, SessionPrecisionRunsMatrixProductsInBf16) {
  using testing::OnnxBuilder;
  using testing::RandomF32;
  OnnxBuilder b(13);
  b.Input("x", DataType::kFloat32, {3, 5, 160}).Output("y");
  b.Initializer("w", RandomF32({160, 48}, 1)).Initializer("bias", RandomF32({48}, 2));
  b.Initializer("w2", RandomF32({10, 48}, 3)).Initializer("c2", RandomF32({10}, 4));
  b.Node("MatMul", {"x", "w"}, {"m"});
  b.Node("Add", {"m", "bias"}, {"a"});
  b.Node("Softmax", {"a"}, {"s"});
  b.Node("Reshape", {"s", "shape"}, {"r"});
  b.Initializer("shape", Tensor::FromVector<int64_t>(DataType::kInt64, {2}, {15, 48}));
  OnnxBuilder::SetInt(b.Node("Gemm", {"r", "w2", "c2"}, {"y"}), "transB", 1);
  Tensor y0, y1;
  PlanReport plan_report;
  ASSERT_NO_FATAL_FAILURE(RunFp32AndBf16(b.Serialize(), RandomF32({3, 5, 160}, 5), &y0, &y1, &plan_report));
  const PlanReport* plan = &plan_report;
  const bool has_bf16 = SelectGemmUkernelBf16(ActiveCpuFeatures()) != nullptr;
  double mag = 0;
  const double err = testing::MaxAbsDiff(y0, y1, &mag);
  if (!has_bf16) {
    EXPECT_EQ(err, 0) << "without BF16 arithmetic the products stay FP32";
    EXPECT_EQ(plan->text.find(" bf16 "), std::string::npos) << plan->text;
    return;
  }
  EXPECT_GT(err, 0) << "the BF16 path was not taken";
  EXPECT_LT(err, 2e-2 * mag) << "BF16 error " << err << " of magnitude " << mag;
  // The MatMul (K = 160) in BF16; the Gemm (K = 48, too shallow to gain) in FP32.
  for (const PlanStepReport& step : plan->steps) {
    if (step.op == "MatMul") EXPECT_EQ(step.precision, "bf16") << plan->text;
    if (step.op == "Gemm") EXPECT_EQ(step.precision, "f32") << plan->text;
  }
}

// Convolutions with group 1 and K >= 128 run as kvant.ConvNhwc on the BF16
// GEMM (3x3 through A rows, 1x1 reading the input in place; the 1x1 after
// the depthwise one inside their kvant.ConvChainNhwc); the depthwise one and
// the shallow last 1x1 (K = 40) stay FP32.
TEST(GemmBf16, SessionPrecisionRunsConvolutionsInBf16) {
  using testing::OnnxBuilder;
  using testing::RandomF32;
  OnnxBuilder b(13);
  b.Input("x", DataType::kFloat32, {2, 16, 13, 11}).Output("y");
  b.Initializer("w1", RandomF32({128, 16, 3, 3}, 11)).Initializer("b1", RandomF32({128}, 12));
  b.Initializer("wd", RandomF32({128, 1, 3, 3}, 13)).Initializer("w2", RandomF32({40, 128, 1, 1}, 14));
  b.Initializer("w3", RandomF32({8, 40, 1, 1}, 16));
  OnnxBuilder::SetInts(b.Node("Conv", {"x", "w1", "b1"}, {"c1"}), "pads", {1, 1, 1, 1});
  b.Node("Relu", {"c1"}, {"r1"});
  auto& dw = b.Node("Conv", {"r1", "wd"}, {"d"});
  OnnxBuilder::SetInt(dw, "group", 128);
  OnnxBuilder::SetInts(dw, "pads", {1, 1, 1, 1});
  b.Node("Conv", {"d", "w2"}, {"p"});
  b.Node("Conv", {"p", "w3"}, {"y"});
  Tensor y0, y1;
  PlanReport plan_report;
  ASSERT_NO_FATAL_FAILURE(RunFp32AndBf16(b.Serialize(), RandomF32({2, 16, 13, 11}, 15), &y0, &y1, &plan_report));
  const PlanReport* plan = &plan_report;
  double mag = 0;
  const double err = testing::MaxAbsDiff(y0, y1, &mag);
  if (SelectGemmUkernelBf16(ActiveCpuFeatures()) == nullptr) {
    EXPECT_EQ(err, 0) << "without BF16 arithmetic the convolutions stay FP32";
    return;
  }
  EXPECT_GT(err, 0) << "the BF16 path was not taken";
  EXPECT_LT(err, 2e-2 * mag) << "BF16 error " << err << " of magnitude " << mag;
  int bf16_steps = 0, f32_convs = 0, chains = 0;
  for (const PlanStepReport& step : plan->steps) {
    const bool conv = step.op == "ConvNhwc" || step.op == "ConvChainNhwc";
    bf16_steps += conv && step.precision == "bf16";
    f32_convs += conv && step.precision == "f32";
    chains += step.op == "ConvChainNhwc" && step.impl.find("project gemm_bf16") != std::string::npos;
  }
  EXPECT_EQ(bf16_steps, 2) << plan->text;  // the 3x3 and the depthwise -> 1x1 chain
  EXPECT_EQ(chains, 1) << plan->text;
  EXPECT_EQ(f32_convs, 1) << plan->text;  // the K = 40 one
}

// A lone NCHW convolution (the NHWC layout takes two or more) and 1-D
// convolutions, positions as rows, run on the BF16 GEMM too: 2-D 16 -> 32
// 3x3 (K = 144), 1-D 64 -> 48 k3 stride 2 (K = 192) and pointwise 1-D
// 160 -> 24 over a batch of 3 (several images per tile).
TEST(GemmBf16, SessionPrecisionRunsNchwConvolutionsInBf16) {
  using testing::OnnxBuilder;
  using testing::RandomF32;
  struct Case {
    std::vector<int64_t> x, w;
    std::vector<int64_t> pads, strides;
  };
  for (const Case& c : {Case{{2, 16, 13, 11}, {32, 16, 3, 3}, {1, 1, 1, 1}, {1, 1}},
                        Case{{2, 64, 37}, {48, 64, 3}, {1, 1}, {2}}, Case{{3, 160, 20}, {24, 160, 1}, {0, 0}, {1}}}) {
    SCOPED_TRACE(::testing::Message() << "weights rank " << c.w.size() << " K " << c.w[1] * c.w.back());
    OnnxBuilder b(13);
    b.Input("x", DataType::kFloat32, c.x).Output("y");
    b.Initializer("w", RandomF32(c.w, 41)).Initializer("b", RandomF32({c.w[0]}, 42));
    auto& n = b.Node("Conv", {"x", "w", "b"}, {"y"});
    OnnxBuilder::SetInts(n, "pads", c.pads);
    OnnxBuilder::SetInts(n, "strides", c.strides);
    Tensor y0, y1;
    PlanReport plan;
    ASSERT_NO_FATAL_FAILURE(RunFp32AndBf16(b.Serialize(), RandomF32(c.x, 43), &y0, &y1, &plan));
    double mag = 0;
    const double err = testing::MaxAbsDiff(y0, y1, &mag);
    const bool bf16 = SelectGemmUkernelBf16(ActiveCpuFeatures()) != nullptr;
    int convs = 0;
    for (const PlanStepReport& step : plan.steps) {
      if (step.op != "Conv") continue;
      ++convs;
      EXPECT_EQ(step.precision, bf16 ? "bf16" : "f32") << plan.text;
    }
    EXPECT_EQ(convs, 1) << plan.text;
    if (!bf16) {
      EXPECT_EQ(err, 0) << "without BF16 arithmetic the convolution stays FP32";
      continue;
    }
    EXPECT_GT(err, 0) << "the BF16 path was not taken";
    EXPECT_LT(err, 2e-2 * mag) << "BF16 error " << err << " of magnitude " << mag;
  }
}

// LSTM and GRU with hidden size >= 128 run their input and recurrent
// products in BF16 (both directions); a shallow recurrence (hidden 16) stays
// FP32.
TEST(GemmBf16, SessionPrecisionRunsRecurrencesInBf16) {
  using testing::OnnxBuilder;
  using testing::RandomF32;
  struct Case {
    const char* op;
    int64_t hidden, dirs;
  };
  for (const Case& c : {Case{"LSTM", 128, 2}, Case{"GRU", 128, 1}, Case{"LSTM", 16, 1}}) {
    SCOPED_TRACE(::testing::Message() << c.op << " hidden " << c.hidden << " directions " << c.dirs);
    const int64_t gates = std::string(c.op) == "LSTM" ? 4 : 3;
    OnnxBuilder b(14);
    b.Input("x", DataType::kFloat32, {5, 3, 40}).Output("y");
    b.Initializer("W", RandomF32({c.dirs, gates * c.hidden, 40}, 31, -0.2f, 0.2f));
    b.Initializer("R", RandomF32({c.dirs, gates * c.hidden, c.hidden}, 32, -0.1f, 0.1f));
    b.Initializer("B", RandomF32({c.dirs, 2 * gates * c.hidden}, 33, -0.1f, 0.1f));
    auto& n = b.Node(c.op, {"x", "W", "R", "B"}, {"y"});
    OnnxBuilder::SetInt(n, "hidden_size", c.hidden);
    if (c.dirs == 2) OnnxBuilder::SetString(n, "direction", "bidirectional");
    if (gates == 3) OnnxBuilder::SetInt(n, "linear_before_reset", 1);
    Tensor y0, y1;
    PlanReport plan;
    ASSERT_NO_FATAL_FAILURE(RunFp32AndBf16(b.Serialize(), RandomF32({5, 3, 40}, 34), &y0, &y1, &plan));
    double mag = 0;
    const double err = testing::MaxAbsDiff(y0, y1, &mag);
    const bool bf16 = SelectGemmUkernelBf16(ActiveCpuFeatures()) != nullptr && c.hidden >= 128;
    for (const PlanStepReport& step : plan.steps) {
      if (step.op == c.op) EXPECT_EQ(step.precision, bf16 ? "bf16" : "f32") << plan.text;
    }
    if (!bf16) {
      EXPECT_EQ(err, 0) << "the recurrence stays FP32";
      continue;
    }
    EXPECT_GT(err, 0) << "the BF16 path was not taken";
    EXPECT_LT(err, 2e-2 * mag) << "BF16 error " << err << " of magnitude " << mag;
  }
}

}  // namespace
}  // namespace kvant::cpu
