// model1 CUDA tests: the portable sparse prefill kernels (src/cuda/portable/prefill_*) against
// the CPU backend (model1::sparse_prefill on CPU tensors holding the same inputs), with the
// tolerances of MODEL1.md section 4 (bench/compare.h); plus exact single-key outputs, NaN in
// unreferenced kv rows and around every view, every invalid-index flavour, poisoned outputs
// with guard regions, bitwise repeatability, batch invariance and s_q = 70000.
// Skips (with a message) where no CUDA GPU is present.
#include <cuda_runtime.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <climits>
#include <cstdlib>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <initializer_list>
#include <iostream>
#include <limits>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "compare.h"
#include "cuda_test_util.h"
#include "cuda/portable/prefill_launch.h"
#include "model1/model1.h"
#include "scoped_env.h"

namespace model1::test {
namespace {

using cuda::PrefillPipeline;
using test_env::ScopedEnv;

constexpr int kDV = 512;
constexpr uint16_t kBf16NaN = 0x7FC0;
constexpr uint8_t kPoisonByte = 0xFF;  // bf16 0xFFFF and f32 0xFFFFFFFF are both NaN
constexpr int64_t kGuard = 64;         // poisoned elements before and after every output view

// max_logits and lse: relative 2.01 / 65536 plus 1e-6 absolute (bench/compare.h says why).
const bench::Tolerance& kStatTolerance = bench::kPrefillStatTolerance;

bool gpu_present() {
  int n = 0;
  if (cudaGetDeviceCount(&n) != cudaSuccess) {
    cudaGetLastError();
    return false;
  }
  return n > 0;
}

#define SKIP_WITHOUT_GPU()                                                                  \
  if (!gpu_present())                                                                       \
  GTEST_SKIP() << "no CUDA GPU found (cudaGetDeviceCount failed or returned 0): "           \
                  "CUDA prefill tests skipped"

void cuda_ok(cudaError_t err, const char* what) {
  if (err != cudaSuccess) {
    throw std::runtime_error(std::string(what) + ": " + cudaGetErrorName(err) + " " +
                             cudaGetErrorString(err));
  }
}

/// Owning device allocation of n elements.
template <class T>
class DeviceBuffer {
 public:
  DeviceBuffer() = default;
  explicit DeviceBuffer(size_t n) : n_(n) {
    cuda_ok(cudaMalloc(reinterpret_cast<void**>(&p_), std::max<size_t>(n, 1) * sizeof(T)),
            "cudaMalloc");
  }
  ~DeviceBuffer() {
    if (p_ != nullptr) cudaFree(p_);
  }
  DeviceBuffer(DeviceBuffer&& o) noexcept : p_(std::exchange(o.p_, nullptr)), n_(o.n_) {}
  DeviceBuffer& operator=(DeviceBuffer&& o) noexcept {
    std::swap(p_, o.p_);
    std::swap(n_, o.n_);
    return *this;
  }
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;

  T* get() const { return p_; }
  void upload(const std::vector<T>& h) {
    cuda_ok(cudaMemcpy(p_, h.data(), n_ * sizeof(T), cudaMemcpyHostToDevice), "upload");
  }
  std::vector<T> download() const {
    std::vector<T> h(n_);
    cuda_ok(cudaMemcpy(h.data(), p_, n_ * sizeof(T), cudaMemcpyDeviceToHost), "download");
    return h;
  }
  void poison() { cuda_ok(cudaMemset(p_, kPoisonByte, n_ * sizeof(T)), "poison"); }

 private:
  T* p_ = nullptr;
  size_t n_ = 0;
};

// ---------------------------------------------------------------------------------------------
// Numbers and random data.
float bf16_to_float(uint16_t bits) {
  const uint32_t u = uint32_t{bits} << 16;
  float f;
  std::memcpy(&f, &u, sizeof f);
  return f;
}

uint16_t float_to_bf16(float f) {  // round to nearest even
  if (std::isnan(f)) return kBf16NaN;
  uint32_t u;
  std::memcpy(&u, &f, sizeof u);
  return static_cast<uint16_t>((u + 0x7FFFu + ((u >> 16) & 1u)) >> 16);
}

/// splitmix64: fast enough for the 287M values of the s_q = 70000 case.
class Rng {
 public:
  explicit Rng(uint64_t seed) : s_(seed * 0x9E3779B97F4A7C15ull + 0x632BE59BD9B4E019ull) {}
  uint64_t next() {
    uint64_t z = (s_ += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
  }
  double uniform() { return static_cast<double>(next() >> 11) * 0x1p-53; }  // [0, 1)
  bool coin(double p) { return uniform() < p; }
  int64_t below(int64_t n) { return static_cast<int64_t>(next() % static_cast<uint64_t>(n)); }
  /// Approximately N(0, sigma^2) (Irwin-Hall of 4, bounded by 3.46 sigma).
  float normal(float sigma) {
    const double s = uniform() + uniform() + uniform() + uniform() - 2.0;
    return static_cast<float>(s * std::sqrt(3.0) * sigma);
  }

 private:
  uint64_t s_;
};

// ---------------------------------------------------------------------------------------------
// Cases.
enum class Bad { kMinusOne, kIntMin, kNegative, kPastEnd, kIntMax };
const std::vector<Bad> kAllBad = {Bad::kMinusOne, Bad::kIntMin, Bad::kNegative, Bad::kPastEnd,
                                  Bad::kIntMax};

int32_t bad_value(Bad b, int64_t s_kv) {
  switch (b) {
    case Bad::kMinusOne: return -1;
    case Bad::kIntMin: return INT_MIN;
    case Bad::kNegative: return -123456;
    case Bad::kPastEnd: return static_cast<int32_t>(s_kv);
    case Bad::kIntMax: return INT_MAX;
  }
  return -1;
}

enum class Sink { kNone, kFinite, kPosInf, kNegInf, kMixed };
enum class QLayout { kContiguous, kHeadMajor, kUnaligned };

struct Case {
  int d_qk = 512;
  int h_q = 16;
  int64_t s_q = 3;
  int64_t s_kv = 1000;
  int topk = 64;
  std::vector<int32_t> topk_length;  ///< empty: absent; else cycled over the query tokens
  Sink sink = Sink::kNone;
  double invalid_frac = 0.1;
  std::vector<Bad> flavours = kAllBad;
  double dup_frac = 0.1;
  double used_frac = 0.5;            ///< kv rows valid candidates may name; the rest hold NaN
  std::vector<int64_t> all_invalid;  ///< query tokens whose candidates are all invalid
  bool single_valid = false;         ///< exactly one valid candidate per token, the rest invalid
  float sigma = 0.1f;
  float sm_scale = NAN;  ///< NaN: 1 / sqrt(d_qk)
  QLayout q_layout = QLayout::kContiguous;
  int64_t kv_pad = 0;   ///< kv row stride = d_qk + kv_pad (pads hold NaN)
  int64_t idx_pad = 0;  ///< indices row stride = topk + idx_pad
  bool rank3 = false;   ///< kv [s_kv, 1, d_qk] and indices [s_q, 1, topk]
  bool out_misaligned = false;  ///< out view 2 bytes past a 4-byte boundary
  int64_t out_shift = 0;        ///< out view this many more elements on (2: 4-byte but not 16-byte aligned)
  PrefillPipeline pipeline = PrefillPipeline::kAuto;
  uint64_t seed = 1;

