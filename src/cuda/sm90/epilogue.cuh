// model1 CUDA Hopper (sm_90a): the prefill consumers' bf16 output stores through shared
// memory. The wgmma accumulator fragments hold 2 adjacent columns of 2 rows per thread; stored
// straight to global memory as bf16 pairs they fill half sectors. Staged in a free key tile
// (128-byte swizzle: the fragment stores hit distinct banks) they go out as 16-byte pieces,
// each warp writing contiguous 512-byte runs. (The decode kernel keeps direct stores: staging
// measured no faster there, and its f32 partial rows already fill whole sectors; PERF.md.)
#pragma once

#include <cstdint>

#include "cuda/ptx/wgmma.cuh"
#include "cuda/sm90/decode_kernel.cuh"

namespace model1::cuda::sm90 {

/// Writes the CTA's 64 x 512 bf16 output rows, row r to dst + r * row_stride (elements, 16-byte
/// aligned rows), from both consumer warpgroups' fragments; every consumer thread calls it.
/// `stage`: 64 KiB of shared memory no one else touches now. pair(r, nb): this thread's two
/// values of row r0 + 8 r, columns 256 kWg + 8 nb + 2 (lane % 4) and the next, as packed bf16x2.
template <class T, int kWg, class PairFn>
__device__ __forceinline__ void store_rows_staged(uint8_t* stage, uint16_t* dst, int64_t row_stride, PairFn&& pair) {
  constexpr int kRowBytes = T::kDV * 2;
  constexpr int kBlock = 64 * 128;                                      // 64 rows x 128 bytes
  const int lane = threadIdx.x % 32;
  const int r0 = (threadIdx.x % 128) / 32 * 16 + lane / 4;
#pragma unroll
  for (int r = 0; r < 2; ++r) {
    const int row = r0 + 8 * r;
#pragma unroll
    for (int nb = 0; nb < T::kDimsPerConsumer / 8; ++nb) {
      const int byte = (kWg * T::kDimsPerConsumer + nb * 8 + 2 * (lane % 4)) * 2;
      *reinterpret_cast<uint32_t*>(stage + (byte / 128) * kBlock + swizzle_offset(row, (byte % 128) / 16) +
                                   byte % 16) = pair(r, nb);
    }
  }
  ptx::named_barrier_sync(T::kBarrierP, T::kConsumerThreads);
  constexpr int kPieces = kRowBytes / 16;  // per row
  static_assert(T::kRows * kPieces % T::kConsumerThreads == 0, "whole pieces per consumer thread");
#pragma unroll
  for (int k = 0; k < T::kRows * kPieces / T::kConsumerThreads; ++k) {
    const int idx = static_cast<int>(threadIdx.x) + k * T::kConsumerThreads;
    const int row = idx / kPieces, pc = idx % kPieces;
    const uint4 v = *reinterpret_cast<const uint4*>(stage + (pc / 8) * kBlock + swizzle_offset(row, pc % 8));
    *reinterpret_cast<uint4*>(reinterpret_cast<uint8_t*>(dst + row * row_stride) + pc * 16) = v;
  }
}

}  // namespace model1::cuda::sm90
