// model1 bench: output comparison against the oracle.
#include "compare.h"

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdio>
#include <cstring>

#include "model1/error.h"
#include "workload.h"

namespace model1::bench {
namespace {

double cosine_distance(double dot, double norms) {
  // NOTE: both all-zero (e.g. rows with no valid key) is a perfect match.
  return norms > 0.0 ? 1.0 - 2.0 * dot / norms : 0.0;
}

}  // namespace

std::string Tolerance::describe() const {
  char buf[160];
  if (either) {
    std::snprintf(buf, sizeof buf, "|err| <= max(%.3g, %.6g*|ref|)", abs, rel);
  } else if (abs > 0.0) {
    std::snprintf(buf, sizeof buf, "|err| <= %.3g + %.6g*|ref|", abs, rel);
  } else {
    std::snprintf(buf, sizeof buf, "|err| <= %.6g*|ref|", rel);
  }
  std::string s = buf;
  if (cosine > 0.0) {
    std::snprintf(buf, sizeof buf, ", cosine distance < %.3g", cosine);
    s += buf;
  }
  return s;
}

TensorComparison compare_values(const std::string& name, const std::vector<double>& ours,
                                const std::vector<double>& ref, const Tolerance& tolerance,
                                int64_t row_length) {
  MODEL1_CHECK(ours.size() == ref.size(), name, std::to_string(ref.size()) + " elements",
               std::to_string(ours.size()));
  TensorComparison c;
  c.name = name;
  c.tolerance = tolerance;
  c.count = static_cast<int64_t>(ours.size());
  double sum_abs = 0.0, dot = 0.0, norms = 0.0, row_dot = 0.0, row_norms = 0.0;
  double worst_ratio = -1.0;
  int64_t finite = 0;
  for (int64_t i = 0; i < c.count; ++i) {
    const double o = ours[i], r = ref[i];
    bool bad = false;
    double ratio = 0.0;
    if (std::isnan(o)) {
      ++c.nan_count;
      bad = true;
      ratio = INFINITY;
    } else if (std::isinf(r) || std::isinf(o) || std::isnan(r)) {
      if (!(o == r)) {
        ++c.inf_mismatch;
        bad = true;
        ratio = INFINITY;
      }
    } else {
      const double err = std::fabs(o - r);
      const double bound = tolerance.either ? std::max(tolerance.abs, tolerance.rel * std::fabs(r))
                                            : tolerance.abs + tolerance.rel * std::fabs(r);
      bad = !(err <= bound);
      ratio = bound > 0.0 ? err / bound : (err > 0.0 ? INFINITY : 0.0);
      c.max_abs_err = std::max(c.max_abs_err, err);
      sum_abs += err;
      ++finite;
      dot += o * r;
      norms += o * o + r * r;
      row_dot += o * r;
      row_norms += o * o + r * r;
    }
    if (bad) ++c.over_tolerance;
    if (ratio > worst_ratio) {
      worst_ratio = ratio;
      c.worst_index = i;
      c.worst_ours = o;
      c.worst_ref = r;
    }
    if (row_length > 0 && (i + 1) % row_length == 0) {
      const double d = cosine_distance(row_dot, row_norms);
      if (c.worst_row < 0 || d > c.worst_row_cosine_distance) {
        c.worst_row_cosine_distance = d;
        c.worst_row = i / row_length;
      }
      row_dot = row_norms = 0.0;
    }
  }
  c.mean_abs_err = finite > 0 ? sum_abs / static_cast<double>(finite) : 0.0;
  c.cosine_distance = cosine_distance(dot, norms);
  c.pass = c.over_tolerance == 0 && c.nan_count == 0 &&
           (tolerance.cosine <= 0.0 || c.cosine_distance < tolerance.cosine);
  return c;
}

std::vector<double> read_tensor(const TensorView& view) {
  MODEL1_CHECK(view.device == Device::kCPU, "tensor", "a CPU tensor", view.describe());
  MODEL1_CHECK(view.dtype == DType::kBF16 || view.dtype == DType::kF32, "tensor",
               "dtype bf16 or f32", dtype_name(view.dtype));
  const int64_t n = view.numel();
  std::vector<double> out(static_cast<size_t>(n));
  std::array<int64_t, kMaxDims> idx{};
  for (int64_t flat = 0; flat < n; ++flat) {
    int64_t offset = 0;
    for (int d = 0; d < view.ndim; ++d) offset += idx[d] * view.strides[d];
    if (view.dtype == DType::kBF16) {
      out[flat] = bf16_bits_to_float(view.ptr<const uint16_t>()[offset]);
    } else {
      out[flat] = view.ptr<const float>()[offset];
    }
    for (int d = view.ndim - 1; d >= 0; --d) {  // row-major increment
      if (++idx[d] < view.shape[d]) break;
      idx[d] = 0;
    }
  }
  return out;
}

Comparison compare_decode(const SparseDecodeArgs& args, const oracle::DecodeRef& ref) {
  Comparison c;
  c.tensors.push_back(compare_values("out", read_tensor(args.out), ref.out, kDecodeOutTolerance,
                                     args.out.size(-1)));
  c.tensors.push_back(compare_values("lse", read_tensor(args.lse), ref.lse, kDecodeLseTolerance));
  c.pass = c.tensors[0].pass && c.tensors[1].pass;
  return c;
}

Comparison compare_prefill(const SparsePrefillArgs& args, const oracle::PrefillRef& ref) {
  Comparison c;
  c.tensors.push_back(compare_values("out", read_tensor(args.out), ref.out, kPrefillOutTolerance,
                                     args.out.size(-1)));
  c.tensors.push_back(compare_values("max_logits", read_tensor(args.max_logits), ref.max_logits,
                                     kPrefillStatTolerance));
  c.tensors.push_back(compare_values("lse", read_tensor(args.lse), ref.lse, kPrefillStatTolerance));
  c.pass = c.tensors[0].pass && c.tensors[1].pass && c.tensors[2].pass;
  return c;
}

}  // namespace model1::bench
