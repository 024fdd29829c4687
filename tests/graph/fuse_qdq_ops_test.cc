// QDQ groups beyond convolutions (graph/passes/fuse_qdq_ops.cc): a QDQ graph
// as ONNX Runtime's quantizer writes it (Pad whose value is DQ(Q(0)),
// residual Add, GlobalAveragePool, Flatten, Gemm with an int32 bias) ends up
// on quantized operators with no QuantizeLinear/DequantizeLinear left inside,
// and matches the unoptimized float-between-conversions graph within one
// quantization step.
#include <algorithm>
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
using testing::ScalarF32;
using testing::ScalarU8;


TEST(FuseQdqOps, QdqGraphRunsOnQuantizedOperators) {
  std::mt19937 rng(3);
  std::vector<int8_t> w(6 * 5);
  for (int8_t& v : w) v = static_cast<int8_t>(static_cast<int>(rng() % 201) - 100);
  std::vector<int32_t> bias = {100, -50, 7, 0, 300};
  OnnxBuilder b(13);
  b.Input("x", DataType::kFloat32, {2, 6, 5, 5}).Input("x2", DataType::kFloat32, {2, 6, 7, 7}).Output("y");
  b.Initializer("s", ScalarF32(0.03f)).Initializer("z", ScalarU8(120));
  b.Initializer("s2", ScalarF32(0.05f)).Initializer("z2", ScalarU8(126));
  b.Initializer("s3", ScalarF32(0.02f)).Initializer("z3", ScalarU8(118));
  b.Initializer("zero", ScalarF32(0.f)).Initializer("pads", Tensor::FromVector<int64_t>(DataType::kInt64, {8}, {0, 0, 1, 1, 0, 0, 1, 1}));
  b.Initializer("w", Tensor::FromVector<int8_t>(DataType::kInt8, {6, 5}, w)).Initializer("ws", ScalarF32(0.01f));
  b.Initializer("wz", Tensor::Zeros(DataType::kInt8, {}));
  b.Initializer("bq", Tensor::FromVector<int32_t>(DataType::kInt32, {5}, bias)).Initializer("bs", ScalarF32(0.02f * 0.01f));
  b.Initializer("bz", Tensor::Zeros(DataType::kInt32, {}));
  b.Initializer("ys", ScalarF32(0.04f)).Initializer("yz", ScalarU8(128));
  // x -> Q -> DQ -> Pad(value DQ(Q(0))) -> Q
  b.Node("QuantizeLinear", {"x", "s", "z"}, {"q"});
  b.Node("DequantizeLinear", {"q", "s", "z"}, {"d"});
  b.Node("QuantizeLinear", {"zero", "s", "z"}, {"zq"});
  b.Node("DequantizeLinear", {"zq", "s", "z"}, {"zd"});
  b.Node("Pad", {"d", "pads", "zd"}, {"p"});
  b.Node("QuantizeLinear", {"p", "s", "z"}, {"pq"});
  // residual: pq plus a second quantized input (pq plus itself would be a
  // function of one byte: a table, fuse_qdq_islands.cc)
  b.Node("DequantizeLinear", {"pq", "s", "z"}, {"pd1"});
  b.Node("QuantizeLinear", {"x2", "s", "z"}, {"q2"});
  b.Node("DequantizeLinear", {"q2", "s", "z"}, {"pd2"});
  b.Node("Add", {"pd1", "pd2"}, {"a"});
  b.Node("QuantizeLinear", {"a", "s2", "z2"}, {"aq"});
  // -> GAP -> Flatten -> Gemm(int32 bias) -> Q -> DQ
  b.Node("DequantizeLinear", {"aq", "s2", "z2"}, {"ad"});
  b.Node("GlobalAveragePool", {"ad"}, {"g"});
  b.Node("QuantizeLinear", {"g", "s3", "z3"}, {"gq"});
  b.Node("DequantizeLinear", {"gq", "s3", "z3"}, {"gd"});
  b.Node("Flatten", {"gd"}, {"f"});
  b.Node("QuantizeLinear", {"f", "s3", "z3"}, {"fq"});
  b.Node("DequantizeLinear", {"fq", "s3", "z3"}, {"fd"});
  b.Node("DequantizeLinear", {"w", "ws", "wz"}, {"wd"});
  b.Node("DequantizeLinear", {"bq", "bs", "bz"}, {"bd"});
  b.Node("Gemm", {"fd", "wd", "bd"}, {"m"});
  b.Node("QuantizeLinear", {"m", "ys", "yz"}, {"mq"});
  b.Node("DequantizeLinear", {"mq", "ys", "yz"}, {"y"});
  const std::string bytes = b.Serialize();
  auto g = OptimizedGraph(bytes);
  ASSERT_TRUE(g.ok()) << g.status();
  EXPECT_EQ(CountOps(*g, "QLinearAdd"), 1) << g->DebugString();
  EXPECT_EQ(CountOps(*g, "QLinearGlobalAveragePool"), 1) << g->DebugString();
  EXPECT_EQ(CountOps(*g, "QGemm"), 1) << g->DebugString();
  EXPECT_EQ(CountOps(*g, "QuantizeLinear"), 2) << g->DebugString();    // the inputs'
  EXPECT_EQ(CountOps(*g, "DequantizeLinear"), 1) << g->DebugString();  // the output's
  EXPECT_EQ(CountOps(*g, "Add") + CountOps(*g, "Gemm") + CountOps(*g, "GlobalAveragePool"), 0) << g->DebugString();

  auto y = RunPlainAndOptimized(bytes, {{"x", RandomF32({2, 6, 5, 5}, 9, -3.f, 3.f)},
                                        {"x2", RandomF32({2, 6, 7, 7}, 10, -3.f, 3.f)}});
  ASSERT_TRUE(y.ok()) << y.status();
  const auto& [u, v] = *y;
  ASSERT_EQ(u.shape(), v.shape());
  for (int64_t i = 0; i < u.num_elements(); ++i) {
    // One step of the output scale, plus what one step of an intermediate can move it.
    EXPECT_NEAR(u.data<float>()[i], v.data<float>()[i], 0.04f * 3) << i;
  }
}

