// model1 bench: the GPU's SM clock, board power and clock limits while timed runs execute.
//
// Long runs of the prefill kernels hold the H200 at its 700 W board limit, where the driver
// lowers the SM clock (docs/PERF.md, twenty-first session); a time means little without the
// clock it ran at. GpuMonitor samples NVML from a background thread between start() and stop().
// NVML is loaded at run time (dlopen of libnvidia-ml.so.1, which ships with the driver), so the
// build needs neither its header nor its library; where it is missing or fails, the monitor is
// unavailable and stop() returns nothing.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

namespace model1::bench {

/// One NVML reading.
struct GpuSample {
  unsigned sm_mhz = 0;         ///< current SM clock
  unsigned power_mw = 0;       ///< board power draw (NVML averages it over about a second)
  uint64_t limit_reasons = 0;  ///< NVML clocks-event (throttle) reason bits active now
};

/// What the samples of one timed series say.
struct GpuClockSummary {
  int samples = 0;
  double sm_mhz_median = 0.0;
  unsigned sm_mhz_min = 0;
  unsigned sm_mhz_max = 0;
  double power_w_median = 0.0;
  uint64_t limit_reasons = 0;  ///< OR over the samples of the limiting bits (limiting_reasons)
  /// The names of limit_reasons' bits ("power cap", ...), in bit order.
  std::vector<std::string> limit_names() const;
};

/// The reason bits that hold clocks below what the application asked for: software power cap,
/// hardware slowdown, software and hardware thermal slowdown, hardware power brake. Idle, sync
/// boost and application- or display-clock settings are left out.
uint64_t limiting_reasons(uint64_t reasons);
/// The name of one NVML clocks-event reason bit ("power cap", "thermal (software)", ...), or
/// "bit N" for bits NVML does not document.
std::string clock_reason_name(uint64_t bit);
/// Median SM clock and power, the clock's range and the OR of the limiting reasons; nothing for
/// an empty series.
std::optional<GpuClockSummary> summarize_gpu_samples(const std::vector<GpuSample>& samples);

class GpuMonitor {
 public:
  /// `pci_bus_id`: the device as cudaDeviceGetPCIBusId spells it (NVML and CUDA number devices
  /// differently). `library`: the NVML shared object to load; `period_ms` between samples.
  explicit GpuMonitor(const std::string& pci_bus_id, int period_ms = 5,
                      const std::string& library = "libnvidia-ml.so.1");
  ~GpuMonitor();
  GpuMonitor(const GpuMonitor&) = delete;
  GpuMonitor& operator=(const GpuMonitor&) = delete;

  /// False where NVML could not be loaded or does not know the device.
  bool available() const { return nvml_ != nullptr; }
  /// Why it is unavailable ("" when available).
  const std::string& unavailable_reason() const { return why_; }
  /// Starts sampling (one sample at once, then every period_ms); no-op when unavailable.
  void start();
  /// Stops sampling and summarises what was read since start(); nothing when unavailable or
  /// when no sample succeeded.
  std::optional<GpuClockSummary> stop();

 private:
  struct Nvml;
  void sample_loop();
  std::unique_ptr<Nvml> nvml_;
  std::string why_;
  int period_ms_;
  std::atomic<bool> running_{false};
  std::thread thread_;
  std::vector<GpuSample> samples_;
};

}  // namespace model1::bench