  std::string name() const {
    char buf[256];
    std::snprintf(buf, sizeof buf,
                  "d_qk %d h_q %d s_q %lld s_kv %lld topk %d lengths %zu sink %d inv %.2f "
                  "q_layout %d kv_pad %lld idx_pad %lld rank3 %d out_mis %d out_shift %lld pipeline %d seed %llu",
                  d_qk, h_q, static_cast<long long>(s_q), static_cast<long long>(s_kv), topk,
                  topk_length.size(), static_cast<int>(sink), invalid_frac,
                  static_cast<int>(q_layout), static_cast<long long>(kv_pad),
                  static_cast<long long>(idx_pad), rank3, out_misaligned,
                  static_cast<long long>(out_shift), static_cast<int>(pipeline), static_cast<unsigned long long>(seed));
    return buf;
  }
};

/// Outputs of one run, host side, contiguous: out [s_q, h_q, 512], max_logits / lse [s_q, h_q].
struct Outputs {
  std::vector<uint16_t> out;
  std::vector<float> max_logits;
  std::vector<float> lse;
};

/// Inputs on host and device with identical layouts, the CPU reference, device outputs with
/// poisoned guard regions.
class Problem {
 public:
  explicit Problem(const Case& c) : c_(c) {
    Rng rng(c.seed);
    const int d = c.d_qk;
    const int64_t h = c.h_q, s_q = c.s_q, s_kv = c.s_kv;
    sm_scale_ = std::isnan(c.sm_scale) ? static_cast<float>(1.0 / std::sqrt(double(d))) : c.sm_scale;

    // kv: one NaN guard row before and after the view, NaN pads, NaN in unreferenced rows.
    kv_stride_ = d + c.kv_pad;
    kv_host_.assign(static_cast<size_t>((s_kv + 2) * kv_stride_), kBf16NaN);
    std::vector<int64_t> used, unused;
    for (int64_t r = 0; r < s_kv; ++r) (rng.coin(c.used_frac) ? used : unused).push_back(r);
    if (used.empty()) used.push_back(rng.below(s_kv));
    std::sort(used.begin(), used.end());
    unused.clear();
    for (int64_t r = 0, u = 0; r < s_kv; ++r) {
      if (u < static_cast<int64_t>(used.size()) && used[u] == r) {
        ++u;
        uint16_t* row = kv_host_.data() + (r + 1) * kv_stride_;
        for (int k = 0; k < d; ++k) row[k] = float_to_bf16(rng.normal(c.sigma));
      } else {
        unused.push_back(r);
      }
    }

    // indices: positions at or past the token's length point at NaN rows where there are any.
    idx_stride_ = c.topk + c.idx_pad;
    const int32_t nan_row = unused.empty() ? -7 : static_cast<int32_t>(unused[0]);
    idx_host_.assign(static_cast<size_t>(s_q * idx_stride_), nan_row);
    if (!c.topk_length.empty()) {
      len_host_.resize(static_cast<size_t>(s_q));
      for (int64_t j = 0; j < s_q; ++j) len_host_[j] = c.topk_length[j % c.topk_length.size()];
    }
    auto pick_bad = [&] { return bad_value(c.flavours[rng.below(int64_t(c.flavours.size()))], s_kv); };
    auto pick_nan_or_bad = [&] {
      return !unused.empty() && rng.coin(0.7) ? static_cast<int32_t>(unused[rng.below(int64_t(unused.size()))])
                                              : pick_bad();
    };
    for (int64_t j = 0; j < s_q; ++j) {
      int32_t* row = idx_host_.data() + j * idx_stride_;
      const int64_t len = len_host_.empty() ? c.topk : std::clamp<int64_t>(len_host_[j], 0, c.topk);
      const bool none = std::find(c.all_invalid.begin(), c.all_invalid.end(), j) != c.all_invalid.end();
      const int64_t the_one = len > 0 ? rng.below(len) : -1;
      for (int64_t k = 0; k < c.topk; ++k) {
        int32_t v;
        if (k >= len) {
          v = pick_nan_or_bad();
        } else if (c.single_valid ? k != the_one : (none || rng.coin(c.invalid_frac))) {
          v = pick_bad();
        } else if (k > 0 && !c.single_valid && rng.coin(c.dup_frac) && row[k - 1] >= 0 &&
                   row[k - 1] < s_kv) {
          v = row[rng.below(k)];  // may itself be invalid: then it stays an invalid duplicate
        } else {
          v = static_cast<int32_t>(used[rng.below(int64_t(used.size()))]);
        }
        row[k] = v;
      }
    }

    // q in the requested layout, NaN in every gap.
    switch (c.q_layout) {
      case QLayout::kContiguous:
        q_stride_h_ = d;
        q_stride_s_ = h * d;
        q_offset_ = 0;
        break;
      case QLayout::kHeadMajor:  // [h_q][s_q][d_qk + 16]: transposed, padded, 16-byte aligned
        q_stride_s_ = d + 16;
        q_stride_h_ = s_q * (d + 16);
        q_offset_ = 0;
        break;
      case QLayout::kUnaligned:  // odd strides and a 2-byte offset: no vector loads possible
        q_stride_h_ = d + 3;
        q_stride_s_ = h * (d + 3) + 5;
        q_offset_ = 1;
        break;
    }
    const int64_t q_elems = q_offset_ + (s_q - 1) * q_stride_s_ + (h - 1) * q_stride_h_ + d;
    q_host_.assign(static_cast<size_t>(q_elems), kBf16NaN);
    for (int64_t j = 0; j < s_q; ++j) {
      for (int64_t hh = 0; hh < h; ++hh) {
        uint16_t* row = q_host_.data() + q_offset_ + j * q_stride_s_ + hh * q_stride_h_;
        for (int k = 0; k < d; ++k) row[k] = float_to_bf16(rng.normal(c.sigma));
      }
    }

    // attention sink around the typical lse (ln of the key count) so that it matters.
    if (c.sink != Sink::kNone) {
      sink_host_.resize(static_cast<size_t>(h));
      for (int64_t hh = 0; hh < h; ++hh) {
        const float finite = static_cast<float>(std::log(double(c.topk)) + 4.0 * (rng.uniform() - 0.5));
        Sink s = c.sink;
        if (s == Sink::kMixed) s = hh % 4 == 1 ? Sink::kPosInf : (hh % 4 == 2 ? Sink::kNegInf : Sink::kFinite);
        sink_host_[hh] = s == Sink::kFinite ? finite
                         : s == Sink::kPosInf ? std::numeric_limits<float>::infinity()
                                              : -std::numeric_limits<float>::infinity();
      }
    }

    // device copies, outputs with guards.
    q_dev_ = DeviceBuffer<uint16_t>(q_host_.size());
    q_dev_.upload(q_host_);
    kv_dev_ = DeviceBuffer<uint16_t>(kv_host_.size());
    kv_dev_.upload(kv_host_);
    idx_dev_ = DeviceBuffer<int32_t>(idx_host_.size());
    idx_dev_.upload(idx_host_);
    if (!len_host_.empty()) {
      len_dev_ = DeviceBuffer<int32_t>(len_host_.size());
      len_dev_.upload(len_host_);
    }
    if (!sink_host_.empty()) {
      sink_dev_ = DeviceBuffer<float>(sink_host_.size());
      sink_dev_.upload(sink_host_);
    }
    out_offset_ = kGuard + (c.out_misaligned ? 1 : 0) + c.out_shift;
    out_dev_ = DeviceBuffer<uint16_t>(static_cast<size_t>(out_elems() + 2 * kGuard + 1 + c.out_shift));
    ml_dev_ = DeviceBuffer<float>(static_cast<size_t>(rows() + 2 * kGuard));
    lse_dev_ = DeviceBuffer<float>(static_cast<size_t>(rows() + 2 * kGuard));
  }

  const Case& c() const { return c_; }
  float sm_scale() const { return sm_scale_; }
  int64_t rows() const { return c_.s_q * c_.h_q; }
  int64_t out_elems() const { return rows() * kDV; }
  /// kv row `r` of the view (host), d_qk values.
  const uint16_t* kv_row(int64_t r) const { return kv_host_.data() + (r + 1) * kv_stride_; }
  const int32_t* index_row(int64_t j) const { return idx_host_.data() + j * idx_stride_; }

  /// Overwrites kv row `r` of the view with NaN on host and device.
  void set_kv_row_nan(int64_t r) {
    std::fill_n(kv_host_.begin() + (r + 1) * kv_stride_, c_.d_qk, kBf16NaN);
    kv_dev_.upload(kv_host_);
  }

  /// The stale-reference case: every token's candidates invalid (-1) but kv row `a` at index 3
  /// (chunk 0) and row `b` at index 150 (chunk 2); row a all `v`, row b `v` but 0 in dim 0; q
  /// `c` in dim 0 of every head, 0 elsewhere. So a's logit is c v sm_scale, b's 0, and dims
  /// 1..511 of every exact output are v. Host and device copies.
  void set_two_key_rows(int32_t a, int32_t b, uint16_t c_bits, uint16_t v_bits) {
    std::fill_n(kv_host_.begin() + (a + 1) * kv_stride_, c_.d_qk, v_bits);
    std::fill_n(kv_host_.begin() + (b + 1) * kv_stride_, c_.d_qk, v_bits);
    kv_host_[(b + 1) * kv_stride_] = 0;
    for (int64_t j = 0; j < c_.s_q; ++j) {
      int32_t* row = idx_host_.data() + j * idx_stride_;
      std::fill_n(row, c_.topk, -1);
      row[3] = a;
      row[150] = b;
      for (int64_t hh = 0; hh < c_.h_q; ++hh) {
        uint16_t* qr = q_host_.data() + q_offset_ + j * q_stride_s_ + hh * q_stride_h_;
        std::fill_n(qr, c_.d_qk, uint16_t{0});
        qr[0] = c_bits;
      }
    }
    kv_dev_.upload(kv_host_);
    idx_dev_.upload(idx_host_);
    q_dev_.upload(q_host_);
  }

