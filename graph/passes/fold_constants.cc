// Constant folding: evaluates nodes whose inputs are all constant through the
// CPU kernel registry, and Shape/Size of statically shaped values, in one sweep with
// shape inference so that shape arithmetic (Shape -> Gather -> Concat ->
// Reshape) collapses once input shapes are known.
#include "absl/strings/str_format.h"
#include "graph/passes/passes.h"
#include "ops/registry.h"

namespace kvant {
namespace {

bool Foldable(const Graph& g, const Node& n) {
  if ((n.op_type == "Shape" || n.op_type == "Size") && n.domain.empty()) {
    const ValueType* t = g.FindType(n.inputs[0]);
    return t != nullptr && t->shape.IsStatic();
  }
  bool any = false;
  for (const std::string& in : n.inputs) {
    if (in.empty()) continue;
    if (!g.IsConstant(in)) return false;
    any = true;
  }
  return any;
}

}  // namespace

absl::Status FoldConstants(Graph& graph, CpuFeatures cpu, int64_t max_fold_bytes) {
  std::vector<Node> kept;
  kept.reserve(graph.nodes.size());
  for (Node& node : graph.nodes) {
    if (auto s = InferNodeShapes(graph, node); !s.ok()) return s;
    bool fold = Foldable(graph, node);
    int64_t out_bytes = 0;
    std::vector<ValueType> outs;
    for (const std::string& o : node.outputs) {
      const ValueType* t = o.empty() ? nullptr : graph.FindType(o);
      if (t == nullptr || !t->shape.IsStatic()) {
        fold = false;
        break;
      }
      auto count = ElementCount(t->shape.Sizes());
      if (!count.ok()) return absl::InvalidArgumentError(absl::StrFormat(
          "failed to load %s: output '%s' of node %s: %s", graph.source, o, node.Label(), count.status().message()));
      out_bytes += *count * DataTypeSize(t->dtype);
      outs.push_back(*t);
    }
    if (fold && out_bytes > max_fold_bytes) fold = false;
    const KernelDef* def = nullptr;
    if (fold) {
      const std::string& type_value = node.inputs[0];
      auto sel = SelectKernel(CpuKernelDefs(), node.domain, node.op_type, graph.FindType(type_value)->dtype, cpu,
                              node.Label(), graph.opset);
      if (sel.ok()) def = *sel;
      else fold = false;  // left to compile, which reports it
    }
    if (!fold) {
      kept.push_back(std::move(node));
      continue;
    }
    KernelInit init;
    init.node_label = node.Label();
    init.op = node.op_type;
    init.attrs = &node.attrs;
    init.opset = graph.opset;
    init.cpu = cpu;
    std::vector<const Tensor*> inputs;
    std::vector<Tensor> shape_holder;
    shape_holder.reserve(node.inputs.size());
    for (const std::string& in : node.inputs) {
      const Tensor* t = in.empty() ? nullptr : graph.FindConstant(in);
      if (t == nullptr && !in.empty()) {
        // Shape of a non-constant value: hand the kernel a shape-only view.
        const ValueType* vt = graph.FindType(in);
        shape_holder.push_back(Tensor::Wrap(vt->dtype, vt->shape.Sizes(), nullptr));
        t = &shape_holder.back();
      }
      inputs.push_back(t);
      init.input_types.push_back(t ? t->dtype() : DataType::kUndefined);
      init.constant_inputs.push_back(t);
      init.input_shapes.push_back(t ? Shape::Of(t->shape()) : Shape::Unknown());
    }
    for (const ValueType& vt : outs) init.output_types.push_back(vt.dtype);
    auto results = EvaluateOnCpu(*def, init, inputs, outs);
    if (!results.ok()) {
      return absl::Status(results.status().code(),
                          absl::StrFormat("failed to fold node %s of %s: %s", node.Label(), graph.source,
                                          results.status().message()));
    }
    for (size_t i = 0; i < node.outputs.size(); ++i) graph.initializers[node.outputs[i]] = (*results)[i];
  }
  graph.nodes = std::move(kept);
  return absl::OkStatus();
}

}  // namespace kvant
