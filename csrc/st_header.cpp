// A one-pass JSON reader specialised for safetensors headers: the top-level object's entries go
// straight into columns; any other value is checked (syntax, duplicates, depth, digit limit) and
// skipped. Errors are raised in the order Python's reader meets them: UTF-8, then JSON (including
// duplicate names, reported when their object closes, as json's object_pairs_hook does), then
// __metadata__, then entries in header order, then the layout in offset order.
#include "st_header.hpp"

#include "name_hash.hpp"

#include <algorithm>
#include <cstring>
#include <deque>
#include <numeric>
#include <optional>

namespace inspector::st {

const char* fault_name(Fault f) {
    switch (f) {
        case Fault::header: return "header";
        case Fault::offset: return "offset";
        case Fault::dtype: return "dtype";
        case Fault::shape: return "shape";
        case Fault::duplicate_key: return "duplicate_key";
        case Fault::truncated: return "truncated";
        case Fault::io: return "io";
    }
    return "header";
}

namespace {

constexpr std::uint64_t kU64Max = ~std::uint64_t{0};
constexpr std::size_t kMinEntryBytes = 50;  // `"a":{"dtype":"F32","shape":[],"data_offsets":[0,0]},`

[[noreturn]] void fail(Fault kind, std::string what) { throw HeaderFault(kind, std::move(what)); }
[[noreturn]] void fail_key(Fault kind, std::string what, std::string_view key) {
    throw HeaderFault(kind, std::move(what), std::string(key), true);
}

// ---- UTF-8 (Python decodes the whole header before parsing it) --------------------------------

void check_utf8(std::string_view s) {
    const auto* p = reinterpret_cast<const unsigned char*>(s.data());
    const std::size_t n = s.size();
    std::size_t i = 0;
    while (i < n) {
        if (i + 8 <= n) {  // fast path over ASCII runs
            std::uint64_t w;
            std::memcpy(&w, p + i, 8);
            if ((w & 0x8080808080808080ULL) == 0) {
                i += 8;
                continue;
            }
        }
        const unsigned c = p[i];
        std::size_t len = 0;
        unsigned lo = 0x80, hi = 0xBF;  // allowed range of the second byte (Unicode table 3-7)
        if (c < 0x80) len = 1;
        else if (c >= 0xC2 && c <= 0xDF) len = 2;
        else if (c >= 0xE0 && c <= 0xEF) {
            len = 3;
            if (c == 0xE0) lo = 0xA0;
            if (c == 0xED) hi = 0x9F;  // no encoded surrogates
        } else if (c >= 0xF0 && c <= 0xF4) {
            len = 4;
            if (c == 0xF0) lo = 0x90;
            if (c == 0xF4) hi = 0x8F;
        }
        bool ok = len != 0 && i + len <= n;
        for (std::size_t k = 1; ok && k < len; ++k) {
            const unsigned b = p[i + k];
            ok = k == 1 ? (b >= lo && b <= hi) : (b >= 0x80 && b <= 0xBF);
        }
        if (!ok) fail(Fault::header, "header is not valid UTF-8 (invalid byte at byte " + std::to_string(i) + ")");
        i += len;
    }
}

// ---- JSON values -----------------------------------------------------------------------------

enum class Kind { object, array, string, integer, real, boolean, null };

// Python's type names, for messages that match the Python reader's.
const char* py_type(Kind k) {
    switch (k) {
        case Kind::object: return "dict";
        case Kind::array: return "list";
        case Kind::string: return "str";
        case Kind::integer: return "int";
        case Kind::real: return "float";
        case Kind::boolean: return "bool";
        case Kind::null: return "NoneType";
    }
    return "object";
}

struct Int {
    bool negative = false;  // "-0" is not negative
    bool huge = false;      // magnitude >= 2**64
    std::uint64_t mag = 0;
};

// What the entry checks need of one field: its kind, its text, a string's value, an array's
// integer items.
struct Field {
    bool present = false;
    Kind kind = Kind::null;
    std::size_t span_begin = 0, span_end = 0;
    std::string str;
    std::vector<Int> items;
    bool all_ints = true;

