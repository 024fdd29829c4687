// Latency order statistics and output agreement for `kvant bench`.
#include "tools/bench/stats.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>

#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"

namespace kvant::tools::bench {

double Quantile(const std::vector<double>& sorted, double q) {
  if (sorted.empty()) return 0;
  const double pos = q * static_cast<double>(sorted.size() - 1);
  const size_t lo = static_cast<size_t>(std::floor(pos));
  const size_t hi = std::min(lo + 1, sorted.size() - 1);
  return sorted[lo] + (pos - static_cast<double>(lo)) * (sorted[hi] - sorted[lo]);
}

namespace {
// The ranks bounding the median with 95% confidence, clamped to the sample.
std::pair<size_t, size_t> MedianCiRanks(size_t n) {
  const double half = 0.98 * std::sqrt(static_cast<double>(n));
  const double mid = 0.5 * static_cast<double>(n);
  const auto lo = static_cast<int64_t>(std::floor(mid - half));
  const auto hi = static_cast<int64_t>(std::ceil(mid + half));
  return {static_cast<size_t>(std::clamp<int64_t>(lo, 0, n - 1)), static_cast<size_t>(std::clamp<int64_t>(hi, 0, n - 1))};
}

double MedianRelCi(const std::vector<double>& sorted) {
  if (sorted.size() < 2) return std::numeric_limits<double>::infinity();
  const auto [lo, hi] = MedianCiRanks(sorted.size());
  const double median = Quantile(sorted, 0.5);
  return median > 0 ? 0.5 * (sorted[hi] - sorted[lo]) / median : std::numeric_limits<double>::infinity();
}
}  // namespace

LatencyStats Summarize(std::vector<double> ms) {
  LatencyStats s;
  if (ms.empty()) return s;
  std::sort(ms.begin(), ms.end());
  s.runs = static_cast<int64_t>(ms.size());
  s.p50_ms = Quantile(ms, 0.5);
  s.p90_ms = Quantile(ms, 0.9);
  s.p99_ms = Quantile(ms, 0.99);
  s.min_ms = ms.front();
  s.mean_ms = std::accumulate(ms.begin(), ms.end(), 0.0) / static_cast<double>(ms.size());
  s.p50_rel_ci = MedianRelCi(ms);
  return s;
}

bool MedianSettled(const std::vector<double>& ms, double rel) {
  std::vector<double> sorted = ms;
  std::sort(sorted.begin(), sorted.end());
  return MedianRelCi(sorted) <= rel;
}

absl::StatusOr<Accuracy> CompareOutputs(const std::vector<TensorMap>& reference, const std::vector<TensorMap>& outputs) {
  if (reference.size() != outputs.size()) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "failed to compare outputs: %d batch(es) expected, got %d", reference.size(), outputs.size()));
  }
  double signal = 0, noise = 0, dot = 0, ref_sq = 0, out_sq = 0;
  int64_t rows = 0, agree = 0, elements = 0, nonfinite = 0;
  for (size_t b = 0; b < reference.size(); ++b) {
    for (const auto& [name, ref] : reference[b]) {
      if (ref.dtype() != DataType::kFloat32) continue;
      auto it = outputs[b].find(name);
      if (it == outputs[b].end()) {
        return absl::InvalidArgumentError(absl::StrFormat("failed to compare outputs: output '%s' missing", name));
      }
      const Tensor& out = it->second;
      if (out.dtype() != ref.dtype() || out.shape() != ref.shape()) {
        return absl::InvalidArgumentError(absl::StrFormat(
            "failed to compare output '%s': must be f32 [%s], got %s [%s]", name, absl::StrJoin(ref.shape(), ","),
            DataTypeName(out.dtype()), absl::StrJoin(out.shape(), ",")));
      }
      const float* r = ref.data<float>();
      const float* o = out.data<float>();
      const int64_t n = ref.num_elements();
      for (int64_t i = 0; i < n; ++i) {
        if (!std::isfinite(o[i]) && std::isfinite(r[i])) {  // counted, and kept out of the sums
          ++nonfinite;
          continue;
        }
        const double d = static_cast<double>(r[i]) - o[i];
        signal += static_cast<double>(r[i]) * r[i];
        noise += d * d;
        dot += static_cast<double>(r[i]) * o[i];
        out_sq += static_cast<double>(o[i]) * o[i];
      }
      elements += n;
      const int64_t classes = ref.rank() == 2 ? ref.shape().back() : 0;
      if (classes > 1) {
        for (int64_t row = 0; row < n / classes; ++row) {
          const float* rr = r + row * classes;
          const float* orow = o + row * classes;
          agree += std::max_element(rr, rr + classes) - rr == std::max_element(orow, orow + classes) - orow;
          ++rows;
        }
      }
    }
  }
  ref_sq = signal;
  Accuracy a;
  a.elements = elements;
  a.rows = rows;
  a.nonfinite = nonfinite;
  a.sqnr_db = noise == 0 ? std::numeric_limits<double>::infinity()
                         : 10.0 * std::log10(std::max(signal, std::numeric_limits<double>::min()) / noise);
  a.cosine = ref_sq > 0 && out_sq > 0 ? dot / std::sqrt(ref_sq * out_sq) : (ref_sq == out_sq ? 1.0 : 0.0);
  if (rows > 0) a.top1_agreement = static_cast<double>(agree) / static_cast<double>(rows);
  return a;
}

}  // namespace kvant::tools::bench
