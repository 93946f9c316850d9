// model1 bench: the workload presets of docs/PERFORMANCE.md, by name, with their default batch
// (or s_kv) lists and FlashMLA's measured times on an H200 ("the bar").
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "model1/kv_format.h"

namespace model1::bench {

enum class PresetKind : uint8_t {
  kDecode,   ///< sparse_decode over a paged cache; rows are batch sizes
  kPrefill,  ///< sparse_prefill over a bf16 kv; rows are s_kv values
};

/// One cache of a decode preset: typical cached length, top-k width, tokens per page.
struct CacheShape {
  int64_t s_k = 0;        ///< mean cached length per request (lengths ~ N(s_k, (s_k/2)^2))
  int64_t topk = 0;       ///< indices per query token
  int64_t page_size = 0;  ///< P
};

/// FlashMLA's time for one row of a preset (point = batch size, or s_kv for prefill).
struct BarEntry {
  int64_t point = 0;
  double us = 0.0;
};

struct Preset {
  std::string name;
  PresetKind kind = PresetKind::kDecode;
  KvFormat format = KvFormat::kModel1Fp8;  ///< decode cache format; kBf16 for prefill
  int64_t h_q = 0;
  int64_t s_q = 0;   ///< query tokens per request (decode) or in total (prefill)
  int64_t d_qk = 0;  ///< 512 (MODEL1) or 576 (V3.2)
  int64_t d_v = 512;

  CacheShape main;                        ///< decode: main cache; prefill: only topk is used
  std::optional<CacheShape> extra;        ///< decode: the extra cache, when the preset has one
  bool random_extra_topk_length = false;  ///< extra_topk_length ~ U[0, extra topk] per request
  bool random_topk_length = false;        ///< prefill: topk_length ~ U[0, topk] per query token

  std::vector<int64_t> points;  ///< default batch sizes (decode) or s_kv values (prefill)
  std::vector<BarEntry> bar;    ///< FlashMLA on an H200 (PERFORMANCE.md), where measured
  std::string bar_note;         ///< where the bar comes from, when not a direct measurement
  std::string description;

  bool is_prefill() const { return kind == PresetKind::kPrefill; }
  /// FlashMLA's time at `point` (batch or s_kv), if the bar has one.
  std::optional<double> bar_us(int64_t point) const;
  /// "b" for decode, "s_kv" for prefill.
  const char* point_name() const { return is_prefill() ? "s_kv" : "b"; }
};

/// Every preset, in PERFORMANCE.md order.
const std::vector<Preset>& all_presets();
/// The preset called `name`; throws model1::Error (argument "preset") listing the valid names.
const Preset& find_preset(std::string_view name);
/// "all", or a comma-separated list of names (order kept, duplicates dropped).
std::vector<const Preset*> parse_preset_list(std::string_view list);
/// "model1-c1, model1-c2, ..." for messages.
std::string preset_names();

}  // namespace model1::bench
