// INT8 convolution on 1x56x56 inputs: 3x3 64->64, 1x1 256->64 and depthwise
// 3x3 with 144 channels; ResNet-50's 3x3 convolutions (stages 2-4 and the
// stride-2 one of stage 2); and EfficientNet-Lite0's depthwise shapes (blocks
// 0, 1, 3, 4, 5, 9 and 11, named by geometry); PP-OCR direction classifier's
// short wide depthwise images (2 and 3 rows of 96). Our INT8 NHWC convolution next
// to oneDNN's int8 convolution (u8 NHWC source with zero point 128, s8
// weights reordered once, per-channel output scales, u8 destination), our
// FP32 convolution (a one-node Session, NCHW), for depthwise also our NHWC
// FP32 kernel (the one kvant.ConvNhwc runs, ReLU6 fused), and oneDNN's f32
// convolution (NHWC), in one run.
// `--paired=N [--paired_filter=TEXT]` instead times our INT8 convolution and
// oneDNN's alternately, call by call (bench::TimePaired), and prints the
// ratios of their medians and minima: the comparison to quote on a noisy
// machine.
// GOP/s counts 2 operations per multiply-add. Single thread unless
// --threads is given (oneDNN is limited the same way through OMP_NUM_THREADS).
#include <benchmark/benchmark.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "dnnl.hpp"
#include "kvant/kvant.h"
#include "onnx/onnx_pb.h"
#include "ops/cpu/conv_s8.h"
#include "ops/cpu/depthwise_f32.h"
#include "benchmarks/kernels/bench_setup.h"
#include "runtime/cpu_caps.h"
#include "runtime/thread_pool.h"

