// Quantized unary chains as byte tables: DequantizeLinear (per tensor) ->
// elementwise float operators of one varying input -> QuantizeLinear (per
// tensor) maps each of the 256 input bytes to one output byte, so it becomes
// kvant.QLinearTable(x, table). The table is computed at load by folding the
// chain itself over the constant input [0, 1, ..., 255], with the same
// kernels the float chain would run: the table gives, element for element,
// what the float island gave. A quantizer that keeps activations, affine
// tails or HardSwish in float between INT8 convolutions (PP-OCR's
// Conv -> Mul -> Add -> HardSwish -> Mul -> Add) leaves exactly these. A
// BatchNormalization in the chain (one ONNX Runtime leaves in float after a
// ConvTranspose) makes it a function of the byte and the channel: one table
// per channel along axis 1 (attribute axis), folded over [1, C, 1.., 256].
//  1. From each per-tensor DequantizeLinear of a u8/s8 value, follow the sole
//     reader through unary operators and through binary ones whose other
//     operand is a scalar constant, to a per-tensor QuantizeLinear; each
//     value on the way has that one reader and is not a graph output.
//  2. Copy the chain into a scratch graph whose input is the 256 byte values
//     (as the input's type), fold it, and read the table from its output
//     (FoldByteTable, shared with fuse_qdq_islands.cc).
//  3. The chain's nodes give way to QLinearTable(x, table).
//  4. A com.microsoft QLinearAdd / QLinearMul of a value and a constant (a
//     scalar, or varying along axis 1 only: a bias per channel) is a map of
//     the value's bytes too: a table, per channel for the latter, folded over
//     the node itself.
//  5. A table read only by another table: one table, T2[T1[x]] (per channel
//     when either is).
// A chain may also pass one MaxPool when every other step never decreases
// (Relu, Clip, a Div or Mul by a positive scalar: a HardSwish's "/ 6"
// before a pool): the pool commutes with the map, so it runs on the bytes
// and the table after it, with the float chain's results exactly.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <numeric>

#include "absl/strings/str_format.h"
#include "graph/passes/passes.h"

