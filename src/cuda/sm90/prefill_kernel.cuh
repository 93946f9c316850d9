// model1 CUDA Hopper (sm_90a) sparse prefill kernel (MODEL1.md section 4): a persistent CTA
// per SM walks work items (query token, group of 64 heads); a producer warpgroup loads each
// item's Q tile (by TMA, or by cp.async where q's layout has no tensor map) and gathers its
// top-k bf16 key rows by cp.async into a two-stage ring of 128-byte-swizzled tiles, running
// ahead across items; the two consumer warpgroups run the decode kernel's wgmma main loop
// (consume_chunks) over them, then write out, max_logits and lse with the attention sink while
// the next item's Q and first key tile arrive. Compiled only for sm_90a.
#pragma once

#include <cuda.h>  // CUtensorMap

#include <cstdint>

#include "cuda/common/numerics.cuh"
#include "cuda/portable/prefill_kernel.cuh"
#include "cuda/portable/prefill_params.h"
#include "cuda/ptx/wgmma.cuh"
#include "cuda/sm90/decode_kernel.cuh"
#include "cuda/sm90/prefill_traits.cuh"

namespace model1::cuda::sm90 {

/// The Q tile's barriers (PrefillTraits::kQBarOffset): copied by the producer / free again.
template <class T>
__device__ __forceinline__ uint32_t q_full_bar(const Smem<T>& sm) {
  return ptx::smem_addr(sm.at(T::kQBarOffset));
}
template <class T>
__device__ __forceinline__ uint32_t q_empty_bar(const Smem<T>& sm) {
  return ptx::smem_addr(sm.at(T::kQBarOffset + 8));
}

/// The tensor map of the TMA path (kTma: q TMA-compatible, built by the launcher): q as {d_qk,
/// h_q, s_q}, boxes of 64 columns x 64 heads x 1 token in the tiles' 128-byte swizzle. Unused
/// (zero) otherwise.
struct PrefillMaps {
  CUtensorMap q;
};

/// A work item: query token i, head group g; its key count (topk_length clamped) and chunks.
struct PrefillItem {
  int i, g, len, num_chunks;
};
template <class T>
__device__ __forceinline__ PrefillItem prefill_item(const PrefillParams& p, int64_t w) {
  PrefillItem it;
  it.i = static_cast<int>(w / p.num_head_groups);
  it.g = static_cast<int>(w % p.num_head_groups);
  it.len = portable::clamp_topk_length(p.topk_length, it.i, p.topk);
  it.num_chunks = (it.len + T::kBlockN - 1) / T::kBlockN;
  return it;
}

/// This CTA's work items w = begin, begin + step, ... < end (item w: token w / num_head_groups,
/// head group w % num_head_groups), as prefill_item_range left them in shared memory.
struct ItemRange {
  int begin, end, step;  // (the launcher keeps s_q * num_head_groups <= 2^30: no overflow)
};
template <class T>
__device__ __forceinline__ ItemRange item_range(const Smem<T>& sm) {
  const int* r = reinterpret_cast<const int*>(sm.at(T::kRangeOffset));
  return {r[0], r[1], r[2]};
}

/// The CTA's share of the work items, written to the range slot (item_range reads it); all
/// threads call it, before the roles split, and it ends with __syncthreads.
/// The G CTAs form G / H sets of H = num_head_groups CTAs (one set when G < H, which then walks
/// all head groups itself). Set k takes a contiguous range of query tokens, and CTA g of the set
/// head group g of each: the H CTAs of a set read the same key rows at about the same time, so
/// all but the first find them in L2 (a 128-head token's two items on one CTA one after the
/// other made prefill-h128 / v32 4-6% slower than two CTAs at once: the rows were evicted in
/// between). Without topk_length every item weighs the same and the CTAs take them round-robin
/// (items cta, cta + G, ...; when H divides G, the H CTAs of a set then also walk the same
/// tokens together). With topk_length (V4 engines pass ~U[0, topk]) token t weighs
/// kChunkCost per 64-key chunk plus p.item_cost (its Q copy, its epilogue and the pipeline's
/// restart): every CTA sums all weights (the threads' contiguous slices of tokens, then a warp's
/// scan of the slice sums, in the first stage's key tile, which no copy has touched yet), and
/// token t goes to set floor(W_t S / W), W_t the weight before t, W the total: each set gets
/// W / S within one token's weight. A CTA's items depend only on topk_length and G, and every
/// item is computed the same way whichever CTA takes it, so results never change.
template <class T>
__device__ void prefill_item_range(const Smem<T>& sm, const PrefillParams& p) {
  constexpr int64_t kChunkCost = 4;  // p.item_cost's unit is a quarter of a chunk
  const int64_t grid = gridDim.x, cta = blockIdx.x, groups = p.num_head_groups, s_q = p.s_q;
  const int64_t sets = grid >= groups ? grid / groups : 1;
  const int64_t set = grid >= groups ? cta / groups : 0;
  int* range = reinterpret_cast<int*>(sm.at(T::kRangeOffset));
  const bool walk_groups = grid < groups;  // one CTA: every head group of its tokens
  auto publish = [&](int64_t first_token, int64_t end_token) {
    if (threadIdx.x != 0) return;
    if (set >= sets) first_token = end_token = 0;  // the CTAs past the last whole set: no work
    range[0] = static_cast<int>(first_token * groups + (walk_groups ? 0 : cta % groups));
    range[1] = static_cast<int>(end_token * groups);
    range[2] = walk_groups ? 1 : static_cast<int>(groups);
  };
  if (p.topk_length == nullptr) {
    // NOTE: items cta, cta + G, ...: measured against contiguous token ranges per set, this
    // order was 0.4-1.6% faster on prefill-h64 / h128 / v32 (PERF.md).
    if (threadIdx.x == 0) {
      range[0] = static_cast<int>(cta);
      range[1] = static_cast<int>(s_q * groups);
      range[2] = static_cast<int>(grid);
    }
    __syncthreads();
    return;
  }
  // [kThreads] slice sums, then exclusive prefixes; [kThreads] the total W; then the bounds
  int64_t* sums = reinterpret_cast<int64_t*>(sm.k(0));
  unsigned long long* bounds = reinterpret_cast<unsigned long long*>(sums + T::kThreads + 1);
  const int t = threadIdx.x;
  const int64_t lo = t * s_q / T::kThreads, hi = (t + 1) * s_q / T::kThreads;
  auto weight = [&](int64_t token) {
    const int len = portable::clamp_topk_length(p.topk_length, static_cast<int>(token), p.topk);
    return kChunkCost * static_cast<int64_t>((len + T::kBlockN - 1) / T::kBlockN) + p.item_cost;
  };
  int64_t mine = 0;
#pragma unroll 4
  for (int64_t j = lo; j < hi; ++j) mine += weight(j);
  sums[t] = mine;
  if (t == 0) {
    bounds[0] = s_q;  // the first token owned by a set >= set (begin), >= set + 1 (end)
    bounds[1] = s_q;
  }
  __syncthreads();
  if (t < 32) {  // warp 0: the exclusive scan of the slice sums, kThreads / 32 a lane
    constexpr int kPer = T::kThreads / 32;
    int64_t v[kPer], run = 0;
#pragma unroll
    for (int k = 0; k < kPer; ++k) {
      v[k] = sums[t * kPer + k];
      run += v[k];
    }
    int64_t incl = run;
#pragma unroll
    for (int d = 1; d < 32; d *= 2) {
      const int64_t up = __shfl_up_sync(0xffffffffu, incl, d);
      if (t >= d) incl += up;
    }
    run = incl - run;
#pragma unroll
    for (int k = 0; k < kPer; ++k) {
      sums[t * kPer + k] = run;
      run += v[k];
    }
    if (t == 31) sums[T::kThreads] = incl;
  }
  __syncthreads();
  const int64_t total = sums[T::kThreads];
  // NOTE: owner(t) = floor(W_t S / W) never decreases with t, so each slice holds at most one
  // candidate for each bound: its first token owned by a set >= set (>= set + 1).
  int64_t before = sums[t];
  bool want_begin = true;
  for (int64_t j = lo; j < hi; ++j) {
    const int64_t owner = before * sets / total;
    if (want_begin && owner >= set) {
      atomicMin(bounds, static_cast<unsigned long long>(j));
      want_begin = false;
    }
    if (owner > set) {
      atomicMin(bounds + 1, static_cast<unsigned long long>(j));
      break;
    }
    before += weight(j);
  }
  __syncthreads();
  publish(static_cast<int64_t>(bounds[0]), static_cast<int64_t>(bounds[1]));
  __syncthreads();  // the range is published and the scratch read before the copies reuse the tile
}

/// Producer thread t (0..127): the Q rows of item (i, g) into the swizzled Q tile, 16-byte
/// piece t % 8 of each 64-column block of rows t / 8 + 16 k. cp.async (L2 evict-first) where
/// q's rows are 16-byte aligned; else loads and shared stores, fenced for the wgmma reads
/// (async proxy).
template <class T>
__device__ __forceinline__ void produce_prefill_q(const Smem<T>& sm, const PrefillParams& p, int i, int g, int t) {
  const uint16_t* q_rows = p.q + static_cast<int64_t>(i) * p.q_stride_s + static_cast<int64_t>(g) * T::kRows * p.q_stride_h;
  const int u = t % 8;
  const uint32_t tile = ptx::smem_addr(sm.q());
  constexpr int kRowsPerPass = T::kProducerThreads / 8;  // 16
#pragma unroll
  for (int k = 0; k < T::kRows / kRowsPerPass; ++k) {
    const int row = t / 8 + k * kRowsPerPass;
    const uint16_t* src = q_rows + row * p.q_stride_h + u * 8;
    const uint32_t dst = tile + swizzle_offset(row, u);
    if (p.q_aligned16) {
      // NOTE: Q is read once: evicted first from L2, which keeps the key rows (read by every
      // token that selects them) resident. (The same for out: streaming stores.)
      const uint64_t policy = ptx::l2_policy_evict_first();
#pragma unroll
      for (int cb = 0; cb < T::kColBlocks; ++cb) ptx::cp_async_16_hint(dst + cb * T::kBlockBytes, src + cb * 64, policy);
    } else {
#pragma unroll
      for (int cb = 0; cb < T::kColBlocks; ++cb) {
        *reinterpret_cast<uint4*>(sm.q() + cb * T::kBlockBytes + swizzle_offset(row, u)) =
            load_bf16x8(src + cb * 64, false);
      }
    }
  }
  if (!p.q_aligned16) ptx::fence_proxy_async_smem();  // generic stores -> wgmma operand reads
}

/// kTma, one thread: the Q tile of work item w by TMA, a box per 64-column block (L2
/// evict-first: Q is read once), completing on q_full (which expects this arrival alone).
/// NOTE: the item's coordinates are computed again here: the caller's, held across the chunk
/// loop, made the 64-register producer spill.
template <class T>
__device__ __forceinline__ void load_q_tma(const Smem<T>& sm, const PrefillParams& p, const PrefillMaps& maps, int w) {
  const PrefillItem it = prefill_item<T>(p, w);
  const uint32_t bar = q_full_bar(sm);
  const uint32_t dst = ptx::smem_addr(sm.q());
  const uint64_t policy = ptx::l2_policy_evict_first();
  ptx::mbarrier_arrive_expect_tx(bar, T::kTileBytes);
#pragma unroll
  for (int cb = 0; cb < T::kColBlocks; ++cb) {
    ptx::tma_load_3d(dst + cb * T::kBlockBytes, &maps.q, cb * 64, it.g * T::kRows, it.i, bar, policy);
  }
}

/// Producer warpgroup: for every chunk of every work item of this CTA, wait until its stage is
/// free, then each thread issues one 16-byte cp.async per 64-column block for each of its
/// group's 4 keys (an invalid index, < 0 or >= s_kv, or a position past topk_length:
/// zero-filled, its row never read), writes the validity flags, and arrives twice on the
/// stage's full barrier: now (the flags) and when its copies land
/// (cp.async.mbarrier.arrive.noinc). After an item's first chunk it copies the item's Q once
/// WG 0 released the previous one (q_empty), arriving on q_full the same two ways. The indices
/// of a chunk are loaded two chunks ahead. Items without keys are skipped (no Q, no chunks).
/// kTma: the producer's first thread alone waits for q_empty and loads Q by TMA (load_q_tma);
/// the others go on to the next tile.
template <class T, bool kTma>
__device__ void produce_prefill(const Smem<T>& sm, const PrefillParams& p, const PrefillMaps& maps) {
  constexpr int kGroupThreads = T::kThreadsPerKeyGroup;
  constexpr int kKeys = T::kKeysPerGroup;
  const int t = static_cast<int>(threadIdx.x) - T::kConsumerThreads;
  const int grp = t / kGroupThreads, u = t % kGroupThreads;
  // NOTE: 8 threads read the 128 contiguous bytes of one 64-column block of a row together.
  const uint16_t* kv = p.kv + u * 8;

  // NOTE: the staggered start (prefill_stagger): the consumers wait for the producers' first
  // copies. Here rather than before the roles split: there it made ptxas spill 32 bytes.
  if (p.stagger_cycles > 0 && static_cast<int>(blockIdx.x) >= p.stagger_from) {
    const uint32_t set = blockIdx.x / static_cast<uint32_t>(p.num_head_groups);
    const uint32_t delay = ((set * 5u) & 15u) * static_cast<uint32_t>(p.stagger_cycles) / 16u;
    const uint32_t start = static_cast<uint32_t>(clock());
    while (static_cast<uint32_t>(clock()) - start < delay) __nanosleep(256);
  }
  PipelineState<T::kStages> ps;
  uint32_t q_fills = 0;
  // NOTE: the range's end is read from shared memory at every item (volatile): held in a
  // register across the loop it made the 64-register producer spill.
  const volatile int* range = reinterpret_cast<const volatile int*>(sm.at(T::kRangeOffset));
  for (int w = range[0]; w < range[1]; w += range[2]) {
    const PrefillItem it = prefill_item<T>(p, w);
    if (it.num_chunks == 0) continue;
    const int32_t* idx_row = p.indices + it.i * p.idx_stride;
    // NOTE: the indices of chunks c + 1 and c + 2 are in flight while chunk c is copied (one
    // chunk ahead left the producer waiting on index loads; two ahead: 0-3% faster, PERF.md).
    int32_t cur[kKeys], nxt[kKeys], after[kKeys];
#pragma unroll
    for (int k = 0; k < kKeys; ++k) {
      cur[k] = portable::load_slot(idx_row, it.len, k * T::kKeyGroups + grp);
      nxt[k] = portable::load_slot(idx_row, it.len, T::kBlockN + k * T::kKeyGroups + grp);
      after[k] = portable::load_slot(idx_row, it.len, 2 * T::kBlockN + k * T::kKeyGroups + grp);
    }
    for (int c = 0; c < it.num_chunks; ++c) {
      ptx::mbarrier_wait(sm.empty_bar(ps.stage), ps.phase ^ 1u);
      const uint32_t tile = ptx::smem_addr(sm.k(ps.stage));
#pragma unroll
      for (int k = 0; k < kKeys; ++k) {
        const int key = k * T::kKeyGroups + grp;
        const bool valid = cur[k] >= 0 && static_cast<int64_t>(cur[k]) < p.s_kv;
        const uint16_t* src = valid ? kv + static_cast<int64_t>(cur[k]) * p.kv_stride : p.kv;
        const uint32_t dst = tile + key * 128 + ((u ^ (key % 8)) << 4);
#pragma unroll
        for (int b = 0; b < T::kColBlocks; ++b) {
          ptx::cp_async_16_zfill(dst + b * T::kBlockBytes, src + b * 64, valid ? 16u : 0u);
        }
        if (u == 0) sm.valid(ps.stage)[key] = valid;
      }
      ptx::mbarrier_arrive(sm.full_bar(ps.stage));
      ptx::cp_async_mbarrier_arrive_noinc(sm.full_bar(ps.stage));
      ps.advance();
      // NOTE: after the item's first key tile: that tile's stage frees up about when WG 0
      // finishes the previous item's last S (which frees Q), and the consumers need both.
      if (kTma && c == 0 && t == 0) {
        // NOTE: one thread's tensor copies instead of 32 cp.async from each thread: 0.971-0.994
        // of the time before on every prefill preset (PERF.md, twenty-seventh session).
        ptx::mbarrier_wait(q_empty_bar(sm), (q_fills & 1u) ^ 1u);
        load_q_tma<T>(sm, p, maps, w);
        ++q_fills;
      }
      if (!kTma && c == 0) {
        ptx::mbarrier_wait(q_empty_bar(sm), (q_fills & 1u) ^ 1u);
        produce_prefill_q<T>(sm, p, it.i, it.g, t);
        ptx::mbarrier_arrive(q_full_bar(sm));
        ptx::cp_async_mbarrier_arrive_noinc(q_full_bar(sm));
        ++q_fills;
      }
#pragma unroll
      for (int k = 0; k < kKeys; ++k) {
        cur[k] = nxt[k];
        nxt[k] = after[k];
        after[k] = portable::load_slot(idx_row, it.len, (c + 3) * T::kBlockN + k * T::kKeyGroups + grp);
      }
    }
  }
  ptx::cp_async_wait_all();  // no copy outlives its thread
}

/// The row statistics' handover barriers (PrefillTraits::kStatsBarOffset): WG 0 published an
/// item's row maxima and sums; WG 1 has read them.
template <class T>
__device__ __forceinline__ uint32_t stats_full_bar(const Smem<T>& sm) {
  return ptx::smem_addr(sm.at(T::kStatsBarOffset));
}
template <class T>
__device__ __forceinline__ uint32_t stats_empty_bar(const Smem<T>& sm) {
  return ptx::smem_addr(sm.at(T::kStatsBarOffset + 8));
}

/// After the loop of this CTA's n-th work item: WG 0 sums its lanes' row sums and hands its row
/// maxima and sums to WG 1 through shared memory without waiting for WG 1, so it runs on into
/// the next item while WG 1 finishes its last P V (it waits only before overwriting the
/// statistics WG 1 has not read yet, an item later); WG 1 waits for them. On return both hold
/// the totals of rows r0, r0 + 8.
template <class T, int kWg>
__device__ __forceinline__ void hand_row_stats(const Smem<T>& sm, float (&m)[2], float (&l)[2], uint32_t n) {
  const int lane = threadIdx.x % 32;
  const int r0 = (threadIdx.x % 128) / 32 * 16 + lane / 4;
  if constexpr (kWg == 0) {
#pragma unroll
    for (int r = 0; r < 2; ++r) {
      l[r] += __shfl_xor_sync(0xffffffffu, l[r], 1);
      l[r] += __shfl_xor_sync(0xffffffffu, l[r], 2);
    }
    if (n > 0) ptx::mbarrier_wait(stats_empty_bar(sm), (n - 1u) & 1u);
    if (lane % 4 == 0) {
#pragma unroll
      for (int r = 0; r < 2; ++r) {
        sm.red_max(0)[r0 + 8 * r] = m[r];
        sm.red_sum(0)[r0 + 8 * r] = l[r];
      }
    }
    ptx::mbarrier_arrive(stats_full_bar(sm));
  } else {
    ptx::mbarrier_wait(stats_full_bar(sm), n & 1u);
#pragma unroll
    for (int r = 0; r < 2; ++r) {
      m[r] = sm.red_max(0)[r0 + 8 * r];
      l[r] = sm.red_sum(0)[r0 + 8 * r];
    }
    ptx::mbarrier_arrive(stats_empty_bar(sm));
  }
}

/// The outputs of work item `it` (this CTA's n-th) from a consumer warpgroup's unnormalised O
/// and WG 0's row maxima m and partial sums l (consume_chunks): out (its 256 columns), and from
/// WG 0 max_logits and lse.
template <class T, int kWg>
__device__ __forceinline__ void prefill_epilogue(const Smem<T>& sm, const PrefillParams& p, const PrefillItem& it,
                                                 uint32_t n, const float (&o)[T::kDimsPerConsumer / 2],
                                                 float (&m)[2], float (&l)[2], const float (&sink)[2]) {
  constexpr int wg = kWg;
  const int lane = threadIdx.x % 32;
  const int r0 = (threadIdx.x % 128) / 32 * 16 + lane / 4;
  const int i = it.i, g = it.g;
  hand_row_stats<T, kWg>(sm, m, l, n);
  float factor[2];
  bool empty[2];
#pragma unroll
  for (int r = 0; r < 2; ++r) {
    const int row = r0 + 8 * r;
    const float l_total = l[r];
    // NOTE: l_total is exactly 0 iff no valid key was seen; NaN in referenced keys gives a
    // NaN sum, which must propagate rather than pass for an empty row.
    empty[r] = l_total == 0.0f;
    const float lse = (m[r] + log2f(l_total)) * kLn2;
    factor[r] = softmax_out_factor(l_total, lse, p.attn_sink != nullptr, sink[r]);
    if (wg == 0 && lane % 4 == 0) {
      const int64_t out_row = static_cast<int64_t>(i) * p.h_q + g * T::kRows + row;
      p.lse[out_row] = empty[r] ? INFINITY : lse;
      p.max_logits[out_row] = empty[r] ? -INFINITY : m[r] * kLn2;
    }
  }
  // O row `row`, columns nb * 8 + 2 (lane % 4) + {0, 1} of this warpgroup, normalised, as bf16x2.
  // NOTE: select, never multiply: an empty row's factor is inf or NaN.
  auto out_pair = [&](int r, int nb) {
    return empty[r] ? 0u : pack_bf16x2(o[4 * nb + 2 * r] * factor[r], o[4 * nb + 2 * r + 1] * factor[r]);
  };
  uint16_t* out_rows = p.out + (static_cast<int64_t>(i) * p.h_q + g * T::kRows) * T::kDV;  // 64 rows
#pragma unroll
  for (int r = 0; r < 2; ++r) {
    uint16_t* dst = out_rows + (r0 + 8 * r) * T::kDV + wg * T::kDimsPerConsumer;
    if (p.out_aligned16) {
      // NOTE: no shared memory: the key tiles carry the next item's keys by now.
      store_row_bf16_quads<T::kDimsPerConsumer / 8>(dst, [&](int nb) { return out_pair(r, nb); });
    } else {
      dst += 2 * (lane % 4);
#pragma unroll
      for (int nb = 0; nb < T::kDimsPerConsumer / 8; ++nb) {
        const uint32_t v = out_pair(r, nb);
        if (p.out_aligned4) {
          *reinterpret_cast<uint32_t*>(dst + nb * 8) = v;
        } else {
          dst[nb * 8] = static_cast<uint16_t>(v & 0xffffu);
          dst[nb * 8 + 1] = static_cast<uint16_t>(v >> 16);
        }
      }
    }
  }
}

/// Consumer warpgroup kWg (0 or 1): for every work item of this CTA, the main loop over its
/// chunks (WG 0 waits for its Q tile first), then out (its 256 columns), max_logits and lse.
template <class T, int kWg, bool kTma>
__device__ void prefill_consume(const Smem<T>& sm, const PrefillParams& p) {
  const int lane = threadIdx.x % 32;
  const int r0 = (threadIdx.x % 128) / 32 * 16 + lane / 4;  // rows r0 and r0 + 8 of this thread

  ConsumerPipe<T::kStages> pipe;
  uint32_t q_uses = 0;
  uint32_t n = 0;  // work items of this CTA so far
  const ItemRange items = item_range(sm);
  for (int w = items.begin; w < items.end; w += items.step) {
    const PrefillItem it = prefill_item<T>(p, w);
    float o[T::kDimsPerConsumer / 2];
#pragma unroll
    for (int e = 0; e < T::kDimsPerConsumer / 2; ++e) o[e] = 0.0f;
    float m[2] = {-INFINITY, -INFINITY};
    float l[2] = {0.0f, 0.0f};
    // NOTE: the sink of this thread's two heads, loaded now so the epilogue does not wait on it.
    float sink[2] = {0.0f, 0.0f};
    if (p.attn_sink != nullptr) {
      sink[0] = __ldg(p.attn_sink + it.g * T::kRows + r0);
      sink[1] = __ldg(p.attn_sink + it.g * T::kRows + r0 + 8);
    }
    if (kWg == 0 && it.num_chunks > 0) {
      ptx::mbarrier_wait(q_full_bar(sm), q_uses & 1u);
      if constexpr (!kTma) ptx::fence_proxy_async_smem();  // cp.async writes -> wgmma operand reads
      ++q_uses;
    }
    consume_chunks<T, kWg, true, true, T::kPRegs, T::kQRegBlocks>(sm, p.scale_log2, it.num_chunks, o, m, l, pipe, q_empty_bar(sm));
    prefill_epilogue<T, kWg>(sm, p, it, n++, o, m, l, sink);
  }
}

/// Persistent grid: min(work items, the launcher's CTA count) CTAs of 384 threads; work item w
/// = (token w / num_head_groups, head group w % num_head_groups), taken round-robin, or with
/// topk_length by contiguous token ranges of equal key count (prefill_item_range). kTma (q
/// TMA-compatible): the Q tiles come by tensor copies through `maps`; else by the producer
/// threads' cp.async (or loads, for unaligned rows).
template <class T, bool kTma>
__global__ void __launch_bounds__(T::kThreads, 1)
    sparse_prefill_sm90_kernel(const __grid_constant__ PrefillParams p, const __grid_constant__ PrefillMaps maps) {
  const Smem<T> sm;

  if (threadIdx.x == 0) {
    init_pipeline_barriers<T>(sm, T::kFullArrivals);
    ptx::mbarrier_init(q_full_bar(sm), kTma ? 1 : T::kQFullArrivals);  // kTma: the loader's arrival and bytes
    ptx::mbarrier_init(q_empty_bar(sm), 128);  // WG 0's threads
    ptx::mbarrier_init(stats_full_bar(sm), 128);
    ptx::mbarrier_init(stats_empty_bar(sm), 128);
    ptx::fence_mbarrier_init();
  }
  prefill_item_range<T>(sm, p);  // ends with __syncthreads

  // NOTE: the warpgroup index through a shuffle: the role branch is then warp-uniform.
  const int warpgroup = __shfl_sync(0xffffffffu, static_cast<int>(threadIdx.x) / 128, 0);
  if (warpgroup >= T::kConsumerWarpgroups) {
    ptx::setmaxnreg_dec<T::kProducerRegs>();
    produce_prefill<T, kTma>(sm, p, maps);
    return;
  }
  // NOTE: one call per role, each under its own register budget.
  if (warpgroup == 0) {
    set_max_regs<T::kLaunchRegs, T::kSoftmaxRegs>();
    prefill_consume<T, 0, kTma>(sm, p);
  } else {
    set_max_regs<T::kLaunchRegs, T::kPvRegs>();
    prefill_consume<T, 1, kTma>(sm, p);
  }
}

}  // namespace model1::cuda::sm90
