// Bindings for value comparison, stats, CRC-32, casts/copies and shape diffing
// (csrc/average.*, csrc/compare.*, csrc/convert.hpp, csrc/crc32.*, csrc/copy.*, csrc/shapediff.*).
// Argument conversion only. Every byte loop runs under the GIL policy of buffer.hpp (NoGil): by
// then the arguments are C++ copies and PinnedBuffers, so no Python object is touched until the
// GIL is taken back (the watch of the long calls, watch.hpp, takes it back before it calls
// `progress` or checks signals).
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <cmath>
#include <memory>
#include <cstdint>
#include <string>
#include <unordered_map>
#include <vector>

#include "average.hpp"
#include "compare.hpp"
#include "copy.hpp"
#include "crc32.hpp"
#include "shapediff.hpp"
#include "simd.hpp"
#include "buffer.hpp"
#include "watch.hpp"

namespace py = pybind11;
namespace num = inspector::num;
using inspector_bindings::check_progress;
using inspector_bindings::NoGil;
using inspector_bindings::PinnedBuffer;
using inspector_bindings::python_watch;

namespace {

using Dims = std::vector<std::int64_t>;

num::View make_view(const PinnedBuffer& buf, const std::string& dtype, const Dims& shape, const Dims& strides,
                    std::int64_t offset, bool byteswap) {
    return num::make_view(buf.data(), buf.size(), num::parse_dtype(dtype), shape, strides, offset, byteswap);
}

// The bytes a byte loop goes through (the GIL policy's measure, buffer.hpp): a view's logical
// size, saturated; the view itself is checked by the core, which names the argument.
std::size_t work(const num::View& v) {
    std::size_t n = v.itemsize;
    for (const std::int64_t d : v.shape) {
        if (d <= 0) return 0;
        if (__builtin_mul_overflow(n, static_cast<std::size_t>(d), &n)) return SIZE_MAX;
    }
    return n;
}

py::object finite_or_none(double x, std::int64_t finite) { return finite ? py::object(py::float_(x)) : py::none(); }

py::list to_list(const std::vector<std::int64_t>& v) {
    PyObject* list = PyList_New(static_cast<Py_ssize_t>(v.size()));
    if (list == nullptr) throw py::error_already_set();
    for (std::size_t i = 0; i < v.size(); ++i) {
        PyObject* item = PyLong_FromLongLong(v[i]);
        if (item == nullptr) {
            Py_DECREF(list);
            throw py::error_already_set();
        }
        PyList_SET_ITEM(list, static_cast<Py_ssize_t>(i), item);
    }
    return py::reinterpret_steal<py::list>(list);
}

// Sequence items without a copy (list/tuple) or via one (other sequences).
py::object fast_sequence(py::handle seq, const char* what) {
    PyObject* fast = PySequence_Fast(seq.ptr(), what);
    if (fast == nullptr) throw py::error_already_set();
    return py::reinterpret_steal<py::object>(fast);
}

// Converts the Python lists of one side into flat C++ storage (the GIL is held here).
num::Signatures read_side(py::handle names, py::handle shapes, py::handle dtypes, const char* side,
                          std::unordered_map<std::string, std::uint32_t>& dtype_ids) {
    const std::string s(side);
    py::object n = fast_sequence(names, "names must be a sequence of str");
    py::object sh = fast_sequence(shapes, "shapes must be a sequence of tuples");
    py::object dt = fast_sequence(dtypes, "dtypes must be a sequence of str");
    const Py_ssize_t count = PySequence_Fast_GET_SIZE(n.ptr());
    if (PySequence_Fast_GET_SIZE(sh.ptr()) != count || PySequence_Fast_GET_SIZE(dt.ptr()) != count)
        throw py::value_error("side " + s + ": names, shapes and dtypes differ in length");
    num::Signatures sig;
    sig.name_end.reserve(static_cast<std::size_t>(count));
    sig.dims_end.reserve(static_cast<std::size_t>(count));
    sig.dtype.reserve(static_cast<std::size_t>(count));
    PyObject* last_dtype = nullptr;
    std::uint32_t last_id = 0;
    Dims dims;
    for (Py_ssize_t i = 0; i < count; ++i) {
        Py_ssize_t len = 0;
        const char* name = PyUnicode_AsUTF8AndSize(PySequence_Fast_GET_ITEM(n.ptr(), i), &len);
        if (name == nullptr) throw py::error_already_set();
        PyObject* d = PySequence_Fast_GET_ITEM(dt.ptr(), i);
        if (d != last_dtype) {  // dtype strings repeat: look one up only when it changes
            Py_ssize_t dlen = 0;
            const char* dname = PyUnicode_AsUTF8AndSize(d, &dlen);
            if (dname == nullptr) throw py::error_already_set();
            auto it = dtype_ids.emplace(std::string(dname, static_cast<std::size_t>(dlen)),
                                        static_cast<std::uint32_t>(dtype_ids.size())).first;
            last_dtype = d;
            last_id = it->second;
        }
        py::object shape = fast_sequence(PySequence_Fast_GET_ITEM(sh.ptr(), i), "each shape must be a sequence of int");
        const Py_ssize_t rank = PySequence_Fast_GET_SIZE(shape.ptr());
        dims.resize(static_cast<std::size_t>(rank));
        for (Py_ssize_t k = 0; k < rank; ++k) {
            dims[static_cast<std::size_t>(k)] = PyLong_AsLongLong(PySequence_Fast_GET_ITEM(shape.ptr(), k));
            if (PyErr_Occurred()) throw py::error_already_set();
        }
        sig.add(std::string_view(name, static_cast<std::size_t>(len)), dims.data(), dims.size(), last_id);
    }
    return sig;
}

}  // namespace

