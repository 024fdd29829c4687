// Pad and Split parameter resolution, shared by shape rules and kernels.
#ifndef KVANT_OPS_GENERATOR_OPS_H_
#define KVANT_OPS_GENERATOR_OPS_H_

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "graph/graph.h"

namespace kvant {

struct PadSpec {
  std::vector<int64_t> begin, end;  // per dimension; negative values crop
  std::string mode;                 // constant, reflect, edge, wrap
};
// Pads from the attribute (opset < 11) or the pads/axes inputs.
absl::StatusOr<PadSpec> ResolvePads(const AttributeMap& attrs, int64_t opset, const Tensor* pads_input,
                                    const Tensor* axes_input, int64_t rank, const std::string& label);

// Split sizes along an axis of size `dim` into `outputs` pieces.
absl::StatusOr<std::vector<int64_t>> SplitSizes(const AttributeMap& attrs, int64_t opset, const Tensor* split_input,
                                                int64_t dim, int64_t outputs, const std::string& label);

}  // namespace kvant

#endif  // KVANT_OPS_GENERATOR_OPS_H_
