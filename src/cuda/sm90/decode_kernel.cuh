// model1 CUDA Hopper (sm_90a) sparse decode kernel: warp-specialized (two producer
// warpgroups gather and dequantize, two consumer warpgroups run wgmma), online softmax in base
// 2, the same split-KV schedule, partial layout, epilogue and combine as the portable kernels
// (MODEL1.md section 3). Compiled only for sm_90a.
//
// Per chunk of 64 candidate keys (main cache first, then the extra cache):
//   producers: wait until stage s of the key ring is free; load each key's bytes from the
//     paged cache (bounds-checked: an invalid slot is never read, its row is stored as zeros
//     and marked invalid), dequantize FP8 exactly to bf16, store into the 128-byte-swizzle
//     tile; fence for the async proxy; arrive on full[s].
//   consumers: wait full[s]; WG 0 computes S = Q K^T for all 64 keys (wgmma, K-major
//     operands), masks invalid keys, runs the online softmax, hands P (bf16) and the rescale
//     factors to WG 1 through shared memory (p_full / p_empty) and runs O[:, 0..255] += P V
//     with P from registers; WG 1 runs O[:, 256..511] += P V with P from shared memory while
//     WG 0 computes the next chunk's S (V = the key tile read N-major); both arrive on
//     empty[s] (consume_chunks).
// At 128 heads the two head-group CTAs of a (request, token, split) form a 2-CTA cluster
// (DecodeTraits kCluster 2): each converts half of every chunk's keys and the copy engine
// copies them into the partner's tile (producer_publish, wait_stage_free).
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <cstdint>

#include "cuda/common/decode_epilogue.cuh"
#include "cuda/common/decode_params.h"
#include "cuda/common/numerics.cuh"
#include "cuda/portable/decode_kernel.cuh"
#include "cuda/ptx/wgmma.cuh"
#include "cuda/sm90/decode_traits.cuh"

// What a decode CTA requests into L2 before it sets up its barriers (prefetch_cta_start): 0
// nothing, 1 its Q rows and the first key indices of its split, 2 its Q rows only.
#ifndef MODEL1_DECODE_START_PREFETCH
#define MODEL1_DECODE_START_PREFETCH 1
#endif
// 1: a 64-head CTA's producers prefetch its second chunk's rows into L2 once the first chunk's
// first ring round is converted, not at their start (produce_bulk); 0: at their start.
#ifndef MODEL1_DECODE_DEFER_FIRST_PREFETCH
#define MODEL1_DECODE_DEFER_FIRST_PREFETCH 1
#endif

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
  /// Decode: the CTA's kRows attention sinks, loaded in the prologue (the red_sum(1) slot).
  __device__ float* sinks() const { return red_sum(1); }
  __device__ uint8_t* ring_slot(int warp, int slot) const {
    return at(T::Ring::kOffset + (warp * T::Ring::kSlots + slot) * T::Ring::kSlotBytes);
  }
  __device__ uint8_t* scale_buf(int warp) const {
    return at(T::Ring::kScaleBufOffset + warp * 8 * T::kKeysPerProducerWarp);
  }
  __device__ uint32_t ring_bar(int warp, int slot) const {
    return ptx::smem_addr(at(T::Ring::kBarOffset + (warp * T::Ring::kSlots + slot) * 8));
  }
  __device__ uint32_t full_bar(int stage) const { return ptx::smem_addr(at(T::kBarOffset + stage * 8)); }
  __device__ uint32_t empty_bar(int stage) const {
    return ptx::smem_addr(at(T::kBarOffset + (T::kStages + stage) * 8));
  }
  /// Cluster only (T::kPairBarOffset): stage `stage` released by the consumers of both CTAs;
  /// this CTA's consumers done with their chunks; the partner's consumers done with theirs.
  __device__ uint32_t pair_free_bar(int stage) const { return ptx::smem_addr(at(T::kPairBarOffset + stage * 8)); }
  __device__ uint32_t done_bar() const { return ptx::smem_addr(at(T::kPairBarOffset + T::kStages * 8)); }
  __device__ uint32_t partner_done_bar() const { return ptx::smem_addr(at(T::kPairBarOffset + T::kStages * 8 + 8)); }
  /// P (and the rescale factors) of a chunk written by WG 0 / read by WG 1's P V.
  __device__ uint32_t p_full_bar() const { return ptx::smem_addr(at(T::kBarOffset + 2 * T::kStages * 8)); }
  __device__ uint32_t p_empty_bar() const { return ptx::smem_addr(at(T::kBarOffset + (2 * T::kStages + 1) * 8)); }
};

/// By one thread, before the CTA's first barrier: the key-tile ring's full / empty barriers
/// (`full_arrivals` producer arrivals complete a fill, every consumer thread's one a release)
/// and the P handover between the consumer warpgroups (one warpgroup's threads each way).
/// The caller adds its own barriers, then fence_mbarrier_init.
template <class T>
__device__ __forceinline__ void init_pipeline_barriers(const Smem<T>& sm, uint32_t full_arrivals) {
  for (int s = 0; s < T::kStages; ++s) {
    ptx::mbarrier_init(sm.full_bar(s), full_arrivals);
    ptx::mbarrier_init(sm.empty_bar(s), T::kConsumerThreads);
  }
  ptx::mbarrier_init(sm.p_full_bar(), 128);
  ptx::mbarrier_init(sm.p_empty_bar(), 128);
}

/// (request i, token j, split, head group g) of this CTA (blockIdx order of the grid, requests
/// through p.request_order).
struct CtaCoord {
  int i, j, split, g;
};
/// NOTE: 32-bit arithmetic (the grid has fewer than 2^31 CTAs: launch_decode_grid checks it);
/// 64-bit divisions cost about a hundred instructions each at every CTA's start.
__device__ __forceinline__ CtaCoord cta_coord(const DecodeParams& p) {
  // NOTE: launched after the request-order kernel as a programmatic dependent: its order is
  // complete and visible only after this wait (a no-op once passed, and without the launch
  // attribute).
  if (p.request_order != nullptr) ptx::griddep_wait();
  uint32_t bid = blockIdx.x;
  CtaCoord c;
  c.g = static_cast<int>(bid % static_cast<uint32_t>(p.num_head_groups));
  bid /= static_cast<uint32_t>(p.num_head_groups);
  c.split = static_cast<int>(bid % static_cast<uint32_t>(p.max_splits));
  bid /= static_cast<uint32_t>(p.max_splits);
  c.j = static_cast<int>(bid % static_cast<uint32_t>(p.s_q));
  c.i = ordered_request(p, static_cast<int>(bid / static_cast<uint32_t>(p.s_q)));
  return c;
}

// ---- the key-tile ring of a 2-CTA cluster (DecodeTraits kCluster 2) -------------------------

/// The other CTA of this CTA's 2-CTA cluster.
__device__ __forceinline__ uint32_t partner_rank() { return ptx::cluster_ctarank() ^ 1u; }

/// First tile row of producer warp `pw`'s keys: pw * K alone; in a cluster, CTA rank r converts
/// rows 32 r .. 32 r + 31.
template <class T>
__device__ __forceinline__ int producer_first_row(int pw) {
  const int rank = T::kCluster == 2 ? static_cast<int>(ptx::cluster_ctarank()) : 0;
  return rank * T::kKeysPerCta + pw * T::kKeysPerProducerWarp;
}

/// The key (tile row) a producer lane fetches candidates for: lanes 0..K-1 the warp's keys (K =
/// kKeysPerProducerWarp; higher lanes repeat them). In a cluster, lanes K..2K-1 take the rows
/// the partner's warp of the same index converts: this CTA writes their validity flags itself
/// (the consumers mask S with them), from the same bounds check, instead of receiving them.
template <class T>
__device__ __forceinline__ int producer_lane_key(int first_row, int lane) {
  constexpr int kKeys = T::kKeysPerProducerWarp;
  const bool partner = T::kCluster == 2 && (lane / kKeys) % 2 == 1;
  return (partner ? first_row ^ T::kKeysPerCta : first_row) + lane % kKeys;
}

/// A producer waits until stage `stage` is free (phase parity `parity` of its empty barrier;
/// `first_use`: the stage's first chunk of the split, free from the start). In a cluster the
/// partner's producers copy into this CTA's tile too, so the stage is free once the consumers of
/// both CTAs released it: each producer warp, once this CTA's consumers released it, forwards
/// that (lane 0) to the pair barriers of both CTAs, and waits on its own (every producer warp
/// of both CTAs arrives once per reuse of the stage). NOTE: the consumers do not arrive on the
/// partner's barrier themselves: a remote arrival in the consumer warpgroups made ptxas
/// serialize their wgmma (a compiler-inserted wait in a divergent path).
template <class T>
__device__ __forceinline__ void wait_stage_free(const Smem<T>& sm, int stage, uint32_t parity, bool first_use) {
  ptx::mbarrier_wait(sm.empty_bar(stage), parity);
  if constexpr (T::kCluster == 2) {
    if (!first_use) {
      const uint32_t pair = sm.pair_free_bar(stage);
      if (threadIdx.x % 32 == 0) {
        ptx::mbarrier_arrive(pair);
        // NOTE: CTA-scope release and acquire: the arrival orders no data, only the consumers'
        // reads, complete before their release (a release / acquire at cluster scope cost a
        // fence and an L1 invalidation per chunk on this path: ERRBAR, CCTL.IVALL).
        ptx::mbarrier_arrive_remote(ptx::mapa_shared(pair, partner_rank()));
      }
      ptx::mbarrier_wait(pair, parity);
    }
  }
}

