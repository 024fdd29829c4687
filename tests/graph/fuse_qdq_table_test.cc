// Quantized unary chains as byte tables (graph/passes/fuse_qdq_table.cc):
// DequantizeLinear -> scalar affine, HardSwish, Clip, LeakyRelu ->
// QuantizeLinear becomes kvant.QLinearTable, u8 and s8 on either side, with
// exactly the bytes of the float chain; chains that are not unary maps stay
// in float. And the byte lookup kernels against their reference.
#include <cstring>
#include <random>

#include "gtest/gtest.h"
#include "kvant/kvant.h"
#include "ops/cpu/lookup_u8.h"
#include "runtime/cpu_caps.h"
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
using testing::ScalarS8;
using testing::ScalarU8;


// x -> Q(u8) -> DQ -> Mul(1.3) -> Add(-0.2) -> HardSwish -> Clip(-1, 4) -> Q(s8)
//   -> DQ -> LeakyRelu -> Q(u8) -> DQ -> y
std::string ChainModel() {
  OnnxBuilder b(13);
  b.Input("x", DataType::kFloat32, {2, 3, 4, 5}).Output("y");
  b.Initializer("s", ScalarF32(0.03f)).Initializer("z", ScalarU8(120));
  b.Initializer("s2", ScalarF32(0.021f)).Initializer("z2", ScalarS8(-7));
  b.Initializer("s3", ScalarF32(0.017f)).Initializer("z3", ScalarU8(30));
  b.Initializer("k", ScalarF32(1.3f)).Initializer("c", Tensor::FromVector<float>(DataType::kFloat32, {1}, {-0.2f}));
  b.Initializer("lo", ScalarF32(-1.f)).Initializer("hi", ScalarF32(4.f));
  b.Node("QuantizeLinear", {"x", "s", "z"}, {"q"});
  b.Node("DequantizeLinear", {"q", "s", "z"}, {"d"});
  b.Node("Mul", {"k", "d"}, {"m"});
  b.Node("Add", {"m", "c"}, {"a"});
  b.Node("HardSwish", {"a"}, {"h"});
  b.Node("Clip", {"h", "lo", "hi"}, {"cl"});
  b.Node("QuantizeLinear", {"cl", "s2", "z2"}, {"q2"});
  b.Node("DequantizeLinear", {"q2", "s2", "z2"}, {"d2"});
  OnnxBuilder::SetFloat(b.Node("LeakyRelu", {"d2"}, {"l"}), "alpha", 0.1f);
  b.Node("QuantizeLinear", {"l", "s3", "z3"}, {"q3"});
  b.Node("DequantizeLinear", {"q3", "s3", "z3"}, {"y"});
  return b.Serialize();
}

TEST(FuseQdqTables, UnaryChainsBecomeTablesWithTheFloatResults) {
  const std::string bytes = ChainModel();
  auto g = OptimizedGraph(bytes);
  ASSERT_TRUE(g.ok()) << g.status();
  // Both quantized steps depend on x's byte only: one table
  // (fuse_qdq_islands.cc), which keeps the intermediate rounding to s8.
  EXPECT_EQ(CountOps(*g, "QLinearTable"), 1) << g->DebugString();
  for (const char* op : {"Mul", "Add", "HardSwish", "Clip", "LeakyRelu", "QLinearLeakyRelu"}) {
    EXPECT_EQ(CountOps(*g, op), 0) << op << "\n" << g->DebugString();
  }
  auto y = RunPlainAndOptimized(bytes, {{"x", RandomF32({2, 3, 4, 5}, 4, -4.f, 4.f)}});
  ASSERT_TRUE(y.ok()) << y.status();
  const auto& [plain, optimized] = *y;
  ASSERT_EQ(plain.shape(), optimized.shape());
  for (int64_t i = 0; i < plain.num_elements(); ++i) {
    EXPECT_EQ(plain.data<float>()[i], optimized.data<float>()[i]) << i;  // the same bytes, dequantized alike
  }
}

