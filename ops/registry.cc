// Kernel selection and single-node evaluation (for constant folding).
#include "ops/registry.h"

#include <cstdlib>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"

namespace kvant {

bool HasKernelFor(absl::Span<const KernelDef> table, const std::string& domain, const std::string& op) {
  for (const KernelDef& d : table) {
    if (domain == d.domain && op == d.op) return true;
  }
  return false;
}

absl::StatusOr<const KernelDef*> SelectKernel(absl::Span<const KernelDef> table,
                                              const std::string& domain, const std::string& op,
                                              DataType dtype, CpuFeatures features,
                                              const std::string& node_label, int64_t opset) {
  return SelectKernel(table, domain, op, std::vector<DataType>{dtype}, features, node_label, opset);
}

absl::StatusOr<const KernelDef*> SelectKernel(absl::Span<const KernelDef> table,
                                              const std::string& domain, const std::string& op,
                                              const std::vector<DataType>& input_types, CpuFeatures features,
                                              const std::string& node_label, int64_t opset) {
  const KernelDef* best = nullptr;
  std::vector<std::string> tried;
  DataType dtype = input_types.empty() ? DataType::kUndefined : input_types[0];
  for (const KernelDef& d : table) {
    if (domain != d.domain || op != d.op) continue;
    // The row's type input decides (QLinearConcat: its first tensor, input 2).
    dtype = d.type_input < static_cast<int>(input_types.size()) ? input_types[d.type_input] : DataType::kUndefined;
    if ((d.dtypes & DtypeBit(dtype)) == 0) {
      tried.push_back(absl::StrCat(d.name, " (type)"));
      continue;
    }
    if ((d.needs & features) != d.needs) {
      tried.push_back(absl::StrCat(d.name, " (needs CPU features this machine lacks)"));
      continue;
    }
    if (best == nullptr || d.priority > best->priority) best = &d;
  }
  if (best != nullptr) return best;
  if (tried.empty()) {
    return absl::UnimplementedError(absl::StrFormat(
        "failed to compile node %s (opset %d): operator %s%s is not supported by this runtime",
        node_label, opset, domain.empty() ? "" : absl::StrCat(domain, "."), op));
  }
  return absl::UnimplementedError(absl::StrFormat(
      "failed to compile node %s (opset %d): no CPU kernel takes element type %s; tried %s",
      node_label, opset, DataTypeName(dtype), absl::StrJoin(tried, ", ")));
}

KernelInit KernelInitFor(const Graph& graph, const Node& node, CpuFeatures cpu) {
  KernelInit init;
  init.node_label = node.Label();
  init.op = node.op_type;
  init.attrs = &node.attrs;
  init.opset = graph.opset;
  init.cpu = cpu;
  for (const std::string& in : node.inputs) {
    const ValueType* t = in.empty() ? nullptr : graph.FindType(in);
    init.input_types.push_back(t ? t->dtype : DataType::kUndefined);
    init.input_shapes.push_back(t ? t->shape : Shape::Unknown());
    init.constant_inputs.push_back(in.empty() ? nullptr : graph.FindConstant(in));
  }
  for (const std::string& out : node.outputs) {
    const ValueType* t = out.empty() ? nullptr : graph.FindType(out);
    init.output_types.push_back(t ? t->dtype : DataType::kUndefined);
  }
  return init;
}

absl::StatusOr<std::vector<Tensor>> EvaluateOnCpu(const KernelDef& def, const KernelInit& init,
                                                  const std::vector<const Tensor*>& inputs,
                                                  const std::vector<ValueType>& outputs) {
  auto kernel = def.factory(init);
  if (!kernel.ok()) return kernel.status();
  std::vector<Tensor> results;
  std::vector<std::vector<int64_t>> out_shapes;
  for (const ValueType& vt : outputs) {
    if (!vt.shape.IsStatic()) {
      return absl::FailedPreconditionError(
          absl::StrFormat("failed to fold node %s: output shape must be static", init.node_label));
    }
    results.push_back(Tensor::Zeros(vt.dtype, vt.shape.Sizes()));
  }
  std::vector<TensorArg> in_args(inputs.size()), out_args(outputs.size());
  KernelShapes shapes;
  for (size_t i = 0; i < inputs.size(); ++i) {
    if (inputs[i] == nullptr) {
      shapes.inputs.emplace_back();
      continue;
    }
    in_args[i] = TensorArg{inputs[i]->dtype(), inputs[i]->shape(),
                           const_cast<void*>(inputs[i]->raw_data())};
    shapes.inputs.push_back(inputs[i]->shape());
  }
  for (size_t i = 0; i < results.size(); ++i) {
    out_args[i] = TensorArg{results[i].dtype(), results[i].shape(), results[i].raw_data()};
    shapes.outputs.push_back(results[i].shape());
  }
  const size_t scratch_bytes = (*kernel)->ScratchBytes(shapes);
  void* scratch_block = nullptr;
  if (scratch_bytes > 0 && posix_memalign(&scratch_block, 64, scratch_bytes) != 0) {
    return absl::ResourceExhaustedError(absl::StrFormat("failed to evaluate node %s: allocating %d scratch bytes failed",
                                                        init.node_label, scratch_bytes));
  }
  std::shared_ptr<void> scratch(scratch_block, [](void* p) { std::free(p); });
  InlineRunner runner;
  KernelContext ctx{in_args, out_args, scratch.get(), &runner};
  if (auto s = (*kernel)->Run(ctx); !s.ok()) return s;
  return results;
}

}  // namespace kvant
