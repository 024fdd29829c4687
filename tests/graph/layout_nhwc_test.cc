// The NHWC layout pass for INT8 convolution chains: a QOperator graph
// (QuantizeLinear, QLinearConv, zero-point Pad, depthwise QLinearConv, a
// residual QLinearAdd, QLinearGlobalAveragePool, DequantizeLinear) keeps
// exactly the outputs of the unoptimized graph, runs its convolutions as
// kvant.QLinearConvNhwc with one transpose at the input edge and one at the
// pooled output, and absorbs the Pad into the convolution. MaxPool and a QDQ
// AveragePool (as QLinearAveragePool) between convolutions run channels-last.
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
using testing::ScalarS8;
using testing::ScalarU8;

void ExpectEqualBytes(const Tensor& a, const Tensor& b) {
  ASSERT_EQ(a.shape(), b.shape());
  for (int64_t i = 0; i < a.num_elements(); ++i) EXPECT_EQ(a.data<uint8_t>()[i], b.data<uint8_t>()[i]) << i;
}

Tensor RandomS8(const std::vector<int64_t>& shape, uint32_t seed) {
  std::mt19937 rng(seed);
  Tensor t = Tensor::Zeros(DataType::kInt8, shape);
  for (int64_t i = 0; i < t.num_elements(); ++i) t.data<int8_t>()[i] = static_cast<int8_t>(int(rng() % 200) - 100);
  return t;
}


// x -> Q -> conv1 1x1 (8 -> 16) -> Pad(1, zp) -> dw 3x3 -> conv3 1x1 (16 -> 8)
//   -> QLinearAdd(conv1-branch... conv3, q) -> GAP -> DQ -> y
std::string QOperatorChain(int64_t batch_dim) {
  OnnxBuilder b(13);
  b.Input("x", DataType::kFloat32, {batch_dim, 8, 10, 12}, {"batch"}).Output("y");
  b.Initializer("xs", ScalarF32(0.02f)).Initializer("xz", ScalarU8(128));
  b.Initializer("w1", RandomS8({16, 8, 1, 1}, 1)).Initializer("w1s", ScalarF32(0.01f)).Initializer("w1z", Tensor::Zeros(DataType::kInt8, {}));
  b.Initializer("a1s", ScalarF32(0.05f)).Initializer("a1z", ScalarU8(120));
  b.Initializer("pads", Tensor::FromVector<int64_t>(DataType::kInt64, {8}, {0, 0, 1, 1, 0, 0, 1, 1}));
  b.Initializer("w2", RandomS8({16, 1, 3, 3}, 2)).Initializer("w2s", ScalarF32(0.02f)).Initializer("w2z", Tensor::Zeros(DataType::kInt8, {}));
  b.Initializer("a2s", ScalarF32(0.06f)).Initializer("a2z", ScalarU8(125));
  b.Initializer("w3", RandomS8({8, 16, 1, 1}, 3)).Initializer("w3s", ScalarF32(0.015f)).Initializer("w3z", Tensor::Zeros(DataType::kInt8, {}));
  b.Initializer("a3s", ScalarF32(0.04f)).Initializer("a3z", ScalarU8(131));
  b.Initializer("ss", ScalarF32(0.05f)).Initializer("sz", ScalarU8(127));
  b.Initializer("ps", ScalarF32(0.01f)).Initializer("pz", ScalarU8(126));
  b.Node("QuantizeLinear", {"x", "xs", "xz"}, {"q"});
  b.Node("QLinearConv", {"q", "xs", "xz", "w1", "w1s", "w1z", "a1s", "a1z"}, {"c1"});
  b.Node("Pad", {"c1", "pads", "a1z"}, {"p1"});
  OnnxBuilder::SetInt(b.Node("QLinearConv", {"p1", "a1s", "a1z", "w2", "w2s", "w2z", "a2s", "a2z"}, {"c2"}), "group", 16);
  b.Node("QLinearConv", {"c2", "a2s", "a2z", "w3", "w3s", "w3z", "a3s", "a3z"}, {"c3"});
  b.Node("QLinearAdd", {"c3", "a3s", "a3z", "q", "xs", "xz", "ss", "sz"}, {"s"}).set_domain("com.microsoft");
  b.Node("QLinearGlobalAveragePool", {"s", "ss", "sz", "ps", "pz"}, {"g"}).set_domain("com.microsoft");
  b.Node("DequantizeLinear", {"g", "ps", "pz"}, {"y"});
  return b.Serialize();
}

