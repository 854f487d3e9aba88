// The same steps as tree.py's build_tree: a trie over the names' segments with each tensor's
// sizes added to every node above it; then, bottom-up, runs of numbered siblings with equal
// signatures merged into one node, a signature being a number interned from the node's own
// (dtype, shape) and its children's keys and signatures. Iterative throughout: a name may hold
// thousands of segments.
#include "module_tree.hpp"

#include <algorithm>
#include <cstddef>
#include <deque>
#include <memory>
#include <unordered_map>

#include "fold.hpp"
#include "name_hash.hpp"

namespace inspector::modtree {

namespace {

using fold::format_ranges;
using fold::index_value;
using fold::is_index;

constexpr std::size_t kMaxDigits = 18;  // an int64 with room to spare
constexpr std::uint32_t kNoTensor = 0xFFFFFFFFu;

// A segment the folding covers: no `{`, and a number is one int() reads back to the same text.
bool foldable(std::string_view seg) {
    if (seg.find('{') != std::string_view::npos) return false;
    if (!is_index(seg)) return true;
    return seg.size() <= kMaxDigits && (seg.size() == 1 || seg[0] != '0');
}

bool ascii_line(std::string_view name) {
    return std::all_of(name.begin(), name.end(),
                       [](char c) { return static_cast<unsigned char>(c) < 0x80 && c != '\n'; });
}

// (dtype, count)s in order of first appearance; the first one inline (a module rarely holds two
// dtypes, and a vector each would be an allocation per node).
class DtypeCounts {
public:
    bool add(std::uint32_t dtype, std::uint64_t n) {
        if (first_.second == 0) {
            first_ = {dtype, n};
            return true;
        }
        if (first_.first == dtype) return !__builtin_add_overflow(first_.second, n, &first_.second);
        if (!rest_) rest_ = std::make_unique<List>();
        for (auto& [d, c] : *rest_)
            if (d == dtype) return !__builtin_add_overflow(c, n, &c);
        rest_->emplace_back(dtype, n);
        return true;
    }
    std::vector<std::pair<std::uint32_t, std::uint64_t>> list() const {
        List out;
        if (first_.second != 0) out.push_back(first_);
        if (rest_) out.insert(out.end(), rest_->begin(), rest_->end());
        return out;
    }

private:
    using List = std::vector<std::pair<std::uint32_t, std::uint64_t>>;
    std::pair<std::uint32_t, std::uint64_t> first_{0, 0};  // count 0: none yet (counts start at 1)
    std::unique_ptr<List> rest_;  // a pointer, not a vector: 16 bytes less on every node
};

// A growing array in fixed blocks: growing never copies what it holds (a vector that outgrows its
// reservation holds the old and the new array at once: at 100k names, 60 MB of a 140 MB listing),
// and references stay valid.
template <class T>
class Blocks {
public:
    static constexpr std::size_t kShift = 12, kSize = std::size_t{1} << kShift;
    std::size_t size() const { return size_; }
    T& operator[](std::size_t i) { return blocks_[i >> kShift][i & (kSize - 1)]; }
    const T& operator[](std::size_t i) const { return blocks_[i >> kShift][i & (kSize - 1)]; }
    T& emplace_back() {
        if ((size_ & (kSize - 1)) == 0 && size_ >> kShift == blocks_.size())
            blocks_.push_back(std::make_unique<T[]>(kSize));
        return (*this)[size_++];
    }
    void push_back(T&& value) { emplace_back() = std::move(value); }

private:
    std::vector<std::unique_ptr<T[]>> blocks_;
    std::size_t size_ = 0;
};

constexpr std::uint32_t kNone = 0xFFFFFFFFu;

// A module's totals: the tensors at and under it, their elements, bytes and dtypes.
struct Sums {
    std::uint64_t tensors = 0, params = 0, nbytes = 0;
    DtypeCounts dtypes;
};

bool add_sizes(Sums& s, std::uint64_t tensors, std::uint64_t params, std::uint64_t nbytes) {
    return !__builtin_add_overflow(s.tensors, tensors, &s.tensors) &&
           !__builtin_add_overflow(s.params, params, &s.params) &&
           !__builtin_add_overflow(s.nbytes, nbytes, &s.nbytes);
}

// A node of the trie: 48 bytes. Its children are a list linked through `next` (most nodes have
// one child or none: a vector each was 24 bytes and an allocation). Most nodes are a tensor's own
// leaf, whose totals are its kind's: only a node with children (or a folded run) has `Sums` of
// its own (a trie of 100k names held 23 MB of totals that said what the kinds say).
struct Work {
    std::string_view key;  // in the parent's children: a segment, or a label held by `labels`
    std::uint32_t parent = 0;
    std::uint32_t first = kNone, last = kNone, next = kNone;  // first and last child, next sibling
    std::uint32_t tensor = kNone;                              // the tensor named by this node
    std::uint32_t sums = kNone;       // its totals in Tree::sums_; none: its tensor's kind
    std::uint32_t signature = kNone;  // set when folding
    std::uint32_t repeat = 1;
};

// (parent, segment) -> child node: open addressing with linear probing over 8-byte slots (the
// node and a hash tag; the key is the node's own parent and segment), one allocation in all.
class ChildTable {
public:
    explicit ChildTable(std::size_t expected) { rehash(capacity_for(expected)); }

