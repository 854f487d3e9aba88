// The fast path for torch.save's data.pkl: the opcodes and globals torch writes (protocols 2-5),
// parsed into a tape of nodes with no Python in it. The restricted pickle machine in
// inspector/formats/unpickler.py stays the reference: the moment the stream holds anything
// outside this subset, or anything that machine would refuse, `parse` says "not handled" (with
// the reason) and the caller runs the Python machine, which accepts or refuses with its messages.
//
// What the tape holds, per node: scalars (None, bool, int64, double; wider ints as their bytes), text and bytes (spans of the
// input), globals (`module.name`, kept as values: a storage class, a dtype), containers (tuple,
// list, dict, OrderedDict with its BUILD attributes), storages (one per distinct persistent id
// key) and tensors (from torch._utils._rebuild_tensor_v2/_v3 and _rebuild_parameter[_with_state]).
// Containers keep their items as node indices in the order the stream set them, so sharing (memo
// GET) and dict updates come out exactly as the Python machine makes them.
//
// The bounds are the Python machine's (unpickler.MAX_DEPTH, MAX_MEMO, MAX_EXPANDED): the tape is
// refused at or past them, and on any cycle (the Python machine handles back-references).
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace inspector::pkl {

constexpr std::size_t kMaxDepth = 256;            // unpickler.MAX_DEPTH
constexpr std::uint64_t kMaxMemo = 1u << 24;      // unpickler.MAX_MEMO
constexpr std::uint64_t kMaxExpanded = 1u << 24;  // unpickler.MAX_EXPANDED
constexpr std::size_t kMaxDims = 64;              // torch_pickle.MAX_DIMS

enum class Kind : std::uint8_t {
    none, boolean, integer, bigint, real, text, bytes, global, tuple, list, dict, odict, storage, tensor,
    object,  // records mode: NEWOBJ of a class (a Record of kind "object"), with the state BUILD gave it
    call     // records mode: REDUCE of any other global (what the Python machine's `call` makes of it)
};

struct Node {
    Kind kind = Kind::none;
    std::uint32_t ref = 0;  // text/bytes/bigint: span; global: globals; containers: containers;
                            // storage: storages; tensor: tensors; object, call: records
    std::int64_t num = 0;   // boolean, integer; real: the double's bits
};

struct Span {
    std::uint64_t offset = 0, size = 0;
};

// Lists and dicts grow after they are made (APPEND, SETITEM): their items are vectors of their
// own, made when the first item comes (a torch pickle has an empty OrderedDict per tensor).
struct Grown {
    std::vector<std::uint32_t> items;  // dicts: key, value, key, value... in the order set
    std::vector<std::uint32_t> attrs;  // odict: the pairs BUILD added to its attributes
};

// Tuples never change: theirs are a run of Tape::flat. Most containers of a torch pickle are
// tuples: 16 bytes each and no allocation (a 100k-tensor pickle has half a million).
struct Container {
    std::uint32_t begin = 0, count = 0;  // a tuple's items: flat[begin, begin + count)
    std::uint32_t grown = UINT32_MAX;    // a list's or dict's items: Tape::grown[grown]; none yet
    bool frozen = false;                 // a tuple
};

// A view of a container's items; valid until the tape grows.
struct Items {
    const std::uint32_t* first = nullptr;
    std::size_t count = 0;
    const std::uint32_t* begin() const { return first; }
    const std::uint32_t* end() const { return first + count; }
    std::size_t size() const { return count; }
    bool empty() const { return count == 0; }
    std::uint32_t operator[](std::size_t i) const { return first[i]; }
};

// A distinct persistent id ('storage', type, key, location, numel), by key; `pid` is the tuple
// node of its first occurrence (what the caller's persistent_load receives).
struct StorageRef {
    Span key;
    std::uint32_t pid = 0;
};

struct Tensor {
    std::uint32_t storage = 0;               // index into Tape::storages
    std::uint32_t dtype_global = UINT32_MAX;  // _rebuild_tensor_v3's dtype (a global), else none
    std::uint64_t offset = 0;
    std::size_t dims = 0, rank = 0;  // shape at dims[dims..dims+rank), strides right after
    bool requires_grad = false;
    bool parameter = false;
};

// An object or a call (records mode): the class or function (a global), its argument tuple
// (a node) and, for an object, the state one BUILD gave it.
struct RecordRef {
    std::uint32_t global = 0;
    std::uint32_t args = 0;
    std::uint32_t state = UINT32_MAX;  // none yet
    bool keyed = false;                // used as a dict key: a later BUILD would change its hash
};

struct Tape {
    std::vector<Node> nodes;
    std::vector<Span> spans;
    std::vector<std::string> globals;  // "module.name"
    std::vector<Container> containers;
    std::vector<Grown> grown;
    std::vector<std::uint32_t> flat;  // the tuples' items
    std::vector<StorageRef> storages;
    std::vector<Tensor> tensors;
    std::vector<RecordRef> records;
    std::vector<std::uint64_t> dims;
    std::uint32_t root = 0;

    Items items(const Container& c) const {
        if (c.frozen) return {flat.data() + c.begin, static_cast<std::size_t>(c.count)};
        if (c.grown == UINT32_MAX) return {};
        return {grown[c.grown].items.data(), grown[c.grown].items.size()};
    }
    Items attrs(const Container& c) const {
        if (c.frozen || c.grown == UINT32_MAX) return {};
        return {grown[c.grown].attrs.data(), grown[c.grown].attrs.size()};
    }
    std::string_view span(const std::uint8_t* data, std::uint32_t i) const {
        return {reinterpret_cast<const char*>(data) + spans[i].offset, static_cast<std::size_t>(spans[i].size)};
    }
    const std::uint64_t* shape(const Tensor& t) const { return dims.data() + t.dims; }
    const std::uint64_t* strides(const Tensor& t) const { return dims.data() + t.dims + t.rank; }
};

// Parse the pickle at data[0..size) into `tape`. False (with `why`: the opcode, its byte and what
// is outside the subset) when the stream is not one this path handles; never reads out of bounds.
// The tape's shape is checked against the bounds (depth, expanded size, no cycles) as well.
// `records`: also take NEWOBJ of torch's classes and REDUCE of torch's other globals (the data
// classes of a torch.distributed.checkpoint `.metadata`), as object and call nodes; the caller
// makes them what the Python machine makes (a Record; its builder's value, or a Record of kind
// "unsupported-global").
bool parse(const std::uint8_t* data, std::size_t size, Tape& tape, std::string& why, bool records = false);

// [lo, hi) elements of the storage the tensor's view touches (model.element_span, strides >= 0);
// false when the arithmetic overflows 64 bits.
bool element_span(const Tape& tape, const Tensor& t, std::uint64_t& lo, std::uint64_t& hi);

}  // namespace inspector::pkl