// The spelled-out GELU between INT8 MatMuls of a quantized transformer
// (DQ -> Div -> Erf -> Add -> Mul(x) -> Mul(0.5) -> Q): Gelu, then a table.
TEST(FuseQdqTables, QuantizedGeluIslandBecomesATable) {
  OnnxBuilder b(13);
  b.Input("x", DataType::kFloat32, {3, 40}).Output("y");
  b.Initializer("s", ScalarF32(0.04f)).Initializer("z", ScalarU8(128));
  b.Initializer("s2", ScalarF32(0.03f)).Initializer("z2", ScalarU8(10));
  b.Initializer("sqrt2", ScalarF32(1.4142135f)).Initializer("one", ScalarF32(1.f)).Initializer("half", ScalarF32(0.5f));
  b.Node("QuantizeLinear", {"x", "s", "z"}, {"q"});
  b.Node("DequantizeLinear", {"q", "s", "z"}, {"d"});
  b.Node("Div", {"d", "sqrt2"}, {"v"});
  b.Node("Erf", {"v"}, {"e"});
  b.Node("Add", {"e", "one"}, {"a"});
  b.Node("Mul", {"d", "a"}, {"p"});
  b.Node("Mul", {"p", "half"}, {"g"});
  b.Node("QuantizeLinear", {"g", "s2", "z2"}, {"q2"});
  b.Node("DequantizeLinear", {"q2", "s2", "z2"}, {"y"});
  const std::string bytes = b.Serialize();
  auto g = OptimizedGraph(bytes);
  ASSERT_TRUE(g.ok()) << g.status();
  EXPECT_EQ(CountOps(*g, "QLinearTable"), 1) << g->DebugString();
  EXPECT_EQ(CountOps(*g, "Gelu") + CountOps(*g, "Erf"), 0) << g->DebugString();
  auto y = RunPlainAndOptimized(bytes, {{"x", RandomF32({3, 40}, 5, -5.f, 5.f)}});
  ASSERT_TRUE(y.ok()) << y.status();
  const auto& [plain, optimized] = *y;
  int off = 0;  // the plain run's FastErf in the spelled chain and Gelu's agree to float rounding
  for (int64_t i = 0; i < plain.num_elements(); ++i) {
    ASSERT_NEAR(plain.data<float>()[i], optimized.data<float>()[i], 0.03f + 1e-6f) << i;
    off += plain.data<float>()[i] != optimized.data<float>()[i];
  }
  EXPECT_LE(off, 2);
}

// A per-column constant is not one map for every element: that island
// stays in float. Two varying operands of one byte (x * x) and a value read
// twice (Sigmoid(x) + x) are still functions of that byte: tables, with the
// float graph's bytes.
TEST(FuseQdqTables, PerColumnConstantsStayInFloatFunctionsOfOneByteDoNot) {
  OnnxBuilder b(13);
  b.Input("x", DataType::kFloat32, {2, 5}).Output("y1").Output("y2").Output("y3");
  b.Initializer("s", ScalarF32(0.03f)).Initializer("z", ScalarU8(120));
  b.Initializer("v", Tensor::FromVector<float>(DataType::kFloat32, {5}, {1.f, 2.f, 3.f, 4.f, 5.f}));
  b.Node("QuantizeLinear", {"x", "s", "z"}, {"q"});
  b.Node("DequantizeLinear", {"q", "s", "z"}, {"d1"});
  b.Node("Mul", {"d1", "v"}, {"m1"});
  b.Node("QuantizeLinear", {"m1", "s", "z"}, {"q1"});
  b.Node("DequantizeLinear", {"q1", "s", "z"}, {"y1"});
  b.Node("DequantizeLinear", {"q", "s", "z"}, {"d2"});
  b.Node("Mul", {"d2", "d2"}, {"m2"});
  b.Node("Tanh", {"m2"}, {"t2"});
  b.Node("QuantizeLinear", {"t2", "s", "z"}, {"q2"});
  b.Node("DequantizeLinear", {"q2", "s", "z"}, {"y2"});
  b.Node("DequantizeLinear", {"q", "s", "z"}, {"d3"});
  b.Node("Sigmoid", {"d3"}, {"g3"});
  b.Node("Add", {"g3", "d3"}, {"a3"});
  b.Node("QuantizeLinear", {"a3", "s", "z"}, {"q3"});
  b.Node("DequantizeLinear", {"q3", "s", "z"}, {"y3"});
  const std::string bytes = b.Serialize();
  auto g = OptimizedGraph(bytes);
  ASSERT_TRUE(g.ok()) << g.status();
  EXPECT_EQ(CountOps(*g, "QLinearTable"), 2) << g->DebugString();
  EXPECT_EQ(CountOps(*g, "Mul"), 1) << g->DebugString();
  EXPECT_EQ(CountOps(*g, "Tanh") + CountOps(*g, "Sigmoid"), 0) << g->DebugString();
  SessionOptions plain_options;
  plain_options.optimize = false;
  auto plain = Session::LoadFromBytes(bytes, plain_options);
  auto optimized = Session::LoadFromBytes(bytes);
  ASSERT_TRUE(plain.ok() && optimized.ok());
  const TensorMap in = {{"x", RandomF32({2, 5}, 6, -3.f, 3.f)}};
  auto a = plain->Run(in);
  auto o = optimized->Run(in);
  ASSERT_TRUE(a.ok() && o.ok());
  for (const char* y : {"y1", "y2", "y3"}) {
    for (int64_t i = 0; i < 10; ++i) EXPECT_EQ(a->at(y).data<float>()[i], o->at(y).data<float>()[i]) << y << " " << i;
  }
}

