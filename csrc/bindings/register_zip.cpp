// zip_central_directory: csrc/zip_directory.hpp over a pinned buffer, its columns as lists;
// torch_zip_layout: csrc/torch_zip_layout.hpp, its members as a ZipTable (zip_table.hpp).
#include <pybind11/pybind11.h>

#include <cstdint>
#include <memory>
#include <utility>
#include <optional>
#include <string_view>

#include "buffer.hpp"
#include "objects.hpp"
#include "torch_zip_layout.hpp"
#include "zip_directory.hpp"
#include "zip_table.hpp"

namespace py = pybind11;

namespace {

using inspector_bindings::steal;

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

py::object ascii(std::string_view s) {
    return steal(PyUnicode_DecodeASCII(s.data(), static_cast<Py_ssize_t>(s.size()), nullptr));
}

py::object integer(std::uint64_t v) { return steal(PyLong_FromUnsignedLongLong(static_cast<unsigned long long>(v))); }

// The walk's columns as lists: names, then offsets (plus `base`: absolute), sizes, methods, crcs.
py::tuple columns_of(const inspector::zipdir::Members& f, std::uint64_t base) {
    py::list names(f.names.size());
    for (std::size_t i = 0; i < f.names.size(); ++i)
        PyList_SET_ITEM(names.ptr(), static_cast<Py_ssize_t>(i), ascii(f.names[i]).release().ptr());
    return py::make_tuple(names, ints(f.header_offsets, base), ints(f.data_offsets, base), ints(f.compressed_sizes, 0),
                          ints(f.sizes, 0), ints(f.methods, 0), ints(f.crcs, 0));
}

// The zip at [base, base + length) of a pinned buffer; nothing when it lies outside.
std::optional<std::string_view> zip_in(const inspector_bindings::PinnedBuffer& view, std::uint64_t base,
                                       std::uint64_t length) {
    if (base > view.size() || length > view.size() - base) return std::nullopt;
    return std::string_view(reinterpret_cast<const char*>(view.data()) + base, static_cast<std::size_t>(length));
}

// ZipMember's fields, in order, interned once for the process.
const std::vector<PyObject*>& member_fields() {
    static std::vector<PyObject*> names;
    if (names.empty() && !inspector_bindings::intern_all({"name", "header_offset", "data_offset", "compressed_size",
                                                          "size", "method", "crc32"},
                                                         names)) {
        names.clear();  // the next call tries again
        throw py::error_already_set();
    }
    return names;
}

PyTypeObject* member_type(py::handle member) {
    if (!PyType_Check(member.ptr())) throw py::type_error("member: the ZipMember class");
    return reinterpret_cast<PyTypeObject*>(member.ptr());
}

// Member i of the walk as a `maker`'s object (zipfile_safe.ZipMember), made as its frozen
// dataclass __init__ makes it, offsets absolute (plus `base`).
py::object member_object(const inspector::zipdir::Members& f, std::size_t i, std::uint64_t base,
                         const inspector_bindings::FrozenMaker& maker) {
    const py::object row[7] = {ascii(f.names[i]),         integer(f.header_offsets[i] + base),
                               integer(f.data_offsets[i] + base), integer(f.compressed_sizes[i]),
                               integer(f.sizes[i]),          integer(f.methods[i]),
                               integer(f.crcs[i])};
    PyObject* values[7];
    for (std::size_t k = 0; k < 7; ++k) values[k] = row[k].ptr();
    return steal(maker.make(values));
}

// One `member` (zipfile_safe.ZipMember) per member of the walk.
py::list member_objects(const inspector::zipdir::Members& f, std::uint64_t base, py::handle member) {
    const inspector_bindings::FrozenMaker maker(member_type(member), member_fields().data(), 7);
    py::list out(f.names.size());
    for (std::size_t i = 0; i < f.names.size(); ++i)
        PyList_SET_ITEM(out.ptr(), static_cast<Py_ssize_t>(i), member_object(f, i, base, maker).release().ptr());
    return out;
}

// The index of `name` in the table, or -1 (also for a name that is not ASCII text: no member's).
long long find_member(const inspector_bindings::ZipTable& t, py::handle name) {
    if (!PyUnicode_Check(name.ptr())) return -1;
    Py_ssize_t n = 0;
    const char* s = PyUnicode_AsUTF8AndSize(name.ptr(), &n);
    if (s == nullptr) {
        PyErr_Clear();
        return -1;
    }
    const auto i = t.table.find(std::string_view(s, static_cast<std::size_t>(n)));
    return i ? static_cast<long long>(*i) : -1;
}

}  // namespace