TEST(LayoutNhwc, QOperatorChainRunsNhwcWithTransposesOnlyAtTheEdges) {
  const std::string bytes = QOperatorChain(-1);
  auto g = OptimizedGraph(bytes);
  ASSERT_TRUE(g.ok()) << g.status();
  // The three run NHWC, as one expand -> depthwise -> project chain
  // (graph/passes/fuse_conv_chain.cc).
  EXPECT_EQ(CountOps(*g, "QLinearConvChainNhwc"), 1) << g->DebugString();
  EXPECT_EQ(CountOps(*g, "QLinearConvNhwc"), 0) << g->DebugString();
  EXPECT_EQ(CountOps(*g, "QLinearConv"), 0) << g->DebugString();
  EXPECT_EQ(CountOps(*g, "Pad"), 0) << g->DebugString();
  EXPECT_EQ(CountOps(*g, "Transpose"), 2) << g->DebugString();  // input to NHWC, pooled output to NCHW

  for (int64_t batch : {1, 3}) {
    auto y = RunPlainAndOptimized(bytes, {{"x", RandomF32({batch, 8, 10, 12}, 7, -2.f, 2.f)}});
    ASSERT_TRUE(y.ok()) << y.status();
    const auto& [u, v] = *y;
    ASSERT_EQ(u.shape(), (std::vector<int64_t>{batch, 8, 1, 1}));
    ASSERT_EQ(v.shape(), u.shape());
    for (int64_t i = 0; i < u.num_elements(); ++i) EXPECT_EQ(u.data<float>()[i], v.data<float>()[i]) << i;
  }
}

TEST(LayoutNhwc, PadWithAnotherValueStaysAPad) {
  // The same chain with the Pad's value not the zero point: it cannot become
  // the convolution's padding, but still runs in NHWC.
  OnnxBuilder b(13);
  b.Input("x", DataType::kUInt8, {1, 4, 6, 6}).Output("y", DataType::kUInt8);
  b.Initializer("xs", ScalarF32(0.02f)).Initializer("xz", ScalarU8(128)).Initializer("seven", ScalarU8(7));
  b.Initializer("w", RandomS8({4, 4, 3, 3}, 4)).Initializer("ws", ScalarF32(0.01f)).Initializer("wz", Tensor::Zeros(DataType::kInt8, {}));
  b.Initializer("pads", Tensor::FromVector<int64_t>(DataType::kInt64, {8}, {0, 0, 1, 1, 0, 0, 1, 1}));
  b.Node("QLinearConv", {"x", "xs", "xz", "w", "ws", "wz", "xs", "xz"}, {"c"});
  b.Node("Pad", {"c", "pads", "seven"}, {"p"});
  b.Node("QLinearConv", {"p", "xs", "xz", "w", "ws", "wz", "xs", "xz"}, {"y"});
  const std::string bytes = b.Serialize();
  auto g = OptimizedGraph(bytes);
  ASSERT_TRUE(g.ok()) << g.status();
  EXPECT_EQ(CountOps(*g, "Pad"), 1) << g->DebugString();
  EXPECT_EQ(CountOps(*g, "Transpose"), 2) << g->DebugString();
  Tensor x = Tensor::Zeros(DataType::kUInt8, {1, 4, 6, 6});
  for (int64_t i = 0; i < x.num_elements(); ++i) x.data<uint8_t>()[i] = static_cast<uint8_t>(i * 37);
  auto y = RunPlainAndOptimized(bytes, {{"x", x}});
  ASSERT_TRUE(y.ok()) << y.status();
  ExpectEqualBytes(y->first, y->second);
}

