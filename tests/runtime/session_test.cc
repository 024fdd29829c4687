// Session behaviour: input validation errors, dynamic batch with plan reuse,
// concurrent Run calls giving bit-identical outputs, the plan report, the
// arena of the bundled model against its lower bound, and If branches
// inlined at Run getting the graph optimizations.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <thread>

#include "gtest/gtest.h"
#include "kvant/kvant.h"
#include "tests/testing/onnx_builder.h"
#include "tools/npy.h"

namespace kvant {
namespace {

using testing::OnnxBuilder;
using testing::RandomF32;

// x[N,4,6,6] -> Conv(8,3x3,pad 1) -> Relu -> GlobalAveragePool -> Flatten -> Gemm(5)
std::string SmallCnn() {
  OnnxBuilder b;
  b.Input("x", DataType::kFloat32, {-1, 4, 6, 6}, {"batch"}).Output("y");
  b.Initializer("w", RandomF32({8, 4, 3, 3}, 1)).Initializer("cb", RandomF32({8}, 2));
  b.Initializer("fw", RandomF32({5, 8}, 3)).Initializer("fb", RandomF32({5}, 4));
  OnnxBuilder::SetInts(b.Node("Conv", {"x", "w", "cb"}, {"c"}), "pads", {1, 1, 1, 1});
  b.Node("Relu", {"c"}, {"r"});
  b.Node("GlobalAveragePool", {"r"}, {"g"});
  b.Node("Flatten", {"g"}, {"f"});
  OnnxBuilder::SetInt(b.Node("Gemm", {"f", "fw", "fb"}, {"y"}), "transB", 1);
  return b.Serialize();
}

// y = If(flag) then MatMul(Relu(Conv(x) + cb)) -> [1, 8] else HardSigmoid in
// the same; the branches read the outer graph's x and weights. `flag` is an
// input, so the If folds only when Run sees its value.
std::string IfModel() {
  OnnxBuilder b;
  b.Input("flag", DataType::kBool, {}).Input("x", DataType::kFloat32, {1, 4, 6, 6}).Output("y");
  b.Initializer("w", RandomF32({8, 4, 3, 3}, 1)).Initializer("cb", RandomF32({8}, 2));
  b.Initializer("mw", RandomF32({8 * 36, 8}, 3));
  b.Initializer("shape", Tensor::FromVector<int64_t>(DataType::kInt64, {2}, {1, 288}));
  auto branch = [&](const std::string& act) {
    onnx::GraphProto g;
    g.set_name(act);
    auto node = [&](const std::string& op, std::vector<std::string> in, const std::string& out) {
      onnx::NodeProto* n = g.add_node();
      n->set_op_type(op);
      n->set_name(act + "_" + op);
      for (const auto& i : in) n->add_input(i);
      n->add_output(out);
      return n;
    };
    OnnxBuilder::SetInts(*node("Conv", {"x", "w", "cb"}, act + "_c"), "pads", {1, 1, 1, 1});
    node(act, {act + "_c"}, act + "_a");
    node("Reshape", {act + "_a", "shape"}, act + "_f");
    node("MatMul", {act + "_f", "mw"}, act + "_y");
    onnx::ValueInfoProto* out = g.add_output();
    out->set_name(act + "_y");
    out->mutable_type()->mutable_tensor_type()->set_elem_type(onnx::TensorProto::FLOAT);
    return g;
  };
  onnx::NodeProto& n = b.Node("If", {"flag"}, {"y"});
  for (const auto& [name, act] : {std::pair{"then_branch", "Relu"}, std::pair{"else_branch", "HardSigmoid"}}) {
    onnx::AttributeProto* a = n.add_attribute();
    a->set_name(name);
    a->set_type(onnx::AttributeProto::GRAPH);
    *a->mutable_g() = branch(act);
  }
  return b.Serialize();
}

// An If whose condition folds only at Run (silero VAD wraps its whole model in
// one): the inlined branch gets the same optimization as the rest of a
// graph, its activation fused into the convolution and, with dynamic_int8,
// its MatMul quantized, and gives the same results as unfused.
TEST(Session, IfBranchesFoldedAtRunAreOptimized) {
  Tensor x = RandomF32({1, 4, 6, 6}, 5);
  for (bool flag : {true, false}) {
    SCOPED_TRACE(flag ? "then" : "else");
    TensorMap in{{"x", x}, {"flag", Tensor::FromVector<uint8_t>(DataType::kBool, {}, {flag})}};
    SessionOptions plain;
    plain.optimize = false;
    auto reference = Session::LoadFromBytes(IfModel(), plain);
    ASSERT_TRUE(reference.ok()) << reference.status();
    auto want = reference->Run(in);
    ASSERT_TRUE(want.ok()) << want.status();
    for (bool dynamic : {false, true}) {
      SessionOptions options;
      options.profile = true;
      options.dynamic_int8 = dynamic;
      auto s = Session::LoadFromBytes(IfModel(), options);
      ASSERT_TRUE(s.ok()) << s.status();
      auto got = s->Run(in);
      ASSERT_TRUE(got.ok()) << got.status();
      const float* w = (*want)["y"].data<float>();
      const float* g = (*got)["y"].data<float>();
      float peak = 0.f;
      for (int i = 0; i < 8; ++i) peak = std::max(peak, std::abs(w[i]));
      for (int i = 0; i < 8; ++i) EXPECT_NEAR(g[i], w[i], (dynamic ? 0.02f : 1e-5f) * peak) << i;
      std::string ops;
      for (const NodeProfile& p : s->Profile()) ops += p.node.substr(0, p.node.find(' ')) + " ";
      EXPECT_EQ(ops.find(flag ? "Relu" : "HardSigmoid"), std::string::npos) << "not fused: " << ops;
      EXPECT_EQ(ops.find("DynamicQuantizeMatMul") != std::string::npos, dynamic) << ops;
    }
  }
}

TEST(Session, RejectsBadInputsWithClearStatus) {
  auto s = Session::LoadFromBytes(SmallCnn());
  ASSERT_TRUE(s.ok()) << s.status();
  auto missing = s->Run({});
  EXPECT_EQ(missing.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(missing.status().message().find("input 'x' must be given"), std::string::npos) << missing.status();
  auto wrong_type = s->Run({{"x", Tensor::Zeros(DataType::kInt64, {1, 4, 6, 6})}});
  EXPECT_NE(wrong_type.status().message().find("must be f32, got s64"), std::string::npos) << wrong_type.status();
  auto wrong_rank = s->Run({{"x", Tensor::Zeros(DataType::kFloat32, {4, 6, 6})}});
  EXPECT_NE(wrong_rank.status().message().find("must have shape [batch,4,6,6]"), std::string::npos)
      << wrong_rank.status();
  auto wrong_dim = s->Run({{"x", Tensor::Zeros(DataType::kFloat32, {1, 3, 6, 6})}});
  EXPECT_NE(wrong_dim.status().message().find("got [1,3,6,6]"), std::string::npos) << wrong_dim.status();
  auto unknown = s->Run({{"x", Tensor::Zeros(DataType::kFloat32, {1, 4, 6, 6})}, {"z", Tensor()}});
  EXPECT_NE(unknown.status().message().find("input 'z'"), std::string::npos) << unknown.status();
}

TEST(Session, DynamicBatchMatchesPerImageRuns) {
  auto s = Session::LoadFromBytes(SmallCnn());
  ASSERT_TRUE(s.ok()) << s.status();
  Tensor x = RandomF32({3, 4, 6, 6}, 7);
  auto all = s->Run({{"x", x}});
  ASSERT_TRUE(all.ok()) << all.status();
  for (int64_t i = 0; i < 3; ++i) {
    Tensor xi = Tensor::Wrap(DataType::kFloat32, {1, 4, 6, 6}, x.data<float>() + i * 144);
    auto one = s->Run({{"x", xi}});
    ASSERT_TRUE(one.ok()) << one.status();
    for (int j = 0; j < 5; ++j) {
      EXPECT_NEAR(one->at("y").data<float>()[j], all->at("y").data<float>()[i * 5 + j], 1e-5);
    }
  }
}

TEST(Session, ConcurrentRunsAreBitIdentical) {
  SessionOptions opt;
  opt.num_threads = 2;
  auto s = Session::LoadFromBytes(SmallCnn(), opt);
  ASSERT_TRUE(s.ok()) << s.status();
  std::vector<Tensor> inputs;
  std::vector<Tensor> expected;
  for (int i = 0; i < 8; ++i) {
    inputs.push_back(RandomF32({1 + i % 3, 4, 6, 6}, 100 + i));
    expected.push_back(s->Run({{"x", inputs.back()}})->at("y"));
  }
  std::vector<std::thread> threads;
  std::vector<int> mismatches(8, 0);
  for (int t = 0; t < 8; ++t) {
    threads.emplace_back([&, t] {
      for (int rep = 0; rep < 20; ++rep) {
        auto out = s->Run({{"x", inputs[t]}});
        if (!out.ok() || std::memcmp(out->at("y").raw_data(), expected[t].raw_data(), expected[t].byte_size()) != 0) {
          ++mismatches[t];
        }
      }
    });
  }
  for (auto& th : threads) th.join();
  for (int t = 0; t < 8; ++t) EXPECT_EQ(mismatches[t], 0) << "thread " << t;
}

TEST(Session, PlanReportsArenaAgainstLowerBound) {
  auto s = Session::LoadFromBytes(SmallCnn());
  ASSERT_TRUE(s.ok()) << s.status();
  auto plan = s->Plan({{"x", {16, 4, 6, 6}}});
  ASSERT_TRUE(plan.ok()) << plan.status();
  EXPECT_GT(plan->lower_bound_bytes, 0);
  EXPECT_GE(plan->arena_bytes, plan->lower_bound_bytes);
  EXPECT_LE(plan->arena_bytes, plan->lower_bound_bytes * 1.10);
  // Conv + Relu fused, Flatten in place: four steps.
  EXPECT_EQ(plan->num_steps, 4) << plan->text;
  EXPECT_NE(plan->text.find("conv_f32"), std::string::npos) << plan->text;
}

// Every model in models/ (the bundled ones, and the zoo when fetched) plans
// an arena within 1.10x of its lower bound at the shapes of its inputs.
TEST(Session, ModelArenasWithinTenPercentOfLowerBound) {
  std::vector<std::pair<std::string, std::string>> models = {
      {KVANT_SOURCE_DIR "/models/digits/digits.onnx", KVANT_SOURCE_DIR "/models/digits/eval_x.npy"},
      {KVANT_SOURCE_DIR "/models/lstm_digits/lstm_digits.onnx", KVANT_SOURCE_DIR "/models/lstm_digits/eval_x.npy"}};
  int zoo = 0;
  std::error_code ec;
  for (const auto& dir : std::filesystem::directory_iterator(KVANT_SOURCE_DIR "/models/cache", ec)) {
    const auto inputs = dir.path() / "inputs";
    if (!std::filesystem::exists(dir.path() / "model.onnx") || !std::filesystem::exists(inputs)) continue;
    for (const auto& c : std::filesystem::directory_iterator(inputs)) {
      models.emplace_back((dir.path() / "model.onnx").string(), c.path().string());
      ++zoo;
      break;
    }
  }
  for (const auto& [model, data] : models) {
    auto s = Session::Load(model);
    ASSERT_TRUE(s.ok()) << s.status();
    std::map<std::string, std::vector<int64_t>> shapes;
    TensorMap values;
    for (const ValueInfo& vi : s->inputs()) {
      const std::string file = std::filesystem::is_directory(data) ? data + "/" + vi.name + ".npy" : data;
      auto t = ReadNpy(file);
      ASSERT_TRUE(t.ok()) << t.status();
      shapes[vi.name] = t->shape();
      values[vi.name] = *t;
    }
    ASSERT_TRUE(s->Run(values).ok()) << model;  // plans value-keyed models too
    auto plan = s->Plan(shapes);
    if (!plan.ok()) continue;  // a plan that needs input values (silero's sample rate) was checked by Run
    EXPECT_LE(plan->arena_bytes, plan->lower_bound_bytes * 1.10) << model << "\n" << plan->text;
    std::printf("arena %-60s %10lld bytes, lower bound %10lld (%.3fx)\n", model.c_str(),
                static_cast<long long>(plan->arena_bytes), static_cast<long long>(plan->lower_bound_bytes),
                plan->lower_bound_bytes ? double(plan->arena_bytes) / plan->lower_bound_bytes : 1.0);
  }
  std::printf("checked %zu models (%d from the zoo)\n", models.size(), zoo);
}

TEST(Session, LimitsAreEnforced) {
  SessionOptions opt;
  opt.max_arena_bytes = 1024;
  auto s = Session::LoadFromBytes(SmallCnn(), opt);
  ASSERT_TRUE(s.ok()) << s.status();
  auto out = s->Run({{"x", Tensor::Zeros(DataType::kFloat32, {64, 4, 6, 6})}});
  EXPECT_EQ(out.status().code(), absl::StatusCode::kResourceExhausted) << out.status();
  // A graph output counts against the same bound: one Relu, so no arena at
  // all, of 64 KB out.
  {
    testing::OnnxBuilder b(13);
    b.Input("x", DataType::kFloat32, {-1, 1024}, {"N"}).Output("y");
    b.Node("Relu", {"x"}, {"y"});
    SessionOptions tight;
    tight.max_arena_bytes = 16 << 10;
    auto r = Session::LoadFromBytes(b.Serialize(), tight);
    ASSERT_TRUE(r.ok()) << r.status();
    EXPECT_TRUE(r->Run({{"x", Tensor::Zeros(DataType::kFloat32, {2, 1024})}}).ok());
    auto big = r->Run({{"x", Tensor::Zeros(DataType::kFloat32, {16, 1024})}});
    EXPECT_EQ(big.status().code(), absl::StatusCode::kResourceExhausted) << big.status();
    EXPECT_NE(big.status().message().find("arena and outputs"), std::string::npos) << big.status();
  }
  SessionOptions small_weights;
  small_weights.max_weight_bytes = 100;
  auto w = Session::LoadFromBytes(SmallCnn(), small_weights);
  EXPECT_EQ(w.status().code(), absl::StatusCode::kResourceExhausted) << w.status();
}

}  // namespace
}  // namespace kvant
