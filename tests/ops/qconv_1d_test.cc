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

namespace kvant {
namespace {

using testing::CountOps;
using testing::OnnxBuilder;
using testing::OptimizedGraph;
using testing::RunPlainAndOptimized;

struct Case {
  int64_t cin, cout, k, s, d, pl, pr, w;
  bool depthwise;
};

struct Types {
  DataType x, w, y;
  int zx, zy;
  std::vector<int> zw;  // one value, or per output channel
  bool per_channel_scale, bias;
};

int Byte(DataType t, uint8_t b) { return t == DataType::kInt8 ? static_cast<int8_t>(b) : b; }

Tensor Bytes(DataType t, const std::vector<int64_t>& shape, const std::vector<int>& v) {
  Tensor out = Tensor::Zeros(t, shape);
  for (size_t i = 0; i < v.size(); ++i) static_cast<uint8_t*>(out.raw_data())[i] = static_cast<uint8_t>(v[i]);
  return out;
}

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

const std::vector<Types>& AllTypes() {
  static const std::vector<Types> types = {
      {DataType::kUInt8, DataType::kInt8, DataType::kUInt8, 128, 128, {0}, true, true},
      {DataType::kInt8, DataType::kUInt8, DataType::kInt8, -3, 5, {128}, false, false},
      {DataType::kUInt8, DataType::kInt8, DataType::kUInt8, 255, 0, {-2, 3, 0, 7}, true, true},
      {DataType::kUInt8, DataType::kUInt8, DataType::kUInt8, 0, 255, {3, 250, 128, 0}, false, true},
  };
  return types;
}

int64_t OutWidth(const Case& c) { return (c.w + c.pl + c.pr - c.d * (c.k - 1) - 1) / c.s + 1; }

// The integer sums of x (n, cin, w) and weights (cout, cin / group, k).
std::vector<int64_t> Sums(const Case& c, const Types& t, int64_t n, const std::vector<int>& xv,
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
            const int xq = Byte(t.x, xv[(b * c.cin + ci) * c.w + ix]) - t.zx;
            sum += xq * (Byte(t.w, wv[(co * per + j) * c.k + tap]) - zw[co]);
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
    for (const Types& t : AllTypes()) {
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
      int64_t peak = 1;
      for (int64_t a : acc) peak = std::max<int64_t>(peak, std::abs(a));
      // Scales: outputs spread over about +-150 steps, so both ends saturate.
      const float sx = 0.02f;
      std::vector<float> sw(t.per_channel_scale ? c.cout : 1);
      for (float& s : sw) s = 0.004f * (1 + rng() % 5);
      const float sy = static_cast<float>(peak) * sx * sw[0] / 150.f;
      const int lo = t.y == DataType::kInt8 ? -128 : 0, hi = t.y == DataType::kInt8 ? 127 : 255;
      std::vector<int> want(acc.size());
      for (size_t i = 0; i < acc.size(); ++i) {
        const int64_t co = static_cast<int64_t>(i) / ow % c.cout;
        const float scale = sx * sw[t.per_channel_scale ? co : 0] / sy;
        want[i] = std::clamp(cpu::RequantizeFloat(static_cast<int32_t>(acc[i] + bias[co]), scale) + t.zy, lo, hi);
      }
      const std::vector<int64_t> w_shape = {c.cout, per, c.k};
      OnnxBuilder m(13);
      m.Input("x", t.x, {n, c.cin, c.w}).Output("y", t.y);
      m.Initializer("xs", Tensor::FromVector<float>(DataType::kFloat32, {}, {sx}));
      m.Initializer("xz", Bytes(t.x, {}, {t.zx}));
      m.Initializer("w", Bytes(t.w, w_shape, wv));
      m.Initializer("ws", Tensor::FromVector<float>(DataType::kFloat32, {static_cast<int64_t>(sw.size())}, sw));
      m.Initializer("wz", t.zw.size() == 1 ? Bytes(t.w, {}, {t.zw[0]}) : Bytes(t.w, {c.cout}, zw));
      m.Initializer("ys", Tensor::FromVector<float>(DataType::kFloat32, {}, {sy}));
      m.Initializer("yz", Bytes(t.y, {}, {t.zy}));
      std::vector<std::string> in = {"x", "xs", "xz", "w", "ws", "wz", "ys", "yz"};
      if (t.bias) {
        m.Initializer("b", Tensor::FromVector<int32_t>(DataType::kInt32, {c.cout},
                                                       std::vector<int32_t>(bias.begin(), bias.end())));
        in.push_back("b");
      }
      SetWindow(m.Node("QLinearConv", in, {"y"}, "conv1d"), c);
      const std::string bytes = m.Serialize();
      Tensor x = Bytes(t.x, {n, c.cin, c.w}, xv);
      for (int threads : {1, 2}) {
        SessionOptions o;
        o.num_threads = threads;
        auto y = RunPlainAndOptimized(bytes, {{"x", x}}, o);
        ASSERT_TRUE(y.ok()) << y.status();
        for (const Tensor* r : {&y->first, &y->second}) {
          ASSERT_EQ(r->shape(), (std::vector<int64_t>{n, c.cout, ow}));
          const auto* got = static_cast<const uint8_t*>(r->raw_data());
          for (size_t i = 0; i < want.size(); ++i) ASSERT_EQ(Byte(t.y, got[i]), want[i]) << "at " << i;
        }
      }
    }
  }
}

TEST(QLinearOps, ConvInteger1dIsTheIntegerSums) {
  std::mt19937 rng(12);
  const Types& t = AllTypes()[3];  // u8 x u8, zero points 0 and per channel (3, 250, 128, 0)
  for (const Case& c : Cases()) {
    SCOPED_TRACE(::testing::Message() << "cin " << c.cin << " cout " << c.cout << " k " << c.k);
    const int64_t n = 1, per = c.depthwise ? 1 : c.cin;
    std::vector<int> xv(n * c.cin * c.w), wv(c.cout * per * c.k), zw(c.cout);
    for (int& v : xv) v = static_cast<uint8_t>(rng());
    for (int& v : wv) v = static_cast<uint8_t>(rng());
    for (int64_t co = 0; co < c.cout; ++co) zw[co] = t.zw[co % t.zw.size()];
    Types tz = t;
    tz.zx = 200;
    const std::vector<int64_t> acc = Sums(c, tz, n, xv, wv, zw);
    OnnxBuilder m(13);
    m.Input("x", DataType::kUInt8, {n, c.cin, c.w}).Output("y", DataType::kInt32);
    m.Initializer("xz", Bytes(DataType::kUInt8, {}, {200}));
    m.Initializer("w", Bytes(DataType::kUInt8, {c.cout, per, c.k}, wv));
    m.Initializer("wz", Bytes(DataType::kUInt8, {c.cout}, zw));
    SetWindow(m.Node("ConvInteger", {"x", "w", "xz", "wz"}, {"y"}), c);
    auto y = RunPlainAndOptimized(m.Serialize(), {{"x", Bytes(DataType::kUInt8, {n, c.cin, c.w}, xv)}});
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
  m.Initializer("xz", Bytes(DataType::kUInt8, {}, {128}));
  m.Initializer("wq", Bytes(DataType::kInt8, {4, 6, 3}, wv));
  m.Initializer("ws", Tensor::FromVector<float>(DataType::kFloat32, {4}, {0.01f, 0.02f, 0.015f, 0.005f}));
  m.Initializer("ys", Tensor::FromVector<float>(DataType::kFloat32, {}, {0.05f}));
  m.Initializer("yz", Bytes(DataType::kUInt8, {}, {0}));
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