TEST(FuseQdqOps, ActivationBetweenProductAndQuantizeBecomesTheOutputRange) {
  // PyTorch's QDQ export: DQ -> Conv -> Relu -> Q and DQ -> Gemm -> Clip -> Q.
  std::mt19937 rng(5);
  auto s8 = [&](std::vector<int64_t> shape) {
    Tensor t = Tensor::Zeros(DataType::kInt8, shape);
    for (int64_t i = 0; i < t.num_elements(); ++i) t.data<int8_t>()[i] = static_cast<int8_t>(int(rng() % 201) - 100);
    return t;
  };
  OnnxBuilder b(13);
  b.Input("x", DataType::kFloat32, {3, 4, 6, 6}).Output("y");
  b.Initializer("s", ScalarF32(0.03f)).Initializer("z", ScalarU8(128)).Initializer("s2", ScalarF32(0.02f)).Initializer("z2", ScalarU8(3));
  b.Initializer("w", s8({5, 4, 3, 3})).Initializer("ws", ScalarF32(0.01f)).Initializer("wz", Tensor::Zeros(DataType::kInt8, {}));
  b.Initializer("g", s8({7, 5 * 6 * 6})).Initializer("gs", ScalarF32(0.005f));
  b.Initializer("lo", ScalarF32(-0.5f)).Initializer("hi", ScalarF32(0.75f)).Initializer("s3", ScalarF32(0.01f)).Initializer("z3", ScalarU8(60));
  b.Node("QuantizeLinear", {"x", "s", "z"}, {"q"});
  b.Node("DequantizeLinear", {"q", "s", "z"}, {"d"});
  b.Node("DequantizeLinear", {"w", "ws", "wz"}, {"wd"});
  OnnxBuilder::SetInts(b.Node("Conv", {"d", "wd"}, {"c"}), "pads", {1, 1, 1, 1});
  b.Node("Relu", {"c"}, {"r"});
  b.Node("QuantizeLinear", {"r", "s2", "z2"}, {"rq"});
  b.Node("DequantizeLinear", {"rq", "s2", "z2"}, {"rd"});
  b.Node("Flatten", {"rd"}, {"f"});
  b.Node("QuantizeLinear", {"f", "s2", "z2"}, {"fq"});
  b.Node("DequantizeLinear", {"fq", "s2", "z2"}, {"fd"});
  b.Node("DequantizeLinear", {"g", "gs", "wz"}, {"gd"});
  OnnxBuilder::SetInt(b.Node("Gemm", {"fd", "gd"}, {"m"}), "transB", 1);
  b.Node("Clip", {"m", "lo", "hi"}, {"cl"});
  b.Node("QuantizeLinear", {"cl", "s3", "z3"}, {"mq"});
  b.Node("DequantizeLinear", {"mq", "s3", "z3"}, {"y"});
  const std::string bytes = b.Serialize();
  auto g = OptimizedGraph(bytes);
  ASSERT_TRUE(g.ok()) << g.status();
  EXPECT_EQ(CountOps(*g, "Relu") + CountOps(*g, "Clip") + CountOps(*g, "Conv") + CountOps(*g, "Gemm"), 0)
      << g->DebugString();
  EXPECT_EQ(CountOps(*g, "QGemm"), 1) << g->DebugString();
  auto y = RunPlainAndOptimized(bytes, {{"x", RandomF32({3, 4, 6, 6}, 2, -2.f, 2.f)}});
  ASSERT_TRUE(y.ok()) << y.status();
  const auto& [u, v] = *y;
  int clipped = 0;
  for (int64_t i = 0; i < u.num_elements(); ++i) {
    EXPECT_NEAR(u.data<float>()[i], v.data<float>()[i], 0.01f * 2.01f) << i;
    EXPECT_GE(v.data<float>()[i], -0.5f - 1e-6f);
    EXPECT_LE(v.data<float>()[i], 0.75f + 1e-6f);
    clipped += v.data<float>()[i] <= -0.5f + 1e-6f || v.data<float>()[i] >= 0.75f - 1e-6f;
  }
  EXPECT_GT(clipped, 0) << "the inputs never reach the clip range: the test cannot tell";
}

