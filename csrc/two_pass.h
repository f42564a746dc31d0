// Exact top-k for a few queries in two passes.
//
// A single query is bound by memory bandwidth: the float table (4 B per value)
// cannot be read faster than numpy's gemv already does. Pass 1 therefore
// streams a compact integer copy of the rows (quantized_table.h) and derives
// for every row a guaranteed lower bound LB on the distance that the float
// kernel itself would return (its rounding included); a row whose LB exceeds
// tau, a distance that k rows are known to reach, cannot be in the top k.
// The few rows left are computed with the ordinary horizontal kernel, so
// distances are bit-identical to the plain path and the (distance, row) order
// picks the same k rows. Two forms:
//  * two_pass_search (FlatIndex): 4-bit codes, an eighth of the float bytes.
//    tau is an exact distance (the rows of smallest bound are computed
//    first), which keeps 4 bits enough.
//  * two_pass_rows (graph index): int8 codes beside each node; tau is the
//    k-th smallest upper bound, and the survivors are recomputed at the end.
//
// Pass 1 arithmetic: the query is rounded to integers (q = sigma*k + delta),
// so the code dot product K = sum k_j c_j is an exact integer and
//   q.x^ = s*sigma*K + s*sum(delta_j c_j),  |s*sum delta_j c_j| <= ||delta|| * ||x^||
// (edelta = ||delta||, h = ||x^||). Every float step of the bound adds at most a few
// ulps of the magnitudes involved; kEta (64 ulps of those magnitudes) covers
// them with a wide margin, and gammaF = 2 (d + 8) ulps covers the float
// kernel's own summation error (at most d + 6 roundings along any term's path).
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
    std::vector<int16_t> codes;  // `width` values: d, then zero padding
    float sigma = 0, qn2 = 0, qn = 0, edelta = 0;

    // Rounds the query to integers |k_j| <= kcap for row codes |c_j| <=
    // cmax. False if the query is not finite or too large for float bounds
    // (the caller then takes the plain path).
    bool prepare(const float* query, size_t d, size_t width, double kcap, double cmax) {
        q = query;
        double maxabs = 0, n2 = 0;
        for (size_t j = 0; j < d; ++j) {
            if (!std::isfinite(query[j])) return false;
            maxabs = std::max(maxabs, std::fabs(double(query[j])));
            n2 += double(query[j]) * query[j];
        }
        if (maxabs > kQuantMaxAbs) return false;
        // |K| <= cmax * kmax * width must fit int32 in every partial sum.
        const double kmax = std::min(kcap, std::floor(2147483647.0 / (cmax * double(width))));
        if (kmax < 1) return false;
        sigma = maxabs > 0 ? float(maxabs / kmax) : 0.f;
        codes.assign(width, 0);
        double delta2 = 0;
        for (size_t j = 0; j < d; ++j) {
            double k = sigma > 0 ? std::nearbyint(query[j] / double(sigma)) : 0.0;
            k = std::min(kmax, std::max(-kmax, k));
            const double e = double(query[j]) - double(sigma) * k;
            delta2 += e * e;
            codes[j] = int16_t(k);
        }
        qn2 = float(n2);
        qn = float_up(std::sqrt(n2) * (1 + 1e-12));
        edelta = float_up(std::sqrt(delta2) * (1 + 1e-6));
        return true;
    }
};

// An int8 query against 4-bit codes, packed for KernelTable::nibble_dots.
struct NibbleQuery {
    QuantQuery q;
    std::vector<int32_t> lo, hi;
    int32_t bias = 0;  // 8 * sum k_j: the codes are stored as c_j + 8

    bool prepare(const float* query, size_t d, size_t ngroups) {
        if (!q.prepare(query, d, ngroups * kNibbleGroup, 127, 7)) return false;
        lo.assign(ngroups, 0);
        hi.assign(ngroups, 0);
        int32_t sum = 0;
        for (size_t j = 0; j < ngroups * kNibbleGroup; ++j) {
            const int32_t k = q.codes[j];
            sum += k;
            const uint32_t byte = uint32_t(uint8_t(int8_t(k))) << (8 * ((j % kNibbleGroup) / 2));
            (j & 1 ? hi : lo)[j / kNibbleGroup] |= int32_t(byte);
        }
        bias = 8 * sum;
        return true;
    }
};

// For l2 the lower bounds are on distances, not squares: the limit they are
// held against is the sqrt of tau, inflated by the float kernel's error.
inline float l2_limit(float tau, double gamma_f) {
    return float_up(std::sqrt((double(tau) + kTiny) * (1 + 2 * gamma_f)) * (1 + 1e-9));
}

// What lower bounds are held against to rule out distances above tau.
inline float bound_limit(bool l2, float tau, double gamma_f) { return l2 ? l2_limit(tau, gamma_f) : tau; }

