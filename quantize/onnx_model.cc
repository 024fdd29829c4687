// The editable ONNX model of the quantizer (see the header).
#include "quantize/onnx_model.h"

#include <filesystem>
#include <fstream>
#include <sstream>

#include "absl/strings/str_format.h"
#include "graph/onnx_import.h"

namespace kvant::quantize {
namespace fs = std::filesystem;

absl::StatusOr<OnnxModel> OnnxModel::Load(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError(absl::StrFormat("failed to read %s: cannot open the file", path));
  std::stringstream buffer;
  buffer << in.rdbuf();
  OnnxModel m;
  m.source_ = path;
  if (!m.model_.ParseFromString(buffer.str())) {
    return absl::InvalidArgumentError(absl::StrFormat("failed to read %s: not an ONNX model (protobuf parse failed)", path));
  }
  m.base_dir_ = fs::path(path).parent_path().string();
  if (auto s = m.Normalize(m.base_dir_); !s.ok()) return s;
  return m;
}

absl::StatusOr<OnnxModel> OnnxModel::Subgraph(const OnnxModel& outer, const onnx::GraphProto& g,
                                              const std::string& label) {
  OnnxModel m;
  m.source_ = absl::StrFormat("%s, %s", outer.source_, label);
  m.base_dir_ = outer.base_dir_;
  m.model_.set_ir_version(outer.model_.ir_version());
  *m.model_.mutable_opset_import() = outer.model_.opset_import();
  *m.model_.mutable_graph() = g;
  m.outer_names_ = outer.outer_names_;
  for (const auto& [name, used] : outer.used_names_) m.outer_names_.push_back(name);
  if (auto s = m.Normalize(m.base_dir_); !s.ok()) return s;
  return m;
}

absl::StatusOr<OnnxModel> OnnxModel::FromBytes(const std::string& bytes, const std::string& source) {
  OnnxModel m;
  m.source_ = source;
  if (!m.model_.ParseFromString(bytes)) {
    return absl::InvalidArgumentError(absl::StrFormat("failed to read %s: not an ONNX model (protobuf parse failed)", source));
  }
  if (auto s = m.Normalize("."); !s.ok()) return s;
  return m;
}

// External data in, Constant nodes out.
absl::Status OnnxModel::Normalize(const std::string& base_dir) {
  auto* g = model_.mutable_graph();
  for (auto& init : *g->mutable_initializer()) {
    if (init.data_location() != onnx::TensorProto::EXTERNAL) continue;
    auto t = TensorFromProto(init, base_dir, source_);
    if (!t.ok()) return t.status();
    const std::string name = init.name();
    init.Clear();
    init.set_name(name);
    init.set_data_type(static_cast<int>(t->dtype()));
    for (int64_t d : t->shape()) init.add_dims(d);
    init.set_raw_data(t->raw_data(), t->byte_size());
  }
  google::protobuf::RepeatedPtrField<onnx::NodeProto> kept;
  for (auto& n : *g->mutable_node()) {
    const bool constant = n.op_type() == "Constant" && n.domain().empty() && n.output_size() == 1 &&
                          n.attribute_size() == 1;
    onnx::TensorProto t;
    if (constant) {
      const onnx::AttributeProto& a = n.attribute(0);
      if (a.name() == "value") {
        t = a.t();
      } else if (a.name() == "value_float" || a.name() == "value_floats") {
        t.set_data_type(onnx::TensorProto::FLOAT);
        if (a.name() == "value_float") t.add_float_data(a.f());
        for (float v : a.floats()) t.add_float_data(v);
        if (a.name() == "value_floats") t.add_dims(a.floats_size());
      } else if (a.name() == "value_int" || a.name() == "value_ints") {
        t.set_data_type(onnx::TensorProto::INT64);
        if (a.name() == "value_int") t.add_int64_data(a.i());
        for (int64_t v : a.ints()) t.add_int64_data(v);
        if (a.name() == "value_ints") t.add_dims(a.ints_size());
      }
    }
    if (t.data_type() == 0) {  // not a Constant, or one of strings or a sparse tensor
      *kept.Add() = std::move(n);
      continue;
    }
    t.set_name(n.output(0));
    *g->add_initializer() = std::move(t);
  }
  g->mutable_node()->Swap(&kept);
  Reindex();
  return absl::OkStatus();
}

std::string OnnxModel::Serialize() const { return model_.SerializeAsString(); }

absl::Status OnnxModel::Save(const std::string& path) const {
  std::ofstream out(path, std::ios::binary);
  const std::string bytes = Serialize();
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  if (!out) return absl::PermissionDeniedError(absl::StrFormat("failed to write %s", path));
  return absl::OkStatus();
}

int64_t OnnxModel::opset() const {
  for (const auto& o : model_.opset_import())
    if (o.domain().empty() || o.domain() == "ai.onnx") return o.version();
  return 1;
}

void OnnxModel::SetOpset(int64_t version) {
  for (auto& o : *model_.mutable_opset_import()) {
    if (o.domain().empty() || o.domain() == "ai.onnx") o.set_version(version);
  }
}

void OnnxModel::AddOpsetImport(const std::string& domain, int64_t version) {
  for (const auto& o : model_.opset_import())
    if (o.domain() == domain) return;
  auto* o = model_.add_opset_import();
  o->set_domain(domain);
  o->set_version(version);
}

const onnx::TensorProto* OnnxModel::FindInitializer(const std::string& name) const {
  auto it = initializer_index_.find(name);
  return it == initializer_index_.end() ? nullptr : &model_.graph().initializer(it->second);
}

absl::StatusOr<Tensor> OnnxModel::InitializerTensor(const std::string& name) const {
  const onnx::TensorProto* p = FindInitializer(name);
  if (p == nullptr) return absl::NotFoundError(absl::StrFormat("failed to read %s: no initializer '%s'", source_, name));
  return TensorFromProto(*p, ".", source_);
}

void OnnxModel::SetInitializer(const std::string& name, const Tensor& value) {
  onnx::TensorProto p;
  p.set_name(name);
  p.set_data_type(static_cast<int>(value.dtype()));
  for (int64_t d : value.shape()) p.add_dims(d);
  p.set_raw_data(value.raw_data(), value.byte_size());
  auto it = initializer_index_.find(name);
  if (it != initializer_index_.end()) {
    *model_.mutable_graph()->mutable_initializer(it->second) = std::move(p);
    return;
  }
  initializer_index_[name] = model_.graph().initializer_size();
  used_names_[name] = true;
  *model_.mutable_graph()->add_initializer() = std::move(p);
}

void OnnxModel::RemoveInitializer(const std::string& name) {
  auto* inits = model_.mutable_graph()->mutable_initializer();
  for (int i = 0; i < inits->size(); ++i) {
    if (inits->Get(i).name() == name) {
      inits->DeleteSubrange(i, 1);
      break;
    }
  }
  Reindex();
}

namespace {
// Adds every name `g` and its subgraphs define (initializers, inputs, nodes
// and their outputs) to `names`.
void CollectNames(const onnx::GraphProto& g, absl::flat_hash_map<std::string, bool>& names) {
  for (const auto& init : g.initializer()) names[init.name()] = true;
  for (const auto& v : g.input()) names[v.name()] = true;
  for (const auto& n : g.node()) {
    names[n.name()] = true;
    for (const auto& out : n.output()) names[out] = true;
    for (const auto& a : n.attribute()) {
      if (a.has_g()) CollectNames(a.g(), names);
      for (const auto& sub : a.graphs()) CollectNames(sub, names);
    }
  }
}
}  // namespace

void OnnxModel::Reindex() {
  producer_.clear();
  consumers_.clear();
  initializer_index_.clear();
  used_names_.clear();
  for (const std::string& name : outer_names_) used_names_[name] = true;
  const auto& g = model_.graph();
  for (const auto& n : g.node()) {
    for (const auto& a : n.attribute()) {
      if (a.has_g()) CollectNames(a.g(), used_names_);
      for (const auto& sub : a.graphs()) CollectNames(sub, used_names_);
    }
  }
  for (int i = 0; i < g.initializer_size(); ++i) {
    initializer_index_[g.initializer(i).name()] = i;
    used_names_[g.initializer(i).name()] = true;
  }
  for (const auto& v : g.input()) used_names_[v.name()] = true;
  for (int i = 0; i < g.node_size(); ++i) {
    for (const auto& in : g.node(i).input()) {
      if (!in.empty()) consumers_[in].push_back(i);
    }
    for (const auto& out : g.node(i).output()) {
      producer_[out] = i;
      used_names_[out] = true;
    }
    used_names_[g.node(i).name()] = true;
  }
}

int OnnxModel::Producer(const std::string& value) const {
  auto it = producer_.find(value);
  return it == producer_.end() ? -1 : it->second;
}

const std::vector<int>& OnnxModel::Consumers(const std::string& value) const {
  static const std::vector<int> kNone;
  auto it = consumers_.find(value);
  return it == consumers_.end() ? kNone : it->second;
}

bool OnnxModel::IsGraphOutput(const std::string& value) const {
  for (const auto& o : model_.graph().output())
    if (o.name() == value) return true;
  return false;
}

bool OnnxModel::IsGraphInput(const std::string& value) const {
  for (const auto& o : model_.graph().input())
    if (o.name() == value && FindInitializer(value) == nullptr) return true;
  return false;
}

namespace {
void AddSubgraphReads(const onnx::GraphProto& g, bool nested, absl::flat_hash_set<std::string>& names) {
  for (const auto& n : g.node()) {
    if (nested)
      for (const auto& in : n.input()) names.insert(in);
    for (const auto& a : n.attribute()) {
      if (a.has_g()) AddSubgraphReads(a.g(), true, names);
      for (const auto& sub : a.graphs()) AddSubgraphReads(sub, true, names);
    }
  }
  if (nested)
    for (const auto& o : g.output()) names.insert(o.name());
}
}  // namespace

absl::flat_hash_set<std::string> OnnxModel::SubgraphReads() const {
  absl::flat_hash_set<std::string> names;
  AddSubgraphReads(model_.graph(), false, names);
  return names;
}

std::string OnnxModel::FreshName(const std::string& base) {
  std::string name = base;
  for (int i = 1; used_names_.contains(name); ++i) name = absl::StrFormat("%s_%d", base, i);
  used_names_[name] = true;
  return name;
}

const onnx::AttributeProto* FindAttr(const onnx::NodeProto& n, const std::string& name) {
  for (const auto& a : n.attribute())
    if (a.name() == name) return &a;
  return nullptr;
}

int64_t AttrInt(const onnx::NodeProto& n, const std::string& name, int64_t fallback) {
  const auto* a = FindAttr(n, name);
  return a ? a->i() : fallback;
}

float AttrFloat(const onnx::NodeProto& n, const std::string& name, float fallback) {
  const auto* a = FindAttr(n, name);
  return a ? a->f() : fallback;
}

std::vector<int64_t> AttrInts(const onnx::NodeProto& n, const std::string& name) {
  const auto* a = FindAttr(n, name);
  return a ? std::vector<int64_t>(a->ints().begin(), a->ints().end()) : std::vector<int64_t>{};
}

std::string AttrString(const onnx::NodeProto& n, const std::string& name, const std::string& fallback) {
  const auto* a = FindAttr(n, name);
  return a ? a->s() : fallback;
}

void RemoveAttr(onnx::NodeProto& n, const std::string& name) {
  auto* attrs = n.mutable_attribute();
  for (int i = 0; i < attrs->size(); ++i) {
    if (attrs->Get(i).name() == name) {
      attrs->DeleteSubrange(i, 1);
      return;
    }
  }
}

void SetAttrInt(onnx::NodeProto& n, const std::string& name, int64_t v) {
  RemoveAttr(n, name);
  auto* a = n.add_attribute();
  a->set_name(name);
  a->set_type(onnx::AttributeProto::INT);
  a->set_i(v);
}

void SetAttrInts(onnx::NodeProto& n, const std::string& name, const std::vector<int64_t>& v) {
  RemoveAttr(n, name);
  auto* a = n.add_attribute();
  a->set_name(name);
  a->set_type(onnx::AttributeProto::INTS);
  for (int64_t x : v) a->add_ints(x);
}

onnx::NodeProto MakeNode(const std::string& op, const std::vector<std::string>& inputs,
                         const std::vector<std::string>& outputs, const std::string& name, const std::string& domain) {
  onnx::NodeProto n;
  n.set_op_type(op);
  n.set_name(name);
  if (!domain.empty()) n.set_domain(domain);
  for (const auto& i : inputs) n.add_input(i);
  for (const auto& o : outputs) n.add_output(o);
  return n;
}

}  // namespace kvant::quantize
