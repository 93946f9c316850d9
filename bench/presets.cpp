// model1 bench: preset table. Every number here is copied from docs/PERFORMANCE.md
// (/work/shared/design/PERFORMANCE.md); keep the two in sync.
#include "presets.h"

#include <algorithm>

#include "model1/error.h"

namespace model1::bench {
namespace {

// The c1..c4 shapes: main cache = 128-token sliding window in pages of 256; extra cache =
// compressed entries (64 per page for CSA layers, 2 per page for HCA layers).
constexpr CacheShape kWindowCache{16384, 128, 256};
const std::vector<int64_t> kServingBatches{2, 64, 128, 256};

Preset decode_preset(std::string name, int64_t h_q, KvFormat format, CacheShape main,
                     std::optional<CacheShape> extra, bool random_extra_length,
                     std::vector<int64_t> points, std::vector<BarEntry> bar,
                     std::string description) {
  Preset p;
  p.name = std::move(name);
  p.kind = PresetKind::kDecode;
  p.format = format;
  p.h_q = h_q;
  p.s_q = 2;
  p.d_qk = kv_format_d_qk(format);
  p.main = main;
  p.extra = extra;
  p.random_extra_topk_length = random_extra_length;
  p.points = std::move(points);
  p.bar = std::move(bar);
  p.description = std::move(description);
  return p;
}

Preset prefill_preset(std::string name, int64_t d_qk, int64_t h_q, int64_t topk,
                      std::vector<BarEntry> bar, std::string description) {
  Preset p;
  p.name = std::move(name);
  p.kind = PresetKind::kPrefill;
  p.format = KvFormat::kBf16;
  p.h_q = h_q;
  p.s_q = 4096;
  p.d_qk = d_qk;
  p.main = CacheShape{0, topk, 1};
  for (const BarEntry& e : bar) p.points.push_back(e.point);
  p.bar = std::move(bar);
  p.description = std::move(description);
  return p;
}

std::vector<Preset> make_presets() {
  constexpr KvFormat kM1 = KvFormat::kModel1Fp8;
  constexpr KvFormat kV32 = KvFormat::kV32Fp8;
  std::vector<Preset> v;
  // FlashMLA SM90 kernels on an H200 (CUDA 13.0), 2026-11-28: us per decode call.
  const std::vector<BarEntry> c1_bar{{2, 14.7}, {64, 49.1}, {128, 91.0}, {256, 174.4}};
  v.push_back(decode_preset("model1-c1", 64, kM1, kWindowCache, CacheShape{16384, 512, 64}, false,
                            kServingBatches, c1_bar,
                            "h_q 64, window 128 (P 256) + CSA extra topk 512 (P 64)"));
  v.push_back(decode_preset("model1-c2", 128, kM1, kWindowCache, CacheShape{16384, 1024, 64}, false,
                            kServingBatches, {{2, 16.6}, {64, 107.2}, {128, 208.0}, {256, 410.7}},
                            "h_q 128, window 128 (P 256) + CSA extra topk 1024 (P 64)"));
  v.push_back(decode_preset("model1-c3", 64, kM1, kWindowCache, CacheShape{16384, 1024, 2}, true,
                            kServingBatches, {{2, 16.0}, {64, 68.2}, {128, 116.6}, {256, 204.4}},
                            "h_q 64, window 128 (P 256) + HCA extra topk 1024 (P 2), "
                            "extra_topk_length ~ U[0, 1024]"));
  v.push_back(decode_preset("model1-c4", 128, kM1, kWindowCache, CacheShape{16384, 1024, 2}, true,
                            kServingBatches, {{2, 16.4}, {64, 91.1}, {128, 147.2}, {256, 268.0}},
                            "h_q 128, window 128 (P 256) + HCA extra topk 1024 (P 2), "
                            "extra_topk_length ~ U[0, 1024]"));
  constexpr CacheShape kPeakCache{32768, 16384, 64};
  v.push_back(decode_preset("peak-h64", 64, kM1, kPeakCache, std::nullopt, false, {148},
                            {{148, 1981.0}}, "h_q 64, one cache, topk 16384 (P 64)"));
  v.push_back(decode_preset("peak-h128", 128, kM1, kPeakCache, std::nullopt, false, {148},
                            {{148, 2788.0}}, "h_q 128, one cache, topk 16384 (P 64)"));
  v.push_back(decode_preset("peak-h64-v32", 64, kV32, kPeakCache, std::nullopt, false, {148},
                            {{148, 1897.0}}, "peak-h64 in the V3.2 format (d_qk 576)"));
  v.push_back(decode_preset("peak-h128-v32", 128, kV32, kPeakCache, std::nullopt, false, {148},
                            {{148, 2879.0}}, "peak-h128 in the V3.2 format (d_qk 576)"));
  v.push_back(decode_preset("v32-h128", 128, kV32, CacheShape{32768, 2048, 64}, std::nullopt, false,
                            {128}, {{128, 344.0}}, "h_q 128, V3.2 format, topk 2048 (P 64)"));
  Preset tp =
      decode_preset("model1-tp-h16", 16, kM1, kWindowCache, CacheShape{16384, 512, 64}, false,
                    kServingBatches, c1_bar, "model1-c1 with a 16-head tensor-parallel shard");
  // NOTE: FlashMLA supports only h_q 64 and 128, so a 16-head shard is padded to 64 heads:
  // its cost is the model1-c1 time at the same batch (PERFORMANCE.md).
  tp.bar_note = "FlashMLA pads 16 heads to 64: bar = model1-c1 time";
  v.push_back(std::move(tp));
  // NOTE: beyond PERFORMANCE.md: the other shard sizes of a 64- or 128-head model on 8/16 or
  // 2/4 GPUs, timed against the same padded bar.
  for (int heads : {8, 32}) {
    const std::string name = "model1-tp-h" + std::to_string(heads);
    Preset shard = decode_preset(name, heads, kM1, kWindowCache, CacheShape{16384, 512, 64}, false,
                                 kServingBatches, c1_bar,
                                 "model1-c1 with a " + std::to_string(heads) + "-head tensor-parallel shard");
    shard.bar_note = "FlashMLA pads " + std::to_string(heads) + " heads to 64: bar = model1-c1 time";
    v.push_back(std::move(shard));
  }

  // Sparse prefill, s_q = 4096, kernel time.
  v.push_back(prefill_preset("prefill-h64", 512, 64, 512, {{32768, 546.0}, {65536, 597.0}},
                             "prefill, d_qk 512, h_q 64, topk 512"));
  v.push_back(prefill_preset("prefill-h128", 512, 128, 1024, {{32768, 1835.0}, {65536, 1932.0}},
                             "prefill, d_qk 512, h_q 128, topk 1024"));
  v.push_back(prefill_preset("prefill-v32", 576, 128, 2048, {{65536, 4044.0}},
                             "prefill, d_qk 576, h_q 128, topk 2048"));
  // Not in PERFORMANCE.md: prefill-h64 / h128 with a topk_length per query token, as V4 engines
  // call prefill (window and compressed entries gathered into one workspace, each token its
  // count). Query tokens then carry unequal work, which the persistent grid must balance.
  struct LengthsPreset {
    const char *name, *base;
    int heads, topk;
  };
  for (const LengthsPreset& l : {LengthsPreset{"prefill-h64-len", "prefill-h64", 64, 512},
                                 LengthsPreset{"prefill-h128-len", "prefill-h128", 128, 1024}}) {
    Preset lengths = prefill_preset(l.name, 512, l.heads, l.topk, {},
                                    std::string(l.base) + " with topk_length ~ U[0, " + std::to_string(l.topk) +
                                        "] per query token");
    lengths.points = {32768};
    lengths.random_topk_length = true;
    lengths.bar_note = "no FlashMLA time for per-token lengths (PERFORMANCE.md has none)";
    v.push_back(std::move(lengths));
  }
  return v;
}

}  // namespace

std::optional<double> Preset::bar_us(int64_t point) const {
  for (const BarEntry& e : bar) {
    if (e.point == point) return e.us;
  }
  return std::nullopt;
}

const std::vector<Preset>& all_presets() {
  static const std::vector<Preset> presets = make_presets();
  return presets;
}

std::string preset_names() {
  std::string s;
  for (const Preset& p : all_presets()) {
    if (!s.empty()) s += ", ";
    s += p.name;
  }
  return s;
}

const Preset& find_preset(std::string_view name) {
  for (const Preset& p : all_presets()) {
    if (p.name == name) return p;
  }
  MODEL1_THROW("preset", "one of: all, " + preset_names(), "'" + std::string(name) + "'");
}

std::vector<const Preset*> parse_preset_list(std::string_view list) {
  std::vector<const Preset*> out;
  size_t start = 0;
  while (start <= list.size()) {
    size_t end = list.find(',', start);
    if (end == std::string_view::npos) end = list.size();
    const std::string_view item = list.substr(start, end - start);
    if (item == "all") {
      for (const Preset& p : all_presets()) out.push_back(&p);
    } else if (!item.empty()) {
      out.push_back(&find_preset(item));
    }
    start = end + 1;
  }
  std::vector<const Preset*> unique;
  for (const Preset* p : out) {
    if (std::find(unique.begin(), unique.end(), p) == unique.end()) unique.push_back(p);
  }
  MODEL1_CHECK(!unique.empty(), "preset", "one of: all, " + preset_names(), "an empty list");
  return unique;
}

}  // namespace model1::bench
