// HNSW: a hierarchical navigable small-world graph (Malkov & Yashunin,
// "Efficient and robust approximate nearest neighbor search using
// Hierarchical Navigable Small World graphs", 2016), written for this core.
//
// Layout. Nodes live in fixed-size blocks inside chunks of kChunkNodes blocks;
// a chunk is never moved, so the index grows without a rebuild and without
// stopping concurrent searches. One block holds, contiguously:
//   header (32 B) | level-0 list: count + M0 ids (uint32) | padding | vector
// so that expanding a node touches its links and, a few lines later, the
// vectors it points to. Upper-level lists (count + M ids per level) are a
// separate small allocation per node, as only ~1/M of nodes have any. Before
// its blocks a chunk packs its nodes' labels and flags. The int8 copies of the
// vectors (for exact search, below) are arrays of their own per chunk, made by
// the first exact search that takes two passes and kept current from then on:
// an index that never answers such a search does not pay their memory.
//
// Distances. A node's unvisited neighbours are gathered first and their
// distances computed in one call of the horizontal SIMD kernel
// (distances.h), which reads the query once per four rows. Cosine stores unit
// vectors and walks with the ip kernel (distance 1 - dot).
//
// Concurrency. Searches never lock nodes: link lists are read and written
// with atomic 32-bit loads/stores (plain moves on x86), and a node becomes
// visible to results only after it is fully linked (its `hidden` flag is
// cleared last). Inserts of new nodes run in parallel with each other and
// with searches (shared `mu_`); each list change holds that node's striped
// lock. Changing what a live label means (update in place, delete) takes
// `mu_` exclusively, so a search never returns a half-updated vector.
// Deleted nodes stay in the graph as waypoints (hidden from results) and
// their slots are given to later inserts.
//
// Filtering. An AllowList (bitset over the label range, or sorted labels)
// is tested per node during the level-0 walk. Nodes outside it are still
// walked through, and the walk stops once it holds a number of allowed
// results that shrinks with the selectivity (filtered_ef), so it visits
// about as many nodes whatever the filter; a walk that still holds fewer
// than k (an almost disconnected allowed set) is answered by exact search.
//
// Exact search. The planner (use_exact) sends small candidate sets, and
// larger ones for batches of queries, to exact search over the allowed
// nodes: two passes (two_pass.h) over the int8 copies, then the float
// vectors of the few rows that can still be in the top k, so the answer is
// the float scan's. A batch reads each block of rows once for a group of
// queries.
#pragma once

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cmath>
#include <cstddef>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstdio>
#include <cstring>
#include <limits>
#include <memory>
#include <mutex>
#include <shared_mutex>
#include <stdexcept>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include <fcntl.h>
#include <unistd.h>

#include "distances.h"
#include "quantized_table.h"
#include "thread_pool.h"
#include "topk.h"
#include "two_pass.h"

namespace chroma {

// A set of labels, built in O(n) from an array: a bitset over [min, max]
// when that range is at most ~64x the count, else sorted labels.
class AllowList {
   public:
    AllowList(const int64_t* labels, size_t n) {
        if (n == 0) return;
        int64_t lo = labels[0], hi = labels[0];
        for (size_t i = 1; i < n; ++i) {
            lo = std::min(lo, labels[i]);
            hi = std::max(hi, labels[i]);
        }
        const uint64_t range = uint64_t(hi) - uint64_t(lo) + 1;  // 0 only for the full int64 range
        if (range != 0 && range <= 64 * uint64_t(n) + 4096) {
            dense_ = true;
            base_ = lo;
            nbits_ = range;
            bits_.assign(size_t((range + 63) / 64), 0);
            // Bits gather in a register while labels stay in one word (sorted
            // input): a read-modify-write of memory per label would wait
            // for the previous store to the same word every time.
            size_t word = 0;
            uint64_t acc = 0;
            for (size_t i = 0; i < n; ++i) {
                const uint64_t o = uint64_t(labels[i]) - uint64_t(lo);
                if (size_t(o >> 6) != word) {
                    bits_[word] |= acc;
                    word = size_t(o >> 6);
                    acc = 0;
                }
                acc |= uint64_t(1) << (o & 63);
            }
            bits_[word] |= acc;
            for (uint64_t w : bits_) count_ += size_t(__builtin_popcountll(w));
        } else {
            sorted_.assign(labels, labels + n);
            std::sort(sorted_.begin(), sorted_.end());
            sorted_.erase(std::unique(sorted_.begin(), sorted_.end()), sorted_.end());
            count_ = sorted_.size();
        }
    }

    // Distinct labels in the list.
    size_t size() const { return count_; }

    // Without a branch on the label in the bitset form (filters are random
    // to the branch predictor).
    bool contains(int64_t label) const {
        if (dense_) {
            const uint64_t o = uint64_t(label) - uint64_t(base_);
            const bool in = o < nbits_;
            return in & bool((bits_[in ? size_t(o >> 6) : 0] >> (o & 63)) & 1);
        }
        return std::binary_search(sorted_.begin(), sorted_.end(), label);
    }

    template <class F>
    void for_each(F&& f) const {
        if (!dense_) {
            for (int64_t v : sorted_) f(v);
            return;
        }
        for (size_t w = 0; w < bits_.size(); ++w)
            for (uint64_t b = bits_[w]; b; b &= b - 1)
                f(int64_t(uint64_t(base_) + w * 64 + unsigned(__builtin_ctzll(b))));
    }

   private:
    bool dense_ = false;
    int64_t base_ = 0;
    uint64_t nbits_ = 0;
    size_t count_ = 0;
    std::vector<uint64_t> bits_;
    std::vector<int64_t> sorted_;
};

// A saved index that cannot be loaded: truncated, corrupted, of another
// format version, or not an index file at all.
struct IndexFileError : std::runtime_error {
    using std::runtime_error::runtime_error;
};

// An index file that cannot be read or written at all (OS error).
struct IndexIOError : std::runtime_error {
    using std::runtime_error::runtime_error;
};

// 64-bit checksum over 8-byte words. Each step is a bijection of the state
// for a fixed word and of the word for a fixed state, so any change confined
// to one word (any number of flipped bits in it) always changes the result.
// Fed in pieces, so that a file is checksummed as it is written.
class Checksum {
   public:
    explicit Checksum(uint64_t seed = 0x243f6a8885a308d3ull) : h_(seed) {}
    // Whole words only: n is a multiple of 8.
    void words(const char* p, size_t n) {
        for (size_t i = 0; i + 8 <= n; i += 8) {
            uint64_t w;
            std::memcpy(&w, p + i, 8);
            h_ = (h_ ^ w) * kMul;
            h_ ^= h_ >> 29;
        }
        bytes_ += n;
    }
    // The last piece, of any length.
    uint64_t finish(const char* p, size_t n) {
        const size_t whole = n & ~size_t(7);
        words(p, whole);
        uint64_t tail = 0;
        std::memcpy(&tail, p + whole, n - whole);
        bytes_ += n - whole;
        const uint64_t h = (h_ ^ tail ^ (uint64_t(bytes_) << 56)) * kMul;
        return h ^ (h >> 32);
    }

   private:
    static constexpr uint64_t kMul = 0x9fb21c651e98df25ull;  // odd
    uint64_t h_;
    size_t bytes_ = 0;
};

inline uint64_t checksum(const char* p, size_t n, uint64_t h = 0x243f6a8885a308d3ull) {
    return Checksum(h).finish(p, n);
}

// Default ef for searches: measured to give recall@10 >= 0.95 on both
// benchmark sets (benchmarks/bench_hnsw.py; docs/results.md "HNSW").
constexpr size_t kDefaultEfSearch = 64;

class HnswIndex {
   public:
    // How a search is answered: chosen by the planner, or forced (tests,
    // benchmarks); Scan is exact search reading the float vectors only.
    enum class Plan { Auto = -1, Graph = 0, Exact = 1, Scan = 2 };

