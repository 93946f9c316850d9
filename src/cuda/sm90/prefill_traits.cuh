// model1 CUDA Hopper (sm_90a) sparse prefill: the traits struct of one kernel configuration
// (threads and roles, register budgets, tiles, shared-memory layout). The consumer side is the
// decode kernel's (sm90/decode_kernel.cuh, consume_chunks), so the names it reads match
// DecodeTraits.
#pragma once

#include <cstdint>

#include "cuda/common/decode_params.h"

namespace model1::cuda::sm90 {

/// A persistent CTA walks work items (query token, group of 64 heads): round-robin (w, w +
/// gridDim.x, ... from w = blockIdx.x), or with topk_length a contiguous range of tokens
/// balanced by key count (prefill_item_range). Three warpgroups:
///   WG 0, 1  consumers, as in decode (consume_chunks): WG 0 computes S = Q K^T for the
///            chunk's 64 keys, the online softmax and O += P V for value columns 0..255, WG 1
///            O += P V for columns 256..511, with P handed over as A fragments (kPRegs);
///   WG 2     producer: gathers the chunk's 64 bf16 key rows by cp.async (16-byte pieces,
///            zero-filled and never read for an invalid index) straight into the
///            128-byte-swizzled tile wgmma reads; no conversion, so one warpgroup keeps up. It
///            also copies each work item's Q tile, once WG 0's last S of the previous item is
///            done, so the next item's Q and first key tiles arrive during the epilogue.
template <int kDQk_>
struct PrefillTraits {
  static constexpr int kDQk = kDQk_;
  static constexpr int kDV = 512;  // V = the first 512 dims of a key row
  static constexpr int kRows = 64;
  static constexpr int kBlockN = 64;
  static constexpr int kConsumerWarpgroups = 2;
  static constexpr int kProducerWarpgroups = 1;
  static constexpr int kConsumerThreads = 128 * kConsumerWarpgroups;
  static constexpr int kProducerThreads = 128 * kProducerWarpgroups;
  static constexpr int kThreads = kConsumerThreads + kProducerThreads;
  static constexpr int kDimsPerConsumer = kDV / kConsumerWarpgroups;     // O columns (256)
#ifndef MODEL1_PREFILL_PV_WIDE
#define MODEL1_PREFILL_PV_WIDE 1
#endif
  // P V as one N = 256 wgmma a k-step (the 384-thread launch bound leaves 168 registers, room
  // for its 128 accumulators), not two N = 128 halves as in decode.
  static constexpr bool kPvWide = MODEL1_PREFILL_PV_WIDE != 0;
#ifndef MODEL1_PREFILL_P_REGS
#define MODEL1_PREFILL_P_REGS 1
#endif
  // P to WG 1 as its A fragments (ordinary shared loads, wgmma RS) instead of a swizzled tile
  // its wgmma reads (which needs WG 0's proxy fence before the handover): 1-3% faster
  // (PERF.md, twenty-fifth session). 0 builds the shared-tile handover decode uses.
  static constexpr bool kPRegs = MODEL1_PREFILL_P_REGS != 0;
#ifndef MODEL1_PREFILL_Q_REG_BLOCKS
#define MODEL1_PREFILL_Q_REG_BLOCKS 2
#endif
  // Q's first kQRegBlocks 64-column blocks as WG 0's A fragments, loaded once per item: those
  // k-steps of S run as wgmma RS and read only the key tile from shared memory (S's operand
  // bytes at d_qk 512: 128 -> 112 KiB a chunk). 0.986-0.999 of the time before (PERF.md,
  // twenty-sixth session); 3 blocks measured the same and serialise the wgmma at these budgets.
  // 0 builds S from shared Q only.
  static constexpr int kQRegBlocks = MODEL1_PREFILL_Q_REG_BLOCKS;
  static constexpr int kCluster = 1;  // the shared consumer loop's stage release: this CTA only
  // Producer: groups of 8 threads, one 16-byte piece of every 64-column block per thread;
  // a group serves keys grp, grp + 16, grp + 32, grp + 48 of each chunk.
  static constexpr int kThreadsPerKeyGroup = 8;
  static constexpr int kKeyGroups = kProducerThreads / kThreadsPerKeyGroup;  // 16
  static constexpr int kKeysPerGroup = kBlockN / kKeyGroups;                // 4
  // NOTE: registers: 65536 / 384 = 170 per thread at launch, 168 after rounding down to 8.
  // WG 0 holds O (128), S (32), the P fragments (16) and the softmax state; WG 1 O, addresses
  // and the staged epilogue; the producer a few addresses. NOTE: ptxas's allocation is not
  // monotonic in these budgets; 248 / 192 / 64 (the whole launch allocation) is a split where
  // neither head dim spills (several neighbours spill 8 to 80 bytes; the build fails on spills).
  static constexpr int kSoftmaxRegs = 248;
  static constexpr int kPvRegs = 192;
  static constexpr int kProducerRegs = 64;
  static constexpr int kLaunchRegs = (65536 / kThreads) / 8 * 8;
  static_assert(kProducerThreads * kProducerRegs + 128 * (kSoftmaxRegs + kPvRegs) <= kThreads * kLaunchRegs,
                "register budgets must fit the launch allocation (setmaxnreg.inc takes only released registers)");
  static_assert(kProducerRegs % 8 == 0 && kSoftmaxRegs % 8 == 0 && kPvRegs % 8 == 0,
                "setmaxnreg counts are multiples of 8");