/// A producer warp is done with its rows `first_row` .. of stage `stage` (generic stores, every
/// lane fenced for the async proxy by the caller). Alone: every lane arrives on the full
/// barrier. In a cluster, lane 0 also hands the rows to the copy engine, which copies them into
/// the partner's tile (one bulk copy per column block) and completes their bytes on the
/// partner's full barrier; and lane 0's arrival expects the bytes the partner's warp of the
/// same index sends here.
template <class T>
__device__ __forceinline__ void producer_publish(const Smem<T>& sm, int stage, int first_row) {
  const uint32_t full = sm.full_bar(stage);
  if constexpr (T::kCluster == 2) {
    __syncwarp();  // every lane's stores (and fences) precede the copies
    if (threadIdx.x % 32 == 0) {
      const uint32_t peer = partner_rank();
      const uint32_t src = ptx::smem_addr(sm.k(stage)) + static_cast<uint32_t>(first_row) * 128;
      const uint32_t peer_full = ptx::mapa_shared(full, peer);
#pragma unroll
      for (int cb = 0; cb < T::kColBlocks; ++cb) {
        const uint32_t a = src + cb * T::kBlockBytes;
        ptx::cp_async_bulk_s2cluster(ptx::mapa_shared(a, peer), a, T::kKeysPerProducerWarp * 128, peer_full);
      }
      ptx::mbarrier_arrive_expect_tx(full, T::kPartnerBytesPerWarp);
    } else {
      ptx::mbarrier_arrive(full);
    }
  } else {
    ptx::mbarrier_arrive(full);
  }
}

/// Q rows first_row .. first_row + 63 of one token (`q_rows`: its first head, `stride_h`
/// elements between heads, rows 16-byte aligned: `supports` routes other q views to the portable
/// kernels) -> the swizzled Q tile, by the consumer warpgroups while the producers start
/// gathering: every 16-byte piece by cp.async (L2 evict-first: Q is read once), all in flight at
/// once, waited for here; the caller fences and syncs.
template <class T>
__device__ __forceinline__ void load_q_rows(const Smem<T>& sm, const uint16_t* q_rows, int64_t stride_h,
                                            int first_row) {
  constexpr int kChunksPerRow = T::kDQk / 8;  // 16-byte chunks
  constexpr int kItems = T::kRows * kChunksPerRow;
  static_assert(kItems % T::kConsumerThreads == 0, "whole Q items per consumer thread");
  constexpr int kPerThread = kItems / T::kConsumerThreads;  // 16 or 18
  const uint64_t policy = ptx::l2_policy_evict_first();
  const uint32_t tile = ptx::smem_addr(sm.q());
#pragma unroll
  for (int u = 0; u < kPerThread; ++u) {
    const int item = threadIdx.x + u * T::kConsumerThreads;
    const int r = item / kChunksPerRow, c = item % kChunksPerRow;
    ptx::cp_async_16_hint(tile + (c / 8) * T::kBlockBytes + swizzle_offset(r, c % 8),
                          q_rows + (first_row + r) * stride_h + c * 8, policy);
  }
  ptx::cp_async_wait_all();
}

/// The first head's q row of (request i, token j).
__device__ __forceinline__ const uint16_t* token_q(const DecodeParams& p, int i, int j) {
  return p.q + i * p.q_stride_b + j * p.q_stride_s;
}

/// Decode: the 64 heads of head group g of (request i, token j).
template <class T>
__device__ void load_q(const Smem<T>& sm, const DecodeParams& p, int i, int j, int g) {
  load_q_rows<T>(sm, token_q(p, i, j), p.q_stride_h, g * T::kRows);
}

/// 16 e4m3 codes (bytes of `w`, low first) -> 8 bf16x2 words: each pair of codes goes e4m3 ->
/// f16 (the hardware conversion, exact for every code: zero, subnormal, NaN) -> two floats
/// (exact), which `pack` turns into one bf16x2 word with the scale applied.
template <class Pack>
__device__ __forceinline__ void dequant16_with(const uint4& w, Pack&& pack, uint32_t (&out)[8]) {
  const uint32_t words[4] = {w.x, w.y, w.z, w.w};
#pragma unroll
  for (int i = 0; i < 4; ++i) {
#pragma unroll
    for (int half = 0; half < 2; ++half) {
      const uint32_t h2 = half == 0 ? ptx::cvt_e4m3x2_f16x2(words[i]) : ptx::cvt_e4m3x2_f16x2_hi(words[i]);
      out[2 * i + half] = pack(__half22float2(*reinterpret_cast<const __half2*>(&h2)));
    }
  }
}

/// 16 e4m3 codes times a float `scale` -> 8 bf16x2 words, without branches: the scale is applied
/// in float, then rounded to bf16 (exact when the scale is a power of two: the product has at
/// most 4 significant bits).
__device__ __forceinline__ void dequant16(const uint4& w, float scale, uint32_t (&out)[8]) {
  dequant16_with(w, [scale](float2 f) { return pack_bf16x2(f.x * scale, f.y * scale); }, out);
}

/// 16 e4m3 codes times a UE8M0 scale (`scale2`: 2^(e - 127) as bf16 in both lanes, the bits
/// of ue8m0_to_float(e) >> 16) -> 8 bf16x2 words, exactly: the codes go to bf16 unscaled (every
/// step exact), then one bf16 multiply by the power of two, whose single rounding is the
/// reference's rounding of the exact float product. One instruction per two values fewer than
/// dequant16 (a bf16x2 multiply instead of two float ones); V3.2's float scales need not be
/// powers of two, so they keep dequant16.
__device__ __forceinline__ void dequant16_pow2(const uint4& w, uint32_t scale2, uint32_t (&out)[8]) {
  // NOTE: an e4m3 value has at most 4 significant bits, so its float's low 16 bits are zero and
  // the bf16 is the float's upper half: one byte permute instead of an f32 -> bf16x2 conversion
  // (F2FP), same bits, 0.5-1% faster (the producers' conversion instructions slow the consumers
  // beside them, PERF.md). NaN codes stay NaN (the quiet bit is in the upper half).
  dequant16_with(w,
                 [scale2](float2 f) {
                   return ptx::mul_bf16x2(__byte_perm(__float_as_uint(f.x), __float_as_uint(f.y), 0x7632), scale2);
                 },
                 out);
}

/// One request-token's candidate lists (main cache first, then the extra cache).
struct KeyLists {
  const int32_t* main_idx;
  const int32_t* extra_idx;  // null without an extra cache
  int main_keys, num_keys;   // clamped lengths
};
/// The candidate lists of (request i, token j), with their clamped lengths.
__device__ __forceinline__ KeyLists key_lists(const DecodeParams& p, int i, int j, int main_keys, int num_keys) {
  KeyLists lists;
  lists.main_idx = p.indices + i * p.idx_stride_b + j * p.idx_stride_s;
  lists.extra_idx =
      p.extra_indices != nullptr ? p.extra_indices + i * p.extra_idx_stride_b + j * p.extra_idx_stride_s : nullptr;
  lists.main_keys = main_keys;
  lists.num_keys = num_keys;
  return lists;
}

/// A lane's candidate in every chunk: key `my_key` of chunk c; an empty candidate past the
/// split's last chunk.
struct KeyFetcher {
  KeyLists lists;
  int chunk_end, my_key;
  __device__ __forceinline__ Candidate operator()(int c) const {
    return c < chunk_end ? portable::fetch_candidate(lists.main_idx, lists.extra_idx, lists.main_keys,
                                                     lists.num_keys, c * kChunkKeys + my_key)
                         : Candidate{};
  }
};

