// model1 CUDA portable (sm_80+) sparse decode: cache formats as the kernel sees them and the
// traits struct holding every derived constant of one kernel configuration.
#pragma once

#include <cstdint>

#include "cuda/common/decode_params.h"
#include "model1/kv_format.h"

#ifndef MODEL1_DECODE_SPLITK
#define MODEL1_DECODE_SPLITK 1
#endif

namespace model1::cuda::portable {

/// MODEL1_FP8: a key's 576 data bytes (448 e4m3 + 64 bf16) and its 8 scale bytes are staged
/// raw in shared memory, then dequantized to bf16.
struct FormatModel1Fp8 {
  static constexpr const char* kName = "model1_fp8";
  static constexpr int kDQk = model1_fp8::kDQk;                    // 512
  static constexpr bool kStaged = true;
  static constexpr int kStageDataBytes = model1_fp8::kDataRowBytes;  // 576 per key
  static constexpr int kStageScaleBytes = model1_fp8::kScaleRowBytes;  // 8 per key
  static constexpr int kNopeGroups = model1_fp8::kNopeDims / 8;    // 56 groups of 8 dims
  static constexpr int kGroupsPerKey = model1_fp8::kDQk / 8;       // 64
  static constexpr int kGroupsPerTile = model1_fp8::kTileDims / 8;  // 8
};

/// V32_FP8: the whole 656-byte record is staged (scales are inside it).
struct FormatV32Fp8 {
  static constexpr const char* kName = "v32_fp8";
  static constexpr int kDQk = v32_fp8::kDQk;  // 576
  static constexpr bool kStaged = true;
  static constexpr int kStageDataBytes = v32_fp8::kBytesPerToken;  // 656 per key
  static constexpr int kStageScaleBytes = 0;
  static constexpr int kNopeGroups = v32_fp8::kNopeDims / 8;       // 64
  static constexpr int kGroupsPerKey = v32_fp8::kDQk / 8;          // 72
  static constexpr int kGroupsPerTile = v32_fp8::kTileDims / 8;    // 16
};

/// BF16 rows are copied straight into the key tile (no staging).
template <int kDQk_>
struct FormatBf16 {
  static constexpr const char* kName = "bf16";
  static constexpr int kDQk = kDQk_;
  static constexpr bool kStaged = false;
  static constexpr int kStageDataBytes = 0;
  static constexpr int kStageScaleBytes = 0;
  static constexpr int kRowBytes = 2 * kDQk_;
};

/// One CTA: kWarps warps (8 or 16), kRows = 16 * kRowGroups heads of one (request, token,
/// split, head group).
/// kCompact (FP8 formats, one row group): the shared-memory fallback for GPUs offering less
/// than the default configurations need (99 KiB per block on sm_86/89/120): no staging buffer;
/// each chunk goes from global memory through registers, is dequantized exactly (the same
/// functions) and stored to the key tile. The chunk schedule is the same.
/// S = Q K^T: warp w owns row group w / kParts and the kParts warps of a row group split the
/// chunk's keys. O = P V: warp w owns the kPvM row groups of PV group w / kPvWarps (32 rows
/// when kPvM = 2) and the kPvWarps warps of a PV group split the d_v columns.
template <class Format, int kRowGroups_, bool kCompact_ = false>
struct DecodeTraits {
  using F = Format;
  static constexpr bool kCompact = kCompact_;
  // Raw bytes staged by cp.async, then dequantized from shared memory (default FP8 path).
  static constexpr bool kStaged = Format::kStaged && !kCompact_;
  // Dequantized from global memory through registers (compact FP8 path).
  static constexpr bool kDirectDequant = Format::kStaged && kCompact_;
  // NOTE: the kernel is latency-bound (one CTA per SM: shared memory); 16 warps where the
  // split of keys / columns allows it (32 or 64 rows) double the warps that hide latency.
  // BF16 caches at 64 rows stay at 8 warps: their direct loads need more than the 128
  // registers per thread that 16 warps leave (ptxas spills).
  static constexpr int kThreads = kRowGroups_ == 1 || (kRowGroups_ == 4 && !Format::kStaged) ? 256 : 512;
  static constexpr int kWarps = kThreads / 32;
  static constexpr int kRowGroups = kRowGroups_;
  static constexpr int kRows = 16 * kRowGroups;        // heads per CTA (mma M = 16 per group)
  static constexpr int kParts = kWarps / kRowGroups;   // warps sharing one row group
  static constexpr int kBlockN = kChunkKeys;           // keys per main-loop step
  static constexpr int kDQk = F::kDQk;
  static constexpr int kDV = 512;
  static constexpr int kKeysPerWarp = kBlockN / kParts;  // S columns per warp
  static constexpr int kSTiles = kKeysPerWarp / 8;       // m16n8 tiles of S per warp
  // NOTE: P V with two m16 tiles per warp (4 row groups): each V fragment (ldmatrix.trans)
  // feeds two mma instead of one, a third less shared-memory traffic in P V for the same
  // accumulator registers.
  static constexpr int kPvM = kRowGroups == 4 ? 2 : 1;     // m16 tiles of O per warp
  static constexpr int kPvGroups = kRowGroups / kPvM;      // PV groups (kPvM row groups each)
  static constexpr int kPvWarps = kWarps / kPvGroups;      // warps sharing one PV group
  static constexpr int kDimsPerWarp = kDV / kPvWarps;      // O columns per warp
  static constexpr int kOTiles = kDimsPerWarp / 8;         // m16n8 tiles of O per warp and m tile
  static constexpr int kThreadsPerKey = kThreads / kBlockN;
  // k-steps of the split-K S = Q K^T loop unrolled together (the other S loop is
  // software-pipelined in compute_chunk). NOTE: under the 128-register cap of 16 warps ptxas's
  // allocation is not monotonic in this: 16 (the whole d_qk half at 512, 16 + 2 at 576) is the
  // count at which neither format spills in the sm_80 nor the sm_90 machine code; 1, 2, 4 and 8
  // spill 4-40 bytes in one of them.
  static constexpr int kSUnroll = 16;
  // NOTE: S = Q K^T split along d_qk inside each row group. 64 rows (4 warps a row group): 2
  // key halves x 2 d_qk halves, each Q fragment feeding 4 mma instead of 2. 16 and 32 rows (8
  // warps a row group, 8 keys each): 4 key quarters x 2 d_qk halves, 2 mma instead of 1. The
  // two d_qk halves of a warp's final keys meet through shared memory. On by default since the
  // twelfth session, 3-6% faster (PERF.md); MODEL1_DECODE_SPLITK=0 at build time restores the
  // unsplit loop. Not in V3.2's compact configuration: its 4 KiB exchange buffer would pass
  // the 99 KiB.
  static constexpr bool kSplitK = MODEL1_DECODE_SPLITK &&
                                  ((kRowGroups_ == 4 && kThreads == 512) || kThreads / 32 / kRowGroups_ == 8) &&
                                  !(kCompact_ && Format::kDQk > 512);
  // Split-K: key groups of a row group (the d_qk halves split each), the keys and n8 tiles of
  // S a warp accumulates over its d_qk half, and the tiles it keeps after the exchange.
  static constexpr int kKeyGroups = kThreads / 32 / kRowGroups_ / 2;
  static constexpr int kLoopTiles = kSplitK ? kChunkKeys / kKeyGroups / 8 : 0;
  static constexpr int kOwnTiles = kLoopTiles / 2;

