// Quantized elementwise islands as byte tables. A QDQ file from ONNX
// Runtime's quantizer puts a QuantizeLinear -> DequantizeLinear pair after
// every operator, and its QOperator file a QLinearAdd/QLinearMul per step, so
// a HardSwish spelled x * Clip(x + 3, 0, 6) / 6 becomes four quantized
// steps, one of them a product of two tensors (PP-OCRv4's recogniser has 25
// of them, and 50 affine Mul/Add pairs by quantized scalars). Everything
// such an island computes is a function of one byte tensor x, so it is one
// 256-entry kvant.QLinearTable, computed at load by folding the island
// itself over [0, 1, ..., 255]: the same kernels and the same intermediate
// roundings, table entry for table entry.
//  1. From each u8/s8 value x, collect the elementwise nodes that depend
//     only on x and constants, in topological order, up to 64 nodes:
//     per-tensor QuantizeLinear/DequantizeLinear, unary float operators,
//     Clip with constant bounds, binary float operators whose operands are
//     both in the island or one a scalar constant (or the DequantizeLinear
//     of one), and ONNX Runtime's QLinearAdd/QLinearMul (operands likewise)
//     and QLinearSigmoid/QLinearLeakyRelu with constant parameters.
//  2. Each node of the set with a u8/s8 output is a candidate exit: its
//     island is its ancestors in the set; valid when no value inside but the
//     exit is read outside (a DequantizeLinear of x read outside too stays).
//     The largest valid island that computes something (not a bare DQ -> Q)
//     is folded (graph/passes/fuse_qdq_table.cc folds float chains later the
//     same way).
//  3. Its nodes give way to QLinearTable(x, table).
#include <algorithm>
#include <functional>
#include <queue>

#include "absl/container/flat_hash_set.h"
#include "graph/passes/passes.h"

namespace kvant {
namespace {

constexpr size_t kMaxIslandNodes = 64;

bool IsByteType(DataType t) { return t == DataType::kUInt8 || t == DataType::kInt8; }

// Q or DQ with constant scalar scale and zero point.
bool PerTensorConversion(const Graph& g, const Node& n, const char* op) {
  if (n.op_type != op || !n.domain.empty() || n.inputs.size() < 2 || n.outputs.size() != 1) return false;
  for (size_t i = 1; i < n.inputs.size() && i < 3; ++i) {
    if (n.inputs[i].empty()) continue;
    const Tensor* t = g.FindConstant(n.inputs[i]);
    if (t == nullptr || t->num_elements() != 1) return false;
  }
  return !n.inputs[1].empty();
}

bool UnaryOp(const std::string& op) {
  static const char* kUnary[] = {"Relu", "Sigmoid", "HardSigmoid", "HardSwish", "Tanh", "LeakyRelu", "Elu", "Selu",
                                 "Neg",  "Abs",     "Erf",         "Exp",       "Softplus", "Gelu", "Identity"};
  return std::any_of(std::begin(kUnary), std::end(kUnary), [&](const char* u) { return op == u; });
}

bool BinaryOp(const std::string& op) {
  static const char* kBinary[] = {"Add", "Sub", "Mul", "Div", "Max", "Min", "Pow"};
  return std::any_of(std::begin(kBinary), std::end(kBinary), [&](const char* b) { return op == b; });
}

class Islands {
 public:
  Islands(Graph& g, CpuFeatures cpu) : g_(g), cpu_(cpu), producers_(g.Producers()) {
    for (size_t i = 0; i < g.nodes.size(); ++i) {
      for (const std::string& v : g.nodes[i].inputs) readers_[v].push_back(static_cast<int>(i));
    }
  }

  absl::Status Run() {
    removed_.assign(g_.nodes.size(), false);
    auto source = [&](const std::string& x, int after) {
      const ValueType* xt = g_.FindType(x);
      if (xt != nullptr && IsByteType(xt->dtype) && xt->shape.rank_known && !g_.IsConstant(x)) {
        TryIsland(x, after, xt->dtype, xt->shape.rank());
      }
    };
    for (const std::string& in : g_.inputs) source(in, 0);
    for (size_t i = 0; i < g_.nodes.size(); ++i) {
      if (removed_[i]) continue;
      for (const std::string& out : g_.nodes[i].outputs) {
        if (!out.empty()) source(out, static_cast<int>(i) + 1);
      }
    }
    if (tables_.empty()) return absl::OkStatus();
    g_.RemoveNodes(removed_);
    for (Node& t : tables_) g_.nodes.push_back(std::move(t));
    return g_.TopologicalSort();
  }

