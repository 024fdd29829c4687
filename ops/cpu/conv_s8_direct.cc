// INT8 convolution without im2col (group 1, stride 1, no dilation): the
// driver of the direct tap kernels and their reference. See conv_s8.h for
// the padded flat image the kernels read.
//
// RunDirect:
//  1. col_offset[n] = bias[n] - zx * colsum(W)[n];
//  2. the zx-padded image: n * Hp * Wp pixels of cin_p bytes, then mr pixels
//     of slack (the last panel reads whole tiles), rows filled in parallel;
//  3. panels of mr flat positions, split across threads: per nr-wide weight
//     panel, one tile over all taps, then the epilogue for each run of
//     positions that are real outputs (one output row segment each).
#include <algorithm>
#include <cstring>
#include <vector>

#include "ops/cpu/conv_s8.h"

namespace kvant::cpu {
namespace {

int64_t RoundUp(int64_t v, int64_t m) { return (v + m - 1) / m * m; }

int64_t PaddedPixels(const ConvS8Shape& s, int64_t mr) {
  return s.n * (s.h + s.pad_t + s.pad_b) * (s.w + s.pad_l + s.pad_r) + mr;
}

}  // namespace

namespace ref {

void ConvTapsS8(int64_t taps, const int64_t* tap_offsets, int64_t cin_p, const uint8_t* a, int64_t a_rs,
                const int8_t* b, int32_t* tile) {
  constexpr int kMr = 4, kNr = 16;
  for (int r = 0; r < kMr; ++r) {
    for (int c = 0; c < kNr; ++c) {
      int32_t acc = 0;
      for (int64_t t = 0; t < taps; ++t) {
        for (int64_t i = 0; i < cin_p; ++i) {
          const int64_t k = t * cin_p + i;
          acc += int32_t{a[tap_offsets[t] + r * a_rs + i]} * int32_t{b[(k / 4) * kNr * 4 + c * 4 + k % 4]};
        }
      }
      tile[r * kNr + c] = acc;
    }
  }
}

}  // namespace ref

void ConvS8::PackDirect(const ConvTapsS8Info& k) {
  const ConvS8Shape& s = shape_;
  direct_uk_ = &k;
  const int64_t taps = s.kh * s.kw, cin_p = RoundUp(s.cin, k.k_align);
  if (cin_p == s.cin && k.nr == packed_.nr && RoundUp(taps * cin_p, k.k_align) == packed_.kp) {
    direct_packed_ = packed_;  // same layout: share it
    return;
  }
  // B(t * cin_p + ci, n) from the GEMM packing's B(t * cin + ci, n).
  std::vector<int8_t> b(taps * cin_p * s.cout, 0);
  const int64_t nr = packed_.nr;
  for (int64_t n = 0; n < s.cout; ++n) {
    const int8_t* panel = packed_.panel(n);
    for (int64_t t = 0; t < taps; ++t) {
      for (int64_t ci = 0; ci < s.cin; ++ci) {
        const int64_t kk = t * s.cin + ci;
        b[(t * cin_p + ci) * s.cout + n] = panel[(kk / 4) * nr * 4 + (n % nr) * 4 + kk % 4];
      }
    }
  }
  direct_packed_ = PackBS8(k.nr, k.k_align, taps * cin_p, s.cout, b.data(), s.cout, 1);
}

size_t ConvS8::DirectScratchBytes(const ConvS8Shape& s, int /*threads*/) const {
  const int64_t cin_p = RoundUp(s.cin, direct_uk_->k_align);
  return RoundUp(s.cout * 4, 64) + RoundUp(PaddedPixels(s, direct_uk_->mr) * cin_p, 64) + 64;
}

void ConvS8::RunDirect(const ConvS8Shape& s, const uint8_t* x, int32_t zx, const int32_t* bias,
                       const GemmS8Output& out, void* y, void* scratch, ParallelRunner* pool) const {
  const ConvTapsS8Info& k = *direct_uk_;
  const int64_t hp = s.h + s.pad_t + s.pad_b, wp = s.w + s.pad_l + s.pad_r, image = hp * wp;
  const int64_t oh = s.out_h(), ow = s.out_w(), cin_p = RoundUp(s.cin, k.k_align), mr = k.mr, nr = k.nr;
  const size_t esize = out.kind == GemmS8Output::Kind::kS32 || out.kind == GemmS8Output::Kind::kF32 ? 4 : 1;
  if (oh <= 0 || ow <= 0) return;

  // 1. Bias and zero-point terms.
  char* cursor = static_cast<char*>(scratch);
  int32_t* col_offset = reinterpret_cast<int32_t*>(cursor);
  cursor += RoundUp(s.cout * 4, 64);
  for (int64_t n = 0; n < s.cout; ++n) {
    // int64, then wrapped to int32 as the tile sums wrap.
    col_offset[n] = static_cast<int32_t>(int64_t{bias ? bias[n] : 0} - int64_t{zx} * direct_packed_.col_sums[n]);
  }

  // 2. The padded image (channels past cin: zx, multiplied by zero weights).
  uint8_t* padded = reinterpret_cast<uint8_t*>(cursor);
  pool->ParallelFor(s.n * hp, [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      uint8_t* dst = padded + r * wp * cin_p;
      const int64_t img = r / hp, iy = r % hp - s.pad_t;
      if (iy < 0 || iy >= s.h || cin_p != s.cin) std::memset(dst, zx, wp * cin_p);
      if (iy < 0 || iy >= s.h) continue;
      const uint8_t* src = x + (img * s.h + iy) * s.w * s.cin;
      if (cin_p == s.cin) {
        std::memset(dst, zx, s.pad_l * cin_p);
        std::memcpy(dst + s.pad_l * cin_p, src, s.w * s.cin);
        std::memset(dst + (s.pad_l + s.w) * cin_p, zx, s.pad_r * cin_p);
      } else {
        for (int64_t ix = 0; ix < s.w; ++ix) std::memcpy(dst + (s.pad_l + ix) * cin_p, src + ix * s.cin, s.cin);
      }
    }
  });
  std::memset(padded + s.n * image * cin_p, zx, mr * cin_p);

