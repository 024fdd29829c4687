// The adaptive, interleaved timing loop of `kvant bench`. Every row is
// timed in short rounds, one row after another, so slow drifts of a shared
// machine (other tenants, frequency) fall on all rows alike; a row stops
// when its median is settled (95% interval within --ci of it, at least
// --min-runs runs) or when its time budget is spent.
//
// 1. Warm up each row for about a tenth of a second (at least two runs).
// 2. Round robin: each unsettled row runs about `round_s` worth of calls.
// 3. After each round, check each row's stopping rule.
#ifndef KVANT_TOOLS_BENCH_TIMING_H_
#define KVANT_TOOLS_BENCH_TIMING_H_

#include <functional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "quantize/calibrate.h"

namespace kvant::tools::bench {

// Runs the model `k` times and returns each run's milliseconds.
using TimedRuns = std::function<absl::StatusOr<std::vector<double>>(int k)>;

struct TimingPolicy {
  double budget_s = 3;       // per row
  double rel_ci = 0.01;      // median settled within this fraction
  int min_runs = 10;
  double round_s = 0.05;     // time per row per round
  double warmup_s = 0.1;
};

// `first_ms`: one run's time per row (from loading), to size the rounds.
// Returns each row's samples, in order.
absl::StatusOr<std::vector<std::vector<double>>> TimeInterleaved(const std::vector<TimedRuns>& rows,
                                                                 const std::vector<double>& first_ms,
                                                                 const TimingPolicy& policy,
                                                                 const quantize::ProgressFn& progress);

}  // namespace kvant::tools::bench

#endif  // KVANT_TOOLS_BENCH_TIMING_H_
