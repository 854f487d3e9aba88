// The torch.save subset of the pickle machine (pickle_fast.hpp). Every read is bounds-checked;
// every refusal is a `false` with a reason, never an exception or undefined behaviour.
#include "pickle_fast.hpp"

#include <algorithm>
#include <array>
#include <cstdio>
#include <cstring>
#include <unordered_map>

namespace inspector::pkl {

namespace {

constexpr std::uint32_t kUnset = UINT32_MAX;

// Python's bytes.decode("utf-8", "surrogatepass") accepts exactly this: well-formed UTF-8 (no
// overlong form, nothing past U+10FFFF) where encoded surrogates (ED A0-BF xx) are allowed.
bool utf8_surrogatepass(const std::uint8_t* s, std::size_t n) {
    std::size_t i = 0;
    while (i < n) {
        const std::uint8_t c = s[i];
        if (c < 0x80) {
            ++i;
            continue;
        }
        std::size_t len = 0;
        std::uint8_t lo = 0x80, hi = 0xBF;  // the second byte's range
        if (c >= 0xC2 && c <= 0xDF) len = 2;
        else if (c == 0xE0) len = 3, lo = 0xA0;
        else if (c >= 0xE1 && c <= 0xEF) len = 3;
        else if (c == 0xF0) len = 4, lo = 0x90;
        else if (c >= 0xF1 && c <= 0xF3) len = 4;
        else if (c == 0xF4) len = 4, hi = 0x8F;
        else return false;
        if (len > n - i || s[i + 1] < lo || s[i + 1] > hi) return false;
        for (std::size_t k = 2; k < len; ++k)
            if (s[i + k] < 0x80 || s[i + k] > 0xBF) return false;
        i += len;
    }
    return true;
}

class Parser {
public:
    Parser(const std::uint8_t* data, std::size_t size, Tape& tape, bool records)
        : d_(data), n_(size), t_(tape), records_(records) {
        // torch.save writes about one value per 3 bytes: room for most streams without growing
        // (capped: a reservation is address space, not memory, but need not be large).
        const std::size_t values = std::min<std::size_t>(size / 3, std::size_t{1} << 26);
        t_.nodes.reserve(values);
        t_.flat.reserve(values);
        t_.containers.reserve(values / 4);
        storage_by_key_.reserve(values / 16);
    }

    bool run(std::string& why) {
        while (true) {
            if (pos_ >= n_) return fail(why, "stream ends without STOP");
            op_pos_ = pos_;
            const std::uint8_t code = d_[pos_++];
            if (code == '.') {
                if (stack_.size() != 1 || !marks_.empty()) return fail(why, "STOP with a stack not of one value");
                t_.root = stack_[0];
                return true;
            }
            if (!step(code)) return fail(why, why_ ? why_ : "opcode outside the torch.save subset");
        }
    }

private:
    const std::uint8_t* d_;
    std::size_t n_;
    Tape& t_;
    bool records_;
    std::uint64_t proto_ = 0;  // the PROTO opcode's, as the Python machine keeps it
    std::size_t pos_ = 0, op_pos_ = 0;
    const char* why_ = nullptr;
    std::vector<std::uint32_t> stack_;
    std::vector<std::size_t> marks_;  // stack sizes at each MARK
    std::vector<std::uint32_t> memo_;
    std::uint64_t memo_count_ = 0;
    std::unordered_map<std::string_view, std::uint32_t> storage_by_key_;
    std::unordered_map<std::string, std::uint32_t> global_index_;
    // The node of each value pushed as one node however often it comes (push_shared): None,
    // False, True, the empty tuple, then the ints 0..kSharedInts-1; kUnset until first pushed.
    enum : std::size_t { kNoneSlot, kFalseSlot, kTrueSlot, kEmptyTupleSlot, kFirstIntSlot };
    static constexpr std::int64_t kSharedInts = 1024;
    std::array<std::uint32_t, kFirstIntSlot + kSharedInts> shared_ = filled(kUnset);
    static std::array<std::uint32_t, kFirstIntSlot + kSharedInts> filled(std::uint32_t v) {
        std::array<std::uint32_t, kFirstIntSlot + kSharedInts> a{};
        a.fill(v);
        return a;
    }

