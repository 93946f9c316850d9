// model1 CUDA Hopper (sm_90a) sparse decode: the traits struct of one kernel configuration
// (threads and roles, register budgets, tiles, shared-memory layout) and the pipeline state.
#pragma once

#include <cstdint>

#include "cuda/common/decode_params.h"
#include "cuda/portable/decode_traits.cuh"

namespace model1::cuda::sm90 {

/// The decode producers' part of the shared memory, from byte kFrom on (both decode traits):
/// kBulk (MODEL1), a ring of kSlots raw 576-byte rows per producer warp filled by bulk copies,
/// their mbarriers, and per warp the scale bytes of its keys of the current chunk, transposed
/// ([tile][key]); V3.2 producers load through registers and use none of it.
template <bool kBulk_, int kWarps, int kKeysPerWarp, int kFrom>
struct ProducerRing {
  static constexpr bool kBulk = kBulk_;
  static constexpr int kSlots = kBulk ? 4 : 0;  // raw rows per producer warp
  static constexpr int kSlotBytes = model1_fp8::kDataRowBytes;
  static constexpr int kOffset = (kFrom + 15) / 16 * 16;
  static constexpr int kBarOffset = kOffset + kWarps * kSlots * kSlotBytes;
  static constexpr int kScaleBufOffset = kBarOffset + kWarps * kSlots * 8;
  static constexpr int kEnd = kScaleBufOffset + (kBulk ? kWarps * 8 * kKeysPerWarp : 0);
  static_assert(kOffset % 16 == 0 && kBarOffset % 8 == 0, "bulk-copy / mbarrier alignment");
  static_assert(kSlots == 0 || kSlots <= kKeysPerWarp, "a producer warp refills slots from at most its next chunk");
};

/// One CTA = 64 heads of one (request, query token, split): h_q 64 is one head group, h_q 128
/// two. Four warpgroups:
///   WG 0     consumer (softmax): S = Q K^T for the chunk's 64 keys (wgmma m64n64k16), the
///            online softmax, P to shared memory for WG 1, and O += P V for value columns
///            0..255 with P from registers (wgmma RS, two m64n128k16);
///   WG 1     consumer (P V): O += P V for value columns 256..511 with P from shared memory,
///            overlapping WG 0's S of the next chunk (consume_chunks);
///   WG 2, 3  producers: gather the chunk's keys from the paged cache (bounds-checked),
///            dequantize FP8 exactly to bf16 and store them in the 128-byte-swizzle layout
///            wgmma reads, into a two-stage ring of key tiles. Eight producer warps: the
///            producer side bounds the speed (PERF.md: 3 warpgroups with one producer
///            warpgroup were 1.3x slower on model1-c1).
/// Format: portable::FormatModel1Fp8 (d_qk 512) or portable::FormatV32Fp8 (d_qk 576).
/// kCluster 2 (h_q 128): the two head groups of one (request, token, split) run as a cluster of
/// two CTAs that share the conversion: each CTA's producers gather and convert half of every
/// chunk's keys (rows 32 r .. 32 r + 31 of the tile in CTA rank r) into its own key tile, and the
/// copy engine copies the converted rows into the partner's tile (cp.async.bulk shared::cta ->
/// shared::cluster, completing on the partner's full barrier). A stage is free once the
/// consumers of both CTAs released it.
template <class Format, int kCluster_ = 1>
struct DecodeTraits {
  using F = Format;
  static constexpr int kCluster = kCluster_;
  static constexpr int kDQk = F::kDQk;
  static constexpr int kDV = 512;
  static constexpr int kRows = 64;                  // heads per CTA (wgmma M)
  static constexpr int kBlockN = kChunkKeys;        // keys per tile (the schedule's chunk)
  static constexpr int kConsumerWarpgroups = 2;
  static constexpr int kProducerWarpgroups = 2;
  static constexpr int kConsumerThreads = 128 * kConsumerWarpgroups;
  static constexpr int kProducerThreads = 128 * kProducerWarpgroups;
  static constexpr int kThreads = kConsumerThreads + kProducerThreads;
  static constexpr int kProducerWarps = kProducerThreads / 32;
  static constexpr int kKeysPerCta = kBlockN / kCluster;                      // keys this CTA converts
  static constexpr int kKeysPerProducerWarp = kKeysPerCta / kProducerWarps;  // 8 (4 in a cluster)
  // Arrivals completing a full barrier's phase: every producer thread of this CTA (in a
  // cluster one lane per warp also expects the bytes the partner's warp copies here).
  static constexpr int kFullArrivals = kProducerThreads;
  static constexpr int kProducerBatch = 2;  // V3.2: keys whose loads a warp has in flight
  static constexpr int kProducerGroup = 2;  // MODEL1: keys a warp converts together
  // NOTE: registers: 65536 / 512 threads = 128 per thread at launch. The producers give
  // registers back and the consumers take them (setmaxnreg; ptxas compiles each role under its
  // own budget, but checks every single instruction against the launch bound: hence P V in
  // N = 128 halves). A consumer holds O (64 x 256 f32 over 128 threads = 128 registers); WG 0
  // also S, P and the softmax state; a producer's budget bounds how many keys it converts or
  // keeps in flight at once (kProducerGroup, kProducerBatch; larger ones spill).
  // NOTE: ptxas's allocation under these budgets is not monotonic: these are splits of the
  // whole launch allocation where neither format spills (neighbouring ones spill 4 to 1800
  // bytes; the build fails on spills). MODEL1: since WG 0 no longer holds S and P at once (the
  // next S is issued after P V completes), WG 0 fits in 208 and WG 1 in 160, and the
  // producers 72 (64 before): the 128-head presets 7-8% faster, two keys converted together
  // at 64 heads too (they spilled at 64) 1-2% (PERF.md). V3.2's producers, through registers,
  // measured the same at 64 / 216 / 160 and keep their split.
  static constexpr bool kModel1 = F::kStageScaleBytes > 0;
  static constexpr int kProducerRegs = kModel1 ? 72 : 56;
  static constexpr int kSoftmaxRegs = kModel1 ? 208 : 232;  // WG 0: O (128), S (32) or P fragments (16), state
  // Q's column blocks as WG 0's A fragments (prefill's kQRegBlocks): none in decode. One block
  // measured 3-5% slower in MODEL1's 128-head clusters, as much as the budgets it needs (224 /
  // 160 / 64) cost alone, and noise in V3.2 (PERF.md, twenty-sixth session;
  // docs/experiments/2026-12-02-q-fragments.patch).
  static constexpr int kQRegBlocks = 0;
  static constexpr int kPvRegs = kModel1 ? 160 : 168;       // WG 1: O (128), addresses
  // NOTE: setmaxnreg.inc only takes registers the CTA's other warps released with .dec: the
  // launch allocation (65536 / threads, rounded down to 8) must cover every budget, or the
  // consumers wait for registers forever.
  static constexpr int kLaunchRegs = (65536 / (128 * (kConsumerWarpgroups + kProducerWarpgroups))) / 8 * 8;
  static_assert(kProducerThreads * kProducerRegs + 128 * (kSoftmaxRegs + kPvRegs) <=
                    (kConsumerThreads + kProducerThreads) * kLaunchRegs,
                "register budgets must fit the launch allocation");
  static_assert(kProducerRegs % 8 == 0 && kSoftmaxRegs % 8 == 0 && kPvRegs % 8 == 0,
                "setmaxnreg counts are multiples of 8");
  static constexpr int kDimsPerConsumer = kDV / kConsumerWarpgroups;     // O columns (256)
  static constexpr bool kPvWide = false;  // P V as two N = 128 wgmma (the launch bound)

