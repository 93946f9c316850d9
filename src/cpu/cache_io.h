// model1 CPU backend: reading and writing one token of a paged cache, bit-exact to the byte
// layouts of MODEL1.md section 2 (include/model1/kv_format.h).
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>

#include "backend.h"
#include "cpu/numerics.h"

namespace model1::cpu {

/// First byte of the page holding `slot` and the slot's offset inside that page.
struct SlotAddress {
  uint8_t* page;
  int64_t offset;
};
inline SlotAddress slot_address(const detail::CacheGeom& g, int64_t slot) {
  const int64_t page = slot / g.page_size;
  // NOTE: the cache geometry holds a const pointer because kernels mostly read; the writers
  // below are only called on caches the caller passed as outputs.
  return {const_cast<uint8_t*>(g.base) + page * g.page_stride, slot % g.page_size};
}

/// Quantizes one tile of `n` bf16 NoPE values into e4m3 codes; returns the scale exponent k
/// (scale = 2^k) of the reference rule.
inline int quantize_tile(const uint16_t* x, int n, uint8_t* codes) {
  float amax = 0.0f;
  for (int d = 0; d < n; ++d) amax = std::max(amax, std::fabs(bf16_to_float(x[d])));
  const int k = tile_scale_exponent(amax);
  // NOTE: dividing by a power of two is exact (ldexp), so e4m3(x / s) rounds only once.
  for (int d = 0; d < n; ++d) codes[d] = float_to_e4m3(std::ldexp(bf16_to_float(x[d]), -k));
  return k;
}

/// Writes token `slot` from `x` (d_qk bf16 values, as bits).
inline void write_token(const detail::CacheGeom& g, int64_t slot, const uint16_t* x) {
  const SlotAddress a = slot_address(g, slot);
  switch (g.format) {
    case KvFormat::kModel1Fp8: {
      namespace f = model1_fp8;
      uint8_t* row = a.page + f::data_row_offset(a.offset);
      uint8_t* scales = a.page + f::scale_row_offset(g.page_size, a.offset);
      for (int j = 0; j < f::kNumTiles; ++j) {
        const int k = quantize_tile(x + j * f::kTileDims, f::kTileDims, row + j * f::kTileDims);
        scales[j] = ue8m0_encode(k);
      }
      scales[f::kNumTiles] = 0;  // pad byte
      std::memcpy(row + f::kNopeBytes, x + f::kNopeDims, f::kRopeBytes);
      break;
    }
    case KvFormat::kV32Fp8: {
      namespace f = v32_fp8;
      uint8_t* rec = a.page + f::token_offset(a.offset);
      for (int j = 0; j < f::kNumTiles; ++j) {
        const int k = quantize_tile(x + j * f::kTileDims, f::kTileDims, rec + j * f::kTileDims);
        store_f32(rec + f::kScaleOffset + 4 * j, std::ldexp(1.0f, k));
      }
      std::memcpy(rec + f::kRopeOffset, x + f::kNopeDims, f::kRopeBytes);
      break;
    }
    case KvFormat::kBf16:
      std::memcpy(a.page + a.offset * g.bf16_row_stride, x, size_t{2} * g.d_qk);
      break;
  }
}

/// Reads token `slot` into `out` (d_qk floats): e4m3 * scale (exact) and the bf16 RoPE dims.
inline void read_token(const detail::CacheGeom& g, int64_t slot, float* out) {
  const SlotAddress a = slot_address(g, slot);
  const std::array<float, 256>& e4m3 = e4m3_table();
  switch (g.format) {
    case KvFormat::kModel1Fp8: {
      namespace f = model1_fp8;
      const uint8_t* row = a.page + f::data_row_offset(a.offset);
      const uint8_t* scales = a.page + f::scale_row_offset(g.page_size, a.offset);
      for (int j = 0; j < f::kNumTiles; ++j) {
        const float s = ue8m0_decode(scales[j]);
        for (int d = j * f::kTileDims; d < (j + 1) * f::kTileDims; ++d) out[d] = e4m3[row[d]] * s;
      }
      for (int d = 0; d < f::kRopeDims; ++d) {
        out[f::kNopeDims + d] = bf16_to_float(load_u16(row + f::kNopeBytes + 2 * d));
      }
      break;
    }
    case KvFormat::kV32Fp8: {
      namespace f = v32_fp8;
      const uint8_t* rec = a.page + f::token_offset(a.offset);
      for (int j = 0; j < f::kNumTiles; ++j) {
        const float s = load_f32(rec + f::kScaleOffset + 4 * j);
        for (int d = j * f::kTileDims; d < (j + 1) * f::kTileDims; ++d) out[d] = e4m3[rec[d]] * s;
      }
      for (int d = 0; d < f::kRopeDims; ++d) {
        out[f::kNopeDims + d] = bf16_to_float(load_u16(rec + f::kRopeOffset + 2 * d));
      }
      break;
    }
    case KvFormat::kBf16: {
      const uint8_t* row = a.page + a.offset * g.bf16_row_stride;
      for (int d = 0; d < g.d_qk; ++d) out[d] = bf16_to_float(load_u16(row + 2 * d));
      break;
    }
  }
}

}  // namespace model1::cpu
