#include "treehash.hpp"

#include <algorithm>
#include <cstring>
#include <stdexcept>

#include "mapped_read.hpp"
#include "xxh3.hpp"

namespace inspector::treehash {
namespace {

// The dtype name and itemsize rules of the hash; shape and byte count via logical_bytes.
std::uint64_t checked_nbytes(std::string_view dtype, std::size_t itemsize, const std::vector<std::int64_t>& shape,
                             const std::string& who) {
    if (dtype.empty() || dtype.find('\0') != std::string_view::npos) {
        bad_view(who, "dtype name is empty or contains a NUL byte");
    }
    if (itemsize == 0 || kChunk % itemsize != 0) {
        bad_view(who, "itemsize " + std::to_string(itemsize) + " does not divide the 1 MiB chunk");
    }
    return logical_bytes(shape, itemsize, who);
}

bool is_c_contiguous(const Job& job) {
    std::int64_t expected = 1;
    for (std::size_t d = job.shape.size(); d-- > 0;) {
        if (job.shape[d] != 1 && job.strides[d] != expected) return false;
        expected *= job.shape[d];
    }
    return true;
}

void put_u64le(std::vector<std::uint8_t>& out, std::uint64_t v) {
    for (int i = 0; i < 8; ++i) out.push_back(static_cast<std::uint8_t>(v >> (8 * i)));
}

}  // namespace

std::uint64_t validate(const Job& job, std::size_t index) {
    try {
        checked_nbytes(job.dtype, job.itemsize, job.shape, "");
        return check_bounds(job, "").nbytes;
    } catch (const CoreError& e) {
        throw e.for_job(index);
    }
}

std::size_t swap_unit(const Job& job) {
    if (!job.byteswap) return 1;
    const bool complex = job.dtype.rfind("complex", 0) == 0;
    return complex ? job.itemsize / 2 : job.itemsize;
}

Digest leaf(const void* data, std::size_t len) noexcept {
    Digest out;
    xxh3::canonical(xxh3::hash128(data, len), out.data());
    return out;
}

Digest combine(std::string_view dtype, const std::vector<std::int64_t>& shape, std::uint64_t nbytes,
               const Digest* leaves, std::size_t count) {
    std::vector<std::uint8_t> msg;
    msg.reserve(kVersion.size() + dtype.size() + 2 + 8 * (shape.size() + 2) + 16 * count);
    msg.insert(msg.end(), kVersion.begin(), kVersion.end());
    msg.push_back(0);
    msg.insert(msg.end(), dtype.begin(), dtype.end());
    msg.push_back(0);
    put_u64le(msg, shape.size());
    for (std::int64_t dim : shape) put_u64le(msg, static_cast<std::uint64_t>(dim));
    put_u64le(msg, nbytes);
    for (std::size_t i = 0; i < count; ++i) msg.insert(msg.end(), leaves[i].begin(), leaves[i].end());
    return leaf(msg.data(), msg.size());
}

// ---- Hasher --------------------------------------------------------------------------------

Hasher::Hasher(std::string dtype, std::vector<std::int64_t> shape, std::size_t itemsize)
    : dtype_(std::move(dtype)), shape_(std::move(shape)) {
    nbytes_ = checked_nbytes(dtype_, itemsize, shape_, "hasher");
}

void Hasher::push_leaf(const std::uint8_t* data, std::size_t len) { leaves_.push_back(leaf(data, len)); }

void Hasher::update(const void* data, std::size_t len) {
    if (len > nbytes_ - fed_) {
        throw std::length_error("hasher: " + std::to_string(fed_ + len) + " bytes fed to a tensor of " +
                                std::to_string(nbytes_));
    }
    const auto* in = static_cast<const std::uint8_t*>(data);
    fed_ += len;
    while (len > 0) {
        if (pending_.empty() && len >= kChunk) {  // a whole chunk straight from the input
            push_leaf(in, kChunk);
            in += kChunk;
            len -= kChunk;
            continue;
        }
        const std::size_t take = std::min(len, kChunk - pending_.size());
        pending_.insert(pending_.end(), in, in + take);
        in += take;
        len -= take;
        if (pending_.size() == kChunk) {
            push_leaf(pending_.data(), kChunk);
            pending_.clear();
        }
    }
}

Digest Hasher::finish() {
    if (fed_ != nbytes_) {
        throw std::length_error("hasher: " + std::to_string(fed_) + " bytes fed to a tensor of " +
                                std::to_string(nbytes_));
    }
    if (!pending_.empty()) {
        push_leaf(pending_.data(), pending_.size());
        pending_.clear();
    }
    return combine(dtype_, shape_, nbytes_, leaves_.data(), leaves_.size());
}

// ---- hash_all --------------------------------------------------------------------------------

namespace {

// A task is a run of up to kLeavesPerTask leaves of one job, whose pages its worker drops at the
// end (for a file map). Runs of 16 MiB, not single 1 MiB leaves: dropping a leaf's pages,
// widened to the 2 MiB groups the kernel maps (mapped_read.hpp), unmapped part of the leaf
// beside it, which the other worker was reading and faulted back: a 3 GB file took 2,849 madvise
// calls and a fifth of the hash. A run's widened edges touch a neighbour's first or last 2 MiB
// at most; a stalled worker holds only its own run.
constexpr std::size_t kLeavesPerTask = 16;

struct Plan {
    std::vector<Job> jobs;
    std::vector<std::uint64_t> nbytes;    // per job
    std::vector<std::size_t> first_leaf;  // per job, plus the total at the end
    std::vector<std::size_t> first_task;  // per job, plus the total at the end
    std::vector<bool> direct;             // contiguous and not swapped: hash in place
    std::vector<Digest> leaves;           // in job order, then chunk order
    std::vector<std::vector<std::uint8_t>> buffers;  // one gather buffer per worker

