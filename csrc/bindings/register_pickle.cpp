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

#if defined(__GLIBC__)
#include <malloc.h>
#endif

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
    PyObject* obj = nullptr;    // borrowed from the builder's storage objects; none yet
    PyObject* dtype = nullptr;  // storage.dtype (owned)
    std::uint64_t nbytes = 0, itemsize = 0;
    std::uint64_t offset = 0, size = 0;  // a stored record's (StoredRecords): its bytes in the file
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

// One tuple per distinct run of ints (a shape, strides): 100k tensors have a handful of shapes.
class IntTupleCache {
public:
    IntTupleCache() = default;
    ~IntTupleCache() {
        for (auto& [k, v] : made_) Py_XDECREF(v);
    }
    IntTupleCache(const IntTupleCache&) = delete;
    IntTupleCache& operator=(const IntTupleCache&) = delete;

    // Borrowed (the cache keeps it), or nullptr with the Python error set.
    PyObject* get(const std::uint64_t* v, std::size_t n) {
        std::string key(reinterpret_cast<const char*>(v), n * sizeof(std::uint64_t));
        auto it = made_.find(key);
        if (it != made_.end()) return it->second;
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
        made_.emplace(std::move(key), tup);
        return tup;
    }

private:
    std::unordered_map<std::string, PyObject*> made_;
};

// Off the cycle collector's lists: a TensorInfo, its Storage and ByteSource hold strings, ints,
// tuples of ints and each other, never a cycle, and are made by the million; each collection
// walked every one of them (a 1M-tensor .pt: 0.5 s for the first one after the build alone).
void untrack(PyObject* o) {
    if (o != nullptr && PyObject_GC_IsTracked(o)) PyObject_GC_UnTrack(o);
}

// A TensorInfo (a new reference; nullptr with the Python error set), unnamed as the Python
// machine's are until the reader names them: a view of `storage` as `t` and `dims` describe it.
PyObject* tensor_object(const inspector_bindings::FrozenMaker& maker, const Constants& c, IntTupleCache& shapes,
                        const std::uint64_t* dims, const pkl::Tensor& t, PyObject* dtype, PyObject* storage) {
    PyObject* shape = shapes.get(dims + t.dims, t.rank);
    PyObject* strides = shape ? shapes.get(dims + t.dims + t.rank, t.rank) : nullptr;
    if (strides == nullptr) return nullptr;
    PyObject* offset = PyLong_FromUnsignedLongLong(t.offset);
    if (offset == nullptr) return nullptr;
    PyObject* values[] = {c.empty, dtype, shape, strides, offset, storage, t.parameter ? Py_True : Py_False,
                          t.requires_grad ? Py_True : Py_False};
    PyObject* o = maker.make(values);
    Py_DECREF(offset);
    untrack(o);
    return o;
}

// What torch_zip._StorageTable.load makes for a record stored uncompressed in the zip:
// Storage(key, dtype, nbytes, ByteSource(path, offset, size), byteorder).
class StoredMaker {
public:
    StoredMaker(const Constants& c, PyTypeObject* byte_source, PyTypeObject* storage, PyObject* path,
                PyObject* byteorder)
        : c_(c), source_(byte_source, c.stored_names.data(), 7), storage_(storage, c.stored_names.data() + 7, 5),
          path_(path), byteorder_(byteorder) {}

