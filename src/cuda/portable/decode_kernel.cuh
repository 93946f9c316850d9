// model1 CUDA portable (sm_80+) sparse decode kernel: mma.sync m16n8k16 bf16 with float32
// accumulation, online softmax in base 2, split-KV partials (MODEL1.md section 3).
//
// One CTA = (request i, query token j, split, head group). Its candidate keys (main cache
// first, then the extra cache) are walked in chunks of 64: each chunk's raw bytes arrive by
// cp.async in a staging buffer while the previous chunk computes, are dequantized exactly to
// bf16 in shared memory (invalid keys become zero rows: never loaded, never multiplied), and
// feed S = Q K^T and O += P V, where V is the first 512 dims of the same key tile.
// The compact configuration (DecodeTraits::kDirectDequant) has no staging buffer: each
// chunk's FP8 bytes go from global memory through registers straight to the bf16 key tile.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <cstdint>

#include "cuda/common/decode_epilogue.cuh"
#include "cuda/common/decode_params.h"
#include "cuda/common/numerics.cuh"
#include "cuda/portable/decode_traits.cuh"
#include "cuda/ptx/mma.cuh"

namespace model1::cuda::portable {

/// Where one key of a chunk lives (computed by the threads that load it).
struct KeyAddress {
  const uint8_t* page = nullptr;  ///< first byte of its page (null when invalid)
  int64_t offset = 0;             ///< token offset inside the page
  int64_t page_size = 0;
  int64_t row_stride = 0;
};

/// One candidate as read from the index lists (before the bounds check).
struct Candidate {
  int32_t slot = 0;
  bool is_main = true;
  bool in_list = false;  ///< pos < number of candidates
};

/// Candidate `pos` of request (i, j): main indices first, then extra. NOTE: fetched one chunk
/// ahead of its use, so the index load's latency hides behind a chunk of math.
__device__ __forceinline__ Candidate fetch_candidate(const int32_t* main_idx, const int32_t* extra_idx,
                                                     int main_keys, int num_keys, int pos) {
  Candidate c;
  if (pos >= num_keys) return c;
  c.in_list = true;
  c.is_main = pos < main_keys;
  c.slot = c.is_main ? main_idx[pos] : extra_idx[pos - main_keys];
  return c;
}

/// Where a candidate lives, after the bounds check of MODEL1.md section 3 (64-bit arithmetic;
/// an invalid slot is never dereferenced: page stays null).
__device__ __forceinline__ KeyAddress key_address(const DecodeParams& p, const Candidate& c) {
  KeyAddress a;
  if (!c.in_list) return a;
  const int64_t num_slots = c.is_main ? p.kv.num_slots : p.extra_kv.num_slots;
  if (c.slot < 0 || static_cast<int64_t>(c.slot) >= num_slots) return a;
  const int64_t page_size = c.is_main ? p.kv.page_size : p.extra_kv.page_size;
  const int64_t page_stride = c.is_main ? p.kv.page_stride : p.extra_kv.page_stride;
  const uint8_t* base = c.is_main ? p.kv.base : p.extra_kv.base;
  // NOTE: 0 <= slot < 2^31, so a 32-bit division is exact (P >= 2^32 means page 0); a
  // power-of-two P (the usual case) takes a shift instead of the division's ~20 instructions.
  const int shift = c.is_main ? p.kv.page_shift : p.extra_kv.page_shift;
  uint32_t page;
  if (shift >= 0) {
    page = static_cast<uint32_t>(c.slot) >> shift;
  } else {
    const uint32_t p32 = page_size > 0xffffffffll ? 0xffffffffu : static_cast<uint32_t>(page_size);
    page = static_cast<uint32_t>(c.slot) / p32;
  }
  a.page = base + static_cast<int64_t>(page) * page_stride;
  a.offset = static_cast<int64_t>(c.slot) - static_cast<int64_t>(page) * page_size;
  a.page_size = page_size;
  a.row_stride = c.is_main ? p.kv.row_stride : p.extra_kv.row_stride;
  return a;
}

/// 4, 8 or 16 bytes of the (read-only) cache: one vector load when `kAligned`, else byte
/// loads (unaligned caches: odd page strides or bases).
template <bool kAligned>
__device__ __forceinline__ uint32_t load_cache_u32(const uint8_t* src) {
  if constexpr (kAligned) {
    return __ldg(reinterpret_cast<const unsigned int*>(src));
  } else {
    uint32_t v = 0;
#pragma unroll
    for (int k = 0; k < 4; ++k) v |= uint32_t{__ldg(src + k)} << (8 * k);
    return v;
  }
}

template <bool kAligned>
__device__ __forceinline__ uint2 load_cache_u64(const uint8_t* src) {
  if constexpr (kAligned) {
    return __ldg(reinterpret_cast<const uint2*>(src));
  } else {
    return make_uint2(load_cache_u32<false>(src), load_cache_u32<false>(src + 4));
  }
}

template <bool kAligned>
__device__ __forceinline__ uint4 load_cache_u128(const uint8_t* src) {
  if constexpr (kAligned) {
    return __ldg(reinterpret_cast<const uint4*>(src));
  } else {
    return make_uint4(load_cache_u32<false>(src), load_cache_u32<false>(src + 4),
                      load_cache_u32<false>(src + 8), load_cache_u32<false>(src + 12));
  }
}

/// The biased exponent E of a nope group's scale (`sc` as staged: the UE8M0 byte (MODEL1) or
/// the f32 bits (V32) of its tile) when dequant4_bf16_fast applies to it, else 0.
template <class F>
__device__ __forceinline__ uint32_t group_fast_exp(uint32_t sc) {
  if constexpr (F::kStageScaleBytes > 0) {
    return sc >= kMinFastScaleExp && sc <= kMaxFastScaleExp ? sc : 0;
  } else {
    return fast_scale_exp(__uint_as_float(sc));
  }
}

// NOTE: the portable objects are built from compute_80 PTX (sm_80 machine code) and from
// compute_89 PTX (sm_89 and sm_90 machine code, and the PTX newer GPUs compile): the latter
// convert FP8 with the hardware instruction, the former with integer arithmetic. Same bits.
// MODEL1_PORTABLE_HW_E4M3=0 at build time: the integer conversion everywhere (to test it on
// sm_89+ GPUs).
#ifndef MODEL1_PORTABLE_HW_E4M3
#define MODEL1_PORTABLE_HW_E4M3 1
#endif
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 890 && MODEL1_PORTABLE_HW_E4M3
inline constexpr bool kHardwareE4m3 = true;
#else
inline constexpr bool kHardwareE4m3 = false;
#endif

// 0 at build time: invalid keys leave the staging buffer stale, and the conversion selects
// zeros for them (the twenty-second session's code).
#ifndef MODEL1_PORTABLE_ZFILL
#define MODEL1_PORTABLE_ZFILL 1
#endif
/// Invalid keys are staged as zero bytes (cp.async with src-size 0 reads nothing), so the
/// conversion needs no validity test: zero codes and a zero scale give +0 in every format.
inline constexpr bool kZeroFillStage = MODEL1_PORTABLE_ZFILL != 0;

// 0 at build time: MODEL1's rope columns converted by the threads that follow the nope
// columns in thread order (8 lanes of every other warp).
#ifndef MODEL1_PORTABLE_ROPE_WARPS
#define MODEL1_PORTABLE_ROPE_WARPS 1
#endif
inline constexpr bool kRopeWarpsEnabled = MODEL1_PORTABLE_ROPE_WARPS != 0;

// 0 at build time: the gather's copy loop as a loop whose trip count depends on the thread.
#ifndef MODEL1_PORTABLE_GATHER_UNROLL
#define MODEL1_PORTABLE_GATHER_UNROLL 1
#endif

/// sm_89 and later: one nope group (8 e4m3 codes, low byte first) times its tile's scale (`sc`
/// as staged: the UE8M0 byte (MODEL1) or the f32 bits (V32)) -> 8 bf16, the bits of
/// dequant_group. The hardware e4m3 -> f16x2 conversion is exact for every code (zero,
/// subnormal, NaN), so nothing is checked and nothing branches; the float of such an f16 has at
/// most 4 significant bits, so its upper half is its bf16 (a byte permute). MODEL1's scale is a
/// power of two: one bf16x2 fma with -0 rounds the exact product once, as the reference rounds
/// it. V3.2's float scale multiplies the floats, which are then packed (the reference's order).
template <class F>
__device__ __forceinline__ uint4 dequant_group_hw(uint2 codes, uint32_t sc) {
  uint32_t w[4];
  uint32_t scale2 = 0;
  if constexpr (F::kStageScaleBytes > 0) {
    // NOTE: the bf16 of ue8m0_to_float(sc) in both halves: sc << 7 (2^(sc - 127); 255 gives
    // inf, as the float does), except 0, whose 2^-127 is the bf16 subnormal 0x0040. sc is a
    // byte, so one 32-bit unsigned maximum does it: every byte but 0 gives at least 0x00800080.
    scale2 = max(sc * 0x00800080u, 0x00400040u);
  }
#pragma unroll
  for (int k = 0; k < 4; ++k) {
    const uint32_t word = k < 2 ? codes.x : codes.y;
    const uint32_t h2 = (k & 1) == 0 ? ptx::cvt_e4m3x2_f16x2(word) : ptx::cvt_e4m3x2_f16x2_hi(word);
    const float2 f = __half22float2(*reinterpret_cast<const __half2*>(&h2));
    if constexpr (F::kStageScaleBytes > 0) {
      w[k] = ptx::fma_bf16x2(__byte_perm(__float_as_uint(f.x), __float_as_uint(f.y), 0x7632), scale2, 0x80008000u);
    } else {
      const float scale = __uint_as_float(sc);
      w[k] = pack_bf16x2(f.x * scale, f.y * scale);
    }
  }
  return make_uint4(w[0], w[1], w[2], w[3]);
}

/// One group of 8 dims of a key -> 8 exact bf16 values. `raw`: fp8 codes in .x/.y (nope
/// groups; `sc` the UE8M0 byte (MODEL1) or f32 bits (V32) of the group's tile) or 8 bf16 (rope
/// groups, returned as they are); zeros for invalid keys (`ok` false).
template <class F>
__device__ __forceinline__ uint4 dequant_group(uint4 raw, uint32_t sc, bool ok, bool nope) {
  if (!ok || !nope) return raw;  // rope groups as loaded, zeros for invalid keys
  if constexpr (kHardwareE4m3) return dequant_group_hw<F>(make_uint2(raw.x, raw.y), sc);
  const float scale = F::kStageScaleBytes > 0 ? ue8m0_to_float(sc) : __uint_as_float(sc);
  const uint32_t scale_exp = group_fast_exp<F>(sc);
  const uint32_t cx = raw.x, cy = raw.y;
  uint2 lo, hi;
  if (scale_exp != 0 && !e4m3x4_has_special(cx) && !e4m3x4_has_special(cy)) {
    lo = dequant4_bf16_fast(cx, scale_exp);
    hi = dequant4_bf16_fast(cy, scale_exp);
  } else {  // NOTE: rare: zero / subnormal / NaN codes or an unusual scale
    lo = dequant4_bf16(cx, scale);
    hi = dequant4_bf16(cy, scale);
  }
  return make_uint4(lo.x, lo.y, hi.x, hi.y);
}

template <class T>
struct DecodeCta {
  using F = typename T::F;

