// Reading checkpoint files through read-only shared memory maps, the two things the byte loops
// need beyond plain loads:
//
// The SIGBUS guard. Reading a mapped page of a file that was truncated after it was mapped
// raises SIGBUS, which kills the process without a word. The byte loops that read mapped
// checkpoint files run inside guard_mapped_read(): a SIGBUS raised by that thread while inside
// becomes a MappedFileFault exception, which the caller reports as "the file changed while it
// was read".
//
// The handler returns to the guard with siglongjmp, skipping the frames in between: only plain
// loops over bytes may run inside (nothing with a destructor, no locks, no allocation). A SIGBUS
// outside any guard goes to the handler that was installed before (faulthandler's, or the default
// action), as if the guard did not exist.
#pragma once

#include <cstddef>
#include <stdexcept>

namespace inspector {

class MappedFileFault : public std::runtime_error {
public:
    MappedFileFault() : std::runtime_error("a mapped file was truncated while it was read (SIGBUS)") {}
};

namespace detail {
// Runs fn(ctx); false when it faulted with SIGBUS.
bool run_guarded(void (*fn)(void*), void* ctx);
}  // namespace detail

// Runs `body()`; throws MappedFileFault when it faulted reading a mapped page.
template <class Body>
void guard_mapped_read(Body& body) {
    auto call = [](void* ctx) { (*static_cast<Body*>(ctx))(); };
    if (!detail::run_guarded(call, &body)) throw MappedFileFault();
}

// Page release. Drops the pages of [begin, end) from this process once they were read, so a pass
// over a 100 GB file keeps tens of MiB mapped, not the file (the hash drops the pages of each run
// of 16 chunks a worker hashed: treehash.cpp). The kernel maps file pages
// in aligned groups around each fault (fault-around, 64 KiB; a large page-cache folio, up to
// 2 MiB), so a neighbour's read maps pages of a range already released: the range is widened to
// aligned 2 MiB groups, within the pages of [map_begin, map_end), the buffer known to be a
// read-only shared map of a file. (With 64 KiB groups a 100 GB tensor still kept 499 MB mapped.) Those pages stay
// in the page cache and fault back in if read again. Never for anonymous or private memory (a
// numpy array): it would discard the data.
void release_mapped_pages(const void* begin, const void* end, const void* map_begin,
                          const void* map_end) noexcept;

}  // namespace inspector
