// Graph IR helpers: shapes, attributes, topological sort and the text dump.
#include "graph/graph.h"

#include <algorithm>
#include <deque>

#include "absl/container/flat_hash_set.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"

namespace kvant {

std::string Dim::ToString() const {
  if (known()) return absl::StrCat(value);
  return symbol.empty() ? "?" : symbol;
}

Shape Shape::Of(const std::vector<int64_t>& sizes) {
  Shape s;
  s.rank_known = true;
  for (int64_t v : sizes) s.dims.push_back(Dim::Known(v));
  return s;
}

bool Shape::IsStatic() const {
  if (!rank_known) return false;
  for (const Dim& d : dims) {
    if (!d.known()) return false;
  }
  return true;
}

std::vector<int64_t> Shape::Sizes() const {
  std::vector<int64_t> out;
  out.reserve(dims.size());
  for (const Dim& d : dims) out.push_back(d.value);
  return out;
}

std::string Shape::ToString() const {
  if (!rank_known) return "[?]";
  return absl::StrCat("[", absl::StrJoin(dims, ",", [](std::string* out, const Dim& d) {
                        out->append(d.ToString());
                      }),
                      "]");
}

absl::StatusOr<int64_t> ElementCount(const std::vector<int64_t>& sizes) {
  int64_t n = 1;
  for (int64_t d : sizes) {
    if (d < 0) {
      return absl::InvalidArgumentError(
          absl::StrFormat("dimension must be >= 0, got %d in [%s]", d, absl::StrJoin(sizes, ",")));
    }
    if (d != 0 && n > INT64_MAX / d) {
      return absl::InvalidArgumentError(absl::StrFormat(
          "element count of [%s] must fit in 64 bits, got overflow", absl::StrJoin(sizes, ",")));
    }
    n *= d;
  }
  return n;
}

void AttributeMap::SetInt(const std::string& name, int64_t v) {
  Attribute a;
  a.kind = Attribute::Kind::kInt;
  a.i = v;
  map_[name] = std::move(a);
}

void AttributeMap::SetFloat(const std::string& name, float v) {
  Attribute a;
  a.kind = Attribute::Kind::kFloat;
  a.f = v;
  map_[name] = std::move(a);
}

void AttributeMap::SetInts(const std::string& name, std::vector<int64_t> v) {
  Attribute a;
  a.kind = Attribute::Kind::kInts;
  a.ints = std::move(v);
  map_[name] = std::move(a);
}

void AttributeMap::SetString(const std::string& name, std::string v) {
  Attribute a;
  a.kind = Attribute::Kind::kString;
  a.s = std::move(v);
  map_[name] = std::move(a);
}

const Attribute* AttributeMap::Find(const std::string& name) const {
  auto it = map_.find(name);
  return it == map_.end() ? nullptr : &it->second;
}

int64_t AttributeMap::GetInt(const std::string& name, int64_t def) const {
  const Attribute* a = Find(name);
  return a && a->kind == Attribute::Kind::kInt ? a->i : def;
}

float AttributeMap::GetFloat(const std::string& name, float def) const {
  const Attribute* a = Find(name);
  return a && a->kind == Attribute::Kind::kFloat ? a->f : def;
}

std::string AttributeMap::GetString(const std::string& name, const std::string& def) const {
  const Attribute* a = Find(name);
  return a && a->kind == Attribute::Kind::kString ? a->s : def;
}

std::vector<int64_t> AttributeMap::GetInts(const std::string& name,
                                           std::vector<int64_t> def) const {
  const Attribute* a = Find(name);
  return a && a->kind == Attribute::Kind::kInts ? a->ints : def;
}

std::vector<float> AttributeMap::GetFloats(const std::string& name) const {
  const Attribute* a = Find(name);
  return a && a->kind == Attribute::Kind::kFloats ? a->floats : std::vector<float>{};
}

AttributeMap AttributeMap::WithPrefix(const std::string& prefix) const {
  AttributeMap out;
  for (const auto& [name, a] : map_) {
    if (absl::StartsWith(name, prefix)) out.Set(name.substr(prefix.size()), a);
  }
  return out;
}

std::string Node::Label() const {
  std::string op = domain.empty() ? op_type : absl::StrCat(domain, ".", op_type);
  return absl::StrFormat("%s '%s'", op, name);
}

const Tensor* Graph::FindConstant(const std::string& value) const {
  auto it = initializers.find(value);
  return it == initializers.end() ? nullptr : &it->second;
}

const ValueType* Graph::FindType(const std::string& value) const {
  auto it = values.find(value);
  return it == values.end() ? nullptr : &it->second;
}

bool Graph::IsGraphOutput(const std::string& value) const {
  return std::find(outputs.begin(), outputs.end(), value) != outputs.end();
}

// Kahn's algorithm over value names:
//  1. every graph input and initializer is available;
//  2. a node is ready when all of its non-empty inputs are available;
//  3. ready nodes are emitted in their original relative order (stable);
//  4. leftovers mean a cycle or an input nobody produces.
absl::Status Graph::TopologicalSort(bool outer_scope) {
  absl::flat_hash_map<std::string, int> producer;
  for (int i = 0; i < static_cast<int>(nodes.size()); ++i) {
    for (const std::string& out : nodes[i].outputs) {
      if (out.empty()) continue;
      if (initializers.contains(out) ||
          std::find(inputs.begin(), inputs.end(), out) != inputs.end()) {
        return absl::InvalidArgumentError(absl::StrFormat(
            "failed to load %s: node %s writes '%s', which is already a graph input or "
            "initializer",
            source, nodes[i].Label(), out));
      }
      if (!producer.emplace(out, i).second) {
        return absl::InvalidArgumentError(absl::StrFormat(
            "failed to load %s: value '%s' must have one producer, got %s and %s", source, out,
            nodes[producer[out]].Label(), nodes[i].Label()));
      }
    }
  }
  std::vector<int> pending(nodes.size(), 0);
  absl::flat_hash_map<std::string, std::vector<int>> readers;
  for (int i = 0; i < static_cast<int>(nodes.size()); ++i) {
    absl::flat_hash_set<std::string> seen;
    std::vector<std::string> deps = nodes[i].inputs;
    deps.insert(deps.end(), nodes[i].implicit_inputs.begin(), nodes[i].implicit_inputs.end());
    for (const std::string& in : deps) {
      if (in.empty() || !seen.insert(in).second) continue;
      if (producer.contains(in)) {
        ++pending[i];
        readers[in].push_back(i);
      } else if (!outer_scope && !initializers.contains(in) &&
                 std::find(inputs.begin(), inputs.end(), in) == inputs.end()) {
        return absl::InvalidArgumentError(absl::StrFormat(
            "failed to load %s: input '%s' of node %s must be a graph input, an initializer or "
            "a node output, got none of these",
            source, in, nodes[i].Label()));
      }
    }
  }
  std::vector<int> order;
  std::deque<int> ready;
  for (int i = 0; i < static_cast<int>(nodes.size()); ++i) {
    if (pending[i] == 0) ready.push_back(i);
  }
  while (!ready.empty()) {
    int i = ready.front();
    ready.pop_front();
    order.push_back(i);
    for (const std::string& out : nodes[i].outputs) {
      auto it = readers.find(out);
      if (it == readers.end()) continue;
      for (int r : it->second) {
        if (--pending[r] == 0) ready.push_back(r);
      }
    }
  }
  if (order.size() != nodes.size()) {
    for (int i = 0; i < static_cast<int>(nodes.size()); ++i) {
      if (pending[i] > 0) {
        return absl::InvalidArgumentError(absl::StrFormat(
            "failed to load %s: graph must be acyclic, got a cycle through node %s", source,
            nodes[i].Label()));
      }
    }
  }
  std::vector<Node> sorted;
  sorted.reserve(nodes.size());
  for (int i : order) sorted.push_back(std::move(nodes[i]));
  nodes = std::move(sorted);
  for (const std::string& out : outputs) {
    if (!outer_scope && !producer.contains(out) && !initializers.contains(out) &&
        std::find(inputs.begin(), inputs.end(), out) == inputs.end()) {
      return absl::InvalidArgumentError(absl::StrFormat(
          "failed to load %s: graph output '%s' must be produced by a node, got no producer",
          source, out));
    }
  }
  return absl::OkStatus();
}

std::vector<std::string> Graph::OuterReferences() const {
  absl::flat_hash_set<std::string> produced(inputs.begin(), inputs.end());
  for (const auto& [name, t] : initializers) produced.insert(name);
  for (const Node& n : nodes) produced.insert(n.outputs.begin(), n.outputs.end());
  std::vector<std::string> refs;
  absl::flat_hash_set<std::string> seen;
  auto add = [&](const std::string& v) {
    if (!v.empty() && !produced.contains(v) && seen.insert(v).second) refs.push_back(v);
  };
  for (const Node& n : nodes) {
    for (const std::string& in : n.inputs) add(in);
    for (const std::string& in : n.implicit_inputs) add(in);
  }
  for (const std::string& out : outputs) add(out);
  return refs;
}

absl::flat_hash_map<std::string, int> Graph::UseCounts() const {
  absl::flat_hash_map<std::string, int> uses;
  for (const Node& n : nodes) {
    for (const std::string& in : n.inputs) {
      if (!in.empty()) ++uses[in];
    }
    for (const std::string& in : n.implicit_inputs) ++uses[in];
  }
  for (const std::string& out : outputs) ++uses[out];
  return uses;
}

absl::flat_hash_map<std::string, int> Graph::Producers() const {
  absl::flat_hash_map<std::string, int> producers;
  for (int i = 0; i < static_cast<int>(nodes.size()); ++i) {
    for (const std::string& out : nodes[i].outputs) {
      if (!out.empty()) producers[out] = i;
    }
  }
  return producers;
}

std::string Graph::UniqueName(const std::string& hint) const {
  for (int i = 0;; ++i) {
    std::string name = i == 0 ? hint : absl::StrCat(hint, "_", i);
    if (!values.contains(name) && !initializers.contains(name)) return name;
  }
}

std::string Graph::AddConstant(const std::string& hint, const Tensor& t) {
  const std::string name = UniqueName(hint);
  initializers[name] = t;
  values[name] = ValueType{t.dtype(), Shape::Of(t.shape())};
  return name;
}

void Graph::RemoveNodes(const std::vector<bool>& removed) {
  std::vector<Node> kept;
  kept.reserve(nodes.size());
  for (size_t i = 0; i < nodes.size(); ++i) {
    if (i >= removed.size() || !removed[i]) kept.push_back(std::move(nodes[i]));
  }
  nodes = std::move(kept);
}

namespace {

std::string AttributeText(const Attribute& a) {
  switch (a.kind) {
    case Attribute::Kind::kInt: return absl::StrCat(a.i);
    case Attribute::Kind::kFloat: return absl::StrCat(a.f);
    case Attribute::Kind::kString: return absl::StrCat("\"", a.s, "\"");
    case Attribute::Kind::kInts: return absl::StrCat("[", absl::StrJoin(a.ints, ","), "]");
    case Attribute::Kind::kFloats: return absl::StrCat("[", absl::StrJoin(a.floats, ","), "]");
    case Attribute::Kind::kStrings: return absl::StrCat("[", absl::StrJoin(a.strings, ","), "]");
    case Attribute::Kind::kTensor:
      return absl::StrCat("tensor<", DataTypeName(a.t.dtype()), "[", absl::StrJoin(a.t.shape(), ","),
                          "]>");
    case Attribute::Kind::kGraph:
      return absl::StrCat("graph<", a.g ? a.g->nodes.size() : 0, " nodes>");
    default: return "<unsupported>";
  }
}

}  // namespace

std::string Graph::DebugString() const {
  auto type_of = [&](const std::string& v) {
    const ValueType* t = FindType(v);
    if (!t) return std::string("?");
    return absl::StrCat(DataTypeName(t->dtype), t->shape.ToString());
  };
  std::string s = absl::StrFormat("graph '%s' (opset %d, %d nodes, %d initializers)\n", name, opset,
                                  nodes.size(), initializers.size());
  for (const std::string& in : inputs) absl::StrAppend(&s, "  input  ", in, ": ", type_of(in), "\n");
  std::vector<std::string> init_names;
  for (const auto& [k, v] : initializers) init_names.push_back(k);
  std::sort(init_names.begin(), init_names.end());
  for (const std::string& k : init_names) {
    const Tensor& t = initializers.at(k);
    absl::StrAppend(&s, "  const  ", k, ": ", DataTypeName(t.dtype()), "[",
                    absl::StrJoin(t.shape(), ","), "]\n");
  }
  for (const Node& n : nodes) {
    absl::StrAppend(&s, "  ", absl::StrJoin(n.outputs, ", "), " = ", n.Label(), "(",
                    absl::StrJoin(n.inputs, ", "), ")");
    std::vector<std::string> attr_names;
    for (const auto& [k, v] : n.attrs.all()) attr_names.push_back(k);
    std::sort(attr_names.begin(), attr_names.end());
    if (!attr_names.empty()) {
      absl::StrAppend(&s, " {", absl::StrJoin(attr_names, ", ", [&](std::string* out, const std::string& k) {
                        absl::StrAppend(out, k, "=", AttributeText(*n.attrs.Find(k)));
                      }),
                      "}");
    }
    absl::StrAppend(&s, "  -> ", absl::StrJoin(n.outputs, ", ", [&](std::string* out, const std::string& v) {
                      out->append(type_of(v));
                    }),
                    "\n");
  }
  for (const std::string& out : outputs) absl::StrAppend(&s, "  output ", out, ": ", type_of(out), "\n");
  return s;
}

}  // namespace kvant
