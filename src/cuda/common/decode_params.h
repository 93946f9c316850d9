// model1 CUDA: the plain parameter block of sparse decode (host -> kernels) and the split-KV
// schedule, a pure function of one request's own candidate counts (batch invariance).
#pragma once

#include <cstdint>

#ifdef __CUDACC__
#define MODEL1_HD __host__ __device__ __forceinline__
#else
#define MODEL1_HD inline
#endif

namespace model1::cuda {

/// Split-KV schedule constants. NOTE: fixed numbers of keys, never functions of the batch:
/// a request's split points depend only on its own candidate counts.
inline constexpr int kChunkKeys = 64;      ///< keys per main-loop step (one smem tile)
inline constexpr int kMaxSplits = 16;      ///< cap (bounds the workspace)

/// One paged cache as the kernels see it.
struct CacheParams {
  const uint8_t* base = nullptr;  ///< first byte of page 0
  int64_t page_stride = 0;        ///< bytes between pages
  int64_t page_size = 0;          ///< P
  int64_t num_slots = 0;          ///< pages * P: a slot is valid iff 0 <= slot < num_slots
  int64_t row_stride = 0;         ///< bytes between tokens of a page (bf16 format only)
  int page_shift = -1;            ///< log2(P) when P is a power of two up to 2^31, else -1
};

/// Everything the decode and combine kernels read. Strides are in elements.
struct DecodeParams {
  const uint16_t* q = nullptr;  // [b, s_q, h_q, d_qk] bf16, last dim contiguous
  int64_t q_stride_b = 0, q_stride_s = 0, q_stride_h = 0;
  int b = 0, s_q = 0, h_q = 0;
  int num_head_groups = 1;  ///< CTAs per (request, token, split) along the heads (set by the launcher)

  CacheParams kv;
  const int32_t* indices = nullptr;  // [b, s_q, topk], last dim contiguous
  int64_t idx_stride_b = 0, idx_stride_s = 0;
  int topk = 0;
  const int32_t* topk_length = nullptr;  // [b] or null

  CacheParams extra_kv;
  const int32_t* extra_indices = nullptr;  // [b, s_q, extra_topk] or null
  int64_t extra_idx_stride_b = 0, extra_idx_stride_s = 0;
  int extra_topk = 0;
  const int32_t* extra_topk_length = nullptr;  // [b] or null

  const float* attn_sink = nullptr;  // [h_q] or null
  float scale_log2 = 0.0f;           ///< sm_scale * log2(e): logits in base 2

  uint16_t* out = nullptr;  // [b, s_q, h_q, 512] bf16, contiguous
  float* lse = nullptr;     // [b, s_q, h_q] f32, contiguous

  float* partial_o = nullptr;    // [b, s_q, h_q, max_splits, 512] f32 (split rows only)
  float* partial_lse = nullptr;  // [b, s_q, h_q, max_splits] f32, base 2, -inf when empty
  int max_splits = 1;            ///< grid extent along the splits (from the shapes)
  int split_chunks = 1;  ///< target chunks per split (the plan's DecodeOptions::split_keys / 64)
  /// h_q 16, 32 or 64: run the heads as two CTAs of h_q / 2 heads (sm_90a: the small-head
  /// kernel; portable: the configuration for h_q / 2 heads, 32 and 64 only; the compact one
  /// ignores it). Set by latency plans (latency_half_head_chunks; CudaPlanState::half_heads).
  bool half_heads = false;
  /// [b] or null: the request each slot of the grid's request dimension computes (longest
  /// first, written by request_order_kernel when the lengths vary and the grid overflows one
  /// wave; null = slot r computes request r). Only the CTAs' start order changes, no result.
  const int32_t* request_order = nullptr;

