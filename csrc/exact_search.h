// Brute-force k-nearest-neighbour search over a row-major float32 table.
//
// The candidate rows are split into contiguous ranges (tasks); each task
// streams its range in cache-sized chunks and, for every chunk, runs all query
// groups over it while the chunk is hot in L2. Each thread keeps its own heaps
// (no sharing, no locks) and the results are merged at the end. A thread sees
// its rows in increasing order, which is what lets a plain "dist < worst"
// compare implement the lower-id tie break.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <vector>

#include "distances.h"
#include "thread_pool.h"
#include "topk.h"

namespace chroma {

// Rows per chunk: 256 x 128 dims x 4 B = 128 KiB, well inside L2, and long
// enough that per-chunk bookkeeping is noise.
constexpr size_t kChunkRows = 256;
// Below this many multiply-adds per task, waking a worker costs more than it saves.
constexpr size_t kMinWorkPerTask = size_t(1) << 21;

// Tasks per thread: a few, so that a thread that starts late (descheduled
// worker) does not hold up the whole call.
constexpr size_t kTasksPerThread = 4;

inline size_t plan_tasks(size_t nrows, size_t m, size_t d, int num_threads) {
    ThreadPool& pool = ThreadPool::instance();
    size_t threads = num_threads > 0 ? size_t(num_threads) : pool.concurrency();
    threads = std::min(threads, pool.concurrency());
    const size_t work = nrows * m * std::max<size_t>(d, 1);
    size_t tasks = std::min(threads * kTasksPerThread, std::max<size_t>(1, work / kMinWorkPerTask));
    if (tasks < threads * 2) tasks = std::min(tasks, threads);  // too little work to rebalance
    // Below the pool's size only as many tasks as threads: the pool lets one
    // thread join per task, so more tasks would use more threads than asked.
    if (threads < pool.concurrency()) tasks = std::min(tasks, threads);
    return std::min(tasks, std::max<size_t>(1, (nrows + kChunkRows - 1) / kChunkRows));
}

// Queries prepared once per call, shared read-only by all tasks.
struct PreparedQueries {
    const float* q = nullptr;  // m x d, row-major
    size_t m = 0, d = 0;
    bool vertical = false;
    size_t lanes = 0, groups = 0;
    std::vector<float> packed;  // groups x d x lanes, zero padded
    std::vector<float> scale;   // groups*lanes (cosine: 1/|q|, else 1)
    std::vector<uint32_t> valid;  // per group: lanes holding a real query

    PreparedQueries(const KernelTable& K, Metric metric, const float* queries, size_t m_,
                    size_t d_)
        : q(queries), m(m_), d(d_) {
        lanes = K.lanes;
        // Below ~3/4 of a lane group the idle lanes cost more than the
        // horizontal kernel's reductions.
        vertical = m * 4 >= lanes * 3;
        groups = (m + lanes - 1) / lanes;
        scale.assign(groups * lanes, 1.f);
        if (metric == Metric::Cosine) {
            std::vector<const float*> rows(m);
            for (size_t i = 0; i < m; ++i) rows[i] = q + i * d;
            if (m) K.inv_norms(rows.data(), m, d, scale.data());
        }
        if (!vertical) return;
        packed.assign(groups * d * lanes, 0.f);
        valid.assign(groups, 0);
        for (size_t i = 0; i < m; ++i) {
            const size_t g = i / lanes, l = i % lanes;
            float* dst = packed.data() + g * d * lanes + l;
            const float* src = q + i * d;
            for (size_t j = 0; j < d; ++j) dst[j * lanes] = src[j];
            valid[g] |= 1u << l;
        }
    }
};

// Per-task scratch, sized for one chunk.
struct ChunkScratch {
    std::vector<const float*> rows;
    std::vector<int64_t> ids;
    std::vector<float> xscale, out, panel;
    std::vector<uint32_t> mask;
    ChunkScratch(const KernelTable& K, size_t d, bool vertical)
        : rows(kChunkRows), ids(kChunkRows), xscale(kChunkRows), out(kChunkRows * K.lanes),
          panel(vertical ? (kChunkRows + K.tile_rows) * d : 0), mask(kChunkRows) {}

