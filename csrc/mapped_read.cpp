#include "mapped_read.hpp"

#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <cstdint>
#include <csetjmp>
#include <csignal>
#include <mutex>

namespace inspector::detail {
namespace {

// The innermost guard of this thread. Touched by run_guarded before any guarded read, so its
// thread-local storage exists before the signal handler reads it.
thread_local sigjmp_buf* t_guard = nullptr;

struct sigaction g_previous {};
std::once_flag g_installed;

void on_sigbus(int sig, siginfo_t* info, void* context) {
    if (t_guard != nullptr) siglongjmp(*t_guard, 1);
    // Not a guarded read: behave as if this handler were not there.
    if ((g_previous.sa_flags & SA_SIGINFO) != 0 && g_previous.sa_sigaction != nullptr) {
        g_previous.sa_sigaction(sig, info, context);
        return;
    }
    if (g_previous.sa_handler != SIG_DFL && g_previous.sa_handler != SIG_IGN) {
        g_previous.sa_handler(sig);
        return;
    }
    std::signal(sig, SIG_DFL);
    std::raise(sig);
}

void install() {
    struct sigaction action {};
    action.sa_sigaction = on_sigbus;
    action.sa_flags = SA_SIGINFO | SA_ONSTACK;
    sigemptyset(&action.sa_mask);
    sigaction(SIGBUS, &action, &g_previous);
}

}  // namespace

bool run_guarded(void (*fn)(void*), void* ctx) {
    std::call_once(g_installed, install);
    sigjmp_buf* const outer = t_guard;
    sigjmp_buf here;
    if (sigsetjmp(here, 1) != 0) {  // 1: the handler's blocked SIGBUS is unblocked on return
        t_guard = outer;
        return false;
    }
    t_guard = &here;
    fn(ctx);
    t_guard = outer;
    return true;
}

}  // namespace inspector::detail

namespace inspector {

void release_mapped_pages(const void* begin, const void* end, const void* map_begin,
                          const void* map_end) noexcept {
    constexpr std::uintptr_t kMapGroup = 2 * 1024 * 1024;  // see the header
    static const auto page = static_cast<std::uintptr_t>(sysconf(_SC_PAGESIZE));
    const auto down = [](std::uintptr_t a, std::uintptr_t to) { return a / to * to; };
    const auto up = [&](std::uintptr_t a, std::uintptr_t to) { return down(a + to - 1, to); };
    const auto addr = [](const void* p) { return reinterpret_cast<std::uintptr_t>(p); };
    const std::uintptr_t first = std::max(down(addr(begin), kMapGroup), down(addr(map_begin), page));
    const std::uintptr_t last = std::min(up(addr(end), kMapGroup), up(addr(map_end), page));
    if (last > first) madvise(reinterpret_cast<void*>(first), last - first, MADV_DONTNEED);
}

}  // namespace inspector
