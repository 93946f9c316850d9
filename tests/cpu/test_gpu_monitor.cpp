// bench/gpu_monitor: the summary of NVML samples and the monitor's behaviour without NVML (the
// sampling itself needs a GPU: scripts/gpu-check's bench rows carry it).
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "gpu_monitor.h"

namespace model1::bench {
namespace {

TEST(GpuMonitor, SummaryOfNoSamplesIsAbsent) { EXPECT_FALSE(summarize_gpu_samples({}).has_value()); }

TEST(GpuMonitor, SummaryTakesMediansRangeAndLimitingReasons) {
  // A power-capped prefill run as the H200 showed it: 0x4 = software power cap; 0x1 (idle)
  // is not a limit and must not be reported.
  const std::vector<GpuSample> samples = {
      {1980, 650000, 0x1}, {1740, 688000, 0x4}, {1725, 690000, 0x4}, {1770, 702000, 0x0}};
  const auto s = summarize_gpu_samples(samples);
  ASSERT_TRUE(s.has_value());
  EXPECT_EQ(s->samples, 4);
  EXPECT_DOUBLE_EQ(s->sm_mhz_median, 0.5 * (1740 + 1770));
  EXPECT_EQ(s->sm_mhz_min, 1725u);
  EXPECT_EQ(s->sm_mhz_max, 1980u);
  EXPECT_DOUBLE_EQ(s->power_w_median, 0.5 * (688.0 + 690.0));
  EXPECT_EQ(s->limit_reasons, uint64_t{0x4});
  EXPECT_EQ(s->limit_names(), std::vector<std::string>{"power cap"});
}

TEST(GpuMonitor, OddCountMedianAndSeveralLimits) {
  const std::vector<GpuSample> samples = {{1500, 700000, 0x20}, {1410, 701000, 0x4 | 0x2}, {1600, 600000, 0x80}};
  const auto s = summarize_gpu_samples(samples);
  ASSERT_TRUE(s.has_value());
  EXPECT_DOUBLE_EQ(s->sm_mhz_median, 1500.0);
  EXPECT_DOUBLE_EQ(s->power_w_median, 700.0);
  // application clocks (0x2) are a setting, not a limit
  EXPECT_EQ(s->limit_reasons, uint64_t{0x4 | 0x20 | 0x80});
  EXPECT_EQ(s->limit_names(), (std::vector<std::string>{"power cap", "thermal (software)", "power brake"}));
}

TEST(GpuMonitor, ReasonNames) {
  EXPECT_EQ(clock_reason_name(0x1), "idle");
  EXPECT_EQ(clock_reason_name(0x4), "power cap");
  EXPECT_EQ(clock_reason_name(0x8), "hardware slowdown");
  EXPECT_EQ(clock_reason_name(0x40), "thermal (hardware)");
  EXPECT_EQ(clock_reason_name(uint64_t{1} << 12), "bit 12");
  EXPECT_EQ(limiting_reasons(0x1 | 0x2 | 0x10 | 0x100), uint64_t{0});
  EXPECT_EQ(limiting_reasons(0x1ff), uint64_t{0x4 | 0x8 | 0x20 | 0x40 | 0x80});
}

TEST(GpuMonitor, MissingLibraryMakesItUnavailableAndHarmless) {
  GpuMonitor m("0000:00:00.0", 1, "libmodel1-no-such-nvml.so");
  EXPECT_FALSE(m.available());
  EXPECT_NE(m.unavailable_reason().find("libmodel1-no-such-nvml.so"), std::string::npos) << m.unavailable_reason();
  m.start();
  EXPECT_FALSE(m.stop().has_value());
  EXPECT_FALSE(m.stop().has_value());  // a second stop is fine too
}

}  // namespace
}  // namespace model1::bench