namespace kvant {
namespace {

bool IsByteType(DataType t) { return t == DataType::kUInt8 || t == DataType::kInt8; }

bool PerTensor(const Graph& g, const Node& n) {
  for (size_t i = 1; i < n.inputs.size() && i < 3; ++i) {
    if (n.inputs[i].empty()) continue;
    const Tensor* t = g.FindConstant(n.inputs[i]);
    if (t == nullptr || t->num_elements() != 1) return false;
  }
  return n.inputs.size() >= 2 && !n.inputs[1].empty();
}

// The channels of an inference BatchNormalization of `data` (rank >= 3)
// with constant parameters, or 0.
int64_t BatchNormChannels(const Graph& g, const Node& n, const std::string& data) {
  if (n.op_type != "BatchNormalization" || !n.domain.empty() || n.inputs.size() != 5 || n.outputs.size() != 1 ||
      n.inputs[0] != data || n.attrs.GetInt("training_mode", 0) != 0) {
    return 0;
  }
  const ValueType* t = g.FindType(data);
  if (t == nullptr || !t->shape.rank_known || t->shape.rank() < 3) return 0;
  int64_t c = -1;
  for (size_t i = 1; i < 5; ++i) {
    const Tensor* p = g.FindConstant(n.inputs[i]);
    if (p == nullptr || p->rank() != 1 || (c >= 0 && p->num_elements() != c)) return 0;
    c = p->num_elements();
  }
  return c;
}

// The channels a constant operand of an elementwise op on x (rank x_rank)
// varies along: 0 for a single value, C when x has rank 3 or more and the
// constant's one dimension above 1 lands on x's axis 1, -1 otherwise.
int64_t ConstantChannels(const Tensor& b, int64_t x_rank) {
  if (b.rank() > x_rank) return -1;
  if (b.num_elements() == 1) return 0;
  int64_t c = -1;
  for (int64_t d = 0; d < b.rank(); ++d) {
    if (b.shape()[d] == 1) continue;
    if (x_rank - b.rank() + d != 1 || c != -1) return -1;
    c = b.shape()[d];
  }
  return x_rank >= 3 ? c : -1;
}

// A float binary operator of `data` and a constant that keeps data's shape:
// the channels the constant varies along (0: one value), else -1.
int64_t BinaryChannels(const Graph& g, const Node& n, const std::string& data) {
  static const char* kBinary[] = {"Add", "Sub", "Mul", "Div", "Max", "Min", "Pow"};
  for (const char* op : kBinary) {
    if (n.op_type != op || !n.domain.empty() || n.inputs.size() != 2 || n.inputs[0] == n.inputs[1]) continue;
    const int other = n.inputs[0] == data ? 1 : n.inputs[1] == data ? 0 : -1;
    const Tensor* c = other < 0 ? nullptr : g.FindConstant(n.inputs[other]);
    const ValueType* t = g.FindType(data);
    if (c == nullptr || t == nullptr || !t->shape.rank_known) return -1;
    const int64_t channels = ConstantChannels(*c, t->shape.rank());
    if (channels > 0 && !(t->shape.dims[1].known() && t->shape.dims[1].value == channels)) return -1;
    return channels;
  }
  return -1;
}

// The channels a chain operator makes the map depend on (a BatchNormalization,
// a per-channel constant operand), or 0.
int64_t ChainChannels(const Graph& g, const Node& n, const std::string& data) {
  const int64_t bn = BatchNormChannels(g, n, data);
  return bn > 0 ? bn : std::max<int64_t>(BinaryChannels(g, n, data), 0);
}

// An elementwise float operator the chain may pass through with `data` as its
// varying input: unary, or binary with a scalar constant as the other operand
// (a BatchNormalization: BatchNormChannels).
bool ChainOp(const Graph& g, const Node& n, const std::string& data) {
  if (!n.domain.empty() || n.outputs.size() != 1 || n.inputs.empty()) return false;
  if (n.op_type == "BatchNormalization") return BatchNormChannels(g, n, data) > 0;
  static const char* kUnary[] = {"Relu", "Sigmoid", "HardSigmoid", "HardSwish", "Tanh", "LeakyRelu", "Elu", "Selu",
                                 "Neg",  "Abs",     "Erf",         "Exp",       "Softplus", "Gelu", "Identity"};
  for (const char* op : kUnary) {
    if (n.op_type == op) return n.inputs.size() == 1 && n.inputs[0] == data;
  }
  if (n.op_type == "Clip") {  // constant bounds
    if (n.inputs[0] != data) return false;
    for (size_t i = 1; i < n.inputs.size(); ++i) {
      if (!n.inputs[i].empty() && g.FindConstant(n.inputs[i]) == nullptr) return false;
    }
    return true;
  }
  return BinaryChannels(g, n, data) >= 0;
}

// A constant scalar's value, or NaN.
float ScalarValue(const Graph& g, const std::string& name) {
  const Tensor* t = g.FindConstant(name);
  return t != nullptr && t->num_elements() == 1 && t->dtype() == DataType::kFloat32 ? t->data<float>()[0] : NAN;
}

// Whether chain operator n (data its varying input) never decreases as data
// grows: then a max pool commutes with it.
bool NonDecreasing(const Graph& g, const Node& n, const std::string& data) {
  const std::string& op = n.op_type;
  if (op == "Relu" || op == "Sigmoid" || op == "Tanh" || op == "Erf" || op == "Exp" || op == "Softplus" ||
      op == "Identity" || op == "Clip" || op == "Gelu") {
    return op != "Gelu";  // GELU dips below zero
  }
  if (op == "HardSigmoid" || op == "LeakyRelu" || op == "Elu") {
    return n.attrs.GetFloat("alpha", op == "HardSigmoid" ? 0.2f : op == "Elu" ? 1.f : 0.01f) >= 0.f;
  }
  if (n.inputs.size() != 2) return false;
  const std::string& other = n.inputs[n.inputs[0] == data ? 1 : 0];
  const float c = ScalarValue(g, other);
  if (op == "Add" || op == "Max" || op == "Min") return !std::isnan(c);
  if (op == "Sub") return n.inputs[0] == data && !std::isnan(c);
  if (op == "Mul") return c > 0.f;
  if (op == "Div") return n.inputs[0] == data && c > 0.f;
  return false;
}

// A MaxPool of `data` with one output.
bool MaxPoolStep(const Node& n, const std::string& data) {
  return n.op_type == "MaxPool" && n.domain.empty() && n.outputs.size() == 1 && n.inputs.size() == 1 &&
         n.inputs[0] == data;
}

// Step 4: QLinearAdd / QLinearMul of a value and a constant, with constant
// scalar parameters.
bool TableOfBinary(Graph& g, const Node& n, CpuFeatures cpu, Node* table) {
  if (n.domain != "com.microsoft" || (n.op_type != "QLinearAdd" && n.op_type != "QLinearMul") ||
      n.inputs.size() != 8 || n.outputs.size() != 1) {
    return false;
  }
  for (int i : {1, 2, 4, 5, 6, 7}) {
    const Tensor* t = n.inputs[i].empty() ? nullptr : g.FindConstant(n.inputs[i]);
    if (t == nullptr || t->num_elements() != 1) return false;
  }
  const int data = g.FindConstant(n.inputs[3]) != nullptr ? 0 : g.FindConstant(n.inputs[0]) != nullptr ? 3 : -1;
  if (data < 0 || g.FindConstant(n.inputs[data]) != nullptr) return false;
  const ValueType* xt = g.FindType(n.inputs[data]);
  const Tensor* other = g.FindConstant(n.inputs[3 - data]);
  if (xt == nullptr || !IsByteType(xt->dtype) || !xt->shape.rank_known || other->dtype() != xt->dtype) return false;
  const int64_t rank = xt->shape.rank(), channels = ConstantChannels(*other, rank);
  if (channels < 0 || (channels > 0 && !(xt->shape.dims[1].known() && xt->shape.dims[1].value == channels))) {
    return false;
  }
  auto folded = FoldByteTable(g, {&n}, n.inputs[data], xt->dtype, n.outputs[0], cpu, channels, channels > 0 ? rank : 1);
  if (!folded.ok()) return false;
  table->name = n.name;
  table->op_type = "QLinearTable";
  table->domain = "kvant";
  table->inputs = {n.inputs[data], g.AddConstant(n.name + "_table", *folded)};
  table->outputs = n.outputs;
  if (channels > 0) table->attrs.SetInt("axis", 1);
  return true;
}

bool IsTable(const Node& n) { return n.op_type == "QLinearTable" && n.domain == "kvant" && n.inputs.size() == 2; }

// Step 5: a table read only by another table; returns whether two merged.
bool ComposeTables(Graph& g) {
  auto uses = g.UseCounts();
  auto producers = g.Producers();
  for (Node& second : g.nodes) {
    if (!IsTable(second)) continue;
    auto it = producers.find(second.inputs[0]);
    if (it == producers.end()) continue;
    const Node& first = g.nodes[it->second];
    if (!IsTable(first) || uses[first.outputs[0]] != 1 || g.IsGraphOutput(first.outputs[0])) continue;
    const Tensor* t1 = g.FindConstant(first.inputs[1]);
    const Tensor* t2 = g.FindConstant(second.inputs[1]);
    if (t1 == nullptr || t2 == nullptr) continue;
    const bool a1 = first.attrs.Has("axis"), a2 = second.attrs.Has("axis");
    const int64_t c1 = t1->num_elements() / 256, c2 = t2->num_elements() / 256;
    if (a1 && a2 && (first.attrs.GetInt("axis", 1) != second.attrs.GetInt("axis", 1) || c1 != c2)) continue;
    const int64_t rows = std::max(c1, c2);
    Tensor merged = Tensor::Zeros(t2->dtype(), a1 || a2 ? std::vector<int64_t>{rows, 256} : std::vector<int64_t>{256});
    const auto* b1 = static_cast<const uint8_t*>(t1->raw_data());
    const auto* b2 = static_cast<const uint8_t*>(t2->raw_data());
    auto* out = static_cast<uint8_t*>(merged.raw_data());
    for (int64_t r = 0; r < rows; ++r) {
      const uint8_t* r1 = b1 + (a1 ? r : 0) * 256;
      const uint8_t* r2 = b2 + (a2 ? r : 0) * 256;
      for (int v = 0; v < 256; ++v) out[r * 256 + v] = r2[r1[v]];
    }
    if (a1 && !a2) second.attrs.SetInt("axis", first.attrs.GetInt("axis", 1));
    const std::string x = first.inputs[0];
    second.inputs = {x, g.AddConstant(second.name + "_composed", merged)};
    return true;
  }
  return false;
}

}  // namespace

absl::StatusOr<Tensor> FoldByteTable(const Graph& g, const std::vector<const Node*>& nodes, const std::string& x,
                                     DataType x_type, const std::string& out, CpuFeatures cpu, int64_t channels,
                                     int64_t rank) {
  Graph scratch;
  scratch.source = g.source;
  scratch.opset = g.opset;
  std::vector<int64_t> shape = {256};
  if (channels > 0) {  // [1, channels, 1 .., 256]
    shape.assign(rank, 1);
    shape[1] = channels;
    shape.back() = 256;
  }
  const int64_t rows = std::max<int64_t>(channels, 1);
  Tensor bytes = Tensor::Zeros(x_type, shape);
  for (int64_t r = 0; r < rows; ++r) {
    uint8_t* row = static_cast<uint8_t*>(bytes.raw_data()) + r * 256;
    std::iota(row, row + 256, uint8_t{0});
  }
  scratch.initializers[x] = bytes;
  for (const Node* n : nodes) {
    for (const std::string& v : n->inputs) {
      if (v.empty() || v == x || scratch.initializers.contains(v)) continue;
      if (const Tensor* c = g.FindConstant(v)) scratch.initializers[v] = *c;
    }
    scratch.nodes.push_back(*n);
  }
  for (const auto& [name, t] : scratch.initializers) scratch.values[name] = ValueType{t.dtype(), Shape::Of(t.shape())};
  scratch.outputs = {out};
  if (auto s = scratch.TopologicalSort(); !s.ok()) return s;
  if (auto s = FoldConstants(scratch, cpu); !s.ok()) return s;
  const Tensor* table = scratch.FindConstant(out);
  if (table == nullptr || table->num_elements() != rows * 256 || !IsByteType(table->dtype())) {
    return absl::InternalError(absl::StrFormat("failed to fold the quantized chain ending in %s of %s", out, g.source));
  }
  if (channels == 0) return *table;
  Tensor per_channel = Tensor::Zeros(table->dtype(), {channels, 256});
  std::memcpy(per_channel.raw_data(), table->raw_data(), channels * 256);
  return per_channel;
}

absl::Status FuseQdqTables(Graph& graph, CpuFeatures cpu) {
  auto uses = graph.UseCounts();
  std::vector<int> reader(graph.nodes.size(), -1);  // sole reader of each node's output 0
  {
    absl::flat_hash_map<std::string, int> first;
    for (size_t i = 0; i < graph.nodes.size(); ++i) {
      for (const std::string& v : graph.nodes[i].inputs) first.try_emplace(v, static_cast<int>(i));
    }
    for (size_t i = 0; i < graph.nodes.size(); ++i) {
      const Node& n = graph.nodes[i];
      if (n.outputs.size() != 1) continue;
      auto u = uses.find(n.outputs[0]);
      auto f = first.find(n.outputs[0]);
      if (u != uses.end() && u->second == 1 && f != first.end() && !graph.IsGraphOutput(n.outputs[0])) {
        reader[i] = f->second;
      }
    }
  }
  std::vector<bool> removed(graph.nodes.size(), false);
  std::vector<Node> tables;
  for (size_t i = 0; i < graph.nodes.size(); ++i) {
    const Node& dq = graph.nodes[i];
    if (dq.op_type != "DequantizeLinear" || !dq.domain.empty() || removed[i] || !PerTensor(graph, dq)) continue;
    const ValueType* xt = graph.FindType(dq.inputs[0]);
    if (xt == nullptr || !IsByteType(xt->dtype)) continue;
    // 1.
    std::vector<int> chain = {static_cast<int>(i)};
    int at = reader[i], pool = -1;
    while (at >= 0 && !removed[at]) {
      const std::string& data = graph.nodes[chain.back()].outputs[0];
      if (pool < 0 && MaxPoolStep(graph.nodes[at], data)) {
        pool = at;
      } else if (!ChainOp(graph, graph.nodes[at], data)) {
        break;
      }
      chain.push_back(at);
      at = reader[at];
    }
    if (at < 0 || chain.size() < 2 || removed[at]) continue;
    // 5. A MaxPool in the chain: the dequantization (scale > 0) and every
    // other step non-decreasing, per tensor.
    bool monotone = pool >= 0 && ScalarValue(graph, dq.inputs[1]) > 0.f;
    for (size_t c = 1; monotone && c < chain.size(); ++c) {
      const Node& n = graph.nodes[chain[c]];
      monotone = chain[c] == pool || (NonDecreasing(graph, n, graph.nodes[chain[c - 1]].outputs[0]) &&
                                      ChainChannels(graph, n, graph.nodes[chain[c - 1]].outputs[0]) == 0);
    }
    if (pool >= 0 && !monotone) continue;
    int64_t channels = 0;  // > 0: one table per channel
    bool agree = true;
    for (size_t c = 1; c < chain.size(); ++c) {
      const int64_t k = ChainChannels(graph, graph.nodes[chain[c]], graph.nodes[chain[c - 1]].outputs[0]);
      if (k > 0 && channels > 0 && k != channels) agree = false;
      if (k > 0) channels = k;
    }
    if (!agree) continue;
    const Node& q = graph.nodes[at];
    if (q.op_type != "QuantizeLinear" || !q.domain.empty() || q.inputs[0] != graph.nodes[chain.back()].outputs[0] ||
        !PerTensor(graph, q)) {
      continue;
    }
    chain.push_back(at);
    // 2. (the MaxPool folds as an Identity: the table maps bytes; a node of
    // the scratch graph only, so no name is reserved here, which would also
    // move graph.values under xt)
    std::vector<const Node*> nodes;
    Node pass;
    for (int c : chain) {
      if (c == pool) {
        pass.op_type = "Identity";
        pass.name = graph.nodes[c].name;
        pass.inputs = graph.nodes[c].inputs;
        pass.outputs = graph.nodes[c].outputs;
        nodes.push_back(&pass);
      } else {
        nodes.push_back(&graph.nodes[c]);
      }
    }
    const DataType x_type = xt->dtype;
    const int64_t x_rank = xt->shape.rank();
    auto table = FoldByteTable(graph, nodes, dq.inputs[0], x_type, q.outputs[0], cpu, channels,
                               channels > 0 ? x_rank : 1);
    if (!table.ok()) continue;  // left in float
    // 3. (with a MaxPool: the pool on the bytes, then the table)
    std::string x = dq.inputs[0];
    if (pool >= 0) {
      Node bytes_pool = graph.nodes[pool];
      bytes_pool.name = ReserveName(graph, bytes_pool.name + "_bytes");
      bytes_pool.inputs = {x};
      x = ReserveName(graph, q.outputs[0] + "_pooled");
      bytes_pool.outputs = {x};
      tables.push_back(std::move(bytes_pool));
    }
    Node t;
    t.name = q.name;
    t.op_type = "QLinearTable";
    t.domain = "kvant";
    t.inputs = {x, graph.AddConstant(q.name + "_table", *table)};
    t.outputs = q.outputs;
    if (channels > 0) t.attrs.SetInt("axis", 1);
    tables.push_back(std::move(t));
    for (int c : chain) removed[c] = true;
    removed[at] = true;
  }
  // 4.
  for (Node& n : graph.nodes) {
    Node t;
    if (TableOfBinary(graph, n, cpu, &t)) n = std::move(t);
  }
  graph.RemoveNodes(removed);
  for (Node& t : tables) graph.nodes.push_back(std::move(t));
  if (auto s = graph.TopologicalSort(); !s.ok()) return s;
  // 5.
  bool merged = false;
  while (ComposeTables(graph)) merged = true;
  return merged ? RemoveDeadNodes(graph) : absl::OkStatus();
}

}  // namespace kvant