inline BoundArgs bound_args(bool l2, const QuantQuery& Q, double gamma_f) {
    return {l2, Q.sigma, Q.qn2, Q.qn, Q.edelta, float(kEta), float(gamma_f), float(kTiny)};
}

// Calls f(i) for every i < n with !(lb[i] > limit()), in increasing order;
// limit() is asked again every 256 rows, so it may tighten as f runs.
template <class Limit, class F>
inline void for_each_within(const KernelTable& K, const float* lb, size_t n, const Limit& limit, const F& f) {
    constexpr size_t kSpan = 256;
    uint32_t hit[kSpan];
    for (size_t i0 = 0; i0 < n; i0 += kSpan) {
        const size_t c = K.select_within(lb + i0, std::min(kSpan, n - i0), limit(), hit);
        for (size_t j = 0; j < c; ++j) f(i0 + hit[j]);
    }
}

// The `cap` rows of smallest lower bound offered so far, as a max-heap.
struct BoundPool {
    size_t cap = 0;
    std::vector<std::pair<float, size_t>> heap;  // (lower bound, position)

    float limit() const { return heap.size() < cap ? std::numeric_limits<float>::infinity() : heap.front().first; }
    void offer(float lb, size_t pos) {
        if (heap.size() < cap) {
            heap.emplace_back(lb, pos);
            std::push_heap(heap.begin(), heap.end());
        } else if (lb < heap.front().first) {
            std::pop_heap(heap.begin(), heap.end());
            heap.back() = {lb, pos};
            std::push_heap(heap.begin(), heap.end());
        }
    }
};

// Rows queued for their exact distance to one query, computed together.
struct ExactBatch {
    std::vector<const float*> ptrs;
    std::vector<int64_t> ids;
    std::vector<float> dist;

    void add(const float* row, int64_t id) {
        ptrs.push_back(row);
        ids.push_back(id);
    }
    // Computes the queued rows with the plain path's kernel, offers them to
    // query qi's heap in `top` and returns how many there were.
    size_t flush(const KernelTable& K, Metric metric, size_t d, const float* query, TopKSet& top, size_t qi) {
        const size_t c = ptrs.size();
        dist.resize(c);
        K.horizontal(metric, ptrs.data(), c, d, query, 1.f, nullptr, dist.data());
        for (size_t j = 0; j < c; ++j) top.push(qi, dist[j], ids[j]);
        ptrs.clear();
        ids.clear();
        return c;
    }
};

// Positions of one two_pass_search block held at once: the lower bounds of a
// block (4 B per row and query) stay in L2 for its second pass.
constexpr size_t kBoundBlockRows = size_t(1) << 18;

