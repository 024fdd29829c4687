// kvant.QLinearConvChainNhwc (graph/passes/fuse_conv_chain.cc, ops/cpu/
// qconv_chain_s8.cc): QOperator expand 1x1 -> depthwise -> project 1x1
// blocks run a band of rows at a time and give the unoptimized graph's
// quantized output byte for byte: u8 and s8 activations, per-tensor and
// per-channel weight scales, u8 weights with zero point 128, with and without
// bias, kernels 3/5, strides 1/2, dilation, asymmetric padding, channel
// counts that fill no vector, images tall enough for many bands, batches
// smaller and larger than the thread count, two-stage chains, and residual
// blocks whose com.microsoft.QLinearAdd the chain takes in (the chain's
// output as the Add's A or B).
#include <cmath>
#include <map>
#include <random>
#include <string>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "kvant/kvant.h"
#include "tests/testing/graph_checks.h"
#include "tests/testing/onnx_builder.h"

namespace kvant {
namespace {

using testing::CountSteps;
using testing::OnnxBuilder;
using testing::RandomF32;
using testing::RunPlainAndOptimized;
using testing::ScalarF32;

struct Block {
  int64_t n, cin, h, w, mid, cout, k, stride, dil;
  std::vector<int64_t> pads;  // top, left, bottom, right
  bool expand, project;
  bool s8;            // s8 activations (else u8)
  bool per_channel;   // per-channel weight scales
  bool u8_weights;    // u8 weights, zero point 128
  int residual = 0;   // 1: y = QLinearAdd(block, input), 2: QLinearAdd(input, block)
  bool dynamic = false;  // the model's input [N, C, H, W] with N, H, W unknown
};

std::string Describe(const Block& b) {
  return absl::StrCat("n", b.n, " ", b.cin, "x", b.h, "x", b.w, " mid ", b.mid, " out ", b.cout, " k", b.k, " s",
                      b.stride, " d", b.dil, " pads ", b.pads[0], b.pads[1], b.pads[2], b.pads[3],
                      b.expand ? " expand" : "", b.project ? " project" : "", b.s8 ? " s8" : " u8",
                      b.per_channel ? " per-channel" : "", b.u8_weights ? " u8-weights" : "",
                      b.residual == 0 ? "" : b.residual == 1 ? " residual (block first)" : " residual (input first)",
                      b.dynamic ? " dynamic" : "");
}

Tensor RandomWeights(const std::vector<int64_t>& shape, bool u8, uint32_t seed) {
  std::mt19937 rng(seed);
  Tensor t = Tensor::Zeros(u8 ? DataType::kUInt8 : DataType::kInt8, shape);
  for (int64_t i = 0; i < t.num_elements(); ++i) {
    const int v = static_cast<int>(rng() % 201) - 100;
    if (u8) {
      t.data<uint8_t>()[i] = static_cast<uint8_t>(v + 128);
    } else {
      t.data<int8_t>()[i] = static_cast<int8_t>(v);
    }
  }
  return t;
}

// One QLinearConv of `out_ch` x `in_ch / group` x k x k weights from `in`
// (scale/zero point names in_s, in_z) to `out` (out_s, out_z), output scale
// from the fan-in so that few values saturate.
struct QConvBuilder {
  OnnxBuilder& b;
  const Block& c;
  uint32_t seed;

