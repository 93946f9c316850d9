// model1 CUDA portable (sm_80+) sparse prefill: the traits struct holding every derived
// constant of one kernel configuration (head dim, heads per CTA, pipeline depth), and the
// shared-memory swizzle of its tiles.
#pragma once

#include <cstdint>

namespace model1::cuda::portable {

/// One CTA = (query token, group of kRows heads), 8 warps.
///
/// S = Q K^T: warp w owns row group w / kParts (16 heads) and the kKeysPerWarp keys
/// [(w % kParts) * kKeysPerWarp, ...) of the 64-key chunk (mma M = heads, N = keys).
/// O += P V: warp w owns the 64 value dims [64 w, 64 w + 64) for every row of the CTA, so a V
/// fragment loaded from shared memory feeds all kRowGroups row groups.
template <int kDQk_, int kRowGroups_, int kStages_>
struct PrefillTraits {
  static constexpr int kThreads = 256;
  static constexpr int kWarps = kThreads / 32;
  static constexpr int kRowGroups = kRowGroups_;
  static constexpr int kRows = 16 * kRowGroups;        // heads per CTA (mma M = 16 per group)
  static constexpr int kParts = kWarps / kRowGroups;   // warps sharing a row group in S
  static constexpr int kStages = kStages_;             // key-tile buffers (cp.async ring)
  static constexpr int kBlockN = 64;                   // keys per main-loop step
  static constexpr int kDQk = kDQk_;
  static constexpr int kDV = 512;                      // V = the first 512 dims of a key row
  static constexpr int kRowChunks = kDQk / 8;          // 16-byte chunks per Q / K row
  static constexpr int kPChunks = kBlockN / 8;         // 16-byte chunks per P row
  static constexpr int kKeysPerWarp = kBlockN / kParts;  // S columns per warp
  static constexpr int kSTiles = kKeysPerWarp / 8;       // m16n8 tiles of S per warp
  static constexpr int kDimsPerWarp = kDV / kWarps;      // O columns per warp
  static constexpr int kOTiles = kDimsPerWarp / 8;       // n8 tiles of O per warp and row group
  static constexpr int kThreadsPerKey = kThreads / kBlockN;  // loader threads per gathered row
  static constexpr int kKSteps = kDQk / 16;                  // mma k-steps of S

  // Shared-memory layout (bytes). Q, K and P tiles are unpadded and XOR-swizzled (see
  // swizzle_offset), which is what lets two 64 x 576 key buffers fit next to Q.
  static constexpr int kQOffset = 0;
  static constexpr int kQBytes = kRows * kDQk * 2;
  static constexpr int kKOffset = kQOffset + kQBytes;
  static constexpr int kKStageElems = kBlockN * kDQk;
  static constexpr int kKBytes = kStages * kKStageElems * 2;
  static constexpr int kPOffset = kKOffset + kKBytes;
  static constexpr int kPBytes = kRows * kBlockN * 2;
  static constexpr int kRedMaxOffset = kPOffset + kPBytes;
  static constexpr int kRedBytes = kWarps * 16 * 4;  // one float per (warp, row of its group)
  static constexpr int kRedSumOffset = kRedMaxOffset + kRedBytes;
  static constexpr int kAlphaOffset = kRedSumOffset + kRedBytes;
  static constexpr int kRowStatBytes = kRows * 4;  // one float per CTA row
  static constexpr int kRowMaxOffset = kAlphaOffset + kRowStatBytes;
  static constexpr int kValidOffset = kRowMaxOffset + kRowStatBytes;
  static constexpr int kValidBytes = kStages * kBlockN;
  static constexpr int kSmemBytes = kValidOffset + kValidBytes;

  static constexpr int kMaxSmemBytes = 227 * 1024;  // largest opt-in block limit (sm_90)
  static_assert(kDQk == 512 || kDQk == 576, "d_qk 512 or 576");
  static_assert(kRowGroups == 1 || kRowGroups == 2 || kRowGroups == 4, "1, 2 or 4 row groups");
  static_assert(kStages == 1 || kStages == 2, "single or double buffered key tiles");
  static_assert(kWarps % kRowGroups == 0, "warps must split evenly over row groups");
  static_assert(kKeysPerWarp % 8 == 0, "each warp needs whole n8 tiles of S");
  static_assert(kSTiles == 1 || kSTiles % 2 == 0, "S tiles load in pairs (ldmatrix.x4)");
  static_assert(kOTiles % 2 == 0, "O tiles load in pairs (ldmatrix.x4.trans)");
  static_assert(kRowChunks % 8 == 0 && kPChunks == 8, "swizzle works on groups of 8 chunks");
  static_assert(kDQk % 64 == 0, "S k-loop runs in blocks of 4 k-steps");
  static_assert(kBlockN % 16 == 0, "P V k-steps are 16 keys");
  static_assert(kThreads % kBlockN == 0, "whole threads per key in the loader");
  static_assert(kKOffset % 16 == 0 && kPOffset % 16 == 0 && kRedMaxOffset % 16 == 0 &&
                    kValidOffset % 4 == 0,
                "aligned shared regions");
  static_assert(kSmemBytes <= kMaxSmemBytes, "shared memory budget");
};

/// Element offset of 16-byte chunk `chunk` of row `row` in a tile of kRowChunks chunks per
/// row. NOTE: rows are multiples of 128 bytes, so unswizzled the 8 row addresses of one
/// ldmatrix phase would all fall into the same 4 banks; XOR-ing the low 3 chunk bits with
/// row % 8 spreads 8 consecutive rows over all 32 banks (and keeps each chunk inside its
/// aligned group of 8, hence inside the row).
template <int kRowChunks>
__device__ __forceinline__ int swizzle_offset(int row, int chunk) {
  return row * (kRowChunks * 8) + ((chunk ^ (row & 7)) << 3);
}

}  // namespace model1::cuda::portable
