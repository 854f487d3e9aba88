// Bindings for the torch pickle fast path (csrc/pickle_fast.*): the stream is parsed into a tape
// with the GIL released (the Py_buffer view pins the bytes; the parser touches no Python object),
// then the tree is built here with the GIL held, in one pass over the tape: each node becomes one
// Python object, shared where the stream shared it. The caller's persistent_load is called once
// per distinct storage key, in stream order; tensors become TensorInfo objects directly (their
// slots set as object.__setattr__ would, which is what the frozen dataclass's __init__ does).
//
// Anything unexpected (a string that is not UTF-8, an unhashable dict key, a view past its
// storage, an Exception from a callback) gives "not handled": the Python machine then reads the
// stream and says what is wrong. Only a BaseException that is not an Exception (KeyboardInterrupt)
// propagates.
#include <pybind11/pybind11.h>

#include <cstring>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include "buffer.hpp"
#include "zip_table.hpp"
#include "objects.hpp"
#include "dcp_metadata.hpp"
#include "pickle_fast.hpp"

namespace py = pybind11;
namespace pkl = inspector::pkl;
namespace dcp = inspector::dcp;

namespace {

// A failed Python call: true when it is an Exception (cleared: fall back), false otherwise.
bool clear_exception() {
    if (!PyErr_ExceptionMatches(PyExc_Exception)) return false;
    PyErr_Clear();
    return true;
}

struct Types {
    PyObject* record;      // model.Record
    PyObject* storage;     // model.Storage
    PyTypeObject* tensor;  // model.TensorInfo
    PyObject* attrdict;    // pickle_build.AttrDict
};

struct StorageInfo {
    PyObject* obj = nullptr;    // borrowed from the builder's cache of storage objects
    PyObject* dtype = nullptr;  // storage.dtype (owned)
    std::uint64_t nbytes = 0, itemsize = 0;
};

// What the zip reader's persistent_load does for a storage kept uncompressed in the zip, done
// here without a Python call per storage (torch_zip._StorageTable.stored_records): a persistent id
// ('storage', <class>, key, location, numel) whose class is in `classes` and whose record
// `data_dir + key` is a stored member holding numel elements becomes the Storage of `types`
// (key_prefix + record, dtype, nbytes, ByteSource(path, data_offset, size), byteorder), its
// location (a str) added to `locations`. Anything else (another id, an unknown class, a missing,
// short or deflated record) goes to persistent_load, which makes it or says what is wrong.
struct StoredRecords {
    PyObject* data_dir;
    PyObject* key_prefix;
    PyObject* members;  // dict: record name -> ZipMember; or, when `table` is set, that table
    const inspector_bindings::ZipTable* table;
    PyObject* classes;  // dict: storage class name -> (dtype, itemsize)
    PyObject* path;
    PyObject* byteorder;
    PyTypeObject* byte_source;
    PyObject* locations;  // set
};

std::optional<StoredRecords> stored_records(py::handle h) {
    if (h.is_none()) return std::nullopt;
    const auto t = h.cast<py::tuple>();
    auto at = [&](std::size_t i) { return t[i].ptr(); };
    const bool table = py::isinstance<inspector_bindings::ZipTable>(t[2]);
    if (t.size() != 8 || !PyUnicode_CheckExact(at(0)) || !PyUnicode_CheckExact(at(1)) ||
        !(table || PyDict_CheckExact(at(2))) ||
        !PyDict_CheckExact(at(3)) || !(at(4) == Py_None || PyUnicode_CheckExact(at(4))) ||
        !PyUnicode_CheckExact(at(5)) || !PyType_Check(at(6)) || !PySet_Check(at(7)))
        throw py::type_error("stored: (data_dir, key_prefix, members, classes, path, byteorder, ByteSource, locations)");
    return StoredRecords{at(0), at(1), at(2), table ? t[2].cast<const inspector_bindings::ZipTable*>() : nullptr,
                         at(3), at(4), at(5), reinterpret_cast<PyTypeObject*>(at(6)), at(7)};
}

// The strings and numbers every build uses, made once for the process and kept (a DCP folder
// builds one small pickle per tensor: making them per build was a third of its time). Borrowed
// by the builders; made and read with the GIL held.
struct Constants {
    PyObject *global_kind, *object_kind, *empty_tuple, *empty;
    std::vector<PyObject*> record_names;  // Record's fields, in order
    std::vector<PyObject*> tensor_names;  // TensorInfo's fields, in order
    // ByteSource's fields, Storage's, then ZipMember's method, data_offset, size; and -1
    std::vector<PyObject*> stored_names;
};

// nullptr with a Python error set when they cannot be made (the next call tries again).
const Constants* constants() {
    static const Constants* made = nullptr;
    if (made != nullptr) return made;
    using inspector_bindings::intern_all;
    auto c = std::make_unique<Constants>();
    c->global_kind = PyUnicode_FromString("global");
    c->object_kind = PyUnicode_FromString("object");
    c->empty_tuple = PyTuple_New(0);
    c->empty = PyUnicode_FromString("");
    if (c->global_kind == nullptr || c->object_kind == nullptr || c->empty_tuple == nullptr || c->empty == nullptr ||
        !intern_all({"cls", "kind", "args", "state"}, c->record_names) ||
        !intern_all({"name", "dtype", "shape", "strides", "storage_offset", "storage", "is_parameter", "requires_grad"},
                  c->tensor_names) ||
        !intern_all({"path", "offset", "length", "compression", "size", "buffer", "assembled", "key", "dtype", "nbytes",
                   "source", "byteorder", "method", "data_offset", "size"},
                  c->stored_names))
        return nullptr;  // what was made stays referenced by nothing: a few objects, once
    PyObject* minus_one = PyLong_FromLong(-1);
    if (minus_one == nullptr) return nullptr;
    c->stored_names.push_back(minus_one);
    made = c.release();
    return made;
}

class Builder {
public:
    Builder(const pkl::Tape& tape, const std::uint8_t* data, const Types& types, py::handle persistent_load,
            py::handle dtype_info, py::handle call, const StoredRecords* stored = nullptr)
        : t_(tape), d_(data), ty_(types), load_(persistent_load), dtype_info_(dtype_info), call_(call),
          stored_(stored), cache_(tape.nodes.size(), nullptr), storages_(tape.storages.size()) {}