  onnx::NodeProto& Conv(const std::string& in, const std::string& out, int64_t in_ch, int64_t out_ch, int64_t k,
                        int64_t group, bool bias) {
    const std::string w = out + "_w";
    b.Initializer(w, RandomWeights({out_ch, in_ch / group, k, k}, c.u8_weights, seed++));
    std::vector<float> scales(c.per_channel ? out_ch : 1);
    for (size_t i = 0; i < scales.size(); ++i) scales[i] = 0.004f + 0.002f * static_cast<float>(i % 5);
    b.Initializer(w + "_s", Tensor::FromVector<float>(DataType::kFloat32, {static_cast<int64_t>(scales.size())}, scales));
    b.Initializer(w + "_z", c.u8_weights ? Tensor::FromVector<uint8_t>(DataType::kUInt8, {}, {128})
                                         : Tensor::FromVector<int8_t>(DataType::kInt8, {}, {0}));
    const float fan_in = static_cast<float>(in_ch / group * k * k);
    b.Initializer(out + "_s", ScalarF32(0.01f * std::sqrt(fan_in)));
    b.Initializer(out + "_z", c.s8 ? Tensor::FromVector<int8_t>(DataType::kInt8, {}, {-5})
                                   : Tensor::FromVector<uint8_t>(DataType::kUInt8, {}, {120}));
    std::vector<std::string> inputs = {in, in + "_s", in + "_z", w, w + "_s", w + "_z", out + "_s", out + "_z"};
    if (bias) {
      std::mt19937 rng(seed++);
      Tensor bt = Tensor::Zeros(DataType::kInt32, {out_ch});
      for (int64_t i = 0; i < out_ch; ++i) bt.data<int32_t>()[i] = static_cast<int32_t>(rng() % 4001) - 2000;
      b.Initializer(out + "_b", bt);
      inputs.push_back(out + "_b");
    }
    auto& n = b.Node("QLinearConv", inputs, {out});
    OnnxBuilder::SetInt(n, "group", group);
    OnnxBuilder::SetInts(n, "kernel_shape", {k, k});
    return n;
  }
};

// x -> Q -> 3x3 (so the block's input is NHWC) -> [1x1 expand] -> depthwise
// -> [1x1 project] -> y (quantized).
std::string BlockModel(const Block& c, uint32_t seed) {
  OnnxBuilder b(13);
  if (c.dynamic) {
    b.Input("x_f", DataType::kFloat32, {-1, c.cin, -1, -1}, {"N", "", "H", "W"});
  } else {
    b.Input("x_f", DataType::kFloat32, {c.n, c.cin, c.h, c.w});
  }
  b.Output("y", c.s8 ? DataType::kInt8 : DataType::kUInt8);
  b.Initializer("x_s", ScalarF32(2.f / 255.f));
  b.Initializer("x_z", c.s8 ? Tensor::FromVector<int8_t>(DataType::kInt8, {}, {0})
                            : Tensor::FromVector<uint8_t>(DataType::kUInt8, {}, {128}));
  b.Node("QuantizeLinear", {"x_f", "x_s", "x_z"}, {"x"});
  QConvBuilder q{b, c, seed};
  OnnxBuilder::SetInts(q.Conv("x", "a0", c.cin, c.cin, 3, 1, true), "pads", {1, 1, 1, 1});
  std::string cur = "a0";
  if (c.expand) {
    q.Conv(cur, "ae", c.cin, c.mid, 1, 1, true);
    cur = "ae";
  }
  const std::string block_out = c.residual ? "yb" : "y";
  auto& dw = q.Conv(cur, c.project ? "ad" : block_out, c.mid, c.mid, c.k, c.mid, !c.per_channel);
  OnnxBuilder::SetInts(dw, "strides", {c.stride, c.stride});
  OnnxBuilder::SetInts(dw, "dilations", {c.dil, c.dil});
  OnnxBuilder::SetInts(dw, "pads", {c.pads[0], c.pads[1], c.pads[2], c.pads[3]});
  if (c.project) q.Conv("ad", block_out, c.mid, c.cout, 1, 1, c.per_channel);
  if (c.residual) {
    b.Initializer("y_s", ScalarF32(0.09f));
    b.Initializer("y_z", c.s8 ? Tensor::FromVector<int8_t>(DataType::kInt8, {}, {3})
                              : Tensor::FromVector<uint8_t>(DataType::kUInt8, {}, {125}));
    const std::vector<std::string> block = {"yb", "yb_s", "yb_z"}, input = {"a0", "a0_s", "a0_z"};
    std::vector<std::string> ins = c.residual == 1 ? block : input;
    for (const auto& v : c.residual == 1 ? input : block) ins.push_back(v);
    ins.push_back("y_s");
    ins.push_back("y_z");
    b.Node("QLinearAdd", ins, {"y"}).set_domain("com.microsoft");
  }
  return b.Serialize();
}

TEST(QConvChainS8, MatchesUnfusedBlocksExactly) {
  const std::vector<int64_t> same3 = {1, 1, 1, 1}, same5 = {2, 2, 2, 2};
  const Block blocks[] = {
      {1, 16, 40, 70, 96, 16, 3, 1, 1, same3, true, true, false, true, false},
      {2, 24, 14, 14, 144, 24, 5, 1, 1, same5, true, true, true, true, false},
      {3, 8, 9, 11, 40, 8, 3, 1, 1, same3, true, true, false, false, true},
      {1, 16, 37, 45, 72, 24, 3, 2, 1, {0, 0, 1, 1}, true, true, true, false, false},
      {2, 40, 23, 17, 120, 33, 5, 2, 1, {1, 1, 2, 2}, true, true, false, true, true},
      {1, 12, 16, 18, 36, 12, 3, 1, 2, {2, 2, 2, 2}, true, true, true, true, false},
      // Tall: many bands, the expand buffer slides back.
      {1, 32, 120, 80, 192, 32, 3, 1, 1, same3, true, true, false, true, false},
      {1, 24, 110, 64, 144, 40, 5, 2, 1, same5, true, true, true, true, true},
      // Two stages.
      {2, 32, 30, 34, 32, 16, 3, 1, 1, same3, false, true, false, true, false},
      {1, 24, 25, 25, 24, 24, 3, 2, 1, same3, false, true, true, false, false},
      {1, 8, 21, 23, 48, 48, 3, 1, 1, same3, true, false, false, true, false},
      {1, 8, 60, 40, 48, 48, 5, 2, 1, same5, true, false, true, true, true},
      // Residual blocks: the QLinearAdd after the last stage comes in.
      {1, 16, 40, 70, 96, 16, 3, 1, 1, same3, true, true, false, true, false, 1},
      {4, 24, 14, 14, 144, 24, 5, 1, 1, same5, true, true, true, true, false, 2},
      {3, 40, 7, 7, 240, 40, 5, 1, 1, same5, true, true, false, false, true, 1},
      {1, 32, 120, 80, 192, 32, 3, 1, 1, same3, true, true, true, true, false, 2},
      {2, 32, 30, 34, 32, 32, 3, 1, 1, same3, false, true, false, true, false, 1},
      {1, 48, 21, 23, 48, 48, 3, 1, 1, same3, true, false, true, true, true, 2},
      // Unknown sizes: the Add's operands compare equal only through the
      // chain keeping its input's shape.
      {2, 16, 19, 27, 64, 16, 5, 1, 1, same5, true, true, false, true, false, 2, true},
      {1, 24, 33, 21, 24, 24, 3, 1, 2, {2, 2, 2, 2}, false, true, true, false, false, 1, true},
  };
  uint32_t seed = 5100;
  for (const Block& c : blocks) {
    const std::string model = BlockModel(c, seed += 20);
    const Tensor x = RandomF32({c.n, c.cin, c.h, c.w}, seed);
    for (int threads : {1, 2, 3}) {
      const std::string what = absl::StrCat(Describe(c), ", ", threads, " thread(s)");
      SessionOptions options;
      options.num_threads = threads;
      auto session = Session::LoadFromBytes(model, options);
      ASSERT_TRUE(session.ok()) << session.status();
      auto plan = session->Plan({{"x_f", x.shape()}});
      ASSERT_TRUE(plan.ok()) << plan.status();
      EXPECT_EQ(CountSteps(*plan, "QLinearConvChainNhwc"), 1) << what << "\n" << plan->text;
      EXPECT_EQ(CountSteps(*plan, "QLinearConvNhwc"), 1) << what << "\n" << plan->text;  // the 3x3 in front
      EXPECT_EQ(CountSteps(*plan, "QLinearAdd"), 0) << what << "\n" << plan->text;
      auto runs = RunPlainAndOptimized(model, {{"x_f", x}}, options);
      ASSERT_TRUE(runs.ok()) << what << ": " << runs.status();
      const Tensor& want = runs->first;
      const Tensor& got = runs->second;
      ASSERT_EQ(want.shape(), got.shape()) << what;
      int64_t differ = 0, first = -1, distinct = 0;
      for (int64_t i = 0; i < want.num_elements(); ++i) {
        const bool d = want.data<uint8_t>()[i] != got.data<uint8_t>()[i];
        if (d && first < 0) first = i;
        differ += d;
        distinct += want.data<uint8_t>()[i] != want.data<uint8_t>()[0];
      }
      EXPECT_EQ(differ, 0) << what << ": first at " << first;
      EXPECT_GT(distinct, want.num_elements() / 4) << what << ": the output is mostly one value";
    }
  }
}

// A hand-written kvant.QLinearConvChainNhwc over x [1, 6, 6, 8]: a 3x3
// depthwise stage (inputs 9-16) whose operand `replace` is `value` (an
// undefined tensor: left out), then `constants` and graph inputs `fed` by
// input index. The status of loading it and running it on zeros and `fed`.
absl::Status RunHandWrittenChain(int replace, const Tensor& value, const std::map<int, Tensor>& constants,
                                 const std::map<int, Tensor>& fed) {
  OnnxBuilder b(13);
  b.Input("x", DataType::kUInt8, {1, 6, 6, 8});
  TensorMap feeds{{"x", Tensor::Zeros(DataType::kUInt8, {1, 6, 6, 8})}};
  std::vector<std::string> inputs(constants.empty() && fed.empty() ? 25 : 32, "");
  inputs[0] = "x";
  for (const auto& [i, t] : fed) {
    inputs[i] = "in" + std::to_string(i);
    b.Input(inputs[i], t.dtype(), t.shape());
    feeds[inputs[i]] = t;
  }
  b.Output("y", DataType::kUInt8);
  const Tensor dw_operands[8] = {ScalarF32(0.02f), testing::ScalarU8(128), RandomWeights({8, 1, 3, 3}, false, 3),
                                 ScalarF32(0.01f), Tensor::Zeros(DataType::kInt8, {}), ScalarF32(0.05f),
                                 testing::ScalarU8(120), Tensor::Zeros(DataType::kInt32, {8})};
  auto constant = [&](int i, const Tensor& t) {
    if (t.dtype() == DataType::kUndefined) return;
    inputs[i] = "op" + std::to_string(i);
    b.Initializer(inputs[i], t);
  };
  for (int j = 0; j < 8; ++j) constant(9 + j, 9 + j == replace ? value : dw_operands[j]);
  for (const auto& [i, t] : constants) constant(i, t);
  auto& n = b.Node("QLinearConvChainNhwc", inputs, {"y"});
  n.set_domain("kvant");
  OnnxBuilder::SetInt(n, "depthwise:group", 8);
  OnnxBuilder::SetInts(n, "depthwise:pads", {1, 1, 1, 1});
  auto session = Session::LoadFromBytes(b.Serialize(), {});
  if (!session.ok()) return session.status();
  return session->Run(feeds).status();
}

// A kvant.QLinearConvChainNhwc written into a file: operands of the wrong
// type or size are statuses, never a crash or a read out of bounds.
TEST(QConvChainS8, HandWrittenNodeIsChecked) {
  struct Bad {
    const char* what;
    int replace;  // chain input to replace (dw stage: inputs 9-16)
    Tensor value;
  };
  const Bad bad[] = {
      {"no y_zero_point", 15, Tensor()},
      {"float weights", 11, RandomF32({8, 1, 3, 3}, 4)},
      {"five weight scales for eight channels", 12, RandomF32({5}, 5, 0.01f, 0.02f)},
      {"int32 y_zero_point", 15, Tensor::Zeros(DataType::kInt32, {})},
  };
  for (const Bad& c : bad) {
    const absl::Status status = RunHandWrittenChain(c.replace, c.value, {}, {});
    EXPECT_FALSE(status.ok()) << c.what;
    EXPECT_NE(status.message().find("QLinearConvChainNhwc_1"), std::string::npos) << c.what << ": " << status;
  }
}

// A residual add written into a file (inputs 25-31: the residual, then the
// Add's scales and zero points): a residual of another shape, a zero point
// of another type or a scale that is not constant is a status naming the
// node.
TEST(QConvChainS8, HandWrittenResidualAddIsChecked) {
  struct Bad {
    const char* what;
    std::vector<int64_t> residual_shape;
    Tensor sum_zero_point;
    bool scale_is_input;  // the sum's scale (input 30) a graph input
  };
  const Bad bad[] = {
      {"residual of 4 channels", {1, 6, 6, 4}, testing::ScalarU8(120), false},
      {"s8 zero point of a u8 sum", {1, 6, 6, 8}, Tensor::Zeros(DataType::kInt8, {}), false},
      {"scale not constant", {1, 6, 6, 8}, testing::ScalarU8(120), true},
  };
  for (const Bad& c : bad) {
    std::map<int, Tensor> constants = {{26, ScalarF32(0.05f)}, {27, testing::ScalarU8(120)},
                                       {28, ScalarF32(0.03f)}, {29, testing::ScalarU8(128)},
                                       {31, c.sum_zero_point}};
    std::map<int, Tensor> fed = {{25, Tensor::Zeros(DataType::kUInt8, c.residual_shape)}};
    (c.scale_is_input ? fed : constants)[30] = ScalarF32(0.06f);
    const absl::Status status = RunHandWrittenChain(-1, Tensor(), constants, fed);
    EXPECT_FALSE(status.ok()) << c.what;
    EXPECT_NE(status.message().find("QLinearConvChainNhwc_1"), std::string::npos) << c.what << ": " << status;
  }
}

}  // namespace
}  // namespace kvant