namespace kvant {
namespace {

struct ConvCase {
  const char* name;
  int64_t c, m, k, group;
  int64_t hw = 56, stride = 1;
  int64_t rows = 0;  // input height where it differs from the width hw
  int64_t in_h() const { return rows > 0 ? rows : hw; }
  int64_t out() const { return (hw + 2 * (k / 2) - k) / stride + 1; }  // output width
  int64_t out_h() const { return (in_h() + 2 * (k / 2) - k) / stride + 1; }
};

constexpr ConvCase kCases[] = {
    {"3x3_64to64_56x56", 64, 64, 3, 1},
    {"1x1_256to64_56x56", 256, 64, 1, 1},
    {"resnet50/3x3_128to128_28x28", 128, 128, 3, 1, 28},
    {"resnet50/3x3_256to256_14x14", 256, 256, 3, 1, 14},
    {"resnet50/3x3_512to512_7x7", 512, 512, 3, 1, 7},
    {"resnet50/3x3_s2_128to128_56x56", 128, 128, 3, 1, 56, 2},
    {"efficientnet_lite0/stem3x3_s2_3to32_224x224", 3, 32, 3, 1, 224, 2},
    {"ppocr/stem3x3_s2_3to16_448x448", 3, 16, 3, 1, 448, 2},
    {"efficientnet_lite0/block1_expand1x1_16to96_112x112", 16, 96, 1, 1, 112, 1},
    {"ppocr/det_head3x3_96to24_112x112", 96, 24, 3, 1, 112, 1},
    {"dw3x3_144_56x56", 144, 144, 3, 144},
    {"efficientnet_lite0/block0_dw3x3_32_112x112", 32, 32, 3, 32, 112, 1},
    {"efficientnet_lite0/block1_dw3x3_s2_96_112x112", 96, 96, 3, 96, 112, 2},
    {"efficientnet_lite0/block3_dw5x5_s2_144_56x56", 144, 144, 5, 144, 56, 2},
    {"efficientnet_lite0/block4_dw5x5_240_28x28", 240, 240, 5, 240, 28, 1},
    {"efficientnet_lite0/block5_dw3x3_s2_240_28x28", 240, 240, 3, 240, 28, 2},
    {"efficientnet_lite0/block9_dw5x5_672_14x14", 672, 672, 5, 672, 14, 1},
    {"efficientnet_lite0/block11_dw5x5_1152_7x7", 1152, 1152, 5, 1152, 7, 1},
    {"ppocr_cls/dw5x5_200_2x96", 200, 200, 5, 200, 96, 1, 2},
    {"ppocr_cls/dw3x3_88_3x96", 88, 88, 3, 88, 96, 1, 3},
};

int g_threads = 1;

double Ops(const ConvCase& c) { return 2.0 * c.out_h() * c.out() * c.m * (c.c / c.group) * c.k * c.k; }

void SetCounters(benchmark::State& state, const ConvCase& c) {
  state.counters["GOP/s"] = benchmark::Counter(Ops(c) * state.iterations() / 1e9, benchmark::Counter::kIsRate);
}

// Our INT8 convolution of one case, set up once; Call() runs it.
struct KvantS8Conv {
  explicit KvantS8Conv(const ConvCase& c) : pool(g_threads) {
    cpu::ConvS8Shape s;
  s.h = c.in_h();
  s.w = c.hw;
  s.sh = s.sw = c.stride;
  s.cin = c.c;
  s.cout = c.m;
  s.kh = s.kw = c.k;
  s.pad_t = s.pad_l = s.pad_b = s.pad_r = c.k / 2;
    s.depthwise = c.group > 1;
    auto w = bench::RandomInts<int8_t>(c.m * (c.c / c.group) * c.k * c.k, 2, -127, 127);
    conv = *cpu::ConvS8::Create(s, w.data(), ActiveCpuFeatures());
    x = bench::RandomInts<uint8_t>(c.in_h() * c.hw * c.c, 1, 0, 255);
    bias = bench::RandomInts<int32_t>(c.m, 3, -1000, 1000);
    scale.assign(c.m, 1e-3f);
    y.resize(c.out_h() * c.out() * c.m);
    out.kind = cpu::GemmS8Output::Kind::kU8;
    out.scale = scale.data();
    out.zero_point = 117;
    scratch.resize(conv->ScratchBytes(g_threads) + 64);
  }
  void Call() {
    conv->Run(x.data(), 128, bias.data(), out, y.data(), bench::Aligned64(scratch), &pool);
    benchmark::DoNotOptimize(y.data());
  }
  std::unique_ptr<cpu::ConvS8> conv;
  std::vector<uint8_t> x, y;
  std::vector<int32_t> bias;
  std::vector<float> scale;
  cpu::GemmS8Output out;
  ThreadPool pool;
  std::vector<char> scratch;
};

void BM_KvantS8(benchmark::State& state, ConvCase c) {
  KvantS8Conv conv(c);
  for (auto _ : state) conv.Call();
  SetCounters(state, c);
  state.SetLabel(conv.conv->kernel_name());
}

// A one-node ONNX model: Conv(x[1,c,56,56], w, b) with `group`.
std::string ConvModel(const ConvCase& c) {
  onnx::ModelProto model;
  model.set_ir_version(8);
  model.add_opset_import()->set_version(13);
  onnx::GraphProto* g = model.mutable_graph();
  auto add_value = [](google::protobuf::RepeatedPtrField<onnx::ValueInfoProto>* list, const std::string& name,
                      std::vector<int64_t> dims) {
    onnx::ValueInfoProto* v = list->Add();
    v->set_name(name);
    auto* t = v->mutable_type()->mutable_tensor_type();
    t->set_elem_type(onnx::TensorProto::FLOAT);
    for (int64_t d : dims) t->mutable_shape()->add_dim()->set_dim_value(d);
  };
  add_value(g->mutable_input(), "x", {1, c.c, c.in_h(), c.hw});
  add_value(g->mutable_output(), "y", {1, c.m, c.out_h(), c.out()});
  auto add_init = [&](const std::string& name, std::vector<int64_t> dims) {
    onnx::TensorProto* t = g->add_initializer();
    t->set_name(name);
    t->set_data_type(onnx::TensorProto::FLOAT);
    int64_t n = 1;
    for (int64_t d : dims) {
      t->add_dims(d);
      n *= d;
    }
    std::mt19937 rng(5);
    std::uniform_real_distribution<float> u(-0.1f, 0.1f);
    for (int64_t i = 0; i < n; ++i) t->add_float_data(u(rng));
  };
  add_init("w", {c.m, c.c / c.group, c.k, c.k});
  add_init("b", {c.m});
  onnx::NodeProto* n = g->add_node();
  n->set_op_type("Conv");
  n->add_input("x");
  n->add_input("w");
  n->add_input("b");
  n->add_output("y");
  auto* group = n->add_attribute();
  group->set_name("group");
  group->set_type(onnx::AttributeProto::INT);
  group->set_i(c.group);
  auto* pads = n->add_attribute();
  pads->set_name("pads");
  pads->set_type(onnx::AttributeProto::INTS);
  for (int i = 0; i < 4; ++i) pads->add_ints(c.k / 2);
  auto* strides = n->add_attribute();
  strides->set_name("strides");
  strides->set_type(onnx::AttributeProto::INTS);
  for (int i = 0; i < 2; ++i) strides->add_ints(c.stride);
  return model.SerializeAsString();
}

void BM_KvantF32(benchmark::State& state, ConvCase c) {
  SessionOptions opt;
  opt.num_threads = g_threads;
  auto s = Session::LoadFromBytes(ConvModel(c), opt);
  if (!s.ok()) {
    state.SkipWithError(std::string(s.status().message()).c_str());
    return;
  }
  TensorMap in{{"x", Tensor::Zeros(DataType::kFloat32, {1, c.c, c.in_h(), c.hw})}};
  std::fill_n(in["x"].data<float>(), c.c * c.in_h() * c.hw, 0.5f);
  for (auto _ : state) benchmark::DoNotOptimize(s->Run(in));
  SetCounters(state, c);
}

// The NHWC depthwise kernel kvant.ConvNhwc runs (called directly: a
// one-node session keeps a lone convolution in NCHW), rows over the pool.
void BM_KvantF32NhwcDepthwise(benchmark::State& state, ConvCase c) {
  if ((ActiveCpuFeatures() & kIsaAvx512) != kIsaAvx512) {
    state.SkipWithError("no AVX-512");
    return;
  }
  const cpu::DepthwiseNhwc d{{c.in_h(), c.hw, c.out_h(), c.out(), c.k, c.k, c.stride, c.stride, 1, 1, c.k / 2, c.k / 2},
                             c.c};
  std::mt19937 rng(7);
  std::uniform_real_distribution<float> u(-1.f, 1.f);
  std::vector<float> x(c.in_h() * c.hw * c.c), w(c.k * c.k * c.c), bias(c.c), y(c.out_h() * c.out() * c.c);
  for (float& v : x) v = u(rng);
  for (float& v : w) v = u(rng);
  for (float& v : bias) v = u(rng);
  cpu::ActivationF32 act;
  act.kind = cpu::ActivationF32::Kind::kClip;
  act.lo = 0.f;
  act.hi = 6.f;
  ThreadPool pool(g_threads);
  for (auto _ : state) {
    pool.ParallelFor(c.out_h(), [&](int64_t oh0, int64_t oh1) {
      cpu::avx512::DepthwiseNhwcRowsF32(d, x.data(), w.data(), bias.data(), act, oh0, oh1, y.data());
    });
    benchmark::DoNotOptimize(y.data());
  }
  SetCounters(state, c);
}

// oneDNN's convolution of one case (NHWC, weights reordered once), set up
// once; Call() runs it.
struct OneDnnConv {
  OneDnnConv(const ConvCase& c, bool int8) : eng(dnnl::engine::kind::cpu, 0), strm(eng) {
    using dnnl::memory;
    using dt = memory::data_type;
    const dt src_t = int8 ? dt::u8 : dt::f32, wei_t = int8 ? dt::s8 : dt::f32, dst_t = int8 ? dt::u8 : dt::f32;
    const memory::dims src_dims{1, c.c, c.in_h(), c.hw}, dst_dims{1, c.m, c.out_h(), c.out()}, bias_dims{c.m};
    const memory::dims wei_dims = c.group > 1 ? memory::dims{c.group, c.m / c.group, c.c / c.group, c.k, c.k}
                                              : memory::dims{c.m, c.c, c.k, c.k};
    memory::desc src(src_dims, src_t, memory::format_tag::nhwc), dst(dst_dims, dst_t, memory::format_tag::nhwc);
    memory::desc wei_any(wei_dims, wei_t, memory::format_tag::any);
    memory::desc wei_plain(wei_dims, wei_t, c.group > 1 ? memory::format_tag::goihw : memory::format_tag::oihw);
    memory::desc bias(bias_dims, int8 ? dt::s32 : dt::f32, memory::format_tag::x);
    dnnl::primitive_attr attr;
    if (int8) {
      attr.set_output_scales(2, std::vector<float>(c.m, 1e-3f));
      attr.set_zero_points(DNNL_ARG_SRC, 0, {128});
      attr.set_zero_points(DNNL_ARG_DST, 0, {117});
    }
    const memory::dims pad{c.k / 2, c.k / 2};
    dnnl::convolution_forward::primitive_desc pd(
        dnnl::convolution_forward::desc(dnnl::prop_kind::forward_inference, dnnl::algorithm::convolution_direct, src,
                                        wei_any, bias, dst, {c.stride, c.stride}, pad, pad),
        attr, eng);
    prim = dnnl::convolution_forward(pd);
    impl = pd.impl_info_str();
    const int64_t es = int8 ? 1 : 4;
    xs.assign(c.in_h() * c.hw * c.c * es, 1);
    ys.resize(c.out_h() * c.out() * c.m * es);
    ws.assign(c.m * (c.c / c.group) * c.k * c.k * es, 1);
    bs.assign(c.m * 4, 0);
    xm = memory(src, eng, xs.data());
    ym = memory(dst, eng, ys.data());
    bm = memory(bias, eng, bs.data());
    memory w_plain(wei_plain, eng, ws.data());
    wm = memory(pd.weights_desc(), eng);
    dnnl::reorder(w_plain, wm).execute(strm, w_plain, wm);
    strm.wait();
  }
  void Call() {
    prim.execute(strm, {{DNNL_ARG_SRC, xm}, {DNNL_ARG_WEIGHTS, wm}, {DNNL_ARG_BIAS, bm}, {DNNL_ARG_DST, ym}});
    strm.wait();
  }
  dnnl::engine eng;
  dnnl::stream strm;
  dnnl::convolution_forward prim;
  std::string impl;
  std::vector<char> xs, ys, ws, bs;
  dnnl::memory xm, ym, wm, bm;
};

void BM_OneDnn(benchmark::State& state, ConvCase c, bool int8) {
  OneDnnConv conv(c, int8);
  for (auto _ : state) conv.Call();
  SetCounters(state, c);
  state.SetLabel(conv.impl);
}

// --paired=N: for each case, our INT8 convolution and oneDNN's alternately,
// call by call, N times each; prints both medians and minima and their
// ratios (a shared machine's drift hits both alike).
void RunPaired(int calls, const std::string& filter) {
  bench::PrintPairedHeader("case (INT8, u8 out)");
  for (const auto& c : kCases) {
    if (!filter.empty() && std::string(c.name).find(filter) == std::string::npos) continue;
    KvantS8Conv ours(c);
    OneDnnConv theirs(c, true);
    const bench::PairedTimes t = bench::TimePaired([&] { ours.Call(); }, [&] { theirs.Call(); }, calls);
    bench::PrintPairedRow(c.name, t, ours.conv->kernel_name());
  }
  bench::PrintPairedFooter(calls, g_threads);
}

}  // namespace
}  // namespace kvant

