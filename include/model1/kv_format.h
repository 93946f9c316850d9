// model1: KV-cache formats and their byte layouts (MODEL1.md section 2).
#pragma once

#include <cstdint>

namespace model1 {

/// The cache formats. All store h_kv = 1 latent entries in pages of P tokens.
enum class KvFormat : uint8_t {
  kModel1Fp8,  ///< 448 NoPE dims e4m3 + 64 RoPE bf16, UE8M0 scale per 64 dims; 584 B/token
  kV32Fp8,     ///< 512 NoPE dims e4m3 + 4 float32 scales + 64 RoPE bf16; 656 B/token
  kBf16,       ///< plain bf16 [pages, P, d_qk] (d_qk 512 or 576)
};

const char* kv_format_name(KvFormat format);  // "model1_fp8", "v32_fp8", "bf16"

/// MODEL1_FP8 layout. One page: P data rows of kDataRowBytes, then P scale rows of
/// kScaleRowBytes, then padding up to a multiple of kPageAlign bytes.
namespace model1_fp8 {
inline constexpr int kDQk = 512;             // head dim (= d_v: the whole entry is V)
inline constexpr int kDV = 512;
inline constexpr int kNopeDims = 448;        // quantized dims 0..447
inline constexpr int kRopeDims = 64;         // bf16 dims 448..511
inline constexpr int kTileDims = 64;         // one scale per 64 NoPE values
inline constexpr int kNumTiles = kNopeDims / kTileDims;           // 7
inline constexpr int kNopeBytes = kNopeDims;                      // 448 (1 byte / value)
inline constexpr int kRopeBytes = kRopeDims * 2;                  // 128
inline constexpr int kDataRowBytes = kNopeBytes + kRopeBytes;     // 576
inline constexpr int kScaleRowBytes = kNumTiles + 1;              // 8 (7 UE8M0 + 1 pad = 0)
inline constexpr int kBytesPerToken = kDataRowBytes + kScaleRowBytes;  // 584
inline constexpr int kPageAlign = 576;
static_assert(kNumTiles * kTileDims == kNopeDims, "NoPE dims must split into whole tiles");

/// Smallest page stride in bytes: ceil(584 P / 576) * 576.
constexpr int64_t min_page_stride(int64_t page_size) {
  return (kBytesPerToken * page_size + kPageAlign - 1) / kPageAlign * kPageAlign;
}
/// Byte offset, inside a page, of token `t`'s data row (NoPE e4m3 then RoPE bf16).
constexpr int64_t data_row_offset(int64_t t) { return kDataRowBytes * t; }
/// Byte offset, inside a page of P tokens, of token `t`'s scale row.
constexpr int64_t scale_row_offset(int64_t page_size, int64_t t) {
  return kDataRowBytes * page_size + kScaleRowBytes * t;
}
}  // namespace model1_fp8

/// V32_FP8 layout: contiguous 656-byte token records.
namespace v32_fp8 {
inline constexpr int kDQk = 576;
inline constexpr int kDV = 512;
inline constexpr int kNopeDims = 512;
inline constexpr int kRopeDims = 64;
inline constexpr int kTileDims = 128;
inline constexpr int kNumTiles = kNopeDims / kTileDims;         // 4
inline constexpr int kNopeBytes = kNopeDims;                    // 512
inline constexpr int kScaleBytes = kNumTiles * 4;               // 16 (float32 each)
inline constexpr int kRopeBytes = kRopeDims * 2;                // 128
inline constexpr int kBytesPerToken = kNopeBytes + kScaleBytes + kRopeBytes;  // 656
inline constexpr int kScaleOffset = kNopeBytes;                 // 512
inline constexpr int kRopeOffset = kNopeBytes + kScaleBytes;    // 528
static_assert(kNumTiles * kTileDims == kNopeDims, "NoPE dims must split into whole tiles");

constexpr int64_t min_page_stride(int64_t page_size) { return kBytesPerToken * page_size; }
constexpr int64_t token_offset(int64_t t) { return int64_t{kBytesPerToken} * t; }
}  // namespace v32_fp8

/// Head dim d_qk of a format (Bf16: the caller's d_qk, 512 or 576).
int kv_format_d_qk(KvFormat format, int bf16_d_qk = 512);
/// Payload bytes per token: 584, 656, or 2 * d_qk.
int64_t kv_bytes_per_token(KvFormat format, int bf16_d_qk = 512);
/// Smallest legal page stride in bytes for pages of `page_size` tokens.
int64_t kv_min_page_stride(KvFormat format, int64_t page_size, int bf16_d_qk = 512);

/// Largest float e4m3 value and the amax floor of the reference quantization rule.
inline constexpr float kFp8Max = 448.0f;
inline constexpr float kAmaxFloor = 1e-4f;

}  // namespace model1
