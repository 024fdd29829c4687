// Range observers (see the header): exact and moving-average min/max, and a
// fixed-size histogram that percentile, entropy and MSE read.
#include "quantize/observer.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include "absl/strings/str_format.h"

namespace kvant::quantize {

absl::StatusOr<RangeMethod> ParseRangeMethod(const std::string& name) {
  for (RangeMethod m : {RangeMethod::kMinMax, RangeMethod::kMovingAverage, RangeMethod::kPercentile,
                        RangeMethod::kEntropy, RangeMethod::kMse}) {
    if (name == RangeMethodName(m)) return m;
  }
  return absl::InvalidArgumentError(absl::StrFormat(
      "failed to parse the calibration method: must be minmax, moving-average, percentile, entropy or mse, got '%s'",
      name));
}

const char* RangeMethodName(RangeMethod m) {
  switch (m) {
    case RangeMethod::kMinMax: return "minmax";
    case RangeMethod::kMovingAverage: return "moving-average";
    case RangeMethod::kPercentile: return "percentile";
    case RangeMethod::kEntropy: return "entropy";
    case RangeMethod::kMse: return "mse";
  }
  return "?";
}

void RangeObserver::Observe(const float* x, int64_t n) {
  if (n <= 0) return;
  float lo = x[0], hi = x[0];
  for (int64_t i = 1; i < n; ++i) {
    lo = std::min(lo, x[i]);
    hi = std::max(hi, x[i]);
  }
  if (count_ == 0) {
    min_ = lo;
    max_ = hi;
    avg_min_ = lo;
    avg_max_ = hi;
  } else {
    min_ = std::min(min_, lo);
    max_ = std::max(max_, hi);
    avg_min_ += 0.01 * (lo - avg_min_);
    avg_max_ += 0.01 * (hi - avg_max_);
  }
  count_ += n;
  Grow(std::max(std::fabs(lo), std::fabs(hi)));
  const double per_bin = kBins / (2 * radius_);
  for (int64_t i = 0; i < n; ++i) {
    const int64_t b = static_cast<int64_t>((x[i] + radius_) * per_bin);
    hist_[std::clamp<int64_t>(b, 0, kBins - 1)] += 1;
    zeros_ += x[i] == 0.f;
  }
}

// Doubles the radius until it covers `absmax`: each doubling maps the old
// bins pairwise onto the middle half of the new ones (edges stay aligned).
void RangeObserver::Grow(float absmax) {
  if (hist_.empty()) {
    hist_.assign(kBins, 0);
    radius_ = std::max<double>(absmax, std::numeric_limits<float>::min());
    return;
  }
  while (absmax > radius_) {
    std::vector<double> merged(kBins, 0);
    for (int i = 0; i < kBins; ++i) merged[kBins / 4 + i / 2] += hist_[i];
    hist_.swap(merged);
    radius_ *= 2;
  }
}

Range RangeObserver::Choose(RangeMethod method, double percentile, int levels, bool symmetric) const {
  if (count_ == 0) return {};
  Range r;
  switch (method) {
    case RangeMethod::kMinMax: r = {min_, max_}; break;
    case RangeMethod::kMovingAverage: r = {static_cast<float>(avg_min_), static_cast<float>(avg_max_)}; break;
    case RangeMethod::kPercentile: {
      r = symmetric ? Percentile(percentile) : PercentileTwoSided(percentile);
      break;
    }
    case RangeMethod::kEntropy: r = Entropy(levels); break;
    case RangeMethod::kMse: r = Mse(levels, symmetric); break;
  }
  // Never wider than what was seen.
  r.lo = std::max(r.lo, min_);
  r.hi = std::min(r.hi, max_);
  if (r.lo > r.hi) r = {min_, max_};
  return r;
}

// The |x| below which p percent of the values lie, as [-T, T] (cut to what
// was seen): the percentile calibration of TensorRT and ONNX Runtime. A
// two-sided cut would clip a one-signed tail twice as hard.
Range RangeObserver::Percentile(double p) const {
  const int half = kBins / 2;
  const double keep = std::clamp(p / 100.0, 0.0, 1.0) * static_cast<double>(count_);
  const double width = radius_ / half;
  double seen = 0;
  for (int i = 0; i < half; ++i) {
    seen += hist_[half + i] + hist_[half - 1 - i];
    if (seen >= keep) {
      const float t = static_cast<float>((i + 1) * width);
      return {-t, t};
    }
  }
  return {min_, max_};
}

// [lo, hi] cutting (100 - p) / 2 percent of the values off each end:
// ONNX Runtime's percentile for asymmetric activations. Until 1c19e2e Kvant
// took the union of this range and the |x| one, so that a rare positive tail
// under a long negative one survived; on the held-out sets of
// models/zoo/quant_sets.py (benchmarks/models/quant_accuracy.py, logits
// SQNR) the two-sided cut alone is better: PP-OCR's classifier 16.35 ->
// 20.82 dB, detector 12.87 -> 15.59, recogniser 17.07 -> 18.11,
// EfficientNet-Lite0 17.71 -> 17.59 (output), digits and MiniLM unchanged.
Range RangeObserver::PercentileTwoSided(double p) const {
  const double tail = (1.0 - std::clamp(p / 100.0, 0.0, 1.0)) / 2 * static_cast<double>(count_);
  const double width = 2 * radius_ / kBins;
  Range r{min_, max_};
  double seen = 0;
  for (int i = 0; i < kBins; ++i) {
    seen += hist_[i];
    if (seen > tail) {
      r.lo = static_cast<float>(-radius_ + i * width);
      break;
    }
  }
  seen = 0;
  for (int i = kBins - 1; i >= 0; --i) {
    seen += hist_[i];
    if (seen > tail) {
      r.hi = static_cast<float>(-radius_ + (i + 1) * width);
      break;
    }
  }
  return r;
}

// TensorRT's entropy calibration on |x|: for each candidate threshold (a bin
// edge), the distribution below it (with the clipped tail added to its last
// bin) against the same bins merged into `quant_bins` levels and spread back
// over their non-empty bins; the threshold of least KL divergence wins.
// Exact zeros are left out, and the threshold never cuts off more than one
// value in 10^4 (see below).
Range RangeObserver::Entropy(int levels) const {
  const int half = kBins / 2;
  std::vector<double> abs_hist(half, 0);
  for (int i = 0; i < kBins; ++i) abs_hist[i < half ? half - 1 - i : i - half] += hist_[i];
  // Exact zeros (half of a ReLU's outputs) quantize without error whatever
  // the threshold; left in, their spike in the first bin biases KL towards
  // narrow ranges.
  abs_hist[0] = std::max(0.0, abs_hist[0] - static_cast<double>(zeros_));
  int used = half;
  while (used > 1 && abs_hist[used - 1] == 0) --used;
  const int quant_bins = std::max(2, (levels + 1) / 2);
  const double width = radius_ / half;
  if (used <= quant_bins) return {min_, max_};
  double best_kl = std::numeric_limits<double>::infinity();
  int best = used;
  std::vector<double> p, q;
  for (int t = quant_bins; t <= used; ++t) {
    p.assign(abs_hist.begin(), abs_hist.begin() + t);
    for (int i = t; i < used; ++i) p[t - 1] += abs_hist[i];
    q.assign(t, 0);
    for (int j = 0; j < quant_bins; ++j) {
      const int b0 = j * t / quant_bins, b1 = (j + 1) * t / quant_bins;
      double sum = 0;
      int nonzero = 0;
      for (int i = b0; i < b1; ++i) {
        sum += abs_hist[i];
        nonzero += abs_hist[i] != 0;
      }
      for (int i = b0; i < b1; ++i) q[i] = abs_hist[i] != 0 ? sum / nonzero : 0;
    }
    double p_sum = 0, q_sum = 0;
    for (int i = 0; i < t; ++i) {
      p_sum += p[i];
      q_sum += q[i];
    }
    if (p_sum == 0 || q_sum == 0) continue;
    double kl = 0;
    for (int i = 0; i < t; ++i) {
      if (p[i] == 0) continue;
      const double pi = p[i] / p_sum, qi = std::max(q[i] / q_sum, 1e-12);
      kl += pi * std::log(pi / qi);
    }
    if (kl < best_kl) {
      best_kl = kl;
      best = t;
    }
  }
  // Never cut off more than 1 in 10^4 values: on models whose channels have
  // very different ranges (depthwise convolutions, squeeze-excite), the KL
  // optimum clips whole channels and the output is lost.
  const double keep = static_cast<double>(count_ - zeros_) * (1.0 - 1e-4);
  double seen = 0;
  int floor_bins = used;
  for (int i = 0; i < used; ++i) {
    seen += abs_hist[i];
    if (seen >= keep) {
      floor_bins = i + 1;
      break;
    }
  }
  const float threshold = static_cast<float>(std::max(best, floor_bins) * width);
  return {-threshold, threshold};
}

// Shrinks [min, max] (or [-absmax, absmax]) by factors 1.0 down to 0.05 and
// keeps the one whose quantize-dequantize round trip of the histogram's bin
// centres has the least squared error.
Range RangeObserver::Mse(int levels, bool symmetric) const {
  const double absmax = std::max(std::fabs(min_), std::fabs(max_));
  const double lo0 = symmetric ? -absmax : std::min(0.0, double{min_});
  const double hi0 = symmetric ? absmax : std::max(0.0, double{max_});
  Range best{min_, max_};
  double best_err = std::numeric_limits<double>::infinity();
  for (int step = 0; step < 96; ++step) {
    const double f = 1.0 - step * 0.01;
    const double lo = lo0 * f, hi = hi0 * f;
    if (hi - lo <= 0) break;
    const double scale = (hi - lo) / levels;
    const double zero = std::nearbyint(-lo / scale);
    double err = 0;
    for (int i = 0; i < kBins; ++i) {
      if (hist_[i] == 0) continue;
      const double v = BinCenter(i);
      const double q = std::clamp(std::nearbyint(v / scale) + zero, 0.0, double(levels));
      const double d = v - (q - zero) * scale;
      err += hist_[i] * d * d;
    }
    if (err < best_err) {
      best_err = err;
      best = {static_cast<float>(lo), static_cast<float>(hi)};
    }
  }
  return best;
}

}  // namespace kvant::quantize