    bool fail(std::string& why, const char* what) const {
        char buf[64];
        std::snprintf(buf, sizeof buf, " (opcode 0x%02x at byte %zu)", op_pos_ < n_ ? d_[op_pos_] : 0, op_pos_);
        why = std::string(what) + buf;
        return false;
    }
    bool no(const char* what) {
        why_ = what;
        return false;
    }

    // Reading ---------------------------------------------------------------------------------
    bool take(std::size_t k, const std::uint8_t*& p) {
        if (k > n_ - pos_) return no("stream ends inside an opcode's argument");
        p = d_ + pos_;
        pos_ += k;
        return true;
    }
    bool uint(std::size_t k, std::uint64_t& v) {
        const std::uint8_t* p = nullptr;
        if (!take(k, p)) return false;
        v = 0;
        for (std::size_t i = k; i-- > 0;) v = (v << 8) | p[i];
        return true;
    }
    bool line(std::string_view& out) {
        const void* nl = std::memchr(d_ + pos_, '\n', n_ - pos_);
        if (nl == nullptr) return no("line without a newline");
        const auto end = static_cast<std::size_t>(static_cast<const std::uint8_t*>(nl) - d_);
        out = {reinterpret_cast<const char*>(d_) + pos_, end - pos_};
        pos_ = end + 1;
        return true;
    }

    // Stack -----------------------------------------------------------------------------------
    std::size_t base() const { return marks_.empty() ? 0 : marks_.back(); }
    bool pop(std::uint32_t& v) {
        if (stack_.size() <= base()) return no("stack underflow");
        v = stack_.back();
        stack_.pop_back();
        return true;
    }
    bool top(std::uint32_t& v) {
        if (stack_.size() <= base()) return no("stack underflow");
        v = stack_.back();
        return true;
    }
    bool pop_mark(std::vector<std::uint32_t>& items) {
        if (marks_.empty()) return no("no MARK to pop to");
        const std::size_t b = marks_.back();
        marks_.pop_back();
        items.assign(stack_.begin() + static_cast<std::ptrdiff_t>(b), stack_.end());
        stack_.resize(b);
        return true;
    }
    bool push(Kind k, std::uint32_t ref = 0, std::int64_t num = 0) {
        // A tree past MAX_EXPANDED entries is refused anyway; this caps the tape's memory (16
        // bytes a value) for a stream of nothing but values.
        if (t_.nodes.size() >= 8 * kMaxExpanded) return no("too many values");
        t_.nodes.push_back({k, ref, num});
        stack_.push_back(static_cast<std::uint32_t>(t_.nodes.size() - 1));
        return true;
    }
    // None, the booleans, small ints and the empty tuple are values, not objects: one node each,
    // however often the stream pushes them (a torch pickle pushes a shape's and strides' ints,
    // an offset, a flag and an empty tuple per tensor: 7 of 17 nodes).
    bool push_value(Kind k, std::int64_t num = 0) {
        std::uint32_t* slot = value_slot(k, num);
        if (slot == nullptr) return push(k, 0, num);
        return push_shared(*slot, [&] { return push(k, 0, num); });
    }
    // The slot of a scalar that is one node, or nullptr for one that is a node each time.
    std::uint32_t* value_slot(Kind k, std::int64_t num) {
        if (k == Kind::none) return &shared_[kNoneSlot];
        if (k == Kind::boolean) return &shared_[num != 0 ? kTrueSlot : kFalseSlot];
        if (k == Kind::integer && num >= 0 && num < kSharedInts)
            return &shared_[kFirstIntSlot + static_cast<std::size_t>(num)];
        return nullptr;
    }
    // Push the node in `slot`; the first time, the one `make` pushes, which the slot then keeps.
    template <class Make>
    bool push_shared(std::uint32_t& slot, Make make) {
        if (slot != kUnset) {
            stack_.push_back(slot);
            return true;
        }
        if (!make()) return false;
        slot = stack_.back();
        return true;
    }
    bool push_container(Kind k, std::vector<std::uint32_t> items = {}) {
        t_.containers.emplace_back();
        if (!push(k, static_cast<std::uint32_t>(t_.containers.size() - 1))) return false;
        if (!items.empty()) grown(stack_.back()).items = std::move(items);
        return true;
    }
    // A tuple of the top k values of the stack.
    bool push_tuple(std::size_t k) {
        if (k == 0) return push_shared(shared_[kEmptyTupleSlot], [&] { return make_tuple(0); });
        return make_tuple(k);
    }
    bool make_tuple(std::size_t k) {
        if (t_.flat.size() + k > UINT32_MAX) return no("too many values");
        Container c;
        c.frozen = true;
        c.begin = static_cast<std::uint32_t>(t_.flat.size());
        c.count = static_cast<std::uint32_t>(k);
        const std::size_t b = stack_.size() - k;
        t_.flat.insert(t_.flat.end(), stack_.begin() + static_cast<std::ptrdiff_t>(b), stack_.end());
        stack_.resize(b);
        t_.containers.push_back(c);
        return push(Kind::tuple, static_cast<std::uint32_t>(t_.containers.size() - 1));
    }
    Items items(std::uint32_t i) const { return t_.items(t_.containers[node(i).ref]); }
    bool push_span(Kind k, std::size_t len) {
        const std::uint8_t* p = nullptr;
        if (!take(len, p)) return false;
        // Every string is decoded by the Python machine, also those the tree drops (a tensor's
        // metadata): one it cannot decode is its to refuse.
        if (k == Kind::text && !utf8_surrogatepass(p, len)) return no("text that is not UTF-8");
        t_.spans.push_back({static_cast<std::uint64_t>(p - d_), len});
        return push(k, static_cast<std::uint32_t>(t_.spans.size() - 1));
    }
    const Node& node(std::uint32_t i) const { return t_.nodes[i]; }
    // A list's or dict's items, made on first use.
    Grown& grown(std::uint32_t i) {
        Container& c = t_.containers[t_.nodes[i].ref];
        if (c.grown == kUnset) {
            c.grown = static_cast<std::uint32_t>(t_.grown.size());
            t_.grown.emplace_back();
        }
        return t_.grown[c.grown];
    }
    bool is_dict(std::uint32_t i) const { return node(i).kind == Kind::dict || node(i).kind == Kind::odict; }

