// Instances of the package's frozen dataclasses made without a Python call: their fields set one
// by one as object.__setattr__ sets them, which is what the generated __init__ does. For the types
// made by the hundred thousand (TensorInfo, Storage, ByteSource, ZipMember, Record).
#pragma once

#include <pybind11/pybind11.h>
#include <structmember.h>

#include <cstddef>
#include <initializer_list>
#include <vector>

namespace inspector_bindings {

// A new reference as an object; throws the Python error when `o` is nullptr.
inline pybind11::object steal(PyObject* o) {
    if (o == nullptr) throw pybind11::error_already_set();
    return pybind11::reinterpret_steal<pybind11::object>(o);
}

// `names` interned, appended to `out` (new references); false with the Python error set when one
// cannot be made. For field names a binding makes once and keeps for the process.
inline bool intern_all(std::initializer_list<const char*> names, std::vector<PyObject*>& out) {
    for (const char* n : names) {
        PyObject* s = PyUnicode_InternFromString(n);
        if (s == nullptr) return false;
        out.push_back(s);
    }
    return true;
}

// A new reference, or nullptr with the Python error set.
inline PyObject* frozen_instance(PyTypeObject* type, PyObject* const* names, PyObject* const* values,
                                 std::size_t n) {
    PyObject* o = type->tp_alloc(type, 0);
    if (o == nullptr) return nullptr;
    for (std::size_t k = 0; k < n; ++k)
        if (PyObject_GenericSetAttr(o, names[k], values[k]) != 0) {
            Py_DECREF(o);
            return nullptr;
        }
    return o;
}

// The member definitions of `type`'s slots named `names`, in order; empty when one of them is not
// a slot (then the generic attribute protocol must be used).
inline std::vector<PyMemberDef*> slot_members(PyTypeObject* type, const std::vector<PyObject*>& names) {
    std::vector<PyMemberDef*> members;
    for (PyObject* name : names) {
        PyObject* d = _PyType_Lookup(type, name);  // borrowed
        if (d == nullptr || Py_TYPE(d) != &PyMemberDescr_Type) return {};
        auto* member = reinterpret_cast<PyMemberDescrObject*>(d);
        // a slot of `type` or of a base: a descriptor taken from another class would write at
        // that class's offsets
        if (!PyType_IsSubtype(type, member->d_common.d_type)) return {};
        members.push_back(member->d_member);
    }
    return members;
}

// frozen_instance for one type, its fields looked up once: for a slots dataclass each field is
// set through its slot's member definition (what object.__setattr__ ends up calling), without
// the attribute lookup per field; any other type takes frozen_instance's way.
class FrozenMaker {
public:
    FrozenMaker(PyTypeObject* type, PyObject* const* names, std::size_t n)
        : type_(type), names_(names, names + n), members_(slot_members(type, names_)) {}

    PyObject* make(PyObject* const* values) const {
        if (members_.size() != names_.size()) return frozen_instance(type_, names_.data(), values, names_.size());
        PyObject* o = type_->tp_alloc(type_, 0);
        if (o == nullptr) return nullptr;
        for (std::size_t k = 0; k < members_.size(); ++k)
            if (PyMember_SetOne(reinterpret_cast<char*>(o), members_[k], values[k]) != 0) {
                Py_DECREF(o);
                return nullptr;
            }
        return o;
    }

private:
    PyTypeObject* type_;
    std::vector<PyObject*> names_;  // borrowed: the caller keeps them
    std::vector<PyMemberDef*> members_;
};

// Reads fields of instances of one slots dataclass through their slots' member definitions,
// looked up once (PyObject_GetAttr looks each name up in the type's dictionaries every time);
// an instance of any other type is read with PyObject_GetAttr.
class SlotReader {
public:
    SlotReader(PyObject* const* names, std::size_t n) : names_(names, names + n) {}

    // A new reference, or nullptr with the Python error set.
    PyObject* get(PyObject* o, std::size_t k) {
        if (Py_TYPE(o) != type_) learn(Py_TYPE(o));
        if (members_.empty()) return PyObject_GetAttr(o, names_[k]);
        return PyMember_GetOne(reinterpret_cast<const char*>(o), members_[k]);
    }

private:
    std::vector<PyObject*> names_;  // borrowed: the caller keeps them
    PyTypeObject* type_ = nullptr;
    std::vector<PyMemberDef*> members_;

    void learn(PyTypeObject* type) {
        type_ = type;
        members_ = slot_members(type, names_);
    }
};

}  // namespace inspector_bindings
