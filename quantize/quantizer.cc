// prepare -> calibrate -> convert (see the header).
#include "quantize/quantizer.h"

#include "absl/strings/str_format.h"
#include "quantize/bias_correction.h"
#include "quantize/branches.h"
#include "quantize/dynamic.h"
#include "quantize/qdq.h"
#include "quantize/qoperator.h"

namespace kvant::quantize {

absl::Status Prepare(OnnxModel& model, const QuantizeOptions& options, PrepareReport* report) {
  if (auto s = RemoveNoOps(model, report); !s.ok()) return s;
  // Bias Adds first: PaddlePaddle writes Conv/ConvTranspose -> Add(bias) -> BatchNormalization.
  if (auto s = FoldConvBiasAdds(model, report); !s.ok()) return s;
  if (auto s = FoldBatchNorms(model, report); !s.ok()) return s;
  if (auto s = FoldConvBiasAdds(model, report); !s.ok()) return s;
  report->opset_before = report->opset_after = model.opset();
  if (!options.dynamic && options.scheme.weights_per_channel) {
    if (auto s = UpgradeToOpset13(model, report); !s.ok()) return s;
  }
  if (options.equalize) {
    if (auto s = EqualizeCrossLayer(model, report); !s.ok()) return s;
  }
  RemoveUnusedInitializers(model);
  return absl::OkStatus();
}

namespace {

// The observed tensors of the full plan (nothing excluded) of `m` and of
// every If branch in it, each once.
absl::StatusOr<std::vector<std::string>> ObservedEverywhere(const OnnxModel& m) {
  std::vector<std::string> tensors = PlanQdq(m, {}).Observed();
  absl::flat_hash_set<std::string> seen(tensors.begin(), tensors.end());
  auto s = VisitBranches(m, [&](const OnnxModel& branch) {
    for (const std::string& t : PlanQdq(branch, {}).Observed())
      if (seen.insert(t).second) tensors.push_back(t);
    return absl::OkStatus();
  });
  if (!s.ok()) return s;
  return tensors;
}

// Static quantization of one graph (the model's, or an If branch's).
// `branch`: a branch whose tensors the calibration data never reached stays
// float and is named in the report.
absl::Status QuantizeGraph(OnnxModel& m, const QuantizeOptions& options, const Calibration* calibration, bool branch,
                           QuantizeReport* report) {
  const QdqPlan plan = PlanQdq(m, options.exclude);
  for (const auto& n : m.graph().node()) {
    const bool compute = n.domain().empty() && (n.op_type() == "Conv" || n.op_type() == "MatMul" || n.op_type() == "Gemm");
    report->float_compute_nodes += compute && !plan.quantized_nodes.contains(n.name());
  }
  if (plan.tensors.empty()) return absl::OkStatus();
  if (calibration == nullptr) {
    return absl::InvalidArgumentError(absl::StrFormat("failed to quantize %s: static quantization needs calibration", m.source()));
  }
  absl::flat_hash_map<std::string, QParams> params;
  for (const std::string& t : plan.Observed()) {
    auto it = calibration->observers.find(t);
    if (it == calibration->observers.end()) {
      return absl::FailedPreconditionError(absl::StrFormat(
          "failed to quantize %s: tensor '%s' was not calibrated (an exclusion made it quantized where the full plan "
          "did not)", m.source(), t));
    }
    if (it->second.empty() && branch) {
      report->float_branches.push_back(m.source());
      report->float_compute_nodes += static_cast<int>(plan.compute_nodes.size());
      return absl::OkStatus();
    }
    if (it->second.empty()) {
      return absl::FailedPreconditionError(absl::StrFormat(
          "failed to quantize %s: tensor '%s' had no values in any calibration batch", m.source(), t));
    }
    const bool symmetric = options.scheme.activations_symmetric;
    // Model outputs keep their whole range: clipping the logits a classifier
    // ranks, or the values a regression returns, is never what a user wants.
    // Inputs too with entropy, whose KL threshold on discrete data (pixels
    // with 17 levels in digits) cut the range by 16x; a percentile cut of
    // the rare extreme pixels helps (EfficientNet +0.6 dB).
    const bool keep = m.IsGraphOutput(t) || (m.IsGraphInput(t) && options.method == RangeMethod::kEntropy);
    const RangeMethod method = keep ? RangeMethod::kMinMax : options.method;
    params[t] = ActivationParams(it->second.Choose(method, options.percentile, 255, symmetric), options.scheme);
  }
  report->observed_tensors += static_cast<int>(params.size());
  for (const auto& n : m.graph().node()) {
    if (plan.quantized_nodes.contains(n.name())) report->quantized_nodes.push_back(n.name());
  }
  if (auto s = ApplyQdq(m, plan, params, options.scheme); !s.ok()) return s;
  if (options.qoperator) {
    auto groups = QdqToQOperator(m);
    if (!groups.ok()) return groups.status();
    report->qoperator_groups += *groups;
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<Calibration> CalibrateFor(const OnnxModel& prepared, const QuantizeOptions& options,
                                         const std::vector<CalibrationBatch>& batches, const ProgressFn& progress) {
  // Every tensor any plan could quantize: the plans with nothing excluded.
  auto tensors = ObservedEverywhere(prepared);
  if (!tensors.ok()) return tensors.status();
  auto observers = Calibrate(prepared, *tensors, batches, progress, options.num_threads);
  if (!observers.ok()) return observers.status();
  return Calibration{*std::move(observers)};
}

absl::StatusOr<OnnxModel> Convert(const OnnxModel& prepared, const QuantizeOptions& options,
                                  const Calibration* calibration, QuantizeReport* report) {
  OnnxModel m = prepared;
  if (options.dynamic) {
    auto n = ApplyDynamic(m, options.scheme.weights_per_channel, options.exclude);
    if (!n.ok()) return n.status();
    report->dynamic_nodes = *n;
    auto s = ForEachBranch(m, [&](OnnxModel& branch) {
      auto k = ApplyDynamic(branch, options.scheme.weights_per_channel, options.exclude);
      if (!k.ok()) return k.status();
      report->dynamic_nodes += *k;
      return absl::OkStatus();
    });
    if (!s.ok()) return s;
    return m;
  }
  if (auto s = QuantizeGraph(m, options, calibration, /*branch=*/false, report); !s.ok()) return s;
  auto s = ForEachBranch(m, [&](OnnxModel& branch) {
    return QuantizeGraph(branch, options, calibration, /*branch=*/true, report);
  });
  if (!s.ok()) return s;
  auto* meta = m.proto().add_metadata_props();
  meta->set_key("kvant.quantization");
  meta->set_value(absl::StrFormat("preset=%s method=%s weights=%s activations=%s%s%s", options.scheme.preset,
                                  RangeMethodName(options.method),
                                  options.scheme.weights_per_channel ? "per-channel" : "per-tensor",
                                  options.scheme.activations_signed ? "s8" : "u8",
                                  options.scheme.activations_symmetric ? "-symmetric" : "",
                                  options.scheme.fixed_point_requantization ? " requantization=fixed-point" : ""));
  return m;
}

absl::StatusOr<OnnxModel> Quantize(OnnxModel model, const QuantizeOptions& options,
                                   const std::vector<CalibrationBatch>& batches, const ProgressFn& progress,
                                   QuantizeReport* report) {
  if (auto s = Prepare(model, options, &report->prepare); !s.ok()) return s;
  if (options.dynamic) return Convert(model, options, nullptr, report);
  auto calibration = CalibrateFor(model, options, batches, progress);
  if (!calibration.ok()) return calibration.status();
  if (options.bias_correction) {
    auto n = CorrectBiases(model, options, *calibration, batches);
    if (!n.ok()) return n.status();
    report->corrected_biases = *n;
  }
  return Convert(model, options, &*calibration, report);
}

}  // namespace kvant::quantize