  // Shared memory views.
  uint16_t* sQ;   // [kRows, kQStride] bf16
  uint16_t* sK;   // [kBlockN, kKStride] bf16 (dequantized keys = values)
  uint16_t* sP;   // [kRows, kPStride] bf16 (softmax numerators of the chunk)
  uint8_t* sStageData;   // [kBlockN, F::kStageDataBytes] raw cache bytes
  uint8_t* sStageScale;  // [kBlockN, F::kStageScaleBytes]
  const uint8_t** sRowPtr;    // [kBlockN] data row of each key, null when invalid (compact)
  const uint8_t** sScalePtr;  // [kBlockN] MODEL1 scale row of each key (compact)
  float* sRedMax;        // [kWarps, 16]
  float* sRedSum;        // [kWarps, 16]
  uint8_t* sValid;       // [kBlockN] validity of the keys in sK
  uint8_t* sStageValid;  // [kBlockN] validity of the keys in the staging buffer
  float* sXchg;          // [kWarps, kOwnTiles, 4, 32] split-K halves of S (kSplitK only)

  __device__ explicit DecodeCta(uint8_t* smem)
      : sQ(reinterpret_cast<uint16_t*>(smem + T::kQOffset)),
        sK(reinterpret_cast<uint16_t*>(smem + T::kKOffset)),
        sP(reinterpret_cast<uint16_t*>(smem + T::kPOffset)),
        sStageData(smem + T::kStageDataOffset),
        sStageScale(smem + T::kStageScaleOffset),
        sRowPtr(reinterpret_cast<const uint8_t**>(smem + T::kStageDataOffset)),
        sScalePtr(reinterpret_cast<const uint8_t**>(smem + T::kStageScaleOffset)),
        sRedMax(reinterpret_cast<float*>(smem + T::kRedMaxOffset)),
        sRedSum(reinterpret_cast<float*>(smem + T::kRedSumOffset)),
        sValid(smem + T::kValidOffset),
        sStageValid(smem + T::kStageValidOffset),
        sXchg(reinterpret_cast<float*>(smem + T::kXchgOffset)) {}

  /// Q rows of this head group -> sQ (rows past h_q are zero). NOTE: aligned rows go by
  /// cp.async, every piece in flight at once (the callers' cp.async waits cover them): as loads
  /// and shared stores, each thread's loop waited for one global load per 16 bytes in turn
  /// (the store may alias the next load), 8 round trips a CTA at 64 rows.
  __device__ void load_q(const DecodeParams& p, int i, int j, int g) {
    constexpr int kVecPerRow = T::kDQk / 8;
    const uint16_t* q_row0 = p.q + i * p.q_stride_b + j * p.q_stride_s;  // [h_q, d_qk]
    for (int item = threadIdx.x; item < T::kRows * kVecPerRow; item += T::kThreads) {
      const int r = item / kVecPerRow, v = item % kVecPerRow;
      const int h = g * T::kRows + r;
      uint16_t* dst = sQ + r * T::kQStride + v * 8;
      if (h < p.h_q && p.q_aligned16) {
        ptx::cp_async_16(dst, q_row0 + h * p.q_stride_h + v * 8);
        continue;
      }
      uint4 val = make_uint4(0, 0, 0, 0);
      if (h < p.h_q) val = load_bf16x8(q_row0 + h * p.q_stride_h + v * 8, false);
      *reinterpret_cast<uint4*>(dst) = val;
    }
  }

