// model1 CPU tests: random decode / prefill problems with hostile features (invalid-index
// flavours, duplicates, lengths, NaN in unreferenced slots, strided views, sinks), and the
// checks of MODEL1.md's tolerances against the float64 oracle.
#pragma once

#include <climits>
#include <set>
#include <memory>

#include "oracle.h"
#include "test_util.h"

namespace model1::test {

/// Invalid index flavours. kPastEnd is the first slot past the cache (pages * P).
enum class Bad : int { kMinusOne, kIntMin, kNegative, kPastEnd, kIntMax };
inline int32_t bad_value(Bad bad, int64_t num_slots) {
  switch (bad) {
    case Bad::kMinusOne: return -1;
    case Bad::kIntMin: return INT_MIN;
    case Bad::kNegative: return -123456;
    case Bad::kPastEnd: return int32_t(num_slots);
    case Bad::kIntMax: return INT_MAX;
  }
  return -1;
}
inline const std::vector<Bad>& all_bad() {
  static const std::vector<Bad> v = {Bad::kMinusOne, Bad::kIntMin, Bad::kNegative, Bad::kPastEnd,
                                     Bad::kIntMax};
  return v;
}

enum class Sink { kNone, kFinite, kPosInf, kNegInf, kMixed };

inline std::vector<float> make_sink(Sink mode, int h_q, std::mt19937& rng) {
  std::vector<float> s(static_cast<size_t>(h_q));
  std::uniform_real_distribution<float> dist(-2.0f, 6.0f);
  const float inf = std::numeric_limits<float>::infinity();
  for (int h = 0; h < h_q; ++h) {
    switch (mode) {
      case Sink::kNone:
      case Sink::kFinite: s[h] = dist(rng); break;
      case Sink::kPosInf: s[h] = inf; break;
      case Sink::kNegInf: s[h] = -inf; break;
      case Sink::kMixed: s[h] = h % 3 == 0 ? dist(rng) : h % 3 == 1 ? inf : -inf; break;
    }
  }
  return s;
}

/// Index rows for one cache: `rows` rows of `topk`, row r has `eff[r]` candidates. Candidates
/// name slots of `used` (or an invalid flavour / a duplicate); entries past the length name
/// slots of `unused`, which the test then fills with NaN.
struct IndexGen {
  double invalid_frac = 0.0;
  std::vector<Bad> flavours = {Bad::kMinusOne};
  double dup_frac = 0.0;
};

inline void gen_index_row(int32_t* row, int64_t topk, int64_t eff, bool all_invalid,
                          const IndexGen& g, const std::vector<int32_t>& used,
                          const std::vector<int32_t>& unused, int64_t num_slots,
                          std::mt19937& rng) {
  std::uniform_real_distribution<double> u01(0.0, 1.0);
  for (int64_t k = 0; k < topk; ++k) {
    int32_t v;
    if (k >= eff) {
      v = unused.empty() ? -1 : unused[rng() % unused.size()];
    } else if (all_invalid) {
      v = bad_value(g.flavours[rng() % g.flavours.size()], num_slots);
    } else if (u01(rng) < g.invalid_frac) {
      v = bad_value(g.flavours[rng() % g.flavours.size()], num_slots);
    } else if (k > 0 && u01(rng) < g.dup_frac) {
      v = row[rng() % k];
    } else {
      v = used[rng() % used.size()];
    }
    row[k] = v;
  }
}

/// Splits the slots of a cache into a used half (indices may name them) and the rest.
inline void split_slots(int64_t num_slots, double used_frac, std::mt19937& rng,
                        std::vector<int32_t>* used, std::vector<int32_t>* unused) {
  std::vector<int32_t> all(static_cast<size_t>(num_slots));
  for (int64_t s = 0; s < num_slots; ++s) all[s] = int32_t(s);
  std::shuffle(all.begin(), all.end(), rng);
  int64_t n_used = std::max<int64_t>(1, int64_t(double(num_slots) * used_frac));
  n_used = std::min(n_used, num_slots);
  used->assign(all.begin(), all.begin() + n_used);
  unused->assign(all.begin() + n_used, all.end());
}

inline int64_t clamp_len(int64_t len, int64_t topk) { return len < 0 ? 0 : std::min(len, topk); }

// =============================================================================================
// Decode
struct DecodeCase {
  CacheSpec kv;
  int b = 2, s_q = 1, h_q = 64;
  int topk = 32;
  std::vector<int32_t> topk_length;  ///< empty: absent
  bool extra = false;
  CacheSpec extra_kv;
  int extra_topk = 0;
  std::vector<int32_t> extra_topk_length;  ///< empty: absent
  Sink sink = Sink::kNone;
  IndexGen gen;
  std::vector<int> all_invalid;        ///< requests whose main candidates are all invalid
  std::vector<int> extra_all_invalid;  ///< requests whose extra candidates are all invalid
  bool strided_q = false, strided_indices = false;
  float sigma = 0.1f, clip = 1.0f;
  bool plant_nan = true;
  double used_frac = 0.5;
  float sm_scale = NAN;
  uint32_t seed = 1;

