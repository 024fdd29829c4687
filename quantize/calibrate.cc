// Calibration runs (see the header).
#include "quantize/calibrate.h"

#include <cmath>

#include "absl/container/flat_hash_set.h"

#include "absl/strings/str_format.h"
#include "quantize/branches.h"

namespace kvant::quantize {

ObservingSession::ObservingSession(Session session, absl::flat_hash_map<std::string, std::string> carried)
    : session_(std::move(session)), carried_(std::move(carried)) {
  for (const auto& [output, value] : carried_) conditional_.insert(value);
}

absl::StatusOr<ObservingSession> ObservingSession::Create(const OnnxModel& model,
                                                          const std::vector<std::string>& extra, int num_threads) {
  OnnxModel exposed = model;
  absl::flat_hash_map<std::string, std::string> carried = ExposeValues(exposed, extra);
  SessionOptions options;
  options.num_threads = num_threads;
  auto session = Session::LoadFromBytes(exposed.Serialize(), options);
  if (!session.ok()) return session.status();
  return ObservingSession(*std::move(session), std::move(carried));
}

absl::StatusOr<TensorMap> ObservingSession::Run(const TensorMap& inputs) const {
  auto out = session_.Run(inputs);
  if (!out.ok() || carried_.empty()) return out;
  for (const auto& [output, value] : carried_) {
    auto it = out->find(output);
    if (it == out->end()) continue;
    // The branch not taken returns an empty tensor; a taken branch's value
    // may be empty too (a zero-length sequence), and then has nothing to observe.
    if (it->second.num_elements() > 0) out->insert_or_assign(value, std::move(it->second));
    out->erase(it);
  }
  return out;
}

absl::StatusOr<ObservingSession> SessionWithOutputs(const OnnxModel& model, const std::vector<std::string>& extra,
                                                    int num_threads) {
  return ObservingSession::Create(model, extra, num_threads);
}

const Tensor* ValueOf(const TensorMap& outputs, const CalibrationBatch& batch, const std::string& name) {
  auto it = outputs.find(name);
  if (it != outputs.end()) return &it->second;
  auto in = batch.inputs.find(name);
  return in != batch.inputs.end() ? &in->second : nullptr;
}

absl::Status CheckFinite(const CalibrationBatch& batch) {
  for (const auto& [name, t] : batch.inputs) {
    if (t.dtype() != DataType::kFloat32) continue;
    const float* v = t.data<float>();
    for (int64_t i = 0; i < t.num_elements(); ++i) {
      if (!std::isfinite(v[i])) {
        const int64_t per_row = t.rank() > 0 && t.shape()[0] > 0 ? t.num_elements() / t.shape()[0] : 1;
        return absl::InvalidArgumentError(absl::StrFormat(
            "failed to calibrate with %s: input '%s' must be finite, got %f at element %d (row %d)", batch.source, name,
            v[i], i, i / std::max<int64_t>(per_row, 1)));
      }
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<absl::flat_hash_map<std::string, RangeObserver>> Calibrate(const OnnxModel& model,
                                                                          const std::vector<std::string>& tensors,
                                                                          const std::vector<CalibrationBatch>& batches,
                                                                          const ProgressFn& progress,
                                                                          int num_threads) {
  if (batches.empty()) {
    return absl::InvalidArgumentError(
        absl::StrFormat("failed to calibrate %s: static quantization needs calibration data, got none", model.source()));
  }
  auto session = SessionWithOutputs(model, tensors, num_threads);
  if (!session.ok()) return session.status();
  absl::flat_hash_map<std::string, RangeObserver> observers;
  for (const std::string& t : tensors) observers[t];
  for (size_t b = 0; b < batches.size(); ++b) {
    if (auto s = CheckFinite(batches[b]); !s.ok()) return s;
    auto out = session->Run(batches[b].inputs);
    if (!out.ok()) {
      return absl::Status(out.status().code(),
                          absl::StrFormat("failed to calibrate on %s: %s", batches[b].source, out.status().message()));
    }
    for (const std::string& t : tensors) {
      const Tensor* found = ValueOf(*out, batches[b], t);
      if (found == nullptr && session->Conditional(t)) continue;  // in an If branch this batch did not take
      if (found == nullptr) {
        return absl::InternalError(absl::StrFormat("failed to calibrate %s: tensor '%s' was not computed", model.source(), t));
      }
      const Tensor& v = *found;
      if (v.dtype() != DataType::kFloat32) {
        return absl::InvalidArgumentError(absl::StrFormat(
            "failed to calibrate %s: tensor '%s' must be f32 to be quantized, got %s", model.source(), t,
            DataTypeName(v.dtype())));
      }
      const float* x = v.data<float>();
      for (int64_t i = 0; i < v.num_elements(); ++i) {
        if (!std::isfinite(x[i])) {
          return absl::InvalidArgumentError(absl::StrFormat(
              "failed to calibrate on %s: tensor '%s' must be finite, got %f at element %d (the FP32 model "
              "overflows on this input)", batches[b].source, t, x[i], i));
        }
      }
      observers[t].Observe(x, v.num_elements());
    }
    if (progress) progress("calibrating", static_cast<int64_t>(b + 1), static_cast<int64_t>(batches.size()));
  }
  return observers;
}

}  // namespace kvant::quantize
