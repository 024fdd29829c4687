// `kvant`: run, inspect (and, in later issues, quantize, bench, compare).
// Argument parsing by CLI11; every failure prints its Status and exits non-zero.
#include <CLI/CLI.hpp>

#include "tools/commands.h"

int main(int argc, char** argv) {
  CLI::App app{"kvant: INT8/FP16 inference runtime"};
  app.require_subcommand(1);

  kvant::tools::RunArgs run;
  CLI::App* run_cmd = app.add_subcommand("run", "Run a model on .npy inputs or seeded random inputs");
  run_cmd->add_option("model", run.model, "ONNX model")->required();
  run_cmd->add_option("--input", run.inputs, "NAME=FILE.npy (repeatable)");
  run_cmd->add_option("--shape", run.shapes, "NAME=D0,D1,... shape of a random input (repeatable)");
  run_cmd->add_option("--labels", run.labels, "OUTPUT=LABELS.npy: print top-1 accuracy of OUTPUT (repeatable)");
  run_cmd->add_option("--output-dir", run.output_dir, "write each output to DIR/<name>.npy");
  run_cmd->add_option("--threads", run.threads, "intra-op threads")->check(CLI::Range(1, 1024));
  run_cmd->add_option("--repeat", run.repeat, "timed runs (median reported)")->check(CLI::Range(1, 1000000));
  run_cmd->add_flag("--profile", run.profile, "print time per node over the timed runs");
  run_cmd->add_flag("--dynamic-int8", run.dynamic_int8,
                    "run MatMul, Gemm, LSTM, GRU and RNN with constant weights as dynamically quantized INT8 "
                    "(s8 weights per column, u8 activations quantized per call)");
  run_cmd->add_option("--seed", run.seed, "seed of the random inputs")->each([&](const std::string&) {
    run.seed_given = true;
  });

  kvant::tools::InspectArgs inspect;
  CLI::App* inspect_cmd = app.add_subcommand("inspect", "Describe a model, its plan, or this machine");
  inspect_cmd->add_option("model", inspect.model, "ONNX model");
  inspect_cmd->add_flag("--hardware", inspect.hardware, "print the CPU capability table");
  inspect_cmd->add_flag("--graph", inspect.graph, "print the optimized graph");
  inspect_cmd->add_flag("--plan", inspect.plan, "print the execution and memory plan");
  inspect_cmd->add_flag("--dynamic-int8", inspect.dynamic_int8,
                        "plan as `kvant run --dynamic-int8` runs it (INT8 weights for MatMul/Gemm/LSTM/GRU/RNN)");
  inspect_cmd->add_option("--shape", inspect.shapes, "NAME=D0,D1,... input shape for --plan (repeatable)");

  CLI11_PARSE(app, argc, argv);
  if (run_cmd->parsed()) return kvant::tools::RunCommand(run);
  if (inspect_cmd->parsed()) {
    if (!inspect.hardware && inspect.model.empty()) {
      std::fprintf(stderr, "kvant inspect: give a MODEL or --hardware\n");
      return 2;
    }
    return kvant::tools::InspectCommand(inspect);
  }
  return 2;
}
