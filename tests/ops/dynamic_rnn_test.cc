// Recurrent operators with INT8 weights: com.microsoft DynamicQuantizeLSTM
// (ONNX Runtime's layout: W [dirs, input, 4h], R [dirs, h, 4h], s8 or u8 with
// zero points, scales per direction or per gate column) against the FP32
// LSTM on the dequantized weights, and SessionOptions::dynamic_int8 on LSTM,
// GRU (both linear_before_reset) and RNN against FP32. The only difference
// left is the per-product quantization of the activations, a few thousandths
// here; a misplaced scale, zero point or transposition is off by tenths.
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

constexpr int64_t kSeq = 6, kBatch = 3, kInput = 5, kHidden = 8, kDirs = 2, kGh = 4 * kHidden;

struct QuantizedWeights {
  Tensor q;            // [dirs, k, 4h], s8 or u8
  Tensor scale, zero;  // [dirs] or [dirs, 4h]
  Tensor dequantized;  // the float operator's [dirs, 4h, k]
};

// Random quantized weights with scales spread over 10x (per column) and zero
// points far from 0 (u8: around 100), so a misread one shows.
QuantizedWeights MakeWeights(int64_t k, bool per_column, bool u8, uint32_t seed) {
  std::mt19937 rng(seed);
  QuantizedWeights w;
  const DataType t = u8 ? DataType::kUInt8 : DataType::kInt8;
  w.q = Tensor::Zeros(t, {kDirs, k, kGh});
  const std::vector<int64_t> ps = per_column ? std::vector<int64_t>{kDirs, kGh} : std::vector<int64_t>{kDirs};
  w.scale = Tensor::Zeros(DataType::kFloat32, ps);
  w.zero = Tensor::Zeros(t, ps);
  for (int64_t i = 0; i < w.scale.num_elements(); ++i) {
    w.scale.data<float>()[i] = (0.0006f + 0.006f * static_cast<float>(rng() % 1000) / 1000.f);
    if (u8) w.zero.data<uint8_t>()[i] = static_cast<uint8_t>(90 + rng() % 20);
    else w.zero.data<int8_t>()[i] = static_cast<int8_t>(static_cast<int>(rng() % 9) - 4);
  }
  w.dequantized = Tensor::Zeros(DataType::kFloat32, {kDirs, kGh, k});
  for (int64_t d = 0; d < kDirs; ++d)
    for (int64_t r = 0; r < k; ++r)
      for (int64_t c = 0; c < kGh; ++c) {
        const int64_t at = (d * k + r) * kGh + c, p = per_column ? d * kGh + c : d;
        int v = 0, z = 0;
        if (u8) {
          v = static_cast<uint8_t>(rng());
          w.q.data<uint8_t>()[at] = static_cast<uint8_t>(v);
          z = w.zero.data<uint8_t>()[p];
        } else {
          v = static_cast<int8_t>(rng());
          w.q.data<int8_t>()[at] = static_cast<int8_t>(v);
          z = w.zero.data<int8_t>()[p];
        }
        w.dequantized.data<float>()[(d * kGh + c) * k + r] = static_cast<float>(v - z) * w.scale.data<float>()[p];
      }
  return w;
}

TEST(DynamicRnn, DynamicQuantizeLstmMatchesTheFloatLstmOnItsWeights) {
  for (bool per_column : {false, true}) {
    for (bool u8 : {false, true}) {
      SCOPED_TRACE(::testing::Message() << (per_column ? "per column" : "per direction") << (u8 ? " u8" : " s8"));
      const QuantizedWeights w = MakeWeights(kInput, per_column, u8, 1 + per_column + 2 * u8);
      const QuantizedWeights r = MakeWeights(kHidden, per_column, u8, 11 + per_column + 2 * u8);
      const Tensor bias = RandomF32({kDirs, 2 * kGh}, 3, -0.3f, 0.3f);
      const Tensor h0 = RandomF32({kDirs, kBatch, kHidden}, 4), c0 = RandomF32({kDirs, kBatch, kHidden}, 5);
      const Tensor peep = RandomF32({kDirs, 3 * kHidden}, 6, -0.2f, 0.2f);
      const Tensor lens = Tensor::FromVector<int32_t>(DataType::kInt32, {kBatch}, {6, 2, 4});
      auto build = [&](bool quantized) {
        OnnxBuilder b(13);
        b.Input("x", DataType::kFloat32, {kSeq, kBatch, kInput}).Output("y").Output("yh").Output("yc");
        b.Initializer("b", bias).Initializer("lens", lens).Initializer("h0", h0).Initializer("c0", c0);
        b.Initializer("p", peep);
        std::vector<std::string> in = {"x", "w", "r", "b", "lens", "h0", "c0", "p"};
        if (quantized) {
          b.Initializer("w", w.q).Initializer("r", r.q);
          b.Initializer("ws", w.scale).Initializer("wz", w.zero).Initializer("rs", r.scale).Initializer("rz", r.zero);
          in.insert(in.end(), {"ws", "wz", "rs", "rz"});
        } else {
          b.Initializer("w", w.dequantized).Initializer("r", r.dequantized);
        }
        onnx::NodeProto& n = b.Node(quantized ? "DynamicQuantizeLSTM" : "LSTM", in, {"y", "yh", "yc"});
        if (quantized) n.set_domain("com.microsoft");
        OnnxBuilder::SetInt(n, "hidden_size", kHidden);
        OnnxBuilder::SetString(n, "direction", "bidirectional");
        return b.Serialize();
      };
      const TensorMap feeds = {{"x", RandomF32({kSeq, kBatch, kInput}, 7)}};
      auto fp = Session::LoadFromBytes(build(false));
      auto q = Session::LoadFromBytes(build(true));
      ASSERT_TRUE(fp.ok()) << fp.status();
      ASSERT_TRUE(q.ok()) << q.status();
      auto want = fp->Run(feeds);
      auto got = q->Run(feeds);
      ASSERT_TRUE(want.ok()) << want.status();
      ASSERT_TRUE(got.ok()) << got.status();
      for (const char* name : {"y", "yh", "yc"}) {
        const double err = testing::MaxAbsDiff(got->at(name), want->at(name));
        EXPECT_LT(err, 0.02) << name;
        EXPECT_GT(err, 0) << name << ": the activations were not quantized";
      }
    }
  }
}

