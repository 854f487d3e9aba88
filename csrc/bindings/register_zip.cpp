// zip_central_directory: csrc/zip_directory.hpp over a pinned buffer, its columns as lists.
#include <pybind11/pybind11.h>

#include <cstdint>
#include <optional>
#include <string_view>

#include "buffer.hpp"
#include "objects.hpp"
#include "zip_directory.hpp"

namespace py = pybind11;

namespace {

template <class T>
py::list ints(const std::vector<T>& values, std::uint64_t add) {
    py::list out(values.size());
    for (std::size_t i = 0; i < values.size(); ++i) {
        PyObject* v = PyLong_FromUnsignedLongLong(static_cast<unsigned long long>(values[i]) + add);
        if (v == nullptr) throw py::error_already_set();
        PyList_SET_ITEM(out.ptr(), static_cast<Py_ssize_t>(i), v);
    }
    return out;
}

// member(*row) for each row of the columns, made as its frozen dataclass __init__ makes it.
py::list members(const py::tuple& columns, py::handle member) {
    if (!PyType_Check(member.ptr())) throw py::type_error("member: the ZipMember class");
    PyObject* names[7];
    const char* order[] = {"name", "header_offset", "data_offset", "compressed_size", "size", "method", "crc32"};
    for (std::size_t k = 0; k < 7; ++k) {
        names[k] = PyUnicode_InternFromString(order[k]);
        if (names[k] == nullptr) throw py::error_already_set();
    }
    const inspector_bindings::FrozenMaker maker(reinterpret_cast<PyTypeObject*>(member.ptr()), names, 7);
    const auto n = static_cast<std::size_t>(PyList_GET_SIZE(columns[0].ptr()));
    py::list out(n);
    for (std::size_t i = 0; i < n; ++i) {
        PyObject* values[7];
        for (std::size_t k = 0; k < 7; ++k)
            values[k] = PyList_GET_ITEM(columns[k].ptr(), static_cast<Py_ssize_t>(i));
        PyObject* o = maker.make(values);
        if (o == nullptr) {
            for (PyObject* name : names) Py_DECREF(name);
            throw py::error_already_set();
        }
        PyList_SET_ITEM(out.ptr(), static_cast<Py_ssize_t>(i), o);
    }
    for (PyObject* name : names) Py_DECREF(name);
    return out;
}

}  // namespace

void register_zip(py::module_& m) {
    m.def(
        "zip_central_directory",
        [](py::handle file, std::uint64_t base, std::uint64_t length, std::uint64_t cd_off,
           std::uint64_t cd_size, std::uint64_t count, py::handle member) -> py::object {
            const inspector_bindings::PinnedBuffer view(file, "file");
            if (base > view.size() || length > view.size() - base) return py::none();
            const std::string_view zip(reinterpret_cast<const char*>(view.data()) + base, length);
            std::optional<inspector::zipdir::Members> found;
            {
                inspector_bindings::NoGil nogil(cd_size);  // buffer.hpp
                found = inspector::zipdir::scan_central_directory(zip, cd_off, cd_size, count);
            }
            if (!found) return py::none();
            const auto& f = *found;
            py::list names(f.names.size());
            for (std::size_t i = 0; i < f.names.size(); ++i) {
                PyObject* s = PyUnicode_DecodeASCII(f.names[i].data(),
                                                    static_cast<Py_ssize_t>(f.names[i].size()), nullptr);
                if (s == nullptr) throw py::error_already_set();
                PyList_SET_ITEM(names.ptr(), static_cast<Py_ssize_t>(i), s);
            }
            py::tuple columns = py::make_tuple(names, ints(f.header_offsets, base), ints(f.data_offsets, base),
                                               ints(f.compressed_sizes, 0), ints(f.sizes, 0), ints(f.methods, 0),
                                               ints(f.crcs, 0));
            if (member.is_none()) return columns;
            return members(columns, member);
        },
        py::arg("file"), py::arg("base"), py::arg("length"), py::arg("cd_off"), py::arg("cd_size"),
        py::arg("count"), py::arg("member") = py::none(),
        "zipfile_safe's central directory walk for a zip with nothing to report: the zip lies at\n"
        "[base, base + length) of `file` (a buffer), its directory at [cd_off, cd_off + cd_size)\n"
        "of the zip holding `count` entries. Returns (names, header_offsets, data_offsets,\n"
        "compressed_sizes, sizes, methods, crcs) in directory order, offsets absolute in `file`,\n"
        "or None when anything is unusual (the Python reader then says what). With `member`\n"
        "(zipfile_safe.ZipMember), a list of members made from those columns instead.");
}
