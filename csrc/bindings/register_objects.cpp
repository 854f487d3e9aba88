// frozen_rows / frozen_replaced: instances of one frozen dataclass made by the thousand, from
// columns or as copies with one field changed, each as its generated __init__ makes it
// (objects.hpp), without a Python call per instance: plan rows read through a template
// (inspector/mapping/plantemplates.py), a status set on 100k rows at once (Plan.approve).
#include <pybind11/pybind11.h>

#include <vector>

#include "objects.hpp"

namespace py = pybind11;

namespace {

// cls(**{names[k]: columns[k][i]}) for i < n, where a column is a list of n values or a 1-tuple
// (value,) that every instance shares. `names` are all of cls's fields in declaration order.
py::list frozen_rows(py::handle cls, const py::tuple& names, const py::list& columns, Py_ssize_t n) {
    if (!PyType_Check(cls.ptr())) throw py::type_error("frozen_rows: cls must be a class");
    if (n < 0) throw py::value_error("frozen_rows: n must be >= 0");
    const auto k = static_cast<std::size_t>(names.size());
    if (static_cast<std::size_t>(columns.size()) != k)
        throw py::value_error("frozen_rows: one column per name");
    std::vector<PyObject*> name_ptrs(k), cols(k);
    std::vector<bool> shared(k);
    for (std::size_t j = 0; j < k; ++j) {
        name_ptrs[j] = names[j].ptr();
        if (!PyUnicode_Check(name_ptrs[j])) throw py::type_error("frozen_rows: names are str");
        PyObject* col = columns[j].ptr();
        shared[j] = PyTuple_Check(col);
        if (shared[j] ? PyTuple_GET_SIZE(col) != 1 : !PyList_Check(col) || PyList_GET_SIZE(col) != n)
            throw py::value_error("frozen_rows: a column is a list of n values or a 1-tuple");
        cols[j] = col;
    }
    const inspector_bindings::FrozenMaker maker(reinterpret_cast<PyTypeObject*>(cls.ptr()), name_ptrs.data(), k);
    py::list out(n);
    std::vector<PyObject*> values(k);
    for (Py_ssize_t i = 0; i < n; ++i) {
        for (std::size_t j = 0; j < k; ++j)
            values[j] = shared[j] ? PyTuple_GET_ITEM(cols[j], 0) : PyList_GET_ITEM(cols[j], i);
        PyObject* o = maker.make(values.data());
        if (o == nullptr) throw py::error_already_set();
        PyList_SET_ITEM(out.ptr(), i, o);
    }
    return out;
}

// Copies of `instances` (of cls, whose fields are `names` in declaration order) with field
// `field` set to `value`: dataclasses.replace for many rows at once, without __init__.
py::list frozen_replaced(py::handle cls, const py::tuple& names, const py::list& instances, const py::str& field,
                         py::handle value) {
    if (!PyType_Check(cls.ptr())) throw py::type_error("frozen_replaced: cls must be a class");
    const auto k = static_cast<std::size_t>(names.size());
    std::vector<PyObject*> name_ptrs(k);
    std::size_t at = k;
    for (std::size_t j = 0; j < k; ++j) {
        name_ptrs[j] = names[j].ptr();
        if (!PyUnicode_Check(name_ptrs[j])) throw py::type_error("frozen_replaced: names are str");
        const int same = PyUnicode_Compare(name_ptrs[j], field.ptr());
        if (same == -1 && PyErr_Occurred()) throw py::error_already_set();
        if (same == 0) at = j;
    }
    if (at == k) throw py::value_error("frozen_replaced: field is not one of names");
    const inspector_bindings::FrozenMaker maker(reinterpret_cast<PyTypeObject*>(cls.ptr()), name_ptrs.data(), k);
    const Py_ssize_t n = PyList_GET_SIZE(instances.ptr());
    py::list out(n);
    std::vector<py::object> held(k);
    std::vector<PyObject*> values(k);
    for (Py_ssize_t i = 0; i < n; ++i) {
        PyObject* o = PyList_GET_ITEM(instances.ptr(), i);
        if (!PyObject_TypeCheck(o, reinterpret_cast<PyTypeObject*>(cls.ptr())))
            throw py::type_error("frozen_replaced: an instance is not of cls");
        for (std::size_t j = 0; j < k; ++j) {
            if (j == at) {
                values[j] = value.ptr();
                continue;
            }
            PyObject* v = PyObject_GetAttr(o, name_ptrs[j]);
            if (v == nullptr) throw py::error_already_set();
            held[j] = py::reinterpret_steal<py::object>(v);
            values[j] = v;
        }
        PyObject* made = maker.make(values.data());
        if (made == nullptr) throw py::error_already_set();
        PyList_SET_ITEM(out.ptr(), i, made);
    }
    return out;
}

}  // namespace

void register_objects(py::module_& m) {
    m.def("frozen_rows", &frozen_rows, py::arg("cls"), py::arg("names"), py::arg("columns"), py::arg("n"),
          "Instances of the frozen dataclass cls, the i-th with field names[k] = columns[k][i] (a list of n "
          "values) or columns[k][0] (a 1-tuple: shared); names are all its fields in declaration order.");
    m.def("frozen_replaced", &frozen_replaced, py::arg("cls"), py::arg("names"), py::arg("instances"),
          py::arg("field"), py::arg("value"),
          "Copies of instances of the frozen dataclass cls (fields `names`, in declaration order) with `field` "
          "set to value.");
}
