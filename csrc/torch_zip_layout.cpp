#include "torch_zip_layout.hpp"

#include <algorithm>

#include "crc32.hpp"

namespace inspector::torchzip {
namespace {

constexpr std::string_view kPickle = "data.pkl";

bool starts_with(std::string_view s, std::string_view head) { return s.substr(0, head.size()) == head; }
bool ends_with(std::string_view s, std::string_view tail) {
    return s.size() >= tail.size() && s.substr(s.size() - tail.size()) == tail;
}

// torch_zip._root_folder: the names "<folder>/data.pkl" with no other '/'; exactly one.
std::optional<std::string_view> root_folder(const std::vector<std::string_view>& names) {
    std::optional<std::string_view> root;
    for (const std::string_view name : names) {
        if (name.size() <= kPickle.size() || !ends_with(name, kPickle)) continue;
        const std::string_view folder = name.substr(0, name.size() - kPickle.size());
        if (folder.back() != '/' || std::count(name.begin(), name.end(), '/') != 1) continue;
        if (root) return std::nullopt;  // several
        root = folder;
    }
    return root;
}

}  // namespace

std::optional<Layout> scan_layout(std::string_view zip, std::uint64_t small_max) {
    std::optional<zipdir::Members> found = zipdir::scan_zip(zip);
    if (!found) return std::nullopt;
    const std::optional<std::string_view> root = root_folder(found->names);
    if (!root) return std::nullopt;
    Layout layout{std::move(*found), *root, {}};
    const zipdir::Members& m = layout.members;
    const std::size_t data_dir = root->size() + 5;  // "<root>data/"
    for (std::size_t i = 0; i < m.names.size(); ++i) {
        const std::string_view name = m.names[i];
        if (!starts_with(name, *root)) return std::nullopt;
        const bool storage = name.size() >= data_dir && name.substr(root->size(), 5) == "data/";
        if (storage || m.sizes[i] > small_max) continue;
        if (m.methods[i] != 0) return std::nullopt;  // deflated: the Python reader inflates it
        // Stored and inside the zip (scan_zip checked both), so the CRC covers exactly its bytes.
        if (num::crc32(zip.data() + m.data_offsets[i], m.sizes[i]) != m.crcs[i]) return std::nullopt;
        layout.small.push_back(i);
    }
    return layout;
}

}  // namespace inspector::torchzip
