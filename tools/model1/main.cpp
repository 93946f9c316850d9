// model1: command-line front end (info, bench, check). The only place that exits.
#include <CLI/CLI.hpp>

#include <cstdio>
#include <exception>
#include <optional>
#include <string>

#include "commands.h"
#include "model1/decode.h"
#include "model1/error.h"
#include "model1/version.h"

namespace {

/// `value` as a whole number (all of it), or nullopt.
std::optional<long long> parse_integer(const std::string& value) {
  size_t used = 0;
  long long v = 0;
  try {
    v = std::stoll(value, &used);
  } catch (const std::exception&) {
    return std::nullopt;
  }
  if (used != value.size()) return std::nullopt;
  return v;
}

/// Accepts whole numbers >= `min` (per element for comma lists), with a readable message.
CLI::Validator integer_at_least(long long min) {
  return CLI::Validator(
      [min](std::string& value) -> std::string {
        const std::optional<long long> v = parse_integer(value);
        if (!v) return "expected an integer, got '" + value + "'";
        if (*v < min) return "expected an integer >= " + std::to_string(min) + ", got " + value;
        return std::string();
      },
      min > 0 ? "INT>=" + std::to_string(min) : "INT>=0");
}

/// --split-keys elements: a split size (>= 64; the library checks the rest) or the word
/// "latency" (DecodeOptions::split_keys = kLatencySplitKeys, the rule picks per workload).
CLI::Validator split_keys_value() {
  return CLI::Validator(
      [](std::string& value) -> std::string {
        if (value == "latency") {
          value = std::to_string(model1::kLatencySplitKeys);
          return std::string();
        }
        const std::optional<long long> v = parse_integer(value);
        if (!v || (*v < 64 && *v != model1::kLatencySplitKeys)) {
          return "expected an integer >= 64 or 'latency', got '" + value + "'";
        }
        return std::string();
      },
      "INT>=64|latency");
}

void print_error(const model1::Error& e) {
  std::fprintf(stderr, "model1: error in '%s': expected %s, got %s\n", e.argument().c_str(),
               e.expected().c_str(), e.actual().c_str());
}

}  // namespace

int main(int argc, char** argv) {
  using model1::cli::BenchOptions;
  using model1::cli::CheckOptions;
  CLI::App app{std::string("model1 ") + model1::version_string() +
               ": MODEL1 sparse attention (FP8 paged KV caches, sparse decode and prefill)"};
  app.require_subcommand(1);
  app.set_version_flag("--version", std::string(model1::version_string()));

  app.add_subcommand("info", "Version, backends, GPUs, cache formats and benchmark presets");

  BenchOptions bench;
  CLI::App* bench_cmd = app.add_subcommand(
      "bench", "Time the presets of PERFORMANCE.md and compare them with FlashMLA's times");
  bench_cmd->add_option("--preset", bench.presets, "Preset names, comma-separated, or 'all'")
      ->required();
  bench_cmd
      ->add_option("--batch", bench.batches,
                   "Batch sizes for decode presets, comma-separated (default: each preset's)")
      ->delimiter(',')
      ->check(integer_at_least(1));
  bench_cmd
      ->add_option("--s-kv", bench.s_kvs,
                   "s_kv values for prefill presets, comma-separated (default: each preset's)")
      ->delimiter(',')
      ->check(integer_at_least(1));
  bench_cmd->add_option("--s-q", bench.s_q, "Prefill query tokens (default: the preset's 4096)")
      ->check(integer_at_least(1));
  bench_cmd->add_option("--backend", bench.backend, "cpu or cuda")
      ->check(CLI::IsMember({"cpu", "cuda"}))
      ->capture_default_str();
  bench_cmd->add_option("--runs", bench.runs, "Timed runs per row (default: cpu 3, cuda 30)")
      ->check(integer_at_least(1));
  bench_cmd->add_option("--warmup", bench.warmup, "Untimed runs first (default: cpu 1, cuda 5)")
      ->check(integer_at_least(0));
  bench_cmd->add_option("--seed", bench.seed, "Workload seed")->capture_default_str();
  bench_cmd->add_option("--device", bench.device, "CUDA device ordinal")->capture_default_str();
  bench_cmd->add_flag("--no-flush", bench.no_flush, "CUDA: do not flush L2 between timed runs");
  bench_cmd->add_flag("--flush-reads", bench.flush_reads,
                      "CUDA: flush L2 by reading the flush buffer instead of overwriting it (clean lines, not "
                      "dirty ones, when the timed run starts)")
      ->excludes("--no-flush");
  bench_cmd->add_flag("--dry-run", bench.dry_run,
                      "Generate the workloads and print FLOPs, bytes and roofline floors only");
  bench_cmd->add_option("--json", bench.json, "Also write the rows to this JSON file");
  bench_cmd
      ->add_option("--split-keys", bench.split_keys,
                   "Decode: keys per split-KV split of the plans, comma-separated, a row each (multiples "
                   "of 64 in [64, 16384], or 'latency': the plan's latency rule, DecodeOptions::split_keys "
                   "= -1, the smallest split whose CTAs fit the GPU in one wave, per workload; the "
                   "row shows the split it took; default: the library's)")
      ->delimiter(',')
      ->transform(split_keys_value());

  CheckOptions check;
  CLI::App* check_cmd = app.add_subcommand(
      "check", "Run a backend on a preset workload and compare with the float64 oracle");
  check_cmd->add_option("--preset", check.preset, "Preset name")->required();
  check_cmd->add_option("--batch", check.batch, "Decode batch size (default 2)")
      ->check(integer_at_least(1));
  check_cmd->add_option("--s-kv", check.s_kv, "Prefill s_kv (default: the preset's first)")
      ->check(integer_at_least(1));
  check_cmd->add_option("--s-q", check.s_q, "Prefill query tokens")
      ->check(integer_at_least(1))
      ->capture_default_str();
  check_cmd->add_option("--backend", check.backend, "cpu or cuda")
      ->check(CLI::IsMember({"cpu", "cuda"}))
      ->capture_default_str();
  check_cmd
      ->add_option("--split-keys", check.split_keys,
                   "Decode: keys per split-KV split of the plan (a multiple of 64 in [64, 16384], or "
                   "'latency': the plan's latency rule, DecodeOptions::split_keys = -1; default: "
                   "the library's)")
      ->transform(split_keys_value());
  check_cmd->add_option("--seed", check.seed, "Workload seed")->capture_default_str();
  check_cmd->add_option("--device", check.device, "CUDA device ordinal")->capture_default_str();

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  }

  try {
    if (app.got_subcommand("info")) return model1::cli::run_info();
    if (app.got_subcommand(bench_cmd)) return model1::cli::run_bench(bench);
    if (app.got_subcommand(check_cmd)) return model1::cli::run_check(check);
  } catch (const model1::Error& e) {
    print_error(e);
    return model1::cli::kExitFail;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "model1: error: %s\n", e.what());
    return model1::cli::kExitFail;
  }
  return model1::cli::kExitFail;
}
