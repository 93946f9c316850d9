#include "gpu_monitor.h"

#include <algorithm>
#include <chrono>

#include "stats.h"

#if defined(__linux__)
#include <dlfcn.h>
#endif

namespace model1::bench {

namespace {

// NVML's clocks-event reason bits (nvml.h, nvmlClocksEventReason*; the same values as the
// older nvmlClocksThrottleReason* names).
constexpr uint64_t kGpuIdle = 0x1;
constexpr uint64_t kApplicationsClocksSetting = 0x2;
constexpr uint64_t kSwPowerCap = 0x4;
constexpr uint64_t kHwSlowdown = 0x8;
constexpr uint64_t kSyncBoost = 0x10;
constexpr uint64_t kSwThermalSlowdown = 0x20;
constexpr uint64_t kHwThermalSlowdown = 0x40;
constexpr uint64_t kHwPowerBrakeSlowdown = 0x80;
constexpr uint64_t kDisplayClockSetting = 0x100;

}  // namespace

uint64_t limiting_reasons(uint64_t reasons) {
  return reasons & (kSwPowerCap | kHwSlowdown | kSwThermalSlowdown | kHwThermalSlowdown | kHwPowerBrakeSlowdown);
}

std::string clock_reason_name(uint64_t bit) {
  switch (bit) {
    case kGpuIdle: return "idle";
    case kApplicationsClocksSetting: return "application clocks";
    case kSwPowerCap: return "power cap";
    case kHwSlowdown: return "hardware slowdown";
    case kSyncBoost: return "sync boost";
    case kSwThermalSlowdown: return "thermal (software)";
    case kHwThermalSlowdown: return "thermal (hardware)";
    case kHwPowerBrakeSlowdown: return "power brake";
    case kDisplayClockSetting: return "display clocks";
    default: break;
  }
  int n = 0;
  while (n < 63 && (uint64_t{1} << n) != bit) ++n;
  return "bit " + std::to_string(n);
}

std::vector<std::string> GpuClockSummary::limit_names() const {
  std::vector<std::string> names;
  for (int b = 0; b < 64; ++b) {
    const uint64_t bit = uint64_t{1} << b;
    if (limit_reasons & bit) names.push_back(clock_reason_name(bit));
  }
  return names;
}

std::optional<GpuClockSummary> summarize_gpu_samples(const std::vector<GpuSample>& samples) {
  if (samples.empty()) return std::nullopt;
  GpuClockSummary s;
  s.samples = static_cast<int>(samples.size());
  std::vector<double> mhz, watts;
  mhz.reserve(samples.size());
  watts.reserve(samples.size());
  s.sm_mhz_min = samples.front().sm_mhz;
  s.sm_mhz_max = samples.front().sm_mhz;
  for (const GpuSample& g : samples) {
    mhz.push_back(g.sm_mhz);
    watts.push_back(g.power_mw * 1e-3);
    s.sm_mhz_min = std::min(s.sm_mhz_min, g.sm_mhz);
    s.sm_mhz_max = std::max(s.sm_mhz_max, g.sm_mhz);
    s.limit_reasons |= limiting_reasons(g.limit_reasons);
  }
  s.sm_mhz_median = median(std::move(mhz));
  s.power_w_median = median(std::move(watts));
  return s;
}

// ---- NVML through dlopen: only the handful of entry points used here, declared by their
// documented C signatures (nvmlReturn_t is an int enum, NVML_SUCCESS = 0; nvmlDevice_t an
// opaque pointer; NVML_CLOCK_SM = 1).
struct GpuMonitor::Nvml {
  using Device = struct NvmlDeviceOpaque*;
  using InitFn = int (*)();
  using ShutdownFn = int (*)();
  using HandleByPciFn = int (*)(const char*, Device*);
  using ClockFn = int (*)(Device, int, unsigned*);
  using PowerFn = int (*)(Device, unsigned*);
  using ReasonsFn = int (*)(Device, unsigned long long*);
  static constexpr int kSuccess = 0;
  static constexpr int kClockSm = 1;

