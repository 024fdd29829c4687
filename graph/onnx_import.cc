// ONNX protobuf -> Graph. Parsing is bounded: sizes are checked before any
// allocation, external data must stay inside the model's directory, and every
// error names the file and the node or tensor it concerns.
#include "graph/onnx_import.h"

#include <google/protobuf/io/coded_stream.h>
#include <google/protobuf/io/zero_copy_stream_impl_lite.h>

#include <climits>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "absl/container/flat_hash_set.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "onnx/onnx_pb.h"

namespace kvant {

// A graph or subgraph (If branches) of a model; subgraphs may read values of
// their parent graph.
absl::StatusOr<Graph> ImportGraph(const onnx::GraphProto& gp, const std::string& base_dir, const std::string& source,
                                  int64_t opset, const ImportOptions& options, bool subgraph, int depth);

namespace {

namespace fs = std::filesystem;

absl::StatusOr<std::string> ReadFile(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) return absl::NotFoundError(absl::StrFormat("failed to open '%s': no such file", path));
  std::ostringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

bool ParseProto(std::string_view bytes, google::protobuf::MessageLite* msg) {
  google::protobuf::io::ArrayInputStream raw(bytes.data(), static_cast<int>(bytes.size()));
  google::protobuf::io::CodedInputStream in(&raw);
  in.SetTotalBytesLimit(INT_MAX);
  return msg->ParseFromCodedStream(&in) && in.ConsumedEntireMessage();
}

// Resolves an external-data location inside `base_dir`, refusing escapes.
absl::StatusOr<std::string> ResolveExternalPath(const std::string& base_dir,
                                                const std::string& location,
                                                const std::string& what) {
  fs::path rel(location);
  if (location.empty() || rel.is_absolute()) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "%s: external data location must be a relative path inside the model directory, got '%s'",
        what, location));
  }
  for (const auto& part : rel) {
    if (part == "..") {
      return absl::InvalidArgumentError(absl::StrFormat(
          "%s: external data location must stay inside the model directory, got '%s'", what,
          location));
    }
  }
  std::error_code ec;
  fs::path base = fs::weakly_canonical(fs::path(base_dir.empty() ? "." : base_dir), ec);
  fs::path full = fs::weakly_canonical(base / rel, ec);
  if (ec) {
    return absl::InvalidArgumentError(
        absl::StrFormat("%s: cannot resolve external data '%s': %s", what, location, ec.message()));
  }
  auto [b, f] = std::mismatch(base.begin(), base.end(), full.begin(), full.end());
  if (b != base.end()) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "%s: external data '%s' must resolve inside '%s', got '%s'", what, location,
        base.string(), full.string()));
  }
  return full.string();
}

absl::Status CheckCount(int64_t got, int64_t expected, const std::string& what) {
  if (got != expected) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "%s: data must hold %d elements for its shape, got %d", what, expected, got));
  }
  return absl::OkStatus();
}

template <typename Src, typename Dst>
void CopyConvert(const Src& src, Dst* dst) {
  for (int i = 0; i < src.size(); ++i) dst[i] = static_cast<Dst>(src[i]);
}

absl::StatusOr<DataType> ConvertType(int32_t t, const std::string& what) {
  switch (t) {
    case onnx::TensorProto::FLOAT: case onnx::TensorProto::UINT8: case onnx::TensorProto::INT8:
    case onnx::TensorProto::UINT16: case onnx::TensorProto::INT16: case onnx::TensorProto::INT32:
    case onnx::TensorProto::INT64: case onnx::TensorProto::BOOL: case onnx::TensorProto::FLOAT16:
    case onnx::TensorProto::DOUBLE: case onnx::TensorProto::UINT32: case onnx::TensorProto::UINT64:
    case onnx::TensorProto::BFLOAT16:
      return static_cast<DataType>(t);
    default:
      return absl::UnimplementedError(
          absl::StrFormat("%s: element type must be numeric or bool, got ONNX type %d", what, t));
  }
}

absl::StatusOr<ValueType> ConvertValueInfo(const onnx::ValueInfoProto& vi, const std::string& what) {
  ValueType out;
  if (!vi.type().has_tensor_type()) {
    return absl::UnimplementedError(
        absl::StrFormat("%s: value '%s' must be a tensor, got a sequence, map or optional", what,
                        vi.name()));
  }
  const auto& tt = vi.type().tensor_type();
  auto dtype = ConvertType(tt.elem_type(), absl::StrCat(what, ": value '", vi.name(), "'"));
  if (!dtype.ok()) return dtype.status();
  out.dtype = *dtype;
  if (tt.has_shape()) {
    out.shape.rank_known = true;
    for (const auto& d : tt.shape().dim()) {
      if (d.has_dim_value()) {
        // Some exporters (paddle2onnx) declare dynamic dimensions as -1, which
        // ONNX Runtime accepts as unknown; so do we.
        out.shape.dims.push_back(d.dim_value() >= 0 ? Dim::Known(d.dim_value()) : Dim{});
      } else {
        out.shape.dims.push_back(Dim::Symbol(d.dim_param()));
      }
    }
  }
  return out;
}

