// Concurrency, determinism and allocation failure: eight threads running one
// Session (including its first, plan-building runs) give the sequential
// outputs bit for bit; outputs do not depend on the thread count; and an
// allocator that fails the i-th allocation gives ResourceExhausted with no
// leak, after which the session still runs. The ThreadSanitizer build in
// tools/test runs this file.
#include <atomic>
#include <cstring>
#include <map>
#include <mutex>
#include <thread>

#include "gtest/gtest.h"
#include "kvant/kvant.h"
#include "tests/testing/onnx_builder.h"

namespace kvant {
namespace {

using testing::OnnxBuilder;
using testing::RandomF32;

// x[N,8,10,10] -> Conv(16,3x3,pad 1) -> Relu -> depthwise Conv 3x3 ->
// GlobalAveragePool -> Flatten -> Gemm(10) -> Softmax; and an integer branch
// k[N,6] (s64) -> Mul -> Add -> ReduceSum.
std::string MixedModel() {
  OnnxBuilder b;
  b.Input("x", DataType::kFloat32, {-1, 8, 10, 10}, {"batch"}).Input("k", DataType::kInt64, {-1, 6}, {"batch"});
  b.Output("y").Output("s", DataType::kInt64);
  b.Initializer("w", RandomF32({16, 8, 3, 3}, 1)).Initializer("dw", RandomF32({16, 1, 3, 3}, 2));
  b.Initializer("fw", RandomF32({10, 16}, 3)).Initializer("fb", RandomF32({10}, 4));
  b.Initializer("m", Tensor::FromVector<int64_t>(DataType::kInt64, {6}, {3, -7, 11, 1, 0, 5}));
  b.Initializer("a", Tensor::FromVector<int64_t>(DataType::kInt64, {1}, {-13}));
  b.Initializer("axes", Tensor::FromVector<int64_t>(DataType::kInt64, {1}, {1}));
  OnnxBuilder::SetInts(b.Node("Conv", {"x", "w"}, {"c"}), "pads", {1, 1, 1, 1});
  b.Node("Relu", {"c"}, {"r"});
  onnx::NodeProto& dw = b.Node("Conv", {"r", "dw"}, {"d"});
  OnnxBuilder::SetInt(dw, "group", 16);
  OnnxBuilder::SetInts(dw, "pads", {1, 1, 1, 1});
  b.Node("GlobalAveragePool", {"d"}, {"g"});
  b.Node("Flatten", {"g"}, {"f"});
  OnnxBuilder::SetInt(b.Node("Gemm", {"f", "fw", "fb"}, {"z"}), "transB", 1);
  b.Node("Softmax", {"z"}, {"y"});
  b.Node("Mul", {"k", "m"}, {"km"});
  b.Node("Add", {"km", "a"}, {"ka"});
  b.Node("ReduceSum", {"ka", "axes"}, {"s"});
  return b.Serialize();
}

TensorMap Inputs(int64_t batch, uint64_t seed) {
  std::vector<int64_t> k(batch * 6);
  for (size_t i = 0; i < k.size(); ++i) k[i] = static_cast<int64_t>((seed * 7919 + i * 104729) % 2001) - 1000;
  return {{"x", RandomF32({batch, 8, 10, 10}, seed)}, {"k", Tensor::FromVector(DataType::kInt64, {batch, 6}, k)}};
}

bool SameBits(const TensorMap& a, const TensorMap& b) {
  if (a.size() != b.size()) return false;
  for (const auto& [name, t] : a) {
    auto it = b.find(name);
    if (it == b.end() || it->second.shape() != t.shape() || it->second.dtype() != t.dtype()) return false;
    if (std::memcmp(it->second.raw_data(), t.raw_data(), t.byte_size()) != 0) return false;
  }
  return true;
}

// Runs 1..8 images per thread on a fresh session, so that the threads race
// to build and cache the plans of several shapes, and compares with the
// outputs of a second session run sequentially.
TEST(Concurrency, EightThreadsOnOneSessionMatchSequentialRuns) {
  for (int pool_threads : {1, 2}) {
    SessionOptions opt;
    opt.num_threads = pool_threads;
    auto sequential = Session::LoadFromBytes(MixedModel(), opt);
    auto shared = Session::LoadFromBytes(MixedModel(), opt);
    ASSERT_TRUE(sequential.ok() && shared.ok()) << sequential.status() << shared.status();
    std::vector<TensorMap> inputs, expected;
    for (int t = 0; t < 8; ++t) {
      inputs.push_back(Inputs(1 + t % 4, 50 + t));
      auto out = sequential->Run(inputs.back());
      ASSERT_TRUE(out.ok()) << out.status();
      expected.push_back(*std::move(out));
    }
    std::vector<int> mismatches(8, 0);
    std::vector<std::thread> threads;
    for (int t = 0; t < 8; ++t) {
      threads.emplace_back([&, t] {
        for (int rep = 0; rep < 10; ++rep) {
          auto out = shared->Run(inputs[t]);
          if (!out.ok() || !SameBits(*out, expected[t])) ++mismatches[t];
        }
      });
    }
    for (auto& th : threads) th.join();
    for (int t = 0; t < 8; ++t) EXPECT_EQ(mismatches[t], 0) << "thread " << t << ", pool of " << pool_threads;
  }
}

// Float and integer outputs are identical for 1, 2, 3 and 4 intra-op threads:
// the kernels split work by output tiles, never by the reduction dimension.
TEST(Concurrency, OutputsDoNotDependOnThreadCount) {
  const TensorMap in = Inputs(5, 9);
  TensorMap first;
  for (int threads = 1; threads <= 4; ++threads) {
    SessionOptions opt;
    opt.num_threads = threads;
    auto s = Session::LoadFromBytes(MixedModel(), opt);
    ASSERT_TRUE(s.ok()) << s.status();
    for (int rep = 0; rep < 2; ++rep) {
      auto out = s->Run(in);
      ASSERT_TRUE(out.ok()) << out.status();
      if (first.empty()) first = *out;
      EXPECT_TRUE(SameBits(first, *out)) << threads << " threads, run " << rep;
    }
  }
}

// Counts live blocks and fails the fail_at-th allocation (0-based) when set.
class FailingAllocator final : public Allocator {
 public:
  void* Allocate(size_t bytes) override {
    std::lock_guard<std::mutex> lock(mu_);
    if (calls_++ == fail_at_) return nullptr;
    void* p = std::aligned_alloc(64, (std::max<size_t>(bytes, 1) + 63) / 64 * 64);
    live_.emplace(p, bytes);
    return p;
  }
  void Free(void* p) override {
    std::lock_guard<std::mutex> lock(mu_);
    ASSERT_EQ(live_.erase(p), 1u) << "freed a block it did not allocate";
    std::free(p);
  }
  void FailAt(int64_t i) {
    std::lock_guard<std::mutex> lock(mu_);
    fail_at_ = i;
    calls_ = 0;
  }
  int64_t calls() {
    std::lock_guard<std::mutex> lock(mu_);
    return calls_;
  }
  size_t live() {
    std::lock_guard<std::mutex> lock(mu_);
    return live_.size();
  }

