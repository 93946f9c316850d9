// model1 src/api: validation, planning and dispatch of sparse decode (include/model1/decode.h).
#include "model1/decode.h"

#include <cstdlib>
#include <string>
#include <utility>

#include "backend.h"
#include "cuda/common/decode_params.h"  // the split schedule and its latency rule (header only)
#include "model1/error.h"
#include "validate.h"

namespace model1 {

using detail::check_backend_available;
using detail::check_cache;
using detail::check_contiguous;
using detail::check_data;
using detail::check_dim;
using detail::check_dim_at_least;
using detail::check_dtype;
using detail::check_last_dim_contiguous;
using detail::check_rank;
using detail::check_same_device;

DecodePlan::DecodePlan() = default;
DecodePlan::~DecodePlan() = default;
DecodePlan::DecodePlan(DecodePlan&&) noexcept = default;
DecodePlan& DecodePlan::operator=(DecodePlan&&) noexcept = default;
DecodePlan::DecodePlan(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
int DecodePlan::split_keys() const { return impl_ == nullptr ? 0 : impl_->split_keys; }

namespace {

/// The shape signature of a validated call, plus its resolved sm_scale.
struct DecodeShape {
  DecodePlan::Impl sig;
  float sm_scale = 0.0f;
};

/// Optional int32 [b] length tensor.
void check_lengths(const TensorView& t, const std::string& name, int64_t b) {
  check_data(t, name);
  check_dtype(t, name, DType::kI32);
  check_rank(t, name, 1, "[b]");
  check_dim(t, name, 0, b, "b", "(= q.shape[0])");
  check_contiguous(t, name);
}

/// int32 [b, s_q, topk] slot indices, last dim contiguous. Returns topk.
int64_t check_indices(const TensorView& t, const std::string& name, int64_t b, int64_t s_q) {
  check_data(t, name);
  check_dtype(t, name, DType::kI32);
  check_rank(t, name, 3, "[b, s_q, topk]");
  check_dim(t, name, 0, b, "b", "(= q.shape[0])");
  check_dim(t, name, 1, s_q, "s_q", "(= q.shape[1])");
  check_dim_at_least(t, name, 2, 1, "topk");
  check_last_dim_contiguous(t, name);
  return t.shape[2];
}

/// Checks every argument of a decode call; nothing is read from device memory.
DecodeShape validate_decode(const SparseDecodeArgs& a) {
  DecodeShape r;
  // q: bf16 [b, s_q, h_q, d_qk]
  check_data(a.q, "q");
  check_dtype(a.q, "q", DType::kBF16);
  check_rank(a.q, "q", 4, "[b, s_q, h_q, d_qk]");
  check_dim_at_least(a.q, "q", 0, 1, "b");
  check_dim_at_least(a.q, "q", 1, 1, "s_q");
  detail::check_num_heads(a.q.shape[2], "q");
  const int64_t b = a.q.shape[0], s_q = a.q.shape[1], h_q = a.q.shape[2], d_qk = a.q.shape[3];
  MODEL1_CHECK(d_qk == 512 || d_qk == 576, "q.shape", "shape[3] (d_qk) 512 or 576",
               std::to_string(d_qk));
  check_last_dim_contiguous(a.q, "q");

  // Main cache; its d_qk must be q's.
  const int kv_d_qk = check_cache(a.kv, "kv");
  MODEL1_CHECK(kv_d_qk == d_qk, "q.shape",
               "shape[3] (d_qk) " + std::to_string(kv_d_qk) + " (the head dim of kv, format " +
                   kv_format_name(a.kv.format) + ")",
               std::to_string(d_qk));
  const int64_t topk = check_indices(a.indices, "indices", b, s_q);
  if (a.topk_length.defined()) check_lengths(a.topk_length, "topk_length", b);

  // Extra cache: all or nothing (lengths only with indices and cache).
  const bool has_extra_kv = a.extra_kv.data.defined();
  const bool has_extra_indices = a.extra_indices.defined();
  MODEL1_CHECK(has_extra_kv || !has_extra_indices, "extra_kv",
               "an extra cache (extra_indices is given)", "no extra_kv");
  MODEL1_CHECK(has_extra_indices || !has_extra_kv, "extra_indices",
               "extra_indices [b, s_q, extra_topk] (extra_kv is given)", "no extra_indices");
  MODEL1_CHECK(has_extra_kv || !a.extra_topk_length.defined(), "extra_topk_length",
               "no extra_topk_length (there is no extra cache)", "a tensor");
  int64_t extra_topk = 0;
  if (has_extra_kv) {
    MODEL1_CHECK(a.extra_kv.format == a.kv.format, "extra_kv.format",
                 std::string("format ") + kv_format_name(a.kv.format) + " (the format of kv)",
                 std::string("format ") + kv_format_name(a.extra_kv.format));
    const int extra_d_qk = check_cache(a.extra_kv, "extra_kv");
    MODEL1_CHECK(extra_d_qk == d_qk, "extra_kv.data.shape",
                 "d_qk " + std::to_string(d_qk) + " (the head dim of q)",
                 std::to_string(extra_d_qk));
    extra_topk = check_indices(a.extra_indices, "extra_indices", b, s_q);
    if (a.extra_topk_length.defined()) {
      check_lengths(a.extra_topk_length, "extra_topk_length", b);
    }
  }

  if (a.attn_sink.defined()) {
    check_data(a.attn_sink, "attn_sink");
    check_dtype(a.attn_sink, "attn_sink", DType::kF32);
    check_rank(a.attn_sink, "attn_sink", 1, "[h_q]");
    check_dim(a.attn_sink, "attn_sink", 0, h_q, "h_q", "(= q.shape[2])");
    check_contiguous(a.attn_sink, "attn_sink");
  }
  r.sm_scale = detail::resolve_sm_scale(a.sm_scale, d_qk);

  // Outputs: out bf16 [b, s_q, h_q, 512], lse f32 [b, s_q, h_q], both contiguous.
  check_data(a.out, "out");
  check_dtype(a.out, "out", DType::kBF16);
  check_rank(a.out, "out", 4, "[b, s_q, h_q, d_v]");
  check_dim(a.out, "out", 0, b, "b", "(= q.shape[0])");
  check_dim(a.out, "out", 1, s_q, "s_q", "(= q.shape[1])");
  check_dim(a.out, "out", 2, h_q, "h_q", "(= q.shape[2])");
  check_dim(a.out, "out", 3, 512, "d_v");
  check_contiguous(a.out, "out");
  check_data(a.lse, "lse");
  check_dtype(a.lse, "lse", DType::kF32);
  check_rank(a.lse, "lse", 3, "[b, s_q, h_q]");
  check_dim(a.lse, "lse", 0, b, "b", "(= q.shape[0])");
  check_dim(a.lse, "lse", 1, s_q, "s_q", "(= q.shape[1])");
  check_dim(a.lse, "lse", 2, h_q, "h_q", "(= q.shape[2])");
  check_contiguous(a.lse, "lse");

  // NOTE: the backend check comes first so that a CUDA call in a CPU-only build names the
  // missing backend rather than a device mismatch.
  check_backend_available(a.q, "q");
  // One device for everything.
  check_same_device(a.kv.data, "kv", a.q, "q");
  check_same_device(a.indices, "indices", a.q, "q");
  if (a.topk_length.defined()) check_same_device(a.topk_length, "topk_length", a.q, "q");
  if (has_extra_kv) {
    check_same_device(a.extra_kv.data, "extra_kv", a.q, "q");
    check_same_device(a.extra_indices, "extra_indices", a.q, "q");
    if (a.extra_topk_length.defined()) {
      check_same_device(a.extra_topk_length, "extra_topk_length", a.q, "q");
    }
  }
  if (a.attn_sink.defined()) check_same_device(a.attn_sink, "attn_sink", a.q, "q");
  check_same_device(a.out, "out", a.q, "q");
  check_same_device(a.lse, "lse", a.q, "q");

  r.sig.device = a.q.device;
  r.sig.device_id = a.q.device_id;
  r.sig.format = a.kv.format;
  r.sig.b = b;
  r.sig.s_q = s_q;
  r.sig.h_q = h_q;
  r.sig.d_qk = d_qk;
  r.sig.topk = topk;
  r.sig.extra_topk = extra_topk;
  r.sig.has_extra = has_extra_kv;
  r.sig.has_topk_length = a.topk_length.defined();
  r.sig.has_extra_topk_length = has_extra_kv && a.extra_topk_length.defined();
  return r;
}

std::string describe_sig(const DecodePlan::Impl& s) {
  return std::string(device_name(s.device)) + ":" + std::to_string(s.device_id) + " " +
         kv_format_name(s.format) + " b=" + std::to_string(s.b) +
         " s_q=" + std::to_string(s.s_q) + " h_q=" + std::to_string(s.h_q) +
         " d_qk=" + std::to_string(s.d_qk) + " topk=" + std::to_string(s.topk) +
         " extra=" + (s.has_extra ? "yes" : "no") +
         " extra_topk=" + std::to_string(s.extra_topk) +
         " topk_length=" + (s.has_topk_length ? "yes" : "no") +
         " extra_topk_length=" + (s.has_extra_topk_length ? "yes" : "no");
}

bool same_sig(const DecodePlan::Impl& x, const DecodePlan::Impl& y) {
  return x.device == y.device && x.device_id == y.device_id && x.format == y.format &&
         x.b == y.b && x.s_q == y.s_q && x.h_q == y.h_q && x.d_qk == y.d_qk &&
         x.topk == y.topk && x.extra_topk == y.extra_topk && x.has_extra == y.has_extra &&
         x.has_topk_length == y.has_topk_length &&
         x.has_extra_topk_length == y.has_extra_topk_length;
}

constexpr int kSplitKeyStep = cuda::kChunkKeys;  // the split granularity (one kernel chunk of keys)
constexpr int kMaxSplitKeys = cuda::kMaxSplitChunks * cuda::kChunkKeys;  // 16384

/// The default keys per split: kDefaultSplitKeys, or MODEL1_CUDA_SPLIT_CHUNKS (1..256) chunks
/// of 64 keys for tuning. NOTE: read once per process and never derived from the batch, so
/// every plan of a run shares it and batch invariance holds.
int default_split_keys() {
  static const int value = [] {
    const char* env = std::getenv("MODEL1_CUDA_SPLIT_CHUNKS");
    if (env == nullptr || *env == '\0') return kDefaultSplitKeys;
    char* end = nullptr;
    const long v = std::strtol(env, &end, 10);
    MODEL1_CHECK(*end == '\0' && v >= 1 && v <= kMaxSplitKeys / kSplitKeyStep,
                 "MODEL1_CUDA_SPLIT_CHUNKS", "an integer in [1, 256]", std::string("'") + env + "'");
    return static_cast<int>(v) * kSplitKeyStep;
  }();
  return value;
}

/// latency_split_keys' rule (cuda::latency_split_chunks), 0 when the batch fills one wave.
int latency_rule(int64_t b, int64_t s_q, int64_t h_q, int64_t keys, int num_sms) {
  const int chunks = cuda::latency_split_chunks(b, s_q, h_q, keys, num_sms, cuda::kMaxSplitChunks);
  return chunks * kSplitKeyStep;
}

/// options.split_keys validated, 0 resolved to the default (read only for CUDA plans) and
/// kLatencySplitKeys to the latency rule for the plan's shapes and GPU (the default on the CPU,
/// which has no splits).
/// `*latency` tells whether the latency rule gave the value.
int resolve_split_keys(const DecodeOptions& options, const DecodePlan::Impl& sig, bool* latency) {
  check_decode_options(options);
  *latency = false;
  if (options.split_keys > 0) return options.split_keys;
  if (sig.device != Device::kCUDA) return kDefaultSplitKeys;
  if (options.split_keys == kLatencySplitKeys) {
#ifdef MODEL1_WITH_CUDA
    const int k = latency_rule(sig.b, sig.s_q, sig.h_q, sig.topk + sig.extra_topk,
                               cuda::sm_count(sig.device_id));
    if (k > 0) {
      *latency = true;
      return k;
    }
#endif
  }
  return default_split_keys();
}

}  // namespace

void check_decode_options(const DecodeOptions& options) {
  const int v = options.split_keys;
  MODEL1_CHECK(v == 0 || v == kLatencySplitKeys ||
                   (v >= kSplitKeyStep && v <= kMaxSplitKeys && v % kSplitKeyStep == 0),
               "options.split_keys", "0 (default), -1 (latency) or a multiple of 64 in [64, 16384]",
               std::to_string(v));
}

int latency_split_keys(int64_t b, int64_t s_q, int64_t h_q, int64_t keys_per_request, int num_sms) {
  MODEL1_CHECK(b >= 1, "b", "at least 1", std::to_string(b));
  MODEL1_CHECK(s_q >= 1, "s_q", "at least 1", std::to_string(s_q));
  MODEL1_CHECK(h_q >= 1, "h_q", "at least 1", std::to_string(h_q));
  MODEL1_CHECK(keys_per_request >= 1, "keys_per_request", "at least 1", std::to_string(keys_per_request));
  MODEL1_CHECK(num_sms >= 1, "num_sms", "at least 1", std::to_string(num_sms));
  const int k = latency_rule(b, s_q, h_q, keys_per_request, num_sms);
  return k > 0 ? k : kDefaultSplitKeys;
}

DecodePlan plan_decode(const SparseDecodeArgs& args, const DecodeOptions& options, void* stream) {
  DecodeShape shape = validate_decode(args);
  bool latency = false;
  const int split_keys = resolve_split_keys(options, shape.sig, &latency);
  auto impl = std::make_unique<DecodePlan::Impl>(std::move(shape.sig));
  impl->split_keys = split_keys;
  if (impl->device == Device::kCUDA) {
#ifdef MODEL1_WITH_CUDA
    impl->backend = cuda::plan_decode(args, split_keys, latency, stream);
    impl->split_keys = impl->backend->split_keys;
#endif
  }
  (void)stream;
  // NOTE: the CPU backend needs no schedule: impl->backend stays null.
  return DecodePlan(std::move(impl));
}

DecodePlan plan_decode(const SparseDecodeArgs& args, void* stream) {
  return plan_decode(args, DecodeOptions{}, stream);
}

/// Validates `args` and that `plan` was made for their shapes; returns the resolved shape.
DecodeShape validate_with_plan(const SparseDecodeArgs& args, const DecodePlan& plan) {
  DecodeShape shape = validate_decode(args);
  const DecodePlan::Impl* impl = plan.impl();
  MODEL1_CHECK(impl != nullptr, "plan", "a plan made by plan_decode", "an empty DecodePlan");
  MODEL1_CHECK(same_sig(*impl, shape.sig), "plan",
               "a plan for this call (" + describe_sig(shape.sig) + ")",
               "a plan for " + describe_sig(*impl));
  return shape;
}

void sparse_decode(const SparseDecodeArgs& args, const DecodePlan& plan, void* stream) {
  const DecodeShape shape = validate_with_plan(args, plan);
  const DecodePlan::Impl* impl = plan.impl();
  if (shape.sig.device == Device::kCPU) {
    cpu::sparse_decode(args, shape.sm_scale);
    return;
  }
#ifdef MODEL1_WITH_CUDA
  MODEL1_CHECK(impl->backend != nullptr, "plan", "a plan with CUDA schedule state",
               "a plan without backend state");
  cuda::sparse_decode(args, shape.sm_scale, *impl->backend, stream);
#else
  (void)stream;
#endif
}

std::string decode_kernel_name(const SparseDecodeArgs& args, const DecodePlan& plan) {
  const DecodeShape shape = validate_with_plan(args, plan);
  const DecodePlan::Impl* impl = plan.impl();
  if (shape.sig.device == Device::kCPU) return "cpu";
#ifdef MODEL1_WITH_CUDA
  MODEL1_CHECK(impl->backend != nullptr, "plan", "a plan with CUDA schedule state",
               "a plan without backend state");
  return cuda::decode_kernel_name(args, shape.sm_scale, *impl->backend);
#else
  return "none";
#endif
}

void sparse_decode(const SparseDecodeArgs& args, void* stream) {
  sparse_decode(args, DecodeOptions{}, stream);
}

void sparse_decode(const SparseDecodeArgs& args, const DecodeOptions& options, void* stream) {
  const DecodePlan plan = plan_decode(args, options, stream);
  sparse_decode(args, plan, stream);
}

}  // namespace model1
