// model1 bench: comparison of backend outputs with the float64 oracle, with the tolerances of
// MODEL1.md (decode) and FlashMLA's prefill test (prefill). Used by `model1 check` and tests.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "model1/decode.h"
#include "model1/prefill.h"
#include "oracle.h"

namespace model1::bench {

/// Elementwise bound: |ours - ref| <= abs + rel * |ref| (or max(abs, rel * |ref|) when
/// `either` is set: "abs or rel"). `cosine` > 0 also bounds the cosine distance of the whole
/// tensor, 1 - 2 <ours, ref> / (|ours|^2 + |ref|^2).
struct Tolerance {
  double abs = 0.0;
  double rel = 0.0;
  bool either = false;
  double cosine = 0.0;
  std::string describe() const;
};

/// MODEL1.md section 3.
inline const Tolerance kDecodeOutTolerance{1e-3, 2.01 / 128, false, 5e-6};
inline const Tolerance kDecodeLseTolerance{1e-6, 8.01 / 65536, false, 0.0};
/// Sparse prefill (FlashMLA's test): out abs 8e-4 or rel 3.01/128, cosine 7e-6; max_logits and
/// lse relative 2.01/65536 plus the decode lse's absolute 1e-6.
/// NOTE: a purely relative bound means nothing for a logit near 0 (a row with one or two keys
/// whose dot product cancels): the float32 dot products of two backends differ by ~1e-8
/// absolute, so such a row failed `model1 check` on the GPU (prefill-h64-len: topk_length
/// ~ U[0, 512] has such rows) while the tests, which already added 1e-6, passed.
inline const Tolerance kPrefillOutTolerance{8e-4, 3.01 / 128, true, 7e-6};
inline const Tolerance kPrefillStatTolerance{1e-6, 2.01 / 65536, false, 0.0};

/// How one output tensor compares.
struct TensorComparison {
  std::string name;
  Tolerance tolerance;
  int64_t count = 0;           ///< elements compared
  int64_t nan_count = 0;       ///< NaN in ours (never passes)
  int64_t over_tolerance = 0;  ///< elements outside the bound (NaN and inf mismatches included)
  int64_t inf_mismatch = 0;    ///< ref infinite and ours not the same infinity, or vice versa
  double max_abs_err = 0.0;    ///< over elements where both are finite
  double mean_abs_err = 0.0;
  int64_t worst_index = -1;  ///< flat index of the element furthest past (or nearest) its bound
  double worst_ours = 0.0, worst_ref = 0.0;
  double cosine_distance = 0.0;            ///< whole tensor (finite elements)
  double worst_row_cosine_distance = 0.0;  ///< per row of `row_length` elements
  int64_t worst_row = -1;
  bool pass = false;
};

/// Compares two row-major arrays of equal length. `row_length` > 0 also reports the worst
/// per-row cosine distance (information; the pass rule uses the whole-tensor figure).
TensorComparison compare_values(const std::string& name, const std::vector<double>& ours,
                                const std::vector<double>& ref, const Tolerance& tolerance,
                                int64_t row_length = 0);

/// Reads a CPU bf16 / f32 tensor (any rank and strides) into row-major doubles.
std::vector<double> read_tensor(const TensorView& view);

struct Comparison {
  std::vector<TensorComparison> tensors;
  bool pass = false;
};
/// args.out / args.lse (CPU tensors) against the oracle.
Comparison compare_decode(const SparseDecodeArgs& args, const oracle::DecodeRef& ref);
/// args.out / max_logits / lse (CPU tensors) against the oracle.
Comparison compare_prefill(const SparsePrefillArgs& args, const oracle::PrefillRef& ref);

}  // namespace model1::bench
