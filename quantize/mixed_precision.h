// Mixed precision under an accuracy budget (`kvant quantize
// --accuracy-budget DB`): the fewest layers kept in float for the model's
// output SQNR against FP32 to reach DB.
//   1. Quantize everything; done if the output SQNR already meets DB.
//   2. Sensitivity: for each INT8 node alone kept in float, the output SQNR
//      gained (one conversion and one evaluation each, on the ranges
//      calibrated once).
//   3. Greedy: nodes in order of gain per byte their float weights cost
//      (3 bytes per weight over INT8; 1 for a node without weights), kept in
//      float one at a time, each step measured (gains do not add up) and
//      undone when it does not help, until the budget is met or no node is
//      left.
// Float means FP32 until the FP16/BF16 kernels exist.
#ifndef KVANT_QUANTIZE_MIXED_PRECISION_H_
#define KVANT_QUANTIZE_MIXED_PRECISION_H_

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "quantize/quantizer.h"

namespace kvant::quantize {

struct BudgetReport {
  double budget_db = 0;
  double all_int8_db = 0;  // step 1
  double final_db = 0;
  bool met = false;
  struct Kept {
    std::string node, op;
    double gain_db = 0;       // alone, from step 2
    int64_t extra_bytes = 0;  // float weights over INT8
  };
  std::vector<Kept> kept_float;  // in the order they were added
  int evaluations = 0;
};

// `fp32` unprepared; `data` both calibrates and evaluates.
absl::StatusOr<OnnxModel> QuantizeWithBudget(const OnnxModel& fp32, const QuantizeOptions& options, double budget_db,
                                             const std::vector<CalibrationBatch>& data, const ProgressFn& progress,
                                             QuantizeReport* report, BudgetReport* budget);

}  // namespace kvant::quantize

#endif  // KVANT_QUANTIZE_MIXED_PRECISION_H_
