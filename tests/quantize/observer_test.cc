// Range observers against what each method means on known distributions:
// exact min/max, a histogram that keeps every count as its range doubles,
// percentiles of a uniform distribution, an entropy threshold that cuts a
// Gaussian's rare outliers but keeps its body, an MSE range inside min/max
// that beats min/max on heavy tails, and the moving average.
#include "quantize/observer.h"

#include <cmath>
#include <random>

#include "gtest/gtest.h"

namespace kvant::quantize {
namespace {

std::vector<float> Gaussian(int64_t n, uint32_t seed, float sigma = 1.f) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> d(0.f, sigma);
  std::vector<float> v(n);
  for (float& x : v) x = d(rng);
  return v;
}

// Mean squared error of quantizing v to 255 levels over [lo, hi].
double QuantError(const std::vector<float>& v, Range r) {
  const double lo = std::min(0.f, r.lo), hi = std::max(0.f, r.hi), scale = (hi - lo) / 255;
  const double zero = std::nearbyint(-lo / scale);
  double err = 0;
  for (float x : v) {
    const double q = std::clamp(std::nearbyint(x / scale) + zero, 0.0, 255.0);
    err += (x - (q - zero) * scale) * (x - (q - zero) * scale);
  }
  return err / v.size();
}

TEST(RangeObserver, MinMaxIsExactAcrossBatchesThatGrowTheRange) {
  RangeObserver o;
  const std::vector<float> a = {0.01f, -0.02f, 0.005f};
  const std::vector<float> b = {3.f, -7.5f, 1.f};
  o.Observe(a.data(), a.size());
  o.Observe(b.data(), b.size());
  const Range r = o.Choose(RangeMethod::kMinMax);
  EXPECT_EQ(r.lo, -7.5f);
  EXPECT_EQ(r.hi, 3.f);
  EXPECT_EQ(o.count(), 6);
}

TEST(RangeObserver, PercentileOfUniformValues) {
  RangeObserver o;
  std::mt19937 rng(3);
  std::uniform_real_distribution<float> d(-2.f, 6.f);
  for (int batch = 0; batch < 10; ++batch) {
    std::vector<float> v(10000);
    for (float& x : v) x = d(rng);
    o.Observe(v.data(), v.size());
  }
  // Symmetric: |x| of uniform [-2, 6] is uniform on [0, 2] at density 2/8
  // and on [2, 6] at 1/8; its 99th percentile is 6 - 0.01 * 8 = 5.92.
  const Range r = o.Choose(RangeMethod::kPercentile, 99.0, 255, /*symmetric=*/true);
  EXPECT_EQ(r.lo, o.minmax().lo) << "the cut never goes past what was seen";
  EXPECT_NEAR(r.hi, 5.92f, 0.02f);
  // Asymmetric: 0.5% off each end (0.04 of the width 8), as ONNX Runtime
  // cuts: [-1.96, 5.96].
  const Range two = o.Choose(RangeMethod::kPercentile, 99.0);
  EXPECT_NEAR(two.lo, -1.96f, 0.02f);
  EXPECT_NEAR(two.hi, 5.96f, 0.02f);
  // A rare positive tail (0.005% of the values) under a long negative one:
  // the two-sided cut clips it, the symmetric |x| cut sits in the negative
  // tail and keeps it.
  RangeObserver skew;
  std::vector<float> v(100000);
  for (size_t i = 0; i < v.size(); ++i) v[i] = -20.f * static_cast<float>(i) / v.size();
  for (int i = 0; i < 5; ++i) v[i * 1000] = 4.f;
  skew.Observe(v.data(), v.size());
  EXPECT_LT(skew.Choose(RangeMethod::kPercentile, 99.99).hi, 0.1f);
  EXPECT_EQ(skew.Choose(RangeMethod::kPercentile, 99.99, 255, /*symmetric=*/true).hi, 4.f);
}

TEST(RangeObserver, EntropyCutsRareOutliersButKeepsTheBody) {
  RangeObserver o;
  std::vector<float> v = Gaussian(200000, 1);
  for (int i = 0; i < 20; ++i) v[i * 997] = 40.f;  // rare outliers
  o.Observe(v.data(), v.size());
  const Range r = o.Choose(RangeMethod::kEntropy);
  EXPECT_GT(r.hi, 2.5f) << "the threshold clips the Gaussian's body";
  EXPECT_LT(r.hi, 12.f) << "the threshold keeps the outliers";
  EXPECT_LT(r.lo, -2.5f);
}

TEST(RangeObserver, EntropyOfReluOutputsIsPositive) {
  RangeObserver o;
  std::vector<float> v = Gaussian(100000, 2);
  for (float& x : v) x = std::max(x, 0.f);
  o.Observe(v.data(), v.size());
  const Range r = o.Choose(RangeMethod::kEntropy);
  EXPECT_EQ(r.lo, 0.f);
  EXPECT_GT(r.hi, 2.f);
  EXPECT_LE(r.hi, o.minmax().hi);
}

TEST(RangeObserver, MseBeatsMinMaxOnHeavyTails) {
  RangeObserver o;
  std::vector<float> v = Gaussian(100000, 4);
  for (int i = 0; i < 30; ++i) v[i * 3001] = (i % 2 ? 1.f : -1.f) * 30.f;
  o.Observe(v.data(), v.size());
  const Range mse = o.Choose(RangeMethod::kMse), mm = o.Choose(RangeMethod::kMinMax);
  EXPECT_LT(mse.hi, mm.hi);
  EXPECT_LT(QuantError(v, mse), QuantError(v, mm));
}

TEST(RangeObserver, MovingAverageFollowsBatchesSlowly) {
  RangeObserver o;
  const std::vector<float> a = {-1.f, 1.f}, b = {-101.f, 101.f};
  o.Observe(a.data(), a.size());
  o.Observe(b.data(), b.size());
  const Range r = o.Choose(RangeMethod::kMovingAverage);
  EXPECT_NEAR(r.hi, 1.f + 0.01f * 100.f, 1e-4);
  EXPECT_NEAR(r.lo, -2.f, 1e-4);
}

}  // namespace
}  // namespace kvant::quantize