  // Shared memory: as DecodeTraits (bf16 tiles in 64-column blocks of [rows][128 bytes],
  // 128-byte swizzle, 1024-byte aligned blocks).
  static constexpr int kColBlocks = kDQk / 64;  // 8 or 9
  static_assert(kQRegBlocks >= 0 && kQRegBlocks <= 3, "Q fragments: 0..3 column blocks (registers of WG 0)");
  static constexpr int kBlockBytes = 64 * 128;
  static constexpr int kTileBytes = kColBlocks * kBlockBytes;
  static constexpr int kStages = 2;
  static constexpr int kQOffset = 0;
  static constexpr int kKOffset = kQOffset + kTileBytes;
  static constexpr int kPOffset = kKOffset + kStages * kTileBytes;
  static constexpr int kValidOffset = kPOffset + kBlockBytes;
  // Row statistics, [2][64] f32 each: red_max(0) / red_sum(0) carry WG 0's row maxima and
  // sums to WG 1 after the loop (hand_row_stats); red_max(1) is the per-chunk rescale
  // factor WG 0 hands to WG 1; red_sum(1) is unused since the role split (kept: same layout).
  static constexpr int kRedMaxOffset = kValidOffset + kStages * kBlockN;
  static constexpr int kRedSumOffset = kRedMaxOffset + kConsumerWarpgroups * kRows * 4;
  static constexpr int kBarOffset = kRedSumOffset + kConsumerWarpgroups * kRows * 4;
  // full[kStages], empty[kStages], then p_full, p_empty (P handed from WG 0 to WG 1 and back)
  static constexpr int kBarBytes = (2 * kStages + 2) * 8;
  // The persistent CTA's Q tile: q_full (the producer copied a work item's Q), q_empty (WG 0's
  // last S of the work item complete).
  static constexpr int kQBarOffset = kBarOffset + kBarBytes;
  // The row statistics' handover from WG 0 to WG 1 after an item: stats_full, stats_empty.
  static constexpr int kStatsBarOffset = kQBarOffset + 2 * 8;
  // The CTA's work items: begin, end, step (int32, prefill_item_range): each role reads them
  // after its register budget changes, so they are not live across setmaxnreg.
  static constexpr int kRangeOffset = kStatsBarOffset + 2 * 8;
  static constexpr int kUsedBytes = kRangeOffset + 4 * 4;
  static constexpr int kAlign = 1024;
  static constexpr int kSmemBytes = kUsedBytes + kAlign;
  static constexpr int kMaxSmemBytes = 227 * 1024;
  static_assert(kSmemBytes <= kMaxSmemBytes, "shared memory budget of one H100/H200 block");
  static_assert(kDQk == 512 || kDQk == 576, "d_qk 512 or 576");
  static_assert(kBlockN == kChunkKeys, "the consumer loop's 64-key tile");
  static_assert(kBlockN % kKeyGroups == 0, "whole keys per producer group");
  static_assert(kBarOffset % 8 == 0, "mbarrier alignment");
  // The full barrier of a stage completes with two arrivals per producer thread: a plain one
  // (after its validity flags) and one when its cp.async pieces have landed.
  static constexpr int kFullArrivals = 2 * kProducerThreads;
  static constexpr int kQFullArrivals = 2 * kProducerThreads;  // the same for the Q tile
};

}  // namespace model1::cuda::sm90
