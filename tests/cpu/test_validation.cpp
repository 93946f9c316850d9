// model1 CPU tests: every validation rule rejects bad input with a model1::Error naming the
// argument (exactly, or followed by "." and a detail), with non-empty expected / actual texts
// that carry the offending value, and leaves every output byte untouched.
#include <algorithm>
#include <cctype>
#include <climits>
#include <functional>

#include "test_problems.h"

namespace model1::test {
namespace {

// Byte snapshots of buffers that must not change.
class Watch {
 public:
  void add(const void* p, size_t bytes) {
    const auto* b = static_cast<const uint8_t*>(p);
    saved_.push_back({b, std::vector<uint8_t>(b, b + bytes)});
  }
  ::testing::AssertionResult unchanged() const {
    for (size_t k = 0; k < saved_.size(); ++k) {
      const auto& [ptr, bytes] = saved_[k];
      for (size_t i = 0; i < bytes.size(); ++i)
        if (ptr[i] != bytes[i])
          return ::testing::AssertionFailure()
                 << "watched output buffer " << k << " changed at byte " << i;
    }
    return ::testing::AssertionSuccess();
  }

 private:
  std::vector<std::pair<const uint8_t*, std::vector<uint8_t>>> saved_;
};

std::string lower(std::string s) {
  std::transform(s.begin(), s.end(), s.begin(), [](unsigned char c) { return std::tolower(c); });
  return s;
}

bool names_field(const std::string& argument, const std::vector<std::string>& fields) {
  for (const auto& f : fields)
    if (argument == f || argument.rfind(f + ".", 0) == 0) return true;
  return false;
}

/// Calls `call`, expects a model1::Error naming one of `fields` with `value` inside actual().
void expect_error(const std::function<void()>& call, const std::vector<std::string>& fields,
                  const std::string& value, const Watch& watch) {
  try {
    call();
    ADD_FAILURE() << "accepted; expected a model1::Error naming " << fields[0];
  } catch (const Error& e) {
    EXPECT_TRUE(names_field(e.argument(), fields))
        << "argument \"" << e.argument() << "\", expected \"" << fields[0] << "\"; what: "
        << e.what();
    EXPECT_FALSE(e.expected().empty()) << e.what();
    EXPECT_FALSE(e.actual().empty()) << e.what();
    if (!value.empty()) {
      EXPECT_NE(lower(e.actual()).find(lower(value)), std::string::npos)
          << "actual \"" << e.actual() << "\" does not show the offending value \"" << value
          << "\" (argument " << e.argument() << ", expected \"" << e.expected() << "\")";
    }
  } catch (const std::exception& e) {
    ADD_FAILURE() << "threw a non-model1 exception: " << e.what();
  }
  EXPECT_TRUE(watch.unchanged());
}

// Large poisoned buffers for replacement tensors, so an accepted bad shape cannot read or
// write outside memory the test owns.
struct Scratch {
  std::vector<uint16_t> bf16 = std::vector<uint16_t>(size_t(1) << 21, kBf16PoisonBits);
  std::vector<float> f32 = std::vector<float>(size_t(1) << 18, NAN);
  std::vector<int32_t> i32 = std::vector<int32_t>(size_t(1) << 18, -1);
  std::vector<uint8_t> u8 = std::vector<uint8_t>(size_t(1) << 21, 0xA5);

