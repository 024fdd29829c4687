// tools/bench/stats: quantiles, the median stopping rule, and output
// agreement against numbers worked out by hand.
#include "tools/bench/stats.h"

#include <cmath>
#include <random>

#include "gtest/gtest.h"

namespace kvant::tools::bench {
namespace {

Tensor F32(std::vector<int64_t> shape, const std::vector<float>& v) {
  return Tensor::FromVector(DataType::kFloat32, std::move(shape), v);
}

TEST(BenchStats, QuantilesInterpolateBetweenRanks) {
  const std::vector<double> sorted = {1, 2, 3, 4, 5};
  EXPECT_DOUBLE_EQ(Quantile(sorted, 0.5), 3);
  EXPECT_DOUBLE_EQ(Quantile(sorted, 0.9), 4.6);
  EXPECT_DOUBLE_EQ(Quantile(sorted, 0), 1);
  EXPECT_DOUBLE_EQ(Quantile(sorted, 1), 5);
  const LatencyStats s = Summarize({5, 1, 4, 2, 3});
  EXPECT_EQ(s.runs, 5);
  EXPECT_DOUBLE_EQ(s.p50_ms, 3);
  EXPECT_DOUBLE_EQ(s.min_ms, 1);
  EXPECT_DOUBLE_EQ(s.mean_ms, 3);
  EXPECT_LE(s.p90_ms, s.p99_ms);
}

TEST(BenchStats, MedianSettlesOnlyWhenTheSampleIsTight) {
  std::mt19937 rng(7);
  std::normal_distribution<double> tight(10.0, 0.05), wide(10.0, 3.0);
  std::vector<double> a, b;
  for (int i = 0; i < 200; ++i) {
    a.push_back(tight(rng));
    b.push_back(wide(rng));
  }
  EXPECT_TRUE(MedianSettled(a, 0.01));
  EXPECT_FALSE(MedianSettled(b, 0.01));
  EXPECT_FALSE(MedianSettled({10.0}, 0.5));  // one sample tells nothing
}

TEST(BenchStats, SqnrCosineAndTopOneOfKnownOutputs) {
  // ref = [3, 4 | 1, 0], out = [3, 4 | 0, 1]: noise 2, signal 26.
  std::vector<TensorMap> ref = {{{"y", F32({2, 2}, {3, 4, 1, 0})}}};
  std::vector<TensorMap> out = {{{"y", F32({2, 2}, {3, 4, 0, 1})}}};
  auto a = CompareOutputs(ref, out);
  ASSERT_TRUE(a.ok()) << a.status();
  EXPECT_NEAR(a->sqnr_db, 10 * std::log10(26.0 / 2.0), 1e-9);
  EXPECT_NEAR(a->cosine, 25.0 / 26.0, 1e-9);
  EXPECT_DOUBLE_EQ(a->top1_agreement, 0.5);  // row 0 agrees, row 1 does not
  EXPECT_EQ(a->rows, 2);
  EXPECT_EQ(a->elements, 4);
  auto same = CompareOutputs(ref, ref);
  ASSERT_TRUE(same.ok());
  EXPECT_TRUE(std::isinf(same->sqnr_db));
}

TEST(BenchStats, TopOneOnlyForClassScoresAndNonFiniteCounted) {
  std::vector<TensorMap> ref = {{{"h", F32({1, 2, 2}, {1, 2, 3, 4})}}};
  std::vector<TensorMap> out = {{{"h", F32({1, 2, 2}, {1, 2, NAN, 4})}}};
  auto a = CompareOutputs(ref, out);
  ASSERT_TRUE(a.ok());
  EXPECT_LT(a->top1_agreement, 0);  // rank 3: not class scores
  EXPECT_EQ(a->nonfinite, 1);
  EXPECT_TRUE(std::isinf(a->sqnr_db));  // the finite values agree exactly
}

TEST(BenchStats, MismatchedOutputsAreErrorsNamingTheOutput) {
  std::vector<TensorMap> ref = {{{"y", F32({2}, {1, 2})}}};
  auto shape = CompareOutputs(ref, {{{"y", F32({1, 2}, {1, 2})}}});
  ASSERT_FALSE(shape.ok());
  EXPECT_NE(shape.status().message().find("'y'"), std::string::npos) << shape.status();
  auto missing = CompareOutputs(ref, {{{"z", F32({2}, {1, 2})}}});
  ASSERT_FALSE(missing.ok());
  EXPECT_NE(missing.status().message().find("'y' missing"), std::string::npos) << missing.status();
  EXPECT_FALSE(CompareOutputs(ref, {}).ok());
}

}  // namespace
}  // namespace kvant::tools::bench