void register_zip(py::module_& m) {
    using inspector_bindings::ZipTable;
    py::class_<ZipTable>(m, "ZipTable",
                         "A zip's members as the core keeps them (torch_zip_layout): looked up by name, each\n"
                         "made as a ZipMember object when asked for. zipfile_safe.CompiledMembers is its Mapping.")
        .def("__len__", [](const ZipTable& t) { return t.table.size(); })
        .def("find", &find_member, py::arg("name"), "The index of member `name`, or -1.")
        .def(
            "member",
            [](const ZipTable& t, std::size_t i) {
                if (i >= t.table.size()) throw py::index_error("no such member");
                return member_object(t.table.members(), i, 0, t.maker);
            },
            py::arg("i"), "Member i as a ZipMember (offsets absolute).")
        .def(
            "names",
            [](const ZipTable& t) {
                const auto& names = t.table.members().names;
                py::list out(names.size());
                for (std::size_t i = 0; i < names.size(); ++i)
                    PyList_SET_ITEM(out.ptr(), static_cast<Py_ssize_t>(i), ascii(names[i]).release().ptr());
                return out;
            },
            "The members' names, in directory order.");

    m.def(
        "zip_central_directory",
        [](py::handle file, std::uint64_t base, std::uint64_t length, std::uint64_t cd_off,
           std::uint64_t cd_size, std::uint64_t count, py::handle member) -> py::object {
            const inspector_bindings::PinnedBuffer view(file, "file");
            const std::optional<std::string_view> zip = zip_in(view, base, length);
            if (!zip) return py::none();
            std::optional<inspector::zipdir::Members> found;
            {
                inspector_bindings::NoGil nogil(cd_size);  // buffer.hpp
                found = inspector::zipdir::scan_central_directory(*zip, cd_off, cd_size, count);
            }
            if (!found) return py::none();
            if (member.is_none()) return columns_of(*found, base);
            return member_objects(*found, base, member);
        },
        py::arg("file"), py::arg("base"), py::arg("length"), py::arg("cd_off"), py::arg("cd_size"),
        py::arg("count"), py::arg("member") = py::none(),
        "zipfile_safe's central directory walk for a zip with nothing to report: the zip lies at\n"
        "[base, base + length) of `file` (a buffer), its directory at [cd_off, cd_off + cd_size)\n"
        "of the zip holding `count` entries. Returns (names, header_offsets, data_offsets,\n"
        "compressed_sizes, sizes, methods, crcs) in directory order, offsets absolute in `file`,\n"
        "or None when anything is unusual (the Python reader then says what). With `member`\n"
        "(zipfile_safe.ZipMember), a list of members made from those columns instead.");

    m.def(
        "torch_zip_layout",
        [](py::handle file, std::uint64_t base, std::uint64_t length, std::uint64_t small_max,
           py::handle member) -> py::object {
            const inspector_bindings::PinnedBuffer view(file, "file");
            const std::optional<std::string_view> zip = zip_in(view, base, length);
            if (!zip) return py::none();
            std::optional<inspector::torchzip::Layout> found;
            {
                // It reads only the end records, the directory and the small records, which a large
                // zip may have many of; for a small one (a DCP chunk) keeping the GIL is cheaper.
                inspector_bindings::NoGil nogil(length);
                found = inspector::torchzip::scan_layout(*zip, small_max);
            }
            if (!found) return py::none();
            auto& f = *found;
            PyTypeObject* type = member_type(member);
            py::dict small;
            for (const std::size_t i : f.small) {
                const py::object data = steal(PyBytes_FromStringAndSize(
                    zip->data() + f.members.data_offsets[i], static_cast<Py_ssize_t>(f.members.sizes[i])));
                if (PyDict_SetItem(small.ptr(), ascii(f.members.names[i]).ptr(), data.ptr()) != 0)
                    throw py::error_already_set();
            }
            if (f.members.names.size() >= UINT32_MAX) return py::none();  // past the table's index
            const py::object root = ascii(f.root);
            auto table = std::make_unique<inspector_bindings::ZipTable>(inspector_bindings::ZipTable{
                inspector::zipdir::Table(std::move(f.members), base), py::reinterpret_borrow<py::object>(member),
                inspector_bindings::FrozenMaker(type, member_fields().data(), 7)});
            return py::make_tuple(py::cast(std::move(table)), root, small);
        },
        py::arg("file"), py::arg("base"), py::arg("length"), py::arg("small_max"), py::arg("member"),
        "torch_zip's directory, root folder and small records in one compiled pass, for a torch.save\n"
        "zip at [base, base + length) of `file` (a buffer) with nothing to report: (the members as a\n"
        "ZipTable making `member` (zipfile_safe.ZipMember) objects, the root folder with its '/', {name: bytes}\n"
        "of the CRC-checked records outside <root>data/ of at most `small_max` bytes), offsets\n"
        "absolute in `file`; None when anything is unusual (the Python reader then says what).");
}