    void reset() {
        present = false;
        str.clear();
        items.clear();
        all_ints = true;
    }
};

struct Entry {
    Field dtype, shape, offsets;
};

void append_utf8(std::string& out, std::uint32_t cp) {  // surrogates too (see Header)
    if (cp < 0x80) {
        out.push_back(static_cast<char>(cp));
    } else if (cp < 0x800) {
        out.push_back(static_cast<char>(0xC0 | (cp >> 6)));
        out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
    } else if (cp < 0x10000) {
        out.push_back(static_cast<char>(0xE0 | (cp >> 12)));
        out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
        out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
    } else {
        out.push_back(static_cast<char>(0xF0 | (cp >> 18)));
        out.push_back(static_cast<char>(0x80 | ((cp >> 12) & 0x3F)));
        out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
        out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
    }
}

int hex_digit(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}


// The first name (in order) equal to an earlier one, found with an open-addressing table of
// hashes. Run once the names are all stored: the hashes are computed in one sequential pass and
// the table probed a few names ahead (prefetched), since with a million names nearly every probe
// is a cache miss.
std::optional<std::size_t> first_duplicate_name(const Header& h) {
    const std::size_t n = h.size();
    std::vector<std::uint64_t> hashes(n);
    for (std::size_t i = 0; i < n; ++i) hashes[i] = hash_name(h.name(i));
    std::size_t cap = 16;
    while (cap < n * 2) cap *= 2;
    const std::size_t mask = cap - 1;
    std::vector<std::size_t> slots(cap, 0);  // name index + 1; 0 = empty
    constexpr std::size_t kAhead = 16;
    for (std::size_t i = 0; i < n; ++i) {
#if defined(__GNUC__)
        if (i + kAhead < n) __builtin_prefetch(&slots[hashes[i + kAhead] & mask]);
#endif
        for (std::size_t s = hashes[i] & mask;; s = (s + 1) & mask) {
            if (slots[s] == 0) {
                slots[s] = i + 1;
                break;
            }
            const std::size_t j = slots[s] - 1;
            if (hashes[j] == hashes[i] && h.name(j) == h.name(i)) return i;
        }
    }
    return std::nullopt;
}

class Parser {
public:
    Parser(std::string_view text, const std::vector<DtypeSpec>& dtypes, Header& out)
        : t_(text), dtypes_(dtypes), h_(out) {
        const std::size_t guess = text.size() / kMinEntryBytes;  // reserved, touched only if used
        h_.names.reserve(text.size() / 2);
        for (auto* v : {&h_.name_end, &h_.dims_end, &h_.dims}) v->reserve(guess);
        h_.dtype.reserve(guess);
        h_.begin.reserve(guess);
        h_.end.reserve(guess);
    }

    void parse() {
        skip_ws();
        if (peek() == '{') {
            top_object();
        } else {
            const Kind k = value(0);
            end_of_document();
            fail(Fault::header, std::string("header is a JSON ") + py_type(k) + ", not an object");
        }
        end_of_document();
        if (metadata_fault_) fail_key(Fault::header, "must be a map of strings to strings", "__metadata__");
        if (entry_fault_) throw *entry_fault_;
    }

private:
    // -- low level --
    char peek() const { return p_ < t_.size() ? t_[p_] : '\0'; }
    bool at_end() const { return p_ >= t_.size(); }

    [[noreturn]] void syntax(const std::string& what) const {
        fail(Fault::header, "header is not valid JSON: " + what + " at byte " + std::to_string(p_));
    }

    void skip_ws() {
        std::size_t p = p_;
        while (p < t_.size() && (t_[p] == ' ' || t_[p] == '\t' || t_[p] == '\n' || t_[p] == '\r')) ++p;
        p_ = p;
    }

    void expect(char c, const char* what) {
        skip_ws();
        if (peek() != c || at_end()) syntax(std::string("expecting ") + what);
        ++p_;
    }

    bool literal(std::string_view word) {
        if (t_.substr(p_, word.size()) != word) return false;
        p_ += word.size();
        return true;
    }

    void end_of_document() {
        skip_ws();
        if (!at_end()) syntax("extra data");
    }

    void enter(int depth) const {
        if (depth > kMaxDepth) fail(Fault::header, "header is nested too deeply");
    }