    // Keys the Python machine can hash (it builds every dict, also those the tree drops): leaves,
    // and tuples of leaves; anything else (a list, a dict, a nested tuple) is its to judge.
    // An object (a Record: its hash sees its fields) is a key once BUILD gave it its state; a
    // later BUILD is refused (`keyed`), as the Python machine's dict would hold a stale hash.
    bool hashable(std::uint32_t i) const {
        const Kind k = node(i).kind;
        if (k == Kind::list || k == Kind::dict || k == Kind::odict || k == Kind::call) return false;
        if (k != Kind::tuple) return true;
        for (std::uint32_t v : items(i)) {
            const Kind c = node(v).kind;
            if (c == Kind::tuple || c == Kind::list || c == Kind::dict || c == Kind::odict || c == Kind::object ||
                c == Kind::call)
                return false;
        }
        return true;
    }
    bool add_pairs(std::uint32_t target, const std::uint32_t* kv, std::size_t n) {
        for (std::size_t k = 0; k < n; k += 2) {
            if (!hashable(kv[k])) return no("a dict key the fast path does not hash");
            if (node(kv[k]).kind == Kind::object) t_.records[node(kv[k]).ref].keyed = true;
        }
        if (n == 0) return true;
        auto& items = grown(target).items;
        items.insert(items.end(), kv, kv + n);
        return true;
    }
    // Memo ------------------------------------------------------------------------------------
    bool put(std::uint64_t index) {
        std::uint32_t v = 0;
        if (!top(v)) return false;
        // Real pickles number their memo from 0 up; a far index is refused here (no huge table).
        if (index >= kMaxMemo || index > n_) return no("memo index out of the fast path's range");
        if (index >= memo_.size()) memo_.resize(static_cast<std::size_t>(index) + 1, kUnset);
        if (memo_[index] == kUnset) ++memo_count_;
        memo_[index] = v;
        return true;
    }
    bool get(std::uint64_t index) {
        if (index >= memo_.size() || memo_[index] == kUnset) return no("memo entry never stored");
        stack_.push_back(memo_[index]);
        return true;
    }

