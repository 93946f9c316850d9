// model1 CUDA Hopper (sm_90a) sparse decode kernel: warp-specialized (a producer
// warpgroup gathers and dequantizes, two consumer warpgroups run wgmma), online softmax in base
// 2, the same split-KV schedule, partial layout and combine as the portable kernels
// (MODEL1.md section 3). Compiled only for sm_90a.
//
// Per chunk of 64 candidate keys (main cache first, then the extra cache):
//   producers: wait until stage s of the key ring is free; load each key's bytes from the
//     paged cache (bounds-checked: an invalid slot is never read, its row is stored as zeros
//     and marked invalid), dequantize FP8 exactly to bf16, store into the 128-byte-swizzle
//     tile; fence for the async proxy; arrive on full[s].
//   consumers: wait full[s]; WG w computes S = Q K^T for keys 32w..32w+31 (wgmma, K-major
//     operands); masks invalid keys; the two warpgroups exchange row maxima (named barrier),
//     each writes its half of P (bf16) to shared memory (named barrier), rescales its O
//     columns and runs O[:, 256w..256w+255] += P V (wgmma, V = the key tile read N-major);
//     arrive on empty[s].
#pragma once

#include <cuda_bf16.h>

#include <cstdint>

#include "cuda/common/decode_params.h"
#include "cuda/common/numerics.cuh"
#include "cuda/portable/decode_kernel.cuh"
#include "cuda/ptx/wgmma.cuh"
#include "cuda/sm90/decode_traits.cuh"

