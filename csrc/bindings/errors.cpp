// How the core's errors reach Python: one place. Bad input (inspector::CoreError, and any other
// std::invalid_argument of the core) becomes `_core.CoreError`, a ValueError whose attributes are
// the error's fields (kind, problem, where, key, job: csrc/core_error.hpp); a mapped file
// truncated under a read (inspector::MappedFileFault, csrc/mapped_read.hpp) becomes
// `_core.MappedFileFault`, an OSError. inspector/_native.py's `core_error` turns both into the
// project's error classes; nothing parses a message.
#include <pybind11/pybind11.h>

#include <exception>
#include <stdexcept>
#include <string_view>

#include "core_error.hpp"
#include "mapped_read.hpp"

namespace py = pybind11;

namespace {

// Core strings may hold lone surrogates (a name from a header, st_header.hpp): decode them as
// Python's json does.
py::object text(std::string_view s) {
    PyObject* o = PyUnicode_DecodeUTF8(s.data(), static_cast<Py_ssize_t>(s.size()), "surrogatepass");
    if (o == nullptr) throw py::error_already_set();
    return py::reinterpret_steal<py::object>(o);
}

PYBIND11_CONSTINIT py::gil_safe_call_once_and_store<py::object> core_error_type;

void raise_core_error(const inspector::CoreError& e) {
    py::object err = core_error_type.get_stored()(text(e.what()));
    err.attr("kind") = py::str(e.kind());
    err.attr("problem") = text(e.problem());
    err.attr("where") = e.where().empty() ? py::none() : py::object(py::str(e.where()));
    err.attr("key") = e.key() ? text(*e.key()) : py::none();
    err.attr("job") = e.job() ? py::object(py::int_(*e.job())) : py::none();
    PyErr_SetObject(core_error_type.get_stored().ptr(), err.ptr());
}

}  // namespace

void register_errors(py::module_& m) {
    core_error_type.call_once_and_store_result([&]() {
        return py::object(py::exception<inspector::CoreError>(m, "CoreError", PyExc_ValueError));
    });
    m.attr("CoreError").attr("__doc__") =
        "Bad input refused by the core. Attributes: kind (an error class's name: header, offset,\n"
        "dtype, shape, duplicate_key, truncated, io, or value), problem (the sentence), where (the\n"
        "argument, or None), key (the name in the input, or None), job (the batch index, or None).";
    py::register_exception<inspector::MappedFileFault>(m, "MappedFileFault", PyExc_OSError);
    py::register_local_exception_translator([](std::exception_ptr p) {
        if (!p) return;
        try {
            std::rethrow_exception(p);
        } catch (const inspector::CoreError& e) {
            raise_core_error(e);
        } catch (const std::invalid_argument& e) {
            raise_core_error(inspector::CoreError(e.what()));
        }
    });
}