// Searches rows `rows` (sorted, unique; all n rows if null) of `data`/`T` for
// the m queries (m small: the caller only comes here when the plain path would
// use the horizontal kernel). Returns false, doing nothing, if a query is not
// fit for the bounds. Output as exact_search: row ids, m x k. computed, if
// given, receives per query the rows whose distance was computed exactly.
//
// The rows go in blocks, each in three steps:
//  1. (in parallel) stream the block's 4-bit codes, keep every row's lower
//     bound, and per thread the few rows of smallest bound;
//  2. compute those few exactly, which puts tau near its final value before
//     any other row is looked at;
//  3. (in parallel) compute every row whose bound is still within tau.
// A streaming tau (the k-th best of the rows seen so far) lets through about
// three times as many rows on Gaussian data, and each costs a float row read
// from a random place.
inline bool two_pass_search(const KernelTable& K, Metric metric, const float* data, size_t d,
                            const QuantTable& T, size_t n, const int64_t* rows, size_t ncand,
                            const float* queries, size_t m, size_t k, int num_threads,
                            int64_t* out_id, float* out_dist,
                            std::vector<size_t>* computed = nullptr) {
    const size_t ngroups = T.ngroups(), tb = T.tile_bytes();
    std::vector<NibbleQuery> Q(m);
    for (size_t i = 0; i < m; ++i)
        if (!Q[i].prepare(queries + i * d, d, ngroups)) return false;
    if (computed) computed->assign(m, 0);
    if (m == 0 || k == 0 || ncand == 0) return true;
    const bool l2 = metric == Metric::L2;
    const double gamma_f = 2.0 * double(d + 8) * kUlp;
    const float inf = std::numeric_limits<float>::infinity();

    // Work units are tiles: (tile, mask of rows to scan in it); position p
    // of a block is row p % 16 of its unit p / 16.
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
    auto tile_of = [&](size_t u) { return rows ? size_t(units[u].first) : u; };

    const size_t block_units = kBoundBlockRows / kQTileRows;
    const size_t pool_cap = k + 16;
    // m x block positions. Up to a megabyte is kept across calls, so a
    // search does not page-fault a fresh buffer in; the reference is local so
    // the workers reach the caller's buffer, not their own thread's.
    constexpr size_t kKeptBounds = size_t(1) << 18;
    thread_local std::vector<float> kept_bounds;
    std::vector<float> call_bounds;
    const size_t nbounds = m * std::min(nunits, block_units) * kQTileRows;
    std::vector<float>& lbs = nbounds <= kKeptBounds ? kept_bounds : call_bounds;
    lbs.resize(nbounds);
    ThreadPool& pool = ThreadPool::instance();
    const size_t max_slots = pool.concurrency();
    // Per thread slot: the best rows it computed (per query), its batch and counts.
    std::vector<TopKSet> best(max_slots);
    for (TopKSet& b : best) b.init(m, m, k);
    std::vector<ExactBatch> batch(max_slots);
    std::vector<size_t> counted(max_slots * m, 0);
    // A heap's worst is NaN until it holds k rows (and while NaN distances
    // are among them): then it rules nothing out.
    auto worst_of = [&](const TopKSet& top, size_t i) { return std::isnan(top.thr[i]) ? inf : top.thr[i]; };
    std::vector<float> tau_after_step2(m);

    for (size_t b0 = 0; b0 < nunits; b0 += block_units) {
        const size_t bu = std::min(block_units, nunits - b0), npos = bu * kQTileRows;
        auto row_at = [&](size_t pos) { return tile_of(b0 + pos / kQTileRows) * kQTileRows + pos % kQTileRows; };
        const size_t ntasks = plan_tasks(npos, m, d, num_threads);
        std::vector<BoundPool> pools(pool.max_slots(ntasks) * m);
        for (BoundPool& p : pools) p.cap = pool_cap;

        // Step 1.
        constexpr size_t kChunkTiles = 16;
        pool.run(ntasks, [&](size_t t, size_t slot) {
            const size_t lo = bu * t / ntasks, hi = bu * (t + 1) / ntasks;
            int32_t kbuf[kChunkTiles * kQTileRows];
            for (size_t u0 = lo; u0 < hi; u0 += kChunkTiles) {
                const size_t nu = std::min(kChunkTiles, hi - u0);
                for (size_t i = 0; i < m; ++i) {
                    const NibbleQuery& q = Q[i];
                    float* lb = lbs.data() + i * npos + u0 * kQTileRows;
                    // Lower bounds of `count` consecutive tiles from `tile` (inf past the table's end).
                    auto tile_bounds = [&](size_t tile, size_t count, int32_t* kb, float* out) {
                        const size_t first = tile * kQTileRows, len = std::min(count * kQTileRows, n - first);
                        K.nibble_dots(T.tiles() + tile * tb, count, ngroups, q.lo.data(), q.hi.data(), q.bias, kb);
                        K.lower_bounds(bound_args(l2, q.q, gamma_f), kb, T.scale() + first, T.err() + first,
                                       T.norm() + first, len, out);
                        std::fill(out + len, out + count * kQTileRows, inf);
                    };
                    if (rows) {
                        for (size_t u = 0; u < nu; ++u) {
                            float* out = lb + u * kQTileRows;
                            tile_bounds(units[b0 + u0 + u].first, 1, kbuf + u * kQTileRows, out);
                            for (size_t r = 0; r < kQTileRows; ++r)
                                if (!(units[b0 + u0 + u].second >> r & 1)) out[r] = inf;
                        }
                    } else {
                        tile_bounds(b0 + u0, nu, kbuf, lb);  // a full table's units are consecutive tiles
                    }
                    BoundPool& p = pools[slot * m + i];
                    for_each_within(K, lb, nu * kQTileRows, [&] { return p.limit(); }, [&](size_t j) {
                        if (lb[j] < p.limit()) p.offer(lb[j], u0 * kQTileRows + j);
                    });
                }
            }
        });

        // Step 2.
        std::vector<std::pair<float, size_t>> cand;
        for (size_t i = 0; i < m; ++i) {
            float* lb = lbs.data() + i * npos;
            cand.clear();
            for (size_t p = i; p < pools.size(); p += m)
                cand.insert(cand.end(), pools[p].heap.begin(), pools[p].heap.end());
            if (cand.size() > pool_cap) {
                std::nth_element(cand.begin(), cand.begin() + pool_cap, cand.end());
                cand.resize(pool_cap);
            }
            for (const auto& c : cand) {
                batch[0].add(data + row_at(c.second) * d, int64_t(row_at(c.second)));
                lb[c.second] = inf;  // computed now, not again in step 3
            }
            counted[i] += batch[0].flush(K, metric, d, queries + i * d, best[0], i);
            tau_after_step2[i] = worst_of(best[0], i);
        }

        // Step 3. Every thread's limit starts from step 2's tau and tightens
        // as its own heap improves.
        pool.run(ntasks, [&](size_t t, size_t slot) {
            const size_t lo = npos * t / ntasks, hi = npos * (t + 1) / ntasks;
            ExactBatch& eb = batch[slot];
            for (size_t i = 0; i < m; ++i) {
                const float* lb = lbs.data() + i * npos;
                auto flush = [&] { counted[slot * m + i] += eb.flush(K, metric, d, queries + i * d, best[slot], i); };
                auto limit = [&] {
                    return bound_limit(l2, std::min(tau_after_step2[i], worst_of(best[slot], i)), gamma_f);
                };
                for_each_within(K, lb + lo, hi - lo, limit, [&](size_t j) {
                    const size_t pos = lo + j;
                    if (lb[pos] == inf) return;  // not a row, or computed in step 2
                    eb.add(data + row_at(pos) * d, int64_t(row_at(pos)));
                    if (eb.ptrs.size() >= 16) flush();
                });
                if (!eb.ptrs.empty()) flush();
            }
        });
    }

    std::vector<std::pair<float, int64_t>> scratch;
    for (size_t i = 0; i < m; ++i) merge_topk(best, i, k, scratch, out_id + i * k, out_dist + i * k);
    if (computed)
        for (size_t slot = 0; slot < max_slots; ++slot)
            for (size_t i = 0; i < m; ++i) (*computed)[i] += counted[slot * m + i];
    return true;
}

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
            root = l2_limit(tau, gamma_f);
        }
    }
};