  bool cache_aligned16 = true;  ///< both caches' rows 16-byte aligned: cp.async path
  bool q_aligned16 = true;      ///< q rows 16-byte aligned: vector loads
  bool out_aligned8 = true;     ///< out 8-byte aligned: bf16x2 / bf16x4 stores
  bool out_aligned16 = true;    ///< out 16-byte aligned: 16-byte stores (sm_90a epilogue)
};

/// The request computed by slot r of the split grid's request dimension.
/// NOTE: a coherent load cached in L2 only (ld.global.cg), never the read-only path: on sm_90
/// the split kernel is a programmatic dependent of the kernel that writes the order, so the
/// data changes during its lifetime (until its griddepcontrol.wait), which ld.global.nc does
/// not allow. With __ldg, CudaDecode.LongestFirstOrderInGraphReplay computed wrong rows.
MODEL1_HD int ordered_request(const DecodeParams& p, int r) {
#ifdef __CUDA_ARCH__
  return p.request_order != nullptr ? __ldcg(p.request_order + r) : r;
#else
  return p.request_order != nullptr ? p.request_order[r] : r;
#endif
}

struct RequestSchedule {
  int num_keys = 0;          ///< candidates (main then extra), after length clamping
  int num_chunks = 0;
  int num_splits = 1;        ///< >= 1 (an empty request still gets one split: out 0, lse +inf)
  int chunks_per_split = 0;
};

MODEL1_HD int clamp_length(const int32_t* lengths, int i, int topk) {
  if (lengths == nullptr) return topk;
  const int v = lengths[i];
  return v < 0 ? 0 : (v > topk ? topk : v);
}

/// `split_chunks`: the target chunks per split, a constant of the plan (never derived from
/// the batch), so a request's schedule depends on its own lengths only.
MODEL1_HD RequestSchedule request_schedule(int main_keys, int extra_keys, int split_chunks) {
  RequestSchedule s;
  s.num_keys = main_keys + extra_keys;
  s.num_chunks = (s.num_keys + kChunkKeys - 1) / kChunkKeys;
  int splits = (s.num_chunks + split_chunks - 1) / split_chunks;
  splits = splits < 1 ? 1 : (splits > kMaxSplits ? kMaxSplits : splits);
  // NOTE: balanced splits. The count stays a monotone function of the key count (the grid is
  // sized by the largest), so a trailing split may be empty; it then writes an empty partial.
  s.num_splits = splits;
  s.chunks_per_split = (s.num_chunks + splits - 1) / splits;
  return s;
}

/// CTAs of one (request, token, split): h_q 8..64 run as one CTA, 128 as two head groups of
/// 64 (the default kernel configurations; the shared-memory fallback uses 16-head CTAs).
MODEL1_HD int64_t ctas_per_split(int64_t h_q) { return h_q <= 64 ? 1 : (h_q + 63) / 64; }

/// Largest target chunks per split a plan may ask for (DecodeOptions::split_keys <= 16384).
inline constexpr int kMaxSplitChunks = 256;

/// The smallest target chunks per split (1 .. max_split_chunks) whose splits, for `ctas` CTAs
/// per split and requests of `keys` candidates each, launch at most `num_sms` CTAs (one wave);
/// 0 when even the largest needs more. Targets whose split count the kMaxSplits cap would cut
/// are skipped: they run as a larger split with empty CTAs.
MODEL1_HD int one_wave_split_chunks(int64_t ctas, int64_t keys, int64_t num_sms, int max_split_chunks) {
  const int64_t chunks = keys <= 0 ? 1 : (keys + kChunkKeys - 1) / kChunkKeys;
  for (int c = 1; c <= max_split_chunks; ++c) {
    const int64_t splits = (chunks + c - 1) / c;
    if (splits > kMaxSplits) continue;
    if (ctas * splits <= num_sms) return c;
  }
  return 0;
}

/// The latency rule behind DecodeOptions::split_keys = kLatencySplitKeys: the smallest target
/// chunks per split whose splits for b * s_q requests of `keys` candidates each fit one wave of
/// whole-head CTAs (ctas_per_split); 0 when none does (the batch fills the GPU: the default's
/// few splits are faster).
/// NOTE: a function of the batch (b): a plan made with it is not batch-invariant across batch
/// sizes. Measured against every split size on the H200 (docs/PERF.md, ninth session).
MODEL1_HD int latency_split_chunks(int64_t b, int64_t s_q, int64_t h_q, int64_t keys, int64_t num_sms,
                                   int max_split_chunks) {
  return one_wave_split_chunks(b * s_q * ctas_per_split(h_q), keys, num_sms, max_split_chunks);
}

/// Half-head CTAs for a latency plan (DecodeParams::half_heads; the sm_90a kernels and the
/// portable default configuration): given the whole-head rule's chunks per split
/// (`whole_chunks`, latency_split_chunks; 0 = not a latency split), the chunks per split of a
/// plan that runs each split as two CTAs of half the heads, or 0 to keep whole heads. 16, 32
/// or 64 heads whose doubled grid fits one wave at the same split; 64 heads also when it fits
/// with one chunk more per split. Measured on the H200
/// (PERF.md): sm_90a at the same split 3-9% sooner at b = 2 (sixteenth session); 64 heads with
/// one chunk more 4-10% sooner at b = 4 / 6 / 8, while 32 and 16 heads with one chunk more,
/// and 64 heads with two or more, tie or lose; the portable kernels 6-19% sooner at the same
/// split, 2-9% with one chunk more for 64 heads, slower with one more for 32 (seventeenth
/// session).
MODEL1_HD int latency_half_head_chunks(int64_t b, int64_t s_q, int64_t h_q, int64_t keys, int64_t num_sms,
                                       int whole_chunks, int max_split_chunks) {
  if (whole_chunks <= 0 || (h_q != 16 && h_q != 32 && h_q != 64)) return 0;
  const int half = one_wave_split_chunks(2 * b * s_q, keys, num_sms, max_split_chunks);
  if (half == whole_chunks || (h_q == 64 && half == whole_chunks + 1)) return half;
  return 0;
}

}  // namespace model1::cuda