    // Values ----------------------------------------------------------------------------------
    bool global(std::string_view module, std::string_view name) {
        // Only torch's and collections' names: no Python 2 renaming (_compat_pickle) applies to
        // them, so the name is the one the Python machine records. In records mode any name of a
        // protocol 3+ stream (no renaming there either): the caller's `call` judges it.
        const bool torch = module == "torch" || module.substr(0, 6) == "torch.";
        const bool any = records_ && proto_ >= 3;
        if (!torch && module != "collections" && !any) return no("global outside torch and collections");
        for (std::string_view s : {module, name}) {
            if (s.empty()) return no("empty global name");
            for (char c : s)
                if (static_cast<unsigned char>(c) < 0x21 || static_cast<unsigned char>(c) > 0x7e)
                    return no("global name not printable ASCII");
        }
        std::string full;
        full.reserve(module.size() + name.size() + 1);
        full.append(module).append(".").append(name);
        // Globals repeat (memo GET usually, but not always): one entry per distinct name.
        auto [at, added] = global_index_.try_emplace(full, static_cast<std::uint32_t>(t_.globals.size()));
        if (added) t_.globals.push_back(std::move(full));
        return push(Kind::global, at->second);
    }
    std::string_view text(std::uint32_t i) const {
        return node(i).kind == Kind::text ? t_.span(d_, node(i).ref) : std::string_view{};
    }
    bool int_arg(std::uint32_t i, std::uint64_t& v) {
        if (node(i).kind != Kind::integer || node(i).num < 0) return no("tensor offset is not a non-negative int");
        v = static_cast<std::uint64_t>(node(i).num);
        return true;
    }
    bool truth(std::uint32_t i, bool& v) {
        const Node& x = node(i);
        if (x.kind != Kind::boolean && x.kind != Kind::integer && x.kind != Kind::none)
            return no("requires_grad is not a bool");
        v = x.num != 0;
        return true;
    }

    // ('storage', type, key, location, numel) -> the storage of that key (one per key).
    bool persistent(std::uint32_t pid) {
        const Node& p = node(pid);
        if (p.kind != Kind::tuple) return no("persistent id is not a tuple");
        const Items it = items(pid);
        if (it.size() != 5 || text(it[0]) != "storage" || node(it[0]).kind != Kind::text ||
            node(it[1]).kind != Kind::global || node(it[2]).kind != Kind::text ||
            node(it[3]).kind != Kind::text || node(it[4]).kind != Kind::integer || node(it[4]).num < 0)
            return no("persistent id is not a storage id");
        const std::string_view key = text(it[2]);
        auto [at, added] = storage_by_key_.try_emplace(key, static_cast<std::uint32_t>(t_.storages.size()));
        if (added) t_.storages.push_back({t_.spans[node(it[2]).ref], pid});
        return push(Kind::storage, at->second);
    }

    bool ints(std::uint32_t i, std::size_t& rank) {
        const Node& x = node(i);
        if (x.kind != Kind::tuple) return no("tensor size or stride is not a tuple");
        const Items it = items(i);
        if (it.size() > kMaxDims) return no("tensor of too many dimensions");
        for (std::uint32_t v : it) {
            if (node(v).kind != Kind::integer || node(v).num < 0) return no("tensor size or stride entry not an int >= 0");
            t_.dims.push_back(static_cast<std::uint64_t>(node(v).num));
        }
        rank = it.size();
        return true;
    }

    bool tensor(const std::uint32_t* a, std::size_t n, std::uint32_t dtype_global) {
        Tensor t;
        if (node(a[0]).kind != Kind::storage) return no("tensor storage is not a storage id");
        t.storage = node(a[0]).ref;
        if (!int_arg(a[1], t.offset)) return false;
        t.dims = t_.dims.size();
        std::size_t shape_rank = 0, stride_rank = 0;
        if (!ints(a[2], shape_rank) || !ints(a[3], stride_rank)) return false;
        if (shape_rank != stride_rank) return no("tensor shape and stride differ in length");
        t.rank = shape_rank;
        if (n > 4 && !truth(a[4], t.requires_grad)) return false;
        t.dtype_global = dtype_global;
        t_.tensors.push_back(t);
        return push(Kind::tensor, static_cast<std::uint32_t>(t_.tensors.size() - 1));
    }