// Bounds on the float kernel's distance to row `row`, computed in double from
// the pass-1 integer dot product K; rounded outward to float.
inline std::pair<float, float> row_bounds(bool l2, const QuantQuery& Q, float scale, float err,
                                          float norm, int32_t K, double gamma_f) {
    const double s = scale, r = err, hn = norm, h = hn * hn;
    const double dot = s * double(Q.sigma) * double(K);
    double lb, ub;
    if (l2) {
        const double a2 = double(Q.qn2) + h - 2 * dot;
        const double e = kEta * (double(Q.qn2) + h + 2 * std::fabs(dot)) + 2 * hn * Q.edelta + kTiny;
        const double alo = std::sqrt(std::max(0.0, a2 - e)) * (1 - 1e-12);
        const double ahi = std::sqrt(a2 + e) * (1 + 1e-12);
        const double lo = std::max(0.0, alo - r);
        lb = lo * lo * (1 - gamma_f) * (1 - 1e-12) - kTiny;
        ub = (ahi + r) * (ahi + r) * (1 + gamma_f) * (1 + 1e-12) + kTiny;
    } else {
        const double xn = hn + r;
        const double g = (Q.qn * r + hn * Q.edelta + gamma_f * Q.qn * xn +
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
// scales, error bounds and code norms start at S, R, N; row i is recorded as
// candidate first_id + i. The vectorized lower bounds drop the bulk; the few
// rows left get their bounds in double.
inline void pass_one_rows(const KernelTable& K, bool l2, const QuantQuery& Q, const int32_t* kbuf,
                          const float* S, const float* R, const float* N, int64_t first_id,
                          size_t nrows, double gamma_f, PassOneState& st, float* lb) {
    K.lower_bounds(bound_args(l2, Q, gamma_f), kbuf, S, R, N, nrows, lb);
    for_each_within(K, lb, nrows, [&] { return l2 ? st.root : st.tau; }, [&](size_t i) {
        const auto b = row_bounds(l2, Q, S[i], R[i], N[i], kbuf[i], gamma_f);
        st.offer(b.second, gamma_f);
        if (!(b.first > st.tau)) st.cand.emplace_back(b.first, first_id + int64_t(i));
    });
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

// Rows given one by one (a graph index's exact path): row i has its codes
// at codes[i] (row-major, as quantize_row writes them), its scale, error
// bound and code norm at scale[i], err[i], norm[i], its float vector at
// vecs[i] and its tie-break id (label) tie[i].
struct CodedRows {
    size_t n = 0;
    const int8_t* const* codes = nullptr;
    const float *scale = nullptr, *err = nullptr, *norm = nullptr;
    const float* const* vecs = nullptr;
    const int64_t* tie = nullptr;
};

struct RowsScratch {
    std::vector<QuantQuery> query;
    std::vector<PassOneState> state;
    std::vector<int32_t> kbuf;
    std::vector<float> lb;
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
        count[i] = s.query[i].prepare(queries[i], d, 2 * npairs, 32767, 127) ? 0 : -1;
        s.state[i].reset(kk);
        if (count[i] == 0 && kk) fit.push_back(i);
    }
    if (fit.empty()) return;
    const size_t lines = (2 * npairs + 63) / 64, block = rows_per_block(2 * npairs);
    s.kbuf.resize(block);
    s.lb.resize(block);
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
                          rows.norm + b0, int64_t(b0), nr, gamma_f, s.state[i], s.lb.data());
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
