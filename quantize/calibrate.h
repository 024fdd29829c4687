// Calibration: the FP32 model run on the calibration batches with the
// tensors to observe exposed as extra graph outputs (Kvant's optimizer keeps
// a graph output intact, so each is exactly the FP32 value), one
// RangeObserver per tensor. Also the runner `kvant compare` uses.
#ifndef KVANT_QUANTIZE_CALIBRATE_H_
#define KVANT_QUANTIZE_CALIBRATE_H_

#include <functional>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/status/statusor.h"
#include "kvant/kvant.h"
#include "quantize/observer.h"
#include "quantize/onnx_model.h"

namespace kvant::quantize {

// One batch of model inputs and where it came from ("calib/x.npy rows
// 32..63"), for error messages.
struct CalibrationBatch {
  TensorMap inputs;
  std::string source;
};

// stage ("calibrating", ...), done, total.
using ProgressFn = std::function<void(const std::string&, int64_t, int64_t)>;

// A session of `model` whose outputs are its own plus `extra` (f32 values;
// graph inputs among them are not repeated: read them with ValueOf).
// Values inside If branches are carried out (ExposeValues): a run returns
// them under their own names when it took their branch, else not at all.
class ObservingSession {
 public:
  static absl::StatusOr<ObservingSession> Create(const OnnxModel& model, const std::vector<std::string>& extra,
                                                 int num_threads = 1);
  absl::StatusOr<TensorMap> Run(const TensorMap& inputs) const;
  // Whether `value` lives in an If branch (a run may not compute it).
  bool Conditional(const std::string& value) const { return conditional_.contains(value); }

 private:
  ObservingSession(Session session, absl::flat_hash_map<std::string, std::string> carried);
  Session session_;
  absl::flat_hash_map<std::string, std::string> carried_;  // graph output -> value inside a branch
  absl::flat_hash_set<std::string> conditional_;
};
absl::StatusOr<ObservingSession> SessionWithOutputs(const OnnxModel& model, const std::vector<std::string>& extra,
                                                    int num_threads = 1);

// `name` from a run's outputs, or from the batch when it is a graph input;
// null when neither has it.
const Tensor* ValueOf(const TensorMap& outputs, const CalibrationBatch& batch, const std::string& name);

// NaN or Inf in any f32 input of `batch` is InvalidArgument naming its source.
absl::Status CheckFinite(const CalibrationBatch& batch);

absl::StatusOr<absl::flat_hash_map<std::string, RangeObserver>> Calibrate(const OnnxModel& model,
                                                                          const std::vector<std::string>& tensors,
                                                                          const std::vector<CalibrationBatch>& batches,
                                                                          const ProgressFn& progress,
                                                                          int num_threads = 1);

}  // namespace kvant::quantize

#endif  // KVANT_QUANTIZE_CALIBRATE_H_