    // -- strings: p_ at the opening quote; the decoded text is appended to *out when given --
    void string(std::string* out) {
        ++p_;
        const char* data = t_.data();
        const std::size_t size = t_.size();
        for (;;) {
            const std::size_t run = p_;
            std::size_t p = p_;  // a local: the compiler keeps it in a register
            while (p < size && data[p] != '"' && data[p] != '\\' && static_cast<unsigned char>(data[p]) >= 0x20) ++p;
            p_ = p;
            if (out) out->append(data + run, p - run);
            if (at_end()) syntax("unterminated string");
            const char c = t_[p_];
            if (c == '"') {
                ++p_;
                return;
            }
            if (c != '\\') syntax("invalid control character");
            escape(out);
        }
    }

    // A string as a view of the text when it has no escape (nearly always), else decoded.
    std::string_view key() {
        const std::size_t start = p_;
        string(nullptr);
        const std::string_view raw = t_.substr(start + 1, p_ - start - 2);
        if (raw.find('\\') == std::string_view::npos) return raw;
        p_ = start;
        decoded_keys_.emplace_back();
        string(&decoded_keys_.back());
        return decoded_keys_.back();
    }

    void escape(std::string* out) {
        ++p_;
        if (at_end()) syntax("unterminated string");
        const char c = t_[p_++];
        static constexpr std::string_view from = "\"\\/bfnrt", to = "\"\\/\b\f\n\r\t";
        const std::size_t k = from.find(c);
        if (k != std::string_view::npos) {
            if (out) out->push_back(to[k]);
            return;
        }
        if (c != 'u') syntax("invalid \\escape");
        std::uint32_t cp = hex4(p_);
        if (cp == kBadHex) syntax("invalid \\uXXXX escape");
        p_ += 4;
        // A high surrogate followed by an escaped low one is one code point (as in Python's json).
        if (cp >= 0xD800 && cp <= 0xDBFF && t_.substr(p_, 2) == "\\u") {
            const std::uint32_t lo = hex4(p_ + 2);
            if (lo >= 0xDC00 && lo <= 0xDFFF && lo != kBadHex) {
                cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
                p_ += 6;
            }
        }
        if (out) append_utf8(*out, cp);
    }

    static constexpr std::uint32_t kBadHex = 0xFFFFFFFF;
    std::uint32_t hex4(std::size_t at) const {
        if (at + 4 > t_.size()) return kBadHex;
        std::uint32_t v = 0;
        for (std::size_t i = 0; i < 4; ++i) {
            const int d = hex_digit(t_[at + i]);
            if (d < 0) return kBadHex;
            v = v * 16 + static_cast<std::uint32_t>(d);
        }
        return v;
    }

    // -- numbers: -?(0|[1-9]\d*)(\.\d+)?([eE][-+]?\d+)? plus NaN, Infinity, -Infinity --
    Kind number(Int* out) {
        const std::size_t start = p_;
        const bool negative = peek() == '-';
        if (negative) {
            ++p_;
            if (literal("Infinity")) return Kind::real;
        }
        const std::size_t digits_begin = p_;
        if (peek() == '0') {
            ++p_;
        } else if (peek() >= '1' && peek() <= '9') {
            while (peek() >= '0' && peek() <= '9') ++p_;
        } else {
            p_ = start;
            syntax("expecting value");
        }
        const std::size_t digits_end = p_;
        bool real = false;
        if (peek() == '.' && p_ + 1 < t_.size() && t_[p_ + 1] >= '0' && t_[p_ + 1] <= '9') {
            real = true;
            ++p_;
            while (peek() >= '0' && peek() <= '9') ++p_;
        }
        if (peek() == 'e' || peek() == 'E') {
            std::size_t q = p_ + 1;
            if (q < t_.size() && (t_[q] == '+' || t_[q] == '-')) ++q;
            if (q < t_.size() && t_[q] >= '0' && t_[q] <= '9') {
                real = true;
                p_ = q;
                while (peek() >= '0' && peek() <= '9') ++p_;
            }
        }
        if (real) return Kind::real;
        const std::size_t ndigits = digits_end - digits_begin;
        if (ndigits > kMaxIntDigits)
            fail(Fault::header, "header is not valid JSON: an integer of " + std::to_string(ndigits) +
                                    " digits exceeds the " + std::to_string(kMaxIntDigits) + "-digit limit");
        if (out) {
            Int v;
            for (std::size_t i = digits_begin; i < digits_end; ++i) {
                const auto d = static_cast<std::uint64_t>(t_[i] - '0');
                if (v.mag > (kU64Max - d) / 10) v.huge = true;
                v.mag = v.mag * 10 + d;
            }
            v.negative = negative && (v.huge || v.mag != 0);
            *out = v;
        }
        return Kind::integer;
    }

