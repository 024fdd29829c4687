// Resize (and opset-10 Upsample-style scales): output sizes from scales or
// sizes, honoring axes and keep_aspect_ratio_policy; shared by the shape rule
// and the kernel.
#ifndef KVANT_OPS_RESIZE_OPS_H_
#define KVANT_OPS_RESIZE_OPS_H_

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "graph/graph.h"

namespace kvant {

struct ResizeSpec {
  std::vector<int64_t> out;    // output shape
  std::vector<double> scales;  // per dimension, as the coordinate transform uses them
};

// `scales` and `sizes` are the constant inputs (either may be null or empty).
absl::StatusOr<ResizeSpec> ResolveResize(const AttributeMap& attrs, const std::vector<int64_t>& in,
                                         const Tensor* scales, const Tensor* sizes, const std::string& label);

}  // namespace kvant

#endif  // KVANT_OPS_RESIZE_OPS_H_