// DQ -> nearest Resize -> Q with equal parameters (a detector's upsampling)
// resizes the u8 values; a linear Resize stays float; and a QOperator-style
// u8 Resize that is not nearest is refused by name.
// Q(DQ(q)) with q's own scale and zero point is q (a quantized If branch
// requantizing a value the branch around it quantized); other parameters
// requantize.
TEST(FuseQdqOps, RequantizingWithTheSameParametersIsBypassed) {
  for (float second_scale : {0.03f, 0.05f}) {
    SCOPED_TRACE(second_scale);
    OnnxBuilder b(13);
    b.Input("x", DataType::kFloat32, {2, 9}).Output("y", DataType::kUInt8);
    b.Initializer("s", ScalarF32(0.03f)).Initializer("z", ScalarU8(120));
    b.Initializer("s2", ScalarF32(second_scale)).Initializer("z2", ScalarU8(120));
    b.Node("QuantizeLinear", {"x", "s", "z"}, {"q"});
    b.Node("DequantizeLinear", {"q", "s", "z"}, {"d"});
    b.Node("QuantizeLinear", {"d", "s2", "z2"}, {"q2"});
    b.Node("Flatten", {"q2"}, {"y"});  // (a reader, so q2 is not the graph output)
    const std::string bytes = b.Serialize();
    auto g = OptimizedGraph(bytes);
    ASSERT_TRUE(g.ok()) << g.status();
    const bool same = second_scale == 0.03f;
    EXPECT_EQ(CountOps(*g, "QuantizeLinear"), same ? 1 : 2) << g->DebugString();
    EXPECT_EQ(CountOps(*g, "DequantizeLinear"), same ? 0 : 1) << g->DebugString();
    auto y = RunPlainAndOptimized(bytes, {{"x", RandomF32({2, 9}, 4, -5.f, 5.f)}});
    ASSERT_TRUE(y.ok()) << y.status();
    for (int64_t i = 0; i < y->first.num_elements(); ++i) {
      ASSERT_EQ(y->first.data<uint8_t>()[i], y->second.data<uint8_t>()[i]) << i;
    }
  }
}

