// The one thread pool: a parallel-for over task indices on a few std::threads, with cancellation,
// progress and error capture. The caller keeps its own thread: it polls `wait_for` (to report
// progress, check signals) and may `cancel` at any time; parallel_for() wraps that loop. Tasks are
// handed out in index order through one atomic counter, so neighbouring tasks (neighbouring
// chunks of a tensor) run close together in time. Results must not depend on which worker runs a
// task: callers keep one result per task and combine them in task order.
#pragma once

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <exception>
#include <functional>
#include <mutex>
#include <thread>
#include <utility>
#include <vector>

namespace inspector {

// `requested` threads (0 = one per hardware thread), at most one per task, at least one.
inline unsigned resolve_threads(unsigned requested, std::size_t tasks) {
    unsigned n = requested != 0 ? requested : std::max(1U, std::thread::hardware_concurrency());
    if (tasks < n) n = static_cast<unsigned>(std::max<std::size_t>(tasks, 1));
    return n;
}

class ParallelFor {
public:
    // Returns the units of work it did (bytes, elements), summed into done() for progress.
    using Task = std::function<std::uint64_t(std::size_t task, unsigned worker)>;

    // Starts the workers at once. A task that throws cancels the remaining tasks; the first
    // exception is rethrown by join().
    ParallelFor(std::size_t tasks, unsigned threads, Task fn) : tasks_(tasks), fn_(std::move(fn)) {
        const unsigned n = resolve_threads(threads, tasks);
        running_ = n;
        workers_.reserve(n);
        try {
            for (unsigned w = 0; w < n; ++w) workers_.emplace_back([this, w] { work(w); });
        } catch (...) {  // could not start a thread: stop the ones that did start
            std::lock_guard<std::mutex> lock(mu_);
            running_ -= n - static_cast<unsigned>(workers_.size());
            stop_ = true;
            error_ = std::current_exception();
        }
    }

    ParallelFor(const ParallelFor&) = delete;
    ParallelFor& operator=(const ParallelFor&) = delete;

    ~ParallelFor() {
        cancel();
        join_threads();
    }

    // True when every worker has finished (all tasks done, or cancelled, or failed).
    bool wait_for(std::chrono::milliseconds timeout) {
        std::unique_lock<std::mutex> lock(mu_);
        return cv_.wait_for(lock, timeout, [this] { return running_ == 0; });
    }

    void cancel() noexcept { stop_ = true; }
    bool cancelled() const noexcept { return stop_; }
    unsigned threads() const noexcept { return static_cast<unsigned>(workers_.size()); }
    std::uint64_t done() const noexcept { return done_.load(std::memory_order_relaxed); }

    // Waits for the workers; rethrows the first exception a task (or thread creation) threw.
    void join() {
        join_threads();
        if (error_) std::rethrow_exception(error_);
    }

private:
    void work(unsigned worker) {
        while (!stop_) {
            const std::size_t task = next_.fetch_add(1);
            if (task >= tasks_) break;
            try {
                done_.fetch_add(fn_(task, worker), std::memory_order_relaxed);
            } catch (...) {
                std::lock_guard<std::mutex> lock(mu_);
                if (!error_) error_ = std::current_exception();
                stop_ = true;
            }
        }
        std::lock_guard<std::mutex> lock(mu_);
        if (--running_ == 0) cv_.notify_all();
    }

    void join_threads() noexcept {
        for (auto& t : workers_) {
            if (t.joinable()) t.join();
        }
    }

    std::size_t tasks_;
    Task fn_;
    std::atomic<std::size_t> next_{0};
    std::atomic<bool> stop_{false};
    std::atomic<std::uint64_t> done_{0};
    std::mutex mu_;
    std::condition_variable cv_;
    unsigned running_ = 0;
    std::exception_ptr error_;
    std::vector<std::thread> workers_;
};

// Progress watcher for parallel_for: called on the calling thread about every kWatchInterval while
// the workers run, and once when they are done, with (done, total) in the caller's units. If it
// throws, the remaining tasks are cancelled (a running task finishes), the workers are joined and
// the exception propagates.
using Watch = std::function<void(std::uint64_t done, std::uint64_t total)>;
constexpr std::chrono::milliseconds kWatchInterval{75};

// Runs fn for every task in [0, tasks) on `threads` workers (0 = one per hardware thread) and
// rethrows the first exception a task threw. A single task runs on the calling thread (no thread
// to start; it is short: one chunk).
inline void parallel_for(std::size_t tasks, unsigned threads, std::uint64_t total, const ParallelFor::Task& fn,
                         const Watch& watch = {}) {
    if (tasks <= 1) {
        std::uint64_t done = 0;
        for (std::size_t t = 0; t < tasks; ++t) done += fn(t, 0);
        if (watch) watch(done, total);
        return;
    }
    ParallelFor pool(tasks, threads, fn);
    while (watch && !pool.wait_for(kWatchInterval)) watch(pool.done(), total);  // throws: ~ParallelFor cancels
    pool.join();
    if (watch) watch(pool.done(), total);
}

}  // namespace inspector
