// The one way a binding reads or writes the memory of a Python buffer-protocol object (bytes,
// bytearray, mmap, memoryview, numpy array), and the one rule for when it lets go of the GIL.
//
// PinnedBuffer holds a C-contiguous Py_buffer view for its lifetime. While a view is exported,
// the exporter cannot resize, free or close the memory (bytearray refuses to resize, mmap.close()
// raises BufferError), so the core may read or write it without the GIL. Created and released
// with the GIL held.
//
// NoGil is the GIL policy of every binding: release the GIL around the core's byte loop, after the
// arguments are converted to C++ values and pinned buffers, unless the input is at most 64 KiB
// (the switch then costs more than it saves). Nothing inside may touch a Python object; the
// progress watch of the long calls (watch.hpp) takes the GIL back itself.
#pragma once

#include <pybind11/pybind11.h>

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>

#include "core_error.hpp"

namespace inspector_bindings {

namespace py = pybind11;

class PinnedBuffer {
public:
    enum class Access { read, write };

    // `what` names the argument in the error: TypeError for an object without the buffer
    // protocol, CoreError (a ValueError) for a buffer that is not C-contiguous (or not writable).
    PinnedBuffer(py::handle obj, const char* what, Access access = Access::read) {
        if (!PyObject_CheckBuffer(obj.ptr()))
            throw py::type_error(std::string(what) + ": expected a bytes-like object, got " +
                                 std::string(py::str(py::type::handle_of(obj).attr("__name__"))));
        const bool writable = access == Access::write;
        const int flags = PyBUF_C_CONTIGUOUS | (writable ? PyBUF_WRITABLE : 0);
        if (PyObject_GetBuffer(obj.ptr(), &view_, flags) != 0) {
            PyErr_Clear();
            throw inspector::CoreError(writable ? "needs a writable C-contiguous buffer" : "needs a C-contiguous buffer",
                                       "value", what);
        }
    }
    ~PinnedBuffer() { PyBuffer_Release(&view_); }
    PinnedBuffer(const PinnedBuffer&) = delete;
    PinnedBuffer& operator=(const PinnedBuffer&) = delete;

    std::uint8_t* data() const { return static_cast<std::uint8_t*>(view_.buf); }
    std::size_t size() const { return static_cast<std::size_t>(view_.len); }

private:
    Py_buffer view_{};
};

inline constexpr std::size_t kReleaseGilAbove = 64 * 1024;

class NoGil {
public:
    // `bytes`: how much the byte loop reads or writes.
    explicit NoGil(std::size_t bytes) {
        if (bytes > kReleaseGilAbove) release_.emplace();
    }

private:
    std::optional<py::gil_scoped_release> release_;
};

}  // namespace inspector_bindings