TEST(FuseQdqOps, NearestResizeRunsOnQuantizedValues) {
  for (const char* mode : {"nearest", "linear"}) {
    SCOPED_TRACE(mode);
    OnnxBuilder b(13);
    b.Input("x", DataType::kFloat32, {1, 3, 5, 7}).Output("y");
    b.Initializer("s", ScalarF32(0.03f)).Initializer("z", ScalarU8(120));
    b.Initializer("scales", Tensor::FromVector<float>(DataType::kFloat32, {4}, {1.f, 1.f, 2.f, 3.f}));
    b.Node("QuantizeLinear", {"x", "s", "z"}, {"q"});
    b.Node("DequantizeLinear", {"q", "s", "z"}, {"d"});
    auto& resize = b.Node("Resize", {"d", "", "scales"}, {"r"}, "up");
    OnnxBuilder::SetString(resize, "mode", mode);
    b.Node("QuantizeLinear", {"r", "s", "z"}, {"rq"});
    b.Node("DequantizeLinear", {"rq", "s", "z"}, {"y"});
    const std::string bytes = b.Serialize();
    auto g = OptimizedGraph(bytes);
    ASSERT_TRUE(g.ok()) << g.status();
    const bool nearest = std::string(mode) == "nearest";
    EXPECT_EQ(CountOps(*g, "DequantizeLinear"), nearest ? 1 : 2) << g->DebugString();
    auto y = RunPlainAndOptimized(bytes, {{"x", RandomF32({1, 3, 5, 7}, 4, -3.f, 3.f)}});
    ASSERT_TRUE(y.ok()) << y.status();
    const auto& [u, v] = *y;
    ASSERT_EQ(u.shape(), v.shape());
    ASSERT_EQ(u.shape(), (std::vector<int64_t>{1, 3, 10, 21}));
    for (int64_t i = 0; i < u.num_elements(); ++i) {
      if (nearest) {
        EXPECT_EQ(u.data<float>()[i], v.data<float>()[i]) << i;  // copies: exact
      } else {
        EXPECT_NEAR(u.data<float>()[i], v.data<float>()[i], 0.03f * 1.01f) << i;
      }
    }
  }
  OnnxBuilder b(13);
  b.Input("x", DataType::kUInt8, {1, 2, 3, 3}).Output("y");
  b.Initializer("scales", Tensor::FromVector<float>(DataType::kFloat32, {4}, {1.f, 1.f, 2.f, 2.f}));
  OnnxBuilder::SetString(b.Node("Resize", {"x", "", "scales"}, {"y"}, "u8_linear"), "mode", "linear");
  auto s = Session::LoadFromBytes(b.Serialize());
  EXPECT_EQ(s.status().code(), absl::StatusCode::kUnimplemented) << s.status();
  EXPECT_NE(s.status().message().find("u8_linear"), std::string::npos) << s.status();
  EXPECT_NE(s.status().message().find("nearest only"), std::string::npos) << s.status();
}

// Output "y" (u8) of an island model over x [2, 7, 5, 3] (u8, its 210
// elements spread over the byte values), unoptimized and optimized: the same
// bytes.
void ExpectSameBytesOnEveryByte(const std::string& bytes, int stride) {
  Tensor x = Tensor::Zeros(DataType::kUInt8, {2, 7, 5, 3});
  for (int64_t i = 0; i < x.num_elements(); ++i) x.data<uint8_t>()[i] = static_cast<uint8_t>((i * stride + 7) % 256);
  auto y = RunPlainAndOptimized(bytes, {{"x", x}});
  ASSERT_TRUE(y.ok()) << y.status();
  ASSERT_EQ(y->first.shape(), y->second.shape());
  for (int64_t i = 0; i < x.num_elements(); ++i) {
    ASSERT_EQ(y->first.data<uint8_t>()[i], y->second.data<uint8_t>()[i]) << "at " << i;
  }
}