// DQ -> BatchNormalization (-> Relu) -> Q, as ONNX Runtime leaves a BN after
// a ConvTranspose: one table per channel (axis 1), the float chain's bytes
// exactly, u8 and s8, rank 3 and 4, planes of odd length; a BN whose
// parameters are computed stays in float.
TEST(FuseQdqTables, BatchNormalizationChainBecomesPerChannelTables) {
  std::mt19937 rng(17);
  auto vec = [&](int64_t c, float lo, float hi) {
    std::uniform_real_distribution<float> u(lo, hi);
    std::vector<float> v(c);
    for (float& x : v) x = u(rng);
    return Tensor::FromVector<float>(DataType::kFloat32, {c}, v);
  };
  for (DataType t : {DataType::kUInt8, DataType::kInt8}) {
    for (bool relu : {false, true}) {
      for (const std::vector<int64_t>& shape : {std::vector<int64_t>{2, 5, 7, 9}, std::vector<int64_t>{3, 6, 11}}) {
        SCOPED_TRACE(::testing::Message() << (t == DataType::kInt8 ? "s8" : "u8") << (relu ? " relu" : "")
                                          << " rank " << shape.size());
        const int64_t c = shape[1];
        const Tensor zp = t == DataType::kInt8 ? ScalarS8(-5) : ScalarU8(121);
        OnnxBuilder b(13);
        b.Input("x", t, shape).Output("y", t);
        b.Initializer("s", ScalarF32(0.04f)).Initializer("z", zp).Initializer("ys", ScalarF32(0.03f)).Initializer("yz", zp);
        b.Initializer("g", vec(c, -2.f, 2.f)).Initializer("b", vec(c, -1.f, 1.f)).Initializer("m", vec(c, -0.5f, 0.5f));
        b.Initializer("v", vec(c, 0.2f, 3.f));
        b.Node("DequantizeLinear", {"x", "s", "z"}, {"d"});
        b.Node("BatchNormalization", {"d", "g", "b", "m", "v"}, {"n"});
        if (relu) b.Node("Relu", {"n"}, {"r"});
        b.Node("QuantizeLinear", {relu ? "r" : "n", "ys", "yz"}, {"y"});
        const std::string bytes = b.Serialize();
        auto g = OptimizedGraph(bytes);
        ASSERT_TRUE(g.ok()) << g.status();
        EXPECT_EQ(CountOps(*g, "QLinearTable"), 1) << g->DebugString();
        EXPECT_EQ(CountOps(*g, "BatchNormalization") + CountOps(*g, "DequantizeLinear"), 0) << g->DebugString();
        Tensor x = Tensor::Zeros(t, shape);
        for (int64_t i = 0; i < x.num_elements(); ++i) static_cast<uint8_t*>(x.raw_data())[i] = static_cast<uint8_t>(rng());
        for (int threads : {1, 2}) {
          SessionOptions o;
          o.num_threads = threads;
          auto y = RunPlainAndOptimized(bytes, {{"x", x}}, o);
          ASSERT_TRUE(y.ok()) << y.status();
          ASSERT_EQ(y->first.shape(), y->second.shape());
          EXPECT_EQ(std::memcmp(y->first.raw_data(), y->second.raw_data(), x.num_elements()), 0);
        }
      }
    }
  }
  // The BN's scale an input: no table.
  OnnxBuilder b(13);
  b.Input("x", DataType::kUInt8, {1, 4, 3, 3}).Input("g", DataType::kFloat32, {4}).Output("y", DataType::kUInt8);
  b.Initializer("s", ScalarF32(0.04f)).Initializer("z", ScalarU8(121));
  b.Initializer("b", vec(4, -1.f, 1.f)).Initializer("m", vec(4, -0.5f, 0.5f)).Initializer("v", vec(4, 0.2f, 3.f));
  b.Node("DequantizeLinear", {"x", "s", "z"}, {"d"});
  b.Node("BatchNormalization", {"d", "g", "b", "m", "v"}, {"n"});
  b.Node("QuantizeLinear", {"n", "s", "z"}, {"y"});
  auto g = OptimizedGraph(b.Serialize());
  ASSERT_TRUE(g.ok()) << g.status();
  EXPECT_EQ(CountOps(*g, "QLinearTable"), 0) << g->DebugString();
}

