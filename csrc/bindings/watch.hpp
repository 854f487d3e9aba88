// The wait loop of every long core call (hash_tensors, compare, stats, copy_cast, copy_region):
// the call runs with the GIL released while the workers do the bytes; about every 75 ms the
// calling thread takes the GIL back to run the optional Python `progress(done, total)` callback
// and PyErr_CheckSignals (Ctrl-C). An exception there cancels the workers (parallel.hpp) and
// propagates to Python.
#pragma once

#include <pybind11/pybind11.h>

#include "parallel.hpp"

namespace inspector_bindings {

namespace py = pybind11;

inline void check_progress(const py::object& progress) {
    if (!progress.is_none() && !PyCallable_Check(progress.ptr()))
        throw py::type_error("progress must be a callable progress(done, total) or None");
}

// `progress` must outlive the core call (it is an argument of the binding that makes it).
inline inspector::Watch python_watch(const py::object& progress) {
    return [&progress](std::uint64_t done, std::uint64_t total) {
        py::gil_scoped_acquire gil;  // the core call runs with the GIL released
        if (!progress.is_none()) progress(done, total);
        if (PyErr_CheckSignals() != 0) throw py::error_already_set();
    };
}

}  // namespace inspector_bindings
