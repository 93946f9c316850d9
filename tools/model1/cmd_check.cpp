// model1 CLI: `model1 check` — a backend against the float64 oracle on a preset workload.
#include <chrono>
#include <cstdio>
#include <string>
#include <vector>

#include "commands.h"
#include "compare.h"
#include "model1/error.h"
#include "oracle.h"
#include "presets.h"
#include "runner.h"
#include "table.h"
#include "workload.h"

namespace model1::cli {
namespace {

using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point start) {
  return std::chrono::duration<double>(Clock::now() - start).count();
}

/// "[1, 0, 5, 300]" for a flat row-major index of a tensor.
std::string unflatten(int64_t flat, const TensorView& view) {
  std::vector<int64_t> idx(view.ndim);
  for (int d = view.ndim - 1; d >= 0; --d) {
    idx[d] = flat % view.shape[d];
    flat /= view.shape[d];
  }
  std::string s = "[";
  for (int d = 0; d < view.ndim; ++d) s += (d ? ", " : "") + std::to_string(idx[d]);
  return s + "]";
}

int report(const bench::Comparison& cmp, const std::vector<const TensorView*>& views) {
  Table t;
  t.add_column("tensor", Table::Align::kLeft);
  t.add_column("elements");
  t.add_column("NaN");
  t.add_column("over tol");
  t.add_column("inf mismatch");
  t.add_column("max abs err");
  t.add_column("mean abs err");
  t.add_column("cosine dist");
  t.add_column("worst row cos");
  t.add_column("result", Table::Align::kLeft);
  for (const bench::TensorComparison& c : cmp.tensors) {
    const bool cos = c.tolerance.cosine > 0.0;
    t.add_row({c.name, std::to_string(c.count), std::to_string(c.nan_count),
               std::to_string(c.over_tolerance), std::to_string(c.inf_mismatch),
               format("%.3e", c.max_abs_err), format("%.3e", c.mean_abs_err),
               cos ? format("%.3e", c.cosine_distance) : "-",
               cos ? format("%.3e", c.worst_row_cosine_distance) : "-", c.pass ? "ok" : "FAIL"});
  }
  t.print(stdout);
  for (size_t i = 0; i < cmp.tensors.size(); ++i) {
    const bench::TensorComparison& c = cmp.tensors[i];
    std::printf("  %-10s tolerance %s\n", c.name.c_str(), c.tolerance.describe().c_str());
    if (c.worst_index >= 0) {
      std::printf("  %-10s worst element %s: ours %.9g, ref %.9g\n", "",
                  unflatten(c.worst_index, *views[i]).c_str(), c.worst_ours, c.worst_ref);
    }
  }
  std::printf("%s\n", cmp.pass ? "PASS" : "FAIL");
  return cmp.pass ? kExitOk : kExitFail;
}

int check_decode(const CheckOptions& o, const bench::Preset& p, bench::Backend backend,
                 const std::string& device_name) {
  MODEL1_CHECK(o.s_kv == 0, "--s-kv", "a prefill preset", p.name + " (decode: use --batch)");
  const int64_t batch = o.batch > 0 ? o.batch : 2;
  bench::DecodeSpec spec = bench::decode_spec(p, batch);
  // NOTE: slots no valid index names hold NaN bytes: reading them must not change the result.
  spec.fill = bench::UnreferencedFill::kNaN;
  Clock::time_point start = Clock::now();
  bench::DecodeWorkload w(spec, o.seed);
  const double gen_s = seconds_since(start);
  std::printf(
      "model1 check: %s (decode, %s), b=%lld s_q=%lld h_q=%lld, backend %s (%s), "
      "seed %llu\n",
      p.name.c_str(), kv_format_name(spec.format), static_cast<long long>(batch),
      static_cast<long long>(spec.s_q), static_cast<long long>(spec.h_q),
      bench::backend_name(backend), device_name.c_str(), static_cast<unsigned long long>(o.seed));
  std::printf("  workload: main topk %lld (P %lld)", static_cast<long long>(spec.main.topk),
              static_cast<long long>(spec.main.page_size));
  if (spec.extra) {
    std::printf(", extra topk %lld (P %lld)%s", static_cast<long long>(spec.extra->topk),
                static_cast<long long>(spec.extra->page_size),
                spec.extra_topk_length ? " with extra_topk_length" : "");
  }
  std::printf(", %lld keys attended, %lld distinct slots; unreferenced slots hold NaN\n",
              static_cast<long long>(w.cost().attended),
              static_cast<long long>(w.cost().distinct_slots));
  start = Clock::now();
  const int split_keys = bench::run_decode(w, backend, o.device, o.split_keys);
  const double run_s = seconds_since(start);
  start = Clock::now();
  const oracle::DecodeRef ref = oracle::decode(w.args());
  const double oracle_s = seconds_since(start);
  const std::string asked = o.split_keys == 0                   ? "default"
                            : o.split_keys == kLatencySplitKeys ? "latency"
                                                                : std::to_string(o.split_keys);
  std::printf("  plan: split_keys %s -> %d keys per split%s\n", asked.c_str(), split_keys,
              backend == bench::Backend::kCpu ? " (the CPU backend has no splits)" : "");
  std::printf("  time: workload %.2f s, %s %.2f s, oracle %.2f s\n", gen_s,
              bench::backend_name(backend), run_s, oracle_s);
  const bench::Comparison cmp = bench::compare_decode(w.args(), ref);
  return report(cmp, {&w.args().out, &w.args().lse});
}

int check_prefill(const CheckOptions& o, const bench::Preset& p, bench::Backend backend,
                  const std::string& device_name) {
  MODEL1_CHECK(o.batch == 0, "--batch", "a decode preset",
               p.name + " (prefill: use --s-kv and --s-q)");
  MODEL1_CHECK(o.split_keys == 0, "--split-keys", "a decode preset", p.name + " (prefill has no splits)");
  const int64_t s_kv = o.s_kv > 0 ? o.s_kv : p.points.front();
  const bench::PrefillSpec spec = bench::prefill_spec(p, s_kv, o.s_q);
  Clock::time_point start = Clock::now();
  bench::PrefillWorkload w(spec, o.seed);
  const double gen_s = seconds_since(start);
  std::printf(
      "model1 check: %s (prefill), s_q=%lld s_kv=%lld h_q=%lld d_qk=%lld topk=%lld%s, "
      "backend %s (%s), seed %llu\n",
      p.name.c_str(), static_cast<long long>(spec.s_q), static_cast<long long>(s_kv),
      static_cast<long long>(spec.h_q), static_cast<long long>(spec.d_qk),
      static_cast<long long>(spec.topk), spec.topk_length ? " with topk_length" : "",
      bench::backend_name(backend), device_name.c_str(), static_cast<unsigned long long>(o.seed));
  start = Clock::now();
  bench::run_prefill(w, backend, o.device);
  const double run_s = seconds_since(start);
  start = Clock::now();
  const oracle::PrefillRef ref = oracle::prefill(w.args());
  const double oracle_s = seconds_since(start);
  std::printf("  time: workload %.2f s, %s %.2f s, oracle %.2f s\n", gen_s,
              bench::backend_name(backend), run_s, oracle_s);
  const bench::Comparison cmp = bench::compare_prefill(w.args(), ref);
  return report(cmp, {&w.args().out, &w.args().max_logits, &w.args().lse});
}

}  // namespace

int run_check(const CheckOptions& o) {
  const bench::Preset& p = bench::find_preset(o.preset);
  const bench::Backend backend = bench::parse_backend(o.backend);
  std::string device_name = "cpu";
  if (backend == bench::Backend::kCuda) {
    const int rc = require_gpu(o.device, &device_name);
    if (rc != kExitOk) return rc;
  }
  return p.is_prefill() ? check_prefill(o, p, backend, device_name)
                        : check_decode(o, p, backend, device_name);
}

}  // namespace model1::cli