// DQ -> Div by 6 (a HardSwish's tail) -> MaxPool -> Q, as PP-OCR's
// classifier leaves it before a pool: the Div commutes with the max, so the
// pool runs on the bytes and one table follows, the float chain's bytes
// exactly, u8 and s8, NCHW and (after a quantized convolution) NHWC, padding
// and odd sizes. A step that can decrease (Neg, a Mul by a negative
// constant) keeps the chain in float.
TEST(FuseQdqTables, MaxPoolAfterNonDecreasingStepsRunsOnBytes) {
  std::mt19937 rng(23);
  for (DataType t : {DataType::kUInt8, DataType::kInt8}) {
    for (bool after_conv : {false, true}) {
      for (const char* step : {"Div", "Neg", "MulNegative"}) {
        SCOPED_TRACE(::testing::Message() << DataTypeName(t) << (after_conv ? " after a convolution " : " ") << step);
        const std::vector<int64_t> shape = {2, 6, 7, 9};
        const Tensor zp = t == DataType::kInt8 ? ScalarS8(-9) : ScalarU8(117);
        OnnxBuilder b(13);
        b.Input("x", t, shape).Output("y", t);
        b.Initializer("s", ScalarF32(0.04f)).Initializer("z", zp).Initializer("ys", ScalarF32(0.01f)).Initializer("yz", zp);
        b.Initializer("k", ScalarF32(std::string(step) == "MulNegative" ? -0.5f : 6.f));
        std::string x = "x";
        if (after_conv) {  // a quantized 1x1 convolution: the region runs NHWC
          Tensor w = Tensor::Zeros(DataType::kInt8, {6, 6, 1, 1});
          for (int64_t i = 0; i < w.num_elements(); ++i) w.data<int8_t>()[i] = static_cast<int8_t>(int(rng() % 61) - 30);
          b.Initializer("w", w).Initializer("ws", ScalarF32(0.02f)).Initializer("wz", Tensor::Zeros(DataType::kInt8, {}));
          b.Node("QLinearConv", {"x", "s", "z", "w", "ws", "wz", "s", "z"}, {"c"});
          x = "c";
        }
        b.Node("DequantizeLinear", {x, "s", "z"}, {"d"});
        if (std::string(step) == "Div") {
          b.Node("Div", {"d", "k"}, {"h"});
        } else if (std::string(step) == "Neg") {
          b.Node("Neg", {"d"}, {"h"});
        } else {
          b.Node("Mul", {"d", "k"}, {"h"});
        }
        onnx::NodeProto& pool = b.Node("MaxPool", {"h"}, {"p"});
        OnnxBuilder::SetInts(pool, "kernel_shape", {3, 2});
        OnnxBuilder::SetInts(pool, "strides", {2, 2});
        OnnxBuilder::SetInts(pool, "pads", {1, 0, 1, 1});
        b.Node("QuantizeLinear", {"p", "ys", "yz"}, {"y"});
        const std::string bytes = b.Serialize();
        auto g = OptimizedGraph(bytes);
        ASSERT_TRUE(g.ok()) << g.status();
        const bool fused = std::string(step) == "Div";
        EXPECT_EQ(CountOps(*g, "QLinearTable"), fused ? 1 : 0) << g->DebugString();
        EXPECT_EQ(CountOps(*g, "DequantizeLinear"), fused ? 0 : 1) << g->DebugString();
        Tensor in = Tensor::Zeros(t, shape);
        for (int64_t i = 0; i < in.num_elements(); ++i) static_cast<uint8_t*>(in.raw_data())[i] = static_cast<uint8_t>(rng());
        for (int threads : {1, 2}) {
          SessionOptions o;
          o.num_threads = threads;
          auto y = RunPlainAndOptimized(bytes, {{"x", in}}, o);
          ASSERT_TRUE(y.ok()) << y.status();
          ASSERT_EQ(y->first.shape(), y->second.shape());
          EXPECT_EQ(std::memcmp(y->first.raw_data(), y->second.raw_data(), y->first.num_elements()), 0);
        }
      }
    }
  }
}

