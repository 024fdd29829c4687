// Greedy mixed precision on measured sensitivity (see the header).
#include "quantize/mixed_precision.h"

#include <algorithm>

#include "quantize/compare.h"
#include "quantize/qdq.h"

namespace kvant::quantize {

absl::StatusOr<OnnxModel> QuantizeWithBudget(const OnnxModel& fp32, const QuantizeOptions& options, double budget_db,
                                             const std::vector<CalibrationBatch>& data, const ProgressFn& progress,
                                             QuantizeReport* report, BudgetReport* budget) {
  budget->budget_db = budget_db;
  OnnxModel prepared = fp32;
  if (auto s = Prepare(prepared, options, &report->prepare); !s.ok()) return s;
  auto calibration = CalibrateFor(prepared, options, data, progress);
  if (!calibration.ok()) return calibration.status();
  auto reference = RunAll(fp32, data, options.num_threads);
  if (!reference.ok()) return reference.status();
  // Quantizes with `exclude` and measures the output SQNR.
  auto measure = [&](const absl::flat_hash_set<std::string>& exclude) -> absl::StatusOr<double> {
    QuantizeOptions o = options;
    o.exclude = exclude;
    QuantizeReport r;
    auto q = Convert(prepared, o, &*calibration, &r);
    if (!q.ok()) return q.status();
    auto db = OutputSqnr(*reference, *q, data, options.num_threads);
    if (!db.ok()) return db.status();
    ++budget->evaluations;
    return *db;
  };
  auto all = measure(options.exclude);
  if (!all.ok()) return all.status();
  budget->all_int8_db = budget->final_db = *all;
  if (budget->final_db >= budget_db) {
    budget->met = true;
    return Convert(prepared, options, &*calibration, report);
  }
  // 2. Sensitivity of each quantized compute node.
  const QdqPlan plan = PlanQdq(prepared, options.exclude);
  struct Candidate {
    BudgetReport::Kept kept;
    double priority = 0;
  };
  std::vector<Candidate> candidates;
  std::vector<int> nodes;  // every INT8 node, in graph order
  for (int i = 0; i < prepared.graph().node_size(); ++i)
    if (plan.quantized_nodes.contains(prepared.graph().node(i).name())) nodes.push_back(i);
  for (size_t i = 0; i < nodes.size(); ++i) {
    const onnx::NodeProto& n = prepared.graph().node(nodes[i]);
    absl::flat_hash_set<std::string> exclude = options.exclude;
    exclude.insert(n.name());
    auto r = measure(exclude);
    if (progress) progress("sensitivity", static_cast<int64_t>(i + 1), static_cast<int64_t>(nodes.size()));
    if (!r.ok()) continue;
    int64_t weights = 1;  // a node without weights costs its float arithmetic only: count it as one
    if (const auto* w = n.input_size() > 1 ? prepared.FindInitializer(n.input(1)) : nullptr) {
      for (int64_t d : w->dims()) weights *= d;
    }
    Candidate c{{n.name(), n.op_type(), *r - budget->all_int8_db, 3 * weights}, 0};
    c.priority = c.kept.gain_db / static_cast<double>(c.kept.extra_bytes);
    if (c.kept.gain_db > 0) candidates.push_back(std::move(c));
  }
  std::stable_sort(candidates.begin(), candidates.end(),
                   [](const Candidate& a, const Candidate& b) { return a.priority > b.priority; });
  // 3. Greedy, measured at every step; a layer that does not help with the
  //    others already in float goes back to INT8.
  absl::flat_hash_set<std::string> exclude = options.exclude;
  for (size_t i = 0; i < candidates.size() && budget->final_db < budget_db; ++i) {
    exclude.insert(candidates[i].kept.node);
    auto r = measure(exclude);
    if (progress) progress("mixing", static_cast<int64_t>(i + 1), static_cast<int64_t>(candidates.size()));
    if (!r.ok()) return r.status();
    if (*r <= budget->final_db) {
      exclude.erase(candidates[i].kept.node);
      continue;
    }
    budget->kept_float.push_back(candidates[i].kept);
    budget->final_db = *r;
  }
  budget->met = budget->final_db >= budget_db;
  QuantizeOptions o = options;
  o.exclude = exclude;
  return Convert(prepared, o, &*calibration, report);
}

}  // namespace kvant::quantize
