// Bindings for the content hash (csrc/xxh3.*, csrc/treehash.*, csrc/cuda/treehash_cuda.hpp).
// Argument conversion only: every byte loop lives in the core.
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "core_error.hpp"
#include "treehash.hpp"
#include "buffer.hpp"
#include "watch.hpp"
#include "xxh3.hpp"
#ifdef INSPECTOR_HAVE_CUDA
#include "cuda/treehash_cuda.hpp"
#endif

namespace py = pybind11;
namespace th = inspector::treehash;
namespace xxh3 = inspector::xxh3;

namespace {

using inspector_bindings::check_progress;
using inspector_bindings::NoGil;
using inspector_bindings::PinnedBuffer;
using inspector_bindings::python_watch;

py::bytes as_bytes(const th::Digest& d) { return {reinterpret_cast<const char*>(d.data()), d.size()}; }

xxh3::Kernel kernel_from_name(const std::string& name) {
    for (auto k : {xxh3::Kernel::Auto, xxh3::Kernel::Scalar, xxh3::Kernel::Sse2, xxh3::Kernel::Avx2,
                   xxh3::Kernel::Avx512}) {
        if (name == (k == xxh3::Kernel::Auto ? "auto" : xxh3::kernel_name(k))) {
            if (!xxh3::kernel_available(k)) throw py::value_error("xxh3 kernel '" + name + "' is not available on this CPU");
            return k;
        }
    }
    throw py::value_error("unknown xxh3 kernel '" + name + "' (auto, scalar, sse2, avx2, avx512)");
}

py::bytes xxh3_128(py::handle data, const std::string& kernel) {
    const xxh3::Kernel k = kernel_from_name(kernel);
    const PinnedBuffer buf(data, "data");
    th::Digest out{};
    {
        NoGil nogil(buf.size());  // buffer.hpp: `buf` pins the memory
        xxh3::canonical(xxh3::hash128(buf.data(), buf.size(), k), out.data());
    }
    return as_bytes(out);
}

std::uint64_t xxh3_64(py::handle data) {
    const PinnedBuffer buf(data, "data");
    NoGil nogil(buf.size());  // buffer.hpp: `buf` pins the memory
    return xxh3::hash64(buf.data(), buf.size());
}

[[noreturn]] void bad_job(std::size_t index, std::string what) {
    throw inspector::CoreError(std::move(what), "value", {}, std::nullopt, index);
}

std::int64_t as_int(py::handle obj, std::size_t index, const char* what) {
    try {
        return obj.cast<std::int64_t>();
    } catch (const py::cast_error&) {
        bad_job(index, std::string(what) + " must be an integer");
    }
}

std::vector<std::int64_t> as_ints(py::handle obj, std::size_t index, const char* what) {
    std::vector<std::int64_t> out;
    for (py::handle item : py::reinterpret_borrow<py::tuple>(obj)) out.push_back(as_int(item, index, what));
    return out;
}

// One job tuple: (buffer, dtype, itemsize, shape, strides_elems, offset_elems, byteswap[, release]).
th::Job convert_job(py::handle item, std::size_t index, std::vector<std::unique_ptr<PinnedBuffer>>& held) {
    const std::size_t fields = py::isinstance<py::tuple>(item) ? py::len(item) : 0;
    if (fields != 7 && fields != 8) {
        bad_job(index, "expected (buffer, dtype, itemsize, shape, strides, offset, byteswap[, release])");
    }
    const auto t = py::reinterpret_borrow<py::tuple>(item);
    if (!py::isinstance<py::tuple>(t[3]) || !py::isinstance<py::tuple>(t[4])) {
        bad_job(index, "shape and strides must be tuples");
    }
    held.push_back(std::make_unique<PinnedBuffer>(t[0], ("job " + std::to_string(index)).c_str()));
    th::Job job;
    job.data = held.back()->data();
    job.size = held.back()->size();
    job.dtype = py::str(t[1]);
    const std::int64_t itemsize = as_int(t[2], index, "itemsize");
    if (itemsize <= 0) bad_job(index, "itemsize must be positive");
    job.itemsize = static_cast<std::size_t>(itemsize);
    job.shape = as_ints(t[3], index, "shape");
    job.strides = as_ints(t[4], index, "strides");
    job.offset = as_int(t[5], index, "offset");
    job.byteswap = py::bool_(t[6]);
    job.release = fields == 8 && py::bool_(t[7]);
    return job;
}

py::list hash_tensors(py::handle jobs_obj, int threads, py::object progress) {
    if (threads < 0) throw py::value_error("threads must be >= 0 (0 = all cores)");
    check_progress(progress);
    const inspector::Watch watch = python_watch(progress);
    // The buffers stay pinned until the workers that read them are joined.
    std::vector<std::unique_ptr<PinnedBuffer>> held;
    std::vector<th::Job> jobs;
    std::size_t index = 0, bytes = 0;
    for (py::handle item : py::iter(jobs_obj)) {
        jobs.push_back(convert_job(item, index++, held));
        bytes += jobs.back().size;
    }

    std::vector<th::Digest> digests;
    {
        // buffer.hpp: validation and the workers read only the pinned buffers and the converted
        // jobs; the watch takes the GIL back before it touches `progress`.
        NoGil nogil(bytes);
        digests = th::hash_all(std::move(jobs), static_cast<unsigned>(threads), watch);
    }
    py::list out;
    for (const auto& d : digests) out.append(as_bytes(d));
    return out;
}

class PyHasher {
public:
    PyHasher(const std::string& dtype, const std::vector<std::int64_t>& shape, std::int64_t itemsize)
        : hasher_(dtype, shape, itemsize > 0 ? static_cast<std::size_t>(itemsize) : 0) {}