    // The child of `parent` named `segment`, or `fresh` (then added, and `added` set).
    template <class Nodes>
    std::uint32_t find_or_add(const Nodes& nodes, std::uint32_t parent, std::string_view segment, std::uint32_t fresh,
                              bool& added) {
        if (4 * (size_ + 1) > 3 * slots_.size()) rehash(nodes, slots_.size() * 2);
        const std::uint64_t h = hash(parent, segment);
        const auto tag = static_cast<std::uint32_t>(h >> 32);
        for (std::size_t i = h & (slots_.size() - 1);; i = (i + 1) & (slots_.size() - 1)) {
            Slot& slot = slots_[i];
            if (slot.node == kEmpty) {
                slot = {fresh, tag};
                ++size_;
                added = true;
                return fresh;
            }
            if (slot.tag == tag && nodes[slot.node].parent == parent && nodes[slot.node].key == segment) {
                added = false;
                return slot.node;
            }
        }
    }

private:
    static constexpr std::uint32_t kEmpty = 0xFFFFFFFFu;
    struct Slot {
        std::uint32_t node = kEmpty;
        std::uint32_t tag = 0;
    };
    std::vector<Slot> slots_;
    std::size_t size_ = 0;

    static std::uint64_t hash(std::uint32_t parent, std::string_view segment) {
        return inspector::mix64(inspector::hash_name(segment) ^ (parent * 0x9E3779B97F4A7C15ull));
    }
    static std::size_t capacity_for(std::size_t n) {
        std::size_t c = 16;
        while (3 * c < 4 * n) c *= 2;
        return c;
    }
    void rehash(std::size_t capacity) { slots_.assign(capacity, Slot{}); }
    template <class Nodes>
    void rehash(const Nodes& nodes, std::size_t capacity) {
        std::vector<Slot> old(capacity);
        old.swap(slots_);
        for (const Slot& slot : old) {
            if (slot.node == kEmpty) continue;
            const std::uint64_t h = hash(nodes[slot.node].parent, nodes[slot.node].key);
            std::size_t i = h & (slots_.size() - 1);
            while (slots_[i].node != kEmpty) i = (i + 1) & (slots_.size() - 1);
            slots_[i] = slot;
        }
    }
};

class Tree {
public:
    Tree(const std::vector<std::uint32_t>& kind_of, const std::vector<Kind>& kinds, std::size_t names)
        : kind_of_(kind_of), kinds_(kinds), child_(2 * names) {
        w_.emplace_back().sums = 0;
        sums_.emplace_back();
    }

    // Names come in checkpoint order, where neighbours share most of their segments: the
    // segments shared with the previous name are walked without a lookup.
    bool add(std::string_view name, std::size_t i, bool fold) {
        if (fold && !ascii_line(name)) return false;
        const Kind& k = kinds_[kind_of_[i]];
        std::uint32_t node = 0;
        std::size_t depth = 0;
        for (std::size_t start = 0;; ++depth) {
            if (!add_tensor(node, k)) return false;  // a module above the tensor
            const std::size_t dot = name.find('.', start);
            const std::string_view seg = name.substr(start, dot == std::string_view::npos ? dot : dot - start);
            if (depth < path_.size() && path_[depth].first == seg && (depth == 0 || path_[depth - 1].second == node)) {
                node = path_[depth].second;
            } else {
                if (fold && !foldable(seg)) return false;
                if (w_.size() >= kNone) return false;  // node numbers are 32-bit (kNone: no node)
                bool added = false;
                const std::uint32_t child =
                    child_.find_or_add(w_, node, seg, static_cast<std::uint32_t>(w_.size()), added);
                if (added) {
                    Work& fresh = w_.emplace_back();
                    fresh.key = seg;
                    fresh.parent = node;
                    append_child(node, child);
                }
                node = child;
                path_.resize(depth);
                path_.emplace_back(seg, node);
            }
            if (dot == std::string_view::npos) break;
            start = dot + 1;
        }
        Work& own = w_[node];
        if (own.tensor != kNone || own.first != kNone) {  // a module too: its totals are kept
            if (!add_tensor(node, k)) return false;
        }
        own.tensor = static_cast<std::uint32_t>(i);
        return true;
    }

