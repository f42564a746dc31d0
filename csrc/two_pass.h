// Exact top-k for a few queries in two passes over a FlatIndex.
//
// A single query is bound by memory bandwidth: the float table (4 B per value)
// cannot be read faster than numpy's gemv already does. Pass 1 therefore
// streams the int8 copy (quantized_table.h, 1 B per value) and derives for
// every row a guaranteed interval [LB, UB] around the distance that the float
// kernel itself would return (its rounding included). tau = k-th smallest UB
// seen so far; a row whose LB > tau cannot be in the top k. Pass 2 recomputes
// the survivors with the ordinary horizontal kernel, so distances are
// bit-identical to the plain path and the (distance, row) order picks the
// same k rows.
//
// Pass 1 arithmetic: the query is rounded to int16 (q = sigma*k + delta), so
// the code dot product K = sum k_j c_j is an exact integer and
//   q.x^ = s*sigma*K + s*sum(delta_j c_j),  |sum delta_j c_j| <= ||delta|| * 127 sqrt(d).
// Every float step of the bound adds at most a few ulps of the magnitudes
// involved; kEta (64 ulps of those magnitudes) covers them with a wide
// margin, and gammaF = 2 (d + 8) ulps covers the float kernel's own summation
// error (at most d + 6 roundings along any term's path).
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <limits>
#include <utility>
#include <vector>

#include "distances.h"
#include "exact_search.h"
#include "quantized_table.h"
#include "thread_pool.h"
#include "topk.h"

namespace chroma {

constexpr double kUlp = 1.0 / (1 << 24);
constexpr double kEta = 64 * kUlp;
constexpr double kTiny = 1e-30;  // absolute slack: subnormal underflow

struct QuantQuery {
    const float* q = nullptr;
    std::vector<int32_t> pairs;  // for tile_dots
    std::vector<int16_t> codes;  // the same values one by one, for row_dots
    float sigma = 0, qn2 = 0, qn = 0, edelta = 0;

    // False if the query is not finite or too large for float bounds (the
    // caller then takes the plain path).
    bool prepare(const float* query, size_t d, size_t npairs) {
        q = query;
        double maxabs = 0, n2 = 0;
        for (size_t j = 0; j < d; ++j) {
            if (!std::isfinite(query[j])) return false;
            maxabs = std::max(maxabs, std::fabs(double(query[j])));
            n2 += double(query[j]) * query[j];
        }
        if (maxabs > kQuantMaxAbs) return false;
        // |K| <= 127 * kmax * 2 npairs must fit int32 in every partial sum.
        const double kmax = std::min(32767.0, std::floor(2147483647.0 / (127.0 * 2 * npairs)));
        if (kmax < 1) return false;
        sigma = maxabs > 0 ? float(maxabs / kmax) : 0.f;
        pairs.assign(npairs, 0);
        codes.assign(2 * npairs, 0);
        double delta2 = 0;
        for (size_t j = 0; j < d; ++j) {
            double k = sigma > 0 ? std::nearbyint(query[j] / double(sigma)) : 0.0;
            k = std::min(kmax, std::max(-kmax, k));
            const double e = double(query[j]) - double(sigma) * k;
            delta2 += e * e;
            codes[j] = int16_t(k);
            const uint32_t bits = uint32_t(uint16_t(int16_t(k)));
            pairs[j / 2] |= int32_t(j & 1 ? bits << 16 : bits);
        }
        qn2 = float(n2);
        qn = float_up(std::sqrt(n2) * (1 + 1e-12));
        edelta = float_up(std::sqrt(delta2) * 127.0 * std::sqrt(double(2 * npairs)) * (1 + 1e-6));
        return true;
    }
};

// Per (thread slot, query) state of pass 1.
struct PassOneState {
    size_t k = 0;
    std::vector<float> ub;  // max-heap of the k smallest upper bounds
    float tau = std::numeric_limits<float>::infinity();
    float root = std::numeric_limits<float>::infinity();  // l2: sqrt of tau, inflated
    std::vector<std::pair<float, int64_t>> cand;          // (LB, row)