 private:
  // A scalar constant, or the DequantizeLinear of one (ONNX Runtime
  // quantizes the constants of an affine block too).
  bool ScalarConstant(const std::string& v, int64_t rank) const {
    if (const Tensor* c = g_.FindConstant(v)) return c->num_elements() == 1 && c->rank() <= rank;
    const int p = Producer(v);
    if (p < 0 || !PerTensorConversion(g_, g_.nodes[p], "DequantizeLinear")) return false;
    const Tensor* c = g_.FindConstant(g_.nodes[p].inputs[0]);
    return c != nullptr && c->num_elements() == 1 && c->rank() <= rank;
  }

  int Producer(const std::string& v) const {
    auto it = producers_.find(v);
    return it == producers_.end() ? -1 : it->second;
  }

  bool ConstantParams(const Node& n, std::initializer_list<size_t> params) const {
    for (size_t i : params) {
      if (i >= n.inputs.size() || n.inputs[i].empty()) continue;
      const Tensor* c = g_.FindConstant(n.inputs[i]);
      if (c == nullptr || c->num_elements() != 1) return false;
    }
    return true;
  }

  // Whether node n may join an island over x whose values are `in` (x
  // included): float operators read float island values, the quantized
  // operators byte ones.
  bool Joins(const Node& n, const absl::flat_hash_set<std::string>& in, int64_t rank) const {
    if (n.outputs.size() != 1 || n.inputs.empty()) return false;
    const std::string& op = n.op_type;
    auto operand = [&](const std::string& v) { return in.contains(v) || ScalarConstant(v, rank); };
    if (n.domain == "com.microsoft") {
      if ((op == "QLinearAdd" || op == "QLinearMul") && n.inputs.size() >= 7) {
        return (in.contains(n.inputs[0]) || in.contains(n.inputs[3])) && operand(n.inputs[0]) &&
               operand(n.inputs[3]) && ConstantParams(n, {1, 2, 4, 5, 6, 7});
      }
      if ((op == "QLinearSigmoid" || op == "QLinearLeakyRelu") && n.inputs.size() >= 4) {
        return in.contains(n.inputs[0]) && ConstantParams(n, {1, 2, 3, 4});
      }
      return false;
    }
    if (!n.domain.empty()) return false;
    if (op == "DequantizeLinear") return in.contains(n.inputs[0]) && PerTensorConversion(g_, n, "DequantizeLinear");
    if (!in.contains(n.inputs[0]) && !(BinaryOp(op) && n.inputs.size() == 2 && in.contains(n.inputs[1]))) {
      return false;
    }
    if (op == "QuantizeLinear") return PerTensorConversion(g_, n, "QuantizeLinear");
    if (UnaryOp(op)) return n.inputs.size() == 1;
    if (op == "Clip") {
      for (size_t i = 1; i < n.inputs.size(); ++i) {
        if (!n.inputs[i].empty() && g_.FindConstant(n.inputs[i]) == nullptr) return false;
      }
      return true;
    }
    if (BinaryOp(op) && n.inputs.size() == 2) return operand(n.inputs[0]) && operand(n.inputs[1]);
    return false;
  }

  bool ByteOutput(const Node& n) const {
    const ValueType* t = g_.FindType(n.outputs[0]);
    return t != nullptr && IsByteType(t->dtype);
  }

