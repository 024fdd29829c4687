// Bias correction from the weights' quantization error and the mean inputs
// (see the header).
#include "quantize/bias_correction.h"

#include <algorithm>

#include "quantize/qdq.h"
#include "quantize/scheme.h"

namespace kvant::quantize {
namespace {

// Adds, per input channel c and tap (ky, kx) of a 2-D convolution, the sum
// over batch and output positions of the input value that tap reads (zero
// in the padding) to sums[c * kh * kw + ky * kw + kx]; returns the number of
// output positions summed. Padding at the borders is why a channel's plain
// mean would not do on small feature maps.
int64_t AddTapMeans(const onnx::NodeProto& conv, const Tensor& x, int64_t kh, int64_t kw, std::vector<double>& sums) {
  const int64_t n = x.shape()[0], c = x.shape()[1], h = x.shape()[2], w = x.shape()[3];
  std::vector<int64_t> strides = AttrInts(conv, "strides"), dil = AttrInts(conv, "dilations"), pads = AttrInts(conv, "pads");
  if (strides.size() != 2) strides = {1, 1};
  if (dil.size() != 2) dil = {1, 1};
  if (pads.size() != 4) pads = {0, 0, 0, 0};
  const std::string auto_pad = AttrString(conv, "auto_pad", "NOTSET");
  const int64_t in[2] = {h, w}, k[2] = {kh, kw};
  int64_t out[2];
  for (int d = 0; d < 2; ++d) {
    const int64_t span = (k[d] - 1) * dil[d] + 1;
    if (auto_pad == "SAME_UPPER" || auto_pad == "SAME_LOWER") {
      out[d] = (in[d] + strides[d] - 1) / strides[d];
      const int64_t total = std::max<int64_t>(0, (out[d] - 1) * strides[d] + span - in[d]);
      pads[d] = auto_pad == "SAME_UPPER" ? total / 2 : total - total / 2;
    } else {
      if (auto_pad == "VALID") pads[d] = pads[d + 2] = 0;
      out[d] = (in[d] + pads[d] + pads[d + 2] - span) / strides[d] + 1;
    }
  }
  if (sums.empty()) sums.assign(c * kh * kw, 0.0);
  const float* px = x.data<float>();
  for (int64_t b = 0; b < n; ++b)
    for (int64_t ch = 0; ch < c; ++ch)
      for (int64_t ky = 0; ky < kh; ++ky)
        for (int64_t kx = 0; kx < kw; ++kx) {
          double sum = 0;
          for (int64_t oy = 0; oy < out[0]; ++oy) {
            const int64_t iy = oy * strides[0] - pads[0] + ky * dil[0];
            if (iy < 0 || iy >= h) continue;
            const float* row = px + ((b * c + ch) * h + iy) * w;
            for (int64_t ox = 0; ox < out[1]; ++ox) {
              const int64_t ix = ox * strides[1] - pads[1] + kx * dil[1];
              if (ix >= 0 && ix < w) sum += row[ix];
            }
          }
          sums[(ch * kh + ky) * kw + kx] += sum;
        }
  return n * out[0] * out[1];
}

}  // namespace

absl::StatusOr<int> CorrectBiases(OnnxModel& prepared, const QuantizeOptions& options, const Calibration&,
                                  const std::vector<CalibrationBatch>& data) {
  const QdqPlan plan = PlanQdq(prepared, options.exclude);
  struct Layer {
    int node;
    bool conv;
    std::vector<double> mean;  // per input channel (and, for 2-D Conv, per tap), summed
    int64_t count = 0;
    bool per_tap = false;
  };
  std::vector<Layer> layers;
  std::vector<std::string> inputs;
  for (int i : plan.compute_nodes) {
    const onnx::NodeProto& n = prepared.graph().node(i);
    if (n.op_type() != "Conv" && n.op_type() != "Gemm") continue;
    layers.push_back({i, n.op_type() == "Conv", {}, 0});
    inputs.push_back(n.input(0));
  }
  if (layers.empty()) return 0;
  // 1. Mean of each input channel.
  auto session = SessionWithOutputs(prepared, inputs, options.num_threads);
  if (!session.ok()) return session.status();
  for (const auto& batch : data) {
    auto out = session->Run(batch.inputs);
    if (!out.ok()) return out.status();
    for (size_t l = 0; l < layers.size(); ++l) {
      const Tensor* found = ValueOf(*out, batch, inputs[l]);
      if (found == nullptr) continue;
      const Tensor& x = *found;
      if (x.dtype() != DataType::kFloat32 || x.rank() < 2) continue;
      if (layers[l].conv && x.rank() == 4) {
        const onnx::NodeProto& n = prepared.graph().node(layers[l].node);
        const onnx::TensorProto* w = prepared.FindInitializer(n.input(1));
        if (w != nullptr && w->dims_size() == 4) {
          layers[l].per_tap = true;
          layers[l].count += AddTapMeans(n, x, w->dims(2), w->dims(3), layers[l].mean);
          continue;
        }
      }
      const int64_t channels = layers[l].conv ? x.shape()[1] : x.shape().back();
      const int64_t inner = layers[l].conv ? x.num_elements() / (x.shape()[0] * channels) : 1;
      if (layers[l].mean.empty()) layers[l].mean.assign(channels, 0.0);
      for (int64_t i = 0; i < x.num_elements(); ++i) layers[l].mean[(i / inner) % channels] += x.data<float>()[i];
      layers[l].count += x.num_elements() / channels;
    }
  }
  int changed = 0;
  for (Layer& l : layers) {
    if (l.count == 0) continue;
    onnx::NodeProto& n = *prepared.graph().mutable_node(l.node);
    auto w = prepared.InitializerTensor(n.input(1));
    if (!w.ok() || w->dtype() != DataType::kFloat32) continue;
    // 2. (W - W_q) E[x] per output channel.
    const bool trans_b = !l.conv && AttrInt(n, "transB", 0) != 0;
    const int64_t axis = l.conv || trans_b ? 0 : 1;
    const QuantizedWeights q = QuantizeWeights(w->data<float>(), w->shape(), axis, options.scheme.weights_per_channel);
    const int64_t outs = w->shape()[axis];
    std::vector<double> shift(outs, 0.0);
    const int64_t group = l.conv ? AttrInt(n, "group", 1) : 1;
    const int64_t in_per_group = l.conv ? w->shape()[1] : 0, taps = l.conv ? w->num_elements() / (outs * in_per_group) : 1;
    for (int64_t i = 0; i < w->num_elements(); ++i) {
      int64_t o, c;
      if (l.conv) {  // [O, I/g, taps]
        o = i / (in_per_group * taps);
        c = (o / (outs / group)) * in_per_group + (i / taps) % in_per_group;
        if (l.per_tap) c = c * taps + i % taps;  // the mean of this channel at this tap
      } else if (trans_b) {  // [N, K]
        o = i / w->shape()[1];
        c = i % w->shape()[1];
      } else {  // [K, N]
        o = i % w->shape()[1];
        c = i / w->shape()[1];
      }
      if (c >= static_cast<int64_t>(l.mean.size())) continue;
      const float scale = q.scales[q.scales.size() == 1 ? 0 : o];
      const double err = double{w->data<float>()[i]} - static_cast<double>(q.values[i]) * scale;
      shift[o] += err * l.mean[c] / static_cast<double>(l.count);
    }
    // 3. Into the bias.
    Tensor bias = Tensor::Zeros(DataType::kFloat32, {outs});
    const bool has_bias = n.input_size() > 2 && !n.input(2).empty();
    if (has_bias) {
      auto b = prepared.InitializerTensor(n.input(2));
      if (!b.ok() || b->dtype() != DataType::kFloat32 || b->num_elements() != outs) continue;
      bias = b->Clone();
    }
    for (int64_t o = 0; o < outs; ++o) bias.data<float>()[o] += static_cast<float>(shift[o]);
    const std::string name = has_bias && prepared.Consumers(n.input(2)).size() == 1
                                 ? n.input(2)
                                 : prepared.FreshName(n.name() + "_corrected_bias");
    prepared.SetInitializer(name, bias);
    if (n.input_size() > 2) {
      n.set_input(2, name);
    } else {
      n.add_input(name);
    }
    ++changed;
  }
  prepared.Reindex();
  return changed;
}

}  // namespace kvant::quantize