  /// Issues the loads of one chunk (`cand`: this thread's key of it): raw bytes into the
  /// staging buffer (staged formats) or bf16 rows straight into sK (zero rows for invalid
  /// keys). kThreadsPerKey consecutive threads share a key.
  __device__ void load_chunk(const DecodeParams& p, const Candidate& cand) {
    const int key = threadIdx.x / T::kThreadsPerKey;
    const int sub = threadIdx.x % T::kThreadsPerKey;
    const KeyAddress a = key_address(p, cand);
    const bool valid = a.page != nullptr;
    if constexpr (T::kStaged) {
      if (sub == 0) sStageValid[key] = valid;
      if (!kZeroFillStage && !valid) return;
      // NOTE: an invalid key (kZeroFillStage) copies from the cache base with src-size 0: the
      // address is never read, only its alignment matters.
      const uint8_t* row = p.kv.base;
      const uint8_t* scales = p.kv.base;
      if (valid) {
        if constexpr (F::kStageScaleBytes > 0) {  // MODEL1: data rows, then scale rows
          row = a.page + model1_fp8::data_row_offset(a.offset);
          scales = a.page + model1_fp8::scale_row_offset(a.page_size, a.offset);
        } else {  // V32: contiguous records
          row = a.page + v32_fp8::token_offset(a.offset);
        }
      }
      uint8_t* dst = sStageData + key * F::kStageDataBytes;
      if (kZeroFillStage && p.cache_aligned16) {
        // NOTE: a fixed trip count with a predicate (the thread-dependent loop compiled to a
        // loop with its test and branch per copy).
        constexpr int kVecs = F::kStageDataBytes / 16;
        constexpr int kTrips = (kVecs + T::kThreadsPerKey - 1) / T::kThreadsPerKey;
#if MODEL1_PORTABLE_GATHER_UNROLL
#pragma unroll
#else
#pragma unroll 1
#endif
        for (int k = 0; k < kTrips; ++k) {
          const int v = sub + k * T::kThreadsPerKey;
          if (kVecs % T::kThreadsPerKey == 0 || v < kVecs) ptx::cp_async_16_zfill(dst + v * 16, row + v * 16, valid);
        }
        if constexpr (F::kStageScaleBytes > 0) {
          static_assert(F::kStageScaleBytes == 8, "one 8-byte scale row per key");
          if (sub == T::kThreadsPerKey - 1) ptx::cp_async_8_zfill(sStageScale + key * 8, scales, valid);
        }
      } else if (!valid) {  // unaligned caches: zero bytes by plain stores
        for (int v = sub; v < F::kStageDataBytes; v += T::kThreadsPerKey) dst[v] = 0;
        for (int v = sub; v < F::kStageScaleBytes; v += T::kThreadsPerKey) sStageScale[key * F::kStageScaleBytes + v] = 0;
      } else if (p.cache_aligned16) {
        for (int v = sub; v < F::kStageDataBytes / 16; v += T::kThreadsPerKey) {
          ptx::cp_async_16(dst + v * 16, row + v * 16);
        }
        if constexpr (F::kStageScaleBytes > 0) {
          static_assert(F::kStageScaleBytes == 8, "one 8-byte scale row per key");
          if (sub == T::kThreadsPerKey - 1) ptx::cp_async_8(sStageScale + key * 8, scales);
        }
      } else {
        // NOTE: unaligned caches (odd page strides or bases) take plain byte loads.
        for (int v = sub; v < F::kStageDataBytes; v += T::kThreadsPerKey) dst[v] = row[v];
        if constexpr (F::kStageScaleBytes > 0) {
          for (int v = sub; v < F::kStageScaleBytes; v += T::kThreadsPerKey) {
            sStageScale[key * F::kStageScaleBytes + v] = scales[v];
          }
        }
      }
    } else {
      if (sub == 0) sValid[key] = valid;
      uint16_t* dst = sK + key * T::kKStride;
      constexpr int kVecs = F::kRowBytes / 16;
      if (!valid) {
        for (int v = sub; v < kVecs; v += T::kThreadsPerKey) {
          *reinterpret_cast<uint4*>(dst + v * 8) = make_uint4(0, 0, 0, 0);
        }
        return;
      }
      const uint8_t* row = a.page + a.offset * a.row_stride;
      if (p.cache_aligned16) {
        for (int v = sub; v < kVecs; v += T::kThreadsPerKey) ptx::cp_async_16(dst + v * 8, row + v * 16);
      } else {
        for (int v = sub; v < F::kRowBytes; v += T::kThreadsPerKey) {
          reinterpret_cast<uint8_t*>(dst)[v] = row[v];
        }
      }
    }
  }