absl::StatusOr<Attribute> ConvertAttribute(const onnx::AttributeProto& a, const std::string& base_dir,
                                           const std::string& what, const std::string& source, int64_t opset,
                                           const ImportOptions& options, int depth) {
  Attribute out;
  switch (a.type()) {
    case onnx::AttributeProto::INT: out.kind = Attribute::Kind::kInt; out.i = a.i(); break;
    case onnx::AttributeProto::FLOAT: out.kind = Attribute::Kind::kFloat; out.f = a.f(); break;
    case onnx::AttributeProto::STRING: out.kind = Attribute::Kind::kString; out.s = a.s(); break;
    case onnx::AttributeProto::INTS:
      out.kind = Attribute::Kind::kInts;
      out.ints.assign(a.ints().begin(), a.ints().end());
      break;
    case onnx::AttributeProto::FLOATS:
      out.kind = Attribute::Kind::kFloats;
      out.floats.assign(a.floats().begin(), a.floats().end());
      break;
    case onnx::AttributeProto::STRINGS:
      out.kind = Attribute::Kind::kStrings;
      out.strings.assign(a.strings().begin(), a.strings().end());
      break;
    case onnx::AttributeProto::TENSOR: {
      out.kind = Attribute::Kind::kTensor;
      auto t = TensorFromProto(a.t(), base_dir, absl::StrCat(what, ": attribute '", a.name(), "'"));
      if (!t.ok()) return t.status();
      out.t = *std::move(t);
      break;
    }
    case onnx::AttributeProto::GRAPH: {
      auto g = ImportGraph(a.g(), base_dir, source, opset, options, /*subgraph=*/true, depth + 1);
      if (!g.ok()) return g.status();
      out.kind = Attribute::Kind::kGraph;
      out.g = std::make_shared<const Graph>(*std::move(g));
      break;
    }
    default: out.kind = Attribute::Kind::kUnsupported; break;
  }
  return out;
}

// A Constant node's value as a tensor (value, value_float(s), value_int(s)).
absl::StatusOr<Tensor> ConstantValue(const Node& n) {
  if (const Attribute* a = n.attrs.Find("value"); a && a->kind == Attribute::Kind::kTensor) return a->t;
  if (const Attribute* a = n.attrs.Find("value_float")) {
    return Tensor::FromVector<float>(DataType::kFloat32, {}, {a->f});
  }
  if (const Attribute* a = n.attrs.Find("value_floats")) {
    return Tensor::FromVector<float>(DataType::kFloat32, {static_cast<int64_t>(a->floats.size())},
                                     a->floats);
  }
  if (const Attribute* a = n.attrs.Find("value_int")) {
    return Tensor::FromVector<int64_t>(DataType::kInt64, {}, {a->i});
  }
  if (const Attribute* a = n.attrs.Find("value_ints")) {
    return Tensor::FromVector<int64_t>(DataType::kInt64, {static_cast<int64_t>(a->ints.size())},
                                       a->ints);
  }
  return absl::UnimplementedError(absl::StrFormat(
      "failed to load node %s: Constant must carry value, value_float(s) or value_int(s)", n.Label()));
}

}  // namespace