// ONNX Runtime's QDQ spelling of x * Clip(x + 3, 0, 6) / 6 after an affine
// a * x + b with quantized scalars: every step between Q and DQ, one step a
// product of two tensors. All of it depends on the byte x only, so it is one
// QLinearTable, byte-exact with the unoptimized graph (the island folded over
// all 256 bytes). `shared`: x's DequantizeLinear is also read outside (a
// residual), and stays; `leak`: an inner value is a graph output too, so
// the island ends before it.
std::string QdqHardSwishIsland(bool shared, bool leak) {
  OnnxBuilder b(13);
  b.Input("x", DataType::kUInt8, {2, 7, 5, 3}).Output("y", DataType::kUInt8);
  if (shared) b.Output("r");
  if (leak) b.Output("c_q", DataType::kUInt8);
  b.Initializer("xs", ScalarF32(0.05f)).Initializer("xz", ScalarU8(120));
  b.Initializer("ks", ScalarF32(0.02f)).Initializer("kz", ScalarU8(0));
  b.Initializer("a_q", ScalarU8(90)).Initializer("b_q", ScalarU8(17)).Initializer("three_q", ScalarU8(150));
  b.Initializer("six_q", ScalarU8(255)).Initializer("zero", ScalarF32(0.f)).Initializer("six", ScalarF32(6.f));
  for (const char* v : {"m", "h", "a3", "c", "p", "y"}) {
    b.Initializer(std::string(v) + "_s", ScalarF32(0.045f)).Initializer(std::string(v) + "_z", ScalarU8(100));
  }
  auto dq = [&](const std::string& q, const std::string& s, const std::string& z, const std::string& out) {
    b.Node("DequantizeLinear", {q, s, z}, {out});
  };
  auto step = [&](const std::string& op, std::vector<std::string> in, const std::string& v) {
    b.Node(op, in, {v + "_f"});
    b.Node("QuantizeLinear", {v + "_f", v + "_s", v + "_z"}, {v + "_q"});
    dq(v + "_q", v + "_s", v + "_z", v + "_d");
  };
  dq("x", "xs", "xz", "x_d");
  dq("a_q", "ks", "kz", "a_d");
  dq("b_q", "ks", "kz", "b_d");
  dq("three_q", "ks", "kz", "three_d");
  dq("six_q", "ks", "kz", "six_d");
  if (shared) b.Node("Relu", {"x_d"}, {"r"});
  step("Mul", {"x_d", "a_d"}, "m");
  step("Add", {"m_d", "b_d"}, "h");
  step("Add", {"h_d", "three_d"}, "a3");
  step("Clip", {"a3_d", "zero", "six"}, "c");
  step("Mul", {"h_d", "c_d"}, "p");
  b.Node("Div", {"p_d", "six_d"}, {"y_f"});
  b.Node("QuantizeLinear", {"y_f", "y_s", "y_z"}, {"y"});
  return b.Serialize();
}

TEST(FuseQdqOps, ElementwiseIslandOfOneQuantizedValueBecomesATable) {
  for (bool shared : {false, true}) {
    for (bool leak : {false, true}) {
      SCOPED_TRACE(::testing::Message() << (shared ? "x read outside" : "") << (leak ? " inner value leaks" : ""));
      const std::string bytes = QdqHardSwishIsland(shared, leak);
      auto g = OptimizedGraph(bytes);
      ASSERT_TRUE(g.ok()) << g.status();
      // With the leak: x -> h, h -> c (the graph output), the product of the
      // two (a QLinearMul), and its division.
      EXPECT_EQ(CountOps(*g, "QLinearTable"), leak ? 3 : 1) << g->DebugString();
      EXPECT_EQ(CountOps(*g, "QLinearMul"), leak ? 1 : 0) << g->DebugString();
      EXPECT_EQ(CountOps(*g, "Mul") + CountOps(*g, "Div") + CountOps(*g, "Clip") + CountOps(*g, "Add"), 0)
          << g->DebugString();
      ExpectSameBytesOnEveryByte(bytes, 37);
    }
  }
}

