// model1 CLI: `model1 info`.
#include <cstdio>
#include <string>

#include "commands.h"
#include "model1/kv_format.h"
#include "model1/version.h"
#include "presets.h"
#include "runner.h"
#include "table.h"

namespace model1::cli {
namespace {

std::string join(const std::vector<std::string>& items, const char* sep) {
  std::string s;
  for (const std::string& item : items) {
    if (!s.empty()) s += sep;
    s += item;
  }
  return s;
}

std::string cache_label(const bench::CacheShape& c) {
  return format("%lld/%lld/%lld", static_cast<long long>(c.s_k), static_cast<long long>(c.topk),
                static_cast<long long>(c.page_size));
}

void print_formats() {
  struct Row {
    KvFormat format;
    int d_qk;
    const char* layout;
  };
  const Row rows[] = {
      {KvFormat::kModel1Fp8, 512,
       "page: P data rows [448 e4m3 | 64 bf16], P scale rows [7 UE8M0 | pad], pad to 576 B"},
      {KvFormat::kV32Fp8, 576, "token: [512 e4m3 | 4 f32 scales | 64 bf16]"},
      {KvFormat::kBf16, 512, "token: [512 bf16]"},
      {KvFormat::kBf16, 576, "token: [576 bf16]"},
  };
  const int64_t page_sizes[] = {1, 2, 64, 256};
  Table t;
  t.add_column("format", Table::Align::kLeft);
  t.add_column("d_qk");
  t.add_column("d_v");
  t.add_column("B/token");
  for (int64_t p : page_sizes) t.add_column(format("stride P=%lld", static_cast<long long>(p)));
  t.add_column("B/token P=64");
  t.add_column("layout", Table::Align::kLeft);
  for (const Row& r : rows) {
    std::vector<std::string> cells{kv_format_name(r.format), std::to_string(r.d_qk), "512",
                                   std::to_string(kv_bytes_per_token(r.format, r.d_qk))};
    for (int64_t p : page_sizes) {
      cells.push_back(std::to_string(kv_min_page_stride(r.format, p, r.d_qk)));
    }
    cells.push_back(
        format("%.2f", static_cast<double>(kv_min_page_stride(r.format, 64, r.d_qk)) / 64.0));
    cells.push_back(r.layout);
    t.add_row(std::move(cells));
  }
  std::printf("cache formats (byte sizes; page stride = smallest legal, see docs/FORMAT.md):\n");
  t.print(stdout);
}

void print_presets() {
  Table t;
  t.add_column("preset", Table::Align::kLeft);
  t.add_column("kind", Table::Align::kLeft);
  t.add_column("format", Table::Align::kLeft);
  t.add_column("h_q");
  t.add_column("s_q");
  t.add_column("main s_k/topk/P");
  t.add_column("extra s_k/topk/P");
  t.add_column("rows", Table::Align::kLeft);
  t.add_column("FlashMLA us (H200)", Table::Align::kLeft);
  for (const bench::Preset& p : bench::all_presets()) {
    std::vector<std::string> points, bar;
    for (int64_t x : p.points) points.push_back(std::to_string(x));
    for (const bench::BarEntry& e : p.bar) bar.push_back(format("%g", e.us));
    std::string main = p.is_prefill() ? format("-/%lld/-", static_cast<long long>(p.main.topk))
                                      : cache_label(p.main);
    std::string extra = p.extra ? cache_label(*p.extra) : "-";
    if (p.random_extra_topk_length) extra += " U[0,topk]";
    if (p.random_topk_length) main += " U[0,topk]";
    t.add_row({p.name, p.is_prefill() ? "prefill" : "decode",
               p.is_prefill() ? "bf16" : kv_format_name(p.format), std::to_string(p.h_q),
               std::to_string(p.s_q), main, extra,
               std::string(p.point_name()) + "=" + join(points, ","), join(bar, " / ")});
  }
  std::printf("benchmark presets (PERFORMANCE.md's, two more shard sizes and prefill-h64 / h128 with per-token lengths; `model1 bench --preset NAME`):\n");
  t.print(stdout);
}

}  // namespace

int run_info() {
  std::printf("model1 %s\n", version_string());
  std::string backends = "cpu";
  if (cuda_compiled()) {
    const std::vector<std::string> archs = cuda_archs_compiled();
    backends += ", cuda (" + (archs.empty() ? std::string("no archs") : join(archs, ", ")) + ")";
    if (!bench::cuda_runner_compiled()) backends += " [bench runner not built]";
  } else {
    backends += " (CUDA backend not compiled)";
  }
  std::printf("backends: %s\n", backends.c_str());
  const std::vector<GpuInfo> gpus = gpus_found();
  if (gpus.empty()) {
    std::printf("GPUs:     none\n");
  } else {
    std::printf("GPUs:\n");
    for (const GpuInfo& g : gpus) {
      std::printf("  %d: %s, sm_%d%d, %d SMs, %.1f GiB\n", g.device_id, g.name.c_str(), g.sm_major,
                  g.sm_minor, g.num_sms,
                  static_cast<double>(g.total_memory) / (1024.0 * 1024.0 * 1024.0));
    }
  }
  std::printf("\n");
  print_formats();
  std::printf("\n");
  print_presets();
  return kExitOk;
}

}  // namespace model1::cli