  // NOTE: 16 bytes of padding per shared row: row pitches become odd multiples of 16 bytes,
  // so the 8 row addresses of an ldmatrix hit 8 different bank groups.
  static constexpr int kPad = 8;
  static constexpr int kQStride = kDQk + kPad;    // bf16 elements per Q row
  static constexpr int kKStride = kDQk + kPad;    // bf16 elements per K row
  static constexpr int kPStride = kBlockN + kPad;  // bf16 elements per P row

  // Shared-memory layout (bytes).
  static constexpr int kQOffset = 0;
  static constexpr int kQBytes = kRows * kQStride * 2;
  static constexpr int kKOffset = kQOffset + kQBytes;
  static constexpr int kKBytes = kBlockN * kKStride * 2;
  static constexpr int kPOffset = kKOffset + kKBytes;
  static constexpr int kPBytes = kRows * kPStride * 2;
  static constexpr int kStageDataOffset = kPOffset + kPBytes;
  // NOTE: the compact path keeps only the chunk's key addresses here: one data-row pointer
  // and (MODEL1) one scale-row pointer per key, null for invalid keys.
  static constexpr int kPtrBytes = static_cast<int>(sizeof(const uint8_t*));
  static constexpr int kStageDataBytes =
      kStaged ? kBlockN * F::kStageDataBytes : (kDirectDequant ? kBlockN * kPtrBytes : 0);
  static constexpr int kStageScaleOffset = kStageDataOffset + kStageDataBytes;
  static constexpr int kStageScaleBytes =
      kStaged ? kBlockN * F::kStageScaleBytes : (kDirectDequant && F::kStageScaleBytes > 0 ? kBlockN * kPtrBytes : 0);
  static constexpr int kRedMaxOffset = kStageScaleOffset + kStageScaleBytes;
  static constexpr int kRedBytes = kWarps * 16 * 4;  // one float per (warp, row)
  static constexpr int kRedSumOffset = kRedMaxOffset + kRedBytes;
  static constexpr int kValidOffset = kRedSumOffset + kRedBytes;
  static constexpr int kStageValidOffset = kValidOffset + kBlockN;
  static constexpr int kXchgOffset = kStageValidOffset + kBlockN;
  static constexpr int kXchgBytes = kSplitK ? kWarps * kOwnTiles * 4 * 32 * 4 : 0;  // the partner's S tiles
  static constexpr int kSmemBytes = kXchgOffset + kXchgBytes;

