// Session behaviour: input validation errors, dynamic batch with plan reuse,
// concurrent Run calls giving bit-identical outputs, the plan report, and the
// arena of the bundled model against its lower bound.
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
  SessionOptions small_weights;
  small_weights.max_weight_bytes = 100;
  auto w = Session::LoadFromBytes(SmallCnn(), small_weights);
  EXPECT_EQ(w.status().code(), absl::StatusCode::kResourceExhausted) << w.status();
}

}  // namespace
}  // namespace kvant
