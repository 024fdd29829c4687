// Kernel selection: the highest-priority row of a backend's table whose op,
// dtype and CPU requirements match. Also evaluates a node on constants, which
// constant folding uses.
#ifndef KVANT_OPS_REGISTRY_H_
#define KVANT_OPS_REGISTRY_H_

#include <vector>

#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "ops/kernel.h"

namespace kvant {

// The CPU kernel table, read from ops/cpu/kernels.inc.
absl::Span<const KernelDef> CpuKernelDefs();

// Picks a kernel for `node_label` (op `domain`.`op`, opset) whose type input is
// `dtype`, among rows the CPU `features` allow. Unimplemented lists what was tried.
absl::StatusOr<const KernelDef*> SelectKernel(absl::Span<const KernelDef> table,
                                              const std::string& domain, const std::string& op,
                                              DataType dtype, CpuFeatures features,
                                              const std::string& node_label, int64_t opset);

// The same, each row checked against the type of its own type input.
absl::StatusOr<const KernelDef*> SelectKernel(absl::Span<const KernelDef> table,
                                              const std::string& domain, const std::string& op,
                                              const std::vector<DataType>& input_types, CpuFeatures features,
                                              const std::string& node_label, int64_t opset);
bool HasKernelFor(absl::Span<const KernelDef> table, const std::string& domain, const std::string& op);

// What a kernel factory sees for `node` of `graph`: types, shapes and
// constant inputs as the graph records them.
KernelInit KernelInitFor(const Graph& graph, const Node& node, CpuFeatures cpu);

// Runs one node on constant inputs (nullptr = omitted) with known output types
// and shapes; used by constant folding.
absl::StatusOr<std::vector<Tensor>> EvaluateOnCpu(const KernelDef& def, const KernelInit& init,
                                                  const std::vector<const Tensor*>& inputs,
                                                  const std::vector<ValueType>& outputs);

}  // namespace kvant

#endif  // KVANT_OPS_REGISTRY_H_