// The same island in QOperator form (ONNX Runtime's QLinearMul/QLinearAdd
// by quantized scalars, then the product of two values of one byte, then a
// QLinearSigmoid): one QLinearTable with the unoptimized graph's bytes.
TEST(FuseQdqOps, QOperatorIslandOfOneQuantizedValueBecomesATable) {
  OnnxBuilder b(13);
  b.Input("x", DataType::kUInt8, {2, 7, 5, 3}).Output("y", DataType::kUInt8);
  b.Initializer("xs", ScalarF32(0.05f)).Initializer("xz", ScalarU8(120));
  b.Initializer("ks", ScalarF32(0.02f)).Initializer("kz", ScalarU8(0));
  b.Initializer("a_q", ScalarU8(90)).Initializer("b_q", ScalarU8(17)).Initializer("three_q", ScalarU8(150));
  for (const char* v : {"m", "h", "a3", "p", "y"}) {
    b.Initializer(std::string(v) + "_s", ScalarF32(0.045f)).Initializer(std::string(v) + "_z", ScalarU8(100));
  }
  b.Initializer("ys2", ScalarF32(1.f / 256)).Initializer("yz2", ScalarU8(0));
  auto qop = [&](const char* op, std::vector<std::string> in, const std::string& out) {
    b.Node(op, in, {out}).set_domain("com.microsoft");
  };
  qop("QLinearMul", {"a_q", "ks", "kz", "x", "xs", "xz", "m_s", "m_z"}, "m");
  qop("QLinearAdd", {"m", "m_s", "m_z", "b_q", "ks", "kz", "h_s", "h_z"}, "h");
  qop("QLinearAdd", {"h", "h_s", "h_z", "three_q", "ks", "kz", "a3_s", "a3_z"}, "a3");
  qop("QLinearMul", {"h", "h_s", "h_z", "a3", "a3_s", "a3_z", "p_s", "p_z"}, "p");
  qop("QLinearSigmoid", {"p", "p_s", "p_z", "ys2", "yz2"}, "y");
  const std::string bytes = b.Serialize();
  auto g = OptimizedGraph(bytes);
  ASSERT_TRUE(g.ok()) << g.status();
  EXPECT_EQ(CountOps(*g, "QLinearTable"), 1) << g->DebugString();
  EXPECT_EQ(CountOps(*g, "QLinearMul") + CountOps(*g, "QLinearAdd") + CountOps(*g, "QLinearSigmoid"), 0)
      << g->DebugString();
  ExpectSameBytesOnEveryByte(bytes, 53);
}

// ONNX Runtime's QOperator squeeze-excitation input: DQ(x) -> Div by 6 (a
// HardSwish's tail) read by a QuantizeLinear and by a float
// GlobalAveragePool -> Q. The pool becomes QLinearGlobalAveragePool of x
// with the division in its input scale, and the division's other reader a
// byte table; both within one step of the float graph (Mul by a constant
// alike).
TEST(FuseQdqOps, ScaledGlobalAveragePoolBecomesQLinearGlobalAveragePool) {
  for (const char* op : {"Div", "Mul"}) {
    SCOPED_TRACE(op);
    OnnxBuilder b(13);
    b.Input("x", DataType::kUInt8, {2, 6, 5, 7}).Output("y", DataType::kUInt8).Output("p", DataType::kUInt8);
    b.Initializer("xs", ScalarF32(0.05f)).Initializer("xz", ScalarU8(120)).Initializer("k", ScalarF32(6.f));
    b.Initializer("ys", ScalarF32(0.01f)).Initializer("yz", ScalarU8(110));
    b.Initializer("ps", ScalarF32(0.003f)).Initializer("pz", ScalarU8(128));
    b.Node("DequantizeLinear", {"x", "xs", "xz"}, {"d"});
    b.Node(op, {"d", "k"}, {"h"});
    b.Node("QuantizeLinear", {"h", "ys", "yz"}, {"y"});
    b.Node("GlobalAveragePool", {"h"}, {"g"});
    b.Node("QuantizeLinear", {"g", "ps", "pz"}, {"p"});
    const std::string bytes = b.Serialize();
    auto g = OptimizedGraph(bytes);
    ASSERT_TRUE(g.ok()) << g.status();
    EXPECT_EQ(CountOps(*g, "QLinearGlobalAveragePool"), 1) << g->DebugString();
    EXPECT_EQ(CountOps(*g, "GlobalAveragePool") + CountOps(*g, op) + CountOps(*g, "DequantizeLinear"), 0)
        << g->DebugString();
    Tensor x = Tensor::Zeros(DataType::kUInt8, {2, 6, 5, 7});
    for (int64_t i = 0; i < x.num_elements(); ++i) x.data<uint8_t>()[i] = static_cast<uint8_t>((i * 37 + 11) % 256);
    for (const char* out : {"y", "p"}) {
      auto y = RunPlainAndOptimized(bytes, {{"x", x}}, {}, out);
      ASSERT_TRUE(y.ok()) << y.status();
      const auto& [u, v] = *y;
      ASSERT_EQ(u.shape(), v.shape());
      for (int64_t i = 0; i < u.num_elements(); ++i) {
        EXPECT_LE(std::abs(int{u.data<uint8_t>()[i]} - int{v.data<uint8_t>()[i]}), 1) << out << " " << i;
      }
    }
  }
}

