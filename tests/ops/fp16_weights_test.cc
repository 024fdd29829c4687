// SessionOptions::precision = fp16 on whole models: the constant weights of
// MatMul, Gemm, group-1 convolutions and LSTM are stored in FP16 and widened
// for the FP32 kernels. With weights that are already FP16 values the
// outputs equal the FP32 session's bit for bit (same kernels, same order);
// with arbitrary weights they differ by FP16 rounding only; weights FP16
// cannot hold keep the layer in FP32.
#include <cmath>
#include <utility>

#include "gtest/gtest.h"
#include "kvant/kvant.h"
#include "ops/float16.h"
#include "tests/testing/graph_checks.h"
#include "tests/testing/onnx_builder.h"
#include "tests/testing/precision_runs.h"

namespace kvant {
namespace {

using testing::OnnxBuilder;
using testing::RandomF32;

// Random weights that are exactly representable in FP16.
Tensor HalfValues(const std::vector<int64_t>& shape, uint64_t seed) {
  Tensor t = RandomF32(shape, seed);
  for (int64_t i = 0; i < t.num_elements(); ++i) t.data<float>()[i] = HalfToFloat(FloatToHalf(t.data<float>()[i]));
  return t;
}

struct Runs {
  Tensor fp32, fp16;
  PlanReport plan;  // of the fp16 session
  int Steps(const std::string& op, const std::string& precision) const {
    int n = 0;
    for (const PlanStepReport& s : plan.steps) n += s.op == op && s.precision == precision;
    return n;
  }
};

// Input "x", output "y", in FP32 and with precision fp16.
void RunBoth(const std::string& bytes, const Tensor& x, Runs* out) {
  testing::RunFp32And(Precision::kFp16, bytes, x, &out->fp32, &out->fp16, &out->plan);
}

// Largest |a - b| relative to max |a|.
double RelativeError(const Tensor& a, const Tensor& b) {
  double mag = 0;
  const double err = testing::MaxAbsDiff(a, b, &mag);
  return err / std::max(mag, 1e-30);
}

// `overflow`: one of the Gemm's weights is 1e5, beyond FP16's 65504.
std::string MatMulGemmModel(bool half_values, bool overflow = false) {
  OnnxBuilder b(13);
  b.Input("x", DataType::kFloat32, {3, 5, 40}).Output("y");
  auto w = [&](const std::vector<int64_t>& shape, uint64_t seed) {
    return half_values ? HalfValues(shape, seed) : RandomF32(shape, seed);
  };
  Tensor w2 = w({20, 48}, 3);
  if (overflow) w2.data<float>()[7] = 1e5f;
  b.Initializer("w", w({40, 48}, 1)).Initializer("bias", RandomF32({48}, 2));
  b.Initializer("w2", w2).Initializer("c2", RandomF32({20}, 4));
  b.Initializer("shape", Tensor::FromVector<int64_t>(DataType::kInt64, {2}, {15, 48}));
  b.Node("MatMul", {"x", "w"}, {"m"});
  b.Node("Add", {"m", "bias"}, {"a"});
  b.Node("Relu", {"a"}, {"r0"});
  b.Node("Reshape", {"r0", "shape"}, {"r"});
  OnnxBuilder::SetInt(b.Node("Gemm", {"r", "w2", "c2"}, {"y"}), "transB", 1);
  return b.Serialize();
}

std::string ConvModel(bool half_values) {
  OnnxBuilder b(13);
  b.Input("x", DataType::kFloat32, {2, 8, 9, 7}).Output("y");
  auto w = [&](const std::vector<int64_t>& shape, uint64_t seed) {
    return half_values ? HalfValues(shape, seed) : RandomF32(shape, seed);
  };
  b.Initializer("w1", w({32, 8, 3, 3}, 11)).Initializer("b1", RandomF32({32}, 12));
  b.Initializer("wd", w({32, 1, 3, 3}, 13)).Initializer("w2", w({24, 32, 1, 1}, 14));
  OnnxBuilder::SetInts(b.Node("Conv", {"x", "w1", "b1"}, {"c1"}), "pads", {1, 1, 1, 1});
  b.Node("Relu", {"c1"}, {"r1"});
  auto& dw = b.Node("Conv", {"r1", "wd"}, {"d"});
  OnnxBuilder::SetInt(dw, "group", 32);
  OnnxBuilder::SetInts(dw, "pads", {1, 1, 1, 1});
  b.Node("Conv", {"d", "w2"}, {"y"});
  return b.Serialize();
}

std::string LstmModel(bool half_values) {
  OnnxBuilder b(14);
  b.Input("x", DataType::kFloat32, {6, 2, 10}).Output("y");
  auto w = [&](const std::vector<int64_t>& shape, uint64_t seed) {
    return half_values ? HalfValues(shape, seed) : RandomF32(shape, seed);
  };
  b.Initializer("W", w({1, 64, 10}, 21)).Initializer("R", w({1, 64, 16}, 22));
  OnnxBuilder::SetInt(b.Node("LSTM", {"x", "W", "R"}, {"y"}), "hidden_size", 16);
  return b.Serialize();
}

TEST(Fp16Weights, MatMulAndGemmEqualFp32OnFp16Values) {
  Runs r;
  ASSERT_NO_FATAL_FAILURE(RunBoth(MatMulGemmModel(true), RandomF32({3, 5, 40}, 5), &r));
  EXPECT_EQ(r.Steps("MatMul", "fp16"), 1) << r.plan.text;
  EXPECT_EQ(r.Steps("Gemm", "fp16"), 1) << r.plan.text;
  EXPECT_EQ(RelativeError(r.fp32, r.fp16), 0);
}

TEST(Fp16Weights, ConvolutionsEqualFp32OnFp16Values) {
  Runs r;
  ASSERT_NO_FATAL_FAILURE(RunBoth(ConvModel(true), RandomF32({2, 8, 9, 7}, 15), &r));
  // The 3x3 and the 1x1 in FP16; the depthwise one keeps its FP32 kernel,
  // in one chain with the 1x1 (graph/passes/fuse_conv_chain.cc).
  EXPECT_EQ(r.Steps("ConvNhwc", "fp16"), 1) << r.plan.text;
  EXPECT_EQ(r.Steps("ConvChainNhwc", "fp16"), 1) << r.plan.text;
  EXPECT_EQ(r.Steps("ConvNhwc", "f32"), 0) << r.plan.text;
  EXPECT_EQ(RelativeError(r.fp32, r.fp16), 0);
}

// One convolution alone stays NCHW (conv_f32): with at most 128 output
// channels it multiplies im2col rows by W^T and keeps W^T in FP16; wider
// ones multiply W (the GEMM's A), which stays FP32.
std::string LoneConvModel(int64_t cout) {
  OnnxBuilder b(13);
  b.Input("x", DataType::kFloat32, {2, 6, 9, 7}).Output("y");
  b.Initializer("w", HalfValues({cout, 6, 3, 3}, 31)).Initializer("b", RandomF32({cout}, 32));
  OnnxBuilder::SetInts(b.Node("Conv", {"x", "w", "b"}, {"c"}), "pads", {1, 1, 1, 1});
  b.Node("Relu", {"c"}, {"y"});
  return b.Serialize();
}

TEST(Fp16Weights, LoneNchwConvolutionKeepsFp16Weights) {
  for (int64_t cout : {40, 200}) {
    SCOPED_TRACE(::testing::Message() << cout << " output channels");
    Runs r;
    ASSERT_NO_FATAL_FAILURE(RunBoth(LoneConvModel(cout), RandomF32({2, 6, 9, 7}, 33), &r));
    EXPECT_EQ(r.Steps("Conv", "fp16"), cout <= 128 ? 1 : 0) << r.plan.text;
    EXPECT_EQ(RelativeError(r.fp32, r.fp16), 0);
  }
}

TEST(Fp16Weights, LstmEqualsFp32OnFp16Values) {
  Runs r;
  ASSERT_NO_FATAL_FAILURE(RunBoth(LstmModel(true), RandomF32({6, 2, 10}, 23), &r));
  EXPECT_EQ(r.Steps("LSTM", "fp16"), 1) << r.plan.text;
  EXPECT_EQ(RelativeError(r.fp32, r.fp16), 0);
}

TEST(Fp16Weights, ArbitraryWeightsDifferByFp16RoundingOnly) {
  const std::pair<std::string, Tensor> cases[] = {{MatMulGemmModel(false), RandomF32({3, 5, 40}, 31)},
                                                  {ConvModel(false), RandomF32({2, 8, 9, 7}, 32)},
                                                  {LstmModel(false), RandomF32({6, 2, 10}, 33)}};
  for (const auto& [model, x] : cases) {
    Runs r;
    ASSERT_NO_FATAL_FAILURE(RunBoth(model, x, &r));
    const double err = RelativeError(r.fp32, r.fp16);
    EXPECT_GT(err, 0) << "the FP16 weights were not used\n" << r.plan.text;
    EXPECT_LT(err, 4e-3) << r.plan.text;  // FP16 keeps 11 bits: 2^-11 per weight, averaged over K
  }
}

// A weight above FP16's largest value (65504) keeps that layer in FP32, and
// its output stays the FP32 one; the other layer still narrows.
TEST(Fp16Weights, WeightsBeyondFp16RangeStayFp32) {
  Runs r;
  ASSERT_NO_FATAL_FAILURE(RunBoth(MatMulGemmModel(true, true), RandomF32({3, 5, 40}, 5), &r));
  EXPECT_EQ(r.Steps("MatMul", "fp16"), 1) << r.plan.text;
  EXPECT_EQ(r.Steps("Gemm", "f32"), 1) << r.plan.text;
  EXPECT_EQ(RelativeError(r.fp32, r.fp16), 0);
  for (int64_t i = 0; i < r.fp16.num_elements(); ++i) ASSERT_TRUE(std::isfinite(r.fp16.data<float>()[i]));
}

// A model that a naive whole-graph FP16 conversion breaks: its activations
// pass 65504 (FP16's largest value), so FP16 storage of them would be
// infinite and the Softmax after them NaN. With FP16 weights only, the
// activations stay FP32: the output is finite and equals the FP32 session's.
TEST(Fp16Weights, ActivationsBeyondFp16RangeStayFinite) {
  OnnxBuilder b(13);
  b.Input("x", DataType::kFloat32, {4, 64}).Output("big").Output("y");
  Tensor w1 = HalfValues({64, 96}, 41), w2 = HalfValues({96, 10}, 42);
  for (int64_t i = 0; i < w1.num_elements(); ++i) w1.data<float>()[i] *= 1024.f;  // exact in FP16
  b.Initializer("w1", w1).Initializer("w2", w2);
  b.Node("MatMul", {"x", "w1"}, {"big"});
  b.Node("MatMul", {"big", "w2"}, {"logits"});
  b.Node("Softmax", {"logits"}, {"y"});
  const std::string bytes = b.Serialize();
  Tensor x = RandomF32({4, 64}, 43, -20.f, 20.f);
  SessionOptions fp16;
  fp16.precision = Precision::kFp16;
  auto a = Session::LoadFromBytes(bytes);
  auto h = Session::LoadFromBytes(bytes, fp16);
  ASSERT_TRUE(a.ok()) << a.status();
  ASSERT_TRUE(h.ok()) << h.status();
  auto ya = a->Run({{"x", x}});
  auto yh = h->Run({{"x", x}});
  ASSERT_TRUE(ya.ok()) << ya.status();
  ASSERT_TRUE(yh.ok()) << yh.status();
  float most = 0;
  const Tensor& big = ya->at("big");
  for (int64_t i = 0; i < big.num_elements(); ++i) most = std::max(most, std::fabs(big.data<float>()[i]));
  ASSERT_GT(most, 65504.f) << "the test model must overflow FP16 activations";
  const Tensor& y = yh->at("y");
  for (int64_t i = 0; i < y.num_elements(); ++i) ASSERT_TRUE(std::isfinite(y.data<float>()[i])) << i;
  EXPECT_EQ(RelativeError(ya->at("y"), y), 0);
  EXPECT_EQ(RelativeError(big, yh->at("big")), 0);
}

}  // namespace
}  // namespace kvant