/// V3.2 producer warp `pw`: keys pw * K .. pw * K + K - 1 of every chunk (K =
/// kKeysPerProducerWarp), loaded through
/// registers in batches of kProducerBatch keys (loads first, then conversions and stores); the
/// next chunk's 656-byte records are prefetched into L2 a chunk ahead (lanes 0..K-1), so these
/// loads hit L2. Per key, lane l converts FP8 dims 16 l .. 16 l + 15 (tile l / 8) and lanes
/// 0..7 copy 8 RoPE dims each.
template <class T>
__device__ void produce(const Smem<T>& sm, const DecodeParams& p, const KeyLists& lists, int chunk_begin,
                        int chunk_end) {
  constexpr int kKeys = T::kKeysPerProducerWarp;
  constexpr int kBatch = T::kProducerBatch;
  static_assert(kKeys % kBatch == 0, "whole batches per chunk");
  static_assert(v32_fp8::kNopeBytes == 32 * 16 && v32_fp8::kRopeDims == 8 * 8, "V3.2 lane mapping");
  constexpr int kNopeGroups = v32_fp8::kNopeBytes / 8;  // 64: RoPE groups follow
  const int lane = threadIdx.x % 32;
  const int pw = (threadIdx.x - T::kConsumerThreads) / 32;
  const int first_row = producer_first_row<T>(pw);
  const int my_key = producer_lane_key<T>(first_row, lane);
  // key first_row + kk has swizzle row (key % 8) = kk % 8 ^ key_swz (K = 8: 0; K = 4: 0 or 4)
  const int key_swz = first_row % 8;
  const KeyFetcher fetch{lists, chunk_end, my_key};
  auto record = [&](const Candidate& cand) {
    const KeyAddress a = portable::key_address(p, cand);
    return a.page != nullptr ? reinterpret_cast<uint64_t>(a.page + v32_fp8::token_offset(a.offset)) : uint64_t{0};
  };
  auto prefetch = [&](uint64_t row) {
    if (lane < kKeys && row != 0) {
      // NOTE: one prefetch per 128-byte line by each lane at once: the bulk prefetch takes
      // uniform operands, so the compiler looped over the lanes (peak-h64-v32 4.6% faster).
      ptx::prefetch_l2_lines<v32_fp8::kBytesPerToken>(reinterpret_cast<const void*>(row));
    }
  };
  const bool rope_lane = lane < 8;
  const int ga = 2 * lane;  // output groups ga, ga + 1 (FP8 dims 16 lane ..)
  const int tile_idx = lane / 8;

  uint64_t cur = record(fetch(chunk_begin));
  uint64_t nxt = record(fetch(chunk_begin + 1));
  prefetch(cur);
  prefetch(nxt);
  Candidate after = fetch(chunk_begin + 2);

  PipelineState<T::kStages> ps;
  for (int c = chunk_begin; c < chunk_end; ++c) {
    // NOTE: the chunk after next is prepared at the start of this chunk and rotated in at its
    // end (see produce_bulk).
    const uint64_t after_row = record(after);
    prefetch(after_row);
    after = fetch(c + 3);
    wait_stage_free<T>(sm, ps.stage, ps.phase ^ 1u, c - chunk_begin < T::kStages);
    uint8_t* tile = sm.k(ps.stage);
    if (lane < T::kCluster * kKeys) sm.valid(ps.stage)[my_key] = cur != 0;
#pragma unroll 1
    for (int kb = 0; kb < kKeys; kb += kBatch) {
      uint4 codes[kBatch], rope[kBatch];
      float scale[kBatch];
      bool ok[kBatch];
#pragma unroll
      for (int k = 0; k < kBatch; ++k) {
        const uint8_t* row = reinterpret_cast<const uint8_t*>(__shfl_sync(0xffffffffu, cur, kb + k));
        ok[k] = row != nullptr;
        codes[k] = make_uint4(0, 0, 0, 0);
        rope[k] = make_uint4(0, 0, 0, 0);
        scale[k] = 0.0f;
        if (ok[k]) {
          codes[k] = __ldg(reinterpret_cast<const uint4*>(row + 16 * lane));
          scale[k] = __ldg(reinterpret_cast<const float*>(row + v32_fp8::kScaleOffset) + tile_idx);
          if (rope_lane) rope[k] = __ldg(reinterpret_cast<const uint4*>(row + v32_fp8::kRopeOffset + 16 * lane));
        }
      }
#pragma unroll
      for (int k = 0; k < kBatch; ++k) {
        const int kk = kb + k;
        const int swz = (kk % 8) ^ key_swz;  // the key's row % 8
        uint8_t* out_row = tile + (first_row + kk) * 128;
        uint32_t w[8];
        dequant16(codes[k], scale[k], w);
        const uint4 va = ok[k] ? make_uint4(w[0], w[1], w[2], w[3]) : make_uint4(0, 0, 0, 0);
        const uint4 vb = ok[k] ? make_uint4(w[4], w[5], w[6], w[7]) : make_uint4(0, 0, 0, 0);
        uint8_t* block = out_row + (ga / 8) * T::kBlockBytes;
        *reinterpret_cast<uint4*>(block + (((ga % 8) ^ swz) << 4)) = va;
        *reinterpret_cast<uint4*>(block + (((ga % 8 + 1) ^ swz) << 4)) = vb;
        if (rope_lane) {  // group kNopeGroups + lane: block 8, chunk lane
          *reinterpret_cast<uint4*>(out_row + (kNopeGroups / 8) * T::kBlockBytes + ((lane ^ swz) << 4)) = rope[k];
        }
      }
    }
    ptx::fence_proxy_async_smem();  // the generic stores above -> wgmma operand reads (and copies)
    producer_publish<T>(sm, ps.stage, first_row);
    ps.advance();
    cur = nxt;
    nxt = after_row;
  }
}

/// Data row and scale row of a MODEL1 candidate (0 when invalid: never read).
struct RowAddr {
  uint64_t row = 0, scales = 0;
};
template <class T>
__device__ __forceinline__ RowAddr model1_rows(const DecodeParams& p, const Candidate& cand) {
  const KeyAddress a = portable::key_address(p, cand);
  RowAddr r;
  if (a.page != nullptr) {
    r.row = reinterpret_cast<uint64_t>(a.page + model1_fp8::data_row_offset(a.offset));
    r.scales = reinterpret_cast<uint64_t>(a.page + model1_fp8::scale_row_offset(a.page_size, a.offset));
  }
  return r;
}