  // Islands over x among the nodes from index `first` on (x's readers
  // follow its producer), until no reader of x is left outside one.
  void TryIsland(const std::string& x, int first, DataType x_type, int64_t rank) {
    while (true) {
      // 1. The set, in topological order.
      // Readers of the island's values in index (topological) order: a node
      // is seen after every reachable producer of its operands.
      std::vector<int> set;
      absl::flat_hash_set<std::string> in = {x};
      absl::flat_hash_set<int> seen;
      std::priority_queue<int, std::vector<int>, std::greater<int>> next;
      auto push_readers = [&](const std::string& v) {
        if (auto it = readers_.find(v); it != readers_.end()) {
          for (int r : it->second) {
            if (r >= first && seen.insert(r).second) next.push(r);
          }
        }
      };
      push_readers(x);
      while (!next.empty() && set.size() < kMaxIslandNodes) {
        const int i = next.top();
        next.pop();
        if (removed_[i] || !Joins(g_.nodes[i], in, rank)) continue;
        set.push_back(i);
        in.insert(g_.nodes[i].outputs[0]);
        push_readers(g_.nodes[i].outputs[0]);
      }
      // 2. The largest valid island ending in a byte value.
      std::vector<int> best;
      for (size_t e = set.size(); e-- > 0;) {
        if (!ByteOutput(g_.nodes[set[e]])) continue;
        std::vector<int> island = Ancestors(set, e);
        if (island.size() > best.size() && Valid(island, set[e], x) && Computes(island)) best = std::move(island);
      }
      if (best.empty()) return;
      auto table = Fold(best, x, x_type);
      if (!table.ok()) return;  // left as it is
      // 3.
      const Node& q = g_.nodes[best.back()];
      Node t;
      t.name = q.name;
      t.op_type = "QLinearTable";
      t.domain = "kvant";
      t.inputs = {x, g_.AddConstant(q.name + "_table", *table)};
      t.outputs = q.outputs;
      tables_.push_back(std::move(t));
      for (int n : best) {
        if (n == best.back() || !ReadOutside(n, best)) removed_[n] = true;  // a DequantizeLinear of x others read stays
      }
    }
  }

  // The nodes of set[0..e] that set[e] depends on, in order.
  std::vector<int> Ancestors(const std::vector<int>& set, size_t e) const {
    absl::flat_hash_set<std::string> needed(g_.nodes[set[e]].inputs.begin(), g_.nodes[set[e]].inputs.end());
    std::vector<int> out = {set[e]};
    for (size_t k = e; k-- > 0;) {
      const Node& n = g_.nodes[set[k]];
      if (!needed.contains(n.outputs[0])) continue;
      out.push_back(set[k]);
      needed.insert(n.inputs.begin(), n.inputs.end());
    }
    std::reverse(out.begin(), out.end());
    return out;
  }

  bool ReadOutside(int n, const std::vector<int>& island) const {
    const std::string& v = g_.nodes[n].outputs[0];
    if (g_.IsGraphOutput(v)) return true;
    auto it = readers_.find(v);
    if (it == readers_.end()) return false;
    return std::any_of(it->second.begin(), it->second.end(),
                       [&](int r) { return std::find(island.begin(), island.end(), r) == island.end(); });
  }

  // Only the exit is read outside, but for DequantizeLinear nodes of x.
  bool Valid(const std::vector<int>& island, int exit, const std::string& x) const {
    for (int n : island) {
      if (n == exit || !ReadOutside(n, island)) continue;
      const Node& node = g_.nodes[n];
      if (node.op_type != "DequantizeLinear" || node.inputs[0] != x) return false;
    }
    return true;
  }

  // Something besides conversions (a lone DQ -> Q pair is the data-movement
  // fusion's business).
  bool Computes(const std::vector<int>& island) const {
    return std::any_of(island.begin(), island.end(), [&](int n) {
      const std::string& op = g_.nodes[n].op_type;
      return op != "QuantizeLinear" && op != "DequantizeLinear";
    });
  }

  // The island's table: its nodes and the DequantizeLinear nodes of its
  // constant operands, folded over x's 256 bytes.
  absl::StatusOr<Tensor> Fold(const std::vector<int>& island, const std::string& x, DataType x_type) const {
    absl::flat_hash_set<std::string> produced;
    for (int n : island) produced.insert(g_.nodes[n].outputs[0]);
    std::vector<const Node*> nodes;
    for (int n : island) {
      for (const std::string& v : g_.nodes[n].inputs) {
        if (v.empty() || v == x || produced.contains(v) || g_.FindConstant(v) != nullptr) continue;
        if (const int p = Producer(v); p >= 0) {
          nodes.push_back(&g_.nodes[p]);
          produced.insert(v);
        }
      }
    }
    for (int n : island) nodes.push_back(&g_.nodes[n]);
    return FoldByteTable(g_, nodes, x, x_type, g_.nodes[island.back()].outputs[0], cpu_);
  }

  Graph& g_;
  CpuFeatures cpu_;
  absl::flat_hash_map<std::string, int> producers_;
  absl::flat_hash_map<std::string, std::vector<int>> readers_;
  std::vector<bool> removed_;
  std::vector<Node> tables_;
};

}  // namespace

absl::Status FuseQdqIslandTables(Graph& graph, CpuFeatures cpu) { return Islands(graph, cpu).Run(); }

}  // namespace kvant