// One recurrent node over "x" with output "y", f32 weights; `attrs` adds
// integer attributes.
std::string RecurrentModel(const std::string& op, int64_t gates, const std::string& direction,
                           const std::vector<std::pair<std::string, int64_t>>& attrs) {
  const int64_t dirs = direction == "bidirectional" ? 2 : 1;
  OnnxBuilder b(14);
  b.Input("x", DataType::kFloat32, {kSeq, kBatch, kInput}).Output("y");
  b.Initializer("w", RandomF32({dirs, gates * kHidden, kInput}, 21, -0.6f, 0.6f));
  b.Initializer("r", RandomF32({dirs, gates * kHidden, kHidden}, 22, -0.6f, 0.6f));
  b.Initializer("b", RandomF32({dirs, 2 * gates * kHidden}, 23, -0.3f, 0.3f));
  onnx::NodeProto& n = b.Node(op, {"x", "w", "r", "b"}, {"y"});
  OnnxBuilder::SetInt(n, "hidden_size", kHidden);
  OnnxBuilder::SetString(n, "direction", direction);
  for (const auto& [name, v] : attrs) OnnxBuilder::SetInt(n, name, v);
  return b.Serialize();
}

TEST(DynamicRnn, SessionOptionQuantizesLstmGruAndRnn) {
  struct Case {
    const char* op;
    int64_t gates;
    const char* direction;
    std::vector<std::pair<std::string, int64_t>> attrs;
    const char* quantized_op;
  };
  const Case cases[] = {
      {"LSTM", 4, "bidirectional", {}, "DynamicQuantizeLSTM"},
      {"GRU", 3, "bidirectional", {}, "DynamicQuantizeGRU"},
      {"GRU", 3, "reverse", {{"linear_before_reset", 1}}, "DynamicQuantizeGRU"},
      {"RNN", 1, "forward", {}, "DynamicQuantizeRNN"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(::testing::Message() << c.op << " " << c.direction);
    const std::string bytes = RecurrentModel(c.op, c.gates, c.direction, c.attrs);
    auto g = OptimizedGraph(bytes, /*dynamic_int8=*/true);
    ASSERT_TRUE(g.ok()) << g.status();
    EXPECT_EQ(CountOps(*g, c.quantized_op), 1) << g->DebugString();
    EXPECT_EQ(CountOps(*g, c.op), 0) << g->DebugString();
    SessionOptions dynamic;
    dynamic.dynamic_int8 = true;
    auto y = RunPlainAndOptimized(bytes, {{"x", RandomF32({kSeq, kBatch, kInput}, 24)}}, dynamic);
    ASSERT_TRUE(y.ok()) << y.status();
    const double err = testing::MaxAbsDiff(y->first, y->second);
    EXPECT_LT(err, 0.03);
    EXPECT_GT(err, 0) << "the INT8 path was not taken";
  }
}

TEST(DynamicRnn, BadScaleShapeIsAnError) {
  OnnxBuilder b(13);
  b.Input("x", DataType::kFloat32, {kSeq, kBatch, kInput}).Output("y");
  b.Initializer("w", Tensor::Zeros(DataType::kInt8, {1, kInput, kGh}));
  b.Initializer("r", Tensor::Zeros(DataType::kInt8, {1, kHidden, kGh}));
  b.Initializer("ws", RandomF32({3}, 1, 0.01f, 0.02f)).Initializer("rs", RandomF32({1}, 2, 0.01f, 0.02f));
  onnx::NodeProto& n = b.Node("DynamicQuantizeLSTM", {"x", "w", "r", "", "", "", "", "", "ws", "", "rs", ""}, {"y"},
                              "qlstm");
  n.set_domain("com.microsoft");
  OnnxBuilder::SetInt(n, "hidden_size", kHidden);
  auto s = Session::LoadFromBytes(b.Serialize());
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.status().message().find("qlstm"), std::string::npos) << s.status();
  EXPECT_NE(s.status().message().find("must have shape [1] or [1, 32], got [3]"), std::string::npos) << s.status();
}

}  // namespace
}  // namespace kvant
