// model1 CUDA backend: host launcher of the sparse prefill kernels: the portable ones
// (src/cuda/portable/prefill_*.cuh) and, on sm_90 GPUs, the Hopper kernel (src/cuda/sm90/).
// Arguments arrive validated by src/api; this file turns them into a PrefillParams block,
// picks the kernel and the configuration the device can hold (pipeline depth, heads per CTA)
// and dispatches on d_qk.
#include <cuda_runtime.h>

#include <cstdint>
#include <cstdlib>
#include <string>

#include "cuda/common/cuda_check.h"
#include "cuda/common/numerics.cuh"
#include "cuda/portable/prefill_dispatch.h"
#include "cuda/portable/prefill_launch.h"
#include "cuda/portable/prefill_params.h"
#ifdef MODEL1_WITH_SM90A
#include "cuda/sm90/prefill_launch.h"
#endif
#include "model1/error.h"

namespace model1::cuda {
namespace {

constexpr const char* kOp = "sparse_prefill";
constexpr int64_t kMaxTokens = 0x7fffffffll;  // grid.x limit: one CTA column per query token
constexpr int64_t kMaxTopk = int64_t{1} << 30;  // chunk positions stay far from int overflow

bool aligned(const void* p, int64_t bytes) {
  return reinterpret_cast<uintptr_t>(p) % static_cast<uintptr_t>(bytes) == 0;
}

void check_cuda_tensor(const TensorView& t, const char* name, int device) {
  MODEL1_CHECK(t.device == Device::kCUDA && t.device_id == device, std::string(name) + ".device",
               "cuda:" + std::to_string(device) + " (the device of q)", t.describe());
}

PrefillParams make_params(const SparsePrefillArgs& a, float sm_scale) {
  PrefillParams p;
  p.q = a.q.ptr<const uint16_t>();
  p.q_stride_s = a.q.strides[0];
  p.q_stride_h = a.q.strides[1];
  p.s_q = static_cast<int>(a.q.shape[0]);
  p.h_q = static_cast<int>(a.q.shape[1]);
  p.num_head_groups = 1;  // NOTE: set by the launcher from its heads per CTA
  p.q_aligned16 = aligned(p.q, 16) && p.q_stride_s % 8 == 0 && p.q_stride_h % 8 == 0;

  p.kv = a.kv.ptr<const uint16_t>();
  p.kv_stride = a.kv.strides[0];  // [s_kv, (1,) d_qk]
  p.s_kv = a.kv.shape[0];
  p.kv_aligned16 = aligned(p.kv, 16) && p.kv_stride % 8 == 0;

  p.indices = a.indices.ptr<const int32_t>();
  p.idx_stride = a.indices.strides[0];  // [s_q, (1,) topk]
  p.topk = static_cast<int>(a.indices.shape[a.indices.ndim - 1]);
  p.topk_length = a.topk_length.defined() ? a.topk_length.ptr<const int32_t>() : nullptr;

  p.attn_sink = a.attn_sink.defined() ? a.attn_sink.ptr<const float>() : nullptr;
  p.scale_log2 = sm_scale * kLog2e;

  p.out = a.out.ptr<uint16_t>();
  p.max_logits = a.max_logits.ptr<float>();
  p.lse = a.lse.ptr<float>();
  p.out_aligned4 = aligned(p.out, 4);
  p.out_aligned16 = aligned(p.out, 16);
  return p;
}

/// The three portable configurations, largest shared memory first, and the Hopper kernel.
enum class Config { kDouble, kSingle, kCompact, kSm90 };

int smem_bytes(int d_qk, int h_q, Config config) {
  if (d_qk == 512) {
    switch (config) {
      case Config::kDouble: return portable::sparse_prefill_smem_bytes<512, 2>(h_q);
      case Config::kSingle: return portable::sparse_prefill_smem_bytes<512, 1>(h_q);
      case Config::kCompact: break;
      case Config::kSm90: return 0;  // the sm_90a kernel checks its own (prefill_supports)
    }
    portable::sparse_prefill_smem_bytes<512, 1>(h_q);  // rejects unsupported h_q
    return portable::sparse_prefill_compact_smem_bytes<512>();
  }
  if (d_qk == 576) {
    switch (config) {
      case Config::kDouble: return portable::sparse_prefill_smem_bytes<576, 2>(h_q);
      case Config::kSingle: return portable::sparse_prefill_smem_bytes<576, 1>(h_q);
      case Config::kCompact: break;
      case Config::kSm90: return 0;
    }
    portable::sparse_prefill_smem_bytes<576, 1>(h_q);  // rejects unsupported h_q
    return portable::sparse_prefill_compact_smem_bytes<576>();
  }
  MODEL1_THROW("q.shape", "shape[2] (d_qk) 512 or 576", std::to_string(d_qk));
}

/// MODEL1_CUDA_PREFILL_CONFIG unset, empty or "default": automatic (the largest configuration
/// the device's shared memory holds); "compact" makes the automatic choice the compact
/// fallback (tests on large GPUs). NOTE: read once per process, so every call of a run uses the
/// same configuration and batch invariance holds.
bool prefill_compact_forced() {
  static const bool value = [] {
    const char* env = std::getenv("MODEL1_CUDA_PREFILL_CONFIG");
    if (env == nullptr || *env == '\0') return false;
    const std::string v = env;
    if (v == "default") return false;
    MODEL1_CHECK(v == "compact", "MODEL1_CUDA_PREFILL_CONFIG", "'default', 'compact' or unset",
                 "'" + v + "'");
    return true;
  }();
  return value;
}

/// MODEL1_CUDA_PREFILL_KERNEL unset, empty or "auto": the sm_90a kernel where it applies;
/// "portable": the portable kernels everywhere (tests, comparisons). Read on every call.
bool prefill_portable_forced() {
  const char* env = std::getenv("MODEL1_CUDA_PREFILL_KERNEL");
  if (env == nullptr || *env == '\0') return false;
  const std::string v = env;
  if (v == "auto") return false;
  MODEL1_CHECK(v == "portable", "MODEL1_CUDA_PREFILL_KERNEL", "'auto', 'portable' or unset", "'" + v + "'");
  return true;
}

/// True when the sm_90a kernel serves this call (kAuto only).
bool use_sm90(const PrefillParams& p, int d_qk, int device, PrefillPipeline pipeline) {
#ifdef MODEL1_WITH_SM90A
  if (pipeline != PrefillPipeline::kAuto || prefill_portable_forced()) return false;
  return d_qk == 512 ? sm90::prefill_supports<512>(p, device) : sm90::prefill_supports<576>(p, device);
#else
  (void)p, (void)d_qk, (void)device, (void)pipeline;
  return false;
#endif
}

/// The one decision of which kernel and configuration run (launch and kernel name).
Config choose_config(const PrefillParams& p, int d_qk, int h_q, int device, PrefillPipeline pipeline) {
  const int smem_optin = device_smem_optin(device, kOp);
  Config config = Config::kDouble;  // also for kDoubleBuffered
  if (pipeline == PrefillPipeline::kSingleBuffered) config = Config::kSingle;
  if (pipeline == PrefillPipeline::kCompact) config = Config::kCompact;
  if (pipeline == PrefillPipeline::kAuto) {
    // NOTE: the compact configuration where forced (MODEL1_CUDA_PREFILL_CONFIG); else the
    // sm_90a kernel where it applies; else the largest portable configuration that fits:
    // double-buffered, single-buffered with the same heads per CTA (bitwise the same results),
    // else 16 heads per CTA (same values up to the last bits: another summation order of the
    // row sums).
    if (prefill_compact_forced()) {
      config = Config::kCompact;
    } else if (use_sm90(p, d_qk, device, pipeline)) {
      return Config::kSm90;
    } else if (smem_optin >= smem_bytes(d_qk, h_q, Config::kDouble)) {
      config = Config::kDouble;  // smem_bytes also rejects unsupported d_qk / h_q
    } else if (smem_optin >= smem_bytes(d_qk, h_q, Config::kSingle)) {
      config = Config::kSingle;
    } else {
      config = Config::kCompact;
    }
  }
  const int need = smem_bytes(d_qk, h_q, config);  // also rejects unsupported d_qk / h_q
  MODEL1_CHECK(smem_optin >= need, kOp,
               "a GPU with at least " + std::to_string(need) +
                   " bytes of shared memory per block (portable prefill, d_qk " +
                   std::to_string(d_qk) + ", h_q " + std::to_string(h_q) + ")",
               std::to_string(smem_optin) + " bytes on cuda:" + std::to_string(device));
  return config;
}

}  // namespace

int sparse_prefill_portable_smem_bytes(int d_qk, int h_q, PrefillPipeline pipeline) {
  switch (pipeline) {
    case PrefillPipeline::kSingleBuffered: return smem_bytes(d_qk, h_q, Config::kSingle);
    case PrefillPipeline::kCompact: return smem_bytes(d_qk, h_q, Config::kCompact);
    default: return smem_bytes(d_qk, h_q, Config::kDouble);
  }
}

void sparse_prefill_portable(const SparsePrefillArgs& a, float sm_scale, void* stream) {
  sparse_prefill_portable(a, sm_scale, stream, PrefillPipeline::kAuto);
}

void sparse_prefill_portable(const SparsePrefillArgs& a, float sm_scale, void* stream,
                             PrefillPipeline pipeline) {
  // NOTE: src/api validated shapes and dtypes; these checks guard what the kernels assume
  // beyond that (device placement, grid and int ranges), before anything is enqueued.
  MODEL1_CHECK(a.q.device == Device::kCUDA, "q.device", "a CUDA tensor", a.q.describe());
  const int device = a.q.device_id;
  check_cuda_tensor(a.kv, "kv", device);
  check_cuda_tensor(a.indices, "indices", device);
  if (a.topk_length.defined()) check_cuda_tensor(a.topk_length, "topk_length", device);
  if (a.attn_sink.defined()) check_cuda_tensor(a.attn_sink, "attn_sink", device);
  check_cuda_tensor(a.out, "out", device);
  check_cuda_tensor(a.max_logits, "max_logits", device);
  check_cuda_tensor(a.lse, "lse", device);
  MODEL1_CHECK(a.q.shape[0] <= kMaxTokens, "q.shape", "shape[0] (s_q) < 2^31 (CUDA grid)",
               std::to_string(a.q.shape[0]));
  const int64_t topk = a.indices.shape[a.indices.ndim - 1];
  MODEL1_CHECK(topk <= kMaxTopk, "indices.shape", "topk <= 2^30 (CUDA backend)",
               std::to_string(topk));
  const int d_qk = static_cast<int>(a.q.shape[2]);
  const int h_q = static_cast<int>(a.q.shape[1]);

  DeviceGuard guard(device, kOp);
  const PrefillParams p = make_params(a, sm_scale);
  const Config config = choose_config(p, d_qk, h_q, device, pipeline);
  if (p.s_q == 0) return;
  auto s = static_cast<cudaStream_t>(stream);
#ifdef MODEL1_WITH_SM90A
  if (config == Config::kSm90) {
    if (d_qk == 512) {
      sm90::launch_sparse_prefill<512>(p, s, device);
    } else {
      sm90::launch_sparse_prefill<576>(p, s, device);
    }
    return;
  }
#endif
  if (d_qk == 512) {
    switch (config) {
      case Config::kDouble: portable::launch_sparse_prefill<512, 2>(p, s, device); break;
      case Config::kSingle: portable::launch_sparse_prefill<512, 1>(p, s, device); break;
      case Config::kCompact: portable::launch_sparse_prefill_compact<512>(p, s, device); break;
      case Config::kSm90: break;  // launched above
    }
  } else {
    switch (config) {
      case Config::kDouble: portable::launch_sparse_prefill<576, 2>(p, s, device); break;
      case Config::kSingle: portable::launch_sparse_prefill<576, 1>(p, s, device); break;
      case Config::kCompact: portable::launch_sparse_prefill_compact<576>(p, s, device); break;
      case Config::kSm90: break;  // launched above
    }
  }
}

std::string sparse_prefill_kernel_name(const SparsePrefillArgs& a, float sm_scale) {
  MODEL1_CHECK(a.q.device == Device::kCUDA, "q.device", "a CUDA tensor", a.q.describe());
  const int device = a.q.device_id;
  DeviceGuard guard(device, kOp);
  const PrefillParams p = make_params(a, sm_scale);
  switch (choose_config(p, static_cast<int>(a.q.shape[2]), static_cast<int>(a.q.shape[1]), device,
                        PrefillPipeline::kAuto)) {
    case Config::kSm90: return "sm90a";
    case Config::kCompact: return "portable-compact";
    default: return "portable";
  }
}

}  // namespace model1::cuda
