#include "zip_directory.hpp"

#include <algorithm>
#include <numeric>
#include <string>
#include <unordered_set>
#include <utility>

#include "name_hash.hpp"

namespace inspector::zipdir {
namespace {

constexpr std::uint64_t kCentral = 46, kLocal = 30, kU32 = 0xFFFFFFFFu, kU16 = 0xFFFFu;
constexpr std::uint64_t kEnd = 22, kLocator = 20, kEnd64 = 56;  // zipfile_safe's _EOCD, _EOCD64_LOCATOR, _EOCD64

std::uint16_t u16(const unsigned char* p) { return static_cast<std::uint16_t>(p[0] | (p[1] << 8)); }
std::uint32_t u32(const unsigned char* p) {
    return static_cast<std::uint32_t>(p[0]) | (static_cast<std::uint32_t>(p[1]) << 8) |
           (static_cast<std::uint32_t>(p[2]) << 16) | (static_cast<std::uint32_t>(p[3]) << 24);
}
std::uint64_t u64(const unsigned char* p) {
    return static_cast<std::uint64_t>(u32(p)) | (static_cast<std::uint64_t>(u32(p + 4)) << 32);
}

// zipfile_safe._zip64_sizes: the first 0x0001 extra field replaces, in order, the fields that
// are 0xFFFFFFFF by its 8-byte values (as many as it holds).
void zip64_sizes(const unsigned char* extra, std::uint64_t n, std::uint64_t& size,
                 std::uint64_t& csize, std::uint64_t& hoff) {
    std::uint64_t pos = 0;
    while (pos + 4 <= n) {
        const std::uint16_t tag = u16(extra + pos);
        const std::uint64_t len = u16(extra + pos + 2);
        if (tag == 0x0001) {
            const std::uint64_t body = std::min(len, n - (pos + 4));
            const unsigned char* vals = extra + pos + 4;
            std::uint64_t at = 0, nvals = body / 8;
            for (std::uint64_t* f : {&size, &csize, &hoff}) {
                if (*f == kU32 && at < nvals) *f = u64(vals + 8 * at++);
            }
            return;
        }
        pos += 4 + len;
    }
}

bool ascii(std::string_view s) {
    return std::all_of(s.begin(), s.end(), [](char c) { return static_cast<unsigned char>(c) < 0x80; });
}

}  // namespace

std::optional<Members> scan_central_directory(std::string_view zip, std::uint64_t cd_off,
                                              std::uint64_t cd_size, std::uint64_t count) {
    const std::uint64_t length = zip.size();
    if (cd_off > length || cd_size > length - cd_off || count > cd_size / kCentral) return std::nullopt;
    const auto* base = reinterpret_cast<const unsigned char*>(zip.data());
    const unsigned char* cd = base + cd_off;
    Members m;
    for (auto* v : {&m.header_offsets, &m.data_offsets, &m.compressed_sizes, &m.sizes}) v->reserve(count);
    m.names.reserve(count);
    m.methods.reserve(count);
    m.crcs.reserve(count);
    std::unordered_set<std::string_view> seen;
    seen.reserve(count);
    std::uint64_t pos = 0;
    for (std::uint64_t i = 0; i < count; ++i) {
        if (pos + kCentral > cd_size) return std::nullopt;
        const unsigned char* e = cd + pos;
        if (u32(e) != 0x02014b50u) return std::nullopt;  // "PK\1\2"
        const std::uint16_t flags = u16(e + 8), method = u16(e + 10);
        const std::uint32_t crc = u32(e + 16);
        std::uint64_t csize = u32(e + 20), size = u32(e + 24), hoff = u32(e + 42);
        const std::uint64_t nlen = u16(e + 28), elen = u16(e + 30), clen = u16(e + 32);
        const std::uint16_t disk = u16(e + 34);
        const std::uint64_t end = pos + kCentral + nlen + elen + clen;
        if (end > cd_size) return std::nullopt;
        const std::string_view name(reinterpret_cast<const char*>(e + kCentral), nlen);
        if (disk != 0 || !ascii(name)) return std::nullopt;
        zip64_sizes(e + kCentral + nlen, elen, size, csize, hoff);
        if ((flags & 0x1) || (method != 0 && method != 8) || (method == 0 && csize != size))
            return std::nullopt;
        // The local header, and the name it repeats.
        if (hoff > length || kLocal + nlen > length - hoff) return std::nullopt;
        const unsigned char* l = base + hoff;
        if (u32(l) != 0x04034b50u || u16(l + 26) != nlen ||
            std::string_view(reinterpret_cast<const char*>(l + kLocal), nlen) != name)
            return std::nullopt;
        const std::uint64_t data = hoff + kLocal + nlen + u16(l + 28);
        if (data > cd_off || csize > cd_off - data) return std::nullopt;
        if (!seen.insert(name).second) return std::nullopt;
        m.names.push_back(name);
        m.header_offsets.push_back(hoff);
        m.data_offsets.push_back(data);
        m.compressed_sizes.push_back(csize);
        m.sizes.push_back(size);
        m.methods.push_back(method);
        m.crcs.push_back(crc);
        pos = end;
    }
    // No member's data may run into the next local header (zipfile_safe._check_overlaps).
    std::vector<std::size_t> order(m.names.size());
    std::iota(order.begin(), order.end(), std::size_t{0});
    std::stable_sort(order.begin(), order.end(),
                     [&](std::size_t a, std::size_t b) { return m.header_offsets[a] < m.header_offsets[b]; });
    for (std::size_t k = 1; k < order.size(); ++k) {
        const std::size_t a = order[k - 1], b = order[k];
        if (m.data_offsets[a] + m.compressed_sizes[a] > m.header_offsets[b]) return std::nullopt;
    }
    return m;
}

std::optional<Directory> find_directory(std::string_view zip) {
    const std::uint64_t length = zip.size();
    if (length < kEnd) return std::nullopt;
    const auto* base = reinterpret_cast<const unsigned char*>(zip.data());
    const std::uint64_t end = length - kEnd;
    const unsigned char* e = base + end;
    if (u32(e) != 0x06054b50u) return std::nullopt;  // "PK\5\6"
    const std::uint64_t disk = u16(e + 4), cd_disk = u16(e + 6), on_disk = u16(e + 8), count16 = u16(e + 10);
    const std::uint64_t cd_size32 = u32(e + 12), cd_off32 = u32(e + 16);
    const bool marked = disk == kU16 || count16 == kU16 || cd_size32 == kU32 || cd_off32 == kU32;
    if (!marked && (disk != 0 || cd_disk != 0 || on_disk != count16)) return std::nullopt;
    Directory d{count16, cd_size32, cd_off32};
    std::uint64_t cd_end = end;
    const bool locator = end >= kLocator && u32(base + end - kLocator) == 0x07064b50u;  // "PK\6\7"
    if (marked && !locator) return std::nullopt;
    if (locator) {
        const std::uint64_t loc = end - kLocator;
        const std::uint64_t rec = u64(base + loc + 8), disks = u32(base + loc + 16);
        if (rec > loc || kEnd64 > loc - rec) return std::nullopt;
        const unsigned char* r = base + rec;
        if (u32(r) != 0x06064b50u || disks != 1 || u32(r + 16) != 0 || u32(r + 20) != 0 ||  // "PK\6\6"
            u64(r + 24) != u64(r + 32))
            return std::nullopt;
        d = Directory{u64(r + 32), u64(r + 40), u64(r + 48)};
        cd_end = rec;
    }
    if (d.cd_off > cd_end || d.cd_size > cd_end - d.cd_off || d.count > d.cd_size / kCentral) return std::nullopt;
    return d;
}

std::optional<Members> scan_zip(std::string_view zip) {
    const std::optional<Directory> d = find_directory(zip);
    if (!d) return std::nullopt;
    return scan_central_directory(zip, d->cd_off, d->cd_size, d->count);
}

Table::Table(Members walked, std::uint64_t base) : m_(std::move(walked)) {
    std::size_t total = 0;
    for (const std::string_view n : m_.names) total += n.size();
    text_.reserve(total);
    for (const std::string_view n : m_.names) text_.insert(text_.end(), n.begin(), n.end());
    std::size_t at = 0;
    for (std::string_view& n : m_.names) {
        n = std::string_view(text_.data() + at, n.size());
        at += n.size();
    }
    for (auto* column : {&m_.header_offsets, &m_.data_offsets})
        for (std::uint64_t& v : *column) v += base;
    std::size_t capacity = 16;
    while (capacity < 2 * size()) capacity *= 2;
    slots_.assign(capacity, 0);
    for (std::size_t i = 0; i < size(); ++i) {
        std::size_t s = hash_name(m_.names[i]) & (capacity - 1);
        while (slots_[s] != 0) s = (s + 1) & (capacity - 1);
        slots_[s] = static_cast<std::uint32_t>(i + 1);
    }
}

std::optional<std::size_t> Table::find(std::string_view name) const {
    const std::size_t mask = slots_.size() - 1;
    for (std::size_t s = hash_name(name) & mask; slots_[s] != 0; s = (s + 1) & mask)
        if (m_.names[slots_[s] - 1] == name) return slots_[s] - 1;
    return std::nullopt;
}

}  // namespace inspector::zipdir
