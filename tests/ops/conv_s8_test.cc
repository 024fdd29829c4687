// INT8 convolution (NHWC) against plain loops: group-1 convolutions through
// the INT8 GEMM (1x1 read in place, im2col with zero-point padding, strides,
// dilations, channel counts that leave K % 4 != 0); every direct tap kernel
// row the machine has (no im2col: channels padded to the K chunk, panels
// across rows and images, asymmetric padding, strides 1-3 by phases,
// dilations); every depthwise row kernel the machine has (channels around
// the 16-lane vector, 3x3 and 5x5, strides 1-3, dilation); input zero points
// 0/128/255, weight zero points, per-channel requantization to u8, s32
// outputs, 1 and 2 threads. Integer outputs must match exactly.
#include <random>
#include <vector>

#include "gtest/gtest.h"
#include "ops/cpu/conv_s8.h"
#include "runtime/cpu_caps.h"
#include "runtime/thread_pool.h"
#include "tests/testing/guarded_buffer.h"

namespace kvant::cpu {
namespace {

using testing::GuardedBuffer;
using Kind = GemmS8Output::Kind;

struct ConvCase {
  ConvS8Shape s;
  int32_t zx = 128;
  Kind kind = Kind::kU8;
  int threads = 1;
  bool weight_zero_points = false;  // per output channel, s8 (w - zw does not fit s8)
  int32_t lo = 0, hi = 255;         // u8: zero point 100; s8: zero point -20 (lo/hi given in s8 then)
  float scale_mult = 1;             // > 1: outputs saturate (1e9: beyond the int32 range before rounding)
};

// Runs the case with the depthwise row `dw` or the direct row `direct`
// (null: the best) and compares.
void Check(const ConvCase& c, const DepthwiseS8Info* dw, uint64_t seed, const ConvTapsS8Info* direct = nullptr) {
  const ConvS8Shape& s = c.s;
  std::mt19937_64 rng(seed);
  const int64_t taps = s.kh * s.kw, cin_g = s.depthwise ? 1 : s.cin;
  GuardedBuffer<uint8_t> x(s.n * s.h * s.w * s.cin);
  std::vector<int8_t> w(s.cout * cin_g * taps);
  std::vector<int32_t> bias(s.cout);
  std::vector<float> scale(s.cout);
  for (int64_t i = 0; i < s.n * s.h * s.w * s.cin; ++i) x[i] = static_cast<uint8_t>(rng());
  for (int8_t& v : w) v = static_cast<int8_t>(rng());
  for (int32_t& v : bias) v = static_cast<int32_t>(rng() % 20001) - 10000;
  for (float& v : scale) v = c.scale_mult * (0.5f + (rng() % 1000) / 1000.f) / (std::sqrt(float(cin_g * taps)) * 2000.f);
  std::vector<int32_t> zw(s.cout, 0);
  if (c.weight_zero_points) {
    for (int32_t& v : zw) v = static_cast<int8_t>(rng());
  }
  const int64_t oh = s.out_h(), ow = s.out_w();
  GemmS8Output out;
  out.kind = c.kind;
  out.scale = scale.data();
  const bool s8 = c.kind == Kind::kS8;
  out.zero_point = s8 ? -20 : 100;
  out.lo = c.lo;
  out.hi = c.hi;

  std::vector<int64_t> want(s.n * oh * ow * s.cout);
  for (int64_t img = 0; img < s.n; ++img) {
    for (int64_t y = 0; y < oh; ++y) {
      for (int64_t xo = 0; xo < ow; ++xo) {
        for (int64_t co = 0; co < s.cout; ++co) {
          int64_t acc = bias[co];
          for (int64_t ci = 0; ci < cin_g; ++ci) {
            for (int64_t ky = 0; ky < s.kh; ++ky) {
              for (int64_t kx = 0; kx < s.kw; ++kx) {
                const int64_t iy = y * s.sh - s.pad_t + ky * s.dh, ix = xo * s.sw - s.pad_l + kx * s.dw;
                if (iy < 0 || iy >= s.h || ix < 0 || ix >= s.w) continue;  // padding is zx: contributes 0
                const int64_t channel = s.depthwise ? co : ci;
                acc += (int64_t{x[((img * s.h + iy) * s.w + ix) * s.cin + channel]} - c.zx) *
                       (w[((co * cin_g + ci) * s.kh + ky) * s.kw + kx] - zw[co]);
              }
            }
          }
          const int32_t v = static_cast<int32_t>(acc);
          want[((img * oh + y) * ow + xo) * s.cout + co] =
              c.kind == Kind::kS32 ? v
                                   : std::clamp<int64_t>(int64_t{RequantizeFloat(v, scale[co])} + out.zero_point, c.lo, c.hi);
        }
      }
    }
  }

  auto conv = ConvS8::Create(s, w.data(), ActiveCpuFeatures());
  ASSERT_TRUE(conv.ok()) << conv.status();
  if (dw != nullptr) (*conv)->ForceDepthwise(*dw);
  if (direct != nullptr) {
    (*conv)->ForceDirect(*direct);
    if (s.sh == 1 && s.sw == 1 && s.dh == 1 && s.dw == 1) EXPECT_STREQ((*conv)->kernel_name(), direct->name);
  }
  const size_t esize = c.kind == Kind::kS32 ? 4 : 1;
  GuardedBuffer<char> y(want.size() * esize);
  for (size_t i = 0; i < want.size() * esize; ++i) y[i] = static_cast<char>(0xA5);
  ThreadPool pool(c.threads);
  std::vector<char> scratch((*conv)->ScratchBytes(c.threads) + 64);
  void* aligned = reinterpret_cast<void*>((reinterpret_cast<uintptr_t>(scratch.data()) + 63) & ~uintptr_t{63});
  (*conv)->Run(s, x.data(), c.zx, bias.data(), c.weight_zero_points ? zw.data() : nullptr, out, y.data(), aligned,
               &pool);
  int bad = 0;
  for (size_t i = 0; i < want.size() && bad < 5; ++i) {
    const int64_t got = c.kind == Kind::kS32 ? reinterpret_cast<const int32_t*>(y.data())[i]
                        : s8                  ? reinterpret_cast<const int8_t*>(y.data())[i]
                                              : reinterpret_cast<const uint8_t*>(y.data())[i];
    if (got != want[i]) {
      ++bad;
      ADD_FAILURE() << (*conv)->kernel_name() << " " << s.kh << "x" << s.kw << " s" << s.sh << " d" << s.dh
                    << " cin " << s.cin << " cout " << s.cout << " zx " << c.zx << " at " << i << ": got " << got
                    << ", want " << want[i];
    }
  }
}

ConvS8Shape Shape(int64_t n, int64_t h, int64_t w, int64_t cin, int64_t cout, int64_t k, int64_t stride, int64_t pad,
                  int64_t dil = 1, bool depthwise = false) {
  ConvS8Shape s;
  s.n = n;
  s.h = h;
  s.w = w;
  s.cin = cin;
  s.cout = cout;
  s.kh = s.kw = k;
  s.sh = s.sw = stride;
  s.dh = s.dw = dil;
  s.pad_t = s.pad_l = s.pad_b = s.pad_r = pad;
  s.depthwise = depthwise;
  return s;
}

TEST(ConvS8, GroupOneThroughGemm) {
  uint64_t seed = 1;
  for (int32_t zx : {0, 128, 255}) {
    Check({Shape(2, 7, 9, 16, 24, 1, 1, 0), zx}, nullptr, seed++);          // 1x1: input read in place
    Check({Shape(1, 9, 8, 13, 5, 1, 2, 0), zx}, nullptr, seed++);           // 1x1 stride 2, K % 4 != 0
    Check({Shape(1, 10, 11, 8, 33, 3, 1, 1), zx}, nullptr, seed++);         // 3x3 pad 1
    Check({Shape(2, 12, 9, 3, 17, 5, 2, 2), zx, Kind::kS32}, nullptr, seed++);  // 5x5 stride 2, cin 3
    Check({Shape(1, 13, 13, 6, 8, 3, 1, 2, 2), zx}, nullptr, seed++);       // dilation 2
    Check({Shape(1, 20, 20, 32, 40, 3, 1, 1), zx, Kind::kU8, 2}, nullptr, seed++);
    Check({Shape(1, 10, 11, 8, 33, 3, 1, 1), zx, Kind::kU8, 1, true}, nullptr, seed++);  // weight zero points
  }
}

TEST(ConvS8, DirectEveryTapKernel) {
  uint64_t seed = 50;
  for (const auto& k : ConvTapsS8Kernels()) {
    if ((k.needs & ActiveCpuFeatures()) != k.needs) continue;
    for (int32_t zx : {0, 128, 255}) {
      Check({Shape(2, 7, 9, 64, 40, 3, 1, 1), zx}, nullptr, seed++, &k);                // panels cross images
      Check({Shape(1, 5, 4, 48, 33, 3, 1, 1), zx}, nullptr, seed++, &k);                // cin padded, short rows
      Check({Shape(1, 12, 11, 64, 64, 5, 1, 2), zx, Kind::kS32}, nullptr, seed++, &k);  // 5x5
      Check({Shape(1, 6, 7, 13, 16, 1, 1, 1), zx}, nullptr, seed++, &k);                // 1x1 with padding
      Check({Shape(1, 9, 9, 64, 32, 3, 2, 1), zx}, nullptr, seed++, &k);                // stride 2: phases
      Check({Shape(2, 10, 13, 64, 24, 3, 2, 1), zx}, nullptr, seed++, &k);               // even height, odd width
      Check({Shape(1, 13, 12, 64, 33, 3, 1, 2, 2), zx}, nullptr, seed++, &k);            // dilation 2
      Check({Shape(1, 17, 16, 64, 16, 5, 3, 2, 2), zx, Kind::kS32}, nullptr, seed++, &k);  // stride 3, dilation 2
      ConvS8Shape odd = Shape(1, 8, 10, 72, 20, 3, 1, 0);
      odd.kw = 2;
      odd.pad_l = 1;
      odd.pad_b = 2;
      Check({odd, zx}, nullptr, seed++, &k);  // 3x2, padding on two sides only
      odd.sh = 2;
      odd.pad_r = 3;
      Check({odd, zx}, nullptr, seed++, &k);  // and stride 2 down, 1 across
      Check({Shape(2, 20, 19, 128, 70, 3, 1, 1), zx, Kind::kU8, 2}, nullptr, seed++, &k);
      // RGB stems: 3 channels as 4-byte pixels (every pixel, or every other
      // one of a stride-2 phase, 16 per step and a tail), 16 or fewer outputs.
      Check({Shape(2, 15, 19, 3, 16, 3, 2, 1), zx}, nullptr, seed++, &k);
      Check({Shape(1, 9, 40, 3, 32, 3, 1, 1), zx}, nullptr, seed++, &k);
      Check({Shape(1, 11, 37, 3, 7, 3, 2, 0), zx, Kind::kS32}, nullptr, seed++, &k);
      Check({Shape(1, 8, 70, 3, 5, 3, 2, 1), zx, Kind::kS8, 1, false, -128, 127}, nullptr, seed++, &k);
    }
  }
}

TEST(ConvS8, DepthwiseEveryRowKernel) {
  uint64_t seed = 100;
  for (const auto& k : DepthwiseS8Kernels()) {
    if ((k.needs & ActiveCpuFeatures()) != k.needs) continue;
    for (int32_t zx : {0, 128, 255}) {
      for (int64_t c : {1, 15, 16, 17, 144}) {
        Check({Shape(1, 9, 10, c, c, 3, 1, 1, 1, true), zx}, &k, seed++);
        Check({Shape(2, 11, 8, c, c, 5, 2, 2, 1, true), zx, Kind::kS32}, &k, seed++);
      }
      Check({Shape(1, 14, 14, 40, 40, 3, 2, 1, 1, true), zx, Kind::kU8, 2}, &k, seed++);
      Check({Shape(1, 12, 12, 24, 24, 3, 1, 2, 2, true), zx}, &k, seed++);  // dilation 2
      Check({Shape(1, 13, 12, 24, 24, 3, 2, 2, 2, true), zx}, &k, seed++);  // stride 2, dilation 2
      Check({Shape(1, 14, 13, 20, 20, 3, 3, 1, 1, true), zx}, &k, seed++);  // stride 3: every lane pixel
      Check({Shape(1, 6, 5, 16, 16, 2, 1, 0, 1, true), zx}, &k, seed++);    // even tap count
      // Short images: kernel rows over the top and bottom padding are left out.
      Check({Shape(3, 3, 40, 200, 200, 5, 1, 2, 1, true), zx}, &k, seed++);  // PP-OCR's 3-row 5x5
      Check({Shape(2, 2, 9, 24, 24, 5, 1, 2, 1, true), zx, Kind::kS32, 2}, &k, seed++);
      Check({Shape(1, 1, 12, 17, 17, 3, 1, 1, 1, true), zx}, &k, seed++);
      Check({Shape(1, 2, 7, 16, 16, 3, 1, 3, 1, true), zx, Kind::kS32}, &k, seed++);  // rows wholly in padding
      Check({Shape(1, 4, 9, 20, 20, 3, 2, 2, 2, true), zx}, &k, seed++);    // dilation 2, stride 2
      // Channel blocks of the VNNI row (64 channels, 16 per vector): every
      // width of the last block, s8 outputs, fused clamps (ReLU6-like).
      for (int64_t c : {32, 48, 63, 64, 65, 72, 96, 120, 240}) {
        Check({Shape(1, 7, 9, c, c, 3, 1, 1, 1, true), zx}, &k, seed++);
        Check({Shape(1, 8, 7, c, c, 5, 1, 2, 1, true), zx, Kind::kS8, 1, false, -128, 127}, &k, seed++);
        Check({Shape(1, 9, 9, c, c, 5, 2, 2, 1, true), zx, Kind::kU8, 1, false, 100, 180}, &k, seed++);
      }
      Check({Shape(1, 6, 6, 64, 64, 7, 1, 3, 1, true), zx, Kind::kS8, 1, false, -20, 60}, &k, seed++);  // 7x7
      for (float mult : {30.f, 1e9f}) {  // saturating outputs
        Check({Shape(1, 6, 7, 80, 80, 3, 1, 1, 1, true), zx, Kind::kU8, 1, false, 0, 255, mult}, &k, seed++);
        Check({Shape(1, 6, 7, 80, 80, 5, 1, 2, 1, true), zx, Kind::kS8, 1, false, -128, 127, mult}, &k, seed++);
      }
      Check({Shape(1, 5, 12, 40, 40, 1, 1, 0, 1, true), zx}, &k, seed++);                               // 1x1
      // Weight zero points (u8 weights from ONNX Runtime's quantizer).
      Check({Shape(1, 9, 10, 17, 17, 3, 1, 1, 1, true), zx, Kind::kU8, 1, true}, &k, seed++);
      Check({Shape(2, 11, 8, 40, 40, 5, 2, 2, 1, true), zx, Kind::kS32, 2, true}, &k, seed++);
    }
  }
}

}  // namespace
}  // namespace kvant::cpu