/// MODEL1 producer warp `pw`: keys pw * K .. pw * K + K - 1 of every chunk (K =
/// kKeysPerProducerWarp), as one stream of positions n. Key n's 576-byte data row arrives by
/// bulk copy in ring slot n % S (S = K / 2 keys in flight per warp), is dequantized from there
/// into the key tile, and the slot is refilled with key n + S. The loop over a chunk's K keys is
/// unrolled: slots, phases and swizzle patterns are compile-time constants. Lanes 0..K-1 hold
/// the row addresses and 8-byte scale rows of
/// their key in the current and the next chunk; the index of the chunk after is in flight
/// meanwhile, so index and scale loads are issued a chunk or more before their use, the ring
/// copies a ring round ahead (half a chunk when K = 8, with an L2 prefetch a chunk ahead; a chunk
/// when K = 4). Per key, lane
/// l < 28 converts FP8 dims 16 l .. 16 l + 15 (tile l / 4), lanes 28..31 copy 16 RoPE dims each.
template <class T>
__device__ void produce_bulk(const Smem<T>& sm, const DecodeParams& p, const KeyLists& lists,
                             int chunk_begin, int chunk_end) {
  constexpr int kKeys = T::kKeysPerProducerWarp;  // 8 (4 in the small-head kernel)
  constexpr int kSlots = T::Ring::kSlots;          // 4
  // NOTE: K = 8: two ring rounds per chunk (compile-time slots and phases); K = 4: one round,
  // each slot's phase flips once per chunk.
  constexpr int kRounds = kKeys / kSlots;
  static_assert(kSlots * kRounds == kKeys && (kRounds == 1 || kRounds == 2), "one or two ring rounds per chunk");
  static_assert(kKeys == 8 || kKeys == 4, "a tile's scale bytes of the warp's keys fit one uint2");
  constexpr uint32_t kRowBytes = T::Ring::kSlotBytes;
  constexpr int kNopeLanes = model1_fp8::kNopeBytes / 16;  // 28
  constexpr int kGroup = T::kProducerGroup;
  static_assert(kSlots % kGroup == 0, "groups of keys never straddle the ring");
  const int lane = threadIdx.x % 32;
  const int pw = (threadIdx.x - T::kConsumerThreads) / 32;
  const int first_row = producer_first_row<T>(pw);
  const int my_key = producer_lane_key<T>(first_row, lane);
  // key first_row + k has swizzle row (key % 8) = k % 8 ^ key_swz (K = 8: 0; K = 4: 0 or 4)
  const int key_swz = first_row % 8;
  const KeyFetcher fetch{lists, chunk_end, my_key};
  // NOTE: only lanes 0..K-1 use their key's scales (in a cluster lanes K..2K-1 hold the
  // partner's keys: their loads would be wasted).
  const bool scale_lane = T::kCluster == 1 || lane < kKeys;
  auto load_scales = [scale_lane](const RowAddr& r) {
    return scale_lane && r.row != 0 ? __ldg(reinterpret_cast<const uint2*>(r.scales)) : make_uint2(0, 0);
  };
  const int num_chunks = chunk_end - chunk_begin;

  // This lane's part of every key: source offset in the raw row, output groups (16-byte
  // chunks) gA and gA + 1 of the bf16 row, scale tile.
  const bool rope = lane >= kNopeLanes;
  const int src_off = rope ? model1_fp8::kNopeBytes + 32 * (lane - kNopeLanes) : 16 * lane;
  const int ga = rope ? 2 * kNopeLanes + 2 * (lane - kNopeLanes) : 2 * lane;
  const int tile_idx = lane / 4;  // nope lanes: dims 16 lane .. lie in tile lane / 4
  const uint32_t out_block = (ga / 8) * T::kBlockBytes;
  const int out_chunk = ga % 8;   // even: chunks out_chunk, out_chunk + 1 of a 128-byte row

  // NOTE: with two ring rounds a chunk (K = 8: the 64-head kernel) the second round's copies go
  // out only half a chunk before their use, so the next chunk's rows are prefetched into L2 a
  // chunk ahead (lanes 0..K-1, one bulk prefetch each) and those copies hit L2. With one round
  // (K = 4: the 128-head clusters and the small-head kernel) the copies go out a whole chunk
  // ahead; there the prefetches (a loop over the issuing lanes) only cost instructions: without
  // them the small-head kernel is 3-5% faster (its consumer, which bounds it, shares the issue
  // slots with the producers) and the clusters 1-2% (PERF.md, fifteenth session), while the
  // 64-head kernel is up to 1.5% slower without them.
  constexpr bool kPrefetchNext = kRounds == 2;
  auto prefetch = [&](const RowAddr& r) {
    // NOTE: per-line prefetches (prefetch_l2_lines) measured no faster here and 2% slower in the
    // small-head kernel; the V3.2 producer gains from them.
    if (kPrefetchNext && lane < kKeys && r.row != 0)
      ptx::cp_async_bulk_prefetch_l2(reinterpret_cast<const void*>(r.row), kRowBytes);
  };
  RowAddr cur = model1_rows<T>(p, fetch(chunk_begin));
  RowAddr nxt = model1_rows<T>(p, fetch(chunk_begin + 1));
  // NOTE: with two ring rounds a chunk, the first chunk's second-round rows are copied only
  // once its first round is converted; prefetched now (lanes S..K-1), that copy hits L2 instead
  // of waiting a second HBM round trip in every CTA's first chunk.
  if (kRounds == 2 && lane >= kSlots && lane < kKeys && cur.row != 0)
    ptx::cp_async_bulk_prefetch_l2(reinterpret_cast<const void*>(cur.row), kRowBytes);
  // NOTE: the second chunk's prefetch waits for the first chunk's first round
  // (MODEL1_DECODE_DEFER_FIRST_PREFETCH): at a wave's start every CTA's Q, index and row
  // requests compete, and the first tile needs only the first chunk's rows. model1-c1 / c3
  // 0.98-0.99 at b = 64..256, other presets unchanged (PERF.md, twenty-ninth session).
  if (!MODEL1_DECODE_DEFER_FIRST_PREFETCH) prefetch(nxt);
  Candidate after = fetch(chunk_begin + 2);
  uint2 cur_scales = load_scales(cur);
  uint2 nxt_scales = load_scales(nxt);

  // The lane that holds a key's row address (no shuffle) issues its copy into ring slot `slot`.
  // NOTE: the lanes of a batch of refills issue them together: the bulk copy takes uniform
  // operands, so the compiler loops over the issuing lanes, once per batch instead of per key.
  auto refill = [&](uint64_t row, int slot) {
    const uint32_t bar = sm.ring_bar(pw, slot);
    if (row != 0) {
      ptx::mbarrier_arrive_expect_tx(bar, kRowBytes);
      ptx::cp_async_bulk_g2s(ptx::smem_addr(sm.ring_slot(pw, slot)), reinterpret_cast<const void*>(row), kRowBytes,
                             bar);
    } else {
      ptx::mbarrier_arrive(bar);  // invalid key: nothing to copy, the phase completes now
    }
  };
  if (num_chunks > 0 && lane < kSlots) refill(cur.row, lane);

  PipelineState<T::kStages> ps;
  for (int q = 0; q < num_chunks; ++q) {
    const bool more = q + 1 < num_chunks;
    // NOTE: the chunk after next is prepared at the start of this chunk (its addresses from the
    // index loaded a chunk ago, its scale rows and L2 prefetch issued now) and rotated in at the
    // end: the rotation's register moves then wait on loads a whole chunk old. Issued at the
    // end of the chunk, they made the next chunk's first move wait a full memory latency.
    const RowAddr after_rows = model1_rows<T>(p, after);
    prefetch(after_rows);
    const uint2 after_scales = load_scales(after_rows);
    after = fetch(chunk_begin + q + 3);
    wait_stage_free<T>(sm, ps.stage, ps.phase ^ 1u, q < T::kStages);
    uint8_t* tile = sm.k(ps.stage);
    if (lane < T::kCluster * kKeys) sm.valid(ps.stage)[my_key] = cur.row != 0;
    const uint32_t valid_mask = __ballot_sync(0xffffffffu, lane < kKeys && cur.row != 0);
    // NOTE: the chunk's scale rows (lane k < K holds key k's 8 bytes) transposed through shared
    // memory, so each lane reads the bytes of its own tile for all K keys at once (two shuffles
    // per key before).
    uint8_t* sbuf = sm.scale_buf(pw);
    if (lane < kKeys) {
#pragma unroll
      for (int t = 0; t < 8; ++t) {
        sbuf[t * kKeys + lane] = static_cast<uint8_t>((t < 4 ? cur_scales.x : cur_scales.y) >> (8 * (t % 4)));
      }
    }
    __syncwarp();
    const uint2 my_scales = kKeys == 8 ? *reinterpret_cast<const uint2*>(sbuf + tile_idx * kKeys)
                                       : make_uint2(*reinterpret_cast<const uint32_t*>(sbuf + tile_idx * kKeys), 0u);
    // NOTE: kProducerGroup keys at a time: their waits, loads, conversions and stores are
    // independent chains the scheduler interleaves (one key at a time, a producer warp spent
    // most cycles waiting on its own dependent instructions).
#pragma unroll
    for (int kg = 0; kg < kKeys; kg += kGroup) {
      // use kRounds * (chunks so far) + kg / S of the slots
      const uint32_t parity = kRounds == 2 ? static_cast<uint32_t>(kg / kSlots)
                                           : static_cast<uint32_t>(q) & 1u;
      uint32_t scl[kGroup];  // the key's tile scale as bf16x2 (dequant16_pow2)
#pragma unroll
      for (int j = 0; j < kGroup; ++j) {
        const int k = kg + j;
        const uint32_t e = ((k < 4 ? my_scales.x : my_scales.y) >> (8 * (k % 4))) & 0xffu;
        const uint32_t b = __float_as_uint(ue8m0_to_float(e)) >> 16;
        scl[j] = b | (b << 16);
      }
#pragma unroll
      for (int j = 0; j < kGroup; ++j) ptx::mbarrier_wait(sm.ring_bar(pw, (kg + j) % kSlots), parity);
      uint4 lo[kGroup], hi[kGroup];
#pragma unroll
      for (int j = 0; j < kGroup; ++j) {
        const uint8_t* raw_row = sm.ring_slot(pw, (kg + j) % kSlots);
        const bool ok = (valid_mask >> (kg + j)) & 1u;
        lo[j] = ok ? *reinterpret_cast<const uint4*>(raw_row + src_off) : make_uint4(0, 0, 0, 0);
        hi[j] = ok && rope ? *reinterpret_cast<const uint4*>(raw_row + src_off + 16) : make_uint4(0, 0, 0, 0);
      }
#pragma unroll
      for (int j = 0; j < kGroup; ++j) {
        const int k = kg + j;
        uint4 a = lo[j], b = hi[j];  // RoPE lanes: as loaded; invalid keys: zeros
        if (!rope) {
          uint32_t w[8];
          dequant16_pow2(lo[j], scl[j], w);  // zero codes (invalid keys) give zeros
          a = make_uint4(w[0], w[1], w[2], w[3]);
          b = make_uint4(w[4], w[5], w[6], w[7]);
        }
        const int key = first_row + k;
        const int swz = (k % 8) ^ key_swz;  // key % 8 (a constant per k when K = 8)
        uint8_t* out_row = tile + out_block + key * 128;
        *reinterpret_cast<uint4*>(out_row + ((out_chunk ^ swz) << 4)) = a;
        *reinterpret_cast<uint4*>(out_row + (((out_chunk + 1) ^ swz) << 4)) = b;
      }
      __syncwarp();  // the slots' bytes are read: they may be refilled
      if constexpr (kRounds == 2) {
        // Once the first half of the chunk is converted, lanes S..2S-1 refill its slots with the
        // second half (their keys); once the second half is, lanes 0..S-1 with the next chunk's.
        if (kg + kGroup == kSlots && lane >= kSlots && lane < 2 * kSlots) refill(cur.row, lane - kSlots);
        if (MODEL1_DECODE_DEFER_FIRST_PREFETCH && q == 0 && kg + kGroup == kSlots) prefetch(nxt);
        if (kg + kGroup == kKeys && more && lane < kSlots) refill(nxt.row, lane);
      }
    }
    if constexpr (kRounds == 1) {
      // NOTE: every slot refilled with the next chunk's key of its index at the end of the chunk,
      // by lanes 0..S-1 together: one loop of the compiler over the issuing lanes instead of one
      // per key (model1-tp-h16/h32 1.5-3% faster than refilling each slot right after its key).
      if (more && lane < kSlots) refill(nxt.row, lane);
    }
    ptx::fence_proxy_async_smem();  // the generic stores above -> wgmma operand reads (and copies)
    producer_publish<T>(sm, ps.stage, first_row);
    ps.advance();
    cur = nxt;
    cur_scales = nxt_scales;
    nxt = after_rows;
    nxt_scales = after_scales;
  }
}

/// Columns [128 h, 128 h + 128) of a consumer's O accumulators (64 per thread; the wgmma
/// accumulator layout repeats every 8 columns, 4 registers each).
template <int h>
__device__ __forceinline__ float (&o_half(float (&o)[128]))[64] {
  return *reinterpret_cast<float(*)[64]>(o + 64 * h);
}

/// The register budget of this warpgroup's role: setmaxnreg from the launch allocation
/// kFrom to kTo (nothing when equal).
template <int kFrom, int kTo>
__device__ __forceinline__ void set_max_regs() {
  if constexpr (kTo > kFrom) {
    ptx::setmaxnreg_inc<kTo>();
  } else if constexpr (kTo < kFrom) {
    ptx::setmaxnreg_dec<kTo>();
  }
}

/// Where the consumer warpgroups stand in the CTA's pipelines: the key-tile ring's stage and
/// phase, and how many chunks' P WG 0 has handed to WG 1 so far. A CTA that walks one range of
/// chunks starts from the default; a persistent CTA (the prefill kernel) carries it from one
/// work item to the next, so the barriers' phases stay in step with the producers'.
template <int kStages>
struct ConsumerPipe {
  PipelineState<kStages> ps;
  uint32_t handovers = 0;
};