    // A filtered walk goes on until it holds this many allowed results (of
    // ncand allowed among live nodes): kFilterVisits * ef * s for
    // selectivity s, so that it visits about kFilterVisits * ef nodes
    // (an allowed result per 1/s nodes), but at least max(k, ef / 4) and at
    // most ef. Holding ef allowed results, as an unfiltered walk holds ef,
    // over-explores: recall@10 1.000 at 10% and 4x the unfiltered latency.
    // bench_hnsw.py measured recall@10 >= 0.99 with this rule from 5% to 50%
    // on both of its sets (kFilterVisits 3: >= 0.994; 2.5: >= 0.991).
    static size_t filtered_ef(size_t ef, size_t k, size_t ncand, size_t live) {
        const double s = live ? std::min(1.0, double(ncand) / double(live)) : 1.0;
        return std::min(ef, std::max({k, ef / 4, size_t(std::ceil(kFilterVisits * double(ef) * s))}));
    }
    static constexpr double kFilterVisits = 3;

    HnswIndex(size_t dim, Metric metric, size_t M, size_t ef_construction, size_t ef_search)
        : dim_(dim),
          metric_(metric),
          walk_metric_(metric == Metric::Cosine ? Metric::IP : metric),
          M_(M),
          M0_(2 * M),
          ef_construction_(std::max(ef_construction, M)),
          ef_search_(ef_search),
          level_mult_(1.0 / std::log(double(std::max<size_t>(M, 2)))) {
        if (dim == 0) throw std::invalid_argument("dim must be positive");
        if (M < 2 || M > 512) throw std::invalid_argument("M must be in [2, 512], got " + std::to_string(M));
        if (ef_search == 0) throw std::invalid_argument("ef_search must be positive");
        vec_off_ = align_up(kHeader + 4 * (1 + M0_), 32);
        block_ = align_up(vec_off_ + 4 * dim_, 64);
        prefetch_lines_ = std::min<size_t>(kPrefetchLines, (4 * dim_ + 63) / 64);
        chunks_.reset(static_cast<std::atomic<char*>*>(std::calloc(kMaxChunks, sizeof(std::atomic<char*>))));
        if (!chunks_) throw std::bad_alloc();
        code_chunks_.reset(static_cast<std::atomic<int8_t*>*>(std::calloc(kMaxChunks, sizeof(std::atomic<int8_t*>))));
        if (!code_chunks_) throw std::bad_alloc();
    }

    ~HnswIndex() {
        const uint32_t n = count_.load();
        for (uint32_t id = 0; id < n; ++id) delete[] head(id).upper;
        for (size_t c = 0; c < kMaxChunks; ++c) {
            char* p = chunks_.get()[c].load();
            if (!p) break;
            std::free(p);
            std::free(code_chunks_.get()[c].load());
        }
    }

    HnswIndex(const HnswIndex&) = delete;
    HnswIndex& operator=(const HnswIndex&) = delete;

    size_t dim() const { return dim_; }
    Metric metric() const { return metric_; }
    size_t M() const { return M_; }
    size_t ef_construction() const { return ef_construction_; }
    size_t ef_search() const { return ef_search_.load(); }
    void set_ef_search(size_t ef) {
        if (ef == 0) throw std::invalid_argument("ef_search must be positive");
        ef_search_.store(ef);
    }
    // Live (searchable) labels.
    size_t size() const { return live_.load(); }
    // Slots ever allocated (live, deleted awaiting reuse, or being inserted).
    size_t slots() const { return count_.load(); }
    // Whether the int8 copies of the vectors exist (see codes()).
    bool has_codes() const { return codes_on_.load(); }

    bool contains(int64_t label) const {
        std::shared_lock<std::shared_mutex> lk(label_mu_);
        return label_to_id_.count(label) != 0;
    }

    std::vector<int64_t> labels() const {
        std::shared_lock<std::shared_mutex> lk(label_mu_);
        std::vector<int64_t> out;
        out.reserve(label_to_id_.size());
        for (const auto& kv : label_to_id_) out.push_back(kv.first);
        std::sort(out.begin(), out.end());
        return out;
    }

    // Inserts n vectors; a label already present has its vector replaced in
    // place and its links rebuilt; within one call the last occurrence of a
    // label wins. New nodes take the slots of deleted ones first.
    void add(const KernelTable& K, const int64_t* labels, const float* vectors, size_t n,
             int num_threads) {
        std::vector<std::pair<uint32_t, size_t>> fresh, updates;
        {
            std::unique_lock<std::shared_mutex> lk(label_mu_);
            for (size_t i = 0; i < n; ++i) {
                auto it = label_to_id_.find(labels[i]);
                if (it != label_to_id_.end()) {
                    updates.emplace_back(it->second, i);
                    continue;
                }
                const uint32_t id = claim_slot(labels[i]);
                label_to_id_.emplace(labels[i], id);
                fresh.emplace_back(id, i);
            }
        }
        {
            std::shared_lock<std::shared_mutex> lk(mu_);
            parallel(fresh.size(), num_threads, [&](size_t j, Scratch& s) {
                const uint32_t id = fresh[j].first;
                store_vector(id, vectors + fresh[j].second * dim_);
                link(K, id, s);
                hidden(id).store(0, std::memory_order_release);
                live_.fetch_add(1);
            });
            relink_orphans(K, num_threads);
        }
        if (updates.empty()) return;
        // Last occurrence wins: keep one update per node, the latest row.
        std::unordered_map<uint32_t, size_t> latest;
        for (const auto& u : updates) latest[u.first] = u.second;
        std::vector<std::pair<uint32_t, size_t>> todo(latest.begin(), latest.end());
        std::unique_lock<std::shared_mutex> lk(mu_);
        parallel(todo.size(), num_threads, [&](size_t j, Scratch& s) {
            store_vector(todo[j].first, vectors + todo[j].second * dim_);
            link(K, todo[j].first, s);
        });
        relink_orphans(K, num_threads);
    }

    // Hides the labels from every later search and frees their slots for
    // reuse; unknown labels are ignored.
    void remove(const int64_t* labels, size_t n) {
        std::unique_lock<std::shared_mutex> lk(mu_);
        std::unique_lock<std::shared_mutex> lk2(label_mu_);
        for (size_t i = 0; i < n; ++i) {
            auto it = label_to_id_.find(labels[i]);
            if (it == label_to_id_.end()) continue;
            hidden(it->second).store(1);
            free_.push_back(it->second);
            label_to_id_.erase(it);
            live_.fetch_sub(1);
        }
    }

    // k nearest live labels per query (restricted to `allow` if given).
    // Writes m x k labels/distances, nearest first; count[i] is how many of
    // query i's k are filled: min(k, candidates) unless the index changes
    // during the call. ef is raised to k if smaller.
    void search(const KernelTable& K, const float* queries, size_t m, size_t k,
                const AllowList* allow, size_t ef, int num_threads, Plan plan,
                int64_t* out_labels, float* out_dist, size_t* out_count,
                size_t* reranked = nullptr) const {
        std::vector<float> normalized;
        if (metric_ == Metric::Cosine) {
            normalized.resize(m * dim_);
            for (size_t i = 0; i < m; ++i) normalize(normalized.data() + i * dim_, queries + i * dim_);
            queries = normalized.data();
        }
        std::shared_lock<std::shared_mutex> lk(mu_);
        const size_t live = live_.load();
        const size_t expected = std::min(k, allow ? std::min(allow->size(), live) : live);
        ef = std::max(ef, k);
        const size_t ncand = allow ? std::min(allow->size(), live) : live;
        const size_t walk_ef = allow ? filtered_ef(ef, k, ncand, live) : ef;
        // Queries of an exact search go in groups that share each pass over the rows.
        const size_t threads = std::min(thread_limit(num_threads), m);
        const size_t group = threads ? std::min(kExactGroup, (m + threads - 1) / threads) : 1;
        if (reranked) std::fill(reranked, reranked + m, size_t(0));
        const bool exact = plan == Plan::Exact || plan == Plan::Scan ||
                           (plan == Plan::Auto && use_exact(ncand, live, walk_ef, group, m));
        if (exact && plan != Plan::Scan && use_two_pass(ncand) && !codes_on_.load(std::memory_order_acquire)) {
            lk.unlock();  // making them takes mu_ exclusively
            make_codes();
            lk.lock();
        }
        Candidates cand;
        std::once_flag cand_once;
        auto candidates = [&]() -> const Candidates& {
            std::call_once(cand_once, [&] {
                std::vector<uint32_t> hits;
                gather_candidates(allow, cand, hits);
            });
            return cand;
        };
        if (exact) {
            const Candidates& c = candidates();
            parallel((m + group - 1) / group, num_threads, [&](size_t g, Scratch& s) {
                const size_t i0 = g * group, n = std::min(group, m - i0);
                search_exact(K, c, queries + i0 * dim_, n, k, plan != Plan::Scan, s, out_labels + i0 * k,
                             out_dist + i0 * k, out_count + i0, reranked ? reranked + i0 : nullptr);
            });
            return;
        }
        parallel(m, num_threads, [&](size_t i, Scratch& s) {
            const float* q = queries + i * dim_;
            int64_t* ol = out_labels + i * k;
            float* od = out_dist + i * k;
            const size_t got = walk(K, q, k, walk_ef, allow, s, ol, od);
            if (got >= expected)
                out_count[i] = got;
            else
                search_exact(K, candidates(), q, 1, k, true, s, ol, od, out_count + i,
                             reranked ? reranked + i : nullptr);
        });
    }

