// ONNX Runtime's quantized operators (com.microsoft QLinearAdd, QLinearMul,
// QLinearGlobalAveragePool, QLinearAveragePool, QGemm) against the dequantize -> float op ->
// quantize definition computed in double: u8 and s8, broadcasting, zero
// points, requantized (within 1 LSB) and float outputs.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <random>

#include "gtest/gtest.h"
#include "kvant/kvant.h"
#include "ops/cpu/quantize_common.h"
#include "runtime/cpu_caps.h"
#include "tests/testing/onnx_builder.h"

namespace kvant {
namespace {

using testing::OnnxBuilder;

Tensor RandomBytes(DataType t, const std::vector<int64_t>& shape, uint32_t seed) {
  std::mt19937 rng(seed);
  Tensor x = Tensor::Zeros(t, shape);
  for (int64_t i = 0; i < x.num_elements(); ++i) static_cast<uint8_t*>(x.raw_data())[i] = static_cast<uint8_t>(rng());
  return x;
}

int ByteAt(const Tensor& t, int64_t i) {
  const uint8_t b = static_cast<const uint8_t*>(t.raw_data())[i];
  return t.dtype() == DataType::kInt8 ? static_cast<int8_t>(b) : b;
}

Tensor Scalar(float v) { return Tensor::FromVector<float>(DataType::kFloat32, {}, {v}); }
Tensor ZeroPoint(DataType t, int v) {
  Tensor z = Tensor::Zeros(t, {});
  static_cast<uint8_t*>(z.raw_data())[0] = static_cast<uint8_t>(v);
  return z;
}

int Quantize(double v, double scale, int zp, DataType t) {
  const double q = std::nearbyint(v / scale) + zp;
  return static_cast<int>(std::clamp(q, t == DataType::kInt8 ? -128.0 : 0.0, t == DataType::kInt8 ? 127.0 : 255.0));
}

Tensor RunOne(OnnxBuilder& b, const TensorMap& in, int threads = 1) {
  SessionOptions options;
  options.num_threads = threads;
  auto s = Session::LoadFromBytes(b.Serialize(), options);
  EXPECT_TRUE(s.ok()) << s.status();
  if (!s.ok()) return Tensor();
  auto out = s->Run(in);
  EXPECT_TRUE(out.ok()) << out.status();
  return out.ok() ? out->at("y") : Tensor();
}

TEST(QLinearOps, AddAndMulWithBroadcasting) {
  // Shapes of a and b (the output is [2,3,8,37]): equal; b [3,1,37] (rows);
  // b a vector along the last axis, and a one (the rows-across-threads path);
  // a per-channel gate [2,1,1,37] as b and as a (a squeeze-excitation
  // product in NHWC: rows of 37 = 2 x 16 + 5 channels, a masked tail).
  const std::vector<int64_t> sy = {2, 3, 8, 37};
  const std::vector<std::pair<std::vector<int64_t>, std::vector<int64_t>>> cases = {
      {sy, sy}, {sy, {3, 1, 37}}, {sy, {1, 1, 1, 37}}, {{37}, sy}, {sy, {2, 1, 1, 37}}, {{2, 1, 1, 37}, sy}};
  for (const char* op : {"QLinearAdd", "QLinearMul"}) {
    for (DataType t : {DataType::kUInt8, DataType::kInt8}) {
      for (size_t k = 0; k < cases.size(); ++k) {
        for (int threads : {1, 2}) {
          SCOPED_TRACE(::testing::Message() << op << " " << DataTypeName(t) << " case " << k << " threads " << threads);
          const auto& [sa, sb] = cases[k];
          const int za = t == DataType::kInt8 ? -3 : 121, zb = t == DataType::kInt8 ? 5 : 130;
          const int zc = t == DataType::kInt8 ? 2 : 127;
          const float as = 0.031f, bs = 0.017f, cs = std::string(op) == "QLinearAdd" ? 0.05f : 0.9f;
          OnnxBuilder b(13);
          b.Input("a", t, sa).Input("b", t, sb).Output("y", t);
          b.Initializer("as", Scalar(as)).Initializer("az", ZeroPoint(t, za));
          b.Initializer("bs", Scalar(bs)).Initializer("bz", ZeroPoint(t, zb));
          b.Initializer("cs", Scalar(cs)).Initializer("cz", ZeroPoint(t, zc));
          b.Node(op, {"a", "as", "az", "b", "bs", "bz", "cs", "cz"}, {"y"}).set_domain("com.microsoft");
          const Tensor a = RandomBytes(t, sa, 1), bb = RandomBytes(t, sb, 2);
          const Tensor y = RunOne(b, {{"a", a}, {"b", bb}}, threads);
          ASSERT_EQ(y.shape(), sy);
          // The flat index of output element i in an operand of shape s (right-aligned broadcast).
          auto index = [&](const std::vector<int64_t>& s, int64_t i) {
            int64_t at = 0, stride = 1;
            for (int64_t d = 3, rest = i; d >= 0; --d) {
              const int64_t coord = rest % sy[d];
              rest /= sy[d];
              const int64_t sd = d - (4 - static_cast<int64_t>(s.size()));
              if (sd < 0) continue;
              if (s[sd] != 1) at += coord * stride;
              stride *= s[sd];
            }
            return at;
          };
          int off_by_one = 0;
          for (int64_t i = 0; i < y.num_elements(); ++i) {
            const double x1 = (ByteAt(a, index(sa, i)) - za) * double{as};
            const double x2 = (ByteAt(bb, index(sb, i)) - zb) * double{bs};
            const int want = Quantize(std::string(op) == "QLinearAdd" ? x1 + x2 : x1 * x2, cs, zc, t);
            ASSERT_LE(std::abs(ByteAt(y, i) - want), 1) << i;
            off_by_one += ByteAt(y, i) != want;
          }
          EXPECT_LE(off_by_one, y.num_elements() / 50);
        }
      }
    }
  }
}

// QuantizeLinear's AVX-512 row multiplies by 1 / scale where that rounds as
// the division does: byte for byte the scalar x / scale, on values within a
// hair of a half step (both sides), exact halves, large, infinite and NaN
// values, over scales whose reciprocals are inexact (and a subnormal one).
TEST(QLinearOps, QuantizeRowEqualsTheDivision) {
  if ((ActiveCpuFeatures() & kIsaAvx512) != kIsaAvx512) GTEST_SKIP() << "no AVX-512";
  std::mt19937 rng(11);
  for (float scale : {0.1f, 1.f / 3, 0.0078125f, 0.0173f, 3.7e-5f, 91.f, 1e-40f}) {
    std::vector<float> x;
    for (int k = -600; k <= 600; ++k) {
      const float half = (static_cast<float>(k) + 0.5f) * scale;
      for (float v : {half, std::nextafter(half, 1e30f), std::nextafter(half, -1e30f), static_cast<float>(k) * scale}) {
        x.push_back(v);
      }
    }
    std::uniform_real_distribution<float> u(-300.f, 300.f);
    for (int i = 0; i < 4000; ++i) x.push_back(u(rng) * scale);
    for (float v : {3e9f, -3e9f, 1e38f, INFINITY, -INFINITY, NAN, 0.f, -0.f}) x.push_back(v);
    for (int zp : {0, 128, 255}) {
      std::vector<uint8_t> got(x.size());
      std::vector<int8_t> got_s(x.size());
      cpu::avx512::QuantizeRowU8(x.data(), static_cast<int64_t>(x.size()), scale, static_cast<float>(zp), got.data());
      cpu::avx512::QuantizeRowS8(x.data(), static_cast<int64_t>(x.size()), scale, static_cast<float>(zp - 128), got_s.data());
      for (size_t i = 0; i < x.size(); ++i) {
        auto want = [&](float z, float lo, float hi) {
          const float v = std::nearbyint(x[i] / scale) + z;
          return v != v ? z : std::min(std::max(v, lo), hi);
        };
        ASSERT_EQ(got[i], static_cast<uint8_t>(want(zp, 0.f, 255.f))) << "x " << x[i] << " scale " << scale;
        ASSERT_EQ(got_s[i], static_cast<int8_t>(want(zp - 128, -128.f, 127.f))) << "x " << x[i] << " scale " << scale;
      }
    }
  }
}

// A constant scalar operand (ONNX Runtime's quantized affine blocks): the
// kernel tabulates the 256 outputs at load; they equal, byte for byte, the
// same operator with the scalar fed at run time, for either operand order,
// u8 and s8, and with the optional zero points left out.
TEST(QLinearOps, ConstantScalarOperandIsATableOfTheSameBytes) {
  const std::vector<int64_t> shape = {2, 5, 9, 7};
  for (const char* op : {"QLinearAdd", "QLinearMul"}) {
    for (DataType t : {DataType::kUInt8, DataType::kInt8}) {
      for (bool scalar_first : {false, true}) {
        for (bool zero_points : {true, false}) {
          SCOPED_TRACE(::testing::Message() << op << " " << DataTypeName(t) << (scalar_first ? " scalar a" : " scalar b")
                                            << (zero_points ? "" : " no zero points"));
          const Tensor w = ZeroPoint(t, t == DataType::kInt8 ? -77 : 201);  // the scalar's byte
          auto build = [&](bool constant) {
            OnnxBuilder b(13);
            b.Input("x", t, shape).Output("y", t);
            if (constant) {
              b.Initializer("w", w);
            } else {
              b.Input("w", t, {});
            }
            b.Initializer("xs", Scalar(0.03f)).Initializer("ws", Scalar(0.011f)).Initializer("ys", Scalar(0.04f));
            b.Initializer("xz", ZeroPoint(t, t == DataType::kInt8 ? 9 : 119));
            b.Initializer("wz", ZeroPoint(t, t == DataType::kInt8 ? -3 : 140));
            b.Initializer("yz", ZeroPoint(t, t == DataType::kInt8 ? -20 : 100));
            const std::string xz = zero_points ? "xz" : "", wz = zero_points ? "wz" : "";
            std::vector<std::string> in = scalar_first ? std::vector<std::string>{"w", "ws", wz, "x", "xs", xz}
                                                       : std::vector<std::string>{"x", "xs", xz, "w", "ws", wz};
            in.push_back("ys");
            in.push_back("yz");
            b.Node(op, in, {"y"}).set_domain("com.microsoft");
            return b;
          };
          OnnxBuilder with_constant = build(true), with_input = build(false);
          const Tensor x = RandomBytes(t, shape, 21);
          const Tensor y1 = RunOne(with_constant, {{"x", x}}, 2);
          const Tensor y2 = RunOne(with_input, {{"x", x}, {"w", w}}, 2);
          ASSERT_EQ(y1.shape(), shape);
          ASSERT_EQ(y2.shape(), shape);
          EXPECT_EQ(std::memcmp(y1.raw_data(), y2.raw_data(), y1.num_elements()), 0);
          // And the definition, within one step.
          const int zx = zero_points ? (t == DataType::kInt8 ? 9 : 119) : 0;
          const int zw = zero_points ? (t == DataType::kInt8 ? -3 : 140) : 0;
          const double wv = (ByteAt(w, 0) - zw) * 0.011;
          for (int64_t i = 0; i < x.num_elements(); ++i) {
            const double xv = (ByteAt(x, i) - zx) * 0.03;
            const double v = std::string(op) == "QLinearAdd" ? xv + wv : xv * wv;
            ASSERT_LE(std::abs(ByteAt(y1, i) - Quantize(v, 0.04, t == DataType::kInt8 ? -20 : 100, t)), 1) << i;
          }
        }
      }
    }
  }
}

TEST(QLinearOps, LargeInputsSplitAcrossThreadsGiveTheSameBytes) {
  // More than one 64K chunk: same-shape, scalar-operand and QuantizeLinear paths on 2 threads.
  const std::vector<int64_t> shape = {4, 64, 32, 33};
  for (bool scalar : {false, true}) {
    OnnxBuilder b(13);
    b.Input("a", DataType::kUInt8, shape).Input("x", DataType::kFloat32, shape).Output("y", DataType::kUInt8);
    b.Initializer("s", Scalar(0.03f)).Initializer("z", ZeroPoint(DataType::kUInt8, 120));
    if (scalar) b.Initializer("b", ZeroPoint(DataType::kUInt8, 200));
    b.Node("QuantizeLinear", {"x", "s", "z"}, {"xq"});
    b.Node("QLinearAdd", {"a", "s", "z", scalar ? "b" : "xq", "s", "z", "s", "z"}, {"y"}).set_domain("com.microsoft");
    const TensorMap in = {{"a", RandomBytes(DataType::kUInt8, shape, 7)}, {"x", testing::RandomF32(shape, 8, -4.f, 4.f)}};
    const Tensor one = RunOne(b, in, 1), two = RunOne(b, in, 2);
    ASSERT_EQ(one.shape(), two.shape());
    EXPECT_EQ(std::memcmp(one.raw_data(), two.raw_data(), one.num_elements()), 0);
  }
}

TEST(QLinearOps, SigmoidLeakyReluAndConcat) {
  for (DataType t : {DataType::kUInt8, DataType::kInt8}) {
    const int zx = t == DataType::kInt8 ? -10 : 118, zy = t == DataType::kInt8 ? -128 : 0;
    const Tensor x = RandomBytes(t, {2, 3, 4, 5}, 11);
    for (const char* op : {"QLinearSigmoid", "QLinearLeakyRelu"}) {
      SCOPED_TRACE(::testing::Message() << op << " " << DataTypeName(t));
      const bool sigmoid = std::string(op) == "QLinearSigmoid";
      const float sy = sigmoid ? 1.f / 256 : 0.03f;
      const int zy_op = sigmoid ? zy : zx;
      OnnxBuilder b(13);
      b.Input("x", t, {2, 3, 4, 5}).Output("y", t);
      b.Initializer("xs", Scalar(0.05f)).Initializer("xz", ZeroPoint(t, zx));
      b.Initializer("ys", Scalar(sy)).Initializer("yz", ZeroPoint(t, zy_op));
      auto& n = b.Node(op, {"x", "xs", "xz", "ys", "yz"}, {"y"});
      n.set_domain("com.microsoft");
      OnnxBuilder::SetFloat(n, "alpha", 0.1f);
      const Tensor y = RunOne(b, {{"x", x}});
      for (int64_t i = 0; i < x.num_elements(); ++i) {
        const double v = (ByteAt(x, i) - zx) * 0.05;
        const double f = sigmoid ? 1 / (1 + std::exp(-v)) : (v >= 0 ? v : 0.1 * v);
        ASSERT_LE(std::abs(ByteAt(y, i) - Quantize(f, sy, zy_op, t)), 1) << i;
      }
    }
    // Concat on axis 1 of inputs with other scales and zero points than Y's.
    OnnxBuilder b(13);
    b.Input("a", t, {2, 3, 4}).Input("c", t, {2, 5, 4}).Output("y", t);
    b.Initializer("ys", Scalar(0.04f)).Initializer("yz", ZeroPoint(t, zx));
    b.Initializer("as", Scalar(0.05f)).Initializer("az", ZeroPoint(t, zx + 3));
    b.Initializer("cs", Scalar(0.04f)).Initializer("cz", ZeroPoint(t, zx));
    OnnxBuilder::SetInt(b.Node("QLinearConcat", {"ys", "yz", "a", "as", "az", "c", "cs", "cz"}, {"y"}), "axis", 1);
    b.model().mutable_graph()->mutable_node(0)->set_domain("com.microsoft");
    const Tensor a = RandomBytes(t, {2, 3, 4}, 12), c = RandomBytes(t, {2, 5, 4}, 13);
    const Tensor y = RunOne(b, {{"a", a}, {"c", c}});
    ASSERT_EQ(y.shape(), (std::vector<int64_t>{2, 8, 4}));
    for (int64_t n = 0; n < 2; ++n)
      for (int64_t ch = 0; ch < 8; ++ch)
        for (int64_t w = 0; w < 4; ++w) {
          const int got = ByteAt(y, (n * 8 + ch) * 4 + w);
          if (ch < 3) {
            const double v = (ByteAt(a, (n * 3 + ch) * 4 + w) - (zx + 3)) * 0.05;
            ASSERT_LE(std::abs(got - Quantize(v, 0.04, zx, t)), 1);
          } else {
            ASSERT_EQ(got, ByteAt(c, (n * 5 + ch - 3) * 4 + w));  // same parameters: copied
          }
        }
  }
}

TEST(QLinearOps, GlobalAveragePoolChannelsLast) {
  // NHWC [N, H, W, C]: channel counts below, at and past the 64-channel pass
  // of the AVX-512 sums, with a masked tail; and images of 4,100 pixels,
  // whose sums two threads split in chunks (one and two threads).
  for (DataType t : {DataType::kUInt8, DataType::kInt8}) {
    for (int64_t c : {1, 5, 64, 70, 130}) {
     for (int64_t w : {7, 820}) {
      SCOPED_TRACE(::testing::Message() << DataTypeName(t) << " channels " << c << " width " << w);
      const int zx = t == DataType::kInt8 ? -7 : 131, zy = t == DataType::kInt8 ? 3 : 120;
      const std::vector<int64_t> shape = {3, 5, w, c};
      const int64_t pixels = 5 * w;
      OnnxBuilder b(13);
      b.Input("x", t, shape).Output("y", t);
      b.Initializer("xs", Scalar(0.02f)).Initializer("xz", ZeroPoint(t, zx));
      b.Initializer("ys", Scalar(0.004f)).Initializer("yz", ZeroPoint(t, zy));
      auto& n = b.Node("QLinearGlobalAveragePool", {"x", "xs", "xz", "ys", "yz"}, {"y"});
      n.set_domain("com.microsoft");
      OnnxBuilder::SetInt(n, "channels_last", 1);
      const Tensor x = RandomBytes(t, shape, 4 + static_cast<uint32_t>(c));
      for (int threads : {1, 2}) {
        const Tensor y = RunOne(b, {{"x", x}}, threads);
        ASSERT_EQ(y.shape(), (std::vector<int64_t>{3, 1, 1, c}));
        for (int64_t bi = 0; bi < 3; ++bi) {
          for (int64_t ch = 0; ch < c; ++ch) {
            double sum = 0;
            for (int64_t p = 0; p < pixels; ++p) sum += (ByteAt(x, (bi * pixels + p) * c + ch) - zx) * 0.02;
            ASSERT_LE(std::abs(ByteAt(y, bi * c + ch) - Quantize(sum / pixels, 0.004, zy, t)), 1) << bi << "," << ch;
          }
        }
      }
     }
    }
  }
}

TEST(QLinearOps, GlobalAveragePool) {
  for (DataType t : {DataType::kUInt8, DataType::kInt8}) {
    const int zx = t == DataType::kInt8 ? 4 : 120, zy = t == DataType::kInt8 ? -1 : 125;
    OnnxBuilder b(13);
    b.Input("x", t, {2, 7, 6, 5}).Output("y", t);
    b.Initializer("xs", Scalar(0.02f)).Initializer("xz", ZeroPoint(t, zx));
    b.Initializer("ys", Scalar(0.01f)).Initializer("yz", ZeroPoint(t, zy));
    b.Node("QLinearGlobalAveragePool", {"x", "xs", "xz", "ys", "yz"}, {"y"}).set_domain("com.microsoft");
    const Tensor x = RandomBytes(t, {2, 7, 6, 5}, 3);
    const Tensor y = RunOne(b, {{"x", x}});
    ASSERT_EQ(y.shape(), (std::vector<int64_t>{2, 7, 1, 1}));
    for (int64_t p = 0; p < 14; ++p) {
      double sum = 0;
      for (int64_t i = 0; i < 30; ++i) sum += (ByteAt(x, p * 30 + i) - zx) * 0.02;
      ASSERT_LE(std::abs(ByteAt(y, p) - Quantize(sum / 30, 0.01, zy, t)), 1) << p;
    }
  }
}

// QLinearAveragePool against the average of dequantized values in double:
// padding (real zeros, counted or not), strides, ceil_mode, and NHWC.
TEST(QLinearOps, AveragePool) {
  struct Case {
    int64_t pad, stride;
    bool include_pad, ceil, channels_last;
  };
  const int64_t n = 2, c = 5, h = 7, w = 6, kh = 3, kw = 2;
  for (DataType t : {DataType::kUInt8, DataType::kInt8}) {
    for (Case k : {Case{0, 1, false, false, false}, Case{1, 2, false, false, false}, Case{1, 2, true, false, false},
                   Case{1, 2, true, true, false}, Case{1, 2, false, true, true}, Case{1, 1, true, false, true}}) {
      SCOPED_TRACE(::testing::Message() << DataTypeName(t) << " pad " << k.pad << " stride " << k.stride
                                        << (k.include_pad ? " count_include_pad" : "") << (k.ceil ? " ceil" : "")
                                        << (k.channels_last ? " NHWC" : ""));
      const int zx = t == DataType::kInt8 ? -7 : 131, zy = t == DataType::kInt8 ? 3 : 118;
      const std::vector<int64_t> xs = k.channels_last ? std::vector<int64_t>{n, h, w, c} : std::vector<int64_t>{n, c, h, w};
      OnnxBuilder b(13);
      b.Input("x", t, xs).Output("y", t);
      b.Initializer("xs", Scalar(0.05f)).Initializer("xz", ZeroPoint(t, zx));
      b.Initializer("ys", Scalar(0.03f)).Initializer("yz", ZeroPoint(t, zy));
      onnx::NodeProto& node = b.Node("QLinearAveragePool", {"x", "xs", "xz", "ys", "yz"}, {"y"});
      node.set_domain("com.microsoft");
      OnnxBuilder::SetInts(node, "kernel_shape", {kh, kw});
      OnnxBuilder::SetInts(node, "strides", {k.stride, k.stride});
      OnnxBuilder::SetInts(node, "pads", {k.pad, k.pad, k.pad, k.pad});
      OnnxBuilder::SetInt(node, "count_include_pad", k.include_pad);
      OnnxBuilder::SetInt(node, "ceil_mode", k.ceil);
      OnnxBuilder::SetInt(node, "channels_last", k.channels_last);
      const Tensor x = RandomBytes(t, xs, 11);
      const Tensor y = RunOne(b, {{"x", x}});
      auto out_size = [&](int64_t in, int64_t kk) {
        const double v = static_cast<double>(in + 2 * k.pad - kk) / k.stride + 1;
        int64_t o = static_cast<int64_t>(k.ceil ? std::ceil(v) : std::floor(v));
        if (k.ceil && (o - 1) * k.stride >= in + k.pad) --o;
        return o;
      };
      const int64_t oh = out_size(h, kh), ow = out_size(w, kw);
      const std::vector<int64_t> want_shape =
          k.channels_last ? std::vector<int64_t>{n, oh, ow, c} : std::vector<int64_t>{n, c, oh, ow};
      ASSERT_EQ(y.shape(), want_shape);
      auto x_at = [&](int64_t b_, int64_t ch, int64_t i, int64_t j) {
        return ByteAt(x, k.channels_last ? ((b_ * h + i) * w + j) * c + ch : ((b_ * c + ch) * h + i) * w + j);
      };
      for (int64_t b_ = 0; b_ < n; ++b_)
        for (int64_t ch = 0; ch < c; ++ch)
          for (int64_t oy = 0; oy < oh; ++oy)
            for (int64_t ox = 0; ox < ow; ++ox) {
              double sum = 0;
              int64_t inside = 0, padded = 0;
              for (int64_t dy = 0; dy < kh; ++dy)
                for (int64_t dx = 0; dx < kw; ++dx) {
                  const int64_t i = oy * k.stride - k.pad + dy, j = ox * k.stride - k.pad + dx;
                  padded += i < h + k.pad && j < w + k.pad;
                  if (i < 0 || i >= h || j < 0 || j >= w) continue;
                  ++inside;
                  sum += (x_at(b_, ch, i, j) - zx) * 0.05;
                }
              const double avg = sum / static_cast<double>(k.include_pad ? padded : inside);
              const int64_t at = k.channels_last ? ((b_ * oh + oy) * ow + ox) * c + ch : ((b_ * c + ch) * oh + oy) * ow + ox;
              ASSERT_LE(std::abs(ByteAt(y, at) - Quantize(avg, 0.03, zy, t)), 1) << b_ << " " << ch << " " << oy << " " << ox;
            }
    }
  }
}

TEST(QLinearOps, QGemmRequantizedAndFloat) {
  const int64_t m = 5, k = 37, n = 11;
  for (bool trans_b : {false, true}) {
    for (bool quantized_out : {false, true}) {
      SCOPED_TRACE(::testing::Message() << "transB=" << trans_b << " quantized=" << quantized_out);
      std::vector<float> ws(n);
      for (int64_t j = 0; j < n; ++j) ws[j] = 0.01f + 0.001f * j;
      std::vector<int32_t> bias(n);
      for (int64_t j = 0; j < n; ++j) bias[j] = static_cast<int32_t>(j * 37 - 200);
      const Tensor w = RandomBytes(DataType::kInt8, trans_b ? std::vector<int64_t>{n, k} : std::vector<int64_t>{k, n}, 4);
      OnnxBuilder b(13);
      b.Input("a", DataType::kUInt8, {m, k}).Output("y", quantized_out ? DataType::kUInt8 : DataType::kFloat32);
      b.Initializer("as", Scalar(0.05f)).Initializer("az", ZeroPoint(DataType::kUInt8, 128));
      b.Initializer("w", w).Initializer("ws", Tensor::FromVector<float>(DataType::kFloat32, {n}, ws));
      b.Initializer("wz", Tensor::Zeros(DataType::kInt8, {n}));
      b.Initializer("c", Tensor::FromVector<int32_t>(DataType::kInt32, {n}, bias));
      std::vector<std::string> ins = {"a", "as", "az", "w", "ws", "wz", "c"};
      if (quantized_out) {
        b.Initializer("ys", Scalar(0.4f)).Initializer("yz", ZeroPoint(DataType::kUInt8, 100));
        ins.push_back("ys");
        ins.push_back("yz");
      }
      auto& node = b.Node("QGemm", ins, {"y"});
      node.set_domain("com.microsoft");
      OnnxBuilder::SetInt(node, "transB", trans_b);
      const Tensor a = RandomBytes(DataType::kUInt8, {m, k}, 5);
      const Tensor y = RunOne(b, {{"a", a}});
      ASSERT_EQ(y.shape(), (std::vector<int64_t>{m, n}));
      for (int64_t i = 0; i < m; ++i)
        for (int64_t j = 0; j < n; ++j) {
          int64_t acc = bias[j];
          for (int64_t p = 0; p < k; ++p) acc += (ByteAt(a, i * k + p) - 128) * ByteAt(w, trans_b ? j * k + p : p * n + j);
          const double v = acc * 0.05 * ws[j];
          if (quantized_out) {
            ASSERT_LE(std::abs(ByteAt(y, i * n + j) - Quantize(v, 0.4, 100, DataType::kUInt8)), 1);
          } else {
            ASSERT_NEAR(y.data<float>()[i * n + j], v, 1e-4 * (1 + std::fabs(v)));
          }
        }
    }
  }
}

}  // namespace
}  // namespace kvant
