// A zip's central directory and local headers, parsed into columns: the fast path of
// inspector/formats/zipfile_safe.py (`_Reader.entries`) for archives with nothing to report.
//
// `scan_central_directory` walks `count` entries of the directory at [cd_off, cd_off + cd_size)
// of the zip occupying `zip` (relative offsets), reads each member's local header, and returns
// the members in directory order, or nothing the moment anything is unusual: an entry that runs
// past the directory, a bad signature, encryption, a method other than stored/deflate, a stored
// member whose sizes differ, a disk number, a non-ASCII name, a local header outside the zip or
// naming another member, data running past the directory, a duplicate name, overlapping members.
// The Python reader then runs and says what is wrong: it stays the reference. Every read is
// bounds-checked against `zip.size()`; no input makes it read out of range.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace inspector::zipdir {

struct Members {
    std::vector<std::string_view> names;  // views into the zip's bytes (ASCII)
    std::vector<std::uint64_t> header_offsets, data_offsets, compressed_sizes, sizes;  // relative
    std::vector<std::uint32_t> methods, crcs;
};

// A walk's members kept for lookups by name: the names copied into one buffer, offsets made
// absolute (plus `base`), an open-addressed index over the names. What a torch zip's reader keeps
// of a directory of a million records: ~90 bytes a member, where one Python object each with its
// name and five ints was ~540.
class Table {
public:
    Table(Members walked, std::uint64_t base);
    std::size_t size() const { return m_.names.size(); }
    const Members& members() const { return m_; }
    std::optional<std::size_t> find(std::string_view name) const;

private:
    // The names, one after another: m_.names view it. A vector, not a string: moving a short
    // string moves its characters (the views would dangle), moving a vector keeps its buffer.
    std::vector<char> text_;
    Members m_;
    std::vector<std::uint32_t> slots_;  // member index + 1 by the name's hash; 0: empty
};

std::optional<Members> scan_central_directory(std::string_view zip, std::uint64_t cd_off,
                                              std::uint64_t cd_size, std::uint64_t count);

// Where the central directory lies, read from the end records as `_Reader._end_record` reads
// them (the zip64 locator and record whenever the locator is there, as torch's reader does) for
// a zip whose end record is its last 22 bytes (torch writes no comment), and checked to fit
// before them as `_Reader.entries` checks it; nothing for anything else.
struct Directory {
    std::uint64_t count, cd_size, cd_off;
};
std::optional<Directory> find_directory(std::string_view zip);

// find_directory, then scan_central_directory: the whole walk for a zip with nothing to report.
std::optional<Members> scan_zip(std::string_view zip);

}  // namespace inspector::zipdir