    // Planner: exact search when it is expected to be faster than the walk,
    // for m queries in groups of `group`. Costs are in units of one row of
    // the two-pass scan in a full group (int8 codes, ~0.04 ns a dimension
    // here). A walk holding walk_ef allowed results visits about walk_ef / s
    // nodes (s = ncand / live), a visit costing kVisitBase + kVisitDims / d
    // rows (its memory waits do not grow with d as a row does). A scan costs
    // a query ncand * (1 + kRowMiss / group): a group shares the cache
    // misses of reading each row. Gathering the candidates costs the call
    // a test of every slot, or a label lookup per allowed label (kLookupSlots
    // slots) when that is fewer, at kSlotDims / d rows a slot.
    bool use_exact(size_t ncand, size_t live, size_t walk_ef, size_t group, size_t m) const {
        if (ncand <= kExactRows) return true;
        const double d = double(dim_), s = double(ncand) / double(std::max<size_t>(live, 1));
        const double slots = double(std::min(ncand * kLookupSlots, live));
        const double scan = double(ncand) * (1 + kRowMiss / double(group)) + slots * kSlotDims / d / double(m);
        const double walk = double(walk_ef) / s * (kVisitBase + kVisitDims / d);
        return scan <= walk;
    }
    // Measured with bench_hnsw.py's sets (100k x 128, 50k x 384; one thread):
    // a scan row in a full group costs 4.9 ns / 13.6 ns, alone (one query)
    // ~4-5x that; a slot test ~1.7 ns; a walk visit ~0.5 us / 0.8 us (from
    // filtered walks at ef 64, 5% to 50%). Single queries then switch to the
    // walk above ~3% of 100k, batches between 15% and 20% on both sets, about
    // where the benchmark's forced paths cross ("us graph", "us exact").
    static constexpr double kRowMiss = 4, kSlotDims = 48, kVisitBase = 35, kVisitDims = 9000;
    static constexpr size_t kExactRows = 1024;
    static constexpr size_t kExactGroup = 16;   // queries sharing one pass over the candidates
    static constexpr size_t kLookupSlots = 32;  // slots tested in the time of one label lookup
    // While the float rows fit in half an L2 (1 MiB) they are cheap to read,
    // and the two-pass search's fixed cost per query (rounding the query,
    // bounds of the first rows, the rerank; ~3 us) does not pay (measured:
    // a tie at 1,024 rows of 128 dims, 4x faster at 2,048 rows of 384).
    bool use_two_pass(size_t ncand) const { return dim_ >= 16 && ncand * dim_ >= (size_t(1) << 18); }

    // File format, version 1 (native little-endian): FileHeader, then the
    // payload: per slot label (i64), hidden (u32), level (i32); per slot the
    // level-0 list (1 + M0 u32); per slot the vector (dim f32); the upper
    // lists of every node with level > 0, in slot order; the free slots.
    // The header carries the payload's checksum and its own.
    static constexpr char kMagic[8] = {'C', 'H', 'R', 'H', 'N', 'S', 'W', '\0'};
    static constexpr uint32_t kVersion = 1;
    struct FileHeader {
        char magic[8];
        uint32_t version, byte_order;
        uint64_t dim;
        uint32_t metric, M;
        uint64_t ef_construction, ef_search, slots, live, entry, nfree, upper_words;
        uint64_t payload_bytes, payload_sum, header_sum;
    };

    // Writes the index to `path` atomically: a temporary file beside it,
    // flushed to disk, then renamed over `path`. Waits for running writes.
    void save(const std::string& path) const {
        std::unique_lock<std::shared_mutex> lk(mu_);
        std::shared_lock<std::shared_mutex> lk2(label_mu_);
        const uint32_t n = count_.load();
        FileHeader h{};
        std::memcpy(h.magic, kMagic, 8);
        h.version = kVersion;
        h.byte_order = 0x01020304;
        h.dim = dim_;
        h.metric = uint32_t(metric_);
        h.M = uint32_t(M_);
        h.ef_construction = ef_construction_;
        h.ef_search = ef_search_.load();
        h.slots = n;
        h.live = live_.load();
        h.entry = entry_.load();
        h.nfree = free_.size();
        for (uint32_t id = 0; id < n; ++id) h.upper_words += size_t(head(id).level) * (1 + M_);
        h.payload_bytes = payload_size(n, dim_, M0_, h.upper_words, h.nfree);
        // Streamed: a payload built in memory first would double the index's memory while saving.
        AtomicFile out(path, sizeof(h));
        for (uint32_t id = 0; id < n; ++id) out.put(&label(id), 8);
        for (uint32_t id = 0; id < n; ++id) {
            const uint32_t v = hidden(id).load();
            out.put(&v, 4);
        }
        for (uint32_t id = 0; id < n; ++id) out.put(&head(id).level, 4);
        for (uint32_t id = 0; id < n; ++id) out.put(list(id, 0), 4 * (1 + M0_));
        for (uint32_t id = 0; id < n; ++id) out.put(vec(id), 4 * dim_);
        for (uint32_t id = 0; id < n; ++id)
            if (head(id).level > 0) out.put(head(id).upper, 4 * size_t(head(id).level) * (1 + M_));
        out.put(free_.data(), 4 * free_.size());
        h.payload_sum = out.payload_checksum();
        h.header_sum = checksum(reinterpret_cast<const char*>(&h), offsetof(FileHeader, header_sum));
        out.commit(&h, sizeof(h));
    }