    ~Builder() {
        for (PyObject* o : cache_) Py_XDECREF(o);
        for (PyObject* o : storage_objs_) Py_XDECREF(o);
        for (auto& s : storages_) Py_XDECREF(s.dtype);
        for (auto& [k, v] : tensor_dtypes_) Py_XDECREF(v.first);
        for (auto& [k, v] : shapes_) Py_XDECREF(v);
    }
    Builder(const Builder&) = delete;
    Builder& operator=(const Builder&) = delete;

    // The tree (a new reference), or nullptr: with a Python error set only for a non-Exception.
    PyObject* run() { return build(t_.root); }

    // The value of any node of the tape (a new reference), made as `run` makes the root's.
    PyObject* build(std::uint32_t node) {
        if (!ready_ && !(setup() && resolve_storages() && check_tensors())) return nullptr;
        ready_ = true;
        PyObject* o = obj(node);
        Py_XINCREF(o);
        return o;
    }

private:
    const pkl::Tape& t_;
    const std::uint8_t* d_;
    const Types& ty_;
    bool ready_ = false;
    py::handle load_, dtype_info_, call_;
    const StoredRecords* stored_;
    std::vector<PyObject*> stored_names_;  // Constants' (borrowed), as the ones below
    std::vector<PyObject*> cache_;  // node -> object (owned)
    std::vector<StorageInfo> storages_;
    std::vector<PyObject*> storage_objs_;
    std::unordered_map<std::uint32_t, std::pair<PyObject*, std::uint64_t>> tensor_dtypes_;  // v3 global -> (name, itemsize)
    std::unordered_map<std::string, PyObject*> shapes_;  // one tuple per distinct shape or strides
    PyObject* global_kind_ = nullptr;
    PyObject* object_kind_ = nullptr;
    PyObject* empty_tuple_ = nullptr;
    std::vector<PyObject*> record_names_;  // Record's fields, in order
    std::optional<inspector_bindings::FrozenMaker> tensor_maker_, record_maker_, source_maker_, storage_maker_;
    std::optional<inspector_bindings::SlotReader> member_fields_;  // ZipMember's method, data_offset, size
    PyObject* empty_ = nullptr;
    std::vector<PyObject*> names_;  // TensorInfo's fields, in order

