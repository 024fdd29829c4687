// Embedding example: load the digits model with the one public header, run it
// on a batch of zeros and on a malformed path, and report what happened.
#include <cstdio>

#include "kvant/kvant.h"

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: embed_example MODEL.onnx\n");
    return 2;
  }
  kvant::SessionOptions options;
  options.num_threads = 2;
  absl::StatusOr<kvant::Session> session = kvant::Session::Load(argv[1], options);
  if (!session.ok()) {
    std::fprintf(stderr, "load failed: %s\n", std::string(session.status().message()).c_str());
    return 1;
  }
  const kvant::ValueInfo& in = session->inputs().at(0);
  kvant::Tensor x = kvant::Tensor::Zeros(in.dtype, {4, 1, 8, 8});
  absl::StatusOr<kvant::TensorMap> out = session->Run({{in.name, x}});
  if (!out.ok()) {
    std::fprintf(stderr, "run failed: %s\n", std::string(out.status().message()).c_str());
    return 1;
  }
  const kvant::Tensor& y = out->at(session->outputs().at(0).name);
  std::printf("output %s has %lld values\n", session->outputs().at(0).name.c_str(),
              static_cast<long long>(y.num_elements()));
  auto bad = kvant::Session::Load("/nonexistent.onnx");
  std::printf("bad path: %s\n", bad.ok() ? "loaded?!" : "refused");
  return y.num_elements() == 40 && !bad.ok() ? 0 : 1;
}
