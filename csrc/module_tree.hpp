// build(): the module tree of dotted tensor names with per-module totals, numbered siblings with
// equal subtrees folded into one node (`layers.{0..15}`), with exactly the semantics of
// inspector/tree.py's build_tree, which stays the reference; this one is for checkpoints of
// hundreds of thousands of tensors, where the Python tree is most of `ckpt ls`.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace inspector::modtree {

// What the tree needs of a tensor. Tensors of one kind share all of it (the caller numbers
// kinds; most checkpoints have a handful).
struct Kind {
    std::uint32_t leaf = 0;   // equal for kinds of equal (dtype, shape): what folding compares
    std::uint32_t dtype = 0;  // the caller's dtype number
    std::uint64_t numel = 0, nbytes = 0;
};

struct Node {
    std::string name;           // a name segment, or a folded label `{0..15}`
    std::int64_t parent = -1;   // index of the parent in the result (-1: the root)
    std::int64_t tensor = -1;   // index of the tensor named by this node, or -1
    std::uint64_t tensors = 0, params = 0, nbytes = 0;
    std::vector<std::pair<std::uint32_t, std::uint64_t>> dtypes;  // (dtype, count), first seen first
    std::uint64_t repeat = 1;        // > 1: stands for this many folded siblings
    std::int64_t signature = -1;     // equal numbers: equal subtrees (set when folding)
};

// The tree in pre-order: the root first, each node's children in order. `kind_of[i]` indexes
// `kinds` for names[i]. nullopt when the input is outside what this implementation covers, and
// the caller then uses the reference: with `fold`, a name with a non-ASCII byte or a newline
// (Python's `\d` matches other scripts' digits; `$` matches before a final newline), a numeric
// segment of more than 18 digits or with a leading zero, or a segment holding `{` (a folded
// label could then equal a literal name); any total past 2^64.
std::optional<std::vector<Node>> build(const std::vector<std::string_view>& names,
                                       const std::vector<std::uint32_t>& kind_of,
                                       const std::vector<Kind>& kinds, bool fold);

}  // namespace inspector::modtree
