// Kernel selection and weight pre-packing (CompileModel), and per-shape
// planning: schedule, slots, lifetimes, in-place reuse, arena (PlanForShapes).
#include "runtime/compile.h"

#include <algorithm>

#include "absl/container/flat_hash_set.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "graph/passes/passes.h"
#include "ops/registry.h"

namespace kvant {
namespace {

// Node names key the kernels; make them unique.
void UniquifyNodeNames(Graph& graph) {
  absl::flat_hash_set<std::string> seen;
  for (Node& n : graph.nodes) {
    std::string name = n.name;
    for (int i = 1; !seen.insert(name).second; ++i) name = absl::StrCat(n.name, "__", i);
    n.name = name;
  }
}

std::string ShapeText(const std::vector<int64_t>& s) { return absl::StrCat("[", absl::StrJoin(s, ","), "]"); }

// Selects and creates the kernel of node `n` of `graph` (pre-packing its constants).
absl::StatusOr<CompiledNode> CreateKernel(const Graph& graph, const Node& n, CpuFeatures cpu) {
  if (n.op_type == "If" && n.domain.empty()) {
    return absl::UnimplementedError(absl::StrFormat(
        "failed to plan node %s of %s: If whose condition is only known at run time is not supported (conditions "
        "that fold to a constant once input shapes are known are)",
        n.Label(), graph.source));
  }
  const KernelInit init = KernelInitFor(graph, n, cpu);
  CompiledNode cn;
  // Kernels are chosen by the element type of their type input (usually the first).
  auto def = SelectKernel(CpuKernelDefs(), n.domain, n.op_type, init.input_types, cpu, n.Label(), graph.opset);
  if (!def.ok()) {
    return absl::Status(def.status().code(), absl::StrCat(def.status().message(), " (model ", graph.source, ")"));
  }
  cn.def = *def;
  auto kernel = cn.def->factory(init);
  if (!kernel.ok()) return kernel.status();
  cn.kernel = *std::move(kernel);
  return cn;
}

// The plan report's note of what graph passes folded into a node: a MatMul's
// bias (fuse_matmul_bias.cc), an activation and an affine tail
// (fuse_activation.cc), a quantized product's bias and clamp (fuse_qdq.cc),
// e.g. "+bias+Gelu".
std::string FusedText(const Node& n) {
  std::string s;
  if (n.attrs.Has("fused_bias") || (n.domain == "kvant" && n.op_type == "QLinearMatMul")) s += "+bias";
  if (n.attrs.Has("kvant_clip_min")) s += "+clip";
  const std::string act = n.attrs.GetString("fused_activation", "");
  if (!act.empty()) s += "+" + act;
  if (n.attrs.Has("fused_scale") || n.attrs.Has("fused_shift")) s += "+affine";
  return s;
}

}  // namespace

absl::StatusOr<std::unique_ptr<CompiledModel>> CompileModel(Graph graph, const SessionOptions& options,
                                                           CpuFeatures cpu) {
  auto model = std::make_unique<CompiledModel>();
  UniquifyNodeNames(graph);
  OptimizeOptions opt;
  opt.optimize = options.optimize;
  opt.dynamic_int8 = options.dynamic_int8;
  opt.bf16 = options.precision == Precision::kBf16;
  opt.fp16 = options.precision == Precision::kFp16;
  opt.cpu = cpu;
  if (auto s = OptimizeGraph(graph, opt); !s.ok()) return s;
  model->optimize = opt;
  model->optimize.widen_fp16_model = false;
  model->cpu = cpu;
  model->num_threads = std::max(1, options.num_threads);
  model->max_arena_bytes = options.max_arena_bytes;
  for (const auto& [name, t] : graph.initializers) model->weight_bytes += t.byte_size();
  for (const Node& n : graph.nodes) {
    if (n.op_type == "If" && n.domain.empty()) continue;  // inlined when its condition folds at plan time
    auto cn = CreateKernel(graph, n, cpu);
    if (!cn.ok()) return cn.status();
    model->weight_bytes += cn->kernel->PackedBytes();
    model->nodes[n.name] = *std::move(cn);
  }
  model->graph = std::move(graph);
  return model;
}

// Planning steps:
//  1. specialize a copy of the graph to the input shapes; where that inlines
//     an If (its condition folds now), optimize the graph again, so that the
//     branch's nodes get the fusions, layouts and precisions of the rest
//     (silero VAD is one If around the whole model), and specialize again;
//  2. give every value a slot: graph input, constant, graph output, or arena;
//  3. lifetimes: an arena value lives from its producing step to its last reader;
//  4. in-place: an output a kernel may write over its dying input of equal
//     size shares that input's buffer;
//  5. scratch is a buffer alive for its step only;
//  6. the memory planner places buffers; slots take their buffer's offset.
absl::StatusOr<std::unique_ptr<ExecutionPlan>> PlanForShapes(
    const CompiledModel& model, const std::map<std::string, std::vector<int64_t>>& input_shapes,
    const TensorMap* input_values) {
  Graph g = model.graph;
  if (input_values != nullptr) {
    for (const auto& [name, t] : *input_values) g.initializers[name] = t.Clone();
  }
  auto count_ifs = [](const Graph& graph) {
    return std::count_if(graph.nodes.begin(), graph.nodes.end(),
                         [](const Node& n) { return n.op_type == "If" && n.domain.empty(); });
  };
  const auto ifs = count_ifs(g);
  // With If nodes the first sweep keeps DequantizeLinear of constants: an
  // inlined branch's quantized weights, for the QDQ fusions of the second
  // optimization (folded, they would be float weights of a float Conv).
  auto keep_dequantize = [](const Node& n) { return n.op_type != "DequantizeLinear" || !n.domain.empty(); };
  if (auto s = SpecializeShapes(g, input_shapes, model.cpu, ifs > 0 ? std::function<bool(const Node&)>(keep_dequantize)
                                                                    : nullptr);
      !s.ok()) {
    return s;
  }
  if (count_ifs(g) < ifs) {
    if (auto s = OptimizeGraph(g, model.optimize); !s.ok()) return s;
  }
  if (ifs > 0) {
    if (auto s = SpecializeShapes(g, input_shapes, model.cpu); !s.ok()) return s;
  }
  // Kernels compiled at load serve the nodes that are still as they were.
  absl::flat_hash_map<std::string, const Node*> loaded;
  for (const Node& n : model.graph.nodes) loaded[n.name] = &n;
  auto unchanged = [&](const Node& n) {
    auto it = loaded.find(n.name);
    return it != loaded.end() && it->second->op_type == n.op_type && it->second->domain == n.domain &&
           it->second->inputs == n.inputs && it->second->outputs == n.outputs;
  };
  auto plan = std::make_unique<ExecutionPlan>();
  plan->constants = g.initializers;

  absl::flat_hash_map<std::string, int> slot_of;
  auto add_slot = [&](const std::string& name) -> absl::StatusOr<int> {
    auto it = slot_of.find(name);
    if (it != slot_of.end()) return it->second;
    ValueSlot s;
    s.name = name;
    const ValueType* t = g.FindType(name);
    if (t == nullptr) return absl::InternalError(absl::StrCat("no type for value ", name));
    s.dtype = t->dtype;
    s.shape = t->shape.Sizes();
    auto count = ElementCount(s.shape);
    if (!count.ok()) {
      return absl::InvalidArgumentError(absl::StrFormat("failed to plan %s: value '%s': %s", g.source, name,
                                                        count.status().message()));
    }
    if (const Tensor* c = g.FindConstant(name)) {
      s.kind = ValueSlot::Kind::kConstant;
      s.constant = c->raw_data();
    } else if (auto in = std::find(g.inputs.begin(), g.inputs.end(), name); in != g.inputs.end()) {
      s.kind = ValueSlot::Kind::kInput;
      s.index = in - g.inputs.begin();
    } else if (auto out = std::find(g.outputs.begin(), g.outputs.end(), name); out != g.outputs.end()) {
      s.kind = ValueSlot::Kind::kOutput;
      s.index = out - g.outputs.begin();
    }
    plan->slots.push_back(std::move(s));
    slot_of[name] = plan->slots.size() - 1;
    return static_cast<int>(plan->slots.size() - 1);
  };

  for (const Node& n : g.nodes) {
    // Nodes of If branches inlined at this shape get their kernels here.
    const CompiledNode* compiled = nullptr;
    if (auto it = model.nodes.find(n.name); it != model.nodes.end() && unchanged(n)) {
      compiled = &it->second;
    } else {
      plan->own_nodes.push_back(std::make_unique<Node>(n));
      auto cn = CreateKernel(g, *plan->own_nodes.back(), model.cpu);
      if (!cn.ok()) return cn.status();
      plan->own_kernels.push_back(std::make_unique<CompiledNode>(*std::move(cn)));
      compiled = plan->own_kernels.back().get();
    }
    PlanStep step;
    step.kernel = compiled->kernel.get();
    step.def = compiled->def;
    step.label = n.Label();
    step.fused = FusedText(n);
    for (const std::string& in : n.inputs) {
      if (in.empty()) {
        step.inputs.push_back(-1);
        continue;
      }
      auto s = add_slot(in);
      if (!s.ok()) return s.status();
      step.inputs.push_back(*s);
    }
    for (const std::string& out : n.outputs) {
      if (out.empty()) {
        step.outputs.push_back(-1);
        continue;
      }
      auto s = add_slot(out);
      if (!s.ok()) return s.status();
      step.outputs.push_back(*s);
    }
    plan->steps.push_back(std::move(step));
  }
  for (const std::string& in : g.inputs) {
    auto it = slot_of.find(in);
    plan->input_slots.push_back(it == slot_of.end() ? -1 : it->second);
  }
  for (const std::string& out : g.outputs) {
    auto s = add_slot(out);
    if (!s.ok()) return s.status();
    plan->output_slots.push_back(*s);
  }

  // 3. Lifetimes of arena slots.
  const int num_steps = plan->steps.size();
  std::vector<int> first(plan->slots.size(), -1), last(plan->slots.size(), -1);
  for (int i = 0; i < num_steps; ++i) {
    for (int s : plan->steps[i].outputs) {
      if (s >= 0 && first[s] < 0) first[s] = last[s] = i;
    }
    for (int s : plan->steps[i].inputs) {
      if (s >= 0) last[s] = std::max(last[s], i);
    }
  }
  // 4-5. Buffers.
  std::vector<int> buffer_of(plan->slots.size(), -1);
  for (int i = 0; i < num_steps; ++i) {
    PlanStep& step = plan->steps[i];
    for (size_t o = 0; o < step.outputs.size(); ++o) {
      const int s = step.outputs[o];
      if (s < 0 || plan->slots[s].kind != ValueSlot::Kind::kArena) continue;
      const ValueSlot& slot = plan->slots[s];
      const int64_t bytes = ElementCount(slot.shape).value() * DataTypeSize(slot.dtype);
      const int j = o == 0 ? step.def->inplace_input : -1;
      if (j >= 0 && j < static_cast<int>(step.inputs.size()) && step.inputs[j] >= 0) {
        const int in = step.inputs[j];
        const ValueSlot& is = plan->slots[in];
        const int64_t in_bytes = ElementCount(is.shape).value() * DataTypeSize(is.dtype);
        const bool read_once = std::count(step.inputs.begin(), step.inputs.end(), in) == 1;
        if (is.kind == ValueSlot::Kind::kArena && last[in] == i && in_bytes == bytes && read_once &&
            buffer_of[in] >= 0) {
          buffer_of[s] = buffer_of[in];
          BufferRequest& b = plan->buffers[buffer_of[s]];
          b.last = std::max(b.last, last[s]);
          b.name = absl::StrCat(b.name, "=", slot.name);
          continue;
        }
      }
      buffer_of[s] = plan->buffers.size();
      plan->buffers.push_back(BufferRequest{bytes, first[s], std::max(last[s], i), slot.name});
    }
    KernelShapes shapes;
    shapes.num_threads = model.num_threads;
    for (int s : step.inputs) shapes.inputs.push_back(s >= 0 ? plan->slots[s].shape : std::vector<int64_t>{});
    for (int s : step.outputs) shapes.outputs.push_back(s >= 0 ? plan->slots[s].shape : std::vector<int64_t>{});
    step.scratch_bytes = step.kernel->ScratchBytes(shapes);
    if (step.scratch_bytes > 0) {
      step.scratch_offset = plan->buffers.size();  // buffer index until placement
      plan->buffers.push_back(BufferRequest{static_cast<int64_t>(step.scratch_bytes), i, i,
                                            absl::StrCat("scratch:", step.label)});
    }
  }
  // 6. Placement.
  plan->memory = PlanBest(plan->buffers);
  // The graph outputs are allocated beside the arena for each run: they count
  // against the same bound (a 20 M-element output is memory as much as an
  // intermediate of that size).
  int64_t output_bytes = 0;
  std::vector<bool> counted(plan->slots.size(), false);
  for (int s : plan->output_slots) {
    const ValueSlot& slot = plan->slots[s];
    if (slot.kind == ValueSlot::Kind::kOutput && !counted[s]) {
      counted[s] = true;
      output_bytes += ElementCount(slot.shape).value() * static_cast<int64_t>(DataTypeSize(slot.dtype));
    }
  }
  if (plan->memory.arena_bytes > model.max_arena_bytes ||
      output_bytes > model.max_arena_bytes - plan->memory.arena_bytes) {
    return absl::ResourceExhaustedError(absl::StrFormat(
        "failed to plan %s: arena and outputs must be at most %d bytes (max_arena_bytes), got %d + %d", g.source,
        model.max_arena_bytes, plan->memory.arena_bytes, output_bytes));
  }
  for (size_t s = 0; s < plan->slots.size(); ++s) {
    if (buffer_of[s] >= 0) {
      plan->slots[s].index = buffer_of[s];
      plan->slots[s].offset = plan->memory.offsets[buffer_of[s]];
    }
  }
  for (PlanStep& step : plan->steps) {
    if (step.scratch_bytes > 0) step.scratch_offset = plan->memory.offsets[step.scratch_offset];
  }

  PlanReport& r = plan->report;
  // What each step computes in: "int8" for the quantized products and
  // operators, "q/dq" for conversions, else its output's element type.
  int transposes = 0;
  auto precision = [&](const PlanStep& step) -> std::string {
    const std::string op = step.def->op;
    static const char* kInt8[] = {"MatMulInteger",      "ConvInteger",        "QGemm", "DynamicQuantizeMatMul",
                                  "MatMulIntegerToFloat", "DynamicQuantizeLSTM", "DynamicQuantizeGRU",
                                  "DynamicQuantizeRNN"};
    bool int8 = op.rfind("QLinear", 0) == 0;  // QLinearConv(Nhwc), QLinearMatMul, QLinearAdd, ...
    for (const char* q : kInt8) int8 |= op == q;
    if (int8) {
      ++r.int8_steps;
      return "int8";
    }
    if (op == "QuantizeLinear" || op == "QuantizeLinearNhwc" || op == "DequantizeLinear" ||
        op == "DynamicQuantizeLinear") {
      ++r.conversions;
      return "q/dq";
    }
    const std::string kernel = step.kernel->Describe();
    // SessionOptions::precision = bf16 (a convolution chain with a BF16 stage counts as BF16)
    if (kernel.find("gemm_bf16") != std::string::npos) {
      ++r.float_steps;
      return "bf16";
    }
    if (kernel.find(kHalfWeightsTag) != std::string::npos) {  // SessionOptions::precision = fp16
      ++r.float_steps;
      return "fp16";
    }
    if (op == "Transpose") ++transposes;
    const int out = step.outputs.empty() ? -1 : step.outputs[0];
    const DataType t = out >= 0 ? plan->slots[out].dtype : DataType::kUndefined;
    if (t == DataType::kFloat32 && op != "Transpose" && op != "Reshape" && op != "Shape") ++r.float_steps;
    return DataTypeName(t);
  };
  r.arena_bytes = plan->memory.arena_bytes;
  r.lower_bound_bytes = plan->memory.lower_bound;
  // Weights of If branches inlined at this shape: their constants and the
  // packed weights of their kernels, on top of the loaded graph's.
  r.weight_bytes = model.weight_bytes;
  for (const ValueSlot& slot : plan->slots) {
    if (slot.kind == ValueSlot::Kind::kConstant && !model.graph.initializers.contains(slot.name)) {
      r.weight_bytes += plan->constants.at(slot.name).byte_size();
    }
  }
  for (const auto& own : plan->own_kernels) r.weight_bytes += own->kernel->PackedBytes();
  r.num_steps = num_steps;
  for (int i = 0; i < num_steps; ++i) {
    PlanStep& step = plan->steps[i];
    step.precision = precision(step);
    std::vector<std::string> outs;
    for (int s : step.outputs) {
      if (s < 0) continue;
      const ValueSlot& v = plan->slots[s];
      std::string where = v.kind == ValueSlot::Kind::kArena ? absl::StrCat("@", v.offset) : "(output)";
      outs.push_back(absl::StrCat(v.name, ":", DataTypeName(v.dtype), ShapeText(v.shape), " ", where));
    }
    std::string impl = step.kernel->Describe();
    r.steps.push_back(PlanStepReport{step.label, step.def->op, step.def->name, impl, step.precision});
    const std::string shown = absl::StrCat(impl, impl.empty() || step.fused.empty() ? "" : " ", step.fused);
    absl::StrAppend(&r.text, absl::StrFormat("%4d %-40s %-5s %-14s %-24s -> %s\n", i, step.label, step.precision,
                                             step.def->name, shown, absl::StrJoin(outs, ", ")));
  }
  absl::StrAppend(&r.text, absl::StrFormat("steps: %d int8, %d float, %d Q/DQ conversions, %d transposes\n",
                                           r.int8_steps, r.float_steps, r.conversions, transposes));
  absl::StrAppend(&r.text, absl::StrFormat("arena %d bytes, lower bound %d bytes (%.3fx), weights %d bytes\n",
                                           r.arena_bytes, r.lower_bound_bytes,
                                           r.lower_bound_bytes ? double(r.arena_bytes) / r.lower_bound_bytes : 1.0,
                                           r.weight_bytes));
  return plan;
}

}  // namespace kvant