    bool setup() {
        const Constants* c = constants();
        if (c == nullptr) return false;
        global_kind_ = c->global_kind;
        object_kind_ = c->object_kind;
        empty_tuple_ = c->empty_tuple;
        empty_ = c->empty;
        record_names_ = c->record_names;
        names_ = c->tensor_names;
        stored_names_ = c->stored_names;
        tensor_maker_.emplace(ty_.tensor, names_.data(), names_.size());
        record_maker_.emplace(reinterpret_cast<PyTypeObject*>(ty_.record), record_names_.data(), record_names_.size());
        if (stored_ != nullptr) {
            source_maker_.emplace(stored_->byte_source, stored_names_.data(), 7);
            storage_maker_.emplace(reinterpret_cast<PyTypeObject*>(ty_.storage), stored_names_.data() + 7, 5);
            member_fields_.emplace(stored_names_.data() + 12, 3);
        }
        return true;
    }

    // A ZipMember's non-negative int field k (method, data_offset, size), or false (a Python
    // error set only if the lookup failed).
    bool size_attr(PyObject* o, std::size_t k, std::uint64_t& out) {
        PyObject* v = member_fields_->get(o, k);
        if (v == nullptr) return false;
        const bool ok = PyLong_CheckExact(v) && (out = PyLong_AsUnsignedLongLong(v), !PyErr_Occurred());
        Py_DECREF(v);
        if (!ok) PyErr_Clear();
        return ok;
    }

    // The method, data offset and size of the zip's record `name`: false when it has none (or
    // with a Python error set).
    bool member_at(PyObject* name, std::uint64_t& method, std::uint64_t& offset, std::uint64_t& size) {
        if (stored_->table != nullptr) {
            Py_ssize_t n = 0;
            const char* s = PyUnicode_AsUTF8AndSize(name, &n);
            if (s == nullptr) return false;
            const auto i = stored_->table->table.find(std::string_view(s, static_cast<std::size_t>(n)));
            if (!i) return false;
            const auto& m = stored_->table->table.members();
            method = m.methods[*i], offset = m.data_offsets[*i], size = m.sizes[*i];
            return true;
        }
        PyObject* member = PyDict_GetItemWithError(stored_->members, name);  // borrowed
        return member != nullptr && size_attr(member, 0, method) && size_attr(member, 1, offset) &&
               size_attr(member, 2, size);
    }