/// Helpers of the consumer warpgroups (warpgroup kWg of the CTA, rows r0 and r0 + 8 of each
/// thread's accumulator fragments).
template <class T, int kWg, bool kFenceAfterFull>
struct ConsumerCtx {
  const Smem<T>& sm;
  int lane, r0;
  __device__ explicit ConsumerCtx(const Smem<T>& s)
      : sm(s), lane(threadIdx.x % 32), r0((threadIdx.x % 128) / 32 * 16 + lane / 4) {}
  /// WG 0 -> WG 1: the O rescale factor of the current chunk per row.
  __device__ float* alpha_smem() const { return sm.red_max(1); }
  __device__ void wait_full(const PipelineState<T::kStages>& st) const {
    ptx::mbarrier_wait(sm.full_bar(st.stage), st.phase);
    if constexpr (kFenceAfterFull) ptx::fence_proxy_async_smem();
  }
  /// O *= alpha (skipped when exactly 1 for the whole warp: no bit changes).
  __device__ void rescale_o(float (&o)[T::kDimsPerConsumer / 2], const float (&alpha)[2]) const {
    if (__any_sync(0xffffffffu, alpha[0] != 1.0f || alpha[1] != 1.0f)) {
#pragma unroll
      for (int nb = 0; nb < T::kDimsPerConsumer / 8; ++nb) {
        o[4 * nb + 0] *= alpha[0];
        o[4 * nb + 1] *= alpha[0];
        o[4 * nb + 2] *= alpha[1];
        o[4 * nb + 3] *= alpha[1];
      }
    }
  }
  /// B descriptor of P V k-step kk: value columns 256 kWg + 128 h .. of the tile at k_addr,
  /// MN-major (dims contiguous), 16 keys.
  __device__ uint64_t v_desc(uint32_t k_addr, int kk, int h) const {
    return ptx::smem_desc_sw128(k_addr + (kWg * 4 + 2 * h) * T::kBlockBytes + kk * 16 * 128, T::kBlockBytes, 1024);
  }
};

/// S = Q K^T of one 64-key tile (wgmma m64n64k16 over every 64-column block; Q at q_base, the
/// key tile at k_base), issued and committed as one group; the caller waits for it.
/// kQRegBlocks > 0 (prefill): Q's first kQRegBlocks column blocks come from registers (qa:
/// the A fragments, wgmma RS), the rest from shared memory.
template <class T, int kQRegBlocks = 0>
__device__ __forceinline__ void issue_qk(uint32_t q_base, uint32_t k_base, float (&s)[T::kBlockN / 2],
                                         const uint32_t (*qa)[4][4] = nullptr) {
  const uint32_t k_addr = ptx::opaque(k_base);
  const uint32_t q_addr = ptx::opaque(q_base);
#pragma unroll
  for (int e = 0; e < T::kBlockN / 2; ++e) s[e] = 0.0f;
  ptx::wgmma_fence();
  // NOTE: fully unrolled, the descriptors stepped through a volatile move (opaque64): a
  // loop over column blocks made ptxas insert a warpgroup.arrive per iteration, and plain
  // unrolled descriptors get hoisted into registers the accumulators need.
  uint64_t da = ptx::smem_desc_sw128(q_addr, 16, 1024);
  uint64_t db = ptx::smem_desc_sw128(k_addr, 16, 1024);
#pragma unroll
  for (int cb = 0; cb < T::kColBlocks; ++cb) {
#pragma unroll
    for (int kk = 0; kk < 4; ++kk) {  // 16 dims = 32 bytes along the 128-byte swizzled row
      if (cb < kQRegBlocks) {
        ptx::wgmma_m64n64k16_bf16_f32_rs<0>(s, qa[cb][kk], db, cb > 0 || kk > 0 ? 1 : 0);
      } else {
        ptx::wgmma_m64n64k16_bf16_f32_ss<0>(s, da, db, cb > 0 || kk > 0 ? 1 : 0);
      }
      const uint32_t step = kk < 3 ? 32 : T::kBlockBytes - 3 * 32;  // next k16, or next block
      da = ptx::opaque64(ptx::desc_advance(da, step));
      db = ptx::opaque64(ptx::desc_advance(db, step));
    }
  }
  ptx::wgmma_commit();
}

/// This thread's validity flags of stage `stage`'s chunk (keys 8 nb + 2 (lane % 4) + e at byte
/// 2 nb + e), read from shared memory when the chunk's tile is known full, before its S
/// completes.
template <class T>
__device__ __forceinline__ void load_valid_flags(const Smem<T>& sm, int stage, uint32_t (&flags)[T::kBlockN / 16]) {
  const uint8_t* valid = sm.valid(stage) + 2 * (threadIdx.x % 4);
#pragma unroll
  for (int k = 0; k < T::kBlockN / 16; ++k) {
    const uint32_t lo = *reinterpret_cast<const uint16_t*>(valid + 16 * k);
    const uint32_t hi = *reinterpret_cast<const uint16_t*>(valid + 16 * k + 8);
    flags[k] = lo | (hi << 16);
  }
}

/// Invalid keys' logits of S -> -inf (select, never multiply), and mx = the row maxima of this
/// thread's rows r0, r0 + 8 over the warpgroup, times scale_log2. NOTE: scale_log2 > 0
/// (sm_scale is validated > 0) and rounding is monotonic, so fl(max(s) * scale) is the maximum
/// of the scaled logits; the caller fuses the scale into exp2's argument.
template <class T>
__device__ __forceinline__ void masked_row_max(float (&s)[T::kBlockN / 2], const uint32_t (&flags)[T::kBlockN / 16],
                                               float scale_log2, float (&mx)[2]) {
#pragma unroll
  for (int nb = 0; nb < T::kBlockN / 8; ++nb) {
#pragma unroll
    for (int e = 0; e < 2; ++e) {
      const bool ok = ((flags[nb / 2] >> (16 * (nb % 2) + 8 * e)) & 0xffu) != 0;
      s[4 * nb + e] = ok ? s[4 * nb + e] : -INFINITY;
      s[4 * nb + 2 + e] = ok ? s[4 * nb + 2 + e] : -INFINITY;
    }
  }
  // NOTE: a pairwise tree, depth 4 instead of a chain of 16 dependent maxima per row: prefill
  // 0.998 of the time, decode within noise (PERF.md, thirtieth session). The maximum of a set
  // is the same in any order (fmaxf drops a NaN operand), so no result changes. The levels
  // loop has a constant trip count: a `w /= 2` loop was not unrolled and put t in local memory.
  constexpr int kPerRow = T::kBlockN / 4;
  float t[2][kPerRow];
#pragma unroll
  for (int nb = 0; nb < T::kBlockN / 8; ++nb) {
#pragma unroll
    for (int e = 0; e < 2; ++e) {
      t[0][2 * nb + e] = s[4 * nb + e];
      t[1][2 * nb + e] = s[4 * nb + 2 + e];
    }
  }
  static_assert(kPerRow == 16, "four levels");
#pragma unroll
  for (int level = 0; level < 4; ++level) {
    const int w = (kPerRow / 2) >> level;  // a constant trip count: fully unrolled, registers only
#pragma unroll
    for (int k = 0; k < kPerRow / 2; ++k) {
      if (k < w) {
        t[0][k] = fmaxf(t[0][k], t[0][k + w]);
        t[1][k] = fmaxf(t[1][k], t[1][k + w]);
      }
    }
  }
  // NOTE: the chain started from -inf, so a slice of all-NaN logits gave -inf; so does this.
  mx[0] = fmaxf(-INFINITY, t[0][0]);
  mx[1] = fmaxf(-INFINITY, t[1][0]);
#pragma unroll
  for (int r = 0; r < 2; ++r) {
    mx[r] = fmaxf(mx[r], __shfl_xor_sync(0xffffffffu, mx[r], 1));
    mx[r] = fmaxf(mx[r], __shfl_xor_sync(0xffffffffu, mx[r], 2));
    mx[r] *= scale_log2;
  }
}

/// WG 1 of consume_chunks: P V for value columns 256..511.
template <class T, bool kFenceAfterFull, bool kPRegs>
__device__ __forceinline__ void consume_chunks_pv(const Smem<T>& sm, int num_chunks, float (&o)[T::kDimsPerConsumer / 2],
                                                  ConsumerPipe<T::kStages>& pipe) {
  const ConsumerCtx<T, 1, kFenceAfterFull> cx(sm);
  const uint32_t p_base = ptx::smem_addr(sm.p());
  PipelineState<T::kStages> ps = pipe.ps;
  const uint32_t h0 = pipe.handovers;
  for (int c = 0; c < num_chunks; ++c) {
    cx.wait_full(ps);  // completed already (WG 0 waited): makes the tile's bytes visible here
    ptx::mbarrier_wait(sm.p_full_bar(), (h0 + static_cast<uint32_t>(c)) & 1u);
    const float alpha[2] = {cx.alpha_smem()[cx.r0], cx.alpha_smem()[cx.r0 + 8]};
    // kPRegs: P as this thread's A fragments (WG 0's thread of the same index wrote them), read
    // with ordinary loads; P and alpha are then free again before the P V.
    uint32_t pa[T::kBlockN / 16][4];
    if constexpr (kPRegs) {
      const uint4* src = reinterpret_cast<const uint4*>(sm.p()) + threadIdx.x % 128;
#pragma unroll
      for (int kk = 0; kk < T::kBlockN / 16; ++kk) {
        const uint4 v = src[kk * 128];
        pa[kk][0] = v.x;
        pa[kk][1] = v.y;
        pa[kk][2] = v.z;
        pa[kk][3] = v.w;
      }
      ptx::mbarrier_arrive(sm.p_empty_bar());
    }
    cx.rescale_o(o, alpha);
#pragma unroll
    for (int e = 0; e < T::kDimsPerConsumer / 2; ++e) ptx::fence_operand(o[e]);
    const uint32_t k_addr = ptx::opaque(ptx::smem_addr(sm.k(ps.stage)));
    uint32_t p_addr = 0;  // the P tile's address: only the shared-tile form reads P through a descriptor
    if constexpr (!kPRegs) p_addr = ptx::opaque(p_base);
    ptx::wgmma_fence();
#pragma unroll
    for (int kk = 0; kk < T::kBlockN / 16; ++kk) {
      const uint64_t da = ptx::smem_desc_sw128(p_addr + kk * 32, 16, 1024);
      // NOTE: two N = 128 halves in decode: a single N = 256 wgmma needs more registers than
      // a 512-thread launch bound lets ptxas place (kPvWide: the 384-thread prefill).
      if constexpr (kPRegs) {
        static_assert(T::kPvWide, "P from registers: the N = 256 form (the prefill kernel's)");
        ptx::wgmma_m64n256k16_bf16_f32_rs<1>(o, pa[kk], cx.v_desc(k_addr, kk, 0), 1);
      } else if constexpr (T::kPvWide) {
        ptx::wgmma_m64n256k16_bf16_f32_ss<1>(o, da, cx.v_desc(k_addr, kk, 0), 1);
      } else {
        ptx::wgmma_m64n128k16_bf16_f32_ss<1>(o_half<0>(o), da, cx.v_desc(k_addr, kk, 0), 1);
        ptx::wgmma_m64n128k16_bf16_f32_ss<1>(o_half<1>(o), da, cx.v_desc(k_addr, kk, 1), 1);
      }
    }
    ptx::wgmma_commit();
    ptx::wgmma_wait<0>();
#pragma unroll
    for (int e = 0; e < T::kDimsPerConsumer / 2; ++e) ptx::fence_operand(o[e]);
    if constexpr (kPRegs) {
#pragma unroll
      for (int kk = 0; kk < T::kBlockN / 16; ++kk) {
#pragma unroll
        for (int e = 0; e < 4; ++e) ptx::keep_alive(pa[kk][e]);  // read by the P V above until here
      }
    } else {
      ptx::mbarrier_arrive(sm.p_empty_bar());  // P and alpha may be overwritten now
    }
    ptx::mbarrier_arrive(sm.empty_bar(ps.stage));
    ps.advance();
  }
  pipe.ps = ps;
  pipe.handovers = h0 + static_cast<uint32_t>(num_chunks);
}

