// FP16 models (weights, inputs and outputs stored as float16) on a CPU path
// that computes in FP32: the FP16 values are widened where they enter and
// narrowed where they leave, so every kernel in between is an FP32 one and
// the caller still feeds and reads float16.
//  1. Each f16 initializer W becomes Cast(W_f16 -> W, to FLOAT), which
//     constant folding evaluates once at load.
//  2. Each f16 graph input X gets Cast(X -> X_f32) and its readers read X_f32.
//  3. Cast(to FLOAT16) inside the graph casts to FLOAT instead (the value
//     keeps FP32 precision: ONNX Runtime's CPU provider, which widens around
//     its FP32-only kernels too, differs from true FP16 arithmetic as well);
//     operators whose attributes fix an f16 result (ConstantOfShape's value,
//     the dtype of EyeLike and the Random operators) produce FP32.
//  4. Each f16 graph output O is produced as O_f32 and narrowed by
//     Cast(O_f32 -> O, to FLOAT16).
//  5. Shapes and types are inferred; any node still producing f16 (a
//     ConstantOfShape or EyeLike with an f16 value) gets a widening Cast,
//     repeated until only the edges are f16.
#include <algorithm>

#include "absl/strings/str_format.h"
#include "graph/passes/passes.h"
#include "ops/float16.h"

namespace kvant {
namespace {

constexpr int64_t kOnnxFloat = 1, kOnnxFloat16 = 10;

Node MakeCast(Graph& g, const std::string& in, const std::string& out, int64_t to, const std::string& hint) {
  Node n = MakeUnaryNode(g, "Cast", in, out, hint);
  n.attrs.SetInt("to", to);
  return n;
}

void Rewire(Graph& g, const std::string& from, const std::string& to, const Node* except) {
  for (Node& n : g.nodes) {
    if (&n == except) continue;
    for (std::string& in : n.inputs) {
      if (in == from) in = to;
    }
  }
}

bool IsF16(const Graph& g, const std::string& v) {
  auto it = g.values.find(v);
  return it != g.values.end() && it->second.dtype == DataType::kFloat16;
}

}  // namespace

absl::Status RunFp16ModelInFp32(Graph& g) {
  bool any = false;
  for (const auto& [name, t] : g.initializers) any |= t.dtype() == DataType::kFloat16;
  for (const auto& [name, v] : g.values) any |= v.dtype == DataType::kFloat16;
  if (!any) return absl::OkStatus();
  std::vector<Node> front;
  // 1.
  std::vector<std::string> f16_weights;
  for (const auto& [name, t] : g.initializers) {
    if (t.dtype() == DataType::kFloat16) f16_weights.push_back(name);
  }
  for (const std::string& w : f16_weights) {
    const std::string stored = ReserveName(g, w + "_f16");
    // Copies first: inserting `stored` may rehash the map under a reference.
    Tensor weights = g.initializers[w];
    g.initializers[stored] = std::move(weights);
    const ValueType type = g.values[w];
    g.values[stored] = type;
    g.initializers.erase(w);
    front.push_back(MakeCast(g, stored, w, kOnnxFloat, w + "_to_f32"));
  }
  // 2.
  for (const std::string& x : g.inputs) {
    if (!IsF16(g, x)) continue;
    const std::string wide = ReserveName(g, x + "_f32");
    Rewire(g, x, wide, nullptr);
    front.push_back(MakeCast(g, x, wide, kOnnxFloat, x + "_to_f32"));
  }
  // 3.
  for (Node& n : g.nodes) {
    if (!n.domain.empty()) continue;
    if (n.op_type == "Cast" && n.attrs.GetInt("to", 0) == kOnnxFloat16) n.attrs.SetInt("to", kOnnxFloat);
    if ((n.op_type == "EyeLike" || n.op_type.rfind("Random", 0) == 0) && n.attrs.GetInt("dtype", 0) == kOnnxFloat16) {
      n.attrs.SetInt("dtype", kOnnxFloat);
    }
    if (n.op_type == "ConstantOfShape" && n.attrs.Has("value")) {
      Attribute value = n.attrs.all().at("value");
      if (value.kind == Attribute::Kind::kTensor && value.t.dtype() == DataType::kFloat16) {
        Tensor wide = Tensor::Zeros(DataType::kFloat32, value.t.shape());
        for (int64_t i = 0; i < wide.num_elements(); ++i) wide.data<float>()[i] = HalfToFloat(value.t.data<uint16_t>()[i]);
        value.t = wide;
        n.attrs.Set("value", value);
      }
    }
  }
  // 4. (Graph inputs passed straight through stay as they are.)
  std::vector<Node> back;
  for (std::string& o : g.outputs) {
    if (!IsF16(g, o) || std::find(g.inputs.begin(), g.inputs.end(), o) != g.inputs.end()) continue;
    const std::string wide = ReserveName(g, o + "_f32");
    for (Node& n : g.nodes) {
      for (std::string& out : n.outputs) {
        if (out == o) out = wide;
      }
    }
    Rewire(g, o, wide, nullptr);
    for (Node& n : front) {
      for (std::string& in : n.inputs) {
        if (in == o) in = wide;
      }
    }
    back.push_back(MakeCast(g, wide, o, kOnnxFloat16, o + "_to_f16"));
  }
  g.nodes.insert(g.nodes.begin(), front.begin(), front.end());
  g.nodes.insert(g.nodes.end(), back.begin(), back.end());
  if (auto s = g.TopologicalSort(); !s.ok()) return s;
  // 5.
  for (int round = 0; round < 8; ++round) {
    if (auto s = InferShapes(g); !s.ok()) return s;
    std::vector<Node> widen;
    for (Node& n : g.nodes) {
      const bool narrowing_cast = n.op_type == "Cast" && n.attrs.GetInt("to", 0) == kOnnxFloat16;
      if (narrowing_cast) continue;
      for (std::string& out : n.outputs) {
        if (out.empty() || !IsF16(g, out) || g.IsGraphOutput(out)) continue;
        const std::string orig = out;
        out = ReserveName(g, orig + "_f16");
        widen.push_back(MakeCast(g, out, orig, kOnnxFloat, orig + "_to_f32"));
      }
    }
    if (widen.empty()) return absl::OkStatus();
    g.nodes.insert(g.nodes.end(), widen.begin(), widen.end());
    if (auto s = g.TopologicalSort(); !s.ok()) return s;
  }
  return absl::InternalError(absl::StrFormat("failed to run %s in FP32: float16 values remain after 8 rounds",
                                             g.source));
}

}  // namespace kvant
