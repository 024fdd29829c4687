// Dead-node removal: walking backwards from the graph outputs, keeps only the
// nodes whose outputs are read; then drops initializers nothing reads.
#include "absl/container/flat_hash_set.h"
#include "graph/passes/passes.h"

namespace kvant {

absl::Status RemoveDeadNodes(Graph& graph) {
  absl::flat_hash_set<std::string> live(graph.outputs.begin(), graph.outputs.end());
  std::vector<bool> keep(graph.nodes.size(), false);
  for (int64_t i = static_cast<int64_t>(graph.nodes.size()) - 1; i >= 0; --i) {
    const Node& n = graph.nodes[i];
    for (const std::string& o : n.outputs) {
      if (!o.empty() && live.contains(o)) keep[i] = true;
    }
    if (!keep[i]) continue;
    for (const std::string& in : n.inputs) {
      if (!in.empty()) live.insert(in);
    }
    live.insert(n.implicit_inputs.begin(), n.implicit_inputs.end());
  }
  std::vector<bool> removed(keep.size());
  for (size_t i = 0; i < keep.size(); ++i) removed[i] = !keep[i];
  graph.RemoveNodes(removed);
  for (auto it = graph.initializers.begin(); it != graph.initializers.end();) {
    if (!live.contains(it->first)) {
      graph.values.erase(it->first);
      graph.initializers.erase(it++);
    } else {
      ++it;
    }
  }
  return absl::OkStatus();
}

}  // namespace kvant