namespace model1::cuda::sm90 {

using portable::Candidate;
using portable::KeyAddress;

/// Byte offset of 16-byte chunk `chunk` (0..7) of row `row` inside one 64-column block of a
/// 128-byte-swizzle tile.
__device__ __forceinline__ uint32_t swizzle_offset(int row, int chunk) {
  return static_cast<uint32_t>(row * 128 + ((chunk ^ (row & 7)) << 4));
}

/// The kernel's dynamic shared memory (one declaration for every configuration).
extern __shared__ __align__(1024) uint8_t g_smem[];

/// Shared-memory regions of one CTA as 32-bit offsets from g_smem (indexing the __shared__
/// array keeps 32-bit shared addressing: registers matter in the consumers).
template <class T>
struct Smem {
  uint32_t base;  // offset of the first 1024-byte aligned byte
  __device__ Smem() {
    const uint32_t a = ptx::smem_addr(g_smem);
    base = (T::kAlign - (a % T::kAlign)) % T::kAlign;
  }
  __device__ uint8_t* at(uint32_t off) const { return g_smem + base + off; }
  __device__ uint8_t* q() const { return at(T::kQOffset); }
  __device__ uint8_t* k(int stage) const { return at(T::kKOffset + stage * T::kTileBytes); }
  __device__ uint8_t* p() const { return at(T::kPOffset); }
  __device__ uint8_t* valid(int stage) const { return at(T::kValidOffset + stage * T::kBlockN); }
  __device__ float* red_max(int wg) const {
    return reinterpret_cast<float*>(at(T::kRedMaxOffset)) + wg * T::kRows;
  }
  __device__ float* red_sum(int wg) const {
    return reinterpret_cast<float*>(at(T::kRedSumOffset)) + wg * T::kRows;
  }
  __device__ uint32_t full_bar(int stage) const { return ptx::smem_addr(at(T::kBarOffset + stage * 8)); }
  __device__ uint32_t empty_bar(int stage) const {
    return ptx::smem_addr(at(T::kBarOffset + (T::kStages + stage) * 8));
  }
};

/// (request i, token j, split, head group g) of this CTA (blockIdx order of the grid).
struct CtaCoord {
  int i, j, split, g;
};
__device__ __forceinline__ CtaCoord cta_coord(const DecodeParams& p) {
  int64_t bid = blockIdx.x;
  CtaCoord c;
  c.g = static_cast<int>(bid % p.num_head_groups);
  bid /= p.num_head_groups;
  c.split = static_cast<int>(bid % p.max_splits);
  bid /= p.max_splits;
  c.j = static_cast<int>(bid % p.s_q);
  c.i = static_cast<int>(bid / p.s_q);
  return c;
}

/// Q rows (64 heads of head group g) -> the swizzled Q tile, by every thread of the CTA.
template <class T>
__device__ void load_q(const Smem<T>& sm, const DecodeParams& p, int i, int j, int g) {
  constexpr int kChunksPerRow = T::kDQk / 8;  // 16-byte chunks
  const uint16_t* q_rows = p.q + i * p.q_stride_b + j * p.q_stride_s;
  for (int item = threadIdx.x; item < T::kRows * kChunksPerRow; item += T::kThreads) {
    const int r = item / kChunksPerRow, c = item % kChunksPerRow;
    const int h = g * T::kRows + r;
    const uint4 v = load_bf16x8(q_rows + h * p.q_stride_h + c * 8, p.q_aligned16);
    *reinterpret_cast<uint4*>(sm.q() + (c / 8) * T::kBlockBytes + swizzle_offset(r, c % 8)) = v;
  }
}

/// Producer warp `pw` (0..kProducerWarps-1): keys pw * 16 .. pw * 16 + 15 of every chunk.
template <class T>
__device__ void produce(const Smem<T>& sm, const DecodeParams& p, const int32_t* main_idx,
                        const int32_t* extra_idx, int main_keys, int num_keys, int chunk_begin,
                        int chunk_end) {
  using F = typename T::F;
  constexpr bool kModel1 = F::kStageScaleBytes > 0;
  constexpr int kGroups = F::kGroupsPerKey;   // 16-byte bf16 groups of a key (64 / 72)
  constexpr int kNope = F::kNopeGroups;       // FP8 groups (56 / 64)
  constexpr int kPerLane = (kGroups + 31) / 32;  // groups per lane and key (2 / 3)
  constexpr int kRopeOffset = kModel1 ? model1_fp8::kNopeBytes : v32_fp8::kRopeOffset;
  const int lane = threadIdx.x % 32;
  const int pw = (threadIdx.x - T::kConsumerThreads) / 32;
  const int key_base = pw * T::kKeysPerProducerWarp;
  const int my_key = key_base + lane % T::kKeysPerProducerWarp;  // lanes 0..15 own the keys

  auto fetch = [&](int c) {
    return portable::fetch_candidate(main_idx, extra_idx, main_keys, num_keys, c * T::kBlockN + my_key);
  };
  Candidate next = chunk_begin < chunk_end ? fetch(chunk_begin) : Candidate{};
  PipelineState<T::kStages> ps;
  for (int c = chunk_begin; c < chunk_end; ++c) {
    const Candidate cand = next;
    if (c + 1 < chunk_end) next = fetch(c + 1);  // NOTE: index latency hides behind a chunk
    const KeyAddress a = portable::key_address(p, cand);
    uint64_t row_ptr = 0, scale_ptr = 0;
    if (a.page != nullptr) {
      if constexpr (kModel1) {
        row_ptr = reinterpret_cast<uint64_t>(a.page + model1_fp8::data_row_offset(a.offset));
        scale_ptr = reinterpret_cast<uint64_t>(a.page + model1_fp8::scale_row_offset(a.page_size, a.offset));
      } else {
        row_ptr = reinterpret_cast<uint64_t>(a.page + v32_fp8::token_offset(a.offset));
      }
    }
    ptx::mbarrier_wait(sm.empty_bar(ps.stage), ps.phase ^ 1u);
    uint8_t* tile = sm.k(ps.stage);
    if (lane < T::kKeysPerProducerWarp) sm.valid(ps.stage)[my_key] = row_ptr != 0;

#pragma unroll 1
    for (int kb = 0; kb < T::kKeysPerProducerWarp; kb += T::kProducerBatch) {
      uint4 raw[T::kProducerBatch][kPerLane];
      uint32_t sc[T::kProducerBatch][kPerLane];
      bool ok[T::kProducerBatch];
      // Loads of the batch first (latency), then conversions and stores.
#pragma unroll
      for (int k = 0; k < T::kProducerBatch; ++k) {
        const uint8_t* row = reinterpret_cast<const uint8_t*>(__shfl_sync(0xffffffffu, row_ptr, kb + k));
        ok[k] = row != nullptr;
        uint2 srow = make_uint2(0, 0);
        uint4 vscale = make_uint4(0, 0, 0, 0);
        if constexpr (kModel1) {
          const uint8_t* srow_ptr = reinterpret_cast<const uint8_t*>(__shfl_sync(0xffffffffu, scale_ptr, kb + k));
          if (ok[k]) srow = __ldg(reinterpret_cast<const uint2*>(srow_ptr));
        } else {
          if (ok[k]) vscale = __ldg(reinterpret_cast<const uint4*>(row + v32_fp8::kScaleOffset));
        }
#pragma unroll
        for (int u = 0; u < kPerLane; ++u) {
          const int g = lane + 32 * u;
          raw[k][u] = make_uint4(0, 0, 0, 0);
          sc[k][u] = 0;
          if (g >= kGroups || !ok[k]) continue;
          if (g < kNope) {
            const uint2 codes = __ldg(reinterpret_cast<const uint2*>(row + g * 8));
            raw[k][u].x = codes.x;
            raw[k][u].y = codes.y;
            const int tile_idx = g / F::kGroupsPerTile;
            if constexpr (kModel1) {
              sc[k][u] = ((tile_idx < 4 ? srow.x : srow.y) >> (8 * (tile_idx % 4))) & 0xffu;
            } else {
              sc[k][u] = tile_idx == 0 ? vscale.x : tile_idx == 1 ? vscale.y : tile_idx == 2 ? vscale.z : vscale.w;
            }
          } else {
            raw[k][u] = __ldg(reinterpret_cast<const uint4*>(row + kRopeOffset + (g - kNope) * 16));
          }
        }
      }
#pragma unroll
      for (int k = 0; k < T::kProducerBatch; ++k) {
        const int key = key_base + kb + k;
#pragma unroll
        for (int u = 0; u < kPerLane; ++u) {
          const int g = lane + 32 * u;
          if (g >= kGroups) continue;
          const uint4 v = portable::dequant_group<F>(raw[k][u], sc[k][u], ok[k], g < kNope);
          *reinterpret_cast<uint4*>(tile + (g / 8) * T::kBlockBytes + swizzle_offset(key, g % 8)) = v;
        }
      }
    }
    ptx::fence_proxy_async_smem();  // the generic stores above -> wgmma operand reads
    ptx::mbarrier_arrive(sm.full_bar(ps.stage));
    ps.advance();
  }
}

/// Consumer warpgroup `wg` (0 or 1): the chunk loop, then the outputs of its 256 columns.
template <class T>
__device__ void consume(const Smem<T>& sm, const DecodeParams& p, int chunk_begin, int chunk_end) {
  const int wg = threadIdx.x / 128;
  const int wt = threadIdx.x % 128;
  const int warp = wt / 32, lane = wt % 32;
  const int r0 = warp * 16 + lane / 4;  // rows r0 and r0 + 8 of this thread
  const float scale_log2 = p.scale_log2;

  float o[T::kDimsPerConsumer / 2];  // 64 x 256 f32 over the warpgroup: 128 per thread
#pragma unroll
  for (int e = 0; e < T::kDimsPerConsumer / 2; ++e) o[e] = 0.0f;
  float m[2] = {-INFINITY, -INFINITY};  // running max of base-2 logits, rows r0, r0 + 8
  float l[2] = {0.0f, 0.0f};            // running sums over this warpgroup's keys

  const uint32_t q_base = ptx::smem_addr(sm.q());
  const uint32_t p_base = ptx::smem_addr(sm.p());
  PipelineState<T::kStages> ps;
  for (int c = chunk_begin; c < chunk_end; ++c) {
    ptx::mbarrier_wait(sm.full_bar(ps.stage), ps.phase);
    const uint32_t k_addr = ptx::opaque(ptx::smem_addr(sm.k(ps.stage)));
    const uint32_t q_addr = ptx::opaque(q_base);

    // ---- S = Q K^T for keys 32 wg .. 32 wg + 31 (K-major A and B) ----
    float s[T::kKeysPerConsumer / 2];
#pragma unroll
    for (int e = 0; e < T::kKeysPerConsumer / 2; ++e) s[e] = 0.0f;
    ptx::wgmma_fence();
    // NOTE: one column block per iteration, not unrolled: unrolled, ptxas hoists the 36
    // loop-invariant Q descriptors out of the chunk loop into registers the accumulators need.
#pragma unroll 1
    for (int cb = 0; cb < T::kColBlocks; ++cb) {
      const uint32_t off = cb * T::kBlockBytes;
      uint64_t da = ptx::smem_desc_sw128(q_addr + off, 16, 1024);
      uint64_t db = ptx::smem_desc_sw128(k_addr + wg * T::kKeysPerConsumer * 128 + off, 16, 1024);
#pragma unroll
      for (int kk = 0; kk < 4; ++kk) {  // 16 dims = 32 bytes along the 128-byte swizzled row
        ptx::wgmma_m64n32k16_bf16_f32_ss<0>(s, da, db, cb > 0 || kk > 0 ? 1 : 0);
        da = ptx::desc_advance(da, 32);
        db = ptx::desc_advance(db, 32);
      }
    }
    ptx::wgmma_commit();
    ptx::wgmma_wait<0>();
#pragma unroll
    for (int e = 0; e < T::kKeysPerConsumer / 2; ++e) ptx::fence_operand(s[e]);

    // ---- mask (select, never multiply) and this warpgroup's row maxima ----
    const uint8_t* valid = sm.valid(ps.stage);
    float mx[2] = {-INFINITY, -INFINITY};
#pragma unroll
    for (int nb = 0; nb < T::kKeysPerConsumer / 8; ++nb) {
#pragma unroll
      for (int e = 0; e < 2; ++e) {
        const int col = wg * T::kKeysPerConsumer + nb * 8 + 2 * (lane % 4) + e;
        const bool ok = valid[col] != 0;
        s[4 * nb + e] = ok ? s[4 * nb + e] * scale_log2 : -INFINITY;
        s[4 * nb + 2 + e] = ok ? s[4 * nb + 2 + e] * scale_log2 : -INFINITY;
        mx[0] = fmaxf(mx[0], s[4 * nb + e]);
        mx[1] = fmaxf(mx[1], s[4 * nb + 2 + e]);
      }
    }
#pragma unroll
    for (int r = 0; r < 2; ++r) {
      mx[r] = fmaxf(mx[r], __shfl_xor_sync(0xffffffffu, mx[r], 1));
      mx[r] = fmaxf(mx[r], __shfl_xor_sync(0xffffffffu, mx[r], 2));
    }
    if (lane % 4 == 0) {
      sm.red_max(wg)[r0] = mx[0];
      sm.red_max(wg)[r0 + 8] = mx[1];
    }
    ptx::named_barrier_sync(T::kBarrierMax, T::kConsumerThreads);

    // NOTE: both warpgroups compute the same new maxima (same inputs, same order).
    float alpha[2], m_use[2];
#pragma unroll
    for (int r = 0; r < 2; ++r) {
      const float m_chunk = fmaxf(sm.red_max(0)[r0 + 8 * r], sm.red_max(1)[r0 + 8 * r]);
      const float m_new = fmaxf(m[r], m_chunk);
      // NOTE: while no valid key was seen m stays -inf; subtracting 0 keeps exp2 at 0.
      m_use[r] = m_new == -INFINITY ? 0.0f : m_new;
      alpha[r] = exp2f(m[r] - m_use[r]);
      m[r] = m_new;
    }

    // ---- P = exp2(S - m) -> shared memory (bf16, K-major swizzled), row sums ----
    float rowsum[2] = {0.0f, 0.0f};
    uint8_t* sp = sm.p();
#pragma unroll
    for (int nb = 0; nb < T::kKeysPerConsumer / 8; ++nb) {
      const float p0 = exp2f(s[4 * nb + 0] - m_use[0]);
      const float p1 = exp2f(s[4 * nb + 1] - m_use[0]);
      const float p2 = exp2f(s[4 * nb + 2] - m_use[1]);
      const float p3 = exp2f(s[4 * nb + 3] - m_use[1]);
      rowsum[0] += p0 + p1;
      rowsum[1] += p2 + p3;
      const int col = wg * T::kKeysPerConsumer + nb * 8 + 2 * (lane % 4);
      const uint32_t in_chunk = (col % 8) * 2;
      *reinterpret_cast<uint32_t*>(sp + swizzle_offset(r0, col / 8) + in_chunk) = pack_bf16x2(p0, p1);
      *reinterpret_cast<uint32_t*>(sp + swizzle_offset(r0 + 8, col / 8) + in_chunk) = pack_bf16x2(p2, p3);
    }
#pragma unroll
    for (int r = 0; r < 2; ++r) l[r] = l[r] * alpha[r] + rowsum[r];
    ptx::fence_proxy_async_smem();
    ptx::named_barrier_sync(T::kBarrierP, T::kConsumerThreads);

    // ---- O *= alpha (skipped when exactly 1 for the whole warp: no bit changes) ----
    if (__any_sync(0xffffffffu, alpha[0] != 1.0f || alpha[1] != 1.0f)) {
#pragma unroll
      for (int nb = 0; nb < T::kDimsPerConsumer / 8; ++nb) {
        o[4 * nb + 0] *= alpha[0];
        o[4 * nb + 1] *= alpha[0];
        o[4 * nb + 2] *= alpha[1];
        o[4 * nb + 3] *= alpha[1];
      }
    }

    // ---- O[:, 256 wg ..] += P V: A = P (K-major), B = V (N-major: dims contiguous) ----
#pragma unroll
    for (int e = 0; e < T::kDimsPerConsumer / 2; ++e) ptx::fence_operand(o[e]);
    const uint32_t p_addr = ptx::opaque(p_base);
    ptx::wgmma_fence();
#pragma unroll
    for (int kk = 0; kk < T::kBlockN / 16; ++kk) {
      const uint64_t da = ptx::smem_desc_sw128(p_addr + kk * 32, 16, 1024);
      const uint64_t db = ptx::smem_desc_sw128(
          k_addr + wg * (T::kDimsPerConsumer / 64) * T::kBlockBytes + kk * 16 * 128, T::kBlockBytes, 1024);
      ptx::wgmma_m64n256k16_bf16_f32_ss<1>(o, da, db, 1);
    }
    ptx::wgmma_commit();
    ptx::wgmma_wait<0>();
#pragma unroll
    for (int e = 0; e < T::kDimsPerConsumer / 2; ++e) ptx::fence_operand(o[e]);
    ptx::mbarrier_arrive(sm.empty_bar(ps.stage));  // the key tile may be overwritten
    ps.advance();
  }

  // ---- epilogue: total row sums over both warpgroups, then outputs or partials ----
  // NOTE: the CTA's coordinates are recomputed here rather than kept live through the loop.
  const CtaCoord cc = cta_coord(p);
  const int i = cc.i, j = cc.j, g = cc.g, split = cc.split;
  const int num_splits = request_schedule(clamp_length(p.topk_length, i, p.topk),
                                          p.extra_indices != nullptr
                                              ? clamp_length(p.extra_topk_length, i, p.extra_topk)
                                              : 0,
                                          p.split_chunks)
                             .num_splits;
#pragma unroll
  for (int r = 0; r < 2; ++r) {
    l[r] += __shfl_xor_sync(0xffffffffu, l[r], 1);
    l[r] += __shfl_xor_sync(0xffffffffu, l[r], 2);
  }
  if (lane % 4 == 0) {
    sm.red_sum(wg)[r0] = l[0];
    sm.red_sum(wg)[r0 + 8] = l[1];
  }
  ptx::named_barrier_sync(T::kBarrierMax, T::kConsumerThreads);

  const int dim_base = wg * T::kDimsPerConsumer;
  const bool direct = num_splits == 1;
#pragma unroll
  for (int r = 0; r < 2; ++r) {
    const int row_in_cta = r0 + 8 * r;
    // NOTE: fixed order (warpgroup 0 + warpgroup 1): both warpgroups get the same bits.
    const float l_total = sm.red_sum(0)[row_in_cta] + sm.red_sum(1)[row_in_cta];
    const int h = g * T::kRows + row_in_cta;
    if (h >= p.h_q) continue;
    // NOTE: exactly 0 only when no valid key was seen; a NaN logit makes it NaN (as the CPU).
    const bool empty = l_total == 0.0f;
    const int64_t row = (static_cast<int64_t>(i) * p.s_q + j) * p.h_q + h;  // [b, s_q, h_q]
    const float lse2 = m[r] + log2f(l_total);
    if (direct) {
      const float lse = lse2 * kLn2;
      float factor = 1.0f / l_total;
      if (p.attn_sink != nullptr) factor *= 1.0f / (1.0f + expf(p.attn_sink[h] - lse));
      uint16_t* out_row = p.out + row * T::kDV;
#pragma unroll
      for (int nb = 0; nb < T::kDimsPerConsumer / 8; ++nb) {
        const int d = dim_base + nb * 8 + 2 * (lane % 4);
        const uint32_t v = empty ? 0u : pack_bf16x2(o[4 * nb + 2 * r] * factor, o[4 * nb + 2 * r + 1] * factor);
        if (p.out_aligned8) {
          *reinterpret_cast<uint32_t*>(out_row + d) = v;
        } else {
          out_row[d] = static_cast<uint16_t>(v & 0xffffu);
          out_row[d + 1] = static_cast<uint16_t>(v >> 16);
        }
      }
      if (wg == 0 && lane % 4 == 0) p.lse[row] = empty ? INFINITY : lse;
    } else {
      const float factor = 1.0f / l_total;
      float* po = p.partial_o + (row * p.max_splits + split) * T::kDV;
#pragma unroll
      for (int nb = 0; nb < T::kDimsPerConsumer / 8; ++nb) {
        const int d = dim_base + nb * 8 + 2 * (lane % 4);
        const float2 v = empty ? make_float2(0.0f, 0.0f)
                               : make_float2(o[4 * nb + 2 * r] * factor, o[4 * nb + 2 * r + 1] * factor);
        *reinterpret_cast<float2*>(po + d) = v;
      }
      if (wg == 0 && lane % 4 == 0) p.partial_lse[row * p.max_splits + split] = empty ? -INFINITY : lse2;
    }
  }
}

/// The split kernel. Grid: b * s_q * max_splits * num_head_groups CTAs, as the portable
/// kernel's; CTAs whose split is past their request's schedule exit at once.
template <class T>
__global__ void __launch_bounds__(T::kThreads, 1) sparse_decode_sm90_kernel(const __grid_constant__ DecodeParams p) {
  const Smem<T> sm;
  const CtaCoord cc = cta_coord(p);
  const int i = cc.i, j = cc.j, g = cc.g, split = cc.split;

  const int main_keys = clamp_length(p.topk_length, i, p.topk);
  const int extra_keys = p.extra_indices != nullptr ? clamp_length(p.extra_topk_length, i, p.extra_topk) : 0;
  const RequestSchedule sched = request_schedule(main_keys, extra_keys, p.split_chunks);
  if (split >= sched.num_splits) return;
  const int chunk_begin = split * sched.chunks_per_split;
  const int chunk_end = min(chunk_begin + sched.chunks_per_split, sched.num_chunks);

  if (threadIdx.x == 0) {
    for (int s = 0; s < T::kStages; ++s) {
      ptx::mbarrier_init(sm.full_bar(s), T::kProducerThreads);
      ptx::mbarrier_init(sm.empty_bar(s), T::kConsumerThreads);
    }
    ptx::fence_mbarrier_init();
  }
  load_q<T>(sm, p, i, j, g);
  ptx::fence_proxy_async_smem();  // Q: generic stores -> wgmma operand reads
  __syncthreads();

  // NOTE: the warpgroup index through a shuffle: ptxas then knows the role branch is
  // warp-uniform (wgmma in a possibly divergent path gets serialized).
  const int warpgroup = __shfl_sync(0xffffffffu, static_cast<int>(threadIdx.x) / 128, 0);
  if (warpgroup >= T::kConsumerWarpgroups) {
    ptx::setmaxnreg_dec<T::kProducerRegs>();
    const int32_t* main_idx = p.indices + i * p.idx_stride_b + j * p.idx_stride_s;
    const int32_t* extra_idx =
        p.extra_indices != nullptr ? p.extra_indices + i * p.extra_idx_stride_b + j * p.extra_idx_stride_s : nullptr;
    produce<T>(sm, p, main_idx, extra_idx, main_keys, sched.num_keys, chunk_begin, chunk_end);
  } else {
    ptx::setmaxnreg_inc<T::kConsumerRegs>();
    consume<T>(sm, p, chunk_begin, chunk_end);
  }
}

}  // namespace model1::cuda::sm90