    bool push_record(Kind k, std::uint32_t global, std::uint32_t args) {
        t_.records.push_back({global, args});
        return push(k, static_cast<std::uint32_t>(t_.records.size() - 1));
    }

    // NEWOBJ (records mode): a class made without calling it. The classes whose __new__ the
    // Python machine builds as data (unpickler._CLASS_BUILDERS) are its to make.
    bool newobj() {
        std::uint32_t args = 0, cls = 0;
        if (!pop(args) || !pop(cls)) return false;
        if (!records_) return no("NEWOBJ outside the torch.save subset");
        if (node(cls).kind != Kind::global || node(args).kind != Kind::tuple) return no("NEWOBJ outside the subset");
        const std::string& name = t_.globals[node(cls).ref];
        if (name == "collections.OrderedDict" || name == "builtins.set" || name == "builtins.frozenset")
            return no("NEWOBJ of a class the Python machine builds");  // unpickler._CLASS_BUILDERS
        return push_record(Kind::object, node(cls).ref, args);
    }

    bool reduce() {
        std::uint32_t args = 0, func = 0;
        if (!pop(args) || !pop(func)) return false;
        if (node(func).kind != Kind::global || node(args).kind != Kind::tuple) return no("REDUCE outside the subset");
        const std::string& name = t_.globals[node(func).ref];
        if (!subset_call(name)) {
            if (!records_) return no("REDUCE of a global outside the subset");
            if (name == "torch.Size" && size_of_ints(args)) return true;
            return push_record(Kind::call, node(func).ref, args);
        }
        const Items args_items = items(args);
        if (args_items.size() > 8) return no("REDUCE with more arguments than the subset's calls take");
        std::uint32_t a[8] = {};  // a copy: the tape may grow below
        const std::size_t n = args_items.size();
        std::copy(args_items.begin(), args_items.end(), a);
        if (name == "collections.OrderedDict") {
            if (n != 0) return no("OrderedDict with arguments");
            return push_container(Kind::odict);
        }
        if (name == "torch._utils._rebuild_tensor_v2") {
            if (n < 4 || n > 7) return no("_rebuild_tensor_v2 arity");
            return tensor(a, n, kUnset);
        }
        if (name == "torch._utils._rebuild_tensor_v3") {
            if (n < 7 || n > 8) return no("_rebuild_tensor_v3 arity");
            if (node(a[6]).kind != Kind::global) return no("_rebuild_tensor_v3 dtype is not a global");
            return tensor(a, n, node(a[6]).ref);
        }
        if (name == "torch._utils._rebuild_parameter" || name == "torch._utils._rebuild_parameter_with_state") {
            if (n < 1 || n > 4) return no("_rebuild_parameter arity");
            if (node(a[0]).kind != Kind::tensor) return no("parameter data is not a tensor");
            Tensor t = t_.tensors[node(a[0]).ref];
            t.parameter = true;
            t.requires_grad = true;
            if (n > 1 && !truth(a[1], t.requires_grad)) return false;
            t_.tensors.push_back(t);
            return push(Kind::tensor, static_cast<std::uint32_t>(t_.tensors.size() - 1));
        }
        return no("REDUCE of a global outside the subset");
    }

    // torch.Size((ints...)) is the tuple itself, as torch_pickle.torch_size makes it (tuple() of
    // a tuple is that tuple); anything else is the builder's to judge, through a call node.
    bool size_of_ints(std::uint32_t args) {
        const Items a = items(args);
        if (a.size() != 1 || node(a[0]).kind != Kind::tuple) return false;
        const Items dims = items(a[0]);
        if (dims.size() > kMaxDims) return false;
        for (std::uint32_t d : dims)
            if (node(d).kind != Kind::integer || node(d).num < 0) return false;
        stack_.push_back(a[0]);
        return true;
    }

