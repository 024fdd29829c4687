// Identity and Dropout removal: at inference both pass their input through.
// Readers are rewired to the input; when the output is a graph output, the
// producer of the input is renamed instead (if that is safe), else the node stays.
#include <algorithm>

#include "graph/passes/passes.h"

namespace kvant {
namespace {

bool IsPassThrough(const Node& n, const Graph& g) {
  if (!n.domain.empty() || n.inputs.empty() || n.inputs[0].empty()) return false;
  if (n.op_type == "Identity") return true;
  if (n.op_type != "Dropout") return false;
  // A used mask output keeps the node; training_mode must be absent or constant false.
  if (n.outputs.size() > 1 && !n.outputs[1].empty()) {
    for (const Node& m : g.nodes) {
      for (const std::string& in : m.inputs) {
        if (in == n.outputs[1]) return false;
      }
    }
    if (g.IsGraphOutput(n.outputs[1])) return false;
  }
  if (n.inputs.size() > 2 && !n.inputs[2].empty()) {
    const Tensor* t = g.FindConstant(n.inputs[2]);
    if (t == nullptr || t->data<uint8_t>()[0] != 0) return false;
  }
  return true;
}

void Rename(Graph& g, const std::string& from, const std::string& to) {
  for (Node& n : g.nodes) {
    for (std::string& in : n.inputs) {
      if (in == from) in = to;
    }
  }
}

}  // namespace

absl::Status RemoveIdentities(Graph& graph) {
  std::vector<bool> removed(graph.nodes.size(), false);
  for (size_t i = 0; i < graph.nodes.size(); ++i) {
    Node& n = graph.nodes[i];
    if (!IsPassThrough(n, graph)) continue;
    const std::string in = n.inputs[0], out = n.outputs[0];
    bool read_by_subgraph = false;  // subgraph nodes are not renamed; keep the node
    for (const Node& m : graph.nodes) {
      read_by_subgraph |= std::find(m.implicit_inputs.begin(), m.implicit_inputs.end(), out) != m.implicit_inputs.end() ||
                          std::find(m.implicit_inputs.begin(), m.implicit_inputs.end(), in) != m.implicit_inputs.end();
    }
    if (read_by_subgraph) continue;
    if (!graph.IsGraphOutput(out)) {
      Rename(graph, out, in);
      removed[i] = true;
      continue;
    }
    // Output is a graph output: rename the producer's output when it is a
    // plain intermediate value.
    auto producers = graph.Producers();
    auto it = producers.find(in);
    if (it == producers.end() || graph.IsGraphOutput(in)) continue;
    Node& prod = graph.nodes[it->second];
    for (std::string& o : prod.outputs) {
      if (o == in) o = out;
    }
    Rename(graph, in, out);
    const ValueType type = graph.values[in];  // a copy: inserting `out` may rehash the map
    graph.values[out] = type;
    removed[i] = true;
  }
  graph.RemoveNodes(removed);
  return absl::OkStatus();
}

}  // namespace kvant
