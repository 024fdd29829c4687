// INT8 1-D convolution (QLinearConv and ConvInteger with 3-D weights, as
// silero VAD's encoder and any audio or sequence model writes them; the
// kernel runs [n, c, w] as an image one row high) against the integer
// definition: sum over taps of (x - zx) * (w - zw), plus the bias, then
// requantized by x_scale * w_scale[co] / y_scale with round half to even
// (ConvInteger: the int32 sums themselves). Strides, dilations, uneven
// padding, kernels wider than the image's padding, group 1 and depthwise,
// K not a multiple of 4, u8 and s8 on every side, zero points 0 / 128 / 255
// and per channel, saturating outputs, one and two threads, and a QDQ 1-D
// Conv fusing into QLinearConv.
#include <algorithm>
#include <random>

#include "gtest/gtest.h"
#include "kvant/kvant.h"
#include "ops/cpu/gemm_s8.h"
#include "tests/testing/graph_checks.h"
#include "tests/testing/onnx_builder.h"
#include "tests/testing/qlinear_case.h"

namespace kvant {
namespace {

using testing::AddQLinearConvInputs;
using testing::ByteTensor;
using testing::ByteValue;
using testing::CountOps;
using testing::OnnxBuilder;
using testing::QExpected;
using testing::QTypes;
using testing::Requantized;
using testing::OptimizedGraph;
using testing::RunPlainAndOptimized;

struct Case {
  int64_t cin, cout, k, s, d, pl, pr, w;
  bool depthwise;
};

const std::vector<Case>& Cases() {
  static const std::vector<Case> cases = {
      {129, 128, 3, 1, 1, 1, 1, 4, false},   // silero's first encoder convolution (K = 387)
      {128, 64, 3, 2, 1, 1, 1, 4, false},    // stride 2
      {1, 66, 64, 32, 1, 0, 0, 160, false},  // a framed transform: one channel, wide kernel
      {17, 5, 5, 1, 2, 3, 1, 11, false},     // dilation, uneven padding
      {7, 33, 1, 1, 1, 0, 0, 9, false},      // pointwise, K = 7
      {48, 48, 5, 1, 1, 2, 2, 13, true},     // depthwise
      {24, 24, 3, 2, 1, 1, 0, 8, true},      // depthwise, stride 2
      {5, 3, 7, 1, 1, 3, 3, 2, false},       // the kernel is wider than the image
  };
  return cases;
}

const std::vector<QTypes>& AllTypes() {
  static const std::vector<QTypes> types = {
      {DataType::kUInt8, DataType::kInt8, DataType::kUInt8, 128, 128, {0}, true, true},
      {DataType::kInt8, DataType::kUInt8, DataType::kInt8, -3, 5, {128}, false, false},
      {DataType::kUInt8, DataType::kInt8, DataType::kUInt8, 255, 0, {-2, 3, 0, 7}, true, true},
      {DataType::kUInt8, DataType::kUInt8, DataType::kUInt8, 0, 255, {3, 250, 128, 0}, false, true},
  };
  return types;
}

int64_t OutWidth(const Case& c) { return (c.w + c.pl + c.pr - c.d * (c.k - 1) - 1) / c.s + 1; }

// The integer sums of x (n, cin, w) and weights (cout, cin / group, k).
std::vector<int64_t> Sums(const Case& c, const QTypes& t, int64_t n, const std::vector<int>& xv,
                          const std::vector<int>& wv, const std::vector<int>& zw) {
  const int64_t ow = OutWidth(c), per = c.depthwise ? 1 : c.cin;
  std::vector<int64_t> acc(n * c.cout * ow, 0);
  for (int64_t b = 0; b < n; ++b)
    for (int64_t co = 0; co < c.cout; ++co)
      for (int64_t o = 0; o < ow; ++o) {
        int64_t sum = 0;
        for (int64_t j = 0; j < per; ++j) {
          const int64_t ci = c.depthwise ? co : j;
          for (int64_t tap = 0; tap < c.k; ++tap) {
            const int64_t ix = o * c.s - c.pl + tap * c.d;
            if (ix < 0 || ix >= c.w) continue;
            const int xq = ByteValue(t.x, xv[(b * c.cin + ci) * c.w + ix]) - t.zx;
            sum += xq * (ByteValue(t.w, wv[(co * per + j) * c.k + tap]) - zw[co]);
          }
        }
        acc[(b * c.cout + co) * ow + o] = sum;
      }
  return acc;
}

void SetWindow(onnx::NodeProto& node, const Case& c) {
  OnnxBuilder::SetInts(node, "kernel_shape", {c.k});
  OnnxBuilder::SetInts(node, "strides", {c.s});
  OnnxBuilder::SetInts(node, "dilations", {c.d});
  OnnxBuilder::SetInts(node, "pads", {c.pl, c.pr});
  if (c.depthwise) OnnxBuilder::SetInt(node, "group", c.cin);
}

TEST(QLinearOps, Conv1dMatchesTheIntegerDefinition) {
  std::mt19937 rng(11);
  for (const Case& c : Cases()) {
    for (const QTypes& t : AllTypes()) {
      SCOPED_TRACE(::testing::Message() << "cin " << c.cin << " cout " << c.cout << " k " << c.k << " s " << c.s
                                        << " d " << c.d << " w " << c.w << (c.depthwise ? " depthwise" : "")
                                        << " x " << DataTypeName(t.x) << " w " << DataTypeName(t.w) << " y "
                                        << DataTypeName(t.y));
      const int64_t n = 2, ow = OutWidth(c), per = c.depthwise ? 1 : c.cin;
      std::vector<int> xv(n * c.cin * c.w), wv(c.cout * per * c.k), zw(c.cout), bias(c.cout);
      for (int& v : xv) v = static_cast<uint8_t>(rng());
      for (int& v : wv) v = static_cast<uint8_t>(rng());
      for (int64_t co = 0; co < c.cout; ++co) {
        zw[co] = t.zw[co % t.zw.size()];
        bias[co] = t.bias ? static_cast<int>(rng() % 20001) - 10000 : 0;
      }
      const std::vector<int64_t> acc = Sums(c, t, n, xv, wv, zw);
      const QExpected e = Requantized(acc, bias, c.cout, ow, t, rng);
      OnnxBuilder m(13);
      m.Input("x", t.x, {n, c.cin, c.w}).Output("y", t.y);
      const std::vector<std::string> in = AddQLinearConvInputs(m, t, e, {c.cout, per, c.k}, wv, zw, bias);
      SetWindow(m.Node("QLinearConv", in, {"y"}, "conv1d"), c);
      const std::string bytes = m.Serialize();
      Tensor x = ByteTensor(t.x, {n, c.cin, c.w}, xv);
      for (int threads : {1, 2}) {
        SessionOptions o;
        o.num_threads = threads;
        auto y = RunPlainAndOptimized(bytes, {{"x", x}}, o);
        ASSERT_TRUE(y.ok()) << y.status();
        for (const Tensor* r : {&y->first, &y->second}) {
          ASSERT_EQ(r->shape(), (std::vector<int64_t>{n, c.cout, ow}));
          const auto* got = static_cast<const uint8_t*>(r->raw_data());
          for (size_t i = 0; i < e.want.size(); ++i) ASSERT_EQ(ByteValue(t.y, got[i]), e.want[i]) << "at " << i;
        }
      }
    }
  }
}

TEST(QLinearOps, ConvInteger1dIsTheIntegerSums) {
  std::mt19937 rng(12);
  const QTypes& t = AllTypes()[3];  // u8 x u8, zero points 0 and per channel (3, 250, 128, 0)
  for (const Case& c : Cases()) {
    SCOPED_TRACE(::testing::Message() << "cin " << c.cin << " cout " << c.cout << " k " << c.k);
    const int64_t n = 1, per = c.depthwise ? 1 : c.cin;
    std::vector<int> xv(n * c.cin * c.w), wv(c.cout * per * c.k), zw(c.cout);
    for (int& v : xv) v = static_cast<uint8_t>(rng());
    for (int& v : wv) v = static_cast<uint8_t>(rng());
    for (int64_t co = 0; co < c.cout; ++co) zw[co] = t.zw[co % t.zw.size()];
    QTypes tz = t;
    tz.zx = 200;
    const std::vector<int64_t> acc = Sums(c, tz, n, xv, wv, zw);
    OnnxBuilder m(13);
    m.Input("x", DataType::kUInt8, {n, c.cin, c.w}).Output("y", DataType::kInt32);
    m.Initializer("xz", ByteTensor(DataType::kUInt8, {}, {200}));
    m.Initializer("w", ByteTensor(DataType::kUInt8, {c.cout, per, c.k}, wv));
    m.Initializer("wz", ByteTensor(DataType::kUInt8, {c.cout}, zw));
    SetWindow(m.Node("ConvInteger", {"x", "w", "xz", "wz"}, {"y"}), c);
    auto y = RunPlainAndOptimized(m.Serialize(), {{"x", ByteTensor(DataType::kUInt8, {n, c.cin, c.w}, xv)}});
    ASSERT_TRUE(y.ok()) << y.status();
    for (const Tensor* r : {&y->first, &y->second}) {
      ASSERT_EQ(r->num_elements(), static_cast<int64_t>(acc.size()));
      for (size_t i = 0; i < acc.size(); ++i) ASSERT_EQ(r->data<int32_t>()[i], acc[i]) << "at " << i;
    }
  }
}

// DequantizeLinear -> 1-D Conv -> Relu -> QuantizeLinear (what `kvant
// quantize` writes for silero VAD's encoder) runs as one QLinearConv.
TEST(QLinearOps, QdqConv1dFusesIntoQLinearConv) {
  OnnxBuilder m(13);
  m.Input("x", DataType::kFloat32, {1, 6, 10}).Output("y");
  std::mt19937 rng(13);
  std::vector<int> wv(4 * 6 * 3);
  for (int& v : wv) v = static_cast<int>(rng() % 255) - 127;
  m.Initializer("xs", Tensor::FromVector<float>(DataType::kFloat32, {}, {0.02f}));
  m.Initializer("xz", ByteTensor(DataType::kUInt8, {}, {128}));
  m.Initializer("wq", ByteTensor(DataType::kInt8, {4, 6, 3}, wv));
  m.Initializer("ws", Tensor::FromVector<float>(DataType::kFloat32, {4}, {0.01f, 0.02f, 0.015f, 0.005f}));
  m.Initializer("ys", Tensor::FromVector<float>(DataType::kFloat32, {}, {0.05f}));
  m.Initializer("yz", ByteTensor(DataType::kUInt8, {}, {0}));
  m.Node("QuantizeLinear", {"x", "xs", "xz"}, {"xq"});
  m.Node("DequantizeLinear", {"xq", "xs", "xz"}, {"xd"});
  OnnxBuilder::SetInt(m.Node("DequantizeLinear", {"wq", "ws"}, {"wd"}), "axis", 0);
  OnnxBuilder::SetInts(m.Node("Conv", {"xd", "wd"}, {"c"}, "conv"), "pads", {1, 1});
  m.Node("Relu", {"c"}, {"r"});
  m.Node("QuantizeLinear", {"r", "ys", "yz"}, {"yq"});
  m.Node("DequantizeLinear", {"yq", "ys", "yz"}, {"y"});
  const std::string bytes = m.Serialize();
  auto g = OptimizedGraph(bytes);
  ASSERT_TRUE(g.ok()) << g.status();
  EXPECT_EQ(CountOps(*g, "QLinearConv"), 1) << g->DebugString();
  EXPECT_EQ(CountOps(*g, "Conv"), 0) << g->DebugString();
  std::vector<float> xv(60);
  for (float& v : xv) v = static_cast<float>(static_cast<int>(rng() % 200) - 100) * 0.02f;
  auto y = RunPlainAndOptimized(bytes, {{"x", Tensor::FromVector<float>(DataType::kFloat32, {1, 6, 10}, xv)}});
  ASSERT_TRUE(y.ok()) << y.status();
  // The unfused graph rounds a float sum: one step apart where it lands on a half.
  int exact = 0;
  for (int64_t i = 0; i < y->first.num_elements(); ++i) {
    ASSERT_NEAR(y->first.data<float>()[i], y->second.data<float>()[i], 0.05f * 1.001f) << i;
    exact += y->first.data<float>()[i] == y->second.data<float>()[i];
  }
  EXPECT_GE(exact, y->first.num_elements() * 9 / 10);
}

}  // namespace
}  // namespace kvant
