// `kvant inspect`: a model's inputs, outputs, opset, op histogram and
// parameter count; --graph, --plan; or this machine's capability table.
#include <cstdio>
#include <map>

#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "graph/onnx_import.h"
#include "tools/commands.h"

namespace kvant::tools {
namespace {

std::string Describe(const ValueInfo& vi) {
  std::vector<std::string> dims;
  for (size_t i = 0; i < vi.shape.size(); ++i) {
    dims.push_back(vi.shape[i] >= 0 ? absl::StrCat(vi.shape[i]) : (vi.dim_names[i].empty() ? "?" : vi.dim_names[i]));
  }
  return absl::StrFormat("%s: %s [%s]", vi.name, DataTypeName(vi.dtype), vi.rank_known ? absl::StrJoin(dims, ",") : "?");
}

}  // namespace

int InspectCommand(const InspectArgs& args) {
  if (args.hardware) std::printf("%s", DescribeHardware().c_str());
  if (args.model.empty()) return 0;
  auto graph = ImportOnnxFile(args.model);
  if (!graph.ok()) return Fail(graph.status());
  SessionOptions options;
  options.dynamic_int8 = args.dynamic_int8;
  options.precision = PrecisionOf(args.precision);
  auto session = Session::Load(args.model, options);
  if (!session.ok()) return Fail(session.status());
  std::map<std::string, int> ops;
  for (const Node& n : graph->nodes) ++ops[n.domain.empty() ? n.op_type : n.domain + "." + n.op_type];
  int64_t params = 0;
  for (const auto& [name, t] : graph->initializers) params += t.num_elements();
  std::printf("model %s\n  opset %lld, %zu nodes, %lld parameters in %zu initializers\n", args.model.c_str(),
              static_cast<long long>(graph->opset), graph->nodes.size(), static_cast<long long>(params),
              graph->initializers.size());
  for (const ValueInfo& vi : session->inputs()) std::printf("  input  %s\n", Describe(vi).c_str());
  for (const ValueInfo& vi : session->outputs()) std::printf("  output %s\n", Describe(vi).c_str());
  std::printf("  operators:");
  for (const auto& [op, n] : ops) std::printf(" %s x%d", op.c_str(), n);
  std::printf("\n");
  if (args.graph) std::printf("%s", session->GraphText().c_str());
  if (args.plan) {
    auto shapes = ResolveShapes(*session, args.shapes);
    if (!shapes.ok()) return Fail(shapes.status());
    auto report = session->Plan(*shapes);
    if (!report.ok()) return Fail(report.status());
    std::printf("%s", report->text.c_str());
  }
  return 0;
}

}  // namespace kvant::tools
