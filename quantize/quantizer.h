// The quantizer: prepare -> calibrate -> convert, as `kvant quantize` runs it.
//   1. prepare (quantize/prepare.h): no-ops out, BatchNorm folded, opset 13
//      for per-channel weights, optional cross-layer equalization;
//   2. dynamic: weights to s8, done (quantize/dynamic.h); static: plan which
//      tensors are quantized (quantize/qdq.h) and calibrate their ranges on
//      the FP32 model (quantize/calibrate.h) with the chosen method; with
//      bias correction, measure each channel's mean shift and fold it into
//      the biases (quantize/bias_correction.h);
//   3. convert: scales and zero points from the ranges and the scheme, Q/DQ
//      pairs, s8 weights and int32 biases written into the ONNX model; in
//      QOperator form, each group then becomes one quantized operator.
#ifndef KVANT_QUANTIZE_QUANTIZER_H_
#define KVANT_QUANTIZE_QUANTIZER_H_

#include <string>
#include <vector>

#include "absl/container/flat_hash_set.h"
#include "absl/status/statusor.h"
#include "quantize/calibrate.h"
#include "quantize/observer.h"
#include "quantize/onnx_model.h"
#include "quantize/prepare.h"
#include "quantize/scheme.h"

namespace kvant::quantize {

struct QuantizeOptions {
  Scheme scheme;
  RangeMethod method = RangeMethod::kMinMax;
  double percentile = 99.999;
  bool dynamic = false;
  bool equalize = false;
  bool qoperator = false;  // --format qoperator (quantize/qoperator.h), else QDQ
  bool bias_correction = false;  // quantize/bias_correction.h
  absl::flat_hash_set<std::string> exclude;  // node names kept in float
  int num_threads = 1;
};

struct QuantizeReport {
  PrepareReport prepare;
  std::vector<std::string> quantized_nodes;  // in graph order
  int float_compute_nodes = 0;               // Conv/MatMul/Gemm left in float
  // If branches the calibration data never took, left in float (their
  // OnnxModel::Subgraph sources: "model.onnx, If 'If_0' else_branch").
  std::vector<std::string> float_branches;
  int observed_tensors = 0;
  int dynamic_nodes = 0;
  int qoperator_groups = 0;  // --format qoperator
  int corrected_biases = 0;  // --bias-correction
};

// Prepares `model` in place (step 1); used alone by the accuracy tools.
absl::Status Prepare(OnnxModel& model, const QuantizeOptions& options, PrepareReport* report);

// Ranges calibrated on a prepared model for the tensors `excluded` leaves
// quantized; reusable across several Convert calls.
struct Calibration {
  absl::flat_hash_map<std::string, RangeObserver> observers;
};
absl::StatusOr<Calibration> CalibrateFor(const OnnxModel& prepared, const QuantizeOptions& options,
                                         const std::vector<CalibrationBatch>& batches, const ProgressFn& progress);

// Steps 2-3 on a prepared model with its calibration (static), or without
// (dynamic): returns the quantized model.
absl::StatusOr<OnnxModel> Convert(const OnnxModel& prepared, const QuantizeOptions& options,
                                  const Calibration* calibration, QuantizeReport* report);

// All three steps.
absl::StatusOr<OnnxModel> Quantize(OnnxModel model, const QuantizeOptions& options,
                                   const std::vector<CalibrationBatch>& batches, const ProgressFn& progress,
                                   QuantizeReport* report);

}  // namespace kvant::quantize

#endif  // KVANT_QUANTIZE_QUANTIZER_H_
