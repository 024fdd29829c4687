// Shared pieces of the INT8 convolution tests against the integer
// definition (tests/ops/qconv_transpose_test.cc, qconv_1d_test.cc): the
// element types and zero points of a case, byte tensors, and the expected
// requantized outputs of integer sums.
#ifndef KVANT_TESTS_TESTING_QLINEAR_CASE_H_
#define KVANT_TESTS_TESTING_QLINEAR_CASE_H_

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <random>
#include <string>
#include <vector>

#include "kvant/kvant.h"
#include "ops/cpu/gemm_s8.h"
#include "tests/testing/onnx_builder.h"

namespace kvant::testing {

struct QTypes {
  DataType x, w, y;
  int zx, zy;
  std::vector<int> zw;  // one value, or per output channel
  bool per_channel_scale, bias;
};

// A byte of type t as the integer it holds.
inline int ByteValue(DataType t, uint8_t b) { return t == DataType::kInt8 ? static_cast<int8_t>(b) : b; }

// A u8 or s8 tensor holding the low bytes of `v`.
inline Tensor ByteTensor(DataType t, const std::vector<int64_t>& shape, const std::vector<int>& v) {
  Tensor out = Tensor::Zeros(t, shape);
  for (size_t i = 0; i < v.size(); ++i) static_cast<uint8_t*>(out.raw_data())[i] = static_cast<uint8_t>(v[i]);
  return out;
}

// Scales for integer sums `acc` ([n][cout][plane]) that spread the outputs
// over about +-150 steps, so both ends saturate (x 0.02, w per channel or
// per tensor from `rng`), and the bytes QLinear semantics give: the sum plus
// the channel's bias, times sx * sw / sy, rounded half to even, plus zy,
// saturated to the output type.
struct QExpected {
  float sx = 0.02f, sy = 0;
  std::vector<float> sw;
  std::vector<int> want;
};
inline QExpected Requantized(const std::vector<int64_t>& acc, const std::vector<int>& bias, int64_t cout,
                             int64_t plane, const QTypes& t, std::mt19937& rng) {
  QExpected e;
  int64_t peak = 1;
  for (int64_t a : acc) peak = std::max<int64_t>(peak, std::abs(a));
  e.sw.resize(t.per_channel_scale ? cout : 1);
  for (float& s : e.sw) s = 0.004f * (1 + rng() % 5);
  e.sy = static_cast<float>(peak) * e.sx * e.sw[0] / 150.f;
  const int lo = t.y == DataType::kInt8 ? -128 : 0, hi = t.y == DataType::kInt8 ? 127 : 255;
  e.want.resize(acc.size());
  for (size_t i = 0; i < acc.size(); ++i) {
    const int64_t co = static_cast<int64_t>(i) / plane % cout;
    const float scale = e.sx * e.sw[t.per_channel_scale ? co : 0] / e.sy;
    e.want[i] = std::clamp(cpu::RequantizeFloat(static_cast<int32_t>(acc[i] + bias[co]), scale) + t.zy, lo, hi);
  }
  return e;
}

// The initializers of a QLinearConv(-Transpose) node after x: xs, xz, w (of
// `w_shape`), ws, wz (one or per channel, as t.zw), ys, yz and, with
// t.bias, b; returns the node's input names.
inline std::vector<std::string> AddQLinearConvInputs(OnnxBuilder& m, const QTypes& t, const QExpected& e,
                                                     const std::vector<int64_t>& w_shape, const std::vector<int>& wv,
                                                     const std::vector<int>& zw, const std::vector<int>& bias) {
  const int64_t cout = static_cast<int64_t>(zw.size());
  m.Initializer("xs", Tensor::FromVector<float>(DataType::kFloat32, {}, {e.sx}));
  m.Initializer("xz", ByteTensor(t.x, {}, {t.zx}));
  m.Initializer("w", ByteTensor(t.w, w_shape, wv));
  m.Initializer("ws", Tensor::FromVector<float>(DataType::kFloat32, {static_cast<int64_t>(e.sw.size())}, e.sw));
  m.Initializer("wz", t.zw.size() == 1 ? ByteTensor(t.w, {}, {t.zw[0]}) : ByteTensor(t.w, {cout}, zw));
  m.Initializer("ys", Tensor::FromVector<float>(DataType::kFloat32, {}, {e.sy}));
  m.Initializer("yz", ByteTensor(t.y, {}, {t.zy}));
  std::vector<std::string> in = {"x", "xs", "xz", "w", "ws", "wz", "ys", "yz"};
  if (t.bias) {
    m.Initializer("b", Tensor::FromVector<int32_t>(DataType::kInt32, {cout}, std::vector<int32_t>(bias.begin(), bias.end())));
    in.push_back("b");
  }
  return in;
}

}  // namespace kvant::testing

#endif  // KVANT_TESTS_TESTING_QLINEAR_CASE_H_