  std::string describe() const {
    std::ostringstream s;
    s << "decode b=" << b << " s_q=" << s_q << " h_q=" << h_q << " topk=" << topk << " kv["
      << kv.describe() << "]";
    if (!topk_length.empty()) {
      s << " topk_length=";
      for (auto l : topk_length) s << l << ",";
    }
    if (extra) {
      s << " extra[" << extra_kv.describe() << "] extra_topk=" << extra_topk;
      if (!extra_topk_length.empty()) {
        s << " extra_topk_length=";
        for (auto l : extra_topk_length) s << l << ",";
      }
    }
    s << " sink=" << int(sink) << " invalid_frac=" << gen.invalid_frac
      << " dup_frac=" << gen.dup_frac << " strided_q=" << strided_q
      << " strided_indices=" << strided_indices << " sigma=" << sigma << " seed=" << seed;
    return s.str();
  }
};

class DecodeProblem {
 public:
  explicit DecodeProblem(const DecodeCase& c) : c_(c), rng_(c.seed) {
    const int d = c.kv.d_qk();
    kv_ = CacheBuffer(c.kv);
    build_cache(kv_, c.kv);
    if (c.extra) {
      extra_kv_ = CacheBuffer(c.extra_kv);
      build_cache(extra_kv_, c.extra_kv);
    }
    // q: [b, s_q, h_q, d]; strided variant lives in a [b, h_q, s_q + 1, d + 32] buffer.
    if (c.strided_q) {
      const int64_t dp = d + 32, sp = c.s_q + 1;
      q_buf_.assign(size_t(c.b * c.h_q * sp * dp), kBf16NaNBits);
      q_ = TensorView::strided(q_buf_.data(), DType::kBF16, {c.b, c.s_q, c.h_q, d},
                               {c.h_q * sp * dp, dp, sp * dp, 1});
    } else {
      q_buf_.assign(size_t(c.b * c.s_q * c.h_q * d), 0);
      q_ = TensorView::contiguous(q_buf_.data(), DType::kBF16, {c.b, c.s_q, c.h_q, d});
    }
    for (int64_t i = 0; i < c.b; ++i)
      for (int64_t j = 0; j < c.s_q; ++j)
        for (int64_t h = 0; h < c.h_q; ++h)
          for (int64_t x = 0; x < d; ++x)
            q_buf_[i * q_.strides[0] + j * q_.strides[1] + h * q_.strides[2] + x] =
                float_to_bf16(random_value(rng_, c.sigma, c.clip));

    len_ = c.topk_length;
    extra_len_ = c.extra_topk_length;
    std::set<int32_t> named_main, named_extra;
    EXPECT_TRUE(len_.empty() || int(len_.size()) == c.b);
    EXPECT_TRUE(extra_len_.empty() || int(extra_len_.size()) == c.b);
    indices_ = make_indices(c.topk, len_, c.all_invalid, kv_, used_, unused_, &idx_buf_,
                            &named_main);
    if (c.extra)
      extra_indices_ = make_indices(c.extra_topk, extra_len_, c.extra_all_invalid, extra_kv_,
                                    extra_used_, extra_unused_, &extra_idx_buf_, &named_extra);
    if (c.plant_nan) {
      plant(kv_, named_main);
      if (c.extra) plant(extra_kv_, named_extra);
    }
    if (c.sink != Sink::kNone) sink_ = make_sink(c.sink, c.h_q, rng_);
    out_.assign(size_t(c.b * c.s_q * c.h_q * 512), kBf16PoisonBits);  // [b, s_q, h_q, 512]
    lse_.assign(size_t(c.b * c.s_q * c.h_q), NAN);                     // [b, s_q, h_q]
  }