void register_numeric(py::module_& m) {
    m.def(
        "compare",
        [](py::buffer a, const std::string& a_dtype, const Dims& a_shape, const Dims& a_strides, std::int64_t a_offset,
           py::buffer b, const std::string& b_dtype, const Dims& b_shape, const Dims& b_strides, std::int64_t b_offset,
           double rtol, double atol, bool a_byteswap, bool b_byteswap, bool equal_nan, int threads,
           const py::object& progress) {
            check_progress(progress);
            const PinnedBuffer ba(a, "a"), bb(b, "b");
            const num::View va = make_view(ba, a_dtype, a_shape, a_strides, a_offset, a_byteswap);
            const num::View vb = make_view(bb, b_dtype, b_shape, b_strides, b_offset, b_byteswap);
            const num::CompareOptions opt{rtol, atol, equal_nan, threads};
            num::Comparison r;
            {
                NoGil nogil(work(va) + work(vb));  // see the header comment
                r = num::compare(va, vb, opt, python_watch(progress));
            }
            py::dict d;
            d["numel"] = r.numel;
            d["max_abs_diff"] = r.max_abs_diff;
            d["mean_abs_diff"] = r.mean_abs_diff;
            d["rel_l2"] = r.rel_l2;
            d["cosine"] = r.cosine;
            d["n_diff"] = r.n_diff;
            d["n_not_close"] = r.n_not_close;
            d["allclose"] = r.allclose;
            d["nan_a"] = r.nan_a;
            d["nan_b"] = r.nan_b;
            d["inf_a"] = r.inf_a;
            d["inf_b"] = r.inf_b;
            return d;
        },
        py::arg("a"), py::arg("a_dtype"), py::arg("a_shape"), py::arg("a_strides"), py::arg("a_offset"), py::arg("b"),
        py::arg("b_dtype"), py::arg("b_shape"), py::arg("b_strides"), py::arg("b_offset"), py::kw_only(),
        py::arg("rtol") = 1e-5, py::arg("atol") = 1e-8, py::arg("a_byteswap") = false, py::arg("b_byteswap") = false,
        py::arg("equal_nan") = false, py::arg("threads") = 0, py::arg("progress") = py::none(),
        "Compare two strided tensors of equal shape element by element (dtypes may differ).\n\n"
        "Shapes, strides and offsets are in elements of each tensor's dtype. Values are decoded exactly\n"
        "to double. NaN pairs are left out of the difference figures; |a-b| is 0 where a == b (inf vs\n"
        "the same inf); rel_l2 = ||a-b||/||b|| (0/0 = 0, x/0 = inf); cosine over finite pairs (1 when\n"
        "both norms are 0, 0 when one is); n_diff counts unequal pairs (two NaNs are equal); allclose\n"
        "is numpy.isclose(a, b, rtol, atol, equal_nan).all(). Returns a dict of the figures.\n"
        "progress(done_elements, total_elements) is called about every 75 ms; if it raises, the work\n"
        "stops and the exception propagates (so does Ctrl-C).");

    m.def(
        "stats",
        [](py::buffer buf, const std::string& dtype, const Dims& shape, const Dims& strides, std::int64_t offset,
           int bins, bool byteswap, int threads, const py::object& progress) {
            check_progress(progress);
            const PinnedBuffer bytes(buf, "buf");
            const num::View v = make_view(bytes, dtype, shape, strides, offset, byteswap);
            num::Stats s;
            {
                NoGil nogil(work(v));  // see the header comment
                s = num::stats(v, bins, threads, python_watch(progress));
            }
            py::dict d;
            d["numel"] = s.numel;
            d["finite"] = s.finite;
            d["min"] = finite_or_none(s.min, s.finite);
            d["max"] = finite_or_none(s.max, s.finite);
            d["mean"] = finite_or_none(s.mean, s.finite);
            d["std"] = finite_or_none(s.std, s.finite);
            d["zeros"] = s.zeros;
            d["nan"] = s.nan;
            d["inf"] = s.inf;
            d["hist"] = to_list(s.hist);
            d["hist_edges"] = s.hist_edges;
            return d;
        },
        py::arg("buf"), py::arg("dtype"), py::arg("shape"), py::arg("strides"), py::arg("offset"), py::kw_only(),
        py::arg("bins") = 16, py::arg("byteswap") = false, py::arg("threads") = 0, py::arg("progress") = py::none(),
        "Statistics of a strided tensor: min/max/mean/std over finite values (None when there are\n"
        "none; std is the population std), counts of zeros, NaN and Inf, and a histogram of the finite\n"
        "values in `bins` equal bins over [min, max] (numpy.histogram's rules) with its bin edges.\n"
        "progress(done, total) counts elements over both passes (total = 2 * numel); raising stops it.");

    m.def(
        "crc32",
        [](py::buffer data, std::uint32_t init) {
            const PinnedBuffer b(data, "data");
            NoGil nogil(b.size());  // see the header comment
            return num::crc32(b.data(), b.size(), init);
        },
        py::arg("data"), py::arg("init") = 0,
        "CRC-32 as zip and zlib.crc32 compute it; `init` continues a running CRC.");
    m.def(
        "_crc32_portable",
        [](py::buffer data, std::uint32_t init) {
            const PinnedBuffer b(data, "data");
            NoGil nogil(b.size());  // see the header comment
            return num::crc32_portable(b.data(), b.size(), init);
        },
        py::arg("data"), py::arg("init") = 0, "crc32() through the portable slicing-by-8 path (for tests).");
    m.def("_crc32_has_pclmul", &num::crc32_has_pclmul, "True when crc32() uses carry-less multiplication.");
    m.def("_numeric_simd", &num::simd_enabled,
          "True when compare() and copy_cast() run their AVX2 kernels (never when INSPECTOR_DISABLE_SIMD\n"
          "turns the fast paths off: simd.hpp).");
    m.def("crc32_combine", &num::crc32_combine, py::arg("crc1"), py::arg("crc2"), py::arg("len2"),
          "CRC-32 of a+b from crc32(a), crc32(b) and len(b), like zlib's crc32_combine.");

    m.def(
        "average",
        [](const py::list& srcs, const std::string& src_dtype, const std::vector<double>& weights, double divisor,
           py::buffer dst, const std::string& dst_dtype) {
            const num::DType from = num::parse_dtype(src_dtype), to = num::parse_dtype(dst_dtype);
            const PinnedBuffer bd(dst, "dst", PinnedBuffer::Access::write);
            const std::size_t out_item = num::info(to).itemsize;
            if (bd.size() % out_item != 0) throw py::value_error("dst is not a whole number of elements");
            const std::size_t n = bd.size() / out_item;
            if (weights.size() != srcs.size()) throw py::value_error("one weight per source");
            std::vector<std::unique_ptr<PinnedBuffer>> pinned;
            std::vector<const std::uint8_t*> ptrs;
            for (const py::handle src : srcs) {
                pinned.push_back(std::make_unique<PinnedBuffer>(src, "srcs"));
                if (pinned.back()->size() < n * num::info(from).itemsize)
                    throw py::value_error("a source holds fewer elements than dst");
                ptrs.push_back(pinned.back()->data());
            }
            NoGil nogil(bd.size() * (srcs.size() + 1));  // see the header comment
            return num::average(ptrs, from, weights, divisor, n, bd.data(), to);
        },
        py::arg("srcs"), py::arg("src_dtype"), py::arg("weights"), py::arg("divisor"), py::arg("dst"),
        py::arg("dst_dtype"),
        "dst[i] = sum_k weights[k] * srcs[k][i] / divisor, for C-contiguous little-endian sources of\n"
        "src_dtype holding at least len(dst) elements. Float destinations: accumulated in double\n"
        "(compensated), rounded once to dst_dtype (nearest even; within one ulp of the exact mean).\n"
        "Integer destinations: the floor of the mean (exact for integer weights). Returns the CRC-32\n"
        "of dst.");

    m.def(
        "copy_cast",
        [](py::buffer src, const std::string& src_dtype, const Dims& shape, const Dims& src_strides,
           std::int64_t src_offset, py::buffer dst, std::int64_t dst_offset_bytes, const std::string& dst_dtype,
           bool src_byteswap, int threads, const py::object& progress) {
            check_progress(progress);
            const PinnedBuffer bs(src, "src"), bd(dst, "dst", PinnedBuffer::Access::write);
            if (dst_offset_bytes < 0) throw py::value_error("dst_offset_bytes must be >= 0");
            const num::View v = make_view(bs, src_dtype, shape, src_strides, src_offset, src_byteswap);
            const num::CopyTarget t{bd.data(), bd.size(), static_cast<std::size_t>(dst_offset_bytes),
                                    num::parse_dtype(dst_dtype)};
            NoGil nogil(work(v));  // see the header comment
            return num::copy_cast(v, t, threads, python_watch(progress));
        },
        py::arg("src"), py::arg("src_dtype"), py::arg("shape"), py::arg("src_strides"), py::arg("src_offset"),
        py::arg("dst"), py::arg("dst_offset_bytes"), py::arg("dst_dtype"), py::kw_only(),
        py::arg("src_byteswap") = false, py::arg("threads") = 0, py::arg("progress") = py::none(),
        "Write the strided source tensor in C order, cast to dst_dtype (little-endian), into dst at\n"
        "dst_offset_bytes, and return the CRC-32 of the bytes written. A transpose is a permuted\n"
        "shape/strides. Casts follow torch's .to() (round to nearest even; float -> int refused).\n"
        "src and dst must not overlap (ValueError). threads=0 uses all cores. progress(done_bytes,\n"
        "total_bytes) is called about every 75 ms; if it raises, the copy stops (dst partly written)\n"
        "and the exception propagates (so does Ctrl-C).");

    m.def(
        "copy_region",
        [](py::buffer src, const std::string& src_dtype, const Dims& src_shape, const Dims& src_strides,
           std::int64_t src_offset, py::buffer dst, std::int64_t dst_offset_bytes, const std::string& dst_dtype,
           const Dims& dst_shape, const Dims& src_start, const Dims& dst_start, const Dims& count, double fill,
           bool src_byteswap, int threads, const py::object& progress) {
            check_progress(progress);
            const PinnedBuffer bs(src, "src"), bd(dst, "dst", PinnedBuffer::Access::write);
            if (dst_offset_bytes < 0) throw py::value_error("dst_offset_bytes must be >= 0");
            const num::View v = make_view(bs, src_dtype, src_shape, src_strides, src_offset, src_byteswap);
            const num::CopyTarget t{bd.data(), bd.size(), static_cast<std::size_t>(dst_offset_bytes),
                                    num::parse_dtype(dst_dtype)};
            const num::Region r{dst_shape, src_start, dst_start, count, fill};
            NoGil nogil(work(v) + bd.size());  // see the header comment (the fill writes dst)
            return num::copy_region(v, t, r, threads, python_watch(progress));
        },
        py::arg("src"), py::arg("src_dtype"), py::arg("src_shape"), py::arg("src_strides"), py::arg("src_offset"),
        py::arg("dst"), py::arg("dst_offset_bytes"), py::arg("dst_dtype"), py::arg("dst_shape"),
        py::arg("src_start"), py::arg("dst_start"), py::arg("count"), py::kw_only(), py::arg("fill") = 0.0,
        py::arg("src_byteswap") = false, py::arg("threads") = 0, py::arg("progress") = py::none(),
        "Slice and pad while copying: the C-order destination tensor of dst_shape at dst_offset_bytes\n"
        "gets src[src_start:src_start+count] at dst[dst_start:dst_start+count] (per axis), every other\n"
        "element is `fill`. Casts, overlap and progress as copy_cast. Returns the CRC-32 of all\n"
        "destination bytes.");

    m.def(
        "shape_diff",
        [](py::handle names_a, py::handle shapes_a, py::handle dtypes_a, py::handle names_b, py::handle shapes_b,
           py::handle dtypes_b) {
            std::unordered_map<std::string, std::uint32_t> dtype_ids;
            const num::Signatures a = read_side(names_a, shapes_a, dtypes_a, "a", dtype_ids);
            const num::Signatures b = read_side(names_b, shapes_b, dtypes_b, "b", dtype_ids);
            num::ShapeDiff r;
            {
                py::gil_scoped_release release;  // a and b are C++ copies
                r = num::shape_diff(a, b);
            }
            py::dict d;
            d["only_a"] = to_list(r.only_a);
            d["only_b"] = to_list(r.only_b);
            d["shape_a"] = to_list(r.shape_a);
            d["shape_b"] = to_list(r.shape_b);
            d["dtype_a"] = to_list(r.dtype_a);
            d["dtype_b"] = to_list(r.dtype_b);
            d["equal_a"] = to_list(r.equal_a);
            d["equal_b"] = to_list(r.equal_b);
            return d;
        },
        py::arg("names_a"), py::arg("shapes_a"), py::arg("dtypes_a"), py::arg("names_b"), py::arg("shapes_b"),
        py::arg("dtypes_b"),
        "Join two tensor lists by name. Returns indices: only_a, only_b, and for names on both sides\n"
        "parallel lists shape_a/shape_b (shapes differ), dtype_a/dtype_b (same shape, other dtype),\n"
        "equal_a/equal_b (same signature). A name listed twice on one side is a ValueError.");
}
