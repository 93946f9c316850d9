// model1 CUDA portable (sm_80+) sparse prefill kernel: mma.sync m16n8k16 bf16 with float32
// accumulation, online softmax in base 2 (MODEL1.md section 4).
//
// One CTA = (query token i, group of kRows heads). The token's candidate keys are walked in
// chunks of 64: the rows named by the chunk's indices are gathered by cp.async (16-byte
// copies) into a key tile while the previous chunk computes (two tiles), invalid candidates
// become zero rows (never dereferenced, never multiplied: their logits are selected to -inf),
// and each chunk feeds S = Q K^T and O += P V, where V is the first 512 dims of the same tile.
// Everything a CTA computes depends on its own token only, in a fixed order: deterministic
// and batch invariant.
#pragma once

#include <cuda_bf16.h>

#include <cstdint>

#include "cuda/common/numerics.cuh"
#include "cuda/portable/prefill_params.h"
#include "cuda/portable/prefill_traits.cuh"
#include "cuda/ptx/mma.cuh"

namespace model1::cuda::portable {

/// Candidate `pos` of a token: its index, or -1 (invalid) past the clamped top-k length.
__device__ __forceinline__ int32_t load_slot(const int32_t* idx_row, int len, int pos) {
  return pos < len ? __ldg(idx_row + pos) : -1;
}

/// topk_length[i] clamped to [0, topk] (absent: topk).
__device__ __forceinline__ int clamp_topk_length(const int32_t* lengths, int i, int topk) {
  if (lengths == nullptr) return topk;
  const int v = __ldg(lengths + i);
  return v < 0 ? 0 : (v > topk ? topk : v);
}

/// Shared-memory views of one CTA.
template <class T>
struct PrefillCta {
  uint16_t* sQ;      // [kRows, kDQk] bf16, swizzled
  uint16_t* sK;      // [kStages, kBlockN, kDQk] bf16, swizzled (gathered keys = values)
  uint16_t* sP;      // [kRows, kBlockN] bf16, swizzled (softmax numerators of the chunk)
  float* sRedMax;    // [kWarps, 16] chunk row maxima of each S warp
  float* sRedSum;    // [kWarps, 16] final row sums of each S warp
  float* sAlpha;     // [kRows] rescale factor of the running output, per row
  float* sRowMax;    // [kRows] final running max (base 2), per row
  uint8_t* sValid;   // [kStages, kBlockN] validity of the keys of each key tile

  __device__ explicit PrefillCta(uint8_t* smem)
      : sQ(reinterpret_cast<uint16_t*>(smem + T::kQOffset)),
        sK(reinterpret_cast<uint16_t*>(smem + T::kKOffset)),
        sP(reinterpret_cast<uint16_t*>(smem + T::kPOffset)),
        sRedMax(reinterpret_cast<float*>(smem + T::kRedMaxOffset)),
        sRedSum(reinterpret_cast<float*>(smem + T::kRedSumOffset)),
        sAlpha(reinterpret_cast<float*>(smem + T::kAlphaOffset)),
        sRowMax(reinterpret_cast<float*>(smem + T::kRowMaxOffset)),
        sValid(smem + T::kValidOffset) {}

  /// Issues the copy of the Q rows of head group `g` of token `i` into sQ (cp.async where
  /// q is 16-byte aligned; rows past h_q are zero). NOTE: asynchronous copies, completed
  /// with the first chunk's group: a load-then-store loop here would serialize one global
  /// latency per item before the first chunk could start.
  __device__ void load_q(const PrefillParams& p, int i, int g) {
    constexpr int kItems = T::kRows * T::kRowChunks;
    const uint16_t* q_tok = p.q + i * p.q_stride_s;  // [h_q, d_qk]
#pragma unroll
    for (int v = 0; v < (kItems + T::kThreads - 1) / T::kThreads; ++v) {
      const int item = v * T::kThreads + static_cast<int>(threadIdx.x);
      if (kItems % T::kThreads != 0 && item >= kItems) break;
      const int r = item / T::kRowChunks, ch = item % T::kRowChunks;
      const int h = g * T::kRows + r;
      uint16_t* dst = sQ + swizzle_offset<T::kRowChunks>(r, ch);
      const uint16_t* src = q_tok + h * p.q_stride_h + ch * 8;  // [8]
      if (h >= p.h_q) {
        *reinterpret_cast<uint4*>(dst) = make_uint4(0, 0, 0, 0);
      } else if (p.q_aligned16) {
        ptx::cp_async_16(dst, src);
      } else {
        uint16_t e[8];
#pragma unroll
        for (int k = 0; k < 8; ++k) e[k] = src[k];
        *reinterpret_cast<uint4*>(dst) =
            make_uint4(e[0] | (uint32_t{e[1]} << 16), e[2] | (uint32_t{e[3]} << 16),
                       e[4] | (uint32_t{e[5]} << 16), e[6] | (uint32_t{e[7]} << 16));
      }
    }
  }