  const DecodeCase& c() const { return c_; }
  SparseDecodeArgs args() {
    SparseDecodeArgs a;
    a.q = q_;
    a.kv = kv_.view();
    a.indices = indices_;
    if (!len_.empty()) a.topk_length = TensorView::contiguous(len_.data(), DType::kI32, {c_.b});
    if (c_.extra) {
      a.extra_kv = extra_kv_.view();
      a.extra_indices = extra_indices_;
      if (!extra_len_.empty())
        a.extra_topk_length = TensorView::contiguous(extra_len_.data(), DType::kI32, {c_.b});
    }
    if (!sink_.empty())
      a.attn_sink = TensorView::contiguous(sink_.data(), DType::kF32, {c_.h_q});
    a.sm_scale = c_.sm_scale;
    a.out = TensorView::contiguous(out_.data(), DType::kBF16, {c_.b, c_.s_q, c_.h_q, 512});
    a.lse = TensorView::contiguous(lse_.data(), DType::kF32, {c_.b, c_.s_q, c_.h_q});
    return a;
  }
  void poison_outputs() {
    poison_bf16(out_);
    poison_f32(lse_);
  }
  std::vector<uint16_t>& out() { return out_; }
  std::vector<float>& lse() { return lse_; }
  std::vector<uint16_t>& q_buf() { return q_buf_; }
  std::vector<int32_t>& idx_buf() { return idx_buf_; }
  std::vector<int32_t>& extra_idx_buf() { return extra_idx_buf_; }
  std::vector<int32_t>& topk_length() { return len_; }
  std::vector<int32_t>& extra_topk_length() { return extra_len_; }
  std::vector<float>& sink() { return sink_; }
  const TensorView& q() const { return q_; }
  const TensorView& indices() const { return indices_; }
  const TensorView& extra_indices() const { return extra_indices_; }
  CacheBuffer& kv() { return kv_; }
  CacheBuffer& extra_kv() { return extra_kv_; }

 private:
  void build_cache(CacheBuffer& cache, const CacheSpec& spec) {
    const int d = spec.d_qk();
    const auto tokens = random_bf16(size_t(spec.num_slots() * d), rng_, c_.sigma, c_.clip);
    cache.fill(tokens);
  }

  TensorView make_indices(int topk, const std::vector<int32_t>& lens,
                          const std::vector<int>& all_invalid, CacheBuffer& cache,
                          std::vector<int32_t>& used, std::vector<int32_t>& unused,
                          std::vector<int32_t>* buf, std::set<int32_t>* named) {
    split_slots(cache.num_slots(), c_.used_frac, rng_, &used, &unused);
    const int64_t b = c_.b, s_q = c_.s_q;
    TensorView view;
    if (c_.strided_indices) {
      // [b, s_q, topk] inside [b, s_q, topk + 5] rows with 7 more entries between requests;
      // the gaps name NaN-filled slots so a stray read shows up.
      const int64_t row = topk + 5, req = s_q * row + 7;
      buf->assign(size_t(b * req), unused.empty() ? -1 : unused[0]);
      view = TensorView::strided(buf->data(), DType::kI32, {b, s_q, topk}, {req, row, 1});
    } else {
      buf->assign(size_t(b * s_q * topk), 0);
      view = TensorView::contiguous(buf->data(), DType::kI32, {b, s_q, topk});
    }
    for (int64_t i = 0; i < b; ++i) {
      const int64_t eff = lens.empty() ? topk : clamp_len(lens[i], topk);
      const bool bad =
          std::find(all_invalid.begin(), all_invalid.end(), int(i)) != all_invalid.end();
      for (int64_t j = 0; j < s_q; ++j) {
        int32_t* row = buf->data() + i * view.strides[0] + j * view.strides[1];
        gen_index_row(row, topk, eff, bad, c_.gen, used, unused, cache.num_slots(), rng_);
        for (int64_t k = 0; k < eff; ++k)
          if (row[k] >= 0 && row[k] < cache.num_slots()) named->insert(row[k]);
      }
    }
    return view;
  }