  TensorView bf16_t(std::initializer_list<int64_t> shape) {
    return TensorView::contiguous(bf16.data(), DType::kBF16, shape);
  }
  TensorView f32_t(std::initializer_list<int64_t> shape) {
    return TensorView::contiguous(f32.data(), DType::kF32, shape);
  }
  TensorView i32_t(std::initializer_list<int64_t> shape) {
    return TensorView::contiguous(i32.data(), DType::kI32, shape);
  }
  void watch(Watch& w) {
    w.add(bf16.data(), bf16.size() * 2);
    w.add(f32.data(), f32.size() * 4);
  }
};

const std::vector<std::string>& decode_fields() {
  static const std::vector<std::string> v = {
      "q",           "kv",        "indices",  "topk_length", "extra_kv", "extra_indices",
      "extra_topk_length", "attn_sink", "sm_scale", "out",     "lse"};
  return v;
}
const std::vector<std::string>& prefill_fields() {
  static const std::vector<std::string> v = {"q",         "kv",  "indices",    "topk_length",
                                             "attn_sink", "out", "max_logits", "lse",
                                             "sm_scale",  "d_v"};
  return v;
}

// =============================================================================================
// Decode
// Base: b 3, s_q 2, h_q 16, topk 24, MODEL1 P 61 x 2 pages, extra P 2 x 20 pages (topk 20),
// both length tensors and a sink.
DecodeCase decode_base() {
  DecodeCase c;
  c.kv.format = KvFormat::kModel1Fp8;
  c.kv.page_size = 61;
  c.kv.num_pages = 2;
  c.b = 3;
  c.s_q = 2;
  c.h_q = 16;
  c.topk = 24;
  c.topk_length = {24, 5, 0};
  c.extra = true;
  c.extra_kv.format = KvFormat::kModel1Fp8;
  c.extra_kv.page_size = 2;
  c.extra_kv.num_pages = 20;
  c.extra_topk = 20;
  c.extra_topk_length = {20, 3, 7};
  c.sink = Sink::kFinite;
  c.seed = 7;
  return c;
}

struct DecodeBad {
  std::string name;
  std::function<void(SparseDecodeArgs&, Scratch&)> mutate;
  std::vector<std::string> fields;
  std::string value;
};

void run_decode_bad(DecodeProblem& p, const DecodeBad& bad) {
  SCOPED_TRACE("decode: " + bad.name);
  Scratch scratch;
  SparseDecodeArgs a = p.args();
  bad.mutate(a, scratch);
  p.poison_outputs();
  Watch w;
  w.add(p.out().data(), p.out().size() * 2);
  w.add(p.lse().data(), p.lse().size() * 4);
  scratch.watch(w);
  expect_error([&] { sparse_decode(a); }, bad.fields, bad.value, w);
  expect_error([&] { (void)plan_decode(a); }, bad.fields, bad.value, w);
}

TEST(Validation, DecodeBaseArgumentsAreValid) {
  DecodeProblem p(decode_base());
  p.poison_outputs();
  ASSERT_NO_THROW(sparse_decode(p.args()));
  EXPECT_TRUE(check_decode(p.out(), p.lse(), oracle::decode(p.args())));
}

TEST(Validation, DecodeRejectsWrongDtypes) {
  DecodeProblem p(decode_base());
  const std::vector<DecodeBad> cases = {
      {"q f32", [](auto& a, auto&) { a.q.dtype = DType::kF32; }, {"q"}, "f32"},
      {"kv f32", [](auto& a, auto&) { a.kv.data.dtype = DType::kF32; }, {"kv"}, "f32"},
      {"kv int32", [](auto& a, auto&) { a.kv.data.dtype = DType::kI32; }, {"kv"}, "int32"},
      {"indices f32", [](auto& a, auto&) { a.indices.dtype = DType::kF32; }, {"indices"}, "f32"},
      {"topk_length f32", [](auto& a, auto&) { a.topk_length.dtype = DType::kF32; },
       {"topk_length"}, "f32"},
      {"extra_kv f32", [](auto& a, auto&) { a.extra_kv.data.dtype = DType::kF32; },
       {"extra_kv"}, "f32"},
      {"extra_indices bf16", [](auto& a, auto&) { a.extra_indices.dtype = DType::kBF16; },
       {"extra_indices"}, "bf16"},
      {"extra_topk_length uint8", [](auto& a, auto&) { a.extra_topk_length.dtype = DType::kU8; },
       {"extra_topk_length"}, "uint8"},
      {"attn_sink bf16", [](auto& a, auto&) { a.attn_sink.dtype = DType::kBF16; },
       {"attn_sink"}, "bf16"},
      {"out f32", [](auto& a, auto&) { a.out.dtype = DType::kF32; }, {"out"}, "f32"},
      {"lse bf16", [](auto& a, auto&) { a.lse.dtype = DType::kBF16; }, {"lse"}, "bf16"},
  };
  for (const auto& c : cases) run_decode_bad(p, c);
}

TEST(Validation, DecodeRejectsWrongRanks) {
  DecodeProblem p(decode_base());
  const std::vector<DecodeBad> cases = {
      {"q rank 3", [](auto& a, auto& s) { a.q = s.bf16_t({6, 16, 512}); }, {"q"}, "3"},
      {"indices rank 2", [](auto& a, auto& s) { a.indices = s.i32_t({6, 24}); }, {"indices"}, "2"},
      {"topk_length rank 2", [](auto& a, auto& s) { a.topk_length = s.i32_t({3, 1}); },
       {"topk_length"}, "2"},
      {"extra_indices rank 4", [](auto& a, auto& s) { a.extra_indices = s.i32_t({3, 2, 1, 20}); },
       {"extra_indices"}, "4"},
      {"attn_sink rank 2", [](auto& a, auto& s) { a.attn_sink = s.f32_t({1, 16}); },
       {"attn_sink"}, "2"},
      {"out rank 3", [](auto& a, auto& s) { a.out = s.bf16_t({6, 16, 512}); }, {"out"}, "3"},
      {"lse rank 2", [](auto& a, auto& s) { a.lse = s.f32_t({6, 16}); }, {"lse"}, "2"},
      {"kv rank 3", [](auto& a, auto&) {
         a.kv.data = TensorView::strided(a.kv.data.data, DType::kU8, {2, 61, 584},
                                         {35712, 584, 1});
       }, {"kv"}, "3"},
  };
  for (const auto& c : cases) run_decode_bad(p, c);
}

TEST(Validation, DecodeRejectsShapeMismatches) {
  DecodeProblem p(decode_base());
  const std::vector<DecodeBad> cases = {
      {"indices b 7", [](auto& a, auto& s) { a.indices = s.i32_t({7, 2, 24}); }, {"indices"}, "7"},
      {"indices s_q 5", [](auto& a, auto& s) { a.indices = s.i32_t({3, 5, 24}); }, {"indices"}, "5"},
      {"extra_indices b 7", [](auto& a, auto& s) { a.extra_indices = s.i32_t({7, 2, 20}); },
       {"extra_indices"}, "7"},
      {"extra_indices s_q 5", [](auto& a, auto& s) { a.extra_indices = s.i32_t({3, 5, 20}); },
       {"extra_indices"}, "5"},
      {"out b 7", [](auto& a, auto& s) { a.out = s.bf16_t({7, 2, 16, 512}); }, {"out"}, "7"},
      {"out s_q 5", [](auto& a, auto& s) { a.out = s.bf16_t({3, 5, 16, 512}); }, {"out"}, "5"},
      {"out h_q 32", [](auto& a, auto& s) { a.out = s.bf16_t({3, 2, 32, 512}); }, {"out"}, "32"},
      {"out d_v 256", [](auto& a, auto& s) { a.out = s.bf16_t({3, 2, 16, 256}); }, {"out"}, "256"},
      {"lse b 7", [](auto& a, auto& s) { a.lse = s.f32_t({7, 2, 16}); }, {"lse"}, "7"},
      {"lse s_q 5", [](auto& a, auto& s) { a.lse = s.f32_t({3, 5, 16}); }, {"lse"}, "5"},
      {"lse h_q 32", [](auto& a, auto& s) { a.lse = s.f32_t({3, 2, 32}); }, {"lse"}, "32"},
      {"topk_length [4]", [](auto& a, auto& s) { a.topk_length = s.i32_t({4}); },
       {"topk_length"}, "4"},
      {"extra_topk_length [5]", [](auto& a, auto& s) { a.extra_topk_length = s.i32_t({5}); },
       {"extra_topk_length"}, "5"},
      {"attn_sink [17]", [](auto& a, auto& s) { a.attn_sink = s.f32_t({17}); }, {"attn_sink"},
       "17"},
  };
  for (const auto& c : cases) run_decode_bad(p, c);
}

TEST(Validation, DecodeRejectsBadHeadDimsAndHeadCounts) {
  DecodeProblem p(decode_base());
  const std::vector<DecodeBad> cases = {
      {"q d_qk 640", [](auto& a, auto& s) { a.q = s.bf16_t({3, 2, 16, 640}); }, {"q"}, "640"},
      // NOTE: 576 is a legal d_qk, but not with a MODEL1 cache; either side may be named.
      {"q d_qk 576 with a MODEL1 cache",
       [](auto& a, auto& s) { a.q = s.bf16_t({3, 2, 16, 576}); }, {"q", "kv"}, "576"},
      {"h_q 24",
       [](auto& a, auto& s) {
         a.q = s.bf16_t({3, 2, 24, 512});
         a.out = TensorView::contiguous(s.bf16.data() + 100000, DType::kBF16, {3, 2, 24, 512});
         a.lse = s.f32_t({3, 2, 24});
         a.attn_sink = TensorView::contiguous(s.f32.data() + 1000, DType::kF32, {24});
       },
       {"q"}, "24"},
      {"h_q 256",
       [](auto& a, auto& s) {
         a.q = s.bf16_t({3, 2, 256, 512});
         a.out = TensorView::contiguous(s.bf16.data() + 800000, DType::kBF16, {3, 2, 256, 512});
         a.lse = s.f32_t({3, 2, 256});
         a.attn_sink = TensorView::contiguous(s.f32.data() + 2000, DType::kF32, {256});
       },
       {"q"}, "256"},
      {"h_q 4",
       [](auto& a, auto& s) {
         a.q = s.bf16_t({3, 2, 4, 512});
         a.out = TensorView::contiguous(s.bf16.data() + 100000, DType::kBF16, {3, 2, 4, 512});
         a.lse = s.f32_t({3, 2, 4});
         a.attn_sink = TensorView::contiguous(s.f32.data() + 1000, DType::kF32, {4});
       },
       {"q"}, "4"},
  };
  for (const auto& c : cases) run_decode_bad(p, c);

  // d_qk 512 with a V3.2 cache (which needs 576).
  DecodeCase v = decode_base();
  v.kv.format = KvFormat::kV32Fp8;
  v.extra = false;
  v.extra_topk_length.clear();
  DecodeProblem pv(v);
  run_decode_bad(pv, {"q d_qk 512 with a V3.2 cache",
                      [](auto& a, auto& s) { a.q = s.bf16_t({3, 2, 16, 512}); }, {"q", "kv"},
                      "512"});
}

TEST(Validation, DecodeRejectsBadCacheViews) {
  DecodeProblem p(decode_base());
  // Main cache: P 61, page stride 35712 = ceil(584 * 61 / 576) * 576.
  ASSERT_EQ(model1_fp8::min_page_stride(61), 35712);
  const std::vector<DecodeBad> cases = {
      {"h_kv 2 in the rank-4 view",
       [](auto& a, auto&) {
         a.kv.data = TensorView::strided(a.kv.data.data, DType::kU8, {2, 61, 2, 584},
                                         {35712, 1168, 584, 1});
       },
       {"kv"}, "2"},
      {"bytes per token 600 in the rank-4 view",
       [](auto& a, auto&) {
         a.kv.data = TensorView::strided(a.kv.data.data, DType::kU8, {2, 61, 1, 600},
                                         {35712, 600, 600, 1});
       },
       {"kv"}, "600"},
      {"rank-4 shape[1] 32 != page_size 61",
       [](auto& a, auto&) {
         a.kv.data = TensorView::strided(a.kv.data.data, DType::kU8, {2, 32, 1, 584},
                                         {35712, 584, 584, 1});
       },
       {"kv"}, "32"},
      {"page stride 35624 (584 P, unpadded)",
       [](auto& a, auto&) {
         a.kv.data = TensorView::strided(a.kv.data.data, DType::kU8, {2, 35624}, {35624, 1});
       },
       {"kv"}, "35624"},
      {"page stride 20000",
       [](auto& a, auto&) {
         a.kv.data = TensorView::strided(a.kv.data.data, DType::kU8, {2, 20000}, {20000, 1});
       },
       {"kv"}, "20000"},
      {"page_size 0", [](auto& a, auto&) { a.kv.page_size = 0; }, {"kv"}, "0"},
      {"page_size -3", [](auto& a, auto&) { a.kv.page_size = -3; }, {"kv"}, "-3"},
      {"extra page stride too small",
       [](auto& a, auto&) {
         a.extra_kv.data = TensorView::strided(a.extra_kv.data.data, DType::kU8, {20, 1168},
                                               {1168, 1});
       },
       {"extra_kv"}, "1168"},
      {"extra_kv page_size 0", [](auto& a, auto&) { a.extra_kv.page_size = 0; }, {"extra_kv"},
       "0"},
      {"extra_kv of another format",
       [](auto& a, auto&) { a.extra_kv.format = KvFormat::kV32Fp8; }, {"extra_kv"}, "v32"},
      {"kv byte stride 2 in the last dim",
       [](auto& a, auto&) {
         a.kv.data = TensorView::strided(a.kv.data.data, DType::kU8, {2, 17856}, {35712, 2});
       },
       {"kv"}, "2"},
  };
  for (const auto& c : cases) run_decode_bad(p, c);
}

TEST(Validation, DecodeRejectsMissingPartners) {
  DecodeProblem p(decode_base());
  const std::vector<DecodeBad> cases = {
      {"extra_indices without extra_kv", [](auto& a, auto&) { a.extra_kv = KvCacheView{}; },
       {"extra_kv", "extra_indices"}, ""},
      {"extra_kv without extra_indices",
       [](auto& a, auto&) {
         a.extra_indices = TensorView{};
         a.extra_topk_length = TensorView{};
       },
       {"extra_indices", "extra_kv"}, ""},
  };
  for (const auto& c : cases) run_decode_bad(p, c);
}

TEST(Validation, DecodeRejectsNullPointersAndStridedLastDims) {
  DecodeProblem p(decode_base());
  const std::vector<DecodeBad> cases = {
      {"q null", [](auto& a, auto&) { a.q.data = nullptr; }, {"q"}, ""},
      {"kv null", [](auto& a, auto&) { a.kv.data.data = nullptr; }, {"kv"}, ""},
      {"indices null", [](auto& a, auto&) { a.indices.data = nullptr; }, {"indices"}, ""},
      {"topk_length null", [](auto& a, auto&) { a.topk_length.data = nullptr; },
       {"topk_length"}, ""},
      {"extra_kv null", [](auto& a, auto&) { a.extra_kv.data.data = nullptr; }, {"extra_kv"}, ""},
      {"extra_indices null", [](auto& a, auto&) { a.extra_indices.data = nullptr; },
       {"extra_indices"}, ""},
      {"attn_sink null", [](auto& a, auto&) { a.attn_sink.data = nullptr; }, {"attn_sink"}, ""},
      {"out null", [](auto& a, auto&) { a.out.data = nullptr; }, {"out"}, ""},
      {"lse null", [](auto& a, auto&) { a.lse.data = nullptr; }, {"lse"}, ""},
      {"q last-dim stride 2",
       [](auto& a, auto& s) {
         a.q = TensorView::strided(s.bf16.data(), DType::kBF16, {3, 2, 16, 512},
                                   {2 * 16 * 1024, 16 * 1024, 1024, 2});
       },
       {"q"}, "2"},
      {"indices last-dim stride 3",
       [](auto& a, auto& s) {
         a.indices = TensorView::strided(s.i32.data(), DType::kI32, {3, 2, 24}, {144, 72, 3});
       },
       {"indices"}, "3"},
      {"extra_indices last-dim stride 3",
       [](auto& a, auto& s) {
         a.extra_indices =
             TensorView::strided(s.i32.data(), DType::kI32, {3, 2, 20}, {120, 60, 3});
       },
       {"extra_indices"}, "3"},
      {"out last-dim stride 2",
       [](auto& a, auto& s) {
         a.out = TensorView::strided(s.bf16.data(), DType::kBF16, {3, 2, 16, 512},
                                     {2 * 16 * 1024, 16 * 1024, 1024, 2});
       },
       {"out"}, "2"},
  };
  for (const auto& c : cases) run_decode_bad(p, c);
}

TEST(Validation, DecodeRejectsOtherLayoutRules) {
  DecodeProblem p(decode_base());
  const std::vector<DecodeBad> cases = {
      {"topk 0", [](auto& a, auto& s) { a.indices = s.i32_t({3, 2, 0}); }, {"indices"}, "0"},
      {"topk_length stride 2 (must be contiguous)",
       [](auto& a, auto& s) {
         a.topk_length = TensorView::strided(s.i32.data(), DType::kI32, {3}, {2});
       },
       {"topk_length"}, "2"},
      {"extra_topk_length without the extra cache",
       [](auto& a, auto&) {
         a.extra_kv = KvCacheView{};
         a.extra_indices = TensorView{};
       },
       {"extra_topk_length"}, ""},
      {"out with padded rows (not contiguous)",
       [](auto& a, auto& s) {
         a.out = TensorView::strided(s.bf16.data(), DType::kBF16, {3, 2, 16, 512},
                                     {2 * 16 * 640, 16 * 640, 640, 1});
       },
       {"out"}, "640"},
      {"lse transposed (not contiguous)",
       [](auto& a, auto& s) {
         a.lse = TensorView::strided(s.f32.data(), DType::kF32, {3, 2, 16}, {32, 1, 2});
       },
       {"lse"}, "32"},
  };
  for (const auto& c : cases) run_decode_bad(p, c);

  // A bf16 cache: tokens of a page must be packed (stride[1] == d_qk); an extra bf16 cache
  // of another d_qk is rejected.
  DecodeCase bc = decode_base();
  bc.kv.format = KvFormat::kBf16;
  bc.extra_kv.format = KvFormat::kBf16;
  DecodeProblem pb(bc);
  run_decode_bad(pb, {"bf16 kv stride[1] 600",
                      [](auto& a, auto&) {
                        a.kv.data = TensorView::strided(a.kv.data.data, DType::kBF16,
                                                        {2, 30, 512}, {61 * 512, 600, 1});
                        a.kv.page_size = 30;
                      },
                      {"kv"}, "600"});
  run_decode_bad(pb, {"bf16 extra_kv with d_qk 576",
                      [](auto& a, auto& s) {
                        a.extra_kv.data = TensorView::contiguous(s.bf16.data(), DType::kBF16,
                                                                 {20, 2, 576});
                      },
                      {"extra_kv"}, "576"});
}

TEST(Validation, DecodeRejectsBadSmScale) {
  DecodeProblem p(decode_base());
  const std::vector<DecodeBad> cases = {
      {"sm_scale -0.5", [](auto& a, auto&) { a.sm_scale = -0.5f; }, {"sm_scale"}, "-0.5"},
      {"sm_scale +inf", [](auto& a, auto&) { a.sm_scale = INFINITY; }, {"sm_scale"}, "inf"},
      {"sm_scale -inf", [](auto& a, auto&) { a.sm_scale = -INFINITY; }, {"sm_scale"}, "inf"},
  };
  for (const auto& c : cases) run_decode_bad(p, c);
}

TEST(Validation, DecodeRejectsCudaTensorsWithoutCuda) {
  if (cuda_compiled()) GTEST_SKIP() << "built with CUDA: CUDA tensors are legal here";
  DecodeProblem p(decode_base());
  const std::vector<DecodeBad> cases = {
      {"every tensor on cuda:0",
       [](auto& a, auto&) {
         for (TensorView* t : {&a.q, &a.kv.data, &a.indices, &a.topk_length, &a.extra_kv.data,
                               &a.extra_indices, &a.extra_topk_length, &a.attn_sink, &a.out,
                               &a.lse})
           t->device = Device::kCUDA;
       },
       decode_fields(), "cuda"},
      {"q on cuda:0", [](auto& a, auto&) { a.q.device = Device::kCUDA; }, {"q"}, "cuda"},
      {"out on cuda:0", [](auto& a, auto&) { a.out.device = Device::kCUDA; }, {"out"}, "cuda"},
  };
  for (const auto& c : cases) run_decode_bad(p, c);
}

// =============================================================================================
// Prefill. Base: s_q 5, h_q 16, d_qk 512, s_kv 64, topk 24, topk_length and sink.
PrefillCase prefill_base() {
  PrefillCase c;
  c.s_q = 5;
  c.h_q = 16;
  c.d_qk = 512;
  c.s_kv = 64;
  c.topk = 24;
  c.topk_length = {24, 3, 0, 24, 9};
  c.sink = Sink::kFinite;
  c.seed = 8;
  return c;
}

struct PrefillBad {
  std::string name;
  std::function<void(SparsePrefillArgs&, Scratch&)> mutate;
  std::vector<std::string> fields;
  std::string value;
};

void run_prefill_bad(PrefillProblem& p, const PrefillBad& bad) {
  SCOPED_TRACE("prefill: " + bad.name);
  Scratch scratch;
  SparsePrefillArgs a = p.args();
  bad.mutate(a, scratch);
  p.poison_outputs();
  Watch w;
  w.add(p.out().data(), p.out().size() * 2);
  w.add(p.max_logits().data(), p.max_logits().size() * 4);
  w.add(p.lse().data(), p.lse().size() * 4);
  scratch.watch(w);
  expect_error([&] { sparse_prefill(a); }, bad.fields, bad.value, w);
}

TEST(Validation, PrefillBaseArgumentsAreValid) {
  PrefillProblem p(prefill_base());
  p.poison_outputs();
  ASSERT_NO_THROW(sparse_prefill(p.args()));
  EXPECT_TRUE(check_prefill(p.out(), p.max_logits(), p.lse(), oracle::prefill(p.args())));
}

TEST(Validation, PrefillRejectsWrongDtypesAndRanks) {
  PrefillProblem p(prefill_base());
  const std::vector<PrefillBad> cases = {
      {"q f32", [](auto& a, auto&) { a.q.dtype = DType::kF32; }, {"q"}, "f32"},
      {"kv f32", [](auto& a, auto&) { a.kv.dtype = DType::kF32; }, {"kv"}, "f32"},
      {"kv uint8", [](auto& a, auto&) { a.kv.dtype = DType::kU8; }, {"kv"}, "uint8"},
      {"indices f32", [](auto& a, auto&) { a.indices.dtype = DType::kF32; }, {"indices"}, "f32"},
      {"topk_length f32", [](auto& a, auto&) { a.topk_length.dtype = DType::kF32; },
       {"topk_length"}, "f32"},
      {"attn_sink bf16", [](auto& a, auto&) { a.attn_sink.dtype = DType::kBF16; },
       {"attn_sink"}, "bf16"},
      {"out f32", [](auto& a, auto&) { a.out.dtype = DType::kF32; }, {"out"}, "f32"},
      {"max_logits bf16", [](auto& a, auto&) { a.max_logits.dtype = DType::kBF16; },
       {"max_logits"}, "bf16"},
      {"lse bf16", [](auto& a, auto&) { a.lse.dtype = DType::kBF16; }, {"lse"}, "bf16"},
      {"q rank 2", [](auto& a, auto& s) { a.q = s.bf16_t({80, 512}); }, {"q"}, "2"},
      {"kv rank 4", [](auto& a, auto& s) { a.kv = s.bf16_t({64, 1, 1, 512}); }, {"kv"}, "4"},
      {"indices rank 4", [](auto& a, auto& s) { a.indices = s.i32_t({5, 1, 1, 24}); },
       {"indices"}, "4"},
      {"topk_length rank 2", [](auto& a, auto& s) { a.topk_length = s.i32_t({5, 1}); },
       {"topk_length"}, "2"},
      {"out rank 2", [](auto& a, auto& s) { a.out = s.bf16_t({80, 512}); }, {"out"}, "2"},
      {"max_logits rank 3", [](auto& a, auto& s) { a.max_logits = s.f32_t({5, 16, 1}); },
       {"max_logits"}, "3"},
      {"lse rank 1", [](auto& a, auto& s) { a.lse = s.f32_t({80}); }, {"lse"}, "1"},
  };
  for (const auto& c : cases) run_prefill_bad(p, c);
}

TEST(Validation, PrefillRejectsShapeMismatches) {
  PrefillProblem p(prefill_base());
  const std::vector<PrefillBad> cases = {
      {"kv h_kv 2", [](auto& a, auto& s) { a.kv = s.bf16_t({64, 2, 512}); }, {"kv"}, "2"},
      {"indices h_kv 2", [](auto& a, auto& s) { a.indices = s.i32_t({5, 2, 24}); }, {"indices"},
       "2"},
      {"d_v 256", [](auto& a, auto&) { a.d_v = 256; }, {"d_v"}, "256"},
      {"d_v 576", [](auto& a, auto&) { a.d_v = 576; }, {"d_v"}, "576"},
      {"q d_qk 640", [](auto& a, auto& s) { a.q = s.bf16_t({5, 16, 640}); }, {"q"}, "640"},
      {"kv d_qk 576 with q 512", [](auto& a, auto& s) { a.kv = s.bf16_t({64, 576}); }, {"kv"},
       "576"},
      {"h_q 24",
       [](auto& a, auto& s) {
         a.q = s.bf16_t({5, 24, 512});
         a.out = TensorView::contiguous(s.bf16.data() + 100000, DType::kBF16, {5, 24, 512});
         a.max_logits = s.f32_t({5, 24});
         a.lse = TensorView::contiguous(s.f32.data() + 1000, DType::kF32, {5, 24});
         a.attn_sink = TensorView::contiguous(s.f32.data() + 2000, DType::kF32, {24});
       },
       {"q"}, "24"},
      {"indices s_q 7", [](auto& a, auto& s) { a.indices = s.i32_t({7, 24}); }, {"indices"}, "7"},
      {"out s_q 7", [](auto& a, auto& s) { a.out = s.bf16_t({7, 16, 512}); }, {"out"}, "7"},
      {"out h_q 32", [](auto& a, auto& s) { a.out = s.bf16_t({5, 32, 512}); }, {"out"}, "32"},
      {"out d_v 256", [](auto& a, auto& s) { a.out = s.bf16_t({5, 16, 256}); }, {"out"}, "256"},
      {"max_logits s_q 7", [](auto& a, auto& s) { a.max_logits = s.f32_t({7, 16}); },
       {"max_logits"}, "7"},
      {"lse h_q 32", [](auto& a, auto& s) { a.lse = s.f32_t({5, 32}); }, {"lse"}, "32"},
      {"topk_length [7]", [](auto& a, auto& s) { a.topk_length = s.i32_t({7}); },
       {"topk_length"}, "7"},
      {"attn_sink [17]", [](auto& a, auto& s) { a.attn_sink = s.f32_t({17}); }, {"attn_sink"},
       "17"},
  };
  for (const auto& c : cases) run_prefill_bad(p, c);
}

TEST(Validation, PrefillRejectsNullsStridesScaleAndCuda) {
  PrefillProblem p(prefill_base());
  std::vector<PrefillBad> cases = {
      {"q null", [](auto& a, auto&) { a.q.data = nullptr; }, {"q"}, ""},
      {"kv null", [](auto& a, auto&) { a.kv.data = nullptr; }, {"kv"}, ""},
      {"indices null", [](auto& a, auto&) { a.indices.data = nullptr; }, {"indices"}, ""},
      {"topk_length null", [](auto& a, auto&) { a.topk_length.data = nullptr; },
       {"topk_length"}, ""},
      {"attn_sink null", [](auto& a, auto&) { a.attn_sink.data = nullptr; }, {"attn_sink"}, ""},
      {"out null", [](auto& a, auto&) { a.out.data = nullptr; }, {"out"}, ""},
      {"max_logits null", [](auto& a, auto&) { a.max_logits.data = nullptr; }, {"max_logits"},
       ""},
      {"lse null", [](auto& a, auto&) { a.lse.data = nullptr; }, {"lse"}, ""},
      {"q last-dim stride 2",
       [](auto& a, auto& s) {
         a.q = TensorView::strided(s.bf16.data(), DType::kBF16, {5, 16, 512}, {16 * 1024, 1024, 2});
       },
       {"q"}, "2"},
      {"kv last-dim stride 2",
       [](auto& a, auto& s) {
         a.kv = TensorView::strided(s.bf16.data(), DType::kBF16, {64, 512}, {1024, 2});
       },
       {"kv"}, "2"},
      {"indices last-dim stride 3",
       [](auto& a, auto& s) {
         a.indices = TensorView::strided(s.i32.data(), DType::kI32, {5, 24}, {72, 3});
       },
       {"indices"}, "3"},
      {"out last-dim stride 2",
       [](auto& a, auto& s) {
         a.out = TensorView::strided(s.bf16.data(), DType::kBF16, {5, 16, 512}, {16 * 1024, 1024, 2});
       },
       {"out"}, "2"},
      {"sm_scale -0.5", [](auto& a, auto&) { a.sm_scale = -0.5f; }, {"sm_scale"}, "-0.5"},
      {"sm_scale +inf", [](auto& a, auto&) { a.sm_scale = INFINITY; }, {"sm_scale"}, "inf"},
      {"topk 0", [](auto& a, auto& s) { a.indices = s.i32_t({5, 0}); }, {"indices"}, "0"},
      {"topk_length stride 2 (must be contiguous)",
       [](auto& a, auto& s) {
         a.topk_length = TensorView::strided(s.i32.data(), DType::kI32, {5}, {2});
       },
       {"topk_length"}, "2"},
      {"out with padded rows (not contiguous)",
       [](auto& a, auto& s) {
         a.out = TensorView::strided(s.bf16.data(), DType::kBF16, {5, 16, 512},
                                     {16 * 640, 640, 1});
       },
       {"out"}, "640"},
      {"lse transposed (not contiguous)",
       [](auto& a, auto& s) {
         a.lse = TensorView::strided(s.f32.data(), DType::kF32, {5, 16}, {1, 5});
       },
       {"lse"}, "5"},
  };
  if (!cuda_compiled()) {
    cases.push_back({"every tensor on cuda:0",
                     [](auto& a, auto&) {
                       for (TensorView* t : {&a.q, &a.kv, &a.indices, &a.topk_length,
                                             &a.attn_sink, &a.out, &a.max_logits, &a.lse})
                         t->device = Device::kCUDA;
                     },
                     prefill_fields(), "cuda"});
    cases.push_back(
        {"kv on cuda:0", [](auto& a, auto&) { a.kv.device = Device::kCUDA; }, {"kv"}, "cuda"});
  }
  for (const auto& c : cases) run_prefill_bad(p, c);
}

// =============================================================================================
// Cache writers.
struct CacheFixture {
  CacheSpec spec{KvFormat::kModel1Fp8, 61, 3, 0, false, false, 512};
  CacheBuffer cache{spec, 0x3C};
  std::vector<uint16_t> tokens;
  std::vector<int32_t> slots = {0, 5, 100};
  std::mt19937 rng{4};
  CacheFixture() { tokens = random_bf16(size_t(spec.num_slots()) * 512, rng); }
  TensorView tok(int64_t n) { return TensorView::contiguous(tokens.data(), DType::kBF16, {n, 512}); }
  TensorView sl() { return TensorView::contiguous(slots.data(), DType::kI32, {int64_t(slots.size())}); }
};

void expect_cache_error(CacheFixture& f, const std::function<void()>& call,
                        const std::vector<std::string>& fields, const std::string& value,
                        const std::string& what) {
  SCOPED_TRACE(what);
  Watch w;
  w.add(f.cache.raw().data(), f.cache.raw().size());
  expect_error(call, fields, value, w);
}

TEST(Validation, StoreTokensRejectsBadInputWritingNothing) {
  CacheFixture f;
  ASSERT_EQ(f.spec.num_slots(), 183);
  // Slot 183 == num_slots: an error, and slots 0 and 5 (valid) must not be written either.
  f.slots = {0, 5, 183};
  expect_cache_error(f, [&] { store_tokens(f.tok(3), f.sl(), f.cache.view()); }, {"slots"}, "183",
                     "slot == num_slots");
  f.slots = {0, INT_MAX, 5};
  expect_cache_error(f, [&] { store_tokens(f.tok(3), f.sl(), f.cache.view()); }, {"slots"},
                     std::to_string(INT_MAX), "slot INT_MAX");
  f.slots = {0, 5, 100};
  expect_cache_error(f,
                     [&] {
                       TensorView t = f.tok(3);
                       t.dtype = DType::kF32;
                       store_tokens(t, f.sl(), f.cache.view());
                     },
                     {"tokens"}, "f32", "tokens f32");
  expect_cache_error(f,
                     [&] {
                       store_tokens(TensorView::contiguous(f.tokens.data(), DType::kBF16, {3, 576}),
                                    f.sl(), f.cache.view());
                     },
                     {"tokens"}, "576", "tokens d_qk 576 for a MODEL1 cache");
  expect_cache_error(f,
                     [&] {
                       TensorView s = f.sl();
                       s.dtype = DType::kF32;
                       store_tokens(f.tok(3), s, f.cache.view());
                     },
                     {"slots"}, "f32", "slots f32");
  expect_cache_error(f, [&] { store_tokens(f.tok(4), f.sl(), f.cache.view()); },
                     {"slots", "tokens"}, "", "4 tokens, 3 slots");
  expect_cache_error(f,
                     [&] {
                       store_tokens(TensorView::strided(f.tokens.data(), DType::kBF16, {3, 512},
                                                        {1024, 2}),
                                    f.sl(), f.cache.view());
                     },
                     {"tokens"}, "2", "tokens last-dim stride 2");
  expect_cache_error(f,
                     [&] {
                       KvCacheView v = f.cache.view();
                       v.data = TensorView::strided(v.data.data, DType::kU8, {3, 35624}, {35624, 1});
                       store_tokens(f.tok(3), f.sl(), v);
                     },
                     {"dst"}, "35624", "dst page stride too small");
  expect_cache_error(f,
                     [&] {
                       KvCacheView v = f.cache.view();
                       v.page_size = 0;
                       store_tokens(f.tok(3), f.sl(), v);
                     },
                     {"dst"}, "0", "dst page_size 0");
  expect_cache_error(f,
                     [&] {
                       store_tokens(f.tok(3),
                                    TensorView::strided(f.slots.data(), DType::kI32, {2}, {2}),
                                    f.cache.view());
                     },
                     {"slots", "tokens"}, "", "2 tokens' worth of strided slots");
  expect_cache_error(f,
                     [&] {
                       TensorView t = f.tok(3);
                       t.data = nullptr;
                       store_tokens(t, f.sl(), f.cache.view());
                     },
                     {"tokens"}, "", "tokens null");
}

TEST(Validation, QuantizeAndDequantizeRejectBadInput) {
  CacheFixture f;
  const int64_t n = f.spec.num_slots();
  expect_cache_error(f,
                     [&] {
                       TensorView t = f.tok(n);
                       t.dtype = DType::kF32;
                       quantize_cache(t, f.cache.view());
                     },
                     {"src"}, "f32", "src f32");
  expect_cache_error(f, [&] { quantize_cache(f.tok(n - 1), f.cache.view()); }, {"src"},
                     std::to_string(n - 1), "src rows != num_slots");
  expect_cache_error(f,
                     [&] {
                       quantize_cache(
                           TensorView::contiguous(f.tokens.data(), DType::kBF16, {n / 2, 576}),
                           f.cache.view());
                     },
                     {"src"}, "576", "src d_qk 576 for MODEL1");
  expect_cache_error(f,
                     [&] {
                       KvCacheView v = f.cache.view();
                       v.data.dtype = DType::kF32;
                       quantize_cache(f.tok(n), v);
                     },
                     {"dst"}, "f32", "dst f32 bytes");
  expect_cache_error(f,
                     [&] {
                       KvCacheView v = f.cache.view();
                       v.page_size = 0;
                       quantize_cache(f.tok(n), v);
                     },
                     {"dst"}, "0", "dst page_size 0");
  expect_cache_error(f,
                     [&] {
                       KvCacheView v = f.cache.view();
                       v.data = TensorView::strided(v.data.data, DType::kU8, {3, 30000}, {30000, 1});
                       quantize_cache(f.tok(n), v);
                     },
                     {"dst"}, "30000", "dst page stride too small");

  // dequantize_cache: the destination must not be written on error.
  std::vector<float> back(size_t(n) * 512, NAN);
  std::vector<int32_t> back_i(size_t(n) * 512, -1);
  Watch w;
  w.add(back.data(), back.size() * 4);
  w.add(back_i.data(), back_i.size() * 4);
  expect_error([&] {
    dequantize_cache(f.cache.view(),
                     TensorView::contiguous(back_i.data(), DType::kI32, {n, 512}));
  }, {"dst"}, "int32", w);
  expect_error([&] {
    dequantize_cache(f.cache.view(),
                     TensorView::contiguous(back.data(), DType::kF32, {n - 1, 512}));
  }, {"dst"}, std::to_string(n - 1), w);
  expect_error([&] {
    KvCacheView v = f.cache.view();
    v.data = TensorView::strided(v.data.data, DType::kU8, {3, 30000}, {30000, 1});
    dequantize_cache(v, TensorView::contiguous(back.data(), DType::kF32, {n, 512}));
  }, {"src"}, "30000", w);
}

TEST(Validation, CacheOpsRejectCudaTensorsWithoutCuda) {
  if (cuda_compiled()) GTEST_SKIP() << "built with CUDA: CUDA tensors are legal here";
  CacheFixture f;
  const int64_t n = f.spec.num_slots();
  auto on_cuda = [](TensorView t) {
    t.device = Device::kCUDA;
    return t;
  };
  auto cache_on_cuda = [&] {
    KvCacheView v = f.cache.view();
    v.data.device = Device::kCUDA;
    return v;
  };
  expect_cache_error(f, [&] { quantize_cache(on_cuda(f.tok(n)), cache_on_cuda()); },
                     {"src", "dst"}, "cuda", "quantize_cache on cuda:0");
  expect_cache_error(f, [&] { store_tokens(on_cuda(f.tok(3)), on_cuda(f.sl()), cache_on_cuda()); },
                     {"tokens", "slots", "dst"}, "cuda", "store_tokens on cuda:0");
  std::vector<float> back(size_t(n) * 512, NAN);
  Watch w;
  w.add(back.data(), back.size() * 4);
  expect_error([&] {
    dequantize_cache(cache_on_cuda(),
                     on_cuda(TensorView::contiguous(back.data(), DType::kF32, {n, 512})));
  }, {"src", "dst"}, "cuda", w);
}

TEST(Validation, DlpackTypes) {
  // Supported: bf16 (4, 16), f32 (2, 32), int32 (0, 32), uint8 (1, 8), int8 (0, 8) -> kU8.
  EXPECT_EQ(dtype_from_dlpack(4, 16, 1), DType::kBF16);
  EXPECT_EQ(dtype_from_dlpack(2, 32, 1), DType::kF32);
  EXPECT_EQ(dtype_from_dlpack(0, 32, 1), DType::kI32);
  EXPECT_EQ(dtype_from_dlpack(1, 8, 1), DType::kU8);
  EXPECT_EQ(dtype_from_dlpack(0, 8, 1), DType::kU8);
  for (DType t : {DType::kBF16, DType::kF32, DType::kI32, DType::kU8, DType::kFP8E4M3}) {
    uint8_t code = 0, bits = 0;
    uint16_t lanes = 0;
    dtype_to_dlpack(t, &code, &bits, &lanes);
    EXPECT_EQ(dtype_from_dlpack(code, bits, lanes), t) << dtype_name(t);
    EXPECT_EQ(int64_t(bits) / 8, dtype_size(t));
  }
  Watch none;
  expect_error([] { (void)dtype_from_dlpack(2, 64, 1, "q"); }, {"q"}, "64", none);
  expect_error([] { (void)dtype_from_dlpack(0, 64, 1, "indices"); }, {"indices"}, "64", none);
  expect_error([] { (void)dtype_from_dlpack(5, 64, 1, "kv"); }, {"kv"}, "5", none);
  expect_error([] { (void)dtype_from_dlpack(4, 16, 2, "out"); }, {"out"}, "2", none);
  expect_error([] { (void)dtype_from_dlpack(2, 16, 1); }, {"tensor"}, "16", none);
  expect_error([] { (void)device_from_dlpack(10, "q"); }, {"q"}, "10", none);
  EXPECT_EQ(device_from_dlpack(1), Device::kCPU);
  EXPECT_EQ(device_from_dlpack(3), Device::kCPU);
  EXPECT_EQ(device_from_dlpack(2), Device::kCUDA);
}

}  // namespace
}  // namespace model1::test