  /// Staging buffer -> sK (exact bf16), sStageValid -> sValid. Invalid keys give zero rows:
  /// converted from their zero-filled staging bytes (kZeroFillStage), or selected where the
  /// integer conversion runs (it tests the codes anyway) or the stage is left stale.
  /// The first kColumns groups of every key (MODEL1: all 64, V32: its 64 nope groups) go by
  /// columns: thread t converts group t % kColumns of keys t / kColumns + k * kKeyStep, so the
  /// group's column, its nope / rope kind and its scale tile are per-thread constants and only
  /// the key row moves (immediate offsets). The groups past them (V32: rope) go one per item.
  __device__ void dequant_chunk() {
    constexpr int kColumns = T::kThreads % F::kGroupsPerKey == 0 ? F::kGroupsPerKey : F::kNopeGroups;
    static_assert(T::kThreads % kColumns == 0, "the threads cover whole columns");
    constexpr int kKeyStep = T::kThreads / kColumns;
    constexpr int kPerThread = T::kBlockN / kKeyStep;
    static_assert(T::kBlockN % kKeyStep == 0, "whole keys per column");
    constexpr int kRopeOffset = F::kStageScaleBytes > 0 ? model1_fp8::kNopeBytes : v32_fp8::kRopeOffset;
    constexpr int kSrcStep = kKeyStep * F::kStageDataBytes;
    constexpr int kDstStep = kKeyStep * T::kKStride;
    // NOTE: a batch's shared loads first, then its conversions and stores: the compiler cannot
    // hoist loads above a store to sK (it cannot prove the two do not alias). Batches of 4
    // items spill under the 128-register cap of 16 warps in the integer conversion, so those
    // take 2 (the hardware conversion measured the same with 4 and 1.5% slower with 8).
    constexpr int kBatch = T::kThreads > 256 ? 2 : 4;
    static_assert(kPerThread % kBatch == 0, "whole batches per thread");

    // NOTE: the validity bytes move as 16-byte words (kBlockN / 16 threads), not one byte per
    // key and item.
    static_assert(T::kBlockN % 16 == 0 && T::kValidOffset % 16 == 0 && T::kStageValidOffset % 16 == 0,
                  "16-byte validity words");
    if (threadIdx.x < T::kBlockN / 16) {
      reinterpret_cast<uint4*>(sValid)[threadIdx.x] =
          reinterpret_cast<const uint4*>(sStageValid)[threadIdx.x];
    }

    // The groups past the columns (V32: its 8 rope groups): 16 bytes as staged per item.
    constexpr int kRestGroups = F::kGroupsPerKey - kColumns;
    static_assert(kColumns >= F::kNopeGroups, "the groups past the columns are rope groups");
    if constexpr (kRestGroups > 0) {
      static_assert(T::kBlockN * kRestGroups % T::kThreads == 0, "whole rope items per thread");
#pragma unroll
      for (int k = 0; k < T::kBlockN * kRestGroups / T::kThreads; ++k) {
        const int item = threadIdx.x + k * T::kThreads;
        const int key = item / kRestGroups;
        const int grp = kColumns + item % kRestGroups;
        uint4 raw = make_uint4(0, 0, 0, 0);
        if (kZeroFillStage || sStageValid[key] != 0) {
          raw = *reinterpret_cast<const uint4*>(sStageData + key * F::kStageDataBytes + kRopeOffset +
                                                (grp - F::kNopeGroups) * 16);
        }
        *reinterpret_cast<uint4*>(sK + key * T::kKStride + grp * 8) = raw;
      }
    }

    // NOTE: MODEL1 (every group a column): the rope columns go to whole warps of their own
    // (kRopeWarps). Taking columns in thread order put 8 rope lanes in every other warp, which
    // then ran both paths one after the other and held barrier B. The first kNopeThreads
    // threads take the 56 nope columns, the rest the 8 rope columns, with the same key step.
    // sm_89+ only: the sm_80 integer conversion spills 36 bytes with it (128 registers).
    constexpr int kRopeGroups = F::kGroupsPerKey - F::kNopeGroups;
    constexpr int kNopeThreads = T::kThreads * F::kNopeGroups / F::kGroupsPerKey;
    constexpr bool kRopeWarps = kRopeWarpsEnabled && kHardwareE4m3 && kColumns == F::kGroupsPerKey && kRopeGroups > 0 &&
                                (T::kThreads * F::kNopeGroups) % F::kGroupsPerKey == 0 && kNopeThreads % 32 == 0 &&
                                kNopeThreads % F::kNopeGroups == 0;
    static_assert(!kRopeWarps || (kNopeThreads / F::kNopeGroups == kKeyStep &&
                                  (T::kThreads - kNopeThreads) / kRopeGroups == kKeyStep),
                  "the same key step for nope and rope threads");
    int grp = threadIdx.x % kColumns;
    int key0 = threadIdx.x / kColumns;
    if constexpr (kRopeWarps) {
      const int t = static_cast<int>(threadIdx.x);
      if (t < kNopeThreads) {
        grp = t % F::kNopeGroups;
        key0 = t / F::kNopeGroups;
      } else {
        grp = F::kNopeGroups + (t - kNopeThreads) % kRopeGroups;
        key0 = (t - kNopeThreads) / kRopeGroups;
      }
    }
    const uint8_t* valid = sStageValid + key0;
    const uint8_t* src = sStageData + key0 * F::kStageDataBytes;
    uint16_t* dst = sK + key0 * T::kKStride + grp * 8;
    if (grp >= F::kNopeGroups) {  // rope columns (MODEL1): 8 bf16 as staged
      src += kRopeOffset + (grp - F::kNopeGroups) * 16;
#pragma unroll
      for (int it = 0; it < kPerThread; it += kBatch) {
        uint4 raw[kBatch];
#pragma unroll
        for (int u = 0; u < kBatch; ++u) {
          raw[u] = make_uint4(0, 0, 0, 0);
          if (kZeroFillStage || valid[(it + u) * kKeyStep] != 0) {
            raw[u] = *reinterpret_cast<const uint4*>(src + (it + u) * kSrcStep);
          }
        }
#pragma unroll
        for (int u = 0; u < kBatch; ++u) *reinterpret_cast<uint4*>(dst + (it + u) * kDstStep) = raw[u];
      }
      return;
    }
    // Nope columns: the tile's scale is the UE8M0 byte of the key's scale row (MODEL1) or the
    // f32 word after the codes (V32).
    const int tile = grp / F::kGroupsPerTile;
    const uint8_t* scales = F::kStageScaleBytes > 0 ? sStageScale + key0 * F::kStageScaleBytes + tile
                                                    : src + v32_fp8::kScaleOffset + 4 * tile;
    constexpr int kScaleStep = F::kStageScaleBytes > 0 ? kKeyStep * F::kStageScaleBytes : kSrcStep;
    src += grp * 8;
#pragma unroll
    for (int it = 0; it < kPerThread; it += kBatch) {
      uint2 codes[kBatch];
      uint32_t sc[kBatch];
      bool ok[kBatch];
#pragma unroll
      for (int u = 0; u < kBatch; ++u) {
        codes[u] = *reinterpret_cast<const uint2*>(src + (it + u) * kSrcStep);
        if constexpr (F::kStageScaleBytes > 0) {
          sc[u] = scales[(it + u) * kScaleStep];
        } else {
          sc[u] = *reinterpret_cast<const uint32_t*>(scales + (it + u) * kScaleStep);
        }
        ok[u] = valid[(it + u) * kKeyStep] != 0;
      }
      if constexpr (kHardwareE4m3) {  // every code and scale, straight-line; invalid keys: zeros
#pragma unroll
        for (int u = 0; u < kBatch; ++u) {
          const uint4 v = dequant_group_hw<F>(codes[u], sc[u]);
          // NOTE: zero-filled invalid keys convert to +0 by themselves (kZeroFillStage).
          *reinterpret_cast<uint4*>(dst + (it + u) * kDstStep) =
              kZeroFillStage || ok[u] ? v : make_uint4(0, 0, 0, 0);
        }
        continue;
      }
      // NOTE: one branch per batch: the usual batch (valid keys, normal codes, scales in the
      // fast range) runs straight-line through dequant4_bf16_fast; any other takes
      // dequant_group per item, which makes the same choice per item (same bytes either way).
      // Non-short-circuit &: the tests combine into one predicate, no branch per test.
      bool fast = true;
#pragma unroll
      for (int u = 0; u < kBatch; ++u) {
        fast = fast & ok[u] & (group_fast_exp<F>(sc[u]) != 0) & !e4m3x4_has_special(codes[u].x) &
               !e4m3x4_has_special(codes[u].y);
      }
      if (fast) {
#pragma unroll
        for (int u = 0; u < kBatch; ++u) {
          const uint32_t scale_exp = group_fast_exp<F>(sc[u]);
          const uint2 lo = dequant4_bf16_fast(codes[u].x, scale_exp);
          const uint2 hi = dequant4_bf16_fast(codes[u].y, scale_exp);
          *reinterpret_cast<uint4*>(dst + (it + u) * kDstStep) = make_uint4(lo.x, lo.y, hi.x, hi.y);
        }
      } else {
#pragma unroll
        for (int u = 0; u < kBatch; ++u) {
          const uint4 raw = ok[u] ? make_uint4(codes[u].x, codes[u].y, 0, 0) : make_uint4(0, 0, 0, 0);
          *reinterpret_cast<uint4*>(dst + (it + u) * kDstStep) = dequant_group<F>(raw, sc[u], ok[u], true);
        }
      }
    }
  }

