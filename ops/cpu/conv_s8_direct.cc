// INT8 convolution without im2col (group 1, any stride and dilation): the
// driver of the direct tap kernels and their reference. See conv_s8.h for
// the padded flat image the kernels read.
//
// Stride s becomes stride 1 by splitting the padded image into its sh x sw
// phases (rows and columns by their remainder mod the stride), each an
// image of Hq = ceil(Hp / sh) by Wq = ceil(Wp / sw) pixels: output (oh, ow)
// reads, for tap (ky, kx) with dy = ky * dh and dx = kx * dw, pixel
// (oh + dy / sh, ow + dx / sw) of phase (dy % sh, dx % sw). In each phase,
// flattened over batch, rows and columns, that is position q = oh * Wq + ow
// plus a fixed offset per tap, as for stride 1 (one phase, Hq x Wq = Hp x Wp).
//
// RunDirect:
//  1. col_offset[n] = bias[n] - zx * colsum(W)[n];
//  2. the zx-padded phases: sh * sw blocks of n * Hq * Wq pixels of cin_p
//     bytes, then mr pixels of slack (the last panel reads whole tiles),
//     phase rows filled in parallel;
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

struct Phases {
  int64_t hp, wp;  // the padded image
  int64_t hq, wq;  // one phase of it
  int64_t block;   // pixels of one phase: n * hq * wq
};

Phases PhasesFor(const ConvS8Shape& s) {
  Phases p;
  p.hp = s.h + s.pad_t + s.pad_b;
  p.wp = s.w + s.pad_l + s.pad_r;
  p.hq = (p.hp + s.sh - 1) / s.sh;
  p.wq = (p.wp + s.sw - 1) / s.sw;
  p.block = s.n * p.hq * p.wq;
  return p;
}

}  // namespace

namespace ref {

void ExpandPixels3To4(const uint8_t* src, int64_t count, int64_t step, uint8_t pad, uint8_t* dst) {
  for (int64_t q = 0; q < count; ++q) {
    for (int c = 0; c < 3; ++c) dst[4 * q + c] = src[q * step * 3 + c];
    dst[4 * q + 3] = pad;
  }
}

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
  const Phases ph = PhasesFor(s);
  return RoundUp(s.cout * 4, 64) + RoundUp((s.sh * s.sw * ph.block + direct_uk_->mr) * cin_p, 64) + 64;
}

void ConvS8::RunDirect(const ConvS8Shape& s, const uint8_t* x, int32_t zx, const int32_t* bias,
                       const GemmS8Output& out, void* y, void* scratch, ParallelRunner* pool) const {
  const ConvTapsS8Info& k = *direct_uk_;
  const Phases ph = PhasesFor(s);
  const int64_t image = ph.hq * ph.wq, wq = ph.wq;
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

  // 2. The padded phases (channels past cin, and pixels past the padded
  // image: zx, multiplied by zero weights or read only by dropped outputs).
  uint8_t* padded = reinterpret_cast<uint8_t*>(cursor);
  pool->ParallelFor(s.sh * s.n * ph.hq, [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      const int64_t ry = r / (s.n * ph.hq), img = r / ph.hq % s.n, qy = r % ph.hq;
      const int64_t iy = qy * s.sh + ry - s.pad_t;
      const uint8_t* src = x + (img * s.h + iy) * s.w * s.cin;
      const bool inside = iy >= 0 && iy < s.h;
      for (int64_t rx = 0; rx < s.sw; ++rx) {
        uint8_t* dst = padded + ((ry * s.sw + rx) * ph.block + (img * ph.hq + qy) * wq) * cin_p;
        if (inside && s.sw == 1 && cin_p == s.cin) {  // one padded row: the input row between two pads
          std::memset(dst, zx, s.pad_l * cin_p);
          std::memcpy(dst + s.pad_l * cin_p, src, s.w * s.cin);
          std::memset(dst + (s.pad_l + s.w) * cin_p, zx, (wq - s.pad_l - s.w) * cin_p);
          continue;
        }
        std::memset(dst, zx, wq * cin_p);
        if (!inside) continue;
        // Phase column qx holds input column qx * sw + rx - pad_l.
        const int64_t qx0 = std::max<int64_t>(0, (s.pad_l - rx + s.sw - 1) / s.sw);
        const int64_t ix0 = qx0 * s.sw + rx - s.pad_l;
        if (s.cin == 3 && cin_p == 4 && s.sw <= 2) {  // an RGB stem: 3 bytes and the zero point per pixel
          if (qx0 < wq && ix0 < s.w) {
            const int64_t count = std::min(wq - qx0, (s.w - ix0 + s.sw - 1) / s.sw);
            expand_rgb_(src + ix0 * 3, count, s.sw, static_cast<uint8_t>(zx), dst + qx0 * 4);
          }
          continue;
        }
        for (int64_t qx = qx0, ix = ix0; qx < wq && ix < s.w; ++qx, ix += s.sw) {
          std::memcpy(dst + qx * cin_p, src + ix * s.cin, s.cin);
        }
      }
    }
  });
  std::memset(padded + s.sh * s.sw * ph.block * cin_p, zx, mr * cin_p);

  // 3. Panels of flat positions q of a phase: image q / image, row and
  // column q % image / wq, q % wq; outputs where row < oh and column < ow.
  std::vector<int64_t> tap_offsets(s.kh * s.kw);
  for (int64_t ky = 0; ky < s.kh; ++ky) {
    for (int64_t kx = 0; kx < s.kw; ++kx) {
      const int64_t dy = ky * s.dh, dx = kx * s.dw, phase = (dy % s.sh) * s.sw + dx % s.sw;
      tap_offsets[ky * s.kw + kx] = (phase * ph.block + (dy / s.sh) * wq + dx / s.sw) * cin_p;
    }
  }
  const int64_t positions = (s.n - 1) * image + (oh - 1) * wq + ow;
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
        const int64_t q = q0 + r, img = q / image, oy = q % image / wq, ox = q % wq;
        if (oy >= oh) {
          r += image - q % image;
        } else if (ox >= ow) {
          r += wq - ox;
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