    // -- any value, checked and skipped --
    Kind value(int depth) {
        skip_ws();
        switch (peek()) {
            case '{': object(depth + 1); return Kind::object;
            case '[': array(depth + 1, nullptr); return Kind::array;
            case '"': string(nullptr); return Kind::string;
            default: break;
        }
        if (at_end()) syntax("expecting value");
        if (literal("null")) return Kind::null;
        if (literal("true") || literal("false")) return Kind::boolean;
        if (literal("NaN") || literal("Infinity")) return Kind::real;
        return number(nullptr);
    }

    // Objects other than the top level and entries: duplicates are found with a sorted copy of
    // the keys when the object closes (they are small, or rare).
    void object(int depth) {
        members(depth, [&](const std::string&) { value(depth); });
    }

    // An object at `depth` (the cursor on its '{'): `member(key)` parses each value; repeated keys
    // are reported when the object closes.
    template <class F>
    void members(int depth, F&& member) {
        enter(depth);
        ++p_;
        std::vector<std::string> keys;
        skip_ws();
        if (peek() == '}' && !at_end()) {
            ++p_;
            return;
        }
        for (;;) {
            skip_ws();
            if (peek() != '"' || at_end()) syntax("expecting property name enclosed in double quotes");
            keys.emplace_back();
            string(&keys.back());
            expect(':', "':' delimiter");
            member(keys.back());
            if (!next_member('}')) break;
        }
        if (const auto dup = first_duplicate(keys)) fail_key(Fault::duplicate_key, "name appears twice in the header", *dup);
    }

    // The first key (in order) that repeats an earlier one, as json's object_pairs_hook reports.
    template <class Key>
    static std::optional<std::string> first_duplicate(const std::vector<Key>& keys) {
        if (keys.size() <= 8) {  // entries: a few keys, no allocation
            for (std::size_t i = 1; i < keys.size(); ++i)
                for (std::size_t j = 0; j < i; ++j)
                    if (keys[i] == keys[j]) return std::string(keys[i]);
            return std::nullopt;
        }
        std::vector<std::size_t> idx(keys.size());
        std::iota(idx.begin(), idx.end(), std::size_t{0});
        std::stable_sort(idx.begin(), idx.end(), [&](std::size_t a, std::size_t b) { return keys[a] < keys[b]; });
        std::size_t best = keys.size();
        for (std::size_t i = 1; i < idx.size(); ++i)
            if (keys[idx[i]] == keys[idx[i - 1]]) best = std::min(best, idx[i]);
        if (best == keys.size()) return std::nullopt;
        return std::string(keys[best]);
    }

    // After a member or item: true when a ',' follows (another one comes), false at `close`.
    bool next_member(char close) {
        skip_ws();
        if (peek() == ',' && !at_end()) {
            ++p_;
            return true;
        }
        if (peek() == close && !at_end()) {
            ++p_;
            return false;
        }
        syntax("expecting ',' delimiter");
    }

    // Arrays; with `field`, integer items are captured (others only clear all_ints).
    void array(int depth, Field* field) {
        enter(depth);
        ++p_;
        skip_ws();
        if (peek() == ']' && !at_end()) {
            ++p_;
            return;
        }
        do {
            skip_ws();
            if (field) {
                Int v;
                const char c = peek();
                if (c == '-' || (c >= '0' && c <= '9')) {  // "-Infinity" comes back as a real
                    if (number(&v) == Kind::integer)
                        field->items.push_back(v);
                    else
                        field->all_ints = false;
                    continue;
                }
                field->all_ints = false;
            }
            value(depth);
        } while (next_member(']'));
    }

    // A field of an entry: its kind and span, a string's text, an array's integers.
    void field(Field& f, int depth) {
        skip_ws();
        f.present = true;
        f.str.clear();
        f.items.clear();
        f.all_ints = true;
        f.span_begin = p_;
        const char c = peek();
        if (c == '"') {
            f.kind = Kind::string;
            string(&f.str);
        } else if (c == '[') {
            f.kind = Kind::array;
            array(depth + 1, &f);
        } else {
            f.kind = value(depth);
        }
        f.span_end = p_;
    }

