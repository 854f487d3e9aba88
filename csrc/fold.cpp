// Same steps as tree.py: group names by their shape with numeric segments blanked; in a group,
// fold the first numeric position whose strings vary, keeping the other positions literal.
#include "fold.hpp"

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <unordered_map>

namespace inspector::fold {

namespace {

constexpr std::size_t kMaxDigits = 18;  // fits an int64 with room to spare

// Every name's segments, flattened.
struct Split {
    std::vector<std::string_view> segs;
    std::vector<std::size_t> first;  // name i's segments are segs[first[i], first[i+1])

    std::string_view seg(std::size_t name, std::size_t k) const { return segs[first[name] + k]; }
    std::size_t count(std::size_t name) const { return first[name + 1] - first[name]; }
};

std::string join_except(const Split& sp, std::size_t name, std::size_t skip) {
    std::string out;
    bool first = true;
    for (std::size_t k = 0; k < sp.count(name); ++k) {
        if (k == skip) continue;
        if (!first) out += '.';
        first = false;
        out += sp.seg(name, k);
    }
    return out;
}

void fold_group(const Split& sp, const std::vector<std::string_view>& names, const std::vector<std::size_t>& members,
                std::vector<std::string>& out) {
    const std::size_t m0 = members[0];
    std::size_t pos = sp.count(m0);
    for (std::size_t k = 0; k < sp.count(m0) && pos == sp.count(m0); ++k) {
        if (!is_index(sp.seg(m0, k))) continue;
        for (const std::size_t m : members)
            if (sp.seg(m, k) != sp.seg(m0, k)) {
                pos = k;
                break;
            }
    }
    if (members.size() == 1 || pos == sp.count(m0)) {
        out.emplace_back(names[m0]);
        return;
    }
    std::unordered_map<std::string, std::size_t> bucket_of;
    std::vector<std::size_t> bucket_first;
    std::vector<std::vector<std::int64_t>> values;
    for (const std::size_t m : members) {
        auto [it, added] = bucket_of.emplace(join_except(sp, m, pos), values.size());
        if (added) {
            bucket_first.push_back(m);
            values.emplace_back();
        }
        values[it->second].push_back(index_value(sp.seg(m, pos)));
    }
    for (std::size_t b = 0; b < values.size(); ++b) {
        const std::size_t m = bucket_first[b];
        const std::string label = values[b].size() > 1 ? "{" + format_ranges(values[b]) + "}" : std::to_string(values[b][0]);
        std::string s;
        for (std::size_t k = 0; k < sp.count(m); ++k) {
            if (k) s += '.';
            if (k == pos) s += label;
            else s += sp.seg(m, k);
        }
        out.push_back(std::move(s));
    }
}

}  // namespace

// Python's `^\d+$` on ASCII: digits, then optionally the one newline `$` may stand before.
bool is_index(std::string_view s) {
    std::size_t n = s.size();
    if (n && s[n - 1] == '\n') --n;
    if (n == 0) return false;
    return std::all_of(s.begin(), s.begin() + static_cast<std::ptrdiff_t>(n), [](char c) { return c >= '0' && c <= '9'; });
}

std::int64_t index_value(std::string_view s) {  // int() of a checked index segment
    std::int64_t v = 0;
    for (const char c : s)
        if (c != '\n') v = v * 10 + (c - '0');
    return v;
}

// format_ranges(): [0,1,2,3,5,7,8] -> "0..3,5,7..8".
std::string format_ranges(std::vector<std::int64_t> xs) {
    std::sort(xs.begin(), xs.end());
    xs.erase(std::unique(xs.begin(), xs.end()), xs.end());
    std::string out;
    for (std::size_t i = 0; i < xs.size();) {
        std::size_t j = i;
        while (j + 1 < xs.size() && xs[j + 1] == xs[j] + 1) ++j;
        if (!out.empty()) out += ',';
        out += std::to_string(xs[i]);
        if (j != i) out += ".." + std::to_string(xs[j]);
        i = j + 1;
    }
    return out;
}


std::optional<std::vector<std::string>> fold_names(const std::vector<std::string_view>& names) {
    Split sp;
    sp.first.reserve(names.size() + 1);
    std::unordered_map<std::string, std::size_t> group_of;
    std::vector<std::vector<std::size_t>> groups;
    std::string key;
    for (std::size_t i = 0; i < names.size(); ++i) {
        sp.first.push_back(sp.segs.size());
        key.clear();
        std::string_view rest = names[i];
        for (;;) {
            const std::size_t dot = rest.find('.');
            const std::string_view seg = rest.substr(0, dot);
            for (const char c : seg)
                if (static_cast<unsigned char>(c) >= 0x80) return std::nullopt;
            const bool index = is_index(seg);
            if (seg == "#" || (index && seg.size() > kMaxDigits)) return std::nullopt;
            if (sp.segs.size() > sp.first.back()) key += '.';
            sp.segs.push_back(seg);
            key += index ? std::string_view("#") : seg;
            if (dot == std::string_view::npos) break;
            rest.remove_prefix(dot + 1);
        }
        auto [it, added] = group_of.emplace(key, groups.size());
        if (added) groups.emplace_back();
        groups[it->second].push_back(i);
    }
    sp.first.push_back(sp.segs.size());
    std::vector<std::string> out;
    for (const auto& members : groups) fold_group(sp, names, members, out);
    return out;
}

std::vector<std::pair<std::string_view, std::size_t>> prefix_counts(const std::vector<std::string_view>& names,
                                                                    std::size_t depth) {
    std::unordered_map<std::string_view, std::size_t> slot;
    std::vector<std::pair<std::string_view, std::size_t>> out;
    for (const std::string_view name : names) {
        std::size_t end = 0;
        if (depth == 0) {
            end = 0;
        } else {
            end = name.find('.');
            for (std::size_t k = 1; k < depth && end != std::string_view::npos; ++k) end = name.find('.', end + 1);
        }
        const std::string_view prefix = name.substr(0, end);
        auto [it, added] = slot.emplace(prefix, out.size());
        if (added) out.emplace_back(prefix, 0);
        ++out[it->second].second;
    }
    return out;
}

}  // namespace inspector::fold