    void update(py::handle data) {
        const PinnedBuffer buf(data, "data");
        NoGil nogil(buf.size());  // buffer.hpp: `buf` pins the memory
        hasher_.update(buf.data(), buf.size());
    }

    py::bytes finish() { return as_bytes(hasher_.finish()); }
    std::uint64_t expected_bytes() const { return hasher_.expected_bytes(); }

private:
    th::Hasher hasher_;
};

py::bytes hash_device(std::uintptr_t ptr, std::uint64_t nbytes, const std::string& dtype,
                      const std::vector<std::int64_t>& shape, int device) {
#ifdef INSPECTOR_HAVE_CUDA
    std::uint64_t numel = 1;
    for (std::int64_t d : shape) {
        if (d < 0) throw py::value_error("hash_device: negative dimension");
        numel *= static_cast<std::uint64_t>(d);
    }
    if (numel == 0 ? nbytes != 0 : nbytes % numel != 0) {
        throw py::value_error("hash_device: " + std::to_string(nbytes) + " bytes do not fit the shape");
    }
    if (nbytes != 0 && ptr == 0) throw py::value_error("hash_device: null device pointer");
    std::vector<th::Digest> leaves;
    {
        NoGil nogil(static_cast<std::size_t>(nbytes));  // device work; the caller keeps the tensor alive
        leaves = inspector::cuda::leaf_digests(ptr, static_cast<std::size_t>(nbytes), device);
    }
    return as_bytes(th::combine(dtype, shape, nbytes, leaves.data(), leaves.size()));
#else
    (void)ptr, (void)nbytes, (void)dtype, (void)shape, (void)device;
    throw std::runtime_error(
        "this build of ckpt-inspector has no CUDA kernels; reinstall from source with a CUDA "
        "toolkit (nvcc) installed and INSPECTOR_CUDA=ON, e.g. `INSPECTOR_CUDA=ON pip install .`");
#endif
}

}  // namespace

void register_hash(py::module_& m) {
    m.attr("HASH_VERSION") = std::string(th::kVersion);
    m.attr("HASH_CHUNK") = th::kChunk;
    m.attr("xxh3_kernel") = xxh3::kernel_name(xxh3::Kernel::Auto);
    m.def("xxh3_128", &xxh3_128, py::arg("data"), py::arg("kernel") = "auto",
          "XXH3-128 (seed 0) of a contiguous buffer, as 16 canonical (big-endian) bytes.");
    m.def("xxh3_64", &xxh3_64, py::arg("data"), "XXH3-64 (seed 0) of a contiguous buffer.");
    m.def("hash_tensors", &hash_tensors, py::arg("jobs"), py::arg("threads") = 0,
          py::arg("progress") = py::none(),
          "ckh1 digests (16 bytes each) of strided tensor views, computed on worker threads.\n"
          "jobs: (buffer, dtype, itemsize, shape, strides, offset, byteswap[, release]) tuples, in\n"
          "elements; release=True only for a read-only file map: its pages are dropped once hashed.\n"
          "progress(done_bytes, total_bytes) is called about every 75 ms; if it raises, the work\n"
          "stops and the exception propagates (so does Ctrl-C).");
    m.def("hash_device", &hash_device, py::arg("ptr"), py::arg("nbytes"), py::arg("dtype"),
          py::arg("shape"), py::arg("device"),
          "ckh1 digest of a contiguous tensor in CUDA device memory (needs a CUDA build).");
    py::class_<PyHasher>(m, "TreeHasher", "Incremental ckh1 digest: feed the logical bytes in order.")
        .def(py::init<const std::string&, const std::vector<std::int64_t>&, std::int64_t>(),
             py::arg("dtype"), py::arg("shape"), py::arg("itemsize"))
        .def("update", &PyHasher::update, py::arg("data"))
        .def("finish", &PyHasher::finish)
        .def_property_readonly("expected_bytes", &PyHasher::expected_bytes);
}
