// Every FP32 CPU operator against a plain reference on seeded random inputs,
// run through a one-node model (import, shape inference, kernel selection,
// planning and execution all take part). References are short loops written
// from the ONNX operator specifications.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <functional>
#include <numeric>
#include <random>

#include "gtest/gtest.h"
#include "kvant/kvant.h"
#include "runtime/cpu_caps.h"
#include "tests/testing/graph_checks.h"
#include "tests/testing/onnx_builder.h"

namespace kvant {
namespace {

using testing::OnnxBuilder;
using testing::RandomF32;

std::vector<int64_t> Strides(const std::vector<int64_t>& s) {
  std::vector<int64_t> st(s.size(), 1);
  for (int64_t i = static_cast<int64_t>(s.size()) - 2; i >= 0; --i) st[i] = st[i + 1] * s[i + 1];
  return st;
}

std::vector<int64_t> Coords(int64_t flat, const std::vector<int64_t>& shape) {
  std::vector<int64_t> c(shape.size());
  for (int64_t i = static_cast<int64_t>(shape.size()) - 1; i >= 0; --i) {
    c[i] = flat % shape[i];
    flat /= shape[i];
  }
  return c;
}

// Runs `b`'s model on the inputs and returns output "y".
Tensor RunModel(OnnxBuilder& b, const TensorMap& inputs, int threads = 1) {
  SessionOptions options;
  options.num_threads = threads;
  auto s = Session::LoadFromBytes(b.Serialize(), options);
  EXPECT_TRUE(s.ok()) << s.status();
  if (!s.ok()) return Tensor();
  auto out = s->Run(inputs);
  EXPECT_TRUE(out.ok()) << out.status();
  return out.ok() ? out->at("y") : Tensor();
}

void ExpectClose(const Tensor& got, const Tensor& want, float tol, const std::string& what) {
  ASSERT_EQ(got.shape(), want.shape()) << what;
  for (int64_t i = 0; i < want.num_elements(); ++i) {
    const float w = want.data<float>()[i], g = got.data<float>()[i];
    ASSERT_NEAR(g, w, tol * (1 + std::fabs(w))) << what << " at index " << i;
  }
}

struct UnaryCase {
  const char* op;
  std::function<float(float)> ref;
  float lo = -3.f, hi = 3.f;
};

TEST(CpuOps, Unary) {
  const UnaryCase cases[] = {
      {"Relu", [](float x) { return std::max(x, 0.f); }},
      {"Sigmoid", [](float x) { return 1.f / (1.f + std::exp(-x)); }},
      {"Tanh", [](float x) { return std::tanh(x); }},
      {"Erf", [](float x) { return std::erf(x); }},
      {"Gelu", [](float x) { return 0.5f * x * (1.f + std::erf(x / std::sqrt(2.f))); }, -6.f, 6.f},
      {"Exp", [](float x) { return std::exp(x); }},
      {"Neg", [](float x) { return -x; }},
      {"Abs", [](float x) { return std::fabs(x); }},
      {"Sqrt", [](float x) { return std::sqrt(x); }, 0.f, 4.f},
      {"Reciprocal", [](float x) { return 1.f / x; }, 0.5f, 4.f},
      {"HardSwish", [](float x) { return x * std::min(1.f, std::max(0.f, x / 6 + 0.5f)); }},
      {"HardSigmoid", [](float x) { return std::min(1.f, std::max(0.f, 0.2f * x + 0.5f)); }},
      {"LeakyRelu", [](float x) { return x >= 0 ? x : 0.01f * x; }},
  };
  uint64_t seed = 1;
  for (const auto& c : cases) {
    OnnxBuilder b;
    b.Input("x", DataType::kFloat32, {3, 5, 7}).Output("y");
    b.Node(c.op, {"x"}, {"y"});
    Tensor x = RandomF32({3, 5, 7}, seed++, c.lo, c.hi);
    Tensor want = Tensor::Zeros(DataType::kFloat32, {3, 5, 7});
    for (int64_t i = 0; i < x.num_elements(); ++i) want.data<float>()[i] = c.ref(x.data<float>()[i]);
    ExpectClose(RunModel(b, {{"x", x}}), want, 1e-5f, c.op);
  }
}

TEST(CpuOps, BinaryBroadcast) {
  const std::vector<std::pair<std::vector<int64_t>, std::vector<int64_t>>> shapes = {
      {{4, 5}, {4, 5}}, {{4, 5}, {5}}, {{4, 1}, {1, 5}}, {{2, 3, 4}, {}}, {{3, 1, 4}, {2, 1}}, {{1}, {2, 3}}};
  const std::pair<const char*, std::function<float(float, float)>> ops[] = {
      {"Add", std::plus<float>()}, {"Sub", std::minus<float>()}, {"Mul", std::multiplies<float>()},
      {"Div", std::divides<float>()}, {"Pow", [](float a, float b) { return std::pow(a, b); }}};
  uint64_t seed = 10;
  for (const auto& [op, f] : ops) {
    for (const auto& [sa, sb] : shapes) {
      OnnxBuilder b;
      b.Input("a", DataType::kFloat32, sa).Input("b", DataType::kFloat32, sb).Output("y");
      b.Node(op, {"a", "b"}, {"y"});
      Tensor a = RandomF32(sa, seed++, 0.5f, 2.f), bt = RandomF32(sb, seed++, 0.5f, 2.f);
      std::vector<int64_t> ys(std::max(sa.size(), sb.size()));
      for (size_t i = 0; i < ys.size(); ++i) {
        int64_t da = i + sa.size() >= ys.size() ? sa[i + sa.size() - ys.size()] : 1;
        int64_t db = i + sb.size() >= ys.size() ? sb[i + sb.size() - ys.size()] : 1;
        ys[i] = std::max(da, db);
      }
      Tensor want = Tensor::Zeros(DataType::kFloat32, ys);
      for (int64_t i = 0; i < want.num_elements(); ++i) {
        auto c = Coords(i, ys);
        auto at = [&](const Tensor& t, const std::vector<int64_t>& s) {
          int64_t off = 0, st = 1;
          for (int64_t d = static_cast<int64_t>(s.size()) - 1; d >= 0; --d) {
            off += (s[d] == 1 ? 0 : c[d + ys.size() - s.size()]) * st;
            st *= s[d];
          }
          return t.data<float>()[off];
        };
        want.data<float>()[i] = f(at(a, sa), at(bt, sb));
      }
      ExpectClose(RunModel(b, {{"a", a}, {"b", bt}}), want, 1e-5f, op);
    }
  }
}

// Direct convolution, NCHW, 2-D (1-D as H = 1).
Tensor RefConv(const Tensor& x, const Tensor& w, const Tensor* bias, int64_t group, std::vector<int64_t> strides,
               std::vector<int64_t> dil, std::vector<int64_t> pads) {
  const int64_t n = x.shape()[0], c = x.shape()[1], h = x.shape()[2], wd = x.shape()[3];
  const int64_t m = w.shape()[0], cg = w.shape()[1], kh = w.shape()[2], kw = w.shape()[3];
  const int64_t oh = (h + pads[0] + pads[2] - dil[0] * (kh - 1) - 1) / strides[0] + 1;
  const int64_t ow = (wd + pads[1] + pads[3] - dil[1] * (kw - 1) - 1) / strides[1] + 1;
  Tensor y = Tensor::Zeros(DataType::kFloat32, {n, m, oh, ow});
  const int64_t mg = m / group;
  for (int64_t b = 0; b < n; ++b)
    for (int64_t o = 0; o < m; ++o)
      for (int64_t i = 0; i < oh; ++i)
        for (int64_t j = 0; j < ow; ++j) {
          double acc = bias ? bias->data<float>()[o] : 0.0;
          const int64_t g = o / mg;
          for (int64_t ci = 0; ci < cg; ++ci)
            for (int64_t p = 0; p < kh; ++p)
              for (int64_t q = 0; q < kw; ++q) {
                const int64_t ih = i * strides[0] - pads[0] + p * dil[0], iw = j * strides[1] - pads[1] + q * dil[1];
                if (ih < 0 || ih >= h || iw < 0 || iw >= wd) continue;
                acc += double(x.data<float>()[((b * c + g * cg + ci) * h + ih) * wd + iw]) *
                       w.data<float>()[((o * cg + ci) * kh + p) * kw + q];
              }
          y.data<float>()[((b * m + o) * oh + i) * ow + j] = static_cast<float>(acc);
        }
  return y;
}

TEST(CpuOps, Conv) {
  struct Case {
    int64_t n, c, h, w, m, k, group, stride, dil, pad;
    bool bias;
  };
  const Case cases[] = {
      {1, 3, 9, 11, 8, 3, 1, 1, 1, 1, true},  {2, 4, 8, 8, 6, 1, 1, 1, 1, 0, false},
      {1, 8, 10, 10, 8, 3, 8, 2, 1, 1, true}, {1, 6, 7, 9, 9, 3, 3, 1, 2, 2, true},
      {1, 16, 5, 5, 32, 3, 1, 2, 1, 0, true}, {3, 2, 1, 17, 5, 1, 1, 1, 1, 0, true},
      {1, 4, 6, 6, 8, 5, 2, 3, 1, 2, false},
      // Tiles: a 20x20 plane is two position tiles (256 + 144); 160 channels
      // per group take the channels-as-rows GEMM; 3x3 planes batch images.
      {2, 5, 20, 20, 12, 3, 1, 1, 1, 1, true}, {1, 6, 9, 7, 160, 3, 1, 1, 1, 1, true},
      {2, 8, 17, 16, 320, 1, 2, 1, 1, 0, true}, {37, 3, 3, 3, 7, 3, 1, 1, 1, 1, true},
      {3, 4, 18, 18, 6, 1, 1, 1, 1, 0, false},
      // Depthwise: 16-column vectors with tails, strides 1, 2, 3, dilation, 5x5.
      {1, 8, 13, 37, 8, 3, 8, 1, 1, 1, true}, {2, 6, 21, 35, 6, 3, 6, 2, 1, 1, true},
      {1, 5, 17, 50, 5, 5, 5, 3, 1, 2, true}, {1, 4, 11, 19, 4, 3, 4, 1, 2, 2, false},
      {1, 3, 9, 33, 3, 5, 3, 2, 1, 2, true},
      // Depthwise, staged: four vectors per group with mask-0 padding (7 blocks
      // wide, stride 2), rows grouped when a row has under four blocks.
      {1, 3, 23, 112, 3, 3, 3, 2, 1, 1, true}, {1, 2, 30, 40, 2, 5, 2, 1, 1, 2, false},
      // Depthwise with channels in the lanes (output narrower than 12): 20
      // channels (16 + 4), 17 channels over 2 images, dilation, stride 3 on
      // a 31-wide input, and a width just under the switch.
      {1, 20, 7, 7, 20, 5, 20, 1, 1, 2, true}, {2, 17, 9, 9, 17, 3, 17, 2, 1, 1, true},
      {1, 16, 10, 10, 16, 3, 16, 1, 2, 2, false}, {1, 5, 8, 31, 5, 3, 5, 3, 1, 1, true},
      {1, 33, 11, 11, 33, 3, 33, 1, 1, 1, true},
  };
  uint64_t seed = 100;
  for (const Case& c : cases) {
    OnnxBuilder b;
    Tensor x = RandomF32({c.n, c.c, c.h, c.w}, seed++);
    Tensor w = RandomF32({c.m, c.c / c.group, c.k, c.h == 1 ? 1 : c.k}, seed++);
    Tensor bias = RandomF32({c.m}, seed++);
    b.Input("x", DataType::kFloat32, {c.n, c.c, c.h, c.w}).Initializer("w", w).Output("y");
    std::vector<std::string> ins = {"x", "w"};
    if (c.bias) {
      b.Initializer("b", bias);
      ins.push_back("b");
    }
    auto& node = b.Node("Conv", ins, {"y"});
    const int64_t ph = c.h == 1 ? 0 : c.pad;
    OnnxBuilder::SetInt(node, "group", c.group);
    OnnxBuilder::SetInts(node, "strides", {c.h == 1 ? 1 : c.stride, c.stride});
    OnnxBuilder::SetInts(node, "dilations", {c.h == 1 ? 1 : c.dil, c.dil});
    OnnxBuilder::SetInts(node, "pads", {ph, c.pad, ph, c.pad});
    Tensor want = RefConv(x, w, c.bias ? &bias : nullptr, c.group, {c.h == 1 ? 1 : c.stride, c.stride},
                          {c.h == 1 ? 1 : c.dil, c.dil}, {ph, c.pad, ph, c.pad});
    ExpectClose(RunModel(b, {{"x", x}}), want, 1e-4f, "Conv");
    ExpectClose(RunModel(b, {{"x", x}}, 2), want, 1e-4f, "Conv, 2 threads");
  }
}

// Two or more FP32 convolutions run in NHWC (kvant.ConvNhwc, graph/passes/
// layout_nhwc.cc): chains through Relu, depthwise and pointwise layers, a
// residual Add, a channel Concat and GlobalAveragePool, against the NCHW
// reference composed by hand.
Tensor Relu(Tensor t) {
  for (int64_t i = 0; i < t.num_elements(); ++i) t.data<float>()[i] = std::max(0.f, t.data<float>()[i]);
  return t;
}

absl::StatusOr<Session> LoadWithThreads(const std::string& model, int threads) {
  SessionOptions options;
  options.num_threads = threads;
  return Session::LoadFromBytes(model, options);
}

TEST(CpuOps, ConvNhwcChains) {
  struct Case {
    int64_t n, c, h, w, m, k, stride, dil, pad;
  };
  const Case cases[] = {
      {1, 3, 17, 19, 16, 3, 2, 1, 1}, {2, 8, 12, 12, 20, 3, 1, 1, 1}, {1, 5, 9, 23, 33, 5, 1, 2, 4},
      {3, 16, 7, 7, 24, 1, 1, 1, 0},  {1, 4, 30, 30, 17, 3, 2, 1, 0},
      // Depthwise rows wider than 32: the unstaged kernel with edge groups.
      {1, 4, 40, 70, 20, 3, 1, 1, 1},
      // 1-4 channels: the first convolution reads the NCHW input
      // (kvant_nchw_input): stride 2 over 35 outputs a row (two vectors and
      // a tail), stride 1 with dilation, stride 3 (the scalar gather), batch 2.
      {2, 3, 9, 70, 16, 3, 2, 1, 1},  {2, 1, 11, 37, 8, 3, 1, 2, 2},  {1, 2, 13, 40, 8, 5, 3, 1, 2},
  };
  uint64_t seed = 700;
  for (const Case& c : cases) {
    const std::string what = "ConvNhwc chain " + std::to_string(c.c) + "x" + std::to_string(c.h) + "x" +
                             std::to_string(c.w) + " -> " + std::to_string(c.m) + " k" + std::to_string(c.k);
    Tensor x = RandomF32({c.n, c.c, c.h, c.w}, seed++);
    Tensor w1 = RandomF32({c.m, c.c, c.k, c.k}, seed++), b1 = RandomF32({c.m}, seed++);
    Tensor wd = RandomF32({c.m, 1, 3, 3}, seed++), bd = RandomF32({c.m}, seed++);
    Tensor wp = RandomF32({c.m, c.m, 1, 1}, seed++), bp = RandomF32({c.m}, seed++);
    Tensor w5 = RandomF32({c.m, 1, 5, 5}, seed++);
    // x -> Conv k (stride, dilation, pad) -> Relu -> depthwise 3x3 (stride 2) ->
    // 1x1 -> Add(depthwise 5x5 of the same) -> Concat(axis 1) with the 1x1 -> y,
    // and GlobalAveragePool of the sum -> g.
    OnnxBuilder b;
    b.Input("x", DataType::kFloat32, {c.n, c.c, c.h, c.w}).Output("y").Output("g");
    b.Initializer("w1", w1).Initializer("b1", b1).Initializer("wd", wd).Initializer("bd", bd);
    b.Initializer("wp", wp).Initializer("bp", bp).Initializer("w5", w5);
    auto& conv = b.Node("Conv", {"x", "w1", "b1"}, {"c1"});
    OnnxBuilder::SetInts(conv, "strides", {c.stride, c.stride});
    OnnxBuilder::SetInts(conv, "dilations", {c.dil, c.dil});
    OnnxBuilder::SetInts(conv, "pads", {c.pad, c.pad, c.pad, c.pad});
    b.Node("Relu", {"c1"}, {"r1"});
    auto& dw = b.Node("Conv", {"r1", "wd", "bd"}, {"d1"});
    OnnxBuilder::SetInt(dw, "group", c.m);
    OnnxBuilder::SetInts(dw, "strides", {2, 2});
    OnnxBuilder::SetInts(dw, "pads", {1, 1, 1, 1});
    b.Node("Conv", {"d1", "wp", "bp"}, {"p1"});
    auto& dw5 = b.Node("Conv", {"p1", "w5"}, {"d5"});
    OnnxBuilder::SetInt(dw5, "group", c.m);
    OnnxBuilder::SetInts(dw5, "pads", {2, 2, 2, 2});
    b.Node("Add", {"p1", "d5"}, {"s"});
    OnnxBuilder::SetInt(b.Node("Concat", {"s", "p1"}, {"y"}), "axis", 1);
    b.Node("GlobalAveragePool", {"s"}, {"g"});
    const Tensor r1 = Relu(RefConv(x, w1, &b1, 1, {c.stride, c.stride}, {c.dil, c.dil}, {c.pad, c.pad, c.pad, c.pad}));
    const Tensor d1 = RefConv(r1, wd, &bd, c.m, {2, 2}, {1, 1}, {1, 1, 1, 1});
    const Tensor p1 = RefConv(d1, wp, &bp, 1, {1, 1}, {1, 1}, {0, 0, 0, 0});
    Tensor sum = RefConv(p1, w5, nullptr, c.m, {1, 1}, {1, 1}, {2, 2, 2, 2});
    for (int64_t i = 0; i < sum.num_elements(); ++i) sum.data<float>()[i] += p1.data<float>()[i];
    const std::vector<int64_t> s = sum.shape();
    Tensor want_y = Tensor::Zeros(DataType::kFloat32, {s[0], 2 * s[1], s[2], s[3]});
    Tensor want_g = Tensor::Zeros(DataType::kFloat32, {s[0], s[1], 1, 1});
    const int64_t plane = s[2] * s[3];
    for (int64_t i = 0; i < s[0]; ++i) {
      for (int64_t ch = 0; ch < s[1]; ++ch) {
        const float* src = sum.data<float>() + (i * s[1] + ch) * plane;
        std::copy(src, src + plane, want_y.data<float>() + (i * 2 * s[1] + ch) * plane);
        const float* pp = p1.data<float>() + (i * s[1] + ch) * plane;
        std::copy(pp, pp + plane, want_y.data<float>() + (i * 2 * s[1] + s[1] + ch) * plane);
        want_g.data<float>()[i * s[1] + ch] = std::accumulate(src, src + plane, 0.f) / plane;
      }
    }
    for (int threads : {1, 2}) {
      auto session = LoadWithThreads(b.Serialize(), threads);
      ASSERT_TRUE(session.ok()) << session.status();
      auto plan = session->Plan({{"x", x.shape()}});
      ASSERT_TRUE(plan.ok()) << plan.status();
      EXPECT_NE(plan->text.find("conv_nhwc_f32"), std::string::npos) << plan->text;
      // Over at most 4 channels the first convolution takes the NCHW input
      // itself: no transpose in front of it.
      const bool nchw_first = c.c <= 4 && c.k > 1;
      EXPECT_EQ(plan->text.find("nchw->nhwc") != std::string::npos, nchw_first) << plan->text;
      auto out = session->Run({{"x", x}});
      ASSERT_TRUE(out.ok()) << out.status();
      ExpectClose(out->at("y"), want_y, 1e-4f, what + " y, threads " + std::to_string(threads));
      ExpectClose(out->at("g"), want_g, 1e-4f, what + " g, threads " + std::to_string(threads));
    }
  }
}

// Add(conv, r) after FP32 group-1 convolutions in NHWC becomes the
// convolution's residual input (graph/passes/fuse_conv_residual.cc), and a
// Relu after the Add fuses behind it: a 3x3 convolution and a 1x1 one
// (either side of the Add, with and without bias), against NCHW references;
// a residual read elsewhere too still fuses, a convolution read twice does not.
TEST(CpuOps, ConvNhwcResidualAdds) {
  uint64_t seed = 800;
  for (int64_t h : {9, 14}) {
    const int64_t c = 8, m = 24;
    Tensor x = RandomF32({2, c, h, h}, seed++);
    Tensor w1 = RandomF32({m, c, 3, 3}, seed++), b1 = RandomF32({m}, seed++);
    Tensor wp = RandomF32({m, m, 1, 1}, seed++), bp = RandomF32({m}, seed++);
    Tensor wq = RandomF32({m, m, 3, 3}, seed++);
    // r = Relu(conv3x3(x)); s = Relu(conv1x1(r) + r); t = r + conv3x3(s) (no
    // bias, conv on the right); u = conv1x1(t) read by both Adds of
    // v = (u + t) + u, which must stay unfused.
    OnnxBuilder b;
    b.Input("x", DataType::kFloat32, x.shape()).Output("s").Output("t").Output("v");
    b.Initializer("w1", w1).Initializer("b1", b1).Initializer("wp", wp).Initializer("bp", bp).Initializer("wq", wq);
    OnnxBuilder::SetInts(b.Node("Conv", {"x", "w1", "b1"}, {"c1"}), "pads", {1, 1, 1, 1});
    b.Node("Relu", {"c1"}, {"r"});
    b.Node("Conv", {"r", "wp", "bp"}, {"p"});
    b.Node("Add", {"p", "r"}, {"sum"});
    b.Node("Relu", {"sum"}, {"s"});
    OnnxBuilder::SetInts(b.Node("Conv", {"s", "wq"}, {"q"}), "pads", {1, 1, 1, 1});
    b.Node("Add", {"r", "q"}, {"t"});
    b.Node("Conv", {"t", "wp", "bp"}, {"u"});
    b.Node("Add", {"u", "t"}, {"ut"});
    b.Node("Add", {"ut", "u"}, {"v"});
    const Tensor r = Relu(RefConv(x, w1, &b1, 1, {1, 1}, {1, 1}, {1, 1, 1, 1}));
    Tensor sum = RefConv(r, wp, &bp, 1, {1, 1}, {1, 1}, {0, 0, 0, 0});
    for (int64_t i = 0; i < sum.num_elements(); ++i) sum.data<float>()[i] += r.data<float>()[i];
    const Tensor want_s = Relu(sum);
    Tensor want_t = RefConv(want_s, wq, nullptr, 1, {1, 1}, {1, 1}, {1, 1, 1, 1});
    for (int64_t i = 0; i < want_t.num_elements(); ++i) want_t.data<float>()[i] += r.data<float>()[i];
    const Tensor u = RefConv(want_t, wp, &bp, 1, {1, 1}, {1, 1}, {0, 0, 0, 0});
    Tensor want_v = u;
    for (int64_t i = 0; i < want_v.num_elements(); ++i) {
      want_v.data<float>()[i] = (u.data<float>()[i] + want_t.data<float>()[i]) + u.data<float>()[i];
    }
    for (int threads : {1, 2}) {
      auto session = LoadWithThreads(b.Serialize(), threads);
      ASSERT_TRUE(session.ok()) << session.status();
      auto plan = session->Plan({{"x", x.shape()}});
      ASSERT_TRUE(plan.ok()) << plan.status();
      int residuals = 0;
      for (const auto& step : plan->steps) residuals += step.impl.find("+residual") != std::string::npos;
      EXPECT_EQ(residuals, 2) << plan->text;
      EXPECT_EQ(testing::CountSteps(*plan, "Add"), 2) << plan->text;  // the two Adds reading u
      EXPECT_EQ(testing::CountSteps(*plan, "Relu"), 0) << plan->text;
      auto out = session->Run({{"x", x}});
      ASSERT_TRUE(out.ok()) << out.status();
      const std::string what = "residual h" + std::to_string(h) + " threads " + std::to_string(threads);
      ExpectClose(out->at("s"), want_s, 1e-4f, what + " s");
      ExpectClose(out->at("t"), want_t, 1e-4f, what + " t");
      ExpectClose(out->at("v"), want_v, 1e-3f, what + " v");  // three layers deep, 2u + t cancels
    }
  }
}

TEST(CpuOps, GemmAndMatMul) {
  uint64_t seed = 200;
  for (bool ta : {false, true}) {
    for (bool tb : {false, true}) {
      const int64_t m = 13, k = 21, n = 37;
      Tensor a = RandomF32(ta ? std::vector<int64_t>{k, m} : std::vector<int64_t>{m, k}, seed++);
      Tensor w = RandomF32(tb ? std::vector<int64_t>{n, k} : std::vector<int64_t>{k, n}, seed++);
      Tensor c = RandomF32({n}, seed++);
      OnnxBuilder b;
      b.Input("a", DataType::kFloat32, a.shape()).Initializer("w", w).Initializer("c", c).Output("y");
      auto& node = b.Node("Gemm", {"a", "w", "c"}, {"y"});
      OnnxBuilder::SetInt(node, "transA", ta);
      OnnxBuilder::SetInt(node, "transB", tb);
      OnnxBuilder::SetFloat(node, "alpha", 0.75f);
      OnnxBuilder::SetFloat(node, "beta", 1.5f);
      Tensor want = Tensor::Zeros(DataType::kFloat32, {m, n});
      for (int64_t i = 0; i < m; ++i)
        for (int64_t j = 0; j < n; ++j) {
          double acc = 0;
          for (int64_t kk = 0; kk < k; ++kk)
            acc += double(a.data<float>()[ta ? kk * m + i : i * k + kk]) * w.data<float>()[tb ? j * k + kk : kk * n + j];
          want.data<float>()[i * n + j] = static_cast<float>(0.75 * acc + 1.5 * c.data<float>()[j]);
        }
      ExpectClose(RunModel(b, {{"a", a}}), want, 1e-5f, "Gemm");
    }
  }
  // Batched MatMul with broadcasting, both operands computed at run time;
  // on 2 threads many small products (attention's per-head ones) go whole
  // to the threads.
  const std::vector<std::pair<std::vector<int64_t>, std::vector<int64_t>>> shapes = {
      {{2, 3, 5, 7}, {7, 4}}, {{2, 1, 5, 7}, {3, 7, 4}}, {{7}, {2, 7, 3}}, {{4, 7}, {7}},
      {{3, 4, 9, 32}, {3, 4, 32, 11}}};
  for (int threads : {1, 2})
  for (const auto& [sa, sb] : shapes) {
    SCOPED_TRACE(::testing::Message() << threads << " thread(s), batch dims " << sa.size());
    OnnxBuilder b;
    b.Input("a", DataType::kFloat32, sa).Input("b", DataType::kFloat32, sb).Output("y");
    b.Node("MatMul", {"a", "b"}, {"y"});
    Tensor a = RandomF32(sa, seed++), bt = RandomF32(sb, seed++);
    SessionOptions options;
    options.num_threads = threads;
    auto s = Session::LoadFromBytes(b.Serialize(), options);
    ASSERT_TRUE(s.ok()) << s.status();
    auto out = s->Run({{"a", a}, {"b", bt}});
    ASSERT_TRUE(out.ok()) << out.status();
    const Tensor& y = out->at("y");
    // Reference through explicit broadcasting of padded shapes.
    std::vector<int64_t> pa = sa, pb = sb;
    if (pa.size() == 1) pa.insert(pa.begin(), 1);
    if (pb.size() == 1) pb.push_back(1);
    const int64_t m = pa[pa.size() - 2], k = pa.back(), n = pb.back();
    const int64_t rank = std::max(pa.size(), pb.size());
    while (static_cast<int64_t>(pa.size()) < rank) pa.insert(pa.begin(), 1);
    while (static_cast<int64_t>(pb.size()) < rank) pb.insert(pb.begin(), 1);
    std::vector<int64_t> batch(rank - 2);
    for (int64_t d = 0; d < rank - 2; ++d) batch[d] = std::max(pa[d], pb[d]);
    const int64_t nb = std::accumulate(batch.begin(), batch.end(), int64_t{1}, std::multiplies<>());
    ASSERT_EQ(y.num_elements(), nb * m * n);
    for (int64_t bi = 0; bi < nb; ++bi) {
      auto c = Coords(bi, batch);
      int64_t oa = 0, ob = 0, sa_ = m * k, sb_ = k * n;
      for (int64_t d = rank - 3; d >= 0; --d) {
        oa += (pa[d] == 1 ? 0 : c[d]) * sa_;
        ob += (pb[d] == 1 ? 0 : c[d]) * sb_;
        sa_ *= pa[d];
        sb_ *= pb[d];
      }
      for (int64_t i = 0; i < m; ++i)
        for (int64_t j = 0; j < n; ++j) {
          double acc = 0;
          for (int64_t kk = 0; kk < k; ++kk) acc += double(a.data<float>()[oa + i * k + kk]) * bt.data<float>()[ob + kk * n + j];
          ASSERT_NEAR(y.data<float>()[(bi * m + i) * n + j], acc, 1e-4) << "MatMul batch " << bi;
        }
    }
  }
}

// Softmax over the last axis at lengths around the 16-lane loops, with
// attention-mask scores (-10000) among them, 1 and 2 threads.
TEST(CpuOps, SoftmaxLastAxisRows) {
  for (int64_t len : {1, 5, 15, 16, 17, 40, 129}) {
    const std::vector<int64_t> s = {3, 4, len};
    Tensor x = RandomF32(s, 320 + len, -6.f, 6.f);
    for (int64_t i = 0; i < x.num_elements(); i += 7) x.data<float>()[i] = -10000.f;
    OnnxBuilder b;
    b.Input("x", DataType::kFloat32, s).Output("y");
    b.Node("Softmax", {"x"}, {"y"});
    Tensor want = Tensor::Zeros(DataType::kFloat32, s);
    for (int64_t r = 0; r < 12; ++r) {
      const float* xr = x.data<float>() + r * len;
      double mx = -INFINITY, sum = 0;
      for (int64_t t = 0; t < len; ++t) mx = std::max<double>(mx, xr[t]);
      for (int64_t t = 0; t < len; ++t) sum += std::exp(xr[t] - mx);
      for (int64_t t = 0; t < len; ++t) want.data<float>()[r * len + t] = static_cast<float>(std::exp(xr[t] - mx) / sum);
    }
    for (int threads : {1, 2}) ExpectClose(RunModel(b, {{"x", x}}, threads), want, 1e-5f, "Softmax");
  }
}

// A 6625-class row over float logits 140 apart (PP-OCR's recogniser): the
// shares under FLT_MIN are 0, not subnormals (each would cost a microcode
// assist), and the rest match the double reference.
TEST(CpuOps, SoftmaxWideRangeRowsHaveNoSubnormals) {
  const std::vector<int64_t> s = {2, 6625};
  Tensor x = RandomF32(s, 77, -120.f, 20.f);
  OnnxBuilder b;
  b.Input("x", DataType::kFloat32, s).Output("y");
  b.Node("Softmax", {"x"}, {"y"});
  Tensor want = Tensor::Zeros(DataType::kFloat32, s);
  for (int64_t r = 0; r < 2; ++r) {
    const float* xr = x.data<float>() + r * 6625;
    double mx = -INFINITY, sum = 0;
    for (int64_t t = 0; t < 6625; ++t) mx = std::max<double>(mx, xr[t]);
    for (int64_t t = 0; t < 6625; ++t) sum += std::exp(xr[t] - mx);
    for (int64_t t = 0; t < 6625; ++t) want.data<float>()[r * 6625 + t] = static_cast<float>(std::exp(xr[t] - mx) / sum);
  }
  const Tensor y = RunModel(b, {{"x", x}}, 1);
  ExpectClose(y, want, 1e-6f, "Softmax");
  int subnormal = 0;
  for (int64_t i = 0; i < y.num_elements(); ++i) subnormal += std::fpclassify(y.data<float>()[i]) == FP_SUBNORMAL;
  if ((ActiveCpuFeatures() & kCpuAvx512f) != 0) EXPECT_EQ(subnormal, 0);
}

TEST(CpuOps, PoolingSoftmaxBatchNorm) {
  const std::vector<int64_t> s = {2, 3, 7, 9};
  Tensor x = RandomF32(s, 300);
  for (const char* op : {"MaxPool", "AveragePool"}) {
    for (int64_t include_pad : {0, 1}) {
      OnnxBuilder b;
      b.Input("x", DataType::kFloat32, s).Output("y");
      auto& node = b.Node(op, {"x"}, {"y"});
      OnnxBuilder::SetInts(node, "kernel_shape", {3, 2});
      OnnxBuilder::SetInts(node, "strides", {2, 2});
      OnnxBuilder::SetInts(node, "pads", {1, 0, 1, 1});
      if (std::string(op) == "AveragePool") OnnxBuilder::SetInt(node, "count_include_pad", include_pad);
      const int64_t oh = (7 + 2 - 3) / 2 + 1, ow = (9 + 1 - 2) / 2 + 1;
      Tensor want = Tensor::Zeros(DataType::kFloat32, {2, 3, oh, ow});
      for (int64_t p = 0; p < 6; ++p)
        for (int64_t i = 0; i < oh; ++i)
          for (int64_t j = 0; j < ow; ++j) {
            float mx = -INFINITY, sum = 0;
            int cnt = 0;
            for (int64_t a = 0; a < 3; ++a)
              for (int64_t c = 0; c < 2; ++c) {
                const int64_t ih = i * 2 - 1 + a, iw = j * 2 + c;
                if (ih < 0 || ih >= 7 || iw >= 9) continue;
                const float v = x.data<float>()[(p * 7 + ih) * 9 + iw];
                mx = std::max(mx, v);
                sum += v;
                ++cnt;
              }
            float avg = sum / (include_pad ? 6 : cnt);
            want.data<float>()[(p * oh + i) * ow + j] = std::string(op) == "MaxPool" ? mx : avg;
          }
      ExpectClose(RunModel(b, {{"x", x}}), want, 1e-5f, op);
      if (std::string(op) == "MaxPool") break;
    }
  }
  for (int64_t axis : {-1, 1, 0}) {
    OnnxBuilder b;
    b.Input("x", DataType::kFloat32, s).Output("y");
    OnnxBuilder::SetInt(b.Node("Softmax", {"x"}, {"y"}), "axis", axis);
    const int64_t ax = axis < 0 ? axis + 4 : axis;
    Tensor want = Tensor::Zeros(DataType::kFloat32, s);
    const auto st = Strides(s);
    for (int64_t i = 0; i < x.num_elements(); ++i) {
      auto c = Coords(i, s);
      const int64_t base = i - c[ax] * st[ax];
      double mx = -INFINITY, sum = 0;
      for (int64_t t = 0; t < s[ax]; ++t) mx = std::max<double>(mx, x.data<float>()[base + t * st[ax]]);
      for (int64_t t = 0; t < s[ax]; ++t) sum += std::exp(x.data<float>()[base + t * st[ax]] - mx);
      want.data<float>()[i] = static_cast<float>(std::exp(x.data<float>()[i] - mx) / sum);
    }
    ExpectClose(RunModel(b, {{"x", x}}), want, 1e-5f, "Softmax");
  }
  {
    OnnxBuilder b;
    Tensor sc = RandomF32({3}, 1), bi = RandomF32({3}, 2), mean = RandomF32({3}, 3), var = RandomF32({3}, 4, 0.1f, 2.f);
    b.Input("x", DataType::kFloat32, s).Initializer("s", sc).Initializer("b", bi).Initializer("m", mean);
    b.Initializer("v", var).Output("y");
    b.Node("BatchNormalization", {"x", "s", "b", "m", "v"}, {"y"});
    Tensor want = Tensor::Zeros(DataType::kFloat32, s);
    for (int64_t i = 0; i < x.num_elements(); ++i) {
      const int64_t ch = Coords(i, s)[1];
      want.data<float>()[i] = (x.data<float>()[i] - mean.data<float>()[ch]) /
                                  std::sqrt(var.data<float>()[ch] + 1e-5f) * sc.data<float>()[ch] +
                              bi.data<float>()[ch];
    }
    ExpectClose(RunModel(b, {{"x", x}}), want, 1e-5f, "BatchNormalization");
  }
  {
    OnnxBuilder b;
    b.Input("x", DataType::kFloat32, s).Output("y");
    b.Node("GlobalAveragePool", {"x"}, {"y"});
    Tensor want = Tensor::Zeros(DataType::kFloat32, {2, 3, 1, 1});
    for (int64_t i = 0; i < x.num_elements(); ++i) want.data<float>()[i / 63] += x.data<float>()[i] / 63.f;
    ExpectClose(RunModel(b, {{"x", x}}), want, 1e-5f, "GlobalAveragePool");
  }
}

// NCHW -> NHWC with 2 to 5 channels (the interleaving path for few rows
// covers 2-4; 5 takes the tiled one), wide enough for several column chunks,
// 1 and 2 threads.
TEST(CpuOps, TransposeFewChannelsLast) {
  for (int64_t c : {2, 3, 4, 5}) {
    const std::vector<int64_t> s = {2, c, 67, 71};
    Tensor x = RandomF32(s, 410 + c);
    OnnxBuilder b;
    b.Input("x", DataType::kFloat32, s).Output("y");
    OnnxBuilder::SetInts(b.Node("Transpose", {"x"}, {"y"}), "perm", {0, 2, 3, 1});
    Tensor want = Tensor::Zeros(DataType::kFloat32, {2, 67, 71, c});
    for (int64_t i = 0; i < want.num_elements(); ++i) {
      auto q = Coords(i, {2, 67, 71, c});
      want.data<float>()[i] = x.data<float>()[((q[0] * c + q[3]) * 67 + q[1]) * 71 + q[2]];
    }
    for (int threads : {1, 2}) ExpectClose(RunModel(b, {{"x", x}}, threads), want, 0, "Transpose NCHW -> NHWC");
  }
}

// Every permutation of a rank-4 tensor of 1-, 4- and 8-byte elements, 1 and
// 2 threads, large enough that the copy is split among tasks: the run copies
// (last dimension kept), the batched 2-D tiles and the element gather.
TEST(CpuOps, TransposeEveryPermutation) {
  // With dimensions of size 1, permutations that only move those are copies.
  for (const std::vector<int64_t>& s : {std::vector<int64_t>{3, 7, 6, 40}, std::vector<int64_t>{3, 1, 50, 1}}) {
  const auto st = Strides(s);
  for (DataType t : {DataType::kUInt8, DataType::kFloat32, DataType::kInt64}) {
    Tensor x = Tensor::Zeros(t, s);
    const size_t es = DataTypeSize(t);
    std::mt19937 rng(77);
    for (size_t i = 0; i < x.byte_size(); ++i) {
      static_cast<uint8_t*>(x.raw_data())[i] = static_cast<uint8_t>(rng());
    }
    std::vector<int64_t> perm = {0, 1, 2, 3};
    do {
      SCOPED_TRACE(::testing::Message() << s[1] << " " << DataTypeName(t) << " perm " << perm[0] << perm[1] << perm[2] << perm[3]);
      OnnxBuilder b;
      b.Input("x", t, s).Output("y");
      OnnxBuilder::SetInts(b.Node("Transpose", {"x"}, {"y"}), "perm", perm);
      std::vector<int64_t> ys(4);
      for (int d = 0; d < 4; ++d) ys[d] = s[perm[d]];
      Tensor want = Tensor::Zeros(t, ys);
      for (int64_t i = 0; i < want.num_elements(); ++i) {
        auto c = Coords(i, ys);
        int64_t src = 0;
        for (int d = 0; d < 4; ++d) src += c[d] * st[perm[d]];
        std::memcpy(static_cast<char*>(want.raw_data()) + i * es, static_cast<const char*>(x.raw_data()) + src * es, es);
      }
      for (int threads : {1, 2}) {
        const Tensor y = RunModel(b, {{"x", x}}, threads);
        ASSERT_EQ(y.shape(), want.shape());
        ASSERT_EQ(std::memcmp(y.raw_data(), want.raw_data(), want.byte_size()), 0) << threads << " thread(s)";
      }
    } while (std::next_permutation(perm.begin(), perm.end()));
  }
  }
}

TEST(CpuOps, DataMovement) {
  const std::vector<int64_t> s = {2, 3, 4, 5};
  Tensor x = RandomF32(s, 400);
  const auto st = Strides(s);
  {
    OnnxBuilder b;
    b.Input("x", DataType::kFloat32, s).Output("y");
    OnnxBuilder::SetInts(b.Node("Transpose", {"x"}, {"y"}), "perm", {2, 0, 3, 1});
    const std::vector<int64_t> ys = {4, 2, 5, 3};
    Tensor want = Tensor::Zeros(DataType::kFloat32, ys);
    for (int64_t i = 0; i < want.num_elements(); ++i) {
      auto c = Coords(i, ys);
      want.data<float>()[i] = x.data<float>()[c[1] * st[0] + c[3] * st[1] + c[0] * st[2] + c[2] * st[3]];
    }
    ExpectClose(RunModel(b, {{"x", x}}), want, 0, "Transpose");
  }
  {
    OnnxBuilder b;
    Tensor x2 = RandomF32({2, 2, 4, 5}, 401);
    b.Input("x", DataType::kFloat32, s).Input("x2", DataType::kFloat32, {2, 2, 4, 5}).Output("y");
    OnnxBuilder::SetInt(b.Node("Concat", {"x", "x2"}, {"y"}), "axis", 1);
    Tensor want = Tensor::Zeros(DataType::kFloat32, {2, 5, 4, 5});
    for (int64_t i = 0; i < want.num_elements(); ++i) {
      auto c = Coords(i, {2, 5, 4, 5});
      want.data<float>()[i] = c[1] < 3 ? x.data<float>()[((c[0] * 3 + c[1]) * 4 + c[2]) * 5 + c[3]]
                                       : x2.data<float>()[((c[0] * 2 + c[1] - 3) * 4 + c[2]) * 5 + c[3]];
    }
    ExpectClose(RunModel(b, {{"x", x}, {"x2", x2}}), want, 0, "Concat");
  }
  {
    OnnxBuilder b;
    b.Input("x", DataType::kFloat32, s).Output("y");
    b.Initializer("starts", Tensor::FromVector<int64_t>(DataType::kInt64, {3}, {1, -1, 4}));
    b.Initializer("ends", Tensor::FromVector<int64_t>(DataType::kInt64, {3}, {3, -100, 0}));
    b.Initializer("axes", Tensor::FromVector<int64_t>(DataType::kInt64, {3}, {1, 2, 3}));
    b.Initializer("steps", Tensor::FromVector<int64_t>(DataType::kInt64, {3}, {1, -2, -3}));
    b.Node("Slice", {"x", "starts", "ends", "axes", "steps"}, {"y"});
    const std::vector<int64_t> ys = {2, 2, 2, 2};
    Tensor want = Tensor::Zeros(DataType::kFloat32, ys);
    for (int64_t i = 0; i < want.num_elements(); ++i) {
      auto c = Coords(i, ys);
      want.data<float>()[i] = x.data<float>()[c[0] * st[0] + (1 + c[1]) * st[1] + (3 - 2 * c[2]) * st[2] + (4 - 3 * c[3])];
    }
    ExpectClose(RunModel(b, {{"x", x}}), want, 0, "Slice");
  }
  {
    OnnxBuilder b;
    b.Input("x", DataType::kFloat32, s).Output("y");
    b.Initializer("idx", Tensor::FromVector<int64_t>(DataType::kInt64, {2, 2}, {3, -1, 0, 2}));
    OnnxBuilder::SetInt(b.Node("Gather", {"x", "idx"}, {"y"}), "axis", 2);
    const std::vector<int64_t> ys = {2, 3, 2, 2, 5};
    const int64_t idx[] = {3, 3, 0, 2};
    Tensor want = Tensor::Zeros(DataType::kFloat32, ys);
    for (int64_t i = 0; i < want.num_elements(); ++i) {
      auto c = Coords(i, ys);
      want.data<float>()[i] = x.data<float>()[c[0] * st[0] + c[1] * st[1] + idx[c[2] * 2 + c[3]] * st[2] + c[4]];
    }
    ExpectClose(RunModel(b, {{"x", x}}), want, 0, "Gather");
  }
  {
    // Shape -> Gather -> Unsqueeze -> Concat -> Reshape, Flatten, Squeeze: the
    // shape arithmetic folds away once the input shape is known.
    OnnxBuilder b;
    b.Input("x", DataType::kFloat32, {-1, 3, 4, 5}).Output("y");
    b.Initializer("zero", Tensor::FromVector<int64_t>(DataType::kInt64, {}, {0}));
    b.Initializer("ax0", Tensor::FromVector<int64_t>(DataType::kInt64, {1}, {0}));
    b.Initializer("rest", Tensor::FromVector<int64_t>(DataType::kInt64, {2}, {1, -1}));
    b.Node("Shape", {"x"}, {"shape"});
    b.Node("Gather", {"shape", "zero"}, {"n"});
    b.Node("Unsqueeze", {"n", "ax0"}, {"n1"});
    OnnxBuilder::SetInt(b.Node("Concat", {"n1", "rest"}, {"target"}), "axis", 0);
    b.Node("Reshape", {"x", "target"}, {"r"});
    OnnxBuilder::SetInt(b.Node("Flatten", {"r"}, {"f"}), "axis", 1);
    b.Node("Unsqueeze", {"f", "ax0"}, {"u"});
    b.Node("Squeeze", {"u", "ax0"}, {"y"});
    auto sess = Session::LoadFromBytes(b.Serialize());
    ASSERT_TRUE(sess.ok()) << sess.status();
    for (int64_t n : {1, 2, 5}) {
      Tensor xn = RandomF32({n, 3, 4, 5}, 500 + n);
      auto out = sess->Run({{"x", xn}});
      ASSERT_TRUE(out.ok()) << out.status();
      Tensor want = *xn.Reshaped({n, 60});
      ExpectClose(out->at("y"), want, 0, "shape chain");
    }
  }
}

TEST(CpuOps, CastAndClip) {
  Tensor x = RandomF32({4, 6}, 600, -100.f, 100.f);
  OnnxBuilder b(11);
  b.Input("x", DataType::kFloat32, {4, 6}).Output("y");
  b.Initializer("lo", Tensor::FromVector<float>(DataType::kFloat32, {}, {-20.f}));
  b.Initializer("hi", Tensor::FromVector<float>(DataType::kFloat32, {}, {30.5f}));
  b.Node("Clip", {"x", "lo", "hi"}, {"c"});
  OnnxBuilder::SetInt(b.Node("Cast", {"c"}, {"i"}), "to", static_cast<int>(DataType::kInt32));
  OnnxBuilder::SetInt(b.Node("Cast", {"i"}, {"y"}), "to", static_cast<int>(DataType::kFloat32));
  Tensor want = Tensor::Zeros(DataType::kFloat32, {4, 6});
  for (int64_t i = 0; i < 24; ++i) {
    want.data<float>()[i] = static_cast<float>(static_cast<int32_t>(std::min(30.5f, std::max(-20.f, x.data<float>()[i]))));
  }
  ExpectClose(RunModel(b, {{"x", x}}), want, 0, "Clip+Cast");
}

}  // namespace
}  // namespace kvant
