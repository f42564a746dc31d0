// An exact index that owns its vectors: one dense row-major table plus a
// label <-> row mapping. Removal moves the last row into the hole so the table
// stays dense and the scan never skips tombstones.
//
// Cosine is served by storing unit vectors and scanning with the ip kernel,
// which saves the per-row norm pass on every search.
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

namespace chroma {

class FlatIndex {
   public:
    FlatIndex(size_t dim, Metric metric) : dim_(dim), metric_(metric) {
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
            }
            store_row(data_.data() + row * dim_, src);
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
            }
            labels_.pop_back();
            data_.resize(last * dim_);
        }
    }

    // Writes m x k' labels/distances (k' returned): k' = min(k, candidates).
    // allowed == nullptr means every stored vector is a candidate; otherwise
    // unknown labels in it are ignored.
    size_t search(const KernelTable& K, const float* queries, size_t m, size_t k,
                  const int64_t* allowed, size_t nallowed, int num_threads,
                  std::vector<int64_t>& out_labels, std::vector<float>& out_dist) const {
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
        exact_search(K, scan_metric, data_.data(), dim_, allowed ? rows.data() : nullptr, ncand,
                     queries, m, kk, num_threads, out_labels.data(), out_dist.data());
        for (int64_t& v : out_labels) v = labels_[size_t(v)];
        return kk;
    }

   private:
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
};

}  // namespace chroma