  void* lib = nullptr;
  ShutdownFn shutdown = nullptr;
  ClockFn clock = nullptr;
  PowerFn power = nullptr;
  ReasonsFn reasons = nullptr;
  Device device = nullptr;
  bool initialised = false;

  ~Nvml() {
#if defined(__linux__)
    if (initialised && shutdown) shutdown();
    if (lib) dlclose(lib);
#endif
  }

  /// Reads one sample; false if the clock cannot be read (power and reasons are optional).
  bool read(GpuSample& g) const {
    if (clock(device, kClockSm, &g.sm_mhz) != kSuccess) return false;
    unsigned mw = 0;
    if (power && power(device, &mw) == kSuccess) g.power_mw = mw;
    unsigned long long r = 0;
    if (reasons && reasons(device, &r) == kSuccess) g.limit_reasons = r;
    return true;
  }
};

GpuMonitor::GpuMonitor(const std::string& pci_bus_id, int period_ms, const std::string& library)
    : period_ms_(std::max(1, period_ms)) {
#if defined(__linux__)
  auto nvml = std::make_unique<Nvml>();
  nvml->lib = dlopen(library.c_str(), RTLD_NOW | RTLD_LOCAL);
  if (!nvml->lib) {
    why_ = "cannot load " + library;
    return;
  }
  auto sym = [&](const char* name) { return dlsym(nvml->lib, name); };
  const auto init = reinterpret_cast<Nvml::InitFn>(sym("nvmlInit_v2"));
  nvml->shutdown = reinterpret_cast<Nvml::ShutdownFn>(sym("nvmlShutdown"));
  const auto by_pci = reinterpret_cast<Nvml::HandleByPciFn>(sym("nvmlDeviceGetHandleByPciBusId_v2"));
  nvml->clock = reinterpret_cast<Nvml::ClockFn>(sym("nvmlDeviceGetClockInfo"));
  nvml->power = reinterpret_cast<Nvml::PowerFn>(sym("nvmlDeviceGetPowerUsage"));
  nvml->reasons = reinterpret_cast<Nvml::ReasonsFn>(sym("nvmlDeviceGetCurrentClocksEventReasons"));
  if (!nvml->reasons) {
    nvml->reasons = reinterpret_cast<Nvml::ReasonsFn>(sym("nvmlDeviceGetCurrentClocksThrottleReasons"));
  }
  if (!init || !nvml->shutdown || !by_pci || !nvml->clock) {
    why_ = library + " lacks the entry points used";
    return;
  }
  if (init() != Nvml::kSuccess) {
    why_ = "nvmlInit failed";
    return;
  }
  nvml->initialised = true;
  if (by_pci(pci_bus_id.c_str(), &nvml->device) != Nvml::kSuccess) {
    why_ = "NVML does not know the device at PCI " + pci_bus_id;
    return;
  }
  GpuSample probe;
  if (!nvml->read(probe)) {
    why_ = "NVML cannot read the SM clock";
    return;
  }
  nvml_ = std::move(nvml);
#else
  (void)pci_bus_id;
  (void)library;
  why_ = "NVML is read on Linux only";
#endif
}

GpuMonitor::~GpuMonitor() { stop(); }

void GpuMonitor::start() {
  if (!nvml_ || running_.load()) return;
  samples_.clear();
  running_.store(true);
  thread_ = std::thread([this] { sample_loop(); });
}

void GpuMonitor::sample_loop() {
  const auto period = std::chrono::milliseconds(period_ms_);
  auto next = std::chrono::steady_clock::now();
  for (;;) {  // at least one sample, however short the series
    GpuSample g;
    if (nvml_->read(g)) samples_.push_back(g);
    if (!running_.load()) break;
    next += period;
    std::this_thread::sleep_until(next);
  }
}

std::optional<GpuClockSummary> GpuMonitor::stop() {
  if (!thread_.joinable()) return std::nullopt;
  running_.store(false);
  thread_.join();
  return summarize_gpu_samples(samples_);
}

}  // namespace model1::bench