    std::uint64_t hash_run(std::size_t task, unsigned worker) {
        const auto it = std::upper_bound(first_task.begin(), first_task.end(), task);
        const auto j = static_cast<std::size_t>(it - first_task.begin()) - 1;
        const std::size_t first = (task - first_task[j]) * kLeavesPerTask;
        const std::size_t last = std::min(first + kLeavesPerTask, first_leaf[j + 1] - first_leaf[j]);
        std::uint64_t done = 0;
        for (std::size_t k = first; k < last; ++k) done += hash_leaf(j, k, worker);
        const Job& job = jobs[j];
        if (direct[j] && job.release) {
            const std::uint8_t* start = job.data + static_cast<std::uint64_t>(job.offset) * job.itemsize;
            release_mapped_pages(start + first * kChunk, start + first * kChunk + done, job.data,
                                 job.data + job.size);
        }
        return done;
    }

    // Leaf k of job j; its byte count.
    std::size_t hash_leaf(std::size_t j, std::size_t k, unsigned worker) {
        const Job& job = jobs[j];
        const std::uint64_t begin = static_cast<std::uint64_t>(k) * kChunk;
        const auto len = static_cast<std::size_t>(std::min<std::uint64_t>(kChunk, nbytes[j] - begin));
        Digest& out = leaves[first_leaf[j] + k];
        if (direct[j]) {
            const std::uint8_t* start = job.data + static_cast<std::uint64_t>(job.offset) * job.itemsize + begin;
            auto read = [&out, start, len] { out = leaf(start, len); };
            guard_mapped_read(read);
        } else {
            std::vector<std::uint8_t>& buf = buffers[worker];
            if (buf.size() < kChunk) buf.resize(kChunk);
            Cursor cursor(job);
            cursor.seek(static_cast<std::int64_t>(begin / job.itemsize));
            std::uint8_t* const to = buf.data();
            auto read = [&cursor, to, len, &job] { cursor.gather(to, len / job.itemsize); };
            guard_mapped_read(read);
            byteswap(to, len, swap_unit(job));
            out = leaf(to, len);
        }
        return len;
    }
};

}  // namespace

std::vector<Digest> hash_all(std::vector<Job> jobs, unsigned threads, const Watch& watch) {
    Plan p;
    p.jobs = std::move(jobs);
    p.first_leaf.push_back(0);
    p.first_task.push_back(0);
    std::uint64_t total = 0;
    for (std::size_t i = 0; i < p.jobs.size(); ++i) {
        const std::uint64_t n = validate(p.jobs[i], i);
        p.nbytes.push_back(n);
        total += n;
        const auto leaves = static_cast<std::size_t>((n + kChunk - 1) / kChunk);
        p.first_leaf.push_back(p.first_leaf.back() + leaves);
        p.first_task.push_back(p.first_task.back() + std::max<std::size_t>(1, (leaves + kLeavesPerTask - 1) / kLeavesPerTask));
        p.direct.push_back(is_c_contiguous(p.jobs[i]) && swap_unit(p.jobs[i]) == 1);
    }
    p.leaves.resize(p.first_leaf.back());
    const std::size_t tasks = p.first_task.back();
    const unsigned n = resolve_threads(threads, tasks);
    p.buffers.resize(n);
    parallel_for(tasks, n, total, [&p](std::size_t task, unsigned worker) { return p.hash_run(task, worker); },
                 watch);
    std::vector<Digest> out;
    out.reserve(p.jobs.size());
    for (std::size_t j = 0; j < p.jobs.size(); ++j) {
        out.push_back(combine(p.jobs[j].dtype, p.jobs[j].shape, p.nbytes[j], p.leaves.data() + p.first_leaf[j],
                              p.first_leaf[j + 1] - p.first_leaf[j]));
    }
    return out;
}

}  // namespace inspector::treehash
