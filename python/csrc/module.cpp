// model1 Python extension `model1._C`: the C++ API over DLPack tensors, without copies.
//
// Every function takes arrays from any DLPack framework (see tensor_import.h), runs on the
// arrays' device (CUDA work on `stream`, an integer cudaStream_t, 0 = legacy default stream)
// and writes caller-provided outputs. The friendlier wrappers that allocate outputs live in
// python/model1/_api.py. model1::Error becomes model1.Error (a ValueError subclass).
#include <nanobind/nanobind.h>
#include <nanobind/stl/optional.h>
#include <nanobind/stl/string.h>
#include <nanobind/stl/vector.h>

#include <cmath>
#include <optional>
#include <string>

#include "model1/model1.h"
#include "tensor_import.h"

namespace nb = nanobind;
using namespace nb::literals;

namespace model1::python {
namespace {

// Raises model1.Error (python/model1/_error.py) carrying the fields of a model1::Error.
void raise_model1_error(const Error& e) {
  try {
    nb::object cls = nb::module_::import_("model1._error").attr("Error");
    nb::object exc = cls(e.what(), e.argument(), e.expected(), e.actual(), e.file(), e.line());
    PyErr_SetObject(cls.ptr(), exc.ptr());
  } catch (nb::python_error&) {
    // NOTE: only when model1._error cannot be imported (a broken install); keep the message.
    PyErr_SetString(PyExc_ValueError, e.what());
  }
}

float resolve_sm_scale(std::optional<double> sm_scale) {
  return sm_scale ? static_cast<float>(*sm_scale) : NAN;
}

// Builds SparseDecodeArgs from Python arguments (all imports before any work starts).
SparseDecodeArgs decode_args(TensorImporter& imp, nb::handle q, nb::handle kv,
                             nb::handle kv_format, int64_t kv_page_size, nb::handle indices,
                             nb::handle topk_length, nb::handle extra_kv,
                             nb::handle extra_kv_format, int64_t extra_kv_page_size,
                             nb::handle extra_indices, nb::handle extra_topk_length,
                             nb::handle attn_sink, std::optional<double> sm_scale,
                             nb::handle out, nb::handle lse) {
  SparseDecodeArgs args;
  args.q = imp.tensor(q, "q", Access::kRead);
  args.kv = imp.cache(kv, kv_format, kv_page_size, "kv", Access::kRead);
  args.indices = imp.tensor(indices, "indices", Access::kRead);
  args.topk_length = imp.optional(topk_length, "topk_length", Access::kRead);
  // NOTE: both caches share one format: an extra byte cache given without a format of its own
  // (and not inferable from its shape) takes the main cache's format.
  args.extra_kv = imp.optional_cache(extra_kv, extra_kv_format, extra_kv_page_size, "extra_kv",
                                     Access::kRead, args.kv.format);
  args.extra_indices = imp.optional(extra_indices, "extra_indices", Access::kRead);
  args.extra_topk_length = imp.optional(extra_topk_length, "extra_topk_length", Access::kRead);
  args.attn_sink = imp.optional(attn_sink, "attn_sink", Access::kRead);
  args.sm_scale = resolve_sm_scale(sm_scale);
  args.out = imp.tensor(out, "out", Access::kWrite);
  args.lse = imp.tensor(lse, "lse", Access::kWrite);
  return args;
}

nb::dict cache_info(nb::handle data, nb::handle format, int64_t page_size) {
  // NOTE: nothing is read, so no stream ordering is needed; import as read-only.
  TensorImporter imp = TensorImporter::metadata_only();
  const KvCacheView cache = imp.cache(data, format, page_size, "kv", Access::kRead);
  const TensorView& v = cache.data;
  MODEL1_CHECK(v.ndim >= 2, "kv.data.shape", "a cache of rank 2, 3 or 4", v.describe());
  const int d_qk = cache.format == KvFormat::kBf16 ? static_cast<int>(v.shape[v.ndim - 1])
                                                   : kv_format_d_qk(cache.format);
  nb::dict info;
  info["format"] = kv_format_name(cache.format);
  info["page_size"] = cache.page_size;
  info["num_pages"] = cache.num_pages();
  info["num_slots"] = cache.num_slots();
  info["d_qk"] = d_qk;
  info["bytes_per_token"] = kv_bytes_per_token(cache.format, d_qk);
  info["page_stride"] = v.ndim > 0 ? v.strides[0] * dtype_size(v.dtype) : 0;  // bytes
  info["min_page_stride"] = kv_min_page_stride(cache.format, cache.page_size, d_qk);
  return info;
}

const char* const kStreamDoc =
    "stream: cudaStream_t as an int for CUDA arrays (0 = legacy default stream; PyTorch callers "
    "pass torch.cuda.current_stream().cuda_stream); ignored for CPU arrays.\n"
    "sync_producers: True exports CUDA arrays with __dlpack__(stream=stream), so each producer "
    "orders its pending work before `stream` (on the GPU, no host wait); False (stream -1) when "
    "the arrays are already ordered on `stream`, e.g. it is PyTorch's current stream.";

}  // namespace
}  // namespace model1::python

