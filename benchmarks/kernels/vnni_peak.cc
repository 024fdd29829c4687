// The machine's VPDPBUSD peak: 24 independent accumulator chains of
// back-to-back zmm VPDPBUSD (64 u8 x s8 multiply-adds each), written in
// assembly so that no compiler spill or reordering changes what is measured.
// Call only when cpu_caps reports AVX-512 VNNI.
#include <cstdint>

namespace kvant::bench {

// Runs `iterations` x 24 VPDPBUSD.
int32_t VnniPeakLoop(int64_t iterations, int32_t seed) {
  __asm__ volatile(
      "vpbroadcastd %1, %%zmm30\n"
      "vpbroadcastd %1, %%zmm31\n"
      "1:\n"
      "vpdpbusd %%zmm30, %%zmm31, %%zmm0\nvpdpbusd %%zmm30, %%zmm31, %%zmm1\nvpdpbusd %%zmm30, %%zmm31, %%zmm2\nvpdpbusd %%zmm30, %%zmm31, %%zmm3\nvpdpbusd %%zmm30, %%zmm31, %%zmm4\nvpdpbusd %%zmm30, %%zmm31, %%zmm5\nvpdpbusd %%zmm30, %%zmm31, %%zmm6\nvpdpbusd %%zmm30, %%zmm31, %%zmm7\nvpdpbusd %%zmm30, %%zmm31, %%zmm8\nvpdpbusd %%zmm30, %%zmm31, %%zmm9\nvpdpbusd %%zmm30, %%zmm31, %%zmm10\nvpdpbusd %%zmm30, %%zmm31, %%zmm11\nvpdpbusd %%zmm30, %%zmm31, %%zmm12\nvpdpbusd %%zmm30, %%zmm31, %%zmm13\nvpdpbusd %%zmm30, %%zmm31, %%zmm14\nvpdpbusd %%zmm30, %%zmm31, %%zmm15\nvpdpbusd %%zmm30, %%zmm31, %%zmm16\nvpdpbusd %%zmm30, %%zmm31, %%zmm17\nvpdpbusd %%zmm30, %%zmm31, %%zmm18\nvpdpbusd %%zmm30, %%zmm31, %%zmm19\nvpdpbusd %%zmm30, %%zmm31, %%zmm20\nvpdpbusd %%zmm30, %%zmm31, %%zmm21\nvpdpbusd %%zmm30, %%zmm31, %%zmm22\nvpdpbusd %%zmm30, %%zmm31, %%zmm23\n"
      "dec %0\n"
      "jnz 1b\n"
      : "+r"(iterations)
      : "r"(seed)
      : "xmm0", "xmm1", "xmm2", "xmm3", "xmm4", "xmm5", "xmm6", "xmm7", "xmm8", "xmm9", "xmm10", "xmm11", "xmm12", "xmm13", "xmm14", "xmm15", "xmm16", "xmm17", "xmm18", "xmm19", "xmm20", "xmm21", "xmm22", "xmm23", "xmm30", "xmm31", "cc");
  return seed;
}

}  // namespace kvant::bench
