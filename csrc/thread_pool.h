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
#include <cstdlib>
#include <condition_variable>
#include <cstddef>
#include <deque>
#include <exception>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace chroma {

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
        }
        if (ntasks - 1 >= workers_.size())
            wake_.notify_all();
        else
            for (size_t i = 0; i + 1 < ntasks; ++i) wake_.notify_one();
        work_on(job, 0);
        std::unique_lock<std::mutex> lk(mu_);
        unlink(&job);
        // Workers may still hold a pointer to `job` (on our stack) until they
        // drop their reference under the lock.
        done_.wait(lk, [&] { return job.done.load() == ntasks && job.refs == 0; });
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
        size_t refs = 0;  // guarded by mu_
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
            --job->refs;
            unlink(job);
            if (job->refs == 0) done_.notify_all();
        }
    }

    std::mutex mu_;
    std::condition_variable wake_;
    std::condition_variable done_;
    std::deque<Job*> jobs_;
    std::vector<std::thread> workers_;
};

}  // namespace chroma
