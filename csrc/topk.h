// Per-query bounded max-heaps of (distance, id).
//
// Order is lexicographic on (distance, id) with NaN ranked after every number,
// so results are deterministic and ties go to the lower id. The heap root is
// the current worst kept candidate; its distance is published in `thr` so the
// kernels can reject most candidates with one vector compare before any heap
// work. thr is NaN until the heap is full, which the kernels read as "accept".
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <utility>
#include <vector>

namespace chroma {

// True if (da, ia) ranks strictly after (db, ib).
inline bool ranks_after(float da, int64_t ia, float db, int64_t ib) {
    const bool na = std::isnan(da), nb = std::isnan(db);
    if (na != nb) return na;
    if (!na && da != db) return da > db;
    return ia > ib;
}

struct TopKSet {
    size_t k = 0;
    std::vector<float> dist;   // m x k heaps
    std::vector<int64_t> id;   // m x k heaps
    std::vector<uint32_t> count;
    std::vector<float> thr;    // per query (padded to the lane group size)

    void init(size_t m, size_t m_padded, size_t k_) {
        k = k_;
        dist.assign(m * k, 0.f);
        id.assign(m * k, 0);
        count.assign(m, 0);
        thr.assign(m_padded, std::numeric_limits<float>::quiet_NaN());
    }

    void push(size_t q, float d, int64_t i) {
        float* hd = dist.data() + q * k;
        int64_t* hi = id.data() + q * k;
        uint32_t& c = count[q];
        size_t pos;
        if (c < k) {
            pos = c++;
            while (pos > 0) {
                const size_t parent = (pos - 1) / 2;
                if (!ranks_after(d, i, hd[parent], hi[parent])) break;
                hd[pos] = hd[parent];
                hi[pos] = hi[parent];
                pos = parent;
            }
            hd[pos] = d;
            hi[pos] = i;
            if (c == k) thr[q] = hd[0];
            return;
        }
        if (!ranks_after(hd[0], hi[0], d, i)) return;
        pos = 0;
        for (;;) {
            size_t child = 2 * pos + 1;
            if (child >= k) break;
            if (child + 1 < k && ranks_after(hd[child + 1], hi[child + 1], hd[child], hi[child]))
                ++child;
            if (!ranks_after(hd[child], hi[child], d, i)) break;
            hd[pos] = hd[child];
            hi[pos] = hi[child];
            pos = child;
        }
        hd[pos] = d;
        hi[pos] = i;
        thr[q] = hd[0];
    }
};

// Merges the partial results of several workers for query q into the k best,
// nearest first.
inline void merge_topk(const std::vector<TopKSet>& parts, size_t q, size_t k,
                       std::vector<std::pair<float, int64_t>>& scratch, int64_t* out_id,
                       float* out_dist) {
    scratch.clear();
    for (const TopKSet& p : parts) {
        const size_t c = p.count[q];
        for (size_t j = 0; j < c; ++j) scratch.emplace_back(p.dist[q * p.k + j], p.id[q * p.k + j]);
    }
    const size_t kk = std::min(k, scratch.size());
    auto before = [](const std::pair<float, int64_t>& a, const std::pair<float, int64_t>& b) {
        return ranks_after(b.first, b.second, a.first, a.second);
    };
    std::partial_sort(scratch.begin(), scratch.begin() + kk, scratch.end(), before);
    for (size_t j = 0; j < kk; ++j) {
        out_id[j] = scratch[j].second;
        out_dist[j] = scratch[j].first;
    }
}

}  // namespace chroma
