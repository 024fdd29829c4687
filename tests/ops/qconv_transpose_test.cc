// INT8 ConvTranspose (com.microsoft.QLinearConvTranspose, ops/cpu/conv_transpose_s8.cc)
// against its integer definition: every input pixel adds (x - zx) * (w - zw)
// over a kernel-sized patch, plus the bias once, requantized by
// x_scale * w_scale[co] / y_scale with round half to even. Patches that
// tile the output and patches that overlap (strides, padding, dilation,
// output padding), u8 and s8 on every side, zero points 0 / 128 / 255 and
// per channel, saturating outputs, K not a multiple of 4, one output
// channel; NCHW (the model as written) and NHWC (the layout pass), one and
// two threads, the bytes equal.
#include <algorithm>
#include <cmath>
#include <cstring>
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
  int64_t cin, cout, kh, kw, sh, sw, dh, dw, pt, pl, pb, pr, oph, opw, h, w;
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

TEST(QLinearOps, ConvTransposeMatchesTheIntegerDefinition) {
  const std::vector<Case> cases = {
      {24, 5, 2, 2, 2, 2, 1, 1, 0, 0, 0, 0, 0, 0, 5, 7},  // patches tile the output (a detector's upsampling)
      {6, 3, 3, 1, 3, 1, 1, 1, 0, 0, 0, 0, 0, 0, 4, 9},   // tiles, kh != kw
      {24, 1, 2, 2, 2, 2, 1, 1, 0, 0, 0, 0, 0, 0, 6, 8},  // tiles, one output channel
      {7, 17, 3, 3, 2, 2, 1, 1, 1, 1, 1, 1, 1, 1, 6, 5},  // overlapping, padding, output padding
      {33, 3, 4, 3, 2, 3, 2, 1, 2, 0, 1, 1, 0, 0, 5, 4},  // dilation, uneven padding
      {40, 36, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 3, 3}, // stride 1
  };
  const std::vector<Types> types = {
      {DataType::kUInt8, DataType::kInt8, DataType::kUInt8, 128, 128, {0}, true, true},
      {DataType::kInt8, DataType::kUInt8, DataType::kInt8, -3, 5, {128}, false, false},
      {DataType::kUInt8, DataType::kInt8, DataType::kUInt8, 255, 0, {-2, 3, 0, 7}, true, true},
      {DataType::kUInt8, DataType::kUInt8, DataType::kUInt8, 0, 255, {3, 250, 128, 0}, false, true},
  };
  std::mt19937 rng(5);
  for (const Case& c : cases) {
    for (const Types& t : types) {
      SCOPED_TRACE(::testing::Message() << "cin " << c.cin << " cout " << c.cout << " k " << c.kh << "x" << c.kw
                                        << " s " << c.sh << "x" << c.sw << " x " << DataTypeName(t.x) << " w "
                                        << DataTypeName(t.w) << " y " << DataTypeName(t.y));
      const int64_t n = 2;
      const int64_t oh = (c.h - 1) * c.sh - c.pt - c.pb + (c.kh - 1) * c.dh + 1 + c.oph;
      const int64_t ow = (c.w - 1) * c.sw - c.pl - c.pr + (c.kw - 1) * c.dw + 1 + c.opw;
      std::vector<int> xv(n * c.cin * c.h * c.w), wv(c.cin * c.cout * c.kh * c.kw), zw(c.cout), bias(c.cout);
      for (int& v : xv) v = static_cast<uint8_t>(rng());
      for (int& v : wv) v = static_cast<uint8_t>(rng());
      for (int64_t co = 0; co < c.cout; ++co) {
        zw[co] = t.zw[co % t.zw.size()];
        bias[co] = t.bias ? static_cast<int>(rng() % 20001) - 10000 : 0;
      }
      // Integer sums.
      std::vector<int64_t> acc(n * c.cout * oh * ow, 0);
      for (int64_t b = 0; b < n; ++b)
        for (int64_t ci = 0; ci < c.cin; ++ci)
          for (int64_t iy = 0; iy < c.h; ++iy)
            for (int64_t ix = 0; ix < c.w; ++ix) {
              const int xq = Byte(t.x, xv[((b * c.cin + ci) * c.h + iy) * c.w + ix]) - t.zx;
              for (int64_t co = 0; co < c.cout; ++co)
                for (int64_t ky = 0; ky < c.kh; ++ky)
                  for (int64_t kx = 0; kx < c.kw; ++kx) {
                    const int64_t oy = iy * c.sh - c.pt + ky * c.dh, ox = ix * c.sw - c.pl + kx * c.dw;
                    if (oy < 0 || oy >= oh || ox < 0 || ox >= ow) continue;
                    const int wq = Byte(t.w, wv[((ci * c.cout + co) * c.kh + ky) * c.kw + kx]) - zw[co];
                    acc[((b * c.cout + co) * oh + oy) * ow + ox] += xq * wq;
                  }
            }
      int64_t peak = 1;
      for (int64_t& a : acc) peak = std::max<int64_t>(peak, std::abs(a));
      // Scales: outputs spread over about +-150 steps, so both ends saturate.
      const float sx = 0.02f;
      std::vector<float> sw(t.per_channel_scale ? c.cout : 1);
      for (float& s : sw) s = 0.004f * (1 + rng() % 5);
      const float sy = static_cast<float>(peak) * sx * sw[0] / 150.f;
      std::vector<int> want(acc.size());
      const int lo = t.y == DataType::kInt8 ? -128 : 0, hi = t.y == DataType::kInt8 ? 127 : 255;
      for (int64_t i = 0; i < static_cast<int64_t>(acc.size()); ++i) {
        const int64_t co = i / (oh * ow) % c.cout;
        const float scale = sx * sw[t.per_channel_scale ? co : 0] / sy;
        const int32_t v = static_cast<int32_t>(acc[i] + bias[co]);
        want[i] = std::clamp(cpu::RequantizeFloat(v, scale) + t.zy, lo, hi);
      }
      OnnxBuilder m(13);
      m.Input("x", t.x, {n, c.cin, c.h, c.w}).Output("y", t.y);
      m.Initializer("xs", Tensor::FromVector<float>(DataType::kFloat32, {}, {sx}));
      m.Initializer("xz", Bytes(t.x, {}, {t.zx}));
      m.Initializer("w", Bytes(t.w, {c.cin, c.cout, c.kh, c.kw}, wv));
      m.Initializer("ws", Tensor::FromVector<float>(DataType::kFloat32, {static_cast<int64_t>(sw.size())}, sw));
      m.Initializer("wz", t.zw.size() == 1 ? Bytes(t.w, {}, {t.zw[0]}) : Bytes(t.w, {c.cout}, zw));
      m.Initializer("ys", Tensor::FromVector<float>(DataType::kFloat32, {}, {sy}));
      m.Initializer("yz", Bytes(t.y, {}, {t.zy}));
      std::vector<std::string> in = {"x", "xs", "xz", "w", "ws", "wz", "ys", "yz"};
      if (t.bias) {
        std::vector<int32_t> b32(bias.begin(), bias.end());
        m.Initializer("b", Tensor::FromVector<int32_t>(DataType::kInt32, {c.cout}, b32));
        in.push_back("b");
      }
      auto& node = m.Node("QLinearConvTranspose", in, {"y"});
      node.set_domain("com.microsoft");
      OnnxBuilder::SetInts(node, "strides", {c.sh, c.sw});
      OnnxBuilder::SetInts(node, "dilations", {c.dh, c.dw});
      OnnxBuilder::SetInts(node, "pads", {c.pt, c.pl, c.pb, c.pr});
      OnnxBuilder::SetInts(node, "output_padding", {c.oph, c.opw});
      const std::string bytes = m.Serialize();
      auto g = OptimizedGraph(bytes);
      ASSERT_TRUE(g.ok()) << g.status();
      EXPECT_EQ(CountOps(*g, "QLinearConvTransposeNhwc"), 1) << g->DebugString();
      Tensor x = Bytes(t.x, {n, c.cin, c.h, c.w}, xv);
      for (int threads : {1, 2}) {
        SessionOptions o;
        o.num_threads = threads;
        auto y = RunPlainAndOptimized(bytes, {{"x", x}}, o);
        ASSERT_TRUE(y.ok()) << y.status();
        for (const Tensor* r : {&y->first, &y->second}) {
          ASSERT_EQ(r->shape(), (std::vector<int64_t>{n, c.cout, oh, ow}));
          const auto* got = static_cast<const uint8_t*>(r->raw_data());
          for (size_t i = 0; i < want.size(); ++i) {
            ASSERT_EQ(Byte(t.y, got[i]), want[i]) << "at " << i << (r == &y->first ? " (NCHW)" : " (NHWC)");
          }
        }
      }
    }
  }
}

