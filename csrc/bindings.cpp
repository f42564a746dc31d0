// Python bindings for the vector core (module chroma._core).
//
// Argument checking happens here, with the GIL held; everything after that
// runs on raw pointers with the GIL released.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <limits>
#include <optional>
#include <string>
#include <vector>

#include "distances.h"
#include "embedding_bindings.h"
#include "exact_search.h"
#include "flat_index.h"
#include "hnsw.h"

namespace py = pybind11;
using namespace chroma;

namespace {

std::atomic<const KernelTable*> g_kernels{nullptr};

const KernelTable& kernels() { return *g_kernels.load(std::memory_order_acquire); }

void set_simd_path(const std::string& name) {
    g_kernels.store(&find_kernels(name), std::memory_order_release);
}

using FloatArray = py::array_t<float, py::array::c_style | py::array::forcecast>;
using IdArray = py::array_t<int64_t, py::array::c_style>;

// The table is scanned in place, so anything that would need a conversion copy
// is refused instead of silently copied (a copy of a large table per query
// would dominate the search).
py::array borrow_table(const py::object& obj, const char* what) {
    if (!py::isinstance<py::array>(obj))
        throw py::type_error(std::string(what) + " must be a numpy.ndarray of float32, got " +
                             std::string(py::str(py::type::of(obj).attr("__name__"))));
    py::array arr = py::reinterpret_borrow<py::array>(obj);
    if (!py::array_t<float>::check_(arr))
        throw py::type_error(std::string(what) + " must have dtype float32, got " +
                             std::string(py::str(arr.dtype())));
    if (arr.ndim() != 2)
        throw std::invalid_argument(std::string(what) + " must be 2-dimensional, got " +
                                    std::to_string(arr.ndim()) + " dimensions");
    if (!py::array_t<float, py::array::c_style>::check_(arr))
        throw std::invalid_argument(std::string(what) +
                                    " must be C-contiguous (use numpy.ascontiguousarray)");
    return arr;
}

// Queries may be converted (they are small); a 1-D array is one query.
FloatArray as_queries(const py::object& obj, size_t d, const char* what) {
    FloatArray q = FloatArray::ensure(obj);
    if (!q) throw py::type_error(std::string(what) + " must be convertible to a float32 array");
    if (q.ndim() == 1) q = FloatArray::ensure(q.reshape({py::ssize_t(1), q.shape(0)}));
    if (q.ndim() != 2)
        throw std::invalid_argument(std::string(what) + " must be 2-dimensional, got " +
                                    std::to_string(q.ndim()) + " dimensions");
    if (size_t(q.shape(1)) != d)
        throw std::invalid_argument(std::string(what) + " has dimension " +
                                    std::to_string(q.shape(1)) + ", expected " + std::to_string(d));
    return q;
}

// Integer input only: numpy would otherwise truncate float labels silently.
// An empty array of any dtype is accepted (np.array([]) is float64).
IdArray as_ids(const py::object& obj, const char* what) {
    py::array raw = py::array::ensure(obj);
    if (!raw) throw py::type_error(std::string(what) + " must be convertible to an int64 array");
    const char kind = raw.dtype().kind();
    if (raw.size() == 0 && kind != 'i' && kind != 'u') raw = py::array_t<int64_t>(0);
    else if (kind != 'i' && kind != 'u')
        throw py::type_error(std::string(what) + " must be integers, got dtype " +
                             std::string(py::str(raw.dtype())));
    IdArray a = IdArray::ensure(raw);
    if (!a) throw py::type_error(std::string(what) + " must be convertible to an int64 array");
    if (a.ndim() != 1)
        throw std::invalid_argument(std::string(what) + " must be 1-dimensional, got " +
                                    std::to_string(a.ndim()) + " dimensions");
    return a;
}

void check_k(int64_t k) {
    if (k <= 0) throw std::invalid_argument("k must be positive, got " + std::to_string(k));
}

// m x k result cells, refused (MemoryError) when the count overflows size_t.
size_t checked_product(size_t m, size_t k) {
    if (k && m > std::numeric_limits<size_t>::max() / k) throw std::bad_alloc();
    return m * k;
}

py::tuple make_result(size_t m, size_t k, const int64_t* ids, const float* dist) {
    py::array_t<int64_t> I({py::ssize_t(m), py::ssize_t(k)});
    py::array_t<float> D({py::ssize_t(m), py::ssize_t(k)});
    std::copy(ids, ids + m * k, I.mutable_data());
    std::copy(dist, dist + m * k, D.mutable_data());
    return py::make_tuple(I, D);
}

py::tuple py_exact_search(const py::object& data_obj, const py::object& queries_obj, int64_t k,
                          const std::string& space, const std::optional<py::object>& allowed_obj,
                          int num_threads) {
    const Metric metric = parse_metric(space);
    check_k(k);
    py::array data = borrow_table(data_obj, "data");
    const size_t n = size_t(data.shape(0)), d = size_t(data.shape(1));
    FloatArray queries = as_queries(queries_obj, d, "queries");
    const size_t m = size_t(queries.shape(0));

    std::vector<int64_t> cand;
    const bool restricted = allowed_obj.has_value() && !allowed_obj->is_none();
    if (restricted) {
        IdArray allowed = as_ids(*allowed_obj, "allowed");
        const int64_t* a = allowed.data();
        cand.assign(a, a + allowed.shape(0));
        for (int64_t v : cand)
            if (v < 0 || uint64_t(v) >= n)
                throw std::invalid_argument("allowed contains row " + std::to_string(v) +
                                            ", out of range for data with " + std::to_string(n) +
                                            " rows");
    }
    const KernelTable& K = kernels();
    const float* dp = static_cast<const float*>(data.data());
    const float* qp = queries.data();
    std::vector<int64_t> ids;
    std::vector<float> dist;
    size_t kk;
    {
        py::gil_scoped_release nogil;
        if (restricted) {
            std::sort(cand.begin(), cand.end());
            cand.erase(std::unique(cand.begin(), cand.end()), cand.end());
        }
        const size_t ncand = restricted ? cand.size() : n;
        kk = std::min(size_t(k), ncand);
        ids.resize(checked_product(m, kk));
        dist.resize(m * kk);
        exact_search(K, metric, dp, d, restricted ? cand.data() : nullptr, ncand, qp, m, kk,
                     num_threads, ids.data(), dist.data());
    }
    return make_result(m, kk, ids.data(), dist.data());
}

py::array_t<float> py_distances(const std::string& space, const py::object& x_obj,
                                const py::object& y_obj) {
    const Metric metric = parse_metric(space);
    FloatArray y = FloatArray::ensure(y_obj);
    if (!y) throw py::type_error("y must be convertible to a float32 array");
    if (y.ndim() != 2)
        throw std::invalid_argument("y must be 2-dimensional, got " + std::to_string(y.ndim()) +
                                    " dimensions");
    const size_t m = size_t(y.shape(0)), d = size_t(y.shape(1));
    FloatArray x = as_queries(x_obj, d, "x");
    const size_t n = size_t(x.shape(0));
    py::array_t<float> out({py::ssize_t(n), py::ssize_t(m)});
    const KernelTable& K = kernels();
    const float* xp = x.data();
    const float* yp = y.data();
    float* op = out.mutable_data();
    {
        py::gil_scoped_release nogil;
        pairwise_distances(K, metric, xp, n, yp, m, d, 0, op);
    }
    return out;
}

// two_pass: None = automatic, True/False = force (internal, for tests and
// benchmarks). With `reranked` the per-query counts of rows the two-pass
// search computed exactly come back too.
py::tuple py_index_search_impl(const FlatIndex& index, const py::object& queries_obj, int64_t k,
                               const std::optional<py::object>& allowed_obj, int num_threads,
                               std::optional<bool> two_pass, bool want_reranked) {
    check_k(k);
    FloatArray queries = as_queries(queries_obj, index.dim(), "queries");
    const size_t m = size_t(queries.shape(0));
    const bool restricted = allowed_obj.has_value() && !allowed_obj->is_none();
    IdArray allowed;
    if (restricted) allowed = as_ids(*allowed_obj, "allowed");
    const int64_t* ap = restricted ? allowed.data() : nullptr;
    const size_t na = restricted ? size_t(allowed.shape(0)) : 0;
    const KernelTable& K = kernels();
    const float* qp = queries.data();
    std::vector<int64_t> labels;
    std::vector<float> dist;
    std::vector<size_t> reranked;
    const int mode = two_pass.has_value() ? int(*two_pass) : -1;
    size_t kk;
    {
        py::gil_scoped_release nogil;
        kk = index.search(K, qp, m, size_t(k), ap, na, num_threads, labels, dist, mode,
                          want_reranked ? &reranked : nullptr);
    }
    py::tuple res = make_result(m, kk, labels.data(), dist.data());
    if (!want_reranked) return res;
    py::array_t<int64_t> R(py::ssize_t(reranked.size()));
    std::copy(reranked.begin(), reranked.end(), R.mutable_data());
    return py::make_tuple(res[0], res[1], R);
}

py::tuple py_index_search(const FlatIndex& index, const py::object& queries_obj, int64_t k,
                          const std::optional<py::object>& allowed_obj, int num_threads,
                          std::optional<bool> two_pass) {
    return py_index_search_impl(index, queries_obj, k, allowed_obj, num_threads, two_pass, false);
}


// An allow-list from a numpy array of labels, or an AllowList built earlier.
std::shared_ptr<AllowList> as_allow_list(const std::optional<py::object>& obj) {
    if (!obj.has_value() || obj->is_none()) return nullptr;
    if (py::isinstance<AllowList>(*obj)) return obj->cast<std::shared_ptr<AllowList>>();
    IdArray labels = as_ids(*obj, "allowed");
    const int64_t* lp = labels.data();
    const size_t n = size_t(labels.shape(0));
    py::gil_scoped_release nogil;
    return std::make_shared<AllowList>(lp, n);
}

HnswIndex::Plan parse_plan(const std::optional<std::string>& plan) {
    if (!plan || *plan == "auto") return HnswIndex::Plan::Auto;
    if (*plan == "graph") return HnswIndex::Plan::Graph;
    if (*plan == "exact") return HnswIndex::Plan::Exact;
    if (*plan == "scan") return HnswIndex::Plan::Scan;
    throw std::invalid_argument("unknown plan '" + *plan + "'; expected 'auto', 'graph', 'exact' or 'scan'");
}

// With `want_reranked` the per-query two-pass rerank counts come back too
// (internal, for tests: 0 where the walk or the float scan answered).
py::tuple py_hnsw_search_impl(const HnswIndex& index, const py::object& queries_obj, int64_t k,
                              const std::optional<py::object>& allowed_obj, std::optional<int64_t> ef,
                              int num_threads, const std::optional<std::string>& plan, bool want_reranked) {
    check_k(k);
    if (ef && *ef <= 0) throw std::invalid_argument("ef must be positive, got " + std::to_string(*ef));
    const HnswIndex::Plan p = parse_plan(plan);
    FloatArray queries = as_queries(queries_obj, index.dim(), "queries");
    const size_t m = size_t(queries.shape(0));
    std::shared_ptr<AllowList> allow = as_allow_list(allowed_obj);
    const float* qp = queries.data();
    // No query can return more than the candidates, so k is capped at their
    // count before the m x k result buffers are sized (k may be near 2**63).
    // Rows added during the call are not waited for: the result is as wide
    // as the candidates were when the call began.
    const size_t ncand = allow ? std::min(allow->size(), index.size()) : index.size();
    const size_t kk = std::min(size_t(k), ncand), efv = ef ? size_t(*ef) : index.ef_search();
    const size_t cells = checked_product(m, kk);
    std::vector<int64_t> labels(cells);
    std::vector<float> dist(cells);
    std::vector<size_t> count(m), reranked(m);
    if (kk > 0) {
        py::gil_scoped_release nogil;
        index.search(kernels(), qp, m, kk, allow.get(), efv, num_threads, p, labels.data(),
                     dist.data(), count.data(), want_reranked ? reranked.data() : nullptr);
    }
    // Every query fills the same count unless the index changed during the
    // call; the narrowest keeps the result rectangular.
    size_t width = m ? *std::min_element(count.begin(), count.end()) : std::min(kk, index.size());
    py::array_t<int64_t> I({py::ssize_t(m), py::ssize_t(width)});
    py::array_t<float> D({py::ssize_t(m), py::ssize_t(width)});
    for (size_t i = 0; i < m; ++i) {
        std::copy(labels.begin() + i * kk, labels.begin() + i * kk + width, I.mutable_data() + i * width);
        std::copy(dist.begin() + i * kk, dist.begin() + i * kk + width, D.mutable_data() + i * width);
    }
    if (!want_reranked) return py::make_tuple(I, D);
    py::array_t<int64_t> R{py::ssize_t(m)};
    std::copy(reranked.begin(), reranked.end(), R.mutable_data());
    return py::make_tuple(I, D, R);
}

py::tuple py_hnsw_search(const HnswIndex& index, const py::object& queries_obj, int64_t k,
                         const std::optional<py::object>& allowed_obj, std::optional<int64_t> ef,
                         int num_threads, const std::optional<std::string>& plan) {
    return py_hnsw_search_impl(index, queries_obj, k, allowed_obj, ef, num_threads, plan, false);
}

// (labels, vectors) checked as for FlatIndex.add; n == 0 gives nullptrs.
std::pair<IdArray, FloatArray> as_labeled_vectors(const py::object& labels_obj,
                                                  const py::object& vectors_obj, size_t dim) {
    IdArray labels = as_ids(labels_obj, "labels");
    const size_t n = size_t(labels.shape(0));
    FloatArray vectors = FloatArray::ensure(vectors_obj);
    if (!vectors) throw py::type_error("vectors must be convertible to a float32 array");
    if (vectors.ndim() == 1 && n == 1)
        vectors = FloatArray::ensure(vectors.reshape({py::ssize_t(1), vectors.shape(0)}));
    if (vectors.ndim() == 1 && vectors.shape(0) == 0 && n == 0) return {labels, FloatArray()};
    if (vectors.ndim() != 2)
        throw std::invalid_argument("vectors must be 2-dimensional, got " +
                                    std::to_string(vectors.ndim()) + " dimensions");
    if (size_t(vectors.shape(1)) != dim)
        throw std::invalid_argument("vectors have dimension " + std::to_string(vectors.shape(1)) +
                                    ", expected " + std::to_string(dim));
    if (size_t(vectors.shape(0)) != n)
        throw std::invalid_argument("got " + std::to_string(n) + " labels but " +
                                    std::to_string(vectors.shape(0)) + " vectors");
    return {labels, vectors};
}

void py_index_add(FlatIndex& index, const py::object& labels_obj, const py::object& vectors_obj) {
    auto [labels, vectors] = as_labeled_vectors(labels_obj, vectors_obj, index.dim());
    const size_t n = size_t(labels.shape(0));
    if (n == 0) return;
    const int64_t* lp = labels.data();
    const float* vp = vectors.data();
    py::gil_scoped_release nogil;
    index.add(lp, vp, n);
}

void py_hnsw_add(HnswIndex& index, const py::object& labels_obj, const py::object& vectors_obj,
                 int num_threads) {
    auto [labels, vectors] = as_labeled_vectors(labels_obj, vectors_obj, index.dim());
    const size_t n = size_t(labels.shape(0));
    if (n == 0) return;
    const int64_t* lp = labels.data();
    const float* vp = vectors.data();
    py::gil_scoped_release nogil;
    index.add(kernels(), lp, vp, n, num_threads);
}

// remove / contains / labels, the same for every index class.
template <class Index>
void def_label_methods(py::class_<Index>& cls) {
    cls.def(
           "remove",
           [](Index& index, const py::object& labels_obj) {
               IdArray labels = as_ids(labels_obj, "labels");
               const int64_t* lp = labels.data();
               const size_t n = size_t(labels.shape(0));
               py::gil_scoped_release nogil;
               index.remove(lp, n);
           },
           py::arg("labels"))
        .def("contains", &Index::contains, py::arg("label"), py::call_guard<py::gil_scoped_release>())
        .def("__contains__", &Index::contains, py::arg("label"),
             py::call_guard<py::gil_scoped_release>())
        .def("labels", [](const Index& i) {
            std::vector<int64_t> v;
            {
                py::gil_scoped_release nogil;
                v = i.labels();
            }
            py::array_t<int64_t> out(py::ssize_t(v.size()));
            std::copy(v.begin(), v.end(), out.mutable_data());
            return out;
        });
}

}  // namespace