    // A new reference, or nullptr with the Python error set. `key`: the storage's key (UTF-8).
    PyObject* make(std::string_view key, PyObject* dtype, std::uint64_t offset, std::uint64_t size,
                   std::uint64_t nbytes) const {
        PyObject* key_obj = PyUnicode_DecodeUTF8(key.data(), static_cast<Py_ssize_t>(key.size()), "surrogatepass");
        PyObject* offset_obj = PyLong_FromUnsignedLongLong(offset);
        PyObject* size_obj = PyLong_FromUnsignedLongLong(size);
        // most records hold exactly their tensors' bytes: one int for both
        PyObject* nbytes_obj = nbytes == size ? Py_XNewRef(size_obj) : PyLong_FromUnsignedLongLong(nbytes);
        PyObject* source = nullptr;
        PyObject* storage = nullptr;
        if (key_obj && offset_obj && size_obj && nbytes_obj) {
            PyObject* source_values[] = {path_, offset_obj, size_obj, c_.empty, c_.stored_names[15], Py_None, Py_False};
            source = source_.make(source_values);
        }
        if (source != nullptr) {
            untrack(source);
            PyObject* storage_values[] = {key_obj, dtype, nbytes_obj, source, byteorder_};
            storage = storage_.make(storage_values);
            untrack(storage);
        }
        Py_XDECREF(key_obj);
        Py_XDECREF(offset_obj);
        Py_XDECREF(size_obj);
        Py_XDECREF(nbytes_obj);
        Py_XDECREF(source);
        return storage;
    }

private:
    const Constants& c_;
    inspector_bindings::FrozenMaker source_, storage_;
    PyObject* path_;       // borrowed: the caller keeps them
    PyObject* byteorder_;
};

// UTF-8 of a str, or false (no error left set) for one that has none (a lone surrogate).
bool utf8_of(PyObject* s, std::string& out) {
    Py_ssize_t n = 0;
    const char* p = PyUnicode_AsUTF8AndSize(s, &n);
    if (p == nullptr) {
        PyErr_Clear();
        return false;
    }
    out.assign(p, static_cast<std::size_t>(n));
    return true;
}

class Builder {
public:
    Builder(const pkl::Tape& tape, const std::uint8_t* data, const Types& types, py::handle persistent_load,
            py::handle dtype_info, py::handle call, const StoredRecords* stored = nullptr)
        : t_(tape), d_(data), ty_(types), load_(persistent_load), dtype_info_(dtype_info), call_(call),
          stored_(stored), storages_(tape.storages.size()) {}