    // -- the top level: name -> entry, plus __metadata__ --
    void top_object() {
        ++p_;
        std::optional<std::string> dup;
        bool seen_metadata = false;
        skip_ws();
        if (peek() == '}' && !at_end()) {
            ++p_;
            return;
        }
        for (;;) {
            skip_ws();
            if (peek() != '"' || at_end()) syntax("expecting property name enclosed in double quotes");
            const std::size_t name_begin = h_.names.size();
            string(&h_.names);
            expect(':', "':' delimiter");
            if (std::string_view(h_.names).substr(name_begin) == "__metadata__") {
                h_.names.resize(name_begin);
                if (seen_metadata && !dup) {
                    dup = "__metadata__";
                    metadata_repeat_at_ = h_.size();  // tensors named before the repeat
                }
                seen_metadata = true;
                metadata();
            } else {
                h_.name_end.push_back(h_.names.size());
                entry(h_.name_end.size() - 1);
            }
            if (!next_member('}')) break;
        }
        // Duplicates are reported when the object closes (json's object_pairs_hook does the same).
        if (const auto i = first_duplicate_name(h_)) {
            const std::string_view nm = h_.name(*i);
            // A repeated __metadata__ before the first repeated tensor name is reported first.
            if (dup && metadata_repeat_at_ <= *i) fail_key(Fault::duplicate_key, "name appears twice in the header", *dup);
            fail_key(Fault::duplicate_key, "name appears twice in the header", nm);
        }
        if (dup) fail_key(Fault::duplicate_key, "name appears twice in the header", *dup);
    }

    void metadata() {
        skip_ws();
        h_.metadata.clear();
        if (peek() == '{' && !at_end()) {
            members(2, [&](const std::string& key) {  // str -> str, like the reference
                skip_ws();
                if (peek() == '"' && !at_end()) {
                    std::string v;
                    string(&v);
                    h_.metadata.emplace_back(key, std::move(v));
                } else {
                    value(2);
                    metadata_fault_ = true;
                }
            });
            return;
        }
        if (value(1) != Kind::null) metadata_fault_ = true;  // null: no metadata, as in Python
    }

    void entry(std::size_t i) {
        e_.dtype.reset();
        e_.shape.reset();
        e_.offsets.reset();
        skip_ws();
        if (peek() != '{' || at_end()) {
            const Kind k = value(1);
            entry_fault(Fault::header, std::string("entry is a JSON ") + py_type(k) + ", not an object", i);
        } else {
            entry_object();
            if (!entry_fault_) check_entry(i);
        }
        if (entry_fault_) {  // the header is refused in the end: keep the columns aligned only
            h_.dims_end.push_back(h_.dims.size());
            h_.dtype.push_back(0);
            h_.begin.push_back(0);
            h_.end.push_back(0);
        }
    }

    void entry_object() {
        enter(2);
        ++p_;
        keys_.clear();
        decoded_keys_.clear();
        skip_ws();
        if (peek() == '}' && !at_end()) {
            ++p_;
            return;
        }
        for (;;) {
            skip_ws();
            if (peek() != '"' || at_end()) syntax("expecting property name enclosed in double quotes");
            keys_.push_back(key());
            expect(':', "':' delimiter");
            const std::string_view k = keys_.back();
            if (k == std::string_view("dtype")) field(e_.dtype, 2);
            else if (k == std::string_view("shape")) field(e_.shape, 2);
            else if (k == std::string_view("data_offsets")) field(e_.offsets, 2);
            else value(2);
            if (!next_member('}')) break;
        }
        if (keys_.size() > 1)
            if (const auto d = first_duplicate(keys_)) fail_key(Fault::duplicate_key, "name appears twice in the header", *d);
    }

    std::string_view span(const Field& f) const {
        const std::string_view s = t_.substr(f.span_begin, f.span_end - f.span_begin);
        if (s.size() <= 80) return s;
        std::size_t cut = 80;  // the text is valid UTF-8: never cut inside a character
        while (cut > 0 && (static_cast<unsigned char>(s[cut]) & 0xC0) == 0x80) --cut;
        return s.substr(0, cut);
    }

    void entry_fault(Fault kind, std::string what, std::size_t i) {
        if (!entry_fault_) entry_fault_.emplace(kind, std::move(what), std::string(h_.name(i)), true);
    }

