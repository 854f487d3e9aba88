// See dcp_metadata.hpp. Reads only the tape (no Python); every node index it follows comes from
// the tape, every span lies in `data` (the parser checked both).
#include "dcp_metadata.hpp"

#include <string_view>
#include <unordered_set>

namespace inspector::dcp {

namespace {

using pkl::Kind;

constexpr std::string_view kPrefix = "torch.distributed.checkpoint.";

class Extractor {
public:
    Extractor(const pkl::Tape& t, const std::uint8_t* d, Columns& out) : t_(t), d_(d), out_(out) {}

    bool run(std::string& why) {
        if (!metadata(t_.root)) {
            why = why_;
            return false;
        }
        return true;
    }

private:
    const pkl::Tape& t_;
    const std::uint8_t* d_;
    Columns& out_;
    const char* why_ = "";

    bool no(const char* what) {
        why_ = what;
        return false;
    }
    const pkl::Node& node(std::uint32_t i) const { return t_.nodes[i]; }
    std::string_view text(std::uint32_t i) const {
        return node(i).kind == Kind::text ? t_.span(d_, node(i).ref) : std::string_view{};
    }
    pkl::Items items(std::uint32_t i) const { return t_.items(t_.containers[node(i).ref]); }
    bool is_dict(std::uint32_t i) const { return node(i).kind == Kind::dict; }

    // The class of an object node (its global's name), or "" for any other node.
    std::string_view cls(std::uint32_t i) const {
        if (node(i).kind != Kind::object) return {};
        return t_.globals[t_.records[node(i).ref].global];
    }
    // An object's state, when BUILD gave it a plain dict (kNone otherwise).
    std::uint32_t state(std::uint32_t i) const {
        if (node(i).kind != Kind::object) return kNone;
        const std::uint32_t s = t_.records[node(i).ref].state;
        return s != kNone && is_dict(s) ? s : kNone;
    }
    // The value of key `name` in a dict node (the last one set, as a dict keeps), or kNone.
    std::uint32_t field(std::uint32_t dict, std::string_view name) const {
        std::uint32_t found = kNone;
        const pkl::Items kv = items(dict);
        for (std::size_t k = 0; k + 1 < kv.size(); k += 2)
            if (node(kv[k]).kind == Kind::text && text(kv[k]) == name) found = kv[k + 1];
        return found;
    }
    static bool ends_with(std::string_view s, std::string_view tail) {
        return s.size() >= tail.size() && s.substr(s.size() - tail.size()) == tail;
    }

    // A tuple of integers >= 0 (a torch.Size, already a tuple on the tape) into `dims`.
    bool ints(std::uint32_t i, Ints& out) {
        if (i == kNone || node(i).kind != Kind::tuple) return no("a size that is not a tuple");
        out.begin = static_cast<std::uint32_t>(out_.dims.size());
        const pkl::Items v = items(i);
        for (std::uint32_t x : v) {
            if (node(x).kind != Kind::integer || node(x).num < 0) return no("a size entry that is not an int >= 0");
            out_.dims.push_back(static_cast<std::uint64_t>(node(x).num));
        }
        out.count = static_cast<std::uint32_t>(v.size());
        return true;
    }
    bool count(std::uint32_t i, std::uint64_t& v) {
        if (i == kNone || node(i).kind != Kind::integer || node(i).num < 0) return no("an offset or length that is not an int >= 0");
        v = static_cast<std::uint64_t>(node(i).num);
        return true;
    }

    bool metadata(std::uint32_t root) {
        const std::string_view c = cls(root);
        if (c.substr(0, kPrefix.size()) != kPrefix) return no("the root is not a torch.distributed.checkpoint object");
        const std::uint32_t s = state(root);
        if (s == kNone) return no("Metadata without a dict state");
        const std::uint32_t sdm = field(s, "state_dict_metadata"), sd = field(s, "storage_data");
        if (sdm == kNone || !is_dict(sdm) || sd == kNone || !is_dict(sd)) return no("no state_dict_metadata or storage_data dict");
        out_.planner_data = field(s, "planner_data");
        return entries(sdm) && stored(sd);
    }

    bool entries(std::uint32_t dict) {
        std::unordered_set<std::string_view> seen;
        const pkl::Items kv = items(dict);
        for (std::size_t k = 0; k + 1 < kv.size(); k += 2) {
            if (node(kv[k]).kind != Kind::text) return no("a state_dict_metadata key that is not a string");
            if (!seen.insert(text(kv[k])).second) return no("a name twice in state_dict_metadata");
            if (!entry(kv[k], kv[k + 1])) return false;
        }
        return true;
    }

