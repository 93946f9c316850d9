// model1 GPU tests: device buffers, random problem construction (host), CPU-vs-GPU runs and
// comparisons with the tolerances of MODEL1.md section 3.
#pragma once

#include <cuda_runtime.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <random>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "model1/model1.h"

namespace model1::cuda_test {

// ---- GPU presence ------------------------------------------------------------------------------

/// Empty when a GPU is usable, else why not.
inline std::string gpu_missing_reason() {
  if (!cuda_compiled()) return "the library was built without CUDA";
  int count = 0;
  const cudaError_t err = cudaGetDeviceCount(&count);
  if (err != cudaSuccess) {
    cudaGetLastError();
    return std::string("cudaGetDeviceCount: ") + cudaGetErrorName(err);
  }
  if (count == 0) return "cudaGetDeviceCount reports 0 devices";
  return "";
}

#define MODEL1_REQUIRE_GPU()                                                         \
  do {                                                                               \
    const std::string model1_why_ = ::model1::cuda_test::gpu_missing_reason();       \
    if (!model1_why_.empty()) GTEST_SKIP() << "no CUDA GPU found: " << model1_why_;  \
  } while (0)

#define CUDA_OK(call)                                                                        \
  do {                                                                                       \
    const cudaError_t e_ = (call);                                                           \
    ASSERT_EQ(e_, cudaSuccess) << #call << ": " << cudaGetErrorName(e_) << " "               \
                               << cudaGetErrorString(e_);                                    \
  } while (0)

/// Throws on CUDA errors (for helpers that cannot use ASSERT).
inline void cuda_ok(cudaError_t e, const char* what) {
  if (e != cudaSuccess) {
    throw std::runtime_error(std::string(what) + ": " + cudaGetErrorName(e) + " " +
                             cudaGetErrorString(e));
  }
}

/// Owning device allocation.
class DeviceBuffer {
 public:
  DeviceBuffer() = default;
  explicit DeviceBuffer(size_t bytes) : bytes_(bytes) {
    if (bytes_ > 0) cuda_ok(cudaMalloc(&ptr_, bytes_), "cudaMalloc");
  }
  ~DeviceBuffer() {
    if (ptr_ != nullptr) cudaFree(ptr_);
  }
  DeviceBuffer(DeviceBuffer&& o) noexcept : ptr_(o.ptr_), bytes_(o.bytes_) {
    o.ptr_ = nullptr;
    o.bytes_ = 0;
  }
  DeviceBuffer& operator=(DeviceBuffer&& o) noexcept {
    std::swap(ptr_, o.ptr_);
    std::swap(bytes_, o.bytes_);
    return *this;
  }
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;

  template <typename T>
  static DeviceBuffer from(const std::vector<T>& host) {
    DeviceBuffer d(host.size() * sizeof(T));
    if (!host.empty()) cuda_ok(cudaMemcpy(d.ptr_, host.data(), d.bytes_, cudaMemcpyHostToDevice), "upload");
    cuda_ok(cudaDeviceSynchronize(), "cudaDeviceSynchronize");
    return d;
  }
  // NOTE: every helper synchronises the device: the tests mix the legacy default stream with
  // non-blocking streams, which do not order against each other.
  template <typename T>
  void upload(const std::vector<T>& host) {
    cuda_ok(cudaMemcpy(ptr_, host.data(), host.size() * sizeof(T), cudaMemcpyHostToDevice), "upload");
    cuda_ok(cudaDeviceSynchronize(), "cudaDeviceSynchronize");
  }
  template <typename T>
  std::vector<T> download() const {
    cuda_ok(cudaDeviceSynchronize(), "cudaDeviceSynchronize");
    std::vector<T> host(bytes_ / sizeof(T));
    if (!host.empty()) cuda_ok(cudaMemcpy(host.data(), ptr_, bytes_, cudaMemcpyDeviceToHost), "download");
    return host;
  }
  void fill(uint8_t byte) {
    cuda_ok(cudaMemset(ptr_, byte, bytes_), "cudaMemset");
    cuda_ok(cudaDeviceSynchronize(), "cudaDeviceSynchronize");
  }
  void* get() const { return ptr_; }
  template <typename T>
  T* as() const { return static_cast<T*>(ptr_); }
  size_t bytes() const { return bytes_; }

