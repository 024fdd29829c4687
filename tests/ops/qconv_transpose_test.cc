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
  int64_t cin, cout, kh, kw, sh, sw, dh, dw, pt, pl, pb, pr, oph, opw, h, w;
};

TEST(QLinearOps, ConvTransposeMatchesTheIntegerDefinition) {
  const std::vector<Case> cases = {
      {24, 5, 2, 2, 2, 2, 1, 1, 0, 0, 0, 0, 0, 0, 5, 7},  // patches tile the output (a detector's upsampling)
      {6, 3, 3, 1, 3, 1, 1, 1, 0, 0, 0, 0, 0, 0, 4, 9},   // tiles, kh != kw
      {24, 1, 2, 2, 2, 2, 1, 1, 0, 0, 0, 0, 0, 0, 6, 8},  // tiles, one output channel
      {7, 17, 3, 3, 2, 2, 1, 1, 1, 1, 1, 1, 1, 1, 6, 5},  // overlapping, padding, output padding
      {33, 3, 4, 3, 2, 3, 2, 1, 2, 0, 1, 1, 0, 0, 5, 4},  // dilation, uneven padding
      {40, 36, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 3, 3}, // stride 1
  };
  const std::vector<QTypes> types = {
      {DataType::kUInt8, DataType::kInt8, DataType::kUInt8, 128, 128, {0}, true, true},
      {DataType::kInt8, DataType::kUInt8, DataType::kInt8, -3, 5, {128}, false, false},
      {DataType::kUInt8, DataType::kInt8, DataType::kUInt8, 255, 0, {-2, 3, 0, 7}, true, true},
      {DataType::kUInt8, DataType::kUInt8, DataType::kUInt8, 0, 255, {3, 250, 128, 0}, false, true},
  };
  std::mt19937 rng(5);
  for (const Case& c : cases) {
    for (const QTypes& t : types) {
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
              const int xq = ByteValue(t.x, xv[((b * c.cin + ci) * c.h + iy) * c.w + ix]) - t.zx;
              for (int64_t co = 0; co < c.cout; ++co)
                for (int64_t ky = 0; ky < c.kh; ++ky)
                  for (int64_t kx = 0; kx < c.kw; ++kx) {
                    const int64_t oy = iy * c.sh - c.pt + ky * c.dh, ox = ix * c.sw - c.pl + kx * c.dw;
                    if (oy < 0 || oy >= oh || ox < 0 || ox >= ow) continue;
                    const int wq = ByteValue(t.w, wv[((ci * c.cout + co) * c.kh + ky) * c.kw + kx]) - zw[co];
                    acc[((b * c.cout + co) * oh + oy) * ow + ox] += xq * wq;
                  }
            }
      const QExpected e = Requantized(acc, bias, c.cout, oh * ow, t, rng);
      OnnxBuilder m(13);
      m.Input("x", t.x, {n, c.cin, c.h, c.w}).Output("y", t.y);
      const std::vector<std::string> in = AddQLinearConvInputs(m, t, e, {c.cin, c.cout, c.kh, c.kw}, wv, zw, bias);
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
      Tensor x = ByteTensor(t.x, {n, c.cin, c.h, c.w}, xv);
      for (int threads : {1, 2}) {
        SessionOptions o;
        o.num_threads = threads;
        auto y = RunPlainAndOptimized(bytes, {{"x", x}}, o);
        ASSERT_TRUE(y.ok()) << y.status();
        for (const Tensor* r : {&y->first, &y->second}) {
          ASSERT_EQ(r->shape(), (std::vector<int64_t>{n, c.cout, oh, ow}));
          const auto* got = static_cast<const uint8_t*>(r->raw_data());
          for (size_t i = 0; i < e.want.size(); ++i) {
            ASSERT_EQ(ByteValue(t.y, got[i]), e.want[i]) << "at " << i << (r == &y->first ? " (NCHW)" : " (NHWC)");
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
  m.Initializer("z", ByteTensor(DataType::kUInt8, {}, {0}));
  m.Initializer("wz", ByteTensor(DataType::kInt8, {}, {0}));
  m.Initializer("w", ByteTensor(DataType::kInt8, {4, 1, 2, 2}, std::vector<int>(16, 1)));
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
