// Axis handling shared by the reduction shape rules and kernels.
#ifndef KVANT_OPS_REDUCE_OPS_H_
#define KVANT_OPS_REDUCE_OPS_H_

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "graph/graph.h"

namespace kvant {

// Which dimensions of a rank-`rank` input a Reduce* node reduces: from the
// `axes` attribute (older opsets) or input (ReduceSum >= 13, others >= 18);
// no axes means all, unless noop_with_empty_axes.
absl::StatusOr<std::vector<bool>> ReduceAxes(const AttributeMap& attrs, const Tensor* axes_input, int64_t opset,
                                             const std::string& op, int64_t rank, const std::string& label);

}  // namespace kvant

#endif  // KVANT_OPS_REDUCE_OPS_H_