  void plant(CacheBuffer& cache, const std::set<int32_t>& named) {
    for (int64_t s = 0; s < cache.num_slots(); ++s)
      if (!named.count(int32_t(s))) cache.poison_slot(s);
    cache.poison_padding();
  }

  DecodeCase c_;
  std::mt19937 rng_;
  CacheBuffer kv_, extra_kv_;
  std::vector<int32_t> used_, unused_, extra_used_, extra_unused_;
  std::vector<uint16_t> q_buf_;
  TensorView q_, indices_, extra_indices_;
  std::vector<int32_t> idx_buf_, extra_idx_buf_, len_, extra_len_;
  std::vector<float> sink_;
  std::vector<uint16_t> out_;
  std::vector<float> lse_;
};

inline constexpr Tol kDecodeOutTol{1e-3, 2.01 / 128, true};
inline constexpr double kDecodeCosTol = 5e-6;
inline constexpr Tol kDecodeLseTol{1e-6, 8.01 / 65536, true};

/// Checks a decode result (out, lse as returned) against the oracle with MODEL1.md tolerances.
inline ::testing::AssertionResult check_decode(const std::vector<uint16_t>& out,
                                               const std::vector<float>& lse,
                                               const oracle::DecodeRef& ref) {
  const int64_t unwritten_out = count_poison(out), unwritten_lse = count_nan(lse);
  auto r_out = check_close("out", bf16_to_doubles(out), ref.out, kDecodeOutTol, 512, kDecodeCosTol);
  auto r_lse = check_close("lse", f32_to_doubles(lse), ref.lse, kDecodeLseTol);
  if (unwritten_out || unwritten_lse || !r_out || !r_lse)
    return ::testing::AssertionFailure()
           << "unwritten (still poisoned): out " << unwritten_out << ", lse " << unwritten_lse
           << "\n" << r_out.message() << "\n" << r_lse.message();
  return ::testing::AssertionSuccess() << r_out.message() << "; " << r_lse.message();
}

/// Runs the library (convenience overload) on a poisoned output and checks it against the
/// oracle; returns the oracle's answer for further checks.
inline oracle::DecodeRef run_decode_case(const DecodeCase& c) {
  SCOPED_TRACE(c.describe());
  DecodeProblem p(c);
  const oracle::DecodeRef ref = oracle::decode(p.args());
  p.poison_outputs();
  try {
    sparse_decode(p.args());
  } catch (const Error& e) {
    ADD_FAILURE() << "sparse_decode threw: " << e.what() << " [argument " << e.argument()
                  << ", expected " << e.expected() << ", actual " << e.actual() << "]";
    return ref;
  }
  EXPECT_TRUE(check_decode(p.out(), p.lse(), ref));
  return ref;
}

// =============================================================================================
// Prefill
struct PrefillCase {
  int s_q = 4, h_q = 64, d_qk = 512, s_kv = 128, topk = 32;
  std::vector<int32_t> topk_length;  ///< empty: absent; else [s_q]
  Sink sink = Sink::kNone;
  IndexGen gen;
  std::vector<int> all_invalid;  ///< query tokens whose candidates are all invalid
  bool strided_q = false, strided_kv = false, strided_indices = false;
  bool rank3_views = false;  ///< kv [s_kv, 1, d_qk], indices [s_q, 1, topk]
  float sigma = 0.1f, clip = 1.0f;
  bool plant_nan = true;
  double used_frac = 0.5;
  float sm_scale = NAN;
  uint32_t seed = 1;