  /// Issues the gather of this thread's part of a chunk into key tile `stage`: thread t
  /// serves key t / kThreadsPerKey of the chunk, whose index is `slot`. An invalid key
  /// (outside [0, s_kv), or -1 past the length) gets a zero row and is never read.
  __device__ void issue_chunk(const PrefillParams& p, int stage, int32_t slot) {
    constexpr int kPerThread = T::kRowChunks / T::kThreadsPerKey;
    static_assert(T::kRowChunks % T::kThreadsPerKey == 0, "whole chunks per loader thread");
    const int key = threadIdx.x / T::kThreadsPerKey;
    const int sub = threadIdx.x % T::kThreadsPerKey;
    const bool valid = slot >= 0 && static_cast<int64_t>(slot) < p.s_kv;
    if (sub == 0) sValid[stage * T::kBlockN + key] = valid;
    uint16_t* dst = sK + stage * T::kKStageElems;  // [kBlockN, kDQk]
    if (!valid) {
#pragma unroll
      for (int v = 0; v < kPerThread; ++v) {
        const int ch = v * T::kThreadsPerKey + sub;
        *reinterpret_cast<uint4*>(dst + swizzle_offset<T::kRowChunks>(key, ch)) =
            make_uint4(0, 0, 0, 0);
      }
      return;
    }
    const uint16_t* src = p.kv + static_cast<int64_t>(slot) * p.kv_stride;  // [d_qk]
    if (p.kv_aligned16) {
#pragma unroll
      for (int v = 0; v < kPerThread; ++v) {
        const int ch = v * T::kThreadsPerKey + sub;
        ptx::cp_async_16(dst + swizzle_offset<T::kRowChunks>(key, ch), src + ch * 8);
      }
    } else {
      // NOTE: rows not 16-byte aligned (odd row strides or base) take plain 2-byte loads.
      for (int v = 0; v < kPerThread; ++v) {
        const int ch = v * T::kThreadsPerKey + sub;
        uint16_t e[8];
#pragma unroll
        for (int k = 0; k < 8; ++k) e[k] = src[ch * 8 + k];
        *reinterpret_cast<uint4*>(dst + swizzle_offset<T::kRowChunks>(key, ch)) =
            make_uint4(e[0] | (uint32_t{e[1]} << 16), e[2] | (uint32_t{e[3]} << 16),
                       e[4] | (uint32_t{e[5]} << 16), e[6] | (uint32_t{e[7]} << 16));
      }
    }
  }
};

/// Per-thread softmax and output state.
template <class T>
struct PrefillState {
  float m[2];  // running max of base-2 logits, rows r0 = lane / 4 and r0 + 8 of the S row group
  float l[2];  // this lane's running sum of exp2(logit - m) over its S columns
  float o[T::kRowGroups][T::kOTiles][4];  // this warp's 64 O columns, every row group
};

/// One chunk (key tile `stage`, ready and visible): S, masked online softmax, P, O += P V.
template <class T>
__device__ __forceinline__ void compute_chunk(PrefillCta<T>& cta, PrefillState<T>& st, int stage,
                                              float scale_log2) {
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int rg = warp / T::kParts, part = warp % T::kParts;
  const int key_base = part * T::kKeysPerWarp;
  const int r0 = lane >> 2;
  const uint16_t* sk = cta.sK + stage * T::kKStageElems;  // [kBlockN, kDQk]

  // ---- S = Q K^T: 16 rows x kKeysPerWarp keys per warp ----
  float s[T::kSTiles][4];
#pragma unroll
  for (int t = 0; t < T::kSTiles; ++t) s[t][0] = s[t][1] = s[t][2] = s[t][3] = 0.0f;
  {
    // NOTE: the swizzle changes only the low 3 chunk bits, so the lane offsets of the 4
    // k-steps of a 64-dim block are computed once and block kb adds kb * 64 elements; the
    // key pairs np are 16 rows apart (same row % 8), so they add np * 16 rows.
    constexpr int kBLoads = T::kSTiles == 1 ? 1 : T::kSTiles / 2;
    const int a_row = rg * 16 + (lane & 15);
    const int b_row = T::kSTiles == 1 ? key_base + (lane & 7)
                                      : key_base + ((lane >> 4) << 3) + (lane & 7);
    int a_off[4], b_off[4];
#pragma unroll
    for (int j = 0; j < 4; ++j) {
      a_off[j] = swizzle_offset<T::kRowChunks>(a_row, 2 * j + (lane >> 4));
      b_off[j] = swizzle_offset<T::kRowChunks>(b_row, 2 * j + ((lane >> 3) & 1));
    }
#pragma unroll
    for (int kb = 0; kb < T::kDQk / 64; ++kb) {
#pragma unroll
      for (int j = 0; j < 4; ++j) {
        uint32_t a[4];
        ptx::ldmatrix_x4(a, cta.sQ + a_off[j] + kb * 64);
        if constexpr (T::kSTiles == 1) {
          uint32_t b[2];
          ptx::ldmatrix_x2(b, sk + b_off[j] + kb * 64);
          ptx::mma_m16n8k16_bf16_f32(s[0], a, b[0], b[1]);
        } else {
#pragma unroll
          for (int np = 0; np < kBLoads; ++np) {
            uint32_t b[4];
            ptx::ldmatrix_x4(b, sk + b_off[j] + np * 16 * T::kDQk + kb * 64);
            ptx::mma_m16n8k16_bf16_f32(s[2 * np], a, b[0], b[1]);
            ptx::mma_m16n8k16_bf16_f32(s[2 * np + 1], a, b[2], b[3]);
          }
        }
      }
    }
  }

  // ---- mask (select, never multiply), scale to base 2, the chunk's row maxima ----
  const uint8_t* valid = cta.sValid + stage * T::kBlockN;  // [kBlockN]
  float mx[2] = {-INFINITY, -INFINITY};
#pragma unroll
  for (int t = 0; t < T::kSTiles; ++t) {
#pragma unroll
    for (int e = 0; e < 2; ++e) {
      const bool v = valid[key_base + t * 8 + 2 * (lane & 3) + e] != 0;
      s[t][e] = masked_logit(s[t][e], v, scale_log2);
      s[t][2 + e] = masked_logit(s[t][2 + e], v, scale_log2);
      mx[0] = fmaxf(mx[0], s[t][e]);
      mx[1] = fmaxf(mx[1], s[t][2 + e]);
    }
  }
#pragma unroll
  for (int r = 0; r < 2; ++r) {
    mx[r] = fmaxf(mx[r], __shfl_xor_sync(0xffffffffu, mx[r], 1));
    mx[r] = fmaxf(mx[r], __shfl_xor_sync(0xffffffffu, mx[r], 2));
    if constexpr (kFastExp) mx[r] *= scale_log2;  // fl(max(s) x scale): scale > 0, rounding monotonic
  }
  if ((lane & 3) == 0) {
    cta.sRedMax[warp * 16 + r0] = mx[0];
    cta.sRedMax[warp * 16 + r0 + 8] = mx[1];
  }
  __syncthreads();  // C: every S warp's chunk maxima

  float alpha[2], m_use[2];
#pragma unroll
  for (int r = 0; r < 2; ++r) {
    float m_chunk = -INFINITY;
#pragma unroll
    for (int q = 0; q < T::kParts; ++q) {
      m_chunk = fmaxf(m_chunk, cta.sRedMax[(rg * T::kParts + q) * 16 + r0 + 8 * r]);
    }
    const float m_new = fmaxf(st.m[r], m_chunk);
    // NOTE: while no valid key was seen m stays -inf; subtracting 0 then keeps exp2 at 0
    // instead of producing (-inf) - (-inf) = NaN.
    m_use[r] = m_new == -INFINITY ? 0.0f : m_new;
    alpha[r] = exp2_chunk(st.m[r] - m_use[r]);
    st.m[r] = m_new;
  }

  // ---- P = exp2(S - m) -> sP (bf16), this lane's row sums, the rows' alpha -> sAlpha ----
  float rowsum[2] = {0.0f, 0.0f};
  const int p_row0 = rg * 16 + r0;
#pragma unroll
  for (int t = 0; t < T::kSTiles; ++t) {
    const float p0 = exp2_logit(s[t][0], m_use[0], scale_log2);
    const float p1 = exp2_logit(s[t][1], m_use[0], scale_log2);
    const float p2 = exp2_logit(s[t][2], m_use[1], scale_log2);
    const float p3 = exp2_logit(s[t][3], m_use[1], scale_log2);
    rowsum[0] += p0 + p1;
    rowsum[1] += p2 + p3;
    const int chunk = key_base / 8 + t;
    const int within = 2 * (lane & 3);
    *reinterpret_cast<uint32_t*>(cta.sP + swizzle_offset<T::kPChunks>(p_row0, chunk) + within) =
        pack_bf16x2(p0, p1);
    *reinterpret_cast<uint32_t*>(cta.sP + swizzle_offset<T::kPChunks>(p_row0 + 8, chunk) + within) =
        pack_bf16x2(p2, p3);
  }
#pragma unroll
  for (int r = 0; r < 2; ++r) st.l[r] = st.l[r] * alpha[r] + rowsum[r];
  if (part == 0 && (lane & 3) == 0) {
    cta.sAlpha[p_row0] = alpha[0];
    cta.sAlpha[p_row0 + 8] = alpha[1];
  }
  __syncthreads();  // D: the whole P tile and every row's alpha

  // ---- O += P V: this warp's 64 dims of V (first 512 dims of the key tile), all rows ----
#pragma unroll
  for (int g = 0; g < T::kRowGroups; ++g) {
    const float a0 = cta.sAlpha[g * 16 + r0];
    const float a1 = cta.sAlpha[g * 16 + r0 + 8];
#pragma unroll
    for (int t = 0; t < T::kOTiles; ++t) {
      st.o[g][t][0] *= a0;
      st.o[g][t][1] *= a0;
      st.o[g][t][2] *= a1;
      st.o[g][t][3] *= a1;
    }
  }
  const int dim_chunk0 = warp * (T::kDimsPerWarp / 8);
#pragma unroll
  for (int kk = 0; kk < T::kBlockN / 16; ++kk) {
    uint32_t b[T::kOTiles / 2][4];
    const int v_row = kk * 16 + ((lane >> 3) & 1) * 8 + (lane & 7);
#pragma unroll
    for (int np = 0; np < T::kOTiles / 2; ++np) {
      ptx::ldmatrix_x4_trans(b[np], sk + swizzle_offset<T::kRowChunks>(v_row, dim_chunk0 + 2 * np + (lane >> 4)));
    }
#pragma unroll
    for (int g = 0; g < T::kRowGroups; ++g) {
      uint32_t a[4];
      ptx::ldmatrix_x4(a, cta.sP + swizzle_offset<T::kPChunks>(g * 16 + (lane & 15), 2 * kk + (lane >> 4)));
#pragma unroll
      for (int np = 0; np < T::kOTiles / 2; ++np) {
        ptx::mma_m16n8k16_bf16_f32(st.o[g][2 * np], a, b[np][0], b[np][1]);
        ptx::mma_m16n8k16_bf16_f32(st.o[g][2 * np + 1], a, b[np][2], b[np][3]);
      }
    }
  }
}

/// The prefill kernel. Grid: (s_q, num_head_groups); blockIdx.x is the query token (up to
/// 2^31 - 1 tokens), blockIdx.y the head group.
template <class T>
__global__ void __launch_bounds__(T::kThreads, 1)
    sparse_prefill_kernel(const __grid_constant__ PrefillParams p) {
  extern __shared__ __align__(16) uint8_t smem[];
  PrefillCta<T> cta(smem);
  const int i = static_cast<int>(blockIdx.x);
  const int g = static_cast<int>(blockIdx.y);

  const int len = clamp_topk_length(p.topk_length, i, p.topk);
  const int num_chunks = (len + T::kBlockN - 1) / T::kBlockN;
  const int32_t* idx_row = p.indices + i * p.idx_stride;  // [topk]
  const int key = threadIdx.x / T::kThreadsPerKey;        // this thread's key of each chunk

  PrefillState<T> st;
#pragma unroll
  for (int r = 0; r < 2; ++r) {
    st.m[r] = -INFINITY;
    st.l[r] = 0.0f;
  }
#pragma unroll
  for (int gg = 0; gg < T::kRowGroups; ++gg) {
#pragma unroll
    for (int t = 0; t < T::kOTiles; ++t) {
      st.o[gg][t][0] = st.o[gg][t][1] = st.o[gg][t][2] = st.o[gg][t][3] = 0.0f;
    }
  }

  // NOTE: each thread's next index is loaded one chunk ahead, so the dependent global load
  // never sits between a barrier and the cp.async issue.
  int32_t slot_next = load_slot(idx_row, len, key);
  if (num_chunks > 0) cta.load_q(p, i, g);  // joins the first chunk's cp.async group
  if constexpr (T::kStages == 2) {
    if (num_chunks > 0) {
      cta.issue_chunk(p, 0, slot_next);
      ptx::cp_async_commit();
      slot_next = load_slot(idx_row, len, T::kBlockN + key);
    }
  }

  int stage = 0;
  for (int c = 0; c < num_chunks; ++c) {
    if constexpr (T::kStages == 1) {
      __syncthreads();  // A: every warp is done with the tile (chunk c - 1)
      cta.issue_chunk(p, 0, slot_next);
      ptx::cp_async_commit();
      slot_next = load_slot(idx_row, len, (c + 1) * T::kBlockN + key);
      ptx::cp_async_wait_all();
      __syncthreads();  // B: chunk c (and, at c = 0, sQ) visible
    } else {
      ptx::cp_async_wait_all();
      __syncthreads();  // B: chunk c (and sQ) visible; every warp is done with chunk c - 1
      if (c + 1 < num_chunks) {
        cta.issue_chunk(p, stage ^ 1, slot_next);  // into the tile chunk c - 1 used
        ptx::cp_async_commit();
        slot_next = load_slot(idx_row, len, (c + 2) * T::kBlockN + key);
      }
    }
    compute_chunk<T>(cta, st, stage, p.scale_log2);
    if constexpr (T::kStages == 2) stage ^= 1;
  }

  // ---- epilogue: total row sums over the S warps of a row group, then the outputs ----
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int rg = warp / T::kParts, part = warp % T::kParts;
  const int r0 = lane >> 2;
#pragma unroll
  for (int r = 0; r < 2; ++r) {
    st.l[r] += __shfl_xor_sync(0xffffffffu, st.l[r], 1);
    st.l[r] += __shfl_xor_sync(0xffffffffu, st.l[r], 2);
  }
  if ((lane & 3) == 0) {
    cta.sRedSum[warp * 16 + r0] = st.l[0];
    cta.sRedSum[warp * 16 + r0 + 8] = st.l[1];
    if (part == 0) {
      cta.sRowMax[rg * 16 + r0] = st.m[0];
      cta.sRowMax[rg * 16 + r0 + 8] = st.m[1];
    }
  }
  __syncthreads();

  const int dim0 = warp * T::kDimsPerWarp;
#pragma unroll
  for (int gg = 0; gg < T::kRowGroups; ++gg) {
#pragma unroll
    for (int r = 0; r < 2; ++r) {
      const int row = gg * 16 + r0 + 8 * r;
      const int h = g * T::kRows + row;
      if (h >= p.h_q) continue;
      float l_total = 0.0f;
#pragma unroll
      for (int q = 0; q < T::kParts; ++q) l_total += cta.sRedSum[(gg * T::kParts + q) * 16 + r0 + 8 * r];
      const float m2 = cta.sRowMax[row];
      // NOTE: l_total is exactly 0 iff no valid key was seen (the largest valid logit adds
      // exp2(0) = 1). NaN in referenced keys gives a NaN sum, which must propagate rather
      // than pass for an empty row.
      const bool empty = l_total == 0.0f;
      const float lse = (m2 + log2f(l_total)) * kLn2;
      const bool has_sink = p.attn_sink != nullptr;
      const float factor = softmax_out_factor(l_total, lse, has_sink, has_sink ? __ldg(p.attn_sink + h) : 0.0f);
      const int64_t out_row = static_cast<int64_t>(i) * p.h_q + h;  // [s_q, h_q]
      uint16_t* dst = p.out + out_row * T::kDV;                     // [512]
#pragma unroll
      for (int t = 0; t < T::kOTiles; ++t) {
        const int d = dim0 + t * 8 + 2 * (lane & 3);
        // NOTE: select, never multiply: an empty row's factor is inf or NaN.
        const uint32_t v =
            empty ? 0u : pack_bf16x2(st.o[gg][t][2 * r] * factor, st.o[gg][t][2 * r + 1] * factor);
        if (p.out_aligned4) {
          *reinterpret_cast<uint32_t*>(dst + d) = v;
        } else {
          dst[d] = static_cast<uint16_t>(v & 0xffffu);
          dst[d + 1] = static_cast<uint16_t>(v >> 16);
        }
      }
      if (warp == 0 && (lane & 3) == 0) {
        p.lse[out_row] = empty ? INFINITY : lse;
        p.max_logits[out_row] = empty ? -INFINITY : m2 * kLn2;
      }
    }
  }
}

}  // namespace model1::cuda::portable
