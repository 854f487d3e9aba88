// What inspector/formats/torch_zip.py reads of a torch.save zip before its pickle, in one pass:
// the fast path of zipfile_safe's directory walk followed by torch_zip's `_root_folder` and
// `_small_records`, for a zip with nothing to report.
//
// `scan_layout` walks the directory (zipdir::scan_zip), finds the one `<root>/data.pkl`, checks
// that every member lies under that root, and checks the CRC-32 of every small record (a member
// outside `<root>/data/` of at most `small_max` bytes). Anything unusual gives nothing: a
// directory the walk declines, no root or several, a member outside the root, a small record
// that is deflated or whose CRC differs. The Python reader then runs and says what is wrong.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string_view>
#include <vector>

#include "zip_directory.hpp"

namespace inspector::torchzip {

struct Layout {
    zipdir::Members members;
    std::string_view root;           // the folder holding data.pkl, with its '/': "archive/"
    std::vector<std::size_t> small;  // indices of the small records (stored, CRC checked)
};

std::optional<Layout> scan_layout(std::string_view zip, std::uint64_t small_max);

}  // namespace inspector::torchzip