    // Bottom-up, children before their parent, in order (so signatures are numbered as
    // tree.py numbers them).
    bool fold() {
        std::vector<std::pair<std::uint32_t, std::uint32_t>> stack{{0, w_[0].first}};  // (node, next child)
        while (!stack.empty()) {
            const std::uint32_t n = stack.back().first;
            const std::uint32_t child = stack.back().second;
            if (child != kNone) {
                stack.back().second = w_[child].next;
                stack.emplace_back(child, w_[child].first);
                continue;
            }
            stack.pop_back();
            if (!fold_children(n)) return false;
            w_[n].signature = signature(n);
        }
        return true;
    }

    std::vector<Node> result() const {
        std::vector<Node> out;
        out.reserve(w_.size());
        std::vector<std::pair<std::uint32_t, std::int64_t>> stack{{0, -1}};
        while (!stack.empty()) {
            const auto [n, parent] = stack.back();
            stack.pop_back();
            const Work& w = w_[n];
            const auto at = static_cast<std::int64_t>(out.size());
            Node& o = out.emplace_back();
            o.name = std::string(w.key);
            o.parent = parent;
            o.tensor = w.tensor == kNone ? -1 : static_cast<std::int64_t>(w.tensor);
            Sums t;
            add_totals(t, w);  // cannot overflow: the same sums were added up while building
            o.tensors = t.tensors, o.params = t.params, o.nbytes = t.nbytes, o.dtypes = t.dtypes.list();
            o.repeat = w.repeat;
            o.signature = w.signature == kNone ? -1 : static_cast<std::int64_t>(w.signature);
            const std::size_t from = stack.size();
            for (std::uint32_t c = w.first; c != kNone; c = w_[c].next) stack.emplace_back(c, at);
            std::reverse(stack.begin() + static_cast<std::ptrdiff_t>(from), stack.end());  // the first on top
        }
        return out;
    }

private:
    const std::vector<std::uint32_t>& kind_of_;
    const std::vector<Kind>& kinds_;
    Blocks<Work> w_;  // [0]: the root
    Blocks<Sums> sums_;  // the totals of the nodes that have children (see Work::sums)
    ChildTable child_;
    std::vector<std::pair<std::string_view, std::uint32_t>> path_;  // the previous name's (segment, node)s
    std::unordered_map<std::string, std::uint32_t> signatures_;
    std::deque<std::string> labels_;  // folded labels, which Work::key views

    void append_child(std::uint32_t node, std::uint32_t child) {
        Work& w = w_[node];
        (w.first == kNone ? w.first : w_[w.last].next) = child;
        w.last = child;
    }

    std::vector<std::uint32_t> children_of(std::uint32_t n) const {
        std::vector<std::uint32_t> out;
        for (std::uint32_t c = w_[n].first; c != kNone; c = w_[c].next) out.push_back(c);
        return out;
    }

    void set_children(std::uint32_t n, const std::vector<std::uint32_t>& children) {
        w_[n].first = w_[n].last = kNone;
        for (const std::uint32_t c : children) {
            w_[c].next = kNone;
            append_child(n, c);
        }
    }

    const Kind& kind(std::uint32_t tensor) const { return kinds_[kind_of_[tensor]]; }

    // Adds node w's totals to `into`: its own, or (a tensor's leaf) its tensor's kind's.
    bool add_totals(Sums& into, const Work& w) const {
        if (w.sums == kNone) {
            if (w.tensor == kNone) return true;
            const Kind& k = kind(w.tensor);
            return add_sizes(into, 1, k.numel, k.nbytes) && into.dtypes.add(k.dtype, 1);
        }
        const Sums& t = sums_[w.sums];
        if (!add_sizes(into, t.tensors, t.params, t.nbytes)) return false;
        for (const auto& [d, count] : t.dtypes.list())
            if (!into.dtypes.add(d, count)) return false;
        return true;
    }

