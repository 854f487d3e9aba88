// C++ unit test of reading through file maps (csrc/mapped_read.*), no Python: a read past the
// end of a file truncated under its map throws MappedFileFault (twice in a row, on two threads at
// once); a read that does not fault returns normally; dropped pages read back unchanged.
#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <thread>
#include <vector>

#include "check.hpp"
#include "mapped_read.hpp"

namespace {


constexpr std::size_t kSize = 1 << 20;

// A read-only shared map of a fresh kSize-byte file whose byte i is i % 251.
struct MappedFile {
    std::string path;
    const std::uint8_t* data = nullptr;

    MappedFile() {
        char name[] = "/tmp/test_mapped_read_XXXXXX";
        const int fd = mkstemp(name);
        path = name;
        std::vector<std::uint8_t> bytes(kSize);
        for (std::size_t i = 0; i < kSize; ++i) bytes[i] = static_cast<std::uint8_t>(i % 251);
        CHECK(write(fd, bytes.data(), kSize) == static_cast<ssize_t>(kSize));
        void* p = mmap(nullptr, kSize, PROT_READ, MAP_SHARED, fd, 0);
        CHECK(p != MAP_FAILED);
        data = static_cast<const std::uint8_t*>(p);
        close(fd);
    }
    ~MappedFile() {
        munmap(const_cast<std::uint8_t*>(data), kSize);
        unlink(path.c_str());
    }
    MappedFile(const MappedFile&) = delete;
    MappedFile& operator=(const MappedFile&) = delete;
};

std::uint64_t sum(const std::uint8_t* p, std::size_t n) {
    std::uint64_t s = 0;
    for (std::size_t i = 0; i < n; ++i) s += p[i];
    return s;
}

// Sums [begin, end) under the guard; true when it faulted.
bool faulted(const MappedFile& f, std::size_t begin, std::size_t end = kSize) {
    volatile std::uint64_t out = 0;
    auto read = [&] { out = sum(f.data + begin, end - begin); };
    try {
        inspector::guard_mapped_read(read);
    } catch (const inspector::MappedFileFault&) {
        return true;
    }
    return false;
}

void test_reads_that_do_not_fault_return_normally() {
    MappedFile f;
    CHECK(!faulted(f, 0));
    std::uint64_t expected = 0;
    for (std::size_t i = 0; i < kSize; ++i) expected += i % 251;
    CHECK(sum(f.data, kSize) == expected);
}

void test_a_truncated_map_throws_every_time_on_every_thread() {
    MappedFile f;
    CHECK(truncate(f.path.c_str(), 4096) == 0);
    CHECK(!faulted(f, 0, 4096));  // the page that remains
    CHECK(faulted(f, 8192));
    CHECK(faulted(f, 8192));  // the guard was left in order
    bool a = false, b = false;
    std::thread t1([&] { a = faulted(f, 4096); });
    std::thread t2([&] { b = faulted(f, kSize / 2); });
    t1.join();
    t2.join();
    CHECK(a && b);
}

void test_released_pages_read_back_unchanged() {
    MappedFile f;
    const std::uint64_t before = sum(f.data, kSize);
    const std::uint8_t* end = f.data + kSize;
    inspector::release_mapped_pages(f.data + 100, end - 100, f.data + 50, end - 50);  // unaligned
    inspector::release_mapped_pages(f.data, f.data, f.data, end);
    inspector::release_mapped_pages(f.data + 5000, f.data + 9000, f.data + 4096, end);
    CHECK(sum(f.data, kSize) == before);
}

// A one-page file map between two anonymous pages (the widening to 64 KiB groups must stay
// inside the file map: dropping an anonymous page would zero it).
void test_release_never_leaves_the_file_map() {
    const auto page = static_cast<std::size_t>(sysconf(_SC_PAGESIZE));
    void* region = mmap(nullptr, 3 * page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    CHECK(region != MAP_FAILED);
    auto* bytes = static_cast<std::uint8_t*>(region);
    for (std::size_t i = 0; i < 3 * page; ++i) bytes[i] = 0xAB;
    MappedFile f;
    int fd = open(f.path.c_str(), O_RDONLY);
    void* middle = mmap(bytes + page, page, PROT_READ, MAP_SHARED | MAP_FIXED, fd, 0);
    close(fd);
    CHECK(middle == bytes + page);
    inspector::release_mapped_pages(bytes + page, bytes + 2 * page, bytes + page, bytes + 2 * page);
    bool kept = true;
    for (std::size_t i = 0; i < page; ++i) kept = kept && bytes[i] == 0xAB && bytes[2 * page + i] == 0xAB;
    CHECK(kept);
    CHECK(bytes[page + 300] == 300 % 251);  // the file page reads back
    munmap(region, 3 * page);
}

}  // namespace

int main() {
    test_reads_that_do_not_fault_return_normally();
    test_a_truncated_map_throws_every_time_on_every_thread();
    test_released_pages_read_back_unchanged();
    test_release_never_leaves_the_file_map();
    std::printf("test_mapped_read: %s\n", failures == 0 ? "ok" : "FAILED");
    return failures == 0 ? 0 : 1;
}
