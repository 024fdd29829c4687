// `kvant quantize IN.onnx -o OUT.onnx [options]`: the quantizer
// (quantize/quantizer.h) from the command line, calibration data from a
// directory of .npy files, a short report on stdout.
#include <cstdio>
#include <filesystem>

#include "absl/strings/str_format.h"
#include "quantize/mixed_precision.h"
#include "quantize/quantizer.h"
#include "tools/commands.h"
#include "tools/dataset.h"
#include "tools/npy.h"

namespace kvant::tools {
absl::StatusOr<quantize::QuantizeOptions> QuantizeOptionsFrom(const QuantizeArgs& args) {
  quantize::QuantizeOptions o;
  auto scheme = quantize::PresetScheme(args.preset);
  if (!scheme.ok()) return scheme.status();
  o.scheme = *scheme;
  if (args.per_tensor) o.scheme.weights_per_channel = false;
  if (args.symmetric_activations) o.scheme.activations_symmetric = true;
  if (!args.activation_type.empty()) {
    if (args.activation_type != "u8" && args.activation_type != "s8") {
      return absl::InvalidArgumentError(
          absl::StrFormat("failed to parse --activation-type: must be u8 or s8, got '%s'", args.activation_type));
    }
    o.scheme.activations_signed = args.activation_type == "s8";
  }
  auto method = quantize::ParseRangeMethod(args.method);
  if (!method.ok()) return method.status();
  o.method = *method;
  o.percentile = args.percentile;
  o.dynamic = args.dynamic;
  o.equalize = args.equalize;
  o.exclude.insert(args.exclude.begin(), args.exclude.end());
  o.num_threads = args.threads;
  o.qoperator = args.format == "qoperator";
  o.bias_correction = args.bias_correction;
  return o;
}

absl::StatusOr<std::vector<quantize::CalibrationBatch>> LoadCalibration(const std::string& model_path,
                                                                       const std::string& dir, int64_t samples,
                                                                       int64_t batch_rows) {
  auto session = Session::Load(model_path);
  if (!session.ok()) return session.status();
  return LoadDataset(dir, session->inputs(), samples, batch_rows);
}

int QuantizeCommand(const QuantizeArgs& args) {
  auto options = QuantizeOptionsFrom(args);
  if (!options.ok()) return Fail(options.status());
  if (args.format != "qdq" && args.format != "qoperator") {
    return Fail(absl::InvalidArgumentError(
        absl::StrFormat("failed to quantize %s: --format must be qdq or qoperator, got '%s'", args.model, args.format)));
  }
  auto model = quantize::OnnxModel::Load(args.model);
  if (!model.ok()) return Fail(model.status());
  std::vector<quantize::CalibrationBatch> batches;
  if (!options->dynamic) {
    if (args.calib.empty()) {
      return Fail(absl::InvalidArgumentError(absl::StrFormat(
          "failed to quantize %s: static quantization needs --calib DIR (one NAME.npy per input), or use --dynamic",
          args.model)));
    }
    auto loaded = LoadCalibration(args.model, args.calib, args.calib_samples, args.calib_batch);
    if (!loaded.ok()) return Fail(loaded.status());
    batches = *std::move(loaded);
  }
  quantize::QuantizeReport report;
  quantize::BudgetReport budget;
  const bool mixed = !args.accuracy_budget.empty() && !options->dynamic;
  quantize::AccuracyBudget spec;
  if (mixed) {
    auto parsed = quantize::ParseAccuracyBudget(args.accuracy_budget);
    if (!parsed.ok()) return Fail(parsed.status());
    spec = *std::move(parsed);
    if (spec.kind == quantize::AccuracyBudget::Kind::kTop1Drop) {
      if (args.labels.empty()) {
        return Fail(absl::InvalidArgumentError("failed to quantize: a top-1 budget needs --labels LABELS.npy"));
      }
      auto labels = ReadNpy(args.labels);
      if (!labels.ok()) return Fail(labels.status());
      spec.labels = *std::move(labels);
    }
  }
  auto q = mixed ? quantize::QuantizeWithBudget(*model, *options, spec, batches, StderrProgress(), &report, &budget)
                 : quantize::Quantize(*std::move(model), *options, batches, StderrProgress(), &report);
  if (!q.ok()) return Fail(q.status());
  if (auto s = q->Save(args.output); !s.ok()) return Fail(s);
  const auto& p = report.prepare;
  std::printf("prepared: %d no-op(s) removed, %d BatchNormalization and %d bias Add(s) folded, opset %lld -> %lld (%d node(s) rewritten)%s\n",
              p.removed_noops, p.folded_batchnorms, p.folded_bias_adds, static_cast<long long>(p.opset_before),
              static_cast<long long>(p.opset_after), p.upgraded_nodes,
              options->equalize ? absl::StrFormat(", %d pair(s) equalized", p.equalized_pairs).c_str() : "");
  if (options->dynamic) {
    std::printf("dynamic: %d node(s) with s8 weights (activations quantized per call)\n", report.dynamic_nodes);
  } else {
    std::printf("static: %zu node(s) quantized, %d tensor range(s) from %zu batch(es) by %s; %d Conv/MatMul/Gemm "
                "left in float\n", report.quantized_nodes.size(), report.observed_tensors, batches.size(),
                quantize::RangeMethodName(options->method), report.float_compute_nodes);
    for (const std::string& branch : report.float_branches) {
      std::printf("kept in float: %s (the calibration data never takes this branch)\n", branch.c_str());
    }
    if (options->bias_correction) std::printf("bias correction: %d bias(es) corrected\n", report.corrected_biases);
    if (options->qoperator) std::printf("qoperator: %d group(s) written as quantized operators\n", report.qoperator_groups);
  }
  if (mixed) {
    const char* unit = budget.unit.c_str();
    if (spec.kind == quantize::AccuracyBudget::Kind::kTop1Drop) {
      std::printf("accuracy budget: top-1 at least %.2f%% (FP32 %.2f%% - %.2f)\n", budget.target, budget.fp32, spec.value);
    }
    std::printf("accuracy budget %.2f %s: all INT8 %.2f %s, %zu node(s) kept in float -> %.2f %s (%s, %d evaluations)\n",
                budget.target, unit, budget.all_int8, unit, budget.kept_float.size(), budget.final_score, unit,
                budget.met ? "met" : "NOT met: every node that helped is in float", budget.evaluations);
    for (const auto& k : budget.kept_float) {
      std::printf("  kept in %s: %s '%s' (+%.2f %s alone, %.1f KB more weights)\n", k.fp16 ? "FP16" : "FP32",
                  k.op.c_str(), k.node.c_str(), k.gain, unit, k.extra_bytes / 1024.0);
    }
  }
  std::printf("wrote %s (%.1f MB, from %.1f MB)\n", args.output.c_str(),
              std::filesystem::file_size(args.output) / 1e6, std::filesystem::file_size(args.model) / 1e6);
  return 0;
}

}  // namespace kvant::tools