 private:
  std::mutex mu_;
  int64_t fail_at_ = -1, calls_ = 0;
  std::map<void*, size_t> live_;
};

TEST(Concurrency, EveryFailedAllocationIsResourceExhaustedAndLeaksNothing) {
  const TensorMap in = Inputs(2, 3);
  auto counter = std::make_shared<FailingAllocator>();
  SessionOptions opt;
  opt.allocator = counter;
  TensorMap expected;
  {
    auto s = Session::LoadFromBytes(MixedModel(), opt);
    ASSERT_TRUE(s.ok()) << s.status();
    auto out = s->Run(in);
    ASSERT_TRUE(out.ok()) << out.status();
    expected = *out;
  }
  const int64_t allocations = counter->calls();
  ASSERT_GE(allocations, 3);  // the arena and two outputs
  expected.clear();           // outputs hold their blocks until released
  EXPECT_EQ(counter->live(), 0u);
  auto s0 = Session::LoadFromBytes(MixedModel());
  ASSERT_TRUE(s0.ok());
  const TensorMap reference = *s0->Run(in);
  for (int64_t i = 0; i < allocations; ++i) {
    auto alloc = std::make_shared<FailingAllocator>();
    opt.allocator = alloc;
    {
      auto s = Session::LoadFromBytes(MixedModel(), opt);
      ASSERT_TRUE(s.ok()) << s.status();
      alloc->FailAt(i);
      auto failed = s->Run(in);
      EXPECT_EQ(failed.status().code(), absl::StatusCode::kResourceExhausted) << "allocation " << i;
      EXPECT_NE(failed.status().message().find("allocating"), std::string::npos) << failed.status();
      alloc->FailAt(-1);
      auto again = s->Run(in);
      ASSERT_TRUE(again.ok()) << "after failing allocation " << i << ": " << again.status();
      EXPECT_TRUE(SameBits(*again, reference)) << "after failing allocation " << i;
    }
    EXPECT_EQ(alloc->live(), 0u) << "blocks leaked after failing allocation " << i;
  }
}

}  // namespace
}  // namespace kvant