  /// Arguments over tokens [j0, j0 + n) with the given output pointers.
  SparsePrefillArgs args(Device dev, int64_t j0, int64_t n, uint16_t* out, float* ml, float* lse) const {
    const bool gpu = dev == Device::kCUDA;
    const uint16_t* q = (gpu ? q_dev_.get() : q_host_.data()) + q_offset_ + j0 * q_stride_s_;
    const uint16_t* kv = (gpu ? kv_dev_.get() : kv_host_.data()) + kv_stride_;
    const int32_t* idx = (gpu ? idx_dev_.get() : idx_host_.data()) + j0 * idx_stride_;
    const int64_t d = c_.d_qk, h = c_.h_q;
    auto cv = [](const void* p) { return const_cast<void*>(p); };
    SparsePrefillArgs a;
    a.q = TensorView::strided(cv(q), DType::kBF16, {n, h, d}, {q_stride_s_, q_stride_h_, 1}, dev);
    if (c_.rank3) {
      a.kv = TensorView::strided(cv(kv), DType::kBF16, {c_.s_kv, 1, d}, {kv_stride_, d, 1}, dev);
      a.indices = TensorView::strided(cv(idx), DType::kI32, {n, 1, c_.topk},
                                      {idx_stride_, c_.topk, 1}, dev);
    } else {
      a.kv = TensorView::strided(cv(kv), DType::kBF16, {c_.s_kv, d}, {kv_stride_, 1}, dev);
      a.indices = TensorView::strided(cv(idx), DType::kI32, {n, c_.topk}, {idx_stride_, 1}, dev);
    }
    if (!len_host_.empty()) {
      const int32_t* len = (gpu ? len_dev_.get() : len_host_.data()) + j0;
      a.topk_length = TensorView::contiguous(cv(len), DType::kI32, {n}, dev);
    }
    if (!sink_host_.empty()) {
      a.attn_sink = TensorView::contiguous(cv(gpu ? sink_dev_.get() : sink_host_.data()),
                                           DType::kF32, {h}, dev);
    }
    a.sm_scale = sm_scale_;
    a.out = TensorView::contiguous(out, DType::kBF16, {n, h, kDV}, dev);
    a.max_logits = TensorView::contiguous(ml, DType::kF32, {n, h}, dev);
    a.lse = TensorView::contiguous(lse, DType::kF32, {n, h}, dev);
    return a;
  }

  /// The CPU backend through the public API (validated), on the host copies.
  void run_reference() {
    ref_.out.assign(static_cast<size_t>(out_elems()), 0);
    ref_.max_logits.assign(static_cast<size_t>(rows()), 0.0f);
    ref_.lse.assign(static_cast<size_t>(rows()), 0.0f);
    sparse_prefill(args(Device::kCPU, 0, c_.s_q, ref_.out.data(), ref_.max_logits.data(),
                        ref_.lse.data()));
  }

  /// The portable kernel on the device copies: poison, run, synchronise, read back (the
  /// guards are checked by guards_intact()).
  Outputs run_gpu(PrefillPipeline pipeline) {
    out_dev_.poison();
    ml_dev_.poison();
    lse_dev_.poison();
    cuda::sparse_prefill_portable(
        args(Device::kCUDA, 0, c_.s_q, out_dev_.get() + out_offset_, ml_dev_.get() + kGuard,
             lse_dev_.get() + kGuard),
        sm_scale_, nullptr, pipeline);
    cuda_ok(cudaGetLastError(), "sparse_prefill_portable launch");
    cuda_ok(cudaDeviceSynchronize(), "sparse_prefill_portable");
    raw_out_ = out_dev_.download();
    raw_ml_ = ml_dev_.download();
    raw_lse_ = lse_dev_.download();
    Outputs o;
    o.out.assign(raw_out_.begin() + out_offset_, raw_out_.begin() + out_offset_ + out_elems());
    o.max_logits.assign(raw_ml_.begin() + kGuard, raw_ml_.begin() + kGuard + rows());
    o.lse.assign(raw_lse_.begin() + kGuard, raw_lse_.begin() + kGuard + rows());
    return o;
  }

  /// The last run wrote nothing outside its output views.
  bool guards_intact() const {
    auto poisoned16 = [](uint16_t v) { return v == 0xFFFFu; };
    auto poisoned32 = [](float v) {
      uint32_t u;
      std::memcpy(&u, &v, sizeof u);
      return u == 0xFFFFFFFFu;
    };
    for (int64_t k = 0; k < out_offset_; ++k) if (!poisoned16(raw_out_[k])) return false;
    for (size_t k = static_cast<size_t>(out_offset_ + out_elems()); k < raw_out_.size(); ++k) {
      if (!poisoned16(raw_out_[k])) return false;
    }
    for (const auto* v : {&raw_ml_, &raw_lse_}) {
      for (int64_t k = 0; k < kGuard; ++k) {
        if (!poisoned32((*v)[k]) || !poisoned32((*v)[kGuard + rows() + k])) return false;
      }
    }
    return true;
  }

  const Outputs& ref() const { return ref_; }

  /// The kernel family a kAuto call runs on this problem (prefill_kernel_name).
  std::string kernel_name() const {
    return prefill_kernel_name(args(Device::kCUDA, 0, c_.s_q, out_dev_.get() + out_offset_, ml_dev_.get() + kGuard,
                                    lse_dev_.get() + kGuard));
  }

