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
#include <algorithm>
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
  static const char* kBinary[] = {"Add", "Sub", "Mul", "Div", "Max", "Min", "Pow"};
  for (const char* op : kBinary) {
    if (n.op_type != op || n.inputs.size() != 2) continue;
    const int other = n.inputs[0] == data ? 1 : n.inputs[1] == data ? 0 : -1;
    const Tensor* c = other < 0 ? nullptr : g.FindConstant(n.inputs[other]);
    const ValueType* t = g.FindType(data);
    // A scalar that does not raise the rank: the output keeps data's shape.
    return c != nullptr && c->num_elements() == 1 && n.inputs[0] != n.inputs[1] && t != nullptr &&
           t->shape.rank_known && c->rank() <= t->shape.rank();
  }
  return false;
}

// Whether x's producer or a reader of y is a convolution.
bool NextToConvolution(const Graph& g, const absl::flat_hash_map<std::string, int>& producers, const std::string& x,
                       const std::string& y) {
  auto conv = [](const Node& n) { return n.domain.empty() && (n.op_type == "Conv" || n.op_type == "QLinearConv"); };
  if (auto it = producers.find(x); it != producers.end() && conv(g.nodes[it->second])) return true;
  for (const Node& n : g.nodes) {
    if (conv(n) && std::find(n.inputs.begin(), n.inputs.end(), y) != n.inputs.end()) return true;
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
  const auto producers = graph.Producers();
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
    int at = reader[i];
    while (at >= 0 && ChainOp(graph, graph.nodes[at], graph.nodes[chain.back()].outputs[0]) && !removed[at]) {
      chain.push_back(at);
      at = reader[at];
    }
    if (at < 0 || chain.size() < 2 || removed[at]) continue;
    int64_t channels = 0;  // > 0: a BatchNormalization makes one table per channel
    bool agree = true;
    for (size_t c = 1; c < chain.size(); ++c) {
      const Node& n = graph.nodes[chain[c]];
      const int64_t bn = BatchNormChannels(graph, n, n.inputs[0]);
      if (bn > 0 && channels > 0 && bn != channels) agree = false;
      if (bn > 0) channels = bn;
    }
    // Next to a convolution the layout pass makes the region NHWC, where a
    // BatchNormalization runs channels-last and a per-channel table could not.
    if (!agree || (channels > 0 && NextToConvolution(graph, producers, dq.inputs[0], graph.nodes[at].outputs[0]))) {
      continue;
    }
    const Node& q = graph.nodes[at];
    if (q.op_type != "QuantizeLinear" || !q.domain.empty() || q.inputs[0] != graph.nodes[chain.back()].outputs[0] ||
        !PerTensor(graph, q)) {
      continue;
    }
    chain.push_back(at);
    // 2.
    std::vector<const Node*> nodes;
    for (int c : chain) nodes.push_back(&graph.nodes[c]);
    auto table = FoldByteTable(graph, nodes, dq.inputs[0], xt->dtype, q.outputs[0], cpu, channels,
                               channels > 0 ? xt->shape.rank() : 1);
    if (!table.ok()) continue;  // left in float
    // 3.
    Node t;
    t.name = q.name;
    t.op_type = "QLinearTable";
    t.domain = "kvant";
    t.inputs = {dq.inputs[0], graph.AddConstant(q.name + "_table", *table)};
    t.outputs = q.outputs;
    if (channels > 0) t.attrs.SetInt("axis", 1);
    tables.push_back(std::move(t));
    for (int c : chain) removed[c] = true;
    removed[at] = true;
  }
  if (tables.empty()) return absl::OkStatus();
  graph.RemoveNodes(removed);
  for (Node& t : tables) graph.nodes.push_back(std::move(t));
  return graph.TopologicalSort();
}

}  // namespace kvant
