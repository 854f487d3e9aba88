// A torch.distributed.checkpoint `.metadata`, read from the records-mode tape (pickle_fast.hpp)
// into columns: no Python object per chunk or per storage entry. The reader in
// inspector/formats/dcp.py builds the same checkpoint from these columns as from the tree the
// Python machine makes; anything outside the plain layout `dcp.save` writes (a state that is not a
// dict, a list where a torch.Size stands, a duplicate name or chunk, transforms on a storage
// entry, an unknown storage metadata class) gives "not handled", and the reader takes the tree.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "pickle_fast.hpp"

namespace inspector::dcp {

constexpr std::uint32_t kNone = UINT32_MAX;

struct Ints {  // a run of Columns::dims
    std::uint32_t begin = 0, count = 0;
};

struct Entry {  // one state_dict_metadata item
    pkl::Span fqn;
    bool bytes = false;                 // BytesStorageMetadata
    std::uint32_t dtype_global = kNone;  // the TensorProperties' dtype (a global's index)
    Ints size;
    std::uint32_t chunk_begin = 0, chunk_count = 0;  // Columns::chunks
};

struct Chunk {
    Ints offsets, sizes;
};

struct Stored {  // one storage_data item: MetadataIndex -> _StorageInfo
    pkl::Span fqn;
    bool has_offset = false;
    Ints offset;
    pkl::Span relative_path;
    std::uint64_t offset_in_file = 0, length = 0;
};

struct Columns {
    std::vector<Entry> entries;
    std::vector<Chunk> chunks;
    std::vector<Stored> stored;
    std::vector<std::uint64_t> dims;
    std::uint32_t planner_data = kNone;  // a tape node, built as any value by the caller
};

// The columns of the Metadata record at the tape's root; false (with `why`) when it is not the
// plain layout described above.
bool extract(const pkl::Tape& tape, const std::uint8_t* data, Columns& out, std::string& why);

}  // namespace inspector::dcp