/// WG 0 of consume_chunks: S, the softmax, P V for value columns 0..255.
template <class T, bool kFenceAfterFull, bool kReleaseQ, bool kPRegs, int kQRegBlocks>
__device__ __forceinline__ void consume_chunks_softmax(const Smem<T>& sm, float scale_log2, int num_chunks,
                                                       float (&o)[T::kDimsPerConsumer / 2], float (&m)[2],
                                                       float (&l)[2], ConsumerPipe<T::kStages>& pipe,
                                                       uint32_t q_empty_bar) {
  const ConsumerCtx<T, 0, kFenceAfterFull> cx(sm);
  const uint32_t q_base = ptx::smem_addr(sm.q());
  float s[T::kBlockN / 2];  // S: 64 heads x 64 keys over the warpgroup
  uint32_t pa[T::kBlockN / 16][4];  // P as the A fragments of the 4 k-steps of P V
  // kQRegBlocks: Q's first column blocks as A fragments, loaded once (Q is complete: the
  // caller waited for it), rows cx.r0 / + 8, dims 16 kk + 2 (lane % 4) + {0, 1} and + 8.
  // NOTE: only with chunks: for an item without keys the caller never waited for its Q, and the
  // producer may be copying the next item's into the tile (racecheck found these reads).
  uint32_t qa[kQRegBlocks > 0 ? kQRegBlocks : 1][4][4];
  if (kQRegBlocks > 0 && num_chunks > 0) {
#pragma unroll
    for (int cb = 0; cb < kQRegBlocks; ++cb) {
#pragma unroll
      for (int kk = 0; kk < 4; ++kk) {
#pragma unroll
        for (int e = 0; e < 4; ++e) {
          const int row = cx.r0 + 8 * (e % 2);
          const uint8_t* src = sm.q() + cb * T::kBlockBytes + swizzle_offset(row, 2 * kk + e / 2) + 4 * (cx.lane % 4);
          qa[cb][kk][e] = *reinterpret_cast<const uint32_t*>(src);
        }
      }
    }
  }
  auto issue_s = [&](int stage) { issue_qk<T, kQRegBlocks>(q_base, ptx::smem_addr(sm.k(stage)), s, qa); };

  PipelineState<T::kStages> ps = pipe.ps;
  const uint32_t h0 = pipe.handovers;
  uint32_t flags[T::kBlockN / 16];
  auto load_flags = [&](int stage) { load_valid_flags<T>(sm, stage, flags); };
  if (num_chunks > 0) {
    cx.wait_full(ps);
    issue_s(ps.stage);
    load_flags(ps.stage);
  }
  for (int c = 0; c < num_chunks; ++c) {
    ptx::wgmma_wait<0>();  // S of chunk c (P V of chunk c - 1 was waited for already)
#pragma unroll
    for (int e = 0; e < T::kBlockN / 2; ++e) ptx::fence_operand(s[e]);
    // NOTE: after the work item's last S the Q tile is no longer read: the producer may load
    // the next item's Q into it while this one finishes.
    if constexpr (kReleaseQ) {
      if (c + 1 == num_chunks) ptx::mbarrier_arrive(q_empty_bar);
    }

    // ---- mask and the row maxima, on the unscaled logits (the scale fused into exp2) ----
    float mx[2];
    masked_row_max<T>(s, flags, scale_log2, mx);
    float alpha[2], m_use[2];
#pragma unroll
    for (int r = 0; r < 2; ++r) {
      const float m_new = fmaxf(m[r], mx[r]);
      // NOTE: while no valid key was seen m stays -inf; subtracting 0 keeps exp2 at 0.
      m_use[r] = m_new == -INFINITY ? 0.0f : m_new;
      alpha[r] = exp2f(m[r] - m_use[r]);
      m[r] = m_new;
    }

    // ---- P = exp2(S - m): bf16 A fragments, row sums ----
    float rowsum[2] = {0.0f, 0.0f};
    uint32_t pk[T::kBlockN / 8][2];  // per 8 keys: row cx.r0 pair, row cx.r0 + 8 pair
#pragma unroll
    for (int nb = 0; nb < T::kBlockN / 8; ++nb) {
      // NOTE: p < 2^-126 flushes to 0 (ex2_ftz): far below a row sum of at least 1.
      const float p0 = ptx::ex2_ftz(fmaf(s[4 * nb + 0], scale_log2, -m_use[0]));
      const float p1 = ptx::ex2_ftz(fmaf(s[4 * nb + 1], scale_log2, -m_use[0]));
      const float p2 = ptx::ex2_ftz(fmaf(s[4 * nb + 2], scale_log2, -m_use[1]));
      const float p3 = ptx::ex2_ftz(fmaf(s[4 * nb + 3], scale_log2, -m_use[1]));
      rowsum[0] += p0 + p1;
      rowsum[1] += p2 + p3;
      pk[nb][0] = pack_bf16x2(p0, p1);
      pk[nb][1] = pack_bf16x2(p2, p3);
    }
#pragma unroll
    for (int r = 0; r < 2; ++r) l[r] = l[r] * alpha[r] + rowsum[r];
#pragma unroll
    for (int kk = 0; kk < T::kBlockN / 16; ++kk) {
      pa[kk][0] = pk[2 * kk][0];
      pa[kk][1] = pk[2 * kk][1];
      pa[kk][2] = pk[2 * kk + 1][0];
      pa[kk][3] = pk[2 * kk + 1][1];
    }

    // ---- P and alpha -> shared memory for WG 1 (once it is done with the previous ones) ----
    if (c > 0 || h0 > 0) ptx::mbarrier_wait(sm.p_empty_bar(), (h0 + static_cast<uint32_t>(c) - 1u) & 1u);
    uint8_t* sp = sm.p();
    if constexpr (kPRegs) {
      // NOTE: P as this thread's A fragments, 16 bytes a k-step, for WG 1's thread of the same
      // index (the fragment layout depends only on it): ordinary loads there, so no proxy fence.
      uint4* dst = reinterpret_cast<uint4*>(sp) + threadIdx.x % 128;
#pragma unroll
      for (int kk = 0; kk < T::kBlockN / 16; ++kk) dst[kk * 128] = make_uint4(pa[kk][0], pa[kk][1], pa[kk][2], pa[kk][3]);
    } else {
#pragma unroll
      for (int nb = 0; nb < T::kBlockN / 8; ++nb) {
        const uint32_t in_chunk = 4 * (cx.lane % 4);
        *reinterpret_cast<uint32_t*>(sp + swizzle_offset(cx.r0, nb) + in_chunk) = pk[nb][0];
        *reinterpret_cast<uint32_t*>(sp + swizzle_offset(cx.r0 + 8, nb) + in_chunk) = pk[nb][1];
      }
    }
    if (cx.lane % 4 == 0) {
      cx.alpha_smem()[cx.r0] = alpha[0];
      cx.alpha_smem()[cx.r0 + 8] = alpha[1];
    }
    if constexpr (!kPRegs) ptx::fence_proxy_async_smem();  // P: generic stores -> WG 1's wgmma operand reads
    ptx::mbarrier_arrive(sm.p_full_bar());

    // ---- O[:, 0..255] += P V: A = P (registers), B = V (N-major) ----
    cx.rescale_o(o, alpha);
#pragma unroll
    for (int e = 0; e < T::kDimsPerConsumer / 2; ++e) ptx::fence_operand(o[e]);
    const uint32_t k_addr = ptx::opaque(ptx::smem_addr(sm.k(ps.stage)));
    ptx::wgmma_fence();
#pragma unroll
    for (int kk = 0; kk < T::kBlockN / 16; ++kk) {
      if constexpr (T::kPvWide) {
        ptx::wgmma_m64n256k16_bf16_f32_rs<1>(o, pa[kk], cx.v_desc(k_addr, kk, 0), 1);
      } else {
        ptx::wgmma_m64n128k16_bf16_f32_rs<1>(o_half<0>(o), pa[kk], cx.v_desc(k_addr, kk, 0), 1);
        ptx::wgmma_m64n128k16_bf16_f32_rs<1>(o_half<1>(o), pa[kk], cx.v_desc(k_addr, kk, 1), 1);
      }
    }
    ptx::wgmma_commit();
    // NOTE: P V of chunk c completes and the key tile is released before WG 0 waits for the
    // next tile and issues its S: the producers, who bound these loops (they wait for a free
    // stage, the consumers for a full one), get the stage back a whole S earlier. Issuing S of
    // c + 1 right behind this P V instead (overlapping the two) was 1-4% slower on decode and
    // 3-4% on prefill (PERF.md).
    ptx::wgmma_wait<0>();
#pragma unroll
    for (int kk = 0; kk < T::kBlockN / 16; ++kk) {
#pragma unroll
      for (int e = 0; e < 4; ++e) ptx::keep_alive(pa[kk][e]);  // read by the P V above until here
    }
#pragma unroll
    for (int e = 0; e < T::kDimsPerConsumer / 2; ++e) ptx::fence_operand(o[e]);
    ptx::mbarrier_arrive(sm.empty_bar(ps.stage));  // the key tile may be overwritten
    ps.advance();
    if (c + 1 < num_chunks) {
      cx.wait_full(ps);
      issue_s(ps.stage);
      load_flags(ps.stage);
    }
  }
  pipe.ps = ps;
  pipe.handovers = h0 + static_cast<uint32_t>(num_chunks);
}