  // Shared memory: bf16 tiles in 64-column blocks of [rows][128 bytes], 128-byte swizzle
  // (16-byte chunk c of row r at position c ^ (r % 8)); every block 1024-byte aligned.
  static constexpr int kColBlocks = kDQk / 64;             // 8 (512) or 9 (576)
  static constexpr int kBlockBytes = 64 * 128;             // 64 rows (heads or keys) x 64 dims
  static constexpr int kTileBytes = kColBlocks * kBlockBytes;
  static constexpr int kStages = 2;
  static constexpr int kQOffset = 0;
  static constexpr int kKOffset = kQOffset + kTileBytes;
  static constexpr int kPOffset = kKOffset + kStages * kTileBytes;  // P: 64 heads x 64 keys
  static constexpr int kValidOffset = kPOffset + kBlockBytes;        // [kStages][64] bytes
  // Row statistics, [2][64] f32 each: red_max(0) / red_sum(0) carry WG 0's row maxima and
  // sums to WG 1 after the loop (publish_row_stats); red_max(1) is the per-chunk rescale
  // factor WG 0 hands to WG 1; red_sum(1) is unused since the role split (kept: same layout).
  static constexpr int kRedMaxOffset = kValidOffset + kStages * kBlockN;
  static constexpr int kRedSumOffset = kRedMaxOffset + kConsumerWarpgroups * kRows * 4;
  static constexpr int kBarOffset = kRedSumOffset + kConsumerWarpgroups * kRows * 4;
  // full[kStages], empty[kStages], then p_full, p_empty (P handed from WG 0 to WG 1 and back)
  static constexpr int kBarBytes = (2 * kStages + 2) * 8;
  // Cluster only: per stage, released by the consumers of both CTAs (wait_stage_free); then
  // the two exit barriers (this CTA's consumers done, the partner's consumers done).
  static constexpr int kPairBarOffset = kBarOffset + kBarBytes;
  static constexpr int kPairBarBytes = kCluster == 2 ? (kStages + 2) * 8 : 0;
  // NOTE: MODEL1 keys reach the producer through bulk copies (cp.async.bulk, one 576-byte data
  // row per key) into a ring of raw rows per producer warp, so many keys are in flight without
  // registers; the producer dequantizes from there. V3.2's larger tiles leave no room for the
  // ring: its producer loads through registers (kProducerBatch keys in flight per warp).
  using Ring = ProducerRing<F::kStageScaleBytes != 0, kProducerWarps, kKeysPerProducerWarp, kPairBarOffset + kPairBarBytes>;
  static constexpr int kUsedBytes = Ring::kEnd;
  static constexpr int kAlign = 1024;                // swizzle atoms
  static constexpr int kSmemBytes = kUsedBytes + kAlign;  // slack to align the dynamic base
  static constexpr int kMaxSmemBytes = 227 * 1024;
  static_assert(kSmemBytes <= kMaxSmemBytes, "shared memory budget of one H100/H200 block");
  static_assert(kDQk % 64 == 0 && kDV % 64 == 0, "64-dim column blocks");
  static_assert(kBlockN == 64, "one 64-key tile per schedule chunk");
  static_assert(kCluster == 1 || kCluster == 2, "one CTA, or a cluster of two");
  // Converted rows a producer warp copies into the partner's tile per chunk (one bulk copy per
  // column block: the warp's rows are contiguous inside each 1024-byte swizzle atom).
  static constexpr uint32_t kPartnerBytesPerWarp = kCluster == 2 ? kColBlocks * kKeysPerProducerWarp * 128 : 0;
  static_assert(kKeysPerCta % kProducerWarps == 0 && kKeysPerProducerWarp % kProducerBatch == 0,
                "whole key batches per producer warp");
  static_assert(kKeysPerProducerWarp <= 32, "one lane per key of a producer warp");