    // Storage i made from `stored_` (see StoredRecords): 1; 0 when it is not one of those (the
    // caller's persistent_load then makes it); -1 on a Python error.
    int stored_storage(std::size_t i, StorageInfo& info) {
        const pkl::Node& pid = t_.nodes[t_.storages[i].pid];
        if (pid.kind != pkl::Kind::tuple) return 0;
        const pkl::Items id = t_.items(t_.containers[pid.ref]);
        if (id.size() != 5) return 0;
        const pkl::Node &tag = t_.nodes[id[0]], &cls = t_.nodes[id[1]], &key = t_.nodes[id[2]],
                        &location = t_.nodes[id[3]], &numel = t_.nodes[id[4]];
        if (tag.kind != pkl::Kind::text || t_.span(d_, tag.ref) != "storage" || cls.kind != pkl::Kind::global ||
            key.kind != pkl::Kind::text || numel.kind != pkl::Kind::integer || numel.num < 0)
            return 0;
        const std::string& class_name = t_.globals[cls.ref];
        PyObject* name_obj = PyUnicode_FromStringAndSize(class_name.data(), static_cast<Py_ssize_t>(class_name.size()));
        if (name_obj == nullptr) return -1;
        PyObject* dtype_row = PyDict_GetItemWithError(stored_->classes, name_obj);  // borrowed
        Py_DECREF(name_obj);
        if (dtype_row == nullptr) return PyErr_Occurred() ? -1 : 0;
        if (!PyTuple_CheckExact(dtype_row) || PyTuple_GET_SIZE(dtype_row) != 2) return 0;
        PyObject* dtype = PyTuple_GET_ITEM(dtype_row, 0);
        const std::uint64_t itemsize = PyLong_AsUnsignedLongLong(PyTuple_GET_ITEM(dtype_row, 1));
        if (PyErr_Occurred() || itemsize == 0 || !PyUnicode_CheckExact(dtype)) return PyErr_Occurred() ? -1 : 0;
        PyObject* key_obj = obj(id[2]);
        if (key_obj == nullptr) return -1;
        PyObject* record = PyUnicode_Concat(stored_->data_dir, key_obj);
        if (record == nullptr) return -1;
        std::uint64_t method = 1, offset = 0, size = 0, nbytes = 0;
        PyObject* const* n = stored_names_.data();
        const bool usable = member_at(record, method, offset, size) && method == 0 &&
                            !__builtin_mul_overflow(static_cast<std::uint64_t>(numel.num), itemsize, &nbytes) &&
                            nbytes <= size;
        if (!usable) {
            Py_DECREF(record);
            return PyErr_Occurred() ? -1 : 0;
        }
        if (location.kind == pkl::Kind::text) {
            PyObject* where = obj(id[3]);
            if (where == nullptr || PySet_Add(stored_->locations, where) != 0) {
                Py_DECREF(record);
                return -1;
            }
        }
        PyObject* offset_obj = PyLong_FromUnsignedLongLong(offset);
        PyObject* size_obj = PyLong_FromUnsignedLongLong(size);
        PyObject* nbytes_obj = PyLong_FromUnsignedLongLong(nbytes);
        PyObject* storage_key = PyUnicode_Concat(stored_->key_prefix, record);
        Py_DECREF(record);
        PyObject* source = nullptr;
        PyObject* storage = nullptr;
        if (offset_obj && size_obj && nbytes_obj && storage_key) {
            PyObject* source_values[] = {stored_->path, offset_obj, size_obj, empty_, n[15], Py_None, Py_False};
            source = source_maker_->make(source_values);
        }
        if (source != nullptr) {
            PyObject* storage_values[] = {storage_key, dtype, nbytes_obj, source, stored_->byteorder};
            storage = storage_maker_->make(storage_values);
        }
        Py_XDECREF(offset_obj);
        Py_XDECREF(size_obj);
        Py_XDECREF(nbytes_obj);
        Py_XDECREF(storage_key);
        Py_XDECREF(source);
        if (storage == nullptr) return -1;
        storage_objs_.push_back(storage);
        info.obj = storage;
        Py_INCREF(dtype);
        info.dtype = dtype;
        info.nbytes = nbytes;
        info.itemsize = itemsize;
        return 1;
    }

    // dtype_info(name) -> (canonical name, itemsize) or None.
    bool dtype(PyObject* name, PyObject*& canonical, std::uint64_t& itemsize) {
        PyObject* r = PyObject_CallOneArg(dtype_info_.ptr(), name);
        if (r == nullptr) return false;
        const bool ok = PyTuple_CheckExact(r) && PyTuple_GET_SIZE(r) == 2 && PyUnicode_CheckExact(PyTuple_GET_ITEM(r, 0)) &&
                        PyLong_CheckExact(PyTuple_GET_ITEM(r, 1));
        if (ok) {
            itemsize = PyLong_AsUnsignedLongLong(PyTuple_GET_ITEM(r, 1));
            canonical = PyTuple_GET_ITEM(r, 0);
            Py_INCREF(canonical);
        }
        Py_DECREF(r);
        if (ok && !PyErr_Occurred() && itemsize > 0) return true;
        if (ok) Py_CLEAR(canonical);
        return false;
    }

    bool resolve_storages() {
        for (std::size_t i = 0; i < t_.storages.size(); ++i) {
            if (stored_ != nullptr) {
                const int made = stored_storage(i, storages_[i]);
                if (made < 0) return false;
                if (made > 0) continue;
            }
            PyObject* pid = obj(t_.storages[i].pid);
            if (pid == nullptr) return false;
            PyObject* s = PyObject_CallOneArg(load_.ptr(), pid);
            if (s == nullptr) return false;
            storage_objs_.push_back(s);
            if (Py_TYPE(s) != reinterpret_cast<PyTypeObject*>(ty_.storage)) return false;
            StorageInfo& info = storages_[i];
            info.obj = s;
            info.dtype = PyObject_GetAttrString(s, "dtype");
            if (info.dtype == nullptr || !PyUnicode_CheckExact(info.dtype)) return false;
            PyObject* nbytes = PyObject_GetAttrString(s, "nbytes");
            if (nbytes == nullptr) return false;
            info.nbytes = PyLong_CheckExact(nbytes) ? PyLong_AsUnsignedLongLong(nbytes) : 0;
            Py_DECREF(nbytes);
            if (PyErr_Occurred()) return false;
            PyObject* canonical = nullptr;
            if (!dtype(info.dtype, canonical, info.itemsize)) return false;
            Py_DECREF(canonical);
        }
        return true;
    }

