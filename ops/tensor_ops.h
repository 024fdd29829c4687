// Shared math of the data-movement operators: Slice ranges and Reshape targets,
// used by both the shape rules and the CPU kernels.
#ifndef KVANT_OPS_TENSOR_OPS_H_
#define KVANT_OPS_TENSOR_OPS_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace kvant {

// Per-axis start and step, and the output shape, of a Slice on `in`.
struct SliceRange {
  std::vector<int64_t> start;
  std::vector<int64_t> step;
  std::vector<int64_t> out_shape;
};
absl::StatusOr<SliceRange> ComputeSlice(const std::vector<int64_t>& in, const std::vector<int64_t>& starts,
                                        const std::vector<int64_t>& ends, std::vector<int64_t> axes,
                                        std::vector<int64_t> steps, const std::string& label);

// Reshape target with 0 (copy, unless allowzero) and -1 (infer) resolved.
absl::StatusOr<std::vector<int64_t>> ResolveReshape(const std::vector<int64_t>& in,
                                                    const std::vector<int64_t>& target, bool allowzero,
                                                    const std::string& label);

}  // namespace kvant

#endif  // KVANT_OPS_TENSOR_OPS_H_
