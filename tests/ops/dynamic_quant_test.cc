// Dynamic quantization: DynamicQuantizeLinear against the ONNX formula
// (ranges all positive, all negative, zero, with NaN), com.microsoft
// DynamicQuantizeMatMul and MatMulIntegerToFloat against plain loops (s8 and
// u8 weights, per-tensor and per-column scales and zero points, bias, batched
// A), the fusion of ONNX Runtime's quantize_dynamic chain into
// DynamicQuantizeMatMul, and SessionOptions::dynamic_int8 on FP32 MatMul and
// Gemm (rewritten, and close to FP32).
#include <cmath>
#include <random>

#include "gtest/gtest.h"
#include "kvant/kvant.h"
#include "tests/testing/graph_checks.h"
#include "tests/testing/onnx_builder.h"

namespace kvant {
namespace {

using testing::CountOps;
using testing::OnnxBuilder;
using testing::OptimizedGraph;
using testing::RandomF32;
using testing::RunPlainAndOptimized;

struct Quantized {
  std::vector<uint8_t> q;
  float scale = 0;
  uint8_t zero_point = 0;
};

// The ONNX reference of DynamicQuantizeLinear, in float as its numpy code.
Quantized ReferenceDynamicQuantize(const float* x, int64_t n) {
  float lo = 0, hi = 0;
  for (int64_t i = 0; i < n; ++i) {
    if (std::isnan(x[i])) continue;
    lo = std::min(lo, x[i]);
    hi = std::max(hi, x[i]);
  }
  Quantized r;
  r.scale = (hi - lo) / 255.f;
  r.q.assign(n, 0);
  if (r.scale == 0) return r;
  r.zero_point = static_cast<uint8_t>(std::clamp(std::nearbyint(0.f - lo / r.scale), 0.f, 255.f));
  for (int64_t i = 0; i < n; ++i) {
    const float v = std::nearbyint(x[i] / r.scale) + r.zero_point;
    r.q[i] = std::isnan(v) ? 0 : static_cast<uint8_t>(std::clamp(v, 0.f, 255.f));
  }
  return r;
}

TEST(DynamicQuant, DynamicQuantizeLinearMatchesTheFormula) {
  struct Case {
    float lo, hi;
    bool nan;
  };
  for (Case c : {Case{-3.f, 5.f, false}, Case{0.5f, 2.f, false}, Case{-4.f, -1.f, false}, Case{0.f, 0.f, false},
                 Case{-1.f, 1.f, true}}) {
    SCOPED_TRACE(::testing::Message() << c.lo << ".." << c.hi << (c.nan ? " with NaN" : ""));
    OnnxBuilder b(13);
    b.Input("x", DataType::kFloat32, {7, 37}).Output("y", DataType::kUInt8).Output("s").Output("z", DataType::kUInt8);
    b.Node("DynamicQuantizeLinear", {"x"}, {"y", "s", "z"});
    Tensor x = c.lo == c.hi ? Tensor::Zeros(DataType::kFloat32, {7, 37}) : RandomF32({7, 37}, 3, c.lo, c.hi);
    if (c.nan) x.data<float>()[5] = std::nanf("");
    auto s = Session::LoadFromBytes(b.Serialize());
    ASSERT_TRUE(s.ok()) << s.status();
    auto out = s->Run({{"x", x}});
    ASSERT_TRUE(out.ok()) << out.status();
    const Quantized want = ReferenceDynamicQuantize(x.data<float>(), x.num_elements());
    EXPECT_EQ(out->at("s").data<float>()[0], want.scale);
    EXPECT_EQ(out->at("z").data<uint8_t>()[0], want.zero_point);
    for (int64_t i = 0; i < x.num_elements(); ++i) ASSERT_EQ(out->at("y").data<uint8_t>()[i], want.q[i]) << i;
  }
}

// y = (a - za)(b - zb[n]) * a_scale * b_scale[n] + bias[n] over plain loops;
// a is [batch, m, k] (u8), b [k, n] as int.
std::vector<float> ReferenceProduct(const std::vector<int>& a, int za, float a_scale, const std::vector<int>& b,
                                    const std::vector<int>& zb, const std::vector<float>& b_scale,
                                    const std::vector<float>& bias, int64_t rows, int64_t k, int64_t n) {
  std::vector<float> y(rows * n);
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t j = 0; j < n; ++j) {
      int64_t acc = 0;
      for (int64_t p = 0; p < k; ++p) acc += int64_t{a[r * k + p] - za} * (b[p * n + j] - zb[zb.size() == 1 ? 0 : j]);
      y[r * n + j] = static_cast<float>(acc) * (a_scale * b_scale[b_scale.size() == 1 ? 0 : j]) +
                     (bias.empty() ? 0.f : bias[j]);
    }
  return y;
}

struct ProductCase {
  bool signed_b;
  bool per_column;
  bool zero_points;
  bool bias;
};

class FloatOutputProducts : public ::testing::TestWithParam<ProductCase> {};

TEST_P(FloatOutputProducts, MatchPlainLoops) {
  const ProductCase c = GetParam();
  const int64_t batch = 2, m = 9, k = 67, n = 35;
  std::mt19937 rng(11);
  const DataType bt = c.signed_b ? DataType::kInt8 : DataType::kUInt8;
  std::vector<int> b(k * n), zb(c.per_column ? n : 1, 0);
  std::vector<float> bs(c.per_column ? n : 1), bias;
  for (int& v : b) v = c.signed_b ? static_cast<int>(rng() % 256) - 128 : static_cast<int>(rng() % 256);
  for (float& s : bs) s = 0.002f + 0.0001f * static_cast<float>(rng() % 50);
  if (c.zero_points)
    for (int& z : zb) z = c.signed_b ? static_cast<int>(rng() % 21) - 10 : 118 + static_cast<int>(rng() % 21);
  if (c.bias)
    for (int64_t j = 0; j < n; ++j) bias.push_back(0.01f * static_cast<float>(j) - 0.2f);
  auto bytes = [&](const std::vector<int>& v, std::vector<int64_t> shape) {
    Tensor t = Tensor::Zeros(bt, std::move(shape));
    for (size_t i = 0; i < v.size(); ++i) static_cast<uint8_t*>(t.raw_data())[i] = static_cast<uint8_t>(v[i]);
    return t;
  };
  const std::vector<int64_t> param_shape = c.per_column ? std::vector<int64_t>{n} : std::vector<int64_t>{};
  const Tensor x = RandomF32({batch, m, k}, 5, -1.5f, 2.5f);

  // DynamicQuantizeMatMul(A f32, B, b_scale, b_zero_point, bias).
  OnnxBuilder d(13);
  d.Input("x", DataType::kFloat32, {batch, m, k}).Output("y");
  d.Initializer("b", bytes(b, {k, n})).Initializer("bs", Tensor::FromVector<float>(DataType::kFloat32, param_shape, bs));
  std::vector<std::string> ins = {"x", "b", "bs", ""};
  if (c.zero_points) {
    d.Initializer("bz", bytes(zb, param_shape));
    ins[3] = "bz";
  }
  if (c.bias) {
    d.Initializer("bias", Tensor::FromVector<float>(DataType::kFloat32, {n}, bias));
    ins.push_back("bias");
  }
  d.Node("DynamicQuantizeMatMul", ins, {"y"}).set_domain("com.microsoft");
  auto s = Session::LoadFromBytes(d.Serialize());
  ASSERT_TRUE(s.ok()) << s.status();
  auto out = s->Run({{"x", x}});
  ASSERT_TRUE(out.ok()) << out.status();
  const Quantized qa = ReferenceDynamicQuantize(x.data<float>(), x.num_elements());
  std::vector<int> a(qa.q.begin(), qa.q.end());
  const std::vector<float> want = ReferenceProduct(a, qa.zero_point, qa.scale, b, zb, bs, bias, batch * m, k, n);
  const Tensor& y = out->at("y");
  ASSERT_EQ(y.shape(), (std::vector<int64_t>{batch, m, n}));
  for (int64_t i = 0; i < y.num_elements(); ++i)
    ASSERT_NEAR(y.data<float>()[i], want[i], 1e-5f * (1 + std::fabs(want[i]))) << i;

  // MatMulIntegerToFloat(A u8, B, a_scale, b_scale, a_zero_point, b_zero_point, bias) on the same operands.
  OnnxBuilder f(13);
  f.Input("a", DataType::kUInt8, {batch, m, k}).Output("y");
  f.Initializer("b", bytes(b, {k, n})).Initializer("bs", Tensor::FromVector<float>(DataType::kFloat32, param_shape, bs));
  f.Initializer("as", Tensor::FromVector<float>(DataType::kFloat32, {}, {qa.scale}));
  f.Initializer("az", Tensor::FromVector<uint8_t>(DataType::kUInt8, {}, {qa.zero_point}));
  std::vector<std::string> fin = {"a", "b", "as", "bs", "az", c.zero_points ? "bz" : ""};
  if (c.zero_points) f.Initializer("bz", bytes(zb, param_shape));
  if (c.bias) {
    f.Initializer("bias", Tensor::FromVector<float>(DataType::kFloat32, {n}, bias));
    fin.push_back("bias");
  }
  f.Node("MatMulIntegerToFloat", fin, {"y"}).set_domain("com.microsoft");
  auto s2 = Session::LoadFromBytes(f.Serialize());
  ASSERT_TRUE(s2.ok()) << s2.status();
  auto out2 = s2->Run({{"a", Tensor::FromVector<uint8_t>(DataType::kUInt8, {batch, m, k}, qa.q)}});
  ASSERT_TRUE(out2.ok()) << out2.status();
  for (int64_t i = 0; i < y.num_elements(); ++i)
    ASSERT_NEAR(out2->at("y").data<float>()[i], want[i], 1e-5f * (1 + std::fabs(want[i]))) << i;
}

INSTANTIATE_TEST_SUITE_P(Cases, FloatOutputProducts,
                         ::testing::Values(ProductCase{true, false, false, false}, ProductCase{true, true, false, true},
                                           ProductCase{false, false, true, true}, ProductCase{false, true, true, false},
                                           ProductCase{true, true, true, true}));

TEST(DynamicQuant, OnnxRuntimeChainBecomesDynamicQuantizeMatMul) {
  // What onnxruntime.quantization.quantize_dynamic writes for MatMul + bias.
  const int64_t k = 48, n = 20;
  std::mt19937 rng(4);
  std::vector<int8_t> w(k * n);
  for (int8_t& v : w) v = static_cast<int8_t>(static_cast<int>(rng() % 255) - 127);
  OnnxBuilder b(13);
  b.Input("x", DataType::kFloat32, {2, 6, k}).Output("y");
  b.Initializer("wq", Tensor::FromVector<int8_t>(DataType::kInt8, {k, n}, w));
  b.Initializer("wz", Tensor::FromVector<int8_t>(DataType::kInt8, {}, {0}));
  b.Initializer("ws", Tensor::FromVector<float>(DataType::kFloat32, {}, {0.013f}));
  b.Initializer("bias", RandomF32({n}, 9));
  b.Node("DynamicQuantizeLinear", {"x"}, {"xq", "xs", "xz"});
  b.Node("MatMulInteger", {"xq", "wq", "xz", "wz"}, {"acc"}, "mm_quant");
  OnnxBuilder::SetInt(b.Node("Cast", {"acc"}, {"accf"}), "to", 1);
  b.Node("Mul", {"xs", "ws"}, {"s"});
  b.Node("Mul", {"accf", "s"}, {"mm"});
  b.Node("Add", {"bias", "mm"}, {"y"});
  const std::string bytes = b.Serialize();
  auto g = OptimizedGraph(bytes);
  ASSERT_TRUE(g.ok()) << g.status();
  EXPECT_EQ(CountOps(*g, "DynamicQuantizeMatMul"), 1) << g->DebugString();
  EXPECT_EQ(CountOps(*g, "MatMulInteger") + CountOps(*g, "Cast") + CountOps(*g, "Add") +
                CountOps(*g, "DynamicQuantizeLinear"), 0) << g->DebugString();
  auto y = RunPlainAndOptimized(bytes, {{"x", RandomF32({2, 6, k}, 2, -3.f, 3.f)}});
  ASSERT_TRUE(y.ok()) << y.status();
  const auto& [u, v] = *y;
  ASSERT_EQ(u.shape(), v.shape());
  for (int64_t i = 0; i < u.num_elements(); ++i)
    ASSERT_NEAR(u.data<float>()[i], v.data<float>()[i], 1e-5f * (1 + std::fabs(u.data<float>()[i]))) << i;
}

TEST(DynamicQuant, SessionOptionQuantizesMatMulAndGemm) {
  const int64_t k = 96, n = 40;
  OnnxBuilder b(13);
  b.Input("x", DataType::kFloat32, {5, k}).Output("y");
  b.Initializer("w1", RandomF32({k, n}, 1)).Initializer("b1", RandomF32({n}, 2));
  b.Initializer("w2", RandomF32({n, n}, 3)).Initializer("b2", RandomF32({n}, 4));
  b.Node("MatMul", {"x", "w1"}, {"m"});
  b.Node("Add", {"m", "b1"}, {"h"});
  b.Node("Relu", {"h"}, {"r"});
  OnnxBuilder::SetInt(b.Node("Gemm", {"r", "w2", "b2"}, {"y"}), "transB", 1);
  const std::string bytes = b.Serialize();
  auto g = OptimizedGraph(bytes, /*dynamic_int8=*/true);
  ASSERT_TRUE(g.ok()) << g.status();
  EXPECT_EQ(CountOps(*g, "DynamicQuantizeMatMul"), 2) << g->DebugString();
  EXPECT_EQ(CountOps(*g, "MatMul") + CountOps(*g, "Gemm") + CountOps(*g, "Add"), 0) << g->DebugString();
  EXPECT_EQ(CountOps(*g, "Relu"), 0) << "the Relu runs in the INT8 GEMM's f32 epilogue\n" << g->DebugString();
  SessionOptions dynamic;
  dynamic.dynamic_int8 = true;
  auto y = RunPlainAndOptimized(bytes, {{"x", RandomF32({5, k}, 7, -1.f, 1.f)}}, dynamic);
  ASSERT_TRUE(y.ok()) << y.status();
  const auto& [fp32, int8] = *y;
  double mag = 0;
  const double err = testing::MaxAbsDiff(fp32, int8, &mag);
  EXPECT_LT(err, 0.02 * mag) << "INT8 error " << err << " of output magnitude " << mag;
  EXPECT_GT(err, 0) << "the INT8 path was not taken";
}

TEST(DynamicQuant, BadBiasIsAnError) {
  OnnxBuilder b(13);
  b.Input("x", DataType::kFloat32, {2, 8}).Output("y");
  b.Initializer("b", Tensor::Zeros(DataType::kInt8, {8, 4}));
  b.Initializer("bs", Tensor::FromVector<float>(DataType::kFloat32, {}, {0.1f}));
  b.Initializer("bias", RandomF32({5}, 1));
  b.Node("DynamicQuantizeMatMul", {"x", "b", "bs", "", "bias"}, {"y"}, "dqmm").set_domain("com.microsoft");
  auto s = Session::LoadFromBytes(b.Serialize());
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.status().message().find("dqmm"), std::string::npos) << s.status();
  EXPECT_NE(s.status().message().find("bias must have shape [4]"), std::string::npos) << s.status();
}

}  // namespace
}  // namespace kvant
