// The Kvant IR: a Graph of Nodes over named Values, with constant initializers.
//
// Values are referred to by name (as in ONNX); `values` records the dtype and
// shape of each one. Shapes may be symbolic (a named dimension such as "batch")
// or unknown. Nodes are kept in topological order; passes keep it that way.
#ifndef KVANT_GRAPH_GRAPH_H_
#define KVANT_GRAPH_GRAPH_H_

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "kvant/kvant.h"

namespace kvant {

// One dimension: a known size (value >= 0) or unknown, optionally named.
struct Dim {
  int64_t value = -1;
  std::string symbol;

  static Dim Known(int64_t v) { return Dim{v, ""}; }
  static Dim Symbol(std::string s) { return Dim{-1, std::move(s)}; }
  bool known() const { return value >= 0; }
  bool operator==(const Dim& o) const {
    return known() ? value == o.value : (!o.known() && !symbol.empty() && symbol == o.symbol);
  }
  std::string ToString() const;
};

class Graph;

struct Shape {
  bool rank_known = false;
  std::vector<Dim> dims;

  static Shape Unknown() { return Shape{}; }
  static Shape Of(const std::vector<int64_t>& sizes);
  int64_t rank() const { return static_cast<int64_t>(dims.size()); }
  bool IsStatic() const;
  // Sizes of a static shape (unknown dimensions read as -1).
  std::vector<int64_t> Sizes() const;
  std::string ToString() const;
};

// Total element count, or an error if the product overflows int64.
absl::StatusOr<int64_t> ElementCount(const std::vector<int64_t>& sizes);

struct Attribute {
  enum class Kind { kInt, kFloat, kString, kInts, kFloats, kStrings, kTensor, kGraph, kUnsupported };
  Kind kind = Kind::kUnsupported;
  int64_t i = 0;
  float f = 0;
  std::string s;
  std::vector<int64_t> ints;
  std::vector<float> floats;
  std::vector<std::string> strings;
  Tensor t;
  std::shared_ptr<const Graph> g;  // a subgraph (If branches)
};

class AttributeMap {
 public:
  bool Has(const std::string& name) const { return map_.contains(name); }
  void Set(const std::string& name, Attribute a) { map_[name] = std::move(a); }
  void SetInt(const std::string& name, int64_t v);
  void SetFloat(const std::string& name, float v);
  void SetInts(const std::string& name, std::vector<int64_t> v);
  void SetString(const std::string& name, std::string v);
  void Erase(const std::string& name) { map_.erase(name); }

  int64_t GetInt(const std::string& name, int64_t def) const;
  float GetFloat(const std::string& name, float def) const;
  std::string GetString(const std::string& name, const std::string& def) const;
  std::vector<int64_t> GetInts(const std::string& name, std::vector<int64_t> def = {}) const;
  std::vector<float> GetFloats(const std::string& name) const;
  const Attribute* Find(const std::string& name) const;
  const absl::flat_hash_map<std::string, Attribute>& all() const { return map_; }
  // The attributes whose names start with `prefix`, without it (a fused
  // node's "depthwise:group" is its depthwise stage's "group").
  AttributeMap WithPrefix(const std::string& prefix) const;

 private:
  absl::flat_hash_map<std::string, Attribute> map_;
};

struct Node {
  std::string name;
  std::string op_type;
  std::string domain;  // "" for the default ONNX domain
  std::vector<std::string> inputs;   // "" marks an omitted optional input
  std::vector<std::string> outputs;  // "" marks an omitted optional output
  AttributeMap attrs;
  // Outer-scope values its subgraphs read (If branches): dependencies for
  // ordering and liveness, never kernel inputs.
  std::vector<std::string> implicit_inputs;

  // "Conv 'conv1'" - how error messages name a node.
  std::string Label() const;
};

struct ValueType {
  DataType dtype = DataType::kUndefined;
  Shape shape;
};

class Graph {
 public:
  std::string name;
  std::string source;  // file the graph came from, for error messages
  int64_t opset = 0;   // default-domain opset
  std::vector<Node> nodes;  // topological order
  std::vector<std::string> inputs;   // graph inputs (initializers excluded)
  std::vector<std::string> outputs;
  absl::flat_hash_map<std::string, Tensor> initializers;
  absl::flat_hash_map<std::string, ValueType> values;

  bool IsConstant(const std::string& value) const { return initializers.contains(value); }
  const Tensor* FindConstant(const std::string& value) const;
  const ValueType* FindType(const std::string& value) const;
  bool IsGraphOutput(const std::string& value) const;

  // Reorders nodes topologically; fails on a cycle, a value produced twice or a
  // node input that nothing produces. A subgraph (`outer_scope`) may read
  // values its parent produces.
  absl::Status TopologicalSort(bool outer_scope = false);
  // Values this graph's nodes (and nested subgraphs) read but do not produce.
  std::vector<std::string> OuterReferences() const;
  // Number of nodes that read each value (graph outputs count once).
  absl::flat_hash_map<std::string, int> UseCounts() const;
  // Index of the node producing each value.
  absl::flat_hash_map<std::string, int> Producers() const;
  // Returns a fresh value name starting with `hint`.
  std::string UniqueName(const std::string& hint) const;
  // Adds `t` as an initializer under a fresh name starting with `hint`; returns the name.
  std::string AddConstant(const std::string& hint, const Tensor& t);
  // Drops the nodes whose index is marked, keeping the order of the others.
  void RemoveNodes(const std::vector<bool>& removed);

  // Readable dump: inputs, initializers (shapes only), nodes with attributes.
  std::string DebugString() const;
};

}  // namespace kvant

#endif  // KVANT_GRAPH_GRAPH_H_
