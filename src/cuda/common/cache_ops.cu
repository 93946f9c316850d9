// model1 CUDA: quantize_cache, store_tokens and dequantize_cache (MODEL1.md sections 2 and 5),
// byte-identical to the CPU backend. One warp per token.
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cstdint>
#include <string>

#include "backend.h"
#include "cuda/common/cuda_check.h"
#include "cuda/common/decode_params.h"
#include "cuda/common/numerics.cuh"
#include "model1/error.h"

namespace model1::cuda {
namespace {

struct CacheOpTraits {
  static constexpr int kThreads = 256;
  static constexpr int kTokensPerBlock = kThreads / 32;  // one warp per token
};

/// bf16 token rows -> cache slots.
struct StoreParams {
  const uint16_t* src = nullptr;  // [n, d_qk] bf16, last dim contiguous
  int64_t src_row_stride = 0;     // elements
  const int32_t* slots = nullptr;  // [n]; null: row r goes to slot r
  int64_t n = 0;
  CacheParams cache;
  int d_qk = 512;
};

/// Cache slots -> bf16 or f32 rows.
struct LoadParams {
  CacheParams cache;
  int d_qk = 512;
  int64_t n = 0;                  // slots
  void* dst = nullptr;            // [n, d_qk]
  int64_t dst_row_stride = 0;     // elements
  bool dst_f32 = false;
};

__device__ __forceinline__ uint8_t* page_of(const CacheParams& c, int64_t slot, int64_t* offset) {
  const int64_t page = slot / c.page_size;
  *offset = slot - page * c.page_size;
  return const_cast<uint8_t*>(c.base) + page * c.page_stride;
}

__device__ __forceinline__ void store_u16(uint8_t* p, uint16_t v) {
  p[0] = static_cast<uint8_t>(v & 0xffu);
  p[1] = static_cast<uint8_t>(v >> 8);
}
__device__ __forceinline__ uint16_t load_u16(const uint8_t* p) {
  return static_cast<uint16_t>(p[0] | (p[1] << 8));
}
__device__ __forceinline__ float bf16_bits_to_float(uint16_t b) {
  return __uint_as_float(static_cast<uint32_t>(b) << 16);
}

/// e4m3 code * scale. NOTE: GPU arithmetic returns a canonical NaN; a NaN code keeps the
/// CPU's bits (its sign, quiet) so dequantized caches compare bitwise.
__device__ __forceinline__ float dequant_value(uint32_t code, float scale) {
  const float x = e4m3_to_float(code);
  return x != x ? x : x * scale;
}

/// Quantizes a tile of kPerLane * 32 values (lane-local `x`) into e4m3 codes at `codes`
/// (value e of lane l at codes[l * kPerLane + e]); returns the scale exponent k.
template <int kPerLane>
__device__ __forceinline__ int quantize_tile(const float (&x)[kPerLane], uint8_t* codes, int lane) {
  float amax = 0.0f;
#pragma unroll
  for (int e = 0; e < kPerLane; ++e) amax = fmaxf(amax, fabsf(x[e]));  // NOTE: NaN ignored, as the CPU
#pragma unroll
  for (int off = 16; off > 0; off >>= 1) amax = fmaxf(amax, __shfl_xor_sync(0xffffffffu, amax, off));
  const int k = tile_scale_exponent(amax);
#pragma unroll
  for (int e = 0; e < kPerLane; ++e) {
    // NOTE: ldexpf by -k is exact, so e4m3(x / s) rounds once, like the CPU rule.
    codes[lane * kPerLane + e] = static_cast<uint8_t>(float_to_e4m3(ldexpf(x[e], -k)));
  }
  return k;
}

template <KvFormat kFormat>
__global__ void __launch_bounds__(CacheOpTraits::kThreads) store_kernel(const __grid_constant__ StoreParams p) {
  const int lane = threadIdx.x % 32;
  const int64_t r = static_cast<int64_t>(blockIdx.x) * CacheOpTraits::kTokensPerBlock + threadIdx.x / 32;
  if (r >= p.n) return;
  const int64_t slot = p.slots != nullptr ? p.slots[r] : r;
  if (slot < 0 || slot >= p.cache.num_slots) return;  // padding (or out of range: skipped)
  const uint16_t* x = p.src + r * p.src_row_stride;  // [d_qk]
  int64_t off;
  uint8_t* page = page_of(p.cache, slot, &off);

  if constexpr (kFormat == KvFormat::kModel1Fp8) {
    namespace f = model1_fp8;
    constexpr int kPerLane = f::kTileDims / 32;  // 2
    uint8_t* row = page + f::data_row_offset(off);
    uint8_t* scales = page + f::scale_row_offset(p.cache.page_size, off);
#pragma unroll 1
    for (int t = 0; t < f::kNumTiles; ++t) {
      float v[kPerLane];
#pragma unroll
      for (int e = 0; e < kPerLane; ++e) v[e] = bf16_bits_to_float(x[t * f::kTileDims + lane * kPerLane + e]);
      const int k = quantize_tile<kPerLane>(v, row + t * f::kTileDims, lane);
      if (lane == 0) scales[t] = static_cast<uint8_t>(k + 127);  // UE8M0
    }
    if (lane == 0) scales[f::kNumTiles] = 0;  // pad byte
    for (int d = lane; d < f::kRopeDims; d += 32) store_u16(row + f::kNopeBytes + 2 * d, x[f::kNopeDims + d]);
  } else if constexpr (kFormat == KvFormat::kV32Fp8) {
    namespace f = v32_fp8;
    constexpr int kPerLane = f::kTileDims / 32;  // 4
    uint8_t* rec = page + f::token_offset(off);
#pragma unroll 1
    for (int t = 0; t < f::kNumTiles; ++t) {
      float v[kPerLane];
#pragma unroll
      for (int e = 0; e < kPerLane; ++e) v[e] = bf16_bits_to_float(x[t * f::kTileDims + lane * kPerLane + e]);
      const int k = quantize_tile<kPerLane>(v, rec + t * f::kTileDims, lane);
      if (lane == 0) {
        const uint32_t s = __float_as_uint(ldexpf(1.0f, k));
        for (int b = 0; b < 4; ++b) rec[f::kScaleOffset + 4 * t + b] = static_cast<uint8_t>(s >> (8 * b));
      }
    }
    for (int d = lane; d < f::kRopeDims; d += 32) store_u16(rec + f::kRopeOffset + 2 * d, x[f::kNopeDims + d]);
  } else {
    uint8_t* row = page + off * p.cache.row_stride;
    for (int d = lane; d < p.d_qk; d += 32) store_u16(row + 2 * d, x[d]);
  }
}

template <KvFormat kFormat>
__global__ void __launch_bounds__(CacheOpTraits::kThreads) load_kernel(const __grid_constant__ LoadParams p) {
  const int lane = threadIdx.x % 32;
  const int64_t slot = static_cast<int64_t>(blockIdx.x) * CacheOpTraits::kTokensPerBlock + threadIdx.x / 32;
  if (slot >= p.n) return;
  int64_t off;
  const uint8_t* page = page_of(p.cache, slot, &off);
  for (int d = lane; d < p.d_qk; d += 32) {
    float v;
    if constexpr (kFormat == KvFormat::kModel1Fp8) {
      namespace f = model1_fp8;
      const uint8_t* row = page + f::data_row_offset(off);
      const uint8_t* scales = page + f::scale_row_offset(p.cache.page_size, off);
      v = d < f::kNopeDims ? dequant_value(row[d], ue8m0_to_float(scales[d / f::kTileDims]))
                           : bf16_bits_to_float(load_u16(row + f::kNopeBytes + 2 * (d - f::kNopeDims)));
    } else if constexpr (kFormat == KvFormat::kV32Fp8) {
      namespace f = v32_fp8;
      const uint8_t* rec = page + f::token_offset(off);
      if (d < f::kNopeDims) {
        const uint8_t* sp = rec + f::kScaleOffset + 4 * (d / f::kTileDims);
        const uint32_t s = sp[0] | (sp[1] << 8) | (sp[2] << 16) | (static_cast<uint32_t>(sp[3]) << 24);
        v = dequant_value(rec[d], __uint_as_float(s));
      } else {
        v = bf16_bits_to_float(load_u16(rec + f::kRopeOffset + 2 * (d - f::kNopeDims)));
      }
    } else {
      v = bf16_bits_to_float(load_u16(page + off * p.cache.row_stride + 2 * d));
    }
    if (p.dst_f32) {
      static_cast<float*>(p.dst)[slot * p.dst_row_stride + d] = v;
    } else {
      // NOTE: e4m3 * 2^k has at most 4 significant bits: exact in bf16.
      static_cast<uint16_t*>(p.dst)[slot * p.dst_row_stride + d] = float_to_bf16_bits(v);
    }
  }
}

CacheParams cache_params(const KvCacheView& view, int* d_qk, KvFormat* format) {
  const detail::CacheGeom g = detail::cache_geom(view);
  CacheParams c;
  c.base = g.base;
  c.page_stride = g.page_stride;
  c.page_size = g.page_size;
  c.num_slots = g.num_slots();
  c.row_stride = g.bf16_row_stride;
  *d_qk = g.d_qk;
  *format = g.format;
  return c;
}

unsigned blocks_for(int64_t tokens, const char* op) {
  const int64_t blocks = (tokens + CacheOpTraits::kTokensPerBlock - 1) / CacheOpTraits::kTokensPerBlock;
  MODEL1_CHECK(blocks <= 0x7fffffffll, op, "fewer than 2^34 tokens", std::to_string(tokens));
  return static_cast<unsigned>(blocks);
}

void launch_store(const StoreParams& p, KvFormat format, cudaStream_t stream, const char* op) {
  if (p.n == 0) return;
  const unsigned blocks = blocks_for(p.n, op);
  switch (format) {
    case KvFormat::kModel1Fp8:
      store_kernel<KvFormat::kModel1Fp8><<<blocks, CacheOpTraits::kThreads, 0, stream>>>(p);
      break;
    case KvFormat::kV32Fp8:
      store_kernel<KvFormat::kV32Fp8><<<blocks, CacheOpTraits::kThreads, 0, stream>>>(p);
      break;
    case KvFormat::kBf16:
      store_kernel<KvFormat::kBf16><<<blocks, CacheOpTraits::kThreads, 0, stream>>>(p);
      break;
    default:
      MODEL1_THROW("dst.format", "model1_fp8, v32_fp8 or bf16",
                   "format code " + std::to_string(static_cast<int>(format)));
  }
  const cudaError_t err = cudaGetLastError();
  if (err != cudaSuccess) throw_cuda_error(op, err, "launch of store_kernel", __FILE__, __LINE__);
}

}  // namespace

void quantize_cache(const TensorView& src, const KvCacheView& dst, void* stream) {
  DeviceGuard guard(src.device_id, "quantize_cache");
  StoreParams p;
  KvFormat format;
  p.cache = cache_params(dst, &p.d_qk, &format);
  p.src = src.ptr<const uint16_t>();
  p.src_row_stride = src.strides[0];
  p.slots = nullptr;
  p.n = p.cache.num_slots;
  launch_store(p, format, static_cast<cudaStream_t>(stream), "quantize_cache");
}

void store_tokens(const TensorView& tokens, const TensorView& slots, const KvCacheView& dst,
                  void* stream) {
  DeviceGuard guard(tokens.device_id, "store_tokens");
  StoreParams p;
  KvFormat format;
  p.cache = cache_params(dst, &p.d_qk, &format);
  p.src = tokens.ptr<const uint16_t>();
  p.src_row_stride = tokens.strides[0];
  p.slots = slots.ptr<const int32_t>();
  p.n = tokens.shape[0];
  // NOTE: rows are stored independently and in parallel: when two rows of one call name the
  // same slot, which one lands is unspecified (the CPU keeps the later row). Engines never do
  // this; tests do not rely on it.
  launch_store(p, format, static_cast<cudaStream_t>(stream), "store_tokens");
}

void dequantize_cache(const KvCacheView& src, const TensorView& dst, void* stream) {
  DeviceGuard guard(dst.device_id, "dequantize_cache");
  LoadParams p;
  KvFormat format;
  p.cache = cache_params(src, &p.d_qk, &format);
  p.n = p.cache.num_slots;
  p.dst = dst.data;
  p.dst_row_stride = dst.strides[0];
  p.dst_f32 = dst.dtype == DType::kF32;
  if (p.n == 0) return;
  const unsigned blocks = blocks_for(p.n, "dequantize_cache");
  auto s = static_cast<cudaStream_t>(stream);
  switch (format) {
    case KvFormat::kModel1Fp8:
      load_kernel<KvFormat::kModel1Fp8><<<blocks, CacheOpTraits::kThreads, 0, s>>>(p);
      break;
    case KvFormat::kV32Fp8:
      load_kernel<KvFormat::kV32Fp8><<<blocks, CacheOpTraits::kThreads, 0, s>>>(p);
      break;
    case KvFormat::kBf16:
      load_kernel<KvFormat::kBf16><<<blocks, CacheOpTraits::kThreads, 0, s>>>(p);
      break;
    default:
      MODEL1_THROW("src.format", "model1_fp8, v32_fp8 or bf16",
                   "format code " + std::to_string(static_cast<int>(format)));
  }
  MODEL1_CUDA_CHECK_LAUNCH("dequantize_cache", "load_kernel");
}

}  // namespace model1::cuda