    // Reads a file written by save() in one read and checks it completely
    // (checksums, then every size, id, level and count against the others)
    // before building anything; a bad file raises IndexFileError.
    static std::unique_ptr<HnswIndex> load(const std::string& path) {
        std::vector<char> file = read_file(path);
        auto bad = [&path](const std::string& why) {
            return IndexFileError("'" + path + "' is not a valid chroma HNSW index file: " + why);
        };
        FileHeader h;
        if (file.size() < sizeof(h)) throw bad("too short for its header (" + std::to_string(file.size()) + " bytes)");
        std::memcpy(&h, file.data(), sizeof(h));
        if (std::memcmp(h.magic, kMagic, 8) != 0) throw bad("wrong magic bytes (not an index file)");
        if (h.header_sum != checksum(file.data(), offsetof(FileHeader, header_sum)))
            throw bad("header checksum mismatch (corrupted)");
        if (h.version != kVersion)
            throw bad("format version " + std::to_string(h.version) + ", this build reads " + std::to_string(kVersion));
        if (h.byte_order != 0x01020304) throw bad("written on a machine of another byte order");
        if (h.dim == 0 || h.dim > (1u << 20) || h.metric > 2 || h.M < 2 || h.M > 512 ||
            h.ef_construction == 0 || h.ef_construction > (1u << 24) || h.ef_search == 0 ||
            h.ef_search > (1u << 24) || h.slots >= (size_t(1) << 31) || h.nfree > h.slots ||
            h.live > h.slots || h.upper_words > h.slots * 31 * (1 + h.M))
            throw bad("header fields out of range");
        const size_t M0 = 2 * size_t(h.M);
        if (h.payload_bytes != payload_size(h.slots, h.dim, M0, h.upper_words, h.nfree) ||
            file.size() != sizeof(h) + h.payload_bytes)
            throw bad("size " + std::to_string(file.size()) + " does not match its header (truncated?)");
        const char* p = file.data() + sizeof(h);
        if (h.payload_sum != checksum(p, h.payload_bytes)) throw bad("data checksum mismatch (corrupted)");

        const size_t n = h.slots;
        const char* labels = p;
        const char* hiddens = labels + 8 * n;
        const char* levels = hiddens + 4 * n;
        const char* lists = levels + 4 * n;
        const char* vectors = lists + 4 * (1 + M0) * n;
        const char* uppers = vectors + 4 * h.dim * n;
        const char* frees = uppers + 4 * h.upper_words;
        auto u32 = [](const char* at, size_t i) {
            uint32_t v;
            std::memcpy(&v, at + 4 * i, 4);
            return v;
        };
        auto check_list = [&](const char* at, size_t cap) {
            const uint32_t c = u32(at, 0);
            if (c > cap) throw bad("a link list is longer than M allows");
            for (uint32_t j = 1; j <= c; ++j)
                if (u32(at, j) >= n) throw bad("a link points past the last node");
        };
        size_t upper_words = 0, visible_count = 0;
        for (size_t id = 0; id < n; ++id) {
            const int32_t level = int32_t(u32(levels, id));
            if (level < 0 || level > 30) throw bad("a node level is out of range");
            if (u32(hiddens, id) > 1) throw bad("a node flag is out of range");
            visible_count += u32(hiddens, id) == 0;
            check_list(lists + 4 * (1 + M0) * id, M0);
            for (int32_t l = 0; l < level; ++l) {
                if (upper_words + (1 + h.M) > h.upper_words) throw bad("upper link lists do not add up");
                check_list(uppers + 4 * upper_words, h.M);
                upper_words += 1 + h.M;
            }
        }
        if (upper_words != h.upper_words) throw bad("upper link lists do not add up");
        if (visible_count != h.live || h.live + h.nfree != n) throw bad("node counts do not add up");
        if (n == 0 ? h.entry != kNoEntry
                   : (uint32_t(h.entry) >= n || int32_t(h.entry >> 32) != int32_t(u32(levels, uint32_t(h.entry)))))
            throw bad("the entry point is not a node of its level");

        auto index = std::make_unique<HnswIndex>(h.dim, Metric(h.metric), h.M, h.ef_construction, h.ef_search);
        HnswIndex& x = *index;
        std::vector<char> freed(n, 0);
        for (size_t i = 0; i < h.nfree; ++i) {
            const uint32_t id = u32(frees, i);
            if (id >= n || freed[id] || u32(hiddens, id) == 0) throw bad("the free list is inconsistent");
            freed[id] = 1;
            x.free_.push_back(id);
        }
        x.label_to_id_.reserve(h.live);
        upper_words = 0;
        for (uint32_t id = 0; id < n; ++id) {
            if (id % kChunkNodes == 0) {
                char* c = static_cast<char*>(std::aligned_alloc(64, x.chunk_bytes()));
                if (!c) throw std::bad_alloc();
                x.chunks_.get()[id >> kChunkShift].store(c);
            }
            Header& hd = x.head(id);
            hd.level = int32_t(u32(levels, id));
            hd.upper = nullptr;
            hd.in_links = 0;
            x.count_.store(id + 1);  // the destructor frees what is set up so far
            std::memcpy(&x.label(id), labels + 8 * size_t(id), 8);
            x.hidden(id).store(u32(hiddens, id));
            std::memcpy(x.list(id, 0), lists + 4 * (1 + M0) * id, 4 * (1 + M0));
            std::memcpy(x.vec(id), vectors + 4 * h.dim * id, 4 * h.dim);
            if (hd.level > 0) {
                const size_t words = size_t(hd.level) * (1 + h.M);
                hd.upper = new uint32_t[words];
                std::memcpy(hd.upper, uppers + 4 * upper_words, 4 * words);
                upper_words += words;
            }
            if (!u32(hiddens, id) && !x.label_to_id_.emplace(x.label(id), id).second)
                throw bad("a label appears twice");
        }
        for (uint32_t id = 0; id < n; ++id) {
            const uint32_t* lst = x.list(id, 0);
            for (uint32_t j = 1; j <= lst[0]; ++j) ++x.head(lst[j]).in_links;
        }
        // The int8 copies are derived from the vectors, not stored in the file: the first
        // exact search of two passes makes them.
        x.live_.store(h.live);
        x.entry_.store(h.entry);
        return index;
    }

   private:
    static size_t payload_size(size_t n, size_t dim, size_t M0, size_t upper_words, size_t nfree) {
        return n * (8 + 4 + 4 + 4 * (1 + M0) + 4 * dim) + 4 * upper_words + 4 * nfree;
    }

    static std::vector<char> read_file(const std::string& path) {
        std::FILE* f = std::fopen(path.c_str(), "rb");
        if (!f) throw IndexIOError("cannot open '" + path + "': " + std::strerror(errno));
        std::vector<char> data;
        if (std::fseek(f, 0, SEEK_END) == 0) {
            const long size = std::ftell(f);
            if (size > 0) data.resize(size_t(size));
            std::rewind(f);
        }
        const size_t got = data.empty() ? 0 : std::fread(data.data(), 1, data.size(), f);
        std::fclose(f);
        data.resize(got);
        return data;
    }

    // A file written beside `path` and renamed over it once complete and flushed: the payload
    // streams through a buffer (checksummed on the way) after room for the header, which is
    // written last, when its checksums are known.
    class AtomicFile {
       public:
        AtomicFile(const std::string& path, size_t header_bytes)
            : path_(path), tmp_(path + ".tmp"), buf_(kBuffer) {
            fd_ = ::open(tmp_.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
            if (fd_ < 0) throw IndexIOError("cannot write '" + tmp_ + "': " + std::strerror(errno));
            if (::lseek(fd_, off_t(header_bytes), SEEK_SET) < 0) {
                const int err = errno;
                ::close(fd_);
                std::remove(tmp_.c_str());
                throw IndexIOError("cannot write '" + tmp_ + "': " + std::strerror(err));
            }
        }
        ~AtomicFile() {
            if (fd_ >= 0) {
                ::close(fd_);
                std::remove(tmp_.c_str());
            }
        }
        AtomicFile(const AtomicFile&) = delete;
        AtomicFile& operator=(const AtomicFile&) = delete;

        void put(const void* src, size_t bytes) {
            const char* p = static_cast<const char*>(src);
            while (bytes) {
                const size_t k = std::min(bytes, kBuffer - used_);
                std::memcpy(buf_.data() + used_, p, k);
                used_ += k;
                p += k;
                bytes -= k;
                if (used_ == kBuffer) {
                    sum_.words(buf_.data(), used_);
                    write_all(buf_.data(), used_);
                    used_ = 0;
                }
            }
        }
        // Writes what is buffered; the checksum of everything put.
        uint64_t payload_checksum() {
            const uint64_t sum = sum_.finish(buf_.data(), used_);
            write_all(buf_.data(), used_);
            used_ = 0;
            return sum;
        }
        // Writes the header at the start, flushes, and renames the file over `path`.
        void commit(const void* header, size_t bytes) {
            const char* p = static_cast<const char*>(header);
            for (off_t at = 0; bytes;) {
                const ssize_t k = ::pwrite(fd_, p, bytes, at);
                if (k < 0 && errno == EINTR) continue;
                if (k <= 0) fail(k < 0 ? errno : EIO);
                p += k;
                at += k;
                bytes -= size_t(k);
            }
            if (::fsync(fd_) != 0) fail(errno);
            const int fd = fd_;
            fd_ = -1;
            if (::close(fd) != 0 || std::rename(tmp_.c_str(), path_.c_str()) != 0) {
                const int err = errno;
                std::remove(tmp_.c_str());
                throw IndexIOError("cannot write '" + path_ + "': " + std::strerror(err));
            }
        }

       private:
        static constexpr size_t kBuffer = size_t(1) << 20;  // a multiple of the checksum's word
        void write_all(const char* p, size_t n) {
            while (n) {
                const ssize_t k = ::write(fd_, p, n);
                if (k < 0 && errno == EINTR) continue;
                if (k <= 0) fail(k < 0 ? errno : EIO);
                p += k;
                n -= size_t(k);
            }
        }
        [[noreturn]] void fail(int err) {
            throw IndexIOError("cannot write '" + path_ + "': " + std::strerror(err));
        }
        std::string path_, tmp_;
        std::vector<char> buf_;
        size_t used_ = 0;
        Checksum sum_;
        int fd_ = -1;
    };