TEST(LookupU8, EveryKernelMatchesTheReference) {
  const CpuFeatures vbmi = kIsaAvx512 | kCpuAvx512vbmi;
  if ((ActiveCpuFeatures() & vbmi) != vbmi) GTEST_SKIP() << "no AVX-512 VBMI";
  std::mt19937 rng(11);
  uint8_t table[256];
  for (uint8_t& t : table) t = static_cast<uint8_t>(rng());
  for (int64_t n : {0, 1, 63, 64, 65, 127, 128, 256, 1000}) {
    std::vector<uint8_t> x(n), want(n), got(n + 64, 0xA5);
    for (int64_t i = 0; i < n; ++i) x[i] = static_cast<uint8_t>(i < 256 ? i : rng());  // every byte value
    cpu::ref::LookupU8(table, x.data(), n, want.data());
    cpu::avx512vbmi::LookupU8(table, x.data(), n, got.data());
    for (int64_t i = 0; i < n; ++i) ASSERT_EQ(got[i], want[i]) << "n " << n << " at " << i;
    for (int64_t i = n; i < n + 64; ++i) ASSERT_EQ(got[i], 0xA5) << "wrote past n " << n;
  }
  // Rows of a few dozen bytes at strides (a QLinearConcat's inputs in NHWC),
  // through the table or copied.
  for (int64_t len : {1, 24, 63, 64, 65, 130}) {
    const int64_t rows = 7, xs = len + 3, ys = len + 11;
    std::vector<uint8_t> x(rows * xs), want(rows * ys, 0x5A), got(rows * ys, 0x5A);
    for (uint8_t& v : x) v = static_cast<uint8_t>(rng());
    for (const uint8_t* t : {static_cast<const uint8_t*>(table), static_cast<const uint8_t*>(nullptr)}) {
      cpu::ref::LookupRowsU8(t, x.data(), rows, len, xs, want.data(), ys);
      cpu::avx512vbmi::LookupRowsU8(t, x.data(), rows, len, xs, got.data(), ys);
      ASSERT_EQ(got, want) << "len " << len << (t ? " table" : " copy");
      for (int64_t r = 0; r < rows; ++r) {
        ASSERT_EQ(want[r * ys], t ? t[x[r * xs]] : x[r * xs]);
        ASSERT_EQ(want[r * ys + len], 0x5A) << "wrote past the row";
      }
    }
  }
  // One table per channel, channels innermost (a per-channel table in NHWC).
  for (int64_t c : {1, 3, 16, 24, 37}) {
    std::vector<uint8_t> tables(c * 256 + 4, 0);
    for (int64_t i = 0; i < c * 256; ++i) tables[i] = static_cast<uint8_t>(rng());
    for (int64_t rows : {0, 1, 5, 17}) {
      const int64_t n = rows * c;
      std::vector<uint8_t> x(n), want(n), got(n + 64, 0xA5);
      for (uint8_t& v : x) v = static_cast<uint8_t>(rng());
      cpu::ref::LookupChannelsU8(tables.data(), c, x.data(), n, want.data());
      cpu::avx512vbmi::LookupChannelsU8(tables.data(), c, x.data(), n, got.data());
      for (int64_t i = 0; i < n; ++i) {
        ASSERT_EQ(want[i], tables[i % c * 256 + x[i]]);
        ASSERT_EQ(got[i], want[i]) << "c " << c << " n " << n << " at " << i;
      }
      for (int64_t i = n; i < n + 64; ++i) ASSERT_EQ(got[i], 0xA5) << "wrote past n " << n;
    }
  }
}

}  // namespace
}  // namespace kvant
