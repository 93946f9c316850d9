// model1 CUDA backend: the model1::cuda entry points of src/backend.h for decode, the plan
// (workspace owner), device queries. Arguments arrive validated by src/api.
//
// Scheduling: the split-KV schedule of a request is a pure function of its own clamped
// lengths (request_schedule in common/decode_params.h). Instead of a separate plan kernel
// writing it to memory, every CTA of the split kernel and every warp of the combine kernel
// evaluates it from topk_length / extra_topk_length on the device at run time. That is the
// plan kernel fused into its consumers: no host sync, no extra launch, and length values may
// change freely between calls (and between CUDA-graph replays) under one plan. The one
// exception is an order, not a schedule: when the lengths vary and the grid overflows a wave,
// a one-CTA kernel first sorts the requests longest first (common/request_order.cuh), so the
// long requests' CTAs start first; no result depends on it.
#include <cuda_runtime.h>

#include <cstdint>
#include <cstdlib>
#include <memory>
#include <string>
#include <type_traits>
#include <vector>

#include "backend.h"
#include "cuda/common/combine.cuh"
#include "cuda/common/cuda_check.h"
#include "cuda/common/env_switch.h"
#include "cuda/common/decode_params.h"
#include "cuda/common/numerics.cuh"
#include "cuda/common/request_order.cuh"
#include "cuda/portable/decode_launch.h"
#include "cuda/portable/prefill_launch.h"
#include "cuda/sm90/decode_launch.h"
#include "cuda/sm90/device.h"
#include "model1/error.h"

#ifndef MODEL1_CUDA_ARCHS
#define MODEL1_CUDA_ARCHS "sm_80"
#endif

namespace model1::cuda {
namespace {

/// The CUDA part of a DecodePlan: the split workspace, allocated once.
struct CudaPlanState final : detail::BackendPlanState {
  int device = 0;
  int max_splits = 1;
  int split_chunks = 1;  // from the plan's options
  portable::DecodeConfig config = portable::DecodeConfig::kAuto;
  int num_sms = 1;
  /// 16, 32 or 64 heads as two CTAs of half the heads (DecodeParams::half_heads): a latency
  /// plan whose grid, doubled, fits one wave at the rule's split, or for 64 heads at one chunk
  /// more a split (latency_half_head_chunks), on the sm_90a kernels (the small-head kernel) or
  /// the portable default configuration (its configuration for half the heads; 16 heads are
  /// one 16-row CTA either way). Half-size CTAs finish model1-c1 / c3 sooner than whole ones
  /// (PERF.md, sixteenth and seventeenth sessions); not for 128 heads (four CTAs a split, 1.3x
  /// slower at the latency rule's splits). A plan constant, like the split size it comes with
  /// (latency plans are not batch-invariant across batch sizes).
  bool half_heads = false;
  float* partial_o = nullptr;    // [b, s_q, h_q, max_splits, 512]
  float* partial_lse = nullptr;  // [b, s_q, h_q, max_splits]
  int32_t* request_order = nullptr;  // [b]: the longest-first order (request_order_kernel)

