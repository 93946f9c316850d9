// model1 bench: runs a workload on a backend, times it, and turns timings into result rows.
//
// CPU: wall clock (steady_clock), `warmup` untimed runs, then `runs` timed runs, median.
// CUDA (bench/cuda_runner.cpp, only in builds with MODEL1_CUDA): the workload is copied to the
// device once; the plan is built once (model1::plan_decode, not timed); each timed call is
// bracketed by cudaEvents on a private stream, after an untimed cudaMemsetAsync over a buffer
// of at least twice the L2 size so no cache data stays in L2; median of `runs`. NVML is sampled
// meanwhile (GpuMonitor) for the clock the runs saw.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "gpu_monitor.h"
#include "presets.h"
#include "workload.h"

namespace model1::bench {

enum class Backend : uint8_t { kCpu, kCuda };
const char* backend_name(Backend backend);  // "cpu", "cuda"
/// "cpu" or "cuda"; throws model1::Error (argument "backend") otherwise.
Backend parse_backend(std::string_view name);

struct TimingOptions {
  int runs = 3;          ///< timed runs (median reported)
  int warmup = 1;        ///< untimed runs first
  int device = 0;        ///< CUDA device ordinal
  bool flush_l2 = true;  ///< CUDA: overwrite a >= 2x L2 buffer before every timed run
  /// CUDA, with flush_l2: read that buffer instead of overwriting it, so the timed run starts
  /// with clean lines in L2 rather than dirty ones it must first write back.
  bool flush_by_reads = false;
  int split_keys = 0;    ///< decode: the plan's DecodeOptions::split_keys (0 = default)
};

struct Timing {
  std::vector<double> samples_us;  ///< one per timed run, in run order
  double median_us = 0.0;
  double min_us = 0.0;
  double max_us = 0.0;
  std::string kernel;  ///< kernel family timed ("cpu", "portable", "sm90a", ...; decode_kernel_name)
  int split_keys = 0;  ///< decode: the timed plan's keys per split (DecodePlan::split_keys)
  /// CUDA: the SM clock, board power and clock limits while the timed runs executed (NVML,
  /// GpuMonitor); absent on the CPU and where NVML is unavailable.
  std::optional<GpuClockSummary> gpu;
};
/// Median (mean of the middle two for even counts), min and max of `samples_us`.
Timing summarize(std::vector<double> samples_us);

/// Times sparse_decode / sparse_prefill on `backend`. The workload's host outputs are written
/// on the CPU (they are scratch during timing); on CUDA they are untouched.
Timing time_decode(DecodeWorkload& workload, Backend backend, const TimingOptions& options);
Timing time_prefill(PrefillWorkload& workload, Backend backend, const TimingOptions& options);

/// Runs once and leaves the outputs in the workload's host buffers (CUDA: copied back). The
/// device outputs are filled with NaN bytes before the call, so an unwritten element shows.
/// Decode runs through a plan made with DecodeOptions::split_keys = `split_keys` (0 = the
/// default) and returns that plan's DecodePlan::split_keys.
int run_decode(DecodeWorkload& workload, Backend backend, int device = 0, int split_keys = 0);
void run_prefill(PrefillWorkload& workload, Backend backend, int device = 0);

/// True when this build carries the CUDA runner (MODEL1_CUDA=ON).
bool cuda_runner_compiled();

/// One line of a benchmark table / one JSON record.
struct ResultRow {
  std::string preset;
  std::string kind;     ///< "decode" or "prefill"
  std::string backend;  ///< "cpu" or "cuda"
  std::string format;   ///< cache format name
  std::string device;   ///< "cpu" or the GPU's name
  int64_t batch = 0;    ///< decode batch (0 for prefill)
  int64_t s_kv = 0;     ///< prefill s_kv (0 for decode)
  int64_t s_q = 0, h_q = 0, d_qk = 0, topk = 0, extra_topk = 0;
  uint64_t seed = 0;
  int runs = 0;
  Timing timing;
  Cost cost;
  double tflops = 0.0;                ///< flops / median time
  double gbps = 0.0;                  ///< bytes / median time (GB/s, 1e9)
  double roofline_fraction = 0.0;     ///< floor_us / median_us
  std::optional<double> flashmla_us;  ///< the bar, where PERFORMANCE.md has one
  std::optional<double> speedup;      ///< flashmla_us / median_us
  /// "b=64" or "s_kv=32768".
  std::string point_label() const;
};

ResultRow make_decode_row(const Preset& preset, const DecodeWorkload& workload, Backend backend,
                          const std::string& device, int runs, const Timing& timing);
/// The bar applies only at the preset's own s_q.
ResultRow make_prefill_row(const Preset& preset, const PrefillWorkload& workload, Backend backend,
                           const std::string& device, int runs, const Timing& timing);

}  // namespace model1::bench
