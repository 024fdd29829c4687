// Mixed precision under an accuracy budget (`kvant quantize
// --accuracy-budget DB | top1:POINTS`): the fewest layers kept in float for
// the model's output SQNR against FP32 to reach DB, or for its top-1
// accuracy on labelled data to stay within POINTS percentage points of
// FP32's. The score below is that SQNR or that accuracy.
//   1. Quantize everything; done if the score already meets the budget.
//   2. Sensitivity: for each INT8 node (inside If branches too) alone kept in float, the score gained
//      (one conversion and one evaluation each, on the ranges calibrated
//      once).
//   3. Greedy: nodes in order of gain per byte their float weights cost
//      (3 bytes per weight over INT8; 1 for a node without weights), kept in
//      float one at a time, each step measured (gains do not add up) and
//      undone when it does not help, until the budget is met or no node is
//      left.
//   4. FP16: once the budget is met, each float node's weights (largest
//      first) are stored as FP16 (an FP16 initializer read through
//      Cast(to FLOAT); 1 byte per weight over INT8 instead of 3), each step
//      measured and undone when the budget would no longer be met or a
//      weight lies outside FP16's range. Kvant keeps such weights packed in
//      FP16 (graph/passes/assign_precision.cc); the arithmetic is FP32, as
//      this CPU has no FP16 GEMM with FP32 accumulation.
#ifndef KVANT_QUANTIZE_MIXED_PRECISION_H_
#define KVANT_QUANTIZE_MIXED_PRECISION_H_

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "quantize/quantizer.h"

namespace kvant::quantize {

struct AccuracyBudget {
  enum class Kind { kSqnr, kTop1Drop };
  Kind kind = Kind::kSqnr;
  double value = 0;  // dB, or percentage points of top-1 accuracy
  Tensor labels;     // kTop1Drop: one class index per sample (row) of the data, in order
};
// "30" or "30dB": output SQNR; "top1:0.5": top-1 drop (labels come apart).
absl::StatusOr<AccuracyBudget> ParseAccuracyBudget(const std::string& spec);

struct BudgetReport {
  std::string unit;        // "dB" or "% top-1"
  double target = 0;       // the score to reach
  double fp32 = 0;         // FP32's score (top-1 only)
  double all_int8 = 0;     // step 1
  double final_score = 0;
  bool met = false;
  struct Kept {
    std::string node, op;
    double gain = 0;          // alone, from step 2
    int64_t extra_bytes = 0;  // float weights over INT8
    bool fp16 = false;        // weights stored as FP16 (step 4)
  };
  std::vector<Kept> kept_float;  // in the order they were added
  int evaluations = 0;
};

// `fp32` unprepared; `data` both calibrates and evaluates (top-1: of the
// first output, argmax over its last axis, one row per sample).
absl::StatusOr<OnnxModel> QuantizeWithBudget(const OnnxModel& fp32, const QuantizeOptions& options,
                                             const AccuracyBudget& budget_spec,
                                             const std::vector<CalibrationBatch>& data, const ProgressFn& progress,
                                             QuantizeReport* report, BudgetReport* budget);

}  // namespace kvant::quantize

#endif  // KVANT_QUANTIZE_MIXED_PRECISION_H_
