// `kvant compare FLOAT.onnx QUANT.onnx --data DIR`: per-layer SQNR and cosine
// of the quantized model against its FP32 original, worst first, then
// suggestions measured by quantizing FLOAT with each change
// (quantize/compare.h).
#include <algorithm>
#include <cstdio>

#include "absl/strings/str_format.h"
#include "quantize/compare.h"
#include "tools/commands.h"
#include "tools/dataset.h"

namespace kvant::tools {
int CompareCommand(const CompareArgs& args) {
  auto fp32 = quantize::OnnxModel::Load(args.float_model);
  if (!fp32.ok()) return Fail(fp32.status());
  auto quant = quantize::OnnxModel::Load(args.quant_model);
  if (!quant.ok()) return Fail(quant.status());
  auto session = Session::Load(args.float_model);
  if (!session.ok()) return Fail(session.status());
  auto data = LoadDataset(args.data, session->inputs(), args.samples, args.batch);
  if (!data.ok()) return Fail(data.status());
  auto reference = quantize::RunAll(*fp32, *data, args.threads);
  if (!reference.ok()) return Fail(reference.status());
  auto out_db = quantize::OutputSqnr(*reference, *quant, *data, args.threads);
  if (!out_db.ok()) return Fail(out_db.status());
  auto layers = quantize::LayerErrors(*fp32, *quant, *data, args.threads);
  if (!layers.ok()) return Fail(layers.status());
  std::printf("%s against %s on %zu batch(es) of %s\n", args.quant_model.c_str(), args.float_model.c_str(),
              data->size(), args.data.c_str());
  std::printf("model outputs: SQNR %.2f dB\n\n", *out_db);
  std::printf("%-4s %-56s %-18s %9s %8s %9s\n", "#", "tensor (worst first)", "produced by", "SQNR dB", "cosine",
              "local dB");
  const size_t shown = std::min<size_t>(layers->size(), args.top);
  for (size_t i = 0; i < shown; ++i) {
    const auto& e = (*layers)[i];
    std::printf("%-4zu %-56s %-18s %9.2f %8.5f %9.2f\n", i + 1, e.tensor.c_str(), e.op.c_str(), e.sqnr_db, e.cosine,
                e.local_sqnr_db);
  }
  if (layers->size() > shown) std::printf("... %zu more\n", layers->size() - shown);
  if (args.no_suggest) return 0;
  quantize::QuantizeOptions options;
  auto scheme = quantize::PresetScheme(args.preset);
  if (!scheme.ok()) return Fail(scheme.status());
  options.scheme = *scheme;
  options.scheme.weights_per_channel = !args.per_tensor;
  auto method = quantize::ParseRangeMethod(args.method);
  if (!method.ok()) return Fail(method.status());
  options.method = *method;
  options.num_threads = args.threads;
  // The layers to try in float: the worst conversions by their own error.
  std::vector<quantize::LayerError> worst = *layers;
  std::stable_sort(worst.begin(), worst.end(), [](const auto& a, const auto& b) { return a.local_sqnr_db < b.local_sqnr_db; });
  worst.resize(std::min<size_t>(worst.size(), args.try_layers));
  auto suggest = quantize::Suggest(*fp32, options, *data, worst, StderrProgress());
  if (!suggest.ok()) return Fail(suggest.status());
  std::printf("\nSuggestions, each measured by `kvant quantize --preset %s --method %s%s` with the change, on the "
              "same data (output SQNR %.2f dB without):\n", args.preset.c_str(), args.method.c_str(),
              args.per_tensor ? " --per-tensor" : "", suggest->baseline_db);
  for (const auto& s : suggest->suggestions) {
    std::printf("  %+7.2f dB -> %6.2f dB  %-70s %s\n", s.gain_db, s.sqnr_db, s.change.c_str(), s.flag.c_str());
  }
  return 0;
}

}  // namespace kvant::tools