    bool entry(std::uint32_t key, std::uint32_t value) {
        Entry e;
        e.fqn = t_.spans[node(key).ref];
        const std::string_view c = cls(value);
        if (ends_with(c, "BytesStorageMetadata")) {
            e.bytes = true;
            out_.entries.push_back(e);
            return true;
        }
        if (!ends_with(c, "TensorStorageMetadata")) return no("storage metadata of another class");
        const std::uint32_t s = state(value);
        if (s == kNone) return no("TensorStorageMetadata without a dict state");
        if (!ints(field(s, "size"), e.size) || !dtype(field(s, "properties"), e.dtype_global)) return false;
        const std::uint32_t list = field(s, "chunks");
        if (list == kNone || node(list).kind != Kind::list || items(list).empty()) return no("a tensor without a list of chunks");
        e.chunk_begin = static_cast<std::uint32_t>(out_.chunks.size());
        for (std::uint32_t item : items(list)) {
            const std::uint32_t cs = state(item);
            Chunk chunk;
            if (cs == kNone) return no("a chunk without a dict state");
            if (!ints(field(cs, "offsets"), chunk.offsets) || !ints(field(cs, "sizes"), chunk.sizes)) return false;
            out_.chunks.push_back(chunk);
        }
        e.chunk_count = static_cast<std::uint32_t>(out_.chunks.size()) - e.chunk_begin;
        out_.entries.push_back(e);
        return true;
    }

    // TensorProperties' state is a tuple whose first item is the dtype global.
    bool dtype(std::uint32_t props, std::uint32_t& global) {
        if (props == kNone || node(props).kind != Kind::object) return no("no TensorProperties");
        const std::uint32_t s = t_.records[node(props).ref].state;
        if (s == kNone || node(s).kind != Kind::tuple || items(s).empty()) return no("TensorProperties without a tuple state");
        const std::uint32_t d = items(s)[0];
        if (node(d).kind != Kind::global) return no("a dtype that is not a global");
        global = node(d).ref;
        return true;
    }

    bool stored(std::uint32_t dict) {
        std::unordered_set<std::string> seen;
        const pkl::Items kv = items(dict);
        for (std::size_t k = 0; k + 1 < kv.size(); k += 2) {
            const std::uint32_t ks = state(kv[k]), vs = state(kv[k + 1]);
            if (ks == kNone || vs == kNone) return no("a storage entry that is not two records with dict states");
            Stored s;
            const std::uint32_t fqn = field(ks, "fqn"), offset = field(ks, "offset");
            if (fqn == kNone || node(fqn).kind != Kind::text) return no("a storage key without a string fqn");
            s.fqn = t_.spans[node(fqn).ref];
            s.has_offset = offset != kNone && node(offset).kind != Kind::none;
            if (s.has_offset && !ints(offset, s.offset)) return false;
            const std::uint32_t transforms = field(vs, "transform_descriptors");
            if (transforms != kNone && node(transforms).kind != Kind::none &&
                !((node(transforms).kind == Kind::list || node(transforms).kind == Kind::tuple) && items(transforms).empty()))
                return no("a storage entry with transforms");
            const std::uint32_t path = field(vs, "relative_path");
            if (path == kNone || node(path).kind != Kind::text) return no("a storage entry without a string path");
            s.relative_path = t_.spans[node(path).ref];
            if (!count(field(vs, "offset"), s.offset_in_file) || !count(field(vs, "length"), s.length)) return false;
            // (fqn, offsets) once: the reader's index keeps one entry per chunk
            std::string key(text(fqn));
            key.push_back('\0');
            key.push_back(s.has_offset ? '1' : '0');
            for (std::uint32_t i = 0; i < s.offset.count; ++i) key += std::to_string(out_.dims[s.offset.begin + i]) + ",";
            if (!seen.insert(std::move(key)).second) return no("a chunk stored twice");
            out_.stored.push_back(s);
        }
        return true;
    }
};

}  // namespace

bool extract(const pkl::Tape& tape, const std::uint8_t* data, Columns& out, std::string& why) {
    out = Columns{};
    return Extractor(tape, data, out).run(why);
}

}  // namespace inspector::dcp