    static constexpr size_t kHeader = 32;
    static constexpr size_t kScanGroup = 16;  // rows of exact search prefetched together
    // Lines of a neighbour's vector requested while the neighbours are
    // gathered; the hardware streams the rest of a longer row once started
    // (8 measured 1-5% more queries/s than 1 at 128 and 384 dims, 24 less).
    static constexpr size_t kPrefetchLines = 8;
    static constexpr unsigned kChunkShift = 12;
    static constexpr uint32_t kChunkNodes = 1u << kChunkShift;
    static constexpr size_t kMaxChunks = size_t(1) << 19;  // 2^31 nodes
    static constexpr size_t kStripes = 1024;
    static constexpr uint32_t kNone = 0xffffffffu;

    struct Header {
        int32_t level;
        uint32_t in_links;  // level-0 lists that hold this node (derived; recounted on load)
        uint32_t* upper;  // level * (1 + M) entries: per level >= 1, count then ids
        uint64_t reserved[2];
    };
    static_assert(sizeof(Header) == kHeader, "header layout");

    // Live nodes of an exact search, column by column (two_pass.h reads them so).
    struct Candidates {
        std::vector<const float*> vecs;
        std::vector<const int8_t*> codes;
        std::vector<int64_t> labels;
        std::vector<float> scale, err, norm;

        size_t size() const { return labels.size(); }
        void reserve(size_t n) {
            vecs.reserve(n);
            codes.reserve(n);
            labels.reserve(n);
            scale.reserve(n);
            err.reserve(n);
            norm.reserve(n);
        }
        void push(const float* v, const int8_t* c, int64_t label, const RowCode& rc) {
            vecs.push_back(v);
            codes.push_back(c);
            labels.push_back(label);
            scale.push_back(rc.scale);
            err.push_back(rc.err);
            norm.push_back(rc.norm);
        }
        CodedRows rows() const {
            CodedRows r;
            r.n = size();
            r.codes = codes.data();
            r.scale = scale.data();
            r.err = err.data();
            r.norm = norm.data();
            r.vecs = vecs.data();
            r.tie = labels.data();
            return r;
        }
    };

    // Per-thread working memory, pooled across calls.
    struct Scratch {
        std::vector<uint32_t> mark;
        uint32_t epoch = 0;
        uint32_t limit = 0;
        std::vector<std::pair<float, uint32_t>> cand, top, nb;
        std::vector<std::vector<std::pair<float, uint32_t>>> sel;  // per level, while linking
        std::vector<const float*> rows;
        std::vector<uint32_t> ids;
        std::vector<float> dist;
        RowsScratch two_pass;
        std::vector<const float*> qptrs;
        std::vector<long> got;

        void begin_visit(uint32_t n) {
            limit = n;
            if (mark.size() < n) {
                mark.assign(size_t(n) + n / 4 + 1024, 0);
                epoch = 0;
            }
            if (++epoch == 0) {
                std::fill(mark.begin(), mark.end(), 0);
                epoch = 1;
            }
        }
        // True the first time id is seen in this visit (ids past the limit
        // were inserted after the walk began and are skipped).
        bool first_visit(uint32_t id) {
            if (id >= limit || mark[id] == epoch) return false;
            mark[id] = epoch;
            return true;
        }
    };

    static size_t align_up(size_t v, size_t a) { return (v + a - 1) / a * a; }

    // A chunk starts with its nodes' labels and hidden flags, packed, so the
    // filter test of a node the walk does not compute a distance for reads
    // 12 bytes instead of a block's cache line.
    static constexpr size_t kChunkPrefix = kChunkNodes * (sizeof(int64_t) + sizeof(uint32_t) + sizeof(RowCode));
    char* chunk(uint32_t id) const {
        return chunks_.get()[id >> kChunkShift].load(std::memory_order_acquire);
    }
    // Then the blocks. The int8 copies of a chunk's vectors (quantized_table.h)
    // are an array beside it, row after row in slot order, so an exact search
    // over many allowed nodes reads them in ascending order from one compact
    // region; null until make_codes().
    size_t code_bytes() const { return 2 * ((dim_ + 1) / 2); }
    size_t chunk_bytes() const { return kChunkPrefix + kChunkNodes * block_; }
    int8_t* codes(uint32_t id) const {
        int8_t* c = code_chunks_.get()[id >> kChunkShift].load(std::memory_order_acquire);
        return c ? c + size_t(id & (kChunkNodes - 1)) * code_bytes() : nullptr;
    }
    char* node(uint32_t id) const {
        return chunk(id) + kChunkPrefix + size_t(id & (kChunkNodes - 1)) * block_;
    }
    // Called with label_mu_ held exclusively, or before the index is shared.
    void allocate_codes(size_t c) const {
        if (code_chunks_.get()[c].load()) return;
        auto* p = static_cast<int8_t*>(std::aligned_alloc(64, kChunkNodes * code_bytes()));
        if (!p) throw std::bad_alloc();
        code_chunks_.get()[c].store(p, std::memory_order_release);
    }
    // The int8 copies of every live vector; from then on every stored vector gets its own.
    // Exclusive (no search or write runs meanwhile), so it is made once, whole.
    void make_codes() const {
        std::unique_lock<std::shared_mutex> lk(mu_);
        std::unique_lock<std::shared_mutex> lk2(label_mu_);  // no chunk is added meanwhile
        if (codes_on_.load()) return;
        const uint32_t n = count_.load();
        for (size_t c = 0; c < kMaxChunks && chunks_.get()[c].load(); ++c) allocate_codes(c);
        const size_t tasks = std::max<size_t>(1, std::min<size_t>(n / 4096, 4 * ThreadPool::instance().concurrency()));
        ThreadPool::instance().run(tasks, [&](size_t t, size_t) {
            // a hidden slot is deleted (never a candidate) or not yet stored (store_vector makes its copy)
            for (size_t id = n * t / tasks; id < n * (t + 1) / tasks; ++id)
                if (visible(uint32_t(id))) store_codes(uint32_t(id));
        });
        codes_on_.store(true, std::memory_order_release);
    }
    int64_t& label(uint32_t id) const {
        return reinterpret_cast<int64_t*>(chunk(id))[id & (kChunkNodes - 1)];
    }
    // Deleted, or not yet fully linked: walked through, never returned.
    std::atomic<uint32_t>& hidden(uint32_t id) const {
        return reinterpret_cast<std::atomic<uint32_t>*>(chunk(id) + kChunkNodes * sizeof(int64_t))
            [id & (kChunkNodes - 1)];
    }
    bool visible(uint32_t id) const { return !hidden(id).load(std::memory_order_acquire); }
    Header& head(uint32_t id) const { return *reinterpret_cast<Header*>(node(id)); }
    float* vec(uint32_t id) const { return reinterpret_cast<float*>(node(id) + vec_off_); }
    RowCode& row_code(uint32_t id) const {
        return reinterpret_cast<RowCode*>(chunk(id) + kChunkNodes * (sizeof(int64_t) + sizeof(uint32_t)))
            [id & (kChunkNodes - 1)];
    }
    uint32_t* list(uint32_t id, int level) const {
        if (level == 0) return reinterpret_cast<uint32_t*>(node(id) + kHeader);
        return head(id).upper + size_t(level - 1) * (1 + M_);
    }
    size_t max_links(int level) const { return level == 0 ? M0_ : M_; }
    std::mutex& lock_of(uint32_t id) const { return stripes_[id % kStripes]; }