  // 3. Panels of flat positions q: image q / image, row and column of the
  // padded image; outputs where row < oh and column < ow.
  std::vector<int64_t> tap_offsets(s.kh * s.kw);
  for (int64_t ky = 0; ky < s.kh; ++ky) {
    for (int64_t kx = 0; kx < s.kw; ++kx) tap_offsets[ky * s.kw + kx] = (ky * wp + kx) * cin_p;
  }
  const int64_t positions = (s.n - 1) * image + (oh - 1) * wp + ow;
  pool->ParallelFor((positions + mr - 1) / mr, [&](int64_t p0, int64_t p1) {
    alignas(64) int32_t tile[64 * 64];
    struct Run {
      int64_t row, len, dst;  // tile row, rows, first output position
    };
    Run runs[64];
    if (k.begin) k.begin();
    for (int64_t p = p0; p < p1; ++p) {
      const int64_t q0 = p * mr;
      int runs_n = 0;
      for (int64_t r = 0; r < mr && q0 + r < positions;) {
        const int64_t q = q0 + r, img = q / image, oy = q % image / wp, ox = q % wp;
        if (oy >= oh) {
          r += image - q % image;
        } else if (ox >= ow) {
          r += wp - ox;
        } else {
          const int64_t len = std::min({ow - ox, mr - r, positions - q});
          runs[runs_n++] = {r, len, (img * oh + oy) * ow + ox};
          r += len;
        }
      }
      for (int64_t jr = 0; jr < s.cout; jr += nr) {
        k.tile(s.kh * s.kw, tap_offsets.data(), cin_p, padded + q0 * cin_p, cin_p, direct_packed_.panel(jr), tile);
        const GemmS8Output o = OutputForColumns(out, col_offset, nullptr, jr);
        const int64_t cols = std::min(nr, s.cout - jr);
        for (int i = 0; i < runs_n; ++i) {
          k.epilogue(tile + runs[i].row * nr, nr, runs[i].len, cols, o,
                     static_cast<char*>(y) + (runs[i].dst * s.cout + jr) * esize, s.cout);
        }
      }
    }
    if (k.end) k.end();
  });
}

}  // namespace kvant::cpu
