// Compile: Graph -> kernels (once per session) -> ExecutionPlan (once per
// input-shape signature).
//
// CompileModel selects a kernel for every node from the registry and the CPU
// capability table, and lets each kernel pre-pack its constant weights.
// PlanForShapes specializes the graph to concrete input shapes (folding the
// shape arithmetic), lays the steps out, and places every intermediate tensor
// and scratch buffer in one arena with the memory planner.
#ifndef KVANT_RUNTIME_COMPILE_H_
#define KVANT_RUNTIME_COMPILE_H_

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "graph/graph.h"
#include "graph/passes/passes.h"
#include "kvant/kvant.h"
#include "ops/kernel.h"
#include "runtime/memory_planner.h"

namespace kvant {

struct CompiledNode {
  const KernelDef* def = nullptr;
  std::unique_ptr<Kernel> kernel;
};

struct CompiledModel {
  Graph graph;  // optimized; shapes may be symbolic
  OptimizeOptions optimize;  // how it was optimized (If branches inlined per plan get the same)
  absl::flat_hash_map<std::string, CompiledNode> nodes;  // by (unique) node name
  CpuFeatures cpu = 0;
  int num_threads = 1;
  int64_t max_arena_bytes = 0;
  int64_t weight_bytes = 0;
};

absl::StatusOr<std::unique_ptr<CompiledModel>> CompileModel(Graph graph, const SessionOptions& options,
                                                           CpuFeatures cpu);

// Where a value lives during a run.
struct ValueSlot {
  enum class Kind { kInput, kConstant, kArena, kOutput };
  Kind kind = Kind::kArena;
  std::string name;
  DataType dtype = DataType::kUndefined;
  std::vector<int64_t> shape;
  int index = -1;          // graph input / output index, or buffer index for kArena
  const void* constant = nullptr;
  int64_t offset = 0;      // arena offset for kArena
};

struct PlanStep {
  const Kernel* kernel = nullptr;
  const KernelDef* def = nullptr;
  std::string label;
  std::string precision;     // as PlanStepReport::precision
  std::string fused;         // what graph passes folded into the node, e.g. "+bias+Gelu"
  std::vector<int> inputs;   // slot ids, -1 = omitted
  std::vector<int> outputs;  // slot ids, -1 = omitted
  int64_t scratch_offset = 0;
  size_t scratch_bytes = 0;
};

struct ExecutionPlan {
  std::vector<ValueSlot> slots;
  std::vector<PlanStep> steps;
  std::vector<int> input_slots;   // per graph input (-1 if unused)
  std::vector<int> output_slots;  // per graph output
  std::vector<BufferRequest> buffers;
  MemoryPlan memory;
  absl::flat_hash_map<std::string, Tensor> constants;  // initializers of the specialized graph
  // For nodes inlined at this shape: the nodes (kernels may keep pointers to
  // their attributes) and their kernels.
  std::vector<std::unique_ptr<Node>> own_nodes;
  std::vector<std::unique_ptr<CompiledNode>> own_kernels;
  PlanReport report;
};

// `input_values` (optional) fixes some inputs' contents: they are folded as
// constants, for shapes that depend on input data (a Reshape target or Pad
// amounts fed by the caller). Such a plan is only valid for those values.
absl::StatusOr<std::unique_ptr<ExecutionPlan>> PlanForShapes(
    const CompiledModel& model, const std::map<std::string, std::vector<int64_t>>& input_shapes,
    const TensorMap* input_values = nullptr);

}  // namespace kvant

#endif  // KVANT_RUNTIME_COMPILE_H_
