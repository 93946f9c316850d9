// model1 bench: CPU timing, backend dispatch, result rows.
#include "runner.h"

#include <algorithm>
#include <chrono>
#include <string>

#include "model1/decode.h"
#include "model1/error.h"
#include "model1/prefill.h"
#include "stats.h"

#if MODEL1_WITH_CUDA
#include "cuda_runner.h"
#endif

namespace model1::bench {
namespace {

void check_timing_options(const TimingOptions& options) {
  MODEL1_CHECK(options.runs >= 1, "runs", "runs >= 1", std::to_string(options.runs));
  MODEL1_CHECK(options.warmup >= 0, "warmup", "warmup >= 0", std::to_string(options.warmup));
}

#if !MODEL1_WITH_CUDA
[[noreturn]] void throw_no_cuda() {
  MODEL1_THROW("backend", "a build with the CUDA backend (MODEL1_CUDA=ON) for --backend cuda",
               "this build has the CPU backend only");
}
#endif

template <typename F>
Timing time_cpu(const TimingOptions& options, const F& call) {
  check_timing_options(options);
  for (int i = 0; i < options.warmup; ++i) call();
  std::vector<double> samples;
  samples.reserve(options.runs);
  for (int i = 0; i < options.runs; ++i) {
    const auto start = std::chrono::steady_clock::now();
    call();
    const auto stop = std::chrono::steady_clock::now();
    samples.push_back(std::chrono::duration<double, std::micro>(stop - start).count());
  }
  return summarize(std::move(samples));
}

void fill_rates(ResultRow& row) {
  const double us = row.timing.median_us;
  if (us > 0.0) {
    row.tflops = row.cost.flops / (us * 1e-6) / 1e12;
    row.gbps = row.cost.bytes / (us * 1e-6) / 1e9;
    row.roofline_fraction = row.cost.floor_us() / us;
    if (row.flashmla_us) row.speedup = *row.flashmla_us / us;
  }
}

}  // namespace

const char* backend_name(Backend backend) { return backend == Backend::kCuda ? "cuda" : "cpu"; }

Backend parse_backend(std::string_view name) {
  if (name == "cpu") return Backend::kCpu;
  if (name == "cuda") return Backend::kCuda;
  MODEL1_THROW("backend", "cpu or cuda", "'" + std::string(name) + "'");
}

bool cuda_runner_compiled() {
#if MODEL1_WITH_CUDA
  return true;
#else
  return false;
#endif
}

Timing summarize(std::vector<double> samples_us) {
  Timing t;
  t.samples_us = samples_us;
  if (samples_us.empty()) return t;
  t.median_us = median(samples_us);
  const auto [lo, hi] = std::minmax_element(samples_us.begin(), samples_us.end());
  t.min_us = *lo;
  t.max_us = *hi;
  return t;
}

Timing time_decode(DecodeWorkload& workload, Backend backend, const TimingOptions& options) {
  if (backend == Backend::kCuda) {
#if MODEL1_WITH_CUDA
    check_timing_options(options);
    return cuda_runner::time_decode(workload, options);
#else
    throw_no_cuda();
#endif
  }
  const SparseDecodeArgs& args = workload.args();
  DecodeOptions plan_options;
  plan_options.split_keys = options.split_keys;
  // NOTE: built once, not timed (as on CUDA); validates split_keys like the CUDA plan
  const DecodePlan plan = plan_decode(args, plan_options);
  Timing t = time_cpu(options, [&] { sparse_decode(args, plan); });
  t.kernel = "cpu";
  t.split_keys = plan.split_keys();
  return t;
}

Timing time_prefill(PrefillWorkload& workload, Backend backend, const TimingOptions& options) {
  if (backend == Backend::kCuda) {
#if MODEL1_WITH_CUDA
    check_timing_options(options);
    return cuda_runner::time_prefill(workload, options);
#else
    throw_no_cuda();
#endif
  }
  const SparsePrefillArgs& args = workload.args();
  Timing t = time_cpu(options, [&] { sparse_prefill(args); });
  t.kernel = "cpu";
  return t;
}

int run_decode(DecodeWorkload& workload, Backend backend, int device, int split_keys) {
  if (backend == Backend::kCuda) {
#if MODEL1_WITH_CUDA
    return cuda_runner::run_decode(workload, device, split_keys);
#else
    (void)device;
    throw_no_cuda();
#endif
  }
  DecodeOptions plan_options;
  plan_options.split_keys = split_keys;
  // NOTE: validates split_keys as on CUDA (the CPU backend has no splits)
  const DecodePlan plan = plan_decode(workload.args(), plan_options);
  workload.poison_outputs();
  sparse_decode(workload.args(), plan);
  return plan.split_keys();
}

void run_prefill(PrefillWorkload& workload, Backend backend, int device) {
  if (backend == Backend::kCuda) {
#if MODEL1_WITH_CUDA
    cuda_runner::run_prefill(workload, device);
    return;
#else
    (void)device;
    throw_no_cuda();
#endif
  }
  workload.poison_outputs();
  sparse_prefill(workload.args());
}

std::string ResultRow::point_label() const {
  return kind == "prefill" ? "s_kv=" + std::to_string(s_kv) : "b=" + std::to_string(batch);
}

ResultRow make_decode_row(const Preset& preset, const DecodeWorkload& workload, Backend backend,
                          const std::string& device, int runs, const Timing& timing) {
  const DecodeSpec& spec = workload.spec();
  ResultRow row;
  row.preset = preset.name;
  row.kind = "decode";
  row.backend = backend_name(backend);
  row.format = kv_format_name(spec.format);
  row.device = device;
  row.batch = spec.batch;
  row.s_q = spec.s_q;
  row.h_q = spec.h_q;
  row.d_qk = kv_format_d_qk(spec.format);
  row.topk = spec.main.topk;
  row.extra_topk = spec.extra ? spec.extra->topk : 0;
  row.seed = workload.seed();
  row.runs = runs;
  row.timing = timing;
  row.cost = workload.cost();
  // NOTE: the bar was measured on the preset's exact shapes; s_q and h_q are fixed by presets.
  row.flashmla_us = preset.bar_us(spec.batch);
  fill_rates(row);
  return row;
}

ResultRow make_prefill_row(const Preset& preset, const PrefillWorkload& workload, Backend backend,
                           const std::string& device, int runs, const Timing& timing) {
  const PrefillSpec& spec = workload.spec();
  ResultRow row;
  row.preset = preset.name;
  row.kind = "prefill";
  row.backend = backend_name(backend);
  row.format = "bf16";
  row.device = device;
  row.s_kv = spec.s_kv;
  row.s_q = spec.s_q;
  row.h_q = spec.h_q;
  row.d_qk = spec.d_qk;
  row.topk = spec.topk;
  row.seed = workload.seed();
  row.runs = runs;
  row.timing = timing;
  row.cost = workload.cost();
  if (spec.s_q == preset.s_q) row.flashmla_us = preset.bar_us(spec.s_kv);
  fill_rates(row);
  return row;
}

}  // namespace model1::bench
