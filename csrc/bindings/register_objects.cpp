// frozen_rows / frozen_replaced: instances of one frozen dataclass made by the thousand, from
// columns or as copies with one field changed, each as its generated __init__ makes it
// (objects.hpp), without a Python call per instance: plan rows read through a template
// (inspector/mapping/plantemplates.py), a status set on 100k rows at once (Plan.approve).
#include <pybind11/pybind11.h>

#include <string>
#include <vector>

#include "objects.hpp"

namespace py = pybind11;

namespace {

// The classes these make: a heap type (a Python class) whose instances object.__new__ makes, as
// a dataclass's are. Built-in types (dict, slice, type) have their own layouts and constructors.
PyTypeObject* plain_class(py::handle cls, const char* who) {
    if (!PyType_Check(cls.ptr())) throw py::type_error(std::string(who) + ": cls must be a class");
    auto* type = reinterpret_cast<PyTypeObject*>(cls.ptr());
    if (!PyType_HasFeature(type, Py_TPFLAGS_HEAPTYPE) || type->tp_new != PyBaseObject_Type.tp_new)
        throw py::type_error(std::string(who) + ": cls must be a Python class made by object.__new__");
    return type;
}

// A tuple of the sequence's items, held: setting a field may run Python code (a descriptor),
// which could change a list read by borrowed pointers.
py::tuple held(py::handle seq) {
    PyObject* t = PySequence_Tuple(seq.ptr());
    if (t == nullptr) throw py::error_already_set();
    return py::reinterpret_steal<py::tuple>(t);
}

// cls(**{names[k]: columns[k][i]}) for i < n, where a column is a list of n values or a 1-tuple
// (value,) that every instance shares. `names` are all of cls's fields in declaration order.
py::list frozen_rows(py::handle cls, const py::tuple& names, const py::list& columns, Py_ssize_t n) {
    PyTypeObject* type = plain_class(cls, "frozen_rows");
    if (n < 0) throw py::value_error("frozen_rows: n must be >= 0");
    const auto k = static_cast<std::size_t>(names.size());
    if (static_cast<std::size_t>(columns.size()) != k)
        throw py::value_error("frozen_rows: one column per name");
    std::vector<PyObject*> name_ptrs(k);
    std::vector<py::tuple> cols(k);  // each column's values, held
    std::vector<bool> shared(k);
    for (std::size_t j = 0; j < k; ++j) {
        name_ptrs[j] = names[j].ptr();
        if (!PyUnicode_Check(name_ptrs[j])) throw py::type_error("frozen_rows: names are str");
        PyObject* col = columns[j].ptr();
        shared[j] = PyTuple_Check(col);
        if (shared[j] ? PyTuple_GET_SIZE(col) != 1 : !PyList_Check(col) || PyList_GET_SIZE(col) != n)
            throw py::value_error("frozen_rows: a column is a list of n values or a 1-tuple");
        cols[j] = held(col);
    }
    const inspector_bindings::FrozenMaker maker(type, name_ptrs.data(), k);
    py::list out(n);
    std::vector<PyObject*> values(k);
    for (Py_ssize_t i = 0; i < n; ++i) {
        for (std::size_t j = 0; j < k; ++j)
            values[j] = PyTuple_GET_ITEM(cols[j].ptr(), shared[j] ? 0 : i);
        PyObject* o = maker.make(values.data());
        if (o == nullptr) throw py::error_already_set();
        PyList_SET_ITEM(out.ptr(), i, o);
    }
    return out;
}

// frozen_replaced for a class whose fields are all plain object slots (a slots dataclass): each
// copy's slots are the original's pointers (a reference more each), the one at `at` `value`, as
// reading and setting every slot through its member definition would make them (100k rows of 15
// fields: 20 -> 5 ms). False, with nothing made, when a field is not such a slot.
bool copy_slots(PyTypeObject* type, const std::vector<PyObject*>& names, const py::tuple& rows, std::size_t at,
                py::handle value, py::list& out) {
    const std::vector<PyMemberDef*> members = inspector_bindings::slot_members(type, names);
    if (members.size() != names.size()) return false;
    for (const PyMemberDef* m : members)
        if (m->type != T_OBJECT_EX || (m->flags & READONLY) != 0) return false;
    const Py_ssize_t n = PyTuple_GET_SIZE(rows.ptr());
    for (Py_ssize_t i = 0; i < n; ++i) {
        PyObject* o = PyTuple_GET_ITEM(rows.ptr(), i);
        if (!Py_IS_TYPE(o, type))  // exactly cls: a subclass's own fields would be lost
            throw py::type_error("frozen_replaced: an instance is not of cls");
        PyObject* made = type->tp_alloc(type, 0);
        if (made == nullptr) throw py::error_already_set();
        for (std::size_t j = 0; j < members.size(); ++j) {
            const auto offset = static_cast<std::size_t>(members[j]->offset);
            PyObject* v = j == at ? value.ptr() : *reinterpret_cast<PyObject**>(reinterpret_cast<char*>(o) + offset);
            if (v == nullptr) {  // an unset slot: what reading it raises
                Py_DECREF(made);
                PyErr_Format(PyExc_AttributeError, "'%.200s' object has no attribute '%U'", type->tp_name,
                             names[j]);
                throw py::error_already_set();
            }
            Py_INCREF(v);
            *reinterpret_cast<PyObject**>(reinterpret_cast<char*>(made) + offset) = v;
        }
        PyList_SET_ITEM(out.ptr(), i, made);
    }
    return true;
}

// Copies of `instances` (of cls, whose fields are `names` in declaration order) with field
// `field` set to `value`: dataclasses.replace for many rows at once, without __init__.
py::list frozen_replaced(py::handle cls, const py::tuple& names, const py::list& instances, const py::str& field,
                         py::handle value) {
    PyTypeObject* type = plain_class(cls, "frozen_replaced");
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
    const inspector_bindings::FrozenMaker maker(type, name_ptrs.data(), k);
    const py::tuple rows = held(instances);
    const Py_ssize_t n = PyTuple_GET_SIZE(rows.ptr());
    py::list out(n);
    if (copy_slots(type, name_ptrs, rows, at, value, out)) return out;
    std::vector<py::object> fields(k);  // the values read from one instance, held
    std::vector<PyObject*> values(k);
    inspector_bindings::SlotReader reader(name_ptrs.data(), k);  // every instance is exactly cls
    for (Py_ssize_t i = 0; i < n; ++i) {
        PyObject* o = PyTuple_GET_ITEM(rows.ptr(), i);
        if (!Py_IS_TYPE(o, type))  // exactly cls: a subclass's own fields would be lost
            throw py::type_error("frozen_replaced: an instance is not of cls");
        for (std::size_t j = 0; j < k; ++j) {
            if (j == at) {
                values[j] = value.ptr();
                continue;
            }
            PyObject* v = reader.get(o, j);
            if (v == nullptr) throw py::error_already_set();
            fields[j] = py::reinterpret_steal<py::object>(v);
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