  static constexpr int kMaxSmemBytes = 227 * 1024;  // sm_90 / sm_80 opt-in limit per block
  static_assert(kRowGroups == 1 || kRowGroups == 2 || kRowGroups == 4, "1, 2 or 4 row groups");
  static_assert(kWarps % kRowGroups == 0, "warps must split evenly over row groups");
  static_assert(kKeysPerWarp % 8 == 0, "each warp needs whole n8 tiles of S");
  static_assert(kSTiles == 1 || kSTiles % 2 == 0, "S tiles load in pairs (ldmatrix.x4)");
  static_assert(kOTiles % 2 == 0, "O tiles load in pairs (ldmatrix.x4.trans)");
  static_assert(kPvWarps == kParts * kPvM, "a PV group is kPvM whole row groups");
  // Named barriers: 0 is __syncthreads, 1..kRowGroups the row groups, then the PV groups.
  static constexpr int kRowBarrier = 1;
  static constexpr int kPvBarrier = 1 + kRowGroups;
  static_assert(kPvBarrier + kPvGroups <= 16, "16 hardware barriers per CTA");
  static_assert(kDQk % 16 == 0 && kBlockN % 16 == 0, "mma k-steps are 16 wide");
  static_assert(kThreads % kBlockN == 0, "whole threads per key in the loader");
  static_assert((kQStride * 2) % 16 == 0 && (kKStride * 2) % 16 == 0 && (kPStride * 2) % 16 == 0,
                "16-byte aligned shared rows");
  static_assert(kKOffset % 16 == 0 && kPOffset % 16 == 0 && kStageDataOffset % 16 == 0 &&
                    kStageScaleOffset % 16 == 0 && kRedMaxOffset % 16 == 0,
                "16-byte aligned shared regions");
  static_assert(!kSplitK || ((kParts == 4 || kParts == 8) && kOwnTiles * 8 == kKeysPerWarp && kLoopTiles % 2 == 0 &&
                              kDQk % 32 == 0),
                "split-K S layout");
  static_assert(kXchgOffset % 16 == 0, "16-byte aligned exchange buffer");
  static_assert(F::kStageDataBytes % 16 == 0, "staged rows must take 16-byte cp.async");
  static_assert(kSmemBytes <= kMaxSmemBytes, "shared memory budget");
  // 99 KiB: the opt-in limit per block of sm_86 / sm_89 / sm_120 (the smallest sm_80+ parts).
  static constexpr int kCompactSmemLimit = 99 * 1024;
  static_assert(!kCompact || kRowGroups == 1, "the compact configuration has one row group");
  static_assert(!kCompact || kSmemBytes <= kCompactSmemLimit,
                "the compact configuration must fit the 99 KiB per block of consumer GPUs");
};

}  // namespace model1::cuda::portable