// A detector's head as ONNX Runtime's quantizer writes it: QDQ Conv ->
// ConvTranspose 2x2 / 2 (per-channel weights along axis 1, int32 bias) ->
// Add of a per-channel constant -> BatchNormalization -> Relu ->
// ConvTranspose to one channel. Both transposed convolutions run on the INT8
// kernel in NHWC; the Add, the BN and the Relu become one per-channel table
// read channels innermost; no transpose is left between the convolutions.
// Scales that do not amplify a step: the output within two steps of the
// float graph's, and mostly equal.
TEST(FuseQdqOps, QdqConvTransposeHeadRunsInt8InNhwc) {
  std::mt19937 rng(8);
  auto s8 = [&](std::vector<int64_t> shape, int range) {
    Tensor t = Tensor::Zeros(DataType::kInt8, shape);
    for (int64_t i = 0; i < t.num_elements(); ++i) t.data<int8_t>()[i] = static_cast<int8_t>(int(rng() % (2 * range + 1)) - range);
    return t;
  };
  auto floats = [&](int64_t c, float lo, float hi) {
    std::uniform_real_distribution<float> u(lo, hi);
    std::vector<float> v(c);
    for (float& x : v) x = u(rng);
    return v;
  };
  const int64_t c = 12;
  const std::vector<float> w1s = floats(c, 0.004f, 0.012f);
  std::vector<float> b1s(c);
  std::vector<int32_t> bias(c);
  for (int64_t i = 0; i < c; ++i) {
    b1s[i] = 0.05f * w1s[i];
    bias[i] = static_cast<int32_t>(rng() % 2001) - 1000;
  }
  auto f32 = [](std::vector<int64_t> shape, const std::vector<float>& v) {
    return Tensor::FromVector<float>(DataType::kFloat32, shape, v);
  };
  const std::vector<float> k = floats(c, -0.3f, 0.3f);
  std::vector<uint8_t> kq(c);
  for (int64_t i = 0; i < c; ++i) kq[i] = static_cast<uint8_t>(std::lround(k[i] / 0.003f) + 100);
  // The per-channel constant as a float (a float chain to the next Q) or, as
  // ONNX Runtime quantizes it, DQ(u8) (a QLinearAdd of a constant).
  for (bool quantized_constant : {false, true}) {
  SCOPED_TRACE(quantized_constant ? "QLinearAdd" : "Add");
  OnnxBuilder b(13);
  b.Input("x", DataType::kUInt8, {2, 5, 9, 11}).Output("y", DataType::kUInt8);
  b.Initializer("xs", ScalarF32(0.03f)).Initializer("xz", ScalarU8(120)).Initializer("wz", Tensor::Zeros(DataType::kInt8, {}));
  b.Initializer("w0", s8({c, 5, 3, 3}, 90)).Initializer("w0s", ScalarF32(0.01f));
  b.Initializer("s1", ScalarF32(0.05f)).Initializer("z1", ScalarU8(128));
  b.Initializer("w1", s8({c, c, 2, 2}, 100)).Initializer("w1s", f32({c}, w1s));
  b.Initializer("b1", Tensor::FromVector<int32_t>(DataType::kInt32, {c}, bias)).Initializer("b1s", f32({c}, b1s));
  b.Initializer("s2", ScalarF32(0.06f)).Initializer("z2", ScalarU8(100));
  b.Initializer("s3", ScalarF32(0.07f)).Initializer("z3", ScalarU8(90));
  if (quantized_constant) {
    b.Initializer("kq", Tensor::FromVector<uint8_t>(DataType::kUInt8, {1, c, 1, 1}, kq));
    b.Initializer("ks", ScalarF32(0.003f)).Initializer("kz", ScalarU8(100));
    b.Node("DequantizeLinear", {"kq", "ks", "kz"}, {"k"});
  } else {
    b.Initializer("k", f32({1, c, 1, 1}, k));
  }
  b.Initializer("g", f32({c}, floats(c, 0.5f, 1.5f))).Initializer("be", f32({c}, floats(c, -0.5f, 0.5f)));
  b.Initializer("mu", f32({c}, floats(c, -0.2f, 0.2f))).Initializer("va", f32({c}, floats(c, 0.5f, 2.f)));
  b.Initializer("s4", ScalarF32(0.15f)).Initializer("z4", ScalarU8(0));
  b.Initializer("w2", s8({c, 1, 2, 2}, 120)).Initializer("w2s", ScalarF32(0.01f));
  b.Initializer("s5", ScalarF32(0.2f)).Initializer("z5", ScalarU8(128));
  b.Node("DequantizeLinear", {"x", "xs", "xz"}, {"d0"});
  b.Node("DequantizeLinear", {"w0", "w0s", "wz"}, {"w0d"});
  OnnxBuilder::SetInts(b.Node("Conv", {"d0", "w0d"}, {"c0"}), "pads", {1, 1, 1, 1});
  b.Node("QuantizeLinear", {"c0", "s1", "z1"}, {"q1"});
  b.Node("DequantizeLinear", {"q1", "s1", "z1"}, {"d1"});
  OnnxBuilder::SetInt(b.Node("DequantizeLinear", {"w1", "w1s", "wz"}, {"w1d"}), "axis", 1);
  OnnxBuilder::SetInt(b.Node("DequantizeLinear", {"b1", "b1s"}, {"b1d"}), "axis", 0);
  OnnxBuilder::SetInts(b.Node("ConvTranspose", {"d1", "w1d", "b1d"}, {"t1"}), "strides", {2, 2});
  b.Node("QuantizeLinear", {"t1", "s2", "z2"}, {"q2"});
  b.Node("DequantizeLinear", {"q2", "s2", "z2"}, {"d2"});
  b.Node("Add", {"d2", "k"}, {"a"});
  b.Node("QuantizeLinear", {"a", "s3", "z3"}, {"q3"});
  b.Node("DequantizeLinear", {"q3", "s3", "z3"}, {"d3"});
  b.Node("BatchNormalization", {"d3", "g", "be", "mu", "va"}, {"n"});
  b.Node("Relu", {"n"}, {"r"});
  b.Node("QuantizeLinear", {"r", "s4", "z4"}, {"q4"});
  b.Node("DequantizeLinear", {"q4", "s4", "z4"}, {"d4"});
  b.Node("DequantizeLinear", {"w2", "w2s", "wz"}, {"w2d"});
  OnnxBuilder::SetInts(b.Node("ConvTranspose", {"d4", "w2d"}, {"t2"}), "strides", {2, 2});
  b.Node("QuantizeLinear", {"t2", "s5", "z5"}, {"y"});
  const std::string bytes = b.Serialize();
  auto g = OptimizedGraph(bytes);
  ASSERT_TRUE(g.ok()) << g.status();
  EXPECT_EQ(CountOps(*g, "QLinearConvTransposeNhwc"), 2) << g->DebugString();
  EXPECT_EQ(CountOps(*g, "QLinearTable"), 1) << g->DebugString();  // Add + BN + Relu
  for (const char* op : {"ConvTranspose", "Add", "QLinearAdd", "BatchNormalization", "DequantizeLinear"}) {
    EXPECT_EQ(CountOps(*g, op), 0) << op << "\n" << g->DebugString();
  }
  EXPECT_EQ(CountOps(*g, "Transpose"), 2) << g->DebugString();  // the input's and the output's
  Tensor x = Tensor::Zeros(DataType::kUInt8, {2, 5, 9, 11});
  for (int64_t i = 0; i < x.num_elements(); ++i) x.data<uint8_t>()[i] = static_cast<uint8_t>(rng());
  for (int threads : {1, 2}) {
    SessionOptions o;
    o.num_threads = threads;
    auto y = RunPlainAndOptimized(bytes, {{"x", x}}, o);
    ASSERT_TRUE(y.ok()) << y.status();
    const auto& [u, v] = *y;
    ASSERT_EQ(u.shape(), (std::vector<int64_t>{2, 1, 36, 44}));
    ASSERT_EQ(u.shape(), v.shape());
    int differ = 0, lo = 255, hi = 0;
    for (int64_t i = 0; i < u.num_elements(); ++i) {
      const int a = u.data<uint8_t>()[i], e = v.data<uint8_t>()[i];
      EXPECT_LE(std::abs(a - e), 2) << i;
      differ += a != e;
      lo = std::min(lo, e), hi = std::max(hi, e);
    }
    EXPECT_LT(differ, u.num_elements() / 20);
    EXPECT_GT(hi - lo, 100) << "the output barely varies: the test cannot tell";
  }
  }
}

}  // namespace
}  // namespace kvant
