// model1 CLI: `model1 bench`.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "commands.h"
#include "model1/decode.h"
#include "model1/error.h"
#include "model1/version.h"
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

/// About four significant digits, without exponents for ordinary magnitudes.
std::string num(double x) {
  const double a = std::fabs(x);
  if (a >= 1000.0) return format("%.0f", x);
  if (a >= 100.0) return format("%.1f", x);
  if (a >= 10.0) return format("%.2f", x);
  if (a >= 0.01 || a == 0.0) return format("%.3f", x);
  return format("%.2e", x);
}

std::string percent(double fraction) {
  const double p = 100.0 * fraction;
  return p >= 0.1 ? format("%.1f%%", p) : format("%.2e%%", p);
}

struct Job {
  const bench::Preset* preset;
  int64_t point;       // batch (decode) or s_kv (prefill)
  int split_keys = 0;  // decode: the plan's DecodeOptions::split_keys (0 = the default)
};

struct Outcome {
  Job job;
  std::optional<bench::ResultRow> row;
  std::string error;
};

nlohmann::json row_json(const bench::ResultRow& r) {
  nlohmann::json j;
  j["preset"] = r.preset;
  j["kind"] = r.kind;
  j["backend"] = r.backend;
  if (!r.timing.kernel.empty()) j["kernel"] = r.timing.kernel;
  if (r.kind == "decode" && r.timing.split_keys > 0) j["split_keys"] = r.timing.split_keys;
  j["format"] = r.format;
  j["device"] = r.device;
  if (r.kind == "prefill") {
    j["s_kv"] = r.s_kv;
  } else {
    j["batch"] = r.batch;
  }
  j["s_q"] = r.s_q;
  j["h_q"] = r.h_q;
  j["d_qk"] = r.d_qk;
  j["d_v"] = 512;
  j["topk"] = r.topk;
  j["extra_topk"] = r.extra_topk;
  j["seed"] = r.seed;
  j["runs"] = r.runs;
  const bool timed = !r.timing.samples_us.empty();
  const auto opt = [timed](double x) {
    return timed ? nlohmann::json(x) : nlohmann::json(nullptr);
  };
  j["time_us"] = opt(r.timing.median_us);
  j["min_us"] = opt(r.timing.min_us);
  j["max_us"] = opt(r.timing.max_us);
  j["samples_us"] = r.timing.samples_us;
  j["flops"] = r.cost.flops;
  j["bytes"] = r.cost.bytes;
  j["attended"] = r.cost.attended;
  j["distinct_slots"] = r.cost.distinct_slots;
  j["tflops"] = opt(r.tflops);
  j["gbps"] = opt(r.gbps);
  j["floor_us"] = r.cost.floor_us();
  j["compute_floor_us"] = r.cost.compute_floor_us();
  j["memory_floor_us"] = r.cost.memory_floor_us();
  j["roofline_fraction"] = opt(r.roofline_fraction);
  j["flashmla_us"] = r.flashmla_us ? nlohmann::json(*r.flashmla_us) : nlohmann::json(nullptr);
  j["speedup"] = r.speedup ? nlohmann::json(*r.speedup) : nlohmann::json(nullptr);
  // CUDA: what NVML read while the timed runs executed (null on the CPU or without NVML).
  const std::optional<bench::GpuClockSummary>& g = r.timing.gpu;
  j["sm_clock_mhz"] = g ? nlohmann::json(g->sm_mhz_median) : nlohmann::json(nullptr);
  j["sm_clock_min_mhz"] = g ? nlohmann::json(g->sm_mhz_min) : nlohmann::json(nullptr);
  j["sm_clock_max_mhz"] = g ? nlohmann::json(g->sm_mhz_max) : nlohmann::json(nullptr);
  j["power_w"] = g ? nlohmann::json(g->power_w_median) : nlohmann::json(nullptr);
  j["clock_limits"] = g ? nlohmann::json(g->limit_names()) : nlohmann::json(nullptr);
  j["clock_samples"] = g ? nlohmann::json(g->samples) : nlohmann::json(nullptr);
  return j;
}

/// " split=K" for a requested split size, " split=latency:K" for the latency rule (K: the size
/// the plan resolved it to, once known), "" for the default.
std::string split_suffix(int requested, int resolved) {
  if (requested > 0) return format(" split=%d", requested);
  if (requested != kLatencySplitKeys) return std::string();
  return resolved > 0 ? format(" split=latency:%d", resolved) : std::string(" split=latency");
}