    static bool subset_call(const std::string& name) {
        return name == "collections.OrderedDict" || name == "torch._utils._rebuild_tensor_v2" ||
               name == "torch._utils._rebuild_tensor_v3" || name == "torch._utils._rebuild_parameter" ||
               name == "torch._utils._rebuild_parameter_with_state";
    }

    bool build() {
        std::uint32_t state = 0, target = 0;
        if (!pop(state) || !top(target)) return false;
        if (node(target).kind == Kind::object) {  // a Record's state, set once
            RecordRef& r = t_.records[node(target).ref];
            if (r.state != kUnset || r.keyed) return no("BUILD of an object twice, or of a dict key");
            r.state = state;
            return true;
        }
        if (node(target).kind != Kind::odict || !is_dict(state)) return no("BUILD outside the subset");
        const Items from = items(state);
        if (from.empty()) return true;
        const std::vector<std::uint32_t> pairs(from.begin(), from.end());  // update() copies now
        auto& attrs = grown(target).attrs;
        attrs.insert(attrs.end(), pairs.begin(), pairs.end());
        return true;
    }

    bool tuple_n(std::size_t k) {
        if (stack_.size() - base() < k) return no("stack underflow");
        return push_tuple(k);
    }

    bool step(std::uint8_t code) {
        std::uint64_t v = 0;
        std::uint32_t a = 0, b = 0, target = 0;
        std::vector<std::uint32_t> items;
        const std::uint8_t* p = nullptr;
        switch (code) {
            case 0x80:  // PROTO
                if (!uint(1, v)) return false;
                proto_ = v;
                return v <= 5 || no("unsupported protocol");
            case 0x95:  // FRAME
                if (!uint(8, v)) return false;
                return v <= n_ - pos_ || no("frame runs past the end");
            case '(':  // MARK
                if (marks_.size() >= kMaxDepth) return no("too many nested MARKs");
                marks_.push_back(stack_.size());
                return true;
            case '}': return push_container(Kind::dict);
            case ']': return push_container(Kind::list);
            case ')': return push_tuple(0);
            case 't': {  // TUPLE: the values above the last MARK
                if (marks_.empty()) return no("no MARK to pop to");
                const std::size_t mark = marks_.back();
                marks_.pop_back();
                return push_tuple(stack_.size() - mark);
            }
            case 0x85: return tuple_n(1);
            case 0x86: return tuple_n(2);
            case 0x87: return tuple_n(3);
            case 'l': return pop_mark(items) && push_container(Kind::list, std::move(items));
            case 'd':
                if (!pop_mark(items)) return false;
                if (items.size() % 2) return no("odd number of items for a dict");
                if (!push_container(Kind::dict)) return false;
                return add_pairs(stack_.back(), items.data(), items.size());
            case 'a':  // APPEND
                if (!pop(a) || !top(target)) return false;
                if (node(target).kind != Kind::list) return no("APPEND to a non-list");
                grown(target).items.push_back(a);
                return true;
            case 'e':  // APPENDS
                if (!pop_mark(items) || !top(target)) return false;
                if (node(target).kind != Kind::list) return no("APPENDS to a non-list");
                if (!items.empty()) {
                    auto& list = grown(target).items;
                    list.insert(list.end(), items.begin(), items.end());
                }
                return true;
            case 's':  // SETITEM
                if (!pop(b) || !pop(a) || !top(target)) return false;
                if (!is_dict(target)) return no("SETITEM on a non-dict");
                {
                    const std::uint32_t kv[2] = {a, b};
                    return add_pairs(target, kv, 2);
                }
            case 'u':  // SETITEMS
                if (!pop_mark(items)) return false;
                if (items.size() % 2) return no("odd number of items for a dict");
                if (!top(target)) return false;
                if (!is_dict(target)) return no("SETITEMS on a non-dict");
                return add_pairs(target, items.data(), items.size());
            case 'q': return uint(1, v) && put(v);
            case 'r': return uint(4, v) && put(v);
            case 0x94: return put(memo_count_);
            case 'h': return uint(1, v) && get(v);
            case 'j': return uint(4, v) && get(v);
            case 'N': return push_value(Kind::none);
            case 0x88: return push_value(Kind::boolean, 1);
            case 0x89: return push_value(Kind::boolean, 0);
            case 'J':
                if (!uint(4, v)) return false;
                return push_value(Kind::integer, static_cast<std::int32_t>(static_cast<std::uint32_t>(v)));
            case 'K': return uint(1, v) && push_value(Kind::integer, static_cast<std::int64_t>(v));
            case 'M': return uint(2, v) && push_value(Kind::integer, static_cast<std::int64_t>(v));
            case 0x8a: {  // LONG1: little-endian two's complement
                if (!uint(1, v)) return false;
                if (v > 8) return push_span(Kind::bigint, static_cast<std::size_t>(v));  // little-endian, signed
                const std::size_t k = static_cast<std::size_t>(v);
                if (!take(k, p)) return false;
                std::uint64_t u = 0;
                for (std::size_t i = k; i-- > 0;) u = (u << 8) | p[i];
                if (k > 0 && k < 8 && (p[k - 1] & 0x80)) u |= ~std::uint64_t{0} << (8 * k);
                std::int64_t s = 0;
                std::memcpy(&s, &u, sizeof s);
                return push_value(Kind::integer, s);
            }
            case 'G': {  // BINFLOAT: big-endian double
                if (!take(8, p)) return false;
                std::uint64_t u = 0;
                for (std::size_t i = 0; i < 8; ++i) u = (u << 8) | p[i];
                std::int64_t s = 0;
                std::memcpy(&s, &u, sizeof s);
                return push(Kind::real, 0, s);
            }
            case 'X': return uint(4, v) && push_span(Kind::text, static_cast<std::size_t>(v));
            case 0x8c: return uint(1, v) && push_span(Kind::text, static_cast<std::size_t>(v));
            case 0x8d:
                if (!uint(8, v)) return false;
                if (v > n_) return no("stream ends inside an opcode's argument");
                return push_span(Kind::text, static_cast<std::size_t>(v));
            case 'C': return uint(1, v) && push_span(Kind::bytes, static_cast<std::size_t>(v));
            case 'B': return uint(4, v) && push_span(Kind::bytes, static_cast<std::size_t>(v));
            case 0x8e:
                if (!uint(8, v)) return false;
                if (v > n_) return no("stream ends inside an opcode's argument");
                return push_span(Kind::bytes, static_cast<std::size_t>(v));
            case 'c': {  // GLOBAL
                std::string_view module, name;
                return line(module) && line(name) && global(module, name);
            }
            case 0x93:  // STACK_GLOBAL
                if (!pop(b) || !pop(a)) return false;
                if (node(a).kind != Kind::text || node(b).kind != Kind::text) return no("STACK_GLOBAL needs two strings");
                return global(text(a), text(b));
            case 'R': return reduce();
            case 0x81: return newobj();
            case 'Q': return pop(a) && persistent(a);
            case 'b': return build();
            default: return no("opcode outside the torch.save subset");
        }
    }
};

// Height and expanded size of the tree below a node, as unpickler._check_nesting counts them (a
// dict's keys and values, an OrderedDict's attribute dict as one more container; repeated dict
// keys counted each time, so never less than the Python count). A cycle is refused.
class Bounds {
public:
    // Indexed by container (Node::ref) and then record, not by node: most nodes are leaves.
    static std::size_t slots(const Tape& t) { return t.containers.size() + t.records.size(); }
    explicit Bounds(const Tape& t)
        : t_(t), height_(slots(t), 0), size_(slots(t), 0), state_(slots(t), 0) {}

