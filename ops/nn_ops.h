// Attributes of convolution and pooling, parsed once and shared by the shape
// rules and the kernels: kernel size, strides, dilations, pads (auto_pad
// resolved against the input size), groups, ceil_mode.
#ifndef KVANT_OPS_NN_OPS_H_
#define KVANT_OPS_NN_OPS_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "graph/graph.h"

namespace kvant {

struct WindowParams {
  int64_t spatial = 0;
  std::vector<int64_t> kernel;
  std::vector<int64_t> strides;
  std::vector<int64_t> dilations;
  std::vector<int64_t> pads;  // begin[0..spatial), end[0..spatial)
  std::string auto_pad = "NOTSET";
  int64_t group = 1;
  bool ceil_mode = false;
  bool count_include_pad = false;
};

// Parses conv/pool attributes. `kernel` comes from the weights for Conv (may be
// empty to read kernel_shape). Errors name `label`.
absl::StatusOr<WindowParams> ParseWindow(const AttributeMap& attrs, int64_t spatial,
                                         std::vector<int64_t> kernel, const std::string& label);

// Output spatial sizes for static input sizes; fills pads when auto_pad is set.
// -1 input sizes give -1 outputs.
absl::StatusOr<std::vector<int64_t>> WindowOutputSizes(WindowParams& p,
                                                       const std::vector<int64_t>& in,
                                                       const std::string& label);



// ConvTranspose: output spatial sizes and resolved begin/end pads.
struct ConvTransposeSizes {
  std::vector<int64_t> out;
  std::vector<int64_t> pads;  // begin[spatial], end[spatial]
};
absl::StatusOr<ConvTransposeSizes> ConvTransposeOutput(const AttributeMap& attrs, const WindowParams& p,
                                                       const std::vector<int64_t>& in, const std::string& label);

// The rows a softmax normalizes over `shape`: outer * inner rows of len
// values, value i of row r at (r / inner) * len * inner + r % inner + i *
// inner. `coerce_2d` (opset < 13, and QLinearSoftmax's opset 1) flattens
// every axis from `axis` on into one row.
struct SoftmaxRows {
  int64_t outer = 1, len = 1, inner = 1;
};
inline SoftmaxRows SoftmaxRowsOf(absl::Span<const int64_t> shape, int64_t axis, bool coerce_2d) {
  const int64_t rank = static_cast<int64_t>(shape.size());
  if (axis < 0) axis += rank;
  SoftmaxRows r;
  for (int64_t i = 0; i < axis; ++i) r.outer *= shape[i];
  if (coerce_2d) {
    for (int64_t i = axis; i < rank; ++i) r.len *= shape[i];
  } else {
    r.len = rank == 0 ? 1 : shape[axis];
    for (int64_t i = axis + 1; i < rank; ++i) r.inner *= shape[i];
  }
  return r;
}

}  // namespace kvant
#endif  // KVANT_OPS_NN_OPS_H_