    void reset(size_t k_) {
        k = k_;
        ub.clear();
        cand.clear();
        tau = root = std::numeric_limits<float>::infinity();
    }

    void offer(float u, double gamma_f) {
        if (ub.size() < k) {
            ub.push_back(u);
            std::push_heap(ub.begin(), ub.end());
        } else if (u < ub.front()) {
            std::pop_heap(ub.begin(), ub.end());
            ub.back() = u;
            std::push_heap(ub.begin(), ub.end());
        } else {
            return;
        }
        if (ub.size() == k && ub.front() < tau) {
            tau = ub.front();
            root = float_up(std::sqrt((double(tau) + kTiny) * (1 + 2 * gamma_f)) * (1 + 1e-9));
        }
    }
};

// Bounds on the float kernel's distance to row `row`, computed in double from
// the pass-1 integer dot product K; rounded outward to float.
inline std::pair<float, float> row_bounds(bool l2, const QuantQuery& Q, float scale, float err,
                                          float norm2, int32_t K, double gamma_f) {
    const double s = scale, r = err, h = norm2;
    const double dot = s * double(Q.sigma) * double(K);
    double lb, ub;
    if (l2) {
        const double a2 = double(Q.qn2) + h - 2 * dot;
        const double e = kEta * (double(Q.qn2) + h + 2 * std::fabs(dot)) + 2 * s * Q.edelta + kTiny;
        const double alo = std::sqrt(std::max(0.0, a2 - e)) * (1 - 1e-12);
        const double ahi = std::sqrt(a2 + e) * (1 + 1e-12);
        const double lo = std::max(0.0, alo - r);
        lb = lo * lo * (1 - gamma_f) * (1 - 1e-12) - kTiny;
        ub = (ahi + r) * (ahi + r) * (1 + gamma_f) * (1 + 1e-12) + kTiny;
    } else {
        const double xn = std::sqrt(h) * (1 + 1e-6) + r;
        const double g = (Q.qn * r + s * Q.edelta + gamma_f * Q.qn * xn +
                          kEta * (1 + std::fabs(dot) + Q.qn * xn) + kTiny) *
                         (1 + 1e-9);
        lb = 1 - dot - g;
        ub = 1 - dot + g;
    }
    const float inf = std::numeric_limits<float>::infinity();
    const float flb = std::isnan(lb) ? -inf : float_down(lb);
    const float fub = std::isnan(ub) || ub > 1e37 ? inf : float_up(ub);
    return {flb, fub};
}

// Pass 1 over `nrows` rows whose integer dot products are in kbuf and whose
// scales, error bounds and code norms start at S, R, H; row i is recorded as
// candidate first_id + i; with live != ~0u (one tile) rows whose bit is unset
// are skipped. The vectorized pre-test drops the bulk; the few rows left get
// their bounds in double.
inline void pass_one_rows(const KernelTable& K, bool l2, const QuantQuery& Q, const int32_t* kbuf,
                          const float* S, const float* R, const float* H, int64_t first_id,
                          size_t nrows, uint32_t live, double gamma_f, PassOneState& st,
                          uint8_t* keep) {
    const PretestArgs args{l2,     Q.sigma,        Q.qn2,        Q.qn,   Q.edelta,
                           float(kEta), float(gamma_f), float(kTiny), st.tau, st.root};
    K.pretest(args, kbuf, S, R, H, nrows, keep);
    for (size_t i0 = 0; i0 < nrows; i0 += 8) {
        uint64_t w = 0;
        if (i0 + 8 <= nrows) std::memcpy(&w, keep + i0, 8);
        else std::memcpy(&w, keep + i0, nrows - i0);
        if (!w) continue;
        for (size_t i = i0; i < std::min(nrows, i0 + 8); ++i) {
            if (!keep[i] || (live != ~0u && !(live >> i & 1))) continue;
            const auto b = row_bounds(l2, Q, S[i], R[i], H[i], kbuf[i], gamma_f);
            st.offer(b.second, gamma_f);
            if (!(b.first > st.tau)) st.cand.emplace_back(b.first, first_id + int64_t(i));
        }
    }
}

// Pass 2 of one query: the exact distances of the pass-1 survivors `ids`
// (row_of(id) is the float row) and the k best of them by (distance,
// tie_of(id)), nearest first, written as tie ids. Returns how many (min(k,
// survivors)).
struct RerankScratch {
    std::vector<const float*> ptrs;
    std::vector<float> dist;
    std::vector<std::pair<float, int64_t>> scored;
};
template <class RowOf, class TieOf>
inline size_t rerank(const KernelTable& K, Metric metric, size_t d, const float* query,
                     const std::vector<int64_t>& ids, size_t k, const RowOf& row_of,
                     const TieOf& tie_of, RerankScratch& s, int64_t* out_id, float* out_dist) {
    s.ptrs.resize(ids.size());
    for (size_t j = 0; j < ids.size(); ++j) s.ptrs[j] = row_of(ids[j]);
    s.dist.resize(ids.size());
    K.horizontal(metric, s.ptrs.data(), ids.size(), d, query, 1.f, nullptr, s.dist.data());
    s.scored.clear();
    for (size_t j = 0; j < ids.size(); ++j) s.scored.emplace_back(s.dist[j], tie_of(ids[j]));
    const size_t kk = std::min(k, s.scored.size());
    std::partial_sort(s.scored.begin(), s.scored.begin() + kk, s.scored.end(),
                      [](const std::pair<float, int64_t>& a, const std::pair<float, int64_t>& b) {
                          return ranks_after(b.first, b.second, a.first, a.second);
                      });
    for (size_t j = 0; j < kk; ++j) {
        out_id[j] = s.scored[j].second;
        out_dist[j] = s.scored[j].first;
    }
    return kk;
}

// Searches rows `rows` (sorted, unique; all n rows if null) of `data`/`T` for
// the m queries (m small: the caller only comes here when the plain path would
// use the horizontal kernel). Returns false, doing nothing, if a query is not
// fit for the bounds. Output as exact_search: row ids, m x k.
inline bool two_pass_search(const KernelTable& K, Metric metric, const float* data, size_t d,
                            const QuantTable& T, size_t n, const int64_t* rows, size_t ncand,
                            const float* queries, size_t m, size_t k, int num_threads,
                            int64_t* out_id, float* out_dist,
                            std::vector<size_t>* reranked = nullptr) {
    const size_t npairs = T.npairs(), tb = T.tile_bytes();
    std::vector<QuantQuery> Q(m);
    for (size_t i = 0; i < m; ++i)
        if (!Q[i].prepare(queries + i * d, d, npairs)) return false;
    if (m == 0 || k == 0 || ncand == 0) return true;
    const bool l2 = metric == Metric::L2;
    const double gamma_f = 2.0 * double(d + 8) * kUlp;

    // Work units are tiles: (tile, mask of rows to scan in it).
    std::vector<std::pair<uint32_t, uint32_t>> units;
    const size_t ntiles = (n + kQTileRows - 1) / kQTileRows;
    if (rows) {
        for (size_t i = 0; i < ncand; ++i) {
            const uint32_t t = uint32_t(size_t(rows[i]) / kQTileRows);
            if (units.empty() || units.back().first != t) units.emplace_back(t, 0u);
            units.back().second |= 1u << (size_t(rows[i]) % kQTileRows);
        }
    }
    const size_t nunits = rows ? units.size() : ntiles;
    const size_t ntasks = plan_tasks(nunits * kQTileRows, m, d, num_threads);
    ThreadPool& pool = ThreadPool::instance();
    const size_t nslots = pool.max_slots(ntasks);
    std::vector<PassOneState> state(nslots * m);
    for (PassOneState& s : state) s.reset(k);

    constexpr size_t kChunkTiles = 16;
    auto task = [&](size_t t, size_t slot) {
        const size_t lo = nunits * t / ntasks, hi = nunits * (t + 1) / ntasks;
        std::vector<int32_t> kbuf(kChunkTiles * kQTileRows);
        std::vector<uint8_t> keep(kChunkTiles * kQTileRows);
        for (size_t u0 = lo; u0 < hi; u0 += kChunkTiles) {
            const size_t nu = std::min(kChunkTiles, hi - u0);
            for (size_t i = 0; i < m; ++i) {
                PassOneState& st = state[slot * m + i];
                if (rows) {
                    for (size_t u = 0; u < nu; ++u) {
                        const size_t tile = units[u0 + u].first;
                        const size_t first = tile * kQTileRows;
                        K.tile_dots(T.tiles() + tile * tb, 1, npairs, Q[i].pairs.data(), kbuf.data());
                        pass_one_rows(K, l2, Q[i], kbuf.data(), T.scale() + first, T.err() + first,
                                      T.norm2() + first, int64_t(first), std::min(kQTileRows, n - first),
                                      units[u0 + u].second, gamma_f, st, keep.data());
                    }
                } else {
                    K.tile_dots(T.tiles() + u0 * tb, nu, npairs, Q[i].pairs.data(), kbuf.data());
                    const size_t first = u0 * kQTileRows;
                    pass_one_rows(K, l2, Q[i], kbuf.data(), T.scale() + first, T.err() + first,
                                  T.norm2() + first, int64_t(first), std::min(nu * kQTileRows, n - first),
                                  ~0u, gamma_f, st, keep.data());
                }
            }
        }
    };
    pool.run(ntasks, task);

    // Pass 2: the final tau is the k-th smallest upper bound over all slots.
    std::vector<float> ubs;
    std::vector<int64_t> ids;
    RerankScratch rs;
    if (reranked) reranked->assign(m, 0);
    for (size_t i = 0; i < m; ++i) {
        ubs.clear();
        for (size_t s = 0; s < nslots; ++s) {
            const auto& h = state[s * m + i].ub;
            ubs.insert(ubs.end(), h.begin(), h.end());
        }
        float tau = std::numeric_limits<float>::infinity();
        if (ubs.size() >= k) {
            std::nth_element(ubs.begin(), ubs.begin() + (k - 1), ubs.end());
            tau = ubs[k - 1];
        }
        ids.clear();
        for (size_t s = 0; s < nslots; ++s)
            for (const auto& c : state[s * m + i].cand)
                if (!(c.first > tau)) ids.push_back(c.second);
        // k rows are kept (those of the k best upper bounds), so this writes k
        rerank(K, metric, d, queries + i * d, ids, k, [&](int64_t row) { return data + size_t(row) * d; },
               [](int64_t row) { return row; }, rs, out_id + i * k, out_dist + i * k);
        if (reranked) (*reranked)[i] = ids.size();
    }
    return true;
}

// Rows given one by one (a graph index's exact path): row i has its codes
// at codes[i] (row-major, quantize_row with pair stride 2), its scale, error
// bound and code norm at scale[i], err[i], norm2[i], its float vector at
// vecs[i] and its tie-break id (label) tie[i].
struct CodedRows {
    size_t n = 0;
    const int8_t* const* codes = nullptr;
    const float *scale = nullptr, *err = nullptr, *norm2 = nullptr;
    const float* const* vecs = nullptr;
    const int64_t* tie = nullptr;
};

struct RowsScratch {
    std::vector<QuantQuery> query;
    std::vector<PassOneState> state;
    std::vector<int32_t> kbuf;
    std::vector<uint8_t> keep;
    std::vector<int64_t> ids;
    RerankScratch rerank;
};

// Rows of codes per block of two_pass_rows: ~32 KiB, so a block read for the
// first query of a group is still in L1/L2 for the others.
inline size_t rows_per_block(size_t code_bytes) {
    return std::max(kQTileRows, (size_t(32768) / std::max<size_t>(code_bytes, 1)) / kQTileRows * kQTileRows);
}

// Two-pass search of the m queries (query i at queries[i]) over `rows` on the
// calling thread. For query i it writes the min(k, rows.n) nearest as tie
// ids (labels) and distances at out_id/out_dist + i * k, exactly what the
// float scan of the same rows in (distance, tie) order writes, and sets
// count[i] to their number; a query not fit for the bounds gets count[i] =
// -1 and nothing written (the caller scans it). The rows are read block by
// block, each block for all m queries, so a batch shares every row read.
// reranked, if given, receives per query the rows pass 2 recomputed.
inline void two_pass_rows(const KernelTable& K, Metric metric, size_t d, const CodedRows& rows,
                          const float* const* queries, size_t m, size_t k, RowsScratch& s,
                          int64_t* out_id, float* out_dist, long* count, size_t* reranked = nullptr) {
    const size_t npairs = (d + 1) / 2, kk = std::min(k, rows.n);
    const bool l2 = metric == Metric::L2;
    const double gamma_f = 2.0 * double(d + 8) * kUlp;
    if (s.query.size() < m) {
        s.query.resize(m);
        s.state.resize(m);
    }
    std::vector<size_t> fit;
    for (size_t i = 0; i < m; ++i) {
        count[i] = s.query[i].prepare(queries[i], d, npairs) ? 0 : -1;
        s.state[i].reset(kk);
        if (count[i] == 0 && kk) fit.push_back(i);
    }
    if (fit.empty()) return;
    const size_t lines = (2 * npairs + 63) / 64, block = rows_per_block(2 * npairs);
    s.kbuf.resize(block);
    s.keep.resize(block);
    auto prefetch = [&](size_t from, size_t to) {
        for (size_t r = from; r < std::min(to, rows.n); ++r)
            for (size_t l = 0; l < lines; ++l) __builtin_prefetch(rows.codes[r] + 64 * l);
    };
    prefetch(0, kQTileRows);
    // Blocks no longer than the rows before them: the pre-test of a block
    // uses the tau of the rows before it, which is loose at first.
    for (size_t b0 = 0, nr; b0 < rows.n; b0 += nr) {
        nr = std::min({block, rows.n - b0, std::max(kQTileRows, b0)});
        for (size_t j = 0; j < fit.size(); ++j) {
            const size_t i = fit[j];
            if (j == 0) {
                // The first query pulls the rows in, a few rows ahead of its kernel.
                for (size_t b = 0; b < nr; b += kQTileRows) {
                    prefetch(b0 + b + kQTileRows, b0 + b + 2 * kQTileRows);
                    K.row_dots(rows.codes + b0 + b, std::min(kQTileRows, nr - b), npairs,
                               s.query[i].codes.data(), s.kbuf.data() + b);
                }
            } else {
                K.row_dots(rows.codes + b0, nr, npairs, s.query[i].codes.data(), s.kbuf.data());
            }
            pass_one_rows(K, l2, s.query[i], s.kbuf.data(), rows.scale + b0, rows.err + b0,
                          rows.norm2 + b0, int64_t(b0), nr, ~0u, gamma_f, s.state[i], s.keep.data());
        }
    }
    for (size_t i : fit) {
        const PassOneState& st = s.state[i];
        s.ids.clear();
        for (const auto& c : st.cand)
            if (!(c.first > st.tau)) s.ids.push_back(c.second);
        count[i] = long(rerank(K, metric, d, queries[i], s.ids, kk, [&](int64_t r) { return rows.vecs[r]; },
                               [&](int64_t r) { return rows.tie[r]; }, s.rerank, out_id + i * k,
                               out_dist + i * k));
        if (reranked) reranked[i] = s.ids.size();
    }
}

}  // namespace chroma
