// model1 CUDA: the last step of a split-KV decode CTA, shared by the portable and the sm_90a
// kernels: one finished head row -> `out` and `lse` (the request's only split: the sink
// applied) or the split's partial row and base-2 lse (combined later by combine_kernel).
#pragma once

#include <cstdint>

#include "cuda/common/decode_params.h"
#include "cuda/common/numerics.cuh"
#include "cuda/ptx/mma.cuh"

namespace model1::cuda {

/// How a finished head row is written: O times `factor`, or zeros when `empty` (no valid key
/// was seen); `lse` is the row's lse (natural log, the request's only split) or its partial lse
/// (base 2, combined later by combine_kernel).
struct DecodeRowScale {
  float factor;
  float lse;
  bool empty;
};

/// The scale of head `h`'s finished row. `direct`: the request's only split (the sink applied
/// to the factor); `m`: the row's running maximum (base 2); `l_total`: its total sum of
/// exp2(logit - m).
/// NOTE: l_total is exactly 0 only when no valid key was seen (the running max key adds
/// exp2(0) = 1); a NaN logit of a valid key makes it NaN and propagates, as in the CPU backend.
/// `sink()`: attn_sink[h], called only when `direct` and `has_sink` (the sm_90a kernel passes
/// a copy it loaded ahead of the epilogue). NOTE: reading the sink inside the direct branch
/// only matters: reading it up front made the portable V3.2 kernel spill.
template <class Sink>
__device__ __forceinline__ DecodeRowScale decode_row_scale_with(bool direct, float m, float l_total, bool has_sink,
                                                                Sink&& sink) {
  DecodeRowScale rs;
  rs.empty = l_total == 0.0f;
  const float lse2 = m + log2f(l_total);
  if (direct) {
    rs.lse = lse2 * kLn2;
    rs.factor = softmax_out_factor(l_total, rs.lse, has_sink, has_sink ? sink() : 0.0f);
  } else {
    rs.lse = lse2;
    rs.factor = 1.0f / l_total;
  }
  return rs;
}

__device__ __forceinline__ DecodeRowScale decode_row_scale(const DecodeParams& p, int h, bool direct, float m,
                                                           float l_total) {
  return decode_row_scale_with(direct, m, l_total, p.attn_sink != nullptr, [&] { return p.attn_sink[h]; });
}

/// The row's lse (`direct`) or the split's partial lse, by one thread per row.
__device__ __forceinline__ void store_decode_lse(const DecodeParams& p, int64_t row, int split, bool direct,
                                                 const DecodeRowScale& rs) {
  if (direct) {
    p.lse[row] = rs.empty ? INFINITY : rs.lse;
  } else {
    p.partial_lse[row * p.max_splits + split] = rs.empty ? -INFINITY : rs.lse;
  }
}

/// Writes this thread's kPairs column pairs of head `h` of (request i, token j, split): to
/// `out` (the request's only split, `direct`) or to the split's partial row.
/// `col(t)`: the first column of pair t; `pair(t)`: the pair's unnormalized O values (float2);
/// `writes_lse`: this thread writes the row's lse (one thread per row); `m`, `l_total` as in
/// decode_row_scale.
template <int kPairs, class Col, class Pair>
__device__ __forceinline__ void write_decode_row(const DecodeParams& p, int i, int j, int h, int split,
                                                 bool direct, float m, float l_total, bool writes_lse,
                                                 Col&& col, Pair&& pair) {
  constexpr int kDV = 512;
  const int64_t row = (static_cast<int64_t>(i) * p.s_q + j) * p.h_q + h;  // [b, s_q, h_q]
  const DecodeRowScale rs = decode_row_scale(p, h, direct, m, l_total);
  if (direct) {
    uint16_t* out_row = p.out + row * kDV;  // [512]
#pragma unroll
    for (int t = 0; t < kPairs; ++t) {
      const int d = col(t);
      const float2 o = pair(t);
      const uint32_t v = rs.empty ? 0u : pack_bf16x2(o.x * rs.factor, o.y * rs.factor);
      if (p.out_aligned8) {
        *reinterpret_cast<uint32_t*>(out_row + d) = v;
      } else {
        out_row[d] = static_cast<uint16_t>(v & 0xffffu);
        out_row[d + 1] = static_cast<uint16_t>(v >> 16);
      }
    }
  } else {
    float* po = p.partial_o + (row * p.max_splits + split) * kDV;  // [512]
#pragma unroll
    for (int t = 0; t < kPairs; ++t) {
      const int d = col(t);
      const float2 o = pair(t);
      *reinterpret_cast<float2*>(po + d) =
          rs.empty ? make_float2(0.0f, 0.0f) : make_float2(o.x * rs.factor, o.y * rs.factor);
    }
  }
  if (writes_lse) store_decode_lse(p, row, split, direct, rs);
}

/// One row of bf16 output from mma / wgmma accumulator fragments: lane q of each quad holds
/// `pair(nb)`, the bf16x2 of columns 8 nb + 2 q, + 1, for kBlocks 8-column blocks. The quad's
/// lanes exchange pairs in two xor shuffles (a 4 x 4 transpose per 4 blocks), so lane q stores
/// block 4 gq + q whole: one 16-byte streaming store per 8 columns (the caller reads the output
/// once). `dst`: the row's first column, 16-byte aligned. Every lane of the warp takes part (the
/// shuffles); `store` false (a padded row of the quad) skips the quad's stores. (sm_90a prefill:
/// 8-byte stores after one exchange were 1% slower, the fragments' 4-byte stores 11% slower;
/// PERF.md.)
template <int kBlocks, class Pair>
__device__ __forceinline__ void store_row_bf16_quads(uint16_t* dst, Pair&& pair, bool store = true) {
  static_assert(kBlocks % 4 == 0, "whole groups of 4 blocks");
  const int q = threadIdx.x % 4, lo = q & 1, hi = q >> 1;
#pragma unroll
  for (int gq = 0; gq < kBlocks / 4; ++gq) {
    uint32_t a[4];
#pragma unroll
    for (int k = 0; k < 4; ++k) a[k] = pair(4 * gq + k);
    // xor 2: keep the two blocks of this lane's half (bit 1 of the block = hi), get the
    // partner's words of them; xor 1: the same for bit 0.
    const uint32_t keep0 = hi ? a[2] : a[0], keep1 = hi ? a[3] : a[1];
    const uint32_t th0 = __shfl_xor_sync(0xffffffffu, hi ? a[0] : a[2], 2);
    const uint32_t th1 = __shfl_xor_sync(0xffffffffu, hi ? a[1] : a[3], 2);
    const uint32_t mine = lo ? keep1 : keep0, theirs = lo ? th1 : th0;
    const uint32_t rm = __shfl_xor_sync(0xffffffffu, lo ? keep0 : keep1, 1);
    const uint32_t rt = __shfl_xor_sync(0xffffffffu, lo ? th0 : th1, 1);
    // words of lanes 2 hi, 2 hi + 1 (a) and of the other pair (b), in lane order
    const uint32_t a0 = lo ? rm : mine, a1 = lo ? mine : rm;
    const uint32_t b0 = lo ? rt : theirs, b1 = lo ? theirs : rt;
    const uint4 v = hi ? make_uint4(b0, b1, a0, a1) : make_uint4(a0, a1, b0, b1);
    if (store) ptx::st_global_cs_16(dst + (4 * gq + q) * 8, v);
  }
}

}  // namespace model1::cuda
