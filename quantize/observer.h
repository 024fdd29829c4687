// Calibration observers: what an activation's values were over the
// calibration data, and the range [lo, hi] each method chooses from it.
//
// One RangeObserver per tensor keeps the exact min and max, a moving average
// of each batch's min and max, and a histogram of 4096 bins over [-R, R] whose
// R doubles (merging bin pairs) when a value falls outside: memory is fixed
// (32 KB) whatever the number of samples. The methods:
//   kMinMax         the exact min and max;
//   kMovingAverage  min and max averaged over batches (PyTorch's
//                   MovingAverageMinMaxObserver, constant 0.01);
//   kPercentile     symmetric: [-T, T] with T the `percentile` quantile
//                   of |x| (TensorRT); asymmetric: the (100 - percentile)
//                   / 2 and (100 + percentile) / 2 quantiles of x (ONNX
//                   Runtime's cut);
//   kEntropy        the |x| threshold whose 128-level quantized distribution
//                   is closest in KL divergence to the observed one
//                   (TensorRT's entropy calibrator, exact zeros left out),
//                   never cutting off more than 1 value in 10^4;
//   kMse            the clipping range with the least expected squared
//                   quantization error over the histogram.
#ifndef KVANT_QUANTIZE_OBSERVER_H_
#define KVANT_QUANTIZE_OBSERVER_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace kvant::quantize {

enum class RangeMethod { kMinMax, kMovingAverage, kPercentile, kEntropy, kMse };

absl::StatusOr<RangeMethod> ParseRangeMethod(const std::string& name);
const char* RangeMethodName(RangeMethod m);

struct Range {
  float lo = 0, hi = 0;
};

class RangeObserver {
 public:
  static constexpr int kBins = 4096;

  // Adds one batch of finite values (the caller rejects NaN and Inf).
  void Observe(const float* x, int64_t n);

  bool empty() const { return count_ == 0; }
  int64_t count() const { return count_; }
  // The range `method` chooses; `levels` is the number of quantization steps
  // (255 for 8 bits), `symmetric` asks for a range symmetric about 0 (MSE).
  Range Choose(RangeMethod method, double percentile = 99.99, int levels = 255, bool symmetric = false) const;

  Range minmax() const { return {min_, max_}; }

 private:
  void Grow(float absmax);
  double BinCenter(int i) const { return -radius_ + (i + 0.5) * 2.0 * radius_ / kBins; }
  Range Percentile(double p) const;
  Range PercentileTwoSided(double p) const;
  Range Entropy(int levels) const;
  Range Mse(int levels, bool symmetric) const;

  int64_t count_ = 0, zeros_ = 0;
  float min_ = 0, max_ = 0;
  double avg_min_ = 0, avg_max_ = 0;
  double radius_ = 0;  // the histogram covers [-radius_, radius_]
  std::vector<double> hist_;
};

}  // namespace kvant::quantize

#endif  // KVANT_QUANTIZE_OBSERVER_H_
