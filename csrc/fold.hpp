// fold_names(): names that differ in one numeric segment folded into layer ranges
// (`layers.{0..15}.ffn.weight`), with exactly the semantics of inspector/tree.py's fold_names,
// which stays the reference; this one is for lists of millions of names.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace inspector::fold {

// Python's `^\d+$` on ASCII: digits, then optionally the one newline `$` may stand before.
bool is_index(std::string_view s);
// int() of a segment is_index accepted, of at most 18 digits.
std::int64_t index_value(std::string_view s);
// tree.format_ranges: [0,1,2,3,5,7,8] -> "0..3,5,7..8".
std::string format_ranges(std::vector<std::int64_t> xs);

// Folded names, in order of first appearance; nullopt when a name is outside what this
// implementation covers (the caller then uses the reference): non-ASCII bytes (Python's `\d`
// matches other scripts' digits), a numeric segment of more than 18 digits, or a literal `#`
// segment (this implementation's group key writes `#` for a number, so it would collide).
std::optional<std::vector<std::string>> fold_names(const std::vector<std::string_view>& names);

// How many names share each prefix of `depth` dotted segments (`".".join(name.split(".")[:depth])`),
// prefixes in order of first appearance: the per-module counts of a diff.
std::vector<std::pair<std::string_view, std::size_t>> prefix_counts(const std::vector<std::string_view>& names,
                                                                    std::size_t depth);

}  // namespace inspector::fold