    static uint32_t load(const uint32_t* p) { return __atomic_load_n(p, __ATOMIC_RELAXED); }
    static void store(uint32_t* p, uint32_t v) { __atomic_store_n(p, v, __ATOMIC_RELAXED); }

    // The entry point and the top level change together, so they share one word.
    static uint64_t pack_entry(uint32_t id, int level) { return (uint64_t(uint32_t(level)) << 32) | id; }

    // Called with label_mu_ held exclusively.
    uint32_t claim_slot(int64_t lab) {
        uint32_t id;
        if (!free_.empty()) {
            id = free_.back();
            free_.pop_back();
        } else {
            id = count_.load();
            if (id == kNone - 1) throw std::length_error("HNSW index is full");
            const size_t c = id >> kChunkShift;
            if ((id & (kChunkNodes - 1)) == 0) {
                char* p = static_cast<char*>(std::aligned_alloc(64, chunk_bytes()));
                if (!p) throw std::bad_alloc();
                chunks_.get()[c].store(p, std::memory_order_release);
                if (codes_on_.load()) allocate_codes(c);
            }
            Header& h = head(id);
            h.level = random_level(lab);
            h.upper = h.level > 0 ? new uint32_t[size_t(h.level) * (1 + M_)]() : nullptr;
            h.in_links = 0;
            store(list(id, 0), 0);
            count_.store(id + 1, std::memory_order_release);
        }
        hidden(id).store(1);
        label(id) = lab;
        return id;
    }

    // Deterministic per label, so builds are reproducible whatever the thread order.
    int random_level(int64_t label) const {
        uint64_t z = uint64_t(label) + 0x9e3779b97f4a7c15ull;
        z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
        z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
        z ^= z >> 31;
        const double u = (double(z >> 11) + 1.0) * 0x1.0p-53;  // (0, 1]
        return std::min(int(-std::log(u) * level_mult_), 30);
    }

    void normalize(float* dst, const float* src) const {
        double s = 0;
        for (size_t j = 0; j < dim_; ++j) s += double(src[j]) * src[j];
        const double inv = s > 0 ? 1.0 / std::sqrt(s) : 0.0;
        for (size_t j = 0; j < dim_; ++j) dst[j] = float(src[j] * inv);
    }

    void store_vector(uint32_t id, const float* src) const {
        if (metric_ == Metric::Cosine)
            normalize(vec(id), src);
        else
            std::memcpy(vec(id), src, dim_ * sizeof(float));
        if (codes_on_.load(std::memory_order_acquire)) store_codes(id);
    }
    void store_codes(uint32_t id) const { row_code(id) = quantize_row(vec(id), dim_, codes(id)); }

    float distance(const KernelTable& K, const float* q, const float* x) const {
        float d;
        K.horizontal(walk_metric_, &x, 1, dim_, q, 1.f, nullptr, &d);
        return d;
    }

    // Runs fn(item, scratch) for item in [0, n) on up to num_threads threads
    // (0: all), each with its own pooled scratch.
    static size_t thread_limit(int num_threads) {
        const size_t all = ThreadPool::instance().concurrency();
        return num_threads > 0 ? std::min(size_t(num_threads), all) : all;
    }
    template <class F>
    void parallel(size_t n, int num_threads, F&& fn) const {
        if (n == 0) return;
        ThreadPool& pool = ThreadPool::instance();
        const size_t threads = std::min(thread_limit(num_threads), n);
        std::atomic<size_t> next{0};
        pool.run(threads, [&](size_t, size_t) {
            std::unique_ptr<Scratch> s = take_scratch();
            for (size_t i; (i = next.fetch_add(1)) < n;) fn(i, *s);
            give_scratch(std::move(s));
        });
    }

    std::unique_ptr<Scratch> take_scratch() const {
        std::lock_guard<std::mutex> lk(scratch_mu_);
        if (scratch_.empty()) {
            auto s = std::make_unique<Scratch>();
            const size_t cap = std::max<size_t>(M0_ + 1, 256);
            s->rows.resize(cap);
            s->ids.resize(cap);
            s->dist.resize(cap);
            return s;
        }
        std::unique_ptr<Scratch> s = std::move(scratch_.back());
        scratch_.pop_back();
        return s;
    }
    void give_scratch(std::unique_ptr<Scratch> s) const {
        std::lock_guard<std::mutex> lk(scratch_mu_);
        scratch_.push_back(std::move(s));
    }

    // Unvisited neighbours of `c` at `level` into s.ids/s.rows with their
    // distances to q in s.dist; returns how many.
    size_t expand(const KernelTable& K, const float* q, uint32_t c, int level, Scratch& s) const {
        const uint32_t* lst = list(c, level);
        const size_t cnt = std::min<size_t>(load(lst), max_links(level));
        size_t n = 0;
        for (size_t j = 1; j <= cnt; ++j) {
            const uint32_t id = load(lst + j);
            if (!s.first_visit(id)) continue;
            s.ids[n] = id;
            s.rows[n] = vec(id);
            for (size_t l = 0; l < prefetch_lines_; ++l)
                __builtin_prefetch(reinterpret_cast<const char*>(s.rows[n]) + 64 * l);
            ++n;
        }
        if (n) K.horizontal(walk_metric_, s.rows.data(), n, dim_, q, 1.f, nullptr, s.dist.data());
        return n;
    }

    // Greedy descent through levels (from, to]: moves to the nearest
    // neighbour while that improves.
    uint32_t descend(const KernelTable& K, const float* q, uint32_t cur, float& dcur, int from,
                     int to, Scratch& s) const {
        for (int level = from; level > to; --level) {
            for (bool moved = true; moved;) {
                moved = false;
                s.begin_visit(count_.load(std::memory_order_acquire));
                const size_t n = expand(K, q, cur, level, s);
                for (size_t i = 0; i < n; ++i)
                    if (s.dist[i] < dcur) {
                        dcur = s.dist[i];
                        cur = s.ids[i];
                        moved = true;
                    }
            }
        }
        return cur;
    }

    // Best-first search of one level from ep: leaves the (up to) ef nearest
    // accepted nodes in s.top, a max-heap on distance. Nodes that are not
    // accepted are walked through all the same.
    template <class Accept>
    void search_level(const KernelTable& K, const float* q, uint32_t ep, float dep, int level,
                      size_t ef, const Accept& accept, Scratch& s) const {
        auto& cand = s.cand;  // max-heap on -distance: nearest on top
        auto& top = s.top;
        cand.clear();
        top.clear();
        s.begin_visit(count_.load(std::memory_order_acquire));
        s.first_visit(ep);
        cand.emplace_back(-dep, ep);
        if (accept(ep)) top.emplace_back(dep, ep);
        float lower = top.empty() ? std::numeric_limits<float>::infinity() : top.front().first;
        while (!cand.empty()) {
            const auto [negd, c] = cand.front();
            if (-negd > lower && top.size() >= ef) break;
            std::pop_heap(cand.begin(), cand.end());
            cand.pop_back();
            // The next node to expand is most often the nearest candidate
            // left now: its links are requested while c is expanded.
            if (!cand.empty()) {
                const char* next = reinterpret_cast<const char*>(list(cand.front().second, level));
                for (size_t b = 0; b < 4 * (1 + max_links(level)); b += 64) __builtin_prefetch(next + b);
            }
            const size_t n = expand(K, q, c, level, s);
            for (size_t i = 0; i < n; ++i) {
                const float d = s.dist[i];
                if (!(top.size() < ef || d < lower)) continue;
                cand.emplace_back(-d, s.ids[i]);
                std::push_heap(cand.begin(), cand.end());
                if (!accept(s.ids[i])) continue;
                top.emplace_back(d, s.ids[i]);
                std::push_heap(top.begin(), top.end());
                if (top.size() > ef) {
                    std::pop_heap(top.begin(), top.end());
                    top.pop_back();
                }
                lower = top.front().first;
            }
        }
    }