TEST(LayoutNhwc, FloatIslandsAndConstantOperandsStayNhwc) {
  // conv -> DQ -> BatchNormalization -> Q -> QLinearMul(by a [1,C,1,1]
  // constant) -> QLinearAdd(a scalar constant) -> conv: everything between
  // the convolutions runs in NHWC (BatchNormalization channels-last, the
  // constant transposed), so only the two edge transposes remain.
  const int64_t c = 6;
  OnnxBuilder b(13);
  b.Input("x", DataType::kUInt8, {2, c, 7, 5}).Output("y", DataType::kUInt8);
  b.Initializer("s", ScalarF32(0.02f)).Initializer("z", ScalarU8(128));
  b.Initializer("w", RandomS8({c, c, 3, 3}, 5)).Initializer("ws", ScalarF32(0.01f)).Initializer("wz", Tensor::Zeros(DataType::kInt8, {}));
  b.Initializer("bn_s", RandomF32({c}, 1, 0.5f, 1.5f)).Initializer("bn_b", RandomF32({c}, 2));
  b.Initializer("bn_m", RandomF32({c}, 3)).Initializer("bn_v", RandomF32({c}, 4, 0.5f, 2.f));
  Tensor k = Tensor::Zeros(DataType::kUInt8, {1, c, 1, 1});
  for (int64_t i = 0; i < c; ++i) k.data<uint8_t>()[i] = static_cast<uint8_t>(100 + 17 * i);
  b.Initializer("k", k).Initializer("ks", ScalarF32(0.01f)).Initializer("kz", ScalarU8(90));
  b.Initializer("one", ScalarU8(200)).Initializer("os", ScalarF32(0.005f)).Initializer("oz", ScalarU8(0));
  OnnxBuilder::SetInts(b.Node("QLinearConv", {"x", "s", "z", "w", "ws", "wz", "s", "z"}, {"c1"}), "pads", {1, 1, 1, 1});
  b.Node("DequantizeLinear", {"c1", "s", "z"}, {"d"});
  b.Node("BatchNormalization", {"d", "bn_s", "bn_b", "bn_m", "bn_v"}, {"n"});
  b.Node("QuantizeLinear", {"n", "s", "z"}, {"q"});
  b.Node("QLinearMul", {"q", "s", "z", "k", "ks", "kz", "s", "z"}, {"m"}).set_domain("com.microsoft");
  b.Node("QLinearAdd", {"m", "s", "z", "one", "os", "oz", "s", "z"}, {"a"}).set_domain("com.microsoft");
  b.Node("QLinearConv", {"a", "s", "z", "w", "ws", "wz", "s", "z"}, {"y"});
  const std::string bytes = b.Serialize();
  auto g = OptimizedGraph(bytes);
  ASSERT_TRUE(g.ok()) << g.status();
  EXPECT_EQ(CountOps(*g, "Transpose"), 2) << g->DebugString();
  Tensor x = Tensor::Zeros(DataType::kUInt8, {2, c, 7, 5});
  for (int64_t i = 0; i < x.num_elements(); ++i) x.data<uint8_t>()[i] = static_cast<uint8_t>((i * 53) % 251);
  auto y = RunPlainAndOptimized(bytes, {{"x", x}});
  ASSERT_TRUE(y.ok()) << y.status();
  ExpectEqualBytes(y->first, y->second);
}

TEST(LayoutNhwc, MaxPoolBetweenConvolutionsRunsNhwc) {
  // conv -> MaxPool 3x3 stride 2 pad 1 (u8) -> conv: NHWC throughout; 5
  // channels, and 70 (a 64-byte vector and a tail per pixel).
  for (int64_t c : {5, 70}) {
    SCOPED_TRACE(::testing::Message() << c << " channels");
    OnnxBuilder b(13);
    b.Input("x", DataType::kUInt8, {2, c, 9, 7}).Output("y", DataType::kUInt8);
    b.Initializer("s", ScalarF32(0.02f)).Initializer("z", ScalarU8(128));
    b.Initializer("w", RandomS8({c, c, 3, 3}, 6)).Initializer("ws", ScalarF32(0.01f));
    b.Initializer("wz", Tensor::Zeros(DataType::kInt8, {}));
    OnnxBuilder::SetInts(b.Node("QLinearConv", {"x", "s", "z", "w", "ws", "wz", "s", "z"}, {"c"}), "pads", {1, 1, 1, 1});
    auto& pool = b.Node("MaxPool", {"c"}, {"p"});
    OnnxBuilder::SetInts(pool, "kernel_shape", {3, 3});
    OnnxBuilder::SetInts(pool, "strides", {2, 2});
    OnnxBuilder::SetInts(pool, "pads", {1, 1, 1, 1});
    b.Node("QLinearConv", {"p", "s", "z", "w", "ws", "wz", "s", "z"}, {"y"});
    const std::string bytes = b.Serialize();
    auto g = OptimizedGraph(bytes);
    ASSERT_TRUE(g.ok()) << g.status();
    EXPECT_EQ(CountOps(*g, "Transpose"), 2) << g->DebugString();
    Tensor x = Tensor::Zeros(DataType::kUInt8, {2, c, 9, 7});
    for (int64_t i = 0; i < x.num_elements(); ++i) x.data<uint8_t>()[i] = static_cast<uint8_t>((i * 71) % 253);
    auto y = RunPlainAndOptimized(bytes, {{"x", x}});
    ASSERT_TRUE(y.ok()) << y.status();
    ExpectEqualBytes(y->first, y->second);
    // The plan report counts what runs in INT8 and what converts.
    auto s = Session::LoadFromBytes(bytes);
    ASSERT_TRUE(s.ok()) << s.status();
    auto plan = s->Plan({{"x", {2, c, 9, 7}}});
    ASSERT_TRUE(plan.ok()) << plan.status();
    EXPECT_NE(plan->text.find("steps: 2 int8, 0 float, 0 Q/DQ conversions, 2 transposes"), std::string::npos)
        << plan->text;
  }
}

