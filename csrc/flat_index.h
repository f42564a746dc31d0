// An exact index that owns its vectors: one dense row-major table plus a
// label <-> row mapping. Removal moves the last row into the hole so the table
// stays dense and the scan never skips tombstones.
//
// Cosine is served by storing unit vectors and scanning with the ip kernel,
// which saves the per-row norm pass on every search.
//
// Next to the float table sits a 4-bit copy (quantized_table.h, ~15% extra
// at d = 128: d / 2 bytes + 12 per row) kept row for row in step with it, so
// few-query searches can read an eighth of the bytes first (two_pass.h).
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <mutex>
#include <shared_mutex>
#include <stdexcept>
#include <string>
#include <unordered_map>
#include <vector>

#include "distances.h"
#include "exact_search.h"
#include "quantized_table.h"
#include "two_pass.h"

namespace chroma {

class FlatIndex {
   public:
    FlatIndex(size_t dim, Metric metric) : dim_(dim), metric_(metric), quant_(dim) {
        if (dim == 0) throw std::invalid_argument("dim must be positive");
    }

    size_t dim() const { return dim_; }
    Metric metric() const { return metric_; }

    size_t size() const {
        std::shared_lock<std::shared_mutex> lk(mu_);
        return labels_.size();
    }

    bool contains(int64_t label) const {
        std::shared_lock<std::shared_mutex> lk(mu_);
        return pos_.count(label) != 0;
    }

    std::vector<int64_t> labels() const {
        std::shared_lock<std::shared_mutex> lk(mu_);
        return labels_;
    }

    // A label already present is overwritten in place; within one call the
    // last occurrence of a label wins because rows are applied in order.
    void add(const int64_t* labels, const float* vectors, size_t n) {
        std::unique_lock<std::shared_mutex> lk(mu_);
        data_.reserve(data_.size() + n * dim_);
        labels_.reserve(labels_.size() + n);
        quant_.reserve(labels_.size() + n);
        for (size_t i = 0; i < n; ++i) {
            const float* src = vectors + i * dim_;
            auto it = pos_.find(labels[i]);
            size_t row;
            if (it != pos_.end()) {
                row = it->second;
            } else {
                row = labels_.size();
                pos_.emplace(labels[i], row);
                labels_.push_back(labels[i]);
                data_.resize(data_.size() + dim_);
                quant_.resize(labels_.size());
            }
            store_row(data_.data() + row * dim_, src);
            quant_.set(row, data_.data() + row * dim_);
        }
    }

    void remove(const int64_t* labels, size_t n) {
        std::unique_lock<std::shared_mutex> lk(mu_);
        for (size_t i = 0; i < n; ++i) {
            auto it = pos_.find(labels[i]);
            if (it == pos_.end()) continue;
            const size_t row = it->second, last = labels_.size() - 1;
            pos_.erase(it);
            if (row != last) {
                std::memcpy(data_.data() + row * dim_, data_.data() + last * dim_,
                            dim_ * sizeof(float));
                labels_[row] = labels_[last];
                pos_[labels_[row]] = row;
                quant_.move(last, row);
            }
            labels_.pop_back();
            data_.resize(last * dim_);
            quant_.resize(last);
        }
    }

