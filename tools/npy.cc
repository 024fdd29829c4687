// .npy files: a magic string, a version, a header length, a Python-dict header
// ('descr', 'fortran_order', 'shape') padded to 64 bytes, then raw data.
// Debian has no maintained C++ npy library, so this small reader lives here.
#include "tools/npy.h"

#include <cstring>
#include <fstream>
#include <sstream>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"

namespace kvant {
namespace {

struct Descr {
  const char* code;
  DataType type;
};
constexpr Descr kDescrs[] = {
    {"<f4", DataType::kFloat32}, {"<f8", DataType::kFloat64}, {"<f2", DataType::kFloat16},
    {"|u1", DataType::kUInt8},   {"|i1", DataType::kInt8},    {"<i2", DataType::kInt16},
    {"<u2", DataType::kUInt16},  {"<i4", DataType::kInt32},   {"<u4", DataType::kUInt32},
    {"<i8", DataType::kInt64},   {"<u8", DataType::kUInt64},  {"|b1", DataType::kBool},
};

std::string Field(const std::string& header, const std::string& key) {
  size_t p = header.find("'" + key + "'");
  if (p == std::string::npos) return "";
  p = header.find(':', p);
  if (p == std::string::npos) return "";
  size_t e = key == "shape" ? header.find(')', p) + 1 : header.find_first_of(",}", p);
  return std::string(absl::StripAsciiWhitespace(header.substr(p + 1, e - p - 1)));
}

}  // namespace

absl::StatusOr<Tensor> ReadNpy(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) return absl::NotFoundError(absl::StrFormat("failed to open '%s': no such file", path));
  std::stringstream ss;
  ss << f.rdbuf();
  const std::string bytes = ss.str();
  auto bad = [&](const std::string& why) {
    return absl::InvalidArgumentError(absl::StrFormat("failed to read '%s' as .npy: %s", path, why));
  };
  if (bytes.size() < 10 || bytes.compare(0, 6, "\x93NUMPY") != 0) return bad("missing the \\x93NUMPY magic");
  const int major = static_cast<unsigned char>(bytes[6]);
  size_t header_len, offset;
  if (major == 1) {
    header_len = static_cast<unsigned char>(bytes[8]) | (static_cast<unsigned char>(bytes[9]) << 8);
    offset = 10;
  } else if (major == 2 || major == 3) {
    if (bytes.size() < 12) return bad("truncated header");
    uint32_t len;
    std::memcpy(&len, bytes.data() + 8, 4);
    header_len = len;
    offset = 12;
  } else {
    return bad(absl::StrCat("version must be 1, 2 or 3, got ", major));
  }
  if (offset + header_len > bytes.size()) return bad("truncated header");
  const std::string header = bytes.substr(offset, header_len);
  std::string descr(absl::StripSuffix(absl::StripPrefix(Field(header, "descr"), "'"), "'"));
  if (descr == "=f4") descr = "<f4";
  DataType type = DataType::kUndefined;
  for (const Descr& d : kDescrs) {
    if (descr == d.code) type = d.type;
  }
  if (type == DataType::kUndefined) return bad(absl::StrCat("dtype must be a little-endian number or bool, got ", descr));
  if (Field(header, "fortran_order") != "False") return bad("fortran_order must be False");
  std::string shape_text(absl::StripSuffix(absl::StripPrefix(Field(header, "shape"), "("), ")"));
  std::vector<int64_t> shape;
  for (absl::string_view part : absl::StrSplit(shape_text, ',', absl::SkipWhitespace())) {
    int64_t d;
    if (!absl::SimpleAtoi(absl::StripAsciiWhitespace(part), &d) || d < 0) return bad(absl::StrCat("bad shape (", shape_text, ")"));
    shape.push_back(d);
  }
  int64_t count = 1;
  for (int64_t d : shape) {
    if (d != 0 && count > (int64_t{1} << 40) / d) return bad("shape too large");
    count *= d;
  }
  const size_t data_bytes = count * DataTypeSize(type);
  if (bytes.size() - offset - header_len != data_bytes) {
    return bad(absl::StrFormat("data must be %d bytes for shape (%s), got %d", data_bytes, shape_text,
                               bytes.size() - offset - header_len));
  }
  Tensor t = Tensor::Zeros(type, shape);
  std::memcpy(t.raw_data(), bytes.data() + offset + header_len, data_bytes);
  return t;
}

absl::Status WriteNpy(const std::string& path, const Tensor& tensor) {
  const char* code = nullptr;
  for (const Descr& d : kDescrs) {
    if (d.type == tensor.dtype()) code = d.code;
  }
  if (code == nullptr) {
    return absl::InvalidArgumentError(
        absl::StrFormat("failed to write '%s': .npy cannot hold %s", path, DataTypeName(tensor.dtype())));
  }
  std::string shape = absl::StrJoin(tensor.shape(), ", ");
  if (tensor.rank() == 1) shape += ",";
  std::string header = absl::StrFormat("{'descr': '%s', 'fortran_order': False, 'shape': (%s), }", code, shape);
  const size_t total = 10 + header.size() + 1;
  header.append((64 - total % 64) % 64, ' ');
  header.push_back('\n');
  std::ofstream f(path, std::ios::binary);
  if (!f) return absl::PermissionDeniedError(absl::StrFormat("failed to write '%s': cannot open", path));
  const uint16_t len = header.size();
  f.write("\x93NUMPY\x01\x00", 8);
  f.put(static_cast<char>(len & 0xff));
  f.put(static_cast<char>(len >> 8));
  f << header;
  f.write(static_cast<const char*>(tensor.raw_data()), tensor.byte_size());
  return f ? absl::OkStatus() : absl::DataLossError(absl::StrFormat("failed to write '%s'", path));
}

}  // namespace kvant