// QuantizeLinear -> Transpose(NCHW -> NHWC) becomes one QuantizeLinearNhwc,
// byte-exact with the two: 1 to 5 channels (VPERMB interleaves up to 4),
// pixel counts past the 16-pixel vector and the 1024-pixel block, NaN, the
// infinities, saturating values, exact ties and values a hair either side
// of a half step, scales with exact and inexact reciprocals, u8 and s8, 1
// and 2 threads; and byte for byte QuantizeLinear's division, computed
// here. (The kernel divides: multiplying by 1 / scale and dividing only
// near a half, as QuantizeLinear's row does, made EfficientNet's input
// slower, 0.27 -> 0.32 ms: (x/255 - 0.5) / 0.5 over 2/255 is a half for
// every pixel.)
TEST(LayoutNhwc, QuantizedImageIsWrittenNhwcInOnePass) {
  for (DataType t : {DataType::kUInt8, DataType::kInt8}) {
    for (int64_t c : {1, 3, 4, 5}) {
      for (float scale : {0.05f, 0.0173f}) {
        SCOPED_TRACE(::testing::Message() << DataTypeName(t) << ", " << c << " channels, scale " << scale);
        const std::vector<int64_t> shape = {2, c, 33, 37};
        OnnxBuilder b(13);
        b.Input("x", DataType::kFloat32, shape).Output("y", t);
        Tensor zp = Tensor::Zeros(t, {});
        static_cast<uint8_t*>(zp.raw_data())[0] = t == DataType::kInt8 ? 0xF9 : 131;  // -7 or 131
        b.Initializer("s", ScalarF32(scale)).Initializer("z", zp);
        b.Node("QuantizeLinear", {"x", "s", "z"}, {"q"});
        OnnxBuilder::SetInts(b.Node("Transpose", {"q"}, {"y"}), "perm", {0, 2, 3, 1});
        const std::string bytes = b.Serialize();
        auto g = OptimizedGraph(bytes);
        ASSERT_TRUE(g.ok()) << g.status();
        EXPECT_EQ(CountOps(*g, "QuantizeLinearNhwc"), 1) << g->DebugString();
        EXPECT_EQ(CountOps(*g, "Transpose") + CountOps(*g, "QuantizeLinear"), 0) << g->DebugString();
        Tensor x = RandomF32(shape, 40 + static_cast<uint32_t>(c), -8.f, 8.f);
        float* xs = x.data<float>();
        const float special[] = {NAN, INFINITY, -INFINITY, 1e30f, -1e30f, 0.025f, -0.025f, 0.075f, 6.425f, -6.425f};
        for (size_t i = 0; i < sizeof(special) / sizeof(special[0]); ++i) xs[i * 97] = special[i];
        for (int k = -150; k < 150; ++k) {  // (k + 1/2) scale and its neighbours, from element 1000 on
          const float half = (static_cast<float>(k) + 0.5f) * scale;
          xs[1000 + 3 * (k + 150)] = half;
          xs[1001 + 3 * (k + 150)] = std::nextafter(half, 1e30f);
          xs[1002 + 3 * (k + 150)] = std::nextafter(half, -1e30f);
        }
        // QuantizeLinear's arithmetic, in NHWC: the division, rounded half to even.
        const bool s8 = t == DataType::kInt8;
        const float z = s8 ? -7.f : 131.f, lo = s8 ? -128.f : 0.f, hi = s8 ? 127.f : 255.f;
        std::vector<uint8_t> want(x.num_elements());
        const int64_t hw = shape[2] * shape[3];
        for (int64_t i = 0; i < x.num_elements(); ++i) {
          const int64_t n = i / (c * hw), ch = i / hw % c, p = i % hw;
          const float v = std::nearbyint(xs[i] / scale) + z;
          const float q = v != v ? z : std::min(std::max(v, lo), hi);
          want[(n * hw + p) * c + ch] = static_cast<uint8_t>(static_cast<int>(q));
        }
        for (int threads : {1, 2}) {
          SessionOptions o;
          o.num_threads = threads;
          auto y = RunPlainAndOptimized(bytes, {{"x", x}}, o);
          ASSERT_TRUE(y.ok()) << y.status();
          ExpectEqualBytes(y->first, y->second);
          for (int64_t i = 0; i < y->second.num_elements(); ++i) {
            ASSERT_EQ(y->second.data<uint8_t>()[i], want[i]) << "element " << i;
          }
        }
      }
    }
  }
}