// Grouped INT8 transposed convolutions are not implemented: a clear error.
TEST(QLinearOps, GroupedConvTransposeIsRefusedByName) {
  OnnxBuilder m(13);
  m.Input("x", DataType::kUInt8, {1, 4, 3, 3}).Output("y", DataType::kUInt8);
  m.Initializer("s", Tensor::FromVector<float>(DataType::kFloat32, {}, {0.1f}));
  m.Initializer("z", Bytes(DataType::kUInt8, {}, {0}));
  m.Initializer("wz", Bytes(DataType::kInt8, {}, {0}));
  m.Initializer("w", Bytes(DataType::kInt8, {4, 1, 2, 2}, std::vector<int>(16, 1)));
  auto& node = m.Node("QLinearConvTranspose", {"x", "s", "z", "w", "s", "wz", "s", "z"}, {"y"}, "up");
  node.set_domain("com.microsoft");
  OnnxBuilder::SetInt(node, "group", 2);
  OnnxBuilder::SetInts(node, "strides", {2, 2});
  auto s = Session::LoadFromBytes(m.Serialize());
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.status().message().find("up"), std::string::npos) << s.status();
  EXPECT_NE(s.status().message().find("group 1"), std::string::npos) << s.status();
}

}  // namespace
}  // namespace kvant
