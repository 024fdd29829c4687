// ONNX import: ModelProto (protobuf, through libonnx's onnx_proto) -> Graph.
//
// Accepts default-domain opsets 7 to 25 (operators whose meaning changed in a
// newer opset are refused by their shape rules; element types added after
// opset 21, such as float8 and int4, are refused at import), initializers with
// raw, typed or external data, and symbolic input dimensions. Constant nodes
// become initializers. Errors name the file, node and tensor.
#ifndef KVANT_GRAPH_ONNX_IMPORT_H_
#define KVANT_GRAPH_ONNX_IMPORT_H_

#include <string>
#include <string_view>

#include "absl/status/statusor.h"
#include "graph/graph.h"

namespace onnx {
class TensorProto;
}

namespace kvant {

struct ImportOptions {
  int64_t max_weight_bytes = int64_t{16} << 30;
};

inline constexpr int64_t kMinOpset = 7;
inline constexpr int64_t kMaxOpset = 25;

absl::StatusOr<Graph> ImportOnnxFile(const std::string& path, const ImportOptions& options = {});
// `base_dir` resolves external data; `source` names the model in errors.
absl::StatusOr<Graph> ImportOnnxBytes(std::string_view bytes, const std::string& base_dir,
                                      const std::string& source,
                                      const ImportOptions& options = {});

// Converts one TensorProto; external data is read relative to `base_dir` and
// must stay inside it.
absl::StatusOr<Tensor> TensorFromProto(const onnx::TensorProto& proto, const std::string& base_dir,
                                       const std::string& source);
// Reads a serialized TensorProto file (the ONNX test-data format).
absl::StatusOr<Tensor> ReadTensorProtoFile(const std::string& path, std::string* name = nullptr);

}  // namespace kvant

#endif  // KVANT_GRAPH_ONNX_IMPORT_H_