    // Node n's totals, made when it first needs its own (from its tensor's, if it has one).
    Sums* sums_of(std::uint32_t n) {
        Work& w = w_[n];
        if (w.sums != kNone) return &sums_[w.sums];
        if (sums_.size() >= kNone) return nullptr;
        Sums& s = sums_.emplace_back();
        if (!add_totals(s, w)) return nullptr;
        w.sums = static_cast<std::uint32_t>(sums_.size() - 1);
        return &s;
    }

    bool add_tensor(std::uint32_t node, const Kind& k) {
        Sums* s = sums_of(node);
        return s != nullptr && add_sizes(*s, 1, k.numel, k.nbytes) && s->dtypes.add(k.dtype, 1);
    }

    std::uint32_t signature(std::uint32_t n) {
        const Work& w = w_[n];
        std::string key;
        const std::uint32_t own = w.tensor == kNone ? kNoTensor : kind(w.tensor).leaf;
        key.append(reinterpret_cast<const char*>(&own), sizeof own);
        for (std::uint32_t c = w.first; c != kNone; c = w_[c].next) {
            const auto len = static_cast<std::uint64_t>(w_[c].key.size());
            key.append(reinterpret_cast<const char*>(&len), sizeof len);
            key.append(w_[c].key);
            key.append(reinterpret_cast<const char*>(&w_[c].signature), sizeof w_[c].signature);
        }
        return signatures_.try_emplace(std::move(key), static_cast<std::uint32_t>(signatures_.size())).first->second;
    }

    bool fold_children(std::uint32_t n) {
        if (w_[n].first == kNone || w_[w_[n].first].next == kNone) return true;  // one child or none
        const std::vector<std::uint32_t> children = children_of(n);
        if (
            std::count_if(children.begin(), children.end(), [&](std::uint32_t c) { return is_index(w_[c].key); }) < 2)
            return true;
        std::vector<std::uint32_t> folded, run;
        for (const std::uint32_t c : children) {
            if (is_index(w_[c].key)) {
                if (!run.empty() && w_[run.back()].signature != w_[c].signature) {
                    if (!emit(run, folded)) return false;
                    run.clear();
                }
                run.push_back(c);
            } else {
                if (!run.empty() && !emit(run, folded)) return false;
                run.clear();
                folded.push_back(c);
            }
        }
        if (!run.empty() && !emit(run, folded)) return false;
        set_children(n, folded);
        return true;
    }

    bool emit(const std::vector<std::uint32_t>& run, std::vector<std::uint32_t>& out) {
        if (run.size() == 1) {
            out.push_back(run[0]);
            return true;
        }
        std::vector<std::int64_t> indices;
        for (const std::uint32_t c : run) indices.push_back(index_value(w_[c].key));
        if (w_.size() >= kNone || run.size() >= kNone) return false;
        Work merged;
        merged.key = labels_.emplace_back("{" + format_ranges(std::move(indices)) + "}");
        const Work& first = w_[run[0]];
        merged.tensor = first.tensor;
        merged.first = first.first;  // the same children: the run's first stands for them all
        merged.last = first.last;
        merged.repeat = static_cast<std::uint32_t>(run.size());
        merged.signature = first.signature;  // the same key: its tensor and its children
        merged.sums = static_cast<std::uint32_t>(sums_.size());
        Sums total;
        for (const std::uint32_t c : run)
            if (!add_totals(total, w_[c])) return false;
        sums_.push_back(std::move(total));
        out.push_back(static_cast<std::uint32_t>(w_.size()));
        w_.push_back(std::move(merged));
        return true;
    }
};

}  // namespace

std::optional<std::vector<Node>> build(const std::vector<std::string_view>& names,
                                       const std::vector<std::uint32_t>& kind_of, const std::vector<Kind>& kinds,
                                       bool fold) {
    if (names.size() >= kNone) return std::nullopt;  // node and tensor numbers are 32-bit
    Tree tree(kind_of, kinds, names.size());
    for (std::size_t i = 0; i < names.size(); ++i)
        if (!tree.add(names[i], i, fold)) return std::nullopt;
    if (fold && !tree.fold()) return std::nullopt;
    return tree.result();
}

}  // namespace inspector::modtree
