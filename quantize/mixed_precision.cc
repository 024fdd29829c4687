// Greedy mixed precision on measured sensitivity (see the header).
#include "quantize/mixed_precision.h"

#include <algorithm>
#include <cmath>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_format.h"
#include "ops/float16.h"
#include "quantize/branches.h"
#include "quantize/compare.h"
#include "quantize/qdq.h"

namespace kvant::quantize {
namespace {

// Top-1 accuracy (%) of the first output of `outputs` (argmax over the last
// axis, one row per sample) against `labels`.
absl::StatusOr<double> Top1(const OnnxModel& model, const Outputs& outputs, const Tensor& labels) {
  const std::string& name = model.graph().output(0).name();
  int64_t row = 0, right = 0;
  for (const TensorMap& out : outputs) {
    const Tensor& y = out.at(name);
    if (y.dtype() != DataType::kFloat32 || y.rank() < 1) {
      return absl::InvalidArgumentError(absl::StrFormat("failed to score top-1: output '%s' must be f32 scores", name));
    }
    const int64_t classes = y.shape().back(), rows = y.num_elements() / std::max<int64_t>(classes, 1);
    for (int64_t r = 0; r < rows; ++r, ++row) {
      if (row >= labels.num_elements()) {
        return absl::InvalidArgumentError(absl::StrFormat(
            "failed to score top-1: the labels have %d entries, the data has more rows", labels.num_elements()));
      }
      const float* p = y.data<float>() + r * classes;
      const int64_t best = std::max_element(p, p + classes) - p;
      const int64_t want = labels.dtype() == DataType::kInt64 ? labels.data<int64_t>()[row] : labels.data<int32_t>()[row];
      right += best == want;
    }
  }
  return row == 0 ? 0.0 : 100.0 * static_cast<double>(right) / static_cast<double>(row);
}

// Stores the float weights (input 1) of the nodes named in `fp16` as FP16
// initializers read through Cast(to FLOAT). A node whose weights do not fit
// FP16's range (|w| > 65504) keeps them, and so does one whose weights are
// not a float initializer.
void StoreWeightsFp16(OnnxModel& m, const absl::flat_hash_set<std::string>& fp16) {
  auto& g = m.graph();
  google::protobuf::RepeatedPtrField<onnx::NodeProto> casts;
  std::vector<std::string> replaced;
  for (auto& n : *g.mutable_node()) {
    if (!fp16.contains(n.name()) || n.input_size() < 2) continue;
    auto w = m.InitializerTensor(n.input(1));
    if (!w.ok() || w->dtype() != DataType::kFloat32) continue;
    bool fits = true;
    for (int64_t i = 0; i < w->num_elements() && fits; ++i) fits = std::fabs(w->data<float>()[i]) <= 65504.f;
    if (!fits) continue;
    Tensor h = Tensor::Zeros(DataType::kFloat16, w->shape());
    for (int64_t i = 0; i < w->num_elements(); ++i) h.data<uint16_t>()[i] = FloatToHalf(w->data<float>()[i]);
    const std::string name = n.input(1), hn = m.FreshName(name + "_fp16"), wide = m.FreshName(name + "_widened");
    m.SetInitializer(hn, h);
    onnx::NodeProto cast = MakeNode("Cast", {hn}, {wide}, m.FreshName(name + "_Cast"));
    SetAttrInt(cast, "to", onnx::TensorProto::FLOAT);
    *casts.Add() = std::move(cast);
    n.set_input(1, wide);
    replaced.push_back(name);
  }
  for (auto& n : *g.mutable_node()) *casts.Add() = std::move(n);
  g.mutable_node()->Swap(&casts);
  m.Reindex();
  for (const auto& name : replaced)
    if (m.Consumers(name).empty() && !m.IsGraphOutput(name)) m.RemoveInitializer(name);
}

}  // namespace

absl::StatusOr<AccuracyBudget> ParseAccuracyBudget(const std::string& spec) {
  AccuracyBudget b;
  std::string number = spec;
  if (absl::StartsWith(spec, "top1:")) {
    b.kind = AccuracyBudget::Kind::kTop1Drop;
    number = spec.substr(5);
  } else if (absl::EndsWithIgnoreCase(spec, "db")) {
    number = spec.substr(0, spec.size() - 2);
  }
  if (!absl::SimpleAtod(number, &b.value) || b.value < 0) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "failed to parse --accuracy-budget: must be an output SQNR in dB (\"30\") or a top-1 drop in points "
        "(\"top1:0.5\"), got '%s'", spec));
  }
  return b;
}

