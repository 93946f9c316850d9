// model1 bench: random workloads generated exactly as docs/PERFORMANCE.md describes, and the
// FLOP / byte accounting used to report TFLOPS, GB/s and the roofline fraction.
//
// Generation rules (PERFORMANCE.md):
//  - q and cache values ~ N(0, 0.1^2) clipped to [-1, 1], rounded to bf16; the cache is then
//    quantized with the library (model1::store_tokens, the reference rule of MODEL1.md).
//  - request i's cached length is max(round(N(s_k, (s_k/2)^2)), s_q) (per cache);
//  - its indices are distinct random positions in [0, length), padded with -1 at the end when
//    the length is shorter than topk, and mapped through a shuffled page table to slots
//    (slot = page * P + offset; every request owns ceil(length / P) pages of its cache);
//  - attn_sink ~ N(0, 1) per head; topk_length / extra_topk_length (where the spec has them)
//    ~ U[0, topk] per request.
// NOTE: only cache slots named by a valid candidate (k < effective topk, slot in range) get
// random values: nothing else may influence the result (MODEL1.md section 3, rule 6), and a
// 148-request peak cache would otherwise cost billions of random draws. The other slots hold
// zeros, or NaN bytes with UnreferencedFill::kNaN (what `model1 check` uses, so a kernel that
// reads them shows it).
// Randomness: std::mt19937_64 seeded from (seed, stream tag, chunk) with a fixed mixing
// function, so results are the same for any thread count; normal values by Box-Muller from the
// engine's 64-bit outputs, lengths / positions / page shuffles with the std distributions.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <vector>

#include "model1/decode.h"
#include "model1/prefill.h"
#include "presets.h"

namespace model1::bench {

/// Roofline of an H200 as measured for PERFORMANCE.md.
inline constexpr double kRooflineFlops = 790e12;  // FLOP/s, bf16 tensor cores
inline constexpr double kRooflineBytes = 4.3e12;  // B/s, device-memory copy bandwidth

/// FLOPs and bytes of one call (PERFORMANCE.md "Accounting").
struct Cost {
  double flops = 0.0;
  double bytes = 0.0;
  int64_t attended = 0;        ///< decode: sum over (request, query) of effective top-k, all caches
                               ///< prefill: sum over queries of effective top-k
  int64_t distinct_slots = 0;  ///< cache slots (prefill: kv rows) read at least once
  double compute_floor_us() const { return flops / kRooflineFlops * 1e6; }
  double memory_floor_us() const { return bytes / kRooflineBytes * 1e6; }
  double floor_us() const;
};

/// Bytes counted per distinct cache slot read: 576 for MODEL1 (the data row), 656 for V3.2,
/// 2 * d_qk for bf16.
int64_t accounted_bytes_per_slot(KvFormat format, int64_t d_qk);

/// Decode: FLOPs = 2 h_q attended (d_qk + d_v), attended = sum over (request, query token) of
/// clamp(topk_length, 0, topk) of each cache (topk where no length is given; the clamp is
/// counted, not the valid indices); bytes = distinct valid slots of each cache *
/// accounted_bytes_per_slot + q and out in bf16. `args` must hold CPU tensors.
Cost decode_cost(const SparseDecodeArgs& args);
/// Prefill: FLOPs = 2 h_q sum_q(effective topk) (d_qk + d_v) (= 2 h_q s_q topk (d_qk + d_v)
/// without topk_length); bytes = q + distinct valid kv rows * 2 d_qk + out, all bf16.
Cost prefill_cost(const SparsePrefillArgs& args);

enum class UnreferencedFill : uint8_t { kZero, kNaN };

/// A decode workload's shape: what a preset fixes, plus the batch size.
struct DecodeSpec {
  KvFormat format = KvFormat::kModel1Fp8;
  int64_t batch = 1;
  int64_t s_q = 1;
  int64_t h_q = 64;
  CacheShape main;
  std::optional<CacheShape> extra;
  bool main_topk_length = false;   ///< pass topk_length ~ U[0, topk]
  bool extra_topk_length = false;  ///< pass extra_topk_length ~ U[0, extra topk]
  bool attn_sink = true;
  UnreferencedFill fill = UnreferencedFill::kZero;
};
DecodeSpec decode_spec(const Preset& preset, int64_t batch);

/// A sparse prefill workload: q [s_q, h_q, d_qk], kv [s_kv, d_qk], each query's indices
/// distinct random positions in [0, s_kv), optionally a topk_length per query token.
struct PrefillSpec {
  int64_t s_q = 1;
  int64_t h_q = 64;
  int64_t d_qk = 512;
  int64_t s_kv = 1;
  int64_t topk = 1;
  bool attn_sink = true;
  bool topk_length = false;  ///< pass topk_length ~ U[0, topk] per query token
};
/// `s_q` 0 keeps the preset's s_q (4096).
PrefillSpec prefill_spec(const Preset& preset, int64_t s_kv, int64_t s_q = 0);

/// A host byte buffer allocated without initialization (caches are gigabytes; their owner fills
/// them in parallel). Move-only.
class HostBytes {
 public:
  HostBytes() = default;
  explicit HostBytes(size_t size) : data_(new uint8_t[size]), size_(size) {}
  uint8_t* data() const { return data_.get(); }
  size_t size() const { return size_; }