  ~CudaPlanState() override {
    if (partial_o == nullptr && partial_lse == nullptr && request_order == nullptr) return;
    int previous = 0;
    const bool switched = cudaGetDevice(&previous) == cudaSuccess && previous != device &&
                          cudaSetDevice(device) == cudaSuccess;
    cudaFree(partial_o);
    cudaFree(partial_lse);
    cudaFree(request_order);
    if (switched) cudaSetDevice(previous);
  }
};

constexpr int64_t kMaxKeys = int64_t{1} << 30;  // topk + extra_topk must fit an int

bool aligned(const void* p, int64_t bytes) {
  return reinterpret_cast<uintptr_t>(p) % static_cast<uintptr_t>(bytes) == 0;
}

CacheParams cache_params(const KvCacheView& view, bool* aligned16) {
  const detail::CacheGeom g = detail::cache_geom(view);
  CacheParams c;
  c.base = g.base;
  c.page_stride = g.page_stride;
  c.page_size = g.page_size;
  c.num_slots = g.num_slots();
  c.row_stride = g.bf16_row_stride;
  for (int s = 0; s <= 31; ++s) {
    if (g.page_size == (int64_t{1} << s)) c.page_shift = s;
  }
  // NOTE: cp.async needs 16-byte aligned rows; MODEL1 scale rows (576 P + 8 t) are then
  // 8-byte aligned, which their 8-byte copies need.
  *aligned16 = *aligned16 && aligned(g.base, 16) && g.page_stride % 16 == 0 &&
               (g.format != KvFormat::kBf16 || g.bf16_row_stride % 16 == 0);
  return c;
}

DecodeParams make_params(const SparseDecodeArgs& a, float sm_scale, const CudaPlanState& st) {
  DecodeParams p;
  p.q = a.q.ptr<const uint16_t>();
  p.q_stride_b = a.q.strides[0];
  p.q_stride_s = a.q.strides[1];
  p.q_stride_h = a.q.strides[2];
  p.b = static_cast<int>(a.q.shape[0]);
  p.s_q = static_cast<int>(a.q.shape[1]);
  p.h_q = static_cast<int>(a.q.shape[2]);
  // NOTE: num_head_groups is set by the launcher: it depends on the kernel configuration.
  p.q_aligned16 = aligned(p.q, 16) && p.q_stride_b % 8 == 0 && p.q_stride_s % 8 == 0 &&
                  p.q_stride_h % 8 == 0;

  bool cache_aligned = true;
  p.kv = cache_params(a.kv, &cache_aligned);
  p.indices = a.indices.ptr<const int32_t>();
  p.idx_stride_b = a.indices.strides[0];
  p.idx_stride_s = a.indices.strides[1];
  p.topk = static_cast<int>(a.indices.shape[2]);
  p.topk_length = a.topk_length.defined() ? a.topk_length.ptr<const int32_t>() : nullptr;

  if (a.extra_kv.data.defined()) {
    p.extra_kv = cache_params(a.extra_kv, &cache_aligned);
    p.extra_indices = a.extra_indices.ptr<const int32_t>();
    p.extra_idx_stride_b = a.extra_indices.strides[0];
    p.extra_idx_stride_s = a.extra_indices.strides[1];
    p.extra_topk = static_cast<int>(a.extra_indices.shape[2]);
    p.extra_topk_length =
        a.extra_topk_length.defined() ? a.extra_topk_length.ptr<const int32_t>() : nullptr;
  }
  p.cache_aligned16 = cache_aligned;

  p.attn_sink = a.attn_sink.defined() ? a.attn_sink.ptr<const float>() : nullptr;
  p.scale_log2 = sm_scale * kLog2e;
  p.out = a.out.ptr<uint16_t>();
  p.lse = a.lse.ptr<float>();
  p.out_aligned8 = aligned(p.out, 8);
  p.out_aligned16 = aligned(p.out, 16);
  p.partial_o = st.partial_o;
  p.partial_lse = st.partial_lse;
  p.max_splits = st.max_splits;
  p.split_chunks = st.split_chunks;
  p.half_heads = st.half_heads;
  return p;
}

/// Decode kernel configuration: MODEL1_CUDA_DECODE_CONFIG unset, empty or "default" = automatic
/// (the default configuration where the device offers its shared memory, else the compact
/// fallback); "compact" forces the fallback (tests on large GPUs). NOTE: read once per process.
portable::DecodeConfig decode_config_setting() {
  static const portable::DecodeConfig value = [] {
    const char* env = std::getenv("MODEL1_CUDA_DECODE_CONFIG");
    if (env == nullptr || *env == '\0') return portable::DecodeConfig::kAuto;
    const std::string v = env;
    if (v == "default") return portable::DecodeConfig::kAuto;
    MODEL1_CHECK(v == "compact", "MODEL1_CUDA_DECODE_CONFIG", "'default', 'compact' or unset",
                 "'" + v + "'");
    return portable::DecodeConfig::kCompact;
  }();
  return value;
}

/// MODEL1_CUDA_DECODE_ORDER unset, empty or "1": requests with per-request lengths start longest
/// first when the split grid overflows one wave (request_order_kernel); "0" keeps the batch
/// order (comparisons, tests). NOTE: read on every call, so tests can compare both.
bool request_order_enabled() { return env_switch_on("MODEL1_CUDA_DECODE_ORDER"); }

/// Whether a call sorts its requests first: lengths that can differ between requests, and more
/// split CTAs than SMs (every decode kernel runs one CTA per SM: with one wave the order changes
/// nothing).
bool orders_requests(const DecodeParams& p, const CudaPlanState& st) {
  if (p.topk_length == nullptr && p.extra_topk_length == nullptr) return false;
  if (!request_order_enabled()) return false;
  const int64_t ctas = static_cast<int64_t>(p.b) * p.s_q * p.max_splits * ctas_per_split(p.h_q);
  return ctas > st.num_sms;
}

/// Decode kernel family: MODEL1_CUDA_DECODE_KERNEL unset, empty or "auto" = the sm_90a kernels
/// where they serve the call (sm_90 GPU, FP8 cache, 8, 16, 32, 64 or 128 heads, aligned rows),
/// else the portable ones; "portable" forces the portable kernels (tests, comparisons on Hopper).
/// NOTE: read once per process.
bool portable_decode_forced() {
  static const bool value = [] {
    const char* env = std::getenv("MODEL1_CUDA_DECODE_KERNEL");
    if (env == nullptr || *env == '\0') return false;
    const std::string v = env;
    MODEL1_CHECK(v == "auto" || v == "portable", "MODEL1_CUDA_DECODE_KERNEL", "'auto', 'portable' or unset",
                 "'" + v + "'");
    return v == "portable";
  }();
  return value;
}

/// Half-head CTAs (CudaPlanState::half_heads): MODEL1_CUDA_DECODE_HALF_HEADS unset, empty or
/// "auto" = the latency rule (latency plans only, latency_half_head_chunks); "0" = never; "1" = every
/// plan with 16, 32 or 64 heads, whatever its split size (tuning the rule on a GPU). The compact
/// portable configuration ignores it. NOTE: read once per process.
enum class HalfHeads { kAuto, kNever, kAlways };
HalfHeads half_heads_setting() {
  static const HalfHeads value = [] {
    const char* env = std::getenv("MODEL1_CUDA_DECODE_HALF_HEADS");
    if (env == nullptr || *env == '\0') return HalfHeads::kAuto;
    const std::string v = env;
    MODEL1_CHECK(v == "auto" || v == "0" || v == "1", "MODEL1_CUDA_DECODE_HALF_HEADS",
                 "'auto', '0', '1' or unset", "'" + v + "'");
    return v == "auto" ? HalfHeads::kAuto : (v == "0" ? HalfHeads::kNever : HalfHeads::kAlways);
  }();
  return value;
}

/// A cache format as a type (the format structs are only declared here).
template <class Format>
struct FormatTag {
  using type = Format;
};

/// Calls fn(FormatTag<Format>{}) with the kernels' format of `a`'s cache.
template <class Fn>
void with_format(const SparseDecodeArgs& a, Fn&& fn) {
  switch (a.kv.format) {
    case KvFormat::kModel1Fp8:
      fn(FormatTag<portable::FormatModel1Fp8>{});
      return;
    case KvFormat::kV32Fp8:
      fn(FormatTag<portable::FormatV32Fp8>{});
      return;
    case KvFormat::kBf16:
      if (a.q.shape[3] == 512) {
        fn(FormatTag<portable::FormatBf16<512>>{});
      } else {
        fn(FormatTag<portable::FormatBf16<576>>{});
      }
      return;
    default:
      MODEL1_THROW("kv.format", "model1_fp8, v32_fp8 or bf16",
                   "format code " + std::to_string(static_cast<int>(a.kv.format)));
  }
}

template <class Format>
inline constexpr bool kIsFp8Format =
    std::is_same_v<Format, portable::FormatModel1Fp8> || std::is_same_v<Format, portable::FormatV32Fp8>;

enum class DecodeKernel { kSm90a, kPortable, kPortableCompact };

/// The one place that decides which decode kernel family serves a call (sparse_decode launches
/// it, decode_kernel_name reports it): the sm_90a kernels where they apply, else the portable
/// default configuration where the device offers its shared memory, else the compact one (the
/// same rule as portable::launch_sparse_decode).
template <class Format>
DecodeKernel choose_kernel(const DecodeParams& p, const CudaPlanState& st) {
#if MODEL1_WITH_SM90A
  if constexpr (kIsFp8Format<Format>) {
    if (!portable_decode_forced() && st.config == portable::DecodeConfig::kAuto &&
        sm90::supports<Format>(p, st.device)) {
      return DecodeKernel::kSm90a;
    }
  }
#endif
  if (st.config == portable::DecodeConfig::kCompact ||
      device_smem_optin(st.device, "sparse_decode") < portable::sparse_decode_smem_bytes<Format>(p.h_q)) {
    return DecodeKernel::kPortableCompact;
  }
  return DecodeKernel::kPortable;
}

/// Whether the kernels that would serve a call with these arguments run half-head CTAs
/// (DecodeParams::half_heads): the sm_90a kernels and the portable default configuration, not
/// the compact one (16 heads a CTA already). At plan time, from the plan's own argument views:
/// a later call with other views (unaligned, say) may run another family with the same plan.
bool half_head_ctas_served(const SparseDecodeArgs& a, const CudaPlanState& st) {
  const DecodeParams p = make_params(a, 1.0f, st);
  DecodeKernel kernel = DecodeKernel::kPortable;
  with_format(a, [&](auto tag) { kernel = choose_kernel<typename decltype(tag)::type>(p, st); });
  return kernel != DecodeKernel::kPortableCompact;
}

}  // namespace

std::string decode_kernel_name(const SparseDecodeArgs& a, float sm_scale, const detail::BackendPlanState& plan) {
  const auto* st = dynamic_cast<const CudaPlanState*>(&plan);
  MODEL1_CHECK(st != nullptr, "plan", "a plan made by plan_decode for CUDA tensors", "a plan of another backend");
  DeviceGuard guard(st->device, "decode_kernel_name");
  const DecodeParams p = make_params(a, sm_scale, *st);
  DecodeKernel kernel = DecodeKernel::kPortable;
  with_format(a, [&](auto tag) { kernel = choose_kernel<typename decltype(tag)::type>(p, *st); });
  switch (kernel) {
    case DecodeKernel::kSm90a:
      return "sm90a";
    case DecodeKernel::kPortableCompact:
      return "portable-compact";
    default:
      return "portable";
  }
}

std::unique_ptr<detail::BackendPlanState> plan_decode(const SparseDecodeArgs& a, int split_keys,
                                                      bool latency, void* stream) {
  (void)stream;  // NOTE: nothing to enqueue: the schedule is evaluated by the kernels.
  const int device = a.q.device_id;
  DeviceGuard guard(device, "plan_decode");
  const int64_t topk = a.indices.shape[2];
  const int64_t extra_topk = a.extra_indices.defined() ? a.extra_indices.shape[2] : 0;
  MODEL1_CHECK(topk + extra_topk < kMaxKeys, "indices",
               "topk + extra_topk < 2^30 (CUDA backend)",
               std::to_string(topk) + " + " + std::to_string(extra_topk));
  auto st = std::make_unique<CudaPlanState>();
  st->device = device;
  st->split_chunks = split_keys / kChunkKeys;  // a multiple of the chunk (validated by src/api)
  st->config = decode_config_setting();
  st->num_sms = device_sm_count(device, "plan_decode");
  // NOTE: read here on every build, so a bad MODEL1_CUDA_DECODE_KERNEL fails at plan time even
  // where no sm_90a kernel was compiled.
  (void)portable_decode_forced();
  // Half-head CTAs (the sm_90a kernels and the portable default configuration): a latency
  // plan's split may grow by one chunk for them (latency_half_head_chunks), so decide them first.
  const int64_t h_q = a.q.shape[2];
  const HalfHeads half_setting = half_heads_setting();
  if (half_setting == HalfHeads::kAlways) {
    st->half_heads = h_q == 16 || h_q == 32 || h_q == 64;
  } else if (half_setting == HalfHeads::kAuto && latency && half_head_ctas_served(a, *st)) {
    const int chunks = latency_half_head_chunks(a.q.shape[0], a.q.shape[1], h_q, topk + extra_topk, st->num_sms,
                                                st->split_chunks, kMaxSplitChunks);
    if (chunks > 0) {
      st->half_heads = true;
      st->split_chunks = chunks;
    }
  }
  st->split_keys = st->split_chunks * kChunkKeys;
  st->max_splits =
      request_schedule(static_cast<int>(topk), static_cast<int>(extra_topk), st->split_chunks).num_splits;
  auto allocate = [&](void** ptr, size_t bytes, const char* what) {
    const cudaError_t err = cudaMalloc(ptr, bytes);
    if (err != cudaSuccess) {
      cudaGetLastError();  // clear the sticky-free error state of a failed allocation
      MODEL1_THROW("plan", std::string(what) + " of " + std::to_string(bytes) + " bytes on cuda:" +
                               std::to_string(device),
                   std::string(cudaGetErrorName(err)) + ": " + cudaGetErrorString(err));
    }
  };
  if (st->max_splits > 1) {
    const int64_t rows = a.q.shape[0] * a.q.shape[1] * a.q.shape[2];
    const size_t o_bytes = static_cast<size_t>(rows) * st->max_splits * 512 * sizeof(float);
    const size_t lse_bytes = static_cast<size_t>(rows) * st->max_splits * sizeof(float);
    allocate(reinterpret_cast<void**>(&st->partial_o), o_bytes, "a split-KV workspace");
    allocate(reinterpret_cast<void**>(&st->partial_lse), lse_bytes, "a split-KV workspace");
  }
  // NOTE: the request order's b entries, whether or not a call will need them (the lengths may
  // be given or not per call; 4 bytes a request).
  allocate(reinterpret_cast<void**>(&st->request_order), static_cast<size_t>(a.q.shape[0]) * sizeof(int32_t),
           "a request-order workspace");
  return st;
}

void sparse_decode(const SparseDecodeArgs& a, float sm_scale, detail::BackendPlanState& plan,
                   void* stream) {
  auto* st = dynamic_cast<CudaPlanState*>(&plan);
  MODEL1_CHECK(st != nullptr, "plan", "a plan made by plan_decode for CUDA tensors",
               "a plan of another backend");
  DeviceGuard guard(st->device, "sparse_decode");
  DecodeParams p = make_params(a, sm_scale, *st);
  auto s = static_cast<cudaStream_t>(stream);
  if (orders_requests(p, *st)) {
#if MODEL1_WITH_SM90A
    // NOTE: on sm_90 the split kernel after it is a programmatic dependent launch.
    if (sm90::device_is_sm90(st->device)) {
      sm90::launch_request_order(p, st->request_order, s);
    } else
#endif
    {
      request_order_kernel<false><<<1, RequestOrderTraits::kThreads, 0, s>>>(p, st->request_order);
      MODEL1_CUDA_CHECK_LAUNCH("sparse_decode", "request_order_kernel");
    }
    p.request_order = st->request_order;
  }
  with_format(a, [&](auto tag) {
    using Format = typename decltype(tag)::type;
#if MODEL1_WITH_SM90A
    if constexpr (kIsFp8Format<Format>) {
      if (choose_kernel<Format>(p, *st) == DecodeKernel::kSm90a) {
        sm90::launch_sparse_decode<Format>(p, s, st->device);
        return;
      }
    }
#endif
    portable::launch_sparse_decode<Format>(p, s, st->device, st->config);
  });
  if (p.max_splits > 1) {
#if MODEL1_WITH_SM90A
    // NOTE: on sm_90 a programmatic dependent launch: the combine's CTAs are scheduled while the
    // split kernel's last CTAs run and wait for its completion, which hides the second launch's
    // latency (PERF.md). Other GPUs launch it plainly.
    if (sm90::device_is_sm90(st->device)) {
      sm90::launch_combine_after_split(p, s);
      return;
    }
#endif
    combine_kernel_for<false>(p)<<<CombineTraits::blocks(p), CombineTraits::kThreads, 0, s>>>(p);
    MODEL1_CUDA_CHECK_LAUNCH("sparse_decode", "combine_kernel");
  }
}

void sparse_prefill(const SparsePrefillArgs& a, float sm_scale, void* stream) {
  sparse_prefill_portable(a, sm_scale, stream);  // src/cuda/prefill_portable.cu
}

std::string prefill_kernel_name(const SparsePrefillArgs& a, float sm_scale) {
  return sparse_prefill_kernel_name(a, sm_scale);
}

std::vector<GpuInfo> gpus_found() {
  std::vector<GpuInfo> gpus;
  int count = 0;
  if (cudaGetDeviceCount(&count) != cudaSuccess) {
    cudaGetLastError();  // NOTE: no driver / no GPU: report none, never throw
    return gpus;
  }
  for (int d = 0; d < count; ++d) {
    cudaDeviceProp prop{};
    if (cudaGetDeviceProperties(&prop, d) != cudaSuccess) {
      cudaGetLastError();
      continue;
    }
    GpuInfo info;
    info.device_id = d;
    info.name = prop.name;
    info.sm_major = prop.major;
    info.sm_minor = prop.minor;
    info.num_sms = prop.multiProcessorCount;
    info.total_memory = prop.totalGlobalMem;
    gpus.push_back(info);
  }
  return gpus;
}

int sm_count(int device) { return device_sm_count(device, "plan_decode"); }

std::vector<std::string> archs_compiled() {
  std::vector<std::string> archs;
  std::string list = MODEL1_CUDA_ARCHS;  // e.g. "sm_80;compute_80"
  size_t start = 0;
  while (start <= list.size()) {
    const size_t end = list.find(';', start);
    const std::string item = list.substr(start, end == std::string::npos ? std::string::npos : end - start);
    if (!item.empty()) archs.push_back(item);
    if (end == std::string::npos) break;
    start = end + 1;
  }
  return archs;
}

}  // namespace model1::cuda
