// kvant.ConvChainNhwc (graph/passes/fuse_conv_chain.cc, ops/cpu/
// conv_chain_f32_nhwc.cc): FP32 expand 1x1 -> depthwise -> project 1x1
// (+ residual) blocks give the unoptimized graph's outputs (NCHW Conv
// kernels, unfused) for kernels 3/5/7, strides 1/2, dilation, asymmetric
// padding, channel counts that are not multiples of 16, images tall enough
// for many bands (the expand row buffer slides back), batches smaller and
// larger than the thread count (an image split into parts), and chains
// without an expand or a project stage. A chain whose intermediate is read
// elsewhere is not fused; a hand-written kvant.ConvChainNhwc with bad
// inputs fails with a status.
#include <string>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "kvant/kvant.h"
#include "ops/cpu/gemm_bf16.h"
#include "runtime/cpu_caps.h"
#include "tests/testing/graph_checks.h"
#include "tests/testing/onnx_builder.h"

namespace kvant {
namespace {

using testing::CountSteps;
using testing::MaxAbsDiff;
using testing::OnnxBuilder;
using testing::RandomF32;
using testing::RunPlainAndOptimized;

struct Block {
  int64_t n, cin, h, w, mid, cout, k, stride, dil;
  std::vector<int64_t> pads;  // top, left, bottom, right
  bool expand, project, residual;
};

std::string Describe(const Block& b) {
  return absl::StrCat("n", b.n, " ", b.cin, "x", b.h, "x", b.w, " mid ", b.mid, " out ", b.cout, " k", b.k, " s",
                      b.stride, " d", b.dil, " pads ", b.pads[0], b.pads[1], b.pads[2], b.pads[3],
                      b.expand ? " expand" : "", b.project ? " project" : "", b.residual ? " residual" : "");
}

// x -> 3x3 -> x0 (so the block's input is NHWC, as inside a network; not
// 1x1, which would fuse as the expand) ->
// [1x1 + Clip(0, 6)] -> depthwise k + Relu -> [1x1 (no bias when there is a
// residual)] -> [+ x0] -> y; `tap` also returns the expand output.
std::string BlockModel(const Block& c, uint64_t seed, bool tap = false) {
  OnnxBuilder b;
  b.Input("x", DataType::kFloat32, {c.n, c.cin, c.h, c.w}).Output("y");
  if (tap) b.Output("e");
  b.Initializer("lo", Tensor::FromVector<float>(DataType::kFloat32, {}, {0.f}));
  b.Initializer("hi", Tensor::FromVector<float>(DataType::kFloat32, {}, {6.f}));
  b.Initializer("w0", RandomF32({c.cin, c.cin, 3, 3}, seed + 7));
  OnnxBuilder::SetInts(b.Node("Conv", {"x", "w0"}, {"x0"}), "pads", {1, 1, 1, 1});
  std::string cur = "x0";
  if (c.expand) {
    b.Initializer("we", RandomF32({c.mid, c.cin, 1, 1}, seed + 1)).Initializer("be", RandomF32({c.mid}, seed + 2));
    b.Node("Conv", {"x0", "we", "be"}, {"e"});
    b.Node("Clip", {"e", "lo", "hi"}, {"ea"});
    cur = "ea";
  }
  b.Initializer("wd", RandomF32({c.mid, 1, c.k, c.k}, seed + 3)).Initializer("bd", RandomF32({c.mid}, seed + 4));
  auto& dw = b.Node("Conv", {cur, "wd", "bd"}, {"d"});
  OnnxBuilder::SetInt(dw, "group", c.mid);
  OnnxBuilder::SetInts(dw, "kernel_shape", {c.k, c.k});
  OnnxBuilder::SetInts(dw, "strides", {c.stride, c.stride});
  OnnxBuilder::SetInts(dw, "dilations", {c.dil, c.dil});
  OnnxBuilder::SetInts(dw, "pads", {c.pads[0], c.pads[1], c.pads[2], c.pads[3]});
  b.Node("Relu", {"d"}, {c.project ? "da" : "y"});
  if (c.project) {
    b.Initializer("wp", RandomF32({c.cout, c.mid, 1, 1}, seed + 5));
    if (c.residual) {
      b.Node("Conv", {"da", "wp"}, {"p"});
      b.Node("Add", {"p", "x0"}, {"y"});
    } else {
      b.Initializer("bp", RandomF32({c.cout}, seed + 6));
      b.Node("Conv", {"da", "wp", "bp"}, {"y"});
    }
  }
  return b.Serialize();
}

void ExpectFusedAndEqual(const Block& c, int threads, uint64_t seed) {
  const std::string what = absl::StrCat(Describe(c), ", ", threads, " thread(s)");
  const std::string model = BlockModel(c, seed);
  SessionOptions options;
  options.num_threads = threads;
  auto session = Session::LoadFromBytes(model, options);
  ASSERT_TRUE(session.ok()) << session.status();
  auto plan = session->Plan({{"x", {c.n, c.cin, c.h, c.w}}});
  ASSERT_TRUE(plan.ok()) << plan.status();
  EXPECT_EQ(CountSteps(*plan, "ConvChainNhwc"), 1) << what << "\n" << plan->text;
  EXPECT_EQ(CountSteps(*plan, "ConvNhwc") + CountSteps(*plan, "Conv"), 1) << what << "\n" << plan->text;  // x -> x0
  EXPECT_EQ(CountSteps(*plan, "Add"), 0) << what << "\n" << plan->text;
  const Tensor x = RandomF32({c.n, c.cin, c.h, c.w}, seed);
  auto runs = RunPlainAndOptimized(model, {{"x", x}}, options);
  ASSERT_TRUE(runs.ok()) << what << ": " << runs.status();
  double magnitude = 0;
  const double err = MaxAbsDiff(runs->first, runs->second, &magnitude);
  EXPECT_LE(err, 1e-5 * std::max(1.0, magnitude)) << what;
}

TEST(ConvChainF32, MatchesUnfusedBlocks) {
  const std::vector<int64_t> same3 = {1, 1, 1, 1}, same5 = {2, 2, 2, 2};
  const Block blocks[] = {
      // MobileNetV2 / EfficientNet blocks: expand, depthwise, project, residual.
      {1, 16, 40, 70, 96, 16, 3, 1, 1, same3, true, true, true},
      {2, 24, 14, 14, 144, 24, 5, 1, 1, same5, true, true, true},
      {3, 8, 9, 11, 40, 8, 3, 1, 1, same3, true, true, true},
      // Stride 2 with TensorFlow's "same" padding (bottom/right only) and
      // odd sizes; 7x7; dilation 2; channels that fill no vector.
      {1, 16, 37, 45, 72, 24, 3, 2, 1, {0, 0, 1, 1}, true, true, false},
      {2, 40, 23, 17, 120, 33, 5, 2, 1, {1, 1, 2, 2}, true, true, false},
      {1, 7, 19, 21, 21, 5, 7, 1, 1, {3, 3, 3, 3}, true, true, false},
      {1, 12, 16, 18, 36, 12, 3, 1, 2, {2, 2, 2, 2}, true, true, true},
      // Tall images: many bands, the row buffer slides back.
      {1, 32, 96, 60, 192, 32, 3, 1, 1, same3, true, true, true},
      {1, 24, 90, 56, 144, 40, 5, 2, 1, same5, true, true, false},
      // Two stages: depthwise -> project (EfficientNet's block 0), expand ->
      // depthwise (a depthwise output that is the model's output).
      {2, 32, 30, 34, 32, 16, 3, 1, 1, same3, false, true, false},
      {1, 24, 25, 25, 24, 24, 3, 2, 1, same3, false, true, false},
      {1, 8, 21, 23, 48, 48, 3, 1, 1, same3, true, false, false},
      {1, 8, 40, 40, 48, 48, 5, 2, 1, same5, true, false, false},
  };
  uint64_t seed = 9100;
  for (const Block& c : blocks) {
    for (int threads : {1, 2, 3}) ExpectFusedAndEqual(c, threads, seed += 10);
  }
}

// The expand output is also a graph output: only depthwise -> project fuse.
TEST(ConvChainF32, SharedIntermediateStaysUnfused) {
  const Block c{1, 8, 12, 12, 32, 8, 3, 1, 1, {1, 1, 1, 1}, true, true, false};
  const std::string model = BlockModel(c, 9700, /*tap=*/true);
  auto session = Session::LoadFromBytes(model, {});
  ASSERT_TRUE(session.ok()) << session.status();
  auto plan = session->Plan({{"x", {1, 8, 12, 12}}});
  ASSERT_TRUE(plan.ok()) << plan.status();
  EXPECT_EQ(CountSteps(*plan, "ConvChainNhwc"), 1) << plan->text;
  EXPECT_EQ(CountSteps(*plan, "ConvNhwc"), 2) << plan->text;  // x -> x0 and the expand, whose output leaves the graph
  const Tensor x = RandomF32({1, 8, 12, 12}, 9701);
  for (const char* out : {"y", "e"}) {
    auto runs = RunPlainAndOptimized(model, {{"x", x}}, {}, out);
    ASSERT_TRUE(runs.ok()) << runs.status();
    double magnitude = 0;
    EXPECT_LE(MaxAbsDiff(runs->first, runs->second, &magnitude), 1e-5 * std::max(1.0, magnitude)) << out;
  }
}

// A kvant.ConvChainNhwc written into a file (the domain is internal, but
// files are untrusted): wrong types, shapes and non-constant weights are
// statuses, never a crash or a read out of bounds.
TEST(ConvChainF32, HandWrittenNodeIsChecked) {
  struct Bad {
    const char* what;
    Tensor bias;
    bool weights_as_input;
    const char* expect;
  };
  const Bad bad[] = {
      {"int32 bias", Tensor::Zeros(DataType::kInt32, {8}), false, "float32"},
      {"short bias", Tensor::Zeros(DataType::kFloat32, {5}), false, "bias"},
      {"weights computed at run time", Tensor::Zeros(DataType::kFloat32, {8}), true, "constant"},
  };
  for (const Bad& c : bad) {
    OnnxBuilder b;
    b.Input("x", DataType::kFloat32, {1, 6, 6, 8}).Output("y");
    if (c.weights_as_input) {
      b.Input("wd", DataType::kFloat32, {8, 1, 3, 3});
    } else {
      b.Initializer("wd", RandomF32({8, 1, 3, 3}, 1));
    }
    b.Initializer("bd", c.bias);
    auto& n = b.Node("ConvChainNhwc", {"x", "", "", "wd", "bd"}, {"y"});
    n.set_domain("kvant");
    OnnxBuilder::SetInt(n, "depthwise:group", 8);
    OnnxBuilder::SetInts(n, "depthwise:pads", {1, 1, 1, 1});
    auto session = Session::LoadFromBytes(b.Serialize(), {});
    absl::Status status = session.status();
    if (session.ok()) {
      TensorMap inputs = {{"x", RandomF32({1, 6, 6, 8}, 2)}};
      if (c.weights_as_input) inputs["wd"] = RandomF32({8, 1, 3, 3}, 3);
      status = session->Run(inputs).status();
    }
    EXPECT_FALSE(status.ok()) << c.what;
    EXPECT_NE(status.message().find(c.expect), std::string::npos) << c.what << ": " << status;
  }
}

// With precision bf16 the chain's 1x1 stages deep enough for BF16 (K >= 128,
// graph/passes/assign_precision.cc) run on the BF16 GEMM inside the chain;
// results stay within BF16's rounding of the FP32 graph.
TEST(ConvChainF32, Bf16StagesRunInTheChain) {
  if (cpu::SelectGemmUkernelBf16(ActiveCpuFeatures()) == nullptr) GTEST_SKIP() << "no BF16 arithmetic here";
  const Block blocks[] = {
      {1, 128, 20, 18, 256, 64, 3, 1, 1, {1, 1, 1, 1}, true, true, false},
      {2, 128, 9, 9, 192, 128, 5, 2, 1, {2, 2, 2, 2}, true, true, false},
  };
  uint64_t seed = 9900;
  for (const Block& c : blocks) {
    const std::string what = Describe(c);
    const std::string model = BlockModel(c, seed += 10);
    SessionOptions options;
    options.precision = Precision::kBf16;
    auto session = Session::LoadFromBytes(model, options);
    ASSERT_TRUE(session.ok()) << session.status();
    auto plan = session->Plan({{"x", {c.n, c.cin, c.h, c.w}}});
    ASSERT_TRUE(plan.ok()) << plan.status();
    int bf16_chains = 0;
    for (const auto& step : plan->steps) {
      bf16_chains += step.op == "ConvChainNhwc" && step.impl.find("expand gemm_bf16") != std::string::npos &&
                     step.impl.find("project gemm_bf16") != std::string::npos;
    }
    EXPECT_EQ(bf16_chains, 1) << what << "\n" << plan->text;
    const Tensor x = RandomF32({c.n, c.cin, c.h, c.w}, seed);
    auto runs = RunPlainAndOptimized(model, {{"x", x}}, options);
    ASSERT_TRUE(runs.ok()) << what << ": " << runs.status();
    double magnitude = 0;
    const double err = MaxAbsDiff(runs->first, runs->second, &magnitude);
    EXPECT_LE(err, 2e-2 * std::max(1.0, magnitude)) << what;
    EXPECT_GT(err, 0) << what << ": no BF16 rounding at all";
  }
}

// With precision fp16 the chain's 1x1 stages keep their weights in FP16
// (widened per panel, FP32 arithmetic): the plan counts the chain as FP16
// and results stay within FP16's rounding of the weights.
TEST(ConvChainF32, Fp16WeightsRunInTheChain) {
  const Block c{1, 24, 30, 26, 96, 24, 3, 1, 1, {1, 1, 1, 1}, true, true, true};
  const std::string model = BlockModel(c, 9950);
  SessionOptions options;
  options.precision = Precision::kFp16;
  auto session = Session::LoadFromBytes(model, options);
  ASSERT_TRUE(session.ok()) << session.status();
  auto plan = session->Plan({{"x", {c.n, c.cin, c.h, c.w}}});
  ASSERT_TRUE(plan.ok()) << plan.status();
  int fp16_chains = 0;
  for (const auto& step : plan->steps) fp16_chains += step.op == "ConvChainNhwc" && step.precision == "fp16";
  EXPECT_EQ(fp16_chains, 1) << plan->text;
  const Tensor x = RandomF32({c.n, c.cin, c.h, c.w}, 9951);
  auto runs = RunPlainAndOptimized(model, {{"x", x}}, options);
  ASSERT_TRUE(runs.ok()) << runs.status();
  double magnitude = 0;
  const double err = MaxAbsDiff(runs->first, runs->second, &magnitude);
  EXPECT_LE(err, 5e-3 * std::max(1.0, magnitude));
  EXPECT_GT(err, 0) << "no FP16 rounding at all";
}

}  // namespace
}  // namespace kvant
