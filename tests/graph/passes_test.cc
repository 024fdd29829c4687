// Graph passes: each keeps the model's outputs (checked by running the
// optimized and unoptimized sessions on the same input) and does the rewrite
// it promises (checked on the graph).
#include <cmath>
#include <random>

#include "graph/onnx_import.h"
#include "graph/passes/passes.h"
#include "gtest/gtest.h"
#include "kvant/kvant.h"
#include "runtime/cpu_caps.h"
#include "tests/testing/graph_checks.h"
#include "tests/testing/onnx_builder.h"

namespace kvant {
namespace {

using testing::CountOps;
using testing::OnnxBuilder;
using testing::RandomF32;
using testing::ScalarF32;


void ExpectSameOutputs(const std::string& bytes, const TensorMap& inputs) {
  SessionOptions plain;
  plain.optimize = false;
  auto a = Session::LoadFromBytes(bytes, plain), b = Session::LoadFromBytes(bytes);
  ASSERT_TRUE(a.ok()) << a.status();
  ASSERT_TRUE(b.ok()) << b.status();
  auto ya = a->Run(inputs), yb = b->Run(inputs);
  ASSERT_TRUE(ya.ok()) << ya.status();
  ASSERT_TRUE(yb.ok()) << yb.status();
  for (const auto& [name, t] : *ya) {
    const Tensor& u = yb->at(name);
    ASSERT_EQ(t.shape(), u.shape());
    for (int64_t i = 0; i < t.num_elements(); ++i) {
      ASSERT_NEAR(t.data<float>()[i], u.data<float>()[i], 1e-4 * (1 + std::fabs(t.data<float>()[i]))) << name << " " << i;
    }
  }
}

std::string ConvBnRelu() {
  OnnxBuilder b;
  b.Input("x", DataType::kFloat32, {2, 3, 8, 8}).Output("y");
  b.Initializer("w", RandomF32({4, 3, 3, 3}, 1)).Initializer("cb", RandomF32({4}, 2));
  b.Initializer("s", RandomF32({4}, 3)).Initializer("b", RandomF32({4}, 4)).Initializer("m", RandomF32({4}, 5));
  b.Initializer("v", RandomF32({4}, 6, 0.5f, 2.f));
  b.Initializer("lo", Tensor::FromVector<float>(DataType::kFloat32, {}, {0.f}));
  b.Initializer("hi", Tensor::FromVector<float>(DataType::kFloat32, {}, {0.5f}));
  b.Node("Conv", {"x", "w", "cb"}, {"c"});
  b.Node("BatchNormalization", {"c", "s", "b", "m", "v"}, {"n"});
  b.Node("Identity", {"n"}, {"i"});
  b.Node("Clip", {"i", "lo", "hi"}, {"d"});
  b.Node("Dropout", {"d"}, {"y"});
  return b.Serialize();
}

TEST(Passes, BatchNormFoldsAndClipFusesIntoConv) {
  const std::string bytes = ConvBnRelu();
  auto g = ImportOnnxBytes(bytes, ".", "m.onnx");
  ASSERT_TRUE(g.ok());
  OptimizeOptions opt;
  opt.cpu = ActiveCpuFeatures();
  ASSERT_TRUE(OptimizeGraph(*g, opt).ok());
  EXPECT_EQ(g->nodes.size(), 1u) << g->DebugString();
  EXPECT_EQ(g->nodes[0].attrs.GetString("fused_activation", ""), "Clip");
  EXPECT_EQ(g->nodes[0].outputs[0], "y");
  ExpectSameOutputs(bytes, {{"x", RandomF32({2, 3, 8, 8}, 9)}});
}

TEST(Passes, GemmBatchNormAndReluFold) {
  OnnxBuilder b;
  b.Input("x", DataType::kFloat32, {5, 6}).Output("y");
  b.Initializer("w", RandomF32({4, 6}, 1)).Initializer("c", RandomF32({4}, 2));
  b.Initializer("s", RandomF32({4}, 3)).Initializer("bb", RandomF32({4}, 4)).Initializer("m", RandomF32({4}, 5));
  b.Initializer("v", RandomF32({4}, 6, 0.5f, 2.f));
  auto& gemm = b.Node("Gemm", {"x", "w", "c"}, {"g"});
  OnnxBuilder::SetInt(gemm, "transB", 1);
  OnnxBuilder::SetFloat(gemm, "beta", 0.5f);
  b.Node("BatchNormalization", {"g", "s", "bb", "m", "v"}, {"n"});
  b.Node("Relu", {"n"}, {"y"});
  const std::string bytes = b.Serialize();
  auto g = ImportOnnxBytes(bytes, ".", "m.onnx");
  ASSERT_TRUE(g.ok());
  OptimizeOptions opt;
  ASSERT_TRUE(OptimizeGraph(*g, opt).ok());
  EXPECT_EQ(g->nodes.size(), 1u) << g->DebugString();
  ExpectSameOutputs(bytes, {{"x", RandomF32({5, 6}, 9)}});
}

TEST(Passes, ConstantSubgraphsFoldAndDeadNodesGo) {
  OnnxBuilder b;
  b.Input("x", DataType::kFloat32, {2, 3}).Output("y");
  b.Initializer("a", RandomF32({2, 3}, 1)).Initializer("c", RandomF32({2, 3}, 2));
  b.Node("Mul", {"a", "c"}, {"ac"});
  b.Node("Exp", {"ac"}, {"e"});
  b.Node("Add", {"x", "e"}, {"y"});
  b.Node("Sqrt", {"x"}, {"unused"});
  const std::string bytes = b.Serialize();
  auto g = ImportOnnxBytes(bytes, ".", "m.onnx");
  ASSERT_TRUE(g.ok());
  ASSERT_TRUE(OptimizeGraph(*g, OptimizeOptions{}).ok());
  EXPECT_EQ(g->nodes.size(), 1u) << g->DebugString();
  EXPECT_EQ(CountOps(*g, "Add"), 1);
  EXPECT_FALSE(g->initializers.contains("a"));
  ExpectSameOutputs(bytes, {{"x", RandomF32({2, 3}, 9)}});
}

TEST(Passes, ActivationWithSecondReaderIsNotFused) {
  OnnxBuilder b;
  b.Input("x", DataType::kFloat32, {2, 3}).Output("y").Output("z");
  b.Initializer("w", RandomF32({3, 3}, 1));
  b.Node("MatMul", {"x", "w"}, {"m"});
  b.Node("Relu", {"m"}, {"y"});
  b.Node("Neg", {"m"}, {"z"});
  const std::string bytes = b.Serialize();
  auto g = ImportOnnxBytes(bytes, ".", "m.onnx");
  ASSERT_TRUE(g.ok());
  ASSERT_TRUE(OptimizeGraph(*g, OptimizeOptions{}).ok());
  EXPECT_EQ(CountOps(*g, "Relu"), 1);
  ExpectSameOutputs(bytes, {{"x", RandomF32({2, 3}, 9)}});
}

// MatMul -> Add(bias) -> Relu, with the bias as [N] after the product and as
// [1, N] before it, fuses into two MatMuls; a product with a second reader,
// and an addend that is not a vector, keep their Adds.
std::string MatMulBiasModel(int64_t k, int64_t n) {
  OnnxBuilder b;
  b.Input("x", DataType::kFloat32, {2, 5, k}).Output("y").Output("z").Output("u");
  b.Initializer("w1", RandomF32({k, n}, 1)).Initializer("b1", RandomF32({n}, 2));
  b.Initializer("w2", RandomF32({n, n}, 3)).Initializer("b2", RandomF32({1, n}, 4));
  b.Initializer("w3", RandomF32({n, n}, 5)).Initializer("b3", RandomF32({5, n}, 6));
  b.Node("MatMul", {"x", "w1"}, {"m1"});
  b.Node("Add", {"m1", "b1"}, {"a1"});
  b.Node("Relu", {"a1"}, {"r1"});
  b.Node("MatMul", {"r1", "w2"}, {"m2"});
  b.Node("Add", {"b2", "m2"}, {"y"});
  b.Node("MatMul", {"r1", "w3"}, {"m3"});
  b.Node("Add", {"m3", "b3"}, {"z"});
  b.Node("Add", {"m2", "b1"}, {"u"});  // m2's second reader
  return b.Serialize();
}

TEST(Passes, MatMulBiasAddFusesIntoTheMatMul) {
  const std::string bytes = MatMulBiasModel(37, 45);
  auto g = testing::OptimizedGraph(bytes);
  ASSERT_TRUE(g.ok()) << g.status();
  int fused = 0;
  for (const Node& n : g->nodes) fused += n.attrs.Has("fused_bias");
  EXPECT_EQ(fused, 1) << g->DebugString();  // m2 has two readers
  EXPECT_EQ(CountOps(*g, "Add"), 3) << g->DebugString();
  EXPECT_EQ(CountOps(*g, "Relu"), 0) << g->DebugString();  // after the bias, in the epilogue
  ExpectSameOutputs(bytes, {{"x", RandomF32({2, 5, 37}, 9)}});

  OnnxBuilder b;  // the [1, N] bias before the product
  b.Input("x", DataType::kFloat32, {3, 37}).Output("y");
  b.Initializer("w", RandomF32({37, 45}, 1)).Initializer("b", RandomF32({1, 45}, 2));
  b.Node("MatMul", {"x", "w"}, {"m"});
  b.Node("Add", {"b", "m"}, {"y"});
  auto one = testing::OptimizedGraph(b.Serialize());
  ASSERT_TRUE(one.ok()) << one.status();
  EXPECT_EQ(CountOps(*one, "Add"), 0) << one->DebugString();
  ExpectSameOutputs(b.Serialize(), {{"x", RandomF32({3, 37}, 9)}});
}

// The exact GELU as exporters spell it, in its three associations, after a
// MatMul with a bias: each becomes Gelu, then the MatMul's activation.
TEST(Passes, SpelledGeluFusesIntoTheMatMul) {
  for (int form = 0; form < 3; ++form) {
    OnnxBuilder b;
    b.Input("x", DataType::kFloat32, {2, 3, 24}).Output("y");
    b.Initializer("w", RandomF32({24, 40}, 1)).Initializer("bias", RandomF32({40}, 2));
    b.Initializer("half", ScalarF32(0.5f)).Initializer("one", ScalarF32(1.f));
    b.Initializer("sqrt2", ScalarF32(1.4142135381698608f)).Initializer("rsqrt2", ScalarF32(0.7071067690849304f));
    b.Node("MatMul", {"x", "w"}, {"m"});
    b.Node("Add", {"m", "bias"}, {"h"});
    if (form == 1) b.Node("Mul", {"h", "rsqrt2"}, {"d"});
    else b.Node("Div", {"h", "sqrt2"}, {"d"});
    b.Node("Erf", {"d"}, {"e"});
    b.Node("Add", {"one", "e"}, {"a"});
    if (form == 0) {  // (h * a) * 0.5, PyTorch's nn.GELU
      b.Node("Mul", {"h", "a"}, {"p"});
      b.Node("Mul", {"p", "half"}, {"y"});
    } else if (form == 1) {  // (h * 0.5) * a, BERT's gelu
      b.Node("Mul", {"h", "half"}, {"p"});
      b.Node("Mul", {"p", "a"}, {"y"});
    } else {  // h * (0.5 * a)
      b.Node("Mul", {"half", "a"}, {"p"});
      b.Node("Mul", {"h", "p"}, {"y"});
    }
    const std::string bytes = b.Serialize();
    auto g = testing::OptimizedGraph(bytes);
    ASSERT_TRUE(g.ok()) << g.status();
    ASSERT_EQ(g->nodes.size(), 1u) << "form " << form << "\n" << g->DebugString();
    EXPECT_EQ(g->nodes[0].attrs.GetString("fused_activation", ""), "Gelu") << g->DebugString();
    EXPECT_TRUE(g->nodes[0].attrs.Has("fused_bias")) << g->DebugString();
    ExpectSameOutputs(bytes, {{"x", RandomF32({2, 3, 24}, 9, -3.f, 3.f)}});
    auto session = Session::LoadFromBytes(bytes);  // the plan names what was fused
    ASSERT_TRUE(session.ok()) << session.status();
    auto plan = session->Plan({{"x", {2, 3, 24}}});
    ASSERT_TRUE(plan.ok()) << plan.status();
    EXPECT_NE(plan->text.find("+bias+Gelu"), std::string::npos) << plan->text;
  }
  OnnxBuilder b;  // a constant that is not 0.5: nothing fuses
  b.Input("x", DataType::kFloat32, {4}).Output("y");
  b.Initializer("c", ScalarF32(0.25f)).Initializer("one", ScalarF32(1.f)).Initializer("sqrt2", ScalarF32(1.4142135f));
  b.Node("Div", {"x", "sqrt2"}, {"d"});
  b.Node("Erf", {"d"}, {"e"});
  b.Node("Add", {"e", "one"}, {"a"});
  b.Node("Mul", {"x", "a"}, {"p"});
  b.Node("Mul", {"p", "c"}, {"y"});
  auto g = testing::OptimizedGraph(b.Serialize());
  ASSERT_TRUE(g.ok()) << g.status();
  EXPECT_EQ(CountOps(*g, "Gelu"), 0) << g->DebugString();
  EXPECT_EQ(CountOps(*g, "Erf"), 1) << g->DebugString();
}

// The fused bias reaches the BF16 GEMM, the FP16-weight FP32 GEMM and the
// dynamic INT8 GEMM: each within its precision's error of the plain FP32 run.
TEST(Passes, FusedMatMulBiasInEveryPrecision) {
  const int64_t k = 130, n = 45;  // K above the BF16 threshold, not a multiple of 4
  OnnxBuilder b;
  b.Input("x", DataType::kFloat32, {2, 5, k}).Output("y");
  b.Initializer("w", RandomF32({k, n}, 1)).Initializer("bias", RandomF32({n}, 2, 2.f, 4.f));
  b.Node("MatMul", {"x", "w"}, {"m"});
  b.Node("Add", {"m", "bias"}, {"y"});
  const std::string bytes = b.Serialize();
  for (int mode = 0; mode < 3; ++mode) {
    SessionOptions options;
    if (mode == 0) options.precision = Precision::kBf16;
    if (mode == 1) options.precision = Precision::kFp16;
    if (mode == 2) options.dynamic_int8 = true;
    auto y = testing::RunPlainAndOptimized(bytes, {{"x", RandomF32({2, 5, k}, 7)}}, options);
    ASSERT_TRUE(y.ok()) << y.status();
    const auto& [fp32, other] = *y;
    double mag = 0;
    const double err = testing::MaxAbsDiff(fp32, other, &mag);
    EXPECT_LT(err, 0.02 * mag) << "mode " << mode << ": error " << err << " of output magnitude " << mag;
  }
}

TEST(Passes, ConvScaleShiftHardSwishAndAffineTailFuseIntoOneConv) {
  // Conv -> Mul(scalar) -> Add(per-channel) -> x*Clip(x+3,0,6)/6 -> Mul(scalar) -> Add(scalar)
  OnnxBuilder b;
  b.Input("x", DataType::kFloat32, {2, 3, 9, 9}).Output("y");
  b.Initializer("w", RandomF32({5, 3, 3, 3}, 1)).Initializer("bias", RandomF32({5}, 2));
  b.Initializer("s", Tensor::FromVector<float>(DataType::kFloat32, {1}, {1.7f}));
  b.Initializer("t", RandomF32({1, 5, 1, 1}, 3));
  b.Initializer("three", Tensor::FromVector<float>(DataType::kFloat32, {1}, {3.f}));
  b.Initializer("zero", Tensor::FromVector<float>(DataType::kFloat32, {}, {0.f}));
  b.Initializer("six", Tensor::FromVector<float>(DataType::kFloat32, {}, {6.f}));
  b.Initializer("six1", Tensor::FromVector<float>(DataType::kFloat32, {1}, {6.f}));
  b.Initializer("k", Tensor::FromVector<float>(DataType::kFloat32, {1}, {0.3f}));
  b.Initializer("c", Tensor::FromVector<float>(DataType::kFloat32, {1}, {-0.2f}));
  OnnxBuilder::SetInts(b.Node("Conv", {"x", "w", "bias"}, {"conv"}), "pads", {1, 1, 1, 1});
  b.Node("Mul", {"s", "conv"}, {"scaled"});
  b.Node("Add", {"scaled", "t"}, {"shifted"});
  b.Node("Add", {"shifted", "three"}, {"p3"});
  b.Node("Clip", {"p3", "zero", "six"}, {"r6"});
  b.Node("Mul", {"shifted", "r6"}, {"m"});
  b.Node("Div", {"m", "six1"}, {"hs"});
  b.Node("Mul", {"k", "hs"}, {"hk"});
  b.Node("Add", {"hk", "c"}, {"y"});
  const std::string bytes = b.Serialize();
  auto g = ImportOnnxBytes(bytes, ".", "m.onnx");
  ASSERT_TRUE(g.ok());
  ASSERT_TRUE(OptimizeGraph(*g, OptimizeOptions{}).ok());
  ASSERT_EQ(g->nodes.size(), 1u) << g->DebugString();
  EXPECT_EQ(g->nodes[0].attrs.GetString("fused_activation", ""), "HardSwish");
  EXPECT_FLOAT_EQ(g->nodes[0].attrs.GetFloat("fused_scale", 1.f), 0.3f);
  ExpectSameOutputs(bytes, {{"x", RandomF32({2, 3, 9, 9}, 9, -3.f, 3.f)}});
}

TEST(Passes, SpelledOutLayerNormBecomesLayerNormalization) {
  OnnxBuilder b(13);
  b.Input("x", DataType::kFloat32, {2, 5, 8}).Output("y");
  b.Initializer("two", Tensor::FromVector<float>(DataType::kFloat32, {}, {2.f}));
  b.Initializer("eps", Tensor::FromVector<float>(DataType::kFloat32, {}, {1e-5f}));
  b.Initializer("gamma", RandomF32({8}, 1)).Initializer("beta", RandomF32({8}, 2));
  OnnxBuilder::SetInts(b.Node("ReduceMean", {"x"}, {"mean"}), "axes", {-1});
  b.Node("Sub", {"x", "mean"}, {"d"});
  b.Node("Pow", {"d", "two"}, {"sq"});
  OnnxBuilder::SetInts(b.Node("ReduceMean", {"sq"}, {"var"}), "axes", {-1});
  b.Node("Add", {"var", "eps"}, {"ve"});
  b.Node("Sqrt", {"ve"}, {"sd"});
  b.Node("Div", {"d", "sd"}, {"n"});
  b.Node("Mul", {"n", "gamma"}, {"g"});
  b.Node("Add", {"g", "beta"}, {"y"});
  const std::string bytes = b.Serialize();
  auto g = ImportOnnxBytes(bytes, ".", "m.onnx");
  ASSERT_TRUE(g.ok());
  ASSERT_TRUE(OptimizeGraph(*g, OptimizeOptions{}).ok());
  ASSERT_EQ(g->nodes.size(), 1u) << g->DebugString();
  EXPECT_EQ(g->nodes[0].op_type, "LayerNormalization");
  ExpectSameOutputs(bytes, {{"x", RandomF32({2, 5, 8}, 9, -2.f, 2.f)}});
}

TEST(Passes, ZeroPadFoldsIntoConvPads) {
  OnnxBuilder b(13);
  b.Input("x", DataType::kFloat32, {1, 3, 9, 9}).Output("y");
  b.Initializer("w", RandomF32({4, 3, 3, 3}, 1));
  b.Initializer("pads", Tensor::FromVector<int64_t>(DataType::kInt64, {8}, {0, 0, 0, 1, 0, 0, 1, 2}));
  b.Node("Pad", {"x", "pads"}, {"p"});
  OnnxBuilder::SetInts(b.Node("Conv", {"p", "w"}, {"y"}), "strides", {2, 2});
  const std::string bytes = b.Serialize();
  auto g = ImportOnnxBytes(bytes, ".", "m.onnx");
  ASSERT_TRUE(g.ok());
  ASSERT_TRUE(OptimizeGraph(*g, OptimizeOptions{}).ok());
  ASSERT_EQ(g->nodes.size(), 1u) << g->DebugString();
  EXPECT_EQ(g->nodes[0].attrs.GetInts("pads"), (std::vector<int64_t>{0, 1, 1, 2}));
  ExpectSameOutputs(bytes, {{"x", RandomF32({1, 3, 9, 9}, 9)}});
}

// A float image padded with zeros, then quantized for an INT8 convolution
// (EfficientNet-Lite's stem): the image is quantized unpadded and the
// convolution pads with its zero point, Q(0): the same bytes. A Pad of 1.0,
// or a QuantizeLinear whose zero point differs from the convolution's, stays.
TEST(Passes, ZeroPadBeforeQuantizeLinearFoldsIntoQLinearConvPads) {
  for (int variant : {0, 1, 2}) {  // 0: folds; 1: pad value 1; 2: another zero point
    SCOPED_TRACE(::testing::Message() << "variant " << variant);
    OnnxBuilder b(13);
    b.Input("x", DataType::kFloat32, {2, 3, 9, 9}).Output("y", DataType::kUInt8);
    b.Initializer("pads", Tensor::FromVector<int64_t>(DataType::kInt64, {8}, {0, 0, 0, 1, 0, 0, 1, 2}));
    b.Initializer("value", ScalarF32(variant == 1 ? 1.f : 0.f));
    b.Initializer("xs", ScalarF32(0.03f)).Initializer("xz", Tensor::FromVector<uint8_t>(DataType::kUInt8, {}, {117}));
    b.Initializer("xz2", Tensor::FromVector<uint8_t>(DataType::kUInt8, {}, {variant == 2 ? uint8_t{90} : uint8_t{117}}));
    std::vector<int8_t> w(4 * 3 * 3 * 3);
    for (size_t i = 0; i < w.size(); ++i) w[i] = static_cast<int8_t>(static_cast<int>(i * 37 % 201) - 100);
    b.Initializer("w", Tensor::FromVector<int8_t>(DataType::kInt8, {4, 3, 3, 3}, w));
    b.Initializer("ws", ScalarF32(0.01f)).Initializer("wz", Tensor::Zeros(DataType::kInt8, {}));
    b.Initializer("ys", ScalarF32(0.05f)).Initializer("yz", Tensor::FromVector<uint8_t>(DataType::kUInt8, {}, {120}));
    b.Node("Pad", {"x", "pads", "value"}, {"p"});
    b.Node("QuantizeLinear", {"p", "xs", "xz"}, {"q"});
    OnnxBuilder::SetInts(b.Node("QLinearConv", {"q", "xs", "xz2", "w", "ws", "wz", "ys", "yz"}, {"y"}), "strides",
                         {2, 2});
    const std::string bytes = b.Serialize();
    auto g = testing::OptimizedGraph(bytes);
    ASSERT_TRUE(g.ok()) << g.status();
    EXPECT_EQ(CountOps(*g, "Pad"), variant == 0 ? 0 : 1) << g->DebugString();
    SessionOptions plain;
    plain.optimize = false;
    auto a = Session::LoadFromBytes(bytes, plain), o = Session::LoadFromBytes(bytes);
    ASSERT_TRUE(a.ok() && o.ok());
    const TensorMap in = {{"x", RandomF32({2, 3, 9, 9}, 12, -3.f, 3.f)}};
    auto ya = a->Run(in), yo = o->Run(in);
    ASSERT_TRUE(ya.ok()) << ya.status();
    ASSERT_TRUE(yo.ok()) << yo.status();
    const Tensor& u = ya->at("y");
    const Tensor& v = yo->at("y");
    ASSERT_EQ(u.shape(), v.shape());
    for (int64_t i = 0; i < u.num_elements(); ++i) ASSERT_EQ(u.data<uint8_t>()[i], v.data<uint8_t>()[i]) << i;
  }
}

// x[1,8,9,9] -> Q -> DQ -> Conv(DQ(w s8, per channel), float bias | DQ(int32 bias)) -> Q(u8) -> DQ -> y
std::string QdqConv(bool int32_bias, bool second_reader) {
  OnnxBuilder b(13);
  b.Input("x", DataType::kFloat32, {1, 8, 9, 9}).Output("y");
  if (second_reader) b.Output("c");
  std::mt19937 rng(3);
  std::vector<int8_t> w(6 * 8 * 3 * 3);
  for (int8_t& v : w) v = static_cast<int8_t>(static_cast<int>(rng() % 255) - 127);
  std::vector<float> ws = {0.011f, 0.007f, 0.013f, 0.009f, 0.02f, 0.005f};
  const float xs = 0.02f;
  b.Initializer("xs", Tensor::FromVector<float>(DataType::kFloat32, {}, {xs}));
  b.Initializer("xz", Tensor::FromVector<uint8_t>(DataType::kUInt8, {}, {128}));
  b.Initializer("wq", Tensor::FromVector<int8_t>(DataType::kInt8, {6, 8, 3, 3}, w));
  b.Initializer("ws", Tensor::FromVector<float>(DataType::kFloat32, {6}, ws));
  b.Initializer("wz", Tensor::FromVector<int8_t>(DataType::kInt8, {6}, {0, 0, 0, 0, 0, 0}));
  b.Initializer("ys", Tensor::FromVector<float>(DataType::kFloat32, {}, {0.05f}));
  b.Initializer("yz", Tensor::FromVector<uint8_t>(DataType::kUInt8, {}, {100}));
  b.Node("QuantizeLinear", {"x", "xs", "xz"}, {"xq"});
  b.Node("DequantizeLinear", {"xq", "xs", "xz"}, {"xd"});
  OnnxBuilder::SetInt(b.Node("DequantizeLinear", {"wq", "ws", "wz"}, {"wd"}), "axis", 0);
  std::vector<int32_t> bq = {100, -2000, 35, 0, 777, -5};
  if (int32_bias) {
    std::vector<float> bs(6);
    for (int i = 0; i < 6; ++i) bs[i] = xs * ws[i];
    b.Initializer("bq", Tensor::FromVector<int32_t>(DataType::kInt32, {6}, bq));
    b.Initializer("bs", Tensor::FromVector<float>(DataType::kFloat32, {6}, bs));
    OnnxBuilder::SetInt(b.Node("DequantizeLinear", {"bq", "bs"}, {"bias"}), "axis", 0);
  } else {
    b.Initializer("bias", RandomF32({6}, 4));
  }
  OnnxBuilder::SetInts(b.Node("Conv", {"xd", "wd", "bias"}, {"c"}, "conv"), "pads", {1, 1, 1, 1});
  b.Node("QuantizeLinear", {"c", "ys", "yz"}, {"yq"});
  b.Node("DequantizeLinear", {"yq", "ys", "yz"}, {"y"});
  return b.Serialize();
}

TEST(Passes, QdqConvBecomesQLinearConv) {
  for (bool int32_bias : {false, true}) {
    const std::string bytes = QdqConv(int32_bias, false);
    auto g = ImportOnnxBytes(bytes, ".", "qdq.onnx");
    ASSERT_TRUE(g.ok()) << g.status();
    OptimizeOptions opt;
    opt.cpu = ActiveCpuFeatures();
    ASSERT_TRUE(OptimizeGraph(*g, opt).ok());
    // (as kvant.QLinearConvNhwc once the layout pass has run)
    EXPECT_EQ(CountOps(*g, "QLinearConv") + CountOps(*g, "QLinearConvNhwc"), 1) << g->DebugString();
    EXPECT_EQ(CountOps(*g, "Conv"), 0) << g->DebugString();
    // Against the unfused graph (float convolution of dequantized values,
    // then QuantizeLinear): the same u8 up to one step where float rounding
    // lands on the other side of a .5.
    SessionOptions plain;
    plain.optimize = false;
    auto a = Session::LoadFromBytes(bytes, plain), b = Session::LoadFromBytes(bytes);
    ASSERT_TRUE(a.ok() && b.ok());
    const TensorMap in = {{"x", RandomF32({1, 8, 9, 9}, 5, -2.f, 2.f)}};
    auto ya = a->Run(in), yb = b->Run(in);
    ASSERT_TRUE(ya.ok() && yb.ok()) << ya.status() << yb.status();
    const Tensor& u = ya->at("y");
    const Tensor& v = yb->at("y");
    int exact = 0;
    for (int64_t i = 0; i < u.num_elements(); ++i) {
      ASSERT_LE(std::fabs(u.data<float>()[i] - v.data<float>()[i]), 0.05f * 1.001f) << i;
      exact += u.data<float>()[i] == v.data<float>()[i];
    }
    EXPECT_GE(exact, u.num_elements() * 99 / 100);
  }
  // A Conv output with a second reader stays a float Conv.
  auto g = ImportOnnxBytes(QdqConv(false, true), ".", "qdq2.onnx");
  ASSERT_TRUE(g.ok()) << g.status();
  OptimizeOptions opt;
  opt.cpu = ActiveCpuFeatures();
  ASSERT_TRUE(OptimizeGraph(*g, opt).ok());
  EXPECT_EQ(CountOps(*g, "QLinearConv") + CountOps(*g, "QLinearConvNhwc"), 0);
}

// x[3,5,20] -> Q -> DQ -> MatMul(DQ(w s8 [20,12], per column)) [-> Add(bias)]
// [-> Relu] -> Q(s8) -> DQ -> y. The bias is a float vector, or int32 values
// at scale xs * ws[n] through DequantizeLinear (as kvant quantize writes it).
enum class MatMulBias { kNone, kFloat, kInt32 };
std::string QdqMatMul(MatMulBias bias, bool relu, bool quantized_output = true) {
  OnnxBuilder b(13);
  b.Input("x", DataType::kFloat32, {3, 5, 20}).Output("y");
  std::mt19937 rng(8);
  std::vector<int8_t> w(20 * 12);
  for (int8_t& v : w) v = static_cast<int8_t>(static_cast<int>(rng() % 255) - 127);
  std::vector<float> ws(12), bs(12);
  std::vector<int32_t> bq(12);
  for (int i = 0; i < 12; ++i) {
    ws[i] = 0.004f + 0.001f * i;
    bs[i] = 0.02f * ws[i];
    bq[i] = static_cast<int32_t>(rng() % 40001) - 20000;  // up to +-2 in real terms
  }
  b.Initializer("xs", Tensor::FromVector<float>(DataType::kFloat32, {}, {0.02f}));
  b.Initializer("xz", Tensor::FromVector<uint8_t>(DataType::kUInt8, {}, {120}));
  b.Initializer("wq", Tensor::FromVector<int8_t>(DataType::kInt8, {20, 12}, w));
  b.Initializer("ws", Tensor::FromVector<float>(DataType::kFloat32, {12}, ws));
  b.Initializer("ys", Tensor::FromVector<float>(DataType::kFloat32, {}, {0.03f}));
  b.Initializer("yz", Tensor::FromVector<int8_t>(DataType::kInt8, {}, {-3}));
  b.Node("QuantizeLinear", {"x", "xs", "xz"}, {"xq"});
  b.Node("DequantizeLinear", {"xq", "xs", "xz"}, {"xd"});
  OnnxBuilder::SetInt(b.Node("DequantizeLinear", {"wq", "ws"}, {"wd"}), "axis", 1);
  b.Node("MatMul", {"xd", "wd"}, {"m"}, "mm");
  std::string out = "m";
  if (bias == MatMulBias::kInt32) {
    b.Initializer("bq", Tensor::FromVector<int32_t>(DataType::kInt32, {12}, bq));
    b.Initializer("bs", Tensor::FromVector<float>(DataType::kFloat32, {12}, bs));
    OnnxBuilder::SetInt(b.Node("DequantizeLinear", {"bq", "bs"}, {"bias"}), "axis", 0);
  } else if (bias == MatMulBias::kFloat) {
    b.Initializer("bias", RandomF32({12}, 9, -2.f, 2.f));
  }
  if (bias != MatMulBias::kNone) {
    b.Node("Add", {"bias", "m"}, {"mb"}, "add");  // the bias first: either order fuses
    out = "mb";
  }
  if (relu) {
    b.Node("Relu", {out}, {quantized_output ? "r" : "y"});
    out = "r";
  }
  if (!quantized_output) {
    if (!relu) b.Node("Identity", {out}, {"y"});
    return b.Serialize();
  }
  b.Node("QuantizeLinear", {out, "ys", "yz"}, {"yq"});
  b.Node("DequantizeLinear", {"yq", "ys", "yz"}, {"y"});
  return b.Serialize();
}

TEST(Passes, QdqMatMulBecomesQLinearMatMul) {
  for (MatMulBias bias : {MatMulBias::kNone, MatMulBias::kFloat, MatMulBias::kInt32}) {
    for (bool relu : {false, true}) {
      SCOPED_TRACE(::testing::Message() << "bias " << static_cast<int>(bias) << " relu " << relu);
      const std::string bytes = QdqMatMul(bias, relu);
      auto g = testing::OptimizedGraph(bytes);
      ASSERT_TRUE(g.ok()) << g.status();
      EXPECT_EQ(CountOps(*g, "QLinearMatMul"), 1) << g->DebugString();
      EXPECT_EQ(CountOps(*g, "MatMul") + CountOps(*g, "Add") + CountOps(*g, "Relu"), 0) << g->DebugString();
      // Against the unfused graph (float product of dequantized values, the
      // bias and Relu in float, then QuantizeLinear): the same s8 up to one
      // step where float rounding lands on the other side of a .5.
      auto y = testing::RunPlainAndOptimized(bytes, {{"x", RandomF32({3, 5, 20}, 6, -2.f, 2.f)}});
      ASSERT_TRUE(y.ok()) << y.status();
      const auto& [u, v] = *y;
      int exact = 0, clamped = 0;
      for (int64_t i = 0; i < u.num_elements(); ++i) {
        ASSERT_LE(std::fabs(u.data<float>()[i] - v.data<float>()[i]), 0.03f * 1.001f) << i;
        exact += u.data<float>()[i] == v.data<float>()[i];
        clamped += v.data<float>()[i] == 0.f;
      }
      EXPECT_GE(exact, u.num_elements() * 99 / 100);
      if (relu) EXPECT_GT(clamped, u.num_elements() / 5);  // the Relu did clamp
    }
  }
  // A float result (no QuantizeLinear after it) runs as the INT8 product with
  // f32 output, the bias and Relu in its epilogue.
  for (MatMulBias bias : {MatMulBias::kNone, MatMulBias::kFloat, MatMulBias::kInt32}) {
    for (bool relu : {false, true}) {
      SCOPED_TRACE(::testing::Message() << "float result, bias " << static_cast<int>(bias) << " relu " << relu);
      const std::string bytes = QdqMatMul(bias, relu, false);
      auto g = testing::OptimizedGraph(bytes);
      ASSERT_TRUE(g.ok()) << g.status();
      EXPECT_EQ(CountOps(*g, "MatMulIntegerToFloat"), 1) << g->DebugString();
      EXPECT_EQ(CountOps(*g, "MatMul") + CountOps(*g, "Add") + CountOps(*g, "Relu"), 0) << g->DebugString();
      auto y = testing::RunPlainAndOptimized(bytes, {{"x", RandomF32({3, 5, 20}, 6, -2.f, 2.f)}});
      ASSERT_TRUE(y.ok()) << y.status();
      EXPECT_LE(testing::MaxAbsDiff(y->first, y->second), 1e-4f);
    }
  }
  // The product or the sum with a second reader stays in float.
  OnnxBuilder b(13);
  b.Input("x", DataType::kFloat32, {4, 8}).Output("y").Output("m");
  b.Initializer("xs", Tensor::FromVector<float>(DataType::kFloat32, {}, {0.02f}));
  b.Initializer("wq", Tensor::FromVector<int8_t>(DataType::kInt8, {8, 3}, std::vector<int8_t>(24, 5)));
  b.Initializer("bias", RandomF32({3}, 2));
  b.Node("QuantizeLinear", {"x", "xs"}, {"xq"});
  b.Node("DequantizeLinear", {"xq", "xs"}, {"xd"});
  b.Node("DequantizeLinear", {"wq", "xs"}, {"wd"});
  b.Node("MatMul", {"xd", "wd"}, {"m"});
  b.Node("Add", {"m", "bias"}, {"mb"});
  b.Node("QuantizeLinear", {"mb", "xs"}, {"yq"});
  b.Node("DequantizeLinear", {"yq", "xs"}, {"y"});
  auto g = ImportOnnxBytes(b.Serialize(), ".", "qdq_mm2.onnx");
  ASSERT_TRUE(g.ok()) << g.status();
  OptimizeOptions opt;
  opt.cpu = ActiveCpuFeatures();
  ASSERT_TRUE(OptimizeGraph(*g, opt).ok());
  EXPECT_EQ(CountOps(*g, "QLinearMatMul"), 0) << g->DebugString();
}

TEST(Passes, BadAttributesAreInvalidArgument) {
  OnnxBuilder b;
  b.Input("x", DataType::kFloat32, {1, 4, 5, 5}).Output("y");
  b.Initializer("w", RandomF32({6, 2, 3, 3}, 1));
  auto& conv = b.Node("Conv", {"x", "w"}, {"y"}, "bad_conv");
  OnnxBuilder::SetInt(conv, "group", 4);  // 6 output channels are not divisible by 4
  auto s = Session::LoadFromBytes(b.Serialize());
  EXPECT_EQ(s.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(s.status().message().find("bad_conv"), std::string::npos) << s.status();

  OnnxBuilder b2;
  b2.Input("x", DataType::kFloat32, {1, 4, 5, 5}).Output("y");
  b2.Initializer("w", RandomF32({6, 4, 3, 3}, 1));
  OnnxBuilder::SetInts(b2.Node("Conv", {"x", "w"}, {"y"}, "zero_stride"), "strides", {0, 1});
  auto s2 = Session::LoadFromBytes(b2.Serialize());
  EXPECT_NE(s2.status().message().find("strides must be > 0"), std::string::npos) << s2.status();

  OnnxBuilder b3;
  b3.Input("x", DataType::kFloat32, {2, 3}).Output("y");
  OnnxBuilder::SetInts(b3.Node("Transpose", {"x"}, {"y"}, "bad_perm"), "perm", {0, 0});
  auto s3 = Session::LoadFromBytes(b3.Serialize());
  EXPECT_NE(s3.status().message().find("perm must be a permutation"), std::string::npos) << s3.status();
}

}  // namespace
}  // namespace kvant
