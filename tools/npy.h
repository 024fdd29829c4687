// NumPy .npy read and write (format versions 1-3, little-endian, C order),
// for `kvant run` inputs and outputs and for test data.
#ifndef KVANT_TOOLS_NPY_H_
#define KVANT_TOOLS_NPY_H_

#include <string>

#include "absl/status/statusor.h"
#include "kvant/kvant.h"

namespace kvant {

absl::StatusOr<Tensor> ReadNpy(const std::string& path);
absl::Status WriteNpy(const std::string& path, const Tensor& tensor);

}  // namespace kvant

#endif  // KVANT_TOOLS_NPY_H_
