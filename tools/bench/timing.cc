// See timing.h for the steps.
#include "tools/bench/timing.h"

#include <algorithm>
#include <cmath>
#include <numeric>

#include "tools/bench/stats.h"

namespace kvant::tools::bench {

absl::StatusOr<std::vector<std::vector<double>>> TimeInterleaved(const std::vector<TimedRuns>& rows,
                                                                 const std::vector<double>& first_ms,
                                                                 const TimingPolicy& policy,
                                                                 const quantize::ProgressFn& progress) {
  const size_t n = rows.size();
  auto calls_for = [](double seconds, double ms) {
    return static_cast<int>(std::clamp(std::ceil(seconds * 1e3 / std::max(ms, 1e-3)), 1.0, 1000.0));
  };
  // 1. Warm-up.
  std::vector<double> estimate(n);
  for (size_t i = 0; i < n; ++i) {
    auto warm = rows[i](std::max(2, calls_for(policy.warmup_s, first_ms[i])));
    if (!warm.ok()) return warm.status();
    std::vector<double> w = *warm;
    std::sort(w.begin(), w.end());
    estimate[i] = w[w.size() / 2];
    if (progress) progress("warming up", static_cast<int64_t>(i + 1), static_cast<int64_t>(n));
  }
  // 2-3. Rounds until every row is settled or out of budget.
  std::vector<std::vector<double>> samples(n);
  std::vector<double> spent_ms(n, 0);
  std::vector<bool> done(n, false);
  size_t settled = 0;
  while (settled < n) {
    for (size_t i = 0; i < n; ++i) {
      if (done[i]) continue;
      auto ms = rows[i](calls_for(policy.round_s, estimate[i]));
      if (!ms.ok()) return ms.status();
      samples[i].insert(samples[i].end(), ms->begin(), ms->end());
      spent_ms[i] += std::accumulate(ms->begin(), ms->end(), 0.0);
      const bool enough = static_cast<int>(samples[i].size()) >= policy.min_runs;
      if ((enough && MedianSettled(samples[i], policy.rel_ci)) ||
          (spent_ms[i] >= policy.budget_s * 1e3 && samples[i].size() >= 3)) {
        done[i] = true;
        ++settled;
        if (progress) progress("measuring", static_cast<int64_t>(settled), static_cast<int64_t>(n));
      }
    }
  }
  return samples;
}

}  // namespace kvant::tools::bench
