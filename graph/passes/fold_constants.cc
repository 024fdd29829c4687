// Constant folding: evaluates nodes whose inputs are all constant through the
// CPU kernel registry, and Shape/Size of statically shaped values, in one sweep with
// shape inference so that shape arithmetic (Shape -> Gather -> Concat ->
// Reshape) collapses once input shapes are known. An If whose condition is
// constant is replaced by its chosen branch.
#include <algorithm>
#include <deque>
#include <functional>

#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
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

// A copy of subgraph `sub` whose references to outer values go through
// `mapped` (names the subgraph defines itself shadow outer ones).
std::shared_ptr<const Graph> RenameOuterReferences(const Graph& sub,
                                                   const std::function<std::string(const std::string&)>& mapped) {
  auto g = std::make_shared<Graph>(sub);
  absl::flat_hash_set<std::string> local(g->inputs.begin(), g->inputs.end());
  for (const auto& [name, t] : g->initializers) local.insert(name);
  for (const Node& n : g->nodes) local.insert(n.outputs.begin(), n.outputs.end());
  auto outer = [&](const std::string& v) { return v.empty() || local.contains(v) ? v : mapped(v); };
  for (Node& n : g->nodes) {
    for (std::string& in : n.inputs) in = outer(in);
    for (std::string& in : n.implicit_inputs) in = outer(in);
    std::vector<std::pair<std::string, Attribute>> graphs;
    for (const auto& [name, a] : n.attrs.all()) {
      if (a.kind == Attribute::Kind::kGraph) graphs.emplace_back(name, a);
    }
    for (auto& [name, a] : graphs) {
      a.g = RenameOuterReferences(*a.g, outer);
      n.attrs.Set(name, a);
    }
  }
  for (std::string& o : g->outputs) o = outer(o);
  return g;
}

// The chosen branch of an If whose condition is constant, as nodes of the
// outer graph: values the branch makes are prefixed with the If's name, its
// initializers join the graph, and Identity nodes hand its outputs to the If's.
std::vector<Node> InlineBranch(Graph& graph, const Node& node, bool condition) {
  const Graph& branch = *node.attrs.Find(condition ? "then_branch" : "else_branch")->g;
  const std::string prefix = node.name + (condition ? "/then/" : "/else/");
  absl::flat_hash_map<std::string, std::string> rename;
  for (const auto& [name, t] : branch.initializers) {
    rename[name] = prefix + name;
    graph.initializers[prefix + name] = t;
    graph.values[prefix + name] = ValueType{t.dtype(), Shape::Of(t.shape())};
  }
  for (const Node& n : branch.nodes) {
    for (const std::string& o : n.outputs) {
      if (!o.empty()) rename[o] = prefix + o;
    }
  }
  auto mapped = [&](const std::string& v) {
    auto it = rename.find(v);
    return it == rename.end() ? v : it->second;
  };
  std::vector<Node> out;
  for (const Node& n : branch.nodes) {
    Node m = n;
    m.name = prefix + n.name;
    for (std::string& in : m.inputs) in = in.empty() ? in : mapped(in);
    for (std::string& in : m.implicit_inputs) in = mapped(in);
    for (std::string& o : m.outputs) o = o.empty() ? o : mapped(o);
    // Nested subgraphs read the renamed values too.
    std::vector<std::pair<std::string, Attribute>> graphs;
    for (const auto& [name, a] : m.attrs.all()) {
      if (a.kind == Attribute::Kind::kGraph) graphs.emplace_back(name, a);
    }
    for (auto& [name, a] : graphs) {
      a.g = RenameOuterReferences(*a.g, mapped);
      m.attrs.Set(name, a);
    }
    out.push_back(std::move(m));
  }
  for (size_t i = 0; i < node.outputs.size(); ++i) {
    Node id;
    id.name = prefix + "output_" + std::to_string(i);
    id.op_type = "Identity";
    id.inputs = {mapped(branch.outputs[i])};
    id.outputs = {node.outputs[i]};
    out.push_back(std::move(id));
  }
  return out;
}

absl::Status FoldConstants(Graph& graph, CpuFeatures cpu, int64_t max_fold_bytes,
                           const std::function<bool(const Node&)>& only) {
  std::vector<Node> kept;
  kept.reserve(graph.nodes.size());
  std::deque<Node> pending(std::make_move_iterator(graph.nodes.begin()), std::make_move_iterator(graph.nodes.end()));
  while (!pending.empty()) {
    Node node = std::move(pending.front());
    pending.pop_front();
    if (node.op_type == "If" && node.domain.empty() && !node.inputs.empty()) {  // (no input: InferNodeShapes says so)
      if (const Tensor* cond = graph.FindConstant(node.inputs[0]); cond != nullptr && cond->num_elements() == 1) {
        std::vector<Node> inlined = InlineBranch(graph, node, cond->data<uint8_t>()[0] != 0);
        pending.insert(pending.begin(), std::make_move_iterator(inlined.begin()), std::make_move_iterator(inlined.end()));
        continue;
      }
    }
    if (auto s = InferNodeShapes(graph, node); !s.ok()) return s;
    bool fold = Foldable(graph, node) && (!only || only(node));
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
      // Compared before multiplying: count * 8 can pass 2^63.
      const int64_t size = std::max<int64_t>(1, DataTypeSize(t->dtype));
      if (*count > (max_fold_bytes - out_bytes) / size) {
        fold = false;
        break;
      }
      out_bytes += *count * size;
      outs.push_back(*t);
    }
    if (fold && out_bytes > max_fold_bytes) fold = false;
    const KernelDef* def = nullptr;
    if (fold) {
      std::vector<DataType> types;
      for (const std::string& in : node.inputs) {
        const ValueType* t = in.empty() ? nullptr : graph.FindType(in);
        types.push_back(t ? t->dtype : DataType::kUndefined);
      }
      auto sel = SelectKernel(CpuKernelDefs(), node.domain, node.op_type, types, cpu, node.Label(), graph.opset);
      if (sel.ok()) def = *sel;
      else fold = false;  // left to compile, which reports it
    }
    if (!fold) {
      kept.push_back(std::move(node));
      continue;
    }
    KernelInit init = KernelInitFor(graph, node, cpu);
    std::vector<const Tensor*> inputs;
    std::vector<Tensor> shape_holder;
    shape_holder.reserve(node.inputs.size());
    for (size_t i = 0; i < node.inputs.size(); ++i) {
      const Tensor* t = init.constant_inputs[i];
      if (t == nullptr && !node.inputs[i].empty()) {
        // Shape of a non-constant value: hand the kernel a shape-only view.
        const ValueType* vt = graph.FindType(node.inputs[i]);
        shape_holder.push_back(Tensor::Wrap(vt->dtype, vt->shape.Sizes(), nullptr));
        t = &shape_holder.back();
        init.constant_inputs[i] = t;
      }
      inputs.push_back(t);
    }
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