    ~Builder() {
        for (PyObject* o : cache_) Py_XDECREF(o);
        for (auto& [k, o] : plain_cache_) Py_XDECREF(o);
        for (PyObject* o : storage_objs_) Py_XDECREF(o);
        for (auto& s : storages_) Py_XDECREF(s.dtype);
        for (auto& [k, v] : tensor_dtypes_) Py_XDECREF(v.first);
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

    // `run`'s checks and look-ups with no storage or tensor made: true when the root is a state
    // dict (a dict or OrderedDict of text keys and tensor values) whose storages are all records
    // stored in the zip and whose tensors all pass; the values of an OrderedDict's attributes
    // (what BUILD gave it: plain data, no tensor) are made and appended to `attrs`, key, value...
    // False (no Python error left set) for anything else: `run` then builds the tree.
    bool flat_state(py::list& attrs) {
        const pkl::Node& root = t_.nodes[t_.root];
        if (stored_ == nullptr || (root.kind != pkl::Kind::dict && root.kind != pkl::Kind::odict)) return false;
        const pkl::Container& c = t_.containers[root.ref];
        const pkl::Items items = t_.items(c);
        for (std::size_t k = 0; k + 1 < items.size(); k += 2)
            if (t_.nodes[items[k]].kind != pkl::Kind::text || t_.nodes[items[k + 1]].kind != pkl::Kind::tensor)
                return false;
        if (!setup()) return fallback();
        for (std::size_t i = 0; i < t_.storages.size(); ++i) {
            const int r = resolve(i);
            if (r <= 0) return r < 0 ? fallback() : false;
        }
        if (!check_tensors()) return fallback();
        plain_ = true;  // an attribute holding a storage or a tensor: not a state dict's
        for (std::uint32_t v : t_.attrs(c)) {
            PyObject* o = obj(v);
            if (o == nullptr || PyList_Append(attrs.ptr(), o) != 0) {
                plain_ = false;
                return fallback();
            }
        }
        plain_ = false;
        return true;
    }

    const StorageInfo& storage(std::size_t i) const { return storages_[i]; }
    // What a stored record's storage key starts with (key_prefix + data_dir), before its key.
    std::string storage_key_head() const { return key_prefix_ + data_dir_; }
    // A _rebuild_tensor_v3 dtype global's canonical name (borrowed), resolved by check_tensors.
    PyObject* tensor_dtype(std::uint32_t global) const { return tensor_dtypes_.at(global).first; }

private:
    const pkl::Tape& t_;
    const std::uint8_t* d_;
    const Types& ty_;
    bool ready_ = false;
    bool plain_ = false;  // making plain values only: a storage or a tensor fails
    py::handle load_, dtype_info_, call_;
    const StoredRecords* stored_;
    std::string data_dir_, key_prefix_;  // stored_'s, as UTF-8; stored_ unusable when they have none
    bool stored_usable_ = false;
    std::vector<PyObject*> cache_;  // node -> object (owned); made on first use
    // flat_state's objects (an OrderedDict's attributes: a few), by node, while cache_ is not
    // made: a 100k-tensor tape has a million nodes, most never made into objects then
    std::unordered_map<std::uint32_t, PyObject*> plain_cache_;
    std::uint32_t last_location_ = UINT32_MAX;  // the location node last added to stored_->locations
    std::vector<StorageInfo> storages_;
    std::vector<signed char> resolved_;  // per storage: resolve's answer, once worked out
    std::vector<PyObject*> storage_objs_;
    std::unordered_map<std::uint32_t, std::pair<PyObject*, std::uint64_t>> tensor_dtypes_;  // v3 global -> (name, itemsize)
    IntTupleCache shapes_;
    PyObject* global_kind_ = nullptr;
    PyObject* object_kind_ = nullptr;
    PyObject* empty_tuple_ = nullptr;
    std::vector<PyObject*> record_names_;  // Record's fields, in order
    const Constants* constants_ = nullptr;
    std::optional<inspector_bindings::FrozenMaker> tensor_maker_, record_maker_;
    std::optional<StoredMaker> stored_maker_;
    std::optional<inspector_bindings::SlotReader> member_fields_;  // ZipMember's method, data_offset, size
    PyObject* empty_ = nullptr;
    std::vector<PyObject*> names_;  // TensorInfo's fields, in order

    // False, with a non-Exception Python error kept (it propagates) and any other cleared.
    bool fallback() {
        if (PyErr_Occurred() && !clear_exception()) throw py::error_already_set();
        return false;
    }

    bool setup() {
        const Constants* c = constants();
        if (c == nullptr) return false;
        constants_ = c;
        global_kind_ = c->global_kind;
        object_kind_ = c->object_kind;
        empty_tuple_ = c->empty_tuple;
        empty_ = c->empty;
        record_names_ = c->record_names;
        names_ = c->tensor_names;
        tensor_maker_.emplace(ty_.tensor, names_.data(), names_.size());
        record_maker_.emplace(reinterpret_cast<PyTypeObject*>(ty_.record), record_names_.data(), record_names_.size());
        if (stored_ != nullptr) {
            stored_maker_.emplace(*c, stored_->byte_source, reinterpret_cast<PyTypeObject*>(ty_.storage),
                                  stored_->path, stored_->byteorder);
            member_fields_.emplace(c->stored_names.data() + 12, 3);
            stored_usable_ = utf8_of(stored_->data_dir, data_dir_) && utf8_of(stored_->key_prefix, key_prefix_);
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
    bool member_at(std::string_view name, std::uint64_t& method, std::uint64_t& offset, std::uint64_t& size) {
        if (stored_->table != nullptr) {
            const auto i = stored_->table->table.find(name);
            if (!i) return false;
            const auto& m = stored_->table->table.members();
            method = m.methods[*i], offset = m.data_offsets[*i], size = m.sizes[*i];
            return true;
        }
        PyObject* key = PyUnicode_DecodeUTF8(name.data(), static_cast<Py_ssize_t>(name.size()), "surrogatepass");
        if (key == nullptr) return false;
        PyObject* member = PyDict_GetItemWithError(stored_->members, key);  // borrowed
        Py_DECREF(key);
        return member != nullptr && size_attr(member, 0, method) && size_attr(member, 1, offset) &&
               size_attr(member, 2, size);
    }

    // resolve_stored's answer for storage i, worked out once.
    int resolve(std::size_t i) {
        if (resolved_.empty()) resolved_.assign(t_.storages.size(), 2);
        if (resolved_[i] == 2) resolved_[i] = static_cast<signed char>(resolve_stored(i, storages_[i]));
        return resolved_[i];
    }

    // What persistent_load makes of storage i when it is a record kept uncompressed in the zip
    // (see StoredRecords), worked out into `info` without making it: 1; 0 when it is not one
    // of those (the caller's persistent_load then makes it); -1 on a Python error.
    int resolve_stored(std::size_t i, StorageInfo& info) {
        if (stored_ == nullptr || !stored_usable_) return 0;
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
        const std::string record = data_dir_ + std::string(t_.span(d_, key.ref));
        std::uint64_t method = 1, offset = 0, size = 0, nbytes = 0;
        const bool usable = member_at(record, method, offset, size) && method == 0 &&
                            !__builtin_mul_overflow(static_cast<std::uint64_t>(numel.num), itemsize, &nbytes) &&
                            nbytes <= size;
        if (!usable) return PyErr_Occurred() ? -1 : 0;
        if (location.kind == pkl::Kind::text && id[3] != last_location_) {  // 'cpu', shared
            const std::string_view at = t_.span(d_, location.ref);
            PyObject* where = PyUnicode_DecodeUTF8(at.data(), static_cast<Py_ssize_t>(at.size()), "surrogatepass");
            const bool added = where != nullptr && PySet_Add(stored_->locations, where) == 0;
            Py_XDECREF(where);
            if (!added) return -1;
            last_location_ = id[3];
        }
        Py_INCREF(dtype);
        info.dtype = dtype;
        info.nbytes = nbytes;
        info.itemsize = itemsize;
        info.offset = offset;
        info.size = size;
        return 1;
    }

    std::string_view text(const pkl::Span& s) const {
        return {reinterpret_cast<const char*>(d_) + s.offset, static_cast<std::size_t>(s.size)};
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
            StorageInfo& info = storages_[i];
            const int stored = resolve(i);
            if (stored < 0) return false;
            if (stored > 0) {
                const std::string key = storage_key_head() + std::string(text(t_.storages[i].key));
                info.obj = stored_maker_->make(key, info.dtype, info.offset, info.size, info.nbytes);
                if (info.obj == nullptr) return false;
                storage_objs_.push_back(info.obj);
                continue;
            }
            PyObject* pid = obj(t_.storages[i].pid);
            if (pid == nullptr) return false;
            PyObject* s = PyObject_CallOneArg(load_.ptr(), pid);
            if (s == nullptr) return false;
            storage_objs_.push_back(s);
            if (Py_TYPE(s) != reinterpret_cast<PyTypeObject*>(ty_.storage)) return false;
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

    PyObject* tensor(const pkl::Tensor& t) {
        const StorageInfo& s = storages_[t.storage];
        PyObject* dtype = t.dtype_global == UINT32_MAX ? s.dtype : tensor_dtypes_.at(t.dtype_global).first;
        return tensor_object(*tensor_maker_, *constants_, shapes_, t_.dims.data(), t, dtype, s.obj);
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

    PyObject*& cached(std::uint32_t i) {
        if (plain_ && cache_.empty()) return plain_cache_[i];
        if (cache_.empty()) {
            cache_.assign(t_.nodes.size(), nullptr);
            for (auto& [k, o] : plain_cache_) cache_[k] = o;
            plain_cache_.clear();
        }
        return cache_[i];
    }

    // The object of node i (borrowed; the cache owns it), made once.
    PyObject* obj(std::uint32_t i) {
        PyObject*& slot = cached(i);  // stays valid: the caches do not move their entries
        if (slot != nullptr) return slot;
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
            case pkl::Kind::storage:
                if (plain_) return nullptr;
                o = Py_NewRef(storages_[x.ref].obj);
                break;
            case pkl::Kind::tensor:
                if (plain_) return nullptr;
                o = tensor(t_.tensors[x.ref]);
                break;
            case pkl::Kind::object: o = record(t_.records[x.ref]); break;
            case pkl::Kind::call: o = call(t_.records[x.ref]); break;
            default: o = container(x); break;
        }
        cached(i) = o;
        return o;
    }
};

// Freed memory of the C heap given back to the system where the C library can: glibc keeps the
// tape's blocks otherwise, once freeing its large arrays raised the threshold above which it maps
// blocks of their own (~13 MB at 100k tensors, counted in the process's peak).
void trim_heap() {
#if defined(__GLIBC__)
    malloc_trim(0);
#endif
}

// A state dict read into columns (Builder::flat_state): its keys, tensors and stored records, with
// no Python object per tensor yet. `build` makes the tree `load_torch_pickle` would have made,
// once the caller has let go of data.pkl and the zip's table (and the tape is gone): at 100k
// tensors a 41 MB tape, 12 MB of data.pkl and 9 MB of table are never alive beside the 60 MB of
// objects.
class StateColumns {
public:
    struct Item {
        std::uint32_t key_begin = 0, key_size = 0;  // in text
        std::uint32_t tensor = 0;                   // into tensors
    };
    struct Stored {
        std::uint64_t offset = 0, size = 0, nbytes = 0;
        std::uint32_t key_begin = 0, key_size = 0;  // in text: the storage's key
        std::uint32_t dtype = 0;                    // into dtypes
    };

    // Made from a builder whose flat_state answered true; the tape's tensors are moved in.
    StateColumns(const Builder& b, pkl::Tape& tape, const std::uint8_t* data, const Types& ty, const StoredRecords& sr,
                 py::list attrs)
        : attrs_(std::move(attrs)), odict_(tape.nodes[tape.root].kind == pkl::Kind::odict),
          tensor_type_(py::reinterpret_borrow<py::object>(reinterpret_cast<PyObject*>(ty.tensor))),
          storage_type_(py::reinterpret_borrow<py::object>(ty.storage)),
          attrdict_(py::reinterpret_borrow<py::object>(ty.attrdict)),
          byte_source_(py::reinterpret_borrow<py::object>(reinterpret_cast<PyObject*>(sr.byte_source))),
          path_(py::reinterpret_borrow<py::object>(sr.path)),
          byteorder_(py::reinterpret_borrow<py::object>(sr.byteorder)), key_head_(b.storage_key_head()) {
        auto keep = [&](const pkl::Span& span, std::uint32_t& begin, std::uint32_t& size) {
            begin = static_cast<std::uint32_t>(text_.size());
            size = static_cast<std::uint32_t>(span.size);
            text_.append(reinterpret_cast<const char*>(data) + span.offset, static_cast<std::size_t>(span.size));
        };
        const pkl::Items pairs = tape.items(tape.containers[tape.nodes[tape.root].ref]);
        items_.resize(pairs.size() / 2);
        for (std::size_t k = 0; k < items_.size(); ++k) {
            keep(tape.spans[tape.nodes[pairs[2 * k]].ref], items_[k].key_begin, items_[k].key_size);
            items_[k].tensor = tape.nodes[pairs[2 * k + 1]].ref;
        }
        // What the rest needs is the storages' keys and the tensors: the nodes go before the
        // columns below are made (the builder, done, does not read them again).
        std::vector<pkl::Node>().swap(tape.nodes);
        std::vector<pkl::Container>().swap(tape.containers);
        std::vector<pkl::Grown>().swap(tape.grown);
        std::vector<std::uint32_t>().swap(tape.flat);
        std::vector<pkl::Span>().swap(tape.spans);
        trim_heap();
        std::unordered_map<PyObject*, std::uint32_t> dtype_index;
        stored_.resize(tape.storages.size());
        for (std::size_t i = 0; i < stored_.size(); ++i) {
            const StorageInfo& info = b.storage(i);
            Stored& s = stored_[i];
            s.offset = info.offset, s.size = info.size, s.nbytes = info.nbytes;
            keep(tape.storages[i].key, s.key_begin, s.key_size);
            auto [at, added] = dtype_index.try_emplace(info.dtype, static_cast<std::uint32_t>(dtypes_.size()));
            if (added) dtypes_.push_back(py::reinterpret_borrow<py::object>(info.dtype));
            s.dtype = at->second;
        }
        for (const pkl::Tensor& t : tape.tensors)
            if (t.dtype_global != UINT32_MAX && !tensor_dtypes_.count(t.dtype_global))
                tensor_dtypes_.emplace(t.dtype_global, py::reinterpret_borrow<py::object>(b.tensor_dtype(t.dtype_global)));
        tensors_ = std::move(tape.tensors);
        dims_ = std::move(tape.dims);
    }

    // The tree (a dict, or an AttrDict for an OrderedDict): once; the columns are let go after.
    py::object build() {
        if (built_) throw py::value_error("StateColumns.build: the tree was built already");
        built_ = true;
        const Constants* c = constants();
        if (c == nullptr) throw py::error_already_set();
        const NoCycleCollection no_gc;
        const inspector_bindings::FrozenMaker tensor_maker(reinterpret_cast<PyTypeObject*>(tensor_type_.ptr()),
                                                           c->tensor_names.data(), c->tensor_names.size());
        const StoredMaker stored(*c, reinterpret_cast<PyTypeObject*>(byte_source_.ptr()),
                                 reinterpret_cast<PyTypeObject*>(storage_type_.ptr()), path_.ptr(), byteorder_.ptr());
        IntTupleCache shapes;
        std::vector<py::object> storages(stored_.size()), tensors(tensors_.size());
        auto storage_of = [&](std::uint32_t i) -> PyObject* {
            if (!storages[i]) {
                const Stored& s = stored_[i];
                const std::string key = key_head_ + text_.substr(s.key_begin, s.key_size);
                storages[i] = inspector_bindings::steal(stored.make(key, dtypes_[s.dtype].ptr(), s.offset, s.size, s.nbytes));
            }
            return storages[i].ptr();
        };
        auto tensor_of = [&](std::uint32_t i) -> PyObject* {
            if (!tensors[i]) {
                const pkl::Tensor& t = tensors_[i];
                PyObject* dtype = t.dtype_global == UINT32_MAX ? dtypes_[stored_[t.storage].dtype].ptr()
                                                               : tensor_dtypes_.at(t.dtype_global).ptr();
                tensors[i] = inspector_bindings::steal(
                    tensor_object(tensor_maker, *c, shapes, dims_.data(), t, dtype, storage_of(t.storage)));
            }
            return tensors[i].ptr();
        };
        py::object root = odict_ ? inspector_bindings::steal(PyObject_CallNoArgs(attrdict_.ptr())) : py::dict();
        for (const Item& item : items_) {
            py::object key = inspector_bindings::steal(PyUnicode_DecodeUTF8(
                text_.data() + item.key_begin, static_cast<Py_ssize_t>(item.key_size), "surrogatepass"));
            if (PyDict_SetItem(root.ptr(), key.ptr(), tensor_of(item.tensor)) != 0) throw py::error_already_set();
        }
        if (odict_ && !attrs_.empty()) {
            py::object attrs = root.attr("attrs");
            if (!PyDict_CheckExact(attrs.ptr())) throw py::type_error("AttrDict.attrs is not a dict");
            for (std::size_t k = 0; k + 1 < attrs_.size(); k += 2)
                if (PyDict_SetItem(attrs.ptr(), attrs_[k].ptr(), attrs_[k + 1].ptr()) != 0)
                    throw py::error_already_set();
        }
        release();
        trim_heap();
        return root;
    }

private:
    std::string text_;  // the keys and the storages' keys, one after another
    std::vector<Item> items_;
    std::vector<Stored> stored_;
    std::vector<pkl::Tensor> tensors_;
    std::vector<std::uint64_t> dims_;
    std::vector<py::object> dtypes_;
    std::unordered_map<std::uint32_t, py::object> tensor_dtypes_;  // a v3 dtype global -> its name
    py::list attrs_;
    bool odict_ = false, built_ = false;
    py::object tensor_type_, storage_type_, attrdict_, byte_source_, path_, byteorder_;
    std::string key_head_;  // key_prefix + data_dir: a storage's key is this and its record's key

    void release() {
        std::string().swap(text_);
        std::vector<Item>().swap(items_);
        std::vector<Stored>().swap(stored_);
        std::vector<pkl::Tensor>().swap(tensors_);
        std::vector<std::uint64_t>().swap(dims_);
        attrs_ = py::list();
    }
};

// The (Record, Storage, TensorInfo, AttrDict) argument, checked: Record and TensorInfo are
// allocated directly, so they must be types.
Types types_of(const py::tuple& types) {
    if (types.size() != 4 || !PyType_Check(types[0].ptr()) || !PyType_Check(types[2].ptr()))
        throw py::type_error("types: (Record, Storage, TensorInfo, AttrDict)");
    return {types[0].ptr(), types[1].ptr(), reinterpret_cast<PyTypeObject*>(types[2].ptr()), types[3].ptr()};
}

py::object load_torch_pickle(py::handle data, py::handle persistent_load, py::tuple types, py::handle dtype_info,
                             py::handle call, py::handle stored, bool columns) {
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
    std::unique_ptr<StateColumns> state;
    {
        // The tree has no cycles (the tape refuses them) and every object is owned by the cache
        // until the end: the cycle collector, run every few thousand allocations, would walk
        // the growing tree again and again for nothing (a third of the time at 200k tensors).
        const NoCycleCollection no_gc;
        Builder b(tape, view.data(), ty, persistent_load, dtype_info, call, records ? &*records : nullptr);
        py::list attrs;
        if (columns && call.is_none() && b.flat_state(attrs))
            state = std::make_unique<StateColumns>(b, tape, view.data(), ty, *records, std::move(attrs));
        else
            tree = b.run();
    }
    if (state) {
        tape = pkl::Tape();
        trim_heap();
        return py::make_tuple(true, py::cast(std::move(state)));
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
        PyObject* t = made_.get(c_.dims.data() + run.begin, run.count);
        if (t == nullptr) throw py::error_already_set();
        return py::reinterpret_borrow<py::object>(t);
    }

private:
    const dcp::Columns& c_;
    IntTupleCache made_;
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
    py::class_<StateColumns>(m, "StateColumns",
                             "A state dict's tensors in columns (load_torch_pickle with columns=True).")
        .def("build", &StateColumns::build,
             "The tree load_torch_pickle would have returned (once: the columns are let go after).");
    m.def("load_torch_pickle", &load_torch_pickle, py::arg("data"), py::arg("persistent_load"), py::arg("types"),
          py::arg("dtype_info"), py::arg("call") = py::none(), py::arg("stored") = py::none(), py::arg("columns") = false,
          "The fast path for torch.save's data.pkl (csrc/pickle_fast.hpp). Returns (True, tree) when\n"
          "the stream is in the subset it handles, built exactly as inspector.formats.unpickler\n"
          "builds it, else (False, reason): run the Python machine then. `types` is (Record,\n"
          "Storage, TensorInfo, AttrDict); `dtype_info(name)` returns (canonical name, itemsize) or\n"
          "None; `persistent_load(pid)` is called once per distinct storage key. With `call`\n"
          "(records mode: a torch.distributed.checkpoint .metadata), NEWOBJ of torch's classes gives\n"
          "Records and REDUCE of torch's other globals gives `call(name, args)`, the Python\n"
          "machine's twin. `stored` (torch_zip._StorageTable.stored_records): the storages kept\n"
          "uncompressed in the zip are made here, without a persistent_load call each. `columns`\n"
          "(with `stored`): a state dict (a dict or OrderedDict of tensors) whose storages are all\n"
          "stored records comes back as (True, StateColumns), whose build() makes the tree once the\n"
          "caller has let go of data and the zip's table.");
    m.def("read_dcp_metadata", &read_dcp_metadata, py::arg("data"), py::arg("types"), py::arg("dtype_info"),
          py::arg("call"),
          "A torch.distributed.checkpoint .metadata in columns (csrc/dcp_metadata.hpp): (True,\n"
          "(entries, stored, planner_data)) or (False, reason). entries: (fqn, dtype global or None\n"
          "for bytes, size or None, [(offsets, sizes), ...] or None) in order; stored: (fqn, offsets\n"
          "or None, relative_path, offset, length) per storage_data item; planner_data: its value\n"
          "as load_torch_pickle builds values, or None.");
}