PYBIND11_MODULE(_core, m) {
    m.doc() = "Compiled vector core of chroma: SIMD distance kernels, exact top-k search, FlatIndex.";

    // Best path by default; CHROMA_SIMD pins one (an invalid value fails the import
    // loudly rather than silently running something else).
    const char* env = std::getenv("CHROMA_SIMD");
    if (env && *env)
        set_simd_path(env);
    else
        g_kernels.store(available_kernels().back());

    m.def("simd_path", [] { return std::string(kernels().name); },
          "Name of the SIMD path in use: 'avx512', 'avx2' or 'portable'.");
    m.def("available_simd_paths",
          [] {
              std::vector<std::string> names;
              for (const KernelTable* k : available_kernels()) names.emplace_back(k->name);
              return names;
          },
          "SIMD paths this CPU can run, slowest first.");
    m.def("set_simd_path", &set_simd_path, py::arg("name"),
          "Force a SIMD path for all later calls (ValueError if unknown or unsupported).");

    // chroma.embedding's fused encoder kernels (csrc/embedding_bindings.h).
    embedding_bindings::register_functions(m);

    m.def("thread_count", [] { return ThreadPool::instance().concurrency(); },
          "Threads the core's parallel parts use: CHROMA_NUM_THREADS if set at first use, else every core.");

    m.def("distances", &py_distances, py::arg("space"), py::arg("x"), py::arg("y"),
          "Pairwise distances, out[i, j] = dist(x[i], y[j]).");
    m.def("exact_search", &py_exact_search, py::arg("data"), py::arg("queries"), py::arg("k"),
          py::arg("space"), py::arg("allowed") = py::none(), py::arg("num_threads") = 0,
          "Exact top-k rows of data per query: (ids int64[m, k'], distances float32[m, k']).");

    py::class_<FlatIndex> flat(m, "FlatIndex", "Exact index owning its vectors, keyed by int64 labels.");
    flat.def(py::init([](int64_t dim, const std::string& space) {
                 if (dim <= 0)
                     throw std::invalid_argument("dim must be positive, got " + std::to_string(dim));
                 return new FlatIndex(size_t(dim), parse_metric(space));
             }),
             py::arg("dim"), py::arg("space"))
        .def_property_readonly("dim", [](const FlatIndex& i) { return i.dim(); })
        .def_property_readonly("space",
                               [](const FlatIndex& i) { return std::string(metric_name(i.metric())); })
        .def("__len__", &FlatIndex::size, py::call_guard<py::gil_scoped_release>())
        .def("__repr__",
             [](const FlatIndex& i) {
                 return "FlatIndex(dim=" + std::to_string(i.dim()) + ", space='" +
                        metric_name(i.metric()) + "', size=" + std::to_string(i.size()) + ")";
             })
        .def("add", &py_index_add, py::arg("labels"), py::arg("vectors"))
        .def("search", &py_index_search, py::arg("queries"), py::arg("k"),
             py::arg("allowed") = py::none(), py::arg("num_threads") = 0,
             py::arg("_two_pass") = py::none())
        .def(
            "_search_stats",
            [](const FlatIndex& index, const py::object& queries, int64_t k,
               const std::optional<py::object>& allowed, int num_threads,
               std::optional<bool> two_pass) {
                return py_index_search_impl(index, queries, k, allowed, num_threads, two_pass, true);
            },
            py::arg("queries"), py::arg("k"), py::arg("allowed") = py::none(),
            py::arg("num_threads") = 0, py::arg("_two_pass") = py::none())
        .def_property_readonly("_quant_bytes", &FlatIndex::quant_bytes);
    def_label_methods(flat);
    py::register_exception<IndexFileError>(m, "IndexFileError", PyExc_ValueError);
    py::register_exception<IndexIOError>(m, "IndexIOError", PyExc_OSError);
    py::class_<AllowList, std::shared_ptr<AllowList>>(
        m, "AllowList", "A set of int64 labels for filtered search, built once and reusable.")
        .def(py::init([](const py::object& labels) {
                 IdArray a = as_ids(labels, "labels");
                 const int64_t* lp = a.data();
                 const size_t n = size_t(a.shape(0));
                 py::gil_scoped_release nogil;
                 return std::make_shared<AllowList>(lp, n);
             }),
             py::arg("labels"))
        .def("__len__", &AllowList::size)
        .def("__contains__", &AllowList::contains, py::arg("label"));

    py::class_<HnswIndex> hnsw(m, "HnswIndex", "Approximate index: an HNSW graph keyed by int64 labels.");
    hnsw.def(py::init([](int64_t dim, const std::string& space, int64_t M, int64_t ef_construction,
                         int64_t ef_search) {
                 if (dim <= 0)
                     throw std::invalid_argument("dim must be positive, got " + std::to_string(dim));
                 if (M < 2 || M > 512)
                     throw std::invalid_argument("M must be in [2, 512], got " + std::to_string(M));
                 if (ef_construction <= 0)
                     throw std::invalid_argument("ef_construction must be positive, got " +
                                                 std::to_string(ef_construction));
                 if (ef_search <= 0)
                     throw std::invalid_argument("ef_search must be positive, got " +
                                                 std::to_string(ef_search));
                 return new HnswIndex(size_t(dim), parse_metric(space), size_t(M),
                                      size_t(ef_construction), size_t(ef_search));
             }),
             py::arg("dim"), py::arg("space"), py::arg("M") = 16, py::arg("ef_construction") = 100,
             py::arg("ef_search") = int64_t(kDefaultEfSearch))
        .def_property_readonly("dim", &HnswIndex::dim)
        .def_property_readonly("space",
                               [](const HnswIndex& i) { return std::string(metric_name(i.metric())); })
        .def_property_readonly("M", &HnswIndex::M)
        .def_property_readonly("ef_construction", &HnswIndex::ef_construction)
        .def_property("ef_search", &HnswIndex::ef_search,
                      [](HnswIndex& i, int64_t ef) {
                          if (ef <= 0)
                              throw std::invalid_argument("ef_search must be positive, got " +
                                                          std::to_string(ef));
                          i.set_ef_search(size_t(ef));
                      })
        .def("__len__", &HnswIndex::size)
        .def("__repr__",
             [](const HnswIndex& i) {
                 return "HnswIndex(dim=" + std::to_string(i.dim()) + ", space='" +
                        metric_name(i.metric()) + "', M=" + std::to_string(i.M()) +
                        ", size=" + std::to_string(i.size()) + ")";
             })
        .def("add", &py_hnsw_add, py::arg("labels"), py::arg("vectors"), py::arg("num_threads") = 0)
        .def("search", &py_hnsw_search, py::arg("queries"), py::arg("k"),
             py::arg("allowed") = py::none(), py::arg("ef") = py::none(),
             py::arg("num_threads") = 0, py::arg("_plan") = py::none())
        .def(
            "_search_stats",
            [](const HnswIndex& index, const py::object& queries, int64_t k,
               const std::optional<py::object>& allowed, std::optional<int64_t> ef, int num_threads,
               const std::optional<std::string>& plan) {
                return py_hnsw_search_impl(index, queries, k, allowed, ef, num_threads, plan, true);
            },
            py::arg("queries"), py::arg("k"), py::arg("allowed") = py::none(), py::arg("ef") = py::none(),
            py::arg("num_threads") = 0, py::arg("_plan") = py::none())
        .def_property_readonly("_slots", &HnswIndex::slots)
        .def_property_readonly("_codes", &HnswIndex::has_codes)
        .def("save", &HnswIndex::save, py::arg("path"), py::call_guard<py::gil_scoped_release>(),
             "Write the index to path atomically (temporary file, fsync, rename).")
        .def_static(
            "load",
            [](const std::string& path) {
                py::gil_scoped_release nogil;
                return HnswIndex::load(path);
            },
            py::arg("path"), "Read an index written by save(); IndexFileError if the file is not one.");
    def_label_methods(hnsw);
}
