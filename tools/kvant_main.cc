// `kvant`: run, inspect, quantize, compare, bench.
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
  run_cmd->add_option("--precision", run.precision,
                      "fp32; bf16: MatMul/Gemm and group-1 convolutions with constant weights and K >= 128, and "
                      "LSTM/GRU/RNN with hidden size >= 128, in BF16 with FP32 accumulation (CPUs with AVX-512 BF16 or AMX-BF16; FP32 elsewhere), every "
                      "other operator FP32; fp16: the constant weights of MatMul/Gemm, group-1 convolutions and "
                      "LSTM/GRU/RNN stored in FP16 (half the memory), widened to FP32 for the arithmetic")
      ->check(CLI::IsMember({"fp32", "bf16", "fp16"}));
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
  inspect_cmd->add_option("--precision", inspect.precision, "plan as `kvant run --precision` runs it (fp32, bf16, fp16)")
      ->check(CLI::IsMember({"fp32", "bf16", "fp16"}));
  inspect_cmd->add_option("--shape", inspect.shapes, "NAME=D0,D1,... input shape for --plan (repeatable)");

  kvant::tools::QuantizeArgs quant;
  CLI::App* quant_cmd = app.add_subcommand("quantize", "Quantize an FP32 model to INT8 (prepare -> calibrate -> convert)");
  quant_cmd->add_option("model", quant.model, "FP32 ONNX model")->required();
  quant_cmd->add_option("-o,--output", quant.output, "quantized ONNX model to write")->required();
  quant_cmd->add_option("--preset", quant.preset, "scheme: x86 (u8 asym. activations), tensorrt (s8 symmetric), tflite (s8 asym.)");
  quant_cmd->add_option("--method", quant.method, "activation ranges: minmax, moving-average, percentile, entropy, mse");
  quant_cmd->add_option("--percentile", quant.percentile, "percentile for --method percentile")->check(CLI::Range(50.0, 100.0));
  quant_cmd->add_option("--calib", quant.calib, "calibration data: a directory with one NAME.npy per input, batched");
  quant_cmd->add_option("--calib-samples", quant.calib_samples, "use the first N samples (rows)")->check(CLI::NonNegativeNumber);
  quant_cmd->add_option("--calib-batch", quant.calib_batch, "rows per calibration run")->check(CLI::Range(1, 4096));
  quant_cmd->add_flag("--per-tensor", quant.per_tensor, "one weight scale per tensor instead of per output channel");
  quant_cmd->add_flag("--symmetric-activations", quant.symmetric_activations, "activation zero point 0 (s8) or 128 (u8)");
  quant_cmd->add_option("--activation-type", quant.activation_type, "u8 or s8 (default: the preset's)");
  quant_cmd->add_flag("--dynamic", quant.dynamic, "s8 weights for MatMul/Gemm/LSTM, activations quantized per call; no calibration");
  quant_cmd->add_flag("--equalize", quant.equalize, "cross-layer equalization of Conv -> [Relu] -> Conv pairs first");
  quant_cmd->add_flag("--bias-correction", quant.bias_correction,
                      "add each output channel's mean INT8 error, measured on the calibration data, to its bias");
  quant_cmd->add_option("--format", quant.format, "qdq (QuantizeLinear/DequantizeLinear around float operators) or qoperator (QLinearConv, QLinearMatMul, ...)");
  quant_cmd->add_option("--exclude", quant.exclude, "node name to keep in float (repeatable)");
  quant_cmd->add_option("--accuracy-budget", quant.accuracy_budget,
                        "DB: minimum output SQNR against FP32 on the calibration data, or top1:POINTS: largest top-1 "
                        "drop (needs --labels); nodes stay in float, most sensitive per byte first, until it is met");
  quant_cmd->add_option("--labels", quant.labels, "LABELS.npy: the class of each calibration sample (top-1 budget)");
  quant_cmd->add_option("--threads", quant.threads, "intra-op threads for calibration")->check(CLI::Range(1, 1024));

  kvant::tools::CompareArgs cmp;
  CLI::App* cmp_cmd = app.add_subcommand("compare", "Per-layer error of a quantized model against its FP32 original");
  cmp_cmd->add_option("float_model", cmp.float_model, "FP32 ONNX model")->required();
  cmp_cmd->add_option("quant_model", cmp.quant_model, "its quantized form (QDQ: Kvant's, ONNX Runtime's, PyTorch's)")->required();
  cmp_cmd->add_option("--data", cmp.data, "a directory with one NAME.npy per input, batched")->required();
  cmp_cmd->add_option("--samples", cmp.samples, "use the first N samples (rows)")->check(CLI::NonNegativeNumber);
  cmp_cmd->add_option("--batch", cmp.batch, "rows per run")->check(CLI::Range(1, 4096));
  cmp_cmd->add_option("--top", cmp.top, "layers to list");
  cmp_cmd->add_option("--try-layers", cmp.try_layers, "worst layers to try keeping in float");
  cmp_cmd->add_flag("--no-suggest", cmp.no_suggest, "only measure, suggest nothing");
  cmp_cmd->add_option("--preset", cmp.preset, "scheme the suggestions start from (x86, tensorrt, tflite)");
  cmp_cmd->add_option("--method", cmp.method, "range method the suggestions start from");
  cmp_cmd->add_flag("--per-tensor", cmp.per_tensor, "suggestions start from per-tensor weights");
  cmp_cmd->add_option("--threads", cmp.threads, "intra-op threads")->check(CLI::Range(1, 1024));

  kvant::tools::BenchArgs bench;
  CLI::App* bench_cmd = app.add_subcommand(
      "bench", "Latency, memory and accuracy of a model in FP32, BF16 and INT8, with ONNX Runtime beside it");
  bench_cmd->add_option("model", bench.model, "FP32 ONNX model (a quantized one gives only its int8 row)")->required();
  bench_cmd->add_option("--precision", bench.precisions,
                        "comma-separated: fp32, bf16, fp16, int8 (quantized on the fly with `kvant quantize`'s "
                        "defaults, or --int8-model), int8-dynamic (--dynamic-int8)");
  bench_cmd->add_option("--int8-model", bench.int8_model, "a quantized file for the int8 rows");
  bench_cmd->add_option("--calib", bench.calib, "calibration data for the on-the-fly INT8: one NAME.npy per input");
  bench_cmd->add_option("--data", bench.data, "evaluation data: one NAME.npy per input (else seeded random inputs)");
  bench_cmd->add_option("--samples", bench.samples, "evaluation rows at most")->check(CLI::Range(1, 1000000));
  bench_cmd->add_option("--batch", bench.batch, "rows per run where the batch dimension is symbolic")
      ->check(CLI::Range(1, 4096));
  bench_cmd->add_option("--shape", bench.shapes, "NAME=D0,D1,... shape of a random input (repeatable)");
  bench_cmd->add_option("--seed", bench.seed, "seed of the random inputs");
  bench_cmd->add_option("--threads", bench.threads, "comma-separated intra-op thread counts, e.g. 1,2");
  bench_cmd->add_option("--vs", bench.vs, "onnxruntime: its FP32 and its own INT8 quantization beside ours");
  bench_cmd->add_option("--device", bench.device, "cpu (cuda: not yet for whole models)");
  bench_cmd->add_option("--json", bench.json, "write the results as JSON (tools/bench/bench_schema.json)");
  bench_cmd->add_option("--markdown", bench.markdown, "write the table as Markdown");
  bench_cmd->add_option("--chart", bench.chart, "write an SVG chart of latency and accuracy");
  bench_cmd->add_flag("--profile", bench.profile, "per-operator time and the precision each ran in");
  bench_cmd->add_option("--budget", bench.budget_s, "timing budget per row, seconds")->check(CLI::Range(0.01, 3600.0));
  bench_cmd->add_option("--ci", bench.ci, "stop a row when its median is known within this fraction (95%)")
      ->check(CLI::Range(0.0001, 1.0));
  bench_cmd->add_option("--min-runs", bench.min_runs, "timed runs per row at least")->check(CLI::Range(3, 1000000));

  kvant::tools::BenchMemoryArgs memory;
  CLI::App* memory_cmd = app.add_subcommand("bench-memory", "")->group("");  // hidden: used by `kvant bench`
  memory_cmd->add_option("model", memory.model)->required();
  memory_cmd->add_option("--precision", memory.precision);
  memory_cmd->add_option("--threads", memory.threads);
  memory_cmd->add_option("--inputs", memory.inputs)->required();

  CLI11_PARSE(app, argc, argv);
  if (memory_cmd->parsed()) return kvant::tools::BenchMemoryCommand(memory);
  if (bench_cmd->parsed()) return kvant::tools::BenchCommand(bench);
  if (cmp_cmd->parsed()) return kvant::tools::CompareCommand(cmp);
  if (quant_cmd->parsed()) return kvant::tools::QuantizeCommand(quant);
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