 private:
  void* ptr_ = nullptr;
  size_t bytes_ = 0;
};

// ---- numbers -------------------------------------------------------------------------------------

inline uint16_t to_bf16(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  if ((u & 0x7fffffffu) > 0x7f800000u) return static_cast<uint16_t>((u >> 16) | 0x40u);
  u += 0x7fffu + ((u >> 16) & 1u);
  return static_cast<uint16_t>(u >> 16);
}
inline float from_bf16(uint16_t b) {
  const uint32_t u = uint32_t{b} << 16;
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

/// For the late-maximum tests (decode and prefill): the bf16 bits of a q value c < 0 such that,
/// with every other q dim 0, a key whose dim 0 is v has logit c v sm_scale and a key whose dim 0
/// is 0 has logit 0, and the later key's weight against the earlier one, 2^g with
/// g = -c v sm_scale log2(e), lies in [128, 192) (less than 2^8: a kernel that moved its softmax
/// reference only past 2^8 would keep the first key's logit) and about half-way between two
/// integers, so a P of 2^-g rounded to bf16 carries an error near 2^-8.5. 0 if none exists.
inline uint16_t stale_reference_q(float v, float sm_scale) {
  uint16_t best = 0;
  double best_err = 1.0;
  for (uint16_t bits = to_bf16(-1.0f); bits < to_bf16(-1024.0f); ++bits) {
    const double pw = std::exp2(-double(from_bf16(bits)) * v * sm_scale * 1.4426950408889634);
    if (pw < 128.0 || pw >= 192.0) continue;
    const double err = std::fabs(pw - std::floor(pw) - 0.5);
    if (err < best_err) {
      best_err = err;
      best = bits;
    }
  }
  return best;
}

/// Per-test seed: MODEL1_TEST_SEED if set, else fresh from the OS (printed on failure).
inline uint64_t fresh_seed() {
  if (const char* s = std::getenv("MODEL1_TEST_SEED")) return std::strtoull(s, nullptr, 0);
  std::random_device rd;
  return (uint64_t{rd()} << 32) ^ rd();
}

/// Reduced matrix for compute-sanitizer runs.
inline bool sanitizer_small() {
  const char* s = std::getenv("MODEL1_SANITIZER_SMALL");
  return s != nullptr && std::string(s) != "0";
}

// ---- one decode problem ----------------------------------------------------------------------

enum class SinkMode { kNone, kFinite, kPlusInf, kMinusInf, kMixed };

struct CacheSpec {
  int64_t page_size = 64;
  int64_t num_pages = 8;
  int64_t extra_stride = 0;  ///< bytes added to the minimal page stride (bf16: elements)
  int64_t base_offset = 0;   ///< bytes the cache starts past an aligned allocation
};

struct DecodeCase {
  KvFormat format = KvFormat::kModel1Fp8;
  int d_qk = 512;  ///< bf16 caches: 512 or 576
  int b = 1, s_q = 1, h_q = 64;
  int topk = 64;
  CacheSpec main;
  bool has_extra = false;
  int extra_topk = 0;
  CacheSpec extra;
  bool topk_length = false;
  bool extra_topk_length = false;
  SinkMode sink = SinkMode::kNone;
  double invalid_fraction = 0.0;  ///< share of candidates replaced by invalid flavours
  double duplicate_fraction = 0.0;
  double all_invalid_rows = 0.0;  ///< share of (i, j) rows made entirely invalid
  bool plant_nan = true;          ///< NaN bytes in every unreferenced slot
  int q_head_pad = 0;             ///< extra elements per q head row (non-16-byte strides)
  int out_shift = 0;              ///< device out starts this many bf16 past its allocation (1: 2-byte, 2: 4-byte aligned)
  float sm_scale = NAN;
  int split_keys = 0;  ///< DecodeOptions::split_keys of the GPU plans (0 = the default)

  std::string describe() const {
    std::ostringstream o;
    o << kv_format_name(format) << " d_qk=" << d_qk << " b=" << b << " s_q=" << s_q
      << " h_q=" << h_q << " topk=" << topk << " P=" << main.page_size << " pages=" << main.num_pages
      << " +stride=" << main.extra_stride << " +base=" << main.base_offset;
    if (has_extra) {
      o << " extra_topk=" << extra_topk << " extra_P=" << extra.page_size
        << " extra_pages=" << extra.num_pages;
    }
    o << " topk_length=" << topk_length << " extra_topk_length=" << extra_topk_length
      << " sink=" << static_cast<int>(sink) << " invalid=" << invalid_fraction
      << " dup=" << duplicate_fraction << " all_invalid=" << all_invalid_rows
      << " nan=" << plant_nan << " q_pad=" << q_head_pad << " out_shift=" << out_shift
      << " split_keys=" << split_keys;
    return o.str();
  }
};

/// A paged cache in host memory plus its device copy.
struct HostCache {
  KvFormat format = KvFormat::kModel1Fp8;
  int d_qk = 512;
  int64_t page_size = 0, num_pages = 0, page_stride = 0;  // stride in bytes
  int64_t base_offset = 0;
  std::vector<uint8_t> bytes;  // base_offset + num_pages * page_stride
  DeviceBuffer device;

  int64_t num_slots() const { return page_size * num_pages; }
  KvCacheView view(bool on_device) const {
    uint8_t* base = (on_device ? device.as<uint8_t>() : const_cast<uint8_t*>(bytes.data())) + base_offset;
    KvCacheView v;
    v.format = format;
    v.page_size = page_size;
    const Device dev = on_device ? Device::kCUDA : Device::kCPU;
    if (format == KvFormat::kBf16) {
      v.data = TensorView::strided(base, DType::kBF16, {num_pages, page_size, d_qk},
                                   {page_stride / 2, d_qk, 1}, dev);
    } else {
      v.data = TensorView::strided(base, DType::kU8, {num_pages, page_stride}, {page_stride, 1}, dev);
    }
    return v;
  }
};

/// Fills a cache from random bf16 tokens, quantized by the CPU backend. Decode problems use
/// the workload distribution of PERFORMANCE.md (N(0, 0.1^2) clipped to [-1, 1]) with a
/// per-token scale in [0.5, 2]: the tolerances of MODEL1.md are stated for such data (bf16
/// softmax weights, as in FlashMLA, carry a 2^-9 relative error, which data of magnitude 10
/// with cancellation turns into absolute errors above 1e-3). `wide` draws per-token
/// magnitudes over 10^-3..10 instead (for the exact cache round-trip tests).
inline HostCache make_cache(KvFormat format, int d_qk, const CacheSpec& spec, std::mt19937_64& rng,
                            bool wide = false) {
  HostCache c;
  c.format = format;
  c.d_qk = format == KvFormat::kBf16 ? d_qk : kv_format_d_qk(format);
  c.page_size = spec.page_size;
  c.num_pages = spec.num_pages;
  c.page_stride = kv_min_page_stride(format, spec.page_size, c.d_qk) +
                  (format == KvFormat::kBf16 ? 2 * spec.extra_stride : spec.extra_stride);
  c.base_offset = spec.base_offset;
  c.bytes.assign(static_cast<size_t>(c.base_offset + c.num_pages * c.page_stride), 0);
  std::uniform_int_distribution<int> byte(0, 255);
  for (auto& x : c.bytes) x = static_cast<uint8_t>(byte(rng));  // padding keeps random bytes

  const int64_t n = c.num_slots();
  std::vector<uint16_t> src(static_cast<size_t>(n * c.d_qk));  // [n, d_qk]
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::uniform_real_distribution<float> wide_mag(-3.0f, 1.0f);
  std::uniform_real_distribution<float> narrow_mag(-1.0f, 1.0f);
  for (int64_t t = 0; t < n; ++t) {
    const float scale = wide ? std::pow(10.0f, wide_mag(rng)) : 0.1f * std::exp2(narrow_mag(rng));
    for (int d = 0; d < c.d_qk; ++d) {
      const float x = normal(rng) * scale;
      src[t * c.d_qk + d] = to_bf16(wide ? x : std::clamp(x, -1.0f, 1.0f));
    }
  }
  const TensorView src_view =
      TensorView::contiguous(src.data(), DType::kBF16, {n, c.d_qk}, Device::kCPU);
  quantize_cache(src_view, c.view(false));
  return c;
}

/// Byte ranges of token `slot` (data + scale rows) inside a page-relative buffer.
inline std::vector<std::pair<int64_t, int64_t>> token_byte_ranges(const HostCache& c, int64_t slot) {
  const int64_t page = slot / c.page_size, t = slot % c.page_size;
  const int64_t base = c.base_offset + page * c.page_stride;
  switch (c.format) {
    case KvFormat::kModel1Fp8:
      return {{base + model1_fp8::data_row_offset(t), model1_fp8::kDataRowBytes},
              {base + model1_fp8::scale_row_offset(c.page_size, t), model1_fp8::kScaleRowBytes}};
    case KvFormat::kV32Fp8:
      return {{base + v32_fp8::token_offset(t), v32_fp8::kBytesPerToken}};
    default:
      return {{base + t * 2 * c.d_qk, 2 * c.d_qk}};
  }
}

/// Overwrites every byte that no referenced slot owns (unreferenced tokens and page padding)
/// with 0xff: e4m3 NaN codes, UE8M0 255 (= inf scale), bf16 NaN.
inline void plant_nan(HostCache& c, const std::set<int64_t>& referenced) {
  std::vector<uint8_t> keep(c.bytes.size(), 0);
  for (int64_t slot : referenced) {
    for (auto [off, len] : token_byte_ranges(c, slot)) std::fill(keep.begin() + off, keep.begin() + off + len, 1);
  }
  for (size_t k = static_cast<size_t>(c.base_offset); k < c.bytes.size(); ++k) {
    if (!keep[k]) c.bytes[k] = 0xff;
  }
}

inline int clamp_len(const std::vector<int32_t>& lengths, int i, int topk) {
  if (lengths.empty()) return topk;
  return std::clamp<int>(lengths[i], 0, topk);
}

/// Host inputs of one decode call (and their device copies once uploaded).
struct DecodeProblem {
  DecodeCase cfg;
  uint64_t seed = 0;
  HostCache kv, extra_kv;
  std::vector<uint16_t> q;  // [b, s_q, h_q, d_qk + q_head_pad] bf16
  std::vector<int32_t> indices, extra_indices;  // [b, s_q, topk] / [b, s_q, extra_topk]
  std::vector<int32_t> topk_length, extra_topk_length;  // [b] or empty
  std::vector<float> sink;  // [h_q] or empty

  DeviceBuffer d_q, d_indices, d_extra_indices, d_topk_length, d_extra_topk_length, d_sink;
  DeviceBuffer d_out, d_lse;

  int64_t q_row() const { return cfg.d_qk + cfg.q_head_pad; }
  int64_t out_elems() const { return int64_t{cfg.b} * cfg.s_q * cfg.h_q * 512; }
  int64_t lse_elems() const { return int64_t{cfg.b} * cfg.s_q * cfg.h_q; }

  void upload() {
    kv.device = DeviceBuffer::from(kv.bytes);
    if (cfg.has_extra) extra_kv.device = DeviceBuffer::from(extra_kv.bytes);
    d_q = DeviceBuffer::from(q);
    d_indices = DeviceBuffer::from(indices);
    if (cfg.has_extra) d_extra_indices = DeviceBuffer::from(extra_indices);
    if (!topk_length.empty()) d_topk_length = DeviceBuffer::from(topk_length);
    if (!extra_topk_length.empty()) d_extra_topk_length = DeviceBuffer::from(extra_topk_length);
    if (!sink.empty()) d_sink = DeviceBuffer::from(sink);
    d_out = DeviceBuffer(static_cast<size_t>(out_elems() + cfg.out_shift) * 2);
    d_lse = DeviceBuffer(static_cast<size_t>(lse_elems()) * 4);
  }

  /// Args over host buffers (out/lse given by the caller) or over the device copies.
  SparseDecodeArgs args(bool on_device, uint16_t* host_out = nullptr, float* host_lse = nullptr) const {
    const Device dev = on_device ? Device::kCUDA : Device::kCPU;
    auto ptr = [&](const DeviceBuffer& d, const void* h) {
      return on_device ? d.get() : const_cast<void*>(h);
    };
    const int64_t b = cfg.b, s = cfg.s_q, h = cfg.h_q, qr = q_row();
    SparseDecodeArgs a;
    a.q = TensorView::strided(ptr(d_q, q.data()), DType::kBF16, {b, s, h, cfg.d_qk},
                              {s * h * qr, h * qr, qr, 1}, dev);
    a.kv = kv.view(on_device);
    a.indices = TensorView::contiguous(ptr(d_indices, indices.data()), DType::kI32, {b, s, cfg.topk}, dev);
    if (!topk_length.empty()) {
      a.topk_length = TensorView::contiguous(ptr(d_topk_length, topk_length.data()), DType::kI32, {b}, dev);
    }
    if (cfg.has_extra) {
      a.extra_kv = extra_kv.view(on_device);
      a.extra_indices = TensorView::contiguous(ptr(d_extra_indices, extra_indices.data()), DType::kI32,
                                               {b, s, cfg.extra_topk}, dev);
      if (!extra_topk_length.empty()) {
        a.extra_topk_length = TensorView::contiguous(
            ptr(d_extra_topk_length, extra_topk_length.data()), DType::kI32, {b}, dev);
      }
    }
    if (!sink.empty()) a.attn_sink = TensorView::contiguous(ptr(d_sink, sink.data()), DType::kF32, {h}, dev);
    a.sm_scale = cfg.sm_scale;
    void* dev_out = static_cast<uint8_t*>(d_out.get()) + 2 * cfg.out_shift;
    a.out = TensorView::contiguous(on_device ? dev_out : host_out, DType::kBF16, {b, s, h, 512}, dev);
    a.lse = TensorView::contiguous(on_device ? d_lse.get() : host_lse, DType::kF32, {b, s, h}, dev);
    return a;
  }
};

inline constexpr int32_t kInvalidFlavours[] = {-1, std::numeric_limits<int32_t>::min(), -123456,
                                               /* num_slots */ 0, std::numeric_limits<int32_t>::max()};

/// Random candidate lists for one cache: valid slots, invalid flavours, duplicates,
/// all-invalid rows. `row_invalid[i * s_q + j]` forces a whole row invalid.
inline std::vector<int32_t> make_indices(const DecodeCase& c, int topk, int64_t num_slots,
                                         const std::vector<uint8_t>& row_invalid, std::mt19937_64& rng) {
  std::vector<int32_t> idx(static_cast<size_t>(c.b) * c.s_q * topk);
  std::uniform_int_distribution<int64_t> slot(0, num_slots - 1);
  std::uniform_real_distribution<double> u(0.0, 1.0);
  std::uniform_int_distribution<int> flavour(0, 4);
  for (int64_t r = 0; r < int64_t{c.b} * c.s_q; ++r) {
    int32_t* row = idx.data() + r * topk;
    for (int k = 0; k < topk; ++k) {
      row[k] = static_cast<int32_t>(slot(rng));
      const double x = u(rng);
      if (row_invalid[r] || x < c.invalid_fraction) {
        const int f = flavour(rng);
        row[k] = f == 3 ? static_cast<int32_t>(num_slots) : kInvalidFlavours[f];
      } else if (k > 0 && x < c.invalid_fraction + c.duplicate_fraction) {
        row[k] = row[std::uniform_int_distribution<int>(0, k - 1)(rng)];
      }
    }
  }
  return idx;
}

inline std::vector<int32_t> make_lengths(int b, int topk, std::mt19937_64& rng) {
  std::vector<int32_t> len(b);
  std::uniform_int_distribution<int> pick(0, 9);
  std::uniform_int_distribution<int> any(0, topk);
  for (int i = 0; i < b; ++i) {
    const int p = pick(rng);
    len[i] = p == 0 ? 0 : p == 1 ? -7 : p == 2 ? topk + 13 : p == 3 ? topk : any(rng);
  }
  return len;
}

inline void collect_referenced(const std::vector<int32_t>& idx, const std::vector<int32_t>& lengths,
                               int b, int s_q, int topk, int64_t num_slots, std::set<int64_t>* out) {
  for (int i = 0; i < b; ++i) {
    const int len = clamp_len(lengths, i, topk);
    for (int j = 0; j < s_q; ++j) {
      const int32_t* row = idx.data() + (static_cast<int64_t>(i) * s_q + j) * topk;
      for (int k = 0; k < len; ++k) {
        if (row[k] >= 0 && row[k] < num_slots) out->insert(row[k]);
      }
    }
  }
}

inline DecodeProblem make_problem(const DecodeCase& cfg, uint64_t seed) {
  DecodeProblem p;
  p.cfg = cfg;
  p.seed = seed;
  std::mt19937_64 rng(seed);
  p.kv = make_cache(cfg.format, cfg.d_qk, cfg.main, rng);
  if (cfg.has_extra) p.extra_kv = make_cache(cfg.format, cfg.d_qk, cfg.extra, rng);
  p.cfg.d_qk = p.kv.d_qk;

  std::normal_distribution<float> normal(0.0f, 1.0f);
  p.q.resize(static_cast<size_t>(cfg.b) * cfg.s_q * cfg.h_q * p.q_row());
  for (auto& x : p.q) x = to_bf16(normal(rng));

  std::vector<uint8_t> row_invalid(static_cast<size_t>(cfg.b) * cfg.s_q, 0);
  std::uniform_real_distribution<double> u(0.0, 1.0);
  for (auto& r : row_invalid) r = u(rng) < cfg.all_invalid_rows;
  p.indices = make_indices(cfg, cfg.topk, p.kv.num_slots(), row_invalid, rng);
  if (cfg.topk_length) p.topk_length = make_lengths(cfg.b, cfg.topk, rng);
  if (cfg.has_extra) {
    p.extra_indices = make_indices(cfg, cfg.extra_topk, p.extra_kv.num_slots(), row_invalid, rng);
    if (cfg.extra_topk_length) p.extra_topk_length = make_lengths(cfg.b, cfg.extra_topk, rng);
  }
  if (cfg.sink != SinkMode::kNone) {
    p.sink.resize(cfg.h_q);
    std::uniform_int_distribution<int> pick(0, 3);
    for (auto& s : p.sink) {
      SinkMode m = cfg.sink;
      if (m == SinkMode::kMixed) {
        const int k = pick(rng);
        m = k == 0 ? SinkMode::kPlusInf : k == 1 ? SinkMode::kMinusInf : SinkMode::kFinite;
      }
      s = m == SinkMode::kPlusInf ? INFINITY : m == SinkMode::kMinusInf ? -INFINITY : 2.0f * normal(rng);
    }
  }
  if (cfg.plant_nan) {
    std::set<int64_t> ref, extra_ref;
    collect_referenced(p.indices, p.topk_length, cfg.b, cfg.s_q, cfg.topk, p.kv.num_slots(), &ref);
    plant_nan(p.kv, ref);
    if (cfg.has_extra) {
      collect_referenced(p.extra_indices, p.extra_topk_length, cfg.b, cfg.s_q, cfg.extra_topk,
                         p.extra_kv.num_slots(), &extra_ref);
      plant_nan(p.extra_kv, extra_ref);
    }
  }
  return p;
}

// ---- runs and comparisons ----------------------------------------------------------------------

struct DecodeResult {
  std::vector<uint16_t> out;  // [b, s_q, h_q, 512] bf16
  std::vector<float> lse;     // [b, s_q, h_q]
};

inline DecodeResult run_cpu(const DecodeProblem& p) {
  DecodeResult r;
  r.out.assign(static_cast<size_t>(p.out_elems()), 0xffff);
  r.lse.assign(static_cast<size_t>(p.lse_elems()), NAN);
  const SparseDecodeArgs a = p.args(false, r.out.data(), r.lse.data());
  sparse_decode(a);
  return r;
}

/// Poisons the device outputs (bf16 0xffff = NaN, f32 0xffffffff = NaN).
inline void poison(DecodeProblem& p) {
  p.d_out.fill(0xff);
  p.d_lse.fill(0xff);
}

inline DecodeResult download(const DecodeProblem& p) {
  cuda_ok(cudaDeviceSynchronize(), "cudaDeviceSynchronize");
  std::vector<uint16_t> out = p.d_out.download<uint16_t>();
  out.erase(out.begin(), out.begin() + p.cfg.out_shift);
  return {std::move(out), p.d_lse.download<float>()};
}

/// Poison, plan (with the case's split_keys), run on `stream`, download.
inline DecodeResult run_gpu(DecodeProblem& p, cudaStream_t stream = nullptr) {
  poison(p);
  const SparseDecodeArgs a = p.args(true);
  DecodeOptions options;
  options.split_keys = p.cfg.split_keys;
  const DecodePlan plan = plan_decode(a, options, stream);
  sparse_decode(a, plan, stream);
  return download(p);
}

/// MODEL1.md tolerances: out within 1e-3 + 2.01/128 |ref| with cosine distance < 5e-6 (whole
/// tensor), lse within 1e-6 + 8.01/65536 |ref| (both +inf when no key). NaN never passes.
inline ::testing::AssertionResult close_to(const DecodeResult& got, const DecodeResult& ref) {
  if (got.out.size() != ref.out.size() || got.lse.size() != ref.lse.size()) {
    return ::testing::AssertionFailure() << "size mismatch";
  }
  int64_t bad = 0;
  std::ostringstream first;
  double dot = 0, n_got = 0, n_ref = 0, max_err = 0;
  for (size_t k = 0; k < ref.out.size(); ++k) {
    const double g = from_bf16(got.out[k]), r = from_bf16(ref.out[k]);
    const bool ok = std::isfinite(g) && std::isfinite(r) && std::fabs(g - r) <= 1e-3 + (2.01 / 128) * std::fabs(r);
    if (!ok) {
      if (bad++ < 5) first << " out[" << k << "] (row " << k / 512 << ", dim " << k % 512 << ") got " << g << " want " << r << ";";
    } else {
      max_err = std::max(max_err, std::fabs(g - r));
    }
    dot += g * r;
    n_got += g * g;
    n_ref += r * r;
  }
  for (size_t k = 0; k < ref.lse.size(); ++k) {
    const double g = got.lse[k], r = ref.lse[k];
    bool ok;
    if (std::isinf(r) && r > 0) {
      ok = std::isinf(g) && g > 0;
    } else {
      ok = std::isfinite(g) && std::isfinite(r) && std::fabs(g - r) <= 1e-6 + (8.01 / 65536) * std::fabs(r);
    }
    if (!ok && bad++ < 10) first << " lse[" << k << "] got " << g << " want " << r << ";";
  }
  double cos_dist = 0;
  if (n_ref > 0 || n_got > 0) cos_dist = 1.0 - dot / std::sqrt(std::max(n_got * n_ref, 1e-300));
  if (bad > 0 || !(cos_dist < 5e-6)) {
    return ::testing::AssertionFailure() << bad << " elements out of tolerance, cosine distance "
                                         << cos_dist << ", max ok err " << max_err << ":" << first.str();
  }
  return ::testing::AssertionSuccess() << "cosine distance " << cos_dist;
}

inline bool bitwise_equal(const DecodeResult& x, const DecodeResult& y) {
  return x.out == y.out &&
         std::memcmp(x.lse.data(), y.lse.data(), x.lse.size() * sizeof(float)) == 0 &&
         x.lse.size() == y.lse.size();
}

}  // namespace model1::cuda_test