int main(int argc, char** argv) {
  kvant::g_threads = kvant::bench::SetUpThreads(argc, argv);
  kvant::bench::PrintCapability(kvant::g_threads);
  std::string filter;
  if (const int paired = kvant::bench::PairedArgs(argc, argv, &filter); paired > 0) {
    kvant::RunPaired(paired, filter);
    return 0;
  }
  for (const auto& c : kvant::kCases) {
    benchmark::RegisterBenchmark((std::string("kvant/conv_s8/") + c.name).c_str(), kvant::BM_KvantS8, c)
        ->Unit(benchmark::kMicrosecond)->UseRealTime();
    benchmark::RegisterBenchmark((std::string("onednn/conv_u8s8/") + c.name).c_str(), kvant::BM_OneDnn, c, true)
        ->Unit(benchmark::kMicrosecond)->UseRealTime();
    benchmark::RegisterBenchmark((std::string("kvant/conv_f32/") + c.name).c_str(), kvant::BM_KvantF32, c)
        ->Unit(benchmark::kMicrosecond)->UseRealTime();
    benchmark::RegisterBenchmark((std::string("onednn/conv_f32/") + c.name).c_str(), kvant::BM_OneDnn, c, false)
        ->Unit(benchmark::kMicrosecond)->UseRealTime();
    if (c.group == c.c && c.c == c.m) {
      benchmark::RegisterBenchmark((std::string("kvant/dw_nhwc_f32/") + c.name).c_str(),
                                   kvant::BM_KvantF32NhwcDepthwise, c)
          ->Unit(benchmark::kMicrosecond)->UseRealTime();
    }
  }
  benchmark::Initialize(&argc, argv);
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
