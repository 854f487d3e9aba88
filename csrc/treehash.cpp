#include "treehash.hpp"

#include <algorithm>
#include <atomic>
#include <cstring>
#include <stdexcept>

#include "gather.hpp"
#include "parallel.hpp"
#include "xxh3.hpp"

namespace inspector::treehash {
namespace {

[[noreturn]] void fail(const std::string& who, const std::string& what) {
    throw std::invalid_argument(who + ": " + what);
}

[[noreturn]] void fail(std::size_t index, const std::string& what) { fail("job " + std::to_string(index), what); }

std::uint64_t checked_nbytes(std::string_view dtype, std::size_t itemsize,
                             const std::vector<std::int64_t>& shape, const std::string& index) {
    if (dtype.empty() || dtype.find('\0') != std::string_view::npos) {
        fail(index, "dtype name is empty or contains a NUL byte");
    }
    if (itemsize == 0 || kChunk % itemsize != 0) {
        fail(index, "itemsize " + std::to_string(itemsize) + " does not divide the 1 MiB chunk");
    }
    std::uint64_t numel = 1;
    for (std::size_t d = 0; d < shape.size(); ++d) {
        if (shape[d] < 0) fail(index, "dimension " + std::to_string(d) + " is negative");
        if (__builtin_mul_overflow(numel, static_cast<std::uint64_t>(shape[d]), &numel)) {
            fail(index, "element count overflows 64 bits");
        }
    }
    std::uint64_t nbytes = 0;
    if (__builtin_mul_overflow(numel, static_cast<std::uint64_t>(itemsize), &nbytes) ||
        nbytes > static_cast<std::uint64_t>(PTRDIFF_MAX)) {
        fail(index, "byte count overflows");
    }
    return nbytes;
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
    if (job.shape.size() != job.strides.size()) {
        fail(index, "shape has " + std::to_string(job.shape.size()) + " dimensions but strides have " +
                        std::to_string(job.strides.size()));
    }
    const std::uint64_t nbytes = checked_nbytes(job.dtype, job.itemsize, job.shape, "job " + std::to_string(index));
    if (nbytes == 0) return 0;  // nothing is read
    if (job.offset < 0) fail(index, "storage offset " + std::to_string(job.offset) + " is negative");
    std::int64_t lo = job.offset;
    std::int64_t hi = job.offset;
    for (std::size_t d = 0; d < job.shape.size(); ++d) {
        std::int64_t extent = 0;
        bool overflow = __builtin_mul_overflow(job.shape[d] - 1, job.strides[d], &extent);
        overflow = overflow || (extent >= 0 ? __builtin_add_overflow(hi, extent, &hi)
                                            : __builtin_add_overflow(lo, extent, &lo));
        if (overflow) fail(index, "strides overflow 64 bits");
    }
    if (lo < 0) fail(index, "view reaches element " + std::to_string(lo) + ", before the buffer start");
    std::uint64_t end = 0;
    if (__builtin_mul_overflow(static_cast<std::uint64_t>(hi) + 1, static_cast<std::uint64_t>(job.itemsize),
                               &end) ||
        end > job.data_len) {
        fail(index, "view spans bytes [" + std::to_string(static_cast<std::uint64_t>(lo) * job.itemsize) +
                        ", " + (end != 0 ? std::to_string(end) : std::string("overflow")) + ") of a " +
                        std::to_string(job.data_len) + "-byte buffer");
    }
    if (job.data == nullptr) fail(index, "no buffer");
    return nbytes;
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

// ---- Run -----------------------------------------------------------------------------------

struct Run::State {
    std::vector<Job> jobs;
    std::vector<std::uint64_t> nbytes;      // per job
    std::vector<std::size_t> first_leaf;    // per job, plus the total at the end
    std::vector<StridedView> views;         // per job, used when it must be gathered
    std::vector<bool> direct;               // contiguous and not swapped: hash in place
    std::vector<Digest> leaves;             // one per task
    std::vector<std::vector<std::uint8_t>> buffers;  // one gather buffer per worker
    std::atomic<std::uint64_t> done{0};
    std::uint64_t total = 0;
    std::unique_ptr<ParallelFor> pool;

    void hash_leaf(std::size_t task, unsigned worker) {
        const auto it = std::upper_bound(first_leaf.begin(), first_leaf.end(), task);
        const auto j = static_cast<std::size_t>(it - first_leaf.begin()) - 1;
        const Job& job = jobs[j];
        const std::uint64_t begin = static_cast<std::uint64_t>(task - first_leaf[j]) * kChunk;
        const auto len = static_cast<std::size_t>(std::min<std::uint64_t>(kChunk, nbytes[j] - begin));
        if (direct[j]) {
            const std::uint8_t* start = job.data + static_cast<std::uint64_t>(job.offset) * job.itemsize;
            leaves[task] = leaf(start + begin, len);
        } else {
            std::vector<std::uint8_t>& buf = buffers[worker];
            if (buf.size() < kChunk) buf.resize(kChunk);
            gather(views[j], static_cast<std::size_t>(begin / job.itemsize), len / job.itemsize, buf.data());
            byteswap(buf.data(), len, swap_unit(job));
            leaves[task] = leaf(buf.data(), len);
        }
        done.fetch_add(len, std::memory_order_relaxed);
    }
};

Run::Run(std::vector<Job> jobs, unsigned threads) : state_(std::make_unique<State>()) {
    State& s = *state_;
    s.jobs = std::move(jobs);
    s.first_leaf.push_back(0);
    for (std::size_t i = 0; i < s.jobs.size(); ++i) {
        const Job& job = s.jobs[i];
        const std::uint64_t n = validate(job, i);
        s.nbytes.push_back(n);
        s.total += n;
        s.first_leaf.push_back(s.first_leaf.back() + static_cast<std::size_t>((n + kChunk - 1) / kChunk));
        const bool direct = is_c_contiguous(job) && swap_unit(job) == 1;
        s.direct.push_back(direct);
        s.views.push_back(direct ? StridedView{}
                                 : StridedView{job.data, job.itemsize, job.shape, job.strides, job.offset});
    }
    const std::size_t tasks = s.first_leaf.back();
    s.leaves.resize(tasks);
    const unsigned n = resolve_threads(threads, tasks);
    s.buffers.resize(n);
    s.pool = std::make_unique<ParallelFor>(tasks, n, [&s](std::size_t task, unsigned worker) {
        s.hash_leaf(task, worker);
    });
}

Run::~Run() = default;  // the pool's destructor cancels and joins before the state goes

bool Run::wait_for(std::chrono::milliseconds timeout) { return state_->pool->wait_for(timeout); }

void Run::cancel() noexcept { state_->pool->cancel(); }

std::uint64_t Run::done_bytes() const noexcept { return state_->done.load(std::memory_order_relaxed); }

std::uint64_t Run::total_bytes() const noexcept { return state_->total; }

unsigned Run::threads() const noexcept { return state_->pool->threads(); }

std::vector<Digest> Run::finish() {
    State& s = *state_;
    s.pool->join();
    if (s.done.load() != s.total) throw std::runtime_error("hashing was cancelled");
    std::vector<Digest> out;
    out.reserve(s.jobs.size());
    for (std::size_t j = 0; j < s.jobs.size(); ++j) {
        out.push_back(combine(s.jobs[j].dtype, s.jobs[j].shape, s.nbytes[j], s.leaves.data() + s.first_leaf[j],
                              s.first_leaf[j + 1] - s.first_leaf[j]));
    }
    return out;
}

std::vector<Digest> hash_all(std::vector<Job> jobs, unsigned threads) {
    Run run(std::move(jobs), threads);
    return run.finish();
}

}  // namespace inspector::treehash
