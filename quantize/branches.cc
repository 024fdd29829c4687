// Quantizing inside If branches (see the header).
#include "quantize/branches.h"

#include <algorithm>

#include "absl/strings/str_format.h"

namespace kvant::quantize {
namespace {

bool IsIf(const onnx::NodeProto& n) { return n.op_type() == "If" && n.domain().empty(); }

std::string Label(const onnx::NodeProto& n, const onnx::AttributeProto& a) {
  return absl::StrFormat("If '%s' %s", n.name(), a.name());
}

// Carries wanted values out of If branches (ExposeValues).
class Exposer {
 public:
  // New names come from m.FreshName, which avoids the names of every scope.
  Exposer(OnnxModel& m, const std::vector<std::string>& values) : m_(m), order_(values) {
    for (const std::string& v : values) wanted_.insert(v);
  }

  // For each wanted value `g` makes, by its own nodes or inside the
  // branches of its If nodes: the name under which `g` holds it.
  absl::flat_hash_map<std::string, std::string> Carry(onnx::GraphProto& g) {
    absl::flat_hash_map<std::string, std::string> held;
    const int count = g.node_size();  // Identity and Constant nodes may be added below, to branches only
    for (int i = 0; i < count; ++i) {
      onnx::NodeProto& n = *g.mutable_node(i);
      for (const auto& out : n.output())
        if (wanted_.contains(out)) held[out] = out;
      if (!IsIf(n)) continue;
      std::vector<onnx::GraphProto*> branches;
      for (auto& a : *n.mutable_attribute())
        if (a.has_g()) branches.push_back(a.mutable_g());
      if (branches.size() != 2) continue;
      const absl::flat_hash_map<std::string, std::string> inner[2] = {Carry(*branches[0]), Carry(*branches[1])};
      for (const std::string& v : order_) {
        if (held.contains(v) || (!inner[0].contains(v) && !inner[1].contains(v))) continue;
        for (int b = 0; b < 2; ++b) {
          const std::string out = Fresh("kvant_observe_" + v);
          auto it = inner[b].find(v);
          onnx::NodeProto* made = branches[b]->add_node();
          made->set_name(Fresh(out + "_node"));
          made->add_output(out);
          if (it != inner[b].end()) {
            // An Identity, so a value the branch already returns is not listed twice.
            made->set_op_type("Identity");
            made->add_input(it->second);
          } else {
            made->set_op_type("Constant");  // the branch that does not make it: an empty tensor
            auto* attr = made->add_attribute();
            attr->set_name("value");
            attr->set_type(onnx::AttributeProto::TENSOR);
            attr->mutable_t()->set_data_type(onnx::TensorProto::FLOAT);
            attr->mutable_t()->add_dims(0);
          }
          AddFloatOutput(*branches[b], out);
        }
        held[v] = Fresh("kvant_observe_" + v);
        n.add_output(held[v]);
      }
    }
    return held;
  }

  static void AddFloatOutput(onnx::GraphProto& g, const std::string& name) {
    auto* out = g.add_output();
    out->set_name(name);
    out->mutable_type()->mutable_tensor_type()->set_elem_type(onnx::TensorProto::FLOAT);
  }

  const std::vector<std::string>& order() const { return order_; }

 private:
  std::string Fresh(const std::string& base) { return m_.FreshName(base); }

  OnnxModel& m_;
  std::vector<std::string> order_;
  absl::flat_hash_set<std::string> wanted_;
};

}  // namespace

absl::Status ForEachBranch(OnnxModel& m, const std::function<absl::Status(OnnxModel&)>& edit) {
  for (int i = 0; i < m.graph().node_size(); ++i) {
    if (!IsIf(m.graph().node(i))) continue;
    for (int k = 0; k < m.graph().node(i).attribute_size(); ++k) {
      onnx::AttributeProto& a = *m.graph().mutable_node(i)->mutable_attribute(k);
      if (!a.has_g()) continue;
      auto branch = OnnxModel::Subgraph(m, a.g(), Label(m.graph().node(i), a));
      if (!branch.ok()) return branch.status();
      if (auto s = ForEachBranch(*branch, edit); !s.ok()) return s;
      if (auto s = edit(*branch); !s.ok()) return s;
      if (branch->opset() > m.opset()) m.SetOpset(branch->opset());
      *a.mutable_g() = std::move(branch->graph());
      m.Reindex();  // the next branch's fresh names avoid this one's
    }
  }
  return absl::OkStatus();
}

absl::Status VisitBranches(const OnnxModel& m, const std::function<absl::Status(const OnnxModel&)>& visit) {
  for (const auto& n : m.graph().node()) {
    if (!IsIf(n)) continue;
    for (const auto& a : n.attribute()) {
      if (!a.has_g()) continue;
      auto branch = OnnxModel::Subgraph(m, a.g(), Label(n, a));
      if (!branch.ok()) return branch.status();
      if (auto s = VisitBranches(*branch, visit); !s.ok()) return s;
      if (auto s = visit(*branch); !s.ok()) return s;
    }
  }
  return absl::OkStatus();
}

absl::flat_hash_map<std::string, std::string> ExposeValues(OnnxModel& model, const std::vector<std::string>& values) {
  onnx::GraphProto& g = model.graph();
  absl::flat_hash_set<std::string> outputs, inputs;
  for (const auto& o : g.output()) outputs.insert(o.name());
  for (const auto& v : g.input()) inputs.insert(v.name());
  Exposer exposer(model, values);
  const absl::flat_hash_map<std::string, std::string> held = exposer.Carry(g);
  absl::flat_hash_map<std::string, std::string> carried;
  for (const std::string& v : exposer.order()) {
    auto it = held.find(v);
    if (it == held.end() || inputs.contains(v) || !outputs.insert(it->second).second) continue;
    Exposer::AddFloatOutput(g, it->second);
    if (it->second != v) carried[it->second] = v;
  }
  return carried;
}

}  // namespace kvant::quantize
