// model1 CUDA: the last step of a split-KV decode CTA, shared by the portable and the sm_90a
// kernels: one finished head row -> `out` and `lse` (the request's only split: the sink
// applied) or the split's partial row and base-2 lse (combined later by combine_kernel).
#pragma once

#include <cstdint>

#include "cuda/common/decode_params.h"
#include "cuda/common/numerics.cuh"

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

}  // namespace model1::cuda