/// The consumer main loop over the next num_chunks chunks of the key-tile ring (the Q tile is
/// in shared memory; `pipe`: where the ring and the P handover stand, advanced on return),
/// shared by the decode and prefill kernels. The two consumer warpgroups have
/// different roles:
///   WG 0 (softmax): S = Q K^T for all 64 keys of the chunk (wgmma m64n64k16), the masked
///        online softmax (row maxima within the warpgroup: no exchange), P to shared memory
///        with the rescale factors for WG 1, and O[:, 0..255] += P V with P from registers
///        (wgmma RS); once that P V is complete it releases the tile, waits for the next one
///        and issues its S;
///   WG 1 (P V): waits for P of the chunk, rescales and runs O[:, 256..511] += P V with P from
///        shared memory, while WG 0 already computes S of the next chunk.
/// Both release a key tile (empty barrier) once their P V on it is done. On return O is
/// unnormalised; WG 0's m holds the running row maxima (base-2 logits, -inf while no valid
/// key was seen) and l its lanes' partial row sums: publish_row_stats hands both to WG 1.
/// kFenceAfterFull: the key tiles arrive by cp.async (prefill), whose writes reach the wgmma
/// operand reads (async proxy) through a proxy fence after the full barrier's acquire; the
/// decode producers fence before they arrive. kReleaseQ (persistent prefill): WG 0 arrives on
/// q_empty_bar once the last S is complete, so the producer may overwrite the Q tile. kPRegs
/// (prefill, N = 256 P V only): WG 0 hands P over as its threads' A fragments, 16 bytes a
/// k-step, and WG 1's thread of the same index loads them and runs its P V in the RS form:
/// ordinary loads instead of wgmma operand reads, so WG 0 needs no proxy fence before the
/// handover, and WG 1 frees P (p_empty) before its P V instead of after. The 512-thread decode
/// kernels keep P in a swizzled tile: their WG 1 budget (160) has no room for 16 more registers
/// (a build spilled and serialised its wgmma); re-budgeting the 128-head clusters to 208 / 176 /
/// 64 for it measured 7-9% slower (docs/experiments/2026-12-02-decode-p-fragments.patch).
/// kQRegBlocks (prefill): Q's first column blocks as WG 0's A fragments (issue_qk).
template <class T, int kWg, bool kFenceAfterFull = false, bool kReleaseQ = false, bool kPRegs = false,
          int kQRegBlocks = 0>
__device__ __forceinline__ void consume_chunks(const Smem<T>& sm, float scale_log2, int num_chunks,
                                               float (&o)[T::kDimsPerConsumer / 2], float (&m)[2], float (&l)[2],
                                               ConsumerPipe<T::kStages>& pipe, uint32_t q_empty_bar = 0) {
  static_assert(T::kBlockN == 64 && T::kDimsPerConsumer == 256, "64-key tiles, two 256-column halves of O");
  if constexpr (kWg == 0) {
    consume_chunks_softmax<T, kFenceAfterFull, kReleaseQ, kPRegs, kQRegBlocks>(sm, scale_log2, num_chunks, o, m, l,
                                                                              pipe, q_empty_bar);
  } else {
    consume_chunks_pv<T, kFenceAfterFull, kPRegs>(sm, num_chunks, o, pipe);
  }
}

/// After the main loop: WG 0's row maxima and row sums (summed over its lanes) into shared
/// memory; on return every consumer thread's m and l hold the totals of its rows r0, r0 + 8.
template <class T>
__device__ __forceinline__ void publish_row_stats(const Smem<T>& sm, float (&m)[2], float (&l)[2]) {
  const int wg = threadIdx.x / 128;
  const int lane = threadIdx.x % 32;
  const int r0 = (threadIdx.x % 128) / 32 * 16 + lane / 4;
  if (wg == 0) {
#pragma unroll
    for (int r = 0; r < 2; ++r) {
      l[r] += __shfl_xor_sync(0xffffffffu, l[r], 1);
      l[r] += __shfl_xor_sync(0xffffffffu, l[r], 2);
    }
    if (lane % 4 == 0) {
#pragma unroll
      for (int r = 0; r < 2; ++r) {
        sm.red_max(0)[r0 + 8 * r] = m[r];
        sm.red_sum(0)[r0 + 8 * r] = l[r];
      }
    }
  }
  ptx::named_barrier_sync(T::kBarrierMax, T::kConsumerThreads);
#pragma unroll
  for (int r = 0; r < 2; ++r) {
    m[r] = sm.red_max(0)[r0 + 8 * r];
    l[r] = sm.red_sum(0)[r0 + 8 * r];
  }
}

/// Consumer warpgroup kWg (0 or 1): the chunk loop, then the outputs of its 256 columns.
template <class T, int kWg>
__device__ void consume(const Smem<T>& sm, const DecodeParams& p, int chunk_begin, int chunk_end) {
  constexpr int wg = kWg;
  const int wt = threadIdx.x % 128;
  const int warp = wt / 32, lane = wt % 32;
  const int r0 = warp * 16 + lane / 4;  // rows r0 and r0 + 8 of this thread
  const float scale_log2 = p.scale_log2;

  float o[T::kDimsPerConsumer / 2];  // 64 x 256 f32 over the warpgroup: 128 per thread
#pragma unroll
  for (int e = 0; e < T::kDimsPerConsumer / 2; ++e) o[e] = 0.0f;
  float m[2] = {-INFINITY, -INFINITY};  // running max of base-2 logits, rows r0, r0 + 8
  float l[2] = {0.0f, 0.0f};            // running sums over this warpgroup's keys

  {
    const CtaCoord cc = cta_coord(p);
    // NOTE: the sinks of the CTA's heads go to shared memory now (two warps of WG 1), so the
    // epilogue does not wait a memory latency for them (nor keep them in registers).
    if (wg == 1 && wt < T::kRows && p.attn_sink != nullptr) sm.sinks()[wt] = __ldg(p.attn_sink + cc.g * T::kRows + wt);
    load_q<T>(sm, p, cc.i, cc.j, cc.g);
  }
  ptx::fence_proxy_async_smem();  // Q: generic stores / cp.async writes -> wgmma operand reads
  ptx::named_barrier_sync(T::kBarrierP, T::kConsumerThreads);
  ConsumerPipe<T::kStages> pipe;
  consume_chunks<T, kWg, false, false, false, T::kQRegBlocks>(sm, scale_log2, chunk_end - chunk_begin, o, m, l, pipe);
  if constexpr (T::kCluster == 2) ptx::mbarrier_arrive(sm.done_bar());  // every full barrier waited for

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
  publish_row_stats<T>(sm, m, l);

  const int dim_base = wg * T::kDimsPerConsumer;
  const bool direct = num_splits == 1;
  constexpr int kBlocks = T::kDimsPerConsumer / 8;
  // NOTE: the request's only split writes out as 16-byte streaming stores (`supports`: out is
  // 16-byte aligned; rows of this kernel always exist, h_q being 64 or 128); partial rows go
  // through the shared path. (16-byte partial stores after a lane-pair exchange measured
  // slower.)
  if (direct) {
    const bool has_sink = p.attn_sink != nullptr;
#pragma unroll
    for (int r = 0; r < 2; ++r) {
      const int row_in_cta = r0 + 8 * r;
      const int64_t row = (static_cast<int64_t>(i) * p.s_q + j) * p.h_q + g * T::kRows + row_in_cta;
      const DecodeRowScale rs =
          decode_row_scale_with(true, m[r], l[r], has_sink, [&] { return sm.sinks()[row_in_cta]; });
      // NOTE: select, never multiply: an empty row's factor is inf or NaN.
      store_row_bf16_quads<kBlocks>(p.out + row * T::kDV + dim_base, [&](int nb) {
        return rs.empty ? 0u : pack_bf16x2(o[4 * nb + 2 * r] * rs.factor, o[4 * nb + 2 * r + 1] * rs.factor);
      });
      if (wg == 0 && lane % 4 == 0) store_decode_lse(p, row, split, true, rs);
    }
    return;
  }
  // NOTE: a split's partial rows (f32, 1 KiB per row and warpgroup) are staged in the Q and key
  // tiles, free after the loop, and leave by one bulk copy per row half: stored straight from
  // the fragments, each warp store touched 8 rows' lines, and at b = 2 (one or two chunks a
  // CTA) these 128 KiB took about 4 us of a CTA's 12 (PERF.md, sixteenth session). In a cluster
  // the partner's copies out of this CTA's tile are complete once the partner's consumers left
  // their loop (its producer warp 0 then arrives on partner_done).
  constexpr int kStageRowBytes = T::kDimsPerConsumer * 4 + 32;  // 32-byte pad: 2 wavefronts a store
  static_assert(T::kQOffset == 0 && 2 * T::kRows * kStageRowBytes <= T::kPOffset,
                "the partial rows' staging fits the Q and key tiles");
  if constexpr (T::kCluster == 2) ptx::mbarrier_wait(sm.partner_done_bar(), 0);
  uint8_t* stage = sm.at(wg * T::kRows * kStageRowBytes);
#pragma unroll
  for (int r = 0; r < 2; ++r) {
    const int h = g * T::kRows + r0 + 8 * r;
    const int64_t row = (static_cast<int64_t>(i) * p.s_q + j) * p.h_q + h;
    const DecodeRowScale rs = decode_row_scale(p, h, false, m[r], l[r]);
    float* srow = reinterpret_cast<float*>(stage + (r0 + 8 * r) * kStageRowBytes);
#pragma unroll
    for (int nb = 0; nb < kBlocks; ++nb) {
      *reinterpret_cast<float2*>(srow + nb * 8 + 2 * (lane % 4)) =
          rs.empty ? make_float2(0.0f, 0.0f)
                   : make_float2(o[4 * nb + 2 * r] * rs.factor, o[4 * nb + 2 * r + 1] * rs.factor);
    }
    if (wg == 0 && lane % 4 == 0) store_decode_lse(p, row, split, false, rs);
  }
  ptx::fence_proxy_async_smem();  // the generic stores above -> the bulk copies' reads
  ptx::named_barrier_sync(T::kBarrierMax, T::kConsumerThreads);
  if (wt < T::kRows) {
    const int64_t row = (static_cast<int64_t>(i) * p.s_q + j) * p.h_q + g * T::kRows + wt;
    ptx::cp_async_bulk_s2g(p.partial_o + (row * p.max_splits + split) * T::kDV + dim_base,
                           ptx::smem_addr(stage + wt * kStageRowBytes), T::kDimsPerConsumer * 4);
    ptx::cp_async_bulk_commit();
    ptx::cp_async_bulk_wait_all();  // the CTA's shared memory outlives the reads; the writes done
  }
}

