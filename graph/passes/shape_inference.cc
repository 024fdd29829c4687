// Shape and type inference driven by each operator's shape rule (ops/op_schema).
#include "absl/strings/str_format.h"
#include "graph/passes/passes.h"
#include "ops/op_schema.h"

namespace kvant {

absl::Status InferNodeShapes(Graph& graph, const Node& node) {
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
  for (int i = 0; i < schema->min_inputs; ++i) {
    if (inputs[i] == nullptr) {
      return absl::InvalidArgumentError(absl::StrFormat(
          "failed to load %s: node %s must have input %d, got none", graph.source, node.Label(), i));
    }
  }
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