absl::StatusOr<Tensor> TensorFromProto(const onnx::TensorProto& p, const std::string& base_dir,
                                       const std::string& source) {
  std::string what = absl::StrFormat("failed to load %s: tensor '%s'", source, p.name());
  auto dtype = ConvertType(p.data_type(), what);
  if (!dtype.ok()) return dtype.status();
  std::vector<int64_t> dims(p.dims().begin(), p.dims().end());
  auto count = ElementCount(dims);
  if (!count.ok()) return absl::InvalidArgumentError(absl::StrCat(what, ": ", count.status().message()));
  const int64_t elem = DataTypeSize(*dtype);
  if (*count > (int64_t{1} << 40) / elem) {
    return absl::ResourceExhaustedError(
        absl::StrFormat("%s: %d elements is more than this runtime loads", what, *count));
  }
  const int64_t bytes = *count * elem;

  std::string external;
  const std::string* raw = nullptr;
  if (p.data_location() == onnx::TensorProto::EXTERNAL) {
    std::string location;
    int64_t offset = 0, length = -1;
    for (const auto& kv : p.external_data()) {
      if (kv.key() == "location") location = kv.value();
      if (kv.key() == "offset") offset = std::atoll(kv.value().c_str());
      if (kv.key() == "length") length = std::atoll(kv.value().c_str());
    }
    auto path = ResolveExternalPath(base_dir, location, what);
    if (!path.ok()) return path.status();
    std::ifstream f(*path, std::ios::binary);
    if (!f) return absl::NotFoundError(absl::StrFormat("%s: cannot open external data '%s'", what, *path));
    f.seekg(0, std::ios::end);
    int64_t file_size = f.tellg();
    if (length < 0) length = file_size - offset;
    if (offset < 0 || length != bytes || offset + length > file_size) {
      return absl::InvalidArgumentError(absl::StrFormat(
          "%s: external data must provide %d bytes at offset %d of '%s', got length %d in a file "
          "of %d bytes",
          what, bytes, offset, location, length, file_size));
    }
    external.resize(bytes);
    f.seekg(offset);
    f.read(external.data(), bytes);
    raw = &external;
  } else if (p.has_raw_data()) {
    raw = &p.raw_data();
  }

  // The data is counted before the tensor is allocated: a shape that claims
  // more than the file holds is an error, not an allocation of that size (a
  // few bytes of protobuf could otherwise ask for up to 2^40 bytes), and
  // more data than the shape holds is not written past its end.
  if (raw != nullptr) {
    if (static_cast<int64_t>(raw->size()) != bytes) {
      return absl::InvalidArgumentError(absl::StrFormat(
          "%s: raw data must be %d bytes for shape [%s], got %d", what, bytes,
          absl::StrJoin(dims, ","), raw->size()));
    }
    Tensor t = Tensor::Zeros(*dtype, dims);
    std::memcpy(t.raw_data(), raw->data(), bytes);
    return t;
  }
  int64_t provided = p.int32_data_size();
  switch (*dtype) {
    case DataType::kFloat32: provided = p.float_data_size(); break;
    case DataType::kFloat64: provided = p.double_data_size(); break;
    case DataType::kInt64: provided = p.int64_data_size(); break;
    case DataType::kUInt32: case DataType::kUInt64: provided = p.uint64_data_size(); break;
    default: break;
  }
  if (auto s = CheckCount(provided, *count, what); !s.ok()) return s;
  Tensor t = Tensor::Zeros(*dtype, dims);
  switch (*dtype) {
    case DataType::kFloat32:
      CopyConvert(p.float_data(), t.data<float>());
      break;
    case DataType::kFloat64:
      CopyConvert(p.double_data(), t.data<double>());
      break;
    case DataType::kInt64:
      CopyConvert(p.int64_data(), t.data<int64_t>());
      break;
    case DataType::kUInt32: case DataType::kUInt64:
      if (*dtype == DataType::kUInt32) CopyConvert(p.uint64_data(), t.data<uint32_t>());
      else CopyConvert(p.uint64_data(), t.data<uint64_t>());
      break;
    default: {
      if (*dtype == DataType::kInt32) {
        CopyConvert(p.int32_data(), t.data<int32_t>());
        break;
      }
      // int32_data carries 8- and 16-bit types (and f16/bf16 bit patterns).
      auto* dst = static_cast<unsigned char*>(t.raw_data());
      for (int i = 0; i < p.int32_data_size(); ++i) {
        uint32_t v = static_cast<uint32_t>(p.int32_data(i));
        std::memcpy(dst + i * elem, &v, elem);
      }
    }
  }
  return t;
}

absl::StatusOr<Tensor> ReadTensorProtoFile(const std::string& path, std::string* name) {
  auto bytes = ReadFile(path);
  if (!bytes.ok()) return bytes.status();
  onnx::TensorProto proto;
  if (!ParseProto(*bytes, &proto)) {
    return absl::InvalidArgumentError(absl::StrFormat("failed to parse tensor file '%s'", path));
  }
  if (name) *name = proto.name();
  return TensorFromProto(proto, fs::path(path).parent_path().string(), path);
}

