// The numbers `kvant bench` reports that are not times of its own making:
// latency order statistics with the stopping rule of the adaptive timing
// loop, and the accuracy of a precision's outputs against FP32's.
#ifndef KVANT_TOOLS_BENCH_STATS_H_
#define KVANT_TOOLS_BENCH_STATS_H_

#include <cstdint>
#include <vector>

#include "absl/status/statusor.h"
#include "kvant/kvant.h"

namespace kvant::tools::bench {

struct LatencyStats {
  int64_t runs = 0;
  double p50_ms = 0, p90_ms = 0, p99_ms = 0, min_ms = 0, mean_ms = 0;
  // Half-width of the median's 95% confidence interval over the median,
  // from order statistics (distribution-free): how settled p50 is.
  double p50_rel_ci = 0;
};

// `q` in [0, 1], linear interpolation between the closest ranks of `sorted`.
double Quantile(const std::vector<double>& sorted, double q);
LatencyStats Summarize(std::vector<double> ms);

// The median of `ms` is known to within `rel` (95% confidence): ranks
// n/2 -+ 0.98 sqrt(n) bound it (binomial, normal approximation).
bool MedianSettled(const std::vector<double>& ms, double rel);

// Agreement of one precision's outputs with FP32's over every f32 output of
// every batch. SQNR: 10 log10(sum ref^2 / sum (ref - out)^2), +inf when
// equal. Top-1 agreement: for outputs of rank 2 ([N, classes], classes >
// 1: classifier scores), the share of rows whose argmax matches (negative
// when no output has that form; an embedding's top-1 means nothing).
struct Accuracy {
  double sqnr_db = 0;
  double cosine = 0;
  double top1_agreement = -1;
  int64_t rows = 0;      // rows that top-1 agreement counted
  int64_t elements = 0;  // f32 output elements compared
  int64_t nonfinite = 0; // NaN or Inf where FP32 is finite (left out of SQNR and cosine)
};

// `reference` and `outputs`: one TensorMap per batch, the same keys. A
// missing output, a dtype or shape that differs is InvalidArgument naming it.
absl::StatusOr<Accuracy> CompareOutputs(const std::vector<TensorMap>& reference, const std::vector<TensorMap>& outputs);

}  // namespace kvant::tools::bench

#endif  // KVANT_TOOLS_BENCH_STATS_H_
