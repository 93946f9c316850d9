// model1: sparse decode (MODEL1.md section 3) with a plan / run split.
#pragma once

#include <cmath>
#include <cstdint>
#include <memory>
#include <string>

#include "model1/kv_cache.h"
#include "model1/tensor.h"

namespace model1 {

/// Everything one sparse decode call reads and writes. Optional tensors are absent when
/// default-constructed (`TensorView{}`).
struct SparseDecodeArgs {
  TensorView q;        ///< bf16 [b, s_q, h_q, d_qk]; any strides, last dim contiguous
  KvCacheView kv;      ///< main cache (d_qk 512 for MODEL1, 576 for V3.2)
  TensorView indices;  ///< int32 [b, s_q, topk]; slots; any strides, last dim contiguous
  TensorView topk_length;  ///< optional int32 [b]: keys k < topk_length[i] are candidates

  KvCacheView extra_kv;          ///< optional extra cache (same format, its own P and pages)
  TensorView extra_indices;      ///< int32 [b, s_q, extra_topk]; needs extra_kv
  TensorView extra_topk_length;  ///< optional int32 [b]

  TensorView attn_sink;  ///< optional f32 [h_q]
  float sm_scale = NAN;  ///< NaN means 1 / sqrt(d_qk)

  TensorView out;  ///< bf16 [b, s_q, h_q, d_v = 512]; fully written
  TensorView lse;  ///< f32  [b, s_q, h_q]; natural log, excludes the sink; +inf if no key
};

/// Tuning of a decode plan. Every field is a constant of the plan: a request's output is
/// bit-identical across batches (batch invariance) among calls made with equal options, except
/// for kLatencySplitKeys, which picks the split size from the batch.
struct DecodeOptions {
  /// CUDA: target keys per split-KV split, a multiple of 64 in [64, 16384]; 0 = the library
  /// default (kDefaultSplitKeys, or MODEL1_CUDA_SPLIT_CHUNKS * 64 when that is set);
  /// kLatencySplitKeys (-1) = latency_split_keys() for the plan's shapes and GPU. A request
  /// of n keys runs as ceil(n / split_keys) splits (at most 16), each on its own CTA, merged
  /// by a combine kernel. Smaller values spread a request over more SMs (lower latency when
  /// the batch is small); larger ones avoid the merge once the batch fills the GPU (higher
  /// throughput). A kLatencySplitKeys plan for 16, 32 or 64 heads also runs each split as two
  /// CTAs of half the heads when that grid still fits one wave (H200, b = 2: 3-9% sooner, the
  /// portable kernels 6-19%); for 64 heads also when it fits with one 64-key chunk more a
  /// split, which the plan then takes (b = 4 to 8: 2-10% sooner; DecodePlan::split_keys
  /// reports it). Not in the compact fallback configuration. The CPU backend validates it and
  /// has no splits.
  int split_keys = 0;
};

/// The library's default DecodeOptions::split_keys (docs/PERF.md, "split size").
inline constexpr int kDefaultSplitKeys = 4096;
/// DecodeOptions::split_keys value asking the plan for latency_split_keys() of its own shapes.
inline constexpr int kLatencySplitKeys = -1;

/// The split size that minimises a batch's latency by the measured rule (docs/PERF.md, ninth
/// session): the smallest multiple of 64 keys whose splits of b * s_q requests of up to
/// `keys_per_request` keys (topk + extra_topk) launch at most `num_sms` CTAs, one wave (h_q
/// 128 counts two CTAs per split); kDefaultSplitKeys when even one split per request needs
/// more than one wave. Throws Error naming an argument below 1. A kLatencySplitKeys plan takes
/// this value, except a 64-head plan with half-head CTAs, which may take one chunk (64 keys)
/// more a split (DecodeOptions::split_keys; DecodePlan::split_keys reports it).
/// NOTE: a function of the batch: outputs of plans made with different results are not
/// bit-identical (FlashMLA's own scheduler behaves the same way). For a fixed batch size it
/// is a constant, like any other split size.
int latency_split_keys(int64_t b, int64_t s_q, int64_t h_q, int64_t keys_per_request, int num_sms);

/// Throws Error (argument "options.split_keys") unless `options` are valid; plan_decode checks
/// the same, so this is for callers that want to fail before doing other work.
void check_decode_options(const DecodeOptions& options);

/// The split-KV schedule and workspace for one batch shape. Built by plan_decode(); reusable by
/// every call (every layer) with the same shapes, devices and length tensors (values may
/// change between calls on CUDA: the schedule is recomputed on the device). Move-only.
class DecodePlan {
 public:
  DecodePlan();
  ~DecodePlan();
  DecodePlan(DecodePlan&&) noexcept;
  DecodePlan& operator=(DecodePlan&&) noexcept;
  DecodePlan(const DecodePlan&) = delete;
  DecodePlan& operator=(const DecodePlan&) = delete;

  bool valid() const { return impl_ != nullptr; }
  /// The plan's keys per split (DecodeOptions::split_keys with 0 and kLatencySplitKeys
  /// resolved); 0 when invalid.
  int split_keys() const;

  struct Impl;  // defined in src/api
  Impl* impl() const { return impl_.get(); }
  explicit DecodePlan(std::unique_ptr<Impl> impl);

 private:
  std::unique_ptr<Impl> impl_;
};

/// Validates `args` (outputs untouched on error) and prepares the split-KV schedule. On CUDA
/// this allocates the plan's workspace once (sized from the shapes); the schedule itself is
/// derived on the device, inside the decode kernels, from each request's own lengths, so it
/// never synchronises the host. `stream` is a cudaStream_t (nullptr = default).
DecodePlan plan_decode(const SparseDecodeArgs& args, void* stream = nullptr);
/// As above, with tuning `options` (validated: Error names "options.split_keys").
DecodePlan plan_decode(const SparseDecodeArgs& args, const DecodeOptions& options,
                       void* stream = nullptr);

/// Runs sparse decode with a plan made for the same shapes. Allocates nothing and
/// synchronises nothing on CUDA (safe inside CUDA-graph capture).
void sparse_decode(const SparseDecodeArgs& args, const DecodePlan& plan, void* stream = nullptr);

/// Which kernel family sparse_decode runs for `args` under `plan` (same validation as
/// sparse_decode; nothing is launched): "cpu", "portable" (mma.sync, every GPU from sm_80),
/// "portable-compact" (its shared-memory fallback) or "sm90a" (the Hopper wgmma kernels).
std::string decode_kernel_name(const SparseDecodeArgs& args, const DecodePlan& plan);

/// Convenience: plan_decode + sparse_decode (allocates; not for graph capture).
void sparse_decode(const SparseDecodeArgs& args, void* stream = nullptr);
/// The same with a plan of these `options`.
void sparse_decode(const SparseDecodeArgs& args, const DecodeOptions& options, void* stream = nullptr);

}  // namespace model1