    // tensor_view's checks against the storage, and each v3 dtype resolved once.
    bool check_tensors() {
        for (const pkl::Tensor& t : t_.tensors) {
            std::uint64_t itemsize = storages_[t.storage].itemsize;
            if (t.dtype_global != UINT32_MAX) {
                auto it = tensor_dtypes_.find(t.dtype_global);
                if (it == tensor_dtypes_.end()) {
                    const std::string& g = t_.globals[t.dtype_global];
                    if (g.rfind("torch.", 0) != 0) return false;
                    PyObject* name = PyUnicode_FromStringAndSize(g.data() + 6, static_cast<Py_ssize_t>(g.size() - 6));
                    if (name == nullptr) return false;
                    PyObject* canonical = nullptr;
                    std::uint64_t size = 0;
                    const bool ok = dtype(name, canonical, size);
                    Py_DECREF(name);
                    if (!ok) return false;
                    it = tensor_dtypes_.emplace(t.dtype_global, std::make_pair(canonical, size)).first;
                }
                itemsize = it->second.second;
            }
            std::uint64_t lo = 0, hi = 0, end = 0;
            if (!pkl::element_span(t_, t, lo, hi)) return false;
            if (hi > lo && (__builtin_mul_overflow(hi, itemsize, &end) || end > storages_[t.storage].nbytes)) return false;
        }
        return true;
    }

    PyObject* ints(const std::uint64_t* v, std::size_t n) {
        std::string key(reinterpret_cast<const char*>(v), n * sizeof(std::uint64_t));
        auto [it, added] = shapes_.try_emplace(std::move(key), nullptr);
        if (added) {
            PyObject* tup = PyTuple_New(static_cast<Py_ssize_t>(n));
            if (tup == nullptr) return nullptr;
            for (std::size_t k = 0; k < n; ++k) {
                PyObject* x = PyLong_FromUnsignedLongLong(v[k]);
                if (x == nullptr) {
                    Py_DECREF(tup);
                    return nullptr;
                }
                PyTuple_SET_ITEM(tup, static_cast<Py_ssize_t>(k), x);
            }
            it->second = tup;
        }
        return it->second;  // borrowed
    }

    PyObject* tensor(const pkl::Tensor& t) {
        const StorageInfo& s = storages_[t.storage];
        PyObject* dtype = t.dtype_global == UINT32_MAX ? s.dtype : tensor_dtypes_.at(t.dtype_global).first;
        PyObject* shape = ints(t_.shape(t), t.rank);
        PyObject* strides = shape ? ints(t_.strides(t), t.rank) : nullptr;
        if (strides == nullptr) return nullptr;
        PyObject* offset = PyLong_FromUnsignedLongLong(t.offset);
        if (offset == nullptr) return nullptr;
        PyObject* values[] = {empty_, dtype, shape, strides, offset, s.obj, t.parameter ? Py_True : Py_False,
                              t.requires_grad ? Py_True : Py_False};
        PyObject* o = tensor_maker_->make(values);
        Py_DECREF(offset);
        return o;
    }

    bool set_pairs(PyObject* d, pkl::Items items) {
        for (std::size_t k = 0; k + 1 < items.size(); k += 2) {
            PyObject* key = obj(items[k]);
            PyObject* value = key ? obj(items[k + 1]) : nullptr;
            if (value == nullptr || PyDict_SetItem(d, key, value) != 0) return false;
        }
        return true;
    }