  /// Compact path: this thread's key of the next chunk (`cand`) -> its data-row and scale-row
  /// pointers in shared memory (null when invalid), read by dequant_chunk_direct.
  __device__ void publish_chunk(const DecodeParams& p, const Candidate& cand) {
    static_assert(T::kDirectDequant, "compact path only");
    if (threadIdx.x % T::kThreadsPerKey != 0) return;
    const int key = threadIdx.x / T::kThreadsPerKey;
    const KeyAddress a = key_address(p, cand);
    const uint8_t* row = nullptr;
    const uint8_t* scales = nullptr;
    if (a.page != nullptr) {
      if constexpr (F::kStageScaleBytes > 0) {  // MODEL1: data rows, then scale rows
        row = a.page + model1_fp8::data_row_offset(a.offset);
        scales = a.page + model1_fp8::scale_row_offset(a.page_size, a.offset);
      } else {  // V32: contiguous records
        row = a.page + v32_fp8::token_offset(a.offset);
      }
    }
    sRowPtr[key] = row;
    if constexpr (F::kStageScaleBytes > 0) sScalePtr[key] = scales;
  }

  /// Compact path: the published chunk, global memory -> registers -> sK (exact bf16), and
  /// sValid. Invalid keys give zero rows (never loaded).
  template <bool kAligned>
  __device__ void dequant_chunk_direct() {
    static_assert(T::kDirectDequant, "compact path only");
    constexpr int kItems = T::kBlockN * F::kGroupsPerKey;  // groups of 8 dims
    static_assert(kItems % T::kThreads == 0, "whole dequant items per thread");
    constexpr int kPerThread = kItems / T::kThreads;  // 16 (MODEL1) or 18 (V32)
    // NOTE: half a chunk's loads in flight per thread before any conversion (latency), at a
    // bounded register cost.
    constexpr int kBatch = kPerThread % 2 == 0 ? kPerThread / 2 : kPerThread;
    constexpr int kRopeOffset = F::kStageScaleBytes > 0 ? model1_fp8::kNopeBytes : v32_fp8::kRopeOffset;
#pragma unroll 1
    for (int it = 0; it < kPerThread; it += kBatch) {
      uint4 raw[kBatch];
      uint32_t sc[kBatch];
      bool ok[kBatch];
#pragma unroll
      for (int u = 0; u < kBatch; ++u) {
        const int item = threadIdx.x + (it + u) * T::kThreads;
        const int key = item / F::kGroupsPerKey;
        const int grp = item % F::kGroupsPerKey;
        const uint8_t* row = sRowPtr[key];
        ok[u] = row != nullptr;
        raw[u] = make_uint4(0, 0, 0, 0);
        sc[u] = 0;
        if (ok[u]) {
          if (grp < F::kNopeGroups) {
            const uint2 codes = load_cache_u64<kAligned>(row + grp * 8);
            raw[u].x = codes.x;
            raw[u].y = codes.y;
            const int tile = grp / F::kGroupsPerTile;
            if constexpr (F::kStageScaleBytes > 0) {
              sc[u] = __ldg(sScalePtr[key] + tile);
            } else {
              sc[u] = load_cache_u32<kAligned>(row + v32_fp8::kScaleOffset + 4 * tile);
            }
          } else {
            raw[u] = load_cache_u128<kAligned>(row + kRopeOffset + (grp - F::kNopeGroups) * 16);
          }
        }
      }
#pragma unroll
      for (int u = 0; u < kBatch; ++u) {
        const int item = threadIdx.x + (it + u) * T::kThreads;
        const int key = item / F::kGroupsPerKey;
        const int grp = item % F::kGroupsPerKey;
        if (grp == 0) sValid[key] = ok[u];
        *reinterpret_cast<uint4*>(sK + key * T::kKStride + grp * 8) =
            dequant_group<F>(raw[u], sc[u], ok[u], grp < F::kNopeGroups);
      }
    }
  }
};

/// Per-thread softmax and output state. Rows r0 = lane / 4 and r1 = r0 + 8 of an m16 tile:
/// l of the S row group (this warp's keys), m and o of the kPvM tiles of the PV group.
template <class T>
struct SoftmaxState {
  float m[T::kPvM][2];  // running max of base-2 logits (-inf until a valid key)
  float l[2];           // running sum of exp2(logit - m) over this warp's keys
  float o[T::kPvM][T::kOTiles][4];
};

/// Barrier of the kParts warps of row group `rg` (the chunk's row maxima).
template <class T>
__device__ __forceinline__ void sync_row_group(int rg) {
  if constexpr (T::kParts * 32 == T::kThreads) {
    __syncthreads();
  } else {
    __barrier_sync_count(T::kRowBarrier + rg, T::kParts * 32);
  }
}

/// Barrier of the kPvWarps warps of PV group `pg` (the P tile of its rows).
template <class T>
__device__ __forceinline__ void sync_pv_group(int pg) {
  if constexpr (T::kPvWarps * 32 == T::kThreads) {
    __syncthreads();
  } else {
    __barrier_sync_count(T::kPvBarrier + pg, T::kPvWarps * 32);
  }
}

template <class T>
__device__ __forceinline__ void compute_chunk(DecodeCta<T>& cta, SoftmaxState<T>& st,
                                              float scale_log2) {
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int rg = warp / T::kParts, part = warp % T::kParts;
  // Split-K: warp part = kh * kKeyGroups + kg accumulates the keys of group kg over d_qk half
  // kh, then keeps half of them: its final keys start at kg * (8 kLoopTiles) + kh * kKeysPerWarp.
  const int key_base = T::kSplitK ? (part % T::kKeyGroups) * 8 * T::kLoopTiles + (part / T::kKeyGroups) * T::kKeysPerWarp
                                  : part * T::kKeysPerWarp;
  const int pg = warp / T::kPvWarps, pv_part = warp % T::kPvWarps;
  const int mt_s = rg - pg * T::kPvM;  // the S row group's m tile inside the PV group

  // ---- S = Q K^T for this warp's 16 rows x kKeysPerWarp keys ----
  float s[T::kSTiles][4];
#pragma unroll
  for (int t = 0; t < T::kSTiles; ++t) s[t][0] = s[t][1] = s[t][2] = s[t][3] = 0.0f;
  if constexpr (T::kSplitK) {
    // Warp (rg, part): key group kg = part % kKeyGroups (8 kLoopTiles keys), d_qk half kh.
    constexpr int kG = T::kKeyGroups, kL = T::kLoopTiles, kOwn = T::kOwnTiles;
    const int kh = part / kG, kg = part % kG;
    constexpr int kHalf = T::kDQk / 2;
    float acc[kL][4];
#pragma unroll
    for (int t = 0; t < kL; ++t) acc[t][0] = acc[t][1] = acc[t][2] = acc[t][3] = 0.0f;
    // NOTE: 32-bit shared addresses stepped by immediates (2 x 16 elements a k-step): generic
    // row pointers cost registers the sm_80 build did not have (it spilled).
    const uint32_t q_addr =
        ptx::smem_addr(cta.sQ + (rg * 16 + (lane & 15)) * T::kQStride + (lane >> 4) * 8 + kh * kHalf);
    const uint32_t k_addr = ptx::smem_addr(cta.sK + (kg * 8 * kL + ((lane >> 4) << 3) + (lane & 7)) * T::kKStride +
                                           ((lane >> 3) & 1) * 8 + kh * kHalf);
#pragma unroll(T::kSUnroll)
    for (int kk = 0; kk < kHalf / 16; ++kk) {
      uint32_t a[4];
      ptx::ldmatrix_x4_at(a, q_addr + kk * 32);
#pragma unroll
      for (int np = 0; np < kL / 2; ++np) {
        uint32_t b[4];
        ptx::ldmatrix_x4_at(b, k_addr + np * 32 * T::kKStride + kk * 32);
        ptx::mma_m16n8k16_bf16_f32(acc[2 * np], a, b[0], b[1]);
        ptx::mma_m16n8k16_bf16_f32(acc[2 * np + 1], a, b[2], b[3]);
      }
    }
    // Keep tiles kh * kOwn .. of the group, send the others to the partner warp (the same
    // key group, the other d_qk half: part +- kKeyGroups, a fixed offset in each branch).
    // NOTE: a warp-uniform branch per half (no per-element selects keeping both alive).
    float* x_out = cta.sXchg + warp * (kOwn * 4 * 32);
    if (kh == 0) {
      const float* x_in = x_out + kG * (kOwn * 4 * 32);
#pragma unroll
      for (int t = 0; t < kOwn; ++t) {
#pragma unroll
        for (int e = 0; e < 4; ++e) x_out[(t * 4 + e) * 32 + lane] = acc[kOwn + t][e];
      }
      sync_row_group<T>(rg);  // the partner's half of this warp's keys
#pragma unroll
      for (int t = 0; t < kOwn; ++t) {
#pragma unroll
        // NOTE: two terms: a + b == b + a exactly, so both halves of the pair agree bitwise.
        for (int e = 0; e < 4; ++e) s[t][e] = acc[t][e] + x_in[(t * 4 + e) * 32 + lane];
      }
    } else {
      const float* x_in = x_out - kG * (kOwn * 4 * 32);
#pragma unroll
      for (int t = 0; t < kOwn; ++t) {
#pragma unroll
        for (int e = 0; e < 4; ++e) x_out[(t * 4 + e) * 32 + lane] = acc[t][e];
      }
      sync_row_group<T>(rg);
#pragma unroll
      for (int t = 0; t < kOwn; ++t) {
#pragma unroll
        for (int e = 0; e < 4; ++e) s[t][e] = acc[kOwn + t][e] + x_in[(t * 4 + e) * 32 + lane];
      }
    }
  } else {
    // NOTE: software-pipelined: the fragments of k-step kk + 1 are loaded before the mma of
    // step kk issue, so each mma waits on ldmatrix issued a step earlier, not just before it
    // (two fragment sets alive: the registers of two k-steps loaded together). The per-lane
    // row addresses advance by 16 elements a step, so unrolled steps take immediate offsets
    // (no row * stride per iteration). Every S element still sums its k-steps in increasing
    // order into the same accumulator.
    constexpr int kSteps = T::kDQk / 16;
    constexpr int kBLoads = (T::kSTiles + 1) / 2;  // ldmatrix of K per k-step
    constexpr int kBRegs = T::kSTiles == 1 ? 2 : 4;  // registers of each
    struct Frags {
      uint32_t a[4];
      uint32_t b[kBLoads][kBRegs];
    };
    const uint16_t* q_ptr = cta.sQ + (rg * 16 + (lane & 15)) * T::kQStride + (lane >> 4) * 8;
    const uint16_t* k_ptr =
        cta.sK + (key_base + (T::kSTiles == 1 ? 0 : (lane >> 4) << 3) + (lane & 7)) * T::kKStride +
        ((lane >> 3) & 1) * 8;
    auto load_step = [&](Frags& f) {
      ptx::ldmatrix_x4(f.a, q_ptr);
      if constexpr (T::kSTiles == 1) {
        ptx::ldmatrix_x2(f.b[0], k_ptr);
      } else {
#pragma unroll
        for (int np = 0; np < kBLoads; ++np) ptx::ldmatrix_x4(f.b[np], k_ptr + np * 16 * T::kKStride);
      }
      q_ptr += 16;
      k_ptr += 16;
    };
    auto mma_step = [&](const Frags& f) {
#pragma unroll
      for (int t = 0; t < T::kSTiles; ++t) {
        ptx::mma_m16n8k16_bf16_f32(s[t], f.a, f.b[t / 2][(t % 2) * 2], f.b[t / 2][(t % 2) * 2 + 1]);
      }
    };
    Frags f0, f1;
    auto pair_step = [&] {  // f0 holds step kk: the mma of kk and kk + 1, loads of kk + 1 and kk + 2
      load_step(f1);
      mma_step(f0);
      load_step(f0);
      mma_step(f1);
    };
    // NOTE: k-steps per loop iteration: the whole loop (straight-line, no loop overhead)
    // except for d_qk 576 under the 128-register cap of 16 warps, where ptxas spills with it
    // (V32); 4 divides both 32 and 36.
    constexpr int kGroup = T::kThreads > 256 && kSteps > 32 ? 4 : kSteps;
    static_assert(kSteps % kGroup == 0 && kGroup % 2 == 0, "whole groups of k-step pairs");
    load_step(f0);
#pragma unroll 1
    for (int g = 0; g < kSteps / kGroup - 1; ++g) {
#pragma unroll
      for (int j = 0; j < kGroup / 2; ++j) pair_step();
    }
#pragma unroll
    for (int j = 0; j < kGroup / 2 - 1; ++j) pair_step();  // the last group: no loads past it
    load_step(f1);
    mma_step(f0);
    mma_step(f1);
  }

  // ---- mask (select, never multiply) and the chunk's row maxima ----
  float mx[2] = {-INFINITY, -INFINITY};
#pragma unroll
  for (int t = 0; t < T::kSTiles; ++t) {
#pragma unroll
    for (int e = 0; e < 2; ++e) {
      const int col = key_base + t * 8 + 2 * (lane & 3) + e;
      const bool valid = cta.sValid[col] != 0;
      s[t][e] = masked_logit(s[t][e], valid, scale_log2);
      s[t][2 + e] = masked_logit(s[t][2 + e], valid, scale_log2);
      mx[0] = fmaxf(mx[0], s[t][e]);
      mx[1] = fmaxf(mx[1], s[t][2 + e]);
    }
  }
#pragma unroll
  for (int r = 0; r < 2; ++r) {
    mx[r] = fmaxf(mx[r], __shfl_xor_sync(0xffffffffu, mx[r], 1));
    mx[r] = fmaxf(mx[r], __shfl_xor_sync(0xffffffffu, mx[r], 2));
    // NOTE: scale_log2 > 0 (validated) and rounding is monotonic, so fl(max(s) x scale) is the
    // maximum of the scaled logits.
    if constexpr (kFastExp) mx[r] *= scale_log2;
  }
  const int r0 = lane >> 2;
  if ((lane & 3) == 0) {
    cta.sRedMax[warp * 16 + r0] = mx[0];
    cta.sRedMax[warp * 16 + r0 + 8] = mx[1];
  }
  // NOTE: named barriers: the maxima and the P tile are exchanged inside a row group / PV
  // group only, so groups drift apart inside a chunk (one group's softmax overlaps another's
  // matrix products); the full barriers stay at the chunk boundaries (sK).
  sync_row_group<T>(rg);  // C: every part's maxima of this row group

  float alpha_s[2], m_use[2];
#pragma unroll
  for (int r = 0; r < 2; ++r) {
    float m_chunk = -INFINITY;
#pragma unroll
    for (int q = 0; q < T::kParts; ++q) {
      m_chunk = fmaxf(m_chunk, cta.sRedMax[(rg * T::kParts + q) * 16 + r0 + 8 * r]);
    }
    float m_old = st.m[0][r];
    if constexpr (T::kPvM == 2) m_old = mt_s == 1 ? st.m[1][r] : m_old;
    const float m_new = fmaxf(m_old, m_chunk);
    // NOTE: while no valid key was seen m stays -inf; subtracting 0 then keeps exp2 at 0
    // instead of producing (-inf) - (-inf) = NaN.
    m_use[r] = m_new == -INFINITY ? 0.0f : m_new;
    alpha_s[r] = exp2_chunk(m_old - m_use[r]);
  }

  // ---- P = exp2(S - m) -> sP (bf16), row sums, rescale O ----
  float rowsum[2] = {0.0f, 0.0f};
  uint16_t* p_row0 = cta.sP + (rg * 16 + r0) * T::kPStride;
  uint16_t* p_row1 = p_row0 + 8 * T::kPStride;
#pragma unroll
  for (int t = 0; t < T::kSTiles; ++t) {
    const float p0 = exp2_logit(s[t][0], m_use[0], scale_log2);
    const float p1 = exp2_logit(s[t][1], m_use[0], scale_log2);
    const float p2 = exp2_logit(s[t][2], m_use[1], scale_log2);
    const float p3 = exp2_logit(s[t][3], m_use[1], scale_log2);
    rowsum[0] += p0 + p1;
    rowsum[1] += p2 + p3;
    const int col = key_base + t * 8 + 2 * (lane & 3);
    *reinterpret_cast<uint32_t*>(p_row0 + col) = pack_bf16x2(p0, p1);
    *reinterpret_cast<uint32_t*>(p_row1 + col) = pack_bf16x2(p2, p3);
  }
#pragma unroll
  for (int r = 0; r < 2; ++r) st.l[r] = st.l[r] * alpha_s[r] + rowsum[r];
  sync_pv_group<T>(pg);  // D: the whole P tile (and every row maximum) of the PV group

  // ---- running maxima of the PV group's rows (the same values the S side computed for its
  // own rows: same inputs, same order), rescale O ----
  float alpha[T::kPvM][2];
#pragma unroll
  for (int mt = 0; mt < T::kPvM; ++mt) {
#pragma unroll
    for (int r = 0; r < 2; ++r) {
      float m_chunk = -INFINITY;
#pragma unroll
      for (int q = 0; q < T::kParts; ++q) {
        m_chunk = fmaxf(m_chunk, cta.sRedMax[((pg * T::kPvM + mt) * T::kParts + q) * 16 + r0 + 8 * r]);
      }
      const float m_new = fmaxf(st.m[mt][r], m_chunk);
      const float m_u = m_new == -INFINITY ? 0.0f : m_new;
      alpha[mt][r] = exp2_chunk(st.m[mt][r] - m_u);
      st.m[mt][r] = m_new;
    }
  }
  bool rescale = false;
#pragma unroll
  for (int mt = 0; mt < T::kPvM; ++mt) rescale = rescale || alpha[mt][0] != 1.0f || alpha[mt][1] != 1.0f;
  // NOTE: once the running maxima settle, alpha is exactly 1 for the whole warp; skipping the
  // multiply by 1 changes no bit (and stays deterministic: the vote depends on data only).
  if (__any_sync(0xffffffffu, rescale)) {
#pragma unroll
    for (int mt = 0; mt < T::kPvM; ++mt) {
#pragma unroll
      for (int t = 0; t < T::kOTiles; ++t) {
        st.o[mt][t][0] *= alpha[mt][0];
        st.o[mt][t][1] *= alpha[mt][0];
        st.o[mt][t][2] *= alpha[mt][1];
        st.o[mt][t][3] *= alpha[mt][1];
      }
    }
  }

  // ---- O += P V, V = the first 512 dims of the key tile ----
  const int dim_base = pv_part * T::kDimsPerWarp;
  const uint16_t* p_frag = cta.sP + (pg * T::kPvM * 16 + (lane & 15)) * T::kPStride + (lane >> 4) * 8;
#pragma unroll
  for (int kk = 0; kk < T::kBlockN / 16; ++kk) {
    uint32_t a[T::kPvM][4];
#pragma unroll
    for (int mt = 0; mt < T::kPvM; ++mt) ptx::ldmatrix_x4(a[mt], p_frag + mt * 16 * T::kPStride + kk * 16);
    const uint16_t* v_frag = cta.sK + (kk * 16 + ((lane >> 3) & 1) * 8 + (lane & 7)) * T::kKStride +
                             dim_base + (lane >> 4) * 8;
#pragma unroll
    for (int np = 0; np < T::kOTiles / 2; ++np) {
      uint32_t b[4];
      ptx::ldmatrix_x4_trans(b, v_frag + np * 16);
#pragma unroll
      for (int mt = 0; mt < T::kPvM; ++mt) {
        ptx::mma_m16n8k16_bf16_f32(st.o[mt][2 * np], a[mt], b[0], b[1]);
        ptx::mma_m16n8k16_bf16_f32(st.o[mt][2 * np + 1], a[mt], b[2], b[3]);
      }
    }
  }
}

// 0 at build time: the fragments' 4-byte stores for every output row.
#ifndef MODEL1_PORTABLE_QUAD_STORES
#define MODEL1_PORTABLE_QUAD_STORES 1
#endif
inline constexpr bool kQuadStores = MODEL1_PORTABLE_QUAD_STORES != 0;

/// What CTA `bid` of the split kernel computes: (request i, token j, split, head group g) and
/// its request's schedule.
struct CtaWork {
  int g, split, j, i;
  int main_keys;
  RequestSchedule sched;
};
__device__ __forceinline__ CtaWork cta_work(const DecodeParams& p, uint32_t block) {
  CtaWork w;
  int64_t bid = block;
  w.g = static_cast<int>(bid % p.num_head_groups);
  bid /= p.num_head_groups;
  w.split = static_cast<int>(bid % p.max_splits);
  bid /= p.max_splits;
  w.j = static_cast<int>(bid % p.s_q);
  w.i = ordered_request(p, static_cast<int>(bid / p.s_q));
  w.main_keys = clamp_length(p.topk_length, w.i, p.topk);
  const int extra_keys = p.extra_indices != nullptr ? clamp_length(p.extra_topk_length, w.i, p.extra_topk) : 0;
  w.sched = request_schedule(w.main_keys, extra_keys, p.split_chunks);
  return w;
}

/// The split kernel. Grid: b * s_q * max_splits * num_head_groups CTAs (an upper bound from
/// the shapes); CTAs whose split is past their request's schedule exit at once.
template <class T>
__global__ void __launch_bounds__(T::kThreads, 1) sparse_decode_kernel(const __grid_constant__ DecodeParams p) {
  extern __shared__ __align__(16) uint8_t smem[];
  DecodeCta<T> cta(smem);

  const CtaWork w = cta_work(p, blockIdx.x);
  const int g = w.g, split = w.split, j = w.j, i = w.i;
  const int main_keys = w.main_keys;
  const RequestSchedule sched = w.sched;
  if (split >= sched.num_splits) return;
  const int chunk_begin = split * sched.chunks_per_split;
  const int chunk_end = min(chunk_begin + sched.chunks_per_split, sched.num_chunks);

  const int32_t* main_idx = p.indices + i * p.idx_stride_b + j * p.idx_stride_s;  // [topk]
  const int32_t* extra_idx = p.extra_indices != nullptr
                                 ? p.extra_indices + i * p.extra_idx_stride_b + j * p.extra_idx_stride_s
                                 : nullptr;  // [extra_topk]

  SoftmaxState<T> st;
#pragma unroll
  for (int r = 0; r < 2; ++r) {
    st.l[r] = 0.0f;
#pragma unroll
    for (int mt = 0; mt < T::kPvM; ++mt) st.m[mt][r] = -INFINITY;
  }
#pragma unroll
  for (int mt = 0; mt < T::kPvM; ++mt) {
#pragma unroll
    for (int t = 0; t < T::kOTiles; ++t) {
      st.o[mt][t][0] = st.o[mt][t][1] = st.o[mt][t][2] = st.o[mt][t][3] = 0.0f;
    }
  }

  const int my_key = threadIdx.x / T::kThreadsPerKey;  // this thread's key in every chunk
  auto fetch = [&](int c) {
    return fetch_candidate(main_idx, extra_idx, main_keys, sched.num_keys, c * T::kBlockN + my_key);
  };
  Candidate next = fetch(chunk_begin);  // the candidate of the next chunk to load
  if constexpr (T::kStaged) {
    if (chunk_begin < chunk_end) {
      cta.load_chunk(p, next);
      ptx::cp_async_commit();
      next = fetch(chunk_begin + 1);
    }
    cta.load_q(p, i, j, g);
    for (int c = chunk_begin; c < chunk_end; ++c) {
      ptx::cp_async_wait_all();
      __syncthreads();  // A: chunk c staged; the previous chunk's P V is done with sK
      cta.dequant_chunk();
      __syncthreads();  // B: sK / sValid ready; the staging buffer is free
      if (c + 1 < chunk_end) {
        cta.load_chunk(p, next);
        ptx::cp_async_commit();
        next = fetch(c + 2);
      }
      compute_chunk<T>(cta, st, p.scale_log2);
    }
  } else if constexpr (T::kDirectDequant) {
    if (chunk_begin < chunk_end) {
      cta.publish_chunk(p, next);
      next = fetch(chunk_begin + 1);
    }
    cta.load_q(p, i, j, g);
    ptx::cp_async_wait_all();  // Q
    for (int c = chunk_begin; c < chunk_end; ++c) {
      __syncthreads();  // A: chunk c's key addresses published; the previous P V is done with sK
      if (p.cache_aligned16) {
        cta.template dequant_chunk_direct<true>();
      } else {
        cta.template dequant_chunk_direct<false>();
      }
      __syncthreads();  // B: sK / sValid ready; the address table is free
      if (c + 1 < chunk_end) {
        cta.publish_chunk(p, next);
        next = fetch(c + 2);
      }
      compute_chunk<T>(cta, st, p.scale_log2);
    }
  } else {
    cta.load_q(p, i, j, g);
    for (int c = chunk_begin; c < chunk_end; ++c) {
      __syncthreads();  // A: the previous chunk's P V is done with sK
      cta.load_chunk(p, next);
      next = fetch(c + 1);
      ptx::cp_async_wait_all();
      __syncthreads();  // B: sK / sValid ready
      compute_chunk<T>(cta, st, p.scale_log2);
    }
  }

  // ---- epilogue: total row sums over the parts, then outputs or partials ----
  ptx::cp_async_wait_all();  // a split without chunks still has its Q copies in flight
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int pg = warp / T::kPvWarps, pv_part = warp % T::kPvWarps;
  const int r0 = lane >> 2;
#pragma unroll
  for (int r = 0; r < 2; ++r) {
    st.l[r] += __shfl_xor_sync(0xffffffffu, st.l[r], 1);
    st.l[r] += __shfl_xor_sync(0xffffffffu, st.l[r], 2);
  }
  if ((lane & 3) == 0) {
    cta.sRedSum[warp * 16 + r0] = st.l[0];
    cta.sRedSum[warp * 16 + r0 + 8] = st.l[1];
  }
  __syncthreads();

  // NOTE: the CTA's coordinates and schedule computed again (from a fresh read of ctaid): kept
  // alive across the chunk loop, they cost the 64-head sm_80 build spilled registers.
  const CtaWork we = cta_work(p, ptx::ctaid_x_fresh());
  const int dim_base = pv_part * T::kDimsPerWarp;
  const bool direct = we.sched.num_splits == 1;
#pragma unroll
  for (int mr = 0; mr < 2 * T::kPvM; ++mr) {
    const int mt = mr / 2, r = mr % 2;  // m tile of the PV group, row half
    const int row_group = pg * T::kPvM + mt;
    float l_total = 0.0f;
#pragma unroll
    for (int q = 0; q < T::kParts; ++q) {
      l_total += cta.sRedSum[(row_group * T::kParts + q) * 16 + r0 + 8 * r];
    }
    const int h = we.g * T::kRows + row_group * 16 + r0 + 8 * r;
    // NOTE: the request's only split into a 16-byte aligned out: a quad's lanes transpose their
    // pairs and each stores whole 16-byte blocks (4x fewer store instructions, each filling
    // whole sectors; the sm_90a epilogue's). Every lane shuffles, padded rows (h_q 8) store
    // nothing. The condition is the CTA's, so the warp stays converged.
    if (kQuadStores && direct && p.out_aligned16) {
      const bool exists = h < p.h_q;
      const int64_t row = (static_cast<int64_t>(we.i) * p.s_q + we.j) * p.h_q + (exists ? h : 0);
      const DecodeRowScale rs = decode_row_scale(p, exists ? h : 0, true, st.m[mt][r], l_total);
      store_row_bf16_quads<T::kOTiles>(
          p.out + row * T::kDV + dim_base,
          [&](int t) {
            return rs.empty ? 0u : pack_bf16x2(st.o[mt][t][2 * r] * rs.factor, st.o[mt][t][2 * r + 1] * rs.factor);
          },
          exists);
      if (exists && pv_part == 0 && (lane & 3) == 0) store_decode_lse(p, row, we.split, true, rs);
      continue;
    }
    if (h >= p.h_q) continue;
    write_decode_row<T::kOTiles>(
        p, we.i, we.j, h, we.split, direct, st.m[mt][r], l_total, pv_part == 0 && (lane & 3) == 0,
        [&](int t) { return dim_base + t * 8 + 2 * (lane & 3); },
        [&](int t) { return make_float2(st.o[mt][t][2 * r], st.o[mt][t][2 * r + 1]); });
  }
}

}  // namespace model1::cuda::portable
