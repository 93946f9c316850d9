// model1 internal: the interface between src/api (validation, dispatch) and the backends.
// Backends are called only after validation succeeded, with every tensor on one device,
// optional tensors either absent or fully checked, and sm_scale resolved.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "model1/decode.h"
#include "model1/kv_cache.h"
#include "model1/prefill.h"
#include "model1/version.h"

namespace model1::detail {

/// A cache reduced to what kernels need: base pointer, page stride in bytes, P, page count.
struct CacheGeom {
  const uint8_t* base = nullptr;  ///< first byte of page 0
  int64_t page_stride = 0;        ///< bytes between pages
  int64_t page_size = 0;          ///< P
  int64_t num_pages = 0;
  KvFormat format = KvFormat::kModel1Fp8;
  int d_qk = 512;                 ///< 512 (MODEL1, Bf16-512) or 576 (V3.2, Bf16-576)
  int64_t bf16_row_stride = 0;    ///< Bf16 only: bytes between tokens of a page
  int64_t num_slots() const { return num_pages * page_size; }
};
/// Builds the geometry of a validated cache view.
CacheGeom cache_geom(const KvCacheView& cache);

/// Backend-owned part of a DecodePlan (workspace, schedule buffers).
struct BackendPlanState {
  virtual ~BackendPlanState() = default;
  /// Keys per split the backend plans with: the split_keys it was given, except where a
  /// latency plan's rule for its kernels took another (CUDA: 64 heads in half-head CTAs).
  int split_keys = 0;
};

}  // namespace model1::detail

namespace model1 {

/// The shape signature a plan was made for, checked on every sparse_decode.
struct DecodePlan::Impl {
  Device device = Device::kCPU;
  int device_id = 0;
  KvFormat format = KvFormat::kModel1Fp8;
  int64_t b = 0, s_q = 0, h_q = 0, d_qk = 0, topk = 0, extra_topk = 0;
  bool has_extra = false;
  bool has_topk_length = false;
  bool has_extra_topk_length = false;
  int split_keys = 0;  // resolved DecodeOptions::split_keys (not part of the shape signature)
  std::unique_ptr<detail::BackendPlanState> backend;  // null on the CPU
};

}  // namespace model1

namespace model1::cpu {
void quantize_cache(const TensorView& src, const KvCacheView& dst);
void store_tokens(const TensorView& tokens, const TensorView& slots, const KvCacheView& dst);
void dequantize_cache(const KvCacheView& src, const TensorView& dst);
void sparse_decode(const SparseDecodeArgs& args, float sm_scale);
void sparse_prefill(const SparsePrefillArgs& args, float sm_scale);
}  // namespace model1::cpu

namespace model1::cuda {
// Defined in src/cuda when MODEL1_WITH_CUDA; src/api throws a clear Error otherwise.
void quantize_cache(const TensorView& src, const KvCacheView& dst, void* stream);
void store_tokens(const TensorView& tokens, const TensorView& slots, const KvCacheView& dst,
                  void* stream);
void dequantize_cache(const KvCacheView& src, const TensorView& dst, void* stream);
/// `split_keys`: the plan's resolved DecodeOptions::split_keys (validated: a multiple of 64);
/// `latency`: it came from the latency rule (DecodeOptions::split_keys = kLatencySplitKeys).
std::unique_ptr<detail::BackendPlanState> plan_decode(const SparseDecodeArgs& args,
                                                      int split_keys, bool latency, void* stream);
void sparse_decode(const SparseDecodeArgs& args, float sm_scale,
                   detail::BackendPlanState& plan, void* stream);
/// The kernel family sparse_decode would launch (decode_kernel_name in decode.h).
std::string decode_kernel_name(const SparseDecodeArgs& args, float sm_scale,
                               const detail::BackendPlanState& plan);
void sparse_prefill(const SparsePrefillArgs& args, float sm_scale, void* stream);
/// The kernel family sparse_prefill would launch (prefill_kernel_name in prefill.h).
std::string prefill_kernel_name(const SparsePrefillArgs& args, float sm_scale);
std::vector<GpuInfo> gpus_found();
/// The number of SMs of CUDA device `device` (cached).
int sm_count(int device);
std::vector<std::string> archs_compiled();
}  // namespace model1::cuda