std::string shape_label(const Outcome& oc) {
  if (!oc.row) {
    return format("%s=%lld", oc.job.preset->point_name(), static_cast<long long>(oc.job.point));
  }
  std::string shape = oc.row->point_label();
  shape += split_suffix(oc.job.split_keys, oc.row->timing.split_keys);
  if (oc.row->kind == "prefill" && oc.row->s_q != oc.job.preset->s_q) {
    shape += format(" s_q=%lld", static_cast<long long>(oc.row->s_q));
  }
  return shape;
}

void print_timings(const std::vector<Outcome>& outcomes, bench::Backend backend) {
  Table t;
  t.add_column("preset", Table::Align::kLeft);
  t.add_column("backend", Table::Align::kLeft);
  t.add_column("kernel", Table::Align::kLeft);
  t.add_column("shape", Table::Align::kLeft);
  t.add_column("us");
  t.add_column("min us");
  t.add_column("TFLOPS");
  t.add_column("GB/s");
  t.add_column("roofline");
  t.add_column("FlashMLA us");
  t.add_column("speedup");
  const bool cuda = backend == bench::Backend::kCuda;
  if (cuda) t.add_column("SM MHz");
  std::vector<std::string> notes;
  std::vector<std::string> limits;  // clock limits seen in any row
  for (const Outcome& oc : outcomes) {
    if (!oc.row) {
      t.add_row({oc.job.preset->name, bench::backend_name(backend), "-", shape_label(oc), "failed"});
      continue;
    }
    const bench::ResultRow& r = *oc.row;
    std::string clock = "-";
    if (r.timing.gpu) {
      const std::vector<std::string> names = r.timing.gpu->limit_names();
      clock = format("%.0f%s", r.timing.gpu->sm_mhz_median, names.empty() ? "" : "*");
      for (const std::string& n : names) {
        if (std::find(limits.begin(), limits.end(), n) == limits.end()) limits.push_back(n);
      }
    }
    std::vector<std::string> cells = {r.preset, r.backend, r.timing.kernel.empty() ? "-" : r.timing.kernel,
                                      shape_label(oc), num(r.timing.median_us), num(r.timing.min_us),
                                      num(r.tflops), num(r.gbps), percent(r.roofline_fraction),
                                      r.flashmla_us ? num(*r.flashmla_us) : "-",
                                      r.speedup ? format("%sx", num(*r.speedup).c_str()) : "-"};
    if (cuda) cells.push_back(clock);
    t.add_row(cells);
    if (!oc.job.preset->bar_note.empty()) {
      const std::string note = oc.job.preset->name + ": " + oc.job.preset->bar_note;
      if (std::find(notes.begin(), notes.end(), note) == notes.end()) notes.push_back(note);
    }
  }
  t.print(stdout);
  std::printf(
      "roofline = max(FLOPs / 790 TFLOP/s, bytes / 4.3 TB/s) / time (H200); "
      "speedup = FlashMLA time / ours\n");
  if (cuda) {
    std::string why;
    for (const std::string& n : limits) why += (why.empty() ? "" : ", ") + n;
    std::printf("SM MHz = median SM clock while the timed runs executed (NVML; - where unavailable)%s\n",
                limits.empty() ? "" : ("; * = clocks held back: " + why).c_str());
  }
  for (const std::string& n : notes) std::printf("note: %s\n", n.c_str());
}

void print_accounting(const std::vector<Outcome>& outcomes, uint64_t seed) {
  std::printf("model1 %s bench --dry-run: accounting of the generated workloads, seed %llu\n",
              version_string(), static_cast<unsigned long long>(seed));
  Table t;
  t.add_column("preset", Table::Align::kLeft);
  t.add_column("shape", Table::Align::kLeft);
  t.add_column("GFLOP");
  t.add_column("MB");
  t.add_column("keys");
  t.add_column("slots");
  t.add_column("compute us");
  t.add_column("memory us");
  t.add_column("floor us");
  t.add_column("bound", Table::Align::kLeft);
  t.add_column("FlashMLA us");
  t.add_column("FlashMLA/floor");
  for (const Outcome& oc : outcomes) {
    if (!oc.row) {
      t.add_row({oc.job.preset->name, shape_label(oc), "failed"});
      continue;
    }
    const bench::ResultRow& r = *oc.row;
    const bench::Cost& c = r.cost;
    t.add_row({r.preset, shape_label(oc), num(c.flops / 1e9), num(c.bytes / 1e6),
               std::to_string(c.attended), std::to_string(c.distinct_slots),
               num(c.compute_floor_us()), num(c.memory_floor_us()), num(c.floor_us()),
               c.compute_floor_us() >= c.memory_floor_us() ? "compute" : "memory",
               r.flashmla_us ? num(*r.flashmla_us) : "-",
               r.flashmla_us ? percent(c.floor_us() / *r.flashmla_us) : "-"});
  }
  t.print(stdout);
  std::printf(
      "floor = max(FLOPs / 790 TFLOP/s, bytes / 4.3 TB/s) (H200); keys = attended "
      "(request, query, key) triples; slots = distinct cache slots (kv rows) read\n");
}

}  // namespace