TEST(LayoutNhwc, QdqAveragePoolBecomesQLinearAveragePoolInNhwc) {
  // conv -> DQ -> AveragePool 3x3 stride 2 pad 1 -> Q -> conv: the pooling
  // becomes QLinearAveragePool, channels-last between the convolutions; its
  // integer window sums requantize within one step of the float average.
  OnnxBuilder b(13);
  b.Input("x", DataType::kUInt8, {2, 5, 9, 7}).Output("y", DataType::kUInt8);
  b.Initializer("s", ScalarF32(0.02f)).Initializer("z", ScalarU8(128)).Initializer("ps", ScalarF32(0.011f)).Initializer("pz", ScalarU8(121));
  b.Initializer("w", RandomS8({5, 5, 3, 3}, 6)).Initializer("ws", ScalarF32(0.01f)).Initializer("wz", Tensor::Zeros(DataType::kInt8, {}));
  OnnxBuilder::SetInts(b.Node("QLinearConv", {"x", "s", "z", "w", "ws", "wz", "s", "z"}, {"c"}), "pads", {1, 1, 1, 1});
  b.Node("DequantizeLinear", {"c", "s", "z"}, {"cd"});
  auto& pool = b.Node("AveragePool", {"cd"}, {"p"});
  OnnxBuilder::SetInts(pool, "kernel_shape", {3, 3});
  OnnxBuilder::SetInts(pool, "strides", {2, 2});
  OnnxBuilder::SetInts(pool, "pads", {1, 1, 1, 1});
  b.Node("QuantizeLinear", {"p", "ps", "pz"}, {"pq"});
  b.Node("QLinearConv", {"pq", "ps", "pz", "w", "ws", "wz", "s", "z"}, {"y"});
  const std::string bytes = b.Serialize();
  auto g = OptimizedGraph(bytes);
  ASSERT_TRUE(g.ok()) << g.status();
  EXPECT_EQ(CountOps(*g, "QLinearAveragePool"), 1) << g->DebugString();
  EXPECT_EQ(CountOps(*g, "AveragePool") + CountOps(*g, "DequantizeLinear"), 0) << g->DebugString();
  EXPECT_EQ(CountOps(*g, "Transpose"), 2) << g->DebugString();
  Tensor x = Tensor::Zeros(DataType::kUInt8, {2, 5, 9, 7});
  for (int64_t i = 0; i < x.num_elements(); ++i) x.data<uint8_t>()[i] = static_cast<uint8_t>((i * 71) % 253);
  auto y = RunPlainAndOptimized(bytes, {{"x", x}});
  ASSERT_TRUE(y.ok()) << y.status();
  const auto& [u, v] = *y;
  ASSERT_EQ(u.shape(), v.shape());
  for (int64_t i = 0; i < u.num_elements(); ++i) {
    EXPECT_LE(std::abs(int{u.data<uint8_t>()[i]} - int{v.data<uint8_t>()[i]}), 1) << i;
  }
}