 private:
  std::unique_ptr<uint8_t[]> data_;
  size_t size_ = 0;
};

/// Host buffers of a decode workload and the args (CPU tensors) that view them. Move-only;
/// moving keeps every pointer valid.
class DecodeWorkload {
 public:
  DecodeWorkload(const DecodeSpec& spec, uint64_t seed);
  DecodeWorkload(DecodeWorkload&&) = default;
  DecodeWorkload& operator=(DecodeWorkload&&) = default;
  DecodeWorkload(const DecodeWorkload&) = delete;
  DecodeWorkload& operator=(const DecodeWorkload&) = delete;

  const DecodeSpec& spec() const { return spec_; }
  uint64_t seed() const { return seed_; }
  /// CPU tensors: q, kv, indices, optional lengths, extra cache, attn_sink, out, lse.
  const SparseDecodeArgs& args() const { return args_; }
  const Cost& cost() const { return cost_; }
  /// Cached length of each request, per cache (extra: empty without an extra cache).
  const std::vector<int64_t>& lengths() const { return lengths_; }
  const std::vector<int64_t>& extra_lengths() const { return extra_lengths_; }
  /// Fills out and lse with NaN (what a check does before running a backend).
  void poison_outputs();
  /// Host bytes held (all buffers).
  int64_t host_bytes() const;

 private:
  DecodeSpec spec_;
  uint64_t seed_ = 0;
  std::vector<uint16_t> q_;                 // [b, s_q, h_q, d_qk] bf16
  HostBytes kv_;                            // [pages, page_stride] bytes
  std::vector<int32_t> indices_;            // [b, s_q, topk]
  std::vector<int32_t> topk_length_;        // [b] (when spec.main_topk_length)
  HostBytes extra_kv_;                      // [extra pages, extra page_stride]
  std::vector<int32_t> extra_indices_;      // [b, s_q, extra_topk]
  std::vector<int32_t> extra_topk_length_;  // [b]
  std::vector<float> attn_sink_;            // [h_q]
  std::vector<uint16_t> out_;               // [b, s_q, h_q, d_v] bf16
  std::vector<float> lse_;                  // [b, s_q, h_q]
  std::vector<int64_t> lengths_, extra_lengths_;
  SparseDecodeArgs args_;
  Cost cost_;
};

/// Host buffers of a prefill workload and its args (CPU tensors). Move-only.
class PrefillWorkload {
 public:
  PrefillWorkload(const PrefillSpec& spec, uint64_t seed);
  PrefillWorkload(PrefillWorkload&&) = default;
  PrefillWorkload& operator=(PrefillWorkload&&) = default;
  PrefillWorkload(const PrefillWorkload&) = delete;
  PrefillWorkload& operator=(const PrefillWorkload&) = delete;

  const PrefillSpec& spec() const { return spec_; }
  uint64_t seed() const { return seed_; }
  const SparsePrefillArgs& args() const { return args_; }
  const Cost& cost() const { return cost_; }
  /// Fills out, max_logits and lse with NaN.
  void poison_outputs();
  int64_t host_bytes() const;

 private:
  PrefillSpec spec_;
  uint64_t seed_ = 0;
  std::vector<uint16_t> q_;        // [s_q, h_q, d_qk] bf16
  std::vector<uint16_t> kv_;       // [s_kv, d_qk] bf16
  std::vector<int32_t> indices_;   // [s_q, topk]
  std::vector<int32_t> topk_length_;  // [s_q] (when spec.topk_length)
  std::vector<float> attn_sink_;   // [h_q]
  std::vector<uint16_t> out_;      // [s_q, h_q, d_v] bf16
  std::vector<float> max_logits_;  // [s_q, h_q]
  std::vector<float> lse_;         // [s_q, h_q]
  SparsePrefillArgs args_;
  Cost cost_;
};

// ---- small helpers shared by the CLI and tests ----------------------------------------------

/// bfloat16 bits -> float (exact) and float -> bfloat16 bits (round to nearest even).
float bf16_bits_to_float(uint16_t bits);
uint16_t float_to_bf16_bits(float value);

/// Number of bytes a strided view spans (from its first element to its last, inclusive);
/// strides must be non-negative.
int64_t span_bytes(const TensorView& view);

}  // namespace model1::bench