  std::string describe() const {
    std::ostringstream s;
    s << "prefill s_q=" << s_q << " h_q=" << h_q << " d_qk=" << d_qk << " s_kv=" << s_kv
      << " topk=" << topk;
    if (!topk_length.empty()) {
      s << " topk_length=";
      for (auto l : topk_length) s << l << ",";
    }
    s << " sink=" << int(sink) << " invalid_frac=" << gen.invalid_frac
      << " dup_frac=" << gen.dup_frac << " strided q/kv/idx=" << strided_q << strided_kv
      << strided_indices << " rank3=" << rank3_views << " sigma=" << sigma << " seed=" << seed;
    return s.str();
  }
};

class PrefillProblem {
 public:
  explicit PrefillProblem(const PrefillCase& c) : c_(c), rng_(c.seed) {
    const int64_t d = c.d_qk;
    // kv: [s_kv, d] (row stride d + 48 when strided), NaN in the gaps.
    const int64_t kv_row = c.strided_kv ? d + 48 : d;
    kv_buf_.assign(size_t(c.s_kv * kv_row), kBf16NaNBits);
    for (int64_t s = 0; s < c.s_kv; ++s)
      for (int64_t x = 0; x < d; ++x)
        kv_buf_[s * kv_row + x] = float_to_bf16(random_value(rng_, c.sigma, c.clip));
    kv_ = c.rank3_views
              ? TensorView::strided(kv_buf_.data(), DType::kBF16, {c.s_kv, 1, d}, {kv_row, d, 1})
              : TensorView::strided(kv_buf_.data(), DType::kBF16, {c.s_kv, d}, {kv_row, 1});
    // q: [s_q, h_q, d]; strided: inside [h_q, s_q + 1, d + 16].
    if (c.strided_q) {
      const int64_t dp = d + 16, sp = c.s_q + 1;
      q_buf_.assign(size_t(c.h_q * sp * dp), kBf16NaNBits);
      q_ = TensorView::strided(q_buf_.data(), DType::kBF16, {c.s_q, c.h_q, d}, {dp, sp * dp, 1});
    } else {
      q_buf_.assign(size_t(c.s_q * c.h_q * d), 0);
      q_ = TensorView::contiguous(q_buf_.data(), DType::kBF16, {c.s_q, c.h_q, d});
    }
    for (int64_t j = 0; j < c.s_q; ++j)
      for (int64_t h = 0; h < c.h_q; ++h)
        for (int64_t x = 0; x < d; ++x)
          q_buf_[j * q_.strides[0] + h * q_.strides[1] + x] =
              float_to_bf16(random_value(rng_, c.sigma, c.clip));
    // indices: [s_q, topk]; strided: rows of topk + 3.
    std::vector<int32_t> used, unused;
    split_slots(c.s_kv, c.used_frac, rng_, &used, &unused);
    const int64_t row = c.strided_indices ? c.topk + 3 : c.topk;
    idx_buf_.assign(size_t(c.s_q * row), unused.empty() ? -1 : unused[0]);
    indices_ = c.rank3_views ? TensorView::strided(idx_buf_.data(), DType::kI32,
                                                   {c.s_q, 1, c.topk}, {row, c.topk, 1})
                             : TensorView::strided(idx_buf_.data(), DType::kI32, {c.s_q, c.topk},
                                                   {row, 1});
    len_ = c.topk_length;
    std::set<int32_t> named;
    for (int64_t j = 0; j < c.s_q; ++j) {
      const int64_t eff = len_.empty() ? c.topk : clamp_len(len_[j], c.topk);
      const bool bad =
          std::find(c.all_invalid.begin(), c.all_invalid.end(), int(j)) != c.all_invalid.end();
      int32_t* r = idx_buf_.data() + j * row;
      gen_index_row(r, c.topk, eff, bad, c.gen, used, unused, c.s_kv, rng_);
      for (int64_t k = 0; k < eff; ++k)
        if (r[k] >= 0 && r[k] < c.s_kv) named.insert(r[k]);
    }
    if (c.plant_nan)
      for (int64_t s = 0; s < c.s_kv; ++s)
        if (!named.count(int32_t(s)))
          for (int64_t x = 0; x < d; ++x) kv_buf_[s * kv_row + x] = kBf16NaNBits;
    if (c.sink != Sink::kNone) sink_ = make_sink(c.sink, c.h_q, rng_);
    out_.assign(size_t(c.s_q * c.h_q * 512), kBf16PoisonBits);  // [s_q, h_q, 512]
    max_logits_.assign(size_t(c.s_q * c.h_q), NAN);             // [s_q, h_q]
    lse_.assign(size_t(c.s_q * c.h_q), NAN);                    // [s_q, h_q]
  }

