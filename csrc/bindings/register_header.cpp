// Bindings for safetensors header parsing (csrc/st_header.*), name folding (csrc/fold.*) and
// module trees (csrc/module_tree.*).
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
#include "objects.hpp"
#include "fold.hpp"
#include "module_tree.hpp"
#include "st_header.hpp"

namespace py = pybind11;
namespace st = inspector::st;

namespace {

using inspector_bindings::steal;

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

void add_offsets(py::dict& d, const st::Header& h) {
    d["begins"] = column(h.size(), [&](std::size_t i) { return steal(PyLong_FromUnsignedLongLong(h.begin[i])); });
    d["ends"] = column(h.size(), [&](std::size_t i) { return steal(PyLong_FromUnsignedLongLong(h.end[i])); });
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
    if (offsets) add_offsets(d, h);
    py::dict meta;
    for (const auto& [k, v] : h.metadata) meta[text(k)] = text(v);
    d["metadata"] = meta;
    d["data_start"] = h.data_start;
    return d;
}

// model.contiguous_strides(shape) (a zero dimension counts as one), or nullopt past 2^64.
std::optional<py::object> contiguous_strides(py::handle shape) {
    const auto rank = PyTuple_GET_SIZE(shape.ptr());
    py::object out = steal(PyTuple_New(rank));
    std::uint64_t acc = 1;
    for (Py_ssize_t k = rank - 1; k >= 0; --k) {
        PyTuple_SET_ITEM(out.ptr(), k, steal(PyLong_FromUnsignedLongLong(acc)).release().ptr());
        const std::uint64_t n = PyLong_AsUnsignedLongLong(PyTuple_GET_ITEM(shape.ptr(), k));
        if (PyErr_Occurred()) throw py::error_already_set();
        if (__builtin_mul_overflow(acc, n ? n : 1, &acc) && k > 0) return std::nullopt;
    }
    return out;
}

// read_tensors' {name: TensorInfo} from the columns of `d` (to_python's), each tensor a
// contiguous view of its own storage, keyed by its name, at [data_start + begin, data_start +
// end) of `abspath`, its objects made as their dataclasses' __init__ makes them; nullopt where
// a stride passes 2^64 (the Python reader then makes them).
std::optional<py::dict> tensor_infos(const st::Header& h, const py::dict& d, py::handle made) {
    const auto spec = made.cast<py::tuple>();
    if (spec.size() != 4 || !PyType_Check(spec[0].ptr()) || !PyType_Check(spec[1].ptr()) ||
        !PyType_Check(spec[2].ptr()) || !PyUnicode_Check(spec[3].ptr()))
        throw py::type_error("tensors: (TensorInfo, Storage, ByteSource, abspath)");
    std::vector<py::object> names;
    for (const char* n : {"name", "dtype", "shape", "strides", "storage_offset", "storage", "is_parameter",
                          "requires_grad", "key", "dtype", "nbytes", "source", "byteorder", "path", "offset",
                          "length", "compression", "size", "buffer", "assembled"})
        names.push_back(steal(PyUnicode_InternFromString(n)));
    std::vector<PyObject*> n;
    for (const auto& o : names) n.push_back(o.ptr());
    using inspector_bindings::FrozenMaker;
    const FrozenMaker tensor(reinterpret_cast<PyTypeObject*>(spec[0].ptr()), n.data(), 8);
    const FrozenMaker storage(reinterpret_cast<PyTypeObject*>(spec[1].ptr()), n.data() + 8, 5);
    const FrozenMaker source(reinterpret_cast<PyTypeObject*>(spec[2].ptr()), n.data() + 13, 7);
    const py::object zero = py::int_(0), minus_one = py::int_(-1), empty = py::str(""), little = py::str("little");
    std::unordered_map<PyObject*, py::object> strides;  // shape tuple (one per distinct shape) -> strides
    const py::list names_col = d["names"], shapes = d["shapes"], dtypes = d["dtypes"];
    py::dict out;
    for (std::size_t i = 0; i < h.size(); ++i) {
        PyObject* name = PyList_GET_ITEM(names_col.ptr(), static_cast<Py_ssize_t>(i));
        PyObject* shape = PyList_GET_ITEM(shapes.ptr(), static_cast<Py_ssize_t>(i));
        PyObject* dtype = PyList_GET_ITEM(dtypes.ptr(), static_cast<Py_ssize_t>(i));
        auto found = strides.find(shape);
        if (found == strides.end()) {
            auto made_strides = contiguous_strides(shape);
            if (!made_strides) return std::nullopt;
            found = strides.emplace(shape, std::move(*made_strides)).first;
        }
        const std::uint64_t length = h.end[i] - h.begin[i];
        const py::object at = steal(PyLong_FromUnsignedLongLong(h.data_start + h.begin[i]));
        const py::object size = steal(PyLong_FromUnsignedLongLong(length));
        PyObject* source_values[] = {spec[3].ptr(), at.ptr(), size.ptr(), empty.ptr(), minus_one.ptr(), Py_None,
                                     Py_False};
        const py::object src = steal(source.make(source_values));
        PyObject* storage_values[] = {name, dtype, size.ptr(), src.ptr(), little.ptr()};
        const py::object store = steal(storage.make(storage_values));
        PyObject* tensor_values[] = {name, dtype, shape, found->second.ptr(), zero.ptr(), store.ptr(), Py_False,
                                     Py_False};
        const py::object t = steal(tensor.make(tensor_values));
        if (PyDict_SetItem(out.ptr(), name, t.ptr()) != 0) throw py::error_already_set();
    }
    return out;
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

// (leaf, dtype, numel, nbytes) rows; nullopt for a number past uint64 (the caller's reference
// then works the sizes out in Python ints).
std::optional<std::vector<inspector::modtree::Kind>> kinds_of(py::handle rows) {
    std::vector<inspector::modtree::Kind> kinds;
    for (py::handle row : rows) {
        const auto r = row.cast<py::tuple>();
        if (r.size() != 4) throw py::value_error("kinds are (leaf, dtype, numel, nbytes) rows");
        std::uint64_t v[4];
        for (std::size_t j = 0; j < 4; ++j) {
            v[j] = PyLong_AsUnsignedLongLong(r[j].ptr());
            if (PyErr_Occurred()) {
                PyErr_Clear();
                return std::nullopt;
            }
        }
        if (v[0] > 0xFFFFFFFEull || v[1] > 0xFFFFFFFFull) throw py::value_error("kind numbers are 32-bit");
        kinds.push_back({static_cast<std::uint32_t>(v[0]), static_cast<std::uint32_t>(v[1]), v[2], v[3]});
    }
    return kinds;
}

py::object module_tree_columns(const std::vector<inspector::modtree::Node>& nodes) {
    const std::size_t n = nodes.size();
    auto number = [](auto v) { return py::reinterpret_steal<py::object>(py::int_(v).release()); };
    py::dict d;
    d["parents"] = column(n, [&](std::size_t i) { return number(nodes[i].parent); });
    d["names"] = column(n, [&](std::size_t i) { return text(nodes[i].name); });
    d["tensors"] = column(n, [&](std::size_t i) { return number(nodes[i].tensor); });
    d["counts"] = column(n, [&](std::size_t i) { return number(nodes[i].tensors); });
    d["params"] = column(n, [&](std::size_t i) { return number(nodes[i].params); });
    d["nbytes"] = column(n, [&](std::size_t i) { return number(nodes[i].nbytes); });
    d["repeats"] = column(n, [&](std::size_t i) { return number(nodes[i].repeat); });
    d["signatures"] = column(n, [&](std::size_t i) { return number(nodes[i].signature); });
    d["dtypes"] = column(n, [&](std::size_t i) {
        const auto& counts = nodes[i].dtypes;
        return py::object(column(counts.size(), [&](std::size_t j) {
            return py::object(py::make_tuple(counts[j].first, counts[j].second));
        }));
    });
    return d;
}

}  // namespace

void register_header(py::module_& m) {
    m.def(
        "parse_safetensors_header",
        [](py::buffer file, std::uint64_t file_size, py::handle dtypes, bool offsets, py::handle tensors) {
            const DtypeTable table = dtype_table(dtypes);
            const inspector_bindings::PinnedBuffer view(file, "file");
            const std::string_view bytes(reinterpret_cast<const char*>(view.data()), view.size());
            st::Header h;
            {
                inspector_bindings::NoGil nogil(view.size());  // buffer.hpp
                h = st::parse_header(bytes, file_size, table.specs);
            }
            // With `tensors`, the offset columns (two lists of ints: 8 MB at 100k tensors) are
            // made only when the objects are not: never both at once.
            py::dict d = to_python(h, table, offsets && tensors.is_none());
            if (!tensors.is_none()) {
                auto made = tensor_infos(h, d, tensors);
                if (made) d["tensors"] = *made;
                else if (offsets) add_offsets(d, h);
            }
            return d;
        },
        py::arg("file"), py::arg("file_size"), py::arg("dtypes"), py::arg("offsets") = true,
        py::arg("tensors") = py::none(),
        "Parse and validate a safetensors header (not its data). `file` is the file's start (at\n"
        "least 8 + header length bytes, read through a byte source), `file_size` the size of the\n"
        "whole file; `dtypes` rows are (safetensors name, itemsize, label). Returns a dict of\n"
        "columns in file order: names, shapes (tuples), dtypes (labels), begins/ends (when\n"
        "`offsets`), plus metadata and data_start. Bad input raises CoreError. With `tensors`,\n"
        "(TensorInfo, Storage, ByteSource, abspath), also `tensors`: {name: TensorInfo} (then no\n"
        "begins/ends) as safetensors.read_tensors makes them (absent when a stride passes 2^64: then\n"
        "begins/ends are there when `offsets`).");
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
        "module_tree",
        [](py::handle names, py::handle kind_of, py::handle kinds, bool fold) -> py::object {
            NameViews v(names, fold);
            if (!v.ok) return py::none();
            const auto table = kinds_of(kinds);
            if (!table) return py::none();
            std::vector<std::uint32_t> of;
            of.reserve(v.views.size());
            for (py::handle k : kind_of) {
                const auto i = k.cast<std::uint32_t>();
                if (i >= table->size()) throw py::value_error("kind_of: a kind number past kinds");
                of.push_back(i);
            }
            if (of.size() != v.views.size()) throw py::value_error("kind_of: one kind per name");
            std::optional<std::vector<inspector::modtree::Node>> nodes;
            {
                py::gil_scoped_release release;  // see the header comment
                nodes = inspector::modtree::build(v.views, of, *table, fold);
            }
            if (!nodes) return py::none();
            return module_tree_columns(*nodes);
        },
        py::arg("names"), py::arg("kind_of"), py::arg("kinds"), py::arg("fold"),
        "tree.build_tree() for many tensors: the module tree of `names` (tensor i of kind\n"
        "`kinds[kind_of[i]]`, a (leaf, dtype, numel, nbytes) row; equal leaf numbers: equal dtype\n"
        "and shape), in pre-order as a dict of columns (parents, names, tensors, counts, params,\n"
        "nbytes, dtypes, repeats, signatures). None when the input is outside what the core covers\n"
        "(module_tree.hpp): use the Python function then.");
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
