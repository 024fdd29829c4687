// The quantizer edits the user's ONNX ModelProto itself, not Kvant's Graph:
// everything the user had (opsets, metadata, doc strings, value infos, node
// names, subgraphs) survives, and the output is a file ONNX Runtime reads the
// same way. OnnxModel adds what the edits need: initializers as Tensors,
// producer and consumer lookups, fresh names, and the opset.
#ifndef KVANT_QUANTIZE_ONNX_MODEL_H_
#define KVANT_QUANTIZE_ONNX_MODEL_H_

#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/status/statusor.h"
#include "kvant/kvant.h"
#include "onnx/onnx_pb.h"

namespace kvant::quantize {

class OnnxModel {
 public:
  // Reads a model; external data is read in, Constant nodes become
  // initializers (so weights are found in one place).
  static absl::StatusOr<OnnxModel> Load(const std::string& path);
  static absl::StatusOr<OnnxModel> FromBytes(const std::string& bytes, const std::string& source);
  // A subgraph of `outer` (an If branch) as a model of its own, to plan and
  // edit like the main graph: the same opsets, its Constant nodes made its
  // initializers, values it reads from outer scopes seen as made elsewhere
  // (no producer, like graph inputs), and fresh names that no scope of
  // `outer` uses. `label` names it in messages (source() is
  // "OUTER.onnx, LABEL").
  static absl::StatusOr<OnnxModel> Subgraph(const OnnxModel& outer, const onnx::GraphProto& g, const std::string& label);

  onnx::ModelProto& proto() { return model_; }
  const onnx::ModelProto& proto() const { return model_; }
  onnx::GraphProto& graph() { return *model_.mutable_graph(); }
  const onnx::GraphProto& graph() const { return model_.graph(); }
  const std::string& source() const { return source_; }
  std::string Serialize() const;
  absl::Status Save(const std::string& path) const;

  int64_t opset() const;  // of the default domain
  void SetOpset(int64_t version);
  void AddOpsetImport(const std::string& domain, int64_t version);

  // Initializers.
  const onnx::TensorProto* FindInitializer(const std::string& name) const;
  absl::StatusOr<Tensor> InitializerTensor(const std::string& name) const;
  // Adds (or replaces) an initializer.
  void SetInitializer(const std::string& name, const Tensor& value);
  void RemoveInitializer(const std::string& name);

  // Lookups over graph().node(), rebuilt by Reindex() after edits (the
  // names FreshName avoids include those inside subgraphs).
  void Reindex();
  int Producer(const std::string& value) const;  // node index, -1 for inputs and initializers
  const std::vector<int>& Consumers(const std::string& value) const;
  bool IsGraphOutput(const std::string& value) const;
  bool IsGraphInput(const std::string& value) const;
  // Names read inside subgraphs (If/Loop bodies may read outer values).
  absl::flat_hash_set<std::string> SubgraphReads() const;

  // A value name not yet used in the graph, based on `base`.
  std::string FreshName(const std::string& base);

 private:
  absl::Status Normalize(const std::string& base_dir);

  onnx::ModelProto model_;
  std::string source_;
  std::string base_dir_ = ".";  // of external data
  std::vector<std::string> outer_names_;  // names the scopes around a subgraph use
  absl::flat_hash_map<std::string, int> producer_;
  absl::flat_hash_map<std::string, std::vector<int>> consumers_;
  absl::flat_hash_map<std::string, int> initializer_index_;
  absl::flat_hash_map<std::string, bool> used_names_;
};

// Attribute helpers for NodeProto.
int64_t AttrInt(const onnx::NodeProto& n, const std::string& name, int64_t fallback);
float AttrFloat(const onnx::NodeProto& n, const std::string& name, float fallback);
std::vector<int64_t> AttrInts(const onnx::NodeProto& n, const std::string& name);
std::string AttrString(const onnx::NodeProto& n, const std::string& name, const std::string& fallback);
void SetAttrInt(onnx::NodeProto& n, const std::string& name, int64_t v);
void SetAttrInts(onnx::NodeProto& n, const std::string& name, const std::vector<int64_t>& v);
void RemoveAttr(onnx::NodeProto& n, const std::string& name);

// A node with `inputs` and `outputs`, in `domain` (empty: ONNX).
onnx::NodeProto MakeNode(const std::string& op, const std::vector<std::string>& inputs,
                         const std::vector<std::string>& outputs, const std::string& name,
                         const std::string& domain = "");

}  // namespace kvant::quantize

#endif  // KVANT_QUANTIZE_ONNX_MODEL_H_