    PyObject* container(const pkl::Node& x) {
        const pkl::Container& c = t_.containers[x.ref];
        const pkl::Items items = t_.items(c);
        const auto n = static_cast<Py_ssize_t>(items.size());
        PyObject* o = nullptr;
        switch (x.kind) {
            case pkl::Kind::tuple:
            case pkl::Kind::list:
                o = x.kind == pkl::Kind::tuple ? PyTuple_New(n) : PyList_New(n);
                if (o == nullptr) return nullptr;
                for (Py_ssize_t k = 0; k < n; ++k) {
                    PyObject* item = obj(items[static_cast<std::size_t>(k)]);
                    if (item == nullptr) {
                        Py_DECREF(o);
                        return nullptr;
                    }
                    Py_INCREF(item);
                    if (x.kind == pkl::Kind::tuple) PyTuple_SET_ITEM(o, k, item);
                    else PyList_SET_ITEM(o, k, item);
                }
                return o;
            case pkl::Kind::dict:
                o = PyDict_New();
                break;
            default:
                o = PyObject_CallNoArgs(ty_.attrdict);
                break;
        }
        if (o == nullptr) return nullptr;
        bool ok = set_pairs(o, items);
        if (ok && !t_.attrs(c).empty()) {
            PyObject* attrs = PyObject_GetAttrString(o, "attrs");
            ok = attrs != nullptr && PyDict_CheckExact(attrs) && set_pairs(attrs, t_.attrs(c));
            Py_XDECREF(attrs);
        }
        if (!ok) {
            Py_DECREF(o);
            return nullptr;
        }
        return o;
    }

    PyObject* global_name(std::uint32_t g) {
        const std::string& name = t_.globals[g];
        return PyUnicode_FromStringAndSize(name.data(), static_cast<Py_ssize_t>(name.size()));
    }

    // Record(cls, kind, args, state), its slots set as the frozen dataclass's __init__ sets them
    // (object.__setattr__), without a Python call per record.
    PyObject* new_record(PyObject* cls, PyObject* kind, PyObject* args, PyObject* state) {
        PyObject* values[] = {cls, kind, args, state};
        return record_maker_->make(values);
    }

    // Record(cls, "object", args) with the state BUILD gave it.
    PyObject* record(const pkl::RecordRef& r) {
        PyObject* args = obj(r.args);
        PyObject* state = r.state == UINT32_MAX || args == nullptr ? Py_None : obj(r.state);
        if (args == nullptr || state == nullptr) return nullptr;
        PyObject* cls = global_name(r.global);
        if (cls == nullptr) return nullptr;
        PyObject* o = new_record(cls, object_kind_, args, state);
        Py_DECREF(cls);
        return o;
    }

    // What the Python machine's `call(func, args)` makes: the callback is its twin.
    PyObject* call(const pkl::RecordRef& r) {
        if (call_.is_none()) return nullptr;
        PyObject* args = obj(r.args);
        if (args == nullptr) return nullptr;
        PyObject* name = global_name(r.global);
        if (name == nullptr) return nullptr;
        PyObject* o = PyObject_CallFunctionObjArgs(call_.ptr(), name, args, nullptr);
        Py_DECREF(name);
        return o;
    }