    // The checks of Python's _entry(), in its order.
    void check_entry(std::size_t i) {
        std::string missing;
        for (const auto& [f, nm] : {std::pair<const Field*, const char*>{&e_.dtype, "dtype"},
                                    {&e_.shape, "shape"},
                                    {&e_.offsets, "data_offsets"}})
            if (!f->present) missing += (missing.empty() ? "" : ", ") + std::string(nm);
        if (!missing.empty()) return entry_fault(Fault::header, "entry lacks " + missing, i);

        std::uint32_t dt = 0;
        while (dt < dtypes_.size() && !(e_.dtype.kind == Kind::string && dtypes_[dt].name == e_.dtype.str)) ++dt;  // ~20 short names
        if (dt == dtypes_.size()) {
            const std::string shown = e_.dtype.kind == Kind::string ? "'" + e_.dtype.str + "'" : std::string(span(e_.dtype));
            return entry_fault(Fault::dtype, "unknown dtype " + shown, i);
        }

        const Field& s = e_.shape;
        if (s.kind != Kind::array || !s.all_ints)
            return entry_fault(Fault::shape, "shape " + std::string(span(s)) + " is not a list of integers", i);
        for (const Int& d : s.items) {
            if (d.negative) return entry_fault(Fault::shape, "shape " + std::string(span(s)) + " has a negative dimension", i);
        }
        for (const Int& d : s.items) {
            if (d.huge) return entry_fault(Fault::shape, "shape " + std::string(span(s)) + " has a dimension beyond 64 bits", i);
        }

        const Field& o = e_.offsets;
        if (o.kind != Kind::array || !o.all_ints || o.items.size() != 2)
            return entry_fault(Fault::offset, "data_offsets " + std::string(span(o)) + " is not a pair of integers", i);
        const Int &b = o.items[0], &e = o.items[1];
        const bool end_below_begin = !b.negative && !e.negative && !e.huge && (b.huge || e.mag < b.mag);
        if (b.negative || e.negative || end_below_begin)
            return entry_fault(Fault::offset, "data_offsets " + std::string(span(o)) + " is not a valid range", i);
        if (b.huge || e.huge)
            return entry_fault(Fault::offset, "data_offsets " + std::string(span(o)) + " are beyond 64 bits", i);

        for (const Int& d : s.items) h_.dims.push_back(d.mag);
        h_.dims_end.push_back(h_.dims.size());
        h_.dtype.push_back(dt);
        h_.begin.push_back(b.mag);
        h_.end.push_back(e.mag);
    }