 private:
  Case c_;
  float sm_scale_ = 0.0f;
  std::vector<uint16_t> q_host_, kv_host_;
  std::vector<int32_t> idx_host_, len_host_;
  std::vector<float> sink_host_;
  int64_t q_stride_s_ = 0, q_stride_h_ = 0, q_offset_ = 0, kv_stride_ = 0, idx_stride_ = 0;
  int64_t out_offset_ = 0;
  DeviceBuffer<uint16_t> q_dev_, kv_dev_, out_dev_;
  DeviceBuffer<int32_t> idx_dev_, len_dev_;
  DeviceBuffer<float> sink_dev_, ml_dev_, lse_dev_;
  std::vector<uint16_t> raw_out_;
  std::vector<float> raw_ml_, raw_lse_;
  Outputs ref_;
};

// ---------------------------------------------------------------------------------------------
// Comparison (streaming, so the 287M outputs of the s_q = 70000 case need no double copies):
// the rule of bench::compare_values. NaN never passes; infinities must match exactly.
struct Verdict {
  bool pass = true;
  std::string detail;
};

/// `nan_where_ref_nan`: ours may be NaN exactly where the reference is (NaN inputs).
template <class Ours, class Ref>
Verdict compare(const char* name, int64_t n, Ours ours, Ref ref, const bench::Tolerance& tol,
                bool nan_where_ref_nan = false) {
  int64_t over = 0, nans = 0, worst = -1;
  double max_abs = 0.0, worst_ratio = -1.0, dot = 0.0, norms = 0.0;
  for (int64_t i = 0; i < n; ++i) {
    const double o = ours(i), r = ref(i);
    bool bad = false;
    double ratio = 0.0;
    if (std::isnan(o) && std::isnan(r) && nan_where_ref_nan) {
      ratio = 0.0;
    } else if (std::isnan(o)) {
      ++nans;
      bad = true;
      ratio = INFINITY;
    } else if (std::isinf(o) || std::isinf(r) || std::isnan(r)) {
      bad = !(o == r);
      ratio = bad ? INFINITY : 0.0;
    } else {
      const double err = std::fabs(o - r);
      const double bound = tol.either ? std::max(tol.abs, tol.rel * std::fabs(r))
                                      : tol.abs + tol.rel * std::fabs(r);
      bad = !(err <= bound);
      ratio = bound > 0.0 ? err / bound : (err > 0.0 ? INFINITY : 0.0);
      max_abs = std::max(max_abs, err);
      dot += o * r;
      norms += o * o + r * r;
    }
    if (bad) ++over;
    if (ratio > worst_ratio) {
      worst_ratio = ratio;
      worst = i;
    }
  }
  const double cosine = norms > 0.0 ? 1.0 - 2.0 * dot / norms : 0.0;
  Verdict v;
  v.pass = over == 0 && nans == 0 && (tol.cosine <= 0.0 || cosine < tol.cosine);
  char buf[512];
  std::snprintf(buf, sizeof buf,
                "%s: %lld of %lld over tolerance (%s), %lld NaN, max abs err %.3g, cosine "
                "distance %.3g, worst [%lld]: ours %.9g ref %.9g",
                name, static_cast<long long>(over), static_cast<long long>(n),
                tol.describe().c_str(), static_cast<long long>(nans), max_abs, cosine,
                static_cast<long long>(worst), worst >= 0 ? double(ours(worst)) : 0.0,
                worst >= 0 ? double(ref(worst)) : 0.0);
  v.detail = buf;
  return v;
}

void expect_close(const Outputs& ours, const Outputs& ref, bool nan_where_ref_nan = false) {
  ASSERT_EQ(ours.out.size(), ref.out.size());
  const Verdict out = compare(
      "out", static_cast<int64_t>(ref.out.size()), [&](int64_t i) { return double(bf16_to_float(ours.out[i])); },
      [&](int64_t i) { return double(bf16_to_float(ref.out[i])); }, bench::kPrefillOutTolerance,
      nan_where_ref_nan);
  EXPECT_TRUE(out.pass) << out.detail;
  const Verdict ml = compare(
      "max_logits", static_cast<int64_t>(ref.max_logits.size()), [&](int64_t i) { return double(ours.max_logits[i]); },
      [&](int64_t i) { return double(ref.max_logits[i]); }, kStatTolerance, nan_where_ref_nan);
  EXPECT_TRUE(ml.pass) << ml.detail;
  const Verdict lse = compare(
      "lse", static_cast<int64_t>(ref.lse.size()), [&](int64_t i) { return double(ours.lse[i]); },
      [&](int64_t i) { return double(ref.lse[i]); }, kStatTolerance, nan_where_ref_nan);
  EXPECT_TRUE(lse.pass) << lse.detail;
}

bool bitwise_equal(const Outputs& a, const Outputs& b) {
  return a.out.size() == b.out.size() && a.lse.size() == b.lse.size() &&
         std::memcmp(a.out.data(), b.out.data(), a.out.size() * sizeof(uint16_t)) == 0 &&
         std::memcmp(a.max_logits.data(), b.max_logits.data(), a.max_logits.size() * sizeof(float)) == 0 &&
         std::memcmp(a.lse.data(), b.lse.data(), a.lse.size() * sizeof(float)) == 0;
}

/// Reference, one GPU run with the case's pipeline, tolerance and guard checks.
Outputs run_case(const Case& c) {
  SCOPED_TRACE(c.name());
  Problem p(c);
  p.run_reference();
  Outputs o = p.run_gpu(c.pipeline);
  EXPECT_TRUE(p.guards_intact()) << "a write outside the output views";
  expect_close(o, p.ref());
  return o;
}

uint64_t seed_of(int a, int b, int c) { return uint64_t(a) * 1000003u + uint64_t(b) * 1009u + uint64_t(c); }

// ---------------------------------------------------------------------------------------------
TEST(PrefillCuda, HeadDimsHeadCountsAndTopk) {
  SKIP_WITHOUT_GPU();
  for (int d : {512, 576}) {
    for (int h : {8, 16, 32, 64, 128}) {
      for (int topk : {1, 37, 64, 129, 512}) {
        Case c;
        c.d_qk = d;
        c.h_q = h;
        c.topk = topk;
        c.s_q = 3;
        c.s_kv = 1000;
        c.sink = (h + topk) % 2 == 0 ? Sink::kFinite : Sink::kNone;
        c.seed = seed_of(d, h, topk);
        run_case(c);
      }
    }
  }
}

TEST(PrefillCuda, TopkLengthAbsentPartialZeroNegativeAboveTopk) {
  SKIP_WITHOUT_GPU();
  for (int d : {512, 576}) {
    for (int h : {8, 64}) {
      Case c;
      c.d_qk = d;
      c.h_q = h;
      c.topk = 129;
      c.s_q = 12;
      c.topk_length = {0, 1, 63, 64, 65, 128, 129, 500, -1, INT_MIN, INT_MAX, 37};
      c.seed = seed_of(d, h, 1);
      run_case(c);
    }
  }
}

TEST(PrefillCuda, AttentionSink) {
  SKIP_WITHOUT_GPU();
  for (Sink s : {Sink::kNone, Sink::kFinite, Sink::kPosInf, Sink::kNegInf, Sink::kMixed}) {
    for (int h : {16, 64}) {
      Case c;
      c.h_q = h;
      c.topk = 64;
      c.s_q = 4;
      c.sink = s;
      c.all_invalid = {1};
      c.seed = seed_of(int(s), h, 2);
      run_case(c);
    }
  }
}

TEST(PrefillCuda, EachInvalidIndexFlavour) {
  SKIP_WITHOUT_GPU();
  for (Bad bad : kAllBad) {
    Case c;
    c.d_qk = 576;
    c.h_q = 32;
    c.topk = 129;
    c.s_q = 5;
    c.invalid_frac = 0.4;
    c.flavours = {bad};
    c.all_invalid = {2};
    c.seed = seed_of(int(bad), 0, 3);
    run_case(c);
  }
}

TEST(PrefillCuda, RowsWithNoValidKey) {
  SKIP_WITHOUT_GPU();
  Case c;
  c.h_q = 64;
  c.topk = 129;
  c.s_q = 6;
  c.all_invalid = {0, 3, 5};
  c.topk_length = {129, 0, 50, 129, -4, 129};
  c.sink = Sink::kMixed;
  c.seed = 4;
  const Outputs o = run_case(c);
  for (int64_t j : {0, 1, 3, 4, 5}) {
    for (int h = 0; h < c.h_q; ++h) {
      const int64_t row = j * c.h_q + h;
      EXPECT_EQ(o.max_logits[row], -INFINITY) << "token " << j << " head " << h;
      EXPECT_EQ(o.lse[row], INFINITY) << "token " << j << " head " << h;
      for (int k = 0; k < kDV; ++k) ASSERT_EQ(o.out[row * kDV + k], 0) << "token " << j << " head " << h;
    }
  }
}

TEST(PrefillCuda, NaNInUnreferencedKvRowsAndDuplicates) {
  SKIP_WITHOUT_GPU();
  for (int d : {512, 576}) {
    Case c;
    c.d_qk = d;
    c.h_q = 64;
    c.topk = 129;
    c.s_q = 5;
    c.used_frac = 0.03;  // ~30 live rows of 1000, every other row NaN; many duplicates
    c.dup_frac = 0.5;
    c.topk_length = {129, 3, 100, 0, 65};
    c.seed = seed_of(d, 0, 5);
    run_case(c);
    c.used_frac = 1e-9;  // one live row: every valid candidate is the same key
    c.seed += 1;
    run_case(c);
  }
}

TEST(PrefillCuda, NaNInAReferencedKeyPropagates) {
  // Garbage in a key that is used must show (NaN out and lse), never pass for an empty row.
  SKIP_WITHOUT_GPU();
  Case c;
  c.h_q = 32;
  c.topk = 100;
  c.s_q = 4;
  c.seed = 15;
  SCOPED_TRACE(c.name());
  Problem p(c);
  int64_t key = -1;
  for (int k = 0; k < c.topk && key < 0; ++k) {
    const int32_t v = p.index_row(0)[k];
    if (v >= 0 && v < c.s_kv) key = v;
  }
  ASSERT_GE(key, 0);
  p.set_kv_row_nan(key);
  p.run_reference();
  const Outputs o = p.run_gpu(PrefillPipeline::kAuto);
  EXPECT_TRUE(p.guards_intact());
  expect_close(o, p.ref(), /*nan_where_ref_nan=*/true);
  for (int64_t j = 0; j < c.s_q; ++j) {
    const int32_t* idx = p.index_row(j);
    if (std::find(idx, idx + c.topk, static_cast<int32_t>(key)) == idx + c.topk) continue;
    for (int h = 0; h < c.h_q; ++h) {
      EXPECT_TRUE(std::isnan(o.lse[j * c.h_q + h])) << "token " << j << " head " << h;
      EXPECT_TRUE(std::isnan(bf16_to_float(o.out[(j * c.h_q + h) * kDV]))) << "token " << j << " head " << h;
    }
  }
}

TEST(PrefillCuda, FewerKvRowsThanTopk) {
  SKIP_WITHOUT_GPU();
  for (int64_t s_kv : {1, 50}) {
    Case c;
    c.h_q = 64;
    c.topk = 512;
    c.s_kv = s_kv;
    c.s_q = 3;
    c.used_frac = 0.7;
    c.sink = Sink::kFinite;
    c.seed = seed_of(int(s_kv), 0, 6);
    run_case(c);
  }
}

TEST(PrefillCuda, SingleValidKeyGivesTheKeyExactly) {
  // One valid candidate among invalid ones (spread over three chunks): p = exp2(0) = 1 and every
  // other contribution is an exact 0, so out must be the key's first 512 values bit for bit
  // and lse == max_logits: checks the gather, the swizzled tiles and the masks exactly.
  SKIP_WITHOUT_GPU();
  for (int d : {512, 576}) {
    for (int h : {8, 32, 128}) {
      Case c;
      c.d_qk = d;
      c.h_q = h;
      c.topk = 150;
      c.s_q = 7;
      c.single_valid = true;
      c.seed = seed_of(d, h, 7);
      SCOPED_TRACE(c.name());
      Problem p(c);
      p.run_reference();
      const Outputs o = p.run_gpu(PrefillPipeline::kAuto);
      EXPECT_TRUE(p.guards_intact());
      expect_close(o, p.ref());
      for (int64_t j = 0; j < c.s_q; ++j) {
        const int32_t* idx = p.index_row(j);
        int64_t key = -1;
        for (int k = 0; k < c.topk; ++k) {
          if (idx[k] >= 0 && idx[k] < c.s_kv) key = idx[k];
        }
        ASSERT_GE(key, 0);
        const uint16_t* kv = p.kv_row(key);
        for (int hh = 0; hh < h; ++hh) {
          const int64_t row = j * h + hh;
          ASSERT_EQ(std::memcmp(o.out.data() + row * kDV, kv, kDV * sizeof(uint16_t)), 0)
              << "token " << j << " head " << hh << " key " << key;
          EXPECT_EQ(o.lse[row], o.max_logits[row]) << "token " << j << " head " << hh;
        }
      }
    }
  }
}

TEST(PrefillCuda, NonContiguousAndUnalignedViews) {
  SKIP_WITHOUT_GPU();
  for (int d : {512, 576}) {
    Case c;
    c.d_qk = d;
    c.h_q = 32;
    c.topk = 100;
    c.s_q = 5;
    c.topk_length = {100, 12, 0, 99, 7};
    c.q_layout = QLayout::kHeadMajor;
    c.kv_pad = 64;
    c.idx_pad = 7;
    c.rank3 = true;
    c.seed = seed_of(d, 0, 8);
    run_case(c);
    // Odd strides everywhere: the kernels' scalar fallbacks (q loads, kv gathers, out stores).
    c.q_layout = QLayout::kUnaligned;
    c.kv_pad = 3;
    c.idx_pad = 1;
    c.rank3 = false;
    c.out_misaligned = true;
    c.h_q = 128;
    c.sink = Sink::kFinite;
    c.seed += 1;
    run_case(c);
  }
}

TEST(PrefillCuda, LargerMagnitudesAndExplicitScale) {
  SKIP_WITHOUT_GPU();
  Case c;
  c.h_q = 64;
  c.topk = 129;
  c.s_q = 4;
  c.sigma = 1.0f;  // logits of several units: peaked softmax, rescaling across chunks
  c.sink = Sink::kFinite;
  c.seed = 9;
  run_case(c);
  Case e;
  e.d_qk = 576;
  e.h_q = 16;
  e.topk = 200;
  e.s_q = 4;
  e.sm_scale = 0.2f;
  e.sigma = 0.5f;
  e.seed = 10;
  run_case(e);
}

TEST(PrefillCuda, LateMaximumStillNormalisesExactly) {
  // Two valid keys per token whose value rows agree in dims 1..511; the row's maximum arrives
  // two chunks after a key 2^-g as heavy. Exact weights sum to 1, so out must be exactly v
  // there, and max_logits the true maximum (0), whatever reference the softmax kept on the
  // way: a kernel that kept the first key's logit as its reference (P = 2^g, rounded to bf16)
  // and divided by the unrounded sum fails this (docs/experiments/2026-12-01-lazy-rowsum-
  // wgmma.patch, PERF.md).
  SKIP_WITHOUT_GPU();
  const uint16_t v_bits = float_to_bf16(1.875f);
  for (int d : {512, 576}) {
    for (int h : {64, 128}) {
      Case c;
      c.d_qk = d;
      c.h_q = h;
      c.topk = 192;
      c.s_q = 3;
      c.seed = seed_of(d, h, 23);
      SCOPED_TRACE(c.name());
      Problem p(c);
      const uint16_t q_bits = cuda_test::stale_reference_q(1.875f, p.sm_scale());  // for set_two_key_rows
      ASSERT_NE(q_bits, 0);
      p.set_two_key_rows(10, 20, q_bits, v_bits);
      p.run_reference();
      const Outputs o = p.run_gpu(PrefillPipeline::kAuto);
      EXPECT_TRUE(p.guards_intact());
      expect_close(o, p.ref());
      int64_t diffs = 0;
      for (int64_t row = 0; row < p.rows(); ++row) {
        for (int k = 1; k < kDV; ++k) diffs += o.out[row * kDV + k] != v_bits;
        EXPECT_EQ(o.max_logits[row], 0.0f) << "row " << row;
      }
      EXPECT_EQ(diffs, 0) << "outputs not exactly " << bf16_to_float(v_bits);
    }
  }
}

TEST(PrefillCuda, SingleAndDoubleBufferedPipelinesAgreeBitwise) {
  SKIP_WITHOUT_GPU();
  for (int d : {512, 576}) {
    for (int h : {16, 32, 128}) {
      Case c;
      c.d_qk = d;
      c.h_q = h;
      c.topk = 200;
      c.s_q = 4;
      c.topk_length = {200, 64, 65, 1};
      c.sink = Sink::kFinite;
      c.seed = seed_of(d, h, 11);
      SCOPED_TRACE(c.name());
      // NOTE: on GPUs with less shared memory per block (A100, consumer parts) the forced
      // double-buffered tiles cannot launch; the automatic choice covers those devices.
      int device = 0, optin = 0;
      ASSERT_EQ(cudaGetDevice(&device), cudaSuccess);
      ASSERT_EQ(cudaDeviceGetAttribute(&optin, cudaDevAttrMaxSharedMemoryPerBlockOptin, device),
                cudaSuccess);
      if (cuda::sparse_prefill_portable_smem_bytes(d, h, PrefillPipeline::kDoubleBuffered) > optin) {
        std::cout << "[ INFO     ] " << c.name() << ": double-buffered tiles exceed this GPU's "
                  << optin << " B of shared memory per block; pair not compared\n";
        continue;
      }
      Problem p(c);
      p.run_reference();
      const Outputs two = p.run_gpu(PrefillPipeline::kDoubleBuffered);
      EXPECT_TRUE(p.guards_intact());
      expect_close(two, p.ref());
      const Outputs one = p.run_gpu(PrefillPipeline::kSingleBuffered);
      EXPECT_TRUE(p.guards_intact());
      expect_close(one, p.ref());
      EXPECT_TRUE(bitwise_equal(one, two)) << "single- and double-buffered results differ";
    }
  }
}

TEST(PrefillCuda, RepeatedRunsAreBitwiseEqual) {
  SKIP_WITHOUT_GPU();
  Case c;
  c.d_qk = 576;
  c.h_q = 128;
  c.topk = 300;
  c.s_q = 9;
  c.topk_length = {300, 12, 0, 299, 7, 64, 129, 256, 1};
  c.sink = Sink::kFinite;
  c.seed = 12;
  SCOPED_TRACE(c.name());
  Problem p(c);
  p.run_reference();
  const Outputs first = p.run_gpu(PrefillPipeline::kAuto);
  expect_close(first, p.ref());
  for (int run = 1; run < 3; ++run) {
    const Outputs again = p.run_gpu(PrefillPipeline::kAuto);
    EXPECT_TRUE(p.guards_intact());
    EXPECT_TRUE(bitwise_equal(first, again)) << "run " << run << " differs from run 0";
  }
}

TEST(PrefillCuda, BatchInvariance) {
  // A token computed alone (s_q = 1, views into the same inputs) gives bitwise the outputs it
  // gets inside a batch of 300.
  SKIP_WITHOUT_GPU();
  Case c;
  c.d_qk = 576;
  c.h_q = 64;
  c.topk = 129;
  c.s_q = 300;
  c.topk_length = {129, 70, 1, 0, 128};
  c.sink = Sink::kFinite;
  c.seed = 13;
  SCOPED_TRACE(c.name());
  Problem p(c);
  p.run_reference();
  const Outputs all = p.run_gpu(PrefillPipeline::kAuto);
  expect_close(all, p.ref());
  const int64_t h = c.h_q;
  DeviceBuffer<uint16_t> out(static_cast<size_t>(h * kDV));
  DeviceBuffer<float> ml(static_cast<size_t>(h)), lse(static_cast<size_t>(h));
  for (int64_t j : {0, 1, 2, 3, 150, 299}) {
    out.poison();
    ml.poison();
    lse.poison();
    cuda::sparse_prefill_portable(p.args(Device::kCUDA, j, 1, out.get(), ml.get(), lse.get()),
                                  p.sm_scale(), nullptr, PrefillPipeline::kAuto);
    cuda_ok(cudaDeviceSynchronize(), "sparse_prefill_portable");
    const auto o = out.download();
    const auto m = ml.download();
    const auto l = lse.download();
    EXPECT_EQ(std::memcmp(o.data(), all.out.data() + j * h * kDV, o.size() * sizeof(uint16_t)), 0)
        << "out of token " << j;
    EXPECT_EQ(std::memcmp(m.data(), all.max_logits.data() + j * h, m.size() * sizeof(float)), 0)
        << "max_logits of token " << j;
    EXPECT_EQ(std::memcmp(l.data(), all.lse.data() + j * h, l.size() * sizeof(float)), 0)
        << "lse of token " << j;
  }
}

TEST(PrefillCuda, SeventyThousandQueryTokens) {
  // More tokens than a grid's y or z extent allows (65535): the token is blockIdx.x.
  SKIP_WITHOUT_GPU();
  Case c;
  c.d_qk = 512;
  c.h_q = 8;
  c.topk = 16;
  c.s_q = 70000;
  c.s_kv = 4096;
  c.topk_length = {16, 5, 0, 16, 9, 1, 100};
  c.seed = 14;
  run_case(c);
}

// ---- the compact configuration (16 heads per CTA, one key tile: 99 KiB devices) ----------

TEST(PrefillCuda, CompactConfigurationFitsNinetyNineKiB) {
  // sm_86/89/120 offer 101376 bytes per block; the fallback must fit there for every h_q.
  for (int d : {512, 576}) {
    for (int h : {8, 16, 32, 64, 128}) {
      const int bytes = cuda::sparse_prefill_portable_smem_bytes(d, h, PrefillPipeline::kCompact);
      EXPECT_LE(bytes, 101376) << "d_qk " << d << " h_q " << h;
      EXPECT_EQ(bytes, cuda::sparse_prefill_portable_smem_bytes(d, 16, PrefillPipeline::kSingleBuffered))
          << "the compact kernel is the 16-row single-buffered one (d_qk " << d << ")";
    }
  }
  EXPECT_EQ(cuda::sparse_prefill_portable_smem_bytes(512, 128, PrefillPipeline::kCompact), 85184);
  EXPECT_EQ(cuda::sparse_prefill_portable_smem_bytes(576, 128, PrefillPipeline::kCompact), 95424);
  try {
    cuda::sparse_prefill_portable_smem_bytes(576, 48, PrefillPipeline::kCompact);
    FAIL() << "no error for h_q 48";
  } catch (const Error& e) {
    EXPECT_EQ(e.argument(), "q.shape");
  }
}

TEST(PrefillCuda, CompactConfigurationAgainstCpu) {
  SKIP_WITHOUT_GPU();
  for (int d : {512, 576}) {
    for (int h : {8, 16, 32, 64, 128}) {
      for (int topk : {1, 129, 300}) {
        Case c;
        c.d_qk = d;
        c.h_q = h;
        c.topk = topk;
        c.s_q = 5;
        c.s_kv = 1000;
        c.topk_length = {topk, 0, 65, -3, 64};
        c.all_invalid = {3};
        const int pick = (h / 8 + topk) % 3;
        c.sink = pick == 0 ? Sink::kMixed : (pick == 1 ? Sink::kFinite : Sink::kNone);
        c.pipeline = PrefillPipeline::kCompact;
        c.seed = seed_of(d, h, topk + 17);
        run_case(c);
      }
    }
  }
}

TEST(PrefillCuda, CompactConfigurationRowsWithNoValidKeyAndNaN) {
  SKIP_WITHOUT_GPU();
  for (int d : {512, 576}) {
    Case c;
    c.d_qk = d;
    c.h_q = 128;
    c.topk = 129;
    c.s_q = 6;
    c.all_invalid = {0, 3, 5};
    c.topk_length = {129, 0, 50, 129, -4, 129};
    c.sink = Sink::kMixed;
    c.used_frac = 0.03;  // ~30 live rows, every other row NaN; many duplicates
    c.dup_frac = 0.5;
    c.pipeline = PrefillPipeline::kCompact;
    c.seed = seed_of(d, 128, 18);
    const Outputs o = run_case(c);
    for (int64_t j : {0, 1, 3, 4, 5}) {
      for (int h = 0; h < c.h_q; ++h) {
        const int64_t row = j * c.h_q + h;
        EXPECT_EQ(o.max_logits[row], -INFINITY) << "token " << j << " head " << h;
        EXPECT_EQ(o.lse[row], INFINITY) << "token " << j << " head " << h;
        for (int k = 0; k < kDV; ++k) ASSERT_EQ(o.out[row * kDV + k], 0) << "token " << j << " head " << h;
      }
    }
  }
  // A NaN in a referenced key reaches every head of the tokens naming it (all head groups).
  Case c;
  c.d_qk = 576;
  c.h_q = 64;
  c.topk = 100;
  c.s_q = 4;
  c.pipeline = PrefillPipeline::kCompact;
  c.seed = 19;
  SCOPED_TRACE(c.name());
  Problem p(c);
  int64_t key = -1;
  for (int k = 0; k < c.topk && key < 0; ++k) {
    const int32_t v = p.index_row(0)[k];
    if (v >= 0 && v < c.s_kv) key = v;
  }
  ASSERT_GE(key, 0);
  p.set_kv_row_nan(key);
  p.run_reference();
  const Outputs o = p.run_gpu(PrefillPipeline::kCompact);
  EXPECT_TRUE(p.guards_intact());
  expect_close(o, p.ref(), /*nan_where_ref_nan=*/true);
  for (int64_t j = 0; j < c.s_q; ++j) {
    const int32_t* idx = p.index_row(j);
    if (std::find(idx, idx + c.topk, static_cast<int32_t>(key)) == idx + c.topk) continue;
    for (int h = 0; h < c.h_q; ++h) {
      EXPECT_TRUE(std::isnan(o.lse[j * c.h_q + h])) << "token " << j << " head " << h;
      EXPECT_TRUE(std::isnan(bf16_to_float(o.out[(j * c.h_q + h) * kDV]))) << "token " << j << " head " << h;
    }
  }
}

TEST(PrefillCuda, CompactConfigurationNonContiguousAndUnalignedViews) {
  SKIP_WITHOUT_GPU();
  for (QLayout layout : {QLayout::kHeadMajor, QLayout::kUnaligned}) {
    Case c;
    c.d_qk = 576;
    c.h_q = 32;
    c.topk = 70;
    c.s_q = 3;
    c.q_layout = layout;
    c.kv_pad = layout == QLayout::kUnaligned ? 1 : 8;
    c.idx_pad = 3;
    c.out_misaligned = layout == QLayout::kUnaligned;
    c.sink = Sink::kFinite;
    c.pipeline = PrefillPipeline::kCompact;
    c.seed = seed_of(int(layout), 32, 20);
    run_case(c);
  }
}

TEST(PrefillCuda, CompactConfigurationIsTheSixteenHeadKernel) {
  // For h_q 8 and 16 the compact configuration is the single-buffered one: bitwise equal.
  SKIP_WITHOUT_GPU();
  for (int d : {512, 576}) {
    for (int h : {8, 16}) {
      Case c;
      c.d_qk = d;
      c.h_q = h;
      c.topk = 200;
      c.s_q = 4;
      c.topk_length = {200, 64, 65, 1};
      c.sink = Sink::kFinite;
      c.seed = seed_of(d, h, 21);
      SCOPED_TRACE(c.name());
      Problem p(c);
      p.run_reference();
      const Outputs one = p.run_gpu(PrefillPipeline::kSingleBuffered);
      const Outputs compact = p.run_gpu(PrefillPipeline::kCompact);
      EXPECT_TRUE(p.guards_intact());
      expect_close(compact, p.ref());
      EXPECT_TRUE(bitwise_equal(one, compact)) << "compact and single-buffered results differ";
    }
  }
}

TEST(PrefillCuda, CompactConfigurationRepeatableAndBatchInvariant) {
  SKIP_WITHOUT_GPU();
  Case c;
  c.d_qk = 576;
  c.h_q = 128;
  c.topk = 129;
  c.s_q = 40;
  c.topk_length = {129, 70, 1, 0, 128, 12, 300};
  c.sink = Sink::kFinite;
  c.seed = 22;
  SCOPED_TRACE(c.name());
  Problem p(c);
  p.run_reference();
  const Outputs all = p.run_gpu(PrefillPipeline::kCompact);
  expect_close(all, p.ref());
  const Outputs again = p.run_gpu(PrefillPipeline::kCompact);
  EXPECT_TRUE(p.guards_intact());
  EXPECT_TRUE(bitwise_equal(all, again)) << "a second compact run differs";
  const int64_t h = c.h_q;
  DeviceBuffer<uint16_t> out(static_cast<size_t>(h * kDV));
  DeviceBuffer<float> ml(static_cast<size_t>(h)), lse(static_cast<size_t>(h));
  for (int64_t j : {0, 1, 2, 3, 20, 39}) {
    out.poison();
    ml.poison();
    lse.poison();
    cuda::sparse_prefill_portable(p.args(Device::kCUDA, j, 1, out.get(), ml.get(), lse.get()),
                                  p.sm_scale(), nullptr, PrefillPipeline::kCompact);
    cuda_ok(cudaDeviceSynchronize(), "sparse_prefill_portable");
    const auto o = out.download();
    const auto m = ml.download();
    const auto l = lse.download();
    EXPECT_EQ(std::memcmp(o.data(), all.out.data() + j * h * kDV, o.size() * sizeof(uint16_t)), 0)
        << "out of token " << j;
    EXPECT_EQ(std::memcmp(m.data(), all.max_logits.data() + j * h, m.size() * sizeof(float)), 0)
        << "max_logits of token " << j;
    EXPECT_EQ(std::memcmp(l.data(), all.lse.data() + j * h, l.size() * sizeof(float)), 0)
        << "lse of token " << j;
  }
}

// ---- the Hopper (sm_90a) kernel ------------------------------------------------------------
/// MODEL1_CUDA_PREFILL_CONFIG=compact: the automatic choice is the compact configuration.
bool compact_forced() {
  const char* config = std::getenv("MODEL1_CUDA_PREFILL_CONFIG");
  return config != nullptr && std::string(config) == "compact";
}

/// True on an sm_90 GPU where the automatic choice may take the sm_90a kernel (a build with
/// it, MODEL1_CUDA_PREFILL_KERNEL not forcing the portable kernels).
bool sm90_expected() {
  const char* forced = std::getenv("MODEL1_CUDA_PREFILL_KERNEL");
  if (forced != nullptr && std::string(forced) == "portable") return false;
  if (compact_forced()) return false;
  int major = 0, minor = 0;
  cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, 0);
  cudaDeviceGetAttribute(&minor, cudaDevAttrComputeCapabilityMinor, 0);
  const std::vector<std::string> archs = cuda_archs_compiled();
  const bool built = std::find(archs.begin(), archs.end(), "sm_90a") != archs.end();
  return built && major == 9 && minor == 0;
}

// Shapes the sm_90a kernel serves (64 / 128 heads, aligned kv rows) run it on sm_90 GPUs and
// the portable kernels elsewhere; the rest always run the portable kernels.
TEST(PrefillCuda, KernelNameFollowsShapes) {
  SKIP_WITHOUT_GPU();
  const bool hopper = sm90_expected();
  for (int d : {512, 576}) {
    for (int h : {16, 64, 128}) {
      for (int64_t kv_pad : {int64_t{0}, int64_t{3}}) {
        Case c;
        c.d_qk = d;
        c.h_q = h;
        c.topk = 64;
        c.kv_pad = kv_pad;  // d_qk + 3: rows no longer 16-byte aligned
        SCOPED_TRACE(c.name());
        Problem p(c);
        const bool sm90 = hopper && h >= 64 && kv_pad == 0;
        EXPECT_EQ(p.kernel_name(), sm90 ? "sm90a" : (compact_forced() ? "portable-compact" : "portable"));
      }
    }
  }
}

// The sanitizer set (scripts/gpu-check runs compute-sanitizer on PrefillCudaSmall.*): both
// head dims and head counts of the sm_90a kernel with a partial top-k length, invalid indices
// and the sink, then the same problems on the portable kernel.
TEST(PrefillCudaSmall, HopperShapesAutoAndPortable) {
  SKIP_WITHOUT_GPU();
  for (int d : {512, 576}) {
    for (int h : {64, 128}) {
      for (PrefillPipeline pipe : {PrefillPipeline::kAuto, PrefillPipeline::kDoubleBuffered}) {
        Case c;
        c.d_qk = d;
        c.h_q = h;
        c.topk = 150;
        c.s_q = 3;
        c.s_kv = 400;
        c.topk_length = {150, 70, 0};
        c.invalid_frac = 0.2;
        c.sink = Sink::kFinite;
        c.pipeline = pipe;
        c.seed = seed_of(d, h, static_cast<int>(pipe));
        run_case(c);
      }
      // The sm_90a epilogue's other store paths: out 4-byte but not 16-byte aligned, and out
      // 2 bytes off a 4-byte boundary.
      for (int shift : {2, 0}) {
        Case c;
        c.d_qk = d;
        c.h_q = h;
        c.topk = 70;
        c.s_q = 2;
        c.s_kv = 300;
        c.sink = Sink::kFinite;
        c.out_shift = shift;
        c.out_misaligned = shift == 0;
        c.seed = seed_of(d, h, 7 + shift);
        run_case(c);
      }
      // Q through the producer's copies (strided, aligned: head-major) and through the
      // consumers' scalar loads (unaligned rows), with aligned kv: still the sm_90a kernel.
      for (QLayout ql : {QLayout::kHeadMajor, QLayout::kUnaligned}) {
        Case c;
        c.d_qk = d;
        c.h_q = h;
        c.topk = 90;
        c.s_q = 3;
        c.s_kv = 250;
        c.q_layout = ql;
        c.sink = Sink::kFinite;
        c.seed = seed_of(d, h, 20 + static_cast<int>(ql));
        run_case(c);
      }
    }
  }
}

// Case c on the GPU with the default grid matches the CPU backend, and under each CTA cap in
// `caps` (MODEL1_CUDA_PREFILL_CTAS) gives bitwise the same outputs, guards intact each time.
void expect_any_cta_cap_same(const Case& c, std::initializer_list<const char*> caps) {
  Problem p(c);
  p.run_reference();
  const Outputs full = p.run_gpu(PrefillPipeline::kAuto);
  expect_close(full, p.ref());
  EXPECT_TRUE(p.guards_intact());
  for (const char* cap : caps) {
    SCOPED_TRACE(std::string("MODEL1_CUDA_PREFILL_CTAS=") + cap);
    const ScopedEnv env("MODEL1_CUDA_PREFILL_CTAS", cap);
    const Outputs capped = p.run_gpu(PrefillPipeline::kAuto);
    EXPECT_TRUE(p.guards_intact());
    EXPECT_TRUE(bitwise_equal(full, capped));
  }
}

// The sm_90a kernel is persistent: MODEL1_CUDA_PREFILL_CTAS caps its grid, so each CTA walks
// many work items (token, head group) and carries its barriers' phases from one to the next:
// items without keys, with one partial chunk and with several, in a row, with Q through the
// producer's copies and through its scalar loads (unaligned rows). The outputs match the CPU
// backend and are bitwise those of the uncapped grid (a CTA count never changes results).
TEST(PrefillCudaSmall, PersistentCtasWalkManyWorkItems) {
  SKIP_WITHOUT_GPU();
  for (int d : {512, 576}) {
    for (int h : {64, 128}) {
      Case c;
      c.d_qk = d;
      c.h_q = h;
      c.topk = 200;
      c.s_q = 9;
      c.s_kv = 500;
      c.topk_length = {200, 0, 0, 64, 1, 130, 0, 65, 199};
      c.invalid_frac = 0.2;
      c.sink = Sink::kFinite;
      c.q_layout = d == 576 ? QLayout::kUnaligned : QLayout::kHeadMajor;
      c.seed = seed_of(d, h, 31);
      SCOPED_TRACE(c.name());
      expect_any_cta_cap_same(c, {"1", "2", "5"});
    }
  }
}

// With topk_length the sm_90a kernel gives each CTA a contiguous range of work items of about
// equal key count (prefill_item_range). Heavy tokens among many empty ones leave some CTAs of
// the 132-CTA grid an empty range and others one item: every item is still written once (the
// outputs start poisoned), matches the CPU backend, and is bitwise the same under any CTA cap.
TEST(PrefillCudaSmall, BalancedRangesCoverEveryItem) {
  SKIP_WITHOUT_GPU();
  for (int h : {64, 128}) {
    Case c;
    c.d_qk = 512;
    c.h_q = h;
    c.topk = 512;
    c.s_q = 300;
    c.s_kv = 3000;
    c.topk_length = {512, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 511, -2, 3};
    c.invalid_frac = 0.1;
    c.sink = Sink::kFinite;
    c.seed = seed_of(512, h, 47);
    SCOPED_TRACE(c.name());
    expect_any_cta_cap_same(c, {"1", "7", "131"});
  }
}

// A prefill switch of the sm_90a kernel that must not change a bit: the outputs with it unset
// match the CPU backend (p.run_reference() ran), and with `name`=0 they are bitwise the same.
void expect_switch_off_changes_no_bit(Problem& p, const char* name) {
  const Outputs on = p.run_gpu(PrefillPipeline::kAuto);
  expect_close(on, p.ref());
  EXPECT_TRUE(p.guards_intact());
  const ScopedEnv off(name, "0");
  const Outputs without = p.run_gpu(PrefillPipeline::kAuto);
  EXPECT_TRUE(p.guards_intact());
  EXPECT_TRUE(bitwise_equal(on, without));
}

// The sm_90a kernel's TMA path (Q tiles by tensor copies, MODEL1_CUDA_PREFILL_TMA unset) and
// its thread-copy path (=0) compute the same values: bitwise the same outputs, for contiguous
// and head-major q, items without keys among others, on the whole grid and with 2 CTAs walking
// every item; both match the CPU backend.
TEST(PrefillCudaSmall, TmaAndThreadCopiesAgreeBitwise) {
  SKIP_WITHOUT_GPU();
  for (int d : {512, 576}) {
    for (int h : {64, 128}) {
      for (QLayout ql : {QLayout::kContiguous, QLayout::kHeadMajor}) {
        Case c;
        c.d_qk = d;
        c.h_q = h;
        c.topk = 200;
        c.s_q = 7;
        c.s_kv = 450;
        c.topk_length = {200, 0, 64, 1, 0, 130, 199};
        c.invalid_frac = 0.2;
        c.sink = Sink::kFinite;
        c.q_layout = ql;
        c.seed = seed_of(d, h, 60 + static_cast<int>(ql));
        SCOPED_TRACE(c.name());
        Problem p(c);
        p.run_reference();
        for (const char* cap : {"", "2"}) {
          SCOPED_TRACE(std::string("MODEL1_CUDA_PREFILL_CTAS=") + cap);
          const ScopedEnv ctas("MODEL1_CUDA_PREFILL_CTAS", cap);
          expect_switch_off_changes_no_bit(p, "MODEL1_CUDA_PREFILL_TMA");
        }
      }
    }
  }
}

// The staggered start of the sm_90a round-robin grid (MODEL1_CUDA_PREFILL_STAGGER unset) delays
// the CTAs with one item fewer; it must not change a bit: the same outputs as every CTA starting
// at once (=0), with CTA caps that leave such CTAs (7 items over 5 or 2 CTAs, 135 over the
// whole grid), with invalid indices among the keys; both match the CPU backend.
void expect_stagger_changes_no_bit(const Case& c) {
  SCOPED_TRACE(c.name());
  Problem p(c);
  p.run_reference();
  expect_switch_off_changes_no_bit(p, "MODEL1_CUDA_PREFILL_STAGGER");
}

TEST(PrefillCudaSmall, StaggeredStartChangesNoBit) {
  SKIP_WITHOUT_GPU();
  for (int h : {64, 128}) {
    Case c;
    c.d_qk = 512;
    c.h_q = h;
    c.topk = 192;
    c.s_q = 7;
    c.s_kv = 400;
    c.invalid_frac = 0.2;
    c.sink = Sink::kFinite;
    c.seed = seed_of(512, h, 71);
    for (const char* cap : {"5", "2"}) {
      SCOPED_TRACE(std::string("MODEL1_CUDA_PREFILL_CTAS=") + cap);
      const ScopedEnv ctas("MODEL1_CUDA_PREFILL_CTAS", cap);
      expect_stagger_changes_no_bit(c);
    }
  }
  Case big;  // the whole grid (135 items over at most 132 CTAs)
  big.d_qk = 512;
  big.h_q = 64;
  big.topk = 64;
  big.s_q = 135;
  big.s_kv = 300;
  big.seed = seed_of(512, 64, 72);
  expect_stagger_changes_no_bit(big);
}

// A run-time switch of the sm_90a prefill kernel (read on every call) rejects values other than
// '0', '1' or unset, naming itself.
void expect_prefill_switch_rejects_bad_values(const char* name) {
  Case c;
  c.d_qk = 512;
  c.h_q = 64;
  c.topk = 64;
  c.s_q = 2;
  Problem p(c);
  for (const char* bad : {"2", "yes", "-1"}) {
    const ScopedEnv env(name, bad);
    try {
      p.run_gpu(PrefillPipeline::kAuto);
      ADD_FAILURE() << "no error for " << name << "=" << bad;
    } catch (const Error& e) {
      EXPECT_EQ(e.argument(), name);
    }
  }
}

TEST(PrefillCuda, PrefillStaggerSwitchRejectsBadValues) {
  SKIP_WITHOUT_GPU();
  if (!sm90_expected()) GTEST_SKIP() << "MODEL1_CUDA_PREFILL_STAGGER applies to the sm_90a kernel only (not run here)";
  expect_prefill_switch_rejects_bad_values("MODEL1_CUDA_PREFILL_STAGGER");
}

TEST(PrefillCuda, PrefillTmaSwitchRejectsBadValues) {
  SKIP_WITHOUT_GPU();
  if (!sm90_expected()) GTEST_SKIP() << "MODEL1_CUDA_PREFILL_TMA applies to the sm_90a kernel only (not run here)";
  expect_prefill_switch_rejects_bad_values("MODEL1_CUDA_PREFILL_TMA");
}

TEST(PrefillCuda, PrefillCtaCapRejectsBadValues) {
  SKIP_WITHOUT_GPU();
  if (!sm90_expected()) GTEST_SKIP() << "the CTA cap applies to the sm_90a kernel only (not run here)";
  Case c;
  c.d_qk = 512;
  c.h_q = 64;
  c.topk = 64;
  c.s_q = 2;
  Problem p(c);
  for (const char* bad : {"0", "-3", "x", "12abc"}) {
    const ScopedEnv env("MODEL1_CUDA_PREFILL_CTAS", bad);
    try {
      p.run_gpu(PrefillPipeline::kAuto);
      ADD_FAILURE() << "no error for MODEL1_CUDA_PREFILL_CTAS=" << bad;
    } catch (const Error& e) {
      EXPECT_EQ(e.argument(), "MODEL1_CUDA_PREFILL_CTAS");
    }
  }
}

TEST(PrefillCuda, RejectsHostTensors) {
  // The launcher's own checks run before any CUDA call (no GPU needed).
  std::vector<uint16_t> q(8 * 512), kv(4 * 512), out(8 * 512);
  std::vector<int32_t> idx(1);
  std::vector<float> ml(8), lse(8);
  SparsePrefillArgs a;
  a.q = TensorView::contiguous(q.data(), DType::kBF16, {1, 8, 512});
  a.kv = TensorView::contiguous(kv.data(), DType::kBF16, {4, 512});
  a.indices = TensorView::contiguous(idx.data(), DType::kI32, {1, 1});
  a.out = TensorView::contiguous(out.data(), DType::kBF16, {1, 8, 512});
  a.max_logits = TensorView::contiguous(ml.data(), DType::kF32, {1, 8});
  a.lse = TensorView::contiguous(lse.data(), DType::kF32, {1, 8});
  try {
    cuda::sparse_prefill_portable(a, 0.05f, nullptr);
    FAIL() << "no error for CPU tensors";
  } catch (const Error& e) {
    EXPECT_EQ(e.argument(), "q.device");
  }
}

}  // namespace
}  // namespace model1::test