    // The object of node i (borrowed; the cache owns it), made once.
    PyObject* obj(std::uint32_t i) {
        if (cache_[i] != nullptr) return cache_[i];
        const pkl::Node& x = t_.nodes[i];
        PyObject* o = nullptr;
        switch (x.kind) {
            case pkl::Kind::none: o = Py_NewRef(Py_None); break;
            case pkl::Kind::boolean: o = Py_NewRef(x.num ? Py_True : Py_False); break;
            case pkl::Kind::integer: o = PyLong_FromLongLong(x.num); break;
            case pkl::Kind::bigint: {  // int.from_bytes(span, "little", signed=True)
                const std::string_view s = t_.span(d_, x.ref);
                o = _PyLong_FromByteArray(reinterpret_cast<const unsigned char*>(s.data()), s.size(), 1, 1);
                break;
            }
            case pkl::Kind::real: {
                double v = 0;
                std::memcpy(&v, &x.num, sizeof v);
                o = PyFloat_FromDouble(v);
                break;
            }
            case pkl::Kind::text: {
                const std::string_view s = t_.span(d_, x.ref);
                o = PyUnicode_DecodeUTF8(s.data(), static_cast<Py_ssize_t>(s.size()), "surrogatepass");
                break;
            }
            case pkl::Kind::bytes: {
                const std::string_view s = t_.span(d_, x.ref);
                o = PyBytes_FromStringAndSize(s.data(), static_cast<Py_ssize_t>(s.size()));
                break;
            }
            case pkl::Kind::global: {
                const std::string& g = t_.globals[x.ref];
                PyObject* cls = PyUnicode_FromStringAndSize(g.data(), static_cast<Py_ssize_t>(g.size()));
                if (cls == nullptr) return nullptr;
                o = new_record(cls, global_kind_, empty_tuple_, Py_None);
                Py_DECREF(cls);
                break;
            }
            case pkl::Kind::storage: o = Py_NewRef(storages_[x.ref].obj); break;
            case pkl::Kind::tensor: o = tensor(t_.tensors[x.ref]); break;
            case pkl::Kind::object: o = record(t_.records[x.ref]); break;
            case pkl::Kind::call: o = call(t_.records[x.ref]); break;
            default: o = container(x); break;
        }
        cache_[i] = o;
        return o;
    }
};

// The cycle collector off for a scope, back to how it was after (also when an exception leaves).
class NoCycleCollection {
public:
    NoCycleCollection() : was_on_(PyGC_Disable() != 0) {}
    ~NoCycleCollection() {
        if (was_on_) PyGC_Enable();
    }
    NoCycleCollection(const NoCycleCollection&) = delete;
    NoCycleCollection& operator=(const NoCycleCollection&) = delete;

private:
    bool was_on_;
};

// The (Record, Storage, TensorInfo, AttrDict) argument, checked: Record and TensorInfo are
// allocated directly, so they must be types.
Types types_of(const py::tuple& types) {
    if (types.size() != 4 || !PyType_Check(types[0].ptr()) || !PyType_Check(types[2].ptr()))
        throw py::type_error("types: (Record, Storage, TensorInfo, AttrDict)");
    return {types[0].ptr(), types[1].ptr(), reinterpret_cast<PyTypeObject*>(types[2].ptr()), types[3].ptr()};
}

py::object load_torch_pickle(py::handle data, py::handle persistent_load, py::tuple types, py::handle dtype_info,
                             py::handle call, py::handle stored) {
    const Types ty = types_of(types);
    if (!stored.is_none() && !PyType_Check(ty.storage)) throw py::type_error("types: Storage must be a class");
    const std::optional<StoredRecords> records = stored_records(stored);
    const inspector_bindings::PinnedBuffer view(data, "data");
    pkl::Tape tape;
    std::string why;
    bool parsed = false;
    {
        inspector_bindings::NoGil nogil(view.size());  // buffer.hpp
        parsed = pkl::parse(view.data(), view.size(), tape, why, !call.is_none());
    }
    if (!parsed) return py::make_tuple(false, why);
    PyObject* tree = nullptr;
    {
        // The tree has no cycles (the tape refuses them) and every object is owned by the cache
        // until the end: the cycle collector, run every few thousand allocations, would walk
        // the growing tree again and again for nothing (a third of the time at 200k tensors).
        const NoCycleCollection no_gc;
        Builder b(tape, view.data(), ty, persistent_load, dtype_info, call, records ? &*records : nullptr);
        tree = b.run();
    }
    if (tree == nullptr) {
        if (PyErr_Occurred() && !clear_exception()) throw py::error_already_set();
        return py::make_tuple(false, "a value the Python machine must judge (building the tree)");
    }
    return py::make_tuple(true, py::reinterpret_steal<py::object>(tree));
}

// Tuples of the ints in dims runs, one object per distinct tuple (a folder of 80k chunks has a
// handful of distinct offsets and sizes).
class IntTuples {
public:
    explicit IntTuples(const dcp::Columns& c) : c_(c) {}
    py::object get(const dcp::Ints& run) {
        std::string key(reinterpret_cast<const char*>(c_.dims.data() + run.begin), run.count * sizeof(std::uint64_t));
        auto [it, added] = made_.try_emplace(std::move(key));
        if (added) {
            py::tuple t(run.count);
            for (std::uint32_t i = 0; i < run.count; ++i) t[i] = py::int_(c_.dims[run.begin + i]);
            it->second = std::move(t);
        }
        return it->second;
    }

private:
    const dcp::Columns& c_;
    std::unordered_map<std::string, py::object> made_;
};

py::str span_text(const std::uint8_t* d, const pkl::Span& s) {
    PyObject* o = PyUnicode_DecodeUTF8(reinterpret_cast<const char*>(d) + s.offset, static_cast<Py_ssize_t>(s.size),
                                       "surrogatepass");
    if (o == nullptr) throw py::error_already_set();
    return py::reinterpret_steal<py::str>(o);
}

// (entries, stored, planner_data) from the columns; see read_dcp_metadata's docstring.
py::tuple dcp_columns(const pkl::Tape& tape, const std::uint8_t* d, const dcp::Columns& c, Builder& b) {
    IntTuples ints(c);
    py::list entries;
    for (const dcp::Entry& e : c.entries) {
        py::str fqn = span_text(d, e.fqn);
        if (e.bytes) {
            entries.append(py::make_tuple(fqn, py::none(), py::none(), py::none()));
            continue;
        }
        py::list chunks;
        for (std::uint32_t k = e.chunk_begin; k < e.chunk_begin + e.chunk_count; ++k)
            chunks.append(py::make_tuple(ints.get(c.chunks[k].offsets), ints.get(c.chunks[k].sizes)));
        entries.append(py::make_tuple(fqn, py::str(tape.globals[e.dtype_global]), ints.get(e.size), chunks));
    }
    py::list stored;
    for (const dcp::Stored& s : c.stored) {
        py::object offset = s.has_offset ? ints.get(s.offset) : py::none();
        stored.append(py::make_tuple(span_text(d, s.fqn), offset, span_text(d, s.relative_path),
                                     s.offset_in_file, s.length));
    }
    py::object planner = py::none();
    if (c.planner_data != dcp::kNone) {
        PyObject* o = b.build(c.planner_data);
        if (o == nullptr) throw py::error_already_set();
        planner = py::reinterpret_steal<py::object>(o);
    }
    return py::make_tuple(entries, stored, planner);
}

py::object read_dcp_metadata(py::handle data, py::tuple types, py::handle dtype_info, py::handle call) {
    if (call.is_none()) throw py::type_error("call: the Python machine's call twin");
    const Types ty = types_of(types);
    const inspector_bindings::PinnedBuffer view(data, "data");
    pkl::Tape tape;
    dcp::Columns columns;
    std::string why;
    bool read = false;
    {
        inspector_bindings::NoGil nogil(view.size());
        read = pkl::parse(view.data(), view.size(), tape, why, true) && dcp::extract(tape, view.data(), columns, why);
    }
    if (!read) return py::make_tuple(false, why);
    const NoCycleCollection no_gc;
    Builder b(tape, view.data(), ty, py::none(), dtype_info, call);
    try {
        return py::make_tuple(true, dcp_columns(tape, view.data(), columns, b));
    } catch (py::error_already_set& e) {
        if (!e.matches(PyExc_Exception)) throw;
        return py::make_tuple(false, "a value the Python machine must judge (planner_data)");
    }
}

}  // namespace