    bool check(std::string& why) {
        if (!visit(t_.root, 1)) {
            why = why_;
            return false;
        }
        return true;
    }

private:
    const Tape& t_;
    std::vector<std::uint32_t> height_;
    std::vector<std::uint64_t> size_;
    std::vector<std::uint8_t> state_;  // 0 new, 1 on the path, 2 done
    const char* why_ = "";

    // An object or call counts as the Python machine counts a Record with fields: a container
    // of its arguments and its state (a call counts so whatever its builder makes: never less).
    bool is_container(std::uint32_t node) const {
        const Node& x = t_.nodes[node];
        switch (x.kind) {
            case Kind::tuple: case Kind::list: case Kind::dict: case Kind::odict: case Kind::call: return true;
            case Kind::object: {
                const RecordRef& r = t_.records[x.ref];
                return r.state != kUnset || !t_.items(t_.containers[t_.nodes[r.args].ref]).empty();
            }
            default: return false;
        }
    }
    // Bounds' per-container tables are indexed by container; records come after the containers.
    std::size_t slot(const Node& x) const {
        return x.kind == Kind::object || x.kind == Kind::call ? t_.containers.size() + x.ref : x.ref;
    }

    // Adds the child's height and size to (h, s); false when a bound is passed.
    bool child(std::uint32_t c, std::size_t depth, std::uint32_t& h, std::uint64_t& s) {
        if (!is_container(c)) {
            s += 1;
        } else {
            if (!visit(c, depth + 1)) return false;
            h = std::max(h, height_[slot(t_.nodes[c])]);
            s += size_[slot(t_.nodes[c])];
        }
        if (s > kMaxExpanded) return no("the tree expands past MAX_EXPANDED");
        return true;
    }