absl::StatusOr<OnnxModel> QuantizeWithBudget(const OnnxModel& fp32, const QuantizeOptions& options,
                                             const AccuracyBudget& spec, const std::vector<CalibrationBatch>& data,
                                             const ProgressFn& progress, QuantizeReport* report, BudgetReport* budget) {
  const bool top1 = spec.kind == AccuracyBudget::Kind::kTop1Drop;
  if (top1 && (spec.labels.dtype() != DataType::kInt64 && spec.labels.dtype() != DataType::kInt32)) {
    return absl::InvalidArgumentError("failed to quantize with a top-1 budget: the labels must be s64 or s32 classes");
  }
  budget->unit = top1 ? "% top-1" : "dB";
  OnnxModel prepared = fp32;
  if (auto s = Prepare(prepared, options, &report->prepare); !s.ok()) return s;
  auto calibration = CalibrateFor(prepared, options, data, progress);
  if (!calibration.ok()) return calibration.status();
  auto reference = RunAll(fp32, data, options.num_threads);
  if (!reference.ok()) return reference.status();
  if (top1) {
    auto acc = Top1(fp32, *reference, spec.labels);
    if (!acc.ok()) return acc.status();
    budget->fp32 = *acc;
    budget->target = *acc - spec.value;
  } else {
    budget->target = spec.value;
  }
  const double target = budget->target;
  // Quantizes with `exclude` (the float nodes in `fp16` with FP16 weights)
  // and scores it.
  const absl::flat_hash_set<std::string> no_fp16;
  auto convert = [&](const absl::flat_hash_set<std::string>& exclude, const absl::flat_hash_set<std::string>& fp16,
                     QuantizeReport* r) -> absl::StatusOr<OnnxModel> {
    QuantizeOptions o = options;
    o.exclude = exclude;
    auto q = Convert(prepared, o, &*calibration, r);
    if (!q.ok() || fp16.empty()) return q;
    StoreWeightsFp16(*q, fp16);
    auto s = ForEachBranch(*q, [&](OnnxModel& branch) {
      StoreWeightsFp16(branch, fp16);
      return absl::OkStatus();
    });
    if (!s.ok()) return s;
    return q;
  };
  auto measure = [&](const absl::flat_hash_set<std::string>& exclude,
                     const absl::flat_hash_set<std::string>& fp16) -> absl::StatusOr<double> {
    QuantizeReport r;
    auto q = convert(exclude, fp16, &r);
    if (!q.ok()) return q.status();
    ++budget->evaluations;
    if (top1) {
      auto out = RunAll(*q, data, options.num_threads);
      if (!out.ok()) return out.status();
      return Top1(*q, *out, spec.labels);
    }
    return OutputSqnr(*reference, *q, data, options.num_threads);
  };
  auto all = measure(options.exclude, no_fp16);
  if (!all.ok()) return all.status();
  budget->all_int8 = budget->final_score = *all;
  if (budget->final_score >= target) {
    budget->met = true;
    return Convert(prepared, options, &*calibration, report);
  }
  // 2. Sensitivity of each quantized node (those inside If branches too).
  struct Candidate {
    BudgetReport::Kept kept;
    double priority = 0;
  };
  std::vector<Candidate> candidates;
  std::vector<BudgetReport::Kept> nodes;  // every INT8 node, in graph order, each branch after the last
  auto add_nodes = [&](const OnnxModel& m) {
    const QdqPlan plan = PlanQdq(m, options.exclude);
    for (const auto& n : m.graph().node()) {
      if (!plan.quantized_nodes.contains(n.name())) continue;
      int64_t weights = 1;  // a node without weights costs its float arithmetic only: count it as one
      if (const auto* w = n.input_size() > 1 ? m.FindInitializer(n.input(1)) : nullptr) {
        for (int64_t d : w->dims()) weights *= d;
      }
      nodes.push_back({n.name(), n.op_type(), 0, 3 * weights});
    }
    return absl::OkStatus();
  };
  if (auto s = add_nodes(prepared); !s.ok()) return s;
  if (auto s = VisitBranches(prepared, add_nodes); !s.ok()) return s;
  for (size_t i = 0; i < nodes.size(); ++i) {
    absl::flat_hash_set<std::string> exclude = options.exclude;
    exclude.insert(nodes[i].node);
    auto r = measure(exclude, no_fp16);
    if (progress) progress("sensitivity", static_cast<int64_t>(i + 1), static_cast<int64_t>(nodes.size()));
    if (!r.ok()) continue;
    Candidate c{nodes[i], 0};
    c.kept.gain = *r - budget->all_int8;
    c.priority = c.kept.gain / static_cast<double>(c.kept.extra_bytes);
    if (c.kept.gain > 0) candidates.push_back(std::move(c));
  }
  std::stable_sort(candidates.begin(), candidates.end(),
                   [](const Candidate& a, const Candidate& b) { return a.priority > b.priority; });
  // 3. Greedy, measured at every step; a layer that does not help with the
  //    others already in float goes back to INT8.
  absl::flat_hash_set<std::string> exclude = options.exclude;
  for (size_t i = 0; i < candidates.size() && budget->final_score < target; ++i) {
    exclude.insert(candidates[i].kept.node);
    auto r = measure(exclude, no_fp16);
    if (progress) progress("mixing", static_cast<int64_t>(i + 1), static_cast<int64_t>(candidates.size()));
    if (!r.ok()) return r.status();
    if (*r <= budget->final_score) {
      exclude.erase(candidates[i].kept.node);
      continue;
    }
    budget->kept_float.push_back(candidates[i].kept);
    budget->final_score = *r;
  }
  budget->met = budget->final_score >= target;
  // 4. FP16 weights for the float nodes, largest first, while the budget holds.
  absl::flat_hash_set<std::string> fp16;
  if (budget->met) {
    std::vector<BudgetReport::Kept*> order;
    for (auto& k : budget->kept_float)
      if (k.extra_bytes > 3) order.push_back(&k);  // nodes with weights
    std::stable_sort(order.begin(), order.end(),
                     [](const BudgetReport::Kept* a, const BudgetReport::Kept* b) { return a->extra_bytes > b->extra_bytes; });
    for (size_t i = 0; i < order.size(); ++i) {
      fp16.insert(order[i]->node);
      auto r = measure(exclude, fp16);
      if (progress) progress("fp16", static_cast<int64_t>(i + 1), static_cast<int64_t>(order.size()));
      if (!r.ok()) return r.status();
      if (*r < target) {
        fp16.erase(order[i]->node);
        continue;
      }
      order[i]->fp16 = true;
      order[i]->extra_bytes /= 3;
      budget->final_score = *r;
    }
  }
  return convert(exclude, fp16, report);
}

}  // namespace kvant::quantize
