// model1 bench: workload generation and accounting (see workload.h for the rules).
#include "workload.h"

#include <algorithm>
#include <atomic>
#include <bit>
#include <cmath>
#include <cstring>
#include <exception>
#include <limits>
#include <mutex>
#include <random>
#include <string>
#include <thread>

#include "model1/error.h"
#include "model1/kv_cache.h"

namespace model1::bench {
namespace {

constexpr float kValueStd = 0.1f;                      // q and cache values ~ N(0, 0.1^2) ...
constexpr float kValueClip = 1.0f;                     // ... clipped to [-1, 1]
constexpr int64_t kValuesPerChunk = int64_t{1} << 16;  // one RNG stream per chunk of values
constexpr int64_t kTokensPerTask = 1024;               // cache tokens generated and stored per task

// Stream tags: every random quantity has its own stream.
enum Tag : uint64_t {
  kTagQ = 1,
  kTagSink,
  kTagLengths,
  kTagPages,
  kTagIndices,
  kTagTopkLength,
  kTagValues,
  kTagPrefillKv,
  kTagPrefillIndices,
  kTagPrefillTopkLength,
  kTagExtra = 0x100,  // added to the cache tags for the extra cache
};

// NOTE: SplitMix64's finalizer; seeds of different (seed, tag, chunk) are unrelated, and the
// values do not depend on how chunks are spread over threads.
uint64_t mix64(uint64_t x) {
  x += 0x9e3779b97f4a7c15ull;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}
uint64_t stream_seed(uint64_t seed, uint64_t tag, uint64_t chunk = 0) {
  return mix64(mix64(mix64(seed) ^ tag) ^ chunk);
}

int num_threads() {
  const unsigned n = std::thread::hardware_concurrency();
  return n == 0 ? 1 : static_cast<int>(std::min(n, 64u));
}

/// Runs f(0..n-1) over a few threads; the first exception thrown by f is rethrown here.
template <typename F>
void parallel_for(int64_t n, const F& f) {
  const int threads = static_cast<int>(std::min<int64_t>(n, num_threads()));
  if (threads <= 1) {
    for (int64_t i = 0; i < n; ++i) f(i);
    return;
  }
  std::atomic<int64_t> next{0};
  std::exception_ptr error;
  std::mutex error_mutex;
  std::vector<std::thread> pool;
  pool.reserve(threads);
  for (int t = 0; t < threads; ++t) {
    pool.emplace_back([&] {
      try {
        for (int64_t i = next.fetch_add(1); i < n; i = next.fetch_add(1)) f(i);
      } catch (...) {
        const std::lock_guard<std::mutex> lock(error_mutex);
        if (!error) error = std::current_exception();
        next.store(n);  // NOTE: hand out no more work; the result is discarded anyway
      }
    });
  }
  for (std::thread& th : pool) th.join();
  if (error) std::rethrow_exception(error);
}

/// Two independent N(0, 1) draws from one 64-bit output of the engine (Box-Muller on two
/// 24-bit uniforms). NOTE: std::normal_distribution costs ~3x more, and a 148-request peak
/// workload needs ~1.7e9 draws; the tails end at 5.8 sigma, far inside the clip at 10 sigma.
inline void normal_pair(std::mt19937_64& rng, float* z0, float* z1) {
  constexpr float kTwoPi = 6.28318530717958647f;
  const uint64_t x = rng();
  const float u1 = (static_cast<float>(x >> 40) + 1.0f) * 0x1p-24f;       // (0, 1]
  const float u2 = static_cast<float>((x >> 16) & 0xffffffu) * 0x1p-24f;  // [0, 1)
  const float r = std::sqrt(-2.0f * std::log(u1));
  *z0 = r * std::cos(kTwoPi * u2);
  *z1 = r * std::sin(kTwoPi * u2);
}

/// dst[0..n) = bf16(clip(N(0, 0.1^2))) from `rng`, in order.
void fill_values_serial(uint16_t* dst, int64_t n, std::mt19937_64& rng) {
  for (int64_t i = 0; i < n; i += 2) {
    float z[2];
    normal_pair(rng, &z[0], &z[1]);
    for (int64_t k = 0; k < 2 && i + k < n; ++k) {
      dst[i + k] = float_to_bf16_bits(std::clamp(kValueStd * z[k], -kValueClip, kValueClip));
    }
  }
}

/// dst[0..n) as above, chunk c of kValuesPerChunk values from stream (seed, tag, c).
void fill_values_bf16(uint16_t* dst, int64_t n, uint64_t seed, uint64_t tag) {
  const int64_t chunks = (n + kValuesPerChunk - 1) / kValuesPerChunk;
  parallel_for(chunks, [&](int64_t c) {
    std::mt19937_64 rng(stream_seed(seed, tag, static_cast<uint64_t>(c)));
    const int64_t begin = c * kValuesPerChunk;
    fill_values_serial(dst + begin, std::min(kValuesPerChunk, n - begin), rng);
  });
}

/// memset over a few threads (first touch of gigabytes of pages is the slow part).
void fill_bytes(const HostBytes& buffer, uint8_t value) {
  constexpr int64_t kChunk = int64_t{64} << 20;
  const int64_t size = static_cast<int64_t>(buffer.size());
  parallel_for((size + kChunk - 1) / kChunk, [&](int64_t c) {
    const int64_t begin = c * kChunk;
    std::memset(buffer.data() + begin, value, static_cast<size_t>(std::min(kChunk, size - begin)));
  });
}

/// m distinct uniform positions of [0, n) in random order, by a partial Fisher-Yates shuffle
/// of `scratch` (the identity of size >= n, restored before returning). O(m).
void sample_distinct(std::mt19937_64& rng, int64_t n, int64_t m, std::vector<int32_t>& scratch,
                     std::vector<int64_t>& swaps, int32_t* out) {
  swaps.clear();
  for (int64_t k = 0; k < m; ++k) {
    std::uniform_int_distribution<int64_t> pick(k, n - 1);
    const int64_t r = pick(rng);
    std::swap(scratch[k], scratch[r]);
    swaps.push_back(r);
    out[k] = scratch[k];
  }
  for (int64_t k = m - 1; k >= 0; --k) std::swap(scratch[k], scratch[swaps[k]]);
}

/// Marks bits; counts set bits.
struct Bitmap {
  std::vector<uint64_t> words;
  explicit Bitmap(int64_t n) : words(static_cast<size_t>((n + 63) / 64), 0) {}
  void set(int64_t i) { words[i >> 6] |= uint64_t{1} << (i & 63); }
  bool test(int64_t i) const { return (words[i >> 6] >> (i & 63)) & 1; }
  int64_t count() const {
    int64_t c = 0;
    for (uint64_t w : words) c += std::popcount(w);
    return c;
  }
};

int64_t effective_topk(const TensorView& topk_length, int64_t i, int64_t topk) {
  if (!topk_length.defined()) return topk;
  const int64_t len = topk_length.ptr<const int32_t>()[i * topk_length.stride(0)];
  return std::clamp<int64_t>(len, 0, topk);
}

void check_cpu(const TensorView& t, const char* name) {
  if (!t.defined()) return;
  MODEL1_CHECK(t.device == Device::kCPU, name, "a CPU tensor (accounting reads host memory)",
               device_name(t.device));
}

/// Counts attended candidates and marks the distinct valid slots of one cache.
/// n lengths ~ U[0, topk] from stream `tag` (topk_length / extra_topk_length of the presets).
std::vector<int32_t> uniform_lengths(uint64_t seed, uint64_t tag, int64_t n, int64_t topk) {
  std::mt19937_64 rng(stream_seed(seed, tag));
  std::uniform_int_distribution<int64_t> dist(0, topk);
  std::vector<int32_t> out(static_cast<size_t>(n));
  for (int32_t& x : out) x = static_cast<int32_t>(dist(rng));
  return out;
}

/// `indices` [b, s_q, topk]; returns attended, adds distinct slots to `bitmap`.
int64_t scan_cache(const TensorView& indices, const TensorView& topk_length, int64_t num_slots,
                   Bitmap& bitmap) {
  const int64_t b = indices.size(0), s_q = indices.size(1), topk = indices.size(2);
  const int32_t* idx = indices.ptr<const int32_t>();
  int64_t attended = 0;
  for (int64_t i = 0; i < b; ++i) {
    const int64_t eff = effective_topk(topk_length, i, topk);
    for (int64_t j = 0; j < s_q; ++j) {
      attended += eff;
      const int32_t* row = idx + i * indices.stride(0) + j * indices.stride(1);
      for (int64_t k = 0; k < eff; ++k) {
        const int64_t s = row[k * indices.stride(2)];
        if (s >= 0 && s < num_slots) bitmap.set(s);
      }
    }
  }
  return attended;
}

/// One generated cache: bytes, per-request lengths, indices, optional topk_length.
struct GeneratedCache {
  HostBytes bytes;                   // [num_pages, page_stride]
  std::vector<int32_t> indices;      // [b, s_q, topk]
  std::vector<int32_t> topk_length;  // [b] or empty
  std::vector<int64_t> lengths;      // [b]
  int64_t num_pages = 0;
  int64_t page_stride = 0;
};

GeneratedCache generate_cache(const DecodeSpec& spec, const CacheShape& shape, bool with_length,
                              uint64_t seed, uint64_t tag_base, const char* what) {
  MODEL1_CHECK(shape.page_size >= 1, what, "page_size >= 1", std::to_string(shape.page_size));
  MODEL1_CHECK(shape.topk >= 1, what, "topk >= 1", std::to_string(shape.topk));
  MODEL1_CHECK(shape.s_k >= 1, what, "s_k >= 1", std::to_string(shape.s_k));
  const int64_t b = spec.batch, s_q = spec.s_q, topk = shape.topk, P = shape.page_size;
  const int d_qk = kv_format_d_qk(spec.format);
  GeneratedCache g;

  // Per-request cached lengths: max(round(N(s_k, (s_k/2)^2)), s_q).
  std::mt19937_64 len_rng(stream_seed(seed, tag_base + kTagLengths));
  std::normal_distribution<double> len_dist(static_cast<double>(shape.s_k),
                                            static_cast<double>(shape.s_k) / 2.0);
  g.lengths.resize(b);
  int64_t max_len = 0;
  std::vector<int64_t> first_page(b + 1, 0);
  for (int64_t i = 0; i < b; ++i) {
    g.lengths[i] = std::max<int64_t>(std::llround(len_dist(len_rng)), s_q);
    max_len = std::max(max_len, g.lengths[i]);
    first_page[i + 1] = first_page[i] + (g.lengths[i] + P - 1) / P;
  }
  g.num_pages = first_page[b];
  MODEL1_CHECK(g.num_pages * P <= std::numeric_limits<int32_t>::max(), what,
               "fewer than 2^31 slots (int32 indices)", std::to_string(g.num_pages * P));

  // Shuffled page table: request i owns pages page_perm[first_page[i] ..].
  std::vector<int32_t> page_perm(g.num_pages);
  for (int64_t p = 0; p < g.num_pages; ++p) page_perm[p] = static_cast<int32_t>(p);
  std::mt19937_64 page_rng(stream_seed(seed, tag_base + kTagPages));
  std::shuffle(page_perm.begin(), page_perm.end(), page_rng);

  // Indices: distinct random positions in [0, length), -1 padded, mapped to slots.
  g.indices.assign(b * s_q * topk, -1);
  std::mt19937_64 idx_rng(stream_seed(seed, tag_base + kTagIndices));
  std::vector<int32_t> scratch(max_len);
  for (int64_t p = 0; p < max_len; ++p) scratch[p] = static_cast<int32_t>(p);
  std::vector<int64_t> swaps;
  swaps.reserve(topk);
  for (int64_t i = 0; i < b; ++i) {
    const int64_t m = std::min(topk, g.lengths[i]);
    for (int64_t j = 0; j < s_q; ++j) {
      int32_t* row = &g.indices[(i * s_q + j) * topk];  // [topk]
      sample_distinct(idx_rng, g.lengths[i], m, scratch, swaps, row);
      for (int64_t k = 0; k < m; ++k) {
        const int64_t pos = row[k];
        row[k] = static_cast<int32_t>(int64_t{page_perm[first_page[i] + pos / P]} * P + pos % P);
      }
    }
  }
  if (with_length) g.topk_length = uniform_lengths(seed, tag_base + kTagTopkLength, b, topk);

  // Cache bytes: zeros (or NaN bytes) everywhere, then random tokens at the referenced slots.
  g.page_stride = kv_min_page_stride(spec.format, P);
  const uint8_t fill = spec.fill == UnreferencedFill::kNaN ? 0xff : 0x00;
  g.bytes = HostBytes(static_cast<size_t>(g.num_pages * g.page_stride));
  fill_bytes(g.bytes, fill);
  KvCacheView view;
  view.data = TensorView::contiguous(g.bytes.data(), DType::kU8, {g.num_pages, g.page_stride});
  view.format = spec.format;
  view.page_size = P;

  const int64_t num_slots = g.num_pages * P;
  Bitmap referenced(num_slots);
  const TensorView idx_view = TensorView::contiguous(g.indices.data(), DType::kI32, {b, s_q, topk});
  const TensorView len_view =
      with_length ? TensorView::contiguous(g.topk_length.data(), DType::kI32, {b}) : TensorView{};
  scan_cache(idx_view, len_view, num_slots, referenced);
  std::vector<int32_t> slots;
  slots.reserve(static_cast<size_t>(referenced.count()));
  for (int64_t s = 0; s < num_slots; ++s) {
    if (referenced.test(s)) slots.push_back(static_cast<int32_t>(s));
  }
  // NOTE: the slots are distinct, so tasks write disjoint bytes and may store concurrently
  // (store_tokens itself is sequential, to let the last of duplicate slots win).
  const int64_t num_referenced = static_cast<int64_t>(slots.size());
  parallel_for((num_referenced + kTokensPerTask - 1) / kTokensPerTask, [&](int64_t c) {
    const int64_t start = c * kTokensPerTask;
    const int64_t n = std::min(kTokensPerTask, num_referenced - start);
    std::vector<uint16_t> tokens(static_cast<size_t>(n * d_qk));  // [n, d_qk] bf16
    std::mt19937_64 rng(stream_seed(seed, tag_base + kTagValues, static_cast<uint64_t>(c)));
    fill_values_serial(tokens.data(), n * d_qk, rng);
    store_tokens(TensorView::contiguous(tokens.data(), DType::kBF16, {n, d_qk}),
                 TensorView::contiguous(slots.data() + start, DType::kI32, {n}),  // [n]
                 view);
  });
  return g;
}

}  // namespace

// ---- helpers ----------------------------------------------------------------------------------

float bf16_bits_to_float(uint16_t bits) {
  const uint32_t u = uint32_t{bits} << 16;
  float f;
  std::memcpy(&f, &u, sizeof f);
  return f;
}

uint16_t float_to_bf16_bits(float value) {
  uint32_t u;
  std::memcpy(&u, &value, sizeof u);
  if ((u & 0x7fffffffu) > 0x7f800000u) return static_cast<uint16_t>((u >> 16) | 0x0040u);
  // NOTE: + 0x7fff + lowest kept bit = round to nearest, ties to even.
  return static_cast<uint16_t>((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
}

int64_t span_bytes(const TensorView& view) {
  if (!view.defined() || view.ndim == 0) return 0;
  int64_t last = 0;
  for (int d = 0; d < view.ndim; ++d) {
    if (view.shape[d] == 0) return 0;
    MODEL1_CHECK(view.strides[d] >= 0, "tensor", "non-negative strides", view.describe());
    last += (view.shape[d] - 1) * view.strides[d];
  }
  return (last + 1) * dtype_size(view.dtype);
}

// ---- accounting -------------------------------------------------------------------------------

double Cost::floor_us() const { return std::max(compute_floor_us(), memory_floor_us()); }

int64_t accounted_bytes_per_slot(KvFormat format, int64_t d_qk) {
  switch (format) {
    case KvFormat::kModel1Fp8:
      return model1_fp8::kDataRowBytes;  // 576
    case KvFormat::kV32Fp8:
      return v32_fp8::kBytesPerToken;  // 656
    case KvFormat::kBf16:
      return 2 * d_qk;
  }
  MODEL1_THROW("kv.format", "model1_fp8, v32_fp8 or bf16",
               std::to_string(static_cast<int>(format)));
}

Cost decode_cost(const SparseDecodeArgs& args) {
  for (const auto& [t, name] : {std::pair{&args.q, "q"},
                                {&args.indices, "indices"},
                                {&args.topk_length, "topk_length"},
                                {&args.extra_indices, "extra_indices"},
                                {&args.extra_topk_length, "extra_topk_length"}}) {
    check_cpu(*t, name);
  }
  MODEL1_CHECK(args.q.ndim == 4, "q", "rank 4 [b, s_q, h_q, d_qk]", args.q.describe());
  MODEL1_CHECK(args.indices.ndim == 3, "indices", "rank 3 [b, s_q, topk]", args.indices.describe());
  const int64_t b = args.q.size(0), s_q = args.q.size(1), h_q = args.q.size(2);
  const int64_t d_qk = args.q.size(3);
  const int64_t d_v = args.out.defined() ? args.out.size(3) : 512;
  Cost c;
  Bitmap main_slots(args.kv.num_slots());
  c.attended = scan_cache(args.indices, args.topk_length, args.kv.num_slots(), main_slots);
  c.distinct_slots = main_slots.count();
  c.bytes = static_cast<double>(c.distinct_slots) *
            static_cast<double>(accounted_bytes_per_slot(args.kv.format, d_qk));
  if (args.extra_indices.defined()) {
    MODEL1_CHECK(args.extra_indices.ndim == 3, "extra_indices", "rank 3 [b, s_q, extra_topk]",
                 args.extra_indices.describe());
    Bitmap extra_slots(args.extra_kv.num_slots());
    c.attended += scan_cache(args.extra_indices, args.extra_topk_length, args.extra_kv.num_slots(),
                             extra_slots);
    const int64_t distinct = extra_slots.count();
    c.distinct_slots += distinct;
    c.bytes += static_cast<double>(distinct) *
               static_cast<double>(accounted_bytes_per_slot(args.extra_kv.format, d_qk));
  }
  c.flops = 2.0 * static_cast<double>(h_q) * static_cast<double>(c.attended) *
            static_cast<double>(d_qk + d_v);
  c.bytes += 2.0 * static_cast<double>(b * s_q * h_q) * static_cast<double>(d_qk + d_v);
  return c;
}

Cost prefill_cost(const SparsePrefillArgs& args) {
  check_cpu(args.q, "q");
  check_cpu(args.indices, "indices");
  check_cpu(args.topk_length, "topk_length");
  MODEL1_CHECK(args.q.ndim == 3, "q", "rank 3 [s_q, h_q, d_qk]", args.q.describe());
  MODEL1_CHECK(args.indices.ndim == 2 || args.indices.ndim == 3, "indices",
               "rank 2 [s_q, topk] or 3 [s_q, 1, topk]", args.indices.describe());
  const int64_t s_q = args.q.size(0), h_q = args.q.size(1), d_qk = args.q.size(2);
  const int64_t s_kv = args.kv.size(0);
  const int64_t topk = args.indices.size(-1);
  const int32_t* idx = args.indices.ptr<const int32_t>();
  Cost c;
  Bitmap rows(s_kv);
  for (int64_t i = 0; i < s_q; ++i) {
    const int64_t eff = effective_topk(args.topk_length, i, topk);
    c.attended += eff;
    const int32_t* row = idx + i * args.indices.stride(0);
    for (int64_t k = 0; k < eff; ++k) {
      const int64_t s = row[k * args.indices.stride(-1)];
      if (s >= 0 && s < s_kv) rows.set(s);
    }
  }
  c.distinct_slots = rows.count();
  c.flops = 2.0 * static_cast<double>(h_q) * static_cast<double>(c.attended) *
            static_cast<double>(d_qk + args.d_v);
  c.bytes = 2.0 * static_cast<double>(s_q * h_q * d_qk) +              // q
            2.0 * static_cast<double>(c.distinct_slots * d_qk) +       // kv rows touched
            2.0 * static_cast<double>(s_q * h_q * int64_t{args.d_v});  // out
  return c;
}

// ---- specs ------------------------------------------------------------------------------------

DecodeSpec decode_spec(const Preset& preset, int64_t batch) {
  MODEL1_CHECK(!preset.is_prefill(), "preset", "a decode preset",
               preset.name + " (a prefill preset)");
  MODEL1_CHECK(batch >= 1, "batch", "batch >= 1", std::to_string(batch));
  DecodeSpec s;
  s.format = preset.format;
  s.batch = batch;
  s.s_q = preset.s_q;
  s.h_q = preset.h_q;
  s.main = preset.main;
  s.extra = preset.extra;
  s.extra_topk_length = preset.extra.has_value() && preset.random_extra_topk_length;
  s.attn_sink = true;
  return s;
}

PrefillSpec prefill_spec(const Preset& preset, int64_t s_kv, int64_t s_q) {
  MODEL1_CHECK(preset.is_prefill(), "preset", "a prefill preset",
               preset.name + " (a decode preset)");
  MODEL1_CHECK(s_kv >= 1, "s_kv", "s_kv >= 1", std::to_string(s_kv));
  MODEL1_CHECK(s_q >= 0, "s_q", "s_q >= 1 (0 = the preset's)", std::to_string(s_q));
  PrefillSpec s;
  s.s_q = s_q == 0 ? preset.s_q : s_q;
  s.h_q = preset.h_q;
  s.d_qk = preset.d_qk;
  s.s_kv = s_kv;
  s.topk = preset.main.topk;
  s.attn_sink = true;
  s.topk_length = preset.random_topk_length;
  return s;
}

// ---- decode workload --------------------------------------------------------------------------

DecodeWorkload::DecodeWorkload(const DecodeSpec& spec, uint64_t seed) : spec_(spec), seed_(seed) {
  MODEL1_CHECK(spec.batch >= 1, "batch", "batch >= 1", std::to_string(spec.batch));
  MODEL1_CHECK(spec.s_q >= 1, "s_q", "s_q >= 1", std::to_string(spec.s_q));
  MODEL1_CHECK(spec.h_q >= 1, "h_q", "h_q >= 1", std::to_string(spec.h_q));
  MODEL1_CHECK(spec.format != KvFormat::kBf16, "kv.format", "model1_fp8 or v32_fp8",
               kv_format_name(spec.format));
  const int64_t b = spec.batch, s_q = spec.s_q, h_q = spec.h_q;
  const int64_t d_qk = kv_format_d_qk(spec.format);
  const int64_t d_v = 512;

  q_.resize(b * s_q * h_q * d_qk);
  fill_values_bf16(q_.data(), static_cast<int64_t>(q_.size()), seed, kTagQ);
  args_.q = TensorView::contiguous(q_.data(), DType::kBF16, {b, s_q, h_q, d_qk});

  GeneratedCache main = generate_cache(spec, spec.main, spec.main_topk_length, seed, 0, "kv");
  kv_ = std::move(main.bytes);
  indices_ = std::move(main.indices);
  topk_length_ = std::move(main.topk_length);
  lengths_ = std::move(main.lengths);
  args_.kv.data =
      TensorView::contiguous(kv_.data(), DType::kU8, {main.num_pages, main.page_stride});
  args_.kv.format = spec.format;
  args_.kv.page_size = spec.main.page_size;
  args_.indices = TensorView::contiguous(indices_.data(), DType::kI32, {b, s_q, spec.main.topk});
  if (spec.main_topk_length) {
    args_.topk_length = TensorView::contiguous(topk_length_.data(), DType::kI32, {b});
  }

  if (spec.extra) {
    GeneratedCache extra =
        generate_cache(spec, *spec.extra, spec.extra_topk_length, seed, kTagExtra, "extra_kv");
    extra_kv_ = std::move(extra.bytes);
    extra_indices_ = std::move(extra.indices);
    extra_topk_length_ = std::move(extra.topk_length);
    extra_lengths_ = std::move(extra.lengths);
    args_.extra_kv.data =
        TensorView::contiguous(extra_kv_.data(), DType::kU8, {extra.num_pages, extra.page_stride});
    args_.extra_kv.format = spec.format;
    args_.extra_kv.page_size = spec.extra->page_size;
    args_.extra_indices =
        TensorView::contiguous(extra_indices_.data(), DType::kI32, {b, s_q, spec.extra->topk});
    if (spec.extra_topk_length) {
      args_.extra_topk_length = TensorView::contiguous(extra_topk_length_.data(), DType::kI32, {b});
    }
  }

  if (spec.attn_sink) {
    std::mt19937_64 rng(stream_seed(seed, kTagSink));
    std::normal_distribution<float> normal(0.0f, 1.0f);
    attn_sink_.resize(h_q);
    for (float& x : attn_sink_) x = normal(rng);
    args_.attn_sink = TensorView::contiguous(attn_sink_.data(), DType::kF32, {h_q});
  }

  out_.assign(b * s_q * h_q * d_v, 0);
  lse_.assign(b * s_q * h_q, 0.0f);
  args_.out = TensorView::contiguous(out_.data(), DType::kBF16, {b, s_q, h_q, d_v});
  args_.lse = TensorView::contiguous(lse_.data(), DType::kF32, {b, s_q, h_q});
  cost_ = decode_cost(args_);
}

void DecodeWorkload::poison_outputs() {
  std::fill(out_.begin(), out_.end(), uint16_t{0xffff});
  std::fill(lse_.begin(), lse_.end(), std::numeric_limits<float>::quiet_NaN());
}

int64_t DecodeWorkload::host_bytes() const {
  return static_cast<int64_t>(q_.size() * 2 + kv_.size() + indices_.size() * 4 +
                              topk_length_.size() * 4 + extra_kv_.size() +
                              extra_indices_.size() * 4 + extra_topk_length_.size() * 4 +
                              attn_sink_.size() * 4 + out_.size() * 2 + lse_.size() * 4);
}

// ---- prefill workload -------------------------------------------------------------------------

PrefillWorkload::PrefillWorkload(const PrefillSpec& spec, uint64_t seed)
    : spec_(spec), seed_(seed) {
  MODEL1_CHECK(spec.s_q >= 1, "s_q", "s_q >= 1", std::to_string(spec.s_q));
  MODEL1_CHECK(spec.h_q >= 1, "h_q", "h_q >= 1", std::to_string(spec.h_q));
  MODEL1_CHECK(spec.d_qk == 512 || spec.d_qk == 576, "d_qk", "512 or 576",
               std::to_string(spec.d_qk));
  MODEL1_CHECK(spec.s_kv >= 1 && spec.s_kv <= std::numeric_limits<int32_t>::max(), "s_kv",
               "1 <= s_kv < 2^31", std::to_string(spec.s_kv));
  MODEL1_CHECK(spec.topk >= 1, "topk", "topk >= 1", std::to_string(spec.topk));
  const int64_t s_q = spec.s_q, h_q = spec.h_q, d_qk = spec.d_qk, s_kv = spec.s_kv;
  const int64_t topk = spec.topk, d_v = 512;

  q_.resize(s_q * h_q * d_qk);
  fill_values_bf16(q_.data(), static_cast<int64_t>(q_.size()), seed, kTagQ);
  kv_.resize(s_kv * d_qk);
  fill_values_bf16(kv_.data(), static_cast<int64_t>(kv_.size()), seed, kTagPrefillKv);

  // Each query: distinct random positions in [0, s_kv) (-1 padded if topk > s_kv).
  indices_.assign(s_q * topk, -1);
  std::mt19937_64 rng(stream_seed(seed, kTagPrefillIndices));
  std::vector<int32_t> scratch(s_kv);
  for (int64_t p = 0; p < s_kv; ++p) scratch[p] = static_cast<int32_t>(p);
  std::vector<int64_t> swaps;
  swaps.reserve(topk);
  for (int64_t i = 0; i < s_q; ++i) {
    sample_distinct(rng, s_kv, std::min(topk, s_kv), scratch, swaps, &indices_[i * topk]);
  }

  if (spec.topk_length) {
    topk_length_ = uniform_lengths(seed, kTagPrefillTopkLength, s_q, topk);
    args_.topk_length = TensorView::contiguous(topk_length_.data(), DType::kI32, {s_q});
  }
  if (spec.attn_sink) {
    std::mt19937_64 sink_rng(stream_seed(seed, kTagSink));
    std::normal_distribution<float> normal(0.0f, 1.0f);
    attn_sink_.resize(h_q);
    for (float& x : attn_sink_) x = normal(sink_rng);
    args_.attn_sink = TensorView::contiguous(attn_sink_.data(), DType::kF32, {h_q});
  }
  out_.assign(s_q * h_q * d_v, 0);
  max_logits_.assign(s_q * h_q, 0.0f);
  lse_.assign(s_q * h_q, 0.0f);

  args_.q = TensorView::contiguous(q_.data(), DType::kBF16, {s_q, h_q, d_qk});
  args_.kv = TensorView::contiguous(kv_.data(), DType::kBF16, {s_kv, d_qk});
  args_.indices = TensorView::contiguous(indices_.data(), DType::kI32, {s_q, topk});
  args_.d_v = static_cast<int>(d_v);
  args_.out = TensorView::contiguous(out_.data(), DType::kBF16, {s_q, h_q, d_v});
  args_.max_logits = TensorView::contiguous(max_logits_.data(), DType::kF32, {s_q, h_q});
  args_.lse = TensorView::contiguous(lse_.data(), DType::kF32, {s_q, h_q});
  cost_ = prefill_cost(args_);
}

void PrefillWorkload::poison_outputs() {
  std::fill(out_.begin(), out_.end(), uint16_t{0xffff});
  std::fill(max_logits_.begin(), max_logits_.end(), std::numeric_limits<float>::quiet_NaN());
  std::fill(lse_.begin(), lse_.end(), std::numeric_limits<float>::quiet_NaN());
}

int64_t PrefillWorkload::host_bytes() const {
  return static_cast<int64_t>(q_.size() * 2 + kv_.size() * 2 + indices_.size() * 4 +
                              topk_length_.size() * 4 + attn_sink_.size() * 4 + out_.size() * 2 +
                              max_logits_.size() * 4 + lse_.size() * 4);
}

}  // namespace model1::bench