void register_pickle(py::module_& m) {
    m.def("load_torch_pickle", &load_torch_pickle, py::arg("data"), py::arg("persistent_load"), py::arg("types"),
          py::arg("dtype_info"), py::arg("call") = py::none(), py::arg("stored") = py::none(),
          "The fast path for torch.save's data.pkl (csrc/pickle_fast.hpp). Returns (True, tree) when\n"
          "the stream is in the subset it handles, built exactly as inspector.formats.unpickler\n"
          "builds it, else (False, reason): run the Python machine then. `types` is (Record,\n"
          "Storage, TensorInfo, AttrDict); `dtype_info(name)` returns (canonical name, itemsize) or\n"
          "None; `persistent_load(pid)` is called once per distinct storage key. With `call`\n"
          "(records mode: a torch.distributed.checkpoint .metadata), NEWOBJ of torch's classes gives\n"
          "Records and REDUCE of torch's other globals gives `call(name, args)`, the Python\n"
          "machine's twin. `stored` (torch_zip._StorageTable.stored_records): the storages kept\n"
          "uncompressed in the zip are made here, without a persistent_load call each.");
    m.def("read_dcp_metadata", &read_dcp_metadata, py::arg("data"), py::arg("types"), py::arg("dtype_info"),
          py::arg("call"),
          "A torch.distributed.checkpoint .metadata in columns (csrc/dcp_metadata.hpp): (True,\n"
          "(entries, stored, planner_data)) or (False, reason). entries: (fqn, dtype global or None\n"
          "for bytes, size or None, [(offsets, sizes), ...] or None) in order; stored: (fqn, offsets\n"
          "or None, relative_path, offset, length) per storage_data item; planner_data: its value\n"
          "as load_torch_pickle builds values, or None.");
}
