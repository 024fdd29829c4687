// Per-layer errors, output SQNR and measured suggestions (see the header).
#include "quantize/compare.h"

#include <algorithm>
#include <cmath>
#include <tuple>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/str_format.h"
#include "quantize/branches.h"

namespace kvant::quantize {
namespace {

struct Accumulator {
  double ref2 = 0, err2 = 0, q2 = 0, dot = 0;
  int64_t values = 0;
  void Add(const Tensor& f, const Tensor& q) {
    const int64_t n = std::min(f.num_elements(), q.num_elements());
    values += n;
    for (int64_t i = 0; i < n; ++i) {
      const double a = f.data<float>()[i], b = q.data<float>()[i];
      ref2 += a * a;
      err2 += (a - b) * (a - b);
      q2 += b * b;
      dot += a * b;
    }
  }
  double Sqnr() const { return err2 == 0 ? 200.0 : 10 * std::log10(std::max(ref2, 1e-30) / err2); }
  double Cosine() const { return ref2 == 0 || q2 == 0 ? (ref2 == q2 ? 1.0 : 0.0) : dot / std::sqrt(ref2 * q2); }
};

bool IsOnnx(const onnx::NodeProto& n, const char* op) { return n.op_type() == op && n.domain().empty(); }

absl::Status Annotate(const absl::Status& s, const std::string& what) {
  return absl::Status(s.code(), absl::StrFormat("failed to compare on %s: %s", what, s.message()));
}

}  // namespace

absl::StatusOr<std::vector<LayerError>> LayerErrors(const OnnxModel& fp32, const OnnxModel& quantized,
                                                    const std::vector<CalibrationBatch>& data, int num_threads) {
  // FP32 values (inside If branches too): name -> producer's name and op.
  absl::flat_hash_map<std::string, std::pair<std::string, std::string>> float_values;
  for (const auto& in : fp32.graph().input()) float_values[in.name()] = {"", "input"};
  auto add_values = [&](const OnnxModel& m) {
    for (const auto& n : m.graph().node())
      for (const auto& out : n.output()) float_values[out] = {n.name(), n.op_type()};
    return absl::OkStatus();
  };
  if (auto s = add_values(fp32); !s.ok()) return s;
  if (auto s = VisitBranches(fp32, add_values); !s.ok()) return s;
  // (FP32 name, quantized model's dequantized name), in graph order (each
  // branch after the graph around it), and the quantized model's value
  // before its QuantizeLinear.
  std::vector<std::pair<std::string, std::string>> pairs;
  std::vector<std::string> pre_q;
  auto add_pairs = [&](const OnnxModel& q) {
    const auto& qg = q.graph();
    for (const auto& dq : qg.node()) {
      if (!IsOnnx(dq, "DequantizeLinear")) continue;
      const int qi = q.Producer(dq.input(0));
      if (qi < 0 || !IsOnnx(qg.node(qi), "QuantizeLinear")) continue;
      const std::string& x = qg.node(qi).input(0);
      if (float_values.contains(x)) {
        pairs.emplace_back(x, dq.output(0));
      } else if (float_values.contains(dq.output(0))) {
        pairs.emplace_back(dq.output(0), dq.output(0));
      } else {
        continue;
      }
      pre_q.push_back(x);
    }
    return absl::OkStatus();
  };
  if (auto s = add_pairs(quantized); !s.ok()) return s;
  if (auto s = VisitBranches(quantized, add_pairs); !s.ok()) return s;
  std::vector<std::string> float_names, quant_names;
  for (size_t i = 0; i < pairs.size(); ++i) {
    float_names.push_back(pairs[i].first);
    quant_names.push_back(pairs[i].second);
    quant_names.push_back(pre_q[i]);
  }
  auto fs = SessionWithOutputs(fp32, float_names, num_threads);
  if (!fs.ok()) return fs.status();
  auto qs = SessionWithOutputs(quantized, quant_names, num_threads);
  if (!qs.ok()) return qs.status();
  std::vector<Accumulator> acc(pairs.size()), local(pairs.size());
  for (const auto& batch : data) {
    auto fo = fs->Run(batch.inputs);
    if (!fo.ok()) return Annotate(fo.status(), batch.source);
    auto qo = qs->Run(batch.inputs);
    if (!qo.ok()) return Annotate(qo.status(), batch.source);
    for (size_t i = 0; i < pairs.size(); ++i) {
      const Tensor* f = ValueOf(*fo, batch, pairs[i].first);
      const Tensor* q = ValueOf(*qo, batch, pairs[i].second);
      const Tensor* before = ValueOf(*qo, batch, pre_q[i]);
      if (f == nullptr || q == nullptr || q->dtype() != DataType::kFloat32) continue;
      if (f->dtype() == DataType::kFloat32) acc[i].Add(*f, *q);
      if (before != nullptr && before->dtype() == DataType::kFloat32) local[i].Add(*before, *q);
    }
  }
  std::vector<LayerError> out;
  for (size_t i = 0; i < pairs.size(); ++i) {
    if (acc[i].values == 0) continue;  // in an If branch no batch took
    LayerError e;
    e.tensor = pairs[i].first;
    std::tie(e.node, e.op) = float_values[e.tensor];
    e.sqnr_db = acc[i].Sqnr();
    e.cosine = acc[i].Cosine();
    e.local_sqnr_db = local[i].Sqnr();
    out.push_back(std::move(e));
  }
  std::stable_sort(out.begin(), out.end(), [](const LayerError& a, const LayerError& b) { return a.sqnr_db < b.sqnr_db; });
  return out;
}

absl::StatusOr<Outputs> RunAll(const OnnxModel& model, const std::vector<CalibrationBatch>& data, int num_threads) {
  SessionOptions options;
  options.num_threads = num_threads;
  auto s = Session::LoadFromBytes(model.Serialize(), options);
  if (!s.ok()) return s.status();
  Outputs out;
  for (const auto& batch : data) {
    auto o = s->Run(batch.inputs);
    if (!o.ok()) return Annotate(o.status(), batch.source);
    out.push_back(*std::move(o));
  }
  return out;
}

absl::StatusOr<double> OutputSqnr(const Outputs& reference, const OnnxModel& quantized,
                                  const std::vector<CalibrationBatch>& data, int num_threads) {
  auto got = RunAll(quantized, data, num_threads);
  if (!got.ok()) return got.status();
  Accumulator acc;
  for (size_t b = 0; b < reference.size() && b < got->size(); ++b) {
    for (const auto& [name, f] : reference[b]) {
      auto it = (*got)[b].find(name);
      if (it != (*got)[b].end() && f.dtype() == DataType::kFloat32 && it->second.dtype() == DataType::kFloat32) {
        acc.Add(f, it->second);
      }
    }
  }
  return acc.Sqnr();
}

absl::StatusOr<SuggestReport> Suggest(const OnnxModel& fp32, const QuantizeOptions& options,
                                      const std::vector<CalibrationBatch>& data, const std::vector<LayerError>& worst,
                                      const ProgressFn& progress) {
  auto reference = RunAll(fp32, data, options.num_threads);
  if (!reference.ok()) return reference.status();
  // Quantizes with `o` (re-preparing and re-calibrating when `fresh`) and
  // measures the outputs.
  OnnxModel prepared = fp32;
  PrepareReport unused;
  if (auto s = Prepare(prepared, options, &unused); !s.ok()) return s;
  auto calibration = CalibrateFor(prepared, options, data, nullptr);
  if (!calibration.ok()) return calibration.status();
  auto measure = [&](const QuantizeOptions& o, bool fresh) -> absl::StatusOr<double> {
    QuantizeReport report;
    if (!fresh) {
      auto q = Convert(prepared, o, &*calibration, &report);
      if (!q.ok()) return q.status();
      return OutputSqnr(*reference, *q, data, o.num_threads);
    }
    auto q = Quantize(fp32, o, data, nullptr, &report);
    if (!q.ok()) return q.status();
    return OutputSqnr(*reference, *q, data, o.num_threads);
  };
  SuggestReport r;
  auto base = measure(options, false);
  if (!base.ok()) return base.status();
  r.baseline_db = *base;
  struct Trial {
    std::string change, flag;
    QuantizeOptions options;
    bool fresh;
  };
  std::vector<Trial> trials;
  for (RangeMethod m : {RangeMethod::kMinMax, RangeMethod::kPercentile, RangeMethod::kEntropy, RangeMethod::kMse}) {
    if (m == options.method) continue;
    QuantizeOptions o = options;
    o.method = m;
    trials.push_back({absl::StrFormat("%s activation ranges", RangeMethodName(m)),
                      absl::StrFormat("--method %s", RangeMethodName(m)), o, false});
  }
  if (!options.scheme.weights_per_channel) {
    QuantizeOptions o = options;
    o.scheme.weights_per_channel = true;
    trials.push_back({"per-channel weights", "(drop --per-tensor)", o, true});
  }
  if (!options.equalize) {
    QuantizeOptions o = options;
    o.equalize = true;
    trials.push_back({"cross-layer equalization", "--equalize", o, true});
  }
  if (!options.bias_correction) {
    QuantizeOptions o = options;
    o.bias_correction = true;
    trials.push_back({"empirical bias correction", "--bias-correction", o, true});
  }
  // Keeping a tensor in float: its producer (with the compute node a fused
  // activation belongs to) and every consumer, which would quantize it again.
  for (const LayerError& e : worst) {
    QuantizeOptions o = options;
    std::vector<std::string> names;
    if (!e.node.empty()) names.push_back(e.node);
    const int p = prepared.Producer(e.tensor);
    if (p >= 0) {
      const auto& n = prepared.graph().node(p);
      if ((IsOnnx(n, "Relu") || IsOnnx(n, "Clip")) && prepared.Producer(n.input(0)) >= 0) {
        names.push_back(prepared.graph().node(prepared.Producer(n.input(0))).name());
      }
    }
    for (int c : prepared.Consumers(e.tensor)) names.push_back(prepared.graph().node(c).name());
    std::string flags;
    for (const auto& name : names) {
      o.exclude.insert(name);
      flags += absl::StrFormat("%s--exclude '%s'", flags.empty() ? "" : " ", name);
    }
    trials.push_back({absl::StrFormat("keep '%s' in float (%s output, %.1f dB alone)", e.tensor, e.op, e.local_sqnr_db),
                      flags, o, false});
  }
  for (size_t i = 0; i < trials.size(); ++i) {
    auto db = measure(trials[i].options, trials[i].fresh);
    if (progress) progress("trying", static_cast<int64_t>(i + 1), static_cast<int64_t>(trials.size()));
    if (!db.ok()) continue;  // a variant the model does not allow (e.g. an exclusion that breaks a plan)
    r.suggestions.push_back({trials[i].change, trials[i].flag, *db, *db - r.baseline_db});
  }
  std::stable_sort(r.suggestions.begin(), r.suggestions.end(),
                   [](const Suggestion& a, const Suggestion& b) { return a.gain_db > b.gain_db; });
  return r;
}

}  // namespace kvant::quantize
