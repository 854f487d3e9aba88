// Bindings for safetensors header parsing (csrc/st_header.*) and name folding (csrc/fold.*).
// Argument conversion only. The file reading, parsing and folding run with the GIL released:
// by then every input is a C++ copy (path, dtype table) or a buffer / list we hold a reference to
// that no other thread can change (a Py_buffer view pins its memory; the names are read from a
// private copy of the caller's list, which keeps every str alive).
#include <pybind11/pybind11.h>

#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "buffer.hpp"
#include "fold.hpp"
#include "st_header.hpp"

namespace py = pybind11;
namespace st = inspector::st;

namespace {

// A dtype table given as (safetensors name, itemsize, label) rows; the label is what the result's
// dtype column holds for that dtype.
struct DtypeTable {
    std::vector<st::DtypeSpec> specs;
    std::vector<py::object> labels;
};

DtypeTable dtype_table(py::handle rows) {
    DtypeTable t;
    for (py::handle row : rows) {
        const auto r = row.cast<py::tuple>();
        if (r.size() != 3) throw py::value_error("dtype rows are (safetensors name, itemsize, label)");
        t.specs.push_back({r[0].cast<std::string>(), r[1].cast<std::uint64_t>()});
        t.labels.push_back(py::reinterpret_borrow<py::object>(r[2]));
    }
    return t;
}

py::object steal(PyObject* o) {
    if (o == nullptr) throw py::error_already_set();
    return py::reinterpret_steal<py::object>(o);
}

// Strings from the core may hold lone surrogates (st_header.hpp): decode as Python's json did.
py::object text(std::string_view s) {
    return steal(PyUnicode_DecodeUTF8(s.data(), static_cast<Py_ssize_t>(s.size()), "surrogatepass"));
}

template <class Make>
py::list column(std::size_t n, Make make) {
    py::list out = py::reinterpret_steal<py::list>(steal(PyList_New(static_cast<Py_ssize_t>(n))).release());
    for (std::size_t i = 0; i < n; ++i) PyList_SET_ITEM(out.ptr(), static_cast<Py_ssize_t>(i), make(i).release().ptr());
    return out;
}

py::dict to_python(const st::Header& h, const DtypeTable& table, bool offsets) {
    const std::size_t n = h.size();
    py::dict d;
    d["names"] = column(n, [&](std::size_t i) { return text(h.name(i)); });
    // Tensors share shapes (every expert of a MoE layer): one tuple per distinct shape saves
    // memory and the garbage collector's time (tuples are tracked objects).
    std::unordered_map<std::string, py::object> shape_tuples;
    std::string key;
    d["shapes"] = column(n, [&](std::size_t i) {
        const auto [dims, rank] = h.shape(i);
        key.assign(reinterpret_cast<const char*>(dims), rank * sizeof(std::uint64_t));
        auto [it, added] = shape_tuples.try_emplace(key);
        if (added) {
            it->second = steal(PyTuple_New(static_cast<Py_ssize_t>(rank)));
            for (std::size_t k = 0; k < rank; ++k)
                PyTuple_SET_ITEM(it->second.ptr(), static_cast<Py_ssize_t>(k),
                                 steal(PyLong_FromUnsignedLongLong(dims[k])).release().ptr());
        }
        return it->second;
    });
    d["dtypes"] = column(n, [&](std::size_t i) { return table.labels[h.dtype[i]]; });
    if (offsets) {
        d["begins"] = column(n, [&](std::size_t i) { return steal(PyLong_FromUnsignedLongLong(h.begin[i])); });
        d["ends"] = column(n, [&](std::size_t i) { return steal(PyLong_FromUnsignedLongLong(h.end[i])); });
    }
    py::dict meta;
    for (const auto& [k, v] : h.metadata) meta[text(k)] = text(v);
    d["metadata"] = meta;
    d["data_start"] = h.data_start;
    return d;
}

// UTF-8 views of a list of str, read from a private copy of the list (which keeps every str
// alive and cannot be changed by another thread while the GIL is released). `ok` is false when
// a name is not ASCII (with ascii_only) or cannot be encoded (a lone surrogate).
struct NameViews {
    NameViews(py::handle names, bool ascii_only) {
        own = py::reinterpret_steal<py::list>(steal(PySequence_List(names.ptr())).release());
        views.resize(own.size());
        for (std::size_t i = 0; i < views.size(); ++i) {
            PyObject* s = PyList_GET_ITEM(own.ptr(), static_cast<Py_ssize_t>(i));
            if (!PyUnicode_Check(s)) throw py::type_error("names must be str");
            if (ascii_only && !PyUnicode_IS_ASCII(s)) return;
            Py_ssize_t len = 0;
            const char* data = PyUnicode_AsUTF8AndSize(s, &len);
            if (data == nullptr) {
                PyErr_Clear();
                return;
            }
            views[i] = std::string_view(data, static_cast<std::size_t>(len));
        }
        ok = true;
    }
    py::list own;
    std::vector<std::string_view> views;
    bool ok = false;
};

}  // namespace

void register_header(py::module_& m) {
    m.def(
        "parse_safetensors_header",
        [](py::buffer file, std::uint64_t file_size, py::handle dtypes, bool offsets) {
            const DtypeTable table = dtype_table(dtypes);
            const inspector_bindings::PinnedBuffer view(file, "file");
            const std::string_view bytes(reinterpret_cast<const char*>(view.data()), view.size());
            st::Header h;
            {
                inspector_bindings::NoGil nogil(view.size());  // buffer.hpp
                h = st::parse_header(bytes, file_size, table.specs);
            }
            return to_python(h, table, offsets);
        },
        py::arg("file"), py::arg("file_size"), py::arg("dtypes"), py::arg("offsets") = true,
        "Parse and validate a safetensors header (not its data). `file` is the file's start (at\n"
        "least 8 + header length bytes, read through a byte source), `file_size` the size of the\n"
        "whole file; `dtypes` rows are (safetensors name, itemsize, label). Returns a dict of\n"
        "columns in file order: names, shapes (tuples), dtypes (labels), begins/ends (when\n"
        "`offsets`), plus metadata and data_start. Bad input raises CoreError.");
    m.def(
        "fold_names",
        [](py::handle names) -> py::object {
            NameViews v(names, true);
            if (!v.ok) return py::none();
            std::optional<std::vector<std::string>> folded;
            {
                py::gil_scoped_release release;  // see the header comment
                folded = inspector::fold::fold_names(v.views);
            }
            if (!folded) return py::none();
            return column(folded->size(), [&](std::size_t i) { return text((*folded)[i]); });
        },
        py::arg("names"),
        "tree.fold_names() for long lists: names differing in one numeric segment folded into\n"
        "ranges. None when a name is outside what the core covers (non-ASCII, a number of more\n"
        "than 18 digits, a literal '#' segment): use the Python function then.");
    m.def(
        "prefix_counts",
        [](py::handle names, std::size_t depth) -> py::object {
            NameViews v(names, false);
            if (!v.ok) return py::none();
            std::vector<std::pair<std::string_view, std::size_t>> counts;
            {
                py::gil_scoped_release release;  // see the header comment
                counts = inspector::fold::prefix_counts(v.views, depth);
            }
            return column(counts.size(), [&](std::size_t i) {
                return py::object(py::make_tuple(text(counts[i].first), counts[i].second));
            });
        },
        py::arg("names"), py::arg("depth"),
        "[(prefix, count)] of the names' first `depth` dotted segments, in order of first\n"
        "appearance. None when a name cannot be encoded as UTF-8 (a lone surrogate).");
}