  SparsePrefillArgs args() {
    SparsePrefillArgs a;
    a.q = q_;
    a.kv = kv_;
    a.indices = indices_;
    if (!len_.empty()) a.topk_length = TensorView::contiguous(len_.data(), DType::kI32, {c_.s_q});
    if (!sink_.empty())
      a.attn_sink = TensorView::contiguous(sink_.data(), DType::kF32, {c_.h_q});
    a.sm_scale = c_.sm_scale;
    a.d_v = 512;
    a.out = TensorView::contiguous(out_.data(), DType::kBF16, {c_.s_q, c_.h_q, 512});
    a.max_logits = TensorView::contiguous(max_logits_.data(), DType::kF32, {c_.s_q, c_.h_q});
    a.lse = TensorView::contiguous(lse_.data(), DType::kF32, {c_.s_q, c_.h_q});
    return a;
  }
  void poison_outputs() {
    poison_bf16(out_);
    poison_f32(max_logits_);
    poison_f32(lse_);
  }
  const PrefillCase& c() const { return c_; }
  std::vector<uint16_t>& out() { return out_; }
  std::vector<float>& max_logits() { return max_logits_; }
  std::vector<float>& lse() { return lse_; }
  std::vector<uint16_t>& q_buf() { return q_buf_; }
  std::vector<uint16_t>& kv_buf() { return kv_buf_; }
  std::vector<int32_t>& idx_buf() { return idx_buf_; }
  std::vector<int32_t>& topk_length() { return len_; }
  std::vector<float>& sink() { return sink_; }

 private:
  PrefillCase c_;
  std::mt19937 rng_;
  std::vector<uint16_t> q_buf_, kv_buf_;
  std::vector<int32_t> idx_buf_, len_;
  std::vector<float> sink_;
  TensorView q_, kv_, indices_;
  std::vector<uint16_t> out_;
  std::vector<float> max_logits_, lse_;
};

inline constexpr Tol kPrefillOutTol{8e-4, 3.01 / 128, false};
inline constexpr double kPrefillCosTol = 7e-6;
// NOTE: MODEL1.md gives lse / max_logits a relative bound only; like FlashMLA's check we also
// accept an absolute 1e-6 so a logit that lands next to zero is not held to a relative bound.
inline constexpr Tol kPrefillScalarTol{1e-6, 2.01 / 65536, false};

inline ::testing::AssertionResult check_prefill(const std::vector<uint16_t>& out,
                                                const std::vector<float>& max_logits,
                                                const std::vector<float>& lse,
                                                const oracle::PrefillRef& ref) {
  const int64_t u_out = count_poison(out), u_ml = count_nan(max_logits), u_lse = count_nan(lse);
  auto r_out = check_close("out", bf16_to_doubles(out), ref.out, kPrefillOutTol, 512,
                           kPrefillCosTol);
  auto r_ml = check_close("max_logits", f32_to_doubles(max_logits), ref.max_logits,
                          kPrefillScalarTol);
  auto r_lse = check_close("lse", f32_to_doubles(lse), ref.lse, kPrefillScalarTol);
  if (u_out || u_ml || u_lse || !r_out || !r_ml || !r_lse)
    return ::testing::AssertionFailure()
           << "unwritten (still poisoned): out " << u_out << ", max_logits " << u_ml << ", lse "
           << u_lse << "\n" << r_out.message() << "\n" << r_ml.message() << "\n"
           << r_lse.message();
  return ::testing::AssertionSuccess();
}

inline oracle::PrefillRef run_prefill_case(const PrefillCase& c) {
  SCOPED_TRACE(c.describe());
  PrefillProblem p(c);
  const oracle::PrefillRef ref = oracle::prefill(p.args());
  p.poison_outputs();
  try {
    sparse_prefill(p.args());
  } catch (const Error& e) {
    ADD_FAILURE() << "sparse_prefill threw: " << e.what() << " [argument " << e.argument()
                  << ", expected " << e.expected() << ", actual " << e.actual() << "]";
    return ref;
  }
  EXPECT_TRUE(check_prefill(p.out(), p.max_logits(), p.lse(), ref));
  return ref;
}

}  // namespace model1::test
