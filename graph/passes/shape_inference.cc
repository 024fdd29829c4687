// Shape and type inference driven by each operator's shape rule (ops/op_schema).
#include <algorithm>
#include <cstring>

#include "absl/strings/str_format.h"
#include "graph/graph.h"
#include "graph/passes/passes.h"
#include "ops/op_schema.h"

namespace kvant {

namespace {

// Output types of one If branch: the branch is inferred as a graph of its own
// with the outer values it reads (types, and constants) copied in.
absl::StatusOr<std::vector<ValueType>> InferBranch(const Graph& outer, const Graph& branch) {
  Graph g = branch;
  g.source = outer.source;
  g.opset = outer.opset;
  for (const std::string& ref : branch.OuterReferences()) {
    if (const ValueType* t = outer.FindType(ref)) g.values[ref] = *t;
    if (const Tensor* c = outer.FindConstant(ref)) g.initializers[ref] = *c;
  }
  if (auto s = InferShapes(g); !s.ok()) return s;
  std::vector<ValueType> out;
  for (const std::string& o : g.outputs) {
    const ValueType* t = g.FindType(o);
    out.push_back(t ? *t : ValueType{});
  }
  return out;
}

// Both branches inferred; a dimension is kept where they agree.
absl::Status InferIfNode(Graph& graph, const Node& node) {
  if (node.inputs.size() != 1 || node.inputs[0].empty()) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "failed to load %s: node %s must have 1 input (the condition), got %d", graph.source, node.Label(),
        node.inputs.size() == 1 ? 0 : node.inputs.size()));
  }
  const Attribute* then_branch = node.attrs.Find("then_branch");
  const Attribute* else_branch = node.attrs.Find("else_branch");
  if (!then_branch || !else_branch || !then_branch->g || !else_branch->g) {
    return absl::InvalidArgumentError(absl::StrFormat("failed to load %s: node %s must have then_branch and else_branch graphs",
                                                      graph.source, node.Label()));
  }
  auto a = InferBranch(graph, *then_branch->g);
  if (!a.ok()) return a.status();
  auto b = InferBranch(graph, *else_branch->g);
  if (!b.ok()) return b.status();
  if (a->size() != node.outputs.size() || b->size() != node.outputs.size()) {
    return absl::InvalidArgumentError(absl::StrFormat("failed to load %s: both branches of node %s must have %d outputs",
                                                      graph.source, node.Label(), node.outputs.size()));
  }
  for (size_t i = 0; i < node.outputs.size(); ++i) {
    ValueType t = (*a)[i];
    const ValueType& e = (*b)[i];
    if (t.dtype == DataType::kUndefined) t.dtype = e.dtype;
    if (!t.shape.rank_known || !e.shape.rank_known || t.shape.rank() != e.shape.rank()) {
      t.shape = Shape::Unknown();
    } else {
      for (int64_t d = 0; d < t.shape.rank(); ++d) {
        if (!(t.shape.dims[d] == e.shape.dims[d])) t.shape.dims[d] = Dim{};
      }
    }
    if (!node.outputs[i].empty()) graph.values[node.outputs[i]] = t;
  }
  return absl::OkStatus();
}

// The schema's type letters against the inputs' element types.
absl::Status CheckInputTypes(const Graph& graph, const Node& node, const OpSchema& schema,
                             const std::vector<const ValueType*>& inputs) {
  const size_t letters = std::strlen(schema.types);
  int first_t = -1;
  for (size_t i = 0; i < inputs.size() && letters > 0; ++i) {
    if (inputs[i] == nullptr) continue;
    const DataType t = inputs[i]->dtype;
    const char c = schema.types[std::min(i, letters - 1)];
    std::string want;
    switch (c) {
      case 'T':
        if (first_t < 0) {
          first_t = static_cast<int>(i);
        } else if (t != inputs[first_t]->dtype) {
          want = absl::StrFormat("%s like input %d ('%s')", DataTypeName(inputs[first_t]->dtype), first_t,
                                 node.inputs[first_t]);
        }
        break;
      case 'i': if (t != DataType::kInt64) want = "s64"; break;
      case 'I': if (t != DataType::kInt32) want = "s32"; break;
      case 'j': if (t != DataType::kInt64 && t != DataType::kInt32) want = "s32 or s64"; break;
      case 'b': if (t != DataType::kBool) want = "bool"; break;
      default: break;
    }
    if (!want.empty()) {
      return absl::InvalidArgumentError(absl::StrFormat("failed to load %s: input %d ('%s') of node %s must be %s, got %s",
                                                        graph.source, i, node.inputs[i], node.Label(), want,
                                                        DataTypeName(t)));
    }
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status InferNodeShapes(Graph& graph, const Node& node) {
  if (node.op_type == "If" && node.domain.empty()) return InferIfNode(graph, node);
  const OpSchema* schema = FindSchema(node.domain, node.op_type);
  if (schema == nullptr) {
    return absl::UnimplementedError(absl::StrFormat(
        "failed to load %s: operator %s%s of node '%s' (opset %d) is not supported", graph.source,
        node.domain.empty() ? "" : node.domain + ".", node.op_type, node.name, graph.opset));
  }
  const int n = static_cast<int>(node.inputs.size());
  if (n < schema->min_inputs || n > schema->max_inputs) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "failed to load %s: node %s must have %d to %d inputs, got %d", graph.source, node.Label(),
        schema->min_inputs, schema->max_inputs, n));
  }
  if (std::all_of(node.outputs.begin(), node.outputs.end(), [](const std::string& o) { return o.empty(); })) {
    return absl::InvalidArgumentError(absl::StrFormat("failed to load %s: node %s must have an output, got none",
                                                      graph.source, node.Label()));
  }
  std::vector<const ValueType*> inputs(n, nullptr);
  std::vector<const Tensor*> constants(n, nullptr);
  for (int i = 0; i < n; ++i) {
    if (node.inputs[i].empty()) continue;
    inputs[i] = graph.FindType(node.inputs[i]);
    if (inputs[i] == nullptr || inputs[i]->dtype == DataType::kUndefined) {
      return absl::InvalidArgumentError(absl::StrFormat(
          "failed to load %s: input '%s' of node %s has no known type", graph.source, node.inputs[i], node.Label()));
    }
    constants[i] = graph.FindConstant(node.inputs[i]);
  }
  const size_t letters = std::strlen(schema->types);
  for (int i = 0; i < schema->min_inputs; ++i) {
    const bool optional = letters > 0 && schema->types[std::min<size_t>(i, letters - 1)] == '?';
    if (inputs[i] == nullptr && !optional) {
      return absl::InvalidArgumentError(absl::StrFormat(
          "failed to load %s: node %s must have input %d, got none", graph.source, node.Label(), i));
    }
  }
  if (auto s = CheckInputTypes(graph, node, *schema, inputs); !s.ok()) return s;
  InferContext ctx(node, graph.opset, std::move(inputs), std::move(constants));
  if (auto s = schema->infer(ctx); !s.ok()) {
    return absl::Status(s.code(), absl::StrFormat("%s (model %s)", s.message(), graph.source));
  }
  for (size_t i = 0; i < node.outputs.size(); ++i) {
    if (!node.outputs[i].empty()) graph.values[node.outputs[i]] = ctx.output(i);
  }
  return absl::OkStatus();
}

absl::Status InferShapes(Graph& graph) {
  for (const Node& node : graph.nodes) {
    if (auto s = InferNodeShapes(graph, node); !s.ok()) return s;
  }
  return absl::OkStatus();
}

}  // namespace kvant