absl::StatusOr<Graph> ImportGraph(const onnx::GraphProto& gp, const std::string& base_dir, const std::string& source,
                                  int64_t opset, const ImportOptions& options, bool subgraph, int depth) {
  if (depth > 16) {
    return absl::InvalidArgumentError(absl::StrFormat("failed to load %s: subgraphs must nest at most 16 deep", source));
  }
  Graph g;
  g.source = source;
  g.opset = opset;
  g.name = gp.name();

  int64_t weight_bytes = 0;
  for (const auto& init : gp.initializer()) {
    auto t = TensorFromProto(init, base_dir, source);
    if (!t.ok()) return t.status();
    weight_bytes += t->byte_size();
    if (weight_bytes > options.max_weight_bytes) {
      return absl::ResourceExhaustedError(absl::StrFormat(
          "failed to load %s: weights must total at most %d bytes (max_weight_bytes), got more at "
          "'%s'",
          source, options.max_weight_bytes, init.name()));
    }
    g.values[init.name()] = ValueType{t->dtype(), Shape::Of(t->shape())};
    g.initializers[init.name()] = *std::move(t);
  }
  for (const auto& vi : gp.input()) {
    if (g.initializers.contains(vi.name())) continue;  // old-style input with a default
    auto vt = ConvertValueInfo(vi, absl::StrCat("failed to load ", source, ": graph input"));
    if (!vt.ok()) return vt.status();
    g.inputs.push_back(vi.name());
    g.values[vi.name()] = *vt;
  }
  for (const auto& vi : gp.output()) {
    g.outputs.push_back(vi.name());
    auto vt = ConvertValueInfo(vi, absl::StrCat("failed to load ", source, ": graph output"));
    if (vt.ok()) g.values[vi.name()] = *vt;
  }
  absl::flat_hash_set<std::string> seen_outputs;
  for (const std::string& out : g.outputs) {
    if (!seen_outputs.insert(out).second) {
      return absl::InvalidArgumentError(absl::StrFormat(
          "failed to load %s: graph outputs must have distinct names, got '%s' twice", source, out));
    }
  }

  int unnamed = 0;
  for (const auto& np : gp.node()) {
    Node n;
    n.name = np.name().empty() ? absl::StrCat(np.op_type(), "_", unnamed++) : np.name();
    n.op_type = np.op_type();
    n.domain = np.domain() == "ai.onnx" ? "" : np.domain();
    n.inputs.assign(np.input().begin(), np.input().end());
    n.outputs.assign(np.output().begin(), np.output().end());
    for (const auto& a : np.attribute()) {
      auto attr = ConvertAttribute(a, base_dir, absl::StrCat("failed to load ", source, ": node ", n.Label()), source,
                                   opset, options, depth);
      if (!attr.ok()) return attr.status();
      n.attrs.Set(a.name(), *std::move(attr));
    }
    for (const auto& [name, attr] : n.attrs.all()) {
      if (attr.kind == Attribute::Kind::kGraph) {
        for (const std::string& ref : attr.g->OuterReferences()) n.implicit_inputs.push_back(ref);
      }
    }
    if (n.op_type == "Constant" && n.domain.empty() && n.outputs.size() == 1) {
      auto value = ConstantValue(n);
      if (!value.ok()) return value.status();
      g.values[n.outputs[0]] = ValueType{value->dtype(), Shape::Of(value->shape())};
      g.initializers[n.outputs[0]] = *std::move(value);
      continue;
    }
    g.nodes.push_back(std::move(n));
  }
  if (auto s = g.TopologicalSort(subgraph); !s.ok()) return s;
  return g;
}


absl::StatusOr<Graph> ImportOnnxBytes(std::string_view bytes, const std::string& base_dir,
                                      const std::string& source, const ImportOptions& options) {
  onnx::ModelProto model;
  if (!ParseProto(bytes, &model)) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "failed to load %s: the file must be a serialized ONNX ModelProto, got %d bytes that do "
        "not parse (truncated or not ONNX)",
        source, bytes.size()));
  }
  if (!model.has_graph()) {
    return absl::InvalidArgumentError(absl::StrFormat("failed to load %s: model has no graph", source));
  }
  Graph g;
  g.source = source;
  for (const auto& op : model.opset_import()) {
    if (op.domain().empty() || op.domain() == "ai.onnx") g.opset = op.version();
  }
  if (g.opset < kMinOpset || g.opset > kMaxOpset) {
    return absl::UnimplementedError(absl::StrFormat(
        "failed to load %s: default-domain opset must be in [%d, %d], got %d", source, kMinOpset,
        kMaxOpset, g.opset));
  }
  auto graph = ImportGraph(model.graph(), base_dir, source, g.opset, options, /*subgraph=*/false, 0);
  if (!graph.ok()) return graph.status();
  graph->opset = g.opset;
  return graph;
}

absl::StatusOr<Graph> ImportOnnxFile(const std::string& path, const ImportOptions& options) {
  auto bytes = ReadFile(path);
  if (!bytes.ok()) return bytes.status();
  std::string base = fs::path(path).parent_path().string();
  return ImportOnnxBytes(*bytes, base.empty() ? "." : base, path, options);
}

}  // namespace kvant