/// At a CTA's first instructions (MODEL1_DECODE_START_PREFETCH): its Q rows (one bulk L2
/// prefetch, where q's rows of the CTA are contiguous) and the index lines of its split's first
/// 256 candidates (eight producer threads, one line each), requested into L2 before the barriers'
/// setup, so the consumers' Q copies and the producers' index loads, issued after it, find them
/// there or on their way. Both read only addresses the CTA reads itself.
/// NOTE: in three calls 2-3.5% faster on model1-c1 / c3 at b = 64 / 256 and 1-2% on tp-h32,
/// within 1% elsewhere (the 128-head clusters, peak, V3.2, b = 2). Q alone gained 0.3-0.6% less;
/// the indices alone (with the first ring copies issued before the other prefetches) nothing
/// (PERF.md, twenty-ninth session).
template <class T>
__device__ __forceinline__ void prefetch_cta_start(const DecodeParams& p, const CtaCoord& cc, int main_keys,
                                                   int num_keys, int chunk_begin) {
  if constexpr (MODEL1_DECODE_START_PREFETCH == 1) {
    const int t = static_cast<int>(threadIdx.x) - T::kConsumerThreads;
    const int pos = chunk_begin * kChunkKeys + 32 * t;  // 32 indices = one 128-byte line
    if (t >= 0 && t < 8 && pos < num_keys) {
      // NOTE: the list's address picked before the offset (key_lists computes both lists and
      // selects: other machine code than the measured build's).
      const int32_t* idx = pos < main_keys ? p.indices + cc.i * p.idx_stride_b + cc.j * p.idx_stride_s + pos
                                           : p.extra_indices + cc.i * p.extra_idx_stride_b +
                                                 cc.j * p.extra_idx_stride_s + (pos - main_keys);
      ptx::prefetch_l2(idx);
    }
  }
  if constexpr (MODEL1_DECODE_START_PREFETCH >= 1) {
    // NOTE: q rows are 16-byte aligned here (`supports`), and the size is a multiple of 16.
    if (threadIdx.x == 32 && p.q_stride_h == T::kDQk) {
      ptx::cp_async_bulk_prefetch_l2(token_q(p, cc.i, cc.j) + cc.g * T::kRows * p.q_stride_h, T::kRows * T::kDQk * 2);
    }
  }
}

/// What every sm_90a decode CTA does around its consumers: the request's schedule (a CTA whose
/// split is past its request's schedule exits at once), the pipeline barriers, and the
/// producer warpgroups (warpgroups kConsumerWarpgroups and up). `consume(warpgroup,
/// chunk_begin, chunk_end)` runs the consumer warpgroups.
template <class T, class Consume>
__device__ __forceinline__ void decode_cta(const DecodeParams& p, const Smem<T>& sm, Consume&& consume) {
  // NOTE: the combine kernel (a programmatic dependent launch) may be scheduled once every CTA
  // of this grid has started; it waits for this grid's completion before reading partials.
  ptx::griddep_launch_dependents();
  const CtaCoord cc = cta_coord(p);
  const int i = cc.i, j = cc.j, split = cc.split;

  const int main_keys = clamp_length(p.topk_length, i, p.topk);
  const int extra_keys = p.extra_indices != nullptr ? clamp_length(p.extra_topk_length, i, p.extra_topk) : 0;
  const RequestSchedule sched = request_schedule(main_keys, extra_keys, p.split_chunks);
  if (split >= sched.num_splits) return;
  const int chunk_begin = split * sched.chunks_per_split;
  const int chunk_end = min(chunk_begin + sched.chunks_per_split, sched.num_chunks);
  prefetch_cta_start<T>(p, cc, main_keys, sched.num_keys, chunk_begin);

  if (threadIdx.x == 0) {
    init_pipeline_barriers<T>(sm, T::kFullArrivals);
    if constexpr (T::kCluster == 2) {
      for (int st = 0; st < T::kStages; ++st) ptx::mbarrier_init(sm.pair_free_bar(st), 2 * T::kProducerWarps);
      ptx::mbarrier_init(sm.done_bar(), T::kConsumerThreads);
      ptx::mbarrier_init(sm.partner_done_bar(), 1);
    }
    if constexpr (T::Ring::kBulk) {
      for (int w = 0; w < T::kProducerWarps; ++w) {
        for (int r = 0; r < T::Ring::kSlots; ++r) ptx::mbarrier_init(sm.ring_bar(w, r), 1);
      }
    }
    ptx::fence_mbarrier_init();
  }
  if constexpr (T::kCluster == 2) {
    ptx::cluster_sync();  // both CTAs' barriers initialized before either touches the other's
  } else {
    __syncthreads();  // barriers initialized
  }

  // NOTE: the warpgroup index through a shuffle: ptxas then knows the role branch is
  // warp-uniform (wgmma in a possibly divergent path gets serialized).
  const int warpgroup = __shfl_sync(0xffffffffu, static_cast<int>(threadIdx.x) / 128, 0);
  if (warpgroup >= T::kConsumerWarpgroups) {
    ptx::setmaxnreg_dec<T::kProducerRegs>();
    const KeyLists lists = key_lists(p, i, j, main_keys, sched.num_keys);
    if constexpr (T::Ring::kBulk) {
      produce_bulk<T>(sm, p, lists, chunk_begin, chunk_end);
    } else {
      produce<T>(sm, p, lists, chunk_begin, chunk_end);
    }
    if constexpr (T::kCluster == 2) {
      // NOTE: the CTA must outlive its bulk copies, which read its tile until they complete on
      // the partner's full barriers; no instruction waits for that here. So producer warp 0
      // waits until this CTA's consumers left their chunk loop, tells the partner, and waits
      // for the partner's word that its consumers left theirs (every copy into the partner
      // complete). Every other access between the two CTAs (the pair-barrier arrivals) is
      // waited for by its target inside the chunk loop (both CTAs walk the same chunks).
      if (warpgroup == T::kConsumerWarpgroups && threadIdx.x % 128 < 32) {
        ptx::mbarrier_wait(sm.done_bar(), 0);
        if (threadIdx.x % 32 == 0) ptx::mbarrier_arrive_remote(ptx::mapa_shared(sm.partner_done_bar(), partner_rank()));
        ptx::mbarrier_wait(sm.partner_done_bar(), 0);
      }
    }
  } else {
    consume(warpgroup, chunk_begin, chunk_end);
  }
}

/// The split kernel. Grid: b * s_q * max_splits * num_head_groups CTAs, as the portable
/// kernel's.
template <class T>
__global__ void __launch_bounds__(T::kThreads, 1) sparse_decode_sm90_kernel(const __grid_constant__ DecodeParams p) {
  const Smem<T> sm;
  decode_cta<T>(p, sm, [&](int warpgroup, int chunk_begin, int chunk_end) {
    // NOTE: one call per role, each under its own register budget.
    if (warpgroup == 0) {
      set_max_regs<T::kLaunchRegs, T::kSoftmaxRegs>();
      consume<T, 0>(sm, p, chunk_begin, chunk_end);
    } else {
      set_max_regs<T::kLaunchRegs, T::kPvRegs>();
      consume<T, 1>(sm, p, chunk_begin, chunk_end);
    }
  });
}

}  // namespace model1::cuda::sm90