  // Named barriers (0 is __syncthreads) among the two consumer warpgroups: Q loaded, the
  // epilogue's row statistics and staging.
  static constexpr int kBarrierMax = 1;
  static constexpr int kBarrierP = 2;
};

/// One CTA = all kHeads (8, 16 or 32) heads of one (request, query token, split), with the keys
/// on the wgmma M dimension and the heads on N (no padding of the heads to 64). Five
/// warpgroups:
///   WG 0     consumer: S^T = K Q^T for the chunk's 64 keys (wgmma m64nHk16, A = the key tile,
///            B = the Q tile, both K-major), the online softmax per head (column), P^T to
///            shared memory, and O^T += V^T P^T (eight m64nHk16 per k-step: A = the key tile
///            read MN-major, B = P^T);
///   WG 1..4  producers: the decode producers (produce_bulk / produce) with 16 warps of 4 keys
///            each instead of 8 warps of 8: the consumer needs few registers, and the producer
///            side bounds the speed (PERF.md: two sets of 8 warps of 8 keys taking turns over
///            chunks were 1.1x slower, as a set then waited for the consumer to free its stage).
template <class Format, int kHeads_>
struct DecodeSmallTraits {
  using F = Format;
  static constexpr int kHeads = kHeads_;  // wgmma N
  static_assert(kHeads == 8 || kHeads == 16 || kHeads == 32, "8, 16 or 32 heads");
  static constexpr int kDQk = F::kDQk;
  static constexpr int kDV = 512;
  static constexpr int kRows = kHeads;  // row statistics per head
  static constexpr int kBlockN = kChunkKeys;
  static constexpr int kConsumerWarpgroups = 1;
  static constexpr int kProducerWarpgroups = 4;
  static constexpr int kConsumerThreads = 128;
  static constexpr int kProducerThreads = 128 * kProducerWarpgroups;
  static constexpr int kThreads = kConsumerThreads + kProducerThreads;  // 640
  static constexpr int kProducerWarps = kProducerThreads / 32;           // 16
  static constexpr int kKeysPerProducerWarp = kBlockN / kProducerWarps;  // 4
  static constexpr int kCluster = 1;  // one CTA (the decode producers' cluster mode unused)
  static constexpr int kKeysPerCta = kBlockN;
  static constexpr int kFullArrivals = kProducerThreads;
  static constexpr uint32_t kPartnerBytesPerWarp = 0;
  static constexpr bool kModel1 = F::kStageScaleBytes > 0;
  // NOTE: registers: 65536 / 640 threads = 96 at launch (rounded to 8). The consumer holds O^T
  // (8 x kHeads / 2 f32) and S^T, which leaves the producers 72 registers: enough for MODEL1's
  // to convert two keys at once, independent chains the scheduler interleaves (four V3.2 keys
  // in flight spill there). 32 heads: 1% faster at b = 256 than 64 producer registers and a
  // 224-register consumer (PERF.md).
  static constexpr int kProducerBatch = 2;
  static constexpr int kProducerGroup = 2;
  static constexpr int kProducerRegs = 72;
  static constexpr int kConsumerRegs = kHeads == 32 ? 192 : 168;
  static constexpr int kLaunchRegs = (65536 / kThreads) / 8 * 8;
  static_assert(kProducerThreads * kProducerRegs + kConsumerThreads * kConsumerRegs <= kThreads * kLaunchRegs,
                "register budgets must fit the launch allocation");