int run_bench(const BenchOptions& o) {
  const std::vector<const bench::Preset*> presets = bench::parse_preset_list(o.presets);
  const bench::Backend backend = bench::parse_backend(o.backend);
  const bool cuda = backend == bench::Backend::kCuda;
  std::string device_name = "cpu";
  if (cuda && !o.dry_run) {
    const int rc = require_gpu(o.device, &device_name);
    if (rc != kExitOk) return rc;
  }

  bool any_decode = false, any_prefill = false;
  for (const bench::Preset* p : presets) (p->is_prefill() ? any_prefill : any_decode) = true;
  MODEL1_CHECK(o.batches.empty() || any_decode, "--batch",
               "decode presets (prefill rows are s_kv values: use --s-kv)", "prefill presets only");
  MODEL1_CHECK(o.s_kvs.empty() || any_prefill, "--s-kv", "prefill presets", "decode presets only");
  MODEL1_CHECK(o.s_q == 0 || any_prefill, "--s-q", "prefill presets (decode s_q is fixed)",
               "decode presets only");
  MODEL1_CHECK(o.split_keys.empty() || any_decode, "--split-keys", "decode presets",
               "prefill presets only");
  for (int k : o.split_keys) {
    // NOTE: the library's rule, checked before any workload is made; reported as the option's.
    try {
      DecodeOptions options;
      options.split_keys = k;
      check_decode_options(options);
    } catch (const Error& e) {
      MODEL1_THROW("--split-keys", e.expected(), e.actual());
    }
  }
  if (!o.batches.empty() && any_prefill) {
    std::fprintf(stderr, "note: --batch applies to decode presets; prefill rows are s_kv values\n");
  }

  std::vector<Job> jobs;
  const std::vector<int> default_split{0};
  for (const bench::Preset* p : presets) {
    const std::vector<int64_t>& chosen = p->is_prefill() ? o.s_kvs : o.batches;
    for (int64_t x : chosen.empty() ? p->points : chosen) {
      if (p->is_prefill()) {
        jobs.push_back({p, x});
        continue;
      }
      for (int k : o.split_keys.empty() ? default_split : o.split_keys) jobs.push_back({p, x, k});
    }
  }

  bench::TimingOptions timing;
  timing.runs = o.runs > 0 ? o.runs : (cuda ? 30 : 3);
  timing.warmup = o.warmup >= 0 ? o.warmup : (cuda ? 5 : 1);
  timing.device = o.device;
  timing.flush_l2 = !o.no_flush;
  timing.flush_by_reads = o.flush_reads;

  std::vector<Outcome> outcomes;
  // NOTE: the rows of one decode point (one per split size) share its workload.
  std::unique_ptr<bench::DecodeWorkload> decode_workload;
  const Job* decode_workload_job = nullptr;
  for (size_t i = 0; i < jobs.size(); ++i) {
    const Job& job = jobs[i];
    const bench::Preset& p = *job.preset;
    std::fprintf(stderr, "[%zu/%zu] %s %s=%lld%s ...", i + 1, jobs.size(), p.name.c_str(),
                 p.point_name(), static_cast<long long>(job.point),
                 split_suffix(job.split_keys, 0).c_str());
    std::fflush(stderr);
    Outcome outcome{job, std::nullopt, {}};
    const Clock::time_point start = Clock::now();
    double generate_s = 0.0;
    try {
      if (p.is_prefill()) {
        bench::PrefillWorkload w(bench::prefill_spec(p, job.point, o.s_q), o.seed);
        generate_s = seconds_since(start);
        const bench::Timing t =
            o.dry_run ? bench::Timing{} : bench::time_prefill(w, backend, timing);
        outcome.row =
            bench::make_prefill_row(p, w, backend, device_name, o.dry_run ? 0 : timing.runs, t);
      } else {
        if (decode_workload_job == nullptr || decode_workload_job->preset != job.preset ||
            decode_workload_job->point != job.point) {
          decode_workload_job = nullptr;
          decode_workload = std::make_unique<bench::DecodeWorkload>(bench::decode_spec(p, job.point), o.seed);
          decode_workload_job = &job;
        }
        bench::DecodeWorkload& w = *decode_workload;
        generate_s = seconds_since(start);
        timing.split_keys = job.split_keys;
        const bench::Timing t =
            o.dry_run ? bench::Timing{} : bench::time_decode(w, backend, timing);
        outcome.row =
            bench::make_decode_row(p, w, backend, device_name, o.dry_run ? 0 : timing.runs, t);
      }
      if (o.dry_run) {
        std::fprintf(stderr, " workload %.1f s\n", generate_s);
      } else {
        std::fprintf(stderr, " %s us (workload %.1f s, runs %.1f s)\n",
                     num(outcome.row->timing.median_us).c_str(), generate_s,
                     seconds_since(start) - generate_s);
      }
    } catch (const Error& e) {
      outcome.error = e.argument() + ": expected " + e.expected() + ", got " + e.actual();
      std::fprintf(stderr, " FAILED: %s\n", outcome.error.c_str());
    } catch (const std::exception& e) {
      outcome.error = e.what();
      std::fprintf(stderr, " FAILED: %s\n", outcome.error.c_str());
    }
    outcomes.push_back(std::move(outcome));
  }

  if (o.dry_run) {
    print_accounting(outcomes, o.seed);
  } else {
    const char* flush = !cuda                   ? ""
                        : !timing.flush_l2      ? ", L2 not flushed"
                        : timing.flush_by_reads ? ", L2 flushed by reads"
                                                : ", L2 flushed";
    std::printf(
        "model1 %s bench: backend %s (%s), median of %d runs after %d warm-up%s, "
        "seed %llu\n",
        version_string(), bench::backend_name(backend), device_name.c_str(), timing.runs, timing.warmup, flush,
        static_cast<unsigned long long>(o.seed));
    for (const Outcome& oc : outcomes) {
      if (cuda && o.split_keys.empty() && oc.row && oc.row->kind == "decode") {
        std::printf("decode plans: %d keys per split-KV split (the default; --split-keys to compare)\n",
                    oc.row->timing.split_keys);
        break;
      }
    }
    print_timings(outcomes, backend);
  }
  int failures = 0;
  for (const Outcome& oc : outcomes) {
    if (!oc.row) {
      ++failures;
      std::printf("failed: %s %s=%lld: %s\n", oc.job.preset->name.c_str(),
                  oc.job.preset->point_name(), static_cast<long long>(oc.job.point),
                  oc.error.c_str());
    }
  }

  if (!o.json.empty()) {
    nlohmann::json doc;
    doc["model1_version"] = version_string();
    doc["backend"] = bench::backend_name(backend);
    doc["device"] = device_name;
    doc["runs"] = timing.runs;
    doc["warmup"] = timing.warmup;
    doc["flush_l2"] = cuda && timing.flush_l2;
    if (cuda && timing.flush_l2) doc["flush_l2_by"] = timing.flush_by_reads ? "reads" : "writes";
    doc["seed"] = o.seed;
    doc["roofline"] = {{"flops_per_s", bench::kRooflineFlops},
                       {"bytes_per_s", bench::kRooflineBytes}};
    nlohmann::json rows = nlohmann::json::array();
    for (const Outcome& oc : outcomes) {
      if (oc.row) {
        rows.push_back(row_json(*oc.row));
        // NOTE: split_keys holds the resolved size; the rule that chose it is recorded too.
        if (oc.job.split_keys == kLatencySplitKeys) rows.back()["split_rule"] = "latency";
      } else {
        rows.push_back({{"preset", oc.job.preset->name},
                        {oc.job.preset->is_prefill() ? "s_kv" : "batch", oc.job.point},
                        {"backend", bench::backend_name(backend)},
                        {"error", oc.error}});
      }
    }
    doc["rows"] = rows;
    std::ofstream f(o.json);
    MODEL1_CHECK(f.good(), "--json", "a writable file", "'" + o.json + "'");
    f << doc.dump(2) << "\n";
    f.close();
    MODEL1_CHECK(!f.fail(), "--json", "the rows written", "a write error on '" + o.json + "'");
    std::fprintf(stderr, "wrote %zu rows to %s\n", outcomes.size(), o.json.c_str());
  }
  return failures == 0 ? kExitOk : kExitFail;
}

int require_gpu(int device, std::string* name) {
  if (!cuda_compiled() || !bench::cuda_runner_compiled()) {
    std::fprintf(stderr,
                 "model1: --backend cuda: this build has no CUDA backend "
                 "(configure with -DMODEL1_CUDA=ON on a machine with nvcc)\n");
    return kExitNoGpu;
  }
  const std::vector<GpuInfo> gpus = gpus_found();
  if (gpus.empty()) {
    std::fprintf(stderr,
                 "model1: --backend cuda: no CUDA GPU found (no driver or no device visible); "
                 "use --backend cpu\n");
    return kExitNoGpu;
  }
  for (const GpuInfo& g : gpus) {
    if (g.device_id == device) {
      *name = g.name;
      return kExitOk;
    }
  }
  std::fprintf(stderr, "model1: --device %d: no such GPU (%zu found)\n", device, gpus.size());
  return kExitNoGpu;
}

}  // namespace model1::cli
