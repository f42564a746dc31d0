// A persistent pool: creating threads per search would cost more than a
// single-query scan of a small collection.
//
// The calling thread always works on its own job too. That makes run() safe
// to call from many threads at once, from inside a task, and even in a child
// process after fork() (where the workers no longer exist): in the worst case
// the caller simply executes every task itself.
#pragma once

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdlib>
#include <condition_variable>
#include <cstddef>
#include <deque>
#include <exception>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

#if defined(__x86_64__) || defined(_M_X64)
#include <immintrin.h>
#endif

namespace chroma {

// A hint to the core that this thread is busy-waiting.
inline void spin_pause() {
#if defined(__x86_64__) || defined(_M_X64)
    _mm_pause();
#elif defined(__aarch64__)
    asm volatile("yield");
#endif
}

// Waits up to kSpinWait for ready() to turn true without sleeping; returns
// ready(). Waking a sleeping thread costs tens of microseconds on a VM, as
// much as a whole small search, and a search may run the pool twice.
constexpr std::chrono::microseconds kSpinWait{50};
template <class Ready>
inline bool spin_until(const Ready& ready) {
    const auto until = std::chrono::steady_clock::now() + kSpinWait;
    for (unsigned i = 1;; ++i) {
        if (ready()) return true;
        spin_pause();
        if (i % 64 == 0 && std::chrono::steady_clock::now() > until) return ready();
    }
}

class ThreadPool {
   public:
    // Never destroyed: joining workers during interpreter shutdown is a
    // deadlock hazard, and the OS reclaims idle threads at exit anyway.
    static ThreadPool& instance() {
        static ThreadPool* pool = new ThreadPool(configured_threads() - 1);
        return *pool;
    }

    // CHROMA_NUM_THREADS (the variable of the num_threads setting), when a
    // positive integer at first use, caps every parallel part of the core:
    // for a process that must leave cores free, or must build graph indexes
    // reproducibly (one thread: the insertion order no longer depends on
    // timing). Otherwise one thread per hardware thread.
    static size_t configured_threads() {
        if (const char* value = std::getenv("CHROMA_NUM_THREADS")) {
            char* end = nullptr;
            const long n = std::strtol(value, &end, 10);
            if (end != value && *end == '\0' && n > 0) return size_t(std::min<long>(n, 1024));
        }
        return hardware_threads();
    }

    static size_t hardware_threads() {
        const unsigned n = std::thread::hardware_concurrency();
        return n == 0 ? 1 : n;
    }

    // Threads that can work on one job at the same time (workers + caller).
    size_t concurrency() const { return workers_.size() + 1; }

    // Calls fn(task, slot) for task in [0, ntasks) and returns when all calls
    // are done. `slot` identifies the participating thread within this call
    // (0 = caller, always < max_slots(ntasks)), so per-thread state can be
    // indexed by it. Tasks are handed out in increasing order, so each slot
    // sees its tasks in increasing order. Handing out more tasks than threads
    // keeps a call fast when a worker is descheduled (oversubscribed
    // machine): the others simply take its share.
    // The first exception thrown by a task is rethrown here.
    size_t max_slots(size_t ntasks) const { return std::min(ntasks, concurrency()); }

    void run(size_t ntasks, const std::function<void(size_t, size_t)>& fn) {
        if (ntasks == 0) return;
        if (ntasks == 1 || workers_.empty()) {
            for (size_t t = 0; t < ntasks; ++t) fn(t, 0);
            return;
        }
        Job job(fn, ntasks);
        {
            std::lock_guard<std::mutex> lk(mu_);
            jobs_.push_back(&job);
            posted_.fetch_add(1);
        }
        if (ntasks - 1 >= workers_.size())
            wake_.notify_all();
        else
            for (size_t i = 0; i + 1 < ntasks; ++i) wake_.notify_one();
        work_on(job, 0);
        std::unique_lock<std::mutex> lk(mu_);
        unlink(&job);  // no worker can take it up from here on
        lk.unlock();
        // Workers may still hold a pointer to `job` (on our stack) until they
        // drop their reference, which is their last touch of it.
        auto finished = [&] { return job.done.load() == ntasks && job.refs.load() == 0; };
        spin_until(finished);
        lk.lock();
        done_.wait(lk, finished);
        if (job.error) std::rethrow_exception(job.error);
    }

   private:
    struct Job {
        Job(const std::function<void(size_t, size_t)>& f, size_t n) : fn(f), ntasks(n) {}
        const std::function<void(size_t, size_t)>& fn;
        const size_t ntasks;
        std::atomic<size_t> next{0};
        size_t slots = 1;  // guarded by mu_; slot 0 is the caller
        std::atomic<size_t> done{0};
        std::atomic<size_t> refs{0};  // taken under mu_
        std::exception_ptr error;  // guarded by mu_
    };

    explicit ThreadPool(size_t nworkers) {
        for (size_t i = 0; i < nworkers; ++i) workers_.emplace_back([this] { loop(); });
    }

    void work_on(Job& job, size_t slot) {
        for (;;) {
            const size_t t = job.next.fetch_add(1);
            if (t >= job.ntasks) return;
            try {
                job.fn(t, slot);
            } catch (...) {
                std::lock_guard<std::mutex> lk(mu_);
                if (!job.error) job.error = std::current_exception();
            }
            job.done.fetch_add(1);
        }
    }

    void unlink(Job* job) {
        auto it = std::find(jobs_.begin(), jobs_.end(), job);
        if (it != jobs_.end()) jobs_.erase(it);
    }

    void loop() {
        std::unique_lock<std::mutex> lk(mu_);
        for (;;) {
            if (jobs_.empty()) {
                // Stay awake a little for the next job: searches come in runs.
                const size_t seen = posted_.load();
                lk.unlock();
                spin_until([&] { return posted_.load() != seen; });
                lk.lock();
            }
            wake_.wait(lk, [&] { return !jobs_.empty(); });
            Job* job = jobs_.front();
            if (job->next.load() >= job->ntasks || job->slots >= max_slots(job->ntasks)) {
                jobs_.pop_front();  // exhausted or fully staffed: stop offering it
                continue;
            }
            ++job->refs;
            const size_t slot = job->slots++;
            lk.unlock();
            work_on(*job, slot);
            lk.lock();
            unlink(job);
            // The last touch of the job: its owner may return as soon as it sees 0.
            if (job->refs.fetch_sub(1) == 1) done_.notify_all();
        }
    }

    std::mutex mu_;
    std::condition_variable wake_;
    std::condition_variable done_;
    std::deque<Job*> jobs_;
    std::atomic<size_t> posted_{0};  // jobs ever queued, for spinning workers
    std::vector<std::thread> workers_;
};

}  // namespace chroma