TEST(LayoutNhwc, QdqConcatOfUnequalScalesBecomesQLinearConcatInNhwc) {
  // Three convolutions with their own output scales -> DQ each -> Concat
  // (channels) -> Q -> conv, as ONNX Runtime quantizes a detector's feature
  // pyramid: one QLinearConcat requantizes the bytes, channels-last between
  // the convolutions, within one step of the float concatenation.
  for (bool s8 : {false, true}) {
    const DataType t = s8 ? DataType::kInt8 : DataType::kUInt8;
    auto zp = [&](int v) { return s8 ? ScalarS8(static_cast<int8_t>(v - 128)) : ScalarU8(static_cast<uint8_t>(v)); };
    OnnxBuilder b(13);
    b.Input("x", t, {2, 5, 9, 7}).Output("y", t);
    b.Initializer("s", ScalarF32(0.02f)).Initializer("z", zp(128));
    b.Initializer("w", RandomS8({5, 5, 3, 3}, 6)).Initializer("ws", ScalarF32(0.01f)).Initializer("wz", Tensor::Zeros(DataType::kInt8, {}));
    b.Initializer("w2", RandomS8({4, 15, 1, 1}, 7));
    const float scales[3] = {0.013f, 0.021f, 0.034f};
    const int zps[3] = {120, 131, 97};
    std::vector<std::string> parts;
    std::string in = "x", in_s = "s", in_z = "z";
    for (int i = 0; i < 3; ++i) {  // a chain, each convolution's output a pyramid level
      const std::string k = std::to_string(i);
      b.Initializer("cs" + k, ScalarF32(scales[i])).Initializer("cz" + k, zp(zps[i]));
      OnnxBuilder::SetInts(b.Node("QLinearConv", {in, in_s, in_z, "w", "ws", "wz", "cs" + k, "cz" + k}, {"c" + k}),
                           "pads", {1, 1, 1, 1});
      in = "c" + k;
      in_s = "cs" + k;
      in_z = "cz" + k;
      b.Node("DequantizeLinear", {"c" + k, "cs" + k, "cz" + k}, {"d" + k});
      parts.push_back("d" + k);
    }
    b.Initializer("ks", ScalarF32(0.025f)).Initializer("kz", zp(125));
    OnnxBuilder::SetInt(b.Node("Concat", parts, {"cat"}), "axis", 1);
    b.Node("QuantizeLinear", {"cat", "ks", "kz"}, {"catq"});
    b.Node("QLinearConv", {"catq", "ks", "kz", "w2", "ws", "wz", "s", "z"}, {"y"});
    const std::string bytes = b.Serialize();
    auto g = OptimizedGraph(bytes);
    ASSERT_TRUE(g.ok()) << g.status();
    EXPECT_EQ(CountOps(*g, "QLinearConcat"), 1) << g->DebugString();
    EXPECT_EQ(CountOps(*g, "Concat") + CountOps(*g, "DequantizeLinear") + CountOps(*g, "QuantizeLinear"), 0)
        << g->DebugString();
    EXPECT_EQ(CountOps(*g, "Transpose"), 2) << g->DebugString();
    Tensor x = Tensor::Zeros(t, {2, 5, 9, 7});
    for (int64_t i = 0; i < x.num_elements(); ++i) static_cast<uint8_t*>(x.raw_data())[i] = static_cast<uint8_t>((i * 71) % 253);
    auto y = RunPlainAndOptimized(bytes, {{"x", x}});
    ASSERT_TRUE(y.ok()) << y.status();
    const auto& [u, v] = *y;
    ASSERT_EQ(u.shape(), v.shape());
    int changed = 0;
    for (int64_t i = 0; i < u.num_elements(); ++i) {
      const int a = s8 ? int{u.data<int8_t>()[i]} : int{u.data<uint8_t>()[i]};
      const int c = s8 ? int{v.data<int8_t>()[i]} : int{v.data<uint8_t>()[i]};
      EXPECT_LE(std::abs(a - c), 1) << i;
      changed += a != c;
    }
    EXPECT_LT(changed, u.num_elements() / 10);
  }
}

}  // namespace
}  // namespace kvant