  // Shared memory: the key tiles as in DecodeTraits ([64 keys][128 bytes] blocks, 128-byte
  // swizzle); Q as [kHeads][128 bytes] blocks; P^T one [kHeads][64 keys] block.
  static constexpr int kColBlocks = kDQk / 64;
  static constexpr int kBlockBytes = 64 * 128;         // key-tile block: 64 keys x 64 dims
  static constexpr int kQBlockBytes = kHeads * 128;    // Q block: kHeads x 64 dims
  static constexpr int kTileBytes = kColBlocks * kBlockBytes;
  static constexpr int kStages = 2;
  static constexpr int kQOffset = 0;
  static constexpr int kKOffset = kQOffset + kColBlocks * kQBlockBytes;
  static constexpr int kPOffset = kKOffset + kStages * kTileBytes;  // P^T: kHeads x 64 keys
  static constexpr int kValidOffset = kPOffset + kQBlockBytes;
  // Row statistics, [4 warps][kHeads] f32 each: the chunk's per-warp column maxima (then, in the
  // epilogue, each head's factor and empty flag), the per-warp column sums; then the final m per
  // head.
  static constexpr int kRedMaxOffset = kValidOffset + kStages * kBlockN;
  static constexpr int kRedSumOffset = kRedMaxOffset + 4 * kHeads * 4;
  static constexpr int kStatOffset = kRedSumOffset + 4 * kHeads * 4;  // [kHeads]: final m (2 x kHeads reserved)
  static constexpr int kBarOffset = kStatOffset + 2 * kHeads * 4;
  static constexpr int kBarBytes = (2 * kStages + 2) * 8;
  using Ring = ProducerRing<kModel1, kProducerWarps, kKeysPerProducerWarp, kBarOffset + kBarBytes>;
  static constexpr int kUsedBytes = Ring::kEnd;
  static constexpr int kAlign = 1024;
  static constexpr int kSmemBytes = kUsedBytes + kAlign;
  static constexpr int kMaxSmemBytes = 227 * 1024;
  static_assert(kSmemBytes <= kMaxSmemBytes, "shared memory budget of one H100/H200 block");
  static_assert(kKOffset % 1024 == 0 && kPOffset % 1024 == 0, "swizzle atoms 1024-byte aligned");
  static_assert(kKeysPerProducerWarp == 8 || kKeysPerProducerWarp == 4, "the decode producers' lane mapping");

  // Named barriers among the consumer warpgroup's 4 warps.
  static constexpr int kBarrierQ = 1;
  static constexpr int kBarrierMax = 2;
  static constexpr int kBarrierP = 3;
};

/// Stage and phase of a multi-stage ring, advanced together (ARCHITECTURE.md: no scattered
/// index arithmetic). The phase flips each time the stage wraps around.
template <int kStages>
struct PipelineState {
  int stage = 0;
  uint32_t phase = 0;
  __device__ __forceinline__ void advance() {
    if (++stage == kStages) {
      stage = 0;
      phase ^= 1u;
    }
  }
};

}  // namespace model1::cuda::sm90