    bool visit(std::uint32_t node, std::size_t depth) {
        const Node& x = t_.nodes[node];
        if (!is_container(node)) return true;
        const std::size_t i = slot(x);
        if (state_[i] == 2) return true;
        if (state_[i] == 1) return no("a container inside itself");
        if (depth + 2 >= kMaxDepth) return no("containers nested near MAX_DEPTH");
        state_[i] = 1;
        std::uint32_t h = 0;
        std::uint64_t s = 0;
        if (x.kind == Kind::object || x.kind == Kind::call) {  // its arguments, then its state
            const RecordRef& r = t_.records[x.ref];
            for (std::uint32_t k : t_.items(t_.containers[t_.nodes[r.args].ref]))
                if (!child(k, depth, h, s)) return false;
            if (r.state != kUnset) {
                if (!child(r.state, depth, h, s)) return false;
            } else {
                s += 1;  // the state None
            }
            return finish(i, h, s, depth);
        }
        const Container& c = t_.containers[x.ref];
        for (std::uint32_t k : t_.items(c))
            if (!child(k, depth, h, s)) return false;
        if (!t_.attrs(c).empty()) {  // the attribute dict: one more level
            std::uint32_t ah = 0;
            std::uint64_t as = 0;
            for (std::uint32_t k : t_.attrs(c))
                if (!child(k, depth + 1, ah, as)) return false;
            h = std::max(h, ah + 1);
            s += as + 1;
            if (s > kMaxExpanded) return no("the tree expands past MAX_EXPANDED");
        }
        return finish(i, h, s, depth);
    }

    bool finish(std::size_t i, std::uint32_t h, std::uint64_t s, std::size_t depth) {
        height_[i] = h + 1;
        size_[i] = s + 1;
        if (height_[i] + depth + 2 >= kMaxDepth) return no("containers nested near MAX_DEPTH");
        state_[i] = 2;
        return true;
    }

    bool no(const char* what) {
        why_ = what;
        return false;
    }
};

}  // namespace

bool parse(const std::uint8_t* data, std::size_t size, Tape& tape, std::string& why, bool records) {
    tape = Tape{};
    if (!Parser(data, size, tape, records).run(why)) return false;
    return Bounds(tape).check(why);
}

bool element_span(const Tape& tape, const Tensor& t, std::uint64_t& lo, std::uint64_t& hi) {
    const std::uint64_t* shape = tape.shape(t);
    const std::uint64_t* strides = tape.strides(t);
    lo = hi = t.offset;
    for (std::size_t i = 0; i < t.rank; ++i)
        if (shape[i] == 0) return true;
    for (std::size_t i = 0; i < t.rank; ++i) {
        std::uint64_t step = 0;
        if (__builtin_mul_overflow(shape[i] - 1, strides[i], &step) || __builtin_add_overflow(hi, step, &hi)) return false;
    }
    return !__builtin_add_overflow(hi, std::uint64_t{1}, &hi);
}

}  // namespace inspector::pkl