    // The heuristic of the paper (its Algorithm 4): walking candidates from
    // the nearest, keep one only if it is nearer to the base than to every
    // one kept so far, which spreads the links in all directions. `c` is
    // sorted in place and replaced by at most m kept entries.
    void select_neighbors(const KernelTable& K, std::vector<std::pair<float, uint32_t>>& c,
                          size_t m, Scratch& s) const {
        std::sort(c.begin(), c.end());
        if (c.size() <= m) return;
        size_t kept = 0;
        for (size_t i = 0; i < c.size() && kept < m; ++i) {
            for (size_t j = 0; j < kept; ++j) s.rows[j] = vec(c[j].second);
            if (kept) K.horizontal(walk_metric_, s.rows.data(), kept, dim_, vec(c[i].second), 1.f,
                                   nullptr, s.dist.data());
            bool good = true;
            for (size_t j = 0; j < kept && good; ++j) good = !(s.dist[j] < c[i].first);
            if (good) c[kept++] = c[i];
        }
        c.resize(kept);
    }

    // Links id at `level` to its selected neighbours `sel` and each of them
    // back to id, pruning a full list with the same heuristic.
    void connect(const KernelTable& K, uint32_t id, int level,
                 const std::vector<std::pair<float, uint32_t>>& sel, Scratch& s) const {
        const size_t cap = max_links(level);
        const bool counted = level == 0;
        {
            std::lock_guard<std::mutex> lk(lock_of(id));
            uint32_t* lst = list(id, level);
            if (counted) {
                // A reused slot or an updated node drops the links it had.
                const size_t old = std::min<size_t>(load(lst), cap);
                for (size_t j = 1; j <= old; ++j) drop_in_link(load(lst + j));
                for (const auto& chosen : sel) add_in_link(chosen.second);
            }
            for (size_t j = 0; j < sel.size(); ++j) store(lst + 1 + j, sel[j].second);
            __atomic_store_n(lst, uint32_t(sel.size()), __ATOMIC_RELEASE);
        }
        for (const auto& [dn, n] : sel) {
            std::lock_guard<std::mutex> lk(lock_of(n));
            uint32_t* lst = list(n, level);
            const size_t cnt = std::min<size_t>(load(lst), cap);
            bool present = false;
            for (size_t j = 1; j <= cnt && !present; ++j) present = load(lst + j) == id;
            if (present) continue;
            if (cnt < cap) {
                store(lst + 1 + cnt, id);
                __atomic_store_n(lst, uint32_t(cnt + 1), __ATOMIC_RELEASE);
                if (counted) add_in_link(id);
                continue;
            }
            auto& nb = s.nb;
            nb.clear();
            for (size_t j = 1; j <= cnt; ++j) {
                s.ids[j - 1] = load(lst + j);
                s.rows[j - 1] = vec(s.ids[j - 1]);
            }
            K.horizontal(walk_metric_, s.rows.data(), cnt, dim_, vec(n), 1.f, nullptr, s.dist.data());
            for (size_t j = 0; j < cnt; ++j) nb.emplace_back(s.dist[j], s.ids[j]);
            nb.emplace_back(dn, id);
            select_neighbors(K, nb, cap, s);
            if (counted) {
                for (size_t j = 0; j < cnt; ++j) drop_in_link(s.ids[j]);
                for (const auto& kept : nb) add_in_link(kept.second);
            }
            for (size_t j = 0; j < nb.size(); ++j) store(lst + 1 + j, nb[j].second);
            __atomic_store_n(lst, uint32_t(nb.size()), __ATOMIC_RELEASE);
        }
    }

    // In-links. Pruning a full list and reusing a deleted node's slot both
    // take links away from nodes, and a node whose in-links at level 0 run
    // out can no longer be reached by any walk (seen under delete/insert
    // churn: a stored vector stopped finding itself). Every level-0 list
    // change is counted, and after each batch the nodes left with fewer than
    // kMinInLinks are linked again, which gives them back-links.
    void add_in_link(uint32_t id) const { __atomic_fetch_add(&head(id).in_links, 1u, __ATOMIC_RELAXED); }
    void drop_in_link(uint32_t id) const {
        if (__atomic_sub_fetch(&head(id).in_links, 1u, __ATOMIC_RELAXED) == kMinInLinks - 1) {
            std::lock_guard<std::mutex> lk(orphans_mu_);
            orphans_.push_back(id);
        }
    }

    // Links again the live nodes whose in-links fell below kMinInLinks (their
    // vectors do not change, so searches may run meanwhile). Linking one can
    // prune links of others; a few rounds settle it.
    void relink_orphans(const KernelTable& K, int num_threads) {
        for (int round = 0; round < kRelinkRounds; ++round) {
            std::vector<uint32_t> todo;
            {
                std::lock_guard<std::mutex> lk(orphans_mu_);
                todo.swap(orphans_);
            }
            std::sort(todo.begin(), todo.end());
            todo.erase(std::unique(todo.begin(), todo.end()), todo.end());
            todo.erase(std::remove_if(todo.begin(), todo.end(), [&](uint32_t id) {
                           return !visible(id) || __atomic_load_n(&head(id).in_links, __ATOMIC_RELAXED) >= kMinInLinks ||
                                  uint32_t(entry_.load()) == id;
                       }),
                       todo.end());
            if (todo.empty()) return;
            parallel(todo.size(), num_threads, [&](size_t j, Scratch& s) { link(K, todo[j], s); });
        }
        std::lock_guard<std::mutex> lk(orphans_mu_);
        orphans_.clear();
    }
    static constexpr uint32_t kMinInLinks = 2;
    static constexpr int kRelinkRounds = 3;

    // (Re)links node id, whose vector is already stored, at each of its levels.
    void link(const KernelTable& K, uint32_t id, Scratch& s) {
        const int level = head(id).level;
        const float* q = vec(id);
        std::unique_lock<std::mutex> top_lock(entry_mu_);
        const uint64_t e = entry_.load();
        if (e == kNoEntry) {
            entry_.store(pack_entry(id, level));
            return;
        }
        uint32_t ep = uint32_t(e);
        const int top = int(e >> 32);
        // A node above the current top keeps the lock until it is the new entry.
        if (level <= top) top_lock.unlock();
        float d = distance(K, q, vec(ep));
        ep = descend(K, q, ep, d, top, level, s);
        auto not_self = [id](uint32_t x) { return x != id; };
        // Every level's neighbours are chosen first and connected from level 0
        // up, so a walk that reaches this node at some level (through a
        // back-link) finds its lists below already complete; connected top
        // down, a concurrent insert could stop at it and get one link only.
        const int linked = std::min(level, top);
        s.sel.resize(size_t(std::max(int(s.sel.size()), linked + 1)));
        for (int l = linked; l >= 0; --l) {
            search_level(K, q, ep, d, l, ef_construction_, not_self, s);
            auto& sel = s.sel[size_t(l)];
            sel.assign(s.top.begin(), s.top.end());
            if (sel.empty()) continue;
            select_neighbors(K, sel, M_, s);
            ep = sel.front().second;
            d = sel.front().first;
        }
        for (int l = 0; l <= linked; ++l)
            if (!s.sel[size_t(l)].empty()) connect(K, id, l, s.sel[size_t(l)], s);
        if (level > top) entry_.store(pack_entry(id, level));
        if (__atomic_load_n(&head(id).in_links, __ATOMIC_RELAXED) < kMinInLinks) {
            std::lock_guard<std::mutex> lk(orphans_mu_);
            orphans_.push_back(id);
        }
    }