NB_MODULE(_C, m) {
  using namespace model1;
  using namespace model1::python;

  m.doc() =
      "model1._C: the model1 C++ library over DLPack tensors (NumPy, ml_dtypes, PyTorch, CuPy, "
      "JAX; CPU or CUDA), without copies. Outputs are caller-provided arrays. Prefer the "
      "wrappers in the `model1` package, which also allocate outputs.";

  nb::register_exception_translator([](const std::exception_ptr& p, void*) {
    try {
      std::rethrow_exception(p);
    } catch (const Error& e) {
      raise_model1_error(e);
    }
  });

  // ---- build information -------------------------------------------------------------------
  m.attr("DEFAULT_SPLIT_KEYS") = model1::kDefaultSplitKeys;
  m.attr("LATENCY_SPLIT_KEYS") = model1::kLatencySplitKeys;
  m.def("latency_split_keys", &model1::latency_split_keys, "b"_a, "s_q"_a, "h_q"_a,
        "keys_per_request"_a, "num_sms"_a,
        "The split size that minimises a batch's latency by the measured rule: the smallest "
        "multiple of 64 keys whose splits of b * s_q requests of up to keys_per_request keys "
        "(topk + extra_topk) launch at most num_sms CTAs, one wave (h_q 128: two CTAs per "
        "split); DEFAULT_SPLIT_KEYS when one split per request already needs more. A function "
        "of the batch: plans made with different results are not bit-identical.");
  m.def("version", [] { return std::string(version_string()); },
        "The library version, e.g. \"0.1.0\".");
  m.def("cuda_compiled", &cuda_compiled, "True when the library was built with the CUDA backend.");
  m.def("cuda_archs", &cuda_archs_compiled,
        "GPU architectures the CUDA backend carries machine code for, e.g. ['sm_80', 'sm_90a'].");
  m.def(
      "gpus",
      [] {
        nb::list result;
        for (const GpuInfo& g : gpus_found()) {
          nb::dict d;
          d["device_id"] = g.device_id;
          d["name"] = g.name;
          d["sm"] = "sm_" + std::to_string(g.sm_major) + std::to_string(g.sm_minor);
          d["num_sms"] = g.num_sms;
          d["total_memory"] = g.total_memory;
          result.append(d);
        }
        return result;
      },
      "GPUs visible at run time: a list of dicts (device_id, name, sm, num_sms, total_memory). "
      "Empty without CUDA or without a GPU; never raises.");

  // ---- formats -----------------------------------------------------------------------------
  m.def(
      "kv_bytes_per_token",
      [](const std::string& format, int d_qk) {
        return kv_bytes_per_token(parse_kv_format(format, "format"), d_qk);
      },
      "format"_a, "d_qk"_a = 512,
      "Payload bytes per token: 584 (model1_fp8), 656 (v32_fp8) or 2 * d_qk (bf16).");
  m.def(
      "kv_min_page_stride",
      [](const std::string& format, int64_t page_size, int d_qk) {
        MODEL1_CHECK(page_size > 0, "page_size", "a positive page size", std::to_string(page_size));
        return kv_min_page_stride(parse_kv_format(format, "format"), page_size, d_qk);
      },
      "format"_a, "page_size"_a, "d_qk"_a = 512,
      "Smallest page stride in bytes for pages of `page_size` tokens (model1_fp8: "
      "ceil(584 P / 576) * 576; v32_fp8: 656 P; bf16: 2 d_qk P).");
  m.def(
      "kv_format_d_qk",
      [](const std::string& format) { return kv_format_d_qk(parse_kv_format(format, "format")); },
      "format"_a, "Head dim d_qk of a format: 512 (model1_fp8, bf16 default) or 576 (v32_fp8).");
  m.def("cache_info", &cache_info, "data"_a.none(), "format"_a.none() = nb::none(),
        "page_size"_a = 0,
        "Geometry of a cache array as the library sees it: dict(format, page_size, num_pages, "
        "num_slots, d_qk, bytes_per_token, page_stride, min_page_stride). `format` None and "
        "`page_size` 0 infer them from a [pages, P, 1, 584 | 656] byte view or a bf16 "
        "[pages, P, d_qk] cache.");

  // ---- caches ------------------------------------------------------------------------------
  m.def(
      "quantize_cache",
      [](nb::handle src, nb::handle dst, nb::handle format, int64_t page_size,
         StreamHandle stream,
         bool sync_producers) {
        TensorImporter imp(stream, sync_producers);
        const TensorView s = imp.tensor(src, "src", Access::kRead);
        const KvCacheView d = imp.cache(dst, format, page_size, "dst", Access::kWrite);
        nb::gil_scoped_release release;
        model1::quantize_cache(s, d, imp.stream());
      },
      "src"_a.none(), "dst"_a.none(), "format"_a.none() = nb::none(), "page_size"_a = 0,
      "stream"_a = 0, "sync_producers"_a = true,
      (std::string("Fills a whole cache from bf16 tokens: row `slot` of src goes to page slot // "
                   "P, offset slot % P.\n\nsrc: bf16 [num_pages * P, d_qk] (d_qk 512, 576 for "
                   "v32_fp8), last dim contiguous.\ndst: the cache, written in place: uint8/fp8 "
                   "[pages, page_stride] (give format and page_size), [pages, P, 1, 584 | 656] "
                   "(both inferred), or bf16 [pages, P, d_qk].\n") +
       kStreamDoc)
          .c_str());

  m.def(
      "store_tokens",
      [](nb::handle tokens, nb::handle slots, nb::handle dst, nb::handle format,
         int64_t page_size, StreamHandle stream,
         bool sync_producers) {
        TensorImporter imp(stream, sync_producers);
        const TensorView t = imp.tensor(tokens, "tokens", Access::kRead);
        const TensorView s = imp.tensor(slots, "slots", Access::kRead);
        const KvCacheView d = imp.cache(dst, format, page_size, "dst", Access::kWrite);
        nb::gil_scoped_release release;
        model1::store_tokens(t, s, d, imp.stream());
      },
      "tokens"_a.none(), "slots"_a.none(), "dst"_a.none(), "format"_a.none() = nb::none(),
      "page_size"_a = 0, "stream"_a = 0, "sync_producers"_a = true,
      (std::string("Quantizes n new tokens into their slots of a cache (in place).\n\ntokens: "
                   "bf16 [n, d_qk], last dim contiguous.\nslots: int32 [n]; slot = page * P + "
                   "offset; negative slots are skipped (padding).\ndst: the cache, as in "
                   "quantize_cache.\n") +
       kStreamDoc)
          .c_str());

  m.def(
      "dequantize_cache",
      [](nb::handle src, nb::handle dst, nb::handle format, int64_t page_size,
         StreamHandle stream,
         bool sync_producers) {
        TensorImporter imp(stream, sync_producers);
        const KvCacheView s = imp.cache(src, format, page_size, "src", Access::kRead);
        const TensorView d = imp.tensor(dst, "dst", Access::kWrite);
        nb::gil_scoped_release release;
        model1::dequantize_cache(s, d, imp.stream());
      },
      "src"_a.none(), "dst"_a.none(), "format"_a.none() = nb::none(), "page_size"_a = 0,
      "stream"_a = 0, "sync_producers"_a = true,
      (std::string("Reads every token of a cache back, exactly (e4m3 * scale, RoPE as "
                   "stored).\n\nsrc: the cache, as in quantize_cache.\ndst: bf16 or f32 "
                   "[num_pages * P, d_qk], last dim contiguous, written.\n") +
       kStreamDoc)
          .c_str());

  // ---- decode ------------------------------------------------------------------------------
  nb::class_<DecodePlan>(m, "DecodePlan",
                         "The split-KV schedule and workspace of sparse decode for one batch "
                         "shape (made by plan_decode). Reusable by every call, e.g. every layer, "
                         "with the same shapes, device and presence of the optional tensors.")
      .def_prop_ro("valid", &DecodePlan::valid, "True for a plan made by plan_decode.")
      .def_prop_ro("split_keys", &DecodePlan::split_keys,
                   "Target keys per split-KV split of this plan (the split_keys option, 0 "
                   "resolved to the default, -1 to the latency rule's value); 0 for an invalid "
                   "plan.")
      .def("__repr__", [](const DecodePlan& p) {
        return std::string("model1.DecodePlan(valid=") + (p.valid() ? "True" : "False") +
               ", split_keys=" + std::to_string(p.split_keys()) + ")";
      });

  const std::string decode_doc =
      "q: bf16 [b, s_q, h_q, d_qk] (d_qk 512 for model1_fp8, 576 for v32_fp8), last dim "
      "contiguous.\n"
      "kv, kv_format, kv_page_size: the main cache (see quantize_cache; format/page size None/0 "
      "infer them from a 4-D byte view or a bf16 cache).\n"
      "indices: int32 [b, s_q, topk] slots, last dim contiguous; slots outside [0, pages * P) "
      "are skipped.\n"
      "topk_length: optional int32 [b]: only indices[i, :, :topk_length[i]] are candidates.\n"
      "extra_kv, extra_kv_format, extra_kv_page_size, extra_indices [b, s_q, extra_topk], "
      "extra_topk_length [b]: optional extra cache (same format).\n"
      "attn_sink: optional f32 [h_q]: out *= 1 / (1 + exp(attn_sink - lse)).\n"
      "sm_scale: None = 1 / sqrt(d_qk).\n"
      "out: bf16 [b, s_q, h_q, 512], written. lse: f32 [b, s_q, h_q] (natural log, excludes "
      "the sink, +inf with no valid key), written.\n";

  m.def(
      "plan_decode",
      [](nb::handle q, nb::handle kv, nb::handle kv_format, int64_t kv_page_size,
         nb::handle indices, nb::handle topk_length, nb::handle extra_kv,
         nb::handle extra_kv_format, int64_t extra_kv_page_size, nb::handle extra_indices,
         nb::handle extra_topk_length, nb::handle attn_sink, std::optional<double> sm_scale,
         nb::handle out, nb::handle lse, StreamHandle stream,
         bool sync_producers, int split_keys) {
        TensorImporter imp(stream, sync_producers);
        const SparseDecodeArgs args =
            decode_args(imp, q, kv, kv_format, kv_page_size, indices, topk_length, extra_kv,
                        extra_kv_format, extra_kv_page_size, extra_indices, extra_topk_length,
                        attn_sink, sm_scale, out, lse);
        model1::DecodeOptions options;
        options.split_keys = split_keys;
        nb::gil_scoped_release release;
        return model1::plan_decode(args, options, imp.stream());
      },
      "q"_a.none(), "kv"_a.none(), "kv_format"_a.none() = nb::none(), "kv_page_size"_a = 0,
      "indices"_a.none(),
      "topk_length"_a.none() = nb::none(), "extra_kv"_a.none() = nb::none(),
      "extra_kv_format"_a.none() = nb::none(), "extra_kv_page_size"_a = 0,
      "extra_indices"_a.none() = nb::none(), "extra_topk_length"_a.none() = nb::none(),
      "attn_sink"_a.none() = nb::none(), "sm_scale"_a.none() = nb::none(), "out"_a.none(),
      "lse"_a.none(),
      "stream"_a = 0, "sync_producers"_a = true, "split_keys"_a = 0,
      ("Validates the arguments of a sparse decode (nothing is written) and builds its "
       "DecodePlan.\n\n" +
       decode_doc +
       "split_keys: CUDA target keys per split-KV split, a multiple of 64 in [64, 16384]; 0 = "
       "the default (smaller: lower latency at small batch; larger: throughput at large "
       "batch); -1 (LATENCY_SPLIT_KEYS) = latency_split_keys() for these shapes and GPU.\n" +
       kStreamDoc)
          .c_str());

  m.def(
      "sparse_decode",
      [](nb::handle q, nb::handle kv, nb::handle kv_format, int64_t kv_page_size,
         nb::handle indices, nb::handle topk_length, nb::handle extra_kv,
         nb::handle extra_kv_format, int64_t extra_kv_page_size, nb::handle extra_indices,
         nb::handle extra_topk_length, nb::handle attn_sink, std::optional<double> sm_scale,
         nb::handle out, nb::handle lse, const DecodePlan* plan, StreamHandle stream,
         bool sync_producers, bool kernel_name_only, int split_keys) -> std::optional<std::string> {
        TensorImporter imp(stream, sync_producers);
        const SparseDecodeArgs args =
            decode_args(imp, q, kv, kv_format, kv_page_size, indices, topk_length, extra_kv,
                        extra_kv_format, extra_kv_page_size, extra_indices, extra_topk_length,
                        attn_sink, sm_scale, out, lse);
        model1::DecodeOptions options;
        options.split_keys = split_keys;  // for a plan made here (validated by plan_decode)
        nb::gil_scoped_release release;
        if (kernel_name_only) {
          if (plan != nullptr) return model1::decode_kernel_name(args, *plan);
          const DecodePlan own = model1::plan_decode(args, options, imp.stream());
          return model1::decode_kernel_name(args, own);
        }
        if (plan != nullptr) {
          model1::sparse_decode(args, *plan, imp.stream());
        } else {
          model1::sparse_decode(args, options, imp.stream());
        }
        return std::nullopt;
      },
      "q"_a.none(), "kv"_a.none(), "kv_format"_a.none() = nb::none(), "kv_page_size"_a = 0,
      "indices"_a.none(),
      "topk_length"_a.none() = nb::none(), "extra_kv"_a.none() = nb::none(),
      "extra_kv_format"_a.none() = nb::none(), "extra_kv_page_size"_a = 0,
      "extra_indices"_a.none() = nb::none(), "extra_topk_length"_a.none() = nb::none(),
      "attn_sink"_a.none() = nb::none(), "sm_scale"_a.none() = nb::none(), "out"_a.none(),
      "lse"_a.none(),
      "plan"_a.none() = nb::none(), "stream"_a = 0, "sync_producers"_a = true,
      "kernel_name_only"_a = false, "split_keys"_a = 0,
      ("Sparse decode (MODEL1.md section 3) into `out` and `lse`.\n\n" + decode_doc +
       "plan: a DecodePlan made for the same shapes, or None to plan inside the call.\n" +
       "split_keys: as in plan_decode, for the plan made inside the call (plan None).\n" +
       "kernel_name_only: validate only and return the kernel family the call would run "
       "('cpu', 'portable', 'portable-compact', 'sm90a'); nothing is written or launched.\n" +
       kStreamDoc)
          .c_str());

  // ---- prefill -----------------------------------------------------------------------------
  m.def(
      "sparse_prefill",
      [](nb::handle q, nb::handle kv, nb::handle indices, nb::handle topk_length,
         nb::handle attn_sink, std::optional<double> sm_scale, int d_v, nb::handle out,
         nb::handle max_logits, nb::handle lse, StreamHandle stream,
         bool sync_producers, bool kernel_name_only) -> std::optional<std::string> {
        TensorImporter imp(stream, sync_producers);
        SparsePrefillArgs args;
        args.q = imp.tensor(q, "q", Access::kRead);
        args.kv = imp.tensor(kv, "kv", Access::kRead);
        args.indices = imp.tensor(indices, "indices", Access::kRead);
        args.topk_length = imp.optional(topk_length, "topk_length", Access::kRead);
        args.attn_sink = imp.optional(attn_sink, "attn_sink", Access::kRead);
        args.sm_scale = resolve_sm_scale(sm_scale);
        args.d_v = d_v;
        args.out = imp.tensor(out, "out", Access::kWrite);
        args.max_logits = imp.tensor(max_logits, "max_logits", Access::kWrite);
        args.lse = imp.tensor(lse, "lse", Access::kWrite);
        nb::gil_scoped_release release;
        if (kernel_name_only) return model1::prefill_kernel_name(args);
        model1::sparse_prefill(args, imp.stream());
        return std::nullopt;
      },
      "q"_a.none(), "kv"_a.none(), "indices"_a.none(), "topk_length"_a.none() = nb::none(),
      "attn_sink"_a.none() = nb::none(), "sm_scale"_a.none() = nb::none(), "d_v"_a = 512,
      "out"_a.none(), "max_logits"_a.none(), "lse"_a.none(), "stream"_a = 0, "sync_producers"_a = true,
      "kernel_name_only"_a = false,
      (std::string("Sparse prefill (MODEL1.md section 4) into out, max_logits and lse.\n\n"
                   "q: bf16 [s_q, h_q, d_qk] (d_qk 512 or 576), last dim contiguous.\n"
                   "kv: bf16 [s_kv, d_qk] or [s_kv, 1, d_qk].\n"
                   "indices: int32 [s_q, topk] or [s_q, 1, topk]; valid iff 0 <= i < s_kv.\n"
                   "topk_length: optional int32 [s_q]. attn_sink: optional f32 [h_q].\n"
                   "sm_scale: None = 1 / sqrt(d_qk). d_v: must be 512.\n"
                   "out: bf16 [s_q, h_q, 512]; max_logits, lse: f32 [s_q, h_q]; all written.\n"
                   "kernel_name_only: validate only and return the kernel family the call would run "
                   "(nothing written).\n") +
       kStreamDoc)
          .c_str());
}