    // Resolves candidate positions [c, c + nr) to row pointers and ids.
    void load(const float* data, size_t d, const int64_t* cand, size_t c, size_t nr) {
        for (size_t r = 0; r < nr; ++r) {
            const int64_t id = cand ? cand[c + r] : int64_t(c + r);
            ids[r] = id;
            rows[r] = data + size_t(id) * d;
        }
    }
};

// Searches rows `cand[0..ncand)` (or all n rows when cand is null; cand must be
// sorted ascending without duplicates) and writes m x k results, k already
// clamped to <= ncand by the caller, nearest first.
inline void exact_search(const KernelTable& K, Metric metric, const float* data, size_t d,
                         const int64_t* cand, size_t ncand, const float* queries, size_t m,
                         size_t k, int num_threads, int64_t* out_id, float* out_dist) {
    if (m == 0 || k == 0 || ncand == 0) return;
    const PreparedQueries Q(K, metric, queries, m, d);
    const size_t ntasks = plan_tasks(ncand, m, d, num_threads);
    ThreadPool& pool = ThreadPool::instance();
    // One heap set per participating thread, not per task, so heaps warm up
    // once per thread and the merge stays small.
    std::vector<TopKSet> parts(pool.max_slots(ntasks));
    for (TopKSet& p : parts) p.init(m, Q.groups * Q.lanes, k);
    const bool cosine = metric == Metric::Cosine;

    auto task = [&](size_t t, size_t slot) {
        const size_t lo = ncand * t / ntasks, hi = ncand * (t + 1) / ntasks;
        TopKSet& top = parts[slot];
        ChunkScratch s(K, d, Q.vertical);
        for (size_t c = lo; c < hi; c += kChunkRows) {
            const size_t nr = std::min(kChunkRows, hi - c);
            s.load(data, d, cand, c, nr);
            if (cosine) K.inv_norms(s.rows.data(), nr, d, s.xscale.data());
            const float* xs = cosine ? s.xscale.data() : nullptr;
            if (Q.vertical) {
                pack_panel(s.rows.data(), nr, d, K.tile_rows, s.panel.data());
                for (size_t g = 0; g < Q.groups; ++g) {
                    const size_t base = g * Q.lanes;
                    K.vertical(metric, s.panel.data(), nr, d, Q.packed.data() + g * d * Q.lanes,
                               Q.scale.data() + base, xs, top.thr.data() + base, s.out.data(),
                               s.mask.data());
                    const uint32_t valid = Q.valid[g];
                    for (size_t r = 0; r < nr; ++r) {
                        uint32_t mk = s.mask[r] & valid;
                        while (mk) {
                            const unsigned l = lowest_set_bit(mk);
                            mk &= mk - 1;
                            top.push(base + l, s.out[r * Q.lanes + l], s.ids[r]);
                        }
                    }
                }
            } else {
                for (size_t i = 0; i < m; ++i) {
                    K.horizontal(metric, s.rows.data(), nr, d, queries + i * d, Q.scale[i], xs,
                                 s.out.data());
                    const float* o = s.out.data();
                    for (size_t r = 0; r < nr; ++r)
                        if (!(o[r] >= top.thr[i])) top.push(i, o[r], s.ids[r]);
                }
            }
        }
    };
    pool.run(ntasks, task);

    std::vector<std::pair<float, int64_t>> scratch;
    for (size_t i = 0; i < m; ++i) merge_topk(parts, i, k, scratch, out_id + i * k, out_dist + i * k);
}

// Full distance matrix out[i][j] = dist(queries[i], rows[j]) through the same
// kernels the search uses, so both report bit-identical values for a pair
// (given the same query count).
inline void pairwise_distances(const KernelTable& K, Metric metric, const float* queries,
                               size_t m, const float* data, size_t n, size_t d, int num_threads,
                               float* out) {
    if (m == 0 || n == 0) return;
    const PreparedQueries Q(K, metric, queries, m, d);
    const size_t ntasks = plan_tasks(n, m, d, num_threads);
    const bool cosine = metric == Metric::Cosine;
    auto task = [&](size_t t, size_t) {
        const size_t lo = n * t / ntasks, hi = n * (t + 1) / ntasks;
        ChunkScratch s(K, d, Q.vertical);
        std::vector<float> accept_all(Q.lanes, std::numeric_limits<float>::quiet_NaN());
        for (size_t c = lo; c < hi; c += kChunkRows) {
            const size_t nr = std::min(kChunkRows, hi - c);
            s.load(data, d, nullptr, c, nr);
            if (cosine) K.inv_norms(s.rows.data(), nr, d, s.xscale.data());
            const float* xs = cosine ? s.xscale.data() : nullptr;
            if (Q.vertical) {
                pack_panel(s.rows.data(), nr, d, K.tile_rows, s.panel.data());
                for (size_t g = 0; g < Q.groups; ++g) {
                    const size_t base = g * Q.lanes;
                    K.vertical(metric, s.panel.data(), nr, d, Q.packed.data() + g * d * Q.lanes,
                               Q.scale.data() + base, xs, accept_all.data(), s.out.data(),
                               s.mask.data());
                    const size_t lanes_here = std::min(Q.lanes, m - base);
                    for (size_t r = 0; r < nr; ++r)
                        for (size_t l = 0; l < lanes_here; ++l)
                            out[(base + l) * n + c + r] = s.out[r * Q.lanes + l];
                }
            } else {
                for (size_t i = 0; i < m; ++i)
                    K.horizontal(metric, s.rows.data(), nr, d, queries + i * d, Q.scale[i], xs,
                                 out + i * n + c);
            }
        }
    };
    ThreadPool::instance().run(ntasks, task);
}

}  // namespace chroma