    // Writes m x k' labels/distances (k' returned): k' = min(k, candidates).
    // allowed == nullptr means every stored vector is a candidate; otherwise
    // unknown labels in it are ignored. two_pass: -1 chooses (use_two_pass),
    // 0 never, 1 whenever the result is guaranteed identical (tests).
    // computed, if given, receives per query the rows whose distance the
    // two-pass search computed exactly (0 when the plain path ran).
    size_t search(const KernelTable& K, const float* queries, size_t m, size_t k,
                  const int64_t* allowed, size_t nallowed, int num_threads,
                  std::vector<int64_t>& out_labels, std::vector<float>& out_dist,
                  int two_pass = -1, std::vector<size_t>* computed = nullptr) const {
        std::vector<float> normalized;
        if (metric_ == Metric::Cosine) {
            normalized.resize(m * dim_);
            for (size_t i = 0; i < m; ++i) normalize(normalized.data() + i * dim_, queries + i * dim_);
            queries = normalized.data();
        }
        const Metric scan_metric = metric_ == Metric::Cosine ? Metric::IP : metric_;

        std::shared_lock<std::shared_mutex> lk(mu_);
        std::vector<int64_t> rows;
        size_t ncand = labels_.size();
        if (allowed) {
            rows.reserve(nallowed);
            for (size_t i = 0; i < nallowed; ++i) {
                auto it = pos_.find(allowed[i]);
                if (it != pos_.end()) rows.push_back(int64_t(it->second));
            }
            std::sort(rows.begin(), rows.end());
            rows.erase(std::unique(rows.begin(), rows.end()), rows.end());
            ncand = rows.size();
        }
        const size_t kk = std::min(k, ncand);
        out_labels.assign(m * kk, 0);
        out_dist.assign(m * kk, 0.f);
        if (computed) computed->assign(m, 0);
        const int64_t* rp = allowed ? rows.data() : nullptr;
        const bool quick = two_pass != 0 && horizontal_plain(K, m) &&
                           (two_pass == 1 || use_two_pass(ncand)) &&
                           two_pass_search(K, scan_metric, data_.data(), dim_, quant_,
                                           labels_.size(), rp, ncand, queries, m, kk,
                                           num_threads, out_labels.data(), out_dist.data(),
                                           computed);
        if (!quick)
            exact_search(K, scan_metric, data_.data(), dim_, rp, ncand, queries, m, kk,
                         num_threads, out_labels.data(), out_dist.data());
        for (int64_t& v : out_labels) v = labels_[size_t(v)];
        return kk;
    }

    // Bytes held by the 4-bit copy (codes, scales, error bounds, norms).
    size_t quant_bytes() const {
        std::shared_lock<std::shared_mutex> lk(mu_);
        return quant_.memory_bytes();
    }

   private:
    // The two-pass result equals the plain one only where the plain path
    // computes its distances with the horizontal kernel, which pass 2 reuses.
    static bool horizontal_plain(const KernelTable& K, size_t m) { return m * 4 < K.lanes * 3; }

    // Measured (2-core Xeon, avx512, l2): with the horizontal kernel (m
    // below 3/4 of the lane group) two passes win at every m tried from 4096
    // rows up: at d = 128 from 4.6x at m = 1 to 2.4x at m = 23 on 100k rows
    // and 1.1x at m = 23 on 4k rows, at d = 16 from 3.3x to 1.5x on 100k
    // rows; on 2k rows they lose from m = 16. Below d = 16 the per-row bound
    // work is no longer small next to the float row.
    bool use_two_pass(size_t ncand) const { return dim_ >= 16 && ncand >= 4096; }

    void store_row(float* dst, const float* src) const {
        if (metric_ == Metric::Cosine)
            normalize(dst, src);
        else
            std::memcpy(dst, src, dim_ * sizeof(float));
    }

    // Norm accumulated in double so a stored unit vector is as close to unit
    // length as float allows; a zero vector stays zero (cosine distance 1).
    void normalize(float* dst, const float* src) const {
        double s = 0;
        for (size_t j = 0; j < dim_; ++j) s += double(src[j]) * src[j];
        const double inv = s > 0 ? 1.0 / std::sqrt(s) : 0.0;
        for (size_t j = 0; j < dim_; ++j) dst[j] = float(src[j] * inv);
    }

    const size_t dim_;
    const Metric metric_;
    mutable std::shared_mutex mu_;
    std::vector<float> data_;
    std::vector<int64_t> labels_;
    std::unordered_map<int64_t, size_t> pos_;
    QuantTable quant_;  // 4-bit copy of data_, row for row (two_pass.h)
};

}  // namespace chroma