    std::string_view t_;
    std::size_t p_ = 0;
    const std::vector<DtypeSpec>& dtypes_;
    Header& h_;
    std::size_t metadata_repeat_at_ = 0;
    Entry e_;
    std::vector<std::string_view> keys_;
    std::deque<std::string> decoded_keys_;  // keys that had escapes (stable addresses)
    bool metadata_fault_ = false;
    std::optional<HeaderFault> entry_fault_;
};

// ---- layout --------------------------------------------------------------------------------

std::string range(std::uint64_t b, std::uint64_t e) { return "[" + std::to_string(b) + ", " + std::to_string(e) + "]"; }

std::string shape_text(const Header& h, std::size_t i) {
    const auto [dims, rank] = h.shape(i);
    std::string s = "[";
    for (std::size_t k = 0; k < rank; ++k) s += (k ? ", " : "") + std::to_string(dims[k]);
    return s + "]";
}

// numel * itemsize, or nullopt past 64 bits (checked after each factor, as the Python reader does).
std::optional<std::uint64_t> nbytes(const Header& h, std::size_t i, std::uint64_t itemsize) {
    const auto [dims, rank] = h.shape(i);
    std::uint64_t n = 1;
    for (std::size_t k = 0; k <= rank; ++k) {
        const std::uint64_t f = k < rank ? dims[k] : itemsize;
        if (f != 0 && n > kU64Max / f) return std::nullopt;
        n *= f;
    }
    return n;
}

// Puts the columns in (begin, end) order, ties in header order (Python's stable sort).
void sort_by_offsets(Header& h) {
    const std::size_t n = h.size();
    bool sorted = true;
    for (std::size_t i = 1; i < n && sorted; ++i)
        sorted = std::make_pair(h.begin[i - 1], h.end[i - 1]) <= std::make_pair(h.begin[i], h.end[i]);
    if (sorted) return;
    std::vector<std::size_t> order(n);
    std::iota(order.begin(), order.end(), std::size_t{0});
    std::stable_sort(order.begin(), order.end(), [&](std::size_t a, std::size_t b) {
        return std::make_pair(h.begin[a], h.end[a]) < std::make_pair(h.begin[b], h.end[b]);
    });
    Header s;
    s.data_start = h.data_start;
    s.metadata = std::move(h.metadata);
    s.names.reserve(h.names.size());
    s.dims.reserve(h.dims.size());
    for (const std::size_t i : order) {
        const std::string_view nm = h.name(i);
        s.names.append(nm.data(), nm.size());
        s.name_end.push_back(s.names.size());
        const auto [dims, rank] = h.shape(i);
        s.dims.insert(s.dims.end(), dims, dims + rank);
        s.dims_end.push_back(s.dims.size());
        s.dtype.push_back(h.dtype[i]);
        s.begin.push_back(h.begin[i]);
        s.end.push_back(h.end[i]);
    }
    h = std::move(s);
}

void check_layout(const Header& h, std::uint64_t data_size, const std::vector<DtypeSpec>& dtypes) {
    std::uint64_t expected = 0;
    for (std::size_t i = 0; i < h.size(); ++i) {
        const std::uint64_t b = h.begin[i], e = h.end[i];
        if (b != expected) {
            const char* what = b < expected ? "overlaps the previous tensor" : "leaves a gap after the previous tensor";
            fail_key(Fault::offset,
                     "data_offsets " + range(b, e) + " " + what + " (expected start " + std::to_string(expected) + ")",
                     h.name(i));
        }
        const std::uint64_t itemsize = dtypes[h.dtype[i]].itemsize;
        const auto n = nbytes(h, i, itemsize);
        if (!n) fail_key(Fault::shape, "shape " + shape_text(h, i) + " overflows a 64-bit byte count", h.name(i));
        if (e - b != *n)
            fail_key(Fault::shape,
                     "shape " + shape_text(h, i) + " of " + std::to_string(itemsize) + "-byte elements needs " +
                         std::to_string(*n) + " bytes, data_offsets " + range(b, e) + " hold " + std::to_string(e - b),
                     h.name(i));
        expected = e;
    }
    if (expected > data_size) {
        std::size_t i = 0;
        while (h.end[i] <= data_size) ++i;
        fail_key(Fault::truncated,
                 "data_offsets " + range(h.begin[i], h.end[i]) + " run past the end of the data (" +
                     std::to_string(data_size) + " bytes after the header)",
                 h.name(i));
    }
    if (expected < data_size)
        fail(Fault::offset, std::to_string(data_size - expected) + " trailing bytes after the last tensor");
}

// The checks on the 8-byte length, shared by parse_header and read_header.
std::uint64_t header_length(std::string_view first8, std::uint64_t file_size) {
    if (first8.size() < 8)
        fail(Fault::truncated, "file is " + std::to_string(file_size) + " bytes, shorter than the 8-byte header length");
    std::uint64_t n = 0;
    for (int k = 7; k >= 0; --k) n = (n << 8) | static_cast<unsigned char>(first8[static_cast<std::size_t>(k)]);
    if (n > kMaxHeaderSize)
        fail(Fault::header, "header length " + std::to_string(n) + " exceeds the " + std::to_string(kMaxHeaderSize) +
                                "-byte cap");
    if (8 + n > file_size)
        fail(Fault::truncated, "header of " + std::to_string(n) + " bytes declared, the file has " +
                                   std::to_string(file_size - 8) + " after the length");
    return n;
}

}  // namespace

Header parse_header(std::string_view file, std::uint64_t file_size, const std::vector<DtypeSpec>& dtypes) {
    const std::uint64_t n = header_length(file.substr(0, 8), file_size);
    if (file.size() < 8 + n) fail(Fault::truncated, "fewer bytes given than the header length declares");
    const std::string_view text = file.substr(8, static_cast<std::size_t>(n));
    check_utf8(text);
    Header h;
    h.data_start = 8 + n;
    Parser(text, dtypes, h).parse();
    sort_by_offsets(h);
    check_layout(h, file_size - h.data_start, dtypes);
    return h;
}

}  // namespace inspector::st