    // Graph search of one query; returns how many results it wrote.
    size_t walk(const KernelTable& K, const float* q, size_t k, size_t ef, const AllowList* allow,
                Scratch& s, int64_t* ol, float* od) const {
        const uint64_t e = entry_.load();
        if (e == kNoEntry) return 0;
        uint32_t ep = uint32_t(e);
        float d = distance(K, q, vec(ep));
        ep = descend(K, q, ep, d, int(e >> 32), 0, s);
        if (allow) {
            search_level(K, q, ep, d, 0, ef, [&](uint32_t x) {
                return visible(x) && allow->contains(label(x));
            }, s);
        } else {
            search_level(K, q, ep, d, 0, ef, [&](uint32_t x) { return visible(x); }, s);
        }
        auto& top = s.top;
        std::sort(top.begin(), top.end(), [&](const auto& a, const auto& b) {
            return ranks_after(b.first, label(b.second), a.first, label(a.second));
        });
        const size_t got = std::min(k, top.size());
        for (size_t j = 0; j < got; ++j) {
            ol[j] = label(top[j].second);
            od[j] = top[j].first;
        }
        return got;
    }

    // Live nodes (of `allow` if given), for exact search. A small allow-list
    // is resolved through the label map (~40 ns a lookup); a large one by
    // testing every slot's label, chunk by chunk over the packed labels and
    // flags, without a branch per slot (~2 ns a slot).
    void gather_candidates(const AllowList* allow, Candidates& out, std::vector<uint32_t>& hits) const {
        const uint32_t n = count_.load(std::memory_order_acquire);
        auto add = [&](uint32_t id) { out.push(vec(id), codes(id), label(id), row_code(id)); };
        if (allow && allow->size() * kLookupSlots < n) {
            std::shared_lock<std::shared_mutex> lk(label_mu_);
            out.reserve(allow->size());
            allow->for_each([&](int64_t lab) {
                auto it = label_to_id_.find(lab);
                if (it != label_to_id_.end() && visible(it->second)) add(it->second);
            });
            return;
        }
        out.reserve(allow ? allow->size() : live_.load());
        hits.resize(kChunkNodes);
        for (uint32_t first = 0; first < n; first += kChunkNodes) {
            const uint32_t len = std::min(kChunkNodes, n - first);
            const int64_t* labels = &label(first);
            const std::atomic<uint32_t>* flags = &hidden(first);
            size_t count = 0;
            for (uint32_t i = 0; i < len; ++i) {
                hits[count] = first + i;
                count += (flags[i].load(std::memory_order_acquire) == 0) & (!allow || allow->contains(labels[i]));
            }
            for (size_t j = 0; j < count; ++j) add(hits[j]);
        }
    }

    // Exact search of the n queries at q over the candidates, by two passes
    // (int8 codes, then float rerank) if allowed and worth it; the answer is
    // the float scan's either way.
    void search_exact(const KernelTable& K, const Candidates& c, const float* q, size_t n, size_t k,
                      bool two_pass, Scratch& s, int64_t* ol, float* od, size_t* count,
                      size_t* reranked) const {
        std::vector<long>& got = s.got;
        got.assign(n, -1);
        // without the int8 copies (a walk that fell back to exact search), the float scan answers
        if (two_pass && use_two_pass(c.size()) && codes_on_.load(std::memory_order_acquire)) {
            s.qptrs.resize(n);
            for (size_t i = 0; i < n; ++i) s.qptrs[i] = q + i * dim_;
            two_pass_rows(K, walk_metric_, dim_, c.rows(), s.qptrs.data(), n, k, s.two_pass, ol, od,
                          got.data(), reranked);
        }
        for (size_t i = 0; i < n; ++i)
            count[i] = got[i] >= 0 ? size_t(got[i]) : scan(K, q + i * dim_, k, c, s, ol + i * k, od + i * k);
    }

    // Exact search of one query over the candidates (ties: lower label first).
    size_t scan(const KernelTable& K, const float* q, size_t k, const Candidates& cand,
                Scratch& s, int64_t* ol, float* od) const {
        const size_t kk = std::min(k, cand.size());
        if (kk == 0) return 0;
        auto& heap = s.nb;  // max-heap of (distance, index into cand) by ranks_after on labels
        heap.clear();
        auto worse = [&](const std::pair<float, uint32_t>& a, const std::pair<float, uint32_t>& b) {
            return ranks_after(b.first, cand.labels[b.second], a.first, cand.labels[a.second]);
        };
        // The rows are scattered blocks, so the hardware prefetchers see no
        // stream: each group of rows is requested while the previous one is
        // computed, which keeps several cache misses in flight.
        const size_t block = kScanGroup, lines = (dim_ * sizeof(float) + 63) / 64;
        auto prefetch = [&](size_t from) {
            for (size_t r = from; r < std::min(from + block, cand.size()); ++r)
                for (size_t l = 0; l < lines; ++l)
                    __builtin_prefetch(reinterpret_cast<const char*>(cand.vecs[r]) + 64 * l);
        };
        prefetch(0);
        for (size_t b = 0; b < cand.size(); b += block) {
            const size_t nr = std::min(block, cand.size() - b);
            prefetch(b + block);
            for (size_t r = 0; r < nr; ++r) s.rows[r] = cand.vecs[b + r];
            K.horizontal(walk_metric_, s.rows.data(), nr, dim_, q, 1.f, nullptr, s.dist.data());
            for (size_t r = 0; r < nr; ++r) {
                const std::pair<float, uint32_t> item(s.dist[r], uint32_t(b + r));
                if (heap.size() < kk) {
                    heap.push_back(item);
                    std::push_heap(heap.begin(), heap.end(), worse);
                } else if (worse(item, heap.front())) {
                    std::pop_heap(heap.begin(), heap.end(), worse);
                    heap.back() = item;
                    std::push_heap(heap.begin(), heap.end(), worse);
                }
            }
        }
        std::sort_heap(heap.begin(), heap.end(), worse);
        for (size_t j = 0; j < kk; ++j) {
            ol[j] = cand.labels[heap[j].second];
            od[j] = heap[j].first;
        }
        return kk;
    }

    static constexpr uint64_t kNoEntry = ~uint64_t(0);

    const size_t dim_;
    const Metric metric_, walk_metric_;
    const size_t M_, M0_, ef_construction_;
    std::atomic<size_t> ef_search_;
    const double level_mult_;
    size_t vec_off_ = 0, block_ = 0, prefetch_lines_ = 1;

    struct FreeDeleter {
        void operator()(void* p) const { std::free(p); }
    };
    std::unique_ptr<std::atomic<char*>, FreeDeleter> chunks_;
    std::unique_ptr<std::atomic<int8_t*>, FreeDeleter> code_chunks_;  // per chunk, see codes()
    mutable std::atomic<bool> codes_on_{false};
    std::atomic<uint32_t> count_{0};
    std::atomic<size_t> live_{0};
    std::atomic<uint64_t> entry_{kNoEntry};
    std::mutex entry_mu_;
    mutable std::mutex stripes_[kStripes];

    mutable std::shared_mutex mu_;        // shared: searches, new inserts; exclusive: updates, deletes
    mutable std::shared_mutex label_mu_;  // label_to_id_, free_, slot allocation
    mutable std::mutex orphans_mu_;
    mutable std::vector<uint32_t> orphans_;  // nodes whose in-links fell below kMinInLinks
    std::unordered_map<int64_t, uint32_t> label_to_id_;
    std::vector<uint32_t> free_;

    mutable std::mutex scratch_mu_;
    mutable std::vector<std::unique_ptr<Scratch>> scratch_;
};

}  // namespace chroma
